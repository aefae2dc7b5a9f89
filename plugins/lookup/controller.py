# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: controller
short_description: Who runs this playbook - the controller's host name, the ansible-playbook pid, the AWX job
version_added: 1.0.0
description:
  - Returns one dict describing this run of C(ansible-playbook) on the controller, the same for every task of
    the run - C(controller_host) (the host name), C(pid) (the process id of C(ansible-playbook) itself, not of
    the worker evaluating the lookup) and C(awx_job_id) (the C(JOB_ID) environment variable that AWX and the
    Automation Controller set for a job, else empty).
  - The M(meshops.istio.istio_upgrade_lease) holder is built from it (with the inventory host).
author:
  - meshops.istio contributors (@meshops)
options: {}
"""

EXAMPLES = r"""
- name: Show who runs this
  ansible.builtin.debug:
    msg: "{{ lookup('meshops.istio.controller') }}"
"""

RETURN = r"""
_raw:
  description: One dict with C(controller_host), C(pid) and C(awx_job_id) (strings).
  type: list
  elements: dict
"""

import multiprocessing
import os
import socket

from ansible.plugins.lookup import LookupBase


def playbook_pid():
    """ansible-playbook's pid: tasks are templated in worker processes forked from it."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None and parent.pid else os.getpid()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [{'controller_host': socket.gethostname(), 'pid': str(playbook_pid()),
                 'awx_job_id': os.environ.get('JOB_ID', '')}]
