# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running istioctl: the one place that builds its command lines and gives it its cluster.

``Istioctl(path, auth_params)`` finds the binary, reads its version
(``istioctl version --remote=false -o json``), installs a revision
(``install --set revision=R [-f FILE] [--set k=v ...] -y``), uninstalls one
(``uninstall --revision R -y``) and runs ``x precheck`` (its findings parsed), always passing
``--kubeconfig``/``--context``.

istioctl talks to exactly the cluster the modules talk to, with the same credentials
(``tool_kubeconfig``): the kubeconfig option (a file, or ``K8S_AUTH_KUBECONFIG``) as is; otherwise the
file the modules fall back to ($KUBECONFIG, then ~/.kube/config) named explicitly; a kubeconfig given as
a dict, host/api_key, certificate options, several $KUBECONFIG files or the in-cluster service account
become a kubeconfig written for the one command (mode 0600 in a private directory, removed right after).
With nothing to go on it refuses, as the modules do: istioctl never falls back to a default on its own.
Output and messages never contain credentials.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.meshops.istio.plugins.module_utils.args import kubeconfig_secrets
from ansible_collections.meshops.istio.plugins.module_utils.client import bearer_token, build_configuration
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    InvalidInput,
    IstioctlError,
    IstioctlNotFound,
)

_PRECHECK_LINE = re.compile(r'^\s*(Error|Warning|Info)\s+\[(IST\d+)\]\s+(?:\(([^)]*)\)\s*)?(.*?)\s*$')
_VERSION_TEXT = re.compile(r'(?:client version:\s*|version\s+|^)v?(\d+\.\d+\.\d+[^\s"]*)',
                           re.IGNORECASE | re.MULTILINE)


def flatten_set_values(values, prefix=''):
    """{'values': {'global': {'hub': 'x'}}, 'profile': 'minimal'} -> ['values.global.hub=x',
    'profile=minimal'] (sorted, booleans as true/false, lists as key[i])."""
    out = []
    if values is None:
        return out
    if not isinstance(values, dict):
        raise InvalidInput('set must be a dictionary of istioctl --set values')
    for key in sorted(values, key=str):
        value = values[key]
        name = '%s.%s' % (prefix, key) if prefix else str(key)
        if isinstance(value, dict):
            out.extend(flatten_set_values(value, name))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(flatten_set_values(item, '%s[%d]' % (name, index)))
                else:
                    out.append('%s[%d]=%s' % (name, index, _scalar(item)))
        else:
            out.append('%s=%s' % (name, _scalar(value)))
    return out


