"""A rollback stopped between moving the tag back and recording its end (issue 19, found by the soak): the rollback
records that it started before it moves anything, so the record stays true to the cluster; the phases that carry
the upgrade forward refuse until a rollback run finishes it; that run plans from what the cluster holds."""
from ansible_collections.meshops.istio.plugins.module_utils import plan as p, report, upgrade_state as us

import fake_cluster as f
from test_plan import WAVES, build, failed, installed

UPGRADED = dict(tag="default", from_revision="1-14-6", from_version="1.14.6", to_revision="1-15-4",
                to_version="1.15.4")
T1, T2 = "2026-11-30T03:00:00Z", "2026-11-30T03:05:00Z"
ROLLBACK = {"rollback": True}


def _upgraded_record():
    record = us.empty_record()
    for phase in ("precheck", "install", "tag", "gateways"):
        record = us.merge(record, fields=UPGRADED, phase=phase, now=T1)
    return us.merge(record, wave=dict(name="wave1", namespaces=["bar"], workloads=["bar/Deployment/bar"]), now=T1)


def _on_new(tag_on):
    """1-15-4 installed, tag default on ``tag_on``; bar and the gateway still on the new proxy."""
    return installed(tag_on, f.pod("bar", "bar", 7, "1-15-4", "1.15.4", digest="9c8b7a6d5"))


def test_a_rollback_that_moves_anything_records_its_start_first():
    plan = build(_on_new("1-15-4"), "rollback", _upgraded_record(), request=ROLLBACK)
    assert plan.allowed and plan.changes_mesh
    start = plan.to_dict()["record_start"]
    assert start["rollback"] == {"revision": "1-14-6", "namespaces": ["bar", "istio-ingress"]}
    assert start["to_revision"] == "1-15-4" and start["phase"] is None and start["wave"] is None
    assert start["forget_phases"] == [] and not start["forget_waves"]
    # the end of the rollback removes what its start wrote
    started = us.merge(_upgraded_record(), **_merge_args(start), now=T2)
    assert us.rollback_under_way(started) and "phase.tag" in us.render(started)
    end = plan.to_dict()["record_update"]
    assert end["rollback"] is None and end["phase"] == "rollback"
    done = us.merge(started, **_merge_args(end), now=T2)
    assert not us.rollback_under_way(done) and us.finished(done)


def _merge_args(args):
    fields = dict((k, args[k]) for k in us.STATE_FIELDS)
    return dict(fields=fields, phase=args["phase"], wave=args["wave"], forget_phases=args["forget_phases"],
                forget_waves=args["forget_waves"], rollback=args["rollback"], abandon=args["abandon"])


def test_a_rollback_with_nothing_to_move_writes_no_start():
    rolled = us.merge(_upgraded_record(), phase="rollback", forget_phases=["tag", "gateways", "verify"],
                      forget_waves=True, now=T2)
    plan = build(installed("1-14-6"), "rollback", rolled, request=ROLLBACK)
    assert plan.allowed and not plan.changes_mesh and not plan.changed
    assert plan.to_dict()["record_start"] is None


def test_the_rollback_run_after_a_stopped_one_plans_from_the_cluster():
    """Stopped after the tag moved back: the re-run leaves the tag, restarts what is still on the new proxy and its
    end clears the start; stopped before anything moved: the re-run does the whole rollback."""
    started = us.merge(_upgraded_record(), rollback=dict(revision="1-14-6", namespaces=["bar", "istio-ingress"]),
                       now=T1)
    after_tag = build(_on_new("1-14-6"), "rollback", started, request=ROLLBACK)
    assert after_tag.allowed, after_tag.refusal
    assert not [o for o in after_tag.planned["objects"] if o["action"] != "wait"], after_tag.planned["objects"]
    assert [w["id"] for w in after_tag.planned["workloads"] if w["action"] == "restart"] == ["bar/Deployment/bar"]
    assert after_tag.record_change["remove"] == ["phase.gateways", "phase.tag", "rollback.namespaces",
                                                 "rollback.revision", "rollback.started", "wave.wave1.done",
                                                 "wave.wave1.namespaces", "wave.wave1.started",
                                                 "wave.wave1.workloads"]
    # its start again: the first start time is kept (no change to write)
    again = us.merge(started, **_merge_args(after_tag.to_dict()["record_start"]), now=T2)
    assert us.render(again) == us.render(started)
    before_tag = build(_on_new("1-15-4"), "rollback", started, request=ROLLBACK)
    assert before_tag.planned["tag_change"] == {"tag": "default", "revision": "1-14-6"}
    assert [o["name"] for o in before_tag.planned["objects"]][:1] == ["istio-revision-tag-default"]


def test_forward_phases_refuse_while_a_rollback_is_under_way():
    started = us.merge(_upgraded_record(), rollback=dict(revision="1-14-6", namespaces=["bar"]), now=T1)
    for tag_on in ("1-14-6", "1-15-4"):
        for phase in ("tag", "gateways", "wave1", "wave2", "verify", "cleanup"):
            plan = build(_on_new(tag_on), phase, started)
            assert failed(plan) == ["rollback-finished"], (phase, plan.guards)
            assert "a rollback to revision 1-14-6 started at %s and did not finish" % T1 in plan.refusal
            assert "--tags rollback -e istio_canary_rollback=true" in plan.refusal
            assert "Nothing was changed" in plan.refusal and plan.record_update == {}
    # rollback itself runs; precheck and install of the same target change no workload and are not held back
    assert build(_on_new("1-14-6"), "rollback", started, request=ROLLBACK).allowed
    assert "rollback-finished" not in [g["name"] for g in build(_on_new("1-14-6"), "install", started).guards]
    # another target is refused: the upgrade (and its rollback) is in progress
    other = build(_on_new("1-14-6"), "precheck", started, request={"to_revision": "1-16-0", "to_version": "1.16.0"})
    assert "one-upgrade-at-a-time" in failed(other) and "rollback to 1-14-6 under way" in other.refusal
    # without the start recorded, the same cluster would let a wave believe the tag on the target
    assert "rollback-finished" not in failed(build(_on_new("1-15-4"), "wave1", _upgraded_record()))


def test_status_names_the_rollback_as_the_next_phase():
    started = us.merge(_upgraded_record(), rollback=dict(revision="1-14-6", namespaces=["bar"]), now=T1)
    assert report.next_phase(started, WAVES) == "rollback"
    assert report.next_phase(_upgraded_record(), WAVES) == "wave2"
    assert p.phase_spec("rollback").record_start is not None
