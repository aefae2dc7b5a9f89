"""ReplicationControllers and OpenShift DeploymentConfigs (feature ``openshift``), driven with the real kubectl
and the kubernetes Python client; every assertion reads what the simulated cluster holds afterwards."""

from __future__ import annotations

import json
import os
import threading
import time
from itertools import count

import pytest

_n = count(1)

REQUEST = {"kind": "DeploymentRequest", "apiVersion": "apps.openshift.io/v1", "latest": True, "force": True}


@pytest.fixture(scope="module")
def osim():
    from kubesim.testing import KubeSim

    sim = KubeSim("empty", pod_ready_seconds=0.2, feature="openshift")
    sim.start()
    yield sim
    sim.cleanup()


@pytest.fixture
def ns(osim):
    from kubernetes import client

    name = f"os{os.getpid() % 10000}-{next(_n)}"
    client.CoreV1Api(osim.client()).create_namespace({"metadata": {"name": name}})
    return name


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def raw(sim, path):
    return json.loads(sim.kubectl("get", "--raw", path, check=True).stdout)


def live_pods(sim, ns, selector=None):
    args = ["get", "pods", "-n", ns] + (["-l", selector] if selector else [])
    return [p for p in kjson(sim, *args)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (p.get("status") or {}).get("conditions") or [])


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def dc_manifest(ns, name, replicas=2, image="docker.io/library/nginx:1.25", **strategy):
    return {"apiVersion": "apps.openshift.io/v1", "kind": "DeploymentConfig",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"app": name},
                     "strategy": {"type": "Rolling", **strategy},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def rolled_out(sim, ns, name, version):
    dc = kjson(sim, "get", "dc", name, "-n", ns)
    st, prog = dc["status"], cond(dc, "Progressing")
    return (st["latestVersion"] == version and st["observedGeneration"] >= dc["metadata"]["generation"]
            and prog is not None and prog.get("reason") == "NewReplicationControllerAvailable"
            and st["updatedReplicas"] == st["replicas"] == dc["spec"]["replicas"] == st["availableReplicas"]) and dc


# ------------------------------------------------------------------------------ ReplicationControllers

def test_replication_controller_keeps_replicas_with_kubectl_and_python_client(osim, ns):
    from kubernetes import client

    core = client.CoreV1Api(osim.client())
    core.create_namespaced_replication_controller(ns, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                                             "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}}})
    rc = osim.wait_for(lambda: (lambda r: r.status.ready_replicas == 2 and r)(
        core.read_namespaced_replication_controller("web", ns)), timeout=60, message="rc ready")
    assert rc.spec.selector == {"app": "web"}          # defaulted from the template's labels
    assert rc.status.replicas == 2 and rc.status.available_replicas == 2
    assert rc.status.observed_generation == rc.metadata.generation
    pods = live_pods(osim, ns, "app=web")
    assert len(pods) == 2
    for p in pods:
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["apiVersion"], ref["kind"], ref["name"], ref["controller"]) == ("v1", "ReplicationController",
                                                                                   "web", True)
        assert p["metadata"]["generateName"] == "web-"
    osim.kubectl("scale", "rc/web", "-n", ns, "--replicas=3", check=True)
    osim.wait_for(lambda: len([p for p in live_pods(osim, ns, "app=web") if ready(p)]) == 3, timeout=60,
                  message="scaled to 3")
    table = osim.kubectl("get", "rc", "web", "-n", ns, check=True).stdout.split("\n")[0].split()
    assert table == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    bad = osim.kubectl("create", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bad"},
        "spec": {"selector": {"app": "other"}, "template": {"metadata": {"labels": {"app": "bad"}},
                                                            "spec": {"containers": [{"name": "a", "image": "x"}]}}}}))
    assert bad.returncode != 0 and "`selector` does not match template `labels`" in bad.stderr


# ------------------------------------------------------------------------------ DeploymentConfigs

