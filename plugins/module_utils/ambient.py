# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Istio's ambient data plane and Gateway API gateways: the one place that knows them.

What Istio does (its charts and source, checked for 1.24-1.30):

* ``istio-cni`` and ``ztunnel`` are DaemonSets in the Istio namespace (charts ``istio-cni``: DaemonSet
  ``istio-cni-node``, pods ``k8s-app=istio-cni-node``; ``ztunnel``: DaemonSet ``ztunnel``, pods ``app=ztunnel``).
  They are never canaried: one of each per node.  ztunnel's ``revision`` value picks the istiod it takes config
  and certificates from (``XDS_ADDRESS``/``CA_ADDRESS`` ``istiod-<rev>.<ns>.svc:15012``, annotation
  ``istio.io/rev``); replacing a node's ztunnel resets the long-lived connections of the pods there, hence the
  node-by-node upgrade (cordon, drain, replace, uncordon).  ztunnel and istio-cni 1.x work with control planes
  1.x and 1.x+1, so the new istiod comes first, then istio-cni, then ztunnel, then the tags.
* Namespaces join ambient with ``istio.io/dataplane-mode=ambient``; istio-cni marks their pods
  ``ambient.istio.io/redirection: enabled``.
* Gateway API ``Gateway``s of class ``istio`` (Deployment ``<name>-istio``) and ``istio-waypoint`` (Deployment
  ``<name>``) are deployed by istiod; their pods carry ``gateway.networking.k8s.io/gateway-name`` and the
  annotation ``istio.io/rev`` of the revision that rendered them.  The revision serving one is chosen as
  ``pkg/revisions/tag_watcher.go`` ``IsMine`` does: the Gateway's ``istio.io/rev`` label, else its namespace's,
  else the ``default`` tag (or default revision).  When a tag moves, istiod re-renders them and they roll by
  themselves; moving the tag back is their rollback.

``AmbientState`` reads all of it (plain dicts, as the API serves them) and answers the questions the phases ask;
``NodeByNodeUpgrade`` replaces a DaemonSet's pods a batch of nodes at a time, optionally cordoning and draining
each batch through the Eviction API (PodDisruptionBudgets honoured), and never leaves a node cordoned by it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils.mesh import _annotations, _labels, _meta
from ansible_collections.meshops.istio.plugins.module_utils import plan
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    ApiError,
    InvalidInput,
    MeshopsError,
    NotFound,
)

ZTUNNEL = 'ztunnel'
CNI = 'cni'
COMPONENTS = {
    ZTUNNEL: {'daemonset': 'ztunnel', 'selector': 'app=ztunnel', 'container': 'istio-proxy', 'release': 'ztunnel',
              'chart': 'ztunnel'},
    CNI: {'daemonset': 'istio-cni-node', 'selector': 'k8s-app=istio-cni-node', 'container': 'install-cni',
          'release': 'istio-cni', 'chart': 'cni'},
}
DATAPLANE_LABEL = 'istio.io/dataplane-mode'
REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection'
USE_WAYPOINT_LABEL = 'istio.io/use-waypoint'
GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name'
GATEWAY_API = 'gateway.networking.k8s.io/v1'
WAYPOINT_CLASS = 'istio-waypoint'
GATEWAY_CLASS = 'istio'
# classinfo.go: the classes istiod deploys, and whether the Deployment keeps the Gateway's name as is
ISTIOD_CLASSES = {GATEWAY_CLASS: False, WAYPOINT_CLASS: True}
CONTROLLERS = {'istio.io/gateway-controller': GATEWAY_CLASS, 'istio.io/mesh-controller': WAYPOINT_CLASS}
UNSCHEDULABLE_TAINT = 'node.kubernetes.io/unschedulable'


class DrainBlocked(MeshopsError):
    """A drain could not evict a pod before its timeout (a PodDisruptionBudget, usually)."""


class NodeUpgradeFailed(MeshopsError):
    """A node's daemon pod did not come back ready on the new version."""


def _container(obj, name):
    spec = obj.get('spec') or {}
    for c in spec.get('containers') or []:
        if c.get('name') == name:
            return c
    return None


def _env(container):
    return dict((e.get('name'), e.get('value')) for e in (container or {}).get('env') or [] if e.get('name'))


def owner_kind(pod):
    for ref in _meta(pod).get('ownerReferences') or []:
        if ref.get('controller'):
            return ref.get('kind')
    return None


def xds_revision(container, default=None):
    """The revision behind ``istiod-<rev>.<ns>.svc:15012`` (XDS_ADDRESS, else CA_ADDRESS); ``default`` for
    a revision-less ``istiod``."""
    env = _env(container)
    host = (env.get('XDS_ADDRESS') or env.get('CA_ADDRESS') or '').split(':')[0].split('.')[0]
    if host == 'istiod':
        return mesh.DEFAULT
    if host.startswith('istiod-'):
        return host[len('istiod-'):]
    return default


# --- the model --------------------------------------------------------------------------------------

class NodeDaemon:
    """The daemon pod (ztunnel or istio-cni) of one node."""

    def __init__(self, node, pod, version, revision, ready, current):
        self.node = node
        self.pod = pod
        self.version = version
        self.revision = revision
        self.ready = ready
        self.current = current   # runs the DaemonSet's current pod template

    def to_dict(self):
        return {'node': self.node, 'pod': self.pod, 'version': self.version, 'revision': self.revision,
                'ready': self.ready, 'current': self.current}


