"""Authentication (bearer token, 401), authorization (--authorize-rules, 403, SSAR), TLS,
/kubesim/stats and the audit log."""

import json
import ssl
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_missing_or_wrong_token_gets_401(shared_sim, tmp_path):
    for token in (None, "wrong-token"):
        code, _, raw = shared_sim.request("GET", "/api/v1/namespaces", token=token)
        assert code == 401 and json.loads(raw) == UNAUTHORIZED
    code, _, raw = shared_sim.request("GET", "/kubesim/stats", token="nope")
    assert code == 401
    cfg = client.Configuration()
    cfg.host = shared_sim.url
    ca = tmp_path / "ca.pem"
    ca.write_bytes(shared_sim.ca_pem)
    cfg.ssl_ca_cert = str(ca)
    cfg.api_key = {"authorization": "Bearer not-the-token"}
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(client.ApiClient(cfg)).list_namespace()
    assert e.value.status == 401


def test_kubectl_with_bad_token_fails(shared_sim, tmp_path):
    import yaml
    cfg = yaml.safe_load(open(shared_sim.kubeconfig))
    cfg["users"][0]["user"]["token"] = "bad"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    cp = shared_sim.kubectl("--kubeconfig", str(bad), "get", "ns")
    assert cp.returncode != 0
    assert "You must be logged in to the server" in cp.stderr or "Unauthorized" in cp.stderr


def test_tls_is_verified_with_the_kubeconfig_ca(shared_sim):
    # the CA from the kubeconfig validates the server certificate for 127.0.0.1
    ctx = ssl.create_default_context(cadata=shared_sim.ca_pem.decode())
    req = urllib.request.Request(shared_sim.url + "/version", headers={"Authorization": f"Bearer {shared_sim.token}"})
    with urllib.request.urlopen(req, context=ctx) as r:
        assert json.loads(r.read())["gitVersion"].startswith("v1.")
    # and a client that does not trust it fails
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(req, context=ssl.create_default_context())
    # localhost is in the certificate too
    req2 = urllib.request.Request(shared_sim.url.replace("127.0.0.1", "localhost") + "/version",
                                  headers={"Authorization": f"Bearer {shared_sim.token}"})
    with urllib.request.urlopen(req2, context=ctx) as r:
        assert r.status == 200


RULES = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: ignored}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: upgrader}
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]
- apiGroups: [apps]
  resources: [deployments/scale]
  verbs: [get]
  resourceNames: [allowed]
"""


def test_authorize_rules_restrict_the_user(kubesim_factory, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    sim = kubesim_factory(authorize_rules=str(rules))
    api = sim.client()
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    assert {n.metadata.name for n in core.list_namespace().items} >= {"default", "kube-system"}
    assert apps.list_namespaced_deployment("default").items == []
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map("default")
    body = json.loads(e.value.body)
    assert e.value.status == 403
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'configmaps is forbidden: User "kubesim-admin" cannot list resource "configmaps" in '
                               'API group "" in the namespace "default"',
                    "reason": "Forbidden", "details": {"kind": "configmaps"}, "code": 403}
    with pytest.raises(ApiException) as e:
        apps.delete_namespaced_deployment("x", "default")
    assert json.loads(e.value.body)["message"] == (
        'deployments.apps "x" is forbidden: User "kubesim-admin" cannot delete resource "deployments" in API group '
        '"apps" in the namespace "default"')
    with pytest.raises(ApiException) as e:
        core.create_namespace({"metadata": {"name": "nope"}})
    assert 'cannot create resource "namespaces" in API group "" at the cluster scope' in json.loads(e.value.body)[
        "message"]
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment_scale("other", "default")
    assert 'cannot get resource "deployments/scale"' in json.loads(e.value.body)["message"]
    # resourceNames: the named object passes authorization (then 404: it does not exist)
    with pytest.raises(ApiException) as e:
        apps.read_namespaced_deployment_scale("allowed", "default")
    assert e.value.status == 404
    # discovery stays open, so kubectl works for what is allowed
    cp = sim.kubectl("get", "ns", "default", "-o", "name")
    assert cp.returncode == 0 and cp.stdout.strip() == "namespace/default"
    cp = sim.kubectl("get", "configmaps", "-n", "default")
    assert cp.returncode != 0 and "Forbidden" in cp.stderr or "forbidden" in cp.stderr
    cp = sim.kubectl("auth", "can-i", "patch", "deployments", "-n", "default")
    assert cp.stdout.strip() == "yes"
    cp = sim.kubectl("auth", "can-i", "delete", "deployments", "-n", "default")
    assert cp.stdout.strip() == "no"
    cp = sim.kubectl("auth", "can-i", "--list", "-n", "default")
    assert cp.returncode == 0
    assert any(line.split()[0] == "deployments.apps" and "[get list watch patch]" in line
               for line in cp.stdout.splitlines() if line.strip())
    assert "configmaps" not in cp.stdout
    # SelfSubjectAccessReview follows the rules
    authz = client.AuthorizationV1Api(api)

    def can(verb, resource, group="apps", sub=None, name=None):
        attrs = {"verb": verb, "group": group, "resource": resource, "namespace": "default"}
        if sub:
            attrs["subresource"] = sub
        if name:
            attrs["name"] = name
        return authz.create_self_subject_access_review({"spec": {"resourceAttributes": attrs}}).status.allowed

    assert can("patch", "deployments") is True
    assert can("update", "deployments") is False
    assert can("get", "deployments", sub="scale", name="allowed") is True
    assert can("get", "deployments", sub="scale", name="other") is False
    assert can("list", "namespaces", group="") is True


def test_stats_count_requests_by_verb_and_resource(kubesim_factory):
    sim = kubesim_factory()
    core = client.CoreV1Api(sim.client())
    before = sim.stats()
    core.list_namespace()
    core.list_namespace()
    core.create_namespaced_config_map("default", {"metadata": {"name": "s1"}})
    core.read_namespaced_config_map("s1", "default")
    after = sim.stats()
    assert after["by_verb_resource"]["list"]["namespaces"] - before["by_verb_resource"].get("list", {}).get(
        "namespaces", 0) == 2
    assert after["by_verb_resource"]["create"]["configmaps"] == 1
    assert after["by_verb_resource"]["get"]["configmaps"] == 1
    assert after["total"] - before["total"] == 4  # /kubesim/stats itself is not counted
    assert after["by_code"]["201"] >= 1


def test_audit_log_records_each_request(kubesim_factory):
    sim = kubesim_factory()
    apps = client.AppsV1Api(sim.client())
    body = {"metadata": {"name": "aud"}, "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "b"}},
                                                  "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
                                                      "containers": [{"name": "c", "image": "i:1"}]}}}}
    apps.create_namespaced_deployment("default", body, dry_run="All")
    apps.create_namespaced_deployment("default", body)
    apps.patch_namespaced_deployment_scale("aud", "default", {"spec": {"replicas": 1}})
    with pytest.raises(ApiException):
        apps.read_namespaced_deployment("missing", "default")
    recs = [r for r in sim.audit_records() if r.get("resource") == "deployments"]
    slim = [(r["verb"], r["namespace"], r["name"], r["subresource"], r["code"], r["dryRun"], r["user"],
             r["apiGroup"]) for r in recs]
    assert slim == [
        ("create", "default", "aud", "", 201, True, "kubesim-admin", "apps"),
        ("create", "default", "aud", "", 201, False, "kubesim-admin", "apps"),
        ("patch", "default", "aud", "scale", 200, False, "kubesim-admin", "apps"),
        ("get", "default", "missing", "", 404, False, "kubesim-admin", "apps"),
    ]
