"""OpenShift ``apps.openshift.io/v1`` DeploymentConfigs for the simulated cluster (test harness).

Feature ``openshift`` (``--feature openshift`` or a scenario's ``features: [openshift]``).  Modelled on
the real sources, as clients observe them:

* API (openshift/api ``apps/v1/types.go``, ``consts.go``; openshift-apiserver
  ``pkg/apps/apis/apps/v1/defaults.go``, ``validation/validation.go``,
  ``apiserver/registry/deployconfig/strategy.go``): ``deploymentconfigs`` (short name ``dc``, category
  ``all``) with the ``status``, ``scale`` (``extensions/v1beta1`` Scale) and ``instantiate``
  (``DeploymentRequest``) subresources; defaults (ConfigChange trigger, selector from the template labels,
  Rolling strategy with intervalSeconds/updatePeriodSeconds 1, timeoutSeconds 600, maxSurge/maxUnavailable
  25%, activeDeadlineSeconds 21600, revisionHistoryLimit 10); status written at its zero values on create;
  metadata.generation moves on spec changes and on ``instantiate``; ``oc get dc`` columns (printers).
* ``POST .../deploymentconfigs/NAME/instantiate`` with ``{"kind": "DeploymentRequest", "name": NAME,
  "latest": true, "force": true}`` -- what ``oc rollout latest`` sends (openshift/oc
  ``pkg/cli/rollout/latest.go``) -- answers 201 with the DeploymentConfig whose ``status.latestVersion`` is
  one higher and ``status.details`` ``{message: "manual change", causes: [{type: Manual}]}``
  (openshift-apiserver ``registry/instantiate/rest.go``); a paused config is refused (422), a missing
  latest ReplicationController answers 404.
* The DeploymentConfig controller (openshift-controller-manager ``pkg/apps/deploymentconfig``; helpers
  from openshift/library-go ``pkg/apps/appsutil``): a ReplicationController ``<dc>-<latestVersion>`` per
  version (labels ``openshift.io/deployment-config.name``, selector/pod labels ``deployment`` and
  ``deploymentconfig``, annotations ``openshift.io/deployment-config.latest-version``,
  ``openshift.io/deployment.phase`` New, ``openshift.io/encoded-deployment-config``,
  ``kubectl.kubernetes.io/desired-replicas``), config-change triggers, the active (last complete)
  deployment scaled with the config and all others to 0, history pruned to ``revisionHistoryLimit``,
  status replicas/updatedReplicas/availableReplicas/unavailableReplicas/readyReplicas and the conditions
  ``Available`` and ``Progressing`` with the reasons ``oc rollout status`` reads
  (NewReplicationControllerCreated, ReplicationControllerUpdated, NewReplicationControllerAvailable,
  ProgressDeadlineExceeded, RolloutCancelled).
* The deployer controller (``pkg/apps/deployer``): a deployer pod ``<rc>-deploy`` (container
  ``deployment``, ServiceAccount ``deployer``, restartPolicy Never, label ``openshift.io/deployer-pod-for.name``,
  the strategy's labels and annotations) created through admission -- so a namespace's injection webhook
  injects it like any pod -- and the RC's ``openshift.io/deployment.phase`` following that pod: New ->
  Pending -> Running -> Complete (pod Succeeded) or Failed.
* The deployer process itself (openshift/oc ``pkg/cli/deployer``, ``strategy/rolling``,
  ``strategy/recreate``): once the deployer pod runs it scales older deployments to 0, then either
  scales the first deployment up and waits until its pods are available, or runs the rolling updater
  between the last complete deployment and the new one (scale up by ``desired + maxSurge - old - new``, wait
  ``updatePeriodSeconds``, scale down by ``all - minAvailable - newUnavailable``, annotations
  ``kubectl.kubernetes.io/update-source-id`` / ``original-replicas``, give up after ``timeoutSeconds``
  without progress), then its container ends: the pod is Succeeded -- unless another regular container
  keeps running (a classic istio-proxy sidecar), which is why injected deployer pods never complete on a
  real cluster either; a native sidecar (init container with ``restartPolicy: Always``) does not hold it.
  Deployer pods of completed deployments are kept (Completed).
* OpenShift's ServiceAccounts controller: every namespace gets ``builder`` and ``deployer``.

The plain ``kubectl`` reads, creates, patches and scales DeploymentConfigs; ``kubectl rollout`` has no
status viewer for them (``oc rollout status`` reads the Progressing condition as modelled here).
"""

from __future__ import annotations

import json
import threading
import time

from . import strategy, tables
from .controllers import _clone, controller_ref, now_iso, owned_by, pod_available, resolve_fenceposts, terminating
from .errors import ApiError
from .resources import SUBRESOURCE_HANDLERS, ResourceType

GROUP = "apps.openshift.io"
DC = "deploymentconfigs.apps.openshift.io"
RC = "replicationcontrollers"
PODS = "pods"

DC_ANN = "openshift.io/deployment-config.name"
VERSION_ANN = "openshift.io/deployment-config.latest-version"
PHASE_ANN = "openshift.io/deployment.phase"
ENCODED_ANN = "openshift.io/encoded-deployment-config"
REASON_ANN = "openshift.io/deployment.status-reason"
CANCELLED_ANN = "openshift.io/deployment.cancelled"
DEPLOYER_POD_ANN = "openshift.io/deployer-pod.name"
DEPLOYMENT_ANN = "openshift.io/deployment.name"
REPLICAS_ANN = "openshift.io/deployment.replicas"
CREATED_AT_ANN = "openshift.io/deployer-pod.created-at"
STARTED_AT_ANN = "openshift.io/deployer-pod.started-at"
COMPLETED_AT_ANN = "openshift.io/deployer-pod.completed-at"
DESIRED_ANN = "kubectl.kubernetes.io/desired-replicas"
SOURCE_ID_ANN = "kubectl.kubernetes.io/update-source-id"
ORIGINAL_ANN = "kubectl.kubernetes.io/original-replicas"
DEPLOYER_FOR_LABEL = "openshift.io/deployer-pod-for.name"
DC_LABEL = "deploymentconfig"
DEPLOYMENT_LABEL = "deployment"

DEPLOYER_IMAGE = "quay.io/openshift/origin-deployer:4.18"
DEPLOYER_SA = "deployer"
MAX_DEPLOYMENT_SECONDS = 21600
NEW, PENDING, RUNNING, COMPLETE, FAILED = "New", "Pending", "Running", "Complete", "Failed"

_local = threading.local()  # set while the instantiate endpoint writes (its update bumps metadata.generation)


def dc_type() -> ResourceType:
    return ResourceType(group=GROUP, version="v1", plural="deploymentconfigs", kind="DeploymentConfig",
                        namespaced=True, short_names=["dc"], categories=["all"],
                        subresources=("instantiate", "scale", "status"), generation=True,
                        subresource_kinds={"instantiate": ("", "", "DeploymentRequest", ["create"]),
                                           "scale": ("extensions", "v1beta1", "Scale", ["get", "patch", "update"])})


# ------------------------------------------------------------------------------------------ API strategy

