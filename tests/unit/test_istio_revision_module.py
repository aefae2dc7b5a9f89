"""istio_revision: install/remove logic against the in-memory cluster and a fake istioctl."""
import json

import pytest

from ansible_collections.meshops.istio.plugins.modules import istio_revision as mod
from ansible_collections.meshops.istio.plugins.module_utils import errors
from ansible_collections.meshops.istio.plugins.module_utils.istioctl import Istioctl

import fake_cluster as f
from module_stub import stub_for


class FakeIstioctl:
    """Runner for Istioctl that installs/uninstalls into a FakeCluster like istioctl would."""

    def __init__(self, cluster, version='1.15.4', ready=True):
        self.cluster = cluster
        self.version = version
        self.ready = ready
        self.calls = []

    def __call__(self, cmd, timeout, env):
        args = cmd[1:]
        self.calls.append(args)
        if args[0] == 'version':
            return 0, json.dumps({'clientVersion': {'version': self.version}}), ''
        if args[0] == 'install':
            rev = args[args.index('--set') + 1].split('=', 1)[1]
            for obj in (f.istiod(rev, self.version, ready=self.ready), f.service(rev), f.injector(rev)):
                self.cluster.put(obj)
            return 0, '✔ Istiod installed', ''
        if args[0] == 'uninstall':
            rev = args[args.index('--revision') + 1]
            self.cluster.delete('Deployment', 'istiod-' + rev, 'istio-system')
            self.cluster.delete('Service', 'istiod-' + rev, 'istio-system')
            self.cluster.delete('MutatingWebhookConfiguration', 'istio-sidecar-injector-' + rev)
            return 0, 'Removed', ''
        return 1, '', 'unknown command'


@pytest.fixture(autouse=True)
def kubeconfig_env(tmp_path, monkeypatch):
    """istioctl is given the file the modules would read ($KUBECONFIG here); it needs one to exist."""
    path = tmp_path / 'kubeconfig'
    path.write_text('{"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}')
    monkeypatch.setenv('KUBECONFIG', str(path))
    return str(path)


def manager(cluster, binary, check_mode=False, **kw):
    fake = FakeIstioctl(cluster, **kw)
    tool = Istioctl(binary, {}, runner=fake)
    return mod.RevisionManager(cluster, tool, 'istio-system', check_mode=check_mode, wait=True,
                               wait_timeout=5), fake


def test_present_installs_then_is_idempotent(binary):
    cluster = f.FakeCluster(f.blog())
    m, fake = manager(cluster, binary)
    changed, before, after, info = m.present('1-15-4')
    assert changed and before['present'] is False
    assert after == {'name': '1-15-4', 'present': True, 'version': '1.15.4', 'ready': True, 'in_use_by': []}
    assert info['command'] == 'istioctl install --set revision=1-15-4 -y'
    assert cluster.find('Deployment', 'istiod-1-15-4', 'istio-system') is not None
    rvs = cluster.resource_versions()
    changed, _before, after2, _info = m.present('1-15-4')
    assert not changed and after2['ready'] and cluster.resource_versions() == rvs
    assert [c[0] for c in fake.calls] == ['version', 'install']


def test_present_check_mode_runs_nothing(binary):
    cluster = f.FakeCluster(f.blog())
    rvs = cluster.resource_versions()
    m, fake = manager(cluster, binary, check_mode=True)
    changed, before, after, info = m.present('1-15-4')
    assert changed and after['present'] and info['command'].startswith('istioctl install')
    assert cluster.resource_versions() == rvs and [c[0] for c in fake.calls] == ['version']


def test_present_refuses_other_version(binary):
    cluster = f.FakeCluster(f.blog([f.istiod('1-15-4', '1.15.3')]))
    m, fake = manager(cluster, binary)
    with pytest.raises(errors.RevisionVersionMismatch) as info:
        m.present('1-15-4')
    assert '1.15.3' in str(info.value) and '1.15.4' in str(info.value)
    assert [c[0] for c in fake.calls] == ['version']


def test_present_reinstalls_when_not_ready_and_fails_if_it_stays_so(binary):
    cluster = f.FakeCluster(f.blog([f.istiod('1-15-4', '1.15.4', ready=False)]))
    m, fake = manager(cluster, binary, ready=False)
    with pytest.raises(errors.RevisionNotReady) as info:
        m.present('1-15-4')
    assert 'istiod-1-15-4' in str(info.value)
    assert [c[0] for c in fake.calls] == ['version', 'install']


