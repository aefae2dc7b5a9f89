"""ClusterClient (plugins/module_utils/client.py) against the simulated API server: retries under
injected faults, watch resume after dropped connections, re-list after 410 Gone, conflicts, dry run,
401 and unreachable servers - the behaviours every module relies on."""
import sys
import threading
import time

import pytest

import helpers as h

sys.path.insert(0, h.BUILD)
h.ensure_collection()

from ansible_collections.meshops.istio.plugins.module_utils import errors  # noqa: E402
from ansible_collections.meshops.istio.plugins.module_utils.client import ClusterClient  # noqa: E402


def client(sim, **params):
    return ClusterClient.from_params(dict({'kubeconfig': sim.kubeconfig}, **params))


def test_reads_and_writes_succeed_under_api_faults(kubesim):
    sim = kubesim('blog', api_error_rate=0.3, seed=7)
    c = client(sim)
    for i in range(10):
        assert c.get('Deployment', 'foo', 'foo')['metadata']['name'] == 'foo'
        items = c.list('Pod', 'foo', label_selector='app=foo')
        assert len(items) >= 2
        c.patch('Namespace', 'baz', {'metadata': {'labels': {'meshops-test': str(i)}}})
    assert c.stats['retries'] > 0
    assert h.get(sim, 'Namespace', 'baz')['metadata']['labels']['meshops-test'] == '9'
    created = c.create('ConfigMap', {'metadata': {'name': 'cm', 'namespace': 'foo'}, 'data': {'a': '1'}})
    assert created['metadata']['name'] == 'cm' and h.get(sim, 'ConfigMap', 'cm', 'foo')['data'] == {'a': '1'}


def test_conflict_dry_run_and_not_found(blog):
    c = client(blog)
    cm = c.create('ConfigMap', {'metadata': {'name': 'x', 'namespace': 'foo'}, 'data': {'v': '1'}})
    stale = dict(cm, data={'v': '2'})
    c.patch('ConfigMap', 'x', {'data': {'v': 'other writer'}}, 'foo')
    with pytest.raises(errors.Conflict) as info:
        c.replace('ConfigMap', stale)
    assert 'replace ConfigMap foo/x failed' in str(info.value) and '409' in str(info.value)
    with pytest.raises(errors.Conflict):
        c.patch('ConfigMap', 'x', {'data': {'v': '3'}}, 'foo', resource_version=cm['metadata']['resourceVersion'])
    assert h.get(blog, 'ConfigMap', 'x', 'foo')['data'] == {'v': 'other writer'}
    c.create('ConfigMap', {'metadata': {'name': 'dry', 'namespace': 'foo'}}, dry_run=True)
    assert h.get(blog, 'ConfigMap', 'dry', 'foo') is None
    with pytest.raises(errors.NotFound) as info:
        c.get('Deployment', 'nope', 'foo')
    assert 'get Deployment foo/nope failed' in str(info.value)
    with pytest.raises(errors.AlreadyExists):
        c.create('ConfigMap', {'metadata': {'name': 'x', 'namespace': 'foo'}})


def test_wait_for_survives_dropped_watches(kubesim):
    sim = kubesim('blog', drop_watch_rate=1.0, seed=3)
    watches = []
    c = client(sim, )
    c.on_request = lambda method, path, query, status: watches.append(query.get('resourceVersion')) \
        if query.get('watch') else None

    def later():
        time.sleep(3)
        c.patch('ConfigMap', 'flag', {'data': {'ready': 'yes'}}, 'foo')

    c.create('ConfigMap', {'metadata': {'name': 'flag', 'namespace': 'foo'}, 'data': {'ready': 'no'}})
    thread = threading.Thread(target=later)
    thread.start()
    obj = c.wait_for('ConfigMap', 'flag', 'foo', lambda o: o and o['data']['ready'] == 'yes', timeout=60)
    thread.join()
    assert obj['data']['ready'] == 'yes'
    # every watch was cut after at most 1.5 s: the wait resumed several times, each time from where the
    # previous one stood (never from scratch)
    assert len(watches) >= 2, watches
    assert all(rv for rv in watches), watches


