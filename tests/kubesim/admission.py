"""Admission webhooks of the simulated cluster (test harness).

The API server calls every MutatingWebhookConfiguration / ValidatingWebhookConfiguration whose rules,
namespaceSelector and objectSelector match a request, in order of configuration name and then webhook
order.  Here "calling" a webhook means following its ``clientConfig.service`` to the Service and its
Endpoints: when no ready istiod backs the Service the call fails exactly the way the API server reports it
(``failed calling webhook ...: no endpoints available for service ...``), and with ``failurePolicy: Fail``
the request is rejected.  A reachable injector is the istiod revision behind the Service: it injects its
own proxy version and revision (see :func:`kubesim.istio.inject_pod`).  A reachable validator runs
:func:`kubesim.istio.validate_istio_config`.

``install(store, options)`` registers the plugin with the store (K1's ``store.add_admission``).
"""

from __future__ import annotations

from . import istio
from .errors import ApiError
from .selectors import match_label_selector

MWC = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
VWC = "validatingwebhookconfigurations.admissionregistration.k8s.io"


def _key(rtype) -> str:
    return rtype if isinstance(rtype, str) else rtype.key


def _group_plural(key: str) -> tuple[str, str]:
    plural, _, group = key.partition(".")
    return group, plural


def _get(store, key, ns, name):
    """Read-only view of a stored object (never mutate it), or None."""
    try:
        return store.get_rec(key, ns, name).obj
    except ApiError as e:
        if e.code == 404:
            return None
        raise


def _list(store, key, ns=None):
    """Read-only views of stored objects."""
    recs, _ = store.list_recs(key, ns)
    return [r.obj for r in recs]


def _selector_matches(sel, labels) -> bool:
    # An absent selector on a webhook defaults to {} -- match everything.
    return match_label_selector(sel if sel is not None else {}, labels or {})


def rule_matches(rules: list, operation: str, key: str, subresource: str = "") -> bool:
    group, plural = _group_plural(key)
    resource = plural + (f"/{subresource}" if subresource else "")
    for rule in rules or []:
        ops = rule.get("operations") or []
        if "*" not in ops and operation not in ops:
            continue
        groups = rule.get("apiGroups") or []
        if "*" not in groups and group not in groups:
            continue
        resources = rule.get("resources") or []
        if "*" not in resources and resource not in resources and f"{plural}/*" not in resources:
            if not (subresource == "" and "*/*" in resources):
                continue
        return True
    return False


class WebhookCallError(Exception):
    """The API server could not reach the webhook's backend."""


class Backend:
    """What answers behind a webhook Service: the istiod pods that are ready endpoints."""

    def __init__(self, namespace: str, service: str, version: str, revision: str, hub: str = istio.HUB,
                 env: dict | None = None):
        self.namespace, self.service, self.version, self.revision = namespace, service, version, revision
        self.hub = hub  # istiod's own registry: its proxies come from there too (global.hub)
        self.env = dict(env or {})  # the istiod container's plain env values (feature flags)


def resolve_backend(store, webhook: dict) -> Backend:
    """Follow clientConfig.service -> Service -> ready Endpoints -> istiod pod; raise WebhookCallError."""
    url = istio.webhook_url(webhook)
    ref = istio.webhook_service(webhook)
    if ref is None:
        raise WebhookCallError(f'failed to call webhook: Post "{url}": dial tcp: lookup '
                               f'{url.split("/")[2].split(":")[0]}: no such host')
    ns, name, _path, _port = ref
    svc = _get(store, "services", ns, name)
    if svc is None:
        raise WebhookCallError(f'failed to call webhook: Post "{url}": service "{name}" not found')
    ep = _get(store, "endpoints", ns, name)
    pods = []
    for subset in (ep or {}).get("subsets") or []:
        for addr in subset.get("addresses") or []:
            ref_ = addr.get("targetRef") or {}
            if ref_.get("kind") == "Pod":
                pods.append(ref_.get("name"))
    for pod_name in sorted(pods):
        pod = _get(store, "pods", ns, pod_name)
        if pod is None:
            continue
        version, hub = None, istio.HUB
        env = {}
        for c in (pod.get("spec") or {}).get("containers") or []:
            version = istio.image_version(c.get("image", ""))
            env = {e.get("name"): e.get("value") for e in c.get("env") or [] if "value" in e}
            if c.get("name") == "discovery" and version:
                ref = c.get("image", "").split("@", 1)[0]
                if "/" in ref and ref.rsplit("/", 1)[1].split(":", 1)[0] == "pilot":
                    hub = ref.rsplit("/", 1)[0]
                break
        labels = (pod.get("metadata") or {}).get("labels") or {}
        revision = labels.get("istio.io/rev") or istio.DEFAULT_REVISION
        if version:
            return Backend(ns, name, version, revision, hub, env)
    raise WebhookCallError(f'failed to call webhook: Post "{url}": no endpoints available for service "{name}"')


