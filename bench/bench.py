"""Benchmark: one wave of stale workloads restarted on the simulated cluster (bench/run is the entry point).

For every size (workload count) and every contender a fresh kubesim `large` cluster is started
(namespaces x deployments x replicas, pods ready after --pod-ready-seconds), brought to a steady state,
and made stale the way a canary upgrade does: the stand-in istioctl installs revision 1-15-4 and moves the
tag `default` to it, so every workload's pods still run the 1.14.6 proxy.  Then one contender restarts
the wave and the harness checks on the cluster that every restarted workload's live pods run the 1.15.4
proxy.  Contenders:

* module/default, module/tuned: `meshops.istio.rollout_restart` through ansible-playbook with the
  default concurrency and with concurrency 0 (all at once).  The module process is run through an
  interpreter wrapper that records its own wall time and peak RSS (wait4 rusage).
* kubectl loop: `kubectl rollout restart deployment X -n NS` then `kubectl rollout status ...` per
  workload in turn (the reference articles' way).
* kubernetes.core loop: `kubernetes.core.k8s` patch of the restartedAt annotation per workload, then
  `kubernetes.core.k8s_info` with `wait: true` per workload (bench/playbooks/k8s_loop.yml).
* lower bound: one workload restarted alone through the API and watched until complete (the slowest
  of a few samples).  Measured on the kubectl loop's cluster before the loop, on other workloads.

The loops may run on a sample of the wave (--kubectl-sample / --k8s-sample); their time and requests
are then extrapolated linearly to the whole wave and marked as such.  API requests are deltas of the
simulator's /kubesim/stats around each contender (discovery included; the stats calls themselves not).
Nothing here asserts on time: it prints figures, and writes them as JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from kubesim.testing import KubeSim  # noqa: E402

ISTIOCTL = ROOT / "tests" / "kubesim" / "bin" / "istioctl"
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"
OLD_VERSION, NEW_VERSION, NEW_REVISION = "1.14.6", "1.15.4", "1-15-4"
DEPLOYMENTS_PER_NS = 5


def log(msg: str) -> None:
    print(msg, flush=True)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_measured(cmd, env=None, cwd=None, stdout=None):
    """Run a command; -> (rc, wall seconds, peak RSS MiB of it and its waited descendants, stdout bytes)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout or subprocess.PIPE, stderr=subprocess.STDOUT)
    out_chunks = []
    if proc.stdout is not None:
        for chunk in iter(lambda: proc.stdout.read(65536), b""):
            out_chunks.append(chunk)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    run_measured.cpu = ru.ru_utime + ru.ru_stime  # of it and its waited descendants (workers, modules)
    return proc.returncode, time.monotonic() - t0, ru.ru_maxrss / 1024.0, b"".join(out_chunks)


# ------------------------------------------------------------------------------------------ cluster

