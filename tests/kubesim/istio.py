"""Istio model for the simulated cluster (test harness, not shipped).

Pure functions, no I/O: they build the objects a real Istio control plane revision consists of (as the
istio-discovery chart and istioctl render them for Istio 1.14/1.15), the revision-tag webhooks istioctl
generates, and the pod mutation Istio's sidecar injector performs.  The admission plugin
(``admission.py``), the scenarios and the stand-in ``bin/istioctl`` all build on these, so what the
scenario starts with and what ``istioctl install`` creates have exactly the same shape.
"""

from __future__ import annotations

import base64
import copy
import json
import re

ISTIO_NAMESPACE = "istio-system"
HUB = "docker.io/istio"
DEFAULT_REVISION = "default"
INJECT_PATH = "/inject"
VALIDATE_PATH = "/validate"

# A fixed, well-formed PEM-looking bundle: webhooks in a real cluster carry istiod's root cert (istiod
# patches it in); nothing here verifies it, but clients that read it must see a plausible value.
_FAKE_CA_PEM = (
    b"-----BEGIN CERTIFICATE-----\n"
    b"MIIC/TCCAeWgAwIBAgIRAKubesimIstioRootCAForTestsOnly0DQYJKoZIhvcNAQELBQAw\n"
    b"GDEWMBQGA1UEChMNY2x1c3Rlci5sb2NhbDAeFw0yMjExMDEwMDAwMDBaFw0zMjEwMjkwMDAw\n"
    b"-----END CERTIFICATE-----\n"
)
CA_BUNDLE = base64.b64encode(_FAKE_CA_PEM).decode()

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

INJECTION_RULES = [{
    "operations": ["CREATE"],
    "apiGroups": [""],
    "apiVersions": ["v1"],
    "resources": ["pods"],
    "scope": "*",
}]

VALIDATION_GROUPS = ["security.istio.io", "networking.istio.io", "telemetry.istio.io",
                     "extensions.istio.io"]


def revision_from_version(version: str) -> str:
    """``1.15.4`` -> ``1-15-4`` (the naming the articles use)."""
    return version.replace(".", "-")


def is_dns1123_label(value: str) -> bool:
    return bool(value) and len(value) <= 63 and bool(DNS1123_LABEL.match(value))


def istiod_name(revision: str) -> str:
    return "istiod" if revision in ("", DEFAULT_REVISION) else f"istiod-{revision}"


def rev_label(revision: str) -> str:
    return revision or DEFAULT_REVISION


def proxy_image(version: str, hub: str = HUB) -> str:
    return f"{hub}/proxyv2:{version}"


def pilot_image(version: str, hub: str = HUB) -> str:
    return f"{hub}/pilot:{version}"


def image_version(image: str) -> str | None:
    """Tag of an image reference (``docker.io/istio/proxyv2:1.14.6`` -> ``1.14.6``)."""
    if not image or image == "auto":
        return None
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return None


# --------------------------------------------------------------------------------------------- webhooks

def _service_ref(revision: str, namespace: str, path: str) -> dict:
    return {"service": {"name": istiod_name(revision), "namespace": namespace, "path": path,
                        "port": 443},
            "caBundle": CA_BUNDLE}


def _injection_webhook(prefix: str, revision: str, namespace: str, ns_selector: dict,
                       obj_selector: dict) -> dict:
    return {
        "name": f"{prefix}sidecar-injector.istio.io",
        "clientConfig": _service_ref(revision, namespace, INJECT_PATH),
        "rules": copy.deepcopy(INJECTION_RULES),
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 10,
        "admissionReviewVersions": ["v1beta1", "v1"],
        "reinvocationPolicy": "Never",
        "namespaceSelector": ns_selector,
        "objectSelector": obj_selector,
    }


def _expr(key, op, values=None):
    e = {"key": key, "operator": op}
    if values is not None:
        e["values"] = list(values)
    return e


