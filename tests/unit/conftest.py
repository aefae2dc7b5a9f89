"""Unit tests import the collection as Ansible does: ansible_collections.meshops.istio.

`make collection` links .build/ansible_collections/meshops/istio to the checkout; this conftest makes
sure the link exists and puts .build (and tests/, for kubesim) on sys.path.
"""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, '.build')
LINK = os.path.join(BUILD, 'ansible_collections', 'meshops', 'istio')

if not os.path.exists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(ROOT, LINK)

for path in (BUILD, os.path.join(ROOT, 'tests'), os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)


@pytest.fixture
def binary(tmp_path):
    """An executable stand-in path for istioctl (the tests replace how it is run)."""
    path = tmp_path / 'istioctl'
    path.write_text('#!/bin/sh\n')
    path.chmod(0o755)
    return str(path)
