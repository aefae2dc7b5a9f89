# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The module base (as kubernetes.core's AnsibleK8SModule): what every meshops.istio module does alike.

``MeshopsModule`` wraps AnsibleModule: it adds the shared options (args.py), masks the credentials of a
kubeconfig given as a dict, checks the Python libraries, creates the ClusterClient on first use (so input
errors come before any request) and closes it, and turns every domain exception (errors.py) into
``fail_json`` -- the one place that does.  A module is its documentation, its options and ``run(module)``,
which returns the result or raises::

    def main():
        MeshopsModule(dict(revision=dict(type='str', required=True)), istio_namespace=True).run(run)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import signal

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.meshops.istio.plugins.module_utils.args import (
    AUTH_ARG_SPEC,
    ISTIO_NAMESPACE_SPEC,
    WAIT_ARG_SPEC,
    protect_secrets,
)
from ansible_collections.meshops.istio.plugins.module_utils.client import (
    HAS_KUBERNETES,
    HAS_URLLIB3,
    KUBERNETES_IMPORT_ERROR,
    ClusterClient,
)
from ansible_collections.meshops.istio.plugins.module_utils.errors import MeshopsError
from ansible_collections.meshops.istio.plugins.module_utils.upgrade_state import LeaseKeeper


def _end_orphan():
    """The ansible-playbook this module runs for is gone (killed): nobody will read the result, and another run
    may take the lease over once it expires; end now rather than start more changes."""
    os.kill(os.getpid(), signal.SIGTERM)


class MeshopsModule:
    """One run of a module: its options, check and diff mode, its ClusterClient, its result."""

    def __init__(self, argument_spec, cluster=True, istio_namespace=False, wait=False, lease=False, **kwargs):
        spec = dict(AUTH_ARG_SPEC) if cluster else {}
        if istio_namespace:
            spec['istio_namespace'] = dict(ISTIO_NAMESPACE_SPEC)
        if lease:  # the upgrade record's lease, renewed while the module runs (doc fragment meshops.istio.lease)
            spec['lease'] = {'type': 'dict'}
        if wait:
            spec.update(WAIT_ARG_SPEC)
        spec.update(argument_spec)
        kwargs.setdefault('supports_check_mode', True)
        self.ansible = AnsibleModule(argument_spec=spec, **kwargs)
        self.params = self.ansible.params
        self.check_mode = self.ansible.check_mode
        self.diff = self.ansible._diff
        self.result = {}
        self._client = None
        if cluster:
            protect_secrets(self.ansible)
            self.require('kubernetes', HAS_KUBERNETES and HAS_URLLIB3, KUBERNETES_IMPORT_ERROR)

    def require(self, library, present, error=None):
        """fail_json with the install hint when a Python library is missing."""
        if not present:
            self.ansible.fail_json(msg=missing_required_lib(library), exception=str(error) if error else None)

    @property
    def client(self):
        """The ClusterClient of the cluster options, created on first use and closed by run()."""
        if self._client is None:
            self._client = ClusterClient.from_params(self.params)
            if (self.params.get('lease') or {}).get('needed'):
                # a phase under way: this cluster answered its plan, so a refused connection is a restart
                # of the API server (waited for, RetryPolicy.outage_seconds), not a wrong address
                self._client._answered = True
        return self._client

    def warn(self, warning):
        self.ansible.warn(warning)

    def run(self, run):
        """exit_json with ``run(self)``'s result, or fail_json with the MeshopsError it raised."""
        keeper = self._keep_lease()
        try:
            try:
                result = run(self)
            finally:
                if self._client is not None:
                    self._client.close()
                self._stop_keeping(keeper)
        except MeshopsError as exc:
            self.ansible.fail_json(**dict(self.result, **exc.to_result()))
        result = dict(self.result, **result)
        result.setdefault('changed', False)
        self.ansible.exit_json(**result)

    def _keep_lease(self):
        """Renew the lease given as option ``lease`` while run() runs (never in check mode)."""
        lease = self.params.get('lease')
        if not lease or not lease.get('needed') or self.check_mode:
            return None
        return LeaseKeeper(ClusterClient.from_params(self.params), lease, on_orphaned=_end_orphan).start()

    def _stop_keeping(self, keeper):
        if keeper is None:
            return
        keeper.stop()
        keeper.client.close()
        if keeper.lost:
            self.warn('%s while this task ran: another run may be changing the cluster now' % keeper.lost)
