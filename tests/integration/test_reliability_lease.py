"""One run per cluster at a time (issue 19.1 and 19.3), through ansible-playbook as AWX would run it.

* two runs of the same wave at once: the second refuses, naming the first (its inventory host, controller, pid,
  phase, expiry) and how to take over, and changes nothing; the first finishes;
* a run killed mid-wave (its whole job, as when an AWX job's container dies) leaves its lease: a new run is
  refused until the lease expires, then takes it over (logged in the record) and completes the wave.

After each: nothing restarted twice by one run, no pod without its sidecar, the record true to the cluster and
no lease left behind.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_invariants as inv  # noqa: E402
import reliability_support as rs  # noqa: E402


def _lease(sim):
    return {k[len("lease."):]: v for k, v in inv.record_data(sim).items()
            if k.startswith("lease.") and not k.startswith("lease.log.")}


def _wave_vars(cluster, **kw):
    # concurrency 1: the wave lasts long enough for a second run to meet it
    return cluster.wave_vars(istio_canary_concurrency=1, **kw)


def test_a_second_run_refuses_while_the_first_holds_the_lease(tmp_path):
    # pods ready after 3 s: a wave long enough for the second run to meet it
    with inv.watched(tmp_path, pod_ready_seconds=3) as cluster:
        sim, audit, namespaces = cluster.sim, cluster.audit, cluster.namespaces
        mark = audit.mark()
        first, log = rs.start_playbook(tmp_path, "wave1", _wave_vars(cluster), log_name="first.log")
        rs.wait_for(lambda: (rs.restart_patches(audit.entries(mark)) and _lease(sim)) or first.poll() is not None,
                    timeout=180, what="the first run's lease and first restart")
        assert first.poll() is None, "the first run ended too early:\n" + open(log).read()[-3000:]
        held = _lease(sim)
        assert held["pid"] == str(first.pid), (held, first.pid)  # ansible-playbook's own pid
        assert held["inventory_host"] == "sandbox" and held["phase"] == "wave1", held

        second = rs.run_playbook(tmp_path, "wave1", _wave_vars(cluster))
        assert second.rc != 0, second
        msg = rs.error_text(second)
        for part in ("leased to another run", "sandbox, run from controller %s (pid %s" % (held["controller_host"], first.pid),
                     "phase wave1", "istio_canary_break_lease=true", "nothing was changed"):
            assert part in msg, (part, msg)
        assert first.poll() is None, "the first run ended while the second was refused: the test proves nothing"
        first_rc = first.wait(timeout=600)
        first._log_fh.close()
        out = open(log).read()
        assert first_rc == 0, out[-4000:]
        entries = audit.entries(mark)
        # the first run finished the wave alone: every workload moved once, the lease given back
        assert rs.rollouts_complete(sim, namespaces)
        plane = rs.data_plane(sim, namespaces)
        replicas = inv.LARGE["replicas"]
        assert all(imgs == [rs.PROXY_IMAGE % rs.NEW_VERSION] * replicas for imgs in plane.values()), plane
        assert len(rs.restart_patches(entries)) == inv.LARGE["namespaces"] * inv.LARGE["deployments"]
        cluster.assert_invariants([entries])
        assert inv.record_data(sim).get("wave.wave1.done")


def test_a_killed_run_keeps_its_lease_until_it_expires_then_a_new_run_takes_over(tmp_path):
    ttl = 40
    with inv.watched(tmp_path) as cluster:
        sim, audit, namespaces = cluster.sim, cluster.audit, cluster.namespaces
        mark = audit.mark()
        proc, log = rs.start_playbook(tmp_path, "wave1", _wave_vars(cluster, istio_canary_lease_ttl=ttl),
                                      log_name="killed.log")
        rs.wait_for(lambda: rs.restart_patches(audit.entries(mark)) or proc.poll() is not None,
                    timeout=180, what="the wave's first restart")
        assert proc.poll() is None, "the wave finished before it could be killed:\n" + open(log).read()[-3000:]
        # its job dies as a whole (container gone): every process of it at once
        tree = rs.descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        rs.kill_pids(tree)
        proc.wait(timeout=60)
        proc._log_fh.close()
        killed_entries = audit.entries(mark)
        held = _lease(sim)
        assert held.get("pid") == str(proc.pid), held

        # at once: refused, naming the dead run and when its lease expires
        refused = rs.run_playbook(tmp_path, "wave1", _wave_vars(cluster))
        assert refused.rc != 0, refused
        msg = rs.error_text(refused)
        assert "leased to another run" in msg and "pid %s" % proc.pid in msg, msg
        assert "pid %s no longer runs on this controller" % proc.pid in msg, msg
        assert "expires at %s" % _lease(sim)["expires"] in msg, msg

        # once expired, a new run takes it over and completes the wave
        expires = inv.record_data(sim)["lease.expires"]
        rs.wait_for(lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > expires, timeout=ttl + 30,
                    what="the lease's expiry")
        mark2 = audit.mark()
        rerun = rs.run_playbook(tmp_path, "wave1", _wave_vars(cluster))
        assert rerun.rc == 0, rerun
        log_entries = inv.lease_log(sim)
        assert [e["event"] for e in log_entries] == ["taken over after expiry"], log_entries
        assert log_entries[0]["previous"]["pid"] == str(proc.pid)
        assert rs.rollouts_complete(sim, namespaces)
        cluster.assert_invariants([killed_entries, audit.entries(mark2)])
        # the re-run restarted only what the killed run had not (nothing twice across both runs)
        both = rs.restart_patches(killed_entries + audit.entries(mark2))
        assert all(n == 1 for n in both.values()), both
