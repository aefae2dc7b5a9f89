"""Bad input (issue 5): every bad input tried gives a clear error and changes nothing on the cluster.

The cluster is the ``blog`` scenario part-way through an upgrade (1-15-4 installed, tag ``default``
moved to it, so every workload is stale and a careless wave would restart things), plus a namespace
``mixed`` carrying both ``istio-injection=disabled`` and ``istio.io/rev=default`` (Istio's injector skips it:
``istio-injection`` wins), with a Deployment whose pod therefore runs without sidecar -- restarting it "onto
the new revision" could never succeed.  Each case snapshots the
uid and resourceVersion of every object the server holds before and after and requires them equal.

With ``MESHOPS_BAD_INPUT_TABLE=path`` the errors seen are written as a Markdown table (the README's "Bad input" table
is made that way).
"""

import os
import re
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402

TABLE = []


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    sim = rs.Sim(tmp, scenario="blog", audit=True)
    try:
        rs.install_and_tag(tmp, sim)
        sim.request("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "mixed", "labels": {"istio-injection": "disabled", "istio.io/rev": "default"}}})
        sim.request("POST", "/apis/apps/v1/namespaces/mixed/deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "mixed"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "mixed"}},
                     "template": {"metadata": {"labels": {"app": "mixed"}},
                                  "spec": {"containers": [{"name": "app", "image": "docker.io/library/nginx:1.23"}]}}}})
        rs.wait_for(lambda: rs.rollouts_complete(sim), what="a settled cluster")
        yield sim, tmp
    finally:
        sim.stop()
        path = os.environ.get("MESHOPS_BAD_INPUT_TABLE")
        if path and TABLE:
            _write_table(path)


def _write_table(path):
    lines = ["| bad input | how it was given | error |", "|---|---|---|"]
    for what, how, err in TABLE:
        err = re.sub(r"\s+", " ", err).strip().replace("|", "\\|")
        lines.append("| %s | %s | %s |" % (what, how.replace("|", "\\|"), err))
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def _bad_kubeconfig(sim, tmp, server=None, token=None):
    cfg = rs.deep_copy(sim.kubeconfig_data)
    if server:
        for c in cfg["clusters"]:
            c["cluster"]["server"] = server
    if token:
        for u in cfg["users"]:
            u["user"] = {"token": token}
    path = os.path.join(str(tmp), "bad-%s.yaml" % ("server" if server else "token"))
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh)
    return path


def _closed_port_url():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return "https://127.0.0.1:%d" % port


def _assert_unchanged(sim, before, what):
    after = rs.snapshot(sim)
    diff = rs.diff_snapshots(before, after)
    assert diff == [], "%s changed the cluster:\n%s" % (what, "\n".join(diff))


# --- through the playbook ----------------------------------------------------------------------------

