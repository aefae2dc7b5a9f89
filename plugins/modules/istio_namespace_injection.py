#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_namespace_injection
short_description: Set a namespace's Istio sidecar injection label the revision-based way
version_added: 1.0.0
description:
  - Makes a namespace select its injector with C(istio.io/rev=<revision or tag>) only, removing the
    legacy C(istio-injection) label that would otherwise win over C(istio.io/rev).
  - This is the label migration of a canary upgrade (C(istio-injection=enabled) to
    C(istio.io/rev=default)); running pods are untouched until they are restarted.
  - With O(state=absent) both injection labels are removed (new pods get no sidecar).
  - Updates are conditional on the namespace's resourceVersion, so a concurrent change is not lost.
author:
  - meshops.istio contributors (@meshops)
options:
  namespace:
    description: The namespace to label.
    type: str
    required: true
  revision:
    description:
      - The value of C(istio.io/rev), a revision tag (for example V(default)) or a revision (for example V(1-15-4)).
      - Required when O(state=present).
    type: str
  state:
    description:
      - V(present) sets C(istio.io/rev=<revision>) and removes C(istio-injection).
      - V(absent) removes both labels.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - meshops.istio.auth
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the labels as they would be; nothing is patched.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The namespace injection labels before and after.
notes:
  - Needs C(get) and C(patch) on namespaces.
"""

EXAMPLES = r"""
- name: Migrate a namespace from istio-injection=enabled to the default revision tag
  meshops.istio.istio_namespace_injection:
    namespace: legacy-app
    revision: default
"""

RETURN = r"""
namespace:
  description: The namespace's name and its injection labels after the call (in check mode, as they would be).
  returned: always
  type: dict
  sample: {"name": "legacy-app", "labels": {"istio.io/rev": "default"}}
previous_labels:
  description: The namespace's injection labels before the call.
  returned: always
  type: dict
  sample: {"istio-injection": "enabled"}
changes:
  description: The objects changed (or that would be, in check mode), with the action.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "Namespace", "name": "legacy-app", "action": "updated"}]
"""

from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput
from ansible_collections.meshops.istio.plugins.module_utils.mesh import INJECTION_LABEL, REV_LABEL
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule

ARGUMENT_SPEC = dict(
    namespace=dict(type="str", required=True),
    revision=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
)


def injection_labels(obj):
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return dict((key, value) for key, value in labels.items() if key in (INJECTION_LABEL, REV_LABEL))


def run(module):
    name, revision = module.params["namespace"], module.params.get("revision")
    want = {REV_LABEL: revision} if module.params["state"] == "present" else {}

    def relabel(namespace):
        if namespace is None:
            raise InvalidInput("namespace %s does not exist" % name)
        if injection_labels(namespace) == want:
            return None
        labels = namespace.setdefault("metadata", {}).setdefault("labels", {})
        for key in (INJECTION_LABEL, REV_LABEL):
            labels.pop(key, None)
        labels.update(want)
        return namespace

    update = module.client.update_with_retry("Namespace", name, relabel, check_mode=module.check_mode, patch=True)
    have = injection_labels(update.before)
    result = dict(changed=update.changed, namespace={"name": name, "labels": want}, previous_labels=have,
                  changes=update.changes("Namespace", name))
    if module.diff:
        header = "namespace %s" % name
        result["diff"] = dict(before={"labels": have}, after={"labels": want}, before_header=header, after_header=header)
    return result


def main():
    MeshopsModule(ARGUMENT_SPEC, required_if=[("state", "present", ("revision",))]).run(run)


if __name__ == "__main__":
    main()
