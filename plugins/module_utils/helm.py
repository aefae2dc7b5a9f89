# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helm-installed control planes: the one place that runs helm, and what the upgrade does with releases.

* ``Helm(path, auth_params)`` runs the helm CLI against the cluster the modules talk to (the kubeconfig
  and context of ``istioctl.tool_kubeconfig``, so both tools see the same credentials), parses its JSON
  output and turns failures into ``HelmError``.  Reusable by every chart the collection installs
  (istiod, base, gateway; cni and ztunnel for ambient meshes): ``upgrade`` (``upgrade --install``),
  ``uninstall``, ``release``, ``values``, ``releases``.
* ``ChartRef`` - a chart reference as the operator gives it: a local path, an ``oci://`` reference or a
  chart name in a repository (``--repo URL``); repository and OCI charts are pinned to the Istio version.
* ``HelmRevisions`` - install (release ``istiod-<rev>`` running the wanted version) and remove a revision.
* ``TagHandover`` - after a tag move, the release of the new revision owns the tag (webhook and Service)
  and the old release no longer renders it, so no later ``helm upgrade``/``helm uninstall`` of the old
  release can move or delete it (docs/architecture.md, "Tags on Helm meshes").
* ``HelmManager`` - the planner's control-plane manager for Helm meshes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import re
import shutil
import tempfile

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils import plan
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput, MeshopsError
from ansible_collections.meshops.istio.plugins.module_utils.istioctl import ClusterTool, _clean, _tail

ISTIO_REPO_URL = 'https://istio-release.storage.googleapis.com/charts'
RESOURCE_POLICY = 'helm.sh/resource-policy'
INSTALL_METHODS = ('istioctl', 'helm')
CHART_KEYS = ('base', 'istiod', 'gateway', 'cni', 'ztunnel')
_VERSION_RE = re.compile(r'v?(\d+\.\d+\.\d+[^\s",}]*)')


class HelmError(MeshopsError):
    """helm failed or could not be run."""


class HelmNotFound(HelmError):
    """No helm binary at the given path."""


# --- charts --------------------------------------------------------------------------------------------

class ChartRef:
    """A chart as the operator names it: a local directory or archive, ``oci://...``, or a chart name in
    the repository ``repo_url``.  Local charts serve whatever version their values say (``global.tag``);
    the others are pinned with ``--version``."""

    def __init__(self, ref, repo_url=None):
        if not isinstance(ref, str) or not ref.strip():
            raise InvalidInput('a Helm chart reference must be a non-empty string (a path, oci://... or a chart '
                               'name in istio_canary_helm_repo_url), got %r' % (ref,))
        self.ref = ref.strip()
        self.repo_url = repo_url or ISTIO_REPO_URL
        path = os.path.expanduser(self.ref)
        if self.ref.startswith('oci://'):
            self.kind = 'oci'
        elif os.sep in self.ref or self.ref.startswith('.') or os.path.exists(path):
            self.kind = 'path'
            if not os.path.exists(path):
                raise InvalidInput('Helm chart %s does not exist (a local chart must be a directory or .tgz)'
                                   % self.ref)
            self.ref = os.path.abspath(path)
        else:
            self.kind = 'repo'

    @property
    def local(self):
        return self.kind == 'path'

    def args(self, version=None):
        out = [self.ref]
        if self.kind == 'repo':
            out += ['--repo', self.repo_url]
        if version and not self.local:
            out += ['--version', str(version).lstrip('v')]
        return out

    def __str__(self):
        return self.ref if self.kind != 'repo' else '%s (from %s)' % (self.ref, self.repo_url)


def chart_refs(charts, repo_url=None):
    """``istio_canary_helm_charts`` checked: a dict of CHART_KEYS -> reference (ChartRef built lazily)."""
    if charts is None:
        return {}
    if not isinstance(charts, dict):
        raise InvalidInput('istio_canary_helm_charts must be a dict {base, istiod, gateway, cni, ztunnel}')
    unknown = sorted(set(charts) - set(CHART_KEYS))
    if unknown:
        raise InvalidInput('istio_canary_helm_charts has unknown key(s) %s (known: %s)'
                           % (', '.join(unknown), ', '.join(CHART_KEYS)))
    return dict((key, ChartRef(value, repo_url)) for key, value in charts.items() if value)


