"""Running playbooks/upgrade.yml against simulated clusters (shared by test_upgrade_playbook.py and tests/demo.py).

* ``write_inventory()``  an inventory like inventories/sandbox for one or more kubesim clusters
* ``run_phase()``        one ``ansible-playbook --tags ...`` run; every task result is captured as JSON lines by
                         the test-only callback tests/integration/files/callback_plugins/event_log.py
* ``data_plane()`` / ``control_plane()``  what the cluster really holds (read over its API)
* ``version_table()``    the before/after table the demo prints
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
VENV_BIN = ROOT / ".venv" / "bin"
BUILD = ROOT / ".build"
PLAYBOOK = ROOT / "playbooks" / "upgrade.yml"
SANDBOX = ROOT / "inventories" / "sandbox"
ISTIOCTL = TESTS / "kubesim" / "bin" / "istioctl"
CALLBACKS = Path(__file__).resolve().parent / "files" / "callback_plugins"
ISTIO_NS = "istio-system"
PROXY_PREFIX = "docker.io/istio/proxyv2:"


def python_bin() -> str:
    candidate = VENV_BIN / "python"
    return str(candidate) if candidate.exists() else "python3"


def ensure_collection_link():
    """What `make collection` does: .build/ansible_collections/meshops/istio -> the checkout."""
    link = BUILD / "ansible_collections" / "meshops" / "istio"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            link.symlink_to(ROOT)
        except FileExistsError:
            pass


def sandbox_vars() -> dict:
    with open(SANDBOX / "group_vars" / "istio_clusters.yml", encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def write_inventory(directory, clusters: dict, **group_vars) -> str:
    """An inventory in ``directory`` with one host per cluster (``{host: kubeconfig path}``), the sandbox
    inventory's group variables (istioctl by absolute path), overridden by ``group_vars``."""
    directory = Path(directory)
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    hosts = {}
    for host, kubeconfig in clusters.items():
        hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": python_bin(),
                       "kubeconfig": str(kubeconfig), "context": "kubesim"}
    with open(directory / "hosts.yml", "w", encoding="utf-8") as handle:
        yaml.safe_dump({"istio_clusters": {"hosts": hosts}}, handle, sort_keys=False)
    variables = sandbox_vars()
    variables["istio_canary_istioctl"] = str(ISTIOCTL)
    variables["istio_canary_report_dir"] = str(directory / "reports")  # a plain run ends with the report
    variables.update(group_vars)
    with open(directory / "group_vars" / "istio_clusters.yml", "w", encoding="utf-8") as handle:
        yaml.safe_dump(variables, handle, sort_keys=False)
    return str(directory)


def ansible_env(extra=None, istioctl_version="1.15.4") -> dict:
    ensure_collection_link()
    env = dict(os.environ)
    for key in list(env):
        if key.startswith("K8S_AUTH_") or key in ("KUBECONFIG", "ANSIBLE_CONFIG"):
            env.pop(key)
    env.update({
        "PATH": os.pathsep.join([str(VENV_BIN), str(ISTIOCTL.parent), env.get("PATH", "")]),
        "PYTHONPATH": str(TESTS),
        "ANSIBLE_COLLECTIONS_PATH": str(BUILD),
        "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACKS),
        "ANSIBLE_CALLBACKS_ENABLED": "event_log",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "KUBESIM_ISTIOCTL_VERSION": istioctl_version,
    })
    env.pop("ANSIBLE_COLLECTIONS_PATHS", None)
    if extra:
        env.update(extra)
    return env


