"""istio_revision_tag through Ansible against the simulated cluster."""
import helpers as h

TAG = 'istio-revision-tag-default'


def args(sim, **kw):
    out = dict(h.auth(sim), tag='default', revision=h.NEW_REV)
    out.update(kw)
    return out


def istioctl(sim, *argv):
    cp = h.subprocess.run([h.PYTHON, h.ISTIOCTL] + list(argv) + ['--kubeconfig', sim.kubeconfig],
                          env=h.ansible_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    return cp.stdout


def test_move_default_tag(blog):
    sim = blog
    h.install_revision(sim)
    before = h.snapshot(sim)
    res = h.run_module('istio_revision_tag', args(sim), check=True, diff=True)
    assert res.rc == 0 and res['changed'] is True, res
    assert res['previous_revision'] == h.OLD_REV and res['revision'] == h.NEW_REV
    key = 'MutatingWebhookConfiguration/' + TAG
    assert res['diff']['before'][key]['labels']['istio.io/rev'] == h.OLD_REV
    assert {w['service'] for w in res['diff']['after'][key]['webhooks']} == {'istiod-' + h.NEW_REV}
    assert h.snapshot(sim) == before, 'check mode changed the cluster'

    res = h.run_module('istio_revision_tag', args(sim), diff=True)
    assert res.rc == 0 and res['changed'] is True, res
    assert res['previous_revision'] == h.OLD_REV
    assert h.mwc_revision(sim, TAG) == (h.NEW_REV, {'istiod-' + h.NEW_REV})
    tag = h.get(sim, 'MutatingWebhookConfiguration', TAG)
    assert tag['metadata']['labels']['istio.io/tag'] == 'default'
    assert [w['name'] for w in tag['webhooks']] == [
        'rev.namespace.sidecar-injector.istio.io', 'rev.object.sidecar-injector.istio.io',
        'namespace.sidecar-injector.istio.io', 'object.sidecar-injector.istio.io']
    injector = h.get(sim, 'MutatingWebhookConfiguration', 'istio-sidecar-injector-' + h.NEW_REV)
    assert {w['clientConfig']['caBundle'] for w in tag['webhooks']} == {injector['webhooks'][0]['clientConfig']['caBundle']}
    assert tag['webhooks'][0]['namespaceSelector']['matchExpressions'][0] == \
        {'key': 'istio.io/rev', 'operator': 'In', 'values': ['default']}
    vwc = h.get(sim, 'ValidatingWebhookConfiguration', 'istiod-default-validator')
    assert vwc['metadata']['labels']['istio.io/rev'] == h.NEW_REV
    assert {w['clientConfig']['service']['name'] for w in vwc['webhooks']} == {'istiod-' + h.NEW_REV}
    # istioctl agrees on what the tag points at
    assert h.NEW_REV in istioctl(sim, 'tag', 'list')

    # new pods in a tagged namespace now get the new proxy (the simulator follows the webhooks)
    cp = sim.kubectl('rollout', 'restart', 'deployment/foo', '-n', 'foo')
    assert cp.returncode == 0, cp.stderr
    sim.wait_for(lambda: h.proxy_revisions(sim, 'foo', 'foo') == [h.NEW_REV, h.NEW_REV], timeout=60,
                 message='foo restarted onto the new revision')
    h.wait_pods(sim, 'foo', 'app=foo', 2)

    settled = h.snapshot(sim)
    res = h.run_module('istio_revision_tag', args(sim))
    assert res.rc == 0 and res['changed'] is False and res['previous_revision'] == h.NEW_REV, res
    assert h.snapshot(sim) == settled

    # rollback uses previous_revision
    res = h.run_module('istio_revision_tag', args(sim, revision=h.OLD_REV))
    assert res.rc == 0 and res['changed'] is True and res['previous_revision'] == h.NEW_REV, res
    assert h.mwc_revision(sim, TAG) == (h.OLD_REV, {'istiod-' + h.OLD_REV})
    vwc = h.get(sim, 'ValidatingWebhookConfiguration', 'istiod-default-validator')
    assert {w['clientConfig']['service']['name'] for w in vwc['webhooks']} == {'istiod-' + h.OLD_REV}


def test_refuses_unknown_and_unready_revisions(kubesim):
    sim = kubesim('blog')
    before = h.snapshot(sim)
    res = h.run_module('istio_revision_tag', args(sim, revision='1-16-0'))
    assert res.failed and res['error'] == 'RevisionNotFound' and h.OLD_REV in res['msg'], res
    res = h.run_module('istio_revision_tag', args(sim, revision='1.15.4'))
    assert res.failed and "use '1-15-4'" in res['msg'], res
    assert h.snapshot(sim) == before
    # a revision whose istiod never becomes ready (its proxy/pilot image crash-loops in the simulator)
    cp = h.subprocess.run([h.PYTHON, h.ISTIOCTL, 'install', '--set', 'revision=1-15-4', '-y',
                           '--kubeconfig', sim.kubeconfig], env=h.ansible_env(), capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stderr
    dep = h.get(sim, 'Deployment', 'istiod-1-15-4', 'istio-system')
    # scale istiod to zero: exists but not ready
    sim.kubectl('scale', 'deployment/istiod-1-15-4', '-n', 'istio-system', '--replicas=0', check=True)
    h.wait_pods(sim, 'istio-system', 'app=istiod,istio.io/rev=1-15-4', 0)
    before = h.snapshot(sim)
    res = h.run_module('istio_revision_tag', args(sim))
    assert res.failed and res['error'] == 'RevisionNotReady', res
    assert h.snapshot(sim) == before
    assert dep is not None


def test_new_tag_and_absent(kubesim):
    sim = kubesim('blog')
    h.install_revision(sim)
    res = h.run_module('istio_revision_tag', args(sim, tag='canary'))
    assert res.rc == 0 and res['changed'] and res['previous_revision'] is None, res
    assert h.mwc_revision(sim, 'istio-revision-tag-canary') == (h.NEW_REV, {'istiod-' + h.NEW_REV})
    # the default validator belongs to the default tag only
    vwc = h.get(sim, 'ValidatingWebhookConfiguration', 'istiod-default-validator')
    assert {w['clientConfig']['service']['name'] for w in vwc['webhooks']} == {'istiod-' + h.OLD_REV}
    # a namespace that uses the tag blocks its removal
    h.create_namespace(sim, 'canary-ns', {'istio.io/rev': 'canary'})
    before = h.snapshot(sim)
    res = h.run_module('istio_revision_tag', dict(h.auth(sim), tag='canary', state='absent'))
    assert res.failed and res['error'] == 'TagInUse' and 'canary-ns' in res['msg'], res
    assert h.snapshot(sim) == before
    h.label_namespace(sim, 'canary-ns', {'istio.io/rev': None})
    res = h.run_module('istio_revision_tag', dict(h.auth(sim), tag='canary', state='absent'), check=True)
    assert res.rc == 0 and res['changed'] is True, res
    assert h.get(sim, 'MutatingWebhookConfiguration', 'istio-revision-tag-canary') is not None
    res = h.run_module('istio_revision_tag', dict(h.auth(sim), tag='canary', state='absent'))
    assert res.rc == 0 and res['changed'] is True and res['previous_revision'] == h.NEW_REV, res
    assert h.get(sim, 'MutatingWebhookConfiguration', 'istio-revision-tag-canary') is None
    res = h.run_module('istio_revision_tag', dict(h.auth(sim), tag='canary', state='absent'))
    assert res.rc == 0 and res['changed'] is False, res


def test_legacy_revisionless_injector_is_deactivated(kubesim):
    sim = kubesim('legacy')
    h.install_revision(sim)
    res = h.run_module('istio_revision_tag', args(sim))
    assert res.rc == 0 and res['changed'] is True, res
    legacy = h.get(sim, 'MutatingWebhookConfiguration', 'istio-sidecar-injector')
    assert legacy is not None, 'istioctl keeps the revision-less injector (deactivated)'
    assert all(w['namespaceSelector'] == {'matchLabels': {'istio.io/deactivated': 'never-match'}}
               for w in legacy['webhooks']), legacy['webhooks']
    assert {'kind': 'MutatingWebhookConfiguration', 'name': 'istio-sidecar-injector',
            'action': 'deactivated'} in res['changes']
    assert h.mwc_revision(sim, TAG) == (h.NEW_REV, {'istiod-' + h.NEW_REV})
    # istio-injection=enabled namespaces now get the new revision, and only it
    sim.kubectl('rollout', 'restart', 'deployment/foo', '-n', 'foo', check=True)
    sim.wait_for(lambda: h.proxy_revisions(sim, 'foo', 'foo') == [h.NEW_REV, h.NEW_REV], timeout=60,
                 message='foo restarted onto the new revision')
    res = h.run_module('istio_revision_tag', args(sim))
    assert res.rc == 0 and res['changed'] is False, res
