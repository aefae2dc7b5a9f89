"""Protobuf request bodies (what kubectl's typed clients send), decoded with the schemas
embedded in the kubectl binary."""

import json
import shutil

import pytest

from kubesim import protobuf as pb

pytestmark = pytest.mark.skipif(not shutil.which("kubectl"), reason="needs the kubectl binary for the schemas")


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _ld(num, payload):
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _num(tname, field):
    msg = pb.schema()[tname]
    for number, (name, ftype, label, sub) in msg.fields.items():
        if name == field:
            return number, sub
    raise KeyError(field)


def encode(value, tname):
    """Tiny schema-driven encoder for the test (strings, ints, messages, repeated messages)."""
    out = b""
    for key, val in value.items():
        number, sub = _num(tname, key)
        vals = val if isinstance(val, list) else [val]
        for v in vals:
            if isinstance(v, dict):
                out += _ld(number, encode(v, sub))
            elif isinstance(v, str):
                out += _ld(number, v.encode())
            elif isinstance(v, int):
                out += _varint(number << 3) + _varint(v)
    return out


def envelope(api_version, kind, raw):
    type_meta = _ld(1, api_version.encode()) + _ld(2, kind.encode())
    return pb.MAGIC + _ld(1, type_meta) + _ld(2, raw)


def test_decode_pod_with_inline_embeds_intorstring_and_maps():
    core = ".k8s.io.api.core.v1"
    pod = {
        "metadata": {"name": "p", "namespace": "", "labels": [{"key": "app", "value": "x"}]},
        "spec": {
            "volumes": [{"name": "scratch", "volumeSource": {"emptyDir": {}}}],
            "containers": [{"name": "c", "image": "nginx:1.25",
                            "livenessProbe": {"handler": {"httpGet": {"path": "/healthz",
                                                                      "port": {"type": 0, "intVal": 8080}}},
                                              "initialDelaySeconds": 3}}],
        },
    }
    # map<string,string> entries are messages with key=1, value=2
    raw = encode(pod, f"{core}.Pod")
    obj = pb.decode(envelope("v1", "Pod", raw))
    assert obj["apiVersion"] == "v1" and obj["kind"] == "Pod"
    assert obj["metadata"] == {"name": "p", "labels": {"app": "x"}}  # empty namespace dropped (omitempty)
    assert obj["spec"]["volumes"] == [{"name": "scratch", "emptyDir": {}}]
    probe = obj["spec"]["containers"][0]["livenessProbe"]
    assert probe == {"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 3}
    json.dumps(obj)


def test_unknown_kind_is_rejected():
    with pytest.raises(pb.ProtoError):
        pb.decode(envelope("example.com/v1", "Widget", b""))
    with pytest.raises(pb.ProtoError):
        pb.decode(b"{}")
