/*
 * Forward kernels, optimised versions (selected by TT_OPTIMIZED, see
 * tt_opt.h). Same results as tt_forward.c bit for bit: the int32 sums are
 * reordered only, the requantisation is the reference's (for shift >= 33 on
 * the high word of acc * mult, which rounds the same, see rq_fast).
 *
 *  - pointwise (1x1, stride 1, no channel permutation): 2 output pixels x 2
 *    output channels per tile, int8 operands straight from the tensors
 *    (SXTB16 + SMLAD), the input zero point folded into the bias:
 *    sum w (x - z) = sum w x - z sum w.
 *  - any other conv (k x k, stride, padding, permuted/trained channels, the
 *    FC head): the patches of 2 output pixels are copied to an int16 column
 *    on the stack, zero point subtracted and padding 0, laid out as the
 *    layer's weights are stored (COL_FLAT etc.), then 2 x 2 tiles.
 *  - depthwise without perm, channels a multiple of 4: 4 channels per load,
 *    weights regrouped per tap on the stack, SXTAB16 + SMLABB/SMLATT.
 *  - other depthwise: per channel, the kh input rows of a window in an int16
 *    ring on the stack (zero point subtracted, padding 0), SMLAD on pairs.
 *  - add: the 64-bit rounding shift in 32-bit halves, the mask a byte at a time.
 * Conv and depthwise kernels compute a range of output rows (tt_rows: the
 * whole layer, or a fused op's rows). A layer that does not fit the stack
 * budget (TT_OPT_STACK_BYTES) or the limits below runs the reference kernel.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

#if defined(__GNUC__)
#define TT_INLINE static inline __attribute__((always_inline))
#define TT_NOINLINE __attribute__((noinline))
#else
#define TT_INLINE static inline
#define TT_NOINLINE
#endif

static const int32_t *bias_of(tt_trainer *t, const tt_layer_rec *L) {
    return (L->flags & TT_LF_TRAIN_BIAS) ? TT_ARENA(t, int32_t, L->b_arena) : TT_BLOB(&t->model, int32_t, L->b_off);
}

static const uint16_t *perm_of(const tt_model *m, const tt_layer_rec *L) {
    return L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
}

/* Requantisation of one output channel, constants prepared once. */
typedef struct {
    int32_t mult, rnd;
    uint32_t shift, k; /* k = shift - 32, rnd = 2^(shift - 33) when shift >= 33 */
} rq_t;

static inline rq_t rq_make(int32_t mult, int8_t shift) {
    rq_t r;
    r.mult = mult;
    r.shift = (uint32_t)shift;
    r.k = r.shift >= 33u ? r.shift - 32u : 0u;
    r.rnd = r.shift >= 33u ? (int32_t)(1u << (r.shift - 33u)) : 0;
    return r;
}

/* tt_requant(acc, mult, shift) for shift >= 33: floor((P + 2^(s-1)) / 2^s)
   with P = acc * mult = hi * 2^32 + lo, 0 <= lo < 2^32, equals
   floor((hi + 2^(s-33)) / 2^(s-32)) as lo / 2^32 < 1; |hi| < 2^30. */
static inline int32_t rq_fast(int32_t acc, const rq_t *r) {
    return ((int32_t)(((int64_t)acc * r->mult) >> 32) + r->rnd) >> r->k;
}

/* tt_requant(acc, mult, shift), saturated to +-2^30 (see tt_store_out). */
static inline int32_t rq_apply(int32_t acc, const rq_t *r) {
    if (r->k) {
        return rq_fast(acc, r);
    }
    return tt_clamp32(tt_requant(acc, r->mult, r->shift), -(1 << 30), 1 << 30);
}

static inline int32_t clamp_act(int32_t q, int32_t lo, int32_t hi) {
#if TT_DSP
    if (lo == -128 && hi == 127) { /* constant where it counts: one SSAT */
        return __ssat(q, 8);
    }
#endif
    return q < lo ? lo : (q > hi ? hi : q);
}

/* Outputs idx and idx + 1 (two channels of one pixel), values before the
   output zero point: y, and the mask bits when inside the clamp range. */
static inline void out2(int8_t *y, uint8_t *mask, uint32_t idx, int32_t va, int32_t vb, int32_t zy, int32_t lo,
                        int32_t hi) {
    const int32_t qa = va + zy, qb = vb + zy;
    const int32_t ra = clamp_act(qa, lo, hi), rb = clamp_act(qb, lo, hi);
    y[idx] = (int8_t)ra;
    y[idx + 1u] = (int8_t)rb;
    if (mask) {
        const uint32_t bits = (uint32_t)(ra == qa) | ((uint32_t)(rb == qb) << 1), sh = idx & 7u;
        mask[idx >> 3] |= (uint8_t)(bits << sh);
        if (sh == 7u) {
            mask[(idx >> 3) + 1u] |= (uint8_t)(bits >> 1);
        }
    }
}

/* ---- pointwise: int8 operands, zero point folded into the bias ---- */

#if TT_DSP
/* 4 bytes of pixels x0 (q), x1 (p) times 4 bytes of channels a (u), b (v). */
#define TT_CHUNK_2X2(q, p, u, v)                                                                                     \
    do {                                                                                                             \
        int32_t t1 = __sxtb16(q), t2 = __sxtb16(u), t3;                                                              \
        q = (int32_t)tt_sxtb16_hi((uint32_t)q);                                                                      \
        u = (int32_t)tt_sxtb16_hi((uint32_t)u);                                                                      \
        a0 = __smlad(t1, t2, a0);                                                                                    \
        a0 = __smlad(q, u, a0);                                                                                      \
        t3 = __sxtb16(p);                                                                                            \
        p = (int32_t)tt_sxtb16_hi((uint32_t)p);                                                                      \
        a1 = __smlad(t3, t2, a1);                                                                                    \
        a1 = __smlad(p, u, a1);                                                                                      \
        t2 = __sxtb16(v);                                                                                            \
        v = (int32_t)tt_sxtb16_hi((uint32_t)v);                                                                      \
        a2 = __smlad(t1, t2, a2);                                                                                    \
        a2 = __smlad(q, v, a2);                                                                                      \
        a3 = __smlad(t3, t2, a3);                                                                                    \
        a3 = __smlad(p, v, a3);                                                                                      \
    } while (0)
#endif

/* a[0] += x0.wa, a[1] += x1.wa, a[2] += x0.wb, a[3] += x1.wb over n int8,
   with x1 = x0 + off and wb = wa + off. Sums wrap (two's complement): with
   the zero point folded into the bias a partial sum may leave int32 by a
   little though the total (the reference's) fits. */