class DataplaneComponent:
    """istio-cni or ztunnel: its DaemonSet (what it is configured for) and its pod on each node."""

    def __init__(self, kind, daemonset, pods, nodes):
        conf = COMPONENTS[kind]
        self.kind = kind
        self.name = _meta(daemonset).get('name')
        self.namespace = _meta(daemonset).get('namespace')
        self.daemonset = daemonset
        spec = daemonset.get('spec') or {}
        template = spec.get('template') or {}
        container = _container(template, conf['container']) or {}
        self.version = mesh.version_of_image(container.get('image'))
        if kind == ZTUNNEL:
            self.revision = (template.get('metadata') or {}).get('annotations', {}).get(mesh.REV_LABEL) or \
                xds_revision(container, mesh.DEFAULT)
        else:
            self.revision = _labels(daemonset).get(mesh.REV_LABEL) or mesh.DEFAULT
        self.strategy = (spec.get('updateStrategy') or {}).get('type') or 'RollingUpdate'
        self.release = _annotations(daemonset).get('meta.helm.sh/release-name')
        self.generation = _meta(daemonset).get('generation')
        template_image = container.get('image')
        template_rev = ((template.get('metadata') or {}).get('annotations') or {}).get(mesh.REV_LABEL)
        self.nodes = {}
        live = [p for p in pods if not mesh.pod_terminated(p)]
        for node in nodes:
            on_node = [p for p in live if (p.get('spec') or {}).get('nodeName') == node]
            if not on_node:
                self.nodes[node] = NodeDaemon(node, None, None, None, False, False)
                continue
            on_node.sort(key=lambda p: (not mesh.pod_ready(p), _meta(p).get('creationTimestamp') or ''))
            pod = on_node[0]
            c = _container(pod, conf['container']) or {}
            if kind == ZTUNNEL:
                revision = _annotations(pod).get(mesh.REV_LABEL) or xds_revision(c, mesh.DEFAULT)
            else:
                revision = self.revision
            # on the current template: its image, and for ztunnel the revision it takes config from
            current = c.get('image') == template_image and \
                (kind != ZTUNNEL or _annotations(pod).get(mesh.REV_LABEL) == template_rev)
            self.nodes[node] = NodeDaemon(node, _meta(pod).get('name'), mesh.version_of_image(c.get('image')),
                                          revision, mesh.pod_ready(pod), current)

    def stale_nodes(self, version=None):
        """Nodes whose daemon pod is not ready, not on the current template or not on ``version``."""
        version = str(version or self.version or '').lstrip('v')
        return sorted(n for n, d in self.nodes.items()
                      if not (d.ready and d.current and (not version or d.version == version)))

    def to_dict(self):
        return {'name': self.name, 'namespace': self.namespace, 'version': self.version,
                'revision': self.revision, 'strategy': self.strategy, 'release': self.release,
                'nodes': [self.nodes[n].to_dict() for n in sorted(self.nodes)]}


class GatewayInfo:
    """A Gateway API Gateway deployed by istiod (class istio or istio-waypoint)."""

    def __init__(self, gateway, deployment, pods, serving, pinned):
        meta = _meta(gateway)
        self.namespace = meta.get('namespace')
        self.name = meta.get('name')
        self.gateway_class = (gateway.get('spec') or {}).get('gatewayClassName')
        self.waypoint = self.gateway_class == WAYPOINT_CLASS
        self.pinned = pinned                      # the Gateway's own istio.io/rev label, if any
        self.serving = serving                    # revisions whose istiod considers it theirs
        self.deployment = _meta(deployment).get('name') if deployment else None
        live = [p for p in pods if not mesh.pod_terminated(p)]
        self.revisions = sorted(set(_annotations(p).get(mesh.REV_LABEL) for p in live
                                    if _annotations(p).get(mesh.REV_LABEL)))
        self.versions = sorted(set(mesh.pod_proxy_version(p) for p in live if mesh.pod_proxy_version(p)))
        status = (deployment or {}).get('status') or {}
        want = ((deployment or {}).get('spec') or {}).get('replicas', 1)
        self.ready = bool(deployment) and status.get('observedGeneration', 0) >= _meta(deployment).get(
            'generation', 0) and (status.get('updatedReplicas') or 0) >= want and \
            (status.get('availableReplicas') or 0) >= want and (status.get('replicas') or 0) <= want

    @property
    def kind(self):
        return 'waypoint' if self.waypoint else 'gateway'

    @property
    def ref(self):
        return '%s %s/%s' % (self.kind, self.namespace, self.name)

    @property
    def serving_revision(self):
        return self.serving[0] if len(self.serving) == 1 else None

    def on(self, revision, version=None):
        """Every pod rendered by ``revision`` (and on ``version``), rolled out and ready."""
        version = str(version or '').lstrip('v')
        return self.ready and self.revisions == [revision] and (not version or self.versions == [version])

    def to_dict(self):
        return {'namespace': self.namespace, 'name': self.name, 'class': self.gateway_class, 'kind': self.kind,
                'pinned_revision': self.pinned, 'serving_revision': self.serving_revision,
                'serving_revisions': list(self.serving), 'deployment': self.deployment,
                'revisions': self.revisions, 'versions': self.versions, 'ready': self.ready}


def serving_revisions(state, obj_labels, namespace_labels, revisions=None):
    """The installed revisions whose istiod takes a Gateway as its own (tag_watcher.go IsMine)."""
    if mesh.REV_LABEL in obj_labels:
        selected = obj_labels[mesh.REV_LABEL]
    else:
        selected = (namespace_labels or {}).get(mesh.REV_LABEL, '')
    default_tag = state.tags.get(mesh.DEFAULT)
    default_revision = mesh.validator_revision(state.validator) if state.validator is not None else None
    out = []
    for rev in sorted(revisions if revisions is not None else state.revisions):
        mine = set([rev]) | set(t.name for t in state.tags.values() if t.revision == rev)
        other_default = mesh.DEFAULT not in mine and default_tag is not None
        by_default = mesh.DEFAULT in mine or (default_revision == rev and not other_default)
        if selected in mine or (selected == '' and by_default):
            out.append(rev)
    return out


