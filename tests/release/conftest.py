"""Release tests (issue 15): run by `make release-tests` (part of `make release-check`) on the built tarball.

The Makefile passes what they check through the environment:
* ``MESHOPS_RELEASE_TARBALL`` - the collection tarball (`make dist`);
* ``MESHOPS_RELEASE_CORES`` - ``X.Y=<venv>`` for every supported ansible-core, each venv with its ansible-core;
* ``MESHOPS_RELEASE_COLLECTIONS`` - a collections path holding awx.awx (and kubernetes.core).
"""
import os
import subprocess

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _required(name):
    value = os.environ.get(name)
    if not value:
        pytest.fail('%s is not set: run the release tests with `make release-tests`' % name, pytrace=False)
    return value


@pytest.fixture(scope='session')
def tarball():
    path = _required('MESHOPS_RELEASE_TARBALL')
    assert os.path.isfile(path), path
    return path


@pytest.fixture(scope='session')
def cores():
    """{ansible-core X.Y: venv} for every supported ansible-core."""
    pairs = dict(item.split('=', 1) for item in _required('MESHOPS_RELEASE_CORES').split())
    for venv in pairs.values():
        assert os.path.isfile(os.path.join(venv, 'bin', 'ansible-playbook')), venv
    return pairs


@pytest.fixture(scope='session')
def release_collections():
    path = _required('MESHOPS_RELEASE_COLLECTIONS')
    assert os.path.isdir(os.path.join(path, 'ansible_collections', 'awx', 'awx')), path
    return path


@pytest.fixture(scope='session')
def galaxy():
    with open(os.path.join(REPO, 'galaxy.yml')) as fh:
        return yaml.safe_load(fh)


def install_collection(venv, tarball, dest):
    """Install the tarball with that ansible-core's ansible-galaxy into ``dest`` (a collections path)."""
    env = clean_env()
    subprocess.run([os.path.join(venv, 'bin', 'ansible-galaxy'), 'collection', 'install', '--force', '-p', dest,
                    tarball], check=True, capture_output=True, text=True, env=env)
    return dest


def clean_env(**extra):
    """The environment without the checkout's collection path or test modules, with ANSIBLE_* settings reset."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('ANSIBLE_') and k not in ('PYTHONPATH', 'MESHOPS_RELEASE_CORES')}
    env['ANSIBLE_NOCOLOR'] = '1'
    env.update(extra)
    return env


@pytest.fixture(scope='session')
def installed(tarball, cores, tmp_path_factory):
    """{ansible-core X.Y: collections path with the tarball installed by that ansible-core}."""
    out = {}
    for version, venv in cores.items():
        dest = str(tmp_path_factory.mktemp('collections-%s' % version))
        out[version] = install_collection(venv, tarball, dest)
    return out
