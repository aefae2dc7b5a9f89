"""Argo Rollouts for the simulated cluster (test harness).

Feature ``argo-rollouts`` (``--feature argo-rollouts`` or a scenario's ``features``): what
``kubectl apply -f install.yaml`` of argoproj/argo-rollouts puts in a cluster -- the ``argoproj.io``
CRDs (``rollouts``/``ro`` with the status and scale subresources and the Desired/Current/Up-to-date/Available
columns of ``manifests/crds/rollout-crd.yaml``; ``analysisruns``, ``analysistemplates``,
``clusteranalysistemplates``, ``experiments``; schemas written here, smaller than the real ones), the
controller Deployment ``argo-rollouts`` in namespace ``argo-rollouts`` -- and the rollout controller itself,
modelled on argo-rollouts ``rollout/`` and ``utils/``:

* ReplicaSets ``<rollout>-<hash>`` owned by the Rollout, ``rollouts-pod-template-hash`` added to their labels,
  selector and pod template, annotations ``rollout.argoproj.io/revision`` and ``desired-replicas``
  (``rollout/sync.go`` createDesiredReplicaSet, ``utils/annotations``); the Rollout's own
  ``rollout.argoproj.io/revision`` annotation.
* ``spec.restartAt`` (``rollout/restart.go``, set by ``kubectl argo rollouts restart`` as a merge patch
  ``{"spec":{"restartAt":"<RFC 3339 now>"}}``): once the time has passed, pods created before it are evicted
  (``pods/eviction``) at most ``max(maxUnavailable, 1)`` below ``max(replicas, total)`` at a time, the stable
  ReplicaSet's first, while the ReplicaSets recreate them; when none is left ``status.restartedAt`` takes the
  value of ``spec.restartAt``.  No new ReplicaSet, no change of ``currentPodHash``; the phase is
  ``Progressing`` ("rollout is restarting") meanwhile.
* Canary (``rollout/canary.go``, ``utils/replicaset/canary.go`` CalculateReplicaCountsForBasicCanary): no
  steps -> the new ReplicaSet replaces the stable one within maxSurge/maxUnavailable (defaults 25%);
  ``setWeight`` steps scale canary/stable to the weight, ``pause`` steps (with ``duration`` or until
  ``status.pauseConditions`` is cleared, as ``kubectl argo rollouts promote`` does) pause with a
  ``CanaryPauseStep`` pause condition; after the last step the canary becomes ``status.stableRS``; other step
  kinds (analysis, experiment, plugins) count as done.  ``canaryService``/``stableService`` selectors get the
  hashes.
* BlueGreen (``rollout/bluegreen.go``, ``rollout/service.go``): the new ReplicaSet scales up beside the
  active one (``previewReplicaCount``), the ``previewService`` selects it, and once available it is promoted
  (``autoPromotionEnabled`` default true; else a ``BlueGreenPause`` until promoted): the ``activeService``
  selector gets its ``rollouts-pod-template-hash`` and the old ReplicaSet is scaled down
  ``scaleDownDelaySeconds`` (default 30) later (annotation ``scale-down-deadline``).
* Status (``rollout/sync.go`` calculateBaseStatus, calculateRolloutConditions, persistRolloutStatus;
  ``utils/rollout/rolloututil.go`` CalculateRolloutPhase; ``utils/conditions``): replicas, updatedReplicas,
  readyReplicas, availableReplicas, HPAReplicas, selector, currentPodHash, stableRS, currentStepIndex and
  currentStepHash (canary with steps), blueGreen.activeSelector/previewSelector, restartedAt,
  observedGeneration (a string), conditions Progressing (NewReplicaSetCreated, ReplicaSetUpdated,
  NewReplicaSetAvailable, ProgressDeadlineExceeded, RolloutPaused), Available, Completed, Healthy, Paused,
  phase Healthy/Progressing/Paused/Degraded with its message.

Not modelled: analysis, experiments, traffic routing, workloadRef, abort, anti-affinity, ephemeral metadata.
"""

from __future__ import annotations

import json
import math
import time

from .controllers import (_clone, int_or_percent, now_iso, owned_by, parse_iso, pod_available, template_hash,
                          terminating)
from .errors import ApiError
from .selectors import match_label_selector, selector_to_string

GROUP = "argoproj.io"
RO = "rollouts.argoproj.io"
RS = "replicasets.apps"
PODS = "pods"
SERVICES = "services"
HASH_LABEL = "rollouts-pod-template-hash"
REVISION_ANN = "rollout.argoproj.io/revision"
DESIRED_ANN = "rollout.argoproj.io/desired-replicas"
MANAGED_BY_ANN = "argo-rollouts.argoproj.io/managed-by-rollouts"
SCALE_DOWN_ANN = "scale-down-deadline"
CONTROLLER_IMAGE = "quay.io/argoproj/argo-rollouts:v1.8.3"
NAMESPACE = "argo-rollouts"


# ------------------------------------------------------------------------------------------ CRDs

def _crd(kind, plural, short, scope="Namespaced", columns=(), spec_schema=None, scale=False):
    obj_schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    schema = {"type": "object", "required": ["spec"] if spec_schema else [],
              "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                             "metadata": {"type": "object"}, "spec": spec_schema or obj_schema,
                             "status": obj_schema}}
    if not schema["required"]:
        del schema["required"]
    subresources = {"status": {}}
    if scale:
        subresources["scale"] = {"labelSelectorPath": ".status.selector", "specReplicasPath": ".spec.replicas",
                                 "statusReplicasPath": ".status.HPAReplicas"}
    version = {"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema},
               "subresources": subresources}
    if columns:
        version["additionalPrinterColumns"] = list(columns)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}",
                         "annotations": {"controller-gen.kubebuilder.io/version": "v0.19.0"}},
            "spec": {"group": GROUP, "scope": scope,
                     "names": {"kind": kind, "listKind": kind + "List", "plural": plural, "shortNames": [short],
                               "singular": kind.lower()},
                     "versions": [version]}}


def _col(name, path, typ, desc):
    return {"name": name, "jsonPath": path, "type": typ, "description": desc}