def install_values(revision, version, chart, values=None):
    """The values of release ``istiod-<rev>``: the operator's, then ``revision`` (and ``global.tag`` for a
    local chart, which runs whatever tag it is given) and no revision tags (the tag phase hands them over)."""
    merged = json.loads(json.dumps(values or {}))
    if not isinstance(merged, dict):
        raise InvalidInput('istio_canary_helm_values must be a dict of Helm values')
    if merged.get('revision') not in (None, '', revision):
        raise InvalidInput('istio_canary_helm_values sets revision %s but the revision is %s: leave revision out'
                           % (merged['revision'], revision))
    if merged.get('revisionTags'):
        raise InvalidInput('istio_canary_helm_values sets revisionTags: the new release gets its tags in the tag '
                           'phase (the old release hands them over); leave revisionTags out')
    merged['revision'] = revision
    merged['revisionTags'] = []
    if chart.local:
        glob = merged.setdefault('global', {})
        glob.setdefault('tag', str(version).lstrip('v'))
    return merged


# --- the CLI -------------------------------------------------------------------------------------------

class Helm(ClusterTool):
    """One helm binary used against one cluster."""

    name = 'helm'
    path_option = 'helm_path'
    install_hint = 'install Helm (3.8 or later) and set istio_canary_helm (helm_path) to it'
    context_flag = '--kube-context'
    not_found = HelmNotFound

    def version(self):
        """The client version (``4.2.3``); HelmError when it cannot be read."""
        if self._version:
            return self._version
        rc, out, err = self._run(['version'], kube=False)
        match = _VERSION_RE.search(out or '') if rc == 0 else None
        if not match:
            raise HelmError('cannot read the version of helm %s (exit %s): %s' % (
                self.resolve(), rc, _tail(err or out, self._secrets) or 'no output'))
        self._version = match.group(1)
        return self._version

    def releases(self, namespace=None):
        """Every release (``helm list -o json``), in ``namespace`` or in all namespaces."""
        args = ['list', '-o', 'json'] + (['-n', namespace] if namespace else ['-A'])
        return self._json(args, 'list releases') or []

    def release(self, name, namespace):
        """The release ``name`` in ``namespace`` as ``helm list`` shows it, or None."""
        for item in self._json(['list', '-o', 'json', '-n', namespace, '--filter', '^%s$' % re.escape(name)],
                               'list releases') or []:
            if item.get('name') == name:
                return item
        return None

    def values(self, name, namespace, all_values=False):
        """The values of a release (user-supplied, or with ``all_values`` the computed ones)."""
        args = ['get', 'values', name, '-n', namespace, '-o', 'json'] + (['--all'] if all_values else [])
        return self._json(args, 'read the values of release %s' % name) or {}

    def upgrade(self, release, chart, namespace, values=None, version=None, reuse_values=False, set_json=None,
                install=True, wait=True, timeout=300):
        """``helm upgrade [--install] RELEASE CHART -n NS [-f values] [--reuse-values] [--set-json k=v]``."""
        args = ['upgrade', release] + chart.args(version) + ['-n', namespace]
        if install:
            args.append('--install')
        if reuse_values:
            args.append('--reuse-values')
        for key in sorted(set_json or {}):
            args += ['--set-json', '%s=%s' % (key, json.dumps(set_json[key], separators=(',', ':')))]
        if wait:
            args += ['--wait', '--timeout', '%ss' % int(timeout)]
        return self._check(args, 'upgrade release %s' % release, values=values)

    def uninstall(self, release, namespace, wait=True, timeout=300):
        args = ['uninstall', release, '-n', namespace]
        if wait:
            args += ['--wait', '--timeout', '%ss' % int(timeout)]
        return self._check(args, 'uninstall release %s' % release)

    # plumbing ---------------------------------------------------------------------------------------

    def _json(self, args, what):
        out = self._check(args, what)['stdout'].strip()
        if not out or out == 'null':
            return None
        try:
            return json.loads(out)
        except ValueError:
            raise HelmError('helm printed no JSON to %s: %s' % (what, _tail(out, self._secrets)))

    def _check(self, args, what, values=None):
        rc, out, err = self._run_with_values(args, values=values)
        if rc != 0:
            why = _tail(err or out, self._secrets) or 'no output'
            raise HelmError('helm failed to %s (exit %s): %s' % (what, rc, why),
                            details={'command': self.display(args), 'rc': rc,
                                     'stderr': _tail(err, self._secrets, 4000)})
        return {'command': self.display(args + (['-f', '<values>'] if values else [])), 'rc': rc,
                'stdout': _clean(out, self._secrets), 'stderr': _clean(err, self._secrets)}

    def _run_with_values(self, args, values=None):
        """Values go in a private file, never on the command line (they may hold secrets)."""
        if not values:
            return self._run(args)
        tmpdir = tempfile.mkdtemp(prefix='meshops-helm-')
        try:
            path = os.path.join(tmpdir, 'values.json')
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, 'w') as handle:
                json.dump(values, handle)
            return self._run(args, extra=['-f', path])
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)


