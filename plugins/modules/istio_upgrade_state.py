#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_upgrade_state
short_description: Record and read the progress of an Istio canary upgrade on the cluster
version_added: 1.0.0
description:
  - Keeps the state of a revision-based canary upgrade in a ConfigMap (by default
    C(meshops-istio-upgrade) in the Istio namespace), so that phases run as separate
    invocations (one AWX job per phase, a re-run after a crash) share it.
  - The record holds the revision tag being moved, the old (C(from_*)) and new (C(to_*))
    revision and version, every phase done with the time it was first completed, and every
    wave with its namespaces, its workloads and the times it was started and done.
  - Updates merge into the record. A phase or wave keeps its first completion time, so
    recording it again reports no change. A different O(to_revision) than the recorded one
    starts a new record, but an upgrade in progress (anything beyond precheck done, and neither
    cleaned up nor rolled back) is only replaced with O(abandon=true); the abandoned record is then
    kept whole in the new one (RV(upgrade.abandoned)).
  - A record whose old and new revision would be the same is refused, and nothing is written.
  - The ConfigMap is flat (one key per fact, lists comma separated) so that
    C(kubectl get configmap meshops-istio-upgrade -n istio-system -o yaml) reads plainly.
  - Check mode never writes the ConfigMap; it reports what would change (with diff).
author:
  - meshops.istio contributors (@meshops)
options:
  state:
    description:
      - V(present) creates or updates the record with the given values.
      - V(query) only reads it (never changes anything); RV(upgrade.exists) tells whether there is one.
      - V(absent) deletes the record.
    type: str
    choices: [present, query, absent]
    default: present
  name:
    description: Name of the ConfigMap.
    type: str
    default: meshops-istio-upgrade
  namespace:
    description: Namespace of the ConfigMap, normally the Istio control plane namespace.
    type: str
    default: istio-system
  tag:
    description: The revision tag the upgrade moves (for example V(default)).
    type: str
  from_revision:
    description: The revision the workloads are moved away from (for example V(1-14-6)).
    type: str
  from_version:
    description: The Istio version of O(from_revision) (for example V(1.14.6)).
    type: str
  to_revision:
    description:
      - The revision the workloads are moved to (for example V(1-15-4)).
      - When it differs from the recorded one, the previous record is replaced by a new one.
    type: str
  to_version:
    description: The Istio version of O(to_revision).
    type: str
  phase:
    description:
      - A phase that is done (for example V(precheck), V(install), V(tag)). Its time is
        recorded once; recording it again changes nothing.
      - Letters, digits, C(-) and C(_) only.
    type: str
  wave:
    description: A wave that was started or is done.
    type: dict
    suboptions:
      name:
        description: Name of the wave (letters, digits, C(-) and C(_)).
        type: str
        required: true
      namespaces:
        description: Namespaces the wave moves; merged with those already recorded.
        type: list
        elements: str
        default: []
      workloads:
        description: Workloads the wave moves as C(namespace/Kind/name); merged with those already recorded.
        type: list
        elements: str
        default: []
      status:
        description: V(started) records the start time only; V(done) also the completion time.
        type: str
        choices: [started, done]
        default: done
  forget_phases:
    description: Phases to remove from the record (a rollback undoes C(tag), C(gateways) and C(verify)).
    type: list
    elements: str
    default: []
  forget_waves:
    description: Remove every wave from the record (a rollback moves their namespaces back).
    type: bool
    default: false
  abandon:
    description:
      - Allow a different O(to_revision) to replace an upgrade in progress. The abandoned record is kept
        under C(abandoned.<n>) in the new one.
      - Without it such a change fails and nothing is written.
    type: bool
    default: false
extends_documentation_fragment:
  - meshops.istio.auth
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes the record as it would be; never writes the ConfigMap.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The ConfigMap data before and after.
notes:
  - The module needs C(get), C(create), C(update) and C(delete) on ConfigMaps in O(namespace).
"""

EXAMPLES = r"""
- name: Record what precheck learned
  meshops.istio.istio_upgrade_state:
    tag: default
    from_revision: 1-14-6
    from_version: 1.14.6
    to_revision: 1-15-4
    to_version: 1.15.4
    phase: precheck

- name: Record that wave1 started (before restarting anything)
  meshops.istio.istio_upgrade_state:
    to_revision: 1-15-4
    wave:
      name: wave1
      namespaces: [bar]
      status: started

- name: Read the record back (rollback and cleanup do this)
  meshops.istio.istio_upgrade_state:
    state: query
  register: upgrade

- name: After a rollback, forget what was undone
  meshops.istio.istio_upgrade_state:
    phase: rollback
    forget_phases: [tag, gateways, verify]
    forget_waves: true
