"""The Sail operator (``sailoperator.io/v1``) for the simulated cluster (test harness).

Feature ``sail-operator`` (``--feature sail-operator`` or a scenario's ``features``): the CRDs ``istios``,
``istiorevisions`` (``istiorev``), ``istiorevisiontags`` (``istiorevtag``), ``istiocnis``, ``ztunnels`` -- all
cluster-scoped, category ``istio-io``, printer columns and defaults as istio-ecosystem/sail-operator
``api/v1/*_types.go`` declare them (schemas written here, smaller than the real ones; the CEL rules that
matter are enforced: immutable ``spec.namespace``, ``default`` as the only IstioCNI/ZTunnel name, the version
enum) -- the operator Deployment ``sail-operator`` in namespace ``sail-operator``, and its controllers:

* ``Istio`` (``controllers/istio``): the active revision is named after the Istio (``InPlace``) or
  ``<istio>-<spec.version with dots as dashes>`` (``RevisionBased``: ``default`` at ``v1.29.6`` ->
  ``default-v1-29-6``); it is created or updated (spec.version resolved, ``-latest`` aliases to the newest
  patch; spec.values = the user's values, the ``default`` profile, the ``openshift`` one on the ``openshift``
  feature, images, ``revision``, ``global.istioNamespace`` -- ``pkg/revision/values.go``,
  ``pkg/istiovalues``) and owned by the Istio.  Inactive owned revisions are deleted once their ``InUse``
  condition has been ``False`` for ``updateStrategy.inactiveRevisionDeletionGracePeriodSeconds`` (default 30;
  ``pkg/revision/prune.go``; never while InUse is True or Unknown).  Status: ``activeRevisionName``,
  Reconciled/Ready/DependenciesHealthy copied from the active revision, ``state``, ``revisions``
  {total, ready, inUse}.
* ``IstioRevision`` (``controllers/istiorevision``, ``pkg/reconcile/istiod.go``): installs Helm release
  ``<revision>-istiod`` in ``spec.namespace`` -- the objects Istio's istiod chart renders for
  ``revision=<name>`` (ServiceAccount/Deployment/Service/PodDisruptionBudget ``istiod-<rev>``, ConfigMaps
  ``istio-<rev>``, ``istio-sidecar-injector-<rev>``, ``values-<rev>``, MutatingWebhookConfiguration
  ``istio-sidecar-injector-<rev>``, ValidatingWebhookConfiguration ``istio-validator-<rev>-<ns>``,
  ClusterRoles/Bindings ``istiod-clusterrole-<rev>-<ns>``, ``istiod-gateway-controller-<rev>-<ns>``,
  ``istio-reader-clusterrole-<rev>-<ns>``, Role/RoleBinding ``istiod-<rev>``; names and labels as in
  ``resources/v1.29.6/charts/istiod/templates``), each with Helm's ownership metadata, Sail's
  ``managed-by: sail-operator`` label and a controller ownerReference to the IstioRevision
  (``pkg/helm/postrenderer.go``), and Helm's release Secret ``sh.helm.release.v1.<release>.v<N>``.  A
  reconcile re-applies what the chart renders, so edits to these objects (or deleting them) are reverted,
  except the caBundle and validator failurePolicy istiod manages.  Finalizer ``sailoperator.io/sail-operator``:
  deleting the revision uninstalls the release.  Conditions: ``Reconciled``; ``Ready`` (istiod Deployment
  ready: IstiodNotReady with "istiod Deployment not found" / "not all istiod pods are ready");
  ``DependenciesHealthy`` (an IstioCNI named ``default`` must be Healthy when CNI is on -- always on the
  OpenShift platform); ``InUse`` (ReferencedByWorkloads / NotReferencedByAnything): a tag whose
  ``status.istioRevision`` names it, a namespace whose ``istio-injection=enabled`` (means ``default``) or
  ``istio.io/rev`` names it, a pod in a namespace without those labels whose ``istio.io/rev`` label names it,
  or any pod its injection annotated ``istio.io/rev=<rev>`` that is not ``Succeeded`` -- a ``Failed`` pod keeps
  it in use (sail-operator issues #839, #842, #2100).  Pod and namespace events that only change status do
  not trigger the check (``watches.IgnoreStatusChanges``), so a pod turning Succeeded is noticed on the next
  event.
* ``IstioRevisionTag`` (``controllers/istiorevisiontag``): ``spec.targetRef`` an ``Istio`` (follows its
  ``status.activeRevisionName``) or an ``IstioRevision`` (pinned); installs release ``<tag>-revisiontags``
  in the revision's namespace -- MutatingWebhookConfiguration ``istio-revision-tag-<tag>`` (``-<ns>`` outside
  istio-system; rev.namespace./rev.object. webhooks, plus namespace./object. for ``default``; calling
  ``istiod-<rev>``) and Service ``istiod-revision-tag-<tag>`` selecting the revision's istiod pods (the
  ``revisiontags`` chart) -- and for tag ``default`` release ``default-base`` in the operator namespace
  (ValidatingWebhookConfiguration ``istiod-default-validator``, ServiceAccount
  ``istio-reader-service-account``).  Status: ``istioRevision``, ``istiodNamespace``, conditions Reconciled
  (RefNotFound, NameAlreadyExists) and InUse.
* ``IstioCNI`` / ``ZTunnel`` (``controllers/istiocni``, ``controllers/ztunnel``): releases ``istio-cni`` /
  ``ztunnel`` with the DaemonSets ``istio-cni-node`` / ``ztunnel``, updated in place when spec.version
  changes; Ready when the DaemonSet's pods are (DaemonSetNotReady otherwise).

Not modelled: remote/external control planes, multi-cluster, Helm values beyond images/revision/namespace,
the operator's metrics.  ``updateStrategy.updateWorkloads`` is accepted and, as in Sail, does nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import time

import yaml

from . import strategy
from .controllers import _clone, now_iso, parse_iso, terminating
from .errors import ApiError

GROUP = "sailoperator.io"
ISTIO = "istios.sailoperator.io"
REV = "istiorevisions.sailoperator.io"
TAG = "istiorevisiontags.sailoperator.io"
CNI = "istiocnis.sailoperator.io"
ZTUNNEL = "ztunnels.sailoperator.io"
OPERATOR_NS = "sail-operator"
OPERATOR_IMAGE = "quay.io/sail-dev/sail-operator:1.30.0"
FINALIZER = "sailoperator.io/sail-operator"
MANAGED_BY = "managed-by"
HUB = "registry.istio.io/release"
DEFAULT_GRACE = 30
MWC = "mutatingwebhookconfigurations.admissionregistration.k8s.io"
VWC = "validatingwebhookconfigurations.admissionregistration.k8s.io"
DEPLOY = "deployments.apps"
DS = "daemonsets.apps"

# spec.version enum of the simulated operator (a subset of sail-operator's, newest first)
PATCHES = {"1.31": [0], "1.30": [3, 2, 1, 0], "1.29": [6, 5, 4, 3, 2, 1, 0], "1.28": [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
           "1.27": [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]}
VERSIONS = []
for _minor, _ps in PATCHES.items():
    if _minor != "1.31":
        VERSIONS.append(f"v{_minor}-latest")
        VERSIONS += [f"v{_minor}.{p}" for p in _ps]
DEFAULT_VERSION = "v1.30.3"


def resolve_version(v: str) -> str:
    """istioversion.Resolve: ``v1.29-latest`` -> ``v1.29.6``; exact versions stay."""
    m = re.match(r"^v(\d+\.\d+)-latest$", v or "")
    if m and m.group(1) in PATCHES:
        return f"v{m.group(1)}.{PATCHES[m.group(1)][0]}"
    return v


def active_revision_name(istio: dict) -> str:
    spec = istio.get("spec") or {}
    if ((spec.get("updateStrategy") or {}).get("type")) == "RevisionBased":
        return f"{istio['metadata']['name']}-{spec.get('version', '').replace('.', '-')}"
    return istio["metadata"]["name"]


# ------------------------------------------------------------------------------------------ CRDs

def _col(name, path, desc, typ="string"):
    return {"name": name, "type": typ, "jsonPath": path, "description": desc}


AGE = _col("Age", ".metadata.creationTimestamp", "The age of the object", "date")
READY = '.status.conditions[?(@.type=="Ready")].status'
IN_USE = '.status.conditions[?(@.type=="InUse")].status'
_PRESERVE = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_STATUS = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_VERSION = {"type": "string", "enum": VERSIONS + ["master"]}
_TARGET = {"type": "object", "required": ["kind", "name"], "properties": {
    "kind": {"type": "string", "enum": ["Istio", "IstioRevision"]},
    "name": {"type": "string", "minLength": 1, "maxLength": 253}}}


def _crd(kind, plural, columns, spec, short=None, default=None):
    schema = {"type": "object", "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                               "metadata": {"type": "object"}, "spec": spec, "status": _STATUS}}
    if default is not None:
        schema["properties"]["spec"] = dict(spec, default=default)
    names = {"kind": kind, "listKind": kind + "List", "plural": plural, "singular": kind.lower(),
             "categories": ["istio-io"]}
    if short:
        names["shortNames"] = [short]
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{GROUP}", "annotations": {
                "controller-gen.kubebuilder.io/version": "v0.19.0"}},
            "spec": {"group": GROUP, "scope": "Cluster", "names": names,
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": schema}, "subresources": {"status": {}},
                                   "additionalPrinterColumns": columns}]}}


def crd_objects() -> list:
    istio_spec = {"type": "object", "required": ["namespace", "version"], "properties": {
        "version": dict(_VERSION, default=DEFAULT_VERSION), "profile": {"type": "string"},
        "namespace": {"type": "string", "default": "istio-system"},
        "updateStrategy": {"type": "object", "default": {"type": "InPlace"}, "properties": {
            "type": {"type": "string", "enum": ["InPlace", "RevisionBased"], "default": "InPlace"},
            "inactiveRevisionDeletionGracePeriodSeconds": {"type": "integer", "format": "int64", "minimum": 0},
            "updateWorkloads": {"type": "boolean"}}},
        "values": _PRESERVE}}
    return [
        _crd("Istio", "istios", [
            _col("Namespace", ".spec.namespace", "The namespace for the control plane components."),
            _col("Profile", ".spec.profile", "The selected profile (collection of value presets)."),
            _col("Revisions", ".status.revisions.total", "Total number of IstioRevision objects currently "
                                                         "associated with this object."),
            _col("Ready", ".status.revisions.ready", "Number of revisions that are ready."),
            _col("In use", ".status.revisions.inUse", "Number of revisions that are currently being used by "
                                                      "workloads."),
            _col("Active Revision", ".status.activeRevisionName", "The name of the currently active revision."),
            _col("Status", ".status.state", "The current state of the active revision."),
            _col("Version", ".spec.version", "The version of the control plane installation."), AGE],
            istio_spec, default={"version": DEFAULT_VERSION, "namespace": "istio-system",
                                 "updateStrategy": {"type": "InPlace"}}),
        _crd("IstioRevision", "istiorevisions", [
            _col("Namespace", ".spec.namespace", "The namespace for the control plane components."),
            _col("Profile", ".spec.values.profile", "The selected profile (collection of value presets)."),
            _col("Ready", READY, "Whether the control plane installation is ready to handle requests."),
            _col("Status", ".status.state", "The current state of this object."),
            _col("In use", IN_USE, "Whether the revision is being used by workloads."),
            _col("Version", ".spec.version", "The version of the control plane installation."), AGE],
            {"type": "object", "required": ["namespace", "version"], "properties": {
                "version": _VERSION, "namespace": {"type": "string"}, "values": _PRESERVE}}, short="istiorev"),
        _crd("IstioRevisionTag", "istiorevisiontags", [
            _col("Status", ".status.state", "The current state of this object."),
            _col("In use", IN_USE, "Whether the tag is being used by workloads."),
            _col("Revision", ".status.istioRevision", "The IstioRevision this object is referencing."), AGE],
            {"type": "object", "required": ["targetRef"], "properties": {"targetRef": _TARGET}},
            short="istiorevtag"),
        _crd("IstioCNI", "istiocnis", [
            _col("Namespace", ".spec.namespace", "The namespace of the istio-cni-node DaemonSet."),
            _col("Profile", ".spec.profile", "The selected profile (collection of value presets)."),
            _col("Ready", READY, "Whether the Istio CNI installation is ready to handle requests."),
            _col("Status", ".status.state", "The current state of this object."),
            _col("Version", ".spec.version", "The version of the Istio CNI installation."), AGE],
            {"type": "object", "required": ["namespace", "version"], "properties": {
                "version": dict(_VERSION, default=DEFAULT_VERSION), "profile": {"type": "string"},
                "namespace": {"type": "string", "default": "istio-cni"}, "values": _PRESERVE}},
            default={"version": DEFAULT_VERSION, "namespace": "istio-cni"}),
        _crd("ZTunnel", "ztunnels", [
            _col("Namespace", ".spec.namespace", "The namespace for the ztunnel component."),
            _col("Ready", READY, "Whether the Istio ztunnel installation is ready to handle requests."),
            _col("Status", ".status.state", "The current state of this object."),
            _col("Version", ".spec.version", "The version of the Istio ztunnel installation."),
            _col("Revision", ".status.istioRevision", "The referenced IstioRevision."), AGE],
            {"type": "object", "required": ["namespace", "version"], "properties": {
                "version": dict(_VERSION, default=DEFAULT_VERSION),
                "namespace": {"type": "string", "default": "ztunnel"}, "values": _PRESERVE,
                "targetRef": _TARGET}},
            default={"version": DEFAULT_VERSION, "namespace": "ztunnel"}),
    ]


def operator_objects() -> list:
    labels = {"app.kubernetes.io/name": "sail-operator", "app.kubernetes.io/part-of": "sail-operator",
              "control-plane": "sail-operator"}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NS}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": "sail-operator", "namespace": OPERATOR_NS, "labels": dict(labels)}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "sail-operator", "namespace": OPERATOR_NS, "labels": dict(labels)},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"control-plane": "sail-operator"}},
                  "template": {"metadata": {"labels": dict(labels),
                                            "annotations": {"sidecar.istio.io/inject": "false"}},
                               "spec": {"serviceAccountName": "sail-operator",
                                        "containers": [{"name": "sail-operator", "image": OPERATOR_IMAGE,
                                                        "args": ["--health-probe-bind-address=:8081",
                                                                 "--metrics-bind-address=:8443",
                                                                 "--leader-elect"]}]}}}},
    ]


# ------------------------------------------------------------------------------------------ API hooks

_CONFIG = {"platform": "kubernetes"}


def _spec_defaults(defaults: dict):
    def fn(obj):
        spec = obj.get("spec")
        if spec is None:
            spec = obj["spec"] = {}
        if not isinstance(spec, dict):
            return
        for k, v in defaults.items():
            if spec.get(k) is None:
                spec[k] = _clone(v)
        us = spec.get("updateStrategy")
        if isinstance(us, dict) and "updateStrategy" in defaults:
            us.setdefault("type", "InPlace")
    return fn


def _version_causes(obj) -> list:
    v = (obj.get("spec") or {}).get("version")
    if v not in VERSIONS and v != "master":
        return [("spec.version", "NotSupported", v, "supported values: " + ", ".join(f'"{x}"' for x in VERSIONS))]
    return []


def _immutable_namespace(obj, old) -> list:
    if old is not None and (obj.get("spec") or {}).get("namespace") != (old.get("spec") or {}).get("namespace"):
        return [("spec.namespace", "Invalid", "string", "Value is immutable")]
    return []


def _validate_istio(obj, old):
    causes = _version_causes(obj) + _immutable_namespace(obj, old)
    us = (obj.get("spec") or {}).get("updateStrategy") or {}
    if us.get("type") not in (None, "InPlace", "RevisionBased"):
        causes.append(("spec.updateStrategy.type", "NotSupported", us.get("type"),
                       'supported values: "InPlace", "RevisionBased"'))
    grace = us.get("inactiveRevisionDeletionGracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or grace < 0):
        causes.append(("spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds", "Invalid", grace,
                       "spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds in body should be greater "
                       "than or equal to 0"))
    return causes


def _validate_singleton(kind):
    def fn(obj, old):
        causes = _version_causes(obj) + _immutable_namespace(obj, old)
        if obj["metadata"].get("name") != "default":
            causes.append(("<nil>", "Invalid", "object", f"{kind} name must be 'default'"))
        return causes
    return fn


def _validate_rev(obj, old):
    causes = _version_causes(obj) + _immutable_namespace(obj, old)
    name = obj["metadata"].get("name")
    rev = ((obj.get("spec") or {}).get("values") or {}).get("revision")
    if (name == "default" and rev) or (name != "default" and rev != name):
        causes.append(("<nil>", "Invalid", "object", "spec.values.revision must match metadata.name or be empty "
                                                     "when the name is 'default'"))
    return causes


def _validate_tag(obj, old):
    ref = (obj.get("spec") or {}).get("targetRef")
    if not isinstance(ref, dict):
        return [("spec.targetRef", "Required", None, "")]
    causes = []
    if ref.get("kind") not in ("Istio", "IstioRevision"):
        causes.append(("spec.targetRef.kind", "NotSupported", ref.get("kind"), 'supported values: "Istio", '
                                                                              '"IstioRevision"'))
    if not ref.get("name"):
        causes.append(("spec.targetRef.name", "Invalid", "", "spec.targetRef.name in body should be at least 1 "
                                                             "chars long"))
    return causes


# ------------------------------------------------------------------------------------------ values

def compute_values(user_values: dict | None, namespace: str, version: str, revision_name: str) -> dict:
    """revision.ComputeValues: images for the version, the default (+ openshift) profile, overrides."""
    v = _clone(user_values or {})
    bare = version.lstrip("v")
    g = v.setdefault("global", {})
    if not (g.get("hub") or g.get("tag")):
        v.setdefault("pilot", {}).setdefault("image", f"{HUB}/pilot:{bare}")
        g.setdefault("proxy", {}).setdefault("image", f"{HUB}/proxyv2:{bare}")
        g.setdefault("proxy_init", {}).setdefault("image", f"{HUB}/proxyv2:{bare}")
    g.setdefault("configValidation", True)
    v.setdefault("ztunnel", {}).setdefault("resourceName", "ztunnel")
    if _CONFIG["platform"] == "openshift":
        g.setdefault("platform", "openshift")
    v["revision"] = "" if revision_name == "default" else revision_name
    g["istioNamespace"] = namespace
    v.pop("defaultRevision", None)
    return v


def _images(values: dict, version: str) -> tuple[str, str]:
    bare = version.lstrip("v")
    g = values.get("global") or {}
    hub, tag = g.get("hub"), g.get("tag") or bare
    pilot = (values.get("pilot") or {}).get("image") or f"{hub or HUB}/pilot:{tag}"
    if "/" not in pilot:
        pilot = f"{hub or HUB}/{pilot}:{tag}"
    proxy = ((g.get("proxy") or {}).get("image")) or f"{hub or HUB}/proxyv2:{tag}"
    return pilot, proxy


def cni_enabled(values: dict) -> bool:
    """revision.DependsOnIstioCNI: on OpenShift unless explicitly disabled, else when enabled."""
    cni = ((values.get("pilot") or {}).get("cni") or {}).get("enabled")
    if ((values.get("global") or {}).get("platform")) == "openshift":
        return cni is not False
    return cni is True


# ------------------------------------------------------------------------------------------ charts

def _istio_labels(release: str, chart: str, version: str) -> dict:
    bare = version.lstrip("v")
    return {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": release,
            "app.kubernetes.io/part-of": "istio", "app.kubernetes.io/version": bare,
            "helm.sh/chart": f"{chart}-{bare}"}


def _webhook(prefix, service, namespace, path, ns_sel, obj_sel):
    return {"name": f"{prefix}sidecar-injector.istio.io",
            "clientConfig": {"service": {"name": service, "namespace": namespace, "path": path, "port": 443}},
            "sideEffects": "None",
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "failurePolicy": "Fail", "reinvocationPolicy": "Never", "admissionReviewVersions": ["v1"],
            "namespaceSelector": ns_sel, "objectSelector": obj_sel}


def _expr(key, op, values=None):
    e = {"key": key, "operator": op}
    if values is not None:
        e["values"] = list(values)
    return e


def injection_webhooks(selector_value: str, service: str, namespace: str, default: bool) -> list:
    """The rev.namespace./rev.object. pair, plus namespace./object. when ``default`` (mutatingwebhook.yaml,
    revision-tags-mwc.yaml)."""
    out = [
        _webhook("rev.namespace.", service, namespace, "/inject",
                 {"matchExpressions": [_expr("istio.io/rev", "In", [selector_value]),
                                       _expr("istio-injection", "DoesNotExist")]},
                 {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", ["false"])]}),
        _webhook("rev.object.", service, namespace, "/inject",
                 {"matchExpressions": [_expr("istio.io/rev", "DoesNotExist"),
                                       _expr("istio-injection", "DoesNotExist")]},
                 {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", ["false"]),
                                       _expr("istio.io/rev", "In", [selector_value])]}),
    ]
    if default:
        out += [
            _webhook("namespace.", service, namespace, "/inject",
                     {"matchExpressions": [_expr("istio-injection", "In", ["enabled"])]},
                     {"matchExpressions": [_expr("sidecar.istio.io/inject", "NotIn", ["false"])]}),
            _webhook("object.", service, namespace, "/inject",
                     {"matchExpressions": [_expr("istio-injection", "DoesNotExist"),
                                           _expr("istio.io/rev", "DoesNotExist")]},
                     {"matchExpressions": [_expr("sidecar.istio.io/inject", "In", ["true"]),
                                           _expr("istio.io/rev", "DoesNotExist")]}),
        ]
    return out


def _validator(name, service, namespace, selector):
    return {"name": name,
            "clientConfig": {"service": {"name": service, "namespace": namespace, "path": "/validate",
                                         "port": 443}},
            "rules": [{"operations": ["CREATE", "UPDATE"],
                       "apiGroups": ["security.istio.io", "networking.istio.io", "telemetry.istio.io",
                                     "extensions.istio.io"], "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": "Ignore",  # istiod flips it to Fail once it serves (not on Helm upgrades)
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "objectSelector": selector}


_ISTIOD_RULES = [
    {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["mutatingwebhookconfigurations",
                                                                 "validatingwebhookconfigurations"],
     "verbs": ["get", "list", "watch", "update", "patch"]},
    {"apiGroups": ["networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"],
     "resources": ["*"], "verbs": ["get", "watch", "list"]},
    {"apiGroups": [""], "resources": ["pods", "nodes", "services", "namespaces", "endpoints"],
     "verbs": ["get", "list", "watch"]},
]


def istiod_objects(rev_name: str, version: str, namespace: str, values: dict) -> list:
    """What Istio's istiod chart renders for ``revision=<rev_name>`` (release ``<rev>-istiod``)."""
    revision = values.get("revision") or ""
    rl = revision or "default"
    sfx = f"-{revision}" if revision else ""
    release = f"{rev_name}-istiod"
    il = _istio_labels(release, "istiod", version)
    pilot_image, _proxy = _images(values, version)
    common = {"app": "istiod", "istio.io/rev": rl, "operator.istio.io/component": "Pilot", "istio": "pilot",
              "release": release, "app.kubernetes.io/name": "istiod", **il}
    name = f"istiod{sfx}"
    sel = {"app": "istiod", "istio.io/rev": rl} if revision else {"istio": "pilot"}
    mesh = {"defaultConfig": {"discoveryAddress": f"{name}.{namespace}.svc:15012"}, "enablePrometheusMerge": True,
            "rootNamespace": namespace, "trustDomain": "cluster.local"}
    env = [{"name": "REVISION", "value": rl}, {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
           {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                "fieldPath": "metadata.namespace"}}},
           {"name": "ISTIOD_ADDR", "value": f"{name}.{namespace}.svc:15012"},
           {"name": "CLUSTER_ID", "value": "Kubernetes"}, {"name": "PLATFORM",
                                                            "value": (values.get("global") or {}).get("platform", "")}]
    cr = f"{sfx}-{namespace}"
    objs = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": namespace, "labels": {
             "app": "istiod", "release": release, "app.kubernetes.io/name": "istiod", **il}}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"istio{sfx}", "namespace": namespace, "labels": {
             "istio.io/rev": rl, "istio.io/config": "true", "operator.istio.io/component": "Pilot",
             "release": release, "app.kubernetes.io/name": "istiod", **il}},
         "data": {"mesh": yaml.safe_dump(mesh, sort_keys=True), "meshNetworks": "networks: {}"}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"istio-sidecar-injector{sfx}", "namespace": namespace, "labels": {
             "istio.io/rev": rl, "operator.istio.io/component": "Pilot", "release": release,
             "app.kubernetes.io/name": "istiod", **il}},
         "data": {"config": "defaultTemplates: [sidecar]\npolicy: enabled\n",
                  "values": json.dumps(values, sort_keys=True)}},
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"values{sfx}", "namespace": namespace, "labels": {
             "istio.io/rev": rl, "operator.istio.io/component": "Pilot", "release": release,
             "app.kubernetes.io/name": "istiod", **il}},
         "data": {"original-values": json.dumps(values, sort_keys=True),
                  "merged-values": json.dumps(values, sort_keys=True)}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": name, "namespace": namespace, "labels": common},
         "spec": {"ports": [{"port": 15010, "name": "grpc-xds", "protocol": "TCP"},
                            {"port": 15012, "name": "https-dns", "protocol": "TCP"},
                            {"port": 443, "name": "https-webhook", "targetPort": 15017, "protocol": "TCP"},
                            {"port": 15014, "name": "http-monitoring", "protocol": "TCP"}],
                  "selector": dict(sel)}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": name, "namespace": namespace, "labels": common},
         "spec": {"strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": "25%"}},
                  "selector": {"matchLabels": dict(sel)},
                  "template": {"metadata": {
                      "labels": {"app": "istiod", "istio.io/rev": rl, "sidecar.istio.io/inject": "false",
                                 "operator.istio.io/component": "Pilot", "istio": "istiod" if revision else "pilot",
                                 "istio.io/dataplane-mode": "none", "app.kubernetes.io/name": "istiod", **il},
                      "annotations": {"prometheus.io/port": "15014", "prometheus.io/scrape": "true",
                                      "sidecar.istio.io/inject": "false"}},
                      "spec": {"tolerations": [{"key": "cni.istio.io/not-ready", "operator": "Exists"}],
                               "serviceAccountName": name,
                               "containers": [{"name": "discovery", "image": pilot_image,
                                               "args": ["discovery", "--monitoringAddr=:15014",
                                                        "--log_output_level=default:info", "--domain",
                                                        "cluster.local", "--keepaliveMaxServerConnectionAge",
                                                        "30m"],
                                               "ports": [{"containerPort": 8080, "protocol": "TCP",
                                                          "name": "http-debug"},
                                                         {"containerPort": 15010, "protocol": "TCP",
                                                          "name": "grpc-xds"},
                                                         {"containerPort": 15012, "protocol": "TCP",
                                                          "name": "tls-xds"},
                                                         {"containerPort": 15017, "protocol": "TCP",
                                                          "name": "https-webhooks"},
                                                         {"containerPort": 15014, "protocol": "TCP",
                                                          "name": "http-monitoring"}],
                                               "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080},
                                                                  "initialDelaySeconds": 1, "periodSeconds": 3,
                                                                  "timeoutSeconds": 5},
                                               "env": env,
                                               "resources": {"requests": {"cpu": "500m", "memory": "2048Mi"}}}]}}}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": name, "namespace": namespace, "labels": {
             "app": "istiod", "istio.io/rev": rl, "operator.istio.io/component": "Pilot", "release": release,
             "istio": "pilot", "app.kubernetes.io/name": "istiod", **il}},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "istiod", "istio.io/rev": rl}}}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": name, "namespace": namespace, "labels": {
             "app": "istiod", "release": release, "app.kubernetes.io/name": "istiod", **il}},
         "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": ["*"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": name, "namespace": namespace, "labels": {
             "app": "istiod", "release": release, "app.kubernetes.io/name": "istiod", **il}},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]},
    ]
    for base, rules in ((f"istiod-clusterrole{cr}", _ISTIOD_RULES),
                        (f"istiod-gateway-controller{cr}", [{"apiGroups": ["apps"], "resources": ["deployments"],
                                                             "verbs": ["get", "watch", "list", "update", "patch",
                                                                       "create", "delete"]}]),
                        (f"istio-reader-clusterrole{cr}", [{"apiGroups": ["*"], "resources": ["*"],
                                                            "verbs": ["get", "list", "watch"]}])):
        lab = {"app": "istiod" if "reader" not in base else "istio-reader", "release": release,
               "app.kubernetes.io/name": "istiod" if "reader" not in base else "istio-reader", **il}
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                     "metadata": {"name": base, "labels": dict(lab)}, "rules": rules})
        objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": {"name": base, "labels": dict(lab)},
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": base},
                     "subjects": [{"kind": "ServiceAccount", "namespace": namespace,
                                   "name": name if "reader" not in base else "istio-reader-service-account"}]})
    mwc_name = f"istio-sidecar-injector{sfx}" + ("" if namespace == "istio-system" else f"-{namespace}")
    objs.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
                 "metadata": {"name": mwc_name, "labels": {
                     "istio.io/rev": rl, "operator.istio.io/component": "Pilot", "app": "sidecar-injector",
                     "release": release, "app.kubernetes.io/name": "istiod", **il}},
                 "webhooks": injection_webhooks(rl, name, namespace, default=not revision)})
    objs.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                 "metadata": {"name": f"istio-validator{sfx}-{namespace}", "labels": {
                     "app": "istiod", "release": release, "istio": "istiod", "istio.io/rev": rl,
                     "app.kubernetes.io/name": "istiod", **il}},
                 "webhooks": [_validator("rev.validation.istio.io", name, namespace,
                                         {"matchExpressions": [_expr("istio.io/rev", "In", [rl])]})]})
    return objs


