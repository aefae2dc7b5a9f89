"""The `legacy` scenario: revision-less istiod, namespaces on istio-injection=enabled, and the migration
to a revision the references describe (istio-injection wins over istio.io/rev until it is removed)."""

from __future__ import annotations

import json
import time
import subprocess


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def proxies(sim, ns):
    return [(json.loads(p["metadata"]["annotations"]["sidecar.istio.io/status"])["revision"],
             [c["image"] for c in p["spec"]["containers"] if c["name"] == "istio-proxy"][0])
            for p in kjson(sim, "get", "pods", "-n", ns)["items"] if not p["metadata"].get("deletionTimestamp")]


def test_legacy_injection_and_migration_to_a_revision(kubesim_factory):
    sim = kubesim_factory("legacy", pod_ready_seconds=0.1)
    out = sim.kubectl("get", "namespace", "-L", "istio-injection", "-L", "istio.io/rev", check=True).stdout
    rows = {ln.split()[0]: ln.split()[3:] for ln in out.strip().splitlines()[1:]}
    assert rows["foo"] == ["enabled"]
    names = sim.kubectl("get", "mutatingwebhookconfigurations", "-o", "name", check=True).stdout.split()
    assert names == ["mutatingwebhookconfiguration.admissionregistration.k8s.io/istio-sidecar-injector"]
    assert kjson(sim, "get", "deployment", "istiod", "-n", "istio-system")["status"]["availableReplicas"] == 1
    for ns in ("foo", "bar", "baz", "istio-ingress"):
        assert set(proxies(sim, ns)) == {("default", "docker.io/istio/proxyv2:1.14.6")}

    env = sim.kubectl_env()
    cp = subprocess.run(["istioctl", "install", "--set", "revision=1-15-4", "-y"], env=env, capture_output=True,
                        text=True, timeout=120)
    assert cp.returncode == 0, cp.stderr
    # istio-injection=enabled wins: adding the rev label alone changes nothing
    sim.kubectl("label", "namespace", "bar", "istio.io/rev=1-15-4", check=True)
    sim.kubectl("rollout", "restart", "deployment", "bar", "-n", "bar", check=True)
    sim.kubectl("rollout", "status", "deployment", "bar", "-n", "bar", "--timeout=60s", check=True)
    assert set(proxies(sim, "bar")) == {("default", "docker.io/istio/proxyv2:1.14.6")}
    # removing istio-injection hands the namespace to the revision
    sim.kubectl("label", "namespace", "bar", "istio-injection-", check=True)
    # kubectl refuses a second restart within the same second (restartedAt has second precision)
    time.sleep(1.1)
    sim.kubectl("rollout", "restart", "deployment", "bar", "-n", "bar", check=True)
    sim.kubectl("rollout", "status", "deployment", "bar", "-n", "bar", "--timeout=60s", check=True)
    assert set(proxies(sim, "bar")) == {("1-15-4", "docker.io/istio/proxyv2:1.15.4")}
    assert set(proxies(sim, "foo")) == {("default", "docker.io/istio/proxyv2:1.14.6")}
