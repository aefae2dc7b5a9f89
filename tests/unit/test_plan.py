"""The planner (plugins/module_utils/plan.py) on plain objects: old/new, guards, changes, the check-mode plan."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import mesh, plan as p, upgrade_state as us
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

import fake_cluster as f

WAVES = [{"name": "wave1", "namespaces": ["bar"]}, {"name": "wave2", "namespaces": ["foo", "baz"]}]
GATEWAYS = [{"namespace": "istio-ingress", "name": "istio-ingressgateway"}]
WHOLE = ["precheck", "install", "tag", "gateways", "wave1", "wave2", "verify", "cleanup"]


def state_of(objs):
    return mesh.MeshState.load(f.FakeCluster(objs))


def blog(*extra):
    return state_of(f.blog(extra))


def installed(tag_on='1-14-6', *extra):
    """1-15-4 installed beside 1-14-6; tag default on ``tag_on``."""
    objs = [o for o in f.blog() if o['metadata']['name'] not in ('istio-revision-tag-default', 'istiod-default-validator')]
    objs += [f.istiod('1-15-4', '1.15.4'), f.service('1-15-4'), f.injector('1-15-4'), f.tag('default', tag_on),
             f.validator(tag_on)]
    return state_of(objs + list(extra))


def request(**kw):
    kw.setdefault('waves', WAVES)
    kw.setdefault('gateways', GATEWAYS)
    return p.UpgradeRequest(kw.pop('to_revision', '1-15-4'), kw.pop('to_version', '1.15.4'), **kw)


def record(**data):
    rec = us.empty_record()
    rec.update(data)
    return rec


def build(state, phase, rec=None, **kw):
    req = kw.pop('req', None) or request(**kw.pop('request', {}))
    return p.UpgradePlan.build(state, rec or us.empty_record(), req, phase, **kw)


def failed(plan):
    return [g['name'] for g in plan.guards if not g['ok']]


# --- old and new ------------------------------------------------------------------------------------------

def test_old_revision_from_variable_record_tag_and_the_only_other_revision():
    up = build(blog(), 'precheck').upgrade
    assert (up.from_revision, up.from_source, up.from_version, up.tag_revision) == ('1-14-6', 'tag', '1.14.6', '1-14-6')
    assert build(installed('1-15-4'), 'precheck').upgrade.from_source == 'installed revisions'
    rec = record(to_revision='1-15-4', from_revision='1-14-6', from_version='1.14.6', phases={'tag': 't'})
    up = build(installed('1-15-4'), 'verify', rec).upgrade
    assert (up.from_revision, up.from_source) == ('1-14-6', 'record') and up.tag_on_target
    assert build(blog(), 'precheck', request={'from_revision': '1-13-0'}).upgrade.from_source == 'variable'
    # a record of another upgrade is not used
    other = record(to_revision='1-14-6', from_revision='1-13-0')
    assert build(blog(), 'precheck', other).upgrade.from_revision == '1-14-6'


def test_bad_input_is_refused_before_anything_is_read():
    with pytest.raises(InvalidInput) as info:
        request(from_revision='1.14.6', waves='bar').validate()
    text = str(info.value)
    assert "istio_canary_from_revision '1.14.6'" in text and "use '1-14-6'" in text  # defect 7: the right variable
    assert 'istio_canary_to_revision' not in text and 'istio_canary_waves must be a list' in text
    with pytest.raises(InvalidInput, match="istio_canary_to_revision '1.15.4'.*use '1-15-4'"):
        request(to_revision='1.15.4').validate()
    with pytest.raises(InvalidInput, match='namespace_selector'):
        request(waves=[{'name': 'w', 'namespace_selector': 'a in (b'}]).validate()


# --- the numbered defects of issue 12, at the planner -------------------------------------------------------

def test_install_enforces_the_checks_of_precheck_whatever_ran_before():
    """Defect 1: a skew precheck refuses is refused by install too, record or not."""
    plan = build(blog(), 'install', request={'to_revision': '1-17-0', 'to_version': '1.17.0'})
    assert failed(plan) == ['version-skew'] and 'spans 3 minor versions' in plan.refusal
    assert plan.planned == {} and plan.record_update == {}
    assert failed(build(blog(), 'precheck', request={'to_revision': '1-17-0', 'to_version': '1.17.0'})) == ['version-skew']


def test_a_tag_that_does_not_exist_is_refused_unless_asked_to_create_it():
    """Defect 2: a typo in istio_canary_tag is refused by precheck, install and tag."""
    for phase in ('precheck', 'install', 'tag'):
        plan = build(installed(), phase, request={'tag': 'defualt'})
        assert 'tag-exists' in failed(plan), (phase, plan.guards)
        assert "Revision tag 'defualt' does not exist" in plan.refusal and 'istio_canary_create_tag' in plan.refusal
    plan = build(installed(), 'tag', request={'tag': 'canary', 'create_tag': True})
    assert plan.allowed and plan.planned['objects'][0]['action'] == 'create'
    assert plan.planned['objects'][0]['name'] == 'istio-revision-tag-canary'
    # the later phases refuse too: the tag does not point at the target
    plan = build(installed(), 'gateways', request={'tag': 'defualt'})
    assert failed(plan) == ['tag-on-target'] and 'nothing (the tag does not exist)' in plan.refusal


def test_the_old_revision_is_never_the_target():
    """Defect 3: istio_canary_from_revision = the target is refused in every phase, naming the variable."""
    for phase in ('precheck', 'install', 'tag', 'wave1', 'verify', 'cleanup'):
        plan = build(installed('1-15-4'), phase, request={'from_revision': '1-15-4'})
        assert 'old-is-not-new' in failed(plan), phase
        assert 'istio_canary_from_revision is 1-15-4, the target revision itself' in plan.refusal
        assert 'here the old revision is 1-14-6' in plan.refusal
        assert plan.record_update == {}
    with pytest.raises(us.UpgradeStateError, match='both be 1-15-4'):
        us.merge(us.empty_record(), fields={'from_revision': '1-15-4', 'to_revision': '1-15-4'})


def test_another_target_while_an_upgrade_is_in_progress_is_refused_unless_abandoned():
    """Defect 6: the record of an upgrade in progress is not replaced silently; abandoning keeps its history."""
    started = us.merge(us.empty_record(), phase='precheck',
                       fields={'to_revision': '1-15-4', 'to_version': '1.15.4', 'from_revision': '1-14-6'})
    rec = us.merge(started, wave={'name': 'wave1', 'namespaces': ['bar'], 'status': 'done'})
    assert us.in_progress(rec)
    for phase in ('precheck', 'install', 'rollback', 'cleanup'):
        other = {'to_revision': '1-16-0', 'to_version': '1.16.0', 'rollback': True}
        plan = build(installed(), phase, rec, request=other)
        assert 'one-upgrade-at-a-time' in failed(plan), phase
        assert 'An upgrade to 1-15-4 (1.15.4) is in progress' in plan.refusal
        assert 'wave1' in plan.refusal and 'istio_canary_abandon_upgrade: true' in plan.refusal
    with pytest.raises(us.UpgradeStateError, match='in progress'):
        us.merge(rec, fields={'to_revision': '1-16-0'})
    plan = build(installed(), 'precheck', rec, request={'to_revision': '1-16-0', 'to_version': '1.16.0',
                                                        'abandon_upgrade': True})
    assert plan.allowed and plan.record_update['abandon']
    new = us.merge(rec, fields={'to_revision': '1-16-0'}, abandon=True, now='T')
    assert new['to_revision'] == '1-16-0' and new['waves'] == {} and len(new['abandoned']) == 1
    kept = new['abandoned'][0]
    assert kept['to_revision'] == '1-15-4' and kept['wave.wave1.namespaces'] == 'bar' and kept['abandoned_at'] == 'T'
    assert us.parse(us.render(new))['abandoned'] == new['abandoned']
    # a finished or precheck-only record is replaced as before
    assert not us.in_progress(us.merge(rec, phase='cleanup'))
    assert not us.in_progress(record(to_revision='1-15-4', phases={'precheck': 't'}))


def test_messages_name_what_is_wrong():
    """Defect 7: a tag whose istiod is gone is said so (never 'points at 1-15-4, not at 1-15-4')."""
    objs = [o for o in f.blog() if o['metadata']['name'] not in ('istio-revision-tag-default', 'istiod-default-validator')]
    state = state_of(objs + [f.injector('1-15-4'), f.tag('default', '1-15-4'), f.validator('1-15-4')])
    plan = build(state, 'wave1')
    assert sorted(failed(plan)) == ['tag-istiod-alive', 'target-ready']
    assert 'not at 1-15-4' not in plan.refusal
    assert "points at revision 1-15-4, whose istiod (istiod-1-15-4) is gone" in plan.refusal
    # cleanup with from = to names the variable it was given
    plan = build(installed('1-15-4'), 'cleanup', request={'from_revision': '1-15-4'})
    assert 'set istio_canary_from_revision.' not in plan.refusal and 'istio_canary_from_revision is 1-15-4' in plan.refusal


def test_rollback_without_its_guard_says_how_to_ask_for_it():
    """Defect 8."""
    plan = build(installed('1-15-4'), 'rollback')
    assert failed(plan) == ['rollback-asked'] and len(plan.guards) == 1
    assert '--tags rollback -e istio_canary_rollback=true' in plan.refusal


def test_the_whole_upgrade_is_planned_in_check_mode():
    """Defect 9 / point 2: each phase planned as if the ones before it succeeded; nothing is read twice."""
    state, assumed, report = blog(), [], {}
    for phase in WHOLE:
        plan = build(state, phase, assume_done=assumed, check_mode=True, record_exists=False)
        assert plan.allowed, (phase, plan.refusal)
        report[phase] = plan
        assumed = plan.to_dict()['assume_next']
    assert assumed == WHOLE
    assert not report['precheck'].simulated and not report['install'].simulated and report['tag'].simulated
    assert [(o['action'], o['name']) for o in report['install'].planned['objects']] == [
        ('create', 'istiod-1-15-4'), ('create', 'istiod-1-15-4'), ('create', 'istio-sidecar-injector-1-15-4'),
        ('create', 'istio-validator-1-15-4-istio-system')]
    assert [(o['action'], o['name']) for o in report['tag'].planned['objects']] == [
        ('update', 'istio-revision-tag-default'), ('update', 'istiod-default-validator')]
    assert report['gateways'].moved() == ['istio-ingress/Deployment/istio-ingressgateway: 1.14.6 -> 1.15.4']
    assert report['wave1'].moved() == ['bar/Deployment/bar: 1.14.6 -> 1.15.4']
    assert report['wave2'].moved() == ['baz/Deployment/baz: 1.14.6 -> 1.15.4', 'foo/Deployment/foo: 1.14.6 -> 1.15.4']
    assert report['verify'].planned['verify']['namespaces'] == ['bar', 'baz', 'foo']
    assert [(o['action'], o['kind']) for o in report['cleanup'].planned['objects']] == [
        ('delete', 'Deployment'), ('delete', 'Service'), ('delete', 'MutatingWebhookConfiguration')]
    record_keys = report['wave2'].record_change['set']
    assert record_keys['wave.wave2.workloads'] == 'baz/Deployment/baz,foo/Deployment/foo'
    assert report['precheck'].record_change['action'] == 'create' and report['install'].record_change['action'] == 'update'
    # the real model was not touched by the projection
    assert blog().to_dict() == state.to_dict()
    # from a later starting point: wave2 on after a real wave1 is planned from what is there
    later = build(installed('1-15-4'), 'wave2', check_mode=True)
    assert later.allowed and not later.simulated
    # a later phase alone, with nothing before it in the run, is refused as in a real run
    assert failed(build(blog(), 'wave2', check_mode=True)) == ['target-ready', 'tag-on-target']


def test_check_mode_rollback_plans_the_way_back_and_its_check_after():
    """Defect 5: rollback planned in check mode, and its post-condition holds on the projected model."""
    moved = installed('1-15-4', f.pod('bar', 'bar', 7, '1-15-4', '1.15.4', digest='9c8b7a6d5'))
    rec = us.merge(us.empty_record(), fields={'to_revision': '1-15-4', 'from_revision': '1-14-6'},
                   wave={'name': 'wave1', 'namespaces': ['bar'], 'status': 'done'})
    plan = build(moved, 'rollback', rec, request={'rollback': True}, check_mode=True)
    assert plan.allowed and plan.planned['tag_change'] == {'tag': 'default', 'revision': '1-14-6'}
    assert plan.planned['namespaces'] == ['bar']
    assert [w['id'] for w in plan.planned['workloads'] if w['action'] == 'restart'] == ['bar/Deployment/bar']
    after = build(moved, 'rollback', rec, request={'rollback': True}, check_mode=True, stage='after',
                  assume_done=['rollback'])
    assert after.allowed, after.refusal
    real_after = build(moved, 'rollback', rec, request={'rollback': True}, stage='after')
    assert 'Rollback incomplete' in real_after.refusal and 'bar/Deployment/bar' in real_after.refusal


# --- phases and their changes ------------------------------------------------------------------------------

def test_waves_by_namespaces_selector_and_query():
    labelled = state_of(f.blog([f.namespace('shop', {'istio.io/rev': 'default', 'wave': '2'}),
                                f.deployment('shop', 'front', template_labels={'tier': 'edge'}),
                                f.pod('shop', 'front', 0, '1-14-6', '1.14.6')]))
    waves = [{'name': 'sel', 'namespace_selector': 'wave=2'}, {'name': 'q', 'query': "[?name=='front' || name=='bar']"},
             {'name': 'ns', 'namespaces': ['foo', 'foo']}]
    assumed = ['precheck', 'install', 'tag']
    plans = dict((phase, build(labelled, phase, request={'waves': waves}, assume_done=assumed, check_mode=True))
                 for phase in ('wave1', 'wave2', 'wave3'))
    assert plans['wave1'].planned['restarts'][0]['namespace_selector'] == 'wave=2'
    assert plans['wave1'].moved() == ['shop/Deployment/front: 1.14.6 -> 1.15.4']
    assert [c['namespaces'] for c in plans['wave2'].planned['restarts']] == [['bar'], ['shop']]
    assert plans['wave2'].moved() == ['bar/Deployment/bar: 1.14.6 -> 1.15.4', 'shop/Deployment/front: 1.14.6 -> 1.15.4']
    assert plans['wave3'].planned['restarts'][0]['namespaces'] == ['foo']
    with pytest.raises(InvalidInput, match='JMESPath'):
        build(labelled, 'wave1', request={'waves': [{'name': 'w', 'query': "[?name=='x'"}]}, assume_done=assumed,
              check_mode=True)
    missing = build(installed('1-15-4'), 'wave1', request={'waves': [{'name': 'w', 'namespaces': ['bar', 'nope']}]})
    assert failed(missing) == ['wave-namespaces-exist'] and 'namespace nope does not exist' in missing.refusal


def test_label_findings_and_migration():
    state = state_of(f.blog([f.namespace('legacy', {'istio-injection': 'enabled'}),
                             f.namespace('both', {'istio-injection': 'enabled', 'istio.io/rev': 'default'}),
                             f.namespace('off', {'istio-injection': 'disabled', 'istio.io/rev': 'default'}),
                             f.namespace('pinned', {'istio.io/rev': '1-14-6'}),
                             f.namespace('typo', {'istio.io/rev': '1-99-0'}),
                             f.namespace('optout', {'istio-injection': 'disabled'}),
                             f.namespace('early', {'istio.io/rev': '1-15-4'})]))
    plan = build(state, 'precheck', request={'migrate_legacy_labels': True})
    by_ns = dict((x['namespace'], x) for x in plan.planned['findings'])
    assert sorted(by_ns) == ['both', 'legacy', 'off', 'pinned', 'typo']
    assert by_ns['legacy']['issue'] == 'legacy' and by_ns['legacy']['migrate']
    assert by_ns['both']['issue'] == 'conflict' and by_ns['both']['migrate']
    assert by_ns['off']['issue'] == 'disabled-conflict' and not by_ns['off']['migrate']
    assert by_ns['pinned']['issue'] == 'pinned' and 'istio.io/rev=default' in by_ns['pinned']['message']
    assert by_ns['typo']['issue'] == 'unknown'
    assert plan.planned['migrate'] == ['both', 'legacy']
    assert 'namespace legacy uses the legacy label istio-injection=enabled' in by_ns['legacy']['message']
    assert not build(state, 'precheck').planned['migrate']


def test_verify_lists_what_is_off_and_cleanup_what_still_uses_the_old_revision():
    state = installed('1-15-4')
    rec = record(to_revision='1-15-4', from_revision='1-14-6', phases={'gateways': 't'},
                 waves={'wave1': {'namespaces': ['bar'], 'workloads': ['bar/Deployment/bar'], 'started': 't', 'done': 't'}})
    plan = build(state, 'verify', rec)
    assert failed(plan) == ['moved-workloads-on-target']
    assert 'bar/Deployment/bar: proxy revision 1-14-6, expected 1-15-4' in plan.refusal
    assert 'istio-ingress/Deployment/istio-ingressgateway' in plan.refusal and 'foo/' not in plan.refusal
    plan = build(state, 'cleanup', rec)
    assert failed(plan) == ['old-revision-unused'] and 'still in use' in plan.refusal
    assert 'foo/Deployment/foo (1.14.6)' in plan.refusal
    plan = build(installed('1-14-6'), 'cleanup', request={'from_revision': '1-14-6'})
    assert "Tag default points at 1-14-6, not 1-15-4" in plan.refusal


def test_summarize_rollouts():
    loop = {'results': [
        {'workloads': [
            {'namespace': 'bar', 'kind': 'Deployment', 'name': 'bar', 'action': 'restarted', 'from_version': '1.14.6',
             'to_version': '1.15.4'},
            {'namespace': 'bar', 'kind': 'Deployment', 'name': 'old', 'action': 'current'}]},
        {'failed': True, 'msg': 'rollout stuck', 'workloads': [
            {'namespace': 'foo', 'kind': 'Deployment', 'name': 'foo', 'action': 'failed', 'reason': 'CrashLoopBackOff'},
            {'namespace': 'foo', 'kind': 'StatefulSet', 'name': 'db', 'action': 'skipped', 'reason': 'OnDelete'}]},
        {'skipped': True},
    ]}
    out = p.summarize_rollouts(loop)
    assert out['moved'] == ['bar/Deployment/bar: 1.14.6 -> 1.15.4'] and out['current'] == 1
    assert out['failed'] == ['foo/Deployment/foo: CrashLoopBackOff'] and out['skipped'] == ['foo/StatefulSet/db: OnDelete']
    assert out['namespaces'] == ['bar', 'foo'] and len(out['workloads']) == 4
    assert p.summarize_rollouts({'failed': True, 'msg': 'cannot reach the API'})['failed'] == ['cannot reach the API']


def test_new_phases_guards_and_managers_plug_in():
    """What the helm / ambient / Sail work builds on: a phase, a guard and a manager registered from outside."""
    calls = []

    @p.guard('test-no-foo')
    def _no_foo(ctx):
        return 'foo is there' if 'foo' in ctx.state.namespaces else None

    class Manager(p.ControlPlaneManager):
        name = 'test-manager'

        def detect(self, state, request):
            return request.tag == 'managed'

        def extra_guards(self, kind):
            return ['test-no-foo'] if kind == 'install' else []

        def install_changes(self, ctx):
            calls.append('install')
            return [p.object_change('Istio', None, 'default', 'update', 'spec.version 1.15.4')]

    manager = p.register_manager(Manager())
    spec = p.register_phase(p.PhaseSpec('cni', 30, ['target-ready'], plan=lambda ctx: {'objects': []},
                                        changes_mesh=False))
    try:
        plan = build(blog(), 'install', request={'tag': 'managed', 'create_tag': True})
        assert plan.manager == 'test-manager' and failed(plan) == ['test-no-foo']
        plan = build(state_of([o for o in f.blog() if o['metadata'].get('namespace') != 'foo' and
                               o['metadata']['name'] != 'foo']), 'install', request={'tag': 'managed', 'create_tag': True})
        assert plan.allowed and plan.planned['objects'][0]['kind'] == 'Istio' and calls == ['install']
        assert failed(build(blog(), 'cni')) == ['target-ready'] and p.phase_spec('cni') is spec
        assert build(blog(), 'install').manager == 'istioctl'
    finally:
        p.MANAGERS.remove(manager)
        p.PHASES.pop('cni')
        p.GUARDS.pop('test-no-foo')


def test_parse_label_selector():
    sel = mesh.parse_label_selector('a=b,c!=d,e in (f,g),h,!i')
    assert mesh.selector_matches(sel, {'a': 'b', 'e': 'g', 'h': ''}) and not mesh.selector_matches(sel, {'a': 'b'})
    with pytest.raises(InvalidInput):
        mesh.parse_label_selector('a=b,,c')
