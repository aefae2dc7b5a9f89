"""Workload controllers of the simulated cluster, driven with the real kubectl and the Python client."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def live_pods(sim, ns, selector=None):
    args = ["get", "pods", "-n", ns] + (["-l", selector] if selector else [])
    return [p for p in kjson(sim, *args)["items"] if not p["metadata"].get("deletionTimestamp")]


def apply(sim, obj):
    sim.kubectl("apply", "-f", "-", input=json.dumps(obj), check=True)


def deployment(ns, name, replicas=2, image="docker.io/library/nginx:1.23", **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}, **spec}}


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


# ------------------------------------------------------------------------------------------ Deployment

def test_rolling_update_honours_max_surge_and_max_unavailable(shared_sim, ns):
    sim = shared_sim
    apply(sim, deployment(ns, "web", replicas=4,
                          strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=30s", check=True)
    from kubernetes import client
    apps = client.AppsV1Api(sim.client())
    core = client.CoreV1Api(sim.client())
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            ps = [p for p in core.list_namespaced_pod(ns, label_selector="app=web").items
                  if not p.metadata.deletion_timestamp]
            ready = sum(1 for p in ps if any(c.type == "Ready" and c.status == "True"
                                             for c in (p.status.conditions or [])))
            samples.append((len(ps), ready))
            time.sleep(0.02)
    t = threading.Thread(target=sample)
    t.start()
    try:
        sim.kubectl("set", "image", "deployment/web", "-n", ns, "app=docker.io/library/nginx:1.25", check=True)
        sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", check=True)
    finally:
        stop.set()
        t.join()
    assert max(n for n, _ in samples) <= 5           # replicas + maxSurge
    assert min(r for _, r in samples) >= 4           # maxUnavailable 0: never below 4 ready
    d = apps.read_namespaced_deployment("web", ns)
    assert d.status.updated_replicas == 4 and d.status.available_replicas == 4 and d.status.replicas == 4
    assert d.status.observed_generation == d.metadata.generation
    raw = kjson(sim, "get", "deployment", "web", "-n", ns)
    assert cond(raw, "Progressing")["reason"] == "NewReplicaSetAvailable"
    assert cond(raw, "Available")["status"] == "True"
    rss = kjson(sim, "get", "rs", "-n", ns, "-l", "app=web")["items"]
    assert sorted((r["metadata"]["annotations"]["deployment.kubernetes.io/revision"], r["spec"]["replicas"])
                  for r in rss) == [("1", 0), ("2", 4)]
    new = next(r for r in rss if r["spec"]["replicas"] == 4)
    h = new["metadata"]["labels"]["pod-template-hash"]
    assert new["metadata"]["name"] == f"web-{h}"
    assert all(p["metadata"]["labels"]["pod-template-hash"] == h for p in live_pods(sim, ns, "app=web"))
    # kubectl rollout undo goes back to the first template (revision 3, same hash as revision 1)
    sim.kubectl("rollout", "undo", "deployment/web", "-n", ns, check=True)
    sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", check=True)
    images = {c["image"] for p in live_pods(sim, ns, "app=web") for c in p["spec"]["containers"]}
    assert images == {"docker.io/library/nginx:1.23"}
    rss = kjson(sim, "get", "rs", "-n", ns, "-l", "app=web")["items"]
    assert sorted(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for r in rss) == ["2", "3"]


def test_paused_deployment_does_not_roll_until_resumed(shared_sim, ns):
    sim = shared_sim
    apply(sim, deployment(ns, "p", replicas=2))
    sim.kubectl("rollout", "status", "deployment/p", "-n", ns, "--timeout=30s", check=True)
    before = {p["metadata"]["name"] for p in live_pods(sim, ns, "app=p")}
    sim.kubectl("rollout", "pause", "deployment/p", "-n", ns, check=True)
    # kubectl refuses `rollout restart` on a paused deployment; a client patching the template directly
    # (as the collection's rollout_restart does) is accepted but nothing rolls
    assert sim.kubectl("rollout", "restart", "deployment/p", "-n", ns).returncode != 0
    sim.kubectl("patch", "deployment/p", "-n", ns, "-p", json.dumps({"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-22T00:00:00Z"}}}}}), check=True)
    d = sim.wait_for(lambda: (lambda d: d if cond(d, "Progressing")["reason"] == "DeploymentPaused" else None)(
        kjson(sim, "get", "deployment", "p", "-n", ns)), message="DeploymentPaused")
    assert cond(d, "Progressing")["status"] == "Unknown"
    time.sleep(0.6)
    assert {p["metadata"]["name"] for p in live_pods(sim, ns, "app=p")} == before
    assert len(kjson(sim, "get", "rs", "-n", ns, "-l", "app=p")["items"]) == 1
    # scaling still works while paused
    sim.kubectl("scale", "deployment/p", "-n", ns, "--replicas=3", check=True)
    sim.wait_for(lambda: len(live_pods(sim, ns, "app=p")) == 3, message="scaled while paused")
    sim.kubectl("rollout", "resume", "deployment/p", "-n", ns, check=True)
    sim.kubectl("rollout", "status", "deployment/p", "-n", ns, "--timeout=60s", check=True)
    after = live_pods(sim, ns, "app=p")
    assert len(after) == 3 and not ({p["metadata"]["name"] for p in after} & before)


def test_recreate_strategy_and_scale_down_and_cascading_delete(shared_sim, ns):
    sim = shared_sim
    apply(sim, deployment(ns, "r", replicas=3, strategy={"type": "Recreate"}))
    sim.kubectl("rollout", "status", "deployment/r", "-n", ns, "--timeout=30s", check=True)
    old = {p["metadata"]["name"] for p in live_pods(sim, ns, "app=r")}
    sim.kubectl("set", "image", "deployment/r", "-n", ns, "app=docker.io/library/nginx:1.25", check=True)
    sim.kubectl("rollout", "status", "deployment/r", "-n", ns, "--timeout=60s", check=True)
    new = live_pods(sim, ns, "app=r")
    assert len(new) == 3 and not ({p["metadata"]["name"] for p in new} & old)
    sim.kubectl("scale", "deployment/r", "-n", ns, "--replicas=1", check=True)
    sim.wait_for(lambda: len(live_pods(sim, ns, "app=r")) == 1, message="scaled down")
    d = sim.wait_for(lambda: (lambda d: d if d["status"].get("replicas") == 1 else None)(
        kjson(sim, "get", "deployment", "r", "-n", ns)), message="status replicas 1")
    assert d["status"]["availableReplicas"] == 1
    sim.kubectl("delete", "deployment", "r", "-n", ns, check=True)
    sim.wait_for(lambda: not live_pods(sim, ns, "app=r") and not kjson(sim, "get", "rs", "-n", ns)["items"],
                 message="ReplicaSets and pods garbage-collected")


def test_endpoints_follow_pod_readiness(shared_sim, ns):
    sim = shared_sim
    apply(sim, deployment(ns, "svc", replicas=2))
    apply(sim, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": ns},
                "spec": {"selector": {"app": "svc"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
    sim.kubectl("rollout", "status", "deployment/svc", "-n", ns, "--timeout=30s", check=True)

    def ready_ips():
        ep = json.loads(sim.kubectl("get", "endpoints", "svc", "-n", ns, "-o", "json").stdout or "{}")
        return sorted(a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or [])
    ips = sim.wait_for(lambda: ready_ips() if len(ready_ips()) == 2 else None, message="2 endpoints")
    assert ips == sorted(p["status"]["podIP"] for p in live_pods(sim, ns, "app=svc"))
    ep = kjson(sim, "get", "endpoints", "svc", "-n", ns)
    assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    sim.kubectl("scale", "deployment/svc", "-n", ns, "--replicas=0", check=True)
    sim.wait_for(lambda: ready_ips() == [], message="no endpoints")


# ------------------------------------------------------------------------------------------ crash loops

@pytest.fixture
def crashing_blog(kubesim_factory):
    return kubesim_factory("blog", pod_ready_seconds=0.2, crash_proxy_version=["1.15.4"])


def run(sim, *args, check=True):
    cp = subprocess.run(list(args), env=sim.kubectl_env(), capture_output=True, text=True, timeout=120)
    if check and cp.returncode != 0:
        raise AssertionError(f"{args} -> {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


def test_crash_proxy_version_never_ready_and_deadline_exceeded(crashing_blog):
    sim = crashing_blog
    run(sim, "istioctl", "install", "--set", "revision=1-15-4", "-y")
    run(sim, "istioctl", "tag", "set", "default", "--revision", "1-15-4", "--overwrite")
    sim.kubectl("patch", "deployment", "bar", "-n", "bar", "-p", '{"spec":{"progressDeadlineSeconds":3}}',
                check=True)
    sim.kubectl("rollout", "restart", "deployment", "bar", "-n", "bar", check=True)
    cp = sim.kubectl("rollout", "status", "deployment", "bar", "-n", "bar", "--timeout=30s")
    assert cp.returncode != 0
    assert 'deployment "bar" exceeded its progress deadline' in cp.stderr
    d = kjson(sim, "get", "deployment", "bar", "-n", "bar")
    prog = cond(d, "Progressing")
    assert prog["status"] == "False" and prog["reason"] == "ProgressDeadlineExceeded"
    assert d["status"]["availableReplicas"] == 2       # the old pods keep serving (maxUnavailable 25% of 2 = 0)
    assert d["status"]["updatedReplicas"] == 1
    new = [p for p in live_pods(sim, "bar") if any(c["image"].endswith(":1.15.4") for c in p["spec"]["containers"])]
    assert len(new) == 1
    st = {c["name"]: c for c in new[0]["status"]["containerStatuses"]}
    assert st["istio-proxy"]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert st["istio-proxy"]["ready"] is False
    first = st["istio-proxy"]["restartCount"]
    assert first >= 1
    assert cond(new[0], "Ready")["status"] == "False"
    later = sim.wait_for(lambda: (lambda n: n if n > first else None)(
        {c["name"]: c for c in kjson(sim, "get", "pod", new[0]["metadata"]["name"], "-n", "bar")
         ["status"]["containerStatuses"]}["istio-proxy"]["restartCount"]), timeout=15, message="restartCount grows")
    assert later > first
    out = sim.kubectl("get", "pods", "-n", "bar", check=True).stdout
    assert "CrashLoopBackOff" in out and "1/2" in out


# ------------------------------------------------------------------------------------------ StatefulSet

def statefulset(ns, name, replicas=3, image="docker.io/library/redis:6", strategy=None):
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": {"app": name}},
                     "updateStrategy": strategy or {"type": "RollingUpdate"},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "db", "image": image}]}}}}


def test_statefulset_rolling_update_in_reverse_ordinal_order(shared_sim, ns):
    sim = shared_sim
    apply(sim, statefulset(ns, "db"))
    sim.kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=30s", check=True)
    assert sorted(p["metadata"]["name"] for p in live_pods(sim, ns, "app=db")) == ["db-0", "db-1", "db-2"]
    sts = kjson(sim, "get", "statefulset", "db", "-n", ns)
    old_rev = sts["status"]["currentRevision"]
    assert sts["status"]["updateRevision"] == old_rev and sts["status"]["readyReplicas"] == 3
    from kubernetes import client
    core = client.CoreV1Api(sim.client())
    order, stop = [], threading.Event()

    def watch():
        seen = set()
        while not stop.is_set():
            for p in core.list_namespaced_pod(ns, label_selector="app=db").items:
                if p.metadata.labels.get("controller-revision-hash") != old_rev and p.metadata.name not in seen:
                    seen.add(p.metadata.name)
                    order.append(p.metadata.name)
            time.sleep(0.02)
    t = threading.Thread(target=watch)
    t.start()
    try:
        sim.kubectl("set", "image", "statefulset/db", "-n", ns, "db=docker.io/library/redis:7", check=True)
        cp = sim.kubectl("rollout", "status", "statefulset/db", "-n", ns, "--timeout=60s", check=True)
    finally:
        stop.set()
        t.join()
    assert "partitioned roll out complete" in cp.stdout or "rolling update complete" in cp.stdout
    assert order == ["db-2", "db-1", "db-0"]
    sts = kjson(sim, "get", "statefulset", "db", "-n", ns)
    assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"] != old_rev
    assert sts["status"]["updatedReplicas"] == 3 and sts["status"]["currentReplicas"] == 3
    crs = kjson(sim, "get", "controllerrevisions", "-n", ns)["items"]
    assert {c["metadata"]["name"] for c in crs} >= {old_rev, sts["status"]["updateRevision"]}
    assert max(c["revision"] for c in crs) == 2


def test_statefulset_on_delete_only_replaces_deleted_pods(shared_sim, ns):
    sim = shared_sim
    apply(sim, statefulset(ns, "od", strategy={"type": "OnDelete"}))
    sim.wait_for(lambda: kjson(sim, "get", "statefulset", "od", "-n", ns)["status"].get("readyReplicas") == 3,
                 message="3 ready")
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_pods(sim, ns, "app=od")}
    sim.kubectl("set", "image", "statefulset/od", "-n", ns, "db=docker.io/library/redis:7", check=True)
    sts = sim.wait_for(lambda: (lambda s: s if s["status"].get("observedGeneration") == 2 else None)(
        kjson(sim, "get", "statefulset", "od", "-n", ns)), message="observed generation 2")
    assert sts["status"]["updateRevision"] != sts["status"]["currentRevision"]
    assert sts["status"].get("updatedReplicas", 0) == 0
    time.sleep(0.5)
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in live_pods(sim, ns, "app=od")} == before
    sim.kubectl("delete", "pod", "od-1", "-n", ns, check=True)
    p1 = sim.wait_for(lambda: next((p for p in live_pods(sim, ns, "app=od") if p["metadata"]["name"] == "od-1"
                                    and p["metadata"]["uid"] != before["od-1"]), None), message="od-1 recreated")
    assert p1["spec"]["containers"][0]["image"] == "docker.io/library/redis:7"
    assert p1["metadata"]["labels"]["controller-revision-hash"] == sts["status"]["updateRevision"]
    others = {p["metadata"]["name"]: p for p in live_pods(sim, ns, "app=od")}
    for n in ("od-0", "od-2"):
        assert others[n]["metadata"]["uid"] == before[n]
        assert others[n]["spec"]["containers"][0]["image"] == "docker.io/library/redis:6"
    sts = sim.wait_for(lambda: (lambda s: s if s["status"].get("updatedReplicas") == 1 else None)(
        kjson(sim, "get", "statefulset", "od", "-n", ns)), message="updatedReplicas 1")
    cp = sim.kubectl("rollout", "status", "statefulset/od", "-n", ns, "--timeout=5s")
    assert cp.returncode != 0
    assert "only available for RollingUpdate strategy type" in cp.stderr


# ------------------------------------------------------------------------------------------ DaemonSet

def test_daemonset_runs_one_pod_per_node_and_rolls(shared_sim, ns):
    sim = shared_sim
    nodes = sorted(n["metadata"]["name"] for n in kjson(sim, "get", "nodes")["items"])
    assert len(nodes) >= 2
    apply(sim, {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": ns},
                "spec": {"selector": {"matchLabels": {"app": "agent"}},
                         "template": {"metadata": {"labels": {"app": "agent"}},
                                      "spec": {"containers": [{"name": "a", "image": "docker.io/library/busybox:1.35"}]}}}})
    sim.kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=30s", check=True)
    ds = kjson(sim, "get", "daemonset", "agent", "-n", ns)
    st = ds["status"]
    assert st["desiredNumberScheduled"] == len(nodes) == st["numberReady"] == st["numberAvailable"]
    assert st["updatedNumberScheduled"] == len(nodes) and st["observedGeneration"] == 1
    ps = live_pods(sim, ns, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in ps) == nodes
    old_hash = ps[0]["metadata"]["labels"]["controller-revision-hash"]
    sim.kubectl("set", "image", "daemonset/agent", "-n", ns, "a=docker.io/library/busybox:1.36", check=True)
    cp = sim.kubectl("rollout", "status", "daemonset/agent", "-n", ns, "--timeout=60s", check=True)
    assert 'daemon set "agent" successfully rolled out' in cp.stdout
    ps = live_pods(sim, ns, "app=agent")
    assert sorted(p["spec"]["nodeName"] for p in ps) == nodes
    assert {p["metadata"]["labels"]["controller-revision-hash"] for p in ps} != {old_hash}
    assert all(p["spec"]["containers"][0]["image"].endswith(":1.36") for p in ps)
    st = kjson(sim, "get", "daemonset", "agent", "-n", ns)["status"]
    assert st["updatedNumberScheduled"] == len(nodes) and st["observedGeneration"] == 2
