# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Istio's revision / tag model: the one place that knows it.

* revision names (DNS-1123 labels; ``1.15.4`` is refused with "use 1-15-4");
* revisions: istiod Deployments labelled ``app=istiod`` in the Istio namespace; the revision is the
  ``istio.io/rev`` label (``default`` for a revision-less istiod), the version the
  ``operator.istio.io/version`` label or the ``discovery`` image tag;
* tags: MutatingWebhookConfigurations labelled ``istio.io/tag`` (``istio-revision-tag-<tag>``) whose
  ``istio.io/rev`` label names the revision;
* which revision a namespace selects, with the precedence Istio's webhooks apply: a namespace labelled
  ``istio-injection`` is selected by that label only (``enabled`` means the ``default`` tag or the
  revision-less install, any other value means no injection) and its ``istio.io/rev`` is ignored;
  otherwise ``istio.io/rev`` names a tag or a revision; otherwise pods may opt in by their own labels;
* workloads (Deployments, StatefulSets, DaemonSets; OpenShift DeploymentConfigs and Argo Rollouts where
  served), the revision and proxy version of their pods
  (``sidecar.istio.io/status`` annotation and the ``istio-proxy`` image), and which need a restart;
* whether a revision is in use and by what (``in_use_by``);
* the tag webhooks istioctl generates (``istio-revision-tag-<tag>``, ``istiod-default-validator``) and
  how it deactivates a revision-less injector.

Everything here is pure except ``MeshState.load`` (which reads through a ClusterClient), so the model
is unit-testable from plain dicts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import json
import re

from ansible_collections.meshops.istio.plugins.module_utils.args import validate_dns1123_label
from ansible_collections.meshops.istio.plugins.module_utils.errors import AuthenticationFailed, InvalidInput, NotFound

ISTIO_NAMESPACE = 'istio-system'
DEFAULT = 'default'
REV_LABEL = 'istio.io/rev'
TAG_LABEL = 'istio.io/tag'
INJECTION_LABEL = 'istio-injection'
INJECT_LABEL = 'sidecar.istio.io/inject'
STATUS_ANNOTATION = 'sidecar.istio.io/status'
VERSION_LABEL = 'operator.istio.io/version'
DEFAULT_VALIDATOR = 'istiod-default-validator'
LEGACY_INJECTOR = 'istio-sidecar-injector'
PROXY_CONTAINER = 'istio-proxy'
NEVER_MATCH = {'matchLabels': {'istio.io/deactivated': 'never-match'}}
WORKLOAD_KINDS = ('Deployment', 'StatefulSet', 'DaemonSet')
# Workload kinds of platforms that add them: OpenShift's apps.openshift.io/v1 DeploymentConfig and Argo
# Rollouts' argoproj.io/v1alpha1 Rollout.  Read and restarted where the API server serves them.
PLATFORM_WORKLOAD_KINDS = ('DeploymentConfig', 'Rollout')
ALL_WORKLOAD_KINDS = WORKLOAD_KINDS + PLATFORM_WORKLOAD_KINDS
# Pod -> workload through a ReplicaSet (Deployment: pod-template-hash; Argo Rollout: rollouts-pod-template-hash)
# or a ReplicationController (OpenShift DeploymentConfig: the pod's deployment-config.name annotation;
# its deployer pod, labelled deployer-pod-for.name, belongs to no workload).
ROLLOUT_HASH_LABEL = 'rollouts-pod-template-hash'
DC_NAME_ANNOTATION = 'openshift.io/deployment-config.name'
DEPLOYER_POD_LABEL = 'openshift.io/deployer-pod-for.name'

_VERSION_RE = re.compile(r'^v?(\d+)\.(\d+)\.(\d+)(?:[-+.].*)?$')


# --- names -----------------------------------------------------------------------------------------

def parse_version_text(version):
    """``1.29.6`` (or ``v1.29.6-distroless``) -> (1, 29, 6); None when it is no Istio version."""
    match = _VERSION_RE.match(str(version or ''))
    return tuple(int(x) for x in match.groups()) if match else None


def validate_revision_name(name, what='revision'):
    """A revision (or tag) name must be a DNS-1123 label; ``1.15.4`` -> 'use "1-15-4"'."""
    if isinstance(name, str) and _VERSION_RE.match(name) and '.' in name:
        fixed = re.sub(r'[^a-z0-9-]+', '-', name.lower()).strip('-')
        raise InvalidInput('%s %r is not a valid revision name: revision names are DNS labels, so '
                           'dots are not allowed; use %r' % (what, name, fixed),
                           details={what: name, 'suggestion': fixed})
    return validate_dns1123_label(name, what)


def istiod_name(revision):
    return 'istiod' if revision in (None, '', DEFAULT) else 'istiod-%s' % revision


def _ns_suffix(istio_namespace):
    """Istio's charts (1.2x) suffix cluster-scoped names with the control plane's namespace outside
    istio-system (``istio-sidecar-injector-<rev>-<ns>``, ``istio-revision-tag-<tag>-<ns>``)."""
    return '' if istio_namespace in (None, '', ISTIO_NAMESPACE) else '-%s' % istio_namespace


def injector_name(revision, istio_namespace=ISTIO_NAMESPACE):
    if revision in (None, '', DEFAULT):
        return LEGACY_INJECTOR + _ns_suffix(istio_namespace)
    return '%s-%s%s' % (LEGACY_INJECTOR, revision, _ns_suffix(istio_namespace))


def tag_webhook_name(tag, istio_namespace=ISTIO_NAMESPACE):
    return 'istio-revision-tag-%s%s' % (tag, _ns_suffix(istio_namespace))


def tag_service_name(tag):
    """The Service a revision tag has from Istio 1.28 (istioctl tag set, the chart's revision-tags-svc.yaml)."""
    return 'istiod-revision-tag-%s' % tag


def helm_release_name(revision):
    """The Helm release of a revision installed by this collection (Istio's Helm guide names it so)."""
    return 'istiod' if revision in (None, '', DEFAULT) else 'istiod-%s' % revision


HELM_RELEASE_ANNOTATION = 'meta.helm.sh/release-name'
HELM_NAMESPACE_ANNOTATION = 'meta.helm.sh/release-namespace'
MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'


def helm_owner(obj):
    """(release, namespace) of the Helm release that owns ``obj`` (Helm's ownership metadata), or None."""
    if not obj:
        return None
    # an operator that renders charts with Helm's library (Sail) leaves Helm's metadata on what it owns: those
    # objects belong to the operator (their ownerReferences), not to a release anyone runs helm on
    if any(str(ref.get('apiVersion') or '').startswith('sailoperator.io/') for ref in _meta(obj).get('ownerReferences') or []):
        return None
    annotations = _annotations(obj)
    release = annotations.get(HELM_RELEASE_ANNOTATION)
    if not release or _labels(obj).get(MANAGED_BY_LABEL) != 'Helm':
        return None
    return release, annotations.get(HELM_NAMESPACE_ANNOTATION)


