"""OpenAPI documents of the simulated API server, served the way clients fetch them (test harness).

What the real clients ask for (read in their sources):
* ``GET /openapi/v2`` with ``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf``
  (client-go ``discovery.DiscoveryClient.OpenAPISchema``): a gnostic ``openapi_v2.Document``
  (google/gnostic-models ``openapiv2/OpenAPIv2.proto``).  kubectl's and Helm's client-side schema
  validation (k8s.io/kubectl ``pkg/validation/schema.go``) and kubectl apply's strategic-merge patch
  (``pkg/cmd/apply/patcher.go``) read it; a server answering 406 there makes every validating
  ``helm install`` fail with "error validating data: the server was unable to respond with a content
  type that the client supports".
* ``GET /openapi/v3`` (an index of ``serverRelativeURL`` per group-version) and then each
  group-version document as JSON (client-go ``openapi``/``openapi3``).  cli-runtime's
  ``queryParamVerifierV3`` looks there for a PATCH operation of the object's GVK that lists the
  ``fieldValidation`` parameter (then validation is left to the server); kubectl apply checks that
  the PATCH operation's ``requestBody`` accepts ``application/strategic-merge-patch+json``.

The schemas of built-in kinds are derived from the protobuf descriptors that kubectl embeds
(``kubesim.protobuf``) -- the same Go types the API server's schemas come from -- with the
``x-kubernetes-patch-strategy``/``-merge-key`` extensions read from the Go struct tags kubectl embeds
(``patchStrategy:"merge" patchMergeKey:"name"``), so a strategic-merge patch computed from them merges
lists by the same keys as the real server's schema.  Custom resources get an open object schema
(``x-kubernetes-preserve-unknown-fields``).  Without a kubectl binary every kind gets an open schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading

from . import protobuf

V2_PROTO = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
V2_PROTO_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
V3_PROTO = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
PATCH_TYPES_BUILTIN = ["application/apply-patch+yaml", "application/json-patch+json",
                       "application/merge-patch+json", "application/strategic-merge-patch+json"]
PATCH_TYPES_CUSTOM = ["application/apply-patch+yaml", "application/json-patch+json",
                      "application/merge-patch+json"]
QUERY_PARAMS = ["dryRun", "fieldManager", "fieldValidation", "pretty"]

# Go types with a custom JSON form: their OpenAPI definitions as k8s.io/apimachinery declares them.
SPECIAL = {
    "io.k8s.apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime": {"type": "string", "format": "date-time"},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
    "io.k8s.apimachinery.pkg.runtime.RawExtension": {"type": "object"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": {"type": "object"},
    "io.k8s.apimachinery.pkg.apis.meta.v1.Duration": {"type": "string"},
}
# Struct-tag keys (proto name, number) used by several Go fields with different patch strategies:
# the strategy is known here per message instead (k8s.io/api core/v1 types.go).
AMBIGUOUS_OVERRIDES = {("ServiceSpec", "ports"): ("merge", "port")}

_lock = threading.Lock()
_builtin_cache: dict = {}
_tags = None


# ---- definitions ---------------------------------------------------------------------------

def _def_name(proto_name: str) -> str:
    """``.k8s.io.api.apps.v1.Deployment`` -> ``io.k8s.api.apps.v1.Deployment`` (kube-openapi's names)."""
    name = proto_name.lstrip(".")
    if name.startswith("k8s.io."):
        name = "io.k8s." + name[len("k8s.io."):]
    return name.replace("apiextensions_apiserver", "apiextensions-apiserver")


def _struct_tags() -> dict:
    """(proto field name, number) -> (patchStrategy, patchMergeKey) from the Go struct tags in the kubectl
    binary; keys whose tags disagree map to None (resolved by AMBIGUOUS_OVERRIDES or left atomic)."""
    global _tags
    if _tags is not None:
        return _tags
    out: dict = {}
    path = protobuf._find_binary()
    if path:
        with open(path, "rb") as f:
            data = f.read()
        seen: dict = {}
        for tag in set(re.findall(rb'json:"[A-Za-z0-9_]*(?:,[a-z]+)*"(?: [a-zA-Z]+:"[^"]*")*', data)):
            p = re.search(rb'protobuf:"[a-z0-9]+,(\d+),(?:rep|opt|req)(?:,[a-z]+)*,name=([A-Za-z0-9_]+)', tag)
            if not p:
                continue
            ps = re.search(rb'patchStrategy:"([^"]*)"', tag)
            mk = re.search(rb'patchMergeKey:"([^"]*)"', tag)
            key = (p.group(2).decode(), int(p.group(1)))
            seen.setdefault(key, set()).add((ps.group(1).decode() if ps else None,
                                             mk.group(1).decode() if mk else None))
        for key, vals in seen.items():
            if len(vals) == 1:
                val = next(iter(vals))
                if val[0]:
                    out[key] = val
            elif any(v[0] for v in vals):
                out[key] = None
    _tags = out
    return out


def _scalar_schema(ftype: int) -> dict:
    if ftype == 9:
        return {"type": "string"}
    if ftype == 12:
        return {"type": "string", "format": "byte"}
    if ftype == 8:
        return {"type": "boolean"}
    if ftype in (1, 2):
        return {"type": "number", "format": "double"}
    if ftype in (5, 13, 15, 17, 7):
        return {"type": "integer", "format": "int32"}
    return {"type": "integer", "format": "int64"}


class _Builder:
    """Turns protobuf messages into OpenAPI definitions (refs written ``#/definitions/NAME``)."""

    def __init__(self, sch: dict):
        self.sch = sch
        self.tags = _struct_tags()
        self.defs: dict = {}

    def ref(self, proto_name: str) -> dict:
        name = _def_name(proto_name)
        if name in SPECIAL:
            self.defs.setdefault(name, dict(SPECIAL[name]))
        elif name not in self.defs:
            self.defs[name] = {}  # placeholder against recursion (JSONSchemaProps refers to itself)
            self.defs[name] = self.message(proto_name)
        return {"$ref": f"#/definitions/{name}"}

    def field_schema(self, ftype, label, sub):
        if ftype == 11:
            submsg = self.sch.get(sub)
            if submsg is not None and submsg.map_entry:
                kfd, vfd = submsg.fields.get(1), submsg.fields.get(2)
                inner = self.field_schema(vfd[1], 1, vfd[3]) if vfd else {}
                return {"type": "object", "additionalProperties": inner}
            item = self.ref(sub) if submsg is not None or _def_name(sub) in SPECIAL else {}
        else:
            item = _scalar_schema(ftype)
        if label == 3:
            return {"type": "array", "items": item}
        return item

    def properties(self, msg) -> dict:
        props: dict = {}
        short = msg.name.rsplit(".", 1)[-1]
        for number, (fname, ftype, label, sub) in sorted(msg.fields.items()):
            if protobuf._is_inline(msg.name, fname) and sub in self.sch:
                props.update(self.properties(self.sch[sub]))
                continue
            jname = protobuf._json_name(msg.name, fname)
            schema = dict(self.field_schema(ftype, label, sub))
            strategy = AMBIGUOUS_OVERRIDES.get((short, jname)) or self.tags.get((fname, number))
            if strategy:
                schema["x-kubernetes-patch-strategy"] = strategy[0]
                if strategy[1]:
                    schema["x-kubernetes-patch-merge-key"] = strategy[1]
            props[jname] = schema
        return props

    def message(self, proto_name: str) -> dict:
        msg = self.sch[proto_name]
        return {"type": "object", "properties": self.properties(msg)}


def _open_kind(group, version, kind) -> dict:
    return {"type": "object", "description": f"{kind} (kubesim: open schema)",
            "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}},
            "x-kubernetes-preserve-unknown-fields": True}


def _kind_key(rt, version):
    return (rt.group, version, rt.kind, rt.custom)


def definitions(registry) -> tuple:
    """-> ({definition name: schema}, {(group, version, kind): definition name}) for every served kind."""
    kinds = sorted({_kind_key(rt, v) for rt in registry.all() for v in rt.versions})
    key = hashlib.sha256(repr(kinds).encode()).hexdigest()
    with _lock:
        hit = _builtin_cache.get(key)
        if hit is not None:
            return hit
        try:
            sch = protobuf.schema()
        except Exception:  # no readable kubectl: open schemas only
            sch = {}
        b = _Builder(sch)
        names: dict = {}
        meta = ".k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        if meta in sch:
            b.ref(meta)
        else:
            b.defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"] = {"type": "object"}
        for group, version, kind, custom in kinds:
            tname = None if custom else protobuf.message_for(f"{group}/{version}" if group else version, kind)
            if tname is None:
                prefix = ".".join(reversed(group.split("."))) if group else "io.k8s.api.core"
                name = f"{prefix}.{version}.{kind}"
                b.defs[name] = _open_kind(group, version, kind)
            else:
                name = _def_name(tname)
                b.ref(tname)
                d = b.defs[name]
                d["properties"] = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                   **d["properties"]}
                d["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": kind}]
            names[(group, version, kind)] = name
        result = (b.defs, names)
        if len(_builtin_cache) > 16:
            _builtin_cache.clear()
        _builtin_cache[key] = result
        return result


