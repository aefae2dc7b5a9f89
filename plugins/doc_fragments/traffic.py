# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Which Service's traffic split, in which objects: meshops.istio.traffic."""

    DOCUMENTATION = r'''
options:
  namespace:
    description: Namespace of the Service, the VirtualService and the DestinationRule.
    type: str
    required: true
  service:
    description:
      - The host whose traffic is split, normally the name of a Service in O(namespace) (for example
        V(reviews)); the fully qualified name V(reviews.bookinfo.svc.cluster.local) is accepted too.
      - The DestinationRule's C(host) and the C(destination.host) of the routes.
    type: str
    required: true
    aliases: [destination_host]
  virtual_service:
    description: Name of the VirtualService. Defaults to the short name of O(service).
    type: str
  destination_rule:
    description: Name of the DestinationRule. Defaults to the short name of O(service).
    type: str
  route_name:
    description:
      - Name of the HTTP route of the VirtualService that carries the split. M(meshops.istio.istio_traffic_shift)
        creates (appends) it when the VirtualService has no route of that name.
      - Without it the single default route (without C(match)) for O(service); several such routes are an error.
    type: str
  api_version:
    description:
      - API version used for VirtualService and DestinationRule. V(networking.istio.io/v1beta1) is served by
        every Istio release this collection supports (1.9 and later).
    type: str
    default: networking.istio.io/v1beta1
'''
