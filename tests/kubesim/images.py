"""Images missing from the registry: ``--missing-image PATTERN`` (repeatable; test harness).

A container whose image reference matches a pattern (``fnmatch`` glob, tried on the reference as written
and on its fully qualified form, e.g. ``docker.io/istio/proxyv2:1.29.6``) never starts: the kubelet's pulls
fail and it backs off, as pkg/kubelet/images/image_manager.go does (v1.32):

* each attempt: events ``Pulling`` ("Pulling image "X""), ``Failed`` ("Failed to pull image "X": rpc error:
  code = NotFound desc = failed to pull and unpack image ...: not found", containerd's text) and ``Failed``
  ("Error: ErrImagePull"); the container waits with reason ``ErrImagePull`` and that CRI message;
* then, while backing off (10 s doubling to 300 s on a real node; here ``--pod-ready-seconds`` (at least 1 s)
  doubling to 30 times that): events ``BackOff`` ("Back-off pulling image "X"") and ``Failed``
  ("Error: ImagePullBackOff"); the container waits with reason ``ImagePullBackOff`` and message
  ``Back-off pulling image "X": ErrImagePull: <the CRI message>``.

The pod stays Pending and never Ready (pkg/kubelet/kubelet_pods.go getPhase: a waiting container means
Pending).  A missing init container -- a native sidecar (``restartPolicy: Always``) included -- blocks the
ones after it and every main container (``PodInitializing``), with ``Initialized=False``
("containers with incomplete status: [...]"); a missing main container leaves the others running.
Repeated events are aggregated like client-go's event correlator (``count`` and ``lastTimestamp`` move).
Pods that exist when the simulator starts are the cluster's state so far (their images were pulled long
ago) and are left alone.
"""

from __future__ import annotations

import fnmatch
import logging
import time

from .errors import ApiError

log = logging.getLogger("kubesim.images")

EVENTS = "events"


def qualified(ref: str) -> str:
    """The reference as a container runtime resolves it: registry and tag made explicit."""
    name, digest = ref, ""
    if "@" in name:
        name, digest = name.split("@", 1)
        digest = "@" + digest
    first, _, rest = name.partition("/")
    if not rest or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + (name if rest else "library/" + name)
    if not digest and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + digest


