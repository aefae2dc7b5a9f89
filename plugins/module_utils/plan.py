# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade planner: every decision of a phase of the canary upgrade, made once, in one place.

``UpgradePlan.build(state, record, request, phase)`` takes what the cluster holds (a mesh.MeshState),
the upgrade record (upgrade_state.parse) and what was asked (an ``UpgradeRequest``: the role's
variables), and decides for the phase:

* what is old and new (``Upgrade``: the old revision from the variable, the record, the tag or the
  only other installed revision, and where it came from);
* every guard that applies to the phase (``PhaseGuard``), whatever ran before: may it run, and if not,
  why and what to do, in the words of the README's phase table;
* what the phase will change: objects (webhooks, istiod objects, namespace labels, the record) and
  workloads (which restart, from which proxy to which), and the calls the role makes for it;
* what the record gets (fields, phase, wave).

The plan of the whole upgrade in check mode: ``assume_done`` lists the phases planned before this one in
the same check-mode run; their effects are applied to a copy of the model (mesh.MeshState's
``project_*``) and of the record, so that every phase is planned as if the ones before it succeeded.

Extending it:

* a phase: ``register_phase(PhaseSpec(kind, order, guards=[...], plan=..., project=...))`` with the
  guard names it enforces (``GUARDS``), its changes and its effect on the model (for check mode);
* a guard: ``@guard('name')`` on ``fn(ctx) -> message or None`` and add the name to the phases' lists
  (or have a control-plane manager return it from ``extra_guards``);
* a control-plane manager (istioctl, Helm, Sail): a ``ControlPlaneManager`` subclass registered with
  ``register_manager``; ``detect`` says whether it manages the mesh, and it plans and projects the
  install, removal and tag moves of revisions.

Everything here is pure (no cluster access), so it is unit-tested from plain objects.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import copy
import re

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils import upgrade_state
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

# The role's variables, by the request field they fill: messages name what the operator sets.
VARIABLES = {
    'to_revision': 'istio_canary_to_revision',
    'to_version': 'istio_canary_to_version',
    'from_revision': 'istio_canary_from_revision',
    'tag': 'istio_canary_tag',
    'waves': 'istio_canary_waves',
    'gateways': 'istio_canary_gateways',
    'create_tag': 'istio_canary_create_tag',
    'abandon_upgrade': 'istio_canary_abandon_upgrade',
    'rollback': 'istio_canary_rollback',
    'install_method': 'istio_canary_install_method',
    'break_lease': 'istio_canary_break_lease',
    'lease_ttl': 'istio_canary_lease_ttl',
}
ROLLBACK_HINT = '--tags rollback -e istio_canary_rollback=true'
MAX_WAVES = 9
_VERSION_RE = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)')
_WAVE_NAME_RE = re.compile(r'^[A-Za-z0-9][-_A-Za-z0-9]{0,62}$')
_WAVE_PHASE_RE = re.compile(r'^wave([1-9])$')


def parse_version(version):
    match = _VERSION_RE.match(str(version or ''))
    return tuple(int(x) for x in match.groups()) if match else None


def same_version(one, other):
    return bool(one) and bool(other) and str(one).lstrip('v') == str(other).lstrip('v')


def workload_id(namespace, kind, name):
    return '%s/%s/%s' % (namespace, kind or 'Deployment', name)


def split_phase(phase):
    """``wave3`` -> ('wave', 3); ``install`` -> ('install', None)."""
    match = _WAVE_PHASE_RE.match(phase or '')
    if match:
        return 'wave', int(match.group(1))
    return phase, None


# --- what was asked -----------------------------------------------------------------------------------

class UpgradeRequest:
    """The role's variables for one cluster, checked before anything is read."""

    def __init__(self, to_revision, to_version, from_revision=None, tag=mesh.DEFAULT,
                 istio_namespace=mesh.ISTIO_NAMESPACE, record_name='meshops-istio-upgrade', waves=None,
                 gateways=None, max_minor_skew=2, create_tag=False, abandon_upgrade=False, rollback=False,
                 migrate_legacy_labels=False, cluster=None, install_method=None, lease_holder=None,
                 break_lease=False, lease_ttl=upgrade_state.LEASE_TTL, now=None):
        self.to_revision = to_revision
        self.to_version = str(to_version or '')
        self.from_revision = from_revision or None
        self.tag = tag or mesh.DEFAULT
        self.istio_namespace = istio_namespace or mesh.ISTIO_NAMESPACE
        self.record_name = record_name
        self.waves = waves if waves is not None else []
        self.gateways = gateways if gateways is not None else []
        self.max_minor_skew = max_minor_skew
        self.create_tag = bool(create_tag)
        self.abandon_upgrade = bool(abandon_upgrade)
        self.rollback = bool(rollback)
        self.migrate_legacy_labels = bool(migrate_legacy_labels)
        self.cluster = cluster
        self.install_method = install_method or None
        # who runs this (the lease's holder: inventory host, controller host, pid, AWX job); None: no lease asked
        self.lease_holder = lease_holder or None
        self.break_lease = bool(break_lease)
        self.lease_ttl = lease_ttl
        self.now = now

    @property
    def record_ref(self):
        return 'configmap %s/%s' % (self.istio_namespace, self.record_name)

    @property
    def on_cluster(self):
        return ' on %s' % self.cluster if self.cluster else ''

    def problems(self):
        """Everything wrong with the input, as messages naming the variable (empty when fine)."""
        problems = []
        for field in ('to_revision', 'from_revision', 'tag'):
            value = getattr(self, field)
            if value is None and field == 'from_revision':
                continue
            try:
                mesh.validate_revision_name(value, VARIABLES[field])
            except InvalidInput as exc:
                problems.append(exc.message)
        if self.to_revision == mesh.DEFAULT:
            problems.append('istio_canary_to_revision "default" is the revision-less install and the name of the '
                            'default tag: upgrade to a versioned revision such as 1-15-4')
        if self.install_method not in (None, 'istioctl', 'helm'):
            problems.append('istio_canary_install_method must be istioctl or helm (or empty: as the old revision '
                            'was installed), got %r' % (self.install_method,))
        if not parse_version(self.to_version):
            problems.append('istio_canary_to_version %r is not an Istio version like 1.15.4' % (self.to_version,))
        problems.extend(wave_problems(self.waves))
        problems.extend(gateway_problems(self.gateways))
        if not isinstance(self.lease_ttl, int) or self.lease_ttl < 5:
            problems.append('istio_canary_lease_ttl must be a number of seconds (5 or more), not %r' % (self.lease_ttl,))
        if not isinstance(self.max_minor_skew, int) or self.max_minor_skew < 0:
            problems.append('istio_canary_max_minor_skew must be a number of minor versions (0 or more)')
        return problems

    def validate(self):
        problems = self.problems()
        if problems:
            raise InvalidInput('bad input, nothing was read or changed: %s' % '; '.join(problems),
                               details={'problems': problems})
        return self


def wave_problems(waves):
    """Everything wrong with ``istio_canary_waves`` (empty when fine)."""
    if not isinstance(waves, list):
        return ['istio_canary_waves must be a list of waves, got %s' % type(waves).__name__]
    problems, seen = [], set()
    for index, wave in enumerate(waves, 1):
        if not isinstance(wave, dict):
            problems.append('wave %d must be a dict with name and namespaces, namespace_selector or query' % index)
            continue
        name = wave.get('name')
        if not isinstance(name, str) or not _WAVE_NAME_RE.match(name):
            problems.append("wave %d: name %r must be letters, digits, '-' or '_'" % (index, name))
        elif name in seen:
            problems.append('wave %d: name %s is used twice' % (index, name))
        seen.add(name)
        chosen = [key for key in ('namespaces', 'namespace_selector', 'query') if wave.get(key)]
        if len(chosen) != 1:
            problems.append('wave %s: needs exactly one of namespaces, namespace_selector or query (has: %s)'
                            % (name or index, ', '.join(chosen) or 'none'))
        namespaces = wave.get('namespaces')
        if namespaces and (not isinstance(namespaces, list) or
                           not all(isinstance(n, str) and n for n in namespaces)):
            problems.append('wave %s: namespaces must be a list of namespace names' % (name or index))
        if wave.get('namespace_selector'):
            try:
                mesh.parse_label_selector(wave['namespace_selector'])
            except InvalidInput as exc:
                problems.append('wave %s: namespace_selector: %s' % (name or index, exc.message))
    if len(waves) > MAX_WAVES:
        problems.append('at most %d waves are supported (tags wave1 .. wave%d); merge some waves'
                        % (MAX_WAVES, MAX_WAVES))
    return problems


