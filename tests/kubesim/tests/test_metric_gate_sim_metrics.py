"""kubesim.metrics: the synthetic Istio telemetry the metric-gate tests scrape with a real Prometheus.

Runs the simulator in-process (scenario ``blog``: foo, bar, baz with 2 pods each and an injected ingress
gateway) and parses the exposition text the way Prometheus would read it.
"""
import re
import threading

import pytest

from kubesim import metrics
from kubesim.cli import build_cluster
from kubesim.options import SimOptions

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels)): value} of the exposition text; checks the TYPE lines too."""
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            name, kind = line.split()[2:4]
            types[name] = kind
            continue
        if not line or line.startswith('#'):
            continue
        match = LINE.match(line)
        assert match, 'not an exposition line: %r' % line
        name, labels, value = match.groups()
        key = (name, frozenset(LABEL.findall(labels)))
        assert key not in samples, 'duplicate series %r' % (key,)
        samples[key] = float(value)
    assert types == {'istio_requests_total': 'counter', 'istio_request_duration_milliseconds': 'histogram'}
    return samples


def select(samples, name, **labels):
    return {k: v for k, v in samples.items() if k[0] == name and all((lk, lv) in k[1] for lk, lv in labels.items())}


def label(key, name):
    return dict(key[1])[name]


@pytest.fixture(scope='module')
def blog():
    options = SimOptions(scenario='blog', seed=3, pod_ready_seconds=0.1)
    store, controllers = build_cluster(options)
    yield store, options
    if controllers is not None:
        controllers.stop()


def pods_of(store, namespace):
    return list(store.list('pods', namespace))


def test_every_app_pod_reports_with_istio_labels(blog):
    store, options = blog
    samples = parse(metrics.render(store, options))
    dest = select(samples, 'istio_requests_total', reporter='destination')
    workloads = {(label(k, 'destination_workload_namespace'), label(k, 'destination_workload')) for k in dest}
    assert workloads == {('foo', 'foo'), ('bar', 'bar'), ('baz', 'baz')}  # not the gateway, not istiod
    pods = {label(k, 'pod') for k in dest}
    assert pods == {p['metadata']['name'] for ns in ('foo', 'bar', 'baz') for p in pods_of(store, ns)}
    key = next(iter(select(samples, 'istio_requests_total', reporter='source', destination_workload='bar')))
    labels = dict(key[1])
    assert labels['source_workload'] == 'istio-ingressgateway'
    assert labels['source_workload_namespace'] == 'istio-ingress'
    assert labels['destination_service'].endswith('.bar.svc.cluster.local')
    assert labels['destination_canonical_revision'] and labels['istio_proxy_version'] == '1.14.6'
    assert {label(k, 'response_code') for k in dest} == {'200', '404', '503'}


def test_counters_grow_between_scrapes_and_never_shrink(blog):
    store, options = blog
    first = parse(metrics.render(store, options, now=2e9))
    second = parse(metrics.render(store, options, now=2e9 + 5))
    third = parse(metrics.render(store, options, now=2e9 + 4))  # an earlier clock reading never goes back
    assert set(first) == set(second) == set(third)
    assert all(second[k] >= first[k] for k in first) and all(third[k] >= second[k] for k in second)

    def total(samples):
        return sum(select(samples, 'istio_requests_total', reporter='destination').values())

    assert total(second) - total(first) >= 6 * 8 * 5 * 0.9  # 6 pods, at least 8 requests/s each, 5s


def quantile(samples, q, **labels):
    buckets = {}
    for key, value in select(samples, 'istio_request_duration_milliseconds_bucket', **labels).items():
        le = label(key, 'le')
        buckets[float('inf') if le == '+Inf' else float(le)] = buckets.get(
            float('inf') if le == '+Inf' else float(le), 0) + value
    bounds = sorted(buckets)
    counts = [buckets[b] for b in bounds]
    assert counts == sorted(counts), 'histogram buckets must be cumulative'
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts):
        if count >= rank:
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return bounds[-1]


def test_healthy_and_bad_profiles(blog):
    store, options = blog
    healthy = parse(metrics.render(store, options, now=3e9))
    bad_options = SimOptions(scenario='blog', seed=3, bad_proxy_versions=['1.14.6'])
    bad = parse(metrics.render(store, bad_options, now=3e9))

    def error_share(samples):
        dest = select(samples, 'istio_requests_total', reporter='destination', destination_workload='bar')
        errors = sum(v for k, v in dest.items() if label(k, 'response_code').startswith('5'))
        return errors / sum(dest.values())

    assert error_share(healthy) < 0.005
    assert error_share(bad) > 0.25
    assert quantile(healthy, 0.99, destination_workload='bar') < 200
    assert quantile(bad, 0.99, destination_workload='bar') > 2000
    for key, value in select(healthy, 'istio_request_duration_milliseconds_count').items():
        labels = dict(key[1])
        inf = [v for k, v in select(healthy, 'istio_request_duration_milliseconds_bucket', le='+Inf',
                                    pod=labels['pod'], response_code=labels['response_code']).items()]
        assert inf == [value]


def test_crash_looping_pods_report_errors_even_when_not_ready():
    options = SimOptions(scenario='blog', seed=5, crash_proxy_versions=['1.14.6'], pod_ready_seconds=0.1)
    store, controllers = build_cluster(options)
    try:
        pods = pods_of(store, 'baz')
        assert pods and all(c['status'] == 'False' for p in pods for c in p['status']['conditions']
                            if c['type'] == 'Ready')
        samples = parse(metrics.render(store, options, now=4e9))
        dest = select(samples, 'istio_requests_total', reporter='destination', destination_workload='baz')
        assert {label(k, 'pod') for k in dest} == {p['metadata']['name'] for p in pods}
        errors = sum(v for k, v in dest.items() if label(k, 'response_code').startswith('5'))
        assert errors / sum(dest.values()) > 0.25
    finally:
        if controllers is not None:
            controllers.stop()


def test_weight_hook_scales_a_pods_traffic():
    options = SimOptions(scenario='blog', seed=3, pod_ready_seconds=0.1)
    store, controllers = build_cluster(options)
    try:
        def no_bar(pod):
            return 0.0 if pod['metadata']['namespace'] == 'bar' else 1.0

        first = parse(metrics.render(store, options, now=5e9, weight_for=no_bar))
        second = parse(metrics.render(store, options, now=5e9 + 10, weight_for=no_bar))

        def grew(namespace):
            return (sum(select(second, 'istio_requests_total', destination_workload=namespace).values())
                    - sum(select(first, 'istio_requests_total', destination_workload=namespace).values()))

        assert grew('bar') == 0 and grew('foo') > 0
    finally:
        if controllers is not None:
            controllers.stop()


def test_render_is_safe_from_many_threads(blog):
    store, options = blog
    errors = []

    def scrape():
        try:
            for _round in range(10):
                parse(metrics.render(store, options))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=scrape) for _thread in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
