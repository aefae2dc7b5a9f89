#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_upgrade_journal
short_description: Journal the phases of an Istio canary upgrade (start, end, who) for its report
version_added: 1.0.0
description:
  - Writes when a phase of the canary upgrade started and ended, how it ended and who ran it (the controller's
    user and host, the AWX job) into key C(journal.<phase>) of the progress ConfigMap beside the upgrade record
    (C(meshops-istio-upgrade-progress) by default), never into the record itself.
  - With O(baseline=true) it also keeps, once per target revision, the mesh as it is before the upgrade changes
    it (proxy versions per namespace; revisions, tags, webhooks and gateways) in key C(baseline), so the report
    can show before and after.
  - M(meshops.istio.istio_upgrade_report) reads it. The role C(meshops.istio.istio_canary) calls this module at
    the start and the end of each phase.
author:
  - meshops.istio contributors (@meshops)
options:
  phase:
    description: The phase (V(precheck), V(install), V(tag), V(gateways), V(wave1) .. V(wave9), V(verify), V(rollback), V(cleanup)).
    type: str
    required: true
  event:
    description:
      - V(started) opens a new entry for the phase (a re-run keeps the end of the earlier one as C(previous)).
        Every start is a run of the phase, so it always reports a change. The role journals only the runs of a
        phase that change something, so a re-run that changes nothing stays C(changed=false).
      - V(done) or V(failed) closes it; closing an entry already closed the same way changes nothing.
    type: str
    choices: [started, done, failed]
    required: true
  to_revision:
    description: The upgrade's target revision; entries of another target are not continued.
    type: str
    required: true
  reason:
    description: Why the phase failed (kept with a V(failed) event).
    type: str
  started:
    description:
      - When the phase started (UTC, C(2026-11-30T00:03:40Z)), for a phase journaled only at its end (the role does
        so for precheck, which may write nothing before its checks passed).
    type: str
  baseline:
    description: Keep the mesh as it is now as the upgrade's baseline, unless one is kept for O(to_revision) already.
    type: bool
    default: false
  gateways:
    description: The gateway workloads (C(namespace), C(name)) whose proxies the baseline keeps.
    type: list
    elements: dict
    default: []
  configmap:
    description: The progress ConfigMap (not the upgrade record).
    type: str
    default: meshops-istio-upgrade-progress
  job:
    description:
      - Who runs the phase, for example AWX's C(awx_job_id), C(awx_job_template_name) and C(awx_user_name). Without
        it the controller's user and host (and AWX's C(JOB_ID) environment variable) are recorded.
    type: dict
    suboptions:
      id:
        description: The job's id.
        type: str
      template:
        description: The job template's name.
        type: str
      user:
        description: The user who launched the job.
        type: str
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the entry it would write; writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
notes:
  - Needs C(get), C(create) and C(patch) on ConfigMaps in O(istio_namespace); the baseline also reads what
    M(meshops.istio.istio_revision_info) reads.
seealso:
  - module: meshops.istio.istio_upgrade_report
  - module: meshops.istio.istio_upgrade_state
"""

EXAMPLES = r"""
- name: The wave starts (and the baseline is kept if this is the upgrade's first phase)
  meshops.istio.istio_upgrade_journal:
    phase: wave1
    event: started
    to_revision: 1-15-4
    baseline: true
    job:
      id: "{{ awx_job_id | default(none) }}"

- name: The wave failed
  meshops.istio.istio_upgrade_journal:
    phase: wave1
    event: failed
    to_revision: 1-15-4
    reason: "bar/Deployment/bar: CrashLoopBackOff"
"""

RETURN = r"""
entry:
  description: The phase's journal entry after this call.
  returned: always
  type: dict
  sample:
    phase: wave1
    to_revision: 1-15-4
    started: "2026-11-30T00:03:40Z"
    ended: "2026-11-30T00:04:02Z"
    state: done
    runs: 1
    by: {user: awx, host: awx-task-1, pid: 77, job: "42", job_template: upgrade-wave1}
baseline_kept:
  description: Whether this call kept the baseline (false when one was kept for this target already).
  returned: always
  type: bool
"""

from ansible_collections.meshops.istio.plugins.module_utils.args import JOB_OPTIONS
from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.progress import PROGRESS_CONFIGMAP, actor
from ansible_collections.meshops.istio.plugins.module_utils.report import (
    BASELINE_KEY,
    EVENTS,
    JOURNAL_PREFIX,
    baseline,
    journal_update,
    read_journal,
    write_journal,
)
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import check_name

ARGUMENT_SPEC = dict(
    phase=dict(type='str', required=True),
    event=dict(type='str', required=True, choices=list(EVENTS)),
    to_revision=dict(type='str', required=True),
    reason=dict(type='str'),
    started=dict(type='str'),
    baseline=dict(type='bool', default=False),
    gateways=dict(type='list', elements='dict', default=[]),
    configmap=dict(type='str', default=PROGRESS_CONFIGMAP),
    job=dict(type='dict', options=JOB_OPTIONS),
)


def run(module):
    params = module.params
    phase = check_name('phase', params['phase'])
    namespace = params['istio_namespace']
    who = actor(params['job'])
    base, journal, _progress = read_journal(module.client, params['configmap'], namespace)
    changes = {}
    entry = journal_update(journal, phase, params['event'], params['to_revision'], by=who,
                           message=params['reason'], started=params['started'])
    if entry is not None:
        changes[JOURNAL_PREFIX + phase] = entry
    kept = False
    if params['baseline'] and (base or {}).get('to_revision') != params['to_revision']:
        state = MeshState.load(module.client, istio_namespace=namespace)
        record = {'to_revision': params['to_revision']}
        changes[BASELINE_KEY] = baseline(state, record, params['gateways'], by=who)
        kept = True
    write_journal(module.client, params['configmap'], namespace, changes, check_mode=module.check_mode)
    result = {'changed': bool(changes), 'entry': entry or journal.get(phase), 'baseline_kept': kept}
    if module.diff and changes:
        before = journal.get(phase)
        result['diff'] = {'before_header': '%s/%s %s%s' % (namespace, params['configmap'], JOURNAL_PREFIX, phase),
                          'after_header': '%s/%s %s%s' % (namespace, params['configmap'], JOURNAL_PREFIX, phase),
                          'before': before or {}, 'after': entry or before or {}}
    return result


def main():
    MeshopsModule(ARGUMENT_SPEC, istio_namespace=True).run(run)


if __name__ == '__main__':
    main()
