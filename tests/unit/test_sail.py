"""The Sail manager (plugins/module_utils/sail.py) on plain objects: detection, guards refusing what would fight
the operator, the changes of each phase on Sail's terms (check-mode plan of the whole upgrade), and SailControl's
writes and waits against the in-memory cluster."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import mesh, plan as p, sail, upgrade_state as us
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput, RevisionInUse

import fake_cluster as f

OLD, NEW = 'default-v1-29-6', 'default-v1-30-3'
WAVES = [{'name': 'wave1', 'namespaces': ['bar']}, {'name': 'wave2', 'namespaces': ['foo', 'baz']}]
WHOLE = ['precheck', 'install', 'tag', 'gateways', 'wave1', 'wave2', 'verify', 'cleanup']


def istio(version='v1.29.6', strategy='RevisionBased', active=OLD):
    return {'kind': 'Istio', 'apiVersion': 'sailoperator.io/v1', 'metadata': {'name': 'default'},
            'spec': {'version': version, 'namespace': 'istio-system',
                     'updateStrategy': {'type': strategy, 'inactiveRevisionDeletionGracePeriodSeconds': 30}},
            'status': {'activeRevisionName': active}}


def revision(name, version, in_use='True'):
    return {'kind': 'IstioRevision', 'apiVersion': 'sailoperator.io/v1',
            'metadata': {'name': name, 'ownerReferences': [
                {'apiVersion': 'sailoperator.io/v1', 'kind': 'Istio', 'name': 'default', 'controller': True}]},
            'spec': {'version': version, 'namespace': 'istio-system'},
            'status': {'conditions': [{'type': 'Ready', 'status': 'True'},
                                      {'type': 'InUse', 'status': in_use, 'message': 'Referenced by a pod'}]}}


def istio_tag(on=OLD, kind='Istio', target='default'):
    return {'kind': 'IstioRevisionTag', 'apiVersion': 'sailoperator.io/v1', 'metadata': {'name': 'default'},
            'spec': {'targetRef': {'kind': kind, 'name': target}},
            'status': {'istioRevision': on, 'istiodNamespace': 'istio-system'}}


def objects(tag_on=OLD):
    objs = [f.istiod(OLD, '1.29.6'), f.service(OLD), f.injector(OLD), f.tag('default', tag_on), f.validator(tag_on),
            f.namespace('istio-system')]
    for ns in ('foo', 'bar', 'baz', 'istio-ingress'):
        name = 'istio-ingressgateway' if ns == 'istio-ingress' else ns
        objs += [f.namespace(ns, {'istio.io/rev': 'default'}), f.deployment(ns, name)]
        objs += [f.pod(ns, name, i, OLD, '1.29.6') for i in range(2)]
    return objs


def state(istios=None, revisions=None, tags=None, extra=()):
    model = mesh.MeshState.load(f.FakeCluster(objects() + list(extra)))
    model.sail = sail.SailState(istios if istios is not None else [istio()],
                                revisions if revisions is not None else [revision(OLD, 'v1.29.6')],
                                tags if tags is not None else [istio_tag()])
    return model


def request(**kw):
    kw.setdefault('waves', WAVES)
    kw.setdefault('gateways', [{'namespace': 'istio-ingress', 'name': 'istio-ingressgateway'}])
    return p.UpgradeRequest(kw.pop('to_revision', NEW), kw.pop('to_version', '1.30.3'), **kw)


def build(model, phase, rec=None, req=None, **kw):
    return p.UpgradePlan.build(model, rec or us.empty_record(), req or request(), phase, **kw)


def failed(plan):
    return dict((g['name'], g['message']) for g in plan.guards if not g['ok'])


def test_detected_only_where_sail_manages_the_istio_namespace():
    assert build(state(), 'precheck').manager == 'sail'
    plain = mesh.MeshState.load(f.FakeCluster(objects()))
    assert build(plain, 'precheck').manager == 'istioctl'
    plain.sail = None
    assert build(plain, 'precheck').manager == 'istioctl'
    other = state()
    other.sail.istios['default'].namespace = 'elsewhere'
    other.sail.revisions[OLD].namespace = 'elsewhere'
    assert build(other, 'precheck').manager == 'istioctl'
    assert sail.revision_name('default', '1.30.3') == NEW and sail.revision_name('x', 'v1.2.3') == 'x-v1-2-3'


def test_refusals_say_what_to_do_instead():
    refused = failed(build(state(), 'precheck', req=request(to_revision='1-30-3')))
    assert 'istio_canary_to_revision: %s' % NEW in refused['sail-target-name']
    refused = failed(build(state(istios=[istio(strategy='InPlace', active='default')]), 'install'))
    assert 'RevisionBased' in refused['sail-revision-based'] and 'no old revision' in refused['sail-revision-based']
    req = request()
    req.install_method = 'istioctl'
    assert 'Leave istio_canary_install_method empty' in failed(build(state(), 'install', req=req))['sail-not-configured']
    refused = failed(build(state(tags=[]), 'tag', req=request(create_tag=True)))
    assert 'no IstioRevisionTag' in refused['sail-tag'] and 'targetRef' in refused['sail-tag']
    rec = us.merge(us.empty_record(), fields={'to_revision': NEW, 'from_revision': OLD})
    refused = failed(build(state(), 'cleanup', rec))
    assert "Run the 'install' phase first" in refused['sail-old-inactive']


def test_the_whole_upgrade_planned_in_check_mode_on_sails_terms():
    model, assumed, report = state(), [], {}
    for phase in WHOLE:
        plan = build(model, phase, assume_done=assumed, check_mode=True, record_exists=False)
        assert plan.allowed, (phase, plan.refusal)
        report[phase] = plan
        assumed = plan.to_dict()['assume_next']
    assert [(o['action'], o['kind'], o['name']) for o in report['install'].planned['objects']] == [
        ('update', 'Istio', 'default'), ('wait', 'IstioRevision', NEW), ('wait', 'IstioRevisionTag', 'default')]
    assert 'spec.version v1.29.6 -> v1.30.3' in report['install'].planned['objects'][0]['detail']
    # the tag followed the Istio at install: nothing left to move, no webhook written
    assert report['tag'].planned['objects'] == []
    assert report['wave1'].moved() == ['bar/Deployment/bar: 1.29.6 -> 1.30.3']
    assert [(o['action'], o['kind'], o['name']) for o in report['cleanup'].planned['objects']] == [
        ('wait', 'IstioRevision', OLD)]
    assert 'Sail deletes it 30s after nothing uses it' in report['cleanup'].report()[0]


def test_tag_and_rollback_changes():
    # a pinned tag: the tag phase moves its targetRef
    pinned = state(istios=[istio('v1.30.3', active=NEW)], revisions=[revision(OLD, 'v1.29.6'), revision(NEW, 'v1.30.3')],
                   tags=[istio_tag(OLD, 'IstioRevision', OLD)], extra=[f.istiod(NEW, '1.30.3'), f.injector(NEW)])
    plan = build(pinned, 'tag')
    assert plan.allowed, plan.refusal
    assert [(o['kind'], o['detail']) for o in plan.planned['objects']] == [
        ('IstioRevisionTag', 'targetRef IstioRevision %s -> %s' % (OLD, NEW))]
    # rollback with a following tag: the Istio's version back
    new_objects = [f.istiod(NEW, '1.30.3'), f.service(NEW), f.injector(NEW),
                   f.pod('bar', 'bar', 7, NEW, '1.30.3', digest='9c8b7a6d5')]
    moved = mesh.MeshState.load(f.FakeCluster(objects(NEW) + new_objects))
    moved.sail = sail.SailState([istio('v1.30.3', active=NEW)], [revision(OLD, 'v1.29.6'), revision(NEW, 'v1.30.3')],
                                [istio_tag(NEW)])
    rec = us.merge(us.empty_record(), fields={'to_revision': NEW, 'from_revision': OLD, 'from_version': '1.29.6'},
                   wave={'name': 'wave1', 'namespaces': ['bar'], 'status': 'done'})
    plan = build(moved, 'rollback', rec, req=request(rollback=True), check_mode=True)
    assert plan.allowed, plan.refusal
    assert [(o['kind'], o['detail']) for o in plan.planned['objects']] == [
        ('Istio', 'spec.version v1.30.3 -> v1.29.6 (active revision %s; tag default follows it)' % OLD)]
    assert 'bar/Deployment/bar: 1.29.6,1.30.3 -> 1.29.6' in plan.moved()  # one pod moved, one not yet


class Cluster(f.FakeCluster):
    """The in-memory cluster with Sail's kinds cluster-scoped and patch as a merge."""

    def _key(self, kind, name, namespace=None):
        if kind in ('Istio', 'IstioRevision', 'IstioRevisionTag'):
            namespace = None
        return super(Cluster, self)._key(kind, name, namespace)

    def patch(self, kind, name, patch, namespace=None, patch_type='merge', api_version=None, **kw):
        obj = self.get(kind, name, namespace)
        self.writes.append(('patch', kind, name, patch))
        for key, value in patch.get('spec', {}).items():
            obj['spec'][key] = value
        return self.put(obj)


