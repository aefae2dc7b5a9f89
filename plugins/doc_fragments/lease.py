# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Renewing the upgrade record's lease while a module waits: meshops.istio.lease."""

    DOCUMENTATION = r'''
options:
  lease:
    description:
      - The lease of the upgrade record this run holds (RV(meshops.istio.istio_canary_plan#module:plan.lease)), renewed
        from a background thread while the module runs, so that a long wait does not let it expire.
      - Nothing is renewed unless C(needed) is true, nor in check mode. Renewing stops when another run took the
        lease over (the module then warns), or when the holder's ansible-playbook is gone from this controller
        (a worker that outlived a killed run), so that the lease expires.
    type: dict
'''
