#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_upgrade_lease
short_description: Take or release the lease of the Istio upgrade record (one run per cluster at a time)
version_added: 1.0.0
description:
  - Two runs of the upgrade on one cluster at once (an AWX template launched twice, a workflow and a person, an
    orphaned worker of a killed C(ansible-playbook)) would race each other. A phase that writes therefore takes
    the lease kept in the upgrade record (the C(lease.*) keys of the ConfigMap C(meshops-istio-upgrade)) before
    it changes anything, renews it while it runs and releases it at its end.
  - V(held) takes the lease for O(holder), or renews it when O(holder) already holds it. While another run holds
    an unexpired lease the module fails, changing nothing, and names the holder (inventory host, controller
    host, pid, AWX job, phase, since, expiry) and how to take over.
  - A lease expires O(ttl) seconds after its last renewal (a holder that is gone stops renewing it); an expired
    lease is taken over. O(break_lease=true) takes over a lease that has not expired yet. Every takeover is
    logged in the record (C(lease.log.<n>), see M(meshops.istio.istio_upgrade_state_info)).
  - V(released) gives the lease back if O(holder) holds it; another run's lease is left alone.
  - Taking, renewing and releasing one's own lease is bookkeeping, reported as C(changed=false); a takeover of
    another run's lease is reported as a change.
  - Expiry compares the controllers' UTC clocks, so keep them in time (NTP).
author:
  - meshops.istio contributors (@meshops)
options:
  state:
    description: V(held) takes or renews the lease, V(released) gives it back.
    type: str
    choices: [held, released]
    default: held
  name:
    description: Name of the upgrade record ConfigMap.
    type: str
    default: meshops-istio-upgrade
  holder:
    description: Who holds the lease - one run of ansible-playbook for one cluster.
    type: dict
    required: true
    suboptions:
      inventory_host:
        description: The inventory host (the cluster).
        type: str
        required: true
      controller_host:
        description: The host that runs ansible-playbook (default - where the module runs).
        type: str
      pid:
        description: The process id of ansible-playbook (default - the module's own).
        type: str
      awx_job_id:
        description: The AWX (or Automation Controller) job id, when there is one.
        type: str
  phase:
    description: The phase the lease is taken for (shown to a run that is refused).
    type: str
    default: upgrade
  ttl:
    description: Seconds the lease lasts after its last renewal (at least 5).
    type: int
    default: 120
  break_lease:
    description:
      - Take over a lease that another run still holds. Only for a run that is known to be gone (the takeover
        is logged in the record).
    type: bool
    default: false
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Says whether the lease could be taken; never writes the ConfigMap.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The lease keys of the ConfigMap before and after.
notes:
  - Needs C(get), C(create), C(update) and C(delete) on ConfigMaps in O(istio_namespace).
  - The C(meshops.istio.istio_canary) role takes the lease in every phase that writes (C(istio_canary_lease_ttl),
    C(istio_canary_break_lease)); M(meshops.istio.rollout_restart) and M(meshops.istio.istio_revision) renew it
    while they wait.
"""

EXAMPLES = r"""
- name: Take the lease for wave1 (fails naming the holder when another run has it)
  meshops.istio.istio_upgrade_lease:
    holder:
      inventory_host: "{{ inventory_hostname }}"
      controller_host: "{{ lookup('meshops.istio.controller').controller_host }}"
      pid: "{{ lookup('meshops.istio.controller').pid }}"
    phase: wave1
    ttl: 120

- name: Give it back
  meshops.istio.istio_upgrade_lease:
    state: released
    holder:
      inventory_host: "{{ inventory_hostname }}"
      controller_host: "{{ lookup('meshops.istio.controller').controller_host }}"
      pid: "{{ lookup('meshops.istio.controller').pid }}"
"""

RETURN = r"""
lease:
  description: The lease after the call (null once released) - C(holder), C(inventory_host), C(controller_host),
    C(pid), C(awx_job_id), C(phase), C(since), C(renewed), C(expires), C(ttl).
  returned: always
  type: dict
  sample: {"holder": "cluster-a@ctl-1:4711", "inventory_host": "cluster-a", "controller_host": "ctl-1", "pid": "4711",
           "awx_job_id": null, "phase": "wave1", "since": "2026-11-22T00:03:40Z", "renewed": "2026-11-22T00:03:40Z",
           "expires": "2026-11-22T00:05:40Z", "ttl": "120"}
action:
  description: V(acquired), V(renewed), V(expired) (an expired lease taken over), V(broken) (a held lease taken
    over with O(break_lease)), V(released) or V(none) (nothing of ours to release).
  returned: always
  type: str
taken_over:
  description: The other run's lease that was taken over (V(expired) or V(broken)), else null.
  returned: always
  type: dict
changes:
  description: The ConfigMap written (or that would be, in check mode).
  returned: always
  type: list
  elements: dict
"""

from ansible_collections.meshops.istio.plugins.module_utils.args import LEASE_HOLDER_OPTIONS
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import (
    LEASE_PREFIX,
    acquire_lease,
    lease_of,
    release_lease,
)


def _lease_data(obj):
    return dict((k, v) for k, v in ((obj or {}).get("data") or {}).items() if k.startswith(LEASE_PREFIX))


def run(module):
    params = module.params
    name, namespace = params["name"], params["istio_namespace"]
    if params["state"] == "held":
        update, out = acquire_lease(module.client, name, namespace, params["holder"], params["phase"],
                                    ttl=params["ttl"], break_lease=params["break_lease"],
                                    check_mode=module.check_mode)
        result = dict(changed=out["how"] in ("expired", "broken"), action=out["how"], lease=out["lease"],
                      taken_over=out["previous"])
        if out["previous"]:
            module.warn("took over the lease of %s (%s)" % (out["previous"]["holder"], out["how"]))
    else:
        update, released = release_lease(module.client, name, namespace, params["holder"], check_mode=module.check_mode)
        after = update.after if update.action != "delete" else None
        result = dict(changed=False, action="released" if released else "none", taken_over=None,
                      lease=lease_of((after or {}).get("data")) if released else lease_of((update.before or {}).get("data")))
    result["changes"] = update.changes("ConfigMap", name, namespace)
    if module.diff:
        header = "configmap %s/%s (lease)" % (namespace, name)
        result["diff"] = dict(before=_lease_data(update.before), after=_lease_data(update.desired),
                              before_header=header, after_header=header)
    return result


def main():
    MeshopsModule(dict(
        state=dict(type="str", choices=["held", "released"], default="held"),
        name=dict(type="str", default="meshops-istio-upgrade"),
        holder=dict(type="dict", required=True, options=LEASE_HOLDER_OPTIONS),
        phase=dict(type="str", default="upgrade"),
        ttl=dict(type="int", default=120),
        break_lease=dict(type="bool", default=False),
    ), istio_namespace=True).run(run)


if __name__ == "__main__":
    main()
