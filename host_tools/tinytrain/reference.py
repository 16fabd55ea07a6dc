"""Independent numpy reference of the tinytrain integer arithmetic.

Written from docs/arithmetic.md and docs/format.md only, so tests can compare
the C core against it bit for bit.  Every integer sum is done in int64 numpy
arrays (or Python ints); every float operation is a single binary32 operation
on np.float32 scalars or arrays, in the order the spec gives.

Public helpers (also used by the self-check tests): ``rs``, ``bitlen``,
``pow2``, ``f32_i64``, ``rint_sat``, ``ln_fixed``, ``q31``, ``to_int16``, ``grad_add``,
``softmax_ce``, ``mse``, ``pack_mask``, ``unpack_mask``.
"""
from __future__ import annotations

import numpy as np

try:
    from . import modelfile as mf
except ImportError:  # imported as a top-level module
    import modelfile as mf

F32 = np.float32
I64 = np.int64
NONE = mf.NONE
NO_OFFSET = mf.NO_OFFSET

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
G16_MAX = (1 << 15) - 1  # gradient values are int16 in [-G16_MAX, G16_MAX]
BIAS_LIMIT = 1 << 30
BIAS16_MIN, BIAS16_MAX = -(1 << 15), (1 << 15) - 1  # an int16 bias change (LF_BIAS16) saturates there
LN2_F32 = F32(0.693147182464599609375)
BIAS_KEY = 0x80000000


# ---------------------------------------------------------------------------
# Integer and float primitives (arithmetic.md, "Notation")
# ---------------------------------------------------------------------------

def rs(v, s):
    """floor(v / 2^s + 1/2) for s >= 1, on int64 (arithmetic right shift).

    ``v`` and ``s`` may be Python ints or int64 arrays (broadcast)."""
    if isinstance(v, (int, np.integer)) and isinstance(s, (int, np.integer)):
        s = int(s)
        assert s >= 1
        return (int(v) + (1 << (s - 1))) >> s
    v = np.asarray(v, dtype=I64)
    s = np.asarray(s, dtype=I64)
    assert np.all(s >= 1) and np.all(s <= 63)
    # == (v + 2^(s-1)) >> s, without the int64 overflow of the addition
    return (v >> s) + ((v >> (s - 1)) & 1)


def bitlen(a):
    """Number of significant bits of |a| (0 for 0); int or int64 array."""
    if isinstance(a, (int, np.integer)):
        return abs(int(a)).bit_length()
    a = np.abs(np.asarray(a, dtype=I64))
    n = np.zeros(a.shape, dtype=I64)
    for s in (32, 16, 8, 4, 2, 1):
        m = a >= (I64(1) << s)
        n += np.where(m, s, 0)
        a = np.where(m, a >> s, a)
    return n + (a > 0)


def pow2(e):
    """The binary32 value 2^e, exact (built from its bit pattern)."""
    e = int(e)
    if -126 <= e <= 127:
        bits = (e + 127) << 23
    elif -149 <= e < -126:
        bits = 1 << (e + 149)
    else:
        raise ValueError(f"2^{e} is not a finite non-zero binary32")
    return np.array([bits], dtype=np.uint32).view(F32)[0]


def _pow2_array(e):
    e = np.asarray(e, dtype=I64)
    assert np.all((e >= -126) & (e <= 127))
    return ((e + 127).astype(np.uint32) << np.uint32(23)).view(F32)


def f32_i64(a):
    """f32(int64 a): exact when bitlen(a) <= 24, else f32(rs(a, n-24)) * pow2(n-24)."""
    scalar = isinstance(a, (int, np.integer))
    if scalar:
        a = int(a)
        n = bitlen(a)
        if n <= 24:
            return F32(a)
        return F32(rs(a, n - 24)) * pow2(n - 24)
    a = np.asarray(a, dtype=I64)
    n = bitlen(a)
    sh = np.maximum(n - 24, 0)
    big = sh > 0
    r = np.where(big, rs(a, np.maximum(sh, 1)), a)  # |r| <= 2^24: exact in binary32
    return r.astype(F32) * _pow2_array(sh)           # exact scaling by a power of two


def rint_sat(u, lim):
    """NaN -> 0; u >= L -> L; u <= -L -> -L; else round to nearest, ties to even.

    Returns int64 (array or np.int64 scalar)."""
    u = np.asarray(u, dtype=F32)
    L = F32(lim)
    with np.errstate(invalid="ignore"):
        nan = np.isnan(u)
        safe = np.where(nan, F32(0), u)
        hi = safe >= L
        lo = safe <= -L
        mid = np.where(hi | lo, F32(0), safe)
        out = np.rint(mid).astype(I64)
    out = np.where(hi, I64(lim), np.where(lo, -I64(lim), out))
    out = np.where(nan, I64(0), out)
    return out[()] if out.ndim == 0 else out