def revision_objects(revision, istio_namespace=ISTIO_NAMESPACE):
    """Every object a revision owns by name, as Istio's istiod chart and istioctl name them: (kind,
    namespace or None, name).  Cleanup checks that none is left, whichever way the revision was installed."""
    ns = istio_namespace
    istiod = istiod_name(revision)
    suffix = '' if revision in (None, '', DEFAULT) else '-%s' % revision
    objects = [('Deployment', ns, istiod), ('Service', ns, istiod), ('ServiceAccount', ns, istiod),
               ('Role', ns, istiod), ('RoleBinding', ns, istiod), ('HorizontalPodAutoscaler', ns, istiod),
               ('PodDisruptionBudget', ns, istiod), ('NetworkPolicy', ns, istiod),
               ('ConfigMap', ns, 'istio%s' % suffix), ('ConfigMap', ns, 'istio-sidecar-injector%s' % suffix),
               ('ConfigMap', ns, 'values%s' % suffix),
               ('MutatingWebhookConfiguration', None, injector_name(revision, ns)),
               ('ValidatingWebhookConfiguration', None, revision_validator_name(revision, ns))]
    for role in ('istiod-clusterrole', 'istiod-gateway-controller', 'istio-reader-clusterrole'):
        name = '%s%s-%s' % (role, suffix, ns)
        objects += [('ClusterRole', None, name), ('ClusterRoleBinding', None, name)]
    return objects


def revision_validator_name(revision, istio_namespace=ISTIO_NAMESPACE):
    """The revision's own ValidatingWebhookConfiguration, as Istio's istiod chart names it."""
    if revision in (None, '', DEFAULT):
        return 'istio-validator-%s' % istio_namespace
    return 'istio-validator-%s-%s' % (revision, istio_namespace)


def image_tag(image):
    """``docker.io/istio/proxyv2:1.14.6`` -> ``1.14.6``; None without a tag."""
    if not image:
        return None
    name = image.split('@', 1)[0]
    last = name.rsplit('/', 1)[-1]
    if ':' in last:
        return last.rsplit(':', 1)[1]
    return None


def version_of_image(image):
    """Istio version from an image tag, without variant suffixes (``1.15.4-distroless`` -> 1.15.4)."""
    tag = image_tag(image)
    if not tag:
        return None
    for suffix in ('-distroless', '-debug'):
        if tag.endswith(suffix):
            tag = tag[:-len(suffix)]
    return tag


def _meta(obj):
    return (obj or {}).get('metadata') or {}


def _labels(obj):
    return _meta(obj).get('labels') or {}


def _annotations(obj):
    return _meta(obj).get('annotations') or {}


# --- label selectors -------------------------------------------------------------------------------

