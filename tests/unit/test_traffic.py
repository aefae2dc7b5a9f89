"""Unit tests of the VirtualService/DestinationRule model (plugins/module_utils/traffic.py)."""
import copy
import json

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import traffic as t
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

NS = 'bookinfo'
SUBSETS = [{'name': 'v1', 'labels': {'version': 'v1'}}, {'name': 'v2', 'labels': {'version': 'v2'}}]


def stored(obj, rv='7'):
    """What the API server would hand back: the object plus server fields."""
    obj = copy.deepcopy(obj)
    obj['metadata'].update({'resourceVersion': rv, 'uid': 'u-' + obj['metadata']['name'],
                            'creationTimestamp': '2026-01-01T00:00:00Z', 'generation': 1})
    return obj


def user_vs(http, hosts=('reviews',), **spec):
    body = {'hosts': list(hosts), 'http': http}
    body.update(spec)
    return stored({'apiVersion': t.DEFAULT_API_VERSION, 'kind': 'VirtualService',
                   'metadata': {'name': 'reviews', 'namespace': NS}, 'spec': body})


def user_dr(subsets, host='reviews', **spec):
    body = {'host': host, 'subsets': subsets}
    body.update(spec)
    return stored({'apiVersion': t.DEFAULT_API_VERSION, 'kind': 'DestinationRule',
                   'metadata': {'name': 'reviews', 'namespace': NS}, 'spec': body})


def dest(subset, weight=None, host='reviews', **extra):
    d = {'destination': dict({'host': host, 'subset': subset}, **extra)}
    if weight is not None:
        d['weight'] = weight
    return d


# --- input validation ------------------------------------------------------------------------------

@pytest.mark.parametrize('weights, expected', [
    ({'v1': 90, 'v2': 10}, [('v1', 90), ('v2', 10)]),
    ([{'subset': 'v2', 'weight': '25'}, {'subset': 'v1', 'weight': 75}], [('v2', 25), ('v1', 75)]),
    ({'v2': 100.0}, [('v2', 100)]),
    ({'v1': 0, 'v2': 100}, [('v1', 0), ('v2', 100)]),
])
def test_normalize_weights_accepts_dict_and_list(weights, expected):
    assert t.normalize_weights(weights) == expected


@pytest.mark.parametrize('weights, message', [
    ({'v1': 90, 'v2': 20}, 'must sum to 100, got 110 (v1=90 + v2=20)'),
    ({'v1': 50}, 'must sum to 100, got 50'),
    ({'v1': -10, 'v2': 110}, 'between 0 and 100'),
    ({'v1': 50.5, 'v2': 49.5}, 'whole number'),
    ({'v1': 'half', 'v2': 50}, 'must be an integer'),
    ({'v1': True, 'v2': 99}, 'must be an integer'),
    ({}, 'at least one subset'),
    ([{'subset': 'v1', 'weight': 50}, {'subset': 'v1', 'weight': 50}], 'given twice'),
    ([{'subset': 'v1'}], 'keys subset and weight'),
    ([{'subset': 'v1', 'weight': 100, 'extra': 1}], 'unknown keys: extra'),
    ('v1=100', 'must be a dict'),
])
def test_normalize_weights_refuses_bad_input(weights, message):
    with pytest.raises(t.TrafficShiftError) as err:
        t.normalize_weights(weights)
    assert message in str(err.value)
    assert isinstance(err.value, InvalidInput)


@pytest.mark.parametrize('subsets, message', [
    ([{'name': 'V1', 'labels': {'version': 'v1'}}], 'DNS-1123 label'),
    ([{'name': 'v1', 'labels': {}}], 'needs labels'),
    ([{'name': 'v1', 'labels': {'version': 'v1'}}, {'name': 'v1', 'labels': {'version': 'v2'}}], 'given twice'),
    ([{'name': 'v1', 'labels': {'bad key!': 'v1'}}], 'not a valid label key'),
    ([{'name': 'v1', 'labels': {'version': 'v 1'}}], 'not a valid value'),
    (['v1'], 'must be a dict'),
])
def test_validate_subsets_refuses_bad_input(subsets, message):
    with pytest.raises(t.TrafficShiftError) as err:
        t.validate_subsets(subsets)
    assert message in str(err.value)


