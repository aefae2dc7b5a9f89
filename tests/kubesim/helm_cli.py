"""The command line of the test ``helm`` (``tests/kubesim/bin/helm``): real Helm behind Helm's CLI (test harness).

Every action runs in Helm v4's own Go SDK through the PyPI package ``helm-python-sdk`` (``helm_python``,
which bundles ``libhelm_c``): charts are loaded and rendered, objects validated, applied (server-side apply),
waited for, and release records stored as ``sh.helm.release.v1.<name>.v<revision>`` Secrets by Helm itself.
This module only does what the ``helm`` binary's cobra commands do around the SDK (helm/helm ``pkg/cmd``):
parse flags, merge values (``-f``/``--set*``), resolve the namespace, and print the same output.

Subcommands: ``version``, ``install``, ``upgrade [--install]``, ``uninstall``, ``rollback``, ``list``, ``history``,
``status``, ``get values|manifest|notes|hooks|all``, ``template``, ``show chart|values|readme``, ``plugin list``.
Global flags as helm has them: ``--kubeconfig``, ``--kube-context``, ``-n/--namespace``, ``--kube-token``,
``--kube-apiserver``, ``--kube-ca-file``, ``--kube-insecure-skip-tls-verify``, ``--debug``; the same
``HELM_*`` environment variables and ``KUBECONFIG``.

Known differences from the helm binary (the SDK does not expose them): ``--no-hooks``, ``--skip-crds``,
``--force-replace``, ``--take-ownership``, ``--server-side``, ``--force-conflicts``, ``--post-renderer`` and
``--history-max`` on install are refused with an error rather than silently ignored.  ``bin/helm`` runs the
interpreter as ``.../helm`` so that the SDK's server-side-apply field manager (``os.Args[0]``) is ``helm``.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import tempfile

import yaml

HELM_VERSION = "v4.2.3"
# the SDK bundled by helm-python-sdk 0.2.2: helm/helm tag v4.2.3 (its commit), built with go1.26.6
GIT_COMMIT = "43e8b7feece8beb0fcba47059ec9b522fd929a64"
GO_VERSION = "go1.26.6"
KUBE_CLIENT_VERSION = "v1.36"


class HelmCliError(Exception):
    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------------ flags

# flags that take a value; the rest are booleans (which also accept --flag=true|false)
VALUE_FLAGS = {
    "--kubeconfig", "--kube-context", "-n", "--namespace", "--kube-token", "--kube-apiserver", "--kube-ca-file",
    "--kube-as-user", "--kube-as-group", "--burst-limit", "--qps", "--kube-tls-server-name", "--registry-config",
    "--repository-config", "--repository-cache", "--content-cache", "--color", "--colour",
    "-f", "--values", "--set", "--set-string", "--set-json", "--set-file", "--set-literal", "--timeout",
    "--version", "--repo", "--description", "--history-max", "-o", "--output", "--filter", "-m", "--max",
    "--offset", "--time-format", "--revision", "--post-renderer", "--post-renderer-args", "--kube-version",
    "--api-versions", "-a", "--show-only", "-s", "--labels", "-l", "--selector", "--cascade", "--username",
    "--password", "--ca-file", "--cert-file", "--key-file", "--keyring", "--name-template", "--output-dir",
    "--server-side", "--deletion-propagation", "--template",
}
# flags whose value is optional (``--wait`` alone means ``--wait=watcher``; ``--dry-run`` alone ``client``)
OPTIONAL_VALUE = {"--wait": "watcher", "--dry-run": "client"}
SHORT_BOOL = {"-i": "--install", "-A": "--all-namespaces", "-q": "--short", "-d": "--date", "-r": "--reverse",
              "-g": "--generate-name"}
REPEATABLE = {"-f", "--values", "--set", "--set-string", "--set-json", "--set-file", "--set-literal",
              "--api-versions", "-s", "--show-only", "--kube-as-group"}
ALIASES = {"-f": "--values", "-n": "--namespace", "-o": "--output", "-m": "--max", "-s": "--show-only",
           "-l": "--selector"}
# `get values -a` is --all (a boolean there)
BOOL_SHORT_IN = {("get", "-a"): "--all"}


class Args:
    def __init__(self):
        self.positional: list = []
        self.flags: dict = {}

    def get(self, name, default=None):
        v = self.flags.get(name, default)
        return v[-1] if isinstance(v, list) and name not in REPEATABLE_CANON else v

    def all(self, name) -> list:
        v = self.flags.get(name)
        return list(v) if isinstance(v, list) else ([] if v is None else [v])

    def bool(self, name) -> bool:
        v = self.get(name)
        if v is None:
            return False
        if isinstance(v, bool):
            return v
        if str(v).lower() in ("true", "1", "t"):
            return True
        if str(v).lower() in ("false", "0", "f"):
            return False
        raise HelmCliError(f'invalid argument "{v}" for "{name}" flag: strconv.ParseBool: parsing "{v}": '
                           "invalid syntax")


REPEATABLE_CANON = {ALIASES.get(f, f) for f in REPEATABLE}

# Flags each command has in helm v4.2.3 (pkg/cmd/*.go; global ones in root.go): anything else is refused the
# way cobra refuses it ("unknown flag: --all" -- e.g. `helm list --all`, removed in Helm 4).
GLOBAL_FLAGS = {"--kubeconfig", "--kube-context", "--namespace", "--kube-token", "--kube-apiserver",
                "--kube-ca-file", "--kube-as-user", "--kube-as-group", "--burst-limit", "--qps",
                "--kube-tls-server-name", "--kube-insecure-skip-tls-verify", "--registry-config",
                "--repository-config", "--repository-cache", "--content-cache", "--debug", "--color", "--colour"}
_CHART_FLAGS = {"--version", "--repo", "--username", "--password", "--ca-file", "--cert-file", "--key-file",
                "--keyring", "--verify", "--devel", "--insecure-skip-tls-verify", "--plain-http", "--pass-credentials"}
_VALUES_FLAGS = {"--values", "--set", "--set-string", "--set-json", "--set-file", "--set-literal"}
_DEPLOY_FLAGS = _CHART_FLAGS | _VALUES_FLAGS | {
    "--create-namespace", "--wait", "--wait-for-jobs", "--timeout", "--dry-run", "--atomic", "--rollback-on-failure",
    "--force-replace", "--force-conflicts", "--server-side", "--no-hooks", "--skip-crds", "--take-ownership",
    "--description", "--dependency-update", "--disable-openapi-validation", "--hide-notes", "--render-subchart-notes",
    "--post-renderer", "--post-renderer-args", "--skip-schema-validation", "--enable-dns", "--hide-secret",
    "--labels", "--output"}
COMMAND_FLAGS = {
    "version": {"--short", "--template"},
    "install": _DEPLOY_FLAGS | {"--generate-name", "--name-template", "--replace"},
    "upgrade": _DEPLOY_FLAGS | {"--install", "--reuse-values", "--reset-values", "--reset-then-reuse-values",
                                "--cleanup-on-fail", "--history-max", "--force"},
    "uninstall": {"--keep-history", "--no-hooks", "--dry-run", "--ignore-not-found", "--wait", "--timeout",
                  "--description", "--cascade"},
    "rollback": {"--wait", "--wait-for-jobs", "--timeout", "--dry-run", "--no-hooks", "--cleanup-on-fail",
                 "--force-replace", "--force-conflicts", "--server-side", "--history-max"},
    "list": {"--short", "--no-headers", "--time-format", "--date", "--reverse", "--uninstalled", "--superseded",
             "--uninstalling", "--deployed", "--failed", "--pending", "--all-namespaces", "--max", "--offset",
             "--filter", "--selector", "--output"},
    "history": {"--max", "--output"},
    "status": {"--revision", "--output", "--show-desc", "--show-resources"},
    "get": {"--revision", "--output", "--all", "--template"},
    "template": _DEPLOY_FLAGS | {"--show-only", "--include-crds", "--kube-version", "--api-versions", "--validate",
                                 "--is-upgrade", "--skip-tests", "--release-name", "--output-dir", "--name-template",
                                 "--generate-name", "--replace"},
    "show": _CHART_FLAGS | {"--jsonpath"},
    "plugin": set(),
}
COMMAND_ALIASES = {"ls": "list", "un": "uninstall", "delete": "uninstall", "del": "uninstall", "hist": "history",
                   "inspect": "show"}


def check_flags(args: "Args"):
    cmd = COMMAND_ALIASES.get(args.positional[0], args.positional[0]) if args.positional else ""
    allowed = COMMAND_FLAGS.get(cmd)
    if allowed is None:
        return
    for flag in args.flags:
        if flag not in allowed and flag not in GLOBAL_FLAGS:
            raise HelmCliError(f"unknown flag: {flag}")


def parse_args(argv: list) -> Args:
    a = Args()
    i = 0
    command = ""
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            a.positional.extend(argv[i:])
            break
        if not tok.startswith("-") or tok == "-":
            a.positional.append(tok)
            if not command:
                command = tok
            continue
        name, eq, value = tok.partition("=")
        if (command, name) in BOOL_SHORT_IN:
            name = BOOL_SHORT_IN[(command, name)]
        elif name in SHORT_BOOL:
            name = SHORT_BOOL[name]
        elif len(name) > 2 and name[0] == "-" and name[1] != "-" and name[:2] in VALUE_FLAGS and not eq:
            value, eq, name = name[2:], "=", name[:2]  # -nfoo
        canon = ALIASES.get(name, name)
        if name in VALUE_FLAGS:
            if not eq:
                if i >= len(argv):
                    raise HelmCliError(f"flag needs an argument: {tok}")
                value = argv[i]
                i += 1
            val = value
        elif name in OPTIONAL_VALUE:
            val = value if eq else OPTIONAL_VALUE[name]
        else:
            val = value if eq else True
        if canon in REPEATABLE_CANON:
            a.flags.setdefault(canon, []).append(val)
        else:
            a.flags[canon] = val
    return a


def parse_duration(text) -> int:
    """Go duration (``5m0s``, ``300s``, ``2m``) -> whole seconds."""
    if text is None:
        return 300
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        return int(s)  # Helm would reject it; accept plain seconds quietly
    total = 0.0
    pos = 0
    for m in re.finditer(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)", s):
        if m.start() != pos:
            break
        pos = m.end()
        n = float(m.group(1))
        total += n * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}[m.group(2)]
    if pos != len(s) or not s:
        raise HelmCliError(f'invalid argument "{text}" for "--timeout" flag: time: invalid duration "{text}"')
    return max(int(round(total)), 1)


# ------------------------------------------------------------------------------------------ settings

def _kubeconfig_paths(args: Args) -> list:
    explicit = args.get("--kubeconfig")
    if explicit:
        return [os.path.expanduser(explicit)]
    env = os.environ.get("KUBECONFIG")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    return [os.path.expanduser("~/.kube/config")]


def _context_namespace(args: Args) -> str | None:
    current = args.get("--kube-context") or os.environ.get("HELM_KUBECONTEXT")
    contexts = {}
    for path in _kubeconfig_paths(args):
        try:
            with open(path, encoding="utf-8") as fh:
                cfg = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError):
            continue
        current = current or cfg.get("current-context")
        for c in cfg.get("contexts") or []:
            contexts.setdefault(c.get("name"), c.get("context") or {})
    return (contexts.get(current) or {}).get("namespace") if current else None


def namespace(args: Args) -> str:
    """helm's settings.Namespace(): -n, else $HELM_NAMESPACE, else the context's namespace, else default."""
    return (args.get("--namespace") or os.environ.get("HELM_NAMESPACE") or _context_namespace(args)
            or "default")


def make_config(args: Args, ns: str | None = None, all_namespaces=False):
    import helm_python as helm

    paths = _kubeconfig_paths(args)
    kubeconfig = None
    tmp = None
    if len(paths) > 1:  # KUBECONFIG=a:b -- the SDK takes one file; merge like clientcmd (first wins)
        merged = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
        seen = {"clusters": set(), "users": set(), "contexts": set()}
        for p in paths:
            try:
                with open(p, encoding="utf-8") as fh:
                    cfg = yaml.safe_load(fh) or {}
            except OSError:
                continue
            merged.setdefault("current-context", cfg.get("current-context"))
            if not merged.get("current-context"):
                merged["current-context"] = cfg.get("current-context")
            for key in ("clusters", "users", "contexts"):
                for item in cfg.get(key) or []:
                    if item.get("name") not in seen[key]:
                        seen[key].add(item.get("name"))
                        merged[key].append(item)
        fd, tmp = tempfile.mkstemp(prefix="kubesim-helm-kubeconfig-")
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(merged, fh)
        kubeconfig = tmp
    elif paths and os.path.exists(paths[0]):
        kubeconfig = paths[0]
    insecure = args.get("--kube-insecure-skip-tls-verify")
    if insecure is None:
        insecure = os.environ.get("HELM_KUBEINSECURE_SKIP_TLS_VERIFY", "false")
    cfg = helm.Config(
        kubeconfig_path=kubeconfig,
        kube_context=args.get("--kube-context") or os.environ.get("HELM_KUBECONTEXT") or None,
        kube_token=args.get("--kube-token") or os.environ.get("HELM_KUBETOKEN") or None,
        kube_apiserver=args.get("--kube-apiserver") or os.environ.get("HELM_KUBEAPISERVER") or None,
        kube_ca_file=args.get("--kube-ca-file") or os.environ.get("HELM_KUBECAFILE") or None,
        kube_insecure_skip_tls_verify=str(insecure).lower() in ("true", "1"),
        namespace="" if all_namespaces else (ns or namespace(args)),
        storage_driver=os.environ.get("HELM_DRIVER") or None,
    )
    cfg._kubesim_tmp = tmp
    return cfg


def close_config(cfg):
    tmp = getattr(cfg, "_kubesim_tmp", None)
    cfg.close()
    if tmp:
        try:
            os.unlink(tmp)
        except OSError:
            pass


# ------------------------------------------------------------------------------------------ values

def merge_maps(a: dict, b: dict) -> dict:
    """helm's mergeMaps (pkg/cli/values/options.go): b wins, nested maps merged."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
        else:
            out[k] = v
    return out


