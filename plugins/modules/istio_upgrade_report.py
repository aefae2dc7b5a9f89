#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_upgrade_report
short_description: The report of an Istio canary upgrade on one cluster, and where it stands
version_added: 1.0.0
description:
  - Reads the upgrade record, the journal and live progress kept beside it (see
    M(meshops.istio.istio_upgrade_journal) and the O(meshops.istio.rollout_restart#module:progress) option) and
    the cluster as it is now, and returns the upgrade's report as data - the timeline of phases and waves (start,
    end, state, who ran it, done / total of each rollout), proxy versions per namespace before (the baseline kept
    when the upgrade started) and now, the control plane before and now (revisions, tags, webhooks, gateways),
    every failure with its reason, the workloads still on the old revision, what the next phase is and a
    one-line summary for a fleet page.
  - The role C(meshops.istio.istio_canary) writes it as C(<cluster>.json) and renders C(<cluster>.html) and the
    fleet page C(index.html) from it (tag C(report)), and prints its status (tag C(status)).
  - Never changes anything.
author:
  - meshops.istio contributors (@meshops)
options:
  cluster:
    description: The cluster's name in the report (the inventory host).
    type: str
    required: true
  record:
    description: Name of the upgrade record's ConfigMap.
    type: str
    default: meshops-istio-upgrade
  configmap:
    description: Name of the progress ConfigMap (journal, baseline, live progress).
    type: str
    default: meshops-istio-upgrade-progress
  waves:
    description: The waves (C(istio_canary_waves)), so that phase V(wave<N>) is named as the record names it.
    type: list
    elements: dict
    default: []
  gateways:
    description: The gateway workloads (C(istio_canary_gateways)) whose proxies the report shows.
    type: list
    elements: dict
    default: []
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.attributes
  - meshops.istio.attributes.info_module
notes:
  - Needs C(get) on ConfigMaps in O(istio_namespace) and what M(meshops.istio.istio_revision_info) reads.
seealso:
  - module: meshops.istio.istio_upgrade_journal
  - module: meshops.istio.istio_upgrade_state_info
"""

EXAMPLES = r"""
- name: The report of this cluster
  meshops.istio.istio_upgrade_report:
    cluster: "{{ inventory_hostname }}"
    waves: "{{ istio_canary_waves }}"
    gateways: "{{ istio_canary_gateways }}"
  register: upgrade_report

- name: Keep it as JSON
  ansible.builtin.copy:
    content: "{{ upgrade_report.report | to_nice_json }}"
    dest: "reports/{{ inventory_hostname }}.json"
    mode: "0644"
  delegate_to: localhost
"""

RETURN = r"""
report:
  description: The report (the same data as the C(<cluster>.json) file the role writes).
  returned: always
  type: dict
  contains:
    cluster:
      description: The cluster.
      type: str
    generated:
      description: When the report was made (UTC).
      type: str
    upgrade:
      description: >-
        Tag, from/to revision and version, C(in_progress), C(finished), C(phase_reached), C(phases_done) and
        C(next_phase) (null once cleaned up).
      type: dict
    timeline:
      description: >-
        One entry per phase run so far, in the procedure's order, with C(started), C(ended), C(state)
        (done, failed, running), C(by) (user, host, AWX job), C(runs) and, for rollouts, C(rollout) (total,
        restarted, failed, current, skipped, seconds).
      type: list
      elements: dict
    data_plane:
      description: C(before) (the baseline, null when none was kept) and C(after) (now), each {namespace -> {proxy version -> pods}}.
      type: dict
    control_plane:
      description: C(before) and C(after), each with C(revisions), C(tags), C(webhooks) and C(gateways).
      type: dict
    failures:
      description: Every failed workload (C(phase), C(workload), C(reason), C(at)) and every failed phase.
      type: list
      elements: dict
    on_old_revision:
      description: Workloads with a pod still injected by the old revision.
      type: list
      elements: dict
    summary:
      description: The fleet page's row - C(version) (proxy versions and pods), C(phase_reached), C(stale_workloads), C(failures).
      type: dict
progress:
  description: The live progress of each rollout (wave, gateways, rollback), as kept in the progress ConfigMap.
  returned: always
  type: dict
"""

from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.progress import PROGRESS_CONFIGMAP
from ansible_collections.meshops.istio.plugins.module_utils.report import build_report, read_journal
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import read_record

ARGUMENT_SPEC = dict(
    cluster=dict(type='str', required=True),
    record=dict(type='str', default='meshops-istio-upgrade'),
    configmap=dict(type='str', default=PROGRESS_CONFIGMAP),
    waves=dict(type='list', elements='dict', default=[]),
    gateways=dict(type='list', elements='dict', default=[]),
)


def run(module):
    params = module.params
    namespace = params['istio_namespace']
    record = read_record(module.client, params['record'], namespace)
    base, journal, progress = read_journal(module.client, params['configmap'], namespace)
    state = MeshState.load(module.client, istio_namespace=namespace)
    report = build_report(state, record, base, journal, progress, params['cluster'], waves=params['waves'],
                          gateways=params['gateways'])
    return {'changed': False, 'report': report, 'progress': progress}


def main():
    MeshopsModule(ARGUMENT_SPEC, istio_namespace=True).run(run)


if __name__ == '__main__':
    main()
