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
options:
  namespace:
    description: Namespace of the Service, the VirtualService and the DestinationRule.
    type: str
    required: true
  service:
    description:
      - The host whose traffic is shifted, normally the name of a Service in O(namespace) (for example
        V(reviews)); the fully qualified name V(reviews.bookinfo.svc.cluster.local) is accepted too.
      - Used as the DestinationRule's C(host) and as the C(destination.host) of the routes.
    type: str
    required: true
    aliases: [destination_host]
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
  virtual_service:
    description: Name of the VirtualService. Defaults to the short name of O(service).
    type: str
  destination_rule:
    description: Name of the DestinationRule. Defaults to the short name of O(service).
    type: str
  route_name:
    description:
      - Name of the HTTP route of the VirtualService whose weights are set. Created (appended) when the
        VirtualService has no route of that name.
      - Without it the module uses the single default route (without C(match)) for O(service), and fails when
        there are several.
    type: str
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
  api_version:
    description:
      - API version used for VirtualService and DestinationRule. V(networking.istio.io/v1beta1) is served by
        every Istio release this collection supports (1.9 and later).
    type: str
    default: networking.istio.io/v1beta1
  state:
    description:
      - V(present) ensures the subsets and the weights.
      - V(absent) removes the routes and subsets the module added, and the objects it created when nothing
        else is left in them.
      - V(query) only reads the current weights and objects; it never changes anything (the release role uses
        it to resume where a previous run stopped).
    type: str
    choices: [present, absent, query]
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

- name: Roll back to the stable version only
  meshops.istio.istio_traffic_shift:
    namespace: bookinfo
    service: reviews
    weights:
      v1: 100
      v2: 0

- name: Read the current split
  meshops.istio.istio_traffic_shift:
    namespace: bookinfo
    service: reviews
    state: query
  register: reviews_split

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
    - With O(state=query), the current weights (empty when no route for O(service) exists).
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
managed:
  description: With O(state=query), whether the module manages (added something to) either object.
  returned: when O(state=query)
  type: bool
  sample: true
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

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshops.istio.plugins.module_utils.args import (
    AUTH_ARG_SPEC,
    protect_secrets,
)
from ansible_collections.meshops.istio.plugins.module_utils.client import (
    ClusterClient,
    register_resource,
    require_libraries,
)
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    AlreadyExists,
    Conflict,
    MeshopsError,
    NotFound,
)
from ansible_collections.meshops.istio.plugins.module_utils.traffic import (
    GROUP,
    TrafficShiftError,
    comparable,
    current_weights,
    plan_absent,
    plan_present,
    read_marker,
    short_host,
)

CONFLICT_RETRIES = 5
WEBHOOK_HINT = (
    'Istio validates VirtualServices and DestinationRules through its validating webhook '
    '(ValidatingWebhookConfiguration istiod-default-validator); the istiod behind it does not answer, so the '
    'API server refuses every Istio configuration change. Bring istiod back (or point the validator at a '
    'running revision with meshops.istio.istio_revision_tag) and run again.')


def register_kinds(api_version):
    if not api_version.startswith(GROUP + '/'):
        raise TrafficShiftError('api_version must be a version of %s, e.g. %s/v1beta1; got %r'
                                % (GROUP, GROUP, api_version))
    register_resource('VirtualService', api_version, 'virtualservices', True)
    register_resource('DestinationRule', api_version, 'destinationrules', True)


def explain(exc, change=None, done=()):
    """A MeshopsError with the webhook hint and what was already applied, when it applies."""
    msg = exc.message
    if 'failed calling webhook' in msg or 'admission webhook' in msg:
        msg = '%s. %s' % (msg.rstrip('.'), WEBHOOK_HINT if 'failed calling webhook' in msg
                          else 'Istio\'s validation refused the object.')
    if done:
        msg += ' Already applied before the failure: %s.' % ', '.join(done)
    exc.message = msg
    if change is not None:
        exc.details.setdefault('object', '%s %s' % (change.kind, change.name))
    return exc


def apply(client, plan, namespace, check_mode, done):
    """Send the plan's changes (dry run in check mode); return the objects as they are afterwards.

    ``done`` collects what was applied (it survives a conflict that makes the caller re-plan)."""
    result = {}
    for change in plan.ordered_changes():
        obj = change.after
        try:
            if change.action == 'create':
                obj = client.create(change.kind, change.after, namespace=namespace, dry_run=check_mode)
            elif change.action == 'update':
                obj = client.replace(change.kind, change.after, namespace=namespace, dry_run=check_mode)
            elif change.action == 'delete':
                rv = (change.before.get('metadata') or {}).get('resourceVersion')
                client.delete(change.kind, change.name, namespace=namespace, dry_run=check_mode,
                              resource_version=rv, missing_ok=False)
                obj = None
        except (Conflict, NotFound):
            raise
        except MeshopsError as exc:
            raise explain(exc, change, done)
        if change.changed:
            done.append('%s %s %s' % (change.action, change.kind, change.name))
        result[change.kind] = change.after if check_mode else obj
    return result


