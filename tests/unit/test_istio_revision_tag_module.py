"""istio_revision_tag: building and applying the tag webhooks against the in-memory cluster."""
import pytest

from ansible_collections.meshops.istio.plugins.modules import istio_revision_tag as mod
from ansible_collections.meshops.istio.plugins.module_utils import errors, mesh

import fake_cluster as f
from module_stub import stub_for

MWC = 'MutatingWebhookConfiguration'
VWC = 'ValidatingWebhookConfiguration'


def canary_cluster(extra=()):
    return f.FakeCluster(f.blog([f.istiod('1-15-4', '1.15.4'), f.service('1-15-4'), f.injector('1-15-4')]
                                + list(extra)))


def services(obj):
    return {h['clientConfig']['service']['name'] for h in obj['webhooks']}


def test_move_default_tag_and_validator():
    cluster = canary_cluster()
    m = mod.TagManager(cluster, 'istio-system')
    previous = m.present('default', '1-15-4')
    assert previous == '1-14-6'
    tag = cluster.find(MWC, 'istio-revision-tag-default')
    assert tag['metadata']['labels']['istio.io/rev'] == '1-15-4'
    assert tag['metadata']['labels']['release'] == 'istio'          # other labels kept
    assert services(tag) == {'istiod-1-15-4'} and len(tag['webhooks']) == 4
    vwc = cluster.find(VWC, 'istiod-default-validator')
    assert services(vwc) == {'istiod-1-15-4'} and vwc['metadata']['labels']['istio.io/rev'] == '1-15-4'
    assert {c['name'] for c in m.changes} == {'istio-revision-tag-default', 'istiod-default-validator'}
    # what the model now says
    state = mesh.MeshState.load(cluster)
    assert state.namespaces['foo'].revision == '1-15-4'
    # second run: nothing to do, nothing written
    rvs = cluster.resource_versions()
    m2 = mod.TagManager(cluster, 'istio-system')
    assert m2.present('default', '1-15-4') == '1-15-4' and m2.changes == []
    assert cluster.resource_versions() == rvs


def test_check_mode_writes_nothing_but_reports_diff():
    cluster = canary_cluster()
    rvs = cluster.resource_versions()
    m = mod.TagManager(cluster, 'istio-system', check_mode=True)
    assert m.present('default', '1-15-4') == '1-14-6'
    assert cluster.resource_versions() == rvs and cluster.writes == []
    key = 'MutatingWebhookConfiguration/istio-revision-tag-default'
    assert m.diff_before[key]['labels']['istio.io/rev'] == '1-14-6'
    assert m.diff_after[key]['labels']['istio.io/rev'] == '1-15-4'
    assert {w['service'] for w in m.diff_after[key]['webhooks']} == {'istiod-1-15-4'}


def test_new_tag_is_created():
    cluster = canary_cluster()
    m = mod.TagManager(cluster, 'istio-system')
    assert m.present('canary', '1-15-4') is None
    tag = cluster.find(MWC, 'istio-revision-tag-canary')
    assert [h['name'] for h in tag['webhooks']] == ['rev.namespace.sidecar-injector.istio.io',
                                                    'rev.object.sidecar-injector.istio.io']
    assert m.changes == [{'kind': MWC, 'name': 'istio-revision-tag-canary', 'action': 'created'}]
    # validator untouched for a non-default tag
    assert services(cluster.find(VWC, 'istiod-default-validator')) == {'istiod-1-14-6'}


def test_conflict_is_retried_with_fresh_read():
    cluster = canary_cluster()
    cluster.conflicts[(MWC, 'istio-revision-tag-default')] = 2
    m = mod.TagManager(cluster, 'istio-system')
    m.present('default', '1-15-4')
    tag = cluster.find(MWC, 'istio-revision-tag-default')
    assert tag['metadata']['labels']['istio.io/rev'] == '1-15-4'
    assert 'other-writer' in tag['metadata']['annotations']     # the concurrent change survived
    assert [c['name'] for c in m.changes].count('istio-revision-tag-default') == 1


def test_endless_conflicts_fail_clearly():
    cluster = canary_cluster()
    cluster.conflicts[(MWC, 'istio-revision-tag-default')] = 99
    with pytest.raises(errors.Conflict) as info:
        mod.TagManager(cluster, 'istio-system').present('default', '1-15-4')
    assert 'kept changing' in str(info.value)


