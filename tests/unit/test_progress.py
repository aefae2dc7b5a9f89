"""Live progress (module_utils/progress.py): the lines, when the action plugin prints them, the publisher's
writes (throttled, never failing the rollout) and the rollout engine feeding it."""
import json
import os

import pytest

from ansible_collections.meshops.istio.plugins.module_utils.errors import Forbidden, InvalidInput, NotFound
from ansible_collections.meshops.istio.plugins.module_utils.progress import (
    ProgressFollower,
    ProgressPublisher,
    actor,
    check_label,
    describe_actor,
    progress_lines,
    read_progress,
    read_progress_file,
    write_progress_file,
)
from ansible_collections.meshops.istio.plugins.module_utils.rollout import run_rollout

from rollout_fake import FakeApi


def entry(**kw):
    base = {'label': 'wave1', 'run_id': 'r1', 'state': 'running', 'total': 1000, 'restarted': 412, 'failed': 0,
            'current': 3, 'skipped': 0, 'rolling': ['ns-1/Deployment/a', 'ns-1/Deployment/b'], 'rolling_count': 2,
            'failures': [], 'failures_count': 0}
    base.update(kw)
    return base


def test_every_line_starts_with_done_over_total():
    lines = progress_lines(entry(), host='prod-eu')
    assert lines == ['wave1: 412/1000 restarted, 0 failed, 2 rolling: ns-1/Deployment/a, ns-1/Deployment/b, '
                     '3 already current (prod-eu)']


def test_a_long_rolling_list_is_cut_with_the_count_of_the_rest():
    rolling = ['ns/Deployment/w%d' % i for i in range(20)]
    line = progress_lines(entry(rolling=rolling, rolling_count=25, current=0))[0]
    assert line.startswith('wave1: 412/1000 restarted, 0 failed, 25 rolling: ns/Deployment/w0, ')
    assert line.endswith('ns/Deployment/w4 (+20 more)')


def test_a_failure_gets_its_own_line_once_with_its_reason():
    failure = {'workload': 'ns-9/Deployment/x', 'reason': 'CrashLoopBackOff: back-off 10s restarting istio-proxy'}
    first = entry(failed=1, failures=[failure])
    lines = progress_lines(first, previous=entry(), heartbeat=False)
    assert lines == ['wave1: 412/1000 restarted, 1 failed: ns-9/Deployment/x failed: CrashLoopBackOff: back-off 10s '
                     'restarting istio-proxy']
    assert progress_lines(first, previous=first, heartbeat=False) == []


def test_the_closing_line_says_how_it_ended():
    done = progress_lines(entry(state='done', restarted=1000, seconds=312.4, rolling=[], rolling_count=0))
    assert done == ['wave1: 1000/1000 restarted, 0 failed, finished in 312.4s, 3 already current']
    failed = progress_lines(entry(state='failed', failed=1, skipped=500, seconds=40, current=0))
    assert failed == ['wave1: 412/1000 restarted, 1 failed, stopped after a failure in 40s, 500 skipped']


def test_follower_prints_its_own_run_only_with_a_heartbeat_every_interval():
    follower = ProgressFollower('r1', interval=10)
    assert follower.poll(entry(run_id='an-earlier-run'), 0) == []
    assert follower.poll(None, 0) == []
    assert len(follower.poll(entry(), 1)) == 1           # first sight
    assert follower.poll(entry(restarted=413), 5) == []   # within the interval
    failure = {'workload': 'ns/Deployment/x', 'reason': 'timeout after 300s'}
    assert follower.poll(entry(restarted=413, failed=1, failures=[failure]), 6) == [
        'wave1: 413/1000 restarted, 1 failed: ns/Deployment/x failed: timeout after 300s']  # at once
    assert len(follower.poll(entry(restarted=420, failed=1, failures=[failure]), 11)) == 1  # heartbeat only
    closing = follower.poll(entry(restarted=999, failed=1, failures=[failure], state='failed'), 12)
    assert closing[-1].startswith('wave1: 999/1000 restarted, 1 failed, stopped after a failure')
    assert follower.poll(entry(state='failed'), 30) == []  # closed


@pytest.mark.parametrize('label', ['', 'wave 1', 'a/b', 'x' * 64, '..'])
def test_bad_labels_are_refused(label):
    with pytest.raises(InvalidInput):
        check_label(label)


def test_actor_names_the_awx_job_or_the_controller_user():
    who = actor({'id': 42, 'template': 'upgrade-wave1', 'user': 'admin'}, environ={})
    assert describe_actor(who) == 'awx job 42 (upgrade-wave1, by admin)'
    assert actor(environ={'JOB_ID': '7'})['job'] == '7'
    plain = actor(environ={})
    assert 'job' not in plain and describe_actor(plain) == '%s@%s' % (plain['user'], plain['host'])