_C11 = F32(1) / F32(11)
_C9 = F32(1) / F32(9)
_C7 = F32(1) / F32(7)
_C5 = F32(1) / F32(5)
_C3 = F32(1) / F32(3)


def ln_fixed(n) -> np.float32:
    """ln(n) for an integer n >= 1, by the fixed binary32 recipe of arithmetic.md."""
    n = int(n)
    assert n >= 1
    b = n.bit_length() - 1
    top = n >> (b - 23) if b >= 23 else n << (23 - b)
    one = F32(1)
    f = F32(top) * pow2(-23)
    y = (f - one) / (f + one)
    y2 = y * y
    p = _C11
    p = p * y2 + _C9
    p = p * y2 + _C7
    p = p * y2 + _C5
    p = p * y2 + _C3
    p = p * y2 + one
    t1 = F32(b) * LN2_F32
    t2 = (F32(2) * y) * p
    return F32(t1 + t2)


def q31(ratio):
    """Q31 of a binary32 ratio: (m, sh) with value m / 2^sh; m = 0 if sh not in [1, 62]."""
    bits = int(np.array([ratio], dtype=F32).view(np.uint32)[0])
    e = (bits >> 23) & 0xFF
    m = ((bits & 0x7FFFFF) | 0x800000) << 7
    sh = 157 - e
    if sh < 1 or sh > 62:
        m = 0
    return m, sh


def _clamp16(v):
    return np.clip(v, -G16_MAX, G16_MAX)


def to_int16(v, s):
    """A gradient of int64 values v with scale s as int16 values and a scale:
    e = max(bitlen(max |v|) - 15, 0), G = clamp16(rs(v, e)), s' = f32(s * 2^e);
    all zero gives scale 0. Returns (values int64, scale float32)."""
    v = np.asarray(v, dtype=I64)
    vmax = int(np.abs(v).max()) if v.size else 0
    if vmax == 0:
        return np.zeros_like(v), F32(0)
    e = max(bitlen(vmax) - 15, 0)
    if e == 0:
        return v.copy(), F32(s)
    return _clamp16(rs(v, e)), F32(F32(s) * pow2(e))


def grad_add(a, s_a, b, s_b):
    """Gradient sum a += b (block floating point). Returns (values int64, scale float32)."""
    a = np.asarray(a, dtype=I64)
    b = np.asarray(b, dtype=I64)
    s_a, s_b = F32(s_a), F32(s_b)
    if s_b == 0:
        return a.copy(), s_a
    if s_a == 0:
        return b.copy(), s_b

    def scaled(v, m, sh):
        if m == 0:
            return np.zeros_like(v)
        return rs(v * I64(m), sh + 1)

    if s_a >= s_b:
        m, sh = q31(F32(s_b / s_a))
        out = _clamp16(rs(a, 1) + scaled(b, m, sh))
        return out, F32(s_a * F32(2))
    m, sh = q31(F32(s_a / s_b))
    out = _clamp16(scaled(a, m, sh) + rs(b, 1))
    return out, F32(s_b * F32(2))


