"""istio_revision_info through Ansible against the simulated cluster."""
import helpers as h


def test_blog_report(blog_module):
    sim = blog_module
    before = h.snapshot(sim)
    res = h.run_module('istio_revision_info', h.auth(sim))
    assert res.rc == 0 and not res.failed, res
    assert res['changed'] is False
    assert res['tags'] == {'default': h.OLD_REV}
    revs = {r['name']: r for r in res['revisions']}
    assert set(revs) == {h.OLD_REV}
    old = revs[h.OLD_REV]
    assert (old['version'], old['ready'], old['in_use']) == (h.OLD_VERSION, True, True)
    users = old['in_use_by']
    assert {'kind': 'tag', 'name': 'default'} in users
    assert {'kind': 'validator', 'name': 'istiod-default-validator'} in users
    live_pods = [p['metadata']['name'] for p in h.pods_of(sim, 'foo', 'foo')]
    assert {u['name'] for u in users if u['kind'] == 'pod' and u['namespace'] == 'foo'} == set(live_pods)
    ns = {n['name']: n for n in res['namespaces']}
    for name in ('foo', 'bar', 'baz', 'istio-ingress'):
        assert (ns[name]['selected_by'], ns[name]['selector'], ns[name]['revision'], ns[name]['via']) == \
            ('istio.io/rev', 'default', h.OLD_REV, 'tag'), ns[name]
    workloads = {(w['namespace'], w['name']): w for w in res['workloads']}
    foo_w = workloads[('foo', 'foo')]
    assert (foo_w['revision'], foo_w['versions'], foo_w['needs_restart']) == (h.OLD_REV, [h.OLD_VERSION], False)
    assert len(foo_w['pods']) == len(live_pods) == 2
    assert res['stale'] == []
    assert res['problems'] == []
    assert h.snapshot(sim) == before


def test_check_mode_and_query(blog_module):
    sim = blog_module
    before = h.snapshot(sim)
    res = h.run_module('istio_revision_info', dict(h.auth(sim), namespaces=['foo', 'istio-ingress'],
                                                   query="[?kind=='Deployment'].name"), check=True)
    assert res.rc == 0 and res['changed'] is False, res
    assert sorted(res['selected']) == ['foo', 'istio-ingressgateway']
    assert {n['name'] for n in res['namespaces']} == {'foo', 'istio-ingress'}
    assert h.snapshot(sim) == before


def test_stale_after_tag_moves(blog):
    sim = blog
    h.install_revision(sim)
    # move the tag by hand, the way `istioctl tag set default --revision 1-15-4 --overwrite` does
    cp = h.subprocess.run([h.PYTHON, h.ISTIOCTL, 'tag', 'set', 'default', '--revision', h.NEW_REV, '--overwrite',
                           '--kubeconfig', sim.kubeconfig], env=h.ansible_env(), capture_output=True, text=True, check=False)
    assert cp.returncode == 0, cp.stderr
    res = h.run_module('istio_revision_info', dict(h.auth(sim), query='[?needs_restart].name'))
    assert res.rc == 0, res
    assert res['tags'] == {'default': h.NEW_REV}
    assert sorted(res['selected']) == ['bar', 'baz', 'foo', 'istio-ingressgateway']
    assert sorted(w['name'] for w in res['stale']) == ['bar', 'baz', 'foo', 'istio-ingressgateway']
    revs = {r['name']: r for r in res['revisions']}
    assert revs[h.NEW_REV]['ready'] and revs[h.NEW_REV]['version'] == h.NEW_VERSION
    assert {'kind': 'tag', 'name': 'default'} in revs[h.NEW_REV]['in_use_by']
    assert not any(u['kind'] == 'tag' for u in revs[h.OLD_REV]['in_use_by'])


def test_bad_query_fails_before_reading(blog_module):
    res = h.run_module('istio_revision_info', dict(h.auth(blog_module), query='[?'))
    assert res.rc != 0 and res.failed and 'JMESPath' in res['msg'], res


def test_webhooks_left_on_a_removed_istiod_are_diagnosed(blog):
    sim = blog
    code, _headers, body = sim.request('DELETE', '/apis/apps/v1/namespaces/istio-system/deployments/istiod-' + h.OLD_REV)
    assert code == 200, body[:300]
    sim.wait_for(lambda: h.get(sim, 'Deployment', 'istiod-' + h.OLD_REV, 'istio-system') is None, timeout=30)
    res = h.run_module('istio_revision_info', h.auth(sim))
    assert res.rc == 0, res
    problems = {(p['kind'], p['name']): p['problem'] for p in res['problems']}
    assert 'istiod is gone' in problems[('tag', 'default')]
    assert 'failed calling webhook' in problems[('tag', 'default')]
    assert ('validator', 'istiod-default-validator') in problems
    foo_ns = next(n for n in res['namespaces'] if n['name'] == 'foo')
    assert any('istiod is gone' in w for w in foo_ns['warnings'])
