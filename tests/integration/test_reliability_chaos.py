"""Faults of issue 19 forced through real ansible-playbook runs against tests/kubesim:

* the whole upgrade under ``--conflict-rate 0.2`` (every fifth conditional write raced by another writer);
* an API server outage of 20 s in the middle of a wave (``POST /kubesim/outage``): the run waits and finishes,
  or fails clearly, and a re-run completes;
* bearer tokens that expire every few seconds (``--token-ttl``, an exec credential plugin) during a wave: never
  sent expired;
* a ResourceQuota that refuses the wave's new pods: named ("exceeded quota: ...") as soon as it is certain, not
  after the wait timeout; the wave completes once the quota is raised;
* the new proxy image missing from the registry (``--missing-image``): named (ErrImagePull / ImagePullBackOff)
  as soon as the registry says so.

After each: nothing restarted twice by one run, no pod without its sidecar, the record true to the cluster.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_invariants as inv  # noqa: E402
import reliability_support as rs  # noqa: E402

WAIT = 900  # istio_canary_wait_timeout where a test proves that a failure is named before the timeout


def _started(sim, *args, scenario="blog", **kw):
    sim = rs.Sim(sim, scenario=scenario, audit=True, args=list(args), **kw)
    return sim


def _stats(sim):
    return sim.get("/kubesim/stats")


def test_full_upgrade_under_conflicts(tmp_path):
    sim = _started(tmp_path, "--conflict-rate", "0.2")
    recorder = rs.PodRecorder(sim)
    try:
        audit = rs.AuditLog(sim.audit_path)
        runs = []
        for tags in rs.UPGRADE_STEPS:
            mark = audit.mark()
            res = rs.run_playbook(tmp_path, tags, rs.upgrade_vars(sim))
            assert res.rc == 0, res
            runs.append(audit.entries(mark))
        rs.assert_final_state(sim)
        conflicts = sum(1 for e in audit.entries() if str(e.get("code")) == "409")
        assert conflicts > 0, "no conflict was injected: the test proves nothing (%s)" % _stats(sim).get("faults")
        problems = inv.check_all(sim, recorder, runs)
        assert not problems, problems
        print("409 conflicts answered during the upgrade: %d" % conflicts)
    finally:
        recorder.stop()
        sim.stop()


def _large(tmp_path, *args):
    sim = rs.Sim(tmp_path, scenario="large", pod_ready_seconds=1.5, audit=True,
                 args=["--namespaces", 2, "--deployments", 4, "--replicas", 2] + list(args))
    namespaces = [ns for ns in sim.mesh_namespaces() if ns != "istio-ingress"]
    return sim, namespaces


def _wave(sim, namespaces, **kw):
    kw.setdefault("istio_canary_concurrency", 2)
    return rs.upgrade_vars(sim, waves=[{"name": "wave1", "namespaces": namespaces}], istio_canary_gateways=[], **kw)


def test_api_server_outage_mid_wave(tmp_path):
    sim, namespaces = _large(tmp_path)
    recorder = None
    try:
        rs.install_and_tag(tmp_path, sim)
        recorder = rs.PodRecorder(sim)
        audit = rs.AuditLog(sim.audit_path)
        mark = audit.mark()
        proc, log = rs.start_playbook(tmp_path, "wave1", _wave(sim, namespaces, istio_canary_wait_timeout=120),
                                      log_name="outage.log")
        rs.wait_for(lambda: rs.restart_patches(audit.entries(mark)) or proc.poll() is not None, timeout=180,
                    what="the wave's first restart")
        assert proc.poll() is None, "the wave ended before the outage:\n" + open(log).read()[-3000:]
        sim.request("POST", "/kubesim/outage?seconds=20")
        rc = proc.wait(timeout=900)
        proc._log_fh.close()
        out = open(log).read()
        first = audit.entries(mark)
        assert _stats(sim)["faults"]["outages"] == 1
        if rc != 0:
            # allowed: a clear failure (which workloads, why), then a re-run completes the wave
            assert "Wave wave1 failed" in out and ("Cannot reach" in out or "timeout after" in out), out[-5000:]
            mark = audit.mark()
            rerun = rs.run_playbook(tmp_path, "wave1", _wave(sim, namespaces))
            assert rerun.rc == 0, rerun
            runs = [first, audit.entries(mark)]
        else:
            runs = [first]
        print("outage: first run rc=%s" % rc)
        assert rs.rollouts_complete(sim, namespaces)
        plane = rs.data_plane(sim, namespaces)
        assert all(imgs == [rs.PROXY_IMAGE % rs.NEW_VERSION] * 2 for imgs in plane.values()), plane
        problems = inv.check_all(sim, recorder, runs)
        assert not problems, problems
        assert inv.record_data(sim).get("wave.wave1.done")
    finally:
        if recorder:
            recorder.stop()
        sim.stop()


def test_tokens_expiring_mid_wave_are_renewed_before_they_expire(tmp_path):
    sim, namespaces = _large(tmp_path, "--token-ttl", "6")
    recorder = None
    try:
        assert sim.user_entry.get("exec"), "kubesim --token-ttl writes an exec credential plugin"
        rs.install_and_tag(tmp_path, sim)
        recorder = rs.PodRecorder(sim)
        audit = rs.AuditLog(sim.audit_path)
        mark = audit.mark()
        before = _stats(sim)["faults"]
        res = rs.run_playbook(tmp_path, "wave1", _wave(sim, namespaces, istio_canary_concurrency=1))
        assert res.rc == 0, res
        after = _stats(sim)["faults"]
        print("tokens issued during the wave: %d, expired tokens sent: %d" % (
            after["tokens_issued"] - before["tokens_issued"], after["expired_tokens"] - before["expired_tokens"]))
        assert after["tokens_issued"] - before["tokens_issued"] >= 2, (before, after)
        # no request went out with an expired token: the client honours the token's expiry (before, it kept a
        # token 10 s whatever its expiry, and recovered from the 401s)
        assert after["expired_tokens"] == before["expired_tokens"], (before, after)
        assert rs.rollouts_complete(sim, namespaces)
        problems = inv.check_all(sim, recorder, [audit.entries(mark)])
        assert not problems, problems
    finally:
        if recorder:
            recorder.stop()
        sim.stop()


def test_a_quota_that_blocks_the_wave_is_named_at_once_and_the_wave_completes_once_raised(tmp_path):
    sim = _started(tmp_path)
    recorder = None
    try:
        rs.install_and_tag(tmp_path, sim)
        quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods", "namespace": "bar"},
                 "spec": {"hard": {"pods": "2"}}}
        sim.request("POST", "/api/v1/namespaces/bar/resourcequotas", quota)
        rs.wait_for(lambda: (sim.get("/api/v1/namespaces/bar/resourcequotas/pods").get("status") or {}).get("hard"),
                    timeout=30, what="the quota controller")
        recorder = rs.PodRecorder(sim)
        audit = rs.AuditLog(sim.audit_path)
        mark = audit.mark()
        res = rs.run_playbook(tmp_path, "wave1", rs.upgrade_vars(sim, istio_canary_wait_timeout=WAIT))
        assert res.rc != 0, res
        msg = rs.error_text(res)
        assert "exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2" in msg, msg
        assert "bar/Deployment/bar" in msg and "timeout after" not in msg, msg
        record = inv.record_data(sim)
        assert record.get("wave.wave1.started") and not record.get("wave.wave1.done"), record
        problems = inv.check_all(sim, recorder, [audit.entries(mark)])
        assert not problems, problems
        # raised: the same wave completes (the workload restarted by the failed run is only waited for)
        quota["spec"]["hard"]["pods"] = "3"
        current = sim.get("/api/v1/namespaces/bar/resourcequotas/pods")
        quota["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        sim.request("PUT", "/api/v1/namespaces/bar/resourcequotas/pods", quota)
        mark2 = audit.mark()
        rerun = rs.run_playbook(tmp_path, "wave1", rs.upgrade_vars(sim))
        assert rerun.rc == 0, rerun
        assert rs.data_plane(sim, ["bar"]) == {"bar/bar": [rs.PROXY_IMAGE % rs.NEW_VERSION] * 2}
        both = rs.restart_patches(audit.entries(mark) + audit.entries(mark2))
        assert both == {"bar/bar": 1}, both
        problems = inv.check_all(sim, recorder, [audit.entries(mark2)])
        assert not problems, problems
    finally:
        if recorder:
            recorder.stop()
        sim.stop()


def test_a_proxy_image_missing_from_the_registry_is_named(tmp_path):
    image = rs.PROXY_IMAGE % rs.NEW_VERSION
    sim = _started(tmp_path, "--missing-image", image)
    recorder = None
    try:
        rs.install_and_tag(tmp_path, sim)
        recorder = rs.PodRecorder(sim)
        audit = rs.AuditLog(sim.audit_path)
        mark = audit.mark()
        res = rs.run_playbook(tmp_path, "wave1", rs.upgrade_vars(sim, istio_canary_wait_timeout=WAIT))
        assert res.rc != 0, res
        msg = rs.error_text(res)
        assert "bar/Deployment/bar" in msg and "the image is missing from the registry" in msg, msg
        assert ("ErrImagePull" in msg or "ImagePullBackOff" in msg) and image in msg, msg
        assert "timeout after" not in msg, msg
        # the old pods still serve (maxUnavailable 0): nothing lost its sidecar, the record says started only
        record = inv.record_data(sim)
        assert record.get("wave.wave1.started") and not record.get("wave.wave1.done"), json.dumps(record)
        problems = inv.check_all(sim, recorder, [audit.entries(mark)])
        assert not problems, problems
    finally:
        if recorder:
            recorder.stop()
        sim.stop()
