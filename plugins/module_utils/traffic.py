# -*- coding: utf-8 -*-
# Copyright: meshops.istio developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Weighted traffic shifting with an Istio VirtualService and DestinationRule.

This is the pure model behind ``meshops.istio.istio_traffic_shift``: it takes the objects as they are
on the cluster (plain dicts, or ``None`` when absent) and computes what they must become. It never
talks to the API itself, so it is fully unit-testable.

What the module manages is recorded in one annotation per object (``MANAGED_ANNOTATION``), a JSON
document such as ``{"created": true, "subsets": ["v1", "v2"]}`` on the DestinationRule and
``{"created": false, "routes": ["reviews"]}`` on the VirtualService. ``state: absent`` removes
exactly that: the subsets and routes the module added, and the objects it created once nothing
else is left in them. Anything the module found already there (other routes, other subsets,
``trafficPolicy``, retries, timeouts, ...) is preserved untouched by both states.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.meshops.istio.plugins.module_utils.args import DNS1123_LABEL
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

GROUP = 'networking.istio.io'
DEFAULT_API_VERSION = GROUP + '/v1beta1'
MANAGED_ANNOTATION = 'meshops.istio/traffic-shift'
MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
MANAGED_BY_VALUE = 'meshops.istio'

# Kubernetes label keys: optional DNS-1123 subdomain prefix and a name of at most 63 characters.
_LABEL_NAME = re.compile(r'^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$')
_LABEL_PREFIX = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')
_LABEL_VALUE = re.compile(r'^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$')

# Server-populated metadata that must not take part in comparisons or diffs.
_VOLATILE_METADATA = ('resourceVersion', 'uid', 'creationTimestamp', 'generation', 'managedFields',
                      'selfLink', 'deletionTimestamp', 'deletionGracePeriodSeconds')


class TrafficShiftError(InvalidInput):
    """Invalid input, or a cluster state the module refuses to change (with the reason); nothing was sent."""


# --------------------------------------------------------------------------------------------------
# Input validation


def _check_label_key(key):
    if not isinstance(key, str) or not key:
        return False
    prefix, sep, name = key.rpartition('/')
    if sep and (not prefix or len(prefix) > 253 or not _LABEL_PREFIX.match(prefix)):
        return False
    return len(name) <= 63 and bool(_LABEL_NAME.match(name))


def validate_subsets(subsets):
    """Normalise the ``subsets`` option into an ordered list of ``(name, labels)``."""
    result = []
    seen = set()
    for index, item in enumerate(subsets or []):
        if not isinstance(item, dict):
            raise TrafficShiftError('subsets[%d] must be a dict with name and labels, got %r' % (index, item))
        name = item.get('name')
        if not isinstance(name, str) or not DNS1123_LABEL.match(name) or len(name) > 63:
            raise TrafficShiftError(
                'subsets[%d].name %r is not a valid subset name: Istio requires a DNS-1123 label '
                '(lower case letters, digits and "-", e.g. v1 or canary)' % (index, name))
        if name in seen:
            raise TrafficShiftError('subset %r is given twice in subsets' % name)
        seen.add(name)
        labels = item.get('labels')
        if not isinstance(labels, dict) or not labels:
            raise TrafficShiftError(
                'subsets[%d] (%s) needs labels, a non-empty dict that selects its pods, e.g. {version: %s}'
                % (index, name, name))
        clean = {}
        for key, value in labels.items():
            if isinstance(value, bool) or isinstance(value, (int, float)):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            if not _check_label_key(key):
                raise TrafficShiftError('subset %s: %r is not a valid label key' % (name, key))
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                raise TrafficShiftError('subset %s: %r is not a valid value for label %s' % (name, value, key))
            clean[key] = value
        result.append((name, clean))
    return result


