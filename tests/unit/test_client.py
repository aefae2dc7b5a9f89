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


class FakePool:
    """Answers requests from a queue of (matcher, response-or-exception)."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.calls = []

    def request(self, method, url, body=None, headers=None, preload_content=True, timeout=None,
                redirect=True):
        self.calls.append({'method': method, 'url': url, 'body': body, 'headers': headers})
        if not self.responses:
            raise AssertionError('unexpected request %s %s' % (method, url))
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def clear(self):
        pass


def make(responses, **kw):
    cfg = cl.k8s_client.Configuration()
    cfg.host = 'https://api.example:6443'
    cfg.api_key = {'authorization': 'Bearer ' + TOKEN}
    pool = FakePool(responses)
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
    assert cl._bearer_token(cfg) == 'Bearer ' + TOKEN
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
