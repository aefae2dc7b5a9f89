"""HTTP(S) front end of the simulated Kubernetes API server (test harness).

Speaks enough of the real API for kubectl and the kubernetes Python client: discovery
(legacy and aggregated v2), minimal OpenAPI v2/v3, CRUD, list (selectors, pagination, Table
output), watch (chunked JSON lines, resourceVersion replay, bookmarks, 410 Expired), patch
(merge / strategic / JSON / apply), server-side dry run, deletion with propagation, bearer
token authentication (401), ClusterRole-rule authorization (403), SelfSubjectAccessReview,
fault injection (errors, latency, dropped watches), ``/kubesim/stats`` and an audit log.

Extra endpoints (not in Kubernetes):
* ``GET /kubesim/stats`` (token needed): request counts ``{"total", "by_verb", "by_resource",
  "by_verb_resource", "by_code"}``.
* ``GET /kubesim/metrics`` (no token): Prometheus text from ``kubesim.metrics.render(store,
  options)`` when that module exists, else 404.
Faults (``--api-error-rate``) apply to resource requests only (``/api/v1/...``, ``/apis/g/v/...``
with a resource), not to discovery, OpenAPI, ``/version`` or ``/kubesim/*``.
* ``POST /kubesim/token`` (authenticated by the credential secret, not a token): a fresh expiring
  token as an ExecCredential, for ``--token-ttl`` (``kubesim.credentials``).
* ``POST /kubesim/outage?seconds=N`` (token needed): the API server restarts and is unreachable
  for N seconds (``kubesim.faults.Outage``); answers 202 ``{"kind": "Outage", "seconds": N}``.
``--conflict-rate R`` makes another writer update the object just before that fraction of writes
(``kubesim.faults.ConcurrentWriter``).  ``/kubesim/stats`` also reports
``"faults": {"concurrent_writes", "outages", "last_outage", "tokens_issued", "expired_tokens"}``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import importlib
import json
import random
import select
import socket
import ssl
import sys
import threading
import time
import urllib.parse

import yaml

from . import credentials, faults, tables
from .errors import ApiError
from .patch import PATCH_TYPES
from .resources import SUBRESOURCE_HANDLERS
from .selectors import FieldSelector, LabelSelector

JSON = "application/json"
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
SSAR = "selfsubjectaccessreviews.authorization.k8s.io"
SSRR = "selfsubjectrulesreviews.authorization.k8s.io"
VERBS_SUB = ["get", "patch", "update"]
# Types whose DELETE answers the deleted object (others answer a Status Success).
RETURN_DELETED_OBJECT = {"pods", "services", "namespaces", "persistentvolumeclaims",
                         "customresourcedefinitions.apiextensions.k8s.io"}


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class RequestInfo:
    __slots__ = ("path", "is_resource", "group", "version", "namespace", "resource", "name", "subresource",
                 "verb", "kind", "rt")

    def __init__(self, path):
        self.path = path
        self.is_resource = False
        self.group = self.version = self.namespace = self.resource = self.name = self.subresource = ""
        self.verb = ""
        self.kind = "nonresource"
        self.rt = None

    @property
    def gr(self):
        return f"{self.resource}.{self.group}" if self.group else self.resource


def parse_request(method: str, path: str, query: dict) -> RequestInfo:
    info = RequestInfo(path)
    segs = [urllib.parse.unquote(s) for s in path.strip("/").split("/") if s]
    info.verb = method.lower()
    if not segs:
        return info
    if segs[0] == "api":
        if len(segs) == 1:
            info.kind = "discovery"
            return info
        info.group, info.version, rest = "", segs[1], segs[2:]
    elif segs[0] == "apis":
        if len(segs) <= 2:
            info.kind = "discovery"
            return info
        info.group, info.version, rest = segs[1], segs[2], segs[3:]
    else:
        if segs[0] in ("openapi", "swagger.json"):
            info.kind = "openapi"
        elif segs[0] == "version":
            info.kind = "version"
        elif segs[0] in ("healthz", "livez", "readyz"):
            info.kind = "health"
        return info
    if not rest:
        info.kind = "discovery"
        return info
    info.is_resource = True
    info.kind = "resource"
    watch = False
    if rest[0] == "watch":
        watch = True
        rest = rest[1:]
    if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        info.namespace = rest[1]
        rest = rest[2:]
    elif len(rest) >= 2 and rest[0] == "namespaces" and len(rest) <= 3:
        # namespaces/NAME[/status|finalize]: the namespace object itself
        info.namespace = ""
    if rest:
        info.resource = rest[0]
    if len(rest) >= 2:
        info.name = rest[1]
    if len(rest) >= 3:
        info.subresource = "/".join(rest[2:])
    if rest and rest[0] == "namespaces" and info.name:
        info.namespace = info.name
    m = method.upper()
    if query.get("watch") in ("true", "1"):
        watch = True
    if m in ("GET", "HEAD"):
        if watch:
            info.verb = "watch"
        else:
            info.verb = "get" if info.name else "list"
    elif m == "POST":
        info.verb = "create"
    elif m == "PUT":
        info.verb = "update"
    elif m == "PATCH":
        info.verb = "patch"
    elif m == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    return info


# ---- authorization ---------------------------------------------------------------------

class Authorizer:
    """Rules of one ClusterRole; ``None`` rules = allow everything."""

    def __init__(self, rules=None):
        self.rules = rules

    @classmethod
    def from_file(cls, path):
        if not path:
            return cls(None)
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        # A `kind: List` (or `<Kind>List`) is expanded into its items, as kubectl apply does.
        docs = [i for d in docs for i in ((d.get("items") or []) if str(d.get("kind", "")).endswith("List") else [d])]
        rules = []
        found = False
        for d in docs:
            if d.get("kind") in ("ClusterRole", "Role"):
                rules.extend(d.get("rules") or [])
                found = True
        if not found:
            raise SystemExit(f"kubesim: no ClusterRole in {path}")
        return cls(rules)

    def allowed(self, verb, group, resource, subresource="", name="", namespace="") -> bool:
        if self.rules is None:
            return True
        res = f"{resource}/{subresource}" if subresource else resource
        for r in self.rules:
            verbs = r.get("verbs") or []
            if "*" not in verbs and verb not in verbs:
                continue
            groups = r.get("apiGroups") or []
            if "*" not in groups and group not in groups:
                continue
            resources = r.get("resources") or []
            ok = False
            for rr in resources:
                if rr == "*" or rr == res:
                    ok = True
                elif subresource and rr == f"*/{subresource}":
                    ok = True
            if not ok:
                continue
            names = r.get("resourceNames") or []
            if names and name not in names:
                continue
            return True
        return False

    def allowed_nonresource(self, path) -> bool:
        return True  # discovery, version, openapi and health are open to every authenticated user


def forbidden_error(user, info: RequestInfo) -> ApiError:
    res = f"{info.resource}/{info.subresource}" if info.subresource else info.resource
    where = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    why = f'User "{user}" cannot {info.verb} resource "{res}" in API group "{info.group}" {where}'
    return ApiError.forbidden(info.gr, info.name, why)


# ---- server ----------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.total = 0
        self.by_verb: dict = {}
        self.by_resource: dict = {}
        self.by_verb_resource: dict = {}
        self.by_code: dict = {}

    def count(self, verb, resource, code):
        with self.lock:
            self.total += 1
            self.by_verb[verb] = self.by_verb.get(verb, 0) + 1
            self.by_resource[resource] = self.by_resource.get(resource, 0) + 1
            d = self.by_verb_resource.setdefault(verb, {})
            d[resource] = d.get(resource, 0) + 1
            c = str(code)
            self.by_code[c] = self.by_code.get(c, 0) + 1

    def snapshot(self):
        with self.lock:
            return {"total": self.total, "by_verb": dict(self.by_verb), "by_resource": dict(self.by_resource),
                    "by_verb_resource": {k: dict(v) for k, v in self.by_verb_resource.items()},
                    "by_code": dict(self.by_code)}


class KubeSimServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, store, options, token, tls_material=None, credential_secret=None):
        self.store = store
        self.options = options
        self.token = token
        self.tokens = credentials.TokenAuthority(token, getattr(options, "token_ttl", 0.0), credential_secret)
        self.stats = Stats()
        self.authorizer = Authorizer.from_file(getattr(options, "authorize_rules", None))
        self.fault_rng = random.Random(getattr(options, "seed", None))
        self.fault_lock = threading.Lock()
        self.audit_lock = threading.Lock()
        self.audit_file = None
        if getattr(options, "audit_log", None):
            self.audit_file = open(options.audit_log, "a", encoding="utf-8", buffering=1)
        self.stopping = False
        self.ssl_context = tls_material.server_context() if tls_material else None
        self.conflicts = faults.ConcurrentWriter(self, getattr(options, "conflict_rate", 0.0))
        self.outage = faults.Outage(self)
        super().__init__(addr, Handler)

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="kubesim-http",
                             daemon=True)
        t.start()
        return t

    def get_request(self):
        sock, addr = self.socket.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self.outage.track(sock)
        return sock, addr

    def shutdown_request(self, request):
        self.outage.untrack(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self):
        host, port = self.server_address[:2]
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{host}:{port}"

    def fault_roll(self, rate) -> float | None:
        if rate <= 0:
            return None
        with self.fault_lock:
            r = self.fault_rng.random()
            if r < rate:
                return self.fault_rng.random()
        return None

    def audit(self, record: dict):
        if self.audit_file is None:
            return
        line = json.dumps(record, sort_keys=True)
        with self.audit_lock:
            try:
                self.audit_file.write(line + "\n")
            except ValueError:
                pass

    def close_audit(self):
        with self.audit_lock:
            if self.audit_file is not None:
                self.audit_file.close()
                self.audit_file = None


class _Done(Exception):
    """Raised after a response has been written (streaming)."""


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubesim"
    sys_version = ""

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.connection.settimeout(300)

    # -- plumbing --------------------------------------------------------------------------
    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_DELETE(self):
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, code: int, body: bytes, ctype: str = JSON, headers: dict | None = None):
        self._code = code
        self._account_once()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", self._audit_id)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        for w in self._warnings:
            self.send_header("Warning", '299 - "%s"' % w.replace('"', '\\"'))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._code = code

    def _send_json(self, code: int, obj, headers=None, ctype=JSON):
        body = obj if isinstance(obj, (bytes, bytearray)) else json.dumps(obj, separators=(",", ":")).encode()
        self._send(code, body, ctype, headers)

    def _send_error(self, err: ApiError):
        self._send_json(err.code, err.status(), err.headers)

    def _account_once(self):
        """Stats and audit for this request, once, just before its response starts."""
        if self._accounted:
            return
        self._accounted = True
        path = self._acct[0].path
        if path.startswith("/kubesim/") or self._acct[0].kind == "health":
            return
        self._account(*self._acct)

    def _handle(self, method):
        outage = self.server.outage
        if not outage.enter():  # the API server is going down: drop the connection unanswered
            self.close_connection = True
            return
        try:
            self._handle_request(method)
        finally:
            outage.leave()

    def _handle_request(self, method):
        self._code = 0
        self._accounted = True
        self._created_name = None
        self._warnings = []
        self._audit_id = base64.b16encode(random.getrandbits(64).to_bytes(8, "big")).decode().lower()
        srv: KubeSimServer = self.server
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        self._query = query
        path = url.path
        body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        info = parse_request(method, path, query)
        user = None
        started = time.time()
        self._acct = [info, None, method, query, started]
        self._accounted = False
        try:
            try:
                if path == "/kubesim/metrics":
                    return self._metrics()
                if info.kind == "health":
                    return self._send(200, b"ok", "text/plain; charset=utf-8")
                if path == "/kubesim/token":
                    return self._issue_token()
                user = self._authenticate()
                self._acct[1] = user
                if path.startswith("/kubesim/"):
                    return self._kubesim(path)
                opts = srv.options
                if getattr(opts, "latency_ms", 0):
                    time.sleep(opts.latency_ms / 1000.0)
                if info.kind == "resource":
                    if not srv.authorizer.allowed(info.verb, info.group, info.resource, info.subresource,
                                                  info.name, info.namespace) \
                            and not (info.verb == "create" and info.gr in (SSAR, SSRR)):
                        raise forbidden_error(user, info)
                    roll = srv.fault_roll(getattr(opts, "api_error_rate", 0.0))
                    if roll is not None:
                        raise self._fault(roll)
                    return self._resource(method, info, query, body, user)
                if info.kind == "discovery":
                    return self._discovery(info)
                if info.kind == "version":
                    return self._version()
                if info.kind == "openapi":
                    return self._openapi(path, query)
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            except ApiError as e:
                if self._code:
                    return
                self._send_error(e)
            except _Done:
                pass
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
                self.close_connection = True
                if not self._code:
                    self._code = 499
            except Exception as e:  # an unexpected bug: answer 500 like the real server would
                import traceback
                traceback.print_exc()
                if not self._code:
                    try:
                        self._send_error(ApiError.internal(f"{type(e).__name__}: {e}"))
                    except OSError:
                        pass
        finally:
            self._account_once()

    def _account(self, info: RequestInfo, user, method, query, started):
        srv: KubeSimServer = self.server
        if info.kind == "resource":
            res = info.gr + (f"/{info.subresource}" if info.subresource else "")
            verb = info.verb
        else:
            res = info.kind
            verb = method.lower()
        srv.stats.count(verb, res, self._code)
        if srv.audit_file is not None:
            rec = {"ts": _now_iso(), "verb": verb, "method": method, "path": info.path, "requestURI": self.path,
                   "user": user or "",
                   "code": self._code, "userAgent": self.headers.get("User-Agent", ""),
                   "latencyMs": int((time.time() - started) * 1000)}
            if info.kind == "resource":
                rec.update({"apiGroup": info.group, "apiVersion": info.version, "resource": info.resource,
                            "subresource": info.subresource, "namespace": info.namespace, "name": info.name,
                            "dryRun": query.get("dryRun") == "All"})
                if getattr(self, "_created_name", None):
                    rec["name"] = self._created_name
            else:
                rec.update({"resource": "", "subresource": "", "namespace": "", "name": "", "apiGroup": "",
                            "dryRun": False})
            srv.audit(rec)

    def _authenticate(self) -> str:
        srv: KubeSimServer = self.server
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and srv.tokens.valid(auth[7:].strip()):
            return getattr(srv.options, "user", "kubesim-admin")
        raise ApiError.unauthorized()

    def _issue_token(self):
        """POST /kubesim/token with ``Authorization: Bearer <credential secret>`` -> ExecCredential."""
        if self.command != "POST":
            raise ApiError.method_not_allowed()
        auth = self.headers.get("Authorization", "")
        cred = self.server.tokens.issue(auth[7:].strip() if auth.startswith("Bearer ") else "")
        if cred is None:
            raise ApiError.unauthorized()
        self._send_json(200, cred)

    def _fault(self, roll: float) -> ApiError:
        if roll < 1 / 3:
            return ApiError.internal("kubesim: injected fault")
        if roll < 2 / 3:
            return ApiError(503, "ServiceUnavailable", "the server is currently unable to handle the request",
                            {"retryAfterSeconds": 1}, headers={"Retry-After": "1"})
        return ApiError(429, "TooManyRequests", "Too many requests, please try again later.",
                        {"retryAfterSeconds": 1}, headers={"Retry-After": "1"})

    # -- /kubesim ----------------------------------------------------------------------------
    def _metrics(self):
        try:
            mod = importlib.import_module("kubesim.metrics")
        except ImportError:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        text = mod.render(self.server.store, self.server.options)
        if isinstance(text, str):
            text = text.encode()
        self._send(200, text, "text/plain; version=0.0.4; charset=utf-8")

    def _kubesim(self, path):
        srv: KubeSimServer = self.server
        if path == "/kubesim/stats":
            snap = srv.stats.snapshot()
            snap["faults"] = {"concurrent_writes": srv.conflicts.count, "outages": srv.outage.count,
                              "tokens_issued": srv.tokens.issued, "expired_tokens": srv.tokens.expired,
                              "last_outage": srv.outage.last}
            return self._send_json(200, snap)
        if path == "/kubesim/ztunnel":  # per node: when no Ready ztunnel served it (kubesim.ambient)
            zlog = getattr(srv.store, "kubesim_ztunnel_log", None)
            return self._send_json(200, zlog.snapshot() if zlog is not None else {"nodes": {}})
        if path == "/kubesim/outage":
            if self.command != "POST":
                raise ApiError.method_not_allowed()
            seconds = faults.Outage.parse_seconds(self._query)
            srv.outage.start(seconds)
            self.close_connection = True
            return self._send_json(202, {"kind": "Outage", "seconds": seconds})
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    # -- discovery ---------------------------------------------------------------------------
    def _wants_v2(self):
        acc = self.headers.get("Accept", "")
        return "as=APIGroupDiscoveryList" in acc and "v=v2;" in acc.replace(" ", "") + ";"

    def _version(self):
        v = getattr(self.server.options, "kubernetes_version", "v1.32.0")
        major, minor = v.lstrip("v").split(".")[:2]
        self._send_json(200, {"major": major, "minor": minor, "gitVersion": v,
                              "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
                              "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.4", "compiler": "gc",
                              "platform": "linux/amd64", "emulationMajor": major, "emulationMinor": minor,
                              "minCompatibilityMajor": major, "minCompatibilityMinor": str(int(minor) - 1)})

    def _discovery(self, info: RequestInfo):
        reg = self.server.store.registry
        segs = [s for s in info.path.strip("/").split("/") if s]
        if segs == ["api"]:
            if self._wants_v2():
                return self._send_json(200, self._aggregated(core=True), ctype=DISCOVERY_V2)
            host, port = self.server.server_address[:2]
            return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                         "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                                         "serverAddress": f"{host}:{port}"}]})
        if segs == ["apis"]:
            if self._wants_v2():
                return self._send_json(200, self._aggregated(core=False), ctype=DISCOVERY_V2)
            groups = [self._group_doc(g, vs) for g, vs in reg.groups().items() if g]
            return self._send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        if segs[0] == "apis" and len(segs) == 2:
            vs = reg.groups().get(segs[1])
            if not vs:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            doc = self._group_doc(segs[1], vs)
            doc.update({"kind": "APIGroup", "apiVersion": "v1"})
            return self._send_json(200, doc)
        group = "" if segs[0] == "api" else segs[1]
        version = segs[1] if segs[0] == "api" else segs[2]
        rts = reg.in_group_version(group, version)
        if not rts:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        resources = []
        for rt in sorted(rts, key=lambda r: r.plural):
            resources.append(self._resource_doc(rt))
            for sub in rt.subresources:
                resources.append(self._subresource_doc(rt, sub))
        gv = f"{group}/{version}" if group else version
        self._send_json(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                              "resources": resources})

    @staticmethod
    def _group_doc(g, vs):
        return {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}

    @staticmethod
    def _resource_doc(rt):
        d = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced, "kind": rt.kind,
             "verbs": rt.verbs}
        if rt.short_names:
            d["shortNames"] = rt.short_names
        if rt.categories:
            d["categories"] = rt.categories
        d["storageVersionHash"] = base64.b64encode(hashlib.sha256(rt.key.encode()).digest()[:8]).decode()
        return d

    @staticmethod
    def _sub_kind(rt, sub):
        if sub in rt.subresource_kinds:
            return rt.subresource_kinds[sub]
        if sub == "scale":
            return "autoscaling", "v1", "Scale", VERBS_SUB
        if sub == "eviction":
            return "policy", "v1", "Eviction", ["create"]
        if sub == "log":
            return "", "", "Pod", ["get"]
        if sub == "finalize":
            return "", "", rt.kind, ["update"]
        return "", "", rt.kind, VERBS_SUB

    def _subresource_doc(self, rt, sub):
        g, v, kind, verbs = self._sub_kind(rt, sub)
        d = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced, "kind": kind,
             "verbs": verbs}
        if g or v:
            d["group"], d["version"] = g, v
        return d

    def _aggregated(self, core: bool) -> dict:
        reg = self.server.store.registry
        items = []
        for g, vs in reg.groups().items():
            if core != (g == ""):
                continue
            versions = []
            for v in vs:
                resources = []
                for rt in sorted(reg.in_group_version(g, v), key=lambda r: r.plural):
                    r = {"resource": rt.plural, "responseKind": {"group": "", "version": "", "kind": rt.kind},
                         "scope": "Namespaced" if rt.namespaced else "Cluster", "singularResource": rt.singular,
                         "verbs": rt.verbs}
                    if rt.short_names:
                        r["shortNames"] = rt.short_names
                    if rt.categories:
                        r["categories"] = rt.categories
                    subs = []
                    for sub in rt.subresources:
                        sg, sv, kind, verbs = self._sub_kind(rt, sub)
                        subs.append({"subresource": sub, "responseKind": {"group": sg, "version": sv, "kind": kind},
                                     "verbs": verbs})
                    if subs:
                        r["subresources"] = subs
                    resources.append(r)
                versions.append({"version": v, "resources": resources, "freshness": "Current"})
            items.append({"metadata": {"name": g, "creationTimestamp": None}, "versions": versions})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
                "metadata": {}, "items": items}

    # -- openapi (documents built by kubesim.openapi) ---------------------------------------
    def _openapi(self, path, query):
        from . import openapi
        reg = self.server.store.registry
        acc = self.headers.get("Accept", "") or "*/*"
        version = getattr(self.server.options, "kubernetes_version", "v1.32.0")
        wanted = [a.split(";")[0].strip() for a in acc.split(",")]
        if path.rstrip("/") == "/openapi/v2" or path == "/swagger.json":
            doc = openapi.v2_document(reg, version)
            etag = '"%s"' % hashlib.sha512(json.dumps(sorted(doc["definitions"])).encode()).hexdigest()[:64].upper()
            for w in wanted:
                if w in (openapi.V2_PROTO, openapi.V2_PROTO_CONTENT_TYPE):
                    # kube-openapi answers both Accept forms with the parseable media type (Go's mime parser
                    # rejects the "@" of the legacy one)
                    return self._send(200, openapi.v2_protobuf(doc), openapi.V2_PROTO_CONTENT_TYPE,
                                      {"Etag": etag})
                if w in ("application/json", "*/*", "application/*"):
                    return self._send_json(200, doc, {"Etag": etag})
            return self._not_acceptable()
        if not any(w in ("application/json", "*/*", "application/*") for w in wanted):
            return self._not_acceptable()
        if path.rstrip("/") == "/openapi/v3":
            return self._send_json(200, openapi.v3_index(reg, self._gv_hash))
        if path.startswith("/openapi/v3/"):
            rest = path[len("/openapi/v3/"):].strip("/").split("/")
            if rest[0] == "api" and len(rest) == 2:
                g, v = "", rest[1]
            elif rest[0] == "apis" and len(rest) == 3:
                g, v = rest[1], rest[2]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            rts = reg.in_group_version(g, v)
            if not rts:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return self._send_json(200, openapi.v3_group_version(reg, g, v, rts, version),
                                   {"Etag": f'"{self._gv_hash(g, v)}"'})
        raise ApiError(404, "NotFound", "the server could not find the requested resource", {})

    def _not_acceptable(self):
        return self._send(406, b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
                               b'"message":"the server was unable to respond with a content type that the client '
                               b'supports","reason":"NotAcceptable","code":406}', JSON)

    def _gv_hash(self, g, v):
        reg = self.server.store.registry
        names = sorted(f"{rt.plural}:{rt.kind}:{','.join(rt.subresources)}" for rt in reg.in_group_version(g, v))
        return hashlib.sha512(("|".join(names)).encode()).hexdigest()[:64].upper()

    # -- resources ---------------------------------------------------------------------------
    def _table_wanted(self):
        acc = self.headers.get("Accept", "")
        for part in acc.split(","):
            p = part.replace(" ", "")
            if "as=Table" in p and "g=meta.k8s.io" in p and ("v=v1;" in p + ";" or "v=v1beta1" in p):
                return True
            if p.startswith("application/json") and "as=" not in p:
                return False
        return False

    def _parse_body(self, body: bytes, ctype: str):
        if not body:
            raise ApiError.bad_request("the server rejected our request due to an error in our request")
        ct = (ctype or "").split(";")[0].strip().lower()
        if ct == "application/vnd.kubernetes.protobuf":
            from . import protobuf
            try:
                return protobuf.decode(body)
            except (protobuf.ProtoError, ValueError, IndexError) as e:
                raise ApiError.unsupported_media_type(ct, ["application/json", "application/yaml",
                                                           "application/vnd.kubernetes.protobuf"]) from e
        if "protobuf" in ct or "cbor" in ct:
            raise ApiError.unsupported_media_type(ct, ["application/json", "application/yaml",
                                                       "application/vnd.kubernetes.protobuf"])
        try:
            if ct.endswith("yaml"):
                return yaml.safe_load(body)
            return json.loads(body)
        except (ValueError, yaml.YAMLError) as e:
            raise ApiError.bad_request(f"error decoding body: {e}")

    def _resource(self, method, info: RequestInfo, query, body, user):
        store = self.server.store
        reg = store.registry
        rt = reg.by_path(info.group, info.version, info.resource)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        info.rt = rt
        if info.namespace and not rt.namespaced and info.resource != "namespaces":
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if rt.namespaced and not info.namespace and info.verb not in ("list", "watch"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if info.subresource and info.subresource not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if info.verb not in rt.verbs and not info.subresource:
            raise ApiError.method_not_allowed()
        ns = info.namespace if rt.namespaced else None
        dry_run = query.get("dryRun") == "All"
        if "dryRun" in query and query["dryRun"] not in ("All", ""):
            raise ApiError.bad_request(f'Invalid dryRun value: "{query["dryRun"]}"; supported values: "All"')
        v = info.version
        self.server.conflicts.before_write(info, rt, ns)
        handler = SUBRESOURCE_HANDLERS.get((rt.key, info.subresource, info.verb)) if info.subresource else None
        if handler is not None:
            obj = None
            if info.verb in ("create", "update", "patch"):
                obj = self._parse_body(body, self.headers.get("Content-Type", ""))
            code, res = handler(store, rt, ns, info.name, obj, query, dry_run, user)
            return self._send_json(code, res)
        if info.verb == "get":
            return self._get(rt, ns, info, query)
        if info.verb == "list":
            return self._list(rt, ns, query)
        if info.verb == "watch":
            return self._watch(rt, ns, query, info)
        if info.verb == "create":
            obj = self._parse_body(body, self.headers.get("Content-Type", ""))
            if info.gr == SSAR:
                return self._ssar(obj, user)
            if info.gr == SSRR:
                return self._ssrr(obj)
            if info.subresource == "eviction":
                res = store.delete(rt, info.name, ns, dry_run=dry_run, user=user)
                return self._send_json(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                             "status": "Success", "code": 201})
            if info.name or info.subresource:
                raise ApiError.method_not_allowed()
            self._check_kind(rt, obj, v)
            self._field_validation(rt, obj, v, query)
            res = store.create(rt, obj, ns, dry_run=dry_run, user=user)
            self._created_name = res["metadata"]["name"]
            return self._send_json(201, self._out(rt, res, v))
        if info.verb == "update":
            obj = self._parse_body(body, self.headers.get("Content-Type", ""))
            if info.subresource == "scale":
                res = store.update(rt, obj, ns, subresource="scale", dry_run=dry_run, user=user, name=info.name)
                return self._send_json(200, res)
            if info.subresource not in ("", "status", "finalize"):
                raise ApiError.method_not_allowed()
            self._check_kind(rt, obj, v)
            self._field_validation(rt, obj, v, query)
            sub = "status" if info.subresource == "status" else None
            if info.subresource == "finalize":
                sub = None
            res = store.update(rt, obj, ns, subresource=sub, dry_run=dry_run, user=user, name=info.name)
            return self._send_json(200, self._out(rt, res, v))
        if info.verb == "patch":
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            kind = PATCH_TYPES.get(ctype)
            if kind is None:
                raise ApiError.unsupported_media_type(ctype, list(PATCH_TYPES)[:4])
            patch = self._parse_body(body, "application/yaml" if kind == "apply" else JSON)
            if kind != "json" and not info.subresource:
                self._field_validation(rt, patch, v, query)
            existed = store.try_get(rt, ns, info.name) is not None if kind == "apply" else True
            res = store.patch(rt, info.name, patch, kind, ns, subresource=info.subresource or None,
                              dry_run=dry_run, user=user)
            if info.subresource == "scale":
                return self._send_json(200, res)
            return self._send_json(200 if existed else 201, self._out(rt, res, v))
        if info.verb == "delete":
            opts = {}
            if body.strip():
                opts = self._parse_body(body, self.headers.get("Content-Type") or JSON) or {}
            prop = query.get("propagationPolicy") or opts.get("propagationPolicy")
            if prop is None and (opts.get("orphanDependents") is True or query.get("orphanDependents") == "true"):
                prop = "Orphan"
            if opts.get("dryRun") == ["All"]:
                dry_run = True
            grace = opts.get("gracePeriodSeconds")
            if grace is None and query.get("gracePeriodSeconds", "").lstrip("-").isdigit():
                grace = int(query["gracePeriodSeconds"])
            res = store.delete(rt, info.name, ns, propagation=prop, preconditions=opts.get("preconditions"),
                               dry_run=dry_run, user=user, grace_period_seconds=grace)
            pending = bool((res.get("metadata") or {}).get("deletionTimestamp")) and not dry_run and \
                store.try_get(rt, ns, info.name) is not None
            if pending:
                # the real server answers 200 (202 only when orphanDependents=false was asked)
                code = 202 if opts.get("orphanDependents") is False else 200
                return self._send_json(code, self._out(rt, res, v))
            if rt.key in RETURN_DELETED_OBJECT or rt.custom:
                return self._send_json(200, self._out(rt, res, v))
            details = {"name": info.name, "kind": rt.plural, "uid": res["metadata"].get("uid", "")}
            if rt.group:
                details = {"name": info.name, "group": rt.group, "kind": rt.plural,
                           "uid": res["metadata"].get("uid", "")}
            return self._send_json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                         "status": "Success", "details": details})
        if info.verb == "deletecollection":
            prop = query.get("propagationPolicy")
            if body.strip():
                opts = self._parse_body(body, self.headers.get("Content-Type") or JSON) or {}
                prop = prop or opts.get("propagationPolicy")
            lsel = LabelSelector.parse(query.get("labelSelector"))
            fsel = FieldSelector.parse(query.get("fieldSelector"), rt.key)
            items = store.delete_collection(rt, ns, lsel, fsel, propagation=prop, dry_run=dry_run, user=user)
            return self._send_json(200, {"kind": rt.list_kind, "apiVersion": rt.api_version_for(v),
                                         "metadata": {"resourceVersion": str(store.current_resource_version())},
                                         "items": [self._out(rt, o, v) for o in items]})
        raise ApiError.method_not_allowed()

    def _field_validation(self, rt, obj, version, query):
        """fieldValidation=Strict|Warn (default)|Ignore on unknown fields of built-in kinds, using the
        type schemas embedded in kubectl (see kubesim.protobuf)."""
        mode = query.get("fieldValidation") or "Warn"
        if mode not in ("Strict", "Warn", "Ignore"):
            raise ApiError.bad_request(f'fieldValidation parameter unsupported: {mode}')
        if mode == "Ignore" or rt.custom or not isinstance(obj, dict):
            return
        from . import protobuf
        try:
            tname = protobuf.message_for(rt.api_version_for(version), rt.kind)
            unknown = protobuf.unknown_fields(obj, tname) if tname else []
        except Exception:  # schema trouble must never reject a request
            return
        if not unknown:
            return
        msgs = [f'unknown field "{u}"' for u in unknown]
        if mode == "Strict":
            raise ApiError.bad_request(f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: '
                                       f'strict decoding error: {", ".join(msgs)}')
        self._warnings.extend(msgs)

    def _check_kind(self, rt, obj, version):
        if not isinstance(obj, dict):
            raise ApiError.bad_request("the object provided is unrecognized (must be of type map)")
        kind = obj.get("kind")
        if kind and kind != rt.kind and not (rt.key == "namespaces" and kind == "Namespace"):
            raise ApiError.bad_request(f"the API version in the data ({obj.get('apiVersion', '')}) does not match "
                                       f"the expected API version ({rt.api_version_for(version)})"
                                       if obj.get("apiVersion") != rt.api_version_for(version)
                                       else f"the kind in the data ({kind}) does not match the expected kind "
                                            f"({rt.kind})")

    @staticmethod
    def _out(rt, obj, version):
        if rt.custom:
            obj["apiVersion"] = rt.api_version_for(version)
        return obj

    def _get(self, rt, ns, info, query):
        store = self.server.store
        rec = store.get_rec(rt, ns, info.name)
        if info.subresource == "scale":
            return self._send_json(200, store.scale_of(rt, rec.obj))
        if info.subresource == "log":
            fn = getattr(store, "pod_log", None)
            text = fn(ns, info.name, query.get("container")) if callable(fn) else ""
            return self._send(200, (text or "").encode(), "text/plain")
        if self._table_wanted():
            table = tables.make_table(rt, [rec.obj], query.get("includeObject") or "Metadata",
                                      rec.obj["metadata"].get("resourceVersion", ""))
            return self._send_json(200, table)
        if rt.custom and rec.obj.get("apiVersion") != rt.api_version_for(info.version):
            return self._send_json(200, self._out(rt, rec.copy(), info.version))
        return self._send(200, rec.raw)

    def _list(self, rt, ns, query):
        store = self.server.store
        lsel = LabelSelector.parse(query.get("labelSelector"))
        fsel = FieldSelector.parse(query.get("fieldSelector"), rt.key)
        cont = query.get("continue")
        start = None
        if cont:
            try:
                tok = json.loads(base64.urlsafe_b64decode(cont.encode() + b"==="))
                start = tok["start"]
            except Exception:
                raise ApiError.bad_request("continue key is not valid: illegal base64 data at input byte 0")
        try:
            limit = max(int(query.get("limit") or 0), 0)
        except ValueError:
            limit = 0
        recs, rv, more = store.list_page(rt, ns, lsel, fsel, limit=limit, start_after=start)
        remaining = None
        next_token = ""
        if cont:
            rv = tok.get("rv", rv)  # pages of one list share the first page's resourceVersion
        if more is not None and recs:
            if more > 0:
                remaining = more
            next_token = base64.urlsafe_b64encode(json.dumps(
                {"rv": rv, "start": self._key(rt, recs[-1])}).encode()).decode().rstrip("=")
        v = self._req_version()
        if self._table_wanted():
            table = tables.make_table(rt, [r.obj for r in recs], query.get("includeObject") or "Metadata",
                                      str(rv), next_token, remaining)
            return self._send_json(200, table)
        meta = {"resourceVersion": str(rv)}
        if next_token:
            meta["continue"] = next_token
            if remaining:
                meta["remainingItemCount"] = remaining
        head = json.dumps({"kind": rt.list_kind, "apiVersion": rt.api_version_for(v), "metadata": meta},
                          separators=(",", ":")).encode()
        if rt.custom:
            items = [json.dumps(self._out(rt, r.copy(), v), separators=(",", ":")).encode()
                     if r.obj.get("apiVersion") != rt.api_version_for(v) else r.raw for r in recs]
        else:
            items = [r.raw for r in recs]
        body = head[:-1] + b',"items":[' + b",".join(items) + b"]}"
        return self._send(200, body)

    def _req_version(self):
        segs = [s for s in urllib.parse.urlsplit(self.path).path.strip("/").split("/") if s]
        return segs[1] if segs[0] == "api" else segs[2]

    @staticmethod
    def _key(rt, rec):
        m = rec.obj["metadata"]
        return f"{m.get('namespace', '')}/{m['name']}"

    # -- watch -------------------------------------------------------------------------------
    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, rt, ns, query, info):
        srv: KubeSimServer = self.server
        store = srv.store
        lsel = LabelSelector.parse(query.get("labelSelector"))
        fsel = FieldSelector.parse(query.get("fieldSelector"), rt.key)
        lsel_m = None if lsel.empty() else lsel.matches
        fsel_m = None if fsel.empty() else fsel.matches
        v = info.version
        table = self._table_wanted()
        include = query.get("includeObject") or "Metadata"
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        send_initial = query.get("sendInitialEvents") in ("true", "1")
        rv_param = query.get("resourceVersion") or ""
        try:
            timeout = float(query.get("timeoutSeconds") or 0)
        except ValueError:
            timeout = 0
        if timeout <= 0:
            timeout = 1800.0
        start = time.monotonic()
        deadline = start + timeout
        drop_rate = float(getattr(srv.options, "drop_watch_rate", 0.0) or 0.0)
        drop_at = None
        roll = srv.fault_roll(drop_rate)
        if roll is not None:
            drop_at = start + 0.2 + roll * 1.3
        # Validate the resourceVersion before answering 200.
        pos = None
        initial = []
        if rv_param in ("", "0") or send_initial:
            recs, pos = store.list_recs(rt, ns, lsel, fsel)
            initial = recs
        else:
            try:
                pos = int(rv_param)
            except ValueError:
                raise ApiError.bad_request(f'invalid resource version: "{rv_param}"')
        self.send_response(200)
        self.send_header("Content-Type", JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Audit-Id", self._audit_id)
        self._code = 200
        self._account_once()
        self.end_headers()
        first_table = [True]

        def emit(etype, obj_or_rec):
            if hasattr(obj_or_rec, "obj"):
                obj = obj_or_rec.obj
                raw = obj_or_rec.raw
            else:
                obj, raw = obj_or_rec, None
            if table and etype != "BOOKMARK" and etype != "ERROR":
                t = tables.make_table(rt, [obj], include, obj["metadata"].get("resourceVersion", ""),
                                      with_columns=first_table[0])
                first_table[0] = False
                data = json.dumps({"type": etype, "object": t}, separators=(",", ":")).encode()
            elif raw is not None and not (rt.custom and obj.get("apiVersion") != rt.api_version_for(v)):
                data = b'{"type":"' + etype.encode() + b'","object":' + raw + b"}"
            else:
                o = self._out(rt, json.loads(json.dumps(obj)), v) if etype not in ("ERROR", "BOOKMARK") else obj
                data = json.dumps({"type": etype, "object": o}, separators=(",", ":")).encode()
            self._chunk(data + b"\n")

        def bookmark(rv, initial_end=False):
            meta = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            emit("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version_for(v), "metadata": meta})

        try:
            for rec in initial:
                emit("ADDED", rec)
            if send_initial and bookmarks:
                bookmark(pos, True)
            last_bookmark = time.monotonic()
            while not srv.stopping and not store.closed and not srv.outage.down:
                seen = store.current_resource_version()
                try:
                    events = store.events_since(rt, pos)
                except ApiError as e:
                    emit("ERROR", e.status())
                    break
                for erv, etype, rec, old in events:
                    pos = erv
                    obj = rec.obj
                    if ns and (obj.get("metadata") or {}).get("namespace") != ns:
                        continue
                    if lsel_m is None and fsel_m is None:
                        emit(etype, rec)
                        continue
                    now_m = self._sel_match(obj, lsel_m, fsel_m)
                    if etype == "MODIFIED" and old is not None:
                        was_m = self._sel_match(old.obj, lsel_m, fsel_m)
                        if now_m and was_m:
                            emit("MODIFIED", rec)
                        elif now_m:
                            emit("ADDED", rec)
                        elif was_m:
                            emit("DELETED", rec)
                    elif now_m:
                        emit(etype, rec)
                now = time.monotonic()
                if now >= deadline or (drop_at is not None and now >= drop_at):
                    break
                if bookmarks and now - last_bookmark >= 10:
                    bookmark(max(pos, seen))
                    last_bookmark = now
                    pos = max(pos, seen)
                if self._client_gone():
                    self.close_connection = True
                    raise _Done()
                wait = min(deadline - now, 1.0)
                if drop_at is not None:
                    wait = min(wait, max(drop_at - now, 0.01))
                store.wait_for_change(seen, max(wait, 0.01))
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True
        raise _Done()

    def _client_gone(self) -> bool:
        """During a watch the client sends nothing: a readable socket means it closed."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(r)

    @staticmethod
    def _sel_match(obj, lsel_m, fsel_m):
        if lsel_m is not None and not lsel_m((obj.get("metadata") or {}).get("labels")):
            return False
        if fsel_m is not None and not fsel_m(obj):
            return False
        return True

    # -- SelfSubjectRulesReview --------------------------------------------------------------
    def _ssrr(self, obj):
        rules = self.server.authorizer.rules
        spec = obj.get("spec") or {}
        if rules is None:
            rrules = [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]
            nrules = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
        else:
            rrules = [{k: r[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if r.get(k)}
                      for r in rules if r.get("resources")]
            nrules = [{"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]}
                      for r in rules if r.get("nonResourceURLs")]
            # what every authenticated user may do (system:basic-user, system:discovery)
            rrules += [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}]
            nrules += [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz",
                                                            "/livez", "/openapi", "/openapi/*", "/readyz",
                                                            "/version", "/version/"]}]
        self._send_json(201, {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
                              "metadata": {"creationTimestamp": None}, "spec": spec,
                              "status": {"resourceRules": rrules, "nonResourceRules": nrules, "incomplete": False}})

    # -- SelfSubjectAccessReview -------------------------------------------------------------
    def _ssar(self, obj, user):
        srv: KubeSimServer = self.server
        spec = obj.get("spec") or {}
        ra = spec.get("resourceAttributes")
        nra = spec.get("nonResourceAttributes")
        if ra:
            allowed = srv.authorizer.allowed(ra.get("verb", ""), ra.get("group", ""), ra.get("resource", ""),
                                             ra.get("subresource", ""), ra.get("name", ""), ra.get("namespace", ""))
        elif nra:
            allowed = srv.authorizer.rules is None or any(
                (nra.get("path") in (r.get("nonResourceURLs") or []) or "*" in (r.get("nonResourceURLs") or []))
                and (nra.get("verb") in (r.get("verbs") or []) or "*" in (r.get("verbs") or []))
                for r in srv.authorizer.rules)
        else:
            raise ApiError.invalid(self.server.store.registry.get(SSAR), "",
                                   [("spec.resourceAttributes", "Invalid", None,
                                     "exactly one of nonResourceAttributes or resourceAttributes must be "
                                     "specified")])
        status = {"allowed": bool(allowed)}
        if allowed and srv.authorizer.rules is None:
            status["reason"] = ""
        elif allowed:
            status["reason"] = 'RBAC: allowed by ClusterRole "kubesim-restricted"'
        self._send_json(201, {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                              "metadata": {"creationTimestamp": None}, "spec": spec, "status": status})
