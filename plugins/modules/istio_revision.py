#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: istio_revision
short_description: Install or remove one Istio control plane revision with istioctl
version_added: 1.0.0
description:
  - Makes sure one Istio control plane revision (C(istiod-<revision>) and its webhooks) is installed or
    removed, for revision-based canary upgrades.
  - O(state=present) leaves a revision alone when C(istiod-<revision>) exists, is ready and runs the
    version of the given istioctl; otherwise it runs C(istioctl install --set revision=<revision>) and,
    with O(wait=true), waits until istiod is ready.
  - O(state=absent) refuses to remove a revision that is still in use (by a revision tag, by
    C(istiod-default-validator), by a namespace label, or by a running pod it injected) and lists what
    uses it, unless O(force=true). It removes it with C(istioctl uninstall --revision <revision> -y) and
    checks that istiod and the revision's webhooks are gone.
author:
  - meshops.istio developers (@meshops)
options:
  revision:
    description:
      - Name of the revision, a DNS label such as V(1-15-4). Dotted versions such as V(1.15.4) are
        refused (use V(1-15-4)).
    type: str
    required: true
  state:
    description:
      - Whether the revision should be installed or removed.
    type: str
    choices: [ present, absent ]
    default: present
  istioctl_path:
    description:
      - Path (or name on E(PATH)) of the istioctl binary. For O(state=present) its version is the
        version the revision must run.
    type: str
    default: istioctl
  operator_file:
    description:
      - An IstioOperator file passed to C(istioctl install -f).
    type: path
  set:
    description:
      - "Values passed as C(istioctl install --set key=value). Nested dictionaries are flattened to
        dotted keys: V({values: {global: {hub: x}}}) gives C(--set values.global.hub=x)."
      - Do not put C(revision) here, it comes from O(revision).
    type: dict
  force:
    description:
      - With O(state=absent), remove the revision even while it is in use. Pods it injected keep running
        but new pods selected for it are rejected while a webhook still points at it.
    type: bool
    default: false
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.wait
  - meshops.istio.lease
attributes:
  check_mode:
    support: full
    description: Reports what would be installed or removed (and refusals), runs nothing that changes.
  diff_mode:
    support: full
    description: Shows the revision's presence, version and readiness before and after.
requirements:
  - istioctl of the Istio version to install
notes:
  - A revision that is installed, ready and at the istioctl's version is left alone, even when
    O(operator_file) or O(set) changed since it was installed; a revision is one immutable version of the
    control plane, so install changed settings as a new revision (or remove and reinstall this one).
  - O(state=absent) treats as users the revision tags pointing at the revision, C(istiod-default-validator)
    when it calls the revision's istiod, namespaces whose C(istio.io/rev) (or C(istio-injection) for a
    revision-less install) names the revision, and every running pod whose sidecar it injected.
seealso:
  - module: meshops.istio.istio_revision_tag
  - module: meshops.istio.istio_revision_info
  - name: Istio canary upgrades
    description: The revision-based upgrade this module automates.
    link: https://istio.io/latest/docs/setup/upgrade/canary/
'''

EXAMPLES = r'''
- name: Install Istio 1.15.4 beside the running revision
  meshops.istio.istio_revision:
    revision: 1-15-4
    istioctl_path: /opt/istio-1.15.4/bin/istioctl
    operator_file: files/istio-operator.yaml
    set:
      values.pilot.env.PILOT_ENABLE_STATUS: true
    wait_timeout: 600

- name: Remove the old revision once nothing uses it
  meshops.istio.istio_revision:
    revision: 1-14-6
    state: absent
    istioctl_path: /opt/istio-1.15.4/bin/istioctl
  register: cleanup
'''

RETURN = r'''
revision:
  description: The revision after the module ran.
  returned: always
  type: dict
  contains:
    name:
      description: Revision name.
      type: str
      sample: 1-15-4
    present:
      description: Whether C(istiod-<revision>) exists.
      type: bool
    version:
      description: Istio version of istiod (null when absent).
      type: str
      sample: 1.15.4
    ready:
      description: Whether istiod is rolled out and ready.
      type: bool
    in_use_by:
      description:
        - What uses the revision, each with C(kind) V(tag), V(validator), V(namespace) (with C(label)) or
          V(pod) (with C(namespace)).
      type: list
      elements: dict
      sample: [{kind: tag, name: default}, {kind: namespace, name: foo, label: istio.io/rev}]
changes:
  description:
    - The revision's istiod Deployment and injector webhook when the module installed (created), reinstalled
      (updated) or removed (deleted) the revision, or would have in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{kind: Deployment, namespace: istio-system, name: istiod-1-15-4, action: created},
           {kind: MutatingWebhookConfiguration, name: istio-sidecar-injector-1-15-4, action: created}]
