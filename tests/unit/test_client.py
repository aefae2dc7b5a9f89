"""ClusterClient against a fake urllib3 pool: retries, Retry-After, error mapping, secrets, watches."""
import json

import pytest
from urllib3 import exceptions as u3exc

from ansible_collections.meshops.istio.plugins.module_utils import client as cl
from ansible_collections.meshops.istio.plugins.module_utils import errors

TOKEN = 's3cr3t-token-value'


class FakeResponse:
    def __init__(self, status, body=None, headers=None, lines=None, fail_after=None):
        self.status = status
        self.headers = headers or {}
        self._body = body
        self.lines = lines
        self.fail_after = fail_after
        self.closed = False

    @property
    def data(self):
        if self._body is None:
            return b''
        return json.dumps(self._body).encode()

    def read(self):
        return self.data

    def stream(self, amt, decode_content=True):
        for i, line in enumerate(self.lines or []):
            if self.fail_after is not None and i >= self.fail_after:
                raise u3exc.ProtocolError('Connection broken', ConnectionResetError(104, 'reset'))
            yield (json.dumps(line) + '\n').encode()
        if self.fail_after is not None and self.fail_after >= len(self.lines or []):
            raise u3exc.ProtocolError('Connection broken', ConnectionResetError(104, 'reset'))

    def close(self):
        self.closed = True

    def release_conn(self):
        pass


def resources(group_version, *kinds):
    """An APIResourceList: (kind, plural, namespaced) triples."""
    return {'kind': 'APIResourceList', 'groupVersion': group_version,
            'resources': [{'name': plural, 'kind': kind, 'namespaced': namespaced, 'verbs': ['get']}
                          for kind, plural, namespaced in kinds]
            + [{'name': plural + '/status', 'kind': kind, 'namespaced': namespaced} for kind, plural, namespaced in kinds]}


def aggregated(*groups):
    """An APIGroupDiscoveryList (aggregated discovery v2): (group, [(version, [(kind, plural, namespaced)])])."""
    return {'kind': 'APIGroupDiscoveryList', 'apiVersion': 'apidiscovery.k8s.io/v2', 'items': [
        {'metadata': {'name': group}, 'versions': [
            {'version': version, 'freshness': 'Current', 'resources': [
                {'resource': plural, 'responseKind': {'group': '', 'version': '', 'kind': kind},
                 'scope': 'Namespaced' if namespaced else 'Cluster', 'verbs': ['get']}
                for kind, plural, namespaced in kinds]} for version, kinds in versions]}
        for group, versions in groups]}


CORE = resources('v1', ('Namespace', 'namespaces', False), ('Pod', 'pods', True), ('ConfigMap', 'configmaps', True),
                 ('Event', 'events', True))
APIS = aggregated(('apps', [('v1', [('Deployment', 'deployments', True)])]),
                  ('events.k8s.io', [('v1', [('Event', 'events', True)])]),
                  ('admissionregistration.k8s.io', [('v1', [('MutatingWebhookConfiguration',
                                                             'mutatingwebhookconfigurations', False)])]))
DISCOVERY = {'/api/v1': CORE, '/apis': APIS}


class FakePool:
    """Answers requests from a queue of (matcher, response-or-exception); discovery documents (the
    ``discovery`` dict, path -> document) are answered aside and recorded in ``discovery_calls``."""

    def __init__(self, responses, discovery=None):
        self.responses = list(responses)
        self.calls = []
        self.discovery = DISCOVERY if discovery is None else discovery
        self.discovery_calls = []

    def request(self, method, url, body=None, headers=None, preload_content=True, timeout=None,
                redirect=True, **kwargs):
        path = url.split('://', 1)[-1].split('/', 1)[-1].split('?')[0]
        if '/' + path in self.discovery:
            self.discovery_calls.append({'url': url, 'headers': headers})
            return FakeResponse(200, self.discovery['/' + path])
        self.calls.append({'method': method, 'url': url, 'body': body, 'headers': headers})
        if not self.responses:
            raise AssertionError('unexpected request %s %s' % (method, url))
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def clear(self):
        pass


