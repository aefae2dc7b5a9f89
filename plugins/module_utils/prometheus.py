# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prometheus metric gate: verify a wave of an Istio upgrade against the mesh's own telemetry.

Three layers, each usable without Ansible (the module ``istio_metric_gate`` only wires them up):

``PrometheusClient``
    Instant queries against the Prometheus HTTP API (``GET /api/v1/query``) with bearer-token or basic
    auth, extra headers, a CA file or ``validate_certs: false``, client certificates, a timeout and
    retries for transient trouble.  A Prometheus that cannot be reached (connection refused, DNS, TLS,
    timeout, 5xx after the retries) raises ``PrometheusUnreachable``; refused credentials raise
    ``PrometheusAuthError``; a query Prometheus rejects raises ``PrometheusQueryError``.  None of these
    is a failed check: a gate that cannot look must not pretend it saw something.

``MetricCheck``
    One check: a PromQL template and thresholds (``min`` and/or ``max``).  The built-ins are Istio's
    standard telemetry: ``success_rate`` (share of non-5xx requests, ``reporter="destination"``) and
    ``latency_p99`` (milliseconds, from ``istio_request_duration_milliseconds_bucket``).  Templates may use
    ``{namespace}``, ``{workload}`` (a regular expression for ``=~``), ``{window}``.

``MetricGate``
    Runs every check for every target (namespace and workload selection) ``count`` times, ``interval``
    seconds apart, like the analysis runs of Flagger and Argo Rollouts: each sample is a ``Measurement``;
    a series (check x namespace x workload) fails the gate when more than ``failure_limit`` of its samples
    failed, and the gate stops at once when that happens.  ``no_data`` decides what a missing answer (no
    series, or NaN because there was no traffic) is: ``fail``, ``pass`` or ``inconclusive``.  Optionally
    every value is also compared with a baseline (the same check before the wave, or a previous result).
    The outcome is a ``GateVerdict``: ``pass``, ``fail`` or ``inconclusive``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import json
import math
import re
import time

from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urlsplit, urlunsplit

from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    GateConfigError,
    PrometheusAuthError,
    PrometheusQueryError,
    PrometheusUnreachable,
)

DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 2
DEFAULT_RETRY_DELAY = 1.0

NO_DATA_POLICIES = ('fail', 'pass', 'inconclusive')

PASS = 'pass'
FAIL = 'fail'
INCONCLUSIVE = 'inconclusive'

# Labels of a result series that name the workload / namespace, most specific first.
WORKLOAD_LABELS = ('destination_workload', 'workload', 'deployment', 'app')
NAMESPACE_LABELS = ('destination_workload_namespace', 'namespace', 'destination_service_namespace')


# --- durations and times ---------------------------------------------------------------------------

_DURATION_UNITS = (('ms', 0.001), ('y', 365 * 86400), ('w', 7 * 86400), ('d', 86400), ('h', 3600),
                   ('m', 60), ('s', 1))
_DURATION_RE = re.compile(r'^(?:\d+(?:ms|y|w|d|h|m|s))+$')
_DURATION_PART_RE = re.compile(r'(\d+)(ms|y|w|d|h|m|s)')


def parse_duration(value, what='duration'):
    """Seconds (float) of a Prometheus duration (``30s``, ``1m30s``, ``500ms``) or a number of seconds."""
    if isinstance(value, bool):
        raise GateConfigError('%s must be a duration such as 30s or 2m, not %r' % (what, value))
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value):
            raise GateConfigError('%s must not be negative, got %r' % (what, value))
        return float(value)
    text = str(value).strip()
    if re.match(r'^\d+(\.\d+)?$', text):
        return float(text)
    if not _DURATION_RE.match(text):
        raise GateConfigError('%s %r is not a duration: use Prometheus syntax such as 15s, 1m, 1m30s or '
                              '500ms' % (what, value))
    units = dict(_DURATION_UNITS)
    return float(sum(int(number) * units[unit] for number, unit in _DURATION_PART_RE.findall(text)))


def promql_duration(value, what='window'):
    """A duration for a PromQL range selector (``[1m]``): validated, numbers of seconds become ``Ns``."""
    seconds = parse_duration(value, what)
    if seconds <= 0:
        raise GateConfigError('%s must be longer than zero' % what)
    if isinstance(value, (int, float)) or re.match(r'^\d+(\.\d+)?$', str(value).strip()):
        if seconds != int(seconds):
            return '%dms' % int(round(seconds * 1000))
        return '%ds' % int(seconds)
    return str(value).strip()