def _rev_webhooks(selector_value: str, revision: str, namespace: str) -> list:
    """The ``rev.namespace.`` / ``rev.object.`` pair selecting ``istio.io/rev=<selector_value>``."""
    return [
        _injection_webhook(
            "rev.namespace.", revision, namespace,
            {"matchExpressions": [_expr("istio.io/rev", "In", [selector_value]),
                                  _expr("istio-injection", "DoesNotExist")]},
            {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", ["false"])]}),
        _injection_webhook(
            "rev.object.", revision, namespace,
            {"matchExpressions": [_expr("istio.io/rev", "DoesNotExist"),
                                  _expr("istio-injection", "DoesNotExist")]},
            {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", ["false"]),
                                  _expr("istio.io/rev", "In", [selector_value])]}),
    ]


def _default_webhooks(revision: str, namespace: str) -> list:
    """The legacy/default ``namespace.`` / ``object.`` pair (``istio-injection=enabled``)."""
    return [
        _injection_webhook(
            "namespace.", revision, namespace,
            {"matchExpressions": [_expr("istio-injection", "In", ["enabled"])]},
            {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", ["false"])]}),
        _injection_webhook(
            "object.", revision, namespace,
            {"matchExpressions": [_expr("istio-injection", "DoesNotExist"),
                                  _expr("istio.io/rev", "DoesNotExist")]},
            {"matchExpressions": [_expr("sidecar.istio.io/inject", "In", ["true"]),
                                  _expr("istio.io/rev", "DoesNotExist")]}),
    ]


def injector_mwc(revision: str, namespace: str = ISTIO_NAMESPACE, owner: str = "installed-state") -> dict:
    """``istio-sidecar-injector[-<rev>]`` as the istio-discovery chart renders it."""
    rl = rev_label(revision)
    webhooks = _rev_webhooks(rl, revision, namespace)
    if revision in ("", DEFAULT_REVISION):
        webhooks += _default_webhooks(revision, namespace)
    name = "istio-sidecar-injector" if revision in ("", DEFAULT_REVISION) else f"istio-sidecar-injector-{revision}"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {
            "app": "sidecar-injector",
            "install.operator.istio.io/owning-resource": owner,
            "install.operator.istio.io/owning-resource-namespace": namespace,
            "istio.io/rev": rl,
            "operator.istio.io/component": "Pilot",
            "operator.istio.io/managed": "Reconcile",
            "release": "istio",
        }},
        "webhooks": webhooks,
    }


def tag_mwc(tag: str, revision: str, namespace: str = ISTIO_NAMESPACE) -> dict:
    """``istio-revision-tag-<tag>`` as ``istioctl tag set/generate`` renders it (revision-tags.yaml)."""
    webhooks = _rev_webhooks(tag, revision, namespace)
    if tag == DEFAULT_REVISION:
        webhooks += _default_webhooks(revision, namespace)
    name = f"istio-revision-tag-{tag}" if namespace == ISTIO_NAMESPACE else f"istio-revision-tag-{tag}-{namespace}"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {
            "app": "sidecar-injector",
            "install.operator.istio.io/owning-resource": "unknown",
            "istio.io/rev": rev_label(revision),
            "istio.io/tag": tag,
            "operator.istio.io/component": "Pilot",
            "release": "istio",
        }},
        "webhooks": webhooks,
    }


def _validation_webhook(name: str, revision: str, namespace: str, obj_selector: dict) -> dict:
    return {
        "name": name,
        "clientConfig": _service_ref(revision, namespace, VALIDATE_PATH),
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": list(VALIDATION_GROUPS),
                   "apiVersions": ["*"], "resources": ["*"], "scope": "*"}],
        # istiod's webhook controller flips Ignore -> Fail once its endpoint serves; a running
        # control plane (what the scenarios model) has Fail.
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "sideEffects": "None",
        "timeoutSeconds": 10,
        "admissionReviewVersions": ["v1beta1", "v1"],
        "namespaceSelector": {},
        "objectSelector": obj_selector,
    }


def revision_vwc(revision: str, namespace: str = ISTIO_NAMESPACE, owner: str = "installed-state") -> dict:
    """``istio-validator[-<rev>]-istio-system`` from the chart."""
    rl = rev_label(revision)
    name = ("istio-validator" if revision in ("", DEFAULT_REVISION) else f"istio-validator-{revision}") + f"-{namespace}"
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name, "labels": {
            "app": "istiod",
            "install.operator.istio.io/owning-resource": owner,
            "install.operator.istio.io/owning-resource-namespace": namespace,
            "istio": "istiod",
            "istio.io/rev": rl,
            "operator.istio.io/component": "Pilot",
            "operator.istio.io/managed": "Reconcile",
            "release": "istio",
        }},
        "webhooks": [_validation_webhook("rev.validation.istio.io", revision, namespace,
                                         {"matchExpressions": [_expr("istio.io/rev", "In", [rl])]})],
    }


