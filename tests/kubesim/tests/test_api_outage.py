"""POST /kubesim/outage: the API server restarts and is unreachable for a while (kubesim.faults.Outage)."""

import datetime
import json
import signal
import socket
import subprocess
import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def _port(sim):
    host, port = sim.url.rsplit("/", 1)[1].rsplit(":", 1)
    return host, int(port)


def _refused(sim) -> bool:
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(_port(sim))
    except ConnectionRefusedError:
        return True
    finally:
        s.close()
    return False


def test_outage_refuses_connections_then_comes_back_with_the_same_state(kubesim_factory):
    sim = kubesim_factory()
    core = client.CoreV1Api(sim.client(retries=0))
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "keep"}, "data": {"a": "1"}})
    # the endpoint needs a token, and a sane duration
    code, _, body = sim.request("POST", "/kubesim/outage?seconds=2", token=None)
    assert code == 401 and json.loads(body)["reason"] == "Unauthorized"
    for bad in ("0", "-1", "x", "100000"):
        code, _, body = sim.request("POST", f"/kubesim/outage?seconds={bad}")
        assert code == 400 and "seconds must be" in json.loads(body)["message"]
    assert sim.request("GET", "/kubesim/outage?seconds=2")[0] == 405
    assert sim.outage(3) == {"kind": "Outage", "seconds": 3.0}
    started = time.monotonic()
    assert _refused(sim)
    cp = sim.kubectl("get", "configmap", "keep", "--request-timeout=5s")
    assert cp.returncode == 1
    assert f"The connection to the server {_port(sim)[0]}:{_port(sim)[1]} was refused" in cp.stderr
    with pytest.raises(Exception) as ei:  # urllib3 gives up after its retries: MaxRetryError / ProtocolError
        core.read_namespaced_config_map("keep", "default")
    assert "refused" in str(ei.value).lower() or "connection" in str(ei.value).lower()
    sim.wait_reachable()
    assert time.monotonic() - started >= 2.5
    # same port, same objects, same resourceVersions; new writes continue the sequence
    core = client.CoreV1Api(sim.client(retries=0))
    again = core.read_namespaced_config_map("keep", "default")
    assert again.metadata.resource_version == cm.metadata.resource_version and again.data == {"a": "1"}
    nxt = core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    assert int(nxt.metadata.resource_version) > int(cm.metadata.resource_version)
    assert sim.stats()["faults"]["outages"] == 1
    assert sim.kubectl("get", "cm", "keep", "-o", "name", check=True).stdout.strip() == "configmap/keep"


def test_watches_end_and_resume_or_relist_as_after_a_real_restart(kubesim_factory):
    sim = kubesim_factory()
    core = client.CoreV1Api(sim.client(retries=0))
    core.create_namespaced_config_map("default", {"metadata": {"name": "w0"}})
    listed = core.list_namespaced_config_map("default")
    old_rv = listed.metadata.resource_version
    ended = []

    def watch_it():
        w = watch.Watch()
        try:
            for _ in w.stream(core.list_namespaced_config_map, "default", resource_version=old_rv,
                              timeout_seconds=300):
                pass
            ended.append("end of stream")
        except Exception as e:  # noqa: BLE001 - what the client saw is the result
            ended.append(repr(e))

    t = threading.Thread(target=watch_it, daemon=True)
    t.start()
    time.sleep(0.3)
    # another type moves the global resourceVersion on, the configmap watch sees nothing of it
    core.create_namespaced_secret("default", {"metadata": {"name": "s0"}})
    sim.outage(1)
    t.join(30)
    assert ended == ["end of stream"]  # the restarting server ended the watch (timeoutSeconds was 300)
    sim.wait_reachable()
    core = client.CoreV1Api(sim.client(retries=0))
    # the new watch cache starts at the current resourceVersion: the old one is too old -> re-list
    with pytest.raises(ApiException) as ei:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=old_rv):
            break
    assert ei.value.status == 410 and "too old resource version" in ei.value.reason
    relisted = core.list_namespaced_config_map("default")
    assert [c.metadata.name for c in relisted.items] == ["w0"]
    events = []

    def rewatch():
        for ev in watch.Watch().stream(core.list_namespaced_config_map, "default",
                                       resource_version=relisted.metadata.resource_version, timeout_seconds=10):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["object"].metadata.name == "w1":
                return

    t = threading.Thread(target=rewatch, daemon=True)
    t.start()
    time.sleep(0.3)
    core.create_namespaced_config_map("default", {"metadata": {"name": "w1"}})
    t.join(30)
    assert events == [("ADDED", "w1")]
    # a watch from the current resourceVersion right after a restart resumes without a re-list
    rv_now = core.list_namespaced_config_map("default").metadata.resource_version
    sim.outage(1)
    sim.wait_reachable()
    core = client.CoreV1Api(sim.client(retries=0))
    got = []

    def resume():
        for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv_now,
                                       timeout_seconds=10):
            got.append(ev["object"].metadata.name)
            return

    t = threading.Thread(target=resume, daemon=True)
    t.start()
    time.sleep(0.3)
    core.create_namespaced_config_map("default", {"metadata": {"name": "w2"}})
    t.join(30)
    assert got == ["w2"]


