#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: istio_sail_revision
short_description: Make a Sail-managed Istio revision active, or wait for Sail to remove it (OpenShift Service Mesh 3)
version_added: 1.0.0
description:
  - On a mesh whose control plane the Sail operator manages (C(sailoperator.io/v1) C(Istio), C(IstioRevision),
    C(IstioRevisionTag); OpenShift Service Mesh 3), changes only what Sail leaves to its users and waits for
    the operator to do the rest. It never installs, edits or deletes what Sail renders (istiod, webhooks).
  - O(state=active) sets the C(Istio)'s C(spec.version) so that O(revision) becomes its active revision (with
    C(updateStrategy.type=RevisionBased) Sail names it C(<istio>-v<x>-<y>-<z>) and creates it), and waits for it
    to be C(Ready) and active. With O(tag), the C(IstioRevisionTag) is made to point at it too. A tag whose
    C(targetRef) is the C(Istio) follows the active revision by itself (waited for); a tag pinned to an
    C(IstioRevision) has its C(targetRef) moved. Used by the install, tag and rollback phases.
  - O(state=absent) waits for Sail to delete the inactive O(revision), which it does
    C(inactiveRevisionDeletionGracePeriodSeconds) after nothing uses it, and on timeout names what keeps it in
    use by Sail's rules (tags, namespace labels, pods annotated C(istio.io/rev=<revision>) that are not
    Succeeded, so a Failed pod counts). The active revision is refused. Used by the cleanup phase.
author:
  - meshops.istio contributors (@meshops)
options:
  revision:
    description:
      - The IstioRevision, for example V(default-v1-30-3).
      - With O(state=active) it must be the name Sail gives O(version) of the Istio.
    type: str
    required: true
  version:
    description: The Istio version of O(revision), for example V(1.30.3). Required with O(state=active).
    type: str
  state:
    description: V(active) or V(absent) (see the description).
    type: str
    choices: [active, absent]
    default: active
  tag:
    description: With O(state=active), the IstioRevisionTag to point at O(revision) (followed or moved).
    type: str
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.wait
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reports the version and tag changes, and whether the revision is still there to be removed.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The Istio's C(spec.version) and the tag's target, before and after.
notes:
  - Needs C(get), C(list) and C(patch) on C(istios) and C(istiorevisiontags), C(get) and C(list) on
    C(istiorevisions) (group C(sailoperator.io)), and C(list) on namespaces and pods (see docs/rbac.yaml).
  - The playbook's phases call it when the plan detects a Sail-managed mesh; istioctl is not needed there.
seealso:
  - module: meshops.istio.istio_canary_plan
  - module: meshops.istio.rollout_restart
"""

EXAMPLES = r"""
- name: Install - Istio default to 1.30.3 (Sail creates default-v1-30-3; tag default follows it)
  meshops.istio.istio_sail_revision:
    revision: default-v1-30-3
    version: 1.30.3
    tag: default

- name: Rollback - the old version again while its revision still exists
  meshops.istio.istio_sail_revision:
    revision: default-v1-29-6
    version: 1.29.6
    tag: default

- name: Cleanup - wait for Sail to delete the inactive revision (its grace period included)
  meshops.istio.istio_sail_revision:
    revision: default-v1-29-6
    state: absent
    wait_timeout: 600
"""

RETURN = r"""
changes:
  description: What was changed (or would be), each with C(kind), C(name), C(field), C(before), C(after); C(by) when Sail makes it.
  returned: always
  type: list
  elements: dict
  sample: [{"kind": "Istio", "name": "default", "field": "spec.version", "before": "v1.29.6", "after": "v1.30.3"}]
istio:
  description: The Istio that owns the revision (O(state=active)).
  returned: when O(state=active)
  type: str
  sample: default
revision:
  description: The revision.
  returned: always
  type: str
  sample: default-v1-30-3
removed:
  description: Whether Sail deleted the revision during this run (O(state=absent)).
  returned: when O(state=absent)
  type: bool
users:
  description: What keeps the revision in use by Sail's rules, when it was found (O(state=absent)).
  returned: when O(state=absent)
  type: list
  elements: str
  sample: ["pod bar/migrate-x Failed (a Failed pod keeps the revision in use for Sail: delete it)"]
"""

from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput
from ansible_collections.meshops.istio.plugins.module_utils.mesh import validate_revision_name
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule
from ansible_collections.meshops.istio.plugins.module_utils.plan import parse_version
from ansible_collections.meshops.istio.plugins.module_utils.sail import SailControl


def run(module):
    params = module.params
    validate_revision_name(params['revision'])
    if params['state'] == 'active' and not parse_version(params['version']):
        raise InvalidInput('version %r is not an Istio version like 1.30.3 (required with state=active)'
                           % (params['version'],))
    control = SailControl(module.client, params['istio_namespace'])
    if params['state'] == 'absent':
        present, result = control.await_removal(params['revision'], check_mode=module.check_mode,
                                                wait=params['wait'], timeout=params['wait_timeout'])
        result['changes'] = [{'kind': 'IstioRevision', 'name': params['revision'], 'field': 'metadata',
                              'before': 'present', 'after': 'deleted', 'by': 'Sail'}] if present else []
        result['changed'] = present
        if module.diff and present:
            result['diff'] = {'before': 'IstioRevision %s\n' % params['revision'], 'after': ''}
        result['msg'] = ('IstioRevision %s %s' % (params['revision'], 'would be waited for' if module.check_mode
                                                  else 'deleted by Sail')) if present else \
            'IstioRevision %s is gone' % params['revision']
        return result
    changes, result = control.activate(params['revision'], params['version'], tag=params['tag'],
                                       check_mode=module.check_mode, wait=params['wait'],
                                       timeout=params['wait_timeout'])
    result['changes'] = changes
    result['changed'] = any(not c.get('by') for c in changes)
    if module.diff and changes:
        result['diff'] = {
            'before': ''.join('%s %s %s: %s\n' % (c['kind'], c['name'], c['field'], c['before']) for c in changes),
            'after': ''.join('%s %s %s: %s\n' % (c['kind'], c['name'], c['field'], c['after']) for c in changes)}
    result['msg'] = 'revision %s active%s' % (params['revision'], ' with tag %s' % params['tag'] if params['tag'] else '')
    return result


def main():
    MeshopsModule(dict(
        revision=dict(type='str', required=True),
        version=dict(type='str'),
        state=dict(type='str', choices=['active', 'absent'], default='active'),
        tag=dict(type='str'),
    ), istio_namespace=True, wait=True, required_if=[('state', 'active', ['version'])]).run(run)


if __name__ == '__main__':
    main()
