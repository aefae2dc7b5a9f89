# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout engine: the ONE place that restarts workloads and waits for their rollouts.

``RolloutPlan.build()`` decides, from a handful of list calls (namespaces, each workload kind and the
pods, once per namespace or cluster-wide), which Deployments, StatefulSets and DaemonSets to restart:
the *stale* ones, whose pods are not injected by the revision their namespace now selects (resolved
with Istio's label precedence, see mesh.py), or all of them.  ``RolloutRunner.run()`` then

* restarts them the way ``kubectl rollout restart`` does: one strategic-merge patch setting
  ``spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"]`` to an RFC 3339 time;
* keeps at most ``concurrency`` rollouts in flight (0 = all at once);
* waits the way ``kubectl rollout status`` does, per kind, fed by *shared watches* (one per kind and
  namespace, or cluster-wide once many namespaces are involved) on the workloads, their pods and
  FailedCreate events -- never by polling single objects.  Watches resume from the last
  resourceVersion after a dropped connection and re-list after 410 Gone;
* checks that the new pods are injected by the expected revision and reports their proxy version
  (a new pod's sidecar is fixed at its creation, so a wrong one fails the workload at once);
* names stuck workloads with the reason: CrashLoopBackOff of a new pod, a webhook refusing pod
  creation (the Deployment's ReplicaFailure condition or a FailedCreate event, counted only when
  newer than the restart), ProgressDeadlineExceeded, or the timeout with the last status seen;
* stops starting new restarts as soon as one workload fails, lets those already started finish
  (or time out), and reports the rest as skipped.

API cost: the lists above (a constant per namespace), one PATCH per restarted workload, and the watch
requests (a constant per namespace and kind); memory holds one small record per workload and per pod
of a workload being restarted, never whole pod lists.

A workload whose restart is already under way (its rollout is not complete and the pods of its
current template are injected by the expected revision) -- typically left by an interrupted run -- is
waited for, not restarted again; if that rollout brings pods on another revision it is restarted
then.  So no workload is restarted twice by one run, and a re-run completes an interrupted wave.
The restartedAt value is fixed before the PATCH is first sent, so a retried PATCH cannot restart twice.

Entry point for modules and roles: ``run_rollout(client, **options)`` -> the module result, where
``client`` is a client.ClusterClient (tests give a fake with its list_with_version, patch and watch).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import datetime
import heapq
import math
import re
import threading
import time

try:
    import queue
except ImportError:  # pragma: no cover - Python 2 is not supported
    import Queue as queue  # noqa

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils.client import WatchDropped, follow
from ansible_collections.meshops.istio.plugins.module_utils.progress import snapshot as progress_snapshot
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    ClusterUnreachable,
    InvalidInput,
    MeshopsError,
    NotFound,
    RolloutFailed,
    TransientApiError,
)

RESTARTED_AT = 'kubectl.kubernetes.io/restartedAt'
WORKLOAD_KINDS = mesh.WORKLOAD_KINDS
# Every kind the engine restarts: the core ones, and OpenShift's DeploymentConfig (``oc rollout latest``) and
# Argo Rollouts' Rollout (``kubectl argo rollouts restart``) where the cluster serves them.
ALL_KINDS = mesh.ALL_WORKLOAD_KINDS
DC_VERSION_ANNOTATION = 'openshift.io/deployment-config.latest-version'

# More namespaces than this: list and watch cluster-wide once per kind and filter here, instead of
# once per namespace.
CLUSTER_SCOPE_MIN_NAMESPACES = 4
# A completed rollout whose pods the pod watch has not caught up with yet: wait this long for the
# events, then list that workload's pods once.
VERIFY_GRACE_SECONDS = 3.0
# Server-side length of one watch request (the watch is resumed from its last resourceVersion).
WATCH_SECONDS = 60
# Consecutive failed (re)connections of one watch before the rollouts depending on it fail.
WATCH_MAX_FAILURES = 12
# Threads sending PATCH requests in parallel (the rollouts themselves are limited by concurrency).
MAX_PATCH_THREADS = 32
# Waiting reasons of a new pod's containers that are reported (only CrashLoopBackOff fails at once).
POD_PROBLEM_REASONS = ('CrashLoopBackOff', 'ImagePullBackOff', 'ErrImagePull', 'CreateContainerError',
                       'CreateContainerConfigError', 'InvalidImageName', 'RunContainerError')


# A pull error that says the registry does not have the image: no retry of the kubelet will fix it.
IMAGE_MISSING_RE = re.compile(r'not found|NotFound|manifest unknown|name unknown|repository does not exist|'
                              r'pull access denied', re.I)
# Pod creation refused by a LimitRange (LimitRanger) or a quota that needs limits: the template itself is refused.
LIMITS_REFUSAL_RE = re.compile(r'(maximum|minimum) \S+ usage per (Container|Pod)|max limit to request ratio|'
                               r'failed quota:', re.I)


# --------------------------------------------------------------------------------------- helpers

def _meta(obj):
    return (obj or {}).get('metadata') or {}


def _spec(obj):
    return (obj or {}).get('spec') or {}


def _status(obj):
    return (obj or {}).get('status') or {}


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def rfc3339_now(now=None):
    """The restartedAt value kubectl writes (time.RFC3339, here always in UTC)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_rfc3339(value):
    """A datetime for an RFC 3339 string (None if unparsable)."""
    if not value:
        return None
    text = value.strip()
    if text.endswith('Z'):
        text = text[:-1] + '+00:00'
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed


def _rv_newer(new, old):
    """True unless ``old`` is known to be newer than ``new`` (resourceVersions are opaque; compare
    them as integers when they are, as every real API server's are)."""
    if not old or not new:
        return True
    try:
        return int(new) >= int(old)
    except (TypeError, ValueError):
        return True


def workload_ref(namespace, kind, name):
    return '%s %s/%s' % (kind, namespace, name)


def label_selector_string(selector):
    """A LabelSelector dict (matchLabels / matchExpressions) as the string the API accepts."""
    if not selector:
        return None
    parts = ['%s=%s' % (k, v) for k, v in sorted((selector.get('matchLabels') or {}).items())]
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr.get('key'), expr.get('operator'), expr.get('values') or []
        if op == 'In':
            parts.append('%s in (%s)' % (key, ','.join(values)))
        elif op == 'NotIn':
            parts.append('%s notin (%s)' % (key, ','.join(values)))
        elif op == 'Exists':
            parts.append(key)
        elif op == 'DoesNotExist':
            parts.append('!%s' % key)
    return ','.join(parts) or None


# ------------------------------------------------------------------ rollout status (kubectl's rules)

class Progress:
    """Where a rollout stands: ``state`` is 'waiting', 'done' or 'failed'; ``message`` says why."""

    __slots__ = ('state', 'message')

    def __init__(self, state, message):
        self.state = state
        self.message = message

    @property
    def done(self):
        return self.state == 'done'

    @property
    def failed(self):
        return self.state == 'failed'

    def __repr__(self):
        return 'Progress(%s, %r)' % (self.state, self.message)

    def __eq__(self, other):
        if not isinstance(other, Progress):
            return False
        return (self.state, self.message) == (other.state, other.message)


def _condition(obj, ctype):
    for cond in _status(obj).get('conditions') or []:
        if cond.get('type') == ctype:
            return cond
    return None


def deployment_progress(obj):
    """kubectl's DeploymentStatusViewer: spec update observed, all replicas updated, old ones gone,
    updated ones available; ProgressDeadlineExceeded is a failure."""
    name = _meta(obj).get('name')
    status = _status(obj)
    if _int(_meta(obj).get('generation')) > _int(status.get('observedGeneration')):
        return Progress('waiting', 'waiting for deployment spec update to be observed')
    cond = _condition(obj, 'Progressing')
    if cond and cond.get('reason') == 'ProgressDeadlineExceeded':
        return Progress('failed', 'ProgressDeadlineExceeded: deployment %r exceeded its progress '
                                  'deadline%s' % (name, ': %s' % cond['message']
                                                  if cond.get('message') else ''))
    replicas = _spec(obj).get('replicas')
    updated = _int(status.get('updatedReplicas'))
    if replicas is not None and updated < _int(replicas):
        return Progress('waiting', '%d out of %d new replicas have been updated'
                        % (updated, _int(replicas)))
    if _int(status.get('replicas')) > updated:
        return Progress('waiting', '%d old replicas are pending termination'
                        % (_int(status.get('replicas')) - updated))
    if _int(status.get('availableReplicas')) < updated:
        return Progress('waiting', '%d of %d updated replicas are available'
                        % (_int(status.get('availableReplicas')), updated))
    return Progress('done', 'deployment %r successfully rolled out' % name)


def statefulset_progress(obj):
    """kubectl's StatefulSetStatusViewer (RollingUpdate only): spec observed, replicas ready, and
    currentRevision == updateRevision (or the partition's pods updated)."""
    spec, status = _spec(obj), _status(obj)
    strategy = (spec.get('updateStrategy') or {}).get('type') or 'RollingUpdate'
    if strategy != 'RollingUpdate':
        return Progress('failed', 'rollout status is only available for RollingUpdate strategy '
                                  'type (updateStrategy is %s)' % strategy)
    observed = _int(status.get('observedGeneration'))
    if observed == 0 or _int(_meta(obj).get('generation')) > observed:
        return Progress('waiting', 'waiting for statefulset spec update to be observed')
    replicas = spec.get('replicas')
    ready = _int(status.get('readyReplicas'))
    if replicas is not None and ready < _int(replicas):
        return Progress('waiting', 'waiting for %d pods to be ready' % (_int(replicas) - ready))
    partition = _int(((spec.get('updateStrategy') or {}).get('rollingUpdate') or {}).get('partition'))
    if partition > 0 and replicas is not None:
        if _int(status.get('updatedReplicas')) < _int(replicas) - partition:
            return Progress('waiting', 'waiting for partitioned roll out to finish: %d out of %d new '
                                       'pods have been updated'
                            % (_int(status.get('updatedReplicas')), _int(replicas) - partition))
        return Progress('done', 'partitioned roll out complete: %d new pods have been updated'
                        % _int(status.get('updatedReplicas')))
    if status.get('updateRevision') != status.get('currentRevision'):
        return Progress('waiting', 'waiting for statefulset rolling update to complete %d pods at '
                                   'revision %s' % (_int(status.get('updatedReplicas')),
                                                    status.get('updateRevision')))
    return Progress('done', 'statefulset rolling update complete %d pods at revision %s'
                    % (_int(status.get('currentReplicas')), status.get('currentRevision')))


def daemonset_progress(obj):
    """kubectl's DaemonSetStatusViewer (RollingUpdate only)."""
    spec, status = _spec(obj), _status(obj)
    strategy = (spec.get('updateStrategy') or {}).get('type') or 'RollingUpdate'
    if strategy != 'RollingUpdate':
        return Progress('failed', 'rollout status is only available for RollingUpdate strategy '
                                  'type (updateStrategy is %s)' % strategy)
    if _int(_meta(obj).get('generation')) > _int(status.get('observedGeneration')):
        return Progress('waiting', 'waiting for daemon set spec update to be observed')
    desired = _int(status.get('desiredNumberScheduled'))
    updated = _int(status.get('updatedNumberScheduled'))
    if updated < desired:
        return Progress('waiting', '%d out of %d new pods have been updated' % (updated, desired))
    available = _int(status.get('numberAvailable'))
    if available < desired:
        return Progress('waiting', '%d of %d updated pods are available' % (available, desired))
    return Progress('done', 'daemon set %r successfully rolled out' % _meta(obj).get('name'))


def deploymentconfig_progress(obj):
    """``oc rollout status dc/NAME`` (openshift/oc DeploymentConfigStatusViewer): once the controller
    observed the config, the Progressing condition of the latest ReplicationController decides --
    NewReplicationControllerAvailable is done, ProgressDeadlineExceeded / RolloutCancelled failed -- else the
    replica counts say what it waits for.  The condition must name the latest ``<dc>-<latestVersion>``
    (right after ``instantiate`` it still speaks of the previous one)."""
    name, status = _meta(obj).get('name'), _status(obj)
    latest = _int(status.get('latestVersion'))
    rc = '%s-%d' % (name, latest)
    if _spec(obj).get('paused'):
        return Progress('failed', 'deployment config %r is paused: resume it (oc rollout resume dc/%s)' % (name, name))
    if _int(_meta(obj).get('generation')) > _int(status.get('observedGeneration')):
        return Progress('waiting', 'waiting for latest deployment config spec to be observed by the controller loop')
    cond = _condition(obj, 'Progressing') or {}
    about_latest = '"%s"' % rc in (cond.get('message') or '')
    if cond.get('reason') == 'NewReplicationControllerAvailable' and about_latest:
        return Progress('done', cond.get('message') or 'replication controller %r successfully rolled out' % rc)
    if cond.get('reason') in ('ProgressDeadlineExceeded', 'RolloutCancelled') and about_latest:
        return Progress('failed', '%s: %s' % (cond['reason'], cond.get('message') or rc))
    replicas = _int(_spec(obj).get('replicas'))
    updated = _int(status.get('updatedReplicas'))
    if updated < replicas:
        return Progress('waiting', '%d out of %d new replicas have been updated' % (updated, replicas))
    if _int(status.get('replicas')) > updated:
        return Progress('waiting', '%d old replicas are pending termination' % (_int(status.get('replicas')) - updated))
    if _int(status.get('availableReplicas')) < updated:
        return Progress('waiting', '%d of %d updated replicas are available'
                        % (_int(status.get('availableReplicas')), updated))
    return Progress('waiting', 'waiting for replication controller %r to complete' % rc)


def argo_rollout_progress(obj):
    """``kubectl argo rollouts status`` (argo-rollouts utils/rollout GetRolloutPhase): generation observed
    (``status.observedGeneration`` is a string), Degraded fails, a restart is done once ``status.restartedAt``
    caught up with ``spec.restartAt``, then Healthy is done; Paused and Progressing wait."""
    name, spec, status = _meta(obj).get('name'), _spec(obj), _status(obj)
    if str(_meta(obj).get('generation') or '') != str(status.get('observedGeneration') or ''):
        return Progress('waiting', 'waiting for rollout spec update to be observed')
    phase, message = status.get('phase') or 'Progressing', status.get('message') or ''
    if phase == 'Degraded':
        return Progress('failed', 'rollout %r is Degraded: %s' % (name, message or 'see its conditions'))
    if spec.get('restartAt') and status.get('restartedAt') != spec.get('restartAt'):
        return Progress('waiting', 'rollout is restarting')
    if phase == 'Healthy':
        return Progress('done', 'rollout %r is Healthy' % name)
    return Progress('waiting', '%s%s' % (phase, ' - %s' % message if message else ''))


_PROGRESS = {'Deployment': deployment_progress, 'StatefulSet': statefulset_progress,
             'DaemonSet': daemonset_progress, 'DeploymentConfig': deploymentconfig_progress,
             'Rollout': argo_rollout_progress}


def rollout_progress(kind, obj):
    return _PROGRESS[kind](obj)


def restart_blocker(kind, obj):
    """Why a restart would not roll the workload's pods (None if it would): a paused Deployment, an
    OnDelete StatefulSet/DaemonSet, a partitioned StatefulSet."""
    spec = _spec(obj)
    if kind in ('DeploymentConfig', 'Rollout'):
        return _platform_blocker(kind, obj)
    if kind == 'Deployment':
        if spec.get('paused'):
            return ('paused: a restart would not roll out until the Deployment is resumed '
                    '(kubectl rollout resume deployment/%s -n %s)'
                    % (_meta(obj).get('name'), _meta(obj).get('namespace')))
        return None
    strategy = (spec.get('updateStrategy') or {}).get('type') or 'RollingUpdate'
    if strategy == 'OnDelete':
        return ('updateStrategy OnDelete: pods are only replaced when deleted; delete them to move '
                'them to the new revision')
    if kind == 'StatefulSet':
        partition = _int(((spec.get('updateStrategy') or {}).get('rollingUpdate') or {})
                         .get('partition'))
        if partition > 0:
            return ('rollingUpdate partition %d: pods with a lower ordinal would not be replaced'
                    % partition)
    return None


def _platform_blocker(kind, obj):
    name, namespace = _meta(obj).get('name'), _meta(obj).get('namespace')
    if kind == 'DeploymentConfig':
        if _spec(obj).get('paused'):
            return ('paused: OpenShift refuses to deploy a paused DeploymentConfig (oc rollout resume dc/%s -n %s)'
                    % (name, namespace))
        return None
    if _spec(obj).get('paused') or _status(obj).get('pauseConditions'):
        return ('paused: Argo Rollouts does not restart a paused Rollout; promote or resume it first '
                '(kubectl argo rollouts promote %s -n %s)' % (name, namespace))
    if _status(obj).get('phase') == 'Degraded':
        return ('Degraded (%s): fix or abort that rollout first (kubectl argo rollouts status %s -n %s)'
                % (_status(obj).get('message') or 'see its conditions', name, namespace))
    return None


def desired_pods(kind, obj):
    """How many pods the workload runs once rolled out."""
    if kind == 'DaemonSet':
        return _int(_status(obj).get('desiredNumberScheduled'))
    replicas = _spec(obj).get('replicas')
    return 1 if replicas is None else _int(replicas)


def replica_failure(obj):
    """The message of a Deployment's ReplicaFailure condition (pods refused), or None."""
    cond = _condition(obj, 'ReplicaFailure')
    if cond and str(cond.get('status')) == 'True':
        return cond.get('message') or cond.get('reason') or 'ReplicaFailure'
    return None


def _fencepost(value, total, round_up):
    """maxSurge/maxUnavailable as a number of pods (an int, or a percentage rounded as Kubernetes does)."""
    text = str(value)
    if text.endswith('%'):
        amount = total * float(text[:-1] or 0) / 100.0
        return int(math.ceil(amount) if round_up else math.floor(amount))
    return _int(value)


def quota_blocks_for_good(kind, obj):
    """Whether a rollout whose new pods a ResourceQuota refuses can never go on by itself: a RollingUpdate
    Deployment that may not take an old pod away before a new one is ready (maxUnavailable resolves to 0, as
    with 25% of fewer than 4 replicas), so no room is ever freed.  Otherwise old pods going away may free
    room, and the refusal shows in the reason when the wait times out."""
    if kind != 'Deployment':
        return False
    strategy = _spec(obj).get('strategy') or {}
    if (strategy.get('type') or 'RollingUpdate') != 'RollingUpdate':
        return False
    rolling = strategy.get('rollingUpdate') or {}
    replicas = desired_pods(kind, obj)
    surge = _fencepost(rolling.get('maxSurge', '25%'), replicas, True)
    unavailable = _fencepost(rolling.get('maxUnavailable', '25%'), replicas, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return unavailable == 0


def template_restarted_at(obj):
    return ((_spec(obj).get('template') or {}).get('metadata') or {}).get('annotations', {}) \
        .get(RESTARTED_AT) if _spec(obj).get('template') else None


def restart_marker(kind, obj):
    """What identifies the workload's latest restart, compared with each pod's ``pod_marker``: the
    template's restartedAt annotation; a DeploymentConfig's ``status.latestVersion`` (its pods carry it
    in the deployment-config.latest-version annotation); a Rollout's ``spec.restartAt`` (pods created at
    or after it are new)."""
    if kind == 'DeploymentConfig':
        latest = _status(obj).get('latestVersion')
        return str(latest) if latest else None
    if kind == 'Rollout':
        return _spec(obj).get('restartAt')
    return template_restarted_at(obj)


def restart_field(kind):
    """The field a restart changes, as the diff names it."""
    return {'DeploymentConfig': 'status.latestVersion (oc rollout latest)',
            'Rollout': 'spec.restartAt (kubectl argo rollouts restart)'}.get(kind, RESTARTED_AT)


def pod_marker(owner_kind, pod):
    meta = _meta(pod)
    if owner_kind == 'DeploymentConfig':
        return (meta.get('annotations') or {}).get(DC_VERSION_ANNOTATION)
    if owner_kind == 'Rollout':
        return meta.get('creationTimestamp')
    return (meta.get('annotations') or {}).get(RESTARTED_AT)


def is_new_pod(kind, marker_of_pod, marker):
    """Does a pod with ``marker_of_pod`` come from the restart identified by ``marker``?"""
    if kind == 'Rollout':
        created, since = parse_rfc3339(marker_of_pod), parse_rfc3339(marker)
        return bool(created and since and created >= since)
    return marker_of_pod == marker


def workload_selector(kind, obj):
    """The workload's pod selector as a string (a DeploymentConfig's is a plain label map)."""
    selector = _spec(obj).get('selector') or {}
    if kind == 'DeploymentConfig':
        return ','.join('%s=%s' % kv for kv in sorted(selector.items())) or None
    return label_selector_string(selector)


_STATUS_KEYS = ('observedGeneration', 'replicas', 'updatedReplicas', 'readyReplicas',
                'availableReplicas', 'currentReplicas', 'currentRevision', 'updateRevision',
                'desiredNumberScheduled', 'updatedNumberScheduled', 'numberAvailable',
                'latestVersion', 'restartedAt', 'phase', 'message', 'pauseConditions')
_CONDITION_KEYS = ('type', 'status', 'reason', 'message', 'lastUpdateTime', 'lastTransitionTime')


def _istio_keys(mapping, extra=()):
    return dict((k, v) for k, v in (mapping or {}).items()
                if k in extra or k.startswith('sidecar.istio.io/') or k.startswith('istio.io/'))


def prune_workload(kind, obj):
    """Keep only what planning, status evaluation and reporting need, in the object's own shape (so
    the status functions take either): a few hundred bytes instead of the whole object."""
    meta, spec, status = _meta(obj), _spec(obj), _status(obj)
    tmeta = ((spec.get('template') or {}).get('metadata') or {})
    pruned_spec = dict((k, spec[k]) for k in ('replicas', 'paused', 'selector', 'updateStrategy', 'restartAt')
                       if k in spec)
    pruned_spec['template'] = {'metadata': {
        'labels': _istio_keys(tmeta.get('labels')),
        'annotations': _istio_keys(tmeta.get('annotations'), (RESTARTED_AT,))}}
    pruned_status = dict((k, status[k]) for k in _STATUS_KEYS if k in status)
    conditions = [dict((k, c[k]) for k in _CONDITION_KEYS if k in c)
                  for c in status.get('conditions') or []
                  if c.get('type') in ('ReplicaFailure', 'Progressing') or c.get('reason') == 'ProgressDeadlineExceeded']
    if conditions:
        pruned_status['conditions'] = conditions
    return {
        'kind': kind,
        'metadata': dict((k, meta[k]) for k in ('name', 'namespace', 'generation', 'resourceVersion')
                         if k in meta),
        'spec': pruned_spec,
        'status': pruned_status,
    }


# ------------------------------------------------------------------------------------------- pods

def pod_owner(pod):
    """(kind, name) of the workload (Deployment, StatefulSet, DaemonSet, DeploymentConfig, Rollout)
    controlling the pod, else None."""
    owner = mesh.pod_owner(pod)
    if owner and owner[0] in ALL_KINDS:
        return owner
    return None


class PodInfo:
    """What the engine keeps of a pod: a few strings, never the pod."""

    __slots__ = ('name', 'owner', 'restarted_at', 'injected', 'revision', 'version', 'live', 'ready',
                 'problem')

    def __init__(self, name, owner, restarted_at=None, injected=False, revision=None, version=None,
                 live=True, ready=False, problem=None):
        self.name = name
        self.owner = owner
        self.restarted_at = restarted_at
        self.injected = injected
        self.revision = revision
        self.version = version
        self.live = live
        self.ready = ready
        self.problem = problem  # (reason, text) of a container in trouble, e.g. CrashLoopBackOff

    @classmethod
    def from_pod(cls, pod):
        meta = _meta(pod)
        owner = pod_owner(pod)
        revision = mesh.pod_revision(pod)
        version = mesh.pod_proxy_version(pod)
        status = _status(pod)
        live = not mesh.pod_terminated(pod)
        ready = mesh.pod_ready(pod)
        problem = None
        init_names = set(c.get('name') for c in status.get('initContainerStatuses') or [])
        for cstatus in (status.get('initContainerStatuses') or []) + \
                (status.get('containerStatuses') or []):
            waiting = (cstatus.get('state') or {}).get('waiting') or {}
            reason = waiting.get('reason')
            if reason in POD_PROBLEM_REASONS:
                # a native sidecar (istio-proxy as a restartable init container) shows as kubectl prints it
                native = cstatus.get('name') in init_names
                text = 'pod %s %s %s: %s' % (
                    meta.get('name'), 'native sidecar' if native and cstatus.get('name') == mesh.PROXY_CONTAINER
                    else 'init container' if native else 'container', cstatus.get('name'),
                    'Init:%s' % reason if native else reason)
                extra = []
                if cstatus.get('restartCount'):
                    extra.append('restarted %s times' % cstatus.get('restartCount'))
                last = (cstatus.get('lastState') or {}).get('terminated') or {}
                if last.get('exitCode') is not None:
                    extra.append('last exit code %s%s' % (last.get('exitCode'),
                                                          ' (%s)' % last['reason']
                                                          if last.get('reason') else ''))
                if waiting.get('message'):
                    extra.append(waiting['message'][:300])
                if extra:
                    text += ' (%s)' % '; '.join(extra)
                problem = (reason, text)
                if reason == 'CrashLoopBackOff':
                    break
        return cls(meta.get('name'), owner, pod_marker(owner[0] if owner else None, pod),
                   revision is not None, revision, version, live, ready, problem)

    def on_revision(self, expected):
        """True when the pod is injected by ``expected`` (or not injected when it is None)."""
        if expected is None:
            return not self.injected
        return self.injected and self.revision == expected

    def describe(self):
        if not self.injected:
            return 'pod %s has no istio-proxy sidecar' % self.name
        return 'pod %s is injected by revision %s (proxy %s)' % (self.name, self.revision or '?',
                                                                 self.version or '?')


def versions_of(pods, attr='version'):
    """The distinct versions (or revisions) of live pods as one string: '1.14.6' or '1.14.6, 1.15.4'."""
    values = sorted(set(getattr(p, attr) for p in pods if p.live and getattr(p, attr)))
    return ', '.join(values) if values else None


# ---------------------------------------------------------------------------------------- the plan

class WorkloadState:
    """One workload: what the plan found, what the run did."""

    __slots__ = ('namespace', 'kind', 'name', 'obj', 'pods', 'expected', 'expected_source', 'action',
                 'reason', 'from_version', 'from_revision', 'to_version', 'duration', 'plan',
                 'before', 'target', 'started', 'deadline', 'settle_deadline', 'refreshed',
                 'create_failure', 'last_message', 'finished', 'patched', 'since')

    def __init__(self, kind, obj, pods=None):
        meta = _meta(obj)
        self.namespace = meta.get('namespace')
        self.kind = kind
        self.name = meta.get('name')
        self.obj = obj
        self.pods = dict((p.name, p) for p in (pods or []))
        self.expected = None
        self.expected_source = None
        self.action = None
        self.reason = None
        self.from_version = None
        self.from_revision = None
        self.to_version = None
        self.duration = None
        self.plan = None          # 'restart', 'resume', or None (nothing to do)
        self.before = restart_marker(kind, obj)
        self.target = None        # restartedAt value this run waits for
        self.started = None       # monotonic time the restart (or the wait) began
        self.deadline = None
        self.settle_deadline = None
        self.refreshed = False
        self.create_failure = None
        self.since = None         # wall-clock time evidence of pod refusals must be newer than
        self.last_message = None
        self.finished = False
        self.patched = False

    @property
    def key(self):
        return (self.namespace, self.kind, self.name)

    @property
    def ref(self):
        return workload_ref(self.namespace, self.kind, self.name)

    def live_pods(self):
        return [p for p in self.pods.values() if p.live]

    def result(self):
        return {
            'namespace': self.namespace,
            'kind': self.kind,
            'name': self.name,
            'action': self.action,
            'from_version': self.from_version,
            'to_version': self.to_version,
            'from_revision': self.from_revision,
            'revision': self.expected,
            'duration': None if self.duration is None else round(self.duration, 1),
            'reason': self.reason,
        }


class RolloutPlan:
    """Which workloads to restart, and which are current or skipped (and why).

    ``api`` is a ClusterClient (or a fake with its methods).  The revision expected to inject each
    workload's pods comes from mesh.py's model (namespace labels with Istio's precedence, tags read
    from their webhooks, pod template opt-in/out), or from ``revision`` when given.
    """

    def __init__(self, workloads, scopes, list_versions, namespaces, kinds, missing_names=(),
                 selector=None):
        self.workloads = workloads            # [WorkloadState] in a stable order
        self.selector = selector              # the workloads' label selector (also used to watch)
        self.scopes = scopes                  # [namespace] or [None] (cluster-wide)
        self.list_versions = list_versions    # {(kind, scope): resourceVersion of the plan's list}
        self.namespaces = namespaces          # {name: namespace object}
        self.kinds = kinds
        self.missing_names = list(missing_names)

    @classmethod
    def build(cls, api, namespaces=None, namespace_selector=None, kinds=None,
              selector=None, names=None, only_stale=True, revision=None):
        for kind in kinds or ():
            if kind not in ALL_KINDS:
                raise InvalidInput('kind %r cannot be restarted: use %s'
                                   % (kind, ', '.join(ALL_KINDS)))
        # asked for by name, a kind the cluster does not serve fails its list with the reason; by default
        # the platform kinds are restarted where they are served
        kinds = list(dict.fromkeys(kinds)) if kinds else mesh.served_workload_kinds(api)
        if bool(namespaces) == bool(namespace_selector):
            raise InvalidInput('give either namespaces (a list) or namespace_selector')
        # 1. namespaces (one list call; a missing namespace stops everything before any change)
        if namespaces:
            wanted = list(dict.fromkeys(namespaces))
            found = dict((_meta(ns).get('name'), ns) for ns in api.list_with_version('Namespace')[0])
            missing = [n for n in wanted if n not in found]
            if missing:
                raise NotFound('namespace%s %s not found: nothing was restarted'
                               % ('s' if len(missing) > 1 else '', ', '.join(missing)),
                               status=404, reason='NotFound', details={'missing': missing})
            selected = dict((n, found[n]) for n in wanted)
        else:
            items = api.list_with_version('Namespace', label_selector=namespace_selector)[0]
            selected = collections.OrderedDict(sorted((_meta(ns).get('name'), ns) for ns in items))
        ns_names = list(selected)
        if len(ns_names) >= CLUSTER_SCOPE_MIN_NAMESPACES:
            scopes = [None]
        else:
            scopes = ns_names
        wanted_ns = set(ns_names)
        names_set = set(names or [])

        # 2. workloads, kind by kind
        workloads = []
        list_versions = {}
        found_names = set()
        for kind in kinds:
            for scope in scopes:
                def keep(obj, kind=kind):
                    meta = _meta(obj)
                    if meta.get('namespace') not in wanted_ns:
                        return None
                    if names_set and meta.get('name') not in names_set:
                        return None
                    return prune_workload(kind, obj)
                items, rv = api.list_with_version(kind, scope, selector, transform=keep)
                list_versions[(kind, scope)] = rv
                for obj in items:
                    found_names.add(_meta(obj).get('name'))
                    workloads.append(WorkloadState(kind, obj))
        missing_names = sorted(names_set - found_names)
        if missing_names:
            raise NotFound('no %s named %s in namespace%s %s: nothing was restarted'
                           % ('/'.join(kinds), ', '.join(missing_names),
                              's' if len(ns_names) > 1 else '', ', '.join(ns_names)),
                           status=404, reason='NotFound', details={'missing': missing_names})
        order = dict((n, i) for i, n in enumerate(ns_names))
        kind_order = dict((k, i) for i, k in enumerate(kinds))
        workloads.sort(key=lambda w: (order[w.namespace], kind_order[w.kind], w.name))

        # 3. pods, once per scope, kept as PodInfo of the workloads found
        by_key = dict((w.key, w) for w in workloads)
        if workloads:
            for scope in scopes:
                def pod_info(pod):
                    meta = _meta(pod)
                    if meta.get('namespace') not in wanted_ns:
                        return None
                    owner = pod_owner(pod)
                    if owner is None or (meta.get('namespace'),) + owner not in by_key:
                        return None
                    return PodInfo.from_pod(pod), meta.get('namespace')
                infos, rv = api.list_with_version('Pod', scope, transform=pod_info)
                list_versions[('Pod', scope)] = rv
                for info, ns in infos:
                    by_key[(ns,) + info.owner].pods[info.name] = info

        # 4. classify
        resolver = RevisionResolver.load(api, list(selected.values()), revision) if workloads \
            else None
        for w in workloads:
            w.expected, w.expected_source = resolver.expected(w.namespace, w.obj)
            _classify(w, only_stale)
        return cls(workloads, scopes, list_versions, selected, kinds, missing_names, selector)

    def to_restart(self):
        return [w for w in self.workloads if w.plan == 'restart']

    def to_resume(self):
        return [w for w in self.workloads if w.plan == 'resume']


class RevisionResolver:
    """The revision expected to inject a workload's pods, from mesh.py's model: one list of the
    MutatingWebhookConfigurations (tags and revisions' injectors) and the namespaces' labels."""

    def __init__(self, state, override=None):
        self.state = state
        self.override = override

    @classmethod
    def load(cls, api, namespace_objs, revision=None):
        mwcs = api.list_with_version('MutatingWebhookConfiguration')[0]
        state = mesh.MeshState.from_objects(mutating_webhooks=mwcs, namespaces=namespace_objs)
        override = None
        if revision:
            mesh.validate_revision_name(revision)
            override, _via = state.resolve(revision)
            if override is None:
                raise InvalidInput('revision %r: no revision tag or revision of that name has a '
                                   'sidecar injector (MutatingWebhookConfiguration) on the cluster; '
                                   'known: %s' % (revision, ', '.join(sorted(
                                       set(state.tags) | set(state.injectors))) or 'none'),
                                   details={'revision': revision})
        return cls(state, override)

    def expected(self, namespace, obj):
        """(revision or None, how it was chosen)."""
        workload = mesh.WorkloadProxy.from_object(obj)
        ns = self.state.namespaces.get(namespace)
        expected, how = self.state.expected_revision(workload, ns)
        if self.override and expected is not None:
            return self.override, 'revision option'
        if ns is not None and ns.dangling and expected is None and ns.selector:
            how = '%s selects %r, which no injector serves' % (how, ns.selector)
        return expected, how


def _classify(w, only_stale):
    live = w.live_pods()
    w.from_version = versions_of(live)
    w.from_revision = versions_of(live, 'revision')
    stale = [p for p in live if not p.on_revision(w.expected)]
    progress = rollout_progress(w.kind, w.obj)
    if only_stale and not stale:
        w.action = 'current'
        if not live:
            w.reason = 'no running pods'
        elif w.expected is None:
            w.reason = 'not injected, as expected (%s)' % w.expected_source
        return
    blocker = restart_blocker(w.kind, w.obj)
    if blocker:
        w.action = 'skipped'
        w.reason = blocker
        return
    if w.expected is None and only_stale and w.expected_source:
        # pods carry a sidecar although nothing selects them for injection any more: a restart would
        # remove it -- not this module's call to make
        w.action = 'skipped'
        w.reason = 'pods are injected but %s; not restarted' % w.expected_source
        return
    current_ts = restart_marker(w.kind, w.obj)
    if current_ts and not progress.done and not progress.failed:
        of_template = [p for p in live if is_new_pod(w.kind, p.restarted_at, current_ts)]
        if all(p.on_revision(w.expected) for p in of_template):
            w.plan = 'resume'
            w.target = current_ts
            w.reason = 'restart from %s already in progress: waited for, not restarted again' \
                % current_ts
            return
    w.plan = 'restart'
    if stale:
        sample = stale[0]
        w.reason = '%d of %d pods not on revision %s (%s)' % (
            len(stale), len(live), w.expected, sample.describe()) if w.expected else \
            '%d of %d pods injected' % (len(stale), len(live))
    else:
        w.reason = 'only_stale is false'


def instantiate_deploymentconfig(api, namespace, name):
    """``oc rollout latest dc/NAME``: POST a DeploymentRequest (latest, force) to the DeploymentConfig's
    ``instantiate`` subresource (openshift/oc pkg/cli/rollout/latest.go); returns the DeploymentConfig."""
    resource = api.resource('DeploymentConfig')
    request = {'kind': 'DeploymentRequest', 'apiVersion': resource.api_version, 'name': name,
               'latest': True, 'force': True}
    return api.request('POST', resource.path(namespace, name, 'instantiate'), body=request,
                       what=('instantiate', 'DeploymentConfig', name, namespace))


def restart_patch(restarted_at):
    """The strategic-merge patch of ``kubectl rollout restart``."""
    return {'spec': {'template': {'metadata': {'annotations': {RESTARTED_AT: restarted_at}}}}}


# ---------------------------------------------------------------------------------- the watches

class _Watcher(threading.Thread):
    """Follows one collection (kind and scope) from a resourceVersion with the client's resumable watch
    (client.follow) and posts what it sees, each object through ``transform``, to the runner's queue:
    ('event', tag, type, item) per event, ('sync', tag, items) after a re-list, or ('watch_failed', tag,
    error)."""

    def __init__(self, api, tag, kind, namespace, rv, transform, out, stop, field_selector=None,
                 label_selector=None, sleep=None):
        super(_Watcher, self).__init__(name='watch-%s-%s' % (kind, namespace or 'all'))
        self.daemon = True
        self.api = api
        self.tag = tag
        self.kind = kind
        self.rv = rv
        self.transform = transform
        self.out = out
        self.stop = stop
        self.selectors = dict(namespace=namespace, label_selector=label_selector, field_selector=field_selector)
        self.sleep = sleep or stop.wait

    def run(self):
        try:
            for event in follow(lambda: self.api.list_with_version(self.kind, transform=self.transform,
                                                                   **self.selectors),
                                lambda rv: ((item.type, item.object, item.resource_version) for item in
                                            self.api.watch(self.kind, resource_version=rv,
                                                           timeout_seconds=WATCH_SECONDS, **self.selectors)),
                                self.rv, retry_on=(WatchDropped, TransientApiError, ClusterUnreachable),
                                max_failures=WATCH_MAX_FAILURES, sleep=self.sleep, stop=self.stop):
                if self.stop.is_set():
                    return
                if event.type == 'LISTED':
                    self.out.put(('sync', self.tag, event.object))
                    continue
                kept = self.transform(event.object)
                if kept is not None:
                    self.out.put(('event', self.tag, event.type, kept))
        except Exception as exc:  # pylint: disable=broad-except
            self.out.put(('watch_failed', self.tag, exc))


# ------------------------------------------------------------------------------------- the runner

class RolloutRunner:
    """Executes a RolloutPlan: restarts, waits, verifies; returns per-workload results."""

    def __init__(self, api, plan, concurrency=10, wait=True, wait_timeout=300, check_mode=False,
                 clock=time.monotonic, now=None, patch_threads=MAX_PATCH_THREADS, progress=None):
        if concurrency is None or concurrency < 0:
            raise InvalidInput('concurrency must be 0 (all at once) or a positive number')
        if wait_timeout is not None and wait_timeout <= 0:
            raise InvalidInput('wait_timeout must be a positive number of seconds')
        self.api = api
        self.plan = plan
        self.concurrency = concurrency
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.check_mode = check_mode
        self.clock = clock
        self.now = now or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.patch_threads = patch_threads
        self.queue = queue.Queue()
        self.stop = threading.Event()
        self.watchers = []
        self.failed_first = None
        self.broken_watches = {}
        self.pending = collections.deque()
        self.progress = progress  # a progress.ProgressPublisher, or None
        self.inflight = {}
        self.total_keys = frozenset()

    # -- results ------------------------------------------------------------------------------

    def results(self):
        workloads = [w.result() for w in self.plan.workloads]
        summary = collections.OrderedDict((a, 0) for a in ('restarted', 'current', 'failed', 'skipped'))
        for w in self.plan.workloads:
            summary[w.action] = summary.get(w.action, 0) + 1
        summary['total'] = len(workloads)
        return workloads, summary

    def diff(self):
        before, after = {}, {}
        for w in self.plan.workloads:
            if w.plan == 'restart' and (w.patched or self.check_mode):
                key = '%s/%s/%s' % (w.namespace, w.kind, w.name)
                before[key] = {restart_field(w.kind): w.before}
                after[key] = {restart_field(w.kind): w.target if w.patched else '(now)'}
        return {'before': before, 'after': after}

    @property
    def changed(self):
        return any(w.action == 'restarted' for w in self.plan.workloads)

    # -- run ------------------------------------------------------------------------------------

    def run(self):
        todo = self.plan.to_restart()
        resume = self.plan.to_resume()
        if self.check_mode:
            for w in todo:
                w.action = 'restarted'
                w.reason = 'check mode: would restart (%s)' % w.reason
            for w in resume:
                w.action = 'restarted'
                w.reason = 'check mode: would wait (%s)' % w.reason
            return self
        if not todo and not resume:
            return self
        self.total_keys = frozenset(w.key for w in todo + resume)
        if not self.wait:
            self._restart_without_waiting(todo, resume)
            return self
        try:
            self._start_watches(todo + resume)
            self._loop(todo, resume)
        finally:
            self.stop.set()
        return self

    def _restart_ts(self, w):
        if w.kind == 'Rollout':
            # the pods Argo evicts are those created before restartAt (seconds): one second ahead, so that
            # no pod of this very second escapes the restart
            return rfc3339_now(self.now() + datetime.timedelta(seconds=1))
        ts = rfc3339_now(self.now())
        if ts == w.before:
            # restarted within this very second already: a patch to the same value would not roll
            ts = rfc3339_now(self.now() + datetime.timedelta(seconds=1))
        return ts

    def _patch(self, w):
        """Send the restart patch (one request; retried by the client only when it failed).  The
        value is fixed before the first try, so a retried patch cannot restart twice."""
        if w.kind == 'DeploymentConfig':
            # oc rollout latest: a DeploymentRequest to the instantiate subresource; the new deployment is
            # the one of the answer's status.latestVersion
            obj = instantiate_deploymentconfig(self.api, w.namespace, w.name)
            w.target = restart_marker(w.kind, obj)
            return obj
        w.target = self._restart_ts(w)
        if w.kind == 'Rollout':
            # kubectl argo rollouts restart: a merge patch of spec.restartAt
            return self.api.patch(w.kind, w.name, {'spec': {'restartAt': w.target}}, namespace=w.namespace,
                                  patch_type='merge')
        return self.api.patch(w.kind, w.name, restart_patch(w.target), namespace=w.namespace, patch_type='strategic')

    def _restart_without_waiting(self, todo, resume):
        from concurrent.futures import ThreadPoolExecutor
        for w in resume:
            w.action = 'restarted'
            w.reason = w.reason + ' (not waited for: wait is false)'
        workers = max(1, min(self.patch_threads, self.concurrency or len(todo) or 1, len(todo) or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [(w, pool.submit(self._patch, w)) for w in todo]
            for w, fut in futures:
                try:
                    obj = fut.result()
                    w.patched = True
                    w.obj = prune_workload(w.kind, obj)
                    w.action = 'restarted'
                    w.reason = 'restarted, not waited for (wait is false)'
                except MeshopsError as exc:
                    w.action = 'failed'
                    w.reason = 'restart failed: %s' % exc

    # -- watches --------------------------------------------------------------------------------

    def _start_watches(self, active):
        keys = frozenset(w.key for w in active)
        kinds = sorted(set(w.kind for w in active))
        namespaces = frozenset(w.namespace for w in active)
        scopes = [s for s in self.plan.scopes if s is None or s in namespaces]

        def workload_transform(kind):
            def transform(obj):
                meta = _meta(obj)
                if (meta.get('namespace'), kind, meta.get('name')) not in keys:
                    return None
                return prune_workload(kind, obj)
            return transform

        def pod_transform(pod):
            meta = _meta(pod)
            owner = pod_owner(pod)
            if owner is None or (meta.get('namespace'),) + owner not in keys:
                return None
            return PodInfo.from_pod(pod), meta.get('namespace')

        def event_transform(event):
            if event.get('reason') != 'FailedCreate':
                return None
            inv = event.get('involvedObject') or {}
            kind, name = inv.get('kind'), inv.get('name') or ''
            namespace = inv.get('namespace') or _meta(event).get('namespace')
            owners = {'ReplicaSet': ('Deployment', 'Rollout'), 'ReplicationController': ('DeploymentConfig',)}
            if kind in owners:
                kind, name = next(((k, name.rsplit('-', 1)[0]) for k in owners[kind]
                                   if (namespace, k, name.rsplit('-', 1)[0]) in keys), (kind, name))
            key = (namespace, kind, name)
            if key not in keys:
                return None
            when = event.get('lastTimestamp') or event.get('eventTime') or \
                event.get('firstTimestamp') or _meta(event).get('creationTimestamp')
            return (kind, name, event.get('message') or 'FailedCreate', when), _meta(event).get('namespace')

        for scope in scopes:
            for kind in kinds:
                self._spawn(('workload', kind, scope), kind, scope,
                            self.plan.list_versions.get((kind, scope)), workload_transform(kind),
                            label_selector=self.plan.selector)
            self._spawn(('pod', scope), 'Pod', scope, self.plan.list_versions.get(('Pod', scope)),
                        pod_transform)
            # FailedCreate events: the watcher lists them itself (in its thread, so the restarts do
            # not wait for it); listed or watched, only events newer than a restart count
            self._spawn(('event', scope), 'Event', scope, None, event_transform,
                        field_selector='reason=FailedCreate')

    def _spawn(self, tag, kind, scope, rv, transform, field_selector=None, label_selector=None):
        watcher = _Watcher(self.api, tag, kind, scope, rv, transform, self.queue, self.stop,
                           field_selector=field_selector, label_selector=label_selector)
        self.watchers.append(watcher)
        watcher.start()

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self, todo, resume):
        from concurrent.futures import ThreadPoolExecutor
        pending = self.pending = collections.deque(todo)
        self.inflight = {}
        self.by_key = dict((w.key, w) for w in todo + resume)
        self.deadlines = []
        limit = self.concurrency or (len(todo) + len(resume))
        for w in resume:
            self._begin_wait(w, None)
        workers = max(1, min(self.patch_threads, limit, len(todo) or 1))
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            while pending or self.inflight:
                while pending and self.failed_first is None and len(self.inflight) < limit:
                    w = pending.popleft()
                    self.inflight[w.key] = w
                    w.since = self.now()
                    w.started = self.clock()
                    w.deadline = w.started + self.wait_timeout
                    heapq.heappush(self.deadlines, (w.deadline, w.key))
                    pool.submit(self._patch_job, w)
                if self.failed_first is not None and pending:
                    for w in pending:
                        w.action = 'skipped'
                        w.reason = 'not restarted: stopped after %s failed' % self.failed_first
                    pending.clear()
                self._publish()
                if not self.inflight:
                    break
                self._expire()
                try:
                    msg = self.queue.get(timeout=self._next_wakeup())
                except queue.Empty:
                    self._recheck_settling()
                    continue
                self._handle(msg)
                # drain what is already there before re-evaluating timers
                for _drained in range(1000):
                    try:
                        self._handle(self.queue.get_nowait())
                    except queue.Empty:
                        break
                self._recheck_settling()
        finally:
            pool.shutdown(wait=True)

    def _patch_job(self, w):
        try:
            obj = self._patch(w)
            self.queue.put(('patched', w.key, prune_workload(w.kind, obj), None))
        except MeshopsError as exc:
            self.queue.put(('patched', w.key, None, exc))
        except Exception as exc:  # pylint: disable=broad-except
            self.queue.put(('patched', w.key, None, exc))

    def _begin_wait(self, w, obj):
        if obj is not None and _rv_newer(_meta(obj).get('resourceVersion'),
                                         _meta(w.obj).get('resourceVersion')):
            w.obj = obj
        if w.since is None:
            w.since = self.now()
        if w.started is None:
            w.started = self.clock()
            w.deadline = w.started + self.wait_timeout
            heapq.heappush(self.deadlines, (w.deadline, w.key))
        self.inflight[w.key] = w
        self._evaluate(w)

    def _next_wakeup(self):
        now = self.clock()
        wake = 1.0
        if self.deadlines:
            wake = min(wake, self.deadlines[0][0] - now)
        for w in self.inflight.values():
            if w.settle_deadline is not None:
                wake = min(wake, w.settle_deadline - now)
        return max(0.01, wake)

    def _expire(self):
        now = self.clock()
        while self.deadlines and self.deadlines[0][0] <= now:
            key = heapq.heappop(self.deadlines)[1]
            w = self.inflight.get(key)
            if w is None or w.finished or w.deadline is None or w.deadline > now:
                continue
            self._fail(w, 'timeout after %ss: %s' % (self.wait_timeout, self._stuck_hints(w)))

    def _stuck_hints(self, w):
        parts = [w.last_message or rollout_progress(w.kind, w.obj).message]
        if w.create_failure:
            parts.append('pod creation failed: %s' % w.create_failure)
        problems = [p.problem[1] for p in w.pods.values() if p.live and p.problem]
        parts.extend(problems[:3])
        return '; '.join(parts)

    def _recheck_settling(self):
        now = self.clock()
        for w in list(self.inflight.values()):
            if w.settle_deadline is not None and now >= w.settle_deadline:
                self._evaluate(w)

    # -- messages -------------------------------------------------------------------------------

    def _handle(self, msg):
        kind = msg[0]
        if kind == 'patched':
            key, obj, exc = msg[1:]
            w = self.by_key[key]
            if exc is not None:
                self._fail(w, 'restart failed: %s' % exc)
                return
            w.patched = True
            if w.finished:
                return  # already failed (e.g. its watch broke) while the patch was under way
            self._begin_wait(w, obj)
        elif kind == 'event':
            tag, etype, item = msg[1:]
            self._on_event(tag, etype, item)
        elif kind == 'sync':
            tag, items = msg[1:]
            self._on_sync(tag, items)
        elif kind == 'watch_failed':
            tag, exc = msg[1:]
            if tag[0] == 'event':
                return  # events only add detail to reasons
            reason = 'cannot watch the rollout (%s): %s' % ('/'.join(str(t) for t in tag[:-1]), exc)
            self.broken_watches[tag] = reason
            for w in list(self.inflight.values()):
                if self._needs_watch(w, tag):
                    self._fail(w, reason)
            # workloads that would need it are not restarted (nobody could follow them)
            for w in list(self.pending):
                if self._needs_watch(w, tag):
                    self.pending.remove(w)
                    self._fail(w, reason + '; not restarted')

    def _needs_watch(self, w, tag):
        scope = tag[-1]
        if scope is not None and w.namespace != scope:
            return False
        return not (tag[0] == 'workload' and w.kind != tag[1])

    def _on_event(self, tag, etype, item):
        if tag[0] == 'workload':
            meta = _meta(item)
            w = self.inflight.get((meta.get('namespace'), tag[1], meta.get('name')))
            if w is None:
                return
            if etype == 'DELETED':
                self._fail(w, 'the %s was deleted during the rollout' % w.kind)
                return
            if _rv_newer(meta.get('resourceVersion'), _meta(w.obj).get('resourceVersion')):
                w.obj = item
            self._evaluate(w)
        elif tag[0] == 'pod':
            info, namespace = item
            key = (namespace,) + info.owner
            w = self.by_key.get(key)
            if w is None:
                return
            if etype == 'DELETED':
                w.pods.pop(info.name, None)
            else:
                w.pods[info.name] = info
            if key in self.inflight:
                self._evaluate(w)
        elif tag[0] == 'event':
            (kind, name, message, when), namespace = item
            w = self.inflight.get((namespace, kind, name))
            if w is None or not self._fresh(w, when):
                return
            w.create_failure = message
            self._evaluate(w)

    def _on_sync(self, tag, items):
        if tag[0] == 'workload':
            kind, scope = tag[1], tag[2]
            seen = {}
            for obj in items:
                seen[(_meta(obj).get('namespace'), kind, _meta(obj).get('name'))] = obj
            for w in list(self.inflight.values()):
                if w.kind != kind or (scope is not None and w.namespace != scope):
                    continue
                if w.key not in seen:
                    self._fail(w, 'the %s was deleted during the rollout' % w.kind)
                else:
                    w.obj = seen[w.key]
                    self._evaluate(w)
        elif tag[0] == 'pod':
            scope = tag[1]
            fresh = collections.defaultdict(dict)
            for info, namespace in items:
                fresh[(namespace,) + info.owner][info.name] = info
            for w in self.by_key.values():
                if scope is None or w.namespace == scope:
                    w.pods = fresh.get(w.key, {})
            for w in list(self.inflight.values()):
                if scope is None or w.namespace == scope:
                    self._evaluate(w)
        elif tag[0] == 'event':
            for item in items:
                self._on_event(tag, 'ADDED', item)

    # -- evaluation -----------------------------------------------------------------------------

    def _fresh(self, w, when):
        """Is a refusal (event or condition) from ``when`` news for this rollout?  Older than the
        restart (or, for a rollout resumed, than this run) it may be stale: it then only shows in
        the timeout's reason.  Two seconds of slack for the API server's clock."""
        stamp = parse_rfc3339(when)
        if stamp is None or w.since is None:
            return True
        return stamp >= w.since - datetime.timedelta(seconds=2)

    def _evaluate(self, w):
        if w.finished or w.key not in self.inflight:
            return
        if w.plan == 'restart' and not w.patched:
            return  # the patch response is not here yet
        progress = rollout_progress(w.kind, w.obj)
        w.last_message = progress.message
        if progress.failed:
            self._fail(w, progress.message)
            return
        template_ts = restart_marker(w.kind, w.obj) or w.target
        new_pods = [p for p in w.pods.values() if p.live and is_new_pod(w.kind, p.restarted_at, template_ts)]
        wrong = [p for p in new_pods if not p.on_revision(w.expected)]
        if wrong:
            # a new pod's sidecar is fixed at its creation: stop now, before the rolling update
            # replaces more pods with ones that are not what this wave is for
            if self._resume_as_restart(w, wrong):
                return
            self._fail(w, 'new pods are not on %s: %s' % (
                'revision %s' % w.expected if w.expected else 'no sidecar',
                '; '.join(p.describe() for p in wrong[:3])))
            return
        for pod in new_pods:
            if pod.problem and pod.problem[0] == 'CrashLoopBackOff':
                self._fail(w, 'CrashLoopBackOff: %s' % pod.problem[1])
                return
            if pod.problem and pod.problem[0] in ('ErrImagePull', 'ImagePullBackOff') and \
                    IMAGE_MISSING_RE.search(pod.problem[1]):
                # the registry says it has no such image (an air-gapped mirror without the new proxy)
                self._fail(w, '%s, the image is missing from the registry: %s' % (pod.problem[0], pod.problem[1]))
                return
        rejected = None
        if w.kind == 'Deployment':
            cond = _condition(w.obj, 'ReplicaFailure')
            if replica_failure(w.obj) and self._fresh(w, cond.get('lastUpdateTime') or
                                                      cond.get('lastTransitionTime')):
                rejected = replica_failure(w.obj)
        observed = _int(_status(w.obj).get('observedGeneration')) >= _int(_meta(w.obj).get('generation'))
        if rejected and observed and 'webhook' in rejected:
            self._fail(w, 'webhook rejected pod creation: %s' % rejected)
            return
        if w.create_failure and 'webhook' in w.create_failure:
            self._fail(w, 'webhook rejected pod creation: %s' % w.create_failure)
            return
        refusal = w.create_failure or (rejected if observed else None)
        if refusal and LIMITS_REFUSAL_RE.search(refusal):
            self._fail(w, 'pod creation refused by a LimitRange or quota of namespace %s: %s' % (w.namespace, refusal))
            return
        if refusal and 'exceeded quota' in refusal and quota_blocks_for_good(w.kind, w.obj):
            named = refusal[refusal.index('exceeded quota'):]
            self._fail(w, 'pod creation refused, %s (the rollout cannot make room: maxUnavailable is 0); raise the '
                          'quota of namespace %s or lower its use' % (named, w.namespace))
            return
        if rejected and observed:
            w.create_failure = rejected
        if not progress.done:
            w.settle_deadline = None
            return
        # rolled out (the status says the old pods are gone): have we seen the new pods -- each one's
        # injection is known from its creation -- as many as there should be?
        want = desired_pods(w.kind, w.obj)
        new_live = [p for p in w.pods.values() if p.live and is_new_pod(w.kind, p.restarted_at, template_ts)]
        if len(new_live) >= want or w.refreshed:
            self._verify(w, w.live_pods() if w.refreshed else new_live)
            return
        now = self.clock()
        if w.settle_deadline is None:
            w.settle_deadline = now + VERIFY_GRACE_SECONDS
            return
        if now < w.settle_deadline:
            return
        # the pod watch lags: list this workload's pods once and judge what really runs
        self._refresh_pods(w)
        self._verify(w, w.live_pods())

    def _resume_as_restart(self, w, bad):
        """A rollout we only waited for brings pods on the wrong revision (it was not ours, or the
        tag moved since): queue the workload for a restart -- the first and only one of this run."""
        if w.plan != 'resume' or w.patched:
            return False
        self.inflight.pop(w.key, None)
        w.plan = 'restart'
        w.reason = 'the rollout in progress brings pods on the wrong revision (%s); restarted' \
            % bad[0].describe()
        w.started = w.deadline = w.settle_deadline = None
        w.refreshed = False
        self.pending.appendleft(w)
        return True

    def _refresh_pods(self, w):
        """The pod watch has not shown the new pods in time: list this workload's pods once."""
        w.refreshed = True
        w.settle_deadline = None
        selector = workload_selector(w.kind, w.obj)
        try:
            infos = self.api.list_with_version('Pod', w.namespace, selector,
                                               transform=lambda pod: (PodInfo.from_pod(pod), w.namespace))[0]
        except MeshopsError:
            return
        fresh = {}
        for info, namespace in infos:
            if info.owner == (w.kind, w.name):
                fresh[info.name] = info
        w.pods = fresh

    def _verify(self, w, live):
        bad = [p for p in live if not p.on_revision(w.expected)]
        if bad and self._resume_as_restart(w, bad):
            return
        if bad:
            expected = 'revision %s' % w.expected if w.expected else 'no sidecar'
            self._fail(w, 'rolled out, but %d of %d pods are not on %s: %s' % (
                len(bad), len(live), expected, '; '.join(p.describe() for p in bad[:3])))
            return
        w.to_version = versions_of(live)
        w.duration = self.clock() - w.started
        w.action = 'restarted'
        if w.plan == 'restart' and not (w.reason or '').startswith('the rollout in progress'):
            w.reason = None
        w.finished = True
        w.settle_deadline = None
        self.inflight.pop(w.key, None)

    def _fail(self, w, reason):
        if w.finished:
            return
        w.finished = True
        w.action = 'failed'
        w.reason = reason
        w.settle_deadline = None
        if w.started is not None:
            w.duration = self.clock() - w.started
        live = [p for p in w.pods.values() if p.live and is_new_pod(
            w.kind, p.restarted_at, restart_marker(w.kind, w.obj) or w.target)]
        w.to_version = versions_of(live)
        self.inflight.pop(w.key, None)
        if self.failed_first is None:
            self.failed_first = w.ref
        if self.progress is not None:
            self.progress.due(urgent=True)

    # -- live progress (progress.py) ----------------------------------------------------------------

    def progress_counts(self):
        return progress_snapshot(self.plan.workloads, self.inflight, self.total_keys)

    def _publish(self):
        if self.progress is not None and self.progress.due():
            self.progress.offer(self.progress_counts())


def failure_message(workloads):
    """The module's msg when workloads failed: each one named with its reason."""
    failed = [w for w in workloads if w['action'] == 'failed']
    return '%d workload%s failed: %s' % (
        len(failed), '' if len(failed) == 1 else 's',
        '; '.join('%s/%s/%s: %s' % (w['namespace'], w['kind'], w['name'], w['reason'])
                  for w in failed))


def run_rollout(api, namespaces=None, namespace_selector=None, kinds=None, selector=None,
                names=None, only_stale=True, revision=None, wait=True, wait_timeout=300,
                concurrency=10, check_mode=False, diff=False, progress=None):
    """Plan and run; return the module result (``progress``: a progress.ProgressPublisher, fed while it runs).

    ``api`` is a ClusterClient (or a fake with its methods).  Raises a MeshopsError for
    problems found before anything was changed (missing namespace, unknown revision...), and
    RolloutFailed, whose ``result`` holds every workload's outcome, when a workload failed."""
    if concurrency is None or concurrency < 0:
        raise InvalidInput('concurrency must be 0 (all at once) or a positive number')
    plan = RolloutPlan.build(api, namespaces=namespaces, namespace_selector=namespace_selector,
                             kinds=kinds, selector=selector, names=names, only_stale=only_stale,
                             revision=revision)
    runner = RolloutRunner(api, plan, concurrency=concurrency, wait=wait, wait_timeout=wait_timeout,
                           check_mode=check_mode, progress=None if check_mode else progress)
    ran = False
    try:
        runner.run()
        ran = True
    finally:
        if runner.progress is not None and runner.total_keys:
            failed = not ran or any(w.action == 'failed' for w in plan.workloads)
            runner.progress.finish(runner.progress_counts(), 'failed' if failed else 'done')
    workloads, summary = runner.results()
    result = {'changed': runner.changed, 'workloads': workloads, 'summary': summary,
              'changes': [dict((k, w[k]) for k in ('kind', 'namespace', 'name', 'action'))
                          for w in workloads if w['action'] == 'restarted']}
    if diff:
        result['diff'] = runner.diff()
    if summary.get('failed'):
        raise RolloutFailed(failure_message(workloads), result=result)
    result['msg'] = '%d restarted, %d current, %d skipped' % (
        summary['restarted'], summary['current'], summary['skipped'])
    return result
