#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: istio_revision_tag
short_description: Point an Istio revision tag at a revision (istioctl tag set, natively)
version_added: 1.0.0
description:
  - Creates or moves a revision tag, the MutatingWebhookConfiguration C(istio-revision-tag-<tag>) that
    injects namespaces labelled C(istio.io/rev=<tag>) with a given revision, without istioctl.
  - The webhook is built from the revision's own injector C(istio-sidecar-injector-<revision>) the way
    C(istioctl tag set) generates it, with labels C(istio.io/tag) and C(istio.io/rev), the service
    C(istiod-<revision>) with its path, the caBundle, the C(rev.namespace.) and C(rev.object.) webhooks,
    plus the C(namespace.) and C(object.) webhooks for the V(default) tag.
  - For the V(default) tag it also points C(istiod-default-validator) at the revision and deactivates a
    revision-less injector (C(istio-sidecar-injector)) the way istioctl does (kept, never matching).
  - Refuses a revision that does not exist or is not ready. Updates are conditional on the
    resourceVersion read, so a concurrent change is never overwritten (the module re-reads and retries).
  - From Istio 1.28 a tag also has the Service C(istiod-revision-tag-<tag>); it is created or moved to
    select the revision's istiod with the webhook. The chart's C(auto.) webhook
    (C(sidecarInjectorWebhook.enableNamespacesByDefault)) is kept. Outside C(istio-system) the names are
    suffixed with the namespace as Istio's charts do (C(istio-revision-tag-<tag>-<namespace>)).
  - On Helm-installed meshes the tag changes hands between releases (O(helm_chart)).
  - O(state=absent) deletes the tag's webhook, and refuses while namespaces still select the tag unless
    O(force=true).
author:
  - meshops.istio developers (@meshops)
