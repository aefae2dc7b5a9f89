"""Scenario `ambient` and what it rests on (kubesim.ambient, the DaemonSet controller, the test charts cni and
ztunnel): nodes, daemon pods per node and their update strategies, cordon and the real `kubectl drain` through
the Eviction API with PodDisruptionBudgets enforced, ambient redirection, ztunnel following its istiod, and
istiod's gateway controller re-rendering Gateways when a tag moves.  Everything is read back from the cluster
with the real kubectl, the kubernetes client and real Helm."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from kubesim.helm_scenario import CHARTS_DIR, HELM_BIN
from kubesim.testing import KubeSim

pytest.importorskip("helm_python")

ZTUNNEL = str(CHARTS_DIR / "ztunnel")
ISTIOD = str(CHARTS_DIR / "istiod")


def helm(sim, *args, check=True):
    cp = subprocess.run([str(HELM_BIN), *map(str, args)], env=sim.kubectl_env(), capture_output=True, text=True,
                        timeout=300)
    if check and cp.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed:\n{cp.stdout}\n{cp.stderr}")
    return cp


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def pods(sim, ns, selector=None):
    args = ["get", "pods", "-n", ns] + (["-l", selector] if selector else [])
    return [p for p in kjson(sim, *args)["items"] if not p["metadata"].get("deletionTimestamp")]


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions") or [])


def image_of(pod, container="istio-proxy"):
    return next(c["image"] for c in pod["spec"]["containers"] if c["name"] == container)


def wait(fn, timeout=90, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def sim():
    s = KubeSim("ambient", pod_ready_seconds=0.2)
    s.start()
    yield s
    s.cleanup()


# ------------------------------------------------------------------------------------------ the scenario

def test_scenario_nodes_and_daemonsets_like_istios_charts(sim):
    nodes = sorted(n["metadata"]["name"] for n in kjson(sim, "get", "nodes")["items"])
    assert len(nodes) == 3
    releases = {r["name"]: r for r in json.loads(helm(sim, "list", "-A", "-o", "json").stdout)}
    assert {"istio-base", "istiod-1-29-6", "istio-cni", "ztunnel"} <= set(releases)
    zt = kjson(sim, "get", "ds", "ztunnel", "-n", "istio-system")
    assert zt["metadata"]["annotations"]["istio.io/rev"] == "1-29-6"
    assert zt["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    cni = kjson(sim, "get", "ds", "istio-cni-node", "-n", "istio-system")
    assert cni["metadata"]["labels"]["k8s-app"] == "istio-cni-node"
    assert cni["metadata"]["labels"]["operator.istio.io/component"] == "Cni"
    for selector in ("app=ztunnel", "k8s-app=istio-cni-node"):
        found = pods(sim, "istio-system", selector)
        assert sorted(p["spec"]["nodeName"] for p in found) == nodes
        assert all(ready(p) for p in found)
    zpods = pods(sim, "istio-system", "app=ztunnel")
    assert {image_of(p) for p in zpods} == {"docker.io/istio/ztunnel:1.29.6"}
    assert {p["metadata"]["annotations"]["istio.io/rev"] for p in zpods} == {"1-29-6"}
    env = {e["name"]: e.get("value") for e in zpods[0]["spec"]["containers"][0]["env"]}
    assert env["XDS_ADDRESS"] == "istiod-1-29-6.istio-system.svc:15012"
    # daemon pods are pinned to their node and tolerate a cordon, as the DaemonSet controller makes them
    p = zpods[0]
    terms = p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchFields"][0]["values"] == [p["spec"]["nodeName"]]
    assert any(t.get("key") == "node.kubernetes.io/unschedulable" for t in p["spec"]["tolerations"])
    cni_pod = pods(sim, "istio-system", "k8s-app=istio-cni-node")[0]
    assert image_of(cni_pod, "install-cni") == "docker.io/istio/install-cni:1.29.6"


def test_ambient_pods_redirected_sidecar_pods_not(sim):
    for ns in ("foo", "bar"):
        for p in pods(sim, ns, f"app={ns}"):
            assert p["metadata"].get("annotations", {}).get("ambient.istio.io/redirection") == "enabled", p
            names = [c["name"] for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])]
            assert "istio-proxy" not in names
    for p in pods(sim, "baz", "app=baz"):
        assert "ambient.istio.io/redirection" not in (p["metadata"].get("annotations") or {})
        assert any(c["name"] == "istio-proxy" for c in p["spec"].get("initContainers") or [])
    # istio-cni takes a namespace out of ambient when its label goes, and back in
    sim.kubectl("label", "ns", "foo", "istio.io/dataplane-mode-", check=True)
    wait(lambda: all("ambient.istio.io/redirection" not in (p["metadata"].get("annotations") or {})
                     for p in pods(sim, "foo", "app=foo")), what="foo out of ambient")
    sim.kubectl("label", "ns", "foo", "istio.io/dataplane-mode=ambient", check=True)
    wait(lambda: all((p["metadata"].get("annotations") or {}).get("ambient.istio.io/redirection") == "enabled"
                     for p in pods(sim, "foo", "app=foo")), what="foo back in ambient")


def test_istiod_deploys_gateways_and_waypoints(sim):
    classes = {c["metadata"]["name"]: c["spec"]["controllerName"] for c in kjson(sim, "get", "gatewayclasses")["items"]}
    assert classes == {"istio": "istio.io/gateway-controller", "istio-waypoint": "istio.io/mesh-controller",
                       "istio-remote": "istio.io/unmanaged-gateway"}
    wp = kjson(sim, "get", "deploy", "waypoint", "-n", "bar")
    assert wp["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] == "waypoint"
    assert wp["metadata"]["labels"]["gateway.istio.io/managed"] == "istio.io-mesh-controller"
    assert wp["metadata"]["ownerReferences"][0]["kind"] == "Gateway"
    ing = kjson(sim, "get", "deploy", "ingress-istio", "-n", "istio-ingress")
    assert ing["metadata"]["labels"]["gateway.istio.io/managed"] == "istio.io-gateway-controller"
    svc = kjson(sim, "get", "svc", "ingress-istio", "-n", "istio-ingress")
    assert svc["spec"]["type"] == "LoadBalancer" and any(p["port"] == 80 for p in svc["spec"]["ports"])
    for ns, gw in (("bar", "waypoint"), ("istio-ingress", "ingress")):
        found = pods(sim, ns, f"gateway.networking.k8s.io/gateway-name={gw}")
        assert found and all(ready(p) for p in found)
        assert {p["metadata"]["annotations"]["istio.io/rev"] for p in found} == {"1-29-6"}
        assert {image_of(p) for p in found} == {"docker.io/istio/proxyv2:1.29.6"}
        status = kjson(sim, "get", "gateways.gateway.networking.k8s.io", gw, "-n", ns)["status"]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {"Accepted": "True", "Programmed": "True"}


def test_drain_evicts_through_pdbs_and_keeps_daemon_pods(sim):
    node = pods(sim, "bar", "app=bar")[0]["spec"]["nodeName"]
    sim.kubectl("create", "pdb", "bar-all", "-n", "bar", "--selector=app=bar", "--min-available=2", check=True)
    wait(lambda: kjson(sim, "get", "pdb", "bar-all", "-n", "bar").get("status", {}).get("observedGeneration"),
         what="pdb status")
    on_node_bar = [p for p in pods(sim, "bar", "app=bar") if p["spec"]["nodeName"] == node]
    try:
        cp = sim.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=4s")
        # the budget needs both bar pods: the real kubectl retries the 429 until its timeout
        assert on_node_bar and cp.returncode != 0
        assert "Cannot evict pod as it would violate the pod's disruption budget" in cp.stderr + cp.stdout
        assert {p["metadata"]["name"] for p in pods(sim, "bar", "app=bar")} >= {
            p["metadata"]["name"] for p in on_node_bar}
        sim.kubectl("delete", "pdb", "bar-all", "-n", "bar", check=True)
        cp = sim.kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s")
        assert cp.returncode == 0, cp.stderr
        n = kjson(sim, "get", "node", node)
        assert n["spec"]["unschedulable"] is True
        assert {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"} in [
            {k: t[k] for k in ("key", "effect")} for t in n["spec"]["taints"]]
        left = [p for ns in ("foo", "bar", "baz") for p in pods(sim, ns) if p["spec"].get("nodeName") == node]
        assert left == []
        # daemon pods stay on the cordoned node; the PDB-guarded foo still has a ready pod elsewhere
        assert [p["spec"]["nodeName"] for p in pods(sim, "istio-system", "app=ztunnel")].count(node) == 1
        wait(lambda: sum(ready(p) for p in pods(sim, "foo", "app=foo")) == 2, what="foo back to 2 ready")
    finally:
        sim.kubectl("uncordon", node, check=True)
        sim.kubectl("delete", "pdb", "bar-all", "-n", "bar", "--ignore-not-found", check=True)
    n = kjson(sim, "get", "node", node)
    assert not n["spec"].get("unschedulable") and not n["spec"].get("taints")


def test_eviction_api_status_bodies(sim):
    from kubernetes import client

    api = client.CoreV1Api(sim.client())
    policy = client.PolicyV1Api(sim.client())
    policy.create_namespaced_pod_disruption_budget("foo", {
        "metadata": {"name": "foo-strict"}, "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "foo"}}}})
    try:
        wait(lambda: policy.read_namespaced_pod_disruption_budget("foo-strict", "foo").status, what="pdb status")
        pod = pods(sim, "foo", "app=foo")[0]["metadata"]["name"]
        body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "foo"}}
        with pytest.raises(client.ApiException) as e:
            api.create_namespaced_pod_eviction(pod, "foo", body)
        # two budgets select the pod (foo and foo-strict): the API server refuses with 500
        assert e.value.status == 500
        assert "more than one PodDisruptionBudget" in json.loads(e.value.body)["message"]
        policy.delete_namespaced_pod_disruption_budget("foo", "foo")
        with pytest.raises(client.ApiException) as e:
            api.create_namespaced_pod_eviction(pod, "foo", body)
        status = json.loads(e.value.body)
        assert e.value.status == 429 and status["reason"] == "TooManyRequests"
        assert status["details"]["causes"] == [{"reason": "DisruptionBudget", "message":
                                                "The disruption budget foo-strict needs 2 healthy pods and has 2 "
                                                "currently"}]
        assert api.read_namespaced_pod(pod, "foo").metadata.deletion_timestamp is None
    finally:
        policy.delete_namespaced_pod_disruption_budget("foo-strict", "foo")
        try:
            policy.create_namespaced_pod_disruption_budget("foo", {
                "metadata": {"name": "foo"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "foo"}}}})
        except client.ApiException:
            pass
    # one budget allowing one disruption: the eviction is accepted, spends it and records the pod
    wait(lambda: (policy.read_namespaced_pod_disruption_budget("foo", "foo").status or
                  client.V1PodDisruptionBudgetStatus(current_healthy=0, desired_healthy=0, disruptions_allowed=0,
                                                     expected_pods=0)).disruptions_allowed == 1,
         what="foo budget allows one")
    pod = pods(sim, "foo", "app=foo")[0]["metadata"]["name"]
    api.create_namespaced_pod_eviction(pod, "foo", {"apiVersion": "policy/v1", "kind": "Eviction",
                                                    "metadata": {"name": pod, "namespace": "foo"}})
    pdb = policy.read_namespaced_pod_disruption_budget("foo", "foo")
    assert pdb.status.disruptions_allowed == 0 or pod not in (pdb.status.disrupted_pods or {})
    wait(lambda: sum(ready(p) for p in pods(sim, "foo", "app=foo")) == 2, what="foo replaced")


# ------------------------------------------------------------------------------------------ upgrades

@pytest.fixture(scope="module")
def upgrade_sim():
    s = KubeSim("ambient", pod_ready_seconds=0.2, nodes=4)
    s.start()
    yield s
    s.cleanup()


def ztunnel_log(sim):
    return sim.get_json("/kubesim/ztunnel")["nodes"]


def test_nodes_flag(upgrade_sim):
    assert len(kjson(upgrade_sim, "get", "nodes")["items"]) == 4
    assert len(pods(upgrade_sim, "istio-system", "app=ztunnel")) == 4


def test_ztunnel_needs_its_istiod_and_surges_per_node(upgrade_sim):
    sim = upgrade_sim
    before = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods(sim, "istio-system", "app=ztunnel")}
    # ztunnel pointed at a revision whose istiod does not exist: the first surge pod never becomes ready and
    # the old pods keep serving (maxSurge 1, maxUnavailable 0)
    helm(sim, "upgrade", "ztunnel", ZTUNNEL, "-n", "istio-system", "--reuse-values",
         "--set", "revision=1-30-3", "--set", "global.tag=1.30.3")
    wait(lambda: any(image_of(p).endswith(":1.30.3") for p in pods(sim, "istio-system", "app=ztunnel")),
         what="a surge pod")
    time.sleep(2)
    zp = pods(sim, "istio-system", "app=ztunnel")
    new = [p for p in zp if image_of(p).endswith(":1.30.3")]
    assert len(new) == 1 and not ready(new[0])
    assert {p["metadata"]["name"] for p in zp if image_of(p).endswith(":1.29.6")} == set(before.values())
    assert all(not v["not_ready"] for v in ztunnel_log(sim).values())
    # the revision's istiod arrives: the rollout goes on node after node, never leaving a node unserved
    helm(sim, "upgrade", "--install", "istiod-1-30-3", ISTIOD, "-n", "istio-system",
         "--set", "revision=1-30-3", "--set", "global.tag=1.30.3")
    wait(lambda: (lambda zp: len(zp) == 4 and all(ready(p) and image_of(p).endswith(":1.30.3") for p in zp))(
        pods(sim, "istio-system", "app=ztunnel")), timeout=120, what="ztunnel on 1.30.3 everywhere")
    log = ztunnel_log(sim)
    assert set(log) == set(before)
    for node, entry in log.items():
        assert entry["not_ready"] == []
        assert [s["version"] for s in entry["served_by"]] == ["1.29.6", "1.30.3"]


def test_ztunnel_on_delete_replaced_node_by_node(upgrade_sim):
    sim = upgrade_sim
    helm(sim, "upgrade", "ztunnel", ZTUNNEL, "-n", "istio-system", "--reuse-values", "--set", "global.tag=1.30.4",
         "--set", "updateStrategy.type=OnDelete", "--set", "updateStrategy.rollingUpdate=null")
    time.sleep(2)
    zp = pods(sim, "istio-system", "app=ztunnel")
    assert {image_of(p) for p in zp} == {"docker.io/istio/ztunnel:1.30.3"}  # OnDelete: nothing moves by itself
    victim = zp[0]
    node = victim["spec"]["nodeName"]
    sim.kubectl("delete", "pod", "-n", "istio-system", victim["metadata"]["name"], check=True)
    wait(lambda: any(p["spec"]["nodeName"] == node and ready(p) and image_of(p).endswith(":1.30.4")
                     for p in pods(sim, "istio-system", "app=ztunnel")), what="new ztunnel on the node")
    assert sorted(image_of(p) for p in pods(sim, "istio-system", "app=ztunnel")).count(
        "docker.io/istio/ztunnel:1.30.4") == 1
    log = ztunnel_log(sim)
    spans = log[node]["not_ready"]
    assert len(spans) == 1 and spans[0][1] is not None and spans[0][1] >= spans[0][0]
    assert all(v["not_ready"] == [] for n, v in log.items() if n != node)


def test_tag_move_rerenders_gateways_pinned_ones_stay(upgrade_sim):
    sim = upgrade_sim  # istiod-1-30-3 was installed by the test before
    wait(lambda: all(ready(p) for p in pods(sim, "istio-system", "app=istiod")), what="istiods ready")
    sim.kubectl("label", "gateways.gateway.networking.k8s.io", "ingress", "-n", "istio-ingress",
                "istio.io/rev=1-29-6", check=True)
    # move tag default to 1-30-3 as `istioctl tag set default --revision 1-30-3 --overwrite` does
    cp = subprocess.run([str(HELM_BIN.parent / "istioctl"), "tag", "set", "default", "--revision", "1-30-3",
                         "--overwrite", "-y"], env={**sim.kubectl_env(), "KUBESIM_ISTIOCTL_VERSION": "1.30.3"},
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    wait(lambda: (lambda ps: ps and all(ready(p) and image_of(p) == "docker.io/istio/proxyv2:1.30.3" and
                                        p["metadata"]["annotations"]["istio.io/rev"] == "1-30-3" for p in ps))(
        pods(sim, "bar", "gateway.networking.k8s.io/gateway-name=waypoint")), timeout=120,
        what="waypoint rolled to 1-30-3")
    ing = pods(sim, "istio-ingress", "gateway.networking.k8s.io/gateway-name=ingress")
    assert {p["metadata"]["annotations"]["istio.io/rev"] for p in ing} == {"1-29-6"}
    assert {image_of(p) for p in ing} == {"docker.io/istio/proxyv2:1.29.6"}
    # moving the tag back is the waypoint's rollback
    cp = subprocess.run([str(HELM_BIN.parent / "istioctl"), "tag", "set", "default", "--revision", "1-29-6",
                         "--overwrite", "-y"], env={**sim.kubectl_env(), "KUBESIM_ISTIOCTL_VERSION": "1.30.3"},
                        capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    wait(lambda: (lambda ps: ps and all(ready(p) and image_of(p) == "docker.io/istio/proxyv2:1.29.6"
                                        for p in ps))(
        pods(sim, "bar", "gateway.networking.k8s.io/gateway-name=waypoint")), timeout=120,
        what="waypoint back on 1-29-6")
