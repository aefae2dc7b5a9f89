"""Least privilege (issue 5): docs/rbac.yaml grants exactly what the collection uses.

The full upgrade (every phase through ansible-playbook) runs against a simulated cluster that enforces
docs/rbac.yaml for the kubeconfig's user (``--authorize-rules``: anything outside it is answered 403) and
logs every request (``--audit-log``).  The upgrade must succeed; every request must be allowed -- the
modules' requests (User-Agent ``meshops.istio``) by the modules' ClusterRole alone, istioctl's by the
istioctl ClusterRole alone --; and every verb of every rule must have been used by some request of its
consumer, except the few listed below with the path of the collection that needs them.
"""

import json
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402

RBAC = os.path.join(rs.REPO, "docs", "rbac.yaml")
MODULES_ROLE = "meshops-istio-upgrader-modules"
ISTIOCTL_ROLE = "meshops-istio-upgrader-istioctl"

# (apiGroup, resource, verb) of the modules' role that the blog upgrade does not use, and why they are needed.
NOT_EXERCISED_BY_BLOG_UPGRADE = {
    # precheck with istio_canary_migrate_legacy_labels: true (istio_namespace_injection) reads and
    # relabels namespaces on istio-injection=enabled (the `legacy` scenario)
    ("", "namespaces", "get"),
    ("", "namespaces", "patch"),
    # rollout_restart restarts and watches StatefulSets and DaemonSets too; blog only has Deployments
    ("apps", "statefulsets", "watch"),
    ("apps", "statefulsets", "patch"),
    ("apps", "daemonsets", "watch"),
    ("apps", "daemonsets", "patch"),
    # OpenShift DeploymentConfigs, Argo Rollouts and the Sail operator's objects: blog has none of them; the
    # Sail upgrade on scenario sail (test_sail_upgrade.py) runs under docs/rbac.yaml and checks these
    ("apps.openshift.io", "deploymentconfigs", "list"),
    ("apps.openshift.io", "deploymentconfigs", "watch"),
    ("apps.openshift.io", "deploymentconfigs/instantiate", "create"),
    ("argoproj.io", "rollouts", "list"),
    ("argoproj.io", "rollouts", "watch"),
    ("argoproj.io", "rollouts", "patch"),
    ("sailoperator.io", "istios", "get"),
    ("sailoperator.io", "istios", "list"),
    ("sailoperator.io", "istios", "patch"),
    ("sailoperator.io", "istiorevisiontags", "get"),
    ("sailoperator.io", "istiorevisiontags", "list"),
    ("sailoperator.io", "istiorevisiontags", "patch"),
    ("sailoperator.io", "istiorevisions", "get"),
    ("sailoperator.io", "istiorevisions", "list"),
}

# (apiGroup, resource, verb) of the istioctl role that istioctl only asks about: `istioctl x precheck`
# sends a SelfSubjectAccessReview for each and fails (IST0141) unless it is allowed.
CHECKED_BY_ISTIOCTL_PRECHECK = {
    ("", "namespaces", "create"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("rbac.authorization.k8s.io", "clusterroles", "create"),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create"),
    ("policy", "poddisruptionbudgets", "create"),
}


def _agent(entry):
    return (entry.get("userAgent") or "").split("/")[0]


def _unused(role, entries, exceptions=()):
    unused = []
    for rule in role["rules"]:
        for verb in rule["verbs"]:
            for group in rule["apiGroups"]:
                for res in rule["resources"]:
                    if (group, res, verb) in exceptions:
                        continue
                    sub = res.split("/", 1)
                    used = any(e.get("verb") == verb and rs.entry_group(e) == group
                               and rs.entry_resource(e) == sub[0]
                               and rs.entry_subresource(e) == (sub[1] if len(sub) > 1 else "")
                               and (not rule.get("resourceNames") or e.get("name") in rule["resourceNames"])
                               for e in entries)
                    if not used:
                        unused.append((group, res, verb))
    return unused


def test_rbac_yaml_is_an_aggregated_clusterrole_bound_to_a_serviceaccount():
    docs = rs.manifest_objects(RBAC)
    roles = rs.load_rbac(RBAC)
    assert set(roles) == {"meshops-istio-upgrader", MODULES_ROLE, ISTIOCTL_ROLE}, sorted(roles)
    top = roles["meshops-istio-upgrader"]
    assert top["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert top["aggregationRule"]["clusterRoleSelectors"] == [
        {"matchLabels": {"meshops.istio/aggregate-to-upgrader": "true"}}]
    effective = rs.load_cluster_role(RBAC)
    assert len(effective["rules"]) == len(roles[MODULES_ROLE]["rules"]) + len(roles[ISTIOCTL_ROLE]["rules"])
    for rule in effective["rules"]:
        assert rule.get("verbs") and "*" not in rule["verbs"], rule
        assert rule.get("resources") and "*" not in rule["resources"], rule
        assert rule.get("apiGroups") is not None and "*" not in rule["apiGroups"], rule
        assert "secrets" not in rule["resources"], rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
        if "clusterroles" in rule["resources"]:
            # creating a ClusterRole cannot escalate privileges, reading one (cleanup's leftover check) neither
            assert rule["verbs"] in (["create"], ["get"]), rule
    bindings = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    sas = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert len(bindings) == 1 and len(sas) == 1
    assert bindings[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                      "name": "meshops-istio-upgrader"}
    sa = sas[0]
    assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]} in bindings[0]["subjects"]