def make(responses, discovery=None, **kw):
    cfg = cl.k8s_client.Configuration()
    cfg.host = 'https://api.example:6443'
    cfg.api_key = {'authorization': 'Bearer ' + TOKEN}
    pool = FakePool(responses, discovery)
    sleeps = []
    c = cl.ClusterClient(cfg, pool=pool, sleep=sleeps.append, secrets={TOKEN}, **kw)
    return c, pool, sleeps


def status_body(code, reason, message):
    return {'kind': 'Status', 'apiVersion': 'v1', 'status': 'Failure', 'code': code,
            'reason': reason, 'message': message}


def test_get_sends_token_and_returns_object_with_kind():
    c, pool, _sleeps = make([FakeResponse(200, {'metadata': {'name': 'foo'}})])
    obj = c.get('Deployment', 'foo', 'bar')
    assert obj['kind'] == 'Deployment' and obj['apiVersion'] == 'apps/v1'
    assert pool.calls[0]['url'] == 'https://api.example:6443/apis/apps/v1/namespaces/bar/deployments/foo'
    assert pool.calls[0]['headers']['Authorization'] == 'Bearer ' + TOKEN


def test_retries_429_honouring_retry_after_then_succeeds():
    c, pool, sleeps = make([
        FakeResponse(429, status_body(429, 'TooManyRequests', 'slow down'), {'Retry-After': '3'}),
        FakeResponse(503, status_body(503, 'ServiceUnavailable', 'busy')),
        FakeResponse(500, status_body(500, 'InternalError', 'oops'), {'Retry-After': '1'}),
        FakeResponse(200, {'metadata': {'name': 'x'}}),
    ])
    assert c.get('Namespace', 'x')['metadata']['name'] == 'x'
    assert len(pool.calls) == 4
    assert sleeps[0] == 3.0 and sleeps[2] == 1.0
    assert 0 < sleeps[1] <= c.retry.max_delay
    assert c.stats['retries'] == 3


def test_backoff_grows_and_is_capped():
    policy = cl.RetryPolicy(base_delay=1, max_delay=5, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]
    assert policy.delay(1, retry_after=100) == policy.max_retry_after


def test_gives_up_after_max_attempts_with_transient_error():
    c, pool, _sleeps = make([FakeResponse(503, status_body(503, 'ServiceUnavailable', 'busy'))] * 3,
                            retry=cl.RetryPolicy(max_attempts=3))
    with pytest.raises(errors.TransientApiError) as info:
        c.list('Pod', 'foo')
    assert len(pool.calls) == 3
    assert 'Pod objects in namespace foo' in str(info.value)


def test_connection_reset_is_retried():
    c, pool, _sleeps = make([u3exc.ProtocolError('Connection aborted.', ConnectionResetError(104, 'x')),
                            FakeResponse(200, {'items': [], 'metadata': {'resourceVersion': '7'}})])
    assert c.list_with_version('Namespace') == ([], '7')
    assert len(pool.calls) == 2


@pytest.mark.parametrize('status,cls,reason', [
    (404, errors.NotFound, 'NotFound'),
    (409, errors.Conflict, 'Conflict'),
    (409, errors.AlreadyExists, 'AlreadyExists'),
    (422, errors.Invalid, 'Invalid'),
    (400, errors.ApiError, 'BadRequest'),
])
def test_errors_name_object_and_reason(status, cls, reason):
    c, _pool, _sleeps = make([FakeResponse(status, status_body(status, reason, 'the server says no'))])
    with pytest.raises(cls) as info:
        c.patch('MutatingWebhookConfiguration', 'istio-revision-tag-default', {'a': 1})
    msg = str(info.value)
    assert 'patch MutatingWebhookConfiguration istio-revision-tag-default failed' in msg
    assert 'the server says no' in msg and str(status) in msg
    assert info.value.details['reason'] == reason


def test_401_is_authentication_failed_without_token():
    c, _pool, _sleeps = make([FakeResponse(401, status_body(401, 'Unauthorized', 'Unauthorized ' + TOKEN))])
    with pytest.raises(errors.AuthenticationFailed) as info:
        c.get('Namespace', 'x')
    assert 'expired' in str(info.value) and 'https://api.example:6443' in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in json.dumps(info.value.details)