def gateway_problems(gateways):
    if not isinstance(gateways, list):
        return ['istio_canary_gateways must be a list of {namespace, name, kind}']
    problems = []
    for index, gateway in enumerate(gateways, 1):
        if not isinstance(gateway, dict) or not gateway.get('namespace') or not gateway.get('name'):
            problems.append('gateway %d must have a namespace and a name' % index)
        elif (gateway.get('kind') or 'Deployment') not in mesh.WORKLOAD_KINDS:
            problems.append('gateway %s/%s: kind must be one of %s'
                            % (gateway['namespace'], gateway['name'], ', '.join(mesh.WORKLOAD_KINDS)))
    return problems


# --- what is old and new ------------------------------------------------------------------------------

class Upgrade:
    """The revisions of this upgrade, resolved from the request, the record and the cluster."""

    def __init__(self, state, record, request):
        self.request = request
        self.tag = request.tag
        tag = state.tags.get(request.tag)
        revisionless = request.tag == mesh.DEFAULT and (
            mesh.DEFAULT in state.revisions or mesh.DEFAULT in state.injectors)
        self.tag_exists = tag is not None or revisionless
        self.tag_revision = tag.revision if tag is not None else (mesh.DEFAULT if revisionless else None)
        self.to_revision = request.to_revision
        self.to_version = request.to_version
        self.record_same = record.get('to_revision') in (None, request.to_revision)
        self.from_revision, self.from_source = self._from(state, record, request, use_variable=True)
        self.from_version = None
        self.cleaned_up = self.record_same and 'cleanup' in (record.get('phases') or {})
        rev = state.revisions.get(self.from_revision) if self.from_revision else None
        if rev is not None:
            self.from_version = rev.version
        if not self.from_version and self.record_same and record.get('from_revision') == self.from_revision:
            self.from_version = record.get('from_version')
        self.from_installed = rev is not None
        self.from_ready = bool(rev is not None and rev.ready)
        target = state.revisions.get(request.to_revision)
        self.to_installed = target is not None
        self.to_ready = bool(target is not None and target.ready)
        self.to_installed_version = target.version if target is not None else None
        self.tag_on_target = bool(self.tag_revision) and self.tag_revision == request.to_revision

    def _from(self, state, record, request, use_variable):
        if use_variable and request.from_revision:
            return request.from_revision, 'variable'
        if self.record_same and record.get('from_revision'):
            return record['from_revision'], 'record'
        if self.tag_revision and self.tag_revision != request.to_revision:
            return self.tag_revision, 'tag'
        others = sorted(name for name in state.revisions if name != request.to_revision)
        if len(others) == 1:
            return others[0], 'installed revisions'
        return None, None

    def without_variable(self, state, record):
        return self._from(state, record, self.request, use_variable=False)

    def to_dict(self):
        return dict((key, getattr(self, key)) for key in (
            'tag', 'tag_exists', 'tag_revision', 'tag_on_target', 'from_revision', 'from_source',
            'from_version', 'from_installed', 'from_ready', 'to_revision', 'to_version', 'to_installed',
            'to_ready', 'to_installed_version'))


# --- control-plane managers ---------------------------------------------------------------------------

class ControlPlaneManager:
    """How revisions are installed, removed and tagged on a mesh (istioctl, Helm, Sail...).

    The planner asks the first registered manager whose ``detect`` is true; ``IstioctlManager`` is the
    fallback.  Object changes are dicts ``{kind, namespace, name, action, detail}``."""

    name = None

    def detect(self, state, request):
        return False

    def extra_guards(self, kind):
        """Guard names this manager adds to a phase kind (e.g. refusing what would fight an operator)."""
        return []

    def install_changes(self, ctx):
        return []

    def remove_changes(self, ctx, revision):
        return []

    def tag_changes(self, ctx, tag, revision):
        """The webhooks a tag move rewrites, as meshops.istio.istio_revision_tag writes them."""
        state = ctx.state
        changes = []
        existing = state.tags.get(tag)
        if existing is None:
            changes.append(object_change('MutatingWebhookConfiguration', None, mesh.tag_webhook_name(tag),
                                         'create', 'tag %s -> revision %s (service %s)'
                                         % (tag, revision, mesh.istiod_name(revision))))
        elif existing.revision != revision:
            changes.append(object_change('MutatingWebhookConfiguration', None, existing.webhook, 'update',
                                         'istio.io/rev %s -> %s, service %s -> %s'
                                         % (existing.revision, revision, ', '.join(existing.services) or '-',
                                            mesh.istiod_name(revision))))
        if tag == mesh.DEFAULT:
            current = mesh.validator_revision(state.validator) if state.validator is not None else None
            if current != revision:
                changes.append(object_change('ValidatingWebhookConfiguration', None, mesh.DEFAULT_VALIDATOR,
                                             'create' if state.validator is None else 'update',
                                             'validation by %s (was %s)'
                                             % (mesh.istiod_name(revision), current or 'none')))
            legacy = state.legacy_injector
            if legacy is not None and revision != mesh.DEFAULT and mesh.injector_active(legacy):
                changes.append(object_change('MutatingWebhookConfiguration', None, mesh.LEGACY_INJECTOR,
                                             'update', 'revision-less injector deactivated (never matches)'))
        return changes

    def project_install(self, ctx):
        ctx.state.project_revision(ctx.request.to_revision, ctx.request.to_version)

    def project_remove(self, ctx, revision):
        ctx.state.project_revision_removed(revision)

    def project_tag(self, ctx, tag, revision):
        ctx.state.project_tag(tag, revision)


class IstioctlManager(ControlPlaneManager):
    """Revisions installed and removed with istioctl (``install --set revision=R``, ``uninstall --revision R``)."""

    name = 'istioctl'

    def detect(self, state, request):
        return True

    def install_changes(self, ctx):
        upgrade = ctx.upgrade
        revision, namespace = upgrade.to_revision, ctx.request.istio_namespace
        if upgrade.to_installed and upgrade.to_ready:
            return []
        if upgrade.to_installed:
            return [object_change('Deployment', namespace, mesh.istiod_name(revision), 'wait',
                                  'istiod-%s exists but is not ready: waited for' % revision)]
        detail = 'istioctl install --set revision=%s' % revision
        return [
            object_change('Deployment', namespace, mesh.istiod_name(revision), 'create', detail),
            object_change('Service', namespace, mesh.istiod_name(revision), 'create', detail),
            object_change('MutatingWebhookConfiguration', None, mesh.injector_name(revision), 'create', detail),
            object_change('ValidatingWebhookConfiguration', None,
                          mesh.revision_validator_name(revision, namespace), 'create', detail),
        ]

    def remove_changes(self, ctx, revision):
        state, namespace = ctx.state, ctx.request.istio_namespace
        detail = 'istioctl uninstall --revision %s' % revision
        changes = []
        rev = state.revisions.get(revision)
        if rev is not None:
            changes.append(object_change('Deployment', namespace, rev.deployment, 'delete', detail))
            if rev.service:
                changes.append(object_change('Service', namespace, rev.service, 'delete', detail))
        if revision in state.injectors:
            changes.append(object_change('MutatingWebhookConfiguration', None, state.injectors[revision],
                                         'delete', detail))
        if revision in state.revision_validators:
            changes.append(object_change('ValidatingWebhookConfiguration', None,
                                         state.revision_validators[revision], 'delete', detail))
        return changes


MANAGERS = []


def register_manager(manager, first=True):
    """Add a control-plane manager; ``first`` puts it before the others (the fallback stays last)."""
    if first:
        MANAGERS.insert(0, manager)
    else:
        MANAGERS.append(manager)
    return manager


register_manager(IstioctlManager(), first=False)


def manager_for(state, request):
    for manager in MANAGERS:
        if manager.detect(state, request):
            return manager
    return MANAGERS[-1]


