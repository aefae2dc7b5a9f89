"""Istio 1.2x in the simulator: native sidecars and their crash loops, the auto. webhook, istiod's webhook
controller (validators Fail once it serves; an orphaned validator rejects config), and the stand-in istioctl
at 1.28+ (tag Services, precheck --from-version -o json, proxy-status, uninstall pruning)."""

from __future__ import annotations

import json
import subprocess

import helm_python  # noqa: F401  (make venv installs it: a missing SDK must fail, not skip)
import pytest

from kubesim import istio
from kubesim.helm_scenario import CHARTS_DIR, HELM_BIN
from kubesim.testing import BIN_DIR, KubeSim


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def run(sim, binary, *args, version=None, check=True):
    env = sim.kubectl_env()
    if version:
        env["KUBESIM_ISTIOCTL_VERSION"] = version
    cp = subprocess.run([str(binary), *map(str, args)], env=env, capture_output=True, text=True, timeout=300)
    if check and cp.returncode != 0:
        raise AssertionError(f"{binary.name} {' '.join(map(str, args))} failed ({cp.returncode}):\n{cp.stdout}\n"
                             f"{cp.stderr}")
    return cp


def istioctl(sim, *args, version="1.29.6", check=True):
    return run(sim, BIN_DIR / "istioctl", *args, version=version, check=check)


def helm(sim, *args, check=True):
    return run(sim, HELM_BIN, *args, check=check)


@pytest.fixture(scope="module")
def helm_sim():
    sim = KubeSim("helm", pod_ready_seconds=0.2)
    sim.start()
    yield sim
    sim.cleanup()


def pod(ns, name, labels=None, annotations=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {"app": name},
                         "annotations": annotations or {}},
            "spec": {"containers": [{"name": "app", "image": "docker.io/library/nginx:1.27"}]}}


# ------------------------------------------------------------------------------------------ native sidecars

@pytest.mark.parametrize("version,env,kubelets,annotation,native", [
    ("1.29.6", {}, ["v1.33.2", "v1.33.2"], None, True),
    ("1.29.6", {}, ["v1.33.2", "v1.32.0"], None, False),        # one old node: off (unscheduled pod)
    ("1.27.0", {}, ["v1.33.0"], None, True),                      # auto since 1.27
    ("1.26.3", {}, ["v1.33.0"], None, False),                     # opt-in before 1.27
    ("1.26.3", {"ENABLE_NATIVE_SIDECARS": "true"}, ["v1.30.0"], None, True),
    ("1.29.6", {"ENABLE_NATIVE_SIDECARS": "false"}, ["v1.33.2"], None, False),
    ("1.29.6", {}, ["v1.33.2"], "false", False),
    ("1.29.6", {}, ["v1.31.0"], "true", True),
])
def test_native_sidecar_rule(version, env, kubelets, annotation, native):
    p = pod("ns", "x", annotations={"sidecar.istio.io/nativeSidecar": annotation} if annotation else None)
    nodes = {f"n{i}": v for i, v in enumerate(kubelets)}
    assert istio.native_sidecars(version, env, p, nodes) is native


def test_native_sidecar_rule_uses_the_pods_node():
    p = pod("ns", "x")
    p["spec"]["nodeName"] = "new"
    assert istio.native_sidecars("1.29.6", {}, p, {"new": "v1.33.1", "old": "v1.31.0"}) is True


def test_annotation_opts_a_pod_out_of_native_sidecars(helm_sim):
    sim = helm_sim
    sim.kubectl("create", "namespace", "classic", check=True)
    sim.kubectl("label", "namespace", "classic", "istio.io/rev=default", check=True)
    sim.kubectl("apply", "-f", "-", input=json.dumps(pod("classic", "c", annotations={
        "sidecar.istio.io/nativeSidecar": "false"})), check=True)
    p = kjson(sim, "get", "pod", "c", "-n", "classic")
    assert [c["name"] for c in p["spec"]["containers"]] == ["app", "istio-proxy"]
    assert [c["name"] for c in p["spec"]["initContainers"]] == ["istio-init"]


def test_crashing_native_sidecar_keeps_pod_initializing(kubesim_factory):
    sim = kubesim_factory("helm", pod_ready_seconds=0.2, crash_proxy_version=["1.29.6"])
    table = sim.kubectl("get", "pods", "-n", "foo", check=True).stdout
    rows = [line.split() for line in table.splitlines()[1:]]
    assert rows and all(r[1] == "0/2" and r[2] == "Init:CrashLoopBackOff" for r in rows)
    p = kjson(sim, "get", "pods", "-n", "foo")["items"][0]
    assert p["status"]["phase"] == "Pending"
    init = {c["type"]: c for c in p["status"]["conditions"]}["Initialized"]
    assert init["status"] == "False" and "[istio-proxy]" in init["message"]
    proxy = next(c for c in p["status"]["initContainerStatuses"] if c["name"] == "istio-proxy")
    assert proxy["state"]["waiting"]["reason"] == "CrashLoopBackOff" and proxy["restartCount"] >= 1
    assert all(c["state"]["waiting"]["reason"] == "PodInitializing" for c in p["status"]["containerStatuses"])


