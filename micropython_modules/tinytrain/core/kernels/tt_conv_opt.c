/*
 * Conv kernels, optimised (selected by TT_OPTIMIZED, see tt_opt.h): the
 * forward pass of any conv that is not pointwise (k x k, stride, padding,
 * permuted/trained channels, the FC head). The patches of 2 output pixels
 * are copied to an int16 column on the stack, zero point subtracted and
 * padding 0, laid out as the layer's weights are stored (COL_FLAT etc.),
 * then 2 x 2 tiles. Same results as tt_conv.c bit for bit: the int32 sums
 * are reordered only, the requantisation is the reference's (rq_fast).
 * A layer whose column does not fit TT_OPT_STACK_BYTES runs the reference.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

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
    const int16_t *bias16; /* int16 bias changes (tt_bias_add16), or NULL */
    const int8_t *shift;
    int8_t *y;
    uint8_t *mask;
    uint32_t cin, cout, nt, kk, mode;
    uint32_t n0, c1; /* first run: weights per output channel; int16 offset of the second run */
    int32_t zy, lo, hi;
} im2col_t;

/* Every output channel of the column's two pixels p and pb. fast: every
   shift >= 33; full: besides, the clamp is [-128, 127]. */
TT_INLINE void im2col_channels(const im2col_t *A, uint32_t p, uint32_t pb, int fast, int full) {
    const int16_t *col = A->col;
    const uint32_t cin = A->cin, cout = A->cout, nt = A->nt, kk = A->kk, n0 = A->n0;
    const int32_t lo = full ? -128 : A->lo, hi = full ? 127 : A->hi, zy = A->zy;
    for (uint32_t c = 0; c < cout; c += 2u) {
        const uint32_t cb = c + 1u < cout ? c + 1u : c;
        const rq_t ra = rq_make(A->mult[c], A->shift[c]), rb = rq_make(A->mult[cb], A->shift[cb]);
        int32_t a[4];
        a[0] = tt_bias_add16(A->bias, A->bias16, c);
        a[1] = a[0];
        a[2] = tt_bias_add16(A->bias, A->bias16, cb);
        a[3] = a[2];
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
        if (fast) {
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
    im2col_channels(A, p, pb, 1, 1);
}

static TT_NOINLINE void im2col_channels_fast(const im2col_t *A, uint32_t p, uint32_t pb) {
    im2col_channels(A, p, pb, 1, 0);
}

static TT_NOINLINE void im2col_channels_any(const im2col_t *A, uint32_t p, uint32_t pb) {
    im2col_channels(A, p, pb, 0, 0);
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
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const uint16_t *perm = P.perm;
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, kk = (uint32_t)L->kh * L->kw;
    const uint32_t ow_n = out->w, p0 = R->oh0 * out->w, npix = R->oh1 * out->w;
    const int8_t *wt = P.wt;
    int fast, full;
    fill_t F;
    im2col_t A;
    F.run[0].j0 = 0;
    F.run[0].zlead = 0;
    F.run[0].per_tap = 0;
    A.wf = P.wf;
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
    fast = tt_fast_layer(m, L, cout);
    full = tt_full_range(L);
    A.col = col;
    A.bias = P.bias;
    A.bias16 = P.bias16;
    A.mult = P.mult;
    A.shift = P.shift;
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
        if (fast && full) { /* output pixels counted from y[0] */
            im2col_channels_fast_full(&A, p - p0, pb - p0);
        } else if (fast) {
            im2col_channels_fast(&A, p - p0, pb - p0);
        } else {
            im2col_channels_any(&A, p - p0, pb - p0);
        }
    }
    return 1;
}

int tt_conv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in), *out = tt_tensor(&t->model, L->out);
    uint8_t *mask;
    if (!tt_mask_at(R, (uint32_t)out->w * out->c, &mask)) {
        return 0;
    }
#if TT_HOST_SIMD
    if (L->kh == 1u && L->kw == 1u && L->stride == 1u && in->w == out->w && tt_host_pointwise(t, L, R, mask)) {
        return 1;
    }
#endif
    if (L->kh == 1u && L->kw == 1u && L->stride == 1u && in->w == out->w && tt_pointwise_opt(t, L, R, mask)) {
        return 1;
    }
#if TT_HOST_SIMD
    if (tt_host_conv(t, L, R, mask)) {
        return 1;
    }
#endif
#if TT_OPT_STEM
    if (tt_stem_opt(t, L, R, mask)) {
        return 1;
    }
#endif
    return R->row0 == 0u && conv_im2col(t, L, R, mask);
}

#else
typedef int tt_conv_opt_unused; /* ISO C: a translation unit is not empty */
#endif
