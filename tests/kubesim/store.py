"""The object store of the simulated API server (test harness; in-process, thread-safe).

Resource types are named by their *key*: ``"pods"``, ``"namespaces"``,
``"deployments.apps"``, ``"mutatingwebhookconfigurations.admissionregistration.k8s.io"``,
``"virtualservices.networking.istio.io"`` (``plural`` for the core group, else
``plural.group``).  Every method below accepts that key (or a :class:`ResourceType`).

Stable interface (used by the HTTP server and by controllers/admission in-process)
----------------------------------------------------------------------------------
``Store(options=None)``
``store.lock``                 an ``RLock``; every write happens under it.  Hold it to make a
                               read-modify-write sequence atomic (re-entrant).
``store.registry``             :class:`kubesim.resources.Registry` of served types.
``store.get(rtype, namespace, name)`` -> dict (a private copy) or raises ``ApiError`` 404.
``store.try_get(rtype, namespace, name)`` -> dict or ``None``.
``store.list(rtype, namespace=None, label_selector=None, field_selector=None)`` -> [dict]
    ``label_selector``: query-string form (``"app=foo,tier in (a,b)"``) or a
    ``metav1.LabelSelector`` dict (``{"matchLabels": ...}``); ``namespace=None`` = all.
``store.list_page(rtype, namespace, label_selector, field_selector, limit=0, start_after=None)``
    -> ([Rec], resourceVersion, more): one page of stored records (``rec.obj`` read-only,
    ``rec.raw`` its JSON bytes); used by the HTTP list.
``store.create(rtype, obj, namespace=None, *, dry_run=False, user=None, admission=True,
               reset_status=None)`` -> stored object.  ``reset_status=None`` behaves like the
    API (status cleared for types with a status subresource); pass ``False`` to keep it.
``store.update(rtype, obj, namespace=None, *, subresource=None, dry_run=False, user=None,
               admission=True)``  PUT semantics: optimistic concurrency when
    ``metadata.resourceVersion`` is set (409 Conflict when stale); for types with a status
    subresource the status part of ``obj`` is ignored (use ``update_status``).
``store.update_status(rtype, obj, namespace=None, **kw)``  PUT .../status semantics (only
    ``status`` is taken from ``obj``).
``store.patch(rtype, name, patch, patch_type="merge", namespace=None, *, subresource=None,
              dry_run=False, user=None, admission=True)``  patch_type: ``merge`` |
    ``strategic`` | ``json`` | ``apply``.
``store.delete(rtype, name, namespace=None, *, propagation=None, preconditions=None,
               dry_run=False, user=None, admission=True)`` -> the object (with
    ``deletionTimestamp`` set when its removal is still pending: finalizers, namespaces).
    Background (default) / Foreground / Orphan; dependents found through ownerReferences
    are deleted (or orphaned) synchronously.  Deleting a namespace marks it Terminating and
    a background thread removes its contents, then the namespace.  Pods are removed at once,
    unless ``options.pod_terminate_seconds`` > 0: then a scheduled pod gets a
    ``deletionTimestamp`` (graceful termination, shown as Terminating) and is removed that
    many seconds later (``grace_period_seconds=0`` forces immediate removal).
``store.add_admission(fn)``    ``fn(operation, rtype, obj, old, dry_run, user)`` with
    operation ``"CREATE" | "UPDATE" | "DELETE"``; ``obj`` is the candidate object (for
    DELETE a copy of the stored one; may be mutated), ``old`` the stored one (``None`` on
    CREATE; read-only: never mutate it).  Return the
    (possibly mutated) object or ``None`` to keep it; raise ``ApiError`` to reject with that
    exact Status.  Hooks run under ``store.lock``, in registration order, after defaulting
    and before validation; they may read the store.  CREATE hooks see objects before
    ``generateName``/``uid`` are resolved (like real admission webhooks do).
``store.add_listener(fn)``     ``fn(event_type, rtype, obj)`` with ``"ADDED" | "MODIFIED" |
    "DELETED"``, called after each committed change, in the committing thread, after the
    lock is released (unless the caller itself holds it).  ``obj`` is the stored object
    itself: treat it as read-only (``copy.deepcopy`` it before changing anything).  Keep it
    quick (queue work).  Not called for dry runs.
``store.current_resource_version()`` -> int.
``store.bump(rtype, namespace, name)``  a concurrent writer's no-content change (new
    resourceVersion, MODIFIED event): what ``--conflict-rate`` uses.
``store.suspend_writes()`` / ``resume_writes()`` / ``restart_watch_cache()``  an API server
    outage (``kubesim.faults.Outage``): writers wait; afterwards watches from an older
    resourceVersion get 410 Expired like after a real restart.
``store.pod_log``               optional attribute: ``fn(namespace, name, container) -> str``
    answering ``GET .../pods/NAME/log`` (empty text when unset).
``ApiError`` (re-exported from :mod:`kubesim.errors`) carries ``code``, ``reason``,
    ``message`` and renders the real ``Status`` body with ``.status()``.

Semantics: ``uid``, ``resourceVersion`` (one global counter), ``generation`` (for workloads,
webhook configurations, CRDs and custom resources; bumped when anything outside
``metadata``/``status`` changes), ``creationTimestamp``, ``generateName``, no-op updates do
not bump the resourceVersion, a bounded per-type event history for watches (410 Expired
when a watch asks for a resourceVersion older than what is kept).
"""

