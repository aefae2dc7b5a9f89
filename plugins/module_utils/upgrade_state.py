# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The canary upgrade's record, kept on the cluster in a ConfigMap.

Phases of the upgrade run as separate ``ansible-playbook`` invocations (one AWX job per
phase, a re-run after a crash), so what the upgrade has done so far lives on the cluster,
not in facts.  The record is a flat ConfigMap that ``kubectl get cm -o yaml`` shows plainly::

    data:
      tag: default
      from_revision: 1-14-6
      from_version: 1.14.6
      to_revision: 1-15-4
      to_version: 1.15.4
      phase.precheck: "2026-11-21T23:59:01Z"
      phase.install: "2026-11-22T00:01:12Z"
      wave.wave1.started: "2026-11-22T00:03:40Z"
      wave.wave1.done: "2026-11-22T00:04:02Z"
      wave.wave1.namespaces: bar
      wave.wave1.workloads: bar/Deployment/bar
      rollback.started: "2026-11-22T00:09:12Z"
      rollback.revision: 1-14-6
      rollback.namespaces: bar,istio-ingress
      abandoned.1: '{"abandoned_at": "...", "to_revision": "1-15-3", "phase.precheck": "...", ...}'
      lease.holder: cluster-a@awx-job-77-abcde:4711
      lease.expires: "2026-11-22T00:06:02Z"
      ...

The ``rollback.*`` keys say that a rollback is under way (see ``merge``): written before the rollback moves the
tag back, removed when it records the rollback done, so that a rollback stopped in between (killed, an API server
outage) leaves a record that still tells the truth, and the next rollback run finishes from the cluster.

The ``lease.*`` keys are the lease (see "The lease" below): one run at a time writes to the cluster.  The
record's writer keeps every key it does not own (the lease's, and whatever other writers publish, e.g.
progress), so the writers never clobber each other; each write is conditional on the resourceVersion read.

An upgrade in progress (anything beyond precheck done, and neither cleaned up nor rolled back) is
never replaced by a record about another target unless that is asked for (``abandon``); the
abandoned record is then kept whole under ``abandoned.<n>``.

This file holds the model (parse, merge, render) and the record's reads and writes through a
ClusterClient (``read_record``, ``write_record``), shared by istio_upgrade_state and its _info module.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import copy
import datetime
import json
import os
import re
import socket
import threading

from ansible_collections.meshops.istio.plugins.module_utils.client import DELETE
from ansible_collections.meshops.istio.plugins.module_utils.errors import (
    LeaseHeld,
    MeshopsError,
    UpgradeStateError,
)

STATE_FIELDS = ("tag", "from_revision", "from_version", "to_revision", "to_version")
WAVE_LIST_FIELDS = ("namespaces", "workloads")
WAVE_TIME_FIELDS = ("started", "done")
WAVE_FIELDS = WAVE_LIST_FIELDS + WAVE_TIME_FIELDS
# A rollback under way: when it started, the revision the tag goes back to, the namespaces it moves back.
ROLLBACK_PREFIX = "rollback."
ROLLBACK_FIELDS = ("started", "revision", "namespaces")
# ConfigMap keys allow [-._a-zA-Z0-9]; a dot separates key parts, so names may not hold one.
NAME_RE = re.compile(r"^[A-Za-z0-9][-_A-Za-z0-9]{0,62}$")
MANAGED_LABELS = {
    "app.kubernetes.io/managed-by": "meshops.istio",
    "app.kubernetes.io/component": "upgrade-state",
}


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def empty_record():
    record = dict((field, None) for field in STATE_FIELDS)
    record.update({"phases": {}, "waves": {}, "abandoned": [], "rollback": None, "lease": None, "lease_log": []})
    return record


def _split_list(value):
    return [item for item in (value or "").split(",") if item]


