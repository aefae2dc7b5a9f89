"""An in-memory stand-in for ClusterClient used by the module_utils/module unit tests.

It keeps objects by (kind, namespace, name), bumps resourceVersion on every write, enforces
resourceVersion preconditions (409) like the API server, and records every write, so tests can
assert on what was (not) written.  Integration tests use tests/kubesim instead.
"""
import copy
import json

from ansible_collections.meshops.istio.plugins.module_utils import errors
from ansible_collections.meshops.istio.plugins.module_utils.client import ReadModifyWrite
from ansible_collections.meshops.istio.plugins.module_utils.mesh import selector_matches

CA = 'LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmZha2UKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo='


CLUSTER_SCOPED = ('Namespace', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration',
                  'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding')


class FakeCluster(ReadModifyWrite):
    """update_with_retry is ClusterClient's own (the ReadModifyWrite mixin) on top of the calls below."""

    def __init__(self, objects=()):
        self.objects = {}
        self.rv = 100
        self.writes = []
        self.conflicts = {}   # (kind, name) -> how many writes to refuse with 409 first
        for obj in objects:
            self.put(obj)

    # helpers -----------------------------------------------------------------------------------
    def _key(self, kind, name, namespace=None):
        if kind in CLUSTER_SCOPED:
            namespace = None
        return (kind, namespace, name)

    def put(self, obj):
        obj = copy.deepcopy(obj)
        meta = obj.setdefault('metadata', {})
        self.rv += 1
        meta['resourceVersion'] = str(self.rv)
        meta.setdefault('generation', 1)
        self.objects[self._key(obj['kind'], meta['name'], meta.get('namespace'))] = obj
        return copy.deepcopy(obj)

    def resource_versions(self):
        return dict((k, v['metadata']['resourceVersion']) for k, v in self.objects.items())

    def find(self, kind, name, namespace=None):
        obj = self.objects.get(self._key(kind, name, namespace))
        return copy.deepcopy(obj) if obj else None

    # ClusterClient API -------------------------------------------------------------------------
    def get(self, kind, name, namespace=None, api_version=None):
        obj = self.find(kind, name, namespace)
        if obj is None:
            raise errors.NotFound('get %s %s failed: not found (HTTP 404)' % (kind, name), status=404,
                                  reason='NotFound')
        return obj

    def get_or_none(self, kind, name, namespace=None, api_version=None):
        return self.find(kind, name, namespace)

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, api_version=None):
        out = []
        for (k, ns, _n), obj in sorted(self.objects.items(), key=lambda kv: str(kv[0])):
            if k != kind or (namespace and ns != namespace):
                continue
            if label_selector:
                sel = {'matchLabels': dict(part.split('=', 1) for part in label_selector.split(','))}
                if not selector_matches(sel, obj['metadata'].get('labels')):
                    continue
            out.append(copy.deepcopy(obj))
        return out

    def list_with_version(self, kind, namespace=None, label_selector=None, field_selector=None, api_version=None):
        return self.list(kind, namespace, label_selector, field_selector), str(self.rv)

    def _maybe_conflict(self, kind, name):
        left = self.conflicts.get((kind, name), 0)
        if left:
            self.conflicts[(kind, name)] = left - 1
            # someone else wrote it meanwhile
            key = self._key(kind, name)
            if key in self.objects:
                self.rv += 1
                self.objects[key]['metadata']['resourceVersion'] = str(self.rv)
                self.objects[key]['metadata'].setdefault('annotations', {})['other-writer'] = str(self.rv)
            raise errors.Conflict('conflict', status=409, reason='Conflict')

    def create(self, kind, obj, namespace=None, dry_run=False):
        meta = obj['metadata']
        self._maybe_conflict(kind, meta['name'])
        if self.find(kind, meta['name'], namespace or meta.get('namespace')):
            raise errors.AlreadyExists('exists', status=409, reason='AlreadyExists')
        obj = dict(obj, kind=kind)
        if dry_run:
            return copy.deepcopy(obj)
        self.writes.append(('create', kind, meta['name']))
        return self.put(obj)

    def replace(self, kind, obj, namespace=None, dry_run=False):
        meta = obj['metadata']
        self._maybe_conflict(kind, meta['name'])
        live = self.find(kind, meta['name'], namespace or meta.get('namespace'))
        if live is None:
            raise errors.NotFound('not found', status=404, reason='NotFound')
        if meta.get('resourceVersion') and meta['resourceVersion'] != live['metadata']['resourceVersion']:
            raise errors.Conflict('the object has been modified', status=409, reason='Conflict')
        if dry_run:
            return copy.deepcopy(obj)
        self.writes.append(('replace', kind, meta['name']))
        return self.put(dict(obj, kind=kind))

    def patch(self, kind, name, patch, namespace=None, patch_type='merge', api_version=None, **_kw):
        """A JSON merge patch (RFC 7386: null removes a key), the only kind the modules under test send here."""
        live = self.find(kind, name, namespace)
        if live is None:
            raise errors.NotFound('patch %s %s failed: not found (HTTP 404)' % (kind, name), status=404,
                                  reason='NotFound')

        def merge(target, change):
            for key, value in change.items():
                if value is None:
                    target.pop(key, None)
                elif isinstance(value, dict) and isinstance(target.get(key), dict):
                    merge(target[key], value)
                else:
                    target[key] = copy.deepcopy(value)

        merge(live, patch)
        if _kw.get('dry_run'):
            return live
        self.writes.append(('patch', kind, name))
        return self.put(live)

    def delete(self, kind, name, namespace=None, propagation='Background', dry_run=False,
               resource_version=None, missing_ok=True, api_version=None):
        key = self._key(kind, name, namespace)
        if key not in self.objects:
            if missing_ok:
                return False
            raise errors.NotFound('not found', status=404, reason='NotFound')
        if resource_version and self.objects[key]['metadata']['resourceVersion'] != resource_version:
            raise errors.Conflict('precondition failed', status=409, reason='Conflict')
        if not dry_run:
            self.writes.append(('delete', kind, name))
            del self.objects[key]
        return True

    def wait_for(self, kind, name, namespace, predicate, timeout, description=None, api_version=None):
        obj = self.find(kind, name, namespace)
        if predicate(obj):
            return obj
        raise errors.WaitTimeout('Timed out waiting for %s %s' % (kind, name))


