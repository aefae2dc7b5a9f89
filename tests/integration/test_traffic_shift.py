"""meshops.istio.istio_traffic_shift through Ansible against the simulated cluster (scenario ``release``).

Every assertion reads what the cluster holds afterwards over its API (not the module's own answer):
the VirtualService/DestinationRule specs and their resourceVersions.
"""
import json

import pytest

import helpers

NS = 'bookinfo'
VS_PATH = '/apis/networking.istio.io/v1beta1/namespaces/%s/virtualservices' % NS
DR_PATH = '/apis/networking.istio.io/v1beta1/namespaces/%s/destinationrules' % NS
SUBSETS = [{'name': 'v1', 'labels': {'version': 'v1'}}, {'name': 'v2', 'labels': {'version': 'v2'}}]


def read(sim, path, name):
    code, _headers, body = sim.request('GET', '%s/%s' % (path, name))
    if code == 404:
        return None
    assert code == 200, (path, name, code, body[:300])
    return json.loads(body)


def vs(sim, name='reviews'):
    return read(sim, VS_PATH, name)


def dr(sim, name='reviews'):
    return read(sim, DR_PATH, name)


def rv(obj):
    return obj['metadata']['resourceVersion'] if obj else None


def weights(obj, index=0):
    """subset -> weight of http[index] as stored."""
    return {d['destination']['subset']: d.get('weight') for d in obj['spec']['http'][index]['route']}


def shift(sim, check=False, diff=False, **args):
    body = {'namespace': NS, 'service': 'reviews'}
    body.update(args)
    body.update(helpers.auth(sim))
    return helpers.run_module('istio_traffic_shift', body, check=check, diff=diff)


def apply(sim, manifest):
    sim.kubectl('apply', '-f', '-', input=json.dumps(manifest), check=True)


@pytest.fixture
def release(kubesim):
    return kubesim('release')