def user_values(args: Args) -> dict:
    """-f files, then --set-json, --set, --set-string, --set-file, --set-literal (values.Options.MergeValues)."""
    import helm_python as helm

    base: dict = {}
    for path in args.all("--values"):
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
        except OSError as e:
            raise HelmCliError(f"open {path}: no such file or directory" if isinstance(e, FileNotFoundError)
                               else str(e))
        try:
            current = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise HelmCliError(f"failed to parse {path}: error converting YAML to JSON: {e}")
        if not isinstance(current, dict):
            raise HelmCliError(f"failed to parse {path}: error unmarshaling JSON: json: cannot unmarshal "
                               "array into Go value of type map[string]interface {}")
        base = merge_maps(base, current)
    parsers = (("--set-json", helm.parse_set_json), ("--set", helm.parse_set_string),
               ("--set-string", helm.parse_set_string_values), ("--set-file", helm.parse_set_file),
               ("--set-literal", helm.parse_set_literal))
    for flag, parse in parsers:
        for expr in args.all(flag):
            try:
                base = merge_maps(base, parse(expr))
            except helm.HelmError as e:
                raise HelmCliError(f"failed parsing {flag} data: {e}")
    return base


# ------------------------------------------------------------------------------------------ output

class GoTime:
    """A release timestamp as Helm stores it (RFC 3339 with nanoseconds), printed the ways Go prints it."""

    def __init__(self, iso: str):
        m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", iso)
        if not m:
            raise ValueError(iso)
        base = datetime.datetime.fromisoformat(m.group(1) + (m.group(3).replace("Z", "+00:00")))
        self.local = base.astimezone()
        self.nanos = (m.group(2) or "").ljust(9, "0")[:9]

    def string(self) -> str:
        """time.Time.String(): ``2006-01-02 15:04:05.999999999 -0700 MST``."""
        t = self.local
        frac = ("." + self.nanos).rstrip("0").rstrip(".")
        off = t.strftime("%z")
        name = t.tzname() or off
        if name.startswith("UTC") and off == "+0000":
            name = "UTC"
        return t.strftime("%Y-%m-%d %H:%M:%S") + frac + f" {off} {name}"

    def ansic(self) -> str:
        t = self.local
        return t.strftime("%a %b ") + f"{t.day:2d}" + t.strftime(" %H:%M:%S %Y")

    def sort_key(self):
        return (self.local.timestamp(), self.nanos)


