"""meshops.istio.istio_ambient_upgrade through Ansible against the `ambient` scenario (3 nodes, ztunnel and
istio-cni 1.29.6 by Helm): node-by-node ztunnel upgrades with and without drains, a drain blocked by a
PodDisruptionBudget, a ztunnel that never becomes ready on the new version, istio-cni's rolling update, a
sidecar-only mesh.  Each test first does what the phases before do (install istiod-1-30-3 and upgrade the
ztunnel/istio-cni releases with the test helm), then checks what the cluster really holds -- including kubesim's
per-node record of when each node had no ready ztunnel."""
import json
import subprocess

import pytest

import helpers as h

from kubesim.helm_scenario import CHARTS_DIR, HELM_BIN

pytest.importorskip('helm_python')

NEW_REV, NEW_VERSION = '1-30-3', '1.30.3'
NS = 'istio-system'


def helm(sim, *args):
    cp = subprocess.run([h.PYTHON, str(HELM_BIN)] + [str(a) for a in args], env=sim.kubectl_env(),
                        capture_output=True, text=True, timeout=300, check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


def prepared(sim, ztunnel=True, cni=False):
    """istiod-1-30-3 installed; the ztunnel (and istio-cni) releases upgraded to 1.30.3, ztunnel OnDelete."""
    helm(sim, 'upgrade', '--install', 'istiod-%s' % NEW_REV, CHARTS_DIR / 'istiod', '-n', NS,
         '--set', 'revision=%s' % NEW_REV, '--set', 'global.tag=%s' % NEW_VERSION, '--wait')
    if ztunnel:
        helm(sim, 'upgrade', 'ztunnel', CHARTS_DIR / 'ztunnel', '-n', NS, '--reuse-values',
             '--set', 'revision=%s' % NEW_REV, '--set', 'global.tag=%s' % NEW_VERSION,
             '--set', 'updateStrategy.type=OnDelete', '--set', 'updateStrategy.rollingUpdate=null')
    if cni:
        helm(sim, 'upgrade', 'istio-cni', CHARTS_DIR / 'cni', '-n', NS, '--reuse-values',
             '--set', 'global.tag=%s' % NEW_VERSION)
    return sim


def ztunnels(sim):
    return dict((p['spec']['nodeName'], p) for p in h.list_items(sim, 'Pod', NS, 'app=ztunnel')
                if not p['metadata'].get('deletionTimestamp'))


def version(pod, container='istio-proxy'):
    return next(c['image'] for c in pod['spec']['containers'] if c['name'] == container).rsplit(':', 1)[1]


def ready(pod):
    return any(c['type'] == 'Ready' and c['status'] == 'True' for c in pod['status'].get('conditions') or [])


def cordoned(sim):
    return sorted(n['metadata']['name'] for n in h.list_items(sim, 'Node') if n['spec'].get('unschedulable'))


def outages(sim):
    return sim.get_json('/kubesim/ztunnel')['nodes']


def args(sim, **kw):
    out = dict(h.auth(sim), component='ztunnel', version=NEW_VERSION, revision=NEW_REV, wait_timeout=90)
    out.update(kw)
    return out


def test_ztunnel_node_by_node_with_drain(kubesim):
    sim = prepared(kubesim('ambient'))
    before = ztunnels(sim)
    assert set(version(p) for p in before.values()) == {'1.29.6'}
    rvs = dict((n, p['metadata']['resourceVersion']) for n, p in before.items())

    planned = h.run_module('istio_ambient_upgrade', args(sim, drain=True), check=True, diff=True)
    assert not planned.failed, planned
    assert planned['changed'] and planned['batches'] == [[n] for n in sorted(before)]
    assert dict((n, p['metadata']['resourceVersion']) for n, p in ztunnels(sim).items()) == rvs
    assert cordoned(sim) == []

    res = h.run_module('istio_ambient_upgrade', args(sim, drain=True), diff=True)
    assert not res.failed, res
    assert res['changed'] and res['upgraded'] == sorted(before)
    after = ztunnels(sim)
    assert set(after) == set(before)
    for node, pod in after.items():
        assert version(pod) == NEW_VERSION and ready(pod)
        assert pod['metadata']['annotations']['istio.io/rev'] == NEW_REV
        assert pod['metadata']['name'] != before[node]['metadata']['name']
    assert cordoned(sim) == []
    # node by node: each node was without a ready ztunnel once, and never two nodes at the same time
    spans = []
    for node, entry in outages(sim).items():
        assert len(entry['not_ready']) == 1, entry
        assert [s['version'] for s in entry['served_by']] == ['1.29.6', NEW_VERSION]
        spans.append(entry['not_ready'][0])
    spans.sort()
    for first, second in zip(spans, spans[1:]):
        assert first[1] <= second[0]
    # the drain moved the app pods off each node before its ztunnel went: every node was drained in turn
    drained = [n for n in res['nodes'] if n['evicted']]
    assert drained, res['nodes']

    again = h.run_module('istio_ambient_upgrade', args(sim, drain=True))
    assert not again.failed and not again['changed'] and again['upgraded'] == []


def test_drain_blocked_by_pdb_stops_at_the_node_and_uncordons(kubesim):
    sim = prepared(kubesim('ambient'))
    sim.kubectl('create', 'pdb', 'bar-all', '-n', 'bar', '--selector=app=bar', '--min-available=2', check=True)
    first = sorted(ztunnels(sim))[0]
    bar_nodes = set(p['spec']['nodeName'] for p in h.pods_of(sim, 'bar', 'bar'))
    res = h.run_module('istio_ambient_upgrade', args(sim, drain=True, drain_timeout=3))
    assert res.failed
    blocked = res['failed_node']
    assert blocked in bar_nodes
    assert 'PodDisruptionBudget bar/bar-all' in res['msg'] and 'bar/bar-' in res['msg'], res['msg']
    assert res['blocking_pods'] and all(p.startswith('bar/') for p in res['blocking_pods'])
    assert cordoned(sim) == []
    now = ztunnels(sim)
    # nodes before the blocked one were upgraded, the blocked one and those after it were not touched
    for node in sorted(now):
        expected = NEW_VERSION if node < blocked else '1.29.6'
        assert version(now[node]) == expected, (node, blocked, first)
    assert len(h.pods_of(sim, 'bar', 'bar')) == 2


def test_ztunnel_never_ready_stops_at_first_node(kubesim):
    sim = prepared(kubesim('ambient', missing_image=['docker.io/istio/ztunnel:%s' % NEW_VERSION]))
    before = ztunnels(sim)
    first = sorted(before)[0]
    res = h.run_module('istio_ambient_upgrade', args(sim, drain=True, wait_timeout=5))
    assert res.failed
    assert res['failed_node'] == first and 'node %s' % first in res['msg']
    assert 'ImagePullBackOff' in res['msg'] or 'ErrImagePull' in res['msg'], res['msg']
    assert cordoned(sim) == []
    now = ztunnels(sim)
    for node in sorted(before)[1:]:
        assert now[node]['metadata']['name'] == before[node]['metadata']['name']
        assert version(now[node]) == '1.29.6' and ready(now[node])
    assert version(now[first]) == NEW_VERSION and not ready(now[first])


def test_cni_rolls_by_itself_and_is_checked(kubesim):
    sim = prepared(kubesim('ambient'), ztunnel=False, cni=True)
    res = h.run_module('istio_ambient_upgrade', dict(h.auth(sim), component='cni', version=NEW_VERSION,
                                                     wait_timeout=90))
    assert not res.failed, res
    pods = [p for p in h.list_items(sim, 'Pod', NS, 'k8s-app=istio-cni-node')
            if not p['metadata'].get('deletionTimestamp')]
    assert len(pods) == 3 and all(version(p, 'install-cni') == NEW_VERSION and ready(p) for p in pods)
    again = h.run_module('istio_ambient_upgrade', dict(h.auth(sim), component='cni', version=NEW_VERSION))
    assert not again.failed and not again['changed']


def test_sidecar_only_mesh_is_skipped(kubesim):
    sim = kubesim('blog')
    res = h.run_module('istio_ambient_upgrade', dict(h.auth(sim), component='ztunnel', version='1.15.4',
                                                     revision='1-15-4'))
    assert not res.failed and res['present'] is False and not res['changed']
    assert 'sidecar-only' in res['msg']


def test_bad_input_rejected_before_the_cluster(kubesim):
    res = h.run_module('istio_ambient_upgrade', {'kubeconfig': '/nonexistent', 'component': 'ztunnel',
                                                 'version': NEW_VERSION})
    assert res.failed and 'needs revision' in res['msg']
    res = h.run_module('istio_ambient_upgrade', {'kubeconfig': '/nonexistent', 'component': 'ztunnel',
                                                 'version': NEW_VERSION, 'revision': NEW_REV, 'batch_size': 0})
    assert res.failed and 'batch_size' in res['msg']
    assert json.dumps(res)  # a result, not a traceback