class ConfigMaps:
    """The two calls the publisher makes, on a dict of ConfigMaps."""

    def __init__(self, refuse=None):
        self.data = {}
        self.calls = []
        self.refuse = refuse

    def patch(self, kind, name, patch, namespace=None):
        self.calls.append('patch')
        if self.refuse:
            raise self.refuse
        if (namespace, name) not in self.data:
            raise NotFound('configmaps %s not found' % name)
        self.data[(namespace, name)].update(patch['data'])

    def create(self, kind, obj, namespace=None):
        self.calls.append('create')
        self.data[(namespace, obj['metadata']['name'])] = dict(obj['data'])

    def get_or_none(self, kind, name, namespace=None):
        data = self.data.get((namespace, name))
        return None if data is None else {'data': data}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_publisher_writes_at_most_every_period_but_a_failure_soon():
    cms, clock = ConfigMaps(), Clock()
    pub = ProgressPublisher(cms, 'meshops-istio-upgrade-progress', 'istio-system', 'wave1', run_id='r1',
                            clock=clock, period=2.0, urgent_period=0.5)
    assert pub.due()
    pub.offer({'total': 2, 'restarted': 0, 'failed': 0})
    clock.now = 1.0
    assert not pub.due()
    assert pub.due(urgent=True) is True  # a failure: 0.5 s after the last write is enough
    clock.now = 1.2
    pub.finish({'total': 2, 'restarted': 1, 'failed': 1}, 'failed')
    written = read_progress(cms, 'meshops-istio-upgrade-progress', 'istio-system')['wave1']
    assert (written['state'], written['restarted'], written['failed'], written['run_id']) == ('failed', 1, 1, 'r1')
    assert written['ended'] and cms.calls[:2] == ['patch', 'create']


def test_publisher_that_may_not_write_warns_once_and_stops_trying():
    cms = ConfigMaps(refuse=Forbidden('configmaps is forbidden'))
    pub = ProgressPublisher(cms, 'p', 'istio-system', 'wave1')
    pub.finish({'total': 1, 'restarted': 1, 'failed': 0}, 'done')
    assert 'forbidden' in pub.warning and 'the rollout goes on' in pub.warning
    assert not pub.due()
    pub.finish({'total': 1, 'restarted': 1, 'failed': 0}, 'done')
    assert cms.calls == ['patch']


def test_the_local_file_gets_every_second_what_the_configmap_gets_every_period(tmp_path):
    clock = Clock()
    pub = ProgressPublisher(ConfigMaps(), 'p', 'istio-system', 'wave1', run_id='r1', clock=clock, period=5.0,
                            urgent_period=0.5, local_file=str(tmp_path / 'progress.json'), local_period=1.0)
    pub._thread = 'writer'  # pylint: disable=protected-access  # look at what is handed over, write nothing
    handed = {'cm': [], 'file': []}

    def take():
        for kind, attr in (('cm', 'pending'), ('file', 'pending_local')):
            if getattr(pub, attr) is not None:
                handed[kind].append(getattr(pub, attr))
                setattr(pub, attr, None)

    for tick in range(0, 24):  # the runner's loop, twice a second
        clock.now = tick / 2.0
        if pub.due():
            pub.offer({'total': 20, 'restarted': tick, 'failed': 0})
            take()
    assert [e['seconds'] for e in handed['file']] == [float(x) for x in range(12)]
    assert [e['seconds'] for e in handed['cm']] == [0.0, 5.0, 10.0]
    # a failure goes to the file at once, to the ConfigMap no sooner than urgent_period after its last write
    clock.now = 10.2
    assert pub.due(urgent=True)
    pub.offer({'total': 20, 'restarted': 11, 'failed': 1})
    take()
    assert handed['file'][-1]['failed'] == 1 and handed['cm'][-1]['failed'] == 0
    clock.now = 10.5
    assert pub.due()
    pub.offer({'total': 20, 'restarted': 11, 'failed': 1})
    take()
    assert handed['cm'][-1]['failed'] == 1


def test_finish_writes_the_file_and_the_configmap(tmp_path):
    cms = ConfigMaps()
    path = str(tmp_path / 'progress.json')
    pub = ProgressPublisher(cms, 'p', 'istio-system', 'wave1', run_id='r1', local_file=path)
    pub.offer({'total': 3, 'restarted': 0, 'failed': 0})
    pub.finish({'total': 3, 'restarted': 3, 'failed': 0}, 'done')
    in_file = read_progress_file(path)
    assert (in_file['state'], in_file['restarted'], in_file['run_id']) == ('done', 3, 'r1')
    assert read_progress(cms, 'p', 'istio-system')['wave1'] == in_file
    assert pub.warnings == [] and pub.local_writes >= 1 and not list(tmp_path.glob('*.tmp'))


