"""playbooks/upgrade.yml end to end against tests/kubesim: every phase by tag, as separate runs (as one AWX job
per phase would), asserting on what the simulated cluster holds afterwards.

Each test starts its own simulated cluster(s).  Phases are grouped a little per run to keep the runtime
modest; every phase of DESIGN.md's table runs at least once on its own.
"""

from __future__ import annotations

import pytest

import upgrade_support as us
from kubesim.testing import KubeSim

OLD_REV, OLD_VERSION = "1-14-6", "1.14.6"
NEW_REV, NEW_VERSION = "1-15-4", "1.15.4"
POD_READY = 0.2


def simulator(tmp_path, scenario="blog", name="sim", **options):
    """A KubeSim in its own directory under tmp_path (use as a context manager)."""
    workdir = tmp_path / name
    workdir.mkdir(parents=True, exist_ok=True)
    return KubeSim(scenario, workdir=str(workdir), pod_ready_seconds=POD_READY, audit=False, **options)


@pytest.fixture
def blog(tmp_path):
    with simulator(tmp_path) as sim:
        yield sim


def inventory(tmp_path, sims, **group_vars):
    group_vars.setdefault("istio_canary_wait_timeout", 120)
    return us.write_inventory(tmp_path / "inventory", sims, **group_vars)


def phase(inv, tags, tmp_path, **kw):
    run = us.run_phase(inv, tags, workdir=tmp_path / "runs", **kw)
    return run


def ok(run):
    assert run.ok, run
    return run


def generations(sim):
    return dict(("%s/%s" % (d["metadata"]["namespace"], d["metadata"]["name"]), d["metadata"].get("generation"))
                for d in sim.get_json("/apis/apps/v1/deployments")["items"])


def assert_articles_final_state(sim):
    cp = us.control_plane(sim)
    assert sorted(cp["istiod"]) == ["istiod-%s" % NEW_REV], cp["istiod"]
    assert cp["istiod"]["istiod-%s" % NEW_REV] == {"version": NEW_VERSION, "ready": True}
    assert cp["mutating"]["istio-revision-tag-default"] == {"rev": NEW_REV, "services": ["istiod-%s" % NEW_REV]}
    assert "istio-sidecar-injector-%s" % OLD_REV not in cp["mutating"], sorted(cp["mutating"])
    assert cp["validating"]["istiod-default-validator"]["services"] == ["istiod-%s" % NEW_REV]
    plane = us.data_plane(sim)
    assert set(plane) >= {"foo/foo", "bar/bar", "baz/baz", "istio-ingress/istio-ingressgateway"}, plane
    for workload, info in plane.items():
        assert info["versions"] == [NEW_VERSION] and info["revisions"] == [NEW_REV], (workload, info)
        assert info["pods"] and info["ready"] == info["pods"], (workload, info)
    return cp


