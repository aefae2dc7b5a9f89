"""ResourceQuota and LimitRange admission and the quota controller (kubesim.quota), seen through the real
kubectl and the kubernetes Python client."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def apply(sim, obj):
    sim.kubectl("apply", "-f", "-", input=json.dumps(obj), check=True)


def quota(ns, name, hard, **spec):
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": ns},
            "spec": {"hard": hard, **spec}}


def deployment(ns, name, replicas, containers=None, init=None):
    pod = {"containers": containers or [{"name": "app", "image": "docker.io/library/nginx:1.25"}]}
    if init:
        pod["initContainers"] = init
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def wait_quota(sim, ns, name, predicate, message):
    return sim.wait_for(lambda: predicate((kjson(sim, "get", "quota", name, "-n", ns).get("status")) or {}),
                        timeout=60, message=message)


def live_pods(sim, ns, app):
    return [p for p in kjson(sim, "get", "pods", "-n", ns, "-l", f"app={app}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def test_pod_count_quota_refuses_the_replicasets_pods_visibly(shared_sim, ns):
    sim = shared_sim
    apply(sim, quota(ns, "pods-max", {"pods": "2"}))
    wait_quota(sim, ns, "pods-max", lambda st: st.get("used") == {"pods": "0"}, "the quota controller's status")
    assert kjson(sim, "get", "quota", "pods-max", "-n", ns)["status"]["hard"] == {"pods": "2"}
    apply(sim, deployment(ns, "web", 3))
    rs = sim.wait_for(lambda: next((r for r in kjson(sim, "get", "rs", "-n", ns, "-l", "app=web")["items"]
                                    if cond(r, "ReplicaFailure")), None), timeout=60, message="ReplicaFailure")
    prefix = f'{rs["metadata"]["name"]}-'
    refusal = (f'pods "{prefix}" is forbidden: exceeded quota: pods-max, requested: pods=1, used: pods=2, '
               f'limited: pods=2')
    failure = cond(rs, "ReplicaFailure")
    assert (failure["status"], failure["reason"], failure["message"]) == ("True", "FailedCreate", refusal)
    assert len(live_pods(sim, ns, "web")) == 2 and rs["status"]["replicas"] == 2
    events = [e for e in kjson(sim, "get", "events", "-n", ns)["items"] if e["reason"] == "FailedCreate"]
    assert events and all(e["message"] == f"Error creating: {refusal}" and e["type"] == "Warning"
                          and e["involvedObject"]["kind"] == "ReplicaSet" for e in events)
    dep = sim.wait_for(lambda: (lambda d: d if cond(d, "ReplicaFailure") else None)(
        kjson(sim, "get", "deployment", "web", "-n", ns)), timeout=60, message="the Deployment's ReplicaFailure")
    assert cond(dep, "ReplicaFailure")["message"] == refusal
    assert kjson(sim, "get", "quota", "pods-max", "-n", ns)["status"]["used"] == {"pods": "2"}
    out = sim.kubectl("get", "quota", "pods-max", "-n", ns, check=True).stdout.split("\n")
    assert out[0].split() == ["NAME", "AGE", "REQUEST", "LIMIT"] and "pods: 2/2" in out[1]
    # more room: the controller's retry creates the third pod and the condition goes away
    sim.kubectl("patch", "quota", "pods-max", "-n", ns, "--type=merge", "-p", '{"spec":{"hard":{"pods":"3"}}}',
                check=True)
    sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", check=True)
    sim.wait_for(lambda: not cond(kjson(sim, "get", "rs", rs["metadata"]["name"], "-n", ns), "ReplicaFailure"),
                 timeout=60, message="the ReplicaFailure condition to clear")
    wait_quota(sim, ns, "pods-max", lambda st: st.get("used") == {"pods": "3"}, "3 pods used")
    # scale down: the controller gives the quota back once the pods are gone (replenishment)
    sim.kubectl("scale", "deployment/web", "-n", ns, "--replicas=1", check=True)
    wait_quota(sim, ns, "pods-max", lambda st: st.get("used") == {"pods": "1"}, "1 pod used")


def test_compute_quota_wants_requests_and_counts_native_sidecars(shared_sim, ns):
    sim = shared_sim
    core = client.CoreV1Api(sim.client())
    apply(sim, quota(ns, "compute", {"requests.cpu": "1", "limits.memory": "1Gi", "count/configmaps": "1"}))
    wait_quota(sim, ns, "compute", lambda st: "used" in st, "the quota controller's status")
    bare = {"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod(ns, bare)
    body = json.loads(ei.value.body)
    assert ei.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == ('pods "bare" is forbidden: failed quota: compute: must specify limits.memory for: app; '
                               'requests.cpu for: app')
    sized = {"metadata": {"name": "sized"}, "spec": {
        "initContainers": [{"name": "istio-proxy", "image": "proxyv2:1.29.6", "restartPolicy": "Always",
                            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "128Mi"}}},
                           {"name": "setup", "image": "busybox:1", "resources": {"requests": {"cpu": "600m"},
                                                                                  "limits": {"memory": "64Mi"}}}],
        "containers": [{"name": "app", "image": "nginx:1.25",
                        "resources": {"requests": {"cpu": "300m"}, "limits": {"memory": "256Mi"}}}]}}
    core.create_namespaced_pod(ns, sized)
    # PodRequests: max(app 300m + sidecar 100m, setup 600m + sidecar started before it 100m) = 700m
    st = kjson(sim, "get", "quota", "compute", "-n", ns)["status"]
    assert st["used"] == {"count/configmaps": "0", "limits.memory": "384Mi", "requests.cpu": "700m"}
    second = json.loads(json.dumps(sized).replace('"sized"', '"second"'))
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod(ns, second)
    assert json.loads(ei.value.body)["message"] == (
        'pods "second" is forbidden: exceeded quota: compute, requested: requests.cpu=700m, used: '
        'requests.cpu=700m, limited: requests.cpu=1')
    # a dry run is checked but not charged; object counts are quota'd too
    core.create_namespaced_config_map(ns, {"metadata": {"name": "c1"}}, dry_run="All")
    core.create_namespaced_config_map(ns, {"metadata": {"name": "c1"}})
    cp = sim.kubectl("create", "configmap", "c2", "-n", ns)
    assert cp.returncode == 1 and cp.stderr.strip() == (
        'error: failed to create configmap: configmaps "c2" is forbidden: exceeded quota: compute, requested: '
        'count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1')
    # deleting gives it back
    core.delete_namespaced_config_map("c1", ns)
    wait_quota(sim, ns, "compute", lambda st: st["used"]["count/configmaps"] == "0", "the configmap given back")


def test_quota_scopes_choose_the_pods_they_count(shared_sim, ns):
    sim = shared_sim
    core = client.CoreV1Api(sim.client())
    apply(sim, quota(ns, "besteffort", {"pods": "1"}, scopes=["BestEffort"]))
    wait_quota(sim, ns, "besteffort", lambda st: "used" in st, "status")
    core.create_namespaced_pod(ns, {"metadata": {"name": "be1"},
                                    "spec": {"containers": [{"name": "a", "image": "nginx:1.25"}]}})
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod(ns, {"metadata": {"name": "be2"},
                                        "spec": {"containers": [{"name": "a", "image": "nginx:1.25"}]}})
    assert "exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1" in \
        json.loads(ei.value.body)["message"]
    # a Burstable pod is outside the BestEffort scope
    core.create_namespaced_pod(ns, {"metadata": {"name": "burst"}, "spec": {"containers": [
        {"name": "a", "image": "nginx:1.25", "resources": {"requests": {"cpu": "10m"}}}]}})


def test_limitrange_defaults_and_maximum(shared_sim, ns):
    sim = shared_sim
    core = client.CoreV1Api(sim.client())
    apply(sim, {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "box", "namespace": ns},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": "500m", "memory": "1Gi"},
                                     "default": {"memory": "256Mi"}}]}})
    lr = kjson(sim, "get", "limitrange", "box", "-n", ns)
    # the API server's defaulting: default <- max, defaultRequest <- default
    assert lr["spec"]["limits"][0]["default"] == {"cpu": "500m", "memory": "256Mi"}
    assert lr["spec"]["limits"][0]["defaultRequest"] == {"cpu": "500m", "memory": "256Mi"}
    core.create_namespaced_pod(ns, {"metadata": {"name": "plain"},
                                    "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}})
    pod = kjson(sim, "get", "pod", "plain", "-n", ns)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "500m", "memory": "256Mi"},
                                                         "requests": {"cpu": "500m", "memory": "256Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app")
    big = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big", "namespace": ns}, "spec": {"containers": [
        {"name": "app", "image": "nginx:1.25", "resources": {"limits": {"cpu": "2", "memory": "2Gi"}}}]}}
    cp = sim.kubectl("apply", "-f", "-", input=json.dumps(big))
    assert cp.returncode == 1
    assert cp.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": pods "big" is forbidden: '
        '[maximum cpu usage per Container is 500m, but limit is 2, maximum memory usage per Container is 1Gi, '
        'but limit is 2Gi]')
    big["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "2"}}
    with pytest.raises(ApiException) as ei:
        core.create_namespaced_pod(ns, big)
    assert json.loads(ei.value.body)["message"] == \
        'pods "big" is forbidden: maximum cpu usage per Container is 500m, but limit is 2'


def test_limitrange_refuses_the_injected_sidecar_and_the_rollout_shows_it(kubesim_factory):
    sim = kubesim_factory("blog", pod_ready_seconds=0.2)
    apply(sim, {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "cap", "namespace": "foo"},
                "spec": {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}})
    sim.kubectl("rollout", "restart", "deployment/foo", "-n", "foo", check=True)
    rs = sim.wait_for(lambda: next((r for r in kjson(sim, "get", "rs", "-n", "foo")["items"]
                                    if cond(r, "ReplicaFailure")), None), timeout=60, message="ReplicaFailure")
    # LimitRanger's defaults came before the webhook (the app container got cpu 1), its check after it:
    # the injected istio-proxy's own limit (2) is over the maximum
    assert cond(rs, "ReplicaFailure")["message"] == (
        f'pods "{rs["metadata"]["name"]}-" is forbidden: maximum cpu usage per Container is 1, but limit is 2')
    old = [p for p in kjson(sim, "get", "pods", "-n", "foo")["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(old) == 2 and all(not p["metadata"]["name"].startswith(rs["metadata"]["name"]) for p in old)