# ------------------------------------------------------------------------------------------ auto. webhook

def test_auto_webhook_injects_unlabelled_namespaces(helm_sim):
    sim = helm_sim
    helm(sim, "upgrade", "istiod-1-29-6", CHARTS_DIR / "istiod", "-n", "istio-system", "--reuse-values",
         "--set", "sidecarInjectorWebhook.enableNamespacesByDefault=true")
    tag = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-default")
    assert tag["webhooks"][-1]["name"] == "auto.sidecar-injector.istio.io"
    sim.kubectl("create", "namespace", "plain", check=True)
    sim.kubectl("apply", "-f", "-", input=json.dumps(pod("plain", "p")), check=True)
    assert istio.pod_revision(kjson(sim, "get", "pod", "p", "-n", "plain")) == "1-29-6"
    sim.kubectl("apply", "-f", "-", input=json.dumps(pod("kube-public", "k")), check=True)
    assert not istio.is_injected(kjson(sim, "get", "pod", "k", "-n", "kube-public"))  # excluded by name


# ------------------------------------------------------------------------------------------ istioctl 1.2x

def test_tag_set_renders_webhook_and_service_and_moves_them(helm_sim):
    sim = helm_sim
    helm(sim, "upgrade", "-i", "istiod-1-30-3", CHARTS_DIR / "istiod", "-n", "istio-system", "--wait",
         "--set", "revision=1-30-3", "--set", "global.tag=1.30.3")
    istioctl(sim, "tag", "set", "prod", "--revision", "1-30-3", version="1.30.3")
    svc = kjson(sim, "get", "service", "istiod-revision-tag-prod", "-n", "istio-system")
    assert svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": "1-30-3"}
    assert svc["metadata"]["labels"]["release"] == "istio"  # istioctl renders the chart as release "istio"
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-prod")
    assert mwc["metadata"]["labels"]["helm.sh/chart"] == "istiod-1.30.3"
    assert {w["clientConfig"]["service"]["name"] for w in mwc["webhooks"]} == {"istiod-1-30-3"}
    cp = istioctl(sim, "tag", "set", "prod", "--revision", "1-29-6", check=False)
    assert cp.returncode == 1 and 'revision tag "prod" already exists, and --overwrite is false' in cp.stderr
    istioctl(sim, "tag", "set", "prod", "--revision", "1-29-6", "--overwrite")
    svc = kjson(sim, "get", "service", "istiod-revision-tag-prod", "-n", "istio-system")
    assert svc["spec"]["selector"]["istio.io/rev"] == "1-29-6"
    istioctl(sim, "tag", "remove", "prod", "-y")
    assert "NotFound" in sim.kubectl("get", "service", "istiod-revision-tag-prod", "-n", "istio-system").stderr


def test_precheck_from_version_json_and_exit_code(helm_sim):
    sim = helm_sim
    ok = istioctl(sim, "x", "precheck", "--from-version", "1.29", "-o", "json")
    assert "No issues found" in ok.stderr and ok.stdout == ""
    sim.kubectl("create", "service", "clusterip", "zipkin", "-n", "istio-system", "--tcp=9411:9411", check=True)
    try:
        bad = istioctl(sim, "x", "precheck", "--from-version", "1.21", "-o", "json", check=False)
        assert bad.returncode == 1
        msgs = json.loads(bad.stdout)
        assert [(m["code"], m["level"], m["origin"]) for m in msgs] == [
            ("IST0169", "Warning", "Service istio-system/zipkin")]
        assert msgs[0]["documentationUrl"] == "https://istio.io/v1.29/docs/reference/config/analysis/ist0169/"
        assert "Issues found when checking the cluster" in bad.stderr
    finally:
        sim.kubectl("delete", "service", "zipkin", "-n", "istio-system")


def test_proxy_status_table_and_json(helm_sim):
    sim = helm_sim
    table = istioctl(sim, "proxy-status").stdout.splitlines()
    assert table[0].split() == ["NAME", "CLUSTER", "ISTIOD", "VERSION", "SUBSCRIBED", "TYPES"]
    assert any(line.startswith("debug.foo ") and "1.29.6" in line for line in table)
    out = istioctl(sim, "proxy-status", "-o", "json", version="1.30.3").stdout
    docs = [json.loads(d) for d in out.replace("}\n{", "}\x00{").split("\x00")]
    nodes = [r["node"]["metadata"]["NAME"] for d in docs for r in d["resources"]]
    assert "debug" in nodes and all(d["typeUrl"] == "istio.io/debug/syncz" for d in docs)