def test_shift_creates_is_idempotent_and_check_mode_changes_nothing(release):
    # check mode on a cluster without the objects: reported, not created
    result = shift(release, check=True, diff=True, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    assert not result.failed, result
    assert result['changed'] is True
    assert result['actions'] == {'destination_rule': 'create', 'virtual_service': 'create'}
    assert vs(release) is None and dr(release) is None

    result = shift(release, diff=True, subsets=SUBSETS, weights={'v1': 90, 'v2': 10})
    assert not result.failed, result
    assert result['changed'] is True and result['weights'] == {'v1': 90, 'v2': 10}
    assert result['diff']['after']['virtual_service']['spec']['http'][0]['route'][1]['weight'] == 10
    stored_vs, stored_dr = vs(release), dr(release)
    assert stored_vs['spec']['hosts'] == ['reviews']
    assert weights(stored_vs) == {'v1': 90, 'v2': 10}
    assert [d['destination']['host'] for d in stored_vs['spec']['http'][0]['route']] == ['reviews', 'reviews']
    assert stored_dr['spec'] == {'host': 'reviews', 'subsets': SUBSETS}
    assert json.loads(stored_vs['metadata']['annotations']['meshops.istio/traffic-shift']) == {
        'created': True, 'routes': ['reviews']}
    # kubectl sees the same
    out = release.kubectl('get', 'virtualservice', 'reviews', '-n', NS, '-o',
                          'jsonpath={.spec.http[0].route[*].weight}', check=True).stdout
    assert out.split() == ['90', '10']

    # the same again: no change, nothing written
    again = shift(release, subsets=SUBSETS, weights={'v2': 10, 'v1': 90})
    assert again['changed'] is False and again['previous_weights'] == {'v1': 90, 'v2': 10}
    assert (rv(vs(release)), rv(dr(release))) == (rv(stored_vs), rv(stored_dr))

    # check mode of a real change: reported with diff, dry run only
    halves = [{'subset': 'v1', 'weight': 50}, {'subset': 'v2', 'weight': 50}]
    check = shift(release, check=True, diff=True, weights=halves)
    assert check['changed'] is True and check['weights'] == {'v1': 50, 'v2': 50}
    assert check['actions'] == {'destination_rule': 'none', 'virtual_service': 'update'}
    assert check['diff']['before']['virtual_service']['spec']['http'][0]['route'][1]['weight'] == 10
    assert (rv(vs(release)), rv(dr(release))) == (rv(stored_vs), rv(stored_dr))
    assert weights(vs(release)) == {'v1': 90, 'v2': 10}

    moved = shift(release, weights={'v1': 50, 'v2': 50})
    assert moved['changed'] is True and moved['previous_weights'] == {'v1': 90, 'v2': 10}
    assert weights(vs(release)) == {'v1': 50, 'v2': 50}
    assert rv(dr(release)) == rv(stored_dr)

    # absent: the module created both, both go; then nothing left to do
    gone = shift(release, state='absent')
    assert gone['changed'] is True and gone['removed_subsets'] == ['v1', 'v2']
    assert vs(release) is None and dr(release) is None
    assert shift(release, state='absent')['changed'] is False


def test_user_objects_are_preserved_and_restored(release):
    user_vs = {
        'apiVersion': 'networking.istio.io/v1beta1', 'kind': 'VirtualService',
        'metadata': {'name': 'reviews', 'namespace': NS},
        'spec': {'hosts': ['reviews'], 'http': [
            {'name': 'testers', 'match': [{'headers': {'end-user': {'exact': 'jason'}}}],
             'route': [{'destination': {'host': 'reviews', 'subset': 'v1'}}]}]},
    }
    user_dr = {
        'apiVersion': 'networking.istio.io/v1beta1', 'kind': 'DestinationRule',
        'metadata': {'name': 'reviews', 'namespace': NS},
        'spec': {'host': 'reviews', 'trafficPolicy': {'loadBalancer': {'simple': 'LEAST_REQUEST'}},
                 'subsets': [{'name': 'v1', 'labels': {'version': 'v1'}}]},
    }
    apply(release, user_vs)
    apply(release, user_dr)
    before_vs, before_dr = vs(release)['spec'], dr(release)['spec']

    result = shift(release, subsets=SUBSETS, weights={'v1': 75, 'v2': 25})
    assert not result.failed, result
    assert result['route'] == {'index': 1, 'name': 'reviews'}
    stored_vs, stored_dr = vs(release), dr(release)
    assert stored_vs['spec']['http'][0] == before_vs['http'][0]          # the testers' route untouched
    assert weights(stored_vs, 1) == {'v1': 75, 'v2': 25}
    assert stored_dr['spec']['trafficPolicy'] == {'loadBalancer': {'simple': 'LEAST_REQUEST'}}
    assert stored_dr['spec']['subsets'] == SUBSETS
    assert json.loads(stored_dr['metadata']['annotations']['meshops.istio/traffic-shift']) == {
        'created': False, 'subsets': ['v2']}

    # a user edit in between is kept by the next shift
    release.kubectl('annotate', 'virtualservice', 'reviews', '-n', NS, 'team=reviews', check=True)
    assert shift(release, weights={'v1': 0, 'v2': 100})['changed'] is True
    stored_vs = vs(release)
    assert stored_vs['metadata']['annotations']['team'] == 'reviews'
    assert weights(stored_vs, 1) == {'v1': 0, 'v2': 100}

    # absent gives the user back exactly what they had
    gone = shift(release, state='absent')
    assert gone['changed'] is True
    assert gone['actions'] == {'destination_rule': 'update', 'virtual_service': 'update'}
    assert vs(release)['spec'] == before_vs and dr(release)['spec'] == before_dr
    assert 'meshops.istio/traffic-shift' not in (vs(release)['metadata'].get('annotations') or {})
    assert shift(release, state='absent')['changed'] is False


def test_bad_input_and_dead_istiod_behind_the_validator_change_nothing(release):
    # weights that do not add up are refused before anything is sent
    result = shift(release, subsets=SUBSETS, weights={'v1': 50, 'v2': 60})
    assert result.failed and 'weights must sum to 100, got 110 (v1=50 + v2=60)' in result['msg']
    assert vs(release) is None and dr(release) is None

    assert not shift(release, subsets=SUBSETS, weights={'v1': 90, 'v2': 10}).failed
    before = (rv(vs(release)), rv(dr(release)))
    # the default validator calls istiod-1-14-6; take its pods away
    release.kubectl('scale', 'deployment', 'istiod-1-14-6', '-n', 'istio-system', '--replicas=0', check=True)

    def no_endpoints():
        out = release.kubectl('get', 'endpoints', 'istiod-1-14-6', '-n', 'istio-system', '-o', 'json').stdout
        subsets = json.loads(out).get('subsets') or [] if out else []
        return not any(s.get('addresses') for s in subsets)

    release.wait_for(no_endpoints, timeout=60, message='istiod-1-14-6 without endpoints')
    result = shift(release, weights={'v1': 50, 'v2': 50})
    assert result.failed
    assert 'failed calling webhook' in result['msg']
    assert 'no endpoints available for service "istiod-1-14-6"' in result['msg']
    assert 'istiod-default-validator' in result['msg']
    assert (rv(vs(release)), rv(dr(release))) == before
    assert weights(vs(release)) == {'v1': 90, 'v2': 10}
