"""OpenAPI as real clients fetch it, the kinds Istio's charts render, ServiceAccount admission and the
serviceaccount controller, and status fields omitted at their zero value -- checked with the real kubectl,
the kubernetes Python client and real Helm (helm-python-sdk, Helm v4's Go SDK)."""

from __future__ import annotations

import json

import pytest

from kubesim import openapi

V2_ACCEPT = {"Accept": openapi.V2_PROTO}


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def test_openapi_v2_served_as_gnostic_protobuf_and_json(shared_sim):
    code, headers, body = shared_sim.request("GET", "/openapi/v2", headers=V2_ACCEPT)
    assert code == 200
    assert headers["Content-Type"] == openapi.V2_PROTO_CONTENT_TYPE  # a media type Go's mime parser accepts
    assert body.startswith(b"\n\x032.0")  # Document.swagger = "2.0"
    doc = shared_sim.get_json("/openapi/v2")
    deploy = doc["definitions"]["io.k8s.api.apps.v1.Deployment"]
    assert deploy["x-kubernetes-group-version-kind"] == [{"group": "apps", "version": "v1", "kind": "Deployment"}]
    containers = doc["definitions"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    code, _, _ = shared_sim.request("GET", "/openapi/v2", headers={"Accept": "application/xml"})
    assert code == 406


def test_openapi_v3_patch_operation_lists_field_validation_and_smp(shared_sim):
    index = shared_sim.get_json("/openapi/v3")
    url = index["paths"]["apis/autoscaling/v2"]["serverRelativeURL"]
    doc = shared_sim.get_json(url)
    patch = doc["paths"]["/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler" in doc["components"]["schemas"]


def test_kubectl_validation_falls_back_to_v2_for_unknown_kinds(shared_sim):
    # not in v3, not a CRD -> kubectl validates against /openapi/v2 (protobuf) and then fails mapping
    cp = shared_sim.kubectl("apply", "-f", "-", input="apiVersion: example.com/v1\nkind: Foo\nmetadata: {name: x}\n")
    assert cp.returncode != 0
    assert 'no matches for kind "Foo" in version "example.com/v1"' in cp.stderr
    assert "content type" not in cp.stderr


@pytest.mark.parametrize("obj", [
    {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
              "minReplicas": 1, "maxReplicas": 5,
              "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                  "type": "Utilization", "averageUtilization": 80}}}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "istiod"},
     "spec": {"podSelector": {"matchLabels": {"app": "istiod"}}, "policyTypes": ["Ingress", "Egress"],
              "ingress": [{"from": [], "ports": [{"protocol": "TCP", "port": 15017}]}], "egress": [{}]}},
], ids=["hpa", "networkpolicy"])
def test_kubectl_applies_and_reads_chart_kinds(shared_sim, ns, obj):
    obj = dict(obj, metadata=dict(obj["metadata"], namespace=ns))
    shared_sim.kubectl("apply", "--validate=strict", "-f", "-", input=json.dumps(obj), check=True)
    got = kjson(shared_sim, "get", obj["kind"].lower(), obj["metadata"]["name"], "-n", ns)
    assert got["spec"] == obj["spec"]
    table = shared_sim.kubectl("get", obj["kind"].lower(), "-n", ns, check=True).stdout
    assert obj["metadata"]["name"] in table


def test_validating_admission_policy_and_binding_are_served(shared_sim):
    vap = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
           "metadata": {"name": "kubesim-test-policy.istio.io"},
           "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [{
               "apiGroups": ["networking.istio.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
               "resources": ["*"]}]},
               "validations": [{"expression": "object.kind != 'EnvoyFilter'"}]}}
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": "kubesim-test-policy-binding.istio.io"},
               "spec": {"policyName": "kubesim-test-policy.istio.io", "validationActions": ["Deny"]}}
    for obj in (vap, binding):
        shared_sim.kubectl("apply", "-f", "-", input=json.dumps(obj), check=True)
    got = kjson(shared_sim, "get", "validatingadmissionpolicybinding", binding["metadata"]["name"])
    assert got["spec"]["policyName"] == vap["metadata"]["name"]
    shared_sim.kubectl("delete", "validatingadmissionpolicy,validatingadmissionpolicybinding", "--all", check=True)


