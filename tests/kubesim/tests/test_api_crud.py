"""CRUD, selectors, pagination, Status bodies and concurrency against the simulated API server,
through the real kubernetes Python client (typed and dynamic)."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError


def _cm(name, labels=None, data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": data or {"k": "v"}}


def _deploy(name, replicas=1, labels=None):
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "main", "image": "nginx:1.25"}]}}}}


def test_create_get_list_with_label_selectors(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, _cm("a", {"tier": "web", "env": "prod"}))
    core.create_namespaced_config_map(ns, _cm("b", {"tier": "db", "env": "prod"}))
    core.create_namespaced_config_map(ns, _cm("c", {"tier": "web"}))
    got = core.read_namespaced_config_map("a", ns)
    assert got.metadata.uid and got.metadata.resource_version and got.metadata.creation_timestamp
    assert got.data == {"k": "v"}

    def names(sel):
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(ns, label_selector=sel).items)

    assert names("tier=web") == ["a", "c"]
    assert names("tier==web,env=prod") == ["a"]
    assert names("tier!=web") == ["b"]
    assert names("tier in (db, web),env") == ["a", "b"]
    assert names("tier notin (web)") == ["b"]
    assert names("!env") == ["c"]
    assert names("env") == ["a", "b"]
    # field selectors
    assert [i.metadata.name for i in core.list_namespaced_config_map(ns, field_selector="metadata.name=b").items] \
        == ["b"]
    assert sorted(i.metadata.name for i in core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={ns},metadata.name!=b").items) == ["a", "c"]


def test_resource_versions_and_generation(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    d = apps.create_namespaced_deployment(ns, _deploy("gen"))
    assert d.metadata.generation == 1
    rv1 = int(d.metadata.resource_version)
    d = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"extra": "x"}}})
    assert d.metadata.generation == 1  # metadata-only change
    assert int(d.metadata.resource_version) > rv1
    d = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 3}})
    assert d.metadata.generation == 2
    # a no-op update keeps the resourceVersion (a ConfigMap: no controller touches it meanwhile)
    core = client.CoreV1Api(shared_sim.client())
    cm = core.create_namespaced_config_map(ns, _cm("noop", {"a": "b"}))
    same = core.patch_namespaced_config_map("noop", ns, {"metadata": {"labels": {"a": "b"}}, "data": {"k": "v"}})
    assert same.metadata.resource_version == cm.metadata.resource_version
    # defaults applied like the real server
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rolling_update.max_surge == "25%"
    assert d.spec.revision_history_limit == 10
    assert d.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent"


def test_not_found_and_already_exists_bodies(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment("nope", ns)
    assert e.value.status == 404
    body = json.loads(e.value.body)
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'deployments.apps "nope" not found', "reason": "NotFound",
                    "details": {"name": "nope", "group": "apps", "kind": "deployments"}, "code": 404}
    apps.create_namespaced_deployment(ns, _deploy("dup"))
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment(ns, _deploy("dup"))
    body = json.loads(e.value.body)
    assert e.value.status == 409 and body["reason"] == "AlreadyExists"
    assert body["message"] == 'deployments.apps "dup" already exists'


def test_create_in_missing_namespace(shared_sim):
    core = client.CoreV1Api(shared_sim.client())
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("does-not-exist", _cm("x"))
    body = json.loads(e.value.body)
    assert e.value.status == 404
    assert body["message"] == 'namespaces "does-not-exist" not found'
    assert body["details"] == {"name": "does-not-exist", "kind": "namespaces"}


def test_invalid_objects_get_422(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    bad = _deploy("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(ApiException) as e:
        apps.create_namespaced_deployment(ns, bad)
    body = json.loads(e.value.body)
    assert e.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('Deployment.apps "bad" is invalid: spec.template.metadata.labels: Invalid '
                                      'value: map[string]string{"app":"other"}: `selector` does not match template '
                                      '`labels`')
    assert body["details"]["causes"][0]["field"] == "spec.template.metadata.labels"
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(shared_sim.client()).create_namespaced_config_map(ns, _cm("Bad_Name"))
    assert e.value.status == 422
    assert 'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"' in json.loads(e.value.body)[
        "message"]
    # changing an immutable selector
    apps.create_namespaced_deployment(ns, _deploy("imm"))
    d = apps.read_namespaced_deployment("imm", ns)
    d.spec.selector.match_labels = {"app": "imm", "x": "y"}
    d.spec.template.metadata.labels = {"app": "imm", "x": "y"}
    d.metadata.resource_version = None  # the deployment controller may have written status meanwhile
    with pytest.raises(ApiException) as e:
        apps.replace_namespaced_deployment("imm", ns, d)
    assert e.value.status == 422 and "field is immutable" in json.loads(e.value.body)["message"]


def test_optimistic_concurrency_conflict(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    cm = core.create_namespaced_config_map(ns, _cm("occ"))
    stale = cm.metadata.resource_version
    cm.data = {"k": "v2"}
    updated = core.replace_namespaced_config_map("occ", ns, cm)
    assert updated.data == {"k": "v2"}
    cm.data = {"k": "v3"}
    cm.metadata.resource_version = stale
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("occ", ns, cm)
    body = json.loads(e.value.body)
    assert e.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == ('Operation cannot be fulfilled on configmaps "occ": the object has been modified; '
                               'please apply your changes to the latest version and try again')
    assert core.read_namespaced_config_map("occ", ns).data == {"k": "v2"}
    # without a resourceVersion the update is unconditional
    cm.metadata.resource_version = None
    assert core.replace_namespaced_config_map("occ", ns, cm).data == {"k": "v3"}


def test_apps_conflict_message_names_group(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    d = apps.create_namespaced_deployment(ns, _deploy("bar"))
    old = d.metadata.resource_version
    apps.patch_namespaced_deployment("bar", ns, {"spec": {"replicas": 2}})
    d.metadata.resource_version = old
    with pytest.raises(ApiException) as e:
        apps.replace_namespaced_deployment("bar", ns, d)
    assert json.loads(e.value.body)["message"] == (
        'Operation cannot be fulfilled on deployments.apps "bar": the object has been modified; please apply your '
        'changes to the latest version and try again')


def test_generate_name_and_pagination(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    made = [core.create_namespaced_config_map(ns, {"metadata": {"generateName": "page-"}, "data": {}})
            for _ in range(7)]
    names = [m.metadata.name for m in made]
    assert len(set(names)) == 7 and all(n.startswith("page-") and len(n) == 10 for n in names)
    seen, token, pages = [], None, 0
    while True:
        res = core.list_namespaced_config_map(ns, limit=3, _continue=token)
        pages += 1
        seen += [i.metadata.name for i in res.items]
        token = res.metadata._continue
        if not token:
            break
        assert res.metadata.remaining_item_count == 7 - len(seen)
    assert pages == 3 and seen == sorted(names)


def test_status_subresource_separates_spec_and_status(shared_sim, ns):
    # A HorizontalPodAutoscaler: no simulated controller writes its status meanwhile (PodDisruptionBudgets have
    # the disruption controller, kubesim.ambient).
    hpa = client.AutoscalingV2Api(shared_sim.client())
    hpa.create_namespaced_horizontal_pod_autoscaler(ns, {"metadata": {"name": "hpa"}, "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"}, "minReplicas": 1,
        "maxReplicas": 3}})
    status = {"observedGeneration": 42, "currentReplicas": 1, "desiredReplicas": 2}
    # status written through the main resource is ignored
    hpa.patch_namespaced_horizontal_pod_autoscaler("hpa", ns, {"status": status})
    got = hpa.read_namespaced_horizontal_pod_autoscaler("hpa", ns)
    assert got.status is None or got.status.observed_generation != 42
    # status written through /status sticks, and spec changes there are ignored
    hpa.patch_namespaced_horizontal_pod_autoscaler_status("hpa", ns, {"status": status, "spec": {"maxReplicas": 9}})
    got = hpa.read_namespaced_horizontal_pod_autoscaler("hpa", ns)
    assert got.status.observed_generation == 42 and got.spec.max_replicas == 3


def test_scale_subresource(shared_sim, ns):
    apps = client.AppsV1Api(shared_sim.client())
    apps.create_namespaced_deployment(ns, _deploy("sc", replicas=1))
    scale = apps.read_namespaced_deployment_scale("sc", ns)
    assert scale.spec.replicas == 1 and scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", ns, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("sc", ns).spec.replicas == 4


def test_dynamic_client_and_crds(shared_sim, ns):
    dyn = DynamicClient(shared_sim.client())
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.example.com"},
           "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wg"]},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": {"type": "object",
                                                                 "x-kubernetes-preserve-unknown-fields": True}},
                                  "subresources": {"status": {}}}]}}
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    created = crds.create(body=crd)
    assert [c["type"] for c in created.status.conditions] == ["NamesAccepted", "Established"]
    dyn = DynamicClient(shared_sim.client())  # fresh discovery sees the new kind
    widgets = dyn.resources.get(api_version="example.com/v1", kind="Widget")
    w = widgets.create(namespace=ns, body={"apiVersion": "example.com/v1", "kind": "Widget",
                                           "metadata": {"name": "w1", "labels": {"color": "blue"}},
                                           "spec": {"size": 3}})
    assert w.metadata.generation == 1
    got = widgets.get(namespace=ns, name="w1")
    assert got.spec.size == 3
    assert [i.metadata.name for i in widgets.get(namespace=ns, label_selector="color=blue").items] == ["w1"]
    patched = widgets.patch(namespace=ns, name="w1", body={"spec": {"size": 4}},
                            content_type="application/merge-patch+json")
    assert patched.spec.size == 4 and patched.metadata.generation == 2
    # strategic merge is not supported for custom resources (real behaviour: 415)
    with pytest.raises(Exception) as e:
        widgets.patch(namespace=ns, name="w1", body={"spec": {"size": 5}},
                      content_type="application/strategic-merge-patch+json")
    assert getattr(e.value, "status", None) == 415
    crds.delete(name="widgets.example.com")
    with pytest.raises(Exception):
        client.CustomObjectsApi(shared_sim.client()).get_namespaced_custom_object("example.com", "v1", ns,
                                                                                  "widgets", "w1")
    code, _, _ = shared_sim.request("GET", "/apis/example.com/v1")
    assert code == 404  # the group is no longer served


def test_dynamic_client_core_resources(shared_sim, ns):
    dyn = DynamicClient(shared_sim.client())
    svc = dyn.resources.get(api_version="v1", kind="Service")
    s = svc.create(namespace=ns, body={"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert s.spec.clusterIP and s.spec.ports[0].targetPort == 80 and s.spec.type == "ClusterIP"
    with pytest.raises(NotFoundError):
        svc.get(namespace=ns, name="missing")


def test_selfsubjectaccessreview_without_rules_allows(shared_sim):
    authz = client.AuthorizationV1Api(shared_sim.client())
    r = authz.create_self_subject_access_review({"spec": {"resourceAttributes": {
        "verb": "delete", "group": "apps", "resource": "deployments", "namespace": "default"}}})
    assert r.status.allowed is True


def test_pagination_with_selector_and_cluster_scope(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    for i in range(5):
        core.create_namespaced_config_map(ns, _cm(f"sel-{i}", {"pick": "yes" if i % 2 == 0 else "no"}))
    first = core.list_namespaced_config_map(ns, label_selector="pick=yes", limit=2)
    assert [i.metadata.name for i in first.items] == ["sel-0", "sel-2"]
    assert first.metadata._continue and first.metadata.remaining_item_count is None  # unknown with selectors
    second = core.list_namespaced_config_map(ns, label_selector="pick=yes", limit=2, _continue=first.metadata._continue)
    assert [i.metadata.name for i in second.items] == ["sel-4"] and not second.metadata._continue
    assert second.metadata.resource_version == first.metadata.resource_version
    # cluster-scoped resources page too
    names, token = [], None
    while True:
        page = core.list_namespace(limit=2, _continue=token)
        names += [n.metadata.name for n in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert names == sorted(n.metadata.name for n in core.list_namespace().items)
