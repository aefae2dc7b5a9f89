"""Shared argument specs: env fallbacks, no_log, validation, secret masking."""
import json

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.meshops.istio.plugins.module_utils import args
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput


def make_module(monkeypatch, params):
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': params})))
    monkeypatch.setattr(basic, '_ANSIBLE_PROFILE', 'legacy', raising=False)
    return AnsibleModule(argument_spec=dict(args.AUTH_ARG_SPEC, **args.WAIT_ARG_SPEC),
                         supports_check_mode=True)


def test_env_fallbacks(monkeypatch):
    monkeypatch.setenv('K8S_AUTH_KUBECONFIG', '/tmp/kc')
    monkeypatch.setenv('K8S_AUTH_CONTEXT', 'ctx')
    monkeypatch.setenv('K8S_AUTH_HOST', 'https://h:6443')
    monkeypatch.setenv('K8S_AUTH_API_KEY', 'tok')
    monkeypatch.setenv('K8S_AUTH_VERIFY_SSL', 'no')
    monkeypatch.setenv('K8S_AUTH_SSL_CA_CERT', '/tmp/ca')
    module = make_module(monkeypatch, {})
    p = module.params
    assert (p['kubeconfig'], p['context'], p['host'], p['api_key'], p['validate_certs'], p['ca_cert']) == \
        ('/tmp/kc', 'ctx', 'https://h:6443', 'tok', False, '/tmp/ca')
    assert p['wait'] is True and p['wait_timeout'] == 300
    assert 'tok' in module.no_log_values


def test_aliases(monkeypatch):
    module = make_module(monkeypatch, {'verify_ssl': True, 'ssl_ca_cert': '/x/ca', 'cert_file': '/x/c',
                                       'key_file': '/x/k'})
    assert module.params['validate_certs'] is True and module.params['ca_cert'] == '/x/ca'
    assert module.params['client_key'] == '/x/k'


def test_protect_secrets_masks_kubeconfig_credentials(monkeypatch):
    kc = {'users': [{'name': 'u', 'user': {'token': 'abcd-secret-token', 'client-key-data': 'S0VZREFUQQ=='}}],
          'clusters': [{'name': 'c', 'cluster': {'server': 'https://k:6443'}}]}
    module = make_module(monkeypatch, {'kubeconfig': kc})
    secrets = args.protect_secrets(module)
    assert secrets == {'abcd-secret-token', 'S0VZREFUQQ=='}
    assert 'abcd-secret-token' in module.no_log_values
    assert 'https://k:6443' not in secrets


@pytest.mark.parametrize('params,fragment', [
    ({'kubeconfig': 12}, 'path to a kubeconfig file'),
    ({'kubeconfig': '  '}, 'kubeconfig is empty'),
    ({'host': 'api.example.com'}, 'not a URL'),
    ({'client_cert': '/c'}, 'client_cert and client_key go together'),
])
def test_check_auth_params(params, fragment):
    with pytest.raises(InvalidInput) as info:
        args.check_auth_params(params)
    assert fragment in str(info.value)


def test_check_auth_params_accepts_good_input():
    args.check_auth_params({'kubeconfig': '/k', 'host': 'https://h:1', 'client_cert': '/c', 'client_key': '/k'})
    args.check_auth_params({'kubeconfig': {'apiVersion': 'v1'}})