def test_absent_refuses_while_in_use_and_lists_users(binary):
    cluster = f.FakeCluster(f.blog())
    rvs = cluster.resource_versions()
    m, fake = manager(cluster, binary)
    with pytest.raises(errors.RevisionInUse) as info:
        m.absent('1-14-6')
    msg = str(info.value)
    assert 'revision tag default' in msg and 'validator istiod-default-validator' in msg
    assert 'pod foo/foo-5d8f7c9b6-00000' in msg
    kinds = {u['kind'] for u in info.value.details['in_use_by']}
    assert kinds == {'tag', 'validator', 'pod'}
    assert cluster.resource_versions() == rvs and fake.calls == []


def test_absent_force_and_idempotence(binary):
    cluster = f.FakeCluster(f.blog())
    m, fake = manager(cluster, binary)
    changed, before, after, info = m.absent('1-14-6', force=True)
    assert changed and before['present'] and not after['present']
    assert cluster.find('Deployment', 'istiod-1-14-6', 'istio-system') is None
    assert fake.calls[-1][:4] == ['uninstall', '--revision', '1-14-6', '-y']
    changed, _before, _after, _info = m.absent('1-14-6')
    assert not changed


def test_absent_check_mode(binary):
    objs = [f.istiod('1-13-0', '1.13.0'), f.service('1-13-0'), f.injector('1-13-0')]
    cluster = f.FakeCluster(objs)
    rvs = cluster.resource_versions()
    m, fake = manager(cluster, binary, check_mode=True)
    changed, _before, after, info = m.absent('1-13-0')
    assert changed and not after['present'] and info['command'] == 'istioctl uninstall --revision 1-13-0 -y'
    assert cluster.resource_versions() == rvs and fake.calls == []


def test_absent_detects_leftovers(binary):
    cluster = f.FakeCluster([f.istiod('1-13-0', '1.13.0'), f.service('1-13-0'), f.injector('1-13-0')])
    m, fake = manager(cluster, binary)

    def broken(cmd, timeout, env):
        fake.calls.append(cmd[1:])
        return 0, '', ''
    m.istioctl.runner = broken
    with pytest.raises(errors.MeshopsError) as info:
        m.absent('1-13-0')
    assert 'still exist' in str(info.value) and 'Deployment istio-system/istiod-1-13-0' in str(info.value)


FakeModule = stub_for({'state': 'present', 'istioctl_path': 'istioctl', 'operator_file': None, 'set': None,
                       'istio_namespace': 'istio-system', 'force': False, 'wait': True, 'wait_timeout': 5})


def test_run_rejects_dotted_revision_before_anything():
    # FakeModule without a client: asking for one fails the test ('touched the cluster')
    with pytest.raises(errors.InvalidInput) as info:
        mod.run(FakeModule({'revision': '1.15.4'}))
    assert "use '1-15-4'" in str(info.value)
    with pytest.raises(errors.InvalidInput):
        mod.run(FakeModule({'revision': 'default'}))


def test_run_missing_istioctl_before_cluster():
    with pytest.raises(errors.IstioctlNotFound):
        mod.run(FakeModule({'revision': '1-15-4', 'istioctl_path': '/nonexistent/istioctl'}))


def test_run_diff(monkeypatch, binary):
    cluster = f.FakeCluster(f.blog())
    fake = FakeIstioctl(cluster)
    monkeypatch.setattr(mod, 'Istioctl', lambda path, auth: Istioctl(binary, auth, runner=fake))
    result = mod.run(FakeModule({'revision': '1-15-4'}, diff=True, client=cluster))
    assert result['changed'] and result['diff']['before']['present'] is False
    assert result['diff']['after'] == {'name': '1-15-4', 'present': True, 'version': '1.15.4', 'ready': True}
    assert result['istioctl']['version'] == '1.15.4'
    assert result['changes'] == [
        {'kind': 'Deployment', 'namespace': 'istio-system', 'name': 'istiod-1-15-4', 'action': 'created'},
        {'kind': 'MutatingWebhookConfiguration', 'name': 'istio-sidecar-injector-1-15-4', 'action': 'created'}]
    assert cluster.find('Deployment', 'istiod-1-15-4', 'istio-system') is not None
