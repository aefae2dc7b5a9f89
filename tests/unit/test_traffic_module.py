"""Unit tests of istio_traffic_shift's flow (plugins/modules/istio_traffic_shift.py) on an in-memory API.

The fake API keeps resourceVersions and refuses stale updates with 409 like the real one, so the
module's conflict handling and check mode are exercised without a cluster (the integration tests do
the same against tests/kubesim)."""
import copy

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import errors
from ansible_collections.meshops.istio.plugins.module_utils.client import ReadModifyWrite
from ansible_collections.meshops.istio.plugins.module_utils import traffic as t
from ansible_collections.meshops.istio.plugins.modules import istio_traffic_shift as mod
from ansible_collections.meshops.istio.plugins.modules import istio_traffic_shift_info as info_mod

NS = 'bookinfo'
SUBSETS = [{'name': 'v1', 'labels': {'version': 'v1'}}, {'name': 'v2', 'labels': {'version': 'v2'}}]


class FakeApi(ReadModifyWrite):
    """update_with_retry is ClusterClient's own (the ReadModifyWrite mixin) on top of the calls below."""

    def __init__(self):
        self.objects = {}
        self.rv = 100
        self.calls = []
        self.before_write = None   # hook: called once before the next write
        self.fail_writes = None    # an exception raised by every non-dry-run write

    def _key(self, kind, name, namespace):
        return (kind, namespace, name)

    def _next(self):
        self.rv += 1
        return str(self.rv)

    def _hook(self, dry_run):
        if self.fail_writes is not None:
            raise self.fail_writes
        if self.before_write and not dry_run:
            hook, self.before_write = self.before_write, None
            hook(self)

    def get_or_none(self, kind, name, namespace=None, api_version=None):
        self.calls.append(('get', kind, name))
        obj = self.objects.get(self._key(kind, name, namespace))
        return copy.deepcopy(obj)

    def create(self, kind, obj, namespace=None, dry_run=False):
        self.calls.append(('create', kind, obj['metadata']['name'], dry_run))
        self._hook(dry_run)
        key = self._key(kind, obj['metadata']['name'], namespace)
        if key in self.objects:
            raise errors.AlreadyExists('create %s: already exists' % kind, status=409, reason='AlreadyExists')
        obj = copy.deepcopy(obj)
        obj['metadata']['resourceVersion'] = self._next()
        obj['metadata']['uid'] = 'uid-%s' % self.rv
        if not dry_run:
            self.objects[key] = obj
        return copy.deepcopy(obj)

    def replace(self, kind, obj, namespace=None, dry_run=False):
        self.calls.append(('replace', kind, obj['metadata']['name'], dry_run))
        self._hook(dry_run)
        key = self._key(kind, obj['metadata']['name'], namespace)
        current = self.objects.get(key)
        if current is None:
            raise errors.NotFound('replace %s: not found' % kind, status=404)
        if obj['metadata'].get('resourceVersion') != current['metadata']['resourceVersion']:
            raise errors.Conflict('replace %s: the object has been modified' % kind, status=409, reason='Conflict')
        obj = copy.deepcopy(obj)
        obj['metadata']['resourceVersion'] = self._next()
        if not dry_run:
            self.objects[key] = obj
        return copy.deepcopy(obj)

    def delete(self, kind, name, namespace=None, dry_run=False, resource_version=None, missing_ok=True,
               api_version=None):
        self.calls.append(('delete', kind, name, dry_run))
        self._hook(dry_run)
        key = self._key(kind, name, namespace)
        current = self.objects.get(key)
        if current is None:
            raise errors.NotFound('delete %s: not found' % kind, status=404)
        if resource_version and resource_version != current['metadata']['resourceVersion']:
            raise errors.Conflict('delete %s: precondition failed' % kind, status=409, reason='Conflict')
        if not dry_run:
            del self.objects[key]
        return True

    def writes(self, dry_run=False):
        return [c for c in self.calls if c[0] in ('create', 'replace', 'delete') and c[3] == dry_run]


class FakeModule:
    def __init__(self, client=None, check_mode=False, diff=True, **params):
        self.params = dict(namespace=NS, service='reviews', subsets=[], weights=None, virtual_service=None,
                           destination_rule=None, route_name=None, hosts=None, gateways=None,
                           api_version=t.DEFAULT_API_VERSION, state='present')
        self.params.update(params)
        self.check_mode = check_mode
        self.diff = diff
        self.client = client
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


def run(api, **params):
    return mod.run(FakeModule(client=api, **params))


def test_create_then_rerun_is_unchanged():
    api = FakeApi()
    result = run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    assert result['changed'] is True
    assert result['actions'] == {'destination_rule': 'create', 'virtual_service': 'create'}
    assert result['changes'] == [{'kind': 'DestinationRule', 'namespace': NS, 'name': 'reviews', 'action': 'created'},
                                 {'kind': 'VirtualService', 'namespace': NS, 'name': 'reviews', 'action': 'created'}]
    assert result['weights'] == {'v1': 90, 'v2': 10} and result['previous_weights'] == {}
    assert result['route'] == {'index': 0, 'name': 'reviews'}
    # the subsets were written before the route that uses them
    assert [c[1] for c in api.writes()] == ['DestinationRule', 'VirtualService']
    vs = api.objects[('VirtualService', NS, 'reviews')]
    assert t.route_weights(vs['spec']['http'][0], 'reviews', NS) == {'v1': 90, 'v2': 10}
    assert result['virtual_service']['spec'] == vs['spec']
    assert 'diff' in result

    api.calls = []
    again = run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    assert again['changed'] is False and api.writes() == []
    assert again['previous_weights'] == {'v1': 90, 'v2': 10}
    assert 'diff' not in again


