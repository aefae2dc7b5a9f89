"""Shared machinery of the reliability tests (tests/integration/test_reliability_*.py).

Kept apart from conftest.py/helpers.py on purpose: these tests drive tests/kubesim only through its
command-line contract (``python -m kubesim serve ... --kubeconfig PATH`` printing ``kubesim ready <url>``)
and the collection only through ``ansible`` / ``ansible-playbook``, the way an operator or AWX would, so
what they prove does not depend on in-process shortcuts.

* ``Sim``            one simulated cluster (a ``kubesim serve`` subprocess) with a small REST client that
                     reads what the cluster really holds (with retries, since some tests make the API flaky)
* ``snapshot()``     every object's resourceVersion, for "nothing changed" assertions
* ``PodRecorder``    watches every pod from the start of a test, to prove no pod ever ran without sidecar
* ``run_playbook()`` / ``run_module()``  run the collection through Ansible, returning rc, output and the
                     parsed results
* ``AuditLog``       reads kubesim's ``--audit-log`` (one JSON object per request)
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = os.path.join(REPO, "tests")
VENV_BIN = os.path.join(REPO, ".venv", "bin")
PYTHON = os.path.join(VENV_BIN, "python") if os.path.exists(os.path.join(VENV_BIN, "python")) else sys.executable
BUILD = os.path.join(REPO, ".build")
ISTIOCTL = os.path.join(TESTS, "kubesim", "bin", "istioctl")
PLAYBOOK = os.path.join(REPO, "playbooks", "upgrade.yml")
SANDBOX_INVENTORY = os.path.join(REPO, "inventories", "sandbox")

OLD_REV, OLD_VERSION = "1-14-6", "1.14.6"
NEW_REV, NEW_VERSION = "1-15-4", "1.15.4"
PROXY_IMAGE = "docker.io/istio/proxyv2:%s"
ISTIO_NS = "istio-system"

TRANSIENT = (429, 500, 502, 503, 504)


def ensure_collection_link():
    """What `make collection` does: .build/ansible_collections/meshops/istio -> the checkout."""
    link = os.path.join(BUILD, "ansible_collections", "meshops", "istio")
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(REPO, link)
        except FileExistsError:
            pass


class ApiStatus(Exception):
    def __init__(self, status, body):
        super().__init__("HTTP %s: %s" % (status, body[:300]))
        self.status = status
        self.body = body


# --- the simulated cluster ---------------------------------------------------------------------------

class Sim:
    """One ``kubesim serve`` subprocess and a tiny REST client reading it."""

    def __init__(self, tmpdir, scenario="blog", pod_ready_seconds=0.2, args=(), audit=False,
                 authorize_rules=None, name="sim"):
        self.tmpdir = str(tmpdir)
        os.makedirs(self.tmpdir, exist_ok=True)
        self.kubeconfig = os.path.join(self.tmpdir, "%s-kubeconfig.yaml" % name)
        self.audit_path = os.path.join(self.tmpdir, "%s-audit.jsonl" % name) if audit else None
        self.log_path = os.path.join(self.tmpdir, "%s-server.log" % name)
        cmd = [PYTHON, "-m", "kubesim", "serve", "--scenario", scenario, "--port", "0",
               "--kubeconfig", self.kubeconfig, "--pod-ready-seconds", str(pod_ready_seconds)]
        if self.audit_path:
            cmd += ["--audit-log", self.audit_path]
        if authorize_rules:
            cmd += ["--authorize-rules", str(authorize_rules)]
        cmd += [str(a) for a in args]
        self.cmd = cmd
        env = dict(os.environ, PYTHONPATH=TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self._log)
        self.url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(rb"kubesim ready (\S+)", line.strip())
            if m:
                self.url = m.group(1).decode()
                break
        if not self.url:
            self.stop()
            with open(self.log_path, "rb") as fh:
                raise RuntimeError("kubesim did not start (%s): %s" % (" ".join(cmd), fh.read()[-3000:].decode(errors="replace")))
        # keep draining stdout so the server never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()
        self._load_kubeconfig()

    def _drain(self):
        try:
            for _line in self.proc.stdout:
                pass
        except Exception:
            pass

    def _load_kubeconfig(self):
        with open(self.kubeconfig) as fh:
            cfg = yaml.safe_load(fh)
        self.kubeconfig_data = cfg
        ctx_name = cfg.get("current-context") or cfg["contexts"][0]["name"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"]
        # a static token, or (kubesim --token-ttl) the exec credential plugin run whenever the last one expired
        self._static_token, self._exec, self._cluster = user.get("token"), user.get("exec"), cluster
        self._exec_token, self._exec_expiry = None, None
        self.user_entry = user
        parsed = urllib.parse.urlsplit(self.server)
        self.hostport = (parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
        self.https = parsed.scheme == "https"
        if self.https:
            ctx_ssl = ssl.create_default_context()
            if cluster.get("certificate-authority-data"):
                ctx_ssl.load_verify_locations(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
            elif cluster.get("certificate-authority"):
                ctx_ssl.load_verify_locations(cafile=cluster["certificate-authority"])
            if cluster.get("insecure-skip-tls-verify"):
                ctx_ssl.check_hostname = False
                ctx_ssl.verify_mode = ssl.CERT_NONE
            self.ssl_context = ctx_ssl
        self.ca_data = cluster.get("certificate-authority-data")

    def _conn(self, timeout=30):
        if self.https:
            return http.client.HTTPSConnection(*self.hostport, context=self.ssl_context, timeout=timeout)
        return http.client.HTTPConnection(*self.hostport, timeout=timeout)

    @property
    def token(self):
        if not self._exec:
            return self._static_token
        if self._exec_token is None or (self._exec_expiry is not None and time.time() >= self._exec_expiry - 1):
            if TESTS not in sys.path:
                sys.path.insert(0, TESTS)
            from kubesim.credentials import run_exec_plugin
            self._exec_token, self._exec_expiry = run_exec_plugin(self._exec, self._cluster, self.tmpdir)
        return self._exec_token

    def _headers(self, content_type=None):
        h = {"Accept": "application/json", "User-Agent": "reliability-tests"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if content_type:
            h["Content-Type"] = content_type
        return h

    def request(self, method, path, body=None, content_type="application/json", retries=40):
        """One request with retries on transient answers (tests may run the server with faults)."""
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        last = None
        for attempt in range(retries):
            try:
                conn = self._conn()
                conn.request(method, path, body=data, headers=self._headers(content_type if data is not None else None))
                resp = conn.getresponse()
                raw = resp.read()
                conn.close()
            except (OSError, http.client.HTTPException) as exc:
                last = exc
                time.sleep(0.05 * (attempt + 1))
                continue
            if resp.status == 401 and self._exec:
                self._exec_token = None  # expired between the check and the request: renew
                last = ApiStatus(resp.status, raw.decode(errors="replace"))
                continue
            if resp.status in TRANSIENT:
                last = ApiStatus(resp.status, raw.decode(errors="replace"))
                time.sleep(min(0.05 * (attempt + 1), 0.5))
                continue
            if resp.status >= 400:
                raise ApiStatus(resp.status, raw.decode(errors="replace"))
            return json.loads(raw) if raw else {}
        raise RuntimeError("%s %s kept failing: %s" % (method, path, last))

    def get(self, path):
        return self.request("GET", path)

    def get_or_none(self, path):
        try:
            return self.get(path)
        except ApiStatus as exc:
            if exc.status == 404:
                return None
            raise

    # convenience readers -------------------------------------------------------------------------
    def items(self, path):
        return self.get(path).get("items", [])

    def namespaces(self):
        return self.items("/api/v1/namespaces")

    def deployments(self, namespace=None):
        if namespace:
            return self.items("/apis/apps/v1/namespaces/%s/deployments" % namespace)
        return self.items("/apis/apps/v1/deployments")

    def pods(self, namespace=None):
        if namespace:
            return self.items("/api/v1/namespaces/%s/pods" % namespace)
        return self.items("/api/v1/pods")

    def mwcs(self):
        return self.items("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")

    def vwcs(self):
        return self.items("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations")

    def mesh_namespaces(self):
        """Namespaces selected for injection (istio.io/rev or istio-injection=enabled)."""
        out = []
        for ns in self.namespaces():
            labels = ns["metadata"].get("labels") or {}
            if labels.get("istio.io/rev") or labels.get("istio-injection") == "enabled":
                out.append(ns["metadata"]["name"])
        return sorted(out)

    def delete(self, path):
        return self.request("DELETE", path, body={"propagationPolicy": "Background"})

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            self._log.close()
        except Exception:
            pass

    def server_log(self):
        with open(self.log_path, "rb") as fh:
            return fh.read().decode(errors="replace")


# --- reading the cluster's state ---------------------------------------------------------------------

SKIP_RESOURCES = {"events", "events.events.k8s.io", "selfsubjectaccessreviews.authorization.k8s.io",
                  "selfsubjectrulesreviews.authorization.k8s.io", "tokenreviews.authentication.k8s.io",
                  "subjectaccessreviews.authorization.k8s.io", "localsubjectaccessreviews.authorization.k8s.io",
                  "bindings", "componentstatuses", "leases.coordination.k8s.io"}


def listable_resources(sim):
    """(path, key) for every top-level resource the server can list (from discovery)."""
    out = []
    groups = [("/api/v1", "")]
    for g in sim.get("/apis").get("groups", []):
        pv = g.get("preferredVersion") or g["versions"][0]
        groups.append(("/apis/" + pv["groupVersion"], g["name"]))
    for base, group in groups:
        try:
            rl = sim.get(base)
        except ApiStatus:
            continue
        for r in rl.get("resources", []):
            if "/" in r["name"] or "list" not in (r.get("verbs") or []):
                continue
            key = r["name"] + ("." + group if group else "")
            if key in SKIP_RESOURCES:
                continue
            out.append((base + "/" + r["name"], key))
    return out


def snapshot(sim):
    """{(resource, namespace, name): (uid, resourceVersion)} of every object on the cluster."""
    snap = {}
    for path, key in listable_resources(sim):
        for obj in sim.items(path):
            md = obj.get("metadata", {})
            snap[(key, md.get("namespace") or "", md.get("name"))] = (md.get("uid"), md.get("resourceVersion"))
    return snap


def settled_snapshot(sim, timeout=30, interval=0.5):
    """A snapshot taken once two in a row agree (controllers done with start-up work)."""
    deadline = time.monotonic() + timeout
    prev = snapshot(sim)
    while time.monotonic() < deadline:
        time.sleep(interval)
        cur = snapshot(sim)
        if cur == prev:
            return cur
        prev = cur
    raise AssertionError("the simulated cluster did not settle within %ss" % timeout)


def diff_snapshots(before, after):
    """Human-readable list of differences (created / deleted / modified objects)."""
    lines = []
    for k in sorted(set(before) | set(after)):
        if k not in after:
            lines.append("deleted  %s %s/%s" % k)
        elif k not in before:
            lines.append("created  %s %s/%s" % k)
        elif before[k] != after[k]:
            lines.append("modified %s %s/%s (rv %s -> %s)" % (k + (before[k][1], after[k][1])))
    return lines


def proxy_image(pod):
    for c in pod["spec"].get("containers", []):
        if c["name"] == "istio-proxy":
            return c.get("image")
    return None


def pod_revision(pod):
    status = (pod["metadata"].get("annotations") or {}).get("sidecar.istio.io/status")
    if not status:
        return None
    try:
        return json.loads(status).get("revision")
    except ValueError:
        return None


def live_pods(sim, namespace=None):
    return [p for p in sim.pods(namespace) if not p["metadata"].get("deletionTimestamp")
            and p.get("status", {}).get("phase") not in ("Succeeded", "Failed")]


def pod_ready(pod):
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def data_plane(sim, namespaces=None):
    """{namespace/deployment: sorted proxy images of its live pods} for the mesh namespaces."""
    namespaces = namespaces or sim.mesh_namespaces()
    out = {}
    for ns in namespaces:
        for dep in sim.deployments(ns):
            sel = dep["spec"]["selector"].get("matchLabels") or {}
            pods = [p for p in live_pods(sim, ns)
                    if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in sel.items())]
            out["%s/%s" % (ns, dep["metadata"]["name"])] = sorted(proxy_image(p) or "NO-SIDECAR" for p in pods)
    return out


def wait_for(predicate, timeout=60, interval=0.3, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def rollouts_complete(sim, namespaces=None):
    namespaces = namespaces or sim.mesh_namespaces()
    for ns in namespaces:
        for dep in sim.deployments(ns):
            st = dep.get("status", {})
            want = dep["spec"].get("replicas", 1)
            if (st.get("observedGeneration", 0) < dep["metadata"].get("generation", 0)
                    or st.get("updatedReplicas", 0) != want or st.get("replicas", 0) != want
                    or st.get("availableReplicas", 0) != want):
                return False
    return True


def mesh_state(sim):
    """The parts of the cluster an upgrade is about, normalised so two clusters can be compared."""
    state = {}
    state["istiod"] = sorted(
        (d["metadata"]["name"], d["spec"]["template"]["spec"]["containers"][0]["image"].rsplit(":", 1)[-1],
         d.get("status", {}).get("readyReplicas", 0) >= 1)
        for d in sim.deployments(ISTIO_NS) if (d["metadata"].get("labels") or {}).get("app") == "istiod")
    state["mwc"] = sorted(
        (m["metadata"]["name"], (m["metadata"].get("labels") or {}).get("istio.io/rev"),
         tuple(sorted({(w.get("clientConfig", {}).get("service") or {}).get("name") for w in m.get("webhooks") or []
                       if w.get("clientConfig", {}).get("service")})))
        for m in sim.mwcs())
    state["vwc"] = sorted(
        (v["metadata"]["name"], (v["metadata"].get("labels") or {}).get("istio.io/rev"),
         tuple(sorted({(w.get("clientConfig", {}).get("service") or {}).get("name") for w in v.get("webhooks") or []
                       if w.get("clientConfig", {}).get("service")})))
        for v in sim.vwcs())
    state["namespaces"] = sorted(
        (n["metadata"]["name"], tuple(sorted((k, v) for k, v in (n["metadata"].get("labels") or {}).items()
                                             if k in ("istio.io/rev", "istio-injection"))))
        for n in sim.namespaces())
    state["data_plane"] = data_plane(sim)
    revs = {}
    for p in live_pods(sim):
        if p["metadata"]["namespace"] != ISTIO_NS:
            key = "%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"].rsplit("-", 2)[0])
            revs.setdefault(key, set()).add(pod_revision(p))
    state["workload_revisions"] = {k: sorted(v, key=str) for k, v in revs.items()}
    # the upgrade's record on the cluster (timestamps blanked): phases and waves done, from/to
    cm = sim.get_or_none("/api/v1/namespaces/%s/configmaps/meshops-istio-upgrade" % ISTIO_NS)
    state["record"] = {k: ("<time>" if re.match(r"^\d{4}-\d\d-\d\dT", v or "") else ",".join(sorted((v or "").split(","))))
                       for k, v in ((cm or {}).get("data") or {}).items()}
    state["not_ready_pods"] = sorted("%s/%s" % (p["metadata"]["namespace"], p["metadata"]["name"])
                                     for p in live_pods(sim) if not pod_ready(p))
    return state


# --- a recorder of every pod the cluster ever holds --------------------------------------------------

class PodRecorder:
    """Watches pods cluster-wide (list, then watch from the list's resourceVersion, resuming after a
    dropped connection) and remembers every version of every pod it saw."""

    def __init__(self, sim):
        self.sim = sim
        self.seen = {}  # uid -> {"namespace", "name", "containers": set of names seen, "versions": n}
        self.errors = []
        self._stop = threading.Event()
        self._rv = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("pod recorder could not list pods: %s" % self.errors)

    def _record(self, pod):
        md = pod["metadata"]
        entry = self.seen.setdefault(md["uid"], {"namespace": md.get("namespace"), "name": md["name"],
                                                 "without_sidecar": [], "versions": 0, "images": set()})
        entry["versions"] += 1
        names = [c["name"] for c in pod["spec"].get("containers", [])]
        if "istio-proxy" not in names:
            entry["without_sidecar"].append(pod.get("status", {}).get("phase"))
        img = proxy_image(pod)
        if img:
            entry["images"].add(img)

    def _list(self):
        lst = self.sim.get("/api/v1/pods")
        for p in lst.get("items", []):
            self._record(p)
        self._rv = lst["metadata"]["resourceVersion"]

    def _run(self):
        try:
            self._list()
        except Exception as exc:  # pragma: no cover - reported by the constructor
            self.errors.append(repr(exc))
            return
        self._ready.set()
        while not self._stop.is_set():
            try:
                conn = self.sim._conn(timeout=5)
                conn.request("GET", "/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=30&resourceVersion=%s" % self._rv,
                             headers=self.sim._headers())
                resp = conn.getresponse()
                if resp.status == 410:
                    resp.read()
                    self._list()
                    continue
                if resp.status != 200:
                    resp.read()
                    time.sleep(0.1)
                    continue
                while not self._stop.is_set():
                    try:
                        line = resp.readline()
                    except (TimeoutError, OSError):
                        break
                    if not line:
                        break
                    line = line.strip()
                    if not line:
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        if obj.get("code") == 410:
                            self._list()
                        break
                    if obj.get("metadata", {}).get("resourceVersion"):
                        self._rv = obj["metadata"]["resourceVersion"]
                    if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._record(obj)
                conn.close()
            except Exception as exc:
                self.errors.append(repr(exc))
                time.sleep(0.1)

    def catch_up(self):
        """Make sure everything the cluster holds now has been seen (a final list)."""
        for p in self.sim.pods():
            if p["metadata"]["uid"] not in self.seen:
                self._record(p)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=10)

    def without_sidecar(self, namespaces):
        return sorted("%s/%s" % (e["namespace"], e["name"]) for e in self.seen.values()
                      if e["namespace"] in namespaces and e["without_sidecar"])


# --- the audit log -----------------------------------------------------------------------------------

class AuditLog:
    def __init__(self, path):
        self.path = path

    def entries(self, start=0):
        """Entries from line number ``start`` on (use ``len(entries())`` as a mark)."""
        if not os.path.exists(self.path):
            return []
        with open(self.path) as fh:
            lines = fh.read().splitlines()
        out = []
        for line in lines[start:]:
            line = line.strip()
            if line:
                out.append(json.loads(line))
        return out

    def mark(self):
        return len(self.entries())


def entry_group(e):
    if "group" in e or "apiGroup" in e:
        return e.get("group", e.get("apiGroup")) or ""
    res = e.get("resource") or ""
    if "." in res:
        return res.split(".", 1)[1]
    av = e.get("apiVersion") or ""
    return av.split("/")[0] if "/" in av else ""


def entry_resource(e):
    res = e.get("resource") or ""
    if "." in res and "group" not in e and "apiGroup" not in e:
        res = res.split(".", 1)[0]
    return res


def entry_subresource(e):
    return e.get("subresource") or ""


def restart_patches(entries):
    """{"namespace/name": count} of PATCH requests on Deployments/StatefulSets/DaemonSets (the only
    way the collection changes a workload is the restart annotation)."""
    out = {}
    for e in entries:
        if e.get("verb") == "patch" and entry_resource(e) in ("deployments", "statefulsets", "daemonsets") \
                and not entry_subresource(e) and not e.get("dryRun"):
            if str(e.get("code", e.get("status", 200))).startswith(("4", "5")):
                continue
            key = "%s/%s" % (e.get("namespace"), e.get("name"))
            out[key] = out.get(key, 0) + 1
    return out


# --- RBAC evaluation ---------------------------------------------------------------------------------

def manifest_objects(path):
    """The objects of a Kubernetes manifest file: every YAML document, a `kind: List` expanded into its
    items (as kubectl apply does)."""
    with open(path) as fh:
        docs = [d for d in yaml.safe_load_all(fh) if d]
    return [i for d in docs for i in ((d.get("items") or []) if str(d.get("kind", "")).endswith("List") else [d])]


def load_rbac(path):
    """{name: ClusterRole} of a file (docs/rbac.yaml)."""
    docs = manifest_objects(path)
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ClusterRole"}


def load_cluster_role(path, name="meshops-istio-upgrader"):
    """The ClusterRole ``name`` with its effective rules: an aggregated role gets the rules of the
    ClusterRoles its aggregationRule selects (as Kubernetes' aggregation controller does)."""
    roles = load_rbac(path)
    if name not in roles:
        raise AssertionError("no ClusterRole %s in %s" % (name, path))
    role = copy.deepcopy(roles[name])
    agg = role.get("aggregationRule")
    if agg:
        rules = []
        for sel in agg.get("clusterRoleSelectors") or []:
            want = sel.get("matchLabels") or {}
            for other in roles.values():
                labels = other["metadata"].get("labels") or {}
                if other is not roles[name] and all(labels.get(k) == v for k, v in want.items()):
                    rules.extend(other.get("rules") or [])
        role["rules"] = rules
    return role


def rule_allows(rule, group, resource, subresource, verb, name):
    if "nonResourceURLs" in rule and not rule.get("resources"):
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and group not in groups:
        return False
    full = resource + ("/" + subresource if subresource else "")
    resources = rule.get("resources") or []
    if "*" not in resources and full not in resources:
        return False
    verbs = rule.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    names = rule.get("resourceNames") or []
    if names and name not in names:
        return False
    return True


def nonresource_allows(rule, path, verb):
    urls = rule.get("nonResourceURLs") or []
    verbs = rule.get("verbs") or []
    if "*" not in verbs and verb not in verbs:
        return False
    for u in urls:
        if u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def role_allows(role, entry):
    res = entry_resource(entry)
    verb = entry.get("verb")
    if not res:
        path = entry.get("path") or entry.get("url") or ""
        return any(nonresource_allows(r, path.split("?")[0], verb) for r in role.get("rules", []))
    return any(rule_allows(r, entry_group(entry), res, entry_subresource(entry), verb, entry.get("name"))
               for r in role.get("rules", []))


# --- running the collection through Ansible ----------------------------------------------------------

class Result:
    def __init__(self, args, rc, stdout, stderr):
        self.args, self.rc, self.stdout, self.stderr = args, rc, stdout, stderr

    @property
    def output(self):
        return self.stdout + "\n" + self.stderr

    def __repr__(self):
        return "Result(rc=%s)\n--- stdout (tail) ---\n%s\n--- stderr (tail) ---\n%s" % (
            self.rc, self.stdout[-6000:], self.stderr[-3000:])


def ansible_env(tmpdir, extra=None, istioctl_version=NEW_VERSION):
    ensure_collection_link()
    env = dict(os.environ)
    env.update({
        "PATH": VENV_BIN + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_COLLECTIONS_PATH": BUILD,
        "ANSIBLE_COLLECTIONS_PATHS": "",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": os.path.join(str(tmpdir), "ansible-tmp"),
        "ANSIBLE_PYTHON_INTERPRETER": PYTHON,
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
        "KUBESIM_ISTIOCTL_VERSION": istioctl_version,
        "PYTHONPATH": TESTS,
    })
    # never let an operator's environment point the collection elsewhere
    for k in list(env):
        if k.startswith("K8S_AUTH_") or k == "KUBECONFIG":
            env.pop(k)
    if extra:
        env.update(extra)
    return env


def upgrade_vars(sim, waves=None, **overrides):
    """Extra vars of the canary upgrade against ``sim`` (override the sandbox inventory's cluster)."""
    v = {
        "kubeconfig": sim.kubeconfig,
        "istio_canary_to_revision": NEW_REV,
        "istio_canary_to_version": NEW_VERSION,
        "istio_canary_istioctl": ISTIOCTL,
        "istio_canary_gateways": [{"namespace": "istio-ingress", "name": "istio-ingressgateway"}],
        "istio_canary_waves": waves if waves is not None else [
            {"name": "wave1", "namespaces": ["bar"]},
            {"name": "wave2", "namespaces": ["foo", "baz"]},
        ],
        "ansible_python_interpreter": PYTHON,
    }
    v.update(overrides)
    return v


def playbook_cmd(tmpdir, tags, extra_vars, verbosity=0, inventory=None, extra_args=()):
    vars_file = tempfile.NamedTemporaryFile("w", suffix=".json", dir=str(tmpdir), delete=False)
    json.dump(extra_vars, vars_file)
    vars_file.close()
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory or SANDBOX_INVENTORY, PLAYBOOK,
           "-e", "@" + vars_file.name]
    if tags:
        cmd += ["--tags", tags if isinstance(tags, str) else ",".join(tags)]
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    cmd += list(extra_args)
    return cmd


