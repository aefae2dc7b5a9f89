#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_gateway_rollout
short_description: Wait for istiod to roll its Gateway API gateways and waypoints onto a revision
version_added: 1.1.0
description:
  - Gateway API C(Gateway)s of class C(istio) and waypoints (class C(istio-waypoint)) are deployed by istiod, not
    injected. The revision serving one is the one named by its C(istio.io/rev) label, else its namespace's, else
    the revision tag (as istiod decides it). When the tag moves, istiod re-renders their Deployments and they roll
    by themselves. This module restarts nothing; it waits until every one following O(tag) is served by
    O(revision), its pods are rendered by it and run O(version), and its Deployment is rolled out.
  - Gateways pinned to another revision by their own C(istio.io/rev) label are not waited for; they are returned
    in RV(pinned) (cleanup refuses to remove a revision they still use).
  - Read-only; check mode and a second run change nothing (it never reports a change).
author:
  - meshops.istio contributors (@meshops)
options:
  revision:
    description: The revision the gateways following O(tag) must be served by, for example V(1-30-3).
    type: str
    required: true
  version:
    description: The Istio version their proxies must run.
    type: str
    required: true
  tag:
    description: The revision tag gateways without their own C(istio.io/rev) label follow.
    type: str
    default: default
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.wait
  - meshops.istio.lease
attributes:
  check_mode:
    support: full
    description: The module only reads; in check mode it reports the gateways without waiting.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
"""

EXAMPLES = r"""
- name: Wait for the waypoints and the ingress Gateway to run the new revision after the tag moved
  meshops.istio.istio_gateway_rollout:
    revision: 1-30-3
    version: 1.30.3
    wait_timeout: 300
"""

RETURN = r"""
gateways:
  description: Every istiod-deployed Gateway and waypoint - C(namespace), C(name), C(class), C(kind) (V(gateway) or
    V(waypoint)), C(pinned_revision), C(serving_revision), C(deployment), the C(revisions) and C(versions) of its
    pods, C(ready).
  type: list
  elements: dict
  returned: always
moved:
  description: Gateways that were not yet on the revision when the module started (istiod rolled them).
  type: list
  elements: str
  returned: always
pinned:
  description: Gateways pinned by C(istio.io/rev) to another revision, as C(kind namespace/name (istio.io/rev=R)).
  type: list
  elements: str
  returned: always
pending:
  description: Gateways still not on the revision when the wait timed out, with why.
  type: list
  elements: str
  returned: on failure
"""

from ansible_collections.meshops.istio.plugins.module_utils import ambient
from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState, validate_revision_name
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule


def run(module):
    params = module.params
    validate_revision_name(params['revision'])
    namespace = params['istio_namespace']

    def load():
        state = MeshState.load(module.client, namespace, workloads=False)
        return ambient.AmbientState.load(module.client, state, namespace)

    version = str(params['version']).lstrip('v')
    if params['wait'] and not module.check_mode:
        found, moved, pinned = ambient.wait_gateways(load, params['revision'], version, params['tag'],
                                                     params['wait_timeout'])
    else:
        found = load()
        follow, pinned = found.gateways_of(params['revision'], params['tag'])
        moved = sorted(g.ref for g in follow if not g.on(params['revision'], version))
    return {'changed': False, 'gateways': [g.to_dict() for g in found.gateways], 'moved': moved,
            'pinned': ['%s %s/%s (istio.io/rev=%s)' % (g.kind, g.namespace, g.name, g.pinned) for g in pinned],
            'msg': '%d gateway(s) on %s%s' % (len(found.gateways) - len(pinned), params['revision'],
                                              '; pinned elsewhere: %d' % len(pinned) if pinned else '')}


def main():
    MeshopsModule(dict(
        revision=dict(type='str', required=True),
        version=dict(type='str', required=True),
        tag=dict(type='str', default='default'),
    ), istio_namespace=True, wait=True, lease=True).run(run)


if __name__ == '__main__':
    main()
