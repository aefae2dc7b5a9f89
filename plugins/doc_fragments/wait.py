# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Waiting for the cluster to converge: meshops.istio.wait."""

    DOCUMENTATION = r'''
options:
  wait:
    description:
      - Wait until the change has converged on the cluster (for example istiod ready, rollout
        complete) before returning.
      - Waiting uses watches, not polling.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait when O(wait=true) before failing.
    type: int
    default: 300
'''
