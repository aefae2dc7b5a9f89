"""Issue 12 end to end: one planner decides every phase (tests/kubesim, through ansible-playbook).

Each numbered case of the issue: the cluster and the upgrade record stay as they were (or change only as
intended), and the message says what is wrong and what to do.  Then the whole upgrade planned with
``--check --diff`` is compared with what a real run does, phase by phase.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import upgrade_support as us
from kubesim.testing import KubeSim

OLD_REV, OLD_VERSION = "1-14-6", "1.14.6"
NEW_REV, NEW_VERSION = "1-15-4", "1.15.4"
WATCHED = {  # what the planner names in its changes: path -> kind
    "/apis/apps/v1/deployments": "Deployment",
    "/api/v1/services": "Service",
    "/api/v1/namespaces": "Namespace",
    "/api/v1/configmaps": "ConfigMap",
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
    "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
}
EVERYTHING = dict(WATCHED, **{"/api/v1/pods": "Pod", "/apis/apps/v1/replicasets": "ReplicaSet",
                              "/api/v1/serviceaccounts": "ServiceAccount"})


def simulator(tmp_path, name="sim", scenario="blog"):
    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    return KubeSim(scenario, workdir=str(workdir), pod_ready_seconds=0.2, audit=False)


def inventory(tmp_path, sims, name="inventory", **group_vars):
    group_vars.setdefault("istio_canary_wait_timeout", 120)
    return us.write_inventory(tmp_path / name, sims, **group_vars)


def run(inv, tags, tmp_path, **kw):
    return us.run_phase(inv, tags, workdir=tmp_path / "runs", **kw)


def ok(result):
    assert result.ok, result
    return result


def refused(result, *expected):
    assert not result.ok, result
    message = " ".join(result.failures())
    for text in expected:
        assert text in message, (text, message)
    return message


def snapshot(sim, paths=None):
    """{(kind, namespace, name): (uid, resourceVersion, generation)} of what ``paths`` list."""
    out = {}
    for path, kind in (paths or EVERYTHING).items():
        for obj in sim.get_json(path).get("items") or []:
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                continue
            key = (kind, meta.get("namespace") or "", meta["name"])
            out[key] = (meta.get("uid"), meta.get("resourceVersion"), meta.get("generation"))
    return out


def assert_unchanged(sim, before, what):
    after = snapshot(sim)
    changed = sorted(set(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    assert not changed, "%s changed the cluster: %s" % (what, changed)


def record(sim):
    return us.upgrade_record(sim)


def tag_webhooks(sim):
    return sorted(m["metadata"]["name"] for m in sim.get_json(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")["items"]
        if "istio.io/tag" in (m["metadata"].get("labels") or {}))


# --- refusals on an untouched cluster (nothing may change) ------------------------------------------------

@pytest.fixture(scope="module")
def untouched(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("untouched")
    with simulator(tmp_path) as sim:
        yield sim, tmp_path


def test_install_enforces_what_precheck_refuses(untouched):
    """Defect 1: with istioctl 1.17.0, install refuses the 3-minor jump as precheck does, precheck run or not."""
    sim, tmp_path = untouched
    inv = inventory(tmp_path, {"blog": sim.kubeconfig}, name="inv-117", istio_canary_to_revision="1-17-0",
                    istio_canary_to_version="1.17.0")
    before = snapshot(sim)
    for tags in ("install", "precheck", "precheck,install"):
        result = run(inv, tags, tmp_path, env={"KUBESIM_ISTIOCTL_VERSION": "1.17.0"})
        refused(result, "1.14.6 -> 1.17.0 spans 3 minor versions", "at most 2")
        assert "istiod-1-17-0" not in us.control_plane(sim)["istiod"]
    assert_unchanged(sim, before, "install of 1-17-0")
    assert record(sim) is None


def test_a_mistyped_tag_is_refused_before_anything_moves(untouched):
    """Defect 2: istio_canary_tag=defualt is refused by precheck and by every later phase; no webhook is
    created and no gateway restarted."""
    sim, tmp_path = untouched
    inv = inventory(tmp_path, {"blog": sim.kubeconfig}, name="inv-typo", istio_canary_tag="defualt")
    before = snapshot(sim)
    for tags in ("precheck", "install", "tag"):
        refused(run(inv, tags, tmp_path), "Revision tag 'defualt' does not exist", "istio_canary_create_tag: true")
    refused(run(inv, "gateways", tmp_path), "revision tag 'defualt' points at nothing (the tag does not exist)")
    assert tag_webhooks(sim) == ["istio-revision-tag-default"]
    assert_unchanged(sim, before, "a mistyped tag")
    assert record(sim) is None


def test_rollback_without_its_guard_and_a_dotted_old_revision(untouched):
    """Defects 8 and 7: rollback without the guard says how to ask for it; a dotted istio_canary_from_revision
    gets its hint on that variable."""
    sim, tmp_path = untouched
    inv = inventory(tmp_path, {"blog": sim.kubeconfig}, name="inv-plain")
    before = snapshot(sim)
    message = refused(run(inv, "rollback", tmp_path), "Rollback is guarded",
                      "--tags rollback -e istio_canary_rollback=true")
    assert "nothing was changed" in message
    message = refused(run(inv, "precheck", tmp_path, extra_vars={"istio_canary_from_revision": "1.14.6"}),
                      "istio_canary_from_revision '1.14.6'", "use '1-14-6'")
    assert "istio_canary_to_revision" not in message, message
    assert_unchanged(sim, before, "rollback without guard, dotted old revision")
    assert record(sim) is None


# --- part-way through an upgrade ---------------------------------------------------------------------------

def test_input_never_corrupts_the_record_of_an_upgrade_in_progress(tmp_path):
    """Defects 3, 5, 6 and 7 on a cluster after wave1."""
    with simulator(tmp_path) as sim:
        inv = inventory(tmp_path, {"blog": sim.kubeconfig})
        ok(run(inv, "precheck,install,tag,gateways,wave1", tmp_path))
        progress = record(sim)
        assert progress["from_revision"] == OLD_REV and progress["wave.wave1.namespaces"] == "bar"

        # 3: the target given as the old revision, on a wave: refused, the record keeps the old revision
        before = snapshot(sim)
        message = refused(run(inv, "wave2", tmp_path, extra_vars={"istio_canary_from_revision": NEW_REV}),
                          "istio_canary_from_revision is 1-15-4, the target revision itself",
                          "here the old revision is 1-14-6, from the record")
        # 7: cleanup with from = to names the variable that was set
        message = refused(run(inv, "cleanup", tmp_path, extra_vars={"istio_canary_from_revision": NEW_REV}),
                          "istio_canary_from_revision is 1-15-4")
        assert "set istio_canary_from_revision." not in message
        assert_unchanged(sim, before, "from = to")
        assert record(sim) == progress

        # 5: rollback planned in check mode with --diff: reports the way back, changes nothing
        back = ok(run(inv, "rollback", tmp_path, check=True, diff=True, extra_vars={"istio_canary_rollback": True}))
        summary = back.summaries()[0]
        assert summary["phase"] == "rollback" and summary["namespaces"] == ["bar", "istio-ingress"]
        assert "update MutatingWebhookConfiguration istio-revision-tag-default" in " ".join(summary["planned"])
        assert summary["moved_back"] == ["bar/Deployment/bar: 1.15.4 -> 1.14.6",
                                         "istio-ingress/Deployment/istio-ingressgateway: 1.15.4 -> 1.14.6"]
        diffs = [r.get("diff") for e in back.tasks(status="ok") if e.get("action") == "meshops.istio.rollout_restart"
                 for r in e.get("results") or [e] if r.get("diff")]
        assert diffs, "rollout_restart in check mode gave no diff"
        assert_unchanged(sim, before, "rollback --check")
        assert record(sim) == progress

        # 6: a precheck for another target: refused while the upgrade is in progress ...
        other = {"istio_canary_to_revision": "1-16-0", "istio_canary_to_version": "1.16.0"}
        refused(run(inv, "precheck", tmp_path, extra_vars=other, env={"KUBESIM_ISTIOCTL_VERSION": "1.16.0"}),
                "An upgrade to 1-15-4 (1.15.4) is in progress", "wave1", "istio_canary_abandon_upgrade: true")
        assert_unchanged(sim, before, "precheck for another target")
        assert record(sim) == progress
        # ... and abandoned on purpose: the new record keeps the abandoned one's history
        ok(run(inv, "precheck", tmp_path, extra_vars=dict(other, istio_canary_abandon_upgrade=True),
               env={"KUBESIM_ISTIOCTL_VERSION": "1.16.0"}))
        new = record(sim)
        assert new["to_revision"] == "1-16-0" and new["from_revision"] == NEW_REV
        assert not [k for k in new if k.startswith("wave.")]
        kept = json.loads(new["abandoned.1"])
        assert dict((k, v) for k, v in kept.items() if k != "abandoned_at") == progress

        # 7: a wave whose tag points at an istiod that was deleted says so (never "points at X, not at X")
        sim.request("DELETE", "/apis/apps/v1/namespaces/istio-system/deployments/istiod-%s" % NEW_REV)
        before = snapshot(sim)
        message = refused(run(inv, "wave2", tmp_path),
                          "points at revision 1-15-4, whose istiod (istiod-1-15-4) is gone",
                          "revision 1-15-4 is not installed")
        assert "not at 1-15-4" not in message, message


# --- credentials the AWX way (defect 4) --------------------------------------------------------------------

def _only_in(sim, name):
    """A namespace labelled both ways: istioctl x precheck reports it (IST0113) on this cluster only."""
    sim.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {"istio-injection": "enabled", "istio.io/rev": "default"}}})


def test_istioctl_checks_the_cluster_the_modules_use(tmp_path):
    """K8S_AUTH_KUBECONFIG names cluster A, ~/.kube/config cluster B, no kubeconfig host variable: precheck
    (istioctl included) checks A. Without either, precheck and install fail with a clear error."""
    with simulator(tmp_path, "a") as cluster_a, simulator(tmp_path, "b") as cluster_b:
        _only_in(cluster_a, "only-in-a")
        _only_in(cluster_b, "only-in-b")
        home = tmp_path / "home"
        (home / ".kube").mkdir(parents=True)
        (home / ".kube" / "config").write_text(Path(cluster_b.kubeconfig).read_text())
        inv_dir = Path(inventory(tmp_path, {"awx": cluster_a.kubeconfig}))
        hosts = yaml.safe_load((inv_dir / "hosts.yml").read_text())
        del hosts["istio_clusters"]["hosts"]["awx"]["kubeconfig"]
        del hosts["istio_clusters"]["hosts"]["awx"]["context"]
        (inv_dir / "hosts.yml").write_text(yaml.safe_dump(hosts))
        before_b = snapshot(cluster_b)

        result = ok(run(str(inv_dir), "precheck", tmp_path,
                        env={"HOME": str(home), "K8S_AUTH_KUBECONFIG": cluster_a.kubeconfig}))
        summary = result.summaries()[0]
        findings = " ".join(summary["istioctl_precheck"])
        assert "only-in-a" in findings and "only-in-b" not in findings, summary
        precheck = next(e for e in result.tasks() if e.get("action") == "meshops.istio.istio_precheck")
        assert any(m["where"] == "Namespace only-in-a" for m in precheck["precheck"]["messages"]), precheck
        assert record(cluster_a)["phase.precheck"] and record(cluster_b) is None
        assert_unchanged(cluster_b, before_b, "a precheck of cluster A")

        # no credentials at all: a clear error, and install does not get further than precheck
        (home / ".kube" / "config").unlink()
        before_a = snapshot(cluster_a)
        rec_a = record(cluster_a)
        for tags in ("precheck", "install"):
            refused(run(str(inv_dir), tags, tmp_path, env={"HOME": str(home)}),
                    "no cluster to talk to", "K8S_AUTH_KUBECONFIG")
        assert_unchanged(cluster_a, before_a, "runs without credentials")
        assert record(cluster_a) == rec_a
        assert "istiod-%s" % NEW_REV not in us.control_plane(cluster_a)["istiod"]


# --- the whole upgrade planned in check mode, then done ---------------------------------------------------

def _plans(result):
    """phase -> (objects {(kind, ns, name): action}, workloads {id: (from_version, to_version)}) of a run."""
    out = {}
    for event in result.tasks(status="ok"):
        plan = event.get("plan")
        if event.get("action") != "meshops.istio.istio_canary_plan" or not plan or plan.get("stage") != "before":
            continue
        objects = dict(((o["kind"], o["namespace"] or "", o["name"]), o["action"]) for o in plan["changes"]["objects"])
        workloads = dict((w["id"], (w["from_version"], w["to_version"])) for w in plan["changes"]["workloads"]
                         if w["action"] == "restart")
        out[plan["phase"]] = (objects, workloads)
    return out


def _what_changed(before, after):
    """(objects {(kind, ns, name): create|update|delete}, restarted workload ids) between two snapshots of
    WATCHED: istiod's own Deployments and webhooks, namespaces, the record; restarted = new generation."""
    objects, restarted = {}, set()
    for key in set(before) | set(after):
        kind, namespace, name = key
        if before.get(key) == after.get(key):
            continue
        if kind == "ConfigMap" and name != "meshops-istio-upgrade":
            continue  # istioctl's own ConfigMaps of a revision (named in the plan's detail, not listed)
        if kind == "Deployment" and namespace != "istio-system":
            if key in before and key in after and before[key][2] != after[key][2]:
                restarted.add("%s/Deployment/%s" % (namespace, name))
            continue
        if kind == "Deployment" and key in before and key in after and before[key][2] == after[key][2]:
            continue  # istiod's status only
        objects[key] = "create" if key not in before else "delete" if key not in after else "update"
    return objects, restarted


