"""Nodes, disruption and Istio's ambient data plane in the simulated cluster (test harness).

Always on (kubesim.cli CORE_EXTENSIONS).  What it models, and the real source each part follows:

* **Eviction API with PodDisruptionBudgets** (kubernetes ``pkg/registry/core/pod/storage/eviction.go``): a
  ``pods/eviction`` create deletes the pod unless a budget would break -- then ``429 TooManyRequests`` "Cannot
  evict pod as it would violate the pod's disruption budget." with a ``DisruptionBudget`` cause ("The
  disruption budget NAME needs N healthy pods and has M currently"); a pod with two budgets is a 500; pods that
  are Pending/Succeeded/Failed/terminating ignore budgets; an unready pod is evicted without spending the budget
  while the budget is healthy.  A successful eviction decrements ``status.disruptionsAllowed`` and records
  the pod in ``status.disruptedPods``, as the API server does, so the real ``kubectl drain`` works here.
* **Disruption controller** (``pkg/controller/disruption``): keeps each budget's ``currentHealthy``,
  ``desiredHealthy``, ``expectedPods``, ``disruptionsAllowed``, ``observedGeneration`` and its
  ``DisruptionAllowed`` condition (``SufficientPods`` / ``InsufficientPods``).
* **Cordon**: the node lifecycle controller's ``node.kubernetes.io/unschedulable:NoSchedule`` taint follows
  ``spec.unschedulable`` (daemon pods tolerate it, kubesim.controllers).
* **ztunnel** (Istio ``manifests/charts/ztunnel``): a ztunnel pod (container ``istio-proxy`` with args
  ``proxy ztunnel``) becomes Ready only once the istiod of its ``XDS_ADDRESS``/``CA_ADDRESS``
  (``istiod-<revision>.<ns>.svc:15012``) has a Ready pod: it takes its certificates and config from there.  Per
  node, the times when no Ready ztunnel served the node are recorded (``GET /kubesim/ztunnel``).
* **istio-cni's node agent** (``cni/pkg/nodeagent``): pods of namespaces labelled
  ``istio.io/dataplane-mode=ambient`` (unless the pod opts out with ``istio.io/dataplane-mode=none`` or has a
  sidecar) get ``ambient.istio.io/redirection: enabled`` once the node's ``istio-cni-node`` pod is Ready; the
  annotation goes when the namespace leaves ambient.
* **istiod's gateway deployment controller** (``pilot/pkg/config/kube/gatewaycommon/deploymentcontroller.go``,
  ``classinfo.go``, ``pkg/revisions/tag_watcher.go``, templates ``kube-gateway.yaml``/``waypoint.yaml`` of the
  istio-discovery chart): for every Gateway of class ``istio`` or ``istio-waypoint`` (or a GatewayClass with
  controller ``istio.io/gateway-controller`` / ``istio.io/mesh-controller``), each serving revision decides
  with ``IsMine`` -- the Gateway's ``istio.io/rev`` label, else its namespace's, else the default tag or
  default revision; a revision's tags come from ``istio-revision-tag-*`` webhooks and tag Services -- and
  applies ServiceAccount, Deployment and Service named ``<gateway>-istio`` (class istio) or ``<gateway>``
  (waypoint), labelled ``gateway.networking.k8s.io/gateway-name``, pods annotated ``istio.io/rev: <revision>``
  running ``<hub>/proxyv2:<that istiod's version>``.  When a tag moves, the revision it now points at
  re-renders the Deployments and they roll by themselves.  A Deployment not carrying
  ``gateway.istio.io/managed`` is left alone (canManage).  The builtin GatewayClasses are created as istiod does.
"""

from __future__ import annotations

import threading
import time

from . import istio
from .controllers import (DEPLOY, NODES, PODS, SERVICES, _clone, controller_ref, now_iso, parse_iso, pod_ready,
                          set_condition, terminating)
from .errors import ApiError
from .istiod_webhooks import _serving_revisions
from .resources import SUBRESOURCE_HANDLERS
from .selectors import match_label_selector

PDB = "poddisruptionbudgets.policy"
NAMESPACES = "namespaces"
MWC = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
VWC = "validatingwebhookconfigurations.admissionregistration.k8s.io"
GATEWAYS = "gateways.gateway.networking.k8s.io"
GATEWAY_CLASSES = "gatewayclasses.gateway.networking.k8s.io"
SA = "serviceaccounts"
RS = "replicasets.apps"
STS = "statefulsets.apps"

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
DATAPLANE_MODE = "istio.io/dataplane-mode"
REDIRECTION = "ambient.istio.io/redirection"
GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"
GATEWAY_CLASS_NAME = "gateway.networking.k8s.io/gateway-class-name"
MANAGED = "gateway.istio.io/managed"
DEFAULT_VALIDATOR = "istiod-default-validator"
DEFAULT_TAG_WEBHOOK = "istio-revision-tag-default"

