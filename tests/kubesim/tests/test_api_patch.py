"""PATCH flavours and server-side dry run against the simulated API server."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubesim.patch import json_patch, merge_patch, strategic_merge


def _deploy(name):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [
                                      {"name": "main", "image": "nginx:1.25",
                                       "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                                       "ports": [{"containerPort": 80}]},
                                      {"name": "side", "image": "busybox:1.36"}]}}}}


def _patch(sim, path, body, ctype, query=""):
    code, _, raw = sim.request("PATCH", path + query, json.dumps(body).encode(), headers={"Content-Type": ctype})
    return code, json.loads(raw)


def test_strategic_merge_patch_merges_lists_by_name(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    apps.create_namespaced_deployment(ns, _deploy("smp"))
    # the Python client sends strategic-merge-patch for dict bodies
    apps.patch_namespaced_deployment("smp", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "nginx:1.26", "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}]},
    ]}}}})
    d = apps.read_namespaced_deployment("smp", ns)
    cs = {c.name: c for c in d.spec.template.spec.containers}
    assert set(cs) == {"main", "side"}  # list merged by name, not replaced
    assert cs["main"].image == "nginx:1.26" and cs["side"].image == "busybox:1.36"
    assert [(e.name, e.value) for e in cs["main"].env] == [("A", "1"), ("B", "two"), ("C", "3")]
    assert cs["main"].ports[0].container_port == 80
    # $patch: delete removes one element
    apps.patch_namespaced_deployment("smp", ns, {"spec": {"template": {"spec": {"containers": [
        {"name": "side", "$patch": "delete"}]}}}})
    d = apps.read_namespaced_deployment("smp", ns)
    assert [c.name for c in d.spec.template.spec.containers] == ["main"]
    assert d.metadata.generation == 3


def test_merge_patch_replaces_lists_and_null_deletes(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    apps.create_namespaced_deployment(ns, _deploy("mp"))
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/mp"
    code, body = _patch(shared_sim, path, {"metadata": {"labels": {"app": None, "team": "x"}}, "spec": {
        "template": {"spec": {"containers": [{"name": "only", "image": "redis:7"}]}}}},
        "application/merge-patch+json")
    assert code == 200, body
    d = apps.read_namespaced_deployment("mp", ns)
    assert d.metadata.labels == {"team": "x"}
    assert [c.name for c in d.spec.template.spec.containers] == ["only"]


def test_json_patch(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, {"metadata": {"name": "jp"}, "data": {"a": "1", "b": "2"}})
    path = f"/api/v1/namespaces/{ns}/configmaps/jp"
    code, body = _patch(shared_sim, path, [{"op": "replace", "path": "/data/a", "value": "10"},
                                           {"op": "remove", "path": "/data/b"},
                                           {"op": "add", "path": "/metadata/labels", "value": {"x~y": "z"}}],
                        "application/json-patch+json")
    assert code == 422  # the label key is invalid: validation runs after patching
    code, body = _patch(shared_sim, path, [{"op": "replace", "path": "/data/a", "value": "10"},
                                           {"op": "remove", "path": "/data/b"},
                                           {"op": "add", "path": "/metadata/labels", "value": {"k": "v"}}],
                        "application/json-patch+json")
    assert code == 200, body
    got = core.read_namespaced_config_map("jp", ns)
    assert got.data == {"a": "10"} and got.metadata.labels == {"k": "v"}
    code, body = _patch(shared_sim, path, [{"op": "test", "path": "/data/a", "value": "nope"}],
                        "application/json-patch+json")
    assert code == 422
    # a stale resourceVersion in a patch is a precondition
    code, body = _patch(shared_sim, path, {"metadata": {"resourceVersion": "1"}, "data": {"a": "x"}},
                        "application/merge-patch+json")
    assert code == 409 and body["reason"] == "Conflict"


def test_apply_patch_creates_then_merges(shared_sim, ns):
    path = f"/api/v1/namespaces/{ns}/configmaps/applied?fieldManager=test"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1"}}
    code, out = _patch(shared_sim, path.split("?")[0], body, "application/apply-patch+yaml", "?fieldManager=test")
    assert code == 201 and out["data"] == {"a": "1"}
    body["data"] = {"b": "2"}
    code, out = _patch(shared_sim, path.split("?")[0], body, "application/apply-patch+yaml", "?fieldManager=test")
    assert code == 200 and out["data"]["b"] == "2"


def test_unknown_patch_type_is_415(shared_sim, ns):
    client.CoreV1Api(shared_sim.client()).create_namespaced_config_map(ns, {"metadata": {"name": "u"}})
    code, body = _patch(shared_sim, f"/api/v1/namespaces/{ns}/configmaps/u", {"data": {}}, "text/plain")
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


def test_dry_run_changes_nothing(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    core = client.CoreV1Api(shared_sim.client())
    # create
    out = apps.create_namespaced_deployment(ns, _deploy("dry"), dry_run="All")
    assert out.metadata.name == "dry" and out.metadata.uid
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("dry", ns)
    assert e.value.status == 404
    # patch / update / delete on a real object
    apps.create_namespaced_deployment(ns, _deploy("dry"))
    before = apps.read_namespaced_deployment("dry", ns)
    out = apps.patch_namespaced_deployment("dry", ns, {"spec": {"replicas": 7}}, dry_run="All")
    assert out.spec.replicas == 7 and out.metadata.generation == 2
    before.spec.template.spec.containers[0].image = "nginx:9"
    before.metadata.resource_version = None  # the deployment controller may have written status meanwhile
    out = apps.replace_namespaced_deployment("dry", ns, before, dry_run="All")
    assert out.spec.template.spec.containers[0].image == "nginx:9"
    apps.delete_namespaced_deployment("dry", ns, dry_run="All")
    after = apps.read_namespaced_deployment("dry", ns)
    assert after.spec.replicas == 0 and after.spec.template.spec.containers[0].image == "nginx:1.25"
    assert after.metadata.generation == 1
    # validation and admission still run in dry-run
    bad = _deploy("dry2")
    del bad["spec"]["selector"]
    code, _, raw = shared_sim.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments?dryRun=All", bad)
    assert code == 422 and json.loads(raw)["message"] == 'Deployment.apps "dry2" is invalid: spec.selector: ' \
        'Required value'
    # and nothing bumped the stored object
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "drycm"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("drycm", ns, {"data": {"a": "2"}}, dry_run="All")
    assert core.read_namespaced_config_map("drycm", ns).metadata.resource_version == cm.metadata.resource_version


# ---- pure functions --------------------------------------------------------------------------

def test_patch_functions():
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    assert json_patch({"a": [1, 2]}, [{"op": "add", "path": "/a/-", "value": 3},
                                      {"op": "move", "from": "/a/0", "path": "/b"}]) == {"a": [2, 3], "b": 1}
    orig = {"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
                     "tolerations": [{"key": "k"}]}}
    out = strategic_merge(orig, {"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                                          "containers": [{"name": "a", "image": "z"}],
                                          "tolerations": [{"key": "n"}]}})
    assert out["spec"]["containers"] == [{"name": "b", "image": "y"}, {"name": "a", "image": "z"}]
    assert out["spec"]["tolerations"] == [{"key": "n"}]  # no merge key: replaced
    assert strategic_merge({"spec": {"x": 1, "y": 2}}, {"spec": {"$patch": "replace", "z": 3}}) == {"spec": {"z": 3}}
    assert strategic_merge({"metadata": {"finalizers": ["a"]}}, {"metadata": {"finalizers": ["b"]}}) == \
        {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge({"metadata": {"finalizers": ["a", "b"]}},
                           {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}) == \
        {"metadata": {"finalizers": ["b"]}}
