"""ResourceQuota and LimitRange of the simulated cluster (test harness).

Modelled on the real admission plugins and the quota controller:

* LimitRanger (plugin/pkg/admission/limitranger/admission.go).  Mutating, before the webhooks: a pod's
  containers and init containers get the ``default`` limits and ``defaultRequest`` requests of every
  Container-type item they lack, recorded in the ``kubernetes.io/limit-ranger`` annotation ("LimitRanger
  plugin set: cpu, memory request for container app; ...").  Validating, after the webhooks (so an
  injected istio-proxy is checked too): ``min``, ``max`` and ``maxLimitRequestRatio`` per Container and per
  Pod, refusing with Kubernetes' texts, e.g. ``pods "web-7d4b9c8f6d-" is forbidden: maximum cpu usage per
  Container is 500m, but limit is 2``.  LimitRange objects are defaulted like the API server does
  (pkg/apis/core/v1/defaults.go ``SetDefaults_LimitRangeItem``: default <- max, defaultRequest <- default
  <- min).
* ResourceQuota admission (k8s.io/apiserver/pkg/admission/plugin/resourcequota/controller.go), last:
  every CREATE in a namespace is measured against each quota whose ``status.hard`` names a resource it
  uses (pods: pkg/quota/v1/evaluator/core/pods.go -- ``pods``, ``count/pods``, ``requests.cpu``/``cpu``,
  ``limits.cpu``, ``requests.memory``/``memory``, ``limits.memory``, ephemeral storage, with the sidecar-aware
  sum of k8s.io/component-helpers/resource ``PodRequests``/``PodLimits``; services; every other type by
  ``count/<resource>[.<group>]``), with the quota's scopes (Terminating, NotTerminating, BestEffort,
  NotBestEffort, PriorityClass, CrossNamespacePodAffinity).  Refusals are the real texts:
  ``exceeded quota: NAME, requested: pods=1, used: pods=4, limited: pods=4``, ``failed quota: NAME: must
  specify limits.cpu for: app; requests.cpu for: app``.  An admitted create charges ``status.used`` at
  once (dry runs do not), as the plugin does.
* The quota controller (pkg/controller/resourcequota): ``status.hard`` <- ``spec.hard`` and ``status.used``
  recomputed from what the namespace holds when a quota changes and when counted objects go away
  (replenishment), and every 5 minutes.  Until it has written ``status.hard`` a new quota constrains
  nothing, as on a real cluster.  Pods in a terminal phase, or past their deletion grace period, are not
  charged for compute resources.

Refused pods of a ReplicaSet/StatefulSet/DaemonSet show as ``FailedCreate`` events and ``ReplicaFailure``
conditions through the workload controllers (kubesim.controllers), like webhook refusals.
``install(store, options)`` registers the three admission steps and starts the controller.
"""

from __future__ import annotations

import datetime
import logging
import re
import threading
import time
from fractions import Fraction

from .errors import ApiError

log = logging.getLogger("kubesim.quota")

QUOTAS = "resourcequotas"
LIMITRANGES = "limitranges"
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"
RESYNC_SECONDS = 300.0  # kube-controller-manager --resource-quota-sync-period


# ---- quantities (k8s.io/apimachinery/pkg/api/resource/quantity.go) ---------------------------

_QTY = re.compile(r"^([+-]?)(\d*)(?:\.(\d*))?([a-zA-Z]*|[eE][+-]?\d+)$")
_BIN = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DEC = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DEC_SUFFIX = {v: k for k, v in _DEC.items()}
_BIN_SUFFIX = {v: k for k, v in _BIN.items()}