istioctl:
  description: The istioctl used and the command run (none when nothing had to change).
  returned: when O(state=present) or a command ran
  type: dict
  contains:
    path:
      description: Path of the binary.
      type: str
    version:
      description: Its version.
      type: str
    command:
      description: The command line run (without credentials), or the one check mode would run.
      type: str
      sample: istioctl install --set revision=1-15-4 -y
    stdout:
      description: Its standard output.
      type: str
    stderr:
      description: Its standard error.
      type: str
'''

import os

from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_PARAM_NAMES
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    InvalidInput,
    MeshopsError,
    RevisionInUse,
    RevisionNotReady,
    RevisionVersionMismatch,
    WaitTimeout,
)
from ansible_collections.meshops.istio.plugins.module_utils.istioctl import Istioctl
from ansible_collections.meshops.istio.plugins.module_utils.mesh import (
    DEFAULT,
    MeshState,
    deployment_ready,
    injector_name,
    istiod_name,
    validate_revision_name,
)
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.sail import refuse_sail_owned

SAIL_REVISION_HINT = ('On Sail set the Istio\'s version (meshops.istio.istio_sail_revision, the playbook\'s install '
                      'phase); Sail deletes an inactive revision itself (state=absent there waits for it).')


def revision_view(state, name):
    rev = state.revision(name)
    if rev is None:
        return {'name': name, 'present': False, 'version': None, 'ready': False,
                'in_use_by': state.users_of(name)}
    return {'name': name, 'present': True, 'version': rev.version, 'ready': rev.ready,
            'in_use_by': list(rev.in_use_by)}


def describe_users(users):
    parts = []
    for user in users:
        if user['kind'] == 'pod':
            parts.append('pod %s/%s' % (user['namespace'], user['name']))
        elif user['kind'] == 'namespace':
            parts.append('namespace %s (label %s)' % (user['name'], user.get('label')))
        elif user['kind'] == 'tag':
            parts.append('revision tag %s' % user['name'])
        else:
            parts.append('%s %s' % (user['kind'], user['name']))
    return ', '.join(parts)


class RevisionManager:
    """present/absent for one revision; ``client`` a ClusterClient, ``istioctl`` an Istioctl."""

    def __init__(self, client, istioctl, namespace, check_mode=False, wait=True, wait_timeout=300):
        self.client = client
        self.istioctl = istioctl
        self.namespace = namespace
        self.check_mode = check_mode
        self.wait = wait
        self.wait_timeout = wait_timeout

    def load(self):
        return MeshState.load(self.client, self.namespace)

    def present(self, name, operator_file=None, set_values=None):
        version = self.istioctl.version()
        command = self.istioctl.install_args(name, operator_file, set_values, self.namespace)
        info = {'path': self.istioctl.resolve(), 'version': version}
        state = self.load()
        before = revision_view(state, name)
        rev = state.revision(name)
        if rev is not None:
            refuse_sail_owned(self.client.get_or_none('Deployment', rev.deployment, self.namespace), 'Deployment',
                              SAIL_REVISION_HINT)
        if rev is not None and rev.version and rev.version != version:
            raise RevisionVersionMismatch(
                'revision %s already runs Istio %s but istioctl %s is version %s: a revision name '
                'belongs to one version. Use the istioctl of %s to manage it, or install %s as its '
                'own revision (e.g. %s)' % (name, rev.version, info['path'], version, rev.version,
                                            version, version.replace('.', '-')),
                details={'revision': name, 'installed_version': rev.version,
                         'istioctl_version': version})
        if rev is not None and rev.ready:
            return False, before, before, info
        info['command'] = self.istioctl.display(command)
        if self.check_mode:
            after = dict(before, present=True, version=version, ready=True)
            return True, before, after, info
        info.update(self.istioctl.install(name, operator_file, set_values, self.namespace))
        if self.wait:
            self.wait_ready(name)
        after = revision_view(self.load(), name)
        return True, before, after, info

    def wait_ready(self, name):
        deployment = istiod_name(name)
        try:
            self.client.wait_for('Deployment', deployment, self.namespace,
                                 lambda obj: obj is not None and deployment_ready(obj)[0],
                                 timeout=self.wait_timeout, description='become ready')
        except WaitTimeout:
            obj = self.client.get_or_none('Deployment', deployment, self.namespace)
            status = (obj or {}).get('status') or {}
            raise RevisionNotReady(
                'istioctl installed revision %s but Deployment %s/%s is not ready after %ss '
                '(%s of %s replicas ready): check its pods (kubectl -n %s describe deploy %s)'
                % (name, self.namespace, deployment, self.wait_timeout,
                   status.get('readyReplicas') or 0, ((obj or {}).get('spec') or {}).get('replicas'),
                   self.namespace, deployment),
                details={'revision': name, 'status': status})

    def absent(self, name, force=False):
        state = self.load()
        before = revision_view(state, name)
        exists = state.revision(name) is not None or name in state.injectors
        info = {}
        if not exists:
            return False, before, before, info
        if state.revision(name) is not None:
            refuse_sail_owned(self.client.get_or_none('Deployment', state.revision(name).deployment, self.namespace),
                              'Deployment', SAIL_REVISION_HINT)
        users = state.users_of(name)
        if users and not force:
            raise RevisionInUse(
                'revision %s is still in use by %s. Move those to another revision first (point the '
                'tag elsewhere with meshops.istio.istio_revision_tag, relabel the namespaces, restart '
                'the pods with meshops.istio.rollout_restart), or set force=true'
                % (name, describe_users(users)), users)
        command = ['uninstall', '--revision', name, '-y']
        info['path'] = self.istioctl.resolve()
        info['command'] = self.istioctl.display(command)
        after = {'name': name, 'present': False, 'version': None, 'ready': False, 'in_use_by': users}
        if self.check_mode:
            return True, before, after, info
        info.update(self.istioctl.uninstall(name, self.namespace))
        self.verify_gone(name)
        after = revision_view(self.load(), name)
        return True, before, after, info

    def verify_gone(self, name):
        deployment = istiod_name(name)
        if self.wait:
            try:
                self.client.wait_for('Deployment', deployment, self.namespace, lambda obj: obj is None,
                                     timeout=self.wait_timeout, description='be deleted')
            except WaitTimeout:
                pass  # reported below with everything that is left
        left = []
        for kind, obj_name, ns in (('Deployment', deployment, self.namespace),
                                   ('Service', deployment, self.namespace),
                                   ('MutatingWebhookConfiguration', injector_name(name), None)):
            obj = self.client.get_or_none(kind, obj_name, ns)
            if obj is not None and not (obj.get('metadata') or {}).get('deletionTimestamp'):
                left.append('%s %s' % (kind, obj_name))
        if left:
            raise MeshopsError('istioctl uninstall --revision %s finished but %s still exist: check '
                               'the istioctl output and remove them by hand' % (name, ', '.join(left)),
                               details={'revision': name, 'left': left})


def run(module):
    params = module.params
    name = validate_revision_name(params['revision'])
    if name == DEFAULT and params['state'] == 'present':
        raise InvalidInput('revision "default" is the revision-less install and the name of the '
                           'default tag: install a versioned revision such as 1-15-4 and point the '
                           'default tag at it with meshops.istio.istio_revision_tag')
    if params.get('wait_timeout') is not None and params['wait_timeout'] <= 0:
        raise InvalidInput('wait_timeout must be a positive number of seconds')
    namespace = params['istio_namespace']
    istioctl = Istioctl(params['istioctl_path'], dict((key, params.get(key)) for key in AUTH_PARAM_NAMES))
    if params['state'] == 'present':
        # refuse bad input before anything touches the cluster
        istioctl.version()
        istioctl.install_args(name, params.get('operator_file'), params.get('set'), namespace)
        if params.get('operator_file') and not os.path.isfile(params['operator_file']):
            raise InvalidInput('operator_file %s does not exist' % params['operator_file'])
    manager = RevisionManager(module.client, istioctl, namespace, module.check_mode,
                              params['wait'], params['wait_timeout'])
    if params['state'] == 'present':
        changed, before, after, info = manager.present(name, params.get('operator_file'),
                                                       params.get('set'))
    else:
        changed, before, after, info = manager.absent(name, params['force'])
    action = 'deleted' if params['state'] == 'absent' else 'updated' if before['present'] else 'created'
    result = {'changed': changed, 'revision': after, 'changes': [
        {'kind': 'Deployment', 'namespace': namespace, 'name': istiod_name(name), 'action': action},
        {'kind': 'MutatingWebhookConfiguration', 'name': injector_name(name), 'action': action}] if changed else []}
    if info:
        result['istioctl'] = info
    if module.diff:
        keys = ('name', 'present', 'version', 'ready')
        result['diff'] = {'before': dict((k, before.get(k)) for k in keys),
                          'after': dict((k, after.get(k)) for k in keys)}
    return result


def main():
    MeshopsModule(dict(revision=dict(type='str', required=True),
                       state=dict(type='str', default='present', choices=['present', 'absent']),
                       istioctl_path=dict(type='str', default='istioctl'),
                       operator_file=dict(type='path'),
                       set=dict(type='dict'),
                       force=dict(type='bool', default=False)),
                  istio_namespace=True, wait=True, lease=True).run(run)


if __name__ == '__main__':
    main()
