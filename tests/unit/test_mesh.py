"""The revision/tag model from plain objects (no cluster, no Ansible)."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import mesh
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

import fake_cluster as f


def state_of(objs):
    c = f.FakeCluster(objs)
    return mesh.MeshState.load(c)


@pytest.mark.parametrize('name', ['1-15-4', 'canary', 'a', 'x' * 63])
def test_valid_revision_names(name):
    assert mesh.validate_revision_name(name) == name


@pytest.mark.parametrize('name,hint', [('1.15.4', "'1-15-4'"), ('v1.15.4', "'v1-15-4'"),
                                       ('Canary_1', "'canary-1'"), ('-x', "'x'"), ('x' * 64, None), ('', None)])
def test_invalid_revision_names_say_what_to_use(name, hint):
    with pytest.raises(InvalidInput) as info:
        mesh.validate_revision_name(name)
    if hint:
        assert 'use %s' % hint in str(info.value)


def test_blog_scenario_model():
    state = state_of(f.blog())
    rev = state.revision('1-14-6')
    assert (rev.version, rev.ready, rev.deployment, rev.injector, rev.service) == \
        ('1.14.6', True, 'istiod-1-14-6', 'istio-sidecar-injector-1-14-6', 'istiod-1-14-6')
    assert state.tags['default'].revision == '1-14-6'
    foo_ns = state.namespaces['foo']
    assert (foo_ns.selected_by, foo_ns.selector, foo_ns.revision, foo_ns.via) == ('istio.io/rev', 'default', '1-14-6', 'tag')
    kinds = [u['kind'] for u in rev.in_use_by]
    assert kinds[:2] == ['tag', 'validator'] and kinds.count('pod') == 8
    assert {'kind': 'pod', 'namespace': 'foo', 'name': 'foo-5d8f7c9b6-00000'} in rev.in_use_by
    assert state.stale() == []
    w = next(w for w in state.workloads if w.name == 'foo')
    assert (w.revisions, w.versions, w.expected_revision, w.needs_restart) == (['1-14-6'], ['1.14.6'], '1-14-6', False)


def test_version_from_image_when_label_missing():
    state = state_of([f.istiod('1-15-4', '1.15.4', version_label=False)])
    assert state.revision('1-15-4').version == '1.15.4'
    assert mesh.version_of_image('gcr.io/istio-release/pilot:1.15.4-distroless') == '1.15.4'
    assert mesh.version_of_image('localhost:5000/pilot') is None


def test_not_ready_istiod():
    state = state_of([f.istiod('1-15-4', '1.15.4', ready=False)])
    assert state.revision('1-15-4').ready is False


def test_moving_the_tag_makes_workloads_stale():
    objs = f.blog() + [f.istiod('1-15-4', '1.15.4'), f.service('1-15-4'), f.injector('1-15-4')]
    objs = [o for o in objs if o['metadata']['name'] != 'istio-revision-tag-default'] + [f.tag('default', '1-15-4')]
    state = state_of(objs)
    assert state.namespaces['foo'].revision == '1-15-4'
    stale = state.stale()
    assert sorted(w.name for w in stale) == ['bar', 'baz', 'foo', 'istio-ingressgateway']
    assert 'expected revision 1-15-4' in stale[0].reason
    # the old revision is still used by its pods (not by the tag any more)
    users = state.revision('1-14-6').in_use_by
    assert {u['kind'] for u in users} == {'validator', 'pod'}
    assert [u['name'] for u in state.revision('1-15-4').in_use_by] == ['default']


def test_label_precedence():
    objs = f.blog() + [
        f.istiod('1-15-4', '1.15.4'), f.injector('1-15-4'),
        f.namespace('both', {'istio-injection': 'enabled', 'istio.io/rev': '1-15-4'}),
        f.namespace('off', {'istio-injection': 'disabled', 'istio.io/rev': '1-15-4'}),
        f.namespace('direct', {'istio.io/rev': '1-15-4'}),
        f.namespace('plain'),
        f.namespace('dangling', {'istio.io/rev': 'nope'}),
    ]
    state = state_of(objs)
    both = state.namespaces['both']
    assert (both.selected_by, both.revision, both.via) == ('istio-injection', '1-14-6', 'tag')
    assert 'istio-injection wins' in both.warnings[0]
    off = state.namespaces['off']
    assert (off.selected_by, off.revision) == ('disabled', None)
    direct = state.namespaces['direct']
    assert (direct.selected_by, direct.revision, direct.via) == ('istio.io/rev', '1-15-4', 'revision')
    assert state.namespaces['plain'].selected_by == 'none'
    assert state.namespaces['dangling'].dangling and 'no sidecar' in state.namespaces['dangling'].warnings[0]
    assert {'kind': 'namespace', 'name': 'direct', 'label': 'istio.io/rev'} in state.revision('1-15-4').in_use_by
    assert state.users_of_tag('default')[0] == {'kind': 'namespace', 'name': 'bar', 'label': 'istio.io/rev'}
    assert {'kind': 'namespace', 'name': 'both', 'label': 'istio-injection'} in state.users_of_tag('default')


def test_revisionless_default_install_and_injection_label():
    objs = [f.istiod('default', '1.14.6'), f.service('default'), f.injector('default'),
            f.namespace('legacy', {'istio-injection': 'enabled'}),
            f.deployment('legacy', 'app'), f.pod('legacy', 'app', 0, 'default', '1.14.6')]
    state = state_of(objs)
    assert state.revision('default').deployment == 'istiod'
    assert state.legacy_injector['metadata']['name'] == 'istio-sidecar-injector'
    ns = state.namespaces['legacy']
    assert (ns.revision, ns.via) == ('default', 'revision')
    assert {'kind': 'namespace', 'name': 'legacy', 'label': 'istio-injection'} in state.revision('default').in_use_by
    assert state.stale() == []


def test_template_overrides():
    objs = f.blog() + [f.istiod('1-15-4', '1.15.4'), f.injector('1-15-4'),
                       f.namespace('obj'),
                       f.deployment('obj', 'optin', template_labels={'istio.io/rev': '1-15-4'}),
                       f.pod('obj', 'optin', 0, '1-14-6', '1.14.6'),
                       f.deployment('foo', 'optout', template_labels={'sidecar.istio.io/inject': 'false'}),
                       f.pod('foo', 'optout', 0, digest='aaa')]
    state = state_of(objs)
    optin = next(w for w in state.workloads if w.name == 'optin')
    assert optin.expected_revision == '1-15-4' and optin.needs_restart
    optout = next(w for w in state.workloads if w.name == 'optout')
    assert optout.expected_revision is None and not optout.needs_restart


def test_uninjected_pods_in_selected_namespace_are_stale():
    objs = f.blog([f.deployment('foo', 'bare', replicas=1), f.pod('foo', 'bare', 0, digest='bbb')])
    state = state_of(objs)
    bare = next(w for w in state.workloads if w.name == 'bare')
    assert bare.needs_restart and 'no sidecar' in bare.reason


def test_dangling_tag_is_reported():
    objs = [f.tag('default', '1-13-0'), f.namespace('foo', {'istio.io/rev': 'default'})]
    state = state_of(objs)
    assert 'whose istiod is gone' in state.namespaces['foo'].warnings[0]


def test_selector_matches():
    sel = {'matchLabels': {'a': '1'}, 'matchExpressions': [{'key': 'b', 'operator': 'NotIn', 'values': ['x']},
                                                           {'key': 'c', 'operator': 'DoesNotExist'}]}
    assert mesh.selector_matches(sel, {'a': '1'})
    assert not mesh.selector_matches(sel, {'a': '1', 'b': 'x'})
    assert not mesh.selector_matches(sel, {'a': '1', 'c': ''})
    assert mesh.selector_matches(None, {})


def test_build_tag_webhook_from_injector():
    inj = f.injector('1-15-4')
    hook = mesh.build_tag_webhook('default', '1-15-4', inj)
    assert hook['metadata']['name'] == 'istio-revision-tag-default'
    assert hook['metadata']['labels']['istio.io/tag'] == 'default'
    assert hook['metadata']['labels']['istio.io/rev'] == '1-15-4'
    names = [h['name'] for h in hook['webhooks']]
    assert names == ['rev.namespace.sidecar-injector.istio.io', 'rev.object.sidecar-injector.istio.io',
                     'namespace.sidecar-injector.istio.io', 'object.sidecar-injector.istio.io']
    for h in hook['webhooks']:
        assert h['clientConfig']['service'] == {'name': 'istiod-1-15-4', 'namespace': 'istio-system',
                                                'path': '/inject', 'port': 443}
        assert h['clientConfig']['caBundle'] == f.CA
    # the namespace webhook selects the tag name, not the revision
    assert hook['webhooks'][0]['namespaceSelector']['matchExpressions'][0] == \
        {'key': 'istio.io/rev', 'operator': 'In', 'values': ['default']}
    # what the model reads back from it
    tag = mesh.RevisionTag.from_webhook(hook)
    assert (tag.name, tag.revision, tag.services) == ('default', '1-15-4', ['istiod-1-15-4'])
    # same shape as the hand-written fixture of the tag the blog scenario starts with
    canary = mesh.build_tag_webhook('canary', '1-15-4', inj)
    assert [h['name'] for h in canary['webhooks']] == names[:2]
    assert mesh.webhook_fields(hook)['webhooks'] == mesh.webhook_fields(f.tag('default', '1-15-4'))['webhooks']


def test_default_validator_repointed_keeps_other_fields():
    inj = f.injector('1-15-4')
    old = f.validator('1-14-6')
    new = mesh.build_default_validator('1-15-4', inj, old)
    hook = new['webhooks'][0]
    assert hook['clientConfig']['service']['name'] == 'istiod-1-15-4'
    assert hook['clientConfig']['service']['path'] == '/validate'
    assert new['metadata']['labels']['istio.io/rev'] == '1-15-4'
    assert hook['rules'] == old['webhooks'][0]['rules'] and hook['failurePolicy'] == 'Fail'
    assert mesh.validator_revision(new) == '1-15-4'
    fresh = mesh.build_default_validator('1-15-4', inj, None)
    assert fresh['metadata']['name'] == 'istiod-default-validator'
    assert fresh['webhooks'][0]['clientConfig']['caBundle'] == f.CA


def test_deactivate_legacy_injector():
    legacy = f.injector('default')
    assert mesh.injector_active(legacy)
    off = mesh.deactivate_injector(legacy)
    assert not mesh.injector_active(off)
    assert all(h['namespaceSelector'] == mesh.NEVER_MATCH and h['objectSelector'] == mesh.NEVER_MATCH
               for h in off['webhooks'])
    assert len(off['webhooks']) == len(legacy['webhooks'])


def test_to_dict_filters_namespaces():
    state = state_of(f.blog())
    out = state.to_dict(['foo'])
    assert [n['name'] for n in out['namespaces']] == ['foo']
    assert [w['name'] for w in out['workloads']] == ['foo']
    assert out['tags'] == {'default': '1-14-6'}
    assert out['revisions'][0]['in_use'] is True


def test_statefulset_and_daemonset_pods_are_attributed():
    sts = {'apiVersion': 'apps/v1', 'kind': 'StatefulSet',
           'metadata': {'name': 'db', 'namespace': 'foo'},
           'spec': {'replicas': 1, 'template': {'metadata': {'labels': {'app': 'db'}}}},
           'status': {'readyReplicas': 1}}
    ds = {'apiVersion': 'apps/v1', 'kind': 'DaemonSet',
          'metadata': {'name': 'agent', 'namespace': 'foo'},
          'spec': {'template': {'metadata': {'labels': {'app': 'agent'}}}},
          'status': {'desiredNumberScheduled': 1, 'numberReady': 1}}
    db_pod = f.pod('foo', 'db', 0, '1-14-6', '1.14.6')
    db_pod['metadata']['ownerReferences'] = [{'kind': 'StatefulSet', 'name': 'db', 'controller': True}]
    agent_pod = f.pod('foo', 'agent', 0)
    agent_pod['metadata']['ownerReferences'] = [{'kind': 'DaemonSet', 'name': 'agent', 'controller': True}]
    state = state_of(f.blog([sts, ds, db_pod, agent_pod]))
    db = next(w for w in state.workloads if w.name == 'db')
    agent = next(w for w in state.workloads if w.name == 'agent')
    assert (db.kind, db.revisions, db.needs_restart, db.ready) == ('StatefulSet', ['1-14-6'], False, True)
    assert (agent.kind, agent.revisions, agent.needs_restart) == ('DaemonSet', [], True)
    assert mesh.pod_owner(db_pod) == ('StatefulSet', 'db')
    assert mesh.pod_owner(f.pod('foo', 'web', 0)) == ('Deployment', 'web')


def test_terminating_pods_do_not_count():
    gone = f.pod('foo', 'foo', 7, '1-13-0', '1.13.0')
    gone['metadata']['deletionTimestamp'] = '2026-11-21T00:00:00Z'
    state = state_of(f.blog([gone]))
    foo_w = next(w for w in state.workloads if w.name == 'foo')
    assert foo_w.revisions == ['1-14-6'] and not foo_w.needs_restart
    assert '1-13-0' not in state.pods_by_revision


def test_problems_name_the_hazards():
    assert state_of(f.blog()).problems() == []
    objs = [o for o in f.blog() if not (o['kind'] in ('Deployment', 'Service') and
                                        o['metadata']['name'] == 'istiod-1-14-6')]
    objs += [f.istiod('1-15-4', '1.15.4', ready=False), f.injector('default'),
             f.namespace('mixed', {'istio-injection': 'enabled', 'istio.io/rev': 'default'})]
    problems = state_of(objs).problems()
    kinds = [(p['kind'], p['name']) for p in problems]
    assert ('tag', 'default') in kinds and ('validator', 'istiod-default-validator') in kinds
    assert ('revision', '1-15-4') in kinds and ('injector', 'istio-sidecar-injector') in kinds
    assert ('namespace', 'mixed') in kinds
    tag_problem = next(p['problem'] for p in problems if p['kind'] == 'tag')
    assert 'istiod is gone' in tag_problem and 'failed calling webhook' in tag_problem
