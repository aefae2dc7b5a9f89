# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The upgrade's history and its report: what an operator hands a change board, and where an upgrade stands.

Three sources, all on the cluster:

* the upgrade record (upgrade_state.py): from/to revision, phases and waves done;
* the journal, kept in the progress ConfigMap beside the record (never in the record: the record and its lease
  have their own writer): when each phase started and ended and who ran it (``journal.<phase>``), the state of
  the mesh before the upgrade (``baseline``), and each rollout's live progress (progress.py, one key per wave);
* the cluster as it is now (mesh.py's MeshState).

``build_report`` puts them together as plain data (the JSON report; the HTML report and the fleet page only
render it), ``chart`` lays out the before/after chart of proxy versions, ``next_phase`` says what comes next.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from ansible_collections.meshops.istio.plugins.module_utils import mesh, upgrade_state
from ansible_collections.meshops.istio.plugins.module_utils.errors import AlreadyExists, InvalidInput, NotFound
from ansible_collections.meshops.istio.plugins.module_utils.progress import MANAGED_LABELS, progress_lines, utc_now

BASELINE_KEY = 'baseline'
JOURNAL_PREFIX = 'journal.'
EVENTS = ('started', 'done', 'failed')
NO_SIDECAR = 'no sidecar'
REPORT_VERSION = 1
MAX_MESSAGE = 2000


# ------------------------------------------------------------------------------- what the cluster holds

def data_plane(state):
    """{namespace: {proxy version (or 'no sidecar'): pods}} of the running pods of every workload."""
    out = {}
    for workload in state.workloads:
        if workload.labels.get('app') == 'istiod':
            continue  # the control plane itself, shown as revisions
        counts = out.setdefault(workload.namespace, {})
        for pod in workload.pods:
            key = pod.version or (pod.revision and 'unknown') or NO_SIDECAR
            counts[key] = counts.get(key, 0) + 1
    return dict((ns, counts) for ns, counts in out.items() if counts)


def control_plane(state, gateways=()):
    """Revisions, tags, the webhooks that decide injection and validation, and the gateways' proxies."""
    webhooks = []
    for revision, name in sorted(state.injectors.items()):
        webhooks.append({'kind': 'MutatingWebhookConfiguration', 'name': name, 'revision': revision,
                         'role': 'injector of revision %s' % revision})
    for tag in sorted(state.tags.values(), key=lambda t: t.name):
        webhooks.append({'kind': 'MutatingWebhookConfiguration', 'name': tag.webhook, 'revision': tag.revision,
                         'role': 'tag %s' % tag.name})
    if state.validator is not None:
        webhooks.append({'kind': 'ValidatingWebhookConfiguration', 'name': mesh.DEFAULT_VALIDATOR,
                         'revision': mesh.validator_revision(state.validator), 'role': 'default validator'})
    for revision, name in sorted(state.revision_validators.items()):
        webhooks.append({'kind': 'ValidatingWebhookConfiguration', 'name': name, 'revision': revision,
                         'role': 'validator of revision %s' % revision})
    by_key = dict(((w.namespace, w.name), w) for w in state.workloads)
    gateway_rows = []
    for gateway in gateways or ():
        workload = by_key.get((gateway.get('namespace'), gateway.get('name')))
        gateway_rows.append({
            'namespace': gateway.get('namespace'), 'name': gateway.get('name'),
            'kind': workload.kind if workload else gateway.get('kind') or 'Deployment',
            'found': workload is not None,
            'versions': workload.versions if workload else [],
            'revisions': workload.revisions if workload else [],
        })
    return {
        'revisions': [{'name': r.name, 'version': r.version, 'ready': r.ready, 'deployment': r.deployment}
                      for r in sorted(state.revisions.values(), key=lambda r: r.name)],
        'tags': dict((t.name, t.revision) for t in state.tags.values()),
        'webhooks': webhooks,
        'gateways': gateway_rows,
    }


def baseline(state, record, gateways=(), now=None, by=None):
    """The mesh as it is before the upgrade changes anything: kept once per target revision."""
    return {'to_revision': record.get('to_revision'), 'taken': now or utc_now(), 'by': by,
            'data_plane': data_plane(state), 'control_plane': control_plane(state, gateways)}


# ------------------------------------------------------------------------------------------- journal

def read_journal(client, name, namespace):
    """(baseline or None, {phase: journal entry}, {label: progress entry}) from the progress ConfigMap."""
    current = client.get_or_none('ConfigMap', name, namespace)
    base, journal, progress = None, {}, {}
    for key, value in ((current or {}).get('data') or {}).items():
        try:
            entry = json.loads(value)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if key == BASELINE_KEY:
            base = entry
        elif key.startswith(JOURNAL_PREFIX):
            journal[key[len(JOURNAL_PREFIX):]] = entry
        else:
            progress[key] = entry
    return base, journal, progress


def journal_update(journal, phase, event, to_revision, by=None, message=None, now=None, started=None):
    """The phase's journal entry after ``event``; None when it would not change (a re-run's 'done').

    A phase started again (a re-run, another job) starts a new entry; the earlier one's end is kept as
    ``previous``, so the report can say the phase ran more than once."""
    if event not in EVENTS:
        raise InvalidInput('event must be one of %s, not %r' % (', '.join(EVENTS), event))
    now = now or utc_now()
    current = journal.get(phase) if (journal.get(phase) or {}).get('to_revision') == to_revision else None
    if event == 'started':
        entry = {'phase': phase, 'to_revision': to_revision, 'started': now, 'ended': None, 'state': 'started',
                 'by': by, 'runs': (current or {}).get('runs', 0) + 1}
        if current and current.get('ended'):
            entry['previous'] = {'started': current.get('started'), 'ended': current['ended'],
                                 'state': current.get('state')}
        return entry
    if current is None:
        # journaled at its end only (precheck: nothing is written before its checks passed)
        current = {'phase': phase, 'to_revision': to_revision, 'started': started, 'by': by, 'runs': 1}
    if current.get('state') == event and current.get('ended'):
        return None
    entry = dict(current, ended=now, state=event)
    if message:
        entry['message'] = message[:MAX_MESSAGE]
    return entry


def write_journal(client, name, namespace, changes, check_mode=False):
    """Merge-patch ``changes`` ({key: JSON-able}) into the progress ConfigMap (created when missing)."""
    if check_mode or not changes:
        return
    data = dict((key, json.dumps(value, sort_keys=True, separators=(',', ':'))) for key, value in changes.items())
    try:
        client.patch('ConfigMap', name, {'data': data}, namespace=namespace)
    except NotFound:
        try:
            client.create('ConfigMap', {'apiVersion': 'v1', 'kind': 'ConfigMap',
                                        'metadata': {'name': name, 'namespace': namespace,
                                                     'labels': dict(MANAGED_LABELS)},
                                        'data': data}, namespace=namespace)
        except AlreadyExists:
            client.patch('ConfigMap', name, {'data': data}, namespace=namespace)


# ------------------------------------------------------------------------------------------- phases

def phase_order(waves_count):
    return ['precheck', 'install', 'tag', 'gateways'] + ['wave%d' % i for i in range(1, waves_count + 1)] + \
        ['verify', 'cleanup']


def wave_name(waves, phase):
    """The record's wave name of phase ``wave<N>`` (element N of istio_canary_waves)."""
    if phase.startswith('wave') and phase[4:].isdigit():
        index = int(phase[4:])
        if 0 < index <= len(waves or []):
            return (waves[index - 1] or {}).get('name') or phase
    return None


def phases_done(record, waves):
    """Canonical phases the record holds as done (a wave: its record entry is done)."""
    done = []
    recorded = record.get('phases') or {}
    for phase in phase_order(len(waves or [])):
        name = wave_name(waves, phase)
        if name is not None:
            if ((record.get('waves') or {}).get(name) or {}).get('done'):
                done.append(phase)
        elif phase in recorded:
            done.append(phase)
    return done


def next_phase(record, waves):
    """The phase the upgrade goes on with (None once cleaned up); after a rollback: precheck again."""
    if upgrade_state.rollback_under_way(record):
        return 'rollback'  # started and not finished: nothing else may run before it is
    if upgrade_state.finished(record):
        return None if 'cleanup' in (record.get('phases') or {}) else 'precheck'
    done = set(phases_done(record, waves))
    for phase in phase_order(len(waves or [])):
        if phase not in done:
            return phase
    return None


def phase_reached(record, waves):
    if not record.get('to_revision'):
        return 'not started'
    if 'rollback' in (record.get('phases') or {}) and upgrade_state.finished(record):
        return 'rolled back'
    done = phases_done(record, waves)
    return done[-1] if done else 'not started'


def timeline(record, journal, progress, waves):
    """One row per phase of this upgrade (and rollback), in the procedure's order, with start, end, state,
    who ran it and, for rollouts, done / total."""
    to_revision = record.get('to_revision')
    rows = []
    recorded = record.get('phases') or {}
    phases = phase_order(len(waves or []))
    if 'rollback' in recorded or 'rollback' in journal:
        phases.append('rollback')
    for phase in phases:
        entry = journal.get(phase) if (journal.get(phase) or {}).get('to_revision') == to_revision else None
        name = wave_name(waves, phase)
        wave = (record.get('waves') or {}).get(name) if name else None
        rollout = _rollout_of(progress, phase)
        row = {'phase': phase, 'wave': name, 'started': None, 'ended': None, 'state': 'not run', 'by': None,
               'runs': 0, 'message': None, 'rollout': rollout}
        if entry:
            row.update(started=entry.get('started'), ended=entry.get('ended'), state=entry.get('state'),
                       by=entry.get('by'), runs=entry.get('runs') or 1, message=entry.get('message'))
        if wave:
            row['started'] = row['started'] or wave.get('started')
            if wave.get('done'):
                row['ended'], row['state'] = row['ended'] or wave['done'], 'done'
        elif phase in recorded:
            row['ended'] = row['ended'] or recorded[phase]
            if row['state'] in ('not run', 'started'):
                row['state'] = 'done'
        if row['state'] in ('not run', 'started') and rollout:
            # no end journaled: the rollout's own state says how far it got (running, failed)
            row['state'] = {'failed': 'failed', 'running': 'running'}.get(rollout.get('state'), row['state'])
            row['started'] = row['started'] or rollout.get('started')
        if row['state'] != 'not run' or rollout:
            rows.append(row)
    return rows


def _rollout_of(progress, phase):
    """Counts of the phase's last rollout(s) (keys ``<phase>`` or ``<phase>.<n>``), summed."""
    entries = [e for key, e in progress.items() if key == phase or key.startswith(phase + '.')]
    if not entries:
        return None
    out = {'total': 0, 'restarted': 0, 'failed': 0, 'current': 0, 'skipped': 0, 'seconds': 0.0}
    for entry in entries:
        for key in out:
            out[key] += entry.get(key) or 0
    states = set(e.get('state') for e in entries)
    out['state'] = 'failed' if 'failed' in states else ('running' if 'running' in states else 'done')
    out['started'] = min(e.get('started') or '' for e in entries) or None
    out['ended'] = max(e.get('ended') or '' for e in entries) or None
    out['by'] = entries[0].get('by')
    out['seconds'] = round(out['seconds'], 1)
    return out


def failures(progress, journal, to_revision):
    """Every failed workload with its reason, and every phase that failed with its message."""
    out = []
    for label, entry in sorted(progress.items()):
        for failure in entry.get('failures') or []:
            out.append({'phase': label, 'workload': failure.get('workload'), 'reason': failure.get('reason'),
                        'at': entry.get('ended') or entry.get('updated')})
    for phase, entry in sorted(journal.items()):
        if entry.get('to_revision') == to_revision and entry.get('state') == 'failed':
            out.append({'phase': phase, 'workload': None, 'reason': entry.get('message') or 'the phase failed',
                        'at': entry.get('ended')})
    return out


def on_old_revision(state, old_revision):
    """Workloads with a pod still injected by the old revision."""
    if not old_revision:
        return []
    rows = []
    for workload in state.workloads:
        old = [p for p in workload.pods if p.revision == old_revision]
        if old:
            rows.append({'namespace': workload.namespace, 'kind': workload.kind, 'name': workload.name,
                         'pods_on_old': len(old), 'pods': len(workload.pods), 'versions': workload.versions})
    return rows


def version_mix(plane):
    """{version: pods} over the whole data plane."""
    total = {}
    for counts in plane.values():
        for version, pods in counts.items():
            total[version] = total.get(version, 0) + pods
    return dict(sorted(total.items()))


def build_report(state, record, base, journal, progress, cluster, waves=(), gateways=(), now=None):
    """The report of one cluster, as plain data (the JSON report; the HTML renders it)."""
    old = record.get('from_revision')
    after_plane = data_plane(state)
    stale = on_old_revision(state, old)
    failed = failures(progress, journal, record.get('to_revision'))
    reached = phase_reached(record, waves)
    versions = version_mix(after_plane)
    base = base if base and base.get('to_revision') == record.get('to_revision') else None
    return {
        'report_version': REPORT_VERSION,
        'cluster': cluster,
        'generated': now or utc_now(),
        'istio_namespace': state.istio_namespace,
        'upgrade': {
            'tag': record.get('tag'), 'from_revision': old, 'from_version': record.get('from_version'),
            'to_revision': record.get('to_revision'), 'to_version': record.get('to_version'),
            'in_progress': upgrade_state.in_progress(record), 'finished': upgrade_state.finished(record),
            'phase_reached': reached, 'phases_done': phases_done(record, waves),
            'next_phase': next_phase(record, waves) if record.get('to_revision') else 'precheck',
        },
        'timeline': timeline(record, journal, progress, waves),
        'data_plane': {'before': base.get('data_plane') if base else None, 'after': after_plane,
                       'baseline_taken': base.get('taken') if base else None},
        'control_plane': {'before': base.get('control_plane') if base else None,
                          'after': control_plane(state, gateways)},
        'failures': failed,
        'on_old_revision': stale,
        'live': [progress_lines(entry, heartbeat=True)[-1] for _label, entry in sorted(progress.items())
                 if entry.get('state') == 'running'],
        'summary': {
            'cluster': cluster,
            'version': ', '.join('%s (%d pods)' % (v, n) for v, n in versions.items()) or 'no pods',
            'versions': versions,
            'to_version': record.get('to_version'),
            'phase_reached': reached,
            'stale_workloads': len(stale),
            'failures': len(failed),
        },
    }


# ------------------------------------------------------------------------------------------- chart

PALETTE = ('#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22')
NO_SIDECAR_COLOUR = '#b0b0b0'


def _version_key(version):
    parts = []
    for part in str(version).replace('-', '.').split('.'):
        parts.append((0, int(part), '') if part.isdigit() else (1, 0, part))
    return parts


def chart(report, width=720, bar_height=14, label_width=180):
    """The before/after chart of proxy versions per namespace: SVG geometry for the template to draw.

    One group per namespace: a bar for before (from the baseline) and one for after, each split in segments
    by proxy version, proportional to pods; colours per version, shared by both bars and the legend."""
    before = (report.get('data_plane') or {}).get('before') or {}
    after = (report.get('data_plane') or {}).get('after') or {}
    namespaces = sorted(set(before) | set(after))
    versions = set()
    for plane in (before, after):
        for counts in plane.values():
            versions.update(counts)
    ordered = sorted((v for v in versions if v != NO_SIDECAR), key=_version_key)
    if NO_SIDECAR in versions:
        ordered.append(NO_SIDECAR)
    colours = {}
    for index, version in enumerate(v for v in ordered if v != NO_SIDECAR):
        colours[version] = PALETTE[index % len(PALETTE)]
    colours[NO_SIDECAR] = NO_SIDECAR_COLOUR
    most = max([sum(c.values()) for c in list(before.values()) + list(after.values())] or [1]) or 1
    plot = width - label_width - 60
    rows, y = [], 30
    for ns in namespaces:
        bars = []
        for which, plane in (('before', before), ('after', after)):
            counts = plane.get(ns) or {}
            x = float(label_width)
            segments = []
            for version in ordered:
                pods = counts.get(version, 0)
                if not pods:
                    continue
                w = plot * pods / most
                segments.append({'x': round(x, 1), 'width': round(max(w, 1.0), 1), 'colour': colours[version],
                                 'version': version, 'pods': pods})
                x += w
            bars.append({'which': which, 'y': y, 'segments': segments, 'pods': sum(counts.values()),
                         'end': round(x + 4, 1), 'missing': not counts and not (which == 'before' and not before)})
            y += bar_height + 2
        rows.append({'namespace': ns, 'label_y': y - bar_height - 4, 'bars': bars})
        y += 8
    legend = [{'version': v, 'colour': colours[v], 'x': 10 + i * 120} for i, v in enumerate(ordered)]
    return {'width': width, 'height': y + 10, 'bar_height': bar_height, 'label_width': label_width,
            'rows': rows, 'legend': legend, 'has_before': bool(before)}


def fleet_rows(reports, hosts):
    """One row per inventory host for the fleet page: its report's summary, or that there is none yet."""
    by_cluster = dict((r.get('cluster'), r) for r in reports if isinstance(r, dict))
    rows = []
    for host in hosts:
        report = by_cluster.get(host)
        if report is None:
            rows.append({'cluster': host, 'report': False})
            continue
        summary = dict(report.get('summary') or {})
        summary.update({'cluster': host, 'report': True, 'generated': report.get('generated'),
                        'upgrade': report.get('upgrade') or {}})
        rows.append(summary)
    return rows