def test_deploymentconfig_served_with_discovery_and_kubectl_columns(osim, ns):
    res = {r["name"]: r for r in raw(osim, "/apis/apps.openshift.io/v1")["resources"]}
    assert res["deploymentconfigs"]["shortNames"] == ["dc"] and res["deploymentconfigs"]["categories"] == ["all"]
    assert res["deploymentconfigs/instantiate"]["kind"] == "DeploymentRequest"
    assert res["deploymentconfigs/instantiate"]["verbs"] == ["create"]
    assert (res["deploymentconfigs/scale"]["group"], res["deploymentconfigs/scale"]["version"]) == ("extensions",
                                                                                                    "v1beta1")
    osim.kubectl("apply", "-f", "-", input=json.dumps(dc_manifest(ns, "web")), check=True)
    osim.wait_for(lambda: rolled_out(osim, ns, "web", 1), timeout=60, message="first rollout")
    header = osim.kubectl("get", "dc", "-n", ns, check=True).stdout.split("\n")[0]
    assert header.split() == ["NAME", "REVISION", "DESIRED", "CURRENT", "TRIGGERED", "BY"]
    dc = kjson(osim, "get", "dc", "web", "-n", ns)
    spec = dc["spec"]
    assert spec["triggers"] == [{"type": "ConfigChange"}] and spec["revisionHistoryLimit"] == 10
    assert spec["strategy"]["rollingParams"] == {"intervalSeconds": 1, "updatePeriodSeconds": 1,
                                                 "timeoutSeconds": 600, "maxSurge": "25%", "maxUnavailable": "25%"}
    assert spec["strategy"]["activeDeadlineSeconds"] == 21600 and spec["test"] is False
    assert dc["status"]["details"] == {"message": "config change", "causes": [{"type": "ConfigChange"}]}
    assert cond(dc, "Available")["status"] == "True"
    rc = kjson(osim, "get", "rc", "web-1", "-n", ns)
    ann = rc["metadata"]["annotations"]
    assert ann["openshift.io/deployment.phase"] == "Complete"
    assert ann["openshift.io/deployment-config.latest-version"] == "1"
    assert ann["openshift.io/deployment-config.name"] == "web"
    assert json.loads(ann["openshift.io/encoded-deployment-config"])["metadata"]["name"] == "web"
    assert rc["metadata"]["labels"]["openshift.io/deployment-config.name"] == "web"
    assert rc["spec"]["selector"] == {"app": "web", "deployment": "web-1", "deploymentconfig": "web"}
    assert rc["metadata"]["ownerReferences"][0]["kind"] == "DeploymentConfig"
    deployer = kjson(osim, "get", "pod", "web-1-deploy", "-n", ns)
    assert deployer["status"]["phase"] == "Succeeded"
    assert deployer["metadata"]["labels"]["openshift.io/deployer-pod-for.name"] == "web-1"
    assert deployer["spec"]["serviceAccountName"] == "deployer" and deployer["spec"]["restartPolicy"] == "Never"
    assert {p["metadata"]["labels"]["deployment"] for p in live_pods(osim, ns, "deploymentconfig=web")} == {"web-1"}
    assert kjson(osim, "get", "sa", "deployer", "-n", ns)["metadata"]["name"] == "deployer"
    # plain kubectl has no rollout status viewer for DeploymentConfigs (oc's reads the conditions above)
    cp = osim.kubectl("rollout", "status", "dc/web", "-n", ns)
    assert cp.returncode != 0 and 'no kind "DeploymentConfig" is registered' in cp.stderr
    osim.kubectl("scale", "dc/web", "-n", ns, "--replicas=3", check=True)
    osim.wait_for(lambda: rolled_out(osim, ns, "web", 1) and
                  kjson(osim, "get", "rc", "web-1", "-n", ns)["spec"]["replicas"] == 3,
                  timeout=60, message="scaled without a new rollout")


def test_instantiate_rolls_the_pods_like_oc_rollout_latest(osim, ns):
    dyn = osim.dynamic()
    api = dyn.resources.get(api_version="apps.openshift.io/v1", kind="DeploymentConfig")
    api.create(body=dc_manifest(ns, "app", replicas=3, rollingParams={"maxSurge": 1, "maxUnavailable": 0}),
               namespace=ns)
    osim.wait_for(lambda: rolled_out(osim, ns, "app", 1), timeout=60, message="first rollout")
    before = {p["metadata"]["name"] for p in live_pods(osim, ns, "deploymentconfig=app")}
    gen = kjson(osim, "get", "dc", "app", "-n", ns)["metadata"]["generation"]
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            ps = [p for p in live_pods(osim, ns, "deploymentconfig=app")]
            samples.append((len(ps), sum(1 for p in ps if ready(p))))
            time.sleep(0.05)
    t = threading.Thread(target=sample)
    t.start()
    try:
        res = api.subresources["instantiate"].create(body=dict(REQUEST, name="app"), name="app", namespace=ns)
        assert res.kind == "DeploymentConfig" and res.status.latestVersion == 2
        assert res.status.details.message == "manual change"
        assert res.metadata.generation == gen + 1
        dc = osim.wait_for(lambda: rolled_out(osim, ns, "app", 2), timeout=90, message="second rollout")
    finally:
        stop.set()
        t.join()
    assert dc["status"]["observedGeneration"] == gen + 1
    after = live_pods(osim, ns, "deploymentconfig=app")
    assert len(after) == 3 and not before & {p["metadata"]["name"] for p in after}
    assert {p["metadata"]["labels"]["deployment"] for p in after} == {"app-2"}
    assert all(p["metadata"]["annotations"]["openshift.io/deployment-config.latest-version"] == "2" for p in after)
    assert min(r for _, r in samples) >= 3      # maxUnavailable 0: never below 3 ready
    assert max(n for n, _ in samples) <= 4      # maxSurge 1
    old, new = (kjson(osim, "get", "rc", n, "-n", ns) for n in ("app-1", "app-2"))
    assert old["spec"]["replicas"] == 0 and new["spec"]["replicas"] == 3
    assert new["metadata"]["annotations"]["openshift.io/deployment.phase"] == "Complete"
    assert new["metadata"]["annotations"]["openshift.io/deployment.status-reason"] == "manual change"
    assert "kubectl.kubernetes.io/update-source-id" not in new["metadata"]["annotations"]
    assert old["metadata"]["annotations"]["kubectl.kubernetes.io/original-replicas"] == "3"
    log = osim.kubectl("logs", "app-2-deploy", "-n", ns, check=True).stdout
    assert "Scaling up app-2 from 0 to 3, scaling down app-1 from 3 to 0" in log and "--> Success" in log


