"""The rollout engine end to end on an in-memory fake (rollout_fake.FakeApi): plan selection,
restart and wait, concurrency, dropped watches, stuck workloads, resume of an interrupted run."""
import collections
import threading
import time

import pytest

from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    RolloutFailed,
)
from ansible_collections.meshops.istio.plugins.module_utils.rollout import (
    RESTARTED_AT,
    RolloutPlan,
    RolloutRunner,
)
from ansible_collections.meshops.istio.plugins.module_utils.rollout import run_rollout as engine_run_rollout

from rollout_fake import FakeApi


def run_rollout(api, **options):
    """The module's result: a failed workload raises RolloutFailed (the module base turns it into
    fail_json), which carries every workload's outcome."""
    try:
        result = engine_run_rollout(api, **options)
    except RolloutFailed as exc:
        assert exc.result['summary']['failed'] and exc.message.startswith('%d workload' % exc.result['summary']['failed'])
        return dict(exc.to_result(), failed=True)
    assert not result['summary']['failed'] and 'failed' not in result
    return result


@pytest.fixture
def api():
    fake = FakeApi()
    yield fake
    fake.close()


def blog(api, tag_revision='1-15-4'):
    """foo and bar on the old revision; the default tag already moved to the new one."""
    for ns in ('foo', 'bar'):
        api.namespace(ns)
        api.workload('Deployment', ns, ns)
    api.set_tag(tag_revision)


def by_name(result):
    return dict(('%s/%s/%s' % (w['namespace'], w['kind'], w['name']), w) for w in result['workloads'])


def revisions(api, kind, ns, name):
    return sorted(set(p['spec']['containers'][1]['image'] for p in api.pods_of(kind, ns, name)))


def test_restarts_stale_namespace_only_and_verifies_new_pods(api):
    blog(api)
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    assert result['changed'] is True
    w = by_name(result)['bar/Deployment/bar']
    assert w['action'] == 'restarted'
    assert (w['from_version'], w['to_version'], w['revision']) == ('1.14.6', '1.15.4', '1-15-4')
    assert w['from_revision'] == '1-14-6'
    assert w['duration'] is not None and w['reason'] is None
    assert result['summary'] == {'restarted': 1, 'current': 0, 'failed': 0, 'skipped': 0, 'total': 1}
    # what the "cluster" holds: bar's pods on the new proxy, foo untouched
    assert revisions(api, 'Deployment', 'bar', 'bar') == ['docker.io/istio/proxyv2:1.15.4']
    assert revisions(api, 'Deployment', 'foo', 'foo') == ['docker.io/istio/proxyv2:1.14.6']
    assert api.patches == [('Deployment', 'bar', 'bar')]


def test_second_run_is_not_changed(api):
    blog(api)
    run_rollout(api, namespaces=['bar'], wait_timeout=30)
    patches = len(api.patches)
    again = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    assert again['changed'] is False
    assert by_name(again)['bar/Deployment/bar']['action'] == 'current'
    assert len(api.patches) == patches


def test_check_mode_patches_nothing(api):
    blog(api)
    before = dict((k, v['metadata']['resourceVersion']) for k, v in api.objects['Deployment'].items())
    result = run_rollout(api, namespaces=['bar', 'foo'], check_mode=True, diff=True)
    assert result['changed'] is True
    assert [w['action'] for w in result['workloads']] == ['restarted', 'restarted']
    assert all('check mode' in w['reason'] for w in result['workloads'])
    assert api.patches == []
    after = dict((k, v['metadata']['resourceVersion']) for k, v in api.objects['Deployment'].items())
    assert before == after
    assert set(result['diff']['before']) == {'bar/Deployment/bar', 'foo/Deployment/foo'}


def test_diff_shows_restarted_at_before_and_after(api):
    blog(api)
    result = run_rollout(api, namespaces=['bar'], diff=True, wait_timeout=30)
    assert result['diff']['before'] == {'bar/Deployment/bar': {RESTARTED_AT: None}}
    after = result['diff']['after']['bar/Deployment/bar'][RESTARTED_AT]
    assert after == api.objects['Deployment'][('bar', 'bar')]['spec']['template']['metadata'][
        'annotations'][RESTARTED_AT]


def test_only_stale_false_restarts_current_workloads_too(api):
    blog(api)
    run_rollout(api, namespaces=['bar'], wait_timeout=30)
    result = run_rollout(api, namespaces=['bar'], only_stale=False, wait_timeout=30)
    assert by_name(result)['bar/Deployment/bar']['action'] == 'restarted'
    assert len(api.patches) == 2


