"""Controllers and kubelet of the simulated cluster (test harness).

:class:`ControllerManager` plays kube-controller-manager, the scheduler and the kubelets: Deployment,
ReplicaSet, StatefulSet, DaemonSet and Endpoints controllers, and a pod lifecycle (Pending -> Running ->
Ready after ``--pod-ready-seconds``; pods whose istio-proxy runs a ``--crash-proxy-version`` crash-loop;
containers whose image matches ``--missing-image`` stay in ImagePullBackOff, see kubesim.images).

It is event driven: a store listener turns every change into work keys (``("rs", ns, name)``...) in a
de-duplicating queue; a single worker thread drains it.  Delayed work (pod readiness, crash-loop
restarts, progress deadlines, create back-off) sits in a timer heap, so a cluster with 10k idle pods
costs nothing.  Pods are created through ``store.create`` so admission (sidecar injection) runs for
real; a rejected create becomes a ``ReplicaFailure``/``FailedCreate`` condition, a Warning event
carrying the API error, and a retry with back-off.

Garbage collection of dependents (ownerReferences) is done by the store on delete.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import random
import threading
import time
from collections import deque
from datetime import datetime, timezone

from . import images, istio
from .errors import ApiError

log = logging.getLogger("kubesim.controllers")

PODS = "pods"
NODES = "nodes"
SERVICES = "services"
ENDPOINTS = "endpoints"
EVENTS = "events"
NAMESPACES = "namespaces"
DEPLOY = "deployments.apps"
RS = "replicasets.apps"
STS = "statefulsets.apps"
DS = "daemonsets.apps"
CREV = "controllerrevisions.apps"

SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
REVISION_ANN = "deployment.kubernetes.io/revision"
DESIRED_ANN = "deployment.kubernetes.io/desired-replicas"
MAX_ANN = "deployment.kubernetes.io/max-replicas"
MANAGED_EP_ANN = "endpoints.kubernetes.io/last-change-trigger-time"


# ------------------------------------------------------------------------------------------ helpers

_iso_cache = (0, "")


def now_iso(t: float | None = None) -> str:
    global _iso_cache
    sec = int(time.time() if t is None else t)
    cached = _iso_cache
    if cached[0] != sec:
        cached = _iso_cache = (sec, datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return cached[1]


def parse_iso(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return datetime(int(s[0:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]), int(s[17:19]),
                        tzinfo=timezone.utc).timestamp()
    except (ValueError, IndexError):
        return None


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    return "".join(SAFE_ALPHABET[ord(ch) % len(SAFE_ALPHABET)] for ch in s)


def _drop_nulls(v):
    # a null field and an absent one are the same Go value (e.g. creationTimestamp: null from clients)
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return v


def _clone(obj):
    return json.loads(json.dumps(obj))


def template_hash(template: dict, collision_count: int = 0) -> str:
    """Pod-template hash: FNV-32a over the canonical template, rendered like rand.SafeEncodeString."""
    t = _drop_nulls(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop("pod-template-hash", None)
        labels.pop("controller-revision-hash", None)
    data = json.dumps(t, sort_keys=True, separators=(",", ":")).encode()
    h = fnv32a(data + (str(collision_count).encode() if collision_count else b""))
    return safe_encode(str(h))


def int_or_percent(value, total: int, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        pct = float(s[:-1])
        v = total * pct / 100.0
        return int(math.ceil(v)) if round_up else int(math.floor(v))
    return int(s)


def resolve_fenceposts(max_surge, max_unavailable, desired: int) -> tuple[int, int]:
    surge = int_or_percent(max_surge, desired, True)
    unavailable = int_or_percent(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def controller_ref(obj: dict) -> dict | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owned_by(obj: dict, owner: dict) -> bool:
    ref = controller_ref(obj)
    return bool(ref) and ref.get("uid") == owner["metadata"].get("uid")


def pod_condition(pod: dict, ctype: str) -> dict | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def pod_ready(pod: dict) -> bool:
    c = pod_condition(pod, "Ready")
    return bool(c) and c.get("status") == "True"


def pod_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    if not pod_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    t = parse_iso(pod_condition(pod, "Ready").get("lastTransitionTime"))
    return t is not None and t + min_ready_seconds <= now


def terminating(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def owner_reference(owner: dict, kind: str, api_version: str = "apps/v1") -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def set_condition(conds: list, ctype: str, status: str, reason: str, message: str, now: str,
                  update_time: bool = True) -> list:
    """Set a condition the way the controllers do: lastTransitionTime only moves on a status change."""
    conds = [dict(c) for c in conds or []]
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            if update_time or c.get("reason") != reason:
                if "lastUpdateTime" in c or ctype in ("Progressing", "Available"):
                    c["lastUpdateTime"] = now
            c.update(status=status, reason=reason, message=message)
            return conds
    c = {"type": ctype, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
    if ctype in ("Progressing", "Available"):
        c["lastUpdateTime"] = now
    conds.append(c)
    return conds


def get_condition(conds, ctype):
    for c in conds or []:
        if c.get("type") == ctype:
            return c
    return None


def remove_condition(conds, ctype):
    return [c for c in conds or [] if c.get("type") != ctype]


# --------------------------------------------------------------------------------------- the manager

class ControllerManager:
    """kube-controller-manager + scheduler + kubelets for the simulated cluster."""

    CREATE_BACKOFF_BASE = 0.5
    CREATE_BACKOFF_MAX = 5.0

    def __init__(self, store, options=None):
        self.store = store
        self.options = options
        self.pod_ready_seconds = float(getattr(options, "pod_ready_seconds", 1.0) or 0.0)
        self.crash_versions = set(getattr(options, "crash_proxy_versions", None) or [])
        missing = getattr(options, "missing_images", None)
        self.image_puller = images.ImagePuller(self, missing) if missing else None  # --missing-image
        seed = getattr(options, "seed", None)
        self.rng = random.Random(seed if seed is not None else time.time_ns())
        self._cv = threading.Condition()
        self._queue: deque = deque()
        self._queued: set = set()
        self._timers: list = []
        self._timer_seq = itertools.count()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._settling = False
        self._backoff: dict = {}
        self._ip_counter = itertools.count(10)
        self._node_rr = itertools.count()
        self._busy = False
        self._last_create_error: dict = {}
        self._deadline_at: dict = {}
        self._armed: set = set()
        self._hash_cache: dict = {}
        self._ep_pending: set = set()
        self.errors = 0
        self._extensions: list = []
        self._ext_by_kind: dict = {}
        # readiness probes of extra controllers: fn(pod) -> {container name: why it is not ready} (kubesim.ambient)
        self.readiness_checks: list = []

    def add_controller(self, ext):
        """Register an extra controller (kubesim.replication, kubesim.openshift...).  ``ext`` has ``kinds``
        (the work-key prefixes it syncs), ``attach(cm)``, ``keys_for(event_type, key, obj)`` -> work keys for a
        store event, ``initial_keys()`` and ``sync(key)``; it runs on this manager's worker thread."""
        ext.attach(self)
        self._extensions.append(ext)
        for kind in ext.kinds:
            self._ext_by_kind[kind] = ext
        return ext

    def push(self, key):
        """Queue work key ``key`` (for extra controllers)."""
        self._push(key)

    def after(self, delay: float, key):
        """Queue ``key`` after ``delay`` seconds (for extra controllers)."""
        self._after(delay, key)

    # ---------------------------------------------------------------- lifecycle
    def start(self, after_settle=None):
        """Start; ``after_settle()`` runs once the initial state has settled (istiod ready), and is settled too
        (scenario pods that need a serving injector)."""
        from . import batch, istiod_webhooks
        self.add_controller(batch.BatchControllers())
        self.store.add_admission(self._kubelet_admission)
        self.store.add_listener(self._on_event)
        istiod_webhooks.install(self.store).sync()
        self._enqueue_all()
        self.settle()
        if after_settle is not None:
            after_settle()
            self.settle()
        self._thread = threading.Thread(target=self._run, name="kubesim-controllers", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def settle(self, max_rounds: int = 20):
        """Process work synchronously until quiet.  Used at start: the scenario's pods are the
        pre-existing state of a running cluster, so they are Ready at once."""
        self._settling = True
        try:
            for _ in range(max_rounds):
                progressed = False
                while True:
                    with self._cv:
                        if not self._queue:
                            break
                        key = self._queue.popleft()
                        self._queued.discard(key)
                    self._process(key)
                    progressed = True
                # retries parked on create back-off timers: run them now (kubelet timers stay)
                with self._cv:
                    retry = [t for t in self._timers if (t[2][0] in ("rs", "sts", "ds") or t[2][0] in
                                                         self._ext_by_kind) and t[2] in self._backoff]
                    if retry:
                        self._timers = [t for t in self._timers if t not in retry]
                        heapq.heapify(self._timers)
                for _when, _seq, key in retry:
                    self._backoff.pop(key, None)
                    self._push(key)
                    progressed = True
                if not progressed:
                    break
        finally:
            self._settling = False

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """For tests: wait until the queue is empty and the worker is not busy."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self._cv:
                if not self._queue and not self._busy:
                    return True
            time.sleep(0.02)
        return False

    # ---------------------------------------------------------------- queue
    def _push(self, key):
        with self._cv:
            if key not in self._queued:
                self._queued.add(key)
                self._queue.append(key)
                self._cv.notify()

    def _after(self, delay: float, key):
        with self._cv:
            heapq.heappush(self._timers, (time.time() + max(0.0, delay), next(self._timer_seq), key))
            self._cv.notify()

    EP_BATCH_SECONDS = 0.1

    def _ep_soon(self, ns):
        """Endpoints follow pods in batches (like the endpoints controller's queue): one sync per namespace
        per batch period instead of one per pod event."""
        if self._settling:
            self._push(("ep", ns))
            return
        with self._cv:
            if ns in self._ep_pending:
                return
            self._ep_pending.add(ns)
        self._after(self.EP_BATCH_SECONDS, ("ep", ns))

    def _schedule_deadline(self, key, delay):
        when = time.time() + delay
        prev = self._deadline_at.get(key)
        if prev is not None and time.time() < prev <= when + 1.0:
            return
        self._deadline_at[key] = when
        self._after(delay, key)

    def _enqueue_all(self):
        for kind, rtype in (("deploy", DEPLOY), ("rs", RS), ("sts", STS), ("ds", DS)):
            for obj in self._ro_list(rtype):
                m = obj["metadata"]
                self._push((kind, m.get("namespace"), m["name"]))
        for pod in self._ro_list(PODS):
            m = pod["metadata"]
            self._push(("pod", m.get("namespace"), m["name"]))
        for ns in {s["metadata"].get("namespace") for s in self._ro_list(SERVICES)}:
            self._push(("ep", ns))
        for n in self._ro_list(NAMESPACES):
            self._push(("ns", n["metadata"]["name"]))
        for ext in self._extensions:
            for key in ext.initial_keys():
                self._push(key)

    def _on_event(self, event_type, rtype, obj):
        try:
            key = rtype if isinstance(rtype, str) else rtype.key
            meta = (obj or {}).get("metadata") or {}
            ns, name = meta.get("namespace"), meta.get("name")
            if key == PODS:
                if event_type != "DELETED":
                    if meta.get("uid") not in self._armed:
                        self._push(("pod", ns, name))
                else:
                    self._armed.discard(meta.get("uid"))
                ref = controller_ref(obj)
                if ref:
                    kind = {"ReplicaSet": "rs", "StatefulSet": "sts", "DaemonSet": "ds"}.get(ref.get("kind"))
                    if kind:
                        self._push((kind, ns, ref.get("name")))
                self._ep_soon(ns)
            elif key == RS:
                self._push(("rs", ns, name))
                ref = controller_ref(obj)
                if ref and ref.get("kind") == "Deployment":
                    self._push(("deploy", ns, ref.get("name")))
            elif key == DEPLOY:
                if event_type != "DELETED":
                    self._push(("deploy", ns, name))
            elif key == STS:
                if event_type != "DELETED":
                    self._push(("sts", ns, name))
            elif key == DS:
                if event_type != "DELETED":
                    self._push(("ds", ns, name))
            elif key == NODES:
                self._push(("all-ds",))
            elif key == SERVICES:
                self._push(("ep", ns))
            elif key == NAMESPACES and event_type == "ADDED":
                self._push(("ns", name))
            for ext in self._extensions:
                for work in ext.keys_for(event_type, key, obj):
                    self._push(work)
        except Exception:  # a listener must never break the store
            log.exception("controller listener failed")

    def _run(self):
        while True:
            with self._cv:
                while True:
                    if self._stop:
                        return
                    now = time.time()
                    while self._timers and self._timers[0][0] <= now:
                        _, _, key = heapq.heappop(self._timers)
                        if key not in self._queued:
                            self._queued.add(key)
                            self._queue.append(key)
                    if self._queue:
                        key = self._queue.popleft()
                        self._queued.discard(key)
                        self._busy = True
                        break
                    wait = (self._timers[0][0] - now) if self._timers else None
                    self._cv.wait(timeout=wait if wait is None else max(0.001, wait))
            try:
                self._process(key)
            except Exception:
                self.errors += 1
                log.exception("controller sync %r failed", key)
            finally:
                with self._cv:
                    self._busy = False

    def _process(self, key):
        kind = key[0]
        try:
            if kind == "deploy":
                self.sync_deployment(key[1], key[2])
            elif kind == "rs":
                self.sync_replicaset(key[1], key[2])
            elif kind == "sts":
                self.sync_statefulset(key[1], key[2])
            elif kind == "ds":
                self.sync_daemonset(key[1], key[2])
            elif kind == "all-ds":
                for ds in self._ro_list(DS):
                    self._push(("ds", ds["metadata"]["namespace"], ds["metadata"]["name"]))
            elif kind == "pod":
                self.sync_pod(key[1], key[2])
            elif kind == "pod-tick":
                self.pod_tick(key[1], key[2], key[3])
            elif kind == "ep":
                with self._cv:
                    self._ep_pending.discard(key[1])
                self.sync_endpoints(key[1])
            elif kind == "ns":
                self.sync_namespace(key[1])
            elif kind in self._ext_by_kind:
                self._ext_by_kind[kind].sync(key)
        except ApiError as e:
            if e.code in (404, 409):
                # stale read or a concurrent writer: try again shortly
                if e.code == 409:
                    self._after(0.05, key)
                return
            if e.code == 403 and "being terminated" in e.message:
                return  # the namespace is going away; its finalizer removes what is left
            raise

    # ---------------------------------------------------------------- store access
    def _get(self, rtype, ns, name):
        try:
            return self.store.get(rtype, ns, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def _list(self, rtype, ns=None):
        return self.store.list(rtype, ns)

    # Read-only views of stored objects (no copy): never mutate what these return.
    def _ro_list(self, rtype, ns=None) -> list:
        recs, _ = self.store.list_recs(rtype, ns)
        return [r.obj for r in recs]

    def _ro_get(self, rtype, ns, name):
        try:
            return self.store.get_rec(rtype, ns, name).obj
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    def _update(self, rtype, obj):
        return self.store.update(rtype, obj)

    def _update_status(self, rtype, obj):
        return self.store.update_status(rtype, obj)

    def _delete(self, rtype, ns, name):
        try:
            self.store.delete(rtype, name, ns)
        except ApiError as e:
            if e.code != 404:
                raise

    def _event(self, obj: dict, etype: str, reason: str, message: str, component: str):
        meta = obj["metadata"]
        ns = meta.get("namespace") or "default"
        now = now_iso()
        kind = obj.get("kind") or ""
        ev = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{self.rng.getrandbits(64):016x}", "namespace": ns},
            "involvedObject": {"kind": kind, "namespace": meta.get("namespace"), "name": meta["name"],
                               "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": etype,
            "source": {"component": component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "reportingComponent": component, "reportingInstance": "",
        }
        try:
            self.store.create(EVENTS, ev)
        except ApiError as e:
            log.debug("event not recorded: %s", e)

    # ---------------------------------------------------------------- pods: scheduler + kubelet
    def _nodes(self) -> list:
        return [n for n in self._ro_list(NODES) if not (n.get("spec") or {}).get("unschedulable")]

    def _pick_node(self) -> str | None:
        nodes = sorted(n["metadata"]["name"] for n in self._nodes())
        if not nodes:
            return None
        return nodes[next(self._node_rr) % len(nodes)]

    def _host_ip(self, node_name: str | None) -> str:
        if not node_name:
            return ""
        node = self._ro_get(NODES, None, node_name)
        for a in ((node or {}).get("status") or {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                return a.get("address", "")
        return "172.18.0.2"

    def _new_pod_ip(self) -> str:
        n = next(self._ip_counter)
        return f"10.244.{(n // 250) % 250}.{n % 250 + 2}"

    def _container_statuses(self, pod, state: str, crash: dict | None = None) -> tuple[list, list]:
        """Kubelet container statuses.  Restartable init containers (native sidecars, restartPolicy Always)
        keep running beside the app; one that crash-loops never passes its startup probe, so the kubelet never
        starts the app containers (they wait in PodInitializing)."""
        spec = pod.get("spec") or {}
        started = now_iso()
        init, main = [], []
        sidecar_crashing = False
        for c in spec.get("initContainers") or []:
            st = {"name": c["name"], "image": c.get("image", ""), "imageID": _image_id(c.get("image", "")),
                  "ready": state != "creating", "restartCount": 0, "started": False}
            if state == "creating":
                st["state"] = {"waiting": {"reason": "PodInitializing"}}
            elif c.get("restartPolicy") == "Always" and crash and c["name"] in crash:
                sidecar_crashing = True
                st.update(ready=False, started=False, **self._crash_loop(pod, c, crash[c["name"]], started))
            elif c.get("restartPolicy") == "Always":
                st.update(ready=True, started=True, containerID=_container_id(pod, c),
                          state={"running": {"startedAt": started}})
            else:
                st["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                              "finishedAt": started, "containerID": _container_id(pod, c)}}
                st["containerID"] = _container_id(pod, c)
            init.append(st)
        for c in spec.get("containers") or []:
            st = {"name": c["name"], "image": c.get("image", ""), "imageID": _image_id(c.get("image", "")),
                  "restartCount": 0}
            if state == "creating" or sidecar_crashing:
                st.update(ready=False, started=False,
                          state={"waiting": {"reason": "PodInitializing" if spec.get("initContainers")
                                             else "ContainerCreating"}})
            elif crash and c["name"] in crash:
                st.update(ready=False, started=False, **self._crash_loop(pod, c, crash[c["name"]], started))
            else:
                st.update(ready=True, started=True, containerID=_container_id(pod, c),
                          state={"running": {"startedAt": started}})
            main.append(st)
        return init, main

    @staticmethod
    def _crash_loop(pod, c, n, started) -> dict:
        return {"restartCount": n,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": f"back-off {min(10 * 2 ** max(n - 1, 0), 300)}s restarting "
                                                 f"failed container={c['name']} pod={pod['metadata']['name']}"
                                                 f"_{pod['metadata'].get('namespace')}"
                                                 f"({pod['metadata'].get('uid') or ''})"}},
                "lastState": {"terminated": {"exitCode": 255, "reason": "Error", "startedAt": started,
                                             "finishedAt": started, "containerID": _container_id(pod, c)}}}

    def _crashing_containers(self, pod) -> list:
        """istio-proxy containers -- classic or native sidecar -- running a --crash-proxy-version."""
        if not self.crash_versions:
            return []
        spec = pod.get("spec") or {}
        out = []
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            if c.get("name") == "istio-proxy" and istio.image_version(c.get("image", "")) in self.crash_versions:
                out.append(c["name"])
        return out

    def _pending_status(self, pod: dict) -> dict:
        """Scheduled, IP assigned, containers being created (what the kubelet reports first)."""
        spec = pod.get("spec") or {}
        now = now_iso()
        _init, main = self._container_statuses(pod, "creating")
        init = _init
        unready = " ".join(c["name"] for c in spec.get("containers") or [])
        conds = []
        if spec.get("initContainers"):
            conds.append({"type": "Initialized", "status": "False", "lastProbeTime": None, "lastTransitionTime": now,
                          "reason": "ContainersNotInitialized",
                          "message": "containers with incomplete status: "
                                     f"[{' '.join(c['name'] for c in spec.get('initContainers') or [])}]"})
        else:
            conds.append({"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": now})
        conds += [
            {"type": "Ready", "status": "False", "lastProbeTime": None, "lastTransitionTime": now,
             "reason": "ContainersNotReady", "message": f"containers with unready status: [{unready}]"},
            {"type": "ContainersReady", "status": "False", "lastProbeTime": None, "lastTransitionTime": now,
             "reason": "ContainersNotReady", "message": f"containers with unready status: [{unready}]"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now},
        ]
        host_ip = self._host_ip(spec.get("nodeName"))
        pod_ip = self._new_pod_ip()
        st = {"phase": "Pending", "conditions": conds, "hostIP": host_ip,
              "hostIPs": [{"ip": host_ip}] if host_ip else [], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
              "qosClass": (pod.get("status") or {}).get("qosClass") or "BestEffort", "startTime": now,
              "containerStatuses": main}
        if init:
            st["initContainerStatuses"] = init
        return st

    def _running_status(self, pod: dict, status: dict) -> tuple[dict, list]:
        """Containers started: Running and Ready -- or, for a crash version, a crash loop one restart on."""
        crashing = self._crashing_containers(pod)
        now = now_iso()
        st = dict(status or {})
        spec = pod.get("spec") or {}
        native = [c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
        sidecar_crash = [c for c in crashing if c in native]
        if crashing:
            prev = {c["name"]: c.get("restartCount", 0)
                    for c in (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])}
            counts = {c: prev.get(c, 0) + 1 for c in crashing}
            init, main = self._container_statuses(pod, "running", counts)
            ready_status, reason = "False", "ContainersNotReady"
            # kubelet lists unready restartable init containers first, then the app containers
            unready = sidecar_crash + ([c["name"] for c in spec.get("containers") or []] if sidecar_crash
                                       else crashing)
            msg = f"containers with unready status: [{' '.join(unready)}]"
        else:
            init, main = self._container_statuses(pod, "running")
            ready_status, reason, msg = "True", None, None
            failing = {}
            for check in self.readiness_checks:
                failing.update(check(pod) or {})
            if failing:  # a readiness probe fails: the container runs, the pod is not Ready
                for c in main:
                    if c["name"] in failing:
                        c["ready"] = False
                ready_status, reason = "False", "ContainersNotReady"
                msg = f"containers with unready status: [{' '.join(c['name'] for c in main if not c['ready'])}]"
        conds = st.get("conditions") or []
        if sidecar_crash:
            conds = set_condition(conds, "Initialized", "False", "ContainersNotInitialized",
                                  f"containers with incomplete status: [{' '.join(sidecar_crash)}]", now,
                                  update_time=False)
        else:
            conds = set_condition(conds, "Initialized", "True", None, None, now, update_time=False)
        conds = set_condition(conds, "ContainersReady", ready_status, reason, msg, now, update_time=False)
        conds = set_condition(conds, "Ready", ready_status, reason, msg, now, update_time=False)
        for c in conds:
            c.setdefault("lastProbeTime", None)
            c.pop("lastUpdateTime", None)
            if c.get("reason") is None:
                c.pop("reason", None)
            if c.get("message") is None:
                c.pop("message", None)
        # a native sidecar that never starts keeps the pod initializing: Pending, as the kubelet reports it
        st.update(phase="Pending" if sidecar_crash else "Running", conditions=conds, containerStatuses=main)
        if init:
            st["initContainerStatuses"] = init
        return st, crashing

    def _kubelet_admission(self, operation, rtype, obj, old, dry_run, user):
        """Scheduler + kubelet's first status, applied as the pod is created (after the webhooks, so the
        injected containers are known).  Pods created while the scenario settles are already Running."""
        if operation != "CREATE" or rtype != PODS or dry_run or obj is None:
            return None
        st = obj.get("status") or {}
        if st.get("podIP"):
            return None
        spec = obj.setdefault("spec", {})
        if not spec.get("nodeName"):
            node = self._pick_node()
            if node is None:
                return None
            spec["nodeName"] = node
        st = self._pending_status(obj)
        if self._settling:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                # a scenario's pod is long running: it has its generated name already (its status says so)
                for _ in range(100):
                    meta["name"] = meta["generateName"] + self._random_suffix()
                    if self.store.try_get(PODS, meta.get("namespace"), meta["name"]) is None:
                        break
            st, _ = self._running_status(obj, st)
        obj["status"] = st
        return obj

    def sync_pod(self, ns, name):
        """Kubelet: arm the readiness (or crash-loop) timer of a new pod; schedule pods created without
        going through admission."""
        pod = self._ro_get(PODS, ns, name)
        if pod is None or terminating(pod):
            return
        uid = pod["metadata"].get("uid")
        if uid in self._armed:
            return
        status = pod.get("status") or {}
        if not status.get("podIP"):
            pod = _clone(pod)
            spec = pod.setdefault("spec", {})
            if not spec.get("nodeName"):
                node = self._pick_node()
                if node is None:
                    st = dict(status)
                    st["phase"] = "Pending"
                    st["conditions"] = set_condition(st.get("conditions"), "PodScheduled", "False",
                                                     "Unschedulable", "0/0 nodes are available: no nodes "
                                                     "available to schedule pods.", now_iso())
                    if st != status:
                        pod["status"] = st
                        self._update_status(PODS, pod)
                    return
                spec["nodeName"] = node
                pod = self._update(PODS, pod)
            pod["status"] = self._pending_status(pod)
            pod = self._update_status(PODS, pod)
            status = pod["status"]
        self._armed.add(uid)
        if status.get("phase") == "Pending":
            if self._settling or self.pod_ready_seconds <= 0:
                self.pod_tick(ns, name, uid)
            else:
                self._after(self.pod_ready_seconds, ("pod-tick", ns, name, uid))
        elif self._crashing_containers(pod):
            self._after(self._crash_delay(pod), ("pod-tick", ns, name, uid))

    def _crash_delay(self, pod) -> float:
        st = pod.get("status") or {}
        n = max([c.get("restartCount", 0) for c in (st.get("containerStatuses") or [])
                 + (st.get("initContainerStatuses") or [])] + [1])
        base = max(self.pod_ready_seconds, 1.0)
        return min(base * 2 ** (n - 1), 30 * base)

    def pod_tick(self, ns, name, uid):
        pod = self._get(PODS, ns, name)
        if pod is None or terminating(pod) or pod["metadata"].get("uid") != uid:
            self._armed.discard(uid)
            if self.image_puller:
                self.image_puller.forget(uid)
            return
        st, crashing = self._running_status(pod, pod.get("status") or {})
        pulling = self.image_puller.apply(pod, st) if self.image_puller else None
        pod["status"] = st
        pod = self._update_status(PODS, pod)
        if pulling is not None:  # an image the registry does not have: the kubelet tries again later
            self._after(pulling, ("pod-tick", ns, name, uid))
        elif crashing:
            self._after(self._crash_delay(pod), ("pod-tick", ns, name, uid))

    # ---------------------------------------------------------------- ReplicaSet
    def _owned_pods(self, owner: dict) -> list:
        ns = owner["metadata"].get("namespace")
        return [p for p in self._ro_list(PODS, ns) if owned_by(p, owner)]

    def _pod_from_template(self, owner: dict, kind: str, name: str, template: dict,
                           extra_labels: dict | None = None, node: str | None = None) -> dict:
        tmeta = template.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels.update(extra_labels or {})
        meta = {"name": name, "namespace": owner["metadata"]["namespace"], "labels": labels,
                "ownerReferences": [owner_reference(owner, kind, owner.get("apiVersion") or "apps/v1")]}
        if kind in ("ReplicaSet", "DaemonSet", "ReplicationController"):
            # the name is generated by the API server, after admission (controller_utils.go GetPodFromTemplate):
            # a refusal names the pod by its generateName ('pods "web-7d4b9c8f6d-" is forbidden: ...')
            meta["generateName"] = name[:-5]
            del meta["name"]
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        spec = _clone(template.get("spec") or {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        for c in spec.get("containers") or []:
            c.setdefault("imagePullPolicy", "Always" if str(c.get("image", "")).endswith(":latest")
                         else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
        chosen = node or self._pick_node()
        if chosen:
            spec["nodeName"] = chosen
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    def _generate_name(self, owner_name: str) -> str:
        """generateName semantics: base ``<owner>-`` cut to 58 characters, then 5 random ones."""
        return f"{owner_name}-"[:58] + self._random_suffix()

    def _random_suffix(self, n=5) -> str:
        return "".join(self.rng.choice(SAFE_ALPHABET) for _ in range(n))

    def _create_pod(self, owner: dict, kind: str, pod: dict, key) -> bool:
        """Create through the API (admission runs).  On rejection: event, condition, back-off."""
        try:
            pod["metadata"]["name"] = self.store.create(PODS, pod)["metadata"]["name"]
        except ApiError as e:
            if e.code == 409 and e.reason == "AlreadyExists":
                return True
            fails = self._backoff.get(key, 0) + 1
            self._backoff[key] = fails
            delay = min(self.CREATE_BACKOFF_BASE * 2 ** (fails - 1), self.CREATE_BACKOFF_MAX)
            if self._settling and fails <= 3:
                self._after(0, key)
                return False
            self._event(owner, "Warning", "FailedCreate", f"Error creating: {e.message}",
                        {"ReplicaSet": "replicaset-controller", "StatefulSet": "statefulset-controller",
                         "DaemonSet": "daemonset-controller", "Job": "job-controller",
                         "ReplicationController": "replication-controller"}.get(kind, "controller-manager"))
            self._last_create_error[key] = e.message
            self._after(delay, key)
            return False
        self._backoff.pop(key, None)
        self._last_create_error.pop(key, None)
        return True

    def sync_replicaset(self, ns, name):
        rs = self._ro_get(RS, ns, name)
        if rs is None or terminating(rs):
            self._backoff.pop(("rs", ns, name), None)
            return
        key = ("rs", ns, name)
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        pods = [p for p in self._owned_pods(rs) if not terminating(p)
                and (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")]
        diff = len(pods) - want
        failed_msg = None
        if diff < 0:
            if key in self._backoff and not self._settling and self._backoff_pending(key):
                failed_msg = self._last_create_error.get(key)
            else:
                for _ in range(-diff):
                    pod = self._pod_from_template(rs, "ReplicaSet", self._generate_name(name),
                                                  spec.get("template") or {})
                    if not self._create_pod(rs, "ReplicaSet", pod, key):
                        failed_msg = self._last_create_error.get(key)
                        break
        elif diff > 0:
            for p in self._pods_to_delete(pods, diff):
                self._delete(PODS, ns, p["metadata"]["name"])
        pods = [p for p in self._owned_pods(rs) if not terminating(p)]
        self._update_rs_status(rs, pods, failed_msg)

    def _backoff_pending(self, key) -> bool:
        with self._cv:
            return any(k == key for _, _, k in self._timers)

    @staticmethod
    def _pods_to_delete(pods: list, n: int) -> list:
        def rank(p):
            st = p.get("status") or {}
            unassigned = not (p.get("spec") or {}).get("nodeName")
            phase = {"Pending": 0, "Unknown": 1, "Running": 2}.get(st.get("phase"), 0)
            ready = pod_ready(p)
            restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
            created = p["metadata"].get("creationTimestamp") or ""
            # not assigned < assigned; pending < running; not ready < ready; more restarts first; newer first
            return (0 if unassigned else 1, phase, 1 if ready else 0, -restarts, _neg_str(created))
        return sorted(pods, key=rank)[:n]

    def _update_rs_status(self, rs: dict, pods: list, failed_msg: str | None, rtype: str = RS):
        now = time.time()
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds") or 0)
        tlabels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        ready = sum(1 for p in pods if pod_ready(p))
        available = sum(1 for p in pods if pod_available(p, min_ready, now))
        if min_ready and ready > available:
            self._after(min_ready / 2 + 0.05, ("rs", rs["metadata"]["namespace"], rs["metadata"]["name"]))
        old = rs.get("status") or {}
        st = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(1 for p in pods if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in tlabels.items())),
            "readyReplicas": ready,
            "availableReplicas": available,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        conds = old.get("conditions") or []
        if failed_msg:
            conds = set_condition(conds, "ReplicaFailure", "True", "FailedCreate", failed_msg, now_iso(),
                                  update_time=False)
            for c in conds:
                c.pop("lastUpdateTime", None)
        elif get_condition(conds, "ReplicaFailure") and len(pods) >= int((rs.get("spec") or {}).get("replicas", 1)):
            conds = remove_condition(conds, "ReplicaFailure")
        if conds:
            st["conditions"] = conds
        # the real controller omits zero counts
        st = {k: v for k, v in st.items() if v or k in ("replicas", "observedGeneration")}
        if st != old:
            rs = dict(rs)
            rs["status"] = st
            self._update_status(rtype, rs)

    # ---------------------------------------------------------------- Deployment
    def sync_deployment(self, ns, name):
        d = self._ro_get(DEPLOY, ns, name)
        if d is None or terminating(d):
            return
        spec = d.get("spec") or {}
        replicas = int(spec["replicas"]) if spec.get("replicas") is not None else 1
        template = spec.get("template") or {}
        collision = int((d.get("status") or {}).get("collisionCount") or 0)
        hkey = (d["metadata"].get("uid"), d["metadata"].get("generation"), collision)
        thash = self._hash_cache.get(hkey)
        if thash is None:
            thash = self._hash_cache[hkey] = template_hash(template, collision)
        all_rs = [r for r in self._ro_list(RS, ns) if owned_by(r, d) and not terminating(r)]
        new_rs = next((r for r in all_rs if (r["metadata"].get("labels") or {}).get("pod-template-hash") == thash),
                      None)
        old_rs = [r for r in all_rs if r is not new_rs]
        old_rs.sort(key=lambda r: (r["metadata"].get("creationTimestamp") or "", r["metadata"]["name"]))
        strategy = spec.get("strategy") or {}
        stype = strategy.get("type") or "RollingUpdate"
        ru = strategy.get("rollingUpdate") or {}
        surge, unavail = (resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), replicas)
                          if stype == "RollingUpdate" else (0, 0))
        paused = bool(spec.get("paused"))
        progress_msgs = []
        max_rev = max([_rev(r) for r in old_rs] or [0])

        if paused:
            # only scaling happens while paused: keep the current (newest active) RS at the desired size
            active = new_rs or (max(old_rs, key=_rev) if old_rs else None)
            if active is not None and not [r for r in all_rs if r is not active and _spec_replicas(r) > 0]:
                if _spec_replicas(active) != replicas:
                    self._scale_rs(d, active, replicas)
        else:
            if new_rs is None:
                new_rs = self._create_new_rs(d, template, thash, max_rev + 1,
                                             replicas if stype == "RollingUpdate" and not old_rs else 0,
                                             replicas, surge)
                if new_rs is None:
                    return
                progress_msgs.append(("NewReplicaSetCreated", f'Created new replica set "{new_rs["metadata"]["name"]}"'))
                all_rs.append(new_rs)
            elif _rev(new_rs) <= max_rev:
                new_rs = _clone(new_rs)
                ann = new_rs["metadata"].setdefault("annotations", {})
                ann[REVISION_ANN] = str(max_rev + 1)
                new_rs = self._update(RS, new_rs)
                all_rs = [r for r in all_rs if r["metadata"]["name"] != new_rs["metadata"]["name"]] + [new_rs]
            if stype == "Recreate":
                if any(_spec_replicas(r) for r in old_rs):
                    for r in old_rs:
                        if _spec_replicas(r):
                            self._scale_rs(d, r, 0)
                elif not any((r.get("status") or {}).get("replicas") for r in old_rs):
                    if _spec_replicas(new_rs) != replicas:
                        new_rs = self._scale_rs(d, new_rs, replicas)
            else:
                new_rs = self._reconcile_new(d, new_rs, old_rs, replicas, surge)
                old_rs = self._reconcile_old(d, new_rs, old_rs, replicas, unavail)
            self._cleanup_history(d, old_rs)
            # the Deployment carries its current revision too (kubectl rollout history reads it)
            ann = d["metadata"].get("annotations") or {}
            want = str(_rev(new_rs))
            if ann.get(REVISION_ANN) != want:
                d = _clone(d)
                d["metadata"].setdefault("annotations", {})[REVISION_ANN] = want
                d = self._update(DEPLOY, d)
        all_rs = [r for r in self._ro_list(RS, ns) if owned_by(r, d) and not terminating(r)]
        new_rs = next((r for r in all_rs if (r["metadata"].get("labels") or {}).get("pod-template-hash") == thash),
                      None)
        self._update_deployment_status(d, all_rs, new_rs, replicas, unavail, paused, progress_msgs)

    def _create_new_rs(self, d, template, thash, revision, initial, replicas, surge):
        ns = d["metadata"]["namespace"]
        tmpl = _clone(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = thash
        sel = _clone((d.get("spec") or {}).get("selector") or {})
        sel.setdefault("matchLabels", {})["pod-template-hash"] = thash
        ann = {k: v for k, v in ((d["metadata"].get("annotations") or {}).items())
               if k not in ("kubectl.kubernetes.io/last-applied-configuration", REVISION_ANN,
                            "deployment.kubernetes.io/revision-history")}
        ann.update({REVISION_ANN: str(revision), DESIRED_ANN: str(replicas), MAX_ANN: str(replicas + surge)})
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        labels["pod-template-hash"] = thash
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{d['metadata']['name']}-{thash}", "namespace": ns, "labels": labels,
                         "annotations": ann, "ownerReferences": [owner_reference(d, "Deployment")]},
            "spec": {"replicas": initial, "minReadySeconds": int((d.get("spec") or {}).get("minReadySeconds") or 0),
                     "selector": sel, "template": tmpl},
        }
        try:
            created = self.store.create(RS, rs)
        except ApiError as e:
            if e.code == 409:
                existing = self._get(RS, ns, rs["metadata"]["name"])
                if existing is not None and owned_by(existing, d):
                    return existing
                # hash collision with a foreign RS: bump collisionCount like the real controller
                st = dict(d.get("status") or {})
                st["collisionCount"] = int(st.get("collisionCount") or 0) + 1
                d = dict(d)
                d["status"] = st
                self._update_status(DEPLOY, d)
                return None
            raise
        if initial:
            self._event(d, "Normal", "ScalingReplicaSet",
                        f"Scaled up replica set {created['metadata']['name']} to {initial}", "deployment-controller")
        return created

    def _scale_rs(self, d, rs, count):
        old = _spec_replicas(rs)
        if old == count:
            return rs
        rs = _clone(rs)
        replicas = int((d.get("spec") or {}).get("replicas", 1) if (d.get("spec") or {}).get("replicas") is not None else 1)
        ru = ((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        surge, _ = resolve_fenceposts(ru.get("maxSurge", "25%"), ru.get("maxUnavailable", "25%"), replicas)
        rs["spec"]["replicas"] = count
        ann = rs["metadata"].setdefault("annotations", {})
        ann[DESIRED_ANN] = str(replicas)
        ann[MAX_ANN] = str(replicas + surge)
        rs = self._update(RS, rs)
        verb = "up" if count > old else "down"
        self._event(d, "Normal", "ScalingReplicaSet",
                    f"Scaled {verb} replica set {rs['metadata']['name']} to {count} from {old}",
                    "deployment-controller")
        return rs

    def _reconcile_new(self, d, new_rs, old_rs, replicas, surge):
        cur = _spec_replicas(new_rs)
        if cur == replicas:
            return new_rs
        if cur > replicas:
            return self._scale_rs(d, new_rs, replicas)
        total = cur + sum(_spec_replicas(r) for r in old_rs)
        max_total = replicas + surge
        if total >= max_total:
            return new_rs
        up = min(max_total - total, replicas - cur)
        return self._scale_rs(d, new_rs, cur + up)

    def _reconcile_old(self, d, new_rs, old_rs, replicas, unavail):
        if not sum(_spec_replicas(r) for r in old_rs):
            return old_rs
        all_rs = old_rs + [new_rs]
        all_pods = sum(_spec_replicas(r) for r in all_rs)
        min_available = replicas - unavail
        new_unavailable = _spec_replicas(new_rs) - int((new_rs.get("status") or {}).get("availableReplicas") or 0)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return old_rs
        # first, old replicas that are not available anyway
        out = []
        cleaned = 0
        for r in old_rs:
            if cleaned >= max_scaled_down:
                out.append(r)
                continue
            spec_n = _spec_replicas(r)
            avail = int((r.get("status") or {}).get("availableReplicas") or 0)
            if spec_n == avail or spec_n == 0:
                out.append(r)
                continue
            down = min(max_scaled_down - cleaned, spec_n - avail)
            r = self._scale_rs(d, r, spec_n - down)
            cleaned += down
            out.append(r)
        old_rs = out
        max_scaled_down -= cleaned
        available = sum(int((r.get("status") or {}).get("availableReplicas") or 0) for r in old_rs + [new_rs])
        if available <= min_available:
            return old_rs
        total_down = min(available - min_available, max_scaled_down if max_scaled_down > 0 else 0)
        out = []
        for r in old_rs:
            n = _spec_replicas(r)
            if total_down <= 0 or n == 0:
                out.append(r)
                continue
            down = min(n, total_down)
            out.append(self._scale_rs(d, r, n - down))
            total_down -= down
        return out

    def _cleanup_history(self, d, old_rs):
        limit = (d.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        idle = [r for r in old_rs if _spec_replicas(r) == 0 and not (r.get("status") or {}).get("replicas")]
        idle.sort(key=_rev)
        for r in idle[: max(0, len(idle) - limit)]:
            self._delete(RS, r["metadata"]["namespace"], r["metadata"]["name"])

    def _update_deployment_status(self, d, all_rs, new_rs, replicas, unavail, paused, progress_msgs):
        old = d.get("status") or {}
        st_replicas = sum(int((r.get("status") or {}).get("replicas") or 0) for r in all_rs)
        spec_total = sum(_spec_replicas(r) for r in all_rs)
        updated = int((new_rs.get("status") or {}).get("replicas") or 0) if new_rs else 0
        ready = sum(int((r.get("status") or {}).get("readyReplicas") or 0) for r in all_rs)
        available = sum(int((r.get("status") or {}).get("availableReplicas") or 0) for r in all_rs)
        st = {
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": st_replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(spec_total - available, 0),
        }
        if old.get("collisionCount"):
            st["collisionCount"] = old["collisionCount"]
        now = now_iso()
        conds = old.get("conditions") or []
        if available >= replicas - unavail:
            conds = set_condition(conds, "Available", "True", "MinimumReplicasAvailable",
                                  "Deployment has minimum availability.", now, update_time=False)
        else:
            conds = set_condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                                  "Deployment does not have minimum availability.", now, update_time=False)
        deadline = (d.get("spec") or {}).get("progressDeadlineSeconds")
        deadline = 600 if deadline is None else int(deadline)
        prog = get_condition(conds, "Progressing")
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        if paused:
            if not prog or prog.get("reason") != "DeploymentPaused":
                conds = set_condition(conds, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now)
        else:
            if prog and prog.get("reason") == "DeploymentPaused":
                conds = set_condition(conds, "Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed",
                                      now)
            complete = (updated == replicas and st_replicas == replicas and available == replicas)
            progressing = (updated > int(old.get("updatedReplicas") or 0)
                           or ready > int(old.get("readyReplicas") or 0)
                           or available > int(old.get("availableReplicas") or 0)
                           or st_replicas - updated < int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0))
            prog = get_condition(conds, "Progressing")
            if progress_msgs:
                reason, msg = progress_msgs[-1]
                conds = set_condition(conds, "Progressing", "True", reason, msg, now)
            elif complete:
                if not prog or prog.get("reason") != "NewReplicaSetAvailable":
                    conds = set_condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                                          f'ReplicaSet "{rs_name}" has successfully progressed.', now)
            elif progressing or not prog or prog.get("reason") in ("DeploymentResumed", "NewReplicaSetAvailable"):
                if not prog or prog.get("reason") == "NewReplicaSetAvailable" or progressing or \
                        prog.get("reason") == "DeploymentResumed":
                    conds = set_condition(conds, "Progressing", "True", "ReplicaSetUpdated",
                                          f'ReplicaSet "{rs_name}" is progressing.', now)
            prog = get_condition(conds, "Progressing")
            if not complete and prog and prog.get("reason") not in ("ProgressDeadlineExceeded",
                                                                    "NewReplicaSetAvailable"):
                last = parse_iso(prog.get("lastUpdateTime")) or time.time()
                remaining = last + deadline - time.time()
                if remaining <= 0:
                    conds = set_condition(conds, "Progressing", "False", "ProgressDeadlineExceeded",
                                          f'ReplicaSet "{rs_name}" has timed out progressing.', now)
                else:
                    self._schedule_deadline(("deploy", d["metadata"]["namespace"], d["metadata"]["name"]),
                                            remaining + 0.2)
        # keep the real order: Available first, then Progressing
        conds.sort(key=lambda c: {"Available": 0, "Progressing": 1, "ReplicaFailure": 2}.get(c.get("type"), 3))
        # surface the ReplicaSet's create failure on the Deployment like the real controller
        failing = next((get_condition((r.get("status") or {}).get("conditions"), "ReplicaFailure")
                        for r in all_rs if get_condition((r.get("status") or {}).get("conditions"),
                                                         "ReplicaFailure")), None)
        if failing:
            conds = set_condition(conds, "ReplicaFailure", "True", failing.get("reason", "FailedCreate"),
                                  failing.get("message", ""), now, update_time=False)
        else:
            conds = remove_condition(conds, "ReplicaFailure")
        st["conditions"] = conds
        # DeploymentStatus has only omitempty fields: zero counts are absent (k8s.io/api apps/v1 types.go)
        st = {k: v for k, v in st.items() if v or k == "conditions"}
        if st != old:
            d = dict(d)
            d["status"] = st
            self._update_status(DEPLOY, d)

    # ---------------------------------------------------------------- ControllerRevisions
    def _revisions(self, owner):
        ns = owner["metadata"]["namespace"]
        return [r for r in self._ro_list(CREV, ns) if owned_by(r, owner)]

    def _ensure_revision(self, owner, kind, name, template, revs) -> tuple[dict, list]:
        existing = next((r for r in revs if r["metadata"]["name"] == name), None)
        top = max([int(r.get("revision") or 0) for r in revs] or [0])
        if existing is not None:
            if int(existing.get("revision") or 0) < top:
                existing = _clone(existing)
                existing["revision"] = top + 1
                existing = self._update(CREV, existing)
            return existing, revs
        hashpart = name.rsplit("-", 1)[-1]
        cr = {
            "apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name, "namespace": owner["metadata"]["namespace"],
                         "labels": {**((template.get("metadata") or {}).get("labels") or {}),
                                    "controller-revision-hash": hashpart},
                         "ownerReferences": [owner_reference(owner, kind)]},
            "data": {"spec": {"template": {**_clone(template), "$patch": "replace"}}},
            "revision": top + 1,
        }
        try:
            created = self.store.create(CREV, cr)
        except ApiError as e:
            if e.code != 409:
                raise
            created = self._get(CREV, owner["metadata"]["namespace"], name)
        return created, revs + [created]

    def _trim_revisions(self, owner, revs, live_names):
        limit = (owner.get("spec") or {}).get("revisionHistoryLimit")
        limit = 10 if limit is None else int(limit)
        dead = sorted((r for r in revs if r["metadata"]["name"] not in live_names),
                      key=lambda r: int(r.get("revision") or 0))
        for r in dead[: max(0, len(dead) - limit)]:
            self._delete(CREV, r["metadata"]["namespace"], r["metadata"]["name"])

    # ---------------------------------------------------------------- StatefulSet
    def sync_statefulset(self, ns, name):
        sts = self._ro_get(STS, ns, name)
        if sts is None or terminating(sts):
            return
        key = ("sts", ns, name)
        spec = sts.get("spec") or {}
        replicas = int(spec["replicas"]) if spec.get("replicas") is not None else 1
        template = spec.get("template") or {}
        collision = int((sts.get("status") or {}).get("collisionCount") or 0)
        update_name = f"{name}-{template_hash(template, collision)}"
        revs = self._revisions(sts)
        update_rev, revs = self._ensure_revision(sts, "StatefulSet", update_name, template, revs)
        status = sts.get("status") or {}
        current_name = status.get("currentRevision") or update_name
        if not any(r["metadata"]["name"] == current_name for r in revs):
            current_name = update_name
        current_rev = next(r for r in revs if r["metadata"]["name"] == current_name)
        strategy = spec.get("updateStrategy") or {}
        stype = strategy.get("type") or "RollingUpdate"
        partition = int(((strategy.get("rollingUpdate") or {}).get("partition")) or 0)
        parallel = (spec.get("podManagementPolicy") or "OrderedReady") == "Parallel"
        pods = {}
        for p in self._owned_pods(sts):
            try:
                ordinal = int(p["metadata"]["name"].rsplit("-", 1)[1])
            except (IndexError, ValueError):
                continue
            pods[ordinal] = p
        failed_msg = None
        # scale up / replace missing
        if not (key in self._backoff and self._backoff_pending(key) and not self._settling):
            for i in range(replicas):
                p = pods.get(i)
                if p is not None and terminating(p):
                    if not parallel:
                        break
                    continue
                if p is None:
                    use_current = (current_name != update_name and stype == "RollingUpdate" and i < partition)
                    rev = current_rev if use_current else update_rev
                    tmpl = ((rev.get("data") or {}).get("spec") or {}).get("template") or template
                    tmpl = {k: v for k, v in tmpl.items() if k != "$patch"}
                    pod = self._pod_from_template(sts, "StatefulSet", f"{name}-{i}", tmpl, {
                        "controller-revision-hash": rev["metadata"]["name"],
                        "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
                        "apps.kubernetes.io/pod-index": str(i)})
                    pod["spec"]["hostname"] = f"{name}-{i}"
                    if spec.get("serviceName"):
                        pod["spec"]["subdomain"] = spec["serviceName"]
                    if not self._create_pod(sts, "StatefulSet", pod, key):
                        failed_msg = self._last_create_error.get(key)
                        break
                    self._event(sts, "Normal", "SuccessfulCreate",
                                f"create Pod {name}-{i} in StatefulSet {name} successful", "statefulset-controller")
                    if not parallel:
                        break
                elif not pod_ready(p) and not parallel:
                    break
        # scale down (highest ordinal first, one at a time unless Parallel)
        extra = sorted((i for i in pods if i >= replicas), reverse=True)
        lower_ready = all(pods.get(i) is not None and pod_ready(pods[i]) for i in range(replicas))
        for i in extra:
            if terminating(pods[i]):
                if not parallel:
                    break
                continue
            if not parallel and not lower_ready:
                break
            self._delete(PODS, ns, pods[i]["metadata"]["name"])
            self._event(sts, "Normal", "SuccessfulDelete",
                        f"delete Pod {pods[i]['metadata']['name']} in StatefulSet {name} successful",
                        "statefulset-controller")
            if not parallel:
                break
        # rolling update: reverse ordinal order, one pod at a time, only when everything is Ready
        if stype == "RollingUpdate" and lower_ready and not extra:
            for i in range(replicas - 1, partition - 1, -1):
                p = pods.get(i)
                if p is None or terminating(p):
                    break
                if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != update_name:
                    self._delete(PODS, ns, p["metadata"]["name"])
                    break
                if not pod_ready(p):
                    break
        # status
        live = [p for p in self._owned_pods(sts) if not terminating(p)]
        now = time.time()
        min_ready = int(spec.get("minReadySeconds") or 0)
        by_hash = lambda h: sum(1 for p in live if (p["metadata"].get("labels") or {}).get(  # noqa: E731
            "controller-revision-hash") == h)
        ready = sum(1 for p in live if pod_ready(p))
        st = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(live),
            "readyReplicas": ready,
            "availableReplicas": sum(1 for p in live if pod_available(p, min_ready, now)),
            "currentReplicas": by_hash(current_name),
            "updatedReplicas": by_hash(update_name),
            "currentRevision": current_name,
            "updateRevision": update_name,
            "collisionCount": collision,
        }
        if stype == "RollingUpdate" and st["updatedReplicas"] == st["replicas"] == replicas and ready == replicas:
            st["currentRevision"] = update_name
            st["currentReplicas"] = st["updatedReplicas"]
        conds = status.get("conditions") or []
        if failed_msg:
            conds = set_condition(conds, "ReplicaFailure", "True", "FailedCreate", failed_msg, now_iso(), False)
        elif get_condition(conds, "ReplicaFailure") and len(live) >= replicas:
            conds = remove_condition(conds, "ReplicaFailure")
        if conds:
            st["conditions"] = conds
        st = {k: v for k, v in st.items() if v or k in ("replicas", "observedGeneration", "collisionCount",
                                                         "availableReplicas", "currentRevision", "updateRevision")}
        if st != status:
            sts = dict(sts)
            sts["status"] = st
            self._update_status(STS, sts)
        self._trim_revisions(sts, revs, {st["currentRevision"], update_name})

    # ---------------------------------------------------------------- DaemonSet
    # Follows kubernetes pkg/controller/daemon: daemon pods tolerate what the controller adds in
    # util.AddOrUpdateDaemonPodTolerations (so a cordoned node keeps its daemon pod), are pinned to their node by
    # a matchFields node affinity, and rollingUpdate (update.go) replaces them within maxUnavailable or, with
    # maxSurge, starts the new pod beside the old one and deletes the old once the new is available.
    DAEMON_TOLERATIONS = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
        {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    ]

    @staticmethod
    def _tolerates(tolerations: list, taint: dict) -> bool:
        for t in tolerations or []:
            if t.get("effect") and t.get("effect") != taint.get("effect"):
                continue
            if t.get("operator") == "Exists":
                if not t.get("key") or t.get("key") == taint.get("key"):
                    return True
            elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
                return True
        return False

    def _daemon_tolerations(self, template: dict) -> list:
        spec = template.get("spec") or {}
        out = [dict(t) for t in spec.get("tolerations") or []]
        extra = list(self.DAEMON_TOLERATIONS)
        if spec.get("hostNetwork"):
            extra.append({"key": "node.kubernetes.io/network-unavailable", "operator": "Exists",
                          "effect": "NoSchedule"})
        for t in extra:
            if not any(o.get("key") == t["key"] and o.get("effect") == t["effect"] for o in out):
                out.append(dict(t))
        return out

    def _daemon_nodes(self, template: dict) -> list:
        """Nodes that should run a daemon pod: nodeSelector matches, NoSchedule/NoExecute taints tolerated
        (cordon's node.kubernetes.io/unschedulable taint is, by the daemon tolerations)."""
        spec = template.get("spec") or {}
        selector = spec.get("nodeSelector") or {}
        tolerations = self._daemon_tolerations(template)
        out = []
        for n in self._ro_list(NODES):
            labels = n["metadata"].get("labels") or {}
            if not all(labels.get(k) == v for k, v in selector.items()):
                continue
            taints = [t for t in (n.get("spec") or {}).get("taints") or []
                      if t.get("effect") in ("NoSchedule", "NoExecute")]
            if all(self._tolerates(tolerations, t) for t in taints):
                out.append(n["metadata"]["name"])
        return sorted(out)

    def _daemon_pod(self, ds: dict, template: dict, h: str, node: str) -> dict:
        gen = ds["metadata"].get("generation", 1)
        pod = self._pod_from_template(ds, "DaemonSet", self._generate_name(ds["metadata"]["name"]), template,
                                      {"controller-revision-hash": h, "pod-template-generation": str(gen)},
                                      node=node)
        spec = pod["spec"]
        spec["tolerations"] = self._daemon_tolerations(template)
        affinity = spec.setdefault("affinity", {})
        affinity["nodeAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}
        return pod

    def sync_daemonset(self, ns, name):
        ds = self._ro_get(DS, ns, name)
        if ds is None or terminating(ds):
            return
        key = ("ds", ns, name)
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        collision = int((ds.get("status") or {}).get("collisionCount") or 0)
        h = template_hash(template, collision)
        update_name = f"{name}-{h}"
        revs = self._revisions(ds)
        _rev_obj, revs = self._ensure_revision(ds, "DaemonSet", update_name, template, revs)
        node_names = self._daemon_nodes(template)
        pods = [p for p in self._owned_pods(ds)]
        by_node: dict = {}
        for p in pods:
            by_node.setdefault((p.get("spec") or {}).get("nodeName"), []).append(p)
        now = time.time()
        min_ready = int(spec.get("minReadySeconds") or 0)
        failed_msg = None
        # pods on nodes that should not run one
        for node, plist in by_node.items():
            if node not in node_names:
                for p in plist:
                    if not terminating(p):
                        self._delete(PODS, ns, p["metadata"]["name"])
        strategy = spec.get("updateStrategy") or {}
        stype = strategy.get("type") or "RollingUpdate"
        desired = len(node_names)
        is_new = lambda p: (p["metadata"].get("labels") or {}).get("controller-revision-hash") == h  # noqa: E731
        surge_nodes: set = set()
        if stype == "RollingUpdate":
            ru = strategy.get("rollingUpdate") or {}
            max_unavail = int_or_percent(ru.get("maxUnavailable", 1), desired, True)
            max_surge = int_or_percent(ru.get("maxSurge", 0), desired, True)
            if max_unavail == 0 and max_surge == 0:
                max_unavail = 1
            if max_surge == 0:
                unavailable = 0
                replace, candidates = [], []
                for node in node_names:
                    live = [p for p in by_node.get(node, []) if not terminating(p)]
                    new = next((p for p in live if is_new(p)), None)
                    old = next((p for p in live if not is_new(p)), None)
                    if (old is None) == (new is None):
                        unavailable += 1
                    elif new is not None:
                        if not pod_available(new, min_ready, now):
                            unavailable += 1
                    elif not pod_available(old, min_ready, now):
                        replace.append(old)
                        unavailable += 1
                    elif unavailable < max_unavail:
                        candidates.append(old)
                room = max(max_unavail - unavailable, 0)
                for p in replace + candidates[:room]:
                    self._delete(PODS, ns, p["metadata"]["name"])
            else:
                surging = 0
                allowed, candidates, delete_old = [], [], []
                for node in node_names:
                    live = [p for p in by_node.get(node, []) if not terminating(p)]
                    new = next((p for p in live if is_new(p)), None)
                    olds = [p for p in live if not is_new(p)]
                    if not olds:
                        continue
                    if new is None:
                        if not any(pod_available(p, min_ready, now) for p in olds):
                            allowed.append(node)
                        elif surging < max_surge:
                            candidates.append(node)
                        continue
                    if not pod_available(new, min_ready, now):
                        surging += 1
                        continue
                    delete_old += olds
                for p in delete_old:
                    self._delete(PODS, ns, p["metadata"]["name"])
                surge_nodes = set(allowed + candidates[:max(max_surge - surging, 0)])
        # create missing daemon pods (and the surge pods beside old ones)
        if not (key in self._backoff and self._backoff_pending(key) and not self._settling):
            current = [p for p in self._owned_pods(ds) if not terminating(p)]
            have = {(p.get("spec") or {}).get("nodeName") for p in current}
            have_new = {(p.get("spec") or {}).get("nodeName") for p in current if is_new(p)}
            for node in node_names:
                if node in have and not (node in surge_nodes and node not in have_new):
                    continue
                pod = self._daemon_pod(ds, template, h, node)
                if not self._create_pod(ds, "DaemonSet", pod, key):
                    failed_msg = self._last_create_error.get(key)
                    break
                self._event(ds, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                            "daemonset-controller")
        live = [p for p in self._owned_pods(ds) if not terminating(p)]
        on_nodes = [p for p in live if (p.get("spec") or {}).get("nodeName") in node_names]
        available = sum(1 for p in on_nodes if pod_available(p, min_ready, now))
        st = {
            "currentNumberScheduled": len({(p.get("spec") or {}).get("nodeName") for p in on_nodes}),
            "desiredNumberScheduled": desired,
            "numberMisscheduled": len([p for p in live if (p.get("spec") or {}).get("nodeName") not in node_names]),
            "numberReady": sum(1 for p in on_nodes if pod_ready(p)),
            "numberAvailable": available,
            "numberUnavailable": max(desired - available, 0),
            "updatedNumberScheduled": sum(1 for p in on_nodes
                                          if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == h),
            "observedGeneration": ds["metadata"].get("generation", 1),
        }
        old = ds.get("status") or {}
        if collision:
            st["collisionCount"] = collision
        if failed_msg:
            st["conditions"] = set_condition(old.get("conditions"), "ReplicaFailure", "True", "FailedCreate",
                                             failed_msg, now_iso(), False)
        st = {k: v for k, v in st.items()
              if v or k in ("currentNumberScheduled", "desiredNumberScheduled", "numberMisscheduled",
                            "numberReady", "observedGeneration")}
        if st != old:
            ds = dict(ds)
            ds["status"] = st
            self._update_status(DS, ds)
        self._trim_revisions(ds, revs, {update_name})

    # ---------------------------------------------------------------- namespaces
    def sync_namespace(self, name):
        """The service-account controller: every active namespace has ServiceAccount ``default``."""
        ns = self._ro_get(NAMESPACES, None, name)
        if ns is None or terminating(ns):
            return
        if self._ro_get("serviceaccounts", name, "default") is None:
            try:
                self.store.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                      "metadata": {"name": "default", "namespace": name}})
            except ApiError as e:
                if e.code not in (409, 403, 404):
                    raise

    # ---------------------------------------------------------------- Endpoints
    def sync_endpoints(self, ns):
        services = self._ro_list(SERVICES, ns)
        pods = None
        wanted = set()
        for svc in services:
            sspec = svc.get("spec") or {}
            sel = sspec.get("selector")
            name = svc["metadata"]["name"]
            if not sel:
                continue
            wanted.add(name)
            if pods is None:
                pods = [p for p in self._ro_list(PODS, ns) if not terminating(p)
                        and (p.get("status") or {}).get("podIP")]
            ready, not_ready = [], []
            matched = [p for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v
                                               for k, v in sel.items())]
            for p in matched:
                addr = {"ip": p["status"]["podIP"], "nodeName": (p.get("spec") or {}).get("nodeName"),
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                      "uid": p["metadata"].get("uid")}}
                (ready if pod_ready(p) else not_ready).append(addr)
            ready.sort(key=lambda a: a["ip"])
            not_ready.sort(key=lambda a: a["ip"])
            ports = []
            for sp in sspec.get("ports") or []:
                tp = sp.get("targetPort", sp.get("port"))
                if isinstance(tp, str) and not tp.isdigit():
                    tp = _named_port(matched, tp) or sp.get("port")
                port = {"port": int(tp), "protocol": sp.get("protocol", "TCP")}
                if sp.get("name"):
                    port["name"] = sp["name"]
                ports.append(port)
            subsets = []
            if ready or not_ready:
                subset = {}
                if ready:
                    subset["addresses"] = ready
                if not_ready:
                    subset["notReadyAddresses"] = not_ready
                subset["ports"] = ports
                subsets = [subset]
            existing = self._ro_get(ENDPOINTS, ns, name)
            labels = dict((svc["metadata"].get("labels") or {}))
            labels["endpoints.kubernetes.io/managed-by"] = "endpoint-controller"
            if existing is None:
                ep = {"apiVersion": "v1", "kind": "Endpoints",
                      "metadata": {"name": name, "namespace": ns, "labels": labels,
                                   "annotations": {MANAGED_EP_ANN: now_iso()}}}
                if subsets:
                    ep["subsets"] = subsets
                try:
                    self.store.create(ENDPOINTS, ep)
                except ApiError as e:
                    if e.code != 409:
                        raise
                    self._push(("ep", ns))
            elif (existing.get("subsets") or []) != subsets or (existing["metadata"].get("labels") or {}) != labels:
                existing = _clone(existing)
                existing["subsets"] = subsets
                existing["metadata"]["labels"] = labels
                existing["metadata"].setdefault("annotations", {})[MANAGED_EP_ANN] = now_iso()
                if not subsets:
                    existing.pop("subsets", None)
                self._update(ENDPOINTS, existing)
        # endpoints we manage whose Service is gone
        for ep in self._ro_list(ENDPOINTS, ns):
            labels = ep["metadata"].get("labels") or {}
            if labels.get("endpoints.kubernetes.io/managed-by") == "endpoint-controller" and \
                    ep["metadata"]["name"] not in wanted:
                self._delete(ENDPOINTS, ns, ep["metadata"]["name"])


def _named_port(pods, name):
    for p in pods:
        for c in (p.get("spec") or {}).get("containers") or []:
            for port in c.get("ports") or []:
                if port.get("name") == name:
                    return port.get("containerPort")
    return None


def _spec_replicas(rs) -> int:
    v = (rs.get("spec") or {}).get("replicas")
    return 1 if v is None else int(v)


def _rev(rs) -> int:
    try:
        return int(((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANN) or 0)
    except ValueError:
        return 0


def _neg_str(s: str) -> tuple:
    return tuple(-ord(ch) for ch in s)


def _image_id(image: str) -> str:
    if not image:
        return ""
    digest = "%064x" % (fnv32a(image.encode()) * 0x9E3779B97F4A7C15 % (1 << 256))
    name = image.split(":")[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{name}@sha256:{digest}"


def _container_id(pod, c) -> str:
    meta = pod.get("metadata") or {}
    raw = f"{meta.get('namespace')}/{meta.get('name')}/{c.get('name')}".encode()
    return "containerd://" + ("%016x" % fnv32a(raw)) * 4