def normalize_weights(weights):
    """Turn ``weights`` (a dict subset -> weight, or a list of ``{subset, weight}``) into an ordered
    list of ``(subset, weight)`` whose weights are integers from 0 to 100 summing to exactly 100."""
    pairs = []
    if isinstance(weights, dict):
        pairs = list(weights.items())
    elif isinstance(weights, list):
        for index, item in enumerate(weights):
            if not isinstance(item, dict) or 'subset' not in item or 'weight' not in item:
                raise TrafficShiftError(
                    'weights[%d] must be a dict with keys subset and weight, got %r' % (index, item))
            extra = set(item) - set(('subset', 'weight'))
            if extra:
                raise TrafficShiftError('weights[%d] has unknown keys: %s' % (index, ', '.join(sorted(extra))))
            pairs.append((item['subset'], item['weight']))
    else:
        raise TrafficShiftError(
            'weights must be a dict (subset: weight) or a list of {subset, weight}, got %r' % (weights,))
    if not pairs:
        raise TrafficShiftError('weights must name at least one subset')
    result = []
    seen = set()
    for subset, weight in pairs:
        if not isinstance(subset, str) or not subset:
            raise TrafficShiftError('weights: subset names must be non-empty strings, got %r' % (subset,))
        if subset in seen:
            raise TrafficShiftError('weights: subset %r is given twice' % subset)
        seen.add(subset)
        if isinstance(weight, bool):
            raise TrafficShiftError('weights: the weight of %s must be an integer, got %r' % (subset, weight))
        if isinstance(weight, str):
            try:
                weight = int(weight.strip())
            except ValueError:
                raise TrafficShiftError('weights: the weight of %s must be an integer, got %r' % (subset, weight))
        elif isinstance(weight, float):
            if weight != int(weight):
                raise TrafficShiftError(
                    'weights: the weight of %s must be a whole number (Istio weights are integers), got %r'
                    % (subset, weight))
            weight = int(weight)
        elif not isinstance(weight, int):
            raise TrafficShiftError('weights: the weight of %s must be an integer, got %r' % (subset, weight))
        if weight < 0 or weight > 100:
            raise TrafficShiftError('weights: the weight of %s must be between 0 and 100, got %d' % (subset, weight))
        result.append((subset, weight))
    total = sum(pair[1] for pair in result)
    if total != 100:
        raise TrafficShiftError(
            'weights must sum to 100, got %d (%s)'
            % (total, ' + '.join('%s=%d' % (s, w) for s, w in result)))
    return result


# --------------------------------------------------------------------------------------------------
# Helpers on objects


def short_host(host):
    return host.split('.', 1)[0]


def fqdn(host, namespace):
    """Resolve a service host the way Istio resolves short names in a rule of ``namespace``."""
    parts = host.split('.')
    if len(parts) == 1:
        return '%s.%s.svc.cluster.local' % (host, namespace)
    if len(parts) == 2:
        return '%s.%s.svc.cluster.local' % (parts[0], parts[1])
    if len(parts) == 3 and parts[2] == 'svc':
        return host + '.cluster.local'
    return host


def same_host(a, b, namespace):
    if not isinstance(a, str) or not isinstance(b, str):
        return False
    return fqdn(a, namespace) == fqdn(b, namespace)


def read_marker(obj):
    """The managed-state record of ``obj`` (empty dict when the module does not manage it)."""
    if not obj:
        return {}
    raw = ((obj.get('metadata') or {}).get('annotations') or {}).get(MANAGED_ANNOTATION)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _write_marker(obj, marker):
    meta = obj.setdefault('metadata', {})
    annotations = meta.get('annotations') or {}
    if marker:
        annotations[MANAGED_ANNOTATION] = json.dumps(marker, sort_keys=True, separators=(',', ':'))
    else:
        annotations.pop(MANAGED_ANNOTATION, None)
    if annotations:
        meta['annotations'] = annotations
    else:
        meta.pop('annotations', None)


def _marker_for(obj, key):
    marker = read_marker(obj)
    return {
        'created': bool(marker.get('created')),
        key: [x for x in marker.get(key) or [] if isinstance(x, str)],
    }


