# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that talks to the Kubernetes API.

``build_configuration(params)`` turns the shared auth options (see args.AUTH_ARG_SPEC) into a
``kubernetes.client.Configuration`` (kubeconfig file or dict + context, or host + api_key, or the
in-cluster service account), using the kubernetes library's own kubeconfig loader (exec plugins, OIDC,
certificate data).  ``ClusterClient`` sends the few REST calls the collection needs over one urllib3
pool configured from it and:

* retries 429, 502/503/504 and 500, and dropped or reset connections, with capped exponential backoff
  that honours ``Retry-After``;
* raises domain exceptions (errors.py) naming the verb, the object and the server's reason:
  NotFound, Conflict/AlreadyExists, Invalid, Gone, ApiError; ``AuthenticationFailed`` (401) and
  ``Forbidden`` (403); ``ClusterUnreachable`` for connection refused, DNS and TLS failures, naming the
  API server and what to check;
* never puts a token, key or kubeconfig content in a message;
* offers resumable watches: ``stream()`` lists, then watches from the list's resourceVersion, resumes
  from the last seen resourceVersion after a dropped connection, and re-lists after 410 Gone;
  ``wait_for()`` builds on it to wait for one object to satisfy a predicate.

Objects are plain dicts (the JSON the API serves), so callers need no generated model classes.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import random
import socket
import ssl
import threading
import time

try:
    from urllib.parse import quote, urlencode, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported, keeps sanity's compile tests calm
    from urllib import quote, urlencode  # noqa
    from urlparse import urlsplit  # noqa

from ansible_collections.meshops.istio.plugins.module_utils.args import (
    check_auth_params,
    kubeconfig_secrets,
    protect_secrets,
)
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    AlreadyExists,
    ApiError,
    AuthenticationFailed,
    ClusterUnreachable,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    InvalidInput,
    MeshopsError,
    NotFound,
    TransientApiError,
    WaitTimeout,
)

try:
    import urllib3
    from urllib3 import exceptions as u3exc
    HAS_URLLIB3 = True
except ImportError:  # pragma: no cover
    urllib3 = None
    u3exc = None
    HAS_URLLIB3 = False

try:
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException
    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - reported by require_libraries()
    k8s_client = None
    k8s_config = None

    class ConfigException(Exception):  # type: ignore[no-redef]
        pass

    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = exc


def require_libraries(module):
    """fail_json with an install hint when the Python libraries are missing."""
    from ansible.module_utils.basic import missing_required_lib
    if not HAS_KUBERNETES or not HAS_URLLIB3:
        module.fail_json(msg=missing_required_lib('kubernetes'),
                         exception=str(KUBERNETES_IMPORT_ERROR))


def client_from_module(module, **kwargs):
    """The ClusterClient for a module's auth options (after masking kubeconfig credentials)."""
    require_libraries(module)
    protect_secrets(module)
    return ClusterClient.from_params(module.params, **kwargs)


# --- resources -------------------------------------------------------------------------------------

class Resource:
    """One API resource: group/version, plural name, whether it is namespaced."""

    def __init__(self, kind, api_version, plural, namespaced):
        self.kind = kind
        self.api_version = api_version
        self.plural = plural
        self.namespaced = namespaced

    @property
    def base(self):
        if '/' in self.api_version:
            return '/apis/' + self.api_version
        return '/api/' + self.api_version

    def path(self, namespace=None, name=None, subresource=None):
        parts = [self.base]
        if self.namespaced and namespace:
            parts += ['namespaces', quote(namespace, safe='')]
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=''))
            if subresource:
                parts.append(subresource)
        return '/'.join(parts)

    def __repr__(self):
        return 'Resource(%s %s)' % (self.api_version, self.kind)


RESOURCES = {}


def register_resource(kind, api_version, plural, namespaced):
    """Teach the client another kind (CRDs, ...). Returns the Resource."""
    res = Resource(kind, api_version, plural, namespaced)
    RESOURCES[kind] = res
    return res