def parse(data):
    """ConfigMap ``data`` -> record dict (unknown keys are ignored, so newer writers stay readable)."""
    record = empty_record()
    for key, value in (data or {}).items():
        if key in STATE_FIELDS:
            record[key] = value or None
        elif key.startswith("phase."):
            record["phases"][key[len("phase."):]] = value
        elif key.startswith("abandoned.") and key[len("abandoned."):].isdigit():
            try:
                entry = json.loads(value)
            except ValueError:
                entry = {"unreadable": value}
            record["abandoned"].append((int(key[len("abandoned."):]), entry if isinstance(entry, dict) else {"value": entry}))
        elif key.startswith("wave.") and key.count(".") == 2:
            _prefix, name, field = key.split(".")
            if field not in WAVE_FIELDS:
                continue
            wave = record["waves"].setdefault(name, new_wave())
            wave[field] = _split_list(value) if field in WAVE_LIST_FIELDS else value
        elif key.startswith(ROLLBACK_PREFIX) and key[len(ROLLBACK_PREFIX):] in ROLLBACK_FIELDS:
            field = key[len(ROLLBACK_PREFIX):]
            rollback = record["rollback"] = record["rollback"] or new_rollback()
            rollback[field] = _split_list(value) if field == "namespaces" else value or None
    record["abandoned"] = [entry for _index, entry in sorted(record["abandoned"], key=lambda item: item[0])]
    record["lease"] = lease_of(data)
    record["lease_log"] = lease_log(data)
    return record


def owned_key(key):
    """Whether ``key`` is one the record's model parses and renders (the rest belongs to other writers)."""
    if key in STATE_FIELDS or key.startswith("phase."):
        return True
    if key.startswith("abandoned.") and key[len("abandoned."):].isdigit():
        return True
    if key.startswith(ROLLBACK_PREFIX) and key[len(ROLLBACK_PREFIX):] in ROLLBACK_FIELDS:
        return True
    return key.startswith("wave.") and key.count(".") == 2


def new_wave():
    return {"namespaces": [], "workloads": [], "started": None, "done": None}


def new_rollback():
    return {"started": None, "revision": None, "namespaces": []}


def render(record):
    """Record dict -> ConfigMap ``data`` (only set fields; lists comma separated, sorted)."""
    data = {}
    for field in STATE_FIELDS:
        if record.get(field):
            data[field] = str(record[field])
    for phase, when in sorted(record.get("phases", {}).items()):
        data["phase.%s" % phase] = when
    for name, wave in sorted(record.get("waves", {}).items()):
        for field in WAVE_LIST_FIELDS:
            if wave.get(field):
                data["wave.%s.%s" % (name, field)] = ",".join(sorted(set(wave[field])))
        for field in WAVE_TIME_FIELDS:
            if wave.get(field):
                data["wave.%s.%s" % (name, field)] = wave[field]
    rollback = record.get("rollback") or {}
    for field in ROLLBACK_FIELDS:
        value = rollback.get(field)
        if value:
            data[ROLLBACK_PREFIX + field] = ",".join(sorted(set(value))) if field == "namespaces" else str(value)
    for index, entry in enumerate(record.get("abandoned") or [], 1):
        data["abandoned.%d" % index] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return data


def finished(record):
    """The recorded upgrade is over: cleaned up, or rolled back (the tag moved back, no wave left)."""
    phases = record.get("phases") or {}
    if "cleanup" in phases:
        return True
    if rollback_under_way(record):
        return False
    return "rollback" in phases and "tag" not in phases and not record.get("waves")


def in_progress(record):
    """Something beyond precheck was done for the recorded target and the upgrade is not over."""
    if not record.get("to_revision") or finished(record):
        return False
    phases = set(record.get("phases") or {}) - {"precheck"}
    return bool(phases or record.get("waves") or rollback_under_way(record))


def rollback_under_way(record):
    """A rollback was recorded as started and not yet as done: the tag and the workloads it moves back may be on
    either revision until a rollback run finishes."""
    return bool((record.get("rollback") or {}).get("started"))


def progress_text(record):
    """``install, tag, wave1 done`` for messages."""
    done = [p for p in ("precheck", "install", "tag", "gateways") if p in (record.get("phases") or {})]
    done += sorted(record.get("waves") or {})
    done += sorted(p for p in (record.get("phases") or {}) if p not in done)
    text = "%s done" % ", ".join(done) if done else "nothing done yet"
    if rollback_under_way(record):
        rollback = record["rollback"]
        text += ", a rollback to %s under way since %s" % (rollback.get("revision") or "?", rollback["started"])
    return text


def abandoned_entry(record, now=None):
    """What is kept of an abandoned record: its own ConfigMap data (without older abandoned ones)."""
    own = dict(record)
    own["abandoned"] = []
    own["lease"], own["lease_log"] = None, []
    entry = render(own)
    entry["abandoned_at"] = now or utc_now()
    return entry


def check_name(kind, name):
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UpgradeStateError(
            "%s name %r cannot be recorded: use letters, digits, '-' or '_' (at most 63, no dots)" % (kind, name)
        )
    return name


