"""The reader's rules (docs/format.md), one class at a time: for each rule,
the mutations that reach it, each refused at open with its status and a
message naming the record and field. The roles, uses and kinds below are
stated here from the format, independently of the reader's tables."""
import ctypes
import zlib
import struct

import pytest

from tinytrain import _native, runner
from tinytrain import modelfile as mf
from tinytrain.compiler import compile_model

import fused_rows
import netzoo

NONE = mf.NONE
R, W, RW = "r", "w", "rw"
LAYER = "layer"
# (op kind) -> per slot: (tensor kind or LAYER, use, none allowed), or None: the slot must be none
SLOTS = {
    mf.OP_FWD: [(mf.T_MASK, W, True), (mf.T_SAVED, W, True), (mf.T_ACT, W, True), None, None, None],
    mf.OP_LOSS: [(mf.T_ACT, R, False), (mf.T_GRAD, W, False), None, None, None, None],
    mf.OP_BWD: [(mf.T_GRAD, RW, False), (mf.T_MASK, R, True), (mf.T_SAVED, R, True),
                (mf.T_GRAD, W, True), (mf.T_GRAD, W, True), None],
    mf.OP_GRAD_ADD: [(mf.T_GRAD, RW, False), (mf.T_GRAD, R, False), None, None, None, None],
    mf.OP_FWD_FUSED: [(LAYER, None, True), (mf.T_ACT, W, True), (LAYER, None, True),
                      (mf.T_ACT, W, True), (mf.T_MASK, W, True), (mf.T_ACT, W, True)],
}


@pytest.fixture(scope="module")
def plain():
    """Every weight and bias trained: gradients flow into the add's both inputs and are summed."""
    _, _, plan = netzoo.build("mbnet", "full", seed=1)
    return plan.data


@pytest.fixture(scope="module")
def plain32():
    """plain with every trained bias int32 (format 2.1's layout)."""
    _, _, plan = netzoo.build("mbnet", "full", seed=1, bias16=False)
    return plan.data


@pytest.fixture(scope="module")
def sparse():
    _, _, plan = netzoo.build("mbnet", "sparse", seed=1)
    return plan.data


@pytest.fixture(scope="module")
def fused():
    _, g, _ = netzoo.build("mbnet", "bias_only", seed=1)
    return compile_model(g, netzoo.SCHEMES["bias_only"](g), fuse="all").data


@pytest.fixture(scope="module")
def fused_prep(fused):
    """fused with every part of prepared constants its fused ops can have (format 2.3)."""
    data, n = fused_rows.with_all_prepared(fused)
    assert n
    return data


@pytest.fixture(scope="module")
def fwd_prep():
    """bias_only fused where the arena needs it, every op given every prepared
    constant it can have: a forward op's 1x1 layer among them (format 2.3)."""
    _, g, _ = netzoo.build("mbnet", "bias_only", seed=1)
    data, n = fused_rows.with_all_prepared(compile_model(g, netzoo.SCHEMES["bias_only"](g)).data)
    assert any(op.kind == mf.OP_FWD and op.t[mf.FWD_PREP] != NONE for op in mf.Model.parse(data).ops)
    return data


@pytest.fixture(scope="module", params=["plain", "plain32", "sparse", "fused", "fused_prep", "fwd_prep"])
def good(request):
    return request.getfixturevalue(request.param)


def open_model(data: bytes):
    """(status name, message) of tt_model_open on data, through the core itself."""
    buf = (ctypes.c_uint8 * max(len(data), 1)).from_buffer_copy(data or b"\0")
    model = ctypes.create_string_buffer(_native.lib.tts_sizeof_model())
    err = _native.Error()
    s = _native.lib.tt_model_open(model, buf, len(data), ctypes.byref(err))
    return _native.STATUS[s], err.text


def edited(data: bytes, fn) -> bytes:
    m = mf.Model.parse(data)
    fn(m)
    return m.pack()


def assert_refused(data: bytes, status: str, message: str):
    got = open_model(data)
    assert got[0] == status and got[1].startswith(message), (status, message, got)


def input_id(m):
    return m.header.input_tensor


def stored(t):
    return not t.flags & mf.TF_STREAMED


# -- the findings of the hardening issue, each reproduced as a crafted file --

def pool_backward_without_gradient(m):
    op = next(o for o in m.ops if o.kind == mf.OP_BWD and m.layers[o.layer].kind == mf.L_AVGPOOL)
    op.t[3] = NONE