def test_a_file_that_cannot_be_written_costs_the_lines_not_the_configmap(tmp_path):
    cms = ConfigMaps()
    path = str(tmp_path / 'gone' / 'progress.json')
    pub = ProgressPublisher(cms, 'p', 'istio-system', 'wave1', local_file=path)
    pub.finish({'total': 1, 'restarted': 1, 'failed': 0}, 'done')
    assert len(pub.warnings) == 1 and 'lines are not printed' in pub.warnings[0]
    assert read_progress(cms, 'p', 'istio-system')['wave1']['state'] == 'done'


def test_read_progress_file_is_none_until_an_entry_is_there(tmp_path):
    path = str(tmp_path / 'progress.json')
    assert read_progress_file(path) is None
    (tmp_path / 'progress.json').write_text('{"label": "wave1"')  # never left so by write_progress_file
    assert read_progress_file(path) is None
    write_progress_file(path, {'label': 'wave1', 'restarted': 1})
    assert read_progress_file(path) == {'label': 'wave1', 'restarted': 1}


class RecordingPublisher(ProgressPublisher):
    """Keeps every entry the engine hands over (the writes themselves are tested above)."""

    def __init__(self):
        super(RecordingPublisher, self).__init__(ConfigMaps(), 'p', 'istio-system', 'wave1', period=0.0,
                                                 urgent_period=0.0)
        self.entries = []

    def offer(self, counts, state='running'):
        self.last = self.clock()
        self.entries.append(dict(counts, state=state))

    def finish(self, counts, state):
        self.entries.append(dict(counts, state=state))


def test_the_engine_feeds_progress_while_it_runs_and_closes_it():
    api = FakeApi()
    try:
        for i in range(6):
            api.namespace('ns-%d' % i)
            api.workload('Deployment', 'ns-%d' % i, 'app')
        api.namespace('done-already')
        api.workload('Deployment', 'done-already', 'app', revision='1-15-4')
        api.set_tag('1-15-4')
        pub = RecordingPublisher()
        run_rollout(api, namespaces=['ns-%d' % i for i in range(6)] + ['done-already'], concurrency=2,
                    wait_timeout=30, progress=pub)
    finally:
        api.close()
    running = [e for e in pub.entries if e['state'] == 'running']
    assert running and all(e['total'] == 6 and e['current'] == 1 for e in pub.entries)
    assert any(e['rolling_count'] for e in running)
    assert all(e['rolling_count'] <= 2 for e in running)  # never more than the concurrency
    dones = [e['restarted'] for e in pub.entries]
    assert dones == sorted(dones) and dones[-1] == 6
    assert pub.entries[-1]['state'] == 'done' and pub.entries[-1]['rolling_count'] == 0


def test_the_engine_names_a_failure_in_the_progress():
    api = FakeApi()
    try:
        api.namespace('bar')
        api.workload('Deployment', 'bar', 'bar')
        api.set_tag('1-15-4')
        api.crash_versions.add('1.15.4')
        pub = RecordingPublisher()
        with pytest.raises(Exception):
            run_rollout(api, namespaces=['bar'], wait_timeout=30, progress=pub)
    finally:
        api.close()
    last = pub.entries[-1]
    assert last['state'] == 'failed' and last['failed'] == 1
    assert last['failures'][0]['workload'] == 'bar/Deployment/bar'
    assert 'CrashLoopBackOff' in last['failures'][0]['reason']
    json.dumps(pub.entries)  # what is written must be JSON


def test_check_mode_publishes_nothing():
    api = FakeApi()
    try:
        api.namespace('bar')
        api.workload('Deployment', 'bar', 'bar')
        api.set_tag('1-15-4')
        pub = RecordingPublisher()
        run_rollout(api, namespaces=['bar'], check_mode=True, progress=pub)
    finally:
        api.close()
    assert pub.entries == []


def test_the_progress_file_lives_in_the_runs_own_temporary_directory(tmp_path):
    """Ansible's main process removes C.DEFAULT_LOCAL_TMP when it exits, also after a worker was killed;
    the directory is private (0700) like the file in it."""
    from ansible import constants as C
    from ansible_collections.meshops.istio.plugins.action import rollout_restart as action
    source = action.FileSource()
    try:
        assert os.path.dirname(source.directory) == C.DEFAULT_LOCAL_TMP
        assert os.path.basename(source.directory).startswith('meshops-progress-')
        assert os.stat(source.directory).st_mode & 0o777 == 0o700
    finally:
        source.close()
    assert not os.path.exists(source.directory)
    assert os.path.dirname(action.FileSource(str(tmp_path)).directory) == str(tmp_path)