def test_helm_sdk_installs_a_chart_with_the_new_kinds(shared_sim, ns, tmp_path):
    """Real Helm validates every object (Strict field validation) before it applies them."""
    import helm_python as helm  # make venv installs it: a missing SDK must fail, not skip
    chart = tmp_path / "kinds"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kinds\nversion: 0.1.0\nappVersion: 1.0.0\n")
    (chart / "templates" / "all.yaml").write_text(
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\n"
        "spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: d}, maxReplicas: 2}\n---\n"
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: netpol}\n"
        "spec: {podSelector: {}}\n")
    with helm.Config(kubeconfig_path=shared_sim.kubeconfig, namespace=ns) as cfg:
        rel = cfg.install(str(chart), "kinds", {}, timeout=60)
        assert rel["status"] == "deployed"
    hpa = kjson(shared_sim, "get", "hpa", "h", "-n", ns)
    assert hpa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert hpa["metadata"]["annotations"]["meta.helm.sh/release-name"] == "kinds"
    kjson(shared_sim, "get", "networkpolicy", "netpol", "-n", ns)


# ------------------------------------------------------------------------------------- ServiceAccounts

def test_every_namespace_gets_a_default_serviceaccount_again_after_deletion(shared_sim, ns):
    sa = kjson(shared_sim, "get", "serviceaccount", "default", "-n", ns)
    uid = sa["metadata"]["uid"]
    shared_sim.kubectl("delete", "serviceaccount", "default", "-n", ns, check=True)
    again = shared_sim.wait_for(lambda: shared_sim.kubectl("get", "sa", "default", "-n", ns, "-o", "json").stdout,
                                message="default ServiceAccount recreated")
    assert json.loads(again)["metadata"]["uid"] != uid


def test_pod_with_missing_serviceaccount_is_refused(shared_sim, ns):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lonely", "namespace": ns},
           "spec": {"serviceAccountName": "nobody", "containers": [{"name": "c", "image": "busybox"}]}}
    cp = shared_sim.kubectl("apply", "-f", "-", input=json.dumps(pod))
    assert cp.returncode != 0
    assert (f'pods "lonely" is forbidden: error looking up service account {ns}/nobody: '
            f'serviceaccount "nobody" not found') in cp.stderr
    del pod["spec"]["serviceAccountName"]
    shared_sim.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
    assert kjson(shared_sim, "get", "pod", "lonely", "-n", ns)["spec"]["serviceAccountName"] == "default"


def test_replicaset_reports_failed_create_for_missing_serviceaccount(shared_sim, ns):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"metadata": {"labels": {"app": "web"}},
                               "spec": {"serviceAccountName": "web",
                                        "containers": [{"name": "c", "image": "busybox"}]}}}}
    shared_sim.kubectl("apply", "-f", "-", input=json.dumps(d), check=True)

    def failure():
        for rs in kjson(shared_sim, "get", "rs", "-n", ns)["items"]:
            for c in (rs.get("status") or {}).get("conditions") or []:
                if c["type"] == "ReplicaFailure":
                    return c
        return None
    cond = shared_sim.wait_for(failure, timeout=30, message="ReplicaFailure")
    assert cond["reason"] == "FailedCreate"
    assert f"error looking up service account {ns}/web" in cond["message"]
    events = kjson(shared_sim, "get", "events", "-n", ns)["items"]
    assert any(e["reason"] == "FailedCreate" and 'serviceaccount "web" not found' in e["message"] for e in events)
    shared_sim.kubectl("create", "serviceaccount", "web", "-n", ns, check=True)
    shared_sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", check=True)


# ------------------------------------------------------------------------------- zero-value status fields

def test_deployment_scaled_to_zero_has_no_replica_counts(shared_sim, ns):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "zero", "namespace": ns},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "zero"}},
                  "template": {"metadata": {"labels": {"app": "zero"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
    shared_sim.kubectl("apply", "-f", "-", input=json.dumps(d), check=True)
    shared_sim.kubectl("rollout", "status", "deployment/zero", "-n", ns, "--timeout=60s", check=True)
    shared_sim.kubectl("scale", "deployment/zero", "-n", ns, "--replicas=0", check=True)

    def scaled_down():
        st = kjson(shared_sim, "get", "deployment", "zero", "-n", ns).get("status") or {}
        return st if "replicas" not in st and st.get("observedGeneration") == 2 else None
    st = shared_sim.wait_for(scaled_down, timeout=30, message="status without replicas")
    for field in ("replicas", "availableReplicas", "readyReplicas", "updatedReplicas", "unavailableReplicas"):
        assert field not in st
    rs = kjson(shared_sim, "get", "rs", "-n", ns, "-l", "app=zero")["items"][0]
    assert rs["status"]["replicas"] == 0  # ReplicaSetStatus.replicas has no omitempty
    assert "readyReplicas" not in rs["status"]