class AmbientState:
    """The ambient data plane and istiod-deployed gateways of a cluster, beside a mesh.MeshState."""

    def __init__(self):
        self.ztunnel = None
        self.cni = None
        self.nodes = {}            # name -> {'unschedulable': bool}
        self.namespaces = {}       # name -> data plane mode: ambient | sidecar | none
        self.gateways = []         # GatewayInfo
        self.unredirected = []     # 'ns/pod' of ambient pods istio-cni has not (yet) redirected
        self.gateway_api = False

    @property
    def present(self):
        return self.ztunnel is not None or self.cni is not None

    def component(self, kind):
        return self.ztunnel if kind == ZTUNNEL else self.cni

    @classmethod
    def from_objects(cls, state, daemonsets=(), daemon_pods=(), nodes=(), namespaces=(), gateways=(),
                     deployments=(), pods=(), gateway_api=False):
        out = cls()
        out.gateway_api = gateway_api
        for node in nodes:
            out.nodes[_meta(node).get('name')] = {'unschedulable': bool((node.get('spec') or {}).get(
                'unschedulable'))}
        node_names = sorted(out.nodes)
        for kind, conf in COMPONENTS.items():
            ds = next((d for d in daemonsets if _meta(d).get('name') == conf['daemonset']), None)
            if ds is None:
                continue
            selector = mesh.parse_label_selector(conf['selector'])
            mine = [p for p in daemon_pods if mesh.selector_matches(selector, _labels(p))]
            component = DataplaneComponent(kind, ds, mine, node_names)
            setattr(out, 'ztunnel' if kind == ZTUNNEL else 'cni', component)
        ns_labels = {}
        for ns in namespaces:
            labels = _labels(ns)
            name = _meta(ns).get('name')
            ns_labels[name] = labels
            injection = state.namespaces.get(name)
            if labels.get(DATAPLANE_LABEL) == 'ambient':
                out.namespaces[name] = 'ambient'
            elif injection is not None and injection.revision:
                out.namespaces[name] = 'sidecar'
        deployments_by_key = dict(((_meta(d).get('namespace'), _meta(d).get('name')), d) for d in deployments)
        pods_by_gateway = {}
        for pod in pods:
            gw = _labels(pod).get(GATEWAY_NAME_LABEL)
            if gw:
                pods_by_gateway.setdefault((_meta(pod).get('namespace'), gw), []).append(pod)
            elif out.namespaces.get(_meta(pod).get('namespace')) == 'ambient' and not mesh.pod_terminated(pod) \
                    and _labels(pod).get(DATAPLANE_LABEL) != 'none' and mesh.pod_revision(pod) is None and \
                    not (pod.get('spec') or {}).get('hostNetwork') and \
                    _annotations(pod).get(REDIRECTION_ANNOTATION) != 'enabled' and \
                    (pod.get('status') or {}).get('phase') == 'Running':
                out.unredirected.append('%s/%s' % (_meta(pod).get('namespace'), _meta(pod).get('name')))
        for gw in gateways:
            cls_name = (gw.get('spec') or {}).get('gatewayClassName')
            if cls_name not in ISTIOD_CLASSES:
                continue
            meta = _meta(gw)
            deploy_name = _annotations(gw).get('gateway.istio.io/name-override') or (
                meta.get('name') if ISTIOD_CLASSES[cls_name] else '%s-%s' % (meta.get('name'), cls_name))
            deployment = deployments_by_key.get((meta.get('namespace'), deploy_name))
            serving = serving_revisions(state, _labels(gw), ns_labels.get(meta.get('namespace')))
            out.gateways.append(GatewayInfo(gw, deployment, pods_by_gateway.get((meta.get('namespace'),
                                                                                 meta.get('name')), []),
                                            serving, _labels(gw).get(mesh.REV_LABEL)))
        out.gateways.sort(key=lambda g: (g.namespace, g.name))
        out.unredirected.sort()
        return out

    @classmethod
    def load(cls, client, state, istio_namespace=mesh.ISTIO_NAMESPACE):
        """Read the cluster (``state`` is the MeshState read just before: tags, revisions, namespaces)."""
        daemonsets = [d for d in client.list('DaemonSet', istio_namespace)
                      if _meta(d).get('name') in [c['daemonset'] for c in COMPONENTS.values()]]
        daemon_pods = []
        for conf in COMPONENTS.values():
            if any(_meta(d).get('name') == conf['daemonset'] for d in daemonsets):
                daemon_pods += client.list('Pod', istio_namespace, label_selector=conf['selector'])
        nodes = client.list('Node')
        namespaces = client.list('Namespace')
        try:
            gateways = client.list('Gateway', api_version=GATEWAY_API)
            gateway_api = True
        except (NotFound, ApiError, InvalidInput):
            gateways, gateway_api = [], False
        ambient_ns = [_meta(n).get('name') for n in namespaces if _labels(n).get(DATAPLANE_LABEL) == 'ambient']
        gw_ns = sorted(set(_meta(g).get('namespace') for g in gateways))
        deployments, pods = [], []
        for ns in gw_ns:
            deployments += client.list('Deployment', ns)
        for ns in sorted(set(gw_ns) | set(ambient_ns)):
            pods += client.list('Pod', ns)
        return cls.from_objects(state, daemonsets, daemon_pods, nodes, namespaces, gateways, deployments, pods,
                                gateway_api)

    # questions the phases ask --------------------------------------------------------------------------

    def dataplane_problems(self, kind, revision, version):
        """``node: why`` for each node whose component is not ready on ``version`` (and, for ztunnel, not
        configured for ``revision``)."""
        component = self.component(kind)
        if component is None:
            return []
        version = str(version).lstrip('v')
        out = []
        for node in sorted(component.nodes):
            d = component.nodes[node]
            why = []
            if d.pod is None:
                why.append('no %s pod' % kind)
            else:
                if d.version != version:
                    why.append('%s %s, expected %s' % (kind, d.version or '?', version))
                if kind == ZTUNNEL and revision and d.revision != revision:
                    why.append('takes config from revision %s, expected %s' % (d.revision or '?', revision))
                if not d.ready:
                    why.append('not ready')
            if why:
                out.append('%s %s: %s' % (kind, node, '; '.join(why)))
        if kind == ZTUNNEL and revision and component.revision != revision:
            out.insert(0, 'DaemonSet %s/%s is configured for revision %s, expected %s'
                       % (component.namespace, component.name, component.revision, revision))
        return out

    def gateways_of(self, revision, tag=mesh.DEFAULT):
        """Gateways/waypoints served through ``tag`` or pinned elsewhere: (follow_tag, pinned)."""
        follow = [g for g in self.gateways if not g.pinned or g.pinned == tag]
        pinned = [g for g in self.gateways if g.pinned and g.pinned != tag]
        return follow, pinned

    def gateway_problems(self, revision, version, tag=mesh.DEFAULT):
        """``kind ns/name: why`` for each Gateway following ``tag`` not yet rolled onto ``revision``."""
        follow, _pinned = self.gateways_of(revision, tag)
        out = []
        for g in follow:
            if g.on(revision, version):
                continue
            why = []
            if g.serving != [revision]:
                why.append('served by %s, expected %s' % (','.join(g.serving) or 'no revision', revision))
            if g.revisions != [revision]:
                why.append('pods rendered by %s' % (','.join(g.revisions) or 'none'))
            if version and g.versions != [str(version).lstrip('v')]:
                why.append('proxy %s, expected %s' % (','.join(g.versions) or 'none', version))
            if not g.ready:
                why.append('not rolled out and ready')
            out.append('%s: %s' % (g.ref, '; '.join(why)))
        return out

    def users_of(self, revision):
        """What of the ambient data plane and istiod's gateways still uses ``revision``."""
        out = []
        if self.ztunnel is not None:
            if self.ztunnel.revision == revision:
                out.append('DaemonSet %s/%s (revision %s)' % (self.ztunnel.namespace, self.ztunnel.name, revision))
            nodes = sorted(n for n, d in self.ztunnel.nodes.items() if d.revision == revision)
            if nodes:
                out.append('ztunnel on node(s) %s' % ', '.join(nodes))
        for g in self.gateways:
            if revision in g.serving or revision in g.revisions or g.pinned == revision:
                out.append('%s%s' % (g.ref, ' (pinned by %s=%s)' % (mesh.REV_LABEL, g.pinned)
                                     if g.pinned == revision else ''))
        return out

    def to_dict(self):
        return {
            'present': self.present,
            'ztunnel': self.ztunnel.to_dict() if self.ztunnel else None,
            'cni': self.cni.to_dict() if self.cni else None,
            'nodes': [dict(name=n, **self.nodes[n]) for n in sorted(self.nodes)],
            'namespaces': [{'name': n, 'mode': m} for n, m in sorted(self.namespaces.items())],
            'gateways': [g.to_dict() for g in self.gateways],
            'waypoints': [g.to_dict() for g in self.gateways if g.waypoint],
            'unredirected_pods': list(self.unredirected),
        }