from __future__ import annotations

import bisect
import datetime
import heapq
import json
import random
import threading
import time
import uuid

from . import strategy
from .errors import ApiError
from .patch import apply_patch
from .resources import Registry, ResourceType
from .selectors import FieldSelector, LabelSelector, match_label_selector, selector_to_string

__all__ = ["Store", "ApiError", "Rec", "now_iso"]

NAMESPACES = "namespaces"
CRDS = "customresourcedefinitions.apiextensions.k8s.io"
_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def clone(obj):
    """Deep copy of a JSON-like value (faster than json round trips or copy.deepcopy)."""
    if isinstance(obj, dict):
        return {k: clone(v) if isinstance(v, (dict, list)) else v for k, v in obj.items()}
    if isinstance(obj, list):
        return [clone(v) if isinstance(v, (dict, list)) else v for v in obj]
    return obj


class Rec:
    """A stored object version; never mutated once stored.  ``raw`` caches its JSON.

    Versions that are no longer current (kept only by the watch history) are compacted to
    their JSON bytes; ``obj`` then decodes on demand."""

    __slots__ = ("_obj", "_raw")

    def __init__(self, obj):
        self._obj = obj
        self._raw = None

    @property
    def obj(self):
        o = self._obj
        if o is None:
            o = json.loads(self._raw)
        return o

    @property
    def raw(self) -> bytes:
        r = self._raw
        if r is None:
            r = self._raw = json.dumps(self._obj, separators=(",", ":")).encode()
        return r

    def compact(self):
        if self._obj is not None:
            self.raw  # noqa: B018 - computes and caches the bytes
            self._obj = None

    def copy(self):
        o = self._obj
        return clone(o) if o is not None else json.loads(self._raw)


def _without(obj: dict, *keys) -> dict:
    return {k: v for k, v in obj.items() if k not in keys}


def _meta_without_rv(obj: dict) -> dict:
    o = dict(obj)
    m = dict(o.get("metadata") or {})
    m.pop("resourceVersion", None)
    o["metadata"] = m
    return o


