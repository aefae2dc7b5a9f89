"""The canary upgrade of a Helm-installed mesh (kubesim scenario ``helm``: Istio 1.29.6 installed by real Helm,
releases istio-base, istiod-1-29-6 with revisionTags [default], istio-ingressgateway; native sidecars) to 1.30.3,
phase by phase through playbooks/upgrade.yml, with real Helm (tests/kubesim/bin/helm, Helm v4's SDK) both in the
collection and in the checks: what Helm holds (its release records) and what the cluster holds afterwards.
"""

from __future__ import annotations

import json
import subprocess

import pytest

import upgrade_support as us
from kubesim.helm_scenario import HELM_BIN
from kubesim.testing import KubeSim

OLD_REV, OLD_VERSION = "1-29-6", "1.29.6"
NEW_REV, NEW_VERSION = "1-30-3", "1.30.3"
CHARTS = us.TESTS / "kubesim" / "charts"
NS = "istio-system"
ENV = {"KUBESIM_ISTIOCTL_VERSION": NEW_VERSION}


@pytest.fixture
def mesh(tmp_path):
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("helm", workdir=str(workdir), pod_ready_seconds=0.2, audit=False) as sim:
        yield sim


def inventory(tmp_path, sim, **extra):
    variables = dict(
        istio_canary_to_revision=NEW_REV, istio_canary_to_version=NEW_VERSION, istio_canary_wait_timeout=120,
        istio_canary_helm=str(HELM_BIN),
        istio_canary_helm_charts={"base": str(CHARTS / "base"), "istiod": str(CHARTS / "istiod"),
                                  "gateway": str(CHARTS / "gateway")},
        istio_canary_helm_values={"pilot": {"env": {"PILOT_ENABLE_STATUS": "true"}}})
    variables.update(extra)
    return us.write_inventory(tmp_path / "inventory", {"sandbox": sim.kubeconfig}, **variables)


def run(inv, tags, tmp_path, **kw):
    return us.run_phase(inv, tags, workdir=tmp_path / "runs", env=ENV, **kw)


def ok(result):
    assert result.ok, result
    return result


def helm(sim, *args, check=True):
    env = sim.kubectl_env()
    proc = subprocess.run([str(HELM_BIN)] + list(args), env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def releases(sim):
    return dict((r["name"], r) for r in json.loads(helm(sim, "list", "-A", "-o", "json").stdout))


def values(sim, release, namespace=NS):
    return json.loads(helm(sim, "get", "values", release, "-n", namespace, "-o", "json").stdout) or {}


def obj(sim, path):
    status, _headers, body = sim.request("GET", path)
    if status == 404:
        return None
    assert status == 200, body
    return json.loads(body)


MWC = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
VWC = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"


def owner(item):
    return ((item or {}).get("metadata") or {}).get("annotations", {}).get("meta.helm.sh/release-name")


def tag_state(sim):
    mwc = obj(sim, MWC + "istio-revision-tag-default")
    svc = obj(sim, "/api/v1/namespaces/%s/services/istiod-revision-tag-default" % NS)
    return {
        "rev": (mwc["metadata"]["labels"] or {}).get("istio.io/rev") if mwc else None,
        "services": sorted(set(w["clientConfig"]["service"]["name"] for w in mwc["webhooks"])) if mwc else None,
        "owner": owner(mwc),
        "service_selector": (svc["spec"].get("selector") or {}).get("istio.io/rev") if svc else None,
        "service_owner": owner(svc),
        "keep": ((mwc or {}).get("metadata") or {}).get("annotations", {}).get("helm.sh/resource-policy"),
    }


def new_pod_proxy(sim, namespace, name):
    """A bare pod created now in ``namespace``: the revision and image of the istio-proxy injected into it."""
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [{"name": "app", "image": "busybox", "command": ["sleep", "infinity"]}]}}
    status, _headers, answer = sim.request("POST", "/api/v1/namespaces/%s/pods" % namespace, body)
    assert status < 300, answer
    pod = sim.get_json("/api/v1/namespaces/%s/pods/%s" % (namespace, name))
    status = json.loads(pod["metadata"].get("annotations", {}).get("sidecar.istio.io/status") or "{}")
    return status.get("revision"), us._proxy(pod)


def assert_nothing_left_of(sim, revision):
    names = [("apis/apps/v1", "deployments", "istiod-" + revision), ("api/v1", "services", "istiod-" + revision),
             ("api/v1", "serviceaccounts", "istiod-" + revision), ("api/v1", "configmaps", "istio-" + revision),
             ("api/v1", "configmaps", "istio-sidecar-injector-" + revision),
             ("api/v1", "configmaps", "values-" + revision),
             ("apis/rbac.authorization.k8s.io/v1", "roles", "istiod-" + revision),
             ("apis/rbac.authorization.k8s.io/v1", "rolebindings", "istiod-" + revision)]
    left = [n for g, k, n in names if obj(sim, "/%s/namespaces/%s/%s/%s" % (g, NS, k, n))]
    for kind in ("clusterroles", "clusterrolebindings"):
        for item in sim.get_json("/apis/rbac.authorization.k8s.io/v1/" + kind)["items"]:
            if revision in item["metadata"]["name"]:
                left.append(item["metadata"]["name"])
    for path in (MWC, VWC):
        for item in sim.get_json(path.rstrip("/"))["items"]:
            labels = item["metadata"].get("labels") or {}
            if labels.get("istio.io/rev") == revision or revision in item["metadata"]["name"]:
                left.append(item["metadata"]["name"])
    for item in sim.get_json("/api/v1/namespaces/%s/secrets" % NS)["items"]:
        if "istiod-" + revision in item["metadata"]["name"]:
            left.append(item["metadata"]["name"])
    assert not left, left


