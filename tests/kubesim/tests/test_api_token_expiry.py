"""--token-ttl: expiring bearer tokens renewed through the kubeconfig's exec credential plugin
(kubesim.credentials; client-go plugin/pkg/client/auth/exec)."""

import json
import os
import stat
import subprocess
import time

from kubernetes import client

from kubesim.credentials import EXEC_API_VERSION, PLUGIN, parse_rfc3339

TTL = 2


def _user(sim):
    import yaml

    with open(sim.kubeconfig, encoding="utf-8") as f:
        return yaml.safe_load(f)["users"][0]["user"]


def test_kubeconfig_carries_an_exec_plugin_and_tokens_expire(kubesim_factory):
    sim = kubesim_factory(token_ttl=TTL)
    user = _user(sim)
    assert "token" not in user
    secret_file = f"{sim.kubeconfig}.credential"
    assert user["exec"] == {"apiVersion": EXEC_API_VERSION, "command": PLUGIN,
                            "args": ["--secret-file", secret_file], "interactiveMode": "Never",
                            "provideClusterInfo": True}
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    # the plugin, run as client-go runs it, prints an ExecCredential
    cluster = {"server": sim.url, "certificate-authority-data": __import__("base64").b64encode(sim.ca_pem).decode()}
    env = dict(os.environ, KUBERNETES_EXEC_INFO=json.dumps(
        {"apiVersion": EXEC_API_VERSION, "kind": "ExecCredential", "spec": {"interactive": False, "cluster": cluster}}))
    cp = subprocess.run([PLUGIN, "--secret-file", secret_file], env=env, capture_output=True, text=True, check=True)
    cred = json.loads(cp.stdout)
    assert cred["apiVersion"] == EXEC_API_VERSION and cred["kind"] == "ExecCredential"
    token, expiry = cred["status"]["token"], parse_rfc3339(cred["status"]["expirationTimestamp"])
    assert time.time() - 1 <= expiry <= time.time() + TTL
    assert sim.request("GET", "/api/v1/namespaces/default", token=token)[0] == 200
    # the token endpoint wants the secret, not a token
    code, _, body = sim.request("POST", "/kubesim/token", b"{}", token=token)
    assert code == 401 and json.loads(body)["reason"] == "Unauthorized"
    cp = subprocess.run([PLUGIN, "--secret-file", secret_file], env=dict(env, KUBERNETES_EXEC_INFO="{}"),
                        capture_output=True, text=True)
    assert cp.returncode == 1 and "provideClusterInfo" in cp.stderr
    # past the expiry (and the server's 1 s leeway) the token is refused with the real 401 body
    time.sleep(TTL + 1.5)
    code, _, body = sim.request("GET", "/api/v1/namespaces/default", token=token)
    assert code == 401
    assert json.loads(body) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert sim.stats()["faults"]["expired_tokens"] >= 1


def _deployment(name, replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "docker.io/library/nginx:1.25"}]}}}}


def test_one_kubectl_process_renews_its_token_through_a_long_rollout(kubesim_factory):
    # every watch is dropped within 1.5 s, so kubectl keeps sending requests well past several expiries
    sim = kubesim_factory(token_ttl=TTL, pod_ready_seconds=2, drop_watch_rate=1.0, seed=4)
    sim.kubectl("apply", "-f", "-", input=json.dumps(_deployment("web", 3)), check=True)
    sim.kubectl("rollout", "status", "deployment/web", "--timeout=120s", check=True)
    sim.kubectl("rollout", "restart", "deployment/web", check=True)
    started = time.time()
    cp = sim.kubectl("rollout", "status", "deployment/web", "--timeout=180s", timeout=240)
    took = time.time() - started
    assert cp.returncode == 0, cp.stderr
    assert 'deployment "web" successfully rolled out' in cp.stdout
    assert took > 2 * TTL + 1
    kubectl = [r for r in sim.audit_records() if r["userAgent"].startswith("kubectl")
               and r["ts"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(started)))]
    # it kept going with fresh tokens: nothing it sent was refused, over more than two lifetimes
    assert kubectl and all(r["code"] != 401 for r in kubectl)
    assert parse_rfc3339(kubectl[-1]["ts"]) - parse_rfc3339(kubectl[0]["ts"]) >= 2 * TTL


def test_python_client_renews_through_the_exec_plugin(kubesim_factory):
    sim = kubesim_factory(token_ttl=TTL)
    core = client.CoreV1Api(sim.client(retries=0))
    issued = sim.stats()["faults"]["tokens_issued"]
    names = []
    started = time.time()
    while time.time() - started < 2 * TTL + 2:  # the library runs the plugin again before each request
        names.append(core.read_namespace("default").metadata.name)
        time.sleep(0.5)
    assert set(names) == {"default"} and len(names) >= 3
    st = sim.stats()["faults"]
    assert st["tokens_issued"] > issued + 2 and st["expired_tokens"] == 0
    # the static default stays: without --token-ttl the kubeconfig has a plain token and no plugin
    plain = kubesim_factory()
    assert "token" in _user(plain) and "exec" not in _user(plain)
    assert not os.path.exists(f"{plain.kubeconfig}.credential")