# ---- documents -------------------------------------------------------------------------------

def _params_v2():
    return [{"name": p, "in": "query", "type": "string", "uniqueItems": True} for p in QUERY_PARAMS]


def _item_path(prefix, rt):
    return (f"{prefix}/namespaces/{{namespace}}/{rt.plural}/{{name}}" if rt.namespaced
            else f"{prefix}/{rt.plural}/{{name}}")


def _coll_path(prefix, rt):
    return f"{prefix}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{prefix}/{rt.plural}"


def v2_document(registry, version_string: str) -> dict:
    defs, names = definitions(registry)
    paths: dict = {}
    for rt in registry.all():
        for v in rt.versions:
            gvk = {"group": rt.group, "version": v, "kind": rt.kind}
            prefix = rt.path_prefix(v)
            ref = {"$ref": f"#/definitions/{names[(rt.group, v, rt.kind)]}"}

            def op(verb, action, rt=rt, gvk=gvk, ref=ref):
                o = {"operationId": f"{verb}{rt.kind}", "parameters": _params_v2(),
                     "responses": {"200": {"description": "OK", "schema": ref}},
                     "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
                if verb == "patch":
                    o["consumes"] = PATCH_TYPES_CUSTOM if rt.custom else PATCH_TYPES_BUILTIN
                return o

            paths[_coll_path(prefix, rt)] = {"get": op("list", "list"), "post": op("create", "post")}
            paths[_item_path(prefix, rt)] = {"get": op("read", "get"), "put": op("replace", "put"),
                                             "patch": op("patch", "patch"), "delete": op("delete", "delete")}
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": version_string}, "paths": paths,
            "definitions": defs}


