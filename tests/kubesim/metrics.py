"""Synthetic Istio telemetry for the simulated cluster (test harness, not shipped).

``render(store, options)`` returns a Prometheus text exposition (format 0.0.4) of Istio's standard
request metrics for every injected, running workload pod in the store, as a real mesh's Prometheus would
collect them from the sidecars:

* ``istio_requests_total`` (counter) with ``reporter="destination"`` (the pod's own proxy) and
  ``reporter="source"`` (the caller's proxy: the ingress gateway when the scenario has one), labelled
  like Istio's standard metrics (``destination_workload``, ``destination_workload_namespace``,
  ``destination_service``, ``destination_canonical_revision``, ``response_code``, ``source_workload`` ...)
  plus the ``namespace``/``pod`` labels a Kubernetes scrape config adds (simplification: a source series
  also carries the destination pod's ``namespace``/``pod``, one series per destination pod, where a real
  scrape would label it with the calling gateway pod and sum over the destination's pods);
* ``istio_request_duration_milliseconds`` (histogram, Istio's default buckets) for the destination
  reporter.

The traffic model is deterministic: a pod's counters are a function of the seed, the pod and the time
since it started (``status.startTime``), so they only grow while the pod lives and each scrape sees new
requests.  A pod whose istio-proxy version is in ``options.bad_proxy_versions`` or
``options.crash_proxy_versions`` answers about a third of its requests with 5xx and slowly (P99 around
ten seconds); a healthy pod answers ~0.1% with 5xx and fast (P99 well under 100 ms).  Crash-looping pods
are counted even though they are not Ready (their callers see the 503s).

Reads only: one ``store.list`` of pods and of services per call (the store returns private copies and
takes its own lock), so it is safe from any thread.  A few hundred pods render in milliseconds.

Traffic weights: ``weight_for(pod)`` may be given to ``render`` (a callable returning a factor for the
pod's request rate); by default it is :func:`kubesim.traffic.traffic_factor`, the VirtualService /
DestinationRule split (1.0 for every pod of a Service no VirtualService routes).  So that a weight change
never makes a counter go down, a pod's requests are integrated scrape by scrape: the first scrape that
sees a pod counts ``rate x factor x (now - startTime)``, later ones add ``rate x factor x (now - last)``.
With constant factors (no VirtualService) that equals the closed form, whatever the scrape times.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import threading
import time
import weakref

from . import istio

try:
    from . import traffic as _traffic
except ImportError:  # pragma: no cover - the traffic model is optional
    _traffic = None

PODS = "pods"
SERVICES = "services"

# Istio's default buckets for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                       300000, 600000, 1800000, 3600000)


class Profile:
    """How a pod answers: share of each response code, and the latency distribution (CDF per bucket)."""

    def __init__(self, name, codes, cdf, mean_ms):
        self.name = name
        self.codes = codes            # ((code, share), ...)
        self.cdf = cdf                # {le: fraction of requests at or under le}
        self.mean_ms = mean_ms

    def fraction_under(self, le):
        return self.cdf.get(le, 1.0)


HEALTHY = Profile(
    "healthy",
    codes=(("200", 0.989), ("404", 0.010), ("503", 0.001)),
    cdf={0.5: 0.0, 1: 0.01, 5: 0.30, 10: 0.70, 25: 0.95, 50: 0.985, 100: 0.997, 250: 0.9995},
    mean_ms=9.0,
)
BAD = Profile(
    "bad",
    codes=(("200", 0.64), ("404", 0.01), ("500", 0.15), ("503", 0.20)),
    cdf={0.5: 0.0, 1: 0.0, 5: 0.02, 10: 0.05, 25: 0.10, 50: 0.20, 100: 0.35, 250: 0.50, 500: 0.60,
         1000: 0.70, 2500: 0.85, 5000: 0.95, 10000: 0.985, 30000: 0.999},
    mean_ms=1800.0,
)

# Response codes rarer than this get no latency histogram of their own.
HISTOGRAM_MIN_SHARE = 0.05

METRIC_HELP = (
    ("istio_requests_total", "counter", "Total requests (synthetic traffic of kubesim, a test harness)."),
    ("istio_request_duration_milliseconds", "histogram",
     "Request duration in milliseconds (synthetic traffic of kubesim, a test harness)."),
)


def _fraction(*parts) -> float:
    """A deterministic number in [0, 1) from the parts."""
    digest = hashlib.blake2b("\x00".join(str(p) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / float(1 << 64)


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


def _parse_time(text) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        try:
            return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None


def workload_name(pod: dict) -> str:
    """The workload a pod belongs to, as Istio derives ``destination_workload`` (Deployment, not RS)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            name = ref.get("name", "")
            if ref.get("kind") == "ReplicaSet":
                pod_hash = labels.get("pod-template-hash")
                if pod_hash and name.endswith("-" + pod_hash):
                    return name[: -len(pod_hash) - 1]
                return name.rsplit("-", 1)[0]
            return name
    return meta.get("name") or ""


