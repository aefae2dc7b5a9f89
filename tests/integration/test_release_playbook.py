"""playbooks/release.yml (role meshops.istio.release) against the simulated cluster, gated by a REAL Prometheus.

Scenario ``release``: Service bookinfo/reviews over Deployments reviews-v1 (stable, tag default -> 1.14.6
proxies) and reviews-v2 (canary, revision 1-15-4 -> 1.15.4 proxies).  kubesim's synthetic Istio telemetry
follows the VirtualService weights (tests/kubesim/traffic.py); Debian's prometheus scrapes it every second
and the metric gate (meshops.istio.istio_metric_gate) queries that Prometheus after every step.

* a healthy canary is released step by step to 100%; a re-run reports no change;
* with ``--bad-proxy-version 1.15.4`` the canary answers ~35% 5xx: the gate of step 1 fails, the play's
  rescue sends all traffic back to v1 and the run fails naming the gate;
* the guarded rollback and promote tags, and per-step tags (check mode of the module itself is covered by
  test_traffic_shift.py).
"""
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from integration.prometheus import PrometheusServer, prometheus_binary
from integration.upgrade_support import PhaseRun, VENV_BIN, ROOT, ansible_env, python_bin

PLAYBOOK = ROOT / 'playbooks' / 'release.yml'
NS = 'bookinfo'
VS_PATH = '/apis/networking.istio.io/v1beta1/namespaces/%s/virtualservices/reviews' % NS

# Canary success rate over the gate's window (what the gate's built-in check computes, for the fixture's wait).
CANARY_REQUESTS = 'sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="%s",' \
                  'destination_workload="reviews-v2"}[10s]))' % NS


def write_inventory(directory, kubeconfig):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    hosts = {'istio_clusters': {'hosts': {'sandbox': {
        'ansible_connection': 'local', 'ansible_python_interpreter': python_bin(),
        'kubeconfig': str(kubeconfig), 'context': 'kubesim'}}}}
    path = directory / 'hosts.yml'
    path.write_text(json.dumps(hosts))
    return str(path)


def run_release(inventory, tags=None, extra_vars=None, check=False, timeout=600):
    """``ansible-playbook -i inventory playbooks/release.yml [--tags ...] -e @vars`` with the event log."""
    workdir = Path(tempfile.mkdtemp(prefix='release-run-'))
    events = workdir / 'events.jsonl'
    events.write_text('')
    cmd = [str(VENV_BIN / 'ansible-playbook'), '-i', str(inventory), str(PLAYBOOK)]
    if tags:
        cmd += ['--tags', tags]
    if extra_vars:
        (workdir / 'vars.json').write_text(json.dumps(extra_vars))
        cmd += ['-e', '@%s' % (workdir / 'vars.json')]
    if check:
        cmd.append('--check')
    env = ansible_env()
    env['MESHOPS_EVENT_LOG'] = str(events)
    env['ANSIBLE_LOCAL_TEMP'] = str(workdir / 'ansible-tmp')
    proc = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    parsed = [json.loads(line) for line in events.read_text().splitlines() if line.strip()]
    return PhaseRun(cmd, proc.returncode, proc.stdout, proc.stderr, parsed)


def route(sim):
    """subset -> weight of the reviews default route, as stored (None without VirtualService)."""
    code, _headers, body = sim.request('GET', VS_PATH)
    if code == 404:
        return None
    assert code == 200, body[:300]
    obj = json.loads(body)
    return {d['destination']['subset']: d['weight'] for d in obj['spec']['http'][0]['route']}


def step_reports(run):
    return [e['msg'] for e in run.tasks(status='ok') if str(e.get('task', '')).endswith('Step | report')]


def base_vars(prom=None, **more):
    out = {'istio_release_namespace': NS, 'istio_release_service': 'reviews', 'istio_release_pause_seconds': 1}
    if prom is not None:
        out['istio_release_metrics'] = {
            'prometheus_url': prom.url, 'window': '10s', 'interval': '1s', 'count': 2,
            'checks': {'success_rate': {'min': 0.95}}, 'no_data': 'fail'}
    out.update(more)
    return out


def start_prometheus(sim):
    prom = PrometheusServer.for_kubesim(sim.url, kubeconfig=sim.kubeconfig)
    prom.start()
    try:
        prom.wait_for_scrape()
        # the canary has served long enough for a 10s rate window
        prom.wait_for(CANARY_REQUESTS, lambda r: len(r) == 1 and float(r[0]['value'][1]) > 0, timeout=60)
    except Exception:
        prom.stop()
        raise
    return prom


def pods_ready(sim, count=3):
    def ready():
        out = sim.kubectl('get', 'pods', '-n', NS, '-o', 'json').stdout
        pods = json.loads(out)['items'] if out else []
        return len(pods) == count and all(
            any(c['type'] == 'Ready' and c['status'] == 'True' for c in (p.get('status') or {}).get('conditions') or [])
            for p in pods)
    sim.wait_for(ready, timeout=60, message='reviews pods ready')