for _kind, _api, _plural, _ns in (
        ('Namespace', 'v1', 'namespaces', False),
        ('Pod', 'v1', 'pods', True),
        ('Service', 'v1', 'services', True),
        ('Endpoints', 'v1', 'endpoints', True),
        ('ConfigMap', 'v1', 'configmaps', True),
        ('Secret', 'v1', 'secrets', True),
        ('ServiceAccount', 'v1', 'serviceaccounts', True),
        ('Event', 'v1', 'events', True),
        ('Deployment', 'apps/v1', 'deployments', True),
        ('ReplicaSet', 'apps/v1', 'replicasets', True),
        ('StatefulSet', 'apps/v1', 'statefulsets', True),
        ('DaemonSet', 'apps/v1', 'daemonsets', True),
        ('ControllerRevision', 'apps/v1', 'controllerrevisions', True),
        ('MutatingWebhookConfiguration', 'admissionregistration.k8s.io/v1',
         'mutatingwebhookconfigurations', False),
        ('ValidatingWebhookConfiguration', 'admissionregistration.k8s.io/v1',
         'validatingwebhookconfigurations', False),
        ('CustomResourceDefinition', 'apiextensions.k8s.io/v1', 'customresourcedefinitions', False),
        ('ClusterRole', 'rbac.authorization.k8s.io/v1', 'clusterroles', False),
        ('ClusterRoleBinding', 'rbac.authorization.k8s.io/v1', 'clusterrolebindings', False),
        ('Role', 'rbac.authorization.k8s.io/v1', 'roles', True),
        ('RoleBinding', 'rbac.authorization.k8s.io/v1', 'rolebindings', True),
        ('PodDisruptionBudget', 'policy/v1', 'poddisruptionbudgets', True),
        ('HorizontalPodAutoscaler', 'autoscaling/v2', 'horizontalpodautoscalers', True),
        ('IstioOperator', 'install.istio.io/v1alpha1', 'istiooperators', True),
):
    register_resource(_kind, _api, _plural, _ns)


def resource_for(kind):
    try:
        return RESOURCES[kind]
    except KeyError:
        raise InvalidInput('the collection does not know the kind %r (known: %s)'
                           % (kind, ', '.join(sorted(RESOURCES))))


def object_ref(kind, name=None, namespace=None):
    """'Deployment foo/bar' style reference used in messages."""
    if name and namespace:
        return '%s %s/%s' % (kind, namespace, name)
    if name:
        return '%s %s' % (kind, name)
    if namespace:
        return '%s objects in namespace %s' % (kind, namespace)
    return '%s objects' % kind


# --- configuration ---------------------------------------------------------------------------------

def _redact(text, secrets):
    text = str(text)
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, '********')
    return text


def _default_kubeconfig_path():
    env = os.environ.get('KUBECONFIG')
    if env:
        return env
    path = os.path.expanduser('~/.kube/config')
    return path if os.path.exists(path) else None


class ClusterTarget:
    """What the options resolved to, safe to show: API server URL, context, where it came from."""

    def __init__(self, host, context=None, source=None, kubeconfig_path=None):
        self.host = host
        self.context = context
        self.source = source
        self.kubeconfig_path = kubeconfig_path

    def describe(self):
        text = 'the API server %s' % (self.host or '(unknown)')
        bits = []
        if self.context:
            bits.append('context %s' % self.context)
        if self.source:
            bits.append(self.source)
        if bits:
            text += ' (%s)' % ', '.join(bits)
        return text


def build_configuration(params):
    """Return (kubernetes.client.Configuration, ClusterTarget) for the shared auth options.

    Raises InvalidInput for unusable options (missing kubeconfig file, unknown context, no
    credentials at all) before any request is sent.
    """
    if not HAS_KUBERNETES:
        raise MeshopsError('the kubernetes Python library is required: pip install kubernetes')
    check_auth_params(params)
    kubeconfig = params.get('kubeconfig')
    context = params.get('context')
    host = params.get('host')
    api_key = params.get('api_key')
    secrets = set(kubeconfig_secrets(kubeconfig))
    if api_key:
        secrets.add(api_key)

    cfg = k8s_client.Configuration()
    source = None
    path = None
    try:
        if isinstance(kubeconfig, dict):
            k8s_config.load_kube_config_from_dict(kubeconfig, context=context,
                                                  client_configuration=cfg, persist_config=False)
            source = 'kubeconfig given as a dict'
        elif kubeconfig:
            path = os.path.expanduser(kubeconfig)
            missing = [p for p in path.split(os.pathsep) if p and not os.path.isfile(p)]
            if missing:
                raise InvalidInput('kubeconfig file %s does not exist or is not a file: check the '
                                   'kubeconfig option (or K8S_AUTH_KUBECONFIG)' % ', '.join(missing),
                                   details={'kubeconfig': kubeconfig})
            k8s_config.load_kube_config(config_file=path, context=context,
                                        client_configuration=cfg, persist_config=False)
            source = 'kubeconfig %s' % path
        elif host:
            cfg.host = host
            source = 'host option'
        else:
            path = _default_kubeconfig_path()
            if path:
                k8s_config.load_kube_config(config_file=path, context=context,
                                            client_configuration=cfg, persist_config=False)
                source = 'kubeconfig %s' % path
            elif os.environ.get('KUBERNETES_SERVICE_HOST'):
                k8s_config.load_incluster_config(client_configuration=cfg)
                source = 'in-cluster service account'
            else:
                raise InvalidInput('no cluster to talk to: set kubeconfig (or K8S_AUTH_KUBECONFIG or '
                                   'KUBECONFIG), or host and api_key')
    except InvalidInput:
        raise
    except ConfigException as exc:
        where = 'the kubeconfig given as a dict' if isinstance(kubeconfig, dict) else \
            'kubeconfig %s' % (path or kubeconfig)
        raise InvalidInput('cannot use %s%s: %s. Check the kubeconfig and context options'
                           % (where, ' with context %s' % context if context else '',
                              _redact(exc, secrets)),
                           details={'context': context})
    except (IOError, OSError, ValueError, TypeError, KeyError) as exc:
        raise InvalidInput('cannot read the kubeconfig: %s: %s'
                           % (type(exc).__name__, _redact(exc, secrets)))

    if host:
        cfg.host = host
    if api_key:
        cfg.api_key = {'authorization': 'Bearer %s' % api_key}
        cfg.api_key_prefix = {}
    if params.get('validate_certs') is not None:
        cfg.verify_ssl = bool(params['validate_certs'])
    if params.get('ca_cert'):
        cfg.ssl_ca_cert = params['ca_cert']
    if params.get('client_cert'):
        cfg.cert_file = params['client_cert']
    if params.get('client_key'):
        cfg.key_file = params['client_key']
    if params.get('proxy'):
        cfg.proxy = params['proxy']
    if params.get('no_proxy'):
        cfg.no_proxy = params['no_proxy']
    for option, value in (('ca_cert', cfg.ssl_ca_cert), ('client_cert', cfg.cert_file),
                          ('client_key', cfg.key_file)):
        if params.get(option) and not os.path.isfile(value):
            raise InvalidInput('%s file %s does not exist' % (option, value))

    current_context = context
    if not current_context and (isinstance(kubeconfig, dict) or path) and source and \
            source.startswith('kubeconfig'):
        current_context = _current_context_name(kubeconfig if isinstance(kubeconfig, dict) else path)
    target = ClusterTarget(host=(cfg.host or '').rstrip('/'), context=current_context, source=source,
                           kubeconfig_path=path)
    return cfg, target


