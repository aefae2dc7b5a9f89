"""Label and field selectors, as the real API server understands them (test harness).

* :func:`parse_label_selector` parses the query-string form (``a=b,c!=d,e in (x,y),!f``)
  and returns a predicate over a labels dict.
* :func:`match_label_selector` evaluates a ``metav1.LabelSelector`` dict (``matchLabels`` /
  ``matchExpressions``), the form used inside objects (webhooks, Deployments...).
* :func:`parse_field_selector` parses ``metadata.name=x,status.phase!=Running``.
"""

from __future__ import annotations

import re

from .errors import ApiError

_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                     r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _bad(msg: str) -> ApiError:
    return ApiError.bad_request(msg)


def _split_top(s: str) -> list:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


class Requirement:
    __slots__ = ("key", "op", "values")

    def __init__(self, key, op, values=()):
        self.key, self.op, self.values = key, op, tuple(values)

    def matches(self, labels: dict) -> bool:
        k, op = self.key, self.op
        if op == "exists":
            return k in labels
        if op == "!":
            return k not in labels
        if op in ("=", "=="):
            return k in labels and labels[k] == self.values[0]
        if op == "!=":
            return labels.get(k) != self.values[0]
        if op == "in":
            return k in labels and labels[k] in self.values
        if op == "notin":
            return labels.get(k) not in self.values if k in labels else True
        if op in (">", "<"):
            if k not in labels:
                return False
            try:
                v, ref = int(labels[k]), int(self.values[0])
            except ValueError:
                return False
            return v > ref if op == ">" else v < ref
        return False

    def __repr__(self):
        return f"Requirement({self.key!r}, {self.op!r}, {self.values!r})"


_SET_RE = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)$")
_OP_RE = re.compile(r"^(?P<key>[^=!<>\s]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<val>\S*)$")


class LabelSelector:
    """A parsed label selector; ``LabelSelector.parse('')`` matches everything."""

    def __init__(self, reqs):
        self.requirements = list(reqs)

    @classmethod
    def parse(cls, text: str | None) -> "LabelSelector":
        if not text:
            return cls([])
        reqs = []
        for part in _split_top(text):
            m = _SET_RE.match(part)
            if m:
                vals = [v.strip() for v in m.group("vals").split(",") if v.strip()]
                _check_key(m.group("key"), text)
                reqs.append(Requirement(m.group("key"), m.group("op"), vals))
                continue
            if part.startswith("!"):
                key = part[1:].strip()
                _check_key(key, text)
                reqs.append(Requirement(key, "!"))
                continue
            m = _OP_RE.match(part)
            if m:
                _check_key(m.group("key"), text)
                reqs.append(Requirement(m.group("key"), m.group("op"), [m.group("val")]))
                continue
            if re.match(r"^\S+$", part):
                _check_key(part, text)
                reqs.append(Requirement(part, "exists"))
                continue
            raise _bad(f"unable to parse requirement: found '{part}', expected: in, notin, =, ==, !=, gt, lt")
        return cls(reqs)

    def empty(self) -> bool:
        return not self.requirements

    def matches(self, labels: dict | None) -> bool:
        labels = labels or {}
        for r in self.requirements:
            if not r.matches(labels):
                return False
        return True

    def equality_terms(self) -> dict:
        """key -> value for the ``=``/``==``/single-value ``in`` requirements (for indexing)."""
        out = {}
        for r in self.requirements:
            if r.op in ("=", "==") or (r.op == "in" and len(r.values) == 1):
                out[r.key] = r.values[0]
        return out


def _check_key(key: str, text: str):
    if not _KEY_RE.match(key) or len(key.split("/")[-1]) > 63:
        raise _bad(f"unable to parse requirement: invalid label key \"{key}\": name part must consist of "
                   "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")


def parse_label_selector(text: str | None) -> LabelSelector:
    return LabelSelector.parse(text)


def match_label_selector(selector: dict | None, labels: dict | None) -> bool:
    """Evaluate a metav1.LabelSelector dict.  ``None`` matches nothing, ``{}`` matches everything
    (the API's convention for most selector fields)."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            if key not in labels or labels[key] not in values:
                return False
        elif op == "NotIn":
            if key in labels and labels[key] in values:
                return False
        elif op == "Exists":
            if key not in labels:
                return False
        elif op == "DoesNotExist":
            if key in labels:
                return False
        else:
            return False
    return True


def selector_to_string(selector: dict | None) -> str:
    """Render a metav1.LabelSelector dict the way kubectl/the API print it."""
    if not selector:
        return ""
    parts = []
    for k, v in sorted((selector.get("matchLabels") or {}).items()):
        parts.append(f"{k}={v}")
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# ---- field selectors ------------------------------------------------------------------

COMMON_FIELDS = {"metadata.name", "metadata.namespace"}
TYPE_FIELDS = {
    "pods": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"},
    "secrets": {"type"},
    "namespaces": {"status.phase"},
    "nodes": {"spec.unschedulable"},
    "replicasets.apps": {"status.replicas"},
    "jobs.batch": {"status.successful"},
}


def _field_value(obj: dict, path: str) -> str:
    if path == "source" and "source" in obj:
        return (obj.get("source") or {}).get("component", "")
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        # booleans default to false, strings to ""
        if path in ("spec.hostNetwork", "spec.unschedulable"):
            return "false"
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, list):
        return cur[0].get("ip", "") if cur and isinstance(cur[0], dict) else ""
    return str(cur)


class FieldSelector:
    def __init__(self, terms):
        self.terms = list(terms)  # (field, op, value)

    @classmethod
    def parse(cls, text: str | None, rtype_key: str = "") -> "FieldSelector":
        if not text:
            return cls([])
        terms = []
        allowed = COMMON_FIELDS | TYPE_FIELDS.get(rtype_key, set())
        for part in _split_top(text):
            m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", part)
            if not m:
                raise _bad(f"invalid selector: '{text}'; can't understand '{part}'")
            field, op, val = m.group(1).strip(), m.group(2), m.group(3).strip()
            if field not in allowed:
                raise _bad(f"field label not supported: {field}")
            terms.append((field, "!=" if op == "!=" else "=", val))
        return cls(terms)

    def empty(self) -> bool:
        return not self.terms

    def name_equals(self):
        for f, op, v in self.terms:
            if f == "metadata.name" and op == "=":
                return v
        return None

    def namespace_equals(self):
        for f, op, v in self.terms:
            if f == "metadata.namespace" and op == "=":
                return v
        return None

    def matches(self, obj: dict) -> bool:
        meta = obj.get("metadata") or {}
        for field, op, val in self.terms:
            if field == "metadata.name":
                actual = meta.get("name", "")
            elif field == "metadata.namespace":
                actual = meta.get("namespace", "")
            else:
                actual = _field_value(obj, field)
            if (actual == val) != (op == "="):
                return False
        return True


def parse_field_selector(text: str | None, rtype_key: str = "") -> FieldSelector:
    return FieldSelector.parse(text, rtype_key)
