# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the istio_canary role uses to turn module results into decisions and summaries.

They are pure functions over the results of ``istio_revision_info``, ``istio_upgrade_state`` and
``rollout_restart``, so the role's YAML stays declarative and the logic is unit tested.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible.errors import AnsibleFilterError

LEGACY_LABEL = "istio-injection"
REV_LABEL = "istio.io/rev"
VERSION_RE = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- shapes of istio_revision_info's result, tolerated in list or dict form -----------------------

def _named(items, key="name"):
    """A list of dicts with ``key`` or a dict keyed by name -> dict name -> item (with the name)."""
    if isinstance(items, dict):
        out = {}
        for name, value in items.items():
            entry = dict(value) if isinstance(value, dict) else {"value": value}
            entry.setdefault(key, name)
            out[name] = entry
        return out
    out = {}
    for item in items or []:
        if isinstance(item, dict) and item.get(key) is not None:
            out[item[key]] = item
    return out


def revisions_of(info):
    """name -> {name, version, ready, in_use, ...}."""
    return _named((info or {}).get("revisions"))


def tags_of(info):
    """tag -> revision."""
    tags = (info or {}).get("tags") or {}
    if isinstance(tags, dict):
        out = {}
        for tag, value in tags.items():
            out[tag] = value.get("revision") if isinstance(value, dict) else value
        return out
    out = {}
    for item in tags:
        if isinstance(item, dict):
            out[item.get("tag") or item.get("name")] = item.get("revision")
    return out


def namespaces_of(info):
    return _named((info or {}).get("namespaces"))


def workloads_of(info):
    return [w for w in (info or {}).get("workloads") or [] if isinstance(w, dict)]


def workload_id(workload):
    """``namespace/Kind/name``."""
    if not isinstance(workload, dict):
        raise AnsibleFilterError("workload_id expects a workload dict, got %r" % (workload,))
    return "%s/%s/%s" % (workload.get("namespace"), workload.get("kind") or "Deployment", workload.get("name"))


def workload_ids(workloads):
    return sorted(set(workload_id(w) for w in workloads or []))


def _proxy_revisions(workload):
    """Every revision that injected one of the workload's pods."""
    revs = set(workload.get("revisions") or [])
    if not revs and workload.get("revision"):
        revs.update(str(workload["revision"]).split(","))
    return sorted(revs)


def _proxy_versions(workload):
    versions = set(workload.get("versions") or [])
    if not versions and workload.get("version"):
        versions.update(str(workload["version"]).split(","))
    return sorted(versions)


def _proxy_revision(workload):
    return ",".join(_proxy_revisions(workload))


def _proxy_version(workload):
    return ",".join(_proxy_versions(workload))


def _ready(workload):
    if "ready" in workload:
        return bool(workload["ready"])
    replicas = workload.get("replicas")
    ready = workload.get("ready_replicas")
    if replicas is not None and ready is not None:
        return ready >= replicas
    return True


# --- filters ----------------------------------------------------------------------------------------

def minor_skew(from_version, to_version):
    """Number of minor versions between two Istio versions (negative for a downgrade).

    Raises when they are not versions or differ in their major version."""
    parsed = []
    for what, version in (("from", from_version), ("to", to_version)):
        match = VERSION_RE.match(str(version or ""))
        if not match:
            raise AnsibleFilterError("%s version %r is not an Istio version like 1.15.4" % (what, version))
        parsed.append((int(match.group(1)), int(match.group(2))))
    if parsed[0][0] != parsed[1][0]:
        raise AnsibleFilterError("cannot upgrade across major versions (%s -> %s)" % (from_version, to_version))
    return parsed[1][1] - parsed[0][1]


def canary_plan(info, record, to_revision, from_revision="", tag="default"):
    """What this run knows about the upgrade: revisions, where the tag points, the old revision.

    The old revision comes from, in order: the ``from_revision`` variable, the upgrade record (when it
    is about the same target), the tag (when it does not point at the target yet), or any other
    installed revision when exactly one exists beside the target."""
    revisions = revisions_of(info)
    tags = tags_of(info)
    record = record or {}
    tag_revision = tags.get(tag) or ""
    same_upgrade = record.get("to_revision") in (None, "", to_revision)
    source = ""
    chosen = ""
    if from_revision:
        chosen, source = from_revision, "variable"
    elif same_upgrade and record.get("from_revision"):
        chosen, source = record["from_revision"], "record"
    elif tag_revision and tag_revision != to_revision:
        chosen, source = tag_revision, "tag"
    else:
        others = sorted(name for name in revisions if name != to_revision)
        if len(others) == 1:
            chosen, source = others[0], "installed revisions"
    from_version = ""
    if chosen in revisions:
        from_version = revisions[chosen].get("version") or ""
    if not from_version and same_upgrade and record.get("from_revision") == chosen:
        from_version = record.get("from_version") or ""
    target = revisions.get(to_revision) or {}
    return {
        "tag": tag,
        "tag_revision": tag_revision,
        "tags": tags,
        "revisions": revisions,
        "from_revision": chosen,
        "from_source": source,
        "from_version": from_version,
        "from_installed": chosen in revisions,
        "from_ready": bool((revisions.get(chosen) or {}).get("ready")),
        "to_revision": to_revision,
        "to_installed": to_revision in revisions,
        "to_ready": bool(target.get("ready")),
        "to_installed_version": target.get("version") or "",
        "tag_on_target": bool(tag_revision) and tag_revision == to_revision,
        "record": record,
        "phases_done": sorted((record.get("phases") or {}).keys()),
    }