def test_missing_namespace_fails_before_touching_anything(api):
    blog(api)
    with pytest.raises(NotFound) as err:
        run_rollout(api, namespaces=['bar', 'nope'])
    assert 'nope' in str(err.value)
    assert api.patches == []


def test_unknown_name_and_bad_input(api):
    blog(api)
    with pytest.raises(NotFound):
        run_rollout(api, namespaces=['bar'], names=['ghost'])
    with pytest.raises(InvalidInput):
        run_rollout(api, namespaces=['bar'], revision='1.15.4')
    with pytest.raises(InvalidInput):
        run_rollout(api, namespaces=['bar'], revision='9-9-9')
    with pytest.raises(InvalidInput):
        run_rollout(api, namespaces=['bar'], kinds=['Job'])
    with pytest.raises(InvalidInput):
        run_rollout(api, namespaces=['bar'], concurrency=-1)
    assert api.patches == []


def test_plan_selection_by_selector_names_and_kinds(api):
    api.namespace('shop')
    api.workload('Deployment', 'shop', 'web', labels={'tier': 'edge'})
    api.workload('Deployment', 'shop', 'api')
    api.workload('StatefulSet', 'shop', 'db')
    api.workload('DaemonSet', 'shop', 'agent')
    plan = RolloutPlan.build(api, namespaces=['shop'], selector='tier=edge')
    assert [w.name for w in plan.workloads] == ['web']
    plan = RolloutPlan.build(api, namespaces=['shop'], names=['api', 'db'])
    assert [(w.kind, w.name) for w in plan.workloads] == [('Deployment', 'api'), ('StatefulSet', 'db')]
    plan = RolloutPlan.build(api, namespaces=['shop', 'shop'], kinds=['DaemonSet', 'DaemonSet'])
    assert [(w.kind, w.name) for w in plan.workloads] == [('DaemonSet', 'agent')]
    assert all(w.plan == 'restart' and w.expected == '1-15-4' for w in plan.workloads)


def test_namespace_selector_and_label_precedence(api):
    api.namespace('legacy', {'istio-injection': 'enabled', 'istio.io/rev': '1-14-6', 'wave': '1'})
    api.namespace('pinned', {'istio.io/rev': '1-14-6', 'wave': '1'})
    api.namespace('off', {'istio-injection': 'disabled', 'wave': '1'})
    api.namespace('other', {'wave': '2'})
    for ns in ('legacy', 'pinned', 'off', 'other'):
        api.workload('Deployment', ns, 'app')
    plan = RolloutPlan.build(api, namespace_selector='wave=1')
    got = dict((w.namespace, (w.expected, w.action or w.plan)) for w in plan.workloads)
    # istio-injection=enabled wins over istio.io/rev and means the default tag -> 1-15-4
    assert got['legacy'] == ('1-15-4', 'restart')
    # pinned to the old revision: already current
    assert got['pinned'] == ('1-14-6', 'current')
    # injection disabled but pods carry a sidecar: reported, not restarted to strip it
    assert got['off'][0] is None and got['off'][1] == 'skipped'
    assert 'other' not in got


def test_revision_option_overrides_and_resolves_tags(api):
    blog(api)
    plan = RolloutPlan.build(api, namespaces=['bar'], revision='1-14-6')
    assert plan.workloads[0].expected == '1-14-6' and plan.workloads[0].action == 'current'
    plan = RolloutPlan.build(api, namespaces=['bar'], revision='default')
    assert plan.workloads[0].expected == '1-15-4' and plan.workloads[0].plan == 'restart'


def test_paused_and_on_delete_are_skipped_with_reason(api):
    api.namespace('bar')
    api.set_tag('1-15-4')
    api.workload('Deployment', 'bar', 'paused', paused=True)
    api.workload('StatefulSet', 'bar', 'ondelete', strategy='OnDelete')
    api.workload('DaemonSet', 'bar', 'agent', strategy='OnDelete')
    api.workload('StatefulSet', 'bar', 'db')
    api.workload('DaemonSet', 'bar', 'logs')
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    got = by_name(result)
    assert got['bar/Deployment/paused']['action'] == 'skipped'
    assert 'paused' in got['bar/Deployment/paused']['reason']
    assert got['bar/StatefulSet/ondelete']['action'] == 'skipped'
    assert 'OnDelete' in got['bar/StatefulSet/ondelete']['reason']
    assert got['bar/DaemonSet/agent']['action'] == 'skipped'
    assert got['bar/StatefulSet/db']['action'] == 'restarted'
    assert got['bar/DaemonSet/logs']['action'] == 'restarted'
    assert got['bar/DaemonSet/logs']['to_version'] == '1.15.4'
    assert sorted(api.patches) == [('DaemonSet', 'bar', 'logs'), ('StatefulSet', 'bar', 'db')]
    assert result['summary']['skipped'] == 3 and not result.get('failed')


