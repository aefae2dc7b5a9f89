"""What the built tarball holds: what a user of the collection can use, nothing that cannot work from it."""
import ast
import json
import os
import re
import subprocess
import sys
import tarfile

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import REPO

# What is shipped (top-level entries of the tarball) and what is kept back, with the reason.
SHIPPED_TOP = {'MANIFEST.json', 'FILES.json', 'LICENSE', 'README.md', 'CHANGELOG.rst', 'requirements.txt',
               'bindep.txt', 'changelogs', 'docs', 'meta', 'playbooks', 'plugins', 'roles', 'tests'}
KEPT_BACK = [
    'tests/kubesim',            # the simulated cluster: a test harness, not part of the collection
    'tests/integration',        # runs only against tests/kubesim
    'tests/release',            # these tests: they need the repository and the release venvs
    'tests/demo.py',
    'tests/demo_ambient.py',    # the ambient demo (make demo SCENARIO=ambient) runs on tests/kubesim
    'inventories',              # the sandbox inventory points at the simulator and .build/ of a checkout
    'bench',
    '.ci',
    'ee',                       # the execution environment's build files (execution-environment.yml needs the tarball)
    'execution-environment.yml',
    'docs/awx',                 # AWX configuration playbook (needs awx.awx; docs/awx.md ships and points at it)
    'Makefile',
    'requirements-test.txt',
    'requirements-lowest.txt',  # the lowest dependency versions make test-lowest tests
]


def members(tarball):
    with tarfile.open(tarball) as tar:
        return {m.name: m for m in tar.getmembers()}


def tracked(*paths):
    out = subprocess.run(['git', 'ls-files', '--', *paths], cwd=REPO, check=True, capture_output=True, text=True)
    return [line for line in out.stdout.splitlines() if os.path.exists(os.path.join(REPO, line))]


def test_only_what_users_can_use_is_shipped(tarball):
    names = members(tarball)
    top = {name.split('/')[0] for name in names}
    assert top <= SHIPPED_TOP, sorted(top - SHIPPED_TOP)
    for path in KEPT_BACK:
        assert not any(n == path or n.startswith(path + '/') for n in names), path
    assert not [n for n in names if '/.' in '/' + n or '__pycache__' in n or n.endswith('.pyc')]
    tests = {n.split('/')[1] for n in names if n.startswith('tests/') and n.count('/') >= 1 and n != 'tests/'}
    assert tests == {'unit'}, tests


def test_every_tracked_file_of_the_shipped_parts_is_in_it(tarball):
    names = members(tarball)
    shipped = tracked('LICENSE', 'README.md', 'requirements.txt', 'bindep.txt', 'changelogs', 'docs', 'meta',
                      'playbooks', 'plugins', 'roles', 'tests/unit')
    assert len(shipped) > 50
    missing = [path for path in shipped if path not in names and not any(path.startswith(k + '/') for k in KEPT_BACK)]
    assert missing == []


def test_unit_tests_need_nothing_that_is_not_shipped(tarball):
    """tests/unit imports only the collection, the standard library, pytest and tests/unit/requirements.txt."""
    names = members(tarball)
    with open(os.path.join(REPO, 'tests', 'unit', 'requirements.txt')) as fh:
        declared = {re.split(r'[<>=\[; ]', line.strip())[0].lower() for line in fh
                    if line.strip() and not line.startswith('#')}
    local = {os.path.splitext(os.path.basename(n))[0] for n in names if n.startswith('tests/unit/')}
    allowed_third_party = {'pytest', 'yaml', 'ansible', 'ansible_collections'} | declared
    assert {'kubernetes', 'jmespath', 'trustme', 'urllib3'} <= declared
    with tarfile.open(tarball) as tar:
        for name in names:
            if not (name.startswith('tests/unit/') and name.endswith('.py')):
                continue
            tree = ast.parse(tar.extractfile(name).read().decode())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    roots = [a.name.split('.')[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    roots = [node.module.split('.')[0]]
                else:
                    continue
                for root in roots:
                    assert (root in sys.stdlib_module_names or root in local or root in allowed_third_party), \
                        '%s imports %s' % (name, root)


def test_manifest_carries_galaxy_metadata(tarball, galaxy):
    with tarfile.open(tarball) as tar:
        info = json.load(tar.extractfile('MANIFEST.json'))['collection_info']
    assert info['version'] == galaxy['version']
    # Automation Hub refuses versions below 1.0.0; the version is the last release's or the next one's
    released = yaml.safe_load(open(os.path.join(REPO, 'changelogs', 'changelog.yaml'), encoding='utf-8'))['releases']
    assert Version(info['version']) >= max(Version(v) for v in released) >= Version('1.0.0')
    assert info['license'] == ['GPL-3.0-or-later']
    assert info['repository'] == 'https://github.com/meshops/istio'
    assert info['documentation'] == 'https://github.com/meshops/istio/blob/main/README.md'
    assert info['issues'] == 'https://github.com/meshops/istio/issues'
    # Automation Hub requires one of its category tags
    assert set(info['tags']) & {'application', 'cloud', 'database', 'infrastructure', 'linux', 'monitoring',
                                'networking', 'security', 'storage', 'tools', 'windows'}
    with tarfile.open(tarball) as tar:
        license_text = tar.extractfile('LICENSE').read().decode()
    assert 'GNU GENERAL PUBLIC LICENSE' in license_text and 'Version 3, 29 June 2007' in license_text
    assert 'END OF TERMS AND CONDITIONS' in license_text


def test_requires_ansible_is_what_is_tested(tarball, cores):
    with tarfile.open(tarball) as tar:
        runtime = yaml.safe_load(tar.extractfile('meta/runtime.yml'))
    spec = SpecifierSet(runtime['requires_ansible'])
    tested = sorted(cores, key=lambda v: tuple(map(int, v.split('.'))))
    assert tested == ['2.16', '2.17', '2.18', '2.19', '2.20']
    for version in tested:
        assert '%s.0' % version in spec, (version, str(spec))
    lowest_major, lowest_minor = map(int, tested[0].split('.'))
    assert '%d.%d.99' % (lowest_major, lowest_minor - 1) not in spec, str(spec)
