# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: report_chart
short_description: Lay out the before/after chart of proxy versions of an upgrade report
version_added: 1.0.0
description:
  - Turns the report of M(meshops.istio.istio_upgrade_report) into the geometry of its chart (one before and one
    after bar per namespace, split by proxy version, and the legend), which the role's HTML template draws as
    inline SVG.
  - A thin wrapper over C(chart) in C(plugins/module_utils/report.py).
author:
  - meshops.istio contributors (@meshops)
options:
  _input:
    description: The report (RV(meshops.istio.istio_upgrade_report#module:report)).
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The chart's size
  ansible.builtin.debug:
    msg: "{{ (upgrade_report.report | meshops.istio.report_chart).height }}"
"""

RETURN = r"""
_value:
  description: The chart.
  type: dict
  contains:
    width:
      description: Width of the SVG.
      type: int
    height:
      description: Height of the SVG.
      type: int
    rows:
      description: One per namespace, with its C(bars) (before, after), each with C(segments) (x, width, colour, version, pods).
      type: list
      elements: dict
    legend:
      description: Version and colour of each entry of the legend.
      type: list
      elements: dict
"""

from ansible_collections.meshops.istio.plugins.module_utils.report import chart


class FilterModule(object):

    def filters(self):
        return {"report_chart": chart}
