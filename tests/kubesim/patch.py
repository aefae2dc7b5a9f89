"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and enough of Kubernetes'
strategic merge patch for the built-in types (test harness).

Strategic merge: maps merge recursively; ``null`` deletes a key; lists whose elements carry a
merge key (containers/env/volumes/ports/... by ``name``, ``mountPath``, ``containerPort``...)
are merged element by element; other lists are replaced; ``$patch: delete`` / ``replace`` /
``merge`` directives on maps and list elements, ``$setElementOrder/<field>``,
``$deleteFromPrimitiveList/<field>`` and ``$retainKeys`` are honoured.
"""

from __future__ import annotations

import copy
import json

from .errors import ApiError

# field name -> merge key (for lists of maps); path-independent is good enough for the built-ins.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
    "volumeDevices": "devicePath", "conditions": "type", "ownerReferences": "uid",
    "hostAliases": "ip", "webhooks": "name", "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name", "podIPs": "ip", "addresses": "ip", "taints": "key",
    "containerStatuses": "name", "initContainerStatuses": "name", "ephemeralContainerStatuses": "name",
}
# primitive lists with patchStrategy=merge
MERGE_PRIMITIVE_LISTS = {"finalizers"}


def merge_patch(target, patch):
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ---- RFC 6902 -------------------------------------------------------------------------

def _ptr(path: str) -> list:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _jp_fail(f'JSON pointer must be empty or start with a "/": {path!r}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc, parts):
    cur = doc
    for p in parts:
        if isinstance(cur, dict):
            if p not in cur:
                raise KeyError(p)
            cur = cur[p]
        elif isinstance(cur, list):
            i = int(p)
            if i < 0 or i >= len(cur):
                raise IndexError(p)
            cur = cur[i]
        else:
            raise KeyError(p)
    return cur


def _jp_fail(detail: str) -> ApiError:
    return ApiError(422, "Invalid", "the server rejected our request due to an error in our request",
                    {"causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "patch"}]})


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise ApiError.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        kind = op.get("op")
        path = op.get("path", "")
        try:
            parts = _ptr(path)
            if kind in ("add", "replace", "test"):
                if "value" not in op:
                    raise _jp_fail(f'{kind} operation has no "value"')
            if kind == "test":
                if _resolve(doc, parts) != op["value"]:
                    raise _jp_fail(f"testing value {path} failed: test failed")
                continue
            if kind == "copy" or kind == "move":
                src = _ptr(op.get("from", ""))
                val = copy.deepcopy(_resolve(doc, src))
                if kind == "move":
                    doc = _remove(doc, src)
                doc = _add(doc, parts, val)
                continue
            if kind == "add":
                doc = _add(doc, parts, copy.deepcopy(op["value"]))
            elif kind == "remove":
                doc = _remove(doc, parts)
            elif kind == "replace":
                _resolve(doc, parts)
                doc = _remove(doc, parts)
                doc = _add(doc, parts, copy.deepcopy(op["value"]))
            else:
                raise _jp_fail(f"Unexpected kind: {kind}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise _jp_fail(f"jsonpatch {kind} operation does not apply: doc is missing path: {path!r}")
    return doc


def _add(doc, parts, val):
    if not parts:
        return val
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = val
    elif isinstance(parent, list):
        if last == "-":
            parent.append(val)
        else:
            i = int(last)
            if i < 0 or i > len(parent):
                raise IndexError(last)
            parent.insert(i, val)
    else:
        raise KeyError(last)
    return doc


def _remove(doc, parts):
    if not parts:
        return None
    parent = _resolve(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent, list):
        i = int(last)
        if i < 0 or i >= len(parent):
            raise IndexError(last)
        del parent[i]
    else:
        raise KeyError(last)
    return doc


# ---- strategic merge ------------------------------------------------------------------

def _merge_key_for(field: str, patch_items: list, orig_items: list):
    if field in MERGE_KEYS:
        return MERGE_KEYS[field]
    if field == "ports":
        sample = [x for x in (patch_items or []) + (orig_items or []) if isinstance(x, dict)]
        if any("containerPort" in x for x in sample):
            return "containerPort"
        if any("port" in x for x in sample):
            return "port"
    return None


def strategic_merge(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out = dict(target)
    retain = patch.get("$retainKeys")
    orders = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(out.get(field), list):
                out[field] = [x for x in out[field] if x not in (v or [])]
            continue
        if v is None:
            out.pop(k, None)
            continue
        cur = out.get(k)
        if isinstance(v, dict):
            merged = strategic_merge(cur if isinstance(cur, dict) else {}, v)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        elif isinstance(v, list):
            out[k] = _merge_list(k, cur if isinstance(cur, list) else [], v)
        else:
            out[k] = v
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    for field, order in orders.items():
        if isinstance(out.get(field), list):
            out[field] = _apply_order(field, out[field], order)
    return out


def _merge_list(field, orig: list, patch: list):
    if field in MERGE_PRIMITIVE_LISTS and all(not isinstance(x, (dict, list)) for x in patch):
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = _merge_key_for(field, patch, orig)
    # explicit replace of the whole list
    for item in patch:
        if isinstance(item, dict) and item.get("$patch") == "replace" and len(item) == 1:
            return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and x.get("$patch"))]
    if key is None or not all(isinstance(x, dict) for x in patch):
        return [copy.deepcopy(x) for x in patch]
    out = [copy.deepcopy(x) for x in orig]
    for item in patch:
        if not isinstance(item, dict):
            continue
        if key not in item:
            if item.get("$patch") == "delete":
                continue
            raise ApiError.bad_request(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge({}, item))
        else:
            out[idx] = strategic_merge(out[idx], item)
    return out


def _apply_order(field, items: list, order: list):
    key = _merge_key_for(field, order if all(isinstance(x, dict) for x in order) else [], items)
    if not order:
        return items

    def ident(x):
        if key and isinstance(x, dict):
            return json.dumps(x.get(key), sort_keys=True)
        return json.dumps(x, sort_keys=True)

    pos = {ident(x): i for i, x in enumerate(order)}
    listed = [x for x in items if ident(x) in pos]
    rest = [x for x in items if ident(x) not in pos]
    listed.sort(key=lambda x: pos[ident(x)])
    return listed + rest


PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}


def apply_patch(doc: dict, patch, kind: str, custom: bool = False):
    """Apply a patch of ``kind`` (merge/strategic/json/apply) to ``doc`` and return the result."""
    if kind == "merge":
        if not isinstance(patch, dict):
            raise ApiError.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        return merge_patch(doc, patch)
    if kind == "json":
        return json_patch(doc, patch)
    if kind in ("strategic", "apply"):
        if not isinstance(patch, dict):
            raise ApiError.bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
        if custom and kind == "strategic":
            raise ApiError.unsupported_media_type("application/strategic-merge-patch+json", [
                "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"])
        if custom:
            return merge_patch(doc, patch)
        return strategic_merge(doc, patch)
    raise ApiError.unsupported_media_type(kind, list(PATCH_TYPES))
