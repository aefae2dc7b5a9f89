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
    InvalidInput,
    MeshopsError,
    NotFound,
)

LEGACY_LABEL = "istio-injection"
REV_LABEL = "istio.io/rev"
RETRIES = 5


def injection_labels(labels):
    return dict((key, value) for key, value in (labels or {}).items() if key in (LEGACY_LABEL, REV_LABEL))


def desired_labels(state, revision):
    return {REV_LABEL: revision} if state == "present" else {}


def run(params, client, check_mode=False, diff=False):
    name, state, revision = params["namespace"], params["state"], params.get("revision")
    if state == "present" and not revision:
        raise InvalidInput("revision is required with state=present (for example revision: default)")
    want = desired_labels(state, revision)
    for attempt in range(RETRIES):
        try:
            current = client.get("Namespace", name)
        except NotFound:
            raise InvalidInput("namespace %s does not exist" % name)
        meta = current.get("metadata") or {}
        have = injection_labels(meta.get("labels"))
        changed = have != want
        if changed and not check_mode:
            patch = {"metadata": {"labels": {LEGACY_LABEL: None, REV_LABEL: want.get(REV_LABEL)}}}
            try:
                client.patch("Namespace", name, patch, patch_type="merge", resource_version=meta.get("resourceVersion"))
            except Conflict:
                if attempt < RETRIES - 1:
                    continue
                raise
        result = dict(changed=changed, namespace={"name": name, "labels": want}, previous_labels=have)
        if diff:
            header = "namespace %s" % name
            result["diff"] = dict(before={"labels": have}, after={"labels": want}, before_header=header, after_header=header)
        return result
    raise MeshopsError("namespace %s kept changing while it was labelled (409 conflict %d times)" % (name, RETRIES))


def main():
    spec = dict(AUTH_ARG_SPEC)
    spec.update(
        namespace=dict(type="str", required=True),
        revision=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True, required_if=[("state", "present", ("revision",))])
    protect_secrets(module)
    require_libraries(module)
    try:
        check_auth_params(module.params)
        with ClusterClient.from_params(module.params) as client:
            result = run(module.params, client, check_mode=module.check_mode, diff=module._diff)
    except MeshopsError as exc:
        module.fail_json(**exc.to_result())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