def _go_time(iso: str | None):
    if not iso:
        return None
    try:
        return GoTime(iso)
    except ValueError:
        return None


def go_time_string(t) -> str:
    return "-" if t is None else t.string()


def go_ansic(t) -> str:
    return "" if t is None else t.ansic()


def encode_yaml(obj) -> str:
    if obj is None:
        return "null\n"
    return yaml.safe_dump(obj, default_flow_style=False, sort_keys=True)


def encode_json(obj) -> str:
    return json.dumps(obj, separators=(",", ":")) + "\n"


def write_table(rows: list) -> str:
    """gosuri/uitable as helm uses it: columns padded, separated by a tab."""
    if not rows:
        return ""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        lines.append("\t".join(str(c).ljust(widths[i]) for i, c in enumerate(r)))
    return "\n".join(lines) + "\n"


def out(text: str):
    sys.stdout.write(text)


# ------------------------------------------------------------------------------------------ releases

def _release_info(cfg, name, revision=None) -> dict:
    """Everything helm's status/get print: the SDK's summary plus the stored release's info/config/hooks."""
    kw = {"revision": int(revision)} if revision else {}
    full = cfg.get_all(name, **kw)
    summary = dict(full.get("summary") or {})
    if not summary.get("manifest"):
        try:
            summary = dict(cfg.status(name, **kw), **{k: v for k, v in summary.items() if v})
        except Exception:  # noqa: BLE001 - the summary from get_all is enough
            pass
    summary["_info"] = full.get("info") or {}
    summary["_config"] = full.get("config")
    summary["_hooks"] = full.get("hooks") or []
    return summary