def selector_matches(selector, labels):
    """Kubernetes LabelSelector semantics (None/{} selects everything)."""
    labels = labels or {}
    if not selector:
        return True
    for key, value in (selector.get('matchLabels') or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if op == 'In' and labels.get(key) not in values:
            return False
        if op == 'NotIn' and key in labels and labels[key] in values:
            return False
        if op == 'Exists' and key not in labels:
            return False
        if op == 'DoesNotExist' and key in labels:
            return False
    return True


def parse_label_selector(text):
    """A label selector string as kubectl and the API take it (``a=b,c!=d,e in (f,g),h,!i``) -> a
    LabelSelector dict for selector_matches; InvalidInput when it cannot be one."""
    requirements, depth, current = [], 0, ''
    for char in str(text or ''):
        depth += {'(': 1, ')': -1}.get(char, 0)
        if char == ',' and depth == 0:
            requirements.append(current)
            current = ''
        else:
            current += char
    requirements.append(current)
    match_labels, expressions = {}, []
    for raw in requirements:
        part = raw.strip()
        if not part:
            raise InvalidInput('label selector %r has an empty requirement' % text)
        set_match = re.match(r'^([^\s!=()]+)\s+(in|notin)\s*\(([^()]*)\)$', part)
        if set_match:
            values = [v.strip() for v in set_match.group(3).split(',') if v.strip()]
            expressions.append({'key': set_match.group(1),
                                'operator': 'In' if set_match.group(2) == 'in' else 'NotIn',
                                'values': values})
        elif '!=' in part:
            key, value = [x.strip() for x in part.split('!=', 1)]
            expressions.append({'key': key, 'operator': 'NotIn', 'values': [value]})
        elif '=' in part:
            key, value = [x.strip() for x in part.replace('==', '=').split('=', 1)]
            match_labels[key] = value
        elif part.startswith('!'):
            expressions.append({'key': part[1:].strip(), 'operator': 'DoesNotExist'})
        elif re.match(r'^[^\s!=()]+$', part):
            expressions.append({'key': part, 'operator': 'Exists'})
        else:
            raise InvalidInput('label selector %r: cannot read %r (use key=value, key!=value, '
                               'key in (a,b), key notin (a,b), key or !key)' % (text, part))
    selector = {}
    if match_labels:
        selector['matchLabels'] = match_labels
    if expressions:
        selector['matchExpressions'] = expressions
    return selector


# --- the model -------------------------------------------------------------------------------------

class Revision:
    """One control plane revision: istiod-<rev> (or istiod for ``default``)."""

    def __init__(self, name, namespace, deployment=None, version=None, ready=False,
                 replicas=0, ready_replicas=0, image=None, injector=None, service=None, helm_release=None):
        self.name = name
        self.helm_release = helm_release
        self.namespace = namespace
        self.deployment = deployment
        self.version = version
        self.ready = ready
        self.replicas = replicas
        self.ready_replicas = ready_replicas
        self.image = image
        self.injector = injector
        self.service = service
        self.in_use_by = []

    @classmethod
    def from_deployment(cls, deployment):
        meta = _meta(deployment)
        labels = meta.get('labels') or {}
        name = labels.get(REV_LABEL)
        if not name:
            dname = meta.get('name') or ''
            name = dname[len('istiod-'):] if dname.startswith('istiod-') else DEFAULT
        containers = (((deployment.get('spec') or {}).get('template') or {}).get('spec') or {}) \
            .get('containers') or []
        image = None
        for container in containers:
            if container.get('name') == 'discovery':
                image = container.get('image')
        if image is None and containers:
            image = containers[0].get('image')
        version = labels.get(VERSION_LABEL) or version_of_image(image)
        ready, desired, ready_replicas = deployment_ready(deployment)
        owner = helm_owner(deployment)
        return cls(name, meta.get('namespace'), deployment=meta.get('name'), version=version,
                   ready=ready, replicas=desired, ready_replicas=ready_replicas, image=image,
                   helm_release=owner[0] if owner else None)

    @property
    def in_use(self):
        return bool(self.in_use_by)

    @property
    def install_method(self):
        """``helm`` when a Helm release owns istiod, else ``istioctl``."""
        return 'helm' if self.helm_release else 'istioctl'

    def to_dict(self):
        return {
            'name': self.name, 'namespace': self.namespace, 'version': self.version,
            'ready': self.ready, 'replicas': self.replicas, 'ready_replicas': self.ready_replicas,
            'deployment': self.deployment, 'injector': self.injector, 'service': self.service,
            'in_use': self.in_use, 'in_use_by': list(self.in_use_by),
            'install_method': self.install_method, 'helm_release': self.helm_release,
        }


def deployment_ready(deployment):
    """(ready, desired, ready_replicas) judged like ``kubectl rollout status``."""
    spec = deployment.get('spec') or {}
    status = deployment.get('status') or {}
    desired = spec.get('replicas', 1)
    if desired is None:
        desired = 1
    generation = _meta(deployment).get('generation') or 0
    observed = status.get('observedGeneration') or 0
    ready_replicas = status.get('readyReplicas') or 0
    updated = status.get('updatedReplicas') or 0
    available = status.get('availableReplicas') or 0
    total = status.get('replicas') or 0
    ready = (desired > 0 and observed >= generation and updated >= desired and
             ready_replicas >= desired and available >= desired and total <= updated)
    return ready, desired, ready_replicas


class RevisionTag:
    """A revision tag: MWC ``istio-revision-tag-<tag>`` labelled istio.io/tag and istio.io/rev."""

    def __init__(self, name, revision, webhook, services=(), helm_release=None):
        self.name = name
        self.revision = revision
        self.webhook = webhook
        self.services = sorted(set(services))
        self.helm_release = helm_release

    @classmethod
    def from_webhook(cls, mwc):
        labels = _labels(mwc)
        services = []
        for hook in mwc.get('webhooks') or []:
            svc = (hook.get('clientConfig') or {}).get('service') or {}
            if svc.get('name'):
                services.append(svc['name'])
        owner = helm_owner(mwc)
        return cls(labels.get(TAG_LABEL), labels.get(REV_LABEL), _meta(mwc).get('name'), services,
                   owner[0] if owner else None)

    def to_dict(self):
        return {'name': self.name, 'revision': self.revision, 'webhook': self.webhook,
                'services': list(self.services), 'helm_release': self.helm_release}


class NamespaceInjection:
    """Which revision a namespace selects and how.

    ``selected_by``: ``istio-injection`` (label istio-injection=enabled), ``istio.io/rev``, ``disabled``
    (istio-injection set to anything but enabled) or ``none``.  ``selector`` is the label value that
    names a tag/revision (``default`` for istio-injection=enabled); ``revision`` the revision it
    resolves to (None when nothing injects), ``via`` tag|revision|None.
    """

    def __init__(self, name, labels, selected_by, selector=None, revision=None, via=None,
                 warnings=None):
        self.name = name
        self.labels = dict(labels or {})
        self.selected_by = selected_by
        self.selector = selector
        self.revision = revision
        self.via = via
        self.warnings = list(warnings or [])

    @property
    def dangling(self):
        """The labels select a tag or revision that no injector serves."""
        return self.selector is not None and self.revision is None

    def to_dict(self):
        return {'name': self.name, 'labels': dict(self.labels), 'selected_by': self.selected_by,
                'selector': self.selector, 'revision': self.revision, 'via': self.via,
                'dangling': self.dangling, 'warnings': list(self.warnings)}


def namespace_selection(labels):
    """(selected_by, selector, warnings) from a namespace's labels, with Istio's precedence."""
    labels = labels or {}
    injection = labels.get(INJECTION_LABEL)
    rev = labels.get(REV_LABEL)
    warnings = []
    if injection is not None:
        if rev is not None:
            warnings.append('both %s=%s and %s=%s are set: %s wins, %s is ignored; remove one of them'
                            % (INJECTION_LABEL, injection, REV_LABEL, rev, INJECTION_LABEL, REV_LABEL))
        if injection == 'enabled':
            return INJECTION_LABEL, DEFAULT, warnings
        return 'disabled', None, warnings
    if rev is not None:
        return REV_LABEL, rev, warnings
    return 'none', None, warnings


class PodProxy:
    """One pod's sidecar: the revision that injected it and the proxy version."""

    def __init__(self, name, revision=None, version=None, ready=False, phase=None):
        self.name = name
        self.revision = revision
        self.version = version
        self.ready = ready
        self.phase = phase

    @property
    def injected(self):
        return self.revision is not None

    @classmethod
    def from_pod(cls, pod):
        return cls(_meta(pod).get('name'), pod_revision(pod), pod_proxy_version(pod), pod_ready(pod),
                   (pod.get('status') or {}).get('phase'))

    def to_dict(self):
        return {'name': self.name, 'revision': self.revision, 'version': self.version,
                'ready': self.ready, 'phase': self.phase}


def pod_revision(pod):
    """The revision that injected the pod (``sidecar.istio.io/status``), None if not injected."""
    raw = _annotations(pod).get(STATUS_ANNOTATION)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        data = {}
    rev = data.get('revision') if isinstance(data, dict) else None
    return rev or _labels(pod).get(REV_LABEL) or DEFAULT


def pod_proxy_version(pod):
    spec = pod.get('spec') or {}
    for container in (spec.get('containers') or []) + (spec.get('initContainers') or []):
        if container.get('name') == PROXY_CONTAINER:
            return version_of_image(container.get('image'))
    return None


def pod_ready(pod):
    for cond in (pod.get('status') or {}).get('conditions') or []:
        if cond.get('type') == 'Ready':
            return cond.get('status') == 'True'
    return False


def pod_terminated(pod):
    return (pod.get('status') or {}).get('phase') in ('Succeeded', 'Failed') or \
        bool(_meta(pod).get('deletionTimestamp'))


def served_workload_kinds(client, kinds=None):
    """The workload kinds of ``kinds`` (default: all) that the cluster serves: the core ones always, a
    platform's (DeploymentConfig, Rollout) when its API is there.  A client that cannot tell (no
    ``resource`` lookup) gets the core ones."""
    found = []
    for kind in (kinds or ALL_WORKLOAD_KINDS):
        if kind in PLATFORM_WORKLOAD_KINDS:
            lookup = getattr(client, 'resource', None)
            if lookup is None:
                continue
            try:
                lookup(kind)
            except NotFound:
                continue
        found.append(kind)
    return found


def pod_owner(pod):
    """(kind, name) of the workload owning a pod: Deployment (or Argo Rollout) via its ReplicaSet's name and
    the pod-template-hash (rollouts-pod-template-hash), DeploymentConfig via its ReplicationController,
    StatefulSet/DaemonSet directly; None for bare pods and OpenShift's deployer pods."""
    meta = _meta(pod)
    for ref in meta.get('ownerReferences') or []:
        if not ref.get('controller', True):
            continue
        kind, name = ref.get('kind'), ref.get('name') or ''
        labels = meta.get('labels') or {}
        if kind == 'ReplicaSet':
            for label, owner_kind in (('pod-template-hash', 'Deployment'), (ROLLOUT_HASH_LABEL, 'Rollout')):
                digest = labels.get(label)
                if digest and name.endswith('-' + digest):
                    return owner_kind, name[:-len(digest) - 1]
            return 'ReplicaSet', name
        if kind == 'ReplicationController':
            if labels.get(DEPLOYER_POD_LABEL):
                return None
            config = (meta.get('annotations') or {}).get(DC_NAME_ANNOTATION)
            if config:
                return 'DeploymentConfig', config
        return kind, name
    return None


class WorkloadProxy:
    """A Deployment/StatefulSet/DaemonSet and the sidecars of its pods."""

    def __init__(self, namespace, kind, name, labels=None, template_labels=None,
                 template_annotations=None, replicas=None, ready_replicas=0, pods=None):
        self.namespace = namespace
        self.kind = kind
        self.name = name
        self.labels = dict(labels or {})
        self.template_labels = dict(template_labels or {})
        self.template_annotations = dict(template_annotations or {})
        self.replicas = replicas
        self.ready_replicas = ready_replicas
        self.pods = list(pods or [])
        self.expected_revision = None
        self.selected_by = None
        self.reason = None

    @classmethod
    def from_object(cls, obj, pods=()):
        meta = _meta(obj)
        spec = obj.get('spec') or {}
        template = (spec.get('template') or {}).get('metadata') or {}
        status = obj.get('status') or {}
        kind = obj.get('kind')
        if kind == 'DaemonSet':
            replicas = status.get('desiredNumberScheduled') or 0
            ready = status.get('numberReady') or 0
        else:
            replicas = spec.get('replicas', 1)
            ready = status.get('readyReplicas') or 0
        return cls(meta.get('namespace'), kind, meta.get('name'), meta.get('labels'),
                   template.get('labels'), template.get('annotations'), replicas, ready,
                   [PodProxy.from_pod(p) for p in pods])

    @property
    def key(self):
        return (self.namespace, self.kind, self.name)

    @property
    def revisions(self):
        return sorted(set(p.revision for p in self.pods if p.revision))

    @property
    def versions(self):
        return sorted(set(p.version for p in self.pods if p.version))

    @property
    def ready(self):
        return self.replicas is not None and self.ready_replicas >= (self.replicas or 0)

    @property
    def needs_restart(self):
        return self.reason is not None

    def to_dict(self):
        return {
            'namespace': self.namespace, 'kind': self.kind, 'name': self.name,
            'labels': dict(self.labels),
            'revision': self.revisions[0] if len(self.revisions) == 1 else
            (None if not self.revisions else ','.join(self.revisions)),
            'revisions': self.revisions, 'versions': self.versions,
            'expected_revision': self.expected_revision, 'selected_by': self.selected_by,
            'replicas': self.replicas, 'ready_replicas': self.ready_replicas, 'ready': self.ready,
            'pods': [p.to_dict() for p in self.pods],
            'needs_restart': self.needs_restart, 'reason': self.reason,
        }


class UnmovablePod:
    """An injected pod no rollout restart replaces: a bare pod, a Job's (or a CronJob's Job's) pod, a pod of an
    owner the collection does not restart.  Only restarting or deleting it by hand moves it."""

    def __init__(self, namespace, name, owner, revision, version, labels=None, annotations=None):
        self.namespace = namespace
        self.name = name
        self.owner = owner
        self.revision = revision
        self.version = version
        self.template_labels = dict(labels or {})
        self.template_annotations = dict(annotations or {})
        self.expected_revision = None

    @classmethod
    def from_pod(cls, pod, cronjob_of=None):
        meta = _meta(pod)
        owner = pod_owner(pod)
        if owner is None:
            what = 'bare pod'
        elif owner[0] == 'Job' and (cronjob_of or {}).get((meta.get('namespace'), owner[1])):
            what = 'CronJob %s, Job %s' % (cronjob_of[(meta.get('namespace'), owner[1])], owner[1])
        else:
            what = '%s %s' % owner
        return cls(meta.get('namespace'), meta.get('name'), what, pod_revision(pod), pod_proxy_version(pod),
                   meta.get('labels'), meta.get('annotations'))

    def describe(self):
        return '%s/%s (%s, proxy %s)' % (self.namespace, self.name, self.owner, self.version or '?')

    def to_dict(self):
        return {'namespace': self.namespace, 'name': self.name, 'owner': self.owner, 'revision': self.revision,
                'version': self.version, 'expected_revision': self.expected_revision}


class MeshState:
    """Revisions, tags, namespaces and workloads of one cluster, and the relations between them."""

    def __init__(self, istio_namespace=ISTIO_NAMESPACE):
        self.istio_namespace = istio_namespace
        self.revisions = {}
        self.tags = {}
        self.namespaces = {}
        self.workloads = []
        self.injectors = {}          # revision -> MWC name of its own injector
        self.validator = None        # istiod-default-validator VWC (dict) or None
        self.revision_validators = {}  # revision -> name of its own ValidatingWebhookConfiguration
        self.legacy_injector = None  # revision-less istio-sidecar-injector MWC (dict) or None
        self.pods_by_revision = {}   # revision -> [(namespace, name)] of running injected pods
        self.unmovable = []          # injected pods no rollout restart replaces (bare, Job/CronJob, ...)

    # building ----------------------------------------------------------------------------------

    @classmethod
    def from_objects(cls, deployments=(), mutating_webhooks=(), validating_webhooks=(),
                     namespaces=(), workloads=(), pods=(), services=(),
                     istio_namespace=ISTIO_NAMESPACE, jobs=()):
        """Build the model from plain objects (what the API lists)."""
        state = cls(istio_namespace)
        service_names = set(_meta(s).get('name') for s in services
                            if _meta(s).get('namespace') == istio_namespace)
        for dep in deployments:
            meta = _meta(dep)
            if meta.get('namespace') != istio_namespace or _labels(dep).get('app') != 'istiod':
                continue
            rev = Revision.from_deployment(dep)
            svc = istiod_name(rev.name)
            rev.service = svc if svc in service_names else None
            state.revisions[rev.name] = rev
        for mwc in mutating_webhooks:
            labels = _labels(mwc)
            name = _meta(mwc).get('name')
            if labels.get(TAG_LABEL):
                tag = RevisionTag.from_webhook(mwc)
                state.tags[tag.name] = tag
            elif labels.get(REV_LABEL) and labels.get('app') == 'sidecar-injector':
                state.injectors[labels[REV_LABEL]] = name
                if name == LEGACY_INJECTOR:
                    state.legacy_injector = mwc
        for rev in state.revisions.values():
            rev.injector = state.injectors.get(rev.name)
        for vwc in validating_webhooks:
            if _meta(vwc).get('name') == DEFAULT_VALIDATOR:
                state.validator = vwc
            elif _labels(vwc).get(REV_LABEL):
                state.revision_validators[_labels(vwc)[REV_LABEL]] = _meta(vwc).get('name')
        for ns in namespaces:
            state._add_namespace(ns)
        pods_by_owner = {}
        unmovable = []
        for pod in pods:
            if pod_terminated(pod):
                continue
            meta = _meta(pod)
            rev = pod_revision(pod)
            if rev:
                state.pods_by_revision.setdefault(rev, []).append((meta.get('namespace'),
                                                                   meta.get('name')))
            owner = pod_owner(pod)
            if owner:
                pods_by_owner.setdefault((meta.get('namespace'),) + owner, []).append(pod)
            if rev:
                unmovable.append((pod, owner))
        for obj in workloads:
            meta = _meta(obj)
            key = (meta.get('namespace'), obj.get('kind'), meta.get('name'))
            workload = WorkloadProxy.from_object(obj, pods_by_owner.get(key, ()))
            state._judge(workload)
            state.workloads.append(workload)
        state.workloads.sort(key=lambda w: w.key)
        cronjob_of = dict(((_meta(j).get('namespace'), _meta(j).get('name')), ref.get('name'))
                          for j in jobs for ref in _meta(j).get('ownerReferences') or [] if ref.get('kind') == 'CronJob')
        restarted = set(w.key for w in state.workloads)  # what rollout_restart restarts (every served kind)
        for pod, owner in unmovable:
            if owner is None or (_meta(pod).get('namespace'),) + tuple(owner) not in restarted:
                state.unmovable.append(UnmovablePod.from_pod(pod, cronjob_of))
        state._compute_usage()
        return state

    @classmethod
    def load(cls, client, istio_namespace=ISTIO_NAMESPACE, namespaces=None, workloads=True):
        """Read the cluster through a ClusterClient.  ``namespaces`` limits the workload/pod reads
        (usage of revisions by pods is then only known for those namespaces); ``workloads=False``
        skips workloads and pods altogether (tags, revisions and namespaces only)."""
        deployments = client.list('Deployment', istio_namespace, label_selector='app=istiod')
        services = client.list('Service', istio_namespace)
        mwcs = client.list('MutatingWebhookConfiguration')
        vwcs = client.list('ValidatingWebhookConfiguration')
        ns_objs = client.list('Namespace')
        objs, pods, jobs = [], [], []
        scope = [] if not workloads else ([None] if not namespaces else list(namespaces))
        kinds = served_workload_kinds(client) if scope else ()
        for ns in scope:
            for kind in kinds:
                objs.extend(client.list(kind, ns))
            pods.extend(client.list('Pod', ns))
            if any((pod_owner(p) or (None,))[0] == 'Job' for p in pods):
                try:  # only to name the CronJob behind a Job's pod; a role without it still works
                    jobs.extend(client.list('Job', ns))
                except (AuthenticationFailed, NotFound):
                    pass
        return cls.from_objects(deployments, mwcs, vwcs, ns_objs, objs, pods, services,
                                istio_namespace, jobs)

    def _add_namespace(self, ns):
        meta = _meta(ns)
        labels = meta.get('labels') or {}
        selected_by, selector, warnings = namespace_selection(labels)
        revision, via = self.resolve(selector) if selector else (None, None)
        if selector and revision is None:
            warnings.append('%s selects %r but no tag or revision of that name has an injector: '
                            'new pods in this namespace get no sidecar'
                            % ('istio-injection=enabled' if selected_by == INJECTION_LABEL
                               else '%s=%s' % (REV_LABEL, selector), selector))
        elif revision and revision not in self.revisions:
            warnings.append('%s %r points at revision %s whose istiod is gone: pod creation in this '
                            'namespace fails ("failed calling webhook")' % (via, selector, revision))
        self.namespaces[meta.get('name')] = NamespaceInjection(meta.get('name'), labels, selected_by,
                                                               selector, revision, via, warnings)

    # queries -----------------------------------------------------------------------------------

    def resolve(self, name):
        """(revision, via) for a tag or revision name: a tag wins over a revision of the same name
        (as with Istio's webhooks); ``default`` falls back to a revision-less install."""
        if name is None:
            return None, None
        tag = self.tags.get(name)
        if tag is not None:
            return tag.revision, 'tag'
        if name in self.injectors or name in self.revisions:
            return name, 'revision'
        return None, None

    def revision(self, name):
        return self.revisions.get(name)

    def tag(self, name):
        return self.tags.get(name)

    def expected_revision(self, workload, ns):
        """(revision or None, how it was chosen) that injects the pods of ``workload`` (a WorkloadProxy)
        in namespace ``ns`` (a NamespaceInjection or None), with Istio's precedence: a pod template's
        ``sidecar.istio.io/inject=false`` opts out; a namespace's injection label decides; otherwise the
        pod template's ``istio.io/rev`` or ``sidecar.istio.io/inject=true`` (object selectors).  The rollout
        engine (rollout.py) uses it too."""
        tl = workload.template_labels
        ta = workload.template_annotations
        if tl.get(INJECT_LABEL) == 'false' or ta.get(INJECT_LABEL) == 'false':
            return None, 'pod template %s=false' % INJECT_LABEL
        if ns is not None and ns.selected_by in (INJECTION_LABEL, REV_LABEL):
            return ns.revision, 'namespace %s' % (
                'istio-injection=enabled' if ns.selected_by == INJECTION_LABEL
                else '%s=%s' % (REV_LABEL, ns.selector))
        if ns is not None and ns.selected_by == 'disabled':
            return None, 'namespace %s=%s' % (INJECTION_LABEL, ns.labels.get(INJECTION_LABEL))
        if tl.get(REV_LABEL):
            revision, _via = self.resolve(tl[REV_LABEL])
            return revision, 'pod template %s=%s' % (REV_LABEL, tl[REV_LABEL])
        if tl.get(INJECT_LABEL) == 'true':
            revision, _via = self.resolve(DEFAULT)
            return revision, 'pod template %s=true' % INJECT_LABEL
        return None, 'not selected for injection'

    def _judge(self, workload):
        ns = self.namespaces.get(workload.namespace)
        expected, how = self.expected_revision(workload, ns)
        workload.expected_revision = expected
        workload.selected_by = how
        workload.reason = stale_reason(workload, expected)

    def _compute_usage(self):
        for rev in self.revisions.values():
            rev.in_use_by = self.users_of(rev.name)
        for pod in self.unmovable:
            pod.expected_revision, _how = self.expected_revision(pod, self.namespaces.get(pod.namespace))

    def stale_unmovable(self, revision=None):
        """Unmovable pods not on the revision their namespace (or labels) select now (or, with ``revision``,
        still on that revision), as ``namespace/pod (what owns it, proxy version)``."""
        return sorted(p.describe() for p in self.unmovable
                      if (p.revision == revision if revision else p.revision != p.expected_revision))

    def users_of(self, revision):
        """What still needs ``revision``: tags, the default validator, namespace labels, pods."""
        users = []
        for tag in sorted(self.tags.values(), key=lambda t: t.name):
            if tag.revision == revision:
                users.append({'kind': 'tag', 'name': tag.name})
        if self.validator is not None and validator_revision(self.validator) == revision:
            users.append({'kind': 'validator', 'name': DEFAULT_VALIDATOR})
        for ns in sorted(self.namespaces.values(), key=lambda n: n.name):
            if ns.via == 'revision' and ns.revision == revision:
                users.append({'kind': 'namespace', 'name': ns.name,
                              'label': INJECTION_LABEL if ns.selected_by == INJECTION_LABEL
                              else REV_LABEL})
        for namespace, name in sorted(self.pods_by_revision.get(revision, [])):
            users.append({'kind': 'pod', 'namespace': namespace, 'name': name})
        return users

    def users_of_tag(self, tag):
        """Namespaces whose labels select ``tag`` (istio-injection=enabled counts for ``default``)."""
        users = []
        for ns in sorted(self.namespaces.values(), key=lambda n: n.name):
            if ns.via == 'tag' and ns.selector == tag:
                users.append({'kind': 'namespace', 'name': ns.name,
                              'label': INJECTION_LABEL if ns.selected_by == INJECTION_LABEL
                              else REV_LABEL})
        return users

    def stale(self):
        return [w for w in self.workloads if w.needs_restart]

    def problems(self):
        """Hazards found in the webhook/revision wiring, each {kind, name, problem}: a tag or the default
        validator calling an istiod that is gone (every pod creation / Istio config change then fails),
        revisions that are not ready, namespaces with conflicting or dangling labels, a revision-less
        injector still active beside the default tag."""
        found = []
        for tag in sorted(self.tags.values(), key=lambda t: t.name):
            if tag.revision not in self.revisions:
                found.append({'kind': 'tag', 'name': tag.name, 'problem':
                              'tag %s points at revision %s whose istiod is gone: pod creation in the '
                              'namespaces selecting it fails ("failed calling webhook"); point the tag at an '
                              'installed revision' % (tag.name, tag.revision)})
        if self.validator is not None:
            rev = validator_revision(self.validator)
            if rev and rev not in self.revisions:
                found.append({'kind': 'validator', 'name': DEFAULT_VALIDATOR, 'problem':
                              '%s calls revision %s whose istiod is gone: Istio configuration changes are '
                              'rejected; move the default tag to an installed revision' % (DEFAULT_VALIDATOR, rev)})
        for rev in sorted(self.revisions.values(), key=lambda r: r.name):
            if not rev.ready:
                found.append({'kind': 'revision', 'name': rev.name, 'problem':
                              'istiod of revision %s is not ready (%s of %s replicas)'
                              % (rev.name, rev.ready_replicas, rev.replicas)})
        if self.legacy_injector is not None and DEFAULT in self.tags and \
                injector_active(self.legacy_injector) and self.tags[DEFAULT].revision != DEFAULT:
            found.append({'kind': 'injector', 'name': LEGACY_INJECTOR, 'problem':
                          'the revision-less injector is still active beside tag default: both answer '
                          'istio-injection=enabled; deactivate it (meshops.istio.istio_revision_tag does)'})
        for ns in sorted(self.namespaces.values(), key=lambda n: n.name):
            for warning in ns.warnings:
                found.append({'kind': 'namespace', 'name': ns.name, 'problem': warning})
        for pod in sorted(self.unmovable, key=lambda p: (p.namespace, p.name)):
            if pod.revision != pod.expected_revision:
                found.append({'kind': 'pod', 'name': '%s/%s' % (pod.namespace, pod.name), 'owner': pod.owner,
                              'revision': pod.revision, 'problem':
                              'pod %s/%s (%s) runs the proxy of revision %s (%s), not %s, and no rollout restart '
                              'replaces it: restart or delete it by hand'
                              % (pod.namespace, pod.name, pod.owner, pod.revision, pod.version or '?',
                                 pod.expected_revision or 'none (nothing selects injection)')})
        return found

    def to_dict(self, namespaces=None):
        wanted = set(namespaces) if namespaces else None

        def keep(name):
            return wanted is None or name in wanted

        return {
            'istio_namespace': self.istio_namespace,
            'revisions': [r.to_dict() for r in sorted(self.revisions.values(), key=lambda r: r.name)],
            'tags': dict((t.name, t.revision) for t in self.tags.values()),
            'tag_details': [t.to_dict() for t in sorted(self.tags.values(), key=lambda t: t.name)],
            'namespaces': [n.to_dict() for n in sorted(self.namespaces.values(), key=lambda n: n.name)
                           if keep(n.name)],
            'workloads': [w.to_dict() for w in self.workloads if keep(w.namespace)],
            'stale': [w.to_dict() for w in self.stale() if keep(w.namespace)],
            'unmovable': [p.to_dict() for p in self.unmovable if keep(p.namespace)],
            'problems': [p for p in self.problems() if p['kind'] != 'namespace' or keep(p['name'])],
        }

    # findings about namespaces' labels -------------------------------------------------------

    def label_findings(self, tag=DEFAULT, from_revision=None, to_revision=None):
        """Namespaces whose injection labels need attention before an upgrade, each a dict with
        ``namespace``, ``labels`` (the two injection labels), ``issue``, ``migrate`` (relabelling to
        ``istio.io/rev=<tag>`` is the fix) and ``message``.  Issues: ``legacy`` (istio-injection=enabled
        alone), ``conflict`` (istio-injection=enabled beside istio.io/rev: the legacy label wins),
        ``disabled-conflict`` (istio-injection=<other> beside istio.io/rev: nothing is injected),
        ``pinned`` (istio.io/rev names the old revision itself, so moving the tag does not move it),
        ``unknown`` (the label names no tag or revision, nor ``to_revision`` about to be installed)."""
        findings = []
        for ns in sorted(self.namespaces.values(), key=lambda n: n.name):
            legacy = ns.labels.get(INJECTION_LABEL)
            rev = ns.labels.get(REV_LABEL)
            found = None
            if ns.selected_by == INJECTION_LABEL and rev is None:
                found = ('legacy', True, 'uses the legacy label %s=enabled; migrate it to %s=%s'
                         % (INJECTION_LABEL, REV_LABEL, tag))
            elif ns.selected_by == INJECTION_LABEL:
                found = ('conflict', True, 'has %s=enabled beside %s=%s; the legacy label wins, so %s is '
                         'ignored' % (INJECTION_LABEL, REV_LABEL, rev, REV_LABEL))
            elif ns.selected_by == 'disabled' and rev is not None:
                found = ('disabled-conflict', False, 'has %s=%s beside %s=%s; no sidecar is injected there'
                         % (INJECTION_LABEL, legacy, REV_LABEL, rev))
            elif ns.selected_by == REV_LABEL and ns.via == 'revision' and from_revision and \
                    ns.selector == from_revision:
                found = ('pinned', False, 'is pinned to revision %s itself (%s=%s), so moving tag %s does not '
                         'move it; label it %s=%s' % (rev, REV_LABEL, rev, tag, REV_LABEL, tag))
            elif ns.dangling and not (to_revision and ns.selector == to_revision):
                found = ('unknown', False, 'has %s=%s, which is neither an installed revision nor a tag'
                         % (REV_LABEL, rev))
            if found:
                issue, migrate, message = found
                shown = dict((k, ns.labels[k]) for k in (INJECTION_LABEL, REV_LABEL) if k in ns.labels)
                findings.append({'namespace': ns.name, 'labels': shown, 'issue': issue, 'migrate': migrate,
                                 'message': 'namespace %s %s' % (ns.name, message)})
        return findings

    def migrated_labels(self, namespace, tag=DEFAULT):
        """The labels of ``namespace`` once moved from istio-injection to istio.io/rev=<tag>."""
        labels = dict(self.namespaces[namespace].labels)
        labels.pop(INJECTION_LABEL, None)
        labels[REV_LABEL] = tag
        return labels

    # projection: the model after a change the collection is about to make ---------------------
    # A plan made in check mode goes on from what the phases before it would have done (nothing was
    # changed on the cluster), so each change has its effect on the model here, with Istio's rules.

    def copy(self):
        return copy.deepcopy(self)

    def project_revision(self, name, version):
        """istiod-<name> installed and ready, with its Service and injector."""
        self.revisions[name] = Revision(name, self.istio_namespace, deployment=istiod_name(name),
                                        version=version, ready=True, replicas=1, ready_replicas=1,
                                        injector=injector_name(name), service=istiod_name(name))
        self.injectors[name] = injector_name(name)
        self.refresh()

    def project_revision_removed(self, name):
        """The revision uninstalled: its istiod, injector and validator gone."""
        self.revisions.pop(name, None)
        self.injectors.pop(name, None)
        self.revision_validators.pop(name, None)
        self.refresh()

    def project_tag(self, tag, revision):
        """Tag ``tag`` pointed at ``revision`` (for ``default`` also the default validator, and the
        revision-less injector deactivated), as meshops.istio.istio_revision_tag does it."""
        existing = self.tags.get(tag)
        webhook = existing.webhook if existing is not None else tag_webhook_name(tag)
        self.tags[tag] = RevisionTag(tag, revision, webhook, [istiod_name(revision)])
        if tag == DEFAULT:
            vwc = copy.deepcopy(self.validator) if self.validator is not None else \
                {'metadata': {'name': DEFAULT_VALIDATOR}}
            vwc.setdefault('metadata', {}).setdefault('labels', {})[REV_LABEL] = revision
            self.validator = vwc
            if self.legacy_injector is not None and revision != DEFAULT and \
                    injector_active(self.legacy_injector):
                self.legacy_injector = deactivate_injector(self.legacy_injector)
        self.refresh()

    def project_namespace_labels(self, namespace, labels):
        self.namespaces[namespace].labels = dict(labels)
        self.refresh()

    def project_restart(self, workload, revision=None):
        """The workload's pods replaced by pods injected by the revision its namespace selects (or
        ``revision``, as rollout_restart's revision option, when the workload is selected at all)."""
        expected = workload.expected_revision
        if revision and expected is not None:
            expected = revision
        rev = self.revisions.get(expected) if expected else None
        count = max(len(workload.pods), workload.replicas or 0)
        gone = set((workload.namespace, p.name) for p in workload.pods)
        for key in list(self.pods_by_revision):
            self.pods_by_revision[key] = [p for p in self.pods_by_revision[key] if p not in gone]
        workload.pods = [PodProxy('%s-planned-%d' % (workload.name, index), expected,
                                  rev.version if rev is not None else None, True, 'Running')
                         for index in range(count)]
        if expected:
            self.pods_by_revision.setdefault(expected, []).extend(
                (workload.namespace, p.name) for p in workload.pods)
        workload.ready_replicas = count
        self.refresh()

    def refresh(self):
        """Recompute what follows from labels, tags and pods: namespaces' revisions, workloads'
        expected revisions and staleness, revisions' usage."""
        old = self.namespaces
        self.namespaces = {}
        for ns in sorted(old.values(), key=lambda n: n.name):
            self._add_namespace({'metadata': {'name': ns.name, 'labels': dict(ns.labels)}})
        for rev in self.revisions.values():
            rev.injector = self.injectors.get(rev.name)
        for workload in self.workloads:
            self._judge(workload)
        self._compute_usage()


def stale_reason(workload, expected):
    """Why the workload's pods are not what its namespace selects now (None when they are)."""
    if expected is None:
        injected = [p.name for p in workload.pods if p.injected]
        if injected:
            return 'pods %s still have a sidecar but nothing selects injection' % ', '.join(injected)
        return None
    if not workload.pods:
        return None
    wrong = [p for p in workload.pods if p.revision != expected]
    if not wrong:
        return None
    bits = []
    for pod in wrong:
        bits.append('%s on %s' % (pod.name, pod.revision or 'no sidecar'))
    return 'expected revision %s; %s' % (expected, ', '.join(bits))


def validator_revision(vwc):
    """The revision istiod-default-validator points at: its istio.io/rev label, else its service."""
    rev = _labels(vwc).get(REV_LABEL)
    if rev:
        return rev
    for hook in vwc.get('webhooks') or []:
        svc = ((hook.get('clientConfig') or {}).get('service') or {}).get('name') or ''
        if svc == 'istiod':
            return DEFAULT
        if svc.startswith('istiod-'):
            return svc[len('istiod-'):]
    return None


# --- tag webhooks as istioctl generates them -------------------------------------------------------

def _expr(key, op, values=None):
    expr = {'key': key, 'operator': op}
    if values is not None:
        expr['values'] = list(values)
    return expr


def _tag_selectors(tag):
    """namespaceSelector/objectSelector per webhook name prefix for a tag (istio's revision-tags
    chart template)."""
    selectors = {
        'rev.namespace.': (
            {'matchExpressions': [_expr(REV_LABEL, 'In', [tag]), _expr(INJECTION_LABEL, 'DoesNotExist')]},
            {'matchExpressions': [_expr(INJECT_LABEL, 'NotIn', ['false'])]}),
        'rev.object.': (
            {'matchExpressions': [_expr(REV_LABEL, 'DoesNotExist'),
                                  _expr(INJECTION_LABEL, 'DoesNotExist')]},
            {'matchExpressions': [_expr(INJECT_LABEL, 'NotIn', ['false']),
                                  _expr(REV_LABEL, 'In', [tag])]}),
    }
    if tag == DEFAULT:
        selectors['namespace.'] = (
            {'matchExpressions': [_expr(INJECTION_LABEL, 'In', ['enabled'])]},
            {'matchExpressions': [_expr(INJECT_LABEL, 'NotIn', ['false'])]})
        selectors['object.'] = (
            {'matchExpressions': [_expr(INJECTION_LABEL, 'DoesNotExist'),
                                  _expr(REV_LABEL, 'DoesNotExist')]},
            {'matchExpressions': [_expr(INJECT_LABEL, 'In', ['true']),
                                  _expr(REV_LABEL, 'DoesNotExist')]})
    return selectors


_WEBHOOK_ORDER = ('rev.namespace.', 'rev.object.', 'namespace.', 'object.')


def canonical_injector_webhook(injector):
    """The injection webhook of a revision's own injector MWC whose clientConfig, rules and
    policies a tag copies (the rev.namespace one, else the first)."""
    hooks = injector.get('webhooks') or []
    if not hooks:
        raise InvalidInput('MutatingWebhookConfiguration %s has no webhooks: the revision\'s injector '
                           'is broken, reinstall the revision' % _meta(injector).get('name'))
    for hook in hooks:
        if (hook.get('name') or '').startswith('rev.namespace.'):
            return hook
    return hooks[0]


def build_tag_webhook(tag, revision, injector, istio_namespace=ISTIO_NAMESPACE, existing=None):
    """``istio-revision-tag-<tag>`` built from the revision's injector ``istio-sidecar-injector-<rev>``
    the way ``istioctl tag set`` renders it: the same service (istiod-<rev>, its path and port),
    caBundle, rules and policies; labels istio.io/tag and istio.io/rev; the rev.namespace./rev.object.
    webhooks selecting the tag name, plus namespace./object. for ``default``."""
    base = canonical_injector_webhook(injector)
    client_config = copy.deepcopy(base.get('clientConfig') or {})
    if 'service' in client_config:
        svc = client_config['service']
        svc.setdefault('name', istiod_name(revision))
        svc.setdefault('namespace', istio_namespace)
        svc.setdefault('path', '/inject')
        svc.setdefault('port', 443)
    webhooks = []
    selectors = _tag_selectors(tag)
    for prefix in _WEBHOOK_ORDER:
        if prefix not in selectors:
            continue
        ns_sel, obj_sel = selectors[prefix]
        hook = {
            'name': '%ssidecar-injector.istio.io' % prefix,
            'clientConfig': copy.deepcopy(client_config),
            'rules': copy.deepcopy(base.get('rules') or [{
                'operations': ['CREATE'], 'apiGroups': [''], 'apiVersions': ['v1'],
                'resources': ['pods']}]),
            'failurePolicy': base.get('failurePolicy', 'Fail'),
            'sideEffects': base.get('sideEffects', 'None'),
            'admissionReviewVersions': list(base.get('admissionReviewVersions') or ['v1beta1', 'v1']),
            'namespaceSelector': ns_sel,
            'objectSelector': obj_sel,
        }
        for key in ('matchPolicy', 'timeoutSeconds', 'reinvocationPolicy'):
            if key in base:
                hook[key] = base[key]
        webhooks.append(hook)
    # the chart's auto. webhook (sidecarInjectorWebhook.enableNamespacesByDefault) injects unlabelled
    # namespaces: kept, calling the new revision
    for hook in (existing or {}).get('webhooks') or []:
        if (hook.get('name') or '').startswith('auto.'):
            kept = copy.deepcopy(hook)
            kept['clientConfig'] = copy.deepcopy(client_config)
            webhooks.append(kept)
    labels = {
        'app': 'sidecar-injector',
        TAG_LABEL: tag,
        REV_LABEL: revision,
        'operator.istio.io/component': 'Pilot',
    }
    return {
        'apiVersion': 'admissionregistration.k8s.io/v1',
        'kind': 'MutatingWebhookConfiguration',
        'metadata': {'name': _meta(existing).get('name') or tag_webhook_name(tag, istio_namespace), 'labels': labels},
        'webhooks': webhooks,
    }


def tag_service(tag, revision, existing=None, revision_service=None, istio_namespace=ISTIO_NAMESPACE):
    """Service ``istiod-revision-tag-<tag>`` selecting istiod of ``revision`` (Istio 1.28+: istioctl tag set
    and the chart's revision-tags-svc.yaml make it; it tells istiod which tags are its own)."""
    if existing:
        svc = copy.deepcopy(existing)
        svc.pop('status', None)
    else:
        ports = copy.deepcopy(((revision_service or {}).get('spec') or {}).get('ports') or [
            {'name': 'grpc-xds', 'port': 15010, 'protocol': 'TCP'},
            {'name': 'https-dns', 'port': 15012, 'protocol': 'TCP'},
            {'name': 'https-webhook', 'port': 443, 'targetPort': 15017, 'protocol': 'TCP'},
            {'name': 'http-monitoring', 'port': 15014, 'protocol': 'TCP'}])
        svc = {'apiVersion': 'v1', 'kind': 'Service',
               'metadata': {'name': tag_service_name(tag), 'namespace': istio_namespace,
                            'labels': {'app': 'istiod', 'istio': 'pilot', TAG_LABEL: tag}},
               'spec': {'ports': ports}}
    meta = svc.setdefault('metadata', {})
    meta.setdefault('labels', {})[REV_LABEL] = revision
    spec = svc.setdefault('spec', {})
    spec['selector'] = {'app': 'istiod', REV_LABEL: revision} if revision != DEFAULT else {'app': 'istiod', 'istio': 'pilot'}
    return svc


VALIDATION_RULES = [{
    'operations': ['CREATE', 'UPDATE'],
    'apiGroups': ['security.istio.io', 'networking.istio.io', 'telemetry.istio.io',
                  'extensions.istio.io'],
    'apiVersions': ['*'], 'resources': ['*'],
}]


def build_default_validator(revision, injector, existing=None, istio_namespace=ISTIO_NAMESPACE):
    """``istiod-default-validator`` pointed at ``revision``: its service istiod-<rev> on /validate, the
    caBundle of the revision's injector, labels istio.io/rev=<rev> and istio.io/tag=default.  An
    existing validator keeps its other fields (rules, failurePolicy, selectors)."""
    base = canonical_injector_webhook(injector)
    ca_bundle = (base.get('clientConfig') or {}).get('caBundle')
    inj_svc = (base.get('clientConfig') or {}).get('service') or {}
    service = {'name': inj_svc.get('name') or istiod_name(revision),
               'namespace': inj_svc.get('namespace') or istio_namespace,
               'path': '/validate', 'port': inj_svc.get('port') or 443}
    if existing:
        vwc = copy.deepcopy(existing)
        for key in ('status',):
            vwc.pop(key, None)
    else:
        vwc = {
            'apiVersion': 'admissionregistration.k8s.io/v1',
            'kind': 'ValidatingWebhookConfiguration',
            'metadata': {'name': DEFAULT_VALIDATOR, 'labels': {'app': 'istiod', 'istio': 'istiod'}},
            'webhooks': [{
                'name': 'validation.istio.io',
                'rules': copy.deepcopy(VALIDATION_RULES),
                'failurePolicy': 'Ignore',
                'sideEffects': 'None',
                'admissionReviewVersions': ['v1beta1', 'v1'],
                'objectSelector': {'matchExpressions': [_expr(REV_LABEL, 'DoesNotExist')]},
            }],
        }
    meta = vwc.setdefault('metadata', {})
    labels = dict(meta.get('labels') or {})
    labels[REV_LABEL] = revision
    labels[TAG_LABEL] = DEFAULT
    meta['labels'] = labels
    for hook in vwc.get('webhooks') or []:
        config = dict(hook.get('clientConfig') or {})
        if not config.get('url'):
            config['service'] = dict(service)
        if ca_bundle:
            config['caBundle'] = ca_bundle
        hook['clientConfig'] = config
    return vwc


def deactivate_injector(mwc):
    """A revision-less injector made ineffective the way istioctl does it (kept, never matching), so
    that it can be switched back later.  Returns the new object (or the same when already done)."""
    new = copy.deepcopy(mwc)
    for hook in new.get('webhooks') or []:
        hook['namespaceSelector'] = copy.deepcopy(NEVER_MATCH)
        hook['objectSelector'] = copy.deepcopy(NEVER_MATCH)
    return new


def injector_active(mwc):
    return any(hook.get('namespaceSelector') != NEVER_MATCH for hook in mwc.get('webhooks') or [])


def webhook_fields(obj):
    """The parts of a webhook configuration a tag change touches, for diffs and comparisons."""
    if not obj:
        return None
    labels = _labels(obj)
    return {
        'name': _meta(obj).get('name'),
        'labels': dict((k, labels[k]) for k in sorted(labels) if k in (REV_LABEL, TAG_LABEL, 'app')),
        'webhooks': [{
            'name': hook.get('name'),
            'service': ((hook.get('clientConfig') or {}).get('service') or {}).get('name'),
            'path': ((hook.get('clientConfig') or {}).get('service') or {}).get('path'),
            'url': (hook.get('clientConfig') or {}).get('url'),
            'caBundle': _short_bundle((hook.get('clientConfig') or {}).get('caBundle')),
            'namespaceSelector': hook.get('namespaceSelector'),
            'objectSelector': hook.get('objectSelector'),
        } for hook in obj.get('webhooks') or []],
    }


def _short_bundle(bundle):
    if not bundle:
        return None
    return '%s...(%d bytes)' % (bundle[:12], len(bundle))