def default_validator(revision: str, namespace: str = ISTIO_NAMESPACE) -> dict:
    """``istiod-default-validator``, generated by istioctl for the ``default`` tag."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "istiod-default-validator", "labels": {
            "app": "istiod",
            "istio": "istiod",
            "istio.io/rev": rev_label(revision),
            "istio.io/tag": DEFAULT_REVISION,
            "operator.istio.io/component": "Pilot",
        }},
        "webhooks": [_validation_webhook("validation.istio.io", revision, namespace,
                                         {"matchExpressions": [_expr("istio.io/rev", "DoesNotExist")]})],
    }


def webhook_service(webhook: dict) -> tuple[str, str, str, int] | None:
    """(namespace, name, path, port) of a webhook's clientConfig.service, or None for a URL webhook."""
    svc = (webhook.get("clientConfig") or {}).get("service")
    if not svc:
        return None
    return (svc.get("namespace", ""), svc.get("name", ""), svc.get("path", "") or "",
            int(svc.get("port") or 443))


def webhook_url(webhook: dict) -> str:
    """The URL the API server posts to, as it appears in its error messages."""
    ref = webhook_service(webhook)
    timeout = int(webhook.get("timeoutSeconds") or 10)
    if ref is None:
        url = (webhook.get("clientConfig") or {}).get("url", "")
    else:
        ns, name, path, port = ref
        url = f"https://{name}.{ns}.svc:{port}{path}"
    return f"{url}?timeout={timeout}s"


# ---------------------------------------------------------------------------------- control plane objects