def _current_context_name(kubeconfig):
    try:
        if isinstance(kubeconfig, dict):
            return kubeconfig.get('current-context')
        import yaml
        with open(kubeconfig.split(os.pathsep)[0]) as handle:
            data = yaml.safe_load(handle) or {}
        return data.get('current-context')
    except Exception:  # only used in messages
        return None


def _bearer_token(cfg):
    """The Authorization header value.  Each lookup runs the kubeconfig loader's refresh hook
    (it re-reads an expired exec/OIDC token and re-applies the whole configuration), so
    ClusterClient asks through ``_CachedAuth`` rather than once per request."""
    for ident in ('authorization', 'BearerToken'):
        try:
            value = cfg.get_api_key_with_prefix(ident)
        except TypeError:  # older signature
            value = None
        if value:
            return value
    return None


class _CachedAuth:
    """The bearer token, looked up again at most every ``ttl`` seconds.

    Without it a wave of a thousand restarts ran the kubeconfig refresh hook twice per request (two
    thousand times; each one re-sets the host, which re-reads the proxy environment).  A token
    that an exec plugin or OIDC provider renews is still picked up within ``ttl``; on a 401 the
    client drops the cached value and asks once more before it gives up.
    """

    def __init__(self, cfg, ttl=10.0, clock=time.monotonic):
        self.cfg = cfg
        self.ttl = ttl
        self.clock = clock
        self._value = None
        self._until = None
        self._lock = threading.Lock()

    def token(self):
        with self._lock:
            now = self.clock()
            if self._until is None or now >= self._until:
                self._value = _bearer_token(self.cfg)
                self._until = now + self.ttl
            return self._value

    def invalidate(self):
        with self._lock:
            self._until = None


# --- retry policy ----------------------------------------------------------------------------------

class RetryPolicy:
    """Capped exponential backoff with jitter that honours Retry-After.

    ``max_attempts`` counts the first try.  Connection refused and connect timeouts get at most
    ``connect_attempts`` tries (an API server that is down should fail fast with a clear message).
    """

    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(self, max_attempts=8, base_delay=0.2, max_delay=8.0, max_retry_after=30.0,
                 connect_attempts=3, jitter=0.2):
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.connect_attempts = connect_attempts
        self.jitter = jitter

    def delay(self, attempt, retry_after=None):
        """Seconds to sleep before try number ``attempt + 1`` (attempt counts from 1)."""
        backoff = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        if self.jitter:
            backoff *= 1 + random.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            return min(self.max_retry_after, max(retry_after, 0.0))
        return max(0.0, backoff)


