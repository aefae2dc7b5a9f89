#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: istio_precheck
short_description: Check istioctl and run istioctl x precheck against the cluster the other modules use
version_added: 1.0.0
description:
  - Checks that O(istioctl_path) is the istioctl of O(expected_version) (a revision is installed with the istioctl
    of its version), then runs C(istioctl x precheck) and returns its findings.
  - istioctl gets exactly the cluster and credentials the other modules of the collection use, from the same
    options (a kubeconfig file or dict, the C(K8S_AUTH_*) environment, the context, host and api_key,
    certificates). Without a kubeconfig option it is given the file the modules fall back to (C($KUBECONFIG),
    else C(~/.kube/config)) by name; with nothing to go on it fails as the modules do, so istioctl never checks
    another cluster by accident. A kubeconfig written for istioctl (dict, host/api_key, certificates) is private
    (mode 0600) and removed right after the command.
  - Fails when the version is not the expected one or when C(istioctl x precheck) reports errors; never changes
    anything.
author:
  - meshops.istio contributors (@meshops)
options:
  istioctl_path:
    description: Path (or name on PATH) of istioctl.
    type: str
    default: istioctl
  expected_version:
    description:
      - The Istio version istioctl must be (for example V(1.15.4)); not checked when omitted.
    type: str
  precheck:
    description: Run C(istioctl x precheck). V(false) only checks the version.
    type: bool
    default: true
  revision:
    description: Passed to C(istioctl x precheck --revision).
    type: str
  from_version:
    description:
      - The Istio version upgraded from. With an istioctl of 1.20 or later it runs
        C(istioctl x precheck --from-version <from_version> -o json) (the checks of what changed between the two
        versions); warnings are listed in C(precheck.messages), only Error-level findings fail.
    version_added: 1.1.0
    type: str
  timeout:
    description: Seconds istioctl may run.
    type: int
    default: 300
extends_documentation_fragment:
  - meshops.istio.auth
  - meshops.istio.istio_namespace
  - meshops.istio.attributes
  - meshops.istio.attributes.info_module
notes:
  - C(istioctl x precheck) asks the API server whether the credentials may create what an install creates
    (SelfSubjectAccessReviews); see C(docs/rbac.yaml).
'''

EXAMPLES = r'''
- name: The istioctl of 1.15.4, and a cluster it can upgrade (credentials from K8S_AUTH_KUBECONFIG)
  meshops.istio.istio_precheck:
    istioctl_path: /opt/istio/1.15.4/bin/istioctl
    expected_version: 1.15.4
  register: precheck

- name: Only the version
  meshops.istio.istio_precheck:
    istioctl_path: /opt/istio/1.15.4/bin/istioctl
    expected_version: 1.15.4
    precheck: false
'''

RETURN = r'''
istioctl:
  description: The istioctl used.
  returned: always
  type: dict
  contains:
    path:
      description: Its absolute path.
      type: str
    version:
      description: Its client version.
      type: str
      sample: 1.15.4
precheck:
  description: What C(istioctl x precheck) found (absent with O(precheck=false)).
  returned: when O(precheck) is true
  type: dict
  contains:
    ok:
      description: It exited 0.
      type: bool
    rc:
      description: Its exit code.
      type: int
    messages:
      description:
        - Its findings, each with C(level) (Error, Warning, Info), C(code) (C(IST0141)), C(where), C(message) and the
          whole line as C(text).
      type: list
      elements: dict
      sample: [{"level": "Warning", "code": "IST0113", "where": "Namespace foo", "message": "The namespace has both ...",
                "text": "Warning [IST0113] (Namespace foo) The namespace has both ..."}]
    output:
      description: Its output (credentials removed).
      type: str
    command:
      description: The command line (without the kubeconfig path).
      type: str
      sample: istioctl x precheck
'''

from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_PARAM_NAMES
from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput, IstioctlError
from ansible_collections.meshops.istio.plugins.module_utils.istioctl import Istioctl
from ansible_collections.meshops.istio.plugins.module_utils.mesh import validate_revision_name
from ansible_collections.meshops.istio.plugins.module_utils.module import MeshopsModule


def run(module, tool=None):
    """The module result; raises MeshopsError when istioctl is not the expected version or finds errors."""
    params = module.params
    if params.get('revision'):
        validate_revision_name(params['revision'])
    if params['timeout'] <= 0:
        raise InvalidInput('timeout must be a positive number of seconds')
    auth = dict((key, params.get(key)) for key in AUTH_PARAM_NAMES)
    tool = tool or Istioctl(params['istioctl_path'], auth, timeout=params['timeout'])
    version = tool.version()
    result = {'changed': False, 'istioctl': {'path': tool.resolve(), 'version': version}}
    expected = (params.get('expected_version') or '').lstrip('v')
    if expected and version != expected:
        raise IstioctlError(
            'istioctl (%s) is version %s, not %s: a revision is installed with the istioctl of its version. Set '
            'istioctl_path (istio_canary_istioctl) to the istioctl of %s (or fix the expected version).'
            % (params['istioctl_path'], version, expected, expected),
            details={'istioctl': result['istioctl'], 'expected_version': expected})
    if not params['precheck']:
        result['msg'] = 'istioctl %s' % version
        return result
    found = tool.precheck(params.get('revision'), params['istio_namespace'], params.get('from_version'))
    result['precheck'] = found
    if not found['ok']:
        errors = [m['text'] for m in found['messages'] if m['level'] == 'Error']
        raise IstioctlError('istioctl x precheck found problems (rc %s): %s'
                            % (found['rc'], '; '.join(errors) or found['output'][-800:] or 'no output'),
                            details={'precheck': found, 'istioctl': result['istioctl']})
    result['msg'] = 'istioctl %s: x precheck found no issue%s' % (
        version, '' if not found['messages'] else ' (%d warnings)' % len(found['messages']))
    return result


def main():
    MeshopsModule(dict(
        istioctl_path=dict(type='str', default='istioctl'),
        expected_version=dict(type='str'),
        precheck=dict(type='bool', default=True),
        revision=dict(type='str'),
        from_version=dict(type='str'),
        timeout=dict(type='int', default=300),
    ), istio_namespace=True).run(run)


if __name__ == '__main__':
    main()