def release_values(kind, revision, version, local_chart, values=None):
    """Values for ``helm upgrade --reuse-values`` of the istio-cni or ztunnel release: the operator's, the
    revision ztunnel takes config from, ``OnDelete`` for ztunnel (nodes go one by one, not all at once by
    Kubernetes) and, for a local chart (which runs whatever tag it is given), ``global.tag``."""
    merged = dict(values or {})
    if kind == ZTUNNEL:
        if merged.get('revision') not in (None, '', revision):
            raise InvalidInput('the ztunnel values set revision %s but the upgrade is to %s: leave revision out'
                               % (merged['revision'], revision))
        merged['revision'] = revision
        merged['updateStrategy'] = {'type': 'OnDelete', 'rollingUpdate': None}
    if local_chart:
        glob = dict(merged.get('global') or {})
        glob.setdefault('tag', str(version).lstrip('v'))
        merged['global'] = glob
    return merged


def node_batches(nodes, batch_size):
    """Nodes in batches of ``batch_size`` (sorted, so a re-run goes in the same order)."""
    if batch_size < 1:
        raise InvalidInput('istio_canary_ztunnel_batch_size (batch_size) must be at least 1, got %s' % batch_size)
    nodes = sorted(nodes)
    return [nodes[i:i + batch_size] for i in range(0, len(nodes), batch_size)]


# --- node by node -------------------------------------------------------------------------------------