def run_playbook(tmpdir, tags, extra_vars, verbosity=0, env=None, timeout=600, inventory=None,
                 extra_args=(), istioctl_version=NEW_VERSION):
    cmd = playbook_cmd(tmpdir, tags, extra_vars, verbosity, inventory, extra_args)
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(tmpdir, env, istioctl_version), capture_output=True,
                          text=True, timeout=timeout, check=False)
    return Result(cmd, proc.returncode, proc.stdout, proc.stderr)


def start_playbook(tmpdir, tags, extra_vars, log_name="playbook.log", env=None, istioctl_version=NEW_VERSION):
    """Start ansible-playbook in its own process group (so a signal reaches it like a Ctrl-C or a
    killed job container would); returns (Popen, log path)."""
    cmd = playbook_cmd(tmpdir, tags, extra_vars)
    log = os.path.join(str(tmpdir), log_name)
    fh = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=REPO, env=ansible_env(tmpdir, env, istioctl_version), stdout=fh,
                            stderr=subprocess.STDOUT, start_new_session=True)
    proc._log_fh = fh
    return proc, log


_ADHOC_RE = re.compile(r"^(\S+) \| (SUCCESS|CHANGED|FAILED!|UNREACHABLE!)(?: \| rc=\d+)? => ", re.M)


