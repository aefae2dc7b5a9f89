"""rollout_restart through Ansible against the simulated cluster (tests/kubesim, scenario blog).

Each test first does what the upgrade's earlier phases do -- install revision 1-15-4 beside 1-14-6 and
point the `default` tag at it (with the stand-in istioctl) -- then restarts namespaces and checks
what the cluster really holds afterwards.
"""
import json
import os
import signal
import subprocess
import time

import helpers as h


def move_default_tag(sim, revision=h.NEW_REV):
    cp = h.subprocess.run([h.PYTHON, h.ISTIOCTL, 'tag', 'set', 'default', '--revision', revision,
                           '--overwrite', '--kubeconfig', sim.kubeconfig],
                          env=h.ansible_env(), capture_output=True, text=True, timeout=120,
                          check=False)
    assert cp.returncode == 0, cp.stderr
    assert h.mwc_revision(sim, 'istio-revision-tag-default')[0] == revision


def upgraded(sim):
    h.install_revision(sim)
    move_default_tag(sim)
    return sim


def proxy_images(sim, ns, app):
    images = set()
    for pod in h.pods_of(sim, ns, app):
        for container in pod['spec']['containers']:
            if container['name'] == 'istio-proxy':
                images.add(container['image'])
    return sorted(images)


def pod_versions(sim, ns):
    return dict((p['metadata']['name'], p['metadata']['resourceVersion'])
                for p in h.list_items(sim, 'Pod', ns))


def restarted_at(sim, ns, name):
    dep = h.get(sim, 'Deployment', name, ns)
    return ((dep['spec']['template']['metadata'].get('annotations') or {})
            .get('kubectl.kubernetes.io/restartedAt'))


def workloads(res):
    return dict(('%s/%s/%s' % (w['namespace'], w['kind'], w['name']), w) for w in res['workloads'])


def test_wave_restarts_bar_onto_the_new_revision(blog):
    sim = upgraded(blog)
    foo_before = pod_versions(sim, 'foo')
    args = dict(h.auth(sim), namespaces=['bar'], wait_timeout=120)

    # check mode: reported, nothing patched
    before = h.snapshot(sim)
    res = h.run_module('rollout_restart', args, check=True, diff=True)
    assert res.rc == 0 and not res.failed, res
    assert res['changed'] is True
    got_bar = workloads(res)['bar/Deployment/bar']
    assert got_bar['action'] == 'restarted' and 'check mode' in got_bar['reason']
    assert (got_bar['from_version'], got_bar['revision']) == (h.OLD_VERSION, h.NEW_REV)
    assert h.snapshot(sim) == before
    assert restarted_at(sim, 'bar', 'bar') is None

    # the real run
    res = h.run_module('rollout_restart', args, diff=True)
    assert res.rc == 0 and not res.failed, res
    assert res['changed'] is True
    got_bar = workloads(res)['bar/Deployment/bar']
    assert got_bar['action'] == 'restarted', got_bar
    assert (got_bar['from_version'], got_bar['to_version'], got_bar['revision']) == \
        (h.OLD_VERSION, h.NEW_VERSION, h.NEW_REV)
    assert res['summary'] == {'restarted': 1, 'current': 0, 'failed': 0, 'skipped': 0, 'total': 1}
    # the cluster: bar's pods on the new proxy and revision, foo untouched
    assert h.proxy_revisions(sim, 'bar', 'bar') == [h.NEW_REV, h.NEW_REV]
    assert proxy_images(sim, 'bar', 'bar') == ['docker.io/istio/proxyv2:%s' % h.NEW_VERSION]
    assert h.proxy_revisions(sim, 'foo', 'foo') == [h.OLD_REV, h.OLD_REV]
    assert pod_versions(sim, 'foo') == foo_before
    # the restart is kubectl's: the template annotation, shown in the diff
    stamp = restarted_at(sim, 'bar', 'bar')
    assert stamp and res['diff']['after']['bar/Deployment/bar'] == {
        'kubectl.kubernetes.io/restartedAt': stamp}
    assert res['diff']['before']['bar/Deployment/bar'] == {'kubectl.kubernetes.io/restartedAt': None}

    # second run: nothing stale, nothing patched
    before = h.snapshot(sim)
    again = h.run_module('rollout_restart', args)
    assert again.rc == 0 and again['changed'] is False, again
    assert workloads(again)['bar/Deployment/bar']['action'] == 'current'
    assert h.snapshot(sim) == before