class PhaseRun:
    """One ansible-playbook run: rc, output, and every task result (``events``)."""

    def __init__(self, cmd, rc, stdout, stderr, events):
        self.cmd, self.rc, self.stdout, self.stderr = cmd, rc, stdout, stderr
        self.events = events

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def stats(self) -> dict:
        for event in reversed(self.events):
            if event.get("event") == "stats":
                return event["hosts"]
        return {}

    def changed(self, host=None) -> int:
        stats = self.stats
        hosts = [host] if host else list(stats)
        return sum(stats.get(h, {}).get("changed", 0) for h in hosts)

    def tasks(self, host=None, status=None):
        return [e for e in self.events if e.get("event") == "task" and (host is None or e.get("host") == host)
                and (status is None or e.get("status") in (status if isinstance(status, (list, tuple)) else [status]))]

    def changed_tasks(self, host=None):
        return [e for e in self.tasks(host, "ok") if e.get("changed")]

    def failures(self, host=None):
        """The messages of failed tasks (ignores failures that a rescue handled: those are item/loop
        results followed by a rescue; the final fail task's message is what counts)."""
        return [str(e.get("msg", "")) for e in self.tasks(host, "failed")]

    def summaries(self, host=None):
        """The phases' summary debug messages, in order."""
        return [e["msg"] for e in self.tasks(host, "ok")
                if e.get("action") in ("ansible.builtin.debug", "debug") and str(e.get("task", "")).endswith("| summary")
                and isinstance(e.get("msg"), dict)]

    def hosts_run(self):
        return sorted(set(e.get("host") for e in self.tasks()))

    def __repr__(self):
        return "PhaseRun(rc=%s, cmd=%s)\n--- stdout (tail) ---\n%s\n--- stderr (tail) ---\n%s" % (
            self.rc, " ".join(self.cmd), self.stdout[-5000:], self.stderr[-2000:])


