"""An in-memory stand-in for the ClusterClient calls the rollout engine makes, with small controllers.

Not a cluster simulator (tests/kubesim is): just enough behaviour to exercise the engine's logic
deterministically and fast -- lists with a resourceVersion, the restart patch, watches that replay
events from a resourceVersion (and can be made to drop or to answer 410 Gone), and a background
"controller" that rolls Deployments/StatefulSets/DaemonSets pod by pod, injecting each new pod with
the revision currently configured for its namespace (or refusing it like a broken webhook), with
proxy versions that can be made to crash-loop.
"""

import copy
import itertools
import json
import threading
import time

from ansible_collections.meshops.istio.plugins.module_utils.client import WatchEvent
from ansible_collections.meshops.istio.plugins.module_utils.errors import Gone, NotFound
from ansible_collections.meshops.istio.plugins.module_utils.rollout import (
    RESTARTED_AT,
    WatchDropped,
)

VERSIONS = {'1-14-6': '1.14.6', '1-15-4': '1.15.4'}


def mwc(name, labels):
    return {'metadata': {'name': name, 'labels': labels}, 'webhooks': []}


def injector(rev):
    return mwc('istio-sidecar-injector-%s' % rev, {'app': 'sidecar-injector', 'istio.io/rev': rev})


def tag(tag_name, rev):
    return mwc('istio-revision-tag-%s' % tag_name, {'istio.io/tag': tag_name, 'istio.io/rev': rev,
                                                    'app': 'sidecar-injector'})