def _prepare_create(obj: dict):
    # openshift-apiserver strategy.PrepareForCreate: status starts at its zero value
    obj["status"] = {"latestVersion": 0, "observedGeneration": 0, "replicas": 0, "updatedReplicas": 0,
                     "availableReplicas": 0, "unavailableReplicas": 0}
    for t in (obj.get("spec") or {}).get("triggers") or []:
        if isinstance(t, dict) and isinstance(t.get("imageChangeParams"), dict):
            t["imageChangeParams"].pop("lastTriggeredImage", None)


def _defaults(obj: dict):
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("triggers") is None:
        spec["triggers"] = [{"type": "ConfigChange"}]
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        strategy.default_pod_spec(tmpl.setdefault("spec", {}))
        if not spec.get("selector") and (tmpl["metadata"].get("labels")):
            spec["selector"] = dict(tmpl["metadata"]["labels"])
    spec.setdefault("replicas", 0)
    spec.setdefault("test", False)
    spec.setdefault("revisionHistoryLimit", 10)
    st = spec.setdefault("strategy", {})
    if isinstance(st, dict):
        st.setdefault("type", "Rolling")
        st.setdefault("resources", {})
        st.setdefault("activeDeadlineSeconds", MAX_DEPLOYMENT_SECONDS)
        if st["type"] == "Rolling":
            rp = st.setdefault("rollingParams", {})
            rp.setdefault("intervalSeconds", 1)
            rp.setdefault("updatePeriodSeconds", 1)
            rp.setdefault("timeoutSeconds", 600)
            if rp.get("maxUnavailable") is None and rp.get("maxSurge") is None:
                rp["maxUnavailable"], rp["maxSurge"] = "25%", "25%"
            elif rp.get("maxUnavailable") is None and rp.get("maxSurge") in (0, "0%"):
                rp["maxUnavailable"] = "25%"
            elif rp.get("maxSurge") is None and rp.get("maxUnavailable") in (0, "0%"):
                rp["maxSurge"] = "25%"
        elif st["type"] == "Recreate":
            st.setdefault("recreateParams", {}).setdefault("timeoutSeconds", 600)
    for t in spec.get("triggers") or []:
        p = t.get("imageChangeParams") if isinstance(t, dict) else None
        if isinstance(p, dict) and isinstance(p.get("from"), dict):
            p["from"].setdefault("kind", "ImageStreamTag")
            p["from"].setdefault("namespace", (obj.get("metadata") or {}).get("namespace"))


def _pct_value(v) -> int:
    if v is None:
        return 0
    s = str(v)
    try:
        return int(s[:-1]) if s.endswith("%") else int(s)
    except ValueError:
        return -1


def _validate(obj: dict, old) -> list:
    causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("spec", "Required", None, "")]
    for i, t in enumerate(spec.get("triggers") or []):
        ttype = (t or {}).get("type")
        if ttype not in ("ConfigChange", "ImageChange"):
            causes.append((f"spec.triggers[{i}].type", "Invalid", ttype, "invalid trigger type: valid values "
                                                                         "are ConfigChange and ImageChange"))
        elif ttype == "ImageChange" and not (t.get("imageChangeParams") or {}).get("from", {}).get("name"):
            causes.append((f"spec.triggers[{i}].imageChangeParams.from.name", "Required", None, ""))
    st = spec.get("strategy") or {}
    stype = st.get("type")
    if stype not in ("Rolling", "Recreate", "Custom"):
        causes.append(("spec.strategy.type", "Invalid", stype, "unsupported type"))
    rp = st.get("rollingParams") if stype == "Rolling" else None
    if isinstance(rp, dict):
        for f in ("intervalSeconds", "updatePeriodSeconds", "timeoutSeconds"):
            if rp.get(f) is not None and rp[f] < 1:
                causes.append((f"spec.strategy.rollingParams.{f}", "Invalid", rp[f], "must be >0"))
        if _pct_value(rp.get("maxUnavailable")) == 0 and _pct_value(rp.get("maxSurge")) == 0:
            causes.append(("spec.strategy.rollingParams.maxUnavailable", "Invalid", rp.get("maxUnavailable"),
                           "cannot be 0 when maxSurge is 0 as well"))
    if (spec.get("revisionHistoryLimit") or 0) < 0:
        causes.append(("spec.revisionHistoryLimit", "Invalid", spec["revisionHistoryLimit"],
                       "must be greater than or equal to 0"))
    tmpl = spec.get("template")
    sel = spec.get("selector") or {}
    if not isinstance(tmpl, dict):
        causes.append(("spec.template", "Required", None, ""))
    else:
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        if sel and any(labels.get(k) != v for k, v in sel.items()):
            causes.append(("spec.template.metadata.labels", "Invalid", labels,
                           "`selector` does not match template `labels`"))
        strategy._validate_pod_spec(tmpl.get("spec"), "spec.template.spec", causes)
    r = spec.get("replicas")
    if not isinstance(r, int) or r < 0:
        causes.append(("spec.replicas", "Invalid", r, "replicas cannot be negative"))
    if not sel:
        causes.append(("spec.selector", "Invalid", sel, "selector cannot be empty"))
    if old is not None:
        ost, nst = old.get("status") or {}, obj.get("status") or {}
        if int(nst.get("latestVersion") or 0) < int(ost.get("latestVersion") or 0):
            causes.append(("status.latestVersion", "Invalid", nst.get("latestVersion"),
                           "latestVersion cannot be decremented"))
    return causes


def _prepare_update(new: dict, old: dict, subresource):
    if getattr(_local, "instantiating", False):
        if (new.get("status") or {}).get("latestVersion") != (old.get("status") or {}).get("latestVersion"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 0) + 1


