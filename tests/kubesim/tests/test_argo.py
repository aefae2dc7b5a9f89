"""Argo Rollouts (feature ``argo-rollouts``), driven with the real kubectl and the kubernetes Python client;
every assertion reads what the simulated cluster holds afterwards."""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from itertools import count

import pytest

_n = count(1)


@pytest.fixture(scope="module")
def asim():
    from kubesim.testing import KubeSim

    # evicted pods terminate before their replacements are ready: else the controller sees them still
    # Terminating and rechecks only after its 30 s restartPodCheckTime, as the real one does
    sim = KubeSim("empty", pod_ready_seconds=0.3, pod_terminate_seconds=0.05, feature="argo-rollouts")
    sim.start()
    yield sim
    sim.cleanup()


@pytest.fixture
def ns(asim):
    from kubernetes import client

    name = f"ar{os.getpid() % 10000}-{next(_n)}"
    client.CoreV1Api(asim.client()).create_namespace({"metadata": {"name": name}})
    return name


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def live_pods(sim, ns, selector):
    return [p for p in kjson(sim, "get", "pods", "-n", ns, "-l", selector)["items"]
            if not p["metadata"].get("deletionTimestamp")]


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def rollout(ns, name, replicas=3, image="docker.io/library/nginx:1.25", strategy=None):
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": strategy if strategy is not None else {"canary": {}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def healthy(sim, ns, name):
    ro = kjson(sim, "get", "rollout", name, "-n", ns)
    st = ro.get("status") or {}
    return (st.get("phase") == "Healthy" and st.get("observedGeneration") == str(ro["metadata"]["generation"])
            and st.get("stableRS") == st.get("currentPodHash") and st.get("availableReplicas") ==
            ro["spec"]["replicas"]) and ro


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_crds_columns_and_a_healthy_canary_rollout(asim, ns):
    crds = {c["metadata"]["name"] for c in kjson(asim, "get", "crd")["items"]}
    assert {"rollouts.argoproj.io", "analysisruns.argoproj.io", "analysistemplates.argoproj.io",
            "clusteranalysistemplates.argoproj.io", "experiments.argoproj.io"} <= crds
    ctl = kjson(asim, "get", "deployment", "argo-rollouts", "-n", "argo-rollouts")
    assert ctl["spec"]["template"]["spec"]["containers"][0]["image"].startswith("quay.io/argoproj/argo-rollouts:")
    asim.kubectl("apply", "-f", "-", input=json.dumps(rollout(ns, "web")), check=True)
    ro = asim.wait_for(lambda: healthy(asim, ns, "web"), timeout=60, message="healthy rollout")
    header = asim.kubectl("get", "ro", "-n", ns, check=True).stdout.split("\n")[0].split()
    assert header == ["NAME", "DESIRED", "CURRENT", "UP-TO-DATE", "AVAILABLE", "AGE"]
    st = ro["status"]
    h = st["currentPodHash"]
    assert st["observedGeneration"] == "1" and st["selector"] == "app=web"
    assert st["replicas"] == st["updatedReplicas"] == st["readyReplicas"] == st["HPAReplicas"] == 3
    assert st["canary"] == {} and st["blueGreen"] == {}
    assert {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]} == {
        "Progressing": ("True", "NewReplicaSetAvailable"), "Available": ("True", "AvailableReason"),
        "Completed": ("True", "RolloutCompleted"), "Healthy": ("True", "RolloutHealthy")}
    assert ro["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "1"
    rs = kjson(asim, "get", "rs", f"web-{h}", "-n", ns)
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "rollouts-pod-template-hash": h}
    assert rs["metadata"]["annotations"]["rollout.argoproj.io/revision"] == "1"
    assert all(p["metadata"]["labels"]["rollouts-pod-template-hash"] == h for p in live_pods(asim, ns, "app=web"))
    # scale subresource: kubectl scale (the CRD's specReplicasPath/statusReplicasPath)
    asim.kubectl("scale", "rollout/web", "-n", ns, "--replicas=4", check=True)
    asim.wait_for(lambda: (lambda r: r and r["spec"]["replicas"] == 4 and r)(healthy(asim, ns, "web")), timeout=60,
                  message="scaled rollout")


