"""Self-checks of the numpy reference (host_tools/tinytrain/reference.py) that
need no C core: primitives on edge cases, a forward pass against direct float
computation, mask packing, the softmax/MSE losses against float maths, and the
backward pass of a small hand-built network against float backpropagation."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "host_tools"))

from tinytrain import modelfile as mf  # noqa: E402
from tinytrain import reference as ref  # noqa: E402
from tinytrain.reference import Reference  # noqa: E402

F32 = np.float32


# ---------------------------------------------------------------------------
# A small model builder (test-only)
# ---------------------------------------------------------------------------

def qmult(real):
    """(mult, shift) with mult in [2^30, 2^31) and mult / 2^shift ~= real."""
    m, e = math.frexp(real)
    mult, shift = round(m * 2 ** 31), 31 - e
    if mult == 2 ** 31:
        mult, shift = mult // 2, shift - 1
    assert 1 <= shift <= 62
    return mult, shift


def align4(n):
    return (n + 3) & ~3


class Net:
    """Builds a model file: layers in forward order, backward ops by hand."""

    def __init__(self, loss_kind=mf.LOSS_SOFTMAX_CE, lr=0.01):
        self.tensors, self.layers, self.fwd_ops, self.bwd_ops = [], [], [], []
        self.blob = mf.Blob()
        self.persist = 0
        self.loss_kind, self.lr = loss_kind, lr
        self.info = {}       # layer index -> dict for float checks
        self.fwd_of = {}     # layer index -> its FWD op

    def tensor(self, kind, h, w, c, scale=0.0, zero=0, flags=0):
        n = h * w * c
        size = {mf.T_ACT: n, mf.T_GRAD: 4 + 2 * n, mf.T_MASK: (n + 7) // 8, mf.T_SAVED: n}[kind]
        self.tensors.append(mf.TensorRec(0, size, kind, flags, h, w, c, float(F32(scale)), zero))
        return len(self.tensors) - 1

    def input(self, h, w, c, scale, zero):
        self.inp = self.tensor(mf.T_ACT, h, w, c, scale, zero)
        return self.inp

    def _param(self, nbytes):
        off = self.persist
        self.persist += align4(nbytes)
        return off

    def _finish_layer(self, rec, out, n_train, info):
        li = len(self.layers)
        self.layers.append(rec)
        tout = self.tensors[out]
        mask = self.tensor(mf.T_MASK, tout.h, tout.w, tout.c)
        saved = mf.NONE
        if n_train:
            tin = self.tensors[rec.inp]
            saved = self.tensor(mf.T_SAVED, tin.h, tin.w, n_train)
        op = mf.OpRec(mf.OP_FWD, li, [mask, saved] + [mf.NONE] * 4)
        self.fwd_ops.append(op)
        self.fwd_of[li] = op
        self.info[li] = info
        return li, out

    def conv(self, x, w, s_w, b, s_y, z_y, stride=1, pad=0, act=(-128, 127), train=(),
             flags=0, depthwise=False, lr_scale=1.0):
        """w: logical int weights, conv [cout][k][k][cin], depthwise [c][k][k]."""
        tin = self.tensors[x]
        w = np.asarray(w, dtype=np.int64)
        k = w.shape[1]
        cout = w.shape[0]
        oh = (tin.h + 2 * pad - k) // stride + 1
        ow = (tin.w + 2 * pad - k) // stride + 1
        out = self.tensor(mf.T_ACT, oh, ow, cout, s_y, z_y)
        nperm = cout if depthwise else tin.c
        train = sorted(train)
        perm = np.array(train + [c for c in range(nperm) if c not in train], dtype=np.uint16)
        w_st = w[perm] if depthwise else w[..., perm]
        s_w = np.asarray(s_w, dtype=np.float64)
        s_x = float(F32(tin.scale))
        sy = float(F32(s_y))
        mults, shifts = zip(*(qmult(s_x * sw / sy) for sw in s_w))
        gs = np.minimum(np.round(s_w / s_w.max() * 2 ** 31), 2 ** 31 - 1).astype(np.int32)
        bl = self.blob
        rec = mf.LayerRec(
            kind=mf.L_DWCONV if depthwise else mf.L_CONV, kh=k, kw=k, stride=stride,
            pad_top=pad, pad_left=pad, flags=flags, inp=x, out=out, n_train=len(train),
            act_min=act[0], act_max=act[1],
            w_off=bl.add(w_st.astype(np.int8)), b_off=bl.add(np.asarray(b, dtype=np.int32)),
            mult_off=bl.add(np.array(mults, dtype=np.int32)),
            shift_off=bl.add(np.array(shifts, dtype=np.int8)),
            gscale_off=bl.add(gs), wscale_max=float(F32(s_w.max())),
                    wscale_off=bl.add(s_w.astype(np.float32)),
            perm_off=bl.add(perm),
            qas_w_off=bl.add((s_x / s_w).astype(np.float32)),
            qas_b_off=bl.add((1.0 / (s_w * s_x)).astype(np.float32)),
            lr_scale=lr_scale)
        nt = len(train)
        if nt:
            nw = cout * k * k * nt
            rec.w_arena = self._param(nw)
            if flags & mf.LF_RESIDUE:
                rec.wres_arena = self._param(nw)
        if flags & mf.LF_TRAIN_BIAS:
            rec.b_arena = self._param(4 * cout)
        info = dict(w=w, s_w=s_w, perm=perm.astype(np.intp), k=k, stride=stride, pad=pad,
                    depthwise=depthwise, w_st=w_st, b=np.asarray(b, dtype=np.int64))
        return self._finish_layer(rec, out, nt, info)

    def add(self, a, b, s_y, z_y, act=(-128, 127), shift=20):
        ta, tb = self.tensors[a], self.tensors[b]
        out = self.tensor(mf.T_ACT, ta.h, ta.w, ta.c, s_y, z_y)
        sy = float(F32(s_y))
        rec = mf.LayerRec(kind=mf.L_ADD, inp=a, in2=b, out=out, act_min=act[0], act_max=act[1],
                          mult_a=round(float(F32(ta.scale)) / sy * 2 ** shift),
                          mult_b=round(float(F32(tb.scale)) / sy * 2 ** shift), shift=shift)
        return self._finish_layer(rec, out, 0, {})

    def pool(self, x, s_y, z_y, act=(-128, 127), shift=24):
        t = self.tensors[x]
        out = self.tensor(mf.T_ACT, 1, 1, t.c, s_y, z_y)
        m = round(float(F32(t.scale)) / (t.h * t.w * float(F32(s_y))) * 2 ** shift)
        rec = mf.LayerRec(kind=mf.L_AVGPOOL, inp=x, out=out, act_min=act[0], act_max=act[1],
                          mult_a=m, shift=shift)
        return self._finish_layer(rec, out, 0, {})

    def grad(self, t):
        tr = self.tensors[t]
        return self.tensor(mf.T_GRAD, tr.h, tr.w, tr.c)

    def loss(self, logits, g):
        self.logits = logits
        self.bwd_ops.append(mf.OpRec(mf.OP_LOSS, mf.NONE, [logits, g] + [mf.NONE] * 4))

    def bwd(self, li, g_out, g_in=mf.NONE, g_in2=mf.NONE):
        f = self.fwd_of[li]
        self.bwd_ops.append(mf.OpRec(mf.OP_BWD, li, [g_out, f.t[0], f.t[1], g_in, g_in2, mf.NONE]))

    def grad_add(self, a, b):
        self.bwd_ops.append(mf.OpRec(mf.OP_GRAD_ADD, mf.NONE, [a, b] + [mf.NONE] * 4))

    def pack(self):
        lt = self.tensors[self.logits]
        exp_off = mf.NO_OFFSET
        if self.loss_kind == mf.LOSS_SOFTMAX_CE:
            sy = float(F32(lt.scale))
            table = np.array([round(2 ** 30 * math.exp(-sy * d)) for d in range(256)],
                             dtype=np.uint32)
            exp_off = self.blob.add(table)
        off = self.persist
        for t in self.tensors:  # each its own bytes, the input too
            t.arena_off = off
            off += align4(t.size)
        hdr = mf.Header(n_fwd_ops=len(self.fwd_ops), arena_size=off, persist_size=self.persist,
                        input_tensor=self.inp, logits_tensor=self.logits, n_classes=lt.numel,
                        loss_kind=self.loss_kind, lr=self.lr, exp_table_off=exp_off)
        model = mf.Model(hdr, self.tensors, self.layers, self.fwd_ops + self.bwd_ops,
                         bytes(self.blob.data))
        return model.pack()


def fc_model(rng, n_in=8, n_out=4, loss_kind=mf.LOSS_SOFTMAX_CE, s_x=0.05, z_x=-3,
             s_w=None, s_y=0.1, z_y=2, w=None, b=None, flags=mf.LF_TRAIN_BIAS, act=(-128, 127)):
    net = Net(loss_kind)
    x = net.input(1, 1, n_in, s_x, z_x)
    if w is None:
        w = rng.integers(-127, 128, size=(n_out, 1, 1, n_in))
    if s_w is None:
        s_w = rng.uniform(0.005, 0.02, size=n_out)
    if b is None:
        b = rng.integers(-2000, 2000, size=n_out)
    li, y = net.conv(x, w, s_w, b, s_y, z_y, train=range(n_in), flags=flags, act=act)
    g = net.grad(y)
    net.loss(y, g)
    net.bwd(li, g)
    return net, net.pack()


def deep_model(rng, lr=0.02):
    """conv3x3/s2 (2 of 3 channels trained, residue) -> dw3x3 (3 of 6 trained)
    -> add(conv, dw) -> avgpool -> fc (all trained), CE."""
    net = Net(mf.LOSS_SOFTMAX_CE, lr=lr)
    x = net.input(5, 5, 3, 0.02, 5)
    l1, c1 = net.conv(x, rng.integers(-60, 61, size=(6, 3, 3, 3)), rng.uniform(0.008, 0.015, 6),
                      rng.integers(-3000, 3000, 6), 0.05, -100, stride=2, pad=1, act=(-100, 127),
                      train=(2, 0), flags=mf.LF_TRAIN_BIAS | mf.LF_RESIDUE)
    l2, d2 = net.conv(c1, rng.integers(-90, 91, size=(6, 3, 3)), rng.uniform(0.005, 0.01, 6),
                      rng.integers(-1000, 1000, 6), 0.05, -100, pad=1, act=(-100, 127),
                      train=(1, 3, 4), flags=mf.LF_TRAIN_BIAS, depthwise=True)
    l3, a3 = net.add(c1, d2, 0.08, -20, act=(-128, 120))
    l4, p4 = net.pool(a3, 0.04, 3)
    l5, y = net.conv(p4, rng.integers(-127, 128, size=(5, 1, 1, 6)), rng.uniform(0.01, 0.03, 5),
                     rng.integers(-500, 500, 5), 0.1, 0, train=range(6), flags=0)
    g5, g4, g3, g_c1a, g_d2, g_c1b = (net.grad(t) for t in (y, p4, a3, c1, d2, c1))
    net.loss(y, g5)
    net.bwd(l5, g5, g4)
    net.bwd(l4, g4, g3)
    net.bwd(l3, g3, g_c1a, g_d2)
    net.bwd(l2, g_d2, g_c1b)
    net.grad_add(g_c1a, g_c1b)
    net.bwd(l1, g_c1a)
    return net, net.pack()


# ---------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------

def test_rs_edge_cases():
    cases = [(3, 1, 2), (-3, 1, -1), (1, 1, 1), (-1, 1, 0), (6, 2, 2), (-6, 2, -1),
             (-5, 2, -1), (-7, 2, -2), (5, 2, 1), (0, 5, 0), ((1 << 61) + (1 << 30), 31, (1 << 30) + 1),
             (-(1 << 40), 40, -1), (-(1 << 40) - (1 << 39), 40, -1)]
    for v, s, want in cases:
        assert ref.rs(v, s) == want, (v, s)
        assert int(ref.rs(np.array([v], dtype=np.int64), s)[0]) == want, (v, s)
    v = np.arange(-1000, 1000, dtype=np.int64)
    for s in (1, 2, 3, 7):
        assert np.array_equal(ref.rs(v, s), np.floor(v / 2 ** s + 0.5).astype(np.int64))
    # per-element shift (broadcast)
    assert list(ref.rs(np.array([5, 5, 5]), np.array([1, 2, 3]))) == [3, 1, 1]


def test_bitlen():
    vals = [0, 1, -1, 2, 3, 255, 256, -256, (1 << 24) - 1, 1 << 24, (1 << 62) + 5, -(1 << 62),
            (1 << 63) - 1]
    for v in vals:
        assert ref.bitlen(v) == abs(v).bit_length()
    arr = ref.bitlen(np.array(vals, dtype=np.int64))
    assert list(arr) == [abs(v).bit_length() for v in vals]


def test_pow2_exact():
    for e in range(-149, 128):
        p = ref.pow2(e)
        assert isinstance(p, np.float32)
        assert float(p) == math.ldexp(1.0, e)
    with pytest.raises(ValueError):
        ref.pow2(128)


def test_f32_i64():
    cases = {
        0: 0.0, 1: 1.0, -7: -7.0,
        (1 << 24) - 1: float((1 << 24) - 1), -(1 << 24): -float(1 << 24),
        (1 << 24) + 1: float((1 << 24) + 2),        # round half UP (RNE would give 2^24)
        -((1 << 24) + 1): -float(1 << 24),          # half up is toward +inf
        (1 << 24) + 3: float((1 << 24) + 4),
        -((1 << 24) + 3): -float((1 << 24) + 2),    # RNE would give -(2^24+4)
        (1 << 62) + (1 << 38): float(((1 << 23) + 1) << 39),
        (1 << 63) - 1: float(1 << 63),
        -(1 << 62): -float(1 << 62),
    }
    for a, want in cases.items():
        got = ref.f32_i64(a)
        assert isinstance(got, np.float32)
        assert float(got) == want, (a, float(got), want)
    arr = ref.f32_i64(np.array(list(cases), dtype=np.int64))
    assert arr.dtype == np.float32
    assert [float(v) for v in arr] == list(cases.values())
    # array and scalar paths agree; values <= 24 bits are exact
    rng = np.random.default_rng(1)
    vals = np.concatenate([rng.integers(-(1 << 40), 1 << 40, 500), rng.integers(-(1 << 24), 1 << 24, 500)])
    arr = ref.f32_i64(vals)
    for v, f in zip(vals.tolist(), arr):
        assert f == ref.f32_i64(v)
        n = abs(v).bit_length()
        if n <= 24:
            assert float(f) == v
        else:
            assert float(f) == ref.rs(v, n - 24) * 2.0 ** (n - 24)


def test_rint_sat():
    nan, inf = float("nan"), float("inf")
    cases = [(0.5, 255, 0), (1.5, 255, 2), (2.5, 255, 2), (-0.5, 255, 0), (-1.5, 255, -2),
             (-2.5, 255, -2), (0.49999997, 255, 0), (254.5, 255, 254), (253.5, 255, 254),
             (254.6, 255, 255), (255.0, 255, 255), (1e9, 255, 255), (-255.0, 255, -255),
             (-300.0, 255, -255), (nan, 255, 0), (inf, 255, 255), (-inf, 255, -255),
             (-0.0, 255, 0), (2.0 ** 30, 2 ** 30, 2 ** 30), (1073741760.0, 2 ** 30, 1073741760),
             (-1073741760.0, 2 ** 30, -1073741760), (3e38, 2 ** 30, 2 ** 30),
             (65534.5, 65535, 65534), (-70000.0, 65535, -65535), (1e-45, 255, 0)]
    for u, lim, want in cases:
        got = ref.rint_sat(F32(u), lim)
        assert int(got) == want, (u, lim, got)
    arr = ref.rint_sat(np.array([c[0] for c in cases if c[1] == 255], dtype=np.float32), 255)
    assert list(arr) == [c[2] for c in cases if c[1] == 255]


def test_ln_fixed():
    assert float(ref.ln_fixed(1)) == 0.0
    vals = list(range(2, 3000)) + [(1 << k) + d for k in range(2, 63) for d in (-1, 0, 1)]
    vals += [int(v) for v in np.random.default_rng(2).integers(1, 1 << 62, 2000)]
    for n in vals:
        got = ref.ln_fixed(n)
        assert isinstance(got, np.float32)
        want = math.log(n)
        assert abs(float(got) - want) <= 1e-6 * want, (n, float(got), want)


def test_q31_and_grad_add():
    assert ref.q31(F32(1.0)) == (1 << 30, 30)
    assert ref.q31(F32(0.5)) == (1 << 30, 31)
    assert ref.q31(F32(0.75)) == (3 << 29, 31)
    m, sh = ref.q31(F32(0.1))
    assert (1 << 30) <= m < (1 << 31) and abs(m / 2 ** sh - float(F32(0.1))) == 0
    assert ref.q31(F32(2.0 ** -40))[0] == 0          # sh = 70 out of range
    assert ref.q31(F32(2.0 ** -32)) == (1 << 30, 62)  # still in range
    assert ref.q31(F32(1e-45))[0] == 0                # subnormal

    a = np.array([10, -10, 7, 0, 32767], dtype=np.int64)
    b = np.array([4, 5, -3, 1, 32767], dtype=np.int64)
    v, s = ref.grad_add(a, F32(0.25), b, F32(0))
    assert np.array_equal(v, a) and s == F32(0.25)
    v, s = ref.grad_add(a, F32(0), b, F32(0.25))
    assert np.array_equal(v, b) and s == F32(0.25)
    v, s = ref.grad_add(a, F32(1.0), b, F32(0.5))     # a/2 + b/4, scale 2
    assert s == F32(2.0)
    assert list(v) == [ref.rs(x, 1) + ref.rs(y, 2) for x, y in zip(a.tolist(), b.tolist())]
    v2, s2 = ref.grad_add(b, F32(0.5), a, F32(1.0))   # symmetric branch
    assert s2 == F32(2.0) and np.array_equal(v, v2)
    v, s = ref.grad_add(a, F32(1.0), b, F32(1.0))      # equal scales: (a + b) / 2 each rounded
    assert list(v) == [min(ref.rs(x, 1) + ref.rs(y, 1), 32767)
                       for x, y in zip(a.tolist(), b.tolist())]
    assert v[-1] == 32767                            # 16384 + 16384 saturates to int16
    # b negligible: m = 0
    v, s = ref.grad_add(a, F32(1.0), b, F32(2.0 ** -40))
    assert list(v) == [ref.rs(x, 1) for x in a.tolist()] and s == F32(2.0)
    # real values are preserved to within rounding
    rng = np.random.default_rng(3)
    a = rng.integers(-32767, 32768, 100)
    b = rng.integers(-32767, 32768, 100)
    sa, sb = F32(3e-5), F32(7e-6)
    v, s = ref.grad_add(a, sa, b, sb)
    real = a * float(sa) + b * float(sb)
    assert np.max(np.abs(v * float(s) - real)) <= 1.01 * float(s)


def test_to_int16():
    """to16 keeps 15 significant bits of the largest value, rounds each value to
    the nearest step, never leaves the symmetric int16 range, and folds the step
    into the scale."""
    rng = np.random.default_rng(5)
    for bits in (1, 8, 15, 16, 17, 24, 31, 40, 55):
        v = rng.integers(-(1 << bits) + 1, 1 << bits, 200)
        v[0] = (1 << bits) - 1                            # the largest magnitude is present
        G, s = ref.to_int16(v, F32(0.75))
        e = max(bits - 15, 0)
        assert s == F32(0.75 * 2.0 ** e)
        assert np.all(np.abs(G) <= 32767)
        err = np.abs(G * 2.0 ** e - v)
        inside = np.abs(G) < 32767
        assert np.max(err[inside]) <= 2.0 ** e / 2                 # round to nearest
        assert np.max(err, initial=0) <= 1.5 * 2.0 ** e            # or saturated from 32768
        assert np.abs(G).max() >= (1 << 14) if bits >= 15 else np.array_equal(G, v)
    # rounding that reaches 2^15 saturates, on both sides
    G, s = ref.to_int16(np.array([65535, -65535, 1]), F32(1))
    assert list(G) == [32767, -32767, 1] and s == F32(2)  # ties round up
    G, s = ref.to_int16(np.zeros(5, np.int64), F32(3))
    assert not G.any() and s == F32(0)


def test_pack_mask():
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 0, 1], dtype=bool)
    packed = ref.pack_mask(bits)
    assert packed.dtype == np.uint8
    assert list(packed) == [0b10001101, 0b00000101]
    assert np.array_equal(ref.unpack_mask(packed, 11), bits)
    assert list(ref.pack_mask(np.ones(9, bool))) == [0xFF, 0x01]


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------

def exp_table(s_y):
    return np.array([round(2 ** 30 * math.exp(-float(F32(s_y)) * d)) for d in range(256)],
                    dtype=np.int64)


@pytest.mark.parametrize("s_y", [0.02, 0.1, 0.37])
def test_softmax_ce_against_float(s_y):
    rng = np.random.default_rng(4)
    table = exp_table(s_y)
    sy = float(F32(s_y))
    for trial in range(50):
        n = int(rng.integers(2, 40))
        q = rng.integers(-128, 128, n)
        label = int(rng.integers(0, n))
        G, s_g, loss = ref.softmax_ce(q, label, table)
        assert s_g == F32(2.0 ** -24)
        assert isinstance(loss, np.float32)
        assert abs(int(G.sum())) <= n
        z = sy * (q - q.max())
        p = np.exp(z) / np.exp(z).sum()
        want = p - (np.arange(n) == label)
        assert np.max(np.abs(G * 2.0 ** -24 - want)) <= 2.0 ** -20
        want_loss = -math.log(p[label])
        # the table entries are rounded to integers: relative error 0.5 / e_label
        tol = 1e-5 * max(1.0, want_loss) + 1.0 / (p[label] * 2 ** 30)
        assert abs(float(loss) - want_loss) <= tol


def test_mse_against_float():
    rng = np.random.default_rng(5)
    q = rng.integers(-128, 128, 10)
    t = rng.integers(-128, 128, 10)
    s_y = F32(0.05)
    G, s_g, loss = ref.mse(q, t, s_y)
    assert np.array_equal(G, q - t)
    assert s_g == F32(F32(2) * s_y / F32(10))
    want = np.mean((float(s_y) * (q - t)) ** 2)
    assert abs(float(loss) - want) <= 1e-6 * want


# ---------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------

def test_forward_fc_dyadic_exact():
    """Scales are powers of two, so the float result is exact and the rounding
    (half up) can be checked directly against float64."""
    rng = np.random.default_rng(6)
    n_in, n_out = 8, 6
    w = rng.integers(-127, 128, size=(n_out, 1, 1, n_in))
    b = rng.integers(-3000, 3000, n_out)
    net, blob = fc_model(rng, n_in, n_out, s_x=0.25, z_x=-3, s_w=[2.0 ** -6] * n_out,
                         s_y=0.5, z_y=2, w=w, b=b)
    r = Reference(blob)
    for _ in range(20):
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        out = r.forward(x)
        y = out[net.logits]
        assert y.dtype == np.int8 and y.shape == (1, 1, n_out)
        acc = b + (w[:, 0, 0, :] * (x.astype(np.int64) + 3)).sum(axis=1)
        real = acc * 0.25 * 2.0 ** -6 / 0.5               # exact in float64
        want = np.clip(np.floor(real + 0.5) + 2, -128, 127)
        assert np.array_equal(y.ravel(), want)
        assert r.predict(x) == int(np.argmax(want))


def test_forward_conv_against_float():
    """3x3 stride-2 padded conv with a channel permutation; non-dyadic scales:
    |q - real/s_y - z| <= 1/2 (+ tiny) wherever the result is not clamped."""
    rng = np.random.default_rng(7)
    net = Net()
    x = net.input(6, 5, 4, 0.03, -7)
    w = rng.integers(-127, 128, size=(5, 3, 3, 4))
    s_w = rng.uniform(0.001, 0.004, 5)
    b = rng.integers(-5000, 5000, 5)
    li, y = net.conv(x, w, s_w, b, 0.11, 9, stride=2, pad=1, act=(-15, 25), train=(3, 1),
                     flags=mf.LF_TRAIN_BIAS)
    net.loss(y, net.grad(y))
    r = Reference(net.pack())
    xin = rng.integers(-128, 128, 6 * 5 * 4).astype(np.int8)
    out = r.forward(xin, training=True)
    q = out[y].astype(np.int64)
    xr = (xin.reshape(6, 5, 4).astype(np.float64) + 7) * float(F32(0.03))
    xp = np.zeros((8, 7, 4))
    xp[1:7, 1:6] = xr
    oh, ow = 3, 3
    assert q.shape == (oh, ow, 5)
    sw = np.array([float(F32(v)) for v in s_w])
    for i in range(oh):
        for j in range(ow):
            patch = xp[2 * i:2 * i + 3, 2 * j:2 * j + 3]
            real = (w * sw[:, None, None, None] * patch).sum(axis=(1, 2, 3)) + b * sw * float(F32(0.03))
            v = real / float(F32(0.11)) + 9
            vc = np.clip(v, -15, 25)
            assert np.all(np.abs(q[i, j] - vc) <= 0.5 + 1e-6), (i, j, q[i, j], v)
    # mask: 1 where not clamped, packed LSB first in NHWC order
    m = out[net.fwd_of[li].t[0]]
    assert m.dtype == np.uint8 and len(m) == (oh * ow * 5 + 7) // 8
    acc_bits = []
    for i in range(oh):
        for j in range(ow):
            patch = xp[2 * i:2 * i + 3, 2 * j:2 * j + 3]
            real = (w * sw[:, None, None, None] * patch).sum(axis=(1, 2, 3)) + b * sw * float(F32(0.03))
            v = real / float(F32(0.11)) + 9
            acc_bits += list((v > -15.5) & (v < 25.5))
    want = bytearray(len(m))
    for k, bit in enumerate(acc_bits):
        want[k // 8] |= int(bit) << (k % 8)
    assert bytes(m) == bytes(want)
    assert 0 < sum(acc_bits) < len(acc_bits)   # both kinds present
    assert m[-1] >> ((oh * ow * 5) % 8) == 0
    # saved: trained channels (perm order 1, 3)
    sv = out[net.fwd_of[li].t[1]]
    assert sv.dtype == np.int8 and sv.shape == (6, 5, 2)
    assert np.array_equal(sv, xin.reshape(6, 5, 4)[:, :, [1, 3]])
    # inference-only forward gives no masks or saved tensors
    out2 = r.forward(xin)
    assert set(out2) == {y} and np.array_equal(out2[y], out[y])


def test_params_bytes_layout():
    rng = np.random.default_rng(8)
    net, blob = deep_model(rng)
    r = Reference(blob)
    pb = r.params_bytes()
    model = mf.Model.parse(blob)
    assert len(pb) == model.header.persist_size
    expect = bytearray(len(pb))
    for li, L in enumerate(model.layers):
        info = net.info.get(li)
        if not info or not L.n_train and not L.flags & 1:
            continue
        nt = L.n_train
        if nt:
            tw = info["w_st"][:nt] if info["depthwise"] else info["w_st"][..., :nt]
            raw = tw.astype(np.int8).tobytes()
            expect[L.w_arena:L.w_arena + len(raw)] = raw
        if L.flags & 1:
            raw = info["b"].astype("<i4").tobytes()
            expect[L.b_arena:L.b_arena + len(raw)] = raw
    assert pb == bytes(expect)


# ---------------------------------------------------------------------------
# Backward against float backpropagation
# ---------------------------------------------------------------------------

def float_backprop(net, r, label):
    """Float gradients w.r.t. real values through the integer forward (same
    activations and masks); input gradients use the weights after the step,
    as the integer backward does. Returns {layer: (dW storage layout, db)}."""
    T = net.tensors
    acts = r.acts
    g = {}
    q = acts[net.logits].ravel().astype(np.float64)
    z = float(F32(T[net.logits].scale)) * (q - q.max())
    p = np.exp(z) / np.exp(z).sum()
    g[net.logits] = (p - (np.arange(len(p)) == label)).reshape(T[net.logits].shape)
    res = {}
    for li in reversed(range(len(net.layers))):
        L = net.layers[li]
        tout, tin = T[L.out], T[L.inp]
        mask = ref.unpack_mask(r.masks[net.fwd_of[li].t[0]], tout.numel).reshape(tout.shape)
        go = g[L.out] * mask
        if L.kind == mf.L_ADD:
            for t in (L.inp, L.in2):
                g[t] = g.get(t, 0) + go
            continue
        if L.kind == mf.L_AVGPOOL:
            g[L.inp] = g.get(L.inp, 0) + np.broadcast_to(go, tin.shape) / (tin.h * tin.w)
            continue
        info = net.info[li]
        k, s, pad, perm = info["k"], info["stride"], info["pad"], info["perm"]
        s_x = float(F32(tin.scale))
        sw = np.array([float(F32(v)) for v in info["s_w"]])
        xr = (acts[L.inp].astype(np.float64) - tin.zero) * s_x
        W_st = r.weights(li).astype(np.float64)
        if info["depthwise"]:
            Wl = np.empty_like(W_st)
            Wl[perm] = W_st
            Wl = Wl * sw[:, None, None]
        else:
            Wl = np.empty_like(W_st)
            Wl[..., perm] = W_st
            Wl = Wl * sw[:, None, None, None]
        dW = np.zeros(Wl.shape)
        dx = np.zeros(tin.shape)
        for oh in range(tout.h):
            for ow in range(tout.w):
                for kh in range(k):
                    for kw in range(k):
                        ih, iw = oh * s + kh - pad, ow * s + kw - pad
                        if not (0 <= ih < tin.h and 0 <= iw < tin.w):
                            continue
                        if info["depthwise"]:
                            dW[:, kh, kw] += go[oh, ow] * xr[ih, iw]
                            dx[ih, iw] += go[oh, ow] * Wl[:, kh, kw]
                        else:
                            dW[:, kh, kw, :] += np.outer(go[oh, ow], xr[ih, iw])
                            dx[ih, iw] += go[oh, ow] @ Wl[:, kh, kw, :]
        g[L.inp] = g.get(L.inp, 0) + dx
        dW_st = dW[perm] if info["depthwise"] else dW[..., perm]
        res[li] = (dW_st, go.sum(axis=(0, 1)), dx)
    return res


# Gradients are int16 with a per-tensor scale: each conversion (loss, each
# input gradient, each prescale) rounds to half a step, 2^-16 of the tensor's
# largest value; these errors add up along the layers of the deep model, and
# a weight gradient sums one per output position while its largest value can
# be far smaller than that sum of magnitudes (cancellation). 1e-3 is 65 steps.
GRAD_TOL = 1e-3


def test_backward_matches_float_backprop():
    rng = np.random.default_rng(9)
    net, blob = deep_model(rng, lr=0.05)
    r = Reference(blob)
    checked = 0
    for trial in range(4):
        x = rng.integers(-128, 128, 75).astype(np.int8)
        label = int(rng.integers(0, 5))
        w_before = {li: r.w_tr[li].copy() for li in r.w_tr}
        loss = r.step(x, label=label)
        assert isinstance(loss, np.float32) and loss > 0
        fl = float_backprop(net, r, label)
        for li, L in enumerate(net.layers):
            if L.kind not in (mf.L_CONV, mf.L_DWCONV):
                continue
            dW_st, db, _ = fl[li]
            nt = L.n_train
            if nt:
                A, scale = r.weight_grad_arrays[(li, "w")]
                got = A * scale.astype(np.float64)  # per output channel
                want = dW_st[:nt] if net.info[li]["depthwise"] else dW_st[..., :nt]
                tol = GRAD_TOL * np.max(np.abs(want)) + 1e-12
                assert np.max(np.abs(got - want)) <= tol, (li, np.max(np.abs(got - want)), tol)
                # the dict view agrees with the arrays
                flat = A.ravel()
                for i in (0, flat.size - 1):
                    assert r.weight_grads[(li, i)] == (int(flat[i]), scale.ravel()[i * scale.size // flat.size])
                # SGD direction: changed weights moved against the gradient
                dw = r.w_tr[li] - w_before[li]
                moved = dw != 0
                assert np.all(np.sign(dw[moved]) == -np.sign(A[moved]))
                checked += 1
            if L.flags & mf.LF_TRAIN_BIAS:
                A, s_g = r.weight_grad_arrays[(li, "b")]
                tol = GRAD_TOL * np.max(np.abs(db)) + 1e-12
                assert np.max(np.abs(A * float(s_g) - db)) <= tol
                for c in range(len(A)):
                    assert r.weight_grads[(li, 0x80000000 | c)] == (int(A[c]), s_g)
        # input gradients written by BWD ops (the grads dict) match float ones
        bwd = [op for op in r.model.ops[r.header.n_fwd_ops:] if op.kind == mf.OP_BWD]
        for op in bwd:
            if net.layers[op.layer].kind in (mf.L_CONV, mf.L_DWCONV) and op.t[3] != mf.NONE:
                s, v = r.grads[op.t[3]]
                assert v.dtype == np.int16
                want = fl[op.layer][2]
                consumer = [o for o in bwd if o.t[0] == op.t[3]]
                if consumer:   # masked in place by an add/pool backward
                    assert net.layers[consumer[0].layer].kind in (mf.L_ADD, mf.L_AVGPOOL)
                    want = want * ref.unpack_mask(r.masks[consumer[0].t[1]], want.size).reshape(want.shape)
                tol = GRAD_TOL * np.max(np.abs(want)) + 1e-12
                assert np.max(np.abs(v * float(s) - want)) <= tol
    assert checked == 12


def test_training_reduces_loss_and_grad_dict():
    rng = np.random.default_rng(10)
    net, blob = deep_model(rng, lr=0.05)
    r = Reference(blob)
    x = rng.integers(-128, 128, 75).astype(np.int8)
    p0 = r.params_bytes()
    losses = [float(r.step(x, label=1)) for _ in range(20)]
    assert losses[-1] < 0.5 * losses[0], losses
    assert r.params_bytes() != p0
    # every GRAD tensor appears, with float32 scale and int16 values of its shape
    grad_ids = {i for i, t in enumerate(net.tensors) if t.kind == mf.T_GRAD}
    assert set(r.grads) == grad_ids
    for tid, (s, v) in r.grads.items():
        assert isinstance(s, np.float32) and v.dtype == np.int16
        assert v.shape == net.tensors[tid].shape
    # the same model, same data, fresh instance: deterministic
    r2 = Reference(blob)
    for _ in range(20):
        r2.step(x, label=1)
    assert r2.params_bytes() == r.params_bytes()
    # lr override
    r3 = Reference(blob, lr=1e-9)
    r3.step(x, label=1)
    assert r3.params_bytes() == p0
    assert r3.lr == F32(1e-9) and Reference(blob, lr=0).lr == F32(0.05)


def test_residue_accumulates_small_updates():
    """With fraction bits, many sub-LSB updates add up; without, they vanish."""
    rng = np.random.default_rng(11)
    w = rng.integers(-100, 100, size=(3, 1, 1, 4))
    res_net, res_blob = fc_model(rng, 4, 3, w=w, s_w=[0.01] * 3, b=[0, 0, 0],
                                 flags=mf.LF_RESIDUE)
    _, plain_blob = fc_model(rng, 4, 3, w=w, s_w=[0.01] * 3, b=[0, 0, 0], flags=0)
    x = rng.integers(-128, 128, 4).astype(np.int8)
    lr = 2e-4
    a, b = Reference(res_blob, lr=lr), Reference(plain_blob, lr=lr)
    r0 = a.params_bytes()
    a.step(x, label=0)
    A, scale = a.weight_grad_arrays[(0, "w")]
    (s_g, _), = a.grads.values()                                # the loss gradient's scale
    k = F32(F32(F32(lr) * F32(1.0)) * s_g)
    u = (ref.f32_i64(A) * k) * a.layers[0].qas_w[:, None, None, None]
    # hand computation for the residue update of the first step
    T = np.clip(256 * w + 0 - ref.rint_sat(u * F32(256), 65535), -127 * 256, 127 * 256)
    assert np.array_equal(a.w_tr[0], (T + 128) >> 8)
    assert np.array_equal(a.w_res[0], T - 256 * ((T + 128) >> 8))
    assert np.all(np.abs(ref.rint_sat(u, 255)) == 0)          # below one LSB per step
    assert np.any(a.w_res[0] != 0)
    for _ in range(30):
        a.step(x, label=0)
        b.step(x, label=0)
    assert a.params_bytes() != r0
    assert np.array_equal(b.w_tr[0], w[..., :])               # plain SGD never moved
    pb = a.params_bytes()
    L = a.model.layers[0]
    assert pb[L.wres_arena:L.wres_arena + 12] == a.w_res[0].astype(np.int8).tobytes()


def test_mse_model_step():
    rng = np.random.default_rng(12)
    net, blob = fc_model(rng, 6, 3, loss_kind=mf.LOSS_MSE, s_y=0.05, z_y=0)
    r = Reference(blob)
    x = rng.integers(-128, 128, 6).astype(np.int8)
    t = np.array([10, -20, 30], dtype=np.int8)
    out = r.forward(x)
    q = out[net.logits].ravel().astype(np.int64)
    loss = r.step(x, target=t)
    want = np.mean((float(F32(0.05)) * (q - t)) ** 2)
    assert abs(float(loss) - want) <= 1e-6 * max(want, 1e-12)
    g_id = r.model.ops[r.header.n_fwd_ops].t[1]
    # the loss gradient was consumed by the FC BWD (masked, no input gradient)
    s, v = r.grads[g_id]
    assert s == F32(F32(F32(2) * F32(0.05)) / F32(3))
    mask = ref.unpack_mask(r.masks[net.fwd_of[0].t[0]], 3)
    assert np.array_equal(v.ravel(), np.where(mask, q - t, 0))


def test_predict_ties_lowest_index():
    rng = np.random.default_rng(13)
    net, blob = fc_model(rng, 4, 5, w=np.zeros((5, 1, 1, 4), int), b=[0, 0, 7000, 7000, 0],
                         s_w=[0.01] * 5)
    r = Reference(blob)
    assert r.predict(np.zeros(4, np.int8)) == 2
