"""The lease of the upgrade record (issue 19): one run per cluster at a time.

Model and client calls on the in-memory FakeCluster (update_with_retry is ClusterClient's own), the planner's
guard, the lease module through the module stub, and the keeper thread that renews while a module waits."""
import datetime
import time

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import plan as p, upgrade_state as us
from ansible_collections.meshops.istio.plugins.module_utils.errors import LeaseHeld, UpgradeStateError
from ansible_collections.meshops.istio.plugins.modules import istio_upgrade_lease as lease_mod

import fake_cluster as f
from test_plan import blog, build, installed, failed

NAME, NS = "meshops-istio-upgrade", "istio-system"
A = {"inventory_host": "cluster-a", "controller_host": "ctl-1", "pid": "100", "awx_job_id": "77"}
B = {"inventory_host": "cluster-a", "controller_host": "ctl-2", "pid": "200"}
T0 = datetime.datetime(2026, 11, 22, 0, 0, 0, tzinfo=datetime.timezone.utc)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def data(cluster):
    obj = cluster.find("ConfigMap", NAME, NS)
    return (obj or {}).get("data")


def record_cm(**extra):
    d = {"tag": "default", "from_revision": "1-14-6", "to_revision": "1-15-4", "to_version": "1.15.4",
         "phase.precheck": "2026-11-21T23:00:00Z", "phase.install": "2026-11-21T23:10:00Z"}
    d.update(extra)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NS}, "data": d}


def test_acquire_records_the_holder_and_a_second_run_is_refused_naming_it():
    cluster = f.FakeCluster([record_cm()])
    update, out = us.acquire_lease(cluster, NAME, NS, A, "wave1", ttl=60, now=at(0))
    assert out["how"] == "acquired" and update.action == "update"
    held = data(cluster)
    assert held["lease.holder"] == "cluster-a@ctl-1:100"
    assert held["lease.awx_job_id"] == "77" and held["lease.phase"] == "wave1"
    assert held["lease.since"] == "2026-11-22T00:00:00Z" and held["lease.expires"] == "2026-11-22T00:01:00Z"
    assert held["phase.install"] == "2026-11-21T23:10:00Z"  # the record itself is untouched
    rv = cluster.resource_versions()
    with pytest.raises(LeaseHeld) as err:
        us.acquire_lease(cluster, NAME, NS, B, "wave2", ttl=60, now=at(30))
    msg = err.value.message
    for part in ("leased to another run", "cluster-a", "ctl-1", "pid 100", "AWX job 77", "phase wave1",
                 "expires 2026-11-22T00:01:00Z", "istio_canary_break_lease=true", "nothing was changed"):
        assert part in msg, (part, msg)
    assert cluster.resource_versions() == rv


def test_the_holder_renews_and_an_expired_lease_is_taken_over_and_logged():
    cluster = f.FakeCluster([record_cm()])
    us.acquire_lease(cluster, NAME, NS, A, "wave1", ttl=60, now=at(0))
    _update, out = us.acquire_lease(cluster, NAME, NS, A, "wave1", ttl=60, now=at(40))
    assert out["how"] == "renewed"
    assert data(cluster)["lease.since"] == "2026-11-22T00:00:00Z"
    assert data(cluster)["lease.expires"] == "2026-11-22T00:01:40Z"
    us.renew_lease(cluster, NAME, NS, A, ttl=60, now=at(90))
    with pytest.raises(LeaseHeld):
        us.acquire_lease(cluster, NAME, NS, B, "wave1", ttl=60, now=at(149))
    _update, out = us.acquire_lease(cluster, NAME, NS, B, "wave1", ttl=60, now=at(150))
    assert out["how"] == "expired" and out["previous"]["holder"] == "cluster-a@ctl-1:100"
    rec = us.parse(data(cluster))
    assert rec["lease"]["holder"] == "cluster-a@ctl-2:200"
    assert [e["event"] for e in rec["lease_log"]] == ["taken over after expiry"]
    assert rec["lease_log"][0]["previous"]["pid"] == "100" and rec["lease_log"][0]["by"] == "cluster-a@ctl-2:200"
    # the old holder finds out at its next renewal, and its release leaves the new holder's lease alone
    with pytest.raises(LeaseHeld) as err:
        us.renew_lease(cluster, NAME, NS, A, ttl=60, now=at(151))
    assert "taken over by cluster-a, run from controller ctl-2" in err.value.message
    _update, released = us.release_lease(cluster, NAME, NS, A)
    assert not released and data(cluster)["lease.holder"] == "cluster-a@ctl-2:200"


