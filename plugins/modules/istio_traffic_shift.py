#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_traffic_shift
short_description: Shift a Service's traffic between subsets with an Istio VirtualService and DestinationRule
version_added: 1.0.0
description:
  - The classic canary release of an application in the mesh, without editing YAML by hand. Two (or more)
    Deployments, for example C(reviews-v1) and C(reviews-v2) labelled C(version=v1) and C(version=v2), run
    behind one Service C(reviews). A DestinationRule names the versions as subsets and a VirtualService
    route sends each subset its share of the requests.
  - With O(state=present) the module ensures the DestinationRule for O(service) defines every subset of
    O(subsets) (adding missing ones, updating labels that differ, keeping every other subset and field), then
    sets the weights of the VirtualService's HTTP route for O(service) to exactly O(weights). Subsets are
    written before the route that uses them, so no request is routed to an undefined subset.
  - The route it sets is the one named O(route_name), or, without it, the one default route (no C(match))
    whose destinations all go to O(service). When there is none, a route is added (named O(route_name), or
    after the service). Routes with C(match) blocks (for example header-based routing of testers to the
    canary), other hosts' routes and every other field of both objects are preserved.
  - Objects that do not exist are created (the VirtualService with O(hosts), default the service, and
    O(gateways)).
  - What the module added is recorded in the annotation C(meshops.istio/traffic-shift) of each object.
    O(state=absent) removes exactly that - the routes and subsets it added, and the objects it created once
    nothing else is left in them - and keeps a subset that a route it does not manage still uses (with a
    warning). Objects the module never managed are left alone.
  - Updates are conditional on the resourceVersion read, and are retried from a fresh read when someone
    else changed the object in between, so a concurrent edit is never overwritten.
  - Istio validates these objects through its validating webhook (C(istiod-default-validator)). When the
    istiod behind it is down or gone, the API server refuses every change; the module then fails with the
    webhook's error and says so.
  - Check mode computes the change and sends it as a server-side dry run, so validation and webhook errors
    show up without changing anything. Supports diff mode.
author:
  - meshops.istio contributors (@meshops)
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.traffic
options:
  subsets:
    description:
      - The subsets to ensure in the DestinationRule, each with the pod labels that select it.
      - Subsets named in O(weights) must be defined here or already exist in the DestinationRule.
      - Existing subsets that are not listed are kept.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: Name of the subset (a DNS-1123 label, for example V(v1) or V(canary)).
        type: str
        required: true
      labels:
        description: Pod labels that select the subset's endpoints, for example C(version=v2).
        type: dict
        required: true
  weights:
    description:
      - Share of the requests per subset, in percent. Either a dictionary such as C(v1=90, v2=10) (subset name to weight) or
        a list of dictionaries with keys C(subset) and C(weight).
      - Whole numbers from 0 to 100 that must sum to exactly 100. A subset with weight 0 stays in the route
        and receives no traffic.
      - The route's destinations become exactly these subsets. Destinations already in the route keep their
        order and their other fields (port, headers); new ones are appended.
      - Required with O(state=present).
    type: raw
  hosts:
    description:
      - The C(hosts) of the VirtualService. Defaults to O(service) when the module creates it; an existing
        VirtualService's hosts are only changed when this is given.
    type: list
    elements: str
  gateways:
    description:
      - The C(gateways) the VirtualService is bound to (for example V(istio-ingress/bookinfo-gateway)).
        Not set when omitted; an existing VirtualService's gateways are only changed when this is given
        (an empty list removes them).
    type: list
    elements: str
  state:
    description:
      - V(present) ensures the subsets and the weights.
      - V(absent) removes the routes and subsets the module added, and the objects it created when nothing
        else is left in them.
    type: str
    choices: [present, absent]
    default: present
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Sends the computed VirtualService and DestinationRule as a server-side dry run (C(dryRun=All)), so
      Istio's validation runs and nothing is stored.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Both objects before and after.
notes:
  - Istio requires the weights of one route to sum to 100. Traffic for a subset only reaches pods that match
    its labels, so the Deployments of both versions need them (for example C(version=v1) and C(version=v2))
    besides the Service selector.
seealso:
  - module: meshops.istio.istio_traffic_shift_info
  - name: Istio traffic shifting
    description: The task this module automates.
    link: https://istio.io/latest/docs/tasks/traffic-management/traffic-shifting/
  - name: VirtualService reference
    description: Fields of the HTTP route and its destinations.
    link: https://istio.io/latest/docs/reference/config/networking/virtual-service/
