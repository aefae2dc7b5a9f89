"""core/v1 ReplicationControllers and their controller (test harness).

Every Kubernetes API server serves ``replicationcontrollers`` and kube-controller-manager runs the
replication manager (kubernetes ``pkg/controller/replication``, which is the ReplicaSet controller behind
an adapter): it keeps ``spec.replicas`` pods that it owns (controller ownerReference, ``generateName``
``<rc>-``), deletes surplus pods in the ReplicaSet controller's order, and reports ``status.replicas``,
``fullyLabeledReplicas``, ``readyReplicas``, ``availableReplicas`` (ready for ``minReadySeconds``),
``observedGeneration`` and a ``ReplicaFailure`` condition when pod creation is refused.  The API
defaults ``spec.replicas`` to 1 and ``spec.selector`` to the template's labels
(``pkg/apis/core/v1/defaults.go`` SetDefaults_ReplicationController) and rejects a selector that does not
match the template (``pkg/apis/core/validation`` ValidateReplicationControllerSpec).

OpenShift DeploymentConfigs (:mod:`kubesim.openshift`) roll out through these.
"""

from __future__ import annotations

from . import strategy, tables
from .controllers import terminating

RC = "replicationcontrollers"


def _defaults(obj: dict):
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    spec.setdefault("replicas", 1)
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        strategy.default_pod_spec(tmpl.setdefault("spec", {}))
        labels = tmpl["metadata"].get("labels") or {}
        if not spec.get("selector") and labels:
            spec["selector"] = dict(labels)


def _validate(obj: dict, old) -> list:
    causes = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("spec", "Required", None, "")]
    sel = spec.get("selector") or {}
    tmpl = spec.get("template")
    if not sel:
        causes.append(("spec.selector", "Required", None, ""))
    if not isinstance(tmpl, dict):
        causes.append(("spec.template", "Required", None, ""))
        return causes
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if sel and any(labels.get(k) != v for k, v in sel.items()):
        causes.append(("spec.template.metadata.labels", "Invalid", labels,
                       "`selector` does not match template `labels`"))
    r = spec.get("replicas")
    if r is not None and (not isinstance(r, int) or r < 0):
        causes.append(("spec.replicas", "Invalid", r, "must be greater than or equal to 0"))
    strategy._validate_pod_spec(tmpl.get("spec"), "spec.template.spec", causes)
    return causes


def _table_row(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    cs = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    sel = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [o["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            tables.age(o), ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs), sel]


C = tables._col
TABLE = ([tables.NAME_COL, C("Desired", "integer"), C("Current", "integer"), C("Ready", "integer"), tables.AGE_COL,
          C("Containers", priority=1), C("Images", priority=1), C("Selector", priority=1)], _table_row)


class ReplicationManager:
    """The replication manager: one work key ``("rc", namespace, name)`` per ReplicationController."""

    kinds = ("rc",)

    def attach(self, cm):
        self.cm = cm

    def initial_keys(self):
        for rc in self.cm._ro_list(RC):
            yield ("rc", rc["metadata"]["namespace"], rc["metadata"]["name"])

    def keys_for(self, event_type, key, obj):
        meta = (obj or {}).get("metadata") or {}
        if key == RC:
            return [("rc", meta.get("namespace"), meta.get("name"))]
        if key == "pods":
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") == "ReplicationController":
                    return [("rc", meta.get("namespace"), ref.get("name"))]
        return ()

    def sync(self, key):
        _, ns, name = key
        cm = self.cm
        rc = cm._ro_get(RC, ns, name)
        if rc is None or terminating(rc):
            cm._backoff.pop(key, None)
            return
        spec = rc.get("spec") or {}
        want = int(spec["replicas"]) if spec.get("replicas") is not None else 1
        pods = [p for p in cm._owned_pods(rc) if not terminating(p)
                and (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")]
        diff = len(pods) - want
        failed_msg = None
        if diff < 0:
            if key in cm._backoff and not cm._settling and cm._backoff_pending(key):
                failed_msg = cm._last_create_error.get(key)
            else:
                for _ in range(-diff):
                    pod = cm._pod_from_template(rc, "ReplicationController", cm._generate_name(name),
                                                spec.get("template") or {})
                    if not cm._create_pod(rc, "ReplicationController", pod, key):
                        failed_msg = cm._last_create_error.get(key)
                        break
                    cm._event(rc, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                              "replication-controller")
        elif diff > 0:
            for p in cm._pods_to_delete(pods, diff):
                cm._delete("pods", ns, p["metadata"]["name"])
                cm._event(rc, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                          "replication-controller")
        pods = [p for p in cm._owned_pods(rc) if not terminating(p)]
        cm._update_rs_status(rc, pods, failed_msg, RC)


def install_api(store, options=None):
    strategy.register(RC, defaults=_defaults, validate=_validate)
    tables.TABLES[RC] = TABLE


def install_controllers(cm, options=None):
    cm.add_controller(ReplicationManager())
