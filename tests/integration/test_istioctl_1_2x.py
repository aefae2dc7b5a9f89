"""The istioctl path on Istio 1.2x objects: a mesh installed by (the stand-in of) istioctl 1.29.6 -- the istiod chart
rendered as istioctl does it, which makes tag default with its Service istiod-revision-tag-default -- upgraded to 1.30.3 with
istioctl by playbooks/upgrade.yml: precheck with --from-version, the tag Service moving with the webhook, cleanup
refusing the other method and leaving nothing of the old revision."""

from __future__ import annotations

import subprocess

import pytest

import upgrade_support as us
from kubesim.testing import KubeSim
from test_helm_upgrade import NEW_REV, NEW_VERSION, OLD_REV, OLD_VERSION, assert_nothing_left_of, new_pod_proxy, ok

NS = "istio-system"


def istioctl(sim, version, *args):
    env = dict(sim.kubectl_env(), KUBESIM_ISTIOCTL_VERSION=version)
    proc = subprocess.run([str(us.ISTIOCTL)] + list(args), env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def mesh(tmp_path):
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("empty", workdir=str(workdir), pod_ready_seconds=0.2, audit=False) as sim:
        istioctl(sim, OLD_VERSION, "install", "--set", "revision=" + OLD_REV, "-y")
        sim.kubectl("create", "namespace", "foo", check=True)
        sim.kubectl("label", "namespace", "foo", "istio.io/rev=default", check=True)
        sim.kubectl("create", "deployment", "foo", "-n", "foo", "--image=busybox", "--replicas=2", check=True)
        sim.wait_for(lambda: us.data_plane(sim)["foo/foo"]["ready"] == 2, timeout=120, message="foo ready")
        yield sim


def test_istioctl_upgrade_of_1_2x_objects(mesh, tmp_path):
    svc_path = "/api/v1/namespaces/%s/services/istiod-revision-tag-default" % NS
    assert mesh.get_json(svc_path)["spec"]["selector"]["istio.io/rev"] == OLD_REV
    inv = us.write_inventory(tmp_path / "inventory", {"sandbox": mesh.kubeconfig},
                             istio_canary_to_revision=NEW_REV, istio_canary_to_version=NEW_VERSION,
                             istio_canary_gateways=[], istio_canary_waves=[{"name": "wave1", "namespaces": ["foo"]}],
                             istio_canary_wait_timeout=120)

    def run(tags, **kw):
        return us.run_phase(inv, tags, workdir=tmp_path / "runs", env={"KUBESIM_ISTIOCTL_VERSION": NEW_VERSION}, **kw)

    precheck = ok(run("precheck"))
    checked = [e for e in precheck.tasks(status="ok") if e.get("action") == "meshops.istio.istio_precheck"][0]
    assert checked["precheck"]["command"] == "istioctl x precheck --from-version %s -o json" % OLD_VERSION
    ok(run("install"))
    dep = mesh.get_json("/apis/apps/v1/namespaces/%s/deployments/istiod-%s" % (NS, NEW_REV))
    assert "meta.helm.sh/release-name" not in (dep["metadata"].get("annotations") or {})
    ok(run("tag"))
    assert mesh.get_json(svc_path)["spec"]["selector"]["istio.io/rev"] == NEW_REV
    assert new_pod_proxy(mesh, "foo", "new-pod")[0] == NEW_REV
    ok(run("wave1,verify"))
    assert us.data_plane(mesh)["foo/foo"]["revisions"] == [NEW_REV]
    mixed = run("cleanup", extra_vars={"istio_canary_install_method": "helm"})
    why = " ".join(mixed.failures())
    assert not mixed.ok and "it was installed by istioctl" in why, why
    ok(run("cleanup"))
    assert_nothing_left_of(mesh, OLD_REV)
    assert mesh.get_json(svc_path)["spec"]["selector"]["istio.io/rev"] == NEW_REV
    assert new_pod_proxy(mesh, "foo", "after-cleanup") == (NEW_REV, NEW_VERSION)