def _sorted_configs(store, key):
    return sorted(_list(store, key), key=lambda o: o["metadata"]["name"])


def _namespace_labels(store, namespace):
    if not namespace:
        return {}
    ns = _get(store, "namespaces", None, namespace)
    if ns is None:
        return {"kubernetes.io/metadata.name": namespace}
    return (ns.get("metadata") or {}).get("labels") or {}


def _call_failed(webhook: dict, err: Exception) -> ApiError:
    return ApiError.internal(f'failed calling webhook "{webhook.get("name")}": {err}')


def _matching_webhooks(store, cfg_key, operation, key, obj, ns_labels):
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    for cfg in _sorted_configs(store, cfg_key):
        for wh in cfg.get("webhooks") or []:
            if not rule_matches(wh.get("rules"), operation, key):
                continue
            if ns_labels is not None and not _selector_matches(wh.get("namespaceSelector"), ns_labels):
                continue
            if not _selector_matches(wh.get("objectSelector"), labels):
                continue
            yield cfg, wh


class WebhookAdmission:
    """The admission function registered with the store."""

    def __init__(self, store, options=None):
        self.store = store
        self.options = options

    def __call__(self, operation, rtype, obj, old=None, dry_run=False, user=None):
        key = _key(rtype)
        if operation not in ("CREATE", "UPDATE") or obj is None:
            return obj
        if key in (MWC, VWC):
            return obj
        namespaced = bool(((obj.get("metadata") or {}).get("namespace")))
        if key == "pods" and operation == "CREATE":
            obj = self.mutate_pod(obj)
        group, _ = _group_plural(key)
        if group in istio.VALIDATION_GROUPS or group.endswith(".istio.io"):
            self.validate(operation, key, obj, namespaced)
        return obj

    def mutate_pod(self, pod: dict) -> dict:
        ns = (pod.get("metadata") or {}).get("namespace")
        ns_labels = _namespace_labels(self.store, ns)
        for cfg in _sorted_configs(self.store, MWC):
            for wh in cfg.get("webhooks") or []:
                # each webhook sees the object as mutated by the ones called before it
                labels = (pod.get("metadata") or {}).get("labels") or {}
                if not rule_matches(wh.get("rules"), "CREATE", "pods"):
                    continue
                if not _selector_matches(wh.get("namespaceSelector"), ns_labels):
                    continue
                if not _selector_matches(wh.get("objectSelector"), labels):
                    continue
                try:
                    backend = resolve_backend(self.store, wh)
                except WebhookCallError as e:
                    if (wh.get("failurePolicy") or "Fail") == "Fail":
                        raise _call_failed(wh, e)
                    continue
                native = istio.native_sidecars(backend.version, backend.env, pod, self._kubelet_versions())
                pod = istio.inject_pod(pod, version=backend.version, revision=backend.revision,
                                       istiod=backend.service, istio_namespace=backend.namespace, hub=backend.hub,
                                       native=native)
        return pod

    def _kubelet_versions(self) -> dict:
        return {n["metadata"]["name"]: ((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")
                for n in _list(self.store, "nodes")}

    def validate(self, operation, key, obj, namespaced):
        ns = (obj.get("metadata") or {}).get("namespace")
        ns_labels = _namespace_labels(self.store, ns) if namespaced else None
        for _cfg, wh in _matching_webhooks(self.store, VWC, operation, key, obj, ns_labels):
            try:
                resolve_backend(self.store, wh)
            except WebhookCallError as e:
                if (wh.get("failurePolicy") or "Fail") == "Fail":
                    raise _call_failed(wh, e)
                continue
            problem = istio.validate_istio_config(obj)
            if problem:
                raise ApiError(400, "BadRequest",
                               f'admission webhook "{wh.get("name")}" denied the request: '
                               f"configuration is invalid: {problem}")


def install(store, options=None) -> WebhookAdmission:
    from . import serviceaccounts
    # the built-in ServiceAccount plugin runs before the MutatingAdmissionWebhook plugin (kube-apiserver's
    # admission order), so a missing ServiceAccount is reported even when a webhook would also fail
    serviceaccounts.install(store, options)
    plugin = WebhookAdmission(store, options)
    store.add_admission(plugin)
    return plugin