def test_403_is_forbidden_with_rbac_hint():
    c, _pool, _sleeps = make([FakeResponse(403, status_body(403, 'Forbidden', 'user x cannot list pods'))])
    with pytest.raises(errors.Forbidden) as info:
        c.list('Pod', 'foo')
    assert isinstance(info.value, errors.AuthenticationFailed)
    assert 'cannot list pods' in str(info.value) and 'rbac' in str(info.value)


def test_connection_refused_fails_fast_as_unreachable():
    err = u3exc.NewConnectionError(None, 'Failed to establish a new connection: [Errno 111] Connection refused')
    c, pool, _sleeps = make([err, err, err, err])
    with pytest.raises(errors.ClusterUnreachable) as info:
        c.get('Namespace', 'x')
    assert len(pool.calls) == c.retry.connect_attempts
    assert 'https://api.example:6443' in str(info.value) and 'kubeconfig' in str(info.value)


def test_tls_error_not_retried():
    c, pool, _sleeps = make([u3exc.SSLError('certificate verify failed')])
    with pytest.raises(errors.ClusterUnreachable) as info:
        c.get('Namespace', 'x')
    assert len(pool.calls) == 1 and 'ca_cert' in str(info.value)


def test_patch_with_resource_version_precondition():
    c, pool, _sleeps = make([FakeResponse(200, {'metadata': {'name': 'a'}}),
                            FakeResponse(200, {'metadata': {'name': 'a'}})])
    c.patch('ConfigMap', 'a', {'data': {'k': 'v'}}, 'ns', resource_version='42')
    body = json.loads(pool.calls[0]['body'])
    assert body == {'data': {'k': 'v'}, 'metadata': {'resourceVersion': '42'}}
    assert pool.calls[0]['headers']['Content-Type'] == 'application/merge-patch+json'
    c.patch('ConfigMap', 'a', [{'op': 'add', 'path': '/data/x', 'value': '1'}], 'ns',
            patch_type='json', resource_version='43', dry_run=True)
    body = json.loads(pool.calls[1]['body'])
    assert body[0] == {'op': 'test', 'path': '/metadata/resourceVersion', 'value': '43'}
    assert 'dryRun=All' in pool.calls[1]['url']


def test_delete_missing_is_false():
    c, _pool, _sleeps = make([FakeResponse(404, status_body(404, 'NotFound', 'gone'))])
    assert c.delete('Deployment', 'x', 'y') is False


def test_list_follows_continue():
    c, pool, _sleeps = make([
        FakeResponse(200, {'items': [{'metadata': {'name': 'a'}}], 'metadata': {'continue': 'tok'}}),
        FakeResponse(200, {'items': [{'metadata': {'name': 'b'}}], 'metadata': {'resourceVersion': '9'}}),
    ])
    items, rv = c.list_with_version('Namespace', label_selector='a=b')
    assert [i['metadata']['name'] for i in items] == ['a', 'b'] and rv == '9'
    assert 'continue=tok' in pool.calls[1]['url'] and 'labelSelector=a%3Db' in pool.calls[0]['url']


def test_list_follows_continue_and_transforms_each_item():
    """(moved from test_rollout_api.py: the rollout engine pages through the client's list)"""
    c, pool, _sleeps = make([
        FakeResponse(200, {'metadata': {'resourceVersion': '10', 'continue': 'tok'},
                           'items': [{'metadata': {'name': 'a', 'namespace': 'n'}}, {'metadata': {'name': 'b'}}]}),
        FakeResponse(200, {'metadata': {'resourceVersion': '11'}, 'items': [{'metadata': {'name': 'c', 'namespace': 'n'}}]}),
    ])
    seen = []

    def transform(obj):
        seen.append(obj['kind'])
        return None if obj['metadata']['name'] == 'b' else obj['metadata']['name']
    items, rv = c.list_with_version('Pod', namespace='n', label_selector='app=x', transform=transform)
    assert items == ['a', 'c'] and rv == '11' and seen == ['Pod'] * 3
    assert pool.calls[0]['url'] == 'https://api.example:6443/api/v1/namespaces/n/pods?labelSelector=app%3Dx&limit=500'
    assert 'continue=tok' in pool.calls[1]['url']


