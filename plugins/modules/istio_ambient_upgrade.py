#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_ambient_upgrade
short_description: Move Istio's ambient data plane (istio-cni, ztunnel) onto a new version, node by node
version_added: 1.1.0
description:
  - Finds the ambient data plane on the cluster -- the DaemonSets C(istio-cni-node) and C(ztunnel) of Istio's
    charts in O(istio_namespace) -- and replaces the pod of every node that does not run the target O(version)
    yet (for ztunnel also the revision it takes its configuration and certificates from), then checks it is
    ready on that version.
  - "When the DaemonSet does not carry the target yet and O(helm_chart) is given, its Helm release (the one that
    owns the DaemonSet, C(istio-cni) / C(ztunnel) by default) is upgraded first with C(helm upgrade
    --reuse-values): for ztunnel with C(revision) and C(updateStrategy.type=OnDelete), so that Kubernetes does not
    replace every node's pod by itself; for a local chart with C(global.tag) set to O(version). Without
    O(helm_chart) the DaemonSet must already carry the target."
  - O(component=ztunnel) goes node by node, in batches of O(batch_size) nodes, because replacing a node's ztunnel
    resets the long-lived connections of every pod on it. With O(drain=true) each batch is first cordoned and
    drained through the Eviction API, so PodDisruptionBudgets are honoured; a drain that cannot finish within
    O(drain_timeout) names the pod and the budget that block it. Then the batch's ztunnel pods are deleted, their
    replacements waited for (ready, on O(version)), and the nodes uncordoned.
  - A failure stops at the node it happened on and names it; nodes after it are not touched, and no node stays
    cordoned by the module (nodes cordoned before it ran are left as they were).
  - O(component=cni) with a C(RollingUpdate) DaemonSet waits for Kubernetes' rollout and checks every node's pod;
    with C(OnDelete) it replaces the pods node by node like ztunnel (without draining).
  - "On a mesh without the component (sidecar-only) nothing is done: RV(present) is false and the message says so."
  - A second run reports no change. Check mode reports the batches it would run and changes nothing.
author:
  - meshops.istio contributors (@meshops)