def test_full_upgrade_on_blog_then_every_phase_again_changes_nothing(blog, tmp_path):
    inv = inventory(tmp_path, {"blog": blog.kubeconfig})

    # check mode first: reports, but never writes the upgrade record (or anything else)
    before = generations(blog)
    dry = ok(phase(inv, "precheck", tmp_path, check=True))
    assert us.upgrade_record(blog) is None
    assert generations(blog) == before
    assert dry.summaries()[0]["upgrade"] == "%s (%s) -> %s (%s)" % (OLD_REV, OLD_VERSION, NEW_REV, NEW_VERSION)

    install = ok(phase(inv, "precheck,install", tmp_path))
    record = us.upgrade_record(blog)
    assert record["from_revision"] == OLD_REV and record["from_version"] == OLD_VERSION
    assert record["to_revision"] == NEW_REV and "phase.precheck" in record and "phase.install" in record
    summaries = dict((s["phase"], s) for s in install.summaries())
    assert summaries["precheck"]["old_revision_from"] == "tag"
    assert summaries["install"]["installed_now"] is True
    cp = us.control_plane(blog)
    assert cp["istiod"]["istiod-%s" % NEW_REV]["ready"] and cp["istiod"]["istiod-%s" % OLD_REV]["ready"]
    assert cp["mutating"]["istio-revision-tag-default"]["rev"] == OLD_REV  # installing moves nothing

    tag = ok(phase(inv, "tag,gateways", tmp_path))
    cp = us.control_plane(blog)
    assert cp["mutating"]["istio-revision-tag-default"] == {"rev": NEW_REV, "services": ["istiod-%s" % NEW_REV]}
    plane = us.data_plane(blog)
    assert plane["istio-ingress/istio-ingressgateway"]["versions"] == [NEW_VERSION]
    assert plane["bar/bar"]["versions"] == [OLD_VERSION]  # no wave yet
    summaries = dict((s["phase"], s) for s in tag.summaries())
    assert summaries["tag"]["from"] == OLD_REV and summaries["tag"]["to"] == NEW_REV
    assert summaries["gateways"]["moved"] == ["istio-ingress/Deployment/istio-ingressgateway: 1.14.6 -> 1.15.4"]

    wave1 = ok(phase(inv, "wave1,verify", tmp_path))
    plane = us.data_plane(blog)
    assert plane["bar/bar"]["versions"] == [NEW_VERSION]
    assert plane["foo/foo"]["versions"] == [OLD_VERSION] and plane["baz/baz"]["versions"] == [OLD_VERSION]
    summaries = dict((s["phase"], s) for s in wave1.summaries())
    assert summaries["wave1"]["moved"] == ["bar/Deployment/bar: 1.14.6 -> 1.15.4"]
    assert summaries["verify"]["namespaces_checked"] == ["bar"]

    # cleanup before the last wave refuses and names what still uses the old revision
    early = phase(inv, "cleanup", tmp_path)
    assert not early.ok
    message = " ".join(early.failures())
    assert "still in use" in message and "foo/Deployment/foo" in message and "baz/Deployment/baz" in message, message
    assert "istiod-%s" % OLD_REV in us.control_plane(blog)["istiod"]

    ok(phase(inv, "wave2,verify", tmp_path))
    cleanup = ok(phase(inv, "cleanup", tmp_path))
    assert cleanup.summaries()[0]["removed_now"] is True
    assert_articles_final_state(blog)
    record = us.upgrade_record(blog)
    for key in ("phase.precheck", "phase.install", "phase.tag", "phase.gateways", "phase.verify", "phase.cleanup",
                "wave.wave1.done", "wave.wave2.done"):
        assert key in record, (key, record)
    assert record["wave.wave2.namespaces"] == "baz,foo"

    # every phase again (a plain run is all of them but rollback): nothing changes anywhere
    gens = generations(blog)
    again = ok(phase(inv, None, tmp_path))
    assert again.changed() == 0, [e["task"] for e in again.changed_tasks()]
    ran = [s["phase"] for s in again.summaries()]
    # (cni and ztunnel run too: on this sidecar-only mesh they have nothing to do and write nothing)
    assert ran == ["precheck", "install", "cni", "ztunnel", "tag", "gateways", "wave1", "wave2", "verify",
                   "cleanup"], ran
    assert generations(blog) == gens
    assert us.upgrade_record(blog) == record
    assert_articles_final_state(blog)


def test_wave_before_tag_refuses_and_rollback_is_guarded(blog, tmp_path):
    inv = inventory(tmp_path, {"blog": blog.kubeconfig})
    gens = generations(blog)
    early = phase(inv, "wave1", tmp_path)
    assert not early.ok
    message = " ".join(early.failures())
    assert "wave1 refuses to run" in message and "--tags tag" in message, message
    assert "points at %s" % OLD_REV in message

    # rollback never runs unless asked for: tagged never, and guarded by istio_canary_rollback -- without the
    # guard it fails saying how to ask for it (issue 12, defect 8), changing nothing
    guarded = phase(inv, "rollback", tmp_path)
    assert not guarded.ok and guarded.changed() == 0 and not guarded.summaries()
    message = " ".join(guarded.failures())
    assert "Rollback is guarded" in message and "-e istio_canary_rollback=true" in message, message
    assert generations(blog) == gens
    assert us.control_plane(blog)["mutating"]["istio-revision-tag-default"]["rev"] == OLD_REV
    assert us.upgrade_record(blog) is None


