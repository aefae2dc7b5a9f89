#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: istio_revision
short_description: Install or remove one Istio control plane revision with istioctl or Helm
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
  install_method:
    description:
      - How the revision is installed and removed. V(istioctl) runs C(istioctl install/uninstall); V(helm)
        makes it the Helm release C(istiod-<revision>) (C(helm upgrade --install), C(helm uninstall)).
      - Default for O(state=absent) and for a revision that exists, the method that installed it (Helm's
        ownership metadata on istiod); otherwise V(istioctl). A revision is never managed by the other
        method than the one that installed it (refused, nothing changed).
    version_added: 1.1.0
    type: str
    choices: [ istioctl, helm ]
  version:
    description:
      - With O(install_method=helm), the Istio version the revision must run (required for
        O(state=present)); repository and C(oci://) charts are installed at this chart version, a local
        chart with C(global.tag) set to it.
    version_added: 1.1.0
    type: str
  helm_path:
    description:
      - Path (or name on E(PATH)) of the helm binary.
    version_added: 1.1.0
    type: str
    default: helm
  helm_chart:
    description:
      - The istiod chart for O(install_method=helm) - a local path, an C(oci://) reference or a chart name
        in O(helm_repo_url).
    version_added: 1.1.0
    type: str
    default: istiod
  helm_base_chart:
    description:
      - The base chart; with O(state=absent), when a Helm release (C(istio-base)) owns
        C(istiod-default-validator) with the removed revision as its C(defaultRevision), that release is
        upgraded (C(--reuse-values)) to the revision the validator calls now.
    version_added: 1.1.0
    type: str
    default: base
  helm_repo_url:
    description:
      - The chart repository of chart names given without a path or C(oci://).
    version_added: 1.1.0
    type: str
    default: https://istio-release.storage.googleapis.com/charts
  helm_values:
    description:
      - Values of the new release (C(revision) is set from O(revision); C(revisionTags) is left empty,
        revision tags are handed over by M(meshops.istio.istio_revision_tag)).
    version_added: 1.1.0
    type: dict
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
  - istioctl of the Istio version to install (O(install_method=istioctl))
  - helm 3.8 or later (O(install_method=helm))
notes:
  - A revision that is installed, ready and at the istioctl's version is left alone, even when
    O(operator_file) or O(set) changed since it was installed; a revision is one immutable version of the
    control plane, so install changed settings as a new revision (or remove and reinstall this one).
  - After removal every kind a revision owns is checked to be gone (istiod's Deployment, Service,
    ServiceAccount, Role/Binding, HPA, PDB, NetworkPolicy, ConfigMaps, ClusterRoles/Bindings, webhooks and
    the Helm release record); anything left is reported as a failure.
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

- name: Install Istio 1.30.3 as Helm release istiod-1-30-3
  meshops.istio.istio_revision:
    revision: 1-30-3
    install_method: helm
    version: 1.30.3
    helm_chart: oci://registry.example.com/istio/istiod
    helm_values:
      pilot:
        env:
          PILOT_ENABLE_STATUS: "true"
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
install_method:
  description: How the revision was (or would be) installed or removed.
  returned: always
  type: str
  sample: helm
helm:
  description: The helm command run (or that check mode would run), with O(install_method=helm).
  returned: when a helm command ran or would run
  type: dict
  contains:
    command:
      description: The command line (values given as a file).
      type: str
      sample: helm upgrade istiod-1-30-3 istiod --repo https://istio-release.storage.googleapis.com/charts --version 1.30.3
    base:
      description: The istio-base upgrade that moved C(defaultRevision), when one was needed.
      type: str
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
from ansible_collections.meshops.istio.plugins.module_utils.helm import (
    ISTIO_REPO_URL,
    ChartRef,
    Helm,
    HelmRevisions,
    install_values,
    leftovers,
)
from ansible_collections.meshops.istio.plugins.module_utils.istioctl import Istioctl
from ansible_collections.meshops.istio.plugins.module_utils.mesh import (
    DEFAULT,
    MeshState,
    deployment_ready,
    helm_owner,
    injector_name,
    istiod_name,
    validate_revision_name,
    validator_revision,
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

    def verify_gone(self, name, release=None, how=None):
        """Nothing of the revision is left: every kind a revision owns (helm.leftovers)."""
        deployment = istiod_name(name)
        if self.wait:
            try:
                self.client.wait_for('Deployment', deployment, self.namespace, lambda obj: obj is None,
                                     timeout=self.wait_timeout, description='be deleted')
            except WaitTimeout:
                pass  # reported below with everything that is left
        left = leftovers(self.client, name, self.namespace, release)
        if left:
            raise MeshopsError('%s finished but %s still exist: check its output and remove them by hand'
                               % (how or 'istioctl uninstall --revision %s' % name, ', '.join(left)),
                               details={'revision': name, 'left': left})

    # Helm ---------------------------------------------------------------------------------------

    def refuse_mixing(self, rev, method):
        installed = rev.install_method if rev is not None else None
        if installed and installed != method:
            raise InvalidInput(
                'revision %s was installed by %s%s: manage it with install_method: %s (the other method would '
                'leave part of it behind or fight over it). Nothing was changed.'
                % (rev.name, installed, ' (Helm release %s)' % rev.helm_release if rev.helm_release else '',
                   installed), details={'revision': rev.name, 'installed_by': installed})

    def helm_present(self, name, helm, chart, version, values):
        state = self.load()
        before = revision_view(state, name)
        rev = state.revision(name)
        self.refuse_mixing(rev, 'helm')
        info = {}
        if rev is not None and rev.version and rev.version.lstrip('v') != version.lstrip('v'):
            raise RevisionVersionMismatch(
                'revision %s already runs Istio %s, not %s: a revision name belongs to one version; install %s as '
                'its own revision (e.g. %s)' % (name, rev.version, version, version, version.replace('.', '-')),
                details={'revision': name, 'installed_version': rev.version, 'version': version})
        if rev is not None and rev.ready:
            return False, before, before, info
        info.update(HelmRevisions(self.client, helm, self.namespace, self.check_mode, self.wait_timeout)
                    .install(name, version, chart, values))
        if self.check_mode:
            return True, before, dict(before, present=True, version=version, ready=True), info
        if self.wait:
            self.wait_ready(name)
        after = revision_view(self.load(), name)
        if after['version'] and after['version'].lstrip('v') != version.lstrip('v'):
            raise RevisionVersionMismatch(
                'helm installed revision %s but istiod runs Istio %s, not %s: check helm_values (global.tag, '
                'global.hub) and the chart version' % (name, after['version'], version),
                details={'revision': name, 'installed_version': after['version'], 'version': version})
        return True, before, after, info

    def helm_absent(self, name, helm, base_chart, force=False):
        state = self.load()
        before = revision_view(state, name)
        rev = state.revision(name)
        if rev is None and name not in state.injectors:
            return False, before, before, {}
        self.refuse_mixing(rev, 'helm')
        release = rev.helm_release if rev is not None else None
        users = state.users_of(name)
        if users and not force:
            raise RevisionInUse(
                'revision %s is still in use by %s. Move those to another revision first, or set force=true'
                % (name, describe_users(users)), users)
        rendered = sorted(t.name for t in state.tags.values() if release and t.helm_release == release)
        if rendered and not force:
            raise RevisionInUse(
                'Helm release %s still renders revision tag(s) %s: helm uninstall would delete them. Hand them '
                'over to the release of the revision they point at first (meshops.istio.istio_revision_tag with '
                'helm_chart, the tag phase does it)' % (release, ', '.join(rendered)),
                [{'kind': 'tag', 'name': t} for t in rendered])
        runs = HelmRevisions(self.client, helm, self.namespace, self.check_mode, self.wait_timeout)
        info = {}
        vwc = state.validator
        live = validator_revision(vwc) if vwc is not None else None
        if helm_owner(vwc) and live and live != name:
            base = runs.base_default_revision(base_chart, live, state.revisions[live].version
                                              if live in state.revisions else None)
            if base:
                info['base'] = base['command']
        after = {'name': name, 'present': False, 'version': None, 'ready': False, 'in_use_by': users}
        if release:
            info.update(runs.uninstall(name, release))
        if self.check_mode:
            return True, before, after, info
        self.verify_gone(name, release, 'helm uninstall %s' % release)
        return True, before, revision_view(self.load(), name), info


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
    auth = dict((key, params.get(key)) for key in AUTH_PARAM_NAMES)
    method = params.get('install_method')
    helm = chart = base_chart = None
    if method == 'helm':
        # refuse bad input before anything touches the cluster
        helm = Helm(params['helm_path'], auth)
        helm.version()
        chart = ChartRef(params['helm_chart'], params['helm_repo_url'])
        base_chart = ChartRef(params['helm_base_chart'], params['helm_repo_url'])
        if params['state'] == 'present':
            if not params.get('version'):
                raise InvalidInput('version (the Istio version of the revision, e.g. 1.30.3) is required with '
                                   'install_method: helm')
            install_values(name, params['version'], chart, params.get('helm_values'))
    istioctl = Istioctl(params['istioctl_path'], auth)
    if params['state'] == 'present' and method != 'helm':
        istioctl.version()
        istioctl.install_args(name, params.get('operator_file'), params.get('set'), namespace)
        if params.get('operator_file') and not os.path.isfile(params['operator_file']):
            raise InvalidInput('operator_file %s does not exist' % params['operator_file'])
    manager = RevisionManager(module.client, istioctl, namespace, module.check_mode,
                              params['wait'], params['wait_timeout'])
    if method is None:
        rev = manager.load().revision(name)
        method = rev.install_method if rev is not None else 'istioctl'
        if method == 'helm':
            raise InvalidInput('revision %s is Helm release %s: set install_method: helm (and helm_path, helm_chart) '
                               'to manage it. Nothing was changed.' % (name, rev.helm_release))
    if method == 'helm':
        if params['state'] == 'present':
            changed, before, after, info = manager.helm_present(name, helm, chart, params['version'],
                                                                params.get('helm_values'))
        else:
            changed, before, after, info = manager.helm_absent(name, helm, base_chart, params['force'])
    elif params['state'] == 'present':
        manager.refuse_mixing(manager.load().revision(name), 'istioctl')
        changed, before, after, info = manager.present(name, params.get('operator_file'),
                                                       params.get('set'))
    else:
        manager.refuse_mixing(manager.load().revision(name), 'istioctl')
        changed, before, after, info = manager.absent(name, params['force'])
    action = 'deleted' if params['state'] == 'absent' else 'updated' if before['present'] else 'created'
    result = {'changed': changed, 'revision': after, 'install_method': method, 'changes': [
        {'kind': 'Deployment', 'namespace': namespace, 'name': istiod_name(name), 'action': action},
        {'kind': 'MutatingWebhookConfiguration', 'name': injector_name(name, namespace), 'action': action}]
        if changed else []}
    if info:
        result['helm' if method == 'helm' else 'istioctl'] = info
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
                       force=dict(type='bool', default=False),
                       install_method=dict(type='str', choices=['istioctl', 'helm']),
                       version=dict(type='str'),
                       helm_path=dict(type='str', default='helm'),
                       helm_chart=dict(type='str', default='istiod'),
                       helm_base_chart=dict(type='str', default='base'),
                       helm_repo_url=dict(type='str', default=ISTIO_REPO_URL),
                       helm_values=dict(type='dict')),
                  istio_namespace=True, wait=True, lease=True).run(run)


if __name__ == '__main__':
    main()
