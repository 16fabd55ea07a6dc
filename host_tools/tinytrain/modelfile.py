"""The tinytrain model file: record layouts, writer and reader (docs/format.md).

The layouts mirror micropython_modules/tinytrain/core/tt_format.h; the C reader
is the authority on validity, this module only packs and unpacks.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field, fields

import numpy as np

MAGIC = b"TTRN"
VERSION = (2, 3)
HEADER_SIZE = 128
NONE = 0xFFFF
NO_OFFSET = 0xFFFFFFFF

LOSS_SOFTMAX_CE, LOSS_MSE = 0, 1
# Header flags (2.1): host-side facts the core does not read.
HF_INPUT_NCHW = 0x01  # the source model took its input channels first (ONNX); the slot is HWC
HF_LAYER_NAMES = 0x02  # names_off holds the blob offset of the layer names
T_ACT, T_GRAD, T_MASK, T_SAVED = 1, 2, 3, 4
TF_STREAMED = 0x02  # flag 0x01 (1.x: an input outside the arena) is refused
L_CONV, L_DWCONV, L_ADD, L_AVGPOOL = 1, 2, 3, 4
# format 2.1: windowed pools and activation tables
L_MAXPOOL, L_AVGPOOL2D, L_LUT = 5, 6, 7
LF_TRAIN_BIAS, LF_RESIDUE = 0x01, 0x02
LF_COUNT_PAD = 0x04  # an average pool (2D) divides every window by kh*kw, padding included
# format 2.2, with LF_TRAIN_BIAS (conv, depthwise): b_arena holds int16 [cout], the trained change of
# each bias (the bias is b_off's int32 value plus it; the change saturates at the int16 limits)
LF_BIAS16 = 0x08
OP_FWD, OP_LOSS, OP_BWD, OP_GRAD_ADD, OP_FWD_FUSED = 1, 2, 3, 4, 5
# Slots of an op's tensor ids (OpRec.t), per kind; the slots a kind does not name hold NONE.
OP_SLOTS = 6
# OP_FWD: run layer, writing its clamp mask and saved input (each or NONE), (2.3) its prepared
# constants or NONE
FWD_MASK, FWD_SAVED, FWD_PREP = 0, 1, 2
# OP_LOSS: the logits, the gradient it writes
LOSS_LOGITS, LOSS_GRAD = 0, 1
# OP_BWD: backward of layer: its output gradient (modified in place), clamp mask, saved input
# (weight-trained layers), input gradient to write, second input's gradient (add); all but the
# first may be NONE
BWD_OUT_GRAD, BWD_MASK, BWD_SAVED, BWD_IN_GRAD, BWD_IN2_GRAD = 0, 1, 2, 3, 4
# OP_GRAD_ADD: sum += part (a tensor read by two layers)
GRAD_ADD_SUM, GRAD_ADD_PART = 0, 1
# OP_FWD_FUSED: layer = depthwise B; t[FUSED_A] producer layer A or NONE, t[FUSED_RING] ring of >=
# B.kh rows of A's output, t[FUSED_C] 1x1 consumer layer C or NONE, t[FUSED_ROW] >= 1 row of B's
# output, t[FUSED_MASK] mask of the op's output (C's, else B's), t[FUSED_PREP] (2.3) the prepared
# constants of the layers the op's flags name (FUSED_PREP_A/B/C, in this order) or NONE (flags 0)
FUSED_A, FUSED_RING, FUSED_C, FUSED_ROW, FUSED_MASK, FUSED_PREP = 0, 1, 2, 3, 4, 5
FUSED_PREP_A, FUSED_PREP_B, FUSED_PREP_C = 0x01, 0x02, 0x04

LAYER_KIND_NAMES = {L_CONV: "conv", L_DWCONV: "dwconv", L_ADD: "add", L_AVGPOOL: "avgpool",
                    L_MAXPOOL: "maxpool", L_AVGPOOL2D: "avgpool2d", L_LUT: "lut"}
OP_KIND_NAMES = {OP_FWD: "fwd", OP_LOSS: "loss", OP_BWD: "bwd", OP_GRAD_ADD: "grad_add",
                 OP_FWD_FUSED: "fwd_fused"}


@dataclass
class Header:
    file_size: int = 0
    crc32: int = 0
    n_tensors: int = 0
    tensors_off: int = 0
    n_layers: int = 0
    layers_off: int = 0
    n_ops: int = 0
    ops_off: int = 0
    n_fwd_ops: int = 0
    blob_off: int = 0
    blob_size: int = 0
    arena_size: int = 0
    persist_size: int = 0
    input_tensor: int = 0
    logits_tensor: int = 0
    n_classes: int = 0
    loss_kind: int = LOSS_SOFTMAX_CE
    flags: int = 0
    lr: float = 0.0
    exp_table_off: int = NO_OFFSET
    names_off: int = 0  # blob offset of the layer names (with HF_LAYER_NAMES)
    version_major: int = VERSION[0]
    version_minor: int = VERSION[1]

    def pack(self) -> bytes:
        values = {**{f.name: getattr(self, f.name) for f in fields(self)},
                  "magic": MAGIC, "header_size": HEADER_SIZE, "reserved": b""}
        return struct.pack(HEADER_FMT, *(values[name] for name, _ in HEADER_LAYOUT))

    @classmethod
    def unpack(cls, buf: bytes) -> "Header":
        v = dict(zip((name for name, _ in HEADER_LAYOUT), struct.unpack_from(HEADER_FMT, buf, 0)))
        if v["magic"] != MAGIC:
            raise ValueError("not a tinytrain model (magic is not TTRN)")
        return cls(**{f.name: v[f.name] for f in fields(cls)})


# The header's fields in file order (tt_format.h's tt_header): the one table every
# offset into the header comes from.
HEADER_LAYOUT = (
    ("magic", "4s"), ("version_major", "H"), ("version_minor", "H"), ("file_size", "I"),
    ("crc32", "I"), ("header_size", "I"), ("n_tensors", "I"), ("tensors_off", "I"),
    ("n_layers", "I"), ("layers_off", "I"), ("n_ops", "I"), ("ops_off", "I"),
    ("n_fwd_ops", "I"), ("blob_off", "I"), ("blob_size", "I"), ("arena_size", "I"),
    ("persist_size", "I"), ("input_tensor", "H"), ("logits_tensor", "H"), ("n_classes", "H"),
    ("loss_kind", "B"), ("flags", "B"), ("lr", "f"), ("exp_table_off", "I"), ("names_off", "I"),
    ("reserved", "44s"))
HEADER_FMT = "<" + "".join(code for _, code in HEADER_LAYOUT)


def header_field(name: str) -> tuple:
    """(byte offset, struct format) of a header field, for tools that patch a file in place."""
    off = 0
    for n, code in HEADER_LAYOUT:
        if n == name:
            return off, "<" + code
        off += struct.calcsize("<" + code)
    raise KeyError(f"no header field {name!r}")


def set_header_field(data, name: str, value) -> bytes:
    """The file with one header field changed and its CRC made valid again."""
    b = bytearray(data)
    off, fmt = header_field(name)
    struct.pack_into(fmt, b, off, value)
    return with_crc(b)


def with_crc(data) -> bytes:
    """The file with its crc32 field recomputed over every byte after it."""
    b = bytearray(data)
    off, fmt = header_field("crc32")
    struct.pack_into(fmt, b, off, zlib.crc32(bytes(b[off + 4:])))
    return bytes(b)


@dataclass
class TensorRec:
    arena_off: int
    size: int
    kind: int
    flags: int
    h: int
    w: int
    c: int
    scale: float = 0.0
    zero: int = 0
    name: str = ""  # not stored in the file; for reports

    FMT = "<IIBBHHHfi"

    @property
    def shape(self):
        return (self.h, self.w, self.c)

    @property
    def numel(self):
        return self.h * self.w * self.c

    def pack(self) -> bytes:
        return struct.pack(self.FMT, self.arena_off, self.size, self.kind, self.flags, self.h,
                           self.w, self.c, self.scale, self.zero)

    @classmethod
    def unpack(cls, buf, off):
        return cls(*struct.unpack_from(cls.FMT, buf, off))


@dataclass
class LayerRec:
    kind: int
    kh: int = 1
    kw: int = 1
    stride: int = 1
    pad_top: int = 0
    pad_left: int = 0
    flags: int = 0
    inp: int = NONE
    in2: int = NONE
    out: int = NONE
    n_train: int = 0
    act_min: int = -128
    act_max: int = 127
    w_off: int = NO_OFFSET
    b_off: int = NO_OFFSET
    mult_off: int = NO_OFFSET
    shift_off: int = NO_OFFSET
    gscale_off: int = NO_OFFSET
    wscale_max: float = 0.0
    perm_off: int = NO_OFFSET
    qas_w_off: int = NO_OFFSET
    qas_b_off: int = NO_OFFSET
    w_arena: int = NO_OFFSET
    wres_arena: int = NO_OFFSET
    b_arena: int = NO_OFFSET
    lr_scale: float = 1.0
    mult_a: int = 0
    mult_b: int = 0
    shift: int = 1
    wscale_off: int = NO_OFFSET
    name: str = ""

    FMT = "<BBBBBBBBHHHHhhIIIIIfIIIIIIfiiII2I"

    def pack(self) -> bytes:
        return struct.pack(
            self.FMT, self.kind, self.kh, self.kw, self.stride, self.pad_top, self.pad_left,
            self.flags, 0, self.inp, self.in2, self.out, self.n_train, self.act_min, self.act_max,
            self.w_off, self.b_off, self.mult_off, self.shift_off, self.gscale_off,
            self.wscale_max, self.perm_off, self.qas_w_off, self.qas_b_off, self.w_arena,
            self.wres_arena, self.b_arena, self.lr_scale, self.mult_a, self.mult_b, self.shift,
            self.wscale_off, 0, 0)

    @classmethod
    def unpack(cls, buf, off):
        v = struct.unpack_from(cls.FMT, buf, off)
        return cls(kind=v[0], kh=v[1], kw=v[2], stride=v[3], pad_top=v[4], pad_left=v[5],
                   flags=v[6], inp=v[8], in2=v[9], out=v[10], n_train=v[11], act_min=v[12],
                   act_max=v[13], w_off=v[14], b_off=v[15], mult_off=v[16], shift_off=v[17],
                   gscale_off=v[18], wscale_max=v[19], perm_off=v[20], qas_w_off=v[21],
                   qas_b_off=v[22], w_arena=v[23], wres_arena=v[24], b_arena=v[25],
                   lr_scale=v[26], mult_a=v[27], mult_b=v[28], shift=v[29], wscale_off=v[30])


def slots_list(slots: dict) -> list:
    """An op's t[]: the named slots ({LOSS_LOGITS: id, ...}) hold the given ids, the rest NONE."""
    t = [NONE] * OP_SLOTS
    for slot, tid in slots.items():
        t[slot] = tid
    return t


