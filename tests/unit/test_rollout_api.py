"""The rollout engine's calls on ClusterClient: kubectl's restart patch, the client's paged lists (with a
per-item transform, tests/unit/test_client.py) and resumable watches (client.follow), one WatchDropped."""
from ansible_collections.meshops.istio.plugins.module_utils import client as client_mod
from ansible_collections.meshops.istio.plugins.module_utils import rollout
from ansible_collections.meshops.istio.plugins.module_utils.client import WatchEvent
from ansible_collections.meshops.istio.plugins.module_utils.errors import Gone
from ansible_collections.meshops.istio.plugins.module_utils.rollout import (
    RESTARTED_AT,
    parse_rfc3339,
    rfc3339_now,
)


class StubClient:
    """The client calls of one watcher: a list, then watches that end as told."""

    def __init__(self, watches):
        self.watches = list(watches)
        self.calls = []

    def list_with_version(self, kind, namespace=None, label_selector=None, field_selector=None, transform=None):
        self.calls.append(('list', kind, namespace, label_selector, field_selector))
        items = [transform(obj) for obj in [{'metadata': {'name': 'a', 'namespace': 'n'}}]]
        return items, '10'

    def watch(self, kind, namespace=None, label_selector=None, field_selector=None, resource_version=None,
              timeout_seconds=60):
        self.calls.append(('watch', kind, resource_version))
        events, end = self.watches.pop(0)
        yield from events
        if end is not None:
            raise end


def test_restart_is_kubectls_strategic_merge_patch():
    assert rollout.restart_patch('2026-11-22T00:00:00Z') == {
        'spec': {'template': {'metadata': {'annotations': {RESTARTED_AT: '2026-11-22T00:00:00Z'}}}}}


def test_watcher_follows_with_the_clients_watch_resuming_and_relisting():
    assert rollout.WatchDropped is client_mod.WatchDropped   # one WatchDropped, the client's
    obj = {'metadata': {'name': 'a', 'namespace': 'n', 'resourceVersion': '11'}}
    stub = StubClient([([WatchEvent('MODIFIED', obj, '11')], client_mod.WatchDropped('reset')),
                       ([], Gone('too old', status=410)),
                       ([WatchEvent('DELETED', obj, '13')], None)])
    out = []

    class Queue:
        def put(self, item):
            out.append(item)
            if len(out) == 4:
                stop.set()

    import threading
    stop = threading.Event()
    watcher = rollout._Watcher(stub, ('pod', 'n'), 'Pod', 'n', None,
                               lambda pod: (pod['metadata']['name'], pod['metadata']['namespace']), Queue(), stop,
                               sleep=lambda seconds: None)
    watcher.run()
    assert out == [('sync', ('pod', 'n'), [('a', 'n')]), ('event', ('pod', 'n'), 'MODIFIED', ('a', 'n')),
                   ('sync', ('pod', 'n'), [('a', 'n')]), ('event', ('pod', 'n'), 'DELETED', ('a', 'n'))]
    # resumed from the last resourceVersion after the drop, re-listed after 410 Gone
    assert [c for c in stub.calls if c[0] == 'watch'] == [('watch', 'Pod', '10'), ('watch', 'Pod', '11'),
                                                          ('watch', 'Pod', '10')]


def test_restarted_at_format_round_trips():
    stamp = rfc3339_now()
    assert stamp.endswith('Z') and len(stamp) == 20
    assert parse_rfc3339(stamp).tzinfo is not None
    assert parse_rfc3339('garbage') is None