class Store:
    def __init__(self, options=None, registry: Registry | None = None, history_size: int | None = None):
        if history_size is None:
            history_size = int(getattr(options, "watch_history", 0) or 10000)
        self.options = options
        self.registry = registry or Registry()
        self.lock = threading.RLock()
        self._data: dict = {}  # key -> {namespace ("" for cluster-scoped): {name: Rec}}
        self._rv = 1000
        self._history: dict = {}  # key -> list[(rv, type, Rec, old Rec | None)]
        self._history_rvs: dict = {}  # key -> list[rv] (parallel, for bisect)
        self._floor: dict = {}  # key -> newest rv dropped from history
        self._history_size = history_size
        self._cond = threading.Condition()
        self._owners: dict = {}  # owner uid -> set((key, ns, name))
        self._admission: list = []
        self._listeners: list = []
        self._local = threading.local()
        seed = getattr(options, "seed", None)
        self._rand = random.Random(seed)
        self._ip_counter = 10
        self.closed = False
        self._writable = threading.Event()  # cleared while the API server is down (kubesim.faults.Outage)
        self._writable.set()
        self._watch_floor = 0  # the watch cache's list resourceVersion after an API server restart
        self._pod_terminate_seconds = float(getattr(options, "pod_terminate_seconds", 0.0) or 0.0)
        self._reap_heap: list = []
        self._reap_cond = threading.Condition()
        self._reaper = None

    # ---- hooks ------------------------------------------------------------------------
    def add_admission(self, fn, first=False):
        if first:
            self._admission.insert(0, fn)
        else:
            self._admission.append(fn)

    def add_listener(self, fn):
        self._listeners.append(fn)

    def current_resource_version(self) -> int:
        return self._rv

    # ---- type resolution ------------------------------------------------------------------
    def rt(self, rtype) -> ResourceType:
        if isinstance(rtype, ResourceType):
            return rtype
        rt = self.registry.get(rtype)
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return rt

    def _bucket(self, rt: ResourceType, ns: str, create=False):
        by_ns = self._data.get(rt.key)
        if by_ns is None:
            if not create:
                return None
            by_ns = self._data[rt.key] = {}
        b = by_ns.get(ns)
        if b is None and create:
            b = by_ns[ns] = {}
        return b

    def _rec(self, rt: ResourceType, ns: str, name: str):
        b = self._bucket(rt, ns if rt.namespaced else "")
        return b.get(name) if b else None

    # ---- reads ------------------------------------------------------------------------
    def get_rec(self, rtype, namespace, name) -> Rec:
        rt = self.rt(rtype)
        with self.lock:
            rec = self._rec(rt, namespace or "", name)
        if rec is None:
            raise ApiError.not_found(rt, name)
        return rec

    def get(self, rtype, namespace, name) -> dict:
        return self.get_rec(rtype, namespace, name).copy()

    def try_get(self, rtype, namespace, name):
        rt = self.rt(rtype)
        with self.lock:
            rec = self._rec(rt, namespace or "", name)
        return rec.copy() if rec is not None else None

    def list_recs(self, rtype, namespace=None, label_selector=None, field_selector=None):
        """-> (sorted [Rec], resourceVersion).  Selectors may be strings or parsed objects."""
        recs, rv, _ = self.list_page(rtype, namespace, label_selector, field_selector)
        return recs, rv

    def list_page(self, rtype, namespace=None, label_selector=None, field_selector=None, limit=0,
                  start_after=None):
        """-> ([Rec] in (namespace, name) order, resourceVersion, more) where ``more`` is None when
        the page is the last one, else the number of objects after it (-1 when unknown because
        selectors apply).  ``start_after`` is a ``"namespace/name"`` key (``"/name"`` when
        cluster-scoped); ``limit`` 0 = everything."""
        rt = self.rt(rtype)
        lsel = _as_label_pred(label_selector)
        fsel = field_selector if isinstance(field_selector, FieldSelector) or field_selector is None \
            else FieldSelector.parse(field_selector, rt.key)
        if fsel is not None and fsel.empty():
            fsel = None
        name_eq = fsel.name_equals() if fsel else None
        ns_eq = fsel.namespace_equals() if fsel else None
        if namespace is None and ns_eq is not None and rt.namespaced:
            namespace = ns_eq
        s_ns = s_name = None
        if start_after is not None:
            s_ns, _, s_name = start_after.partition("/")
        out = []
        more = None
        with self.lock:
            rv = self._rv
            by_ns = self._data.get(rt.key) or {}
            if not rt.namespaced:
                ns_keys = [""]
            elif namespace:
                ns_keys = [namespace]
            else:
                ns_keys = sorted(by_ns)
            if s_ns is not None:
                ns_keys = ns_keys[bisect.bisect_left(ns_keys, s_ns):]
            for idx, nsk in enumerate(ns_keys):
                b = by_ns.get(nsk)
                if not b:
                    continue
                if name_eq is not None:
                    names = [name_eq] if name_eq in b else []
                else:
                    names = sorted(b)
                if s_ns is not None and nsk == s_ns:
                    names = names[bisect.bisect_right(names, s_name):]
                for pos, n in enumerate(names):
                    rec = b[n]
                    o = rec.obj
                    if lsel is not None and not lsel((o.get("metadata") or {}).get("labels")):
                        continue
                    if fsel is not None and not fsel.matches(o):
                        continue
                    if limit and len(out) >= limit:
                        if lsel is None and fsel is None:
                            more = len(names) - pos + sum(len(by_ns.get(k) or ()) for k in ns_keys[idx + 1:])
                        else:
                            more = -1
                        break
                    out.append(rec)
                if more is not None:
                    break
        return out, rv, more

    def list(self, rtype, namespace=None, label_selector=None, field_selector=None) -> list:
        recs, _ = self.list_recs(rtype, namespace, label_selector, field_selector)
        return [r.copy() for r in recs]

    def count(self, rtype, namespace=None) -> int:
        rt = self.rt(rtype)
        with self.lock:
            by_ns = self._data.get(rt.key) or {}
            if namespace is not None:
                return len(by_ns.get(namespace, {}))
            return sum(len(b) for b in by_ns.values())

    def namespaces_with_objects(self, rtype) -> list:
        rt = self.rt(rtype)
        with self.lock:
            return sorted(ns for ns, b in (self._data.get(rt.key) or {}).items() if b)

    # ---- internal commit ------------------------------------------------------------------
    def _events(self):
        ev = getattr(self._local, "events", None)
        return ev

    def _begin(self):
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.events = []
        self._local.depth = depth + 1

    def _end(self):
        self._local.depth -= 1
        if self._local.depth == 0:
            events = self._local.events
            self._local.events = []
            return events
        return None

    def _run(self, fn):
        """Run ``fn`` under the lock, then deliver listener events once the outermost call ends."""
        if not self._writable.is_set() and not getattr(self._local, "depth", 0):
            # the API server is down: every writer (controllers, kubelets) waits for it to come back
            while not self._writable.wait(0.5) and not self.closed:
                pass
        self.lock.acquire()
        self._begin()
        events = None
        try:
            return fn()
        finally:
            events = self._end()
            self.lock.release()
            if events:
                with self._cond:
                    self._cond.notify_all()
                self._emit(events)

    def _emit(self, events):
        for etype, key, rec in events:
            if not self._listeners:
                return
            for fn in list(self._listeners):
                try:
                    fn(etype, key, rec.obj)
                except Exception:  # a broken listener must not break the API
                    import traceback
                    traceback.print_exc()

    def _record(self, rt: ResourceType, etype: str, rec: Rec, old: Rec | None, rv: int):
        hist = self._history.setdefault(rt.key, [])
        rvs = self._history_rvs.setdefault(rt.key, [])
        hist.append((rv, etype, rec, old))
        rvs.append(rv)
        if len(hist) > self._history_size + self._history_size // 4 + 1:
            drop = len(hist) - self._history_size
            self._floor[rt.key] = rvs[drop - 1]
            del hist[:drop]
            del rvs[:drop]
        self._local.events.append((etype, rt.key, rec))

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _store(self, rt: ResourceType, obj: dict, old: Rec | None, etype: str) -> Rec:
        rv = self._next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        rec = Rec(obj)
        meta = obj["metadata"]
        ns = meta.get("namespace", "") if rt.namespaced else ""
        self._bucket(rt, ns, create=True)[meta["name"]] = rec
        self._index_owners(rt, old.obj if old else None, obj)
        self._record(rt, etype, rec, old, rv)
        if old is not None:
            old.compact()
        return rec

    def _remove(self, rt: ResourceType, rec: Rec) -> Rec:
        meta = rec.obj["metadata"]
        ns = meta.get("namespace", "") if rt.namespaced else ""
        b = self._bucket(rt, ns)
        if b is not None:
            b.pop(meta["name"], None)
            if not b and rt.namespaced:
                self._data[rt.key].pop(ns, None)
        self._index_owners(rt, rec.obj, None)
        rv = self._next_rv()
        gone = clone(rec.obj)
        gone["metadata"]["resourceVersion"] = str(rv)
        grec = Rec(gone)
        self._record(rt, "DELETED", grec, rec, rv)
        rec.compact()
        grec.compact()
        return grec

    def _index_owners(self, rt, old: dict | None, new: dict | None):
        def refs(o):
            if not o:
                return set()
            return {r.get("uid") for r in (o["metadata"].get("ownerReferences") or []) if r.get("uid")}

        o_refs, n_refs = refs(old), refs(new)
        if o_refs == n_refs:
            return
        src = new or old
        m = src["metadata"]
        ident = (rt.key, m.get("namespace", "") if rt.namespaced else "", m["name"])
        for u in o_refs - n_refs:
            s = self._owners.get(u)
            if s:
                s.discard(ident)
                if not s:
                    del self._owners[u]
        for u in n_refs - o_refs:
            self._owners.setdefault(u, set()).add(ident)

    # ---- admission ------------------------------------------------------------------------
    def _admit(self, op, rt, obj, old, dry_run, user):
        for fn in list(self._admission):
            res = fn(op, rt.key, obj, old, dry_run, user)
            if res is not None:
                obj = res
        return obj

    def _check_namespace(self, rt: ResourceType, ns: str, name: str):
        nsrt = self.registry.get(NAMESPACES)
        nsrec = self._rec(nsrt, "", ns)
        if nsrec is None:
            raise ApiError.not_found(nsrt, ns)
        if (nsrec.obj.get("metadata") or {}).get("deletionTimestamp"):
            raise ApiError.forbidden(rt, name, f"unable to create new content in namespace {ns} because it is "
                                               "being terminated")

    # ---- create ---------------------------------------------------------------------------
    def create(self, rtype, obj, namespace=None, *, dry_run=False, user=None, admission=True, reset_status=None):
        rt = self.rt(rtype)
        return self._run(lambda: self._create_locked(rt, obj, namespace, dry_run, user, admission, reset_status))

    def _create_locked(self, rt, obj, namespace, dry_run, user, admission, reset_status):
        if not isinstance(obj, dict):
            raise ApiError.bad_request("the object provided is unrecognized (must be of type map)")
        obj = clone(obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rt.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise ApiError.bad_request("the namespace of the provided object does not match the namespace "
                                           "sent on the request")
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        self._set_type_meta(rt, obj)
        for k in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "generation",
                  "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(k, None)
        if reset_status is None:
            reset_status = rt.has_status
        if reset_status:
            obj.pop("status", None)
        name = meta.get("name") or ""
        if not name and not meta.get("generateName"):
            raise ApiError.invalid(rt, "", [("metadata.name", "Required", None,
                                             "name or generateName is required")])
        if rt.namespaced:
            self._check_namespace(rt, meta["namespace"], name)
        strategy.prepare_for_create(rt, obj, self)
        strategy.apply_defaults(rt, obj)
        if admission:
            obj = self._admit("CREATE", rt, obj, None, dry_run, user)
            strategy.apply_defaults(rt, obj)
        meta = obj["metadata"]
        if not meta.get("name"):
            base = meta["generateName"]
            for _ in range(100):
                cand = base[:58] + "".join(self._rand.choice(_GEN_CHARS) for _ in range(5))
                if self._rec(rt, meta.get("namespace", ""), cand) is None:
                    break
            meta["name"] = cand
        name = meta["name"]
        strategy.validate(rt, obj, None, self)
        if self._rec(rt, meta.get("namespace", ""), name) is not None:
            raise ApiError.already_exists(rt, name)
        meta["uid"] = str(uuid.uuid4())
        strategy.prepare_with_uid(rt, obj)
        meta["creationTimestamp"] = now_iso()
        if rt.generation:
            meta["generation"] = 1
        if rt.key == CRDS:
            strategy.crd_status(obj)
        if dry_run:
            return obj
        rec = self._store(rt, obj, None, "ADDED")
        if rt.key == CRDS:
            self.registry.register_crd(obj)
        return rec.copy()

    def _set_type_meta(self, rt: ResourceType, obj: dict):
        av = obj.get("apiVersion")
        if not (rt.custom and isinstance(av, str) and av.rpartition("/")[2] in rt.versions
                and av.rpartition("/")[0] == rt.group):
            obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind

    # ---- update ---------------------------------------------------------------------------
    def update(self, rtype, obj, namespace=None, *, subresource=None, dry_run=False, user=None, admission=True,
               name=None):
        rt = self.rt(rtype)
        return self._run(lambda: self._update_entry(rt, obj, namespace, subresource, dry_run, user, admission,
                                                    name))

    def update_status(self, rtype, obj, namespace=None, **kw):
        return self.update(rtype, obj, namespace, subresource="status", **kw)

    def _update_entry(self, rt, obj, namespace, subresource, dry_run, user, admission, name):
        if not isinstance(obj, dict):
            raise ApiError.bad_request("the object provided is unrecognized (must be of type map)")
        obj = clone(obj)
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        ns = (namespace or meta.get("namespace") or "default") if rt.namespaced else ""
        if rt.namespaced and namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise ApiError.bad_request("the namespace of the provided object does not match the namespace sent "
                                       "on the request")
        oname = meta.get("name") or ""
        if name and oname and name != oname:
            raise ApiError.bad_request(f"the name of the object ({oname}) does not match the name on the URL ({name})")
        name = name or oname
        if not name:
            raise ApiError.invalid(rt, "", [("metadata.name", "Required", None, "name or generateName is required")])
        cur = self._rec(rt, ns, name)
        if cur is None:
            raise ApiError.not_found(rt, name)
        if subresource == "scale":
            return self._update_scale(rt, cur, obj, dry_run, user, admission)
        return self._update_locked(rt, cur, obj, subresource, dry_run, user, admission)

    def _update_locked(self, rt, cur: Rec, obj: dict, subresource, dry_run, user, admission):
        old = cur.obj
        ometa = old["metadata"]
        want_rv = (obj.get("metadata") or {}).get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != ometa.get("resourceVersion"):
            raise ApiError.conflict(rt, ometa["name"])
        if subresource == "status":
            new = clone(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            meta = new.setdefault("metadata", {})
            if rt.has_status:
                if "status" in old:
                    new["status"] = clone(old["status"])
                else:
                    new.pop("status", None)
            for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                      "generation"):
                if k in ometa:
                    meta[k] = ometa[k]
                else:
                    meta.pop(k, None)
            meta["name"] = ometa["name"]
            if rt.namespaced:
                meta["namespace"] = ometa["namespace"]
            else:
                meta.pop("namespace", None)
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
        self._set_type_meta(rt, new)
        new["metadata"]["resourceVersion"] = ometa.get("resourceVersion")
        strategy.apply_defaults(rt, new)
        if admission:
            new = self._admit("UPDATE", rt, new, old, dry_run, user)
            strategy.apply_defaults(rt, new)
        strategy.validate(rt, new, old, self)
        strategy.prepare_for_update(rt, new, old, subresource)
        if rt.generation and _without(new, "metadata", "status", "apiVersion", "kind") != \
                _without(old, "metadata", "status", "apiVersion", "kind"):
            new["metadata"]["generation"] = int(ometa.get("generation") or 0) + 1
        new["metadata"]["resourceVersion"] = ometa.get("resourceVersion")
        if new == old:
            return clone(old)
        if dry_run:
            return new
        nmeta = new["metadata"]
        if nmeta.get("deletionTimestamp") and not nmeta.get("finalizers") and \
                not int(nmeta.get("deletionGracePeriodSeconds") or 0):
            if not (rt.key == NAMESPACES and (new.get("spec") or {}).get("finalizers")):
                rec = self._store(rt, new, cur, "MODIFIED")
                self._finish_delete(rt, rec, "Background")
                return clone(new)
        rec = self._store(rt, new, cur, "MODIFIED")
        if rt.key == CRDS:
            self.registry.register_crd(new)
        return rec.copy()

    # ---- scale ----------------------------------------------------------------------------
    def scale_of(self, rt: ResourceType, obj: dict) -> dict:
        meta = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if rt.custom and rt.scale_paths:
            def at(o, path):
                cur = o
                for p in (path or "").lstrip(".").split("."):
                    cur = cur.get(p) if isinstance(cur, dict) else None
                return cur
            replicas = at(obj, rt.scale_paths.get("specReplicasPath")) or 0
            sreplicas = at(obj, rt.scale_paths.get("statusReplicasPath")) or 0
            sel = at(obj, rt.scale_paths.get("labelSelectorPath")) if rt.scale_paths.get("labelSelectorPath") else ""
        else:
            replicas = spec.get("replicas", 1)
            sreplicas = status.get("replicas", 0)
            sel = spec.get("selector")
            # ReplicationControllers (and DeploymentConfigs) select by a plain label map
            sel = selector_to_string(sel) if isinstance(sel, dict) and ("matchLabels" in sel or "matchExpressions"
                                                                         in sel) \
                else ",".join(f"{k}={v}" for k, v in sorted((sel or {}).items()))
        out = {"kind": "Scale", "apiVersion": "autoscaling/v1",
               "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                            if k in meta},
               "spec": {"replicas": replicas} if replicas else {},
               "status": {"replicas": sreplicas}}
        if sel:
            out["status"]["selector"] = sel
        return out

    def _update_scale(self, rt, cur: Rec, scale: dict, dry_run, user, admission):
        if not rt.has_scale:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        want_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != cur.obj["metadata"].get("resourceVersion"):
            raise ApiError.conflict(rt, cur.obj["metadata"]["name"])
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError.invalid(ResourceType("autoscaling", "v1", "scale", "Scale", True),
                                   cur.obj["metadata"]["name"],
                                   [("spec.replicas", "Invalid", replicas,
                                     "must be greater than or equal to 0")])
        new = clone(cur.obj)
        if rt.custom and rt.scale_paths.get("specReplicasPath"):
            parts = rt.scale_paths["specReplicasPath"].lstrip(".").split(".")
            o = new
            for p in parts[:-1]:
                o = o.setdefault(p, {})
            o[parts[-1]] = replicas
        else:
            new.setdefault("spec", {})["replicas"] = replicas
        res = self._update_locked(rt, cur, new, None, dry_run, user, admission)
        return self.scale_of(rt, res)

    # ---- patch ----------------------------------------------------------------------------
    def patch(self, rtype, name, patch, patch_type="merge", namespace=None, *, subresource=None, dry_run=False,
              user=None, admission=True):
        rt = self.rt(rtype)
        return self._run(lambda: self._patch_locked(rt, name, patch, patch_type, namespace, subresource, dry_run,
                                                    user, admission))

    def _patch_locked(self, rt, name, patch, patch_type, namespace, subresource, dry_run, user, admission):
        ns = (namespace or "default") if rt.namespaced else ""
        cur = self._rec(rt, ns, name)
        if cur is None:
            if patch_type == "apply" and subresource is None and isinstance(patch, dict):
                body = clone(patch)
                body.setdefault("metadata", {})
                if body["metadata"].get("name") not in (None, name):
                    raise ApiError.bad_request(f"the name of the object ({body['metadata']['name']}) does not "
                                               f"match the name on the URL ({name})")
                body["metadata"]["name"] = name
                return self._create_locked(rt, body, ns or None, dry_run, user, admission, None)
            raise ApiError.not_found(rt, name)
        if subresource == "scale":
            if not rt.has_scale:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            scale = self.scale_of(rt, cur.obj)
            patched = apply_patch(scale, patch, patch_type, custom=False)
            return self._update_scale(rt, cur, patched, dry_run, user, admission)
        doc = cur.copy()
        patched = apply_patch(doc, patch, patch_type, custom=rt.custom)
        if not isinstance(patched, dict):
            raise ApiError.bad_request("the patched object is not an object")
        pmeta = patched.get("metadata")
        if not isinstance(pmeta, dict):
            pmeta = patched["metadata"] = {}
        if pmeta.get("name") != name:
            raise ApiError.invalid(rt, name, [("metadata.name", "Invalid", pmeta.get("name"),
                                               "field is immutable")])
        if not pmeta.get("resourceVersion"):
            pmeta["resourceVersion"] = cur.obj["metadata"].get("resourceVersion")
        # (status changes through the main resource are ignored by _update_locked)
        return self._update_locked(rt, cur, patched, subresource, dry_run, user, admission)

    # ---- delete ---------------------------------------------------------------------------
    def delete(self, rtype, name, namespace=None, *, propagation=None, preconditions=None, dry_run=False,
               user=None, admission=True, grace_period_seconds=None):
        rt = self.rt(rtype)
        return self._run(lambda: self._delete_entry(rt, name, namespace, propagation, preconditions, dry_run,
                                                    user, admission, grace_period_seconds))

    def _delete_entry(self, rt, name, namespace, propagation, preconditions, dry_run, user, admission,
                      grace=None):
        ns = (namespace or "default") if rt.namespaced else ""
        cur = self._rec(rt, ns, name)
        if cur is None:
            raise ApiError.not_found(rt, name)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != cur.obj["metadata"].get("uid"):
            raise ApiError.conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                                              f"object meta: {cur.obj['metadata'].get('uid')}")
        if pre.get("resourceVersion") and str(pre["resourceVersion"]) != cur.obj["metadata"].get("resourceVersion"):
            raise ApiError.conflict(rt, name, f"Precondition failed: ResourceVersion in precondition: "
                                              f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                                              f"{cur.obj['metadata'].get('resourceVersion')}")
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError.invalid(ResourceType("meta.k8s.io", "v1", "deleteoptions", "DeleteOptions", False), "",
                                   [("propagationPolicy", "NotSupported", propagation,
                                     'supported values: "Foreground", "Background", "Orphan", "nil"')])
        if admission:
            self._admit("DELETE", rt, cur.copy(), cur.copy(), dry_run, user)
        if dry_run:
            return cur.copy()
        return self._delete_locked(rt, cur, propagation or "Background", grace)

    def _delete_locked(self, rt, cur: Rec, propagation: str, grace=None):
        obj = cur.obj
        meta = obj["metadata"]
        if rt.key == "pods" and self._pod_terminate_seconds > 0:
            pending = self._graceful_pod_delete(rt, cur, grace)
            if pending is not None:
                return pending
        if rt.key == NAMESPACES:
            if meta.get("deletionTimestamp"):
                return cur.copy()
            new = clone(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new.setdefault("status", {})["phase"] = "Terminating"
            rec = self._store(rt, new, cur, "MODIFIED")
            threading.Thread(target=self._finalize_namespace, args=(meta["name"],), daemon=True,
                             name=f"ns-finalizer-{meta['name']}").start()
            return rec.copy()
        if propagation == "Foreground":
            for dep in self._dependents(meta.get("uid")):
                self._gc_dependent(dep, meta.get("uid"), "Foreground")
        finalizers = [f for f in meta.get("finalizers") or [] if f not in ("foregroundDeletion", "orphan")]
        if finalizers:
            if meta.get("deletionTimestamp"):
                return cur.copy()
            new = clone(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            rec = self._store(rt, new, cur, "MODIFIED")
            return rec.copy()
        return self._finish_delete(rt, cur, propagation).copy()

    def _graceful_pod_delete(self, rt, cur: Rec, grace):
        """Pods on a node terminate gracefully: deletionTimestamp now+grace, removal after the
        simulated termination time (``options.pod_terminate_seconds``).  ``None`` = delete now."""
        obj = cur.obj
        meta, spec = obj["metadata"], obj.get("spec") or {}
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        phase = (obj.get("status") or {}).get("phase")
        if grace <= 0 or not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return None
        if meta.get("deletionTimestamp"):
            return cur.copy()
        new = clone(obj)
        when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(grace))
        new["metadata"]["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        new["metadata"]["deletionGracePeriodSeconds"] = int(grace)
        rec = self._store(rt, new, cur, "MODIFIED")
        self._schedule_reap(meta.get("namespace", ""), meta["name"], meta.get("uid"),
                            min(float(grace), self._pod_terminate_seconds))
        return rec.copy()

    def _schedule_reap(self, ns, name, uid, delay):
        with self._reap_cond:
            heapq.heappush(self._reap_heap, (time.monotonic() + delay, ns, name, uid))
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, name="kubesim-pod-reaper", daemon=True)
                self._reaper.start()
            self._reap_cond.notify()

    def _reap_loop(self):
        prt = self.registry.get("pods")
        while not self.closed:
            with self._reap_cond:
                while not self.closed and (not self._reap_heap or self._reap_heap[0][0] > time.monotonic()):
                    wait = self._reap_heap[0][0] - time.monotonic() if self._reap_heap else None
                    self._reap_cond.wait(wait if wait is None else max(wait, 0.001))
                if self.closed:
                    return
                _, ns, name, uid = heapq.heappop(self._reap_heap)

            def work():
                rec = self._rec(prt, ns, name)
                if rec is None or rec.obj["metadata"].get("uid") != uid:
                    return
                m = rec.obj["metadata"]
                if m.get("deletionTimestamp") and not m.get("finalizers"):
                    self._finish_delete(prt, rec, "Background")

            try:
                self._run(work)
            except Exception:  # keep reaping
                import traceback
                traceback.print_exc()

    def _finish_delete(self, rt, cur: Rec, propagation: str) -> Rec:
        meta = cur.obj["metadata"]
        gone = self._remove(rt, cur)
        uid = meta.get("uid")
        for dep in self._dependents(uid):
            self._gc_dependent(dep, uid, "Orphan" if propagation == "Orphan" else "Background")
        if rt.key == CRDS:
            crt = self.registry.unregister_crd(cur.obj)
            if crt is not None:
                by_ns = self._data.pop(crt.key, {}) or {}
                for b in by_ns.values():
                    for rec in list(b.values()):
                        self._index_owners(crt, rec.obj, None)
                        rv = self._next_rv()
                        g = clone(rec.obj)
                        g["metadata"]["resourceVersion"] = str(rv)
                        self._record(crt, "DELETED", Rec(g), rec, rv)
        return gone

    def _dependents(self, uid):
        if not uid:
            return []
        return sorted(self._owners.get(uid, ()))

    def _gc_dependent(self, ident, owner_uid, propagation):
        key, ns, name = ident
        drt = self.registry.get(key)
        if drt is None:
            return
        rec = self._rec(drt, ns, name)
        if rec is None:
            return
        refs = rec.obj["metadata"].get("ownerReferences") or []
        others = [r for r in refs if r.get("uid") != owner_uid]
        if propagation == "Orphan" or any(self._uid_alive(r) for r in others):
            new = clone(rec.obj)
            new["metadata"]["ownerReferences"] = others
            if not others:
                del new["metadata"]["ownerReferences"]
            self._store(drt, new, rec, "MODIFIED")
            return
        self._delete_locked(drt, rec, propagation)

    def _uid_alive(self, ref) -> bool:
        rt = self.registry.by_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if rt is None:
            return False
        # owners must be in the same namespace (or cluster-scoped); scan the candidates
        by_ns = self._data.get(rt.key) or {}
        for b in by_ns.values():
            rec = b.get(ref.get("name"))
            if rec is not None and rec.obj["metadata"].get("uid") == ref.get("uid"):
                return True
        return False

    def _finalize_namespace(self, ns: str):
        time.sleep(0.05)

        def work():
            for key in list(self._data):
                rt = self.registry.get(key)
                if rt is None or not rt.namespaced:
                    continue
                b = (self._data.get(key) or {}).get(ns)
                if not b:
                    continue
                for name in sorted(b):
                    rec = b.get(name)
                    if rec is not None:
                        self._finish_delete(rt, rec, "Background")
            nsrt = self.registry.get(NAMESPACES)
            rec = self._rec(nsrt, "", ns)
            if rec is not None and rec.obj["metadata"].get("deletionTimestamp"):
                new = clone(rec.obj)
                (new.get("spec") or {}).pop("finalizers", None)
                if not new["metadata"].get("finalizers"):
                    self._finish_delete(nsrt, rec, "Background")
                else:
                    self._store(nsrt, new, rec, "MODIFIED")

        if not self.closed:
            self._run(work)

    def delete_collection(self, rtype, namespace=None, label_selector=None, field_selector=None, *,
                          propagation=None, dry_run=False, user=None, admission=True) -> list:
        rt = self.rt(rtype)

        def work():
            recs, _ = self.list_recs(rt, namespace, label_selector, field_selector)
            out = []
            for rec in recs:
                m = rec.obj["metadata"]
                try:
                    out.append(self._delete_entry(rt, m["name"], m.get("namespace"), propagation, None, dry_run,
                                                  user, admission))
                except ApiError as e:
                    if e.code != 404:
                        raise
            return out

        return self._run(work)

    # ---- watch support --------------------------------------------------------------------
    def events_since(self, rtype, since_rv: int):
        """-> list of (rv, type, Rec, old Rec|None) with rv > since_rv for that type.
        Raises ApiError 410 Expired when ``since_rv`` is older than the kept history."""
        rt = self.rt(rtype)
        with self.lock:
            floor = self._floor.get(rt.key, 0)
            if since_rv < floor:
                raise ApiError.expired(f"too old resource version: {since_rv} ({floor + 1})")
            if since_rv < self._watch_floor:
                raise ApiError.expired(f"too old resource version: {since_rv} ({self._watch_floor})")
            rvs = self._history_rvs.get(rt.key)
            if not rvs:
                return []
            i = bisect.bisect_right(rvs, since_rv)
            return self._history[rt.key][i:]

    def wait_for_change(self, seen_rv: int, timeout: float) -> bool:
        with self._cond:
            if self._rv != seen_rv:
                return True
            self._cond.wait(timeout)
            return self._rv != seen_rv

    # ---- API server outage (kubesim.faults.Outage) -------------------------------------------
    def suspend_writes(self):
        """The API server is down: writers wait in ``_run`` until ``resume_writes``."""
        self._writable.clear()

    def resume_writes(self):
        self._writable.set()

    def restart_watch_cache(self):
        """A restarted API server fills its watch cache with a fresh list at the current
        resourceVersion: watches from an older one get 410 Expired and must re-list
        (k8s.io/apiserver/pkg/storage/cacher, watch cache ``oldest = listResourceVersion + 1``)."""
        with self.lock:
            self._watch_floor = self._rv
        self.wake_watchers()

    def wake_watchers(self):
        with self._cond:
            self._cond.notify_all()

    def bump(self, rtype, namespace, name):
        """A concurrent writer's update that changed only what kubesim does not keep
        (``metadata.managedFields`` of another field manager): a new resourceVersion and a MODIFIED
        event, same content.  -> the new resourceVersion, or None when the object does not exist."""
        rt = self.rt(rtype)

        def work():
            rec = self._rec(rt, (namespace or "") if rt.namespaced else "", name)
            if rec is None:
                return None
            return int(self._store(rt, clone(rec.obj), rec, "MODIFIED").obj["metadata"]["resourceVersion"])

        return self._run(work)

    def close(self):
        self.closed = True
        self._writable.set()
        with self._cond:
            self._cond.notify_all()
        with self._reap_cond:
            self._reap_cond.notify_all()

    # ---- helpers for controllers -------------------------------------------------------------
    def allocate_ip(self, prefix="10.96") -> str:
        with self.lock:
            self._ip_counter += 1
            n = self._ip_counter
        return f"{prefix}.{(n // 250) % 250}.{n % 250 + 1}"


def _as_label_pred(sel):
    if sel is None or sel == "":
        return None
    if isinstance(sel, LabelSelector):
        return None if sel.empty() else sel.matches
    if isinstance(sel, dict):
        return lambda labels: match_label_selector(sel, labels)
    if callable(sel):
        return sel
    parsed = LabelSelector.parse(sel)
    return None if parsed.empty() else parsed.matches
