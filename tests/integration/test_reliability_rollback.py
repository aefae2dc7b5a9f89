"""A rollback stopped between moving the tag back and recording its end (issue 19; the soak found it: an outage hit
a rollback there and the record kept saying that the tag was on the new revision and the wave done).

The rollback records that it is under way before it moves the tag back, so a rollback killed in between (its whole
job, SIGKILL) leaves a record that is true to the cluster; the phases that carry the upgrade forward refuse, naming
the rollback to finish, and ``--tags status`` names it; a rollback run then finishes from what the cluster holds
and the record ends true: rolled back, nothing of the upgrade left in it. Checked on the cluster's objects (the
tag's webhook, every pod's proxy) and the record, with the invariants of the other reliability tests.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_invariants as inv  # noqa: E402
import reliability_support as rs  # noqa: E402

TTL = 10  # the killed run's lease outlives it: a short ttl, the next runs come once it has expired


def _tag_revision(sim):
    tag = next(m for m in sim.mwcs() if m["metadata"]["name"] == "istio-revision-tag-default")
    return tag["metadata"]["labels"].get("istio.io/rev")


def _wait_for_the_lease_to_expire(sim):
    expires = inv.record_data(sim).get("lease.expires") or ""
    rs.wait_for(lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > expires, timeout=TTL + 60,
                what="the killed run's lease to expire")


def test_a_rollback_killed_after_moving_the_tag_leaves_a_true_record_and_its_rerun_finishes_it(tmp_path):
    with inv.watched(tmp_path, install=False) as cluster:
        sim, audit, namespaces = cluster.sim, cluster.audit, cluster.namespaces
        workloads = {"%s/%s" % (ns, d["metadata"]["name"]) for ns in namespaces for d in sim.deployments(ns)}
        # concurrency 1: the rollback's restarts last long enough to be killed in the middle
        upgrade = cluster.wave_vars(istio_canary_lease_ttl=TTL, istio_canary_concurrency=1)
        back = dict(upgrade, istio_canary_rollback=True)
        res = rs.run_playbook(tmp_path, "precheck,install,tag,wave1", upgrade)
        assert res.rc == 0, res
        assert _tag_revision(sim) == rs.NEW_REV
        assert inv.record_data(sim).get("phase.tag") and inv.record_data(sim).get("wave.wave1.done")

        # the rollback, killed as a whole job once it has moved the tag back and restarts the first workload
        mark = audit.mark()
        proc, log = rs.start_playbook(tmp_path, "rollback", back, log_name="rollback-killed.log")
        rs.wait_for(lambda: rs.restart_patches(audit.entries(mark)) or proc.poll() is not None, timeout=300,
                    what="the rollback's first restart")
        assert proc.poll() is None, "the rollback ended before it could be killed:\n" + open(log).read()[-3000:]
        tree = rs.descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        rs.kill_pids(tree)
        proc.wait(timeout=60)
        proc._log_fh.close()
        killed = audit.entries(mark)

        # the cluster: the tag back on the old revision, workloads on both; the record says a rollback is under way
        assert _tag_revision(sim) == rs.OLD_REV
        plane = rs.data_plane(sim, namespaces)
        assert any(rs.PROXY_IMAGE % rs.NEW_VERSION in images for images in plane.values()), (
            "the kill came too late: nothing left for the re-run", plane)
        data = inv.record_data(sim)
        assert data.get("rollback.started") and data.get("rollback.revision") == rs.OLD_REV, data
        assert sorted(data["rollback.namespaces"].split(",")) == sorted(namespaces), data
        assert "phase.rollback" not in data and data.get("phase.tag"), data  # its end was never recorded
        cluster.assert_invariants([killed], lease_free=False)  # the dead run's lease stays until it expires

        # what carries the upgrade forward refuses, naming the rollback to finish; nothing is touched
        _wait_for_the_lease_to_expire(sim)
        mark_wave = audit.mark()
        wave = rs.run_playbook(tmp_path, "wave1", upgrade)
        assert wave.rc != 0, wave
        msg = rs.error_text(wave)
        assert "a rollback to revision %s started at %s and did not finish" % (rs.OLD_REV, data["rollback.started"]) \
            in msg, msg
        assert "--tags rollback -e istio_canary_rollback=true" in msg, msg
        assert not rs.restart_patches(audit.entries(mark_wave)) and _tag_revision(sim) == rs.OLD_REV
        status = rs.run_playbook(tmp_path, "status", upgrade)
        assert status.rc == 0 and '"next_phase": "rollback"' in status.stdout, status

        # the rollback run finishes from the cluster: only what is not back yet is restarted
        mark2 = audit.mark()
        rerun = rs.run_playbook(tmp_path, "rollback", back)
        assert rerun.rc == 0, rerun
        again = audit.entries(mark2)
        assert _tag_revision(sim) == rs.OLD_REV
        assert rs.rollouts_complete(sim, namespaces)
        plane = rs.data_plane(sim, namespaces)
        assert all(images == [rs.PROXY_IMAGE % rs.OLD_VERSION] * inv.LARGE["replicas"] for images in plane.values()), \
            plane
        both = rs.restart_patches(killed + again)
        assert set(both) == workloads and all(n == 1 for n in both.values()), both
        data = inv.record_data(sim)
        assert data.get("phase.rollback") and not [k for k in data if k.startswith(("rollback.", "wave.", "lease."))
                                                   and not k.startswith("lease.log.")], data
        assert "phase.tag" not in data and "phase.gateways" not in data, data
        assert [e["event"] for e in inv.lease_log(sim)] == ["taken over after expiry"]
        cluster.assert_invariants([killed, again])

        # and again: nothing to do, nothing changed
        mark3 = audit.mark()
        third = rs.run_playbook(tmp_path, "rollback", back)
        assert third.rc == 0 and "changed=0" in third.stdout, third
        assert not rs.restart_patches(audit.entries(mark3))
        cluster.assert_invariants([audit.entries(mark3)])
