# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Sail operator (OpenShift Service Mesh 3, ``sailoperator.io/v1``) as a control-plane manager.

What Sail does, and what this collection therefore does and does not do on a Sail-managed mesh
(istio-ecosystem/sail-operator: ``api/v1/istio_types.go``, ``istiorevision_types.go``,
``istiorevisiontag_types.go``; ``controllers/istio``, ``controllers/istiorevision``,
``controllers/istiorevisiontag``; ``pkg/revision``):

* An ``Istio`` with ``updateStrategy.type: RevisionBased`` has one ``IstioRevision`` per version, named
  ``<istio>-v<x>-<y>-<z>``; changing ``spec.version`` creates the new one (its istiod, injector and validator,
  owned by it) and makes it the active revision (``status.activeRevisionName``).  ``InPlace`` replaces istiod
  under the same revision name: there is no old revision to canary against or to go back to.
* An ``IstioRevisionTag`` whose ``targetRef`` is the ``Istio`` follows the active revision; one whose
  ``targetRef`` is an ``IstioRevision`` is pinned.  Sail renders the tag's MutatingWebhookConfiguration (and for
  ``default`` the default validator) and reverts any edit of them.
* An inactive revision is deleted by Sail ``inactiveRevisionDeletionGracePeriodSeconds`` after its ``InUse``
  condition turned False: no namespace label or tag refers to it and no pod its injection annotated
  ``istio.io/rev=<revision>`` is left, except Succeeded ones (a Failed pod keeps it in use).
* Sail never restarts workloads (``updateWorkloads`` does nothing yet; SEP75's batched migration is a
  proposal): the waves do that here, as on any mesh.

So on Sail: ``install`` sets the Istio's ``spec.version`` and waits for the new revision to be Ready (a tag that
follows the Istio moves with it); ``tag`` verifies a following tag or moves a pinned one (its ``targetRef``),
never the webhooks; ``cleanup`` waits for Sail to delete the old revision and says what keeps it in use;
``rollback`` sets the old version again while its revision exists.  Running istioctl or editing Sail's
webhooks would fight the operator: refused, with what to do instead.

``SailState.load(client)`` reads the Sail objects (None where the API is not served); ``SailManager`` is the
planner's manager (registered first, so it wins over the istioctl and Helm managers on a Sail mesh: Sail's
istiod objects carry Helm's ownership metadata too); ``SailControl`` makes the changes and waits.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils import plan
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    InvalidInput,
    NotFound,
    RevisionInUse,
    WaitTimeout,
)

API_VERSION = 'sailoperator.io/v1'
MANAGED_BY_LABEL = 'managed-by'
MANAGED_BY = 'sail-operator'
REVISION_BASED = 'RevisionBased'
DEFAULT_GRACE_SECONDS = 30
_VERSION_RE = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)$')


def sail_version(version):
    """``1.30.3`` -> ``v1.30.3`` (Sail's spec.version)."""
    text = str(version or '')
    return text if text.startswith('v') else 'v' + text


def revision_name(istio_name, version):
    """The IstioRevision Sail creates for ``version`` of a RevisionBased Istio: ``default-v1-30-3``."""
    return '%s-%s' % (istio_name, sail_version(version).replace('.', '-'))


def _meta(obj):
    return (obj or {}).get('metadata') or {}


def _condition(obj, ctype):
    for cond in ((obj or {}).get('status') or {}).get('conditions') or []:
        if cond.get('type') == ctype:
            return cond
    return {}


def sail_owned(obj):
    """Is ``obj`` rendered by the Sail operator (its label, or an owner in sailoperator.io)?"""
    meta = _meta(obj)
    if (meta.get('labels') or {}).get(MANAGED_BY_LABEL) == MANAGED_BY:
        return True
    return any(str(ref.get('apiVersion') or '').startswith('sailoperator.io/')
               for ref in meta.get('ownerReferences') or [])


def refuse_sail_owned(obj, what, instead):
    """InvalidInput when ``obj`` belongs to Sail: changing it would fight the operator."""
    if obj is not None and sail_owned(obj):
        raise InvalidInput('%s %s is managed by the Sail operator (label managed-by=sail-operator): Sail reverts any '
                           'change to it. %s Nothing was changed.' % (what, _meta(obj).get('name'), instead),
                           details={'managed_by': MANAGED_BY})