def _table_row(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    desired = f"{spec.get('replicas', 0)} (during test)" if spec.get("test") else str(spec.get("replicas", 0))
    triggers = set()
    for t in spec.get("triggers") or []:
        if t.get("type") == "ConfigChange":
            triggers.add("config")
        elif t.get("type") == "ImageChange":
            p = t.get("imageChangeParams") or {}
            if p.get("automatic"):
                frm = p.get("from") or {}
                kind = frm.get("kind") or "ImageStreamTag"
                triggers.add(f"image({frm.get('name')})" if kind == "ImageStreamTag" else f"{kind}({frm.get('name')})")
        else:
            triggers.add(str(t.get("type")))
    return [o["metadata"]["name"], st.get("latestVersion", 0), desired, st.get("updatedReplicas", 0),
            ",".join(sorted(triggers))]


C = tables._col
TABLE = ([tables.NAME_COL, C("Revision", desc="latestVersion is used to determine whether the current deployment "
                                              "associated with a deployment config is out of sync."),
          C("Desired", desc="replicas is the number of desired replicas."),
          C("Current", desc="updatedReplicas is the total number of non-terminated pods targeted by this "
                            "deployment config that have the desired template spec."),
          C("Triggered By", desc="triggers determine how updates to a DeploymentConfig result in new "
                                 "deployments.")], _table_row)


# ------------------------------------------------------------------------------------------ instantiate

def _instantiate(store, rt, ns, name, body, query, dry_run, user):
    req = body if isinstance(body, dict) else {}
    if req.get("kind") not in (None, "", "DeploymentRequest"):
        raise ApiError.bad_request(f"the kind in the data ({req.get('kind')}) does not match the expected kind "
                                   "(DeploymentRequest)")
    if not req.get("name"):
        raise ApiError.invalid(ResourceType(GROUP, "v1", "deploymentrequests", "DeploymentRequest", True), name,
                               [("name", "Required", None, "name of the deployment config is missing")])
    with store.lock:
        dc = store.get(rt, ns, name)
        spec, status = dc.get("spec") or {}, dc.get("status") or {}
        if spec.get("paused"):
            raise ApiError.invalid(ResourceType(GROUP, "v1", "deploymentrequests", "DeploymentRequest", True), name,
                                   [("spec.paused", "Invalid", True, f'deployment config "{name}" is paused - '
                                                                     "unpause to request a new deployment")])
        latest = int(status.get("latestVersion") or 0)
        decoded = dc
        if latest:
            rc = store.get(RC, ns, f"{name}-{latest}")  # 404 when the latest deployment does not exist yet
            decoded = decode_config(rc) or dc
        image_triggers = [t for t in spec.get("triggers") or [] if t.get("type") == "ImageChange"]
        if any(not (t.get("imageChangeParams") or {}).get("lastTriggeredImage") for t in image_triggers):
            raise ApiError.bad_request(f'cannot trigger a deployment for "{name}" because it contains unresolved '
                                       "images")
        if req.get("force"):
            causes, message = [{"type": "Manual"}], "manual change"
        elif any(t.get("type") == "ConfigChange" for t in spec.get("triggers") or []) and \
                (latest == 0 or _template_key(spec) != _template_key(decoded.get("spec") or {})):
            causes, message = [{"type": "ConfigChange"}], "config change"
        else:
            return 204, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "message": f'deployment config "{name}" cannot be instantiated', "code": 204}
        new = _clone(dc)
        new["status"]["latestVersion"] = latest + 1
        new["status"]["details"] = {"message": message, "causes": causes}
        _local.instantiating = True
        try:
            res = store.update_status(rt, new, ns, dry_run=dry_run, user=user)
        finally:
            _local.instantiating = False
    return 201, res


def _template_key(spec: dict) -> str:
    return json.dumps(spec.get("template") or {}, sort_keys=True)


def decode_config(rc: dict | None) -> dict | None:
    raw = (((rc or {}).get("metadata") or {}).get("annotations") or {}).get(ENCODED_ANN)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


# ---- scale (extensions/v1beta1 Scale, as openshift-apiserver serves it) ------------------------------

def _scale_of(dc: dict) -> dict:
    meta, spec, st = dc["metadata"], dc.get("spec") or {}, dc.get("status") or {}
    sel = dict(spec.get("selector") or {})
    out = {"kind": "Scale", "apiVersion": "extensions/v1beta1",
           "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                        if k in meta},
           "spec": {"replicas": spec.get("replicas", 0)} if spec.get("replicas") else {},
           "status": {"replicas": st.get("availableReplicas", 0)}}
    if sel:
        out["status"]["selector"] = sel
        out["status"]["targetSelector"] = ",".join(f"{k}={v}" for k, v in sorted(sel.items()))
    return out


def _scale_get(store, rt, ns, name, body, query, dry_run, user):
    return 200, _scale_of(store.get(rt, ns, name))


def _scale_write(store, rt, ns, name, body, query, dry_run, user, patch_type=None):
    from .patch import apply_patch
    with store.lock:
        dc = store.get(rt, ns, name)
        scale = apply_patch(_scale_of(dc), body, patch_type, custom=False) if patch_type else body
        if not isinstance(scale, dict):
            raise ApiError.bad_request("the object provided is unrecognized (must be of type map)")
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv not in (None, "") and str(rv) != dc["metadata"].get("resourceVersion"):
            raise ApiError.conflict(rt, name)
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError.invalid(ResourceType("extensions", "v1beta1", "scales", "Scale", True), name,
                                   [("spec.replicas", "Invalid", replicas, "must be greater than or equal to 0")])
        dc["spec"]["replicas"] = replicas
        res = store.update(rt, dc, ns, dry_run=dry_run, user=user)
    return 200, _scale_of(res)


def _scale_patch(store, rt, ns, name, body, query, dry_run, user):
    return _scale_write(store, rt, ns, name, body, query, dry_run, user, patch_type="merge")


# ------------------------------------------------------------------------------------------ helpers

def _ann(obj) -> dict:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def version_of(rc) -> int:
    try:
        return int(_ann(rc).get(VERSION_ANN))
    except (TypeError, ValueError):
        return -1


def phase_of(rc) -> str:
    return _ann(rc).get(PHASE_ANN, "")


def is_terminated(rc) -> bool:
    return phase_of(rc) in (COMPLETE, FAILED)


def is_cancelled(rc) -> bool:
    return _ann(rc).get(CANCELLED_ANN, "").lower() == "true"


def _go_time(iso: str | None) -> str:
    """metav1.Time.String(): ``2006-01-02 15:04:05 +0000 UTC``."""
    if not iso:
        return ""
    return iso.replace("T", " ").replace("Z", "") + " +0000 UTC"


def _spec_replicas(rc) -> int:
    v = (rc.get("spec") or {}).get("replicas")
    return 1 if v is None else int(v)


def _status(rc, field) -> int:
    return int((rc.get("status") or {}).get(field) or 0)


def _set_condition(conds: list, ctype: str, status: str, reason: str, message: str, now: str) -> list:
    """appsutil.SetDeploymentCondition: nothing changes when status and reason are the same."""
    conds = [dict(c) for c in conds or []]
    cur = next((c for c in conds if c.get("type") == ctype), None)
    if cur is not None and cur.get("status") == status and cur.get("reason", "") == reason:
        return conds
    new = {"type": ctype, "status": status, "lastUpdateTime": now, "lastTransitionTime": now}
    if cur is not None and cur.get("status") == status:
        new["lastTransitionTime"] = cur.get("lastTransitionTime", now)
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    return [c for c in conds if c.get("type") != ctype] + [new]


# ------------------------------------------------------------------------------------------ controllers

class _Run:
    """One execution of the deployer process (the ``deployment`` container of ``<rc>-deploy``)."""

    def __init__(self, ns, rc_name, pod_uid):
        self.ns, self.rc, self.pod_uid = ns, rc_name, pod_uid
        self.state = "init"
        self.mode = ""
        self.from_rc = ""
        self.desired = 0
        self.surge = self.unavailable = self.min_available = 0
        self.period = self.interval = 1.0
        self.min_ready = 0
        self.timeout = 600.0
        self.deadline = 0.0
        self.not_before = 0.0
        self.wait_for = None  # (rc name, replicas) scaleAndWait is waiting on
        self.log: list = []


