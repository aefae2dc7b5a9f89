"""Server-side Table output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``), the way
``kubectl get`` asks for it, with the real server's columns for the common kinds (test harness)."""

from __future__ import annotations

import datetime
import json
import re

from .selectors import selector_to_string


def human_duration(seconds: float) -> str:
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def _parse_ts(ts):
    if not ts:
        return None
    try:
        return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def age(obj: dict, field: str = "creationTimestamp") -> str:
    t = _parse_ts((obj.get("metadata") or {}).get(field))
    if t is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds())


def _col(name, typ="string", fmt="", desc="", priority=0):
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}


NAME_COL = _col("Name", "string", "name", "Name must be unique within a namespace.")
AGE_COL = _col("Age", "string", "", "CreationTimestamp is a timestamp representing the server time when this "
                                    "object was created.")


def _containers(spec):
    cs = ((spec or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _deploy(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(spec)
    return [o["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), age(o), names, images,
            selector_to_string(spec.get("selector"))]


def _rs(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(spec)
    return [o["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
            age(o), names, images, selector_to_string(spec.get("selector"))]


def _sts(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(spec)
    return [o["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{spec.get('replicas', 1)}", age(o), names, images]


def _ds(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    names, images = _containers(spec)
    ns = ((spec.get("template") or {}).get("spec") or {}).get("nodeSelector") or {}
    nsel = ",".join(f"{k}={v}" for k, v in sorted(ns.items())) or "<none>"
    return [o["metadata"]["name"], st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
            st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0), nsel,
            age(o), names, images, selector_to_string(spec.get("selector"))]


def _pod_status(o):
    """STATUS, ready count and RESTARTS as kubectl's pod printer computes them (kubernetes
    pkg/printers/internalversion/printers.go printPod), restartable init containers (native sidecars) included."""
    meta, spec, st = o.get("metadata") or {}, o.get("spec") or {}, o.get("status") or {}
    reason = st.get("reason") or st.get("phase") or "Unknown"
    init_statuses = st.get("initContainerStatuses") or []
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    n_init = len(spec.get("initContainers") or [])
    restartable = lambda name: (init_specs.get(name) or {}).get("restartPolicy") == "Always"  # noqa: E731
    initializing = False
    ready = 0
    restarts = 0
    sidecar_restarts = 0
    last_restart = None
    sidecar_last_restart = None
    for i, cs in enumerate(init_statuses):
        restarts += cs.get("restartCount", 0)
        lt = _parse_ts(((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if lt and (last_restart is None or lt > last_restart):
            last_restart = lt
        if restartable(cs.get("name")):
            sidecar_restarts += cs.get("restartCount", 0)
            if lt and (sidecar_last_restart is None or lt > sidecar_last_restart):
                sidecar_last_restart = lt
        state = cs.get("state") or {}
        term = state.get("terminated")
        if term and term.get("exitCode", 0) == 0:
            continue
        if restartable(cs.get("name")) and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term:
            reason = "Init:" + (term.get("reason") or f"ExitCode:{term.get('exitCode')}")
        elif (state.get("waiting") or {}).get("reason") and state["waiting"]["reason"] != "PodInitializing":
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break
    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in st.get("conditions") or [])
    if not initializing or initialized:
        restarts = sidecar_restarts
        last_restart = sidecar_last_restart
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += cs.get("restartCount", 0)
            state = cs.get("state") or {}
            lt = ((cs.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if lt:
                t = _parse_ts(lt)
                if t and (last_restart is None or t > last_restart):
                    last_restart = t
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif (state.get("terminated") or {}).get("reason"):
                reason = state["terminated"]["reason"]
            elif state.get("terminated"):
                t = state["terminated"]
                reason = f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}"
            elif state.get("running") and cs.get("ready"):
                has_running = True
                ready += 1
            elif state.get("running"):
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running"
    if meta.get("deletionTimestamp"):
        reason = "Terminating"
    rtext = str(restarts)
    if restarts and last_restart is not None:
        ago = human_duration((datetime.datetime.now(datetime.timezone.utc) - last_restart).total_seconds())
        rtext = f"{restarts} ({ago} ago)"
    return reason, ready, rtext


def _pod(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    reason, ready, restarts = _pod_status(o)
    gates = spec.get("readinessGates") or []
    if gates:
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        gtext = f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    else:
        gtext = "<none>"
    total = len(spec.get("containers") or []) + sum(1 for c in spec.get("initContainers") or []
                                                   if c.get("restartPolicy") == "Always")
    return [o["metadata"]["name"], f"{ready}/{total}", reason, restarts, age(o),
            st.get("podIP") or "<none>", spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>",
            gtext]


def _ports(spec):
    out = []
    for p in spec.get("ports") or []:
        s = f"{p.get('port')}"
        if p.get("nodePort"):
            s += f":{p['nodePort']}"
        out.append(f"{s}/{p.get('protocol', 'TCP')}")
    return ",".join(out) or "<none>"


def _svc(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    typ = spec.get("type", "ClusterIP")
    ext = "<none>"
    if typ == "LoadBalancer":
        ing = (st.get("loadBalancer") or {}).get("ingress") or []
        ext = ",".join(i.get("ip") or i.get("hostname", "") for i in ing) or "<pending>"
    elif typ == "ExternalName":
        ext = spec.get("externalName", "<none>")
    elif spec.get("externalIPs"):
        ext = ",".join(spec["externalIPs"])
    sel = spec.get("selector")
    return [o["metadata"]["name"], typ, spec.get("clusterIP") or "<none>", ext, _ports(spec), age(o),
            ",".join(f"{k}={v}" for k, v in sorted(sel.items())) if sel else "<none>"]


def _endpoints(o):
    eps = []
    for sub in o.get("subsets") or []:
        for a in sub.get("addresses") or []:
            for p in sub.get("ports") or [{}]:
                eps.append(f"{a.get('ip')}:{p.get('port')}" if p.get("port") else a.get("ip"))
    text = ",".join(eps[:3]) + (f" + {len(eps) - 3} more..." if len(eps) > 3 else "")
    return [o["metadata"]["name"], text or "<none>", age(o)]


def _event(o):
    last = o.get("lastTimestamp") or o.get("eventTime") or (o.get("metadata") or {}).get("creationTimestamp")
    t = _parse_ts(last[:19] + "Z" if last and len(last) > 20 else last)
    seen = human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) if t else "<unknown>"
    inv = o.get("involvedObject") or {}
    return [seen, o.get("type", ""), o.get("reason", ""), f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}",
            o.get("message", ""), o["metadata"]["name"]]


def _node(o):
    st = o.get("status") or {}
    ready = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = sorted(k.split("/", 1)[1] for k in ((o.get("metadata") or {}).get("labels") or {})
                   if k.startswith("node-role.kubernetes.io/"))
    addrs = {a.get("type"): a.get("address") for a in st.get("addresses") or []}
    info = st.get("nodeInfo") or {}
    return [o["metadata"]["name"], status, ",".join(roles) or "<none>", age(o), info.get("kubeletVersion", ""),
            addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"), info.get("osImage", ""),
            info.get("kernelVersion", ""), info.get("containerRuntimeVersion", "")]


def _job(o):
    """printJob (pkg/printers/internalversion/printers.go)."""
    spec, st = o.get("spec") or {}, o.get("status") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = "Running"
    for ctype in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if conds.get(ctype) == "True":
            status = ctype
            break
    comp = spec.get("completions")
    completions = (f"{st.get('succeeded', 0)}/{comp}" if comp is not None
                   else f"{st.get('succeeded', 0)}/1 of {spec.get('parallelism', 1)}")
    start, end = _parse_ts(st.get("startTime")), _parse_ts(st.get("completionTime"))
    if start is None:
        duration = ""
    else:
        stop = end or datetime.datetime.now(datetime.timezone.utc)
        duration = human_duration((stop - start).total_seconds())
    tspec = (spec.get("template") or {}).get("spec") or {}
    return [o["metadata"]["name"], status, completions, duration, age(o),
            ",".join(c.get("name", "") for c in tspec.get("containers") or []),
            ",".join(c.get("image", "") for c in tspec.get("containers") or []),
            selector_to_string(spec.get("selector"))]


def _cronjob(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    last = _parse_ts(st.get("lastScheduleTime"))
    last_s = human_duration((datetime.datetime.now(datetime.timezone.utc) - last).total_seconds()) if last \
        else "<none>"
    tspec = (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return [o["metadata"]["name"], spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "True" if spec.get("suspend") else "False", len(st.get("active") or []), last_s, age(o),
            ",".join(c.get("name", "") for c in tspec.get("containers") or []),
            ",".join(c.get("image", "") for c in tspec.get("containers") or []), "<none>"]


def _hpa(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    ref = spec.get("scaleTargetRef") or {}
    targets = []
    for m in spec.get("metrics") or []:
        res = (m.get("resource") or {})
        tgt = res.get("target") or {}
        if m.get("type") == "Resource" and tgt.get("averageUtilization") is not None:
            targets.append(f"{res.get('name')}: <unknown>/{tgt['averageUtilization']}%")
        else:
            targets.append("<unknown>")
    return [o["metadata"]["name"], f"{ref.get('kind', '')}/{ref.get('name', '')}",
            ", ".join(targets) or "<none>", spec.get("minReplicas", 1), spec.get("maxReplicas", 0),
            st.get("currentReplicas", 0), age(o)]


def _pdb(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    return [o["metadata"]["name"], str(spec["minAvailable"]) if "minAvailable" in spec else "N/A",
            str(spec["maxUnavailable"]) if "maxUnavailable" in spec else "N/A", st.get("disruptionsAllowed", 0),
            age(o)]


def _cr_rev(o):
    owner = next((r for r in (o.get("metadata") or {}).get("ownerReferences") or [] if r.get("controller")), None)
    ctl = f"{owner.get('kind', '').lower()}.{owner.get('apiVersion', '').split('/')[0]}/{owner.get('name')}" \
        if owner else "<none>"
    if owner and "/" not in owner.get("apiVersion", ""):
        ctl = f"{owner.get('kind', '').lower()}/{owner.get('name')}"
    return [o["metadata"]["name"], ctl, o.get("revision", 0), age(o)]


def _quota(o):
    """printResourceQuota: 'used/hard' of each resource, limits.* in the Limit column."""
    from .quota import Quantity

    st = o.get("status") or {}
    req, lim = [], []

    def show(v):
        try:
            return str(Quantity.parse(v)) if v is not None else "0"
        except ValueError:
            return str(v)

    for r in sorted(((o.get("spec") or {}).get("hard")) or {}):
        cell = f"{r}: {show((st.get('used') or {}).get(r))}/{show((st.get('hard') or {}).get(r))}"
        (lim if r.split(".")[0] == "limits" and "." in r else req).append(cell)
    return [o["metadata"]["name"], age(o), ", ".join(req), ", ".join(lim)]


TABLES = {
    "resourcequotas": ([NAME_COL, AGE_COL,
                        _col("Request", desc="Request represents a minimum amount of cpu/memory that a container "
                                             "may consume."),
                        _col("Limit", desc="Limits control the maximum amount of cpu/memory that a container may "
                                           "use independent of contention on the node.")], _quota),
    "limitranges": ([NAME_COL, _col("Created At", "date")],
                    lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")]),
    "deployments.apps": ([NAME_COL, _col("Ready", desc="Number of the pod with ready state"),
                          _col("Up-to-date", "integer", desc="Total number of non-terminated pods targeted by this "
                                                             "deployment that have the desired template spec."),
                          _col("Available", "integer", desc="Total number of available pods (ready for at least "
                                                            "minReadySeconds) targeted by this deployment."),
                          AGE_COL, _col("Containers", priority=1, desc="Names of each container in the template."),
                          _col("Images", priority=1, desc="Images referenced by each container in the template."),
                          _col("Selector", priority=1, desc="Label selector for pods.")], _deploy),
    "replicasets.apps": ([NAME_COL, _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
                          AGE_COL, _col("Containers", priority=1), _col("Images", priority=1),
                          _col("Selector", priority=1)], _rs),
    "statefulsets.apps": ([NAME_COL, _col("Ready"), AGE_COL, _col("Containers", priority=1),
                           _col("Images", priority=1)], _sts),
    "daemonsets.apps": ([NAME_COL, _col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
                         _col("Up-to-date", "integer"), _col("Available", "integer"), _col("Node Selector"), AGE_COL,
                         _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                        _ds),
    "pods": ([NAME_COL, _col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
              _col("Status", desc="The aggregate status of the containers in this pod."),
              _col("Restarts", desc="The number of times the containers in this pod have been restarted and when "
                                    "the last container in this pod has restarted."),
              AGE_COL, _col("IP", priority=1), _col("Node", priority=1), _col("Nominated Node", priority=1),
              _col("Readiness Gates", priority=1)], _pod),
    "namespaces": ([NAME_COL, _col("Status", desc="The status of the namespace"), AGE_COL],
                   lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", "Active"), age(o)]),
    "mutatingwebhookconfigurations.admissionregistration.k8s.io": (
        [NAME_COL, _col("Webhooks", "integer"), AGE_COL],
        lambda o: [o["metadata"]["name"], len(o.get("webhooks") or []), age(o)]),
    "validatingwebhookconfigurations.admissionregistration.k8s.io": (
        [NAME_COL, _col("Webhooks", "integer"), AGE_COL],
        lambda o: [o["metadata"]["name"], len(o.get("webhooks") or []), age(o)]),
    "services": ([NAME_COL, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), AGE_COL,
                  _col("Selector", priority=1)], _svc),
    "endpoints": ([NAME_COL, _col("Endpoints"), AGE_COL], _endpoints),
    "configmaps": ([NAME_COL, _col("Data", "integer"), AGE_COL],
                   lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                              age(o)]),
    "secrets": ([NAME_COL, _col("Type"), _col("Data", "integer"), AGE_COL],
                lambda o: [o["metadata"]["name"], o.get("type", "Opaque"), len(o.get("data") or {}), age(o)]),
    "serviceaccounts": ([NAME_COL, _col("Secrets", "integer"), AGE_COL],
                        lambda o: [o["metadata"]["name"], len(o.get("secrets") or []), age(o)]),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message"),
                dict(NAME_COL, priority=1)], _event),
    "nodes": ([NAME_COL, _col("Status"), _col("Roles"), AGE_COL, _col("Version"), _col("Internal-IP", priority=1),
               _col("External-IP", priority=1), _col("OS-Image", priority=1), _col("Kernel-Version", priority=1),
               _col("Container-Runtime", priority=1)], _node),
    "jobs.batch": ([NAME_COL, _col("Status"), _col("Completions"), _col("Duration"), AGE_COL,
                    _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)], _job),
    "cronjobs.batch": ([NAME_COL, _col("Schedule"), _col("Timezone"), _col("Suspend", "boolean"),
                        _col("Active", "integer"), _col("Last Schedule", "date"), AGE_COL,
                        _col("Containers", priority=1), _col("Images", priority=1), _col("Selector", priority=1)],
                       _cronjob),
    "horizontalpodautoscalers.autoscaling": ([NAME_COL, _col("Reference"), _col("Targets"),
                                              _col("MinPods", "integer"), _col("MaxPods", "integer"),
                                              _col("Replicas", "integer"), AGE_COL], _hpa),
    "poddisruptionbudgets.policy": ([NAME_COL, _col("Min Available"), _col("Max Unavailable"),
                                     _col("Allowed Disruptions", "integer"), AGE_COL], _pdb),
    "controllerrevisions.apps": ([NAME_COL, _col("Controller"), _col("Revision", "integer"), AGE_COL], _cr_rev),
    "customresourcedefinitions.apiextensions.k8s.io": (
        [NAME_COL, _col("Created At", "date")],
        lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp", "")]),
}


def _jsonpath(obj, path: str):
    cur = obj
    path = (path or "").strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    for part in re.split(r"\.(?![^\[]*\])", path.lstrip(".")):  # dots outside [...] filters
        if not part:
            continue
        if "[" in part:
            name, _, idx = part.partition("[")
            idx = idx.rstrip("]")
            cur = cur.get(name) if isinstance(cur, dict) else None
            if isinstance(cur, list) and idx.lstrip("-").isdigit() and -len(cur) <= int(idx) < len(cur):
                cur = cur[int(idx)]
            elif isinstance(cur, list) and idx.startswith("?"):
                # a filter such as ?(@.type=="Ready") (CRD printer columns use them)
                m = re.match(r'^\?\(@\.([A-Za-z0-9_]+)\s*==\s*["\']([^"\']*)["\']\)$', idx)
                if not m:
                    return None
                cur = next((x for x in cur if isinstance(x, dict) and str(x.get(m.group(1))) == m.group(2)), None)
            else:
                return None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return None
    return cur


def _custom_table(rt):
    cols = [NAME_COL]
    specs = []
    for pc in rt.printer_columns:
        typ = pc.get("type", "string")
        cols.append(_col(pc.get("name", ""), typ, pc.get("format", ""), pc.get("description", ""),
                         pc.get("priority", 0)))
        specs.append(pc)
    has_age = any(pc.get("jsonPath") == ".metadata.creationTimestamp" for pc in specs)
    if not has_age:
        cols.append(AGE_COL)

    def row(o):
        cells = [o["metadata"]["name"]]
        for pc in specs:
            v = _jsonpath(o, pc.get("jsonPath", ""))
            if pc.get("type") == "date" and isinstance(v, str):
                t = _parse_ts(v)
                v = human_duration((datetime.datetime.now(datetime.timezone.utc) - t).total_seconds()) if t else v
            elif isinstance(v, (dict, list)):
                v = json.dumps(v)
            cells.append(v)
        if not has_age:
            cells.append(age(o))
        return cells

    return cols, row


def table_spec(rt):
    if rt.key in TABLES:
        return TABLES[rt.key]
    if rt.custom and rt.printer_columns:
        return _custom_table(rt)
    return [NAME_COL, AGE_COL], lambda o: [o["metadata"]["name"], age(o)]


def row_object(obj: dict, include: str):
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


def make_row(rt, obj: dict, include: str, row_fn=None):
    if row_fn is None:
        _, row_fn = table_spec(rt)
    row = {"cells": row_fn(obj)}
    ro = row_object(obj, include)
    if ro is not None:
        row["object"] = ro
    return row


def make_table(rt, objs: list, include: str = "Metadata", resource_version: str = "", cont: str = "",
               remaining=None, with_columns: bool = True) -> dict:
    cols, row_fn = table_spec(rt)
    meta = {"resourceVersion": resource_version}
    if cont:
        meta["continue"] = cont
    if remaining:
        meta["remainingItemCount"] = remaining
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": cols if with_columns else [],
            "rows": [make_row(rt, o, include, row_fn) for o in objs]}