# classinfo.go: controller -> (template, no name suffix, Service type, managed label)
CLASSES = {
    "istio.io/gateway-controller": ("kube-gateway", False, "LoadBalancer", "istio.io-gateway-controller"),
    "istio.io/mesh-controller": ("waypoint", True, "ClusterIP", "istio.io-mesh-controller"),
}
BUILTIN_CLASSES = {"istio": "istio.io/gateway-controller", "istio-waypoint": "istio.io/mesh-controller",
                   "istio-remote": "istio.io/unmanaged-gateway"}
CLASS_DESCRIPTIONS = {"istio": "The default Istio GatewayClass",
                      "istio-waypoint": "The default Istio waypoint GatewayClass",
                      "istio-remote": "Remote to this cluster. Does not deploy or affect configuration."}


def _labels(obj) -> dict:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def _annotations(obj) -> dict:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


# ----------------------------------------------------------------------------------- eviction (API server)

def _too_many(pdb_name: str, message: str) -> ApiError:
    return ApiError(429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget.",
                    {"causes": [{"reason": "DisruptionBudget", "message": message}], "retryAfterSeconds": 0})


def _pdbs_for(store, pod) -> list:
    ns = pod["metadata"].get("namespace")
    out = []
    for pdb in store.list(PDB, ns):
        sel = (pdb.get("spec") or {}).get("selector")
        if sel is None:
            continue
        if match_label_selector(sel, _labels(pod)):
            out.append(pdb)
    return out


