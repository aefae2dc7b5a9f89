"""What live progress costs a wave (issue 17's budget: 5%), measured on one cluster with many rounds.

bench/run's module_tuned / module_progress pair starts a fresh cluster for every run, so a few runs take
minutes; here one kubesim `large` cluster serves every run: the wave is restarted again and again with
``only_stale: false`` (each run restarts every workload and waits for them), progress off and on taking
turns in ABBA order (each round reversed), so that the load of a shared machine hits both alike.  With
``--before DIR`` a third contender runs the progress of another checkout of the collection (for example
``git archive <commit>`` unpacked in DIR) on the same cluster.  Prints each run and the medians: wall time,
the CPU of the whole ansible-playbook run (workers and module), of the module, of the simulator, and the
paired (same round) wall-time ratio of progress on against off.  Nothing is asserted.

    bench/run is not needed; run with the bench venv:
    .build/bench-venv/bin/python bench/progress_overhead.py --workloads 100 --rounds 10
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - meshops.istio.rollout_restart:
        kubeconfig: "{{ k }}"
        namespaces: "{{ ns }}"
        kinds: [Deployment]
        concurrency: 0
        only_stale: false
        wait_timeout: 1800
        progress: "{{ p | default(omit) }}"
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--pod-ready-seconds", type=float, default=2.0)
    ap.add_argument("--before", default=None, help="another checkout whose progress runs as contender 'before'")
    ap.add_argument("--json", default=None, help="write every run's figures to this file")
    a = ap.parse_args(argv)
    roots = {"off": B.ROOT, "on": B.ROOT}
    if a.before:
        root = Path(a.before).resolve()
        (root / ".build" / "ansible_collections" / "meshops").mkdir(parents=True, exist_ok=True)
        link = root / ".build" / "ansible_collections" / "meshops" / "istio"
        if not link.exists():
            link.symlink_to(root)
        roots["before"] = root
    modes = list(roots)
    rows = []
    with tempfile.TemporaryDirectory(prefix="meshops-progress-bench-") as tmp:
        work = Path(tmp)
        (work / "sim").mkdir()
        b = B.Bench(argparse.Namespace(wait_timeout=1800), work)
        cl = B.Cluster(a.workloads, 2, a.pod_ready_seconds, work / "sim").start()
        B.log(f"progress overhead: {a.workloads} workloads ({cl.namespaces} namespaces), {a.rounds} rounds of "
              f"{', '.join(modes)}; cluster ready in {cl.setup_s:.1f} s; load average {B.loadavg()}")
        play = work / "wave.yml"
        play.write_text(PLAY)
        try:
            for r in range(a.rounds):
                for m in (modes if r % 2 == 0 else modes[::-1]):
                    extra = {"k": cl.kubeconfig, "ns": cl.ns_names}
                    if m != "off":
                        extra["p"] = {"label": "wave1", "interval": 10}
                    vars_file = work / "vars.json"
                    vars_file.write_text(json.dumps(extra))
                    rusage = work / f"rusage-{r}-{m}.jsonl"
                    env = b.ansible_env(rusage)
                    env["ANSIBLE_COLLECTIONS_PATH"] = str(roots[m] / ".build")
                    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
                    stats, sim_cpu = cl.stats_total(), cl.cpu_s()
                    rc, wall, _, out = B.run_measured(
                        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(play),
                         "-e", f"@{vars_file}"], env=env, cwd=str(work))
                    text = out.decode(errors="replace")
                    if rc != 0:
                        raise RuntimeError(f"run {r} {m} failed:\n{text[-3000:]}")
                    mod = [json.loads(x) for x in rusage.read_text().splitlines()]
                    mod = [x for x in mod if any("rollout_restart" in y for y in x["argv"])] or mod
                    row = {"round": r, "mode": m, "wall_s": wall, "run_cpu_s": B.run_measured.cpu,
                           "module_s": mod[0]["wall"], "module_cpu_s": mod[0]["cpu"],
                           "sim_cpu_s": cl.cpu_s() - sim_cpu,
                           "requests": B.stats_delta(stats, cl.stats_total())["total"],
                           "lines": sum(1 for x in text.splitlines() if x.startswith("wave1: ")), "load": B.loadavg()}
                    rows.append(row)
                    B.log("round {round:>2} {mode:<6} wall {wall_s:6.2f} s  run CPU {run_cpu_s:5.2f} s  module "
                          "{module_s:6.2f} s, CPU {module_cpu_s:5.2f} s  simulator CPU {sim_cpu_s:5.2f} s  "
                          "requests {requests:>5}  progress lines {lines:>2}  load {load}".format(**row))
        finally:
            cl.stop()
    B.log("")
    for m in modes:
        rs = [x for x in rows if x["mode"] == m]

        def med(key):
            return statistics.median(x[key] for x in rs)
        B.log(f"{m:<6} runs {len(rs)}: median wall {med('wall_s'):.2f} s ({min(x['wall_s'] for x in rs):.2f}-"
              f"{max(x['wall_s'] for x in rs):.2f}), run CPU {med('run_cpu_s'):.2f} s, module {med('module_s'):.2f} s "
              f"(CPU {med('module_cpu_s'):.2f} s), simulator CPU {med('sim_cpu_s'):.2f} s, requests "
              f"{med('requests'):.0f}")
    for m in modes[1:]:
        pairs = [(next(x for x in rows if x["round"] == r and x["mode"] == m),
                  next(x for x in rows if x["round"] == r and x["mode"] == "off")) for r in range(a.rounds)]
        wall = [100.0 * (p["wall_s"] / o["wall_s"] - 1) for p, o in pairs]
        cpu = [p["run_cpu_s"] - o["run_cpu_s"] for p, o in pairs]
        B.log(f"{m} against off, paired by round: wall median {statistics.median(wall):+.1f}% "
              f"(rounds: {' '.join(f'{x:+.0f}' for x in wall)}), run CPU median {statistics.median(cpu):+.2f} s")
        # Two rounds in opposite orders cancel a drift of the cluster through the runs (every run leaves a
        # ReplicaSet per workload behind, so later runs meet a slower simulator): the first of round 0 is
        # always the freshest cluster.
        blocks = [100.0 * (sum(p["wall_s"] for p, _o in pairs[r:r + 2]) / sum(o["wall_s"] for _p, o in pairs[r:r + 2])
                           - 1) for r in range(0, len(pairs) - 1, 2)]
        if blocks:
            B.log(f"{m} against off, ABBA blocks of two rounds: wall median {statistics.median(blocks):+.1f}% "
                  f"(blocks: {' '.join(f'{x:+.1f}' for x in blocks)})")
    B.log(f"load average at the end {B.loadavg()}")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "runs": rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