def object_change(kind, namespace, name, action, detail=None):
    return {'kind': kind, 'namespace': namespace, 'name': name, 'action': action, 'detail': detail}


# --- guards -------------------------------------------------------------------------------------------

class PhaseGuard:
    """One rule a phase must satisfy: ``check(ctx)`` returns None when it holds, else the refusal: what
    is wrong and what to do."""

    def __init__(self, name, check, doc=None, stop=False):
        self.name = name
        self.check = check
        self.doc = doc or (check.__doc__ or '').strip()
        self.stop = stop  # when it fails, the guards after it are not evaluated (their messages would be noise)

    def evaluate(self, ctx):
        message = self.check(ctx)
        return {'name': self.name, 'ok': not message, 'message': message or None}


GUARDS = collections.OrderedDict()


def guard(name, stop=False):
    """Register ``fn(ctx) -> message or None`` as guard ``name``."""
    def register(fn):
        GUARDS[name] = PhaseGuard(name, fn, stop=stop)
        return fn
    return register


def _installed(ctx):
    return ', '.join(sorted(ctx.state.revisions)) or 'none'


@guard('rollback-asked', stop=True)
def _rollback_asked(ctx):
    """Rollback only runs when asked for."""
    if not ctx.request.rollback:
        return ('Rollback is guarded and was not asked for: nothing was changed. Run it with %s'
                % ROLLBACK_HINT)
    return None


@guard('lease-free', stop=True)
def _lease_free(ctx):
    """One run per cluster at a time: a phase that writes refuses while another run holds the record's lease
    (unless istio_canary_break_lease takes it over)."""
    request = ctx.request
    if not request.lease_holder or request.break_lease:
        return None
    return upgrade_state.lease_refusal(ctx.record.get('lease'), request.lease_holder,
                                       '%s%s' % (request.record_ref, request.on_cluster), request.now)


@guard('rollback-finished', stop=True)
def _rollback_finished(ctx):
    """A phase that carries the upgrade forward waits for a rollback that was started to be finished: until then
    the tag and the workloads it moves back may be on either revision."""
    if not upgrade_state.rollback_under_way(ctx.record):
        return None
    rollback = ctx.record['rollback']
    return ('%s refuses to run%s: a rollback to revision %s started at %s and did not finish (its run was stopped or '
            'failed; %s keeps it under rollback.*), so revision tag %s and the workloads it moves back may be on '
            'either revision. Finish the rollback first: %s (it moves back only what is not back yet). Nothing was '
            'changed.' % (ctx.label, ctx.request.on_cluster, rollback.get('revision') or '?', rollback['started'],
                          ctx.request.record_ref, ctx.request.tag, ROLLBACK_HINT))


@guard('one-upgrade-at-a-time')
def _one_upgrade(ctx):
    """The record of an upgrade in progress to another target is never replaced unless it is abandoned."""
    record, request = ctx.record, ctx.request
    other = record.get('to_revision')
    if not other or other == request.to_revision or not upgrade_state.in_progress(record):
        return None
    if request.abandon_upgrade:
        return None
    return ('An upgrade to %s (%s) is in progress%s (%s; %s). Finish it (its remaining waves, then cleanup) '
            'or roll it back (%s with istio_canary_to_revision=%s) first, or set '
            'istio_canary_abandon_upgrade: true to start the upgrade to %s anyway (the abandoned record is '
            'kept in the new one). Nothing was changed.'
            % (other, record.get('to_version') or '?', request.on_cluster, upgrade_state.progress_text(record),
               request.record_ref, ROLLBACK_HINT, other, request.to_revision))


@guard('old-is-not-new')
def _old_is_not_new(ctx):
    """The old revision is never the target itself."""
    upgrade = ctx.upgrade
    if not upgrade.from_revision or upgrade.from_revision != upgrade.to_revision:
        return None
    if upgrade.from_source == 'variable':
        found, source = upgrade.without_variable(ctx.state, ctx.record)
        hint = (' (here the old revision is %s, from the %s)' % (found, source)) if found and found != upgrade.to_revision \
            else ''
        return ('istio_canary_from_revision is %s, the target revision itself: the old revision is the one the '
                'upgrade moves away from%s. Leave istio_canary_from_revision unset, or set it to the old revision. '
                'Nothing was changed.' % (upgrade.to_revision, hint))
    return ('The upgrade record (%s) names %s as both the old and the new revision: set istio_canary_from_revision '
            'to the old revision.' % (ctx.request.record_ref, upgrade.to_revision))


@guard('old-revision-known')
def _old_known(ctx):
    """The old revision is known: from the variable, the record, the tag or the only other revision."""
    upgrade = ctx.upgrade
    if upgrade.from_revision:
        return None
    if ctx.kind == 'rollback':
        return ('Cannot roll back: the old revision is unknown (nothing recorded in %s); set '
                'istio_canary_from_revision.' % ctx.request.record_ref)
    if ctx.kind == 'cleanup':
        return ('Cleanup cannot tell which revision to remove: nothing is recorded in %s; set '
                'istio_canary_from_revision.' % ctx.request.record_ref)
    return ('Cannot tell which revision the upgrade starts from: revision tag %s %s and nothing was recorded. '
            'Set istio_canary_from_revision (installed: %s).'
            % (upgrade.tag, ('points at %s' % upgrade.tag_revision) if upgrade.tag_revision else 'does not exist',
               _installed(ctx)))


@guard('old-revision-installed')
def _old_installed(ctx):
    """The old revision is installed (so that the upgrade can go back to it), until cleanup removed it."""
    upgrade = ctx.upgrade
    if not upgrade.from_revision or upgrade.from_revision == upgrade.to_revision or upgrade.cleaned_up:
        return None
    if not upgrade.from_installed:
        return ('The old revision %s (from the %s) is not installed in %s (installed: %s).'
                % (upgrade.from_revision, upgrade.from_source, ctx.request.istio_namespace, _installed(ctx)))
    if not upgrade.from_version:
        return 'The version of the old revision %s cannot be read from istiod-%s.' % (
            upgrade.from_revision, upgrade.from_revision)
    return None


@guard('old-revision-ready')
def _old_ready(ctx):
    """Rollback needs the old revision installed and ready."""
    upgrade = ctx.upgrade
    if not upgrade.from_revision or upgrade.from_revision == upgrade.to_revision:
        return None
    if not upgrade.from_installed:
        return ('Cannot roll back: the old revision %s is not installed any more (cleanup ran?) in %s. Roll back by '
                'upgrading again, with the old version as the target.'
                % (upgrade.from_revision, ctx.request.istio_namespace))
    if not upgrade.from_ready:
        return ('Cannot roll back: the old revision %s is not ready in %s; check istiod-%s.'
                % (upgrade.from_revision, ctx.request.istio_namespace, upgrade.from_revision))
    return None


@guard('tag-exists')
def _tag_exists(ctx):
    """The revision tag exists, unless it is to be created (istio_canary_create_tag)."""
    upgrade = ctx.upgrade
    if upgrade.tag_exists or ctx.request.create_tag:
        return None
    return ("Revision tag '%s' does not exist%s (tags: %s). Check istio_canary_tag, or set "
            "istio_canary_create_tag: true to create it. Nothing was changed."
            % (upgrade.tag, ctx.request.on_cluster, ', '.join(sorted(ctx.state.tags)) or 'none'))


@guard('tag-istiod-alive')
def _tag_alive(ctx):
    """The tag does not send injection to an istiod that is gone."""
    upgrade = ctx.upgrade
    revision = upgrade.tag_revision
    if not revision or revision in ctx.state.revisions:
        return None
    if ctx.kind in ('precheck', 'install'):
        fix = 'Re-point the tag at an installed revision (%s) before upgrading.' % _installed(ctx)
    else:
        fix = 'Re-point the tag (--tags tag, or %s).' % ROLLBACK_HINT
    return ("Revision tag '%s' points at revision %s, whose istiod (%s) is gone: every pod creation in a namespace "
            "using the tag fails (\"failed calling webhook ... no endpoints available for service %s\"). %s"
            % (upgrade.tag, revision, mesh.istiod_name(revision), mesh.istiod_name(revision), fix))