def _chart_label(summary: dict) -> str:
    return f"{summary.get('chart_name', '')}-{summary.get('chart_version', '')}"


def status_table(summary: dict, show_notes=True) -> str:
    info = summary.get("_info") or {}
    lines = [f"NAME: {summary.get('name')}"]
    last = _go_time(info.get("last_deployed") or summary.get("deployed_at"))
    if last:
        lines.append(f"LAST DEPLOYED: {go_ansic(last)}")
    lines += [f"NAMESPACE: {summary.get('namespace')}", f"STATUS: {summary.get('status')}",
              f"REVISION: {summary.get('revision')}", f"DESCRIPTION: {info.get('description', '')}"]
    lines.append("TEST SUITE: None")
    text = "\n".join(lines) + "\n"
    notes = summary.get("notes") or info.get("notes")
    if show_notes and notes:
        text += f"NOTES:\n{notes.strip()}\n"
    return text


def release_object(summary: dict) -> dict:
    """The release record as ``helm status -o json|yaml`` encodes it (release.Release)."""
    info = dict(summary.get("_info") or {})
    info.setdefault("status", summary.get("status"))
    if summary.get("notes"):
        info.setdefault("notes", summary["notes"])
    obj = {"name": summary.get("name"), "info": info,
           "chart": {"metadata": {"name": summary.get("chart_name"), "version": summary.get("chart_version"),
                                  "appVersion": summary.get("app_version")}},
           "manifest": summary.get("manifest", ""), "version": summary.get("revision"),
           "namespace": summary.get("namespace")}
    if summary.get("_config"):
        obj["config"] = summary["_config"]
    return obj


def print_status(summary: dict, fmt: str, show_notes=True):
    if fmt == "json":
        out(encode_json(release_object(summary)))
    elif fmt == "yaml":
        out(encode_yaml(release_object(summary)))
    else:
        out(status_table(summary, show_notes))