def test_the_action_plugin_prints_from_the_file_the_module_rewrites(monkeypatch, tmp_path):
    """The worker's printer reads the local file (no Kubernetes client): first sight, each failure at once,
    the closing line after the module returned; then its private directory is gone."""
    from ansible_collections.meshops.istio.plugins.action import rollout_restart as action
    printed = []
    monkeypatch.setattr(action.display, 'display', printed.append)
    monkeypatch.setattr(action, 'POLL_SECONDS', 0.01)
    source = action.FileSource(str(tmp_path))
    printer = action.ProgressPrinter(source, ProgressFollower('r1', interval=3600, host='prod-eu'))
    printer.poll()
    assert printed == []  # the module has not written yet
    write_progress_file(source.path, entry(restarted=1))
    printer.poll()
    failure = {'workload': 'ns/Deployment/x', 'reason': 'CrashLoopBackOff: back-off'}
    write_progress_file(source.path, entry(restarted=2, failed=1, failures=[failure]))
    printer.poll()
    write_progress_file(source.path, entry(restarted=3, failed=1, failures=[failure], state='failed', seconds=9))
    printer.start()
    printer.finish()
    assert printed == [
        'wave1: 1/1000 restarted, 0 failed, 2 rolling: ns-1/Deployment/a, ns-1/Deployment/b, 3 already current '
        '(prod-eu)',
        'wave1: 2/1000 restarted, 1 failed: ns/Deployment/x failed: CrashLoopBackOff: back-off (prod-eu)',
        'wave1: 3/1000 restarted, 1 failed, stopped after a failure in 9s, 3 already current (prod-eu)',
    ]
    assert not os.path.exists(source.directory)


def test_printing_from_the_file_never_imports_the_kubernetes_client(tmp_path):
    """The fixed cost the file spares the worker (see docs/benchmarks.md): checked in a fresh interpreter."""
    import subprocess
    import sys
    code = (
        'import sys\n'
        'from ansible_collections.meshops.istio.plugins.action import rollout_restart as action\n'
        'from ansible_collections.meshops.istio.plugins.module_utils.progress import ProgressFollower, '
        'write_progress_file\n'
        'action.display.display = lambda line: print(line)\n'
        'source = action.FileSource()\n'
        'write_progress_file(source.path, {"label": "wave1", "run_id": "r1", "state": "done", "total": 1, '
        '"restarted": 1, "failed": 0})\n'
        'printer = action.ProgressPrinter(source, ProgressFollower("r1", 10))\n'
        'printer.start()\n'
        'printer.finish()\n'
        'print(sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes"))\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=True,
                         cwd=str(tmp_path), env=env).stdout.splitlines()
    assert out == ['wave1: 1/1 restarted, 0 failed, finished', '[]']


def test_a_halted_printer_prints_nothing_more_and_waits_for_a_line_in_flight(monkeypatch, tmp_path):
    """The worker's signal handler halts the printer before Ansible ends the process: a line being handed to
    the controller is finished first (its queue lock is shared with ansible-playbook), no line comes after."""
    import threading
    import time as _time
    from ansible_collections.meshops.istio.plugins.action import rollout_restart as action
    printed, in_flight, release = [], threading.Event(), threading.Event()

    def slow_display(line):
        in_flight.set()
        release.wait(5)
        printed.append(line)
    monkeypatch.setattr(action.display, 'display', slow_display)
    source = action.FileSource(str(tmp_path))
    printer = action.ProgressPrinter(source, ProgressFollower('r1', interval=3600))
    write_progress_file(source.path, entry(restarted=1))
    poller = threading.Thread(target=printer.poll)
    poller.start()
    assert in_flight.wait(5)
    threading.Timer(0.3, release.set).start()
    started = _time.monotonic()
    printer.halt()
    assert _time.monotonic() - started >= 0.2  # it waited for the line in flight
    poller.join(5)
    assert len(printed) == 1 and printer.stop.is_set()
    write_progress_file(source.path, entry(restarted=2, failed=1, failures=[{'workload': 'a/Deployment/b',
                                                                             'reason': 'x'}]))
    printer.poll()
    assert len(printed) == 1
    source.close()


def test_signals_halt_the_printer_before_the_workers_own_handler_runs(monkeypatch, tmp_path):
    import signal
    from ansible_collections.meshops.istio.plugins.action import rollout_restart as action
    calls = []

    class Printer:
        def halt(self):
            calls.append('halt')

    def workers_term(signum, frame):
        calls.append(('term', signum))
    original = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, workers_term)
    try:
        previous = action.halt_printer_on_signals(Printer())
        assert previous.get(signal.SIGTERM) is workers_term
        os.kill(os.getpid(), signal.SIGTERM)
        assert calls == ['halt', ('term', signal.SIGTERM)]
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        assert signal.getsignal(signal.SIGTERM) is workers_term
    finally:
        signal.signal(signal.SIGTERM, original)
