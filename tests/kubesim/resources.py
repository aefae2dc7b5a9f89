"""Resource types known to the simulated API server (test harness).

A :class:`ResourceType` describes one REST resource (``deployments`` in ``apps/v1``...).
The :class:`Registry` holds the built-in types and the ones served because a
CustomResourceDefinition was created.  Resource types are addressed everywhere by their
*key*: ``plural`` for the core group (``pods``) and ``plural.group`` otherwise
(``deployments.apps``, ``virtualservices.networking.istio.io``) -- the same spelling the
real API server uses in its error messages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

STD_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: list = field(default_factory=list)
    verbs: list = field(default_factory=lambda: list(STD_VERBS))
    singular: str = ""
    subresources: tuple = ()  # e.g. ("status", "scale")
    categories: list = field(default_factory=list)
    generation: bool = False  # metadata.generation maintained
    versions: list = field(default_factory=list)  # served versions (CRDs may serve several)
    custom: bool = False  # served because of a CRD
    crd_name: str = ""
    scale_paths: dict = field(default_factory=dict)  # CRD scale subresource paths
    printer_columns: list = field(default_factory=list)  # CRD additionalPrinterColumns
    # discovery of subresources whose kind is not the resource's own: {sub: (group, version, kind, verbs)}
    subresource_kinds: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.singular:
            self.singular = self.kind.lower()
        if not self.versions:
            self.versions = [self.version]

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def api_version_for(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def has_scale(self) -> bool:
        return "scale" in self.subresources

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def path_prefix(self, version: str | None = None) -> str:
        v = version or self.version
        return f"/apis/{self.group}/{v}" if self.group else f"/api/{v}"


def _b(group, version, plural, kind, namespaced, short=(), sub=(), gen=False, verbs=None, cats=(), singular=""):
    return ResourceType(group=group, version=version, plural=plural, kind=kind, namespaced=namespaced,
                        short_names=list(short), subresources=tuple(sub), generation=gen,
                        verbs=list(verbs) if verbs is not None else list(STD_VERBS), categories=list(cats),
                        singular=singular)


NO_DELETECOLLECTION = ["create", "delete", "get", "list", "patch", "update", "watch"]


def builtin_types() -> list:
    return [
        _b("", "v1", "namespaces", "Namespace", False, ["ns"], ["status", "finalize"],
           verbs=NO_DELETECOLLECTION),
        _b("", "v1", "nodes", "Node", False, ["no"], ["status"]),
        _b("", "v1", "pods", "Pod", True, ["po"], ["status", "log", "eviction"], cats=["all"]),
        _b("", "v1", "services", "Service", True, ["svc"], ["status"], cats=["all"]),
        _b("", "v1", "endpoints", "Endpoints", True, ["ep"]),
        _b("", "v1", "configmaps", "ConfigMap", True, ["cm"]),
        _b("", "v1", "secrets", "Secret", True),
        _b("", "v1", "serviceaccounts", "ServiceAccount", True, ["sa"]),
        _b("", "v1", "events", "Event", True, ["ev"]),
        _b("", "v1", "replicationcontrollers", "ReplicationController", True, ["rc"], ["status", "scale"], gen=True,
           cats=["all"]),
        _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["pvc"], ["status"]),
        _b("", "v1", "resourcequotas", "ResourceQuota", True, ["quota"], ["status"]),
        _b("", "v1", "limitranges", "LimitRange", True, ["limits"]),
        _b("apps", "v1", "deployments", "Deployment", True, ["deploy"], ["status", "scale"], gen=True, cats=["all"]),
        _b("apps", "v1", "replicasets", "ReplicaSet", True, ["rs"], ["status", "scale"], gen=True, cats=["all"]),
        _b("apps", "v1", "statefulsets", "StatefulSet", True, ["sts"], ["status", "scale"], gen=True, cats=["all"]),
        _b("apps", "v1", "daemonsets", "DaemonSet", True, ["ds"], ["status"], gen=True, cats=["all"]),
        _b("apps", "v1", "controllerrevisions", "ControllerRevision", True),
        _b("batch", "v1", "jobs", "Job", True, [], ["status"], gen=True, cats=["all"]),
        _b("batch", "v1", "cronjobs", "CronJob", True, ["cj"], ["status"], gen=True, cats=["all"]),
        _b("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ["hpa"], ["status"],
           cats=["all"]),
        _b("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True, ["netpol"], gen=True),
        _b("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
           "MutatingWebhookConfiguration", False, [], gen=True, cats=["api-extensions"]),
        _b("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations",
           "ValidatingWebhookConfiguration", False, [], gen=True, cats=["api-extensions"]),
        _b("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", False,
           [], ["status"], gen=True, cats=["api-extensions"]),
        _b("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings",
           "ValidatingAdmissionPolicyBinding", False, [], gen=True, cats=["api-extensions"]),
        _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ["pdb"], ["status"], gen=True),
        _b("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
           ["crd", "crds"], ["status"], gen=True, cats=["api-extensions"]),
        _b("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
           verbs=["create"]),
        _b("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False,
           verbs=["create"]),
        _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        _b("coordination.k8s.io", "v1", "leases", "Lease", True),
    ]


# Preferred order of groups in discovery (roughly the real server's).
GROUP_ORDER = ["", "apps", "events.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
               "networking.k8s.io", "policy", "rbac.authorization.k8s.io", "admissionregistration.k8s.io",
               "apiextensions.k8s.io",
               "coordination.k8s.io"]


# Subresources served by code outside the generic handlers (e.g. ``deploymentconfigs/instantiate``):
# {(resource key, subresource, verb): fn(store, rt, namespace, name, body, query, dry_run, user) -> (code, obj)}.
# ``body`` is the decoded request body (None for get).  Registered by the optional feature modules.
SUBRESOURCE_HANDLERS: dict = {}


class Registry:
    """Thread-safe table of served resource types."""

    def __init__(self):
        self._lock = threading.RLock()
        self._by_key: dict = {}
        for rt in builtin_types():
            self._by_key[rt.key] = rt

    def all(self) -> list:
        with self._lock:
            return list(self._by_key.values())

    def get(self, key: str):
        with self._lock:
            return self._by_key.get(key)

    def register(self, rt: ResourceType) -> ResourceType:
        """Serve a built-in (non-CRD) type that only some clusters have (e.g. OpenShift's apps.openshift.io)."""
        with self._lock:
            self._by_key[rt.key] = rt
        return rt

    def by_path(self, group: str, version: str, plural: str):
        with self._lock:
            rt = self._by_key.get(f"{plural}.{group}" if group else plural)
            if rt is None or version not in rt.versions:
                return None
            return rt

    def by_kind(self, api_version: str, kind: str):
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for rt in self._by_key.values():
                if rt.group == group and rt.kind == kind and version in rt.versions:
                    return rt
        return None

    def groups(self) -> dict:
        """{group: [versions...]} with the preferred version first."""
        out: dict = {}
        with self._lock:
            for rt in self._by_key.values():
                vs = out.setdefault(rt.group, [])
                for v in rt.versions:
                    if v not in vs:
                        vs.append(v)
        ordered = {}
        for g in GROUP_ORDER:
            if g in out:
                ordered[g] = out.pop(g)
        for g in sorted(out):
            ordered[g] = out[g]
        return ordered

    def in_group_version(self, group: str, version: str) -> list:
        with self._lock:
            return [rt for rt in self._by_key.values() if rt.group == group and version in rt.versions]

    # --- CRDs -------------------------------------------------------------------------
    def register_crd(self, crd: dict):
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group", "")
        served = [v for v in spec.get("versions") or [] if v.get("served", True)]
        if not served or not names.get("plural") or not names.get("kind"):
            return None
        storage = next((v for v in served if v.get("storage")), served[0])
        subres = storage.get("subresources") or {}
        sub = []
        if "status" in subres:
            sub.append("status")
        if "scale" in subres:
            sub.append("scale")
        rt = ResourceType(group=group, version=served[0]["name"], plural=names["plural"], kind=names["kind"],
                          namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                          short_names=list(names.get("shortNames") or []), singular=names.get("singular") or "",
                          subresources=tuple(sub), categories=list(names.get("categories") or []),
                          generation=True, versions=[v["name"] for v in served], custom=True,
                          crd_name=(crd.get("metadata") or {}).get("name", ""),
                          scale_paths=dict(subres.get("scale") or {}),
                          printer_columns=list(storage.get("additionalPrinterColumns") or []))
        with self._lock:
            existing = self._by_key.get(rt.key)
            if existing is not None and not existing.custom:
                return None
            self._by_key[rt.key] = rt
        return rt

    def unregister_crd(self, crd: dict):
        spec = crd.get("spec") or {}
        key = f"{(spec.get('names') or {}).get('plural')}.{spec.get('group')}"
        with self._lock:
            rt = self._by_key.get(key)
            if rt is not None and rt.custom:
                del self._by_key[key]
            return rt