# --- Istio-shaped objects (like an istioctl-installed 1.14/1.15 control plane) ----------------------

def _expr(key, op, values=None):
    e = {'key': key, 'operator': op}
    if values is not None:
        e['values'] = values
    return e


def _hook(prefix, svc, ns_sel, obj_sel, path='/inject'):
    return {'name': prefix + 'sidecar-injector.istio.io',
            'clientConfig': {'service': {'name': svc, 'namespace': 'istio-system', 'path': path,
                                         'port': 443}, 'caBundle': CA},
            'rules': [{'operations': ['CREATE'], 'apiGroups': [''], 'apiVersions': ['v1'],
                       'resources': ['pods'], 'scope': '*'}],
            'failurePolicy': 'Fail', 'matchPolicy': 'Equivalent', 'sideEffects': 'None',
            'timeoutSeconds': 10, 'admissionReviewVersions': ['v1beta1', 'v1'],
            'reinvocationPolicy': 'Never', 'namespaceSelector': ns_sel, 'objectSelector': obj_sel}


def rev_hooks(value, svc):
    return [
        _hook('rev.namespace.', svc,
              {'matchExpressions': [_expr('istio.io/rev', 'In', [value]), _expr('istio-injection', 'DoesNotExist')]},
              {'matchExpressions': [_expr('sidecar.istio.io/inject', 'NotIn', ['false'])]}),
        _hook('rev.object.', svc,
              {'matchExpressions': [_expr('istio.io/rev', 'DoesNotExist'), _expr('istio-injection', 'DoesNotExist')]},
              {'matchExpressions': [_expr('sidecar.istio.io/inject', 'NotIn', ['false']),
                                    _expr('istio.io/rev', 'In', [value])]}),
    ]


def default_hooks(svc):
    return [
        _hook('namespace.', svc, {'matchExpressions': [_expr('istio-injection', 'In', ['enabled'])]},
              {'matchExpressions': [_expr('sidecar.istio.io/inject', 'NotIn', ['false'])]}),
        _hook('object.', svc,
              {'matchExpressions': [_expr('istio-injection', 'DoesNotExist'), _expr('istio.io/rev', 'DoesNotExist')]},
              {'matchExpressions': [_expr('sidecar.istio.io/inject', 'In', ['true']),
                                    _expr('istio.io/rev', 'DoesNotExist')]}),
    ]


def istiod(revision, version, ready=True, replicas=1, version_label=True):
    name = 'istiod' if revision == 'default' else 'istiod-' + revision
    labels = {'app': 'istiod', 'istio.io/rev': revision}
    if version_label:
        labels['operator.istio.io/version'] = version
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment',
            'metadata': {'name': name, 'namespace': 'istio-system', 'labels': labels, 'generation': 1},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': {'app': 'istiod', 'istio.io/rev': revision}},
                     'template': {'metadata': {'labels': {'app': 'istiod', 'istio.io/rev': revision}},
                                  'spec': {'containers': [{'name': 'discovery',
                                                           'image': 'docker.io/istio/pilot:' + version}]}}},
            'status': {'observedGeneration': 1, 'replicas': replicas,
                       'updatedReplicas': replicas, 'readyReplicas': replicas if ready else 0,
                       'availableReplicas': replicas if ready else 0}}


