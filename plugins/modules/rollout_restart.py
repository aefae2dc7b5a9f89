#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: rollout_restart
short_description: Restart workloads so their pods get the Istio proxy of the expected revision
version_added: 1.0.0
description:
  - Restarts Deployments, StatefulSets and DaemonSets of the selected namespaces the way
    C(kubectl rollout restart) does (a strategic-merge patch of the pod template annotation
    C(kubectl.kubernetes.io/restartedAt)), then waits the way C(kubectl rollout status) does and checks
    that every new pod is injected by the expected revision.
  - On OpenShift, DeploymentConfigs (C(apps.openshift.io/v1)) are restarted the way C(oc rollout latest)
    does it (a C(DeploymentRequest) to their C(instantiate) subresource, which makes a new ReplicationController) and
    waited for the way C(oc rollout status) reads them; with Argo Rollouts installed, Rollouts
    (C(argoproj.io/v1alpha1)) are restarted the way C(kubectl argo rollouts restart) does it (a merge patch
    of C(spec.restartAt), after which Argo evicts the older pods and its ReplicaSets recreate them) and waited for until
    C(status.restartedAt) caught up and the Rollout is C(Healthy). Both are reported like Deployments.
  - With O(only_stale=true) (the default) only workloads with a pod not injected by the expected
    revision are restarted, so running it again reports no change.
  - The expected revision of a workload is the one its namespace selects, with the label precedence
    Istio's webhooks apply (C(istio-injection=enabled) wins over C(istio.io/rev); a tag resolves to the
    revision its webhook points at; pod template opt-in/opt-out labels count), unless O(revision) is given.
  - Rollouts run in parallel, at most O(concurrency) at a time, and are followed with shared watches
    (per kind and namespace, or cluster-wide), not by polling each workload. Dropped watches are resumed.
  - A workload whose rollout is stuck is named with the reason (a new pod in C(CrashLoopBackOff), a
    webhook refusing pod creation, C(ProgressDeadlineExceeded), or the timeout with the last status).
    A new pod injected by another revision, or without sidecar, fails the workload as soon as it is
    created, before the rolling update replaces more pods.
    Once a workload fails no further restart is started; those already started are waited for, the
    rest are reported as skipped, and the module fails.
  - A restart already in progress (for example left by an interrupted run) whose new pods are on the
    expected revision is waited for, not restarted again.
  - Paused Deployments, DeploymentConfigs and Rollouts (or a Rollout paused at a canary step, or
    Degraded), StatefulSets or DaemonSets with the C(OnDelete) update strategy (or a StatefulSet partition)
    are reported as skipped with the reason, never silently passed.
author:
  - meshops.istio contributors (@meshops)
