"""OpenShift DeploymentConfigs and Argo Rollouts through rollout_restart and istio_revision_info, run through
Ansible against the simulated cluster (scenario ``sail``: the DeploymentConfig ``bar/ratings`` and the Rollout
``baz/reviews`` beside Deployments, all injected by Sail's revision ``default-v1-29-6``).

Set-up does what the Sail operator does on a version change (the Istio's ``spec.version`` to v1.30.3: a new
revision ``default-v1-30-3`` and the ``default`` tag following it); every assertion reads the cluster.
"""
import json

import helpers as h

OLD, NEW = 'default-v1-29-6', 'default-v1-30-3'
DC_PATH = '/apis/apps.openshift.io/v1/namespaces/bar/deploymentconfigs'
RO_PATH = '/apis/argoproj.io/v1alpha1/namespaces/baz/rollouts'
ISTIO_PATH = '/apis/sailoperator.io/v1/istios/default'
TAG_PATH = '/apis/sailoperator.io/v1/istiorevisiontags/default'
MERGE = {'Content-Type': 'application/merge-patch+json'}


def api(sim, path):
    return sim.get_json(path)


def patch(sim, path, body):
    code, _headers, text = sim.request('PATCH', path, body, headers=MERGE)
    assert code == 200, (code, text[:300])


def sail_moves_to(sim, version, revision):
    """What an operator does by hand on Sail: set the Istio's version; Sail creates the revision and the tag
    follows it."""
    patch(sim, ISTIO_PATH, {'spec': {'version': version}})
    sim.wait_for(lambda: (api(sim, TAG_PATH).get('status') or {}).get('istioRevision') == revision, timeout=60,
                 message='tag default on %s' % revision)
    sim.wait_for(lambda: h.mwc_revision(sim, 'istio-revision-tag-default')[0] == revision, timeout=60,
                 message='tag webhook on %s' % revision)


def pod_revisions(sim, ns, selector):
    pods = [p for p in h.list_items(sim, 'Pod', ns, selector) if not p['metadata'].get('deletionTimestamp')
            and p['status'].get('phase') not in ('Succeeded', 'Failed')]
    return sorted((p['metadata'].get('annotations') or {}).get('istio.io/rev') or 'none' for p in pods)


def platform_snapshot(sim):
    """resourceVersions of the workloads, their ReplicationControllers/ReplicaSets and pods."""
    out = h.snapshot(sim, ('Deployment', 'ReplicaSet', 'Pod'))
    for path in (DC_PATH, RO_PATH, '/api/v1/namespaces/bar/replicationcontrollers'):
        for item in api(sim, path)['items']:
            out[(path, item['metadata']['name'])] = item['metadata']['resourceVersion']
    return out


def by_id(result):
    return dict(('%s/%s/%s' % (w['namespace'], w['kind'], w['name']), w) for w in result['workloads'])


