"""Command line of the simulated cluster (test harness).

``python -m kubesim serve --scenario NAME --port 0 --kubeconfig PATH [options]`` builds the
store, installs admission (``kubesim.admission.install``), creates the scenario's objects
(``kubesim.scenarios.load_scenario``), starts the controllers
(``kubesim.controllers.ControllerManager``), serves HTTPS, writes the kubeconfig and prints
``kubesim ready <url>``.  SIGTERM/SIGINT stop it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import base64
import importlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading

import yaml

from . import credentials, tls
from .errors import ApiError
from .options import SimOptions
from .store import Store

DEFAULT_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease", "istio-system"]
# Optional platform parts: feature name -> module with install_api(store, options) (types, run before the
# scenario's objects are created) and install_controllers(cm, options) (controllers, run before they start).
FEATURES = {"openshift": "openshift", "argo-rollouts": "argo", "sail-operator": "sail"}
# Always on: kube-controller-manager parts kept outside controllers.py.
CORE_EXTENSIONS = ["replication", "ambient"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kubesim", description="Simulated Kubernetes cluster (test harness)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the simulated API")
    s.add_argument("--scenario", default="empty")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--kubeconfig", default=None, help="where to write the kubeconfig")
    s.add_argument("--pod-ready-seconds", type=float, default=0.5)
    s.add_argument("--pod-terminate-seconds", type=float, default=0.3,
                   help="deleted pods stay Terminating this long (graceful deletion); 0 removes them at once")
    s.add_argument("--crash-proxy-version", action="append", default=[], dest="crash_proxy_versions")
    s.add_argument("--bad-proxy-version", action="append", default=[], dest="bad_proxy_versions")
    s.add_argument("--missing-image", action="append", default=[], dest="missing_images", metavar="PATTERN",
                   help="glob on image references the registry does not have: such containers stay in "
                        "ErrImagePull/ImagePullBackOff (repeatable)")
    s.add_argument("--api-error-rate", type=float, default=0.0)
    s.add_argument("--latency-ms", type=float, default=0.0)
    s.add_argument("--drop-watch-rate", type=float, default=0.0)
    s.add_argument("--conflict-rate", type=float, default=0.0,
                   help="fraction of writes that another writer races (conditional ones then get 409 Conflict)")
    s.add_argument("--seed", type=int, default=None)
    s.add_argument("--audit-log", default=None)
    s.add_argument("--authorize-rules", default=None)
    s.add_argument("--nodes", type=int, default=None,
                   help="number of worker nodes (default: the scenario's, 3)")
    s.add_argument("--namespaces", type=int, default=10)
    s.add_argument("--deployments", type=int, default=2)
    s.add_argument("--replicas", type=int, default=2)
    s.add_argument("--watch-history", type=int, default=10000,
                   help="watch events kept per resource type; older resourceVersions get 410 Expired")
    s.add_argument("--token", default=None, help="bearer token to require (default: random)")
    s.add_argument("--token-ttl", type=float, default=0.0,
                   help="tokens expire after this many seconds (>= 1); the kubeconfig then uses an exec "
                        "credential plugin that renews them (kubesim.credentials)")
    s.add_argument("--no-tls", action="store_true", help="serve plain HTTP (debugging only)")
    s.add_argument("--feature", action="append", default=[], dest="features", choices=sorted(FEATURES),
                   help="serve an optional platform part (besides the scenario's own `features`): openshift "
                        "(apps.openshift.io DeploymentConfigs), argo-rollouts (Argo Rollouts CRDs + controller), "
                        "sail-operator (sailoperator.io CRDs + the Sail operator)")
    return p


def options_from_args(a) -> SimOptions:
    return SimOptions(scenario=a.scenario, host=a.host, port=a.port, kubeconfig=a.kubeconfig,
                      pod_ready_seconds=a.pod_ready_seconds,
                      pod_terminate_seconds=a.pod_terminate_seconds, crash_proxy_versions=list(a.crash_proxy_versions),
                      bad_proxy_versions=list(a.bad_proxy_versions), missing_images=list(a.missing_images),
                      api_error_rate=a.api_error_rate,
                      latency_ms=a.latency_ms, drop_watch_rate=a.drop_watch_rate, conflict_rate=a.conflict_rate,
                      token_ttl=a.token_ttl,
                      seed=a.seed,
                      audit_log=a.audit_log, authorize_rules=a.authorize_rules, namespaces=a.namespaces,
                      deployments=a.deployments, replicas=a.replicas, nodes=a.nodes,
                      watch_history=a.watch_history, features=list(a.features))


def _optional(modname):
    try:
        return importlib.import_module(f"kubesim.{modname}")
    except ModuleNotFoundError as e:
        if e.name == f"kubesim.{modname}":
            return None
        raise


def build_cluster(options: SimOptions, start_controllers: bool = True):
    """-> (store, controller_manager_or_None).  Usable in-process (tests, benchmarks).  With
    ``start_controllers=False`` the caller starts them (:func:`start_controllers`) -- after a scenario's Helm
    releases were installed through the served API."""
    store = Store(options)
    scenarios = _optional("scenarios")
    features = set(getattr(options, "features", None) or [])
    if scenarios is not None and hasattr(scenarios, "scenario_features"):
        features |= set(scenarios.scenario_features(options.scenario))
    options.features = sorted(features)
    extensions = [importlib.import_module(f"kubesim.{m}") for m in CORE_EXTENSIONS]
    extensions += [importlib.import_module(f"kubesim.{FEATURES[f]}") for f in sorted(features)]
    for ext in extensions:
        if hasattr(ext, "install_api"):
            ext.install_api(store, options)
    store.kubesim_extensions = extensions  # their install_controllers run in start_controllers_for
    for ns in DEFAULT_NAMESPACES:
        store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                     admission=False)
    admission = _optional("admission")
    if admission is not None:
        admission.install(store, options)
    quota = _optional("quota")
    if quota is not None:
        quota.install(store, options)  # LimitRanger and ResourceQuota admission, the quota controller
    objs, later = [], []
    for ext in extensions:  # what installing the platform part creates (CRDs, its controller's Deployment...)
        if hasattr(ext, "objects"):
            objs += ext.objects(options)
    if scenarios is not None:
        first, later = scenarios.load_scenario_phases(options.scenario, options)
        objs += first
    elif options.scenario in ("empty", ""):
        pass
    else:
        raise SystemExit(f"kubesim: scenario {options.scenario!r} needs kubesim.scenarios")
    deferred = list(later)  # workloads of a control plane an operator installs: created once it is up
    if not start_controllers:
        # bare pods are created after the scenario's Helm releases (so istiod injects them): see serve()
        deferred = [o for o in objs if o.get("kind") == "Pod"] + deferred
        objs = [o for o in objs if o.get("kind") != "Pod"]
    store.kubesim_deferred = deferred
    create_scenario_objects(store, objs)
    cm = None
    if start_controllers:
        cm = start_controllers_for(
            store, options, after_settle=(lambda: create_scenario_objects(store, deferred)) if deferred else None)
    return store, cm


def create_scenario_objects(store, objs):
    for obj in objs:
        owner = obj.pop("_owner", None)  # scenario objects owned by an earlier one (kubesim.scenarios)
        if owner:
            ort = store.registry.by_kind(obj.get("apiVersion", ""), owner["kind"])
            found = store.get(ort, obj["metadata"].get("namespace"), owner["name"])
            obj["metadata"]["ownerReferences"] = [{"apiVersion": found["apiVersion"], "kind": owner["kind"],
                                                   "name": owner["name"], "uid": found["metadata"]["uid"],
                                                   "controller": True, "blockOwnerDeletion": True}]
        rt = store.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        if rt is None:
            raise SystemExit(f"kubesim: scenario object of unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
        try:
            store.create(rt, obj, reset_status=False)
        except ApiError as e:
            if e.code == 409 and rt.key == "namespaces":
                cur = store.get("namespaces", None, obj["metadata"]["name"])
                labels = (obj.get("metadata") or {}).get("labels") or {}
                ann = (obj.get("metadata") or {}).get("annotations") or {}
                if labels or ann:
                    cur["metadata"].setdefault("labels", {}).update(labels)
                    cur["metadata"].setdefault("annotations", {}).update(ann)
                    store.update("namespaces", cur)
                continue
            raise SystemExit(f"kubesim: scenario object {obj.get('kind')} "
                             f"{obj.get('metadata', {}).get('name')}: {e.message}")


def start_controllers_for(store, options, after_settle=None):
    controllers = _optional("controllers")
    if controllers is None:
        if after_settle is not None:
            after_settle()
        return None
    cm = controllers.ControllerManager(store, options)
    for ext in getattr(store, "kubesim_extensions", []):
        if hasattr(ext, "install_controllers"):
            ext.install_controllers(cm, options)
    cm.start(after_settle=after_settle)
    return cm


def write_kubeconfig(path, url, ca_pem: bytes | None, token, user="kubesim-admin", cluster="kubesim",
                     user_entry: dict | None = None):
    cluster_entry = {"server": url}
    if ca_pem:
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    cfg = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": cluster, "cluster": cluster_entry}],
        "users": [{"name": user, "user": user_entry or {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user, "namespace": "default"}}],
        "current-context": cluster,
    }
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(cfg, f, default_flow_style=False)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def serve(options: SimOptions, token=None, use_tls=True) -> int:
    from .server import KubeSimServer

    secret = user_entry = None
    if options.token_ttl:
        if token:
            raise SystemExit("kubesim: --token and --token-ttl exclude each other (expiring tokens are issued)")
        if options.token_ttl < 1:
            raise SystemExit("kubesim: --token-ttl must be at least 1 second")
        if not options.kubeconfig:
            raise SystemExit("kubesim: --token-ttl needs --kubeconfig (the exec plugin's secret is written next "
                             "to it)")
        secret_file = f"{options.kubeconfig}.credential"
        secret = credentials.write_secret(secret_file)
        user_entry = credentials.exec_user(secret_file)
    else:
        token = token or secrets.token_urlsafe(32)
    scenarios = _optional("scenarios")
    releases = scenarios.helm_releases(options.scenario) if scenarios is not None and options.scenario not in (
        "", "empty") else []
    store, cm = build_cluster(options, start_controllers=not releases)
    material = tls.generate(hosts=(options.host, "localhost")) if use_tls else None
    server = KubeSimServer((options.host, options.port), store, options, token, material, credential_secret=secret)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.serve_in_thread()
    url = server.url
    if options.kubeconfig:
        write_kubeconfig(options.kubeconfig, url, material.ca_pem if material else None, token, options.user,
                         options.cluster_name, user_entry)
    if releases:
        from . import helm_scenario
        work = tempfile.mkdtemp(prefix="kubesim-helm-")
        kubeconfig = os.path.join(work, "kubeconfig")
        write_kubeconfig(kubeconfig, url, material.ca_pem if material else None, token, options.user,
                         options.cluster_name, user_entry)
        try:
            helm_scenario.install_releases(releases, kubeconfig, work)
        except BaseException:
            server.stopping = True
            store.close()
            server.shutdown()
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        cm = start_controllers_for(store, options,
                                   after_settle=lambda: create_scenario_objects(store, store.kubesim_deferred))
    sys.stdout.write(f"kubesim ready {url}\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stopping = True
        store.close()
        server.shutdown()
        server.server_close()
        if cm is not None:
            try:
                cm.stop()
            except Exception:  # best effort on the way out
                pass
        server.close_audit()
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(options_from_args(args), token=args.token, use_tls=not args.no_tls)
    return 2