class NodeByNodeUpgrade:
    """Replace a DaemonSet's pods (OnDelete) a batch of nodes at a time: cordon and drain the batch (optional),
    delete its daemon pods, wait until their replacements are ready on ``version``, uncordon.  On failure the
    nodes this run cordoned are uncordoned and the error names the node."""

    def __init__(self, client, component, version, batch_size=1, drain=False, drain_timeout=300,
                 wait_timeout=300, check_mode=False, poll=1.0, sleep=time.sleep, clock=time.time):
        self.client = client
        self.component = component
        self.version = str(version).lstrip('v')
        self.batch_size = batch_size
        self.drain = drain
        self.drain_timeout = drain_timeout
        self.wait_timeout = wait_timeout
        self.check_mode = check_mode
        self.poll = poll
        self.sleep = sleep
        self.clock = clock
        self.conf = COMPONENTS[component.kind]
        self.nodes = []        # per node results
        self._cordoned = []    # nodes this run cordoned (uncordoned whatever happens)

    def plan(self):
        stale = self.component.stale_nodes(self.version)
        return node_batches(stale, self.batch_size) if stale else []

    def run(self):
        if self.component.version != self.version and not self.check_mode:
            raise InvalidInput('DaemonSet %s/%s runs %s, not %s: upgrade its Helm release first (the phase does '
                               'it before replacing pods node by node)' % (self.component.namespace,
                                                                           self.component.name,
                                                                           self.component.version, self.version))
        batches = self.plan()
        for node in sorted(set(self.component.nodes) - set(n for b in batches for n in b)):
            d = self.component.nodes[node]
            self.nodes.append({'node': node, 'action': 'current', 'from_version': d.version,
                               'to_version': d.version, 'pod': d.pod, 'evicted': []})
        if self.check_mode:
            for batch in batches:
                for node in batch:
                    d = self.component.nodes[node]
                    self.nodes.append({'node': node, 'action': 'upgrade', 'from_version': d.version,
                                       'to_version': self.version, 'pod': d.pod, 'evicted': []})
            return self.result(batches)
        if batches and self.component.strategy != 'OnDelete':
            raise InvalidInput('DaemonSet %s/%s has updateStrategy %s: it replaces every node\'s pod by itself, '
                               'so nodes cannot go one by one. Set updateStrategy.type=OnDelete (the phase sets it '
                               'in the Helm values) and run again.' % (self.component.namespace,
                                                                       self.component.name,
                                                                       self.component.strategy))
        for batch in batches:
            try:
                self._batch(batch)
            finally:
                self._uncordon_all()
        return self.result(batches)

    def result(self, batches):
        self.nodes.sort(key=lambda n: n['node'])
        return {'changed': bool(batches), 'batches': batches, 'nodes': list(self.nodes),
                'upgraded': sorted(n['node'] for n in self.nodes if n['action'] in ('upgraded', 'upgrade'))}

    # steps -----------------------------------------------------------------------------------------
    def _batch(self, batch):
        started = self.clock()
        entries = {}
        for node in batch:
            d = self.component.nodes[node]
            entries[node] = {'node': node, 'action': 'failed', 'from_version': d.version, 'to_version': None,
                             'pod': d.pod, 'evicted': []}
            self.nodes.append(entries[node])
        if self.drain:
            for node in batch:
                self._cordon(node)
            for node in batch:
                entries[node]['evicted'] = self._drain(node)
        old = {}
        for node in batch:
            old[node] = self._daemon_pods(node)
            for pod in old[node]:
                self.client.delete('Pod', _meta(pod)['name'], self.component.namespace)
        for node in batch:
            pod = self._wait_new(node, set(_meta(p).get('uid') for p in old[node]))
            entries[node].update(action='upgraded', to_version=self.version, pod=_meta(pod).get('name'),
                                 seconds=round(self.clock() - started, 1))

    def _daemon_pods(self, node):
        return [p for p in self.client.list('Pod', self.component.namespace, label_selector=self.conf['selector'],
                                            field_selector='spec.nodeName=%s' % node)
                if not _meta(p).get('deletionTimestamp')]

    def _wait_new(self, node, old_uids):
        deadline = self.clock() + self.wait_timeout
        last = None
        while True:
            pods = [p for p in self._daemon_pods(node) if _meta(p).get('uid') not in old_uids]
            for pod in pods:
                c = _container(pod, self.conf['container']) or {}
                if mesh.pod_ready(pod) and mesh.version_of_image(c.get('image')) == self.version:
                    return pod
                last = pod
            if self.clock() >= deadline:
                break
            self.sleep(self.poll)
        why = 'no new %s pod was created' % self.component.kind
        if last is not None:
            c = _container(last, self.conf['container']) or {}
            why = 'pod %s runs %s and is %s' % (_meta(last).get('name'), mesh.version_of_image(c.get('image')),
                                                _pod_state(last))
        raise NodeUpgradeFailed('%s did not become ready on %s on node %s within %ss: %s. The upgrade stopped at '
                                'this node; nodes after it were not touched.'
                                % (self.component.kind, self.version, node, self.wait_timeout, why),
                                details={'node': node, 'component': self.component.kind},
                                result={'nodes': sorted(self.nodes, key=lambda n: n['node']), 'failed_node': node})

    def _cordon(self, node):
        obj = self.client.get('Node', node)
        if (obj.get('spec') or {}).get('unschedulable'):
            return   # cordoned before this run: left as it was
        self.client.patch('Node', node, {'spec': {'unschedulable': True}})
        self._cordoned.append(node)

    def _uncordon_all(self):
        while self._cordoned:
            node = self._cordoned.pop()
            try:
                self.client.patch('Node', node, {'spec': {'unschedulable': None}})
            except MeshopsError:
                self._cordoned.append(node)
                raise

    def _drain(self, node):
        """Evict every pod of the node but daemon, mirror and finished pods (kubectl drain --ignore-daemonsets),
        retrying evictions a PodDisruptionBudget refuses until ``drain_timeout``."""
        deadline = self.clock() + self.drain_timeout
        pods = [p for p in self.client.list('Pod', field_selector='spec.nodeName=%s' % node)
                if owner_kind(p) != 'DaemonSet' and 'kubernetes.io/config.mirror' not in _annotations(p)
                and not mesh.pod_terminated(p)]
        pending = dict(((_meta(p)['namespace'], _meta(p)['name']), p) for p in pods)
        evicted = []
        while pending:
            for key in sorted(pending):
                ns, name = key
                if self._evict(ns, name):
                    evicted.append('%s/%s' % key)
                    del pending[key]
            if not pending:
                break
            if self.clock() >= deadline:
                ns, name = sorted(pending)[0]
                raise DrainBlocked('Drain of node %s timed out after %ss: pod %s/%s cannot be evicted: %s. The '
                                   'upgrade stopped at this node and uncordoned it; nothing else was touched. Fix the '
                                   'budget (or raise istio_canary_ztunnel_drain_timeout) and run the phase again.'
                                   % (node, self.drain_timeout, ns, name, self._blocker(pending[(ns, name)])),
                                   details={'node': node, 'pod': '%s/%s' % (ns, name)},
                                   result={'nodes': sorted(self.nodes, key=lambda n: n['node']),
                                           'failed_node': node, 'blocking_pods': ['%s/%s' % k for k in sorted(pending)]})
            self.sleep(max(self.poll, 2.0))
        # wait for the evicted pods to be gone, as kubectl drain does
        for item in evicted:
            ns, name = item.split('/', 1)
            self._gone(ns, name, deadline)
        return evicted

    def _evict(self, namespace, name):
        body = {'apiVersion': 'policy/v1', 'kind': 'Eviction', 'metadata': {'name': name, 'namespace': namespace}}
        try:
            self.client.request('POST', '/api/v1/namespaces/%s/pods/%s/eviction' % (namespace, name), body=body,
                                what=('evict', 'Pod', name, namespace))
        except NotFound:
            return True
        except ApiError as exc:
            if exc.details.get('status') == 429:
                return False
            raise
        return True

    def _gone(self, namespace, name, deadline):
        while self.client.get_or_none('Pod', name, namespace) is not None:
            if self.clock() >= deadline:
                raise DrainBlocked('Drain: evicted pod %s/%s was not deleted within %ss'
                                   % (namespace, name, self.drain_timeout))
            self.sleep(self.poll)

    def _blocker(self, pod):
        ns = _meta(pod).get('namespace')
        labels = _labels(pod)
        for pdb in self.client.list('PodDisruptionBudget', ns):
            sel = (pdb.get('spec') or {}).get('selector') or {}
            if mesh.selector_matches(sel, labels):
                st = pdb.get('status') or {}
                return ('PodDisruptionBudget %s/%s allows %s disruption(s) (needs %s healthy pods, has %s)'
                        % (ns, _meta(pdb).get('name'), st.get('disruptionsAllowed', 0), st.get('desiredHealthy', '?'),
                           st.get('currentHealthy', '?')))
        return 'the API server keeps refusing its eviction (429)'


