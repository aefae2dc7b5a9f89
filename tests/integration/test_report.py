"""The report and status phases (issue 17) on simulated clusters: the report's JSON checked against what the
cluster really holds after an upgrade and after a rollback, the fleet page, and a status that changes nothing."""
import json
from pathlib import Path

import pytest

import browser
import upgrade_support as us
from kubesim.testing import KubeSim

# Screenshots of the rendered reports, kept for people to look at (git-ignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
OLD_REV, OLD_VERSION, NEW_REV, NEW_VERSION = "1-14-6", "1.14.6", "1-15-4", "1.15.4"
WORKLOADS = ["bar/bar", "baz/baz", "foo/foo", "istio-ingress/istio-ingressgateway"]


@pytest.fixture
def two_clusters(tmp_path):
    sims = []
    try:
        for name in ("eu", "us"):
            workdir = tmp_path / name
            workdir.mkdir()
            sims.append(KubeSim("blog", workdir=str(workdir), pod_ready_seconds=0.2, audit=False).start())
        yield sims
    finally:
        for sim in sims:
            sim.cleanup()


def run(inv, tags, tmp_path, **kw):
    result = us.run_phase(inv, tags, workdir=tmp_path / "runs", **kw)
    assert result.ok, result
    return result


def versions_per_namespace(sim):
    """{namespace: {proxy version: pods}} as the cluster holds it (the test's own reading)."""
    out = {}
    for key, info in us.data_plane(sim).items():
        counts = out.setdefault(key.split("/")[0], {})
        for version in info["versions"]:
            # every pod of a workload here runs one version once a rollout is over
            counts[version] = counts.get(version, 0) + info["pods"]
    return out


def check_report_against_cluster(report, sim, cluster):
    assert report["cluster"] == cluster
    assert report["data_plane"]["after"] == versions_per_namespace(sim)
    cp = us.control_plane(sim)
    after = report["control_plane"]["after"]
    assert sorted("istiod-%s" % r["name"] for r in after["revisions"]) == sorted(cp["istiod"])
    assert dict(("istiod-%s" % r["name"], r["version"]) for r in after["revisions"]) == \
        dict((name, info["version"]) for name, info in cp["istiod"].items())
    assert after["tags"] == {"default": cp["mutating"]["istio-revision-tag-default"]["rev"]}
    hooks = dict((w["name"], w["revision"]) for w in after["webhooks"] if w["kind"] == "MutatingWebhookConfiguration")
    assert hooks == dict((name, info["rev"]) for name, info in cp["mutating"].items()), (hooks, cp["mutating"])
    plane = us.data_plane(sim)
    assert after["gateways"][0]["versions"] == plane["istio-ingress/istio-ingressgateway"]["versions"]
    old = report["upgrade"]["from_revision"]
    on_old = sorted("%s/%s" % (w["namespace"], w["name"]) for w in report["on_old_revision"])
    assert on_old == sorted(k for k, info in plane.items() if old in info["revisions"]), (on_old, plane)
    record = us.upgrade_record(sim) or {}
    assert report["upgrade"]["to_revision"] == record.get("to_revision")
    assert report["upgrade"]["from_revision"] == record.get("from_revision")


