"""PrometheusClient against a local HTTP server that speaks the Prometheus API's JSON (unit level).

The integration tests use a real Prometheus; here the server answers what a test needs (errors, auth
checks, odd result types) so that every branch of the client is exercised over real HTTP.
"""
import base64
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import trustme

from ansible_collections.meshops.istio.plugins.module_utils import errors
from ansible_collections.meshops.istio.plugins.module_utils import prometheus as prom


class FakeApi:
    def __init__(self):
        self.requests = []
        self.responses = []   # (status, body) popped per request; the last one repeats

    def answer(self, status, body):
        self.responses.append((status, body))


@pytest.fixture
def api():
    yield from serve(FakeApi())


@pytest.fixture
def https_api():
    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert('127.0.0.1').configure_cert(context)
    yield from serve(FakeApi(), (context, ca.cert_pem.bytes()))


def serve(state, tls=None):
    """Serve ``state``'s answers over HTTP, or HTTPS with ``tls`` = (server SSLContext, CA certificate PEM)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            parts = urlsplit(self.path)
            state.requests.append({'path': parts.path, 'params': parse_qs(parts.query),
                                   'headers': {k.lower(): v for k, v in self.headers.items()}})
            status, body = state.responses.pop(0) if len(state.responses) > 1 else state.responses[0]
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    if tls is not None:
        context, state.ca_pem = tls
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = '%s://127.0.0.1:%d' % ('https' if tls is not None else 'http', server.server_address[1])
    yield state
    server.shutdown()
    server.server_close()


def vector(*items):
    return {'status': 'success', 'data': {'resultType': 'vector', 'result': [
        {'metric': labels, 'value': [1700000000.5, value]} for labels, value in items]}}


def test_query_sends_promql_and_parses_vector(api):
    api.answer(200, vector(({'destination_workload': 'bar'}, '0.995'), ({'destination_workload': 'baz'}, 'NaN')))
    client = prom.PrometheusClient(api.url + '/', retries=0)
    result = client.query('sum(rate(istio_requests_total{reporter="destination"}[1m]))', at=1700000000)
    assert result.result_type == 'vector'
    assert [s.labels['destination_workload'] for s in result.samples] == ['bar', 'baz']
    assert result.samples[0].value == pytest.approx(0.995)
    assert result.samples[1].value != result.samples[1].value  # NaN kept as NaN
    assert result.samples[0].timestamp == 1700000000.5
    request = api.requests[0]
    assert request['path'] == '/api/v1/query'
    assert request['params']['query'] == ['sum(rate(istio_requests_total{reporter="destination"}[1m]))']
    assert request['params']['time'] == ['1700000000.000']


def test_scalar_result(api):
    api.answer(200, {'status': 'success', 'data': {'resultType': 'scalar', 'result': [1700000000, '42']}})
    result = prom.PrometheusClient(api.url).query('42')
    assert result.result_type == 'scalar'
    assert result.samples[0].value == 42.0 and result.samples[0].labels == {}


def test_matrix_result_is_a_query_error(api):
    api.answer(200, {'status': 'success', 'data': {'resultType': 'matrix', 'result': []}})
    with pytest.raises(prom.PrometheusQueryError, match='range vector'):
        prom.PrometheusClient(api.url).query('up[1m]')


def test_bearer_token_and_extra_headers(api):
    api.answer(200, vector())
    client = prom.PrometheusClient(api.url, headers={'X-Scope-OrgID': 'mesh'}, bearer_token='s3cr3t')
    client.query('up')
    headers = api.requests[0]['headers']
    assert headers['authorization'] == 'Bearer s3cr3t'
    assert headers['x-scope-orgid'] == 'mesh'


def test_basic_auth(api):
    api.answer(200, vector())
    prom.PrometheusClient(api.url, username='ops', password='pw').query('up')
    expected = 'Basic ' + base64.b64encode(b'ops:pw').decode()
    assert api.requests[0]['headers']['authorization'] == expected


def test_token_and_basic_auth_together_are_refused():
    with pytest.raises(prom.GateConfigError, match='not both'):
        prom.PrometheusClient('http://prom:9090', bearer_token='t', username='u', password='p')


def test_bad_url_is_refused():
    with pytest.raises(prom.GateConfigError, match='not an http'):
        prom.PrometheusClient('prometheus:9090')


def test_bad_query_is_a_query_error_not_unreachable(api):
    api.answer(400, {'status': 'error', 'errorType': 'bad_data',
                     'error': 'invalid parameter "query": 1:5: parse error: unexpected "}"'})
    with pytest.raises(prom.PrometheusQueryError) as caught:
        prom.PrometheusClient(api.url, retries=3, sleep=lambda s: None).query('up{}}')
    assert 'parse error' in str(caught.value)
    assert caught.value.details['error_type'] == 'bad_data'
    assert len(api.requests) == 1  # not retried


@pytest.mark.parametrize('status', [401, 403])
def test_refused_credentials(api, status):
    api.answer(status, b'Unauthorized')
    with pytest.raises(prom.PrometheusAuthError, match='refused the credentials'):
        prom.PrometheusClient(api.url, bearer_token='wrong', retries=2, sleep=lambda s: None).query('up')
    assert len(api.requests) == 1


def test_server_errors_are_retried_then_unreachable(api):
    api.answer(503, {'status': 'error', 'errorType': 'unavailable', 'error': 'TSDB not ready'})
    sleeps = []
    client = prom.PrometheusClient(api.url, retries=2, retry_delay=0.5, sleep=sleeps.append)
    with pytest.raises(prom.PrometheusUnreachable, match='HTTP 503: TSDB not ready'):
        client.query('up')
    assert len(api.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_retry_recovers(api):
    api.answer(503, b'busy')
    api.answer(200, vector(({}, '1')))
    result = prom.PrometheusClient(api.url, retries=1, sleep=lambda s: None).query('up')
    assert result.samples[0].value == 1.0
    assert len(api.requests) == 2


def test_wrong_path_says_so(api):
    api.answer(404, b'404 page not found')
    with pytest.raises(prom.PrometheusUnreachable, match='HTTP 404'):
        prom.PrometheusClient(api.url + '/grafana', retries=0).query('up')


def test_not_json_is_unreachable(api):
    api.answer(200, b'<html>login</html>')
    with pytest.raises(prom.PrometheusUnreachable, match='did not answer with JSON'):
        prom.PrometheusClient(api.url, retries=0).query('up')


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_connection_refused_is_unreachable():
    url = 'http://127.0.0.1:%d' % free_port()
    client = prom.PrometheusClient(url, retries=1, sleep=lambda s: None)
    with pytest.raises(prom.PrometheusUnreachable) as caught:
        client.query('up')
    assert 'is unreachable' in str(caught.value) and url in str(caught.value)
    assert client.requests == 2
    assert isinstance(caught.value, errors.PrometheusError)   # errors.py's hierarchy


def test_timeout_is_unreachable():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)  # accepts the TCP connection, never answers
    try:
        client = prom.PrometheusClient('http://127.0.0.1:%d' % listener.getsockname()[1], timeout=0.5, retries=0)
        with pytest.raises(prom.PrometheusUnreachable, match='unreachable'):
            client.query('up')
    finally:
        listener.close()


def test_credentials_in_url_never_shown():
    client = prom.PrometheusClient('http://ops:hunter2@127.0.0.1:%d' % free_port(), retries=0)
    with pytest.raises(prom.PrometheusUnreachable) as caught:
        client.query('up')
    assert 'hunter2' not in str(caught.value) and 'hunter2' not in json.dumps(caught.value.details)


def test_error_document_with_success_status_missing(api):
    api.answer(200, {'status': 'error', 'errorType': 'execution', 'error': 'query timed out'})
    with pytest.raises(prom.PrometheusQueryError, match='query timed out'):
        prom.PrometheusClient(api.url).query('up')


def test_https_with_ca_cert(https_api, tmp_path):
    https_api.answer(200, vector(({'destination_workload': 'bar'}, '1')))
    ca = tmp_path / 'ca.pem'
    ca.write_bytes(https_api.ca_pem)
    result = prom.PrometheusClient(https_api.url, ca_cert=str(ca), retries=0).query('up')
    assert result.samples[0].labels == {'destination_workload': 'bar'}


def test_https_untrusted_certificate_is_unreachable(https_api):
    https_api.answer(200, vector())
    with pytest.raises(prom.PrometheusUnreachable, match='(?i)certificate'):
        prom.PrometheusClient(https_api.url, retries=0).query('up')
    assert https_api.requests == []


def test_https_without_validation(https_api):
    https_api.answer(200, vector(({}, '3')))
    result = prom.PrometheusClient(https_api.url, validate_certs=False, retries=0).query('up')
    assert result.samples[0].value == 3.0
