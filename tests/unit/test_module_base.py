"""The module base (module_utils/module.py): shared options, secret masking, the client's lifetime, and every
MeshopsError turned into fail_json in one place, with the result keys that stay meaningful on failure."""
import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.meshops.istio.plugins.module_utils import module as base
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    InvalidInput,
    RolloutFailed,
    UpgradeStateError,
)

TOKEN = 'kc-secret-token-0123456789'
KUBECONFIG = {'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'c',
              'clusters': [{'name': 'k', 'cluster': {'server': 'https://k.example:6443'}}],
              'users': [{'name': 'u', 'user': {'token': TOKEN}}],
              'contexts': [{'name': 'c', 'context': {'cluster': 'k', 'user': 'u'}}]}


def execute(monkeypatch, capsys, params, run, **kwargs):
    """Run a MeshopsModule with ``params`` and ``run``; return (exit code, result)."""
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': params})))
    monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy', raising=False)
    with pytest.raises(SystemExit) as info:
        base.MeshopsModule(dict(name=dict(type='str')), **kwargs).run(run)
    return info.value.code, json.loads(capsys.readouterr().out)


class Closing:
    closed = 0

    def close(self):
        Closing.closed += 1


def test_result_gets_changed_and_the_shared_options(monkeypatch, capsys):
    seen = {}

    def run(module):
        seen.update(module.params)
        return {'thing': 1}
    code, result = execute(monkeypatch, capsys, {'namespace': 'mesh'}, run, istio_namespace=True, wait=True)
    assert code == 0 and result['changed'] is False and result['thing'] == 1
    assert seen['istio_namespace'] == 'mesh' and seen['wait'] is True and seen['wait_timeout'] == 300
    assert 'kubeconfig' in seen and 'api_key' in seen      # the cluster options


def test_domain_errors_fail_once_with_their_result_keys_and_the_client_is_closed(monkeypatch, capsys):
    monkeypatch.setattr(base.ClusterClient, 'from_params', classmethod(lambda cls, params: Closing()))
    Closing.closed = 0

    def run(module):
        module.client.close  # the client is created on first use
        module.result['always'] = 'here'
        raise RolloutFailed('1 workload failed: bar/Deployment/bar: CrashLoopBackOff',
                            result={'changed': True, 'workloads': [{'name': 'bar', 'action': 'failed'}]})
    code, result = execute(monkeypatch, capsys, {}, run)
    assert code == 1 and result['failed'] is True and result['error'] == 'RolloutFailed'
    assert result['msg'].startswith('1 workload failed') and result['workloads'][0]['action'] == 'failed'
    assert result['changed'] is True and result['always'] == 'here' and Closing.closed == 1


@pytest.mark.parametrize('error', [InvalidInput('bad input'), UpgradeStateError('phase name %r cannot be recorded')])
def test_input_errors_fail_before_any_client(monkeypatch, capsys, error):
    monkeypatch.setattr(base.ClusterClient, 'from_params', classmethod(lambda cls, params: pytest.fail('client')))

    def run(module):
        raise error
    code, result = execute(monkeypatch, capsys, {}, run)
    assert code == 1 and result['msg'] == error.message and result['error'] == type(error).__name__


def test_kubeconfig_secrets_are_masked(monkeypatch, capsys):
    def run(module):
        return {'echo': 'token is %s' % TOKEN}
    code, result = execute(monkeypatch, capsys, {'kubeconfig': KUBECONFIG}, run)
    assert code == 0 and TOKEN not in json.dumps(result)


def test_a_module_without_cluster_options(monkeypatch, capsys):
    code, result = execute(monkeypatch, capsys, {'name': 'x'}, lambda module: {'name': module.params['name']},
                           cluster=False)
    assert code == 0 and result['name'] == 'x'
    code, result = execute(monkeypatch, capsys, {'kubeconfig': '/k'}, lambda module: {}, cluster=False)
    assert code == 1 and 'kubeconfig' in result['msg']      # not an option there