def run(module, client):
    params = module.params
    namespace = params['namespace']
    service = params['service']
    vs_name = params['virtual_service'] or short_host(service)
    dr_name = params['destination_rule'] or short_host(service)
    if params['state'] == 'present' and params['weights'] is None:
        raise TrafficShiftError('weights is required with state=present, e.g. {v1: 90, v2: 10}')
    register_kinds(params['api_version'])

    if params['state'] == 'query':
        vs = client.get_or_none('VirtualService', vs_name, namespace)
        dr = client.get_or_none('DestinationRule', dr_name, namespace)
        weights = current_weights(vs, service, namespace, params['route_name'])
        return {
            'changed': False,
            'weights': weights,
            'previous_weights': weights,
            'virtual_service': comparable(vs),
            'destination_rule': comparable(dr),
            'actions': {'destination_rule': 'none', 'virtual_service': 'none'},
            'managed': bool(read_marker(vs) or read_marker(dr)),
        }

    done = []
    for attempt in range(CONFLICT_RETRIES):
        vs = client.get_or_none('VirtualService', vs_name, namespace)
        dr = client.get_or_none('DestinationRule', dr_name, namespace)
        previous = current_weights(vs, service, namespace, params['route_name'])
        if params['state'] == 'present':
            plan = plan_present(vs, dr, namespace, service, params['weights'], subsets=params['subsets'],
                                virtual_service=vs_name, destination_rule=dr_name,
                                route_name=params['route_name'], hosts=params['hosts'],
                                gateways=params['gateways'], api_version=params['api_version'])
        else:
            plan = plan_absent(vs, dr, namespace, service, virtual_service=vs_name, destination_rule=dr_name)
        try:
            objects = apply(client, plan, namespace, module.check_mode, done) if plan.changed else {}
            break
        except (Conflict, AlreadyExists, NotFound) as exc:
            # someone changed (or created/deleted) an object since we read it: read again and re-plan
            if attempt == CONFLICT_RETRIES - 1:
                if isinstance(exc, NotFound):
                    exc.message = ('%s. Check that namespace %s exists and that Istio\'s CRDs serve %s '
                                   '(kubectl api-resources --api-group=%s).'
                                   % (exc.message.rstrip('.'), namespace, params['api_version'], GROUP))
                raise explain(exc)
            continue

    vs_after = objects.get('VirtualService', plan.virtual_service.after)
    dr_after = objects.get('DestinationRule', plan.destination_rule.after)
    result = {
        # an attempt cut short by a conflict may already have written something the final plan no longer needs
        'changed': plan.changed or bool(done),
        'weights': dict(plan.weights) if plan.weights is not None else {},
        'previous_weights': previous,
        'virtual_service': comparable(vs_after),
        'destination_rule': comparable(dr_after),
        'actions': {'destination_rule': plan.destination_rule.action,
                    'virtual_service': plan.virtual_service.action},
    }
    if params['state'] == 'present':
        http = ((plan.virtual_service.after or {}).get('spec') or {}).get('http') or []
        route = http[plan.route_index] if plan.route_index is not None and plan.route_index < len(http) else {}
        result['route'] = {'index': plan.route_index, 'name': route.get('name')}
    else:
        result['removed_routes'] = plan.removed_routes
        result['removed_subsets'] = plan.removed_subsets
    if plan.changed and module._diff:
        result['diff'] = plan.diff()
    for warning in plan.warnings:
        module.warn(warning)
    return result


def main():
    argument_spec = copy.deepcopy(AUTH_ARG_SPEC)
    argument_spec.update(
        namespace=dict(type='str', required=True),
        service=dict(type='str', required=True, aliases=['destination_host']),
        subsets=dict(type='list', elements='dict', default=[], options=dict(
            name=dict(type='str', required=True),
            labels=dict(type='dict', required=True),
        )),
        weights=dict(type='raw'),
        virtual_service=dict(type='str'),
        destination_rule=dict(type='str'),
        route_name=dict(type='str'),
        hosts=dict(type='list', elements='str'),
        gateways=dict(type='list', elements='str'),
        api_version=dict(type='str', default='networking.istio.io/v1beta1'),
        state=dict(type='str', choices=['present', 'absent', 'query'], default='present'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    protect_secrets(module)
    require_libraries(module)
    try:
        with ClusterClient.from_params(module.params) as client:
            result = run(module, client)
    except MeshopsError as exc:
        module.fail_json(**exc.to_result())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