def in_flight_counter(api):
    """Max number of patched-but-not-rolled-out workloads seen at patch time."""
    seen = {'max': 0}

    def on_patch(kind, ns, name):
        with api.lock:
            busy = 0
            for (k, n, m) in set(api.patches):
                obj = api.objects[k][(n, m)]
                pods = api._pods(k, obj)
                h = api._template_hash(obj)
                if not (len(pods) == obj['spec'].get('replicas', api.nodes) and
                        all(p['metadata']['hash'] == h and api._ready(p) for p in pods)):
                    busy += 1
            seen['max'] = max(seen['max'], busy)
    api.on_patch = on_patch
    return seen


def test_concurrency_limits_rollouts_in_flight(api):
    api.namespace('bar')
    api.set_tag('1-15-4')
    for i in range(7):
        api.workload('Deployment', 'bar', 'app%d' % i)
    seen = in_flight_counter(api)
    result = run_rollout(api, namespaces=['bar'], concurrency=2, wait_timeout=30)
    assert result['summary']['restarted'] == 7
    assert 1 <= seen['max'] <= 2
    assert collections.Counter(api.patches).most_common(1)[0][1] == 1


def test_concurrency_zero_starts_everything_at_once(api):
    api.namespace('bar')
    api.set_tag('1-15-4')
    for i in range(6):
        api.workload('Deployment', 'bar', 'app%d' % i)
    api.paused = True  # no rollout can finish until every workload has been patched
    done = threading.Event()

    def on_patch(kind, ns, name):
        if len(api.patches) == 6:
            api.paused = False
            done.set()
    api.on_patch = on_patch
    result = run_rollout(api, namespaces=['bar'], concurrency=0, wait_timeout=30)
    assert done.is_set()
    assert result['summary']['restarted'] == 6


def test_request_budget(api):
    """One patch per restarted workload; lists and watches a constant per namespace."""
    for ns in ('a', 'b'):
        api.namespace(ns)
        for i in range(8):
            api.workload('Deployment', ns, 'app%d' % i, replicas=1)
    api.set_tag('1-15-4')
    api.calls[:] = []
    result = run_rollout(api, namespaces=['a', 'b'], concurrency=0, wait_timeout=30)
    assert result['summary']['restarted'] == 16
    calls = collections.Counter(call[0] for call in api.calls)
    assert calls['patch'] == 16
    # namespace list, webhooks, 3 kinds + pods per namespace, the events list per namespace,
    # and a pod list for a workload whose pod events lagged (rare)
    assert calls['list'] <= 2 + 2 * 5 + 16 * 0.25
    assert calls['list'] + calls['patch'] + calls['watch'] <= 3 * 16 + 2 * 20


def test_many_namespaces_use_cluster_wide_lists(api):
    for i in range(5):
        api.namespace('ns%d' % i)
        api.workload('Deployment', 'ns%d' % i, 'app', replicas=1)
    api.set_tag('1-15-4')
    api.calls[:] = []
    result = run_rollout(api, namespaces=['ns%d' % i for i in range(5)], concurrency=0,
                         wait_timeout=30)
    assert result['summary']['restarted'] == 5
    scoped = [c for c in api.calls if c[0] in ('list', 'watch') and c[1] in ('Deployment', 'Pod')]
    assert scoped and all(call[2] is None for call in scoped)


def test_dropped_watches_resume_without_missing_the_end(api):
    blog(api)
    api.workload('StatefulSet', 'bar', 'db')
    api.drop_watch_after = 1   # every watch connection ends after one event
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    assert result['summary']['restarted'] == 2, result
    assert collections.Counter(api.patches).most_common(1)[0][1] == 1
    assert sum(1 for c in api.calls if c[0] == 'watch') > 4


def test_gone_watches_relist(api):
    blog(api)
    api.gone_next = {'Deployment', 'Pod'}
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    assert result['summary']['restarted'] == 1
    lists = [c for c in api.calls if c[0] == 'list' and c[1] in ('Deployment', 'Pod')]
    assert len(lists) >= 4  # the plan's lists and the re-lists after 410


