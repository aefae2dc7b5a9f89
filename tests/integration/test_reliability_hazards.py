"""Hazards from the field (issue 5).

* A new proxy that crash-loops (kubesim ``--crash-proxy-version 1.15.4``): the wave fails within its
  timeout naming each stuck workload with its reason, does not go on to the next wave's namespaces, keeps
  the old pods serving, and ``rollback`` brings every workload back to 1.14.6.
* Uninstalling a revision that is still in use is refused with the list of users (tag, default
  validator, namespace label, pods), and nothing is removed.
* A tag that points at a revision whose istiod is gone (the "no endpoints available for service istiod"
  outage) is diagnosed by precheck and by verify; a wave refuses to run into it, and a restart forced
  anyway fails naming the workload and the webhook rejection while the old pods keep serving.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402

OLD_IMAGE = rs.PROXY_IMAGE % rs.OLD_VERSION


def test_crash_looping_proxy_stops_the_wave_and_rollback_restores(tmp_path):
    sim = rs.Sim(tmp_path, scenario="blog", pod_ready_seconds=0.5, audit=True,
                 args=["--crash-proxy-version", rs.NEW_VERSION])
    try:
        waves = [{"name": "wave1", "namespaces": ["bar", "foo"]}, {"name": "wave2", "namespaces": ["baz"]}]
        overrides = {"istio_canary_wait_timeout": 25, "istio_canary_gateways": []}
        rs.install_and_tag(tmp_path, sim)
        baz_rv = sim.get("/apis/apps/v1/namespaces/baz/deployments/baz")["metadata"]["resourceVersion"]
        audit = rs.AuditLog(sim.audit_path)
        mark = audit.mark()

        # all waves in one run: wave1 must fail, naming each stuck workload and why, and wave2 must not start
        res = rs.run_playbook(tmp_path, "waves", rs.upgrade_vars(sim, waves=waves, **overrides))
        assert res.rc != 0, res
        err = rs.error_text(res)
        for ns in ("bar", "foo"):
            assert re.search(r"(%s/Deployment/%s|Deployment %s/%s)[^;]*CrashLoopBackOff" % (ns, ns, ns, ns), err), err
        patched = rs.restart_patches(audit.entries(mark))
        assert set(patched) == {"bar/bar", "foo/foo"}, patched
        baz_after = sim.get("/apis/apps/v1/namespaces/baz/deployments/baz")
        assert baz_after["metadata"]["resourceVersion"] == baz_rv, "baz was touched after wave1 failed"
        assert rs.data_plane(sim, ["baz"])["baz/baz"] == [OLD_IMAGE, OLD_IMAGE]
        # the rolling update never took the serving pods away: two ready pods on the old proxy remain
        for ns in ("bar", "foo"):
            ready_old = [p for p in rs.live_pods(sim, ns) if rs.pod_ready(p) and rs.proxy_image(p) == OLD_IMAGE]
            assert len(ready_old) == 2, [(p["metadata"]["name"], rs.proxy_image(p)) for p in rs.live_pods(sim, ns)]

        # a plain run of the rollback tag without the guard changes nothing
        # (pods, their ReplicaSets and endpoints keep changing while bar's new pod crash-loops)
        volatile = ("pods", "replicasets.apps", "endpoints", "endpointslices.discovery.k8s.io")
        before = rs.snapshot(sim)
        res = rs.run_playbook(tmp_path, "rollback", rs.upgrade_vars(sim, waves=waves, **overrides))
        changed = [d for d in rs.diff_snapshots(before, rs.snapshot(sim)) if d.split()[1] not in volatile]
        assert changed == [], (changed, res)

        # the guarded rollback restores everything to 1.14.6
        res = rs.run_playbook(tmp_path, "rollback", rs.upgrade_vars(sim, waves=waves, istio_canary_rollback=True,
                                                                    **overrides))
        assert res.rc == 0, res
        state = rs.mesh_state(sim)
        mwcs = {m[0]: m for m in state["mwc"]}
        assert mwcs["istio-revision-tag-default"][1] == rs.OLD_REV, mwcs
        assert mwcs["istio-revision-tag-default"][2] == ("istiod-%s" % rs.OLD_REV,), mwcs
        for workload, images in state["data_plane"].items():
            assert images and all(i == OLD_IMAGE for i in images), (workload, images)
        assert not state["not_ready_pods"], state["not_ready_pods"]
        assert rs.rollouts_complete(sim)
    finally:
        sim.stop()


def test_uninstalling_a_revision_in_use_is_refused_with_its_users(tmp_path):
    sim = rs.Sim(tmp_path, scenario="blog")
    try:
        # a namespace pinned to the revision itself (not through the tag)
        sim.request("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "pinned", "labels": {"istio.io/rev": rs.OLD_REV}}})
        before = rs.settled_snapshot(sim)
        result, raw = rs.run_module(tmp_path, "istio_revision", {
            "kubeconfig": sim.kubeconfig, "revision": rs.OLD_REV, "state": "absent",
            "istioctl_path": rs.ISTIOCTL}, istioctl_version=rs.OLD_VERSION)
        assert raw.rc != 0 and result and result.get("failed"), raw
        text = result.get("msg", "") + "\n" + repr(result.get("details", {})) + repr(result.get("in_use_by", ""))
        assert "istio-revision-tag-default" in text or re.search(r"\btag\b.*\bdefault\b", text), text
        assert "istiod-default-validator" in text, text
        assert "pinned" in text, text
        pod = next(p["metadata"]["name"] for p in sim.pods("foo"))
        assert pod in text or "foo/" in text, text
        assert rs.diff_snapshots(before, rs.snapshot(sim)) == []

        # the cleanup phase refuses too, saying what still uses the old revision
        res = rs.run_playbook(tmp_path, "cleanup", rs.upgrade_vars(sim, istio_canary_from_revision=rs.OLD_REV))
        assert res.rc != 0, res
        err = rs.error_text(res)
        assert rs.OLD_REV in err and "in use" in err, res
        assert re.search(r"tag .?default", err, re.I), err
        assert all(w in err for w in ("bar", "foo", "baz", "istio-ingressgateway")), err
        assert rs.diff_snapshots(before, rs.snapshot(sim)) == []
    finally:
        sim.stop()


def test_tag_pointing_at_a_revision_without_istiod_is_diagnosed(tmp_path):
    sim = rs.Sim(tmp_path, scenario="blog")
    try:
        rs.install_and_tag(tmp_path, sim)
        # istiod-1-15-4 disappears while the tag still sends injection to it
        sim.delete("/apis/apps/v1/namespaces/istio-system/deployments/istiod-%s" % rs.NEW_REV)

        def istiod_gone():
            pods = [p for p in sim.pods(rs.ISTIO_NS) if p["metadata"]["name"].startswith("istiod-%s" % rs.NEW_REV)]
            ep = sim.get_or_none("/api/v1/namespaces/istio-system/endpoints/istiod-%s" % rs.NEW_REV) or {}
            addresses = [a for s_ in ep.get("subsets") or [] for a in s_.get("addresses") or []]
            return not pods and not addresses
        rs.wait_for(istiod_gone, what="istiod-1-15-4 pods and endpoints gone")
        # the hazard is real: pod creation in a tagged namespace is now refused by the webhook
        try:
            sim.request("POST", "/api/v1/namespaces/foo/pods", {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}, retries=1)
            created = True
        except (rs.ApiStatus, RuntimeError) as exc:
            created = False
            assert "failed calling webhook" in str(exc), exc
        assert not created, "kubesim accepted a pod although the tag's istiod is gone"

        for phase in ("precheck", "verify"):
            res = rs.run_playbook(tmp_path, phase, rs.upgrade_vars(sim))
            assert res.rc != 0, (phase, res)
            out = res.output
            assert "default" in out and rs.NEW_REV in out, (phase, out[-4000:])
            assert re.search(r"istiod-%s.*(not found|missing|gone|no endpoints|not ready|does not exist|not running)"
                             % rs.NEW_REV, out, re.I | re.S), (phase, out[-4000:])

        # a wave refuses to restart into it ...
        before = rs.snapshot(sim)
        res = rs.run_playbook(tmp_path, "wave1", rs.upgrade_vars(sim))
        assert res.rc != 0 and rs.NEW_REV in rs.error_text(res), res
        assert [d for d in rs.diff_snapshots(before, rs.snapshot(sim)) if "meshops-istio-upgrade" not in d] == []
        # ... and a restart forced anyway fails naming the workload and the webhook rejection, while the
        # old pods keep serving
        result, raw = rs.run_module(tmp_path, "rollout_restart", {
            "kubeconfig": sim.kubeconfig, "namespaces": ["foo"], "revision": rs.NEW_REV, "wait_timeout": 30})
        assert raw.rc != 0 and result and result.get("failed"), raw
        assert re.search(r"foo/Deployment/foo|Deployment foo/foo", result["msg"]), result["msg"]
        assert "webhook" in result["msg"] and "istiod-%s" % rs.NEW_REV in result["msg"], result["msg"]
        ready_old = [p for p in rs.live_pods(sim, "foo") if rs.pod_ready(p) and rs.proxy_image(p) == OLD_IMAGE]
        assert len(ready_old) == 2, [p["metadata"]["name"] for p in rs.live_pods(sim, "foo")]
    finally:
        sim.stop()