def test_validate_subsets_accepts_prefixed_keys_and_numbers():
    assert t.validate_subsets([{'name': 'canary', 'labels': {'app.kubernetes.io/version': 2}}]) == [
        ('canary', {'app.kubernetes.io/version': '2'})]


def test_host_matching_resolves_short_names_in_the_namespace():
    assert t.same_host('reviews', 'reviews.bookinfo.svc.cluster.local', NS)
    assert t.same_host('reviews.bookinfo', 'reviews', NS)
    assert t.same_host('reviews.bookinfo.svc', 'reviews', NS)
    assert not t.same_host('reviews.other', 'reviews', NS)
    assert not t.same_host('ratings', 'reviews', NS)


# --- present: creating from nothing ---------------------------------------------------------------

def test_present_creates_both_objects_with_markers():
    plan = t.plan_present(None, None, NS, 'reviews', {'v1': 90, 'v2': 10}, subsets=SUBSETS)
    assert [c.action for c in plan.ordered_changes()] == ['create', 'create']
    assert [c.kind for c in plan.ordered_changes()] == ['DestinationRule', 'VirtualService']
    dr = plan.destination_rule.after
    assert dr['kind'] == 'DestinationRule' and dr['apiVersion'] == 'networking.istio.io/v1beta1'
    assert dr['metadata']['name'] == 'reviews' and dr['metadata']['namespace'] == NS
    assert dr['spec'] == {'host': 'reviews', 'subsets': [{'name': 'v1', 'labels': {'version': 'v1'}},
                                                         {'name': 'v2', 'labels': {'version': 'v2'}}]}
    assert t.read_marker(dr) == {'created': True, 'subsets': ['v1', 'v2']}
    vs = plan.virtual_service.after
    assert vs['spec'] == {'hosts': ['reviews'], 'http': [
        {'name': 'reviews', 'route': [dest('v1', 90), dest('v2', 10)]}]}
    assert t.read_marker(vs) == {'created': True, 'routes': ['reviews']}
    assert vs['metadata']['labels'] == {t.MANAGED_BY_LABEL: t.MANAGED_BY_VALUE}
    assert plan.weights == {'v1': 90, 'v2': 10}
    assert plan.route_index == 0


def test_present_with_gateways_hosts_and_custom_names():
    plan = t.plan_present(None, None, NS, 'productpage', {'stable': 100}, subsets=[
        {'name': 'stable', 'labels': {'track': 'stable'}}], virtual_service='bookinfo', destination_rule='pp',
        route_name='pp-canary', hosts=['bookinfo.example.com'], gateways=['bookinfo-gateway'])
    vs = plan.virtual_service.after
    assert vs['metadata']['name'] == 'bookinfo'
    assert vs['spec']['hosts'] == ['bookinfo.example.com'] and vs['spec']['gateways'] == ['bookinfo-gateway']
    assert vs['spec']['http'][0]['name'] == 'pp-canary'
    assert plan.destination_rule.after['metadata']['name'] == 'pp'


def test_present_needs_labels_for_unknown_subsets():
    with pytest.raises(t.TrafficShiftError) as err:
        t.plan_present(None, None, NS, 'reviews', {'v1': 50, 'v2': 50}, subsets=SUBSETS[:1])
    assert 'subset v2 is not defined in DestinationRule bookinfo/reviews (it does not exist yet)' in str(err.value)


