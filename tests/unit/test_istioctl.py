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


def test_version_and_install_command(binary):
    rec = Recorder({'version': (0, json.dumps({'clientVersion': {'version': '1.15.4'}}), '')})
    tool = ic.Istioctl(binary, {'kubeconfig': '/k/config', 'context': 'c1'}, runner=rec)
    assert tool.version() == '1.15.4'
    assert rec.calls[0] == [binary, 'version', '--remote=false', '-o', 'json']
    out = tool.install('1-15-4', set_values={'profile': 'minimal'})
    assert rec.calls[1] == [binary, 'install', '--set', 'revision=1-15-4', '--set', 'profile=minimal', '-y',
                            '--kubeconfig', '/k/config', '--context', 'c1']
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


def test_precheck_reports_failure_without_raising(binary):
    tool = ic.Istioctl(binary, runner=Recorder({'precheck': (1, 'Error [IST0002] bad', '')}))
    ok, output = tool.precheck()
    assert not ok and 'IST0002' in output
