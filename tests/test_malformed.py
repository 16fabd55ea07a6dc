"""Malformed model files: each gets its own error, never an out-of-bounds
access. Checked through the simulator's Trainer (the message) and through
tt_run built with ASan and UBSan (the status code, no sanitizer report)."""
import ctypes
import struct

import numpy as np
import pytest

import tinytrain
from tinytrain import _native, runner
from tinytrain import modelfile as mf

from tinytrain.compiler import compile_model

import netzoo


@pytest.fixture(scope="module")
def good():
    _, _, plan = netzoo.build("mbnet", "sparse", seed=1)
    return plan.data


recrc = mf.with_crc
AFTER_CRC = mf.header_field("crc32")[0] + 4  # the first byte the CRC covers


def patch(field, value):
    """One header field set to value, the CRC valid again."""
    return lambda data: mf.set_header_field(data, field, value)


def edit(fn):
    """Change parsed records, then write the file again (offsets and CRC fresh)."""
    def f(data):
        m = mf.Model.parse(data)
        fn(m)
        return m.pack()
    return f


def blob_edit(fn):
    def f(data):
        m = mf.Model.parse(data)
        blob = bytearray(m.blob)
        fn(m, blob)
        m.blob = bytes(blob)
        return m.pack()
    return f


def first_layer(m, kind, trained=False):
    return next(L for L in m.layers if L.kind == kind and (L.n_train > 0 or not trained))


def set_shift0(m, blob):
    L = first_layer(m, mf.L_CONV)
    blob[L.shift_off] = 0


def dup_perm(m, blob):
    L = first_layer(m, mf.L_CONV, trained=True)
    p0 = struct.unpack_from("<H", blob, L.perm_off)[0]
    struct.pack_into("<H", blob, L.perm_off + 2 * L.n_train, p0)  # a frozen entry repeats a trained one
    # keep the frozen part ascending where possible so the duplicate is what fails


def table_up(m, blob):
    off = m.header.exp_table_off
    struct.pack_into("<I", blob, off + 4 * 10, 1 << 30)


def set_attr(getter, **kw):
    def fn(m):
        obj = getter(m)
        for k, v in kw.items():
            setattr(obj, k, v)
    return edit(fn)


def fwd_op_after_bwd(m):
    m.header.n_fwd_ops = m.header.n_fwd_ops + 1


def bad_op_tensor(m):
    op = next(o for o in m.ops if o.kind == mf.OP_BWD)
    op.t[0] = 0x7FFF


def saved_missing(m):
    op = next(o for o in m.ops if o.kind == mf.OP_BWD and m.layers[o.layer].n_train)
    op.t[2] = mf.NONE


CASES = {
    "short header": (lambda d: d[:100], "truncated"),
    "short file": (lambda d: d[:len(d) - 7], "truncated"),
    "magic": (lambda d: b"TTRX" + d[4:], "magic"),
    "major version": (patch("version_major", 3), "version"),
    "damaged blob": (lambda d: d[:-40] + bytes([d[-40] ^ 0x55]) + d[-39:], "crc"),
    "header size": (patch("header_size", 64), "header"),
    "tensor section": (patch("tensors_off", 0x7FFFFFF0), "section"),
    "blob section": (patch("blob_size", 0x7FFFFFF0), "section"),
    "no forward ops": (patch("n_fwd_ops", 0), "header"),
    "input id": (patch("input_tensor", 0xFFF0), "header"),
    "loss kind": (patch("loss_kind", 7), "header"),
    "persist > arena": (patch("persist_size", 0x7FFFFFFF), "header"),
    "tensor kind": (set_attr(lambda m: m.tensors[1], kind=9), "tensor"),
    "tensor size": (set_attr(lambda m: m.tensors[1], size=5), "tensor"),
    "tensor outside arena": (set_attr(lambda m: m.tensors[1], arena_off=1 << 24), "arena"),
    "zero point": (set_attr(lambda m: m.tensors[1], zero=300), "quant"),
    "input slot over trained params": (set_attr(lambda m: m.tensors[m.header.input_tensor], arena_off=0), "arena"),
    "input not an activation": (set_attr(lambda m: m.tensors[m.header.input_tensor], kind=mf.T_SAVED), "tensor"),
    "layer kind": (set_attr(lambda m: m.layers[0], kind=9), "layer"),
    "stride 0": (set_attr(lambda m: m.layers[0], stride=0), "layer"),
    "output shape": (set_attr(lambda m: m.layers[0], stride=7), "shape"),
    "weights outside blob": (set_attr(lambda m: m.layers[0], w_off=1 << 30), "blob"),
    "too many trained channels": (set_attr(lambda m: first_layer(m, mf.L_CONV, True), n_train=999), "layer"),
    "trained weights outside params": (set_attr(lambda m: first_layer(m, mf.L_CONV, True),
                                                w_arena=1 << 24), "arena"),
    "shift 0": (blob_edit(set_shift0), "quant"),
    "duplicate channel": (blob_edit(dup_perm), "perm"),
    "softmax table rises": (blob_edit(table_up), "quant"),
    "op kind": (set_attr(lambda m: m.ops[-1], kind=9), "op"),
    "op tensor id": (edit(bad_op_tensor), "op"),
    "forward op count": (edit(fwd_op_after_bwd), "op"),
    "saved input missing": (edit(saved_missing), "op"),
    "clamp range": (set_attr(lambda m: m.layers[0], act_min=100, act_max=-100), "quant"),
}


