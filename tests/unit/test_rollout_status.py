"""Rollout status per kind as `kubectl rollout status` judges it, restart blockers, pod records."""
import json

import pytest

from ansible_collections.meshops.istio.plugins.module_utils.rollout import (
    PodInfo,
    daemonset_progress,
    deployment_progress,
    desired_pods,
    label_selector_string,
    pod_owner,
    prune_workload,
    replica_failure,
    restart_blocker,
    rollout_progress,
    statefulset_progress,
    template_restarted_at,
)


def deploy(generation=2, observed=2, replicas=2, status=None, **spec):
    st = {'observedGeneration': observed}
    st.update(status or {})
    sp = {'replicas': replicas}
    sp.update(spec)
    return {'metadata': {'name': 'bar', 'namespace': 'bar', 'generation': generation}, 'spec': sp,
            'status': st}


@pytest.mark.parametrize('obj,state,text', [
    (deploy(generation=3, observed=2), 'waiting', 'spec update to be observed'),
    (deploy(status={'updatedReplicas': 1, 'replicas': 3, 'availableReplicas': 2}), 'waiting',
     '1 out of 2 new replicas have been updated'),
    (deploy(status={'updatedReplicas': 2, 'replicas': 3, 'availableReplicas': 2}), 'waiting',
     '1 old replicas are pending termination'),
    (deploy(status={'updatedReplicas': 2, 'replicas': 2, 'availableReplicas': 1}), 'waiting',
     '1 of 2 updated replicas are available'),
    (deploy(status={'updatedReplicas': 2, 'replicas': 2, 'availableReplicas': 2}), 'done',
     'successfully rolled out'),
    (deploy(replicas=0, status={}), 'done', 'successfully rolled out'),
    (deploy(status={'updatedReplicas': 1, 'replicas': 3, 'conditions': [
        {'type': 'Progressing', 'status': 'False', 'reason': 'ProgressDeadlineExceeded',
         'message': 'ReplicaSet "bar-1" has timed out progressing.'}]}), 'failed',
     'ProgressDeadlineExceeded'),
])
def test_deployment_progress_like_kubectl(obj, state, text):
    progress = deployment_progress(obj)
    assert progress.state == state
    assert text in progress.message


def test_deployment_deadline_not_judged_before_the_new_generation_is_observed():
    obj = deploy(generation=3, observed=2, status={'conditions': [
        {'type': 'Progressing', 'reason': 'ProgressDeadlineExceeded'}]})
    assert deployment_progress(obj).state == 'waiting'


def sts(status, partition=None, strategy='RollingUpdate', generation=2, replicas=3):
    upd = {'type': strategy}
    if partition is not None:
        upd['rollingUpdate'] = {'partition': partition}
    return {'metadata': {'name': 'db', 'generation': generation},
            'spec': {'replicas': replicas, 'updateStrategy': upd}, 'status': status}


@pytest.mark.parametrize('obj,state,text', [
    (sts({}), 'waiting', 'spec update to be observed'),
    (sts({'observedGeneration': 1}), 'waiting', 'spec update to be observed'),
    (sts({'observedGeneration': 2, 'readyReplicas': 2}), 'waiting', 'waiting for 1 pods to be ready'),
    (sts({'observedGeneration': 2, 'readyReplicas': 3, 'updatedReplicas': 2,
          'currentRevision': 'db-a', 'updateRevision': 'db-b'}), 'waiting',
     'rolling update to complete 2 pods at revision db-b'),
    (sts({'observedGeneration': 2, 'readyReplicas': 3, 'currentReplicas': 3,
          'currentRevision': 'db-b', 'updateRevision': 'db-b'}), 'done', 'complete 3 pods'),
    (sts({'observedGeneration': 2, 'readyReplicas': 3, 'updatedReplicas': 1,
          'currentRevision': 'db-a', 'updateRevision': 'db-b'}, partition=2), 'done',
     'partitioned roll out complete'),
    (sts({'observedGeneration': 2, 'readyReplicas': 3, 'updatedReplicas': 0}, partition=2),
     'waiting', 'partitioned roll out'),
    (sts({'observedGeneration': 2}, strategy='OnDelete'), 'failed', 'only available for RollingUpdate'),
])
def test_statefulset_progress_like_kubectl(obj, state, text):
    progress = statefulset_progress(obj)
    assert progress.state == state
    assert text in progress.message


def ds(status, strategy='RollingUpdate', generation=2):
    return {'metadata': {'name': 'agent', 'generation': generation},
            'spec': {'updateStrategy': {'type': strategy}}, 'status': status}


@pytest.mark.parametrize('obj,state,text', [
    (ds({'observedGeneration': 1}), 'waiting', 'spec update to be observed'),
    (ds({'observedGeneration': 2, 'desiredNumberScheduled': 3, 'updatedNumberScheduled': 1}),
     'waiting', '1 out of 3 new pods have been updated'),
    (ds({'observedGeneration': 2, 'desiredNumberScheduled': 3, 'updatedNumberScheduled': 3,
         'numberAvailable': 2}), 'waiting', '2 of 3 updated pods are available'),
    (ds({'observedGeneration': 2, 'desiredNumberScheduled': 3, 'updatedNumberScheduled': 3,
         'numberAvailable': 3}), 'done', 'successfully rolled out'),
    (ds({'observedGeneration': 2}, strategy='OnDelete'), 'failed', 'only available for RollingUpdate'),
])
def test_daemonset_progress_like_kubectl(obj, state, text):
    progress = daemonset_progress(obj)
    assert progress.state == state
    assert text in progress.message
    assert rollout_progress('DaemonSet', obj) == progress


