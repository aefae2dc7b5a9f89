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


def _stats(sim):
    return sim.get("/kubesim/stats")


def test_full_upgrade_under_conflicts(tmp_path):
    with inv.watched(tmp_path, scenario="blog", install=False, args=["--conflict-rate", "0.2"]) as cluster:
        sim, audit = cluster.sim, cluster.audit
        runs = []
        for tags in rs.UPGRADE_STEPS:
            mark = audit.mark()
            res = rs.run_playbook(tmp_path, tags, rs.upgrade_vars(sim))
            assert res.rc == 0, res
            runs.append(audit.entries(mark))
        rs.assert_final_state(sim)
        conflicts = sum(1 for e in audit.entries() if str(e.get("code")) == "409")
        assert conflicts > 0, "no conflict was injected: the test proves nothing (%s)" % _stats(sim).get("faults")
        cluster.assert_invariants(runs)
        print("409 conflicts answered during the upgrade: %d" % conflicts)


def _wave(cluster, **kw):
    kw.setdefault("istio_canary_concurrency", 2)
    return cluster.wave_vars(**kw)


def test_api_server_outage_mid_wave(tmp_path):
    with inv.watched(tmp_path) as cluster:
        sim, audit, namespaces = cluster.sim, cluster.audit, cluster.namespaces
        mark = audit.mark()
        proc, log = rs.start_playbook(tmp_path, "wave1", _wave(cluster, istio_canary_wait_timeout=120),
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
            rerun = rs.run_playbook(tmp_path, "wave1", _wave(cluster))
            assert rerun.rc == 0, rerun
            runs = [first, audit.entries(mark)]
        else:
            runs = [first]
        print("outage: first run rc=%s" % rc)
        assert rs.rollouts_complete(sim, namespaces)
        plane = rs.data_plane(sim, namespaces)
        assert all(imgs == [rs.PROXY_IMAGE % rs.NEW_VERSION] * 2 for imgs in plane.values()), plane
        cluster.assert_invariants(runs)
        assert inv.record_data(sim).get("wave.wave1.done")


def test_tokens_expiring_mid_wave_are_renewed_before_they_expire(tmp_path):
    with inv.watched(tmp_path, args=["--token-ttl", "6"]) as cluster:
        sim, audit = cluster.sim, cluster.audit
        assert sim.user_entry.get("exec"), "kubesim --token-ttl writes an exec credential plugin"
        mark = audit.mark()
        before = _stats(sim)["faults"]
        res = rs.run_playbook(tmp_path, "wave1", _wave(cluster, istio_canary_concurrency=1))
        assert res.rc == 0, res
        after = _stats(sim)["faults"]
        print("tokens issued during the wave: %d, expired tokens sent: %d" % (
            after["tokens_issued"] - before["tokens_issued"], after["expired_tokens"] - before["expired_tokens"]))
        assert after["tokens_issued"] - before["tokens_issued"] >= 2, (before, after)
        # no request went out with an expired token: the client honours the token's expiry (before, it kept a
        # token 10 s whatever its expiry, and recovered from the 401s)
        assert after["expired_tokens"] == before["expired_tokens"], (before, after)
        assert rs.rollouts_complete(sim, cluster.namespaces)
        cluster.assert_invariants([audit.entries(mark)])


def test_a_quota_that_blocks_the_wave_is_named_at_once_and_the_wave_completes_once_raised(tmp_path):
    with inv.watched(tmp_path, scenario="blog") as cluster:
        sim, audit = cluster.sim, cluster.audit
        quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "pods", "namespace": "bar"},
                 "spec": {"hard": {"pods": "2"}}}
        sim.request("POST", "/api/v1/namespaces/bar/resourcequotas", quota)
        rs.wait_for(lambda: (sim.get("/api/v1/namespaces/bar/resourcequotas/pods").get("status") or {}).get("hard"),
                    timeout=30, what="the quota controller")
        mark = audit.mark()
        res = rs.run_playbook(tmp_path, "wave1", rs.upgrade_vars(sim, istio_canary_wait_timeout=WAIT))
        assert res.rc != 0, res
        msg = rs.error_text(res)
        assert "exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2" in msg, msg
        assert "bar/Deployment/bar" in msg and "timeout after" not in msg, msg
        record = inv.record_data(sim)
        assert record.get("wave.wave1.started") and not record.get("wave.wave1.done"), record
        cluster.assert_invariants([audit.entries(mark)])
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
        cluster.assert_invariants([audit.entries(mark2)])


def test_a_proxy_image_missing_from_the_registry_is_named(tmp_path):
    image = rs.PROXY_IMAGE % rs.NEW_VERSION
    with inv.watched(tmp_path, scenario="blog", args=["--missing-image", image]) as cluster:
        sim, audit = cluster.sim, cluster.audit
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
        cluster.assert_invariants([audit.entries(mark)])