AGE = _col("Age", ".metadata.creationTimestamp", "date", "Time since resource was created")
_INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
ROLLOUT_SPEC = {
    "type": "object",
    "properties": {
        "replicas": {"type": "integer", "format": "int32"},
        "selector": _PRESERVE,
        "template": _PRESERVE,
        "workloadRef": _PRESERVE,
        "minReadySeconds": {"type": "integer", "format": "int32"},
        "revisionHistoryLimit": {"type": "integer", "format": "int32"},
        "paused": {"type": "boolean"},
        "progressDeadlineSeconds": {"type": "integer", "format": "int32"},
        "progressDeadlineAbort": {"type": "boolean"},
        "restartAt": {"type": "string", "format": "date-time"},
        "rollbackWindow": _PRESERVE,
        "analysis": _PRESERVE,
        "strategy": {"type": "object", "properties": {
            "blueGreen": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
                "activeService": {"type": "string"}, "previewService": {"type": "string"},
                "autoPromotionEnabled": {"type": "boolean"}, "autoPromotionSeconds": {"type": "integer"},
                "previewReplicaCount": {"type": "integer"}, "scaleDownDelaySeconds": {"type": "integer"},
                "maxUnavailable": _INT_OR_STRING}},
            "canary": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {
                "canaryService": {"type": "string"}, "stableService": {"type": "string"},
                "maxSurge": _INT_OR_STRING, "maxUnavailable": _INT_OR_STRING,
                "steps": {"type": "array", "items": _PRESERVE}}}}},
    },
}


def crd_objects() -> list:
    return [
        _crd("Rollout", "rollouts", "ro", columns=[
            _col("Desired", ".spec.replicas", "integer", "Number of desired pods"),
            _col("Current", ".status.replicas", "integer", "Total number of non-terminated pods targeted by this "
                                                             "rollout"),
            _col("Up-to-date", ".status.updatedReplicas", "integer", "Total number of non-terminated pods targeted "
                                                                      "by this rollout that have the desired "
                                                                      "template spec"),
            _col("Available", ".status.availableReplicas", "integer", "Total number of available pods (ready for "
                                                                       "at least minReadySeconds) targeted by "
                                                                       "this rollout"),
            AGE], spec_schema=ROLLOUT_SPEC, scale=True),
        _crd("AnalysisRun", "analysisruns", "ar",
             columns=[_col("Status", ".status.phase", "string", "AnalysisRun status"), AGE]),
        _crd("AnalysisTemplate", "analysistemplates", "at", columns=[AGE]),
        _crd("ClusterAnalysisTemplate", "clusteranalysistemplates", "cat", scope="Cluster", columns=[AGE]),
        _crd("Experiment", "experiments", "exp",
             columns=[_col("Status", ".status.phase", "string", "Experiment status"), AGE]),
    ]


def controller_objects() -> list:
    labels = {"app.kubernetes.io/component": "rollouts-controller", "app.kubernetes.io/name": "argo-rollouts",
              "app.kubernetes.io/part-of": "argo-rollouts"}
    sel = {"app.kubernetes.io/name": "argo-rollouts"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "argo-rollouts", "namespace": NAMESPACE, "labels": dict(labels)}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "argo-rollouts-metrics", "namespace": NAMESPACE,
                      "labels": {**labels, "app.kubernetes.io/component": "server"}},
         "spec": {"selector": dict(sel), "ports": [{"name": "metrics", "port": 8090, "protocol": "TCP",
                                                    "targetPort": 8090}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "argo-rollouts", "namespace": NAMESPACE, "labels": dict(labels)},
         "spec": {"replicas": 1, "selector": {"matchLabels": dict(sel)}, "strategy": {"type": "Recreate"},
                  "template": {"metadata": {"labels": dict(sel)},
                               "spec": {"serviceAccountName": "argo-rollouts",
                                        "containers": [{"name": "argo-rollouts", "image": CONTROLLER_IMAGE,
                                                        "args": ["--healthzPort=8080"],
                                                        "ports": [{"containerPort": 8090, "name": "metrics"},
                                                                  {"containerPort": 8080, "name": "healthz"}]}]}}}},
    ]


# ------------------------------------------------------------------------------------------ helpers

def _replicas(ro) -> int:
    v = (ro.get("spec") or {}).get("replicas")
    return 1 if v is None else int(v)


def _spec_replicas(rs) -> int:
    v = ((rs or {}).get("spec") or {}).get("replicas")
    return 0 if rs is None else (1 if v is None else int(v))


def _st(rs, field) -> int:
    return int(((rs or {}).get("status") or {}).get(field) or 0)


def _hash_of(rs) -> str:
    return ((rs.get("metadata") or {}).get("labels") or {}).get(HASH_LABEL, "")


def _revision(obj) -> int:
    try:
        return int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION_ANN) or 0)
    except ValueError:
        return 0


def _cond(status, ctype):
    return next((c for c in status.get("conditions") or [] if c.get("type") == ctype), None)


def _set_cond(status, ctype, cstatus, reason, message, now) -> bool:
    """utils/conditions SetRolloutCondition."""
    cur = _cond(status, ctype)
    if cur is not None and cur.get("status") == cstatus and cur.get("reason") == reason:
        return False
    new = {"type": ctype, "status": cstatus, "lastUpdateTime": now, "lastTransitionTime": now, "reason": reason,
           "message": message}
    if cur is not None and cur.get("status") == cstatus:
        new["lastTransitionTime"] = cur.get("lastTransitionTime", now)
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype] + [new]
    return True


def _rfc3339_seconds(value) -> float | None:
    return parse_iso(value) if isinstance(value, str) else None


def step_hash(ro) -> str:
    """conditions.ComputeStepHash: a hash of the canary steps."""
    steps = (((ro.get("spec") or {}).get("strategy") or {}).get("canary") or {}).get("steps") or []
    data = json.dumps(steps, sort_keys=True, separators=(",", ":")).encode()
    from .controllers import fnv32a, safe_encode
    return safe_encode(str(fnv32a(data)))


def _duration_seconds(d) -> float:
    if d is None:
        return 0.0
    if isinstance(d, (int, float)):
        return float(d)
    s = str(d).strip()
    total, num = 0.0, ""
    units = {"h": 3600, "m": 60, "s": 1}
    for ch in s:
        if ch.isdigit() or ch == ".":
            num += ch
        elif ch in units and num:
            total += float(num) * units[ch]
            num = ""
    if num:
        total += float(num)
    return total