def test_helm_upgrade_phase_by_phase(mesh, tmp_path):
    inv = inventory(tmp_path, mesh)
    precheck = ok(run(inv, "precheck", tmp_path))
    checked = [e for e in precheck.tasks(status="ok") if e.get("action") == "meshops.istio.istio_precheck"][0]
    assert checked["precheck"]["command"] == "istioctl x precheck --from-version %s -o json" % OLD_VERSION
    # install: release istiod-1-30-3 running 1.30.3 beside the old one; the tag is untouched
    install = ok(run(inv, "install", tmp_path))
    rel = releases(mesh)
    assert rel["istiod-%s" % NEW_REV]["status"] == "deployed" and rel["istiod-%s" % OLD_REV]["status"] == "deployed"
    assert values(mesh, "istiod-" + NEW_REV)["revision"] == NEW_REV
    assert values(mesh, "istiod-" + NEW_REV)["revisionTags"] == []
    cp = us.control_plane(mesh)
    assert cp["istiod"]["istiod-" + NEW_REV] == {"version": NEW_VERSION, "ready": True}
    assert owner(obj(mesh, "/apis/apps/v1/namespaces/%s/deployments/istiod-%s" % (NS, NEW_REV))) == "istiod-" + NEW_REV
    assert tag_state(mesh)["rev"] == OLD_REV
    assert any(e.get("changed") for e in install.tasks(status="ok") if e.get("action") == "meshops.istio.istio_revision")
    again = ok(run(inv, "install", tmp_path))
    assert not [e for e in again.tasks(status="ok") if e.get("changed") and e.get("action") == "meshops.istio.istio_revision"]

    # tag: moved and handed over to the new release (webhook and Service)
    ok(run(inv, "tag", tmp_path))
    tag = tag_state(mesh)
    assert tag == {"rev": NEW_REV, "services": ["istiod-" + NEW_REV], "owner": "istiod-" + NEW_REV,
                   "service_selector": NEW_REV, "service_owner": "istiod-" + NEW_REV, "keep": None}, tag
    assert values(mesh, "istiod-" + OLD_REV).get("revisionTags") == []
    assert values(mesh, "istiod-" + NEW_REV)["revisionTags"] == ["default"]
    assert values(mesh, "istio-base")["defaultRevision"] == NEW_REV
    validator = obj(mesh, VWC + "istiod-default-validator")
    assert validator["webhooks"][0]["clientConfig"]["service"]["name"] == "istiod-" + NEW_REV
    rerun = ok(run(inv, "tag", tmp_path))
    assert rerun.changed() == 0, rerun.changed_tasks()

    ok(run(inv, "gateways", tmp_path))
    ok(run(inv, "wave1", tmp_path))
    ok(run(inv, "wave2", tmp_path))
    verify = ok(run(inv, "verify", tmp_path))
    summary = [m for m in verify.summaries() if m.get("phase") == "verify"][-1]
    # the pods no restart moves are named (bare pod, Job pod, the pod of a CronJob's Job)
    unmovable = " ".join(summary["not_movable_by_restart"])
    assert "foo/debug (bare pod" in unmovable and "(Job migrate" in unmovable, unmovable
    assert "(CronJob report, Job report-manual" in unmovable, unmovable
    assert summary["proxies_more_than_one_minor_behind"] == []
    plane = us.data_plane(mesh)
    for name in ("foo/foo", "bar/bar", "baz/baz", "istio-ingress/istio-ingressgateway"):
        assert plane[name]["versions"] == [NEW_VERSION] and plane[name]["revisions"] == [NEW_REV], (name, plane[name])

    # the pods no restart moves (bare pod, Job and CronJob pods) keep cleanup from removing the old revision
    refused = run(inv, "cleanup", tmp_path)
    why = " ".join(refused.failures())
    assert not refused.ok and "restart or delete them by hand: " in why and "foo/debug (bare pod" in why, why
    assert "istiod-" + OLD_REV in releases(mesh)
    for path in ("/api/v1/namespaces/foo/pods/debug", "/apis/batch/v1/namespaces/bar/jobs/migrate",
                 "/apis/batch/v1/namespaces/baz/jobs/report-manual"):
        mesh.request("DELETE", path + "?propagationPolicy=Foreground")
    mesh.wait_for(lambda: not [p for p in mesh.get_json("/api/v1/pods")["items"]
                               if "1-29-6" in (p["metadata"].get("annotations") or {}).get("sidecar.istio.io/status", "")],
                  timeout=120, message="old pods gone")

    # cleanup: helm uninstall of the old release; nothing of it is left; the tag and validator live on
    ok(run(inv, "cleanup", tmp_path))
    rel = releases(mesh)
    assert "istiod-" + OLD_REV not in rel and rel["istiod-" + NEW_REV]["status"] == "deployed"
    assert_nothing_left_of(mesh, OLD_REV)
    assert tag_state(mesh)["rev"] == NEW_REV
    assert new_pod_proxy(mesh, "bar", "after-cleanup") == (NEW_REV, NEW_VERSION)
    assert ok(run(inv, "cleanup", tmp_path)).changed() == 0