def merge(record, fields=None, phase=None, wave=None, forget_phases=None, forget_waves=False, now=None,
          abandon=False, rollback=None):
    """Return a new record with the requested updates applied.

    * ``fields``: tag/from/to values; a different ``to_revision`` than the recorded one starts a
      new upgrade (phases and waves of the previous one are dropped).  While the recorded upgrade is
      in progress that is refused unless ``abandon`` is true; the abandoned record is then kept under
      ``abandoned``.  A record whose old and new revision are the same is refused.
    * ``phase``: marks a phase done; the first completion time is kept, so a re-run changes nothing.
    * ``wave``: ``{name, namespaces, workloads, status: started|done}``; lists are merged.
    * ``forget_phases`` / ``forget_waves``: what a rollback undoes.
    * ``rollback``: ``{revision, namespaces}``, a rollback starts (recorded before it moves anything; the first
      start time is kept, namespaces are merged).  Recording phase ``rollback`` (done) ends it.
    """
    now = now or utc_now()
    new = copy.deepcopy(record)
    fields = {k: v for k, v in (fields or {}).items() if v not in (None, "")}
    unknown = set(fields) - set(STATE_FIELDS)
    if unknown:
        raise UpgradeStateError("unknown upgrade fields: %s" % ", ".join(sorted(unknown)))
    to_revision = fields.get("to_revision")
    if to_revision and new.get("to_revision") and new["to_revision"] != to_revision:
        history = list(new.get("abandoned") or [])
        if in_progress(record):
            if not abandon:
                raise UpgradeStateError(
                    "an upgrade to %s is in progress (%s); it is not replaced by one to %s unless it is "
                    "abandoned (abandon: true)" % (record["to_revision"], progress_text(record), to_revision))
            history.append(abandoned_entry(record, now))
        # A new upgrade: keep nothing of the previous record except what the caller gives again.
        new = empty_record()
        new["abandoned"] = history
        new["lease"] = copy.deepcopy(record.get("lease"))
        new["lease_log"] = copy.deepcopy(record.get("lease_log") or [])
    for key, value in fields.items():
        new[key] = str(value)
    if new.get("from_revision") and new["from_revision"] == new.get("to_revision"):
        raise UpgradeStateError(
            "from_revision and to_revision would both be %s: the old revision is the one the upgrade moves "
            "away from, never the target" % new["to_revision"])
    for name in forget_phases or []:
        new["phases"].pop(name, None)
    if forget_waves:
        new["waves"] = {}
    if rollback:
        revision = rollback.get("revision")
        if not revision or not NAME_RE.match(str(revision)):
            raise UpgradeStateError("a rollback needs the revision it goes back to, not %r" % (revision,))
        namespaces = [str(ns) for ns in rollback.get("namespaces") or []]
        if any("," in ns for ns in namespaces):
            raise UpgradeStateError("rollback namespaces may not contain ','")
        entry = new["rollback"] = copy.deepcopy(new.get("rollback")) or new_rollback()
        entry["revision"] = str(revision)
        entry["namespaces"] = sorted(set(entry["namespaces"] or []) | set(namespaces))
        entry["started"] = entry["started"] or now
    if phase:
        check_name("phase", phase)
        new["phases"].setdefault(phase, now)
        if phase == "rollback":
            new["rollback"] = None
    if wave:
        name = check_name("wave", wave.get("name"))
        status = wave.get("status") or "done"
        if status not in WAVE_TIME_FIELDS:
            raise UpgradeStateError("wave status must be one of %s, not %r" % (", ".join(WAVE_TIME_FIELDS), status))
        entry = new["waves"].setdefault(name, new_wave())
        for field in WAVE_LIST_FIELDS:
            items = wave.get(field) or []
            if any("," in str(item) for item in items):
                raise UpgradeStateError("wave %s: %s may not contain ','" % (name, field))
            entry[field] = sorted(set(entry[field]) | set(str(item) for item in items))
        if not entry["started"]:
            entry["started"] = now
        if status == "done" and not entry["done"]:
            entry["done"] = now
    return new


def public(record, exists, name, namespace):
    """The record as the module returns it."""
    out = copy.deepcopy(record)
    out.update({"exists": exists, "name": name, "namespace": namespace})
    out["waves_done"] = sorted(n for n, w in record["waves"].items() if w.get("done"))
    out["waves_started"] = sorted(record["waves"])
    moved = set()
    for wave in record["waves"].values():
        moved.update(wave.get("namespaces") or [])
    out["moved_namespaces"] = sorted(moved)
    out["in_progress"] = in_progress(record)
    out["rollback_under_way"] = rollback_under_way(record)
    return out