@guard('version-skew')
def _skew(ctx):
    """The old and the new version are at most istio_canary_max_minor_skew minor versions apart."""
    upgrade = ctx.upgrade
    old, new = parse_version(upgrade.from_version), parse_version(upgrade.to_version)
    if not old or not new:
        return None
    if old[0] != new[0]:
        return 'Cannot upgrade across major versions (%s -> %s).' % (upgrade.from_version, upgrade.to_version)
    skew = abs(new[1] - old[1])
    if skew > ctx.request.max_minor_skew:
        return ('%s -> %s spans %d minor versions; a canary upgrade supports at most %d. Upgrade through an '
                'intermediate version. Nothing was changed.'
                % (upgrade.from_version, upgrade.to_version, skew, ctx.request.max_minor_skew))
    return None


@guard('target-version')
def _target_version(ctx):
    """A revision name belongs to one version."""
    upgrade = ctx.upgrade
    if upgrade.to_installed and upgrade.to_installed_version and \
            not same_version(upgrade.to_installed_version, upgrade.to_version):
        return ('Revision %s is already installed with version %s, not %s: a revision name belongs to one version. '
                'Pick another revision name.' % (upgrade.to_revision, upgrade.to_installed_version, upgrade.to_version))
    return None


@guard('target-ready')
def _target_ready(ctx):
    """The new revision is installed and ready."""
    upgrade = ctx.upgrade
    if upgrade.to_installed and upgrade.to_ready:
        return None
    if not upgrade.to_installed:
        first = "Run the 'install' phase first (--tags install)." if ctx.kind == 'tag' else \
            "Run the 'install' phase (--tags install) and then the 'tag' phase (--tags tag) first."
        return '%s refuses to run: revision %s is not installed in %s. %s' % (
            ctx.label, upgrade.to_revision, ctx.request.istio_namespace, first)
    rev = ctx.state.revisions[upgrade.to_revision]
    return '%s refuses to run: revision %s is not ready (%s of %s istiod replicas ready); check istiod-%s.' % (
        ctx.label, upgrade.to_revision, rev.ready_replicas, rev.replicas, upgrade.to_revision)


@guard('tag-on-target')
def _tag_on_target(ctx):
    """The tag points at the new revision: before that, a restart would only bring back the old proxy."""
    upgrade = ctx.upgrade
    if upgrade.tag_on_target:
        return None
    return ("%s refuses to run: revision tag '%s' points at %s, not at %s, so a restart would bring back the old "
            "proxy. Run the 'tag' phase first (--tags tag)."
            % (ctx.label, upgrade.tag, upgrade.tag_revision or 'nothing (the tag does not exist)', upgrade.to_revision))


@guard('wave-namespaces-exist')
def _wave_namespaces(ctx):
    """The namespaces a wave names exist."""
    missing = [ns for ns in (ctx.wave or {}).get('namespaces') or [] if ns not in ctx.state.namespaces]
    if missing:
        return 'Wave %s: namespace %s does not exist. Nothing was restarted; fix istio_canary_waves.' % (
            ctx.wave.get('name'), ' does not exist; namespace '.join(missing))
    return None


@guard('gateways-exist')
def _gateways_exist(ctx):
    """Every gateway of istio_canary_gateways exists."""
    missing = [workload_id(g['namespace'], g.get('kind'), g['name']) for g in ctx.request.gateways
               if ctx.workload(g['namespace'], g.get('kind') or 'Deployment', g['name']) is None]
    if missing:
        return 'The gateways phase refuses to run: gateway %s does not exist. Nothing was restarted; fix ' \
               'istio_canary_gateways.' % ', '.join(missing)
    return None


@guard('moved-workloads-on-target')
def _moved_on_target(ctx):
    """Every workload moved so far is ready and on the new revision and version."""
    scope = verify_scope(ctx)
    problems = off_revision(ctx.state, ctx.upgrade.to_revision, ctx.upgrade.to_version, scope['namespaces'],
                            scope['ids'])
    if problems:
        return ('Verify failed%s: %s. Fix them and run verify again, or go back with %s'
                % (ctx.request.on_cluster, '; '.join(problems), ROLLBACK_HINT))
    return None


@guard('old-revision-unused')
def _old_unused(ctx):
    """Nothing uses the old revision any more: no tag, no namespace label, no workload's pods."""
    upgrade, state = ctx.upgrade, ctx.state
    old = upgrade.from_revision
    if not old or old == upgrade.to_revision or not upgrade.from_installed:
        return None
    bits = []
    if not upgrade.tag_on_target:
        bits.append("Tag %s points at %s, not %s (run the 'tag' phase)." % (
            upgrade.tag, upgrade.tag_revision or 'nothing', upgrade.to_revision))
    tags = sorted(t.name for t in state.tags.values() if t.revision == old)
    if tags:
        bits.append('Tags on it: %s.' % ', '.join(tags))
    pinned = sorted(ns.name for ns in state.namespaces.values() if ns.via == 'revision' and ns.revision == old)
    if pinned:
        bits.append('Namespaces pinned to it: %s (label them istio.io/rev=%s).' % (', '.join(pinned), upgrade.tag))
    users = on_revision(state, old)
    if users:
        bits.append('Workloads still on it: %s (run the remaining waves: --tags waves).' % ', '.join(users))
    unmovable = state.stale_unmovable(old)
    if unmovable:
        bits.append('Pods no restart moves are still on it; restart or delete them by hand: %s.'
                    % ', '.join(unmovable))
    if not bits:
        return None
    return 'Cleanup refuses to remove revision %s%s: it is still in use. %s' % (
        old, ctx.request.on_cluster, ' '.join(bits))


@guard('install-method-matches')
def _install_method(ctx):
    """A revision is removed by the method that installed it (never mixed), and a Helm release of the old
    revision renders no tag any more (helm uninstall would delete it)."""
    upgrade, state = ctx.upgrade, ctx.state
    rev = state.revisions.get(upgrade.from_revision) if upgrade.from_revision else None
    if rev is None or upgrade.from_revision == upgrade.to_revision:
        return None
    asked = ctx.request.install_method
    if asked and asked != rev.install_method:
        return ('Cleanup refuses to remove revision %s with %s: it was installed by %s%s; mixing methods leaves '
                'part of it behind. Set istio_canary_install_method: %s (or leave it empty). Nothing was changed.'
                % (rev.name, asked, rev.install_method,
                   ' (Helm release %s)' % rev.helm_release if rev.helm_release else '', rev.install_method))
    rendered = sorted(t.name for t in state.tags.values() if rev.helm_release and t.helm_release == rev.helm_release)
    if rendered:
        return ('Cleanup refuses to remove revision %s: its Helm release %s still renders revision tag %s, which '
                'helm uninstall would delete. Run the tag phase (--tags tag) to hand the tag over first.'
                % (rev.name, rev.helm_release, ', '.join(rendered)))
    return None


@guard('rolled-back')
def _rolled_back(ctx):
    """After a rollback, everything moved is back on the old revision and version."""
    upgrade = ctx.upgrade
    namespaces = set(ctx.record_public.get('moved_namespaces') or [])
    for workload in ctx.state.workloads:
        if upgrade.to_revision in workload.revisions:
            namespaces.add(workload.namespace)
    problems = off_revision(ctx.state, upgrade.from_revision, upgrade.from_version, namespaces,
                            [workload_id(g['namespace'], g.get('kind'), g['name']) for g in ctx.request.gateways])
    if problems:
        return 'Rollback incomplete%s: %s' % (ctx.request.on_cluster, '; '.join(problems))
    return None


# --- the phases ---------------------------------------------------------------------------------------

