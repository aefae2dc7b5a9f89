"""The upgrade's verify phase with the metric gate, against a REAL Prometheus scraping the simulated cluster.

Scenario ``blog`` with ``--bad-proxy-version 1.15.4``: the new proxies start and become Ready (the wave
itself succeeds) but answer a third of the requests with 5xx, slowly.  ``--tags verify`` with
``istio_canary_metrics`` and ``istio_canary_auto_rollback: true`` must fail naming bar/bar, after rolling
back in the same play: the cluster is on 1.14.6 again afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import upgrade_support as us
from integration.prometheus import PrometheusServer, prometheus_binary
from kubesim.testing import KubeSim

OLD_REV, OLD_VERSION = "1-14-6", "1.14.6"
NEW_REV, NEW_VERSION = "1-15-4", "1.15.4"
VERIFY_HOOK = Path(us.ROOT) / "roles" / "istio_canary" / "tasks" / "verify_metrics.yml"

pytestmark = [
    pytest.mark.skipif(prometheus_binary() is None, reason="prometheus is not installed (make prometheus)"),
    pytest.mark.skipif("meshops.istio.metric_gate" not in VERIFY_HOOK.read_text(encoding="utf-8"),
                       reason="the verify phase does not include the metric_gate role yet"),
]


def ok(run):
    assert run.ok, run
    return run


def test_bad_proxy_fails_verify_and_auto_rollback_restores_the_old_revision(tmp_path):
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with KubeSim("blog", workdir=str(workdir), pod_ready_seconds=0.2, audit=False,
                 bad_proxy_version=[NEW_VERSION], seed=11) as sim:
        prom = PrometheusServer.for_kubesim(sim.url, kubeconfig=sim.kubeconfig).start()
        try:
            prom.wait_for_scrape()
            inv = us.write_inventory(tmp_path / "inventory", {"blog": sim.kubeconfig}, istio_canary_wait_timeout=120)
            runs = tmp_path / "runs"
            # wave1 is bar: the bad proxies become Ready, so the wave itself passes
            ok(us.run_phase(inv, "precheck,install,tag,wave1", workdir=runs))
            assert us.data_plane(sim, ["bar"])["bar/bar"]["versions"] == [NEW_VERSION]

            metrics = {"prometheus_url": prom.url, "window": "15s", "interval": "1s", "count": 2}
            verify = us.run_phase(inv, "verify", workdir=runs,
                                  extra_vars={"istio_canary_metrics": metrics, "istio_canary_auto_rollback": True})
            assert not verify.ok, verify  # the gate failed; the play says so after rolling back
            message = " ".join(verify.failures())
            assert "Metric gate fail" in message and "bar/bar" in message and "success_rate" in message, message
            assert "foo/" not in message and "baz/" not in message, message
            assert "Rolled back" in message, message
            cp = us.control_plane(sim)
            assert cp["mutating"]["istio-revision-tag-default"]["rev"] == OLD_REV, cp["mutating"]
            plane = us.data_plane(sim)
            for workload, info in plane.items():
                assert info["versions"] == [OLD_VERSION] and info["revisions"] == [OLD_REV], (workload, info)
                assert info["ready"] == info["pods"], (workload, info)
            assert "phase.rollback" in us.upgrade_record(sim)
        finally:
            prom.stop()
