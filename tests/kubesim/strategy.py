"""Per-type create preparation, defaulting and validation (test harness).

Mirrors the bits of the real API server's registry strategies and defaulting functions that
clients notice: defaulted fields (so ``kubectl get -o yaml`` looks familiar and controllers
can rely on them) and the 422 ``Invalid`` errors for common mistakes.
"""

from __future__ import annotations

import datetime
import re

from .errors import ApiError

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                            r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

WORKLOADS = {"deployments.apps", "replicasets.apps", "statefulsets.apps", "daemonsets.apps"}
TEMPLATE_OWNERS = WORKLOADS | {"jobs.batch"}


# Per-type behaviour of types served by the optional feature modules (kubesim.openshift...) and of
# built-in types defined outside this file: {resource key: {"prepare_create": fn(obj), "defaults": fn(obj),
# "validate": fn(obj, old) -> [(field, type, value, detail)], "prepare_update": fn(new, old, subresource)}}.
TYPE_HOOKS: dict = {}


def register(key: str, **hooks):
    TYPE_HOOKS.setdefault(key, {}).update(hooks)


def _hook(rt, name):
    return (TYPE_HOOKS.get(rt.key) or {}).get(name)


def prepare_for_update(rt, new: dict, old: dict, subresource):
    """Type-specific update preparation (e.g. a status write that also moves metadata.generation)."""
    fn = _hook(rt, "prepare_update")
    if fn is not None:
        fn(new, old, subresource)


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- create preparation -----------------------------------------------------------------