@dataclass
class OpRec:
    kind: int
    layer: int = NONE
    t: list = field(default_factory=lambda: [NONE] * OP_SLOTS)
    flags: int = 0

    FMT = f"<BBH{OP_SLOTS}H"

    @classmethod
    def with_slots(cls, kind: int, layer: int, slots: dict) -> "OpRec":
        """An op whose named slots ({FWD_MASK: id, ...}) hold the given ids, the rest NONE."""
        return cls(kind, layer, slots_list(slots))

    def pack(self) -> bytes:
        return struct.pack(self.FMT, self.kind, self.flags, self.layer, *self.t)

    @classmethod
    def unpack(cls, buf, off):
        v = struct.unpack_from(cls.FMT, buf, off)
        return cls(kind=v[0], flags=v[1], layer=v[2], t=list(v[3:]))


for _fmt, _size in ((HEADER_FMT, HEADER_SIZE), (TensorRec.FMT, 24), (LayerRec.FMT, 96), (OpRec.FMT, 16)):
    assert struct.calcsize(_fmt) == _size, _fmt


class Blob:
    """Constant data, each item aligned so the device can use it in place."""

    def __init__(self):
        self.data = bytearray()

    def add(self, arr: np.ndarray, align: int = 4) -> int:
        arr = np.ascontiguousarray(arr)
        pad = (-len(self.data)) % align
        self.data += b"\0" * pad
        off = len(self.data)
        self.data += arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        return off