class PhaseSpec:
    """One phase: its guards, what it changes, its effect on the model (for the check-mode plan).

    ``plan(ctx)`` returns a dict with any of ``objects``, ``workloads``, ``restarts``, ``tag_change``,
    ``remove``, ``findings``, ``migrate``, ``verify``; ``project(ctx)`` applies the phase's effect to
    ``ctx.state`` (the record is updated by the planner from ``record_update``)."""

    def __init__(self, kind, order, guards, plan=None, project=None, record_update=None, after_guards=(),
                 label=None, changes_mesh=True, writes=True, record_start=None):
        self.kind = kind
        self.order = order
        self.guards = list(guards)
        self.after_guards = list(after_guards)
        self._plan = plan
        self._project = project
        self._record_update = record_update
        # what the phase records before it changes the mesh (a rollback: that it started), or nothing
        self._record_start = record_start
        self.label = label or 'The %s phase' % kind
        self.changes_mesh = changes_mesh
        # the phase writes to the cluster (the record at least) outside check mode: it takes the lease
        self.writes = writes

    def plan(self, ctx):
        return self._plan(ctx) if self._plan else {}

    def project(self, ctx, planned):
        if self._project:
            self._project(ctx, planned)

    def record_update(self, ctx, planned):
        if self._record_update:
            return self._record_update(ctx, planned)
        return {'phase': self.kind}

    def record_start(self, ctx, planned):
        return self._record_start(ctx, planned) if self._record_start else {}


PHASES = collections.OrderedDict()


def register_phase(spec):
    PHASES[spec.kind] = spec
    return spec


def phase_spec(phase):
    kind, _index = split_phase(phase)
    if kind not in PHASES:
        raise InvalidInput('unknown phase %r (phases: %s, wave1 .. wave%d)'
                           % (phase, ', '.join(k for k in PHASES if k != 'wave'), MAX_WAVES))
    return PHASES[kind]


def restart_changes(state, workloads, revision=None):
    """What restarting ``workloads`` (only the stale ones, as rollout_restart with only_stale) changes:
    each workload to restart with its old and new revision and version, or skipped and why."""
    changes = []
    for workload in workloads:
        expected = workload.expected_revision
        if revision and expected is not None:
            expected = revision
        reason = mesh.stale_reason(workload, expected)
        if not reason:
            continue
        rev = state.revisions.get(expected) if expected else None
        changes.append({
            'namespace': workload.namespace, 'kind': workload.kind, 'name': workload.name,
            'id': workload_id(workload.namespace, workload.kind, workload.name),
            'action': 'restart' if expected is not None else 'skip',
            'from_revision': ','.join(workload.revisions) or None,
            'from_version': ','.join(workload.versions) or None,
            'to_revision': expected, 'to_version': rev.version if rev is not None else None,
            'reason': reason if expected is not None else
            'pods are injected but %s; not restarted' % (workload.selected_by or 'nothing selects injection'),
        })
    return changes


def _plan_precheck(ctx):
    findings = ctx.state.label_findings(ctx.request.tag, ctx.upgrade.from_revision, ctx.upgrade.to_revision)
    migrate = [f['namespace'] for f in findings if f['migrate']] if ctx.request.migrate_legacy_labels else []
    objects = [object_change('Namespace', None, ns, 'update', 'labels %s -> %s' % (
        _labels_text(ctx.state.namespaces[ns].labels), _labels_text(ctx.state.migrated_labels(ns, ctx.request.tag))))
        for ns in migrate]
    return {'findings': findings, 'migrate': migrate, 'objects': objects}


def _labels_text(labels):
    return ','.join('%s=%s' % (k, labels[k]) for k in sorted(labels) if k in (mesh.INJECTION_LABEL, mesh.REV_LABEL)) \
        or 'none'


def _project_precheck(ctx, planned):
    for ns in planned.get('migrate') or []:
        ctx.state.project_namespace_labels(ns, ctx.state.migrated_labels(ns, ctx.request.tag))


def _plan_install(ctx):
    return {'objects': ctx.manager.install_changes(ctx)}


def _project_install(ctx, planned):
    if not (ctx.upgrade.to_installed and ctx.upgrade.to_ready):
        ctx.manager.project_install(ctx)


def _plan_tag(ctx):
    objects = ctx.manager.tag_changes(ctx, ctx.request.tag, ctx.upgrade.to_revision)
    return {'objects': objects, 'tag_change': {'tag': ctx.request.tag, 'revision': ctx.upgrade.to_revision}}


def _project_tag(ctx, planned):
    ctx.manager.project_tag(ctx, ctx.request.tag, ctx.upgrade.to_revision)


def _record_tag(ctx, planned):
    moves = not ctx.upgrade.tag_on_target
    return {'phase': 'tag', 'forget_phases': ['rollback', 'cleanup'] if moves else []}


def _gateway_workloads(ctx):
    found = []
    for gateway in ctx.request.gateways:
        workload = ctx.workload(gateway['namespace'], gateway.get('kind') or 'Deployment', gateway['name'])
        if workload is not None:
            found.append(workload)
    return found


def _plan_gateways(ctx, revision=None):
    revision = revision or ctx.upgrade.to_revision
    restarts = [{'namespaces': [g['namespace']], 'namespace_selector': None, 'names': [g['name']],
                 'kinds': [g.get('kind') or 'Deployment'], 'revision': revision} for g in ctx.request.gateways]
    return {'workloads': restart_changes(ctx.state, _gateway_workloads(ctx), revision), 'restarts': restarts}


def _project_restarts(ctx, planned):
    wanted = set(w['id'] for w in planned.get('workloads') or [] if w['action'] == 'restart')
    for workload in ctx.state.workloads:
        if workload_id(workload.namespace, workload.kind, workload.name) in wanted:
            revision = next(w['to_revision'] for w in planned['workloads']
                            if w['id'] == workload_id(workload.namespace, workload.kind, workload.name))
            ctx.state.project_restart(workload, revision)


def wave_workloads(ctx):
    """The workloads a wave covers (every kind rollout_restart restarts) and the restart calls."""
    wave, state = ctx.wave, ctx.state
    revision = ctx.upgrade.to_revision
    if wave.get('namespaces'):
        namespaces = sorted(set(wave['namespaces']))
        workloads = [w for w in state.workloads if w.namespace in namespaces]
        return workloads, [{'namespaces': namespaces, 'namespace_selector': None, 'names': None, 'kinds': None,
                            'revision': revision}]
    if wave.get('namespace_selector'):
        selector = mesh.parse_label_selector(wave['namespace_selector'])
        namespaces = sorted(ns.name for ns in state.namespaces.values() if mesh.selector_matches(selector, ns.labels))
        workloads = [w for w in state.workloads if w.namespace in namespaces]
        return workloads, [{'namespaces': None, 'namespace_selector': wave['namespace_selector'], 'names': None,
                            'kinds': None, 'revision': revision}]
    selected = ctx.selected_workloads(wave['query'])
    by_ns = {}
    for item in selected:
        by_ns.setdefault(item['namespace'], set()).add(item['name'])
    workloads = [w for w in state.workloads if w.name in by_ns.get(w.namespace, ())]
    calls = [{'namespaces': [ns], 'namespace_selector': None, 'names': sorted(names), 'kinds': None,
              'revision': revision} for ns, names in sorted(by_ns.items())]
    return workloads, calls


def _plan_wave(ctx):
    workloads, calls = wave_workloads(ctx)
    namespaces = sorted(set(w.namespace for w in workloads) |
                        set(n for c in calls for n in (c['namespaces'] or [])))
    return {'workloads': restart_changes(ctx.state, workloads, ctx.upgrade.to_revision), 'restarts': calls,
            'wave': {'name': ctx.wave['name'], 'namespaces': namespaces}}


def _record_wave(ctx, planned):
    wave = planned.get('wave') or {}
    ids = sorted(w['id'] for w in planned.get('workloads') or [] if w['action'] == 'restart')
    return {'wave': {'name': wave.get('name'), 'namespaces': wave.get('namespaces') or [], 'workloads': ids,
                     'status': 'done'}}


def verify_scope(ctx):
    """What verify checks, from the record: every workload recorded by a started wave; for waves chosen by
    ``namespaces`` or ``namespace_selector`` every workload of their namespaces too (one created since);
    the gateways once the gateways phase is recorded."""
    definitions = dict((w.get('name'), w) for w in ctx.request.waves if isinstance(w, dict))
    namespaces, ids = set(), set()
    for name, wave in (ctx.record.get('waves') or {}).items():
        ids.update(wave.get('workloads') or [])
        if not (definitions.get(name) or {}).get('query'):
            namespaces.update(wave.get('namespaces') or [])
    if 'gateways' in (ctx.record.get('phases') or {}):
        ids.update(workload_id(g['namespace'], g.get('kind'), g['name']) for g in ctx.request.gateways)
    return {'namespaces': sorted(namespaces), 'ids': sorted(ids)}