# --- the model ------------------------------------------------------------------------------------

class SailIstio:
    def __init__(self, obj):
        meta, spec, status = _meta(obj), obj.get('spec') or {}, obj.get('status') or {}
        strategy = spec.get('updateStrategy') or {}
        self.name = meta.get('name')
        self.version = spec.get('version')
        self.namespace = spec.get('namespace') or mesh.ISTIO_NAMESPACE
        self.strategy = strategy.get('type') or 'InPlace'
        self.grace = strategy.get('inactiveRevisionDeletionGracePeriodSeconds', DEFAULT_GRACE_SECONDS)
        self.active = status.get('activeRevisionName')

    def revision_for(self, version):
        return revision_name(self.name, version) if self.strategy == REVISION_BASED else self.name

    def to_dict(self):
        return dict((k, getattr(self, k)) for k in ('name', 'version', 'namespace', 'strategy', 'grace', 'active'))


class SailRevision:
    def __init__(self, obj):
        meta, spec = _meta(obj), obj.get('spec') or {}
        self.name = meta.get('name')
        self.version = spec.get('version')
        self.namespace = spec.get('namespace')
        owner = next((r for r in meta.get('ownerReferences') or [] if r.get('kind') == 'Istio'), None)
        self.istio = owner.get('name') if owner else None
        ready, in_use = _condition(obj, 'Ready'), _condition(obj, 'InUse')
        self.ready = ready.get('status') == 'True'
        self.ready_message = ready.get('message') or ready.get('reason')
        self.in_use = in_use.get('status')
        self.in_use_message = in_use.get('message') or in_use.get('reason')
        self.deleting = bool(meta.get('deletionTimestamp'))

    def to_dict(self):
        keys = ('name', 'version', 'namespace', 'istio', 'ready', 'ready_message', 'in_use', 'in_use_message', 'deleting')
        return dict((k, getattr(self, k)) for k in keys)


class SailTag:
    def __init__(self, obj):
        meta, spec, status = _meta(obj), obj.get('spec') or {}, obj.get('status') or {}
        target = spec.get('targetRef') or {}
        self.name = meta.get('name')
        self.target_kind = target.get('kind')
        self.target_name = target.get('name')
        self.revision = status.get('istioRevision')
        self.namespace = status.get('istiodNamespace')

    @property
    def follows(self):
        return self.target_kind == 'Istio'

    def to_dict(self):
        return dict((k, getattr(self, k)) for k in ('name', 'target_kind', 'target_name', 'revision', 'namespace'))


class SailState:
    """The Sail objects of a cluster: Istios, IstioRevisions, IstioRevisionTags (all cluster-scoped)."""

    def __init__(self, istios=(), revisions=(), tags=()):
        self.istios = dict((i.name, i) for i in (SailIstio(o) for o in istios))
        self.revisions = dict((r.name, r) for r in (SailRevision(o) for o in revisions))
        self.tags = dict((t.name, t) for t in (SailTag(o) for o in tags))

    @classmethod
    def load(cls, client):
        """The cluster's Sail objects, or None when it does not serve sailoperator.io."""
        try:
            istios = client.list('Istio', api_version=API_VERSION)
        except NotFound:
            return None
        return cls(istios, client.list('IstioRevision', api_version=API_VERSION),
                   client.list('IstioRevisionTag', api_version=API_VERSION))

    def istio_for(self, istio_namespace, revision=None):
        """The Istio that manages the control plane in ``istio_namespace`` (the owner of ``revision`` first)."""
        rev = self.revisions.get(revision) if revision else None
        if rev is not None and rev.istio in self.istios:
            return self.istios[rev.istio]
        found = [i for i in self.istios.values() if i.namespace == istio_namespace]
        return found[0] if len(found) == 1 else None

    def manages(self, istio_namespace):
        return any(i.namespace == istio_namespace for i in self.istios.values()) or \
            any(r.namespace == istio_namespace for r in self.revisions.values())

    def to_dict(self):
        return {'istios': [i.to_dict() for i in self.istios.values()],
                'revisions': [r.to_dict() for r in self.revisions.values()],
                'tags': [t.to_dict() for t in self.tags.values()]}


