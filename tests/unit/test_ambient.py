"""The ambient model (plugins/module_utils/ambient.py) on plain objects: which revision serves a Gateway, the data
plane per node, the planner's cni/ztunnel phases and ambient guards, and the node-by-node engine's promises
(stop at the failing node, name it, leave no node cordoned)."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import ambient as a
from ansible_collections.meshops.istio.plugins.module_utils import mesh, plan as p, upgrade_state as us
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

import fake_cluster as f

NODES = ['node-1', 'node-2', 'node-3']


def node(name, unschedulable=False):
    return {'kind': 'Node', 'metadata': {'name': name}, 'spec': {'unschedulable': True} if unschedulable else {}}


def ztunnel_ds(version='1.29.6', revision='1-29-6', strategy='RollingUpdate'):
    return {'kind': 'DaemonSet', 'metadata': {'name': 'ztunnel', 'namespace': 'istio-system', 'generation': 1,
                                              'annotations': {'istio.io/rev': revision,
                                                              'meta.helm.sh/release-name': 'ztunnel'}},
            'spec': {'updateStrategy': {'type': strategy},
                     'template': {'metadata': {'annotations': {'istio.io/rev': revision}},
                                  'spec': {'containers': [{'name': 'istio-proxy',
                                                           'image': 'docker.io/istio/ztunnel:%s' % version,
                                                           'args': ['proxy', 'ztunnel']}]}}}}


def cni_ds(version='1.29.6'):
    return {'kind': 'DaemonSet', 'metadata': {'name': 'istio-cni-node', 'namespace': 'istio-system',
                                              'labels': {'k8s-app': 'istio-cni-node'}},
            'spec': {'template': {'spec': {'containers': [{'name': 'install-cni',
                                                           'image': 'docker.io/istio/install-cni:%s' % version}]}}}}


def daemon_pod(kind, node_name, version, revision='1-29-6', ready=True, uid=None):
    if kind == 'ztunnel':
        labels, container, image = {'app': 'ztunnel'}, 'istio-proxy', 'docker.io/istio/ztunnel:%s' % version
        ann = {'istio.io/rev': revision}
    else:
        labels, container, image = {'k8s-app': 'istio-cni-node'}, 'install-cni', 'docker.io/istio/install-cni:%s' % version
        ann = {}
    name = '%s-%s' % (kind, node_name)
    return {'kind': 'Pod', 'metadata': {'name': name, 'namespace': 'istio-system', 'labels': labels,
                                        'annotations': ann, 'uid': uid or name,
                                        'ownerReferences': [{'kind': 'DaemonSet', 'name': kind, 'controller': True}]},
            'spec': {'nodeName': node_name, 'containers': [{'name': container, 'image': image}]},
            'status': {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': 'True' if ready else 'False'}]}}


def gateway(ns, name, cls, labels=None):
    return {'kind': 'Gateway', 'metadata': {'name': name, 'namespace': ns, 'labels': labels or {}},
            'spec': {'gatewayClassName': cls}}


def gw_deployment(ns, name, ready=True):
    return {'kind': 'Deployment', 'metadata': {'name': name, 'namespace': ns, 'generation': 2},
            'spec': {'replicas': 1},
            'status': {'observedGeneration': 2, 'replicas': 1, 'updatedReplicas': 1,
                       'availableReplicas': 1 if ready else 0}}


def gw_pod(ns, gw, revision, version):
    return {'kind': 'Pod', 'metadata': {'name': '%s-abc' % gw, 'namespace': ns,
                                        'labels': {a.GATEWAY_NAME_LABEL: gw},
                                        'annotations': {'istio.io/rev': revision}},
            'spec': {'containers': [{'name': 'istio-proxy', 'image': 'docker.io/istio/proxyv2:%s' % version}]},
            'status': {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': 'True'}]}}


def mesh_state(tag_on='1-29-6', extra=()):
    objs = [f.istiod('1-29-6', '1.29.6'), f.service('1-29-6'), f.injector('1-29-6'),
            f.istiod('1-30-3', '1.30.3'), f.service('1-30-3'), f.injector('1-30-3'),
            f.tag('default', tag_on), f.validator(tag_on),
            f.namespace('foo', {'istio.io/dataplane-mode': 'ambient'}),
            f.namespace('bar', {'istio.io/dataplane-mode': 'ambient'}),
            f.namespace('baz', {'istio.io/rev': 'default'}), f.namespace('istio-ingress')] + list(extra)
    return mesh.MeshState.load(f.FakeCluster(objs)), objs


def ambient_state(state, objs, zt=('1.29.6', '1-29-6'), zt_nodes=None, cni='1.29.6', cni_nodes=None,
                  gw_rev='1-29-6', gw_version='1.29.6', pinned=None):
    zt_nodes = zt_nodes or dict((n, zt) for n in NODES)
    cni_nodes = cni_nodes or dict((n, cni) for n in NODES)
    pods = [daemon_pod('ztunnel', n, v, r) for n, (v, r) in zt_nodes.items()]
    pods += [daemon_pod('cni', n, v) for n, v in cni_nodes.items()]
    gws = [gateway('bar', 'waypoint', 'istio-waypoint'),
           gateway('istio-ingress', 'ingress', 'istio', {'istio.io/rev': pinned} if pinned else None)]
    deps = [gw_deployment('bar', 'waypoint'), gw_deployment('istio-ingress', 'ingress-istio')]
    gpods = [gw_pod('bar', 'waypoint', gw_rev, gw_version),
             gw_pod('istio-ingress', 'ingress', pinned or gw_rev, '1.29.6' if pinned else gw_version)]
    namespaces = [o for o in objs if o.get('kind') == 'Namespace']
    return a.AmbientState.from_objects(state, [ztunnel_ds(*zt), cni_ds(cni)], pods, [node(n) for n in NODES],
                                       namespaces, gws, deps, gpods, True)


def request(**kw):
    return p.UpgradeRequest('1-30-3', '1.30.3', waves=[], gateways=[], **kw)


def planned(state, phase, rec=None):
    return p.UpgradePlan.build(state, rec or us.empty_record(), request(), phase)


# --- the model -------------------------------------------------------------------------------------------

def test_serving_revision_follows_label_then_namespace_then_default_tag():
    state = mesh_state(tag_on='1-29-6')[0]
    assert a.serving_revisions(state, {}, {}) == ['1-29-6']
    assert a.serving_revisions(state, {'istio.io/rev': '1-30-3'}, {}) == ['1-30-3']
    assert a.serving_revisions(state, {}, {'istio.io/rev': '1-30-3'}) == ['1-30-3']
    assert a.serving_revisions(state, {'istio.io/rev': 'default'}, {'istio.io/rev': '1-30-3'}) == ['1-29-6']
    moved = mesh_state(tag_on='1-30-3')[0]
    assert a.serving_revisions(moved, {}, {}) == ['1-30-3']
    assert a.serving_revisions(moved, {'istio.io/rev': 'nope'}, {}) == []


def test_dataplane_per_node_and_what_uses_a_revision():
    state, objs = mesh_state()
    found = ambient_state(state, objs, zt_nodes={'node-1': ('1.30.3', '1-30-3'), 'node-2': ('1.29.6', '1-29-6'),
                                                 'node-3': ('1.29.6', '1-29-6')})
    assert found.present and found.namespaces == {'foo': 'ambient', 'bar': 'ambient', 'baz': 'sidecar'}
    assert found.ztunnel.revision == '1-29-6' and found.ztunnel.version == '1.29.6'
    problems = found.dataplane_problems('ztunnel', '1-30-3', '1.30.3')
    assert problems[0].startswith('DaemonSet istio-system/ztunnel is configured for revision 1-29-6')
    assert [x.split(':')[0] for x in problems[1:]] == ['ztunnel node-2', 'ztunnel node-3']
    assert found.dataplane_problems('cni', None, '1.29.6') == []
    users = found.users_of('1-29-6')
    assert any('ztunnel on node(s) node-2, node-3' in u for u in users)
    assert 'waypoint bar/waypoint' in users and 'gateway istio-ingress/ingress' in users
    assert [g.to_dict()['serving_revision'] for g in found.gateways] == ['1-29-6', '1-29-6']


def test_gateway_problems_and_pinned_gateways():
    state, objs = mesh_state(tag_on='1-30-3')
    found = ambient_state(state, objs, gw_rev='1-30-3', gw_version='1.30.3', pinned='1-29-6')
    follow, pinned = found.gateways_of('1-30-3')
    assert [g.name for g in follow] == ['waypoint'] and [g.name for g in pinned] == ['ingress']
    assert found.gateway_problems('1-30-3', '1.30.3') == []
    assert any('pinned by istio.io/rev=1-29-6' in u for u in found.users_of('1-29-6'))
    stale = ambient_state(state, objs, gw_rev='1-29-6', gw_version='1.29.6')
    assert stale.gateway_problems('1-30-3', '1.30.3') == [
        'waypoint bar/waypoint: pods rendered by 1-29-6; proxy 1.29.6, expected 1.30.3',
        'gateway istio-ingress/ingress: pods rendered by 1-29-6; proxy 1.29.6, expected 1.30.3']


def test_sidecar_only_mesh_has_no_ambient_data_plane():
    state, objs = mesh_state()
    found = a.AmbientState.from_objects(state, [], [], [node(n) for n in NODES], [], [], [], [], False)
    assert not found.present and found.users_of('1-29-6') == []
    assert found.dataplane_problems('ztunnel', '1-30-3', '1.30.3') == []


def test_node_batches_and_release_values():
    assert a.node_batches(['c', 'a', 'b'], 2) == [['a', 'b'], ['c']]
    with pytest.raises(InvalidInput, match='at least 1'):
        a.node_batches(['a'], 0)
    values = a.release_values('ztunnel', '1-30-3', '1.30.3', True, {'logLevel': 'debug'})
    assert values == {'logLevel': 'debug', 'revision': '1-30-3', 'global': {'tag': '1.30.3'},
                      'updateStrategy': {'type': 'OnDelete', 'rollingUpdate': None}}
    assert a.release_values('cni', None, '1.30.3', False) == {}
    with pytest.raises(InvalidInput, match='leave revision out'):
        a.release_values('ztunnel', '1-30-3', '1.30.3', True, {'revision': '1-29-6'})


# --- the planner ------------------------------------------------------------------------------------------

def test_phases_are_ordered_between_install_and_tag():
    assert p.PHASES['install'].order < p.PHASES['cni'].order < p.PHASES['ztunnel'].order < p.PHASES['tag'].order


def test_cni_and_ztunnel_refuse_out_of_order():
    state, objs = mesh_state()
    state.ambient = ambient_state(state, objs)
    cni = planned(state, 'cni')
    assert cni.allowed and cni.to_dict()['ambient']['nodes'] == NODES
    zt = planned(state, 'ztunnel')
    assert not zt.allowed and "Run the 'cni' phase first" in zt.refusal
    tag = planned(state, 'tag')
    assert not tag.allowed and "Run the 'cni' and 'ztunnel' phases first" in tag.refusal
    # cni done: ztunnel may run; ztunnel done: the tag may move
    state.ambient = ambient_state(state, objs, cni='1.30.3')
    assert planned(state, 'ztunnel').allowed
    state.ambient = ambient_state(state, objs, zt=('1.30.3', '1-30-3'), cni='1.30.3')
    assert planned(state, 'tag').allowed


def test_cni_refuses_before_the_new_istiod():
    objs = [f.istiod('1-29-6', '1.29.6'), f.service('1-29-6'), f.injector('1-29-6'), f.tag('default', '1-29-6'),
            f.validator('1-29-6'), f.namespace('foo', {'istio.io/dataplane-mode': 'ambient'})]
    state = mesh.MeshState.load(f.FakeCluster(objs))
    state.ambient = ambient_state(state, objs)
    plan = planned(state, 'cni')
    assert not plan.allowed and "Run the 'install' phase first" in plan.refusal


def test_sidecar_only_mesh_plans_a_note():
    state, objs = mesh_state()
    state.ambient = a.AmbientState.from_objects(state, [], [], [node(n) for n in NODES], [], [], [], [], False)
    plan = planned(state, 'ztunnel').to_dict()
    assert plan['allowed'] and plan['ambient']['present'] is False and 'sidecar-only' in plan['ambient']['note']
    assert plan['changes']['objects'] == [o for o in plan['changes']['objects'] if o['kind'] == 'ConfigMap']


def test_cleanup_refuses_while_ztunnel_or_gateways_use_the_old_revision():
    state, objs = mesh_state(tag_on='1-30-3')
    rec = us.empty_record()
    rec.update({'to_revision': '1-30-3', 'from_revision': '1-29-6', 'tag': 'default'})
    state.ambient = ambient_state(state, objs, zt=('1.30.3', '1-30-3'), cni='1.30.3', gw_rev='1-30-3',
                                  gw_version='1.30.3', pinned='1-29-6')
    plan = planned(state, 'cleanup', rec)
    assert not plan.allowed and 'gateway istio-ingress/ingress (pinned by istio.io/rev=1-29-6)' in plan.refusal
    state.ambient = ambient_state(state, objs, zt=('1.30.3', '1-30-3'), cni='1.30.3', gw_rev='1-30-3',
                                  gw_version='1.30.3')
    guards = dict((g['name'], g) for g in planned(state, 'cleanup', rec).guards)
    assert guards['ambient-off-old-revision']['ok']


# --- node by node ------------------------------------------------------------------------------------------

class NodesClient:
    """Just enough of ClusterClient for NodeByNodeUpgrade: nodes, daemon pods that come back (or not)."""

    def __init__(self, comes_back=True, cordoned=()):
        self.nodes = dict((n, {'metadata': {'name': n}, 'spec': {'unschedulable': True} if n in cordoned else {}})
                          for n in NODES)
        self.pods = dict((n, daemon_pod('ztunnel', n, '1.29.6')) for n in NODES)
        self.comes_back = comes_back
        self.patches = []

    def get(self, kind, name, namespace=None):
        return self.nodes[name]

    def patch(self, kind, name, body, namespace=None):
        self.patches.append((name, body['spec']['unschedulable']))
        self.nodes[name]['spec']['unschedulable'] = body['spec']['unschedulable']

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        node_name = (field_selector or '').split('=')[-1]
        if label_selector:
            return [self.pods[node_name]] if node_name in self.pods else []
        return []   # nothing else runs on the node

    def delete(self, kind, name, namespace=None):
        node_name = name[len('ztunnel-'):]
        self.pods[node_name] = daemon_pod('ztunnel', node_name, '1.30.3', '1-30-3', ready=self.comes_back,
                                          uid='new-' + node_name)


def component(strategy='OnDelete'):
    pods = [daemon_pod('ztunnel', n, '1.29.6') for n in NODES]
    return a.DataplaneComponent('ztunnel', ztunnel_ds('1.30.3', '1-30-3', strategy), pods, NODES)


def test_node_by_node_upgrades_in_batches_and_uncordons():
    client = NodesClient(cordoned=['node-3'])
    run = a.NodeByNodeUpgrade(client, component(), '1.30.3', batch_size=2, drain=True, sleep=lambda s: None)
    result = run.run()
    assert result['batches'] == [['node-1', 'node-2'], ['node-3']]
    assert result['upgraded'] == NODES
    # cordoned and uncordoned by the run; node-3 was cordoned before and is left so
    assert ('node-1', True) in client.patches and ('node-1', None) in client.patches
    assert not any(patch[0] == 'node-3' for patch in client.patches)
    assert client.nodes['node-3']['spec']['unschedulable'] is True


def test_node_by_node_stops_at_the_failing_node_and_leaves_nothing_cordoned():
    client = NodesClient(comes_back=False)
    clock = iter(range(0, 10000, 10))
    run = a.NodeByNodeUpgrade(client, component(), '1.30.3', drain=True, wait_timeout=30, sleep=lambda s: None,
                              clock=lambda: next(clock))
    with pytest.raises(a.NodeUpgradeFailed) as exc:
        run.run()
    assert 'node node-1' in exc.value.message and exc.value.result['failed_node'] == 'node-1'
    assert all(not n['spec'].get('unschedulable') for n in client.nodes.values())
    assert client.pods['node-2']['metadata']['name'] == 'ztunnel-node-2'
    assert client.pods['node-2']['spec']['containers'][0]['image'].endswith(':1.29.6')


def test_rolling_update_daemonset_is_refused():
    with pytest.raises(InvalidInput, match='OnDelete'):
        a.NodeByNodeUpgrade(NodesClient(), component('RollingUpdate'), '1.30.3').run()
