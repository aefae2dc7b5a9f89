"""Scenarios: the objects a simulated cluster starts with (test harness).

Each scenario is a YAML file in ``scenarios/``.  It states intent (Istio revisions, namespaces, apps,
gateways) and :func:`load_scenario` expands it into API objects, in creation order: CRDs, namespaces,
nodes, the Istio control plane (built by :mod:`kubesim.istio`, exactly what the stand-in
``istioctl install`` creates), then workloads.  Pods are never listed: the controllers create them
through admission, so their injection is real.

``large`` generates ``options.namespaces`` x ``options.deployments`` x ``options.replicas``.

A scenario may name ``features`` (``openshift``, ``argo-rollouts``, ``sail-operator``: see
:mod:`kubesim.cli`), list apps of ``kind`` ``DeploymentConfig`` or ``Rollout`` besides Deployments, and give a
``sail`` section (``istio``, ``istiocni``, ``tags``): the Sail operator's custom resources.  Their control plane
is then installed by the simulated operator, so :func:`load_scenario_phases` puts the workloads in a second
phase, created once the operator has brought istiod and the tag webhook up (as on a running cluster).
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from . import istio

SCENARIO_DIR = Path(__file__).with_name("scenarios")
APP_IMAGE = "docker.io/kennethreitz/httpbin:latest"


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml")
                  if p.stem not in ("base", "istio-crds", "gateway-api-crds"))


def _read(name: str) -> dict:
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(scenario_names())})")
    with path.open() as fh:
        return yaml.safe_load(fh) or {}


def crd_objects(source: str = "istio-crds") -> list[dict]:
    data = _read(source)
    labels = data.get("labels") or {"app": "istio-pilot", "chart": "istio", "heritage": "Tiller", "release": "istio"}
    out = []
    for c in data["crds"]:
        versions = []
        for v in c["versions"]:
            versions.append({
                "name": v, "served": True, "storage": v == c["storage"],
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                "subresources": {"status": {}},
            })
        names = {"kind": c["kind"], "listKind": c["kind"] + "List", "plural": c["plural"],
                 "singular": c["kind"].lower()}
        if c.get("short"):
            names["shortNames"] = list(c["short"])
        if c.get("categories"):
            names["categories"] = list(c["categories"])
        out.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{c['plural']}.{c['group']}", "labels": dict(labels)},
            "spec": {"group": c["group"], "names": names, "scope": c.get("scope", "Namespaced"),
                     "versions": versions},
        })
    return out


def node_objects(spec: dict) -> list[dict]:
    out = []
    for i in range(int(spec.get("count", 3))):
        name = f"{spec.get('prefix', 'kubesim-worker')}-{i + 1}"
        out.append({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {
                "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                "topology.kubernetes.io/zone": f"zone-{'abc'[i % 3]}"}},
            "spec": {"podCIDR": f"10.244.{i}.0/24", "podCIDRs": [f"10.244.{i}.0/24"]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": f"172.18.0.{i + 2}"},
                              {"type": "Hostname", "address": name}],
                "allocatable": {"cpu": spec.get("cpu", "8"), "memory": spec.get("memory", "32Gi"), "pods": "110"},
                "capacity": {"cpu": spec.get("cpu", "8"), "memory": spec.get("memory", "32Gi"), "pods": "110"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                     "message": "kubelet has sufficient memory available"},
                    {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
                     "message": "kubelet has no disk pressure"},
                    {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
                     "message": "kubelet has sufficient PID available"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady",
                     "message": "kubelet is posting ready status"},
                ],
                "nodeInfo": {"architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.13",
                             "bootID": f"00000000-0000-4000-8000-{i + 1:012d}",
                             "machineID": f"{i + 1:032x}", "systemUUID": f"00000000-0000-4000-9000-{i + 1:012d}",
                             "kernelVersion": "6.1.0-kubesim",
                             "kubeProxyVersion": spec.get("kubelet_version", "v1.32.0"),
                             "kubeletVersion": spec.get("kubelet_version", "v1.32.0"), "operatingSystem": "linux",
                             "osImage": "Debian GNU/Linux 12 (bookworm)"},
            },
        })
    return out


def scenario_features(name: str) -> list[str]:
    """The optional platform parts a scenario needs (``features:``)."""
    return list(_read(name).get("features") or [])


def sail_objects(spec: dict) -> list[dict]:
    """The Sail operator's custom resources a scenario starts with."""
    out = []
    istio = spec.get("istio")
    if istio:
        istio = dict(istio)
        out.append({"apiVersion": "sailoperator.io/v1", "kind": "Istio",
                     "metadata": {"name": istio.pop("name", "default")}, "spec": istio})
    if spec.get("istiocni"):
        out.append({"apiVersion": "sailoperator.io/v1", "kind": "IstioCNI", "metadata": {"name": "default"},
                    "spec": dict(spec["istiocni"])})
    if spec.get("ztunnel"):
        out.append({"apiVersion": "sailoperator.io/v1", "kind": "ZTunnel", "metadata": {"name": "default"},
                    "spec": dict(spec["ztunnel"])})
    for tag in spec.get("tags") or []:
        out.append({"apiVersion": "sailoperator.io/v1", "kind": "IstioRevisionTag",
                    "metadata": {"name": tag["name"]}, "spec": {"targetRef": dict(tag["targetRef"])}})
    return out


