"""Replay the reference articles' canary upgrade (1.14.6 -> 1.15.4) by hand, with the real kubectl and
the stand-in istioctl, against the `blog` scenario; every assertion reads the cluster afterwards."""

from __future__ import annotations

import json
import subprocess

import pytest

OLD, NEW = "1-14-6", "1-15-4"
TAG_MWC = "istio-revision-tag-default"


def run(sim, *args, check=True, timeout=120):
    cp = subprocess.run(list(args), env=sim.kubectl_env(), capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {cp.returncode}\n{cp.stdout}\n{cp.stderr}")
    return cp


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def pods(sim, ns):
    return [p for p in kjson(sim, "get", "pods", "-n", ns)["items"] if not p["metadata"].get("deletionTimestamp")]


def proxy_images(pod):
    return [c["image"] for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"]


def repoint_tag_patch(sim, revision):
    """`kubectl patch` the tag webhook to another istiod: every webhook's service and the rev label."""
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", TAG_MWC)
    ops = [{"op": "replace", "path": "/metadata/labels/istio.io~1rev", "value": revision}]
    for i, _ in enumerate(mwc["webhooks"]):
        ops.append({"op": "replace", "path": f"/webhooks/{i}/clientConfig/service/name", "value": f"istiod-{revision}"})
    sim.kubectl("patch", "mutatingwebhookconfiguration", TAG_MWC, "--type=json", "-p", json.dumps(ops), check=True)


@pytest.fixture
def blog(kubesim_factory):
    return kubesim_factory("blog", pod_ready_seconds=0.2)


def test_article_canary_upgrade(blog):
    sim = blog
    # --- where we start
    out = sim.kubectl("get", "deployment", "-n", "istio-system", "-l", "app=istiod", check=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE"]
    assert [ln.split()[:2] for ln in lines[1:]] == [[f"istiod-{OLD}", "1/1"]]

    out = sim.kubectl("get", "mutatingwebhookconfigurations", check=True).stdout
    names = {ln.split()[0]: ln.split()[1] for ln in out.strip().splitlines()[1:]}
    assert names == {TAG_MWC: "4", f"istio-sidecar-injector-{OLD}": "2"}

    out = sim.kubectl("get", "namespace", "-L", "istio.io/rev", check=True).stdout
    revs = {ln.split()[0]: (ln.split()[3] if len(ln.split()) > 3 else "") for ln in out.strip().splitlines()[1:]}
    for ns in ("foo", "bar", "baz", "istio-ingress"):
        assert revs[ns] == "default"

    foo_before = {p["metadata"]["name"] for p in pods(sim, "foo")}
    for ns in ("foo", "bar", "baz", "istio-ingress"):
        for p in pods(sim, ns):
            assert proxy_images(p) == ["docker.io/istio/proxyv2:1.14.6"]
            assert json.loads(p["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"] == OLD

    # --- install the canary
    cp = run(sim, "istioctl", "install", "--set", f"revision={NEW}", "-y")
    assert "✔ Installation complete" in cp.stdout
    assert "Making this installation the default" not in cp.stdout  # a revision already serves the mesh
    dep = kjson(sim, "get", "deployment", f"istiod-{NEW}", "-n", "istio-system")
    assert dep["status"]["availableReplicas"] == 1
    labels = dep["metadata"]["labels"]
    assert labels["app"] == "istiod" and labels["istio.io/rev"] == NEW
    assert labels["operator.istio.io/component"] == "Pilot" and labels["operator.istio.io/version"] == "1.15.4"
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "docker.io/istio/pilot:1.15.4"
    for kind, name in (("service", f"istiod-{NEW}"), ("serviceaccount", f"istiod-{NEW}"),
                       ("configmap", f"istio-{NEW}"), ("configmap", f"istio-sidecar-injector-{NEW}")):
        assert kjson(sim, "get", kind, name, "-n", "istio-system")["metadata"]["labels"]["istio.io/rev"] == NEW
    mwc = kjson(sim, "get", "mutatingwebhookconfiguration", f"istio-sidecar-injector-{NEW}")
    assert [w["name"] for w in mwc["webhooks"]] == ["rev.namespace.sidecar-injector.istio.io",
                                                     "rev.object.sidecar-injector.istio.io"]
    kjson(sim, "get", "validatingwebhookconfiguration", f"istio-validator-{NEW}-istio-system")
    # the tag still points at the old revision: nothing moved yet
    assert kjson(sim, "get", "mutatingwebhookconfiguration", TAG_MWC)["metadata"]["labels"]["istio.io/rev"] == OLD

    # --- move tag default to the canary, restart bar
    repoint_tag_patch(sim, NEW)
    sim.kubectl("rollout", "restart", "deployment", "bar", "-n", "bar", check=True)
    cp = sim.kubectl("rollout", "status", "deployment", "bar", "-n", "bar", "--timeout=60s", check=True)
    assert 'deployment "bar" successfully rolled out' in cp.stdout
    bar = pods(sim, "bar")
    assert len(bar) == 2
    for p in bar:
        assert proxy_images(p) == ["docker.io/istio/proxyv2:1.15.4"]
        assert json.loads(p["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"] == NEW
        env = {e["name"]: e.get("value") for c in p["spec"]["containers"] if c["name"] == "istio-proxy"
               for e in c["env"]}
        assert env["CA_ADDR"] == f"istiod-{NEW}.istio-system.svc:15012"
        assert [c["name"] for c in p["spec"]["initContainers"]] == ["istio-init"]
        assert p["spec"]["initContainers"][0]["image"] == "docker.io/istio/proxyv2:1.15.4"
        assert p["metadata"]["labels"]["istio.io/rev"] == NEW
        assert all(c["ready"] for c in p["status"]["containerStatuses"])
    # foo untouched: same pods, same proxy
    assert {p["metadata"]["name"] for p in pods(sim, "foo")} == foo_before
    assert all(proxy_images(p) == ["docker.io/istio/proxyv2:1.14.6"] for p in pods(sim, "foo"))
    deploy = kjson(sim, "get", "deployment", "bar", "-n", "bar")
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    rs = kjson(sim, "get", "replicasets", "-n", "bar")["items"]
    assert sorted(r["spec"]["replicas"] for r in rs) == [0, 2]

    # the injected gateway is upgraded in place by a restart (gateway template: image swapped, no init)
    sim.kubectl("rollout", "restart", "deployment", "istio-ingressgateway", "-n", "istio-ingress", check=True)
    sim.kubectl("rollout", "status", "deployment", "istio-ingressgateway", "-n", "istio-ingress", "--timeout=60s",
                check=True)
    gw = pods(sim, "istio-ingress")
    assert len(gw) == 1
    assert [c["image"] for c in gw[0]["spec"]["containers"]] == ["docker.io/istio/proxyv2:1.15.4"]
    assert not gw[0]["spec"].get("initContainers")
    assert json.loads(gw[0]["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"] == NEW

    # istioctl sees both control planes and the split data plane
    ps = run(sim, "istioctl", "proxy-status").stdout
    assert sum(1 for ln in ps.splitlines() if ln.startswith("bar-") and ln.split()[-1] == "1.15.4") == 2
    assert sum(1 for ln in ps.splitlines() if ln.startswith("foo-") and ln.split()[-1] == "1.14.6") == 2
    tags = run(sim, "istioctl", "tag", "list").stdout.splitlines()
    assert tags[1].split()[:2] == ["default", NEW]

    # --- cleanup while foo and baz still run the old proxies: istioctl warns about them
    still_old = sum(1 for ns in ("foo", "baz") for _ in pods(sim, ns))
    assert still_old == 4
    cp = run(sim, "istioctl", "uninstall", "--revision", OLD, "-y")
    assert f"There are still {still_old} proxies pointing to the control plane revision {OLD}" in cp.stdout
    assert "✔ Uninstall complete" in cp.stdout
    assert sim.kubectl("get", "deployment", f"istiod-{OLD}", "-n", "istio-system").returncode != 0
    assert sim.kubectl("get", "service", f"istiod-{OLD}", "-n", "istio-system").returncode != 0
    assert sim.kubectl("get", "mutatingwebhookconfiguration", f"istio-sidecar-injector-{OLD}").returncode != 0
    assert sim.kubectl("get", "validatingwebhookconfiguration",
                       f"istio-validator-{OLD}-istio-system").returncode != 0
    sim.wait_for(lambda: not [p for p in pods(sim, "istio-system") if p["metadata"]["name"].startswith(f"istiod-{OLD}")],
                 message="old istiod pods gone")
    kjson(sim, "get", "deployment", f"istiod-{NEW}", "-n", "istio-system")
    # a second uninstall finds nothing and succeeds
    cp = run(sim, "istioctl", "uninstall", "--revision", OLD, "-y")
    assert "✔ Uninstall complete" in cp.stdout

    # the remaining namespaces still upgrade through the moved tag
    sim.kubectl("rollout", "restart", "deployment", "foo", "-n", "foo", check=True)
    sim.kubectl("rollout", "status", "deployment", "foo", "-n", "foo", "--timeout=60s", check=True)
    assert all(proxy_images(p) == ["docker.io/istio/proxyv2:1.15.4"] for p in pods(sim, "foo"))


def _events(sim, ns, reason):
    return [e for e in kjson(sim, "get", "events", "-n", ns)["items"] if e["reason"] == reason]


def test_webhook_left_on_removed_istiod_breaks_pod_creation(blog):
    """A tag whose label was moved but whose webhooks still call the old istiod: after the old revision
    is uninstalled, every pod creation in the tagged namespaces fails with the API server's own error."""
    sim = blog
    run(sim, "istioctl", "install", "--set", f"revision={NEW}", "-y")
    sim.kubectl("label", "mutatingwebhookconfiguration", TAG_MWC, f"istio.io/rev={NEW}", "--overwrite", check=True)
    run(sim, "istioctl", "uninstall", "--revision", OLD, "-y")
    assert kjson(sim, "get", "mutatingwebhookconfiguration", TAG_MWC)  # survived: its label says 1-15-4

    expected = ('Internal error occurred: failed calling webhook "rev.namespace.sidecar-injector.istio.io": '
                'failed to call webhook: Post "https://istiod-1-14-6.istio-system.svc:443/inject?timeout=10s": '
                'service "istiod-1-14-6" not found')
    cp = sim.kubectl("run", "probe", "-n", "foo", "--image=docker.io/curlimages/curl", "--restart=Never")
    assert cp.returncode != 0
    assert f"Error from server (InternalError): {expected}" in cp.stderr
    assert sim.kubectl("get", "pod", "probe", "-n", "foo").returncode != 0

    sim.kubectl("rollout", "restart", "deployment", "foo", "-n", "foo", check=True)

    def failed_rs():
        for rs in kjson(sim, "get", "replicasets", "-n", "foo")["items"]:
            for c in (rs.get("status") or {}).get("conditions") or []:
                if c["type"] == "ReplicaFailure":
                    return rs, c
        return None
    rs, cond = sim.wait_for(failed_rs, timeout=20, message="ReplicaFailure on the new ReplicaSet")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert cond["message"] == expected
    evs = sim.wait_for(lambda: _events(sim, "foo", "FailedCreate"), timeout=10, message="FailedCreate event")
    assert evs[0]["type"] == "Warning"
    assert evs[0]["message"] == f"Error creating: {expected}"
    assert evs[0]["involvedObject"]["name"] == rs["metadata"]["name"]
    cp = sim.kubectl("rollout", "status", "deployment", "foo", "-n", "foo", "--timeout=2s")
    assert cp.returncode != 0
    # the old pods keep serving; no new pod exists
    assert all(proxy_images(p) == ["docker.io/istio/proxyv2:1.14.6"] for p in pods(sim, "foo"))

    # fixing the webhook (pointing its services at the live istiod) lets the back-off retry succeed
    repoint_tag_patch(sim, NEW)
    sim.kubectl("rollout", "status", "deployment", "foo", "-n", "foo", "--timeout=60s", check=True)
    assert all(proxy_images(p) == ["docker.io/istio/proxyv2:1.15.4"] for p in pods(sim, "foo"))
    rs = kjson(sim, "get", "replicaset", rs["metadata"]["name"], "-n", "foo")
    assert not [c for c in rs["status"].get("conditions") or [] if c["type"] == "ReplicaFailure"]


def test_istiod_without_endpoints_rejects_pods_and_istio_config(blog):
    sim = blog
    sim.kubectl("scale", "deployment", f"istiod-{OLD}", "-n", "istio-system", "--replicas=0", check=True)
    sim.wait_for(lambda: not (kjson(sim, "get", "endpoints", f"istiod-{OLD}", "-n", "istio-system").get("subsets")),
                 message="istiod endpoints empty")
    cp = sim.kubectl("run", "probe", "-n", "bar", "--image=docker.io/curlimages/curl", "--restart=Never")
    assert cp.returncode != 0
    assert ('Internal error occurred: failed calling webhook "rev.namespace.sidecar-injector.istio.io": failed to '
            'call webhook: Post "https://istiod-1-14-6.istio-system.svc:443/inject?timeout=10s": no endpoints '
            'available for service "istiod-1-14-6"') in cp.stderr
    # Istio config goes through istiod-default-validator, which also points at the dead istiod
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
          "metadata": {"name": "bar", "namespace": "bar"},
          "spec": {"hosts": ["bar"], "http": [{"route": [{"destination": {"host": "bar"}}]}]}}
    cp = sim.kubectl("apply", "-f", "-", input=json.dumps(vs))
    assert cp.returncode != 0
    assert 'failed calling webhook "validation.istio.io"' in cp.stderr
    assert 'no endpoints available for service "istiod-1-14-6"' in cp.stderr
    # pods outside the mesh are not affected
    sim.kubectl("run", "plain", "-n", "default", "--image=docker.io/curlimages/curl", "--restart=Never", check=True)
    # istiod back: both work again, the config is validated for real
    sim.kubectl("scale", "deployment", f"istiod-{OLD}", "-n", "istio-system", "--replicas=1", check=True)
    sim.kubectl("rollout", "status", "deployment", f"istiod-{OLD}", "-n", "istio-system", "--timeout=30s", check=True)
    sim.wait_for(lambda: sim.kubectl("apply", "-f", "-", input=json.dumps(vs)).returncode == 0, timeout=10,
                 message="VirtualService accepted")
    bad = dict(vs, metadata={"name": "nohosts", "namespace": "bar"}, spec={"http": []})
    cp = sim.kubectl("apply", "-f", "-", input=json.dumps(bad))
    assert cp.returncode != 0
    assert ('admission webhook "validation.istio.io" denied the request: configuration is invalid: '
            'virtual service must have at least one host') in cp.stderr
    sim.kubectl("run", "probe", "-n", "bar", "--image=docker.io/curlimages/curl", "--restart=Never", check=True)
    probe = kjson(sim, "get", "pod", "probe", "-n", "bar")
    assert proxy_images(probe) == ["docker.io/istio/proxyv2:1.14.6"]
