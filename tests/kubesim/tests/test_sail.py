"""The Sail operator (feature ``sail-operator``) and scenario ``sail``, driven with the real kubectl and the
kubernetes Python client; every assertion reads what the simulated cluster holds afterwards."""

from __future__ import annotations

import base64
import gzip
import json
import time

import pytest

OLD, NEW = "default-v1-29-6", "default-v1-30-3"


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def live_pods(sim, ns):
    return [p for p in kjson(sim, "get", "pods", "-n", ns)["items"] if not p["metadata"].get("deletionTimestamp")]


def revisions(sim):
    return {r["metadata"]["name"]: r for r in kjson(sim, "get", "istiorevisions")["items"]}


def patch_istio(sim, spec):
    sim.kubectl("patch", "istio", "default", "--type=merge", "-p", json.dumps({"spec": spec}), check=True)


def ready_revision(sim, name):
    r = revisions(sim).get(name)
    return r is not None and (cond(r, "Ready") or {}).get("status") == "True" and r


def restart_everything(sim):
    """What the collection's waves do: every workload kind in foo, bar, baz and the gateway."""
    for ns in ("foo", "bar", "baz", "istio-ingress"):
        sim.kubectl("rollout", "restart", "deployment", "-n", ns, check=True)
    sim.kubectl("patch", "rollout", "reviews", "-n", "baz", "--type=merge", "-p", json.dumps(
        {"spec": {"restartAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}), check=True)
    code, _, body = sim.request("POST", "/apis/apps.openshift.io/v1/namespaces/bar/deploymentconfigs/ratings/"
                                        "instantiate", {"kind": "DeploymentRequest", "apiVersion": "apps.openshift.io/v1",
                                                        "name": "ratings", "latest": True, "force": True})
    assert code == 201, body


def injected_by(pod):
    return (pod["metadata"].get("annotations") or {}).get("istio.io/rev")


@pytest.fixture(scope="module")
def sail():
    from kubesim.testing import KubeSim

    sim = KubeSim("sail", pod_ready_seconds=0.2)
    sim.start()
    yield sim
    sim.cleanup()


@pytest.fixture
def fresh_sail():
    from kubesim.testing import KubeSim

    sim = KubeSim("sail", pod_ready_seconds=0.2)
    sim.start()
    yield sim
    sim.cleanup()


def test_scenario_sail_starts_as_a_running_sail_managed_mesh(sail):
    sim = sail
    istio = kjson(sim, "get", "istio", "default")
    assert istio["spec"]["version"] == "v1.29.6" and istio["spec"]["updateStrategy"]["type"] == "RevisionBased"
    st = istio["status"]
    assert st["activeRevisionName"] == OLD and st["state"] == "Healthy"
    assert st["revisions"] == {"total": 1, "ready": 1, "inUse": 1}
    assert {c["type"]: c["status"] for c in st["conditions"]} == {"Reconciled": "True", "Ready": "True",
                                                                  "DependenciesHealthy": "True"}
    rev = revisions(sim)[OLD]
    assert rev["spec"]["version"] == "v1.29.6" and rev["spec"]["namespace"] == "istio-system"
    assert rev["spec"]["values"]["revision"] == OLD and rev["spec"]["values"]["global"]["platform"] == "openshift"
    assert rev["metadata"]["ownerReferences"][0]["kind"] == "Istio"
    assert rev["metadata"]["finalizers"] == ["sailoperator.io/sail-operator"]
    assert cond(rev, "InUse")["reason"] == "ReferencedByWorkloads"
    tag = kjson(sim, "get", "istiorevisiontag", "default")
    assert (tag["status"]["istioRevision"], tag["status"]["istiodNamespace"], tag["status"]["state"]) == (
        OLD, "istio-system", "Healthy")
    assert kjson(sim, "get", "istiocni", "default")["status"]["state"] == "Healthy"
    # kubectl columns of the CRDs (printer columns, including the condition filters)
    lines = sim.kubectl("get", "istiorev", check=True).stdout.splitlines()
    assert lines[0].split() == ["NAME", "NAMESPACE", "PROFILE", "READY", "STATUS", "IN", "USE", "VERSION", "AGE"]
    assert lines[1].split()[:5] == [OLD, "istio-system", "True", "Healthy", "True"]
    assert sim.kubectl("get", "istiorevtag", check=True).stdout.splitlines()[1].split()[:4] == [
        "default", "Healthy", "True", OLD]
    # the kubernetes Python client's dynamic client reads them like any custom resource
    api = sim.dynamic().resources.get(api_version="sailoperator.io/v1", kind="Istio")
    assert api.get(name="default").status.activeRevisionName == OLD


def test_revision_objects_are_named_labelled_and_owned_as_sail_renders_them(sail):
    sim = sail
    uid = revisions(sim)[OLD]["metadata"]["uid"]
    release = f"{OLD}-istiod"
    owned = {
        ("deployment", "istio-system", f"istiod-{OLD}"), ("service", "istio-system", f"istiod-{OLD}"),
        ("serviceaccount", "istio-system", f"istiod-{OLD}"), ("configmap", "istio-system", f"istio-{OLD}"),
        ("configmap", "istio-system", f"istio-sidecar-injector-{OLD}"), ("pdb", "istio-system", f"istiod-{OLD}"),
        ("mutatingwebhookconfiguration", None, f"istio-sidecar-injector-{OLD}"),
        ("validatingwebhookconfiguration", None, f"istio-validator-{OLD}-istio-system"),
        ("clusterrole", None, f"istiod-clusterrole-{OLD}-istio-system"),
        ("clusterrolebinding", None, f"istiod-gateway-controller-{OLD}-istio-system"),
        ("role", "istio-system", f"istiod-{OLD}"), ("rolebinding", "istio-system", f"istiod-{OLD}")}
    for kind, ns, name in owned:
        obj = kjson(sim, "get", kind, name, *(["-n", ns] if ns else []))
        meta = obj["metadata"]
        assert [(r["kind"], r["uid"], r["controller"]) for r in meta["ownerReferences"]] == [
            ("IstioRevision", uid, True)], name
        assert meta["labels"]["managed-by"] == "sail-operator", name
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        assert meta["annotations"]["meta.helm.sh/release-name"] == release, name
    dep = kjson(sim, "get", "deployment", f"istiod-{OLD}", "-n", "istio-system")
    assert dep["metadata"]["labels"]["istio.io/rev"] == OLD and dep["metadata"]["labels"]["release"] == release
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.istio.io/release/pilot:1.29.6"
    secret = kjson(sim, "get", "secret", f"sh.helm.release.v1.{release}.v1", "-n", "istio-system")
    assert secret["type"] == "helm.sh/release.v1" and secret["metadata"]["labels"]["status"] == "deployed"
    payload = json.loads(gzip.decompress(base64.b64decode(base64.b64decode(secret["data"]["release"]))))
    assert payload["name"] == release and payload["chart"]["metadata"]["name"] == "istiod"
    # the tag: revisiontags chart (webhook + Service) and, for `default`, the base chart's default validator
    tag_uid = kjson(sim, "get", "istiorevisiontag", "default")["metadata"]["uid"]
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-default")
    assert mwc["metadata"]["labels"]["istio.io/tag"] == "default" and mwc["metadata"]["labels"]["istio.io/rev"] == OLD
    assert [w["name"] for w in mwc["webhooks"]] == [
        "rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io",
        "namespace.sidecar-injector.istio.io", "object.sidecar-injector.istio.io"]
    assert {w["clientConfig"]["service"]["name"] for w in mwc["webhooks"]} == {f"istiod-{OLD}"}
    assert mwc["metadata"]["ownerReferences"][0]["uid"] == tag_uid
    svc = kjson(sim, "get", "service", "istiod-revision-tag-default", "-n", "istio-system")
    assert svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": OLD}
    vwc = kjson(sim, "get", "validatingwebhookconfiguration", "istiod-default-validator")
    assert vwc["metadata"]["labels"]["istio.io/rev"] == OLD
    assert vwc["webhooks"][0]["clientConfig"]["service"]["name"] == f"istiod-{OLD}"
    assert vwc["metadata"]["annotations"]["meta.helm.sh/release-name"] == "default-base"


def test_workloads_of_every_kind_are_injected_through_the_tag(sail):
    sim = sail
    kinds = {}
    for ns in ("foo", "bar", "baz"):
        for p in live_pods(sim, ns):
            if p["metadata"].get("labels", {}).get("openshift.io/deployer-pod-for.name"):
                assert p["status"]["phase"] == "Succeeded" and not injected_by(p)
                continue
            assert injected_by(p) == OLD, p["metadata"]["name"]
            proxy = next(c for c in p["spec"]["containers"] if c["name"] == "istio-proxy")
            assert proxy["image"] == "registry.istio.io/release/proxyv2:1.29.6"
            env = {e["name"]: e.get("value") for e in proxy["env"]}
            kinds[env["ISTIO_META_OWNER"].split("/")[-2]] = env["ISTIO_META_WORKLOAD_NAME"]
    assert kinds == {"deployments": kinds["deployments"], "deploymentconfigs": "ratings", "rollouts": "reviews"}
    assert kjson(sim, "get", "dc", "ratings", "-n", "bar")["status"]["latestVersion"] == 1
    assert kjson(sim, "get", "rollout", "reviews", "-n", "baz")["status"]["phase"] == "Healthy"


def test_version_change_new_revision_tag_follows_old_one_deleted_after_grace_once_unused(fresh_sail):
    sim = fresh_sail
    patch_istio(sim, {"version": "v1.30.3", "updateStrategy": {"inactiveRevisionDeletionGracePeriodSeconds": 3}})
    new = sim.wait_for(lambda: ready_revision(sim, NEW), timeout=60, message="new revision ready")
    assert new["spec"]["version"] == "v1.30.3" and new["spec"]["values"]["revision"] == NEW
    assert kjson(sim, "get", "deployment", f"istiod-{NEW}", "-n", "istio-system")["spec"]["template"]["spec"][
        "containers"][0]["image"] == "registry.istio.io/release/pilot:1.30.3"
    istio = sim.wait_for(lambda: (lambda i: i["status"].get("activeRevisionName") == NEW and
                                  i["status"]["revisions"]["total"] == 2 and i)(kjson(sim, "get", "istio", "default")),
                         timeout=60, message="istio status")
    assert istio["status"]["state"] == "Healthy"
    tag = sim.wait_for(lambda: (lambda t: t["status"]["istioRevision"] == NEW and t)(
        kjson(sim, "get", "istiorevisiontag", "default")), timeout=60, message="tag follows the Istio")
    assert tag["status"]["istiodNamespace"] == "istio-system"
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-default")
    assert mwc["metadata"]["labels"]["istio.io/rev"] == NEW
    assert {w["clientConfig"]["service"]["name"] for w in mwc["webhooks"]} == {f"istiod-{NEW}"}
    assert kjson(sim, "get", "service", "istiod-revision-tag-default", "-n", "istio-system")["spec"]["selector"][
        "istio.io/rev"] == NEW
    # the old revision stays while pods it injected run
    time.sleep(4)
    old = revisions(sim)[OLD]
    assert cond(old, "InUse")["status"] == "True" and not old["metadata"].get("deletionTimestamp")
    # a namespace naming the old revision keeps it in use even once every pod moved
    sim.kubectl("create", "namespace", "pinned", check=True)
    sim.kubectl("label", "namespace", "pinned", f"istio.io/rev={OLD}", check=True)
    restart_everything(sim)

    def all_moved():
        pods = [p for ns in ("foo", "bar", "baz", "istio-ingress") for p in live_pods(sim, ns)
                if p["status"].get("phase") != "Succeeded"]
        return all(injected_by(p) == NEW for p in pods) and pods
    sim.wait_for(all_moved, timeout=120, message="every workload restarted onto the new revision")
    time.sleep(4)
    old = revisions(sim).get(OLD)
    assert old is not None and cond(old, "InUse")["status"] == "True"
    sim.kubectl("label", "namespace", "pinned", "istio.io/rev-", check=True)
    unused = sim.wait_for(lambda: (lambda r: r and cond(r, "InUse")["status"] == "False" and r)(
        revisions(sim).get(OLD)), timeout=60, message="old revision no longer in use")
    assert cond(unused, "InUse")["reason"] == "NotReferencedByAnything"
    assert not unused["metadata"].get("deletionTimestamp")       # the grace period runs from here
    sim.wait_for(lambda: OLD not in revisions(sim), timeout=60, message="old revision deleted after the grace")
    sim.wait_for(lambda: sim.kubectl("get", "deployment", f"istiod-{OLD}", "-n", "istio-system").returncode != 0,
                 timeout=60, message="its release uninstalled")
    assert sim.kubectl("get", "mutatingwebhookconfiguration", f"istio-sidecar-injector-{OLD}").returncode != 0
    assert sim.kubectl("get", "secret", f"sh.helm.release.v1.{OLD}-istiod.v1", "-n", "istio-system").returncode != 0
    istio = sim.wait_for(lambda: (lambda i: i["status"]["revisions"]["total"] == 1 and i)(
        kjson(sim, "get", "istio", "default")), timeout=60, message="istio status")
    assert istio["status"]["revisions"] == {"total": 1, "ready": 1, "inUse": 1}


def test_failed_pods_keep_a_revision_in_use_succeeded_ones_do_not(fresh_sail):
    from kubernetes import client

    sim = fresh_sail
    core = client.CoreV1Api(sim.client())
    core.create_namespaced_pod("foo", {"metadata": {"name": "job-pod", "labels": {"app": "job"}},
                                       "spec": {"restartPolicy": "Never",
                                                "containers": [{"name": "job", "image": "busybox:1.36"}]}})
    pod = sim.wait_for(lambda: (lambda p: p.status.phase == "Running" and p)(core.read_namespaced_pod("job-pod", "foo")),
                       timeout=60, message="job pod running")
    assert pod.metadata.annotations["istio.io/rev"] == OLD
    patch_istio(sim, {"version": "v1.30.3", "updateStrategy": {"inactiveRevisionDeletionGracePeriodSeconds": 1}})
    sim.wait_for(lambda: kjson(sim, "get", "istiorevisiontag", "default")["status"]["istioRevision"] == NEW,
                 timeout=60, message="tag follows")
    core.patch_namespaced_pod_status("job-pod", "foo", {"status": {"phase": "Failed"}})
    restart_everything(sim)
    sim.wait_for(lambda: all(injected_by(p) == NEW for ns in ("foo", "bar", "baz", "istio-ingress")
                             for p in live_pods(sim, ns) if p["metadata"]["name"] != "job-pod"
                             and p["status"].get("phase") != "Succeeded"), timeout=120, message="restarted")
    time.sleep(4)
    old = revisions(sim).get(OLD)
    assert old is not None and cond(old, "InUse")["status"] == "True"    # sail-operator issue #2100
    # Succeeded pods do not count (#839); a status-only change is not watched, the next pod event is
    core.patch_namespaced_pod_status("job-pod", "foo", {"status": {"phase": "Succeeded"}})
    time.sleep(2)
    assert cond(revisions(sim)[OLD], "InUse")["status"] == "True"
    core.patch_namespaced_pod("job-pod", "foo", {"metadata": {"labels": {"done": "yes"}}})
    sim.wait_for(lambda: OLD not in revisions(sim), timeout=60, message="old revision pruned")


def test_pinned_tag_and_sail_reverting_edits(fresh_sail):
    sim = fresh_sail
    sim.kubectl("apply", "-f", "-", check=True, input=json.dumps({
        "apiVersion": "sailoperator.io/v1", "kind": "IstioRevisionTag", "metadata": {"name": "stable"},
        "spec": {"targetRef": {"kind": "IstioRevision", "name": OLD}}}))
    sim.wait_for(lambda: (kjson(sim, "get", "istiorevisiontag", "stable").get("status") or {}).get(
        "istioRevision") == OLD, timeout=60, message="pinned tag")
    assert kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-stable")["webhooks"][0][
        "clientConfig"]["service"]["name"] == f"istiod-{OLD}"
    # edits to what Sail renders are reverted by its next reconcile; deleted objects come back
    ops = [{"op": "replace", "path": "/webhooks/0/clientConfig/service/name", "value": "istiod-elsewhere"}]
    sim.kubectl("patch", "mutatingwebhookconfiguration", "istio-revision-tag-default", "--type=json", "-p",
                json.dumps(ops), check=True)
    sim.wait_for(lambda: kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-default")[
        "webhooks"][0]["clientConfig"]["service"]["name"] == f"istiod-{OLD}", timeout=60, message="reverted")
    sim.kubectl("delete", "service", f"istiod-{OLD}", "-n", "istio-system", check=True)
    sim.wait_for(lambda: sim.kubectl("get", "service", f"istiod-{OLD}", "-n", "istio-system").returncode == 0,
                 timeout=60, message="recreated")
    patch_istio(sim, {"version": "v1.30.3", "updateStrategy": {"inactiveRevisionDeletionGracePeriodSeconds": 1}})
    sim.wait_for(lambda: kjson(sim, "get", "istiorevisiontag", "default")["status"]["istioRevision"] == NEW,
                 timeout=60, message="default tag follows")
    restart_everything(sim)
    time.sleep(6)
    old = revisions(sim).get(OLD)                                          # the pinned tag keeps it
    assert old is not None and cond(old, "InUse")["status"] == "True"
    assert kjson(sim, "get", "istiorevisiontag", "stable")["status"]["istioRevision"] == OLD
    sim.kubectl("delete", "istiorevisiontag", "stable", check=True)
    sim.wait_for(lambda: OLD not in revisions(sim), timeout=90, message="pruned once the pinned tag is gone")
    assert sim.kubectl("get", "mutatingwebhookconfiguration", "istio-revision-tag-stable").returncode != 0


def test_api_refuses_what_sail_crds_refuse(sail):
    sim = sail
    cp = sim.kubectl("patch", "istio", "default", "--type=merge", "-p", '{"spec":{"namespace":"other"}}')
    assert cp.returncode != 0 and "Value is immutable" in cp.stderr
    cp = sim.kubectl("patch", "istio", "default", "--type=merge", "-p", '{"spec":{"version":"v1.2.3"}}')
    assert cp.returncode != 0 and "Unsupported value" in cp.stderr
    cp = sim.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "sailoperator.io/v1", "kind": "IstioRevisionTag", "metadata": {"name": "x"},
        "spec": {"targetRef": {"kind": "Deployment", "name": "y"}}}))
    assert cp.returncode != 0 and "supported values" in cp.stderr
    assert kjson(sim, "get", "istio", "default")["spec"]["namespace"] == "istio-system"
