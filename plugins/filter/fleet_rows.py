# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet_rows
short_description: The rows of the fleet page of upgrade reports, one per inventory host
version_added: 1.0.0
description:
  - Takes the reports of M(meshops.istio.istio_upgrade_report) found so far and the inventory hosts, and returns
    one row per host (its report's summary, or that it has no report yet).
  - A thin wrapper over C(fleet_rows) in C(plugins/module_utils/report.py).
author:
  - meshops.istio contributors (@meshops)
options:
  _input:
    description: The reports (a list of RV(meshops.istio.istio_upgrade_report#module:report)).
    type: list
    elements: dict
    required: true
  hosts:
    description: The inventory hosts, in the order of the page.
    type: list
    elements: str
    required: true
"""

EXAMPLES = r"""
- name: The fleet
  ansible.builtin.debug:
    msg: "{{ reports | meshops.istio.fleet_rows(groups['istio_clusters']) }}"
"""

RETURN = r"""
_value:
  description: One row per host with C(cluster), C(report) (whether there is one) and the report's summary.
  type: list
  elements: dict
"""

from ansible_collections.meshops.istio.plugins.module_utils.report import fleet_rows


class FilterModule(object):

    def filters(self):
        return {"fleet_rows": fleet_rows}