def evict(store, rt, ns, name, body, query, dry_run, user):
    """POST pods/NAME/eviction (policy/v1 Eviction), as eviction.go's EvictionREST.Create."""
    body = body or {}
    meta = body.get("metadata") or {}
    if meta.get("name") and meta.get("name") != name:
        raise ApiError.bad_request(f"name in URL does not match name in Eviction object")
    opts = body.get("deleteOptions") or {}
    dry_run = dry_run or "All" in (opts.get("dryRun") or [])
    grace = opts.get("gracePeriodSeconds")
    pod = store.get(PODS, ns, name)
    phase = (pod.get("status") or {}).get("phase")

    def delete():
        store.delete(PODS, name, ns, dry_run=dry_run, user=user, grace_period_seconds=grace)
        return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    if phase in ("Succeeded", "Failed", "Pending") or terminating(pod):
        return delete()
    with _EVICTION_LOCK:
        pdbs = _pdbs_for(store, pod)
        if len(pdbs) > 1:
            raise ApiError.internal("This pod has more than one PodDisruptionBudget, which the eviction "
                                    "subresource does not support.")
        if not pdbs:
            return delete()
        pdb = pdbs[0]
        st = pdb.get("status") or {}
        policy = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") or "IfHealthyBudget"
        if not pod_ready(pod):
            if policy == "AlwaysAllow":
                return delete()
            if int(st.get("currentHealthy") or 0) >= int(st.get("desiredHealthy") or 0) > 0:
                return delete()
        pname = pdb["metadata"]["name"]
        if int(st.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 1):
            raise _too_many(pname, f"The disruption budget {pname} is still being processed by the server.")
        allowed = int(st.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise ApiError.forbidden(store.rt(PDB), pname, "pdb disruptions allowed is negative")
        if allowed == 0:
            raise _too_many(pname, f"The disruption budget {pname} needs {int(st.get('desiredHealthy') or 0)} "
                                   f"healthy pods and has {int(st.get('currentHealthy') or 0)} currently")
        if not dry_run:
            pdb = _clone(pdb)
            st = pdb.setdefault("status", {})
            st["disruptionsAllowed"] = allowed - 1
            if allowed - 1 == 0:
                st["conditions"] = set_condition(st.get("conditions"), "DisruptionAllowed", "False",
                                                 "InsufficientPods", "", now_iso(), False)
            st.setdefault("disruptedPods", {})[name] = now_iso()
            store.update_status(PDB, pdb)
        return delete()


_EVICTION_LOCK = threading.Lock()


# ----------------------------------------------------------------------------------- ztunnel outages

class ZtunnelLog:
    """Per node: when no Ready ztunnel pod served it, and which ztunnel pods (and versions) served it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._state: dict = {}   # node -> (ready pod name or None)
        self._down: dict = {}    # node -> [[from, to|None], ...]
        self._served: dict = {}  # node -> [{"pod", "version", "since"}]

    def observe(self, node: str, ready_pod: str | None, version: str | None, first: bool):
        now = time.time()
        with self._lock:
            prev = self._state.get(node, "?")
            if prev == ready_pod:
                return
            self._state[node] = ready_pod
            spans = self._down.setdefault(node, [])
            if ready_pod is None:
                if not first and (not spans or spans[-1][1] is not None):
                    spans.append([now, None])
            else:
                if spans and spans[-1][1] is None:
                    spans[-1][1] = now
                served = self._served.setdefault(node, [])
                if not served or served[-1]["pod"] != ready_pod:
                    served.append({"pod": ready_pod, "version": version, "since": now})

    def snapshot(self) -> dict:
        with self._lock:
            return {"nodes": {n: {"ready_pod": self._state.get(n),
                                  "not_ready": [list(s) for s in self._down.get(n, [])],
                                  "served_by": [dict(s) for s in self._served.get(n, [])]}
                              for n in sorted(set(self._state) | set(self._down))}}


def is_ztunnel(pod) -> bool:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == "istio-proxy" and list(c.get("args") or [])[:2] == ["proxy", "ztunnel"]:
            return True
    return False


def is_cni_node(pod) -> bool:
    return _labels(pod).get("k8s-app") == "istio-cni-node"


def ztunnel_istiod(pod) -> str | None:
    """Service ``istiod-<rev>.<ns>`` the ztunnel takes config from (XDS_ADDRESS, then CA_ADDRESS)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") != "istio-proxy":
            continue
        env = {e.get("name"): e.get("value") for e in c.get("env") or []}
        addr = env.get("XDS_ADDRESS") or env.get("CA_ADDRESS") or "istiod.istio-system.svc:15012"
        return addr.split(":")[0]
    return None


# ----------------------------------------------------------------------------------- controllers

class AmbientControllers:
    """Disruption, node taints, ztunnel readiness, istio-cni redirection and istiod's gateway controller."""

    kinds = ("pdb", "pdb-ns", "node-taint", "zt-node", "zt-all", "cni-pod", "cni-node", "cni-ns", "gw", "gw-all")

    def __init__(self, log: ZtunnelLog):
        self.cm = None
        self.store = None
        self.zlog = log
        self._zt_seen: set = set()

    def attach(self, cm):
        self.cm = cm
        self.store = cm.store
        cm.readiness_checks.append(self.container_unready)

    # -- work keys ----------------------------------------------------------------------------------
    def initial_keys(self):
        keys = [("gw-all",), ("zt-all",)]
        keys += [("pdb", p["metadata"]["namespace"], p["metadata"]["name"]) for p in self.cm._ro_list(PDB)]
        keys += [("node-taint", n["metadata"]["name"]) for n in self.cm._ro_list(NODES)]
        keys += [("cni-ns", n["metadata"]["name"]) for n in self.cm._ro_list(NAMESPACES)]
        return keys

    def keys_for(self, event_type, key, obj):
        meta = (obj or {}).get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        out = []
        if key == PDB and event_type != "DELETED":
            out.append(("pdb", ns, name))
        elif key == PODS:
            out.append(("pdb-ns", ns))
            node = (obj.get("spec") or {}).get("nodeName")
            if is_ztunnel(obj):
                if node:
                    out.append(("zt-node", node))
            elif is_cni_node(obj):
                if node:
                    out.append(("cni-node", node))
            elif event_type != "DELETED":
                out.append(("cni-pod", ns, name))
            labels = meta.get("labels") or {}
            if labels.get("app") == "istiod":
                out += [("gw-all",), ("zt-all",)]
            if labels.get(GATEWAY_NAME) and event_type != "DELETED":
                out.append(("gw", ns, labels[GATEWAY_NAME]))
        elif key == NODES:
            out.append(("node-taint", name))
        elif key == NAMESPACES:
            out += [("cni-ns", name), ("gw-all",)]
        elif key == GATEWAYS and event_type != "DELETED":
            out.append(("gw", ns, name))
        elif key in (MWC, VWC, GATEWAY_CLASSES):
            out.append(("gw-all",))
        elif key == SERVICES and (meta.get("labels") or {}).get("istio.io/tag"):
            out.append(("gw-all",))
        elif key == DEPLOY and (meta.get("labels") or {}).get(GATEWAY_NAME) and event_type != "ADDED":
            out.append(("gw", ns, (meta.get("labels") or {})[GATEWAY_NAME]))
        return out

    def sync(self, key):
        kind = key[0]
        if kind == "pdb":
            self.sync_pdb(key[1], key[2])
        elif kind == "pdb-ns":
            for pdb in self.cm._ro_list(PDB, key[1]):
                self.sync_pdb(key[1], pdb["metadata"]["name"])
        elif kind == "node-taint":
            self.sync_node_taint(key[1])
        elif kind == "zt-node":
            self.sync_ztunnel_node(key[1])
        elif kind == "zt-all":
            self.sync_ztunnel_all()
        elif kind == "cni-pod":
            self.sync_cni_pod(key[1], key[2])
        elif kind == "cni-node":
            for p in self.cm._ro_list(PODS):
                if (p.get("spec") or {}).get("nodeName") == key[1]:
                    self.cm.push(("cni-pod", p["metadata"]["namespace"], p["metadata"]["name"]))
        elif kind == "cni-ns":
            for p in self.cm._ro_list(PODS, key[1]):
                self.cm.push(("cni-pod", key[1], p["metadata"]["name"]))
        elif kind == "gw":
            self.sync_gateway(key[1], key[2])
        elif kind == "gw-all":
            self.sync_gateway_classes()
            if self.store.registry.get(GATEWAYS) is not None:
                for gw in self.cm._ro_list(GATEWAYS):
                    self.cm.push(("gw", gw["metadata"]["namespace"], gw["metadata"]["name"]))

    # -- disruption controller --------------------------------------------------------------------------
    def _expected_scale(self, pods: list) -> int | None:
        """Sum of the scale of the pods' controllers (disruption.go getExpectedScale)."""
        seen, total = set(), 0
        for p in pods:
            ref = controller_ref(p)
            if ref is None:
                return None
            ns = p["metadata"]["namespace"]
            obj, scale = None, None
            if ref.get("kind") == "ReplicaSet":
                rs = self.cm._ro_get(RS, ns, ref.get("name"))
                dref = controller_ref(rs) if rs else None
                if dref and dref.get("kind") == "Deployment":
                    obj = self.cm._ro_get(DEPLOY, ns, dref.get("name"))
                else:
                    obj = rs
            elif ref.get("kind") == "StatefulSet":
                obj = self.cm._ro_get(STS, ns, ref.get("name"))
            elif ref.get("kind") == "ReplicationController":
                obj = self.cm._ro_get("replicationcontrollers", ns, ref.get("name"))
            if obj is None:
                return None
            uid = obj["metadata"].get("uid")
            if uid in seen:
                continue
            seen.add(uid)
            scale = (obj.get("spec") or {}).get("replicas")
            total += 1 if scale is None else int(scale)
        return total

    def sync_pdb(self, ns, name):
        pdb = self.cm._ro_get(PDB, ns, name)
        if pdb is None or terminating(pdb):
            return
        spec = pdb.get("spec") or {}
        sel = spec.get("selector")
        pods = [p for p in self.cm._ro_list(PODS, ns)
                if sel is not None and match_label_selector(sel, _labels(p)) and not terminating(p)]
        old = pdb.get("status") or {}
        now = time.time()
        disrupted = {}
        for pname, t in (old.get("disruptedPods") or {}).items():
            # an eviction the controller has not yet seen take effect (disruption.go buildDisruptedPodMap)
            p = next((x for x in pods if x["metadata"]["name"] == pname), None)
            when = parse_iso(t) or 0
            if p is not None and when + 120 > now:
                disrupted[pname] = t
        healthy = sum(1 for p in pods if pod_ready(p) and p["metadata"]["name"] not in disrupted)
        min_av, max_un = spec.get("minAvailable"), spec.get("maxUnavailable")
        if max_un is not None or (isinstance(min_av, str) and min_av.endswith("%")):
            expected = self._expected_scale(pods)
            if expected is None:
                expected = len(pods)
            if max_un is not None:
                desired = max(expected - _scaled(max_un, expected), 0)
            else:
                desired = _scaled(min_av, expected)
        else:
            expected = len(pods)
            desired = int(min_av) if min_av is not None else 0
        allowed = max(healthy - desired, 0)
        if expected <= 0:
            allowed = 0
        st = {"observedGeneration": pdb["metadata"].get("generation", 1), "disruptionsAllowed": allowed,
              "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected}
        if disrupted:
            st["disruptedPods"] = disrupted
        st["conditions"] = set_condition(
            old.get("conditions"), "DisruptionAllowed", "True" if allowed > 0 else "False",
            "SufficientPods" if allowed > 0 else "InsufficientPods", "", now_iso(), False)
        for c in st["conditions"]:
            c["observedGeneration"] = st["observedGeneration"]
        if st != old:
            cur = _clone(pdb)
            cur["status"] = st
            self.cm._update_status(PDB, cur)
        if disrupted:
            self.cm.after(10.0, ("pdb", ns, name))

    # -- cordon taint -----------------------------------------------------------------------------------
    def sync_node_taint(self, name):
        node = self.cm._ro_get(NODES, None, name)
        if node is None:
            return
        spec = node.get("spec") or {}
        taints = list(spec.get("taints") or [])
        has = any(t.get("key") == UNSCHEDULABLE_TAINT and t.get("effect") == "NoSchedule" for t in taints)
        want = bool(spec.get("unschedulable"))
        if has == want:
            return
        node = _clone(node)
        if want:
            taints.append({"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule", "timeAdded": now_iso()})
        else:
            taints = [t for t in taints if t.get("key") != UNSCHEDULABLE_TAINT]
        if taints:
            node["spec"]["taints"] = taints
        else:
            node["spec"].pop("taints", None)
        self.cm._update(NODES, node)

    # -- ztunnel ----------------------------------------------------------------------------------------
    def _istiod_ready(self, host: str) -> bool:
        svc, _, ns = host.partition(".")
        ns = ns.split(".")[0] or istio.ISTIO_NAMESPACE
        for p in self.cm._ro_list(PODS, ns):
            if terminating(p) or _labels(p).get("app") != "istiod" or not pod_ready(p):
                continue
            service = self.cm._ro_get(SERVICES, ns, svc)
            sel = ((service or {}).get("spec") or {}).get("selector") or {}
            if service is not None and sel and all(_labels(p).get(k) == v for k, v in sel.items()):
                return True
        return False

    def container_unready(self, pod) -> dict:
        """Readiness probes that fail: {container: reason}.  ztunnel's /healthz/ready needs its istiod."""
        if is_ztunnel(pod):
            host = ztunnel_istiod(pod)
            if host and not self._istiod_ready(host):
                return {"istio-proxy": f"no istiod serving {host}"}
        return {}

    def sync_ztunnel_all(self):
        nodes = set()
        for p in self.cm._ro_list(PODS):
            if is_ztunnel(p) and not terminating(p):
                nodes.add((p.get("spec") or {}).get("nodeName"))
                if (p.get("status") or {}).get("phase") == "Running":
                    want = not self.container_unready(p)
                    if want != pod_ready(p):  # the probe's result changed: the kubelet reports it
                        self.cm.push(("pod-tick", p["metadata"]["namespace"], p["metadata"]["name"],
                                      p["metadata"].get("uid")))
        for n in nodes:
            if n:
                self.sync_ztunnel_node(n)

    def sync_ztunnel_node(self, node):
        ready = None
        for p in self.cm._ro_list(PODS):
            if (p.get("spec") or {}).get("nodeName") == node and is_ztunnel(p) and not terminating(p) \
                    and pod_ready(p):
                ready = p
                break
        first = node not in self._zt_seen
        self._zt_seen.add(node)
        version = None
        if ready is not None:
            c = next((c for c in ready["spec"]["containers"] if c.get("name") == "istio-proxy"), {})
            version = istio.image_version(c.get("image", ""))
        self.zlog.observe(node, ready["metadata"]["name"] if ready else None, version, first and ready is None)

    # -- istio-cni node agent ---------------------------------------------------------------------------
    def _cni_ready(self, node) -> bool:
        for p in self.cm._ro_list(PODS):
            if is_cni_node(p) and (p.get("spec") or {}).get("nodeName") == node and not terminating(p) \
                    and pod_ready(p):
                return True
        return False

    def sync_cni_pod(self, ns, name):
        pod = self.cm._ro_get(PODS, ns, name)
        if pod is None or terminating(pod):
            return
        nsobj = self.cm._ro_get(NAMESPACES, None, ns)
        spec = pod.get("spec") or {}
        ann = _annotations(pod)
        enrolled = ann.get(REDIRECTION) == "enabled"
        ambient_ns = _labels(nsobj).get(DATAPLANE_MODE) == "ambient"
        pod_mode = _labels(pod).get(DATAPLANE_MODE)
        wanted = (pod_mode == "ambient" or (ambient_ns and pod_mode != "none")) and not spec.get("hostNetwork") \
            and "sidecar.istio.io/status" not in ann and ns != "kube-system"
        if wanted and not enrolled:
            if not (pod.get("status") or {}).get("podIP") or not self._cni_ready(spec.get("nodeName")):
                return
            pod = _clone(pod)
            pod["metadata"].setdefault("annotations", {})[REDIRECTION] = "enabled"
            self.cm._update(PODS, pod)
        elif enrolled and not wanted:
            pod = _clone(pod)
            pod["metadata"]["annotations"].pop(REDIRECTION, None)
            self.cm._update(PODS, pod)

    # -- istiod's gateway controller --------------------------------------------------------------------
    def _revisions(self) -> dict:
        """Serving revisions -> (version, hub) of their istiod."""
        out = {}
        serving = _serving_revisions(self.store)
        for p in self.cm._ro_list(PODS, istio.ISTIO_NAMESPACE):
            rev = _labels(p).get("istio.io/rev") or istio.DEFAULT_REVISION
            if _labels(p).get("app") != "istiod" or rev not in serving or terminating(p) or not pod_ready(p):
                continue
            c = next((c for c in (p.get("spec") or {}).get("containers") or [] if c.get("name") == "discovery"),
                     None)
            if c is None:
                continue
            image = c.get("image", "")
            hub = image.rsplit("/", 1)[0] if "/" in image else istio.HUB
            out.setdefault(rev, (istio.image_version(image) or "", hub))
        return out

    def _my_tags(self, rev) -> set:
        tags = {rev}
        for wh in self.cm._ro_list(MWC):
            labels = _labels(wh)
            if labels.get("istio.io/rev") == rev and labels.get("istio.io/tag"):
                tags.add(labels["istio.io/tag"])
        for svc in self.cm._ro_list(SERVICES, istio.ISTIO_NAMESPACE):
            labels = _labels(svc)
            if labels.get("istio.io/rev") == rev and labels.get("istio.io/tag"):
                tags.add(labels["istio.io/tag"])
        return tags

    def is_mine(self, rev, obj) -> bool:
        """tag_watcher.go IsMine."""
        labels = _labels(obj)
        if "istio.io/rev" in labels:
            selected = labels["istio.io/rev"]
        else:
            ns = self.cm._ro_get(NAMESPACES, None, obj["metadata"].get("namespace"))
            if ns is None:
                return True
            selected = _labels(ns).get("istio.io/rev", "")
        mine = self._my_tags(rev)
        other_default = False
        if "default" not in mine:
            other_default = self.cm._ro_get(MWC, None, DEFAULT_TAG_WEBHOOK) is not None
        validator = self.cm._ro_get(VWC, None, DEFAULT_VALIDATOR)
        we_are_default = validator is not None and _labels(validator).get("istio.io/rev") == rev
        return selected in mine or (selected == "" and ("default" in mine or (we_are_default and not other_default)))

    def _controller_of(self, gw) -> str | None:
        cls = (gw.get("spec") or {}).get("gatewayClassName")
        gc = self.cm._ro_get(GATEWAY_CLASSES, None, cls) if self.store.registry.get(GATEWAY_CLASSES) else None
        if gc is not None:
            return (gc.get("spec") or {}).get("controllerName")
        return BUILTIN_CLASSES.get(cls)

    def sync_gateway_classes(self):
        if self.store.registry.get(GATEWAY_CLASSES) is None or not self._revisions():
            return
        for name, controller in BUILTIN_CLASSES.items():
            gc = self.cm._ro_get(GATEWAY_CLASSES, None, name)
            if gc is None:
                try:
                    self.store.create(GATEWAY_CLASSES, {
                        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                        "metadata": {"name": name},
                        "spec": {"controllerName": controller, "description": CLASS_DESCRIPTIONS[name]}})
                except ApiError as e:
                    if e.code != 409:
                        raise
                continue
            if (gc.get("spec") or {}).get("controllerName") in CLASSES or name == "istio-remote":
                conds = (gc.get("status") or {}).get("conditions") or []
                if not any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conds):
                    gc = _clone(gc)
                    gc["status"] = {"conditions": set_condition(conds, "Accepted", "True", "Accepted",
                                                                "Handled by Istio controller", now_iso(), False)}
                    self.cm._update_status(GATEWAY_CLASSES, gc)

    def sync_gateway(self, ns, name):
        if self.store.registry.get(GATEWAYS) is None:
            return
        gw = self.cm._ro_get(GATEWAYS, ns, name)
        if gw is None or terminating(gw):
            return
        controller = self._controller_of(gw)
        if controller not in CLASSES:
            return
        revisions = self._revisions()
        serving = [r for r in sorted(revisions) if self.is_mine(r, gw)]
        for rev in serving:  # each istiod that considers the Gateway its own applies its rendering
            version, hub = revisions[rev]
            for obj in self.render(gw, controller, rev, version, hub):
                self._apply(obj)
        self._gateway_status(gw, controller, bool(serving))

    def render(self, gw, controller, rev, version, hub) -> list:
        template, no_suffix, svc_type, managed = CLASSES[controller]
        meta = gw["metadata"]
        name, ns = meta["name"], meta["namespace"]
        cls = gw["spec"]["gatewayClassName"]
        ann = meta.get("annotations") or {}
        deploy_name = ann.get("gateway.istio.io/name-override") or (name if no_suffix else f"{name}-{cls}")
        sa_name = ann.get("gateway.istio.io/service-account") or deploy_name
        infra = (gw.get("spec") or {}).get("infrastructure") or {}
        infra_labels = dict(infra.get("labels") or meta.get("labels") or {})
        infra_ann = {k: v for k, v in (infra.get("annotations") or ann).items()
                     if k not in ("kubectl.kubernetes.io/last-applied-configuration", "gateway.istio.io/name-override",
                                  "gateway.istio.io/service-account", "gateway.istio.io/controller-version")}
        owner = [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "name": name,
                  "uid": meta.get("uid")}]
        ident = {GATEWAY_NAME: name, GATEWAY_CLASS_NAME: cls}
        pod_labels = {"sidecar.istio.io/inject": "false"}
        if template == "waypoint":
            pod_labels[DATAPLANE_MODE] = "none"
        pod_labels.update({"service.istio.io/canonical-name": deploy_name,
                           "service.istio.io/canonical-revision": "latest"})
        pod_labels.update(infra_labels)
        pod_labels.update({**ident, MANAGED: managed})
        istiod = f"{istio.istiod_name(rev)}.{istio.ISTIO_NAMESPACE}.svc:15012"
        ports = [{"containerPort": 15020, "name": "metrics", "protocol": "TCP"},
                 {"containerPort": 15021, "name": "status-port", "protocol": "TCP"},
                 {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}]
        container = {
            "name": "istio-proxy", "image": f"{hub}/proxyv2:{version}",
            "args": ["proxy", "waypoint" if template == "waypoint" else "router", "--domain",
                     "$(POD_NAMESPACE).svc.cluster.local", "--serviceCluster", f"{sa_name}.$(POD_NAMESPACE)"],
            "env": [{"name": "PILOT_CERT_PROVIDER", "value": "istiod"}, {"name": "CA_ADDR", "value": istiod},
                    {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
                    {"name": "ISTIO_META_WORKLOAD_NAME", "value": deploy_name}],
            "ports": ports,
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                               "failureThreshold": 4, "periodSeconds": 15, "successThreshold": 1,
                               "timeoutSeconds": 1},
        }
        pod_spec = {"serviceAccountName": sa_name, "containers": [container], "terminationGracePeriodSeconds": 2}
        if template == "kube-gateway":
            pod_spec["securityContext"] = {"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start",
                                                        "value": "0"}]}
        deploy = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": deploy_name, "namespace": ns, "annotations": dict(infra_ann),
                         "labels": {**infra_labels, **ident, MANAGED: managed}, "ownerReferences": owner},
            "spec": {"selector": {"matchLabels": {GATEWAY_NAME: name}},
                     "template": {"metadata": {"annotations": {**infra_ann, "istio.io/rev": rev or "default",
                                                               "prometheus.io/path": "/stats/prometheus",
                                                               "prometheus.io/port": "15020",
                                                               "prometheus.io/scrape": "true"},
                                               "labels": pod_labels},
                                  "spec": pod_spec}}}
        if template == "waypoint":
            svc_ports = [{"name": "mesh", "port": 15008, "protocol": "TCP", "appProtocol": "all"}]
        else:
            svc_ports = [{"name": "status-port", "port": 15021, "protocol": "TCP", "appProtocol": "tcp"}]
            for lst in (gw.get("spec") or {}).get("listeners") or []:
                port = lst.get("port")
                if port and not any(p["port"] == port for p in svc_ports):
                    svc_ports.append({"name": f"{str(lst.get('protocol', 'http')).lower()}-{port}"
                                      if lst.get("name") is None else lst["name"],
                                      "port": port, "protocol": "TCP"})
        svc = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": deploy_name, "namespace": ns, "annotations": dict(infra_ann),
                            "labels": {**infra_labels, **ident, MANAGED: managed}, "ownerReferences": owner},
               "spec": {"type": svc_type, "selector": {GATEWAY_NAME: name}, "ports": svc_ports}}
        sa = {"apiVersion": "v1", "kind": "ServiceAccount",
              "metadata": {"name": sa_name, "namespace": ns, "annotations": dict(infra_ann),
                           "labels": {**infra_labels, **ident}, "ownerReferences": owner}}
        return [sa, deploy, svc]

    def _apply(self, obj):
        """Server-side apply by istiod's field manager: create, or overwrite the fields it owns."""
        kind = {"Deployment": DEPLOY, "Service": SERVICES, "ServiceAccount": SA}[obj["kind"]]
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        cur = self.cm._ro_get(kind, ns, name)
        if cur is None:
            try:
                self.store.create(kind, obj)
            except ApiError as e:
                if e.code != 409:
                    raise
            return
        if kind != SA and MANAGED not in _labels(cur):
            return  # canManage: not ours
        new = _clone(cur)
        m = new["metadata"]
        m.setdefault("labels", {}).update(obj["metadata"].get("labels") or {})
        if obj["metadata"].get("annotations"):
            m.setdefault("annotations", {}).update(obj["metadata"]["annotations"])
        m["ownerReferences"] = obj["metadata"]["ownerReferences"]
        if kind == DEPLOY:
            spec = new.setdefault("spec", {})
            spec["selector"] = obj["spec"]["selector"]
            tmpl = spec.setdefault("template", {})
            tmeta = tmpl.setdefault("metadata", {})
            tmeta.setdefault("labels", {}).update(obj["spec"]["template"]["metadata"]["labels"])
            tmeta.setdefault("annotations", {}).update(obj["spec"]["template"]["metadata"]["annotations"])
            tspec = tmpl.setdefault("spec", {})
            want = obj["spec"]["template"]["spec"]
            for k, v in want.items():
                if k == "containers":
                    have = {c.get("name"): c for c in tspec.get("containers") or []}
                    out = []
                    for c in v:
                        merged = dict(have.get(c["name"]) or {})
                        merged.update(c)
                        out.append(merged)
                    tspec["containers"] = out
                else:
                    tspec[k] = v
        elif kind == SERVICES:
            new["spec"]["type"] = obj["spec"]["type"]
            new["spec"]["selector"] = obj["spec"]["selector"]
            new["spec"]["ports"] = [dict(p, targetPort=next((q.get("targetPort") for q in cur["spec"].get("ports")
                                                             or [] if q.get("port") == p["port"]), p["port"]))
                                    for p in obj["spec"]["ports"]]
        if new != cur:
            self.cm._update(kind, new)

    def _gateway_status(self, gw, controller, served: bool):
        template, no_suffix, _t, _m = CLASSES[controller]
        meta = gw["metadata"]
        ann = meta.get("annotations") or {}
        cls = gw["spec"]["gatewayClassName"]
        deploy_name = ann.get("gateway.istio.io/name-override") or (meta["name"] if no_suffix
                                                                    else f"{meta['name']}-{cls}")
        d = self.cm._ro_get(DEPLOY, meta["namespace"], deploy_name)
        dst = (d or {}).get("status") or {}
        programmed = bool(d) and int(dst.get("availableReplicas") or 0) > 0
        old = gw.get("status") or {}
        now = now_iso()
        conds = old.get("conditions") or []
        gen = meta.get("generation", 1)
        if served:
            conds = set_condition(conds, "Accepted", "True", "Accepted", "Resource accepted", now, False)
        else:
            conds = set_condition(conds, "Accepted", "False", "Pending", "No istiod serves this Gateway's "
                                  "revision", now, False)
        if programmed:
            conds = set_condition(conds, "Programmed", "True", "Programmed",
                                  "Resource programmed, assigned to service(s) "
                                  f"{deploy_name}.{meta['namespace']}.svc.cluster.local", now, False)
        else:
            conds = set_condition(conds, "Programmed", "False", "NoResources",
                                  f"Deployment {meta['namespace']}/{deploy_name} has no available replicas", now,
                                  False)
        for c in conds:
            c["observedGeneration"] = gen
        st = dict(old)
        st["conditions"] = conds
        if st != old:
            cur = _clone(gw)
            cur["status"] = st
            self.cm._update_status(GATEWAYS, cur)


def _scaled(value, total: int) -> int:
    s = str(value)
    if s.endswith("%"):
        import math
        return int(math.ceil(total * float(s[:-1]) / 100.0))
    return int(s)


def install_api(store, options):
    SUBRESOURCE_HANDLERS[(PODS, "eviction", "create")] = evict
    store.kubesim_ztunnel_log = ZtunnelLog()


def install_controllers(cm, options):
    log = getattr(cm.store, "kubesim_ztunnel_log", None) or ZtunnelLog()
    cm.store.kubesim_ztunnel_log = log
    cm.add_controller(AmbientControllers(log))
