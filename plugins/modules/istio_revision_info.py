#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: istio_revision_info
short_description: Report Istio revisions, tags, namespace selection and sidecar state of workloads
version_added: 1.0.0
description:
  - Reads the cluster and reports the Istio control plane revisions (version, readiness, whether and by
    what each is in use), the revision tags and the revision each points at, the revision each namespace
    selects (with the label precedence Istio's webhooks apply), and every Deployment, StatefulSet and
    DaemonSet with the revision and proxy version of its pods; where the cluster serves them also OpenShift
    DeploymentConfigs (pods through their ReplicationControllers; deployer pods belong to no workload) and
    Argo Rollouts (pods through their ReplicaSets).
  - Lists in RV(stale) the workloads whose pods are not on the revision their namespace (or pod
    template) now selects, that is the ones a rolling restart would move.
  - Never changes anything.
author:
  - meshops.istio developers (@meshops)
options:
  namespaces:
    description:
      - Only report these namespaces (and their workloads) in RV(namespaces), RV(workloads),
        RV(stale) and RV(selected).
      - Revisions' usage is always computed over the whole cluster.
    type: list
    elements: str
  query:
    description:
      - A JMESPath expression evaluated over the RV(workloads) list; the result is returned as
        RV(selected). For example V([?labels.tier=='edge']) or V([?needs_restart].namespace).
    type: str
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.attributes
  - meshops.istio.attributes.info_module
requirements:
  - jmespath (Python library, only for O(query))
notes:
  - A namespace labelled C(istio-injection) is selected by that label alone (V(enabled) means the
    C(default) tag, any other value disables injection) and its C(istio.io/rev) label is ignored, as
    with Istio's own webhooks. Otherwise C(istio.io/rev) names a tag or a revision.
seealso:
  - module: meshops.istio.istio_revision
  - module: meshops.istio.istio_revision_tag
  - module: meshops.istio.rollout_restart
'''

EXAMPLES = r'''
- name: What runs where
  meshops.istio.istio_revision_info:
    kubeconfig: ~/.kube/config
  register: mesh

- name: Show which revision the default tag points at
  ansible.builtin.debug:
    msg: "default -> {{ mesh.tags['default'] }}"

- name: The edge workloads of two namespaces, for a canary wave
  meshops.istio.istio_revision_info:
    namespaces: [foo, bar]
    query: "[?labels.tier=='edge']"
  register: edge

- name: Fail when something still needs a restart
  ansible.builtin.assert:
    that: mesh.stale | length == 0
    fail_msg: "{{ mesh.stale | map(attribute='name') | list }} still run an old proxy"
'''

RETURN = r'''
revisions:
  description: The control plane revisions found in O(namespace).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Revision name (V(default) for a revision-less istiod).
      type: str
      sample: 1-14-6
    version:
      description: Istio version of istiod.
      type: str
      sample: 1.14.6
    ready:
      description: Whether the istiod Deployment has rolled out and all replicas are ready.
      type: bool
    in_use:
      description: Whether anything still uses the revision.
      type: bool
    in_use_by:
      description:
        - What uses it, each with C(kind) V(tag), V(validator), V(namespace) (with C(label)) or
          V(pod) (with C(namespace)).
      type: list
      elements: dict
      sample: [{kind: tag, name: default}, {kind: validator, name: istiod-default-validator}]
    deployment:
      description: Name of the istiod Deployment.
      type: str
      sample: istiod-1-14-6
    injector:
      description: Name of the revision's own injector MutatingWebhookConfiguration.
      type: str
      sample: istio-sidecar-injector-1-14-6
  sample:
    - name: 1-14-6
      version: 1.14.6
      ready: true
      in_use: true
      in_use_by: [{kind: tag, name: default}]
tags:
  description: Revision tags and the revision each points at.
  returned: always
  type: dict
  sample: {default: 1-14-6}
tag_details:
  description: The tags with their webhook name and the services their webhooks call.
  returned: always
  type: list
  elements: dict
namespaces:
  description: Namespaces and the revision their labels select.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Namespace name.
      type: str
    labels:
      description: The namespace's labels.
      type: dict
    selected_by:
      description: >-
        How the namespace is selected for injection: V(istio-injection), V(istio.io/rev),
        V(disabled) or V(none).
      type: str
    selector:
      description: The tag or revision name the labels select (V(default) for istio-injection=enabled).
      type: str
    revision:
      description: The revision that injects new pods in the namespace, or null.
      type: str
    via:
      description: Whether RV(namespaces[].selector) is a V(tag) or a V(revision).
      type: str
    dangling:
      description: The labels select a tag or revision no injector serves.
      type: bool
    warnings:
      description: Problems with the labels (both labels set, a tag pointing at a removed istiod).
      type: list
      elements: str
workloads:
  description: Deployments, StatefulSets, DaemonSets, DeploymentConfigs and Rollouts with the sidecars of their pods.
  returned: always
  type: list
  elements: dict
  contains:
    namespace:
      description: Namespace.
      type: str
    kind:
      description: Deployment, StatefulSet, DaemonSet, DeploymentConfig or Rollout.
      type: str
    name:
      description: Name.
      type: str
    labels:
      description: The workload's labels.
      type: dict
    revision:
      description: The revision that injected its pods (comma separated when they differ), or null.
      type: str
    revisions:
      description: The revisions of its pods.
      type: list
      elements: str
    versions:
      description: The istio-proxy versions of its pods.
      type: list
      elements: str
    expected_revision:
      description: The revision its namespace (or pod template) selects now.
      type: str
    ready:
      description: All desired replicas are ready.
      type: bool
    needs_restart:
      description: Its pods are not (all) on RV(workloads[].expected_revision).
      type: bool
    reason:
      description: Why it needs a restart.
      type: str
stale:
  description: The workloads that need a restart (same fields as RV(workloads)).
  returned: always
  type: list
  elements: dict
unmovable:
  description:
    - Injected pods no rollout restart replaces (bare pods, pods of Jobs and CronJobs, of owners the collection
      does not restart), each with C(namespace), C(name), C(owner) (V(bare pod), V(Job migrate),
      V(CronJob report, Job report-manual)), C(revision), C(version) and C(expected_revision).
  returned: always
  type: list
  elements: dict
problems:
  description:
    - Hazards in the wiring of webhooks and revisions, each with C(kind) (V(tag), V(validator), V(revision),
      V(injector), V(namespace) or V(pod)), C(name) and C(problem) (what is wrong and what to do).
    - V(pod) - an unmovable pod (RV(unmovable)) not on the revision its namespace selects now; only
      restarting or deleting it by hand moves it.
    - For example a tag or C(istiod-default-validator) calling an istiod that was removed, which makes every
      pod creation or Istio configuration change fail.
  returned: always
  type: list
  elements: dict
  sample:
    - kind: tag
      name: default
      problem: "tag default points at revision 1-14-6 whose istiod is gone: ..."
selected:
  description: The result of O(query) over RV(workloads).
  returned: when O(query) is given
  type: raw
'''

from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput
from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule

try:
    import jmespath
    HAS_JMESPATH = True
except ImportError:
    jmespath = None
    HAS_JMESPATH = False


def compile_query(query):
    """The compiled JMESPath expression, or InvalidInput naming the problem."""
    if not query:
        return None
    try:
        return jmespath.compile(query)
    except jmespath.exceptions.JMESPathError as exc:
        raise InvalidInput('query %r is not a valid JMESPath expression: %s' % (query, exc))


def run(module):
    params = module.params
    expression = compile_query(params.get('query'))
    state = MeshState.load(module.client, params['istio_namespace'])
    wanted = params.get('namespaces')
    if wanted:
        missing = [name for name in wanted if name not in state.namespaces]
        if missing:
            raise InvalidInput('namespaces %s do not exist on the cluster' % ', '.join(missing),
                               details={'missing': missing})
    result = state.to_dict(wanted)
    if expression is not None:
        result['selected'] = expression.search(result['workloads'])
    return result


def main():
    module = MeshopsModule(dict(namespaces=dict(type='list', elements='str'), query=dict(type='str')),
                           istio_namespace=True)
    if module.params.get('query'):
        module.require('jmespath', HAS_JMESPATH)
    module.run(run)


if __name__ == '__main__':
    main()
