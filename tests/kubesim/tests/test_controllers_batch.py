"""Job and CronJob controllers and run-to-completion pods, driven with the real kubectl."""

from __future__ import annotations

import calendar
import json
import time

import pytest

from kubesim import batch


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


def job(ns, name, command, restart="Never", **spec):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": ns},
            "spec": {**spec, "template": {"spec": {"restartPolicy": restart, "containers": [
                {"name": "main", "image": "docker.io/library/busybox:1.36", "command": command}]}}}}


def apply(sim, obj):
    sim.kubectl("apply", "-f", "-", input=json.dumps(obj), check=True)


def cond(obj, ctype):
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def test_job_runs_pods_to_completion(shared_sim, ns):
    sim = shared_sim
    apply(sim, job(ns, "twice", ["sh", "-c", "sleep 1; echo done"], completions=2, parallelism=1))
    got = kjson(sim, "get", "job", "twice", "-n", ns)
    uid = got["metadata"]["uid"]
    assert got["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert got["spec"]["backoffLimit"] == 6 and got["spec"]["completionMode"] == "NonIndexed"
    done = sim.wait_for(lambda: cond(kjson(sim, "get", "job", "twice", "-n", ns), "Complete"), timeout=60,
                        message="job Complete")
    assert done["status"] == "True"
    got = kjson(sim, "get", "job", "twice", "-n", ns)
    assert got["status"]["succeeded"] == 2 and "active" not in got["status"]
    assert cond(got, "SuccessCriteriaMet")["status"] == "True" and got["status"]["completionTime"]
    pods = kjson(sim, "get", "pods", "-n", ns, "-l", "job-name=twice")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Succeeded" for p in pods)
    assert all(p["metadata"]["ownerReferences"][0] == {"apiVersion": "batch/v1", "kind": "Job", "name": "twice",
                                                       "uid": uid, "controller": True, "blockOwnerDeletion": True}
               for p in pods)
    row = sim.kubectl("get", "job", "twice", "-n", ns, check=True).stdout.splitlines()[1].split()
    assert row[:3] == ["twice", "Complete", "2/2"]


def test_job_fails_after_backoff_limit(shared_sim, ns):
    sim = shared_sim
    apply(sim, job(ns, "broken", ["false"], backoffLimit=1))
    failed = sim.wait_for(lambda: cond(kjson(sim, "get", "job", "broken", "-n", ns), "Failed"), timeout=60,
                          message="job Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    got = kjson(sim, "get", "job", "broken", "-n", ns)
    assert got["status"]["failed"] == 2 and cond(got, "FailureTarget")
    events = kjson(sim, "get", "events", "-n", ns)["items"]
    assert any(e["reason"] == "BackoffLimitExceeded" for e in events)


def test_deleting_a_job_deletes_its_pods(shared_sim, ns):
    sim = shared_sim
    apply(sim, job(ns, "forever", ["sleep", "infinity"]))
    sim.wait_for(lambda: kjson(sim, "get", "pods", "-n", ns, "-l", "job-name=forever")["items"], timeout=30,
                 message="job pod")
    sim.kubectl("delete", "job", "forever", "-n", ns, "--cascade=foreground", check=True)
    sim.wait_for(lambda: not [p for p in kjson(sim, "get", "pods", "-n", ns, "-l", "job-name=forever")["items"]
                              if not p["metadata"].get("deletionTimestamp")], timeout=30, message="pods gone")


def test_cronjob_owns_jobs_made_from_it(shared_sim, ns):
    sim = shared_sim
    cj = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": ns},
          "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {
              "restartPolicy": "OnFailure",
              "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "infinity"]}]}}}}}}
    apply(sim, cj)
    got = kjson(sim, "get", "cronjob", "nightly", "-n", ns)
    assert got["spec"]["concurrencyPolicy"] == "Allow" and got["spec"]["successfulJobsHistoryLimit"] == 3
    sim.kubectl("create", "job", "--from=cronjob/nightly", "nightly-now", "-n", ns, check=True)
    j = kjson(sim, "get", "job", "nightly-now", "-n", ns)
    assert [(r["kind"], r["name"]) for r in j["metadata"]["ownerReferences"]] == [("CronJob", "nightly")]
    status = sim.wait_for(lambda: kjson(sim, "get", "cronjob", "nightly", "-n", ns).get("status", {}).get("active"),
                          timeout=30, message="cronjob active")
    assert [a["name"] for a in status] == ["nightly-now"]
    pod = sim.wait_for(lambda: kjson(sim, "get", "pods", "-n", ns, "-l", "job-name=nightly-now")["items"],
                       timeout=30, message="job pod")[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Job"


@pytest.mark.parametrize("schedule,when,match", [
    ("*/15 * * * *", "2026-03-04T10:30:00", True),
    ("*/15 * * * *", "2026-03-04T10:31:00", False),
    ("0 3 * * *", "2026-03-04T03:00:00", True),
    ("0 3 * * 1-5", "2026-03-08T03:00:00", False),  # a Sunday
    ("@hourly", "2026-03-04T07:00:00", True),
    ("5,10 * * * *", "2026-03-04T07:10:00", True),
])
def test_cron_schedule(schedule, when, match):
    t = calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%S"))
    assert batch.schedule_matches(schedule, t) is match


@pytest.mark.parametrize("command,args,expected", [
    (["sleep", "5"], None, (5.0, 0)), (["sh", "-c", "sleep 2 && echo hi"], None, (2.0, 0)),
    (["true"], None, (0.0, 0)), (["false"], None, (0.0, 1)), (["sleep"], ["infinity"], (None, 0)),
    (["/app/server"], None, (None, 0)), (None, None, (None, 0)),
])
def test_container_exit_from_command(command, args, expected):
    c = {"name": "c"}
    if command:
        c["command"] = command
    if args:
        c["args"] = args
    assert batch.container_exit(c) == expected


def test_classic_sidecar_keeps_a_job_from_completing(kubesim_factory):
    """Istio's long-standing Job problem: istio-proxy as a regular container never exits."""
    sim = kubesim_factory("blog", pod_ready_seconds=0.1)
    apply(sim, job("foo", "once", ["sleep", "1"]))
    pod = sim.wait_for(lambda: [p for p in kjson(sim, "get", "pods", "-n", "foo", "-l", "job-name=once")["items"]
                                if any(c["name"] == "main" and "terminated" in c["state"]
                                       for c in p["status"].get("containerStatuses") or [])],
                       timeout=60, message="app container exited")[0]
    assert pod["status"]["phase"] == "Running"
    proxy = next(c for c in pod["status"]["containerStatuses"] if c["name"] == "istio-proxy")
    assert "running" in proxy["state"]
    time.sleep(1.0)
    got = kjson(sim, "get", "job", "once", "-n", "foo")
    assert not cond(got, "Complete") and got["status"]["active"] == 1
