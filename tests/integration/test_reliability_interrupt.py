"""Interrupted runs (issue 5): ansible-playbook killed in the middle of a wave (Ctrl-C = SIGINT to its
process group, and SIGKILL of the whole job as when an AWX job's container dies).

* a re-run of the same wave completes it;
* the re-run restarts only what was still stale when it started: workloads already moved, or already
  restarted by the interrupted run and rolling out to the new revision, are left alone; and no workload
  is restarted twice within one run (kubesim's audit log);
* no pod ever existed in a mesh namespace without its istio-proxy sidecar (a recorder watches every pod
  of the cluster from before the wave until after the re-run).
"""

import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402

NAMESPACES, DEPLOYMENTS, REPLICAS = 4, 4, 2


def _stale_workloads(sim, namespaces):
    """namespace/name of Deployments not (yet) fully on the new revision: an unfinished rollout, or a
    live pod not injected by it."""
    stale = set()
    for ns in namespaces:
        pods = rs.live_pods(sim, ns)
        for dep in sim.deployments(ns):
            name = dep["metadata"]["name"]
            sel = dep["spec"]["selector"].get("matchLabels") or {}
            mine = [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
            st = dep.get("status", {})
            want = dep["spec"].get("replicas", 1)
            done = (st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 0)
                    and st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want
                    and st.get("availableReplicas", 0) == want)
            if not done or any(rs.pod_revision(p) != rs.NEW_REV for p in mine):
                stale.add("%s/%s" % (ns, name))
    return stale


def _restarted_at(sim, namespaces):
    """Deployments carrying a restart annotation (touched by a restart at some point)."""
    out = set()
    for ns in namespaces:
        for dep in sim.deployments(ns):
            ann = dep["spec"]["template"]["metadata"].get("annotations") or {}
            if "kubectl.kubernetes.io/restartedAt" in ann:
                out.add("%s/%s" % (ns, dep["metadata"]["name"]))
    return out


