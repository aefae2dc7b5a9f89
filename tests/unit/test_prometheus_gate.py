"""MetricCheck / MetricGate / GateVerdict rules, with a scripted stand-in for the Prometheus client.

The stand-in answers each PromQL by the check it belongs to, iteration by iteration, the way Prometheus
would (vectors of per-workload series, NaN for no traffic, an empty vector for no series).
"""
import math

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import prometheus as prom


class ScriptedClient:
    """``script[check_name]`` is a list (one entry per call) of lists of (labels, value); the last repeats."""

    def __init__(self, script, raise_on=None):
        self.script = {name: list(answers) for name, answers in script.items()}
        self.calls = []
        self.raise_on = raise_on

    def query(self, promql, at=None):
        self.calls.append((promql, at))
        if self.raise_on is not None and len(self.calls) >= self.raise_on:
            raise prom.PrometheusUnreachable('Prometheus at http://prom:9090 is unreachable: refused')
        if 'istio_request_duration_milliseconds_bucket' in promql:
            name = 'latency_p99'
        elif 'istio_requests_total' in promql:
            name = 'success_rate'
        else:
            name = promql
        answers = self.script[name]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        samples = [prom.Sample(labels, value, 1700000000.0 + len(self.calls)) for labels, value in answer]
        return prom.QueryResult('vector', samples)


class FakeClock:
    def __init__(self):
        self.now = 1700000000.0
        self.sleeps = []

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def wl(name, namespace='bar'):
    return {'destination_workload': name, 'destination_workload_namespace': namespace}


def gate(client, checks=None, targets=None, clock=None, **kwargs):
    clock = clock or FakeClock()
    return prom.MetricGate(client, checks or [prom.MetricCheck.success_rate(0.99)],
                           targets or [prom.Target('bar')], window='15s', interval=kwargs.pop('interval', 5),
                           sleep=clock.sleep, clock=clock.time, **kwargs)


# --- durations, times, templates -----------------------------------------------------------------

@pytest.mark.parametrize('text,seconds', [('30s', 30), ('1m30s', 90), ('500ms', 0.5), ('2h', 7200),
                                          (15, 15), ('15', 15), (0.5, 0.5), ('1d', 86400)])
def test_parse_duration(text, seconds):
    assert prom.parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['1 minute', '-5s', '5x', '', True, 'm'])
def test_parse_duration_refuses(text):
    with pytest.raises(prom.GateConfigError):
        prom.parse_duration(text)


def test_promql_duration():
    assert prom.promql_duration('1m') == '1m'
    assert prom.promql_duration(90) == '90s'
    assert prom.promql_duration(1.5) == '1500ms'
    with pytest.raises(prom.GateConfigError):
        prom.promql_duration(0)


def test_parse_time():
    assert prom.parse_time('2023-11-14T22:13:20Z') == 1700000000
    assert prom.parse_time(1700000000) == 1700000000
    assert prom.parse_time('-10m', now=1000) == 400
    assert prom.parse_time('1m ago', now=1000) == 940
    with pytest.raises(prom.GateConfigError):
        prom.parse_time('yesterday')


def test_render_template_keeps_label_braces_and_escapes():
    query = prom.render_template('sum(rate(x{ns="{namespace}",w=~"{workload}"}[{window}]))', 'bar',
                                 prom.regex_escape('my.app'), '1m')
    assert query == 'sum(rate(x{ns="bar",w=~"my\\\\.app"}[1m]))'


def test_builtin_queries_are_istio_standard():
    target = prom.Target('bar', workloads=['bar', 'bar-v2'])
    sr = prom.MetricCheck.success_rate().render(target.namespace, target.workload_regex, '1m')
    assert 'reporter="destination"' in sr and 'destination_workload_namespace="bar"' in sr
    assert 'destination_workload=~"bar|bar-v2"' in sr and 'response_code=~"5.."' in sr
    assert sr.count('[1m]') == 3 and '{namespace}' not in sr
    p99 = prom.MetricCheck.latency_p99().render('bar', '.*', '30s')
    assert p99.startswith('histogram_quantile(0.99, ')
    assert 'istio_request_duration_milliseconds_bucket{' in p99 and 'le)' in p99


# --- checks and targets from module options ------------------------------------------------------

def test_checks_default_to_both_builtins():
    checks = prom.checks_from_params(None)
    assert [c.name for c in checks] == ['success_rate', 'latency_p99']
    assert checks[0].threshold == {'min': 0.99} and checks[1].threshold == {'max': 500}


def test_checks_custom_and_explicit_builtins():
    checks = prom.checks_from_params({'success_rate': {'min': 0.95}, 'custom': [
        {'name': 'rps', 'query': 'sum(rate(istio_requests_total{destination_workload_namespace="{namespace}"}[{window}]))',
         'min': 1}]})
    assert [(c.name, c.threshold) for c in checks] == [('success_rate', {'min': 0.95}), ('rps', {'min': 1})]
    assert checks[1].direction == 'higher'