def test_the_whole_upgrade_planned_in_check_mode_is_what_a_real_run_does(tmp_path):
    """Defect 9 / points 2 and 5: --check --diff (no tags) on an untouched cluster reports every phase, as if the
    ones before it succeeded, and changes nothing; so does a later starting point (--check from wave2 on); a real
    run then changes exactly the objects and workloads each phase's plan named."""
    with simulator(tmp_path) as sim:
        inv = inventory(tmp_path, {"blog": sim.kubeconfig})
        before = snapshot(sim)
        whole = ok(run(inv, None, tmp_path, check=True, diff=True))
        assert_unchanged(sim, before, "the whole upgrade in check mode")
        assert record(sim) is None
        planned = _plans(whole)
        phases = ["precheck", "install", "cni", "ztunnel", "tag", "gateways", "wave1", "wave2", "verify", "cleanup"]
        assert list(planned) == phases, list(planned)
        assert [s["phase"] for s in whole.summaries()] == phases
        # a sidecar-only mesh: the ambient data plane's phases have nothing to do (and say so)
        assert planned["cni"] == planned["ztunnel"] == ({}, {})
        notes = dict((s["phase"], s.get("note")) for s in whole.summaries())
        assert "sidecar-only mesh" in notes["cni"] and "sidecar-only mesh" in notes["ztunnel"], notes
        assert planned["wave2"][1] == {"baz/Deployment/baz": (OLD_VERSION, NEW_VERSION),
                                       "foo/Deployment/foo": (OLD_VERSION, NEW_VERSION)}
        # --diff: the phases planned on assumed ones show their diffs (the others' modules show theirs)
        simulated = [e for e in whole.tasks(status="ok") if e.get("action") == "meshops.istio.istio_canary_plan"
                     and (e.get("plan") or {}).get("simulated")]
        assert [e["plan"]["phase"] for e in simulated] == phases[2:]
        changing = [e for e in simulated if e["plan"]["phase"] not in ("cni", "ztunnel")]  # nothing to do here
        assert all(e.get("diff") for e in changing), [e["plan"]["phase"] for e in changing if not e.get("diff")]

        # real run, phase by phase; at wave2 a check-mode run from there on is planned first
        for phase in phases:
            if phase == "wave2":
                mark = snapshot(sim)
                rest = ok(run(inv, "wave2,verify,cleanup", tmp_path, check=True))
                assert_unchanged(sim, mark, "--check from wave2 on")
                later = _plans(rest)
                assert list(later) == ["wave2", "verify", "cleanup"]
                for name, (objects, workloads) in later.items():
                    assert workloads == planned[name][1], name
                    assert set(objects) == set(planned[name][0]), name
            mark = snapshot(sim, WATCHED)
            ok(run(inv, phase, tmp_path))
            objects, restarted = _what_changed(mark, snapshot(sim, WATCHED))
            plan_objects, plan_workloads = planned[phase]
            assert restarted == set(plan_workloads), (phase, restarted, plan_workloads)
            assert set(objects) == set(plan_objects), (phase, sorted(objects), sorted(plan_objects))
            for key, action in plan_objects.items():
                assert objects[key] == action, (phase, key, objects[key], action)
        cp = us.control_plane(sim)
        assert sorted(cp["istiod"]) == ["istiod-%s" % NEW_REV]
