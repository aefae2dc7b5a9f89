"""Tags on Helm meshes beyond the default layout, with real Helm (tests/kubesim/bin/helm): a control plane outside
istio-system (the charts then name the injector istio-sidecar-injector-<rev>-<ns> and the tag
istio-revision-tag-<tag>-<ns>) whose tag default was rendered with sidecarInjectorWebhook.enableNamespacesByDefault
(the auto. webhook that injects unlabelled namespaces), upgraded by the playbook's install and tag phases."""

from __future__ import annotations

import json

import pytest

import upgrade_support as us
from kubesim.testing import KubeSim
from test_helm_upgrade import CHARTS, ENV, NEW_REV, NEW_VERSION, OLD_REV, OLD_VERSION, helm, new_pod_proxy, ok, values

CP = "istio-cp"
MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"


@pytest.fixture
def outside(tmp_path):
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("empty", workdir=str(workdir), pod_ready_seconds=0.2, audit=False) as sim:
        glob = '{"istioNamespace":"%s","tag":"%s"}' % (CP, OLD_VERSION)
        helm(sim, "upgrade", "--install", "istio-base", str(CHARTS / "base"), "-n", CP, "--create-namespace",
             "--set", "defaultRevision=" + OLD_REV, "--set-json", "global=" + glob)
        helm(sim, "upgrade", "--install", "istiod-" + OLD_REV, str(CHARTS / "istiod"), "-n", CP, "--wait",
             "--set", "revision=" + OLD_REV, "--set-json", 'revisionTags=["default"]', "--set-json", "global=" + glob,
             "--set", "sidecarInjectorWebhook.enableNamespacesByDefault=true")
        sim.kubectl("create", "namespace", "app", check=True)

        # helm --wait waits for istiod's Deployment, not for the endpoints controller to list its pod: until it
        # has, the injector answers "no endpoints available" (as on a real cluster)
        def istiod_listed():
            code, _headers, body = sim.request("GET", "/api/v1/namespaces/%s/endpoints/istiod-%s" % (CP, OLD_REV))
            return code == 200 and any(s.get("addresses") for s in json.loads(body).get("subsets") or [])
        sim.wait_for(istiod_listed, timeout=60, message="a ready endpoint of istiod-" + OLD_REV)
        yield sim


def test_outside_istio_system_with_the_auto_webhook(outside, tmp_path):
    sim = outside
    tag_name = "istio-revision-tag-default-" + CP
    assert sim.get_json(MWC + tag_name)["metadata"]["labels"]["istio.io/rev"] == OLD_REV
    assert new_pod_proxy(sim, "app", "before")[0] == OLD_REV  # unlabelled namespace: the auto. webhook
    inv = us.write_inventory(tmp_path / "inventory", {"sandbox": sim.kubeconfig},
                             istio_canary_to_revision=NEW_REV, istio_canary_to_version=NEW_VERSION,
                             istio_canary_namespace=CP, istio_canary_gateways=[],
                             istio_canary_waves=[{"name": "wave1", "namespaces": ["app"]}],
                             istio_canary_wait_timeout=120, istio_canary_helm=str(us.TESTS / "kubesim" / "bin" / "helm"),
                             istio_canary_helm_charts={"base": str(CHARTS / "base"), "istiod": str(CHARTS / "istiod")},
                             istio_canary_helm_values={"global": {"istioNamespace": CP}})
    run = us.run_phase(inv, "precheck,install", workdir=tmp_path / "runs", env=ENV)
    ok(run)
    injector = sim.get_json(MWC + "istio-sidecar-injector-%s-%s" % (NEW_REV, CP))
    assert injector["metadata"]["annotations"]["meta.helm.sh/release-name"] == "istiod-" + NEW_REV
    ok(us.run_phase(inv, "tag", workdir=tmp_path / "runs", env=ENV))
    tag = sim.get_json(MWC + tag_name)
    assert tag["metadata"]["labels"]["istio.io/rev"] == NEW_REV
    assert tag["metadata"]["annotations"]["meta.helm.sh/release-name"] == "istiod-" + NEW_REV
    hooks = dict((w["name"], w["clientConfig"]["service"]) for w in tag["webhooks"])
    assert "auto.sidecar-injector.istio.io" in hooks, sorted(hooks)
    assert set((s["name"], s["namespace"]) for s in hooks.values()) == {("istiod-" + NEW_REV, CP)}
    svc = sim.get_json("/api/v1/namespaces/%s/services/istiod-revision-tag-default" % CP)
    assert svc["spec"]["selector"]["istio.io/rev"] == NEW_REV
    assert values(sim, "istiod-" + OLD_REV, CP).get("revisionTags") == []
    assert new_pod_proxy(sim, "app", "after") == (NEW_REV, NEW_VERSION)
    # the old release's uninstall leaves the tag (and injection of the unlabelled namespace) alone
    helm(sim, "uninstall", "istiod-" + OLD_REV, "-n", CP)
    assert json.dumps(sim.get_json(MWC + tag_name)["webhooks"]).count("istiod-" + NEW_REV) == len(hooks)
    assert new_pod_proxy(sim, "app", "after-uninstall") == (NEW_REV, NEW_VERSION)