def test_crashing_new_proxy_fails_the_wave_and_rollback_restores_everything(tmp_path):
    with simulator(tmp_path, crash_proxy_version=[NEW_VERSION]) as sim:
        inv = inventory(tmp_path, {"blog": sim.kubeconfig}, istio_canary_wait_timeout=90)
        ok(phase(inv, "precheck,install,tag", tmp_path))
        gens = generations(sim)

        wave = phase(inv, "wave1,wave2", tmp_path)
        assert not wave.ok
        message = " ".join(wave.failures())
        assert "Wave wave1 failed" in message and "bar/Deployment/bar" in message, message
        assert "CrashLoopBackOff" in message, message
        assert "--tags rollback -e istio_canary_rollback=true" in message
        assert not [s for s in wave.summaries() if s["phase"] == "wave2"]
        # the wave stopped: foo and baz (wave2) were never restarted
        now = generations(sim)
        assert now["foo/foo"] == gens["foo/foo"] and now["baz/baz"] == gens["baz/baz"]
        record = us.upgrade_record(sim)
        assert record["wave.wave1.namespaces"] == "bar" and "wave.wave1.done" not in record

        back = ok(phase(inv, "rollback", tmp_path, extra_vars={"istio_canary_rollback": True}))
        cp = us.control_plane(sim)
        assert cp["mutating"]["istio-revision-tag-default"] == {"rev": OLD_REV, "services": ["istiod-%s" % OLD_REV]}
        assert cp["validating"]["istiod-default-validator"]["services"] == ["istiod-%s" % OLD_REV]
        plane = us.data_plane(sim)
        for workload, info in plane.items():
            assert info["versions"] == [OLD_VERSION] and info["revisions"] == [OLD_REV], (workload, info)
            assert info["ready"] == info["pods"], (workload, info)
        summary = back.summaries()[0]
        assert summary["phase"] == "rollback" and "bar" in summary["namespaces"]
        assert any(m.startswith("bar/Deployment/bar") for m in summary["moved_back"]), summary
        record = us.upgrade_record(sim)
        assert "phase.rollback" in record and "phase.tag" not in record
        assert not [k for k in record if k.startswith("wave.")]

        again = ok(phase(inv, "rollback", tmp_path, extra_vars={"istio_canary_rollback": True}))
        assert again.changed() == 0, [e["task"] for e in again.changed_tasks()]


def test_legacy_scenario_upgraded_with_label_migration(tmp_path):
    with simulator(tmp_path, "legacy") as sim:
        # the other two ways to choose a wave: a JMESPath query over the workloads, a namespace selector
        waves = [{"name": "wave1", "query": "[?labels.app=='bar']"},
                 {"name": "wave2", "namespace_selector": "istio.io/rev=default"}]
        inv = inventory(tmp_path, {"legacy": sim.kubeconfig}, istio_canary_waves=waves)
        # without the migration flag the legacy labels are only reported
        report = ok(phase(inv, "precheck", tmp_path))
        findings = report.summaries()[0]["label_findings"]
        assert any("namespace foo uses the legacy label istio-injection=enabled" in f for f in findings), findings
        assert us.control_plane(sim)["namespaces"]["foo"] == {"istio-injection": "enabled"}

        ok(phase(inv, "precheck,install", tmp_path, extra_vars={"istio_canary_migrate_legacy_labels": True}))
        namespaces = us.control_plane(sim)["namespaces"]
        for ns in ("foo", "bar", "baz", "istio-ingress"):
            assert namespaces[ns] == {"istio.io/rev": "default"}, namespaces
        assert us.upgrade_record(sim)["from_revision"] == "default"

        ok(phase(inv, "tag,gateways", tmp_path))
        waves_run = ok(phase(inv, "waves,verify", tmp_path))
        summaries = dict((s["phase"], s) for s in waves_run.summaries())
        assert summaries["wave1"]["moved"] == ["bar/Deployment/bar: 1.14.6 -> 1.15.4"], summaries["wave1"]
        assert summaries["wave2"]["moved"] == ["baz/Deployment/baz: 1.14.6 -> 1.15.4",
                                               "foo/Deployment/foo: 1.14.6 -> 1.15.4"], summaries["wave2"]
        assert "istio-ingress/Deployment/istio-ingressgateway" in summaries["verify"]["workloads_checked"]
        ok(phase(inv, "cleanup", tmp_path))
        cp = us.control_plane(sim)
        assert sorted(cp["istiod"]) == ["istiod-%s" % NEW_REV], cp["istiod"]
        assert cp["mutating"]["istio-revision-tag-default"]["rev"] == NEW_REV
        for workload, info in us.data_plane(sim).items():
            assert info["versions"] == [NEW_VERSION] and info["ready"] == info["pods"], (workload, info)