def v3_index(registry, hash_of) -> dict:
    paths = {}
    for g, vs in registry.groups().items():
        for v in vs:
            p = f"api/{v}" if not g else f"apis/{g}/{v}"
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={hash_of(g, v)}"}
    return {"paths": paths}


def _v3_refs(obj):
    if isinstance(obj, dict):
        return {k: (v.replace("#/definitions/", "#/components/schemas/") if k == "$ref" else _v3_refs(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_v3_refs(x) for x in obj]
    return obj


def _reachable(defs, roots):
    seen = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        for ref in re.findall(r'"#/definitions/([^"]+)"', json.dumps(defs[name])):
            stack.append(ref)
    return seen


def v3_group_version(registry, group, version, rts, version_string: str) -> dict:
    defs, names = definitions(registry)
    params = [{"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}} for p in QUERY_PARAMS]
    paths = {}
    roots = []
    prefix = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    for rt in rts:
        gvk = {"group": group, "version": version, "kind": rt.kind}
        name = names[(group, version, rt.kind)]
        roots.append(name)
        ref = {"$ref": f"#/components/schemas/{name}"}
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref},
                                                         "application/yaml": {"schema": ref}}}}

        def op(verb, action, rt=rt, gvk=gvk, ref=ref, ok=ok):
            o = {"operationId": f"{verb}{rt.kind}", "parameters": list(params), "responses": ok,
                 "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}
            if verb == "patch":
                types = PATCH_TYPES_CUSTOM if rt.custom else PATCH_TYPES_BUILTIN
                o["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in types},
                                    "required": True}
            elif verb in ("create", "replace"):
                o["requestBody"] = {"content": {"*/*": {"schema": ref}}, "required": True}
            return o

        paths[_coll_path(prefix, rt)] = {"get": op("list", "list"), "post": op("create", "post")}
        paths[_item_path(prefix, rt)] = {"get": op("read", "get"), "put": op("replace", "put"),
                                         "patch": op("patch", "patch"), "delete": op("delete", "delete")}
    schemas = {n: _v3_refs(defs[n]) for n in sorted(_reachable(defs, roots))}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": version_string}, "paths": paths,
            "components": {"schemas": schemas}}


