"""plugins/module_utils/helm.py: chart references, release values, the helm runner (with a fake helm), the install
method detected from Helm's ownership metadata and what the planner's HelmManager plans."""
import json
import os

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import helm as h, mesh, plan as p, upgrade_state as us
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

import fake_cluster as f


def owned(obj, release, namespace='istio-system'):
    obj['metadata'].setdefault('labels', {})['app.kubernetes.io/managed-by'] = 'Helm'
    obj['metadata'].setdefault('annotations', {}).update({'meta.helm.sh/release-name': release,
                                                          'meta.helm.sh/release-namespace': namespace})
    return obj


def helm_mesh(tag_on='1-14-6', new=True, tag_release='istiod-1-14-6'):
    replaced = ('istio-revision-tag-default', 'istiod-default-validator', 'istiod-1-14-6')
    objs = [o for o in f.blog() if o['metadata']['name'] not in replaced]
    objs += [owned(f.istiod('1-14-6', '1.14.6'), 'istiod-1-14-6'), owned(f.tag('default', tag_on), tag_release),
             owned(f.validator(tag_on), 'istio-base')]
    if new:
        objs += [owned(f.istiod('1-15-4', '1.15.4'), 'istiod-1-15-4'), f.service('1-15-4'), f.injector('1-15-4')]
    return mesh.MeshState.load(f.FakeCluster(objs))


def request(**kw):
    return p.UpgradeRequest('1-15-4', '1.15.4', **kw)


def test_chart_references(tmp_path):
    assert h.ChartRef('istiod').args('1.30.3') == ['istiod', '--repo', h.ISTIO_REPO_URL, '--version', '1.30.3']
    assert h.ChartRef('oci://r.example/istio/istiod').args('v1.30.3') == ['oci://r.example/istio/istiod',
                                                                          '--version', '1.30.3']
    local = h.ChartRef(str(tmp_path))
    assert local.local and local.args('1.30.3') == [str(tmp_path)]
    with pytest.raises(InvalidInput, match='does not exist'):
        h.ChartRef(str(tmp_path / 'missing'))
    with pytest.raises(InvalidInput, match='unknown key'):
        h.chart_refs({'istiod': 'istiod', 'pilot': 'x'})


def test_install_values_set_revision_no_tags_and_the_tag_of_a_local_chart(tmp_path):
    values = h.install_values('1-30-3', '1.30.3', h.ChartRef(str(tmp_path)), {'pilot': {'env': {'A': '1'}}})
    assert values == {'pilot': {'env': {'A': '1'}}, 'revision': '1-30-3', 'revisionTags': [],
                      'global': {'tag': '1.30.3'}}
    assert 'global' not in h.install_values('1-30-3', '1.30.3', h.ChartRef('istiod'))
    with pytest.raises(InvalidInput, match='revisionTags'):
        h.install_values('1-30-3', '1.30.3', h.ChartRef('istiod'), {'revisionTags': ['default']})
    with pytest.raises(InvalidInput, match='leave revision out'):
        h.install_values('1-30-3', '1.30.3', h.ChartRef('istiod'), {'revision': '1-29-6'})


class FakeHelm:
    def __init__(self, rc=0, out='', err=''):
        self.calls, self.rc, self.out, self.err, self.values_seen = [], rc, out, err, None

    def __call__(self, cmd, timeout, env):
        self.calls.append(cmd)
        if '-f' in cmd:
            with open(cmd[cmd.index('-f') + 1]) as handle:
                self.values_seen = json.load(handle)
        if cmd[1] == 'version':
            return 0, 'version.BuildInfo{Version:"v4.2.3", GitCommit:""}', ''
        return self.rc, self.out, self.err


def runner(tmp_path, fake):
    kubeconfig = tmp_path / 'kc'
    kubeconfig.write_text('apiVersion: v1\nkind: Config\n')
    binary = tmp_path / 'helm'
    binary.write_text('#!/bin/sh\n')
    binary.chmod(0o755)
    return h.Helm(str(binary), {'kubeconfig': str(kubeconfig), 'context': 'kubesim'}, runner=fake)


def test_helm_runs_with_the_modules_cluster_and_values_in_a_private_file(tmp_path):
    fake = FakeHelm()
    helm = runner(tmp_path, fake)
    assert helm.version() == '4.2.3'
    helm.upgrade('istiod-1-30-3', h.ChartRef('istiod'), 'istio-system', values={'revision': '1-30-3'},
                 version='1.30.3', set_json={'revisionTags': []})
    cmd = fake.calls[-1]
    assert cmd[1:4] == ['upgrade', 'istiod-1-30-3', 'istiod'] and '--install' in cmd and '--wait' in cmd
    assert cmd[cmd.index('--kubeconfig') + 1] == str(tmp_path / 'kc') and cmd[cmd.index('--kube-context') + 1] == 'kubesim'
    assert cmd[cmd.index('--set-json') + 1] == 'revisionTags=[]' and fake.values_seen == {'revision': '1-30-3'}
    assert not os.path.exists(cmd[cmd.index('-f') + 1])


def test_helm_failures_are_errors_that_say_what_failed(tmp_path):
    helm = runner(tmp_path, FakeHelm(rc=1, err='Error: UPGRADE FAILED: boom'))
    with pytest.raises(h.HelmError, match='failed to uninstall release istiod-1-29-6.*boom'):
        helm.uninstall('istiod-1-29-6', 'istio-system')
    with pytest.raises(h.HelmNotFound, match='helm not found'):
        h.Helm(str(tmp_path / 'nope')).version()