def test_report_after_an_upgrade_and_after_a_rollback(two_clusters, tmp_path):
    eu, us_cluster = two_clusters
    reports = tmp_path / "reports"
    inv = us.write_inventory(tmp_path / "inv", {"eu": eu.kubeconfig, "us": us_cluster.kubeconfig},
                             istio_canary_wait_timeout=120, istio_canary_report_dir=str(reports))
    inv_eu = us.write_inventory(tmp_path / "inv-eu", {"eu": eu.kubeconfig}, istio_canary_wait_timeout=120,
                                istio_canary_report_dir=str(reports))
    before = versions_per_namespace(eu)
    run(inv_eu, "precheck,install,tag,gateways,wave1,wave2,verify", tmp_path)
    # the report of eu after the upgrade (only eu: the us cluster is upgraded by nobody)
    run(inv, "report", tmp_path)
    report = json.loads((reports / "eu.json").read_text())
    check_report_against_cluster(report, eu, "eu")
    assert report["data_plane"]["before"] == before
    assert all(set(v) == {OLD_VERSION} for v in before.values()) and set(before) == {"bar", "baz", "foo", "istio-ingress"}
    assert all(set(v) == {NEW_VERSION} for v in report["data_plane"]["after"].values())
    assert report["control_plane"]["before"]["tags"] == {"default": OLD_REV}
    assert [r["name"] for r in report["control_plane"]["before"]["revisions"]] == [OLD_REV]
    assert report["on_old_revision"] == [] and report["failures"] == []
    phases = [row["phase"] for row in report["timeline"]]
    assert phases == ["precheck", "install", "tag", "gateways", "wave1", "wave2", "verify"], phases
    assert all(row["state"] == "done" and row["started"] and row["ended"] and row["by"]["host"]
               for row in report["timeline"]), report["timeline"]
    waves = dict((row["phase"], row["rollout"]) for row in report["timeline"] if row["rollout"])
    assert waves["wave2"]["restarted"] == 2 and waves["wave2"]["total"] == 2 and waves["gateways"]["restarted"] == 1
    assert report["upgrade"]["phase_reached"] == "verify" and report["upgrade"]["next_phase"] == "cleanup"
    assert report["summary"]["stale_workloads"] == 0 and report["summary"]["versions"] == {NEW_VERSION: 7}
    # HTML and fleet page: one row per inventory host, the us cluster without a report section of its own data
    html = (reports / "eu.html").read_text()
    assert "Istio upgrade report &mdash; eu" in html and "<svg" in html and "http" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    fleet = (reports / "index.html").read_text()
    assert 'href="eu.html"' in fleet and 'href="us.html"' in fleet
    # rendered by a real browser: no console error, nothing fetched but the file itself
    for page_name, shot in (("eu.html", "report-eu.png"), ("index.html", "report-fleet.png")):
        page = rendered(reports / page_name, shot)
        assert page.size[1] > 300, page.size
    us_report = json.loads((reports / "us.json").read_text())
    check_report_against_cluster(us_report, us_cluster, "us")
    assert us_report["upgrade"]["phase_reached"] == "not started" and us_report["timeline"] == []

    # roll back eu: the report says so and still matches the cluster
    run(inv_eu, "rollback", tmp_path, extra_vars={"istio_canary_rollback": True})
    run(inv, "report", tmp_path)
    report = json.loads((reports / "eu.json").read_text())
    check_report_against_cluster(report, eu, "eu")
    assert report["data_plane"]["after"] == before
    assert report["control_plane"]["after"]["tags"] == {"default": OLD_REV}
    assert report["upgrade"]["phase_reached"] == "rolled back" and report["upgrade"]["next_phase"] == "precheck"
    rollback = [row for row in report["timeline"] if row["phase"] == "rollback"]
    assert rollback and rollback[0]["state"] == "done" and rollback[0]["rollout"]["restarted"] == 4, rollback
    assert sorted("%s/%s" % (w["namespace"], w["name"]) for w in report["on_old_revision"]) == WORKLOADS


def rendered(path, screenshot):
    assert browser.chromium_path(), "chromium is not installed: run `make chromium` (Debian's chromium package)"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.render(str(path), str(ARTIFACTS / screenshot))
    assert page.errors == [], page.errors
    assert page.requests == ["file://%s" % Path(path).resolve()], page.requests
    assert page.screenshot.startswith(b"\x89PNG") and (ARTIFACTS / screenshot).stat().st_size > 10000
    return page