def parse_adhoc(stdout):
    """The JSON result of ``ansible HOST -m MODULE`` with the default (minimal) output."""
    m = None
    for m in _ADHOC_RE.finditer(stdout):
        pass
    if not m:
        return None
    text = stdout[m.end():]
    dec = json.JSONDecoder()
    try:
        obj = dec.raw_decode(text.lstrip())[0]
    except ValueError:
        return None
    obj.setdefault("_status", m.group(2))
    if m.group(2) in ("FAILED!", "UNREACHABLE!"):
        obj.setdefault("failed", True)
    return obj


def run_module(tmpdir, module, args, verbosity=0, env=None, check=False, istioctl_version=NEW_VERSION,
               timeout=300):
    """Run ``meshops.istio.<module>`` with ``args`` (a dict) through ``ansible localhost -m``.
    Returns (result dict or None, Result)."""
    cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-c", "local", "-i", "localhost,",
           "-e", "ansible_python_interpreter=%s" % PYTHON,
           "-m", "meshops.istio.%s" % module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    proc = subprocess.run(cmd, cwd=REPO, env=ansible_env(tmpdir, env, istioctl_version), capture_output=True,
                          text=True, timeout=timeout, check=False)
    res = Result(cmd, proc.returncode, proc.stdout, proc.stderr)
    return parse_adhoc(proc.stdout), res


