"""Traffic weights of the simulated mesh (test harness, not shipped).

Reads the Istio VirtualServices and DestinationRules in the store and answers how a Service's requests are
split between its pods, as Envoy would split them: the default HTTP route (no ``match``) for the host
sends each destination its ``weight`` percent, a destination's ``subset`` selects pods by the subset's
labels in the DestinationRule for the host, and inside one subset the pods share evenly.

``weights_for(store, namespace, host)`` -> ``{subset_labels: weight}`` where ``subset_labels`` is a
hashable ``tuple(sorted(labels.items()))`` (``()`` for a destination without subset: all the Service's
pods).  Empty when no VirtualService routes the host, i.e. plain Kubernetes load balancing.

``traffic_factor(store)`` -> a callable ``factor(pod)`` for :func:`kubesim.metrics.render`'s
``weight_for`` hook: the pod's share of its Service's requests relative to an even split over all the
Service's pods (1.0 without a VirtualService; ``weight/100 * pods_of_service / pods_of_subset`` with one;
0.0 for a pod no weighted destination selects).

Simplifications (it is a traffic *model*): only VirtualServices in the Service's own namespace count,
``match`` routes are ignored (they carry the test traffic of a few users), and a destination whose subset
is not defined sends its share nowhere (Envoy answers 503 "no healthy upstream" for it).
"""

from __future__ import annotations

VIRTUAL_SERVICES = "virtualservices.networking.istio.io"
DESTINATION_RULES = "destinationrules.networking.istio.io"
PODS = "pods"
SERVICES = "services"


def fqdn(host: str, namespace: str) -> str:
    """A host as Istio resolves it in a rule of ``namespace`` (short names are namespace-relative)."""
    parts = (host or "").split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.cluster.local"
    if len(parts) == 2:
        return f"{parts[0]}.{parts[1]}.svc.cluster.local"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host


def _list(store, key, namespace):
    if store.registry.get(key) is None:  # the Istio CRDs are not installed
        return []
    return store.list(key, namespace)


def _subsets(store, namespace: str, host: str) -> dict:
    """{subset name: labels} from the DestinationRules of ``host`` in ``namespace`` (oldest first wins)."""
    target = fqdn(host, namespace)
    found: dict = {}
    rules = sorted(_list(store, DESTINATION_RULES, namespace),
                   key=lambda o: (o["metadata"].get("creationTimestamp", ""), o["metadata"].get("name", "")))
    for rule in rules:
        spec = rule.get("spec") or {}
        if fqdn(spec.get("host", ""), namespace) != target:
            continue
        for subset in spec.get("subsets") or []:
            if isinstance(subset, dict) and subset.get("name") and subset["name"] not in found:
                found[subset["name"]] = dict(subset.get("labels") or {})
    return found


def _default_route(store, namespace: str, host: str):
    """The destinations of the first default HTTP route for ``host`` (VirtualServices by name)."""
    target = fqdn(host, namespace)
    services = sorted(_list(store, VIRTUAL_SERVICES, namespace), key=lambda o: o["metadata"].get("name", ""))

    def goes_to_host(route):
        dests = [d for d in route.get("route") or [] if isinstance(d, dict)]
        return dests and all(fqdn((d.get("destination") or {}).get("host", ""), namespace) == target
                             for d in dests)

    # VirtualServices for the host itself (mesh traffic) first, then any other (a gateway's, say)
    ordered = sorted(services, key=lambda vs: 0 if any(
        fqdn(h, namespace) == target for h in (vs.get("spec") or {}).get("hosts") or []) else 1)
    for vs in ordered:
        for route in (vs.get("spec") or {}).get("http") or []:
            if isinstance(route, dict) and not route.get("match") and goes_to_host(route):
                return [d for d in route["route"] if isinstance(d, dict)]
    return None


def weights_for(store, namespace: str, host: str) -> dict:
    """``{tuple(sorted(subset_labels.items())): weight}`` for the host's default route, or ``{}``."""
    dests = _default_route(store, namespace, host)
    if not dests:
        return {}
    subsets = _subsets(store, namespace, host)
    out: dict = {}
    for d in dests:
        weight = d.get("weight")
        if weight is None:
            weight = 100 if len(dests) == 1 else 0
        subset = (d.get("destination") or {}).get("subset")
        if subset:
            if subset not in subsets:
                continue  # undefined subset: its share ends in 503s, on no pod
            key = tuple(sorted(subsets[subset].items()))
        else:
            key = ()
        out[key] = out.get(key, 0) + int(weight)
    return out


def _matches(labels: dict, key: tuple) -> bool:
    return all(labels.get(k) == v for k, v in key)


def _live(pod) -> bool:
    meta = pod.get("metadata") or {}
    return not meta.get("deletionTimestamp") and (pod.get("status") or {}).get("phase") == "Running"


def traffic_factor(store, pods=None, services=None):
    """A ``factor(pod)`` callable (see the module docstring); reads the store once per Service."""
    pods = store.list(PODS) if pods is None else pods
    services = store.list(SERVICES) if services is None else services
    cache: dict = {}

    def service_of(pod):
        meta = pod.get("metadata") or {}
        labels = meta.get("labels") or {}
        for svc in sorted(services, key=lambda s: s["metadata"].get("name", "")):
            smeta = svc.get("metadata") or {}
            selector = (svc.get("spec") or {}).get("selector") or {}
            if smeta.get("namespace") == meta.get("namespace") and selector and all(
                    labels.get(k) == v for k, v in selector.items()):
                return smeta.get("name"), selector
        return None, None

    def factor(pod) -> float:
        namespace = (pod.get("metadata") or {}).get("namespace", "")
        name, selector = service_of(pod)
        if name is None:
            return 1.0
        if (namespace, name) not in cache:
            members = [p for p in pods if _live(p) and (p.get("metadata") or {}).get("namespace") == namespace
                       and all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                               for k, v in selector.items())]
            cache[(namespace, name)] = (weights_for(store, namespace, name), members)
        weights, members = cache[(namespace, name)]
        if not weights:
            return 1.0
        labels = (pod.get("metadata") or {}).get("labels") or {}
        share = 0.0
        for key, weight in weights.items():
            if not _matches(labels, key):
                continue
            in_subset = sum(1 for p in members if _matches((p.get("metadata") or {}).get("labels") or {}, key))
            if in_subset:
                share += (weight / 100.0) * len(members) / in_subset
        return share

    return factor