def control_plane_objects(revision: str, version: str, namespace: str = ISTIO_NAMESPACE, *,
                          hub: str = HUB, replicas: int = 1, values: dict | None = None,
                          owner: str = "installed-state") -> list[dict]:
    """What ``istioctl install --set revision=<revision>`` (profile minimal's Istiod component) creates.

    Returned in apply order: ServiceAccount, ConfigMaps, Service, Deployment, webhooks.
    """
    values = values or {}
    rl = rev_label(revision)
    name = istiod_name(revision)
    suffix = "" if revision in ("", DEFAULT_REVISION) else f"-{revision}"
    common = {
        "install.operator.istio.io/owning-resource": owner,
        "install.operator.istio.io/owning-resource-namespace": namespace,
        "istio.io/rev": rl,
        "operator.istio.io/component": "Pilot",
        "operator.istio.io/managed": "Reconcile",
        "operator.istio.io/version": version,
        "release": "istio",
    }
    pod_labels = {"app": "istiod", "istio": "pilot", "istio.io/rev": rl,
                  "install.operator.istio.io/owning-resource": owner,
                  "operator.istio.io/component": "Pilot",
                  "sidecar.istio.io/inject": "false"}
    mesh = {
        "defaultConfig": {"discoveryAddress": f"{name}.{namespace}.svc:15012",
                          "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}}},
        "enablePrometheusMerge": True,
        "rootNamespace": namespace,
        "trustDomain": "cluster.local",
    }
    mesh.update((values.get("meshConfig") or {}))
    injector_values = {
        "global": {"hub": hub, "tag": version, "istioNamespace": namespace,
                   "proxy": {"image": "proxyv2"}},
        "revision": revision if revision != DEFAULT_REVISION else "",
        "sidecarInjectorWebhook": {"templates": {}, "defaultTemplates": []},
    }
    env = [
        {"name": "REVISION", "value": rl},
        {"name": "JWT_POLICY", "value": "third-party-jwt"},
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}},
        {"name": "SERVICE_ACCOUNT", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.serviceAccountName"}}},
        {"name": "KUBECONFIG", "value": "/var/run/secrets/remote/config"},
        {"name": "PILOT_TRACE_SAMPLING", "value": "1"},
        {"name": "PILOT_ENABLE_PROTOCOL_SNIFFING_FOR_OUTBOUND", "value": "true"},
        {"name": "PILOT_ENABLE_PROTOCOL_SNIFFING_FOR_INBOUND", "value": "true"},
        {"name": "ISTIOD_ADDR", "value": f"{name}.{namespace}.svc:15012"},
        {"name": "PILOT_ENABLE_ANALYSIS", "value": "false"},
        {"name": "CLUSTER_ID", "value": "Kubernetes"},
    ]
    for k, v in sorted(((values.get("pilot") or {}).get("env") or {}).items()):
        env.append({"name": str(k), "value": str(v)})
    objs = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace, "labels": {"app": "istiod", **common}}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"istio{suffix}", "namespace": namespace,
                      "labels": {"istio.io/rev": rl, **common}},
         "data": {"mesh": _yaml_dump(mesh), "meshNetworks": "networks: {}\n"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"istio-sidecar-injector{suffix}", "namespace": namespace,
                      "labels": {"istio.io/rev": rl, **common}},
         "data": {"config": "defaultTemplates: [sidecar]\npolicy: enabled\nalwaysInjectSelector: []\n"
                            "neverInjectSelector: []\ninjectedAnnotations: {}\ntemplate: '{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}'\n"
                            "templates:\n  sidecar: |\n    # sidecar template\n  gateway: |\n    # gateway template\n",
                  "values": json.dumps(injector_values, sort_keys=True)}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace,
                      "labels": {"app": "istiod", "istio": "pilot", **common}},
         "spec": {"type": "ClusterIP",
                  "selector": {"app": "istiod", "istio.io/rev": rl},
                  "ports": [
                      {"name": "grpc-xds", "port": 15010, "protocol": "TCP", "targetPort": 15010},
                      {"name": "https-dns", "port": 15012, "protocol": "TCP", "targetPort": 15012},
                      {"name": "https-webhook", "port": 443, "protocol": "TCP", "targetPort": 15017},
                      {"name": "http-monitoring", "port": 15014, "protocol": "TCP", "targetPort": 15014},
                  ]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace,
                      "labels": {"app": "istiod", "istio": "pilot", **common}},
         "spec": {
             "replicas": replicas,
             "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": rl}},
             "strategy": {"type": "RollingUpdate",
                          "rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
             "template": {
                 "metadata": {"labels": pod_labels,
                              "annotations": {"prometheus.io/port": "15014", "prometheus.io/scrape": "true",
                                              "sidecar.istio.io/inject": "false"}},
                 "spec": {
                     "serviceAccountName": name,
                     "securityContext": {"fsGroup": 1337},
                     "containers": [{
                         "name": "discovery",
                         "image": pilot_image(version, hub),
                         "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
                                  "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
                         "ports": [{"containerPort": 8080, "protocol": "TCP"},
                                   {"containerPort": 15010, "protocol": "TCP"},
                                   {"containerPort": 15017, "protocol": "TCP"}],
                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                            "initialDelaySeconds": 1, "periodSeconds": 3, "timeoutSeconds": 5},
                         "env": env,
                         "resources": {"requests": {"cpu": "500m", "memory": "2048Mi"}},
                     }],
                 },
             },
         }},
        injector_mwc(revision, namespace, owner),
        revision_vwc(revision, namespace, owner),
    ]
    return objs


def _yaml_dump(data) -> str:
    try:
        import yaml
        return yaml.safe_dump(data, default_flow_style=False, sort_keys=True)
    except ImportError:  # pragma: no cover - PyYAML is in the test venv
        return json.dumps(data, indent=2, sort_keys=True)


# ------------------------------------------------------------------------------------------- injection

def is_injected(pod: dict) -> bool:
    return "sidecar.istio.io/status" in ((pod.get("metadata") or {}).get("annotations") or {})


def proxy_container(pod: dict) -> dict | None:
    """The pod's istio-proxy: a container, or (native sidecar) an init container with restartPolicy Always."""
    spec = pod.get("spec") or {}
    for c in spec.get("containers") or []:
        if c.get("name") == "istio-proxy":
            return c
    for c in spec.get("initContainers") or []:
        if c.get("name") == "istio-proxy" and c.get("restartPolicy") == "Always":
            return c
    return None


def is_native_sidecar(container: dict) -> bool:
    return container.get("restartPolicy") == "Always"


def pod_proxy_version(pod: dict) -> str | None:
    """Version of the pod's istio-proxy (its image tag), classic or native sidecar, if it has one."""
    c = proxy_container(pod)
    return image_version(c.get("image", "")) if c else None