def test_stream_relists_after_gone(kubesim):
    sim = kubesim('blog', watch_history=3)
    c = client(sim)
    _items, old_rv = c.list_with_version('ConfigMap', 'foo')
    for i in range(10):   # push that resourceVersion out of the server's watch history
        c.create('ConfigMap', {'metadata': {'name': 'c%d' % i, 'namespace': 'foo'}})
    with pytest.raises(errors.Gone):
        for _event in c.watch('ConfigMap', 'foo', resource_version=old_rv, timeout_seconds=5):
            pass
    gen = c.stream('ConfigMap', 'foo', timeout=20, resource_version=old_rv)
    first = next(gen)
    assert first.type == 'LISTED', first          # 410 -> complete state again
    assert {'c%d' % i for i in range(10)} <= {o['metadata']['name'] for o in first.object}
    c.create('ConfigMap', {'metadata': {'name': 'late', 'namespace': 'foo'}})
    for event in gen:
        if event.type == 'ADDED' and event.object['metadata']['name'] == 'late':
            break
    else:
        pytest.fail('the stream did not continue after the re-list')
    gen.close()


def test_wrong_token_is_authentication_failed_without_the_token(blog):
    secret = 'wrong-token-0123456789'
    c = client(blog, api_key=secret)
    with pytest.raises(errors.AuthenticationFailed) as info:
        c.list('Namespace')
    assert '401' in str(info.value) and blog.url in str(info.value)
    assert secret not in str(info.value) and secret not in repr(info.value.details)


def test_stopped_server_is_unreachable(kubesim):
    sim = kubesim('empty')
    c = client(sim)
    assert c.list('Namespace')
    sim.stop()
    started = time.monotonic()
    with pytest.raises(errors.ClusterUnreachable) as info:
        c.list('Namespace')
    assert sim.url in str(info.value) and 'kubeconfig' in str(info.value)
    assert info.value.details['cause'] == 'connect'
    assert time.monotonic() - started < 60


def crd(group, kind, plural, version, scope='Namespaced'):
    return {'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
            'metadata': {'name': '%s.%s' % (plural, group)},
            'spec': {'group': group, 'scope': scope,
                     'names': {'kind': kind, 'plural': plural, 'singular': kind.lower(), 'listKind': kind + 'List'},
                     'versions': [{'name': version, 'served': True, 'storage': True, 'schema': {'openAPIV3Schema': {
                         'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}}]}}


def test_any_kind_the_server_serves_is_reachable_by_discovery(blog):
    """No table of kinds: Sail, OpenShift, Argo Rollouts and Gateway API kinds, registered while the client
    runs, are found by discovery; Istio's and the Gateway API's Gateway need their apiVersion."""
    c = client(blog)
    discovery = []
    c.on_request = lambda method, path, query, status: discovery.append(path) \
        if path in ('/api/v1', '/apis') or path.count('/') == 3 and path.startswith('/apis/') else None
    with pytest.raises(errors.NotFound) as info:
        c.list('Rollout', 'foo')
    assert 'serves no Rollout' in str(info.value)
    kinds = [('sailoperator.io', 'Istio', 'istios', 'v1', 'Cluster'),
             ('apps.openshift.io', 'DeploymentConfig', 'deploymentconfigs', 'v1', 'Namespaced'),
             ('argoproj.io', 'Rollout', 'rollouts', 'v1alpha1', 'Namespaced'),
             ('gateway.networking.k8s.io', 'Gateway', 'gateways', 'v1', 'Namespaced')]
    for group, kind, plural, version, scope in kinds:
        c.create('CustomResourceDefinition', crd(group, kind, plural, version, scope))
    for group, kind, plural, version, scope in kinds:
        c.create(kind, {'apiVersion': '%s/%s' % (group, version), 'metadata': {'name': 'x', 'namespace': 'foo'},
                        'spec': {'from': 'meshops'}})
    assert c.get('Istio', 'x')['apiVersion'] == 'sailoperator.io/v1'
    assert [o['metadata']['name'] for o in c.list('DeploymentConfig', 'foo')] == ['x']
    assert c.get('Rollout', 'x', 'foo')['spec'] == {'from': 'meshops'}
    with pytest.raises(errors.InvalidInput) as info:
        c.get('Gateway', 'x', 'foo')
    assert 'gateway.networking.k8s.io/v1' in str(info.value) and 'networking.istio.io' in str(info.value)
    assert c.get('Gateway', 'x', 'foo', api_version='gateway.networking.k8s.io/v1')['spec'] == {'from': 'meshops'}
    # what the simulated cluster holds, read by its own paths
    assert blog.get_json('/apis/argoproj.io/v1alpha1/namespaces/foo/rollouts/x')['spec'] == {'from': 'meshops'}
    assert blog.get_json('/apis/sailoperator.io/v1/istios/x')['metadata']['name'] == 'x'
    # what discovery cost: the aggregated document, read again after each miss -- never per request
    assert discovery.count('/apis') <= 3, discovery
