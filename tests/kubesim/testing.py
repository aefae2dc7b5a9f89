"""Start a simulated cluster from tests and benchmarks (test harness).

    from kubesim.testing import KubeSim

    with KubeSim(scenario="blog", pod_ready_seconds=0.2) as sim:
        sim.kubectl("get", "ns", check=True)
        api = kubernetes.client.CoreV1Api(sim.client())
        print(sim.stats()["total"], sim.audit_records()[-1])

With ``token_ttl=S`` the kubeconfig uses the exec credential plugin; ``sim.token`` then runs it
whenever the last token has expired.  ``sim.outage(seconds)`` starts an API server outage
(``POST /kubesim/outage``) and ``sim.wait_reachable()`` waits for its end.

``KubeSim(**options)`` runs ``python -m kubesim serve`` as a subprocess in a temporary
directory; keyword options map to the command line (``api_error_rate=0.1`` ->
``--api-error-rate 0.1``; lists repeat the flag: ``crash_proxy_version=["1.15.4"]``; ``True``
is a bare flag).  An audit log is always written (``audit_records()``).  ``stop()`` sends
SIGTERM, then kills after a grace period; ``returncode`` keeps the exit status.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

TESTS_DIR = Path(__file__).resolve().parent.parent
BIN_DIR = Path(__file__).resolve().parent / "bin"


class KubeSimError(RuntimeError):
    pass


class KubeSim:
    def __init__(self, scenario: str = "empty", *, workdir: str | None = None, ready_timeout: float = 120.0,
                 kubectl: str | None = None, python: str | None = None, audit: bool = True, env: dict | None = None,
                 **options):
        self.scenario = scenario
        self.options = dict(options)
        self.ready_timeout = ready_timeout
        self.kubectl_bin = kubectl or shutil.which("kubectl") or "/usr/bin/kubectl"
        self.python = python or sys.executable
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="kubesim-"))
        self.kubeconfig = str(self.dir / "kubeconfig")
        self.audit_log = str(self.dir / "audit.log") if audit else None
        self.log_path = str(self.dir / "kubesim.log")
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self._token: str | None = None
        self._token_expiry: float | None = None
        self._exec: dict | None = None
        self._cluster: dict = {}
        self.ca_pem: bytes | None = None
        self.returncode: int | None = None
        self._ctx: ssl.SSLContext | None = None
        self._log = None

    # ---- lifecycle ----------------------------------------------------------------------
    def command(self) -> list:
        cmd = [self.python, "-m", "kubesim", "serve", "--scenario", self.scenario, "--port", "0",
               "--kubeconfig", self.kubeconfig]
        if self.audit_log:
            cmd += ["--audit-log", self.audit_log]
        for k, v in self.options.items():
            flag = "--" + k.replace("_", "-")
            if v is None or v is False:
                continue
            if v is True:
                cmd.append(flag)
            elif isinstance(v, (list, tuple)):
                for item in v:
                    cmd += [flag, str(item)]
            else:
                cmd += [flag, str(v)]
        return cmd

    def env(self) -> dict:
        env = dict(os.environ)
        pp = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(TESTS_DIR) + (os.pathsep + pp if pp else "")
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    def start(self) -> "KubeSim":
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=self._log, env=self.env(),
                                     cwd=str(self.dir))
        line = [None]

        def read():
            line[0] = self.proc.stdout.readline()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(self.ready_timeout)
        text = (line[0] or b"").decode().strip()
        if not text.startswith("kubesim ready "):
            self.stop()
            raise KubeSimError(f"kubesim did not become ready (got {text!r}); log:\n{self.log()}")
        self.url = text.split(" ", 2)[2]
        threading.Thread(target=self._drain, daemon=True).start()
        with open(self.kubeconfig, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        user = cfg["users"][0]["user"]
        self._token, self._exec = user.get("token"), user.get("exec")
        self._cluster = cfg["clusters"][0]["cluster"]
        ca = self._cluster.get("certificate-authority-data")
        self.ca_pem = base64.b64decode(ca) if ca else None
        return self

    def _drain(self):
        try:
            for _ in self.proc.stdout:
                pass
        except (OSError, ValueError):
            pass

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.returncode = self.proc.returncode
        if self.proc.stdout:
            self.proc.stdout.close()
        if self._log:
            self._log.close()
            self._log = None
        self.proc = None
        return self.returncode

    def cleanup(self):
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "KubeSim":
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    @property
    def token(self) -> str | None:
        """The kubeconfig's bearer token; with an exec plugin (``token_ttl``) a valid one, renewed as
        client-go would once the last one has expired."""
        if self._exec and (self._token is None or (self._token_expiry is not None
                                                   and time.time() >= self._token_expiry)):
            from .credentials import run_exec_plugin
            self._token, self._token_expiry = run_exec_plugin(self._exec, self._cluster, str(self.dir))
        return self._token

    def outage(self, seconds: float):
        """``POST /kubesim/outage?seconds=N``: the API server is unreachable for that long."""
        code, _, body = self.request("POST", f"/kubesim/outage?seconds={seconds}")
        if code != 202:
            raise KubeSimError(f"outage refused: {code} {body[:300]!r}")
        return json.loads(body)

    def reachable(self) -> bool:
        try:
            code, _, _ = self.request("GET", "/readyz", token=None, timeout=5)
        except OSError:
            return False
        return code == 200

    def wait_reachable(self, timeout: float = 120.0):
        return self.wait_for(self.reachable, timeout=timeout, interval=0.1, message="the API server to be back")

    # ---- HTTP helpers -------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext | None:
        if self._ctx is None and self.ca_pem:
            self._ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        return self._ctx

    def request(self, method: str, path: str, body=None, *, headers: dict | None = None, token: str | None = "",
                timeout: float = 30.0):
        """Raw request -> (status, headers, bytes).  ``token=None`` sends no Authorization."""
        data = None
        hdrs = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        tok = self.token if token == "" else token
        if tok is not None:
            hdrs["Authorization"] = f"Bearer {tok}"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, context=self.ssl_context(), timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get_json(self, path: str, **kw):
        code, _, body = self.request("GET", path, **kw)
        if code != 200:
            raise KubeSimError(f"GET {path}: {code} {body[:300]!r}")
        return json.loads(body)

    def stats(self) -> dict:
        return self.get_json("/kubesim/stats")

    def audit_records(self) -> list:
        if not self.audit_log or not os.path.exists(self.audit_log):
            return []
        out = []
        with open(self.audit_log, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    out.append(json.loads(line))
        return out

    # ---- clients ------------------------------------------------------------------------
    def kubectl_env(self) -> dict:
        env = dict(os.environ)
        env["KUBECONFIG"] = self.kubeconfig
        env["KUBECACHEDIR"] = str(self.dir / "kube-cache")
        env["HOME"] = env.get("HOME") or str(self.dir)
        env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
        env.update(self.extra_env)
        return env

    def kubectl(self, *args, check: bool = False, input: str | None = None, timeout: float = 120.0):
        """Run the real kubectl against this cluster -> CompletedProcess (text)."""
        cp = subprocess.run([self.kubectl_bin, *map(str, args)], env=self.kubectl_env(), capture_output=True,
                            text=True, input=input, timeout=timeout)
        if check and cp.returncode != 0:
            raise KubeSimError(f"kubectl {' '.join(map(str, args))} failed ({cp.returncode}):\n{cp.stdout}\n"
                               f"{cp.stderr}")
        return cp

    def client(self, retries=None):
        """A ``kubernetes.client.ApiClient`` configured from the kubeconfig.  ``retries=0`` turns
        off urllib3's own retries (it retries 429/503 carrying Retry-After by default)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=self.kubeconfig, client_configuration=cfg)
        if retries is not None:
            cfg.retries = retries
        return client.ApiClient(cfg)

    def dynamic(self):
        from kubernetes.dynamic import DynamicClient

        return DynamicClient(self.client())

    def wait_for(self, predicate, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
        """Poll ``predicate()`` until truthy; return its value or raise KubeSimError."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(interval)
        raise KubeSimError(f"timed out waiting for {message} (last={last!r})")
