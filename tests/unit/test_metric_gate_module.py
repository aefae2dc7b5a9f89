"""istio_metric_gate: argument handling and the gate it builds (no Prometheus; see the integration tests)."""
import json
import os
import subprocess
import sys

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import prometheus as prom
from ansible_collections.meshops.istio.plugins.modules import istio_metric_gate as mod

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def params(**overrides):
    base = {'prometheus_url': 'http://prom:9090', 'namespaces': ['bar'], 'headers': {}, 'validate_certs': True,
            'timeout': 10, 'retries': 2, 'checks': None, 'window': '1m', 'interval': '30s', 'count': 3,
            'failure_limit': 0, 'initial_delay': '0s', 'no_data': 'fail', 'baseline': False, 'fail_on_gate': True}
    base.update(overrides)
    return base


def test_defaults_build_both_builtins():
    gate = mod.build_gate(params())
    assert [c.name for c in gate.checks] == ['success_rate', 'latency_p99']
    assert gate.window == '1m' and gate.interval == 30 and gate.count == 3 and gate.no_data == 'fail'
    assert gate.client.url == 'http://prom:9090' and gate.baseline_mode is False


def test_auth_headers_reach_the_client():
    gate = mod.build_gate(params(bearer_token='tok', headers={'X-Scope-OrgID': 'mesh'}))
    assert gate.client.headers['Authorization'] == 'Bearer tok'
    assert gate.client.headers['X-Scope-OrgID'] == 'mesh'


@pytest.mark.parametrize('value,expected', [(True, True), (False, False), ('yes', True), ('false', False), (None, False)])
def test_baseline_booleans(value, expected):
    assert mod.baseline_option(value) is expected


def test_baseline_previous_result():
    previous = {'measurements': [{'check': 'success_rate', 'namespace': 'bar', 'workload': 'bar', 'value': 0.999}]}
    assert mod.baseline_option(previous) == {('success_rate', 'bar', 'bar'): 0.999}
    with pytest.raises(prom.GateConfigError):
        mod.baseline_option('sometimes')


def test_baseline_at_needs_baseline_true():
    with pytest.raises(prom.GateConfigError, match='baseline: true'):
        mod.build_gate(params(baseline_at='-10m'))
    gate = mod.build_gate(params(baseline=True, baseline_at='2023-11-14T22:13:20Z'))
    assert gate.baseline_at == 1700000000


@pytest.mark.parametrize('overrides,message', [
    ({'count': 0}, 'count'),
    ({'failure_limit': 3, 'count': 3}, 'below count'),
    ({'window': '1 minute'}, 'not a duration'),
    ({'prometheus_url': 'prom:9090'}, 'not an http'),
    ({'namespaces': []}, 'namespaces is empty'),
    ({'timeout': 0}, 'timeout'),
])
def test_bad_settings_are_refused_before_any_query(overrides, message):
    with pytest.raises(prom.GateConfigError, match=message):
        mod.build_gate(params(**overrides))


def run_module(tmp_path, args):
    path = tmp_path / 'args.json'
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    # the directory holding ansible_collections/: .build in a checkout, the install path in an installed collection
    # (<root>/ansible_collections/meshops/istio/plugins/modules/istio_metric_gate.py)
    collections_root = mod.__file__
    for _level in range(6):
        collections_root = os.path.dirname(collections_root)
    env = dict(os.environ, PYTHONPATH=collections_root)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'plugins', 'modules', 'istio_metric_gate.py'),
                           str(path)], capture_output=True, text=True, env=env, timeout=60, check=False)
    return proc.returncode, json.loads(proc.stdout)


def test_module_refuses_bad_config_with_a_clear_error(tmp_path):
    rc, result = run_module(tmp_path, {'prometheus_url': 'http://127.0.0.1:9', 'namespaces': ['bar'],
                                       'checks': {'custom': [{'name': 'x', 'query': 'up'}]}})
    assert rc == 1 and result['error'] == 'GateConfigError' and 'needs a threshold' in result['msg']


def test_module_secrets_are_not_logged(tmp_path):
    rc, result = run_module(tmp_path, {'prometheus_url': 'http://127.0.0.1:9', 'namespaces': ['bar'],
                                       'bearer_token': 'sup3rs3cret', 'retries': 0, '_ansible_debug': True,
                                       'headers': {'X-Auth-Token': 'h3ad3rs3cret', 'Authorization': 'Basic b3BzOnB3',
                                                   'X-Scope-OrgID': 'istio'}})
    assert rc == 1 and result['error'] == 'PrometheusUnreachable' and result['prometheus_unreachable'] is True
    text = json.dumps(result)
    assert 'sup3rs3cret' not in text and 'h3ad3rs3cret' not in text and 'b3BzOnB3' not in text
    assert 'istio' in result['invocation']['module_args']['headers']['X-Scope-OrgID']  # not a secret: shown


def test_secret_header_values():
    assert mod.secret_header_values({'Authorization': 'Bearer x1', 'X-Api-Key': 'k1', 'Cookie': 'c=1',
                                     'X-Scope-OrgID': 'mesh', 'Accept': 'application/json'}) == {
        'Bearer x1', 'k1', 'c=1'}


def test_module_mutually_exclusive_auth(tmp_path):
    rc, result = run_module(tmp_path, {'prometheus_url': 'http://127.0.0.1:9', 'namespaces': ['bar'],
                                       'bearer_token': 'tok3n-value', 'username': 'ops'})
    assert rc == 1 and 'mutually exclusive' in result['msg']
