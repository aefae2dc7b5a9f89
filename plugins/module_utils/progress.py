# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Live progress of a rollout (a wave, the gateways), kept on the cluster while it runs.

An Ansible module returns only when it is done, so a wave of 1,000 workloads would show nothing for minutes.
While ``rollout_restart`` runs with ``progress`` set, ``ProgressPublisher`` writes the rollout's state into its
own key of a ConfigMap beside the upgrade record (``meshops-istio-upgrade-progress`` by default)::

    data:
      wave1: '{"label": "wave1", "state": "running", "total": 1000, "restarted": 412, "failed": 0,
               "rolling": ["ns-0042/Deployment/app-1", ...], "failures": [], "run_id": "...", ...}'

The ConfigMap is not the upgrade record: the record (and its lease) has one writer per phase, the progress
another, so they never race for the same object.  The report and the status phase read the key afterwards.
The collection's action plugin for rollout_restart prints ``progress_lines`` while the module runs (in
ansible-playbook's output and, through ansible-runner's display hook, in AWX's job output): it hands the
module a file on the controller (``progress.local_file``), which the publisher rewrites with the same entry
every second, and reads that file -- the controller's worker needs no Kubernetes client for it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import getpass
import json
import os
import re
import socket
import threading
import time

from ansible_collections.meshops.istio.plugins.module_utils.errors import AlreadyExists, InvalidInput, MeshopsError, NotFound

PROGRESS_CONFIGMAP = 'meshops-istio-upgrade-progress'
# The ConfigMap is written at most this often (for the report, the status and watchers; a failure at most
# URGENT_PERIOD after the write before); the action plugin's local file at most every LOCAL_PERIOD (a failure
# at once).  Never per pod: one snapshot of the whole rollout per write.
WRITE_PERIOD = 5.0
URGENT_PERIOD = 0.5
LOCAL_PERIOD = 1.0
# What one line (and one entry) names at most: the key stays small on a wave of thousands.
ROLLING_SHOWN = 5
ROLLING_KEPT = 20
FAILURES_KEPT = 100
MANAGED_LABELS = {
    'app.kubernetes.io/managed-by': 'meshops.istio',
    'app.kubernetes.io/component': 'upgrade-progress',
}


# A ConfigMap key: letters, digits, '-', '_' and '.'.
LABEL_RE = re.compile(r'^[-._A-Za-z0-9]{1,63}$')


def check_label(label):
    if not isinstance(label, str) or not LABEL_RE.match(label) or label in ('.', '..'):
        raise InvalidInput('progress label %r cannot be a ConfigMap key: use letters, digits, -, _ or . '
                           '(at most 63), for example wave1' % (label,))
    return label


def utc_now():
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())


def actor(job=None, environ=None):
    """Who runs this: the controller's user and host, the AWX job when there is one (its extra vars
    ``awx_job_id``/``awx_job_template_name``/``awx_user_name`` given as ``job``, else AWX's env JOB_ID)."""
    environ = os.environ if environ is None else environ
    job = dict((k, v) for k, v in (job or {}).items() if v not in (None, ''))
    try:
        user = getpass.getuser()
    except Exception:  # pylint: disable=broad-except
        user = None
    who = {'user': user, 'host': socket.gethostname(), 'pid': os.getpid()}
    job_id = job.get('id') or environ.get('JOB_ID')
    if job_id:
        who['job'] = str(job_id)
    for key in ('template', 'user'):
        if job.get(key):
            who['job_' + key] = str(job[key])
    return who


def describe_actor(who):
    """``awx job 42 (upgrade-wave1, by admin)`` or ``root@ctl-1``."""
    who = who or {}
    if who.get('job'):
        extra = ', '.join(x for x in (who.get('job_template'), who.get('job_user') and 'by %s' % who['job_user']) if x)
        return 'awx job %s%s' % (who['job'], ' (%s)' % extra if extra else '')
    if who.get('user') or who.get('host'):
        return '%s@%s' % (who.get('user') or '?', who.get('host') or '?')
    return None


def snapshot(workloads, active_keys, total_keys):
    """The entry's counts from the runner's workloads (WorkloadState objects).

    ``total_keys``: the workloads this run restarts or waits for; ``active_keys``: those rolling now."""
    counts = {'restarted': 0, 'failed': 0, 'skipped': 0, 'current': 0}

    def ref(w):
        return '%s/%s/%s' % (w.namespace, w.kind, w.name)

    rolling, failures = [], []
    for w in workloads:
        if w.key in total_keys:
            if w.finished and w.action in ('restarted', 'failed'):
                counts[w.action] += 1
                if w.action == 'failed':
                    failures.append({'workload': ref(w), 'reason': w.reason})
            elif w.action == 'skipped':
                counts['skipped'] += 1
            elif w.key in active_keys:
                rolling.append(ref(w))
        elif w.action == 'current':
            counts['current'] += 1
    out = dict(counts, total=len(total_keys), rolling=rolling[:ROLLING_KEPT], rolling_count=len(rolling),
               failures=failures[:FAILURES_KEPT], failures_count=len(failures))
    return out


