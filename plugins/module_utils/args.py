# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared argument specs of the meshops.istio modules (the module base, module.py, composes them).

The auth options and their ``K8S_AUTH_*`` environment fallbacks follow kubernetes.core, so the same
inventory variables and environment work for both collections.  Documented by the doc fragments
``meshops.istio.auth`` and ``meshops.istio.wait``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.module_utils.basic import env_fallback

AUTH_ARG_SPEC = {
    'kubeconfig': {'type': 'raw', 'fallback': (env_fallback, ['K8S_AUTH_KUBECONFIG'])},
    'context': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_CONTEXT'])},
    'host': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_HOST'])},
    'api_key': {'type': 'str', 'no_log': True, 'fallback': (env_fallback, ['K8S_AUTH_API_KEY'])},
    'validate_certs': {'type': 'bool', 'aliases': ['verify_ssl'],
                       'fallback': (env_fallback, ['K8S_AUTH_VERIFY_SSL'])},
    'ca_cert': {'type': 'path', 'aliases': ['ssl_ca_cert'],
                'fallback': (env_fallback, ['K8S_AUTH_SSL_CA_CERT'])},
    'client_cert': {'type': 'path', 'aliases': ['cert_file'],
                    'fallback': (env_fallback, ['K8S_AUTH_CERT_FILE'])},
    'client_key': {'type': 'path', 'aliases': ['key_file'], 'no_log': False,
                   'fallback': (env_fallback, ['K8S_AUTH_KEY_FILE'])},
    'proxy': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_PROXY'])},
    'no_proxy': {'type': 'str', 'fallback': (env_fallback, ['K8S_AUTH_NO_PROXY'])},
}

AUTH_PARAM_NAMES = tuple(AUTH_ARG_SPEC)

# The control-plane namespace, named alike in every module (``namespace`` stays an alias where it meant
# this); target namespaces are ``namespace``/``namespaces``.
ISTIO_NAMESPACE_SPEC = {'type': 'str', 'default': 'istio-system', 'aliases': ['namespace']}

# The options of istio_traffic_shift and istio_traffic_shift_info that name the split (doc fragment
# meshops.istio.traffic).
TRAFFIC_TARGET_SPEC = {
    'namespace': {'type': 'str', 'required': True},
    'service': {'type': 'str', 'required': True, 'aliases': ['destination_host']},
    'virtual_service': {'type': 'str'},
    'destination_rule': {'type': 'str'},
    'route_name': {'type': 'str'},
    'api_version': {'type': 'str', 'default': 'networking.istio.io/v1beta1'},
}

# Who holds the upgrade record's lease (istio_upgrade_lease's holder, istio_canary_plan's lease_holder).
LEASE_HOLDER_OPTIONS = {
    'inventory_host': {'type': 'str', 'required': True},
    'controller_host': {'type': 'str'},
    'pid': {'type': 'str'},
    'awx_job_id': {'type': 'str'},
}

# Who runs a phase or a rollout, as AWX names it (istio_upgrade_journal's job, rollout_restart's progress.job).
JOB_OPTIONS = {
    'id': {'type': 'str'},
    'template': {'type': 'str'},
    'user': {'type': 'str'},
}

WAIT_ARG_SPEC = {
    'wait': {'type': 'bool', 'default': True},
    'wait_timeout': {'type': 'int', 'default': 300},
}

DNS1123_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')


def kubeconfig_secrets(kubeconfig):
    """Every string under ``users[*].user`` of a kubeconfig given as a dict (tokens, keys, passwords,
    exec arguments and env).  Empty for a path or None."""
    found = set()
    if not isinstance(kubeconfig, dict):
        return found

    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif isinstance(value, str) and len(value) >= 4:
            found.add(value)

    for user in kubeconfig.get('users') or []:
        if isinstance(user, dict):
            walk(user.get('user'))
    return found


def protect_secrets(module):
    """Make Ansible mask the credentials inside a kubeconfig dict wherever they would show up in the
    module's result (including ``invocation.module_args`` at -vvv); ``api_key`` is already ``no_log``.
    The module base (module.py) calls it right after creating the AnsibleModule."""
    secrets = kubeconfig_secrets(module.params.get('kubeconfig'))
    if secrets:
        module.no_log_values.update(secrets)
    return secrets


def check_auth_params(params):
    """Validate the auth options before anything is sent; raise InvalidInput with what to do."""
    from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

    kubeconfig = params.get('kubeconfig')
    if kubeconfig is not None and not isinstance(kubeconfig, (str, dict)):
        raise InvalidInput('kubeconfig must be a path to a kubeconfig file or the kubeconfig as a '
                           'dict, not %s' % type(kubeconfig).__name__)
    if isinstance(kubeconfig, str) and not kubeconfig.strip():
        raise InvalidInput('kubeconfig is empty: give the path of a kubeconfig file, or leave it '
                           'unset to use $KUBECONFIG or ~/.kube/config')
    host = params.get('host')
    if host is not None and not re.match(r'^https?://[^/\s]+', host):
        raise InvalidInput('host %r is not a URL of an API server: use e.g. '
                           'https://api.example.com:6443' % host)
    if bool(params.get('client_cert')) != bool(params.get('client_key')):
        raise InvalidInput('client_cert and client_key go together: give both or neither')


def validate_dns1123_label(value, what='revision'):
    """Return ``value`` if it is a DNS-1123 label, else raise InvalidInput naming a fixed spelling."""
    from ansible_collections.meshops.istio.plugins.module_utils.errors import InvalidInput

    if not isinstance(value, str) or not value:
        raise InvalidInput('%s must be a non-empty string' % what)
    if len(value) > 63 or not DNS1123_LABEL.match(value):
        suggestion = re.sub(r'[^a-z0-9-]+', '-', value.lower()).strip('-')[:63].strip('-')
        hint = ''
        if suggestion and suggestion != value and DNS1123_LABEL.match(suggestion):
            hint = ': use %r' % suggestion
        raise InvalidInput(
            '%s %r is not a valid name (a DNS-1123 label: lower case letters, digits and "-", '
            'starting and ending with a letter or digit, at most 63 characters)%s'
            % (what, value, hint), details={what: value, 'suggestion': suggestion or None})
    return value
