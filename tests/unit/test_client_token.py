"""The client's cached bearer token honours the token's expiry (issue 19: exec/OIDC credentials that last
minutes, or seconds under kubesim --token-ttl)."""
import datetime

from kubernetes import client as k8s_client

from ansible_collections.meshops.istio.plugins.module_utils.client import _CachedAuth, token_expiry

T0 = datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc)


class Loader:
    """What the kubernetes library's KubeConfigLoader keeps: the token and its expiry."""

    def __init__(self, lifetime):
        self.lifetime = lifetime
        self.issued = 0
        self.expiry = None
        self.now = T0


def configuration(loader):
    cfg = k8s_client.Configuration()

    def refresh(client_configuration):  # the library's hook is a closure over its loader, like this one
        if loader.expiry is None or loader.expiry <= loader.now:
            loader.issued += 1
            loader.expiry = loader.now + datetime.timedelta(seconds=loader.lifetime)
        client_configuration.api_key['BearerToken'] = 'Bearer token-%d' % loader.issued

    cfg.refresh_api_key_hook = refresh
    return cfg


def test_a_token_is_never_kept_past_its_expiry():
    loader = Loader(lifetime=5)
    cfg = configuration(loader)
    mono = [100.0]
    auth = _CachedAuth(cfg, ttl=10.0, clock=lambda: mono[0], wall=lambda: loader.now)
    assert auth.token() == 'Bearer token-1'
    assert token_expiry(cfg) == T0 + datetime.timedelta(seconds=5)
    # within the ttl but less than EXPIRY_MARGIN before the expiry: looked up again, renewed by the hook
    for step, expected in ((2.5, 'Bearer token-1'), (3.5, 'Bearer token-1'), (5.5, 'Bearer token-2')):
        mono[0] = 100.0 + step
        loader.now = T0 + datetime.timedelta(seconds=step)
        assert auth.token() == expected, step
    # the hook was asked at 3.5 (3 s = lifetime - margin), the token then still valid: kept; at 5.5 a new one


def test_without_a_known_expiry_the_ttl_applies():
    cfg = k8s_client.Configuration()
    cfg.api_key['BearerToken'] = 'Bearer static'
    mono = [0.0]
    calls = []
    auth = _CachedAuth(cfg, ttl=10.0, clock=lambda: mono[0], expiry=lambda c: calls.append(1))
    assert auth.token() == 'Bearer static'
    mono[0] = 9.0
    auth.token()
    assert len(calls) == 1
    mono[0] = 10.0
    auth.token()
    assert len(calls) == 2
    assert token_expiry(cfg) is None


def test_a_server_that_answered_before_is_waited_for_while_it_restarts():
    """Connection refused from a server that answered this client before: an API server restart (a managed
    control plane upgrade) -- retried for outage_seconds, not given up after connect_attempts."""
    from urllib3 import exceptions as u3exc

    from ansible_collections.meshops.istio.plugins.module_utils import errors
    from ansible_collections.meshops.istio.plugins.module_utils.client import ClusterClient, RetryPolicy
    from test_client import FakePool, FakeResponse

    refused = u3exc.NewConnectionError(None, 'Failed to establish a new connection: [Errno 111] Connection refused')
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    cfg = k8s_client.Configuration()
    cfg.host = 'https://api.example:6443'
    ok = FakeResponse(200, {'kind': 'Namespace', 'metadata': {'name': 'x'}})
    pool = FakePool([ok] + [refused] * 10 + [ok])
    client = ClusterClient(cfg, pool=pool, sleep=sleep, clock=lambda: now[0], retry=RetryPolicy(outage_seconds=60))
    assert client.get('Namespace', 'x')['metadata']['name'] == 'x'
    assert client.get('Namespace', 'x')['metadata']['name'] == 'x'  # after 10 refusals
    assert 0 < now[0] < 60
    pool = FakePool([ok] + [refused] * 200)
    client = ClusterClient(cfg, pool=pool, sleep=sleep, clock=lambda: now[0], retry=RetryPolicy(outage_seconds=60))
    client.get('Namespace', 'x')
    start = now[0]
    try:
        client.get('Namespace', 'x')
        raise AssertionError('an outage longer than outage_seconds must fail')
    except errors.ClusterUnreachable as exc:
        assert now[0] - start >= 60 and 'refused for 60s, after it had answered' in str(exc)