def prepare_for_create(rt, obj: dict, store):
    key = rt.key
    fn = _hook(rt, "prepare_create")
    if fn is not None:
        fn(obj)
    if key == "pods":
        st = obj.setdefault("status", {})
        st.setdefault("phase", "Pending")
        st.setdefault("qosClass", _qos(obj.get("spec") or {}))
    elif key == "namespaces":
        obj.setdefault("status", {})["phase"] = "Active"
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif key == "services":
        spec = obj.setdefault("spec", {})
        if spec.get("type") != "ExternalName" and not spec.get("clusterIP"):
            ip = store.allocate_ip("10.96")
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]
        elif spec.get("clusterIP") and not spec.get("clusterIPs"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        if spec.get("type") == "LoadBalancer":
            obj["status"] = {"loadBalancer": {}}
        else:
            obj.setdefault("status", {"loadBalancer": {}})
    elif key == "nodes":
        pass


def _qos(spec: dict) -> str:
    cs = spec.get("containers") or []
    any_res = False
    guaranteed = bool(cs)
    for c in cs:
        r = c.get("resources") or {}
        req, lim = r.get("requests") or {}, r.get("limits") or {}
        if req or lim:
            any_res = True
        if not lim.get("cpu") or not lim.get("memory") or (req and req != lim):
            guaranteed = False
    if guaranteed and any_res:
        return "Guaranteed"
    return "Burstable" if any_res else "BestEffort"


# ---- defaulting -------------------------------------------------------------------------

def _default_container(c: dict):
    if not isinstance(c, dict):
        return
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in c:
        img = c.get("image") or ""
        last = img.rsplit("/", 1)[-1]
        if "@" in last:
            c["imagePullPolicy"] = "IfNotPresent"
        elif ":" not in last or last.endswith(":latest"):
            c["imagePullPolicy"] = "Always"
        else:
            c["imagePullPolicy"] = "IfNotPresent"
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict, is_pod: bool = False):
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("containers") or []:
        _default_container(c)
    for c in spec.get("initContainers") or []:
        _default_container(c)
    if is_pod:
        # SetDefaults_Pod: requests default to the limits (pods only, not templates)
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            res = c.get("resources") if isinstance(c, dict) else None
            if isinstance(res, dict) and isinstance(res.get("limits"), dict) and res["limits"]:
                req = res.setdefault("requests", {})
                for k, v in res["limits"].items():
                    req.setdefault(k, v)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("priority", 0)
        tol = spec.setdefault("tolerations", [])
        keys = {t.get("key") for t in tol if isinstance(t, dict)}
        for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if k not in keys:
                tol.append({"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})


def apply_defaults(rt, obj: dict):
    key = rt.key
    meta = obj.setdefault("metadata", {})
    spec = obj.get("spec")
    fn = _hook(rt, "defaults")
    if fn is not None:
        fn(obj)
    if key == "namespaces":
        if meta.get("name"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    elif key == "pods":
        default_pod_spec(obj.setdefault("spec", {}), is_pod=True)
    elif key in TEMPLATE_OWNERS and isinstance(spec, dict):
        tmpl = spec.get("template")
        if isinstance(tmpl, dict):
            tmpl.setdefault("metadata", {})
            default_pod_spec(tmpl.setdefault("spec", {}))
        if key == "deployments.apps":
            spec.setdefault("replicas", 1)
            st = spec.setdefault("strategy", {})
            st.setdefault("type", "RollingUpdate")
            if st["type"] == "RollingUpdate":
                ru = st.setdefault("rollingUpdate", {})
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        elif key == "replicasets.apps":
            spec.setdefault("replicas", 1)
        elif key == "statefulsets.apps":
            spec.setdefault("replicas", 1)
            spec.setdefault("podManagementPolicy", "OrderedReady")
            us = spec.setdefault("updateStrategy", {})
            us.setdefault("type", "RollingUpdate")
            if us["type"] == "RollingUpdate":
                us.setdefault("rollingUpdate", {}).setdefault("partition", 0)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
        elif key == "jobs.batch":
            _default_job_spec(spec)
        elif key == "daemonsets.apps":
            us = spec.setdefault("updateStrategy", {})
            us.setdefault("type", "RollingUpdate")
            if us["type"] == "RollingUpdate":
                ru = us.setdefault("rollingUpdate", {})
                ru.setdefault("maxUnavailable", 1)
                ru.setdefault("maxSurge", 0)
            spec.setdefault("revisionHistoryLimit", 10)
    elif key == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName":
            spec.setdefault("sessionAffinity", "None")
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "port" in p:
                    p.setdefault("targetPort", p["port"])
    elif key == "cronjobs.batch" and isinstance(spec, dict):
        # k8s.io/kubernetes pkg/apis/batch/v1/defaults.go SetDefaults_CronJob
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        jspec = (spec.setdefault("jobTemplate", {})).setdefault("spec", {})
        tmpl = jspec.get("template")
        if isinstance(tmpl, dict):
            tmpl.setdefault("metadata", {})
            default_pod_spec(tmpl.setdefault("spec", {}))
    elif key == "secrets":
        obj.setdefault("type", "Opaque")
    elif key in ("mutatingwebhookconfigurations.admissionregistration.k8s.io",
                 "validatingwebhookconfigurations.admissionregistration.k8s.io"):
        for wh in obj.get("webhooks") or []:
            if not isinstance(wh, dict):
                continue
            wh.setdefault("failurePolicy", "Fail")
            wh.setdefault("matchPolicy", "Equivalent")
            wh.setdefault("namespaceSelector", {})
            wh.setdefault("objectSelector", {})
            wh.setdefault("timeoutSeconds", 10)
            if key.startswith("mutating"):
                wh.setdefault("reinvocationPolicy", "Never")
            svc = (wh.get("clientConfig") or {}).get("service")
            if isinstance(svc, dict):
                svc.setdefault("port", 443)
            for r in wh.get("rules") or []:
                if isinstance(r, dict):
                    r.setdefault("scope", "*")
    elif key == "customresourcedefinitions.apiextensions.k8s.io" and isinstance(spec, dict):
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("singular", names["kind"].lower())
            names.setdefault("listKind", names["kind"] + "List")
        spec.setdefault("scope", "Namespaced")
        spec.setdefault("conversion", {"strategy": "None"})


def _default_job_spec(spec: dict):
    """SetDefaults_Job (pkg/apis/batch/v1/defaults.go)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", None)
    if spec.get("manualSelector") is None:
        spec.pop("manualSelector")


def prepare_with_uid(rt, obj: dict):
    """Create preparation that needs the new object's uid: a Job's generated selector and pod-template labels
    (pkg/registry/batch/job/strategy.go generateSelector)."""
    if rt.key != "jobs.batch":
        return
    spec = obj.get("spec")
    if not isinstance(spec, dict) or spec.get("manualSelector"):
        return
    meta = obj["metadata"]
    uid, name = meta["uid"], meta.get("name", "")
    labels = spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {})
    for k, v in (("batch.kubernetes.io/controller-uid", uid), ("batch.kubernetes.io/job-name", name),
                 ("controller-uid", uid), ("job-name", name)):
        labels.setdefault(k, v)
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}


def crd_status(obj: dict):
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    versions = spec.get("versions") or []
    storage = [v.get("name") for v in versions if v.get("storage")] or [v.get("name") for v in versions[:1]]
    now = _now()
    obj["status"] = {
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
             "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted"},
        ],
        "storedVersions": storage,
    }


# ---- validation -------------------------------------------------------------------------

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")


def _name_rule(rt):
    if rt.key in ("namespaces", "services"):
        return DNS1123_LABEL if rt.key == "namespaces" else DNS1035_LABEL
    return DNS1123_SUBDOMAIN


def _name_msg(rt):
    if rt.key == "namespaces":
        return LABEL_MSG
    if rt.key == "services":
        return ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
    return ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def _validate_labels(labels, field, causes):
    if labels is None:
        return
    if not isinstance(labels, dict):
        causes.append((field, "Invalid", str(labels), "must be a map"))
        return
    for k, v in labels.items():
        if not QUALIFIED_NAME.match(str(k)) or len(str(k).split("/")[-1]) > 63:
            causes.append((field, "Invalid", k, "name part must consist of alphanumeric characters, '-', '_' or "
                                                "'.', and must start and end with an alphanumeric character (e.g. "
                                                "'MyName',  or 'my.name',  or '123-abc', regex used for validation "
                                                "is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))
        if not isinstance(v, str) or not LABEL_VALUE.match(v) or len(v) > 63:
            causes.append((field, "Invalid", v if isinstance(v, str) else str(v),
                           "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                           "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                           "'my_value',  or '12345', regex used for validation is "
                           "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))


def _validate_pod_spec(spec, prefix, causes):
    if not isinstance(spec, dict):
        causes.append((prefix, "Required", None, ""))
        return
    cs = spec.get("containers")
    if not cs:
        causes.append((f"{prefix}.containers", "Required", None, ""))
        return
    seen = set()
    for i, c in enumerate(cs):
        if not isinstance(c, dict):
            causes.append((f"{prefix}.containers[{i}]", "Invalid", str(c), "must be an object"))
            continue
        n = c.get("name")
        if not n:
            causes.append((f"{prefix}.containers[{i}].name", "Required", None, ""))
        elif not DNS1123_LABEL.match(n):
            causes.append((f"{prefix}.containers[{i}].name", "Invalid", n, LABEL_MSG))
        elif n in seen:
            causes.append((f"{prefix}.containers[{i}].name", "Duplicate", n, ""))
        seen.add(n)
        if not c.get("image"):
            causes.append((f"{prefix}.containers[{i}].image", "Required", None, ""))


def validate(rt, obj: dict, old: dict | None, store=None):
    from .selectors import match_label_selector  # local import: selectors imports errors only

    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    causes = []
    rule = _name_rule(rt)
    if rt.key == "customresourcedefinitions.apiextensions.k8s.io":
        spec = obj.get("spec") or {}
        want = f"{(spec.get('names') or {}).get('plural', '')}.{spec.get('group', '')}"
        if name != want:
            causes.append(("metadata.name", "Invalid", name, 'must be spec.names.plural+"."+spec.group'))
        if not spec.get("versions"):
            causes.append(("spec.versions", "Invalid", None, "must have exactly one version marked as storage "
                                                            "version"))
    elif rt.key == "selfsubjectaccessreviews.authorization.k8s.io":
        pass
    elif not rule.match(name) or len(name) > (63 if rule is not DNS1123_SUBDOMAIN else 253):
        causes.append(("metadata.name", "Invalid", name, _name_msg(rt)))
    _validate_labels(meta.get("labels"), "metadata.labels", causes)
    if meta.get("annotations") is not None and not isinstance(meta.get("annotations"), dict):
        causes.append(("metadata.annotations", "Invalid", str(meta.get("annotations")), "must be a map"))
    spec = obj.get("spec")
    if rt.key == "pods":
        _validate_pod_spec(spec, "spec", causes)
    elif rt.key in TEMPLATE_OWNERS:
        if not isinstance(spec, dict):
            causes.append(("spec", "Required", None, ""))
        else:
            sel = spec.get("selector")
            tmpl = spec.get("template") or {}
            tlabels = (tmpl.get("metadata") or {}).get("labels") or {}
            if rt.key in WORKLOADS:
                if not sel:
                    causes.append(("spec.selector", "Required", None, ""))
                elif not (sel.get("matchLabels") or sel.get("matchExpressions")):
                    causes.append(("spec.selector", "Invalid", "", "empty selector is invalid for deployment"))
                elif not match_label_selector(sel, tlabels):
                    causes.append(("spec.template.metadata.labels", "Invalid", tlabels,
                                   "`selector` does not match template `labels`"))
                if old is not None and sel != (old.get("spec") or {}).get("selector"):
                    causes.append(("spec.selector", "Invalid", sel, "field is immutable"))
            r = spec.get("replicas")
            if r is not None and (not isinstance(r, int) or r < 0):
                causes.append(("spec.replicas", "Invalid", r, "must be greater than or equal to 0"))
            _validate_labels(tlabels, "spec.template.metadata.labels", causes)
            _validate_pod_spec(tmpl.get("spec"), "spec.template.spec", causes)
    elif rt.key == "services" and isinstance(spec, dict):
        if spec.get("type") != "ExternalName" and spec.get("clusterIP") != "None" and not spec.get("ports"):
            causes.append(("spec.ports", "Required", None, ""))
        if old is not None:
            oip = (old.get("spec") or {}).get("clusterIP")
            if oip and spec.get("clusterIP") and spec.get("clusterIP") != oip:
                causes.append(("spec.clusterIPs[0]", "Invalid", [spec.get("clusterIP")], "may not change once set"))
    elif rt.key in ("mutatingwebhookconfigurations.admissionregistration.k8s.io",
                    "validatingwebhookconfigurations.admissionregistration.k8s.io"):
        seen = set()
        for i, wh in enumerate(obj.get("webhooks") or []):
            if not isinstance(wh, dict):
                continue
            n = wh.get("name") or ""
            if not n:
                causes.append((f"webhooks[{i}].name", "Required", None, ""))
            elif n in seen:
                causes.append((f"webhooks[{i}].name", "Duplicate", n, ""))
            seen.add(n)
            if wh.get("sideEffects") not in ("None", "NoneOnDryRun"):
                causes.append((f"webhooks[{i}].sideEffects", "NotSupported", wh.get("sideEffects") or "",
                               'supported values: "None", "NoneOnDryRun"'))
            if not wh.get("admissionReviewVersions"):
                causes.append((f"webhooks[{i}].admissionReviewVersions", "Required", None,
                               "must specify one of v1, v1beta1"))
    elif rt.key == "configmaps":
        for k in list((obj.get("data") or {}).keys()) + list((obj.get("binaryData") or {}).keys()):
            if not re.match(r"^[-._a-zA-Z0-9]+$", k):
                causes.append((f"data[{k}]", "Invalid", k, "a valid config key must consist of alphanumeric "
                                                          "characters, '-', '_' or '.' (e.g. 'key.name',  or "
                                                          "'KEY_NAME',  or 'key-name', regex used for validation is "
                                                          "'[-._a-zA-Z0-9]+')"))
    fn = _hook(rt, "validate")
    if fn is not None:
        causes.extend(fn(obj, old) or [])
    if causes:
        raise ApiError.invalid(rt, name, causes)
