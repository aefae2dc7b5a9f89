"""The canary upgrade of an ambient mesh (kubesim scenario ``ambient``: Istio 1.29.6 by Helm in the ambient profile,
istio-cni and ztunnel on 3 nodes, foo and bar ambient with the waypoint ``waypoint`` in bar, baz on sidecars, the
Gateway API ingress ``ingress``) to 1.30.3 through playbooks/upgrade.yml, phase by phase, with real Helm: phases
out of order refused, ztunnel node by node with drains (kubesim records when each node had no ready ztunnel),
istiod's gateways and waypoints rolled by the tag move, verify, cleanup refused while a Gateway is pinned to the
old revision, and rollback in reverse.  (A sidecar-only mesh skipping the ambient phases: test_ambient.py and
test_ambient_upgrade.py.)"""

from __future__ import annotations

import json
import subprocess

import pytest

import upgrade_support as us
from kubesim.helm_scenario import HELM_BIN
from kubesim.testing import KubeSim

pytest.importorskip("helm_python")

OLD_REV, OLD_VERSION = "1-29-6", "1.29.6"
NEW_REV, NEW_VERSION = "1-30-3", "1.30.3"
CHARTS = us.TESTS / "kubesim" / "charts"
NS = "istio-system"
ENV = {"KUBESIM_ISTIOCTL_VERSION": NEW_VERSION}


@pytest.fixture
def mesh(tmp_path):
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("ambient", workdir=str(workdir), pod_ready_seconds=0.2, audit=False) as sim:
        yield sim


def inventory(tmp_path, sim, **extra):
    variables = dict(
        istio_canary_to_revision=NEW_REV, istio_canary_to_version=NEW_VERSION, istio_canary_wait_timeout=120,
        istio_canary_helm=str(HELM_BIN),
        istio_canary_helm_charts=dict((k, str(CHARTS / k)) for k in ("base", "istiod", "gateway", "cni", "ztunnel")),
        istio_canary_helm_values={"env": {"PILOT_ENABLE_AMBIENT": "true"}},
        istio_canary_waves=[{"name": "sidecars", "namespaces": ["baz"]}],
        istio_canary_gateways=[], istio_canary_ztunnel_drain=True, istio_canary_ztunnel_drain_timeout=60)
    variables.update(extra)
    return us.write_inventory(tmp_path / "inventory", {"sandbox": sim.kubeconfig}, **variables)


def run(inv, tags, tmp_path, **kw):
    return us.run_phase(inv, tags, workdir=tmp_path / "runs", env=ENV, **kw)


def ok(result):
    assert result.ok, (result.failures(), result.stdout[-3000:])
    return result


def refused(result, *words):
    assert not result.ok
    text = " ".join(result.failures())
    for word in words:
        assert word in text, text
    return text


def items(sim, path):
    status, _h, body = sim.request("GET", path)
    assert status == 200, body
    return [i for i in json.loads(body)["items"] if not i["metadata"].get("deletionTimestamp")]


def daemon(sim, selector, container):
    out = {}
    for p in items(sim, "/api/v1/namespaces/%s/pods?labelSelector=%s" % (NS, selector)):
        image = next(c["image"] for c in p["spec"]["containers"] if c["name"] == container)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
        out[p["spec"]["nodeName"]] = (image.rsplit(":", 1)[1], (p["metadata"].get("annotations") or {}).get(
            "istio.io/rev"), ready)
    return out


def gateway_pods(sim, ns, name):
    out = set()
    for p in items(sim, "/api/v1/namespaces/%s/pods?labelSelector=gateway.networking.k8s.io/gateway-name=%s"
                   % (ns, name)):
        image = p["spec"]["containers"][0]["image"]
        out.add((p["metadata"]["annotations"]["istio.io/rev"], image.rsplit(":", 1)[1]))
    return out


def cordoned(sim):
    return [n["metadata"]["name"] for n in items(sim, "/api/v1/nodes") if n["spec"].get("unschedulable")]


def redirected(sim, ns):
    return all((p["metadata"].get("annotations") or {}).get("ambient.istio.io/redirection") == "enabled"
               for p in items(sim, "/api/v1/namespaces/%s/pods?labelSelector=app=%s" % (ns, ns)))


def label_ingress(sim, value):
    cp = subprocess.run(["kubectl", "label", "--overwrite", "gateways.gateway.networking.k8s.io", "ingress", "-n",
                         "istio-ingress", "istio.io/rev%s" % ("=" + value if value else "-")],
                        env=sim.kubectl_env(), capture_output=True, text=True, timeout=60, check=False)
    assert cp.returncode == 0, cp.stderr


