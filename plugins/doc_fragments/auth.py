# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Options to reach the cluster: meshops.istio.auth."""

    DOCUMENTATION = r'''
options:
  kubeconfig:
    description:
      - Path of an existing kubeconfig file, or the kubeconfig itself as a dictionary.
      - When neither O(kubeconfig) nor O(host) is given, the E(KUBECONFIG) environment variable,
        then C(~/.kube/config), then the in-cluster service account are used.
      - Credentials inside a kubeconfig given as a dictionary are masked in the module's output.
      - Can also be set with the E(K8S_AUTH_KUBECONFIG) environment variable.
    type: raw
  context:
    description:
      - The kubeconfig context to use; the kubeconfig's current context when omitted.
      - Can also be set with the E(K8S_AUTH_CONTEXT) environment variable.
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example V(https://api.example.com:6443).
      - Overrides the server of the kubeconfig; with O(api_key) it needs no kubeconfig at all.
      - Can also be set with the E(K8S_AUTH_HOST) environment variable.
    type: str
  api_key:
    description:
      - Bearer token used to authenticate with the API server. Never shown in output or logs.
      - Can also be set with the E(K8S_AUTH_API_KEY) environment variable.
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - Defaults to what the kubeconfig says (verification on unless C(insecure-skip-tls-verify)).
      - Can also be set with the E(K8S_AUTH_VERIFY_SSL) environment variable.
    type: bool
    aliases: [ verify_ssl ]
  ca_cert:
    description:
      - Path of a CA certificate file used to verify the API server.
      - Can also be set with the E(K8S_AUTH_SSL_CA_CERT) environment variable.
    type: path
    aliases: [ ssl_ca_cert ]
  client_cert:
    description:
      - Path of a client certificate file for TLS client authentication. Requires O(client_key).
      - Can also be set with the E(K8S_AUTH_CERT_FILE) environment variable.
    type: path
    aliases: [ cert_file ]
  client_key:
    description:
      - Path of the key file of O(client_cert).
      - Can also be set with the E(K8S_AUTH_KEY_FILE) environment variable.
    type: path
    aliases: [ key_file ]
  proxy:
    description:
      - URL of an HTTP proxy to reach the API server through.
      - Can also be set with the E(K8S_AUTH_PROXY) environment variable.
    type: str
  no_proxy:
    description:
      - Comma separated host names (or domain suffixes) that are reached without O(proxy).
      - Can also be set with the E(K8S_AUTH_NO_PROXY) environment variable.
    type: str
notes:
  - The modules talk to the Kubernetes API through the C(kubernetes) Python library (its configuration
    loader and API client), find the kinds the server serves by API discovery, and retry transient API
    errors (HTTP 429, 500, 502, 503, 504 and dropped connections) with capped exponential backoff that
    honours C(Retry-After).
  - These options can be set once for every module of the collection that talks to the cluster with
    C(module_defaults) of the action group C(group/meshops.istio.cluster).
requirements:
  - kubernetes >= 24.2.0 (Python library), with urllib3 >= 1.26
'''