@pytest.mark.parametrize('spec,message', [
    ({'custom': [{'name': 'x', 'query': 'up'}]}, 'needs a threshold'),
    ({'custom': [{'name': 'x', 'query': 'up', 'min': 2, 'max': 1}]}, 'above max'),
    ({'custom': [{'name': 'success_rate', 'query': 'up', 'min': 1}], 'success_rate': {}}, 'unique'),
    ({'success_rate': {'min': 99}}, 'between 0 and 1'),
    ({'bogus': {}}, 'unknown key'),
    ({}, 'no check'),
    ({'custom': [{'name': 'bad name', 'query': 'up', 'min': 1}]}, 'must be letters'),
])
def test_checks_refused(spec, message):
    with pytest.raises(prom.GateConfigError, match=message):
        prom.checks_from_params(spec)


def test_targets_from_params():
    targets = prom.targets_from_params(['bar', 'foo', 'bar'], {'bar': ['bar'], 'foo': 'foo-.*'})
    assert [(t.namespace, t.workload_regex) for t in targets] == [('bar', 'bar'), ('foo', 'foo-.*')]
    assert prom.targets_from_params(['baz'])[0].workload_regex == '.*'
    assert prom.targets_from_params(['a', 'b'], ['x', 'y'])[1].workload_regex == 'x|y'
    with pytest.raises(prom.GateConfigError, match='not in namespaces'):
        prom.targets_from_params(['bar'], {'foo': ['x']})
    with pytest.raises(prom.GateConfigError, match='invalid'):
        prom.targets_from_params(['bar'], '(')
    with pytest.raises(prom.GateConfigError, match='empty'):
        prom.targets_from_params([])


def test_judge_thresholds_and_baseline():
    sr = prom.MetricCheck.success_rate(0.9, baseline_tolerance=0.01)
    assert sr.judge(0.95) == (True, None)
    ok, reason = sr.judge(0.85)
    assert not ok and 'below min 0.9' in reason
    ok, reason = sr.judge(0.95, baseline=0.999)
    assert not ok and 'worse than the baseline' in reason
    assert sr.judge(0.995, baseline=0.999)[0]
    p99 = prom.MetricCheck.latency_p99(1000, baseline_tolerance=0.5)
    assert p99.judge(140, baseline=100)[0]
    assert not p99.judge(160, baseline=100)[0]
    assert not p99.judge(math.inf)[0]


# --- the gate ------------------------------------------------------------------------------------

def test_healthy_gate_passes_after_count_iterations():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 0.999), (wl('bar-v2'), 1.0)]]})
    clock = FakeClock()
    verdict = gate(client, count=3, clock=clock).run()
    assert verdict.verdict == 'pass' and verdict.passed
    assert verdict.iterations == 3 and len(client.calls) == 3
    assert len(verdict.measurements) == 6 and not verdict.failures
    assert sorted(set(m.workload for m in verdict.measurements)) == ['bar', 'bar-v2']
    assert clock.sleeps == [5, 5]  # interval between the starts of the iterations
    result = verdict.to_dict()
    assert result['passed'] is True and result['verdict'] == 'pass'
    assert result['measurements'][0]['time'].endswith('Z') and result['measurements'][0]['threshold'] == {'min': 0.99}


def test_failing_workload_fails_fast_and_is_named():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 0.999), (wl('bar-v2'), 0.62)]]})
    verdict = gate(client, count=5, failure_limit=1).run()
    assert verdict.verdict == 'fail' and not verdict.passed
    assert verdict.iterations == 2 and verdict.stopped_early  # 2 failures > failure_limit 1
    assert {(m.namespace, m.workload) for m in verdict.failures} == {('bar', 'bar-v2')}
    assert 'bar/bar-v2' in verdict.message() and 'below min 0.99' in verdict.message()
    series = {(s['workload']): s for s in verdict.to_dict()['series']}
    assert series['bar-v2']['failed'] == 2 and series['bar-v2']['verdict'] == 'fail'
    assert series['bar']['verdict'] == 'pass'


def test_failure_limit_tolerates_a_blip():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 0.5)], [(wl('bar'), 0.999)]]})
    verdict = gate(client, count=3, failure_limit=1).run()
    assert verdict.verdict == 'pass' and len(verdict.failures) == 1 and verdict.iterations == 3


def test_failure_limit_must_be_below_count():
    with pytest.raises(prom.GateConfigError, match='below count'):
        gate(ScriptedClient({}), count=2, failure_limit=2)


@pytest.mark.parametrize('policy,verdict', [('fail', 'fail'), ('pass', 'pass'), ('inconclusive', 'inconclusive')])
def test_no_series_follows_no_data_policy(policy, verdict):
    client = ScriptedClient({'success_rate': [[]]})
    result = gate(client, count=2, no_data=policy).run()
    assert result.verdict == verdict
    assert all(m.no_data and m.workload is None for m in result.measurements)
    assert 'no series for namespace bar' in result.measurements[0].reason


