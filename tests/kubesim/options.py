"""SimOptions: everything the command line can set, passed to every part of the simulator
(server, store, scenarios, admission, controllers, metrics).  Test harness."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SimOptions:
    scenario: str = "empty"
    host: str = "127.0.0.1"
    port: int = 0
    kubeconfig: str | None = None
    pod_ready_seconds: float = 0.5
    pod_terminate_seconds: float = 0.3  # deleted pods stay Terminating that long (0: removed at once)
    crash_proxy_versions: list = field(default_factory=list)
    bad_proxy_versions: list = field(default_factory=list)
    missing_images: list = field(default_factory=list)  # image globs the registry does not have (kubesim.images)
    api_error_rate: float = 0.0
    latency_ms: float = 0.0
    drop_watch_rate: float = 0.0
    token_ttl: float = 0.0  # > 0: bearer tokens expire, renewed by an exec plugin (kubesim.credentials)
    conflict_rate: float = 0.0  # fraction of writes raced by another writer (kubesim.faults)
    seed: int | None = None
    audit_log: str | None = None
    authorize_rules: str | None = None
    namespaces: int = 10
    nodes: int | None = None  # --nodes: worker nodes (default: the scenario's)
    deployments: int = 2
    replicas: int = 2
    watch_history: int = 10000  # watch events kept per resource type (older versions answer 410)
    user: str = "kubesim-admin"
    cluster_name: str = "kubesim"
    kubernetes_version: str = "v1.32.0"
    features: list = field(default_factory=list)  # optional platform parts (cli.FEATURES)
