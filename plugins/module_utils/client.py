# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that talks to the Kubernetes API, standing on the ``kubernetes`` library.

``build_configuration(params)`` turns the shared auth options (args.AUTH_ARG_SPEC) into a
``kubernetes.client.Configuration`` with the library's kubeconfig loader (exec plugins, OIDC, certificate
data, the in-cluster service account).  ``ClusterClient`` sends requests through the library's
``ApiClient`` (the pool its REST client builds from that Configuration: TLS, client certificates, proxies,
no_proxy) with the Configuration's token (renewed by the loader's refresh hook), and learns from the server
what it serves (``Discovery``): any kind -- Gateway API, Sail's ``sailoperator.io/v1``, OpenShift's
DeploymentConfig, Argo Rollouts -- by its kind, and its apiVersion where two groups serve that kind.
Objects stay plain dicts (the JSON the API serves), which keeps lists of thousands of pods fast.

What stays ours is a thin domain layer: retries of 429/5xx and dropped connections with capped backoff
that honours ``Retry-After``; domain exceptions (errors.py) naming the verb, the object and the server's
reason, with what to check -- never a token, key or kubeconfig content; conditional writes and
``update_with_retry``, the collection's one read-modify-write loop; resumable watches (``follow``,
``stream``, ``wait_for``) that resume after a dropped connection and re-list after 410 Gone.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import json
import os
import random
import socket
import ssl
import threading
import time

try:
    from urllib.parse import quote, urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported, keeps sanity's compile tests calm
    from urllib import quote, urlencode  # noqa

from ansible_collections.meshops.istio.plugins.module_utils.args import (
    check_auth_params,
    kubeconfig_secrets,
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
except ImportError as exc:  # pragma: no cover - reported by the module base (module.py)
    k8s_client = None
    k8s_config = None

    class ConfigException(Exception):  # type: ignore[no-redef]
        pass

    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = exc


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


def bearer_token(cfg):
    """The Authorization header value of a Configuration (``Bearer <token>``) or None; tools run with the
    modules' credentials need it too.  Each lookup runs the kubeconfig loader's refresh hook (it re-reads
    an expired exec/OIDC token), so ClusterClient asks through ``_CachedAuth``, not once per request."""
    for ident in ('authorization', 'BearerToken'):
        try:
            value = cfg.get_api_key_with_prefix(ident)
        except TypeError:  # older signature
            value = None
        if value:
            return value
    return None


def token_expiry(cfg):
    """When the kubeconfig's current token expires (an aware datetime), or None when unknown.

    The kubernetes library's loader keeps it (``expiry``: an exec plugin's ``status.expirationTimestamp``,
    an OIDC or GCP token's) but not on the Configuration: its refresh hook is a closure over the loader."""
    hook = getattr(cfg, 'refresh_api_key_hook', None)
    for cell in getattr(hook, '__closure__', None) or ():
        try:
            expiry = getattr(cell.cell_contents, 'expiry', None)
        except ValueError:  # an empty cell
            continue
        if isinstance(expiry, datetime.datetime):
            return expiry if expiry.tzinfo else expiry.replace(tzinfo=datetime.timezone.utc)
    return None


class _CachedAuth:
    """The bearer token, looked up again at most every ``ttl`` seconds, and never kept past its expiry.

    Without it a wave of a thousand restarts ran the kubeconfig refresh hook twice per request (two
    thousand times; each one re-sets the host, which re-reads the proxy environment).  A token
    that an exec plugin or OIDC provider renews is looked up again ``EXPIRY_MARGIN`` seconds before it
    expires (so no request goes out with an expired one), else within ``ttl``; on a 401 the client
    drops the cached value and asks once more before it gives up.
    """

    EXPIRY_MARGIN = 2.0

    def __init__(self, cfg, ttl=10.0, clock=time.monotonic, wall=None, expiry=token_expiry):
        self.cfg = cfg
        self.ttl = ttl
        self.clock = clock
        self.wall = wall or (lambda: datetime.datetime.now(datetime.timezone.utc))
        self.expiry = expiry
        self._value = None
        self._until = None
        self._lock = threading.Lock()

    def token(self):
        with self._lock:
            now = self.clock()
            if self._until is None or now >= self._until:
                self._value = bearer_token(self.cfg)
                self._until = now + self.ttl
                expires = self.expiry(self.cfg)
                if expires is not None:
                    left = (expires - self.wall()).total_seconds() - self.EXPIRY_MARGIN
                    self._until = min(self._until, now + max(0.0, left))
            return self._value

    def invalidate(self):
        with self._lock:
            self._until = None


# --- retry policy ----------------------------------------------------------------------------------

class RetryPolicy:
    """Capped exponential backoff with jitter that honours Retry-After.

    ``max_attempts`` counts the first try.  Connection refused and connect timeouts get at most
    ``connect_attempts`` tries (an API server that is down should fail fast with a clear message) -- unless the
    server answered this client before: then it is restarting (a managed control plane upgrade, an outage), and
    the client keeps trying for ``outage_seconds`` before it gives up.
    """

    RETRY_STATUSES = (429, 500, 502, 503, 504)

    def __init__(self, max_attempts=8, base_delay=0.2, max_delay=8.0, max_retry_after=30.0,
                 connect_attempts=3, jitter=0.2, outage_seconds=30.0):
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        self.connect_attempts = connect_attempts
        self.outage_seconds = outage_seconds
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


class WatchDropped(Exception):
    """A watch connection ended abnormally (reset, truncated chunk, read timeout): resume it from the
    last resourceVersion seen.  ``stream`` does; callers that drive ``watch`` themselves catch it."""


# --- discovery -------------------------------------------------------------------------------------

# The aggregated discovery document (client-go's, Kubernetes 1.26+): every group, version and resource
# in one response.  Servers without it answer the plain APIGroupList.
AGGREGATED_DISCOVERY = ('application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,'
                        'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,'
                        'application/json')


class ApiResource:
    """One kind as the server serves it: its apiVersion, plural name and whether it is namespaced."""

    __slots__ = ('kind', 'api_version', 'plural', 'namespaced')

    def __init__(self, kind, api_version, plural, namespaced):
        self.kind = kind
        self.api_version = api_version
        self.plural = plural
        self.namespaced = namespaced

    def path(self, namespace=None, name=None, subresource=None):
        parts = [('/apis/' if '/' in self.api_version else '/api/') + self.api_version]
        if self.namespaced and namespace:
            parts += ['namespaces', quote(namespace, safe='')]
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=''))
            if subresource:
                parts.append(subresource)
        return '/'.join(parts)


