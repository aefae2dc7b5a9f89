#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_metric_gate
short_description: Gate a wave of an Istio upgrade on the mesh's Prometheus metrics
version_added: 1.0.0
description:
  - Verifies the namespaces of a wave against a Prometheus server, the way the analysis of Flagger and
    Argo Rollouts does for an application release, but for a control-plane upgrade. After the
    workloads of the wave were restarted onto the new istio-proxy, are their error rate and latency
    still within bounds?
  - Built-in checks use Istio's standard metrics as reported by the destination proxies.
    C(success_rate) is the share of requests not answered with a 5xx, from C(istio_requests_total)
    (C(reporter="destination"), by C(destination_workload_namespace) and C(destination_workload)).
    C(latency_p99) is the 99th percentile of C(istio_request_duration_milliseconds_bucket) in
    milliseconds. Custom checks are any PromQL with thresholds.
  - Every check is evaluated for every namespace (and its workloads) O(count) times, O(interval)
    apart. Each result is a measurement; one series (check, namespace, workload) fails the gate when
    more than O(failure_limit) of its measurements failed, and the gate then stops at once.
  - A query that returns nothing (no series) or NaN (no requests in the window) is "no data", handled
    as O(no_data) says.
  - A Prometheus that cannot be reached, refuses the credentials or rejects a query makes the module
    fail with that error. That is never reported as a failed check (RV(verdict) is only set when the
    gate could look).
  - Read-only. In check mode the queries run as well, as they change nothing.
author:
  - meshops.istio contributors (@meshops)