def namespace_object(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})}}


def app_objects(namespace: str, name: str, replicas: int = 2, image: str = APP_IMAGE,
                version: str = "v1", app: str | None = None, pod_labels: dict | None = None,
                kind: str = "Deployment") -> list[dict]:
    """An app the articles' way: Deployment + Service, labels app/version.

    ``app`` (default ``name``) names the Service and its ``app`` label, so several versions of one app
    (``reviews-v1``, ``reviews-v2`` with ``app: reviews``) share one Service (load_scenario dedups it).
    ``pod_labels`` are added to the pod template (e.g. ``istio.io/rev`` to pick a revision per workload).
    ``kind`` ``DeploymentConfig`` (OpenShift; its deployer pods labelled ``sidecar.istio.io/inject: "false"``
    through ``spec.strategy.labels``, as users do: an injected deployer pod never completes with a classic
    sidecar) or ``Rollout`` (Argo Rollouts, canary) instead of a Deployment."""
    app = app or name
    labels = {"app": app, "version": version}
    objs = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": app, "namespace": namespace}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": app, "namespace": namespace, "labels": {"app": app, "service": app}},
         "spec": {"selector": {"app": app},
                  "ports": [{"name": "http", "port": 8000, "protocol": "TCP", "targetPort": 80}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
         "spec": {"replicas": replicas,
                  "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": {**labels, **{str(k): str(v) for k, v in
                                                                      (pod_labels or {}).items()}}},
                               "spec": {"serviceAccountName": app,
                                        "containers": [{"name": app, "image": image,
                                                        "imagePullPolicy": "IfNotPresent",
                                                        "ports": [{"containerPort": 80, "name": "http"}]}]}}}},
    ]
    workload = objs[-1]
    if kind == "DeploymentConfig":
        workload.update(apiVersion="apps.openshift.io/v1", kind="DeploymentConfig")
        workload["spec"]["selector"] = dict(labels)
        workload["spec"]["strategy"] = {"type": "Rolling", "labels": {"sidecar.istio.io/inject": "false"}}
        workload["spec"]["triggers"] = [{"type": "ConfigChange"}]
    elif kind == "Rollout":
        workload.update(apiVersion="argoproj.io/v1alpha1", kind="Rollout")
        workload["spec"]["strategy"] = {"canary": {"maxSurge": "25%", "maxUnavailable": 0}}
    elif kind != "Deployment":
        raise ValueError(f"unknown app kind {kind!r}")
    return objs