# ---- gnostic openapi_v2.Document protobuf ----------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _str(num: int, s: str) -> bytes:
    return _ld(num, s.encode()) if s else b""


def _bool(num: int, v: bool) -> bytes:
    return _varint(num << 3) + b"\x01" if v else b""


def _yaml_scalar(v) -> str:
    return json.dumps(v)  # JSON is YAML; gnostic keeps extension values as YAML text


def _any(value) -> bytes:
    import yaml
    return _str(2, yaml.safe_dump(value, default_flow_style=False) if isinstance(value, (dict, list))
                else _yaml_scalar(value) + "\n")


def _named_any(name, value) -> bytes:
    return _str(1, name) + _ld(2, _any(value))


def _schema_pb(s: dict) -> bytes:
    out = b""
    out += _str(1, s.get("$ref", ""))
    out += _str(2, s.get("format", ""))
    out += _str(4, s.get("description", ""))
    out += _bool(16, bool(s.get("uniqueItems")))
    for r in s.get("required") or []:
        out += _str(19, r)
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        out += _ld(21, _ld(1, _schema_pb(ap)))
    elif isinstance(ap, bool):
        out += _ld(21, _varint(2 << 3) + (b"\x01" if ap else b"\x00"))
    if s.get("type"):
        out += _ld(22, _str(1, s["type"]))
    if isinstance(s.get("items"), dict):
        out += _ld(23, _ld(1, _schema_pb(s["items"])))
    if s.get("properties"):
        props = b"".join(_ld(1, _str(1, k) + _ld(2, _schema_pb(v))) for k, v in s["properties"].items())
        out += _ld(25, props)
    for k, v in s.items():
        if k.startswith("x-"):
            out += _ld(31, _named_any(k, v))
    return out


def _query_param_pb(name: str) -> bytes:
    sub = _str(2, "query") + _str(4, name) + _str(6, "string") + _bool(20, True)
    return _ld(1, _ld(2, _ld(3, sub)))  # ParametersItem.parameter.non_body_parameter.query_parameter_sub_schema


def _operation_pb(o: dict) -> bytes:
    out = _str(5, o.get("operationId", ""))
    for c in o.get("consumes") or []:
        out += _str(7, c)
    for p in o.get("parameters") or []:
        out += _ld(8, _query_param_pb(p["name"]))
    resp = o.get("responses", {}).get("200")
    if resp:
        r = _str(1, resp.get("description", "")) + _ld(2, _ld(1, _schema_pb(resp["schema"])))
        out += _ld(9, _ld(1, _str(1, "200") + _ld(2, _ld(1, r))))
    for k, v in o.items():
        if k.startswith("x-"):
            out += _ld(13, _named_any(k, v))
    return out


OPS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def v2_protobuf(doc: dict) -> bytes:
    out = _str(1, doc["swagger"])
    out += _ld(2, _str(1, doc["info"]["title"]) + _str(2, doc["info"]["version"]))
    paths = b""
    for p, item in doc["paths"].items():
        body = b"".join(_ld(OPS[verb], _operation_pb(o)) for verb, o in item.items() if verb in OPS)
        paths += _ld(2, _str(1, p) + _ld(2, body))
    out += _ld(8, paths)
    defs = b"".join(_ld(1, _str(1, k) + _ld(2, _schema_pb(v))) for k, v in doc["definitions"].items())
    out += _ld(9, defs)
    return out

