"""Job and CronJob controllers, and the kubelet's run-to-completion pods (test harness).

Real behaviour followed:

* kube-controller-manager's job controller (kubernetes ``pkg/controller/job``): keeps ``parallelism`` pods
  running until ``completions`` pods succeeded (pods ``<job>-<random>`` owned by the Job, with the generated
  ``batch.kubernetes.io/controller-uid``/``job-name`` labels), counts failures against ``backoffLimit``, and
  reports ``active``/``ready``/``succeeded``/``failed``/``terminating``, ``startTime``/``completionTime`` and
  the conditions ``SuccessCriteriaMet`` + ``Complete`` or ``FailureTarget`` + ``Failed`` (1.31+).
* the cronjob controller (``pkg/controller/cronjob``): at each scheduled minute creates the Job
  ``<cronjob>-<minutes since the epoch>`` owned by the CronJob (annotation
  ``batch.kubernetes.io/cronjob-scheduled-timestamp``), honours ``suspend`` and ``concurrencyPolicy``, keeps
  ``successfulJobsHistoryLimit``/``failedJobsHistoryLimit`` finished Jobs, and reports ``active`` and
  ``lastScheduleTime``/``lastSuccessfulTime``.  ``kubectl create job --from=cronjob/NAME`` makes the same
  owner chain at once.
* the kubelet for pods with ``restartPolicy`` ``Never``/``OnFailure``: a container whose command is ``sleep N``
  (also inside ``sh -c``) exits 0 after N seconds, ``true``/``echo``/``date`` at once, ``false``/``exit K``
  with 1/K; any other command runs until the pod is deleted.  The pod Succeeds (or Fails) when all its regular
  containers have terminated; native sidecars (restartable init containers) are then stopped by the kubelet,
  but a classic istio-proxy container never exits -- so, as on a real cluster, a Job whose pods carry a classic
  sidecar never completes.
"""

from __future__ import annotations

import datetime
import re
import shlex
import time

from .errors import ApiError

JOBS = "jobs.batch"
CRONJOBS = "cronjobs.batch"
PODS = "pods"
FOREVER = None


# ------------------------------------------------------------------------------------------ kubelet side

def container_exit(c: dict) -> tuple:
    """(seconds until the container exits or None for never, exit code) from its command and args."""
    argv = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
    if len(argv) >= 3 and argv[0].rsplit("/", 1)[-1] in ("sh", "bash", "ash") and argv[1] == "-c":
        try:
            argv = shlex.split(argv[2].split(";")[0].split("&&")[0])
        except ValueError:
            return FOREVER, 0
    if not argv:
        return FOREVER, 0
    prog = argv[0].rsplit("/", 1)[-1]
    if prog == "sleep" and len(argv) > 1:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", argv[1])
        if m:
            return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)], 0
        return FOREVER, 0
    if prog in ("true", "echo", "date", "printf", "env"):
        return 0.0, 0
    if prog == "false":
        return 0.0, 1
    if prog == "exit":
        return 0.0, int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else 0
    return FOREVER, 0


def runs_to_completion(pod: dict) -> bool:
    return ((pod.get("spec") or {}).get("restartPolicy") or "Always") in ("Never", "OnFailure")