class Cluster:
    """A fresh kubesim `large` cluster whose wave (every ns-* Deployment) is made stale."""

    def __init__(self, workloads: int, replicas: int, ready_s: float, workdir: Path, extra_namespaces: int = 0):
        self.n = workloads
        self.namespaces = max(1, (workloads + DEPLOYMENTS_PER_NS - 1) // DEPLOYMENTS_PER_NS)
        self.per_ns = min(DEPLOYMENTS_PER_NS, workloads)
        self.replicas = replicas
        total_ns = self.namespaces + extra_namespaces
        self.sim = KubeSim("large", namespaces=total_ns, deployments=self.per_ns, replicas=replicas,
                           pod_ready_seconds=ready_s, audit=False, ready_timeout=900,
                           workdir=str(workdir))
        every = [(f"ns-{i + 1:04d}", f"app-{j + 1}") for i in range(total_ns) for j in range(self.per_ns)]
        self.workloads = every[:workloads]           # the wave
        self.spare = every[self.namespaces * self.per_ns:]  # extra namespaces (lower bound samples)
        self.ns_names = sorted({ns for ns, _ in self.workloads})

    @property
    def kubeconfig(self) -> str:
        return self.sim.kubeconfig

    def env(self) -> dict:
        env = dict(os.environ)
        env["KUBECONFIG"] = self.sim.kubeconfig
        env["KUBESIM_ISTIOCTL_VERSION"] = NEW_VERSION
        return env

    def start(self) -> "Cluster":
        t0 = time.monotonic()
        self.sim.start()
        self.wait_settled(self.workloads + self.spare, OLD_VERSION, timeout=900)
        for args in (["install", "--set", f"revision={NEW_REVISION}", "-y"],
                     ["tag", "set", "default", "--revision", NEW_REVISION, "--overwrite"]):
            r = subprocess.run([sys.executable, str(ISTIOCTL)] + args, env=self.env(), capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise RuntimeError(f"istioctl {' '.join(args)} failed: {r.stdout}{r.stderr}")
        self.setup_s = time.monotonic() - t0
        return self

    def stop(self) -> None:
        self.sim.stop()

    def stats_total(self) -> dict:
        return self.sim.stats()

    def cpu_s(self) -> float:
        """CPU seconds the simulator's process has used so far (user + system, from /proc)."""
        try:
            fields = Path(f"/proc/{self.sim.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (AttributeError, OSError, ValueError, IndexError):
            return float("nan")

    # -- what the cluster holds -------------------------------------------------------------
    def _items(self, path: str) -> list:
        out, cont = [], None
        while True:
            q = f"{path}?limit=2000" + (f"&continue={cont}" if cont else "")
            body = self.sim.get_json(q, timeout=120)
            out += body.get("items") or []
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return out

    def state(self, workloads) -> dict:
        """-> {(ns, name): (rollout complete, sorted set of live pods' proxy versions)}."""
        want = set(workloads)
        deps = {}
        for d in self._items("/apis/apps/v1/deployments"):
            key = (d["metadata"]["namespace"], d["metadata"]["name"])
            if key not in want:
                continue
            st, spec = d.get("status") or {}, d.get("spec") or {}
            r = spec.get("replicas", 1)
            complete = (st.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
                        and st.get("updatedReplicas", 0) == r and st.get("replicas", 0) == r
                        and st.get("availableReplicas", 0) == r)
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            deps[key] = [complete, set(), sel]
        by_ns: dict = {}
        for key, v in deps.items():
            by_ns.setdefault(key[0], []).append((key, v))
        for p in self._items("/api/v1/pods"):
            md = p["metadata"]
            if md.get("deletionTimestamp") or md["namespace"] not in by_ns:
                continue
            labels = md.get("labels") or {}
            for key, v in by_ns[md["namespace"]]:
                if v[2] and all(labels.get(k) == val for k, val in v[2].items()):
                    versions = [c["image"].rsplit(":", 1)[-1] for c in (p["spec"].get("containers") or [])
                                if c.get("name") == "istio-proxy"]
                    v[1].update(versions or ["none"])
        return {k: (v[0], tuple(sorted(v[1]))) for k, v in deps.items()}

    def wait_settled(self, workloads, version, timeout) -> float:
        """Until every given workload is rolled out with all live pods on `version`; -> seconds waited
        (0 when the first look finds it so: the contender had finished the job when it returned)."""
        t0 = time.monotonic()
        first = True
        while True:
            st = self.state(workloads)
            if len(st) == len(workloads) and all(c and v == (version,) for c, v in st.values()):
                return 0.0 if first else time.monotonic() - t0
            first = False
            if time.monotonic() - t0 > timeout:
                bad = {f"{k[0]}/{k[1]}": v for k, v in st.items() if not (v[0] and v[1] == (version,))}
                raise RuntimeError(f"workloads not settled on {version} after {timeout}s: "
                                   f"{dict(list(bad.items())[:5])} ({len(bad)} in all)")
            time.sleep(0.5)


def stats_delta(before: dict, after: dict) -> dict:
    def sub(a, b):
        return {k: a.get(k, 0) - b.get(k, 0) for k in a if a.get(k, 0) - b.get(k, 0)}
    by_res = sub(after["by_resource"], before["by_resource"])
    stats_calls = by_res.pop("kubesim", 0)  # the harness's own /kubesim/stats call
    by_verb = sub(after["by_verb"], before["by_verb"])
    if stats_calls and by_verb.get("get"):
        by_verb["get"] -= stats_calls
        if not by_verb["get"]:
            del by_verb["get"]
    return {"total": after["total"] - before["total"] - stats_calls, "by_verb": by_verb, "by_resource": by_res}


# ------------------------------------------------------------------------------------------ contenders

class Bench:
    def __init__(self, a, workdir: Path):
        self.a = a
        self.workdir = workdir
        self.python = sys.executable
        self.wrapper = workdir / "rusage-python"
        self.wrapper.write_text(
            f"#!{sys.executable}\n"
            "import json, os, sys, time\n"
            "t0 = time.monotonic()\n"
            f"pid = os.fork()\n"
            "if pid == 0:\n"
            f"    os.execv({sys.executable!r}, [{sys.executable!r}] + sys.argv[1:])\n"
            "_, status, ru = os.wait4(pid, 0)\n"
            "log = os.environ.get('BENCH_RUSAGE_LOG')\n"
            "if log:\n"
            "    with open(log, 'a') as fh:\n"
            "        fh.write(json.dumps({'argv': sys.argv[1:], 'wall': time.monotonic() - t0,\n"
            "                             'cpu': ru.ru_utime + ru.ru_stime, 'maxrss_kb': ru.ru_maxrss}) + '\\n')\n"
            "sys.exit(os.waitstatus_to_exitcode(status))\n")
        self.wrapper.chmod(0o755)

    def ansible_env(self, rusage_log: Path) -> dict:
        env = dict(os.environ)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".build"),
            "ANSIBLE_PYTHON_INTERPRETER": str(self.wrapper),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_FORKS": "1",
            "BENCH_RUSAGE_LOG": str(rusage_log),
        })
        env.pop("ANSIBLE_COLLECTIONS_PATHS", None)
        return env

    def playbook(self, cl: Cluster, name: str, extra: dict):
        tag = f"{name}-{int(time.monotonic() * 1000)}"
        vars_file = self.workdir / f"{tag}.vars.json"
        vars_file.write_text(json.dumps(extra))
        rusage_log = self.workdir / f"{tag}.rusage.jsonl"
        cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
               str(PLAYBOOKS / name), "-e", f"@{vars_file}"]
        rc, wall, rss, out = run_measured(cmd, env=self.ansible_env(rusage_log), cwd=str(self.workdir))
        self.last_cpu = run_measured.cpu
        modules = []
        if rusage_log.exists():
            modules = [json.loads(x) for x in rusage_log.read_text().splitlines() if x.strip()]
        try:
            result = json.loads(out.decode(errors="replace")[out.find(b"{"):])
        except ValueError:
            result = None
        if rc != 0:
            raise RuntimeError(f"ansible-playbook {name} failed (rc {rc}):\n{out.decode(errors='replace')[-3000:]}")
        return wall, rss, modules, result

    def ansible_floor(self, samples: int = 3) -> float:
        """The quickest of a few runs of a one-task playbook (ansible.builtin.ping)."""
        times = []
        for _ in range(samples):
            wall, _, _, _ = self.playbook(None, "ansible_floor.yml", {})
            times.append(wall)
        return min(times)

    # -- contenders -----------------------------------------------------------------------
    def module(self, cl: Cluster, concurrency: int, progress: bool = False) -> dict:
        before = cl.stats_total()
        sim_cpu = cl.cpu_s()
        extra = {"bench_kubeconfig": cl.kubeconfig, "bench_namespaces": cl.ns_names,
                 "bench_concurrency": concurrency, "bench_wait_timeout": self.a.wait_timeout}
        if progress:
            # the live progress of issue 17: written by the module, printed by its action plugin
            extra["bench_progress"] = {"label": "wave1", "interval": 10}
        wall, _, modules, result = self.playbook(cl, "rollout_restart.yml", extra)
        after = cl.stats_total()
        sim_cpu = cl.cpu_s() - sim_cpu
        t_done = wall + cl.wait_settled(cl.workloads, NEW_VERSION, timeout=self.a.wait_timeout)
        mod = [m for m in modules if any("rollout_restart" in x for x in m["argv"])] or modules
        summary, slowest = None, None
        try:
            host = result["plays"][0]["tasks"][0]["hosts"]["localhost"]
            summary = host["summary"]
            slowest = max((w.get("duration") or 0) for w in host["workloads"])
        except (TypeError, KeyError, IndexError, ValueError):
            pass
        return {"wall_s": wall, "done_s": t_done, "module_s": mod[0]["wall"] if mod else None,
                "ansible_cpu_s": self.last_cpu, "sim_cpu_s": sim_cpu,
                "module_cpu_s": mod[0].get("cpu") if mod else None,
                "rss_mb": (mod[0]["maxrss_kb"] / 1024.0) if mod else None, "requests": stats_delta(before, after),
                "measured": len(cl.workloads), "extrapolated": False, "summary": summary,
                "slowest_workload_s": slowest}

    def kubectl_loop(self, cl: Cluster, sample) -> dict:
        env = cl.env()
        before = cl.stats_total()
        t0 = time.monotonic()
        peak = 0.0
        for ns, name in sample:
            for verb in (["rollout", "restart"], ["rollout", "status", "--timeout=10m"]):
                rc, _, rss, out = run_measured(["kubectl"] + verb + ["deployment", name, "-n", ns], env=env)
                peak = max(peak, rss)
                if rc != 0:
                    raise RuntimeError(f"kubectl {' '.join(verb)} {ns}/{name} failed: {out.decode()[-500:]}")
        wall = time.monotonic() - t0
        after = cl.stats_total()
        done = wall + cl.wait_settled(sample, NEW_VERSION, timeout=self.a.wait_timeout)
        return self._scaled({"wall_s": wall, "done_s": done, "rss_mb": peak,
                             "requests": stats_delta(before, after)}, len(sample), cl.n)

    def k8s_loop(self, cl: Cluster, sample) -> dict:
        before = cl.stats_total()
        wall, _, modules, _ = self.playbook(cl, "k8s_loop.yml", {
            "bench_kubeconfig": cl.kubeconfig, "bench_wait_timeout": self.a.wait_timeout,
            "bench_workloads": [{"namespace": ns, "name": n} for ns, n in sample]})
        after = cl.stats_total()
        done = wall + cl.wait_settled(sample, NEW_VERSION, timeout=self.a.wait_timeout)
        peak = max((m["maxrss_kb"] for m in modules), default=0) / 1024.0
        return self._scaled({"wall_s": wall, "done_s": done, "rss_mb": peak, "module_runs": len(modules),
                             "requests": stats_delta(before, after)}, len(sample), cl.n)

    @staticmethod
    def _scaled(r: dict, measured: int, n: int) -> dict:
        r["measured"] = measured
        r["extrapolated"] = measured < n
        r["measured_wall_s"], r["measured_done_s"] = r["wall_s"], r["done_s"]
        r["measured_requests"] = r["requests"]["total"]
        if measured < n:
            f = n / measured
            r["wall_s"], r["done_s"] = r["wall_s"] * f, r["done_s"] * f
            r["requests"] = dict(r["requests"], total=round(r["requests"]["total"] * f))
        return r

    def api_all_at_once(self, cl: Cluster) -> dict:
        """An ideal client: every workload patched at once through the API (16 threads), then one
        cluster-wide watch of Deployments until every one is complete (kubectl's criteria).  No
        planning, no verification: how fast the simulated cluster itself can roll the whole wave."""
        from concurrent.futures import ThreadPoolExecutor
        from kubernetes import client, config
        api = client.AppsV1Api(config.new_client_from_config(cl.kubeconfig))
        before = cl.stats_total()
        t0 = time.monotonic()
        rv = api.list_deployment_for_all_namespaces(limit=1).metadata.resource_version
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        gens = {}

        def patch(w):
            d = api.patch_namespaced_deployment(w[1], w[0], body, _preload_content=False)
            md = json.loads(d.data)["metadata"]
            return w, md["generation"]
        with ThreadPoolExecutor(16) as ex:
            for w, gen in ex.map(patch, cl.workloads):
                gens[w] = gen
        pending = set(gens)
        while pending:
            resp = api.list_deployment_for_all_namespaces(watch=True, resource_version=rv, timeout_seconds=600,
                                                          allow_watch_bookmarks=True, _preload_content=False)
            buf = b""
            for chunk in resp.stream(65536, decode_content=False):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    d = ev["object"]
                    md = d["metadata"]
                    rv = md.get("resourceVersion", rv)
                    key = (md.get("namespace"), md.get("name"))
                    if key not in pending:
                        continue
                    st, r = d.get("status") or {}, (d.get("spec") or {}).get("replicas", 1)
                    if (st.get("observedGeneration", 0) >= gens[key] and st.get("updatedReplicas", 0) == r
                            and st.get("replicas", 0) == r and st.get("availableReplicas", 0) == r):
                        pending.discard(key)
                if not pending:
                    break
            resp.release_conn()
            if time.monotonic() - t0 > self.a.wait_timeout:
                raise RuntimeError(f"api_all_at_once: {len(pending)} workloads not complete")
        wall = time.monotonic() - t0
        after = cl.stats_total()
        done = wall + cl.wait_settled(cl.workloads, NEW_VERSION, timeout=self.a.wait_timeout)
        return {"wall_s": wall, "done_s": done, "requests": stats_delta(before, after),
                "measured": len(cl.workloads), "extrapolated": False}

    def lower_bound(self, cl: Cluster, sample) -> dict:
        """Each sampled workload restarted alone (one API patch, then watched until complete)."""
        from kubernetes import client, config, watch
        api = client.AppsV1Api(config.new_client_from_config(cl.kubeconfig))
        times = []
        for ns, name in sample:
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            t0 = time.monotonic()
            dep = api.patch_namespaced_deployment(name, ns, {"spec": {"template": {"metadata": {"annotations": {
                "kubectl.kubernetes.io/restartedAt": stamp}}}}})
            gen = dep.metadata.generation
            w = watch.Watch()
            done = False
            for ev in w.stream(api.list_namespaced_deployment, ns, field_selector=f"metadata.name={name}",
                               resource_version=dep.metadata.resource_version, timeout_seconds=600):
                d = ev["object"]
                st, r = d.status, d.spec.replicas
                if ((st.observed_generation or 0) >= gen and (st.updated_replicas or 0) == r
                        and (st.replicas or 0) == r and (st.available_replicas or 0) == r):
                    done = True
                    w.stop()
            t = time.monotonic() - t0
            if not done:
                raise RuntimeError(f"lower bound: {ns}/{name} did not complete")
            cl.wait_settled([(ns, name)], NEW_VERSION, timeout=60)
            times.append(t)
        return {"done_s": max(times), "samples": [round(x, 2) for x in times]}