def ev(etype, name, rv, **extra):
    return {'type': etype, 'object': dict({'metadata': {'name': name, 'resourceVersion': rv}}, **extra)}


def test_stream_resumes_after_drop_and_relists_after_gone():
    listing = FakeResponse(200, {'items': [{'metadata': {'name': 'a', 'resourceVersion': '5'}}],
                                 'metadata': {'resourceVersion': '5'}})
    first = FakeResponse(200, lines=[ev('MODIFIED', 'a', '6'), ev('ADDED', 'b', '7')], fail_after=2)
    second = FakeResponse(200, lines=[ev('BOOKMARK', '', '8'),
                                      {'type': 'ERROR', 'object': status_body(410, 'Expired', 'too old')}])
    relist = FakeResponse(200, {'items': [{'metadata': {'name': 'b', 'resourceVersion': '20'}}],
                                'metadata': {'resourceVersion': '20'}})
    third = FakeResponse(200, lines=[ev('DELETED', 'b', '21')])
    c, pool, _sleeps = make([listing, first, second, relist, third])
    seen = []
    for event in c.stream('Pod', 'ns'):
        seen.append((event.type, event.resource_version))
        if event.type == 'DELETED':
            break
    assert seen == [('LISTED', '5'), ('MODIFIED', '6'), ('ADDED', '7'), ('LISTED', '20'), ('DELETED', '21')]
    urls = [call['url'] for call in pool.calls]
    assert 'resourceVersion=5' in urls[1] and 'watch=true' in urls[1]
    assert 'resourceVersion=7' in urls[2]      # resumed after the dropped connection
    assert 'watch=true' not in urls[3]          # re-list after 410
    assert 'resourceVersion=20' in urls[4]
    assert first.closed


def test_wait_for_returns_when_predicate_holds():
    listing = FakeResponse(200, {'items': [{'metadata': {'name': 'd', 'resourceVersion': '1'},
                                            'status': {'ready': False}}],
                                 'metadata': {'resourceVersion': '1'}})
    watch = FakeResponse(200, lines=[ev('MODIFIED', 'd', '2', status={'ready': False}),
                                     ev('MODIFIED', 'd', '3', status={'ready': True})])
    c, pool, _sleeps = make([listing, watch])
    obj = c.wait_for('Deployment', 'd', 'ns', lambda o: o and o['status']['ready'], timeout=30)
    assert obj['metadata']['resourceVersion'] == '3'
    assert 'fieldSelector=metadata.name%3Dd' in pool.calls[0]['url']


def test_build_configuration_from_kubeconfig_dict_and_missing_file(tmp_path):
    kc = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'c1',
          'clusters': [{'name': 'k', 'cluster': {'server': 'https://k.example:6443',
                                                 'insecure-skip-tls-verify': True}}],
          'users': [{'name': 'u', 'user': {'token': TOKEN}}],
          'contexts': [{'name': 'c1', 'context': {'cluster': 'k', 'user': 'u'}}]}
    cfg, target = cl.build_configuration({'kubeconfig': kc})
    assert cfg.host == 'https://k.example:6443' and target.context == 'c1'
    assert cl.bearer_token(cfg) == 'Bearer ' + TOKEN
    with pytest.raises(errors.InvalidInput) as info:
        cl.build_configuration({'kubeconfig': kc, 'context': 'nope'})
    assert 'nope' in str(info.value) and TOKEN not in str(info.value)
    with pytest.raises(errors.InvalidInput) as info:
        cl.build_configuration({'kubeconfig': str(tmp_path / 'missing')})
    assert 'does not exist' in str(info.value)
    cfg, target = cl.build_configuration({'host': 'https://h:1', 'api_key': TOKEN, 'validate_certs': False})
    assert cfg.verify_ssl is False and target.host == 'https://h:1'