def test_orphaned_validator_rejects_config_after_istioctl_uninstall_of_helm_release(kubesim_factory):
    sim = kubesim_factory("helm", pod_ready_seconds=0.2)
    for name in ("istio-validator-1-29-6-istio-system", "istiod-default-validator"):
        # installed fail-open by Helm, set to Fail by istiod's webhook controller once it serves
        vwc = kjson(sim, "get", "validatingwebhookconfiguration", name)
        assert [w["failurePolicy"] for w in vwc["webhooks"]] == ["Fail"]
    out = istioctl(sim, "uninstall", "--revision", "1-29-6", "-y").stdout
    assert "Removed apps/v1, Kind=Deployment/istiod-1-29-6.istio-system." in out
    left = {(kind, o["metadata"]["name"]) for kind in ("serviceaccount", "role", "rolebinding")
            for o in kjson(sim, "get", kind, "-n", "istio-system")["items"] if "1-29-6" in o["metadata"]["name"]}
    left |= {(kind, o["metadata"]["name"]) for kind in ("clusterrole", "clusterrolebinding",
                                                         "validatingwebhookconfiguration")
             for o in kjson(sim, "get", kind)["items"] if "1-29-6" in o["metadata"]["name"]}
    assert left == {("serviceaccount", "istiod-1-29-6"), ("role", "istiod-1-29-6"), ("rolebinding", "istiod-1-29-6"),
                    ("clusterrole", "istiod-clusterrole-1-29-6-istio-system"),
                    ("clusterrole", "istiod-gateway-controller-1-29-6-istio-system"),
                    ("clusterrole", "istio-reader-clusterrole-1-29-6-istio-system"),
                    ("clusterrolebinding", "istiod-clusterrole-1-29-6-istio-system"),
                    ("clusterrolebinding", "istiod-gateway-controller-1-29-6-istio-system"),
                    ("clusterrolebinding", "istio-reader-clusterrole-1-29-6-istio-system"),
                    ("validatingwebhookconfiguration", "istio-validator-1-29-6-istio-system")}
    assert "NotFound" in sim.kubectl("get", "deployment", "istiod-1-29-6", "-n", "istio-system").stderr
    assert [r["name"] for r in json.loads(helm(sim, "list", "-n", "istio-system", "-o", "json").stdout)] == [
        "istio-base", "istiod-1-29-6"]  # Helm still holds the release
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "r", "namespace": "foo", "labels": {"istio.io/rev": "1-29-6"}},
          "spec": {"hosts": ["foo"], "http": [{"route": [{"destination": {"host": "foo"}}]}]}}
    cp = sim.kubectl("apply", "-f", "-", input=json.dumps(vs))
    assert cp.returncode != 0
    assert 'failed calling webhook "rev.validation.istio.io"' in cp.stderr
    assert 'service "istiod-1-29-6" not found' in cp.stderr


def test_istioctl_1_29_install_labels_everything_so_uninstall_prunes_it_all(kubesim_factory):
    sim = kubesim_factory("empty", pod_ready_seconds=0.2)
    out = istioctl(sim, "install", "--set", "revision=1-29-6", "-y").stdout
    assert "Making this installation the default for injection and validation." in out
    sa = kjson(sim, "get", "serviceaccount", "istiod-1-29-6", "-n", "istio-system")
    assert sa["metadata"]["labels"]["istio.io/rev"] == "1-29-6"  # getOwnerLabels on every object
    assert sa["metadata"]["labels"]["operator.istio.io/component"] == "Pilot"
    assert sa["metadata"]["labels"]["release"] == "istio"
    assert kjson(sim, "get", "service", "istiod-revision-tag-default", "-n", "istio-system")
    istioctl(sim, "uninstall", "--revision", "1-29-6", "-y")
    left = [o["metadata"]["name"] for kind in ("clusterrole", "clusterrolebinding", "mutatingwebhookconfiguration",
                                               "validatingwebhookconfiguration")
            for o in kjson(sim, "get", kind)["items"] if "istio" in o["metadata"]["name"]]
    left += [o["metadata"]["name"] for kind in ("serviceaccount", "role", "service", "configmap", "deployment")
             for o in kjson(sim, "get", kind, "-n", "istio-system")["items"] if "istio" in o["metadata"]["name"]]
    assert left == []