def test_rbac_yaml_is_one_document_that_kubectl_applies(kubesim):
    """One YAML document (a `kind: List`, so linters that read one document per file read it whole) that the
    real kubectl expands and applies: every object exists on the cluster afterwards, and a re-apply is a no-op."""
    with open(RBAC) as fh:
        assert len([d for d in yaml.safe_load_all(fh) if d]) == 1
    sim = kubesim("blog")
    # --validate=false: kubectl's client-side schema check needs the server's OpenAPI document, which the
    # simulator does not publish; the objects are still decoded and admitted by the (simulated) API server.
    applied = sim.kubectl("apply", "--validate=false", "-f", RBAC, check=True)
    assert applied.stdout.count("created") == 5, applied.stdout
    for obj in rs.manifest_objects(RBAC):
        ns = obj["metadata"].get("namespace")
        got = sim.kubectl("get", obj["kind"].lower(), obj["metadata"]["name"], *(["-n", ns] if ns else []),
                          "-o", "json", check=True)
        assert json.loads(got.stdout)["metadata"]["labels"] == obj["metadata"]["labels"]
    again = sim.kubectl("apply", "--validate=false", "-f", RBAC, check=True)
    assert again.stdout.count("unchanged") == 5, again.stdout


def test_full_upgrade_needs_exactly_the_documented_clusterrole(tmp_path):
    # the run is shared with the fault test, which uses its end state as the healthy reference
    ref = rs.clean_upgrade(tmp_path)
    entries = [e for e in ref["entries"] if _agent(e) != "reliability-tests"]  # leave out the test's reads
    assert len(entries) > 50, "audit log too short to be a full upgrade: %d entries" % len(entries)
    forbidden = [e for e in entries if str(e.get("code")) == "403"]
    assert forbidden == [], "requests refused by docs/rbac.yaml:\n%s" % "\n".join(map(repr, forbidden[:20]))

    agents = {_agent(e) for e in entries}
    assert agents == {"meshops.istio", "istioctl"}, agents
    modules = [e for e in entries if _agent(e) == "meshops.istio" and e.get("resource")]
    istioctl = [e for e in entries if _agent(e) == "istioctl" and e.get("resource")]
    modules_role = rs.load_cluster_role(RBAC, MODULES_ROLE)
    istioctl_role = rs.load_cluster_role(RBAC, ISTIOCTL_ROLE)

    outside = [e for e in modules if not rs.role_allows(modules_role, e)]
    assert outside == [], "module requests outside %s:\n%s" % (MODULES_ROLE, "\n".join(map(repr, outside[:20])))
    outside = [e for e in istioctl if not rs.role_allows(istioctl_role, e)]
    assert outside == [], "istioctl requests outside %s:\n%s" % (ISTIOCTL_ROLE, "\n".join(map(repr, outside[:20])))

    assert _unused(modules_role, modules, NOT_EXERCISED_BY_BLOG_UPGRADE) == []
    assert _unused(istioctl_role, istioctl, CHECKED_BY_ISTIOCTL_PRECHECK) == []
    # istioctl really asked about those (one SelfSubjectAccessReview each per precheck)
    reviews = [e for e in istioctl if e.get("resource") == "selfsubjectaccessreviews"]
    assert len(reviews) >= len(CHECKED_BY_ISTIOCTL_PRECHECK), reviews


def test_checker_rejects_what_the_role_does_not_grant():
    """The audit check above can fail: requests the role does not cover are reported."""
    role = rs.load_cluster_role(RBAC)
    assert not rs.role_allows(role, {"verb": "delete", "resource": "namespaces", "apiGroup": "", "name": "foo"})
    assert not rs.role_allows(role, {"verb": "get", "resource": "secrets", "apiGroup": "", "namespace": "foo",
                                     "name": "x"})
    assert not rs.role_allows(rs.load_cluster_role(RBAC, MODULES_ROLE),
                              {"verb": "update", "resource": "configmaps", "apiGroup": "",
                               "namespace": "istio-system", "name": "istio-1-15-4"})
    assert rs.role_allows(role, {"verb": "patch", "resource": "deployments", "apiGroup": "apps",
                                 "namespace": "bar", "name": "bar"})
    assert rs.role_allows(role, {"verb": "update", "resource": "configmaps", "apiGroup": "",
                                 "namespace": "istio-system", "name": "meshops-istio-upgrade"})