@contextlib.contextmanager
def about_record(name, namespace):
    """Errors name the record's ConfigMap; refused input says that nothing was written."""
    try:
        yield
    except LeaseHeld:
        raise  # its message names the record already
    except MeshopsError as exc:
        exc.message = "upgrade record configmap %s/%s: %s%s" % (
            namespace, name, exc.message, "; nothing was written" if isinstance(exc, UpgradeStateError) else "")
        raise


def read_record(client, name, namespace):
    """The record as the modules return it (``exists`` false when there is none)."""
    with about_record(name, namespace):
        current = client.get_or_none("ConfigMap", name, namespace)
    return public(parse((current or {}).get("data")), current is not None, name, namespace)


def write_record(client, name, namespace, absent=False, check_mode=False, **changes):
    """Merge ``changes`` (see merge) into the record, or delete it; returns (Update, record after).

    The write is conditional on the resourceVersion read: a concurrent writer makes it a 409, and the
    merge is redone on what it wrote instead of clobbering it."""
    after = {}

    def change(current):
        if absent:
            after["record"] = empty_record()
            return DELETE
        before_data = (current or {}).get("data") or {}
        after["record"] = merge(parse(before_data) if current is not None else empty_record(), **changes)
        data = render(after["record"])
        # the lease and other writers' keys stay as they are
        data.update((key, value) for key, value in before_data.items() if not owned_key(key))
        if current is not None and data == before_data:
            return None
        metadata = {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    with about_record(name, namespace):
        update = client.update_with_retry("ConfigMap", name, change, namespace, check_mode=check_mode)
    exists = not absent and (update.before is not None or not check_mode)
    return update, public(after["record"], exists, name, namespace)


# --- The lease: one run per cluster at a time ------------------------------------------------------------
#
# A phase that writes (not in check mode) takes the lease before it changes anything, renews it while it runs
# (LeaseKeeper: a thread in the modules that wait long) and releases it when it is done.  Another run finds it
# held and refuses, naming the holder.  A holder that is gone (killed job, lost controller) stops renewing: its
# lease expires ``ttl`` seconds after the last renewal and is then taken over; ``break_lease`` takes it at once.
# Every takeover is logged in the record (``lease.log.<n>``).  Times are the controllers' UTC clocks.

LEASE_PREFIX = "lease."
LEASE_FIELDS = ("holder", "inventory_host", "controller_host", "pid", "awx_job_id", "phase", "since", "renewed",
                "expires", "ttl")
LEASE_TTL = 120
LEASE_LOG_KEEP = 20
HOLDER_FIELDS = ("inventory_host", "controller_host", "pid", "awx_job_id")


def _now_dt(now=None):
    if isinstance(now, datetime.datetime):
        return now
    if isinstance(now, str):
        return parse_time(now)
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _fmt(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value):
    try:
        return datetime.datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def lease_of(data):
    """The lease held in ConfigMap ``data`` (a dict of LEASE_FIELDS) or None when nobody holds it."""
    data = data or {}
    if not data.get(LEASE_PREFIX + "holder"):
        return None
    return dict((field, data.get(LEASE_PREFIX + field) or None) for field in LEASE_FIELDS)


def lease_log(data):
    """The takeovers logged in ConfigMap ``data``, oldest first."""
    entries = []
    for key, value in (data or {}).items():
        if key.startswith(LEASE_PREFIX + "log.") and key[len(LEASE_PREFIX + "log."):].isdigit():
            try:
                entry = json.loads(value)
            except ValueError:
                entry = {"unreadable": value}
            entries.append((int(key[len(LEASE_PREFIX + "log."):]), entry))
    return [entry for _index, entry in sorted(entries, key=lambda item: item[0])]


def holder_of(holder):
    """The holder as recorded: every HOLDER_FIELDS as a string, the controller's host and pid defaulting to
    this process's (modules run on the controller: the playbook targets clusters over a local connection)."""
    holder = dict(holder or {})
    out = {
        "inventory_host": str(holder.get("inventory_host") or "localhost"),
        "controller_host": str(holder.get("controller_host") or socket.gethostname()),
        "pid": str(holder.get("pid") or os.getpid()),
        "awx_job_id": str(holder.get("awx_job_id") or ""),
    }
    for field, value in out.items():
        if any(c in value for c in "\n,"):
            raise UpgradeStateError("lease holder %s %r may not contain a comma or a line break" % (field, value))
    return out


def holder_id(holder):
    """``<inventory host>@<controller host>:<pid>``: one run of ansible-playbook for one cluster."""
    holder = holder_of(holder)
    return "%s@%s:%s" % (holder["inventory_host"], holder["controller_host"], holder["pid"])


def lease_expired(lease, now=None):
    expires = parse_time((lease or {}).get("expires"))
    return expires is None or expires <= _now_dt(now)


def describe_lease(lease):
    """``cluster-a, run from controller awx-7 (pid 4711, AWX job 77), phase wave1, since ..., expires ...``"""
    job = ", AWX job %s" % lease["awx_job_id"] if lease.get("awx_job_id") else ""
    return ("%s, run from controller %s (pid %s%s), phase %s, since %s, last renewed %s, expires %s"
            % (lease.get("inventory_host") or "?", lease.get("controller_host") or "?", lease.get("pid") or "?", job,
               lease.get("phase") or "?", lease.get("since") or "?", lease.get("renewed") or "?",
               lease.get("expires") or "?"))


def lease_refusal(lease, holder, ref, now=None):
    """Why ``holder`` may not take ``lease`` (None when it may: free, its own, or expired)."""
    if not lease or lease.get("holder") == holder_id(holder) or lease_expired(lease, now):
        return None
    gone = ""
    if lease.get("controller_host") == socket.gethostname() and lease.get("pid") and not pid_alive(lease["pid"]):
        gone = " (pid %s no longer runs on this controller: that run is gone)" % lease["pid"]
    return ("The upgrade record %s is leased to another run: %s%s. Only one run at a time may change a cluster; "
            "nothing was changed. Wait for that run to finish (the lease is released at the end of each phase). "
            "If that run is gone (killed, its controller lost), its lease expires at %s (%s seconds after its last "
            "renewal; istio_canary_lease_ttl), or take it over now with -e istio_canary_break_lease=true (the "
            "takeover is logged in the record under lease.log)."
            % (ref, describe_lease(lease), gone, lease.get("expires") or "?", lease.get("ttl") or "?"))


def _lease_configmap(current, name, namespace, data):
    metadata = {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)}
    if current is not None:
        metadata = dict(current.get("metadata") or {}, **metadata)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def _set_lease(data, lease):
    for field in LEASE_FIELDS:
        data.pop(LEASE_PREFIX + field, None)
        if lease and lease.get(field):
            data[LEASE_PREFIX + field] = str(lease[field])