def revision_tag_objects(tag: str, rev: dict) -> list:
    """The ``revisiontags`` chart for ``revisionTags=[tag]`` with the revision's values."""
    values = (rev.get("spec") or {}).get("values") or {}
    namespace = rev["spec"]["namespace"]
    version = rev["spec"]["version"]
    revision = values.get("revision") or ""
    rl = revision or "default"
    release = f"{tag}-revisiontags"
    il = _istio_labels(release, "revisiontags", version)
    service = f"istiod-{revision}" if revision else "istiod"
    name = f"istio-revision-tag-{tag}" + ("" if namespace == "istio-system" else f"-{namespace}")
    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
         "metadata": {"name": name, "labels": {
             "istio.io/tag": tag, "istio.io/rev": rl, "operator.istio.io/component": "Pilot",
             "app": "sidecar-injector", "release": release, "app.kubernetes.io/name": "istiod", **il}},
         "webhooks": injection_webhooks(tag, service, namespace, default=(tag == "default"))},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": f"istiod-revision-tag-{tag}", "namespace": namespace, "labels": {
             "istio.io/rev": rl, "istio.io/tag": tag, "operator.istio.io/component": "Pilot", "app": "istiod",
             "istio": "pilot", "release": release, "app.kubernetes.io/name": "istiod", **il}},
         "spec": {"ports": [{"port": 15010, "name": "grpc-xds", "protocol": "TCP"},
                            {"port": 15012, "name": "https-dns", "protocol": "TCP"},
                            {"port": 443, "name": "https-webhook", "targetPort": 15017, "protocol": "TCP"},
                            {"port": 15014, "name": "http-monitoring", "protocol": "TCP"}],
                  "selector": {"app": "istiod", "istio.io/rev": revision} if revision else
                  {"app": "istiod", "istio": "pilot"}}},
    ]


