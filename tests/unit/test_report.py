"""The upgrade report (module_utils/report.py): journal, timeline, next phase, before/after, chart, fleet rows."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import upgrade_state
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput
from ansible_collections.meshops.istio.plugins.module_utils.mesh import MeshState
from ansible_collections.meshops.istio.plugins.module_utils.report import (
    NO_SIDECAR,
    baseline,
    build_report,
    chart,
    data_plane,
    fleet_rows,
    journal_update,
    next_phase,
    phase_reached,
    timeline,
)

import fake_cluster as fc

WAVES = [{'name': 'wave1', 'namespaces': ['bar']}, {'name': 'canary', 'namespaces': ['foo', 'baz']}]
GATEWAYS = [{'namespace': 'istio-ingress', 'name': 'istio-ingressgateway'}]


def state_of(objects):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj['kind'], []).append(obj)
    return MeshState.from_objects(
        deployments=by_kind.get('Deployment', []), mutating_webhooks=by_kind.get('MutatingWebhookConfiguration', []),
        validating_webhooks=by_kind.get('ValidatingWebhookConfiguration', []),
        namespaces=by_kind.get('Namespace', []), workloads=by_kind.get('Deployment', []),
        pods=by_kind.get('Pod', []), services=by_kind.get('Service', []))


def upgraded_halfway():
    """1-15-4 installed and behind the tag; bar and the gateway moved, foo and baz still on 1-14-6."""
    objs = [o for o in fc.blog() if not (o['kind'] == 'Pod' and o['metadata']['namespace'] in ('bar', 'istio-ingress'))]
    objs = [o for o in objs if not (o['kind'] == 'MutatingWebhookConfiguration' and o['metadata']['name'] ==
                                    'istio-revision-tag-default')]
    objs += [fc.istiod('1-15-4', '1.15.4'), fc.service('1-15-4'), fc.injector('1-15-4'), fc.tag('default', '1-15-4')]
    objs += [fc.pod('bar', 'bar', i, '1-15-4', '1.15.4', digest='77f') for i in range(2)]
    objs += [fc.pod('istio-ingress', 'istio-ingressgateway', i, '1-15-4', '1.15.4', digest='77f') for i in range(2)]
    return state_of(objs)


def record_after(*steps):
    record = upgrade_state.empty_record()
    record = upgrade_state.merge(record, fields={'tag': 'default', 'from_revision': '1-14-6', 'from_version': '1.14.6',
                                                 'to_revision': '1-15-4', 'to_version': '1.15.4'},
                                 now='2026-11-30T00:00:00Z')
    for step in steps:
        record = upgrade_state.merge(record, now='2026-11-30T00:0%d:00Z' % len(step), **step)
    return record


def test_journal_opens_a_run_and_closes_it_once():
    started = journal_update({}, 'wave1', 'started', '1-15-4', by={'user': 'ops'}, now='T1')
    assert started == {'phase': 'wave1', 'to_revision': '1-15-4', 'started': 'T1', 'ended': None, 'state': 'started',
                       'by': {'user': 'ops'}, 'runs': 1}
    done = journal_update({'wave1': started}, 'wave1', 'done', '1-15-4', now='T2')
    assert (done['started'], done['ended'], done['state']) == ('T1', 'T2', 'done')
    assert journal_update({'wave1': done}, 'wave1', 'done', '1-15-4', now='T3') is None  # nothing new
    again = journal_update({'wave1': done}, 'wave1', 'started', '1-15-4', now='T4')
    assert again['runs'] == 2 and again['previous'] == {'started': 'T1', 'ended': 'T2', 'state': 'done'}
    failed = journal_update({'wave1': again}, 'wave1', 'failed', '1-15-4', message='x' * 5000, now='T5')
    assert failed['state'] == 'failed' and len(failed['message']) == 2000
    # an entry of another target is not continued
    other = journal_update({'wave1': done}, 'wave1', 'started', '1-16-0', now='T6')
    assert other['runs'] == 1 and 'previous' not in other
    with pytest.raises(InvalidInput):
        journal_update({}, 'wave1', 'finished', '1-15-4')


def test_next_phase_and_phase_reached_follow_the_record():
    assert next_phase(upgrade_state.empty_record(), WAVES) == 'precheck'
    record = record_after({'phase': 'precheck'}, {'phase': 'install'}, {'phase': 'tag'}, {'phase': 'gateways'},
                          {'wave': {'name': 'wave1', 'namespaces': ['bar'], 'status': 'done'}})
    assert next_phase(record, WAVES) == 'wave2'
    assert phase_reached(record, WAVES) == 'wave1'
    # the second wave is called "canary" in the record: a started one is not done
    record = upgrade_state.merge(record, wave={'name': 'canary', 'namespaces': ['foo'], 'status': 'started'})
    assert next_phase(record, WAVES) == 'wave2'
    record = upgrade_state.merge(record, wave={'name': 'canary', 'namespaces': ['foo', 'baz'], 'status': 'done'},
                                 phase='verify')
    assert next_phase(record, WAVES) == 'cleanup'
    cleaned = upgrade_state.merge(record, phase='cleanup')
    assert next_phase(cleaned, WAVES) is None and phase_reached(cleaned, WAVES) == 'cleanup'
    rolled = upgrade_state.merge(record, phase='rollback', forget_phases=['tag', 'gateways', 'verify'],
                                 forget_waves=True)
    assert phase_reached(rolled, WAVES) == 'rolled back' and next_phase(rolled, WAVES) == 'precheck'


def test_timeline_joins_journal_record_and_rollout_progress():
    record = record_after({'phase': 'precheck'}, {'wave': {'name': 'wave1', 'namespaces': ['bar'], 'status': 'started'}})
    journal = {
        'precheck': {'phase': 'precheck', 'to_revision': '1-15-4', 'started': 'A', 'ended': 'B', 'state': 'done',
                     'by': {'job': '42'}, 'runs': 1},
        'install': {'phase': 'install', 'to_revision': '1-15-0', 'started': 'old', 'state': 'done'},  # other target
        'wave1': {'phase': 'wave1', 'to_revision': '1-15-4', 'started': 'C', 'ended': None, 'state': 'started',
                  'runs': 1},
    }
    progress = {'wave1': {'label': 'wave1', 'state': 'failed', 'total': 10, 'restarted': 3, 'failed': 1,
                          'current': 0, 'skipped': 6, 'seconds': 12.5, 'started': 'C', 'ended': 'D',
                          'failures': [{'workload': 'bar/Deployment/x', 'reason': 'CrashLoopBackOff'}]}}
    rows = dict((r['phase'], r) for r in timeline(record, journal, progress, WAVES))
    assert set(rows) == {'precheck', 'wave1'}
    assert (rows['precheck']['state'], rows['precheck']['started'], rows['precheck']['by']) == ('done', 'A', {'job': '42'})
    assert rows['wave1']['state'] == 'failed' and rows['wave1']['rollout']['restarted'] == 3
    assert rows['wave1']['wave'] == 'wave1'


def test_report_of_a_cluster_halfway():
    state = upgraded_halfway()
    before_state = state_of(fc.blog())
    record = record_after({'phase': 'precheck'}, {'phase': 'install'}, {'phase': 'tag'}, {'phase': 'gateways'},
                          {'wave': {'name': 'wave1', 'namespaces': ['bar'], 'status': 'done'}})
    base = baseline(before_state, record, GATEWAYS, now='T0')
    report = build_report(state, record, base, {}, {}, 'prod-eu', waves=WAVES, gateways=GATEWAYS, now='T9')
    assert report['data_plane']['before'] == {'foo': {'1.14.6': 2}, 'bar': {'1.14.6': 2}, 'baz': {'1.14.6': 2},
                                              'istio-ingress': {'1.14.6': 2}}
    assert report['data_plane']['after'] == {'foo': {'1.14.6': 2}, 'bar': {'1.15.4': 2}, 'baz': {'1.14.6': 2},
                                             'istio-ingress': {'1.15.4': 2}}
    cp_before, cp_after = report['control_plane']['before'], report['control_plane']['after']
    assert [r['name'] for r in cp_before['revisions']] == ['1-14-6']
    assert [r['name'] for r in cp_after['revisions']] == ['1-14-6', '1-15-4']
    assert cp_before['tags'] == {'default': '1-14-6'} and cp_after['tags'] == {'default': '1-15-4'}
    assert cp_after['gateways'][0]['versions'] == ['1.15.4'] and cp_before['gateways'][0]['versions'] == ['1.14.6']
    hooks = dict((w['name'], w['revision']) for w in cp_after['webhooks'])
    assert hooks['istio-revision-tag-default'] == '1-15-4' and hooks['istio-sidecar-injector-1-14-6'] == '1-14-6'
    assert sorted('%s/%s' % (w['namespace'], w['name']) for w in report['on_old_revision']) == ['baz/baz', 'foo/foo']
    assert report['upgrade']['next_phase'] == 'wave2' and report['upgrade']['phase_reached'] == 'wave1'
    assert report['summary'] == {'cluster': 'prod-eu', 'version': '1.14.6 (4 pods), 1.15.4 (4 pods)',
                                 'versions': {'1.14.6': 4, '1.15.4': 4}, 'to_version': '1.15.4',
                                 'phase_reached': 'wave1', 'stale_workloads': 2, 'failures': 0}
    # a baseline of another target is not this upgrade's "before"
    other = dict(base, to_revision='1-16-0')
    assert build_report(state, record, other, {}, {}, 'x')['data_plane']['before'] is None


def test_istiod_is_not_part_of_the_data_plane_and_uninjected_pods_are_counted():
    objs = fc.blog([fc.namespace('plain'), fc.deployment('plain', 'web'), fc.pod('plain', 'web', 0)])
    plane = data_plane(state_of(objs))
    assert 'istio-system' not in plane
    assert plane['plain'] == {NO_SIDECAR: 1}


def test_chart_draws_before_and_after_bars_in_proportion():
    report = {'data_plane': {'before': {'bar': {'1.14.6': 4}, 'foo': {'1.14.6': 2}},
                             'after': {'bar': {'1.15.4': 2, '1.14.6': 2}, 'foo': {'1.14.6': 1, NO_SIDECAR: 1}}}}
    laid = chart(report, width=600, label_width=100)
    assert [item['version'] for item in laid['legend']] == ['1.14.6', '1.15.4', NO_SIDECAR]
    row = dict((r['namespace'], r) for r in laid['rows'])['bar']
    before, after = row['bars']
    assert [s['version'] for s in after['segments']] == ['1.14.6', '1.15.4']
    assert before['segments'][0]['width'] == pytest.approx(sum(s['width'] for s in after['segments']))
    colours = dict((i['version'], i['colour']) for i in laid['legend'])
    assert after['segments'][1]['colour'] == colours['1.15.4']
    assert all(s['x'] >= 100 for r in laid['rows'] for b in r['bars'] for s in b['segments'])
    assert laid['has_before'] and laid['height'] > 0


def test_fleet_rows_one_per_host_in_inventory_order():
    reports = [{'cluster': 'b', 'generated': 'T', 'summary': {'phase_reached': 'wave1', 'stale_workloads': 2,
                                                              'failures': 0, 'version': '1.15.4 (2 pods)'},
                'upgrade': {'to_version': '1.15.4'}}]
    rows = fleet_rows(reports, ['a', 'b'])
    assert rows[0] == {'cluster': 'a', 'report': False}
    assert (rows[1]['cluster'], rows[1]['report'], rows[1]['phase_reached'], rows[1]['stale_workloads']) == \
        ('b', True, 'wave1', 2)


# ---------------------------------------------------------------------------- the modules, on the fake cluster

from ansible_collections.meshops.istio.plugins.modules import istio_upgrade_journal as journal_module  # noqa: E402
from ansible_collections.meshops.istio.plugins.modules import istio_upgrade_report as report_module  # noqa: E402

from module_stub import stub_for  # noqa: E402

JournalModule = stub_for({'istio_namespace': 'istio-system', 'reason': None, 'started': None, 'baseline': False, 'gateways': [],
                          'configmap': 'meshops-istio-upgrade-progress', 'job': None})
ReportModule = stub_for({'istio_namespace': 'istio-system', 'record': 'meshops-istio-upgrade',
                         'configmap': 'meshops-istio-upgrade-progress', 'waves': [], 'gateways': []})


def test_journal_module_check_mode_writes_nothing_and_a_closed_phase_is_not_rewritten():
    cluster = fc.FakeCluster(fc.blog())
    rvs = cluster.resource_versions()
    params = {'phase': 'precheck', 'event': 'started', 'to_revision': '1-15-4', 'baseline': True,
              'gateways': GATEWAYS}
    out = journal_module.run(JournalModule(params, client=cluster, check_mode=True))
    assert out['changed'] and out['baseline_kept'] and out['entry']['state'] == 'started'
    assert cluster.writes == [] and cluster.resource_versions() == rvs
    journal_module.run(JournalModule(params, client=cluster))
    cm = cluster.find('ConfigMap', 'meshops-istio-upgrade-progress', 'istio-system')
    assert set(cm['data']) == {'journal.precheck', 'baseline'}
    # the baseline is kept once per target; closing the phase twice writes once
    again = journal_module.run(JournalModule(dict(params, phase='install'), client=cluster))
    assert again['baseline_kept'] is False
    done = dict(params, event='done', baseline=False)
    assert journal_module.run(JournalModule(done, client=cluster))['changed'] is True
    writes = len(cluster.writes)
    assert journal_module.run(JournalModule(done, client=cluster))['changed'] is False
    assert len(cluster.writes) == writes


def test_report_module_reads_only():
    cluster = fc.FakeCluster(fc.blog())
    journal_module.run(JournalModule({'phase': 'precheck', 'event': 'started', 'to_revision': '1-15-4',
                                      'baseline': True}, client=cluster))
    rvs = cluster.resource_versions()
    out = report_module.run(ReportModule({'cluster': 'c1', 'gateways': GATEWAYS}, client=cluster))
    assert out['changed'] is False and cluster.resource_versions() == rvs
    report = out['report']
    assert report['data_plane']['before'] is None  # the record names no target yet: no baseline of its upgrade
    assert report['upgrade']['phase_reached'] == 'not started' and report['upgrade']['next_phase'] == 'precheck'
    assert report['summary']['versions'] == {'1.14.6': 8}