# --- revisions -----------------------------------------------------------------------------------------

def leftovers(client, revision, namespace, release=None):
    """What is still on the cluster of ``revision`` (every kind a revision owns, mesh.revision_objects), and
    the Helm release record of ``release``: ``Kind namespace/name`` strings, empty when nothing is left."""
    left = []
    for kind, ns, name in mesh.revision_objects(revision, namespace):
        obj = client.get_or_none(kind, name, ns)
        if obj is not None and not (obj.get('metadata') or {}).get('deletionTimestamp'):
            left.append('%s %s' % (kind, '%s/%s' % (ns, name) if ns else name))
    if release:
        for secret in client.list('Secret', namespace, label_selector='owner=helm,name=%s' % release):
            left.append('Secret %s/%s (Helm release record)' % (namespace, secret['metadata']['name']))
    return left


class HelmRevisions:
    """Install and remove revisions as Helm releases ``istiod-<rev>``."""

    def __init__(self, client, helm, namespace, check_mode=False, wait_timeout=300):
        self.client = client
        self.helm = helm
        self.namespace = namespace
        self.check_mode = check_mode
        self.wait_timeout = wait_timeout

    def install(self, revision, version, chart, values=None, release=None):
        """``helm upgrade --install istiod-<rev>``; returns the command info (the caller checks readiness)."""
        release = release or mesh.helm_release_name(revision)
        merged = install_values(revision, version, chart, values)
        if self.check_mode:
            return {'command': self.helm.display(['upgrade', release] + chart.args(version) +
                                                 ['-n', self.namespace, '--install', '-f', '<values>'])}
        return self.helm.upgrade(release, chart, self.namespace, values=merged, version=version,
                                 timeout=self.wait_timeout)

    def uninstall(self, revision, release):
        if self.check_mode:
            return {'command': self.helm.display(['uninstall', release, '-n', self.namespace])}
        return self.helm.uninstall(release, self.namespace, timeout=self.wait_timeout)

    def base_default_revision(self, base_chart, to_revision, version):
        """When a Helm release (istio-base) owns istiod-default-validator and its ``defaultRevision`` is not
        ``to_revision``, upgrade it to (so that a later helm upgrade of it keeps validation on the live
        revision).  Returns the command info or None when nothing had to change."""
        vwc = self.client.get_or_none('ValidatingWebhookConfiguration', mesh.DEFAULT_VALIDATOR)
        owner = mesh.helm_owner(vwc)
        if owner is None:
            return None
        release, release_ns = owner[0], owner[1] or self.namespace
        current = self.helm.values(release, release_ns).get('defaultRevision')
        if current == to_revision:
            return None
        if base_chart is None:
            raise InvalidInput('istiod-default-validator belongs to Helm release %s (defaultRevision %s): set '
                               'istio_canary_helm_charts.base so that it can be moved to %s'
                               % (release, current or '-', to_revision))
        if self.check_mode:
            return {'command': self.helm.display(['upgrade', release] + base_chart.args(version) +
                                                 ['-n', release_ns, '--reuse-values', '--set-json',
                                                  'defaultRevision="%s"' % to_revision])}
        return self.helm.upgrade(release, base_chart, release_ns, version=version, reuse_values=True,
                                 set_json={'defaultRevision': to_revision}, install=False,
                                 timeout=self.wait_timeout)


# --- tags ----------------------------------------------------------------------------------------------