options:
  prometheus_url:
    description:
      - Base URL of the Prometheus HTTP API (with its route prefix, if any), for example
        V(http://prometheus.istio-system:9090).
      - Any Prometheus-compatible query API works (Thanos Query, Cortex, Mimir with its prefix).
    type: str
    required: true
  headers:
    description:
      - Extra HTTP headers sent with every query, for example a tenant header (C(X-Scope-OrgID)).
      - Values of headers that look like credentials (C(Authorization), C(Cookie), names containing C(token),
        C(key), C(secret), C(auth) or C(password)) are hidden from logs and results. Prefer O(bearer_token) or
        O(password) for credentials.
    type: dict
    default: {}
  bearer_token:
    description:
      - Bearer token sent as C(Authorization) header. Mutually exclusive with O(username).
    type: str
  username:
    description: User name for HTTP basic authentication.
    type: str
    aliases: [url_username]
  password:
    description: Password for HTTP basic authentication.
    type: str
    aliases: [url_password]
  ca_cert:
    description: CA certificate bundle (PEM file) to verify the Prometheus server's certificate.
    type: path
    aliases: [ca_path]
  client_cert:
    description: Client certificate (PEM file) for mutual TLS. Requires O(client_key) unless it contains the key.
    type: path
  client_key:
    description: Private key (PEM file) of O(client_cert).
    type: path
  validate_certs:
    description: Whether to verify the server's TLS certificate. Only turn it off for test setups.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each HTTP answer.
    type: int
    default: 10
  retries:
    description:
      - How many times a query is retried when Prometheus is unreachable or answers with a 5xx, one
        second apart (then two, ...). Refused credentials and bad queries are never retried.
    type: int
    default: 2
  namespaces:
    description: The namespaces to verify (those of the wave).
    type: list
    elements: str
    required: true
  workloads:
    description:
      - Which workloads of the namespaces count. Omitted, every workload with traffic in a namespace is
        a series of its own (discovered from the metrics).
      - A list of workload names (Deployment names, as Istio's C(destination_workload)) applies to every
        namespace; a listed workload without any series is "no data".
      - A string is a regular expression (RE2, anchored as PromQL's C(=~)) of workload names.
      - A dict maps a namespace to a list of names or a regular expression; namespaces not in it take
        every workload.
    type: raw
  checks:
    description:
      - The checks to run. Omitted, both built-ins run with their defaults.
      - When given, only the checks named in it run. A built-in with an empty dict (V({})) runs with
        its defaults.
    type: dict
    suboptions:
      success_rate:
        description: Share of requests (0 to 1) not answered with a 5xx by the destination proxies.
        type: dict
        suboptions:
          min:
            description: Lowest acceptable success rate, for example V(0.99) for 99%.
            type: float
            default: 0.99
          baseline_tolerance:
            description: How much lower than the baseline it may be, as a fraction of the baseline.
            type: float
            default: 0.01
          no_data:
            description: Overrides the gate's O(no_data) for this check.
            type: str
            choices: [fail, pass, inconclusive]
      latency_p99:
        description: P99 request duration in milliseconds reported by the destination proxies.
        type: dict
        suboptions:
          max_ms:
            description: Highest acceptable P99 latency in milliseconds.
            type: float
            default: 500
          baseline_tolerance:
            description: How much higher than the baseline it may be, as a fraction of the baseline.
            type: float
            default: 0.25
          no_data:
            description: Overrides the gate's O(no_data) for this check.
            type: str
            choices: [fail, pass, inconclusive]
      custom:
        description:
          - Checks of your own. The query runs once per namespace and must return an instant vector or a
            scalar. Placeholders C({namespace}), C({workload}) (a regular expression of the selected
            workloads, use it with C(=~)) and C({window}) are filled in; other braces stay as they are.
          - Each series of the result is a measurement; its workload is taken from the label
            C(destination_workload) (or C(workload), C(deployment), C(app)) when the result has one.
        type: list
        elements: dict
        default: []
        suboptions:
          name:
            description: Name of the check (unique; letters, digits, C(_), C(-), C(.)).
            type: str
            required: true
          query:
            description: The PromQL template.
            type: str
            required: true
          min:
            description: Lowest acceptable value.
            type: float
          max:
            description: Highest acceptable value.
            type: float
          direction:
            description:
              - Which way is better, for the baseline comparison. Derived when only O(checks.custom[].min)
                (V(higher)) or only O(checks.custom[].max) (V(lower)) is given.
            type: str
            choices: [higher, lower]
          baseline_tolerance:
            description: How much worse than the baseline it may be, as a fraction of the baseline.
            type: float
            default: 0.1
          no_data:
            description: Overrides the gate's O(no_data) for this check.
            type: str
            choices: [fail, pass, inconclusive]
  window:
    description: Range of the C(rate()) windows of the built-in checks (and C({window})), a Prometheus duration.
    type: str
    default: 1m
  interval:
    description: Time between the starts of two measurements, a Prometheus duration or seconds.
    type: str
    default: 30s
  count:
    description: How many measurements of every series to take.
    type: int
    default: 3
  failure_limit:
    description: How many failed measurements one series may have before the gate fails. Must be below O(count).
    type: int
    default: 0
  initial_delay:
    description:
      - Time to wait before the first measurement, so that the windows only hold traffic of the new proxies.
    type: str
    default: 0s
  no_data:
    description:
      - What a measurement without data is (no series, or NaN because nothing was requested in the window).
      - V(fail) counts it as a failed measurement. V(pass) accepts it.
      - V(inconclusive) neither passes nor fails it; the gate's RV(verdict) is then V(inconclusive) unless a
        series failed.
    type: str
    choices: [fail, pass, inconclusive]
    default: fail
  baseline:
    description:
      - Also compare every value with a baseline; a value worse than the baseline by more than the check's
        C(baseline_tolerance) fails even when it is within the thresholds.
      - V(true) measures the baseline first, with the same checks at the time O(baseline_at).
      - A previous result of this module (registered, or its RV(measurements) or RV(baseline) list) is used
        as baseline as it is, the last value of each series.
      - V(false) compares with the thresholds only.
    type: raw
    default: false
  baseline_at:
    description:
      - When to measure the baseline with O(baseline=true) (the end of its windows), for example the time the
        wave started. Unix seconds, RFC 3339 (V(2024-05-01T12:00:00Z)) or a duration ago (V(-10m)).
      - Defaults to one O(window) before the module starts.
    type: str
  fail_on_gate:
    description:
      - Fail the task when the verdict is not V(pass) (a failed or inconclusive gate), with every measurement
        in the result. With V(false) the task succeeds and RV(passed) tells.
    type: bool
    default: true
notes:
  - The module only reads; it never reports a change.
  - The whole run takes about O(initial_delay) + (O(count) - 1) x O(interval).
seealso:
  - name: Istio standard metrics
    description: The labels of C(istio_requests_total) and C(istio_request_duration_milliseconds).
    link: https://istio.io/latest/docs/reference/config/metrics/
  - name: Prometheus HTTP API
    description: The instant query endpoint the module uses.
    link: https://prometheus.io/docs/prometheus/latest/querying/api/
extends_documentation_fragment:
  - meshops.istio.attributes
  - meshops.istio.attributes.info_module
"""

EXAMPLES = r"""
- name: Verify wave 1 (bar) for 3 minutes on the default checks
  meshops.istio.istio_metric_gate:
    prometheus_url: http://prometheus.istio-system:9090
    namespaces: [bar]
    window: 1m
    interval: 1m
    count: 4
    failure_limit: 1

- name: Stricter thresholds, a custom check, and no failure of the task
  meshops.istio.istio_metric_gate:
    prometheus_url: https://prometheus.example.com
    bearer_token: "{{ prometheus_token }}"
    ca_cert: /etc/ssl/certs/internal-ca.pem
    namespaces: [foo, baz]
    workloads:
      foo: [foo, foo-worker]
    checks:
      success_rate:
        min: 0.995
      latency_p99:
        max_ms: 250
      custom:
        - name: request_rate
          query: >-
            sum by (destination_workload) (rate(istio_requests_total{reporter="destination",
            destination_workload_namespace="{namespace}", destination_workload=~"{workload}"}[{window}]))
          min: 1
    no_data: inconclusive
    fail_on_gate: false
  register: gate

- name: Compare with the same namespaces before the wave started
  meshops.istio.istio_metric_gate:
    prometheus_url: http://prometheus.istio-system:9090
    namespaces: [bar]
    baseline: true
    baseline_at: "{{ wave_started_at }}"

- name: Roll back when the gate failed
  ansible.builtin.debug:
    msg: "{{ gate.failures | map(attribute='reason') | list }}"
  when: gate.verdict == 'fail'
"""

RETURN = r"""
passed:
  description: Whether the gate passed (RV(verdict) is V(pass)).
  returned: when the gate ran
  type: bool
  sample: false
verdict:
  description: V(pass), V(fail) or V(inconclusive).
  returned: when the gate ran
  type: str
  sample: fail
msg:
  description: The verdict in words, naming failing namespaces/workloads and why.
  returned: always
  type: str
  sample: "metric gate failed (failure_limit 0): bar/bar: success_rate 0.64 is below min 0.99 (1 of 1 samples failed)"
measurements:
  description: Every measurement taken, in order.
  returned: when the gate ran
  type: list
  elements: dict
  contains:
    check:
      description: Name of the check.
      type: str
      sample: success_rate
    namespace:
      description: Namespace.
      type: str
      sample: bar
    workload:
      description: Workload (null when the result has no workload label, or a namespace had no data at all).
      type: str
      sample: bar
    value:
      description: The value (null for no data, NaN or infinite values; see C(raw)).
      type: float
      sample: 0.9987
    raw:
      description: The value as Prometheus returned it.
      type: str
      sample: "0.9987"
    threshold:
      description: The thresholds (C(min) and/or C(max)).
      type: dict
      sample: {min: 0.99}
    ok:
      description: Whether the measurement passed.
      type: bool
      sample: true
    result:
      description: V(pass), V(fail) or V(inconclusive).
      type: str
      sample: pass
    no_data:
      description: Whether there was no data.
      type: bool
      sample: false
    reason:
      description: Why it failed or had no data.
      type: str
      sample: success_rate 0.64 is below min 0.99
    baseline:
      description: The baseline value compared with, if any.
      type: float
      sample: 0.999
    time:
      description: Evaluation time (RFC 3339, UTC).
      type: str
      sample: "2024-05-01T12:00:00.000Z"
    iteration:
      description: Which measurement round (1 to O(count)).
      type: int
      sample: 1
    query:
      description: The PromQL that was run.
      type: str
      sample: histogram_quantile(0.99, ...)
failures:
  description: The failed measurements (same fields as RV(measurements)).
  returned: when the gate ran
  type: list
  elements: dict
series:
  description: Per series (check, namespace, workload) counts of samples, passed, failed and inconclusive, min/max/last value and its own verdict.
  returned: when the gate ran
  type: list
  elements: dict
  sample:
    - {check: success_rate, namespace: bar, workload: bar, samples: 3, passed: 3, failed: 0, inconclusive: 0,
       min: 0.998, max: 1.0, last: 0.999, verdict: pass}
baseline:
  description: The baseline values used (check, namespace, workload, value), or null without baseline.
  returned: when the gate ran
  type: list
  elements: dict
iterations:
  description: How many measurement rounds ran (fewer than O(count) when the gate failed early).
  returned: when the gate ran
  type: int
  sample: 3
stopped_early:
  description: Whether the gate stopped before O(count) rounds because a series failed.
  returned: when the gate ran
  type: bool
  sample: false
started:
  description: When the gate started (RFC 3339, UTC).
  returned: when the gate ran
  type: str
finished:
  description: When the gate finished (RFC 3339, UTC).
  returned: when the gate ran
  type: str
prometheus_url:
  description: The Prometheus queried (without credentials).
  returned: always
  type: str
  sample: http://prometheus.istio-system:9090
prometheus_unreachable:
  description: On an error, whether it was that Prometheus could not be reached (connection, DNS, TLS, timeout, 5xx).
  returned: when Prometheus could not be queried
  type: bool
  sample: true
error:
  description: On failure to query, the kind of error (V(PrometheusUnreachable), V(PrometheusAuthError), V(PrometheusQueryError), V(GateConfigError)).
  returned: on error
  type: str
  sample: PrometheusUnreachable
"""

import re

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.meshops.istio.plugins.module_utils.errors import GateConfigError, GateFailed
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.prometheus import (
    NO_DATA_POLICIES,
    MetricGate,
    PrometheusClient,
    baseline_from_result,
    checks_from_params,
    parse_time,
    redact_url,
    targets_from_params,
)

NO_DATA_CHOICES = list(NO_DATA_POLICIES)


def argument_spec():
    no_data = dict(type='str', choices=NO_DATA_CHOICES)
    return dict(
        prometheus_url=dict(type='str', required=True),
        headers=dict(type='dict', default={}),
        bearer_token=dict(type='str', no_log=True),
        username=dict(type='str', aliases=['url_username']),
        password=dict(type='str', no_log=True, aliases=['url_password']),
        ca_cert=dict(type='path', aliases=['ca_path']),
        client_cert=dict(type='path'),
        client_key=dict(type='path', no_log=False),
        validate_certs=dict(type='bool', default=True),
        timeout=dict(type='int', default=10),
        retries=dict(type='int', default=2),
        namespaces=dict(type='list', elements='str', required=True),
        workloads=dict(type='raw'),
        checks=dict(type='dict', options=dict(
            success_rate=dict(type='dict', options=dict(
                min=dict(type='float', default=0.99),
                baseline_tolerance=dict(type='float', default=0.01),
                no_data=dict(no_data),
            )),
            latency_p99=dict(type='dict', options=dict(
                max_ms=dict(type='float', default=500),
                baseline_tolerance=dict(type='float', default=0.25),
                no_data=dict(no_data),
            )),
            custom=dict(type='list', elements='dict', default=[], options=dict(
                name=dict(type='str', required=True),
                query=dict(type='str', required=True),
                min=dict(type='float'),
                max=dict(type='float'),
                direction=dict(type='str', choices=['higher', 'lower']),
                baseline_tolerance=dict(type='float', default=0.1),
                no_data=dict(no_data),
            )),
        )),
        window=dict(type='str', default='1m'),
        interval=dict(type='str', default='30s'),
        count=dict(type='int', default=3),
        failure_limit=dict(type='int', default=0),
        initial_delay=dict(type='str', default='0s'),
        no_data=dict(type='str', choices=NO_DATA_CHOICES, default='fail'),
        baseline=dict(type='raw', default=False),
        baseline_at=dict(type='str'),
        fail_on_gate=dict(type='bool', default=True),
    )


SECRET_HEADER = re.compile(r'(authorization|cookie|token|key|secret|auth|password)', re.IGNORECASE)


def secret_header_values(headers):
    """Values of the headers whose names look like credentials (to hide them from logs and results)."""
    return set(str(value) for name, value in (headers or {}).items()
               if value is not None and SECRET_HEADER.search(str(name)) and str(value))


def baseline_option(value):
    """``True``/``False`` or baseline values from a previous result."""
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str):
        try:
            return boolean(value, strict=True)
        except TypeError:
            raise GateConfigError('baseline must be true, false or a previous istio_metric_gate result, '
                                  'not %r' % value)
    return baseline_from_result(value)


def build_gate(params, sleep=None, clock=None, opener=None):
    """The ``MetricGate`` of the module's parameters (no I/O until it runs)."""
    client = PrometheusClient(
        params['prometheus_url'], headers=params.get('headers'), bearer_token=params.get('bearer_token'),
        username=params.get('username'), password=params.get('password'), ca_cert=params.get('ca_cert'),
        client_cert=params.get('client_cert'), client_key=params.get('client_key'),
        validate_certs=params.get('validate_certs', True), timeout=params.get('timeout') or 10,
        retries=params.get('retries') if params.get('retries') is not None else 2, opener=opener, sleep=sleep)
    if params.get('timeout') is not None and params['timeout'] <= 0:
        raise GateConfigError('timeout must be at least 1 second')
    if params.get('retries') is not None and params['retries'] < 0:
        raise GateConfigError('retries must not be negative')
    baseline = baseline_option(params.get('baseline'))
    baseline_at = None
    if params.get('baseline_at'):
        if baseline is not True:
            raise GateConfigError('baseline_at only applies with baseline: true')
        baseline_at = parse_time(params['baseline_at'])
    return MetricGate(
        client, checks_from_params(params.get('checks')),
        targets_from_params(params['namespaces'], params.get('workloads')),
        window=params.get('window') or '1m', interval=params.get('interval') or '30s',
        count=params.get('count') if params.get('count') is not None else 3,
        failure_limit=params.get('failure_limit') or 0, no_data=params.get('no_data') or 'fail',
        baseline=baseline, baseline_at=baseline_at, initial_delay=params.get('initial_delay') or 0,
        sleep=sleep, clock=clock)


def run(module):
    module.result.update(changed=False, prometheus_url=redact_url(module.params['prometheus_url']))
    verdict = build_gate(module.params).run()
    result = verdict.to_dict()
    if module.params['fail_on_gate'] and not verdict.passed:
        raise GateFailed(result['msg'], result=result)
    return result


def main():
    module = MeshopsModule(argument_spec(), cluster=False,
                           mutually_exclusive=[('bearer_token', 'username'), ('bearer_token', 'password')],
                           required_by={'client_key': 'client_cert'})
    module.ansible.no_log_values.update(secret_header_values(module.params.get('headers')))
    module.run(run)


if __name__ == '__main__':
    main()