def test_break_takes_a_held_lease_and_says_so_in_the_record():
    cluster = f.FakeCluster([record_cm()])
    us.acquire_lease(cluster, NAME, NS, A, "wave1", ttl=600, now=at(0))
    _update, out = us.acquire_lease(cluster, NAME, NS, B, "rollback", ttl=600, break_lease=True, now=at(5))
    assert out["how"] == "broken"
    log = us.parse(data(cluster))["lease_log"]
    assert log[-1]["event"] == "broken (istio_canary_break_lease)" and log[-1]["phase"] == "rollback"


def test_release_gives_it_back_and_a_record_that_held_only_the_lease_goes():
    cluster = f.FakeCluster([record_cm()])
    us.acquire_lease(cluster, NAME, NS, A, "wave1", now=at(0))
    _update, released = us.release_lease(cluster, NAME, NS, A)
    assert released and not any(k.startswith("lease.") for k in data(cluster))
    assert data(cluster)["to_revision"] == "1-15-4"
    empty = f.FakeCluster([])
    us.acquire_lease(empty, NAME, NS, A, "precheck", now=at(0))
    assert data(empty)["lease.holder"]
    us.release_lease(empty, NAME, NS, A)
    assert empty.find("ConfigMap", NAME, NS) is None


def test_record_writes_keep_the_lease_and_other_writers_keys():
    cluster = f.FakeCluster([record_cm(**{"progress.wave1": "3/10"})])
    us.acquire_lease(cluster, NAME, NS, A, "wave1", now=at(0))
    us.write_record(cluster, NAME, NS, fields={"to_revision": "1-15-4"},
                    wave={"name": "wave1", "namespaces": ["bar"], "status": "started"})
    after = data(cluster)
    assert after["lease.holder"] == "cluster-a@ctl-1:100" and after["progress.wave1"] == "3/10"
    assert after["wave.wave1.namespaces"] == "bar"
    # a new upgrade (abandon) keeps the lease, and the abandoned record does not carry it
    us.write_record(cluster, NAME, NS, fields={"to_revision": "1-16-0"}, abandon=True)
    after = us.parse(data(cluster))
    assert after["lease"]["holder"] == "cluster-a@ctl-1:100"
    assert not any(k.startswith("lease.") for k in after["abandoned"][0])


def test_bad_lease_input_is_refused_before_writing():
    cluster = f.FakeCluster([record_cm()])
    rv = cluster.resource_versions()
    with pytest.raises(UpgradeStateError):
        us.acquire_lease(cluster, NAME, NS, A, "wave1", ttl=2)
    with pytest.raises(UpgradeStateError):
        us.acquire_lease(cluster, NAME, NS, dict(A, inventory_host="a,b"), "wave1")
    assert cluster.resource_versions() == rv


# --- the planner ------------------------------------------------------------------------------------------