def deep_copy(obj):
    return copy.deepcopy(obj)


# --- the whole canary upgrade ------------------------------------------------------------------------

# Separate ansible-playbook runs, as separate AWX jobs would do it (grouped to keep the suite's runtime
# modest; every phase of DESIGN.md's table but rollback is in here, in order).
UPGRADE_STEPS = (
    "precheck,install,tag",
    "gateways,wave1,verify",
    "wave2,verify,cleanup",
)


def full_upgrade(tmpdir, sim, steps=UPGRADE_STEPS, **overrides):
    """Run every phase against ``sim``; returns the list of Results (fails the test on the first
    step that fails)."""
    results = []
    for tags in steps:
        res = run_playbook(tmpdir, tags, upgrade_vars(sim, **overrides))
        results.append(res)
        assert res.rc == 0, "phase(s) %s failed:\n%r\n--- kubesim log ---\n%s" % (
            tags, res, sim.server_log()[-3000:])
    return results


def assert_final_state(sim):
    """The articles' final state: only istiod-1-15-4, tag default on 1-15-4, every proxy on 1.15.4,
    the old injector gone, every pod ready."""
    state = mesh_state(sim)
    assert [i[0] for i in state["istiod"]] == ["istiod-%s" % NEW_REV], state["istiod"]
    assert all(i[2] for i in state["istiod"]), state["istiod"]
    mwcs = {m[0]: m for m in state["mwc"]}
    assert "istio-sidecar-injector-%s" % OLD_REV not in mwcs, sorted(mwcs)
    assert mwcs["istio-revision-tag-default"][1] == NEW_REV, mwcs["istio-revision-tag-default"]
    assert mwcs["istio-revision-tag-default"][2] == ("istiod-%s" % NEW_REV,), mwcs["istio-revision-tag-default"]
    vwcs = {v[0]: v for v in state["vwc"]}
    assert vwcs["istiod-default-validator"][2] == ("istiod-%s" % NEW_REV,), vwcs
    assert state["data_plane"], "no workloads found"
    for workload, images in state["data_plane"].items():
        assert images and all(i == PROXY_IMAGE % NEW_VERSION for i in images), (workload, images)
    for workload, revs in state["workload_revisions"].items():
        assert revs == [NEW_REV], (workload, revs)
    assert not state["not_ready_pods"], state["not_ready_pods"]
    return state