def _playbook_cases(sim, tmp):
    bar_nope = [{"name": "wave1", "namespaces": ["bar", "nope"]}]
    return [
        # (id, description, tags, vars overrides, istioctl version, expected error pattern)
        ("dotted-revision-precheck", "dotted revision", "precheck",
         {"istio_canary_to_revision": "1.15.4"}, rs.NEW_VERSION, r"1\.15\.4.*1-15-4"),
        ("dotted-revision-install", "dotted revision", "install",
         {"istio_canary_to_revision": "1.15.4"}, rs.NEW_VERSION, r"1\.15\.4.*1-15-4"),
        ("unknown-revision-tag", "unknown revision", "tag",
         {"istio_canary_to_revision": "1-16-0", "istio_canary_to_version": "1.16.0"}, "1.16.0",
         r"1-16-0.*(not found|does not exist|no istiod|not installed)"),
        ("missing-namespace-wave", "missing namespace", "wave1",
         {"istio_canary_waves": bar_nope}, rs.NEW_VERSION, r"nope.*(not found|does not exist)|(not found|does not exist).*nope"),
        ("wrong-istioctl-precheck", "wrong istioctl version", "precheck", {}, "1.16.0", r"1\.16\.0.*1\.15\.4|1\.15\.4.*1\.16\.0"),
        ("unreachable-api", "unreachable API server", "precheck",
         {"kubeconfig": _bad_kubeconfig(sim, tmp, server=_closed_port_url())}, rs.NEW_VERSION,
         r"(unreachable|could not (be )?reach|connection refused|cannot connect|not reachable)"),
        ("wrong-token", "wrong or expired credentials", "precheck",
         {"kubeconfig": _bad_kubeconfig(sim, tmp, token="expired-or-wrong-token")}, rs.NEW_VERSION,
         r"(401|unauthori[sz]ed|authentication|credentials)"),
        ("waves-not-a-list", "malformed waves (a string)", "wave1",
         {"istio_canary_waves": "bar"}, rs.NEW_VERSION, r"istio_canary_waves|waves?"),
        ("wave-without-target", "malformed waves (no namespaces, selector or query)", "wave1",
         {"istio_canary_waves": [{"name": "wave1"}]}, rs.NEW_VERSION, r"namespaces|namespace_selector|query"),
        ("wave-namespaces-string", "malformed waves (namespaces not a list)", "wave1",
         {"istio_canary_waves": [{"name": "wave1", "namespaces": 42}]}, rs.NEW_VERSION, r"namespaces|list"),
        ("wave-bad-query", "malformed waves (invalid JMESPath query)", "wave1",
         {"istio_canary_waves": [{"name": "wave1", "query": "[?labels.tier=='edge'"}]}, rs.NEW_VERSION,
         r"(jmespath|query|expression|syntax)"),
    ]


PLAYBOOK_IDS = ["dotted-revision-precheck", "dotted-revision-install", "unknown-revision-tag",
                "missing-namespace-wave", "wrong-istioctl-precheck", "unreachable-api", "wrong-token",
                "waves-not-a-list", "wave-without-target", "wave-namespaces-string",
                "wave-bad-query"]


@pytest.mark.parametrize("case_id", PLAYBOOK_IDS)
def test_playbook_bad_input(cluster, case_id):
    sim, tmp = cluster
    case = next(c for c in _playbook_cases(sim, tmp) if c[0] == case_id)
    what, tags, overrides, istioctl_version, pattern = case[1:]
    before = rs.snapshot(sim)
    res = rs.run_playbook(tmp, tags, rs.upgrade_vars(sim, **overrides), istioctl_version=istioctl_version)
    err = rs.error_text(res)
    assert res.rc != 0, res
    assert re.search(pattern, err, re.I | re.S), "unclear error for %s: %r\n%r" % (what, err, res)
    _assert_unchanged(sim, before, case_id)
    how = "`--tags %s` with %s" % (tags, ", ".join("`%s=%s`" % (k, v if k != "kubeconfig" else "<kubeconfig>")
                                                   for k, v in overrides.items()) or "the defaults")
    if istioctl_version != rs.NEW_VERSION:
        how += " and istioctl %s" % istioctl_version
    TABLE.append((what, how, err))


# --- through the modules -----------------------------------------------------------------------------

def _module_cases(sim, tmp):
    kc = sim.kubeconfig
    return [
        ("module-dotted-revision", "dotted revision", "istio_revision",
         {"kubeconfig": kc, "revision": "1.15.4", "istioctl_path": rs.ISTIOCTL}, rs.NEW_VERSION, r"1-15-4"),
        ("module-unknown-revision", "unknown revision", "istio_revision_tag",
         {"kubeconfig": kc, "tag": "default", "revision": "1-16-0"}, rs.NEW_VERSION,
         r"1-16-0.*(not found|does not exist|no istiod|not installed)"),
        ("module-missing-namespace", "missing namespace", "rollout_restart",
         {"kubeconfig": kc, "namespaces": ["bar", "nope"], "wait_timeout": 30}, rs.NEW_VERSION,
         r"nope.*(not found|does not exist)|(not found|does not exist).*nope"),
        ("module-wrong-istioctl", "wrong istioctl version", "istio_revision",
         {"kubeconfig": kc, "revision": rs.NEW_REV, "istioctl_path": rs.ISTIOCTL}, "1.16.0",
         r"1\.16\.0.*1\.15\.4|1\.15\.4.*1\.16\.0"),
        ("module-missing-istioctl", "missing istioctl", "istio_revision",
         {"kubeconfig": kc, "revision": "1-16-0", "istioctl_path": "/nonexistent/istioctl"}, rs.NEW_VERSION,
         r"/nonexistent/istioctl"),
        ("module-unreachable", "unreachable API server", "istio_revision_info",
         {"host": _closed_port_url(), "api_key": "x" * 20, "validate_certs": False}, rs.NEW_VERSION,
         r"(unreachable|could not (be )?reach|connection refused|cannot connect|not reachable)"),
        ("module-wrong-token", "wrong or expired credentials", "istio_revision_tag",
         {"host": sim.server, "api_key": "expired-or-wrong-token", "validate_certs": False,
          "tag": "default", "revision": rs.OLD_REV}, rs.NEW_VERSION, r"(401|unauthori[sz]ed|authentication|credentials)"),
    ]