def test_present_is_idempotent_on_what_it_produced():
    plan = t.plan_present(None, None, NS, 'reviews', {'v1': 90, 'v2': 10}, subsets=SUBSETS)
    vs, dr = stored(plan.virtual_service.after, '11'), stored(plan.destination_rule.after, '10')
    again = t.plan_present(vs, dr, NS, 'reviews', {'v2': 10, 'v1': 90}, subsets=SUBSETS)
    assert not again.changed
    assert [c.action for c in again.ordered_changes()] == ['none', 'none']
    # without subsets (they exist) and with the list form: still nothing to do
    assert not t.plan_present(vs, dr, NS, 'reviews', [{'subset': 'v1', 'weight': 90},
                                                      {'subset': 'v2', 'weight': 10}]).changed


def test_present_shifts_weights_and_keeps_resource_version_for_a_conditional_update():
    first = t.plan_present(None, None, NS, 'reviews', {'v1': 90, 'v2': 10}, subsets=SUBSETS)
    vs, dr = stored(first.virtual_service.after, '11'), stored(first.destination_rule.after, '10')
    plan = t.plan_present(vs, dr, NS, 'reviews', {'v1': 50, 'v2': 50}, subsets=SUBSETS)
    assert plan.destination_rule.action == 'none'
    assert plan.virtual_service.action == 'update'
    after = plan.virtual_service.after
    assert after['metadata']['resourceVersion'] == '11'
    assert after['spec']['http'][0]['route'] == [dest('v1', 50), dest('v2', 50)]
    assert t.read_marker(after) == {'created': True, 'routes': ['reviews']}
    diff = plan.diff()
    assert diff['before']['virtual_service']['spec']['http'][0]['route'][1]['weight'] == 10
    assert diff['after']['virtual_service']['spec']['http'][0]['route'][1]['weight'] == 50
    assert 'resourceVersion' not in diff['after']['virtual_service']['metadata']


# --- present: preserving what users wrote ---------------------------------------------------------

def test_present_updates_the_users_default_route_and_preserves_everything_else():
    testers = {'name': 'testers', 'match': [{'headers': {'end-user': {'exact': 'jason'}}}],
               'route': [dest('v2')]}
    default = {'retries': {'attempts': 3}, 'timeout': '10s',
               'route': [dest('v1', port={'number': 9080}), dest('v3', 0)]}
    vs = user_vs([testers, default], tcp=[{'route': [dest('v1')]}])
    dr = user_dr([{'name': 'v1', 'labels': {'version': 'v1'}, 'trafficPolicy': {'tls': {'mode': 'ISTIO_MUTUAL'}}},
                  {'name': 'v3', 'labels': {'version': 'v3'}}],
                 trafficPolicy={'loadBalancer': {'simple': 'LEAST_REQUEST'}})
    plan = t.plan_present(vs, dr, NS, 'reviews', {'v1': 80, 'v2': 20}, subsets=SUBSETS)
    new_dr = plan.destination_rule.after
    assert new_dr['spec']['trafficPolicy'] == {'loadBalancer': {'simple': 'LEAST_REQUEST'}}
    assert new_dr['spec']['subsets'] == [
        {'name': 'v1', 'labels': {'version': 'v1'}, 'trafficPolicy': {'tls': {'mode': 'ISTIO_MUTUAL'}}},
        {'name': 'v3', 'labels': {'version': 'v3'}},
        {'name': 'v2', 'labels': {'version': 'v2'}}]
    # v1 was there before: only v2 is the module's
    assert t.read_marker(new_dr) == {'created': False, 'subsets': ['v2']}
    new_vs = plan.virtual_service.after
    http = new_vs['spec']['http']
    assert http[0] == testers
    assert plan.route_index == 1
    assert http[1]['retries'] == {'attempts': 3} and http[1]['timeout'] == '10s'
    # existing v1 destination keeps its port; v3 (not in weights) leaves; v2 appended
    assert http[1]['route'] == [dest('v1', 80, port={'number': 9080}), dest('v2', 20)]
    assert new_vs['spec']['tcp'] == [{'route': [dest('v1')]}]
    # the module did not add a route: nothing of the VirtualService is the module's
    assert t.read_marker(new_vs) == {}
    assert 'annotations' not in new_vs['metadata']