def _condition(pod, kind) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond.get("status") == "True"
    return False


def _is_gateway(pod) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get("istio", "").endswith("gateway") or "gateway" in labels.get("app", "")


def _service_for(pod, services) -> str | None:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for svc in services:
        smeta = svc.get("metadata") or {}
        if smeta.get("namespace") != meta.get("namespace"):
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            return smeta.get("name")
    return None


class _Source:
    """Who calls the workloads (the ingress gateway if there is one, else ``unknown``)."""

    def __init__(self, pods):
        self.workload = "unknown"
        self.namespace = "unknown"
        self.canonical = "unknown"
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            if labels.get("istio") == "ingressgateway":
                meta = pod["metadata"]
                self.workload = workload_name(pod)
                self.namespace = meta.get("namespace", "unknown")
                self.canonical = labels.get("service.istio.io/canonical-name", self.workload)
                break


def _pod_profile(pod, options):
    version = istio.pod_proxy_version(pod)
    bad = set(getattr(options, "bad_proxy_versions", None) or []) | set(
        getattr(options, "crash_proxy_versions", None) or [])
    return version, (BAD if version in bad else HEALTHY)


def _counts(total, profile, key):
    """Per response code: requests so far (monotonic in ``total``)."""
    out = []
    for code, share in profile.codes:
        out.append((code, int(math.floor(total * share + _fraction(key, code)))))
    return out


class _Totals:
    """Requests served so far per pod (uid), integrated over the scrapes of one store."""

    def __init__(self):
        self.lock = threading.Lock()
        self.pods = {}   # uid -> (last_now, total)

    def advance(self, uid, started, now, rate):
        with self.lock:
            last = self.pods.get(uid)
            if last is None:
                total = rate * max(0.0, now - started)
            else:
                last_now, total = last
                total += rate * max(0.0, now - last_now)
                now = max(now, last_now)
            self.pods[uid] = (now, total)
            return total

    def forget_except(self, uids):
        with self.lock:
            for uid in list(self.pods):
                if uid not in uids:
                    del self.pods[uid]


_TOTALS = weakref.WeakKeyDictionary()
_TOTALS_LOCK = threading.Lock()


def _has_virtual_services(store) -> bool:
    """Whether any VirtualService exists (without one every pod gets its full rate: no need to ask traffic)."""
    key = getattr(_traffic, "VIRTUAL_SERVICES", "virtualservices.networking.istio.io")
    if store.registry.get(key) is None:
        return False
    return bool(store.list(key))


def _totals_for(store) -> _Totals:
    with _TOTALS_LOCK:
        totals = _TOTALS.get(store)
        if totals is None:
            totals = _TOTALS[store] = _Totals()
        return totals