def cri_not_found(ref: str) -> str:
    q = qualified(ref)
    return (f'rpc error: code = NotFound desc = failed to pull and unpack image "{q}": failed to resolve reference '
            f'"{q}": {q}: not found')


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ImagePuller:
    """The kubelet's image pulls for containers whose image the registry does not have."""

    def __init__(self, cm, patterns):
        self.cm = cm
        self.store = cm.store
        self.patterns = list(patterns or [])
        self._attempts: dict = {}  # pod uid -> (attempt number, "ErrImagePull" | "ImagePullBackOff")
        self._events: dict = {}  # (pod uid, reason, message) -> event name (aggregation)

    def missing(self, image: str) -> bool:
        image = image or ""
        return any(fnmatch.fnmatchcase(image, p) or fnmatch.fnmatchcase(qualified(image), p)
                   for p in self.patterns)

    def forget(self, uid):
        self._attempts.pop(uid, None)
        for k in [k for k in self._events if k[0] == uid]:
            del self._events[k]

    def _base(self) -> float:
        return max(self.cm.pod_ready_seconds, 1.0)

    def apply(self, pod: dict, status: dict) -> float | None:
        """Rewrite the kubelet's status of a starting pod for the containers whose image is missing.
        -> seconds until the kubelet's next step for this pod, or None when nothing is missing."""
        if self.cm._settling:
            return None
        spec = pod.get("spec") or {}
        inits = spec.get("initContainers") or []
        mains = spec.get("containers") or []
        blocking = next((i for i, c in enumerate(inits) if self.missing(c.get("image", ""))), None)
        if blocking is not None:
            pulling = [inits[blocking]]
        else:
            pulling = [c for c in mains if self.missing(c.get("image", ""))]
        uid = pod["metadata"].get("uid")
        if not pulling:
            self.forget(uid)
            return None
        attempt, state = self._attempts.get(uid, (0, "ImagePullBackOff"))
        if state == "ImagePullBackOff":  # back-off over (or first try): pull again
            attempt, state = attempt + 1, "ErrImagePull"
            delay = min(self._base() / 2, 2.0)
        else:
            state = "ImagePullBackOff"
            delay = min(self._base() * 2 ** (attempt - 1), 30 * self._base())
        self._attempts[uid] = (attempt, state)
        names = {c["name"] for c in pulling}
        waiting = {}
        for c in pulling:
            cri = cri_not_found(c.get("image", ""))
            if state == "ErrImagePull":
                msg = cri
                self._record(pod, c, "Normal", "Pulling", f'Pulling image "{c.get("image", "")}"')
                self._record(pod, c, "Warning", "Failed", f'Failed to pull image "{c.get("image", "")}": {cri}')
                self._record(pod, c, "Warning", "Failed", "Error: ErrImagePull")
            else:
                msg = f'Back-off pulling image "{c.get("image", "")}": ErrImagePull: {cri}'
                self._record(pod, c, "Normal", "BackOff", f'Back-off pulling image "{c.get("image", "")}"')
                self._record(pod, c, "Warning", "Failed", "Error: ImagePullBackOff")
            waiting[c["name"]] = {"reason": state, "message": msg}
        self._rewrite(pod, status, waiting, blocking)
        return delay

    def _rewrite(self, pod, st, waiting: dict, blocking):
        spec = pod.get("spec") or {}
        inits = spec.get("initContainers") or []

        def blank(c, reason, message=None):
            w = {"reason": reason}
            if message:
                w["message"] = message
            return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "restartCount": 0,
                    "started": False, "state": {"waiting": w}}

        if blocking is not None:
            init_st = {s["name"]: s for s in st.get("initContainerStatuses") or []}
            out = []
            for i, c in enumerate(inits):
                if i < blocking:
                    out.append(init_st.get(c["name"]) or blank(c, "PodInitializing"))
                elif i == blocking:
                    out.append(blank(c, waiting[c["name"]]["reason"], waiting[c["name"]]["message"]))
                else:
                    out.append(blank(c, "PodInitializing"))
            st["initContainerStatuses"] = out
            st["containerStatuses"] = [blank(c, "PodInitializing") for c in spec.get("containers") or []]
            incomplete = [c["name"] for c in inits[blocking:]]
        else:
            st["containerStatuses"] = [blank(c, waiting[c["name"]]["reason"], waiting[c["name"]]["message"])
                                       if c["name"] in waiting else s
                                       for c, s in zip(spec.get("containers") or [], st.get("containerStatuses") or [])]
            incomplete = []
        unready = [s["name"] for c, s in zip(inits, st.get("initContainerStatuses") or [])
                   if c.get("restartPolicy") == "Always" and not s.get("ready")]
        unready += [s["name"] for s in st.get("containerStatuses") or [] if not s.get("ready")]
        now = _now_iso()
        conds = []
        for c in st.get("conditions") or []:
            c = dict(c)
            if c["type"] == "Initialized" and incomplete:
                self._set(c, "False", "ContainersNotInitialized",
                          f"containers with incomplete status: [{' '.join(incomplete)}]", now)
            elif c["type"] in ("Ready", "ContainersReady"):
                self._set(c, "False", "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]",
                          now)
            conds.append(c)
        st["conditions"] = conds
        st["phase"] = "Pending"

    @staticmethod
    def _set(cond, status, reason, message, now):
        if cond.get("status") != status:
            cond["lastTransitionTime"] = now
        cond.update(status=status, reason=reason, message=message)

    def _record(self, pod, container, etype, reason, message):
        """Record a kubelet event about one container, aggregating repeats (client-go EventCorrelator)."""
        meta = pod["metadata"]
        uid, ns = meta.get("uid"), meta.get("namespace")
        now = _now_iso()
        key = (uid, reason, message)
        name = self._events.get(key)
        if name is not None:
            ev = self.cm._get(EVENTS, ns, name)
            if ev is not None:
                ev["count"] = int(ev.get("count") or 1) + 1
                ev["lastTimestamp"] = now
                try:
                    self.store.update(EVENTS, ev)
                    return
                except ApiError as e:
                    log.debug("event not updated: %s", e)
        field = "spec.initContainers" if any(c.get("name") == container["name"]
                                             for c in (pod.get("spec") or {}).get("initContainers") or []) \
            else "spec.containers"
        node = (pod.get("spec") or {}).get("nodeName") or ""
        name = f"{meta['name']}.{self.cm.rng.getrandbits(64):016x}"
        ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": ns},
              "involvedObject": {"kind": "Pod", "namespace": ns, "name": meta["name"], "uid": uid, "apiVersion": "v1",
                                 "resourceVersion": meta.get("resourceVersion"),
                                 "fieldPath": f"{field}{{{container['name']}}}"},
              "reason": reason, "message": message, "type": etype, "source": {"component": "kubelet", "host": node},
              "firstTimestamp": now, "lastTimestamp": now, "count": 1,
              "reportingComponent": "kubelet", "reportingInstance": node}
        try:
            self.store.create(EVENTS, ev)
            self._events[key] = name
        except ApiError as e:
            log.debug("event not recorded: %s", e)