def test_crash_loop_fails_naming_the_workload_and_stops_the_wave(api):
    api.namespace('bar')
    api.set_tag('1-15-4')
    for i in range(4):
        api.workload('Deployment', 'bar', 'app%d' % i)
    api.crash_versions.add('1.15.4')
    result = run_rollout(api, namespaces=['bar'], concurrency=1, wait_timeout=30)
    assert result['failed'] is True
    got = by_name(result)
    assert got['bar/Deployment/app0']['action'] == 'failed'
    assert got['bar/Deployment/app0']['reason'].startswith('CrashLoopBackOff')
    assert 'istio-proxy' in got['bar/Deployment/app0']['reason']
    for i in (1, 2, 3):
        assert got['bar/Deployment/app%d' % i]['action'] == 'skipped'
        assert 'app0' in got['bar/Deployment/app%d' % i]['reason']
    assert api.patches == [('Deployment', 'bar', 'app0')]
    assert 'bar/Deployment/app0: CrashLoopBackOff' in result['msg']


def test_failure_lets_started_rollouts_finish(api):
    api.namespace('bad')
    api.namespace('good')
    api.set_tag('1-15-4')
    api.workload('Deployment', 'bad', 'app')
    api.workload('Deployment', 'good', 'app')
    api.workload('Deployment', 'good', 'later')
    api.webhook_error['bad'] = 'no endpoints available for service "istiod-1-15-4"'
    result = run_rollout(api, namespaces=['bad', 'good'], concurrency=2, wait_timeout=30)
    got = by_name(result)
    assert got['bad/Deployment/app']['action'] == 'failed'
    assert 'failed calling webhook' in got['bad/Deployment/app']['reason']
    assert 'no endpoints available for service "istiod-1-15-4"' in got['bad/Deployment/app']['reason']
    assert got['good/Deployment/app']['action'] == 'restarted'   # already started: finished
    assert got['good/Deployment/later']['action'] == 'skipped'   # not started after the failure
    assert revisions(api, 'Deployment', 'good', 'app') == ['docker.io/istio/proxyv2:1.15.4']


def test_webhook_rejection_of_statefulset_comes_from_events(api):
    api.namespace('bar')
    api.set_tag('1-15-4')
    api.workload('StatefulSet', 'bar', 'db', replicas=1)
    api.webhook_error['bar'] = 'no endpoints available for service "istiod-1-15-4"'
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    w = by_name(result)['bar/StatefulSet/db']
    assert w['action'] == 'failed'
    assert 'webhook' in w['reason'] and 'istiod-1-15-4' in w['reason']


def test_progress_deadline_fails(api):
    blog(api)
    api.crash_versions.add('1.15.4')
    api.ready_steps = 10 ** 6
    api.progress_deadline_steps = 3
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    w = by_name(result)['bar/Deployment/bar']
    assert w['action'] == 'failed'
    assert 'ProgressDeadlineExceeded' in w['reason'] or 'CrashLoopBackOff' in w['reason']


def test_timeout_names_the_last_status(api):
    blog(api)
    api.paused = True
    started = time.monotonic()
    result = run_rollout(api, namespaces=['bar'], wait_timeout=1)
    assert time.monotonic() - started < 20
    w = by_name(result)['bar/Deployment/bar']
    assert w['action'] == 'failed'
    assert w['reason'].startswith('timeout after 1s')
    assert 'spec update to be observed' in w['reason']


def test_interrupted_restart_is_waited_for_not_restarted(api):
    blog(api)
    api.paused = True
    ts = '2026-11-22T00:00:00Z'
    api.restart('Deployment', 'bar', 'bar', ts)     # an earlier run patched, then died
    api.patches[:] = []
    api.paused = False
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    w = by_name(result)['bar/Deployment/bar']
    assert w['action'] == 'restarted'
    assert 'already in progress' in w['reason']
    assert api.patches == []
    assert revisions(api, 'Deployment', 'bar', 'bar') == ['docker.io/istio/proxyv2:1.15.4']