class Quantity:
    """A resource quantity: exact value (rounded up to nano units, like ParseQuantity) and its format
    (``DecimalSI``, ``BinarySI`` or ``DecimalExponent``), printed canonically like ``Quantity.String()``."""

    __slots__ = ("value", "fmt")

    def __init__(self, value, fmt="DecimalSI"):
        v = Fraction(value)
        nano = v * 10 ** 9
        if nano.denominator != 1:
            v = Fraction(-((-nano.numerator) // nano.denominator), 10 ** 9)  # ceil to nano
        self.value, self.fmt = v, fmt

    @classmethod
    def parse(cls, text) -> "Quantity":
        if isinstance(text, Quantity):
            return text
        if isinstance(text, bool):
            raise ValueError(f"quantities must be numbers or strings, got {text!r}")
        if isinstance(text, (int, float)):
            return cls(Fraction(str(text)), "DecimalSI")
        m = _QTY.match(str(text).strip())
        if not m or not (m.group(2) or m.group(3)):
            raise ValueError(f"quantities must match the regular expression "
                             f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {text!r}")
        sign, whole, frac, suffix = m.groups()
        number = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac else 0)
        if sign == "-":
            number = -number
        if suffix in _BIN:
            return cls(number * 2 ** _BIN[suffix], "BinarySI")
        if suffix in _DEC:
            return cls(number * Fraction(10) ** _DEC[suffix], "DecimalSI")
        if suffix[:1] in "eE" and suffix[1:].lstrip("+-").isdigit():
            return cls(number * Fraction(10) ** int(suffix[1:]), "DecimalExponent")
        raise ValueError(f"unable to parse quantity's suffix: {text!r}")

    def __add__(self, other: "Quantity") -> "Quantity":
        # Quantity.Add keeps the receiver's format unless the receiver is zero
        return Quantity(self.value + other.value, self.fmt if self.value else other.fmt)

    def __sub__(self, other: "Quantity") -> "Quantity":
        return Quantity(self.value - other.value, self.fmt if self.value else other.fmt)

    def __eq__(self, other):
        return isinstance(other, Quantity) and self.value == other.value

    def __hash__(self):
        return hash(self.value)

    def __lt__(self, other):
        return self.value < other.value

    def __le__(self, other):
        return self.value <= other.value

    def __gt__(self, other):
        return self.value > other.value

    def __repr__(self):
        return f"Quantity({str(self)!r})"

    def __str__(self) -> str:
        v = self.value
        if v == 0:
            return "0"
        sign = "-" if v < 0 else ""
        v = abs(v)
        fmt = self.fmt
        if fmt == "BinarySI" and (v < 1024 or v.denominator != 1):
            fmt = "DecimalSI"  # small or fractional values are shown in decimal (CanonicalizeBytes)
        if fmt == "BinarySI":
            n, exp = int(v), 0
            while n % 1024 == 0 and exp < 60:
                n //= 1024
                exp += 10
            return f"{sign}{n}{_BIN_SUFFIX[exp]}"
        n, exp = int(v * 10 ** 9), -9
        while n % 10 == 0:
            n //= 10
            exp += 1
        r = exp % 3  # exponent down to a multiple of three (AsCanonicalBytes)
        n, exp = n * 10 ** r, exp - r
        if fmt == "DecimalExponent" or exp not in _DEC_SUFFIX:
            return f"{sign}{n}" + (f"e{exp}" if exp else "")
        return f"{sign}{n}{_DEC_SUFFIX[exp]}"


def resource_list(raw) -> dict:
    """{name: Quantity} from a ResourceList; unparsable entries are left out (validation's business)."""
    out = {}
    for k, v in (raw or {}).items():
        try:
            out[k] = Quantity.parse(v)
        except ValueError:
            continue
    return out


def _add(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] + v if k in out else v
    return out


def _max(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if k not in out or v > out[k]:
            out[k] = v
    return out


def render(rl: dict) -> dict:
    return {k: str(v) for k, v in sorted(rl.items())}


def pretty(rl: dict) -> str:
    """quota's prettyPrint: ``name=value`` sorted by name, joined by commas."""
    return ",".join(f"{k}={v}" for k, v in sorted(rl.items()))


# ---- pod resources (k8s.io/component-helpers/resource/helpers.go) ------------------------------

def _pod_aggregate(spec: dict, field: str) -> dict:
    """PodRequests/PodLimits: the containers' sum, restartable init containers (native sidecars) added
    to it, and the largest any init container needs while it runs (sidecars started before it count)."""
    total: dict = {}
    for c in spec.get("containers") or []:
        total = _add(total, resource_list((c.get("resources") or {}).get(field)))
    sidecars: dict = {}
    init_max: dict = {}
    for c in spec.get("initContainers") or []:
        need = resource_list((c.get("resources") or {}).get(field))
        if c.get("restartPolicy") == "Always":
            total = _add(total, need)
            sidecars = _add(sidecars, need)
            need = sidecars
        else:
            need = _add(need, sidecars)
        init_max = _max(init_max, need)
    total = _max(total, init_max)
    overhead = resource_list((spec.get("overhead") or {}))
    if overhead and (field == "requests" or total):
        total = _add(total, {k: v for k, v in overhead.items() if field == "requests" or k in total})
    return total


def pod_requests(spec: dict) -> dict:
    return _pod_aggregate(spec, "requests")


def pod_limits(spec: dict) -> dict:
    return _pod_aggregate(spec, "limits")


def qos_class(spec: dict) -> str:
    """pkg/apis/core/v1/helper/qos GetPodQOS (cpu and memory of all containers)."""
    requests: dict = {}
    limits: dict = {}
    guaranteed = True
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        req = {k: v for k, v in resource_list(res.get("requests")).items() if k in ("cpu", "memory") and v.value}
        lim = {k: v for k, v in resource_list(res.get("limits")).items() if k in ("cpu", "memory") and v.value}
        requests = _add(requests, req)
        limits = _add(limits, lim)
        if set(lim) != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and all(requests.get(k) is None or requests[k] == limits.get(k) for k in ("cpu", "memory")):
        return "Guaranteed"
    return "Burstable"


# ---- quota usage -------------------------------------------------------------------------------

COMPUTE = ("pods", "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory",
           "requests.ephemeral-storage", "limits.cpu", "limits.memory", "limits.ephemeral-storage")
MUST_SPECIFY = {"cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"}
LEGACY_COUNT = {"configmaps": "configmaps", "secrets": "secrets", "resourcequotas": "resourcequotas",
                "replicationcontrollers": "replicationcontrollers"}
ONE = Quantity(1)


def count_name(key: str) -> str:
    """generic.ObjectCountQuotaResourceNameFor: ``count/pods``, ``count/deployments.apps``."""
    return f"count/{key}"


def _terminal_or_gone(pod: dict, now: float) -> bool:
    """QuotaV1Pod is False: terminal phase, or deleted and past its grace period."""
    if ((pod.get("status") or {}).get("phase")) in ("Failed", "Succeeded"):
        return True
    meta = pod.get("metadata") or {}
    ts, grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    if ts and grace is not None:
        deleted = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
        return now > deleted.timestamp() + int(grace)
    return False


def _compute_usage(requests: dict, limits: dict) -> dict:
    """podComputeUsageHelper."""
    out = {"pods": ONE}
    for res in ("cpu", "memory", "ephemeral-storage"):
        if res in requests:
            out[res] = requests[res]
            out[f"requests.{res}"] = requests[res]
        if res in limits:
            out[f"limits.{res}"] = limits[res]
    for res, q in requests.items():
        if res.startswith("hugepages-"):
            out[res] = q
            out[f"requests.{res}"] = q
        elif "/" in res and not res.startswith("kubernetes.io/"):
            out[f"requests.{res}"] = q  # extended resources
    return out


def usage(key: str, obj: dict, now: float | None = None) -> dict:
    """What one object of type ``key`` uses, by quota resource name."""
    now = time.time() if now is None else now
    out = {count_name(key): ONE}
    if key in LEGACY_COUNT:
        out[LEGACY_COUNT[key]] = ONE
    if key == "pods":
        if not _terminal_or_gone(obj, now):
            spec = obj.get("spec") or {}
            out.update(_compute_usage(pod_requests(spec), pod_limits(spec)))
    elif key == "services":
        spec = obj.get("spec") or {}
        out["services"] = ONE
        stype = spec.get("type") or "ClusterIP"
        if stype == "LoadBalancer":
            out["services.loadbalancers"] = ONE
        if stype in ("NodePort", "LoadBalancer"):
            out["services.nodeports"] = Quantity(len(spec.get("ports") or []))
    elif key == "persistentvolumeclaims":
        out["persistentvolumeclaims"] = ONE
        storage = resource_list(((obj.get("spec") or {}).get("resources") or {}).get("requests")).get("storage")
        if storage is not None:
            out["requests.storage"] = storage
    return out


def matching_resources(key: str, names) -> list:
    """The quota resource names (of ``names``) that objects of type ``key`` can use."""
    known = set(usage(key, {"metadata": {}, "spec": {}}).keys())
    if key == "pods":
        known |= set(COMPUTE)
        return [n for n in names if n in known or n.startswith(("hugepages-", "requests.hugepages-"))
                or (n.startswith("requests.") and "/" in n)]
    if key == "services":
        known |= {"services.loadbalancers", "services.nodeports"}
    if key == "persistentvolumeclaims":
        known |= {"requests.storage"}
    return [n for n in names if n in known]


def _scope_selectors(quota: dict) -> list:
    spec = quota.get("spec") or {}
    sels = [{"scopeName": s, "operator": "Exists"} for s in spec.get("scopes") or []]
    sels += list(((spec.get("scopeSelector") or {}).get("matchExpressions")) or [])
    return sels


def _cross_namespace_affinity(spec: dict) -> bool:
    aff = spec.get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        a = aff.get(kind) or {}
        terms = list(a.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
        terms += [t.get("podAffinityTerm") or {} for t in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if any(t.get("namespaces") or t.get("namespaceSelector") is not None for t in terms):
            return True
    return False


def _pod_matches_scope(sel: dict, pod: dict) -> bool:
    spec = pod.get("spec") or {}
    name = sel.get("scopeName")
    terminating = spec.get("activeDeadlineSeconds") is not None and int(spec["activeDeadlineSeconds"]) >= 0
    if name == "Terminating":
        return terminating
    if name == "NotTerminating":
        return not terminating
    if name == "BestEffort":
        return qos_class(spec) == "BestEffort"
    if name == "NotBestEffort":
        return qos_class(spec) != "BestEffort"
    if name == "CrossNamespacePodAffinity":
        return _cross_namespace_affinity(spec)
    if name == "PriorityClass":
        pc = spec.get("priorityClassName") or ""
        op, values = sel.get("operator"), sel.get("values") or []
        if op == "Exists":
            return bool(pc)
        if op == "DoesNotExist":
            return not pc
        if op == "In":
            return bool(pc) and pc in values
        if op == "NotIn":
            return not pc or pc not in values
    return False


def quota_matches(quota: dict, key: str, obj: dict) -> bool:
    """generic.Matches: the quota names a resource the object uses, and every scope matches."""
    hard = list(((quota.get("status") or {}).get("hard")) or {})
    if not matching_resources(key, hard):
        return False
    for sel in _scope_selectors(quota):
        if key != "pods" or not _pod_matches_scope(sel, obj):
            return False
    return True


def _missing_requirements(pod: dict, required: set) -> str | None:
    """podEvaluator.Constraints: quotas on cpu/memory need every container to state them."""
    required = required & MUST_SPECIFY
    if not required:
        return None
    missing: dict = {}
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        have = set(_compute_usage(resource_list(res.get("requests")), resource_list(res.get("limits"))))
        for r in sorted(required - have):
            missing.setdefault(r, set()).add(c.get("name", ""))
    if not missing:
        return None
    return "must specify " + "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))


# ---- LimitRanger -------------------------------------------------------------------------------

def default_limit_range(obj: dict):
    """SetDefaults_LimitRangeItem for Container items: default <- max; defaultRequest <- default, min."""
    for item in ((obj.get("spec") or {}).get("limits")) or []:
        if not isinstance(item, dict) or item.get("type") != "Container":
            continue
        default = item.setdefault("default", {})
        request = item.setdefault("defaultRequest", {})
        for k, v in (item.get("max") or {}).items():
            default.setdefault(k, v)
        for k, v in default.items():
            request.setdefault(k, v)
        for k, v in (item.get("min") or {}).items():
            request.setdefault(k, v)
        if not default:
            del item["default"]
        if not request:
            del item["defaultRequest"]


def _limit_ranges(store, ns) -> list:
    recs, _ = store.list_recs(LIMITRANGES, ns)
    return [r.obj for r in recs]


def limit_ranger_mutate(pod: dict, ranges: list):
    """PodMutateLimitFunc of each LimitRange: defaults into containers, recorded in an annotation."""
    for lr in ranges:
        requests, limits = {}, {}
        for item in ((lr.get("spec") or {}).get("limits")) or []:
            if item.get("type") == "Container":
                requests.update(item.get("defaultRequest") or {})
                limits.update(item.get("default") or {})
        notes = []
        spec = pod.setdefault("spec", {})
        for what, containers in (("container", spec.get("containers") or []),
                                 ("init container", spec.get("initContainers") or [])):
            for c in containers:
                res = c.setdefault("resources", {})
                set_lim = sorted(k for k in limits if k not in (res.get("limits") or {}))
                set_req = sorted(k for k in requests if k not in (res.get("requests") or {}))
                for k in set_lim:
                    res.setdefault("limits", {})[k] = limits[k]
                for k in set_req:
                    res.setdefault("requests", {})[k] = requests[k]
                if set_req:
                    notes.append(f"{', '.join(set_req)} request for {what} {c.get('name')}")
                if set_lim:
                    notes.append(f"{', '.join(set_lim)} limit for {what} {c.get('name')}")
        if notes:
            pod.setdefault("metadata", {}).setdefault("annotations", {})[LIMIT_RANGER_ANNOTATION] = \
                "LimitRanger plugin set: " + "; ".join(notes)


def _milli(q: Quantity) -> Fraction:
    return q.value * 1000


def _min_constraint(kind, name, enforced, req, lim):
    r, l_ = req.get(name), lim.get(name)
    if r is None:
        return f"minimum {name} usage per {kind} is {enforced}.  No request is specified"
    if _milli(r) < _milli(enforced):
        return f"minimum {name} usage per {kind} is {enforced}, but request is {r}"
    if l_ is not None and _milli(l_) < _milli(enforced):
        return f"minimum {name} usage per {kind} is {enforced}, but limit is {l_}"
    return None


def _max_constraint(kind, name, enforced, req, lim):
    r, l_ = req.get(name), lim.get(name)
    if l_ is None:
        return f"maximum {name} usage per {kind} is {enforced}.  No limit is specified"
    if _milli(l_) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but limit is {l_}"
    if r is not None and _milli(r) > _milli(enforced):
        return f"maximum {name} usage per {kind} is {enforced}, but request is {r}"
    return None


def _ratio_constraint(kind, name, enforced, req, lim):
    r, l_ = req.get(name), lim.get(name)
    if r is None or r.value == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or " \
               f"request is 0"
    if l_ is None or l_.value == 0:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
    ratio = l_.value / r.value
    if ratio > enforced.value:
        return f"{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {float(ratio):f}"
    return None


def limit_ranger_validate(pod: dict, ranges: list) -> str | None:
    """PodValidateLimitFunc of each LimitRange; the first one that fails answers (its errors aggregated)."""
    spec = pod.get("spec") or {}
    for lr in ranges:
        errs = []
        for item in ((lr.get("spec") or {}).get("limits")) or []:
            kind = item.get("type")
            checks = [(_min_constraint, "min"), (_max_constraint, "max"), (_ratio_constraint, "maxLimitRequestRatio")]
            if kind == "Container":
                subjects = [(resource_list((c.get("resources") or {}).get("requests")),
                             resource_list((c.get("resources") or {}).get("limits")))
                            for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])]
            elif kind == "Pod":
                subjects = [(pod_requests(spec), pod_limits(spec))]
            else:
                continue
            for req, lim in subjects:
                for fn, field in checks:
                    for name, enforced in sorted(resource_list(item.get(field)).items()):
                        e = fn(kind, name, enforced, req, lim)
                        if e and e not in errs:
                            errs.append(e)
        if errs:
            return errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]"
    return None


# ---- admission -----------------------------------------------------------------------------------

def _forbidden(key: str, obj: dict, why: str) -> ApiError:
    """admission.NewForbidden: the object's name, else its generateName (not generated yet)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "Unknown"
    return ApiError.forbidden(key, name, why)


class Admission:
    """The LimitRanger (mutating and validating) and ResourceQuota admission steps."""

    def __init__(self, store):
        self.store = store

    def mutate(self, operation, key, obj, old=None, dry_run=False, user=None):
        if key == LIMITRANGES and operation in ("CREATE", "UPDATE") and obj is not None:
            default_limit_range(obj)
            return obj
        if key != "pods" or operation != "CREATE" or obj is None:
            return None
        ranges = _limit_ranges(self.store, (obj.get("metadata") or {}).get("namespace"))
        if ranges:
            limit_ranger_mutate(obj, ranges)
        return obj

    def validate(self, operation, key, obj, old=None, dry_run=False, user=None):
        if operation != "CREATE" or obj is None:
            return None
        ns = (obj.get("metadata") or {}).get("namespace")
        if not ns:
            return None
        if key == "pods":
            why = limit_ranger_validate(obj, _limit_ranges(self.store, ns))
            if why:
                raise _forbidden(key, obj, why)
        self.charge(key, obj, ns, dry_run)
        return None

    def charge(self, key, obj, ns, dry_run):
        """CheckRequest against every quota of the namespace; on success charge status.used."""
        recs, _ = self.store.list_recs(QUOTAS, ns)
        if not recs:
            return
        use = usage(key, obj)
        updates = []
        for rec in recs:
            q = rec.obj
            if not quota_matches(q, key, obj):
                continue
            status = q.get("status") or {}
            hard = resource_list(status.get("hard"))
            restricted = matching_resources(key, list(hard))
            if key == "pods":
                why = _missing_requirements(obj, set(restricted))
                if why:
                    raise _forbidden(key, obj, f"failed quota: {q['metadata']['name']}: {why}")
            used = resource_list(status.get("used"))
            unknown = [r for r in restricted if r not in used]
            if unknown:
                raise _forbidden(key, obj, f"status unknown for quota: {q['metadata']['name']}, resources: "
                                           f"{','.join(sorted(unknown))}")
            requested = {k: v for k, v in use.items() if k in hard and v.value}
            if not requested:
                continue
            new_used = _add(used, requested)
            exceeded = sorted(k for k in requested if new_used[k] > hard[k])
            if exceeded:
                raise _forbidden(key, obj, f"exceeded quota: {q['metadata']['name']}, "
                                           f"requested: {pretty({k: requested[k] for k in exceeded})}, "
                                           f"used: {pretty({k: used[k] for k in exceeded})}, "
                                           f"limited: {pretty({k: hard[k] for k in exceeded})}")
            updates.append((q, new_used))
        if dry_run:
            return
        for q, new_used in updates:
            new = {"apiVersion": "v1", "kind": "ResourceQuota",
                   "metadata": {"name": q["metadata"]["name"], "namespace": ns,
                                "resourceVersion": q["metadata"]["resourceVersion"]},
                   "status": dict(q.get("status") or {}, used=render(new_used))}
            self.store.update_status(QUOTAS, new, ns, admission=False)


# ---- the quota controller ------------------------------------------------------------------------

class QuotaController:
    """status.hard and status.used of every ResourceQuota, from what its namespace holds."""

    def __init__(self, store):
        self.store = store
        self._cv = threading.Condition()
        self._dirty: set = set()
        self._thread = threading.Thread(target=self._run, name="kubesim-quota", daemon=True)

    def start(self):
        self.store.add_listener(self._on_event)
        for ns in self.store.namespaces_with_objects(QUOTAS):
            self._enqueue(ns)
        self._thread.start()
        return self

    def _enqueue(self, ns):
        with self._cv:
            self._dirty.add(ns)
            self._cv.notify()

    def _on_event(self, etype, key, obj):
        ns = ((obj or {}).get("metadata") or {}).get("namespace")
        if not ns:
            return
        if key == QUOTAS:
            if etype != "DELETED":
                st = obj.get("status") or {}
                if (obj.get("spec") or {}).get("hard") != st.get("hard") or "used" not in st:
                    self._enqueue(ns)
            return
        # replenishment: something counted went away, or a pod stopped being charged
        if etype == "DELETED" or (key == "pods" and etype == "MODIFIED"):
            if self.store.count(QUOTAS, ns):
                self._enqueue(ns)

    def _run(self):
        next_resync = time.monotonic() + RESYNC_SECONDS
        while not self.store.closed:
            with self._cv:
                if not self._dirty:
                    self._cv.wait(min(1.0, max(next_resync - time.monotonic(), 0.01)))
                todo, self._dirty = self._dirty, set()
            if time.monotonic() >= next_resync:
                todo |= set(self.store.namespaces_with_objects(QUOTAS))
                next_resync = time.monotonic() + RESYNC_SECONDS
            for ns in sorted(todo):
                try:
                    self.sync(ns)
                except ApiError as e:
                    if e.code == 409:
                        self._enqueue(ns)  # admission charged it meanwhile: compute again
                    elif e.code != 404:
                        log.warning("quota sync of %s: %s", ns, e.message)
                except Exception:  # keep syncing other namespaces
                    log.exception("quota sync of %s failed", ns)

    def sync(self, ns):
        recs, _ = self.store.list_recs(QUOTAS, ns)
        now = time.time()
        for rec in recs:
            q = rec.obj
            hard = resource_list((q.get("spec") or {}).get("hard"))
            used: dict = {}
            for key in sorted({_type_of(name) for name in hard} - {None}):
                if self.store.registry.get(key) is None:
                    continue
                objs, _ = self.store.list_recs(key, ns)
                for o in objs:
                    if key == "pods" and not all(_pod_matches_scope(s, o.obj) for s in _scope_selectors(q)):
                        continue
                    if key != "pods" and _scope_selectors(q):
                        continue
                    used = _add(used, {k: v for k, v in usage(key, o.obj, now).items() if k in hard})
            status = {"hard": render(hard), "used": {k: str(used.get(k, Quantity(0, hard[k].fmt)))
                                                      for k in sorted(hard)}}
            if status == q.get("status"):
                continue
            new = {"apiVersion": "v1", "kind": "ResourceQuota",
                   "metadata": {"name": q["metadata"]["name"], "namespace": ns,
                                "resourceVersion": q["metadata"]["resourceVersion"]},
                   "status": status}
            self.store.update_status(QUOTAS, new, ns, admission=False)


def _type_of(name: str) -> str | None:
    """Which stored type a quota resource name counts."""
    if name in COMPUTE or name.startswith(("hugepages-", "requests.hugepages-")) or name == "count/pods" \
            or (name.startswith("requests.") and "/" in name):
        return "pods"
    if name in ("services", "services.loadbalancers", "services.nodeports"):
        return "services"
    if name in ("persistentvolumeclaims", "requests.storage"):
        return "persistentvolumeclaims"
    if name in LEGACY_COUNT:
        return name
    if name.startswith("count/"):
        return name[len("count/"):]
    return None


def install(store, options=None):
    """LimitRanger's mutation goes first (before the webhooks); its validation and the quota check
    are appended after them, as in the API server's plugin order."""
    adm = Admission(store)
    store.add_admission(adm.mutate, first=True)
    store.add_admission(adm.validate)
    return adm, QuotaController(store).start()