def logits_are_input(m):
    m.header.logits_tensor = m.header.input_tensor


def layer_writes_input(m):
    m.layers[1].out = m.header.input_tensor


def frozen_weight_min(m, blob):
    L = next(L for L in m.layers if L.kind == mf.L_CONV)
    blob[L.w_off] = 0x80


def trained_bias_too_big(m, blob):
    L = next(L for L in m.layers if L.flags & mf.LF_TRAIN_BIAS)
    struct.pack_into("<i", blob, L.b_off, (1 << 30) + 1)


def gradients_overlap(m):
    """The add's second input gradient 4 bytes into its output gradient: a partial overlap."""
    op = next(o for o in m.ops if o.kind == mf.OP_BWD and m.layers[o.layer].kind == mf.L_ADD
              and o.t[4] != NONE and o.t[4] != o.t[0])
    m.tensors[op.t[4]].arena_off = m.tensors[op.t[0]].arena_off + 4
    grow_arena(m, m.tensors[op.t[4]])


def with_blob(fn):
    def f(m):
        blob = bytearray(m.blob)
        fn(m, blob)
        m.blob = bytes(blob)
    return f


def grow_arena(m, t):
    m.header.arena_size = max(m.header.arena_size, (t.arena_off + t.size + 3) // 4 * 4)


FINDINGS = {
    "pool backward without input gradient": (pool_backward_without_gradient, "op", "op "),
    "logits are the input": (logits_are_input, "header", "logits_tensor"),
    "layer writes the input": (layer_writes_input, "layer", "layer 1 out: tensor 0 is the network input"),
    "frozen weight -128": (with_blob(frozen_weight_min), "quant", "layer "),
    "initial trained bias past 2^30": (with_blob(trained_bias_too_big), "quant", "layer "),
    "overlapping gradients": (gradients_overlap, "arena", "op "),
}


@pytest.mark.parametrize("case", sorted(FINDINGS))
def test_findings_refused(plain, case):
    fn, status, message = FINDINGS[case]
    assert_refused(edited(plain, fn), status, message)


@pytest.mark.parametrize("extra", [1, 3, 4, 64])
def test_trailing_bytes_refused(good, extra):
    assert_refused(good + b"\0" * extra, "header", f"file_size {len(good)}, but {len(good) + extra} bytes")


@pytest.fixture(scope="module")
def host_exe(tmp_path_factory):
    if runner.missing_tools("host"):
        pytest.skip("needs a C compiler")
    return runner.build("host", tmp_path_factory.mktemp("asan"))


def test_sanitized_core_refuses_findings(plain, host_exe):
    for case, (fn, status, message) in sorted(FINDINGS.items()):
        res = runner.run(host_exe, edited(plain, fn), job=False)
        assert _native.STATUS[res.status] == status and res.message.startswith(message), (case, res.message)
        assert "runtime error" not in res.stdout and "AddressSanitizer" not in res.stdout, case


# -- roles: every op kind x every slot x {none, input, logits, wrong kind} --

def role_mutations(m):
    """(op index, slot, value, why) for each op kind's first op, where the
    value breaks the slot's role."""
    inp, lg = m.header.input_tensor, m.header.logits_tensor
    seen = set()
    for i, op in enumerate(m.ops):
        if op.kind in seen:
            continue
        seen.add(op.kind)
        for s, rule in enumerate(SLOTS[op.kind]):
            if rule is not None and rule[0] == LAYER:
                continue  # layer slots: test_fused_layer_slots
            wrong = next(j for j, t in enumerate(m.tensors)
                         if j not in (inp, lg) and (rule is None or t.kind != rule[0]))
            for name, v in (("none", NONE), ("input", inp), ("logits", lg), ("wrong kind", wrong)):
                if v == op.t[s]:
                    continue
                if rule is None:
                    bad = v != NONE
                elif v == NONE:
                    bad = not rule[2]
                elif op.kind == mf.OP_LOSS and s == 0:
                    bad = v != lg
                else:  # the input has no storage to write, every slot but the logits' is written or non-ACT
                    bad = m.tensors[v].kind != rule[0] or v == inp
                if bad:
                    yield i, s, v, name


def test_op_roles(good):
    m = mf.Model.parse(good)
    cases = list(role_mutations(m))
    kinds = {m.ops[i].kind for i, *_ in cases}
    assert kinds == {op.kind for op in m.ops}  # every op kind of the model reached
    for i, s, v, name in cases:
        def fn(mm, i=i, s=s, v=v):
            mm.ops[i].t[s] = v
        got = open_model(edited(good, fn))
        assert got[0] == "op" and got[1].startswith(f"op {i} t{s}: "), (i, s, name, got)


def test_fused_layer_slots(fused):
    m = mf.Model.parse(fused)
    i = next(k for k, op in enumerate(m.ops) if op.kind == mf.OP_FWD_FUSED)
    for s in (mf.FUSED_A, mf.FUSED_C):
        def fn(mm, s=s):
            mm.ops[i].t[s] = len(mm.layers)
        assert_refused(edited(fused, fn), "op", f"op {i} t{s}: layer {len(m.layers)} not among")


def test_op_layer_field(plain):
    m = mf.Model.parse(plain)
    for i, op in enumerate(m.ops):
        v = NONE if op.kind in (mf.OP_FWD, mf.OP_BWD) else 0
        if op.kind in (mf.OP_FWD, mf.OP_BWD, mf.OP_LOSS, mf.OP_GRAD_ADD):
            def fn(mm, i=i, v=v):
                mm.ops[i].layer = v
            assert_refused(edited(plain, fn), "op", f"op {i} layer: ")


def layer_mutations(m):
    inp = m.header.input_tensor
    seen = set()
    for li, L in enumerate(m.layers):
        if L.kind in seen:
            continue
        seen.add(L.kind)
        wrong = next(j for j, t in enumerate(m.tensors) if t.kind != mf.T_ACT)
        for field in ("inp", "in2", "out"):
            used = field != "in2" or L.kind == mf.L_ADD
            for name, v in (("none", NONE), ("input", inp), ("wrong kind", wrong)):
                if v == getattr(L, field):
                    continue
                bad = (v == NONE) == used if v == NONE else (not used or m.tensors[v].kind != mf.T_ACT
                                                              or (field == "out" and v == inp))
                if bad:
                    yield li, field, v, name


def test_layer_roles(good):
    m = mf.Model.parse(good)
    cases = list(layer_mutations(m))
    assert {m.layers[li].kind for li, *_ in cases} == {L.kind for L in m.layers}
    for li, field, v, name in cases:
        def fn(mm, li=li, field=field, v=v):
            setattr(mm.layers[li], field, v)
        label = {"inp": "in"}.get(field, field)
        assert_refused(edited(good, fn), "layer", f"layer {li} {label}: ")


# -- arena ranges: every tensor inside the working part, parameters apart --

def test_every_tensor_past_the_arena_end(good):
    m = mf.Model.parse(good)
    for i, t in enumerate(m.tensors):
        if t.flags & mf.TF_STREAMED:
            continue
        def fn(mm, i=i):
            mm.tensors[i].arena_off = (mm.header.arena_size - mm.tensors[i].size + 4 + 3) // 4 * 4
        assert_refused(edited(good, fn), "arena", f"tensor {i}: ")


def test_every_stored_tensor_in_the_parameter_area(good):
    m = mf.Model.parse(good)
    assert m.header.persist_size > 0
    for i, t in enumerate(m.tensors):
        if stored(t):
            def fn(mm, i=i):
                mm.tensors[i].arena_off = 0
            assert_refused(edited(good, fn), "arena", f"tensor {i}: ")


def test_trained_parameters_apart(plain):
    m = mf.Model.parse(plain)
    trained = [li for li, L in enumerate(m.layers) if L.flags & mf.LF_TRAIN_BIAS]
    assert len(trained) >= 2
    a, b = trained[:2]

    def biases_shared(mm):
        mm.layers[b].b_arena = mm.layers[a].b_arena

    assert_refused(edited(plain, biases_shared), "arena", f"layer {a} trained biases and layer {b} trained biases")
    w = next(li for li, L in enumerate(m.layers) if L.n_train)

    def weights_on_biases(mm):
        mm.layers[w].w_arena = mm.layers[a].b_arena

    assert_refused(edited(plain, weights_on_biases), "arena", "layer ")


# -- aliasing: the tensors one op touches, where one is written, never share bytes --

def touched(m, op):
    """(tensor id, use) of an op, from the format's description of each kind."""
    out = []
    if op.kind == mf.OP_FWD:
        L = m.layers[op.layer]
        out += [(L.inp, R), (L.out, W)] + ([(L.in2, R)] if L.kind == mf.L_ADD else [])
    elif op.kind == mf.OP_FWD_FUSED:
        L = m.layers[op.layer]
        a, c = op.t[mf.FUSED_A], op.t[mf.FUSED_C]
        out += [(m.layers[a].inp if a != NONE else L.inp, R), (m.layers[c].out if c != NONE else L.out, W)]
    for s, rule in enumerate(SLOTS[op.kind]):
        if rule is not None and rule[0] != LAYER and op.t[s] != NONE:
            out.append((op.t[s], rule[1]))
    return [(t, u) for t, u in out if stored(m.tensors[t])]


def test_overlap_of_written_tensors(good):
    m = mf.Model.parse(good)
    n = 0
    for i, op in enumerate(m.ops):
        tt = touched(m, op)
        for a, (ta, ua) in enumerate(tt):
            for tb, ub in tt[a + 1:]:
                if ta == tb or "w" not in ua + ub:
                    continue  # one tensor twice: the add's in-place gradient, or two reads

                def fn(mm, ta=ta, tb=tb):
                    x, y = mm.tensors[ta], mm.tensors[tb]
                    y.arena_off = x.arena_off + (x.size // 2) // 4 * 4  # a partial overlap
                    grow_arena(mm, y)
                got = open_model(edited(good, fn))
                assert got[0] == "arena" and "share arena bytes" in got[1], (i, ta, tb, got)
                n += 1
    assert n >= 20


def test_add_gradient_in_place_allowed_only_for_add(plain):
    m = mf.Model.parse(plain)
    i, op = next((i, o) for i, o in enumerate(m.ops)
                 if o.kind == mf.OP_BWD and m.layers[o.layer].kind == mf.L_CONV and o.t[3] != NONE)

    def conv_in_place(mm):
        x = mm.tensors[op.t[3]]
        x.arena_off = mm.tensors[op.t[0]].arena_off
        grow_arena(mm, x)

    assert_refused(edited(plain, conv_in_place), "arena", f"op {i}: t0")


def one_byte_too_far_cases():
    """Fused ops (stems and blocks with odd row sizes, every fusion side)
    whose largest allowed output shift over the input is 3 mod 4: aligned
    offsets can then land exactly on it minus 3 and one byte past it."""
    import numpy as np
    from tinytrain.builder import NetBuilder
    from tinytrain.compiler import Scheme
    found = {}
    for seed in range(60):
        rng = np.random.default_rng(seed)
        b = NetBuilder((int(rng.integers(5, 16)), int(rng.integers(5, 16)), int(rng.integers(1, 5))), seed=seed)
        b.conv(int(rng.integers(2, 9)), k=int(rng.choice([1, 3])), stride=int(rng.choice([1, 2])), act="relu")
        b.dwconv(int(rng.choice([3, 5])), int(rng.choice([1, 2])), act="relu6")
        b.pointwise(int(rng.integers(1, 12)), act=None)
        b.avgpool()
        b.fc(3)
        g = b.quantize(netzoo.calib(b, n=4, seed=seed))
        head = g.param_layers[-1].name
        for mode in ("all", "producer", "consumer"):
            plan = compile_model(g, Scheme(bias={head}, weights={head: 1.0}), fuse=mode)
            for i, op in enumerate(plan.model.ops):
                if op.kind == mf.OP_FWD_FUSED and mode not in found:
                    x = plan.model.tensors[fused_rows.fused_io(plan.model, op)[0]]
                    shift = fused_rows.largest_shift(plan.model, op)
                    if shift % 4 == 3 and shift < x.size:
                        found[mode] = (plan.data, i, shift)
        if len(found) == 3:
            return list(found.values())
    raise AssertionError(f"only {sorted(found)} found")


def test_fused_output_one_byte_too_far_over_input_refused():
    """A fused op's output may start over its input up to the row rule's
    limit (docs/format.md, "Fused ops"); one byte further it would overwrite
    input the op still reads: refused at open, naming the op and both."""
    for data, i, shift in one_byte_too_far_cases():
        m = mf.Model.parse(data)
        xi, yi = fused_rows.fused_io(m, m.ops[i])
        assert open_model(fused_rows.with_output_at(data, i, shift - 3)) == ("ok", "")
        assert_refused(fused_rows.with_output_at(data, i, shift + 1), "arena",
                       f"op {i}: in (tensor {xi}) and out (tensor {yi}) share arena bytes")


# -- the value ranges behind the overflow bounds --

def test_weight_min_refused_in_every_conv(good):
    m = mf.Model.parse(good)
    for li, L in enumerate(m.layers):
        if L.kind in (mf.L_CONV, mf.L_DWCONV):
            def fn(mm, L=L):
                blob = bytearray(mm.blob)
                blob[L.w_off] = 0x80
                mm.blob = bytes(blob)
            assert_refused(edited(good, fn), "quant", f"layer {li}: weight 0 is -128")


@pytest.mark.parametrize("value", [(1 << 30) + 1, -(1 << 30) - 1, 2**31 - 1, -2**31])
def test_trained_bias_range_in_every_layer(plain, value):
    m = mf.Model.parse(plain)
    for li, L in enumerate(m.layers):
        if L.flags & mf.LF_TRAIN_BIAS:
            def fn(mm, L=L):
                blob = bytearray(mm.blob)
                struct.pack_into("<i", blob, L.b_off + 4 * (mm.tensors[L.out].c - 1), value)
                mm.blob = bytes(blob)
            assert_refused(edited(plain, fn), "quant", f"layer {li}: trained bias")


def test_trained_bias_at_the_limit_opens(plain):
    m = mf.Model.parse(plain)
    L = next(L for L in m.layers if L.flags & mf.LF_TRAIN_BIAS)

    def fn(mm):
        blob = bytearray(mm.blob)
        struct.pack_into("<i", blob, L.b_off, -(1 << 30))
        mm.blob = bytes(blob)
    assert open_model(edited(plain, fn))[0] == "ok"


def test_pool_sum_bound(plain):
    """A pool over 2902 x 2902 positions: 255 * h * w passes 2^31."""
    m = mf.Model.parse(plain)
    li = next(li for li, L in enumerate(m.layers) if L.kind == mf.L_AVGPOOL)

    def fn(mm):
        c = mm.tensors[mm.layers[li].inp].c
        t = mf.TensorRec(mm.header.arena_size, 2902 * 2902 * c, mf.T_ACT, 0, 2902, 2902, c, 0.1, 0)
        mm.tensors.append(t)
        mm.layers[li].inp = len(mm.tensors) - 1
        grow_arena(mm, t)
    assert_refused(edited(plain, fn), "shape", f"layer {li}: pool of 2902x2902")


# -- parameters loaded later meet the same value ranges as the model's own --

def params_file(t, tmp_path, edit=None):
    path = tmp_path / "p.ttps"
    t.save(str(path))
    b = bytearray(path.read_bytes())
    if edit:
        edit(b)
        struct.pack_into("<I", b, len(b) - 4, zlib.crc32(bytes(b[:-4])))
    return bytes(b)


@pytest.mark.parametrize("which", ["plain", "plain32"])
def test_loaded_parameters_checked(which, request, tmp_path):
    import numpy as np
    import tinytrain
    plain = request.getfixturevalue(which)
    m = mf.Model.parse(plain)
    t = tinytrain.Trainer(plain)
    x = np.zeros(m.tensors[m.header.input_tensor].numel, np.int8).tobytes()
    for k in range(3):
        t.step(x, k % m.header.n_classes)
    t.load(params_file(t, tmp_path))  # what training produced loads again
    before = t.params()
    for li, L in enumerate(m.layers):
        cases = []
        if L.n_train:
            cases.append((L.w_arena, b"\x80", f"layer {li}: trained weight 0 is -128"))
        if L.flags & mf.LF_TRAIN_BIAS and not L.flags & mf.LF_BIAS16:  # an int16 change has no such value
            for v in ((1 << 30) + 1, -(1 << 30) - 1):
                cases.append((L.b_arena, struct.pack("<i", v), f"layer {li}: trained bias 0 beyond"))
        for off, value, message in cases:
            def edit(b, off=off, value=value):
                b[20 + off:20 + off + len(value)] = value
            with pytest.raises(ValueError, match=rf"^{message}.* in the parameter file$"):
                t.load(params_file(t, tmp_path, edit))
            assert t.params() == before  # refused before the trainer is touched


# -- format 2.2: trained biases as int16 changes (LF_BIAS16) ---------------------

def _bias16_layers(m):
    return [li for li, L in enumerate(m.layers) if L.flags & mf.LF_BIAS16]


def test_bias16_chosen_and_sized(plain, plain32):
    """The compiler's default keeps these biases as int16 changes, 2 bytes each; bias16=False int32."""
    m, m32 = mf.Model.parse(plain), mf.Model.parse(plain32)
    trained = [li for li, L in enumerate(m.layers) if L.flags & mf.LF_TRAIN_BIAS]
    assert _bias16_layers(m) == trained and not _bias16_layers(m32)
    couts = sum(m.tensors[m.layers[li].out].c for li in trained)
    assert m32.header.persist_size - m.header.persist_size >= 2 * couts - 2 * len(trained)
    assert (m.header.version_major, m.header.version_minor) >= (2, 2)
    assert open_model(plain)[0] == "ok" and open_model(plain32)[0] == "ok"


def test_bias16_without_trained_biases_refused(plain):
    m = mf.Model.parse(plain)
    for li in _bias16_layers(m):
        def fn(mm, li=li):
            mm.layers[li].flags &= ~mf.LF_TRAIN_BIAS
        assert_refused(edited(plain, fn), "layer", f"layer {li}: int16 bias changes without trained biases")


def test_bias16_on_a_layer_without_parameters_refused(plain):
    m = mf.Model.parse(plain)
    for li, L in enumerate(m.layers):
        if L.kind not in (mf.L_CONV, mf.L_DWCONV):
            def fn(mm, li=li):
                mm.layers[li].flags |= mf.LF_BIAS16
            assert_refused(edited(plain, fn), "layer", f"layer {li}: unknown flags")


def test_bias16_range_sized_by_the_flag(plain):
    """2 bytes a channel inside the parameter area, 2-aligned; clearing the
    flag makes the layer's biases int32, 4 bytes a channel: they no longer
    fit where they are."""
    m = mf.Model.parse(plain)
    persist = m.header.persist_size
    for li in _bias16_layers(m):
        cout = m.tensors[m.layers[li].out].c

        def past_end(mm, li=li, cout=cout):
            mm.layers[li].b_arena = persist - 2 * cout + 2

        def odd(mm, li=li):
            mm.layers[li].b_arena += 1

        def as_int32(mm, li=li):
            mm.layers[li].flags &= ~mf.LF_BIAS16

        assert_refused(edited(plain, past_end), "arena", f"layer {li}: trained biases outside the parameter area")
        assert_refused(edited(plain, odd), "arena", f"layer {li}: trained biases outside the parameter area")
        assert open_model(edited(plain, as_int32))[0] == "arena"


def test_bias16_file_bias_still_bounded(plain):
    """The int16 change adds to the file's int32 bias: that one keeps the +-2^30 rule."""
    m = mf.Model.parse(plain)
    li = _bias16_layers(m)[0]
    L = m.layers[li]
    for value, status in (((1 << 30) + 1, "quant"), (-(1 << 30), "ok")):
        def fn(mm, value=value):
            blob = bytearray(mm.blob)
            struct.pack_into("<i", blob, L.b_off, value)
            mm.blob = bytes(blob)
        assert open_model(edited(plain, fn))[0] == status


def test_bias16_extremes_load(plain, tmp_path):
    """Every int16 change is a valid parameter: the int16 limits load."""
    import numpy as np
    import tinytrain
    m = mf.Model.parse(plain)
    t = tinytrain.Trainer(plain)
    li = _bias16_layers(m)[-1]
    L = m.layers[li]
    cout = m.tensors[L.out].c

    def edit(b):
        vals = np.resize(np.array([-32768, 32767], "<i2"), cout)
        b[20 + L.b_arena:20 + L.b_arena + 2 * cout] = vals.tobytes()
    t.load(params_file(t, tmp_path, edit))
    got = np.frombuffer(t.params(), "<i2", cout, L.b_arena)
    assert got[0] == -32768 and got[1] == 32767


# -- format 2.1: windowed pools and activation tables ---------------------------
@pytest.fixture(scope="module")
def tutorial():
    """Max pool, windowed average pools (one counting its padding) and tables, every layer trained."""
    _, _, plan = netzoo.build("tutorial", "full", seed=1)
    return plan.data


def _layer(kind, nth=0):
    def pick(m):
        return [i for i, L in enumerate(m.layers) if L.kind == kind][nth]
    return pick


def _set(kind, **fields):
    def f(m):
        L = m.layers[_layer(kind)(m)]
        for k, v in fields.items():
            setattr(L, k, v(L) if callable(v) else v)
    return f


def _bwd_slot(kind, slot):
    def f(m):
        li = _layer(kind)(m)
        next(o for o in m.ops if o.kind == mf.OP_BWD and o.layer == li).t[slot] = NONE
    return f


def _maxpool_requantises(m):
    L = m.layers[_layer(mf.L_MAXPOOL)(m)]
    m.tensors[L.out].zero += 1


def _avgpool_negative_multiplier(m, blob):
    L = m.layers[_layer(mf.L_AVGPOOL2D)(m)]
    struct.pack_into("<i", blob, L.mult_off + 4, -1)


NEW_LAYER_RULES = {
    "max pool without kernel": (_set(mf.L_MAXPOOL, kh=0), "layer", "layer "),
    "max pool padding a whole kernel": (_set(mf.L_MAXPOOL, pad_top=lambda L: L.kh), "layer", "layer "),
    "max pool windows past the input": (_set(mf.L_MAXPOOL, stride=9), "shape", "layer "),
    "max pool requantises": (_maxpool_requantises, "quant", "layer "),
    "max pool trains biases": (_set(mf.L_MAXPOOL, flags=mf.LF_TRAIN_BIAS), "layer", "layer "),
    "count_pad on a max pool": (_set(mf.L_MAXPOOL, flags=mf.LF_COUNT_PAD), "layer", "layer "),
    "average pool multipliers outside the blob": (_set(mf.L_AVGPOOL2D, mult_off=lambda L: 1 << 24), "blob",
                                                  "layer "),
    "average pool negative multiplier": (with_blob(_avgpool_negative_multiplier), "quant", "layer "),
    "average pool shift 0": (with_blob(lambda m, blob: blob.__setitem__(
        m.layers[_layer(mf.L_AVGPOOL2D)(m)].shift_off, 0)), "quant", "layer "),
    "table outside the blob": (_set(mf.L_LUT, w_off=lambda L: 1 << 24), "blob", "layer "),
    "derivative table misaligned": (_set(mf.L_LUT, gscale_off=lambda L: L.gscale_off + 1), "blob", "layer "),
    "derivative shift 63": (_set(mf.L_LUT, shift=63), "quant", "layer "),
    "table trains weights": (_set(mf.L_LUT, n_train=1), "layer", "layer "),
    "max pool backward without saved input": (_bwd_slot(mf.L_MAXPOOL, mf.BWD_SAVED), "op", "op "),
    "table backward without saved input": (_bwd_slot(mf.L_LUT, mf.BWD_SAVED), "op", "op "),
    "table backward without input gradient": (_bwd_slot(mf.L_LUT, mf.BWD_IN_GRAD), "op", "op "),
    "average pool backward without input gradient": (_bwd_slot(mf.L_AVGPOOL2D, mf.BWD_IN_GRAD), "op", "op "),
}


def test_tutorial_model_opens(tutorial):
    assert open_model(tutorial)[0] == "ok"


@pytest.mark.parametrize("case", sorted(NEW_LAYER_RULES))
def test_pool_and_table_rules(tutorial, case):
    fn, status, message = NEW_LAYER_RULES[case]
    assert_refused(edited(tutorial, fn), status, message)


def test_table_shaped_unlike_its_input_refused(tutorial):
    """A table whose output is another tensor of another shape."""
    def f(m):
        L = m.layers[_layer(mf.L_LUT)(m)]
        L.out = next(i for i, t in enumerate(m.tensors) if t.kind == mf.T_ACT and t.numel != m.tensors[L.inp].numel
                     and i not in (L.inp, m.header.input_tensor))
    assert_refused(edited(tutorial, f), "shape", "layer ")


# -- format 2.3: a fused op's prepared constants (t5 FUSED_PREP and the op flags) --------

def _prep_op(m):
    return next((i, op) for i, op in enumerate(m.ops) if op.t[mf.FUSED_PREP] != NONE)


def test_prepared_constants_refused_when_inconsistent(fused_prep):
    """t5 holds exactly the parts the flags name (docs/format.md, "Prepared
    constants"): its size, alignment and place, and the flags themselves."""
    m = mf.Model.parse(fused_prep)
    i, op = _prep_op(m)
    p, flags = op.t[mf.FUSED_PREP], op.flags
    size = m.tensors[p].size
    assert open_model(fused_prep) == ("ok", "")

    def resized(d):
        def fn(mm):
            t = mm.tensors[p]
            t.c += d
            t.size += d
            grow_arena(mm, t)
        return fn

    def moved(to):
        def fn(mm):
            mm.tensors[p].arena_off = to(mm)
            grow_arena(mm, mm.tensors[p])
        return fn

    def set_op(j, **kw):
        def fn(mm):
            for k, v in kw.items():
                if k == "t5":
                    mm.ops[j].t[mf.FUSED_PREP] = v
                else:
                    setattr(mm.ops[j], k, v)
        return fn

    assert_refused(edited(fused_prep, resized(-4)), "op", f"op {i} t5: {size - 4} bytes, the flags name {size}")
    assert_refused(edited(fused_prep, resized(4)), "op", f"op {i} t5: {size + 4} bytes, the flags name {size}")
    arena_end = (m.header.arena_size + 3) // 4 * 4
    assert_refused(edited(fused_prep, moved(lambda mm: arena_end + 2)), "arena", f"tensor {p}: [{arena_end + 2}, ")
    mm = mf.Model.parse(fused_prep)
    mm.tensors[p].arena_off = arena_end  # past the arena's end
    assert_refused(mm.pack(), "arena", f"tensor {p}: [{arena_end}, ")
    assert_refused(edited(fused_prep, set_op(i, flags=0)), "op", f"op {i}: t5 and the flags (0) disagree")
    assert_refused(edited(fused_prep, set_op(i, t5=NONE)), "op", f"op {i}: t5 and the flags ({flags}) disagree")
    assert_refused(edited(fused_prep, set_op(i, flags=flags | 8)), "op", f"op {i}: unknown flags {flags | 8}")
    j = next(k for k, o in enumerate(m.ops) if o.kind != mf.OP_FWD_FUSED)
    assert_refused(edited(fused_prep, set_op(j, flags=mf.FUSED_PREP_B)), "op", f"op {j}: unknown flags 2")
    parts = dict(fused_rows.prep_parts(m, op))
    absent = next(f for f in (mf.FUSED_PREP_A, mf.FUSED_PREP_B, mf.FUSED_PREP_C) if f not in parts)
    assert_refused(edited(fused_prep, set_op(i, flags=flags | absent)), "op",
                   f"op {i}: flag {absent} names a layer without prepared constants")


def test_prepared_constants_overlap_refused(fused_prep):
    """The slot is written by its op: it may share no byte with the op's input,
    output, ring, row or mask."""
    m = mf.Model.parse(fused_prep)
    i, op = _prep_op(m)
    others = [t for t, _ in touched(m, op) if t != op.t[mf.FUSED_PREP]]
    assert others
    for t in others:
        def fn(mm, t=t):
            mm.tensors[op.t[mf.FUSED_PREP]].arena_off = mm.tensors[t].arena_off // 4 * 4
        got = open_model(edited(fused_prep, fn))
        assert got[0] == "arena" and "share arena bytes" in got[1] and "t5" in got[1], (t, got)


def test_forward_prepared_constants_refused_when_inconsistent(fwd_prep):
    """A forward op's t2 holds exactly its layer's prepared constants, and
    only a layer that can have them has it."""
    m = mf.Model.parse(fwd_prep)
    i, op = next((i, o) for i, o in enumerate(m.ops) if o.kind == mf.OP_FWD and o.t[mf.FWD_PREP] != NONE)
    p = op.t[mf.FWD_PREP]
    size = m.tensors[p].size
    assert open_model(fwd_prep) == ("ok", "")
    for d in (-4, 4):
        def resized(mm, d=d):
            mm.tensors[p].c += d
            mm.tensors[p].size += d
            grow_arena(mm, mm.tensors[p])
        assert_refused(edited(fwd_prep, resized), "op",
                       f"op {i} t2: {size + d} bytes, the layer's prepared constants take {size}")
    j = next(k for k, o in enumerate(m.ops) if o.kind == mf.OP_FWD and not fused_rows.prep_parts(m, o)
             and m.layers[o.layer].kind == mf.L_CONV)

    def elsewhere(mm):
        mm.ops[i].t[mf.FWD_PREP] = NONE
        mm.ops[j].t[mf.FWD_PREP] = p
    assert_refused(edited(fwd_prep, elsewhere), "op", f"op {j} t2: {size} bytes, the layer's prepared constants take 0")