def progress_lines(entry, previous=None, host=None, heartbeat=True):
    """What to print for ``entry`` (a progress key's value), given the one printed before.

    Every line starts ``<label>: <done>/<total> restarted, <n> failed``.  A failure not shown before gets
    its own line with its reason; ``heartbeat`` adds the status line (counts and what is rolling)."""
    label = entry.get('label') or 'rollout'
    head = '%s: %d/%d restarted, %d failed' % (
        label, entry.get('restarted') or 0, entry.get('total') or 0, entry.get('failed') or 0)
    suffix = ' (%s)' % host if host else ''
    seen = set(f['workload'] for f in (previous or {}).get('failures') or [])
    lines = ['%s: %s failed: %s%s' % (head, f['workload'], f.get('reason') or 'no reason given', suffix)
             for f in entry.get('failures') or [] if f['workload'] not in seen]
    state = entry.get('state')
    if state in ('done', 'failed'):
        took = ''
        if entry.get('seconds') is not None:
            took = ' in %ss' % entry['seconds']
        tail = []
        if entry.get('current'):
            tail.append('%d already current' % entry['current'])
        if entry.get('skipped'):
            tail.append('%d skipped' % entry['skipped'])
        lines.append('%s, %s%s%s%s' % (head, 'finished' if state == 'done' else 'stopped after a failure', took,
                                       ''.join(', ' + t for t in tail), suffix))
    elif heartbeat:
        count = entry.get('rolling_count') or 0
        rolling = entry.get('rolling') or []
        shown = ', '.join(rolling[:ROLLING_SHOWN])
        more = count - min(len(rolling), ROLLING_SHOWN)
        rolling_text = '%d rolling' % count
        if shown:
            rolling_text += ': %s%s' % (shown, ' (+%d more)' % more if more > 0 else '')
        current = ', %d already current' % entry['current'] if entry.get('current') else ''
        lines.append('%s, %s%s%s' % (head, rolling_text, current, suffix))
    return lines