class Discovery:
    """Which kinds the API server serves, read from the server (no table of kinds), lazily, once per client.

    A kind with its apiVersion costs one request for its group version (``/api/v1``, ``/apis/<g>/<v>``).
    A kind alone is looked up in the core group first (as kubectl's REST mapper does: ``Event`` is ``v1``),
    then in every other group's preferred version, all given by the aggregated discovery document
    ``/apis`` in one request (older servers: ``/apis``, then each group).  A kind two groups serve (Istio's
    and the Gateway API's ``Gateway``) needs its apiVersion.  A kind not found is looked up once more after
    discovery is read again (as client-go's deferred REST mapper does): its CustomResourceDefinition may be
    new.
    """

    def __init__(self, fetch):
        self._fetch = fetch          # fetch(path, accept, what) -> the document, or None on 404
        self._lock = threading.RLock()
        self._reset()

    def _reset(self):
        self._served = {}            # 'apps/v1' -> {kind: ApiResource}
        self._preferred = None       # the preferred group version of every non-core group, server order

    def resource(self, kind, api_version=None, what=None):
        """The ApiResource of ``kind``; NotFound (details ``served: false``) when the server does not serve it."""
        with self._lock:
            found = self._find(kind, api_version, what)
            if found is None:
                self._reset()
                found = self._find(kind, api_version, what)
            if found is None:
                raise NotFound('the API server serves no %s%s (kubectl api-resources lists what it '
                               'serves): install its CustomResourceDefinition, or check the kind and '
                               'apiVersion' % (kind, ' in %s' % api_version if api_version else ''),
                               status=404, reason='NotFound',
                               details={'kind': kind, 'api_version': api_version, 'served': False})
            return found

    def _find(self, kind, api_version, what):
        if api_version:
            return self._group_version(api_version, what).get(kind)
        found = self._group_version('v1', what).get(kind)
        if found is not None:
            return found
        matches = [res for res in (self._group_version(gv, what).get(kind) for gv in self._groups(what))
                   if res is not None]
        if len(matches) > 1:
            raise InvalidInput('kind %s is served by several API groups (%s): give its apiVersion'
                               % (kind, ', '.join(res.api_version for res in matches)),
                               details={'kind': kind, 'api_versions': [res.api_version for res in matches]})
        return matches[0] if matches else None

    def _group_version(self, group_version, what):
        if group_version not in self._served:
            doc = self._fetch(('/apis/' if '/' in group_version else '/api/') + group_version,
                              'application/json', what) or {}
            self._served[group_version] = dict(
                (res['kind'], ApiResource(res['kind'], group_version, res['name'], bool(res.get('namespaced'))))
                for res in doc.get('resources') or [] if '/' not in res.get('name', '/'))
        return self._served[group_version]

    def _groups(self, what):
        if self._preferred is None:
            doc = self._fetch('/apis', AGGREGATED_DISCOVERY, what) or {}
            if doc.get('kind') != 'APIGroupDiscoveryList':
                self._preferred = [group['preferredVersion']['groupVersion'] for group in doc.get('groups') or []
                                   if group.get('preferredVersion')]
                return self._preferred
            self._preferred = []
            for group in doc.get('items') or []:
                name = (group.get('metadata') or {}).get('name')
                for index, version in enumerate(group.get('versions') or []):  # preferred first
                    group_version = '%s/%s' % (name, version.get('version'))
                    if index == 0:
                        self._preferred.append(group_version)
                    self._served.setdefault(group_version, dict(
                        (res['responseKind']['kind'], ApiResource(res['responseKind']['kind'], group_version,
                                                                  res['resource'], res.get('scope') == 'Namespaced'))
                        for res in version.get('resources') or [] if (res.get('responseKind') or {}).get('kind')))
        return self._preferred


