"""--conflict-rate: a concurrent writer races writes; conditional ones get the real 409 Conflict
(k8s.io/apiserver registry/generic/registry/store.go Update, endpoints/handlers/patch.go)."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

MODIFIED = ("the object has been modified; please apply your changes to the latest version and try again")


def _cm(core, name, ns="default"):
    return core.create_namespaced_config_map(ns, {"metadata": {"name": name}, "data": {"a": "1"}})


def test_conditional_writes_conflict_unconditional_ones_succeed(kubesim_factory):
    sim = kubesim_factory(conflict_rate=1.0, seed=5)
    core = client.CoreV1Api(sim.client(retries=0))
    apps = client.AppsV1Api(sim.client(retries=0))
    cm = _cm(core, "c1")
    before = cm.metadata.resource_version
    # PUT with the resourceVersion just read: another writer got there first
    cm.data["a"] = "2"
    with pytest.raises(ApiException) as ei:
        core.replace_namespaced_config_map("c1", "default", cm)
    assert ei.value.status == 409
    body = json.loads(ei.value.body)
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f'Operation cannot be fulfilled on configmaps "c1": {MODIFIED}',
                    "reason": "Conflict", "details": {"name": "c1", "kind": "configmaps"}, "code": 409}
    stored = core.read_namespaced_config_map("c1", "default")
    assert stored.data == {"a": "1"}  # the refused write changed nothing ...
    assert int(stored.metadata.resource_version) > int(before)  # ... but the other writer's did
    # a patch without resourceVersion is applied to the fresh object (GuaranteedUpdate retries it)
    patched = core.patch_namespaced_config_map("c1", "default", {"data": {"a": "3"}})
    assert patched.data == {"a": "3"}
    # a patch that carries the resourceVersion it read is conditional
    with pytest.raises(ApiException) as ei:
        core.patch_namespaced_config_map("c1", "default", {"metadata": {"resourceVersion":
                                                                        patched.metadata.resource_version},
                                                           "data": {"a": "4"}})
    assert ei.value.status == 409 and json.loads(ei.value.body)["reason"] == "Conflict"
    # PUT without resourceVersion: unconditional, succeeds
    fresh = core.read_namespaced_config_map("c1", "default")
    fresh.metadata.resource_version = None
    fresh.data = {"a": "5"}
    assert core.replace_namespaced_config_map("c1", "default", fresh).data == {"a": "5"}
    # status and scale subresources of a Deployment, and a group resource's message
    d = apps.create_namespaced_deployment("default", {
        "metadata": {"name": "d1"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d1"}},
                                             "template": {"metadata": {"labels": {"app": "d1"}},
                                                          "spec": {"containers": [{"name": "c", "image": "x:1"}]}}}})
    scale = apps.read_namespaced_deployment_scale("d1", "default")
    scale.spec.replicas = 2
    with pytest.raises(ApiException) as ei:
        apps.replace_namespaced_deployment_scale("d1", "default", scale)
    assert json.loads(ei.value.body)["message"] == f'Operation cannot be fulfilled on deployments.apps "d1": {MODIFIED}'
    assert json.loads(ei.value.body)["details"] == {"name": "d1", "group": "apps", "kind": "deployments"}
    assert apps.patch_namespaced_deployment_scale("d1", "default", {"spec": {"replicas": 2}}).spec.replicas == 2
    # DELETE with a resourceVersion precondition is conditional too
    cur = core.read_namespaced_config_map("c1", "default")
    with pytest.raises(ApiException) as ei:
        core.delete_namespaced_config_map("c1", "default", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=cur.metadata.resource_version)))
    assert ei.value.status == 409 and "Precondition failed" in json.loads(ei.value.body)["message"]
    core.delete_namespaced_config_map("c1", "default")
    assert d.metadata.name == "d1"
    assert sim.stats()["faults"]["concurrent_writes"] >= 7


def test_kubectl_sees_the_conflict_and_its_retrying_commands_succeed(kubesim_factory):
    sim = kubesim_factory(conflict_rate=1.0, seed=9)
    sim.kubectl("create", "configmap", "k1", "--from-literal=a=1", check=True)
    rv = sim.kubectl("get", "cm", "k1", "-o", "jsonpath={.metadata.resourceVersion}", check=True).stdout
    cp = sim.kubectl("annotate", "cm", "k1", "x=y", f"--resource-version={rv}")
    assert cp.returncode == 1
    assert cp.stderr.strip() == f'Error from server (Conflict): Operation cannot be fulfilled on configmaps "k1": ' \
                                f'{MODIFIED}'
    # kubectl replace sends the resourceVersion it read: conflict
    obj = json.loads(sim.kubectl("get", "cm", "k1", "-o", "json", check=True).stdout)
    obj["data"]["a"] = "2"
    cp = sim.kubectl("replace", "-f", "-", input=json.dumps(obj))
    assert cp.returncode == 1 and "(Conflict)" in cp.stderr
    # commands that patch without a resourceVersion go through
    sim.kubectl("annotate", "cm", "k1", "x=y", check=True)
    sim.kubectl("label", "cm", "k1", "l=v", check=True)
    got = json.loads(sim.kubectl("get", "cm", "k1", "-o", "json", check=True).stdout)
    assert got["metadata"]["annotations"]["x"] == "y" and got["metadata"]["labels"]["l"] == "v"
    assert got["data"] == {"a": "1"}


def test_conflict_rate_fraction_and_watch_sees_the_other_writer(kubesim_factory):
    sim = kubesim_factory(conflict_rate=0.5, seed=3)
    core = client.CoreV1Api(sim.client(retries=0))
    _cm(core, "c2")
    outcomes = []
    for i in range(40):
        cur = core.read_namespaced_config_map("c2", "default")
        cur.data = {"a": str(i)}
        try:
            core.replace_namespaced_config_map("c2", "default", cur)
            outcomes.append(200)
        except ApiException as e:
            outcomes.append(e.status)
    assert set(outcomes) == {200, 409}
    assert 8 <= outcomes.count(409) <= 32
    assert sim.stats()["faults"]["concurrent_writes"] == outcomes.count(409)
    # reads are never raced, and without the option nothing is
    quiet = kubesim_factory()
    qcore = client.CoreV1Api(quiet.client(retries=0))
    _cm(qcore, "c3")
    for i in range(10):
        cur = qcore.read_namespaced_config_map("c3", "default")
        cur.data = {"a": str(i)}
        qcore.replace_namespaced_config_map("c3", "default", cur)
    assert quiet.stats()["faults"]["concurrent_writes"] == 0
