"""meshops.istio.istio_sail_revision through Ansible on scenario ``sail`` (check mode, diff, idempotence), and the
modules that would fight the Sail operator refusing to (istio_revision_tag on Sail's tag webhook,
istio_revision on Sail's istiod) without writing anything."""
import helpers as h

OLD, NEW = 'default-v1-29-6', 'default-v1-30-3'
SAIL = '/apis/sailoperator.io/v1'
TAG_WEBHOOK = '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/istio-revision-tag-default'


def rv(sim, path):
    return sim.get_json(path)['metadata']['resourceVersion']


def test_activate_check_diff_idempotent_and_what_would_fight_sail_is_refused(kubesim):
    sim = kubesim('sail')
    args = dict(h.auth(sim), revision=NEW, version='1.30.3', tag='default', wait_timeout=120)
    istio_rv = rv(sim, SAIL + '/istios/default')

    check = h.run_module('istio_sail_revision', args, check=True, diff=True)
    assert not check.failed and check['changed'] is True, check
    assert check['changes'][0] == {'kind': 'Istio', 'name': 'default', 'field': 'spec.version',
                                   'before': 'v1.29.6', 'after': 'v1.30.3'}
    assert 'spec.version: v1.30.3' in check['diff'][0]['after'] if isinstance(check['diff'], list) \
        else 'spec.version: v1.30.3' in check['diff']['after']
    assert rv(sim, SAIL + '/istios/default') == istio_rv
    assert h.get(sim, 'Deployment', 'istiod-' + NEW, 'istio-system') is None

    res = h.run_module('istio_sail_revision', args)
    assert not res.failed and res['changed'] is True, res
    new = sim.get_json(SAIL + '/istiorevisions/' + NEW)
    assert next(c for c in new['status']['conditions'] if c['type'] == 'Ready')['status'] == 'True'
    assert sim.get_json(SAIL + '/istiorevisiontags/default')['status']['istioRevision'] == NEW
    assert sim.get_json(SAIL + '/istios/default')['status']['activeRevisionName'] == NEW

    again = h.run_module('istio_sail_revision', args)
    assert not again.failed and again['changed'] is False and again['changes'] == [], again

    # a revision name Sail would not make is refused before anything is written
    istio_rv = rv(sim, SAIL + '/istios/default')
    bad = h.run_module('istio_sail_revision', dict(args, revision='1-30-4', version='1.30.4'))
    assert bad.failed and 'set revision to default-v1-30-4' in bad['msg'], bad
    assert rv(sim, SAIL + '/istios/default') == istio_rv

    # cleanup in check mode: the old revision is still used by every workload's pods, and they are named
    gone = h.run_module('istio_sail_revision', dict(h.auth(sim), revision=OLD, state='absent'), check=True)
    assert not gone.failed and gone['changed'] is True, gone
    assert any(u.startswith('pod bar/ratings-1-') for u in gone['users']), gone['users']
    assert sim.get_json(SAIL + '/istiorevisions/' + OLD)

    # the istioctl-style modules refuse Sail's objects, writing nothing (checked below), then cleanup for real:
    # everything onto the new revision; a namespace label keeps the old one in use (named when waiting times out);
    # without it Sail deletes the revision after its grace period, which the module waits for
    webhook_rv = rv(sim, TAG_WEBHOOK)
    tag = h.run_module('istio_revision_tag', dict(h.auth(sim), tag='default', revision=OLD))
    assert tag.failed and 'managed by the Sail operator' in tag['msg'] and 'IstioRevisionTag' in tag['msg'], tag
    assert rv(sim, TAG_WEBHOOK) == webhook_rv
    removal = h.run_module('istio_revision', dict(h.auth(sim), revision=OLD, state='absent', force=True,
                                                  istioctl_path=h.ISTIOCTL))
    assert removal.failed and 'managed by the Sail operator' in removal['msg'], removal
    assert h.get(sim, 'Deployment', 'istiod-' + OLD, 'istio-system') is not None

    code, _headers, body = sim.request('PATCH', SAIL + '/istios/default', {'spec': {'updateStrategy': {
        'inactiveRevisionDeletionGracePeriodSeconds': 45}}}, headers={'Content-Type': 'application/merge-patch+json'})
    assert code == 200, body[:300]
    h.create_namespace(sim, 'pinned', {'istio.io/rev': OLD})
    moved = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['foo', 'bar', 'baz', 'istio-ingress'],
                                                 wait_timeout=180))
    assert not moved.failed and moved['summary']['restarted'] == 6, moved
    held = h.run_module('istio_sail_revision', dict(h.auth(sim), revision=OLD, state='absent', wait_timeout=5))
    assert held.failed and 'namespace pinned (istio.io/rev=%s)' % OLD in held['msg'], held
    assert sim.get_json(SAIL + '/istiorevisions/' + OLD)
    h.label_namespace(sim, 'pinned', {'istio.io/rev': None})
    removed = h.run_module('istio_sail_revision', dict(h.auth(sim), revision=OLD, state='absent', wait_timeout=240),
                           diff=True)
    assert not removed.failed and removed['changed'] is True and removed['removed'] is True, removed
    assert h.get(sim, 'Deployment', 'istiod-' + OLD, 'istio-system') is None
    code, _headers, _body = sim.request('GET', SAIL + '/istiorevisions/' + OLD)
    assert code == 404
    again = h.run_module('istio_sail_revision', dict(h.auth(sim), revision=OLD, state='absent'))
    assert not again.failed and again['changed'] is False, again