def service(revision):
    name = 'istiod' if revision == 'default' else 'istiod-' + revision
    return {'apiVersion': 'v1', 'kind': 'Service',
            'metadata': {'name': name, 'namespace': 'istio-system', 'labels': {'app': 'istiod'}},
            'spec': {'selector': {'app': 'istiod', 'istio.io/rev': revision}}}


def injector(revision):
    svc = 'istiod' if revision == 'default' else 'istiod-' + revision
    hooks = rev_hooks(revision, svc)
    name = 'istio-sidecar-injector' if revision == 'default' else 'istio-sidecar-injector-' + revision
    if revision == 'default':
        hooks += default_hooks(svc)
    return {'apiVersion': 'admissionregistration.k8s.io/v1', 'kind': 'MutatingWebhookConfiguration',
            'metadata': {'name': name, 'labels': {'app': 'sidecar-injector', 'istio.io/rev': revision,
                                                  'release': 'istio'}},
            'webhooks': hooks}


def tag(name, revision):
    svc = 'istiod-' + revision
    hooks = rev_hooks(name, svc) + (default_hooks(svc) if name == 'default' else [])
    return {'apiVersion': 'admissionregistration.k8s.io/v1', 'kind': 'MutatingWebhookConfiguration',
            'metadata': {'name': 'istio-revision-tag-' + name,
                         'labels': {'app': 'sidecar-injector', 'istio.io/tag': name, 'istio.io/rev': revision,
                                    'release': 'istio'}},
            'webhooks': hooks}


def validator(revision):
    return {'apiVersion': 'admissionregistration.k8s.io/v1', 'kind': 'ValidatingWebhookConfiguration',
            'metadata': {'name': 'istiod-default-validator',
                         'labels': {'app': 'istiod', 'istio.io/rev': revision, 'istio.io/tag': 'default'}},
            'webhooks': [{'name': 'validation.istio.io',
                          'clientConfig': {'service': {'name': 'istiod-' + revision, 'namespace': 'istio-system',
                                                       'path': '/validate', 'port': 443}, 'caBundle': CA},
                          'rules': [{'operations': ['CREATE', 'UPDATE'], 'apiGroups': ['networking.istio.io'],
                                     'apiVersions': ['*'], 'resources': ['*'], 'scope': '*'}],
                          'failurePolicy': 'Fail', 'sideEffects': 'None',
                          'admissionReviewVersions': ['v1beta1', 'v1'],
                          'objectSelector': {'matchExpressions': [_expr('istio.io/rev', 'DoesNotExist')]}}]}


def namespace(name, labels=None):
    labels = dict(labels or {})
    return {'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': name, 'labels': labels}}


def deployment(ns, name, replicas=2, template_labels=None):
    tl = dict({'app': name}, **(template_labels or {}))
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment',
            'metadata': {'name': name, 'namespace': ns, 'labels': {'app': name, 'tier': 'web'}, 'generation': 1},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': {'app': name}},
                     'template': {'metadata': {'labels': tl}, 'spec': {'containers': [{'name': 'app', 'image': 'app:1'}]}}},
            'status': {'observedGeneration': 1, 'replicas': replicas, 'readyReplicas': replicas,
                       'updatedReplicas': replicas, 'availableReplicas': replicas}}


def pod(ns, workload, index, revision=None, version=None, digest='5d8f7c9b6'):
    meta = {'name': '%s-%s-%05d' % (workload, digest, index), 'namespace': ns,
            'labels': {'app': workload, 'pod-template-hash': digest},
            'ownerReferences': [{'apiVersion': 'apps/v1', 'kind': 'ReplicaSet', 'controller': True,
                                 'name': '%s-%s' % (workload, digest)}]}
    containers = [{'name': 'app', 'image': 'app:1'}]
    if revision:
        meta['annotations'] = {'sidecar.istio.io/status': json.dumps({'containers': ['istio-proxy'],
                                                                     'revision': revision})}
        meta['labels']['istio.io/rev'] = revision
        containers.append({'name': 'istio-proxy', 'image': 'docker.io/istio/proxyv2:' + version})
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': meta, 'spec': {'containers': containers},
            'status': {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': 'True'}]}}


def blog(extra=()):
    """The reference articles' starting point: 1-14-6 behind tag default, foo/bar/baz/istio-ingress
    labelled istio.io/rev=default, two pods each on 1.14.6."""
    objs = [istiod('1-14-6', '1.14.6'), service('1-14-6'), injector('1-14-6'), tag('default', '1-14-6'),
            validator('1-14-6'), namespace('istio-system')]
    for ns in ('foo', 'bar', 'baz', 'istio-ingress'):
        name = 'istio-ingressgateway' if ns == 'istio-ingress' else ns
        objs.append(namespace(ns, {'istio.io/rev': 'default'}))
        objs.append(deployment(ns, name))
        objs += [pod(ns, name, i, '1-14-6', '1.14.6') for i in range(2)]
    return list(objs) + list(extra)