def _append_log(data, entry):
    entries = lease_log(data) + [entry]
    for key in [k for k in data if k.startswith(LEASE_PREFIX + "log.")]:
        del data[key]
    for index, item in enumerate(entries[-LEASE_LOG_KEEP:], 1):
        data["%slog.%d" % (LEASE_PREFIX, index)] = json.dumps(item, sort_keys=True, separators=(",", ":"))


def acquire_lease(client, name, namespace, holder, phase, ttl=LEASE_TTL, break_lease=False, check_mode=False,
                  now=None):
    """Take (or renew) the lease for ``holder``; raise LeaseHeld while another run holds it.  Returns
    (Update, {"lease": the lease, "how": acquired|renewed|expired|broken, "previous": the lease taken over})."""
    holder = holder_of(holder)
    ident = holder_id(holder)
    ttl = int(ttl)
    if ttl < 5:
        raise UpgradeStateError("the lease's ttl must be at least 5 seconds, not %s" % ttl)
    check_name("phase", phase)
    out = {}

    def change(current):
        data = dict((current or {}).get("data") or {})
        moment = _now_dt(now)
        lease = lease_of(data)
        out.update(how="acquired", previous=None)
        if lease and lease["holder"] == ident:
            out["how"] = "renewed"
        elif lease:
            expired = lease_expired(lease, moment)
            if not expired and not break_lease:
                raise LeaseHeld(lease_refusal(lease, holder, "configmap %s/%s" % (namespace, name), moment),
                                details={"lease": lease})
            out.update(how="expired" if expired else "broken", previous=lease)
            _append_log(data, {"event": "taken over after expiry" if expired else "broken (istio_canary_break_lease)",
                               "at": _fmt(moment), "by": ident, "phase": phase, "awx_job_id": holder["awx_job_id"],
                               "previous": lease})
        new = dict(holder, holder=ident, phase=phase, ttl=str(ttl), renewed=_fmt(moment),
                   since=lease["since"] if out["how"] == "renewed" and lease.get("phase") == phase else _fmt(moment),
                   expires=_fmt(moment + datetime.timedelta(seconds=ttl)))
        _set_lease(data, new)
        out["lease"] = lease_of(data)
        return _lease_configmap(current, name, namespace, data)

    with about_record(name, namespace):
        update = client.update_with_retry("ConfigMap", name, change, namespace, check_mode=check_mode)
    return update, out