def label_findings(info, tag="default", from_revision="", to_revision=""):
    """Namespaces whose injection labels need attention before an upgrade.

    Each finding: ``namespace``, ``labels`` (the two injection labels), ``issue`` and ``message``,
    and ``migrate`` (true when relabelling to ``istio.io/rev=<tag>`` is the fix):

    * ``legacy``: ``istio-injection=enabled`` without ``istio.io/rev``;
    * ``conflict``: ``istio-injection=enabled`` beside ``istio.io/rev`` (the legacy label wins);
    * ``disabled-conflict``: ``istio-injection=disabled`` beside ``istio.io/rev`` (nothing is injected);
    * ``pinned``: ``istio.io/rev`` names the old revision itself, so moving the tag does not move it;
    * ``unknown``: ``istio.io/rev`` names neither a revision nor a tag.
    """
    revisions = revisions_of(info)
    tags = tags_of(info)
    findings = []
    for name, ns in sorted(namespaces_of(info).items()):
        labels = ns.get("labels") or {}
        legacy = labels.get(LEGACY_LABEL)
        rev = labels.get(REV_LABEL)
        shown = dict((k, labels[k]) for k in (LEGACY_LABEL, REV_LABEL) if k in labels)
        finding = None
        if legacy == "enabled" and rev is None:
            finding = ("legacy", True, "uses the legacy label istio-injection=enabled; migrate it to istio.io/rev=%s" % tag)
        elif legacy == "enabled":
            finding = (
                "conflict",
                True,
                "has istio-injection=enabled beside istio.io/rev=%s; the legacy label wins, so istio.io/rev is ignored" % rev,
            )
        elif legacy is not None and rev is not None:
            finding = (
                "disabled-conflict",
                False,
                "has istio-injection=%s beside istio.io/rev=%s; no sidecar is injected there" % (legacy, rev),
            )
        elif rev is not None and from_revision and rev == from_revision and rev not in tags:
            finding = (
                "pinned",
                False,
                "is pinned to revision %s itself (istio.io/rev=%s), so moving tag %s does not move it; label it istio.io/rev=%s"
                % (rev, rev, tag, tag),
            )
        elif rev is not None and rev not in revisions and rev not in tags and rev != to_revision:
            finding = ("unknown", False, "has istio.io/rev=%s, which is neither an installed revision nor a tag" % rev)
        if finding:
            issue, migrate, message = finding
            findings.append(
                {"namespace": name, "labels": shown, "issue": issue, "migrate": migrate, "message": "namespace %s %s" % (name, message)}
            )
    return findings


def rollout_summary(results):
    """Compact summary of one or more rollout_restart results (a loop's ``results`` or one result).

    Returns ``moved`` (``namespace/Kind/name: from -> to``), ``current`` count, ``failed`` (with
    reasons), ``skipped`` and every workload id seen (``workloads``) with its namespaces."""
    flat = []

    def expand(item):
        if isinstance(item, dict) and isinstance(item.get("results"), list):
            for sub in item["results"]:
                expand(sub)
        elif isinstance(item, dict):
            flat.append(item)
        elif isinstance(item, (list, tuple)):
            for sub in item:
                expand(sub)

    expand(results)
    results = flat
    moved, failed, skipped, seen, namespaces = [], [], [], set(), set()
    current = 0
    for result in results or []:
        if not isinstance(result, dict):
            continue
        for workload in result.get("workloads") or []:
            wid = workload_id(workload)
            seen.add(wid)
            namespaces.add(workload.get("namespace"))
            action = workload.get("action")
            if action == "restarted":
                moved.append("%s: %s -> %s" % (wid, workload.get("from_version") or "?", workload.get("to_version") or "?"))
            elif action == "current":
                current += 1
            elif action == "failed":
                failed.append("%s: %s" % (wid, workload.get("reason") or "failed"))
            elif action == "skipped":
                skipped.append("%s: %s" % (wid, workload.get("reason") or "skipped"))
        if result.get("failed") and not result.get("workloads"):
            failed.append(result.get("msg") or "rollout_restart failed")
    return {
        "moved": sorted(moved),
        "current": current,
        "failed": sorted(failed),
        "skipped": sorted(skipped),
        "workloads": sorted(seen),
        "namespaces": sorted(n for n in namespaces if n),
    }