def _version_tuple(version: str | None) -> tuple:
    out = []
    for part in (version or "").split("-")[0].split(".")[:3]:
        out.append(int(part) if part.isdigit() else 0)
    return tuple(out + [0] * (3 - len(out)))


def native_sidecars(istiod_version: str, istiod_env: dict, pod: dict, kubelet_versions: dict) -> bool:
    """Whether istiod injects istio-proxy as a native sidecar (istio/istio pkg/kube/inject webhook.go
    DetectNativeSidecar, pilot/pkg/features ENABLE_NATIVE_SIDECARS).

    From Istio 1.27 ``ENABLE_NATIVE_SIDECARS`` is ``auto`` by default: native when the pod's node -- or, for a
    pod not yet scheduled, every node -- runs a kubelet of Kubernetes 1.33 or later; ``true``/``false`` force
    it.  Before 1.27 it was a boolean, off by default.  The pod annotation ``sidecar.istio.io/nativeSidecar``
    overrides both (inject.go)."""
    ann = ((pod.get("metadata") or {}).get("annotations") or {}).get("sidecar.istio.io/nativeSidecar")
    if ann in ("true", "false"):
        return ann == "true"
    mode = str(istiod_env.get("ENABLE_NATIVE_SIDECARS", "auto" if _version_tuple(istiod_version) >= (1, 27, 0)
                              else "false")).lower()
    if mode == "true":
        return True
    if mode != "auto" or _version_tuple(istiod_version) < (1, 27, 0):
        return False

    def ok(v):
        return _version_tuple(str(v or "").lstrip("v"))[:2] >= (1, 33)

    node = (pod.get("spec") or {}).get("nodeName")
    if node and node in kubelet_versions:
        return ok(kubelet_versions[node])
    return bool(kubelet_versions) and all(ok(v) for v in kubelet_versions.values())


def pod_revision(pod: dict) -> str | None:
    ann = ((pod.get("metadata") or {}).get("annotations") or {}).get("sidecar.istio.io/status")
    if not ann:
        return None
    try:
        return json.loads(ann).get("revision")
    except (ValueError, AttributeError):
        return None