def attach(state, client):
    """Give a mesh.MeshState its Sail objects (``state.sail``, None without Sail); returns the state."""
    state.sail = SailState.load(client)
    return state


def _sail(state):
    return getattr(state, 'sail', None)


# --- the planner's manager ------------------------------------------------------------------------

class SailManager(plan.ControlPlaneManager):
    """Revisions made and deleted by the Sail operator; the collection sets versions and tag targets only."""

    name = 'sail'

    def detect(self, state, request):
        sail = _sail(state)
        return sail is not None and sail.manages(request.istio_namespace)

    def extra_guards(self, kind):
        guards = ['sail-not-configured']
        if kind in ('precheck', 'install', 'tag', 'rollback'):
            guards += ['sail-revision-based', 'sail-target-name']
        if kind in ('tag', 'rollback'):
            guards.append('sail-tag')
        if kind == 'cleanup':
            guards.append('sail-old-inactive')
        return guards

    @staticmethod
    def istio(ctx):
        return _sail(ctx.state).istio_for(ctx.request.istio_namespace, ctx.upgrade.from_revision)

    def install_changes(self, ctx):
        upgrade, istio = ctx.upgrade, self.istio(ctx)
        if istio is None or (upgrade.to_installed and upgrade.to_ready and istio.active == upgrade.to_revision):
            return []
        changes = []
        if istio.version != sail_version(upgrade.to_version):
            changes.append(plan.object_change('Istio', None, istio.name, 'update', 'spec.version %s -> %s'
                                              % (istio.version, sail_version(upgrade.to_version))))
        changes.append(plan.object_change('IstioRevision', None, upgrade.to_revision, 'wait',
                                          'created by Sail, active once Ready; waited for'))
        for tag in sorted(_sail(ctx.state).tags.values(), key=lambda t: t.name):
            if tag.follows and tag.target_name == istio.name and tag.revision != upgrade.to_revision:
                changes.append(plan.object_change('IstioRevisionTag', None, tag.name, 'wait',
                                                  'follows Istio %s: Sail moves it %s -> %s'
                                                  % (istio.name, tag.revision, upgrade.to_revision)))
        return changes

    def tag_changes(self, ctx, tag, revision):
        sail, istio = _sail(ctx.state), self.istio(ctx)
        found = sail.tags.get(tag)
        if found is None or found.revision == revision:
            return []
        if found.follows:
            rev = sail.revisions.get(revision)
            version = rev.version if rev is not None else None
            return [plan.object_change('Istio', None, found.target_name, 'update',
                                       'spec.version %s -> %s (active revision %s; tag %s follows it)'
                                       % (istio.version if istio else '?', version, revision, tag))]
        return [plan.object_change('IstioRevisionTag', None, tag, 'update', 'targetRef IstioRevision %s -> %s'
                                   % (found.target_name, revision))]

    def remove_changes(self, ctx, revision):
        istio = self.istio(ctx)
        grace = istio.grace if istio is not None else DEFAULT_GRACE_SECONDS
        return [plan.object_change('IstioRevision', None, revision, 'wait',
                                   'Sail deletes it %ss after nothing uses it; waited for' % grace)]

    def project_install(self, ctx):
        super(SailManager, self).project_install(ctx)
        istio, sail = self.istio(ctx), _sail(ctx.state)
        if istio is None:
            return
        istio.version, istio.active = sail_version(ctx.request.to_version), ctx.request.to_revision
        for tag in sail.tags.values():
            if tag.follows and tag.target_name == istio.name:
                tag.revision = ctx.request.to_revision
                ctx.state.project_tag(tag.name, ctx.request.to_revision)

    def project_tag(self, ctx, tag, revision):
        super(SailManager, self).project_tag(ctx, tag, revision)
        found = _sail(ctx.state).tags.get(tag)
        if found is not None:
            found.revision = revision
            if not found.follows:
                found.target_name = revision

    def project_remove(self, ctx, revision):
        super(SailManager, self).project_remove(ctx, revision)
        _sail(ctx.state).revisions.pop(revision, None)


