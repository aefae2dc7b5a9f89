"""The stand-in istioctl against the simulated cluster."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from kubesim.testing import BIN_DIR

ISTIOCTL = str(BIN_DIR / "istioctl")


def run(sim, *args, env=None, input=None):
    e = sim.kubectl_env() if sim is not None else dict(os.environ)
    e.update(env or {})
    return subprocess.run([ISTIOCTL, *args], env=e, capture_output=True, text=True, timeout=120, input=input)


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


@pytest.fixture(scope="module")
def blog():
    from kubesim.testing import KubeSim
    sim = KubeSim("blog", pod_ready_seconds=0.1)
    sim.start()
    yield sim
    sim.cleanup()


def test_version_client_only_and_json():
    cp = run(None, "version", "--remote=false", env={"KUBESIM_ISTIOCTL_VERSION": "1.16.1"})
    assert cp.returncode == 0 and cp.stdout.strip() == "1.16.1"
    cp = run(None, "version", "--remote=false", "-o", "json")
    info = json.loads(cp.stdout)
    assert info["clientVersion"]["version"] == "1.15.4" and "meshVersion" not in info


def test_version_remote_reports_control_and_data_plane(blog):
    cp = run(blog, "version", "-o", "json")
    assert cp.returncode == 0, cp.stderr
    info = json.loads(cp.stdout)
    assert [(m["Revision"], m["Info"]["version"]) for m in info["meshVersion"]] == [("1-14-6", "1.14.6")]
    pods = [p for ns in ("foo", "bar", "baz", "istio-ingress") for p in kjson(blog, "get", "pods", "-n", ns)["items"]]
    assert sorted(d["ID"] for d in info["dataPlaneVersion"]) == sorted(
        f"{p['metadata']['name']}.{p['metadata']['namespace']}" for p in pods)
    assert {d["IstioVersion"] for d in info["dataPlaneVersion"]} == {"1.14.6"}
    cp = run(blog, "version")
    assert "control plane version: 1.14.6" in cp.stdout
    assert f"data plane version: 1.14.6 ({len(pods)} proxies)" in cp.stdout


def test_install_refuses_a_revision_that_is_not_a_dns_label(blog):
    cp = run(blog, "install", "--set", "revision=1.15.4", "-y")
    assert cp.returncode != 0
    assert "invalid revision specified: 1.15.4" in cp.stderr
    assert blog.kubectl("get", "deployment", "istiod-1.15.4", "-n", "istio-system").returncode != 0


def test_unknown_subcommand_and_flag(blog):
    cp = run(blog, "frobnicate")
    assert cp.returncode != 0 and 'unknown command "frobnicate" for "istioctl"' in cp.stderr
    cp = run(blog, "install", "--bogus", "-y")
    assert cp.returncode != 0 and "unknown flag: --bogus" in cp.stderr


def test_install_from_istiooperator_file_and_uninstall(blog, tmp_path):
    iop = tmp_path / "iop.yaml"
    iop.write_text(textwrap.dedent("""\
        apiVersion: install.istio.io/v1alpha1
        kind: IstioOperator
        spec:
          profile: minimal
          revision: canary
          components:
            pilot:
              k8s:
                replicaCount: 2
          values:
            pilot:
              env:
                PILOT_ENABLE_STATUS: "true"
        """))
    cp = run(blog, "install", "-f", str(iop), "-y", env={"KUBESIM_ISTIOCTL_VERSION": "1.16.0"})
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.splitlines()[:3] == ["✔ Istio core installed", "✔ Istiod installed", "✔ Installation complete"]
    dep = kjson(blog, "get", "deployment", "istiod-canary", "-n", "istio-system")
    assert dep["spec"]["replicas"] == 2 and dep["status"]["availableReplicas"] == 2
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "docker.io/istio/pilot:1.16.0"
    assert {"name": "PILOT_ENABLE_STATUS", "value": "true"} in c["env"]
    assert dep["metadata"]["labels"]["operator.istio.io/version"] == "1.16.0"
    ps = run(blog, "tag", "list").stdout
    assert ps.splitlines()[1].split()[:2] == ["default", "1-14-6"]   # install does not move an existing default

    # nothing runs on it: uninstall prunes quietly, by label
    cp = run(blog, "uninstall", "--revision", "canary", "-y")
    assert cp.returncode == 0
    assert "proxies pointing" not in cp.stdout
    removed = [ln.strip() for ln in cp.stdout.splitlines() if ln.strip().startswith("Removed")]
    assert "Removed Deployment:istio-system:istiod-canary." in removed
    assert "Removed MutatingWebhookConfiguration::istio-sidecar-injector-canary." in removed
    assert "Removed ValidatingWebhookConfiguration::istio-validator-canary-istio-system." in removed
    assert "Removed ConfigMap:istio-system:istio-sidecar-injector-canary." in removed
    assert blog.kubectl("get", "deployment,service,serviceaccount", "-n", "istio-system", "-l",
                        "istio.io/rev=canary", "-o", "name").stdout.strip() == ""
    assert kjson(blog, "get", "deployment", "istiod-1-14-6", "-n", "istio-system")
    cp = run(blog, "uninstall", "-y")
    assert cp.returncode != 0 and "--revision" in cp.stderr


def test_precheck_passes_then_reports_missing_permissions(kubesim_factory, tmp_path):
    sim = kubesim_factory("empty")
    cp = run(sim, "x", "precheck")
    assert cp.returncode == 0
    assert "✔ No issues found when checking the cluster. Istio is safe to install or upgrade!" in cp.stdout
    rules = tmp_path / "rules.yaml"
    # a user that may do everything precheck asks about except creating webhook configurations
    rules.write_text(textwrap.dedent("""\
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata: {name: almost-admin}
        rules:
        - apiGroups: ["*"]
          resources: ["*"]
          verbs: [get, list, watch]
        - apiGroups: ["", apps, policy, apiextensions.k8s.io, rbac.authorization.k8s.io, authorization.k8s.io]
          resources: ["*"]
          verbs: ["*"]
        - apiGroups: [admissionregistration.k8s.io]
          resources: [validatingwebhookconfigurations]
          verbs: ["*"]
        """))
    restricted = kubesim_factory("empty", authorize_rules=str(rules))
    cp = run(restricted, "x", "precheck")
    assert cp.returncode == 79
    assert 'Missing required permission to create resource "mutatingwebhookconfigurations.' in cp.stdout
    assert "Istio may not be safe to install or upgrade" in cp.stderr


def test_tag_set_and_proxy_status(kubesim_factory):
    sim = kubesim_factory("blog", pod_ready_seconds=0.1)
    assert run(sim, "install", "--set", "revision=1-15-4", "-y").returncode == 0
    cp = run(sim, "tag", "set", "default", "--revision", "1-15-4")
    assert cp.returncode != 0 and "--overwrite is false" in cp.stderr
    cp = run(sim, "tag", "set", "default", "--revision", "nope", "--overwrite")
    assert cp.returncode != 0 and 'cannot find MutatingWebhookConfiguration with revision "nope"' in cp.stderr
    assert run(sim, "tag", "set", "default", "--revision", "1-15-4", "--overwrite").returncode == 0
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-revision-tag-default")
    assert mwc["metadata"]["labels"]["istio.io/rev"] == "1-15-4"
    assert {w["clientConfig"]["service"]["name"] for w in mwc["webhooks"]} == {"istiod-1-15-4"}
    vwc = kjson(sim, "get", "validatingwebhookconfiguration", "istiod-default-validator")
    assert vwc["webhooks"][0]["clientConfig"]["service"]["name"] == "istiod-1-15-4"
    sim.kubectl("rollout", "restart", "deployment", "baz", "-n", "baz", check=True)
    sim.kubectl("rollout", "status", "deployment", "baz", "-n", "baz", "--timeout=60s", check=True)

    def status_rows():
        out = run(sim, "proxy-status").stdout.splitlines()
        assert out[0].split() == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "ISTIOD", "VERSION"]
        rows = {ln.split()[0]: ln.split() for ln in out[1:]}
        # old pods stay connected while they terminate: wait until only baz's two new proxies are left
        return rows if len([n for n in rows if n.endswith(".baz")]) == 2 else None

    rows = sim.wait_for(status_rows, timeout=30, message="baz's old proxies to go")
    baz = [r for n, r in rows.items() if n.endswith(".baz")]
    assert len(baz) == 2 and all(r[-1] == "1.15.4" and r[-2].startswith("istiod-1-15-4-") for r in baz)
    foo = [r for n, r in rows.items() if n.endswith(".foo")]
    assert len(foo) == 2 and all(r[-1] == "1.14.6" and r[-2].startswith("istiod-1-14-6-") for r in foo)


def test_revisionless_install_makes_itself_default(kubesim_factory):
    sim = kubesim_factory("empty", pod_ready_seconds=0.1)
    cp = run(sim, "install", "--set", "profile=minimal", "-y", env={"KUBESIM_ISTIOCTL_VERSION": "1.14.6"})
    assert cp.returncode == 0, cp.stderr
    assert "Making this installation the default for injection and validation." in cp.stdout
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", "istio-sidecar-injector")
    assert "namespace.sidecar-injector.istio.io" in [w["name"] for w in mwc["webhooks"]]
    assert kjson(sim, "get", "validatingwebhookconfiguration", "istiod-default-validator")
    assert kjson(sim, "get", "deployment", "istiod", "-n", "istio-system")["status"]["availableReplicas"] == 1
    sim.kubectl("apply", "-f", "-", check=True, input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}))
    sim.kubectl("label", "namespace", "app", "istio-injection=enabled", check=True)
    sim.kubectl("run", "p", "-n", "app", "--image=docker.io/library/nginx:1.23", "--restart=Never", check=True)
    pod = kjson(sim, "get", "pod", "p", "-n", "app")
    assert json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"] == "default"
    assert [c["image"] for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"] == [
        "docker.io/istio/proxyv2:1.14.6"]