def test_check_mode_sends_dry_runs_only():
    api = FakeApi()
    run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    before = copy.deepcopy(api.objects)
    api.calls = []
    result = run(api, check_mode=True, weights={'v1': 50, 'v2': 50})
    assert result['changed'] is True
    assert result['weights'] == {'v1': 50, 'v2': 50} and result['previous_weights'] == {'v1': 90, 'v2': 10}
    assert api.objects == before
    assert api.writes() == [] and api.writes(dry_run=True) == [('replace', 'VirtualService', 'reviews', True)]
    assert result['diff']['after']['virtual_service']['spec']['http'][0]['route'][1]['weight'] == 50


def test_conflicting_edit_is_reread_and_kept():
    api = FakeApi()
    run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})

    def someone_else(api):
        vs = api.objects[('VirtualService', NS, 'reviews')]
        vs['spec']['http'].insert(0, {'name': 'testers', 'match': [{'uri': {'prefix': '/beta'}}],
                                      'route': [{'destination': {'host': 'reviews', 'subset': 'v2'}}]})
        vs['metadata']['resourceVersion'] = api._next()

    api.before_write = someone_else
    result = run(api, weights={'v1': 50, 'v2': 50})
    assert result['changed'] is True
    http = api.objects[('VirtualService', NS, 'reviews')]['spec']['http']
    assert [r['name'] for r in http] == ['testers', 'reviews']
    assert t.route_weights(http[1], 'reviews', NS) == {'v1': 50, 'v2': 50}
    assert result['route'] == {'index': 1, 'name': 'reviews'}


def test_absent_removes_what_it_made_and_reports_it():
    api = FakeApi()
    run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    result = run(api, state='absent')
    assert result['changed'] is True
    assert result['actions'] == {'destination_rule': 'delete', 'virtual_service': 'delete'}
    assert result['removed_routes'] == ['reviews'] and result['removed_subsets'] == ['v1', 'v2']
    assert [c[1] for c in api.writes()][-2:] == ['VirtualService', 'DestinationRule']
    assert api.objects == {}
    assert result['virtual_service'] is None and result['destination_rule'] is None
    assert run(api, state='absent')['changed'] is False


def test_webhook_failure_is_explained():
    api = FakeApi()
    api.fail_writes = errors.TransientApiError(
        'create DestinationRule bookinfo/reviews failed: Internal error occurred: failed calling webhook '
        '"validation.istio.io": failed to call webhook: Post "https://istiod.istio-system.svc:443/validate": '
        'no endpoints available for service "istiod" (HTTP 500 InternalError)', status=500)
    with pytest.raises(errors.MeshopsError) as err:
        run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    text = str(err.value)
    assert 'no endpoints available for service "istiod"' in text
    assert 'istiod-default-validator' in text
    assert err.value.details['object'] == 'DestinationRule reviews'
    assert api.objects == {}


def test_missing_weights_and_bad_api_version_are_input_errors():
    with pytest.raises(errors.InvalidInput) as err:
        run(FakeApi(), subsets=SUBSETS)
    assert 'weights is required' in str(err.value)
    with pytest.raises(errors.InvalidInput) as err:
        run(FakeApi(), weights={'v1': 100}, api_version='v1')
    assert 'networking.istio.io' in str(err.value)


def test_query_reads_without_writing():
    api = FakeApi()
    info = FakeModule(client=api)
    empty = info_mod.run(info)
    assert empty['changed'] is False and empty['weights'] == {} and empty['managed'] is False
    run(api, subsets=SUBSETS, weights={'v1': 75, 'v2': 25})
    api.calls = []
    result = info_mod.run(info)
    assert result['changed'] is False and result['weights'] == {'v1': 75, 'v2': 25} and result['managed'] is True
    assert result['virtual_service']['metadata']['name'] == 'reviews'
    assert api.writes() == [] and api.writes(dry_run=True) == []


def test_missing_crds_or_namespace_are_explained():
    api = FakeApi()

    def not_served(kind, obj, namespace=None, dry_run=False):
        raise errors.NotFound('create %s bookinfo/reviews failed: the server could not find the requested resource '
                              '(HTTP 404 NotFound)' % kind, status=404)

    api.create = not_served
    with pytest.raises(errors.NotFound) as err:
        run(api, subsets=SUBSETS, weights={'v1': 100})
    assert 'namespace bookinfo exists' in str(err.value)
    assert 'networking.istio.io/v1beta1' in str(err.value)


def test_change_made_before_a_conflict_is_still_reported():
    api = FakeApi()
    wanted = t.plan_present(None, None, NS, 'reviews', {'v1': 90, 'v2': 10}, subsets=SUBSETS).virtual_service.after

    def parallel_run_creates_the_same_virtual_service(api):
        obj = copy.deepcopy(wanted)
        obj['metadata']['resourceVersion'] = api._next()
        api.objects[('VirtualService', NS, 'reviews')] = obj

    def on_first_write(api):
        api.before_write = parallel_run_creates_the_same_virtual_service

    api.before_write = on_first_write
    result = run(api, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    # the DestinationRule was created by this run, the VirtualService by the other one
    assert result['changed'] is True
    assert result['actions'] == {'destination_rule': 'create', 'virtual_service': 'none'}
    assert ('create', 'VirtualService', 'reviews', False) in api.writes()
    assert t.route_weights(api.objects[('VirtualService', NS, 'reviews')]['spec']['http'][0], 'reviews', NS) == {
        'v1': 90, 'v2': 10}