@dataclass
class Model:
    header: Header
    tensors: list
    layers: list
    ops: list
    blob: bytes

    def pack(self) -> bytes:
        """Lay out the sections and fill in sizes and the CRC."""
        h = self.header
        out = bytearray(HEADER_SIZE)
        h.n_tensors, h.tensors_off = len(self.tensors), len(out)
        out += b"".join(t.pack() for t in self.tensors)
        h.n_layers, h.layers_off = len(self.layers), len(out)
        out += b"".join(layer.pack() for layer in self.layers)
        h.n_ops, h.ops_off = len(self.ops), len(out)
        out += b"".join(op.pack() for op in self.ops)
        out += b"\0" * ((-len(out)) % 16)
        h.blob_off, h.blob_size = len(out), len(self.blob)
        out += self.blob
        h.file_size = len(out)
        out[:HEADER_SIZE] = h.pack()
        out = with_crc(out)
        h.crc32 = Header.unpack(out).crc32
        return out

    @classmethod
    def parse(cls, buf) -> "Model":
        buf = bytes(buf)
        h = Header.unpack(buf)
        tensors = [TensorRec.unpack(buf, h.tensors_off + 24 * i) for i in range(h.n_tensors)]
        layers = [LayerRec.unpack(buf, h.layers_off + 96 * i) for i in range(h.n_layers)]
        ops = [OpRec.unpack(buf, h.ops_off + 16 * i) for i in range(h.n_ops)]
        blob = buf[h.blob_off:h.blob_off + h.blob_size]
        for layer, name in zip(layers, layer_names(h, blob, [L.kind for L in layers])):
            layer.name = name
        return cls(h, tensors, layers, ops, blob)

    # Typed access to constant data, for the reference and for reports.
    def blob_array(self, off: int, dtype, count: int) -> np.ndarray:
        if off == NO_OFFSET:
            return None
        return np.frombuffer(self.blob, dtype=np.dtype(dtype).newbyteorder("<"), count=count,
                             offset=off)


def pack_names(names) -> np.ndarray:
    """The layer-name table: each name UTF-8, NUL-terminated, in layer order."""
    return np.frombuffer(b"".join(n.encode() + b"\0" for n in names), np.uint8)


def layer_names(h: Header, blob: bytes, kinds: list) -> list:
    """The names the model's layers had when it was written (the planner's,
    the reports', what --weight-layers takes); files without the table
    (before 2.1) get KIND+INDEX, the names a re-planned file gives them."""
    if h.flags & HF_LAYER_NAMES:
        names = bytes(blob[h.names_off:]).split(b"\0")[:h.n_layers]
        if len(names) == h.n_layers:
            return [n.decode("utf-8", "replace") for n in names]
    return [f"{LAYER_KIND_NAMES.get(k, 'layer')}{i}" for i, k in enumerate(kinds)]


def records_equal_ignoring_names(a, b) -> bool:
    return all(getattr(a, f.name) == getattr(b, f.name) for f in fields(a) if f.name != "name")
