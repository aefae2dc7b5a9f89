"""Bearer tokens of the simulated cluster, and expiring ones renewed by an exec plugin (test harness).

Default: one static token (``--token T``, else a random one) written into the kubeconfig; it never
expires.

``--token-ttl S``: every token expires S seconds after it was issued; afterwards the server answers
401 Unauthorized with the real ``Status`` body, as kube-apiserver does for an expired token.  The
kubeconfig then holds no token but an exec credential plugin, the way EKS, GKE and OIDC kubeconfigs
do (client.authentication.k8s.io/v1; client-go ``plugin/pkg/client/auth/exec``)::

    users:
    - name: kubesim-admin
      user:
        exec:
          apiVersion: client.authentication.k8s.io/v1
          command: <tests>/kubesim/bin/kubesim-credential
          args: [--secret-file, <kubeconfig>.credential]
          interactiveMode: Never
          provideClusterInfo: true

``bin/kubesim-credential`` reads the cluster (server, CA) from ``KUBERNETES_EXEC_INFO``, obtains a fresh
token from ``POST /kubesim/token`` authenticated by ``Authorization: Bearer <secret>`` (the secret is the
0600 file next to the kubeconfig, like a cloud CLI's refresh credential) and prints an ``ExecCredential``
with ``status.token`` and ``status.expirationTimestamp``.  kubectl runs the plugin again once the
expiry has passed or after a 401; the kubernetes Python client once it is within five minutes of the
expiry (``kube_config.EXPIRY_SKEW_PREVENTION_DELAY``), i.e. before every request when S < 300.
The published expiry is rounded down to the second and the server accepts a token for
``LEEWAY_SECONDS`` more (token authenticators allow some clock skew), so a client that honours the
expiry renews before the server refuses; one that ignores it gets 401 from S + 1 seconds on.  :func:`run_exec_plugin` runs a kubeconfig's exec plugin the way client-go does (for the
stand-in istioctl and :class:`kubesim.testing.KubeSim`).
"""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

EXEC_API_VERSION = "client.authentication.k8s.io/v1"
LEEWAY_SECONDS = 1.0
PLUGIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin", "kubesim-credential")


def _rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class TokenAuthority:
    """Which bearer tokens the server accepts."""

    def __init__(self, static_token: str | None, ttl: float = 0.0, secret: str | None = None):
        self.static_token = static_token
        self.ttl = float(ttl or 0.0)
        self.secret = secret
        self._issued: dict = {}  # token -> expiry (epoch seconds)
        self._lock = threading.Lock()
        self.issued = 0
        self.expired = 0  # requests refused because their token had expired

    def valid(self, token: str) -> bool:
        if not token:
            return False
        if self.static_token is not None and hmac.compare_digest(token, self.static_token):
            return True
        with self._lock:
            expiry = self._issued.get(token)
            if expiry is None:
                return False
            if time.time() < expiry:
                return True
            self.expired += 1
            return False

    def issue(self, presented_secret: str) -> dict:
        """-> an ExecCredential for a new token, or None when the secret is wrong (401)."""
        if not self.ttl or not self.secret or not hmac.compare_digest(presented_secret or "", self.secret):
            return None
        now = time.time()
        token = secrets.token_urlsafe(32)
        with self._lock:
            # forget tokens that expired a while ago (their 401 stays a 401: unknown tokens are refused too)
            for t in [t for t, exp in self._issued.items() if exp < now - 3600]:
                del self._issued[t]
            self._issued[token] = now + self.ttl + LEEWAY_SECONDS
            self.issued += 1
        return {"apiVersion": EXEC_API_VERSION, "kind": "ExecCredential", "spec": {},
                "status": {"token": token, "expirationTimestamp": _rfc3339(now + self.ttl)}}


def exec_user(secret_file: str) -> dict:
    """The kubeconfig ``user`` entry that runs bin/kubesim-credential."""
    return {"exec": {"apiVersion": EXEC_API_VERSION, "command": PLUGIN,
                     "args": ["--secret-file", os.path.abspath(secret_file)],
                     "interactiveMode": "Never", "provideClusterInfo": True}}


def write_secret(path: str) -> str:
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret


# ---- client side ------------------------------------------------------------------------------