def parse_time(value, now=None):
    """Unix seconds of a time given as Unix seconds, RFC 3339 text, or a duration ago (``-10m``/``10m ago``)."""
    now = time.time() if now is None else now
    if value is None:
        return None
    if isinstance(value, bool):
        raise GateConfigError('a time must be Unix seconds, RFC 3339 or a duration ago, not %r' % value)
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.match(r'^\d+(\.\d+)?$', text):
        return float(text)
    ago = re.match(r'^-\s*(\S+)$', text) or re.match(r'^(\S+)\s+ago$', text)
    if ago:
        return now - parse_duration(ago.group(1), 'time offset')
    iso = text.replace('Z', '+00:00').replace('z', '+00:00')
    if ' ' in iso and 'T' not in iso:
        iso = iso.replace(' ', 'T', 1)
    try:
        parsed = datetime.datetime.fromisoformat(iso)
    except ValueError:
        raise GateConfigError('time %r is not Unix seconds, RFC 3339 (2024-05-01T12:00:00Z) or a '
                              'duration ago (-10m)' % value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def format_time(seconds):
    """RFC 3339 UTC with milliseconds."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (moment.microsecond // 1000)


def redact_url(url):
    """The URL without credentials in its user-info part (they must not reach logs or results)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ''
    if parts.port:
        host = '%s:%d' % (host, parts.port)
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


# --- PromQL helpers --------------------------------------------------------------------------------

_RE2_SPECIAL = set('\\.+*?()|[]{}^$')


def regex_escape(text):
    """Escape ``text`` so that it matches literally in an RE2 expression (PromQL's ``=~``)."""
    return ''.join('\\' + char if char in _RE2_SPECIAL else char for char in text)


def promql_string(text):
    """``text`` as the body of a double-quoted PromQL string literal (without the quotes)."""
    return text.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')


def render_template(template, namespace, workload_regex, window):
    """Fill ``{namespace}``, ``{workload}`` and ``{window}`` in a PromQL template.

    Only these three placeholders are replaced; every other brace (label matchers) stays as it is.
    The namespace and the workload regex are escaped for a double-quoted PromQL string.
    """
    return (template.replace('{namespace}', promql_string(namespace))
            .replace('{workload}', promql_string(workload_regex))
            .replace('{window}', window))


SUCCESS_RATE_TEMPLATE = (
    '1 - ('
    'sum by (destination_workload_namespace, destination_workload) (rate(istio_requests_total{'
    'reporter="destination",destination_workload_namespace="{namespace}",'
    'destination_workload=~"{workload}",response_code=~"5.."}[{window}]))'
    ' or '
    '(0 * sum by (destination_workload_namespace, destination_workload) (rate(istio_requests_total{'
    'reporter="destination",destination_workload_namespace="{namespace}",'
    'destination_workload=~"{workload}"}[{window}])))'
    ') / '
    'sum by (destination_workload_namespace, destination_workload) (rate(istio_requests_total{'
    'reporter="destination",destination_workload_namespace="{namespace}",'
    'destination_workload=~"{workload}"}[{window}]))'
)
"""Share of requests answered without a 5xx, per workload.  The ``or 0 * total`` keeps a workload with
no 5xx at all (no such series) at 1 instead of dropping it; no traffic in the window gives NaN (no data)."""

LATENCY_P99_TEMPLATE = (
    'histogram_quantile(0.99, '
    'sum by (destination_workload_namespace, destination_workload, le) ('
    'rate(istio_request_duration_milliseconds_bucket{'
    'reporter="destination",destination_workload_namespace="{namespace}",'
    'destination_workload=~"{workload}"}[{window}])))'
)
"""P99 request duration in milliseconds per workload, as Istio's dashboards compute it."""


# --- the Prometheus HTTP API -----------------------------------------------------------------------

class Sample:
    """One element of an instant-query result: labels, the value (float; NaN/Inf kept) and its time."""

    def __init__(self, labels, value, timestamp, raw=None):
        self.labels = dict(labels or {})
        self.value = value
        self.timestamp = timestamp
        self.raw = raw if raw is not None else repr(value)

    def __repr__(self):
        return 'Sample(%r, %r, %r)' % (self.labels, self.value, self.timestamp)


class QueryResult:
    """The ``data`` of an instant query: its type, the samples, and Prometheus' warnings."""

    def __init__(self, result_type, samples, warnings=None):
        self.result_type = result_type
        self.samples = list(samples)
        self.warnings = list(warnings or [])


def _to_float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PrometheusQueryError('Prometheus returned a value that is not a number: %r' % (text,))


def parse_query_response(document):
    """A ``QueryResult`` from the JSON document of ``/api/v1/query``; raise PrometheusQueryError for errors."""
    if not isinstance(document, dict):
        raise PrometheusQueryError('Prometheus answered something that is not an API response')
    if document.get('status') != 'success':
        raise PrometheusQueryError('Prometheus refused the query: %s (%s)' % (
            document.get('error') or 'unknown error', document.get('errorType') or 'error'),
            details={'error_type': document.get('errorType'), 'error': document.get('error')})
    data = document.get('data') or {}
    result_type = data.get('resultType')
    result = data.get('result')
    warnings = document.get('warnings') or []
    if result_type == 'vector':
        samples = []
        for item in result or []:
            stamp, text = item.get('value', [None, None])
            samples.append(Sample(item.get('metric') or {}, _to_float(text), float(stamp), text))
        return QueryResult(result_type, samples, warnings)
    if result_type == 'scalar':
        stamp, text = result
        return QueryResult(result_type, [Sample({}, _to_float(text), float(stamp), text)], warnings)
    if result_type == 'matrix':
        raise PrometheusQueryError('the query returns a range vector (matrix); a check needs an instant '
                                   'vector or a scalar: wrap the range selector in a function such as '
                                   'rate() or avg_over_time()')
    if result_type == 'string':
        raise PrometheusQueryError('the query returns a string; a check needs a number')
    raise PrometheusQueryError('Prometheus returned an unknown result type %r' % (result_type,))


def _default_opener(url, headers, timeout, validate_certs, ca_path, client_cert, client_key):
    from ansible.module_utils.urls import open_url

    return open_url(url, method='GET', headers=headers, timeout=timeout, validate_certs=validate_certs,
                    ca_path=ca_path, client_cert=client_cert, client_key=client_key,
                    follow_redirects='safe', use_netrc=False)


class PrometheusClient:
    """A small client of the Prometheus HTTP API (instant queries only, which is all a gate needs)."""

    def __init__(self, url, headers=None, bearer_token=None, username=None, password=None, ca_cert=None,
                 client_cert=None, client_key=None, validate_certs=True, timeout=DEFAULT_TIMEOUT,
                 retries=DEFAULT_RETRIES, retry_delay=DEFAULT_RETRY_DELAY, opener=None, sleep=None):
        if not url or not re.match(r'^https?://[^/\s]+', url):
            raise GateConfigError('prometheus_url %r is not an http(s) URL such as '
                                  'http://prometheus.istio-system:9090' % (redact_url(url or ''),))
        if bearer_token and (username or password):
            raise GateConfigError('give either bearer_token or username/password, not both')
        if bool(client_cert) != bool(client_key) and client_key:
            raise GateConfigError('client_key needs client_cert')
        self.url = url.rstrip('/')
        self.display_url = redact_url(self.url)
        self.headers = dict((str(k), str(v)) for k, v in (headers or {}).items())
        if bearer_token:
            self.headers['Authorization'] = 'Bearer %s' % bearer_token
        elif username is not None or password is not None:
            token = base64.b64encode(('%s:%s' % (username or '', password or '')).encode('utf-8'))
            self.headers['Authorization'] = 'Basic %s' % token.decode('ascii')
        self.headers.setdefault('Accept', 'application/json')
        self.ca_cert = ca_cert
        self.client_cert = client_cert
        self.client_key = client_key
        self.validate_certs = validate_certs
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.retry_delay = retry_delay
        self._open = opener or _default_opener
        self._sleep = sleep or time.sleep
        self.requests = 0

    def query(self, promql, at=None):
        """Run an instant query (at Unix time ``at``, default now) and return a ``QueryResult``."""
        params = {'query': promql}
        if at is not None:
            params['time'] = '%.3f' % at
        document = self._get('/api/v1/query', params)
        return parse_query_response(document)

    def _get(self, path, params):
        url = self.url + path
        if params:
            url += '?' + urlencode(params)
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._get_once(url, path, params)
            except PrometheusUnreachable:
                if attempt > self.retries:
                    raise
                self._sleep(self.retry_delay * attempt)

    def _get_once(self, url, path, params):
        self.requests += 1
        where = '%s%s' % (self.display_url, path)
        try:
            response = self._open(url, dict(self.headers), self.timeout, self.validate_certs, self.ca_cert,
                                  self.client_cert, self.client_key)
            body = response.read()
        except HTTPError as error:
            return self._http_error(error, where, params)
        except URLError as error:
            raise PrometheusUnreachable('Prometheus at %s is unreachable: %s' % (
                self.display_url, getattr(error, 'reason', error)), details={'url': where})
        except Exception as error:  # socket timeouts, TLS, connection resets, ansible's ConnectionError
            raise PrometheusUnreachable('Prometheus at %s is unreachable: %s: %s' % (
                self.display_url, type(error).__name__, error), details={'url': where})
        try:
            return json.loads(body.decode('utf-8') if isinstance(body, bytes) else body)
        except ValueError:
            raise PrometheusUnreachable('%s did not answer with JSON: is prometheus_url the Prometheus '
                                        'server (not a UI or a proxy login page)?' % where,
                                        details={'url': where, 'body': _tail(body)})

    def _http_error(self, error, where, params):
        status = getattr(error, 'code', None)
        try:
            body = error.read()
        except Exception:
            body = b''
        document = None
        try:
            document = json.loads(body.decode('utf-8') if isinstance(body, bytes) else body)
        except (ValueError, AttributeError):
            pass
        details = {'url': where, 'status': status}
        if status in (401, 403):
            raise PrometheusAuthError('Prometheus at %s refused the credentials (HTTP %s): check '
                                      'bearer_token, username/password or headers' % (self.display_url, status),
                                      details=details)
        if isinstance(document, dict) and document.get('status') == 'error' and status in (400, 422):
            details.update({'error_type': document.get('errorType'), 'error': document.get('error'),
                            'query': params.get('query')})
            raise PrometheusQueryError('Prometheus refused the query (%s): %s' % (
                document.get('errorType'), document.get('error')), details=details)
        if status == 404:
            raise PrometheusUnreachable('%s does not exist (HTTP 404): prometheus_url must be the base URL of '
                                        'the Prometheus server (with its route prefix, if any)' % where,
                                        details=details)
        if status is not None and status >= 500:
            message = ''
            if isinstance(document, dict):
                message = document.get('error') or ''
            raise PrometheusUnreachable('Prometheus at %s answered HTTP %s%s' % (
                self.display_url, status, (': ' + message) if message else ''), details=details)
        details['body'] = _tail(body)
        raise PrometheusQueryError('Prometheus at %s answered HTTP %s' % (self.display_url, status),
                                   details=details)


def _tail(body, limit=300):
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    body = body or ''
    return body if len(body) <= limit else body[:limit] + '...'


# --- checks ----------------------------------------------------------------------------------------

class MetricCheck:
    """A named PromQL template with thresholds.

    ``direction`` says which way is better (``higher``/``lower``); it is derived from the thresholds when
    only one of ``min``/``max`` is given, and only matters for the baseline comparison: a value may be at
    most ``baseline_tolerance`` (a fraction of the baseline) worse than the baseline.
    """

    def __init__(self, name, query, minimum=None, maximum=None, direction=None, baseline_tolerance=0.1,
                 no_data=None, unit=None, builtin=False):
        if not name or not re.match(r'^[A-Za-z0-9_.:-]+$', str(name)):
            raise GateConfigError('check name %r must be letters, digits, "_", "-", "." or ":"' % (name,))
        if not query or not str(query).strip():
            raise GateConfigError('check %s has no query' % name)
        if minimum is None and maximum is None:
            raise GateConfigError('check %s needs a threshold: min, max or both' % name)
        for label, bound in (('min', minimum), ('max', maximum)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or math.isnan(bound)):
                raise GateConfigError('check %s: %s must be a number, not %r' % (name, label, bound))
        if minimum is not None and maximum is not None and minimum > maximum:
            raise GateConfigError('check %s: min %s is above max %s' % (name, minimum, maximum))
        if direction is None:
            if minimum is not None and maximum is None:
                direction = 'higher'
            elif maximum is not None and minimum is None:
                direction = 'lower'
        if direction not in (None, 'higher', 'lower'):
            raise GateConfigError('check %s: direction must be higher or lower, not %r' % (name, direction))
        if baseline_tolerance is None:
            baseline_tolerance = 0.1
        if isinstance(baseline_tolerance, bool) or not isinstance(baseline_tolerance, (int, float)) \
                or baseline_tolerance < 0:
            raise GateConfigError('check %s: baseline_tolerance must be a fraction >= 0' % name)
        if no_data is not None and no_data not in NO_DATA_POLICIES:
            raise GateConfigError('check %s: no_data must be one of %s' % (name, ', '.join(NO_DATA_POLICIES)))
        self.name = str(name)
        self.query = str(query)
        self.min = minimum
        self.max = maximum
        self.direction = direction
        self.baseline_tolerance = float(baseline_tolerance)
        self.no_data = no_data
        self.unit = unit
        self.builtin = builtin

    @classmethod
    def success_rate(cls, minimum=0.99, baseline_tolerance=0.01, no_data=None):
        """Share of non-5xx answers (0..1) reported by the destination proxies."""
        if minimum is not None and not 0 <= minimum <= 1:
            raise GateConfigError('success_rate min is a ratio between 0 and 1 (0.99 = 99%%), not %r' % minimum)
        return cls('success_rate', SUCCESS_RATE_TEMPLATE, minimum=minimum, baseline_tolerance=baseline_tolerance,
                   no_data=no_data, unit='ratio', builtin=True)

    @classmethod
    def latency_p99(cls, max_ms=500, baseline_tolerance=0.25, no_data=None):
        """P99 request duration in milliseconds reported by the destination proxies."""
        if max_ms is not None and max_ms <= 0:
            raise GateConfigError('latency_p99 max_ms must be above zero, not %r' % max_ms)
        return cls('latency_p99', LATENCY_P99_TEMPLATE, maximum=max_ms, baseline_tolerance=baseline_tolerance,
                   no_data=no_data, unit='ms', builtin=True)

    @property
    def threshold(self):
        threshold = {}
        if self.min is not None:
            threshold['min'] = self.min
        if self.max is not None:
            threshold['max'] = self.max
        return threshold

    def render(self, namespace, workload_regex, window):
        return render_template(self.query, namespace, workload_regex, window)

    def judge(self, value, baseline=None):
        """``(ok, reason)`` for a finite value; ``reason`` says why it failed (None when ok)."""
        if self.min is not None and value < self.min:
            return False, '%s %s is below min %s' % (self.name, _fmt(value), _fmt(self.min))
        if self.max is not None and value > self.max:
            return False, '%s %s is above max %s' % (self.name, _fmt(value), _fmt(self.max))
        if baseline is not None and self.direction is not None and _finite(baseline):
            slack = abs(baseline) * self.baseline_tolerance
            if self.direction == 'higher' and value < baseline - slack:
                return False, '%s %s is worse than the baseline %s (tolerance %s%%)' % (
                    self.name, _fmt(value), _fmt(baseline), _fmt(self.baseline_tolerance * 100))
            if self.direction == 'lower' and value > baseline + slack:
                return False, '%s %s is worse than the baseline %s (tolerance %s%%)' % (
                    self.name, _fmt(value), _fmt(baseline), _fmt(self.baseline_tolerance * 100))
        return True, None

    def to_dict(self):
        return {'name': self.name, 'query': self.query, 'threshold': self.threshold, 'direction': self.direction,
                'baseline_tolerance': self.baseline_tolerance, 'unit': self.unit, 'builtin': self.builtin}


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt(value):
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return ('%.6g' % value)
    return str(value)


def checks_from_params(checks):
    """The ``MetricCheck`` list of the module's ``checks`` option (both built-ins when it is None)."""
    if checks is None:
        return [MetricCheck.success_rate(), MetricCheck.latency_p99()]
    if not isinstance(checks, dict):
        raise GateConfigError('checks must be a dict with success_rate, latency_p99 and/or custom')
    unknown = set(checks) - set(('success_rate', 'latency_p99', 'custom'))
    if unknown:
        raise GateConfigError('unknown key(s) in checks: %s (known: success_rate, latency_p99, custom)'
                              % ', '.join(sorted(unknown)))
    result = []
    spec = checks.get('success_rate')
    if spec is not None and spec is not False:
        spec = {} if spec is True else dict(spec)
        result.append(MetricCheck.success_rate(
            minimum=_num(spec.get('min'), 0.99), baseline_tolerance=_num(spec.get('baseline_tolerance'), 0.01),
            no_data=spec.get('no_data')))
    spec = checks.get('latency_p99')
    if spec is not None and spec is not False:
        spec = {} if spec is True else dict(spec)
        result.append(MetricCheck.latency_p99(
            max_ms=_num(spec.get('max_ms'), 500), baseline_tolerance=_num(spec.get('baseline_tolerance'), 0.25),
            no_data=spec.get('no_data')))
    for index, spec in enumerate(checks.get('custom') or []):
        if not isinstance(spec, dict):
            raise GateConfigError('checks.custom[%d] must be a dict with name, query, min and/or max' % index)
        result.append(MetricCheck(spec.get('name'), spec.get('query'), minimum=spec.get('min'),
                                  maximum=spec.get('max'), direction=spec.get('direction'),
                                  baseline_tolerance=spec.get('baseline_tolerance'), no_data=spec.get('no_data')))
    names = [check.name for check in result]
    duplicates = sorted(set(name for name in names if names.count(name) > 1))
    if duplicates:
        raise GateConfigError('check names must be unique: %s appears more than once' % ', '.join(duplicates))
    if not result:
        raise GateConfigError('checks selects no check: enable success_rate, latency_p99 or add custom checks')
    return result


def _num(value, default):
    return default if value is None else value


# --- targets ---------------------------------------------------------------------------------------

class Target:
    """A namespace and which of its workloads count: all (None), a list of names, or a regex."""

    def __init__(self, namespace, workloads=None, regex=None):
        if not namespace or not isinstance(namespace, str):
            raise GateConfigError('a namespace must be a non-empty string, not %r' % (namespace,))
        if workloads is not None and regex is not None:
            raise GateConfigError('namespace %s: give workload names or a regex, not both' % namespace)
        self.namespace = namespace
        self.workloads = list(workloads) if workloads is not None else None
        self.regex = regex
        if self.workloads is not None:
            if not self.workloads:
                raise GateConfigError('namespace %s: the workload list is empty' % namespace)
            for name in self.workloads:
                if not isinstance(name, str) or not name:
                    raise GateConfigError('namespace %s: workload names must be strings, not %r' % (namespace, name))

    @property
    def workload_regex(self):
        if self.workloads is not None:
            return '|'.join(regex_escape(name) for name in self.workloads)
        if self.regex is not None:
            return self.regex
        return '.*'

    def to_dict(self):
        return {'namespace': self.namespace, 'workloads': self.workloads, 'workload_regex': self.workload_regex}


def targets_from_params(namespaces, workloads=None):
    """``Target`` list from the module's ``namespaces`` and ``workloads`` options.

    ``workloads`` is None (every workload), a list of names (in every namespace), a string (a regex of
    workload names, anchored as PromQL does) or a dict namespace -> list of names or regex string.
    """
    if not namespaces:
        raise GateConfigError('namespaces is empty: name the namespaces of the wave to verify')
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    seen = []
    for namespace in namespaces:
        if namespace not in seen:
            seen.append(namespace)
    if isinstance(workloads, dict):
        unknown = sorted(set(workloads) - set(seen))
        if unknown:
            raise GateConfigError('workloads names namespace(s) not in namespaces: %s' % ', '.join(unknown))
    targets = []
    for namespace in seen:
        selection = workloads.get(namespace) if isinstance(workloads, dict) else workloads
        if selection is None:
            targets.append(Target(namespace))
        elif isinstance(selection, str):
            _check_regex(selection, namespace)
            targets.append(Target(namespace, regex=selection))
        elif isinstance(selection, (list, tuple)):
            targets.append(Target(namespace, workloads=selection))
        else:
            raise GateConfigError('workloads for %s must be a list of names or a regex string' % namespace)
    return targets


def _check_regex(pattern, namespace):
    try:
        re.compile(pattern)
    except re.error as error:
        raise GateConfigError('namespace %s: workload regex %r is invalid: %s' % (namespace, pattern, error))


# --- measurements and the gate ---------------------------------------------------------------------

class Measurement:
    """One sample of one check for one namespace/workload."""

    def __init__(self, check, namespace, workload, value, threshold, result, time_, iteration, query,
                 reason=None, no_data=False, baseline=None, raw=None, labels=None):
        self.check = check
        self.namespace = namespace
        self.workload = workload
        self.value = value
        self.threshold = threshold
        self.result = result
        self.time = time_
        self.iteration = iteration
        self.query = query
        self.reason = reason
        self.no_data = no_data
        self.baseline = baseline
        self.raw = raw
        self.labels = labels or {}

    @property
    def ok(self):
        return self.result == PASS

    @property
    def key(self):
        return (self.check, self.namespace, self.workload)

    def to_dict(self):
        return {
            'check': self.check, 'namespace': self.namespace, 'workload': self.workload,
            'value': self.value if _finite(self.value) else None,
            'raw': self.raw, 'threshold': dict(self.threshold), 'ok': self.ok, 'result': self.result,
            'no_data': self.no_data, 'reason': self.reason, 'baseline': self.baseline,
            'time': format_time(self.time), 'iteration': self.iteration, 'query': self.query,
        }


def _label(labels, names):
    for name in names:
        value = labels.get(name)
        if value:
            return value
    return None


class SeriesTally:
    """Counts of one series (check x namespace x workload) over the gate's iterations."""

    def __init__(self, key):
        self.key = key
        self.samples = 0
        self.passed = 0
        self.failed = 0
        self.inconclusive = 0
        self.values = []

    def add(self, measurement):
        self.samples += 1
        if measurement.result == PASS:
            self.passed += 1
        elif measurement.result == FAIL:
            self.failed += 1
        else:
            self.inconclusive += 1
        if _finite(measurement.value):
            self.values.append(measurement.value)

    def to_dict(self, failure_limit):
        check, namespace, workload = self.key
        if self.failed > failure_limit:
            verdict = FAIL
        elif self.inconclusive:
            verdict = INCONCLUSIVE
        else:
            verdict = PASS
        return {
            'check': check, 'namespace': namespace, 'workload': workload, 'samples': self.samples,
            'passed': self.passed, 'failed': self.failed, 'inconclusive': self.inconclusive,
            'min': min(self.values) if self.values else None, 'max': max(self.values) if self.values else None,
            'last': self.values[-1] if self.values else None, 'verdict': verdict,
        }


class GateVerdict:
    """The outcome of a gate run: ``verdict`` (pass/fail/inconclusive), every measurement, per-series
    summaries, the failed measurements, and the baseline used."""

    def __init__(self, verdict, measurements, series, failure_limit, iterations, count, started, finished,
                 baseline=None, stopped_early=False):
        self.verdict = verdict
        self.measurements = measurements
        self.series = series
        self.failure_limit = failure_limit
        self.iterations = iterations
        self.count = count
        self.started = started
        self.finished = finished
        self.baseline = baseline
        self.stopped_early = stopped_early

    @property
    def passed(self):
        return self.verdict == PASS

    @property
    def failures(self):
        return [m for m in self.measurements if m.result == FAIL]

    def failing_series(self):
        return [s for s in self.series.values() if s.failed > self.failure_limit]

    def message(self):
        if self.verdict == PASS:
            return 'metric gate passed: %d measurement(s) of %d series over %d iteration(s) within thresholds' % (
                len(self.measurements), len(self.series), self.iterations)
        if self.verdict == FAIL:
            parts = []
            for tally in self.failing_series():
                check, namespace, workload = tally.key
                last = [m for m in self.measurements if m.key == tally.key and m.result == FAIL][-1]
                parts.append('%s/%s: %s (%d of %d samples failed)' % (
                    namespace, workload or '*', last.reason, tally.failed, tally.samples))
            return 'metric gate failed (failure_limit %d): %s' % (self.failure_limit, '; '.join(parts))
        names = sorted(set('%s %s/%s' % (m.check, m.namespace, m.workload or '*')
                           for m in self.measurements if m.result == INCONCLUSIVE))
        return 'metric gate inconclusive: no data for %s' % ', '.join(names)

    def to_dict(self):
        return {
            'passed': self.passed,
            'verdict': self.verdict,
            'msg': self.message(),
            'measurements': [m.to_dict() for m in self.measurements],
            'failures': [m.to_dict() for m in self.failures],
            'series': [tally.to_dict(self.failure_limit) for tally in self.series.values()],
            'iterations': self.iterations,
            'count': self.count,
            'stopped_early': self.stopped_early,
            'started': format_time(self.started),
            'finished': format_time(self.finished),
            'baseline': [dict(check=k[0], namespace=k[1], workload=k[2], value=v)
                         for k, v in sorted(self.baseline.items(), key=lambda item: tuple(
                             '' if part is None else part for part in item[0]))]
            if self.baseline is not None else None,
        }


def baseline_from_result(previous):
    """Baseline values ``{(check, namespace, workload): value}`` from a previous gate result (a registered
    ``istio_metric_gate`` result, or its ``baseline``/``measurements`` list): the last finite value seen."""
    if isinstance(previous, dict):
        items = previous.get('measurements')
        if items is None:
            items = previous.get('baseline')
    else:
        items = previous
    if not isinstance(items, list):
        raise GateConfigError('baseline must be true/false or a previous istio_metric_gate result '
                              '(with measurements)')
    values = {}
    for item in items:
        if not isinstance(item, dict) or not item.get('check') or not item.get('namespace'):
            raise GateConfigError('baseline entries need check, namespace, workload and value')
        value = item.get('value')
        if _finite(value):
            values[(item['check'], item['namespace'], item.get('workload'))] = float(value)
    return values


class MetricGate:
    """Runs checks against targets; see the module docstring for the rules."""

    def __init__(self, client, checks, targets, window='1m', interval=30, count=3, failure_limit=0,
                 no_data='fail', baseline=None, baseline_at=None, initial_delay=0, sleep=None, clock=None):
        if not checks:
            raise GateConfigError('no checks to run')
        if not targets:
            raise GateConfigError('no namespaces to check')
        if no_data not in NO_DATA_POLICIES:
            raise GateConfigError('no_data must be one of %s, not %r' % (', '.join(NO_DATA_POLICIES), no_data))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise GateConfigError('count must be an integer >= 1, not %r' % (count,))
        if isinstance(failure_limit, bool) or not isinstance(failure_limit, int) or failure_limit < 0:
            raise GateConfigError('failure_limit must be an integer >= 0, not %r' % (failure_limit,))
        if failure_limit >= count:
            raise GateConfigError('failure_limit %d lets every one of the %d samples fail: use a value below '
                                  'count' % (failure_limit, count))
        self.client = client
        self.checks = list(checks)
        self.targets = list(targets)
        self.window = promql_duration(window, 'window')
        self.interval = parse_duration(interval, 'interval')
        self.initial_delay = parse_duration(initial_delay, 'initial_delay')
        self.count = count
        self.failure_limit = failure_limit
        self.no_data = no_data
        self.baseline_mode = baseline
        self.baseline_at = baseline_at
        self._sleep = sleep or time.sleep
        self._clock = clock or time.time

    # -- one sample -------------------------------------------------------------------------------

    def _policy(self, check):
        return check.no_data or self.no_data

    def _no_data_measurement(self, check, target, workload, query, iteration, at, baseline_values, why):
        policy = self._policy(check)
        result = {'fail': FAIL, 'pass': PASS, 'inconclusive': INCONCLUSIVE}[policy]
        reason = '%s: %s (no_data: %s)' % (check.name, why, policy)
        baseline = (baseline_values or {}).get((check.name, target.namespace, workload))
        return Measurement(check.name, target.namespace, workload, None, check.threshold, result, at, iteration,
                           query, reason=reason, no_data=True, baseline=baseline)

    def evaluate(self, check, target, iteration=0, at=None, baseline_values=None):
        """The measurements of one check for one target (one query)."""
        query = check.render(target.namespace, target.workload_regex, self.window)
        result = self.client.query(query, at=at)
        stamp = at if at is not None else self._clock()
        measurements = []
        seen = set()
        for sample in result.samples:
            stamp = sample.timestamp if sample.timestamp else stamp
            namespace = _label(sample.labels, NAMESPACE_LABELS) or target.namespace
            if namespace != target.namespace:
                continue
            workload = _label(sample.labels, WORKLOAD_LABELS)
            if workload is None and target.workloads is not None and len(target.workloads) == 1:
                workload = target.workloads[0]
            seen.add(workload)
            baseline = (baseline_values or {}).get((check.name, target.namespace, workload))
            if math.isnan(sample.value):
                measurements.append(self._no_data_measurement(
                    check, target, workload, query, iteration, stamp, baseline_values,
                    'NaN (no requests in the last %s)' % self.window))
                measurements[-1].raw = sample.raw
                continue
            ok, reason = check.judge(sample.value, baseline)
            measurements.append(Measurement(check.name, target.namespace, workload, sample.value, check.threshold,
                                            PASS if ok else FAIL, stamp, iteration, query, reason=reason,
                                            baseline=baseline, raw=sample.raw, labels=sample.labels))
        # A series without a workload label stands for the whole selection (an aggregate over it).
        expected = target.workloads if target.workloads is not None and None not in seen else []
        for workload in expected:
            if workload not in seen:
                measurements.append(self._no_data_measurement(
                    check, target, workload, query, iteration, stamp, baseline_values,
                    'no series for workload %s in namespace %s' % (workload, target.namespace)))
        if not measurements:
            measurements.append(self._no_data_measurement(
                check, target, None, query, iteration, stamp, baseline_values,
                'no series for namespace %s (workloads %s)' % (target.namespace, target.workload_regex)))
        return measurements

    def measure_baseline(self, at):
        """Baseline values of every check and target at Unix time ``at``."""
        values = {}
        for check in self.checks:
            for target in self.targets:
                for measurement in self.evaluate(check, target, iteration=0, at=at):
                    if _finite(measurement.value):
                        values[measurement.key] = float(measurement.value)
        return values

    # -- the run ----------------------------------------------------------------------------------

    def run(self):
        started = self._clock()
        baseline_values = None
        if self.baseline_mode is True:
            at = self.baseline_at if self.baseline_at is not None else started - parse_duration(self.window)
            baseline_values = self.measure_baseline(at)
        elif isinstance(self.baseline_mode, dict):
            baseline_values = dict(self.baseline_mode)
        if self.initial_delay:
            self._sleep(self.initial_delay)
        measurements = []
        series = {}
        iterations = 0
        stopped_early = False
        next_start = self._clock()
        for iteration in range(1, self.count + 1):
            if iteration > 1:
                delay = next_start - self._clock()
                if delay > 0:
                    self._sleep(delay)
            iteration_start = self._clock()
            next_start = iteration_start + self.interval
            iterations = iteration
            for check in self.checks:
                for target in self.targets:
                    for measurement in self.evaluate(check, target, iteration, baseline_values=baseline_values):
                        measurements.append(measurement)
                        series.setdefault(measurement.key, SeriesTally(measurement.key)).add(measurement)
            if any(tally.failed > self.failure_limit for tally in series.values()):
                stopped_early = iteration < self.count
                break
        verdict = self.decide(series)
        return GateVerdict(verdict, measurements, series, self.failure_limit, iterations, self.count, started,
                           self._clock(), baseline=baseline_values, stopped_early=stopped_early)

    def decide(self, series):
        if any(tally.failed > self.failure_limit for tally in series.values()):
            return FAIL
        if any(tally.inconclusive for tally in series.values()):
            return INCONCLUSIVE
        return PASS