def parse_retry_after(value):
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent/garbled."""
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime
        import datetime
        when = parsedate_to_datetime(value)
        now = datetime.datetime.now(when.tzinfo or datetime.timezone.utc)
        return max(0.0, (when - now).total_seconds())
    except Exception:
        return None


# --- events ----------------------------------------------------------------------------------------

class WatchEvent:
    """One event of ``ClusterClient.stream``.

    ``type`` is ADDED, MODIFIED, DELETED for watch events (``object`` is the object), or LISTED after
    the initial list and after every re-list caused by 410 Gone (``object`` is the list of items:
    the complete current state; forget what you knew before).  ``resource_version`` is where the
    stream stands.
    """

    __slots__ = ('type', 'object', 'resource_version')

    def __init__(self, type, object, resource_version=None):  # pylint: disable=redefined-builtin
        self.type = type
        self.object = object
        self.resource_version = resource_version

    def __repr__(self):
        if self.type == 'LISTED':
            return 'WatchEvent(LISTED, %d items, rv=%s)' % (len(self.object), self.resource_version)
        meta = (self.object or {}).get('metadata', {})
        return 'WatchEvent(%s, %s/%s, rv=%s)' % (self.type, meta.get('namespace'), meta.get('name'),
                                                 self.resource_version)


class _WatchDropped(Exception):
    """Internal: the watch connection ended abnormally; resume from the last resourceVersion."""


# public name for callers that drive ``watch`` themselves (``stream`` handles it already)
WatchDropped = _WatchDropped


# --- the client ------------------------------------------------------------------------------------

class ClusterClient:
    """Typed REST calls on plain-dict objects, with retries and domain errors.

    Thread-safe: one urllib3 pool, no per-request state on the instance (besides counters).
    ``on_request`` (optional) is called as ``on_request(method, path, query, status)`` after every
    HTTP exchange (tests use it to record requests).
    """

    def __init__(self, configuration, target=None, retry=None, sleep=time.sleep, pool=None,
                 on_request=None, request_timeout=60.0, secrets=()):
        self.configuration = configuration
        self.target = target or ClusterTarget(host=(configuration.host or '').rstrip('/'))
        self.host = self.target.host
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.on_request = on_request
        self.request_timeout = request_timeout
        self._secrets = set(s for s in secrets if s)
        self._pool = pool if pool is not None else self._make_pool(configuration)
        self._auth = _CachedAuth(configuration)
        self._lock = threading.Lock()
        self.stats = {'requests': 0, 'retries': 0}

    # construction ------------------------------------------------------------------------------

    @classmethod
    def from_params(cls, params, **kwargs):
        cfg, target = build_configuration(params)
        secrets = set(kubeconfig_secrets(params.get('kubeconfig')))
        if params.get('api_key'):
            secrets.add(params['api_key'])
        return cls(cfg, target=target, secrets=secrets, **kwargs)

    @staticmethod
    def _make_pool(cfg):
        pool_args = {
            'cert_reqs': ssl.CERT_REQUIRED if cfg.verify_ssl else ssl.CERT_NONE,
            'ca_certs': cfg.ssl_ca_cert,
            'cert_file': cfg.cert_file,
            'key_file': cfg.key_file,
            'retries': False,
            # room for a wave's patch threads (rollout.MAX_PATCH_THREADS) beside its long-lived watches:
            # a full pool would open (and TLS-handshake) a throwaway connection per request
            'maxsize': 64,
        }
        if getattr(cfg, 'assert_hostname', None) is not None:
            pool_args['assert_hostname'] = cfg.assert_hostname
        if getattr(cfg, 'tls_server_name', None):
            pool_args['server_hostname'] = cfg.tls_server_name
        ca_data = getattr(cfg, 'ca_cert_data', None)
        if ca_data:
            pool_args['ca_cert_data'] = ca_data
        proxy = getattr(cfg, 'proxy', None)
        if proxy and not _bypass_proxy(cfg.host, getattr(cfg, 'no_proxy', None)):
            return urllib3.ProxyManager(proxy, proxy_headers=getattr(cfg, 'proxy_headers', None),
                                        **pool_args)
        return urllib3.PoolManager(**pool_args)

    def close(self):
        try:
            self._pool.clear()
        except Exception:
            pass

    # a module's main() holds the client for one run: ``with ClusterClient.from_params(p) as client:``
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False

    # low level ---------------------------------------------------------------------------------

    def _headers(self, content_type=None, accept='application/json'):
        headers = {'Accept': accept, 'User-Agent': 'meshops.istio'}
        if content_type:
            headers['Content-Type'] = content_type
        token = self._auth.token()
        if token:
            headers['Authorization'] = token
        username = getattr(self.configuration, 'username', None)
        password = getattr(self.configuration, 'password', None)
        if not token and username and password:
            headers.update(urllib3.make_headers(basic_auth='%s:%s' % (username, password)))
        return headers

    def _url(self, path, query):
        url = self.host + path
        if query:
            url += '?' + urlencode([(k, v) for k, v in query.items() if v is not None])
        return url

    def _note(self, method, path, query, status):
        with self._lock:
            self.stats['requests'] += 1
        if self.on_request:
            try:
                self.on_request(method, path, query, status)
            except Exception:
                pass

    def request(self, method, path, query=None, body=None, content_type=None, what=None,
                stream=False, timeout=None, retry=True):
        """Send one API call, retrying transient failures; return the decoded JSON (or the raw
        streaming response when ``stream``).  ``what`` names the object for messages, e.g.
        ('get', 'Deployment', 'istiod-1-15-4', 'istio-system')."""
        method = method.upper()
        query = dict(query or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            if not content_type:
                content_type = 'application/json'
        url = self._url(path, query)
        timeout = timeout if timeout is not None else self.request_timeout
        attempt = 0
        connect_failures = 0
        last_problem = None
        auth_renewed = False
        while True:
            attempt += 1
            try:
                response = self._pool.request(
                    method, url, body=data, headers=self._headers(content_type),
                    preload_content=not stream, timeout=_timeout(timeout),
                    redirect=False)
            except Exception as exc:  # pylint: disable=broad-except
                kind, detail = classify_connection_error(exc)
                self._note(method, path, query, 0)
                if kind in ('fatal', 'dns', 'tls') or not retry:
                    raise self._unreachable(kind, detail, exc)
                if kind == 'connect':
                    connect_failures += 1
                    if connect_failures >= self.retry.connect_attempts:
                        raise self._unreachable(kind, detail, exc)
                last_problem = ('connection', kind, detail, exc)
                if attempt >= self.retry.max_attempts:
                    raise self._unreachable('dropped', detail, exc)
                with self._lock:
                    self.stats['retries'] += 1
                self.sleep(self.retry.delay(attempt))
                continue

            status = response.status
            self._note(method, path, query, status)
            if 200 <= status < 300:
                if stream:
                    return response
                return _decode(response.data)
            payload = response.data if not stream else _read_and_close(response)
            if status == 401 and not auth_renewed and \
                    getattr(self.configuration, 'refresh_api_key_hook', None) is not None:
                # a renewable token (exec plugin, OIDC) may have expired within the cache's ttl
                auth_renewed = True
                self._auth.invalidate()
                continue
            retry_after = parse_retry_after(response.headers.get('Retry-After'))
            if retry and status in RetryPolicy.RETRY_STATUSES and attempt < self.retry.max_attempts:
                last_problem = ('status', status)
                with self._lock:
                    self.stats['retries'] += 1
                self.sleep(self.retry.delay(attempt, retry_after))
                continue
            raise self._api_error(status, payload, method, path, what,
                                  retried=attempt > 1, last_problem=last_problem)

    def _unreachable(self, kind, detail, exc):
        where = self.target.describe()
        hints = {
            'dns': 'the host name does not resolve: check the server URL in the kubeconfig (or the '
                   'host option), the context, and DNS',
            'tls': 'the TLS handshake failed: check ca_cert / the kubeconfig\'s certificate-authority, '
                   'validate_certs, and that the URL points at the right API server',
            'connect': 'connection refused or timed out: check that the cluster is running, the '
                       'kubeconfig context and server URL, and the network/proxy between here and it',
            'dropped': 'the connection kept dropping: check the network and the API server health',
            'fatal': 'check the server URL, the kubeconfig context, and proxy settings',
        }
        msg = 'Cannot reach %s: %s; %s.' % (where, _redact(detail, self._secrets),
                                            hints.get(kind, hints['fatal']))
        return ClusterUnreachable(msg, details={'host': self.host, 'context': self.target.context,
                                                'cause': kind})

    def _api_error(self, status, payload, method, path, what, retried=False, last_problem=None):
        body = _decode_quiet(payload)
        message = ''
        reason = None
        if isinstance(body, dict):
            message = body.get('message') or ''
            reason = body.get('reason')
        message = _redact(message, self._secrets)
        verb, kind, name, namespace = _what(what, method, path)
        ref = object_ref(kind, name, namespace)
        details = {'status': status, 'reason': reason, 'verb': verb, 'kind': kind, 'name': name,
                   'namespace': namespace, 'path': path}
        if retried:
            # an earlier try failed ambiguously (5xx, dropped connection) and may have been applied
            details['after_retry'] = True
        if status == 401:
            return AuthenticationFailed(
                'The API server %s rejected the credentials (401 Unauthorized) while trying to %s %s. '
                'The token or client certificate of the kubeconfig user%s is missing, invalid or '
                'expired: refresh the credentials (e.g. log in again), or point the kubeconfig and '
                'context options at valid ones, or give a valid bearer token.'
                % (self.host, verb, ref,
                   ' for context %s' % self.target.context if self.target.context else ''),
                details=details)
        if status == 403:
            return Forbidden(
                'Forbidden (403): the credentials used for %s may not %s %s: %s. Grant the permission '
                '(see docs/rbac.yaml) or use other credentials.'
                % (self.host, verb, ref, message or 'no reason given'), details=details)
        text = '%s %s failed: %s (HTTP %s%s)' % (verb, ref, message or 'no message from the server',
                                                 status, ' %s' % reason if reason else '')
        if status == 404:
            return NotFound(text, status=status, reason=reason, details=details)
        if status == 409:
            cls = AlreadyExists if reason == 'AlreadyExists' else Conflict
            return cls(text, status=status, reason=reason, details=details)
        if status == 410:
            return Gone(text, status=status, reason=reason, details=details)
        if status == 422:
            return Invalid(text, status=status, reason=reason, details=details)
        if status in RetryPolicy.RETRY_STATUSES:
            return TransientApiError(text + ' (still failing after retries)', status=status,
                                     reason=reason, details=details)
        return ApiError(text, status=status, reason=reason, details=details)

    # typed calls -------------------------------------------------------------------------------

    def get(self, kind, name, namespace=None):
        """The object, or raise NotFound."""
        res = resource_for(kind)
        obj = self.request('GET', res.path(namespace, name), what=('get', kind, name, namespace))
        return _with_type(obj, res)

    def get_or_none(self, kind, name, namespace=None):
        try:
            return self.get(kind, name, namespace)
        except NotFound:
            return None

    def list_with_version(self, kind, namespace=None, label_selector=None, field_selector=None):
        """(items, resourceVersion of the list).  Follows ``continue`` tokens."""
        res = resource_for(kind)
        items = []
        query = {'labelSelector': label_selector or None, 'fieldSelector': field_selector or None,
                 'limit': 500}
        rv = None
        while True:
            body = self.request('GET', res.path(namespace), query=query,
                                what=('list', kind, None, namespace))
            for item in body.get('items') or []:
                items.append(_with_type(item, res))
            meta = body.get('metadata') or {}
            rv = meta.get('resourceVersion') or rv
            token = meta.get('continue')
            if not token:
                break
            query['continue'] = token
        return items, rv

    def list(self, kind, namespace=None, label_selector=None, field_selector=None):
        return self.list_with_version(kind, namespace, label_selector, field_selector)[0]

    def create(self, kind, obj, namespace=None, dry_run=False):
        res = resource_for(kind)
        meta = obj.get('metadata') or {}
        namespace = namespace or meta.get('namespace')
        body = dict(obj)
        body.setdefault('apiVersion', res.api_version)
        body.setdefault('kind', res.kind)
        try:
            return _with_type(self.request('POST', res.path(namespace), query=_dry(dry_run), body=body,
                                           what=('create', kind, meta.get('name'), namespace)), res)
        except AlreadyExists as exc:
            # our own earlier try went through before its answer was lost: that object is ours
            if exc.details.get('after_retry') and meta.get('name') and not dry_run:
                return self.get(kind, meta['name'], namespace)
            raise

    def replace(self, kind, obj, namespace=None, dry_run=False):
        """PUT the whole object; ``metadata.resourceVersion`` in ``obj`` makes it conditional
        (Conflict if the object changed since it was read)."""
        res = resource_for(kind)
        meta = obj.get('metadata') or {}
        namespace = namespace or meta.get('namespace')
        body = dict(obj)
        body.setdefault('apiVersion', res.api_version)
        body.setdefault('kind', res.kind)
        return _with_type(self.request('PUT', res.path(namespace, meta['name']), query=_dry(dry_run),
                                       body=body, what=('replace', kind, meta['name'], namespace)),
                          res)

    PATCH_TYPES = {
        'merge': 'application/merge-patch+json',
        'strategic': 'application/strategic-merge-patch+json',
        'json': 'application/json-patch+json',
    }

    def patch(self, kind, name, patch, namespace=None, patch_type='merge', dry_run=False,
              resource_version=None, subresource=None):
        """Patch an object.  ``resource_version`` makes it conditional: for merge/strategic patches it
        is put in the patch's metadata (the API server then refuses with 409 if the object changed);
        for JSON patches a ``test`` operation is prepended."""
        res = resource_for(kind)
        if patch_type not in self.PATCH_TYPES:
            raise InvalidInput('unknown patch type %r' % patch_type)
        if resource_version is not None:
            if patch_type == 'json':
                patch = [{'op': 'test', 'path': '/metadata/resourceVersion',
                          'value': resource_version}] + list(patch)
            else:
                patch = dict(patch)
                meta = dict(patch.get('metadata') or {})
                meta['resourceVersion'] = resource_version
                patch['metadata'] = meta
        return _with_type(self.request('PATCH', res.path(namespace, name, subresource),
                                       query=_dry(dry_run), body=patch,
                                       content_type=self.PATCH_TYPES[patch_type],
                                       what=('patch', kind, name, namespace)), res)

    def delete(self, kind, name, namespace=None, propagation='Background', dry_run=False,
               resource_version=None, missing_ok=True):
        """Delete; returns True when the server accepted the deletion, False when it was already
        gone (``missing_ok``)."""
        res = resource_for(kind)
        body = {'kind': 'DeleteOptions', 'apiVersion': 'v1'}
        if propagation:
            body['propagationPolicy'] = propagation
        if resource_version:
            body['preconditions'] = {'resourceVersion': resource_version}
        try:
            self.request('DELETE', res.path(namespace, name), query=_dry(dry_run), body=body,
                         what=('delete', kind, name, namespace))
            return True
        except NotFound as exc:
            if exc.details.get('after_retry'):
                return True   # an earlier try deleted it before its answer was lost
            if missing_ok:
                return False
            raise

    def exists(self, kind, name, namespace=None):
        return self.get_or_none(kind, name, namespace) is not None

    def server_version(self):
        return self.request('GET', '/version', what=('get', 'version', None, None))

    # watches -----------------------------------------------------------------------------------

    def watch(self, kind, namespace=None, label_selector=None, field_selector=None,
              resource_version=None, timeout_seconds=60):
        """One watch request: yield WatchEvent(type, object) until the server ends the stream.

        Raises Gone on 410 (HTTP or ERROR event), _WatchDropped on an abnormal end (connection reset,
        truncated chunk, read timeout) so that ``stream`` can resume.  BOOKMARK events are yielded
        too (they only carry a resourceVersion).
        """
        res = resource_for(kind)
        query = {'watch': 'true', 'labelSelector': label_selector or None,
                 'fieldSelector': field_selector or None, 'resourceVersion': resource_version,
                 'allowWatchBookmarks': 'true', 'timeoutSeconds': int(max(1, timeout_seconds))}
        try:
            response = self.request('GET', res.path(namespace), query=query, stream=True,
                                    timeout=(10.0, float(timeout_seconds) + 15.0),
                                    what=('watch', kind, None, namespace))
        except ClusterUnreachable as exc:
            if exc.details.get('cause') == 'dropped':
                raise _WatchDropped(str(exc))
            raise
        try:
            for line in _iter_lines(response):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise _WatchDropped('undecodable watch event')
                etype = event.get('type')
                obj = event.get('object') or {}
                if etype == 'ERROR':
                    code = obj.get('code')
                    if code == 410:
                        raise Gone('watch of %s: %s'
                                   % (object_ref(kind, namespace=namespace),
                                      obj.get('message') or 'resourceVersion too old'),
                                   status=410, reason=obj.get('reason') or 'Expired')
                    if code in RetryPolicy.RETRY_STATUSES:
                        raise _WatchDropped('watch error %s' % code)
                    raise self._api_error(code or 500, json.dumps(obj), 'GET', res.path(namespace),
                                          ('watch', kind, None, namespace))
                if etype not in ('ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK'):
                    continue
                obj = _with_type(obj, res)
                yield WatchEvent(etype, obj, (obj.get('metadata') or {}).get('resourceVersion'))
        except (Gone, ApiError, _WatchDropped):
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if _is_stream_error(exc):
                raise _WatchDropped('%s: %s' % (type(exc).__name__, exc))
            raise
        finally:
            # a watch may be abandoned mid-stream: never hand a half-read connection back to the pool
            try:
                response.close()
                response.release_conn()
            except Exception:
                pass

    def stream(self, kind, namespace=None, label_selector=None, field_selector=None, timeout=None,
               watch_chunk=60, resource_version=None):
        """List, then watch, forever or until ``timeout`` seconds: yield WatchEvents.

        The first event is LISTED with the current items (unless ``resource_version`` is given: then
        the watch starts from there, e.g. to resume an earlier stream).  Dropped watches resume from the
        last resourceVersion seen (no event lost, none repeated); 410 Gone re-lists and yields LISTED
        again with the complete state.  The generator simply returns when ``timeout`` is over; stop
        earlier by breaking out of the loop.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        rv = resource_version
        if rv is None:
            items, rv = self.list_with_version(kind, namespace, label_selector, field_selector)
            yield WatchEvent('LISTED', items, rv)
        drops = 0
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            chunk = watch_chunk if remaining is None else max(1, min(watch_chunk, remaining))
            try:
                for event in self.watch(kind, namespace, label_selector, field_selector,
                                        resource_version=rv, timeout_seconds=int(chunk + 0.999)):
                    drops = 0
                    if event.resource_version:
                        rv = event.resource_version
                    if event.type == 'BOOKMARK':
                        continue
                    yield event
                    if deadline is not None and time.monotonic() >= deadline:
                        return
            except Gone:
                items, rv = self.list_with_version(kind, namespace, label_selector, field_selector)
                yield WatchEvent('LISTED', items, rv)
            except _WatchDropped:
                drops += 1
                with self._lock:
                    self.stats['retries'] += 1
                if drops > self.retry.max_attempts * 3:
                    raise ClusterUnreachable('The watch of %s on %s kept dropping: check the network '
                                             'and the API server health.'
                                             % (object_ref(kind, namespace=namespace), self.host),
                                             details={'host': self.host, 'cause': 'dropped'})
                self.sleep(self.retry.delay(min(drops, 5)))

    def wait_for(self, kind, name, namespace, predicate, timeout, description=None):
        """Wait until ``predicate(obj)`` is true for the named object (``obj`` is None while it does
        not exist); return that object.  Raises WaitTimeout naming the object and ``description``."""
        current = None
        field = 'metadata.name=%s' % name
        for event in self.stream(kind, namespace, field_selector=field, timeout=timeout):
            if event.type == 'LISTED':
                current = next((i for i in event.object
                                if (i.get('metadata') or {}).get('name') == name), None)
            elif (event.object.get('metadata') or {}).get('name') != name:
                continue
            elif event.type == 'DELETED':
                current = None
            else:
                current = event.object
            if predicate(current):
                return current
        raise WaitTimeout('Timed out after %ss waiting for %s%s'
                          % (timeout, object_ref(kind, name, namespace),
                             ' to %s' % description if description else ''),
                          details={'kind': kind, 'name': name, 'namespace': namespace,
                                   'timeout': timeout})