class FakeApi:
    def __init__(self, tag_revision='1-15-4', step=0.004, ready_steps=2):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.rv = 100
        self.objects = {}     # kind -> {(ns, name): obj}
        self.log = []         # (rv, kind, type, obj)
        self.calls = []       # (verb, kind, namespace)
        self.patches = []     # (kind, ns, name)
        self.tag_revision = tag_revision
        self.webhook_error = {}     # namespace -> message: pod creation refused
        self.crash_versions = set()
        self.no_injection = set()      # namespaces whose new pods get no sidecar (failurePolicy Ignore)
        self.drop_watch_after = None   # end every watch abnormally after this many events
        self.gone_next = set()         # kinds whose next watch answers 410
        self.watch_errors = {}         # kind -> exception every watch of it raises (e.g. Forbidden)
        self.compacted_rv = 0
        self.step = step
        self.ready_steps = ready_steps
        self.paused = False
        self.nodes = 2
        self.progress_deadline_steps = None
        self.on_patch = None
        self._names = itertools.count(1)
        self._stop = threading.Event()
        self.objects['MutatingWebhookConfiguration'] = {}
        for obj in (injector('1-14-6'), injector('1-15-4'), tag('default', tag_revision)):
            self.objects['MutatingWebhookConfiguration'][(None, obj['metadata']['name'])] = obj
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self):
        self._stop.set()
        self.thread.join(2)

    # ----------------------------------------------------------------------------- cluster set-up

    def _bump(self, kind, etype, obj):
        self.rv += 1
        obj['metadata']['resourceVersion'] = str(self.rv)
        self.log.append((self.rv, kind, etype, copy.deepcopy(obj)))
        self.changed.notify_all()

    def add(self, kind, obj, etype='ADDED'):
        with self.lock:
            meta = obj['metadata']
            self.objects.setdefault(kind, {})[(meta.get('namespace'), meta['name'])] = obj
            self._bump(kind, etype, obj)
        return obj

    def namespace(self, name, labels=None):
        return self.add('Namespace', {'metadata': {'name': name,
                                                   'labels': labels or {'istio.io/rev': 'default'}}})

    def set_tag(self, revision):
        with self.lock:
            self.tag_revision = revision
            self.add('MutatingWebhookConfiguration', tag('default', revision), 'MODIFIED')

    def workload(self, kind, ns, name, replicas=2, revision='1-14-6', paused=False, strategy=None,
                 template_annotations=None, labels=None, status_done=True):
        spec = {'selector': {'matchLabels': {'app': name}},
                'template': {'metadata': {'labels': {'app': name},
                                          'annotations': dict(template_annotations or {})},
                             'spec': {'containers': [{'name': name, 'image': 'app:1'}]}}}
        if kind != 'DaemonSet':
            spec['replicas'] = replicas
        if paused:
            spec['paused'] = True
        if strategy:
            spec['updateStrategy' if kind != 'Deployment' else 'strategy'] = {'type': strategy}
        obj = {'metadata': {'name': name, 'namespace': ns, 'generation': 1, 'uid': 'uid-%s' % name,
                            'labels': dict(labels or {})},
               'spec': spec, 'status': {'observedGeneration': 1}}
        with self.lock:
            self.add(kind, obj)
            count = self.nodes if kind == 'DaemonSet' else replicas
            for _index in range(count):
                self._create_pod(kind, obj, revision=revision, ready=True)
            self._update_status(kind, obj)
        return obj

    def pods_of(self, kind, ns, name):
        with self.lock:
            return [copy.deepcopy(p) for p in self.objects.get('Pod', {}).values()
                    if p['metadata']['namespace'] == ns and p['metadata']['owner'] == (kind, name)
                    and not p['metadata'].get('deletionTimestamp')]

    # ------------------------------------------------------------------------------- the "API"

    def _match(self, kind, obj, namespace, label_selector, field_selector):
        meta = obj['metadata']
        if namespace is not None and meta.get('namespace') != namespace:
            return False
        if label_selector:
            labels = meta.get('labels') or {}
            for part in label_selector.split(','):
                key, value = part.partition('=')[::2]
                if labels.get(key) != value:
                    return False
        if field_selector:
            for part in field_selector.split(','):
                key, value = part.partition('=')[::2]
                if key == 'reason' and obj.get('reason') != value:
                    return False
        return True

    def list_with_version(self, kind, namespace=None, label_selector=None, field_selector=None, api_version=None,
                          transform=None):
        with self.lock:
            self.calls.append(('list', kind, namespace))
            items = []
            for obj in self.objects.get(kind, {}).values():
                if not self._match(kind, obj, namespace, label_selector, field_selector):
                    continue
                view = self._view(kind, obj)
                kept = transform(view) if transform else view
                if kept is not None:
                    items.append(kept)
            return items, str(self.rv)

    def patch(self, kind, name, patch, namespace=None, patch_type='merge'):
        """Only the engine's restart patch (strategic merge of the restartedAt annotation)."""
        assert patch_type == 'strategic', patch_type
        return self.restart(kind, namespace, name,
                            patch['spec']['template']['metadata']['annotations'][RESTARTED_AT])

    def restart(self, kind, namespace, name, restarted_at):
        with self.lock:
            self.calls.append(('patch', kind, namespace))
            obj = self.objects.get(kind, {}).get((namespace, name))
            if obj is None:
                raise NotFound('%s %s/%s not found' % (kind, namespace, name))
            ann = obj['spec']['template']['metadata'].setdefault('annotations', {})
            if ann.get(RESTARTED_AT) != restarted_at:
                ann[RESTARTED_AT] = restarted_at
                obj['metadata']['generation'] += 1
                obj['status'].pop('_deadline_at', None)
            self.patches.append((kind, namespace, name))
            self._bump(kind, 'MODIFIED', obj)
            view = self._view(kind, obj)
            if self.on_patch:
                self.on_patch(kind, namespace, name)
        return view

    def watch(self, kind, namespace=None, label_selector=None, field_selector=None,
              resource_version=None, timeout_seconds=60):
        with self.lock:
            self.calls.append(('watch', kind, namespace))
            if kind in self.watch_errors:
                raise self.watch_errors[kind]
            if kind in self.gone_next:
                self.gone_next.discard(kind)
                raise Gone('too old', status=410)
            if resource_version is not None and int(resource_version) < self.compacted_rv:
                raise Gone('too old', status=410)
        pos = int(resource_version or 0)
        sent = 0
        deadline = time.monotonic() + min(timeout_seconds, 0.5)
        while time.monotonic() < deadline and not self._stop.is_set():
            with self.lock:
                batch = [e for e in self.log if e[0] > pos and e[1] == kind and
                         self._match(kind, e[3], namespace, label_selector, field_selector)]
                if not batch:
                    self.changed.wait(0.05)
                    continue
            for rv, _kind, etype, obj in batch:
                pos = rv
                if self.drop_watch_after is not None and sent >= self.drop_watch_after:
                    raise WatchDropped('dropped by the fake')
                sent += 1
                yield WatchEvent(etype, self._view(kind, obj), str(rv))

    def _view(self, kind, obj):
        view = copy.deepcopy(obj)
        if kind == 'Pod':
            owner = view['metadata'].pop('owner')
            ref_kind, ref_name = owner
            if owner[0] == 'Deployment':
                ref_kind, ref_name = 'ReplicaSet', '%s-%s' % (owner[1], view['metadata']['labels']
                                                              ['pod-template-hash'])
            view['metadata']['ownerReferences'] = [{'kind': ref_kind, 'name': ref_name,
                                                    'controller': True}]
        view.get('status', {}).pop('_deadline_at', None)
        return view

    # ------------------------------------------------------------------------------ controllers

    def _template_hash(self, obj):
        return str(abs(hash(json.dumps(obj['spec']['template'], sort_keys=True))) % 10 ** 8)

    def _create_pod(self, kind, obj, revision=None, ready=False):
        meta = obj['metadata']
        ns = meta['namespace']
        if revision is None:
            if ns in self.webhook_error:
                return None
            revision = self.tag_revision
        version = VERSIONS.get(revision, revision)
        thash = self._template_hash(obj)
        ann = dict(obj['spec']['template']['metadata'].get('annotations') or {})
        containers = [{'name': 'app', 'image': 'app:1'},
                      {'name': 'istio-proxy', 'image': 'docker.io/istio/proxyv2:%s' % version}]
        if ns in self.no_injection and not ready:
            containers = containers[:1] + [{'name': 'sidecar-less', 'image': 'none:%s' % version}]
        else:
            ann['sidecar.istio.io/status'] = json.dumps({'revision': revision})
        pod = {'metadata': {'name': '%s-%d' % (meta['name'], next(self._names)), 'namespace': ns,
                            'labels': dict(obj['spec']['template']['metadata']['labels'],
                                           **{'pod-template-hash': thash}),
                            'annotations': ann, 'owner': (kind, meta['name']), 'hash': thash,
                            'age': 0},
               'spec': {'containers': containers},
               'status': {'phase': 'Running', 'conditions': [{'type': 'Ready',
                                                              'status': str(ready)}]}}
        return self.add('Pod', pod)

    def _pods(self, kind, obj):
        ns, name = obj['metadata']['namespace'], obj['metadata']['name']
        return [p for p in self.objects.get('Pod', {}).values()
                if p['metadata']['namespace'] == ns and p['metadata']['owner'] == (kind, name)]

    def _ready(self, pod):
        return pod['status']['conditions'][0]['status'] == 'True'

    def _delete_pod(self, pod):
        del self.objects['Pod'][(pod['metadata']['namespace'], pod['metadata']['name'])]
        self._bump('Pod', 'DELETED', pod)

    def _event(self, ns, kind, name, message):
        ev = {'metadata': {'name': 'ev-%d' % next(self._names), 'namespace': ns},
              'reason': 'FailedCreate', 'message': message,
              'involvedObject': {'kind': kind, 'name': name, 'namespace': ns}}
        self.add('Event', ev)

    def _run(self):
        while not self._stop.wait(self.step):
            with self.lock:
                if self.paused:
                    continue
                for kind in ('Deployment', 'StatefulSet', 'DaemonSet'):
                    for obj in list(self.objects.get(kind, {}).values()):
                        self._reconcile(kind, obj)

    def _reconcile(self, kind, obj):
        spec, status = obj['spec'], obj['status']
        if kind == 'Deployment' and spec.get('paused'):
            return
        strategy = (spec.get('updateStrategy') or {}).get('type')
        changed = False
        if status.get('observedGeneration') != obj['metadata']['generation']:
            status['observedGeneration'] = obj['metadata']['generation']
            changed = True
        want = self.nodes if kind == 'DaemonSet' else spec['replicas']
        thash = self._template_hash(obj)
        pods = self._pods(kind, obj)
        for pod in pods:   # kubelet: new pods become ready after a few steps, unless crashing
            if not self._ready(pod) and pod['metadata']['hash'] == thash:
                pod['metadata']['age'] += 1
                version = pod['spec']['containers'][1]['image'].rsplit(':', 1)[1]
                if version in self.crash_versions:
                    if not pod['status'].get('containerStatuses') and pod['metadata']['age'] > 1:
                        pod['status']['containerStatuses'] = [{
                            'name': 'istio-proxy', 'restartCount': 3,
                            'state': {'waiting': {'reason': 'CrashLoopBackOff',
                                                  'message': 'back-off 40s restarting'}}}]
                        self._bump('Pod', 'MODIFIED', pod)
                elif pod['metadata']['age'] >= self.ready_steps:
                    pod['status']['conditions'][0]['status'] = 'True'
                    self._bump('Pod', 'MODIFIED', pod)
        if strategy != 'OnDelete':
            new = [p for p in pods if p['metadata']['hash'] == thash]
            old = [p for p in pods if p['metadata']['hash'] != thash]
            new_ready = [p for p in new if self._ready(p)]
            unhealthy_old = [p for p in old if not self._ready(p)]
            if unhealthy_old:   # like the real controller: unhealthy old replicas go first
                self._delete_pod(unhealthy_old[0])
                changed = True
            elif old and len(new_ready) > 0 and len(new_ready) + len(old) > want:
                self._delete_pod(old[0])
                changed = True
            elif len(new) < want and len(new) == len(new_ready) and len(new) + len(old) <= want:
                if self._create_pod(kind, obj) is None:
                    msg = ('Internal error occurred: failed calling webhook '
                           '"namespace.sidecar-injector.istio.io": %s'
                           % self.webhook_error[obj['metadata']['namespace']])
                    if kind == 'Deployment':
                        conds = [c for c in status.get('conditions', []) if c['type'] != 'ReplicaFailure']
                        conds.append({'type': 'ReplicaFailure', 'status': 'True',
                                      'reason': 'FailedCreate', 'message': msg})
                        if conds != status.get('conditions'):
                            status['conditions'] = conds
                            changed = True
                    elif not status.get('_event_sent'):
                        status['_event_sent'] = True
                        self._event(obj['metadata']['namespace'], kind, obj['metadata']['name'],
                                    'create Pod %s-0 in %s %s failed error: %s'
                                    % (obj['metadata']['name'], kind, obj['metadata']['name'], msg))
                else:
                    changed = True
        if self.progress_deadline_steps is not None and kind == 'Deployment':
            status['_deadline_at'] = status.get('_deadline_at', 0) + 1
            if status['_deadline_at'] == self.progress_deadline_steps:
                status['conditions'] = [{'type': 'Progressing', 'status': 'False',
                                         'reason': 'ProgressDeadlineExceeded',
                                         'message': 'ReplicaSet has timed out progressing.'}]
                changed = True
        if self._update_status(kind, obj) or changed:
            self._bump(kind, 'MODIFIED', obj)

    def _update_status(self, kind, obj):
        status = obj['status']
        before = dict(status)
        pods = self._pods(kind, obj)
        thash = self._template_hash(obj)
        new = [p for p in pods if p['metadata']['hash'] == thash]
        ready = [p for p in pods if self._ready(p)]
        new_ready = [p for p in new if self._ready(p)]
        if kind == 'Deployment':
            status.update(replicas=len(pods), updatedReplicas=len(new), readyReplicas=len(ready),
                          availableReplicas=len(ready))
        elif kind == 'StatefulSet':
            status.update(replicas=len(pods), updatedReplicas=len(new), readyReplicas=len(ready),
                          updateRevision='r' + thash)
            if len(new_ready) == obj['spec']['replicas'] and len(pods) == len(new):
                status['currentRevision'] = 'r' + thash
                status['currentReplicas'] = len(new)
            status.setdefault('currentRevision', 'r' + thash)
        else:
            status.update(desiredNumberScheduled=self.nodes, updatedNumberScheduled=len(new),
                          numberAvailable=len(ready), numberReady=len(ready))
        return status != before