def base_objects(release: str, default_revision: str, rev: dict) -> list:
    """The ``base`` chart with ``defaultRevision`` (istiod-default-validator) and the reader SA."""
    values = (rev.get("spec") or {}).get("values") or {}
    namespace = rev["spec"]["namespace"]
    il = _istio_labels(release, "base", rev["spec"]["version"])
    objs = [{"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": "istio-reader-service-account", "namespace": namespace, "labels": {
                 "app": "istio-reader", "release": release, "app.kubernetes.io/name": "istio-reader", **il}}}]
    if default_revision:
        revision = values.get("revision") or ""
        service = "istiod" if default_revision == "default" else f"istiod-{default_revision}"
        if default_revision != "default" and revision and default_revision != revision:
            service = f"istiod-{revision}"
        objs.append({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                     "metadata": {"name": "istiod-default-validator", "labels": {
                         "app": "istiod", "release": release, "istio": "istiod", "istio.io/rev": default_revision,
                         "app.kubernetes.io/name": "istiod", **il}},
                     "webhooks": [{k: v for k, v in _validator("validation.istio.io", service, namespace, None).items()
                                   if k != "objectSelector"}]})
    return objs


def daemonset_objects(kind: str, obj: dict) -> list:
    """cni / ztunnel charts: ServiceAccount, ConfigMap (cni) and the DaemonSet, images from the version."""
    spec = obj.get("spec") or {}
    version = resolve_version(spec.get("version") or DEFAULT_VERSION)
    bare = version.lstrip("v")
    ns = spec.get("namespace")
    if kind == CNI:
        release, app, image = "istio-cni", "istio-cni-node", f"{HUB}/install-cni:{bare}"
        sa, container = "istio-cni", "install-cni"
    else:
        release, app, image = "ztunnel", "ztunnel", f"{HUB}/ztunnel:{bare}"
        sa, container = "ztunnel", "istio-proxy"
    il = _istio_labels(release, "cni" if kind == CNI else "ztunnel", version)
    labels = {"app": app, "release": release, "app.kubernetes.io/name": app, "istio.io/dataplane-mode": "none",
              **il}
    objs = [{"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": sa, "namespace": ns, "labels": {"app": app, "release": release, **il}}}]
    if kind == CNI:
        objs.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "istio-cni-config", "namespace": ns, "labels": {
                         "app": app, "release": release, **il}},
                     "data": {"CURRENT_AGENT_VERSION": bare, "AMBIENT_ENABLED": "false",
                              "CHAINED_CNI_PLUGIN": "true"}})
    objs.append({"apiVersion": "apps/v1", "kind": "DaemonSet",
                 "metadata": {"name": app, "namespace": ns, "labels": labels},
                 "spec": {"selector": {"matchLabels": {"k8s-app" if kind == CNI else "app": app}},
                          "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                          "template": {"metadata": {"labels": {"k8s-app" if kind == CNI else "app": app,
                                                               "sidecar.istio.io/inject": "false",
                                                               "istio.io/dataplane-mode": "none",
                                                               "app.kubernetes.io/name": app, **il},
                                                    "annotations": {"sidecar.istio.io/inject": "false"}},
                                       "spec": {"serviceAccountName": sa, "priorityClassName": "system-node-critical",
                                                "containers": [{"name": container, "image": image}]}}}})
    return objs