def max_surge_unavailable(ro) -> tuple[int, int]:
    """utils/replicaset MaxSurge/MaxUnavailable (defaults 25% / 25%; blueGreen: maxUnavailable default 0)."""
    replicas = _replicas(ro)
    st = (ro.get("spec") or {}).get("strategy") or {}
    if replicas == 0:
        return 0, 0
    if st.get("canary") is not None:
        c = st["canary"]
        surge = int_or_percent(c.get("maxSurge", "25%"), replicas, True)
        unavail = int_or_percent(c.get("maxUnavailable", "25%"), replicas, False)
        if surge == 0 and unavail == 0:
            unavail = 1
        return surge, min(unavail, replicas)
    bg = st.get("blueGreen") or {}
    return 0, min(int_or_percent(bg.get("maxUnavailable", 0), replicas, False), replicas)


def _weighted_counts(replicas: int, weight: int, surge: int) -> tuple[int, int]:
    """approximateWeightedCanaryStableReplicaCounts (max weight 100)."""
    if replicas == 0:
        return 0, 0
    ceil_c = int(math.ceil(replicas * weight / 100))
    floor_c = int(math.floor(replicas * weight / 100))

    def tied(total):
        return math.modf(total * weight / 100)[0] == 0.5

    zero_ok = weight in (0, 100) or (replicas == 1 and surge == 0)
    options = []
    if ceil_c < replicas or zero_ok:
        options.append((ceil_c, replicas))
    if not tied(replicas) and (floor_c != 0 or zero_ok):
        options.append((floor_c, replicas))
    if surge > 0:
        options.append((ceil_c, replicas + 1))
        if not tied(replicas + 1) and (floor_c != 0 or zero_ok):
            options.append((floor_c, replicas + 1))
    if not options:
        return 0, replicas
    best = min(options, key=lambda o: abs(o[0] * 100 / o[1] - weight))
    return best[0], best[1] - best[0]


# ------------------------------------------------------------------------------------------ controller