options:
  namespaces:
    description:
      - Names of the namespaces whose workloads to restart, in order.
      - A namespace that does not exist fails the module before anything is restarted.
      - Exactly one of O(namespaces) and O(namespace_selector) is required.
    type: list
    elements: str
  namespace_selector:
    description:
      - Label selector of the namespaces whose workloads to restart, for example V(wave=2).
    type: str
  kinds:
    description:
      - The kinds of workloads to restart.
      - By default every kind the cluster serves among these (C(DeploymentConfig) only on OpenShift,
        C(Rollout) only where Argo Rollouts is installed).
      - A kind named here that the cluster does not serve fails the module before anything is restarted.
    type: list
    elements: str
    choices: [Deployment, StatefulSet, DaemonSet, DeploymentConfig, Rollout]
  selector:
    description: Label selector of the workloads (their own labels), for example V(tier=edge).
    type: str
  names:
    description:
      - Only workloads with these names. A name matching no workload fails the module before anything
        is restarted.
    type: list
    elements: str
  only_stale:
    description:
      - Restart only workloads with a pod not injected by the expected revision; the others are
        reported as V(current).
      - Pods that carry a sidecar although nothing selects their namespace (or template) for injection
        any more are reported as V(skipped), not restarted.
      - With V(false) every selected workload is restarted.
    type: bool
    default: true
  revision:
    description:
      - The revision (or revision tag, resolved to its revision) expected to inject the pods.
      - By default each namespace's effective revision, as Istio resolves its labels.
      - Workloads that nothing selects for injection keep expecting no sidecar.
    type: str
  concurrency:
    description:
      - How many rollouts may be in progress at the same time. V(0) starts them all at once.
    type: int
    default: 10
  wait_timeout:
    description:
      - How many seconds each workload's rollout may take, counted from its restart, before it is
        reported as failed with the last status seen.
      - A new pod in C(CrashLoopBackOff), a webhook refusing pod creation or C(ProgressDeadlineExceeded)
        fail the workload at once, without waiting for the timeout.
    type: int
    default: 300
  progress:
    description:
      - Publish the rollout's live progress while it runs, and print it in the play's output.
      - The module writes done / total, what is rolling and each failed workload with its reason (at most
        every five seconds, a failure at once) into key O(progress.label) of ConfigMap
        O(progress.configmap) in O(progress.namespace), where the report and the status read it. The
        collection's action plugin for this module prints a line at least every O(progress.interval) seconds
        and one for each failure as soon as it is seen, in C(ansible-playbook)'s output and in AWX's job
        output, from the same progress that the module also writes every second into a file on the controller
        (O(progress.local_file)); under C(become) it reads the ConfigMap instead.
      - "Every line starts with C(<label>: <done>/<total> restarted, <n> failed), for example
        C(wave1: 412/1000 restarted, 0 failed, 25 rolling: ...)."
      - Lines are printed when the task runs on the controller (C(ansible_connection=local), as the
        playbooks of this collection do), not in check mode and not with C(async).
      - A progress write that fails (for example RBAC without C(patch) on that ConfigMap) never fails the
        rollout; the module warns once.
    type: dict
    suboptions:
      label:
        description: The rollout's name in the lines and its key in the ConfigMap (for example V(wave1)).
        type: str
        required: true
      configmap:
        description: The ConfigMap that holds the progress (not the upgrade record itself).
        type: str
        default: meshops-istio-upgrade-progress
      namespace:
        description: Namespace of O(progress.configmap).
        type: str
        default: istio-system
      interval:
        description: Seconds between two progress lines (a failure is printed at once).
        type: int
        default: 10
      job:
        description:
          - Who runs the rollout, recorded with it, for example AWX's C(awx_job_id), C(awx_job_template_name)
            and C(awx_user_name) as O(progress.job.id), O(progress.job.template), O(progress.job.user). Without
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
      run_id:
        description: Set by the action plugin to recognise its own run's progress; leave it unset.
        type: str
      local_file:
        description:
          - Set by the action plugin (when the task runs on the controller) to a file that the module rewrites
            with its progress every second and the plugin reads to print the lines; leave it unset.
        type: path
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.wait
  - meshops.istio.lease
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports what would be restarted; nothing is patched.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: >-
      The C(kubectl.kubernetes.io/restartedAt) annotation of each restarted workload (a DeploymentConfig's
      C(status.latestVersion), a Rollout's C(spec.restartAt)), before and after.
notes:
  - Needs C(list) on namespaces and mutatingwebhookconfigurations, C(list) and C(watch) on pods and
    events and on the workload kinds, and C(patch) on the workload kinds; on OpenShift C(create) on
    C(deploymentconfigs/instantiate); with Argo Rollouts C(patch) on C(rollouts) (see docs/rbac.yaml).
  - API cost is one patch per restarted workload plus a constant per namespace (the lists and watches);
    with more than three namespaces the lists and watches are cluster-wide.
  - With O(wait=false) the workloads are patched and not waited for; their new pods are not verified.
seealso:
  - module: meshops.istio.istio_revision_tag
  - module: meshops.istio.istio_revision_info
"""

EXAMPLES = r"""
- name: Wave 1 - move the pods of namespace bar to the revision its tag now points at
  meshops.istio.rollout_restart:
    namespaces: [bar]

- name: Restart the injected ingress gateway in place
  meshops.istio.rollout_restart:
    namespaces: [istio-ingress]
    names: [istio-ingressgateway]
    kinds: [Deployment]
    wait_timeout: 600

- name: Restart the OpenShift DeploymentConfig ratings (as oc rollout latest) and the Argo Rollout reviews
  meshops.istio.rollout_restart:
    namespaces: [bar, baz]
    kinds: [DeploymentConfig, Rollout]

- name: Wave 2 - every namespace labelled wave=2, 25 rollouts at a time
  meshops.istio.rollout_restart:
    namespace_selector: wave=2
    concurrency: 25
  register: wave2

- name: Rollback - restart what runs the new revision after the tag moved back
  meshops.istio.rollout_restart:
    namespaces: "{{ upgraded_namespaces }}"
    revision: 1-14-6

- name: Only the edge tier, whatever its sidecars run
  meshops.istio.rollout_restart:
    namespaces: [shop]
    selector: tier=edge
    only_stale: false
"""

RETURN = r"""
workloads:
  description: Every selected workload and what happened to it, in namespace, kind and name order.
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace of the workload.
      type: str
    kind:
      description: V(Deployment), V(StatefulSet), V(DaemonSet), V(DeploymentConfig) or V(Rollout).
      type: str
    name:
      description: Name of the workload.
      type: str
    action:
      description:
        - V(restarted) (in check mode, would be), V(current) (already on the expected revision),
          V(failed) or V(skipped) (see RV(workloads[].reason)).
      type: str
    from_version:
      description: Proxy version(s) of the pods before, comma separated when mixed; null without sidecars.
      type: str
    to_version:
      description: Proxy version(s) of the new pods; null when not restarted or not waited for.
      type: str
    from_revision:
      description: Revision(s) that injected the pods before.
      type: str
    revision:
      description: The revision expected to inject the pods (null when no sidecar is expected).
      type: str
    duration:
      description: Seconds from the restart to the verified end of the rollout (or the failure).
      type: float
    reason:
      description: Why it was restarted, skipped or failed (for a failure, the stuck reason).
      type: str
  sample:
    - namespace: bar
      kind: Deployment
      name: bar
      action: restarted
      from_version: 1.14.6
      to_version: 1.15.4
      from_revision: 1-14-6
      revision: 1-15-4
      duration: 12.4
      reason: null
changes:
  description: The workloads restarted (or that would be, in check mode), with action V(restarted).
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "Deployment", "namespace": "bar", "name": "bar", "action": "restarted"}]
summary:
  description: How many workloads ended in each action, and the total.
  returned: always
  type: dict
  sample: {"restarted": 1, "current": 0, "failed": 0, "skipped": 0, "total": 1}
