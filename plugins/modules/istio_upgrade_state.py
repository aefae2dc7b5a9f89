#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_upgrade_state
short_description: Record and read the progress of an Istio canary upgrade on the cluster
version_added: 1.0.0
description:
  - Keeps the state of a revision-based canary upgrade in a ConfigMap (by default
    C(meshops-istio-upgrade) in the Istio namespace), so that phases run as separate
    invocations (one AWX job per phase, a re-run after a crash) share it.
  - The record holds the revision tag being moved, the old (C(from_*)) and new (C(to_*))
    revision and version, every phase done with the time it was first completed, and every
    wave with its namespaces, its workloads and the times it was started and done.
  - Updates merge into the record. A phase or wave keeps its first completion time, so
    recording it again reports no change. A different O(to_revision) than the recorded one
    starts a new record, but an upgrade in progress (anything beyond precheck done, and neither
    cleaned up nor rolled back) is only replaced with O(abandon=true); the abandoned record is then
    kept whole in the new one (C(upgrade.abandoned), see M(meshops.istio.istio_upgrade_state_info)).
  - A record whose old and new revision would be the same is refused, and nothing is written.
  - The ConfigMap is flat (one key per fact, lists comma separated) so that
    C(kubectl get configmap meshops-istio-upgrade -n istio-system -o yaml) reads plainly.
  - Check mode never writes the ConfigMap; it reports what would change (with diff).
author:
  - meshops.istio contributors (@meshops)
options:
  state:
    description:
      - V(present) creates or updates the record with the given values.
      - V(absent) deletes the record.
    type: str
    choices: [present, absent]
    default: present
  name:
    description: Name of the ConfigMap.
    type: str
    default: meshops-istio-upgrade
  tag:
    description: The revision tag the upgrade moves (for example V(default)).
    type: str
  from_revision:
    description: The revision the workloads are moved away from (for example V(1-14-6)).
    type: str
  from_version:
    description: The Istio version of O(from_revision) (for example V(1.14.6)).
    type: str
  to_revision:
    description:
      - The revision the workloads are moved to (for example V(1-15-4)).
      - When it differs from the recorded one, the previous record is replaced by a new one.
    type: str
  to_version:
    description: The Istio version of O(to_revision).
    type: str
  phase:
    description:
      - A phase that is done (for example V(precheck), V(install), V(tag)). Its time is
        recorded once; recording it again changes nothing.
      - Letters, digits, C(-) and C(_) only.
    type: str
  wave:
    description: A wave that was started or is done.
    type: dict
    suboptions:
      name:
        description: Name of the wave (letters, digits, C(-) and C(_)).
        type: str
        required: true
      namespaces:
        description: Namespaces the wave moves; merged with those already recorded.
        type: list
        elements: str
        default: []
      workloads:
        description: Workloads the wave moves as C(namespace/Kind/name); merged with those already recorded.
        type: list
        elements: str
        default: []
      status:
        description: V(started) records the start time only; V(done) also the completion time.
        type: str
        choices: [started, done]
        default: done
  rollback:
    description:
      - A rollback starts, recorded before it moves the tag back (C(rollback.started), C(rollback.revision),
        C(rollback.namespaces) in the record). While it is recorded, the record says that the tag and the workloads
        it moves back may be on either revision, and the phases that carry the upgrade forward refuse to run until
        a rollback run finishes it.
      - Recording O(phase=rollback) (the rollback done) removes it.
      - The first start time is kept and namespaces are merged, so recording it again changes nothing.
    version_added: 1.1.0
    type: dict
    suboptions:
      revision:
        description: The revision the tag goes back to (the old revision).
        type: str
        required: true
      namespaces:
        description: The namespaces the rollback moves back.
        type: list
        elements: str
        default: []
  forget_phases:
    description: Phases to remove from the record (a rollback undoes C(tag), C(gateways) and C(verify)).
    type: list
    elements: str
    default: []
  forget_waves:
    description: Remove every wave from the record (a rollback moves their namespaces back).
    type: bool
    default: false
  abandon:
    description:
      - Allow a different O(to_revision) to replace an upgrade in progress. The abandoned record is kept
        under C(abandoned.<n>) in the new one.
      - Without it such a change fails and nothing is written.
    type: bool
    default: false
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes the record as it would be; never writes the ConfigMap.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The ConfigMap data before and after.
notes:
  - The module needs C(get), C(create), C(update) and C(delete) on ConfigMaps in O(istio_namespace).
