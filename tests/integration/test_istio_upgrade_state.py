"""meshops.istio.istio_upgrade_state and istio_namespace_injection against tests/kubesim: what the cluster holds
after each call, check mode writing nothing, diffs, and second runs reporting no change."""

from __future__ import annotations

import pytest

import upgrade_support as us
from kubesim.testing import KubeSim

CM = "/api/v1/namespaces/istio-system/configmaps/meshops-istio-upgrade"


def start(tmp_path, scenario):
    workdir = tmp_path / "sim"
    workdir.mkdir(parents=True, exist_ok=True)
    return KubeSim(scenario, workdir=str(workdir), pod_ready_seconds=0.2, audit=False)


@pytest.fixture
def sim(tmp_path):
    with start(tmp_path, "blog") as cluster:
        yield cluster


def module(sim, tmp_path, name="istio_upgrade_state", check=False, diff=False, **args):
    result, run = us.run_module(name, args, sim.kubeconfig, check=check, diff=diff, workdir=tmp_path / "runs")
    assert result is not None, run
    return result, run


def test_record_lifecycle(sim, tmp_path):
    first = dict(tag="default", from_revision="1-14-6", from_version="1.14.6", to_revision="1-15-4",
                 to_version="1.15.4", phase="precheck")
    dry, _run = module(sim, tmp_path, check=True, diff=True, **first)
    assert dry["status"] == "ok" and dry["changed"] is True
    assert dry["upgrade"]["exists"] is False and dry["upgrade"]["phases"].keys() == {"precheck"}
    assert us.upgrade_record(sim) is None  # check mode never writes

    made, _run = module(sim, tmp_path, diff=True, **first)
    assert made["changed"] is True
    assert made["changes"] == [{"kind": "ConfigMap", "namespace": "istio-system", "name": "meshops-istio-upgrade",
                                "action": "created"}]
    data = us.upgrade_record(sim)
    assert {k: data[k] for k in ("tag", "from_revision", "from_version", "to_revision", "to_version")} == {
        "tag": "default", "from_revision": "1-14-6", "from_version": "1.14.6", "to_revision": "1-15-4", "to_version": "1.15.4"}
    assert data["phase.precheck"] == made["upgrade"]["phases"]["precheck"]
    labels = sim.get_json(CM)["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "meshops.istio"

    again, _run = module(sim, tmp_path, **first)
    assert again["changed"] is False and us.upgrade_record(sim) == data

    wave = dict(to_revision="1-15-4", wave={"name": "wave1", "namespaces": ["bar"], "status": "started"})
    started, _run = module(sim, tmp_path, diff=True, **wave)
    assert started["changed"] is True
    diff = started["diff"][0] if isinstance(started["diff"], list) else started["diff"]
    assert diff["after"]["wave.wave1.namespaces"] == "bar" and "wave.wave1.namespaces" not in diff["before"]
    wave_done = {"name": "wave1", "namespaces": ["bar"], "workloads": ["bar/Deployment/bar"], "status": "done"}
    done, _run = module(sim, tmp_path, to_revision="1-15-4", wave=wave_done)
    assert done["changed"] is True and done["upgrade"]["waves_done"] == ["wave1"]
    data = us.upgrade_record(sim)
    assert data["wave.wave1.workloads"] == "bar/Deployment/bar" and data["wave.wave1.started"] <= data["wave.wave1.done"]

    back, _run = module(sim, tmp_path, phase="rollback", forget_phases=["tag"], forget_waves=True)
    assert back["changed"] is True
    data = us.upgrade_record(sim)
    assert "phase.rollback" in data and not [k for k in data if k.startswith("wave.")]

    bad, run = module(sim, tmp_path, phase="wave.1")
    assert bad["status"] == "failed" and "cannot be recorded" in bad["msg"], run

    read, _run = module(sim, tmp_path, "istio_upgrade_state_info", istio_namespace="istio-system")
    assert read["changed"] is False and read["upgrade"]["from_revision"] == "1-14-6"
    assert read["upgrade"]["phases"].keys() == {"precheck", "rollback"} and read["upgrade"]["waves"] == {}

    gone, _run = module(sim, tmp_path, state="absent")
    assert gone["changed"] is True and us.upgrade_record(sim) is None


def test_namespace_injection_label_migration(tmp_path):
    with start(tmp_path, "legacy") as legacy:
        assert us.control_plane(legacy)["namespaces"]["foo"] == {"istio-injection": "enabled"}
        dry, _run = module(legacy, tmp_path, "istio_namespace_injection", check=True, diff=True, namespace="foo", revision="default")
        assert dry["changed"] is True and dry["previous_labels"] == {"istio-injection": "enabled"}
        assert us.control_plane(legacy)["namespaces"]["foo"] == {"istio-injection": "enabled"}

        done, _run = module(legacy, tmp_path, "istio_namespace_injection", namespace="foo", revision="default")
        assert done["changed"] is True and done["namespace"]["labels"] == {"istio.io/rev": "default"}
        assert us.control_plane(legacy)["namespaces"]["foo"] == {"istio.io/rev": "default"}
        again, _run = module(legacy, tmp_path, "istio_namespace_injection", namespace="foo", revision="default")
        assert again["changed"] is False

        missing, _run = module(legacy, tmp_path, "istio_namespace_injection", namespace="nope", revision="default")
        assert missing["status"] == "failed" and "namespace nope does not exist" in missing["msg"]