def test_the_browser_check_catches_console_errors_and_fetches(tmp_path):
    """The harness itself: a page that logs an error and loads a missing image fails both checks."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="missing.png">'
                   '<script>console.error("boom")</script></body></html>')
    page = browser.render(str(bad), str(tmp_path / "bad.png"))
    assert "console.error: boom" in page.errors
    assert any("ERR_FILE_NOT_FOUND" in e for e in page.errors), page.errors
    assert any(url.endswith("/missing.png") for url in page.requests), page.requests


def test_status_is_read_only_and_says_what_comes_next(two_clusters, tmp_path):
    eu, us_cluster = two_clusters
    inv = us.write_inventory(tmp_path / "inv", {"eu": eu.kubeconfig, "us": us_cluster.kubeconfig},
                             istio_canary_wait_timeout=120)
    inv_eu = us.write_inventory(tmp_path / "inv-eu", {"eu": eu.kubeconfig}, istio_canary_wait_timeout=120)
    run(inv_eu, "precheck,install,tag", tmp_path)
    snapshot = [sorted((o["metadata"]["namespace"] or "", o["metadata"]["name"], o["metadata"]["resourceVersion"])
                       for path in ("/api/v1/configmaps", "/apis/apps/v1/deployments", "/api/v1/pods")
                       for o in sim.get_json(path)["items"]) for sim in (eu, us_cluster)]
    for check in (False, True):
        status = run(inv, "status", tmp_path, check=check)
        assert status.changed() == 0
        by_host = dict((s["cluster"], s) for s in status.summaries())
        assert set(by_host) == {"eu", "us"}
        # phases from the record, the next phase as the planner sees it (a wave-only cluster: gateways next)
        assert by_host["eu"]["phases_done"] == ["precheck", "install", "tag"] and by_host["eu"]["next_phase"] == "gateways"
        assert any("restart istio-ingress/Deployment/istio-ingressgateway" in line
                   for line in by_host["eu"]["next_phase_would"]), by_host["eu"]
        assert by_host["us"]["phases_done"] == [] and by_host["us"]["next_phase"] == "precheck"
        assert by_host["eu"]["proxy_versions"] == {OLD_VERSION: 7}
    after = [sorted((o["metadata"]["namespace"] or "", o["metadata"]["name"], o["metadata"]["resourceVersion"])
                    for path in ("/api/v1/configmaps", "/apis/apps/v1/deployments", "/api/v1/pods")
                    for o in sim.get_json(path)["items"]) for sim in (eu, us_cluster)]
    assert after == snapshot
    assert not (tmp_path / "inv" / "reports").exists()  # status writes no report


# What AWX gives a job, as its code builds it: the extra variables of UnifiedJob.awx_meta_vars and
# Job.awx_meta_vars (awx/main/models/unified_jobs.py, jobs.py: ids are integers, every name twice, awx_ and
# tower_), and RunJob.build_env's JOB_ID / INVENTORY_ID environment variables.
def awx_job_vars(job_id, template, user=None, schedule=None):
    out = {}
    for prefix in ("awx", "tower"):
        out.update({prefix + "_job_id": job_id, prefix + "_job_launch_type": "scheduled" if schedule else "manual",
                    prefix + "_job_template_id": 12, prefix + "_job_template_name": template,
                    prefix + "_inventory_id": 3, prefix + "_inventory_name": "istio clusters",
                    prefix + "_project_revision": "0f3c2a9e", prefix + "_project_scm_branch": "main"})
        if user:
            out.update({prefix + "_user_id": 7, prefix + "_user_name": user, prefix + "_user_email": user + "@example.com",
                        prefix + "_user_first_name": user.title(), prefix + "_user_last_name": ""})
        if schedule:
            out.update({prefix + "_schedule_id": 5, prefix + "_schedule_name": schedule})
    return out, {"JOB_ID": str(job_id), "INVENTORY_ID": "3"}


def test_the_awx_job_that_ran_each_phase_is_named_in_the_progress_and_the_report(tmp_path):
    """wave1 launched by a user, wave2 by a schedule (no user), the rest from a shell: the report's timeline,
    its HTML and the progress entries name the AWX job of each, with AWX's own variables and types."""
    (tmp_path / "eu").mkdir()
    sim = KubeSim("blog", workdir=str(tmp_path / "eu"), pod_ready_seconds=0.2, audit=False).start()
    try:
        reports = tmp_path / "reports"
        inv = us.write_inventory(tmp_path / "inv", {"eu": sim.kubeconfig}, istio_canary_wait_timeout=120,
                                 istio_canary_report_dir=str(reports))
        run(inv, "precheck,install,tag,gateways", tmp_path)
        extra, env = awx_job_vars(4711, "istio wave1", user="alice")
        run(inv, "wave1", tmp_path, extra_vars=extra, env=env)
        extra, env = awx_job_vars(4712, "istio wave2", schedule="nightly waves")
        run(inv, "wave2", tmp_path, extra_vars=extra, env=env)
        run(inv, "report", tmp_path)
        report = json.loads((reports / "eu.json").read_text())
        by = dict((row["phase"], row["by"]) for row in report["timeline"])
        assert (by["wave1"]["job"], by["wave1"]["job_template"], by["wave1"]["job_user"]) == \
            ("4711", "istio wave1", "alice"), by["wave1"]
        assert (by["wave2"]["job"], by["wave2"]["job_template"]) == ("4712", "istio wave2"), by["wave2"]
        assert "job_user" not in by["wave2"], by["wave2"]
        for phase in ("precheck", "install", "tag", "gateways"):
            assert "job" not in by[phase] and by[phase]["host"] and by[phase]["user"], (phase, by[phase])
        html = (reports / "eu.html").read_text()
        assert "awx job 4711 (istio wave1, by alice)" in html and "awx job 4712 (istio wave2)" in html
        # the progress entries on the cluster (what `status` and anyone watching read) name the same jobs
        entries = us.upgrade_record(sim, "meshops-istio-upgrade-progress")
        wave1_entry, wave2_entry = json.loads(entries["wave1"]), json.loads(entries["wave2"])
        assert wave1_entry["by"]["job"] == "4711" and wave1_entry["by"]["job_user"] == "alice"
        assert wave2_entry["by"]["job"] == "4712" and wave2_entry["state"] == "done"
    finally:
        sim.cleanup()