def renew_lease(client, name, namespace, holder, ttl=LEASE_TTL, now=None):
    """Push the expiry of our lease ``ttl`` seconds ahead; raise LeaseHeld when it is no longer ours."""
    ident = holder_id(holder)

    def change(current):
        data = dict((current or {}).get("data") or {})
        lease = lease_of(data)
        if not lease or lease["holder"] != ident:
            raise LeaseHeld("the lease of the upgrade record configmap %s/%s was taken over%s" % (
                namespace, name, " by %s" % describe_lease(lease) if lease else " and released"),
                details={"lease": lease})
        moment = _now_dt(now)
        lease.update(renewed=_fmt(moment), expires=_fmt(moment + datetime.timedelta(seconds=int(ttl))), ttl=str(ttl))
        _set_lease(data, lease)
        return _lease_configmap(current, name, namespace, data)

    return client.update_with_retry("ConfigMap", name, change, namespace)


def release_lease(client, name, namespace, holder, check_mode=False):
    """Give the lease back if ``holder`` holds it (someone else's is left alone).  A ConfigMap that held only
    the lease is deleted.  Returns (Update, released: bool)."""
    ident = holder_id(holder)
    out = {"released": False}

    def change(current):
        data = dict((current or {}).get("data") or {})
        lease = lease_of(data)
        if not lease or lease["holder"] != ident:
            return None
        out["released"] = True
        _set_lease(data, None)
        if not data:
            return DELETE
        return _lease_configmap(current, name, namespace, data)

    with about_record(name, namespace):
        update = client.update_with_retry("ConfigMap", name, change, namespace, check_mode=check_mode)
    return update, out["released"]


def pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


class LeaseKeeper:
    """Renews a lease from a thread while a module waits (a wave's rollouts, istiod becoming ready).

    ``lease``: what istio_canary_plan returns as ``plan.lease`` (``needed``, ``name``, ``namespace``,
    ``holder``, ``ttl``); nothing is done unless ``needed``.  Renewals run every quarter of the ttl (sooner
    after a failed one, e.g. while the API server is unreachable).  The keeper stops renewing when the lease
    was taken over (``lost``) or when the run it belongs to is gone (``orphaned``: the holder's pid no longer
    runs on this controller, e.g. ansible-playbook was killed and this module outlived it; ``on_orphaned`` is
    then called -- the module base ends the module, so that it starts nothing more) -- the lease then expires
    and another run may take over."""

    def __init__(self, client, lease, alive=pid_alive, on_orphaned=None):
        self.client = client
        self.on_orphaned = on_orphaned
        self.lease = lease or {}
        self.ttl = int(self.lease.get("ttl") or LEASE_TTL)
        self.interval = max(1.0, self.ttl / 4.0)
        self.alive = alive
        self.lost = None
        self.orphaned = False
        self.renewals = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = None

    @property
    def active(self):
        return bool(self.lease.get("needed")) and self.client is not None

    def start(self):
        if self.active:
            self._thread = threading.Thread(target=self._run, name="lease-keeper")
            self._thread.daemon = True
            self._thread.start()
        return self

    def _holder_gone(self):
        holder = holder_of(self.lease.get("holder"))
        return holder["controller_host"] == socket.gethostname() and not self.alive(holder["pid"])

    def _run(self):
        wait = self.interval
        while not self._stop.wait(wait):
            if self._holder_gone():
                self.orphaned = True
                if self.on_orphaned is not None:
                    self.on_orphaned()
                return
            try:
                renew_lease(self.client, self.lease["name"], self.lease["namespace"], self.lease["holder"], self.ttl)
                self.renewals += 1
                wait = self.interval
            except LeaseHeld as exc:
                self.lost = exc.message
                return
            except Exception as exc:  # pylint: disable=broad-except
                self.errors.append(str(exc))
                wait = min(self.interval, 5.0)

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
        return False
