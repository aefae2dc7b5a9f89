"""Filters of the istio_canary role (plugins/filter/canary.py), on istio_revision_info-shaped data."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.meshops.istio.plugins.filter import canary as f


def workload(ns, name, revs, versions, ready=True, kind="Deployment", labels=None, needs_restart=False, replicas=2):
    return {"namespace": ns, "kind": kind, "name": name, "revisions": revs, "versions": versions,
            "revision": revs[0] if len(revs) == 1 else (",".join(revs) or None), "ready": ready,
            "labels": labels or {}, "needs_restart": needs_restart, "replicas": replicas}


def info(tags=None, revisions=None, namespaces=None, workloads=None, stale=None):
    return {
        "revisions": revisions if revisions is not None else [
            {"name": "1-14-6", "version": "1.14.6", "ready": True},
            {"name": "1-15-4", "version": "1.15.4", "ready": True}],
        "tags": tags if tags is not None else {"default": "1-14-6"},
        "namespaces": namespaces or [],
        "workloads": workloads or [],
        "stale": stale or [],
    }


def test_plan_from_tag_variable_record_and_installed():
    plan = f.canary_plan(info(), {}, "1-15-4")
    assert (plan["from_revision"], plan["from_source"], plan["from_version"]) == ("1-14-6", "tag", "1.14.6")
    assert plan["to_installed"] and plan["to_ready"] and not plan["tag_on_target"]
    moved = info(tags={"default": "1-15-4"})
    assert f.canary_plan(moved, {}, "1-15-4")["from_source"] == "installed revisions"
    record = {"to_revision": "1-15-4", "from_revision": "1-14-6", "from_version": "1.14.6", "phases": {"tag": "t"}}
    plan = f.canary_plan(info(tags={"default": "1-15-4"}, revisions=[{"name": "1-15-4", "version": "1.15.4", "ready": True}]),
                         record, "1-15-4")
    assert (plan["from_revision"], plan["from_source"], plan["from_version"]) == ("1-14-6", "record", "1.14.6")
    assert not plan["from_installed"] and plan["tag_on_target"] and plan["phases_done"] == ["tag"]
    assert f.canary_plan(info(), record, "1-15-4", from_revision="1-13-0")["from_source"] == "variable"
    # a record of another upgrade is not used
    other = {"to_revision": "1-14-6", "from_revision": "1-13-0"}
    assert f.canary_plan(info(), other, "1-15-4")["from_revision"] == "1-14-6"


def test_plan_unknown_when_nothing_tells():
    plan = f.canary_plan(info(tags={}, revisions=[]), {}, "1-15-4")
    assert plan["from_revision"] == "" and plan["tag_revision"] == "" and not plan["to_installed"]


def test_minor_skew():
    assert f.minor_skew("1.14.6", "1.15.4") == 1
    assert f.minor_skew("1.13.0", "1.16.1") == 3
    assert f.minor_skew("1.16.0", "1.15.4") == -1
    with pytest.raises(AnsibleFilterError):
        f.minor_skew("1.14.6", "2.0.0")
    with pytest.raises(AnsibleFilterError):
        f.minor_skew("", "1.15.4")


def test_label_findings():
    namespaces = [
        {"name": "legacy", "labels": {"istio-injection": "enabled"}},
        {"name": "both", "labels": {"istio-injection": "enabled", "istio.io/rev": "default"}},
        {"name": "off", "labels": {"istio-injection": "disabled", "istio.io/rev": "default"}},
        {"name": "pinned", "labels": {"istio.io/rev": "1-14-6"}},
        {"name": "typo", "labels": {"istio.io/rev": "1-99-0"}},
        {"name": "fine", "labels": {"istio.io/rev": "default"}},
        {"name": "optout", "labels": {"istio-injection": "disabled"}},
        {"name": "plain", "labels": {}},
    ]
    found = f.label_findings(info(namespaces=namespaces), "default", "1-14-6", "1-15-4")
    by_ns = dict((x["namespace"], x) for x in found)
    assert sorted(by_ns) == ["both", "legacy", "off", "pinned", "typo"]
    assert by_ns["legacy"]["issue"] == "legacy" and by_ns["legacy"]["migrate"]
    assert by_ns["both"]["issue"] == "conflict" and by_ns["both"]["migrate"]
    assert by_ns["off"]["issue"] == "disabled-conflict" and not by_ns["off"]["migrate"]
    assert by_ns["pinned"]["issue"] == "pinned" and "istio.io/rev=default" in by_ns["pinned"]["message"]
    assert by_ns["typo"]["issue"] == "unknown"


def test_rollout_summary_of_loop_and_single_results():
    loop = {"results": [
        {"workloads": [
            {"namespace": "bar", "kind": "Deployment", "name": "bar", "action": "restarted", "from_version": "1.14.6", "to_version": "1.15.4"},
            {"namespace": "bar", "kind": "Deployment", "name": "old", "action": "current"}]},
        {"failed": True, "msg": "rollout of foo/foo stuck", "workloads": [
            {"namespace": "foo", "kind": "Deployment", "name": "foo", "action": "failed", "reason": "CrashLoopBackOff"},
            {"namespace": "foo", "kind": "StatefulSet", "name": "db", "action": "skipped", "reason": "OnDelete"}]},
        {"skipped": True},
    ]}
    out = f.rollout_summary(loop)
    assert out["moved"] == ["bar/Deployment/bar: 1.14.6 -> 1.15.4"] and out["current"] == 1
    assert out["failed"] == ["foo/Deployment/foo: CrashLoopBackOff"] and out["skipped"] == ["foo/StatefulSet/db: OnDelete"]
    assert out["namespaces"] == ["bar", "foo"] and len(out["workloads"]) == 4
    assert f.rollout_summary({"failed": True, "msg": "cannot reach the API"})["failed"] == ["cannot reach the API"]
    assert f.rollout_summary([loop, {}])["current"] == 1


def test_off_revision_and_on_revision():
    data = info(workloads=[
        workload("bar", "bar", ["1-15-4"], ["1.15.4"]),
        workload("bar", "slow", ["1-15-4"], ["1.15.4"], ready=False),
        workload("foo", "foo", ["1-14-6"], ["1.14.6"]),
        workload("foo", "half", ["1-14-6", "1-15-4"], ["1.14.6", "1.15.4"]),
        workload("baz", "baz", ["1-14-6"], ["1.14.6"]),
        workload("bar", "scaled", [], [], replicas=0),
        dict(workload("bar", "optout", [], []), expected_revision=None),
        dict(workload("bar", "leftover", ["1-14-6"], ["1.14.6"]), expected_revision=None),
    ])
    off = f.off_revision(data, "1-15-4", "1.15.4", ["bar"], ["foo/Deployment/half"])
    assert off == ["bar/Deployment/leftover: proxy revision 1-14-6, expected 1-15-4",
                   "bar/Deployment/slow: not ready",
                   "foo/Deployment/half: proxy revision 1-14-6,1-15-4, expected 1-15-4"]
    assert f.on_revision(data, "1-14-6") == [
        "bar/Deployment/leftover (1.14.6)", "baz/Deployment/baz (1.14.6)", "foo/Deployment/foo (1.14.6)",
        "foo/Deployment/half (1.14.6,1.15.4)"]


def test_wave_calls():
    assert f.wave_calls({"name": "w", "namespaces": ["foo", "baz", "foo"]}) == [
        {"namespaces": ["baz", "foo"], "namespace_selector": None, "names": None}]
    assert f.wave_calls({"name": "w", "namespace_selector": "wave=2"})[0]["namespace_selector"] == "wave=2"
    selected = [workload("a", "edge1", [], [], labels={"tier": "edge"}),
                workload("b", "edge2", [], [], labels={"tier": "edge"}),
                workload("b", "edge3", [], [], labels={"tier": "edge"})]
    calls = f.wave_calls({"name": "w", "query": "[?labels.tier=='edge']"}, selected)
    assert calls == [{"namespaces": ["a"], "namespace_selector": None, "names": ["edge1"]},
                     {"namespaces": ["b"], "namespace_selector": None, "names": ["edge2", "edge3"]}]
    assert f.wave_calls({"name": "w", "query": "[?labels.tier=='none']"}, []) == []
    with pytest.raises(AnsibleFilterError):
        f.wave_calls({"name": "w", "query": "[].name"}, ["a", "b"])
    with pytest.raises(AnsibleFilterError):
        f.wave_calls({"name": "w", "namespaces": ["a"], "query": "[]"}, [])


def test_wave_problems():
    assert f.wave_problems([{"name": "wave1", "namespaces": ["bar"]}, {"name": "wave2", "query": "[]"}]) == []
    problems = f.wave_problems([{"name": "wave.1", "namespaces": ["bar"]}, {"name": "w", "namespaces": "bar"},
                                {"name": "w", "namespaces": ["x"], "namespace_selector": "a=b"}, "bar"])
    assert len(problems) == 5
    assert f.wave_problems([{"name": "w%d" % i, "namespaces": ["x"]} for i in range(10)]) == [
        "at most 9 waves are supported (tags wave1 .. wave9); merge some waves"]


def test_verify_scope():
    record = {"phases": {"gateways": "t"}, "waves": {
        "wave1": {"namespaces": ["bar"], "workloads": ["bar/Deployment/bar"]},
        "edge": {"namespaces": ["shop"], "workloads": ["shop/Deployment/front"]}}}
    waves = [{"name": "wave1", "namespaces": ["bar"]}, {"name": "edge", "query": "[?labels.tier=='edge']"}]
    scope = f.verify_scope(record, waves, [{"namespace": "istio-ingress", "name": "gw"}])
    assert scope == {"namespaces": ["bar"], "ids": ["bar/Deployment/bar", "istio-ingress/Deployment/gw", "shop/Deployment/front"]}
    assert f.verify_scope({"waves": {}}, waves, [{"namespace": "x", "name": "gw"}]) == {"namespaces": [], "ids": []}


def test_revision_suggestion_and_stale_namespaces():
    assert f.revision_suggestion("1.15.4") == "1-15-4"
    data = info(workloads=[workload("a", "x", [], [], needs_restart=True)], stale=[{"namespace": "b", "name": "y"}])
    assert f.stale_namespaces(data) == ["a", "b"]


def test_gate_scope():
    record = {"waves": {
        "wave1": {"namespaces": ["bar"], "workloads": ["bar/Deployment/bar"], "started": "2026-11-22T00:03:00Z"},
        "edge": {"namespaces": ["shop"], "workloads": ["shop/Deployment/front", "shop/Deployment/cdn"],
                 "started": "2026-11-22T00:01:00Z"},
        "gw": {"namespaces": ["istio-ingress"], "workloads": [], "started": None}}}
    waves = [{"name": "wave1", "namespaces": ["bar"]}, {"name": "edge", "query": "[?labels.tier=='edge']"}]
    scope = f.gate_scope(record, waves, [{"namespace": "istio-ingress", "name": "gw"}])
    assert scope == {"namespaces": ["bar", "shop"], "workloads": {"shop": ["cdn", "front"]},
                     "baseline_at": "2026-11-22T00:01:00Z"}
    assert f.gate_scope({}, waves, []) == {"namespaces": [], "workloads": None, "baseline_at": ""}