TT_INLINE void dot_s8_2x2(const int8_t *x0, const int8_t *wa, uint32_t off, uint32_t n, int32_t *a) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
#if TT_DSP
    const int8_t *end = x0 + (n & ~7u);
    for (; x0 != end; x0 += 8, wa += 8) {
        int32_t q = (int32_t)tt_ld32(x0), p = (int32_t)tt_ld32(x0 + off);
        int32_t u = (int32_t)tt_ld32(wa), v = (int32_t)tt_ld32(wa + off);
        TT_CHUNK_2X2(q, p, u, v);
        q = (int32_t)tt_ld32(x0 + 4);
        p = (int32_t)tt_ld32(x0 + off + 4);
        u = (int32_t)tt_ld32(wa + 4);
        v = (int32_t)tt_ld32(wa + off + 4);
        TT_CHUNK_2X2(q, p, u, v);
    }
    if (n & 4u) {
        int32_t q = (int32_t)tt_ld32(x0), p = (int32_t)tt_ld32(x0 + off);
        int32_t u = (int32_t)tt_ld32(wa), v = (int32_t)tt_ld32(wa + off);
        TT_CHUNK_2X2(q, p, u, v);
        x0 += 4;
        wa += 4;
    }
    n &= 3u;
#endif
    for (uint32_t i = 0; i < n; i++) {
        const int32_t p = x0[i], q = x0[off + i], u = wa[i], v = wa[off + i];
        a0 = (int32_t)((uint32_t)a0 + (uint32_t)(p * u));
        a1 = (int32_t)((uint32_t)a1 + (uint32_t)(q * u));
        a2 = (int32_t)((uint32_t)a2 + (uint32_t)(p * v));
        a3 = (int32_t)((uint32_t)a3 + (uint32_t)(q * v));
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

/* sum x w over n int8 (wrapping, as above). */
static int32_t dot_s8(const int8_t *x, const int8_t *w, uint32_t n) {
    uint32_t a = 0;
    for (uint32_t i = 0; i < n; i++) {
        a += (uint32_t)(x[i] * w[i]);
    }
    return (int32_t)a;
}

static int32_t sum_s8(const int8_t *w, uint32_t n) {
    int32_t s = 0;
    uint32_t i = 0;
#if TT_DSP
    for (; i + 4u <= n; i += 4u) {
        const int32_t u = (int32_t)tt_ld32(w + i);
        s = __smlad((int32_t)tt_sxtab16_hi((uint32_t)__sxtb16(u), (uint32_t)u), 0x00010001, s);
    }
#endif
    for (; i < n; i++) {
        s += w[i];
    }
    return s;
}

typedef struct {
    const int8_t *x, *wa;
    int8_t *y;
    uint8_t *mask;
    uint32_t cin, cout, npix, c;
    int32_t ba, bb, zy, lo, hi;
    rq_t ra, rb;
} pw_pass_t;

/* Channels c, c + 1 at every pixel. fast: both shifts >= 33 (rq_fast);
   the clamp bounds are constants where the caller passes them so. */
TT_INLINE void pw_pass_body(const pw_pass_t *P, int fast, int32_t lo, int32_t hi) {
    const int8_t *xp = P->x, *wa = P->wa;
    const uint32_t cin = P->cin, cout = P->cout, npix = P->npix;
    int8_t *y = P->y;
    uint8_t *mask = P->mask;
    const int32_t zy = P->zy;
    uint32_t idx = P->c, p = 0;
    for (; p + 2u <= npix; p += 2u, xp += 2u * cin, idx += 2u * cout) {
        int32_t a[4];
        a[0] = P->ba;
        a[1] = P->ba;
        a[2] = P->bb;
        a[3] = P->bb;
        dot_s8_2x2(xp, wa, cin, cin, a);
        if (fast) {
            out2(y, mask, idx, rq_fast(a[0], &P->ra), rq_fast(a[2], &P->rb), zy, lo, hi);
            out2(y, mask, idx + cout, rq_fast(a[1], &P->ra), rq_fast(a[3], &P->rb), zy, lo, hi);
        } else {
            out2(y, mask, idx, rq_apply(a[0], &P->ra), rq_apply(a[2], &P->rb), zy, lo, hi);
            out2(y, mask, idx + cout, rq_apply(a[1], &P->ra), rq_apply(a[3], &P->rb), zy, lo, hi);
        }
    }
    if (p < npix) {
        out2(y, mask, idx, rq_apply(P->ba + dot_s8(xp, wa, cin), &P->ra),
             rq_apply(P->bb + dot_s8(xp, wa + cin, cin), &P->rb), zy, lo, hi);
    }
}

static TT_NOINLINE void pw_pass_fast_full(const pw_pass_t *P) {
    pw_pass_body(P, 1, -128, 127);
}

static TT_NOINLINE void pw_pass_any(const pw_pass_t *P) {
    pw_pass_body(P, 0, P->lo, P->hi);
}

/* 1x1 conv, stride 1, rows of input and output alike, no perm (the
   reference then reads every weight from the model). Output rows
   [R->oh0, R->oh1); mask offset to y[0]. */
static void pointwise(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = R->x + (R->oh0 - R->row0) * (uint32_t)in->w * in->c;
    int8_t *y = R->y;
    const int8_t *wf = tt_weights_frozen(m, L);
    const int32_t *bias = bias_of(t, L);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint32_t cin = in->c, cout = out->c, npix = (R->oh1 - R->oh0) * out->w;
    const int32_t zx = in->zero, zy = out->zero, lo = L->act_min, hi = L->act_max;
    pw_pass_t P;
    uint32_t c = 0;
    P.x = x;
    P.y = y;
    P.mask = mask;
    P.cin = cin;
    P.cout = cout;
    P.npix = npix;
    P.zy = zy;
    P.lo = lo;
    P.hi = hi;
    for (; c + 2u <= cout; c += 2u) {
        P.c = c;
        P.wa = wf + c * cin;
        P.ba = bias[c] - zx * sum_s8(P.wa, cin);
        P.bb = bias[c + 1u] - zx * sum_s8(P.wa + cin, cin);
        P.ra = rq_make(mult[c], shift[c]);
        P.rb = rq_make(mult[c + 1u], shift[c + 1u]);
        if (P.ra.k && P.rb.k && lo == -128 && hi == 127) {
            pw_pass_fast_full(&P);
        } else {
            pw_pass_any(&P);
        }
    }
    if (c < cout) { /* the last of an odd number of channels */
        const int8_t *wa = wf + c * cin;
        const int32_t ba = bias[c] - zx * sum_s8(wa, cin);
        const rq_t ra = rq_make(mult[c], shift[c]);
        for (uint32_t p = 0; p < npix; p++) {
            tt_store_out(y, mask, p * cout + c, rq_apply(ba + dot_s8(x + p * cin, wa, cin), &ra), zy, lo, hi);
        }
    }
}

/* ---- im2col: int16 columns of two output pixels, zero point subtracted,
   padding 0. Per 4 elements 4 words: pixel 0 (e0, e2) (e1, e3), pixel 1
   the same, matching SXTB16 of 4 weight bytes (bytes 0, 2 and 1, 3). ---- */


/* Up to 4 weight bytes, missing ones 0 (never reads past w[n-1]). */
static inline uint32_t ld_tail(const int8_t *w, uint32_t n) {
    const uint8_t *b = (const uint8_t *)w;
    uint32_t v = b[0];
    if (n > 1u) {
        v |= (uint32_t)b[1] << 8;
    }
    if (n > 2u) {
        v |= (uint32_t)b[2] << 16;
    }
    return v;
}

/* One group: 4 column words (pixel 0: (e0, e2) (e1, e3), pixel 1 alike)
   times 4 bytes of weights u (channel a) and v (channel b). */
TT_INLINE void mac_group(const int16_t *col, uint32_t u, uint32_t v, int32_t *a) {
    const uint32_t p0 = tt_ld32(col), p1 = tt_ld32(col + 2), q0 = tt_ld32(col + 4), q1 = tt_ld32(col + 6);
#if TT_DSP
    int32_t t = __sxtb16((int32_t)u);
    a[0] = __smlad((int32_t)p0, t, a[0]);
    a[1] = __smlad((int32_t)q0, t, a[1]);
    t = (int32_t)tt_sxtb16_hi(u);
    a[0] = __smlad((int32_t)p1, t, a[0]);
    a[1] = __smlad((int32_t)q1, t, a[1]);
    t = __sxtb16((int32_t)v);
    a[2] = __smlad((int32_t)p0, t, a[2]);
    a[3] = __smlad((int32_t)q0, t, a[3]);
    t = (int32_t)tt_sxtb16_hi(v);
    a[2] = __smlad((int32_t)p1, t, a[2]);
    a[3] = __smlad((int32_t)q1, t, a[3]);
#else
    const int32_t u0 = (int8_t)(u & 0xFFu), u1 = (int8_t)((u >> 8) & 0xFFu);
    const int32_t u2 = (int8_t)((u >> 16) & 0xFFu), u3 = (int8_t)(u >> 24);
    const int32_t v0 = (int8_t)(v & 0xFFu), v1 = (int8_t)((v >> 8) & 0xFFu);
    const int32_t v2 = (int8_t)((v >> 16) & 0xFFu), v3 = (int8_t)(v >> 24);
    a[0] += lo16(p0) * u0 + hi16(p0) * u2 + lo16(p1) * u1 + hi16(p1) * u3;
    a[1] += lo16(q0) * u0 + hi16(q0) * u2 + lo16(q1) * u1 + hi16(q1) * u3;
    a[2] += lo16(p0) * v0 + hi16(p0) * v2 + lo16(p1) * v1 + hi16(p1) * v3;
    a[3] += lo16(q0) * v0 + hi16(q0) * v2 + lo16(q1) * v1 + hi16(q1) * v3;
#endif
}

/* a[0] += col0.wa, a[1] += col1.wa, a[2] += col0.wb, a[3] += col1.wb with
   wb = wa + off; n weight bytes, ceil(n/4) groups of the column. */
static TT_NOINLINE void dot_s16_2x2(const int16_t *col, const int8_t *wa, uint32_t off, uint32_t n, int32_t *a) {
    int32_t acc[4];
    const int8_t *end = wa + (n & ~3u);
    acc[0] = a[0];
    acc[1] = a[1];
    acc[2] = a[2];
    acc[3] = a[3];
    for (; wa != end; wa += 4, col += 8) {
        mac_group(col, tt_ld32(wa), tt_ld32(wa + off), acc);
    }
    if (n & 3u) {
        mac_group(col, ld_tail(wa, n & 3u), ld_tail(wa + off, n & 3u), acc);
    }
    a[0] = acc[0];
    a[1] = acc[1];
    a[2] = acc[2];
    a[3] = acc[3];
}

/* a[0] += col0.wa, a[2] += col0.wb: dot_s16_2x2 for one pixel (the FC head). */
static TT_NOINLINE void dot_s16_1x2(const int16_t *col, const int8_t *wa, uint32_t off, uint32_t n, int32_t *a) {
    int32_t a0 = a[0], a2 = a[2];
    for (uint32_t i = 0; i < n; i += 4u, col += 8) {
        const uint32_t p0 = tt_ld32(col), p1 = tt_ld32(col + 2);
        const uint32_t u = i + 4u <= n ? tt_ld32(wa + i) : ld_tail(wa + i, n - i);
        const uint32_t v = i + 4u <= n ? tt_ld32(wa + off + i) : ld_tail(wa + off + i, n - i);
#if TT_DSP
        a0 = __smlad((int32_t)p0, __sxtb16((int32_t)u), a0);
        a0 = __smlad((int32_t)p1, (int32_t)tt_sxtb16_hi(u), a0);
        a2 = __smlad((int32_t)p0, __sxtb16((int32_t)v), a2);
        a2 = __smlad((int32_t)p1, (int32_t)tt_sxtb16_hi(v), a2);
#else
        a0 += lo16(p0) * (int8_t)(u & 0xFFu) + hi16(p0) * (int8_t)((u >> 16) & 0xFFu) +
              lo16(p1) * (int8_t)((u >> 8) & 0xFFu) + hi16(p1) * (int8_t)(u >> 24);
        a2 += lo16(p0) * (int8_t)(v & 0xFFu) + hi16(p0) * (int8_t)((v >> 16) & 0xFFu) +
              lo16(p1) * (int8_t)((v >> 8) & 0xFFu) + hi16(p1) * (int8_t)(v >> 24);
#endif
    }
    a[0] = a0;
    a[2] = a2;
}

/* Element e of pixel k (0 or 1) of a column run. */
static inline void col_put(int16_t *col, uint32_t k, uint32_t e, int32_t v) {
    /* word order in a group: (e0, e2) (e1, e3), the two low bits swapped */
    col[2u * (e & ~3u) + 4u * k + (((e & 1u) << 1) | ((e >> 1) & 1u))] = (int16_t)v;
}

static uint32_t ceil4(uint32_t n) {
    return (n + 3u) & ~3u;
}

/* Column layouts, chosen per layer to match how its weights are stored, so
   that every dot product runs over one long contiguous run where it can
   (a call and a padded tail per kernel tap cost more than the MACs when
   there are few channels: cin = 1 would be padded 4x):
   COL_FLAT  every tap's cin channels back to back, in perm order if there is
             one; matches the frozen weights, and with every channel trained
             (n_train = cin) the arena's [cout][kh][kw][n_train] as well;
   COL_FULL  the trained channels of every tap back to back (the arena's
             layout), then COL_FLAT with the trained positions 0 (the frozen
             weights' layout; those weights then meet zeros);
   COL_TAPS  the trained run as in COL_FULL, then per tap the frozen channels
             padded to 4 (one dot per tap, no wasted MACs: wins for many
             channels and few taps, e.g. 1x1). */
enum { COL_FLAT, COL_FULL, COL_TAPS };

/* One call of a dot over the column costs about as much as this many
   tenths of a group of 4 elements (call, accumulators in and out, the
   tail): the break-even of COL_TAPS and COL_FULL measured on the M7. */
#ifndef TT_COL_CALL_TENTHS
#define TT_COL_CALL_TENTHS 11u
#endif

/* A run of the column: per kernel tap zlead zeros, then the input channels
   at storage positions [j0, j1); zero padded to a multiple of 4 after each
   tap (per_tap) or at the run's end. */
typedef struct {
    uint32_t j0, j1, zlead, per_tap;
} run_t;

typedef struct {
    const tt_layer_rec *L;
    const tt_tensor_rec *in;
    const int8_t *x;
    const uint16_t *perm; /* NULL without one or when it is the identity */
    uint32_t nrun, len;   /* len: elements per pixel */
    run_t run[2];
} fill_t;

static uint32_t run_len(const run_t *u, uint32_t kk) {
    const uint32_t n = u->zlead + u->j1 - u->j0;
    return u->per_tap ? kk * ceil4(n) : ceil4(kk * n);
}

/* Pixel k's half of the column of output pixel (oh, ow), zero point
   subtracted, padding 0, element by element into its slots (col_put): for
   columns too long to leave room for gather's bytes. */
static void fill_col(int16_t *col, uint32_t k, const fill_t *F, uint32_t oh, uint32_t ow) {
    const tt_layer_rec *L = F->L;
    const tt_tensor_rec *in = F->in;
    const uint32_t cin = in->c;
    uint32_t e = 0;
    for (uint32_t u = 0; u < F->nrun; u++) {
        const run_t *R = &F->run[u];
        for (uint32_t kh = 0; kh < L->kh; kh++) {
            const int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
            for (uint32_t kw = 0; kw < L->kw; kw++) {
                const int32_t iw = (int32_t)(ow * L->stride + kw) - L->pad_left;
                const int inside = ih >= 0 && ih < in->h && iw >= 0 && iw < in->w;
                const int8_t *xp = inside ? F->x + ((uint32_t)ih * in->w + (uint32_t)iw) * cin : NULL;
                for (uint32_t z = 0; z < R->zlead; z++) {
                    col_put(col, k, e++, 0);
                }
                for (uint32_t j = R->j0; j < R->j1; j++) {
                    col_put(col, k, e++, xp ? xp[F->perm ? F->perm[j] : j] - in->zero : 0);
                }
                while (R->per_tap && (e & 3u)) {
                    col_put(col, k, e++, 0);
                }
            }
        }
        while (e & 3u) { /* the next run starts a group */
            col_put(col, k, e++, 0);
        }
    }
}

/* Pixel (oh, ow)'s column in natural order as input bytes, every padding
   (taps outside the input, zlead, run and tap padding) the input zero point,
   which to_col turns into 0; b holds F->len bytes. */
static void gather(int8_t *b, const fill_t *F, uint32_t oh, uint32_t ow) {
    const tt_layer_rec *L = F->L;
    const tt_tensor_rec *in = F->in;
    const uint32_t cin = in->c, kw_n = L->kw;
    const int32_t iw0 = (int32_t)(ow * L->stride) - L->pad_left, lim = in->w - iw0;
    /* the taps [kw0, kw1) of a kernel row are inside the input */
    const uint32_t kw0 = iw0 >= 0 ? 0u : ((uint32_t)-iw0 < kw_n ? (uint32_t)-iw0 : kw_n);
    const uint32_t kw1 = lim <= (int32_t)kw0 ? kw0 : (lim < (int32_t)kw_n ? (uint32_t)lim : kw_n);
    const int zb = (int8_t)in->zero;
    const uint16_t *perm = F->perm;
    int8_t *p = b;
    for (uint32_t u = 0; u < F->nrun; u++) {
        const run_t *R = &F->run[u];
        const uint32_t j0 = R->j0, j1 = R->j1, n = R->zlead + j1 - j0, tap = R->per_tap ? ceil4(n) : n;
        /* every channel in storage order: a kernel row's taps inside the
           input are contiguous bytes */
        const int whole = !perm && j0 == 0u && n == cin && tap == n;
        for (uint32_t kh = 0; kh < L->kh; kh++) {
            const int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
            const int8_t *xp;
            if (ih < 0 || ih >= in->h) { /* a row of padding */
                memset(p, zb, kw_n * tap);
                p += kw_n * tap;
                continue;
            }
            if (kw0) {
                memset(p, zb, kw0 * tap);
                p += kw0 * tap;
            }
            xp = kw1 > kw0 ? F->x + ((uint32_t)ih * in->w + (uint32_t)(iw0 + (int32_t)kw0)) * cin : F->x;
            if (whole) {
                memcpy(p, xp, (kw1 - kw0) * cin);
                p += (kw1 - kw0) * cin;
            } else {
                for (uint32_t kw = kw0; kw < kw1; kw++, xp += cin) {
                    for (uint32_t z = 0; z < R->zlead; z++) {
                        *p++ = (int8_t)zb;
                    }
                    if (perm) {
                        for (uint32_t j = j0; j < j1; j++) {
                            *p++ = xp[perm[j]];
                        }
                    } else {
                        for (uint32_t j = j0; j < j1; j++) {
                            *p++ = xp[j];
                        }
                    }
                    for (uint32_t z = n; z < tap; z++) {
                        *p++ = (int8_t)zb;
                    }
                }
            }
            if (kw1 < kw_n) {
                memset(p, zb, (kw_n - kw1) * tap);
                p += (kw_n - kw1) * tap;
            }
        }
        while ((uint32_t)(p - b) & 3u) { /* the next run starts a group */
            *p++ = (int8_t)zb;
        }
    }
}

/* gather's bytes, zero point subtracted, into pixel k's slots of the column:
   per group of 4 bytes the words (e0, e2) (e1, e3), which SXTAB16 gives. */
static void to_col(int16_t *col, uint32_t k, const int8_t *b, uint32_t len, int32_t zx) {
    int16_t *c = col + 4u * k;
#if TT_DSP
    const uint32_t nz = pack16(-zx, -zx);
    for (uint32_t i = 0; i < len; i += 4u, c += 8) {
        const uint32_t v = tt_ld32(b + i);
        const uint32_t w0 = (uint32_t)__sxtab16((int32_t)nz, (int32_t)v), w1 = tt_sxtab16_hi(nz, v);
        memcpy(c, &w0, 4);
        memcpy(c + 2, &w1, 4);
    }
#else
    for (uint32_t i = 0; i < len; i += 4u, c += 8) {
        c[0] = (int16_t)(b[i] - zx);
        c[1] = (int16_t)(b[i + 2u] - zx);
        c[2] = (int16_t)(b[i + 1u] - zx);
        c[3] = (int16_t)(b[i + 3u] - zx);
    }
#endif
}

typedef struct {
    const int16_t *col;
    const int8_t *w0, *wf; /* the first run's weights (frozen or arena), the frozen ones */
    const int32_t *bias, *mult;
    const int8_t *shift;
    int8_t *y;
    uint8_t *mask;
    uint32_t cin, cout, nt, kk, mode;
    uint32_t n0, c1; /* first run: weights per output channel; int16 offset of the second run */
    int32_t zy, lo, hi;
} im2col_t;

/* Every output channel of the column's two pixels p and pb. fast_full:
   every shift >= 33 and the clamp is [-128, 127]. */
TT_INLINE void im2col_channels(const im2col_t *A, uint32_t p, uint32_t pb, int fast_full) {
    const int16_t *col = A->col;
    const uint32_t cin = A->cin, cout = A->cout, nt = A->nt, kk = A->kk, n0 = A->n0;
    const int32_t lo = fast_full ? -128 : A->lo, hi = fast_full ? 127 : A->hi, zy = A->zy;
    for (uint32_t c = 0; c < cout; c += 2u) {
        const uint32_t cb = c + 1u < cout ? c + 1u : c;
        const rq_t ra = rq_make(A->mult[c], A->shift[c]), rb = rq_make(A->mult[cb], A->shift[cb]);
        int32_t a[4];
        a[0] = A->bias[c];
        a[1] = A->bias[c];
        a[2] = A->bias[cb];
        a[3] = A->bias[cb];
        /* one pixel left (odd count, the FC head): pixel 1 of the column is not filled */
        void (*dot)(const int16_t *, const int8_t *, uint32_t, uint32_t, int32_t *) =
            pb != p ? dot_s16_2x2 : dot_s16_1x2;
        dot(col, A->w0 + c * n0, (cb - c) * n0, n0, a);
        if (A->mode == COL_FULL) {
            dot(col + A->c1, A->wf + c * kk * cin, (cb - c) * kk * cin, kk * cin, a);
        } else if (A->mode == COL_TAPS) {
            const int16_t *cp = col + A->c1;
            for (uint32_t r = 0; r < kk; r++) {
                dot(cp, A->wf + (c * kk + r) * cin + nt, (cb - c) * kk * cin, cin - nt, a);
                cp += 2u * ceil4(cin - nt);
            }
        }
        if (fast_full) {
            a[0] = rq_fast(a[0], &ra);
            a[1] = rq_fast(a[1], &ra);
            a[2] = rq_fast(a[2], &rb);
            a[3] = rq_fast(a[3], &rb);
        } else {
            a[0] = rq_apply(a[0], &ra);
            a[1] = rq_apply(a[1], &ra);
            a[2] = rq_apply(a[2], &rb);
            a[3] = rq_apply(a[3], &rb);
        }
        if (cb != c) {
            out2(A->y, A->mask, p * cout + c, a[0], a[2], zy, lo, hi);
            if (pb != p) {
                out2(A->y, A->mask, pb * cout + c, a[1], a[3], zy, lo, hi);
            }
        } else {
            tt_store_out(A->y, A->mask, p * cout + c, a[0], zy, lo, hi);
            if (pb != p) {
                tt_store_out(A->y, A->mask, pb * cout + c, a[1], zy, lo, hi);
            }
        }
    }
}

static TT_NOINLINE void im2col_channels_fast_full(const im2col_t *A, uint32_t p, uint32_t pb) {
    im2col_channels(A, p, pb, 1);
}

static TT_NOINLINE void im2col_channels_any(const im2col_t *A, uint32_t p, uint32_t pb) {
    im2col_channels(A, p, pb, 0);
}

/* Every shift of the layer >= 33 and the clamp [-128, 127]. */
static int fast_full_layer(const tt_model *m, const tt_layer_rec *L, uint32_t cout) {
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    if (L->act_min != -128 || L->act_max != 127) {
        return 0;
    }
    for (uint32_t c = 0; c < cout; c++) {
        if (shift[c] < 33) {
            return 0;
        }
    }
    return 1;
}

static int perm_identity(const uint16_t *perm, uint32_t n) {
    for (uint32_t j = 0; j < n; j++) {
        if (perm[j] != j) {
            return 0;
        }
    }
    return 1;
}

/* Output rows [R->oh0, R->oh1) of a whole input (R->row0 = 0); mask offset
   to y[0]. */
static int conv_im2col(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    int16_t col[TT_OPT_STACK_BYTES / 2u];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const uint16_t *perm = perm_of(m, L);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, kk = (uint32_t)L->kh * L->kw;
    const uint32_t ow_n = out->w, p0 = R->oh0 * out->w, npix = R->oh1 * out->w;
    const int8_t *wt = nt ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    int fast_full;
    fill_t F;
    im2col_t A;
    F.run[0].j0 = 0;
    F.run[0].zlead = 0;
    F.run[0].per_tap = 0;
    A.wf = tt_weights_frozen(m, L);
    if (nt == 0u || nt == cin) {
        /* one run (nt > 0 implies a perm; the reference reads the arena then) */
        A.mode = COL_FLAT;
        A.w0 = nt ? wt : A.wf;
        A.n0 = kk * cin;
        F.nrun = 1;
        F.run[0].j1 = cin;
    } else {
        /* the frozen part per tap (padded, a call each) or as one run over
           every channel (the trained ones as zeros), whichever costs less
           and fits the stack (COL_FULL's column is the longer one) */
        const uint32_t taps = kk * (TT_COL_CALL_TENTHS + 10u * (ceil4(cin - nt) / 4u));
        const uint32_t full = TT_COL_CALL_TENTHS + 10u * (ceil4(kk * cin) / 4u);
        const uint32_t full_len = ceil4(kk * nt) + ceil4(kk * cin);
        A.mode = taps <= full || 2u * full_len > TT_OPT_STACK_BYTES / 2u ? COL_TAPS : COL_FULL;
        A.w0 = wt;
        A.n0 = kk * nt;
        F.nrun = 2;
        F.run[0].j1 = nt;
        F.run[1].j0 = nt;
        F.run[1].j1 = cin;
        F.run[1].zlead = A.mode == COL_FULL ? nt : 0u;
        F.run[1].per_tap = A.mode == COL_TAPS;
    }
    A.c1 = 2u * ceil4(A.n0);
    F.len = run_len(&F.run[0], kk) + (F.nrun > 1u ? run_len(&F.run[1], kk) : 0u);
    if (2u * F.len > TT_OPT_STACK_BYTES / 2u) {
        return 0; /* decided before any work: the reference runs at its own cost */
    }
    F.L = L;
    F.in = in;
    F.x = R->x;
    F.perm = perm && !perm_identity(perm, cin) ? perm : NULL;
    fast_full = fast_full_layer(m, L, cout);
    A.col = col;
    A.bias = bias_of(t, L);
    A.mult = TT_BLOB(m, int32_t, L->mult_off);
    A.shift = TT_BLOB(m, int8_t, L->shift_off);
    A.y = R->y;
    A.mask = mask;
    A.cin = cin;
    A.cout = cout;
    A.nt = nt;
    A.kk = kk;
    A.zy = out->zero;
    A.lo = L->act_min;
    A.hi = L->act_max;
    for (uint32_t p = p0; p < npix; p += 2u) {
        const uint32_t pb = p + 1u < npix ? p + 1u : p;
        if (5u * F.len <= TT_OPT_STACK_BYTES) {
            /* room for the bytes after the column (2 len int16) */
            int8_t *bytes = (int8_t *)(col + 2u * F.len);
            gather(bytes, &F, p / ow_n, p % ow_n);
            to_col(col, 0, bytes, F.len, in->zero);
            if (pb != p) {
                gather(bytes, &F, pb / ow_n, pb % ow_n);
                to_col(col, 1, bytes, F.len, in->zero);
            }
        } else {
            fill_col(col, 0, &F, p / ow_n, p % ow_n);
            if (pb != p) {
                fill_col(col, 1, &F, pb / ow_n, pb % ow_n);
            }
        }
        if (fast_full) { /* output pixels counted from y[0] */
            im2col_channels_fast_full(&A, p - p0, pb - p0);
        } else {
            im2col_channels_any(&A, p - p0, pb - p0);
        }
    }
    return 1;
}

/* The output's mask from y[0] on: the optimised kernels write mask bits
   relative to y, so y[0] must start a mask byte (else NULL: the reference runs). */
static int mask_at(const tt_rows *R, uint32_t row_elems, uint8_t **mask) {
    const uint32_t base = R->oh0 * row_elems;
    *mask = R->mask;
    if (R->mask && base % 8u) {
        return 0;
    }
    if (R->mask) {
        *mask += base / 8u;
    }
    return 1;
}

int tt_conv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in), *out = tt_tensor(&t->model, L->out);
    uint8_t *mask;
    if (!mask_at(R, (uint32_t)out->w * out->c, &mask)) {
        return 0;
    }
    if (L->kh == 1u && L->kw == 1u && L->stride == 1u && L->perm_off == TT_NO_OFFSET && in->w == out->w) {
        pointwise(t, L, R, mask);
        return 1;
    }
    return R->row0 == 0u && conv_im2col(t, L, R, mask);
}