def test_control_writes_only_versions_and_tag_targets_and_names_users():
    failed_pod = f.pod('bar', 'job', 0, OLD, '1.29.6')
    failed_pod['metadata'].setdefault('annotations', {})['istio.io/rev'] = OLD
    failed_pod['status']['phase'] = 'Failed'
    cluster = Cluster([istio(), revision(OLD, 'v1.29.6'), istio_tag(OLD, 'IstioRevision', OLD), failed_pod,
                       f.namespace('bar', {'istio.io/rev': 'default'})])
    control = sail.SailControl(cluster)
    changes, _result = control.activate(NEW, '1.30.3', tag='default', check_mode=True)
    assert [(c['kind'], c['after']) for c in changes] == [('Istio', 'v1.30.3'), ('IstioRevisionTag', NEW)]
    assert cluster.writes == []
    with pytest.raises(InvalidInput, match='set revision to %s' % NEW):
        control.activate('canary', '1.30.3', check_mode=True)
    changes, _result = control.activate(NEW, '1.30.3', tag='default', wait=False)
    assert [w[1] for w in cluster.writes] == ['Istio', 'IstioRevisionTag']
    assert cluster.find('Istio', 'default')['spec']['version'] == 'v1.30.3'
    # cleanup: the active revision is refused; an inactive one that Sail keeps is named with what uses it
    with pytest.raises(InvalidInput, match='active revision'):
        sail.SailControl(Cluster([istio(), revision(OLD, 'v1.29.6')])).await_removal(OLD)
    cluster.put(dict(istio('v1.30.3', active=NEW)))
    ticks = iter(range(1000))
    control = sail.SailControl(cluster, clock=lambda: next(ticks), sleep=lambda s: None)
    with pytest.raises(RevisionInUse) as exc:
        control.await_removal(OLD, timeout=3)
    assert 'pod bar/job-5d8f7c9b6-00000 Failed (a Failed pod keeps the revision in use' in exc.value.message
    present, result = sail.SailControl(cluster).await_removal(OLD, check_mode=True)
    assert present and result['users']
    assert sail.SailControl(cluster).await_removal('gone') == (False, {'revision': 'gone', 'removed': False,
                                                                       'users': []})