def test_present_updates_subset_labels_that_differ():
    dr = user_dr([{'name': 'v2', 'labels': {'version': 'old'}}])
    plan = t.plan_present(None, dr, NS, 'reviews', {'v2': 100}, subsets=SUBSETS[1:])
    assert plan.destination_rule.after['spec']['subsets'] == [{'name': 'v2', 'labels': {'version': 'v2'}}]
    assert plan.destination_rule.action == 'update'


def test_present_refuses_a_destination_rule_for_another_host():
    with pytest.raises(t.TrafficShiftError) as err:
        t.plan_present(None, user_dr([], host='ratings'), NS, 'reviews', {'v1': 100}, subsets=SUBSETS)
    assert "is for host 'ratings', not 'reviews'" in str(err.value)


def test_present_accepts_a_fully_qualified_destination_rule_host():
    dr = user_dr(copy.deepcopy(SUBSETS), host='reviews.bookinfo.svc.cluster.local')
    plan = t.plan_present(None, dr, NS, 'reviews', {'v1': 100})
    assert plan.destination_rule.action == 'none'


def test_present_adds_a_route_after_routes_with_match():
    vs = user_vs([{'name': 'testers', 'match': [{'headers': {'end-user': {'exact': 'jason'}}}],
                   'route': [dest('v2')]}])
    plan = t.plan_present(vs, None, NS, 'reviews', {'v1': 100}, subsets=SUBSETS)
    http = plan.virtual_service.after['spec']['http']
    assert [r['name'] for r in http] == ['testers', 'reviews']
    assert plan.route_index == 1
    assert t.read_marker(plan.virtual_service.after) == {'created': False, 'routes': ['reviews']}


def test_present_refuses_to_add_a_route_behind_a_catch_all():
    vs = user_vs([{'name': 'everything', 'route': [dest('v1', host='ratings')]}])
    with pytest.raises(t.TrafficShiftError) as err:
        t.plan_present(vs, None, NS, 'reviews', {'v1': 100}, subsets=SUBSETS)
    assert 'http[0] (everything) has no match' in str(err.value)


def test_present_refuses_ambiguous_default_routes():
    vs = user_vs([{'route': [dest('v1')]}, {'route': [dest('v2')]}])
    with pytest.raises(t.TrafficShiftError) as err:
        t.plan_present(vs, None, NS, 'reviews', {'v1': 100}, subsets=SUBSETS)
    assert 'has 2 default routes' in str(err.value) and 'route_name' in str(err.value)


def test_present_with_route_name_shifts_only_that_route():
    vs = user_vs([{'name': 'testers', 'match': [{'uri': {'prefix': '/beta'}}], 'route': [dest('v1')]},
                  {'name': 'main', 'route': [dest('v1')]}])
    plan = t.plan_present(vs, None, NS, 'reviews', {'v1': 0, 'v2': 100}, subsets=SUBSETS, route_name='testers')
    http = plan.virtual_service.after['spec']['http']
    assert http[0]['route'] == [dest('v1', 0), dest('v2', 100)]
    assert http[1] == {'name': 'main', 'route': [dest('v1')]}


def test_present_keeps_hosts_and_gateways_unless_given():
    vs = user_vs([{'route': [dest('v1')]}], hosts=['reviews', 'reviews.example.com'], gateways=['gw'])
    plan = t.plan_present(vs, None, NS, 'reviews', {'v1': 100}, subsets=SUBSETS)
    assert plan.virtual_service.after['spec']['hosts'] == ['reviews', 'reviews.example.com']
    assert plan.virtual_service.after['spec']['gateways'] == ['gw']
    plan = t.plan_present(vs, None, NS, 'reviews', {'v1': 100}, subsets=SUBSETS, gateways=[], hosts=['reviews'])
    assert 'gateways' not in plan.virtual_service.after['spec']
    assert plan.virtual_service.after['spec']['hosts'] == ['reviews']