/* ---- depthwise ---- */

/* acc + one kernel row: kp weight pairs (w_2k, w_2k+1) times the int16
   window row xr (the row's odd last weight is paired with 0). */
TT_INLINE int32_t dw_krow(const int16_t *xr, const uint32_t *w, uint32_t kp, int32_t acc) {
    for (uint32_t k = 0; k < kp; k++) {
#if TT_DSP
        acc = __smlad((int32_t)w[k], (int32_t)tt_ld32(xr + 2u * k), acc);
#else
        acc += lo16(w[k]) * xr[2u * k] + hi16(w[k]) * xr[2u * k + 1u];
#endif
    }
    return acc;
}

/* One output row of one channel. kh and kp are constants where it counts
   (the loops then unroll), fast: every shift >= 33 (rq_fast applies). */
TT_INLINE void dw_row(const int16_t *const *rp, const uint32_t *wp, uint32_t kh, uint32_t kp, uint32_t stride,
                      uint32_t ow_n, int32_t b, const rq_t *r, int fast, int8_t *y, uint8_t *mask, uint32_t idx,
                      uint32_t C, int32_t zy, int32_t lo, int32_t hi) {
    for (uint32_t ow = 0; ow < ow_n; ow++, idx += C) {
        const uint32_t base = ow * stride;
        int32_t acc = b, q, v;
        if (kh <= 7u) {
            /* unrolled for constant kh */
            acc = dw_krow(rp[0] + base, wp, kp, acc);
            if (kh > 1u) {
                acc = dw_krow(rp[1] + base, wp + kp, kp, acc);
            }
            if (kh > 2u) {
                acc = dw_krow(rp[2] + base, wp + 2u * kp, kp, acc);
            }
            if (kh > 3u) {
                acc = dw_krow(rp[3] + base, wp + 3u * kp, kp, acc);
            }
            if (kh > 4u) {
                acc = dw_krow(rp[4] + base, wp + 4u * kp, kp, acc);
            }
            if (kh > 5u) {
                acc = dw_krow(rp[5] + base, wp + 5u * kp, kp, acc);
            }
            if (kh > 6u) {
                acc = dw_krow(rp[6] + base, wp + 6u * kp, kp, acc);
            }
        } else {
            for (uint32_t rr = 0; rr < kh; rr++) {
                acc = dw_krow(rp[rr] + base, wp + rr * kp, kp, acc);
            }
        }
        v = fast ? rq_fast(acc, r) : rq_apply(acc, r);
        q = v + zy;
        v = clamp_act(q, lo, hi);
        y[idx] = (int8_t)v;
        if (mask && v == q) {
            mask[idx >> 3] |= (uint8_t)(1u << (idx & 7u));
        }
    }
}