def _output(args: Args) -> str:
    fmt = (args.get("--output") or "table").lower()
    if fmt not in ("table", "json", "yaml"):
        raise HelmCliError(f'invalid argument "{fmt}" for "-o, --output" flag: invalid format type')
    return fmt


def _unsupported(args: Args, flags):
    for f in flags:
        if args.bool(f) if f not in VALUE_FLAGS else args.get(f) is not None:
            raise HelmCliError(f"{f} is not supported by the test helm (tests/kubesim/bin/helm): the Helm SDK it "
                               "runs on does not expose it")


def _sdk_error(e) -> str:
    return str(getattr(e, "detail", None) or e)


# ------------------------------------------------------------------------------------------ commands

def cmd_version(args: Args):
    if args.bool("--short"):
        out(f"{HELM_VERSION}+g{GIT_COMMIT[:7]}\n")
        return 0
    out(f'version.BuildInfo{{Version:"{HELM_VERSION}", GitCommit:"{GIT_COMMIT}", GitTreeState:"clean", '
        f'GoVersion:"{GO_VERSION}", KubeClientVersion:"{KUBE_CLIENT_VERSION}"}}\n')
    return 0


def _wait(args: Args):
    w = args.get("--wait")
    if w is None or w is False:
        return None
    if w is True:
        return "watcher"
    w = str(w)
    if w in ("true",):
        return "watcher"
    if w in ("false",):
        return None
    if w not in ("watcher", "legacy", "hookOnly"):
        raise HelmCliError(f'invalid argument "{w}" for "--wait" flag: invalid wait input "{w}". Valid inputs '
                           "are watcher, hookOnly, and legacy")
    return w


def _dry_run(args: Args):
    d = args.get("--dry-run")
    if d is None or d is False or d == "false" or d == "none":
        return None
    if d is True or d == "true":
        return "client"
    if d not in ("client", "server"):
        raise HelmCliError(f'invalid dry-run value ({d}). Must be "none", "server", or "client"')
    return d


def _chart_ref(ref: str) -> str:
    if "://" in ref and not ref.startswith("oci://"):
        return ref
    if os.path.exists(ref):
        return os.path.abspath(ref)
    return ref


DEPLOY_UNSUPPORTED = ["--no-hooks", "--skip-crds", "--force-replace", "--force", "--take-ownership",
                      "--force-conflicts", "--post-renderer", "--dependency-update", "--replace",
                      "--reset-then-reuse-values"]


def _install(args: Args, cfg, name, chart, values, ns):
    import helm_python as helm

    kw = dict(namespace=ns, timeout=parse_duration(args.get("--timeout")), wait=_wait(args),
              dry_run=_dry_run(args), create_namespace=args.bool("--create-namespace"),
              rollback_on_failure=args.bool("--rollback-on-failure") or args.bool("--atomic"),
              description=args.get("--description"), chart_repo_url=args.get("--repo"),
              chart_version=args.get("--version"))
    try:
        return cfg.install(_chart_ref(chart), name, values, **kw)
    except helm.HelmError as e:
        raise HelmCliError(f"INSTALLATION FAILED: {_sdk_error(e)}")


def cmd_install(args: Args):
    _unsupported(args, DEPLOY_UNSUPPORTED + ["--history-max"])
    pos = args.positional[1:]
    if args.bool("--generate-name"):
        raise HelmCliError("--generate-name is not supported by the test helm")
    if len(pos) != 2:
        raise HelmCliError(f'"helm install" requires 2 arguments\n\nUsage:  helm install [NAME] [CHART] [flags]')
    name, chart = pos
    ns = namespace(args)
    values = user_values(args)
    cfg = make_config(args, ns)
    try:
        rel = _install(args, cfg, name, chart, values, ns)
        summary = _summary_after(cfg, rel, args)
    finally:
        close_config(cfg)
    print_status(summary, _output(args), not args.bool("--hide-notes"))
    return 0


def _summary_after(cfg, rel, args) -> dict:
    """Status of the release just written (dry runs are not stored: use what the SDK returned)."""
    if _dry_run(args):
        return dict(rel, _info={"status": rel.get("status"), "description": "Dry run complete"})
    try:
        return _release_info(cfg, rel["name"])
    except Exception:  # noqa: BLE001 - fall back to the summary the action returned
        return dict(rel)