def test_a_phase_that_writes_is_refused_while_another_run_holds_the_lease():
    rec = us.parse(record_cm()["data"])
    rec["lease"] = us.lease_of(dict(("lease." + k, v) for k, v in dict(
        A, holder="cluster-a@ctl-1:100", phase="wave1", since="2026-11-22T00:00:00Z",
        renewed="2026-11-22T00:00:00Z", expires="2026-11-22T00:02:00Z", ttl="120").items()))
    kw = dict(lease_holder=B, now="2026-11-22T00:01:00Z", cluster="cluster-a")
    plan = build(installed('1-15-4'), 'wave1', rec, request=kw)
    assert failed(plan) == ['lease-free'] and len(plan.guards) == 1  # it stops there: the rest is noise
    assert "configmap istio-system/meshops-istio-upgrade on cluster-a is leased to another run" in plan.refusal
    # its own lease, an expired one, or break_lease: allowed, and the plan says what to take
    for ok in (dict(kw, lease_holder=A), dict(kw, now="2026-11-22T00:02:00Z"), dict(kw, break_lease=True)):
        plan = build(installed('1-15-4'), 'wave1', rec, request=ok)
        assert plan.allowed, plan.refusal
        assert plan.lease["needed"] and plan.lease["phase"] == "wave1"
        assert plan.to_dict()["lease"]["holder"]["inventory_host"] == "cluster-a"
    # check mode and the after-stage take no lease; without a holder nothing is checked
    assert build(installed('1-15-4'), 'wave1', rec, request=kw, check_mode=True).allowed
    assert not build(installed('1-15-4'), 'wave1', rec, request=kw, check_mode=True).lease["needed"]
    assert build(installed('1-15-4'), 'wave1', rec).lease == {"needed": False}
    bad = p.UpgradeRequest('1-15-4', '1.15.4', lease_ttl=1)
    assert any('istio_canary_lease_ttl' in problem for problem in bad.problems())
    assert build(blog(), 'precheck', us.empty_record(), request=kw).allowed  # no lease held: precheck may run


# --- the module and the keeper ----------------------------------------------------------------------------

def test_module_takes_reports_and_releases():
    from module_stub import ModuleStub
    cluster = f.FakeCluster([record_cm()])
    base = dict(name=NAME, istio_namespace=NS, holder=A, phase="wave1", ttl=120, break_lease=False)
    out = lease_mod.run(ModuleStub(dict(base, state="held"), client=cluster))
    assert out["action"] == "acquired" and out["changed"] is False and out["lease"]["pid"] == "100"
    rv = cluster.resource_versions()
    with pytest.raises(LeaseHeld):
        lease_mod.run(ModuleStub(dict(base, state="held", holder=B), client=cluster))
    assert cluster.resource_versions() == rv
    taken = lease_mod.run(ModuleStub(dict(base, state="held", holder=B, break_lease=True), client=cluster,
                                     check_mode=True))
    assert taken["changed"] and taken["action"] == "broken" and cluster.resource_versions() == rv
    out = lease_mod.run(ModuleStub(dict(base, state="released"), client=cluster))
    assert out["action"] == "released" and "lease.holder" not in data(cluster)
    out = lease_mod.run(ModuleStub(dict(base, state="released"), client=cluster))
    assert out["action"] == "none" and out["changes"] == []


def test_keeper_renews_while_running_and_stops_when_the_run_is_gone_or_the_lease_lost():
    cluster = f.FakeCluster([record_cm()])
    lease = {"needed": True, "name": NAME, "namespace": NS, "holder": dict(A, controller_host="elsewhere"),
             "ttl": 5}
    us.acquire_lease(cluster, NAME, NS, lease["holder"], "wave1", ttl=5)
    keeper = us.LeaseKeeper(cluster, lease)
    keeper.interval = 0.05
    with keeper:
        deadline = time.monotonic() + 10
        while keeper.renewals < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert keeper.renewals >= 3 and not keeper.lost
    # taken over: it stops and says so
    us.acquire_lease(cluster, NAME, NS, B, "rollback", break_lease=True)
    keeper = us.LeaseKeeper(cluster, lease)
    keeper.interval = 0.05
    with keeper:
        deadline = time.monotonic() + 10
        while not keeper.lost and time.monotonic() < deadline:
            time.sleep(0.02)
    assert keeper.lost and "taken over" in keeper.lost
    # the holder's ansible-playbook is gone from this controller: no renewal at all
    import socket
    mine = dict(lease, holder=dict(A, controller_host=socket.gethostname()))
    keeper = us.LeaseKeeper(cluster, mine, alive=lambda pid: False)
    keeper.interval = 0.05
    with keeper:
        deadline = time.monotonic() + 10
        while not keeper.orphaned and time.monotonic() < deadline:
            time.sleep(0.02)
    assert keeper.orphaned and keeper.renewals == 0
    assert not us.LeaseKeeper(cluster, {"needed": False}).start().active
