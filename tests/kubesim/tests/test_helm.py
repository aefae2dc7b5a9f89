"""The test helm (tests/kubesim/bin/helm: real Helm v4 through helm-python-sdk), the test charts and the `helm`
scenario: releases installed, upgraded and uninstalled by real Helm, objects named and labelled like Istio's
charts, read back with the real kubectl, and helm's output parsed the way kubernetes.core's helm module
parses it (plugins/modules/helm.py, module_utils/helm.py)."""

from __future__ import annotations

import base64
import gzip
import json
import re
import shlex
import subprocess

import pytest
import yaml
import helm_python  # noqa: F401  (make venv installs it: a missing SDK must fail, not skip)

from kubesim.helm_scenario import CHARTS_DIR, HELM_BIN
from kubesim.testing import KubeSim

CHARTS = str(CHARTS_DIR)


def helm(sim, *args, check=True, env=None):
    e = sim.kubectl_env()
    e.update(env or {})
    cp = subprocess.run([str(HELM_BIN), *map(str, args)], env=e, capture_output=True, text=True, timeout=300)
    if check and cp.returncode != 0:
        raise AssertionError(f"helm {' '.join(map(str, args))} failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}")
    return cp


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def release_record(sim, ns, name, revision=1):
    """The release as Helm stored it: Secret data.release = base64(gzip(json))."""
    secret = kjson(sim, "get", "secret", f"sh.helm.release.v1.{name}.v{revision}", "-n", ns)
    raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
    return secret, json.loads(gzip.decompress(raw))


@pytest.fixture(scope="module")
def helm_sim():
    sim = KubeSim("helm", pod_ready_seconds=0.2)
    sim.start()
    yield sim
    sim.cleanup()


# ------------------------------------------------------------------------------------------ scenario helm

def test_scenario_releases_are_helms_own_records(helm_sim):
    listed = json.loads(helm(helm_sim, "list", "-A", "-o", "json").stdout)
    assert {(r["name"], r["namespace"], r["status"], r["chart"]) for r in listed} == {
        ("istio-base", "istio-system", "deployed", "base-1.0.0"),
        ("istiod-1-29-6", "istio-system", "deployed", "istiod-1.0.0"),
        ("istio-ingressgateway", "istio-ingress", "deployed", "gateway-1.0.0")}
    secret, rel = release_record(helm_sim, "istio-system", "istiod-1-29-6")
    assert secret["type"] == "helm.sh/release.v1"
    assert secret["metadata"]["labels"]["owner"] == "helm"
    assert rel["config"] == {"revision": "1-29-6", "revisionTags": ["default"], "global": {"tag": "1.29.6"}}
    assert "kind: MutatingWebhookConfiguration" in rel["manifest"]