# ------------------------------------------------------------------------------------------ main

def sample_of(workloads, k):
    """k workloads spread over the wave (first, last and evenly between)."""
    if k >= len(workloads):
        return list(workloads)
    step = len(workloads) / k
    return [workloads[int(i * step)] for i in range(k)]


REPEATED = ("api_all_at_once", "module_tuned", "module_progress")


def run_size(b: Bench, n: int, memory_only: bool = False) -> dict:
    a = b.a
    res = {"workloads": n, "namespaces": None, "contenders": {}, "load_before": loadavg(),
           "memory_only": memory_only}
    contenders = ["api_all_at_once", "module_tuned", "module_progress", "module_default", "reference", "k8s_loop"]
    if a.quick:
        contenders = ["module_tuned", "reference"]
    if memory_only:
        contenders = ["module_tuned"]
    if a.contenders:
        wanted = set(a.contenders.split(","))
        contenders = [c for c in contenders if c in wanted or (c == "reference" and "kubectl_loop" in wanted)]
    # the contenders of the 1.3x target (and the progress on/off pair) run `--repeat` times, interleaved so that
    # a drift of the machine's load hits them alike; each is reported by its median run (by done time) with the
    # spread of all
    repeated = [c for c in contenders if c in REPEATED]
    # in ABBA order (every other round reversed), so that a load that rises or falls through the rounds
    # favours neither the first nor the last contender of a round
    schedule = [(c, i) for i in range(max(1, a.repeat)) for c in (repeated if i % 2 == 0 else repeated[::-1])] + \
        [(c, 0) for c in contenders if c not in REPEATED]
    runs: dict = {}
    for name, rep in schedule:
        d = Path(tempfile.mkdtemp(prefix=f"{name}-{n}-", dir=b.workdir))
        cl = Cluster(n, a.replicas, a.pod_ready_seconds, d, extra_namespaces=1 if name == "reference" else 0)
        res["namespaces"] = cl.namespaces
        label = name + (f" (run {rep + 1} of {a.repeat})" if name in REPEATED and a.repeat > 1 else "")
        try:
            cl.start()
            log(f"[{n:>5} workloads] {label}: cluster ready in {cl.setup_s:.1f} s "
                f"({cl.namespaces} namespaces x {cl.per_ns} deployments x {a.replicas} replicas; load {loadavg()})")
            if name == "module_default":
                r = b.module(cl, a.default_concurrency)
                r["concurrency"] = a.default_concurrency
            elif name == "module_tuned":
                r = b.module(cl, 0)
                r["concurrency"] = 0
            elif name == "module_progress":
                r = b.module(cl, 0, progress=True)
                r["concurrency"] = 0
            elif name == "reference":
                lb_sample = cl.spare[:max(1, a.lower_bound_samples)]
                res["contenders"]["lower_bound"] = r = b.lower_bound(cl, lb_sample)
                log(f"[{n:>5} workloads] lower bound: {r['done_s']:.2f} s (samples {r['samples']}, "
                    f"namespace {lb_sample[0][0]} beside the wave)")
                k = a.kubectl_sample if a.kubectl_sample > 0 else n
                sample = sample_of(cl.workloads, min(k, n))
                r = b.kubectl_loop(cl, sample)
                r["extrapolated"] = len(sample) < n
                name = label = "kubectl_loop"
            elif name == "api_all_at_once":
                r = b.api_all_at_once(cl)
            elif name == "k8s_loop":
                k = a.k8s_sample if a.k8s_sample > 0 else n
                r = b.k8s_loop(cl, sample_of(cl.workloads, min(k, n)))
            r["load"] = loadavg()
            runs.setdefault(name, []).append(r)
            log(f"[{n:>5} workloads] {label}: {describe(r)}")
        finally:
            cl.stop()
            shutil.rmtree(d, ignore_errors=True)
    for name, rs in runs.items():
        ordered = sorted(rs, key=lambda x: x["done_s"])
        r = dict(ordered[(len(ordered) - 1) // 2])  # the median (the lower one of an even count)
        if len(rs) > 1:
            r["runs"] = [dict({k: x.get(k) for k in ("done_s", "wall_s", "module_s", "module_cpu_s", "ansible_cpu_s",
                                                     "sim_cpu_s", "slowest_workload_s", "load")},
                              requests=x["requests"]["total"]) for x in rs]
        res["contenders"][name] = r
    res["load_after"] = loadavg()
    return res


def describe(r: dict) -> str:
    s = f"done in {r['done_s']:.1f} s"
    if r.get("module_s") is not None:
        s += (f" (module process {r['module_s']:.1f} s, {r.get('module_cpu_s') or 0:.2f} s CPU, "
              f"ansible-playbook {r['wall_s']:.1f} s, {r.get('ansible_cpu_s') or 0:.2f} s CPU in all, "
              f"simulator {r.get('sim_cpu_s') or 0:.2f} s CPU")
        if r.get("slowest_workload_s") is not None:
            s += f", slowest workload restart-to-verified {r['slowest_workload_s']:.1f} s"
        s += ")"
    if r.get("extrapolated"):
        s += f" EXTRAPOLATED from {r['measured']} measured in {r['measured_done_s']:.1f} s"
    s += f"; {r['requests']['total']} API requests"
    if r.get("rss_mb"):
        s += f"; peak RSS {r['rss_mb']:.0f} MiB"
    if r.get("summary"):
        s += f"; summary {r['summary']}"
    return s


def ratios(res: dict) -> dict:
    c = res["contenders"]
    n = res["workloads"]
    out = {}
    best = c.get("module_tuned") or c.get("module_default")
    lb = c.get("lower_bound")
    if best and lb:
        out["tuned_vs_lower_bound"] = best["done_s"] / lb["done_s"]
        if best.get("module_s"):
            out["tuned_module_process_vs_lower_bound"] = best["module_s"] / lb["done_s"]
        if best.get("slowest_workload_s"):
            out["tuned_slowest_workload_vs_lower_bound"] = best["slowest_workload_s"] / lb["done_s"]
    if best and c.get("api_all_at_once"):
        out["tuned_vs_api_all_at_once"] = best["done_s"] / c["api_all_at_once"]["done_s"]
        if best.get("module_s"):
            out["tuned_module_process_vs_api_all_at_once"] = best["module_s"] / c["api_all_at_once"]["done_s"]
    for other in ("kubectl_loop", "k8s_loop"):
        if best and c.get(other):
            out[f"{other}_vs_tuned"] = c[other]["done_s"] / best["done_s"]
    if c.get("module_progress") and c.get("module_tuned"):
        # issue 17's budget: live progress may slow the wave by at most 5%
        out["progress_overhead_pct"] = 100.0 * (c["module_progress"]["done_s"] / c["module_tuned"]["done_s"] - 1)
        # CPU is what the progress costs on a loaded machine: medians over the runs, module and whole run
        for key, name in (("module_cpu_s", "progress_module_cpu_overhead_pct"),
                          ("ansible_cpu_s", "progress_ansible_cpu_overhead_pct"),
                          ("sim_cpu_s", "progress_simulator_cpu_overhead_pct")):
            cpus = [sorted(x.get(key) or 0 for x in (c[m].get("runs") or [c[m]]))
                    for m in ("module_progress", "module_tuned")]
            if all(cpus) and cpus[1][(len(cpus[1]) - 1) // 2]:
                out[name] = 100.0 * (cpus[0][(len(cpus[0]) - 1) // 2] / cpus[1][(len(cpus[1]) - 1) // 2] - 1)
    if c.get("module_progress", {}).get("runs") and c.get("module_tuned", {}).get("runs"):
        # round by round (each round ran both, back to back): the median of the rounds' ratios
        pairs = sorted(p["done_s"] / t["done_s"] for p, t in zip(c["module_progress"]["runs"],
                                                                  c["module_tuned"]["runs"]))
        out["progress_overhead_paired_median_pct"] = 100.0 * (pairs[(len(pairs) - 1) // 2] - 1)
    for mod in ("module_default", "module_tuned", "module_progress"):
        if c.get(mod):
            req = c[mod]["requests"]["total"]
            out[f"{mod}_requests_per_workload"] = req / n
            patches = c[mod]["requests"]["by_verb"].get("patch", 0)
            out[f"{mod}_requests_other_than_patches"] = req - patches
    return out


def print_table(results: list) -> None:
    rows = [("workloads", "contender", "done s", "ansible s", "module s", "API req", "req/wl", "peak RSS MiB",
             "note")]
    for res in results:
        n = res["workloads"]
        for name in ("lower_bound", "api_all_at_once", "module_tuned", "module_progress", "module_default",
                     "kubectl_loop", "k8s_loop"):
            r = res["contenders"].get(name)
            if not r:
                continue
            req = r.get("requests", {}).get("total")
            note = ""
            if r.get("extrapolated"):
                note = f"extrapolated from {r['measured']} measured"
            if name == "lower_bound":
                note = f"slowest of {len(r['samples'])} single rollouts"
            if name.startswith("module"):
                note = f"concurrency {r['concurrency']}"
            if name == "api_all_at_once":
                note = "ideal client: raw API patches + one watch"
            if r.get("runs"):
                done = sorted(x["done_s"] for x in r["runs"])
                note += f"; median of {len(done)} runs ({done[0]:.1f}-{done[-1]:.1f} s)"
            rows.append((str(n), name, f"{r['done_s']:.1f}",
                         f"{r['wall_s']:.1f}" if name.startswith("module") else "",
                         f"{r['module_s']:.1f}" if r.get("module_s") else "",
                         str(req) if req is not None else "", f"{req / n:.2f}" if req is not None else "",
                         f"{r['rss_mb']:.0f}" if r.get("rss_mb") else "", note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        log("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="meshops.istio rollout_restart benchmark (see bench/bench.py)")
    ap.add_argument("--quick", action="store_true", help="one small size, module (all at once) vs kubectl loop sample")
    ap.add_argument("--sizes", default=None, help="comma separated workload counts (default 10,100,1000)")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--pod-ready-seconds", type=float, default=2.0)
    ap.add_argument("--default-concurrency", type=int, default=10, help="the module's default (documented)")
    ap.add_argument("--kubectl-sample", type=int, default=None,
                    help="workloads the kubectl loop really restarts (0 = all; default all up to 100, 20 above)")
    ap.add_argument("--k8s-sample", type=int, default=None,
                    help="workloads the kubernetes.core loop really restarts (0 = all; default all up to 10, 20 above)")
    ap.add_argument("--lower-bound-samples", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs of the ideal client and of the module all at once per size, reported by their "
                         "median (default 3; 1 with --quick)")
    ap.add_argument("--wait-timeout", type=int, default=1800)
    ap.add_argument("--rss-sizes", default=None,
                    help="extra sizes where only the module (all at once) runs, for its memory curve "
                         "(default 2000; none with --quick)")
    ap.add_argument("--contenders", default=None,
                    help="comma separated subset of api_all_at_once,module_tuned,module_progress,module_default,"
                         "kubectl_loop,"
                         "k8s_loop (kubectl_loop includes the lower bound; default all)")
    ap.add_argument("--json", default=None, help="write all figures to this file")
    a = ap.parse_args(argv)
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    if a.quick:
        sizes = [int(x) for x in (a.sizes or "10").split(",")]
        if a.kubectl_sample is None:
            a.kubectl_sample = 2
        a.lower_bound_samples = min(a.lower_bound_samples, 1)
    else:
        sizes = [int(x) for x in (a.sizes or "10,100,1000").split(",")]
    rss_default = "" if (a.quick or a.sizes) else "2000"
    rss_sizes = [int(x) for x in (a.rss_sizes if a.rss_sizes is not None else rss_default).split(",") if x.strip()]

    started = time.monotonic()
    log(f"meshops.istio rollout_restart benchmark - {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
    log(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}, load average {loadavg()}")
    log(f"scenario large: {DEPLOYMENTS_PER_NS} deployments per namespace, {a.replicas} replicas, "
        f"pods ready after {a.pod_ready_seconds} s; sizes {sizes}")
    results = []
    floor = None
    with tempfile.TemporaryDirectory(prefix="meshops-bench-") as tmp:
        b = Bench(a, Path(tmp))
        if not a.contenders or "module" in a.contenders:
            floor = b.ansible_floor()
            log(f"ansible-playbook floor (a one-task playbook, ansible.builtin.ping, quickest of 3): {floor:.2f} s")
        for n in sizes:
            sa = argparse.Namespace(**vars(a))
            if sa.kubectl_sample is None:
                sa.kubectl_sample = 0 if n <= 100 else 20
            if sa.k8s_sample is None:
                sa.k8s_sample = 0 if n <= 10 else 20
            b.a = sa
            res = run_size(b, n)
            res["ratios"] = ratios(res)
            results.append(res)
            log(f"[{n:>5} workloads] ratios: " + ", ".join(f"{k}={v:.2f}" for k, v in res["ratios"].items()))
        for n in rss_sizes:
            b.a = argparse.Namespace(**vars(a))
            b.a.repeat = 1
            res = run_size(b, n, memory_only=True)
            res["ratios"] = ratios(res)
            results.append(res)
    log("")
    print_table(results)
    mods = sorted((r["workloads"], r["contenders"][m]["rss_mb"]) for r in results for m in ("module_tuned",)
                  if r["contenders"].get(m, {}).get("rss_mb"))
    if len(mods) >= 2 and mods[-2][0] < 1000:
        log("module peak RSS: " + ", ".join(f"{n}: {m:.0f} MiB" for n, m in mods)
            + " (no extrapolation to 10,000 from sizes below 1,000: a 500-pod list page dominates there)")
    elif len(mods) >= 2:
        # the two largest sizes: below ~500 pods the pod list is one short page, so the transient peak of
        # decoding a full 500-item page only shows from there on
        (n1, m1), (n2, m2) = mods[-2], mods[-1]
        slope = (m2 - m1) / (n2 - n1) if n2 != n1 else 0.0
        est = m2 + slope * (10000 - n2)
        log("module peak RSS: " + ", ".join(f"{n}: {m:.0f} MiB" for n, m in mods)
            + f"; linear from {n1}->{n2}: {slope * 1024:.1f} KiB per workload, ~{est:.0f} MiB at 10,000 (extrapolated)")
    log(f"load average at the end {loadavg()}; benchmark took {time.monotonic() - started:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "results": results, "ansible_floor_s": floor,
                                            "machine": {
            "node": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version()}}, indent=2,
            default=str))
    full = [r for r in results if not r.get("memory_only")]
    last = next((r for r in full if r["workloads"] == 100), full[-1])  # the target is at 100
    r = last["ratios"].get("kubectl_loop_vs_tuned")
    sample_note = last["contenders"].get("kubectl_loop")
    if r is None or sample_note is None:
        log("# ratio_vs_kubectl_loop not computed: this run left out the module (all at once) or the kubectl loop")
        return 0
    log(f"# ratio_vs_kubectl_loop: kubectl loop time / rollout_restart (ansible-playbook, all at once) time at "
        f"{last['workloads']} workloads" + (f"; kubectl loop extrapolated from {sample_note['measured']} measured"
                                            if sample_note.get("extrapolated") else ""))
    log(f"ratio_vs_kubectl_loop={r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