"""

from ansible_collections.meshops.istio.plugins.module_utils.args import JOB_OPTIONS
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput
from ansible_collections.meshops.istio.plugins.module_utils.progress import (
    PROGRESS_CONFIGMAP,
    ProgressPublisher,
    actor,
    check_label,
)
from ansible_collections.meshops.istio.plugins.module_utils.rollout import ALL_KINDS, run_rollout

ARGUMENT_SPEC = dict(
    namespaces=dict(type='list', elements='str'),
    namespace_selector=dict(type='str'),
    kinds=dict(type='list', elements='str', choices=list(ALL_KINDS)),
    selector=dict(type='str'),
    names=dict(type='list', elements='str'),
    only_stale=dict(type='bool', default=True),
    revision=dict(type='str'),
    concurrency=dict(type='int', default=10),
    progress=dict(type='dict', options=dict(
        label=dict(type='str', required=True),
        configmap=dict(type='str', default=PROGRESS_CONFIGMAP),
        namespace=dict(type='str', default='istio-system'),
        interval=dict(type='int', default=10),
        job=dict(type='dict', options=JOB_OPTIONS),
        run_id=dict(type='str'),
        local_file=dict(type='path'),
    )),
)


def publisher(module):
    """The live progress writer of this run, or None (not asked for, or check mode: nothing is written)."""
    options = module.params['progress']
    if not options or module.check_mode:
        return None
    if options['interval'] < 1:
        raise InvalidInput('progress.interval must be at least 1 second')
    check_label(options['label'])
    return ProgressPublisher(module.client, options['configmap'], options['namespace'], options['label'],
                             run_id=options['run_id'], by=actor(options['job']), local_file=options['local_file'])


def run(module):
    params = module.params
    progress = publisher(module)
    try:
        return run_rollout(
            module.client, namespaces=params['namespaces'], namespace_selector=params['namespace_selector'],
            kinds=params['kinds'], selector=params['selector'], names=params['names'],
            only_stale=params['only_stale'], revision=params['revision'], wait=params['wait'],
            wait_timeout=params['wait_timeout'], concurrency=params['concurrency'], check_mode=module.check_mode,
            diff=module.diff, progress=progress)
    finally:
        for warning in progress.warnings if progress is not None else []:
            module.warn(warning)


def main():
    MeshopsModule(ARGUMENT_SPEC, wait=True, lease=True, mutually_exclusive=[('namespaces', 'namespace_selector')],
                  required_one_of=[('namespaces', 'namespace_selector')]).run(run)


if __name__ == '__main__':
    main()