class TagHandover:
    """Hands revision tag ``tag`` from the Helm release that renders it to the release of the revision it
    now points at.  Helm deletes or rewrites whatever the *manifest* of a release holds, whatever the live
    object's ownership says, so the old release must stop rendering the tag: (1) the live tag webhook and
    Service get ``helm.sh/resource-policy: keep`` (so that (2) does not delete them) and the new release's
    ownership metadata; (2) the old release is upgraded with ``--reuse-values`` and ``revisionTags`` without
    the tag; (3) the new release is upgraded with the tag added to its ``revisionTags`` (Helm adopts the
    objects, whose ownership metadata now names it) and renders them for its revision; (4) the keep
    annotation is removed.  A later ``helm upgrade`` of the old release that asks for the tag again fails
    on the ownership check; ``helm uninstall`` of it no longer touches the tag."""

    def __init__(self, client, helm, namespace, chart, check_mode=False, wait_timeout=300):
        self.client = client
        self.helm = helm
        self.namespace = namespace
        self.chart = chart
        self.check_mode = check_mode
        self.wait_timeout = wait_timeout

    def tag_objects(self, tag):
        return [('MutatingWebhookConfiguration', None, mesh.tag_webhook_name(tag, self.namespace)),
                ('Service', self.namespace, mesh.tag_service_name(tag))]

    def needed(self, tag, state, revision):
        """(old release, new release) when the tag must change hands, else None."""
        existing = state.tag(tag)
        rev = state.revision(revision)
        if existing is None or not existing.helm_release or rev is None or not rev.helm_release:
            return None
        if existing.helm_release == rev.helm_release:
            return None
        return existing.helm_release, rev.helm_release

    def hand_over(self, tag, old_release, new_release, old_version, new_version):
        """Returns the changes made (or planned in check mode)."""
        changes = [
            {'kind': 'HelmRelease', 'namespace': self.namespace, 'name': old_release, 'action': 'updated',
             'detail': 'revisionTags without %s' % tag},
            {'kind': 'HelmRelease', 'namespace': self.namespace, 'name': new_release, 'action': 'updated',
             'detail': 'revisionTags with %s (owns the tag webhook and Service)' % tag}]
        if self.check_mode:
            return changes
        if self.chart is None:
            raise InvalidInput('revision tag %s belongs to Helm release %s: set istio_canary_helm_charts.istiod '
                               '(helm_chart) so that it can be handed to %s' % (tag, old_release, new_release))
        present = []
        for kind, ns, name in self.tag_objects(tag):
            obj = self.client.get_or_none(kind, name, ns)
            if obj is None:
                continue
            present.append((kind, ns, name))
            self.client.patch(kind, name, {'metadata': {'annotations': {
                RESOURCE_POLICY: 'keep', mesh.HELM_RELEASE_ANNOTATION: new_release,
                mesh.HELM_NAMESPACE_ANNOTATION: self.namespace}}}, ns)
        old_values = self.helm.values(old_release, self.namespace)
        old_tags = old_values.get('revisionTags') or []
        self.helm.upgrade(old_release, self.chart, self.namespace, version=old_version, reuse_values=True,
                          set_json={'revisionTags': [t for t in old_tags if t != tag]}, install=False,
                          timeout=self.wait_timeout)
        new_tags = self.helm.values(new_release, self.namespace).get('revisionTags') or []
        wanted = {'revisionTags': sorted(set(new_tags) | set([tag]))}
        # the chart renders the auto. webhook of tag default (unlabelled namespaces injected) from this value:
        # the tag keeps it when it changes hands
        if tag == mesh.DEFAULT and ((old_values.get('sidecarInjectorWebhook') or {}).get('enableNamespacesByDefault')):
            wanted['sidecarInjectorWebhook.enableNamespacesByDefault'] = True
        self.helm.upgrade(new_release, self.chart, self.namespace, version=new_version, reuse_values=True,
                          set_json=wanted, install=False, timeout=self.wait_timeout)
        for kind, ns, name in present:
            if self.client.get_or_none(kind, name, ns) is not None:
                self.client.patch(kind, name, {'metadata': {'annotations': {RESOURCE_POLICY: None}}}, ns)
        return changes


# --- the planner's manager -----------------------------------------------------------------------------