#define DW_MAX_PAIRS 32u

/* ---- depthwise, 4 channels at a time (no perm, C a multiple of 4): one
   load gives 4 channels of a tap; weights regrouped per tap on the stack as
   int16 pairs (c0, c2) (c1, c3), matching SXTAB16 of the 4 input bytes. ---- */

#define DW4_MAX_TAPS 64u

typedef struct {
    const int8_t *x; /* input row r at x + (r - row0) W C */
    int8_t *y;       /* output row oh0 */
    uint8_t *mask;   /* offset to y[0] */
    const uint32_t *wtab; /* 2 words per tap */
    uint32_t C, H, W, OH, OW, KH, KW, s, pt, pl, c0, row0, oh0, oh1;
    int32_t zx, zy, lo, hi;
    int32_t b[4];
    rq_t rq[4];
} dw4_t;

/* Tap k of a kernel row: input bytes xr + k C, weights wr[2k], wr[2k + 1]. */
#if TT_DSP
#define DW4_TAP(k)                                                                                                   \
    do {                                                                                                             \
        const uint32_t v_ = tt_ld32(xr + (k) * C);                                                                   \
        const int32_t pa_ = __sxtab16((int32_t)nz, (int32_t)v_), pb_ = (int32_t)tt_sxtab16_hi(nz, v_);              \
        a0 = __smlabb(pa_, (int32_t)wr[2 * (k)], a0);                                                                \
        a2 = __smlatt(pa_, (int32_t)wr[2 * (k)], a2);                                                                \
        a1 = __smlabb(pb_, (int32_t)wr[2 * (k) + 1], a1);                                                            \
        a3 = __smlatt(pb_, (int32_t)wr[2 * (k) + 1], a3);                                                            \
    } while (0)
