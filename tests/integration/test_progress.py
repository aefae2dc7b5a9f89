"""Live progress of a wave (issue 17): lines printed while rollout_restart runs, checked against the cluster.

The progress lines must come while the wave is still moving, not with the task's result: each test reads
ansible-playbook's output line by line as it is printed and, at the moment a progress line arrives, looks at
the cluster (how many Deployments of the wave have been restarted so far). No wall-clock limit is asserted.
"""
import json
import os
import re
import subprocess
import threading

import pytest
import yaml

import helpers as h

LINE = re.compile(r'^(?P<label>[\w-]+): (?P<done>\d+)/(?P<total>\d+) restarted, (?P<failed>\d+) failed')
NAMESPACES, PER_NS = 10, 5


def upgraded_large(kubesim, **options):
    sim = kubesim('large', namespaces=NAMESPACES, deployments=PER_NS, replicas=1, pod_ready_seconds=1.0, **options)
    h.install_revision(sim)
    cp = subprocess.run([h.PYTHON, h.ISTIOCTL, 'tag', 'set', 'default', '--revision', h.NEW_REV, '--overwrite',
                         '--kubeconfig', sim.kubeconfig], env=h.ansible_env(), capture_output=True, text=True,
                        timeout=120, check=False)
    assert cp.returncode == 0, cp.stderr
    return sim


def configmap_reads(sim):
    """GETs of ConfigMaps the simulator served so far (the progress reader's, when it reads the cluster)."""
    return sim.stats()['by_verb_resource'].get('get', {}).get('configmaps', 0)


def wave_namespaces():
    return ['ns-%04d' % i for i in range(1, NAMESPACES + 1)]


def restarted_count(sim):
    count = 0
    for dep in h.list_items(sim, 'Deployment'):
        if not dep['metadata']['namespace'].startswith('ns-'):
            continue
        annotations = dep['spec']['template']['metadata'].get('annotations') or {}
        count += 'kubectl.kubernetes.io/restartedAt' in annotations
    return count


def write_playbook(tmp_path, sim, progress, concurrency=4, wait_timeout=300, become=None):
    play = {'name': 'A wave with live progress', 'hosts': 'localhost', 'connection': 'local', 'gather_facts': False}
    play.update(become or {})
    play['tasks'] = [{
        'name': 'Restart the wave',
        'meshops.istio.rollout_restart': {
            'kubeconfig': sim.kubeconfig, 'namespaces': wave_namespaces(), 'kinds': ['Deployment'],
            'concurrency': concurrency, 'wait_timeout': wait_timeout, 'progress': progress},
    }]
    path = tmp_path / 'wave.yml'
    path.write_text(yaml.safe_dump([play], sort_keys=False))
    return path


