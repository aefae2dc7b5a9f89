# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: rollout_summary
short_description: Summarize meshops.istio.rollout_restart results
version_added: 1.0.0
description:
  - Turns one or more results of M(meshops.istio.rollout_restart) (one result, a list, or the result of a loop
    with its C(results)) into the few lists a summary or a failure message shows.
  - A thin wrapper over C(summarize_rollouts) in C(plugins/module_utils/plan.py); it makes no decision about
    Istio (the role's decisions come from M(meshops.istio.istio_canary_plan)).
author:
  - meshops.istio contributors (@meshops)
options:
  _input:
    description: A rollout_restart result, a list of them, or a loop result with C(results).
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Restart a wave
  meshops.istio.rollout_restart:
    namespaces: "{{ item.namespaces }}"
    revision: 1-15-4
  loop: "{{ plan.restarts }}"
  register: wave

- name: What moved
  ansible.builtin.debug:
    msg: "{{ (wave | meshops.istio.rollout_summary).moved }}"
"""

RETURN = r"""
_value:
  description: The summary.
  type: dict
  contains:
    moved:
      description: "Restarted workloads as C(namespace/Kind/name: from_version -> to_version)."
      type: list
      elements: str
    current:
      description: How many workloads were already on the expected revision.
      type: int
    failed:
      description: Failed workloads with their reason (and module errors without workloads).
      type: list
      elements: str
    skipped:
      description: Skipped workloads with their reason.
      type: list
      elements: str
    workloads:
      description: Every workload seen, as C(namespace/Kind/name).
      type: list
      elements: str
    namespaces:
      description: Their namespaces.
      type: list
      elements: str
"""

from ansible_collections.meshops.istio.plugins.module_utils.plan import summarize_rollouts


class FilterModule(object):
    def filters(self):
        return {"rollout_summary": summarize_rollouts}
