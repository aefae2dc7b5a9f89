"""OpenShift DeploymentConfigs and Argo Rollouts in the rollout engine and the mesh model: status as
``oc rollout status`` / ``kubectl argo rollouts status`` read it, restart blockers, restart markers, pod
ownership through ReplicationControllers and Rollout ReplicaSets, and which kinds a cluster serves."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils.errors import NotFound
from ansible_collections.meshops.istio.plugins.module_utils.rollout import (
    PodInfo,
    is_new_pod,
    prune_workload,
    restart_blocker,
    restart_marker,
    rollout_progress,
    workload_selector,
)


def dc(latest=2, generation=3, observed=3, replicas=2, reason='NewReplicationControllerAvailable', rc=None,
       paused=False, **status):
    st = {'latestVersion': latest, 'observedGeneration': observed, 'replicas': replicas,
          'updatedReplicas': replicas, 'availableReplicas': replicas}
    st.update(status)
    if reason:
        st['conditions'] = [{'type': 'Progressing', 'status': 'True', 'reason': reason,
                             'message': 'replication controller "%s" successfully rolled out'
                             % (rc or 'ratings-%d' % latest)}]
    spec = {'replicas': replicas, 'selector': {'app': 'ratings', 'version': 'v1'}}
    if paused:
        spec['paused'] = True
    return {'kind': 'DeploymentConfig', 'metadata': {'name': 'ratings', 'namespace': 'bar', 'generation': generation},
            'spec': spec, 'status': st}


def rollout(generation=2, observed='2', phase='Healthy', message='', restart_at=None, restarted_at=None, **spec):
    sp = {'replicas': 2, 'selector': {'matchLabels': {'app': 'reviews'}}}
    sp.update(spec)
    if restart_at:
        sp['restartAt'] = restart_at
    st = {'observedGeneration': observed, 'phase': phase, 'message': message}
    if restarted_at:
        st['restartedAt'] = restarted_at
    return {'kind': 'Rollout', 'metadata': {'name': 'reviews', 'namespace': 'baz', 'generation': generation},
            'spec': sp, 'status': st}


@pytest.mark.parametrize('obj,state,text', [
    (dc(), 'done', 'replication controller "ratings-2" successfully rolled out'),
    # right after instantiate the condition still speaks of the previous deployment: not done
    (dc(rc='ratings-1', updatedReplicas=0), 'waiting', '0 out of 2 new replicas have been updated'),
    (dc(rc='ratings-1'), 'waiting', 'waiting for replication controller'),
    (dc(generation=4, observed=3), 'waiting', 'spec to be observed'),
    (dc(reason='ProgressDeadlineExceeded'), 'failed', 'ProgressDeadlineExceeded'),
    (dc(reason='RolloutCancelled'), 'failed', 'RolloutCancelled'),
    (dc(reason=None, replicas=2, availableReplicas=1), 'waiting', '1 of 2 updated replicas are available'),
    (dc(paused=True), 'failed', 'oc rollout resume dc/ratings'),
])
def test_deploymentconfig_status_as_oc_rollout_status(obj, state, text):
    progress = rollout_progress('DeploymentConfig', obj)
    assert progress.state == state and text in progress.message, progress


@pytest.mark.parametrize('obj,state,text', [
    (rollout(), 'done', 'Healthy'),
    (rollout(generation=3, observed='2'), 'waiting', 'spec update to be observed'),
    (rollout(restart_at='2026-01-01T00:00:05Z', phase='Progressing', message='rollout is restarting'), 'waiting',
     'rollout is restarting'),
    # Healthy but the restart not yet acknowledged: still restarting
    (rollout(restart_at='2026-01-01T00:00:05Z', restarted_at='2026-01-01T00:00:00Z'), 'waiting', 'restarting'),
    (rollout(restart_at='2026-01-01T00:00:05Z', restarted_at='2026-01-01T00:00:05Z'), 'done', 'Healthy'),
    (rollout(phase='Degraded', message='ProgressDeadlineExceeded: timed out'), 'failed', 'Degraded'),
    (rollout(phase='Paused', message='CanaryPauseStep'), 'waiting', 'Paused - CanaryPauseStep'),
])
def test_rollout_status_as_argo_rollouts_status(obj, state, text):
    progress = rollout_progress('Rollout', obj)
    assert progress.state == state and text in progress.message, progress


def test_blockers_say_what_to_do():
    assert restart_blocker('DeploymentConfig', dc()) is None
    assert 'oc rollout resume dc/ratings -n bar' in restart_blocker('DeploymentConfig', dc(paused=True))
    assert restart_blocker('Rollout', rollout()) is None
    assert 'kubectl argo rollouts promote reviews -n baz' in restart_blocker('Rollout', rollout(paused=True))
    paused_step = rollout()
    paused_step['status']['pauseConditions'] = [{'reason': 'CanaryPauseStep'}]
    assert 'paused' in restart_blocker('Rollout', paused_step)
    assert 'Degraded' in restart_blocker('Rollout', rollout(phase='Degraded', message='x'))


def test_markers_and_new_pods():
    assert restart_marker('DeploymentConfig', dc(latest=3)) == '3'
    assert restart_marker('Rollout', rollout(restart_at='2026-01-01T00:00:05Z')) == '2026-01-01T00:00:05Z'
    assert restart_marker('Rollout', rollout()) is None
    assert is_new_pod('DeploymentConfig', '3', '3') and not is_new_pod('DeploymentConfig', '2', '3')
    assert is_new_pod('Rollout', '2026-01-01T00:00:05Z', '2026-01-01T00:00:05Z')
    assert is_new_pod('Rollout', '2026-01-01T00:01:00Z', '2026-01-01T00:00:05Z')
    assert not is_new_pod('Rollout', '2026-01-01T00:00:04Z', '2026-01-01T00:00:05Z')
    assert not is_new_pod('Rollout', None, '2026-01-01T00:00:05Z')
    # pruning keeps what the status and the markers read
    pruned = prune_workload('DeploymentConfig', dc(latest=3))
    assert restart_marker('DeploymentConfig', pruned) == '3'
    assert rollout_progress('DeploymentConfig', pruned).done
    pruned = prune_workload('Rollout', rollout(restart_at='T1', restarted_at='T1'))
    assert restart_marker('Rollout', pruned) == 'T1' and rollout_progress('Rollout', pruned).done
    assert workload_selector('DeploymentConfig', dc()) == 'app=ratings,version=v1'
    assert workload_selector('Rollout', rollout()) == 'app=reviews'


def pod(owner_kind, owner_name, labels=None, annotations=None, created='2026-01-01T00:00:06Z'):
    return {'metadata': {'name': 'p', 'namespace': 'bar', 'labels': dict(labels or {}),
                         'annotations': dict(annotations or {}), 'creationTimestamp': created,
                         'ownerReferences': [{'kind': owner_kind, 'name': owner_name, 'controller': True}]},
            'spec': {'containers': [{'name': 'istio-proxy', 'image': 'registry.istio.io/release/proxyv2:1.30.3'}]},
            'status': {'phase': 'Running'}}


def test_pod_owners_through_replication_controllers_and_rollout_replicasets():
    dc_pod = pod('ReplicationController', 'ratings-2', {'deploymentconfig': 'ratings', 'deployment': 'ratings-2'},
                 {'openshift.io/deployment-config.name': 'ratings',
                  'openshift.io/deployment-config.latest-version': '2'})
    assert mesh.pod_owner(dc_pod) == ('DeploymentConfig', 'ratings')
    assert PodInfo.from_pod(dc_pod).restarted_at == '2'
    deployer = pod('ReplicationController', 'ratings-2', {'openshift.io/deployer-pod-for.name': 'ratings-2'},
                   {'openshift.io/deployment-config.name': 'ratings'})
    assert mesh.pod_owner(deployer) is None
    assert mesh.pod_owner(pod('ReplicationController', 'plain')) == ('ReplicationController', 'plain')
    ro_pod = pod('ReplicaSet', 'reviews-6d9d4bb755', {'rollouts-pod-template-hash': '6d9d4bb755'})
    assert mesh.pod_owner(ro_pod) == ('Rollout', 'reviews')
    assert PodInfo.from_pod(ro_pod).restarted_at == '2026-01-01T00:00:06Z'
    assert mesh.pod_owner(pod('ReplicaSet', 'web-abc', {'pod-template-hash': 'abc'})) == ('Deployment', 'web')


class Served:
    def __init__(self, kinds):
        self.kinds = kinds

    def resource(self, kind):
        if kind not in self.kinds:
            raise NotFound('the API server serves no %s' % kind, status=404)
        return kind


def test_platform_kinds_only_where_served():
    assert mesh.served_workload_kinds(Served(set(mesh.ALL_WORKLOAD_KINDS))) == list(mesh.ALL_WORKLOAD_KINDS)
    assert mesh.served_workload_kinds(Served({'Rollout'})) == ['Deployment', 'StatefulSet', 'DaemonSet', 'Rollout']
    assert mesh.served_workload_kinds(object()) == list(mesh.WORKLOAD_KINDS)


def test_the_model_reads_platform_workloads():
    workloads = [dict(dc(), kind='DeploymentConfig'), dict(rollout(), kind='Rollout')]
    workloads[0]['spec']['template'] = {'metadata': {'labels': {'app': 'ratings'}}}
    workloads[1]['spec']['template'] = {'metadata': {'labels': {'app': 'reviews'}}}
    workloads[1]['metadata']['namespace'] = 'bar'
    pods = [pod('ReplicationController', 'ratings-2', annotations={
        'openshift.io/deployment-config.name': 'ratings', 'sidecar.istio.io/status': '{"revision": "r1"}'}),
        pod('ReplicaSet', 'reviews-h1', {'rollouts-pod-template-hash': 'h1'}, {'sidecar.istio.io/status': '{"revision": "r1"}'})]
    state = mesh.MeshState.from_objects(namespaces=[{'metadata': {'name': 'bar', 'labels': {'istio.io/rev': 'r2'}}}],
                                        workloads=workloads, pods=pods,
                                        mutating_webhooks=[{'metadata': {'name': 'istio-sidecar-injector-r2', 'labels': {
                                            'istio.io/rev': 'r2', 'app': 'sidecar-injector'}}}])
    found = dict((w.kind, w) for w in state.workloads)
    assert found['DeploymentConfig'].revisions == ['r1'] and found['DeploymentConfig'].needs_restart
    assert found['Rollout'].revisions == ['r1'] and found['Rollout'].expected_revision == 'r2'
