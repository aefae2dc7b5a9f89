"""docs/awx/configure.yml (the AWX configuration docs/awx.md describes) against the awx.awx collection: every task's
arguments, rendered as Ansible would, are validated with the module's own argument spec (captured from its code)
and with its documented options (which also describe the workflow nodes' fields); the workflow's graph is checked;
ansible-playbook resolves every module. awx.awx comes from the `ansible` package (make release-venvs)."""
import copy
import importlib
import os
import re
import subprocess
import sys

import jinja2
import jinja2.nativetypes
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from conftest import REPO, clean_env

CONFIGURE = os.path.join(REPO, 'docs', 'awx', 'configure.yml')
VALIDATOR_KEYS = ('mutually_exclusive', 'required_together', 'required_one_of', 'required_if', 'required_by')


class Captured(Exception):
    def __init__(self, argument_spec, kwargs):
        super().__init__('captured')
        self.argument_spec = argument_spec
        self.kwargs = kwargs


def awx_module(collections, name):
    """(argument spec, validator keyword arguments, documented options) of awx.awx.<name>, from its code."""
    if collections not in sys.path:
        sys.path.insert(0, collections)
    controller_api = importlib.import_module('ansible_collections.awx.awx.plugins.module_utils.controller_api')
    module = importlib.import_module('ansible_collections.awx.awx.plugins.modules.%s' % name)
    original = controller_api.ControllerAPIModule.__init__

    def capture(self, argument_spec=None, **kwargs):
        raise Captured(argument_spec, kwargs)

    controller_api.ControllerAPIModule.__init__ = capture
    try:
        with pytest.raises(Captured) as caught:
            module.main()
    finally:
        controller_api.ControllerAPIModule.__init__ = original
    documented = yaml.safe_load(module.DOCUMENTATION)['options']
    return (caught.value.argument_spec, {k: v for k, v in caught.value.kwargs.items() if k in VALIDATOR_KEYS},
            documented)


def spec_from_docs(options):
    """An argument spec from documented options (suboptions included), to validate nested fields too."""
    spec = {}
    for name, doc in options.items():
        entry = {k: doc[k] for k in ('type', 'elements', 'choices', 'required', 'aliases') if k in doc}
        if 'suboptions' in doc:
            entry['options'] = spec_from_docs(doc['suboptions'])
        spec[name] = entry
    return spec


def render(value, variables):
    """Jinja in task arguments rendered the way Ansible does (native types)."""
    env = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if isinstance(value, str) and '{{' in value:
        return env.from_string(value).render(**variables)
    return value


def tasks():
    """[(module name, rendered arguments)] of the playbook, one per loop item."""
    with open(CONFIGURE) as fh:
        play = yaml.safe_load(fh)[0]
    variables = play['vars']
    out = []
    for task in play['tasks']:
        modules = [k for k in task if k.startswith('awx.awx.')]
        assert len(modules) == 1, task['name']
        module = modules[0]
        items = render(task['loop'], variables) if 'loop' in task else [None]
        for item in items:
            out.append((module.split('.')[-1], render(task[module], dict(variables, item=item))))
    return out


def validate(collections, module, args):
    """Errors of the module's argument spec and of its documented options, for these arguments."""
    spec, kwargs, documented = awx_module(collections, module)
    errors = list(ArgumentSpecValidator(spec, **kwargs).validate(copy.deepcopy(args)).error_messages)
    doc_spec = spec_from_docs({k: v for k, v in documented.items() if k in spec or
                               any(k in (s.get('aliases') or []) for s in spec.values())})
    errors += ['(documented options) ' + e for e in
               ArgumentSpecValidator(doc_spec).validate(copy.deepcopy(args)).error_messages]
    return errors


def test_every_task_is_valid_for_its_awx_module(release_collections):
    found = tasks()
    assert {module for module, _args in found} == {'credential_type', 'execution_environment', 'project',
                                                   'job_template', 'workflow_job_template'}
    for module, args in found:
        assert validate(release_collections, module, args) == [], (module, args.get('name'))


@pytest.mark.parametrize('module, mutate, message', [
    ('job_template', lambda a: a.update(job_tag='wave1'), 'job_tag'),
    ('job_template', lambda a: a.update(verbosity=9), 'verbosity'),
    ('workflow_job_template', lambda a: a['workflow_nodes'][0].update(identifer='x'), 'identifer'),
    ('workflow_job_template', lambda a: a['workflow_nodes'][2]['unified_job_template'].update(timeout='a day'),
     'timeout'),
    ('credential_type', lambda a: a.update(kind='kubernetes'), 'kind'),
])
def test_the_check_rejects_what_awx_would_reject(release_collections, module, mutate, message):
    args = copy.deepcopy(next(a for m, a in tasks() if m == module))
    mutate(args)
    errors = validate(release_collections, module, args)
    assert errors and any(message in e for e in errors), errors