options:
  tag:
    description:
      - Name of the tag (a DNS label). It must not be the name of an installed revision.
    type: str
    default: default
  revision:
    description:
      - The revision the tag points at, for example V(1-15-4). Required with O(state=present).
    type: str
  state:
    description:
      - Whether the tag should exist (pointing at O(revision)) or not.
    type: str
    choices: [ present, absent ]
    default: present
  force:
    description:
      - With O(state=absent), delete the tag even while namespaces select it (their new pods then get
        no sidecar).
    type: bool
    default: false
  helm_path:
    description:
      - Path (or name on E(PATH)) of helm, used when a Helm release renders the tag (Helm-installed meshes).
    version_added: 1.1.0
    type: str
    default: helm
  helm_chart:
    description:
      - The istiod chart (a local path, C(oci://) reference or chart name in O(helm_repo_url)). When the tag
        belongs to the Helm release of another revision than O(revision), that release is upgraded
        (C(--reuse-values)) without the tag and the release of O(revision) with it, so that no later
        C(helm upgrade) or C(helm uninstall) of the old release moves or deletes the tag.
    version_added: 1.1.0
    type: str
    default: istiod
  helm_base_chart:
    description:
      - The base chart; for the V(default) tag, a Helm release owning C(istiod-default-validator) gets
        C(defaultRevision) set to O(revision).
    version_added: 1.1.0
    type: str
    default: base
  helm_repo_url:
    description:
      - The chart repository of chart names given without a path or C(oci://).
    version_added: 1.1.0
    type: str
    default: https://istio-release.storage.googleapis.com/charts
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
attributes:
  check_mode:
    support: full
    description: Computes the webhooks it would write and reports the change, writes nothing.
  diff_mode:
    support: full
    description: Shows the fields of the webhook configurations that change.
seealso:
  - module: meshops.istio.istio_revision
  - module: meshops.istio.istio_revision_info
  - name: Istio revision tags
    description: How tags decouple namespaces from revisions.
    link: https://istio.io/latest/docs/setup/upgrade/canary/#stable-revision-labels
'''

EXAMPLES = r'''
- name: Point the default tag at the new revision
  meshops.istio.istio_revision_tag:
    tag: default
    revision: 1-15-4
  register: moved

- name: Roll back to what it pointed at before
  meshops.istio.istio_revision_tag:
    tag: default
    revision: "{{ moved.previous_revision }}"
  when: rollback | default(false)

- name: Remove a canary tag nobody uses any more
  meshops.istio.istio_revision_tag:
    tag: canary
    state: absent
'''

RETURN = r'''
tag:
  description: The tag.
  returned: always
  type: str
  sample: default
revision:
  description: The revision the tag points at after the module ran (null when absent).
  returned: always
  type: str
  sample: 1-15-4
previous_revision:
  description: The revision the tag pointed at before (null when the tag did not exist).
  returned: always
  type: str
  sample: 1-14-6
webhook:
  description: Name of the tag's MutatingWebhookConfiguration.
  returned: always
  type: str
  sample: istio-revision-tag-default
changes:
  description: The objects created, updated or deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
  sample: [{kind: MutatingWebhookConfiguration, name: istio-revision-tag-default, action: updated}]
in_use_by:
  description: With O(state=absent), the namespaces that select the tag.
  returned: when O(state=absent)
  type: list
  elements: dict
'''

from ansible_collections.meshops.istio.plugins.module_utils.client import DELETE
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    InvalidInput,
    MeshopsError,
    RevisionNotFound,
    RevisionNotReady,
    TagInUse,
)
from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_PARAM_NAMES
from ansible_collections.meshops.istio.plugins.module_utils.helm import ISTIO_REPO_URL, ChartRef, Helm, HelmRevisions, TagHandover
from ansible_collections.meshops.istio.plugins.module_utils.mesh import (
    DEFAULT,
    DEFAULT_VALIDATOR,
    LEGACY_INJECTOR,
    REV_LABEL,
    MeshState,
    build_default_validator,
    build_tag_webhook,
    deactivate_injector,
    helm_owner,
    injector_active,
    injector_name,
    parse_version_text,
    tag_service,
    tag_service_name,
    tag_webhook_name,
    validate_revision_name,
    webhook_fields,
)
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.sail import refuse_sail_owned

MWC = 'MutatingWebhookConfiguration'
VWC = 'ValidatingWebhookConfiguration'


def covers(desired, actual):
    """True when every field set in ``desired`` has the same value in ``actual`` (the server may add
    defaults we do not set)."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(covers(value, actual.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(covers(d, a) for d, a in zip(desired, actual))
    return desired == actual


def merged_webhook_config(existing, desired):
    """The object to PUT: the existing one (its other labels, annotations, resourceVersion) with the
    desired labels and webhooks."""
    new = dict(existing)
    meta = dict(existing.get('metadata') or {})
    labels = dict(meta.get('labels') or {})
    labels.update((desired.get('metadata') or {}).get('labels') or {})
    meta['labels'] = labels
    meta.pop('managedFields', None)
    new['metadata'] = meta
    new['webhooks'] = desired['webhooks']
    return new


def wanted_part(desired):
    """The part of a desired webhook configuration compared with the live one."""
    return {'metadata': {'labels': (desired.get('metadata') or {}).get('labels') or {}},
            'webhooks': desired.get('webhooks') or []}


class TagManager:
    def __init__(self, client, namespace, check_mode=False, helm=None):
        self.client = client
        self.namespace = namespace
        self.check_mode = check_mode
        self.helm = helm  # (Helm, istiod ChartRef, base ChartRef) for Helm meshes
        self.changes = []
        self.diff_before = {}
        self.diff_after = {}

    def load(self):
        return MeshState.load(self.client, self.namespace, workloads=False)

    def write(self, kind, name, mutate, action=None, namespace=None):
        """One read-modify-write (conditional, re-read on conflicts), recorded for the result."""
        update = self.client.update_with_retry(kind, name, mutate, namespace=namespace, check_mode=self.check_mode)
        for change in update.changes(kind, name, action=action):
            self.changes.append(change)
            key = '%s/%s' % (kind, name)
            self.diff_before[key] = webhook_fields(update.before)
            self.diff_after[key] = webhook_fields(update.desired)
        return update

    # --- present -------------------------------------------------------------------------------

    def present(self, tag, revision):
        state = self.load()
        rev = state.revision(revision)
        if rev is None:
            known = ', '.join(sorted(state.revisions)) or 'none'
            raise RevisionNotFound(
                'revision %s does not exist (no istiod for it in namespace %s; installed revisions: '
                '%s): install it first with meshops.istio.istio_revision'
                % (revision, self.namespace, known),
                details={'revision': revision, 'revisions': sorted(state.revisions)})
        if not rev.ready:
            raise RevisionNotReady(
                'revision %s is not ready (%s of %s istiod replicas ready): pointing tag %s at it would '
                'break pod creation; wait for it (meshops.istio.istio_revision with wait: true)'
                % (revision, rev.ready_replicas, rev.replicas, tag),
                details={'revision': revision})
        # A revision-less install is revision "default"; tag default supersedes it (istioctl's
        # migration path), so only other tags may not share a revision's name.
        if tag != revision and tag != DEFAULT and tag in state.revisions:
            raise InvalidInput('tag %s has the name of an installed revision: choose another tag name'
                               % tag)
        existing_tag = state.tag(tag)
        previous = existing_tag.revision if existing_tag else None
        refuse_sail_owned(self.client.get_or_none(MWC, existing_tag.webhook if existing_tag
                                                  else tag_webhook_name(tag, self.namespace)), MWC, SAIL_TAG_HINT)
        injector_mwc = state.injectors.get(revision) or injector_name(revision, self.namespace)
        injector = self.client.get_or_none(MWC, injector_mwc)
        if injector is None:
            raise RevisionNotFound(
                'revision %s has no injector webhook %s: the revision is incomplete, reinstall it with '
                'meshops.istio.istio_revision' % (revision, injector_mwc),
                details={'revision': revision})
        webhook = existing_tag.webhook if existing_tag else tag_webhook_name(tag, self.namespace)
        self.write(MWC, webhook, lambda live: self.webhooks(
            live, build_tag_webhook(tag, revision, injector, self.namespace, live)))
        self.move_service(tag, revision, rev)
        if tag == DEFAULT:
            self.write(VWC, DEFAULT_VALIDATOR, lambda live: self.webhooks(
                live, build_default_validator(revision, injector, live, self.namespace)))
            if revision != DEFAULT:
                self.write(MWC, LEGACY_INJECTOR, self.deactivated, action='deactivated')
        self.hand_over(tag, revision, state)
        return previous

    def move_service(self, tag, revision, rev):
        """The tag's Service follows the webhook; from Istio 1.28 it is created when missing."""
        name = tag_service_name(tag)
        live = self.client.get_or_none('Service', name, self.namespace)
        version = parse_version_text(rev.version)
        if live is None and not (version and version >= (1, 28)):
            return
        istiod_svc = self.client.get_or_none('Service', rev.service, self.namespace) if rev.service else None

        def mutate(current):
            desired = tag_service(tag, revision, current, istiod_svc, self.namespace)
            if current is not None and covers({'metadata': {'labels': desired['metadata']['labels']},
                                               'spec': {'selector': desired['spec']['selector']}}, current):
                return None
            return desired
        self.write('Service', name, mutate, namespace=self.namespace)

    def hand_over(self, tag, revision, state):
        """Helm meshes: the release of ``revision`` takes the tag over (helm.TagHandover); for tag default a
        Helm release owning istiod-default-validator (istio-base) gets defaultRevision ``revision``."""
        handover = TagHandover(self.client, None, self.namespace, None, self.check_mode)
        hands = handover.needed(tag, state, revision)
        base = tag == DEFAULT and state.validator is not None and helm_owner(state.validator)
        if not hands and not base:
            return
        if self.helm is None:
            raise InvalidInput('revision tag %s is managed by Helm: give helm_path and helm_chart' % tag)
        helm, chart, base_chart = self.helm
        versions = dict((r.helm_release, r.version) for r in state.revisions.values() if r.helm_release)
        if hands:
            handover = TagHandover(self.client, helm, self.namespace, chart, self.check_mode)
            for change in handover.hand_over(tag, hands[0], hands[1], versions.get(hands[0]), versions.get(hands[1])):
                self.changes.append(change)
        if base:
            runs = HelmRevisions(self.client, helm, self.namespace, self.check_mode)
            done = runs.base_default_revision(base_chart, revision, state.revisions[revision].version)
            if done:
                self.changes.append({'kind': 'HelmRelease', 'namespace': base[1] or self.namespace, 'name': base[0],
                                     'action': 'updated', 'detail': 'defaultRevision %s' % revision})

    @staticmethod
    def webhooks(live, desired):
        """Create ``desired``, or update the live configuration's labels and webhooks to it."""
        if live is None:
            return desired
        if covers(wanted_part(desired), live):
            return None
        return merged_webhook_config(live, desired)

    @staticmethod
    def deactivated(live):
        """The revision-less istio-sidecar-injector would also answer istio-injection=enabled: make it
        never match (istioctl does the same), unless it is the target itself."""
        if live is None or not injector_active(live) or \
                (live.get('metadata') or {}).get('labels', {}).get(REV_LABEL, DEFAULT) != DEFAULT:
            return None
        return deactivate_injector(live)

    # --- absent --------------------------------------------------------------------------------

    def absent(self, tag, force=False):
        state = self.load()
        existing = state.tag(tag)
        users = state.users_of_tag(tag)
        if existing is None:
            return None, users
        refuse_sail_owned(self.client.get_or_none(MWC, existing.webhook or tag_webhook_name(tag)), MWC, SAIL_TAG_HINT)
        if users and not force:
            raise TagInUse(
                'tag %s is still selected by %s: relabel them (istio.io/rev=<another tag or revision>) '
                'first, or set force=true' % (tag, ', '.join(
                    'namespace %s (label %s)' % (u['name'], u['label']) for u in users)), users)
        name = existing.webhook or tag_webhook_name(tag)
        update = self.write(MWC, name, lambda live: DELETE)
        if update.changed and not self.check_mode and self.client.get_or_none(MWC, name) is not None:
            raise MeshopsError('%s %s is still there after deletion' % (MWC, name))
        return existing.revision, users


SAIL_TAG_HINT = ("On Sail move or pin the IstioRevisionTag instead (meshops.istio.istio_sail_revision with tag, the "
                 "playbook's tag phase).")


def run(module):
    params = module.params
    tag = validate_revision_name(params['tag'], 'tag')
    revision = validate_revision_name(params['revision']) if params.get('revision') else None
    auth = dict((key, params.get(key)) for key in AUTH_PARAM_NAMES)
    repo = params.get('helm_repo_url')
    helm = (Helm(params.get('helm_path') or 'helm', auth), ChartRef(params.get('helm_chart') or 'istiod', repo),
            ChartRef(params.get('helm_base_chart') or 'base', repo))
    manager = TagManager(module.client, params['istio_namespace'], module.check_mode, helm)
    result = {'tag': tag, 'webhook': tag_webhook_name(tag, params['istio_namespace'])}
    if params['state'] == 'present':
        previous = manager.present(tag, revision)
        result.update(previous_revision=previous, revision=revision)
    else:
        previous, users = manager.absent(tag, params['force'])
        result.update(previous_revision=previous, revision=None, in_use_by=users)
    result['changed'] = bool(manager.changes)
    result['changes'] = manager.changes
    if module.diff:
        result['diff'] = {'before': manager.diff_before, 'after': manager.diff_after}
    return result


def main():
    MeshopsModule(dict(tag=dict(type='str', default='default'), revision=dict(type='str'),
                       state=dict(type='str', default='present', choices=['present', 'absent']),
                       force=dict(type='bool', default=False),
                       helm_path=dict(type='str', default='helm'),
                       helm_chart=dict(type='str', default='istiod'),
                       helm_base_chart=dict(type='str', default='base'),
                       helm_repo_url=dict(type='str', default=ISTIO_REPO_URL)),
                  istio_namespace=True, required_if=[('state', 'present', ('revision',))]).run(run)


if __name__ == '__main__':
    main()