#else
#define DW4_TAP(k)                                                                                                   \
    do {                                                                                                             \
        const uint32_t v_ = tt_ld32(xr + (k) * C);                                                                   \
        a0 += ((int8_t)(v_ & 0xFFu) - zx) * lo16(wr[2 * (k)]);                                                       \
        a1 += ((int8_t)((v_ >> 8) & 0xFFu) - zx) * lo16(wr[2 * (k) + 1]);                                            \
        a2 += ((int8_t)((v_ >> 16) & 0xFFu) - zx) * hi16(wr[2 * (k)]);                                               \
        a3 += ((int8_t)(v_ >> 24) - zx) * hi16(wr[2 * (k) + 1]);                                                     \
    } while (0)
#endif

/* Output rows of 4 channels; kfull: the kernel width where it counts as a
   constant (a full kernel row is then straight-line code), fast_full as in
   im2col_channels. */
TT_INLINE void dw4_rows(const dw4_t *D, uint32_t kfull, int fast_full) {
    const uint32_t C = D->C, W = D->W, KW = D->KW, s = D->s;
    const int32_t zx = D->zx, zy = D->zy, lo = fast_full ? -128 : D->lo, hi = fast_full ? 127 : D->hi;
#if TT_DSP
    const uint32_t nz = pack16(-zx, -zx);
#endif
    for (uint32_t oh = D->oh0; oh < D->oh1; oh++) {
        const int32_t ih0 = (int32_t)(oh * s) - (int32_t)D->pt;
        const uint32_t kh0 = ih0 < 0 ? (uint32_t)-ih0 : 0u;
        const uint32_t kh1 = (int32_t)D->KH < (int32_t)D->H - ih0 ? D->KH : (uint32_t)((int32_t)D->H - ih0);
        uint32_t idx = (oh - D->oh0) * D->OW * C + D->c0;
        /* the window's first input row inside the input, at channel c0 */
        const int8_t *xrow = D->x + (uint32_t)(ih0 + (int32_t)kh0 - (int32_t)D->row0) * W * C + D->c0;
        for (uint32_t ow = 0; ow < D->OW; ow++, idx += C) {
            const int32_t iw0 = (int32_t)(ow * s) - (int32_t)D->pl;
            const uint32_t kw0 = iw0 < 0 ? (uint32_t)-iw0 : 0u;
            const uint32_t kw1 = (int32_t)KW < (int32_t)W - iw0 ? KW : (uint32_t)((int32_t)W - iw0);
            const uint32_t n = kw0 == 0 && kw1 == KW ? kfull : kw1 - kw0;
            const int8_t *xr = xrow + (uint32_t)(iw0 + (int32_t)kw0) * C;
            const uint32_t *wr = D->wtab + 2u * (kh0 * KW + kw0);
            int32_t a0 = D->b[0], a1 = D->b[1], a2 = D->b[2], a3 = D->b[3], q0, q1, q2, q3, r0, r1, r2, r3;
            for (uint32_t kh = kh0; kh < kh1; kh++, xr += W * C, wr += 2u * KW) {
                switch (n) { /* unrolled; the order of integer sums does not matter */
                default:
                    for (uint32_t k = 7; k < n; k++) {
                        DW4_TAP(k);
                    }
                    /* fall through */
                case 7:
                    DW4_TAP(6);
                    /* fall through */
                case 6:
                    DW4_TAP(5);
                    /* fall through */
                case 5:
                    DW4_TAP(4);
                    /* fall through */
                case 4:
                    DW4_TAP(3);
                    /* fall through */
                case 3:
                    DW4_TAP(2);
                    /* fall through */
                case 2:
                    DW4_TAP(1);
                    /* fall through */
                case 1:
                    DW4_TAP(0);
                    /* fall through */
                case 0:
                    break;
                }
            }
            if (fast_full) {
                q0 = rq_fast(a0, &D->rq[0]) + zy;
                q1 = rq_fast(a1, &D->rq[1]) + zy;
                q2 = rq_fast(a2, &D->rq[2]) + zy;
                q3 = rq_fast(a3, &D->rq[3]) + zy;
            } else {
                q0 = rq_apply(a0, &D->rq[0]) + zy;
                q1 = rq_apply(a1, &D->rq[1]) + zy;
                q2 = rq_apply(a2, &D->rq[2]) + zy;
                q3 = rq_apply(a3, &D->rq[3]) + zy;
            }
            r0 = clamp_act(q0, lo, hi);
            r1 = clamp_act(q1, lo, hi);
            r2 = clamp_act(q2, lo, hi);
            r3 = clamp_act(q3, lo, hi);
            D->y[idx] = (int8_t)r0;
            D->y[idx + 1u] = (int8_t)r1;
            D->y[idx + 2u] = (int8_t)r2;
            D->y[idx + 3u] = (int8_t)r3;
            if (D->mask) { /* idx is a multiple of 4: one byte holds the 4 bits */
                const uint32_t bits = (uint32_t)(r0 == q0) | ((uint32_t)(r1 == q1) << 1) |
                                      ((uint32_t)(r2 == q2) << 2) | ((uint32_t)(r3 == q3) << 3);
                D->mask[idx >> 3] |= (uint8_t)(bits << (idx & 4u));
            }
        }
    }
}