def test_single_unweighted_destination_counts_as_all_traffic():
    vs = user_vs([{'route': [dest('v1')]}])
    assert t.current_weights(vs, 'reviews', NS) == {'v1': 100}
    assert t.current_weights(None, 'reviews', NS) == {}


# --- absent ----------------------------------------------------------------------------------------

def test_absent_deletes_what_it_created():
    plan = t.plan_present(None, None, NS, 'reviews', {'v1': 90, 'v2': 10}, subsets=SUBSETS)
    vs, dr = stored(plan.virtual_service.after), stored(plan.destination_rule.after)
    gone = t.plan_absent(vs, dr, NS, 'reviews')
    assert [(c.kind, c.action) for c in gone.ordered_changes()] == [('VirtualService', 'delete'),
                                                                    ('DestinationRule', 'delete')]
    assert gone.removed_routes == ['reviews'] and gone.removed_subsets == ['v1', 'v2']
    assert not t.plan_absent(None, None, NS, 'reviews').changed


def test_absent_restores_a_users_objects_to_what_they_were():
    vs_before = user_vs([{'name': 'testers', 'match': [{'uri': {'prefix': '/beta'}}], 'route': [dest('v1')]}])
    dr_before = user_dr([{'name': 'v1', 'labels': {'version': 'v1'}}])
    plan = t.plan_present(vs_before, dr_before, NS, 'reviews', {'v1': 50, 'v2': 50}, subsets=SUBSETS)
    vs, dr = stored(plan.virtual_service.after), stored(plan.destination_rule.after)
    gone = t.plan_absent(vs, dr, NS, 'reviews')
    assert gone.virtual_service.action == 'update' and gone.destination_rule.action == 'update'
    assert t.comparable(gone.virtual_service.after) == t.comparable(vs_before)
    assert t.comparable(gone.destination_rule.after) == t.comparable(dr_before)
    assert gone.removed_subsets == ['v2']
    # and once more: nothing left to do
    again = t.plan_absent(stored(gone.virtual_service.after), stored(gone.destination_rule.after), NS, 'reviews')
    assert not again.changed


def test_absent_keeps_a_subset_still_used_by_a_users_route():
    plan = t.plan_present(None, None, NS, 'reviews', {'v1': 90, 'v2': 10}, subsets=SUBSETS)
    vs, dr = stored(plan.virtual_service.after), stored(plan.destination_rule.after)
    # a user adds a header route to v2 in the VirtualService the module created
    vs['spec']['http'].insert(0, {'name': 'testers', 'match': [{'uri': {'prefix': '/beta'}}],
                                  'route': [dest('v2')]})
    gone = t.plan_absent(vs, dr, NS, 'reviews')
    assert gone.virtual_service.action == 'update'
    assert gone.virtual_service.after['spec']['http'] == [vs['spec']['http'][0]]
    assert gone.destination_rule.action == 'update'
    assert gone.destination_rule.after['spec']['subsets'] == [{'name': 'v2', 'labels': {'version': 'v2'}}]
    assert gone.removed_subsets == ['v1']
    assert t.read_marker(gone.destination_rule.after) == {'created': True, 'subsets': ['v2']}
    assert len(gone.warnings) == 1 and 'kept subset v2' in gone.warnings[0]


def test_absent_leaves_unmanaged_objects_alone():
    vs = user_vs([{'route': [dest('v1', 50), dest('v2', 50)]}])
    dr = user_dr(copy.deepcopy(SUBSETS))
    gone = t.plan_absent(vs, dr, NS, 'reviews')
    assert not gone.changed


def test_marker_is_compact_json_and_survives_garbage():
    plan = t.plan_present(None, None, NS, 'reviews', {'v1': 100}, subsets=SUBSETS[:1])
    raw = plan.virtual_service.after['metadata']['annotations'][t.MANAGED_ANNOTATION]
    assert json.loads(raw) == {'created': True, 'routes': ['reviews']}
    bad = user_vs([])
    bad['metadata']['annotations'] = {t.MANAGED_ANNOTATION: 'not json'}
    assert t.read_marker(bad) == {}