def _register():
    for manager in plan.MANAGERS:
        if manager.name == SailManager.name:
            return manager
    return plan.register_manager(SailManager(), first=True)


MANAGER = _register()


@plan.guard('sail-not-configured')
def _not_configured(ctx):
    """A Sail-managed mesh is detected, never installed or removed with another method."""
    asked = getattr(ctx.request, 'install_method', None)
    if asked and asked != 'sail':
        return ('The control plane in %s%s is managed by the Sail operator (Istio %s): %s would fight it (Sail reverts '
                'or deletes what it does not own). Leave istio_canary_install_method empty: Sail-managed meshes are '
                'detected. Nothing was changed.' % (ctx.request.istio_namespace, ctx.request.on_cluster,
                                                    getattr(SailManager.istio(ctx), 'name', '?'), asked))
    return None


@plan.guard('sail-revision-based')
def _revision_based(ctx):
    """The Istio updates RevisionBased: InPlace replaces istiod under the same revision (no canary)."""
    istio = SailManager.istio(ctx)
    if istio is None:
        names = sorted(_sail(ctx.state).istios) or ['none']
        return ('No single Sail Istio manages %s (Istios: %s): a canary upgrade needs the Istio that owns the '
                'old revision.' % (ctx.request.istio_namespace, ', '.join(names)))
    if istio.strategy != REVISION_BASED:
        return ('Istio %s updates %s: Sail replaces istiod in place, so there is no old revision to canary against '
                'or to roll back to. Set spec.updateStrategy.type: RevisionBased on it first (Sail then names '
                'revisions %s). Nothing was changed.' % (istio.name, istio.strategy, istio.revision_for('1.2.3')
                                                         .replace('v1-2-3', 'vX-Y-Z')))
    return None


@plan.guard('sail-target-name')
def _target_name(ctx):
    """On Sail the new revision's name is Sail's: ``<istio>-v<x>-<y>-<z>`` of the target version."""
    istio = SailManager.istio(ctx)
    if istio is None or istio.strategy != REVISION_BASED:
        return None
    expected = istio.revision_for(ctx.request.to_version)
    if ctx.request.to_revision != expected:
        return ('On Sail the revision of Istio %s at %s is named by Sail: set istio_canary_to_revision: %s '
                '(not %s). Nothing was changed.' % (istio.name, ctx.request.to_version, expected,
                                                    ctx.request.to_revision))
    return None


@plan.guard('sail-tag')
def _tag(ctx):
    """The revision tag is an IstioRevisionTag (its webhooks are Sail's)."""
    sail, tag = _sail(ctx.state), ctx.request.tag
    if tag in sail.tags:
        found = sail.tags[tag]
        if found.follows and found.target_name != SailManager.istio(ctx).name:
            return ('IstioRevisionTag %s follows Istio %s, not %s: this upgrade cannot move it.'
                    % (tag, found.target_name, SailManager.istio(ctx).name))
        return None
    return ("Revision tag '%s' is no IstioRevisionTag%s (IstioRevisionTags: %s): on Sail a tag is an "
            "IstioRevisionTag whose targetRef is the Istio (it follows the active revision) or an IstioRevision. "
            "Create one (kind: IstioRevisionTag, spec.targetRef: {kind: Istio, name: %s}) or set istio_canary_tag. "
            "Nothing was changed." % (tag, ctx.request.on_cluster, ', '.join(sorted(sail.tags)) or 'none',
                                      getattr(SailManager.istio(ctx), 'name', 'default')))


@plan.guard('sail-old-inactive')
def _old_inactive(ctx):
    """Sail deletes only an inactive revision: the old one must not be the Istio's active revision."""
    istio, old = SailManager.istio(ctx), ctx.upgrade.from_revision
    if istio is not None and old and istio.active == old:
        return ('Cleanup refuses: %s is still the active revision of Istio %s (spec.version %s), so Sail keeps it. '
                "Run the 'install' phase first (--tags install)." % (old, istio.name, istio.version))
    return None


