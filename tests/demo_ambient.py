"""`make demo SCENARIO=ambient`: the canary upgrade of an ambient mesh, Istio 1.29.6 -> 1.30.3, phase by phase, on a
simulated cluster.

Starts tests/kubesim with the `ambient` scenario (Istio 1.29.6 by Helm in the ambient profile: istio-cni and
ztunnel on 3 nodes, foo and bar ambient with the waypoint `waypoint` in bar, baz on sidecars, the Gateway API
ingress `ingress`), writes an inventory like inventories/sandbox with the test charts and the test helm, and runs

    ansible-playbook -i <inventory> playbooks/upgrade.yml --tags <phase>

for precheck, install, cni, ztunnel (node by node, each node drained first), tag, gateways (istiod rolls the
waypoint and the ingress), wave1 (baz's sidecars), verify and cleanup; prints per node when its ztunnel was
replaced and the data plane before and after.  Exits non-zero when a phase fails or the mesh does not end on
1.30.3 everywhere.  Option --keep leaves the simulator running.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]

import upgrade_support as us  # noqa: E402
from kubesim.helm_scenario import HELM_BIN  # noqa: E402
from kubesim.testing import KubeSim  # noqa: E402

OLD_REV, NEW_REV, NEW_VERSION = "1-29-6", "1-30-3", "1.30.3"
CHARTS = ROOT / "tests" / "kubesim" / "charts"
PHASES = [
    ("precheck", "check the cluster, find the revision behind tag default (1-29-6), record it"),
    ("install", "install istiod 1-30-3 (Helm release istiod-1-30-3) beside 1-29-6"),
    ("cni", "upgrade istio-cni to 1.30.3 and wait for every node"),
    ("ztunnel", "ztunnel node by node: cordon, drain (PDBs honoured), replace, wait ready on 1.30.3, uncordon"),
    ("tag", "point revision tag default at 1-30-3"),
    ("gateways", "istiod re-renders the waypoint and the ingress Gateway: wait until they run 1.30.3"),
    ("wave1", "baz's sidecars onto 1.30.3"),
    ("verify", "ztunnel, istio-cni, gateways, waypoints, sidecars all on 1.30.3; ambient pods still redirected"),
    ("cleanup", "remove revision 1-29-6 now that nothing uses it"),
]


def say(text=""):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def banner(text):
    say()
    say("=" * 100)
    say(text)
    say("=" * 100)


def get(sim, path):
    status, _h, body = sim.request("GET", path)
    return json.loads(body) if status == 200 else {}


def data_plane(sim):
    """{(kind, where): 'version (revision)'} for ztunnel and istio-cni per node, gateways, sidecars."""
    out = {}
    for selector, container, kind in (("app=ztunnel", "istio-proxy", "ztunnel"),
                                      ("k8s-app=istio-cni-node", "install-cni", "istio-cni")):
        for p in get(sim, "/api/v1/namespaces/istio-system/pods?labelSelector=%s" % selector).get("items", []):
            if p["metadata"].get("deletionTimestamp"):
                continue
            image = next(c["image"] for c in p["spec"]["containers"] if c["name"] == container)
            rev = (p["metadata"].get("annotations") or {}).get("istio.io/rev", "")
            out[(kind, p["spec"]["nodeName"])] = image.rsplit(":", 1)[1] + (" (%s)" % rev if rev else "")
    for ns, gw in (("bar", "waypoint"), ("istio-ingress", "ingress")):
        for p in get(sim, "/api/v1/namespaces/%s/pods?labelSelector=gateway.networking.k8s.io/gateway-name=%s"
                     % (ns, gw)).get("items", []):
            if not p["metadata"].get("deletionTimestamp"):
                out[("gateway", "%s/%s" % (ns, gw))] = "%s (%s)" % (
                    p["spec"]["containers"][0]["image"].rsplit(":", 1)[1], p["metadata"]["annotations"]["istio.io/rev"])
    for p in get(sim, "/api/v1/namespaces/baz/pods?labelSelector=app=baz").get("items", []):
        for c in p["spec"].get("initContainers") or []:
            if c["name"] == "istio-proxy" and not p["metadata"].get("deletionTimestamp"):
                out[("sidecar", "baz/%s" % p["metadata"]["name"])] = c["image"].rsplit(":", 1)[1]
    return out


def table(before, after=None):
    lines = ["  %-10s %-40s %-22s %s" % ("kind", "where", "before", "after" if after else "")]
    keys = sorted(set(before) | set(after or {}))
    for key in keys:
        lines.append("  %-10s %-40s %-22s %s" % (key[0], key[1], before.get(key, "-"),
                                                 (after or {}).get(key, "-") if after else ""))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--keep", action="store_true", help="leave the simulator running at the end")
    args = parser.parse_args(argv)
    workdir = ROOT / ".build" / "sandbox-ambient"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    us.ensure_collection_link()
    os.environ["KUBESIM_ISTIOCTL_VERSION"] = NEW_VERSION

    banner("Starting the simulated cluster (tests/kubesim, scenario ambient, 3 nodes)")
    (workdir / "sim").mkdir()
    sim = KubeSim("ambient", workdir=str(workdir / "sim"), pod_ready_seconds=0.3, audit=False)
    sim.start()
    failed = False
    try:
        inventory = us.write_inventory(workdir / "inventory", {"sandbox": sim.kubeconfig},
                                       istio_canary_to_revision=NEW_REV, istio_canary_to_version=NEW_VERSION,
                                       istio_canary_helm=str(HELM_BIN),
                                       istio_canary_helm_charts=dict((k, str(CHARTS / k)) for k in
                                                                     ("base", "istiod", "gateway", "cni", "ztunnel")),
                                       istio_canary_helm_values={"env": {"PILOT_ENABLE_AMBIENT": "true"}},
                                       istio_canary_waves=[{"name": "sidecars", "namespaces": ["baz"]}],
                                       istio_canary_gateways=[], istio_canary_ztunnel_drain=True,
                                       istio_canary_wait_timeout=180)
        say("  API server %s, kubeconfig %s" % (sim.url, sim.kubeconfig))
        say("  inventory  %s" % inventory)
        before = data_plane(sim)
        say()
        say(table(before))
        for index, (tag, what) in enumerate(PHASES, 1):
            banner("Phase %d/%d: --tags %s  (%s)" % (index, len(PHASES), tag, what))
            started = time.monotonic()
            run = us.run_phase(inventory, tag, workdir=workdir / "runs", env={"KUBESIM_ISTIOCTL_VERSION": NEW_VERSION})
            for summary in run.summaries():
                for key, value in summary.items():
                    if key in ("phase", "cluster"):
                        continue
                    if isinstance(value, list):
                        value = ", ".join(str(v) for v in value) if value else "-"
                    say("    %-18s %s" % (key + ":", value))
            say("  took %.1fs" % (time.monotonic() - started))
            if not run.ok:
                say("PHASE %s FAILED (rc %s):" % (tag, run.rc))
                for message in run.failures():
                    say("  " + message)
                say(run.stdout[-3000:])
                failed = True
                return 1
            if tag == "ztunnel":
                for node, entry in sorted(sim.get_json("/kubesim/ztunnel")["nodes"].items()):
                    spans = ", ".join("%.1fs" % ((s[1] or time.time()) - s[0]) for s in entry["not_ready"])
                    say("  %s: served by %s; without a ready ztunnel for %s" % (
                        node, " -> ".join("%s (%s)" % (s["pod"], s["version"]) for s in entry["served_by"]),
                        spans or "0s"))
        banner("Data plane before and after")
        after = data_plane(sim)
        say(table(before, after))
        stale = [k for k, v in after.items() if not v.startswith(NEW_VERSION)]
        if stale:
            say("NOT everything on %s: %s" % (NEW_VERSION, stale))
            failed = True
            return 1
        say()
        say("Done: istio-cni, ztunnel (node by node), the waypoint, the ingress Gateway and baz's sidecars run %s; "
            "revision %s is gone." % (NEW_VERSION, OLD_REV))
        return 0
    finally:
        if args.keep and not failed:
            say("Simulator left running: export KUBECONFIG=%s" % sim.kubeconfig)
        else:
            sim.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(143))
    sys.exit(main())