def upgrade_tags():
    with open(os.path.join(REPO, 'playbooks', 'upgrade.yml')) as fh:
        plays = yaml.safe_load(fh)
    return {tag for play in plays for task in play.get('tasks', []) for tag in task.get('tags', [])}


def test_job_templates_run_one_phase_each():
    templates = {a['name']: a for m, a in tasks() if m == 'job_template'}
    tags = upgrade_tags()
    assert {a['job_tags'] for a in templates.values()} == {'precheck', 'install', 'tag', 'gateways', 'wave1', 'wave2',
                                                           'verify', 'cleanup', 'rollback'}
    for template in templates.values():
        assert template['job_tags'] in tags, template['job_tags']
        assert template['credentials'] and template['execution_environment']
    assert templates['Istio upgrade - rollback']['extra_vars'] == {'istio_canary_rollback': True}
    assert all(not t['extra_vars'] for n, t in templates.items() if n != 'Istio upgrade - rollback')


def test_workflow_has_approvals_before_each_irreversible_step_and_a_rollback_path():
    templates = {a['name'] for m, a in tasks() if m == 'job_template'}
    workflow = next(a for m, a in tasks() if m == 'workflow_job_template')
    nodes = {n['identifier']: n for n in workflow['workflow_nodes']}
    assert len(nodes) == len(workflow['workflow_nodes'])

    def children(node, kind):
        return [c['identifier'] for c in (node.get('related') or {}).get(kind, [])]

    for node in nodes.values():
        for kind in ('success_nodes', 'failure_nodes', 'always_nodes'):
            assert set(children(node, kind)) <= set(nodes), node['identifier']
        ujt = node['unified_job_template']
        assert ujt['type'] in ('job_template', 'workflow_approval')
        if ujt['type'] == 'job_template':
            assert ujt['name'] in templates, ujt['name']
        else:
            assert isinstance(ujt['timeout'], int) and ujt['name']

    def parents(identifier, kind='success_nodes'):
        return [n for n in nodes.values() if identifier in children(n, kind)]

    def is_approval(identifier):
        return nodes[identifier]['unified_job_template']['type'] == 'workflow_approval'

    # the happy path, in order, with an approval before the tag moves, between the waves and before cleanup
    path, current = [], 'precheck'
    assert parents('precheck') == []
    while current:
        path.append(current)
        nxt = children(nodes[current], 'success_nodes')
        current = nxt[0] if nxt else None
    phases = [nodes[i]['unified_job_template']['name'].rsplit(' - ', 1)[-1] if not is_approval(i) else 'APPROVE'
              for i in path]
    assert phases == ['precheck', 'install', 'APPROVE', 'tag', 'gateways', 'wave1', 'verify', 'APPROVE', 'wave2',
                      'verify', 'APPROVE', 'cleanup']
    # every step that moves workloads, and every verify, offers the rollback behind an approval
    for identifier in ('gateways', 'wave1', 'verify-wave1', 'wave2', 'verify-wave2'):
        failure = children(nodes[identifier], 'failure_nodes')
        assert len(failure) == 1 and is_approval(failure[0]), identifier
        rollback = children(nodes[failure[0]], 'success_nodes')
        assert [nodes[r]['unified_job_template']['name'] for r in rollback] == ['Istio upgrade - rollback']
    # the survey asks for the target
    variables = {q['variable'] for q in workflow['survey_spec']['spec']}
    assert variables == {'istio_canary_to_revision', 'istio_canary_to_version', 'istio_canary_istioctl'}


def test_credential_type_injects_the_kubeconfig_the_modules_read():
    cred = next(a for m, a in tasks() if m == 'credential_type')
    fields = {f['id']: f for f in cred['inputs']['fields']}
    assert fields['kubeconfig']['secret'] is True
    assert cred['injectors']['file'] == {'template.kubeconfig': '{{ kubeconfig }}'}
    assert cred['injectors']['env'] == {'K8S_AUTH_KUBECONFIG': '{{ tower.filename.kubeconfig }}'}
    # the modules' auth options read K8S_AUTH_KUBECONFIG
    with open(os.path.join(REPO, 'plugins', 'doc_fragments', 'auth.py')) as fh:
        assert 'K8S_AUTH_KUBECONFIG' in fh.read()


def test_ansible_playbook_resolves_every_module(release_collections):
    proc = subprocess.run(['ansible-playbook', '--syntax-check', CONFIGURE], capture_output=True, text=True,
                          env=clean_env(ANSIBLE_COLLECTIONS_PATH=release_collections), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_docs_awx_md_shows_how_to_load_it():
    with open(os.path.join(REPO, 'docs', 'awx.md')) as fh:
        text = fh.read()
    assert 'ansible-playbook docs/awx/configure.yml' in text
    assert re.search(r'approval', text, re.I) and 'Kubeconfig' in text