def cmd_upgrade(args: Args):
    import helm_python as helm

    _unsupported(args, DEPLOY_UNSUPPORTED)
    pos = args.positional[1:]
    if len(pos) != 2:
        raise HelmCliError('"helm upgrade" requires 2 arguments\n\nUsage:  helm upgrade [RELEASE] [CHART] [flags]')
    name, chart = pos
    ns = namespace(args)
    fmt = _output(args)
    values = user_values(args)
    cfg = make_config(args, ns)
    try:
        exists = True
        try:
            hist = cfg.history(name, max_revisions=1)
            if hist and all(h.get("status") == "uninstalled" for h in hist):
                exists = False
        except helm.HelmNotFoundError:
            exists = False
        if not exists:
            if not args.bool("--install"):
                raise HelmCliError(f'UPGRADE FAILED: "{name}" has no deployed releases')
            if fmt == "table":
                out(f'Release "{name}" does not exist. Installing it now.\n')
            rel = _install(args, cfg, name, chart, values, ns)
            summary = _summary_after(cfg, rel, args)
            print_status(summary, fmt, not args.bool("--hide-notes"))
            return 0
        history_max = args.get("--history-max")
        kw = dict(namespace=ns, timeout=parse_duration(args.get("--timeout")), wait=_wait(args),
                  dry_run=_dry_run(args), max_history=int(history_max) if history_max is not None else 10,
                  reset_values=args.bool("--reset-values"), reuse_values=args.bool("--reuse-values"),
                  cleanup_on_fail=args.bool("--cleanup-on-fail"),
                  rollback_on_failure=args.bool("--rollback-on-failure") or args.bool("--atomic"),
                  description=args.get("--description"), chart_repo_url=args.get("--repo"),
                  chart_version=args.get("--version"))
        try:
            rel = cfg.upgrade(_chart_ref(chart), name, values, **kw)
        except helm.HelmError as e:
            raise HelmCliError(f"UPGRADE FAILED: {_sdk_error(e)}")
        summary = _summary_after(cfg, rel, args)
    finally:
        close_config(cfg)
    if fmt == "table":
        out(f'Release "{name}" has been upgraded. Happy Helming!\n')
    print_status(summary, fmt, not args.bool("--hide-notes"))
    return 0


def cmd_uninstall(args: Args):
    import helm_python as helm

    _unsupported(args, ["--no-hooks"])
    names = args.positional[1:]
    if not names:
        raise HelmCliError('"helm uninstall" requires at least 1 argument\n\nUsage:  helm uninstall RELEASE_NAME '
                           "[...] [flags]")
    cfg = make_config(args)
    try:
        for name in names:
            try:
                res = cfg.uninstall(name, keep_history=args.bool("--keep-history"),
                                    timeout=parse_duration(args.get("--timeout")), dry_run=args.bool("--dry-run"),
                                    ignore_not_found=args.bool("--ignore-not-found"), wait=_wait(args),
                                    description=args.get("--description"))
            except helm.HelmNotFoundError as e:
                raise HelmCliError(f"uninstall: Release not loaded: {name}: release: not found"
                                   if "not found" in _sdk_error(e) else _sdk_error(e))
            except helm.HelmError as e:
                raise HelmCliError(_sdk_error(e))
            if res.get("info"):
                out(res["info"] + "\n")
            out(f'release "{name}" uninstalled\n')
    finally:
        close_config(cfg)
    return 0


def cmd_rollback(args: Args):
    import helm_python as helm

    pos = args.positional[1:]
    if not pos:
        raise HelmCliError('"helm rollback" requires at least 1 argument')
    cfg = make_config(args)
    try:
        cfg.rollback(pos[0], version=int(pos[1]) if len(pos) > 1 else None,
                     timeout=parse_duration(args.get("--timeout")), wait=_wait(args), dry_run=_dry_run(args))
    except helm.HelmError as e:
        raise HelmCliError(_sdk_error(e))
    finally:
        close_config(cfg)
    out("Rollback was a success! Happy Helming!\n")
    return 0


STATE_FLAGS = {"--deployed": "deployed", "--failed": "failed", "--uninstalled": "uninstalled",
               "--superseded": "superseded", "--uninstalling": "uninstalling",
               "--pending": ("pending-install", "pending-upgrade", "pending-rollback")}


def cmd_list(args: Args):
    fmt = _output(args)
    all_ns = args.bool("--all-namespaces")
    cfg = make_config(args, all_namespaces=all_ns)
    try:
        rels = cfg.list(all_namespaces=all_ns, name_filter=args.get("--filter") or None)
    finally:
        close_config(cfg)
    infos = {}  # the stored release's info: last_deployed with Helm's full precision
    for ns in sorted({r["namespace"] for r in rels}):
        ncfg = make_config(args, ns)
        try:
            for r in rels:
                if r["namespace"] == ns:
                    try:
                        infos[(ns, r["name"])] = ncfg.get_all(r["name"], revision=r["revision"]).get("info") or {}
                    except Exception:  # noqa: BLE001 - the summary's deployed_at is enough
                        infos[(ns, r["name"])] = {}
        finally:
            close_config(ncfg)
    wanted = set()
    for flag, states in STATE_FLAGS.items():
        if args.bool(flag):
            wanted.update([states] if isinstance(states, str) else states)
    if wanted:  # action.List's state mask, applied after keeping the latest revision of each release
        rels = [r for r in rels if r.get("status") in wanted]
    def by_date(r):
        t = _go_time((infos.get((r["namespace"], r["name"])) or {}).get("last_deployed") or r.get("deployed_at"))
        return t.sort_key() if t else (0, "")
    key = by_date if args.bool("--date") else (lambda r: r["name"])
    rels = sorted(rels, key=key, reverse=args.bool("--reverse"))
    offset = int(args.get("--offset") or 0)
    limit = int(args.get("--max") or 256)
    rels = rels[offset:offset + limit] if limit > 0 else rels[offset:]
    elements = []
    for r in rels:
        info = infos.get((r["namespace"], r["name"])) or {}
        t = _go_time(info.get("last_deployed") or r.get("deployed_at"))
        tf = args.get("--time-format")
        updated = "-" if t is None else (_go_format(t, tf) if tf else go_time_string(t))
        elements.append({"name": r["name"], "namespace": r["namespace"], "revision": str(r["revision"]),
                         "updated": updated, "status": r["status"], "chart": _chart_label(r),
                         "app_version": r.get("app_version", "")})
    if args.bool("--short"):
        names = [e["name"] for e in elements]
        out(encode_json(names) if fmt == "json" else encode_yaml(names) if fmt == "yaml"
            else "".join(n + "\n" for n in names))
        return 0
    if fmt == "json":
        out(encode_json(elements))
    elif fmt == "yaml":
        out(encode_yaml(elements) if elements else "[]\n")
    else:
        rows = [] if args.bool("--no-headers") else [["NAME", "NAMESPACE", "REVISION", "UPDATED", "STATUS", "CHART",
                                                     "APP VERSION"]]
        rows += [[e["name"], e["namespace"], e["revision"], e["updated"], e["status"], e["chart"],
                  e["app_version"]] for e in elements]
        out(write_table(rows))
    return 0