def _pod_state(pod):
    st = pod.get('status') or {}
    for c in (st.get('containerStatuses') or []):
        waiting = (c.get('state') or {}).get('waiting') or {}
        if waiting.get('reason'):
            return '%s (%s)' % (st.get('phase') or 'Pending', waiting['reason'])
    return '%s, not ready' % (st.get('phase') or 'Pending')


def wait_rolled_out(client, component, version, timeout, poll=1.0, sleep=time.sleep, clock=time.time):
    """Wait until Kubernetes' own rolling update put a ready pod on ``version`` on every node (istio-cni: it does
    not hold long-lived connections, so its DaemonSet rolls by itself)."""
    version = str(version).lstrip('v')
    stale = component.stale_nodes(version)
    deadline = clock() + timeout
    conf = COMPONENTS[component.kind]
    while True:
        ds = client.get('DaemonSet', component.name, component.namespace)
        pods = client.list('Pod', component.namespace, label_selector=conf['selector'])
        nodes = [_meta(n).get('name') for n in client.list('Node')]
        now = DataplaneComponent(component.kind, ds, pods, nodes)
        left = now.stale_nodes(version)
        if now.version == version and not left:
            break
        if clock() >= deadline:
            node = left[0] if left else None
            raise NodeUpgradeFailed('%s did not reach %s on every node within %ss: %s'
                                    % (component.kind, version, timeout,
                                       '; '.join('node %s: %s %s%s' % (n, now.nodes[n].pod or 'no pod',
                                                                       now.nodes[n].version or '',
                                                                       '' if now.nodes[n].ready else ' (not ready)')
                                                 for n in left) or 'DaemonSet runs %s' % now.version),
                                    details={'node': node}, result={'failed_node': node})
        sleep(poll)
    entries = [{'node': n, 'action': 'upgraded' if n in stale else 'current',
                'from_version': component.nodes[n].version if n in component.nodes else None,
                'to_version': version, 'pod': now.nodes[n].pod, 'evicted': []} for n in sorted(now.nodes)]
    return {'changed': bool(stale), 'batches': [stale] if stale else [], 'nodes': entries, 'upgraded': stale}


# --- the planner's ambient phases and guards ------------------------------------------------------------
# Phases ``cni`` (order 30) and ``ztunnel`` (35) sit between ``install`` (20) and ``tag`` (40), as Istio's
# ambient upgrade orders them; ``tag``, ``verify``, ``cleanup`` and ``rollback`` get the ambient guards below.
# The planner sees the ambient data plane as ``state.ambient`` (an AmbientState; None or absent on a mesh
# read without it).

def state_ambient(state):
    return getattr(state, 'ambient', None)


@plan.guard('control-plane-first')
def _control_plane_first(ctx):
    """The new istiod is installed and ready before istio-cni and ztunnel move (they work with control planes
    of their minor version and the next one, never an older one)."""
    upgrade = ctx.upgrade
    if upgrade.to_installed and upgrade.to_ready:
        return None
    if not upgrade.to_installed:
        return ("%s refuses to run: revision %s is not installed in %s. Run the 'install' phase first "
                "(--tags install): istio-cni and ztunnel 1.x work with control planes 1.x and 1.x+1, so the new "
                "istiod comes first. Nothing was changed."
                % (ctx.label, upgrade.to_revision, ctx.request.istio_namespace))
    return '%s refuses to run: revision %s is not ready; check istiod-%s. Nothing was changed.' % (
        ctx.label, upgrade.to_revision, upgrade.to_revision)