_FATAL_RE = re.compile(r"^(?:fatal|failed): \[[^\]]+\]:? (?:FAILED!|UNREACHABLE!) => (\{.*\})\s*$", re.M)


def failed_results(result):
    """The JSON results of the failed tasks of a playbook run (default callback, no -v)."""
    out = []
    for m in _FATAL_RE.finditer(result.stdout):
        try:
            out.append(json.loads(m.group(1)))
        except ValueError:
            out.append({"msg": m.group(1)})
    return out


def error_text(result):
    """The error an operator reads: the msg of each failed task, else Ansible's own [ERROR] lines."""
    msgs = []
    for r in failed_results(result):
        msg = r.get("msg")
        if isinstance(msg, list):
            msg = "; ".join(str(m) for m in msg)
        if msg:
            msgs.append(str(msg))
        for key in ("argument_spec_errors", "errors"):
            if r.get(key):
                msgs.append("; ".join(str(e) for e in r[key]))
    if not msgs:
        for line in result.output.splitlines():
            if line.startswith(("[ERROR]", "ERROR!")):
                msgs.append(line)
    return "\n".join(msgs)


def install_and_tag(tmpdir, sim, revision=NEW_REV, version=NEW_VERSION):
    """Phases install + tag done with the modules directly (quicker than the playbook; used to put a
    cluster in the 'part-way through the upgrade' state the tests start from)."""
    res, raw = run_module(tmpdir, "istio_revision", {
        "kubeconfig": sim.kubeconfig, "revision": revision, "istioctl_path": ISTIOCTL, "state": "present"},
        istioctl_version=version)
    assert res and raw.rc == 0 and not res.get("failed"), raw
    res, raw = run_module(tmpdir, "istio_revision_tag", {
        "kubeconfig": sim.kubeconfig, "tag": "default", "revision": revision})
    assert res and raw.rc == 0 and not res.get("failed"), raw


