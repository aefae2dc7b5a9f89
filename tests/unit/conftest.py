"""Unit tests import the collection as Ansible does: ansible_collections.meshops.istio.

In a checkout, `make collection` links .build/ansible_collections/meshops/istio to it; this conftest makes
sure the link exists and puts .build on sys.path. In an installed collection (ansible_collections/meshops/istio,
where `ansible-test units` runs them) the collection is importable already. The unit tests need nothing
outside tests/unit (tests/unit/requirements.txt lists the Python packages).
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, '.build')
LINK = os.path.join(BUILD, 'ansible_collections', 'meshops', 'istio')

INSTALLED = ROOT.split(os.sep)[-3:] == ['ansible_collections', 'meshops', 'istio']

if not INSTALLED:
    if not os.path.exists(LINK):
        os.makedirs(os.path.dirname(LINK), exist_ok=True)
        os.symlink(ROOT, LINK)
    if BUILD not in sys.path:
        sys.path.insert(0, BUILD)

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture
def binary(tmp_path):
    """An executable stand-in path for istioctl (the tests replace how it is run)."""
    path = tmp_path / 'istioctl'
    path.write_text('#!/bin/sh\n')
    path.chmod(0o755)
    return str(path)
