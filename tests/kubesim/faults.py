"""API server faults that a random error code cannot model (test harness).

``--conflict-rate R`` (:class:`ConcurrentWriter`)
    Before that fraction of writes (PUT, PATCH, DELETE of a named object, subresources included) another
    client writes the object first: its resourceVersion moves on (kubesim keeps no managedFields, so the
    other writer's change is invisible apart from the new resourceVersion and a MODIFIED watch event).
    What the client then gets is what the real API server answers in that race
    (k8s.io/apiserver/pkg/registry/generic/registry/store.go ``Update``, handlers/patch.go): a PUT or an
    apply/patch that carries ``metadata.resourceVersion``, or a DELETE with a resourceVersion
    precondition, fails with 409 Conflict ``Operation cannot be fulfilled on deployments.apps "foo": the
    object has been modified; please apply your changes to the latest version and try again``; a PUT
    without resourceVersion and a patch without one succeed, because the real server's
    GuaranteedUpdate re-applies them to the fresh object.

``POST /kubesim/outage?seconds=N`` (bearer token needed; :class:`Outage`)
    The API server restarts and stays away for N seconds, like a managed control plane being upgraded:
    it stops accepting (new connections are refused: ECONNREFUSED), lets in-flight requests finish,
    ends every open watch and closes every connection, then after N seconds listens again on the same
    address with the same objects, resourceVersions continuing where they were.  Its watch cache comes
    back filled from a fresh list, so a watch resumed from an older resourceVersion gets 410 Expired
    ("too old resource version") and must re-list, as after a real restart
    (k8s.io/apiserver/pkg/storage/cacher/watch_cache.go: ``oldest = listResourceVersion + 1``).
    The rest of the control plane keeps running but writes only through the API server: controllers,
    schedulers and kubelets wait for it (their caches keep serving reads), so nothing in the cluster
    changes while it is down and delayed work (rollouts, pod readiness) resumes when it is back.  The
    answer is 202 with ``{"kind": "Outage", "seconds": N}``; ``/kubesim/metrics`` is unreachable too.
    ``/kubesim/stats`` reports the last outage as ``faults.last_outage`` (``seconds``,
    ``resourceVersionAtStop``, ``resourceVersionAtRestart``: equal, since nothing can write meanwhile).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from .errors import ApiError

log = logging.getLogger("kubesim.faults")

WRITE_VERBS = ("update", "patch", "delete")


class ConcurrentWriter:
    """``--conflict-rate``: another writer gets there first."""

    def __init__(self, server, rate: float):
        self.server = server
        self.rate = float(rate or 0.0)
        self.count = 0

    def before_write(self, info, rt, namespace):
        if self.rate <= 0 or info.verb not in WRITE_VERBS or not info.name:
            return
        if self.server.fault_roll(self.rate) is None:
            return
        if self.server.store.bump(rt, namespace, info.name) is not None:
            self.count += 1


class Outage:
    """``POST /kubesim/outage``: the API server goes away and comes back."""

    MAX_SECONDS = 3600.0
    DRAIN_SECONDS = 10.0  # in-flight requests get that long to finish (a graceful apiserver shutdown)

    def __init__(self, server):
        self.server = server
        self._cv = threading.Condition()
        self.down = False
        self.count = 0
        self.last: dict = {}  # the last outage: seconds and the store's resourceVersion when it stopped/restarted
        self._inflight = 0
        self._connections: set = set()

    # -- requests and connections --------------------------------------------------------
    def enter(self) -> bool:
        """A request starts; False when the server is going down (the caller drops the connection)."""
        with self._cv:
            if self.down:
                return False
            self._inflight += 1
            return True

    def leave(self):
        with self._cv:
            self._inflight -= 1
            if self._inflight <= 0:
                self._cv.notify_all()

    def track(self, sock):
        with self._cv:
            self._connections.add(sock)

    def untrack(self, sock):
        with self._cv:
            self._connections.discard(sock)

    # -- the outage ------------------------------------------------------------------------
    @classmethod
    def parse_seconds(cls, query: dict) -> float:
        raw = query.get("seconds")
        try:
            seconds = float(raw)
        except (TypeError, ValueError):
            raise ApiError.bad_request(f"outage: seconds must be a number of seconds, got {raw!r}")
        if not 0 < seconds <= cls.MAX_SECONDS:
            raise ApiError.bad_request(f"outage: seconds must be > 0 and <= {cls.MAX_SECONDS:g}, got {raw}")
        return seconds

    def start(self, seconds: float):
        """Stop listening now (the caller then answers on its open connection); the rest follows in
        a thread."""
        srv = self.server
        with self._cv:
            if self.down:
                raise ApiError(409, "Conflict", "an outage is already under way")
            self.down = True
            self.count += 1
        srv.store.wake_watchers()  # open watches see `down` and end
        srv.shutdown()  # stop accepting ...
        srv.socket.close()  # ... and refuse: nothing listens on the port any more
        threading.Thread(target=self._run, args=(seconds,), name="kubesim-outage", daemon=True).start()

    def _run(self, seconds: float):
        srv = self.server
        store = srv.store
        deadline = time.monotonic() + self.DRAIN_SECONDS
        with self._cv:
            while self._inflight > 0 and time.monotonic() < deadline:
                self._cv.wait(0.05)
            conns = list(self._connections)
        store.suspend_writes()
        stopped_rv = store.current_resource_version()
        for sock in conns:  # idle keep-alive connections (and anything that outlived the drain)
            try:
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        end = time.monotonic() + seconds
        while not srv.stopping and time.monotonic() < end:
            time.sleep(min(0.1, max(end - time.monotonic(), 0.001)))
        self.last = {"seconds": seconds, "resourceVersionAtStop": str(stopped_rv),
                     "resourceVersionAtRestart": str(store.current_resource_version())}
        store.restart_watch_cache()
        store.resume_writes()
        if srv.stopping:
            return
        if not self._listen_again():
            log.error("kubesim: could not listen on %s again after the outage", srv.server_address)
            return
        with self._cv:
            self.down = False
        srv.serve_in_thread()

    def _listen_again(self) -> bool:
        srv = self.server
        for _ in range(100):
            sock = socket.socket(srv.address_family, srv.socket_type)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(srv.server_address[:2])
                sock.listen(srv.request_queue_size)
            except OSError:
                sock.close()
                time.sleep(0.1)
                continue
            srv.socket = sock
            return True
        return False
