"""Deletion: propagation policies through ownerReferences, finalizers, namespace deletion."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


def _owner(obj, kind="ConfigMap", api_version="v1"):
    return {"apiVersion": api_version, "kind": kind, "name": obj.metadata.name, "uid": obj.metadata.uid}


def _tree(core, ns, prefix):
    """parent ConfigMap <- child ConfigMap <- grandchild Secret (ownerReferences)."""
    parent = core.create_namespaced_config_map(ns, {"metadata": {"name": f"{prefix}-parent"}})
    child = core.create_namespaced_config_map(ns, {"metadata": {"name": f"{prefix}-child",
                                                                "ownerReferences": [_owner(parent)]}})
    core.create_namespaced_secret(ns, {"metadata": {"name": f"{prefix}-grandchild",
                                                    "ownerReferences": [_owner(child)]}})
    return parent


def _exists(fn, *args):
    try:
        fn(*args)
        return True
    except ApiException as e:
        assert e.status == 404
        return False


def test_background_cascading_delete(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    _tree(core, ns, "bg")
    status = core.delete_namespaced_config_map("bg-parent", ns)  # client 37 answers a plain dict
    assert status["kind"] == "Status" and status["status"] == "Success"
    assert status["details"]["name"] == "bg-parent" and status["details"]["kind"] == "configmaps"
    assert not _exists(core.read_namespaced_config_map, "bg-child", ns)
    assert not _exists(core.read_namespaced_secret, "bg-grandchild", ns)


def test_orphan_delete_keeps_dependents(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    _tree(core, ns, "or")
    core.delete_namespaced_config_map("or-parent", ns, propagation_policy="Orphan")
    child = core.read_namespaced_config_map("or-child", ns)
    assert not child.metadata.owner_references
    assert _exists(core.read_namespaced_secret, "or-grandchild", ns)


def test_foreground_delete(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    _tree(core, ns, "fg")
    core.delete_namespaced_config_map("fg-parent", ns, propagation_policy="Foreground")
    for name in ("fg-parent", "fg-child"):
        assert not _exists(core.read_namespaced_config_map, name, ns)
    assert not _exists(core.read_namespaced_secret, "fg-grandchild", ns)


def test_dependent_with_another_live_owner_survives(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    a = core.create_namespaced_config_map(ns, {"metadata": {"name": "own-a"}})
    b = core.create_namespaced_config_map(ns, {"metadata": {"name": "own-b"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "shared", "ownerReferences": [_owner(a), _owner(b)]}})
    core.delete_namespaced_config_map("own-a", ns)
    left = core.read_namespaced_config_map("shared", ns)
    assert [r.name for r in left.metadata.owner_references] == ["own-b"]


def test_finalizers_hold_deletion_until_removed(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, {"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}})
    code, _, raw = shared_sim.request("DELETE", f"/api/v1/namespaces/{ns}/configmaps/fin")
    assert code == 200 and json.loads(raw)["metadata"]["deletionTimestamp"]
    held = core.read_namespaced_config_map("fin", ns)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", ns, {"metadata": {"finalizers": None}})
    assert not _exists(core.read_namespaced_config_map, "fin", ns)


def test_delete_preconditions(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, {"metadata": {"name": "pre"}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("pre", ns, body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version="1")))
    assert e.value.status == 409
    assert _exists(core.read_namespaced_config_map, "pre", ns)


def test_deployment_delete_cascades_to_replicasets_and_pods(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    core = client.CoreV1Api(shared_sim.client())
    apps.create_namespaced_deployment(ns, {"metadata": {"name": "web"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}}})
    shared_sim.wait_for(lambda: len(core.list_namespaced_pod(ns, label_selector="app=web").items) == 2,
                        message="2 pods")
    rs = apps.list_namespaced_replica_set(ns).items
    assert len(rs) == 1 and rs[0].metadata.owner_references[0].name == "web"
    apps.delete_namespaced_deployment("web", ns)
    assert apps.list_namespaced_replica_set(ns).items == []
    # pods terminate gracefully (Terminating first, removed shortly after)
    left = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert all(p.metadata.deletion_timestamp is not None for p in left)
    shared_sim.wait_for(lambda: core.list_namespaced_pod(ns, label_selector="app=web").items == [],
                        message="pods removed")


def test_namespace_deletion_removes_contents(shared_sim):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map("doomed", {"metadata": {"name": "c"}})
    core.create_namespaced_secret("doomed", {"metadata": {"name": "s"}})
    ns = core.delete_namespace("doomed")  # the real server answers the Terminating namespace
    assert ns["kind"] == "Namespace" and ns["status"]["phase"] == "Terminating"
    assert ns["metadata"]["deletionTimestamp"]
    # while terminating, no new content
    try:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
        created_late = True
    except ApiException as e:
        created_late = False
        assert e.status in (403, 404)
        if e.status == 403:
            assert json.loads(e.body)["message"] == ('configmaps "late" is forbidden: unable to create new content '
                                                     'in namespace doomed because it is being terminated')
    assert not created_late
    shared_sim.wait_for(lambda: not _exists(core.read_namespace, "doomed"), message="namespace gone")
    assert core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=doomed").items == []
    assert core.list_secret_for_all_namespaces(field_selector="metadata.namespace=doomed").items == []


def test_graceful_pod_deletion_when_enabled(kubesim_factory):
    sim = kubesim_factory(pod_terminate_seconds=1.0)
    core = client.CoreV1Api(sim.client())
    nodes = [n["metadata"]["name"] for n in sim.get_json("/api/v1/nodes")["items"]]
    node = nodes[0] if nodes else None

    def pod(name):
        spec = {"containers": [{"name": "c", "image": "busybox:1.36"}], "terminationGracePeriodSeconds": 30}
        if node:
            spec["nodeName"] = node
        return {"metadata": {"name": name}, "spec": spec}

    if node is None:
        core.create_node({"metadata": {"name": "n1"}})
        node = "n1"
    core.create_namespaced_pod("default", pod("slow"))
    core.delete_namespaced_pod("slow", "default")
    held = core.read_namespaced_pod("slow", "default")
    assert held.metadata.deletion_timestamp is not None and held.metadata.deletion_grace_period_seconds == 30
    cp = sim.kubectl("get", "pod", "slow", "-n", "default")
    assert "Terminating" in cp.stdout
    sim.wait_for(lambda: not _exists(core.read_namespaced_pod, "slow", "default"), message="pod removed")
    # --grace-period=0 removes at once
    core.create_namespaced_pod("default", pod("fast"))
    core.delete_namespaced_pod("fast", "default", grace_period_seconds=0)
    assert not _exists(core.read_namespaced_pod, "fast", "default")
