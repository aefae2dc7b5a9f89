#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: istio_canary_plan
short_description: Decide one phase of the Istio canary upgrade; refuse it with the reason when it may not run
version_added: 1.0.0
description:
  - Reads the cluster (revisions, tags, namespaces, workloads and their proxies) and the upgrade record once,
    and decides for one phase of the canary upgrade what is old and new, what the phase will change (objects,
    workloads, the record) and whether it may run. Every guard that applies to the phase is enforced, whatever
    ran before (the checks of precheck hold for install too).
  - Fails, changing nothing, when the phase may not run; the message says why and what to do, in the words of
    the README's phase table. The plan is returned with the failure too.
  - This is how the phases of the C(meshops.istio.istio_canary) role decide; its messages name the role's
    variables (C(istio_canary_*)).
  - "Check mode: the phases listed in O(assume_done) (those already planned in the same C(--check) run) are
    assumed to have succeeded: their effect is applied to what was read, so a whole upgrade can be reviewed
    before it is done. When something was assumed (RV(plan.simulated)), the module reports the phase's changes
    itself: C(changed) and, with C(--diff), one diff per object, workload and the record."
  - Never changes anything.
author:
  - meshops.istio contributors (@meshops)
options:
  phase:
    description:
      - The phase to plan. V(wave1) .. V(wave9) is element 1 .. 9 of O(waves).
    type: str
    required: true
  stage:
    description:
      - V(before) plans the phase and checks its guards.
      - V(after) checks what must hold once the phase is done (for V(rollback), everything moved is back on the
        old revision); in check mode on the model with the phase assumed done.
    type: str
    choices: [before, after]
    default: before
  to_revision:
    description: The new revision (C(istio_canary_to_revision)), a DNS label such as V(1-15-4).
    type: str
    required: true
  to_version:
    description: Its Istio version (C(istio_canary_to_version)), for example V(1.15.4).
    type: str
    required: true
  from_revision:
    description:
      - The old revision (C(istio_canary_from_revision)). When empty it comes from the record, else from the tag,
        else from the only other installed revision.
    type: str
  tag:
    description: The revision tag the upgrade moves (C(istio_canary_tag)).
    type: str
    default: default
  record_name:
    description: Name of the upgrade record ConfigMap.
    type: str
    default: meshops-istio-upgrade
  waves:
    description: The waves (C(istio_canary_waves)); see the role's documentation.
    type: list
    elements: raw
    default: []
  gateways:
    description: The injected gateways (C(istio_canary_gateways)), each with C(namespace), C(name), C(kind).
    type: list
    elements: raw
    default: []
  max_minor_skew:
    description: Most minor versions between the old and the new version.
    type: int
    default: 2
  create_tag:
    description: Allow the tag to be created when it does not exist (C(istio_canary_create_tag)).
    type: bool
    default: false
  abandon_upgrade:
    description:
      - Allow a phase for another target while an upgrade is in progress (C(istio_canary_abandon_upgrade)); the
        abandoned record is kept in the new one.
    type: bool
    default: false
  rollback:
    description: The guard of the rollback phase (C(istio_canary_rollback)).
    type: bool
    default: false
  migrate_legacy_labels:
    description: Precheck relabels namespaces on C(istio-injection=enabled) (C(istio_canary_migrate_legacy_labels)).
    type: bool
    default: false
  install_method:
    description:
      - How revisions are installed (C(istio_canary_install_method)); empty detects it from the old revision
        (Helm's ownership metadata on its istiod). The plan's C(manager) is the method the role uses.
    version_added: 1.1.0
    type: str
    choices: [ istioctl, helm ]
  cluster:
    description: A name of the cluster for messages (the inventory host).
    type: str
  assume_done:
    description:
      - Check mode only (ignored otherwise); the phases already planned in this run, in order, assumed to have
        succeeded. Pass RV(plan.assume_next) of the previous phase's plan.
    type: list
    elements: str
    default: []
  lease_holder:
    description:
      - Who runs the phase, for the lease of the upgrade record (one run per cluster at a time). When given, a
        phase that writes (every phase outside check mode) is refused while another run holds an unexpired
        lease, naming the holder and how to take over; RV(plan.lease) then says what to take with
        M(meshops.istio.istio_upgrade_lease) and what the modules that wait long renew.
      - Omitted, no lease is checked.
    type: dict
    suboptions:
      inventory_host:
        description: The inventory host (the cluster).
        type: str
        required: true
      controller_host:
        description: The host that runs ansible-playbook (default - where the module runs).
        type: str
      pid:
        description: The process id of ansible-playbook (default - the module's own).
        type: str
      awx_job_id:
        description: The AWX (or Automation Controller) job id, when there is one.
        type: str
  break_lease:
    description:
      - Take over the lease of another run that still holds it (C(istio_canary_break_lease)); the takeover is
        logged in the record. Only for a run that is known to be gone.
    type: bool
    default: false
  lease_ttl:
    description:
      - Seconds a lease lasts after its last renewal (C(istio_canary_lease_ttl)); a holder that is gone loses it
        after that time.
    type: int
    default: 120
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Never changes anything; in check mode plans on what the phases before would have done.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: partial
    details: Only in check mode, for a phase planned on assumed phases (the phase's own modules cannot run then).
notes:
  - Needs to read namespaces, Deployments, StatefulSets, DaemonSets, pods, Services, webhook configurations and
    the record ConfigMap (C(get)); see C(docs/rbac.yaml).
'''

EXAMPLES = r'''
- name: Plan wave 1 (fails with the reason when it may not run)
  meshops.istio.istio_canary_plan:
    phase: wave1
    to_revision: 1-15-4
    to_version: 1.15.4
    waves:
      - {name: wave1, namespaces: [bar]}
  register: wave_plan

- name: Restart what the plan says, nothing else
  meshops.istio.rollout_restart:
    namespaces: "{{ item.namespaces }}"
    revision: "{{ item.revision }}"
  loop: "{{ wave_plan.plan.restarts }}"
'''

RETURN = r'''
plan:
  description: The decisions for the phase.
  returned: always
  type: dict
  contains:
    phase:
      description: The phase (V(wave1) for a wave).
      type: str
      sample: wave1
    allowed:
      description: Whether every guard holds (the module fails when not).
      type: bool
    refusal:
      description: Why the phase may not run and what to do (null when allowed).
      type: str
      sample: "Wave wave1 refuses to run: revision tag 'default' points at 1-14-6, not at 1-15-4 ..."
    guards:
      description: Every guard of the phase with C(name), C(ok) and C(message) (null when it holds).
      type: list
      elements: dict
    manager:
      description:
        - Which control-plane manager installs and removes revisions (V(istioctl)).
        - V(sail) on a mesh the Sail operator manages, detected from its C(Istio).
      type: str
    upgrade:
      description:
        - What is old and new. C(from_revision), C(from_source) (V(variable), V(record), V(tag) or
          V(installed revisions)), C(from_version), C(from_installed), C(from_ready), C(to_revision),
          C(to_version), C(to_installed), C(to_ready), C(to_installed_version), C(tag), C(tag_exists),
          C(tag_revision) and C(tag_on_target).
      type: dict
    revisions:
      description: Installed revisions, name -> C(version), C(ready), C(in_use).
      type: dict
    changes:
      description:
        - What the phase changes. C(objects) - C(kind), C(namespace), C(name), C(action) (V(create), V(update),
          V(delete)) and C(detail), the record ConfigMap included; C(workloads) - C(id), C(namespace), C(kind),
          C(name), C(action) (V(restart) or V(skip)), C(from_revision), C(from_version), C(to_revision),
          C(to_version), C(reason); C(record) - its C(action) and the keys it C(set) and C(remove)s.
      type: dict
    changed:
      description: Whether the phase would change anything (the record included).
      type: bool
    changes_mesh:
      description: Whether the phase would change objects or workloads (the record aside).
      type: bool
    report:
      description: "The changes as lines for people (C(create Deployment istio-system/istiod-1-15-4 (...)), C(restart bar/Deployment/bar: 1.14.6 -> 1.15.4))."
      type: list
      elements: str
    moved:
      description: "The workloads the phase restarts, as C(namespace/Kind/name: from -> to)."
      type: list
      elements: str
    restarts:
      description: The rollout_restart calls of the phase, each with C(namespaces), C(namespace_selector), C(names), C(kinds), C(revision).
      type: list
      elements: dict
    tag_change:
      description: The tag move of the phase (C(tag), C(revision)), or null.
      type: dict
    remove:
      description: The revision the phase removes (cleanup), or null.
      type: str
    findings:
      description: Precheck - namespaces whose injection labels need attention (C(namespace), C(issue), C(migrate), C(message)).
      type: list
      elements: dict
    migrate:
      description: Precheck with O(migrate_legacy_labels) - the namespaces to relabel C(istio.io/rev=<tag>).
      type: list
      elements: str
    verify:
      description:
        - Verify - the C(namespaces), C(workloads) and C(waves) checked and the metric C(gate) scope;
          C(unmovable), the injected pods no restart moves that are not on the revision their namespace selects
          (bare pods, Job and CronJob pods; restart or delete them by hand) and C(far_behind), proxies more than
          one minor version behind the new control plane.
      type: dict
    far_behind:
      description: Verify and cleanup - proxies more than one minor version behind the new control plane (C(namespace/Kind/name (version))).
      type: list
      elements: str
    rollback_namespaces:
      description: Rollback - the namespaces moved back.
      type: list
      elements: str
    record_update:
      description: The istio_upgrade_state arguments that record the phase.
      type: dict
    record_start:
      description:
        - The istio_upgrade_state arguments to write before the phase changes the mesh, or null. A rollback that
          moves anything records that it started (C(rollback) - C(revision), C(namespaces)), so that a rollback
          stopped before it records its end leaves a record that says so; the phases that carry the upgrade
          forward then refuse until a rollback run finishes it.
      version_added: 1.1.0
      type: dict
    record:
      description: The upgrade record as the phase sees it (as istio_upgrade_state returns it).
      type: dict
    simulated:
      description: Check mode with phases assumed done; the phase's own modules are not run, this plan reports.
      type: bool
    assumed:
      description: The phases assumed done (check mode).
      type: list
      elements: str
    assume_next:
      description: What to pass as O(assume_done) to the next phase's plan (empty outside check mode).
      type: list
      elements: str
    lease:
      description:
        - Whether the phase takes the lease (C(needed), false in check mode, for the C(after) stage and without
          O(lease_holder)), and what to take - C(name), C(namespace) of the record, C(holder), C(ttl), C(phase),
          C(break_lease). Pass it to M(meshops.istio.istio_upgrade_lease) and as C(lease) to the modules that
          renew it while they wait.
      type: dict
'''

from ansible_collections.meshops.istio.plugins.module_utils import helm  # noqa: F401 pylint: disable=unused-import
from ansible_collections.meshops.istio.plugins.module_utils.args import LEASE_HOLDER_OPTIONS
from ansible_collections.meshops.istio.plugins.module_utils.errors import PhaseRefused
from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.plan import UpgradePlan, UpgradeRequest, phase_spec
from ansible_collections.meshops.istio.plugins.module_utils import sail
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import parse


def request_from(params):
    return UpgradeRequest(
        to_revision=params['to_revision'], to_version=params['to_version'], from_revision=params.get('from_revision'),
        tag=params['tag'], istio_namespace=params['istio_namespace'], record_name=params['record_name'],
        waves=params['waves'], gateways=params['gateways'], max_minor_skew=params['max_minor_skew'],
        create_tag=params['create_tag'], abandon_upgrade=params['abandon_upgrade'], rollback=params['rollback'],
        migrate_legacy_labels=params['migrate_legacy_labels'], cluster=params.get('cluster'),
        install_method=params.get('install_method'),
        lease_holder=params.get('lease_holder'), break_lease=params.get('break_lease', False),
        lease_ttl=params.get('lease_ttl', 120))


def run(module):
    params = module.params
    request = request_from(params).validate()
    phase_spec(params['phase'])
    state = sail.attach(MeshState.load(module.client, request.istio_namespace), module.client)
    configmap = module.client.get_or_none('ConfigMap', request.record_name, request.istio_namespace)
    record = parse((configmap or {}).get('data'))
    plan = UpgradePlan.build(state, record, request, params['phase'], assume_done=params['assume_done'],
                             check_mode=module.check_mode, stage=params['stage'],
                             record_exists=configmap is not None)
    result = {'changed': False, 'plan': plan.to_dict()}
    if plan.simulated and params['stage'] == 'before' and plan.allowed:
        result['changed'] = plan.changed
        if module.diff:
            result['diff'] = plan.diff()
    if not plan.allowed:
        raise PhaseRefused(plan.refusal, result=result)
    result['msg'] = '%s may run' % plan.label if params['stage'] == 'before' else '%s: done' % plan.label
    return result


def main():
    MeshopsModule(dict(
        phase=dict(type='str', required=True),
        stage=dict(type='str', choices=['before', 'after'], default='before'),
        to_revision=dict(type='str', required=True),
        to_version=dict(type='str', required=True),
        from_revision=dict(type='str'),
        tag=dict(type='str', default='default'),
        record_name=dict(type='str', default='meshops-istio-upgrade'),
        waves=dict(type='list', elements='raw', default=[]),
        gateways=dict(type='list', elements='raw', default=[]),
        max_minor_skew=dict(type='int', default=2),
        create_tag=dict(type='bool', default=False),
        abandon_upgrade=dict(type='bool', default=False),
        rollback=dict(type='bool', default=False),
        migrate_legacy_labels=dict(type='bool', default=False),
        cluster=dict(type='str'),
        install_method=dict(type='str', choices=['istioctl', 'helm']),
        assume_done=dict(type='list', elements='str', default=[]),
        lease_holder=dict(type='dict', options=LEASE_HOLDER_OPTIONS),
        break_lease=dict(type='bool', default=False),
        lease_ttl=dict(type='int', default=120),
    ), istio_namespace=True).run(run)


if __name__ == '__main__':
    main()