def test_whole_ambient_upgrade_phase_by_phase(mesh, tmp_path):
    """The mixed mesh: ambient namespaces (one with a waypoint), a sidecar namespace, and the ingress Gateway
    pinned to the old revision by its own istio.io/rev label until the end."""
    sim = mesh
    label_ingress(sim, OLD_REV)
    inv = inventory(tmp_path, sim)
    ok(run(inv, "precheck", tmp_path))
    # out of order: nothing moves before the new istiod, ztunnel waits for istio-cni, tags for ztunnel
    refused(run(inv, "cni", tmp_path), "Run the 'install' phase first")
    ok(run(inv, "install", tmp_path))
    refused(run(inv, "ztunnel", tmp_path), "Run the 'cni' phase first")
    refused(run(inv, "tag", tmp_path), "Run the 'cni' and 'ztunnel' phases first")
    assert set(v[0] for v in daemon(sim, "app=ztunnel", "istio-proxy").values()) == {OLD_VERSION}

    ok(run(inv, "cni", tmp_path))
    cni = daemon(sim, "k8s-app=istio-cni-node", "install-cni")
    assert len(cni) == 3 and all(v[0] == NEW_VERSION and v[2] for v in cni.values())
    ok(run(inv, "ztunnel", tmp_path))
    zt = daemon(sim, "app=ztunnel", "istio-proxy")
    assert len(zt) == 3 and all(v == (NEW_VERSION, NEW_REV, True) for v in zt.values()), zt
    assert cordoned(sim) == []
    log = sim.get_json("/kubesim/ztunnel")["nodes"]
    spans = sorted(entry["not_ready"][0] for entry in log.values())
    assert all(len(entry["not_ready"]) == 1 for entry in log.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans   # one node at a time
    assert redirected(sim, "foo") and redirected(sim, "bar")
    again = ok(run(inv, "ztunnel", tmp_path))
    assert not again.changed()

    ok(run(inv, "tag", tmp_path))
    gateways = ok(run(inv, "gateways", tmp_path))
    assert gateway_pods(sim, "bar", "waypoint") == {(NEW_REV, NEW_VERSION)}
    # pinned by its own label: istiod-1-29-6 keeps serving it, and the phase names it
    assert gateway_pods(sim, "istio-ingress", "ingress") == {(OLD_REV, OLD_VERSION)}
    assert "istio-ingress/ingress (istio.io/rev=%s)" % OLD_REV in json.dumps(gateways.summaries())
    ok(run(inv, "wave1", tmp_path))
    ok(run(inv, "verify", tmp_path))
    refused(run(inv, "cleanup", tmp_path), "gateway istio-ingress/ingress (pinned by istio.io/rev=%s)" % OLD_REV)
    assert len(items(sim, "/apis/apps/v1/namespaces/%s/deployments?labelSelector=app=istiod" % NS)) == 2
    # unpinned, it follows the tag: istiod-1-30-3 re-renders it, and cleanup may go
    label_ingress(sim, None)
    ok(run(inv, "gateways", tmp_path))
    assert gateway_pods(sim, "istio-ingress", "ingress") == {(NEW_REV, NEW_VERSION)}
    ok(run(inv, "cleanup", tmp_path))
    istiods = items(sim, "/apis/apps/v1/namespaces/%s/deployments?labelSelector=app=istiod" % NS)
    assert [d["metadata"]["name"] for d in istiods] == ["istiod-%s" % NEW_REV]
    assert gateway_pods(sim, "bar", "waypoint") == {(NEW_REV, NEW_VERSION)}


def test_rollback_goes_back_in_reverse(mesh, tmp_path):
    sim = mesh
    inv = inventory(tmp_path, sim, istio_canary_ztunnel_batch_size=2)
    for tags in ("precheck", "install", "cni", "ztunnel", "tag", "gateways"):
        ok(run(inv, tags, tmp_path))
    assert gateway_pods(sim, "bar", "waypoint") == {(NEW_REV, NEW_VERSION)}
    back = ok(run(inv, "rollback", tmp_path, extra_vars={"istio_canary_rollback": True}))
    assert back.ok
    zt = daemon(sim, "app=ztunnel", "istio-proxy")
    assert all(v == (OLD_VERSION, OLD_REV, True) for v in zt.values()), zt
    cni = daemon(sim, "k8s-app=istio-cni-node", "install-cni")
    assert all(v[0] == OLD_VERSION and v[2] for v in cni.values()), cni
    assert gateway_pods(sim, "bar", "waypoint") == {(OLD_REV, OLD_VERSION)}
    assert gateway_pods(sim, "istio-ingress", "ingress") == {(OLD_REV, OLD_VERSION)}
    assert cordoned(sim) == []
    assert redirected(sim, "foo") and redirected(sim, "bar")