"""

EXAMPLES = r"""
- name: Send 10% of the reviews traffic to v2 (creates the DestinationRule and VirtualService if needed)
  meshops.istio.istio_traffic_shift:
    namespace: bookinfo
    service: reviews
    subsets:
      - name: v1
        labels:
          version: v1
      - name: v2
        labels:
          version: v2
    weights:
      v1: 90
      v2: 10

- name: Move half of the traffic, subsets already defined
  meshops.istio.istio_traffic_shift:
    namespace: bookinfo
    service: reviews
    weights:
      - subset: v1
        weight: 50
      - subset: v2
        weight: 50

- name: Shift a named route of a VirtualService bound to the ingress gateway
  meshops.istio.istio_traffic_shift:
    namespace: bookinfo
    service: productpage
    virtual_service: bookinfo
    route_name: productpage-canary
    gateways:
      - bookinfo-gateway
    hosts:
      - bookinfo.example.com
    subsets:
      - name: stable
        labels:
          track: stable
      - name: canary
        labels:
          track: canary
    weights:
      stable: 75
      canary: 25
    kubeconfig: ~/.kube/prod
    context: prod-eu1

- name: Stop managing the traffic split (removes only what the module added)
  meshops.istio.istio_traffic_shift:
    namespace: bookinfo
    service: reviews
    state: absent
"""

RETURN = r"""
weights:
  description:
    - Subset -> weight of the route the module manages, after the change (what check mode would set).
    - Empty after O(state=absent) removed the route.
  returned: always
  type: dict
  sample: {"v1": 90, "v2": 10}
previous_weights:
  description: Subset -> weight of that route before the change; empty when there was no such route.
  returned: always
  type: dict
  sample: {"v1": 100, "v2": 0}
route:
  description: The HTTP route set with O(state=present), by position in C(spec.http) and name.
  returned: when O(state=present)
  type: dict
  sample: {"index": 0, "name": "reviews"}
virtual_service:
  description: The VirtualService after the change (as the API server answered; the computed object in check
    mode); null when it does not exist (any more).
  returned: always
  type: dict
  sample:
    apiVersion: networking.istio.io/v1beta1
    kind: VirtualService
    metadata:
      name: reviews
      namespace: bookinfo
      annotations:
        meshops.istio/traffic-shift: '{"created":true,"routes":["reviews"]}'
    spec:
      hosts: [reviews]
      http:
        - name: reviews
          route:
            - destination: {host: reviews, subset: v1}
              weight: 90
            - destination: {host: reviews, subset: v2}
              weight: 10
destination_rule:
  description: The DestinationRule after the change; null when it does not exist (any more).
  returned: always
  type: dict
  sample:
    apiVersion: networking.istio.io/v1beta1
    kind: DestinationRule
    metadata:
      name: reviews
      namespace: bookinfo
    spec:
      host: reviews
      subsets:
        - name: v1
          labels: {version: v1}
        - name: v2
          labels: {version: v2}
changes:
  description: The objects created, updated or deleted (or that would be, in check mode), with the action.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "VirtualService", "namespace": "bookinfo", "name": "reviews", "action": "updated"}]
actions:
  description: What was done (or would be, in check mode) to each object - none, create, update or delete.
  returned: always
  type: dict
  sample: {"destination_rule": "create", "virtual_service": "update"}
removed_routes:
  description: Names of the routes removed by O(state=absent).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["reviews"]
removed_subsets:
  description: Subsets removed from the DestinationRule by O(state=absent).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["v1", "v2"]