def test_request_budget_and_namespace_selector(blog):
    """Every namespace at once by label: at most 3 requests per restarted workload plus a constant."""
    sim = upgraded(blog)
    before = sim.stats()
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespace_selector='istio.io/rev=default',
                                               concurrency=0, wait_timeout=120))
    assert res.rc == 0 and not res.failed, res
    assert res['summary']['restarted'] == 4, res['summary']
    after = sim.stats()
    for ns, app in (('foo', 'foo'), ('bar', 'bar'), ('baz', 'baz'),
                    ('istio-ingress', 'istio-ingressgateway')):
        assert h.proxy_revisions(sim, ns, app) == [h.NEW_REV] * len(h.pods_of(sim, ns, app)), ns
    verbs = dict((verb, after['by_verb'].get(verb, 0) - before['by_verb'].get(verb, 0))
                 for verb in after['by_verb'])
    assert verbs.get('patch', 0) == 4
    # namespaces, webhooks, 3 workload kinds, pods, events (cluster-wide with 4 namespaces) + watches
    assert verbs.get('list', 0) <= 8, verbs
    assert sum(verbs.values()) <= 3 * 4 + 20, verbs


def test_crash_looping_proxy_fails_naming_the_workload(kubesim):
    sim = upgraded(kubesim('blog', crash_proxy_version=[h.NEW_VERSION]))
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['bar', 'foo'], concurrency=1,
                                               wait_timeout=90))
    assert res.failed and res.rc != 0, res
    got = workloads(res)
    assert got['bar/Deployment/bar']['action'] == 'failed'
    assert got['bar/Deployment/bar']['reason'].startswith('CrashLoopBackOff'), got
    assert 'bar/Deployment/bar: CrashLoopBackOff' in res['msg']
    # the wave stops: foo is not restarted
    assert got['foo/Deployment/foo']['action'] == 'skipped'
    assert restarted_at(sim, 'foo', 'foo') is None
    assert h.proxy_revisions(sim, 'foo', 'foo') == [h.OLD_REV, h.OLD_REV]


def test_paused_deployment_is_reported_and_missing_namespace_refused(blog):
    sim = upgraded(blog)
    code, _headers, body = sim.request(
        'PATCH', '/apis/apps/v1/namespaces/bar/deployments/bar', {'spec': {'paused': True}},
        headers={'Content-Type': 'application/merge-patch+json'})
    assert code == 200, body

    def pause_observed():
        # the deployment controller records the pause in the status (Progressing DeploymentPaused) on its own
        # time: read the resourceVersion after that write, not before it
        d = h.get(sim, 'Deployment', 'bar', 'bar')
        conds = {c['type']: c for c in d.get('status', {}).get('conditions', [])}
        return conds.get('Progressing', {}).get('reason') == 'DeploymentPaused' and d
    rv = sim.wait_for(pause_observed, timeout=60, message='pause observed')['metadata']['resourceVersion']
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['bar']))
    assert res.rc == 0 and not res.failed, res
    got_bar = workloads(res)['bar/Deployment/bar']
    assert got_bar['action'] == 'skipped' and 'paused' in got_bar['reason']
    assert res['changed'] is False
    assert h.get(sim, 'Deployment', 'bar', 'bar')['metadata']['resourceVersion'] == rv

    # a namespace that does not exist: refused before anything is touched
    before = h.snapshot(sim)
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['foo', 'nope']))
    assert res.failed and 'nope' in res['msg'], res
    assert h.snapshot(sim) == before