def gate_scope(ctx):
    """What the metric gate checks: namespaces of started waves but gateway-only ones (gateways report as
    source, with no destination metrics); for ``query`` waves ``{namespace: [names]}`` of what they moved;
    ``baseline_at``: when the first wave started."""
    definitions = dict((w.get('name'), w) for w in ctx.request.waves if isinstance(w, dict))
    gateway_namespaces = set(g['namespace'] for g in ctx.request.gateways)
    namespaces, started, by_query = set(), [], {}
    for name, wave in (ctx.record.get('waves') or {}).items():
        namespaces.update(wave.get('namespaces') or [])
        if wave.get('started'):
            started.append(wave['started'])
        if (definitions.get(name) or {}).get('query'):
            for wid in wave.get('workloads') or []:
                parts = wid.split('/')
                if len(parts) == 3:
                    by_query.setdefault(parts[0], set()).add(parts[2])
    app = sorted(namespaces - gateway_namespaces) or sorted(namespaces)
    workloads = dict((ns, sorted(names)) for ns, names in by_query.items() if ns in app) or None
    return {'namespaces': app, 'workloads': workloads, 'baseline_at': min(started) if started else ''}


def _plan_verify(ctx):
    scope = verify_scope(ctx)
    checked = sorted(set(workload_id(w.namespace, w.kind, w.name) for w in ctx.state.workloads
                         if w.namespace in scope['namespaces']) | set(scope['ids']))
    return {'verify': {'namespaces': scope['namespaces'], 'workloads': checked,
                       'waves': sorted(ctx.record.get('waves') or {}), 'gate': gate_scope(ctx),
                       'unmovable': ctx.state.stale_unmovable(),
                       'far_behind': far_behind(ctx.state, ctx.upgrade.to_version)}}


def _plan_rollback(ctx):
    upgrade = ctx.upgrade
    old = upgrade.from_revision
    if not old or not upgrade.from_installed:
        return {}
    objects = ctx.manager.tag_changes(ctx, ctx.request.tag, old)
    back = ctx.state.copy()
    ctx_back = ctx.derive(back)
    ctx.manager.project_tag(ctx_back, ctx.request.tag, old)
    namespaces = set(ctx.record_public.get('moved_namespaces') or [])
    namespaces.update(w.namespace for w in back.stale())
    namespaces.discard(None)
    namespaces = sorted(n for n in namespaces if n in back.namespaces)
    gateways = _plan_gateways(ctx_back, old)
    gateway_ids = set(w['id'] for w in gateways['workloads'])
    workloads = gateways['workloads'] + [
        w for w in restart_changes(back, [x for x in back.workloads if x.namespace in namespaces], old)
        if w['id'] not in gateway_ids]
    restarts = list(gateways['restarts'])
    if namespaces:
        restarts.append({'namespaces': namespaces, 'namespace_selector': None, 'names': None, 'kinds': None,
                         'revision': old})
    return {'objects': objects, 'workloads': workloads, 'restarts': restarts,
            'tag_change': {'tag': ctx.request.tag, 'revision': old}, 'namespaces': namespaces}


def _project_rollback(ctx, planned):
    if not planned.get('tag_change'):
        return
    ctx.manager.project_tag(ctx, ctx.request.tag, ctx.upgrade.from_revision)
    _project_restarts(ctx, planned)


def _record_rollback(ctx, planned):
    return {'phase': 'rollback', 'forget_phases': ['tag', 'gateways', 'verify'], 'forget_waves': True}


def _record_rollback_start(ctx, planned):
    """Before the tag moves back: the rollback under way, with the revision it goes back to and the namespaces it
    moves back (recording the rollback done removes it; upgrade_state.merge)."""
    if not planned.get('tag_change'):
        return {}
    namespaces = set(planned.get('namespaces') or []) | set(g['namespace'] for g in ctx.request.gateways)
    return {'rollback': {'revision': planned['tag_change']['revision'], 'namespaces': sorted(namespaces)}}


def _plan_cleanup(ctx):
    upgrade = ctx.upgrade
    far = far_behind(ctx.state, upgrade.to_version)
    if not upgrade.from_revision or not upgrade.from_installed:
        return {'far_behind': far}
    return {'objects': ctx.manager.remove_changes(ctx, upgrade.from_revision), 'remove': upgrade.from_revision,
            'far_behind': far}


def _project_cleanup(ctx, planned):
    if planned.get('remove'):
        ctx.manager.project_remove(ctx, planned['remove'])


_PRECHECK_GUARDS = ['one-upgrade-at-a-time', 'old-is-not-new', 'old-revision-known', 'tag-exists',
                    'tag-istiod-alive', 'old-revision-installed', 'version-skew', 'target-version']
_RESTART_GUARDS = ['one-upgrade-at-a-time', 'old-is-not-new', 'target-ready', 'tag-istiod-alive', 'tag-on-target']

register_phase(PhaseSpec('precheck', 10, _PRECHECK_GUARDS, plan=_plan_precheck, project=_project_precheck,
                         changes_mesh=False))
register_phase(PhaseSpec('install', 20, _PRECHECK_GUARDS, plan=_plan_install, project=_project_install))
register_phase(PhaseSpec('tag', 40, ['one-upgrade-at-a-time', 'old-is-not-new', 'old-revision-known', 'tag-exists',
                                     'target-ready', 'old-revision-installed', 'target-version'],
                         plan=_plan_tag, project=_project_tag, record_update=_record_tag))
register_phase(PhaseSpec('gateways', 50, ['gateways-exist'] + _RESTART_GUARDS, plan=_plan_gateways,
                         project=_project_restarts))
register_phase(PhaseSpec('wave', 60, ['wave-namespaces-exist'] + _RESTART_GUARDS, plan=_plan_wave,
                         project=_project_restarts, record_update=_record_wave))
register_phase(PhaseSpec('verify', 70, _RESTART_GUARDS + ['moved-workloads-on-target'], plan=_plan_verify,
                         changes_mesh=False))
register_phase(PhaseSpec('rollback', 80, ['rollback-asked', 'one-upgrade-at-a-time', 'old-is-not-new',
                                          'old-revision-known', 'old-revision-ready'],
                         plan=_plan_rollback, project=_project_rollback, record_update=_record_rollback,
                         record_start=_record_rollback_start,
                         after_guards=['rolled-back'], label='Rollback'))
register_phase(PhaseSpec('cleanup', 90, ['one-upgrade-at-a-time', 'old-is-not-new', 'old-revision-known',
                                         'old-revision-unused', 'install-method-matches'],
                         plan=_plan_cleanup, project=_project_cleanup, label='Cleanup'))

# The phases that carry the upgrade forward refuse while a rollback is under way (started, not finished).
for _kind in ('tag', 'gateways', 'wave', 'verify', 'cleanup'):
    PHASES[_kind].guards.insert(0, 'rollback-finished')


# --- shared views of workloads ------------------------------------------------------------------------

def off_revision(state, revision, version, namespaces=(), ids=()):
    """Workloads of ``namespaces`` and ``ids`` that are not ready or whose proxies are not all on
    ``revision`` (and ``version``), each as ``namespace/Kind/name: why``.  Workloads nothing selects for
    injection and without sidecar are not part of the mesh; listed ids that no longer exist are ignored."""
    namespaces, ids = set(namespaces or ()), set(ids or ())
    problems = []
    for workload in state.workloads:
        wid = workload_id(workload.namespace, workload.kind, workload.name)
        if workload.namespace not in namespaces and wid not in ids:
            continue
        if workload.expected_revision is None and not workload.revisions:
            continue
        why = []
        if workload.revisions != [revision] and not (not workload.revisions and workload.replicas == 0):
            why.append('proxy revision %s, expected %s' % (','.join(workload.revisions) or 'none (no injected pod)',
                                                           revision))
        elif version and workload.versions and workload.versions != [str(version).lstrip('v')]:
            why.append('proxy version %s, expected %s' % (','.join(workload.versions), version))
        if workload.needs_restart and not why:
            why.append('pods not all on the expected revision yet')
        if not workload.ready:
            why.append('not ready')
        if why:
            problems.append('%s: %s' % (wid, '; '.join(why)))
    return sorted(problems)


