"""istio_revision through Ansible against the simulated cluster and the stand-in istioctl."""

import helpers as h


def args(sim, **kw):
    out = dict(h.auth(sim), revision=h.NEW_REV, istioctl_path=h.ISTIOCTL, wait_timeout=120)
    out.update(kw)
    return out


def test_install_check_mode_then_for_real_then_idempotent(blog):
    sim = blog
    before = h.snapshot(sim)
    res = h.run_module('istio_revision', args(sim), check=True, diff=True)
    assert res.rc == 0 and res['changed'] is True, res
    assert res['diff']['before']['present'] is False and res['diff']['after']['present'] is True
    assert res['istioctl']['command'] == 'istioctl install --set revision=%s -y' % h.NEW_REV
    assert h.snapshot(sim) == before, 'check mode changed the cluster'
    assert h.get(sim, 'Deployment', 'istiod-' + h.NEW_REV, 'istio-system') is None

    res = h.run_module('istio_revision', args(sim), diff=True)
    assert res.rc == 0 and res['changed'] is True, res
    assert res['revision'] == {'name': h.NEW_REV, 'present': True, 'version': h.NEW_VERSION, 'ready': True,
                               'in_use_by': []}
    assert res['diff']['after']['version'] == h.NEW_VERSION
    dep = h.get(sim, 'Deployment', 'istiod-' + h.NEW_REV, 'istio-system')
    assert dep['metadata']['labels']['istio.io/rev'] == h.NEW_REV
    assert dep['status']['readyReplicas'] >= 1
    assert h.get(sim, 'Service', 'istiod-' + h.NEW_REV, 'istio-system') is not None
    assert h.mwc_revision(sim, 'istio-sidecar-injector-' + h.NEW_REV) == (h.NEW_REV, {'istiod-' + h.NEW_REV})
    # the old revision and the tag are untouched
    assert h.mwc_revision(sim, 'istio-revision-tag-default') == (h.OLD_REV, {'istiod-' + h.OLD_REV})

    settled = h.snapshot(sim)
    res = h.run_module('istio_revision', args(sim))
    assert res.rc == 0 and res['changed'] is False, res
    assert 'command' not in res['istioctl']
    assert h.snapshot(sim) == settled


def test_existing_revision_at_another_version_is_refused(blog):
    sim = blog
    before = h.snapshot(sim)
    res = h.run_module('istio_revision', args(sim, revision=h.OLD_REV), istioctl_version=h.NEW_VERSION)
    assert res.failed and res['error'] == 'RevisionVersionMismatch', res
    assert h.OLD_VERSION in res['msg'] and h.NEW_VERSION in res['msg']
    assert h.snapshot(sim) == before


def test_bad_input_is_refused_before_touching_the_cluster(blog):
    sim = blog
    before = h.snapshot(sim)
    res = h.run_module('istio_revision', args(sim, revision='1.15.4'))
    assert res.failed and "use '1-15-4'" in res['msg'], res
    res = h.run_module('istio_revision', args(sim, istioctl_path='/nonexistent/istioctl'))
    assert res.failed and res['error'] == 'IstioctlNotFound' and 'istioctl_path' in res['msg'], res
    res = h.run_module('istio_revision', args(sim, operator_file='/nonexistent/op.yaml'))
    assert res.failed and 'operator_file' in res['msg'], res
    assert h.snapshot(sim) == before
    audit = [r for r in sim.audit_records() if r.get('verb') not in ('get', 'list', 'watch')]
    assert not [r for r in audit if 'istio' in str(r.get('requestURI', r))], audit


def test_remove_refused_while_in_use_then_removed_when_free(blog):
    sim = blog
    before = h.snapshot(sim)
    res = h.run_module('istio_revision', args(sim, revision=h.OLD_REV, state='absent'))
    assert res.failed and res['error'] == 'RevisionInUse', res
    users = res['details']['in_use_by']
    kinds = {u['kind'] for u in users}
    assert {'tag', 'validator', 'pod'} <= kinds, users
    assert 'revision tag default' in res['msg'] and 'istiod-default-validator' in res['msg']
    assert 'pod foo/' in res['msg']
    assert h.snapshot(sim) == before
    assert h.get(sim, 'Deployment', 'istiod-' + h.OLD_REV, 'istio-system') is not None

    # a revision nothing uses goes away, check mode first
    h.install_revision(sim, '1-15-3', '1.15.3')
    before = h.snapshot(sim)
    res = h.run_module('istio_revision', args(sim, revision='1-15-3', state='absent'), check=True, diff=True)
    assert res.rc == 0 and res['changed'] is True, res
    assert res['diff'] == {'before': {'name': '1-15-3', 'present': True, 'version': '1.15.3', 'ready': True},
                           'after': {'name': '1-15-3', 'present': False, 'version': None, 'ready': False}}
    assert h.snapshot(sim) == before
    res = h.run_module('istio_revision', args(sim, revision='1-15-3', state='absent'), istioctl_version='1.15.3')
    assert res.rc == 0 and res['changed'] is True, res
    assert res['revision']['present'] is False
    assert h.get(sim, 'Deployment', 'istiod-1-15-3', 'istio-system') is None
    assert h.get(sim, 'MutatingWebhookConfiguration', 'istio-sidecar-injector-1-15-3') is None
    res = h.run_module('istio_revision', args(sim, revision='1-15-3', state='absent'))
    assert res.rc == 0 and res['changed'] is False, res


def test_force_removes_revision_in_use(blog):
    sim = blog
    res = h.run_module('istio_revision', args(sim, revision=h.OLD_REV, state='absent', force=True),
                       istioctl_version=h.OLD_VERSION)
    assert res.rc == 0 and res['changed'] is True, res
    assert h.get(sim, 'Deployment', 'istiod-' + h.OLD_REV, 'istio-system') is None
    # what still uses it is reported afterwards, as the cluster holds it now
    users = res['revision']['in_use_by']
    tag_left = h.get(sim, 'MutatingWebhookConfiguration', 'istio-revision-tag-default')
    tag_on_old = tag_left is not None and tag_left['metadata']['labels']['istio.io/rev'] == h.OLD_REV
    assert ({'kind': 'tag', 'name': 'default'} in users) == tag_on_old
    live = {p['metadata']['name'] for p in h.pods_of(sim, 'foo', 'foo')}
    assert {u['name'] for u in users if u['kind'] == 'pod' and u['namespace'] == 'foo'} == live


def test_install_with_host_and_token_only(blog, tmp_path):
    """No kubeconfig: istioctl gets a private temporary one, removed afterwards; the token never shows."""
    sim = blog
    ca = tmp_path / 'ca.crt'
    ca.write_bytes(sim.ca_pem)
    scratch = tmp_path / 'scratch'
    scratch.mkdir()
    module_args = {'host': sim.url, 'api_key': sim.token, 'ca_cert': str(ca), 'revision': h.NEW_REV,
                   'istioctl_path': h.ISTIOCTL, 'wait_timeout': 120}
    res = h.run_module('istio_revision', module_args, verbosity=3, env={'TMPDIR': str(scratch)})
    assert res.rc == 0 and res['changed'] is True, res
    assert res['revision']['ready'] is True
    assert h.get(sim, 'Deployment', 'istiod-' + h.NEW_REV, 'istio-system') is not None
    assert sim.token not in res.stdout + res.stderr + h.json.dumps(res)
    leftovers = [str(p) for p in scratch.rglob('*') if p.is_file() and sim.token in p.read_text(errors='replace')]
    assert leftovers == []
