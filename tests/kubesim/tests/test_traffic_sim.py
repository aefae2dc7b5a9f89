"""Unit tests of the simulator's traffic weights (tests/kubesim/traffic.py) on an in-process store."""
import pytest

from kubesim import scenarios
from kubesim import traffic as sim
from kubesim.store import Store

NS = 'bookinfo'


def pod(name, version, phase='Running', app='reviews', deleting=False):
    meta = {'name': name, 'namespace': NS, 'labels': {'app': app, 'version': version}}
    if deleting:
        meta['deletionTimestamp'] = '2026-01-01T00:00:00Z'
        meta['finalizers'] = ['x']
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': meta,
            'spec': {'containers': [{'name': app, 'image': 'x'}]}, 'status': {'phase': phase}}


@pytest.fixture
def store():
    st = Store()
    for crd in scenarios.crd_objects():
        st.create('customresourcedefinitions.apiextensions.k8s.io', crd, admission=False)
    st.create('namespaces', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NS}}, admission=False)
    st.create('services', {'apiVersion': 'v1', 'kind': 'Service', 'metadata': {'name': 'reviews', 'namespace': NS},
                           'spec': {'selector': {'app': 'reviews'}, 'ports': [{'port': 9080}]}},
              admission=False)
    for p in (pod('reviews-v1-a', 'v1'), pod('reviews-v1-b', 'v1'), pod('reviews-v2-a', 'v2')):
        st.create('pods', p, admission=False, reset_status=False)
    return st


def vs(route, name='reviews', hosts=('reviews',), match=None):
    http = {'route': route}
    if match:
        http['match'] = match
    return {'apiVersion': 'networking.istio.io/v1beta1', 'kind': 'VirtualService',
            'metadata': {'name': name, 'namespace': NS}, 'spec': {'hosts': list(hosts), 'http': [http]}}


def dr(subsets, host='reviews'):
    return {'apiVersion': 'networking.istio.io/v1beta1', 'kind': 'DestinationRule',
            'metadata': {'name': 'reviews', 'namespace': NS},
            'spec': {'host': host, 'subsets': [{'name': n, 'labels': l} for n, l in subsets]}}


def d(subset, weight=None, host='reviews'):
    out = {'destination': {'host': host}}
    if subset:
        out['destination']['subset'] = subset
    if weight is not None:
        out['weight'] = weight
    return out


def factors(store):
    f = sim.traffic_factor(store)
    return {p['metadata']['name']: round(f(p), 6) for p in store.list('pods', NS)}


def test_no_virtual_service_means_plain_load_balancing(store):
    assert sim.weights_for(store, NS, 'reviews') == {}
    assert factors(store) == {'reviews-v1-a': 1.0, 'reviews-v1-b': 1.0, 'reviews-v2-a': 1.0}


def test_weights_follow_subsets_labels(store):
    store.create(sim.DESTINATION_RULES, dr([('v1', {'version': 'v1'}), ('v2', {'version': 'v2'})]), admission=False)
    store.create(sim.VIRTUAL_SERVICES, vs([d('v1', 90), d('v2', 10)]), admission=False)
    assert sim.weights_for(store, NS, 'reviews') == {(('version', 'v1'),): 90, (('version', 'v2'),): 10}
    assert sim.weights_for(store, NS, 'reviews.bookinfo.svc.cluster.local') == {
        (('version', 'v1'),): 90, (('version', 'v2'),): 10}
    # 3 pods share the Service; v1's 90% over 2 pods, v2's 10% on its one pod
    assert factors(store) == {'reviews-v1-a': 1.35, 'reviews-v1-b': 1.35, 'reviews-v2-a': 0.3}


def test_all_traffic_on_stable_leaves_the_canary_idle(store):
    store.create(sim.DESTINATION_RULES, dr([('v1', {'version': 'v1'}), ('v2', {'version': 'v2'})]), admission=False)
    store.create(sim.VIRTUAL_SERVICES, vs([d('v1', 100), d('v2', 0)]), admission=False)
    assert factors(store) == {'reviews-v1-a': 1.5, 'reviews-v1-b': 1.5, 'reviews-v2-a': 0.0}


def test_unweighted_single_destination_and_no_subset(store):
    store.create(sim.VIRTUAL_SERVICES, vs([d(None)]), admission=False)
    assert sim.weights_for(store, NS, 'reviews') == {(): 100}
    assert factors(store) == {'reviews-v1-a': 1.0, 'reviews-v1-b': 1.0, 'reviews-v2-a': 1.0}


def test_undefined_subset_and_match_routes_are_ignored(store):
    store.create(sim.DESTINATION_RULES, dr([('v1', {'version': 'v1'})]), admission=False)
    store.create(sim.VIRTUAL_SERVICES, vs([d('v2', 100)], name='testers',
                                          match=[{'headers': {'end-user': {'exact': 'jason'}}}]), admission=False)
    assert sim.weights_for(store, NS, 'reviews') == {}
    store.create(sim.VIRTUAL_SERVICES, vs([d('v1', 50), d('v2', 50)]), admission=False)
    assert sim.weights_for(store, NS, 'reviews') == {(('version', 'v1'),): 50}
    assert factors(store)['reviews-v2-a'] == 0.0


def test_dead_pods_do_not_take_a_share(store):
    store.create('pods', pod('reviews-v2-b', 'v2', phase='Pending'), admission=False, reset_status=False)
    store.create(sim.DESTINATION_RULES, dr([('v1', {'version': 'v1'}), ('v2', {'version': 'v2'})]), admission=False)
    store.create(sim.VIRTUAL_SERVICES, vs([d('v1', 50), d('v2', 50)]), admission=False)
    f = factors(store)
    # live members: v1-a, v1-b, v2-a (v2-b is pending)
    assert f['reviews-v2-a'] == 1.5 and f['reviews-v1-a'] == 0.75


def test_without_istio_crds_everything_is_plain():
    st = Store()
    st.create('namespaces', {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NS}}, admission=False)
    assert sim.weights_for(st, NS, 'reviews') == {}