def far_behind(state, version, minors=1):
    """Proxies more than ``minors`` minor versions behind ``version`` (the new control plane; Istio supports
    a proxy one minor behind istiod), workloads and unmovable pods, as ``namespace/Kind/name (1.27.3)``."""
    target = parse_version(version)
    if not target:
        return []

    def behind(proxy_version):
        found = parse_version(proxy_version)
        return bool(found) and (found[0] < target[0] or (found[0] == target[0] and target[1] - found[1] > minors))

    out = ['%s (%s)' % (workload_id(w.namespace, w.kind, w.name), ','.join(w.versions))
           for w in state.workloads if any(behind(v) for v in w.versions)]
    out += ['%s/Pod/%s (%s)' % (p.namespace, p.name, p.version) for p in state.unmovable if behind(p.version)]
    return sorted(out)


def on_revision(state, revision):
    """Workloads whose pods (some or all) still come from ``revision``, as ``namespace/Kind/name (version)``."""
    return sorted('%s (%s)' % (workload_id(w.namespace, w.kind, w.name), ','.join(w.versions) or '?')
                  for w in state.workloads if revision in w.revisions)


def select_workloads(state, query):
    """JMESPath ``query`` over istio_revision_info's workload list: the workloads a query wave moves."""
    try:
        import jmespath
    except ImportError:
        raise InvalidInput('a wave with a query needs the jmespath Python library: pip install jmespath')
    try:
        expression = jmespath.compile(query)
    except jmespath.exceptions.JMESPathError as exc:
        raise InvalidInput('query %r is not a valid JMESPath expression: %s' % (query, exc))
    selected = expression.search(state.to_dict()['workloads'])
    if selected is None:
        selected = []
    if not isinstance(selected, list) or not all(isinstance(w, dict) and w.get('namespace') and w.get('name')
                                                 for w in selected):
        raise InvalidInput('query %r must select workloads (a list of objects with namespace and name), got %r'
                           % (query, selected if not isinstance(selected, list) else selected[:3]))
    return selected


# --- the plan -----------------------------------------------------------------------------------------

class PlanContext:
    """Everything a guard or a phase's plan looks at: the model, the record, the request, the phase."""

    def __init__(self, state, record, request, phase, manager=None):
        self.state = state
        self.record = record
        self.request = request
        self.phase = phase
        self.spec = phase_spec(phase)
        self.kind, self.wave_index = split_phase(phase)
        self.wave = None
        if self.kind == 'wave':
            waves = request.waves
            if self.wave_index > len(waves):
                raise InvalidInput('There is no wave %d: istio_canary_waves has %d wave(s).'
                                   % (self.wave_index, len(waves)))
            self.wave = waves[self.wave_index - 1]
        self.label = 'Wave %s' % self.wave['name'] if self.wave else self.spec.label
        self.manager = manager or manager_for(state, request)
        self.upgrade = Upgrade(state, record, request)
        self.record_public = upgrade_state.public(record, True, request.record_name, request.istio_namespace)
        self._workloads = dict(((w.namespace, w.kind, w.name), w) for w in state.workloads)
        self._queries = {}

    def derive(self, state):
        return PlanContext(state, self.record, self.request, self.phase, self.manager)

    def workload(self, namespace, kind, name):
        return self._workloads.get((namespace, kind, name))

    def selected_workloads(self, query):
        if query not in self._queries:
            self._queries[query] = select_workloads(self.state, query)
        return self._queries[query]

    def record_fields(self):
        upgrade = self.upgrade
        fields = {'tag': self.request.tag, 'to_revision': upgrade.to_revision, 'to_version': upgrade.to_version}
        if upgrade.from_revision and upgrade.from_revision != upgrade.to_revision:
            fields['from_revision'] = upgrade.from_revision
            if upgrade.from_version:
                fields['from_version'] = upgrade.from_version
        return fields


