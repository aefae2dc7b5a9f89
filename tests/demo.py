"""`make demo`: the Istio 1.14.6 -> 1.15.4 canary upgrade of the reference articles, phase by phase, on a
simulated cluster.

Starts tests/kubesim with the `blog` scenario (writing the kubeconfig where inventories/sandbox expects it,
.build/sandbox/kubeconfig), puts the stand-in istioctl (version 1.15.4) on PATH, runs every phase with

    ansible-playbook -i inventories/sandbox playbooks/upgrade.yml --tags <phase>

in order (precheck, install, tag, gateways, wave1, verify, wave2, verify, cleanup, report), prints what each phase
changed and the data-plane versions before and after, then stops the simulator.  Exits non-zero when a
phase fails or the cluster does not end in the articles' final state.

Options: --keep (leave the simulator running at the end, printing how to reach it), --rerun (run every
phase a second time and show that nothing changes), --scenario helm (`make demo SCENARIO=helm`): the Helm
upgrade of Istio 1.29.6 -> 1.30.3 on the `helm` scenario (releases istio-base, istiod-1-29-6, istio-ingressgateway
installed by real Helm; native sidecars): the new revision becomes release istiod-1-30-3, the tag changes hands
between the releases, cleanup names the pods no restart moves (a bare pod, a Job's and a CronJob's pod) and
refuses; they are deleted by hand, as an operator would, and cleanup uninstalls release istiod-1-29-6.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import upgrade_support as us  # noqa: E402
from kubesim.testing import KubeSim  # noqa: E402

PHASES = [
    ("precheck", "check the cluster, find the current revision behind tag default, record it"),
    ("install", "install istiod 1-15-4 beside 1-14-6"),
    ("tag", "point revision tag default at 1-15-4"),
    ("gateways", "restart the injected ingress gateway onto the new proxy"),
    ("wave1", "first wave: namespace bar"),
    ("verify", "everything moved so far is ready on 1.15.4"),
    ("wave2", "second wave: namespaces foo and baz"),
    ("verify", "everything moved so far is ready on 1.15.4"),
    ("cleanup", "uninstall revision 1-14-6 now that nothing uses it"),
    ("report", "the upgrade report: .build/sandbox/reports/sandbox.html (and .json, and the fleet page index.html)"),
]
OLD_REV, NEW_REV, NEW_VERSION = "1-14-6", "1-15-4", "1.15.4"
HELM_PHASES = [
    ("precheck", "check the cluster (istioctl x precheck --from-version 1.29.6), find the revision behind tag default"),
    ("install", "helm upgrade --install istiod-1-30-3 beside release istiod-1-29-6"),
    ("tag", "point tag default at 1-30-3: webhook and Service, handed from release istiod-1-29-6 to istiod-1-30-3"),
    ("gateways", "restart the injected ingress gateway onto the new proxy"),
    ("wave1", "first wave: namespace bar"),
    ("verify", "everything moved so far is ready on 1.30.3; names the pods no restart moves"),
    ("wave2", "second wave: namespaces foo and baz"),
    ("verify", "everything moved so far is ready on 1.30.3"),
    ("cleanup!", "refused: a bare pod, a Job's and a CronJob's pod still run the old proxy"),
    ("by-hand", "delete them by hand (kubectl delete), as the refusal says"),
    ("cleanup", "helm uninstall istiod-1-29-6; istio-base defaultRevision 1-30-3; nothing of 1-29-6 is left"),
    ("report", "the upgrade report: .build/sandbox/reports/sandbox.html (and .json, and the fleet page index.html)"),
]
CHARTS = ROOT / "tests" / "kubesim" / "charts"
HELM_VARS = {
    "istio_canary_to_revision": "1-30-3", "istio_canary_to_version": "1.30.3",
    "istio_canary_helm": str(ROOT / "tests" / "kubesim" / "bin" / "helm"),
    "istio_canary_helm_charts": {"base": str(CHARTS / "base"), "istiod": str(CHARTS / "istiod"),
                                 "gateway": str(CHARTS / "gateway")},
}


def say(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def banner(text):
    say()
    say("=" * 100)
    say(text)
    say("=" * 100)


def show_control_plane(sim):
    cp = us.control_plane(sim)
    for name, info in sorted(cp["istiod"].items()):
        say("  istiod        %-28s version %-8s %s" % (name, info["version"], "ready" if info["ready"] else "NOT READY"))
    for name, info in sorted(cp["mutating"].items()):
        say("  webhook       %-40s istio.io/rev=%-8s -> %s" % (name, info["rev"], ",".join(info["services"])))
    for name, info in sorted(cp["validating"].items()):
        say("  validator     %-40s istio.io/rev=%-8s -> %s" % (name, info["rev"], ",".join(info["services"])))
    for name, labels in sorted(cp["namespaces"].items()):
        say("  namespace     %-16s %s" % (name, ", ".join("%s=%s" % kv for kv in sorted(labels.items()))))
    return cp


def show_run(run):
    for summary in run.summaries():
        phase = summary.get("phase", "?")
        details = dict((k, v) for k, v in summary.items() if k not in ("phase", "cluster"))
        say("  summary of %s on %s:" % (phase, summary.get("cluster")))
        for key, value in details.items():
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value) if value else "-"
            say("    %-18s %s" % (key + ":", value))
    changed = [e["task"].split(" : ", 1)[-1] for e in run.changed_tasks()]
    say("  changed: %s" % ("; ".join(changed) if changed else "nothing"))
    stats = run.stats
    for host, counts in sorted(stats.items()):
        say("  recap %s: ok=%s changed=%s failed=%s" % (host, counts.get("ok"), counts.get("changed"), counts.get("failures")))


def delete_unmovable(sim):
    """What the cleanup refusal asks for: the pods no restart moves, deleted by hand (with their Jobs)."""
    for path in ("/api/v1/namespaces/foo/pods/debug", "/apis/batch/v1/namespaces/bar/jobs/migrate",
                 "/apis/batch/v1/namespaces/baz/jobs/report-manual"):
        code, _headers, _body = sim.request("DELETE", path + "?propagationPolicy=Foreground")
        say("  kubectl delete %s -> %s" % (path.split("/namespaces/", 1)[1], code))
    sim.wait_for(lambda: not [p for p in sim.get_json("/api/v1/pods")["items"]
                              if OLD_REV in (p["metadata"].get("annotations") or {}).get("sidecar.istio.io/status", "")],
                 timeout=120, message="the old revision's pods gone")


def final_state_problems(cp, plane):
    problems = []
    if sorted(cp["istiod"]) != ["istiod-%s" % NEW_REV]:
        problems.append("istiod deployments: %s" % sorted(cp["istiod"]))
    tag = cp["mutating"].get("istio-revision-tag-default") or {}
    if tag.get("rev") != NEW_REV:
        problems.append("tag default points at %s" % tag.get("rev"))
    if "istio-sidecar-injector-%s" % OLD_REV in cp["mutating"]:
        problems.append("MWC istio-sidecar-injector-%s still exists" % OLD_REV)
    for workload, info in sorted(plane.items()):
        if info["versions"] != [NEW_VERSION] or info["ready"] != info["pods"]:
            problems.append("%s: proxies %s, %s/%s ready" % (workload, info["versions"], info["ready"], info["pods"]))
    return problems


def sim_helm_list(sim):
    import subprocess  # pylint: disable=import-outside-toplevel
    proc = subprocess.run([str(ROOT / "tests" / "kubesim" / "bin" / "helm"), "list", "-A"], env=sim.kubectl_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    return (proc.stdout or proc.stderr).splitlines()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the simulator running at the end")
    parser.add_argument("--rerun", action="store_true", help="run every phase again and show nothing changes")
    parser.add_argument("--pod-ready-seconds", type=float, default=0.3)
    parser.add_argument("--scenario", choices=["blog", "helm"], default="blog")
    args = parser.parse_args(argv)
    global OLD_REV, NEW_REV, NEW_VERSION  # pylint: disable=global-statement
    phases_of_scenario, extra_vars = PHASES, None
    if args.scenario == "helm":
        OLD_REV, NEW_REV, NEW_VERSION = "1-29-6", "1-30-3", "1.30.3"
        phases_of_scenario, extra_vars = HELM_PHASES, HELM_VARS

    workdir = ROOT / ".build" / "sandbox"
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "runs", ignore_errors=True)
    for stale in ("kubeconfig", "audit.log"):
        try:
            (workdir / stale).unlink()
        except FileNotFoundError:
            pass
    us.ensure_collection_link()
    os.environ["KUBESIM_ISTIOCTL_VERSION"] = NEW_VERSION

    banner("Starting the simulated cluster (tests/kubesim, scenario %s)" % args.scenario)
    sim = KubeSim(args.scenario, workdir=str(workdir), pod_ready_seconds=args.pod_ready_seconds, audit=False)
    sim.start()
    failed = False
    try:
        say("  API server %s, kubeconfig %s" % (sim.url, sim.kubeconfig))
        say("  istioctl   %s (stand-in, version %s)" % (us.ISTIOCTL, NEW_VERSION))
        say("  inventory  %s" % us.SANDBOX)
        say()
        before = us.data_plane(sim)
        show_control_plane(sim)
        say()
        say(us.version_table(before))

        base = list(phases_of_scenario)
        phases = base + ([(phase[0], "second run: must change nothing") for phase in base
                          if phase[0] not in ("by-hand", "cleanup!", "report")] if args.rerun else [])
        for index, (tag, what) in enumerate(phases, 1):
            if tag == "by-hand":
                banner("Step %d/%d: by hand  (%s)" % (index, len(phases), what))
                delete_unmovable(sim)
                continue
            refusal = tag.endswith("!")
            tag = tag.rstrip("!")
            banner("Phase %d/%d: --tags %s  (%s)" % (index, len(phases), tag, what))
            started = time.monotonic()
            run = us.run_phase(us.SANDBOX, tag, workdir=workdir / "runs", extra_vars=extra_vars,
                               env={"KUBESIM_ISTIOCTL_VERSION": NEW_VERSION})
            show_run(run)
            say("  took %.1fs" % (time.monotonic() - started))
            if refusal:
                say("  refused, as expected:" if not run.ok else "  NOT refused")
                for message in run.failures():
                    say("  " + message)
                if run.ok:
                    failed = True
                    return 1
                continue
            if not run.ok:
                say()
                say("PHASE %s FAILED (rc %s):" % (tag, run.rc))
                for message in run.failures():
                    say("  " + message)
                say(run.stdout[-4000:])
                say(run.stderr[-2000:])
                failed = True
                return 1
            if index > len(base) and run.changed():
                say("  second run of %s changed something: %s" % (tag, [e["task"] for e in run.changed_tasks()]))
                failed = True
                return 1

        banner("Data plane before and after")
        after = us.data_plane(sim)
        say(us.version_table(before, after))
        say()
        cp = show_control_plane(sim)
        record = us.upgrade_record(sim) or {}
        say()
        say("  upgrade record (configmap istio-system/meshops-istio-upgrade):")
        for key, value in sorted(record.items()):
            say("    %-28s %s" % (key, value))
        if args.scenario == "helm":
            say()
            say("  helm list -A (real Helm, release records on the cluster):")
            for line in sim_helm_list(sim):
                say("    " + line)
        problems = final_state_problems(cp, after)
        say()
        if problems:
            say("NOT the articles' final state:")
            for problem in problems:
                say("  " + problem)
            failed = True
            return 1
        say("Done: only istiod-%s runs, tag default points at it, every proxy runs %s, the old injector is gone."
            % (NEW_REV, NEW_VERSION))
        say("The report: %s (the fleet page: index.html beside it)" % (workdir / "reports" / "sandbox.html"))
        return 0
    finally:
        if args.keep and not failed:
            say()
            say("Simulator left running (pid %s): export KUBECONFIG=%s; stop it with kill %s"
                % (sim.proc.pid if sim.proc else "?", sim.kubeconfig, sim.proc.pid if sim.proc else "?"))
        else:
            sim.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(143))
    sys.exit(main())
