"""The istioctl runner: version parsing, command lines, auth, secrets, errors."""
import json
import os
import stat

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import istioctl as ic
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    InvalidInput, IstioctlError, IstioctlNotFound)

TOKEN = 'tok-1234567890'


class Recorder:
    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}
        self.kubeconfigs = []

    def __call__(self, cmd, timeout, env):
        self.calls.append(cmd)
        if '--kubeconfig' in cmd:
            path = cmd[cmd.index('--kubeconfig') + 1]
            if os.path.exists(path):
                self.kubeconfigs.append((path, stat.S_IMODE(os.stat(path).st_mode), open(path).read()))
        for key, answer in self.answers.items():
            if key in cmd:
                return answer
        return 0, '', ''


def test_parse_version_output():
    assert ic.parse_version_output(json.dumps({'clientVersion': {'version': '1.15.4', 'revision': 'abc'}})) == '1.15.4'
    assert ic.parse_version_output('client version: 1.14.6\n') == '1.14.6'
    assert ic.parse_version_output('1.15.4') == '1.15.4'
    assert ic.parse_version_output('') is None
    assert ic.parse_version_output('garbage') is None


def test_flatten_set_values():
    assert ic.flatten_set_values({'profile': 'minimal', 'values': {'global': {'hub': 'h', 'x': True}},
                                  'components': {'ingressGateways': [{'name': 'gw', 'enabled': False}]}}) == [
        'components.ingressGateways[0].enabled=false', 'components.ingressGateways[0].name=gw',
        'profile=minimal', 'values.global.hub=h', 'values.global.x=true']
    with pytest.raises(InvalidInput):
        ic.flatten_set_values(['a=b'])


def test_missing_binary():
    with pytest.raises(IstioctlNotFound) as info:
        ic.Istioctl('/nonexistent/istioctl').version()
    assert 'istioctl_path' in str(info.value)
    with pytest.raises(IstioctlNotFound) as info:
        ic.Istioctl('no-such-istioctl-binary', env={'PATH': '/nonexistent'}).version()
    assert 'searched PATH' in str(info.value)


def kubeconfig_file(tmp_path, name='config', server='https://a.example:6443', token=TOKEN):
    path = tmp_path / name
    path.write_text(json.dumps({
        'apiVersion': 'v1', 'kind': 'Config', 'current-context': 'c',
        'clusters': [{'name': 'c', 'cluster': {'server': server, 'insecure-skip-tls-verify': True}}],
        'users': [{'name': 'c', 'user': {'token': token}}],
        'contexts': [{'name': 'c', 'context': {'cluster': 'c', 'user': 'c'}}]}))
    return str(path)


def test_version_and_install_command(binary, tmp_path):
    rec = Recorder({'version': (0, json.dumps({'clientVersion': {'version': '1.15.4'}}), '')})
    config = kubeconfig_file(tmp_path)
    tool = ic.Istioctl(binary, {'kubeconfig': config, 'context': 'c1'}, runner=rec)
    assert tool.version() == '1.15.4'
    assert rec.calls[0] == [binary, 'version', '--remote=false', '-o', 'json']
    out = tool.install('1-15-4', set_values={'profile': 'minimal'})
    assert rec.calls[1] == [binary, 'install', '--set', 'revision=1-15-4', '--set', 'profile=minimal', '-y',
                            '--kubeconfig', config, '--context', 'c1']
    assert out['command'] == 'istioctl install --set revision=1-15-4 --set profile=minimal -y'
    tool.uninstall('1-14-6')
    assert rec.calls[2][:5] == [binary, 'uninstall', '--revision', '1-14-6', '-y']


def test_revision_in_set_must_agree(binary):
    tool = ic.Istioctl(binary, runner=Recorder())
    with pytest.raises(InvalidInput):
        tool.install_args('1-15-4', set_values={'revision': 'other'})
    assert tool.install_args('1-15-4', set_values={'revision': '1-15-4'}) == \
        ['install', '--set', 'revision=1-15-4', '-y']


def test_unreadable_version(binary):
    tool = ic.Istioctl(binary, runner=Recorder({'version': (1, '', 'segfault')}))
    with pytest.raises(IstioctlError) as info:
        tool.version()
    assert 'cannot read the version' in str(info.value) and 'segfault' in str(info.value)


def test_api_key_auth_uses_private_temporary_kubeconfig_and_hides_token(binary):
    rec = Recorder({'install': (1, 'using token ' + TOKEN, 'Error: failed ' + TOKEN)})
    tool = ic.Istioctl(binary, {'host': 'https://api.example:6443', 'api_key': TOKEN, 'validate_certs': False},
                       runner=rec)
    with pytest.raises(IstioctlError) as info:
        tool.install('1-15-4')
    path, mode, content = rec.kubeconfigs[0]
    assert mode == 0o600 and TOKEN in content
    assert not os.path.exists(path)
    text = str(info.value) + json.dumps(info.value.details)
    assert TOKEN not in text and '********' in text
    assert '--context' in rec.calls[0]