def test_restart_blockers():
    assert 'paused' in restart_blocker('Deployment', deploy(paused=True))
    assert restart_blocker('Deployment', deploy()) is None
    assert 'OnDelete' in restart_blocker('StatefulSet', sts({}, strategy='OnDelete'))
    assert 'OnDelete' in restart_blocker('DaemonSet', ds({}, strategy='OnDelete'))
    assert 'partition 2' in restart_blocker('StatefulSet', sts({}, partition=2))
    assert restart_blocker('StatefulSet', sts({}, partition=0)) is None
    assert restart_blocker('DaemonSet', {'spec': {}}) is None  # RollingUpdate is the default


def test_desired_pods_and_replica_failure():
    assert desired_pods('Deployment', deploy(replicas=3)) == 3
    assert desired_pods('DaemonSet', ds({'desiredNumberScheduled': 4})) == 4
    obj = deploy(status={'conditions': [{'type': 'ReplicaFailure', 'status': 'True',
                                         'message': 'failed calling webhook'}]})
    assert replica_failure(obj) == 'failed calling webhook'
    assert replica_failure(deploy()) is None


def pod(name='bar-abc-1', rev='1-14-6', version='1.14.6', owner=('ReplicaSet', 'bar-abc'),
        restarted=None, waiting=None, deleting=False, ready=True):
    meta = {'name': name, 'namespace': 'bar', 'labels': {'pod-template-hash': 'abc'},
            'annotations': {}, 'ownerReferences': [{'kind': owner[0], 'name': owner[1],
                                                   'controller': True}]}
    if rev:
        meta['annotations']['sidecar.istio.io/status'] = json.dumps({'revision': rev})
    if restarted:
        meta['annotations']['kubectl.kubernetes.io/restartedAt'] = restarted
    if deleting:
        meta['deletionTimestamp'] = '2026-01-01T00:00:00Z'
    containers = [{'name': 'app', 'image': 'app:1'}]
    if rev:
        containers.append({'name': 'istio-proxy', 'image': 'docker.io/istio/proxyv2:%s' % version})
    status = {'phase': 'Running', 'conditions': [{'type': 'Ready', 'status': str(ready)}]}
    if waiting:
        status['containerStatuses'] = [{'name': 'istio-proxy', 'restartCount': 4,
                                        'state': {'waiting': {'reason': waiting}},
                                        'lastState': {'terminated': {'exitCode': 1,
                                                                     'reason': 'Error'}}}]
    return {'metadata': meta, 'spec': {'containers': containers}, 'status': status}


def test_pod_info_keeps_what_the_engine_needs():
    info = PodInfo.from_pod(pod(restarted='2026-11-22T00:00:00Z'))
    assert (info.name, info.owner, info.revision, info.version) == \
        ('bar-abc-1', ('Deployment', 'bar'), '1-14-6', '1.14.6')
    assert info.injected and info.live and info.ready
    assert info.restarted_at == '2026-11-22T00:00:00Z'
    assert info.on_revision('1-14-6') and not info.on_revision('1-15-4')
    bare = PodInfo.from_pod(pod(rev=None))
    assert not bare.injected and bare.on_revision(None) and not bare.on_revision('1-15-4')
    assert 'no istio-proxy sidecar' in bare.describe()
    assert not PodInfo.from_pod(pod(deleting=True)).live


def test_pod_info_names_a_crash_loop():
    info = PodInfo.from_pod(pod(waiting='CrashLoopBackOff'))
    reason, text = info.problem
    assert reason == 'CrashLoopBackOff'
    assert 'container istio-proxy' in text and 'restarted 4 times' in text and 'exit code 1' in text


def test_pod_owner_per_kind():
    assert pod_owner(pod(owner=('StatefulSet', 'db'))) == ('StatefulSet', 'db')
    assert pod_owner(pod(owner=('DaemonSet', 'agent'))) == ('DaemonSet', 'agent')
    assert pod_owner(pod(owner=('Job', 'x'))) is None


def test_prune_keeps_status_and_restart_annotation():
    obj = deploy(status={'updatedReplicas': 2})
    obj['spec']['template'] = {'metadata': {'labels': {'app': 'bar'}, 'annotations': {
        'kubectl.kubernetes.io/restartedAt': 'T', 'other': 'x' * 1000}},
        'spec': {'containers': [{'name': 'big', 'env': [{'name': 'A', 'value': 'x' * 1000}]}]}}
    pruned = prune_workload('Deployment', obj)
    assert template_restarted_at(pruned) == 'T'
    assert 'other' not in pruned['spec']['template']['metadata']['annotations']
    assert 'spec' not in pruned['spec']['template']
    assert len(json.dumps(pruned)) < 600   # what the engine keeps per workload stays small
    assert deployment_progress(pruned) == deployment_progress(obj)


def test_label_selector_string():
    sel = {'matchLabels': {'b': '2', 'a': '1'},
           'matchExpressions': [{'key': 'c', 'operator': 'In', 'values': ['x', 'y']},
                                {'key': 'd', 'operator': 'Exists'},
                                {'key': 'e', 'operator': 'DoesNotExist'},
                                {'key': 'f', 'operator': 'NotIn', 'values': ['z']}]}
    assert label_selector_string(sel) == 'a=1,b=2,c in (x,y),d,!e,f notin (z)'
    assert label_selector_string({}) is None