def _deployment(name, replicas):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "docker.io/library/nginx:1.25"}]}}}}


def _ready_since(pod):
    """When the kubelet saw the pod become Ready (it keeps that time while the API server is away)."""
    for c in pod["status"].get("conditions") or []:
        if c["type"] == "Ready" and c["status"] == "True":
            return datetime.datetime.strptime(c["lastTransitionTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
    return None


def test_kubectl_rollout_status_rides_through_an_outage_and_controllers_wait(kubesim_factory):
    sim = kubesim_factory(pod_ready_seconds=3, pod_terminate_seconds=0)
    sim.kubectl("apply", "-f", "-", input=json.dumps(_deployment("web", 3)), check=True)
    sim.kubectl("rollout", "status", "deployment/web", "--timeout=120s", check=True)
    sim.kubectl("rollout", "restart", "deployment/web", check=True)
    status = subprocess.Popen([sim.kubectl_bin, "rollout", "status", "deployment/web", "--timeout=180s"],
                              env=sim.kubectl_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = status.stdout.readline()  # kubectl is watching once it reports progress
        assert first.startswith('Waiting for deployment "web" rollout to finish'), first
        sim.outage(4)
        out, err = status.communicate(timeout=240)
    finally:
        if status.poll() is None:
            status.kill()
    # client-go's reflector retried through the refused connections and carried on
    assert status.returncode == 0, err
    assert 'deployment "web" successfully rolled out' in out
    d = json.loads(sim.kubectl("get", "deployment", "web", "-o", "json", check=True).stdout)
    assert d["status"]["updatedReplicas"] == 3 and d["status"]["availableReplicas"] == 3
    # nothing was written while the API server was down (controllers and kubelets waited for it), and
    # the pods created just before the outage became Ready only through it
    last = sim.stats()["faults"]["last_outage"]
    assert last["seconds"] == 4 and last["resourceVersionAtStop"] == last["resourceVersionAtRestart"]
    pods = json.loads(sim.kubectl("get", "pods", "-l", "app=web", "-o", "json", check=True).stdout)["items"]
    assert len(pods) == 3 and all(_ready_since(p) for p in pods)
    assert any(int(p["metadata"]["resourceVersion"]) > int(last["resourceVersionAtRestart"]) for p in pods)


def test_sigterm_during_an_outage_exits_cleanly(kubesim_factory):
    sim = kubesim_factory()
    sim.outage(60)
    assert _refused(sim)
    sim.proc.send_signal(signal.SIGTERM)
    assert sim.proc.wait(timeout=30) == 0