class RolloutController:
    """argo-rollouts' rollout controller: work keys ``("ro", namespace, name)``."""

    kinds = ("ro",)

    def attach(self, cm):
        self.cm = cm

    def initial_keys(self):
        if self.cm.store.registry.get(RO) is None:
            return
        for ro in self.cm._ro_list(RO):
            yield ("ro", ro["metadata"]["namespace"], ro["metadata"]["name"])

    def keys_for(self, event_type, key, obj):
        meta = (obj or {}).get("metadata") or {}
        if key == RO:
            return [("ro", meta.get("namespace"), meta.get("name"))]
        if key == RS:
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "Rollout":
                    return [("ro", meta.get("namespace"), ref.get("name"))]
        return ()

    # ---------------------------------------------------------------- sync
    def sync(self, key):
        _, ns, name = key
        cm = self.cm
        if cm.store.registry.get(RO) is None:
            return
        ro = cm._ro_get(RO, ns, name)
        if ro is None or terminating(ro):
            return
        ro = _clone(ro)
        spec = ro.setdefault("spec", {})
        strategy = spec.get("strategy") or {}
        status = ro.get("status") or {}
        template = spec.get("template") or {}
        problem = self._invalid(ro)
        if problem:
            return self._persist_invalid(ro, problem)
        collision = status.get("collisionCount")
        pod_hash = template_hash(template, int(collision or 0))
        all_rs = [r for r in cm._ro_list(RS, ns) if owned_by(r, ro) and not terminating(r)]
        new_rs = next((r for r in all_rs if _hash_of(r) == pod_hash), None)
        stable_hash = status.get("stableRS", "")
        stable_rs = next((r for r in all_rs if stable_hash and _hash_of(r) == stable_hash), None)
        template_changed = status.get("currentPodHash") != pod_hash or \
            (strategy.get("canary") is not None and status.get("currentStepHash") != step_hash(ro))
        if new_rs is None:
            new_rs = self._create_rs(ro, pod_hash, all_rs, stable_rs)
            if new_rs is None:
                return
            all_rs.append(new_rs)
            return  # the creation wrote status; the RS event brings us back
        new_rs = self._sync_revision(ro, new_rs, all_rs)
        ctx = _Ctx(ro, new_rs, stable_rs, all_rs, pod_hash)
        if template_changed:
            return self._persist(ctx, reset=True)
        if self._restart(ctx):
            return
        if strategy.get("blueGreen") is not None:
            self._blue_green(ctx)
        else:
            self._canary(ctx)
        self._persist(ctx)

    def _invalid(self, ro) -> str:
        spec = ro.get("spec") or {}
        st = spec.get("strategy") or {}
        if not spec.get("template") and not spec.get("workloadRef"):
            return "Rollout has missing field '.spec.template'"
        if not spec.get("selector"):
            return "Rollout has missing field '.spec.selector'"
        if st.get("canary") is None and st.get("blueGreen") is None:
            return "Rollout has missing field '.spec.strategy.canary or .spec.strategy.blueGreen'"
        if st.get("blueGreen") is not None and not st["blueGreen"].get("activeService"):
            return "Rollout has missing field '.spec.strategy.blueGreen.activeService'"
        sel = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not match_label_selector(sel, labels):
            return "The Rollout \"%s\" is invalid: spec.template.metadata.labels: Invalid value: \"%s\": `selector` " \
                   "does not match template `labels`" % (ro["metadata"]["name"], ",".join(
                       f"{k}={v}" for k, v in sorted(labels.items())))
        return ""

    def _persist_invalid(self, ro, message):
        status = _clone(ro.get("status") or {})
        now = now_iso()
        _set_cond(status, "InvalidSpec", "True", "InvalidSpec", message, now)
        status["observedGeneration"] = str(ro["metadata"].get("generation", 1))
        status["phase"], status["message"] = "Degraded", f"InvalidSpec: {message}"
        status.setdefault("canary", {})
        status.setdefault("blueGreen", {})
        self._write_status(ro, status)

    def _create_rs(self, ro, pod_hash, all_rs, stable_rs):
        cm = self.cm
        meta, spec = ro["metadata"], ro.get("spec") or {}
        revision = max([_revision(r) for r in all_rs] or [0]) + 1
        tmpl = _clone(spec.get("template") or {})
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
        sel = _clone(spec.get("selector") or {})
        sel.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
        ann = {k: v for k, v in (meta.get("annotations") or {}).items()
               if k not in ("kubectl.kubernetes.io/last-applied-configuration", REVISION_ANN)
               and not k.startswith("notified.notifications.argoproj.io")}
        ann.update({REVISION_ANN: str(revision), DESIRED_ANN: str(_replicas(ro))})
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
                           "labels": dict(tmpl["metadata"]["labels"]), "annotations": ann,
                           "ownerReferences": [{"apiVersion": f"{GROUP}/v1alpha1", "kind": "Rollout",
                                                "name": meta["name"], "uid": meta["uid"], "controller": True,
                                                "blockOwnerDeletion": True}]},
              "spec": {"replicas": 0, "minReadySeconds": int(spec.get("minReadySeconds") or 0), "selector": sel,
                       "template": tmpl}}
        try:
            created = cm.store.create(RS, rs)
        except ApiError as e:
            if e.code == 409:
                existing = cm._ro_get(RS, meta["namespace"], rs["metadata"]["name"])
                if existing is not None and owned_by(existing, ro):
                    return existing
                status = _clone(ro.get("status") or {})
                status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
                self._write_status(ro, status)
                return None
            status = _clone(ro.get("status") or {})
            msg = f'Failed to create new replica set "{rs["metadata"]["name"]}": {e.message}'
            _set_cond(status, "Progressing", "False", "ReplicaSetCreateError", msg, now_iso())
            self._write_status(ro, status)
            cm._event(ro, "Warning", "ReplicaSetCreateError", msg, "rollouts-controller")
            return None
        self._set_rollout_revision(ro, revision)
        cm._event(ro, "Normal", "NewReplicaSetCreated", f"Created ReplicaSet {created['metadata']['name']} "
                  f"(revision {revision})", "rollouts-controller")
        status = _clone((cm._ro_get(RO, meta["namespace"], meta["name"]) or ro).get("status") or {})
        _set_cond(status, "Progressing", "True", "NewReplicaSetCreated",
                  f'Created new replica set "{created["metadata"]["name"]}"', now_iso())
        self._write_status(ro, status)
        return created

    def _set_rollout_revision(self, ro, revision):
        cur = self.cm._ro_get(RO, ro["metadata"]["namespace"], ro["metadata"]["name"])
        if cur is None or ((cur["metadata"].get("annotations") or {}).get(REVISION_ANN) == str(revision)):
            return
        new = _clone(cur)
        new["metadata"].setdefault("annotations", {})[REVISION_ANN] = str(revision)
        self.cm._update(RO, new)

    def _sync_revision(self, ro, new_rs, all_rs):
        """syncReplicaSetRevision: a ReplicaSet that becomes the new one again gets the next revision."""
        top = max([_revision(r) for r in all_rs if r is not new_rs] or [0])
        if _revision(new_rs) <= top:
            new = _clone(new_rs)
            ann = new["metadata"].setdefault("annotations", {})
            old = ann.get(REVISION_ANN)
            ann[REVISION_ANN] = str(top + 1)
            if old:
                hist = [h for h in (ann.get("rollout.argoproj.io/revision-history") or "").split(",") if h]
                ann["rollout.argoproj.io/revision-history"] = ",".join(hist + [old])
            new_rs = self.cm._update(RS, new)
            self._set_rollout_revision(ro, top + 1)
        elif str(_revision(new_rs)) != ((ro["metadata"].get("annotations") or {}).get(REVISION_ANN)):
            self._set_rollout_revision(ro, _revision(new_rs))
        return new_rs

    # ---------------------------------------------------------------- restart (rollout/restart.go)
    def _restart(self, ctx) -> bool:
        ro = ctx.ro
        spec, status = ro.get("spec") or {}, ro.get("status") or {}
        restart_at = spec.get("restartAt")
        if not restart_at:
            return False
        when = _rfc3339_seconds(restart_at)
        now = time.time()
        if when is None:
            return False
        if when > now:
            self.cm.after(when - now + 0.05, ("ro", ro["metadata"]["namespace"], ro["metadata"]["name"]))
            return False
        if status.get("restartedAt") == restart_at:
            return False
        if not now > when:  # NeedsRestart: now.After(restartAt)
            self.cm.after(0.1, ("ro", ro["metadata"]["namespace"], ro["metadata"]["name"]))
            return False
        ns = ro["metadata"]["namespace"]
        uids = {r["metadata"]["uid"] for r in ctx.all_rs}
        pods = [p for p in self.cm._ro_list(PODS, ns)
                if match_label_selector(spec.get("selector"), p["metadata"].get("labels") or {})
                and any(ref.get("uid") in uids for ref in p["metadata"].get("ownerReferences") or [])]
        # the stable ReplicaSet's pods first, then the new one's, then the others' (SortReplicaSetsByPriority)
        order = {r["metadata"]["uid"]: i for i, r in enumerate(
            sorted(ctx.all_rs, key=lambda r: (0 if ctx.stable_rs is not None and r is ctx.stable_rs else
                                              1 if r is ctx.new_rs else 2,
                                              r["metadata"].get("creationTimestamp") or "")))}
        pods.sort(key=lambda p: (min(order.get(ref.get("uid"), 9) for ref in p["metadata"].get("ownerReferences")
                                     or [{}]), p["metadata"]["name"]))
        total = sum(_spec_replicas(r) for r in ctx.all_rs)
        replicas = _replicas(ro)
        min_ready = int(spec.get("minReadySeconds") or 0)
        available = sum(1 for p in pods if pod_available(p, min_ready, now) and not terminating(p))
        _, max_unavail = max_surge_unavailable(ro)
        concurrent = max(max_unavail, 1)
        can_restart = available - (max(replicas, total) - concurrent)
        needs = restarted = 0
        for p in pods:
            created = parse_iso(p["metadata"].get("creationTimestamp"))
            if created is not None and created >= when:
                continue
            needs += 1
            if can_restart <= 0 or terminating(p):
                continue
            try:
                self.cm.store.delete(PODS, p["metadata"]["name"], ns)  # pods/eviction
            except ApiError as e:
                if e.code == 429:
                    continue
                if e.code != 404:
                    raise
            can_restart -= 1
            restarted += 1
        if needs - restarted:
            # restartPodCheckTime: 30s; ReplicaSet status changes bring the rollout back sooner
            self.cm.after(30.0, ("ro", ns, ro["metadata"]["name"]))
        else:
            ctx.restarted_at = restart_at
        return restarted > 0

    # ---------------------------------------------------------------- canary (rollout/canary.go)
    def _canary(self, ctx):
        ro, cm = ctx.ro, self.cm
        spec, status = ro.get("spec") or {}, ro.get("status") or {}
        canary = (spec.get("strategy") or {}).get("canary") or {}
        steps = canary.get("steps") or []
        replicas = _replicas(ro)
        surge, unavail = max_surge_unavailable(ro)
        new_rs, stable_rs = ctx.new_rs, ctx.stable_rs
        others = [r for r in ctx.all_rs if r is not new_rs and r is not stable_rs]
        if spec.get("paused"):
            return self._services(ctx)
        idx = status.get("currentStepIndex")
        idx = 0 if idx is None else int(idx)
        if not steps or stable_rs is None or stable_rs is new_rs or status.get("promoteFull"):
            weight = 100
        else:
            weight = 0
            for s in steps[: min(idx, len(steps) - 1) + 1][::-1]:
                if s.get("setWeight") is not None:
                    weight = int(s["setWeight"])
                    break
            if idx >= len(steps):
                weight = 100
        scaled = False
        # scale the stable and new ReplicaSets toward the weight (CalculateReplicaCountsForBasicCanary)
        want_new, want_stable = self._basic_canary_counts(ro, new_rs, stable_rs, others, weight, surge, unavail)
        if stable_rs is not None and stable_rs is not new_rs and _spec_replicas(stable_rs) != want_stable:
            self._scale(ro, stable_rs, want_stable)
            scaled = True
        elif _spec_replicas(new_rs) != want_new:
            self._scale(ro, new_rs, want_new)
            scaled = True
        else:
            # old ReplicaSets (neither stable nor new): down as availability allows
            available = sum(_st(r, "availableReplicas") for r in ctx.all_rs)
            max_down = available - (replicas - unavail)
            for r in sorted(others, key=_revision, reverse=True):
                if max_down <= 0:
                    break
                n = _spec_replicas(r)
                if n == 0:
                    continue
                target = n - max_down if n > max_down else 0
                self._scale(ro, r, target)
                max_down -= n - target
                scaled = True
        self._services(ctx)
        if scaled:
            return
        # pause steps and step progression (reconcileCanaryPause, completedCurrentCanaryStep)
        if steps and stable_rs is not None and stable_rs is not new_rs and idx < len(steps):
            step = steps[idx]
            pause_conds = [c for c in status.get("pauseConditions") or [] if c.get("reason") == "CanaryPauseStep"]
            if step.get("pause") is not None:
                dur = step["pause"].get("duration")
                if pause_conds:
                    if dur is not None:
                        start = parse_iso(pause_conds[0].get("startTime")) or time.time()
                        left = start + _duration_seconds(dur) - time.time()
                        if left < 0:
                            ctx.step_done = True
                        else:
                            cm.after(left + 0.05, ("ro", ro["metadata"]["namespace"], ro["metadata"]["name"]))
                elif status.get("controllerPause"):
                    ctx.step_done = True  # the pause condition was cleared: promoted
                else:
                    ctx.add_pause = "CanaryPauseStep"
            elif step.get("setWeight") is not None:
                if _spec_replicas(new_rs) == want_new and _st(new_rs, "availableReplicas") >= want_new and \
                        (stable_rs is None or _st(stable_rs, "availableReplicas") >= min(want_stable,
                                                                                          _spec_replicas(stable_rs))):
                    ctx.step_done = True
            else:
                ctx.step_done = True

    def _basic_canary_counts(self, ro, new_rs, stable_rs, others, weight, surge, unavail):
        replicas = _replicas(ro)
        want_new, want_stable = _weighted_counts(replicas, weight, surge)
        new_n = _spec_replicas(new_rs)
        scale_stable = stable_rs is not None and stable_rs is not new_rs
        stable_n = _spec_replicas(stable_rs) if scale_stable else 0
        if not scale_stable:
            want_new, want_stable = replicas, 0
        max_total = replicas + surge
        total = new_n + stable_n + sum(_spec_replicas(r) for r in others)
        up = max_total - total
        out_new, out_stable = new_n, stable_n
        if scale_stable and stable_n < want_stable and up > 0:
            if stable_n + up < want_stable:
                out_stable, up = stable_n + up, 0
            else:
                up -= want_stable - stable_n
                out_stable = want_stable
        if new_n < want_new and up > 0:
            out_new = min(new_n + up, want_new)
        if sum(_spec_replicas(r) for r in others) > 0:
            return out_new, out_stable
        min_available = replicas - unavail
        increasing = want_new >= new_n

        def for_scale_down(rs, ignore_availability):
            if rs is None:
                return 0
            n, avail = _spec_replicas(rs), _st(rs, "availableReplicas")
            if n < avail or ignore_availability:
                return n
            return avail

        to_down = for_scale_down(new_rs, not increasing) + (for_scale_down(stable_rs, increasing)
                                                             if scale_stable else 0)
        if to_down <= min_available:
            return out_new, out_stable
        down = to_down - min_available
        if not increasing:
            if new_n > want_new:
                out_new = max(want_new, new_n - down)
            out_new, out_stable = _within_limits(new_rs, stable_rs if scale_stable else None, out_new, out_stable,
                                                 max_total, min_available)
        elif scale_stable:
            if stable_n > want_stable:
                out_stable = max(want_stable, stable_n - down)
            out_stable, out_new = _within_limits(stable_rs, new_rs, out_stable, out_new, max_total, min_available)
        return out_new, out_stable

    # ---------------------------------------------------------------- blue-green (rollout/bluegreen.go)
    def _blue_green(self, ctx):
        ro, cm = ctx.ro, self.cm
        spec, status = ro.get("spec") or {}, ro.get("status") or {}
        bg = (spec.get("strategy") or {}).get("blueGreen") or {}
        replicas = _replicas(ro)
        new_rs = ctx.new_rs
        active_sel = (status.get("blueGreen") or {}).get("activeSelector", "")
        active_rs = next((r for r in ctx.all_rs if active_sel and _hash_of(r) == active_sel), None)
        ctx.active_selector = active_sel
        ctx.preview_selector = (status.get("blueGreen") or {}).get("previewSelector", "")
        if spec.get("paused"):
            return
        want_new = replicas
        if active_rs is not None and active_rs is not new_rs and bg.get("previewReplicaCount") is not None:
            want_new = int(bg["previewReplicaCount"])
        if _spec_replicas(new_rs) != want_new and not (active_rs is new_rs):
            self._scale(ro, new_rs, want_new)
            return
        if active_rs is new_rs and _spec_replicas(new_rs) != replicas:
            self._scale(ro, new_rs, replicas)
            return
        saturated = _spec_replicas(new_rs) == _st(new_rs, "availableReplicas") and \
            _st(new_rs, "availableReplicas") >= want_new
        if bg.get("previewService"):
            ctx.preview_selector = ctx.pod_hash
        if active_rs is None:
            if saturated:
                ctx.active_selector = ctx.pod_hash
        elif active_rs is not new_rs and saturated:
            paused = [c for c in status.get("pauseConditions") or [] if c.get("reason") == "BlueGreenPause"]
            if bg.get("autoPromotionEnabled", True) is False and not status.get("promoteFull"):
                if not paused and not status.get("controllerPause"):
                    ctx.add_pause = "BlueGreenPause"
                elif paused:
                    self._services(ctx)
                    return
                else:
                    ctx.active_selector = ctx.pod_hash  # the pause condition was cleared: promoted
            else:
                ctx.active_selector = ctx.pod_hash
        self._services(ctx)
        # old ReplicaSets: down after scaleDownDelaySeconds once the new one is active
        if ctx.active_selector == ctx.pod_hash:
            delay = int(bg.get("scaleDownDelaySeconds", 30))
            for r in ctx.all_rs:
                if r is new_rs or _spec_replicas(r) == 0:
                    continue
                ann = r["metadata"].get("annotations") or {}
                deadline = parse_iso(ann.get(SCALE_DOWN_ANN))
                if deadline is None:
                    new = _clone(r)
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + delay))
                    new["metadata"].setdefault("annotations", {})[SCALE_DOWN_ANN] = stamp
                    cm._update(RS, new)
                    cm.after(delay + 1.05, ("ro", ro["metadata"]["namespace"], ro["metadata"]["name"]))
                elif deadline <= time.time():
                    self._scale(ro, r, 0)
                else:
                    cm.after(deadline - time.time() + 0.05, ("ro", ro["metadata"]["namespace"],
                                                            ro["metadata"]["name"]))

    # ---------------------------------------------------------------- services (rollout/service.go)
    def _services(self, ctx):
        ro = ctx.ro
        strategy = (ro.get("spec") or {}).get("strategy") or {}
        wanted = {}
        if strategy.get("blueGreen") is not None:
            bg = strategy["blueGreen"]
            if ctx.active_selector:
                wanted[bg.get("activeService")] = ctx.active_selector
            if bg.get("previewService") and ctx.preview_selector:
                wanted[bg["previewService"]] = ctx.preview_selector
        else:
            c = strategy.get("canary") or {}
            stable = (ro.get("status") or {}).get("stableRS") or ctx.pod_hash
            if c.get("stableService"):
                wanted[c["stableService"]] = stable
            if c.get("canaryService"):
                wanted[c["canaryService"]] = ctx.pod_hash
        ns = ro["metadata"]["namespace"]
        for svc_name, h in wanted.items():
            svc = self.cm._ro_get(SERVICES, ns, svc_name)
            if svc is None:
                continue
            sel = (svc.get("spec") or {}).get("selector") or {}
            ann = svc["metadata"].get("annotations") or {}
            if sel.get(HASH_LABEL) == h and ann.get(MANAGED_BY_ANN) == ro["metadata"]["name"]:
                continue
            new = _clone(svc)
            new["spec"].setdefault("selector", {})[HASH_LABEL] = h
            new["metadata"].setdefault("annotations", {})[MANAGED_BY_ANN] = ro["metadata"]["name"]
            self.cm._update(SERVICES, new)

    def _scale(self, ro, rs, replicas):
        old = _spec_replicas(rs)
        new = _clone(rs)
        new["spec"]["replicas"] = int(replicas)
        new["metadata"].setdefault("annotations", {})[DESIRED_ANN] = str(_replicas(ro))
        self.cm._update(RS, new)
        kind = "up" if replicas > old else "down"
        self.cm._event(ro, "Normal", "ScalingReplicaSet",
                       f"Scaled {kind} ReplicaSet {rs['metadata']['name']} (revision {_revision(rs)}) from {old} to "
                       f"{replicas}", "rollouts-controller")

    # ---------------------------------------------------------------- status
    def _persist(self, ctx, reset=False):
        ro = ctx.ro
        spec, old = ro.get("spec") or {}, ro.get("status") or {}
        strategy = spec.get("strategy") or {}
        replicas = _replicas(ro)
        st = _clone(old)
        for k in ("message",):
            st.pop(k, None)
        st["currentPodHash"] = ctx.pod_hash
        st["replicas"] = sum(_st(r, "replicas") for r in ctx.all_rs)
        st["updatedReplicas"] = _st(ctx.new_rs, "replicas")
        st["readyReplicas"] = sum(_st(r, "readyReplicas") for r in ctx.all_rs)
        st["availableReplicas"] = sum(_st(r, "availableReplicas") for r in ctx.all_rs)
        st["HPAReplicas"] = st["replicas"]
        st["selector"] = selector_to_string(spec.get("selector"))
        st.setdefault("canary", {})
        st.setdefault("blueGreen", {})
        if ctx.restarted_at:
            st["restartedAt"] = ctx.restarted_at
        canary = strategy.get("canary")
        steps = (canary or {}).get("steps") or []
        now = now_iso()
        if reset:
            # resetRolloutStatus: a new template ends pauses and any pending restart; steps start over
            st.pop("pauseConditions", None)
            st.pop("controllerPause", None)
            st.pop("promoteFull", None)
            if spec.get("restartAt"):
                st["restartedAt"] = spec["restartAt"]
            if canary is not None and steps:
                st["currentStepIndex"] = len(steps) if st.get("stableRS") == ctx.pod_hash else 0
            else:
                st.pop("currentStepIndex", None)
        else:
            full_promote = ""
            if ctx.stable_rs is None:
                full_promote = "Initial deploy" if canary is not None else ""
            if strategy.get("blueGreen") is not None:
                st["blueGreen"] = dict(st.get("blueGreen") or {})
                if ctx.active_selector:
                    st["blueGreen"]["activeSelector"] = ctx.active_selector
                if ctx.preview_selector:
                    st["blueGreen"]["previewSelector"] = ctx.preview_selector
                if ctx.active_selector == ctx.pod_hash and st.get("stableRS") != ctx.pod_hash:
                    full_promote = "Completed blue-green update"
            elif canary is not None and ctx.stable_rs is not None and ctx.stable_rs is not ctx.new_rs:
                idx = int(st.get("currentStepIndex") or 0)
                if ctx.step_done:
                    idx += 1
                    st["pauseConditions"] = [c for c in st.get("pauseConditions") or []
                                             if c.get("reason") != "CanaryPauseStep"]
                    if not st["pauseConditions"]:
                        st.pop("pauseConditions")
                    if steps:
                        st["currentStepIndex"] = idx
                if (not steps or idx >= len(steps) or st.get("promoteFull")) and \
                        _st(ctx.new_rs, "availableReplicas") >= replicas:
                    full_promote = f"Completed all {len(steps)} canary steps"
            if ctx.add_pause and not st.get("controllerPause"):
                st["pauseConditions"] = (st.get("pauseConditions") or []) + [
                    {"reason": ctx.add_pause, "startTime": now}]
                st["controllerPause"] = True
            if full_promote:
                st.pop("pauseConditions", None)
                st.pop("controllerPause", None)
                st.pop("promoteFull", None)
                if canary is not None:
                    if steps:
                        st["currentStepIndex"] = len(steps)
                    else:
                        st.pop("currentStepIndex", None)
                if st.get("stableRS") != ctx.pod_hash:
                    st["stableRS"] = ctx.pod_hash
                    self.cm._event(ro, "Normal", "RolloutCompleted", f"Rollout completed update to revision "
                                   f"{_revision(ctx.new_rs)} ({ctx.pod_hash}): {full_promote}", "rollouts-controller")
            elif canary is not None and steps and "currentStepIndex" not in st:
                st["currentStepIndex"] = 0
        if canary is not None:
            st["currentStepHash"] = step_hash(ro)
        else:
            st.pop("currentStepHash", None)
        if not st.get("pauseConditions"):
            st.pop("pauseConditions", None)
        if not st.get("controllerPause"):
            st.pop("controllerPause", None)
        st["observedGeneration"] = str(ro["metadata"].get("generation", 1))
        self._conditions(ro, old, st, ctx, now)
        st["phase"], message = phase_of(spec, st)
        if message:
            st["message"] = message
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "HPAReplicas"):
            if not st.get(k):
                st.pop(k, None)
        self._write_status(ro, st)

    def _conditions(self, ro, old, st, ctx, now):
        """calculateRolloutConditions."""
        spec = ro.get("spec") or {}
        strategy = spec.get("strategy") or {}
        replicas = _replicas(ro)
        paused = bool(st.get("pauseConditions")) or bool(spec.get("paused"))
        st["conditions"] = [dict(c) for c in old.get("conditions") or [] if c.get("type") != "InvalidSpec"]
        healthy = _healthy(ro, old, st)
        became_unhealthy = False
        if not paused and healthy:
            _set_cond(st, "Healthy", "True", "RolloutHealthy", "Rollout is healthy", now)
        elif _cond(old, "Healthy") is not None:
            became_unhealthy = _set_cond(st, "Healthy", "False", "RolloutHealthy", "Rollout is not healthy", now)
        cur = _cond(old, "Progressing")
        rs_name = ctx.new_rs["metadata"]["name"]
        if paused and (cur is None or cur.get("reason") != "RolloutPaused"):
            _set_cond(st, "Progressing", "Unknown", "RolloutPaused", "Rollout is paused", now)
            _set_cond(st, "Paused", "True", "RolloutPaused", "Rollout is paused", now)
        elif not paused:
            if _cond(old, "Paused") is not None:
                _set_cond(st, "Paused", "False", "RolloutResumed", "Rollout is resumed", now)
            if healthy:
                _set_cond(st, "Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rs_name}" has successfully progressed.', now)
            elif _progressing(ro, old, st) or became_unhealthy or (cur is not None and cur.get("reason") in
                                                                  ("RolloutPaused", "RolloutResumed")):
                reason, msg = "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.'
                if st.get("stableRS") == st.get("currentPodHash") and became_unhealthy:
                    reason, msg = "ReplicaSetNotAvailable", "Rollout does not have minimum availability"
                keep = cur.get("lastTransitionTime") if cur is not None and cur.get("status") == "True" else None
                st["conditions"] = [c for c in st["conditions"] if c.get("type") != "Progressing"]
                _set_cond(st, "Progressing", "True", reason, msg, now)
                if keep:
                    _cond(st, "Progressing")["lastTransitionTime"] = keep
            else:
                cur = _cond(st, "Progressing")
                deadline = int(spec.get("progressDeadlineSeconds") or 600)
                if cur is not None and cur.get("reason") not in ("NewReplicaSetAvailable", "ProgressDeadlineExceeded",
                                                                  "RolloutAborted", "RolloutPaused"):
                    left = (parse_iso(cur.get("lastUpdateTime")) or time.time()) + deadline - time.time()
                    if left < 0:
                        _set_cond(st, "Progressing", "False", "ProgressDeadlineExceeded",
                                  f'ReplicaSet "{rs_name}" has timed out progressing.', now)
                    else:
                        self.cm.after(left + 0.2, ("ro", ro["metadata"]["namespace"], ro["metadata"]["name"]))
        if strategy.get("blueGreen") is not None:
            active = next((r for r in ctx.all_rs if _hash_of(r) == (st.get("blueGreen") or {}).get("activeSelector")),
                          None)
            ok = active is not None and _spec_replicas(active) == _st(active, "availableReplicas") and \
                _st(active, "availableReplicas") >= replicas
        else:
            ok = sum(_st(r, "availableReplicas") for r in ctx.all_rs) >= replicas
        if ok:
            _set_cond(st, "Available", "True", "AvailableReason", "Rollout has minimum availability", now)
        else:
            _set_cond(st, "Available", "False", "AvailableReason", "Rollout does not have minimum availability", now)
        failing = next((_cond(r.get("status") or {}, "ReplicaFailure") for r in ctx.all_rs
                        if _cond(r.get("status") or {}, "ReplicaFailure")), None)
        if failing:
            _set_cond(st, "ReplicaFailure", "True", failing.get("reason", "FailedCreate"), failing.get("message", ""),
                      now)
        else:
            st["conditions"] = [c for c in st["conditions"] if c.get("type") != "ReplicaFailure"]
        if st.get("stableRS") and st.get("stableRS") == st.get("currentPodHash"):
            _set_cond(st, "Completed", "True", "RolloutCompleted", "RolloutCompleted", now)
        else:
            _set_cond(st, "Completed", "False", "RolloutCompleted", "RolloutCompleted", now)

    def _write_status(self, ro, status):
        cur = self.cm._ro_get(RO, ro["metadata"]["namespace"], ro["metadata"]["name"])
        if cur is None or (cur.get("status") or {}) == status:
            return
        new = _clone(cur)
        new["status"] = status
        self.cm._update_status(RO, new)


class _Ctx:
    def __init__(self, ro, new_rs, stable_rs, all_rs, pod_hash):
        self.ro, self.new_rs, self.stable_rs, self.all_rs, self.pod_hash = ro, new_rs, stable_rs, all_rs, pod_hash
        self.restarted_at = ""
        self.step_done = False
        self.add_pause = ""
        self.active_selector = ""
        self.preview_selector = ""


def _within_limits(drain_rs, adjust_rs, drain_n, adjust_n, max_total, min_available):
    """adjustReplicaWithinLimits."""
    over = max(0, adjust_n + drain_n - max_total)
    total_available = min(_st(drain_rs, "availableReplicas"), drain_n) if drain_rs is not None else 0
    if adjust_rs is not None:
        adjust_n -= over
        total_available += min(_st(adjust_rs, "availableReplicas"), adjust_n)
        extra = max(0, _st(adjust_rs, "availableReplicas") - adjust_n)
        need = max(0, min_available - total_available)
        adjust_n += min(extra, need)
        over = max(0, adjust_n + drain_n - max_total)
        drain_n -= over
    return drain_n, adjust_n


def _healthy(ro, old, st) -> bool:
    """conditions.RolloutHealthy."""
    spec = ro.get("spec") or {}
    strategy = spec.get("strategy") or {}
    replicas = _replicas(ro)
    done = True
    if strategy.get("blueGreen") is not None:
        bg = strategy["blueGreen"]
        done = (st.get("blueGreen") or {}).get("activeSelector") == st.get("currentPodHash")
        if bg.get("previewService"):
            done = done and (st.get("blueGreen") or {}).get("previewSelector") == st.get("currentPodHash")
    if strategy.get("canary") is not None:
        steps = strategy["canary"].get("steps") or []
        all_steps = not steps or st.get("currentStepIndex") is None or int(st["currentStepIndex"]) == len(steps)
        done = all_steps and bool(st.get("stableRS")) and st.get("stableRS") == st.get("currentPodHash") and \
            int(st.get("replicas") or 0) == replicas
    return (int(st.get("updatedReplicas") or 0) == replicas and int(st.get("availableReplicas") or 0) == replicas
            and old.get("observedGeneration") == str(ro["metadata"].get("generation", 1)) and done)


def _progressing(ro, old, st) -> bool:
    """conditions.RolloutProgressing."""
    strategy = (ro.get("spec") or {}).get("strategy") or {}
    specific = False
    if strategy.get("blueGreen") is not None:
        ob, nb = old.get("blueGreen") or {}, st.get("blueGreen") or {}
        specific = ob.get("activeSelector") != nb.get("activeSelector") or \
            ob.get("previewSelector") != nb.get("previewSelector")
    if strategy.get("canary") is not None:
        specific = st.get("stableRS") != old.get("stableRS") or \
            (st.get("currentStepIndex") is not None and old.get("currentStepIndex") is not None and
             st["currentStepIndex"] != old["currentStepIndex"]) or \
            st.get("currentStepHash") != old.get("currentStepHash")
    g = lambda s, k: int(s.get(k) or 0)  # noqa: E731
    return (g(st, "updatedReplicas") != g(old, "updatedReplicas")
            or g(st, "replicas") - g(st, "updatedReplicas") < g(old, "replicas") - g(old, "updatedReplicas")
            or g(st, "readyReplicas") > g(old, "readyReplicas")
            or g(st, "availableReplicas") > g(old, "availableReplicas") or specific)


def phase_of(spec, st) -> tuple[str, str]:
    """utils/rollout CalculateRolloutPhase."""
    for c in st.get("conditions") or []:
        if c.get("type") == "InvalidSpec":
            return "Degraded", f"InvalidSpec: {c.get('message')}"
        if c.get("reason") in ("RolloutAborted", "ProgressDeadlineExceeded"):
            return "Degraded", f"{c.get('reason')}: {c.get('message')}"
    if spec.get("paused"):
        return "Paused", "manually paused"
    for pc in st.get("pauseConditions") or []:
        return "Paused", pc.get("reason", "")
    if spec.get("restartAt") and st.get("restartedAt") != spec.get("restartAt"):
        return "Progressing", "rollout is restarting"
    replicas = 1 if spec.get("replicas") is None else int(spec["replicas"])
    if int(st.get("updatedReplicas") or 0) < replicas:
        return "Progressing", "more replicas need to be updated"
    if int(st.get("availableReplicas") or 0) < int(st.get("updatedReplicas") or 0):
        return "Progressing", "updated replicas are still becoming available"
    strategy = spec.get("strategy") or {}
    if strategy.get("blueGreen") is not None:
        active = (st.get("blueGreen") or {}).get("activeSelector", "")
        if not active or active != st.get("currentPodHash"):
            return "Progressing", "active service cutover pending"
        if not st.get("stableRS") or st.get("stableRS") != st.get("currentPodHash"):
            return "Progressing", "waiting for post-promotion verification to complete"
    elif strategy.get("canary") is not None:
        if int(st.get("replicas") or 0) > int(st.get("updatedReplicas") or 0):
            return "Progressing", "old replicas are pending termination"
        if not st.get("stableRS") or st.get("stableRS") != st.get("currentPodHash"):
            return "Progressing", "waiting for all steps to complete"
    return "Healthy", ""


def objects(options=None) -> list:
    return crd_objects() + controller_objects()


def install_controllers(cm, options=None):
    cm.add_controller(RolloutController())

