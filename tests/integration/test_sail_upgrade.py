"""playbooks/upgrade.yml on a Sail-managed mesh (OpenShift Service Mesh 3, kubesim scenario ``sail``): every phase
as its own ansible-playbook run, the control plane manager detected (no istioctl anywhere: the inventory points
istio_canary_istioctl at a path that does not exist), asserting on what the simulated cluster holds afterwards.

Scenario ``sail``: Istio ``default`` at v1.29.6 (RevisionBased, IstioRevision ``default-v1-29-6``), the
IstioRevisionTag ``default`` following it, Deployments in foo/bar/baz, the DeploymentConfig ``bar/ratings``, the
Argo Rollout ``baz/reviews`` and the injected gateway ``istio-ingress/istio-ingressgateway``.
"""

from __future__ import annotations

import pytest

import upgrade_support as us
from kubesim.testing import KubeSim

OLD, OLD_VERSION = "default-v1-29-6", "1.29.6"
NEW, NEW_VERSION = "default-v1-30-3", "1.30.3"
SAIL = "/apis/sailoperator.io/v1"
WORKLOADS = {  # id -> (namespace, pod label selector)
    "bar/Deployment/bar": ("bar", "app=bar"),
    "bar/DeploymentConfig/ratings": ("bar", "deploymentconfig=ratings"),
    "foo/Deployment/foo": ("foo", "app=foo"),
    "baz/Deployment/baz": ("baz", "app=baz"),
    "baz/Rollout/reviews": ("baz", "app=reviews"),
    "istio-ingress/Deployment/istio-ingressgateway": ("istio-ingress", "app=istio-ingressgateway"),
}


RBAC = us.ROOT / "docs" / "rbac.yaml"
# (apiGroup, resource, verb) of docs/rbac.yaml's rules for the platform kinds and Sail that this upgrade uses
USED_HERE = {
    ("apps.openshift.io", "deploymentconfigs", "list"), ("apps.openshift.io", "deploymentconfigs", "watch"),
    ("apps.openshift.io", "deploymentconfigs", "create", "instantiate"),
    ("argoproj.io", "rollouts", "list"), ("argoproj.io", "rollouts", "watch"), ("argoproj.io", "rollouts", "patch"),
    ("sailoperator.io", "istios", "get"), ("sailoperator.io", "istios", "list"), ("sailoperator.io", "istios", "patch"),
    ("sailoperator.io", "istiorevisiontags", "get"), ("sailoperator.io", "istiorevisiontags", "list"),
    ("sailoperator.io", "istiorevisions", "get"), ("sailoperator.io", "istiorevisions", "list"),
}


@pytest.fixture
def sail(tmp_path):
    """Scenario sail; the kubeconfig's user holds only docs/rbac.yaml's permissions (403 outside them)."""
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("sail", workdir=str(workdir), pod_ready_seconds=0.2, audit=True, authorize_rules=str(RBAC)) as sim:
        yield sim


def audit_uses(sim):
    """(apiGroup, resource, verb[, subresource]) of the collection's requests, and the refused ones."""
    used, refused = set(), []
    for entry in sim.audit_records():
        if not str(entry.get("userAgent") or "").startswith("meshops.istio"):
            continue
        if str(entry.get("code")) == "403":
            refused.append(entry)
        resource = entry.get("resource") or ""
        group = entry.get("apiGroup", entry.get("group"))
        if group is None:
            group = resource.split(".", 1)[1] if "." in resource else ""
        key = (group, resource.split(".", 1)[0], entry.get("verb"))
        used.add(key + ((entry["subresource"],) if entry.get("subresource") else ()))
    return used, refused


def inventory(tmp_path, sim, **group_vars):
    values = {"istio_canary_to_revision": NEW, "istio_canary_to_version": NEW_VERSION,
              "istio_canary_istioctl": "/nonexistent/istioctl", "istio_canary_wait_timeout": 180,
              "istio_canary_waves": [{"name": "wave1", "namespaces": ["bar"]},
                                     {"name": "wave2", "namespaces": ["foo", "baz"]}]}
    values.update(group_vars)
    return us.write_inventory(tmp_path / "inventory", {"sail": sim.kubeconfig}, **values)