def test_resumed_rollout_ending_on_the_wrong_revision_is_restarted_once(api):
    blog(api)
    api.paused = True
    api.restart('Deployment', 'bar', 'bar', '2026-11-22T00:00:00Z')
    api.patches[:] = []
    plan = RolloutPlan.build(api, namespaces=['bar'])
    assert plan.workloads[0].plan == 'resume'
    api.tag_revision = '1-14-6'   # the webhook still injects the old revision for that rollout

    def on_patch(kind, ns, name):
        api.tag_revision = '1-15-4'
    api.on_patch = on_patch
    api.paused = False
    RolloutRunner(api, plan, wait_timeout=30).run()
    w = plan.workloads[0]
    assert w.action == 'restarted', w.result()
    assert 'wrong revision' in w.reason
    assert api.patches == [('Deployment', 'bar', 'bar')]
    assert revisions(api, 'Deployment', 'bar', 'bar') == ['docker.io/istio/proxyv2:1.15.4']


def test_stale_replica_failure_from_before_the_run_does_not_fail_a_resumed_rollout(api):
    blog(api)
    api.paused = True
    api.restart('Deployment', 'bar', 'bar', '2026-11-22T00:00:00Z')
    api.patches[:] = []
    with api.lock:
        dep = api.objects['Deployment'][('bar', 'bar')]
        dep['status']['conditions'] = [{
            'type': 'ReplicaFailure', 'status': 'True', 'reason': 'FailedCreate',
            'lastUpdateTime': '2020-01-01T00:00:00Z',
            'message': 'failed calling webhook: no endpoints available for service "istiod-1-15-4"'}]
        api._bump('Deployment', 'MODIFIED', dep)
    api.paused = False   # istiod is back: the pods can be created now
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    w = by_name(result)['bar/Deployment/bar']
    assert w['action'] == 'restarted', w
    assert api.patches == []


def test_stuck_restart_on_another_revision_is_restarted(api):
    """Rollback: the new pods of an unfinished restart run the revision we move away from."""
    blog(api)
    api.crash_versions.add('1.15.4')
    api.restart('Deployment', 'bar', 'bar', '2026-11-22T00:00:00Z')
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and '1.15.4' not in str(revisions(api, 'Deployment', 'bar', 'bar')):
        time.sleep(0.01)
    api.patches[:] = []
    api.crash_versions.clear()
    api.set_tag('1-14-6')
    result = run_rollout(api, namespaces=['bar'], wait_timeout=30)
    w = by_name(result)['bar/Deployment/bar']
    assert w['action'] == 'restarted', w
    assert api.patches == [('Deployment', 'bar', 'bar')]
    assert revisions(api, 'Deployment', 'bar', 'bar') == ['docker.io/istio/proxyv2:1.14.6']


def test_wait_false_patches_without_waiting(api):
    blog(api)
    api.paused = True
    result = run_rollout(api, namespaces=['bar', 'foo'], wait=False)
    assert [w['action'] for w in result['workloads']] == ['restarted', 'restarted']
    assert all(w['to_version'] is None for w in result['workloads'])
    assert sorted(api.patches) == [('Deployment', 'bar', 'bar'), ('Deployment', 'foo', 'foo')]


def test_a_watch_that_is_not_allowed_fails_the_rollouts_that_need_it(api):
    blog(api)
    api.workload('Deployment', 'bar', 'second')
    api.watch_errors['Pod'] = Forbidden('Forbidden (403): may not watch Pod objects in namespace bar')
    result = run_rollout(api, namespaces=['bar'], concurrency=1, wait_timeout=30)
    assert result['failed'] is True
    got = by_name(result)
    assert got['bar/Deployment/bar']['action'] == 'failed'
    assert 'cannot watch' in got['bar/Deployment/bar']['reason']
    assert '403' in got['bar/Deployment/bar']['reason']
    # never restarted: either refused for the same reason, or skipped after the first failure
    assert got['bar/Deployment/second']['action'] in ('failed', 'skipped')
    assert 'not restarted' in got['bar/Deployment/second']['reason']
    assert ('Deployment', 'bar', 'second') not in api.patches


def test_new_pods_without_sidecar_fail_at_once(api):
    """A webhook with failurePolicy Ignore and no istiod: pods come up without a sidecar.  The first
    one is enough to stop (its sidecar, or its absence, is fixed at creation)."""
    blog(api)
    api.workload('Deployment', 'bar', 'later')
    api.no_injection.add('bar')
    result = run_rollout(api, namespaces=['bar'], concurrency=1, wait_timeout=30)
    got = by_name(result)
    assert got['bar/Deployment/bar']['action'] == 'failed'
    assert 'new pods are not on revision 1-15-4' in got['bar/Deployment/bar']['reason']
    assert 'has no istio-proxy sidecar' in got['bar/Deployment/bar']['reason']
    assert got['bar/Deployment/later']['action'] == 'skipped'
    assert ('Deployment', 'bar', 'later') not in api.patches