static TT_NOINLINE void dw4_rows_k3_fast(const dw4_t *D) {
    dw4_rows(D, 3u, 1);
}
static TT_NOINLINE void dw4_rows_k5_fast(const dw4_t *D) {
    dw4_rows(D, 5u, 1);
}
static TT_NOINLINE void dw4_rows_k7_fast(const dw4_t *D) {
    dw4_rows(D, 7u, 1);
}
static TT_NOINLINE void dw4_rows_any(const dw4_t *D) {
    dw4_rows(D, D->KW, 0);
}

static int dwconv4(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    uint32_t wtab[2u * DW4_MAX_TAPS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const int32_t *bias = bias_of(t, L);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint32_t C = out->c, kk = (uint32_t)L->kh * L->kw;
    const int fast_full = fast_full_layer(m, L, C);
    dw4_t D;
    if (L->perm_off != TT_NO_OFFSET || C % 4u || kk > DW4_MAX_TAPS) {
        return 0;
    }
    D.x = R->x;
    D.row0 = R->row0;
    D.oh0 = R->oh0;
    D.oh1 = R->oh1;
    D.y = R->y;
    D.mask = mask;
    D.wtab = wtab;
    D.C = C;
    D.H = in->h;
    D.W = in->w;
    D.OH = out->h;
    D.OW = out->w;
    D.KH = L->kh;
    D.KW = L->kw;
    D.s = L->stride;
    D.pt = L->pad_top;
    D.pl = L->pad_left;
    D.zx = in->zero;
    D.zy = out->zero;
    D.lo = L->act_min;
    D.hi = L->act_max;
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const int8_t *w[4];
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            w[i] = j < L->n_train ? wt + j * kk : wf + j * kk;
            D.b[i] = bias[j];
            D.rq[i] = rq_make(mult[j], shift[j]);
        }
        for (uint32_t tap = 0; tap < kk; tap++) {
            wtab[2u * tap] = pack16(w[0][tap], w[2][tap]);
            wtab[2u * tap + 1u] = pack16(w[1][tap], w[3][tap]);
        }
        D.c0 = c0;
        if (fast_full && D.KW == 3u) {
            dw4_rows_k3_fast(&D);
        } else if (fast_full && D.KW == 5u) {
            dw4_rows_k5_fast(&D);
        } else if (fast_full && D.KW == 7u) {
            dw4_rows_k7_fast(&D);
        } else {
            dw4_rows_any(&D);
        }
    }
    return 1;
}

