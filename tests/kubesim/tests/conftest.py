"""Fixtures for the simulator's own tests (and anyone else's: import kubesim.testing).

* ``kubesim_factory(scenario="empty", **options)`` starts a KubeSim (stopped at test end).
* ``shared_sim`` one ``empty``-scenario simulator for the whole session (use unique names).
* ``ns`` a fresh namespace in ``shared_sim``.
"""

import itertools
import os
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from kubesim.testing import KubeSim  # noqa: E402

_counter = itertools.count(1)


@pytest.fixture
def kubesim_factory():
    started = []

    def make(scenario="empty", **options):
        sim = KubeSim(scenario, **options)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.cleanup()


@pytest.fixture(scope="session")
def shared_sim():
    sim = KubeSim("empty", pod_ready_seconds=0.1)
    sim.start()
    yield sim
    sim.cleanup()


@pytest.fixture
def ns(shared_sim):
    from kubernetes import client

    name = f"t{os.getpid() % 10000}-{next(_counter)}"
    api = client.CoreV1Api(shared_sim.client())
    api.create_namespace({"metadata": {"name": name}})
    return name