def off_revision(info, revision, version="", namespaces=None, ids=None):
    """Workloads of ``namespaces`` (all their workloads) and ``ids`` (``namespace/Kind/name``) that are
    not ready or whose proxies are not all on ``revision`` (and ``version`` when given), each as
    ``namespace/Kind/name: <why>``.  Listed ids that no longer exist are ignored, and so are workloads
    that nothing selects for injection and that have no sidecar."""
    namespaces = set(namespaces or [])
    ids = set(ids or [])
    problems = []
    for workload in workloads_of(info):
        wid = workload_id(workload)
        if workload.get("namespace") not in namespaces and wid not in ids:
            continue
        if "expected_revision" in workload and workload["expected_revision"] is None and not _proxy_revisions(workload):
            continue  # nothing selects it for injection (e.g. sidecar.istio.io/inject=false): not part of the mesh
        have_revs, have_versions = _proxy_revisions(workload), _proxy_versions(workload)
        why = []
        if have_revs != [revision] and not (not have_revs and workload.get("replicas") == 0):
            why.append("proxy revision %s, expected %s" % (",".join(have_revs) or "none (no injected pod)", revision))
        elif version and have_versions and have_versions != [version]:
            why.append("proxy version %s, expected %s" % (",".join(have_versions), version))
        if workload.get("needs_restart") and not why:
            why.append("pods not all on the expected revision yet")
        if not _ready(workload):
            why.append("not ready")
        if why:
            problems.append("%s: %s" % (wid, "; ".join(why)))
    return sorted(problems)


def on_revision(info, revision):
    """Workloads whose proxies (some or all) still come from ``revision``, as ``namespace/Kind/name (version)``."""
    found = []
    for workload in workloads_of(info):
        if revision in _proxy_revisions(workload):
            found.append("%s (%s)" % (workload_id(workload), _proxy_version(workload) or "?"))
    return sorted(found)


def stale_namespaces(info):
    """Namespaces that hold a workload not on the revision its namespace selects."""
    found = set()
    for workload in (info or {}).get("stale") or []:
        if isinstance(workload, dict) and workload.get("namespace"):
            found.add(workload["namespace"])
    for workload in workloads_of(info):
        if workload.get("needs_restart") and workload.get("namespace"):
            found.add(workload["namespace"])
    return sorted(found)


def wave_calls(wave, selected=None):
    """The rollout_restart calls of a wave: ``[{namespaces, namespace_selector, names}]``.

    ``namespaces`` and ``namespace_selector`` waves are one call; a ``query`` wave is one call per
    namespace of the workloads its query selected (``selected``: what istio_revision_info returned for
    the query), restricted to their names."""
    if not isinstance(wave, dict):
        raise AnsibleFilterError("a wave must be a dict, got %r" % (wave,))
    chosen = [key for key in ("namespaces", "namespace_selector", "query") if wave.get(key)]
    if len(chosen) != 1:
        raise AnsibleFilterError(
            "wave %s must have exactly one of namespaces, namespace_selector or query (has: %s)"
            % (wave.get("name"), ", ".join(chosen) or "none")
        )
    if chosen[0] == "namespaces":
        names = wave["namespaces"]
        if isinstance(names, str):
            names = [names]
        return [{"namespaces": sorted(set(names)), "namespace_selector": None, "names": None}]
    if chosen[0] == "namespace_selector":
        return [{"namespaces": None, "namespace_selector": wave["namespace_selector"], "names": None}]
    if selected is None:
        selected = []
    if not isinstance(selected, list) or not all(isinstance(w, dict) and w.get("namespace") and w.get("name") for w in selected):
        raise AnsibleFilterError(
            "wave %s: query %r must select workloads (a list of objects with namespace and name), got %r"
            % (wave.get("name"), wave["query"], selected if not isinstance(selected, list) else selected[:3])
        )
    by_ns = {}
    for workload in selected:
        by_ns.setdefault(workload["namespace"], set()).add(workload["name"])
    return [{"namespaces": [ns], "namespace_selector": None, "names": sorted(names)} for ns, names in sorted(by_ns.items())]