# --- making the changes ---------------------------------------------------------------------------

class SailControl:
    """Sets versions and tag targets on Sail's objects and waits for the operator."""

    def __init__(self, client, istio_namespace=mesh.ISTIO_NAMESPACE, clock=time.monotonic, sleep=time.sleep):
        self.client = client
        self.istio_namespace = istio_namespace
        self.clock = clock
        self.sleep = sleep

    def _get(self, kind, name):
        return self.client.get_or_none(kind, name, api_version=API_VERSION)

    def state(self):
        sail = SailState.load(self.client)
        if sail is None:
            raise InvalidInput('the cluster serves no sailoperator.io/v1 API: it is not managed by the Sail operator '
                               '(use meshops.istio.istio_revision)', details={'served': False})
        return sail

    def _wait(self, what, check, timeout):
        """Poll ``check()`` -> (done, detail) until done; WaitTimeout with the last detail."""
        deadline = self.clock() + timeout
        delay = 0.2
        while True:
            done, detail = check()
            if done:
                return detail
            if self.clock() >= deadline:
                raise WaitTimeout('Timed out after %ss waiting for %s: %s' % (timeout, what, detail),
                                  details={'waiting_for': what, 'last': detail})
            self.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def activate(self, revision, version, tag=None, check_mode=False, wait=True, timeout=300):
        """Make ``revision`` (of ``version``) the Istio's active revision and, with ``tag``, the tag's revision.
        Returns (changes, result)."""
        sail = self.state()
        istio = sail.istio_for(self.istio_namespace, revision)
        if istio is None:
            raise InvalidInput('no single Sail Istio manages %s (Istios: %s)'
                               % (self.istio_namespace, ', '.join(sorted(sail.istios)) or 'none'))
        if istio.strategy != REVISION_BASED and revision != istio.name:
            raise InvalidInput('Istio %s updates %s: its only revision is %s' % (istio.name, istio.strategy, istio.name))
        expected = istio.revision_for(version)
        if expected != revision:
            raise InvalidInput('revision %s is not the one Sail makes for version %s of Istio %s (%s): set revision to %s'
                               % (revision, version, istio.name, istio.strategy, expected),
                               details={'expected': expected})
        existing = sail.revisions.get(revision)
        if existing is not None and existing.deleting:
            raise InvalidInput('IstioRevision %s is being deleted by Sail: wait until it is gone, then run again'
                               % revision)
        changes = []
        if istio.version != sail_version(version):
            changes.append({'kind': 'Istio', 'name': istio.name, 'field': 'spec.version',
                            'before': istio.version, 'after': sail_version(version)})
            if not check_mode:
                self.client.patch('Istio', istio.name, {'spec': {'version': sail_version(version)}},
                                  patch_type='merge', api_version=API_VERSION)
        found = sail.tags.get(tag) if tag else None
        if tag and found is None:
            known = ', '.join(sorted(sail.tags)) or 'none'
            raise InvalidInput('IstioRevisionTag %s does not exist (IstioRevisionTags: %s): create it with '
                               'spec.targetRef {kind: Istio, name: %s}' % (tag, known, istio.name))
        if found is not None and found.follows and found.target_name != istio.name:
            raise InvalidInput('IstioRevisionTag %s follows Istio %s, not %s' % (tag, found.target_name, istio.name))
        if found is not None and not found.follows and found.target_name != revision:
            changes.append({'kind': 'IstioRevisionTag', 'name': tag, 'field': 'spec.targetRef.name',
                            'before': found.target_name, 'after': revision})
            if not check_mode:
                self.client.patch('IstioRevisionTag', tag, {'spec': {'targetRef': {'kind': 'IstioRevision',
                                                                                   'name': revision}}},
                                  patch_type='merge', api_version=API_VERSION)
        elif found is not None and found.follows and found.revision != revision:
            changes.append({'kind': 'IstioRevisionTag', 'name': tag, 'field': 'status.istioRevision',
                            'before': found.revision, 'after': revision, 'by': 'Sail (follows Istio %s)' % istio.name})
        result = {'istio': istio.name, 'revision': revision, 'version': sail_version(version), 'tag': tag}
        if check_mode or not wait:
            return changes, result

        def ready():
            rev, ist = self._get('IstioRevision', revision), self._get('Istio', istio.name)
            if rev is None:
                return False, 'IstioRevision %s not created yet' % revision
            cond = _condition(rev, 'Ready')
            if cond.get('status') != 'True':
                return False, 'IstioRevision %s not Ready (%s)' % (revision, cond.get('message') or cond.get('reason')
                                                                   or 'no Ready condition yet')
            active = ((ist or {}).get('status') or {}).get('activeRevisionName')
            if active != revision:
                return False, 'Istio %s active revision is %s' % (istio.name, active)
            if tag:
                current = ((self._get('IstioRevisionTag', tag) or {}).get('status') or {}).get('istioRevision')
                if current != revision:
                    return False, 'IstioRevisionTag %s on %s' % (tag, current)
            return True, None
        self._wait('revision %s to be Ready and active%s' % (revision, ' with tag %s on it' % tag if tag else ''),
                   ready, timeout)
        return changes, result

    def users(self, revision):
        """What Sail counts as using ``revision`` (its InUse rules): tags, namespace labels, pods annotated
        ``istio.io/rev=<revision>`` that are not Succeeded (Failed ones count)."""
        users = []
        for tag in sorted(self.state().tags.values(), key=lambda t: t.name):
            if tag.revision == revision:
                users.append('IstioRevisionTag %s' % tag.name)
        for ns in self.client.list('Namespace'):
            labels = _meta(ns).get('labels') or {}
            if labels.get(mesh.REV_LABEL) == revision or (revision == mesh.DEFAULT and
                                                          labels.get(mesh.INJECTION_LABEL) == 'enabled'):
                users.append('namespace %s (%s=%s)' % (_meta(ns).get('name'), mesh.REV_LABEL, revision))
        for pod in self.client.list('Pod'):
            meta = _meta(pod)
            if (meta.get('annotations') or {}).get(mesh.REV_LABEL) != revision:
                continue
            phase = (pod.get('status') or {}).get('phase')
            if phase == 'Succeeded':
                continue
            hint = ' (a Failed pod keeps the revision in use for Sail: delete it)' if phase == 'Failed' else ''
            users.append('pod %s/%s %s%s' % (meta.get('namespace'), meta.get('name'), phase or '?', hint))
        return users

    def await_removal(self, revision, check_mode=False, wait=True, timeout=300):
        """Wait for Sail to delete the inactive ``revision``; name what keeps it in use when it does not go."""
        sail = self.state()
        rev = sail.revisions.get(revision)
        if rev is None:
            return False, {'revision': revision, 'removed': False, 'users': []}
        istio = sail.istios.get(rev.istio) if rev.istio else None
        if istio is None:
            raise InvalidInput('IstioRevision %s belongs to no Istio: Sail never deletes it by itself; delete it '
                               '(kubectl delete istiorevision %s) once nothing uses it' % (revision, revision))
        if istio.active == revision:
            raise InvalidInput('IstioRevision %s is the active revision of Istio %s: Sail keeps it. Upgrade first.'
                               % (revision, istio.name))
        users = self.users(revision)
        result = {'revision': revision, 'removed': False, 'users': users, 'grace_seconds': istio.grace}
        if check_mode or not wait:
            return True, result

        def gone():
            obj = self._get('IstioRevision', revision)
            if obj is None:
                return True, None
            in_use = _condition(obj, 'InUse')
            return False, 'InUse %s (%s)' % (in_use.get('status'), in_use.get('message') or in_use.get('reason'))
        try:
            self._wait('Sail to delete the inactive revision %s (%ss after nothing uses it)' % (revision, istio.grace),
                       gone, timeout)
        except WaitTimeout as exc:
            users = self.users(revision)
            found = '; '.join(users) or 'nothing found now: Sail deletes it after the grace period'
            raise RevisionInUse('%s. Still using it: %s.' % (exc.message, found), users, details={'revision': revision})
        result['removed'] = True
        return True, result