@plan.guard('cni-first')
def _cni_first(ctx):
    """istio-cni is on the new version on every node before ztunnel moves."""
    found = state_ambient(ctx.state)
    if found is None or found.cni is None:
        return None
    problems = found.dataplane_problems(CNI, None, ctx.upgrade.to_version)
    if not problems:
        return None
    return ("%s refuses to run: istio-cni is not on %s on every node yet (%s). Run the 'cni' phase first "
            "(--tags cni). Nothing was changed." % (ctx.label, ctx.upgrade.to_version, '; '.join(problems)))


@plan.guard('ztunnel-first')
def _ztunnel_first(ctx):
    """On an ambient mesh the data plane moves before the tags: ztunnel takes config from the new revision and
    runs its version on every node (a re-run of the tag phase after the move is let through)."""
    found = state_ambient(ctx.state)
    if found is None or found.ztunnel is None or ctx.upgrade.tag_on_target:
        return None
    problems = found.dataplane_problems(ZTUNNEL, ctx.upgrade.to_revision, ctx.upgrade.to_version)
    if not problems:
        return None
    return ("%s refuses to run: ztunnel is not on revision %s (%s) on every node yet: %s. Run the 'cni' and "
            "'ztunnel' phases first (--tags cni,ztunnel): istiod, then istio-cni, then ztunnel, then the tags. "
            "Nothing was changed." % (ctx.label, ctx.upgrade.to_revision, ctx.upgrade.to_version,
                                      '; '.join(problems)))


@plan.guard('ambient-on-target')
def _ambient_on_target(ctx):
    """Every node's istio-cni and ztunnel, and every istiod-deployed gateway and waypoint following the tag, is on
    the new revision and version; ambient pods are still redirected."""
    found = state_ambient(ctx.state)
    if found is None:
        return None
    upgrade = ctx.upgrade
    problems = found.dataplane_problems(CNI, None, upgrade.to_version)
    problems += found.dataplane_problems(ZTUNNEL, upgrade.to_revision, upgrade.to_version)
    if 'gateways' in (ctx.record.get('phases') or {}):
        problems += found.gateway_problems(upgrade.to_revision, upgrade.to_version, ctx.request.tag)
    if found.unredirected:
        problems.append('ambient pods not redirected by istio-cni: %s' % ', '.join(found.unredirected))
    if not problems:
        return None
    return ('Verify failed%s: %s. Fix them and run verify again, or go back with %s'
            % (ctx.request.on_cluster, '; '.join(problems), plan.ROLLBACK_HINT))


@plan.guard('ambient-off-old-revision')
def _ambient_off_old(ctx):
    """Cleanup: no ztunnel, waypoint or istiod-deployed gateway still uses the old revision."""
    found = state_ambient(ctx.state)
    old = ctx.upgrade.from_revision
    if found is None or not old or old == ctx.upgrade.to_revision or not ctx.upgrade.from_installed:
        return None
    users = found.users_of(old)
    if not users:
        return None
    return ("Cleanup refuses to remove revision %s%s: the ambient data plane or gateways still use it: %s. Run the "
            "ztunnel and gateways phases; relabel Gateways pinned with %s=%s (or delete them). Nothing was "
            "changed." % (old, ctx.request.on_cluster, '; '.join(users), mesh.REV_LABEL, old))


@plan.guard('ambient-rolled-back')
def _ambient_rolled_back(ctx):
    """After a rollback, ztunnel, istio-cni and the gateways following the tag are back on the old revision."""
    found = state_ambient(ctx.state)
    upgrade = ctx.upgrade
    if found is None or not upgrade.from_revision or not upgrade.from_version:
        return None
    problems = found.dataplane_problems(ZTUNNEL, upgrade.from_revision, upgrade.from_version)
    problems += found.dataplane_problems(CNI, None, upgrade.from_version)
    problems += found.gateway_problems(upgrade.from_revision, upgrade.from_version, ctx.request.tag)
    if not problems:
        return None
    return 'Rollback incomplete%s: %s' % (ctx.request.on_cluster, '; '.join(problems))


def _dataplane_plan(kind):
    def plan_phase(ctx):
        found = state_ambient(ctx.state)
        component = found.component(kind) if found is not None else None
        conf = COMPONENTS[kind]
        if component is None:
            return {'ambient': {'component': kind, 'present': False, 'nodes': [], 'release': None,
                                'note': 'No %s DaemonSet (%s) in %s: a sidecar-only mesh, nothing to do.'
                                        % (kind, conf['daemonset'], ctx.request.istio_namespace)}}
        upgrade = ctx.upgrade
        revision = upgrade.to_revision if kind == ZTUNNEL else None
        stale = sorted(n for n, d in component.nodes.items()
                       if not (d.ready and d.version == str(upgrade.to_version).lstrip('v') and
                               (revision is None or d.revision == revision)))
        configured = component.version == str(upgrade.to_version).lstrip('v') and \
            (revision is None or component.revision == revision)
        objects = []
        if not configured:
            objects.append(plan.object_change('DaemonSet', component.namespace, component.name, 'update',
                                              '%s %s -> %s%s (Helm release %s)'
                                              % (kind, component.version, upgrade.to_version,
                                                 ', revision %s -> %s' % (component.revision, revision)
                                                 if revision else '', component.release or conf['release'])))
        for node in stale:
            objects.append(plan.object_change('Pod', component.namespace, component.nodes[node].pod or
                                              '%s on %s' % (kind, node), 'replace',
                                              'node %s: %s -> %s' % (node, component.nodes[node].version,
                                                                     upgrade.to_version)))
        return {'objects': objects, 'ambient': {
            'component': kind, 'present': True, 'nodes': stale, 'configured': configured,
            'release': component.release or conf['release'], 'strategy': component.strategy,
            'revision': revision, 'from_version': component.version, 'from_revision': component.revision,
            'note': None}}

    return plan_phase


