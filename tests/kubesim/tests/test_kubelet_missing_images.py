"""--missing-image: containers whose image the registry lacks stay in ErrImagePull/ImagePullBackOff
(kubesim.images, after pkg/kubelet/images/image_manager.go)."""

import json
import time

from kubernetes import client, watch


def kjson(sim, *args):
    return json.loads(sim.kubectl(*args, "-o", "json", check=True).stdout)


CRI = ('rpc error: code = NotFound desc = failed to pull and unpack image "docker.io/library/busybox:9.9.9": '
       'failed to resolve reference "docker.io/library/busybox:9.9.9": docker.io/library/busybox:9.9.9: not found')


def test_missing_main_container_image_pull_back_off_and_never_ready(kubesim_factory):
    sim = kubesim_factory(pod_ready_seconds=0.5, missing_image=["*:9.9.9"])
    core = client.CoreV1Api(sim.client())
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "app", "image": "nginx:1.25"}, {"name": "side", "image": "busybox:9.9.9"}]}})
    seen = {}
    for ev in watch.Watch().stream(core.list_namespaced_pod, "default", field_selector="metadata.name=p",
                                   timeout_seconds=60):
        pod = ev["object"]
        for cs in pod.status.container_statuses or []:
            if cs.name == "side" and cs.state.waiting:
                seen.setdefault(cs.state.waiting.reason, cs.state.waiting.message)
        assert not any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if len(seen) >= 2 and "ErrImagePull" in seen and "ImagePullBackOff" in seen:
            break
    assert seen["ErrImagePull"] == CRI
    assert seen["ImagePullBackOff"] == f'Back-off pulling image "busybox:9.9.9": ErrImagePull: {CRI}'
    time.sleep(2)
    pod = kjson(sim, "get", "pod", "p")
    st = pod["status"]
    assert st["phase"] == "Pending"  # a waiting container keeps the pod Pending
    byname = {c["name"]: c for c in st["containerStatuses"]}
    assert "running" in byname["app"]["state"] and byname["app"]["ready"] is True
    side = byname["side"]
    assert side["ready"] is False and side["started"] is False and side["imageID"] == ""
    assert side["state"]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "ContainersNotReady",
                                                                    "containers with unready status: [side]")
    row = sim.kubectl("get", "pod", "p", "--no-headers", check=True).stdout.split()
    assert row[1] == "1/2" and row[2] in ("ErrImagePull", "ImagePullBackOff")
    events = [e for e in kjson(sim, "get", "events")["items"] if e["involvedObject"]["name"] == "p"]
    by_msg = {(e["reason"], e["message"]): e for e in events}
    assert ("Normal", "kubelet", "spec.containers{side}") == (
        by_msg[("Pulling", 'Pulling image "busybox:9.9.9"')]["type"],
        by_msg[("Pulling", 'Pulling image "busybox:9.9.9"')]["source"]["component"],
        by_msg[("Pulling", 'Pulling image "busybox:9.9.9"')]["involvedObject"]["fieldPath"])
    assert by_msg[("Failed", f'Failed to pull image "busybox:9.9.9": {CRI}')]["type"] == "Warning"
    assert by_msg[("Failed", "Error: ErrImagePull")]["type"] == "Warning"
    assert by_msg[("BackOff", 'Back-off pulling image "busybox:9.9.9"')]["type"] == "Normal"
    assert by_msg[("Failed", "Error: ImagePullBackOff")]["type"] == "Warning"
    # the kubelet keeps trying: repeats are aggregated into one event each
    assert by_msg[("Pulling", 'Pulling image "busybox:9.9.9"')]["count"] >= 2
    assert len(events) == 5
    # an image that is not missing is not touched
    core.create_namespaced_pod("default", {"metadata": {"name": "ok"}, "spec": {"containers": [
        {"name": "app", "image": "busybox:1.36"}]}})
    sim.wait_for(lambda: kjson(sim, "get", "pod", "ok")["status"]["phase"] == "Running", timeout=30,
                 message="the pod with a present image running")


def test_missing_native_sidecar_blocks_initialization(kubesim_factory):
    sim = kubesim_factory(pod_ready_seconds=0.3, missing_image=["docker.io/istio/proxyv2:1.29.*"])
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "meshed", "namespace": "default"},
           "spec": {"initContainers": [{"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.29.6",
                                        "restartPolicy": "Always"}],
                    "containers": [{"name": "app", "image": "nginx:1.25"}]}}
    sim.kubectl("apply", "-f", "-", input=json.dumps(pod), check=True)
    st = sim.wait_for(lambda: (lambda s: s if (s.get("initContainerStatuses") or [{}])[0].get("state", {})
                               .get("waiting", {}).get("reason") == "ImagePullBackOff" else None)(
        kjson(sim, "get", "pod", "meshed")["status"]), timeout=60, message="the sidecar backing off")
    assert st["phase"] == "Pending"
    proxy = st["initContainerStatuses"][0]
    assert proxy["started"] is False and proxy["ready"] is False
    assert proxy["state"]["waiting"]["message"].startswith(
        'Back-off pulling image "docker.io/istio/proxyv2:1.29.6": ErrImagePull: rpc error: code = NotFound')
    assert st["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Initialized"]["status"], conds["Initialized"]["reason"], conds["Initialized"]["message"]) == \
        ("False", "ContainersNotInitialized", "containers with incomplete status: [istio-proxy]")
    assert conds["Ready"]["message"] == "containers with unready status: [istio-proxy app]"
    row = sim.kubectl("get", "pod", "meshed", "--no-headers", check=True).stdout.split()
    assert row[2] in ("Init:ErrImagePull", "Init:ImagePullBackOff")


def test_a_rollout_to_a_missing_proxy_image_stalls_while_old_pods_serve(kubesim_factory):
    # the blog cluster's proxies run 1.14.6 from before; the registry no longer has it (an air-gapped mirror)
    sim = kubesim_factory("blog", pod_ready_seconds=0.3, missing_image=["docker.io/istio/proxyv2:1.14.6"])
    before = [p["metadata"]["name"] for p in kjson(sim, "get", "pods", "-n", "foo")["items"]]
    assert len(before) == 2  # pods already running keep running (the image is on their nodes)
    sim.kubectl("rollout", "restart", "deployment/foo", "-n", "foo", check=True)
    cp = sim.kubectl("rollout", "status", "deployment/foo", "-n", "foo", "--timeout=8s")
    assert cp.returncode == 1 and "timed out waiting for the condition" in cp.stderr
    pods = kjson(sim, "get", "pods", "-n", "foo")["items"]
    new = [p for p in pods if p["metadata"]["name"] not in before]
    assert new and all(p["status"]["phase"] == "Pending" for p in new)
    for p in new:
        # classic injection: istio-init runs the proxy image first, so the pod is stuck initializing
        init = next(c for c in p["status"]["initContainerStatuses"] if c["name"] == "istio-init")
        assert init["state"]["waiting"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
        proxy = next(c for c in p["status"]["containerStatuses"] if c["name"] == "istio-proxy")
        assert proxy["state"]["waiting"]["reason"] == "PodInitializing"
    old = [p for p in pods if p["metadata"]["name"] in before]
    assert len(old) == 2 and all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"])
                                 for p in old)
    d = kjson(sim, "get", "deployment", "foo", "-n", "foo")
    assert d["status"]["availableReplicas"] == 2 and d["status"].get("updatedReplicas", 0) >= 1