def _go_format(t, layout: str) -> str:
    table = [("2006", "%Y"), ("01", "%m"), ("02", "%d"), ("15", "%H"), ("04", "%M"), ("05", "%S"),
             ("Z0700", "%z"), ("-0700", "%z"), ("MST", "%Z"), ("Jan", "%b"), ("Mon", "%a")]
    fmt = layout
    for go, py in table:
        fmt = fmt.replace(go, py)
    return t.local.strftime(fmt)


def cmd_history(args: Args):
    import helm_python as helm

    fmt = _output(args)
    name = args.positional[1] if len(args.positional) > 1 else None
    if not name:
        raise HelmCliError('"helm history" requires 1 argument')
    cfg = make_config(args)
    try:
        try:
            hist = cfg.history(name, max_revisions=int(args.get("--max") or 256))
        except helm.HelmNotFoundError:
            raise HelmCliError("release: not found")
        infos = {h["revision"]: cfg.get_all(name, revision=h["revision"]).get("info") or {} for h in hist}
    finally:
        close_config(cfg)
    items = [{"revision": h["revision"], "updated": (infos[h["revision"]].get("last_deployed") or ""),
              "status": h["status"], "chart": _chart_label(h), "app_version": h.get("app_version", ""),
              "description": infos[h["revision"]].get("description", "")} for h in hist]
    if fmt == "json":
        out(encode_json(items))
    elif fmt == "yaml":
        out(encode_yaml(items))
    else:
        rows = [["REVISION", "UPDATED", "STATUS", "CHART", "APP VERSION", "DESCRIPTION"]]
        rows += [[i["revision"], go_ansic(_go_time(i["updated"])), i["status"], i["chart"], i["app_version"],
                  i["description"]] for i in items]
        out(write_table(rows))
    return 0


def _load_release(args: Args, name):
    import helm_python as helm

    cfg = make_config(args)
    try:
        return _release_info(cfg, name, args.get("--revision"))
    except helm.HelmNotFoundError:
        raise HelmCliError("release: not found")
    except helm.HelmError as e:
        raise HelmCliError(_sdk_error(e))
    finally:
        close_config(cfg)


def cmd_status(args: Args):
    if len(args.positional) < 2:
        raise HelmCliError('"helm status" requires 1 argument\n\nUsage:  helm status RELEASE_NAME [flags]')
    summary = _load_release(args, args.positional[1])
    print_status(summary, _output(args), not args.bool("--hide-notes"))
    return 0


def cmd_get(args: Args):
    import helm_python as helm

    if len(args.positional) < 3:
        raise HelmCliError('"helm get" requires a subcommand and a release name')
    what, name = args.positional[1], args.positional[2]
    fmt = _output(args)
    if what == "values":
        cfg = make_config(args)
        try:
            kw = {"revision": int(args.get("--revision"))} if args.get("--revision") else {}
            vals = cfg.get_values(name, all_values=args.bool("--all"), **kw)
        except helm.HelmNotFoundError:
            raise HelmCliError("release: not found")
        finally:
            close_config(cfg)
        vals = vals if vals else None
        if fmt == "json":
            out(encode_json(vals))
        elif fmt == "yaml":
            out(encode_yaml(vals))
        else:
            out(("COMPUTED VALUES:\n" if args.bool("--all") else "USER-SUPPLIED VALUES:\n") + encode_yaml(vals))
        return 0
    summary = _load_release(args, name)
    if what == "manifest":
        out(summary.get("manifest", ""))
    elif what == "notes":
        notes = summary.get("notes") or (summary.get("_info") or {}).get("notes") or ""
        if notes:
            out(f"NOTES:\n{notes}\n")
    elif what == "hooks":
        for h in summary.get("_hooks") or []:
            out(f"---\n# Source: {h.get('path', '')}\n{h.get('manifest', '')}\n")
    elif what == "all":
        out(status_table(summary) + "MANIFEST:\n" + summary.get("manifest", ""))
    else:
        raise HelmCliError(f'unknown command "{what}" for "helm get"')
    return 0