def test_create_whose_first_try_went_through_returns_the_object():
    c, pool, _sleeps = make([
        FakeResponse(500, status_body(500, 'InternalError', 'etcd timeout')),
        FakeResponse(409, status_body(409, 'AlreadyExists', 'configmaps "a" already exists')),
        FakeResponse(200, {'metadata': {'name': 'a', 'namespace': 'ns'}, 'data': {'k': 'v'}}),
    ])
    obj = c.create('ConfigMap', {'metadata': {'name': 'a', 'namespace': 'ns'}, 'data': {'k': 'v'}})
    assert obj['data'] == {'k': 'v'} and [call['method'] for call in pool.calls] == ['POST', 'POST', 'GET']
    c, _pool, _sleeps = make([FakeResponse(409, status_body(409, 'AlreadyExists', 'exists'))])
    with pytest.raises(errors.AlreadyExists):
        c.create('ConfigMap', {'metadata': {'name': 'a', 'namespace': 'ns'}})


def test_delete_whose_first_try_went_through_is_true():
    c, _pool, _sleeps = make([u3exc.ProtocolError('Connection aborted.', ConnectionResetError(104, 'x')),
                             FakeResponse(404, status_body(404, 'NotFound', 'gone'))])
    assert c.delete('Deployment', 'x', 'y') is True


class RenewingToken:
    """A kubeconfig loader's refresh hook: hands out a new token each time it is told it expired."""

    def __init__(self, cfg):
        self.calls = 0
        self.generation = 1
        cfg.api_key = {'BearerToken': 'tok-1'}
        cfg.api_key_prefix = {'BearerToken': 'Bearer'}
        cfg.refresh_api_key_hook = self

    def __call__(self, cfg):
        self.calls += 1
        cfg.api_key['BearerToken'] = 'tok-%d' % self.generation


def make_renewing(responses, clock):
    cfg = cl.k8s_client.Configuration()
    cfg.host = 'https://api.example:6443'
    hook = RenewingToken(cfg)
    pool = FakePool(responses)
    c = cl.ClusterClient(cfg, pool=pool, sleep=lambda s: None)
    c._auth.clock = clock
    return c, pool, hook


def test_token_hook_runs_once_per_ttl_not_per_request():
    now = [100.0]
    c, pool, hook = make_renewing([FakeResponse(200, {'metadata': {'name': 'x'}}) for _index in range(5)],
                                  lambda: now[0])
    for _index in range(3):
        c.get('Namespace', 'x')
    assert hook.calls <= 2  # one lookup ('authorization' then 'BearerToken'), not two per request
    assert [k['headers']['Authorization'] for k in pool.calls] == ['Bearer tok-1'] * 3
    calls = hook.calls
    hook.generation = 2
    now[0] += c._auth.ttl + 0.1
    c.get('Namespace', 'x')
    assert hook.calls > calls
    assert pool.calls[-1]['headers']['Authorization'] == 'Bearer tok-2'


def test_401_with_renewable_token_asks_the_hook_again_once():
    now = [100.0]
    c, pool, hook = make_renewing([FakeResponse(200, {'metadata': {'name': 'x'}}),
                                   FakeResponse(401, status_body(401, 'Unauthorized', 'Unauthorized')),
                                   FakeResponse(200, {'metadata': {'name': 'y'}})], lambda: now[0])
    c.get('Namespace', 'x')  # the cache now holds tok-1
    hook.generation = 2      # the provider renewed it; the cache's ttl is not over
    assert c.get('Namespace', 'y')['metadata']['name'] == 'y'
    assert [k['headers']['Authorization'] for k in pool.calls] == ['Bearer tok-1', 'Bearer tok-1', 'Bearer tok-2']


def test_401_with_renewable_token_fails_after_one_renewal():
    c, pool, _hook = make_renewing([FakeResponse(401, status_body(401, 'Unauthorized', 'Unauthorized')),
                                    FakeResponse(401, status_body(401, 'Unauthorized', 'Unauthorized'))],
                                   lambda: 0.0)
    with pytest.raises(errors.AuthenticationFailed):
        c.get('Namespace', 'x')
    assert len(pool.calls) == 2


# --- the kubernetes library underneath -------------------------------------------------------------