def test_precheck_reports_failure_without_raising(binary, tmp_path):
    output = ('Error [IST0141] (ClusterRole) Missing required permission to create resource "clusterroles"\n'
              'Warning [IST0113] (Namespace foo) The namespace has both labels\n')
    tool = ic.Istioctl(binary, {'kubeconfig': kubeconfig_file(tmp_path)},
                       runner=Recorder({'precheck': (79, output, 'Error: Issues found')}))
    result = tool.precheck()
    assert not result['ok'] and result['rc'] == 79 and 'Issues found' in result['output']
    assert result['messages'] == [
        {'level': 'Error', 'code': 'IST0141', 'where': 'ClusterRole',
         'message': 'Missing required permission to create resource "clusterroles"',
         'text': 'Error [IST0141] (ClusterRole) Missing required permission to create resource "clusterroles"'},
        {'level': 'Warning', 'code': 'IST0113', 'where': 'Namespace foo', 'message': 'The namespace has both labels',
         'text': 'Warning [IST0113] (Namespace foo) The namespace has both labels'}]
    assert result['command'] == 'istioctl x precheck'


# --- the cluster istioctl talks to is the modules' (issue 12, defect 4) ------------------------------------

def test_tool_kubeconfig_names_the_file_the_modules_use(tmp_path, monkeypatch):
    cluster_a, cluster_b = kubeconfig_file(tmp_path, 'a'), kubeconfig_file(tmp_path, 'b', 'https://b.example')
    home = tmp_path / 'home'
    (home / '.kube').mkdir(parents=True)
    (home / '.kube' / 'config').write_text(open(cluster_b).read())
    monkeypatch.setenv('HOME', str(home))
    monkeypatch.delenv('KUBECONFIG', raising=False)
    # the kubeconfig option (K8S_AUTH_KUBECONFIG arrives there through the modules' env fallback) wins
    with ic.tool_kubeconfig({'kubeconfig': cluster_a, 'context': 'c'}) as (path, context):
        assert (path, context) == (cluster_a, 'c')
    # without it, the file the modules fall back to is named explicitly: $KUBECONFIG, else ~/.kube/config
    with ic.tool_kubeconfig({}) as (path, _context):
        assert path == str(home / '.kube' / 'config')
    monkeypatch.setenv('KUBECONFIG', cluster_a)
    with ic.tool_kubeconfig({}) as (path, context):
        assert (path, context) == (cluster_a, None)
    # several $KUBECONFIG files become one written kubeconfig (removed afterwards)
    monkeypatch.setenv('KUBECONFIG', os.pathsep.join([cluster_a, cluster_b]))
    with ic.tool_kubeconfig({}) as (path, context):
        assert context == 'meshops' and json.load(open(path))['clusters'][0]['cluster']['server'] == 'https://a.example:6443'
    assert not os.path.exists(path)
    # nothing at all: refused as the modules refuse, never a default of istioctl's own
    (home / '.kube' / 'config').unlink()
    monkeypatch.delenv('KUBECONFIG')
    monkeypatch.delenv('KUBERNETES_SERVICE_HOST', raising=False)
    with pytest.raises(InvalidInput, match='no cluster to talk to'):
        with ic.tool_kubeconfig({}):
            pass
    with pytest.raises(InvalidInput, match='does not exist'):
        with ic.tool_kubeconfig({'kubeconfig': str(tmp_path / 'missing')}):
            pass


def test_every_istioctl_command_gets_the_kubeconfig(binary, tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.delenv('KUBECONFIG', raising=False)
    monkeypatch.delenv('KUBERNETES_SERVICE_HOST', raising=False)
    rec = Recorder({'version': (0, '1.15.4', '')})
    with pytest.raises(InvalidInput, match='no cluster to talk to'):
        ic.Istioctl(binary, {}, runner=rec).precheck()
    assert rec.calls == []
    config = kubeconfig_file(tmp_path)
    tool = ic.Istioctl(binary, {'kubeconfig': config}, runner=rec)
    tool.precheck()
    assert rec.calls[-1] == [binary, 'x', 'precheck', '--kubeconfig', config]
    tool.version()
    assert '--kubeconfig' not in rec.calls[-1]  # the client version needs no cluster


def test_tool_kubeconfig_is_private_and_removed():
    params = {'host': 'https://h.example:6443', 'api_key': TOKEN, 'validate_certs': False}
    with ic.tool_kubeconfig(params) as (path, context):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode == 0o600
        data = json.load(open(path))
        assert data['users'][0]['user']['token'] == TOKEN and context == 'meshops'
        assert data['clusters'][0]['cluster']['insecure-skip-tls-verify'] is True
    assert not os.path.exists(path)
