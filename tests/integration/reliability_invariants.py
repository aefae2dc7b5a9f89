"""The invariants of the reliability tests and the soak (issue 19), checked on what the simulated cluster holds.

* nothing restarted twice by one run (kubesim's audit log: PATCHes of a workload);
* no pod of a mesh namespace ever without its istio-proxy sidecar (a PodRecorder saw every pod);
* the upgrade record true to the cluster: what it says is done is what the cluster holds (a rollback recorded as
  under way allows the tag and the workloads it moves back on either revision, nothing else), and no run holds
  its lease once every run has ended.

Each check returns a list of violations (strings): empty when the invariant holds.  ``watched`` is the shared setup
of the tests that force faults through playbooks: a cluster with its pod recorder and audit log, whose
``assert_invariants`` checks all of them at once.
"""

from __future__ import annotations

import contextlib
import json

import reliability_support as rs

RECORD = "/api/v1/namespaces/%s/configmaps/meshops-istio-upgrade" % rs.ISTIO_NS


def restarted_twice(entries):
    """Workloads PATCHed more than once in ``entries`` (the audit log of ONE run)."""
    return ["restarted %d times in one run: %s" % (n, key)
            for key, n in sorted(rs.restart_patches(entries).items()) if n > 1]


def without_sidecar(sim, recorder):
    recorder.catch_up()
    return ["pod without istio-proxy: %s" % p for p in recorder.without_sidecar(set(sim.mesh_namespaces()))]


def record_data(sim):
    return (sim.get_or_none(RECORD) or {}).get("data") or {}


def _workload_pods(sim, namespace, kind, name):
    if kind != "Deployment":
        return None
    dep = sim.get_or_none("/apis/apps/v1/namespaces/%s/deployments/%s" % (namespace, name))
    if dep is None:
        return None
    sel = dep["spec"]["selector"].get("matchLabels") or {}
    return [p for p in rs.live_pods(sim, namespace)
            if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]


def record_true(sim, lease_free=True):
    """What the record says is done holds on the cluster."""
    data = record_data(sim)
    problems = []
    if not data:
        return problems
    to_rev, from_rev = data.get("to_revision"), data.get("from_revision")
    deployments = {d["metadata"]["name"] for d in sim.deployments(rs.ISTIO_NS)}
    if "phase.install" in data and "phase.cleanup" not in data and "istiod-%s" % to_rev not in deployments:
        problems.append("record says install done, but istiod-%s is missing" % to_rev)
    if "phase.cleanup" in data and "istiod-%s" % from_rev in deployments:
        problems.append("record says cleanup done, but istiod-%s is still there" % from_rev)
    tag = next((m for m in sim.mwcs() if m["metadata"]["name"] == "istio-revision-tag-%s" % (data.get("tag") or "default")),
               None)
    tag_rev = ((tag or {}).get("metadata", {}).get("labels") or {}).get("istio.io/rev")
    back_to = data.get("rollback.revision") if data.get("rollback.started") else None
    if back_to:
        # a rollback under way (started, its end not recorded): the tag on the target or already back, nothing else
        if tag_rev not in (to_rev, back_to):
            problems.append("record says a rollback to %s is under way from %s, but the tag points at %s"
                            % (back_to, to_rev, tag_rev))
        if back_to != from_rev:
            problems.append("record says a rollback to %s is under way, but the old revision is %s" % (back_to, from_rev))
    elif "phase.tag" in data and tag_rev != to_rev:
        problems.append("record says the tag moved to %s, but it points at %s" % (to_rev, tag_rev))
    if "phase.rollback" in data and "phase.tag" not in data and tag_rev != from_rev:
        problems.append("record says rolled back to %s, but the tag points at %s" % (from_rev, tag_rev))
    # a wave recorded done: every workload it lists is ready and on the revision the tag selects now (a later
    # rollback forgets the waves), each pod injected by it
    for key, value in data.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "wave" or parts[2] != "workloads":
            continue
        if not data.get("wave.%s.done" % parts[1]):
            continue
        for wid in [w for w in value.split(",") if w]:
            namespace, kind, name = wid.split("/")
            pods = _workload_pods(sim, namespace, kind, name)
            if pods is None:
                continue
            if back_to:
                bad = [p["metadata"]["name"] for p in pods if rs.pod_revision(p) not in (to_rev, back_to)]
            else:
                bad = [p["metadata"]["name"] for p in pods if rs.pod_revision(p) != to_rev or not rs.pod_ready(p)]
            if bad and back_to:
                problems.append("record says a rollback moves %s back from %s to %s, but pods %s are on neither"
                                % (wid, to_rev, back_to, bad))
            elif bad:
                problems.append("record says wave %s moved %s, but pods %s are not ready on %s"
                                % (parts[1], wid, bad, to_rev))
    if lease_free and data.get("lease.holder"):
        problems.append("every run has ended, but the lease is still held by %s" % data["lease.holder"])
    return problems


