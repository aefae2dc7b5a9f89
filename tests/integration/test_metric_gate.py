"""istio_metric_gate and the metric_gate role against a REAL Prometheus scraping the simulated cluster.

kubesim (scenario ``blog``, ``--bad-proxy-version 1.15.4``) serves its pods' synthetic Istio telemetry on
``/kubesim/metrics``; Debian's prometheus scrapes it every second over HTTPS (CA from the kubeconfig); the
module queries that Prometheus.  Nothing answers a query but Prometheus.

The tests run in file order on one cluster: the healthy checks first, then namespace ``bar`` is moved
onto the bad 1.15.4 proxy (a new istiod revision, the namespace label, a rollout restart) and must fail
the gate.  Windows are 15s, scrapes 1s, so the whole file takes about a minute.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from integration.prometheus import PrometheusServer, prometheus_binary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, '.build')
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'istio_metric_gate.py')
BIN = os.path.dirname(sys.executable)

pytestmark = pytest.mark.skipif(prometheus_binary() is None,
                                reason='prometheus is not installed (make prometheus installs it)')

FAST = {'window': '15s', 'interval': '1s'}
SUCCESS_RATE = ('1 - (sum by (destination_workload) (rate(istio_requests_total{reporter="destination",'
                'destination_workload_namespace="%s",response_code=~"5.."}[15s])) or 0 * sum by '
                '(destination_workload) (rate(istio_requests_total{reporter="destination",'
                'destination_workload_namespace="%s"}[15s]))) / sum by (destination_workload) '
                '(rate(istio_requests_total{reporter="destination",destination_workload_namespace="%s"}[15s]))')


def ensure_collection_link():
    link = os.path.join(BUILD, 'ansible_collections', 'meshops', 'istio')
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)


def run_gate(tmp_path, check_mode=False, **args):
    """Run the module the way Ansible does (args file, JSON on stdout) -> (rc, result)."""
    ensure_collection_link()
    payload = dict(args)
    payload['_ansible_check_mode'] = check_mode
    path = tmp_path / ('args-%d.json' % time.monotonic_ns())
    path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([BUILD, os.path.join(ROOT, 'tests')])
    proc = subprocess.run([sys.executable, MODULE, str(path)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError('module printed no JSON (rc %s):\n%s\n%s' % (proc.returncode, proc.stdout, proc.stderr))
    return proc.returncode, result


def run_playbook(tmp_path, playbook, extra_vars):
    """ansible-playbook on localhost -> (rc, stdout+stderr); the plays write what they saw into tmp_path."""
    ensure_collection_link()
    play = tmp_path / 'play.yml'
    play.write_text(playbook)
    env = dict(os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=BUILD, ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    env['PATH'] = BIN + os.pathsep + env.get('PATH', '')
    extra = dict(extra_vars, out_dir=str(tmp_path))
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(play),
                           '-e', json.dumps(extra)], capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    return proc.returncode, proc.stdout + proc.stderr


def written(tmp_path, name):
    path = tmp_path / name
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture(scope='module')
def sim():
    from kubesim.testing import KubeSim

    with KubeSim(scenario='blog', pod_ready_seconds=0.2, bad_proxy_version=['1.15.4'], seed=7) as cluster:
        yield cluster


@pytest.fixture(scope='module')
def prom(sim):
    server = PrometheusServer.for_kubesim(sim.url, kubeconfig=sim.kubeconfig)
    server.start()
    try:
        assert server.targets[0]['ca_file'], 'the kubeconfig CA should be used, not insecure_skip_verify'
        server.wait_for_scrape()
        # Enough samples for a 15s rate window in every namespace of the scenario.
        for namespace in ('foo', 'bar', 'baz'):
            server.wait_for(SUCCESS_RATE % (namespace, namespace, namespace),
                            lambda r: len(r) == 1 and r[0]['value'][1] != 'NaN', timeout=60)
        time.sleep(3)
        yield server
    finally:
        server.stop()


def deployments(sim, namespace):
    out = sim.kubectl('get', 'deployments', '-n', namespace, '-o', 'json', check=True).stdout
    return sorted(item['metadata']['name'] for item in json.loads(out)['items'])


def proxy_versions(sim, namespace):
    out = sim.kubectl('get', 'pods', '-n', namespace, '-o', 'json', check=True).stdout
    versions = set()
    for pod in json.loads(out)['items']:
        for container in pod['spec']['containers']:
            if container['name'] == 'istio-proxy':
                versions.add(container['image'].rsplit(':', 1)[1])
    return versions


def test_healthy_namespaces_pass(sim, prom, tmp_path):
    assert proxy_versions(sim, 'bar') == {'1.14.6'}
    # A healthy pod answers ~0.1% with 5xx at 8-20 requests/s: one 503 in a 15s window whose scrapes a loaded
    # machine spread out reads as a success rate under 0.99. A healthy workload measured over 60s does not.
    steady = dict(FAST)
    steady['window'] = '60s'  # (not dict(FAST, window=...): pylint's repeated-keyword misreads that)
    rc, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['foo', 'bar', 'baz'], count=3, **steady)
    assert rc == 0, result.get('msg')
    assert result['passed'] is True and result['verdict'] == 'pass' and result['changed'] is False
    assert result['iterations'] == 3 and result['failures'] == []
    # Every Deployment of the namespaces was measured, by both built-in checks, in every iteration.
    expected = {(ns, name) for ns in ('foo', 'bar', 'baz') for name in deployments(sim, ns)}
    for check in ('success_rate', 'latency_p99'):
        seen = [(m['namespace'], m['workload']) for m in result['measurements'] if m['check'] == check]
        assert set(seen) == expected and len(seen) == 3 * len(expected)
    for m in result['measurements']:
        assert m['ok'] and not m['no_data'] and m['time'].endswith('Z')
        if m['check'] == 'success_rate':
            assert 0.99 <= m['value'] <= 1.0 and m['threshold'] == {'min': 0.99}
        else:
            assert 0 < m['value'] <= 500 and m['threshold'] == {'max': 500}
    assert all(s['verdict'] == 'pass' and s['samples'] == 3 for s in result['series'])


def test_check_mode_still_queries(sim, prom, tmp_path):
    rc, result = run_gate(tmp_path, check_mode=True, prometheus_url=prom.url, namespaces=['baz'], count=1, **FAST)
    assert rc == 0 and result['changed'] is False
    assert [(m['check'], m['workload']) for m in result['measurements']] == [
        ('success_rate', 'baz'), ('latency_p99', 'baz')]


@pytest.mark.parametrize('policy,rc,verdict', [('fail', 1, 'fail'), ('pass', 0, 'pass'),
                                               ('inconclusive', 1, 'inconclusive')])
def test_no_data_policy(prom, tmp_path, policy, rc, verdict):
    # 'frontend' does not exist in foo: no series at all for it.
    code, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['foo'],
                            workloads={'foo': ['foo', 'frontend']}, checks={'success_rate': {}}, count=1,
                            no_data=policy, **FAST)
    assert code == rc and result['verdict'] == verdict
    by_workload = {m['workload']: m for m in result['measurements']}
    assert by_workload['foo']['ok'] and not by_workload['foo']['no_data']
    assert by_workload['frontend']['no_data'] and by_workload['frontend']['value'] is None
    assert 'no series for workload frontend' in by_workload['frontend']['reason']


def test_inconclusive_does_not_fail_the_task_without_fail_on_gate(prom, tmp_path):
    code, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['istio-system'], count=1,
                            no_data='inconclusive', fail_on_gate=False, **FAST)
    assert code == 0 and result['passed'] is False and result['verdict'] == 'inconclusive'
    assert 'no data' in result['msg']


def test_custom_query_with_placeholders(prom, tmp_path):
    rate = ('sum by (destination_workload) (rate(istio_requests_total{reporter="destination",'
            'destination_workload_namespace="{namespace}",destination_workload=~"{workload}"}[{window}]))')
    code, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['foo', 'baz'], count=1,
                            checks={'custom': [{'name': 'request_rate', 'query': rate, 'min': 1},
                                               {'name': 'impossible', 'query': rate, 'min': 1e9}]},
                            fail_on_gate=False, **FAST)
    assert code == 0, result.get('msg')
    measured = {(m['check'], m['namespace'], m['workload']): m for m in result['measurements']}
    assert measured[('request_rate', 'foo', 'foo')]['ok'] and measured[('request_rate', 'baz', 'baz')]['ok']
    assert 'destination_workload_namespace="foo"' in measured[('request_rate', 'foo', 'foo')]['query']
    assert not measured[('impossible', 'foo', 'foo')]['ok'] and result['verdict'] == 'fail'


def test_bad_query_is_an_error_not_a_verdict(prom, tmp_path):
    code, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['foo'], count=1,
                            checks={'custom': [{'name': 'broken', 'query': 'sum(rate(x[{window}]', 'max': 1}]},
                            **FAST)
    assert code == 1 and result['error'] == 'PrometheusQueryError' and 'verdict' not in result
    assert 'parse error' in result['msg']


def test_stopped_prometheus_is_a_clear_error(sim, tmp_path):
    server = PrometheusServer.for_kubesim(sim.url, kubeconfig=sim.kubeconfig).start()
    try:
        url = server.url
        rc, result = run_gate(tmp_path, prometheus_url=url, namespaces=['foo'], count=1, retries=0, **FAST)
        assert 'verdict' in result and 'error' not in result, result  # while it is up the gate can look
        server.pause()
        rc, result = run_gate(tmp_path, prometheus_url=url, namespaces=['foo'], count=1, retries=1, **FAST)
    finally:
        server.stop()
    assert rc == 1 and result['failed'] is True
    assert result['error'] == 'PrometheusUnreachable' and result['prometheus_unreachable'] is True
    assert 'Prometheus at %s is unreachable' % url in result['msg']
    assert 'verdict' not in result and 'passed' not in result and 'measurements' not in result


def test_role_sets_verdict_facts_and_error_is_not_a_failed_gate(prom, tmp_path):
    playbook = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: gate
      block:
        - name: run the role
          ansible.builtin.include_role:
            name: meshops.istio.metric_gate
      rescue:
        - name: rescued
          ansible.builtin.copy:
            content: "{{ {'verdict': metric_gate_verdict, 'passed': metric_gate_passed,
                          'error': metric_gate_result.error | default(None)} | to_json }}"
            dest: "{{ out_dir }}/rescued.json"
            mode: '0600'
    - name: after
      ansible.builtin.copy:
        content: "{{ {'verdict': metric_gate_verdict, 'passed': metric_gate_passed,
                      'workloads': metric_gate_result.measurements | default([]) | map(attribute='workload')
                                   | unique | sort} | to_json }}"
        dest: "{{ out_dir }}/after.json"
        mode: '0600'
"""
    metrics = dict(prometheus_url=prom.url, count=1, **FAST)
    # metric_gate_baseline_at is ignored without baseline: true (the upgrade always passes the wave's start)
    rc, output = run_playbook(tmp_path, playbook, {'istio_canary_metrics': metrics,
                                                   'metric_gate_namespaces': ['foo', 'baz'],
                                                   'metric_gate_baseline_at': '-1m'})
    assert rc == 0, output
    assert written(tmp_path, 'after.json') == {'verdict': 'pass', 'passed': True, 'workloads': ['baz', 'foo']}

    # metric_gate_workloads narrows/extends the selection: a listed workload without traffic is "no data".
    (tmp_path / 'after.json').unlink()
    rc, output = run_playbook(tmp_path, playbook, {'istio_canary_metrics': dict(metrics, no_data='inconclusive'),
                                                   'metric_gate_namespaces': ['foo'],
                                                   'metric_gate_workloads': {'foo': ['foo', 'nothere']}})
    assert rc == 0, output
    assert written(tmp_path, 'rescued.json') == {'verdict': 'inconclusive', 'passed': False, 'error': None}
    assert written(tmp_path, 'after.json')['workloads'] == ['foo', 'nothere']
    (tmp_path / 'rescued.json').unlink()
    assert written(tmp_path, 'rescued.json') is None

    (tmp_path / 'after.json').unlink()
    dead = dict(metrics, prometheus_url='http://127.0.0.1:9', retries=0)
    rc, output = run_playbook(tmp_path, playbook, {'istio_canary_metrics': dead, 'metric_gate_namespaces': ['foo']})
    assert rc == 0, output
    assert written(tmp_path, 'rescued.json') == {'verdict': 'error', 'passed': False,
                                                 'error': 'PrometheusUnreachable'}
    assert 'This is not a failed check' in output