BAR_DB = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: bar}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "docker.io/library/postgres:16"}]}
"""


def test_webhook_of_a_removed_istiod_is_the_failure_reason(blog):
    sim = blog
    cp = sim.kubectl('apply', '-f', '-', input=BAR_DB)
    assert cp.returncode == 0, cp.stderr
    sim.wait_for(lambda: h.pods_of(sim, 'bar', 'db'), timeout=60, message='bar/db running')
    upgraded(sim)
    cp = sim.kubectl('delete', 'deployment', 'istiod-%s' % h.NEW_REV, '-n', 'istio-system')
    assert cp.returncode == 0, cp.stderr
    sim.wait_for(lambda: not [p for p in h.list_items(sim, 'Pod', 'istio-system')
                              if p['metadata']['name'].startswith('istiod-%s' % h.NEW_REV)],
                 timeout=60, message='istiod-1-15-4 pods gone')
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['bar'], concurrency=0,
                                               wait_timeout=60))
    assert res.failed, res
    got = workloads(res)
    for key in ('bar/Deployment/bar', 'bar/StatefulSet/db'):
        assert got[key]['action'] == 'failed', got
        assert 'failed calling webhook' in got[key]['reason'], got[key]
        assert 'istiod-%s' % h.NEW_REV in got[key]['reason']
    # the Deployment keeps its old pods, with their sidecars
    assert h.proxy_revisions(sim, 'bar', 'bar') == [h.OLD_REV, h.OLD_REV]


STATEFUL = """
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: baz}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "docker.io/library/postgres:16"}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: baz}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "docker.io/library/busybox:1"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: manual, namespace: baz}
spec:
  replicas: 1
  serviceName: manual
  updateStrategy: {type: OnDelete}
  selector: {matchLabels: {app: manual}}
  template:
    metadata: {labels: {app: manual}}
    spec: {containers: [{name: manual, image: "docker.io/library/busybox:1"}]}
"""


def test_statefulsets_and_daemonsets(blog):
    sim = blog
    cp = sim.kubectl('apply', '-f', '-', input=STATEFUL)
    assert cp.returncode == 0, cp.stderr
    sim.wait_for(lambda: len(h.pods_of(sim, 'baz', 'db')) == 2 and h.pods_of(sim, 'baz', 'agent') and
                 h.pods_of(sim, 'baz', 'manual'), timeout=60, message='baz workloads running')
    upgraded(sim)
    res = h.run_module('rollout_restart', dict(h.auth(sim), namespaces=['baz'], wait_timeout=120))
    assert res.rc == 0 and not res.failed, res
    got = workloads(res)
    assert got['baz/StatefulSet/db']['action'] == 'restarted', got
    assert got['baz/DaemonSet/agent']['action'] == 'restarted', got
    assert got['baz/Deployment/baz']['action'] == 'restarted', got
    assert got['baz/StatefulSet/manual']['action'] == 'skipped'
    assert 'OnDelete' in got['baz/StatefulSet/manual']['reason']
    for app in ('db', 'agent', 'baz'):
        pods = h.pods_of(sim, 'baz', app)
        assert pods and h.proxy_revisions(sim, 'baz', app) == [h.NEW_REV] * len(pods), app
    assert h.proxy_revisions(sim, 'baz', 'manual') == [h.OLD_REV]
    assert json.dumps(got['baz/StatefulSet/db']['to_version']) == json.dumps(h.NEW_VERSION)


def test_rerun_after_a_killed_run_completes_the_wave_without_restarting_twice(kubesim):
    """SIGKILL the module right after its first restart; the re-run waits for that rollout instead
    of restarting it again, and restarts what is still stale."""
    sim = upgraded(kubesim('blog', pod_ready_seconds=3))
    args = dict(h.auth(sim), namespaces=['foo', 'bar', 'baz'], concurrency=1, wait_timeout=120)
    cmd = [h.ANSIBLE, 'localhost', '-c', 'local', '-i', 'localhost,',
           '-e', 'ansible_python_interpreter=%s' % h.PYTHON,
           '-m', 'meshops.istio.rollout_restart', '-a', json.dumps(args)]
    proc = subprocess.Popen(cmd, cwd=h.REPO, env=h.ansible_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        sim.wait_for(lambda: restarted_at(sim, 'foo', 'foo'), timeout=120, interval=0.05,
                     message='first restart')
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    first = restarted_at(sim, 'foo', 'foo')
    assert restarted_at(sim, 'bar', 'bar') is None   # concurrency 1: bar was still waiting its turn
    time.sleep(1.1)  # a second restart would carry another timestamp

    res = h.run_module('rollout_restart', args)
    assert res.rc == 0 and not res.failed, res
    got = workloads(res)
    assert restarted_at(sim, 'foo', 'foo') == first, 'foo was restarted twice'
    assert got['foo/Deployment/foo']['action'] in ('restarted', 'current')
    if got['foo/Deployment/foo']['action'] == 'restarted':
        assert 'already in progress' in got['foo/Deployment/foo']['reason']
    assert got['bar/Deployment/bar']['action'] == 'restarted'
    assert got['baz/Deployment/baz']['action'] == 'restarted'
    for ns in ('foo', 'bar', 'baz'):
        assert h.proxy_revisions(sim, ns, ns) == [h.NEW_REV, h.NEW_REV], ns