# ------------------------------------------------------------------------------------------ Helm releases

def _kinds_key(obj) -> str:
    api = obj.get("apiVersion", "")
    group = api.rpartition("/")[0]
    plural = {"ServiceAccount": "serviceaccounts", "ConfigMap": "configmaps", "Service": "services",
              "Deployment": "deployments", "PodDisruptionBudget": "poddisruptionbudgets", "Role": "roles",
              "RoleBinding": "rolebindings", "ClusterRole": "clusterroles",
              "ClusterRoleBinding": "clusterrolebindings", "DaemonSet": "daemonsets",
              "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
              "ValidatingWebhookConfiguration": "validatingwebhookconfigurations"}[obj["kind"]]
    return f"{plural}.{group}" if group else plural


RELEASE_KINDS = ["serviceaccounts", "configmaps", "services", "deployments.apps", "daemonsets.apps",
                 "poddisruptionbudgets.policy", "roles.rbac.authorization.k8s.io",
                 "rolebindings.rbac.authorization.k8s.io", "clusterroles.rbac.authorization.k8s.io",
                 "clusterrolebindings.rbac.authorization.k8s.io", MWC, VWC]


def release_secret(release: str, namespace: str, version_n: int, chart: str, chart_version: str, values: dict,
                   objs: list, first: str) -> dict:
    """Helm's storage record (driver ``secret``): ``sh.helm.release.v1.<release>.v<N>``, data.release =
    base64(gzip(JSON release))."""
    now = now_iso()
    rel = {"name": release, "namespace": namespace, "version": version_n,
           "info": {"first_deployed": first, "last_deployed": now, "deleted": "",
                    "description": "Install complete" if version_n == 1 else "Upgrade complete",
                    "status": "deployed"},
           "chart": {"metadata": {"name": chart, "version": chart_version.lstrip("v"),
                                  "appVersion": chart_version.lstrip("v"), "apiVersion": "v2"},
                     "templates": [], "values": {}},
           "config": values,
           "manifest": "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objs)}
    payload = base64.b64encode(gzip.compress(json.dumps(rel).encode())).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
            "metadata": {"name": f"sh.helm.release.v1.{release}.v{version_n}", "namespace": namespace,
                         "labels": {"name": release, "owner": "helm", "status": "deployed",
                                    "version": str(version_n), "modifiedAt": str(int(time.time()))}},
            "data": {"release": base64.b64encode(payload.encode()).decode()}}