def test_restart_at_evicts_pods_one_at_a_time_and_records_restarted_at(asim, ns):
    dyn = asim.dynamic()
    api = dyn.resources.get(api_version="argoproj.io/v1alpha1", kind="Rollout")
    api.create(body=rollout(ns, "app", replicas=3), namespace=ns)
    ro = asim.wait_for(lambda: healthy(asim, ns, "app"), timeout=60, message="healthy rollout")
    h = ro["status"]["currentPodHash"]
    before = {p["metadata"]["name"] for p in live_pods(asim, ns, "app=app")}
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            ps = live_pods(asim, ns, "app=app")
            samples.append(sum(1 for p in ps if ready(p)))
            time.sleep(0.05)
    t = threading.Thread(target=sample)
    t.start()
    try:
        # restartAt has second precision and pods created in its second count as restarted (restart.go)
        time.sleep(1.1)
        restart_at = now_rfc3339()
        # kubectl argo rollouts restart: a merge patch of spec.restartAt
        api.patch(body={"spec": {"restartAt": restart_at}}, name="app", namespace=ns,
                  content_type="application/merge-patch+json")
        ro = asim.wait_for(lambda: (lambda r: r and r["status"].get("restartedAt") == restart_at and r)(
            healthy(asim, ns, "app")), timeout=90, message="restarted")
    finally:
        stop.set()
        t.join()
    after = live_pods(asim, ns, "app=app")
    assert len(after) == 3 and not before & {p["metadata"]["name"] for p in after}
    assert ro["status"]["currentPodHash"] == h and ro["metadata"]["generation"] == 2
    assert [r["metadata"]["name"] for r in kjson(asim, "get", "rs", "-n", ns, "-l", "app=app")["items"]] == [
        f"app-{h}"]                               # no new ReplicaSet: the same template, pods evicted
    assert min(samples) >= 2                      # maxUnavailable 25% of 3 -> one pod at a time
    created = [datetime.datetime.strptime(p["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ") for p in after]
    assert min(created) >= datetime.datetime.strptime(restart_at, "%Y-%m-%dT%H:%M:%SZ")


def test_restart_at_in_the_future_waits_and_progressing_phase(asim, ns):
    asim.kubectl("apply", "-f", "-", input=json.dumps(rollout(ns, "later", replicas=2)), check=True)
    asim.wait_for(lambda: healthy(asim, ns, "later"), timeout=60, message="healthy rollout")
    before = {p["metadata"]["name"] for p in live_pods(asim, ns, "app=later")}
    when = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=4)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    asim.kubectl("patch", "rollout", "later", "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"restartAt": when}}), check=True)
    ro = asim.wait_for(lambda: (lambda r: r["status"].get("observedGeneration") == "2" and r)(
        kjson(asim, "get", "rollout", "later", "-n", ns)), timeout=30, message="observed")
    assert (ro["status"]["phase"], ro["status"]["message"]) == ("Progressing", "rollout is restarting")
    assert {p["metadata"]["name"] for p in live_pods(asim, ns, "app=later")} == before
    asim.wait_for(lambda: (lambda r: r and r["status"].get("restartedAt") == when and r)(
        healthy(asim, ns, "later")), timeout=90, message="restarted later")
    assert not before & {p["metadata"]["name"] for p in live_pods(asim, ns, "app=later")}


def test_canary_steps_pause_until_promoted(asim, ns):
    strategy = {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}}
    asim.kubectl("apply", "-f", "-", input=json.dumps(rollout(ns, "cn", replicas=2, strategy=strategy)),
                 check=True)
    ro = asim.wait_for(lambda: healthy(asim, ns, "cn"), timeout=60, message="initial deploy skips the steps")
    stable = ro["status"]["stableRS"]
    assert ro["status"]["currentStepIndex"] == 2
    asim.kubectl("patch", "rollout", "cn", "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"template": {"spec": {"containers": [
                     {"name": "app", "image": "docker.io/library/nginx:1.27"}]}}}}), check=True)
    ro = asim.wait_for(lambda: (lambda r: r["status"].get("phase") == "Paused" and r)(
        kjson(asim, "get", "rollout", "cn", "-n", ns)), timeout=60, message="paused at the pause step")
    st = ro["status"]
    assert st["message"] == "CanaryPauseStep" and st["controllerPause"] is True
    assert st["currentStepIndex"] == 1 and st["stableRS"] == stable != st["currentPodHash"]
    assert [c["reason"] for c in st["pauseConditions"]] == ["CanaryPauseStep"]
    images = sorted(p["spec"]["containers"][0]["image"] for p in live_pods(asim, ns, "app=cn"))
    assert images == ["docker.io/library/nginx:1.25", "docker.io/library/nginx:1.27"]   # setWeight 50 of 2
    # kubectl argo rollouts promote: clear the pause conditions through the status subresource
    code, _, body = asim.request("PATCH", f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/rollouts/cn/status",
                                 json.dumps({"status": {"pauseConditions": None}}).encode(),
                                 headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200, body
    ro = asim.wait_for(lambda: (lambda r: r and r["status"]["stableRS"] != stable and r)(healthy(asim, ns, "cn")),
                       timeout=90, message="promoted")
    assert ro["status"]["currentStepIndex"] == 2
    assert {p["spec"]["containers"][0]["image"] for p in live_pods(asim, ns, "app=cn")} == {
        "docker.io/library/nginx:1.27"}


def test_blue_green_switches_the_active_service(asim, ns):
    asim.kubectl("create", "service", "clusterip", "bg-active", "-n", ns, "--tcp=80:80", check=True)
    strategy = {"blueGreen": {"activeService": "bg-active", "scaleDownDelaySeconds": 1}}
    asim.kubectl("apply", "-f", "-", input=json.dumps(rollout(ns, "bg", replicas=2, strategy=strategy)), check=True)
    ro = asim.wait_for(lambda: healthy(asim, ns, "bg"), timeout=60, message="healthy blue-green")
    first = ro["status"]["currentPodHash"]
    assert ro["status"]["blueGreen"]["activeSelector"] == first
    svc = kjson(asim, "get", "svc", "bg-active", "-n", ns)
    assert svc["spec"]["selector"]["rollouts-pod-template-hash"] == first
    assert svc["metadata"]["annotations"]["argo-rollouts.argoproj.io/managed-by-rollouts"] == "bg"
    asim.kubectl("patch", "rollout", "bg", "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"template": {"metadata": {"annotations": {"v": "2"}}}}}), check=True)
    ro = asim.wait_for(lambda: (lambda r: r and r["status"]["currentPodHash"] != first and r)(
        healthy(asim, ns, "bg")), timeout=90, message="promoted blue-green")
    second = ro["status"]["currentPodHash"]
    assert kjson(asim, "get", "svc", "bg-active", "-n", ns)["spec"]["selector"]["rollouts-pod-template-hash"] == \
        second
    asim.wait_for(lambda: kjson(asim, "get", "rs", f"bg-{first}", "-n", ns)["spec"]["replicas"] == 0, timeout=60,
                  message="old ReplicaSet scaled down after the delay")
    assert {p["metadata"]["labels"]["rollouts-pod-template-hash"] for p in live_pods(asim, ns, "app=bg")} == {second}


@pytest.fixture(scope="module")
def blog_argo():
    from kubesim.testing import KubeSim

    sim = KubeSim("blog", pod_ready_seconds=0.2, feature="argo-rollouts")
    sim.start()
    yield sim
    sim.cleanup()


def test_rollout_pods_are_injected_with_the_rollout_as_workload(blog_argo):
    sim = blog_argo
    sim.kubectl("apply", "-f", "-", input=json.dumps(rollout("bar", "canary-app", replicas=1)), check=True)
    sim.wait_for(lambda: healthy(sim, "bar", "canary-app"), timeout=60, message="healthy rollout")
    pod = live_pods(sim, "bar", "app=canary-app")[0]
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_WORKLOAD_NAME"] == "canary-app"
    assert env["ISTIO_META_OWNER"] == "kubernetes://apis/v1alpha1/namespaces/bar/rollouts/canary-app"