"""

RETURN = r"""
upgrade:
  description: The record after the call (in check mode, as it would be).
  returned: always
  type: dict
  contains:
    exists:
      description: Whether the ConfigMap exists (after the call).
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
      description: Something beyond precheck was done for O(to_revision) and the upgrade is neither cleaned up nor rolled back.
      type: bool
      sample: true
    abandoned:
      description: The records of abandoned upgrades (their ConfigMap data and C(abandoned_at)), oldest first.
      type: list
      elements: dict
      sample: [{"to_revision": "1-15-3", "phase.install": "2026-11-20T10:00:00Z", "abandoned_at": "2026-11-21T09:00:00Z"}]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.meshops.istio.plugins.module_utils.args import (
    AUTH_ARG_SPEC,
    check_auth_params,
    protect_secrets,
)
from ansible_collections.meshops.istio.plugins.module_utils.client import (
    ClusterClient,
    require_libraries,
)
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    Conflict,
    MeshopsError,
)
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import (
    STATE_FIELDS,
    UpgradeStateError,
    empty_record,
    merge,
    parse,
    public,
    render,
)

MANAGED_LABELS = {
    "app.kubernetes.io/managed-by": "meshops.istio",
    "app.kubernetes.io/component": "upgrade-state",
}
RETRIES = 5


def body_for(name, namespace, data, resource_version=None):
    metadata = {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def run(params, client, check_mode=False, diff=False):
    """Apply the requested change to the record; returns the module result (without failing)."""
    name, namespace = params["name"], params["namespace"]
    for attempt in range(RETRIES):
        current = client.get_or_none("ConfigMap", name, namespace)
        before_data = dict((current or {}).get("data") or {})
        before = parse(before_data) if current is not None else empty_record()

        if params["state"] == "query":
            return dict(changed=False, upgrade=public(before, current is not None, name, namespace))

        if params["state"] == "absent":
            changed = current is not None
            if changed and not check_mode:
                client.delete("ConfigMap", name, namespace)
            result = dict(changed=changed, upgrade=public(empty_record(), False, name, namespace))
            if diff:
                result["diff"] = dict(before=before_data, after={})
            return result

        fields = dict((key, params.get(key)) for key in STATE_FIELDS)
        after = merge(
            before,
            fields=fields,
            phase=params.get("phase"),
            wave=params.get("wave"),
            forget_phases=params.get("forget_phases"),
            forget_waves=params.get("forget_waves"),
            abandon=params.get("abandon"),
        )
        after_data = render(after)
        changed = current is None or after_data != before_data
        if changed and not check_mode:
            try:
                if current is None:
                    client.create("ConfigMap", body_for(name, namespace, after_data), namespace)
                else:
                    # Conditional on the resourceVersion read: a concurrent writer makes this a 409,
                    # and the merge is redone on what it wrote instead of clobbering it.
                    rv = (current.get("metadata") or {}).get("resourceVersion")
                    client.replace("ConfigMap", body_for(name, namespace, after_data, rv), namespace)
            except Conflict:
                if attempt < RETRIES - 1:
                    continue
                raise
        result = dict(changed=changed, upgrade=public(after, current is not None or not check_mode, name, namespace))
        if diff:
            header = "configmap %s/%s" % (namespace, name)
            result["diff"] = dict(before=before_data, after=after_data, before_header=header, after_header=header)
        return result
    raise MeshopsError("configmap %s/%s kept changing while it was updated (409 conflict %d times)" % (namespace, name, RETRIES))


def argument_spec():
    spec = dict(AUTH_ARG_SPEC)
    spec.update(
        state=dict(type="str", choices=["present", "query", "absent"], default="present"),
        name=dict(type="str", default="meshops-istio-upgrade"),
        namespace=dict(type="str", default="istio-system"),
        tag=dict(type="str"),
        from_revision=dict(type="str"),
        from_version=dict(type="str"),
        to_revision=dict(type="str"),
        to_version=dict(type="str"),
        phase=dict(type="str"),
        wave=dict(
            type="dict",
            options=dict(
                name=dict(type="str", required=True),
                namespaces=dict(type="list", elements="str", default=[]),
                workloads=dict(type="list", elements="str", default=[]),
                status=dict(type="str", choices=["started", "done"], default="done"),
            ),
        ),
        forget_phases=dict(type="list", elements="str", default=[]),
        forget_waves=dict(type="bool", default=False),
        abandon=dict(type="bool", default=False),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    protect_secrets(module)
    require_libraries(module)
    try:
        check_auth_params(module.params)
        with ClusterClient.from_params(module.params) as client:
            result = run(module.params, client, check_mode=module.check_mode, diff=module._diff)
    except UpgradeStateError as exc:
        module.fail_json(msg="upgrade record configmap %s/%s: %s; nothing was written" % (
            module.params["namespace"], module.params["name"], exc))
    except MeshopsError as exc:
        failure = exc.to_result()
        failure["msg"] = "upgrade record configmap %s/%s: %s" % (module.params["namespace"], module.params["name"], failure["msg"])
        module.fail_json(**failure)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