# --- read-modify-write -----------------------------------------------------------------------------

DELETE = 'delete'
"""What a ``mutate`` function of ``update_with_retry`` returns to delete the object."""
_UNREAD = object()


class Update:
    """What ``update_with_retry`` did (in check mode: would do) to one object: ``action`` none, create,
    update or delete; ``before`` the object read, ``desired`` the one written (None when deleted), ``after``
    the server's answer (``desired`` in check mode)."""

    __slots__ = ('action', 'before', 'desired', 'after')

    def __init__(self, action, before, desired=None, after=None):
        self.action = action
        self.before = before
        self.desired = desired
        self.after = after

    @property
    def changed(self):
        return self.action != 'none'

    def changes(self, kind, name, namespace=None, action=None):
        """This change as entries of a module result's ``changes`` list (none when nothing changed)."""
        if not self.changed:
            return []
        entry = {'kind': kind, 'name': name, 'action': action or self.action + 'd'}  # created, updated, deleted
        if namespace:
            entry['namespace'] = namespace
        return [entry]


class ReadModifyWrite:
    """``update_with_retry`` on top of get_or_none/create/replace/delete (ClusterClient's, or a test
    double's)."""

    CONFLICT_ATTEMPTS = 5

    def update_with_retry(self, kind, name, mutate, namespace=None, api_version=None, check_mode=False,
                          dry_run=False, patch=False, current=_UNREAD):
        """Read-modify-write one object under optimistic concurrency; return an Update.

        ``mutate(current)`` gets a copy of the object read (None: it does not exist) and returns the object
        to write, None (or it unchanged) to leave it, or DELETE.  The write is conditional on the
        resourceVersion read: when someone wrote in between (409, or the object vanished), the object is
        read and ``mutate`` asked again, at most CONFLICT_ATTEMPTS times.  An update is a PUT, or with
        ``patch`` the merge patch from the object read (RBAC verb ``patch``).  ``check_mode`` writes
        nothing; ``dry_run`` sends dryRun=All (validated, admission webhooks included; nothing stored).
        ``current``: the object as the caller already read it, which spares the first read.
        """
        for _attempt in range(self.CONFLICT_ATTEMPTS):
            before, current = current, _UNREAD
            if before is _UNREAD:
                before = self.get_or_none(kind, name, namespace, api_version=api_version)
            desired = mutate(copy.deepcopy(before))
            if desired is None or desired == before or (desired is DELETE and before is None):
                return Update('none', before, before, before)
            if desired is DELETE:
                action, desired = 'delete', None
            else:
                action = 'create' if before is None else 'update'
            if check_mode:
                return Update(action, before, desired, desired)
            try:
                if action == 'create':
                    after = self.create(kind, desired, namespace, dry_run=dry_run)
                elif action == 'delete':
                    after = None
                    self.delete(kind, name, namespace, dry_run=dry_run, api_version=api_version,
                                resource_version=_rv(before))
                elif patch:
                    after = self.patch(kind, name, merge_patch(before, desired), namespace, dry_run=dry_run,
                                       resource_version=_rv(before), api_version=api_version)
                else:
                    desired = dict(desired, metadata=dict(desired.get('metadata') or {}, resourceVersion=_rv(before)))
                    after = self.replace(kind, desired, namespace, dry_run=dry_run)
                return Update(action, before, desired, after)
            except Conflict:         # AlreadyExists too: someone else wrote in between
                continue
            except NotFound:
                if action == 'create':
                    raise            # no such namespace or kind: reading again does not help
        raise Conflict('%s kept changing while being updated (%d conflicts): another process is writing it; '
                       'run again once it is done' % (object_ref(kind, name, namespace), self.CONFLICT_ATTEMPTS),
                       status=409, reason='Conflict', details={'kind': kind, 'name': name, 'namespace': namespace})