options:
  component:
    description: Which DaemonSet to upgrade.
    type: str
    required: true
    choices: [ztunnel, cni]
  version:
    description: The Istio version every node's pod must run, for example V(1.30.3).
    type: str
    required: true
  revision:
    description:
      - For O(component=ztunnel), the revision it must take its configuration from (C(istiod-<revision>)),
        for example V(1-30-3). Ignored for cni.
    type: str
  batch_size:
    description: How many nodes are upgraded at a time.
    type: int
    default: 1
  drain:
    description: Cordon and drain each batch of nodes before replacing its pods (PodDisruptionBudgets honoured).
    type: bool
    default: false
  drain_timeout:
    description: Seconds a node's drain may take before the module stops, naming the pod that blocks it.
    type: int
    default: 300
  helm_chart:
    description:
      - The component's chart (Istio's C(cni) or C(ztunnel)) - a local path, an C(oci://) reference or a chart name
        in O(helm_repo_url) - to upgrade its Helm release with when the DaemonSet is not on the target yet.
    type: str
  helm_path:
    description: Path (or name on E(PATH)) of the helm binary.
    type: str
    default: helm
  helm_repo_url:
    description: The chart repository of a chart given by name.
    type: str
    default: https://istio-release.storage.googleapis.com/charts
  helm_values:
    description: Values merged over the release's own for the upgrade.
    type: dict
    default: {}
requirements:
  - helm 3.8 or later (with O(helm_chart))
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.wait
  - meshops.istio.lease
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the Helm command and the batches of nodes it would upgrade; nothing is cordoned, evicted or
      deleted.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The version of each node's pod, before and after.
notes:
  - Needs C(get), C(list) and C(patch) on nodes, C(list), C(delete) and C(create pods/eviction) on pods, C(list) on
    daemonsets, namespaces, poddisruptionbudgets and Gateway API gateways.
  - O(wait=false) is not supported for node-by-node upgrades; the module always waits for each node.
"""

EXAMPLES = r"""
- name: Upgrade ztunnel node by node, draining each node first
  meshops.istio.istio_ambient_upgrade:
    component: ztunnel
    version: 1.30.3
    revision: 1-30-3
    batch_size: 1
    drain: true
    drain_timeout: 300

- name: Wait for istio-cni's rolling update to reach every node
  meshops.istio.istio_ambient_upgrade:
    component: cni
    version: 1.30.3
"""

RETURN = r"""
present:
  description: Whether the cluster has the component's DaemonSet (false on a sidecar-only mesh; the message says so).
  type: bool
  returned: always
daemonset:
  description: The component's DaemonSet as found before the run (name, namespace, version, revision, strategy, nodes).
  type: dict
  returned: when the component exists
batches:
  description: The batches of nodes upgraded (or, in check mode, to upgrade), in order.
  type: list
  elements: list
  returned: always
upgraded:
  description: Nodes whose pod was replaced (in check mode, would be).
  type: list
  elements: str
  returned: always
nodes:
  description: Per node - C(node), C(action) (V(upgraded), V(upgrade) in check mode, V(current), V(failed)),
    C(from_version), C(to_version), C(pod) and the pods C(evicted) by the drain.
  type: list
  elements: dict
  returned: always
helm:
  description: The helm command run (or that check mode would run) to upgrade the component's release.
  type: dict
  returned: when the release was (or would be) upgraded
failed_node:
  description: The node the upgrade stopped at.
  type: str
  returned: on failure
blocking_pods:
  description: Pods a drain could not evict before its timeout.
  type: list
  elements: str
  returned: when a drain was blocked
"""

from ansible_collections.meshops.istio.plugins.module_utils import ambient
from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_PARAM_NAMES
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput
from ansible_collections.meshops.istio.plugins.module_utils.helm import ISTIO_REPO_URL, ChartRef, Helm
from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState, validate_revision_name
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule


def _diff(before, result, version):
    lines_before, lines_after = [], []
    for node in sorted(before.nodes):
        d = before.nodes[node]
        lines_before.append('%s: %s\n' % (node, d.version or 'none'))
        upgraded = node in result['upgraded']
        lines_after.append('%s: %s\n' % (node, version if upgraded else (d.version or 'none')))
    return {'before_header': 'DaemonSet %s/%s' % (before.namespace, before.name),
            'after_header': 'DaemonSet %s/%s' % (before.namespace, before.name),
            'before': ''.join(lines_before), 'after': ''.join(lines_after)}


def _component(module, kind, namespace):
    state = MeshState.load(module.client, namespace, workloads=False)
    return ambient.AmbientState.load(module.client, state, namespace).component(kind)


def run(module):
    params = module.params
    kind = params['component']
    version = str(params['version']).lstrip('v')
    revision = params.get('revision')
    if kind == ambient.ZTUNNEL:
        if not revision:
            raise InvalidInput('component=ztunnel needs revision: the revision whose istiod ztunnel takes its '
                               'configuration from (for example 1-30-3)')
        validate_revision_name(revision)
    if params['batch_size'] < 1:
        raise InvalidInput('batch_size must be at least 1, got %s' % params['batch_size'])
    if params['drain_timeout'] < 1 or params['wait_timeout'] < 1:
        raise InvalidInput('drain_timeout and wait_timeout must be positive numbers of seconds')
    helm = chart = None
    if params.get('helm_chart'):
        # refuse bad input before anything touches the cluster
        helm = Helm(params['helm_path'], dict((k, params.get(k)) for k in AUTH_PARAM_NAMES))
        chart = ChartRef(params['helm_chart'], params['helm_repo_url'])
    namespace = params['istio_namespace']
    component = _component(module, kind, namespace)
    if component is None:
        return {'changed': False, 'present': False, 'batches': [], 'upgraded': [], 'nodes': [],
                'msg': 'No %s DaemonSet (%s) in %s: the mesh has no ambient data plane (sidecar-only); nothing to '
                       'do.' % (kind, ambient.COMPONENTS[kind]['daemonset'], namespace)}
    before = component
    configured = component.version == version and (kind != ambient.ZTUNNEL or (
        component.revision == revision and component.strategy == 'OnDelete'))
    helm_info = None
    if not configured:
        if chart is None:
            raise InvalidInput('DaemonSet %s/%s runs %s%s: give helm_chart to upgrade its Helm release, or upgrade '
                               'it to %s%s first' % (namespace, component.name, component.version,
                                                     ' (revision %s)' % component.revision if kind == 'ztunnel'
                                                     else '', version, ' with revision=%s and '
                                                     'updateStrategy.type=OnDelete' % revision
                                                     if kind == 'ztunnel' else ''))
        if not component.release:
            raise InvalidInput('DaemonSet %s/%s runs %s and no Helm release owns it (no meta.helm.sh/release-name): '
                               'upgrade it with the installer that made it (e.g. istioctl install) to %s, then run '
                               'again' % (namespace, component.name, component.version, version))
        release = component.release
        values = ambient.release_values(kind, revision, version, chart.local, params['helm_values'])
        if module.check_mode:
            helm_info = {'command': helm.display(['upgrade', release] + chart.args(version) +
                                                 ['-n', namespace, '--reuse-values', '-f', '<values>'])}
        else:
            helm_info = helm.upgrade(release, chart, namespace, values=values, version=version, reuse_values=True,
                                     install=False, wait=False)
            component = _component(module, kind, namespace)
    upgrade = ambient.NodeByNodeUpgrade(
        module.client, component, version, batch_size=params['batch_size'],
        drain=params['drain'] and kind == ambient.ZTUNNEL, drain_timeout=params['drain_timeout'],
        wait_timeout=params['wait_timeout'], check_mode=module.check_mode)
    module.result.update({'present': True, 'daemonset': before.to_dict(), 'batches': [], 'upgraded': [],
                          'nodes': []})
    if helm_info:
        module.result['helm'] = helm_info
    if kind == ambient.CNI and component.strategy != 'OnDelete' and not module.check_mode:
        result = ambient.wait_rolled_out(module.client, component, version, params['wait_timeout'])
    else:
        result = upgrade.run()
    result['present'] = True
    result['daemonset'] = before.to_dict()
    if helm_info:
        result['helm'] = helm_info
        result['changed'] = True
    if module.diff and result['changed']:
        result['diff'] = _diff(before, result, version)
    what = 'would upgrade' if module.check_mode else 'upgraded'
    result['msg'] = ('%s %s on node(s) %s to %s' % (what, kind, ', '.join(result['upgraded']), version)
                     if result['upgraded'] else '%s is on %s on every node' % (kind, version))
    return result


def main():
    MeshopsModule(dict(
        component=dict(type='str', required=True, choices=[ambient.ZTUNNEL, ambient.CNI]),
        version=dict(type='str', required=True),
        revision=dict(type='str'),
        batch_size=dict(type='int', default=1),
        drain=dict(type='bool', default=False),
        drain_timeout=dict(type='int', default=300),
        helm_chart=dict(type='str'),
        helm_path=dict(type='str', default='helm'),
        helm_repo_url=dict(type='str', default=ISTIO_REPO_URL),
        helm_values=dict(type='dict', default={}),
    ), istio_namespace=True, wait=True, lease=True).run(run)


if __name__ == '__main__':
    main()
