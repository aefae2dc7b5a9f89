"""ansible-doc of every module, filter, role and role entry point, from the installed tarball, on every supported
ansible-core: what Galaxy's importer and `ansible-doc` users read. Nothing may be missing or unreadable."""
import json
import os
import subprocess

import pytest

from conftest import REPO, clean_env

CORES = ['2.16', '2.17', '2.18', '2.19', '2.20']


def plugin_names(kind, venv=None, collections=None):
    """meshops.istio.<name> of every plugin of a kind in the collection (what must be documented)."""
    directory = os.path.join(REPO, 'plugins', kind)
    files = sorted(e for e in os.listdir(directory) if e.endswith('.py') and e != '__init__.py') \
        if os.path.isdir(directory) else []
    if kind != 'filter':
        return ['meshops.istio.' + os.path.splitext(e)[0] for e in files]
    # a filter plugin file holds several filters (its FilterModule().filters()), each documented on its own
    names = []
    for entry in files:
        probe = ('import json, sys; sys.path.insert(0, sys.argv[1]); import importlib; '
                 'm = importlib.import_module("ansible_collections.meshops.istio.plugins.filter." + sys.argv[2]); '
                 'print(json.dumps(sorted(m.FilterModule().filters())))')
        out = subprocess.run([os.path.join(venv, 'bin', 'python'), '-c', probe, collections,
                              os.path.splitext(entry)[0]], capture_output=True, text=True, check=True, env=clean_env())
        names.extend(json.loads(out.stdout))
    return ['meshops.istio.' + n for n in names]


def role_names():
    return ['meshops.istio.' + r for r in sorted(os.listdir(os.path.join(REPO, 'roles')))]


def ansible_doc(venv, collections, *args):
    proc = subprocess.run([os.path.join(venv, 'bin', 'ansible-doc'), *args], capture_output=True, text=True,
                          env=clean_env(ANSIBLE_COLLECTIONS_PATH=collections), timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    # ansible-core 2.20's ansible-doc -l warns about its own internal collection (ansible._protomatter): not ours
    problems = [line for line in proc.stderr.splitlines() if ('WARNING' in line or 'ERROR' in line)
                and 'ansible/_protomatter' not in line]
    assert problems == [], proc.stderr
    return json.loads(proc.stdout) if '--json' in args or '-j' in args else proc.stdout


@pytest.mark.parametrize('core', CORES)
@pytest.mark.parametrize('kind', ['module', 'filter'])
def test_every_plugin_is_documented(core, kind, cores, installed):
    expected = plugin_names('modules' if kind == 'module' else kind, cores[core], installed[core])
    listed = ansible_doc(cores[core], installed[core], '-t', kind, '-l', 'meshops.istio', '--json')
    assert sorted(listed) == sorted(expected)
    if not expected:
        return
    docs = ansible_doc(cores[core], installed[core], '-t', kind, '--json', *expected)
    assert sorted(docs) == sorted(expected)
    for name, data in docs.items():
        doc = data.get('doc') or {}
        assert doc.get('short_description') and doc.get('description'), name
        assert doc.get('version_added'), name
        assert data.get('examples'), name
        assert data.get('return'), name
        if kind == 'module':
            assert {'check_mode', 'diff_mode'} <= set(doc.get('attributes') or {}), name
    # the text a user reads renders too
    for name in expected:
        text = ansible_doc(cores[core], installed[core], '-t', kind, name)
        assert name in text


@pytest.mark.parametrize('core', CORES)
def test_every_role_entry_point_is_documented(core, cores, installed):
    roles = role_names()
    listed = ansible_doc(cores[core], installed[core], '-t', 'role', '-l', 'meshops.istio', '--json')
    assert sorted(listed) == sorted(roles)
    for role in roles:
        docs = ansible_doc(cores[core], installed[core], '-t', 'role', '--json', role)
        entry_points = docs[role]['entry_points']
        assert 'main' in entry_points, role
        assert entry_points['main'].get('version_added'), role
        for name, entry in entry_points.items():
            assert entry.get('short_description'), (role, name)
            assert entry.get('description'), (role, name)
            assert ansible_doc(cores[core], installed[core], '-t', 'role', '-e', name, role)
