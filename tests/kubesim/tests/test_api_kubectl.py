"""The real kubectl against the simulated API server: discovery, tables, apply, typed (protobuf)
creates, rollout."""

import base64
import json
import re

import pytest
from kubernetes import client

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}]
"""


def _rows(text):
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def test_kubectl_get_namespaces_table(shared_sim):
    cp = shared_sim.kubectl("get", "ns", check=True)
    rows = _rows(cp.stdout)
    assert rows[0] == ["NAME", "STATUS", "AGE"]
    names = {r[0]: r[1] for r in rows[1:]}
    assert {"default", "kube-system", "kube-public", "kube-node-lease", "istio-system"} <= set(names)
    assert set(names.values()) <= {"Active", "Terminating"}


def test_kubectl_label_columns(shared_sim, ns):
    shared_sim.kubectl("label", "ns", ns, "istio.io/rev=1-15-4", check=True)
    cp = shared_sim.kubectl("get", "namespace", ns, "-L", "istio.io/rev", check=True)
    rows = _rows(cp.stdout)
    assert rows[0] == ["NAME", "STATUS", "AGE", "REV"]
    assert rows[1][0] == ns and rows[1][3] == "1-15-4"


def test_kubectl_apply_get_wide_and_rollout(shared_sim, ns):
    cp = shared_sim.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOY, check=True)
    assert cp.stdout.strip() == "deployment.apps/web created"
    cp = shared_sim.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOY, check=True)
    assert cp.stdout.strip() == "deployment.apps/web unchanged"
    cp = shared_sim.kubectl("apply", "-n", ns, "-f", "-", input=DEPLOY.replace("nginx:1.25", "nginx:1.26"),
                            check=True)
    assert cp.stdout.strip() == "deployment.apps/web configured"
    apps = client.AppsV1Api(shared_sim.client())
    d = apps.read_namespaced_deployment("web", ns)
    assert d.spec.template.spec.containers[0].image == "nginx:1.26"
    assert d.spec.template.spec.containers[0].env[0].value == "1"
    assert d.metadata.generation == 2
    assert "kubectl.kubernetes.io/last-applied-configuration" in d.metadata.annotations
    shared_sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", check=True)
    cp = shared_sim.kubectl("get", "deploy", "-n", ns, "-o", "wide", check=True)
    rows = _rows(cp.stdout)
    assert rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[1][:4] == ["web", "2/2", "2", "2"] and rows[1][5:] == ["web", "nginx:1.26", "app=web"]
    # restart: a new ReplicaSet, pods replaced, rollout status waits for it
    before = {p.metadata.name for p in client.CoreV1Api(shared_sim.client()).list_namespaced_pod(ns).items}
    shared_sim.kubectl("rollout", "restart", "deployment/web", "-n", ns, check=True)
    shared_sim.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s", check=True)
    d = apps.read_namespaced_deployment("web", ns)
    assert "kubectl.kubernetes.io/restartedAt" in d.spec.template.metadata.annotations
    pods = shared_sim.wait_for(
        lambda: [p for p in client.CoreV1Api(shared_sim.client()).list_namespaced_pod(ns).items
                 if not p.metadata.deletion_timestamp] if True else None, message="pods")
    assert len([p for p in pods if p.metadata.name not in before]) >= 2
    cp = shared_sim.kubectl("get", "pods", "-n", ns, check=True)
    assert _rows(cp.stdout)[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    cp = shared_sim.kubectl("get", "rs", "-n", ns, check=True)
    assert _rows(cp.stdout)[0] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]


def test_kubectl_typed_creates_use_protobuf(shared_sim, ns):
    shared_sim.kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=a=b", check=True)
    shared_sim.kubectl("create", "secret", "generic", "sec", "-n", ns, "--from-literal=pw=s3cret", check=True)
    shared_sim.kubectl("create", "deployment", "made", "-n", ns, "--image=nginx:1.27", "--replicas=0", check=True)
    shared_sim.kubectl("create", "service", "clusterip", "svc", "-n", ns, "--tcp=80:8080", check=True)
    core = client.CoreV1Api(shared_sim.client())
    assert core.read_namespaced_config_map("cfg", ns).data == {"a": "b"}
    assert base64.b64decode(core.read_namespaced_secret("sec", ns).data["pw"]) == b"s3cret"
    d = client.AppsV1Api(shared_sim.client()).read_namespaced_deployment("made", ns)
    assert d.spec.replicas == 0 and d.spec.template.spec.containers[0].image == "nginx:1.27"
    svc = core.read_namespaced_service("svc", ns)
    assert svc.spec.ports[0].port == 80 and svc.spec.ports[0].target_port == 8080
    recs = [r for r in shared_sim.audit_records() if r.get("resource") == "configmaps" and r["verb"] == "create"
            and r["name"] == "cfg"]
    assert recs and recs[-1]["code"] == 201


def test_kubectl_get_mwc_and_json_output(shared_sim):
    mwc = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
           "metadata": {"name": "kubesim-test-hook"},
           "webhooks": [{"name": "a.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                         "clientConfig": {"service": {"name": "x", "namespace": "default"}}},
                        {"name": "b.example.com", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                         "clientConfig": {"service": {"name": "x", "namespace": "default"}}}]}
    shared_sim.kubectl("apply", "-f", "-", input=json.dumps(mwc), check=True)
    cp = shared_sim.kubectl("get", "mutatingwebhookconfigurations", "kubesim-test-hook", check=True)
    rows = _rows(cp.stdout)
    assert rows[0] == ["NAME", "WEBHOOKS", "AGE"] and rows[1][:2] == ["kubesim-test-hook", "2"]
    cp = shared_sim.kubectl("get", "mutatingwebhookconfiguration", "kubesim-test-hook", "-o", "json", check=True)
    got = json.loads(cp.stdout)
    assert got["webhooks"][0]["failurePolicy"] == "Fail"  # defaulted like the real server
    assert got["webhooks"][0]["clientConfig"]["service"]["port"] == 443
    shared_sim.kubectl("delete", "mutatingwebhookconfiguration", "kubesim-test-hook", check=True)


def test_kubectl_errors_match_real_server_text(shared_sim, ns):
    cp = shared_sim.kubectl("get", "deployment", "nope", "-n", ns)
    assert cp.returncode == 1
    assert cp.stderr.strip() == 'Error from server (NotFound): deployments.apps "nope" not found'
    shared_sim.kubectl("create", "configmap", "twice", "-n", ns, check=True)
    cp = shared_sim.kubectl("create", "configmap", "twice", "-n", ns)
    assert cp.stderr.strip() == 'error: failed to create configmap: configmaps "twice" already exists'


@pytest.mark.parametrize("cmd", [["api-resources"], ["api-versions"], ["version", "-o", "json"],
                                 ["explain", "deployment"]])
def test_kubectl_discovery_commands(shared_sim, cmd):
    cp = shared_sim.kubectl(*cmd)
    if cmd[0] == "explain":
        # our OpenAPI is minimal: kubectl explain may not find field docs, but must not crash
        assert cp.returncode in (0, 1)
        return
    assert cp.returncode == 0, cp.stderr
    if cmd[0] == "api-resources":
        assert re.search(r"^deployments\s+deploy\s+apps/v1\s+true\s+Deployment$", cp.stdout, re.M)
    if cmd[0] == "api-versions":
        assert "apps/v1" in cp.stdout.split() and "v1" in cp.stdout.split()
    if cmd[0] == "version":
        assert json.loads(cp.stdout)["serverVersion"]["gitVersion"].startswith("v1.32")


def test_kubectl_strict_field_validation(shared_sim, ns):
    bad = DEPLOY.replace("  replicas: 2", "  replica: 2").replace("image: nginx", "imagee: x\n        image: nginx")
    cp = shared_sim.kubectl("apply", "-n", ns, "-f", "-", input=bad)
    assert cp.returncode == 1
    assert ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: unknown field '
            '"spec.replica", unknown field "spec.template.spec.containers[0].imagee"') in cp.stderr
    assert client.AppsV1Api(shared_sim.client()).list_namespaced_deployment(ns).items == []
    # --validate=warn: accepted, and the server's warning is printed
    cp = shared_sim.kubectl("apply", "--validate=warn", "-n", ns, "-f", "-", input=bad, check=True)
    assert 'Warning: unknown field "spec.replica"' in cp.stderr
    assert cp.stdout.strip() == "deployment.apps/web created"
    # valid manifests (with inline-embedded fields: volume sources, probes, configMap refs) pass
    good = DEPLOY.replace("        env: [{name: A, value: \"1\"}]\n", """\
        env: [{name: A, valueFrom: {configMapKeyRef: {name: cm, key: a}}}]
        livenessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 5}
        volumeMounts: [{name: cfg, mountPath: /cfg}]
      volumes: [{name: cfg, configMap: {name: cm}}]
""").replace("name: web\n  labels", "name: web2\n  labels")
    shared_sim.kubectl("apply", "-n", ns, "-f", "-", input=good, check=True)