def test_fleet_goes_cluster_by_cluster_and_stops_at_the_first_failure(tmp_path):
    with simulator(tmp_path, name="sim-a", crash_proxy_version=[NEW_VERSION]) as first, \
            simulator(tmp_path, name="sim-b") as second:
        inv = inventory(tmp_path, {"cluster-a": first.kubeconfig, "cluster-b": second.kubeconfig},
                        istio_canary_wait_timeout=90)

        # a healthy phase visits the clusters one after the other (serial 1)
        pre = ok(phase(inv, "precheck", tmp_path))
        order = [e["host"] for e in pre.tasks() if e.get("action") != "ansible.builtin.include_role"]
        first_b = order.index("cluster-b")
        assert set(order[:first_b]) == {"cluster-a"} and set(order[first_b:]) == {"cluster-b"}, order
        assert us.upgrade_record(first) and us.upgrade_record(second)

        # cluster-a's new proxy crash-loops: its wave fails and cluster-b is never touched
        gens_b = generations(second)
        run = phase(inv, "install,tag,wave1", tmp_path)
        assert not run.ok
        assert run.hosts_run() == ["cluster-a"], run.hosts_run()
        assert "bar/Deployment/bar" in " ".join(run.failures("cluster-a"))
        assert "istiod-%s" % NEW_REV in us.control_plane(first)["istiod"]
        cp_b = us.control_plane(second)
        assert sorted(cp_b["istiod"]) == ["istiod-%s" % OLD_REV], cp_b["istiod"]
        assert cp_b["mutating"]["istio-revision-tag-default"]["rev"] == OLD_REV
        assert generations(second) == gens_b
        assert "phase.install" not in us.upgrade_record(second)


def test_failed_metric_gate_in_verify_rolls_back_in_the_same_play(tmp_path):
    """verify with istio_canary_metrics against a real Prometheus scraping kubesim: the new proxy (1.15.4, made
    bad with --bad-proxy-version: 5xx and slow) fails the gate, and istio_canary_auto_rollback rolls back."""
    prometheus = pytest.importorskip("integration.prometheus")
    if prometheus.prometheus_binary() is None:
        pytest.skip("prometheus is not installed (make test installs it)")
    with simulator(tmp_path, bad_proxy_version=[NEW_VERSION], seed=7) as sim:
        server = prometheus.PrometheusServer.for_kubesim(sim.url, kubeconfig=sim.kubeconfig)
        server.start()
        try:
            server.wait_for_scrape()
            inv = inventory(tmp_path, {"blog": sim.kubeconfig})
            ok(phase(inv, "precheck,install,tag,wave1", tmp_path))
            assert us.data_plane(sim)["bar/bar"]["versions"] == [NEW_VERSION]

            metrics = {"prometheus_url": server.url, "window": "15s", "interval": "1s", "count": 10,
                       "failure_limit": 1, "initial_delay": "5s"}
            run = phase(inv, "verify", tmp_path,
                        extra_vars={"istio_canary_metrics": metrics, "istio_canary_auto_rollback": True})
            assert not run.ok
            message = " ".join(run.failures())
            assert "Metric gate fail" in message and "Rolled back to %s" % OLD_REV in message, message
            cp = us.control_plane(sim)
            assert cp["mutating"]["istio-revision-tag-default"]["rev"] == OLD_REV
            for workload, info in us.data_plane(sim).items():
                assert info["versions"] == [OLD_VERSION] and info["ready"] == info["pods"], (workload, info)
            record = us.upgrade_record(sim)
            assert "phase.rollback" in record and "phase.verify" not in record
            assert not [k for k in record if k.startswith("wave.")]
        finally:
            server.stop()