def _dataplane_project(kind):
    def project(ctx, planned):
        found = state_ambient(ctx.state)
        component = found.component(kind) if found is not None else None
        if component is None:
            return
        version = str(ctx.upgrade.to_version).lstrip('v')
        component.version = version
        if kind == ZTUNNEL:
            component.revision = ctx.upgrade.to_revision
        for d in component.nodes.values():
            d.version, d.ready, d.current = version, True, True
            if kind == ZTUNNEL:
                d.revision = ctx.upgrade.to_revision
    return project


def _gateways_plan(original):
    def plan_phase(ctx, revision=None):
        planned = original(ctx, revision) if revision else original(ctx)
        found = state_ambient(ctx.state)
        if found is None:
            return planned
        target = revision or ctx.upgrade.to_revision
        follow, pinned = found.gateways_of(target, ctx.request.tag)
        planned = dict(planned)
        planned['ambient'] = {
            'component': 'gateways', 'present': bool(found.gateways),
            'follow': ['%s/%s' % (g.namespace, g.name) for g in follow],
            'pending': ['%s/%s' % (g.namespace, g.name) for g in follow if not g.on(target, None)],
            'pinned': ['%s %s/%s (%s=%s)' % (g.kind, g.namespace, g.name, mesh.REV_LABEL, g.pinned) for g in pinned],
            'note': None if found.gateways else
            'No Gateway of class istio or istio-waypoint: nothing for istiod to roll.'}
        return planned
    return plan_phase


def _dataplane_record(ctx, planned):
    """A sidecar-only mesh has nothing to upgrade here: the phase records nothing (a re-run stays unchanged)."""
    if not (planned.get('ambient') or {}).get('present'):
        return {}
    return {'phase': ctx.kind}


plan.register_phase(plan.PhaseSpec('cni', 30, ['rollback-finished', 'one-upgrade-at-a-time', 'old-is-not-new',
                                               'control-plane-first', 'target-version'],
                                   plan=_dataplane_plan(CNI), project=_dataplane_project(CNI),
                                   record_update=_dataplane_record, label='The cni phase'))
plan.register_phase(plan.PhaseSpec('ztunnel', 35, ['rollback-finished', 'one-upgrade-at-a-time', 'old-is-not-new',
                                                   'control-plane-first', 'target-version', 'cni-first'],
                                   plan=_dataplane_plan(ZTUNNEL), project=_dataplane_project(ZTUNNEL),
                                   record_update=_dataplane_record, label='The ztunnel phase'))
for _kind, _guard in (('tag', 'ztunnel-first'), ('verify', 'ambient-on-target'),
                      ('cleanup', 'ambient-off-old-revision')):
    if _guard not in plan.PHASES[_kind].guards:
        plan.PHASES[_kind].guards.append(_guard)
if 'ambient-rolled-back' not in plan.PHASES['rollback'].after_guards:
    plan.PHASES['rollback'].after_guards.append('ambient-rolled-back')
plan.PHASES['gateways']._plan = _gateways_plan(plan.PHASES['gateways']._plan)


def _rollback_plan(original):
    def plan_phase(ctx):
        planned = original(ctx)
        found = state_ambient(ctx.state)
        if found is None or not planned:
            return planned
        planned = dict(planned)
        planned['ambient'] = {'component': 'rollback', 'present': found.present or bool(found.gateways),
                              'gateways': bool(found.gateways), 'ztunnel': found.ztunnel is not None,
                              'cni': found.cni is not None, 'note': None}
        return planned
    return plan_phase


def _rollback_record(original):
    def record_update(ctx, planned):
        update = dict(original(ctx, planned))
        forget = list(update.get('forget_phases') or [])
        update['forget_phases'] = forget + [name for name in (CNI, ZTUNNEL) if name not in forget]
        return update
    return record_update


plan.PHASES['rollback']._plan = _rollback_plan(plan.PHASES['rollback']._plan)
plan.PHASES['rollback']._record_update = _rollback_record(plan.PHASES['rollback']._record_update)


def wait_gateways(load, revision, version, tag, timeout, poll=1.0, sleep=time.sleep, clock=time.time):
    """Wait until istiod re-rendered and rolled out every Gateway and waypoint following ``tag`` onto
    ``revision`` (and ``version``): nothing is restarted, istiod rolls them when the tag moves.  ``load()``
    returns a fresh AmbientState.  Returns (final state, gateways that moved, pinned ones)."""
    deadline = clock() + timeout
    first = None
    while True:
        found = load()
        if first is None:
            first = found
        problems = found.gateway_problems(revision, version, tag)
        if not problems:
            break
        if clock() >= deadline:
            raise NodeUpgradeFailed('istiod did not roll every Gateway onto revision %s (%s) within %ss: %s. A Gateway '
                                    'follows the revision of its istio.io/rev label, else its namespace\'s, else '
                                    'the tag; check istiod-%s\'s logs.' % (revision, version, timeout,
                                                                           '; '.join(problems), revision),
                                    result={'pending': problems})
        sleep(poll)
    follow, pinned = found.gateways_of(revision, tag)
    moved = sorted(g.ref for g in first.gateways_of(revision, tag)[0] if not g.on(revision, version))
    return found, moved, pinned
