"""The soak of issue 19 (``make soak``; ``SOAK_MINUTES=N`` bounds it, default 30).

Upgrade -> rollback -> upgrade cycles of the canary upgrade, through real ``ansible-playbook`` runs (one per
phase group, as AWX jobs would be), on kubesim's ``large`` scenario under random faults for the whole time:
API errors (500/503/429) and latency, dropped watches and write conflicts at random (kubesim's rates, seeded),
an API server outage of random length at a random moment of a random phase in about half the cycles, and now
and then a cycle whose target version crash-loops (its first wave fails; the rollback brings everything back).

Invariants, checked continuously (a pod recorder sees every pod the cluster ever holds) and after every run:
nothing restarted twice by one run (kubesim's audit log), no pod of a mesh namespace without its sidecar, the
upgrade record true to the cluster with no lease left behind, and after each rollback every workload back on
the old proxy.  A phase group that fails for a fault (an outage outlasting the retries) is run again, as an
operator would, and counted.

Prints cycles completed, faults injected, invariant violations (must be 0: the exit code is 1 otherwise) and
the slowest phase group; ``--json PATH`` writes the same figures for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_invariants as inv  # noqa: E402
import reliability_support as rs  # noqa: E402

OLD_VERSION = rs.OLD_VERSION
GOOD = (rs.NEW_REV, rs.NEW_VERSION)
CRASHING = ("1-16-0", "1.16.0")  # kubesim --crash-proxy-version 1.16.0: its proxies crash-loop
UPGRADE = ("precheck,install,tag", "wave1,verify", "wave2,verify")
LEASE_TTL = 15
MAX_ATTEMPTS = 4


class Soak:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.rng = random.Random(args.seed)
        self.violations = []
        self.durations = []  # (seconds, phase group, cycle)
        self.retries = 0
        self.outages = 0
        self.crash_cycles = 0
        self.cycles = 0
        self.runs = 0
        self.sim = rs.Sim(workdir, scenario="large", pod_ready_seconds=0.5, audit=True, name="soak", args=[
            "--namespaces", args.namespaces, "--deployments", args.deployments, "--replicas", 2,
            "--api-error-rate", args.error_rate, "--latency-ms", args.latency_ms,
            "--drop-watch-rate", args.drop_watch_rate, "--conflict-rate", args.conflict_rate,
            "--crash-proxy-version", CRASHING[1], "--seed", args.seed])
        self.audit = rs.AuditLog(self.sim.audit_path)
        self.recorder = rs.PodRecorder(self.sim)
        self.namespaces = sorted(ns for ns in self.sim.mesh_namespaces() if ns.startswith("ns-"))
        half = max(1, len(self.namespaces) // 2)
        self.waves = [{"name": "wave1", "namespaces": self.namespaces[:half]},
                      {"name": "wave2", "namespaces": self.namespaces[half:]}]
        self.load = []  # the machine's 1-minute load average, every 5 s
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    # -- invariants -------------------------------------------------------------------------------------
    def violation(self, where, problems):
        for problem in problems:
            line = "%s: %s" % (where, problem)
            if line not in self.violations:
                self.violations.append(line)
                print("  VIOLATION %s" % line, flush=True)

    def _watch(self):
        """Continuously: no pod without its sidecar, ever."""
        while not self._stop_watch.wait(5):
            self.load.append(os.getloadavg()[0])
            try:
                self.violation("continuous", inv.without_sidecar(self.sim, self.recorder))
            except Exception as exc:  # an outage: the next round reads again
                del exc

    def back_on_old(self):
        plane = rs.data_plane(self.sim, self.namespaces)
        return ["after rollback %s runs %s" % (w, images) for w, images in sorted(plane.items())
                if images != [rs.PROXY_IMAGE % OLD_VERSION] * 2]

    # -- runs ---------------------------------------------------------------------------------------------
    def run(self, tags, revision, version, crash_wave=False, **extra):
        """One phase group, again after a failure a fault caused (at most MAX_ATTEMPTS).  ``crash_wave``: the
        wave of a crash-looping target, which must fail naming CrashLoopBackOff."""
        variables = rs.upgrade_vars(self.sim, waves=self.waves, istio_canary_gateways=[],
                                    istio_canary_to_revision=revision, istio_canary_to_version=version,
                                    istio_canary_lease_ttl=LEASE_TTL, istio_canary_wait_timeout=120, **extra)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            mark = self.audit.mark()
            outage = self._maybe_outage()
            started = time.monotonic()
            res = rs.run_playbook(self.workdir, tags, variables, istioctl_version=version, timeout=1800)
            took = time.monotonic() - started
            if outage:
                outage.join()
            self.runs += 1
            self.durations.append((took, tags, self.cycles + 1))
            entries = self.audit.entries(mark)
            self.violation("%s (cycle %d)" % (tags, self.cycles + 1), inv.restarted_twice(entries))
            # the record is true to the cluster after every run, a failed one too (a rollback records that it is
            # under way before it moves the tag back); a failed run's lease may outlive it until it expires
            self.violation("%s (cycle %d)" % (tags, self.cycles + 1),
                           self._read(lambda: inv.record_true(self.sim, lease_free=res.rc == 0)))
            print("  %-22s %-7s rc=%d %5.1fs%s" % (tags, revision, res.rc, took,
                                                   " (attempt %d)" % attempt if attempt > 1 else ""), flush=True)
            message = rs.error_text(res)
            if crash_wave and res.rc == 0:
                self.violation("cycle %d" % (self.cycles + 1), ["a crash-looping proxy passed %s" % tags])
                return res
            if crash_wave and "CrashLoopBackOff" in message:
                return res
            if res.rc == 0 and not crash_wave:
                return res
            print("    failed: %s" % message.replace("\n", " ")[:300], flush=True)
            self.retries += 1
            if "leased to another run" in message:
                time.sleep(LEASE_TTL + 2)  # the failed run's lease (nothing released it) expires first
            else:
                self._read(lambda: self.sim.get("/version"))
        raise RuntimeError("%s kept failing %d times: %s" % (tags, MAX_ATTEMPTS, rs.error_text(res)))

    def _read(self, call):
        for _attempt in range(120):
            try:
                return call()
            except Exception:  # noqa: BLE001 -- an outage under way: wait for the API server
                time.sleep(0.5)
        return call()

    def _maybe_outage(self):
        if self.rng.random() >= self.args.outage_chance:
            return None
        delay, seconds = self.rng.uniform(2, 20), self.rng.randint(3, 20)

        def later():
            time.sleep(delay)
            try:
                self.sim.request("POST", "/kubesim/outage?seconds=%d" % seconds, retries=3)
                self.outages += 1
                print("    outage of %ds after %.0fs" % (seconds, delay), flush=True)
            except Exception as exc:  # noqa: BLE001 -- the run ended before, or one is under way
                del exc

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        return thread

    def cycle(self):
        crash = self.rng.random() < self.args.crash_chance
        revision, version = CRASHING if crash else GOOD
        print("cycle %d: upgrade to %s%s, then rollback" % (self.cycles + 1, revision,
                                                            " (its proxies crash-loop)" if crash else ""), flush=True)
        for tags in UPGRADE:
            self.run(tags, revision, version, crash_wave=crash and tags.startswith("wave1"))
            if crash and tags.startswith("wave1"):
                self.crash_cycles += 1
                break  # no further wave: roll back (the failed wave released its lease)
        self.run("rollback", revision, version, istio_canary_rollback=True)
        self.violation("rollback (cycle %d)" % (self.cycles + 1), self._read(self.back_on_old))
        self.cycles += 1

    def stats(self):
        stats = self._read(lambda: self.sim.get("/kubesim/stats"))
        codes = {}
        for entry in self.audit.entries():
            codes[str(entry.get("code"))] = codes.get(str(entry.get("code")), 0) + 1
        watches = sum(1 for e in self.audit.entries() if e.get("verb") == "watch")
        return {
            "api_errors_injected": sum(codes.get(c, 0) for c in ("500", "503", "429")),
            "conflicts_injected": stats["faults"]["concurrent_writes"],
            "conflicts_answered_409": codes.get("409", 0),
            "outages": stats["faults"]["outages"],
            "crash_looping_cycles": self.crash_cycles,
            "watch_requests": watches,
            "requests": stats.get("total"),
        }

    def close(self):
        self._stop_watch.set()
        self.recorder.stop()
        self.sim.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="stop starting cycles after this long (default 30)")
    ap.add_argument("--max-cycles", type=int, default=0, help="stop after this many cycles (0: no limit)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--namespaces", type=int, default=4)
    ap.add_argument("--deployments", type=int, default=3)
    ap.add_argument("--error-rate", type=float, default=0.03)
    ap.add_argument("--latency-ms", type=float, default=15.0)
    ap.add_argument("--drop-watch-rate", type=float, default=0.05)
    ap.add_argument("--conflict-rate", type=float, default=0.1)
    ap.add_argument("--outage-chance", type=float, default=0.5, help="chance of an outage in each phase group run")
    ap.add_argument("--crash-chance", type=float, default=0.2, help="chance that a cycle's target crash-loops")
    ap.add_argument("--workdir", default=os.path.join(rs.BUILD, "soak"))
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    if not 0 < args.minutes <= 24 * 60:
        ap.error("--minutes must be more than 0 and at most 1440")
    os.makedirs(args.workdir, exist_ok=True)
    print("soak: %.0f minutes, seed %d, large scenario %d namespaces x %d deployments x 2 replicas" % (
        args.minutes, args.seed, args.namespaces, args.deployments), flush=True)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    soak = Soak(args, args.workdir)
    error = None
    try:
        while time.monotonic() < deadline and (not args.max_cycles or soak.cycles < args.max_cycles):
            soak.cycle()
    except Exception as exc:  # noqa: BLE001 -- reported below, counted as a violation
        error = "%s: %s" % (type(exc).__name__, exc)
        soak.violation("soak", [error])
    finally:
        faults = soak.stats()
        soak.violation("end", soak._read(lambda: inv.without_sidecar(soak.sim, soak.recorder)))
        soak.close()
    slowest = max(soak.durations) if soak.durations else (0, "-", 0)
    figures = {
        "minutes": round((time.monotonic() - started) / 60, 1), "seed": args.seed,
        "scenario": "large %dx%dx2" % (args.namespaces, args.deployments),
        "cycles_completed": soak.cycles, "ansible_playbook_runs": soak.runs, "phase_group_retries": soak.retries,
        "faults_injected": dict(faults, outages_started=soak.outages),
        "invariant_violations": len(soak.violations), "violations": soak.violations,
        "slowest_phase": {"tags": slowest[1], "seconds": round(slowest[0], 1), "cycle": slowest[2]},
        "machine": {"cpus": os.cpu_count(), "load_1min_mean": round(sum(soak.load) / len(soak.load), 1) if soak.load else None,
                    "load_1min_max": round(max(soak.load), 1) if soak.load else None},
    }
    print("\n=== soak ===")
    print("cycles completed:      %d (%d ansible-playbook runs, %d re-run after a fault)" % (
        soak.cycles, soak.runs, soak.retries))
    print("faults injected:       %s" % ", ".join("%s=%s" % kv for kv in sorted(figures["faults_injected"].items())))
    print("invariant violations:  %d%s" % (len(soak.violations), "".join("\n  " + v for v in soak.violations)))
    print("slowest phase:         %s, %.1fs (cycle %d)" % (slowest[1], slowest[0], slowest[2]))
    print("wall time:             %.1f minutes (seed %d)" % (figures["minutes"], args.seed))
    print("machine load:          1-minute load average mean %s, max %s on %s CPUs" % (
        figures["machine"]["load_1min_mean"], figures["machine"]["load_1min_max"], figures["machine"]["cpus"]))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2, sort_keys=True)
    return 1 if soak.violations or not soak.cycles else 0


if __name__ == "__main__":
    sys.exit(main())