def lease_log(sim):
    data = record_data(sim)
    return [json.loads(v) for k, v in sorted(data.items(), key=lambda kv: kv[0]) if k.startswith("lease.log.")]


def check_all(sim, recorder, run_entries=(), lease_free=True):
    """Every invariant; ``run_entries``: the audit entries of each run, one list per run."""
    problems = []
    for entries in run_entries:
        problems += restarted_twice(entries)
    if recorder is not None:
        problems += without_sidecar(sim, recorder)
    problems += record_true(sim, lease_free=lease_free)
    return problems


# --- the shared setup of the reliability tests ---------------------------------------------------------

# kubesim's large scenario as these tests use it: namespaces x deployments x replicas
LARGE = {"namespaces": 2, "deployments": 4, "replicas": 2}


class Watched:
    """A simulated cluster under the invariants' watch: ``sim``, its ``audit`` log, the pod ``recorder`` (started
    once the cluster is set up, before the runs under test) and the mesh ``namespaces`` a wave moves."""

    def __init__(self, sim):
        self.sim = sim
        self.audit = rs.AuditLog(sim.audit_path)
        self.recorder = None
        self.namespaces = [ns for ns in sim.mesh_namespaces() if ns != "istio-ingress"]

    def wave_vars(self, **kw):
        """Extra vars of a wave1 over every mesh namespace, gateways left alone."""
        return rs.upgrade_vars(self.sim, waves=[{"name": "wave1", "namespaces": self.namespaces}],
                               istio_canary_gateways=[], **kw)

    def assert_invariants(self, runs, lease_free=True):
        """Every invariant holds; ``runs``: the audit entries of each run under test, one list per run."""
        problems = check_all(self.sim, self.recorder, runs, lease_free=lease_free)
        assert not problems, problems


@contextlib.contextmanager
def watched(tmp_path, scenario="large", install=True, pod_ready_seconds=None, args=()):
    """A kubesim (``large``: LARGE's size, pods ready after 1.5 s) with its audit log; ``install``: revision 1-15-4
    installed and tag default on it first (the modules directly, no record), as the waves under test expect.
    Stopped at the end."""
    large = scenario == "large"
    size = ["--namespaces", LARGE["namespaces"], "--deployments", LARGE["deployments"], "--replicas",
            LARGE["replicas"]] if large else []
    if pod_ready_seconds is None:
        pod_ready_seconds = 1.5 if large else 0.2
    sim = rs.Sim(tmp_path, scenario=scenario, pod_ready_seconds=pod_ready_seconds, audit=True,
                 args=size + list(args))
    cluster = None
    try:
        cluster = Watched(sim)
        if install:
            rs.install_and_tag(tmp_path, sim)
        cluster.recorder = rs.PodRecorder(sim)
        yield cluster
    finally:
        if cluster is not None and cluster.recorder is not None:
            cluster.recorder.stop()
        sim.stop()