def softmax_ce(q, label, table):
    """Softmax cross-entropy on int8 logits q. Returns (G int64, s_g, loss):
    G in Q24, before the saturation gate and the conversion to int16."""
    q = [int(v) for v in np.asarray(q).ravel()]
    label = int(label)
    if not 0 <= label < len(q):
        raise ValueError(f"label {label} out of range for {len(q)} classes")
    table = [int(v) for v in np.asarray(table).ravel()]
    qmax = max(q)
    e = [table[qmax - v] for v in q]
    S = sum(e)
    half = S // 2
    G = [((ei << 24) + half) // S for ei in e]
    G[label] -= 1 << 24
    loss = F32(ln_fixed(S) - ln_fixed(max(e[label], 1)))
    return np.array(G, dtype=I64), pow2(-24), loss


def gate_saturated(G, q, clamp):
    """Drop the gradient of a logit sitting at an end of its clamp range
    (lo, hi) that would push it further out (it cannot lower the loss)."""
    lo, hi = clamp
    q = np.asarray(q, dtype=I64).ravel()
    G = np.array(G, dtype=I64)
    G[((q >= hi) & (G < 0)) | ((q <= lo) & (G > 0))] = 0
    return G


def mse(q, target, s_y):
    """MSE against an int8 target in the output quantisation. Returns (G, s_g, loss)."""
    q = np.asarray(q, dtype=I64).ravel()
    t = np.asarray(target, dtype=I64).ravel()
    if t.size != q.size:
        raise ValueError(f"target has {t.size} elements, logits {q.size}")
    s_y = F32(s_y)
    n = F32(q.size)
    G = q - t
    s_g = F32(F32(F32(2) * s_y) / n)
    ssq = int(np.sum(G * G))
    loss = F32(F32(F32(f32_i64(ssq) * s_y) * s_y) / n)
    return G, s_g, loss


def pack_mask(bits) -> np.ndarray:
    """Pack booleans LSB first in element (NHWC) order; unused high bits 0."""
    return np.packbits(np.asarray(bits, dtype=bool).ravel(), bitorder="little")


def unpack_mask(packed, count) -> np.ndarray:
    return np.unpackbits(np.asarray(packed, dtype=np.uint8), bitorder="little",
                         count=count).astype(bool)


def _padded(x, pad_top, pad_left, hp, wp):
    """Embed x (H, W, C) into zeros (hp, wp, C) at (pad_top, pad_left)."""
    h, w, c = x.shape
    out = np.zeros((max(hp, pad_top + h), max(wp, pad_left + w), c), dtype=I64)
    out[pad_top:pad_top + h, pad_left:pad_left + w] = x
    return out


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------

class _Layer:
    """Constant data of one layer, decoded from the blob."""

    def __init__(self, model, index):
        rec = model.layers[index]
        self.index = index
        self.rec = rec
        self.kind = rec.kind
        t = model.tensors
        self.tin = t[rec.inp]
        self.tout = t[rec.out]
        self.tin2 = t[rec.in2] if rec.kind == mf.L_ADD else None
        self.z_x = int(self.tin.zero)
        self.z_y = int(self.tout.zero)
        self.s_x = F32(self.tin.scale)
        self.n_train = int(rec.n_train) if rec.kind in (mf.L_CONV, mf.L_DWCONV) else 0
        self.bias_trained = bool(rec.flags & mf.LF_TRAIN_BIAS) and rec.kind in (mf.L_CONV, mf.L_DWCONV)
        # format 2.2: the arena holds an int16 change of each bias, the bias is the file's plus it
        self.bias16 = self.bias_trained and bool(rec.flags & mf.LF_BIAS16)
        self.residue = bool(rec.flags & mf.LF_RESIDUE) and self.n_train > 0
        self.act_min, self.act_max = int(rec.act_min), int(rec.act_max)
        if rec.kind == mf.L_AVGPOOL2D:
            kk = rec.kh * rec.kw
            self.mult = np.array(model.blob_array(rec.mult_off, "i4", kk)).astype(I64)
            self.shift = np.array(model.blob_array(rec.shift_off, "i1", kk)).astype(I64)
        if rec.kind == mf.L_LUT:
            self.table = np.array(model.blob_array(rec.w_off, "i1", 256)).astype(I64)
            self.table_grad = np.array(model.blob_array(rec.gscale_off, "<i2", 256)).astype(I64)
        if rec.kind not in (mf.L_CONV, mf.L_DWCONV):
            return
        cin, cout = self.tin.c, self.tout.c
        kh, kw = rec.kh, rec.kw
        if rec.kind == mf.L_CONV:
            self.w_shape = (cout, kh, kw, cin)
            self.taps = kh * kw * cout
            nperm = cin
        else:
            if cin != cout:
                raise ValueError(f"layer {index}: depthwise with {cin} -> {cout} channels")
            self.w_shape = (cout, kh, kw)
            self.taps = kh * kw
            nperm = cout
        self.cin, self.cout = cin, cout

        def arr(off, dtype, count):
            a = model.blob_array(off, dtype, count)
            return None if a is None else np.array(a)

        self.w_file = arr(rec.w_off, "i1", int(np.prod(self.w_shape))).astype(I64).reshape(self.w_shape)
        b = arr(rec.b_off, "i4", cout)
        self.b_file = np.zeros(cout, dtype=I64) if b is None else b.astype(I64)
        self.mult = arr(rec.mult_off, "i4", cout).astype(I64)
        self.shift = arr(rec.shift_off, "i1", cout).astype(I64)
        g = arr(rec.gscale_off, "i4", cout)
        self.gscale = None if g is None else g.astype(I64)
        self.wscale_max = F32(rec.wscale_max)
        ws = arr(rec.wscale_off, "f4", cout)
        self.w_scale = None if ws is None else ws.astype(F32)
        p = arr(rec.perm_off, "u2", nperm)
        self.perm = np.arange(nperm, dtype=np.intp) if p is None else p.astype(np.intp)
        qw = arr(rec.qas_w_off, "f4", cout)
        qb = arr(rec.qas_b_off, "f4", cout)
        self.qas_w = None if qw is None else qw.astype(F32)
        self.qas_b = None if qb is None else qb.astype(F32)
        self.lr_scale = F32(rec.lr_scale)


class Reference:
    """numpy model of the tinytrain core (forward, loss, backward, SGD)."""

    def __init__(self, model_bytes, lr=None):
        self.model = mf.Model.parse(model_bytes)
        h = self.model.header
        self.header = h
        self.lr = F32(h.lr) if lr is None or lr <= 0 else F32(lr)
        self.tensors = self.model.tensors
        self.layers = [_Layer(self.model, i) for i in range(len(self.model.layers))]
        self.exp_table = None
        if h.loss_kind == mf.LOSS_SOFTMAX_CE and h.exp_table_off != NO_OFFSET:
            self.exp_table = np.array(self.model.blob_array(h.exp_table_off, "u4", 256),
                                      dtype=I64)
        # Mutable trained parameters (the persistent arena): b_tr holds a
        # bias16 layer's changes, another layer's biases.
        self.w_tr, self.w_res, self.b_tr = {}, {}, {}
        for L in self.layers:
            if L.n_train > 0:
                if L.kind == mf.L_CONV:
                    self.w_tr[L.index] = L.w_file[..., :L.n_train].copy()
                else:
                    self.w_tr[L.index] = L.w_file[:L.n_train].copy()
                if L.residue:
                    self.w_res[L.index] = np.zeros_like(self.w_tr[L.index])
            if L.bias_trained:
                self.b_tr[L.index] = np.zeros_like(L.b_file) if L.bias16 else L.b_file.copy()
        self.acts, self.masks, self.saved = {}, {}, {}
        self.grads, self.weight_grads, self.weight_grad_arrays = {}, {}, {}
        self.loss = None

    # -- parameters ---------------------------------------------------------

    def weights(self, li) -> np.ndarray:
        """Full current int weights of a conv/dw layer in file (storage) layout."""
        L = self.layers[li]
        w = L.w_file.copy()
        if L.n_train > 0:
            if L.kind == mf.L_CONV:
                w[..., :L.n_train] = self.w_tr[li]
            else:
                w[:L.n_train] = self.w_tr[li]
        return w

    def biases(self, li) -> np.ndarray:
        L = self.layers[li]
        if L.bias16:
            return L.b_file + self.b_tr[li]
        return self.b_tr[li].copy() if L.bias_trained else L.b_file.copy()

    def params_bytes(self) -> bytes:
        out = bytearray(self.header.persist_size)

        def put(off, data):
            if off == NO_OFFSET:
                raise ValueError("trained parameter without an arena offset")
            if off + len(data) > len(out):
                raise ValueError(f"trained parameter at {off}+{len(data)} beyond persist_size "
                                 f"{len(out)}")
            out[off:off + len(data)] = data

        for L in self.layers:
            if L.n_train > 0:
                put(L.rec.w_arena, self.w_tr[L.index].astype(np.int8).tobytes())
                if L.residue:
                    put(L.rec.wres_arena, self.w_res[L.index].astype(np.int8).tobytes())
            if L.bias_trained:
                put(L.rec.b_arena, self.b_tr[L.index].astype("<i2" if L.bias16 else "<i4").tobytes())
        return bytes(out)

    # -- forward ------------------------------------------------------------

    def _out_shape(self, L):
        t = L.tout
        return t.h, t.w, t.c

    def _requant_out(self, L, v):
        """v already requantised (+ z_y): returns (int8 y, mask bool)."""
        lo, hi = L.act_min, L.act_max
        mask = (v >= lo) & (v <= hi)
        return np.clip(v, lo, hi).astype(np.int8), mask

    def _fwd_conv(self, L, x):
        rec = L.rec
        s = rec.stride
        oh, ow, cout = self._out_shape(L)
        xs = x.astype(I64)[:, :, L.perm] - L.z_x          # storage channel order
        hp = (oh - 1) * s + rec.kh
        wp = (ow - 1) * s + rec.kw
        xp = _padded(xs, rec.pad_top, rec.pad_left, hp, wp)
        W = self.weights(L.index)
        acc_st = np.zeros((oh, ow, W.shape[0] if L.kind == mf.L_CONV else L.cout), dtype=I64)
        for kh in range(rec.kh):
            for kw in range(rec.kw):
                sl = xp[kh:kh + (oh - 1) * s + 1:s, kw:kw + (ow - 1) * s + 1:s, :]
                if L.kind == mf.L_CONV:
                    acc_st += sl @ W[:, kh, kw, :].T
                else:
                    acc_st += sl * W[:, kh, kw]
        if L.kind == mf.L_CONV:
            acc = acc_st
        else:
            acc = np.empty_like(acc_st)
            acc[:, :, L.perm] = acc_st                       # storage j -> channel perm[j]
        acc = acc + self.biases(L.index)
        v = rs(acc * L.mult, L.shift) + L.z_y
        return self._requant_out(L, v)

    def _fwd_add(self, L, a, b):
        r = L.rec
        v = (a.astype(I64) - L.z_x) * I64(r.mult_a) + (b.astype(I64) - int(L.tin2.zero)) * I64(r.mult_b)
        v = rs(v, int(r.shift)) + L.z_y
        return self._requant_out(L, v)

    def _fwd_pool(self, L, x):
        r = L.rec
        ssum = (x.astype(I64) - L.z_x).sum(axis=(0, 1))
        v = rs(ssum * I64(r.mult_a), int(r.shift)) + L.z_y
        y, m = self._requant_out(L, v)
        oh, ow, c = self._out_shape(L)
        return y.reshape(oh, ow, c), m.reshape(oh, ow, c)

    def _windows(self, L):
        """For each output position (oh, ow): the input rows and columns its window covers."""
        r = L.rec
        for oh in range(L.tout.h):
            for ow in range(L.tout.w):
                h0, w0 = oh * r.stride - r.pad_top, ow * r.stride - r.pad_left
                yield oh, ow, slice(max(h0, 0), min(h0 + r.kh, L.tin.h)), \
                    slice(max(w0, 0), min(w0 + r.kw, L.tin.w))

    @staticmethod
    def _pool_count(L, n):
        """What an average pool divides a window of n inputs by."""
        return L.rec.kh * L.rec.kw if L.rec.flags & mf.LF_COUNT_PAD else n

    def _fwd_window_pool(self, L, x):
        v = np.zeros((L.tout.h, L.tout.w, L.tout.c), dtype=I64)
        for oh, ow, hs, ws in self._windows(L):
            win = x[hs, ws].astype(I64)
            if L.kind == mf.L_MAXPOOL:
                v[oh, ow] = win.max(axis=(0, 1))
            else:
                n = self._pool_count(L, win.shape[0] * win.shape[1])
                v[oh, ow] = rs((win - L.z_x).sum(axis=(0, 1)) * L.mult[n - 1], int(L.shift[n - 1])) + L.z_y
        return self._requant_out(L, v)

    def forward(self, x, training=False) -> dict:
        h = self.header
        tin = self.tensors[h.input_tensor]
        x = np.asarray(x)
        if x.size != tin.numel:
            raise ValueError(f"input has {x.size} elements, expected {tin.numel}")
        x = x.astype(np.int8).reshape(tin.h, tin.w, tin.c)
        acts = {h.input_tensor: x}
        produced, masks, saved = {}, {}, {}
        for op in self.model.ops[:h.n_fwd_ops]:
            if op.kind == mf.OP_FWD_FUSED:
                # The fused chain computes exactly what its layers compute one
                # after the other; only its last output (and mask) is kept on
                # the device, the streamed tensors exist here for inspection.
                chain = [op.t[mf.FUSED_A], op.layer, op.t[mf.FUSED_C]]
                for li in (i for i in chain if i != NONE):
                    L = self.layers[li]
                    if L.kind not in (mf.L_CONV, mf.L_DWCONV):
                        raise ValueError(f"layer {li} of kind {L.kind} in a fused op")
                    y, m = self._fwd_conv(L, acts[L.rec.inp])
                    t = self.tensors[L.rec.out]
                    acts[L.rec.out] = y.reshape(t.h, t.w, t.c)
                produced[L.rec.out] = acts[L.rec.out]
                if training and op.t[mf.FUSED_MASK] != NONE:
                    masks[op.t[mf.FUSED_MASK]] = pack_mask(m)
                continue
            if op.kind != mf.OP_FWD:
                raise ValueError(f"op of kind {op.kind} among the forward ops")
            L = self.layers[op.layer]
            r = L.rec
            xin = acts[r.inp]
            if L.kind in (mf.L_CONV, mf.L_DWCONV):
                y, m = self._fwd_conv(L, xin)
            elif L.kind == mf.L_ADD:
                y, m = self._fwd_add(L, xin, acts[r.in2])
            elif L.kind == mf.L_AVGPOOL:
                y, m = self._fwd_pool(L, xin)
            elif L.kind in (mf.L_MAXPOOL, mf.L_AVGPOOL2D):
                y, m = self._fwd_window_pool(L, xin)
            elif L.kind == mf.L_LUT:
                y, m = self._requant_out(L, L.table[xin.astype(np.intp) + 128])
            else:
                raise ValueError(f"layer {op.layer}: unknown kind {L.kind}")
            t = self.tensors[r.out]
            y = y.reshape(t.h, t.w, t.c)
            acts[r.out] = y
            produced[r.out] = y
            if training:
                if op.t[mf.FWD_MASK] != NONE:
                    masks[op.t[mf.FWD_MASK]] = pack_mask(m)
                if op.t[mf.FWD_SAVED] != NONE and L.kind in (mf.L_MAXPOOL, mf.L_LUT):
                    saved[op.t[mf.FWD_SAVED]] = xin.copy()
                elif op.t[mf.FWD_SAVED] != NONE:
                    st = self.tensors[op.t[mf.FWD_SAVED]]
                    sv = xin[:, :, L.perm[:L.n_train]].copy()
                    saved[op.t[mf.FWD_SAVED]] = sv.reshape(st.h, st.w, st.c)
        self.acts = acts
        if training:
            self.masks, self.saved = masks, saved
            produced.update(masks)
            produced.update(saved)
        return produced

    def predict(self, x) -> int:
        self.forward(x, training=False)
        logits = self.acts[self.header.logits_tensor].ravel()
        return int(np.argmax(logits))

    # -- backward -----------------------------------------------------------

    def _apply_mask(self, G, mask_id):
        if mask_id == NONE:
            return G
        bits = unpack_mask(self.masks[mask_id], G.size).reshape(G.shape)
        return np.where(bits, G, I64(0))

    def _set_grad(self, tid, scale, values):
        t = self.tensors[tid]
        self._g[tid] = (F32(scale), np.asarray(values, dtype=I64).reshape(t.h, t.w, t.c))

    def _bwd_conv(self, L, op):
        rec = L.rec
        li = L.index
        s = rec.stride
        s_g, G = self._g[op.t[mf.BWD_OUT_GRAD]]
        G = self._apply_mask(G, op.t[mf.BWD_MASK])
        self._g[op.t[mf.BWD_OUT_GRAD]] = (s_g, G)
        oh, ow, cout = G.shape
        k = F32(F32(self.lr * L.lr_scale) * s_g)

        # 2. bias
        if L.bias_trained:
            A = G.sum(axis=(0, 1))
            u = (f32_i64(A) * k) * L.qas_b
            lo, hi = (BIAS16_MIN, BIAS16_MAX) if L.bias16 else (-BIAS_LIMIT, BIAS_LIMIT)
            self.b_tr[li] = np.clip(self.b_tr[li] - rint_sat(u, BIAS_LIMIT), lo, hi)
            for c in range(cout):
                self.weight_grads[(li, BIAS_KEY | c)] = (int(A[c]), s_g)
            self.weight_grad_arrays[(li, "b")] = (A, s_g)

        # 3. input gradient, with the weights before this step's update
        if op.t[mf.BWD_IN_GRAD] != NONE:
            self._bwd_input(L, op, G, s_g)
            s_used, G_used = self._g[op.t[mf.BWD_OUT_GRAD]]
            s_used = self._s_prescaled if self._s_prescaled is not None else s_used
        else:
            s_used, G_used = s_g, G
        # 4. trained weights: from G' (prescaled, when an input gradient was
        #    taken) or G; the model's factors account for which
        k_used = F32(F32(self.lr * L.lr_scale) * s_used)
        if L.n_train > 0:
            nt = L.n_train
            sv = self.saved[op.t[mf.BWD_SAVED]].astype(I64).reshape(L.tin.h, L.tin.w, nt) - L.z_x
            sp = _padded(sv, rec.pad_top, rec.pad_left, (oh - 1) * s + rec.kh, (ow - 1) * s + rec.kw)
            if L.kind == mf.L_CONV:
                A = np.zeros((cout, rec.kh, rec.kw, nt), dtype=I64)
                G2 = G_used.reshape(-1, cout).T
                for kh in range(rec.kh):
                    for kw in range(rec.kw):
                        sl = sp[kh:kh + (oh - 1) * s + 1:s, kw:kw + (ow - 1) * s + 1:s, :]
                        A[:, kh, kw, :] = G2 @ sl.reshape(-1, nt)
                qas = L.qas_w[:, None, None, None]
            else:
                A = np.zeros((nt, rec.kh, rec.kw), dtype=I64)
                Gt = G_used[:, :, L.perm[:nt]]
                for kh in range(rec.kh):
                    for kw in range(rec.kw):
                        sl = sp[kh:kh + (oh - 1) * s + 1:s, kw:kw + (ow - 1) * s + 1:s, :]
                        A[:, kh, kw] = (Gt * sl).sum(axis=(0, 1))
                qas = L.qas_w[L.perm[:nt]][:, None, None]
            u = (f32_i64(A) * k_used) * qas
            w = self.w_tr[li]
            if L.residue:
                r = self.w_res[li]
                T = np.clip(256 * w + r - rint_sat(u * F32(256), 65535), -127 * 256, 127 * 256)
                w_new = (T + 128) >> 8
                self.w_res[li] = T - 256 * w_new
                self.w_tr[li] = w_new
            else:
                self.w_tr[li] = np.clip(w - rint_sat(u, 255), -127, 127)
            scale = F32(s_used * L.s_x)
            if op.t[mf.BWD_IN_GRAD] != NONE and L.w_scale is not None:  # real gradient: A' * s' * s_x / s_w[c]
                sw = L.w_scale if L.kind == mf.L_CONV else L.w_scale[L.perm[:nt]]
                ch_scale = (scale / sw.astype(F32)).astype(F32)
            else:
                ch_scale = np.full(A.shape[0], scale, dtype=F32)
            flat = A.ravel()
            per = flat.size // A.shape[0]
            for i in range(flat.size):
                self.weight_grads[(li, i)] = (int(flat[i]), F32(ch_scale[i // per]))
            self.weight_grad_arrays[(li, "w")] = (A, ch_scale.reshape((-1,) + (1,) * (A.ndim - 1)))


    def _bwd_input(self, L, op, G, s_g):
        rec = L.rec
        li = L.index
        s = rec.stride
        oh, ow, cout = G.shape
        self._s_prescaled = None
        gmax = int(np.abs(G).max()) if G.size else 0
        if gmax == 0:
            self._set_grad(op.t[mf.BWD_IN_GRAD], F32(0), np.zeros(L.tin.numel, dtype=I64))
            self._s_prescaled = F32(0)
            return
        if L.gscale is None:
            raise ValueError(f"layer {li}: input gradient needs gscale")
        P = G * L.gscale                   # s_w[c] / max(s_w) in Q31, exact in int64
        pmax = int(np.abs(P).max())
        if pmax == 0:
            self._set_grad(op.t[mf.BWD_IN_GRAD], F32(0), np.zeros(L.tin.numel, dtype=I64))
            self._s_prescaled = F32(0)
            return
        e = max(bitlen(pmax) - 15, 0)
        Gp = _clamp16(rs(P, e)) if e else P    # to16 of the products
        self._g[op.t[mf.BWD_OUT_GRAD]] = (s_g, Gp)  # the output gradient is prescaled in place (its scale field is kept)
        s_p = F32(F32(s_g * pow2(e - 31)) * L.wscale_max)
        self._s_prescaled = s_p
        W = self.weights(li)
        H, Wd = L.tin.h, L.tin.w
        hp = max((oh - 1) * s + rec.kh, rec.pad_top + H)
        wp = max((ow - 1) * s + rec.kw, rec.pad_left + Wd)
        if L.kind == mf.L_CONV:
            accp = np.zeros((hp, wp, L.cin), dtype=I64)
            for kh in range(rec.kh):
                for kw in range(rec.kw):
                    accp[kh:kh + (oh - 1) * s + 1:s, kw:kw + (ow - 1) * s + 1:s, :] += \
                        Gp @ W[:, kh, kw, :]
        else:
            accp = np.zeros((hp, wp, L.cout), dtype=I64)
            Gt = Gp[:, :, L.perm]
            for kh in range(rec.kh):
                for kw in range(rec.kw):
                    accp[kh:kh + (oh - 1) * s + 1:s, kw:kw + (ow - 1) * s + 1:s, :] += \
                        Gt * W[:, kh, kw]
        acc_st = accp[rec.pad_top:rec.pad_top + H, rec.pad_left:rec.pad_left + Wd, :]
        acc = np.empty_like(acc_st)
        acc[:, :, L.perm] = acc_st
        dX, s_dx = to_int16(acc, s_p)
        self._set_grad(op.t[mf.BWD_IN_GRAD], s_dx, dX)


    def _bwd_add(self, L, op):
        s_g, G = self._g[op.t[mf.BWD_OUT_GRAD]]
        G = self._apply_mask(G, op.t[mf.BWD_MASK])
        self._g[op.t[mf.BWD_OUT_GRAD]] = (s_g, G)
        for tid in (op.t[mf.BWD_IN_GRAD], op.t[mf.BWD_IN2_GRAD]):
            if tid != NONE:
                self._set_grad(tid, s_g, G.copy())

    def _bwd_pool(self, L, op):
        s_g, G = self._g[op.t[mf.BWD_OUT_GRAD]]
        G = self._apply_mask(G, op.t[mf.BWD_MASK])
        self._g[op.t[mf.BWD_OUT_GRAD]] = (s_g, G)
        if op.t[mf.BWD_IN_GRAD] == NONE:
            return
        H, W, C = L.tin.h, L.tin.w, L.tin.c
        dX = np.broadcast_to(G.reshape(1, 1, C), (H, W, C)).copy()
        self._set_grad(op.t[mf.BWD_IN_GRAD], F32(s_g / F32(H * W)), dX)

    def _bwd_window_pool(self, L, op):
        """Max: each window's gradient to its first largest input (row by row);
        average: each window's gradient times round(2^24 / n), scale 2^-24."""
        s_g, G = self._g[op.t[mf.BWD_OUT_GRAD]]
        G = self._apply_mask(G, op.t[mf.BWD_MASK])
        self._g[op.t[mf.BWD_OUT_GRAD]] = (s_g, G)  # masked in place, as on the device
        V = np.zeros((L.tin.h, L.tin.w, L.tin.c), dtype=I64)
        x = self.saved[op.t[mf.BWD_SAVED]] if L.kind == mf.L_MAXPOOL else None
        for oh, ow, hs, ws in self._windows(L):
            if L.kind == mf.L_MAXPOOL:
                win = x[hs, ws].reshape(-1, L.tin.c)
                first = win.argmax(axis=0)  # numpy: the first of equal maxima
                hh, ww = np.divmod(first, ws.stop - ws.start)
                np.add.at(V, (hs.start + hh, ws.start + ww, np.arange(L.tin.c)), G[oh, ow])
            else:
                n = self._pool_count(L, (hs.stop - hs.start) * (ws.stop - ws.start))
                V[hs, ws] += G[oh, ow] * ((2 ** 24 + n // 2) // n)
        s = s_g if L.kind == mf.L_MAXPOOL else F32(s_g * pow2(-24))
        dX, s_dx = to_int16(V, s)
        self._set_grad(op.t[mf.BWD_IN_GRAD], s_dx, dX)

    def _bwd_table(self, L, op):
        s_g, G = self._g[op.t[mf.BWD_OUT_GRAD]]
        G = self._apply_mask(G, op.t[mf.BWD_MASK])
        self._g[op.t[mf.BWD_OUT_GRAD]] = (s_g, G)
        x = self.saved[op.t[mf.BWD_SAVED]].astype(np.intp)
        dX, s_dx = to_int16(G * L.table_grad[x + 128], F32(s_g * pow2(-int(L.rec.shift))))
        self._set_grad(op.t[mf.BWD_IN_GRAD], s_dx, dX)

    def _logits_clamp(self, tid: int) -> tuple:
        for L in self.layers:
            if L.rec.out == tid:
                return L.act_min, L.act_max
        return -128, 127

    def step(self, x, label=None, target=None) -> np.float32:
        h = self.header
        self.forward(x, training=True)
        self._g = {}
        self.weight_grads, self.weight_grad_arrays = {}, {}
        loss = None
        with np.errstate(over="ignore", invalid="ignore", under="ignore", divide="ignore"):
            for op in self.model.ops[h.n_fwd_ops:]:
                if op.kind == mf.OP_LOSS:
                    q = self.acts[op.t[mf.LOSS_LOGITS]]
                    if h.loss_kind == mf.LOSS_SOFTMAX_CE:
                        if label is None:
                            raise ValueError("cross-entropy needs a label")
                        G, s_g, loss = softmax_ce(q, label, self.exp_table)
                    elif h.loss_kind == mf.LOSS_MSE:
                        if target is None:
                            raise ValueError("MSE needs a target")
                        G, s_g, loss = mse(q, np.asarray(target).astype(np.int8),
                                           self.tensors[op.t[mf.LOSS_LOGITS]].scale)
                    else:
                        raise ValueError(f"unknown loss kind {h.loss_kind}")
                    G, s_g = to_int16(gate_saturated(G, q, self._logits_clamp(op.t[mf.LOSS_LOGITS])), s_g)
                    self._set_grad(op.t[mf.LOSS_GRAD], s_g, G)
                elif op.kind == mf.OP_BWD:
                    L = self.layers[op.layer]
                    if L.kind in (mf.L_CONV, mf.L_DWCONV):
                        self._bwd_conv(L, op)
                    elif L.kind == mf.L_ADD:
                        self._bwd_add(L, op)
                    elif L.kind == mf.L_AVGPOOL:
                        self._bwd_pool(L, op)
                    elif L.kind in (mf.L_MAXPOOL, mf.L_AVGPOOL2D):
                        self._bwd_window_pool(L, op)
                    elif L.kind == mf.L_LUT:
                        self._bwd_table(L, op)
                    else:
                        raise ValueError(f"layer {op.layer}: unknown kind {L.kind}")
                elif op.kind == mf.OP_GRAD_ADD:
                    s_a, a = self._g[op.t[mf.GRAD_ADD_SUM]]
                    s_b, b = self._g[op.t[mf.GRAD_ADD_PART]]
                    out, s = grad_add(a, s_a, b, s_b)
                    self._set_grad(op.t[mf.GRAD_ADD_SUM], s, out)
                else:
                    raise ValueError(f"op of kind {op.kind} after the forward ops")
        self.grads = {tid: (s, v.astype(np.int16)) for tid, (s, v) in self._g.items()}
        self.loss = loss
        return loss