def _now_iso(t: float | None = None) -> str:
    return datetime.datetime.fromtimestamp(time.time() if t is None else t,
                                           datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(s: str | None) -> float | None:
    if not s:
        return None
    try:
        return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def finished_status(pod: dict, now: float) -> dict | None:
    """The pod's status once the regular containers due to exit by ``now`` have exited, or None if nothing
    changes.  Started times come from the running container statuses."""
    st = dict(pod.get("status") or {})
    if st.get("phase") not in ("Running",):
        return None
    spec = pod.get("spec") or {}
    statuses = [dict(c) for c in st.get("containerStatuses") or []]
    by_name = {c.get("name"): c for c in spec.get("containers") or []}
    changed = False
    for cs in statuses:
        running = (cs.get("state") or {}).get("running")
        if not running:
            continue
        after, code = container_exit(by_name.get(cs.get("name")) or {})
        started = _parse_iso(running.get("startedAt")) or now
        if after is not FOREVER and started + after <= now:
            cs["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                          "startedAt": running.get("startedAt"), "finishedAt": _now_iso(now),
                                          "containerID": cs.get("containerID", "")}}
            cs["ready"] = False
            cs["started"] = False
            changed = True
    if not changed:
        return None
    st["containerStatuses"] = statuses
    done = all((cs.get("state") or {}).get("terminated") for cs in statuses)
    unready = [cs["name"] for cs in statuses if not cs.get("ready")]
    if done:
        failed = any((cs["state"]["terminated"].get("exitCode") or 0) != 0 for cs in statuses)
        st["phase"] = "Failed" if failed else "Succeeded"
        inits = []
        for ics in st.get("initContainerStatuses") or []:  # the kubelet stops native sidecars last
            ics = dict(ics)
            run = (ics.get("state") or {}).get("running")
            if run:
                ics["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": run.get("startedAt"),
                                               "finishedAt": _now_iso(now), "containerID": ics.get("containerID", "")}}
                ics["ready"] = False
                ics["started"] = False
            inits.append(ics)
        if inits:
            st["initContainerStatuses"] = inits
        reason = "PodCompleted"
        msg = None
    else:
        reason = "ContainersNotReady"
        msg = f"containers with unready status: [{' '.join(unready)}]"
    conds = []
    for c in st.get("conditions") or []:
        c = dict(c)
        if c.get("type") in ("Ready", "ContainersReady"):
            if c.get("status") != "False" or c.get("reason") != reason:
                c["lastTransitionTime"] = _now_iso(now)
            c.update(status="False", reason=reason)
            if msg:
                c["message"] = msg
            else:
                c.pop("message", None)
        conds.append(c)
    st["conditions"] = conds
    return st


def next_exit_delay(pod: dict, now: float) -> float | None:
    """Seconds until the next regular container of a running pod exits (None: none will)."""
    spec = pod.get("spec") or {}
    by_name = {c.get("name"): c for c in spec.get("containers") or []}
    best = None
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        running = (cs.get("state") or {}).get("running")
        if not running:
            continue
        after, _ = container_exit(by_name.get(cs.get("name")) or {})
        if after is FOREVER:
            continue
        started = _parse_iso(running.get("startedAt")) or now
        # startedAt has second precision: never earlier than asked
        delay = max(started + after + 1.0 - now, 0.0) if after > 0 else 0.0
        best = delay if best is None else min(best, delay)
    return best


# ------------------------------------------------------------------------------------------ cron schedule

ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
           "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


def _field_matches(expr: str, value: int, lo: int, hi: int) -> bool:
    for part in expr.split(","):
        step = 1
        if "/" in part:
            part, s = part.split("/", 1)
            step = int(s)
        if part in ("*", "?"):
            a, b = lo, hi
        elif "-" in part:
            a, b = (int(x) for x in part.split("-", 1))
        else:
            a = b = int(part)
            if step != 1:
                b = hi
        if a <= value <= b and (value - a) % step == 0:
            return True
    return False


def schedule_matches(schedule: str, t: float) -> bool:
    sched = ALIASES.get(schedule.strip(), schedule.strip())
    if sched.startswith("TZ=") or sched.startswith("CRON_TZ="):
        sched = sched.split(None, 1)[1]
    fields = sched.split()
    if len(fields) != 5:
        return False
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    values = [d.minute, d.hour, d.day, d.month, (d.weekday() + 1) % 7]
    try:
        return all(_field_matches(f, v, lo, hi) for f, v, (lo, hi) in zip(fields, values, RANGES))
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------ controllers

def _cond(conds, ctype):
    return next((c for c in conds or [] if c.get("type") == ctype and c.get("status") == "True"), None)