"""

EXAMPLES = r"""
- name: Record what precheck learned
  meshops.istio.istio_upgrade_state:
    tag: default
    from_revision: 1-14-6
    from_version: 1.14.6
    to_revision: 1-15-4
    to_version: 1.15.4
    phase: precheck

- name: Record that wave1 started (before restarting anything)
  meshops.istio.istio_upgrade_state:
    to_revision: 1-15-4
    wave:
      name: wave1
      namespaces: [bar]
      status: started

- name: Read the record back (rollback and cleanup do this)
  meshops.istio.istio_upgrade_state_info:
  register: upgrade

- name: A rollback starts (recorded before the tag moves back, so that the record stays true if it stops)
  meshops.istio.istio_upgrade_state:
    to_revision: 1-15-4
    rollback:
      revision: 1-14-6
      namespaces: [bar, istio-ingress]

- name: After a rollback, forget what was undone
  meshops.istio.istio_upgrade_state:
    phase: rollback
    forget_phases: [tag, gateways, verify]
    forget_waves: true
"""

RETURN = r"""
upgrade:
  description:
    - The record after the call (in check mode, as it would be), as M(meshops.istio.istio_upgrade_state_info)
      returns it.
  returned: always
  type: dict
  sample: {"exists": true, "name": "meshops-istio-upgrade", "namespace": "istio-system", "tag": "default",
           "from_revision": "1-14-6", "from_version": "1.14.6", "to_revision": "1-15-4", "to_version": "1.15.4",
           "phases": {"precheck": "2026-11-21T23:59:01Z"}, "waves": {}, "waves_started": [], "waves_done": [],
           "moved_namespaces": [], "rollback": null, "rollback_under_way": false}
changes:
  description: The ConfigMap created, updated or deleted (or that would be, in check mode), with the action.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "ConfigMap", "namespace": "istio-system", "name": "meshops-istio-upgrade", "action": "updated"}]
"""

from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import (
    STATE_FIELDS,
    write_record,
)

ARGUMENT_SPEC = dict(
    state=dict(type="str", choices=["present", "absent"], default="present"),
    name=dict(type="str", default="meshops-istio-upgrade"),
    tag=dict(type="str"),
    from_revision=dict(type="str"),
    from_version=dict(type="str"),
    to_revision=dict(type="str"),
    to_version=dict(type="str"),
    phase=dict(type="str"),
    wave=dict(
        type="dict",
        options=dict(
            name=dict(type="str", required=True),
            namespaces=dict(type="list", elements="str", default=[]),
            workloads=dict(type="list", elements="str", default=[]),
            status=dict(type="str", choices=["started", "done"], default="done"),
        ),
    ),
    rollback=dict(
        type="dict",
        options=dict(
            revision=dict(type="str", required=True),
            namespaces=dict(type="list", elements="str", default=[]),
        ),
    ),
    forget_phases=dict(type="list", elements="str", default=[]),
    forget_waves=dict(type="bool", default=False),
    abandon=dict(type="bool", default=False),
)


def run(module):
    """Apply the requested change to the record."""
    params = module.params
    name, namespace = params["name"], params["istio_namespace"]
    update, record = write_record(
        module.client, name, namespace, absent=params["state"] == "absent", check_mode=module.check_mode,
        fields=dict((key, params.get(key)) for key in STATE_FIELDS), phase=params.get("phase"),
        wave=params.get("wave"), forget_phases=params.get("forget_phases"), forget_waves=params.get("forget_waves"),
        abandon=params.get("abandon"), rollback=params.get("rollback"))
    result = dict(changed=update.changed, upgrade=record,
                  changes=update.changes("ConfigMap", name, namespace))
    if module.diff:
        header = "configmap %s/%s" % (namespace, name)
        result["diff"] = dict(before=(update.before or {}).get("data") or {}, after=(update.desired or {}).get("data") or {},
                              before_header=header, after_header=header)
    return result


def main():
    MeshopsModule(ARGUMENT_SPEC, istio_namespace=True).run(run)


if __name__ == "__main__":
    main()