def test_bad_proxy_version_fails_the_gate_naming_the_workload(sim, prom, tmp_path):
    before_wave = time.time()
    env = sim.kubectl_env()
    env['KUBESIM_ISTIOCTL_VERSION'] = '1.15.4'
    install = subprocess.run(['istioctl', 'install', '--set', 'revision=1-15-4', '-y'], env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert install.returncode == 0, install.stdout + install.stderr
    sim.kubectl('label', 'namespace', 'bar', 'istio.io/rev=1-15-4', '--overwrite', check=True)
    sim.kubectl('rollout', 'restart', 'deployment/bar', '-n', 'bar', check=True)
    sim.kubectl('rollout', 'status', 'deployment/bar', '-n', 'bar', '--timeout=90s', check=True)
    sim.wait_for(lambda: proxy_versions(sim, 'bar') == {'1.15.4'}, timeout=60, message='bar on 1.15.4')

    rc, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['foo', 'bar', 'baz'], count=10,
                          failure_limit=1, initial_delay='5s', **FAST)
    assert rc == 1 and result['failed'] is True
    assert result['passed'] is False and result['verdict'] == 'fail'
    assert result['stopped_early'] is True and result['iterations'] == 2  # fails fast: 2 failures > limit 1
    failed = {(m['namespace'], m['workload']) for m in result['failures']}
    assert failed == {('bar', 'bar')}
    checks = {m['check'] for m in result['failures']}
    assert checks == {'success_rate', 'latency_p99'}
    for m in result['failures']:
        # the first windows still hold some requests of the old pods: clearly below 0.99, not yet at ~0.65
        if m['check'] == 'success_rate':
            assert m['value'] < 0.95 and 'below min 0.99' in m['reason']
        else:
            assert m['value'] > 1000 and 'above max 500' in m['reason']
    assert 'bar/bar' in result['msg'] and 'foo/' not in result['msg']

    # Baseline: thresholds loose enough to pass the bad proxy, but it is far worse than before the wave.
    rc, result = run_gate(tmp_path, prometheus_url=prom.url, namespaces=['bar'], count=1, baseline=True,
                          baseline_at=str(before_wave),
                          checks={'success_rate': {'min': 0.3, 'baseline_tolerance': 0.02}}, **FAST)
    assert rc == 1 and result['verdict'] == 'fail'
    assert result['baseline'] and result['baseline'][0]['workload'] == 'bar'
    assert result['baseline'][0]['value'] >= 0.99
    failure = result['failures'][0]
    assert failure['workload'] == 'bar' and 0.3 < failure['value'] < 0.95
    assert 'worse than the baseline' in failure['reason']