class CredentialError(Exception):
    pass


def _ssl_context(cluster: dict):
    if not str(cluster.get("server", "")).startswith("https"):
        return None
    ctx = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif cluster.get("certificate-authority-data"):
        ctx.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    elif cluster.get("certificate-authority"):
        ctx.load_verify_locations(cafile=cluster["certificate-authority"])
    return ctx


def fetch_credential(cluster: dict, secret: str, api_version: str = EXEC_API_VERSION) -> dict:
    """POST /kubesim/token -> ExecCredential (apiVersion as the caller asked)."""
    server = str(cluster.get("server") or "").rstrip("/")
    if not server:
        raise CredentialError("no cluster server in KUBERNETES_EXEC_INFO (provideClusterInfo must be true)")
    req = urllib.request.Request(server + "/kubesim/token", data=b"{}", method="POST",
                                 headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json",
                                          "Accept": "application/json"})
    last = None
    for attempt in range(3):
        try:
            with urllib.request.urlopen(req, context=_ssl_context(cluster), timeout=30) as r:
                cred = json.loads(r.read())
            break
        except urllib.error.HTTPError as e:
            raise CredentialError(f"token request to {server} refused: {e.code} {e.read()[:200]!r}")
        except (urllib.error.URLError, OSError) as e:
            last = e
            time.sleep(0.2 * (attempt + 1))
    else:
        raise CredentialError(f"cannot reach {server} for a token: {getattr(last, 'reason', last)}")
    cred["apiVersion"] = api_version
    return cred


def plugin_main(argv) -> int:
    """bin/kubesim-credential: print an ExecCredential for the cluster in KUBERNETES_EXEC_INFO."""
    secret_file = None
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "--secret-file" and args:
            secret_file = args.pop(0)
        elif a.startswith("--secret-file="):
            secret_file = a.split("=", 1)[1]
        else:
            sys.stderr.write(f"kubesim-credential: unknown argument {a!r}\n")
            return 2
    if not secret_file:
        sys.stderr.write("kubesim-credential: --secret-file is required\n")
        return 2
    try:
        info = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "{}")
    except ValueError:
        sys.stderr.write("kubesim-credential: KUBERNETES_EXEC_INFO is not JSON\n")
        return 1
    try:
        with open(secret_file, encoding="utf-8") as f:
            secret = f.read().strip()
        cred = fetch_credential((info.get("spec") or {}).get("cluster") or {}, secret,
                                info.get("apiVersion") or EXEC_API_VERSION)
    except (OSError, CredentialError) as e:
        sys.stderr.write(f"kubesim-credential: {e}\n")
        return 1
    sys.stdout.write(json.dumps(cred) + "\n")
    return 0


def run_exec_plugin(exec_cfg: dict, cluster: dict, cwd: str | None = None) -> tuple:
    """Run a kubeconfig ``user.exec`` plugin as client-go does -> (token, expiry epoch or None)."""
    api_version = exec_cfg.get("apiVersion") or EXEC_API_VERSION
    info = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    if exec_cfg.get("provideClusterInfo"):
        info["spec"]["cluster"] = {k: v for k, v in cluster.items() if k != "extensions"}
    env = dict(os.environ)
    for item in exec_cfg.get("env") or []:
        env[item["name"]] = item["value"]
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    command = exec_cfg["command"]
    if cwd and os.sep in command and not os.path.isabs(command):
        command = os.path.join(cwd, command)  # client-go resolves relative paths against the kubeconfig
    cp = subprocess.run([command, *(exec_cfg.get("args") or [])], env=env, capture_output=True, text=True,
                        timeout=60, cwd=cwd)
    if cp.returncode != 0:
        raise CredentialError(f"exec plugin failed ({cp.returncode}): {cp.stderr.strip()}")
    try:
        cred = json.loads(cp.stdout)
    except ValueError as e:
        raise CredentialError(f"exec plugin output is not JSON: {e}")
    if cred.get("apiVersion") != api_version:
        raise CredentialError(f"exec plugin answered {cred.get('apiVersion')}, expected {api_version}")
    status = cred.get("status") or {}
    expiry = status.get("expirationTimestamp")
    return status.get("token"), (parse_rfc3339(expiry) if expiry else None)