def phase(inv, tags, tmp_path, **kw):
    return us.run_phase(inv, tags, workdir=tmp_path / "runs", **kw)


def ok(run):
    assert run.ok, run
    return run


def sail_obj(sim, kind, name):
    code, _headers, body = sim.request("GET", "%s/%s/%s" % (SAIL, kind, name))
    if code == 404:
        return None
    assert code == 200, body[:300]
    import json
    return json.loads(body)


def active(sim):
    return sail_obj(sim, "istios", "default")["status"].get("activeRevisionName")


def tag_revision(sim):
    return sail_obj(sim, "istiorevisiontags", "default")["status"].get("istioRevision")


def revisions_of(sim, workload):
    """Revisions (from each live pod's istio.io/rev annotation) of a workload's running pods."""
    ns, selector = WORKLOADS[workload]
    from urllib.parse import quote
    pods = sim.get_json("/api/v1/namespaces/%s/pods?labelSelector=%s" % (ns, quote(selector)))["items"]
    return sorted(set((p["metadata"].get("annotations") or {}).get("istio.io/rev") or "none" for p in pods
                      if not p["metadata"].get("deletionTimestamp") and p["status"].get("phase") == "Running"))


def sail_versions(sim):
    return dict((k, (sail_obj(sim, k, "default") or {}).get("metadata", {}).get("resourceVersion"))
                for k in ("istios", "istiorevisiontags"))