def verify_scope(record, waves=None, gateways=None):
    """What the verify phase checks: ``{namespaces, ids}`` from the upgrade record.

    Every workload recorded by a started wave is checked; for waves chosen by ``namespaces`` or
    ``namespace_selector`` every workload of their namespaces too (a workload created since).  The
    gateways count once the gateways phase is recorded."""
    record = record or {}
    definitions = dict((w.get("name"), w) for w in waves or [] if isinstance(w, dict))
    namespaces, ids = set(), set()
    for name, wave in (record.get("waves") or {}).items():
        ids.update(wave.get("workloads") or [])
        if not (definitions.get(name) or {}).get("query"):
            namespaces.update(wave.get("namespaces") or [])
    if "gateways" in (record.get("phases") or {}):
        for gateway in gateways or []:
            ids.add("%s/%s/%s" % (gateway.get("namespace"), gateway.get("kind") or "Deployment", gateway.get("name")))
    return {"namespaces": sorted(namespaces), "ids": sorted(ids)}


def gate_scope(record, waves=None, gateways=None):
    """What the metric gate checks: ``{namespaces, workloads, baseline_at}``.

    ``namespaces``: every namespace of a started wave except gateway-only ones (gateways report as
    ``source``, so they have no destination metrics); ``workloads``: for namespaces moved by a ``query``
    wave, ``{namespace: [names]}`` of the workloads it moved (None when there is none); ``baseline_at``:
    when the first wave started (for a before/after comparison)."""
    record = record or {}
    definitions = dict((w.get("name"), w) for w in waves or [] if isinstance(w, dict))
    gateway_namespaces = set(g.get("namespace") for g in gateways or [] if isinstance(g, dict))
    namespaces, started, by_query = set(), [], {}
    for name, wave in (record.get("waves") or {}).items():
        namespaces.update(wave.get("namespaces") or [])
        if wave.get("started"):
            started.append(wave["started"])
        if (definitions.get(name) or {}).get("query"):
            for wid in wave.get("workloads") or []:
                parts = wid.split("/")
                if len(parts) == 3:
                    by_query.setdefault(parts[0], set()).add(parts[2])
    app_namespaces = sorted(namespaces - gateway_namespaces) or sorted(namespaces)
    workloads = dict((ns, sorted(names)) for ns, names in by_query.items() if ns in app_namespaces) or None
    return {"namespaces": app_namespaces, "workloads": workloads, "baseline_at": min(started) if started else ""}


def wave_problems(waves):
    """Everything wrong with ``istio_canary_waves`` as a list of messages (empty when fine)."""
    problems = []
    if not isinstance(waves, list):
        return ["istio_canary_waves must be a list of waves, got %s" % type(waves).__name__]
    seen = set()
    for index, wave in enumerate(waves, 1):
        if not isinstance(wave, dict):
            problems.append("wave %d must be a dict with name and namespaces, namespace_selector or query" % index)
            continue
        name = wave.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9][-_A-Za-z0-9]{0,62}$", name):
            problems.append("wave %d: name %r must be letters, digits, '-' or '_'" % (index, name))
        elif name in seen:
            problems.append("wave %d: name %s is used twice" % (index, name))
        seen.add(name)
        chosen = [key for key in ("namespaces", "namespace_selector", "query") if wave.get(key)]
        if len(chosen) != 1:
            problems.append(
                "wave %s: needs exactly one of namespaces, namespace_selector or query (has: %s)" % (name or index, ", ".join(chosen) or "none")
            )
        namespaces = wave.get("namespaces")
        if namespaces and (not isinstance(namespaces, list) or not all(isinstance(n, str) and n for n in namespaces)):
            problems.append("wave %s: namespaces must be a list of namespace names" % (name or index))
        if len(waves) > 9 and index == 10:
            problems.append("at most 9 waves are supported (tags wave1 .. wave9); merge some waves")
    return problems


def revision_suggestion(name):
    return re.sub(r"[^a-z0-9-]+", "-", str(name).lower()).strip("-")[:63].strip("-")


class FilterModule(object):
    def filters(self):
        return {
            "minor_skew": minor_skew,
            "canary_plan": canary_plan,
            "label_findings": label_findings,
            "rollout_summary": rollout_summary,
            "off_revision": off_revision,
            "on_revision": on_revision,
            "stale_namespaces": stale_namespaces,
            "wave_calls": wave_calls,
            "workload_id": workload_id,
            "workload_ids": workload_ids,
            "revision_suggestion": revision_suggestion,
            "verify_scope": verify_scope,
            "wave_problems": wave_problems,
            "gate_scope": gate_scope,
        }
