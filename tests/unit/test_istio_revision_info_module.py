"""istio_revision_info: the report and the JMESPath query, against the in-memory cluster."""
import pytest

from ansible_collections.meshops.istio.plugins.modules import istio_revision_info as mod
from ansible_collections.meshops.istio.plugins.module_utils import errors

import fake_cluster as f
from module_stub import stub_for


FakeModule = stub_for({'istio_namespace': 'istio-system', 'namespaces': None, 'query': None})


def run_with(monkeypatch, cluster, **params):
    return mod.run(FakeModule(params, client=cluster))


def test_report(monkeypatch):
    cluster = f.FakeCluster(f.blog())
    rvs = cluster.resource_versions()
    out = run_with(monkeypatch, cluster)
    assert out['tags'] == {'default': '1-14-6'}
    assert [(r['name'], r['version'], r['ready'], r['in_use']) for r in out['revisions']] == \
        [('1-14-6', '1.14.6', True, True)]
    assert {n['name']: n['revision'] for n in out['namespaces']}['bar'] == '1-14-6'
    assert sorted(w['name'] for w in out['workloads']) == ['bar', 'baz', 'foo', 'istio-ingressgateway', 'istiod-1-14-6']
    assert out['stale'] == []
    assert cluster.writes == [] and cluster.resource_versions() == rvs


def test_query_and_namespace_filter(monkeypatch):
    objs = f.blog([f.istiod('1-15-4', '1.15.4'), f.injector('1-15-4')])
    objs = [o for o in objs if o['metadata']['name'] != 'foo' or o['kind'] != 'Namespace']
    objs.append(f.namespace('foo', {'istio.io/rev': '1-15-4'}))
    cluster = f.FakeCluster(objs)
    out = run_with(monkeypatch, cluster, namespaces=['foo', 'bar'], query='[?needs_restart].name')
    assert [w['name'] for w in out['workloads']] == ['bar', 'foo']
    assert out['selected'] == ['foo'] and [w['name'] for w in out['stale']] == ['foo']
    out = run_with(monkeypatch, cluster, query="[?labels.tier=='web'] | length(@)")
    assert out['selected'] == 4


def test_bad_query_and_unknown_namespace(monkeypatch):
    with pytest.raises(errors.InvalidInput) as info:
        run_with(monkeypatch, None, query='[?')
    assert 'JMESPath' in str(info.value)
    with pytest.raises(errors.InvalidInput) as info:
        run_with(monkeypatch, f.FakeCluster(f.blog()), namespaces=['nope'])
    assert 'nope' in str(info.value)
