"""Benchmark: the `large` scenario (default 1,000 namespaces x 5 Deployments x 2 replicas).

    PYTHONPATH=tests python -m kubesim.bench_large [--namespaces 1000 --deployments 5 --replicas 2]

Starts the simulator as a subprocess (like the tests do), then restarts every Deployment through the
API (the template annotation `kubectl rollout restart` sets) and waits until every Deployment reports
the rollout complete.  Prints load time, restart completion time, and the server's RSS.  Figures only;
nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from kubesim.testing import KubeSim


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--deployments", type=int, default=5)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--pod-ready-seconds", type=float, default=0.5)
    ap.add_argument("--workers", type=int, default=8)
    a = ap.parse_args(argv)

    t0 = time.monotonic()
    sim = KubeSim("large", namespaces=a.namespaces, deployments=a.deployments, replicas=a.replicas,
                  pod_ready_seconds=a.pod_ready_seconds, ready_timeout=1800, audit=False)
    sim.start()
    try:
        load = time.monotonic() - t0
        from kubernetes import client
        apps = client.AppsV1Api(sim.client())
        deps = apps.list_deployment_for_all_namespaces(label_selector="app").items
        deps = [d for d in deps if d.metadata.namespace.startswith("ns-")]
        pods = len(client.CoreV1Api(sim.client()).list_pod_for_all_namespaces().items)
        print(f"scenario large: {a.namespaces} namespaces x {a.deployments} deployments x {a.replicas} replicas")
        print(f"load (process start to ready): {load:.1f} s; {len(deps)} deployments, {pods} pods")
        print(f"RSS after load: {rss_mb(sim.proc.pid):.0f} MiB")

        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        t1 = time.monotonic()

        def restart(d):
            apps.patch_namespaced_deployment(d.metadata.name, d.metadata.namespace, body)
        with ThreadPoolExecutor(a.workers) as ex:
            list(ex.map(restart, deps))
        patched = time.monotonic() - t1
        print(f"restart requests for {len(deps)} deployments sent in {patched:.1f} s")

        def done():
            # raw JSON, not the client's models: the poller must not steal the CPU it measures
            items = sim.get_json("/apis/apps/v1/deployments").get("items") or []
            pending = 0
            for d in items:
                if not d["metadata"]["namespace"].startswith("ns-"):
                    continue
                st = d.get("status") or {}
                want = d["spec"].get("replicas", 1)
                if st.get("observedGeneration", 0) < d["metadata"].get("generation", 1) \
                        or st.get("updatedReplicas", 0) != want or st.get("replicas", 0) != want \
                        or st.get("availableReplicas", 0) != want:
                    pending += 1
            return pending
        last = None
        while True:
            pending = done()
            if pending != last:
                print(f"  {time.monotonic() - t1:6.1f} s: {pending} deployments still rolling", flush=True)
                last = pending
            if pending == 0:
                break
            time.sleep(5.0)
        total = time.monotonic() - t1
        print(f"restart of all deployments complete in {total:.1f} s")
        print(f"RSS after restart: {rss_mb(sim.proc.pid):.0f} MiB")
        stats = sim.stats()
        print(f"API requests served: {stats.get('total')}")
        print(json.dumps({"load_s": round(load, 1), "restart_s": round(total, 1),
                          "rss_mb": round(rss_mb(sim.proc.pid)), "deployments": len(deps), "pods": pods}))
    finally:
        sim.stop()
        sim.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