class ProgressPublisher:
    """Publishes a rollout's progress from a background thread, so the rollout never waits for it.

    Two places receive the same entry (a JSON object):

    * the progress key of the ConfigMap, at most every ``period`` seconds (a failure at most ``urgent_period``
      after the write before): for the report, the status phase and anyone watching the ConfigMap;
    * with ``local_file`` (given by the action plugin when the module runs on the controller), a file the
      plugin reads to print the lines, rewritten at most every ``local_period`` seconds and at once after a
      failure: reading it costs the controller no API client and the cluster no request.

    The runner calls ``due(urgent)`` and, when it says so, ``offer(counts)`` from its loop: the snapshot is
    taken in the runner's thread, where the workloads change; the writes happen in ours.  A write that fails
    (RBAC, API trouble, a file that cannot be written) never fails the rollout: that place is given up with
    one warning."""

    def __init__(self, client, name, namespace, label, run_id=None, by=None, clock=time.monotonic,
                 period=WRITE_PERIOD, urgent_period=URGENT_PERIOD, local_file=None, local_period=LOCAL_PERIOD):
        self.client = client
        self.name = name
        self.namespace = namespace
        self.label = label
        self.clock = clock
        self.period = period
        self.urgent_period = urgent_period
        self.local_file = local_file
        self.local_period = local_period
        self.base = {'label': label, 'run_id': run_id, 'by': by, 'started': utc_now()}
        self.started = clock()
        self.last = None          # the last ConfigMap entry handed over (clock)
        self.last_local = None    # the last file entry handed over (clock)
        self.urgent = False
        self.urgent_local = False
        self.pending = None
        self.pending_local = None
        self.warning = None       # the ConfigMap is given up
        self.local_warning = None  # the file is given up
        self.writes = 0
        self.local_writes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    # -- runner side -------------------------------------------------------------------------------

    def _cm_due(self, now):
        if self.warning:
            return False
        return self.last is None or now - self.last >= (self.urgent_period if self.urgent else self.period)

    def _local_due(self, now):
        if not self.local_file or self.local_warning:
            return False
        return self.last_local is None or self.urgent_local or now - self.last_local >= self.local_period

    def due(self, urgent=False):
        if urgent:
            self.urgent = self.urgent_local = True
        now = self.clock()
        return self._cm_due(now) or self._local_due(now)

    def offer(self, counts, state='running'):
        now = self.clock()
        to_cm, to_local = self._cm_due(now), self._local_due(now)
        if not (to_cm or to_local):
            return
        entry = dict(self.base, state=state, updated=utc_now(), seconds=round(now - self.started, 1), **counts)
        with self._lock:
            if to_cm:
                self.last, self.urgent, self.pending = now, False, entry
            if to_local:
                self.last_local, self.urgent_local, self.pending_local = now, False, entry
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name='meshops-progress')
            self._thread.daemon = True
            self._thread.start()
        self._wake.set()

    def finish(self, counts, state):
        """The last entry (done or failed), written to both places before the module returns."""
        entry = dict(self.base, state=state, updated=utc_now(), ended=utc_now(),
                     seconds=round(self.clock() - self.started, 1), **counts)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            self.pending = self.pending_local = None
        self._write_local(entry)  # first: the action plugin prints its closing line from it
        self._write(entry)

    @property
    def warnings(self):
        return [w for w in (self.warning, self.local_warning) if w]

    # -- writer thread -----------------------------------------------------------------------------

    def _run(self):
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                entry, self.pending = self.pending, None
                local, self.pending_local = self.pending_local, None
            if self._stop.is_set():
                break
            if local is not None:
                self._write_local(local)
            if entry is not None:
                self._write(entry)

    def _write_local(self, entry):
        if not self.local_file or self.local_warning:
            return
        try:
            write_progress_file(self.local_file, entry)
            self.local_writes += 1
        except (OSError, ValueError) as exc:
            self.local_warning = 'live progress lines are not printed: cannot write %s (%s); the rollout goes on' % (
                self.local_file, exc)

    def _write(self, entry):
        if self.warning:
            return
        data = {self.label: json.dumps(entry, sort_keys=True, separators=(',', ':'))}
        try:
            try:
                self.client.patch('ConfigMap', self.name, {'data': data}, namespace=self.namespace)
            except NotFound:
                try:
                    self.client.create('ConfigMap', {
                        'apiVersion': 'v1', 'kind': 'ConfigMap',
                        'metadata': {'name': self.name, 'namespace': self.namespace, 'labels': dict(MANAGED_LABELS)},
                        'data': data}, namespace=self.namespace)
                except AlreadyExists:  # another rollout created it meanwhile
                    self.client.patch('ConfigMap', self.name, {'data': data}, namespace=self.namespace)
            self.writes += 1
        except MeshopsError as exc:
            self.warning = 'live progress is not written to configmap %s/%s (%s); the rollout goes on' % (
                self.namespace, self.name, exc)


def write_progress_file(path, entry):
    """Replace ``path`` with ``entry`` as JSON, atomically: a reader sees the old entry or the new one."""
    tmp = '%s.%d.tmp' % (path, os.getpid())
    with open(tmp, 'w') as handle:
        json.dump(entry, handle, sort_keys=True, separators=(',', ':'))
    os.replace(tmp, path)


def read_progress_file(path):
    """The entry ``write_progress_file`` left at ``path``, or None (not written yet, or unreadable)."""
    try:
        with open(path) as handle:
            entry = json.load(handle)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def read_progress(client, name, namespace):
    """Every progress key of the ConfigMap, parsed ({label: entry}); {} when there is none."""
    current = client.get_or_none('ConfigMap', name, namespace)
    out = {}
    for key, value in ((current or {}).get('data') or {}).items():
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out[key] = entry
    return out


class ProgressFollower:
    """The action plugin's side: reads one rollout's key and decides which lines to print and when.

    ``poll(entry, now)`` returns the lines: new failures at once, the status line every ``interval``
    seconds (and at the first sight of the rollout), the closing line when it is done."""

    def __init__(self, run_id, interval, host=None):
        self.run_id = run_id
        self.interval = interval
        self.host = host
        self.previous = None
        self.last_line = None
        self.closed = False

    def poll(self, entry, now):
        if self.closed or not entry or entry.get('run_id') != self.run_id:
            return []
        heartbeat = self.last_line is None or now - self.last_line >= self.interval
        lines = progress_lines(entry, self.previous, host=self.host, heartbeat=heartbeat)
        if entry.get('state') in ('done', 'failed'):
            self.closed = True
        if heartbeat or self.closed:
            self.last_line = now
        self.previous = entry
        return lines