def stream_playbook(playbook, on_line, timeout=600):
    """Run ansible-playbook with the default stdout callback; call ``on_line`` for each line as it comes."""
    env = h.ansible_env()
    env.pop('ANSIBLE_STDOUT_CALLBACK', None)
    env['ANSIBLE_STDOUT_CALLBACK'] = 'ansible.builtin.default'
    env['ANSIBLE_NOCOLOR'] = '1'
    cmd = [os.path.join(os.path.dirname(h.PYTHON), 'ansible-playbook'), '-i', 'localhost,',
           '-e', 'ansible_python_interpreter=%s' % h.PYTHON, str(playbook)]
    proc = subprocess.Popen(cmd, cwd=h.REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            line = line.rstrip('\n')
            lines.append(line)
            on_line(line)
        proc.wait()
    finally:
        timer.cancel()
    return proc.returncode, lines


def test_a_wave_of_50_workloads_prints_its_progress_while_it_moves(kubesim, tmp_path):
    sim = upgraded_large(kubesim)
    total = NAMESPACES * PER_NS
    seen = []

    def on_line(line):
        match = LINE.match(line)
        if match:
            # what the cluster holds at the moment the line is printed
            seen.append((line, int(match.group('done')), int(match.group('total')), restarted_count(sim)))

    reads = configmap_reads(sim)
    rc, lines = stream_playbook(write_playbook(tmp_path, sim, {'label': 'wave1', 'interval': 2}), on_line)
    reads = configmap_reads(sim) - reads
    out = '\n'.join(lines)
    assert rc == 0, out[-4000:]
    assert seen, out[-4000:]
    assert all(t == total for _l, _d, t, _r in seen), seen
    # printed while the wave moved: when the first lines came, workloads of the wave were not restarted yet
    assert seen[0][3] < total, seen[:3]
    live = [s for s in seen if s[1] < total]
    assert len(live) >= 2, seen
    # done never goes back, and never claims more than the cluster shows restarted at that moment
    dones = [d for _l, d, _t, _r in seen]
    assert dones == sorted(dones), dones
    assert all(d <= r for _l, d, _t, r in seen), seen
    # the heartbeat names what is rolling; the last line closes the wave
    assert any(' rolling: ns-' in item[0] for item in live), live
    assert re.match(r'^wave1: %d/%d restarted, 0 failed, finished in [\d.]+s' % (total, total), seen[-1][0]), seen[-1]
    # all of it before the task's own result
    assert out.index(seen[-1][0]) < out.index('changed: [localhost]')
    # and the progress key on the cluster says the same
    cm = h.get(sim, 'ConfigMap', 'meshops-istio-upgrade-progress', 'istio-system')
    entry = json.loads(cm['data']['wave1'])
    assert (entry['state'], entry['restarted'], entry['total'], entry['failed']) == ('done', total, total, 0)
    assert restarted_count(sim) == total
    # the lines came from the module's file on the controller: nobody read the progress ConfigMap
    assert reads == 0


def test_under_become_the_lines_come_from_the_configmap(kubesim, tmp_path):
    """With become the module may run as a user who cannot write the controller user's file: the plugin reads
    the progress ConfigMap instead (here su to root, which asks no password of root)."""
    if os.geteuid() != 0:
        pytest.skip('su without a password needs root')
    sim = upgraded_large(kubesim)
    total = NAMESPACES * PER_NS
    playbook = write_playbook(tmp_path, sim, {'label': 'wave1', 'interval': 2},
                              become={'become': True, 'become_method': 'su', 'become_user': 'root'})
    reads = configmap_reads(sim)
    rc, lines = stream_playbook(playbook, lambda line: None)
    reads = configmap_reads(sim) - reads
    out = '\n'.join(lines)
    assert rc == 0, out[-4000:]
    seen = [line for line in lines if LINE.match(line)]
    assert len(seen) >= 2, out[-4000:]
    assert seen[-1].startswith('wave1: %d/%d restarted, 0 failed, finished in ' % (total, total)), seen
    assert any(int(LINE.match(line).group('done')) < total for line in seen), seen
    assert out.index(seen[-1]) < out.index('changed: [localhost]')
    assert restarted_count(sim) == total
    assert reads >= 2  # the plugin read the ConfigMap (once a second)


def test_a_failing_workload_is_printed_with_its_reason_as_it_fails(kubesim, tmp_path):
    sim = upgraded_large(kubesim, crash_proxy_version=[h.NEW_VERSION])
    rc, lines = stream_playbook(write_playbook(tmp_path, sim, {'label': 'wave1', 'interval': 5}, concurrency=2),
                                lambda line: None)
    out = '\n'.join(lines)
    assert rc != 0, out[-3000:]
    failed = [line for line in lines if LINE.match(line) and ' failed: ns-' in line]
    assert failed, out[-4000:]
    assert re.search(r'^wave1: \d+/%d restarted, [12] failed: ns-0001/Deployment/app-\d failed: CrashLoopBackOff'
                     % (NAMESPACES * PER_NS), failed[0]), failed
    fatal = next(i for i, line in enumerate(lines) if line.startswith('fatal: [localhost]'))
    assert lines.index(failed[0]) < fatal


def test_check_mode_prints_no_progress_and_writes_nothing(kubesim, tmp_path):
    sim = upgraded_large(kubesim)
    playbook = write_playbook(tmp_path, sim, {'label': 'wave1', 'interval': 1})
    env = h.ansible_env()
    cmd = [os.path.join(os.path.dirname(h.PYTHON), 'ansible-playbook'), '-i', 'localhost,', '--check',
           '-e', 'ansible_python_interpreter=%s' % h.PYTHON, str(playbook)]
    cp = subprocess.run(cmd, cwd=h.REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert cp.returncode == 0, cp.stdout[-3000:]
    assert not [line for line in cp.stdout.splitlines() if LINE.match(line)], cp.stdout[-3000:]
    assert h.get(sim, 'ConfigMap', 'meshops-istio-upgrade-progress', 'istio-system') is None
    assert restarted_count(sim) == 0


def test_awx_job_output_shows_the_progress_lines_as_job_events(kubesim, tmp_path):
    """AWX runs the playbook through ansible-runner with its awx_display callback: the lines must be job
    events (what AWX's job output shows), emitted before the task's runner_on_ok event."""
    ansible_runner = pytest.importorskip('ansible_runner')
    sim = upgraded_large(kubesim)
    playbook = write_playbook(tmp_path, sim, {'label': 'wave1', 'interval': 2})
    private = tmp_path / 'runner'
    (private / 'project').mkdir(parents=True)
    (private / 'project' / 'wave.yml').write_text(playbook.read_text())
    env = h.ansible_env()
    envvars = dict((k, v) for k, v in env.items() if k.startswith(('ANSIBLE_', 'PYTHON', 'PATH')))
    envvars.pop('ANSIBLE_STDOUT_CALLBACK', None)
    run = ansible_runner.run(private_data_dir=str(private), playbook='wave.yml', inventory='localhost,',
                             extravars={'ansible_python_interpreter': h.PYTHON}, envvars=envvars, quiet=True)
    events = list(run.events)
    assert run.rc == 0, '\n'.join(e.get('stdout', '') for e in events)[-4000:]
    ok = next(i for i, e in enumerate(events) if e['event'] == 'runner_on_ok')
    progress = [(i, e) for i, e in enumerate(events) if LINE.match(e.get('stdout') or '')]
    assert progress, [e.get('stdout') for e in events]
    assert all(e['event'] == 'verbose' for _i, e in progress), progress
    assert progress[0][0] < ok
    assert any(' rolling: ' in e['stdout'] for _i, e in progress if _i < ok)


def test_the_upgrade_playbook_prints_wave1_progress_over_many_workloads(kubesim, tmp_path):
    """The role's wave: ``--tags wave1`` of playbooks/upgrade.yml on 50 workloads prints its lines (host named),
    and the progress key it leaves agrees with the cluster and with the upgrade record."""
    import upgrade_support as us
    sim = kubesim('large', namespaces=NAMESPACES, deployments=PER_NS, replicas=1, pod_ready_seconds=1.0)
    inv = us.write_inventory(tmp_path / 'inv', {'big': sim.kubeconfig}, istio_canary_gateways=[],
                             istio_canary_waves=[{'name': 'wave1', 'namespaces': wave_namespaces()}],
                             istio_canary_progress_interval=2)
    prepared = us.run_phase(inv, 'precheck,install,tag', workdir=tmp_path / 'run1')
    assert prepared.ok, prepared
    wave = us.run_phase(inv, 'wave1', workdir=tmp_path / 'run2')
    assert wave.ok, wave
    total = NAMESPACES * PER_NS
    lines = [line for line in wave.stdout.splitlines() if LINE.match(line)]
    assert len(lines) >= 2, wave.stdout[-4000:]
    assert all(line.endswith('(big)') and line.startswith('wave1: ') for line in lines), lines
    assert lines[-1].startswith('wave1: %d/%d restarted, 0 failed, finished in ' % (total, total)), lines
    assert any(int(LINE.match(line).group('done')) < total for line in lines), lines
    entry = json.loads(h.get(sim, 'ConfigMap', 'meshops-istio-upgrade-progress', 'istio-system')['data']['wave1'])
    assert (entry['state'], entry['restarted'], entry['total']) == ('done', total, total)
    assert entry['by']['user'] and entry['by']['host']
    plane = us.data_plane(sim, wave_namespaces())
    assert len(plane) == total and all(info['versions'] == [h.NEW_VERSION] for info in plane.values())
    assert us.upgrade_record(sim)['wave.wave1.done']
