"""Least privilege (issue 5): docs/rbac.yaml grants exactly what the collection uses.

A full upgrade runs against a simulated cluster that (a) enforces the ClusterRole of docs/rbac.yaml for
the kubeconfig's user (``--authorize-rules``: anything outside it is answered 403) and (b) logs every
request (``--audit-log``).  The upgrade must succeed, no request may fall outside the role, and no rule
of the role may be unused (every rule, removed, would forbid at least one request the upgrade made),
except the few documented below that only other paths of the collection need.
"""

import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402

RBAC = os.path.join(rs.REPO, "docs", "rbac.yaml")

# (apiGroup, resource, verb) granted for a path of the collection the blog upgrade does not take.
NOT_EXERCISED_BY_BLOG_UPGRADE = {
    # precheck with istio_canary_migrate_legacy_labels: true moves namespaces from istio-injection=enabled
    # to istio.io/rev=<tag> (the `legacy` scenario)
    ("", "namespaces", "patch"),
}


def _role_file(tmp_path):
    """The ClusterRole alone (docs/rbac.yaml also holds the ServiceAccount and binding)."""
    role = rs.load_cluster_role(RBAC)
    path = tmp_path / "clusterrole.yaml"
    path.write_text(yaml.safe_dump(role))
    return role, path


def test_rbac_yaml_is_a_valid_clusterrole_with_binding():
    with open(RBAC) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) >= {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}, sorted(kinds)
    role = kinds["ClusterRole"]
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["metadata"]["name"] == "meshops-istio-upgrader"
    for rule in role["rules"]:
        assert rule.get("verbs") and "*" not in rule["verbs"], rule
        assert "*" not in (rule.get("resources") or []) and "*" not in (rule.get("apiGroups") or []), rule
    binding = kinds["ClusterRoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "meshops-istio-upgrader"}
    sa = kinds["ServiceAccount"]
    assert {"kind": "ServiceAccount", "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"]} in binding["subjects"]


def test_full_upgrade_needs_exactly_the_documented_clusterrole(tmp_path):
    role, role_path = _role_file(tmp_path)
    sim = rs.Sim(tmp_path, scenario="blog", audit=True, authorize_rules=role_path)
    try:
        rs.full_upgrade(tmp_path, sim)
        rs.assert_final_state(sim)
        entries = rs.AuditLog(sim.audit_path).entries()
        assert len(entries) > 50, "audit log too short to be a full upgrade: %d entries" % len(entries)
        # every request in the log came from the collection (and the istioctl it runs): nothing else
        # talks to this simulated cluster during the test
        mine = entries
        forbidden = [e for e in mine if str(e.get("code", e.get("status", ""))) == "403"]
        assert forbidden == [], "requests refused by the ClusterRole:\n%s" % "\n".join(map(repr, forbidden[:20]))
        outside = [e for e in mine if not rs.role_allows(role, e)]
        assert outside == [], "requests outside the ClusterRole:\n%s" % "\n".join(map(repr, outside[:20]))

        # minimal: every rule (each verb of it) is needed by some request of the upgrade
        unused = []
        for i, rule in enumerate(role["rules"]):
            if rule.get("nonResourceURLs"):
                continue
            for verb in rule["verbs"]:
                for group in rule["apiGroups"]:
                    for res in rule["resources"]:
                        if (group, res, verb) in NOT_EXERCISED_BY_BLOG_UPGRADE:
                            continue
                        sub = res.split("/", 1)
                        used = any(e.get("verb") == verb and rs.entry_group(e) == group
                                   and rs.entry_resource(e) == sub[0]
                                   and rs.entry_subresource(e) == (sub[1] if len(sub) > 1 else "")
                                   for e in mine)
                        if not used:
                            unused.append((group, res, verb))
        assert unused == [], "rules of docs/rbac.yaml no request of the upgrade needed: %s" % unused
    finally:
        sim.stop()


def test_checker_rejects_what_the_role_does_not_grant():
    """The audit check above can fail: a request the role does not cover is reported."""
    role = rs.load_cluster_role(RBAC)
    assert not rs.role_allows(role, {"verb": "delete", "resource": "namespaces", "namespace": None, "name": "foo"})
    assert not rs.role_allows(role, {"verb": "get", "resource": "secrets", "namespace": "foo", "name": "x"})
    assert rs.role_allows(role, {"verb": "patch", "resource": "deployments", "group": "apps",
                                 "namespace": "bar", "name": "bar"})