def job_finished(job: dict) -> str | None:
    conds = (job.get("status") or {}).get("conditions") or []
    if _cond(conds, "Complete"):
        return "Complete"
    if _cond(conds, "Failed"):
        return "Failed"
    return None


class BatchControllers:
    """The job and cronjob controllers, an extra controller of kubesim's ControllerManager (``add_controller``)."""

    kinds = ("job", "cj", "cj-tick", "pod-exit")

    def __init__(self):
        self.cm = None
        self.store = None
        self._exit_armed: set = set()  # pod uids with a pending "containers exit" timer

    # -- ControllerManager extension protocol ------------------------------------------------
    def attach(self, cm):
        self.cm = cm
        self.store = cm.store

    def initial_keys(self):
        keys = []
        for kind, key in (("job", JOBS), ("cj", CRONJOBS)):
            for obj in self.cm._ro_list(key):
                keys.append((kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
        self._arm_cron()
        return keys

    def keys_for(self, event_type, key, obj) -> list:
        meta = (obj or {}).get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        out = []
        if key == JOBS:
            if event_type != "DELETED":
                out.append(("job", ns, name))
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "CronJob":
                    out.append(("cj", ns, ref.get("name")))
        elif key == CRONJOBS and event_type != "DELETED":
            out.append(("cj", ns, name))
        elif key == PODS:
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "Job":
                    out.append(("job", ns, ref.get("name")))
            if event_type == "DELETED":
                self._exit_armed.discard(meta.get("uid"))
            elif runs_to_completion(obj) and (obj.get("status") or {}).get("phase") == "Running" and \
                    meta.get("uid") not in self._exit_armed:
                delay = next_exit_delay(obj, time.time())
                if delay is not None:
                    self._exit_armed.add(meta.get("uid"))
                    self.cm.after(delay, ("pod-exit", ns, name, meta.get("uid")))
        return out

    def sync(self, key):
        kind = key[0]
        if kind == "job":
            self.sync_job(key[1], key[2])
        elif kind == "cj":
            self.sync_cronjob(key[1], key[2])
        elif kind == "cj-tick":
            self.cron_tick(key[1])
        elif kind == "pod-exit":
            self.pod_exit(key[1], key[2], key[3])

    # -- kubelet ----------------------------------------------------------------------------
    def pod_exit(self, ns, name, uid):
        self._exit_armed.discard(uid)
        pod = self.cm._get(PODS, ns, name)
        if pod is None or pod["metadata"].get("uid") != uid or pod["metadata"].get("deletionTimestamp"):
            return
        st = finished_status(pod, time.time())
        if st is not None:
            pod["status"] = st
            pod = self.cm._update_status(PODS, pod)
        delay = next_exit_delay(pod, time.time())  # containers still due to exit later
        if delay is not None and uid not in self._exit_armed:
            self._exit_armed.add(uid)
            self.cm.after(delay, ("pod-exit", ns, name, uid))

    # -- Job ----------------------------------------------------------------------------------
    def _owned_pods(self, job):
        uid = job["metadata"]["uid"]
        return [p for p in self.cm._ro_list(PODS, job["metadata"]["namespace"])
                if any(r.get("uid") == uid and r.get("controller") for r in p["metadata"].get("ownerReferences") or [])]

    def sync_job(self, ns, name):
        job = self.cm._ro_get(JOBS, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job.get("spec") or {}
        pods = self._owned_pods(job)
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")
                       and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        active = [p for p in live if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
        completions = spec.get("completions")
        parallelism = int(spec.get("parallelism") if spec.get("parallelism") is not None else 1)
        backoff = int(spec.get("backoffLimit") if spec.get("backoffLimit") is not None else 6)
        status = dict(job.get("status") or {})
        now = _now_iso()
        finished = job_finished(job)
        conds = [dict(c) for c in status.get("conditions") or []]
        events = []
        if not finished:
            if failed > backoff:
                for c in ("FailureTarget", "Failed"):
                    conds.append({"type": c, "status": "True", "reason": "BackoffLimitExceeded",
                                  "message": "Job has reached the specified backoff limit",
                                  "lastProbeTime": now, "lastTransitionTime": now})
                finished = "Failed"
                events.append(("Warning", "BackoffLimitExceeded", "Job has reached the specified backoff limit"))
            elif (completions is not None and succeeded >= int(completions)) or \
                    (completions is None and succeeded > 0 and not active):
                for c in ("SuccessCriteriaMet", "Complete"):
                    conds.append({"type": c, "status": "True", "reason": "CompletionsReached",
                                  "message": "Reached expected number of succeeded pods",
                                  "lastProbeTime": now, "lastTransitionTime": now})
                finished = "Complete"
                status["completionTime"] = now
                events.append(("Normal", "Completed", "Job completed"))
        if finished:
            for p in active:  # a finished Job keeps no running pods
                self.cm._delete(PODS, ns, p["metadata"]["name"])
            active = []
        elif not spec.get("suspend"):
            remaining = (int(completions) - succeeded) if completions is not None else parallelism
            want = max(min(parallelism, remaining), 0)
            for _ in range(want - len(active)):
                pod = self._job_pod(job)
                if self.cm._create_pod(job, "Job", pod, ("job", ns, name)):
                    events.append(("Normal", "SuccessfulCreate", f"Created pod: {pod['metadata'].get('name')}"))
                else:
                    break
            active = [p for p in self._owned_pods(job) if (p.get("status") or {}).get("phase")
                      not in ("Succeeded", "Failed") and not p["metadata"].get("deletionTimestamp")]
        status.setdefault("startTime", now)
        status.update(succeeded=succeeded, failed=failed, active=len(active),
                      ready=sum(1 for p in active if self.cm_pod_ready(p)), terminating=len(terminating),
                      uncountedTerminatedPods={})
        if conds:
            status["conditions"] = conds
        # JobStatus: active/succeeded/failed are omitempty; ready and terminating are pointers (always shown)
        status = {k: v for k, v in status.items() if v or k in ("ready", "terminating", "uncountedTerminatedPods")}
        if status != (job.get("status") or {}):
            upd = dict(job)
            upd["status"] = status
            self.cm._update_status(JOBS, upd)
        for etype, reason, msg in events:
            self.cm._event(job, etype, reason, msg, "job-controller")

    @staticmethod
    def cm_pod_ready(p) -> bool:
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (p.get("status") or {}).get("conditions") or [])

    def _job_pod(self, job) -> dict:
        name = job["metadata"]["name"]
        tmpl = (job.get("spec") or {}).get("template") or {}
        pod = self.cm._pod_from_template(job, "Job", self.cm._generate_name(name), tmpl)
        pod["metadata"]["generateName"] = f"{name}-"
        pod["metadata"]["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                               "uid": job["metadata"]["uid"], "controller": True,
                                               "blockOwnerDeletion": True}]
        pod["spec"]["restartPolicy"] = (tmpl.get("spec") or {}).get("restartPolicy") or "Never"
        return pod

    # -- CronJob -------------------------------------------------------------------------------
    def _owned_jobs(self, cj):
        uid = cj["metadata"]["uid"]
        return [j for j in self.cm._ro_list(JOBS, cj["metadata"]["namespace"])
                if any(r.get("uid") == uid and r.get("controller") for r in j["metadata"].get("ownerReferences") or [])]

    def sync_cronjob(self, ns, name):
        cj = self.cm._ro_get(CRONJOBS, ns, name)
        if cj is None or cj["metadata"].get("deletionTimestamp"):
            return
        spec = cj.get("spec") or {}
        jobs = self._owned_jobs(cj)
        active = [j for j in jobs if not job_finished(j) and not j["metadata"].get("deletionTimestamp")]
        done_ok = sorted([j for j in jobs if job_finished(j) == "Complete"],
                         key=lambda j: j["metadata"].get("creationTimestamp") or "")
        done_failed = sorted([j for j in jobs if job_finished(j) == "Failed"],
                             key=lambda j: j["metadata"].get("creationTimestamp") or "")
        for finished, limit in ((done_ok, spec.get("successfulJobsHistoryLimit", 3)),
                                (done_failed, spec.get("failedJobsHistoryLimit", 1))):
            extra = len(finished) - int(limit if limit is not None else 0)
            for j in finished[:max(extra, 0)]:
                try:
                    self.store.delete(JOBS, j["metadata"]["name"], ns, propagation="Background")
                except ApiError as e:
                    if e.code != 404:
                        raise
        status = dict(cj.get("status") or {})
        if active:
            status["active"] = [{"kind": "Job", "namespace": ns, "name": j["metadata"]["name"],
                                 "uid": j["metadata"]["uid"], "apiVersion": "batch/v1",
                                 "resourceVersion": j["metadata"].get("resourceVersion")}
                                for j in sorted(active, key=lambda j: j["metadata"]["name"])]
        else:
            status.pop("active", None)
        if done_ok:
            status["lastSuccessfulTime"] = (done_ok[-1].get("status") or {}).get("completionTime") or _now_iso()
        if status != (cj.get("status") or {}):
            upd = dict(cj)
            upd["status"] = status
            self.cm._update_status(CRONJOBS, upd)

    def _arm_cron(self):
        now = time.time()
        nxt = (int(now // 60) + 1) * 60
        self.cm.after(nxt - now + 0.05, ("cj-tick", nxt))

    def cron_tick(self, minute_start):
        self._arm_cron()
        for cj in self.cm._ro_list(CRONJOBS):
            spec = cj.get("spec") or {}
            if spec.get("suspend") or not schedule_matches(str(spec.get("schedule") or ""), minute_start):
                continue
            created = _parse_iso(cj["metadata"].get("creationTimestamp")) or 0
            if created > minute_start:
                continue
            self.run_cronjob(cj, minute_start)

    def run_cronjob(self, cj, scheduled: float):
        ns, name = cj["metadata"]["namespace"], cj["metadata"]["name"]
        spec = cj.get("spec") or {}
        active = [j for j in self._owned_jobs(cj) if not job_finished(j)]
        policy = spec.get("concurrencyPolicy") or "Allow"
        if active and policy == "Forbid":
            return
        if active and policy == "Replace":
            for j in active:
                self.store.delete(JOBS, j["metadata"]["name"], ns, propagation="Background")
        jt = spec.get("jobTemplate") or {}
        tmeta = jt.get("metadata") or {}
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": f"{name}-{int(scheduled // 60)}", "namespace": ns,
                            "labels": dict(tmeta.get("labels") or {}),
                            "annotations": {**(tmeta.get("annotations") or {}),
                                            "batch.kubernetes.io/cronjob-scheduled-timestamp":
                                                datetime.datetime.fromtimestamp(scheduled, datetime.timezone.utc)
                                                .strftime("%Y-%m-%dT%H:%M:%SZ")},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": name,
                                                 "uid": cj["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": jt.get("spec") or {}}
        try:
            self.store.create(JOBS, job)
        except ApiError as e:
            if e.code == 409:
                return
            self.cm._event(cj, "Warning", "FailedCreate", f"Error creating job: {e.message}", "cronjob-controller")
            return
        self.cm._event(cj, "Normal", "SuccessfulCreate", f"Created job {job['metadata']['name']}",
                       "cronjob-controller")
        cur = self.cm._get(CRONJOBS, ns, name)
        if cur is not None:
            st = dict(cur.get("status") or {})
            st["lastScheduleTime"] = _now_iso(scheduled)
            cur["status"] = st
            self.cm._update_status(CRONJOBS, cur)
