"""Decode Kubernetes protobuf request bodies into the JSON form (test harness).

kubectl's typed clients (``kubectl create namespace|deployment|configmap``, ``kubectl auth
can-i``...) send ``application/vnd.kubernetes.protobuf`` bodies.  The message schemas are the
``generated.proto`` files of k8s.io/api and k8s.io/apimachinery, which every Go client embeds as
gzipped ``FileDescriptorProto`` blobs; they are read from the kubectl binary found on PATH the
first time a protobuf body arrives, then kept in memory.  Responses stay JSON (clients always
accept it).  Only decoding is implemented; the JSON mapping follows the Go types' special
cases (Time, IntOrString, Quantity, RawExtension, map entries, bytes as base64) and drops
empty scalars the way ``omitempty`` does.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import struct
import threading
import zlib

MAGIC = b"k8s\x00"
_GZ = b"\x1f\x8b\x08\x00\x00\x00\x00\x00"

_lock = threading.Lock()
_schema = None  # full message name -> Message

# scalar zero values that are meaningful (pointer fields in the Go types, or required ones)
KEEP_ZERO = {"replicas", "containerPort", "port", "partition", "revisionHistoryLimit", "backoffLimit",
             "parallelism", "completions", "terminationGracePeriodSeconds", "activeDeadlineSeconds",
             "progressDeadlineSeconds", "weight", "priority", "exitCode", "runAsUser", "runAsGroup", "fsGroup",
             "minAvailable", "maxUnavailable", "maxSurge", "targetPort", "nodePort", "gracePeriodSeconds",
             "allowed", "denied", "seconds", "number", "defaultMode", "mode", "expirationSeconds"}


# Go structs embedded with `json:",inline"`: their fields appear at the parent's level in JSON.
INLINE = {("Probe", "handler"), ("Volume", "volumeSource"), ("PersistentVolumeSpec", "persistentVolumeSource"),
          ("IngressRule", "ingressRuleValue"), ("EphemeralContainer", "ephemeralContainerCommon"),
          ("NamedRuleWithOperations", "ruleWithOperations"), ("RuleWithOperations", "rule")}
INLINE_FIELDS = {"localObjectReference"}  # LocalObjectReference is embedded inline wherever it appears
# proto field names that differ from the JSON name by a capital first letter (Webhooks -> webhooks...);
# a few JSON names really are capitalised:
KEEP_CASE = {("DaemonEndpoint", "Port")}


def _is_inline(msg_name: str, field: str) -> bool:
    return field in INLINE_FIELDS or (msg_name.rsplit(".", 1)[-1], field) in INLINE


def _json_name(msg_name: str, field: str) -> str:
    if field[:1].isupper() and (msg_name.rsplit(".", 1)[-1], field) not in KEEP_CASE:
        return field[0].lower() + field[1:]
    return field


class ProtoError(ValueError):
    pass


class Message:
    __slots__ = ("name", "fields", "map_entry")

    def __init__(self, name):
        self.name = name
        self.fields = {}  # number -> (name, type, label, type_name)
        self.map_entry = False


# ---- wire format --------------------------------------------------------------------------

def _varint(buf, i):
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def iter_fields(buf):
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v = buf[i:i + 8]
            i += 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v = buf[i:i + ln]
            i += ln
        elif wt == 5:
            v = buf[i:i + 4]
            i += 4
        else:
            raise ProtoError(f"unsupported wire type {wt}")
        yield num, wt, v


# ---- descriptors --------------------------------------------------------------------------

def _parse_descriptor(buf, prefix, out):
    msg = None
    name = None
    fields = []
    nested = []
    map_entry = False
    for num, wt, v in iter_fields(buf):
        if num == 1:
            name = bytes(v).decode()
        elif num == 2:
            fields.append(v)
        elif num == 3:
            nested.append(v)
        elif num == 7:
            for onum, _, ov in iter_fields(v):
                if onum == 7 and ov:
                    map_entry = True
    full = f"{prefix}.{name}"
    msg = Message(full)
    msg.map_entry = map_entry
    for f in fields:
        fname, number, label, ftype, tname = None, 0, 1, 0, ""
        for num, wt, v in iter_fields(f):
            if num == 1:
                fname = bytes(v).decode()
            elif num == 3:
                number = v
            elif num == 4:
                label = v
            elif num == 5:
                ftype = v
            elif num == 6:
                tname = bytes(v).decode()
        msg.fields[number] = (fname, ftype, label, tname)
    out[full] = msg
    for n in nested:
        _parse_descriptor(n, full, out)


def _parse_file(buf, out):
    package = ""
    msgs = []
    for num, wt, v in iter_fields(buf):
        if num == 2:
            package = bytes(v).decode()
        elif num == 4:
            msgs.append(v)
    for m in msgs:
        _parse_descriptor(m, "." + package, out)


def load_schema_from_binary(path) -> dict:
    with open(path, "rb") as f:
        data = f.read()
    out: dict = {}
    i = 0
    while True:
        i = data.find(_GZ, i)
        if i < 0:
            break
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            blob = d.decompress(data[i:i + 4_000_000])
            if b"generated.proto" in blob[:120] and b"k8s.io" in blob[:120]:
                _parse_file(blob, out)
        except (zlib.error, ProtoError, UnicodeDecodeError, IndexError):
            pass
        i += 1
    return out


def _find_binary():
    for cand in (os.environ.get("KUBESIM_PROTO_SCHEMA_BINARY"), shutil.which("kubectl"), "/usr/bin/kubectl",
                 "/usr/local/bin/kubectl"):
        if cand and os.path.exists(cand):
            return os.path.realpath(cand)
    return None


def schema() -> dict:
    global _schema
    with _lock:
        if _schema is None:
            path = _find_binary()
            _schema = load_schema_from_binary(path) if path else {}
        return _schema


# ---- decoding -----------------------------------------------------------------------------

def _package_for(api_version: str) -> list:
    group, _, version = api_version.rpartition("/")
    if not group:
        return [f".k8s.io.api.core.{version}"]
    if group == "meta.k8s.io":
        return [f".k8s.io.apimachinery.pkg.apis.meta.{version}"]
    first = group.split(".")[0]
    return [f".k8s.io.api.{first}.{version}", f".k8s.io.{first}.pkg.apis.{first}.{version}"]


def _fmt_time(seconds, nanos=0, micro=False):
    t = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _scalar(ftype, wt, v):
    if ftype in (3, 4, 5, 13, 14):  # int64 uint64 int32 uint32 enum
        if ftype in (3, 5) and v >= 1 << 63:
            v -= 1 << 64
        return v
    if ftype == 8:
        return bool(v)
    if ftype == 17 or ftype == 18:  # zigzag
        return (v >> 1) ^ -(v & 1)
    if ftype == 1:
        return struct.unpack("<d", v)[0]
    if ftype == 2:
        return struct.unpack("<f", v)[0]
    if ftype == 6:
        return struct.unpack("<Q", v)[0]
    if ftype == 16:
        return struct.unpack("<q", v)[0]
    if ftype == 7:
        return struct.unpack("<I", v)[0]
    if ftype == 15:
        return struct.unpack("<i", v)[0]
    if ftype == 9:
        return bytes(v).decode()
    if ftype == 12:
        return base64.b64encode(bytes(v)).decode()
    return v


def _special(tname, buf, sch):
    short = tname.rsplit(".", 1)[-1]
    if tname.endswith("meta.v1.Time") or tname.endswith("meta.v1.MicroTime"):
        secs = nanos = 0
        for num, wt, v in iter_fields(buf):
            if num == 1:
                secs = _scalar(3, wt, v)
            elif num == 2:
                nanos = v
        return _fmt_time(secs, nanos, micro=short == "MicroTime") if secs or nanos else None, True
    if tname.endswith("intstr.IntOrString"):
        typ, ival, sval = 0, 0, ""
        for num, wt, v in iter_fields(buf):
            if num == 1:
                typ = v
            elif num == 2:
                ival = _scalar(5, wt, v)
            elif num == 3:
                sval = bytes(v).decode()
        return (sval if typ == 1 else ival), True
    if tname.endswith("resource.Quantity"):
        for num, wt, v in iter_fields(buf):
            if num == 1:
                return bytes(v).decode(), True
        return "0", True
    if tname.endswith("runtime.RawExtension") or tname.endswith("meta.v1.FieldsV1"):
        for num, wt, v in iter_fields(buf):
            if num == 1:
                try:
                    return json.loads(bytes(v)), True
                except ValueError:
                    return None, True
        return None, True
    if tname.endswith("meta.v1.Duration"):
        for num, wt, v in iter_fields(buf):
            if num == 1:
                return f"{v / 1e9:g}s", True
        return "0s", True
    return None, False


def decode_message(buf, tname, sch) -> dict:
    msg = sch.get(tname)
    if msg is None:
        raise ProtoError(f"unknown message {tname}")
    out: dict = {}
    for num, wt, v in iter_fields(buf):
        fd = msg.fields.get(num)
        if fd is None:
            continue
        fname, ftype, label, sub = fd
        fname = _json_name(tname, fname)
        if ftype == 11:
            val, special = _special(sub, v, sch)
            if not special:
                submsg = sch.get(sub)
                if submsg is not None and submsg.map_entry:
                    k, mv = _decode_entry(v, submsg, sch)
                    out.setdefault(fname, {})[k] = mv
                    continue
                val = decode_message(v, sub, sch)
                if _is_inline(tname, fname):
                    out.update(val)
                    continue
            elif val is None:
                continue
        elif wt == 2 and ftype not in (9, 12) and label == 3:
            # packed repeated scalars
            vals = []
            i = 0
            while i < len(v):
                x, i = _varint(v, i)
                vals.append(_scalar(ftype, 0, x))
            out.setdefault(fname, []).extend(vals)
            continue
        else:
            val = _scalar(ftype, wt, v)
        if label == 3:
            out.setdefault(fname, []).append(val)
        else:
            if (val == "" or val == 0 or val is False) and fname not in KEEP_ZERO and not isinstance(val, dict):
                continue
            out[fname] = val
    return out


def _decode_entry(buf, msg, sch):
    key, val = "", None
    kfd, vfd = msg.fields.get(1), msg.fields.get(2)
    for num, wt, v in iter_fields(buf):
        fd = kfd if num == 1 else vfd
        if fd is None:
            continue
        _, ftype, _, sub = fd
        if ftype == 11:
            x, special = _special(sub, v, sch)
            if not special:
                x = decode_message(v, sub, sch)
        else:
            x = _scalar(ftype, wt, v)
        if num == 1:
            key = x
        else:
            val = x
    if val is None and vfd is not None:
        val = "" if vfd[1] in (9, 12) else ({} if vfd[1] == 11 else 0)
    return key, val


def decode(body: bytes) -> dict:
    """``k8s\\0`` + runtime.Unknown envelope -> the object as JSON-compatible dict."""
    if not body.startswith(MAGIC):
        raise ProtoError("missing protobuf magic")
    api_version = kind = ""
    raw = b""
    for num, wt, v in iter_fields(memoryview(body)[len(MAGIC):]):
        if num == 1:
            for n2, _, v2 in iter_fields(v):
                if n2 == 1:
                    api_version = bytes(v2).decode()
                elif n2 == 2:
                    kind = bytes(v2).decode()
        elif num == 2:
            raw = bytes(v)
    sch = schema()
    if not sch:
        raise ProtoError("no protobuf schema available (kubectl binary not found)")
    tname = None
    # options kinds (DeleteOptions, ...) are registered in every group version but are meta/v1 messages
    for pkg in _package_for(api_version) + [".k8s.io.apimachinery.pkg.apis.meta.v1"]:
        if f"{pkg}.{kind}" in sch:
            tname = f"{pkg}.{kind}"
            break
    if tname is None:
        raise ProtoError(f"no protobuf schema for {api_version}/{kind}")
    obj = decode_message(raw, tname, sch)
    out = {"apiVersion": api_version, "kind": kind}
    out.update(obj)
    return out


# ---- unknown-field detection (fieldValidation) ---------------------------------------------

_OPAQUE = ("meta.v1.Time", "meta.v1.MicroTime", "intstr.IntOrString", "resource.Quantity",
           "runtime.RawExtension", "meta.v1.FieldsV1", "meta.v1.Duration")


def message_for(api_version: str, kind: str):
    """Full protobuf message name for a built-in kind, or None (custom resources, unknown kinds)."""
    try:
        sch = schema()
    except Exception:  # no kubectl binary, unreadable: no schema, no checking
        return None
    for pkg in _package_for(api_version):
        if f"{pkg}.{kind}" in sch:
            return f"{pkg}.{kind}"
    return None


def _fields_by_name(msg, sch):
    out = {}
    for number, (name, ftype, label, sub) in msg.fields.items():
        if _is_inline(msg.name, name) and sub in sch:
            out.update(_fields_by_name(sch[sub], sch))
        else:
            out[_json_name(msg.name, name)] = (ftype, label, sub)
    return out


def unknown_fields(obj: dict, tname: str, top: bool = True) -> list:
    """Paths of fields in ``obj`` that the type ``tname`` does not declare (like the API server's
    strict decoding: ``spec.template.spec.containers[0].imagee``)."""
    sch = schema()
    found: list = []

    def walk(value, name, path):
        msg = sch.get(name)
        if msg is None or not isinstance(value, dict) or name.endswith(_OPAQUE):
            return
        fields = _fields_by_name(msg, sch)
        for key, val in value.items():
            here = f"{path}.{key}" if path else key
            if path == "" and top and key in ("apiVersion", "kind"):
                continue
            if key.startswith("$"):  # strategic-merge-patch directives
                continue
            fd = fields.get(key)
            if fd is None:
                found.append(here)
                continue
            ftype, label, sub = fd
            if ftype != 11 or sub.endswith(_OPAQUE):
                continue
            submsg = sch.get(sub)
            if submsg is not None and submsg.map_entry:
                vfd = submsg.fields.get(2)
                if vfd and vfd[1] == 11 and isinstance(val, dict):
                    for mk, mv in val.items():
                        walk(mv, vfd[3], f"{here}[{mk}]")
                continue
            if label == 3 and isinstance(val, list):
                for i, item in enumerate(val):
                    walk(item, sub, f"{here}[{i}]")
            else:
                walk(val, sub, here)

    walk(obj, tname, "")
    return found