def cmd_template(args: Args):
    _unsupported(args, ["--post-renderer"])
    pos = args.positional[1:]
    if len(pos) == 1:
        name, chart = "release-name", pos[0]
    elif len(pos) == 2:
        name, chart = pos
    else:
        raise HelmCliError('"helm template" requires at most 2 arguments')
    import helm_python as helm

    ns = namespace(args)
    values = user_values(args)
    cfg = make_config(args, ns)
    try:
        rel = cfg.install(_chart_ref(chart), name, values, namespace=ns, dry_run="client",
                          chart_version=args.get("--version"), chart_repo_url=args.get("--repo"))
    except helm.HelmError as e:
        raise HelmCliError(_sdk_error(e))
    finally:
        close_config(cfg)
    manifest = rel.get("manifest", "")
    show_only = args.all("--show-only")
    if show_only:
        docs = [d for d in re.split(r"(?m)^---\n", manifest) if d.strip()]
        picked = [d for d in docs if any(re.match(rf"# Source: [^/]+/{re.escape(s)}\n", d) for s in show_only)]
        if not picked:
            raise HelmCliError(f"could not find template {show_only[0]} in chart")
        manifest = "".join("---\n" + d for d in picked)
    out(manifest)
    return 0


CHART_FIELD_ORDER = ["name", "home", "sources", "version", "description", "keywords", "maintainers", "icon",
                     "apiVersion", "condition", "tags", "appVersion", "deprecated", "annotations", "kubeVersion",
                     "dependencies", "type"]


def cmd_show(args: Args):
    import helm_python as helm

    if len(args.positional) < 3:
        raise HelmCliError('"helm show" requires a subcommand and a chart')
    what, ref = args.positional[1], args.positional[2]
    path = _chart_ref(ref)
    if not os.path.exists(path):
        raise HelmCliError(f"non-absolute URLs should be in form of repo_name/path_to_chart, got: {ref}"
                           if "/" not in ref else f"repo {ref.split('/')[0]} not found")
    try:
        chart = helm.Chart.load(path)
    except helm.HelmError as e:
        raise HelmCliError(_sdk_error(e))
    with chart:
        if what == "chart":
            meta = chart.metadata
            ordered = {k: meta[k] for k in CHART_FIELD_ORDER if meta.get(k) not in (None, "", [], {}, False)}
            out(yaml.safe_dump(ordered, default_flow_style=False, sort_keys=False))
        elif what == "values":
            raw = next((f[1] for f in _raw_files(path) if f[0] == "values.yaml"), None)
            out(raw if raw is not None else encode_yaml(chart.values))
        elif what == "readme":
            raw = next((f[1] for f in _raw_files(path) if f[0].lower().startswith("readme")), "")
            out(raw)
        else:
            raise HelmCliError(f'unknown command "{what}" for "helm show"')
    return 0


def _raw_files(path):
    if os.path.isdir(path):
        for n in sorted(os.listdir(path)):
            p = os.path.join(path, n)
            if os.path.isfile(p):
                with open(p, encoding="utf-8", errors="replace") as fh:
                    yield n, fh.read()


def cmd_plugin(args: Args):
    if len(args.positional) >= 2 and args.positional[1] in ("list", "ls"):
        out(write_table([["NAME", "VERSION", "TYPE", "APIVERSION", "PROVENANCE", "SOURCE"]]))
        return 0
    raise HelmCliError("only `helm plugin list` is supported by the test helm")


COMMANDS = {"version": cmd_version, "install": cmd_install, "upgrade": cmd_upgrade, "uninstall": cmd_uninstall,
            "delete": cmd_uninstall, "un": cmd_uninstall, "del": cmd_uninstall, "rollback": cmd_rollback,
            "list": cmd_list, "ls": cmd_list, "history": cmd_history, "hist": cmd_history, "status": cmd_status,
            "get": cmd_get, "template": cmd_template, "show": cmd_show, "inspect": cmd_show, "plugin": cmd_plugin}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse_args(argv)
        if not args.positional:
            out("The Kubernetes package manager (test helm: Helm v4's SDK through helm-python-sdk)\n\n"
                "Usage:\n  helm [command]\n")
            return 0
        cmd = COMMANDS.get(args.positional[0])
        if cmd is not None:
            check_flags(args)
        if cmd is None:
            raise HelmCliError(f'unknown command "{args.positional[0]}" for "helm"\n'
                               "Run 'helm --help' for usage.")
        return cmd(args)
    except HelmCliError as e:
        sys.stderr.write(f"Error: {e}\n")
        return e.code
    except ModuleNotFoundError as e:
        if e.name == "helm_python":
            sys.stderr.write("Error: the test helm needs the PyPI package helm-python-sdk (requirements-test.txt)\n")
            return 1
        raise
