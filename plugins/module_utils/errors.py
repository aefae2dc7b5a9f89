# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Domain exceptions of the meshops.istio collection.

Every error the collection raises on purpose is a ``MeshopsError``: a message meant for the person
running the playbook (what failed, on which object, and what to do) plus a ``details`` dict that
modules return next to the message.  Modules turn them into ``fail_json`` exactly once, in main().
Messages never contain credentials (tokens, keys, kubeconfig contents).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class MeshopsError(Exception):
    """Base class: ``message`` for people, ``details`` (a dict) for machines, and ``result``: keys of the
    module result that stay meaningful on failure (e.g. rollout_restart's per-workload results)."""

    def __init__(self, message, details=None, result=None):
        super(MeshopsError, self).__init__(message)
        self.message = message
        self.details = dict(details or {})
        self.result = dict(result or {})

    def __str__(self):
        return self.message

    def to_result(self):
        """The keyword arguments for ``module.fail_json``."""
        result = dict(self.result, msg=self.message, error=type(self).__name__)
        if self.details:
            result['details'] = self.details
        return result


class InvalidInput(MeshopsError):
    """A module argument or a file it names is wrong; nothing was sent to the cluster."""


# --- talking to the API server ---------------------------------------------------------------------

class ClusterUnreachable(MeshopsError):
    """The API server could not be reached (connection refused, DNS, TLS, timeouts)."""


class AuthenticationFailed(MeshopsError):
    """The API server refused the credentials (401), or they lack permission (403, see Forbidden)."""


class Forbidden(AuthenticationFailed):
    """403: the credentials are valid but not allowed to do this (RBAC)."""


class ApiError(MeshopsError):
    """A non-transient error answered by the API server for one object or collection."""

    def __init__(self, message, status=None, reason=None, details=None):
        details = dict(details or {})
        if status is not None:
            details.setdefault('status', status)
        if reason:
            details.setdefault('reason', reason)
        super(ApiError, self).__init__(message, details)
        self.status = status
        self.reason = reason


class NotFound(ApiError):
    """404: the object (or its namespace, or the API) does not exist."""


class Conflict(ApiError):
    """409: the object changed since it was read (resourceVersion mismatch)."""


class AlreadyExists(Conflict):
    """409 AlreadyExists on create."""


class Gone(ApiError):
    """410: the requested resourceVersion is too old (watch must re-list)."""


class Invalid(ApiError):
    """422: the object was refused by validation or admission."""


class TransientApiError(ApiError):
    """429/5xx or a dropped connection that did not go away after the retries allowed."""


class WaitTimeout(MeshopsError):
    """A wait for a condition on the cluster did not finish in time."""


class RolloutFailed(MeshopsError):
    """Workloads failed to restart or roll out; ``result`` holds every workload's outcome."""


class PhaseRefused(MeshopsError):
    """The plan refuses to run a phase of the upgrade (a guard failed); ``result`` holds the plan."""


class UpgradeStateError(InvalidInput):
    """Bad input for the upgrade record (a name that cannot be a ConfigMap key, ...)."""


class LeaseHeld(MeshopsError):
    """Another run holds the upgrade record's lease (one run per cluster at a time); nothing was changed."""


# --- Istio's revision model ------------------------------------------------------------------------

class RevisionNotFound(MeshopsError):
    """No istiod runs for the revision (or the tag)."""


class RevisionNotReady(MeshopsError):
    """istiod of the revision exists but is not ready."""


class RevisionVersionMismatch(MeshopsError):
    """The revision already exists with another Istio version (a revision name belongs to one version)."""


class RevisionInUse(MeshopsError):
    """The revision (or tag) still has users; ``users`` lists them (``in_use_by`` entries)."""

    def __init__(self, message, users, details=None):
        details = dict(details or {})
        details.setdefault('in_use_by', list(users))
        super(RevisionInUse, self).__init__(message, details)
        self.users = list(users)


class TagInUse(RevisionInUse):
    """A revision tag is still selected by namespaces."""


# --- istioctl --------------------------------------------------------------------------------------

class IstioctlError(MeshopsError):
    """istioctl failed; ``details`` has the command (without secrets), rc and output tails."""


class IstioctlNotFound(IstioctlError):
    """The istioctl binary is missing or not executable."""


# --- Prometheus (the metric gate) ------------------------------------------------------------------

class PrometheusError(MeshopsError):
    """Base of every problem talking to Prometheus (never a failed check)."""

    def to_result(self):
        # not 'unreachable': that key would make Ansible mark the host itself unreachable
        return dict(super(PrometheusError, self).to_result(),
                    prometheus_unreachable=isinstance(self, PrometheusUnreachable))


class PrometheusUnreachable(PrometheusError):
    """Prometheus could not be reached or did not answer usefully (connection, DNS, TLS, timeout, 5xx)."""


class PrometheusAuthError(PrometheusError):
    """Prometheus (or the proxy in front of it) refused the credentials: HTTP 401 or 403."""


class PrometheusQueryError(PrometheusError):
    """Prometheus refused or could not run a query (bad PromQL, unknown function, execution error)."""


class GateConfigError(MeshopsError):
    """The gate's own configuration is wrong (thresholds, durations, templates); nothing was queried."""


class GateFailed(MeshopsError):
    """The metric gate did not pass (and fail_on_gate is true); ``result`` holds the verdict."""

    def to_result(self):
        # a verdict, not an error: ``error`` stays reserved for "the gate could not look"
        return dict(self.result, msg=self.message)