def detected_method(state, request):
    """The install method of the mesh: as asked (``install_method``), else that of the old revision (the
    variable, else the tag's), else that of the target when only it is left."""
    asked = getattr(request, 'install_method', None)
    if asked:
        return asked
    for name in (request.from_revision, (state.tag(request.tag) or mesh.RevisionTag(None, None, None)).revision,
                 request.to_revision):
        rev = state.revision(name) if name else None
        if rev is not None:
            return rev.install_method
    return None


class HelmManager(plan.ControlPlaneManager):
    """Revisions as Helm releases ``istiod-<rev>`` (install, tag handover, uninstall)."""

    name = 'helm'

    def detect(self, state, request):
        return detected_method(state, request) == 'helm'

    def install_changes(self, ctx):
        upgrade = ctx.upgrade
        revision, namespace = upgrade.to_revision, ctx.request.istio_namespace
        if upgrade.to_installed and upgrade.to_ready:
            return []
        if upgrade.to_installed:
            return [plan.object_change('Deployment', namespace, mesh.istiod_name(revision), 'wait',
                                       'istiod-%s exists but is not ready: waited for' % revision)]
        release = mesh.helm_release_name(revision)
        detail = 'helm upgrade --install %s (revision %s, Istio %s)' % (release, revision, upgrade.to_version)
        return [plan.object_change('HelmRelease', namespace, release, 'create', detail),
                plan.object_change('Deployment', namespace, mesh.istiod_name(revision), 'create', detail),
                plan.object_change('Service', namespace, mesh.istiod_name(revision), 'create', detail),
                plan.object_change('MutatingWebhookConfiguration', None,
                                   mesh.injector_name(revision, namespace), 'create', detail),
                plan.object_change('ValidatingWebhookConfiguration', None,
                                   mesh.revision_validator_name(revision, namespace), 'create', detail)]

    def tag_changes(self, ctx, tag, revision):
        changes = plan.ControlPlaneManager.tag_changes(self, ctx, tag, revision)
        existing = ctx.state.tag(tag)
        rev = ctx.state.revision(revision)
        new_release = rev.helm_release if rev is not None else mesh.helm_release_name(revision)
        if existing is not None and existing.helm_release and existing.helm_release != new_release:
            changes.append(plan.object_change('HelmRelease', ctx.request.istio_namespace, existing.helm_release,
                                              'update', 'revisionTags without %s' % tag))
            changes.append(plan.object_change('HelmRelease', ctx.request.istio_namespace, new_release, 'update',
                                              'revisionTags with %s: the tag changes hands' % tag))
        return changes

    def remove_changes(self, ctx, revision):
        state, namespace = ctx.state, ctx.request.istio_namespace
        rev = state.revisions.get(revision)
        release = rev.helm_release if rev is not None and rev.helm_release else mesh.helm_release_name(revision)
        detail = 'helm uninstall %s' % release
        changes = [plan.object_change('HelmRelease', namespace, release, 'delete', detail)]
        for kind, ns, name in mesh.revision_objects(revision, namespace):
            if kind == 'Deployment' and rev is None:
                continue
            if kind == 'MutatingWebhookConfiguration' and revision not in state.injectors:
                continue
            if kind == 'ValidatingWebhookConfiguration' and revision not in state.revision_validators:
                continue
            if kind in ('Deployment', 'Service', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'):
                changes.append(plan.object_change(kind, ns, name, 'delete', detail))
        if state.validator is not None and mesh.helm_owner(state.validator):
            changes.append(plan.object_change('HelmRelease', namespace, mesh.helm_owner(state.validator)[0],
                                              'update', 'defaultRevision -> %s' % ctx.upgrade.to_revision))
        return changes

    def project_tag(self, ctx, tag, revision):
        plan.ControlPlaneManager.project_tag(self, ctx, tag, revision)
        rev = ctx.state.revision(revision)
        if rev is not None and rev.helm_release:
            ctx.state.tags[tag].helm_release = rev.helm_release

    def project_install(self, ctx):
        plan.ControlPlaneManager.project_install(self, ctx)
        ctx.state.revisions[ctx.request.to_revision].helm_release = mesh.helm_release_name(ctx.request.to_revision)


plan.register_manager(HelmManager())
