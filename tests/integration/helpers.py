"""Shared helpers of the integration suites (test harness).

* ``run_module(name, args, check=False, diff=False, env=None)`` runs ``meshops.istio.<name>`` for real
  through Ansible (``ansible localhost -m``, with Ansible's own ``--check``/``--diff`` flags) and returns
  the module's complete result (a ``ModuleResult`` dict; ``.rc``, ``.stdout``, ``.stderr``, ``.cmd``).
  The result is captured by the ``module_result`` callback in callback_plugins/, so ``diff`` and
  ``invocation`` are there exactly as Ansible got them.
* reading the simulated cluster without the collection's own code: ``get``, ``list_items``,
  ``snapshot`` (resourceVersions of everything the modules touch, to prove check mode changed nothing),
  ``mwc_revision``, ``pods_of``.
"""
import json
import os
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TESTS = os.path.join(REPO, 'tests')
BUILD = os.path.join(REPO, '.build')
VENV_BIN = os.path.join(REPO, '.venv', 'bin')
PYTHON = os.path.join(VENV_BIN, 'python')
ANSIBLE = os.path.join(VENV_BIN, 'ansible')
ISTIOCTL = os.path.join(TESTS, 'kubesim', 'bin', 'istioctl')
CALLBACKS = os.path.join(HERE, 'callback_plugins')

OLD_REV, OLD_VERSION = '1-14-6', '1.14.6'
NEW_REV, NEW_VERSION = '1-15-4', '1.15.4'


def ensure_collection():
    """The symlink `make collection` creates, so tests also work when run directly with pytest."""
    link = os.path.join(BUILD, 'ansible_collections', 'meshops', 'istio')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(REPO, link)


class ModuleResult(dict):
    """A module's result; ``rc``/``stdout``/``stderr``/``cmd`` of the ansible run ride along."""
    rc = None
    stdout = ''
    stderr = ''
    cmd = None

    @property
    def failed(self):
        return bool(self.get('failed')) or self.get('_status') in ('failed', 'unreachable')

    def __repr__(self):
        return 'ModuleResult(%s, rc=%s, stderr=%r)' % (dict.__repr__(self)[:3000], self.rc, self.stderr[-2000:])


def ansible_env(env=None, istioctl_version=NEW_VERSION):
    ensure_collection()
    out = dict(os.environ)
    out.update({
        'ANSIBLE_COLLECTIONS_PATH': BUILD,
        'ANSIBLE_COLLECTIONS_PATHS': '',
        'ANSIBLE_CALLBACK_PLUGINS': CALLBACKS,
        'ANSIBLE_CALLBACKS_ENABLED': 'module_result',
        'ANSIBLE_LOAD_CALLBACK_PLUGINS': '1',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_HOST_KEY_CHECKING': 'False',
        'ANSIBLE_LOCALHOST_WARNING': 'False',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
        'ANSIBLE_DEPRECATION_WARNINGS': 'False',
        'KUBESIM_ISTIOCTL_VERSION': istioctl_version,
        # the stand-in istioctl runs with `env python3`: the venv's (it needs PyYAML)
        'PATH': VENV_BIN + os.pathsep + out.get('PATH', ''),
        'PYTHONPATH': TESTS,
    })
    for key in [k for k in out if k.startswith('K8S_AUTH_')]:
        del out[key]
    out.pop('KUBECONFIG', None)
    out.update(env or {})
    return out


