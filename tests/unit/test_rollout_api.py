"""RolloutApi: the engine's few calls on top of ClusterClient (the client's paged lists with per-item
transform, kubectl's restart patch, the client's watches whose abnormal ends are WatchDropped)."""
import pytest

from ansible_collections.meshops.istio.plugins.module_utils import client as client_mod
from ansible_collections.meshops.istio.plugins.module_utils.client import WatchEvent
from ansible_collections.meshops.istio.plugins.module_utils.errors import Gone
from ansible_collections.meshops.istio.plugins.module_utils.rollout import (
    RESTARTED_AT,
    RolloutApi,
    WatchDropped,
    rfc3339_now,
    parse_rfc3339,
)


class StubClient:
    def __init__(self, items=(), events=(), end=None):
        self.items = list(items)
        self.lists = []
        self.patches = []
        self.events = list(events)
        self.end = end

    def list_with_version(self, kind, namespace=None, label_selector=None, field_selector=None, transform=None):
        self.lists.append((kind, namespace, label_selector, field_selector))
        kept = (transform(obj) for obj in self.items)
        return [item for item in kept if item is not None], '11'

    def patch(self, kind, name, patch, namespace=None, patch_type='merge', **kwargs):
        self.patches.append((kind, name, namespace, patch_type, patch))
        return {'metadata': {'name': name, 'namespace': namespace}}

    def watch(self, kind, **kwargs):
        yield from self.events
        if self.end is not None:
            raise self.end


def test_list_uses_the_clients_paged_list_and_pairs_pods_with_their_namespace():
    # the paging itself (continue tokens, transform per item as each page arrives) is ClusterClient's:
    # tests/unit/test_client.py::test_list_follows_continue_and_transforms_each_item
    stub = StubClient(items=[{'metadata': {'name': 'a', 'namespace': 'n'}}, {'metadata': {'name': 'b'}},
                             {'metadata': {'name': 'c', 'namespace': 'n'}}])
    api = RolloutApi(stub)
    items, rv = api.list('Pod', namespace='n', label_selector='app=x',
                         transform=lambda o: None if o['metadata']['name'] == 'b' else o['metadata']['name'])
    assert items == [('a', 'n'), ('c', 'n')]   # pods come with their namespace
    assert rv == '11' and stub.lists == [('Pod', 'n', 'app=x', None)]
    items, _rv = api.list('Deployment', transform=lambda o: o['metadata']['name'])
    assert items == ['a', 'b', 'c']             # other kinds do not


def test_restart_is_kubectls_strategic_merge_patch():
    stub = StubClient()
    RolloutApi(stub).restart('StatefulSet', 'db', 'web', '2026-11-22T00:00:00Z')
    assert stub.patches == [('StatefulSet', 'web', 'db', 'strategic', {
        'spec': {'template': {'metadata': {'annotations': {RESTARTED_AT: '2026-11-22T00:00:00Z'}}}}})]


def test_watch_yields_events_and_reports_drops_and_gone():
    assert WatchDropped is client_mod.WatchDropped   # one WatchDropped, the client's
    obj = {'metadata': {'name': 'a', 'resourceVersion': '5'}}
    api = RolloutApi(StubClient(events=[WatchEvent('MODIFIED', obj, '5')], end=client_mod.WatchDropped('reset')))
    seen = []
    with pytest.raises(WatchDropped):
        for event in api.watch('Deployment', namespace='n', resource_version='4'):
            seen.append(event)
    assert seen == [('MODIFIED', obj, '5')]
    api = RolloutApi(StubClient(end=Gone('too old', status=410)))
    with pytest.raises(Gone):
        list(api.watch('Pod'))


def test_restarted_at_format_round_trips():
    stamp = rfc3339_now()
    assert stamp.endswith('Z') and len(stamp) == 20
    assert parse_rfc3339(stamp).tzinfo is not None
    assert parse_rfc3339('garbage') is None