def test_requests_go_through_the_kubernetes_api_client_pool():
    cfg = cl.k8s_client.Configuration()
    cfg.host = 'https://api.example:6443'
    c = cl.ClusterClient(cfg)
    assert isinstance(c.api_client, cl.k8s_client.ApiClient)
    assert c._pool is c.api_client.rest_client.pool_manager
    assert cfg.retries is False and cfg.connection_pool_maxsize == 64   # RetryPolicy retries, room for threads
    c.close()


def test_connection_errors_are_classified_without_urllib3_2(monkeypatch):
    """urllib3 1.26 has no NameResolutionError: DNS failures come as NewConnectionError there."""
    monkeypatch.delattr(cl.u3exc, 'NameResolutionError', raising=False)
    dns = u3exc.NewConnectionError(None, 'Failed to establish a new connection: [Errno -2] Name or service not known')
    assert cl.classify_connection_error(dns)[0] == 'dns'
    refused = u3exc.MaxRetryError(None, '/', u3exc.NewConnectionError(None, '[Errno 111] Connection refused'))
    assert cl.classify_connection_error(refused) == ('connect', 'connection refused')
    assert cl.classify_connection_error(u3exc.ProtocolError('aborted', ConnectionResetError(104, 'x')))[0] == 'dropped'
    c, pool, _sleeps = make([dns])
    with pytest.raises(errors.ClusterUnreachable) as info:
        c.get('Namespace', 'x')
    assert 'does not resolve' in str(info.value) and len(pool.calls) == 1


# --- discovery -------------------------------------------------------------------------------------

def test_discovery_is_lazy_and_done_once_per_client():
    c, pool, _sleeps = make([FakeResponse(200, {'metadata': {'name': 'x'}}) for _index in range(4)])
    assert pool.discovery_calls == []                      # nothing before the first call
    c.get('Namespace', 'x')                                # core: /api/v1 only
    assert [d['url'].split('6443')[1] for d in pool.discovery_calls] == ['/api/v1']
    c.get('Deployment', 'x', 'ns')                         # another group: the aggregated document, once
    c.get('MutatingWebhookConfiguration', 'x')
    c.get('Pod', 'x', 'ns')
    assert [d['url'].split('6443')[1] for d in pool.discovery_calls] == ['/api/v1', '/apis']
    assert 'as=APIGroupDiscoveryList' in pool.discovery_calls[1]['headers']['Accept']
    assert pool.calls[1]['url'].endswith('/apis/apps/v1/namespaces/ns/deployments/x')
    assert pool.calls[2]['url'].endswith('/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/x')


def test_any_served_kind_is_reachable_and_two_groups_need_the_api_version():
    apis = aggregated(('sailoperator.io', [('v1', [('Istio', 'istios', False)]), ('v1alpha1', [('Istio', 'istios', False)])]),
                      ('apps.openshift.io', [('v1', [('DeploymentConfig', 'deploymentconfigs', True)])]),
                      ('argoproj.io', [('v1alpha1', [('Rollout', 'rollouts', True)])]),
                      ('networking.istio.io', [('v1', [('Gateway', 'gateways', True)])]),
                      ('gateway.networking.k8s.io', [('v1', [('Gateway', 'gateways', True)])]))
    c, pool, _sleeps = make([FakeResponse(200, {'items': [], 'metadata': {}}) for _index in range(5)],
                            discovery={'/api/v1': CORE, '/apis': apis})
    c.list('Istio')
    c.list('DeploymentConfig', 'ns')
    c.list('Rollout', 'ns')
    c.list('Gateway', 'ns', api_version='gateway.networking.k8s.io/v1')
    assert [call['url'].split('6443')[1].split('?')[0] for call in pool.calls] == [
        '/apis/sailoperator.io/v1/istios', '/apis/apps.openshift.io/v1/namespaces/ns/deploymentconfigs',
        '/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts', '/apis/gateway.networking.k8s.io/v1/namespaces/ns/gateways']
    with pytest.raises(errors.InvalidInput) as info:
        c.list('Gateway', 'ns')
    assert 'networking.istio.io/v1, gateway.networking.k8s.io/v1' in str(info.value) and 'apiVersion' in str(info.value)
    assert len(pool.calls) == 4 and len(pool.discovery_calls) == 2
    assert c.list('Event', 'ns') == [] and pool.calls[-1]['url'].split('6443')[1].startswith('/api/v1/')  # core first