def comparable(obj):
    """``obj`` without server-populated fields, for comparisons and diffs."""
    if obj is None:
        return None
    obj = copy.deepcopy(obj)
    obj.pop('status', None)
    meta = obj.get('metadata') or {}
    for key in _VOLATILE_METADATA:
        meta.pop(key, None)
    return obj


def route_destinations(route):
    return [d for d in (route.get('route') or []) if isinstance(d, dict)]


def route_targets_host(route, host, namespace):
    """True when every destination of this HTTP route goes to ``host`` (and there is at least one)."""
    dests = route_destinations(route)
    if not dests:
        return False
    return all(same_host((d.get('destination') or {}).get('host'), host, namespace) for d in dests)


def route_weights(route, host, namespace):
    """Subset -> weight of the destinations of ``route`` that go to ``host``.

    As in Istio, a single destination without weight gets all the traffic."""
    dests = route_destinations(route)
    result = {}
    for d in dests:
        dest = d.get('destination') or {}
        if not same_host(dest.get('host'), host, namespace):
            continue
        weight = d.get('weight')
        if weight is None:
            weight = 100 if len(dests) == 1 else 0
        result[dest.get('subset') or ''] = int(weight)
    return result


def _route_label(route, index):
    return 'http[%d]%s' % (index, ' (%s)' % route['name'] if route.get('name') else '')


def find_route(http, host, namespace, route_name=None):
    """Index of the HTTP route the module shifts, or ``None`` when it has to be added.

    With ``route_name`` the route of that name; without it the one route for ``host`` that has no
    ``match`` (the default route). Routes with ``match`` blocks (header-based routing for testers,
    for instance) are left alone unless named explicitly."""
    if route_name:
        for index, route in enumerate(http):
            if route.get('name') == route_name:
                return index
        return None
    candidates = [i for i, r in enumerate(http) if not r.get('match') and route_targets_host(r, host, namespace)]
    if len(candidates) > 1:
        raise TrafficShiftError(
            'the VirtualService has %d default routes (without match) for %s: %s; choose one with route_name'
            % (len(candidates), host, ', '.join(_route_label(http[i], i) for i in candidates)))
    return candidates[0] if candidates else None


def referenced_subsets(vs, host, namespace):
    """Subsets of ``host`` referenced by any route (http, tcp, tls) of the VirtualService ``vs``."""
    result = set()
    if not vs:
        return result
    spec = vs.get('spec') or {}
    for kind in ('http', 'tcp', 'tls'):
        for route in spec.get(kind) or []:
            if not isinstance(route, dict):
                continue
            dests = list(route_destinations(route))
            mirror = route.get('mirror')
            if isinstance(mirror, dict):
                dests.append({'destination': mirror})
            for d in dests:
                dest = d.get('destination') or {}
                if dest.get('subset') and same_host(dest.get('host'), host, namespace):
                    result.add(dest['subset'])
    return result