def test_refuses_missing_and_unready_revisions():
    cluster = f.FakeCluster(f.blog([f.istiod('1-15-4', '1.15.4', ready=False), f.injector('1-15-4')]))
    rvs = cluster.resource_versions()
    with pytest.raises(errors.RevisionNotFound) as info:
        mod.TagManager(cluster, 'istio-system').present('default', '1-16-0')
    assert 'installed revisions: 1-14-6, 1-15-4' in str(info.value)
    with pytest.raises(errors.RevisionNotReady):
        mod.TagManager(cluster, 'istio-system').present('default', '1-15-4')
    assert cluster.resource_versions() == rvs


def test_tag_named_like_a_revision_is_refused():
    cluster = canary_cluster()
    with pytest.raises(errors.InvalidInput):
        mod.TagManager(cluster, 'istio-system').present('1-14-6', '1-15-4')


def test_deactivates_revisionless_injector_for_default():
    cluster = canary_cluster([f.injector('default')])
    m = mod.TagManager(cluster, 'istio-system')
    m.present('default', '1-15-4')
    legacy = cluster.find(MWC, 'istio-sidecar-injector')
    assert not mesh.injector_active(legacy)
    assert {'kind': MWC, 'name': 'istio-sidecar-injector', 'action': 'deactivated'} in m.changes


def test_creates_validator_when_missing():
    objs = [o for o in f.blog() if o['metadata']['name'] != 'istiod-default-validator']
    cluster = f.FakeCluster(objs + [f.istiod('1-15-4', '1.15.4'), f.injector('1-15-4')])
    mod.TagManager(cluster, 'istio-system').present('default', '1-15-4')
    vwc = cluster.find(VWC, 'istiod-default-validator')
    assert services(vwc) == {'istiod-1-15-4'} and vwc['webhooks'][0]['clientConfig']['service']['path'] == '/validate'


def test_absent_refuses_while_used_then_force():
    cluster = canary_cluster()
    rvs = cluster.resource_versions()
    with pytest.raises(errors.TagInUse) as info:
        mod.TagManager(cluster, 'istio-system').absent('default')
    assert 'namespace foo (label istio.io/rev)' in str(info.value)
    assert cluster.resource_versions() == rvs
    m = mod.TagManager(cluster, 'istio-system')
    previous, users = m.absent('default', force=True)
    assert previous == '1-14-6' and len(users) == 4
    assert cluster.find(MWC, 'istio-revision-tag-default') is None
    previous, users = mod.TagManager(cluster, 'istio-system').absent('default')
    assert previous is None


def test_absent_unused_tag_check_mode():
    cluster = canary_cluster([f.tag('canary', '1-15-4')])
    rvs = cluster.resource_versions()
    m = mod.TagManager(cluster, 'istio-system', check_mode=True)
    assert m.absent('canary') == ('1-15-4', [])
    assert m.changes[0]['action'] == 'deleted' and cluster.resource_versions() == rvs


def test_covers_ignores_server_defaults():
    assert mod.covers({'a': {'b': 1}, 'l': [{'x': 1}]}, {'a': {'b': 1, 'c': 2}, 'l': [{'x': 1, 'y': 0}], 'z': 1})
    assert not mod.covers({'l': [{'x': 1}]}, {'l': [{'x': 1}, {'x': 2}]})
    assert not mod.covers({'a': 1}, {'a': 2})


FakeModule = stub_for({'tag': 'default', 'revision': None, 'state': 'present', 'istio_namespace': 'istio-system',
                       'force': False})


def test_run_validates_before_touching_cluster():
    # FakeModule without a client: asking for one fails the test ('touched the cluster')
    with pytest.raises(errors.InvalidInput) as info:
        mod.run(FakeModule({'revision': '1.15.4'}))
    assert "use '1-15-4'" in str(info.value)
    with pytest.raises(errors.InvalidInput):
        mod.run(FakeModule({'tag': 'Bad_Tag', 'revision': '1-15-4'}))


def test_run_result():
    cluster = canary_cluster()
    result = mod.run(FakeModule({'revision': '1-15-4'}, diff=True, client=cluster))
    assert result['changed'] and result['previous_revision'] == '1-14-6' and result['revision'] == '1-15-4'
    assert set(result['diff']['after']) == {'MutatingWebhookConfiguration/istio-revision-tag-default',
                                            'ValidatingWebhookConfiguration/istiod-default-validator'}
    again = mod.run(FakeModule({'revision': '1-15-4'}, diff=True, client=cluster))
    assert not again['changed'] and again['previous_revision'] == '1-15-4'