/* ---- depthwise, one channel at a time (any perm, any C) ---- */

static int dwconv_rows(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    int16_t rows[TT_OPT_STACK_BYTES / 2u];
    uint32_t wp[DW_MAX_PAIRS];
    const int16_t *rp[16];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = R->x;
    int8_t *y = R->y;
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const int32_t *bias = bias_of(t, L);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint16_t *perm = perm_of(m, L);
    const uint32_t C = out->c, kh = L->kh, kw = L->kw, kk = kh * kw, kp = (kw + 1u) / 2u, s = L->stride;
    const uint32_t H = in->h, W = in->w, ow_n = out->w;
    const uint32_t lb = (ow_n - 1u) * s + 2u * kp; /* row length: covers every pair read */
    const uint32_t pl = L->pad_left;
    const int32_t zx = in->zero, zy = out->zero, lo = L->act_min, hi = L->act_max;
    if (kh > 16u || kh * kp > DW_MAX_PAIRS || kh * lb > TT_OPT_STACK_BYTES / 2u) {
        return 0;
    }
    for (uint32_t j = 0; j < C; j++) {
        const uint32_t c = perm ? perm[j] : j;
        const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
        const int32_t b = bias[c];
        const rq_t rq = rq_make(mult[c], shift[c]);
        /* valid input columns land at [pl, pl + nv) of a row */
        const uint32_t nv = W < lb - pl ? W : lb - pl;
        uint32_t next_v = R->oh0 * s; /* next virtual row (ih + pad_top) to fill */
        for (uint32_t r = 0; r < kh; r++) {
            for (uint32_t k = 0; k < kp; k++) {
                wp[r * kp + k] = pack16(w[r * kw + 2u * k], 2u * k + 1u < kw ? w[r * kw + 2u * k + 1u] : 0);
            }
        }
        for (uint32_t oh = R->oh0; oh < R->oh1; oh++) {
            const uint32_t v0 = oh * s;
            for (; next_v < v0 + kh; next_v++) {
                int16_t *row = rows + (next_v % kh) * lb;
                const int32_t ih = (int32_t)next_v - L->pad_top;
                if (ih < 0 || ih >= (int32_t)H) {
                    memset(row, 0, 2u * lb);
                    continue;
                }
                {
                    const int8_t *xp = x + ((uint32_t)ih - R->row0) * W * C + c;
                    uint32_t b2 = 0;
                    for (; b2 < pl; b2++) {
                        row[b2] = 0;
                    }
                    for (uint32_t i = 0; i < nv; i++, xp += C) {
                        row[pl + i] = (int16_t)(*xp - zx);
                    }
                    for (b2 = pl + nv; b2 < lb; b2++) {
                        row[b2] = 0;
                    }
                }
            }
            for (uint32_t r = 0; r < kh; r++) {
                rp[r] = rows + ((v0 + r) % kh) * lb;
            }
            {
                const uint32_t idx = (oh - R->oh0) * ow_n * C + c;
                if (!rq.k) {
                    dw_row(rp, wp, kh, kp, s, ow_n, b, &rq, 0, y, mask, idx, C, zy, lo, hi);
                } else if (kh == 3u && kp == 2u) {
                    dw_row(rp, wp, 3u, 2u, s, ow_n, b, &rq, 1, y, mask, idx, C, zy, lo, hi);
                } else if (kh == 5u && kp == 3u) {
                    dw_row(rp, wp, 5u, 3u, s, ow_n, b, &rq, 1, y, mask, idx, C, zy, lo, hi);
                } else if (kh == 7u && kp == 4u) {
                    dw_row(rp, wp, 7u, 4u, s, ow_n, b, &rq, 1, y, mask, idx, C, zy, lo, hi);
                } else {
                    dw_row(rp, wp, kh, kp, s, ow_n, b, &rq, 1, y, mask, idx, C, zy, lo, hi);
                }
            }
        }
    }
    return 1;
}