# -- fused ops (docs/format.md): a depthwise layer run row by row with its
# producer (a ring of rows) and/or its 1x1 consumer (one row) -------------

@pytest.fixture(scope="module")
def good_fused():
    b, g, _ = netzoo.build("mbnet", "bias_only", seed=1)
    plan = compile_model(g, netzoo.SCHEMES["bias_only"](g), fuse="all")
    ops = [op for op in plan.model.ops if op.kind == mf.OP_FWD_FUSED]
    # conv1+dwconv2+conv3 (no mask), conv5+dwconv6+conv7 (conv7's bias is trained: a mask)
    assert len(ops) == 2 and ops[1].t[mf.FUSED_MASK] != mf.NONE
    return plan.data


def fused(m, i=0):
    return [op for op in m.ops if op.kind == mf.OP_FWD_FUSED][i]


def set_fused(i=0, **slots):
    """Set op fields of the i-th fused op: layer=..., or slot name (A, RING, C, ROW, MASK) or t5."""
    def fn(m):
        op = fused(m, i)
        for k, v in slots.items():
            if k == "layer":
                op.layer = v(m) if callable(v) else v
            else:
                idx = 5 if k == "t5" else getattr(mf, f"FUSED_{k}")
                op.t[idx] = v(m) if callable(v) else v
    return edit(fn)


def layer_id(m, pred):
    return next(i for i, L in enumerate(m.layers) if pred(L))