"""

from ansible_collections.meshops.istio.plugins.module_utils.args import TRAFFIC_TARGET_SPEC
from ansible_collections.meshops.istio.plugins.module_utils.client import DELETE
from ansible_collections.meshops.istio.plugins.module_utils.errors import MeshopsError, NotFound
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.traffic import (
    GROUP,
    TrafficShiftError,
    check_api_version,
    comparable,
    current_weights,
    plan_absent,
    plan_present,
    short_host,
)

WEBHOOK_HINT = (
    'Istio validates VirtualServices and DestinationRules through its validating webhook '
    '(ValidatingWebhookConfiguration istiod-default-validator); the istiod behind it does not answer, so the '
    'API server refuses every Istio configuration change. Bring istiod back (or point the validator at a '
    'running revision with meshops.istio.istio_revision_tag) and run again.')
ARGUMENT_SPEC = dict(
    TRAFFIC_TARGET_SPEC,
    subsets=dict(type='list', elements='dict', default=[], options=dict(
        name=dict(type='str', required=True),
        labels=dict(type='dict', required=True),
    )),
    weights=dict(type='raw'),
    hosts=dict(type='list', elements='str'),
    gateways=dict(type='list', elements='str'),
    state=dict(type='str', choices=['present', 'absent'], default='present'),
)
ATTRIBUTE = {'DestinationRule': 'destination_rule', 'VirtualService': 'virtual_service'}


def explain(exc, namespace, api_version, kind=None, name=None, done=()):
    """The error with what to do about it, and what was already applied."""
    msg = exc.message
    if isinstance(exc, NotFound):
        msg = ('%s. Check that namespace %s exists and that Istio\'s CRDs serve %s '
               '(kubectl api-resources --api-group=%s).' % (msg.rstrip('.'), namespace, api_version, GROUP))
    elif 'failed calling webhook' in msg or 'admission webhook' in msg:
        msg = '%s. %s' % (msg.rstrip('.'), WEBHOOK_HINT if 'failed calling webhook' in msg
                          else 'Istio\'s validation refused the object.')
    if done:
        msg += ' Already applied before the failure: %s.' % ', '.join(done)
    exc.message = msg
    if kind is not None:
        exc.details.setdefault('object', '%s %s' % (kind, name))
    return exc


def run(module):
    params = module.params
    namespace, service, api_version = params['namespace'], params['service'], check_api_version(params['api_version'])
    names = {'VirtualService': params['virtual_service'] or short_host(service),
             'DestinationRule': params['destination_rule'] or short_host(service)}
    if params['state'] == 'present' and params['weights'] is None:
        raise TrafficShiftError('weights is required with state=present, e.g. {v1: 90, v2: 10}')

    state = dict((kind, module.client.get_or_none(kind, name, namespace, api_version=api_version))
                 for kind, name in names.items())

    def plan():
        if params['state'] == 'absent':
            return plan_absent(state['VirtualService'], state['DestinationRule'], namespace, service,
                               virtual_service=names['VirtualService'], destination_rule=names['DestinationRule'])
        return plan_present(state['VirtualService'], state['DestinationRule'], namespace, service, params['weights'],
                            subsets=params['subsets'], virtual_service=names['VirtualService'],
                            destination_rule=names['DestinationRule'], route_name=params['route_name'],
                            hosts=params['hosts'], gateways=params['gateways'], api_version=api_version)

    first = plan()   # every input error is raised here, before anything is written
    plans, updates, done = {}, {}, []
    for change in first.ordered_changes():
        kind = change.kind

        def mutate(live, kind=kind):
            state[kind] = live
            plans[kind] = plan()
            planned = getattr(plans[kind], ATTRIBUTE[kind])
            return None if not planned.changed else DELETE if planned.after is None else planned.after
        try:
            update = module.client.update_with_retry(kind, names[kind], mutate, namespace, api_version=api_version,
                                                     dry_run=module.check_mode, current=change.before)
        except MeshopsError as exc:
            raise explain(exc, namespace, api_version, kind, names[kind], done)
        updates[kind] = update
        state[kind] = update.desired if module.check_mode or not update.changed else update.after
        if update.changed:
            done.append('%s %s %s' % (update.action, kind, names[kind]))
    final = plans.get('VirtualService', first)
    result = {
        'changed': bool(done),
        'weights': dict(final.weights) if final.weights is not None else {},
        'previous_weights': current_weights(first.virtual_service.before, service, namespace, params['route_name']),
        'virtual_service': comparable(state['VirtualService']),
        'destination_rule': comparable(state['DestinationRule']),
        'actions': dict((ATTRIBUTE[kind], update.action) for kind, update in updates.items()),
        'changes': [entry for kind, update in updates.items() for entry in update.changes(kind, names[kind], namespace)],
    }
    if params['state'] == 'present':
        http = (state['VirtualService'] or {}).get('spec', {}).get('http') or []
        index = final.route_index
        result['route'] = {'index': index, 'name': http[index].get('name') if index is not None and index < len(http)
                           else None}
    else:
        result['removed_routes'] = plans.get('VirtualService', first).removed_routes
        result['removed_subsets'] = plans.get('DestinationRule', first).removed_subsets
    if done and module.diff:
        result['diff'] = dict((side, dict((ATTRIBUTE[kind], comparable(getattr(update, attr)))
                                          for kind, update in updates.items()))
                              for side, attr in (('before', 'before'), ('after', 'desired')))
    for warning in plans.get('DestinationRule', first).warnings:
        module.warn(warning)
    return result


def main():
    MeshopsModule(ARGUMENT_SPEC).run(run)


if __name__ == '__main__':
    main()