def run_module(name, args, check=False, diff=False, env=None, verbosity=0, istioctl_version=NEW_VERSION,
               timeout=300):
    """Run ``meshops.istio.<name>`` with ``args`` through Ansible; return its result (ModuleResult)."""
    fd, result_file = tempfile.mkstemp(prefix='meshops-result-', suffix='.jsonl')
    os.close(fd)
    cmd = [ANSIBLE, 'localhost', '-c', 'local', '-i', 'localhost,',
           '-e', 'ansible_python_interpreter=%s' % PYTHON,
           '-m', 'meshops.istio.%s' % name, '-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    if verbosity:
        cmd.append('-' + 'v' * verbosity)
    run_env = ansible_env(env, istioctl_version)
    run_env['MESHOPS_MODULE_RESULT'] = result_file
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=run_env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        with open(result_file) as handle:
            lines = [json.loads(line) for line in handle if line.strip()]
    finally:
        os.unlink(result_file)
    result = ModuleResult(lines[-1] if lines else {})
    result.rc, result.stdout, result.stderr, result.cmd = proc.returncode, proc.stdout, proc.stderr, cmd
    if not lines:
        raise AssertionError('no result from %s (rc=%s)\nstdout:\n%s\nstderr:\n%s'
                             % (name, proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    return result


def auth(sim):
    """Module arguments that reach ``sim`` through its kubeconfig."""
    return {'kubeconfig': sim.kubeconfig}


# --- reading the cluster (independently of the collection's code) ------------------------------------

PATHS = {
    'Namespace': '/api/v1/namespaces',
    'Node': '/api/v1/nodes',
    'Pod': '/api/v1/namespaces/{ns}/pods',
    'Service': '/api/v1/namespaces/{ns}/services',
    'ConfigMap': '/api/v1/namespaces/{ns}/configmaps',
    'Deployment': '/apis/apps/v1/namespaces/{ns}/deployments',
    'StatefulSet': '/apis/apps/v1/namespaces/{ns}/statefulsets',
    'DaemonSet': '/apis/apps/v1/namespaces/{ns}/daemonsets',
    'ReplicaSet': '/apis/apps/v1/namespaces/{ns}/replicasets',
    'MutatingWebhookConfiguration': '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations',
    'ValidatingWebhookConfiguration': '/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations',
}


def _path(kind, ns=None, name=None):
    path = PATHS[kind]
    if '{ns}' in path:
        path = path.replace('/namespaces/{ns}', '/namespaces/%s' % ns if ns else '')
    return path + ('/' + name if name else '')


def get(sim, kind, name, ns=None):
    """The object, or None when the API answers 404."""
    code, _headers, body = sim.request('GET', _path(kind, ns, name))
    if code == 404:
        return None
    assert code == 200, (kind, name, code, body[:300])
    return json.loads(body)


def list_items(sim, kind, ns=None, label_selector=None):
    path = _path(kind, ns)
    if label_selector:
        from urllib.parse import quote
        path += '?labelSelector=' + quote(label_selector)
    return sim.get_json(path)['items']


SNAPSHOT_KINDS = ('Namespace', 'Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Pod', 'Service',
                  'ConfigMap', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration')


def snapshot(sim, kinds=SNAPSHOT_KINDS):
    """{(kind, namespace, name): resourceVersion} of everything the modules could touch.

    Objects already being deleted (pods of a finished rollout in their grace period) are left out: they
    vanish on their own schedule, whatever a module does."""
    out = {}
    for kind in kinds:
        for item in list_items(sim, kind):
            meta = item['metadata']
            if meta.get('deletionTimestamp'):
                continue
            out[(kind, meta.get('namespace'), meta['name'])] = meta['resourceVersion']
    return out


def mwc_revision(sim, name):
    """(istio.io/rev label, set of services its webhooks call) of a MutatingWebhookConfiguration."""
    obj = get(sim, 'MutatingWebhookConfiguration', name)
    if obj is None:
        return None
    services = set(((h.get('clientConfig') or {}).get('service') or {}).get('name') for h in obj['webhooks'])
    return obj['metadata']['labels'].get('istio.io/rev'), services


def pods_of(sim, ns, app):
    return [p for p in list_items(sim, 'Pod', ns, 'app=%s' % app) if not p['metadata'].get('deletionTimestamp')]


def proxy_revisions(sim, ns, app):
    """Sorted revisions that injected the pods of app ``app`` in ``ns`` (None for no sidecar)."""
    revs = []
    for pod in pods_of(sim, ns, app):
        status = (pod['metadata'].get('annotations') or {}).get('sidecar.istio.io/status')
        revs.append(json.loads(status).get('revision') if status else None)
    return sorted(revs, key=str)


def install_revision(sim, revision=NEW_REV, version=NEW_VERSION):
    """Install a revision with the stand-in istioctl directly (setup for other tests)."""
    env = ansible_env(istioctl_version=version)
    cp = subprocess.run([PYTHON, ISTIOCTL, 'install', '--set', 'revision=%s' % revision, '-y',
                         '--kubeconfig', sim.kubeconfig], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    sim.wait_for(lambda: (get(sim, 'Deployment', 'istiod-%s' % revision, 'istio-system') or {})
                 .get('status', {}).get('readyReplicas'), timeout=60, message='istiod-%s ready' % revision)


def create_namespace(sim, name, labels=None):
    code, _headers, body = sim.request('POST', '/api/v1/namespaces',
                                       {'apiVersion': 'v1', 'kind': 'Namespace',
                                        'metadata': {'name': name, 'labels': dict(labels or {})}})
    assert code == 201, (code, body[:300])


def label_namespace(sim, name, labels):
    """Merge-patch a namespace's labels (a value of None removes the label)."""
    code, _headers, body = sim.request('PATCH', '/api/v1/namespaces/%s' % name, {'metadata': {'labels': labels}},
                                       headers={'Content-Type': 'application/merge-patch+json'})
    assert code == 200, (code, body[:300])


def wait_pods(sim, ns, label_selector, count, timeout=60):
    """Wait until exactly ``count`` pods (terminating ones included) match: a rollout or scale is over
    and the cluster stops changing by itself."""
    sim.wait_for(lambda: len(list_items(sim, 'Pod', ns, label_selector)) == count, timeout=timeout,
                 message='%d pods %s in %s' % (count, label_selector, ns))