int tt_dwconv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_tensor_rec *out = tt_tensor(&t->model, L->out);
    uint8_t *mask;
    if (!mask_at(R, (uint32_t)out->w * out->c, &mask)) {
        return 0;
    }
    return dwconv4(t, L, R, mask) || dwconv_rows(t, L, R, mask);
}

/* ---- add: the reference's rs((a - za) ma + (b - zb) mb, shift), with the
   64-bit shift done in 32-bit halves, and the mask written a byte at a time
   (the layer's elements start at bit 0). ---- */

/* rs(v, s) for |v| < 2^40 (two int8 differences times int32 multipliers). */
static inline int32_t add_rs(int64_t v, uint32_t s) {
    const int64_t w = v + ((int64_t)1 << (s - 1u));
    if (s >= 32u) {
        return (int32_t)(w >> 32) >> (s - 32u); /* floor division, as the reference */
    }
    /* 9 <= s <= 31 (checked by the caller): the result fits 32 bits */
    return (int32_t)(((uint32_t)w >> s) | ((uint32_t)(w >> 32) << (32u - s)));
}

int tt_add_opt(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *ta = tt_tensor(m, L->in), *tb = tt_tensor(m, L->in2), *out = tt_tensor(m, L->out);
    const int8_t *xa = tt_act_data(t, L->in), *xb = tt_act_data(t, L->in2);
    int8_t *y = tt_act_data(t, L->out);
    const uint32_t n = tt_numel(out), s = L->shift;
    const int32_t za = ta->zero, zb = tb->zero, zy = out->zero, lo = L->act_min, hi = L->act_max;
    const int32_t ma = L->mult_a, mb = L->mult_b;
    if (s < 9u || s > 62u) {
        return 0;
    }
    for (uint32_t i0 = 0; i0 < n; i0 += 8u) {
        const uint32_t i1 = n - i0 < 8u ? n : i0 + 8u;
        uint32_t bits = 0;
        for (uint32_t i = i0; i < i1; i++) {
            const int64_t v = (int64_t)(xa[i] - za) * ma + (int64_t)(xb[i] - zb) * mb;
            const int32_t q = add_rs(v, s) + zy, r = clamp_act(q, lo, hi);
            y[i] = (int8_t)r;
            bits |= (uint32_t)(r == q) << (i - i0);
        }
        if (mask) {
            mask[i0 >> 3] |= (uint8_t)bits;
        }
    }
    return 1;
}

#else
typedef int tt_forward_opt_unused; /* ISO C: a translation unit is not empty */
#endif