# ------------------------------------------------------------------------------------------ controller

def _cond(status, ctype):
    for c in (status or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {"type": ctype, "status": "Unknown"}


def _set_cond(conds: list, c: dict, now: str) -> list:
    """api/v1 SetCondition: lastTransitionTime moves only when the status changes."""
    out = []
    found = False
    for cur in conds or []:
        if cur.get("type") == c["type"]:
            found = True
            new = {k: v for k, v in c.items() if v not in (None, "")}
            new["lastTransitionTime"] = now if cur.get("status") != c["status"] else cur.get("lastTransitionTime", now)
            out.append(new)
        else:
            out.append(cur)
    if not found:
        new = {k: v for k, v in c.items() if v not in (None, "")}
        new["lastTransitionTime"] = now
        out.append(new)
    return out


def _derive_state(healthy: str, *conds) -> str:
    for c in conds:
        if c.get("status") != "True":
            return c.get("reason", "")
    return healthy


def referenced_revision_from_namespace(labels: dict) -> str:
    if (labels or {}).get("istio-injection") == "enabled":
        return "default"
    return (labels or {}).get("istio.io/rev", "")


def referenced_revision_from_pod(labels: dict) -> str:
    labels = labels or {}
    if labels.get("sidecar.istio.io/inject") != "false":
        if labels.get("istio.io/rev"):
            return labels["istio.io/rev"]
        if labels.get("sidecar.istio.io/inject") == "true":
            return "default"
    return ""


class _ReconcileError(Exception):
    def __init__(self, message, reason="ReconcileError"):
        super().__init__(message)
        self.reason = reason


class SailOperator:
    """The Sail operator's controllers on the ControllerManager worker: work keys ``("sail-istio", name)``,
    ``("sail-rev", name)``, ``("sail-tag", name)``, ``("sail-cni", name)``, ``("sail-zt", name)``."""

    kinds = ("sail-istio", "sail-rev", "sail-tag", "sail-cni", "sail-zt")

    def __init__(self):
        self._meta_cache: dict = {}      # uid -> (labels, annotations, ...) of pods/namespaces (IgnoreStatusChanges)
        self._active_cache: dict = {}    # Istio name -> last activeRevisionName seen
        self._tag_rev_cache: dict = {}   # tag name -> last status.istioRevision seen

    def attach(self, cm):
        self.cm = cm

    def _served(self, key) -> bool:
        return self.cm.store.registry.get(key) is not None

    def _list(self, key, ns=None) -> list:
        return self.cm._ro_list(key, ns) if self._served(key) else []

    def _get(self, key, ns, name):
        return self.cm._ro_get(key, ns, name) if self._served(key) else None

    def initial_keys(self):
        for key, kind in ((ISTIO, "sail-istio"), (REV, "sail-rev"), (TAG, "sail-tag"), (CNI, "sail-cni"),
                          (ZTUNNEL, "sail-zt")):
            for o in self._list(key):
                yield (kind, o["metadata"]["name"])

    # ---------------------------------------------------------------- event mapping (SetupWithManager)
    def keys_for(self, event_type, key, obj):
        meta = (obj or {}).get("metadata") or {}
        name = meta.get("name")
        out = []
        if key == ISTIO:
            out.append(("sail-istio", name))
            active = ((obj or {}).get("status") or {}).get("activeRevisionName", "")
            names = {active, self._active_cache.get(name, "")} - {""}
            self._active_cache[name] = active
            out += [("sail-tag", t["metadata"]["name"]) for t in self._list(TAG)
                    if ((t.get("status") or {}).get("istioRevision")) in names]
        elif key == REV:
            out.append(("sail-rev", name))
            owner = self._controller(meta, "Istio")
            if owner:
                out.append(("sail-istio", owner))
            out += [("sail-tag", t["metadata"]["name"]) for t in self._list(TAG)
                    if ((t.get("status") or {}).get("istioRevision")) == name]
            for kind, k in ((CNI, "sail-cni"), (ZTUNNEL, "sail-zt")):
                out += [(k, o["metadata"]["name"]) for o in self._list(kind)]
        elif key == TAG:
            out.append(("sail-tag", name))
            rev = ((obj or {}).get("status") or {}).get("istioRevision", "")
            for r in {rev, self._tag_rev_cache.get(name, "")} - {""}:
                out.append(("sail-rev", r))
            self._tag_rev_cache[name] = rev
        elif key == CNI:
            out.append(("sail-cni", name))
            out += [("sail-rev", r["metadata"]["name"]) for r in self._list(REV)]
        elif key == ZTUNNEL:
            out.append(("sail-zt", name))
        elif key == "namespaces":
            changed, prev = self._meta_changed(event_type, obj)
            if changed:
                revs = {r["metadata"]["name"] for r in self._list(REV)
                        if (r.get("spec") or {}).get("namespace") == name}
                for labels in [meta.get("labels") or {}] + ([prev[1]] if prev else []):
                    ref = referenced_revision_from_namespace(labels)
                    if ref:
                        revs.add(ref)
                        out.append(("sail-tag", ref))
                out += [("sail-rev", r) for r in revs]
        elif key == "pods":
            changed, prev = self._meta_changed(event_type, obj)
            if changed:
                for labels, ann in [(meta.get("labels") or {}, meta.get("annotations") or {})] + \
                        ([(prev[1], prev[2])] if prev else []):
                    injected = (ann or {}).get("istio.io/rev", "")
                    ref = referenced_revision_from_pod(labels)
                    if injected or ref:
                        out.append(("sail-rev", injected or ref))
                    if ref:
                        out.append(("sail-tag", ref))
        if meta.get("ownerReferences") and key not in (ISTIO, REV, TAG, CNI, ZTUNNEL, "pods"):
            for kind, work in (("IstioRevision", "sail-rev"), ("IstioRevisionTag", "sail-tag"),
                               ("IstioCNI", "sail-cni"), ("ZTunnel", "sail-zt")):
                owner = self._controller(meta, kind)
                if owner:
                    out.append((work, owner))
        if event_type == "DELETED" and meta.get("uid") in self._meta_cache:
            self._meta_cache.pop(meta.get("uid"), None)
        return out

    @staticmethod
    def _controller(meta, kind) -> str:
        for ref in meta.get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == kind and \
                    (ref.get("apiVersion") or "").startswith(GROUP + "/"):
                return ref.get("name", "")
        return ""

    def _meta_changed(self, event_type, obj):
        """watches.IgnoreStatusChanges: only events changing labels, annotations, owners, finalizers or spec
        count; -> (changed, previous (snapshot, labels, annotations) or None)."""
        meta = obj.get("metadata") or {}
        snap = json.dumps([meta.get("labels"), meta.get("annotations"), meta.get("ownerReferences"),
                           meta.get("finalizers"), obj.get("spec") if obj.get("kind") != "Pod" else None,
                           bool(meta.get("deletionTimestamp"))], sort_keys=True)
        uid = meta.get("uid")
        prev = self._meta_cache.get(uid)
        self._meta_cache[uid] = (snap, meta.get("labels") or {}, meta.get("annotations") or {})
        return event_type in ("ADDED", "DELETED") or prev is None or prev[0] != snap, prev

    def sync(self, key):
        kind, name = key
        if kind == "sail-istio":
            self.sync_istio(name)
        elif kind == "sail-rev":
            self.sync_revision(name)
        elif kind == "sail-tag":
            self.sync_tag(name)
        elif kind in ("sail-cni", "sail-zt"):
            self.sync_daemonset_cr(CNI if kind == "sail-cni" else ZTUNNEL, name)

    # ---------------------------------------------------------------- shared
    def _write_status(self, key, obj, status):
        if (obj.get("status") or {}) == status:
            return
        new = _clone(obj)
        new["status"] = status
        self.cm._update_status(key, new)

    def _ensure_finalizer(self, key, obj) -> dict | None:
        """NewStandardReconcilerWithFinalizer: add the finalizer first; on deletion finalize, then drop it."""
        fins = obj["metadata"].get("finalizers") or []
        if terminating(obj):
            return None
        if FINALIZER not in fins:
            new = _clone(obj)
            new["metadata"]["finalizers"] = fins + [FINALIZER]
            return self.cm._update(key, new)
        return obj

    def _remove_finalizer(self, key, obj):
        new = _clone(obj)
        new["metadata"]["finalizers"] = [f for f in new["metadata"].get("finalizers") or [] if f != FINALIZER]
        try:
            self.cm._update(key, new)
        except ApiError as e:
            if e.code != 404:
                raise

    def _owner_ref(self, obj, kind) -> dict:
        return {"apiVersion": f"{GROUP}/v1", "kind": kind, "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def install(self, release: str, namespace: str, chart: str, version: str, values: dict, objs: list,
                owner_ref: dict):
        """UpgradeOrInstallChart: Helm's metadata, the post-renderer's owner reference and managed-by label, then
        create or re-apply each object; objects of the release that are no longer rendered are deleted."""
        cm = self.cm
        rendered = []
        for o in objs:
            o = _clone(o)
            m = o["metadata"]
            m.setdefault("labels", {})[MANAGED_BY] = "sail-operator"
            m.setdefault("annotations", {}).update({"meta.helm.sh/release-name": release,
                                                   "meta.helm.sh/release-namespace": namespace})
            m["ownerReferences"] = (m.get("ownerReferences") or []) + [dict(owner_ref)]
            rendered.append(o)
        changed = False
        keep = set()
        for o in rendered:
            key = _kinds_key(o)
            if not self._served(key):
                continue
            ns = o["metadata"].get("namespace")
            keep.add((key, ns, o["metadata"]["name"]))
            live = cm._ro_get(key, ns, o["metadata"]["name"])
            if live is None:
                try:
                    cm.store.create(key, o)
                    changed = True
                except ApiError as e:
                    if e.code == 409:
                        cm.after(0.2, self._key_for_owner(owner_ref))
                    elif e.code == 404 and ns:
                        raise _ReconcileError(f'namespace "{ns}" not found')
                    else:
                        raise
                continue
            merged = _apply_over(live, o, upgrade=True)
            if merged != live:
                cm._update(key, merged)
                changed = True
        for key, ns, name in self._release_objects(release, namespace):
            if (key, ns, name) not in keep:
                cm._delete(key, ns, name)
                changed = True
        self._store_release(release, namespace, chart, version, values, rendered, changed)

    def _key_for_owner(self, ref):
        return {"IstioRevision": "sail-rev", "IstioRevisionTag": "sail-tag", "IstioCNI": "sail-cni",
                "ZTunnel": "sail-zt"}[ref["kind"]], ref["name"]

    def _release_objects(self, release, namespace):
        for key in RELEASE_KINDS:
            if not self._served(key):
                continue
            for o in self.cm._ro_list(key):
                ann = o["metadata"].get("annotations") or {}
                if ann.get("meta.helm.sh/release-name") == release and \
                        ann.get("meta.helm.sh/release-namespace") == namespace and not terminating(o):
                    yield key, o["metadata"].get("namespace"), o["metadata"]["name"]

    def _store_release(self, release, namespace, chart, version, values, objs, changed):
        cm = self.cm
        secrets = [s for s in cm._ro_list("secrets", namespace)
                   if (s["metadata"].get("labels") or {}).get("name") == release and s.get("type") == "helm.sh/release.v1"]
        top = max((int(s["metadata"]["labels"].get("version") or 0) for s in secrets), default=0)
        if top and not changed:
            return
        first = now_iso()
        try:
            cm.store.create("secrets", release_secret(release, namespace, top + 1, chart, version, values, objs,
                                                      first))
        except ApiError as e:
            if e.code not in (404, 409, 403):
                raise
            return
        for s in secrets:  # MaxHistory 1
            cm._delete("secrets", namespace, s["metadata"]["name"])

    def uninstall(self, release, namespace):
        for key, ns, name in list(self._release_objects(release, namespace)):
            self.cm._delete(key, ns, name)
        for s in self.cm._ro_list("secrets", namespace):
            if (s["metadata"].get("labels") or {}).get("name") == release and s.get("type") == "helm.sh/release.v1":
                self.cm._delete("secrets", namespace, s["metadata"]["name"])

    # ---------------------------------------------------------------- Istio
    def sync_istio(self, name):
        cm = self.cm
        istio = self._get(ISTIO, None, name)
        if istio is None or terminating(istio):
            return
        spec = istio.get("spec") or {}
        err = None
        try:
            if not spec.get("version"):
                raise _ReconcileError("spec.version not set")
            if not spec.get("namespace"):
                raise _ReconcileError("spec.namespace not set")
            version = resolve_version(spec["version"])
            rev_name = active_revision_name(istio)
            values = compute_values(spec.get("values"), spec["namespace"], version, rev_name)
            rev = self._get(REV, None, rev_name)
            if rev is not None:
                if (rev.get("spec") or {}).get("version") != version or (rev.get("spec") or {}).get("values") != values:
                    new = _clone(rev)
                    new["spec"]["version"] = version
                    new["spec"]["values"] = values
                    cm._update(REV, new)
            else:
                cm.store.create(REV, {"apiVersion": f"{GROUP}/v1", "kind": "IstioRevision",
                                      "metadata": {"name": rev_name,
                                                   "ownerReferences": [self._owner_ref(istio, "Istio")]},
                                      "spec": {"version": version, "namespace": spec["namespace"],
                                               "values": values}})
            if (spec.get("values") or {}).get("pilot", {}).get("env", {}).get("EXTERNAL_ISTIOD") != "true":
                self._prune(istio, rev_name)
        except _ReconcileError as e:
            err = e
        except ApiError as e:
            if e.code in (409,):
                raise
            err = _ReconcileError(f"failed to create or update IstioRevision: {e.message}")
        self._istio_status(istio, err)

    def _owned_revisions(self, istio) -> list:
        uid = istio["metadata"]["uid"]
        return [r for r in self._list(REV) if any(ref.get("uid") == uid for ref in
                                                  r["metadata"].get("ownerReferences") or [])]

    def _prune(self, istio, active):
        """revision.PruneInactive."""
        us = (istio.get("spec") or {}).get("updateStrategy") or {}
        grace = us.get("inactiveRevisionDeletionGracePeriodSeconds")
        grace = DEFAULT_GRACE if grace is None else max(int(grace), 0)
        next_at = None
        for rev in self._owned_revisions(istio):
            if rev["metadata"]["name"] == active or terminating(rev):
                continue
            in_use = _cond(rev.get("status"), "InUse")
            if in_use.get("status") != "False":
                continue
            since = parse_iso(in_use.get("lastTransitionTime")) or time.time()
            when = since + grace
            if when < time.time():
                self.cm._delete(REV, None, rev["metadata"]["name"])
            else:
                next_at = when if next_at is None else min(next_at, when)
        if next_at is not None:
            self.cm.after(max(next_at - time.time(), 0) + 1.0, ("sail-istio", istio["metadata"]["name"]))

    def _istio_status(self, istio, err):
        now = now_iso()
        st = _clone(istio.get("status") or {})
        st["observedGeneration"] = istio["metadata"].get("generation", 1)
        conds = st.get("conditions") or []
        if err is not None:
            conds = _set_cond(conds, {"type": "Reconciled", "status": "False", "reason": "ReconcileError",
                                      "message": str(err)}, now)
            conds = _set_cond(conds, {"type": "Ready", "status": "Unknown", "reason": "ReconcileError",
                                      "message": "cannot determine readiness due to reconciliation error"}, now)
            st["state"] = "ReconcileError"
        else:
            st["activeRevisionName"] = active_revision_name(istio)
            rev = self._get(REV, None, st["activeRevisionName"])
            if rev is None:
                for t in ("Reconciled", "Ready"):
                    conds = _set_cond(conds, {"type": t, "status": "False", "reason": "ActiveRevisionNotFound",
                                              "message": "active IstioRevision not found"}, now)
                st["state"] = "ActiveRevisionNotFound"
            else:
                for t in ("Reconciled", "Ready", "DependenciesHealthy"):
                    c = _cond(rev.get("status"), t)
                    conds = _set_cond(conds, {k: v for k, v in c.items() if k != "lastTransitionTime"}, now)
                st["state"] = (rev.get("status") or {}).get("state", "")
                if not st["state"]:
                    st.pop("state")
        st["conditions"] = conds
        revs = self._owned_revisions(istio)
        st["revisions"] = {"total": len(revs),
                           "ready": sum(1 for r in revs if _cond(r.get("status"), "Ready").get("status") == "True"),
                           "inUse": sum(1 for r in revs if _cond(r.get("status"), "InUse").get("status") == "True")}
        self._write_status(ISTIO, istio, st)

    # ---------------------------------------------------------------- IstioRevision
    def sync_revision(self, name):
        cm = self.cm
        rev = self._get(REV, None, name)
        if rev is None:
            return
        spec = rev.get("spec") or {}
        if terminating(rev):
            if FINALIZER in (rev["metadata"].get("finalizers") or []):
                self.uninstall(f"{name}-istiod", spec.get("namespace"))
                if name == "default":
                    self.uninstall("default-base", OPERATOR_NS)
                self._remove_finalizer(REV, rev)
            return
        rev = self._ensure_finalizer(REV, rev)
        if rev is None:
            return
        err = None
        try:
            values = spec.get("values")
            if values is None:
                raise _ReconcileError("values not set")
            if not spec.get("version"):
                raise _ReconcileError("version not set")
            if not spec.get("namespace"):
                raise _ReconcileError("namespace not set")
            r = values.get("revision")
            if name == "default" and r:
                raise _ReconcileError('values.revision must be "" when revision name is default')
            if name != "default" and r != name:
                raise _ReconcileError("values.revision does not match revision name")
            if (values.get("global") or {}).get("istioNamespace") != spec["namespace"]:
                raise _ReconcileError("values.global.istioNamespace does not match namespace")
            tag = self._get(TAG, None, name)
            if tag is not None and tag["metadata"].get("creationTimestamp", "") <= rev["metadata"].get(
                    "creationTimestamp", ""):
                raise _ReconcileError("an IstioRevisionTag exists with this name", "NameAlreadyExists")
            if cm._ro_get("namespaces", None, spec["namespace"]) is None:
                raise _ReconcileError(f'namespace "{spec["namespace"]}" doesn\'t exist')
            owner = self._owner_ref(rev, "IstioRevision")
            self.install(f"{name}-istiod", spec["namespace"], "istiod", spec["version"], values,
                         istiod_objects(name, spec["version"], spec["namespace"], values), owner)
            if name == "default":
                self.install("default-base", OPERATOR_NS, "base", spec["version"], values,
                             base_objects("default-base", "", rev), owner)
        except _ReconcileError as e:
            err = e
        self._revision_status(rev, err)

    def _revision_status(self, rev, err):
        cm = self.cm
        now = now_iso()
        spec = rev.get("spec") or {}
        values = spec.get("values") or {}
        if err is None:
            reconciled = {"type": "Reconciled", "status": "True", "reason": "Reconciled"}
        elif err.reason == "NameAlreadyExists":
            reconciled = {"type": "Reconciled", "status": "False", "reason": "NameAlreadyExists", "message": str(err)}
        else:
            reconciled = {"type": "Reconciled", "status": "False", "reason": "ReconcileError",
                          "message": f"error reconciling resource: {err}"}
        revision = values.get("revision") or ""
        istiod = cm._ro_get(DEPLOY, spec.get("namespace"), f"istiod-{revision}" if revision else "istiod")
        ready = {"type": "Ready", "status": "False", "reason": "IstiodNotReady"}
        if istiod is None:
            ready["message"] = "istiod Deployment not found"
        else:
            st = istiod.get("status") or {}
            if not st.get("replicas"):
                ready["message"] = "istiod Deployment is scaled to zero replicas"
            elif int(st.get("readyReplicas") or 0) < int(st.get("replicas") or 0):
                ready["message"] = "not all istiod pods are ready"
            else:
                ready = {"type": "Ready", "status": "True", "reason": "Ready"}
        deps = {"type": "DependenciesHealthy", "status": "True", "reason": "DependenciesHealthy"}
        if cni_enabled(values):
            cni = self._get(CNI, None, "default")
            if cni is None:
                deps = {"type": "DependenciesHealthy", "status": "False", "reason": "IstioCNINotFound",
                        "message": "IstioCNI resource does not exist"}
            elif (cni.get("status") or {}).get("state") != "Healthy":
                deps = {"type": "DependenciesHealthy", "status": "False", "reason": "IstioCNINotHealthy",
                        "message": "IstioCNI resource status indicates that the component is not healthy"}
        if self._referenced(rev):
            in_use = {"type": "InUse", "status": "True", "reason": "ReferencedByWorkloads",
                      "message": "Referenced by at least one pod or namespace"}
        else:
            in_use = {"type": "InUse", "status": "False", "reason": "NotReferencedByAnything",
                      "message": "Not referenced by any pod or namespace"}
        st = _clone(rev.get("status") or {})
        st["observedGeneration"] = rev["metadata"].get("generation", 1)
        conds = st.get("conditions") or []
        for c in (reconciled, ready, deps, in_use):
            conds = _set_cond(conds, c, now)
        st["conditions"] = conds
        st["state"] = _derive_state("Healthy", reconciled, ready, deps)
        self._write_status(REV, rev, st)

    def _referenced(self, rev) -> bool:
        """isRevisionReferenced."""
        name = rev["metadata"]["name"]
        if any(((t.get("status") or {}).get("istioRevision")) == name for t in self._list(TAG)):
            return True
        ns_labels = {}
        for ns in self.cm._ro_list("namespaces"):
            labels = ns["metadata"].get("labels") or {}
            if referenced_revision_from_namespace(labels) == name:
                return True
            ns_labels[ns["metadata"]["name"]] = labels
        for pod in self.cm._ro_list("pods"):
            if (pod.get("status") or {}).get("phase") == "Succeeded":
                continue
            labels = ns_labels.get(pod["metadata"].get("namespace"))
            if labels is None:
                continue
            if (pod["metadata"].get("annotations") or {}).get("istio.io/rev") == name:
                return True
            if not referenced_revision_from_namespace(labels) and \
                    referenced_revision_from_pod(pod["metadata"].get("labels")) == name:
                return True
        values = (rev.get("spec") or {}).get("values") or {}
        return name == "default" and bool((values.get("sidecarInjectorWebhook") or {}).get("enableNamespacesByDefault"))

    # ---------------------------------------------------------------- IstioRevisionTag
    def sync_tag(self, name):
        tag = self._get(TAG, None, name)
        if tag is None:
            return
        st0 = tag.get("status") or {}
        if terminating(tag):
            if FINALIZER in (tag["metadata"].get("finalizers") or []):
                if st0.get("istiodNamespace"):
                    self.uninstall(f"{name}-revisiontags", st0["istiodNamespace"])
                if name == "default":
                    self.uninstall("default-base", OPERATOR_NS)
                self._remove_finalizer(TAG, tag)
            return
        tag = self._ensure_finalizer(TAG, tag)
        if tag is None:
            return
        err, rev = None, None
        try:
            ref = (tag.get("spec") or {}).get("targetRef") or {}
            if not ref.get("kind") or not ref.get("name"):
                raise _ReconcileError("spec.targetRef not set")
            same = self._get(REV, None, name)
            if same is not None and same["metadata"].get("creationTimestamp", "") <= tag["metadata"].get(
                    "creationTimestamp", ""):
                raise _ReconcileError("an IstioRevision exists with this name", "NameAlreadyExists")
            if ref["kind"] == "Istio":
                istio = self._get(ISTIO, None, ref["name"])
                if istio is None:
                    raise _ReconcileError("referenced Istio resource does not exist", "RefNotFound")
                active = (istio.get("status") or {}).get("activeRevisionName")
                if not active:
                    raise _ReconcileError("referenced Istio has no active revision")
                rev = self._get(REV, None, active)
                if rev is None:
                    raise _ReconcileError(f'istiorevisions.{GROUP} "{active}" not found')
            else:
                rev = self._get(REV, None, ref["name"])
                if rev is None:
                    raise _ReconcileError("referenced IstioRevision resource does not exist", "RefNotFound")
            ns = rev["spec"]["namespace"]
            if st0.get("istiodNamespace") and st0["istiodNamespace"] != ns:
                self.uninstall(f"{name}-revisiontags", st0["istiodNamespace"])
            owner = self._owner_ref(tag, "IstioRevisionTag")
            values = dict((rev.get("spec") or {}).get("values") or {}, revisionTags=[name])
            self.install(f"{name}-revisiontags", ns, "revisiontags", rev["spec"]["version"], values,
                         revision_tag_objects(name, rev), owner)
            if name == "default":
                self.install("default-base", OPERATOR_NS, "base", rev["spec"]["version"],
                             dict(values, defaultRevision=rev["metadata"]["name"]),
                             base_objects("default-base", rev["metadata"]["name"], rev), owner)
        except _ReconcileError as e:
            err, rev = e, None
        self._tag_status(tag, rev, err)

    def _tag_status(self, tag, rev, err):
        now = now_iso()
        name = tag["metadata"]["name"]
        if err is None:
            reconciled = {"type": "Reconciled", "status": "True", "reason": "Reconciled"}
        elif err.reason in ("NameAlreadyExists", "RefNotFound"):
            reconciled = {"type": "Reconciled", "status": "False", "reason": err.reason, "message": str(err)}
        else:
            reconciled = {"type": "Reconciled", "status": "False", "reason": "ReconcileError",
                          "message": f"error reconciling resource: {err}"}
        used = False
        ns_labels = {}
        for ns in self.cm._ro_list("namespaces"):
            labels = ns["metadata"].get("labels") or {}
            if referenced_revision_from_namespace(labels) == name:
                used = True
            ns_labels[ns["metadata"]["name"]] = labels
        if not used:
            for pod in self.cm._ro_list("pods"):
                if (pod.get("status") or {}).get("phase") == "Succeeded":
                    continue
                labels = ns_labels.get(pod["metadata"].get("namespace"))
                if labels is not None and not referenced_revision_from_namespace(labels) and \
                        referenced_revision_from_pod(pod["metadata"].get("labels")) == name:
                    used = True
                    break
        in_use = ({"type": "InUse", "status": "True", "reason": "ReferencedByWorkloads",
                   "message": "Referenced by at least one pod or namespace"} if used else
                  {"type": "InUse", "status": "False", "reason": "NotReferencedByAnything",
                   "message": "Not referenced by any pod or namespace"})
        st = _clone(tag.get("status") or {})
        st["observedGeneration"] = tag["metadata"].get("generation", 1)
        if err is None and rev is not None:
            st["istiodNamespace"] = rev["spec"]["namespace"]
            st["istioRevision"] = rev["metadata"]["name"]
        st.setdefault("istiodNamespace", "")
        st.setdefault("istioRevision", "")
        conds = st.get("conditions") or []
        for c in (reconciled, in_use):
            conds = _set_cond(conds, c, now)
        st["conditions"] = conds
        st["state"] = _derive_state("Healthy", reconciled, in_use)
        self._write_status(TAG, tag, st)

    # ---------------------------------------------------------------- IstioCNI / ZTunnel
    def sync_daemonset_cr(self, key, name):
        obj = self._get(key, None, name)
        if obj is None:
            return
        kind = "IstioCNI" if key == CNI else "ZTunnel"
        release = "istio-cni" if key == CNI else "ztunnel"
        spec = obj.get("spec") or {}
        if terminating(obj):
            if FINALIZER in (obj["metadata"].get("finalizers") or []):
                self.uninstall(release, spec.get("namespace"))
                self._remove_finalizer(key, obj)
            return
        obj = self._ensure_finalizer(key, obj)
        if obj is None:
            return
        err = None
        try:
            if name != "default":
                raise _ReconcileError("metadata.name must be 'default'")
            if self.cm._ro_get("namespaces", None, spec.get("namespace")) is None:
                raise _ReconcileError(f'namespace "{spec.get("namespace")}" doesn\'t exist')
            self.install(release, spec["namespace"], "cni" if key == CNI else "ztunnel",
                         resolve_version(spec.get("version") or DEFAULT_VERSION), spec.get("values") or {},
                         daemonset_objects(key, obj), self._owner_ref(obj, kind))
        except _ReconcileError as e:
            err = e
        now = now_iso()
        reconciled = {"type": "Reconciled", "status": "True", "reason": "Reconciled"} if err is None else \
            {"type": "Reconciled", "status": "False", "reason": "ReconcileError",
             "message": f"error reconciling resource: {err}"}
        ds = self.cm._ro_get(DS, spec.get("namespace"), "istio-cni-node" if key == CNI else "ztunnel")
        pods = "istio-cni-node" if key == CNI else "ztunnel"
        ready = {"type": "Ready", "status": "False", "reason": "DaemonSetNotReady"}
        if ds is None:
            ready["message"] = f"{pods} DaemonSet not found"
        else:
            dst = ds.get("status") or {}
            if not dst.get("currentNumberScheduled"):
                ready["message"] = f"no {pods} pods are currently scheduled"
            elif int(dst.get("numberReady") or 0) < int(dst.get("currentNumberScheduled") or 0) or \
                    int(dst.get("updatedNumberScheduled") or 0) < int(dst.get("desiredNumberScheduled") or 0):
                ready["message"] = f"not all {pods} pods are ready"
            else:
                ready = {"type": "Ready", "status": "True", "reason": "Ready"}
        st = _clone(obj.get("status") or {})
        st["observedGeneration"] = obj["metadata"].get("generation", 1)
        conds = st.get("conditions") or []
        for c in (reconciled, ready):
            conds = _set_cond(conds, c, now)
        st["conditions"] = conds
        st["state"] = _derive_state("Healthy", reconciled, ready)
        self._write_status(key, obj, st)


def _apply_over(live: dict, desired: dict, upgrade: bool) -> dict:
    """Re-apply a rendered object over the live one (Helm's upgrade patch): rendered fields win, fields the
    chart does not render stay; webhooks merge by name and keep istiod's caBundle (and, on upgrades, the
    validator's failurePolicy, which Sail's post-renderer strips)."""
    out = _clone(live)
    for k, v in desired.items():
        if k in ("apiVersion", "kind", "status"):
            continue
        if k == "metadata":
            m = out.setdefault("metadata", {})
            for mk in ("labels", "annotations"):
                if v.get(mk):
                    m[mk] = {**(m.get(mk) or {}), **v[mk]}
            refs = m.get("ownerReferences") or []
            for ref in v.get("ownerReferences") or []:
                if not any(r.get("uid") == ref.get("uid") for r in refs):
                    refs = refs + [ref]
            if refs:
                m["ownerReferences"] = refs
            continue
        if k == "webhooks" and isinstance(v, list):
            cur = {w.get("name"): w for w in out.get("webhooks") or []}
            merged = []
            for w in v:
                nw = _merge(cur.get(w.get("name"), {}), w)
                old = cur.get(w.get("name"))
                if old is not None:
                    ca = (old.get("clientConfig") or {}).get("caBundle")
                    if ca:
                        nw.setdefault("clientConfig", {})["caBundle"] = ca
                    if upgrade and live.get("kind") == "ValidatingWebhookConfiguration" and old.get("failurePolicy"):
                        nw["failurePolicy"] = old["failurePolicy"]
                merged.append(nw)
            out["webhooks"] = merged
            continue
        out[k] = _merge(out.get(k), v)
    return out


def _merge(live, desired):
    if isinstance(live, dict) and isinstance(desired, dict):
        out = dict(live)
        for k, v in desired.items():
            out[k] = _merge(live.get(k), v)
        return out
    if isinstance(live, list) and isinstance(desired, list) and len(live) == len(desired) and \
            all(isinstance(x, dict) for x in live + desired):
        return [_merge(a, b) for a, b in zip(live, desired)]
    return _clone(desired)


def objects(options=None) -> list:
    return crd_objects() + operator_objects()


def install_api(store, options=None):
    _CONFIG["platform"] = "openshift" if "openshift" in (getattr(options, "features", None) or []) else "kubernetes"
    strategy.register(ISTIO, defaults=_spec_defaults({"version": DEFAULT_VERSION, "namespace": "istio-system",
                                                      "updateStrategy": {"type": "InPlace"}}),
                      validate=_validate_istio)
    strategy.register(REV, validate=_validate_rev)
    strategy.register(TAG, validate=_validate_tag)
    strategy.register(CNI, defaults=_spec_defaults({"version": DEFAULT_VERSION, "namespace": "istio-cni"}),
                      validate=_validate_singleton("IstioCNI"))
    strategy.register(ZTUNNEL, defaults=_spec_defaults({"version": DEFAULT_VERSION, "namespace": "ztunnel"}),
                      validate=_validate_singleton("ZTunnel"))


def install_controllers(cm, options=None):
    cm.add_controller(SailOperator())
