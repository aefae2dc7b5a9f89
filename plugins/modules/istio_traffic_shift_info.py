#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_traffic_shift_info
short_description: Read how a Service's traffic is split between subsets by Istio
version_added: 1.0.0
description:
  - Reads the VirtualService and the DestinationRule of O(service) and reports the weights of the HTTP route that
    M(meshops.istio.istio_traffic_shift) sets (the one named O(route_name), or the single default route without
    C(match) for O(service)). Never changes anything.
  - The release role reads it to resume a release where a previous run stopped.
author:
  - meshops.istio contributors (@meshops)
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.traffic
  - meshops.istio.attributes
  - meshops.istio.attributes.info_module
seealso:
  - module: meshops.istio.istio_traffic_shift
"""

EXAMPLES = r"""
- name: Read the current split of reviews
  meshops.istio.istio_traffic_shift_info:
    namespace: bookinfo
    service: reviews
  register: reviews_split

- name: Show the canary's share
  ansible.builtin.debug:
    msg: "v2 gets {{ reviews_split.weights.v2 | default(0) }}%"
"""

RETURN = r"""
weights:
  description: Subset -> weight of the route; empty when there is no route for O(service).
  returned: always
  type: dict
  sample: {"v1": 90, "v2": 10}
virtual_service:
  description: The VirtualService (without server-set metadata); null when it does not exist.
  returned: always
  type: dict
destination_rule:
  description: The DestinationRule (without server-set metadata); null when it does not exist.
  returned: always
  type: dict
managed:
  description: Whether M(meshops.istio.istio_traffic_shift) manages (added something to) either object.
  returned: always
  type: bool
  sample: true
"""

from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.args import TRAFFIC_TARGET_SPEC
from ansible_collections.meshops.istio.plugins.module_utils.traffic import read_split


def run(module):
    params = module.params
    return dict(read_split(module.client, params['namespace'], params['service'], params['virtual_service'],
                           params['destination_rule'], params['route_name'], params['api_version']), changed=False)


def main():
    MeshopsModule(TRAFFIC_TARGET_SPEC).run(run)


if __name__ == '__main__':
    main()