def _new_object(api_version, kind, name, namespace, spec):
    return {
        'apiVersion': api_version,
        'kind': kind,
        'metadata': {
            'name': name,
            'namespace': namespace,
            'labels': {MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        },
        'spec': spec,
    }


# --------------------------------------------------------------------------------------------------
# state: present


def present_destination_rule(existing, namespace, name, host, subsets, needed, api_version=DEFAULT_API_VERSION):
    """The DestinationRule with every subset of ``subsets`` ensured.

    ``needed`` are the subset names the routes will use: each must be defined, either by ``subsets``
    or already in the DestinationRule. Subsets the module adds are recorded as managed; an existing
    subset whose labels differ gets the requested labels and keeps its other fields."""
    if existing is None:
        obj = _new_object(api_version, 'DestinationRule', name, namespace, {'host': host, 'subsets': []})
        marker = {'created': True, 'subsets': []}
    else:
        obj = copy.deepcopy(existing)
        spec = obj.setdefault('spec', {})
        if not same_host(spec.get('host'), host, namespace):
            raise TrafficShiftError(
                'DestinationRule %s/%s is for host %r, not %r; give destination_rule the name of a rule for %s '
                '(or a new name)' % (namespace, name, spec.get('host'), host, host))
        marker = _marker_for(existing, 'subsets')
    spec = obj['spec']
    current = spec.get('subsets') or []
    by_name = dict((s.get('name'), s) for s in current if isinstance(s, dict))
    for subset_name, labels in subsets:
        if subset_name in by_name:
            if by_name[subset_name].get('labels') != labels:
                by_name[subset_name]['labels'] = dict(labels)
        else:
            entry = {'name': subset_name, 'labels': dict(labels)}
            current.append(entry)
            by_name[subset_name] = entry
            if subset_name not in marker['subsets']:
                marker['subsets'].append(subset_name)
    missing = [s for s in needed if s not in by_name]
    if missing:
        raise TrafficShiftError(
            'subset%s %s %s not defined in DestinationRule %s/%s%s; define %s in subsets with the labels that '
            'select %s pods (e.g. {name: %s, labels: {version: %s}})'
            % ('s' if len(missing) > 1 else '', ', '.join(missing), 'are' if len(missing) > 1 else 'is',
               namespace, name, '' if existing is not None else ' (it does not exist yet)',
               'them' if len(missing) > 1 else 'it', 'their' if len(missing) > 1 else 'its', missing[0], missing[0]))
    spec['subsets'] = current
    if marker['created'] or marker['subsets']:
        _write_marker(obj, marker)
    return obj


def _weighted_destinations(route, host, namespace, weights):
    """The destinations of ``route`` set to exactly ``weights``: existing entries keep their order and other
    fields (port, headers, ...), new subsets are appended in the given order, others are dropped."""
    wanted = dict(weights)
    result = []
    done = set()
    for d in route_destinations(route):
        dest = d.get('destination') or {}
        subset = dest.get('subset')
        if subset in wanted and subset not in done and same_host(dest.get('host'), host, namespace):
            entry = copy.deepcopy(d)
            entry['weight'] = wanted[subset]
            result.append(entry)
            done.add(subset)
    for subset, weight in weights:
        if subset not in done:
            result.append({'destination': {'host': host, 'subset': subset}, 'weight': weight})
    return result


def present_virtual_service(existing, namespace, name, host, weights, route_name=None, hosts=None, gateways=None,
                            api_version=DEFAULT_API_VERSION):
    """The VirtualService with the route for ``host`` sending ``weights`` (list of (subset, weight)).

    Returns ``(object, route_index)``. Other routes and every other field are preserved."""
    if existing is None:
        spec = {'hosts': list(hosts or [host])}
        if gateways:
            spec['gateways'] = list(gateways)
        spec['http'] = []
        obj = _new_object(api_version, 'VirtualService', name, namespace, spec)
        marker = {'created': True, 'routes': []}
    else:
        obj = copy.deepcopy(existing)
        spec = obj.setdefault('spec', {})
        marker = _marker_for(existing, 'routes')
        if hosts is not None and list(spec.get('hosts') or []) != list(hosts):
            spec['hosts'] = list(hosts)
        if gateways is not None and list(spec.get('gateways') or []) != list(gateways):
            if gateways:
                spec['gateways'] = list(gateways)
            else:
                spec.pop('gateways', None)
    http = spec.get('http') or []
    index = find_route(http, host, namespace, route_name)
    if index is None:
        new_name = route_name or short_host(host)
        for i, route in enumerate(http):
            if route.get('name') == new_name:
                raise TrafficShiftError(
                    'the VirtualService %s/%s already has a route named %s (%s) that is not a default route for %s; '
                    'give route_name to choose the route to shift'
                    % (namespace, name, new_name, _route_label(route, i), host))
        for i, route in enumerate(http):
            if not route.get('match'):
                raise TrafficShiftError(
                    'cannot add a route for %s to VirtualService %s/%s: %s has no match, so it takes all traffic and '
                    'a route added after it would never be used; give route_name to shift that route instead'
                    % (host, namespace, name, _route_label(route, i)))
        http.append({'name': new_name, 'route': []})
        index = len(http) - 1
        if new_name not in marker['routes']:
            marker['routes'].append(new_name)
    route = http[index]
    route['route'] = _weighted_destinations(route, host, namespace, weights)
    spec['http'] = http
    if marker['created'] or marker['routes']:
        _write_marker(obj, marker)
    return obj, index


# --------------------------------------------------------------------------------------------------
# state: absent


def absent_virtual_service(existing):
    """Remove the routes the module added. Returns ``(object or None to delete, removed route names)``.

    A VirtualService the module created is deleted once it has no route left; one it did not create is
    only stripped of the module's routes and marker."""
    if existing is None:
        return None, []
    marker = read_marker(existing)
    if not marker:
        return existing, []
    obj = copy.deepcopy(existing)
    spec = obj.setdefault('spec', {})
    names = set(marker.get('routes') or [])
    http = spec.get('http') or []
    kept = [r for r in http if not (isinstance(r, dict) and r.get('name') in names)]
    removed = [r.get('name') for r in http if isinstance(r, dict) and r.get('name') in names]
    if 'http' in spec:
        spec['http'] = kept
    if marker.get('created') and not kept and not spec.get('tcp') and not spec.get('tls'):
        return None, removed
    _write_marker(obj, {})
    return obj, removed


def absent_destination_rule(existing, still_referenced):
    """Remove the subsets the module added, except those a remaining route still uses.

    Returns ``(object or None to delete, removed subsets, kept subsets)``."""
    if existing is None:
        return None, [], []
    marker = read_marker(existing)
    if not marker:
        return existing, [], []
    obj = copy.deepcopy(existing)
    spec = obj.setdefault('spec', {})
    managed = set(marker.get('subsets') or [])
    subsets = spec.get('subsets') or []
    removed, kept_in_use, remaining = [], [], []
    for s in subsets:
        name = s.get('name') if isinstance(s, dict) else None
        if name in managed and name not in still_referenced:
            removed.append(name)
        else:
            remaining.append(s)
            if name in managed:
                kept_in_use.append(name)
    if 'subsets' in spec or remaining:
        spec['subsets'] = remaining
    if marker.get('created') and not remaining and set(spec) <= set(('host', 'subsets')):
        return None, removed, kept_in_use
    if kept_in_use:
        _write_marker(obj, {'created': bool(marker.get('created')), 'subsets': kept_in_use})
    else:
        _write_marker(obj, {})
    return obj, removed, kept_in_use


# --------------------------------------------------------------------------------------------------
# Plans: what to do with both objects


class Change(object):
    """One object's planned change: ``action`` is none, create, update or delete."""

    def __init__(self, kind, name, before, after):
        self.kind = kind
        self.name = name
        self.before = before
        self.after = after
        if before is None and after is None:
            self.action = 'none'
        elif before is None:
            self.action = 'create'
        elif after is None:
            self.action = 'delete'
        elif comparable(before) == comparable(after):
            self.action = 'none'
        else:
            self.action = 'update'

    @property
    def changed(self):
        return self.action != 'none'


class Plan(object):
    def __init__(self, destination_rule, virtual_service, weights=None, route_index=None, warnings=None,
                 removed_routes=None, removed_subsets=None, removing=False):
        self.removing = removing
        self.destination_rule = destination_rule
        self.virtual_service = virtual_service
        self.weights = weights
        self.route_index = route_index
        self.warnings = warnings or []
        self.removed_routes = removed_routes or []
        self.removed_subsets = removed_subsets or []

    @property
    def changed(self):
        return self.destination_rule.changed or self.virtual_service.changed

    def ordered_changes(self):
        """Make before break: subsets exist before a route uses them; routes go before their subsets."""
        if self.removing:
            return [self.virtual_service, self.destination_rule]
        return [self.destination_rule, self.virtual_service]

    def diff(self):
        return {
            'before': {'destination_rule': comparable(self.destination_rule.before),
                       'virtual_service': comparable(self.virtual_service.before)},
            'after': {'destination_rule': comparable(self.destination_rule.after),
                      'virtual_service': comparable(self.virtual_service.after)},
        }


def plan_present(vs, dr, namespace, host, weights, subsets=None, virtual_service=None, destination_rule=None,
                 route_name=None, hosts=None, gateways=None, api_version=DEFAULT_API_VERSION):
    """Plan ``state: present``: ``weights`` raw (dict or list), ``subsets`` raw list of {name, labels}."""
    if not host or not isinstance(host, str):
        raise TrafficShiftError('host is required: the Service whose traffic is shifted, e.g. reviews')
    pairs = normalize_weights(weights)
    subset_list = validate_subsets(subsets)
    vs_name = virtual_service or short_host(host)
    dr_name = destination_rule or short_host(host)
    new_dr = present_destination_rule(dr, namespace, dr_name, host, subset_list, [pair[0] for pair in pairs],
                                      api_version=api_version)
    new_vs, index = present_virtual_service(vs, namespace, vs_name, host, pairs, route_name=route_name,
                                            hosts=hosts, gateways=gateways, api_version=api_version)
    return Plan(Change('DestinationRule', dr_name, dr, new_dr), Change('VirtualService', vs_name, vs, new_vs),
                weights=dict(pairs), route_index=index)


def plan_absent(vs, dr, namespace, host, virtual_service=None, destination_rule=None):
    vs_name = virtual_service or short_host(host)
    dr_name = destination_rule or short_host(host)
    new_vs, removed_routes = absent_virtual_service(vs)
    still = referenced_subsets(new_vs, host, namespace)
    new_dr, removed, kept = absent_destination_rule(dr, still)
    warnings = []
    if kept:
        warnings.append(
            'kept subset%s %s in DestinationRule %s/%s: still used by routes of VirtualService %s/%s that this '
            'module does not manage' % ('s' if len(kept) > 1 else '', ', '.join(kept), namespace, dr_name,
                                        namespace, vs_name))
    return Plan(Change('DestinationRule', dr_name, dr, new_dr), Change('VirtualService', vs_name, vs, new_vs),
                warnings=warnings, removed_routes=removed_routes, removed_subsets=removed, removing=True)


def current_weights(vs, host, namespace, route_name=None):
    """Subset -> weight of the route the module shifts in ``vs`` (empty when there is none)."""
    if not vs:
        return {}
    http = (vs.get('spec') or {}).get('http') or []
    try:
        index = find_route(http, host, namespace, route_name)
    except TrafficShiftError:
        return {}
    if index is None:
        return {}
    return route_weights(http[index], host, namespace)


def check_api_version(api_version):
    if not api_version.startswith(GROUP + '/'):
        raise TrafficShiftError('api_version must be a version of %s, e.g. %s/v1beta1; got %r'
                                % (GROUP, GROUP, api_version))
    return api_version


def read_split(client, namespace, host, virtual_service=None, destination_rule=None, route_name=None,
               api_version=DEFAULT_API_VERSION):
    """The current split of ``host`` (what istio_traffic_shift_info returns): the weights of its route,
    both objects, and whether istio_traffic_shift manages either."""
    check_api_version(api_version)
    vs = client.get_or_none('VirtualService', virtual_service or short_host(host), namespace, api_version=api_version)
    dr = client.get_or_none('DestinationRule', destination_rule or short_host(host), namespace,
                            api_version=api_version)
    return {'weights': current_weights(vs, host, namespace, route_name), 'virtual_service': comparable(vs),
            'destination_rule': comparable(dr), 'managed': bool(read_marker(vs) or read_marker(dr))}