MODULE_IDS = ["module-dotted-revision", "module-unknown-revision", "module-missing-namespace",
              "module-wrong-istioctl", "module-missing-istioctl", "module-unreachable", "module-wrong-token"]


@pytest.mark.parametrize("case_id", MODULE_IDS)
def test_module_bad_input(cluster, case_id):
    sim, tmp = cluster
    case = next(c for c in _module_cases(sim, tmp) if c[0] == case_id)
    what, module, args, istioctl_version, pattern = case[1:]
    before = rs.snapshot(sim)
    result, raw = rs.run_module(tmp, module, args, istioctl_version=istioctl_version)
    assert raw.rc != 0 and result and result.get("failed"), raw
    msg = result.get("msg", "")
    assert re.search(pattern, msg, re.I | re.S), "unclear error for %s: %r" % (what, msg)
    assert "api_key" not in msg and "x" * 20 not in msg and "expired-or-wrong-token" not in msg
    _assert_unchanged(sim, before, case_id)
    shown = {k: ("<kubeconfig>" if k == "kubeconfig" else "<hidden>" if k == "api_key" else v)
             for k, v in args.items()}
    how = "`%s` with `%s`" % (module, ", ".join("%s=%s" % kv for kv in shown.items()))
    if istioctl_version != rs.NEW_VERSION:
        how += " and istioctl %s" % istioctl_version
    TABLE.append((what, how, msg))


def test_conflicting_labels_are_reported_and_never_restarted(cluster):
    """Conflicting labels are not an input error of a phase but a finding about the cluster (issue 4:
    precheck reports them, and migrates legacy labels only when asked).  What must hold: precheck names
    the namespace and the labels; a wave or rollout_restart over that namespace restarts nothing (a
    restart there could only produce pods without sidecar) and says why; only the upgrade record changes."""
    sim, tmp = cluster
    before = rs.snapshot(sim)
    res = rs.run_playbook(tmp, "precheck", rs.upgrade_vars(sim))
    assert res.rc == 0, res
    finding = next((line.strip().strip('",') for line in res.stdout.splitlines()
                    if "mixed" in line and "istio-injection" in line), "")
    assert finding, res
    TABLE.append(("conflicting namespace labels", "`--tags precheck` (a finding, reported; not a failure)", finding))

    res = rs.run_playbook(tmp, "wave1", rs.upgrade_vars(
        sim, istio_canary_waves=[{"name": "wave1", "namespaces": ["mixed"]}]))
    assert res.rc == 0, res
    result, raw = rs.run_module(tmp, "rollout_restart", {
        "kubeconfig": sim.kubeconfig, "namespaces": ["mixed"], "revision": rs.NEW_REV, "wait_timeout": 30})
    assert result and not result.get("failed"), raw
    (workload,) = result["workloads"]
    assert workload["action"] != "restarted" and "istio-injection=disabled" in (workload.get("reason") or ""), workload
    TABLE.append(("conflicting namespace labels", "`rollout_restart` with `namespaces=[mixed], revision=1-15-4`",
                  "not restarted: %s" % workload["reason"]))

    changed = [d for d in rs.diff_snapshots(before, rs.snapshot(sim)) if "meshops-istio-upgrade" not in d]
    assert changed == [], changed
    assert sim.get("/api/v1/namespaces/mixed")["metadata"]["labels"].get("istio-injection") == "disabled"
