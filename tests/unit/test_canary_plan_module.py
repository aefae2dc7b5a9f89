"""istio_canary_plan and istio_precheck: run() against the in-memory cluster and a recorded istioctl."""
import json

import pytest

from ansible_collections.meshops.istio.plugins.modules import istio_canary_plan as plan_mod
from ansible_collections.meshops.istio.plugins.modules import istio_precheck as precheck_mod
from ansible_collections.meshops.istio.plugins.module_utils import errors
from ansible_collections.meshops.istio.plugins.module_utils.istioctl import Istioctl

import fake_cluster as f
from module_stub import stub_for

PlanModule = stub_for({
    'stage': 'before', 'to_revision': '1-15-4', 'to_version': '1.15.4', 'from_revision': None, 'tag': 'default',
    'istio_namespace': 'istio-system', 'record_name': 'meshops-istio-upgrade', 'waves': [{'name': 'wave1', 'namespaces': ['bar']}],
    'gateways': [], 'max_minor_skew': 2, 'create_tag': False, 'abandon_upgrade': False, 'rollback': False,
    'migrate_legacy_labels': False, 'cluster': 'c1', 'assume_done': []})
PrecheckModule = stub_for({'istioctl_path': 'istioctl', 'expected_version': None, 'precheck': True, 'revision': None,
                           'istio_namespace': 'istio-system', 'timeout': 300})


def plan(module):
    """istio_canary_plan's result; a refused phase raises PhaseRefused (fail_json in the module base), which
    carries the plan."""
    try:
        return plan_mod.run(module)
    except errors.PhaseRefused as exc:
        assert exc.result['plan']['allowed'] is False and exc.message == exc.result['plan']['refusal']
        return dict(exc.to_result(), failed=True)


def test_plan_reads_once_changes_nothing_and_refuses_with_the_reason():
    cluster = f.FakeCluster(f.blog())
    rvs = cluster.resource_versions()
    out = plan(PlanModule({'phase': 'wave1'}, client=cluster))
    assert out['failed'] and 'Wave wave1 refuses to run' in out['msg']
    assert out['plan']['allowed'] is False and out['plan']['restarts'] == []
    out = plan(PlanModule({'phase': 'precheck'}, client=cluster))
    assert not out.get('failed') and out['changed'] is False and out['plan']['upgrade']['from_revision'] == '1-14-6'
    assert out['plan']['record_update']['phase'] == 'precheck' and out['plan']['assume_next'] == []
    assert cluster.writes == [] and cluster.resource_versions() == rvs


def test_plan_in_check_mode_goes_on_from_the_assumed_phases_with_a_diff():
    cluster = f.FakeCluster(f.blog())
    out = plan(PlanModule({'phase': 'wave1', 'assume_done': ['precheck', 'install', 'tag']},
                          check_mode=True, diff=True, client=cluster))
    assert not out.get('failed') and out['changed'] and out['plan']['simulated']
    assert out['plan']['moved'] == ['bar/Deployment/bar: 1.14.6 -> 1.15.4']
    assert out['plan']['assume_next'] == ['precheck', 'install', 'tag', 'wave1']
    headers = [d['before_header'] for d in out['diff']]
    assert 'wave1: bar/Deployment/bar' in headers and 'wave1: ConfigMap istio-system/meshops-istio-upgrade' in headers
    # outside check mode the assumption is ignored
    assert plan(PlanModule({'phase': 'wave1', 'assume_done': ['install', 'tag']}, client=cluster))['failed']


def test_plan_rejects_bad_input_before_reading():
    with pytest.raises(errors.InvalidInput, match="istio_canary_to_revision '1.15.4'"):
        plan_mod.run(PlanModule({'phase': 'precheck', 'to_revision': '1.15.4'}))   # no client: not touched
    with pytest.raises(errors.InvalidInput, match='unknown phase'):
        plan_mod.run(PlanModule({'phase': 'wave0'}))


class Recorder:
    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def __call__(self, cmd, timeout, env):
        self.calls.append(cmd)
        for key, answer in self.answers.items():
            if key in cmd:
                return answer
        return 0, '', ''


def test_precheck_module(binary, tmp_path):
    kubeconfig = tmp_path / 'kc'
    kubeconfig.write_text('{}')
    warn = 'Warning [IST0113] (Namespace foo) both labels\n'
    rec = Recorder({'version': (0, json.dumps({'clientVersion': {'version': '1.15.4'}}), ''),
                    'precheck': (0, warn, '')})
    params = {'kubeconfig': str(kubeconfig), 'expected_version': '1.15.4'}
    out = precheck_mod.run(PrecheckModule(params), Istioctl(binary, {'kubeconfig': str(kubeconfig)}, runner=rec))
    assert out['istioctl']['version'] == '1.15.4' and out['precheck']['messages'][0]['where'] == 'Namespace foo'
    assert rec.calls[-1][-2:] == ['--kubeconfig', str(kubeconfig)] and not out['changed']
    with pytest.raises(errors.IstioctlError, match=r'is version 1.15.4, not 1.16.0'):
        precheck_mod.run(PrecheckModule(dict(params, expected_version='1.16.0')),
                         Istioctl(binary, {'kubeconfig': str(kubeconfig)}, runner=rec))
    rec.answers['precheck'] = (79, 'Error [IST0141] (ClusterRole) Missing required permission\n' + warn, 'Error: Issues')
    with pytest.raises(errors.IstioctlError) as info:
        precheck_mod.run(PrecheckModule(params), Istioctl(binary, {'kubeconfig': str(kubeconfig)}, runner=rec))
    assert 'rc 79' in str(info.value) and 'IST0141' in str(info.value) and 'IST0113' not in str(info.value)
    only_version = precheck_mod.run(PrecheckModule(dict(params, precheck=False)),
                                    Istioctl(binary, {'kubeconfig': str(kubeconfig)}, runner=rec))
    assert 'precheck' not in only_version