def test_whole_upgrade_on_sail_then_every_phase_again_changes_nothing(sail, tmp_path):
    sim = sail
    inv = inventory(tmp_path, sim)
    # the whole upgrade in check mode: planned on Sail's terms, nothing written
    before = sail_versions(sim)
    dry = ok(phase(inv, None, tmp_path, check=True, diff=True))
    assert before == sail_versions(sim) and us.upgrade_record(sim) is None
    planned = dict((s["phase"], s) for s in dry.summaries())
    assert planned["install"]["manager"] == "sail"
    assert any("update Istio default (spec.version v1.29.6 -> v1.30.3)" in line for line in planned["install"]["planned"])
    assert any("IstioRevision %s" % OLD in line and "Sail deletes it" in line for line in planned["cleanup"]["planned"])

    install = ok(phase(inv, "precheck,install", tmp_path))
    assert sail_obj(sim, "istios", "default")["spec"]["version"] == "v" + NEW_VERSION
    new = sail_obj(sim, "istiorevisions", NEW)
    assert new and next(c for c in new["status"]["conditions"] if c["type"] == "Ready")["status"] == "True"
    assert sail_obj(sim, "istiorevisions", OLD) is not None and active(sim) == NEW
    assert tag_revision(sim) == NEW  # the tag follows the Istio: Sail moved it
    summaries = dict((s["phase"], s) for s in install.summaries())
    assert summaries["install"]["installed_now"] is True and summaries["install"]["manager"] == "sail"
    record = us.upgrade_record(sim)
    assert (record["from_revision"], record["from_version"], record["to_revision"]) == (OLD, OLD_VERSION, NEW)
    assert all(revisions_of(sim, w) == [OLD] for w in WORKLOADS)  # nothing restarted yet

    webhook = sim.get_json("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                           "istio-revision-tag-default")
    tag = ok(phase(inv, "tag,gateways", tmp_path))
    summaries = dict((s["phase"], s) for s in tag.summaries())
    assert summaries["tag"]["moved"] is False and summaries["tag"]["to"] == NEW
    after = sim.get_json("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                         "istio-revision-tag-default")
    assert after["metadata"]["resourceVersion"] == webhook["metadata"]["resourceVersion"]  # Sail's, untouched
    assert after["metadata"]["labels"]["managed-by"] == "sail-operator"
    assert revisions_of(sim, "istio-ingress/Deployment/istio-ingressgateway") == [NEW]

    wave1 = ok(phase(inv, "wave1,verify", tmp_path))
    summaries = dict((s["phase"], s) for s in wave1.summaries())
    assert summaries["wave1"]["moved"] == ["bar/Deployment/bar: 1.29.6 -> 1.30.3",
                                           "bar/DeploymentConfig/ratings: 1.29.6 -> 1.30.3"]
    assert revisions_of(sim, "bar/DeploymentConfig/ratings") == [NEW]
    assert revisions_of(sim, "baz/Rollout/reviews") == [OLD]

    # cleanup before the last wave refuses and names what keeps the old revision in use
    early = phase(inv, "cleanup", tmp_path)
    assert not early.ok
    message = " ".join(early.failures())
    assert "still in use" in message and "baz/Rollout/reviews" in message and "foo/Deployment/foo" in message, message
    assert sail_obj(sim, "istiorevisions", OLD) is not None

    wave2 = ok(phase(inv, "wave2,verify", tmp_path))
    moved = dict((s["phase"], s) for s in wave2.summaries())["wave2"]["moved"]
    assert "baz/Rollout/reviews: 1.29.6 -> 1.30.3" in moved and "foo/Deployment/foo: 1.29.6 -> 1.30.3" in moved
    assert all(revisions_of(sim, w) == [NEW] for w in WORKLOADS), dict((w, revisions_of(sim, w)) for w in WORKLOADS)

    cleanup = ok(phase(inv, "cleanup", tmp_path))
    summary = cleanup.summaries()[0]
    # Sail may already have deleted it during wave2 and verify (30s after its last pod): then there was nothing to
    # wait for; otherwise cleanup waited for the deletion (test_sail_modules.py waits for it deterministically)
    waited = any("IstioRevision %s" % OLD in line for line in summary["planned"])
    assert summary["removed_now"] is waited, summary
    assert sail_obj(sim, "istiorevisions", OLD) is None
    assert "istiod-%s" % OLD not in us.control_plane(sim)["istiod"]
    record = us.upgrade_record(sim)
    for key in ("phase.precheck", "phase.install", "phase.tag", "phase.gateways", "phase.verify", "phase.cleanup",
                "wave.wave1.done", "wave.wave2.done"):
        assert key in record, (key, record)

    # every phase again: nothing changes
    versions = sail_versions(sim)
    again = ok(phase(inv, None, tmp_path))
    assert again.changed() == 0, [e["task"] for e in again.changed_tasks()]
    assert sail_versions(sim) == versions

    # all of it under docs/rbac.yaml: nothing refused, and its rules for these kinds were needed
    used, refused = audit_uses(sim)
    assert refused == [], refused[:5]
    assert USED_HERE - used == set(), sorted(USED_HERE - used)


def test_sail_refusals_then_rollback_to_the_old_version(sail, tmp_path):
    sim = sail
    # the revision name is Sail's to choose: a canary name of istioctl's kind is refused with the right one
    wrong = phase(inventory(tmp_path, sim, istio_canary_to_revision="1-30-3"), "precheck", tmp_path)
    assert not wrong.ok and "istio_canary_to_revision: %s" % NEW in " ".join(wrong.failures()), wrong
    assert us.upgrade_record(sim) is None

    inv = inventory(tmp_path, sim)
    ok(phase(inv, "precheck,install,tag,gateways,wave1", tmp_path))
    assert revisions_of(sim, "bar/DeploymentConfig/ratings") == [NEW] and active(sim) == NEW

    back = ok(phase(inv, "rollback", tmp_path, extra_vars={"istio_canary_rollback": True}))
    assert sail_obj(sim, "istios", "default")["spec"]["version"] == "v" + OLD_VERSION
    assert active(sim) == OLD and tag_revision(sim) == OLD
    for workload in WORKLOADS:
        assert revisions_of(sim, workload) == [OLD], (workload, revisions_of(sim, workload))
    summary = back.summaries()[-1]
    assert "bar/DeploymentConfig/ratings: 1.30.3 -> 1.29.6" in summary["moved_back"], summary
    record = us.upgrade_record(sim)
    assert "phase.rollback" in record and "phase.tag" not in record
    # the new revision is now inactive and unused: Sail deletes it after its grace period
    sim.wait_for(lambda: sail_obj(sim, "istiorevisions", NEW) is None, timeout=120,
                 message="Sail deletes the unused %s" % NEW)