needs_prometheus = pytest.mark.skipif(prometheus_binary() is None,
                                      reason='prometheus is not installed (make prometheus installs it)')


@needs_prometheus
def test_healthy_release_goes_to_100_and_a_rerun_changes_nothing(kubesim, tmp_path):
    sim = kubesim('release', seed=3)
    pods_ready(sim)
    inventory = write_inventory(tmp_path, sim.kubeconfig)
    prom = start_prometheus(sim)
    try:
        variables = base_vars(prom, istio_release_steps=[20, 50, 100])
        run = run_release(inventory, extra_vars=variables)
        assert run.ok, run
        assert route(sim) == {'v1': 0, 'v2': 100}
        reports = step_reports(run)
        assert len(reports) == 3, reports
        assert all('moved there' in r and 'metric gate pass' in r for r in reports), reports
        assert 'Step 1 of 3 of bookinfo/reviews (v2 20%, v1 80%)' in reports[0]
        assert run.changed() == 3      # one shift per step, nothing else changes anything

        again = run_release(inventory, extra_vars=variables)
        assert again.ok, again
        assert again.changed() == 0, again.changed_tasks()
        assert route(sim) == {'v1': 0, 'v2': 100}
        assert 'skipped, the split is already past it' in step_reports(again)[0]
    finally:
        prom.stop()


@needs_prometheus
def test_bad_canary_fails_the_gate_and_is_rolled_back(kubesim, tmp_path):
    sim = kubesim('release', bad_proxy_version=['1.15.4'], seed=5)
    pods_ready(sim)
    inventory = write_inventory(tmp_path, sim.kubeconfig)
    prom = start_prometheus(sim)
    try:
        run = run_release(inventory, extra_vars=base_vars(prom))
        assert not run.ok, run
        # the rescue sent everything back to the stable version
        assert route(sim) == {'v1': 100, 'v2': 0}
        text = run.stdout
        assert 'Rolled back bookinfo/reviews: v1 100%, v2 0%' in text, text[-4000:]
        assert 'The release failed at' in text and 'all traffic was sent back to the stable version' in text
        # the step's gate is the metric_gate role: it fails the step on the verdict, naming the failed check
        gate_failures = [e for e in run.tasks(status='failed') if 'Metric gate |' in str(e.get('task', ''))]
        assert len(gate_failures) == 1, run.tasks(status='failed')
        assert "verdict 'fail'" in str(gate_failures[0].get('msg')), gate_failures[0]
        assert 'success_rate' in str(gate_failures[0].get('msg')), gate_failures[0]
        # only step 1 ran: 10% was the last weight before the rollback
        rollback = [e for e in run.events if e.get('event') == 'task'
                    and str(e.get('task', '')).endswith('Rollback | report')]
        assert rollback and '"v2": 10' in rollback[0]['msg'], rollback
        # the telemetry follows the weights: with v2 at 0% the canary gets no requests any more, v1 all of them
        idle = CANARY_REQUESTS.replace('[10s]', '[4s]')
        prom.wait_for(idle, lambda r: len(r) == 1 and float(r[0]['value'][1]) == 0.0, timeout=30)
        stable = prom.query(idle.replace('reviews-v2', 'reviews-v1'))
        assert float(stable[0]['value'][1]) > 0, stable
    finally:
        prom.stop()


def test_step_tags_rollback_guard_and_promote(kubesim, tmp_path):
    sim = kubesim('release')
    inventory = write_inventory(tmp_path, sim.kubeconfig)
    variables = base_vars(istio_release_pause_seconds=0)

    step2 = run_release(inventory, tags='step2', extra_vars=variables)
    assert step2.ok, step2
    assert route(sim) == {'v1': 75, 'v2': 25}
    assert step_reports(step2) == ['Step 2 of 4 of bookinfo/reviews (v2 25%, v1 75%): moved there.']

    # rollback is never run without its guard ...
    unguarded = run_release(inventory, tags='rollback', extra_vars=variables)
    assert unguarded.ok and unguarded.changed() == 0
    assert route(sim) == {'v1': 75, 'v2': 25}
    # ... and runs with it
    guarded = run_release(inventory, tags='rollback', extra_vars=dict(variables, istio_release_rollback=True))
    assert guarded.ok and guarded.changed() == 1
    assert route(sim) == {'v1': 100, 'v2': 0}

    promote = run_release(inventory, tags='promote', extra_vars=variables)
    assert promote.ok and promote.changed() == 1
    assert route(sim) == {'v1': 0, 'v2': 100}

    # bad settings are refused before anything is sent
    bad = run_release(inventory, tags='step1', extra_vars=dict(variables, istio_release_steps=[50, 25]))
    assert not bad.ok
    assert 'strictly increasing' in bad.stdout
    assert route(sim) == {'v1': 0, 'v2': 100}