def resize_rows(slot, dh, dw=0, i=0):
    """The ring or row tensor of the i-th fused op dh rows (dw columns) more, its size to match."""
    def fn(m):
        t = m.tensors[fused(m, i).t[getattr(mf, f"FUSED_{slot}")]]
        t.h += dh
        t.w += dw
        t.size = t.h * t.w * t.c
        m.header.arena_size = max(m.header.arena_size, (t.arena_off + t.size + 3) // 4 * 4)
    return edit(fn)


def set_tensor(getter, **kw):
    return set_attr(getter, **kw)


def streamed_ids(m):
    return [i for i, t in enumerate(m.tensors) if t.flags & mf.TF_STREAMED]


def store_producer_output(m):
    """The producer's output an ordinary stored tensor (inside the arena)."""
    t = m.tensors[m.layers[fused(m).t[mf.FUSED_A]].out]
    t.flags, t.arena_off = 0, m.header.arena_size  # after everything else: the op check is what fails
    m.header.arena_size += (t.size + 3) // 4 * 4


def downgrade_fused(m):
    op = fused(m)
    op.kind, op.t = mf.OP_FWD, [mf.NONE] * 6  # a plain forward op of the depthwise: reads a streamed tensor


def other_mask(m):
    op = fused(m, 1)
    op.t[mf.FUSED_MASK] = next(i for i, t in enumerate(m.tensors)
                               if t.kind == mf.T_MASK and i != op.t[mf.FUSED_MASK])


FUSED_MALFORMED = {
    "fused: layer not depthwise": (set_fused(layer=lambda m: fused(m).t[mf.FUSED_A]), "op"),
    "fused: layer out of range": (set_fused(layer=0x7FFF), "op"),
    "fused: producer is the depthwise": (set_fused(A=lambda m: fused(m).layer), "op"),
    "fused: producer of another tensor": (set_fused(A=0), "op"),
    "fused: producer out of range": (set_fused(A=0x7FF0), "op"),
    "fused: consumer not 1x1": (set_fused(C=0), "op"),
    "fused: consumer of another tensor": (set_fused(C=lambda m: fused(m, 1).t[mf.FUSED_C]), "op"),
    "fused: no producer, no consumer": (set_fused(A=mf.NONE, RING=mf.NONE, C=mf.NONE, ROW=mf.NONE), "op"),
    "fused: producer without ring": (set_fused(RING=mf.NONE), "op"),
    "fused: ring is a mask": (set_fused(RING=lambda m: fused(m, 1).t[mf.FUSED_MASK]), "op"),
    "fused: ring is the row": (set_fused(RING=lambda m: fused(m).t[mf.FUSED_ROW]), "op"),
    "fused: ring is streamed": (set_fused(RING=lambda m: streamed_ids(m)[0]), "op"),
    "fused: ring short a row": (resize_rows("RING", -1), "op"),
    "fused: ring too narrow": (resize_rows("RING", 0, -1), "op"),
    "fused: ring quantised otherwise": (set_tensor(lambda m: m.tensors[fused(m).t[mf.FUSED_RING]], zero=3), "op"),
    "fused: consumer without row": (set_fused(ROW=mf.NONE), "op"),
    "fused: row too narrow": (resize_rows("ROW", 0, -1), "op"),
    "fused: row is the ring (other quantisation)": (set_fused(ROW=lambda m: fused(m).t[mf.FUSED_RING]), "op"),
    "fused: row too wide": (resize_rows("ROW", 0, 1), "op"),
    "fused: mask of another size": (edit(other_mask), "op"),
    "fused: mask is the ring": (set_fused(1, MASK=lambda m: fused(m, 1).t[mf.FUSED_RING]), "op"),
    "fused: last slot used": (set_fused(t5=0), "op"),
    "fused: producer output stored": (edit(store_producer_output), "op"),
    "plain op on a streamed tensor": (edit(downgrade_fused), "op"),
    "streamed tensor with storage": (set_tensor(lambda m: m.tensors[streamed_ids(m)[0]], arena_off=0), "tensor"),
    "streamed input": (set_tensor(lambda m: m.tensors[m.header.input_tensor], flags=mf.TF_STREAMED), "tensor"),
    "streamed and external": (set_tensor(lambda m: m.tensors[streamed_ids(m)[0]], flags=3), "tensor"),
    "streamed logits": (set_tensor(lambda m: m.tensors[m.header.logits_tensor], flags=mf.TF_STREAMED,
                                   arena_off=mf.NO_OFFSET), "tensor"),
    "streamed gradient": (set_tensor(lambda m: next(t for t in m.tensors if t.kind == mf.T_GRAD),
                                     flags=mf.TF_STREAMED, arena_off=mf.NO_OFFSET), "tensor"),
    "fused op among the backward ops": (edit(lambda m: setattr(m.header, "n_fwd_ops", m.ops.index(fused(m, 1)))),
                                        "op"),
}


@pytest.mark.parametrize("case", sorted(FUSED_MALFORMED))
def test_trainer_refuses_fused(good_fused, case):
    mutate, status = FUSED_MALFORMED[case]
    with pytest.raises(ValueError, match=rf"\({status}\)$"):
        tinytrain.Trainer(mutate(good_fused))


def test_good_fused_model_opens(good_fused):
    t = tinytrain.Trainer(good_fused)
    m = mf.Model.parse(good_fused)
    assert (m.header.version_major, m.header.version_minor) == mf.VERSION
    for tid in streamed_ids(m):
        with pytest.raises(ValueError, match="no arena storage"):
            t.tensor(tid, 1)


def test_fused_random_corruption_never_crashes(good_fused):
    rng = np.random.default_rng(2)
    m = mf.Model.parse(good_fused)
    # flips aimed at the records a fused op rests on, and anywhere
    ops_at = m.header.ops_off
    for k in range(300):
        span = (ops_at, ops_at + 16 * len(m.ops)) if k % 2 else (AFTER_CRC, len(good_fused))
        t = open_flipped(good_fused, rng, span)
        if t is not None:
            x = np.zeros(t.info()["input_bytes"], np.int8)
            t.step(x.tobytes(), 0)
            t.predict(x.tobytes())


def open_flipped(good: bytes, rng, span: tuple):
    """1-3 random bits flipped within span (CRC refreshed, so the checks
    behind it run); the Trainer, or None when the file is refused."""
    b = bytearray(good)
    for _ in range(int(rng.integers(1, 4))):
        b[int(rng.integers(*span))] ^= 1 << int(rng.integers(0, 8))
    try:
        return tinytrain.Trainer(recrc(bytes(b)))
    except (ValueError, MemoryError):
        return None


@pytest.mark.parametrize("case", sorted(CASES))
def test_trainer_refuses(good, case):
    mutate, status = CASES[case]
    bad = mutate(good)
    with pytest.raises(ValueError, match=rf"\({status}\)$"):
        tinytrain.Trainer(bad)


def test_good_model_opens(good):
    tinytrain.Trainer(good)


def test_arena_too_small_says_both_numbers(good):
    need = mf.Model.parse(good).header.arena_size
    with pytest.raises(MemoryError, match=rf"needs {need} bytes of arena, {need - 4} available"):
        tinytrain.Trainer(good, arena_size=need - 4)


def test_misaligned_buffer():
    _, _, plan = netzoo.build("mlp", "full")
    buf = (ctypes.c_uint8 * (len(plan.data) + 4)).from_buffer_copy(b"\0" + plan.data + b"\0" * 3)
    model = ctypes.create_string_buffer(_native.lib.tts_sizeof_model())
    err = _native.Error()
    s = _native.lib.tt_model_open(model, ctypes.addressof(buf) + 1, len(plan.data), ctypes.byref(err))
    assert _native.STATUS[s] == "align"
    assert "4-byte aligned" in err.text


def test_random_corruption_never_crashes(good):
    """Any byte flipped (CRC refreshed, so the checks behind it run) opens or
    is refused; the sanitizer build below proves no access went astray."""
    rng = np.random.default_rng(0)
    for _ in range(300):
        t = open_flipped(good, rng, (AFTER_CRC, len(good)))
        if t is not None:
            t.step(np.zeros(t.info()["input_bytes"], np.int8).tobytes(), 0)


@pytest.fixture(scope="module")
def host_exe(tmp_path_factory):
    if runner.missing_tools("host"):
        pytest.skip("needs a C compiler")
    return runner.build("host", tmp_path_factory.mktemp("asan"))


def test_sanitized_core_refuses_each(good, host_exe):
    for case, (mutate, status) in sorted(CASES.items()):
        res = runner.run(host_exe, mutate(good), job=False)
        assert _native.STATUS[res.status] == status, (case, res.message)
        assert "runtime error" not in res.stdout and "AddressSanitizer" not in res.stdout, case


def test_sanitized_core_refuses_each_fused(good_fused, host_exe):
    for case, (mutate, status) in sorted(FUSED_MALFORMED.items()):
        res = runner.run(host_exe, mutate(good_fused), job=False)
        assert _native.STATUS[res.status] == status, (case, res.message)
        assert "runtime error" not in res.stdout and "AddressSanitizer" not in res.stdout, case


def test_sanitized_core_random_corruption_fused(good_fused, host_exe):
    rng = np.random.default_rng(3)
    m = mf.Model.parse(good_fused)
    x = np.zeros(m.tensors[m.header.input_tensor].numel, np.int8)
    opened = 0
    for k in range(40):
        b = bytearray(good_fused)
        lo, hi = (m.header.ops_off, m.header.ops_off + 16 * len(m.ops)) if k % 2 else (AFTER_CRC, len(b))
        i = int(rng.integers(lo, hi))
        b[i] ^= 1 << int(rng.integers(0, 8))
        res = runner.run(host_exe, recrc(bytes(b)), steps=[(x, 0)], evals=[x], job=True)
        assert "runtime error" not in res.stdout and "AddressSanitizer" not in res.stdout
        opened += res.status == 0
    assert opened < 40


def test_sanitized_core_random_corruption(good, host_exe):
    rng = np.random.default_rng(1)
    opened = 0
    x = np.zeros(mf.Model.parse(good).tensors[mf.Model.parse(good).header.input_tensor].numel, np.int8)
    for _ in range(40):
        b = bytearray(good)
        i = int(rng.integers(AFTER_CRC, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
        res = runner.run(host_exe, recrc(bytes(b)), steps=[(x, 0)], evals=[x], job=True)
        opened += res.status == 0
    assert opened < 40  # some flips must have been caught