def render(store, options=None, now: float | None = None, weight_for=None) -> str:
    """The exposition text of the synthetic Istio metrics for the store's current pods."""
    now = time.time() if now is None else now
    seed = getattr(options, "seed", None)
    seed = 0 if seed is None else seed
    crash = set(getattr(options, "crash_proxy_versions", None) or [])
    pods = store.list(PODS)
    services = store.list(SERVICES)
    if weight_for is None and _traffic is not None and _has_virtual_services(store):
        weight_for = _traffic.traffic_factor(store, pods=pods, services=services)
    totals = _totals_for(store)
    totals.forget_except({(p.get("metadata") or {}).get("uid") for p in pods})
    source = _Source(pods)
    counter_lines = []
    histogram_lines = []
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"].get("name", ""))):
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        if not istio.is_injected(pod) or _is_gateway(pod) or meta.get("deletionTimestamp"):
            continue
        if status.get("phase") != "Running":
            continue
        version, profile = _pod_profile(pod, options)
        if not _condition(pod, "Ready") and version not in crash:
            continue
        started = _parse_time(status.get("startTime")) or _parse_time(meta.get("creationTimestamp"))
        if started is None:
            continue
        namespace = meta.get("namespace", "")
        workload = workload_name(pod)
        labels = meta.get("labels") or {}
        rps = 8.0 + 12.0 * _fraction(seed, namespace, workload)
        if weight_for is not None:
            rps *= max(0.0, float(weight_for(pod)))
        total = totals.advance(meta.get("uid") or meta.get("name"), started, now, rps)
        key = (seed, namespace, meta.get("name"), meta.get("uid"))
        service = _service_for(pod, services) or workload
        canonical = labels.get("service.istio.io/canonical-name", labels.get("app", workload))
        canonical_rev = labels.get("service.istio.io/canonical-revision", "latest")
        # Istio's standard labels that matter to dashboards and gates (the identity labels - principals,
        # clusters, service name/namespace, app - are left out to keep a 1s scrape of a few hundred pods small).
        dest = [
            ("destination_workload", workload),
            ("destination_workload_namespace", namespace),
            ("destination_service", f"{service}.{namespace}.svc.cluster.local"),
            ("destination_canonical_service", canonical),
            ("destination_canonical_revision", canonical_rev),
            ("destination_version", labels.get("version", "unknown")),
        ]
        src = [
            ("source_workload", source.workload),
            ("source_workload_namespace", source.namespace),
            ("source_canonical_service", source.canonical),
        ]
        common = [("request_protocol", "http"), ("connection_security_policy", "mutual_tls"),
                  ("response_flags", "-")]
        scrape = [("namespace", namespace), ("pod", meta.get("name", "")), ("istio_proxy_version", version or "")]
        counts = _counts(total, profile, key)
        for reporter in ("destination", "source"):
            policy = common if reporter == "destination" else [
                ("request_protocol", "http"), ("connection_security_policy", "unknown"), ("response_flags", "-")]
            prefix = _labels([("reporter", reporter)] + src + dest + policy + scrape)
            for code, count in counts:
                counter_lines.append(f'istio_requests_total{{{prefix},response_code="{code}"}} {count}')
        prefix = _labels([("reporter", "destination")] + src + dest + common + scrape)
        shares = dict(profile.codes)
        for code, count in counts:
            if shares[code] < HISTOGRAM_MIN_SHARE:
                continue  # keep the histogram small: rare codes (404s, a healthy pod's 5xx) only matter to counters
            base = f'{prefix},response_code="{code}"'
            for le in DURATION_BUCKETS_MS:
                under = int(math.floor(count * profile.fraction_under(le)))
                histogram_lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="{le:g}"}} {under}')
            histogram_lines.append(f'istio_request_duration_milliseconds_bucket{{{base},le="+Inf"}} {count}')
            histogram_lines.append(f'istio_request_duration_milliseconds_sum{{{base}}} {count * profile.mean_ms:.1f}')
            histogram_lines.append(f'istio_request_duration_milliseconds_count{{{base}}} {count}')
    out = []
    for (name, kind, help_text), lines in zip(METRIC_HELP, (counter_lines, histogram_lines)):
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"
