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
      abandoned.1: '{"abandoned_at": "...", "to_revision": "1-15-3", "phase.precheck": "...", ...}'

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
import re

from ansible_collections.meshops.istio.plugins.module_utils.client import DELETE
from ansible_collections.meshops.istio.plugins.module_utils.errors import MeshopsError, UpgradeStateError

STATE_FIELDS = ("tag", "from_revision", "from_version", "to_revision", "to_version")
WAVE_LIST_FIELDS = ("namespaces", "workloads")
WAVE_TIME_FIELDS = ("started", "done")
WAVE_FIELDS = WAVE_LIST_FIELDS + WAVE_TIME_FIELDS
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
    record.update({"phases": {}, "waves": {}, "abandoned": []})
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
    record["abandoned"] = [entry for _index, entry in sorted(record["abandoned"], key=lambda item: item[0])]
    return record


def new_wave():
    return {"namespaces": [], "workloads": [], "started": None, "done": None}


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
    for index, entry in enumerate(record.get("abandoned") or [], 1):
        data["abandoned.%d" % index] = json.dumps(entry, sort_keys=True, separators=(",", ":"))
    return data


def finished(record):
    """The recorded upgrade is over: cleaned up, or rolled back (the tag moved back, no wave left)."""
    phases = record.get("phases") or {}
    if "cleanup" in phases:
        return True
    return "rollback" in phases and "tag" not in phases and not record.get("waves")


def in_progress(record):
    """Something beyond precheck was done for the recorded target and the upgrade is not over."""
    if not record.get("to_revision") or finished(record):
        return False
    phases = set(record.get("phases") or {}) - {"precheck"}
    return bool(phases or record.get("waves"))


def progress_text(record):
    """``install, tag, wave1 done`` for messages."""
    done = [p for p in ("precheck", "install", "tag", "gateways") if p in (record.get("phases") or {})]
    done += sorted(record.get("waves") or {})
    done += sorted(p for p in (record.get("phases") or {}) if p not in done)
    return "%s done" % ", ".join(done) if done else "nothing done yet"


def abandoned_entry(record, now=None):
    """What is kept of an abandoned record: its own ConfigMap data (without older abandoned ones)."""
    own = dict(record)
    own["abandoned"] = []
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
          abandon=False):
    """Return a new record with the requested updates applied.

    * ``fields``: tag/from/to values; a different ``to_revision`` than the recorded one starts a
      new upgrade (phases and waves of the previous one are dropped).  While the recorded upgrade is
      in progress that is refused unless ``abandon`` is true; the abandoned record is then kept under
      ``abandoned``.  A record whose old and new revision are the same is refused.
    * ``phase``: marks a phase done; the first completion time is kept, so a re-run changes nothing.
    * ``wave``: ``{name, namespaces, workloads, status: started|done}``; lists are merged.
    * ``forget_phases`` / ``forget_waves``: what a rollback undoes.
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
    if phase:
        check_name("phase", phase)
        new["phases"].setdefault(phase, now)
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
    return out


@contextlib.contextmanager
def about_record(name, namespace):
    """Errors name the record's ConfigMap; refused input says that nothing was written."""
    try:
        yield
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
        if current is not None and data == before_data:
            return None
        metadata = {"name": name, "namespace": namespace, "labels": dict(MANAGED_LABELS)}
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    with about_record(name, namespace):
        update = client.update_with_retry("ConfigMap", name, change, namespace, check_mode=check_mode)
    exists = not absent and (update.before is not None or not check_mode)
    return update, public(after["record"], exists, name, namespace)