def _deploy_meta(pod: dict) -> tuple[str, str, str]:
    """(apiVersion, kind, name) of the pod's workload, as istio/istio pkg/kube/inject GetDeployMetaFromPod
    derives them: a ReplicaSet with ``pod-template-hash`` is its Deployment, one with
    ``rollouts-pod-template-hash`` an Argo ``Rollout`` (apiVersion ``v1alpha1``), a ReplicationController
    with label ``deploymentconfig`` an OpenShift ``DeploymentConfig`` (the RC's apiVersion ``v1``)."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller"):
            name, kind, api_version = ref.get("name", ""), ref.get("kind", ""), ref.get("apiVersion", "")
            h = labels.get("pod-template-hash")
            rh = labels.get("rollouts-pod-template-hash")
            if kind == "ReplicaSet" and h and name.endswith(h):
                return api_version, "Deployment", name[: -len(h) - 1]
            if kind == "ReplicaSet" and rh and name.endswith(rh):
                return "v1alpha1", "Rollout", name[: -len(rh) - 1]
            if kind == "ReplicationController" and labels.get("deploymentconfig"):
                return api_version, "DeploymentConfig", labels["deploymentconfig"]
            return api_version, kind, name
    return "v1", "Pod", meta.get("name") or (meta.get("generateName") or "").rstrip("-")


def _workload_name(pod: dict) -> str:
    return _deploy_meta(pod)[2]


def _proxy_env(pod: dict, namespace: str, istiod: str, istio_ns: str, revision: str) -> list:
    app_containers = ",".join(c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []
                              if c.get("name") != "istio-proxy")
    ports = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            ports.append({k: p[k] for k in ("name", "containerPort", "protocol") if k in p})
    owner_api_version, kind, workload = _deploy_meta(pod)
    fr = lambda path: {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}  # noqa: E731
    return [
        {"name": "JWT_POLICY", "value": "third-party-jwt"},
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "CA_ADDR", "value": f"{istiod}.{istio_ns}.svc:15012"},
        {"name": "POD_NAME", **fr("metadata.name")},
        {"name": "POD_NAMESPACE", **fr("metadata.namespace")},
        {"name": "INSTANCE_IP", **fr("status.podIP")},
        {"name": "SERVICE_ACCOUNT", **fr("spec.serviceAccountName")},
        {"name": "HOST_IP", **fr("status.hostIP")},
        {"name": "PROXY_CONFIG", "value": json.dumps({"discoveryAddress": f"{istiod}.{istio_ns}.svc:15012"})},
        {"name": "ISTIO_META_POD_PORTS", "value": json.dumps(ports)},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": app_containers},
        {"name": "ISTIO_META_CLUSTER_ID", "value": "Kubernetes"},
        {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
        {"name": "ISTIO_META_OWNER",
         "value": f"kubernetes://apis/{owner_api_version}/namespaces/{namespace}/{kind.lower()}s/{workload}"},
        {"name": "ISTIO_META_MESH_ID", "value": "cluster.local"},
        {"name": "TRUST_DOMAIN", "value": "cluster.local"},
    ]


_VOLUMES = [
    {"name": "workload-socket", "emptyDir": {}},
    {"name": "credential-socket", "emptyDir": {}},
    {"name": "workload-certs", "emptyDir": {}},
    {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
    {"name": "istio-data", "emptyDir": {}},
    {"name": "istio-podinfo", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
    {"name": "istio-token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
    {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}},
]

_MOUNTS = [
    {"name": "workload-socket", "mountPath": "/var/run/secrets/workload-spiffe-uds"},
    {"name": "credential-socket", "mountPath": "/var/run/secrets/credential-uds"},
    {"name": "workload-certs", "mountPath": "/var/run/secrets/workload-spiffe-credentials"},
    {"name": "istiod-ca-cert", "mountPath": "/var/run/secrets/istio"},
    {"name": "istio-data", "mountPath": "/var/lib/istio/data"},
    {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"},
    {"name": "istio-token", "mountPath": "/var/run/secrets/tokens"},
    {"name": "istio-podinfo", "mountPath": "/etc/istio/pod"},
]


_MOUNTS_JSON = json.dumps(_MOUNTS)
_VOLUMES_JSON = json.dumps(_VOLUMES)


def inject_pod(pod: dict, *, version: str, revision: str, istiod: str,
               istio_namespace: str = ISTIO_NAMESPACE, hub: str = HUB, native: bool = False) -> dict:
    """Return ``pod`` mutated the way istiod's injector (sidecar or gateway template) mutates it.

    ``revision`` is the injecting istiod's revision (``default`` for a revision-less istiod), ``istiod``
    the name of its Service.  ``native`` (see :func:`native_sidecars`): the sidecar template puts istio-proxy
    in ``initContainers`` with ``restartPolicy: Always`` and a startup probe, ordered istio-init, istio-proxy,
    then the pod's own init containers (inject.go reorderPod); the gateway template is never native.  A pod
    that already carries ``sidecar.istio.io/status`` is returned unchanged (Istio's double-injection guard).
    """
    if is_injected(pod):
        return pod
    pod = json.loads(json.dumps(pod))
    meta = pod.setdefault("metadata", {})
    spec = pod.setdefault("spec", {})
    labels = meta.setdefault("labels", {})
    ann = meta.get("annotations") or {}
    meta["annotations"] = ann
    namespace = meta.get("namespace", "default")
    image = proxy_image(version, hub)
    templates = [t.strip() for t in (ann.get("inject.istio.io/templates") or "sidecar").split(",") if t.strip()]
    gateway = "gateway" in templates
    containers = spec.setdefault("containers", [])
    env = _proxy_env(pod, namespace, istiod, istio_namespace, revision)
    proxy = next((c for c in containers if c.get("name") == "istio-proxy"), None)

    if gateway:
        base = proxy if proxy is not None else {"name": "istio-proxy"}
        base["image"] = image
        base.setdefault("args", ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                                 "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error",
                                 "--log_output_level=default:info"])
        existing_env = {e.get("name") for e in base.get("env") or []}
        base["env"] = (base.get("env") or []) + [e for e in env if e["name"] not in existing_env]
        base.setdefault("ports", [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}])
        base.setdefault("readinessProbe", {"httpGet": {"path": "/healthz/ready", "port": 15021},
                                           "failureThreshold": 30, "periodSeconds": 2, "timeoutSeconds": 3})
        base["volumeMounts"] = (base.get("volumeMounts") or []) + json.loads(_MOUNTS_JSON)
        if proxy is None:
            containers.append(base)
        init_names = []
    else:
        sidecar = {
            "name": "istio-proxy",
            "image": image,
            "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                     "--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error",
                     "--log_output_level=default:info", "--concurrency", "2"],
            "env": env,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021},
                               "failureThreshold": 30, "initialDelaySeconds": 1, "periodSeconds": 2,
                               "timeoutSeconds": 3},
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                          "requests": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "privileged": False, "readOnlyRootFilesystem": True,
                                "runAsGroup": 1337, "runAsNonRoot": True, "runAsUser": 1337},
            "volumeMounts": json.loads(_MOUNTS_JSON),
        }
        if proxy is not None:
            containers.remove(proxy)
        if native:
            sidecar["restartPolicy"] = "Always"
            sidecar["startupProbe"] = {"httpGet": {"path": "/healthz/ready", "port": 15021},
                                       "initialDelaySeconds": 0, "periodSeconds": 1, "timeoutSeconds": 3,
                                       "failureThreshold": 600}
        else:
            containers.append(sidecar)
        init = {
            "name": "istio-init",
            "image": image,
            "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT",
                     "-i", "*", "-x", "", "-b", "*", "-d", "15090,15021,15020"],
            "imagePullPolicy": "IfNotPresent",
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                          "requests": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False,
                                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                                "privileged": False, "readOnlyRootFilesystem": False,
                                "runAsGroup": 0, "runAsNonRoot": False, "runAsUser": 0},
        }
        own_inits = [c for c in spec.get("initContainers") or [] if c.get("name") not in ("istio-init", "istio-proxy")]
        if native:
            spec["initContainers"] = [init, sidecar] + own_inits
            init_names = ["istio-init", "istio-proxy"]
        else:
            spec["initContainers"] = [init] + own_inits
            init_names = ["istio-init"]
        first_app = next((c.get("name") for c in containers if c.get("name") != "istio-proxy"), None)
        if first_app:
            ann.setdefault("kubectl.kubernetes.io/default-container", first_app)
            ann.setdefault("kubectl.kubernetes.io/default-logs-container", first_app)

    volumes = spec.setdefault("volumes", [])
    have = {v.get("name") for v in volumes}
    volumes.extend(v for v in json.loads(_VOLUMES_JSON) if v["name"] not in have)
    status = {
        "initContainers": init_names or None,
        "containers": None if native and not gateway else ["istio-proxy"],
        "volumes": [v["name"] for v in _VOLUMES],
        "imagePullSecrets": None,
        "revision": revision,
    }
    ann["sidecar.istio.io/status"] = json.dumps(status, separators=(",", ":"))
    ann["istio.io/rev"] = revision  # the injection templates annotate the injecting revision
    ann.setdefault("prometheus.io/path", "/stats/prometheus")
    ann.setdefault("prometheus.io/port", "15020")
    ann.setdefault("prometheus.io/scrape", "true")
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name",
                      labels.get("app.kubernetes.io/name") or labels.get("app") or _workload_name(pod))
    labels.setdefault("service.istio.io/canonical-revision",
                      labels.get("app.kubernetes.io/version") or labels.get("version") or "latest")
    labels["istio.io/rev"] = revision
    return pod


# ------------------------------------------------------------------------------------ istiod validation

def validate_istio_config(obj: dict) -> str | None:
    """The subset of istiod's config validation the simulator applies; returns an error or None."""
    kind = obj.get("kind", "")
    spec = obj.get("spec")
    if spec is None or not isinstance(spec, dict):
        return None if kind in ("Sidecar", "PeerAuthentication", "AuthorizationPolicy") else None
    if kind == "VirtualService":
        hosts = spec.get("hosts") or []
        if not hosts:
            return "virtual service must have at least one host"
    if kind == "DestinationRule":
        if not spec.get("host"):
            return "host must be provided"
    if kind == "Gateway":
        if not spec.get("servers"):
            return "gateway must have at least one server"
    if kind == "ServiceEntry":
        if not spec.get("hosts"):
            return "service entry must have at least one host"
    if kind == "PeerAuthentication":
        mode = ((spec.get("mtls") or {}).get("mode"))
        if mode and mode not in ("UNSET", "DISABLE", "PERMISSIVE", "STRICT"):
            return f"unknown mTLS mode {mode!r}"
    return None