class UpgradePlan:
    """The decisions for one phase; ``to_dict()`` is what the istio_canary_plan module returns."""

    def __init__(self, phase):
        self.phase = phase
        self.kind = split_phase(phase)[0]
        self.label = None
        self.guards = []
        self.planned = {}
        self.upgrade = None
        self.record_update = {}
        self.record_start = {}
        self.record_change = None
        self.assumed = []
        self.simulated = False
        self.check_mode = False
        self.stage = 'before'
        self.manager = None
        self.revisions = {}
        self.record_public = {}
        self.lease = {'needed': False}

    @property
    def allowed(self):
        return all(g['ok'] for g in self.guards)

    @property
    def refusal(self):
        failed = [g['message'] for g in self.guards if not g['ok']]
        return ' '.join(failed) if failed else None

    @classmethod
    def build(cls, state, record, request, phase, assume_done=(), check_mode=False, stage='before',
              record_exists=None, now=None):
        """Plan ``phase`` on ``state`` (a MeshState) and ``record`` (a parsed record).  In check mode the
        phases of ``assume_done`` are applied first, in order, to copies of both; ``stage='after'``
        evaluates the phase's post-conditions (with the phase itself assumed done in check mode)."""
        spec = phase_spec(phase)
        plan = cls(phase)
        plan.check_mode, plan.stage = check_mode, stage
        record = copy.deepcopy(record or upgrade_state.empty_record())
        exists = bool(record.get('to_revision')) if record_exists is None else record_exists
        if check_mode:
            assumed = list(assume_done or ())
            if stage == 'after' and (not assumed or assumed[-1] != phase):
                assumed.append(phase)
            elif stage == 'before' and assumed and assumed[-1] == phase:
                assumed.pop()
            if assumed:
                state = state.copy()
            for done in assumed:
                ctx = PlanContext(state, record, request, done)
                planned = ctx.spec.plan(ctx)
                ctx.spec.project(ctx, planned)
                update = ctx.spec.record_update(ctx, planned)
                try:
                    record = _merged(record, ctx, update, now)
                    exists = True
                except upgrade_state.UpgradeStateError:
                    pass
                if ctx.spec.changes_mesh or (done == 'precheck' and planned.get('migrate')):
                    plan.simulated = True
                plan.assumed.append(done)
        ctx = PlanContext(state, record, request, phase)
        plan.label = ctx.label
        plan.manager = ctx.manager.name
        plan.upgrade = ctx.upgrade
        plan.record_public = upgrade_state.public(record, exists, request.record_name, request.istio_namespace)
        plan.revisions = dict((r.name, {'version': r.version, 'ready': r.ready, 'in_use': r.in_use})
                              for r in state.revisions.values())
        names = (spec.after_guards if stage == 'after' else spec.guards) + ctx.manager.extra_guards(ctx.kind)
        if spec.writes and not check_mode and stage == 'before' and request.lease_holder:
            names = ['lease-free'] + names
            plan.lease = {'needed': True, 'name': request.record_name, 'namespace': request.istio_namespace,
                          'holder': upgrade_state.holder_of(request.lease_holder), 'ttl': request.lease_ttl,
                          'phase': phase, 'break_lease': request.break_lease}
        for name in names:
            result = GUARDS[name].evaluate(ctx)
            plan.guards.append(result)
            if not result['ok'] and GUARDS[name].stop:
                break
        if stage == 'after':
            return plan
        plan.planned = spec.plan(ctx) if plan.allowed else {}
        plan.record_update = spec.record_update(ctx, plan.planned) if plan.allowed else {}
        if plan.record_update:
            plan.record_update = dict(plan.record_update, fields=ctx.record_fields(),
                                      abandon=request.abandon_upgrade)
            plan.record_change = _record_change(record, exists, ctx, plan.record_update, now)
        start = spec.record_start(ctx, plan.planned) if plan.allowed and plan.changes_mesh else {}
        if start:
            plan.record_start = dict(start, fields=ctx.record_fields(), abandon=request.abandon_upgrade)
        return plan

    @property
    def changes_mesh(self):
        """Whether the phase changes the mesh (objects or workloads; the record aside)."""
        objects = [o for o in self.planned.get('objects') or [] if o['action'] != 'wait']
        workloads = [w for w in self.planned.get('workloads') or [] if w['action'] == 'restart']
        return bool(objects or workloads)

    @property
    def changed(self):
        return self.changes_mesh or bool(self.record_change and self.record_change['action'] not in ('none', 'refused'))

    def changes(self):
        """Every object and workload the phase changes, and the record."""
        objects = list(self.planned.get('objects') or [])
        if self.record_change and self.record_change['action'] != 'none':
            objects.append(object_change('ConfigMap', self.record_change['namespace'], self.record_change['name'],
                                         self.record_change['action'], 'upgrade record: %s'
                                         % ', '.join(sorted(self.record_change['set']) +
                                                     ['-%s' % k for k in self.record_change['remove']])))
        return {'objects': objects, 'workloads': list(self.planned.get('workloads') or []),
                'record': self.record_change}

    def moved(self):
        """``namespace/Kind/name: 1.14.6 -> 1.15.4`` for each workload the phase restarts."""
        return sorted('%s: %s -> %s' % (w['id'], w['from_version'] or '?', w['to_version'] or '?')
                      for w in self.planned.get('workloads') or [] if w['action'] == 'restart')

    def report(self):
        """The changes as lines for people: ``create Deployment istio-system/istiod-1-15-4``, ``restart
        bar/Deployment/bar: 1.14.6 -> 1.15.4``."""
        lines = []
        for obj in self.changes()['objects']:
            where = '%s/%s' % (obj['namespace'], obj['name']) if obj['namespace'] else obj['name']
            lines.append('%s %s %s%s' % (obj['action'], obj['kind'], where, ' (%s)' % obj['detail'] if obj['detail'] else ''))
        for workload in self.planned.get('workloads') or []:
            if workload['action'] == 'restart':
                lines.append('restart %s: %s -> %s' % (workload['id'], workload['from_version'] or '?',
                                                       workload['to_version'] or '?'))
            else:
                lines.append('skip %s: %s' % (workload['id'], workload['reason']))
        return lines

    def diff(self):
        """Ansible diffs (one per object, workload and the record) for the check-mode report."""
        out = []
        for obj in self.changes()['objects']:
            where = '%s %s' % (obj['kind'], '%s/%s' % (obj['namespace'], obj['name']) if obj['namespace'] else obj['name'])
            if obj['kind'] == 'ConfigMap' and self.record_change:
                before = ''.join('%s: %s\n' % kv for kv in sorted(self.record_change['before'].items()))
                after = ''.join('%s: %s\n' % kv for kv in sorted(self.record_change['after'].items()))
            else:
                before = '' if obj['action'] == 'create' else '%s\n' % where
                after = '' if obj['action'] == 'delete' else '%s (%s)\n' % (where, obj['detail'] or obj['action'])
            out.append({'before_header': '%s: %s' % (self.phase, where), 'after_header': '%s: %s' % (self.phase, where),
                        'before': before, 'after': after})
        for workload in self.planned.get('workloads') or []:
            if workload['action'] != 'restart':
                continue
            out.append({'before_header': '%s: %s' % (self.phase, workload['id']),
                        'after_header': '%s: %s' % (self.phase, workload['id']),
                        'before': 'proxy %s (%s)\n' % (workload['from_version'], workload['from_revision']),
                        'after': 'proxy %s (%s)\n' % (workload['to_version'], workload['to_revision'])})
        return out

    def to_dict(self):
        upgrade = self.upgrade
        out = {
            'phase': self.phase, 'kind': self.kind, 'label': self.label, 'stage': self.stage,
            'allowed': self.allowed, 'refusal': self.refusal, 'guards': self.guards, 'manager': self.manager,
            'upgrade': upgrade.to_dict() if upgrade else {}, 'revisions': self.revisions,
            'simulated': self.simulated, 'assumed': list(self.assumed),
            'assume_next': (list(self.assumed) + [self.phase]) if self.check_mode and self.stage == 'before' else [],
            'record': self.record_public,
            'lease': self.lease,
            'record_start': _record_update_args(self.record_start) if self.record_start else None,
        }
        if self.stage == 'after':
            return out
        planned = self.planned
        out.update({
            'changes': self.changes(), 'changed': self.changed, 'changes_mesh': self.changes_mesh, 'moved': self.moved(), 'report': self.report(),
            'restarts': planned.get('restarts') or [], 'tag_change': planned.get('tag_change'),
            'remove': planned.get('remove'), 'findings': planned.get('findings') or [],
            'migrate': planned.get('migrate') or [], 'verify': planned.get('verify'),
            'far_behind': planned.get('far_behind') or (planned.get('verify') or {}).get('far_behind') or [],
            'rollback_namespaces': planned.get('namespaces') or [],
            'record_update': _record_update_args(self.record_update),
        })
        return out


def _merged(record, ctx, update, now=None):
    update = dict(update)
    return upgrade_state.merge(record, fields=update.get('fields') or ctx.record_fields(), phase=update.get('phase'),
                               wave=update.get('wave'), forget_phases=update.get('forget_phases'),
                               forget_waves=update.get('forget_waves', False), now=now,
                               abandon=update.get('abandon', ctx.request.abandon_upgrade))


def _record_change(record, exists, ctx, update, now=None):
    before = upgrade_state.render(record) if exists else {}
    try:
        after = upgrade_state.render(_merged(record, ctx, update, now))
    except upgrade_state.UpgradeStateError as exc:
        return {'name': ctx.request.record_name, 'namespace': ctx.request.istio_namespace, 'action': 'refused',
                'reason': str(exc), 'set': {}, 'remove': [], 'before': before, 'after': before}
    changed_keys = dict((k, v) for k, v in after.items() if before.get(k) != v)
    removed = sorted(k for k in before if k not in after)
    action = 'none' if not changed_keys and not removed and exists else ('update' if exists else 'create')
    return {'name': ctx.request.record_name, 'namespace': ctx.request.istio_namespace, 'action': action,
            'set': changed_keys, 'remove': removed, 'before': before, 'after': after}


def _record_update_args(update):
    """The istio_upgrade_state arguments for the phase's record update (every key present)."""
    fields = update.get('fields') or {}
    wave = update.get('wave')
    return {
        'tag': fields.get('tag'), 'from_revision': fields.get('from_revision'),
        'from_version': fields.get('from_version'), 'to_revision': fields.get('to_revision'),
        'to_version': fields.get('to_version'), 'phase': update.get('phase'),
        'wave': dict(wave, status='started', workloads=[]) if wave else None,
        'forget_phases': update.get('forget_phases') or [], 'forget_waves': bool(update.get('forget_waves')),
        'abandon': bool(update.get('abandon')), 'rollback': update.get('rollback'),
    }


# --- results of rollout_restart, for the role's summaries ----------------------------------------------

def summarize_rollouts(results):
    """One or more rollout_restart results (a loop's ``results`` or one result) -> ``moved``
    (``namespace/Kind/name: from -> to``), ``current`` (count), ``failed`` and ``skipped`` (with reasons),
    every ``workloads`` id seen and their ``namespaces``."""
    flat = []

    def expand(item):
        if isinstance(item, dict) and isinstance(item.get('results'), list):
            for sub in item['results']:
                expand(sub)
        elif isinstance(item, dict):
            flat.append(item)
        elif isinstance(item, (list, tuple)):
            for sub in item:
                expand(sub)

    expand(results)
    moved, failed, skipped, seen, namespaces = [], [], [], set(), set()
    current = 0
    for result in flat:
        for workload in result.get('workloads') or []:
            wid = workload_id(workload.get('namespace'), workload.get('kind'), workload.get('name'))
            seen.add(wid)
            namespaces.add(workload.get('namespace'))
            action = workload.get('action')
            if action == 'restarted':
                moved.append('%s: %s -> %s' % (wid, workload.get('from_version') or '?', workload.get('to_version') or '?'))
            elif action == 'current':
                current += 1
            elif action == 'failed':
                failed.append('%s: %s' % (wid, workload.get('reason') or 'failed'))
            elif action == 'skipped':
                skipped.append('%s: %s' % (wid, workload.get('reason') or 'skipped'))
        if result.get('failed') and not result.get('workloads'):
            failed.append(result.get('msg') or 'rollout_restart failed')
    return {'moved': sorted(moved), 'current': current, 'failed': sorted(failed), 'skipped': sorted(skipped),
            'workloads': sorted(seen), 'namespaces': sorted(n for n in namespaces if n)}
