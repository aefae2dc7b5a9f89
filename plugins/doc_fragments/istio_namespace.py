# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The Istio control-plane namespace: meshops.istio.istio_namespace."""

    DOCUMENTATION = r'''
options:
  istio_namespace:
    description:
      - Namespace of the Istio control plane (istiod, its Services and ConfigMaps, the upgrade record).
      - The same option in every module of the collection; O(namespace) is an alias kept for playbooks
        written before it was renamed.
    type: str
    default: istio-system
    aliases: [ namespace ]
'''