def _twice(patches, entries):
    """The workloads patched more than once, with the audit log's record of each patch."""
    twice = sorted(k for k, n in patches.items() if n != 1)
    return "restarted more than once in one run: %s\n%s" % (twice, "\n".join(
        repr(e) for e in entries if e.get("verb") == "patch" and "%s/%s" % (e.get("namespace"), e.get("name")) in twice))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_wave_interrupted_then_rerun_completes_without_double_restarts(tmp_path, sig):
    sim = rs.Sim(tmp_path, scenario="large", pod_ready_seconds=1.5, audit=True,
                 args=["--namespaces", NAMESPACES, "--deployments", DEPLOYMENTS, "--replicas", REPLICAS])
    recorder = None
    try:
        namespaces = [ns for ns in sim.mesh_namespaces() if ns != "istio-ingress"]
        assert len(namespaces) >= NAMESPACES, namespaces
        waves = [{"name": "wave1", "namespaces": namespaces}]
        # the interrupted run's lease outlives it (nothing releases it on a kill or Ctrl-C): a short ttl, and the
        # re-run comes once it has expired (test_reliability_lease.py checks the refusal before that)
        extra = {"istio_canary_gateways": [], "istio_canary_lease_ttl": 10}
        rs.install_and_tag(tmp_path, sim)
        total = {"%s/%s" % (ns, d["metadata"]["name"]) for ns in namespaces for d in sim.deployments(ns)}
        assert len(total) >= NAMESPACES * DEPLOYMENTS

        recorder = rs.PodRecorder(sim)
        audit = rs.AuditLog(sim.audit_path)
        mark1 = audit.mark()
        proc, log = rs.start_playbook(tmp_path, "wave1", rs.upgrade_vars(sim, waves=waves, **extra),
                                      log_name="interrupted.log")
        # wait until the wave is restarting workloads, then interrupt it mid-flight
        rs.wait_for(lambda: rs.restart_patches(audit.entries(mark1)) or proc.poll() is not None,
                    timeout=120, what="the wave's first restart")
        assert proc.poll() is None, "the wave finished before it could be interrupted:\n" + open(log).read()[-3000:]
        time.sleep(1.0)
        tree = rs.descendants(proc.pid)  # ansible-playbook's workers and the module they run
        assert tree, "no worker process found under ansible-playbook"
        if sig == signal.SIGKILL:
            # the job dies as a whole (its container or host goes away): every process of it, at once
            os.killpg(proc.pid, signal.SIGKILL)
            rs.kill_pids(tree)
        else:
            # Ctrl-C: SIGINT to the foreground process group (Ansible's workers run in sessions of their
            # own, so it reaches ansible-playbook only, which must stop them)
            os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(timeout=60)
        proc._log_fh.close()
        assert rc != 0, "an interrupted run must not report success:\n" + open(log).read()[-3000:]
        deadline = time.monotonic() + 30
        while rs.alive(tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        leftover = rs.alive(tree)
        rs.kill_pids(leftover)  # (not to disturb the re-run if the assertion below fails)
        assert not leftover, "processes of the interrupted run kept running 30s after it ended: %s" % leftover
        first = rs.restart_patches(audit.entries(mark1))
        assert all(n == 1 for n in first.values()), _twice(first, audit.entries(mark1))

        # what is left for the re-run: the module may not touch anything that is already current
        touched = _restarted_at(sim, namespaces)
        never_restarted = total - touched
        stale_at_rerun = _stale_workloads(sim, namespaces)
        assert stale_at_rerun, "the interruption came too late: nothing left to do"

        print("interrupted by %s: %d of %d restarted, %d still stale" % (
            sig.name, len(touched), len(total), len(stale_at_rerun)))
        cm = sim.get_or_none("/api/v1/namespaces/%s/configmaps/meshops-istio-upgrade" % rs.ISTIO_NS) or {}
        expires = (cm.get("data") or {}).get("lease.expires") or ""
        rs.wait_for(lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > expires, timeout=60,
                    what="the interrupted run's lease to expire")
        mark2 = audit.mark()
        res = rs.run_playbook(tmp_path, "wave1", rs.upgrade_vars(sim, waves=waves, **extra))
        assert res.rc == 0, res
        second = rs.restart_patches(audit.entries(mark2))
        assert all(n == 1 for n in second.values()), _twice(second, audit.entries(mark2))
        print("re-run restarted %d: %s" % (len(second), sorted(second)))
        assert set(second) <= stale_at_rerun, (
            "re-run restarted workloads that were already current: %s" % sorted(set(second) - stale_at_rerun))
        # a workload the interrupted run already restarted is rolling out to the new revision (its pod
        # template carries the restart and the tag points at the new revision): restarting it again would
        # be a second restart of the same workload for nothing
        assert not touched & set(second), "restarted again: %s" % sorted(touched & set(second))
        assert never_restarted <= set(second), (
            "re-run left workloads the interrupted run never reached: %s" % sorted(never_restarted - set(second)))

        # the wave is complete: every workload on the new proxy, ready
        assert rs.rollouts_complete(sim, namespaces)
        assert not _stale_workloads(sim, namespaces)
        plane = rs.data_plane(sim, namespaces)
        assert all(imgs == [rs.PROXY_IMAGE % rs.NEW_VERSION] * REPLICAS for imgs in plane.values()), plane

        # no pod ever ran without its sidecar
        recorder.catch_up()
        mesh = set(sim.mesh_namespaces())
        seen = [e for e in recorder.seen.values() if e["namespace"] in mesh]
        assert len(seen) >= 2 * len(total) * REPLICAS, "recorder missed the rollouts (%d pods)" % len(seen)
        assert recorder.without_sidecar(mesh) == []
    finally:
        if recorder:
            recorder.stop()
        sim.stop()