def test_nan_is_no_data():
    client = ScriptedClient({'success_rate': [[(wl('bar'), float('nan'))]]})
    result = gate(client, count=1, no_data='inconclusive').run()
    assert result.verdict == 'inconclusive'
    assert result.measurements[0].workload == 'bar' and 'NaN' in result.measurements[0].reason
    assert result.to_dict()['measurements'][0]['value'] is None
    assert 'no data for success_rate bar/bar' in result.message()


def test_listed_workload_without_series_is_no_data():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 1.0)]]})
    result = gate(client, targets=[prom.Target('bar', workloads=['bar', 'bar-canary'])], count=1).run()
    assert result.verdict == 'fail'
    assert [(m.workload, m.no_data) for m in result.failures] == [('bar-canary', True)]


def test_per_check_no_data_overrides_gate_policy():
    checks = [prom.MetricCheck('errors', 'sum(rate(x{namespace="{namespace}"}[{window}]))', maximum=1, no_data='pass')]
    client = ScriptedClient({'sum(rate(x{namespace="bar"}[15s]))': [[]]})
    assert gate(client, checks=checks, count=1, no_data='fail').run().verdict == 'pass'


def test_scalar_custom_check_gets_target_workload():
    checks = [prom.MetricCheck('scalar', 'vector(1)', maximum=0.5)]
    client = ScriptedClient({'vector(1)': [[({}, 1.0)]]})
    result = gate(client, checks=checks, targets=[prom.Target('bar', workloads=['bar'])], count=1).run()
    assert result.verdict == 'fail'
    assert [(m.workload, m.value) for m in result.failures] == [('bar', 1.0)]


def test_other_namespace_series_ignored():
    client = ScriptedClient({'success_rate': [[(wl('bar', 'foo'), 0.1), (wl('bar'), 1.0)]]})
    result = gate(client, count=1).run()
    assert result.verdict == 'pass' and len(result.measurements) == 1


def test_multiple_checks_and_targets():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 1.0), (wl('foo', 'foo'), 1.0)]],
                             'latency_p99': [[(wl('bar'), 20.0), (wl('foo', 'foo'), 4000.0)]]})
    checks = prom.checks_from_params(None)
    result = gate(client, checks=checks, targets=prom.targets_from_params(['bar', 'foo']), count=2).run()
    assert result.verdict == 'fail'
    assert [(m.check, m.namespace, m.workload, m.value) for m in result.failures] == [
        ('latency_p99', 'foo', 'foo', 4000.0)]


def test_baseline_from_previous_result():
    previous = {'measurements': [
        {'check': 'success_rate', 'namespace': 'bar', 'workload': 'bar', 'value': 0.5},
        {'check': 'success_rate', 'namespace': 'bar', 'workload': 'bar', 'value': 1.0},
        {'check': 'success_rate', 'namespace': 'bar', 'workload': 'other', 'value': None}]}
    baseline = prom.baseline_from_result(previous)
    assert baseline == {('success_rate', 'bar', 'bar'): 1.0}
    client = ScriptedClient({'success_rate': [[(wl('bar'), 0.992)]]})
    checks = [prom.MetricCheck.success_rate(0.99, baseline_tolerance=0.005)]
    result = gate(client, checks=checks, count=1, baseline=baseline).run()
    assert result.verdict == 'fail' and result.failures[0].baseline == 1.0
    assert 'baseline' in result.failures[0].reason
    assert result.to_dict()['baseline'] == [{'check': 'success_rate', 'namespace': 'bar', 'workload': 'bar',
                                             'value': 1.0}]


def test_baseline_true_queries_before_the_run():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 0.999)], [(wl('bar'), 0.995)]]})
    checks = [prom.MetricCheck.success_rate(0.99, baseline_tolerance=0.01)]
    clock = FakeClock()
    result = gate(client, checks=checks, count=1, baseline=True, baseline_at=1690000000.0, clock=clock).run()
    assert client.calls[0][1] == 1690000000.0 and client.calls[1][1] is None
    assert result.verdict == 'pass' and result.measurements[0].baseline == 0.999


def test_baseline_refuses_garbage():
    with pytest.raises(prom.GateConfigError):
        prom.baseline_from_result('yes')


def test_unreachable_propagates_as_error_not_verdict():
    client = ScriptedClient({'success_rate': [[(wl('bar'), 1.0)]]}, raise_on=2)
    with pytest.raises(prom.PrometheusUnreachable):
        gate(client, count=3).run()


def test_initial_delay_sleeps_before_first_sample():
    clock = FakeClock()
    client = ScriptedClient({'success_rate': [[(wl('bar'), 1.0)]]})
    gate(client, count=1, initial_delay='20s', clock=clock).run()
    assert clock.sleeps == [20]
