"""Reliability under API faults (issue 5).

* The full canary upgrade, every phase through ansible-playbook, against a simulated cluster that answers
  10% of the requests with 500/503/429 (Retry-After) and adds 50 ms to every request, ends in exactly the
  state the same upgrade reaches on a healthy cluster -- and that state is the articles' final state.
* Dropped watches do not make a rollout wait miss the end of a rollout (nor return before it).
* A non-transient error (403 from RBAC) is not retried and fails naming the object and the reason.
"""

import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402


def _clean_upgrade(tmp, out):
    try:
        out.update(rs.clean_upgrade(tmp))
    except BaseException as exc:  # reported by the main thread
        out["error"] = exc


def test_full_upgrade_with_api_errors_and_latency_matches_clean_run(tmp_path):
    faulty = rs.Sim(tmp_path / "faulty", scenario="blog", name="faulty", audit=True,
                    args=["--api-error-rate", "0.1", "--latency-ms", "50", "--seed", "7"])
    try:
        initial = rs.mesh_state(faulty)
        # the reference: the same upgrade on a healthy cluster (shared with the RBAC test), run meanwhile
        clean_out = {}
        t = threading.Thread(target=_clean_upgrade, args=(tmp_path / "clean", clean_out))
        t.start()
        try:
            rs.full_upgrade(tmp_path / "faulty", faulty)
        finally:
            t.join()
        if "error" in clean_out:
            raise clean_out["error"]
        assert clean_out["initial"] == initial, "both clusters must start alike"
        faulty_state = rs.mesh_state(faulty)

        # the fault injection really happened: the server answered errors the collection had to survive
        entries = rs.AuditLog(faulty.audit_path).entries()
        codes = [int(e.get("code", e.get("status", 200)) or 200) for e in entries]
        injected = [c for c in codes if c in (429, 500, 503)]
        assert len(injected) >= 5, "expected injected API errors in the audit log, saw codes %s" % sorted(set(codes))

        rs.assert_final_state(faulty)
        assert faulty_state == clean_out["state"]

        # no workload was restarted more than once although some requests failed (a retried PATCH of
        # the restart annotation that actually went through must not be sent again as a new restart)
        patches = rs.restart_patches(entries)
        assert patches, "no restart PATCH recorded"
        assert all(n == 1 for n in patches.values()), patches
    finally:
        faulty.stop()


def test_dropped_watches_do_not_lose_the_end_of_a_rollout(tmp_path):
    sim = rs.Sim(tmp_path, scenario="blog", pod_ready_seconds=1.0, audit=True,
                 args=["--drop-watch-rate", "0.6", "--seed", "3"])
    try:
        rs.install_and_tag(tmp_path, sim)
        result, raw = rs.run_module(tmp_path, "rollout_restart", {
            "kubeconfig": sim.kubeconfig, "namespaces": ["foo", "bar", "baz"],
            "wait": True, "wait_timeout": 120})
        assert result is not None and raw.rc == 0 and not result.get("failed"), raw
        restarted = sorted("%s/%s" % (w["namespace"], w["name"]) for w in result["workloads"]
                           if w["action"] == "restarted")
        assert restarted == ["bar/bar", "baz/baz", "foo/foo"], result["workloads"]
        # checked right after the module returned: it did not report success before the end
        assert rs.rollouts_complete(sim, ["foo", "bar", "baz"])
        plane = rs.data_plane(sim, ["foo", "bar", "baz"])
        assert all(imgs == [rs.PROXY_IMAGE % rs.NEW_VERSION] * 2 for imgs in plane.values()), plane
        assert not [p["metadata"]["name"] for ns in ("foo", "bar", "baz") for p in rs.live_pods(sim, ns)
                    if not rs.pod_ready(p)]
        # watches really were dropped and resumed: the same watch opened again
        watches = [(e.get("resource"), e.get("namespace")) for e in rs.AuditLog(sim.audit_path).entries()
                   if e.get("verb") == "watch"]
        assert len(watches) > len(set(watches)), watches
    finally:
        sim.stop()


# Everything a full upgrade needs except PATCH on Deployments (RBAC has no deny rules: list the rest).
NO_DEPLOYMENT_PATCH_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: no-deployment-patch
rules:
- apiGroups: ["", "admissionregistration.k8s.io", "apiextensions.k8s.io", "rbac.authorization.k8s.io",
              "policy", "autoscaling", "networking.istio.io", "install.istio.io", "security.istio.io",
              "telemetry.istio.io", "extensions.istio.io", "authorization.k8s.io", "coordination.k8s.io",
              "events.k8s.io"]
  resources: ["*"]
  verbs: ["*"]
- apiGroups: ["apps"]
  resources: ["replicasets", "statefulsets", "daemonsets", "controllerrevisions",
              "deployments/status", "deployments/scale"]
  verbs: ["*"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- nonResourceURLs: ["*"]
  verbs: ["get"]
"""


def test_non_transient_error_fails_once_with_object_and_reason(tmp_path):
    role = tmp_path / "role.yaml"
    role.write_text(NO_DEPLOYMENT_PATCH_ROLE)
    sim = rs.Sim(tmp_path, scenario="blog", audit=True, authorize_rules=role)
    try:
        rs.install_and_tag(tmp_path, sim)
        bar_before = sim.get("/apis/apps/v1/namespaces/bar/deployments/bar")
        mark = rs.AuditLog(sim.audit_path).mark()

        result, raw = rs.run_module(tmp_path, "rollout_restart", {
            "kubeconfig": sim.kubeconfig, "namespaces": ["bar"], "wait_timeout": 60})
        assert raw.rc != 0 and result and result.get("failed"), raw
        msg = result.get("msg", "")
        assert "bar" in msg and "Deployment" in msg, msg
        assert "forbidden" in msg.lower() or "403" in msg, msg

        # not retried: a 403 is final
        entries = rs.AuditLog(sim.audit_path).entries(mark)
        bar_patches = [e for e in entries if e.get("verb") == "patch" and rs.entry_resource(e) == "deployments"
                       and e.get("name") == "bar"]
        assert len(bar_patches) == 1, bar_patches
        bar_after = sim.get("/apis/apps/v1/namespaces/bar/deployments/bar")
        assert bar_after["metadata"]["resourceVersion"] == bar_before["metadata"]["resourceVersion"]
    finally:
        sim.stop()