def test_install_method_detected_from_the_old_revision():
    state = helm_mesh()
    assert state.revision('1-14-6').install_method == 'helm' and state.revision('1-14-6').helm_release == 'istiod-1-14-6'
    assert state.tag('default').helm_release == 'istiod-1-14-6'
    assert h.detected_method(state, request()) == 'helm'
    assert h.detected_method(state, request(install_method='istioctl')) == 'istioctl'
    blog = mesh.MeshState.load(f.FakeCluster(f.blog()))
    assert h.detected_method(blog, request()) == 'istioctl'
    assert p.manager_for(state, request()).name == 'helm' and p.manager_for(blog, request()).name == 'istioctl'


def test_helm_manager_plans_the_release_and_the_tag_handover():
    state = helm_mesh(new=False)
    plan = p.UpgradePlan.build(state, us.empty_record(), request(), 'install')
    assert plan.manager == 'helm'
    assert ('HelmRelease', 'istiod-1-15-4', 'create') in [(o['kind'], o['name'], o['action'])
                                                          for o in plan.planned['objects']]
    plan = p.UpgradePlan.build(helm_mesh(), us.empty_record(), request(), 'tag')
    hands = [(o['name'], o['detail']) for o in plan.planned['objects'] if o['kind'] == 'HelmRelease']
    assert hands == [('istiod-1-14-6', 'revisionTags without default'),
                     ('istiod-1-15-4', 'revisionTags with default: the tag changes hands')]


def test_cleanup_refuses_mixed_methods_and_a_release_that_still_renders_the_tag():
    rec = us.empty_record()
    rec.update(to_revision='1-15-4', from_revision='1-14-6', from_version='1.14.6')
    state = helm_mesh(tag_on='1-15-4', tag_release='istiod-1-14-6')
    plan = p.UpgradePlan.build(state, rec, request(), 'cleanup')
    assert 'still renders revision tag default' in plan.refusal
    plan = p.UpgradePlan.build(helm_mesh(tag_on='1-15-4', tag_release='istiod-1-15-4'), rec,
                               request(install_method='istioctl'), 'cleanup')
    assert 'it was installed by helm' in plan.refusal and 'istio_canary_install_method: helm' in plan.refusal


def test_revision_objects_and_names_outside_istio_system():
    assert mesh.injector_name('1-30-3', 'istio-cp') == 'istio-sidecar-injector-1-30-3-istio-cp'
    assert mesh.tag_webhook_name('default', 'istio-cp') == 'istio-revision-tag-default-istio-cp'
    assert mesh.tag_webhook_name('default') == 'istio-revision-tag-default'
    names = set(n for _k, _ns, n in mesh.revision_objects('1-29-6'))
    assert {'istiod-clusterrole-1-29-6-istio-system', 'istio-validator-1-29-6-istio-system', 'values-1-29-6',
            'istio-sidecar-injector-1-29-6'} <= names


def test_precheck_json_findings_of_istioctl_1_2x():
    from ansible_collections.meshops.istio.plugins.module_utils import istioctl
    out = ('[{"code": "IST0169", "documentationUrl": "https://istio.io/v1.30/docs/reference/config/analysis/ist0169/",'
           ' "level": "Warning", "message": "tracer changed", "origin": "Service istio-system/zipkin"}]')
    found = istioctl.parse_precheck_json(out)
    assert found[0]['code'] == 'IST0169' and found[0]['level'] == 'Warning'
    assert found[0]['text'] == 'Warning [IST0169] (Service istio-system/zipkin) tracer changed'
    assert istioctl.parse_precheck_json('no json') is None


def _pod(ns, name, revision, version, owner=None):
    pod = f.pod(ns, 'x', 0, revision, version)
    pod['metadata']['name'] = name
    pod['metadata']['ownerReferences'] = [owner] if owner else []
    pod['metadata']['labels'] = {}
    return pod


def test_unmovable_pods_are_named_with_their_owner_and_far_behind_proxies():
    job_ref = {'kind': 'Job', 'name': 'report-manual', 'controller': True}
    job = {'kind': 'Job', 'metadata': {'name': 'report-manual', 'namespace': 'baz',
                                       'ownerReferences': [{'kind': 'CronJob', 'name': 'report'}]}}
    state = mesh.MeshState.from_objects(
        deployments=[f.istiod('1-14-6', '1.14.6'), f.istiod('1-15-4', '1.15.4')],
        mutating_webhooks=[f.injector('1-14-6'), f.injector('1-15-4'), f.tag('default', '1-15-4')],
        namespaces=[f.namespace('foo', {'istio.io/rev': 'default'}), f.namespace('baz', {'istio.io/rev': 'default'})],
        pods=[_pod('foo', 'debug', '1-14-6', '1.12.1'), _pod('baz', 'report-manual-x', '1-14-6', '1.14.6', job_ref)],
        jobs=[job])
    assert state.stale_unmovable() == ['baz/report-manual-x (CronJob report, Job report-manual, proxy 1.14.6)',
                                       'foo/debug (bare pod, proxy 1.12.1)']
    problems = [pr for pr in state.problems() if pr['kind'] == 'pod']
    assert [pr['name'] for pr in problems] == ['baz/report-manual-x', 'foo/debug']
    assert 'restart or delete it by hand' in problems[0]['problem']
    assert p.far_behind(state, '1.15.4') == ['foo/Pod/debug (1.12.1)']