def test_deploymentconfig_and_rollout_seen_restarted_verified_and_idempotent(kubesim):
    sim = kubesim('sail')
    sail_moves_to(sim, 'v1.30.3', NEW)

    # istio_revision_info sees their pods' proxies through pod -> RC -> DC and pod -> RS -> Rollout
    info = h.run_module('istio_revision_info', h.auth(sim))
    assert not info.failed, info
    seen = dict(('%s/%s/%s' % (w['namespace'], w['kind'], w['name']), w) for w in info['workloads'])
    for wid in ('bar/DeploymentConfig/ratings', 'baz/Rollout/reviews'):
        assert seen[wid]['revisions'] == [OLD] and seen[wid]['versions'] == ['1.29.6'], seen[wid]
        assert seen[wid]['expected_revision'] == NEW and seen[wid]['needs_restart'] is True
        assert len(seen[wid]['pods']) == 2
    # the deployer pod of the DeploymentConfig is no workload's pod
    assert not [p for w in seen.values() for p in w['pods'] if p['name'].endswith('-deploy')]

    args = dict(h.auth(sim), namespaces=['bar', 'baz'], wait_timeout=180)
    before = platform_snapshot(sim)
    check = h.run_module('rollout_restart', args, check=True, diff=True)
    assert not check.failed and check['changed'] is True, check
    assert by_id(check)['bar/DeploymentConfig/ratings']['action'] == 'restarted'
    assert by_id(check)['baz/Rollout/reviews']['action'] == 'restarted'
    assert platform_snapshot(sim) == before
    assert api(sim, DC_PATH + '/ratings')['status']['latestVersion'] == 1
    assert 'restartAt' not in api(sim, RO_PATH + '/reviews')['spec']

    res = h.run_module('rollout_restart', args, diff=True)
    assert not res.failed, res
    got = by_id(res)
    for wid in ('bar/DeploymentConfig/ratings', 'baz/Rollout/reviews', 'bar/Deployment/bar', 'baz/Deployment/baz'):
        assert got[wid]['action'] == 'restarted', got[wid]
        assert (got[wid]['from_version'], got[wid]['to_version'], got[wid]['revision']) == ('1.29.6', '1.30.3', NEW)
    diff = res['diff'][0] if isinstance(res['diff'], list) else res['diff']
    assert diff['after']['bar/DeploymentConfig/ratings'] == {'status.latestVersion (oc rollout latest)': '2'}

    # the cluster: a second deployment of the DeploymentConfig (as oc rollout latest makes it), every pod of it
    # and of the Rollout injected by the new revision; the Rollout's restart recorded as Argo does
    dc = api(sim, DC_PATH + '/ratings')
    assert dc['status']['latestVersion'] == 2 and dc['status']['details']['causes'][0]['type'] == 'Manual'
    rc2 = sim.get_json('/api/v1/namespaces/bar/replicationcontrollers/ratings-2')
    assert rc2['metadata']['annotations']['openshift.io/deployment.phase'] == 'Complete'
    assert pod_revisions(sim, 'bar', 'deploymentconfig=ratings') == [NEW, NEW]
    ro = api(sim, RO_PATH + '/reviews')
    assert ro['spec']['restartAt'] and ro['status']['restartedAt'] == ro['spec']['restartAt']
    assert ro['status']['phase'] == 'Healthy'
    assert pod_revisions(sim, 'baz', 'app=reviews') == [NEW, NEW]

    again = h.run_module('rollout_restart', args)
    assert not again.failed and again['changed'] is False, again
    assert set(w['action'] for w in again['workloads']) == {'current'}
    assert api(sim, DC_PATH + '/ratings')['status']['latestVersion'] == 2


def test_paused_ones_are_skipped_with_what_to_do_and_unserved_kinds_refused(kubesim, blog):
    sim = kubesim('sail')
    sail_moves_to(sim, 'v1.30.3', NEW)
    patch(sim, DC_PATH + '/ratings', {'spec': {'paused': True}})
    patch(sim, RO_PATH + '/reviews', {'spec': {'paused': True}})
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['bar', 'baz'],
                                               kinds=['DeploymentConfig', 'Rollout'], wait_timeout=120))
    assert not res.failed and res['changed'] is False, res
    got = by_id(res)
    assert got['bar/DeploymentConfig/ratings']['action'] == 'skipped'
    assert 'oc rollout resume dc/ratings -n bar' in got['bar/DeploymentConfig/ratings']['reason']
    assert got['baz/Rollout/reviews']['action'] == 'skipped'
    assert 'kubectl argo rollouts promote reviews -n baz' in got['baz/Rollout/reviews']['reason']
    assert api(sim, DC_PATH + '/ratings')['status']['latestVersion'] == 1
    assert pod_revisions(sim, 'bar', 'deploymentconfig=ratings') == [OLD, OLD]

    # a cluster without OpenShift: asked for by name, the kind is refused before anything is restarted
    before = h.snapshot(blog)
    res = h.run_module('rollout_restart', dict(h.auth(blog), namespaces=['bar'], kinds=['DeploymentConfig']))
    assert res.failed and 'serves no DeploymentConfig' in res['msg'], res
    assert h.snapshot(blog) == before
    # by default the kinds it does not serve are simply not there
    res = h.run_module('rollout_restart', dict(h.auth(blog), namespaces=['bar']), check=True)
    assert not res.failed and [w['kind'] for w in res['workloads']] == ['Deployment'], res


def test_a_crashing_new_proxy_fails_the_deploymentconfig_and_names_the_pod(kubesim):
    sim = kubesim('sail', crash_proxy_version='1.30.3')
    sail_moves_to(sim, 'v1.30.3', NEW)
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['bar'], kinds=['DeploymentConfig'],
                                               wait_timeout=120))
    assert res.failed, res
    got = by_id(res)['bar/DeploymentConfig/ratings']
    assert got['action'] == 'failed' and 'CrashLoopBackOff' in got['reason'] and 'ratings-2-' in got['reason'], got
    assert 'bar/DeploymentConfig/ratings' in res['msg']
    assert json.dumps(res['summary']) and res['summary']['failed'] == 1
