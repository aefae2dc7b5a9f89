"""The collection's playbooks used the AWX way: a Project holds only a thin playbook that imports
meshops.istio.<playbook> from the installed collection (README "AWX / Ansible Automation Platform")."""
import os
import re
import subprocess
import textwrap

import pytest

from conftest import REPO, clean_env

CORES = ['2.16', '2.17', '2.18', '2.19', '2.20']
PLAYBOOKS = sorted(os.path.splitext(p)[0] for p in os.listdir(os.path.join(REPO, 'playbooks')) if p.endswith('.yml'))


def readme_example():
    """The thin project playbook the README shows (the block that imports meshops.istio.upgrade)."""
    with open(os.path.join(REPO, 'README.md')) as fh:
        text = fh.read()
    blocks = re.findall(r'```yaml\n(.*?)^ *```', text, re.S | re.M)
    example = [b for b in blocks if 'import_playbook: meshops.istio.upgrade' in b]
    assert len(example) == 1, 'README.md must show one project playbook importing meshops.istio.upgrade'
    return textwrap.dedent(example[0])


def run_playbook(venv, collections, project, *args):
    return subprocess.run([os.path.join(venv, 'bin', 'ansible-playbook'), *args], cwd=project, capture_output=True,
                          text=True, timeout=600, check=False,
                          env=clean_env(ANSIBLE_COLLECTIONS_PATH=collections))


@pytest.mark.parametrize('core', CORES)
def test_readme_project_playbook_imports_the_upgrade(core, cores, installed, tmp_path):
    (tmp_path / 'upgrade.yml').write_text(readme_example())
    (tmp_path / 'hosts.yml').write_text('istio_clusters:\n  hosts:\n    cluster-a:\n      ansible_connection: local\n')
    proc = run_playbook(cores[core], installed[core], tmp_path, '-i', 'hosts.yml', 'upgrade.yml', '--list-tasks',
                        '--list-tags')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the imported play, its phases and their tags, as the collection's playbook defines them
    assert 'play #1 (istio_clusters): Istio canary upgrade' in proc.stdout, proc.stdout
    for tag in ('precheck', 'install', 'tag', 'gateways', 'wave1', 'verify', 'cleanup', 'rollback'):
        assert tag in proc.stdout, (tag, proc.stdout)
    assert 'WARNING' not in proc.stderr, proc.stderr


@pytest.mark.parametrize('core', CORES)
@pytest.mark.parametrize('playbook', PLAYBOOKS)
def test_every_collection_playbook_is_importable(core, playbook, cores, installed, tmp_path):
    (tmp_path / 'site.yml').write_text('---\n- name: From the collection\n  ansible.builtin.import_playbook: '
                                       'meshops.istio.%s\n' % playbook)
    (tmp_path / 'hosts.yml').write_text('istio_clusters:\n  hosts:\n    cluster-a:\n      ansible_connection: local\n')
    proc = run_playbook(cores[core], installed[core], tmp_path, '-i', 'hosts.yml', 'site.yml', '--syntax-check')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = run_playbook(cores[core], installed[core], tmp_path, '-i', 'hosts.yml', 'site.yml', '--list-tasks')
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert 'play #1 (istio_clusters)' in listed.stdout, listed.stdout


def test_a_missing_playbook_is_an_error(cores, installed, tmp_path):
    """The check above can fail: importing a playbook the collection does not have is refused."""
    (tmp_path / 'site.yml').write_text('---\n- name: Nope\n  ansible.builtin.import_playbook: meshops.istio.nope\n')
    proc = run_playbook(cores['2.19'], installed['2.19'], tmp_path, 'site.yml', '--syntax-check')
    assert proc.returncode != 0