# --- helpers ---------------------------------------------------------------------------------------

def _timeout(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        return urllib3.Timeout(connect=timeout[0], read=timeout[1])
    return urllib3.Timeout(connect=min(10.0, timeout), read=timeout)


def _dry(dry_run):
    return {'dryRun': 'All'} if dry_run else {}


def _decode(data):
    if not data:
        return {}
    if isinstance(data, bytes):
        data = data.decode('utf-8')
    return json.loads(data)


def _decode_quiet(data):
    try:
        return _decode(data)
    except Exception:
        return None


def _read_and_close(response):
    try:
        return response.read()
    except Exception:
        return b''
    finally:
        try:
            response.release_conn()
        except Exception:
            pass


def _iter_lines(response):
    buf = b''
    for chunk in response.stream(8192, decode_content=True):
        buf += chunk
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            yield line.decode('utf-8')
    if buf.strip():
        yield buf.decode('utf-8')


def _with_type(obj, res):
    if isinstance(obj, dict):
        obj.setdefault('apiVersion', res.api_version)
        obj.setdefault('kind', res.kind)
    return obj


def _what(what, method, path):
    if what:
        verb, kind, name, namespace = (list(what) + [None, None, None, None])[:4]
        return verb, kind, name, namespace
    return method.lower(), path, None, None


def _bypass_proxy(host, no_proxy):
    if not no_proxy:
        return False
    hostname = urlsplit(host or '').hostname or ''
    for entry in no_proxy.split(','):
        entry = entry.strip().lstrip('.')
        if entry == '*' or (entry and (hostname == entry or hostname.endswith('.' + entry))):
            return True
    return False


def classify_connection_error(exc):
    """('dns'|'tls'|'connect'|'dropped'|'fatal', human detail) for an exception from urllib3."""
    inner = exc
    if HAS_URLLIB3 and isinstance(exc, u3exc.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    if HAS_URLLIB3:
        if isinstance(inner, u3exc.NameResolutionError):
            return 'dns', 'cannot resolve the host name'
        if isinstance(inner, u3exc.SSLError) or isinstance(inner, ssl.SSLError):
            return 'tls', 'TLS error: %s' % _short(inner)
        if isinstance(inner, u3exc.ProxyError):
            return 'connect', 'proxy error: %s' % _short(inner)
        if isinstance(inner, u3exc.NewConnectionError):
            text = _short(inner)
            if 'Name or service not known' in text or 'nodename nor servname' in text or \
                    'Temporary failure in name resolution' in text:
                return 'dns', 'cannot resolve the host name'
            if 'refused' in text.lower():
                return 'connect', 'connection refused'
            return 'connect', 'cannot connect (%s)' % text
        if isinstance(inner, u3exc.ConnectTimeoutError):
            return 'connect', 'connection timed out'
        if isinstance(inner, (u3exc.ProtocolError, u3exc.ReadTimeoutError, u3exc.IncompleteRead,
                              u3exc.DecodeError)):
            return 'dropped', 'connection dropped (%s)' % type(inner).__name__
        if isinstance(inner, u3exc.LocationValueError):
            return 'fatal', 'invalid API server URL'
    if isinstance(inner, ssl.SSLError):
        return 'tls', 'TLS error: %s' % _short(inner)
    if isinstance(inner, socket.gaierror):
        return 'dns', 'cannot resolve the host name'
    if isinstance(inner, ConnectionRefusedError):
        return 'connect', 'connection refused'
    if isinstance(inner, (ConnectionError, socket.timeout, TimeoutError)):
        return 'dropped', 'connection dropped (%s)' % type(inner).__name__
    return 'fatal', '%s: %s' % (type(inner).__name__, _short(inner))


def _short(exc):
    text = str(exc)
    # urllib3 messages embed the connection object's repr; keep the useful tail
    if '>: ' in text:
        text = text.split('>: ', 1)[1]
    return text.strip()[:300]


def _is_stream_error(exc):
    if HAS_URLLIB3 and isinstance(exc, (u3exc.ProtocolError, u3exc.ReadTimeoutError,
                                        u3exc.IncompleteRead, u3exc.DecodeError,
                                        u3exc.HTTPError)):
        return True
    return isinstance(exc, (ConnectionError, socket.timeout, TimeoutError, OSError))