def run_phase(inventory, tags, extra_vars=None, env=None, timeout=900, workdir=None, check=False,
              diff=False) -> PhaseRun:
    """``ansible-playbook -i inventory playbooks/upgrade.yml --tags tags [-e @vars] [--check] [--diff]``."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="canary-run-"))
    workdir.mkdir(parents=True, exist_ok=True)
    events_file = tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=str(workdir), delete=False)
    events_file.close()
    cmd = [str(VENV_BIN / "ansible-playbook") if (VENV_BIN / "ansible-playbook").exists() else "ansible-playbook",
           "-i", str(inventory), str(PLAYBOOK)]
    if tags:
        cmd += ["--tags", tags if isinstance(tags, str) else ",".join(tags)]
    if extra_vars:
        vars_file = tempfile.NamedTemporaryFile("w", suffix=".json", dir=str(workdir), delete=False)
        json.dump(extra_vars, vars_file)
        vars_file.close()
        cmd += ["-e", "@" + vars_file.name]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    run_env = ansible_env(env)
    run_env["MESHOPS_EVENT_LOG"] = events_file.name
    run_env["ANSIBLE_LOCAL_TEMP"] = str(workdir / "ansible-tmp")
    proc = subprocess.run(cmd, cwd=str(ROOT), env=run_env, capture_output=True, text=True, timeout=timeout, check=False)
    events = []
    with open(events_file.name, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                events.append(json.loads(line))
    return PhaseRun(cmd, proc.returncode, proc.stdout, proc.stderr, events)


# --- what the cluster holds ---------------------------------------------------------------------------

def _items(sim, path):
    return sim.get_json(path).get("items") or []


def _proxy(pod):
    spec = pod.get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):  # native sidecars
        if container.get("name") == "istio-proxy":
            image = container.get("image") or ""
            return image[len(PROXY_PREFIX):] if image.startswith(PROXY_PREFIX) else image.rsplit(":", 1)[-1]
    return None


def _pod_revision(pod):
    status = ((pod.get("metadata") or {}).get("annotations") or {}).get("sidecar.istio.io/status")
    if not status:
        return None
    try:
        return json.loads(status).get("revision")
    except ValueError:
        return None


def _ready(pod):
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def data_plane(sim, namespaces=None) -> dict:
    """{"namespace/deployment": {"versions": [...], "revisions": [...], "pods": n, "ready": n}} for every
    Deployment outside the Istio namespace (live pods matched by the Deployment's selector)."""
    out = {}
    pods = [p for p in _items(sim, "/api/v1/pods")
            if not p["metadata"].get("deletionTimestamp") and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    for dep in _items(sim, "/apis/apps/v1/deployments"):
        ns = dep["metadata"]["namespace"]
        if ns == ISTIO_NS or (namespaces and ns not in namespaces):
            continue
        selector = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        mine = [p for p in pods if p["metadata"]["namespace"] == ns
                and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())]
        out["%s/%s" % (ns, dep["metadata"]["name"])] = {
            "versions": sorted(set(_proxy(p) or "no sidecar" for p in mine)),
            "revisions": sorted(set(_pod_revision(p) or "none" for p in mine)),
            "pods": len(mine),
            "ready": sum(1 for p in mine if _ready(p)),
        }
    return out


def control_plane(sim) -> dict:
    """istiod Deployments (name -> version, ready), webhooks (name -> istio.io/rev label, services)."""
    istiod = {}
    for dep in _items(sim, "/apis/apps/v1/namespaces/%s/deployments" % ISTIO_NS):
        if (dep["metadata"].get("labels") or {}).get("app") != "istiod":
            continue
        image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        istiod[dep["metadata"]["name"]] = {"version": image.rsplit(":", 1)[-1],
                                           "ready": ((dep.get("status") or {}).get("readyReplicas") or 0) >= 1}

    def hooks(path):
        out = {}
        for obj in _items(sim, path):
            services = sorted(set(((w.get("clientConfig") or {}).get("service") or {}).get("name")
                                  for w in obj.get("webhooks") or [] if (w.get("clientConfig") or {}).get("service")))
            out[obj["metadata"]["name"]] = {"rev": (obj["metadata"].get("labels") or {}).get("istio.io/rev"),
                                            "services": services}
        return out

    namespaces = {}
    for ns in _items(sim, "/api/v1/namespaces"):
        labels = ns["metadata"].get("labels") or {}
        picked = dict((k, v) for k, v in labels.items() if k in ("istio.io/rev", "istio-injection"))
        if picked:
            namespaces[ns["metadata"]["name"]] = picked
    return {
        "istiod": istiod,
        "mutating": hooks("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"),
        "validating": hooks("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"),
        "namespaces": namespaces,
    }


def upgrade_record(sim, name="meshops-istio-upgrade"):
    try:
        return (sim.get_json("/api/v1/namespaces/%s/configmaps/%s" % (ISTIO_NS, name)) or {}).get("data")
    except Exception:  # noqa: BLE001 - absent record
        return None


def version_table(before: dict, after: dict | None = None) -> str:
    """A small table: workload, ready pods, proxy versions (before and after when ``after`` is given)."""
    if after is None:
        rows = [("WORKLOAD", "READY", "PROXY", "REVISION")]
        for key in sorted(before):
            b = before[key]
            rows.append((key, "%s/%s" % (b.get("ready"), b.get("pods")), ",".join(b.get("versions") or ["-"]),
                         ",".join(b.get("revisions") or ["-"])))
    else:
        rows = [("WORKLOAD", "READY", "PROXY BEFORE", "PROXY AFTER", "REVISION AFTER")]
        for key in sorted(set(before) | set(after)):
            b, a = before.get(key) or {}, after.get(key) or {}
            rows.append((key, "%s/%s" % (a.get("ready", "-"), a.get("pods", "-")), ",".join(b.get("versions") or ["-"]),
                         ",".join(a.get("versions") or ["-"]), ",".join(a.get("revisions") or ["-"])))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def run_module(module, args: dict, kubeconfig, check=False, diff=False, workdir=None, timeout=300):
    """``ansible localhost -m meshops.istio.<module> -a <json>``; returns (result dict, PhaseRun)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="canary-module-"))
    workdir.mkdir(parents=True, exist_ok=True)
    events_file = tempfile.NamedTemporaryFile("w", suffix=".jsonl", dir=str(workdir), delete=False)
    events_file.close()
    args = dict(args, kubeconfig=str(kubeconfig))
    cmd = [str(VENV_BIN / "ansible") if (VENV_BIN / "ansible").exists() else "ansible", "localhost", "-c", "local",
           "-i", "localhost,", "-e", "ansible_python_interpreter=%s" % python_bin(),
           "-m", "meshops.istio.%s" % module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    if diff:
        cmd.append("--diff")
    env = ansible_env({"MESHOPS_EVENT_LOG": events_file.name, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
                       "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp")})
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    with open(events_file.name, encoding="utf-8") as handle:
        events = [json.loads(line) for line in handle if line.strip()]
    run = PhaseRun(cmd, proc.returncode, proc.stdout, proc.stderr, events)
    tasks = run.tasks()
    return (tasks[-1] if tasks else None), run