def test_config_change_trigger_and_refusals(osim, ns):
    osim.kubectl("apply", "-f", "-", input=json.dumps(dc_manifest(ns, "cfg", replicas=1)), check=True)
    osim.wait_for(lambda: rolled_out(osim, ns, "cfg", 1), timeout=60, message="first rollout")
    osim.kubectl("patch", "dc", "cfg", "-n", ns, "--type=merge", "-p",
                 json.dumps({"spec": {"template": {"metadata": {"annotations": {"x": "1"}}}}}), check=True)
    dc = osim.wait_for(lambda: rolled_out(osim, ns, "cfg", 2), timeout=60, message="config change rollout")
    assert dc["status"]["details"]["causes"] == [{"type": "ConfigChange"}]
    osim.kubectl("patch", "dc", "cfg", "-n", ns, "--type=merge", "-p", '{"spec":{"paused":true}}', check=True)
    code, _, body = osim.request("POST", f"/apis/apps.openshift.io/v1/namespaces/{ns}/deploymentconfigs/cfg/"
                                         "instantiate", dict(REQUEST, name="cfg"))
    status = json.loads(body)
    assert code == 422 and status["reason"] == "Invalid"
    assert 'deployment config "cfg" is paused - unpause to request a new deployment' in status["message"]
    code, _, _ = osim.request("POST", f"/apis/apps.openshift.io/v1/namespaces/{ns}/deploymentconfigs/none/"
                                      "instantiate", dict(REQUEST, name="none"))
    assert code == 404
    assert kjson(osim, "get", "dc", "cfg", "-n", ns)["status"]["latestVersion"] == 2


def test_deploymentconfigs_are_not_served_without_openshift(shared_sim):
    groups = [g["name"] for g in raw(shared_sim, "/apis")["groups"]]
    assert "apps.openshift.io" not in groups
    assert "replicationcontrollers" in {r["name"] for r in raw(shared_sim, "/api/v1")["resources"]}


# ------------------------------------------------------------------------------ with Istio injection

@pytest.fixture(scope="module")
def blog_os():
    from kubesim.testing import KubeSim

    sim = KubeSim("blog", pod_ready_seconds=0.2, feature="openshift")
    sim.start()
    yield sim
    sim.cleanup()


def test_injected_deploymentconfig_pods_and_a_deployer_pod_held_by_its_sidecar(blog_os):
    sim = blog_os
    quiet = dc_manifest("foo", "quiet", replicas=1)
    quiet["spec"]["strategy"]["labels"] = {"sidecar.istio.io/inject": "false"}
    sim.kubectl("apply", "-f", "-", input=json.dumps(quiet), check=True)
    sim.kubectl("apply", "-f", "-", input=json.dumps(dc_manifest("foo", "held", replicas=1)), check=True)
    sim.wait_for(lambda: rolled_out(sim, "foo", "quiet", 1), timeout=60, message="rollout with an uninjected deployer")
    pod = live_pods(sim, "foo", "deploymentconfig=quiet")[0]
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["ISTIO_META_WORKLOAD_NAME"] == "quiet"
    assert env["ISTIO_META_OWNER"] == "kubernetes://apis/v1/namespaces/foo/deploymentconfigs/quiet"
    assert proxy["image"] == "docker.io/istio/proxyv2:1.14.6"
    assert kjson(sim, "get", "pod", "quiet-1-deploy", "-n", "foo")["status"]["phase"] == "Succeeded"
    # an injected deployer pod: the deployment container ends but the classic istio-proxy keeps the pod Running,
    # so the deployment never completes (what happens on a real cluster too)
    sim.wait_for(lambda: [p for p in live_pods(sim, "foo", "deploymentconfig=held") if ready(p)], timeout=60,
                 message="held pods")

    def deployer_done():
        p = kjson(sim, "get", "pod", "held-1-deploy", "-n", "foo")
        return any(c["name"] == "deployment" and "terminated" in c["state"]
                   for c in p["status"].get("containerStatuses") or []) and p
    deployer = sim.wait_for(deployer_done, timeout=60, message="deployer container done")
    assert deployer["status"]["phase"] == "Running"
    assert any(c["name"] == "istio-proxy" for c in deployer["spec"]["containers"])
    time.sleep(1.0)
    rc = kjson(sim, "get", "rc", "held-1", "-n", "foo")
    assert rc["metadata"]["annotations"]["openshift.io/deployment.phase"] == "Running"
    assert cond(kjson(sim, "get", "dc", "held", "-n", "foo"), "Progressing")["reason"] != \
        "NewReplicationControllerAvailable"
