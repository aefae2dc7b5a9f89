"""ServiceAccounts in the simulated cluster (test harness).

Two real components, modelled together because each needs the other:

* the API server's ``ServiceAccount`` admission plugin (kubernetes ``plugin/pkg/admission/serviceaccount``):
  a pod without ``spec.serviceAccountName`` gets ``default``; a pod whose ServiceAccount does not exist is
  refused with ``pods "<name or generateName>" is forbidden: error looking up service account <ns>/<sa>:
  serviceaccount "<sa>" not found`` (403), which a ReplicaSet reports as ``FailedCreate``;
* kube-controller-manager's ``serviceaccount-controller`` (``pkg/controller/serviceaccount``), which
  creates the ServiceAccount ``default`` in every namespace, and again if it is deleted.

The simulator's controller reacts synchronously (a store listener), so pods created right after their
namespace find ``default`` -- the real admission plugin retries the lookup of ``default`` for that reason.
"""

from __future__ import annotations

import logging

from .errors import ApiError

log = logging.getLogger("kubesim.serviceaccounts")

DEFAULT = "default"
SERVICEACCOUNTS = "serviceaccounts"
NAMESPACES = "namespaces"


def _exists(store, namespace, name) -> bool:
    return store.try_get(SERVICEACCOUNTS, namespace, name) is not None


class ServiceAccountAdmission:
    def __init__(self, store):
        self.store = store

    def __call__(self, operation, rtype, obj, old=None, dry_run=False, user=None):
        key = rtype if isinstance(rtype, str) else rtype.key
        if key != "pods" or operation != "CREATE" or obj is None:
            return None
        meta = obj.get("metadata") or {}
        spec = obj.setdefault("spec", {})
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or DEFAULT
        spec["serviceAccountName"] = sa
        spec["serviceAccount"] = sa
        ns = meta.get("namespace") or "default"
        if not _exists(self.store, ns, sa):
            name = meta.get("name") or meta.get("generateName") or ""
            raise ApiError(403, "Forbidden",
                           f'pods "{name}" is forbidden: error looking up service account {ns}/{sa}: '
                           f'serviceaccount "{sa}" not found',
                           {"name": name, "kind": "pods"})
        return obj


class ServiceAccountController:
    """Keeps ``default`` in every namespace that is not being deleted."""

    def __init__(self, store):
        self.store = store

    def ensure(self, namespace: str):
        ns = self.store.try_get(NAMESPACES, None, namespace)
        if ns is None or (ns.get("metadata") or {}).get("deletionTimestamp"):
            return
        if _exists(self.store, namespace, DEFAULT):
            return
        try:
            self.store.create(SERVICEACCOUNTS, {"apiVersion": "v1", "kind": "ServiceAccount",
                                                "metadata": {"name": DEFAULT, "namespace": namespace}})
        except ApiError as e:
            if e.code not in (409, 403, 404):  # created meanwhile / namespace going away
                log.warning("serviceaccount-controller: %s", e.message)

    def on_event(self, event_type, rtype, obj):
        key = rtype if isinstance(rtype, str) else rtype.key
        meta = (obj or {}).get("metadata") or {}
        if key == NAMESPACES and event_type in ("ADDED", "MODIFIED"):
            self.ensure(meta.get("name", ""))
        elif key == SERVICEACCOUNTS and event_type == "DELETED" and meta.get("name") == DEFAULT:
            self.ensure(meta.get("namespace", ""))


def install(store, options=None):
    store.add_admission(ServiceAccountAdmission(store))
    controller = ServiceAccountController(store)
    store.add_listener(controller.on_event)
    for ns in store.list(NAMESPACES):
        controller.ensure(ns["metadata"]["name"])
    return controller
