"""Injection and webhook admission, in-process (Store + admission + controllers, no HTTP)."""

from __future__ import annotations

import json
import time

import pytest

from kubesim import admission, controllers, istio, scenarios
from kubesim.errors import ApiError
from kubesim.options import SimOptions
from kubesim.store import Store

MWC = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
VWC = "validatingwebhookconfigurations.admissionregistration.k8s.io"


class Cluster:
    def __init__(self, scenario, **opts):
        self.options = SimOptions(scenario=scenario, pod_ready_seconds=opts.pop("pod_ready_seconds", 0.05), **opts)
        self.store = Store(self.options)
        admission.install(self.store, self.options)
        for obj in scenarios.load_scenario(scenario, self.options):
            self.create(obj)
        self.cm = controllers.ControllerManager(self.store, self.options).start()

    def create(self, obj):
        rt = self.store.registry.by_kind(obj["apiVersion"], obj["kind"])
        return self.store.create(rt, obj, reset_status=False)

    def pod(self, ns, name, labels=None, annotations=None, containers=None):
        return self.store.create("pods", {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}, "annotations": annotations or {}},
            "spec": {"containers": containers or [{"name": "app", "image": "docker.io/library/nginx:1.23"}]}})

    def wait(self, pred, timeout=10.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = pred()
            if v:
                return v
            time.sleep(0.02)
        raise AssertionError("timed out")

    def close(self):
        self.cm.stop()


@pytest.fixture
def blog():
    c = Cluster("blog")
    yield c
    c.close()


@pytest.fixture
def legacy():
    c = Cluster("legacy")
    yield c
    c.close()


def proxy(pod):
    return next((c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"), None)


def status(pod):
    return json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])


# ------------------------------------------------------------------------------------ pure model

def test_tag_webhooks_have_istio_shapes():
    mwc = istio.tag_mwc("default", "1-15-4")
    assert mwc["metadata"]["name"] == "istio-revision-tag-default"
    assert mwc["metadata"]["labels"]["istio.io/tag"] == "default"
    assert mwc["metadata"]["labels"]["istio.io/rev"] == "1-15-4"
    whs = {w["name"]: w for w in mwc["webhooks"]}
    assert list(whs) == ["rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io",
                         "namespace.sidecar-injector.istio.io", "object.sidecar-injector.istio.io"]
    for w in whs.values():
        assert w["clientConfig"]["service"] == {"name": "istiod-1-15-4", "namespace": "istio-system",
                                                "path": "/inject", "port": 443}
        assert w["failurePolicy"] == "Fail" and w["sideEffects"] == "None"
        assert w["rules"][0]["operations"] == ["CREATE"] and w["rules"][0]["resources"] == ["pods"]
    assert whs["rev.namespace.sidecar-injector.istio.io"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "istio.io/rev", "operator": "In", "values": ["default"]},
        {"key": "istio-injection", "operator": "DoesNotExist"}]
    assert whs["object.sidecar-injector.istio.io"]["objectSelector"]["matchExpressions"] == [
        {"key": "sidecar.istio.io/inject", "operator": "In", "values": ["true"]},
        {"key": "istio.io/rev", "operator": "DoesNotExist"}]
    # a non-default tag has only the two revision webhooks and selects the tag name
    canary = istio.tag_mwc("canary", "1-15-4")
    assert [w["name"] for w in canary["webhooks"]] == ["rev.namespace.sidecar-injector.istio.io",
                                                       "rev.object.sidecar-injector.istio.io"]
    assert canary["webhooks"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["canary"]


def test_dns1123_revision_names():
    assert istio.is_dns1123_label("1-15-4")
    assert not istio.is_dns1123_label("1.15.4")
    assert not istio.is_dns1123_label("Canary")
    assert not istio.is_dns1123_label("-a")
    assert not istio.is_dns1123_label("a" * 64)


def test_inject_pod_sidecar_and_gateway_templates():
    pod = {"metadata": {"name": "x", "namespace": "foo", "labels": {"app": "x", "version": "v2"}},
           "spec": {"containers": [{"name": "x", "image": "img", "ports": [{"containerPort": 80}]}]}}
    out = istio.inject_pod(pod, version="1.15.4", revision="1-15-4", istiod="istiod-1-15-4")
    assert [c["name"] for c in out["spec"]["containers"]] == ["x", "istio-proxy"]
    assert out["spec"]["initContainers"][0]["name"] == "istio-init"
    assert status(out)["revision"] == "1-15-4" and status(out)["initContainers"] == ["istio-init"]
    assert out["metadata"]["labels"]["service.istio.io/canonical-revision"] == "v2"
    assert out["metadata"]["labels"]["istio.io/rev"] == "1-15-4"
    assert "sidecar.istio.io/status" not in pod.get("metadata", {}).get("annotations", {})  # input untouched
    # idempotent: a second webhook does not inject twice
    assert istio.inject_pod(out, version="1.14.6", revision="1-14-6", istiod="istiod-1-14-6") is out
    gw = {"metadata": {"name": "gw", "namespace": "istio-ingress",
                       "annotations": {"inject.istio.io/templates": "gateway"}},
          "spec": {"containers": [{"name": "istio-proxy", "image": "auto"}]}}
    out = istio.inject_pod(gw, version="1.15.4", revision="default", istiod="istiod")
    assert [c["image"] for c in out["spec"]["containers"]] == ["docker.io/istio/proxyv2:1.15.4"]
    assert "initContainers" not in out["spec"]
    assert status(out)["initContainers"] is None


# ------------------------------------------------------------------------------------ admission

def test_blog_pods_were_injected_through_the_tag(blog):
    for ns in ("foo", "bar", "baz", "istio-ingress"):
        pods = blog.store.list("pods", ns)
        assert pods
        for p in pods:
            assert proxy(p)["image"] == "docker.io/istio/proxyv2:1.14.6"
            assert status(p)["revision"] == "1-14-6"
            env = {e["name"]: e.get("value") for e in proxy(p)["env"]}
            assert env["CA_ADDR"] == "istiod-1-14-6.istio-system.svc:15012"
    gw = blog.store.list("pods", "istio-ingress")[0]
    assert [c["name"] for c in gw["spec"]["containers"]] == ["istio-proxy"]
    assert not gw["spec"].get("initContainers")


def test_opt_out_label_and_unlabelled_namespace(blog):
    p = blog.pod("foo", "optout", labels={"sidecar.istio.io/inject": "false"})
    assert proxy(p) is None
    p = blog.pod("default", "plain")
    assert proxy(p) is None
    # object selector: a pod asking for a revision in an unlabelled namespace
    p = blog.pod("default", "byrev", labels={"istio.io/rev": "1-14-6"})
    assert status(p)["revision"] == "1-14-6"
    # ... or for the default tag via sidecar.istio.io/inject=true
    p = blog.pod("default", "bytag", labels={"sidecar.istio.io/inject": "true"})
    assert status(p)["revision"] == "1-14-6"


def test_revision_label_on_namespace_selects_the_revision_webhook(blog):
    for obj in istio.control_plane_objects("1-15-4", "1.15.4"):
        blog.create(obj)
    blog.create(scenarios.namespace_object("canary", {"istio.io/rev": "1-15-4"}))
    # the new istiod must be Ready before its webhook can answer
    with pytest.raises(ApiError) as ei:
        blog.pod("canary", "early")
    assert 'no endpoints available for service "istiod-1-15-4"' in ei.value.message
    assert ei.value.code == 500
    blog.wait(lambda: ((blog.store.try_get("endpoints", "istio-system", "istiod-1-15-4") or {}).get("subsets")
                       or [{}])[0].get("addresses"))
    p = blog.pod("canary", "late")
    assert proxy(p)["image"] == "docker.io/istio/proxyv2:1.15.4" and status(p)["revision"] == "1-15-4"


def test_legacy_istio_injection_label_wins_over_rev(legacy):
    for ns in ("foo", "bar", "baz", "istio-ingress"):
        for p in legacy.store.list("pods", ns):
            assert proxy(p)["image"] == "docker.io/istio/proxyv2:1.14.6"
            assert status(p)["revision"] == "default"
            env = {e["name"]: e.get("value") for e in proxy(p)["env"]}
            assert env["CA_ADDR"] == "istiod.istio-system.svc:15012"
    ns = legacy.store.get("namespaces", None, "foo")
    ns["metadata"]["labels"]["istio.io/rev"] = "1-15-4"   # no such revision: ignored, istio-injection wins
    legacy.store.update("namespaces", ns)
    p = legacy.pod("foo", "both")
    assert status(p)["revision"] == "default"


def test_failure_policy_ignore_admits_uninjected(blog):
    cfg = blog.store.get(MWC, None, "istio-revision-tag-default")
    for w in cfg["webhooks"]:
        w["failurePolicy"] = "Ignore"
        w["clientConfig"]["service"]["name"] = "istiod-gone"
    blog.store.update(MWC, cfg)
    p = blog.pod("bar", "ignored")
    assert proxy(p) is None


def test_validating_webhook_follows_service(blog):
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
          "metadata": {"name": "r", "namespace": "bar"}, "spec": {"hosts": ["bar"]}}
    blog.store.create("virtualservices.networking.istio.io", vs)
    with pytest.raises(ApiError) as ei:
        blog.store.create("virtualservices.networking.istio.io",
                          dict(vs, metadata={"name": "bad", "namespace": "bar"}, spec={}))
    assert ei.value.message == ('admission webhook "validation.istio.io" denied the request: configuration is '
                                'invalid: virtual service must have at least one host')
    blog.store.delete("services", "istiod-1-14-6", "istio-system")
    with pytest.raises(ApiError) as ei:
        blog.store.create("virtualservices.networking.istio.io", dict(vs, metadata={"name": "r2", "namespace": "bar"}))
    assert ei.value.message == ('Internal error occurred: failed calling webhook "validation.istio.io": failed to '
                                'call webhook: Post "https://istiod-1-14-6.istio-system.svc:443/validate?timeout=10s": '
                                'service "istiod-1-14-6" not found')
    # objects pinned to a revision go through that revision's validator only
    pinned = dict(vs, metadata={"name": "r3", "namespace": "bar", "labels": {"istio.io/rev": "other"}})
    blog.store.create("virtualservices.networking.istio.io", pinned)
    # dry-run create runs admission too
    with pytest.raises(ApiError):
        blog.store.create("virtualservices.networking.istio.io",
                          dict(vs, metadata={"name": "r4", "namespace": "bar"}), dry_run=True)
