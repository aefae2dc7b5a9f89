#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_upgrade_state_info
short_description: Read the record of an Istio canary upgrade
version_added: 1.0.0
description:
  - Reads the record that M(meshops.istio.istio_upgrade_state) keeps on the cluster, in a ConfigMap (by default
    C(meshops-istio-upgrade) in the Istio namespace) - the revision tag being moved, the old and new revision and
    version, the phases done and the waves started and done. Never changes anything.
  - Rollback and cleanup read the old revision from here when it is not given.
author:
  - meshops.istio contributors (@meshops)
options:
  name:
    description: Name of the ConfigMap.
    type: str
    default: meshops-istio-upgrade
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.attributes
  - meshops.istio.attributes.info_module
notes:
  - The module needs C(get) on ConfigMaps in O(istio_namespace).
seealso:
  - module: meshops.istio.istio_upgrade_state
"""

EXAMPLES = r"""
- name: Read the record
  meshops.istio.istio_upgrade_state_info:
  register: upgrade

- name: Roll back to the revision the upgrade started from
  meshops.istio.istio_revision_tag:
    tag: default
    revision: "{{ upgrade.upgrade.from_revision }}"
  when: upgrade.upgrade.exists
"""

RETURN = r"""
upgrade:
  description: The record.
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the ConfigMap exists.
      type: bool
      sample: true
    name:
      description: Name of the ConfigMap.
      type: str
      sample: meshops-istio-upgrade
    namespace:
      description: Namespace of the ConfigMap.
      type: str
      sample: istio-system
    tag:
      description: The revision tag being moved.
      type: str
      sample: default
    from_revision:
      description: Old revision, or null when not known yet.
      type: str
      sample: 1-14-6
    from_version:
      description: Old version.
      type: str
      sample: 1.14.6
    to_revision:
      description: New revision.
      type: str
      sample: 1-15-4
    to_version:
      description: New version.
      type: str
      sample: 1.15.4
    phases:
      description: Phase name -> UTC time it was first completed.
      type: dict
      sample: {"precheck": "2026-11-21T23:59:01Z", "install": "2026-11-22T00:01:12Z"}
    waves:
      description: Wave name -> C(namespaces), C(workloads), C(started), C(done) (null until done).
      type: dict
      sample: {"wave1": {"namespaces": ["bar"], "workloads": ["bar/Deployment/bar"],
               "started": "2026-11-22T00:03:40Z", "done": "2026-11-22T00:04:02Z"}}
    waves_started:
      description: Names of the waves that were started (done or not).
      type: list
      elements: str
      sample: [wave1, wave2]
    waves_done:
      description: Names of the waves that are done.
      type: list
      elements: str
      sample: [wave1]
    moved_namespaces:
      description: Every namespace of a started wave (what a rollback must move back).
      type: list
      elements: str
      sample: [bar, baz, foo]
    in_progress:
      description: Something beyond precheck was done for the recorded target and the upgrade is neither cleaned up nor
        rolled back.
      type: bool
      sample: true
    rollback:
      description:
        - A rollback under way (recorded as started before it moved the tag back, not yet recorded done), or null -
          C(started), C(revision) (the revision the tag goes back to) and C(namespaces) (what it moves back).
        - While it is set, the tag and those workloads may be on either revision; run the rollback again to finish it.
      version_added: 1.1.0
      type: dict
      sample: {"started": "2026-11-22T00:09:12Z", "revision": "1-14-6", "namespaces": ["bar", "istio-ingress"]}
    rollback_under_way:
      description: Whether a rollback was started and not finished (its run was interrupted or failed).
      version_added: 1.1.0
      type: bool
      sample: false
    abandoned:
      description: The records of abandoned upgrades (their ConfigMap data and C(abandoned_at)), oldest first.
      type: list
      elements: dict
      sample: [{"to_revision": "1-15-3", "phase.install": "2026-11-20T10:00:00Z", "abandoned_at": "2026-11-21T09:00:00Z"}]
    lease:
      description:
        - The lease of the run that is changing the cluster now (see M(meshops.istio.istio_upgrade_lease)), or null -
          C(holder), C(inventory_host), C(controller_host), C(pid), C(awx_job_id), C(phase), C(since), C(renewed),
          C(expires), C(ttl).
      type: dict
      sample: {"holder": "cluster-a@ctl-1:4711", "inventory_host": "cluster-a", "controller_host": "ctl-1", "pid": "4711",
               "awx_job_id": null, "phase": "wave1", "since": "2026-11-22T00:03:40Z", "renewed": "2026-11-22T00:04:10Z",
               "expires": "2026-11-22T00:06:10Z", "ttl": "120"}
    lease_log:
      description: The takeovers of the lease (expired or broken), oldest first - C(event), C(at), C(by), C(phase),
        C(awx_job_id) and the C(previous) lease.
      type: list
      elements: dict
"""

from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import read_record


def run(module):
    return dict(changed=False, upgrade=read_record(module.client, module.params["name"], module.params["istio_namespace"]))


def main():
    MeshopsModule(dict(name=dict(type="str", default="meshops-istio-upgrade")), istio_namespace=True).run(run)


if __name__ == "__main__":
    main()