def test_classic_discovery_without_the_aggregated_document():
    discovery = {'/api/v1': CORE,
                 '/apis': {'kind': 'APIGroupList', 'groups': [
                     {'name': 'apps', 'versions': [{'groupVersion': 'apps/v1', 'version': 'v1'}],
                      'preferredVersion': {'groupVersion': 'apps/v1', 'version': 'v1'}},
                     {'name': 'autoscaling', 'versions': [{'groupVersion': 'autoscaling/v2', 'version': 'v2'},
                                                          {'groupVersion': 'autoscaling/v1', 'version': 'v1'}],
                      'preferredVersion': {'groupVersion': 'autoscaling/v2', 'version': 'v2'}}]},
                 '/apis/apps/v1': resources('apps/v1', ('Deployment', 'deployments', True)),
                 '/apis/autoscaling/v2': resources('autoscaling/v2', ('HorizontalPodAutoscaler', 'horizontalpodautoscalers', True)),
                 '/apis/autoscaling/v1': resources('autoscaling/v1', ('HorizontalPodAutoscaler', 'horizontalpodautoscalers', True))}
    c, pool, _sleeps = make([FakeResponse(200, {'metadata': {'name': 'x'}}) for _index in range(3)], discovery)
    c.get('HorizontalPodAutoscaler', 'x', 'ns')
    assert pool.calls[0]['url'].split('6443')[1] == '/apis/autoscaling/v2/namespaces/ns/horizontalpodautoscalers/x'
    c.get('HorizontalPodAutoscaler', 'x', 'ns', api_version='autoscaling/v1')
    assert pool.calls[1]['url'].split('6443')[1] == '/apis/autoscaling/v1/namespaces/ns/horizontalpodautoscalers/x'
    assert [d['url'].split('6443')[1] for d in pool.discovery_calls] == [
        '/api/v1', '/apis', '/apis/apps/v1', '/apis/autoscaling/v2', '/apis/autoscaling/v1']


def test_kind_not_served_is_looked_up_again_once_then_not_found():
    discovery = {'/api/v1': CORE, '/apis': aggregated()}
    c, pool, _sleeps = make([FakeResponse(200, {'metadata': {'name': 'r'}})], discovery)
    with pytest.raises(errors.NotFound) as info:
        c.list('VirtualService', 'ns')
    assert 'serves no VirtualService' in str(info.value) and info.value.details['served'] is False
    assert len(pool.discovery_calls) == 4        # read, then read again (a CRD may have been created)
    assert c.get_or_none('VirtualService', 'r', 'ns') is None and len(pool.discovery_calls) == 6
    # a CRD created meanwhile is found by a lookup with its apiVersion (one request: its group version)
    discovery['/apis/networking.istio.io/v1beta1'] = resources('networking.istio.io/v1beta1',
                                                               ('VirtualService', 'virtualservices', True))
    assert c.get('VirtualService', 'r', 'ns', api_version='networking.istio.io/v1beta1')['metadata']['name'] == 'r'
    assert pool.discovery_calls[-1]['url'].endswith('/apis/networking.istio.io/v1beta1')


def test_401_during_discovery_names_the_call_that_needed_it():
    c, _pool, _sleeps = make([], discovery={})
    c._pool.request = lambda *a, **k: FakeResponse(401, status_body(401, 'Unauthorized', 'Unauthorized'))
    with pytest.raises(errors.AuthenticationFailed) as info:
        c.list('Deployment', 'istio-system')
    assert 'while trying to list Deployment objects in namespace istio-system' in str(info.value)


# --- update_with_retry -----------------------------------------------------------------------------

def cm(rv, data):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'a', 'namespace': 'ns', 'resourceVersion': rv},
            'data': data}