def gateway_objects(namespace: str, name: str = "istio-ingressgateway", replicas: int = 1) -> list[dict]:
    """An injected gateway as Istio's gateway-injection docs deploy it."""
    sel = {"app": name, "istio": name.replace("istio-", "", 1)}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace, "labels": dict(sel)},
         "spec": {"type": "LoadBalancer", "selector": dict(sel),
                  "ports": [{"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
                            {"name": "http2", "port": 80, "protocol": "TCP", "targetPort": 8080},
                            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": dict(sel)},
         "spec": {"replicas": replicas,
                  "selector": {"matchLabels": dict(sel)},
                  "template": {"metadata": {"annotations": {"inject.istio.io/templates": "gateway"},
                                            "labels": {**sel, "sidecar.istio.io/inject": "true"}},
                               "spec": {"serviceAccountName": name,
                                        "securityContext": {"sysctls": [
                                            {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
                                        "containers": [{"name": "istio-proxy", "image": "auto"}]}}}},
    ]


def _worker_pod_spec(name: str, image: str, command: list) -> dict:
    return {"restartPolicy": "Never", "containers": [{"name": name, "image": image, "command": list(command)}]}


def batch_objects(sc: dict) -> list[dict]:
    """Workloads no rollout restart can move: bare pods, a Job's pods, a CronJob's Job's pods.  Their command
    decides how long they run (kubesim.batch): ``sleep infinity`` keeps them running, ``sleep N`` ends them.
    A Job listed under a CronJob's ``instantiate`` is owned by it (as ``kubectl create job --from=cronjob/...``
    makes it); ``_owner`` is resolved by kubesim.cli.build_cluster when the object is created."""
    out = []
    for p in sc.get("pods") or []:
        out.append({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": p["name"], "namespace": p["namespace"],
                                 "labels": {"app": p["name"], **(p.get("labels") or {})}},
                    "spec": {**_worker_pod_spec(p["name"], p.get("image", "docker.io/library/busybox:1.36"),
                                                p.get("command") or ["sleep", "infinity"]),
                             "restartPolicy": p.get("restart_policy", "Always")}})
    for j in sc.get("jobs") or []:
        out.append({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": j["name"], "namespace": j["namespace"]},
                    "spec": {"backoffLimit": 6, "template": {
                        "metadata": {"labels": {"app": j["name"]}},
                        "spec": _worker_pod_spec(j["name"], j.get("image", "docker.io/library/busybox:1.36"),
                                                 j.get("command") or ["sleep", "infinity"])}}})
    for c in sc.get("cronjobs") or []:
        job_spec = {"template": {"metadata": {"labels": {"app": c["name"]}},
                                 "spec": _worker_pod_spec(c["name"], c.get("image", "docker.io/library/busybox:1.36"),
                                                          c.get("command") or ["sleep", "infinity"])}}
        out.append({"apiVersion": "batch/v1", "kind": "CronJob",
                    "metadata": {"name": c["name"], "namespace": c["namespace"]},
                    "spec": {"schedule": c.get("schedule", "0 3 * * *"), "jobTemplate": {"spec": job_spec}}})
        if c.get("instantiate"):
            out.append({"apiVersion": "batch/v1", "kind": "Job", "_owner": {"kind": "CronJob", "name": c["name"]},
                        "metadata": {"name": c["instantiate"], "namespace": c["namespace"],
                                     "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
                        "spec": copy.deepcopy(job_spec)})
    return out


def istio_objects(spec: dict) -> list[dict]:
    rev = str(spec.get("revision") or "")
    version = str(spec["version"])
    objs = istio.control_plane_objects(rev, version)
    if spec.get("default_tag"):
        objs.append(istio.tag_mwc("default", rev))
    if spec.get("default_tag") or spec.get("default_validator") or not rev:
        objs.append(istio.default_validator(rev))
    return objs


def helm_releases(name: str) -> list[dict]:
    """The scenario's ``helm:`` releases, installed by real Helm once the API serves (kubesim.helm_scenario)."""
    return list(_read(name).get("helm") or [])


def load_scenario(name: str, options=None) -> list[dict]:
    """Objects to create, in order, for scenario ``name``."""
    first, second = load_scenario_phases(name, options)
    return first + second


def load_scenario_phases(name: str, options=None) -> tuple[list[dict], list[dict]]:
    """(objects to create before the controllers start, objects to create once they have settled).  The second
    list is empty unless an operator (``sail``) installs the control plane the workloads need."""
    sc = _read(name)
    base = _read("base")
    objs: list[dict] = []
    if sc.get("crds"):
        objs += crd_objects()
    if sc.get("gateway_api_crds"):
        objs += crd_objects("gateway-api-crds")
    ns_seen = set()

    def add_ns(n, labels=None):
        if n not in ns_seen:
            ns_seen.add(n)
            objs.append(namespace_object(n, labels))

    for n in base.get("namespaces") or []:
        add_ns(n)
    for ns in sc.get("namespaces") or []:
        add_ns(ns["name"], ns.get("labels"))
    gen = sc.get("generate")
    n_ns = int(getattr(options, "namespaces", 10) or 0) if gen else 0
    n_dep = int(getattr(options, "deployments", 5) or 0) if gen else 0
    n_rep = int(getattr(options, "replicas", 2) if getattr(options, "replicas", None) is not None else 2)
    if gen:
        for i in range(n_ns):
            add_ns(gen["namespace_format"].format(i=i + 1), gen.get("namespace_labels"))
    nodes = dict(base.get("nodes") or {})
    nodes.update(sc.get("nodes") or {})
    if sc.get("kubernetes_version"):
        # the API server and every kubelet at that version (Istio's native-sidecar detection reads the kubelets)
        nodes["kubelet_version"] = str(sc["kubernetes_version"])
        if options is not None:
            options.kubernetes_version = str(sc["kubernetes_version"])
    if getattr(options, "nodes", None):
        nodes["count"] = int(options.nodes)
    objs += node_objects(nodes)
    for spec in sc.get("istio") or []:
        objs += istio_objects(spec)
    if sc.get("sail"):
        objs += sail_objects(sc["sail"])
    split = len(objs) if sc.get("sail") else None
    for app in sc.get("apps") or []:
        for obj in app_objects(app["namespace"], app["name"], int(app.get("replicas", 2)),
                               version=str(app.get("version", "v1")), app=app.get("app"),
                               pod_labels=app.get("pod_labels"), kind=app.get("kind", "Deployment")):
            ref = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if not any((o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) == ref for o in objs):
                objs.append(obj)
    for gw in sc.get("gateways") or []:
        objs += gateway_objects(gw["namespace"], gw.get("name", "istio-ingressgateway"), int(gw.get("replicas", 1)))
    objs += batch_objects(sc)
    objs += [copy.deepcopy(o) for o in sc.get("objects") or []]  # e.g. Gateway API Gateways, PodDisruptionBudgets
    if gen:
        for i in range(n_ns):
            ns = gen["namespace_format"].format(i=i + 1)
            for j in range(n_dep):
                objs += app_objects(ns, gen["deployment_format"].format(j=j + 1), n_rep)
    objs = [copy.deepcopy(o) for o in objs]
    if split is None:
        return objs, []
    return objs[:split], objs[split:]