class OpenShiftControllers:
    """openshift-controller-manager's DeploymentConfig, deployer and ServiceAccounts controllers, plus the
    deployer process run by each deployer pod."""

    kinds = ("dc", "dc-deployer", "dc-run", "os-sa")

    def __init__(self):
        self._runs: dict = {}  # (ns, rc name) -> _Run
        self._logs: dict = {}  # (ns, deployer pod name) -> [lines]

    def attach(self, cm):
        self.cm = cm
        prev = getattr(cm.store, "pod_log", None)

        def pod_log(ns, name, container=None):
            lines = self._logs.get((ns, name))
            if lines is not None:
                return "".join(line + "\n" for line in lines)
            return prev(ns, name, container) if callable(prev) else ""
        cm.store.pod_log = pod_log

    def initial_keys(self):
        for dc in self.cm._ro_list(DC):
            yield ("dc", dc["metadata"]["namespace"], dc["metadata"]["name"])
        for rc in self.cm._ro_list(RC):
            if DC_ANN in _ann(rc):
                yield ("dc-deployer", rc["metadata"]["namespace"], rc["metadata"]["name"])
        for ns in self.cm._ro_list("namespaces"):
            yield ("os-sa", ns["metadata"]["name"])

    def keys_for(self, event_type, key, obj):
        meta = (obj or {}).get("metadata") or {}
        ns, name = meta.get("namespace"), meta.get("name")
        out = []
        if key == DC:
            out.append(("dc", ns, name))
        elif key == RC:
            dc_name = _ann(obj).get(DC_ANN)
            if dc_name:
                out += [("dc", ns, dc_name), ("dc-deployer", ns, name)]
            out += [("dc-run", rns, rname) for (rns, rname) in list(self._runs) if rns == ns]
        elif key == PODS:
            rc_name = (meta.get("labels") or {}).get(DEPLOYER_FOR_LABEL)
            if rc_name:
                out += [("dc-deployer", ns, rc_name), ("dc-run", ns, rc_name)]
            elif any(r[0] == ns for r in list(self._runs)):
                ref = controller_ref(obj)
                if ref and ref.get("kind") == "ReplicationController":
                    out += [("dc-run", rns, rname) for (rns, rname) in list(self._runs) if rns == ns]
        elif key == "namespaces" and event_type == "ADDED":
            out.append(("os-sa", name))
        return out

    def sync(self, key):
        kind = key[0]
        if kind == "dc":
            self.sync_config(key[1], key[2])
        elif kind == "dc-deployer":
            self.sync_deployment(key[1], key[2])
        elif kind == "dc-run":
            self.run_deployer(key[1], key[2])
        elif kind == "os-sa":
            self.sync_service_accounts(key[1])

    # ---------------------------------------------------------------- ServiceAccounts
    def sync_service_accounts(self, ns):
        cm = self.cm
        nsobj = cm._ro_get("namespaces", None, ns)
        if nsobj is None or terminating(nsobj):
            return
        for sa in ("builder", "deployer"):
            if cm._ro_get("serviceaccounts", ns, sa) is None:
                try:
                    cm.store.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                        "metadata": {"name": sa, "namespace": ns}})
                except ApiError as e:
                    if e.code not in (409, 403, 404):
                        raise

    # ---------------------------------------------------------------- DeploymentConfig controller
    def _deployments(self, dc) -> list:
        ns = dc["metadata"]["namespace"]
        return [rc for rc in self.cm._ro_list(RC, ns) if owned_by(rc, dc)]

    def sync_config(self, ns, name):
        cm = self.cm
        dc = cm._ro_get(DC, ns, name)
        if dc is None:
            return
        spec, status = dc.get("spec") or {}, dc.get("status") or {}
        triggers = spec.get("triggers") or []
        latest_version = int(status.get("latestVersion") or 0)
        has_config_trigger = any(t.get("type") == "ConfigChange" for t in triggers)
        has_image_trigger = any(t.get("type") == "ImageChange" for t in triggers)
        if latest_version == 0 and not triggers:
            return self._update_status(dc, [], True)
        rcs = self._deployments(dc)
        if terminating(dc) or spec.get("paused"):
            if spec.get("paused"):
                self._cleanup_old(dc, rcs)
            return self._update_status(dc, rcs, True)
        rcs.sort(key=version_of, reverse=True)
        latest = rcs[0] if rcs and latest_version else None
        latest_exists = latest is not None and version_of(latest) == latest_version
        if latest is not None and version_of(latest) > latest_version:
            new = _clone(dc)
            new["status"]["latestVersion"] = latest_version + 1
            cm._update_status(DC, new)
            return
        if not latest_exists:
            awaiting = False
            for rc in rcs:
                if is_terminated(rc):
                    continue
                awaiting = True
                if is_cancelled(rc):
                    continue
                rc = _clone(rc)
                rc["metadata"]["annotations"][CANCELLED_ANN] = "true"
                rc["metadata"]["annotations"][REASON_ANN] = "newer deployment was found running"
                cm._update(RC, rc)
                cm._event(dc, "Normal", "DeploymentCancelled", f'Cancelled deployment "{rc["metadata"]["name"]}" '
                          f"superceded by version {latest_version}", "deploymentconfig-controller")
            if awaiting:
                cm._event(dc, "Normal", "DeploymentAwaitingCancellation", f"Deployment of version "
                          f"{latest_version} awaiting cancellation of older running deployments",
                          "deploymentconfig-controller")
                cm.after(1.0, ("dc", ns, name))
                return
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        if any(not str(c.get("image") or "").strip() for c in containers):
            return self._update_status(dc, rcs, True)
        # triggers (deploymentconfig_controller.go triggerActivated)
        trigger, details = False, None
        if has_config_trigger or has_image_trigger:
            if latest_version == 0:
                if has_image_trigger:
                    images = all((t.get("imageChangeParams") or {}).get("lastTriggeredImage")
                                 for t in triggers if t.get("type") == "ImageChange")
                    if not images:
                        return self._update_status(dc, rcs, True)
                trigger = True
                details = {"message": "config change", "causes": [{"type": "ConfigChange"}]}
            elif latest_exists and has_config_trigger:
                encoded = decode_config(latest) or {}
                if _template_key(spec) != _template_key(encoded.get("spec") or {}):
                    trigger = True
                    details = {"message": "config change", "causes": [{"type": "ConfigChange"}]}
        if trigger:
            new = _clone(dc)
            new["status"]["latestVersion"] = latest_version + 1
            new["status"]["details"] = details
            cm._update_status(DC, new)
            return
        if latest_exists:
            if not is_terminated(latest):
                return self._update_status(dc, rcs, False)
            return self._reconcile_deployments(dc, rcs)
        rc = self._make_deployment(dc)
        try:
            created = cm.store.create(RC, rc)
        except ApiError as e:
            if e.code == 409:
                cm.after(0.5, ("dc", ns, name))
                return
            cm._event(dc, "Warning", "DeploymentCreationFailed",
                      f"Couldn't deploy version {latest_version}: {e.message}", "deploymentconfig-controller")
            return self._update_status(dc, rcs, True, ("Progressing", "False", "ReplicationControllerCreateError",
                                                       e.message))
        msg = f'Created new replication controller "{created["metadata"]["name"]}" for version {latest_version}'
        cm._event(dc, "Normal", "DeploymentCreated", msg, "deploymentconfig-controller")
        rcs.append(created)
        self._cleanup_old(dc, rcs)
        self._update_status(dc, rcs, True, ("Progressing", "True", "NewReplicationControllerCreated", msg))

    def _make_deployment(self, dc) -> dict:
        """appsutil.MakeDeployment."""
        meta, spec, status = dc["metadata"], dc.get("spec") or {}, dc.get("status") or {}
        name, ns = meta["name"], meta["namespace"]
        version = int(status.get("latestVersion") or 0)
        rc_name = f"{name}-{version}"
        tmpl = _clone(spec.get("template") or {})
        pod_spec = tmpl.get("spec") or {}
        for c in pod_spec.get("containers") or []:
            c["image"] = str(c.get("image") or "").strip()
        labels = dict(meta.get("labels") or {})
        labels[DC_ANN] = name
        selector = dict(spec.get("selector") or {})
        selector.update({DC_LABEL: name, DEPLOYMENT_LABEL: rc_name})
        pod_labels = dict((tmpl.get("metadata") or {}).get("labels") or {})
        pod_labels.update({DC_LABEL: name, DEPLOYMENT_LABEL: rc_name})
        pod_ann = dict((tmpl.get("metadata") or {}).get("annotations") or {})
        pod_ann.update({DEPLOYMENT_ANN: rc_name, DC_ANN: name, VERSION_ANN: str(version)})
        ann = {DC_ANN: name, ENCODED_ANN: json.dumps(dc, separators=(",", ":")) + "\n", PHASE_ANN: NEW,
               VERSION_ANN: str(version), DESIRED_ANN: str(int(spec.get("replicas") or 0)), REPLICAS_ANN: "0"}
        if (status.get("details") or {}).get("message"):
            ann[REASON_ANN] = status["details"]["message"]
        if "deploy.openshift.io/deployer-pod.ignore" in (meta.get("annotations") or {}):
            ann["deploy.openshift.io/deployer-pod.ignore"] = meta["annotations"]["deploy.openshift.io/deployer-pod.ignore"]
        rc = {"apiVersion": "v1", "kind": "ReplicationController",
              "metadata": {"name": rc_name, "namespace": ns, "labels": labels, "annotations": ann,
                           "ownerReferences": [{"apiVersion": f"{GROUP}/v1", "kind": "DeploymentConfig",
                                                "name": name, "uid": meta["uid"], "controller": True,
                                                "blockOwnerDeletion": True}]},
              "spec": {"replicas": 0, "selector": selector,
                       "template": {"metadata": {"labels": pod_labels, "annotations": pod_ann}, "spec": pod_spec}}}
        if spec.get("minReadySeconds"):
            rc["spec"]["minReadySeconds"] = int(spec["minReadySeconds"])
        return rc

    def _reconcile_deployments(self, dc, rcs):
        cm = self.cm
        spec = dc.get("spec") or {}
        active = self._active(rcs)
        out = []
        for rc in rcs:
            want = int(spec.get("replicas") or 0) if active is not None and \
                rc["metadata"]["name"] == active["metadata"]["name"] else 0
            if spec.get("test"):
                want = 0
            have = int((rc.get("spec") or {}).get("replicas") or 0)
            if want != have:
                new = _clone(rc)
                new["spec"]["replicas"] = want
                rc = cm._update(RC, new)
                cm._event(dc, "Normal", "ReplicationControllerScaled",
                          f'Scaled replication controller "{rc["metadata"]["name"]}" from {have} to {want}',
                          "deploymentconfig-controller")
            out.append(rc)
        self._cleanup_old(dc, out)
        self._update_status(dc, out, True)

    @staticmethod
    def _active(rcs):
        active, best = None, 0
        for rc in rcs:
            v = version_of(rc)
            if phase_of(rc) == COMPLETE and v > best:
                active, best = rc, v
        return active

    def _cleanup_old(self, dc, rcs):
        limit = (dc.get("spec") or {}).get("revisionHistoryLimit")
        if limit is None:
            return
        latest_version = int((dc.get("status") or {}).get("latestVersion") or 0)
        active = self._active(rcs)
        ordered = sorted(rcs, key=version_of)
        if active is None:
            prunable = [rc for rc in ordered if version_of(rc) != latest_version]
        else:
            prunable = [rc for rc in ordered if rc is not active and version_of(rc) < version_of(active)]
        for rc in prunable[: max(0, len(prunable) - int(limit))]:
            if int((rc.get("spec") or {}).get("replicas") or 0) != 0:
                continue
            self.cm._delete(RC, rc["metadata"]["namespace"], rc["metadata"]["name"])

    def _update_status(self, dc, rcs, update_generation, extra=None):
        """deploymentconfig_controller.go calculateStatus + updateConditions."""
        spec, old = dc.get("spec") or {}, dc.get("status") or {}
        latest_version = int(old.get("latestVersion") or 0)
        latest = max(rcs, key=version_of) if rcs and latest_version else None
        if latest is not None and version_of(latest) != latest_version:
            latest = None
        available = sum(_status(rc, "availableReplicas") for rc in rcs)
        total = sum(int((rc.get("spec") or {}).get("replicas") or 0) for rc in rcs)
        st = {"latestVersion": latest_version,
              "observedGeneration": dc["metadata"].get("generation", 1) if update_generation
              else int(old.get("observedGeneration") or 0),
              "replicas": sum(_status(rc, "replicas") for rc in rcs),
              "updatedReplicas": _status(latest, "replicas") if latest is not None else 0,
              "availableReplicas": available,
              "unavailableReplicas": max(total - available, 0)}
        if old.get("details"):
            st["details"] = old["details"]
        now = now_iso()
        conds = old.get("conditions") or []
        unavail = 0
        if (spec.get("strategy") or {}).get("type") == "Rolling":
            rp = (spec.get("strategy") or {}).get("rollingParams") or {}
            _, unavail = resolve_fenceposts(rp.get("maxSurge"), rp.get("maxUnavailable"), int(spec.get("replicas") or 0))
        if available >= int(spec.get("replicas") or 0) - unavail and available > 0:
            conds = _set_condition(conds, "Available", "True", "", "Deployment config has minimum availability.", now)
        else:
            conds = _set_condition(conds, "Available", "False", "",
                                   "Deployment config does not have minimum availability.", now)
        if latest is not None:
            rc_name = latest["metadata"]["name"]
            phase = phase_of(latest)
            if phase == PENDING:
                conds = _set_condition(conds, "Progressing", "Unknown", "", f'replication controller "{rc_name}" is '
                                       f'waiting for pod "{rc_name}-deploy" to run', now)
            elif phase == RUNNING:
                old_old = int(old.get("replicas") or 0) - int(old.get("updatedReplicas") or 0)
                if st["updatedReplicas"] > int(old.get("updatedReplicas") or 0) or \
                        st["replicas"] - st["updatedReplicas"] < old_old:
                    conds = [c for c in conds if c.get("type") != "Progressing"]
                    conds = _set_condition(conds, "Progressing", "True", "ReplicationControllerUpdated",
                                           f'replication controller "{rc_name}" is progressing', now)
            elif phase == FAILED:
                if is_cancelled(latest):
                    conds = _set_condition(conds, "Progressing", "False", "RolloutCancelled",
                                           f'rollout of replication controller "{rc_name}" was cancelled', now)
                else:
                    conds = _set_condition(conds, "Progressing", "False", "ProgressDeadlineExceeded",
                                           f'replication controller "{rc_name}" has failed progressing', now)
            elif phase == COMPLETE:
                conds = _set_condition(conds, "Progressing", "True", "NewReplicationControllerAvailable",
                                       f'replication controller "{rc_name}" successfully rolled out', now)
        if extra is not None:
            conds = _set_condition(conds, extra[0], extra[1], extra[2], extra[3], now)
        if conds:
            st["conditions"] = conds
        ready = sum(_status(rc, "readyReplicas") for rc in rcs)
        if ready:
            st["readyReplicas"] = ready
        if st != old:
            new = dict(dc)
            new["status"] = st
            self.cm._update_status(DC, new)

    # ---------------------------------------------------------------- deployer controller
    def sync_deployment(self, ns, name):
        """deployer_controller.go handle: the RC's phase follows its deployer pod."""
        cm = self.cm
        rc = cm._ro_get(RC, ns, name)
        if rc is None or DC_ANN not in _ann(rc):
            self._runs.pop((ns, name), None)
            return
        ann = dict(_ann(rc))
        current = ann.get(PHASE_ANN, "")
        nxt = current
        pod_name = f"{name}-deploy"
        deployer = cm._ro_get(PODS, ns, pod_name)
        if deployer is not None and terminating(deployer):
            deployer = None
        if deployer is not None:
            nxt = self._next_status(deployer, rc, ann)
        config = decode_config(rc) or {}
        if current == NEW:
            if is_cancelled(rc):
                nxt = PENDING
                self._cleanup_deployer_pods(ns, name)
            elif deployer is None:
                if "deploy.openshift.io/deployer-pod.ignore" in ann:
                    return
                try:
                    created = cm.store.create(PODS, self._make_deployer_pod(rc, config))
                except ApiError as e:
                    cm._event(rc, "Warning", "FailedCreate", f"Error creating deployer pod: {e.message}",
                              "deployer-controller")
                    cm.after(2.0, ("dc-deployer", ns, name))
                    return
                ann[DEPLOYER_POD_ANN] = created["metadata"]["name"]
                ann[CREATED_AT_ANN] = _go_time(created["metadata"].get("creationTimestamp"))
                if (created.get("status") or {}).get("startTime"):
                    ann[STARTED_AT_ANN] = _go_time(created["status"]["startTime"])
                nxt = PENDING
            elif _ann(deployer).get(DEPLOYMENT_ANN) != name:
                nxt = FAILED
                ann[REASON_ANN] = "unrelated pod with the same name as this deployment is already running"
            else:
                ann[DEPLOYER_POD_ANN] = deployer["metadata"]["name"]
                ann[CREATED_AT_ANN] = _go_time(deployer["metadata"].get("creationTimestamp"))
                if _can_transition(PENDING, nxt):
                    pass
                else:
                    nxt = PENDING
        elif current in (PENDING, RUNNING):
            if deployer is None:
                nxt = FAILED
                if not is_cancelled(rc):
                    ann[REASON_ANN] = "deployer pod no longer exists"
                    cm._event(rc, "Warning", "Failed", f'Deployer pod "{pod_name}" has gone missing',
                              "deployer-controller")
            elif is_cancelled(rc):
                self._cleanup_deployer_pods(ns, name)
            elif current == RUNNING or nxt == RUNNING:
                # the deployer process runs while its container does
                if (ns, name) not in self._runs:
                    self._runs[(ns, name)] = _Run(ns, name, deployer["metadata"].get("uid"))
                    cm.push(("dc-run", ns, name))
        elif current == FAILED and is_cancelled(rc):
            self._cleanup_deployer_pods(ns, name)
        if _can_transition(current, nxt):
            ann[PHASE_ANN] = nxt
            new = _clone(rc)
            new["metadata"]["annotations"] = ann
            if int(new["spec"].get("replicas") or 0) and nxt in (COMPLETE, FAILED) and \
                    (config.get("spec") or {}).get("test"):
                new["spec"]["replicas"] = 0
            cm._update(RC, new)
            if nxt in (COMPLETE, FAILED):
                self._runs.pop((ns, name), None)
            if is_cancelled(new) and nxt == FAILED:
                cm._event(new, "Normal", "RolloutCancelled", f'Rollout for "{ns}/{name}" cancelled',
                          "deployer-controller")
            if nxt == RUNNING and (ns, name) not in self._runs and deployer is not None:
                self._runs[(ns, name)] = _Run(ns, name, deployer["metadata"].get("uid"))
                cm.push(("dc-run", ns, name))

    def _next_status(self, pod, rc, ann) -> str:
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Pending":
            return PENDING
        if phase == "Running":
            return RUNNING
        if phase == "Succeeded":
            done = _finished_at(pod)
            if done:
                ann[COMPLETED_AT_ANN] = _go_time(done)
            ann[REPLICAS_ANN] = ann.get(DESIRED_ANN, "")
            ann.pop(DESIRED_ANN, None)
            return COMPLETE
        if phase == "Failed":
            done = _finished_at(pod)
            if done:
                ann[COMPLETED_AT_ANN] = _go_time(done)
            return FAILED
        return NEW

    def _cleanup_deployer_pods(self, ns, rc_name):
        for p in self.cm._ro_list(PODS, ns):
            if (p["metadata"].get("labels") or {}).get(DEPLOYER_FOR_LABEL) == rc_name and not terminating(p):
                self.cm._delete(PODS, ns, p["metadata"]["name"])
        self._runs.pop((ns, rc_name), None)

    def _make_deployer_pod(self, rc, config) -> dict:
        """deployer_controller.go makeDeployerPod."""
        meta = rc["metadata"]
        tspec = ((rc.get("spec") or {}).get("template") or {}).get("spec") or {}
        st = (config.get("spec") or {}).get("strategy") or {}
        labels = {DEPLOYER_FOR_LABEL: meta["name"]}
        ann = {DEPLOYMENT_ANN: meta["name"], DC_ANN: _ann(rc).get(DC_ANN, "")}
        for k, v in (st.get("labels") or {}).items():
            labels.setdefault(k, v)
        for k, v in (st.get("annotations") or {}).items():
            ann.setdefault(k, v)
        spec = {
            "containers": [{"name": "deployment", "image": DEPLOYER_IMAGE,
                            "env": [{"name": "OPENSHIFT_DEPLOYMENT_NAME", "value": meta["name"]},
                                    {"name": "OPENSHIFT_DEPLOYMENT_NAMESPACE", "value": meta["namespace"]}],
                            "resources": dict(st.get("resources") or {}),
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "imagePullPolicy": "IfNotPresent"}],
            "activeDeadlineSeconds": int(st.get("activeDeadlineSeconds") or MAX_DEPLOYMENT_SECONDS),
            "dnsPolicy": tspec.get("dnsPolicy") or "ClusterFirst",
            "restartPolicy": "Never",
            "serviceAccountName": DEPLOYER_SA,
            "terminationGracePeriodSeconds": 10,
            "shareProcessNamespace": False,
        }
        for k in ("enableServiceLinks", "imagePullSecrets", "tolerations", "nodeSelector", "dnsConfig"):
            if tspec.get(k) is not None:
                spec[k] = _clone(tspec[k])
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"{meta['name']}-deploy", "namespace": meta["namespace"], "labels": labels,
                             "annotations": ann,
                             "ownerReferences": [{"apiVersion": "v1", "kind": "ReplicationController",
                                                  "name": meta["name"], "uid": meta["uid"]}]},
                "spec": spec}

    # ---------------------------------------------------------------- the deployer process
    def run_deployer(self, ns, rc_name):
        run = self._runs.get((ns, rc_name))
        if run is None:
            return
        cm = self.cm
        pod = cm._ro_get(PODS, ns, f"{rc_name}-deploy")
        if pod is None or pod["metadata"].get("uid") != run.pod_uid or terminating(pod):
            self._runs.pop((ns, rc_name), None)
            return
        if not _container_running(pod, "deployment"):
            return
        now = time.time()
        if run.not_before > now and not cm._settling:
            cm.after(run.not_before - now, ("dc-run", ns, rc_name))
            return
        try:
            done = self._step(run)
        except _DeployFailed as e:
            run.log.append(f"error: {e}")
            self._finish(run, pod, ok=False)
            return
        if done:
            run.log.append("--> Success")
            self._finish(run, pod, ok=True)

    def _say(self, run, line):
        run.log.append(line)
        self._logs[(run.ns, f"{run.rc}-deploy")] = run.log

    def _scale(self, run, rc, replicas):
        new = _clone(rc)
        new["spec"]["replicas"] = int(replicas)
        res = self.cm._update(RC, new)
        run.wait_for = (rc["metadata"]["name"], int(replicas))
        return res

    def _scaled(self, run) -> bool:
        """ScaleCondition: the RC reports the replicas asked for (scaleAndWait)."""
        if run.wait_for is None:
            return True
        rc = self.cm._ro_get(RC, run.ns, run.wait_for[0])
        if rc is None:
            raise _DeployFailed(f'replicationcontrollers "{run.wait_for[0]}" not found')
        st = rc.get("status") or {}
        if int(st.get("replicas") or 0) == run.wait_for[1] and \
                int(st.get("observedGeneration") or 0) >= int(rc["metadata"].get("generation") or 0):
            run.wait_for = None
            return True
        return False

    def _available_pods(self, rc) -> int:
        spec = rc.get("spec") or {}
        sel = spec.get("selector") or {}
        min_ready = int(spec.get("minReadySeconds") or 0)
        now = time.time()
        n = 0
        for p in self.cm._ro_list(PODS, rc["metadata"]["namespace"]):
            labels = p["metadata"].get("labels") or {}
            if terminating(p) or any(labels.get(k) != v for k, v in sel.items()):
                continue
            if pod_available(p, min_ready, now):
                n += 1
        return n

    def _progress(self, run):
        run.deadline = time.time() + run.timeout

    def _step(self, run) -> bool:
        cm = self.cm
        to = cm._ro_get(RC, run.ns, run.rc)
        if to is None:
            raise _DeployFailed(f"couldn't get deployment {run.rc}: replicationcontrollers \"{run.rc}\" not found")
        config = decode_config(to) or {}
        if run.state == "init":
            if DESIRED_ANN not in _ann(to):
                raise _DeployFailed(f"deployment {run.rc} has already run to completion")
            run.desired = int(_ann(to)[DESIRED_ANN])
            dc_name = _ann(to).get(DC_ANN)
            rcs = [rc for rc in cm._ro_list(RC, run.ns) if _ann(rc).get(DC_ANN) == dc_name]
            rcs.sort(key=version_of, reverse=True)
            frm = next((rc for rc in rcs if rc["metadata"]["name"] != run.rc and phase_of(rc) == COMPLETE), None)
            if frm is not None and version_of(to) < version_of(frm):
                raise _DeployFailed(f"deployment {run.rc} is older than {frm['metadata']['name']}")
            for rc in rcs:
                if rc["metadata"]["name"] in (run.rc, (frm or {}).get("metadata", {}).get("name")):
                    continue
                if int((rc.get("spec") or {}).get("replicas") or 0):
                    self._scale(run, rc, 0)
                    run.wait_for = None
                    self._say(run, f"--> Scaled older deployment {rc['metadata']['name']} down")
            st = (config.get("spec") or {}).get("strategy") or {}
            min_ready = int((config.get("spec") or {}).get("minReadySeconds") or 0)
            run.min_ready = min_ready
            if st.get("type") == "Recreate":
                run.timeout = float(((st.get("recreateParams") or {}).get("timeoutSeconds")) or 600)
                run.mode = "recreate"
            else:
                rp = st.get("rollingParams") or {}
                run.timeout = float(rp.get("timeoutSeconds") or 600)
                run.period = float(rp.get("updatePeriodSeconds") or 1)
                run.interval = float(rp.get("intervalSeconds") or 1)
                run.mode = "rolling" if frm is not None else "initial"
                run.surge, run.unavailable = resolve_fenceposts(rp.get("maxSurge"), rp.get("maxUnavailable"),
                                                                run.desired)
            run.from_rc = frm["metadata"]["name"] if frm is not None else ""
            self._progress(run)
            if run.mode == "rolling":
                self._start_rolling(run, to, frm)
            run.state = "scale-from" if run.mode == "recreate" and frm is not None else "scale-to"
            if run.mode == "rolling":
                run.state = "up"
        if time.time() > run.deadline and not cm._settling:
            if run.mode == "rolling":
                raise _DeployFailed("timed out waiting for any update progress to be made")
            raise _DeployFailed(f"update acceptor rejected {run.rc}: pods for rc '{run.ns}/{run.rc}' took longer "
                                f"than {int(run.timeout)} seconds to become available")
        if run.mode == "rolling":
            return self._rolling(run, to)
        return self._recreate(run, to)

    # -- Recreate and the first deployment of Rolling (strategy/recreate DeployWithAcceptor)
    def _recreate(self, run, to) -> bool:
        cm = self.cm
        if run.state == "scale-from":
            frm = cm._ro_get(RC, run.ns, run.from_rc)
            if frm is not None and int((frm.get("spec") or {}).get("replicas") or 0):
                self._say(run, f"--> Scaling {run.from_rc} down to zero")
                self._scale(run, frm, 0)
            run.state = "wait-from"
        if run.state == "wait-from":
            if not self._scaled(run):
                return False
            run.state = "scale-to"
        if run.state == "scale-to":
            if run.desired > 0 and _spec_replicas(to) != run.desired:
                self._say(run, f"--> Scaling {run.rc} to {run.desired}")
                self._scale(run, to, run.desired)
                self._progress(run)
            run.state = "wait-to"
        if run.state == "wait-to":
            if not self._scaled(run):
                return False
            run.state = "accept"
        if run.state == "accept":
            to = cm._ro_get(RC, run.ns, run.rc)
            if run.desired > 0 and self._available_pods(to) < run.desired:
                cm.after(max(run.min_ready / 2, 0.2), ("dc-run", run.ns, run.rc))
                return False
            return True
        return False

    # -- the rolling updater (strategy/rolling/rolling_updater.go Update)
    def _start_rolling(self, run, to, frm):
        cm = self.cm
        new = _clone(to)
        new["metadata"]["annotations"][SOURCE_ID_ANN] = f"{frm['metadata']['name']}:{frm['metadata']['uid']}"
        cm._update(RC, new)
        if ORIGINAL_ANN not in _ann(frm):
            old = _clone(frm)
            old["metadata"]["annotations"][ORIGINAL_ANN] = str(_spec_replicas(frm))
            cm._update(RC, old)
        run.min_available = max(0, run.desired - run.unavailable)
        if run.desired == 0:
            run.unavailable, run.min_available = _spec_replicas(frm), 0
        self._say(run, f"Scaling up {run.rc} from {_spec_replicas(to)} to {run.desired}, scaling down "
                       f"{frm['metadata']['name']} from {_spec_replicas(frm)} to 0 (keep {run.min_available} pods "
                       f"available, don't exceed {run.desired + run.surge} pods)")

    def _rolling(self, run, to) -> bool:
        cm = self.cm
        frm = cm._ro_get(RC, run.ns, run.from_rc)
        if frm is None:
            raise _DeployFailed(f'replicationcontrollers "{run.from_rc}" not found')
        if run.state in ("wait-up", "wait-down", "wait-cleanup") and not self._scaled(run):
            return False
        if run.state == "wait-up":
            run.state = "down"
            run.not_before = time.time() + (0 if cm._settling else run.period)
            cm.after(0 if cm._settling else run.period, ("dc-run", run.ns, run.rc))
            return False
        if run.state == "wait-down":
            run.state = "up"
        new_n, old_n = _spec_replicas(to), _spec_replicas(frm)
        if run.state == "up":
            if new_n == run.desired and old_n == 0:
                run.state = "cleanup"
            else:
                increment = (run.desired + run.surge) - (old_n + new_n)
                if old_n == 0:
                    increment = run.desired - new_n
                if new_n != run.desired and increment > 0:
                    target = min(new_n + increment, run.desired)
                    self._say(run, f"Scaling {run.rc} up to {target}")
                    self._scale(run, to, target)
                    self._progress(run)
                run.state = "wait-up"
                return self._rolling(run, cm._ro_get(RC, run.ns, run.rc))
        if run.state == "down":
            if old_n:
                new_available = self._available_pods(to)
                decrement = (old_n + new_n) - run.min_available - (new_n - new_available)
                if decrement > 0:
                    target = max(old_n - decrement, 0)
                    if new_n == run.desired and new_available == run.desired:
                        target = 0
                    self._say(run, f"Scaling {run.from_rc} down to {target}")
                    self._scale(run, frm, target)
                    self._progress(run)
            run.state = "wait-down"
            if not self._scaled(run):
                return False
            run.state = "up"
            # no progress: try again after the interval
            cm.after(0 if cm._settling else run.interval, ("dc-run", run.ns, run.rc))
            return False
        if run.state == "cleanup":
            new = _clone(to)
            new["metadata"]["annotations"].pop(SOURCE_ID_ANN, None)
            new["metadata"]["annotations"].pop(DESIRED_ANN, None)
            cm._update(RC, new)
            run.wait_for = (run.rc, run.desired)
            run.state = "wait-cleanup"
            return self._rolling(run, cm._ro_get(RC, run.ns, run.rc))
        if run.state == "wait-cleanup":
            return True
        return False

    def _finish(self, run, pod, ok: bool):
        """The ``deployment`` container exits; the pod completes unless another regular container runs."""
        cm = self.cm
        self._runs.pop((run.ns, run.rc), None)
        self._logs[(run.ns, pod["metadata"]["name"])] = run.log
        pod = _clone(pod)
        st = pod.setdefault("status", {})
        now = now_iso()
        statuses = []
        others_running = False
        for cs in st.get("containerStatuses") or []:
            cs = dict(cs)
            if cs.get("name") == "deployment":
                started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", now)
                cs.update(ready=False, started=False,
                          state={"terminated": {"exitCode": 0 if ok else 1, "reason": "Completed" if ok else "Error",
                                                "startedAt": started, "finishedAt": now,
                                                "containerID": cs.get("containerID", "")}})
            elif "running" in (cs.get("state") or {}):
                others_running = True
            statuses.append(cs)
        st["containerStatuses"] = statuses
        if others_running:
            conds = [dict(c) for c in st.get("conditions") or []]
            for c in conds:
                if c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False":
                    c.update(status="False", lastTransitionTime=now, reason="ContainersNotReady",
                             message="containers with unready status: [deployment]")
            st["conditions"] = conds
        else:
            st["phase"] = "Succeeded" if ok else "Failed"
            conds = [dict(c) for c in st.get("conditions") or []]
            for c in conds:
                if c.get("type") in ("Ready", "ContainersReady"):
                    c.update(status="False", lastTransitionTime=now, reason="PodCompleted")
                    c.pop("message", None)
            st["conditions"] = conds
            for ics in st.get("initContainerStatuses") or []:
                if "running" in (ics.get("state") or {}):
                    started = ics["state"]["running"].get("startedAt", now)
                    ics.update(ready=False, started=False,
                               state={"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                                     "finishedAt": now, "containerID": ics.get("containerID", "")}})
        cm._update_status(PODS, pod)


class _DeployFailed(Exception):
    pass


def _can_transition(cur: str, nxt: str) -> bool:
    return {NEW: (PENDING, RUNNING, FAILED, COMPLETE), PENDING: (RUNNING, FAILED, COMPLETE),
            RUNNING: (FAILED, COMPLETE)}.get(cur, ()).__contains__(nxt)


def _container_running(pod, name) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == name:
            return "running" in (cs.get("state") or {})
    return False


def _finished_at(pod) -> str | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        t = ((cs.get("state") or {}).get("terminated") or {}).get("finishedAt")
        if t:
            return t
    return None


def install_api(store, options=None):
    store.registry.register(dc_type())
    strategy.register(DC, prepare_create=_prepare_create, defaults=_defaults, validate=_validate,
                      prepare_update=_prepare_update)
    tables.TABLES[DC] = TABLE
    SUBRESOURCE_HANDLERS[(DC, "instantiate", "create")] = _instantiate
    SUBRESOURCE_HANDLERS[(DC, "scale", "get")] = _scale_get
    SUBRESOURCE_HANDLERS[(DC, "scale", "update")] = _scale_write
    SUBRESOURCE_HANDLERS[(DC, "scale", "patch")] = _scale_patch


def install_controllers(cm, options=None):
    cm.add_controller(OpenShiftControllers())