def _rv(obj):
    return (obj.get('metadata') or {}).get('resourceVersion')


def merge_patch(before, after):
    """The JSON merge patch (RFC 7386) that turns ``before`` into ``after``."""
    patch = {}
    for key in set(before) | set(after):
        if key not in after:
            patch[key] = None
        elif isinstance(after[key], dict) and isinstance(before.get(key), dict):
            nested = merge_patch(before[key], after[key])
            if nested:
                patch[key] = nested
        elif key not in before or before[key] != after[key]:
            patch[key] = after[key]
    return patch


# --- the client ------------------------------------------------------------------------------------

class ClusterClient(ReadModifyWrite):
    """Typed REST calls on plain-dict objects, with discovery, retries and domain errors.

    Thread-safe: one connection pool, discovery under a lock, no per-request state on the instance
    (besides counters).  ``on_request`` (optional) is called as ``on_request(method, path, query,
    status)`` after every HTTP exchange (tests use it to record requests).
    """

    PATCH_TYPES = {
        'merge': 'application/merge-patch+json',
        'strategic': 'application/strategic-merge-patch+json',
        'json': 'application/json-patch+json',
    }

    def __init__(self, configuration, target=None, retry=None, sleep=time.sleep, pool=None,
                 on_request=None, request_timeout=60.0, secrets=(), clock=time.monotonic):
        self.configuration = configuration
        self.target = target or ClusterTarget(host=(configuration.host or '').rstrip('/'))
        self.host = self.target.host
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self._answered = False  # the server answered once: later refusals are a restart, not a wrong address
        self.on_request = on_request
        self.request_timeout = request_timeout
        self._secrets = set(s for s in secrets if s)
        self.api_client = None
        if pool is None:
            # The pool the library's REST client builds from the Configuration (its request() differs
            # between kubernetes 24 and 37, the pool does not); RetryPolicy retries; room for a wave's patch
            # threads beside its watches, else each request would open (and TLS-handshake) a new connection.
            configuration.retries = False
            configuration.connection_pool_maxsize = 64
            self.api_client = k8s_client.ApiClient(configuration)
            pool = self.api_client.rest_client.pool_manager
        self._pool = pool
        self._auth = _CachedAuth(configuration)
        self._lock = threading.Lock()
        self.discovery = Discovery(self._discover)
        self.stats = {'requests': 0, 'retries': 0}

    @classmethod
    def from_params(cls, params, **kwargs):
        cfg, target = build_configuration(params)
        secrets = set(kubeconfig_secrets(params.get('kubeconfig')))
        if params.get('api_key'):
            secrets.add(params['api_key'])
        return cls(cfg, target=target, secrets=secrets, **kwargs)

    def close(self):
        for closing in (self._pool.clear, getattr(self.api_client, 'close', None)):
            try:
                if closing is not None:
                    closing()
            except Exception:
                pass

    # a module's run holds the client for one run: ``with ClusterClient.from_params(p) as client:``
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
        elif getattr(self.configuration, 'username', None) and getattr(self.configuration, 'password', None):
            headers['Authorization'] = self.configuration.get_basic_auth_token()
        return headers

    def _note(self, method, path, query, status):
        with self._lock:
            self.stats['requests'] += 1
        if self.on_request:
            try:
                self.on_request(method, path, query, status)
            except Exception:
                pass

    def request(self, method, path, query=None, body=None, content_type=None, what=None,
                stream=False, timeout=None, accept='application/json'):
        """Send one API call, retrying transient failures; return the decoded JSON (or the raw
        streaming response when ``stream``).  ``what`` names the object for messages, e.g.
        ('get', 'Deployment', 'istiod-1-15-4', 'istio-system')."""
        method = method.upper()
        query = dict(query or {})
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            content_type = content_type or 'application/json'
        url = self.host + path
        if query:
            url += '?' + urlencode([(k, v) for k, v in query.items() if v is not None])
        timeout = timeout if timeout is not None else self.request_timeout
        attempt = 0
        connect_failures = 0
        outage_since = None
        auth_renewed = False
        while True:
            attempt += 1
            try:
                response = self._pool.request(
                    method, url, body=data, headers=self._headers(content_type, accept),
                    preload_content=not stream, timeout=_timeout(timeout), redirect=False)
            except Exception as exc:  # pylint: disable=broad-except
                kind, detail = classify_connection_error(exc)
                self._note(method, path, query, 0)
                if kind in ('fatal', 'dns', 'tls'):
                    raise self._unreachable(kind, detail)
                if kind == 'connect' and self._answered:
                    # it answered before: an API server restarting; wait for it, within outage_seconds
                    outage_since = self.clock() if outage_since is None else outage_since
                    if self.clock() - outage_since >= self.retry.outage_seconds:
                        raise self._unreachable('connect', '%s (refused for %ds, after it had answered: down or '
                                                'restarting for longer than that)' % (detail, self.retry.outage_seconds))
                    with self._lock:
                        self.stats['retries'] += 1
                    self.sleep(min(2.0, self.retry.delay(min(attempt, 4))))
                    continue
                if kind == 'connect':
                    connect_failures += 1
                    if connect_failures >= self.retry.connect_attempts:
                        raise self._unreachable(kind, detail)
                if attempt >= self.retry.max_attempts:
                    raise self._unreachable('dropped', detail)
                with self._lock:
                    self.stats['retries'] += 1
                self.sleep(self.retry.delay(attempt))
                continue

            status = response.status
            self._note(method, path, query, status)
            if 200 <= status < 300:
                return response if stream else _decode(response.data)
            payload = response.data if not stream else _read_and_close(response)
            if status == 401 and not auth_renewed and \
                    getattr(self.configuration, 'refresh_api_key_hook', None) is not None:
                # a renewable token (exec plugin, OIDC) may have expired within the cache's ttl
                auth_renewed = True
                self._auth.invalidate()
                continue
            retry_after = parse_retry_after(response.headers.get('Retry-After'))
            if status in RetryPolicy.RETRY_STATUSES and attempt < self.retry.max_attempts:
                with self._lock:
                    self.stats['retries'] += 1
                self.sleep(self.retry.delay(attempt, retry_after))
                continue
            raise self._api_error(status, payload, method, path, what, retried=attempt > 1)

    def _unreachable(self, kind, detail):
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
        msg = 'Cannot reach %s: %s; %s.' % (self.target.describe(), _redact(detail, self._secrets),
                                            hints.get(kind, hints['fatal']))
        return ClusterUnreachable(msg, details={'host': self.host, 'context': self.target.context,
                                                'cause': kind})

    def _api_error(self, status, payload, method, path, what, retried=False):
        body = _decode_quiet(payload)
        message = ''
        reason = None
        if isinstance(body, dict):
            message = body.get('message') or ''
            reason = body.get('reason')
        message = _redact(message, self._secrets)
        verb, kind, name, namespace = (list(what) + [None] * 4)[:4] if what else (method.lower(), path, None, None)
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
        cls = {404: NotFound, 409: AlreadyExists if reason == 'AlreadyExists' else Conflict, 410: Gone,
               422: Invalid}.get(status, ApiError)
        if status in RetryPolicy.RETRY_STATUSES:
            cls, text = TransientApiError, text + ' (still failing after retries)'
        return cls(text, status=status, reason=reason, details=details)

    def _discover(self, path, accept, what):
        try:
            return self.request('GET', path, accept=accept, what=what)
        except NotFound:
            return None

    # typed calls -------------------------------------------------------------------------------

    def resource(self, kind, api_version=None, what=None):
        """The ApiResource of a kind the server serves (see Discovery)."""
        return self.discovery.resource(kind, api_version, what or ('find', kind, None, None))

    def _call(self, method, verb, kind, name=None, namespace=None, api_version=None, subresource=None,
              ref_name=None, **kw):
        what = (verb, kind, name or ref_name, namespace)
        res = self.resource(kind, api_version, what)
        if method in ('POST', 'PUT'):   # a whole object: its kind and apiVersion as the server serves them
            kw['body'] = dict(kw['body'], apiVersion=res.api_version, kind=res.kind)
        answer = self.request(method, res.path(namespace, name, subresource), what=what, **kw)
        self._answered = True
        return _with_type(answer, res)

    def get(self, kind, name, namespace=None, api_version=None):
        """The object, or raise NotFound."""
        return self._call('GET', 'get', kind, name, namespace, api_version)

    def get_or_none(self, kind, name, namespace=None, api_version=None):
        try:
            return self.get(kind, name, namespace, api_version)
        except NotFound:
            return None

    def list_with_version(self, kind, namespace=None, label_selector=None, field_selector=None,
                          api_version=None, transform=None):
        """(items, resourceVersion of the list), following ``continue`` tokens in pages of 500.

        ``transform(obj)`` (optional) is applied to each item as its page arrives and what it returns is
        kept (None drops the item), so a namespace with thousands of pods never sits in memory as
        objects."""
        what = ('list', kind, None, namespace)
        res = self.resource(kind, api_version, what)
        query = {'labelSelector': label_selector or None, 'fieldSelector': field_selector or None,
                 'limit': 500}
        items = []
        rv = None
        while True:
            body = self.request('GET', res.path(namespace), query=query, what=what)
            self._answered = True
            page = body.pop('items', None) or []
            for item in page:
                item = _with_type(item, res)
                if transform is not None:
                    item = transform(item)
                if item is not None:
                    items.append(item)
            del page
            meta = body.get('metadata') or {}
            rv = meta.get('resourceVersion') or rv
            if not meta.get('continue'):
                return items, rv
            query['continue'] = meta['continue']

    def list(self, kind, namespace=None, label_selector=None, field_selector=None, api_version=None):
        return self.list_with_version(kind, namespace, label_selector, field_selector, api_version)[0]

    def create(self, kind, obj, namespace=None, dry_run=False):
        """Create ``obj`` (its apiVersion, if any, chooses among the kinds the server serves)."""
        meta = obj.get('metadata') or {}
        namespace = namespace or meta.get('namespace')
        try:
            return self._call('POST', 'create', kind, None, namespace, obj.get('apiVersion'), ref_name=meta.get('name'),
                              query=_dry(dry_run), body=obj)
        except AlreadyExists as exc:
            # our own earlier try went through before its answer was lost: that object is ours
            if exc.details.get('after_retry') and meta.get('name') and not dry_run:
                return self.get(kind, meta['name'], namespace, obj.get('apiVersion'))
            raise

    def replace(self, kind, obj, namespace=None, dry_run=False):
        """PUT the whole object; ``metadata.resourceVersion`` in ``obj`` makes it conditional
        (Conflict if the object changed since it was read)."""
        meta = obj.get('metadata') or {}
        return self._call('PUT', 'replace', kind, meta['name'], namespace or meta.get('namespace'), obj.get('apiVersion'),
                          query=_dry(dry_run), body=obj)

    def patch(self, kind, name, patch, namespace=None, patch_type='merge', dry_run=False,
              resource_version=None, subresource=None, api_version=None):
        """Patch an object.  ``resource_version`` makes it conditional: for merge/strategic patches it
        is put in the patch's metadata (the API server then refuses with 409 if the object changed);
        for JSON patches a ``test`` operation is prepended."""
        if patch_type not in self.PATCH_TYPES:
            raise InvalidInput('unknown patch type %r' % patch_type)
        if resource_version is not None:
            if patch_type == 'json':
                patch = [{'op': 'test', 'path': '/metadata/resourceVersion',
                          'value': resource_version}] + list(patch)
            else:
                patch = dict(patch, metadata=dict(patch.get('metadata') or {}, resourceVersion=resource_version))
        return self._call('PATCH', 'patch', kind, name, namespace, api_version, subresource, query=_dry(dry_run),
                          body=patch, content_type=self.PATCH_TYPES[patch_type])

    def delete(self, kind, name, namespace=None, propagation='Background', dry_run=False,
               resource_version=None, missing_ok=True, api_version=None):
        """Delete; returns True when the server accepted the deletion, False when it was already
        gone (``missing_ok``)."""
        body = {'kind': 'DeleteOptions', 'apiVersion': 'v1'}
        if propagation:
            body['propagationPolicy'] = propagation
        if resource_version:
            body['preconditions'] = {'resourceVersion': resource_version}
        try:
            self._call('DELETE', 'delete', kind, name, namespace, api_version, query=_dry(dry_run), body=body)
            return True
        except NotFound as exc:
            if exc.details.get('after_retry'):
                return True   # an earlier try deleted it before its answer was lost
            if missing_ok:
                return False
            raise

    # watches -----------------------------------------------------------------------------------

    def watch(self, kind, namespace=None, label_selector=None, field_selector=None,
              resource_version=None, timeout_seconds=60, api_version=None):
        """One watch request: yield WatchEvent(type, object) until the server ends the stream.

        Raises Gone on 410 (HTTP or ERROR event), WatchDropped on an abnormal end (connection reset,
        truncated chunk, read timeout) so that the caller can resume.  BOOKMARK events are yielded
        too (they only carry a resourceVersion).
        """
        what = ('watch', kind, None, namespace)
        res = self.resource(kind, api_version, what)
        query = {'watch': 'true', 'labelSelector': label_selector or None,
                 'fieldSelector': field_selector or None, 'resourceVersion': resource_version,
                 'allowWatchBookmarks': 'true', 'timeoutSeconds': int(max(1, timeout_seconds))}
        try:
            response = self.request('GET', res.path(namespace), query=query, stream=True,
                                    timeout=(10.0, float(timeout_seconds) + 15.0), what=what)
        except ClusterUnreachable as exc:
            if exc.details.get('cause') == 'dropped':
                raise WatchDropped(str(exc))
            raise
        try:
            for line in _iter_lines(response):
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    raise WatchDropped('undecodable watch event')
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
                        raise WatchDropped('watch error %s' % code)
                    raise self._api_error(code or 500, json.dumps(obj), 'GET', res.path(namespace), what)
                if etype not in ('ADDED', 'MODIFIED', 'DELETED', 'BOOKMARK'):
                    continue
                obj = _with_type(obj, res)
                yield WatchEvent(etype, obj, (obj.get('metadata') or {}).get('resourceVersion'))
        except (Gone, ApiError, WatchDropped):
            raise
        except Exception as exc:  # pylint: disable=broad-except
            if _is_stream_error(exc):
                raise WatchDropped('%s: %s' % (type(exc).__name__, exc))
            raise
        finally:
            # a watch may be abandoned mid-stream: never hand a half-read connection back to the pool
            try:
                response.close()
                response.release_conn()
            except Exception:
                pass

    def stream(self, kind, namespace=None, label_selector=None, field_selector=None, timeout=None,
               watch_chunk=60, resource_version=None, api_version=None):
        """List, then watch, forever or until ``timeout`` seconds: yield WatchEvents (see ``follow``).

        The first event is LISTED with the current items (unless ``resource_version`` is given: then
        the watch starts from there, e.g. to resume an earlier stream).  The generator simply returns when
        ``timeout`` is over; stop earlier by breaking out of the loop.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        selectors = dict(label_selector=label_selector, field_selector=field_selector, api_version=api_version)

        def watch_items(rv):
            chunk = watch_chunk if deadline is None else max(1, min(watch_chunk, deadline - time.monotonic()))
            for event in self.watch(kind, namespace, resource_version=rv, timeout_seconds=int(chunk + 0.999),
                                    **selectors):
                yield event.type, event.object, event.resource_version

        def pause(seconds):
            with self._lock:
                self.stats['retries'] += 1
            self.sleep(seconds)
        try:
            yield from follow(lambda: self.list_with_version(kind, namespace, **selectors), watch_items,
                              resource_version, max_failures=self.retry.max_attempts * 3,
                              delay=lambda failures: self.retry.delay(min(failures, 5)), sleep=pause,
                              deadline=deadline)
        except WatchDropped:
            raise ClusterUnreachable('The watch of %s on %s kept dropping: check the network and the API server '
                                     'health.' % (object_ref(kind, namespace=namespace), self.host),
                                     details={'host': self.host, 'cause': 'dropped'})

    def wait_for(self, kind, name, namespace, predicate, timeout, description=None, api_version=None):
        """Wait until ``predicate(obj)`` is true for the named object (``obj`` is None while it does
        not exist); return that object.  Raises WaitTimeout naming the object and ``description``."""
        current = None
        for event in self.stream(kind, namespace, field_selector='metadata.name=%s' % name, timeout=timeout,
                                 api_version=api_version):
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


def follow(list_items, watch_items, resource_version=None, retry_on=(WatchDropped,), max_failures=24,
           delay=None, sleep=time.sleep, stop=None, deadline=None):
    """The resumable watch of one collection (ClusterClient.stream's and the rollout engine's watchers').

    ``list_items()`` returns (items, resourceVersion), ``watch_items(rv)`` the (type, object, rv) events of
    one watch request.  Yields WatchEvents: LISTED (the items) after the list (none when ``resource_version``
    is given) and after each re-list that a 410 Gone causes, then ADDED, MODIFIED, DELETED.  An ended watch
    resumes from the last resourceVersion seen (no event lost or repeated); after an error of ``retry_on``
    ``delay(failures)`` seconds later, until ``max_failures`` in a row (then it is raised).  Ends when
    ``stop`` (an Event) is set or ``deadline`` (time.monotonic()) has passed.
    """
    delay = delay or (lambda failures: min(5.0, 0.1 * 2 ** min(failures - 1, 6)))
    rv, failures = resource_version, 0

    def over():
        return (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() >= deadline)
    while not over():
        try:
            if rv is None:
                items, rv = list_items()
                yield WatchEvent('LISTED', items, rv)
            for etype, obj, event_rv in watch_items(rv):
                failures = 0
                rv = event_rv or rv
                if etype != 'BOOKMARK':
                    yield WatchEvent(etype, obj, rv)
                if over():
                    return
        except Gone:
            rv = None   # re-list: the complete current state replaces what was known
        except retry_on:
            failures += 1
            if failures > max_failures:
                raise
            sleep(delay(failures))


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


def _u3(*names):
    """The urllib3 exception classes of these names that this urllib3 has (NameResolutionError is 2.x)."""
    return tuple(getattr(u3exc, name) for name in names if HAS_URLLIB3 and hasattr(u3exc, name))


def classify_connection_error(exc):
    """('dns'|'tls'|'connect'|'dropped'|'fatal', human detail) for an exception from urllib3 (1.26 or 2.x)."""
    inner = exc
    if isinstance(exc, _u3('MaxRetryError')) and exc.reason is not None:
        inner = exc.reason
    if isinstance(inner, _u3('NameResolutionError')) or isinstance(inner, socket.gaierror):
        return 'dns', 'cannot resolve the host name'
    if isinstance(inner, _u3('SSLError') + (ssl.SSLError,)):
        return 'tls', 'TLS error: %s' % _short(inner)
    if isinstance(inner, _u3('ProxyError')):
        return 'connect', 'proxy error: %s' % _short(inner)
    if isinstance(inner, _u3('NewConnectionError')):
        text = _short(inner)
        if 'Name or service not known' in text or 'nodename nor servname' in text or \
                'Temporary failure in name resolution' in text:
            return 'dns', 'cannot resolve the host name'
        if 'refused' in text.lower():
            return 'connect', 'connection refused'
        return 'connect', 'cannot connect (%s)' % text
    if isinstance(inner, _u3('ConnectTimeoutError')):
        return 'connect', 'connection timed out'
    if isinstance(inner, _u3('LocationValueError')):
        return 'fatal', 'invalid API server URL'
    if isinstance(inner, ConnectionRefusedError):
        return 'connect', 'connection refused'
    if isinstance(inner, _u3('ProtocolError', 'ReadTimeoutError', 'IncompleteRead', 'DecodeError') +
                  (ConnectionError, socket.timeout, TimeoutError)):
        return 'dropped', 'connection dropped (%s)' % type(inner).__name__
    return 'fatal', '%s: %s' % (type(inner).__name__, _short(inner))


def _short(exc):
    text = str(exc)
    # urllib3 messages embed the connection object's repr; keep the useful tail
    if '>: ' in text:
        text = text.split('>: ', 1)[1]
    return text.strip()[:300]


def _is_stream_error(exc):
    return isinstance(exc, _u3('ProtocolError', 'ReadTimeoutError', 'IncompleteRead', 'DecodeError', 'HTTPError') +
                      (ConnectionError, socket.timeout, TimeoutError, OSError))