def _scalar(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if value is None:
        return ''
    return str(value)


def parse_version_output(text):
    """The client version from ``istioctl version --remote=false -o json`` (or plain text)."""
    text = (text or '').strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        client = data.get('clientVersion') or {}
        version = client.get('version') or client.get('tag')
        if version:
            return str(version).lstrip('v')
    match = _VERSION_TEXT.search(text)
    return match.group(1) if match else None


class ClusterTool:
    """A command-line tool run against exactly the modules' cluster (auth params as in args.AUTH_ARG_SPEC):
    finds the binary, gives each command the kubeconfig and context of ``tool_kubeconfig`` and keeps every
    credential out of what it returns.  Istioctl and helm.Helm are its two tools."""

    name = None           # the binary's usual name, also used in messages
    path_option = None    # the module option that points at the binary
    install_hint = None   # what to do when it is not found
    context_flag = '--context'
    not_found = IstioctlNotFound

    def __init__(self, path=None, auth_params=None, timeout=900, runner=None, env=None):
        self.path = path or self.name
        self.auth_params = dict(auth_params or {})
        self.timeout = timeout
        self.runner = runner or _subprocess_runner
        self.env = env
        self._resolved = None
        self._version = None
        secrets = set(kubeconfig_secrets(self.auth_params.get('kubeconfig')))
        if self.auth_params.get('api_key'):
            secrets.add(self.auth_params['api_key'])
        self._secrets = secrets

    def resolve(self):
        """Absolute path of the binary, or ``not_found`` saying what to do."""
        if self._resolved:
            return self._resolved
        candidate = os.path.expanduser(self.path)
        if os.sep in candidate:
            found = candidate if os.path.isfile(candidate) and os.access(candidate, os.X_OK) else None
        else:
            found = shutil.which(candidate, path=(self.env or os.environ).get('PATH'))
        if not found:
            raise self.not_found('%s not found at %r%s: %s' % (
                self.name, self.path, '' if os.sep in candidate else ' (searched PATH)', self.install_hint),
                details={self.path_option: self.path})
        self._resolved = found
        return found

    def display(self, args):
        """The command line as shown in results: no kubeconfig path of a temporary file."""
        return ' '.join([self.name] + list(args))

    def _run(self, args, kube=True, extra=()):
        binary = self.resolve()
        if not kube:
            return self._exec([binary] + list(args) + list(extra))
        with tool_kubeconfig(self.auth_params) as (kubeconfig, context):
            cmd = [binary] + list(args) + list(extra) + ['--kubeconfig', kubeconfig]
            if context:
                cmd += [self.context_flag, context]
            return self._exec(cmd)

    def _exec(self, cmd):
        try:
            rc, out, err = self.runner(cmd, self.timeout, self.env)
        except OSError as exc:
            raise self.not_found('cannot run %s %s: %s' % (self.name, cmd[0], exc),
                                 details={self.path_option: self.path})
        return rc, out or '', err or ''


class Istioctl(ClusterTool):
    """One istioctl binary used against one cluster."""

    name = 'istioctl'
    path_option = 'istioctl_path'
    install_hint = 'install the istioctl of the Istio version you want and set istioctl_path to it'
    not_found = IstioctlNotFound

    def version(self):
        """The istioctl client version (e.g. ``1.15.4``); IstioctlError if it cannot be read."""
        if self._version:
            return self._version
        rc, out, err = self._run(['version', '--remote=false', '-o', 'json'], kube=False)
        version = parse_version_output(out) if rc == 0 else None
        if not version:
            raise IstioctlError(
                'cannot read the version of istioctl %s (`istioctl version --remote=false -o json` '
                'exited %s): %s. Check that istioctl_path points at a working istioctl binary'
                % (self.resolve(), rc, _tail(err or out, self._secrets) or 'no output'),
                details={'rc': rc, 'stdout': _tail(out, self._secrets), 'stderr': _tail(err, self._secrets)})
        self._version = version
        return version

    # commands ---------------------------------------------------------------------------------

    def install_args(self, revision, operator_file=None, set_values=None, namespace=None):
        args = ['install', '--set', 'revision=%s' % revision]
        if operator_file:
            args += ['-f', operator_file]
        for item in flatten_set_values(set_values):
            if item.split('=', 1)[0] == 'revision' and item != 'revision=%s' % revision:
                raise InvalidInput('set contains %s but revision is %s: leave revision out of set'
                                   % (item, revision))
            if item.split('=', 1)[0] == 'revision':
                continue
            args += ['--set', item]
        if namespace and namespace != 'istio-system':
            args += ['--set', 'values.global.istioNamespace=%s' % namespace]
        args.append('-y')
        return args

    def install(self, revision, operator_file=None, set_values=None, namespace=None):
        if operator_file and not os.path.isfile(os.path.expanduser(operator_file)):
            raise InvalidInput('operator_file %s does not exist' % operator_file)
        args = self.install_args(revision, os.path.expanduser(operator_file) if operator_file else None,
                                 set_values, namespace)
        return self._check(args, 'install revision %s' % revision)

    def uninstall(self, revision, namespace=None):
        args = ['uninstall', '--revision', revision, '-y']
        if namespace and namespace != 'istio-system':
            args += ['--istioNamespace', namespace]
        return self._check(args, 'uninstall revision %s' % revision)

    def precheck(self, revision=None, namespace=None, from_version=None):
        """``istioctl x precheck``: ``{ok, rc, messages, output, command}`` with each finding as
        ``{level, code, where, message}``; never raises for a failed check.  From istioctl 1.20 with
        ``from_version`` it runs ``x precheck --from-version <old> -o json`` (the upgrade-specific checks; it
        exits 1 on warnings too): ``ok`` then means no Error-level finding."""
        args = ['x', 'precheck']
        if revision:
            args += ['--revision', revision]
        if namespace and namespace != 'istio-system':
            args += ['--istioNamespace', namespace]
        modern = bool(from_version) and _minor(self.version()) >= (1, 20)
        if modern:
            args += ['--from-version', str(from_version).lstrip('v'), '-o', 'json']
        rc, out, err = self._run(args)
        output = _clean(out + ('\n' + err if err else ''), self._secrets).strip()
        if modern:
            messages = parse_precheck_json(_clean(out, self._secrets))
            ok = rc == 0 or (messages is not None and not [m for m in messages if m['level'] == 'Error'])
            return {'ok': ok, 'rc': rc, 'messages': messages or [], 'output': output, 'command': self.display(args)}
        return {'ok': rc == 0, 'rc': rc, 'messages': parse_precheck_output(output), 'output': output,
                'command': self.display(args)}

    # plumbing ---------------------------------------------------------------------------------

    def _check(self, args, what):
        rc, out, err = self._run(args)
        if rc != 0:
            raise IstioctlError(
                'istioctl failed to %s (exit %s): %s'
                % (what, rc, _tail(err or out, self._secrets) or 'no output'),
                details={'command': self.display(args), 'rc': rc,
                         'stdout': _tail(out, self._secrets, 4000),
                         'stderr': _tail(err, self._secrets, 4000)})
        return {'command': self.display(args), 'rc': rc, 'stdout': _clean(out, self._secrets),
                'stderr': _clean(err, self._secrets)}


def _minor(version):
    match = re.match(r'v?(\d+)\.(\d+)', str(version or ''))
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def parse_precheck_json(text):
    """The findings of ``x precheck -o json`` (``[{code, level, message, origin, documentationUrl}]``) in the
    shape of parse_precheck_output; None when the output holds no JSON list."""
    text = (text or '').strip()
    start = text.find('[')
    if start < 0:
        return None
    try:
        items = json.loads(text[start:])
    except ValueError:
        return None
    if not isinstance(items, list):
        return None
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        where = item.get('origin') or None
        found.append({'level': item.get('level'), 'code': item.get('code'), 'where': where,
                      'message': item.get('message'), 'documentation': item.get('documentationUrl'),
                      'text': '%s [%s]%s %s' % (item.get('level'), item.get('code'),
                                                ' (%s)' % where if where else '', item.get('message'))})
    return found


def parse_precheck_output(text):
    """The findings istioctl x precheck prints (``Error [IST0141] (ClusterRole) Missing ...``)."""
    found = []
    for line in (text or '').splitlines():
        match = _PRECHECK_LINE.match(line)
        if match:
            found.append({'level': match.group(1), 'code': match.group(2), 'where': match.group(3) or None,
                          'message': match.group(4), 'text': line.strip()})
    return found


# --- the cluster a tool talks to ---------------------------------------------------------------------

def default_kubeconfig_files():
    """The kubeconfig files the modules fall back to without a kubeconfig option: $KUBECONFIG (its
    existing files), else ~/.kube/config when it exists (the kubernetes library's own default)."""
    if os.environ.get('KUBECONFIG'):
        return [p for p in os.environ['KUBECONFIG'].split(os.pathsep) if p and os.path.isfile(os.path.expanduser(p))]
    path = os.path.expanduser('~/.kube/config')
    return [path] if os.path.isfile(path) else []


def needs_generated_kubeconfig(params):
    """True when the auth options cannot be given to a tool as one kubeconfig file and a context: a
    kubeconfig dict, host/api_key or certificate overrides, several files, or no file at all (the
    in-cluster service account)."""
    kubeconfig = params.get('kubeconfig')
    overrides = any(params.get(k) for k in ('host', 'api_key', 'ca_cert', 'client_cert', 'client_key', 'proxy'))
    if isinstance(kubeconfig, dict) or overrides or params.get('validate_certs') is not None:
        return True
    files = [kubeconfig] if kubeconfig else default_kubeconfig_files()
    return len(files) != 1 or os.pathsep in (kubeconfig or '')


@contextlib.contextmanager
def tool_kubeconfig(params):
    """Yield (kubeconfig path, context or None) for a CLI tool such as istioctl, naming the same cluster
    and credentials the modules use for ``params`` (see the module docstring); InvalidInput when the
    modules would have nothing to talk to either."""
    kubeconfig = params.get('kubeconfig')
    if not needs_generated_kubeconfig(params):
        path = os.path.expanduser(kubeconfig) if kubeconfig else default_kubeconfig_files()[0]
        if not os.path.isfile(path):
            raise InvalidInput('kubeconfig file %s does not exist or is not a file: check the kubeconfig option '
                               '(or K8S_AUTH_KUBECONFIG)' % path, details={'kubeconfig': kubeconfig})
        yield path, params.get('context')
        return
    cfg, _target = build_configuration(params)
    user = {}
    token = bearer_token(cfg)
    if token:
        user['token'] = token.split(' ', 1)[1] if token.lower().startswith('bearer ') else token
    if cfg.cert_file:
        user['client-certificate'] = cfg.cert_file
    if cfg.key_file:
        user['client-key'] = cfg.key_file
    cluster = {'server': cfg.host}
    if not cfg.verify_ssl:
        cluster['insecure-skip-tls-verify'] = True
    elif cfg.ssl_ca_cert:
        cluster['certificate-authority'] = cfg.ssl_ca_cert
    if getattr(cfg, 'proxy', None):
        cluster['proxy-url'] = cfg.proxy
    doc = {
        'apiVersion': 'v1', 'kind': 'Config', 'preferences': {},
        'clusters': [{'name': 'meshops', 'cluster': cluster}],
        'users': [{'name': 'meshops', 'user': user}],
        'contexts': [{'name': 'meshops', 'context': {'cluster': 'meshops', 'user': 'meshops'}}],
        'current-context': 'meshops',
    }
    tmpdir = tempfile.mkdtemp(prefix='meshops-kubeconfig-')
    path = os.path.join(tmpdir, 'kubeconfig')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, 'w') as handle:
            json.dump(doc, handle)
        yield path, 'meshops'
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        try:
            os.rmdir(tmpdir)
        except OSError:
            pass


def _subprocess_runner(cmd, timeout, env):
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as exc:
        return 124, _text(exc.stdout), 'timed out after %ss; %s' % (timeout, _text(exc.stderr))
    return proc.returncode, _text(proc.stdout), _text(proc.stderr)


def _text(data):
    if data is None:
        return ''
    if isinstance(data, bytes):
        return data.decode('utf-8', 'replace')
    return data


def _clean(text, secrets):
    text = text or ''
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, '********')
    return text


def _tail(text, secrets, limit=800):
    text = _clean(text, secrets).strip()
    if len(text) > limit:
        text = '...' + text[-limit:]
    return text