def test_helm_commands_on_the_old_release_cannot_move_or_delete_the_tag(mesh, tmp_path):
    inv = inventory(tmp_path, mesh)
    # check mode plans the Helm steps and changes nothing (release revisions, resourceVersions)
    before = dict((name, r["revision"]) for name, r in releases(mesh).items())
    tag_rv = obj(mesh, MWC + "istio-revision-tag-default")["metadata"]["resourceVersion"]
    planned = ok(run(inv, "precheck,install,tag", tmp_path, check=True, diff=True))
    report = " ".join(str(line) for e in planned.tasks(status="ok") for line in (e.get("plan") or {}).get("report") or [])
    assert "create HelmRelease istio-system/istiod-1-30-3" in report, report
    assert "update HelmRelease istio-system/istiod-1-29-6 (revisionTags without default)" in report, report
    assert dict((name, r["revision"]) for name, r in releases(mesh).items()) == before
    assert obj(mesh, MWC + "istio-revision-tag-default")["metadata"]["resourceVersion"] == tag_rv
    ok(run(inv, "precheck,install", tmp_path))
    ok(run(inv, "tag", tmp_path))
    # the operator's natural helm upgrade of the old release, asking for the tag again: refused by Helm itself
    upgrade = helm(mesh, "upgrade", "istiod-" + OLD_REV, str(CHARTS / "istiod"), "-n", NS, "--reuse-values",
                   "--set-json", 'revisionTags=["default"]', check=False)
    assert upgrade.returncode != 0 and "invalid ownership metadata" in upgrade.stderr, upgrade.stderr
    # a plain upgrade of it (its values) leaves the tag alone
    helm(mesh, "upgrade", "istiod-" + OLD_REV, str(CHARTS / "istiod"), "-n", NS, "--reuse-values")
    assert tag_state(mesh)["rev"] == NEW_REV
    # helm uninstall of the old release: the tag and its Service stay; new pods get the new proxy
    helm(mesh, "uninstall", "istiod-" + OLD_REV, "-n", NS)
    tag = tag_state(mesh)
    assert tag["rev"] == NEW_REV and tag["owner"] == "istiod-" + NEW_REV and tag["service_selector"] == NEW_REV
    assert new_pod_proxy(mesh, "foo", "after-uninstall") == (NEW_REV, NEW_VERSION)


def test_helm_rollback_hands_the_tag_back(mesh, tmp_path):
    inv = inventory(tmp_path, mesh)
    ok(run(inv, "precheck,install", tmp_path))
    ok(run(inv, "tag", tmp_path))
    ok(run(inv, "wave1", tmp_path))
    assert us.data_plane(mesh)["bar/bar"]["revisions"] == [NEW_REV]
    ok(run(inv, "rollback", tmp_path, extra_vars={"istio_canary_rollback": True}))
    tag = tag_state(mesh)
    assert tag["rev"] == OLD_REV and tag["owner"] == "istiod-" + OLD_REV and tag["service_selector"] == OLD_REV, tag
    assert values(mesh, "istiod-" + OLD_REV)["revisionTags"] == ["default"]
    assert values(mesh, "istiod-" + NEW_REV).get("revisionTags") == []
    assert values(mesh, "istio-base")["defaultRevision"] == OLD_REV
    plane = us.data_plane(mesh)
    assert plane["bar/bar"]["revisions"] == [OLD_REV] and plane["bar/bar"]["versions"] == [OLD_VERSION]
    # the new release can now go without taking the tag with it
    helm(mesh, "uninstall", "istiod-" + NEW_REV, "-n", NS)
    assert tag_state(mesh)["rev"] == OLD_REV


def test_helm_wave_names_a_crashing_native_sidecar(tmp_path):
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("helm", workdir=str(workdir), pod_ready_seconds=0.2, audit=False,
                 crash_proxy_version=[NEW_VERSION]) as sim:
        inv = inventory(tmp_path, sim, istio_canary_wait_timeout=60)
        ok(run(inv, "precheck,install", tmp_path))
        ok(run(inv, "tag", tmp_path))
        wave = run(inv, "wave1", tmp_path)
        why = " ".join(wave.failures())
        assert not wave.ok and "native sidecar istio-proxy: Init:CrashLoopBackOff" in why, why
        pods = [p for p in sim.get_json("/api/v1/namespaces/bar/pods")["items"]
                if NEW_REV in (p["metadata"].get("annotations") or {}).get("sidecar.istio.io/status", "")]
        assert pods and all(p["status"]["phase"] == "Pending" for p in pods)
