"""Integration tests run the collection through Ansible against tests/kubesim (a simulated cluster).

Fixtures:
* ``kubesim`` - a factory: ``kubesim(scenario='blog', **options)`` starts a KubeSim (options map to
  ``python -m kubesim serve`` flags, e.g. ``api_error_rate=0.1``) and stops it after the test.
* ``blog`` - a fresh ``blog`` scenario for one test.
* ``kubesim_module`` - the same factory, its clusters shared by a test module.
* ``blog_module`` - one ``blog`` scenario shared by a test module (for read-only tests).
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for path in (HERE, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)

from kubesim.testing import KubeSim  # noqa: E402

import helpers  # noqa: E402

DEFAULT_OPTIONS = {'pod_ready_seconds': 0.2}


def start_kubesim(scenario='blog', **options):
    helpers.ensure_collection()
    opts = dict(DEFAULT_OPTIONS)
    opts.update(options)
    return KubeSim(scenario=scenario, python=helpers.PYTHON, **opts).start()


def _factory():
    started = []

    def factory(scenario='blog', **options):
        sim = start_kubesim(scenario, **options)
        started.append(sim)
        return sim

    return factory, started


@pytest.fixture
def kubesim():
    factory, started = _factory()
    yield factory
    for sim in started:
        sim.cleanup()


@pytest.fixture(scope='module')
def kubesim_module():
    factory, started = _factory()
    yield factory
    for sim in started:
        sim.cleanup()


@pytest.fixture
def blog(kubesim):
    return kubesim('blog')


@pytest.fixture(scope='module')
def blog_module():
    sim = start_kubesim('blog')
    yield sim
    sim.cleanup()