def test_update_with_retry_rereads_after_a_conflict_and_writes_conditionally():
    c, pool, _sleeps = make([
        FakeResponse(200, cm('1', {'k': 'v'})),
        FakeResponse(409, status_body(409, 'Conflict', 'the object has been modified')),
        FakeResponse(200, cm('2', {'k': 'v', 'other': 'writer'})),
        FakeResponse(200, cm('3', {'k': 'v', 'other': 'writer', 'mine': 'x'})),
    ])
    seen = []

    def mutate(obj):
        seen.append(dict(obj['data']))
        obj['data']['mine'] = 'x'
        return obj
    update = c.update_with_retry('ConfigMap', 'a', mutate, 'ns')
    assert seen == [{'k': 'v'}, {'k': 'v', 'other': 'writer'}]   # asked again on the fresh object
    assert update.action == 'update' and update.before['data'] == {'k': 'v', 'other': 'writer'}
    assert update.after['metadata']['resourceVersion'] == '3'
    assert [call['method'] for call in pool.calls] == ['GET', 'PUT', 'GET', 'PUT']
    assert json.loads(pool.calls[3]['body'])['metadata']['resourceVersion'] == '2'
    assert update.changes('ConfigMap', 'a', 'ns') == [{'kind': 'ConfigMap', 'name': 'a', 'namespace': 'ns',
                                                      'action': 'updated'}]


def test_update_with_retry_creates_deletes_patches_and_leaves_alone():
    c, pool, _sleeps = make([
        FakeResponse(404, status_body(404, 'NotFound', 'not found')),
        FakeResponse(201, cm('1', {'k': 'v'})),
        FakeResponse(200, cm('1', {'k': 'v'})),
        FakeResponse(200, cm('1', {'k': 'v'})),
        FakeResponse(200, cm('2', {'k': 'w'})),
        FakeResponse(200, cm('2', {'k': 'w'})),
        FakeResponse(200, {'kind': 'Status', 'status': 'Success'}),
    ])
    created = c.update_with_retry('ConfigMap', 'a', lambda obj: cm(None, {'k': 'v'}), 'ns')
    assert created.action == 'create' and pool.calls[1]['method'] == 'POST'
    unchanged = c.update_with_retry('ConfigMap', 'a', lambda obj: obj, 'ns')
    assert unchanged.action == 'none' and not unchanged.changed and len(pool.calls) == 3
    patched = c.update_with_retry('ConfigMap', 'a', lambda obj: dict(obj, data={'k': 'w'}), 'ns', patch=True)
    assert patched.action == 'update' and pool.calls[4]['method'] == 'PATCH'
    assert json.loads(pool.calls[4]['body']) == {'data': {'k': 'w'}, 'metadata': {'resourceVersion': '1'}}
    deleted = c.update_with_retry('ConfigMap', 'a', lambda obj: cl.DELETE, 'ns')
    assert deleted.action == 'delete' and deleted.after is None
    assert json.loads(pool.calls[6]['body'])['preconditions'] == {'resourceVersion': '2'}


def test_update_with_retry_in_check_mode_writes_nothing_and_gives_up_on_endless_conflicts():
    c, pool, _sleeps = make([FakeResponse(200, cm('1', {'k': 'v'}))])
    would = c.update_with_retry('ConfigMap', 'a', lambda obj: dict(obj, data={}), 'ns', check_mode=True)
    assert would.action == 'update' and would.after['data'] == {} and len(pool.calls) == 1
    conflict = FakeResponse(409, status_body(409, 'Conflict', 'modified'))
    c, pool, _sleeps = make([FakeResponse(200, cm('1', {})), conflict] * c.CONFLICT_ATTEMPTS)
    with pytest.raises(errors.Conflict) as info:
        c.update_with_retry('ConfigMap', 'a', lambda obj: dict(obj, data={'x': '1'}), 'ns')
    assert 'ConfigMap ns/a kept changing while being updated (5 conflicts)' in str(info.value)


def test_merge_patch():
    assert cl.merge_patch({'a': {'b': 1, 'c': 2}, 'l': [1], 'gone': 1}, {'a': {'b': 1, 'c': 3}, 'l': [2], 'new': None}) \
        == {'a': {'c': 3}, 'l': [2], 'gone': None, 'new': None}