def test_scenario_objects_named_and_labelled_like_istios_charts(helm_sim):
    sim = helm_sim
    d = kjson(sim, "get", "deployment", "istiod-1-29-6", "-n", "istio-system")
    labels = d["metadata"]["labels"]
    assert labels["app"] == "istiod" and labels["istio.io/rev"] == "1-29-6"
    assert labels["operator.istio.io/component"] == "Pilot"
    assert labels["install.operator.istio.io/owning-resource"] == "unknown"
    assert labels["app.kubernetes.io/managed-by"] == "Helm" and labels["helm.sh/chart"] == "istiod-1.0.0"
    assert d["metadata"]["annotations"]["meta.helm.sh/release-name"] == "istiod-1-29-6"
    assert d["metadata"]["annotations"]["meta.helm.sh/release-namespace"] == "istio-system"
    image = d["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "docker.io/istio/pilot:1.29.6"
    tag = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-default")
    assert tag["metadata"]["labels"]["istio.io/tag"] == "default"
    assert tag["metadata"]["annotations"]["meta.helm.sh/release-name"] == "istiod-1-29-6"
    assert [w["name"] for w in tag["webhooks"]] == [
        "rev.namespace.sidecar-injector.istio.io", "rev.object.sidecar-injector.istio.io",
        "namespace.sidecar-injector.istio.io", "object.sidecar-injector.istio.io"]
    assert {w["clientConfig"]["service"]["name"] for w in tag["webhooks"]} == {"istiod-1-29-6"}
    svc = kjson(sim, "get", "service", "istiod-revision-tag-default", "-n", "istio-system")
    assert svc["spec"]["selector"] == {"app": "istiod", "istio.io/rev": "1-29-6"}
    assert svc["metadata"]["labels"]["istio.io/tag"] == "default"
    for name in ("istio-validator-1-29-6-istio-system", "istiod-default-validator"):
        vwc = kjson(sim, "get", "validatingwebhookconfiguration", name)
        assert vwc["metadata"]["labels"]["istio.io/rev"] == "1-29-6"
    for kind, name in (("clusterrole", "istiod-clusterrole-1-29-6-istio-system"),
                       ("clusterrolebinding", "istiod-gateway-controller-1-29-6-istio-system"),
                       ("clusterrole", "istio-reader-clusterrole-1-29-6-istio-system"),
                       ("hpa", "istiod-1-29-6"), ("configmap", "istio-sidecar-injector-1-29-6"),
                       ("configmap", "values-1-29-6"), ("role", "istiod-1-29-6"), ("serviceaccount", "istiod-1-29-6"),
                       ("serviceaccount", "istio-reader-service-account")):
        args = ("get", kind, name) + (() if kind.startswith("cluster") else ("-n", "istio-system"))
        assert kjson(sim, *args)["metadata"]["name"] == name
    gw = kjson(sim, "get", "deployment", "istio-ingressgateway", "-n", "istio-ingress")
    assert gw["spec"]["selector"]["matchLabels"] == {"app": "istio-ingressgateway", "istio": "ingressgateway"}
    assert kjson(sim, "get", "crd", "virtualservices.networking.istio.io")["metadata"]["labels"][
        "app.kubernetes.io/instance"] == "istio-base"


def test_scenario_runs_kubernetes_1_33_with_native_sidecars_and_old_workloads(helm_sim):
    sim = helm_sim
    assert kjson(sim, "get", "nodes")["items"][0]["status"]["nodeInfo"]["kubeletVersion"] == "v1.33.2"
    assert sim.get_json("/version")["gitVersion"] == "v1.33.2"
    pods = [p for p in kjson(sim, "get", "pods", "-A")["items"] if p["metadata"]["namespace"] in ("foo", "bar", "baz")]
    assert len(pods) == 9  # 3 x 2 replicas, the bare pod, the Job's and the CronJob's Job's pod
    for p in pods:
        inits = p["spec"]["initContainers"]
        assert [c["name"] for c in inits][:2] == ["istio-init", "istio-proxy"]
        assert inits[1]["restartPolicy"] == "Always"
        assert inits[1]["image"] == "docker.io/istio/proxyv2:1.29.6"
        assert "istio-proxy" not in [c["name"] for c in p["spec"]["containers"]]
    owners = {p["metadata"]["name"].rsplit("-", 1)[0] if p["metadata"].get("ownerReferences") else
              p["metadata"]["name"]: [r["kind"] for r in p["metadata"].get("ownerReferences") or []] for p in pods}
    assert owners["debug"] == []
    assert owners["migrate"] == ["Job"]
    job = kjson(sim, "get", "job", "report-manual", "-n", "baz")
    assert [(r["kind"], r["name"]) for r in job["metadata"]["ownerReferences"]] == [("CronJob", "report")]


# ------------------------------------------------------------------------------------------ helm CLI

def test_version_as_kubernetes_core_reads_it(helm_sim):
    out = helm(helm_sim, "version").stdout
    m = re.match(r'version.BuildInfo{Version:"v(.*?)",', out)  # module_utils/helm.py get_helm_version
    assert m and m.group(1).startswith("4.")


def test_list_status_and_values_as_kubernetes_core_parses_them(helm_sim):
    sim = helm_sim
    env = {"HELM_NAMESPACE": "istio-system"}  # AnsibleHelmModule._prepare_helm_environment
    out = helm(sim, "list", "--output=yaml", "--filter", "istiod-1-29-6", "--deployed", env=env).stdout
    releases = yaml.safe_load(out)
    release = next(r for r in releases if r["name"] == "istiod-1-29-6")
    assert release["chart"] == "istiod-1.0.0" and release["app_version"] == "1.0.0"
    assert release["revision"] == "1" and release["status"] == "deployed"
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? [+-]\d{4} \w+", release["updated"])
    values = helm(sim, "get", "values", "--output=yaml", "istiod-1-29-6", env=env).stdout
    assert yaml.safe_load(values) == {"global": {"tag": "1.29.6"}, "revision": "1-29-6", "revisionTags": ["default"]}
    all_values = yaml.safe_load(helm(sim, "get", "values", "--output=yaml", "istiod-1-29-6", "-a", env=env).stdout)
    assert all_values["autoscaleEnabled"] is True and all_values["global"]["hub"] == "docker.io/istio"
    gw = helm(sim, "get", "values", "--output=yaml", "istio-ingressgateway", "-n", "istio-ingress").stdout
    assert gw.rstrip("\n") == "null"  # helm.py: 'Helm 3 return "null" string when no values are set'
    chart = yaml.safe_load(helm(sim, "show", "chart", f"{CHARTS}/istiod").stdout)  # fetch_chart_info
    assert chart["name"] + "-" + chart["version"] == release["chart"]
    plugins = helm(sim, "plugin", "list").stdout.splitlines()  # parse_helm_plugin_list
    assert [s.strip().lower() for s in plugins[0].split("\t")][:2] == ["name", "version"]
    status = helm(sim, "status", "istiod-1-29-6", "-n", "istio-system").stdout
    assert "STATUS: deployed" in status and "REVISION: 1" in status
    st = json.loads(helm(sim, "status", "istiod-1-29-6", "-n", "istio-system", "-o", "json").stdout)
    assert st["name"] == "istiod-1-29-6" and st["version"] == 1 and st["info"]["status"] == "deployed"
    assert "istio-revision-tag-default" in st["manifest"]


def test_kubeconfig_and_context_flags_choose_the_cluster(helm_sim, tmp_path):
    cfg = yaml.safe_load(open(helm_sim.kubeconfig))
    cfg["contexts"].append({"name": "other", "context": dict(cfg["contexts"][0]["context"], namespace="istio-system")})
    cfg["current-context"] = "missing"
    path = tmp_path / "kc"
    path.write_text(yaml.safe_dump(cfg))
    out = helm(helm_sim, "list", "--kubeconfig", path, "--kube-context", "other", "-o", "json",
               env={"KUBECONFIG": "/nonexistent"}).stdout
    assert {r["name"] for r in json.loads(out)} == {"istio-base", "istiod-1-29-6"}  # the context's namespace


def test_install_upgrade_uninstall_a_revision_with_real_helm(helm_sim, tmp_path):
    sim = helm_sim
    values = tmp_path / "v.yml"
    values.write_text(yaml.safe_dump({"revision": "canary", "global": {"tag": "1.30.3"}}))
    # kubernetes.core.helm's deploy() command line for a new release, as run_command splits it
    cmd = (f"upgrade -i --reset-values --wait --timeout 120s --create-namespace -f={values} "
           f"--set autoscaleEnabled=false --set replicaCount=2 istiod-canary '{CHARTS}/istiod'")
    out = helm(sim, *shlex.split(cmd), "-n", "istio-system").stdout
    assert 'Release "istiod-canary" does not exist. Installing it now.' in out and "STATUS: deployed" in out
    d = kjson(sim, "get", "deployment", "istiod-canary", "-n", "istio-system")
    assert d["spec"]["replicas"] == 2 and d["status"]["readyReplicas"] == 2  # --wait waited for it
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/istio/pilot:1.30.3"
    assert kjson(sim, "get", "pdb", "istiod-canary", "-n", "istio-system")["spec"]["minAvailable"] == 1
    # upgrade with --reuse-values keeps the earlier values and adds the new ones
    helm(sim, "upgrade", "istiod-canary", f"{CHARTS}/istiod", "-n", "istio-system", "--reuse-values",
         "--set", "revisionTags={canary-tag}")
    _, rel = release_record(sim, "istio-system", "istiod-canary", 2)
    assert rel["config"]["revision"] == "canary" and rel["config"]["revisionTags"] == ["canary-tag"]
    assert kjson(sim, "get", "service", "istiod-revision-tag-canary-tag", "-n", "istio-system")
    hist = [r["status"] for r in json.loads(helm(sim, "history", "istiod-canary", "-n", "istio-system",
                                                 "-o", "json").stdout)]
    assert hist == ["superseded", "deployed"]
    out = helm(sim, "uninstall", "istiod-canary", "-n", "istio-system", "--wait").stdout
    assert 'release "istiod-canary" uninstalled' in out
    for kind, name in (("deployment", "istiod-canary"), ("service", "istiod-revision-tag-canary-tag"),
                       ("mutatingwebhookconfiguration", "istio-sidecar-injector-canary"),
                       ("clusterrole", "istiod-clusterrole-canary-istio-system")):
        args = ("get", kind, name) + (() if kind in ("mutatingwebhookconfiguration", "clusterrole")
                                      else ("-n", "istio-system"))
        assert "NotFound" in sim.kubectl(*args).stderr
    assert not [s for s in kjson(sim, "get", "secrets", "-n", "istio-system")["items"]
                if s["metadata"]["name"].startswith("sh.helm.release.v1.istiod-canary")]
    cp = helm(sim, "uninstall", "istiod-canary", "-n", "istio-system", check=False)
    assert cp.returncode == 1 and "release: not found" in cp.stderr


def test_control_plane_outside_istio_system_and_auto_webhook(helm_sim):
    sim = helm_sim
    helm(sim, "upgrade", "--install", "istiod-ext", f"{CHARTS}/istiod", "-n", "mesh-ext", "--create-namespace",
         "--set", "global.istioNamespace=mesh-ext", "--set", "revisionTags={ext}",
         "--set", "sidecarInjectorWebhook.enableNamespacesByDefault=true", "--set", "revision=")
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-sidecar-injector-mesh-ext")
    assert [w["name"].split(".")[0] for w in mwc["webhooks"]] == ["rev", "rev", "namespace", "object", "auto"]
    assert kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-ext-mesh-ext")
    assert kjson(sim, "get", "validatingwebhookconfiguration", "istio-validator-mesh-ext")
    helm(sim, "uninstall", "istiod-ext", "-n", "mesh-ext")


def test_template_and_errors(helm_sim):
    out = helm(helm_sim, "template", "istio-ingressgateway", f"{CHARTS}/gateway", "-n", "istio-ingress",
               "--show-only", "templates/service.yaml").stdout
    svc = yaml.safe_load(out.split("---", 1)[1])
    assert svc["kind"] == "Service" and svc["spec"]["type"] == "LoadBalancer"
    cp = helm(helm_sim, "list", "--all", "-n", "default", check=False)  # removed in Helm 4
    assert cp.returncode == 1 and cp.stderr == "Error: unknown flag: --all\n"
    cp = helm(helm_sim, "upgrade", "nope", f"{CHARTS}/gateway", "-n", "default", check=False)
    assert cp.returncode == 1 and 'Error: UPGRADE FAILED: "nope" has no deployed releases' in cp.stderr
    cp = helm(helm_sim, "upgrade", "-i", "bad", f"{CHARTS}/gateway", "-n", "default", "--set", "kind=Nope",
              check=False)
    assert cp.returncode == 1 and cp.stderr.startswith("Error: INSTALLATION FAILED:")


def test_kubectl_applies_and_reads_what_the_charts_render(helm_sim):
    """Every kind the charts render is served: the real kubectl validates (Strict) and applies them."""
    sim = helm_sim
    rendered = helm(sim, "template", "istiod-kctl", f"{CHARTS}/istiod", "-n", "istio-system",
                    "--set", "revision=kctl", "--set", "revisionTags={kctl-tag}", "--set", "autoscaleMin=2",
                    "--set", "global.networkPolicy.enabled=true",
                    "--set", "experimental.stableValidationPolicy=true").stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"HorizontalPodAutoscaler", "NetworkPolicy", "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding", "PodDisruptionBudget"} <= kinds
    cp = sim.kubectl("apply", "--validate=strict", "-f", "-", input=rendered)
    assert cp.returncode == 0, cp.stderr
    assert kjson(sim, "get", "networkpolicy", "istiod-kctl", "-n", "istio-system")["spec"]["podSelector"] == {
        "matchLabels": {"app": "istiod", "istio.io/rev": "kctl"}}
    assert kjson(sim, "get", "hpa", "istiod-kctl", "-n", "istio-system")["spec"]["minReplicas"] == 2
    assert kjson(sim, "get", "validatingadmissionpolicy", "stable-channel-policy-kctl-istio-system.istio.io")
    sim.kubectl("delete", "-f", "-", "--wait=false", input=rendered, check=True)