_CLEAN = {}
_CLEAN_LOCK = threading.Lock()


def clean_upgrade(tmpdir):
    """The full upgrade on a healthy cluster, once per test process: it serves as the reference end state
    of the fault tests and as the least-privilege run of the RBAC test (kubesim enforces docs/rbac.yaml's
    ClusterRole and logs every request).  Returns {"state", "entries", "role"} or re-raises its failure."""
    with _CLEAN_LOCK:
        if "error" in _CLEAN:
            raise AssertionError("the reference upgrade failed earlier: %s" % _CLEAN["error"])
        if "state" in _CLEAN:
            return _CLEAN
        os.makedirs(str(tmpdir), exist_ok=True)
        # the shipped file as it is (kubesim grants the rules of every ClusterRole in it: the aggregated
        # role's, filled by Kubernetes on a real cluster, are those of its two parts)
        rbac = os.path.join(REPO, "docs", "rbac.yaml")
        role = load_cluster_role(rbac)
        sim = Sim(tmpdir, scenario="blog", audit=True, authorize_rules=rbac, name="reference")
        try:
            _CLEAN["initial"] = mesh_state(sim)
            full_upgrade(tmpdir, sim)
            _CLEAN["state"] = assert_final_state(sim)
            _CLEAN["entries"] = AuditLog(sim.audit_path).entries()
            _CLEAN["role"] = role
        except BaseException as exc:
            _CLEAN["error"] = "%s" % exc
            raise
        finally:
            sim.stop()
        return _CLEAN


# --- processes ---------------------------------------------------------------------------------------

def _proc_table():
    """{pid: (ppid, state)} of every process (Linux /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as fh:
                stat = fh.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = (int(rest[1]), rest[0])
    return table


def descendants(pid):
    """Every live process below ``pid`` -- including Ansible's workers, which call setsid() and so are out
    of reach of a signal to ansible-playbook's process group."""
    table = _proc_table()
    children = {}
    for p, (ppid, _state) in table.items():
        children.setdefault(ppid, []).append(p)
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def alive(pids):
    table = _proc_table()
    return [p for p in pids if p in table and table[p][1] != "Z"]


def kill_pids(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
