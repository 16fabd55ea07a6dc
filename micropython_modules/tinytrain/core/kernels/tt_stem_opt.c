/*
 * Stem conv kernel, optimised (selected by TT_OPTIMIZED and TT_OPT_STEM, see tt_opt.h; the
 * reference is tt_conv.c's conv): a conv whose whole window is a few taps,
 * kh * kw * cin <= STEM_MAX_TAPS, e.g. the 3x3, 3-channel first layer of
 * every paper model (27 taps), which runs row by row inside a fused op.
 * The im2col kernel (tt_conv_opt.c) pays a call, a padded tail and a
 * requantisation set-up per channel pair and pixel pair there; here:
 *  - the weights of every output channel are widened to int16 once per
 *    call, two channels interleaved, so one LDRD gives both channels' pair;
 *  - per output pixel its window's bytes are gathered (padding = the input
 *    zero point), widened to int16 with the zero point subtracted (SXTAB16),
 *    two pixels interleaved likewise;
 *  - 2 pixels x 2 channels per tile: per 4 taps 2 LDRD + 4 SMLAD, the
 *    window length a constant for the 27-tap stem (straight-line code).
 * Output rows in increasing order, each pixel's window read before its
 * outputs are written. Same results as the reference bit for bit: the same
 * int32 sum reordered, its requantisation (rq_fast / rq_apply).
 */
#include "tt_opt.h"

#if TT_OPT_STEM

/* Window taps and output channels this kernel takes; the stack tables below
   stay about TT_OPT_STACK_BYTES (the im2col kernel's column) in all. */
#define STEM_MAX_TAPS 32u
#define STEM_MAX_WORDS (STEM_MAX_TAPS / 2u)
#define STEM_MAX_COUT 32u
#define STEM_WTAB (STEM_MAX_COUT / 2u * 12u) /* channel pairs x window words */

/* The 3x3 3-channel stem: 27 taps, 7 groups of 4, 14 words. */
#define STEM_K3C3_WORDS 14u

typedef struct {
    const int8_t *x; /* input row r at x + (r - row0) W cin */
    int8_t *y;       /* output pixel 0 = (oh0, 0) */
    uint8_t *mask;   /* offset to y[0], or NULL */
    const uint64_t *wtab; /* [cout / 2][nw]: (channel c word i, channel c + 1 word i) */
    const int32_t *bias;
    const int16_t *bias16; /* int16 bias changes (tt_bias_add16), or NULL */
    const rq_t *rq;
    uint32_t H, W, cin, cout, OW, kh, kw, s, pt, pl, row0, oh0, oh1, nw, ntap;
    int32_t zx, zy, lo, hi;
} stem_t;

/* Pixel (oh, ow)'s window in weight order [kh][kw][cin], nb bytes (a
   multiple of 4): taps outside the input and the bytes past the window hold
   the input zero point (0 once widened; the weights there are 0 as well). */
TT_INLINE void stem_gather(const stem_t *S, uint32_t oh, uint32_t ow, int8_t *b, uint32_t kh, uint32_t kw,
                           uint32_t cin, uint32_t nb) {
    const int32_t ih0 = (int32_t)(oh * S->s) - (int32_t)S->pt, iw0 = (int32_t)(ow * S->s) - (int32_t)S->pl;
    const uint32_t run = kw * cin, rowb = S->W * cin;
    const int inside_w = iw0 >= 0 && iw0 + (int32_t)kw <= (int32_t)S->W;
    const int8_t zb = (int8_t)S->zx;
    int8_t *p = b;
    for (uint32_t r = 0; r < kh; r++, p += run) {
        const int32_t ih = ih0 + (int32_t)r;
        const int8_t *xr;
        if (ih < 0 || ih >= (int32_t)S->H) {
            memset(p, zb, run);
            continue;
        }
        xr = S->x + ((uint32_t)ih - S->row0) * rowb;
        if (inside_w) {
            memcpy(p, xr + (uint32_t)iw0 * cin, run); /* run is a constant for the stem: a few LDR/STR */
            continue;
        }
        for (uint32_t k = 0; k < kw; k++) {
            const int32_t iw = iw0 + (int32_t)k;
            if (iw < 0 || iw >= (int32_t)S->W) {
                memset(p + k * cin, zb, cin);
            } else {
                memcpy(p + k * cin, xr + (uint32_t)iw * cin, cin);
            }
        }
    }
    memset(p, zb, nb - kh * kw * cin);
}

/* stem_gather for the 3x3 3-channel stem when the window lies inside the
   input (else 0): its 27 bytes are 9 contiguous bytes of 3 rows, read as
   words and half-words into the 7 words b[0..6], the last byte the input
   zero point; nothing outside the window is read. Little-endian words:
   byte i of the window is bits 8 (i % 4) of word i / 4. */
TT_INLINE int stem_gather_k3c3(const stem_t *S, uint32_t oh, uint32_t ow, uint32_t *b) {
    const int32_t ih0 = (int32_t)(oh * S->s) - (int32_t)S->pt, iw0 = (int32_t)(ow * S->s) - (int32_t)S->pl;
    const int8_t *r0, *r1, *r2;
    uint16_t h0, h1, h2;
    if (ih0 < 0 || ih0 + 3 > (int32_t)S->H || iw0 < 0 || iw0 + 3 > (int32_t)S->W) {
        return 0;
    }
    r0 = S->x + ((uint32_t)ih0 - S->row0) * S->W * 3u + (uint32_t)iw0 * 3u;
    r1 = r0 + S->W * 3u;
    r2 = r1 + S->W * 3u;
    memcpy(&h0, r1 + 7, 2);
    memcpy(&h1, r2, 2);
    memcpy(&h2, r2 + 6, 2);
    b[0] = tt_ld32(r0);
    b[1] = tt_ld32(r0 + 4);
    b[2] = (uint32_t)(uint8_t)r0[8] | (tt_ld32(r1) << 8);
    b[3] = tt_ld32(r1 + 3);
    b[4] = (uint32_t)h0 | ((uint32_t)h1 << 16);
    b[5] = tt_ld32(r2 + 2);
    b[6] = (uint32_t)h2 | ((uint32_t)(uint8_t)r2[8] << 16) | ((uint32_t)(uint8_t)S->zx << 24);
    return 1;
}

/* Two pixels' windows b0, b1 (nb bytes each) as int16 words, zero point
   subtracted: per 4 bytes e0..e3 the words (e0, e2), (e1, e3) (what SXTAB16
   and SXTAB16 ROR #8 give), pixel 0 in the low half of each col entry. */
TT_INLINE void stem_widen(const int8_t *b0, const int8_t *b1, uint32_t nb, int32_t zx, uint64_t *col) {
#if TT_DSP
    const uint32_t nz = pack16(-zx, -zx);
#endif
    for (uint32_t i = 0; i < nb; i += 4u, col += 2) {
        const uint32_t u = tt_ld32(b0 + i), v = tt_ld32(b1 + i);
#if TT_DSP
        const uint32_t u02 = (uint32_t)__sxtab16((int32_t)nz, (int32_t)u), u13 = tt_sxtab16_hi(nz, u);
        const uint32_t v02 = (uint32_t)__sxtab16((int32_t)nz, (int32_t)v), v13 = tt_sxtab16_hi(nz, v);
#else
        const uint32_t u02 = pack16(b0[i] - zx, b0[i + 2u] - zx), u13 = pack16(b0[i + 1u] - zx, b0[i + 3u] - zx);
        const uint32_t v02 = pack16(b1[i] - zx, b1[i + 2u] - zx), v13 = pack16(b1[i + 1u] - zx, b1[i + 3u] - zx);
        (void)u;
        (void)v;
#endif
        col[0] = (uint64_t)u02 | ((uint64_t)v02 << 32);
        col[1] = (uint64_t)u13 | ((uint64_t)v13 << 32);
    }
}

/* Every output channel of pixels p and pb (pb == p: one pixel), from the
   widened window col; nw words per window (a constant for the stem).
   fast: every shift >= 33 (rq_fast applies); full: the clamp is the int8
   range (one SSAT); masked: a clamp mask is written (else S->mask is NULL:
   fewer live values in the loop). */
TT_INLINE void stem_channels(const stem_t *S, const uint64_t *col, uint32_t p, uint32_t pb, uint32_t nw, int fast,
                             int full, int masked) {
    const uint64_t *w = S->wtab;
    const uint32_t cout = S->cout;
    const int32_t zy = S->zy, lo = full ? -128 : S->lo, hi = full ? 127 : S->hi;
    int8_t *y = S->y;
    uint8_t *mask = masked ? S->mask : NULL;
    for (uint32_t c = 0; c < cout; c += 2u, w += nw) {
        int32_t a0 = tt_bias_add16(S->bias, S->bias16, c), a1 = a0;
        int32_t a2 = tt_bias_add16(S->bias, S->bias16, c + 1u), a3 = a2;
        const uint64_t *cp = col, *wp = w;
        TT_UNROLL16
        for (uint32_t i = 0; i < nw; i++) {
#if TT_DSP
            /* GCC splits the 64-bit loads into two LDR each: one LDRD per
               pair of pixels and one per pair of channels here */
            uint32_t x0, x1, wa, wb;
            __asm__("ldrd %[x0], %[x1], [%[cp]], #8\n\t"
                    "ldrd %[wa], %[wb], [%[wp]], #8\n\t"
                    "smlad %[a0], %[x0], %[wa], %[a0]\n\t"
                    "smlad %[a1], %[x1], %[wa], %[a1]\n\t"
                    "smlad %[a2], %[x0], %[wb], %[a2]\n\t"
                    "smlad %[a3], %[x1], %[wb], %[a3]"
                    : [x0] "=&r"(x0), [x1] "=&r"(x1), [wa] "=&r"(wa), [wb] "=&r"(wb), [cp] "+r"(cp), [wp] "+r"(wp),
                      [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
                    :
                    : "memory");
#else
            const uint64_t cv = *cp++, wv = *wp++;
            const uint32_t x0 = (uint32_t)cv, x1 = (uint32_t)(cv >> 32), wa = (uint32_t)wv, wb = (uint32_t)(wv >> 32);
            a0 = tt_smlad(x0, wa, a0);
            a1 = tt_smlad(x1, wa, a1);
            a2 = tt_smlad(x0, wb, a2);
            a3 = tt_smlad(x1, wb, a3);
#endif
        }
        if (fast) {
            a0 = rq_fast(a0, &S->rq[c]);
            a1 = rq_fast(a1, &S->rq[c]);
            a2 = rq_fast(a2, &S->rq[c + 1u]);
            a3 = rq_fast(a3, &S->rq[c + 1u]);
        } else {
            a0 = rq_apply(a0, &S->rq[c]);
            a1 = rq_apply(a1, &S->rq[c]);
            a2 = rq_apply(a2, &S->rq[c + 1u]);
            a3 = rq_apply(a3, &S->rq[c + 1u]);
        }
        out2(y, mask, p * cout + c, a0, a2, zy, lo, hi);
        if (pb != p) {
            out2(y, mask, pb * cout + c, a1, a3, zy, lo, hi);
        }
    }
}

/* Output rows [oh0, oh1), pixels two at a time (the last alone when their
   number is odd). kh, kw, cin, nw: constants for the 3x3 3-channel stem. */
TT_INLINE void stem_rows(const stem_t *S, uint32_t kh, uint32_t kw, uint32_t cin, uint32_t nw, int fast, int full,
                         int masked) {
    uint32_t b0[STEM_MAX_TAPS / 4u], b1[STEM_MAX_TAPS / 4u]; /* words: aligned window bytes */
    uint64_t col[STEM_MAX_WORDS];
    const uint32_t OW = S->OW, npix = (S->oh1 - S->oh0) * OW, nb = 2u * nw;
    uint32_t oh = S->oh0, ow = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* constants for the stem; the words hold bytes in memory order */
    const int k3c3 = kh == 3u && kw == 3u && cin == 3u && nw == STEM_K3C3_WORDS;
#else
    const int k3c3 = 0;
#endif
    for (uint32_t p = 0; p < npix; p += 2u) {
        const uint32_t pb = p + 1u < npix ? p + 1u : p;
        if (!k3c3 || !stem_gather_k3c3(S, oh, ow, b0)) {
            stem_gather(S, oh, ow, (int8_t *)b0, kh, kw, cin, nb);
        }
        if (++ow == OW) {
            ow = 0;
            oh++;
        }
        if (pb != p) {
            if (!k3c3 || !stem_gather_k3c3(S, oh, ow, b1)) {
                stem_gather(S, oh, ow, (int8_t *)b1, kh, kw, cin, nb);
            }
            if (++ow == OW) {
                ow = 0;
                oh++;
            }
        }
        stem_widen((const int8_t *)b0, (const int8_t *)(pb != p ? b1 : b0), nb, S->zx, col);
        stem_channels(S, col, p, pb, nw, fast, full, masked);
    }
}

static TT_NOINLINE void stem_rows_k3c3_fast(const stem_t *S) {
    stem_rows(S, 3u, 3u, 3u, STEM_K3C3_WORDS, 1, 0, 0);
}

static TT_NOINLINE void stem_rows_k3c3_fast_full(const stem_t *S) {
    stem_rows(S, 3u, 3u, 3u, STEM_K3C3_WORDS, 1, 1, 0);
}

static TT_NOINLINE void stem_rows_any(const stem_t *S) {
    stem_rows(S, S->kh, S->kw, S->cin, S->nw, 0, 0, 1);
}

int tt_stem_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    uint64_t wtab[STEM_WTAB];
    rq_t rq[STEM_MAX_COUT];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const uint32_t cin = in->c, cout = out->c, ntap = (uint32_t)L->kh * L->kw * cin;
    const uint32_t nw = 2u * ((ntap + 3u) / 4u);
    int fast = 1;
    stem_t S;
    /* every weight from the model in storage order, pairs of channels */
    if (L->n_train || P.perm || ntap > STEM_MAX_TAPS || cout % 2u || cout > STEM_MAX_COUT ||
        cout / 2u * nw > STEM_WTAB) {
        return 0;
    }
    for (uint32_t c = 0; c < cout; c += 2u) {
        const int8_t *wa = P.wf + c * ntap, *wb = wa + ntap;
        uint64_t *wp = wtab + c / 2u * nw;
        for (uint32_t g = 0; g < ntap; g += 4u, wp += 2) {
            /* taps g..g+3 (past the window: 0) as the words (g, g+2), (g+1, g+3):
               SXTB16 of a word, the last few taps' word from bytes (a fused
               op's rows each make this table again) */
            uint32_t u = 0, v = 0;
            if (g + 4u <= ntap) {
                u = tt_ld32(wa + g);
                v = tt_ld32(wb + g);
            } else {
                for (uint32_t k = 0; g + k < ntap; k++) {
                    u |= (uint32_t)(uint8_t)wa[g + k] << (8u * k);
                    v |= (uint32_t)(uint8_t)wb[g + k] << (8u * k);
                }
            }
            wp[0] = (uint64_t)tt_widen02(u) | ((uint64_t)tt_widen02(v) << 32);
            wp[1] = (uint64_t)tt_widen13(u) | ((uint64_t)tt_widen13(v) << 32);
        }
        rq[c] = rq_make(P.mult[c], P.shift[c]);
        rq[c + 1u] = rq_make(P.mult[c + 1u], P.shift[c + 1u]);
        fast = fast && rq[c].k && rq[c + 1u].k;
    }
    S.x = R->x;
    S.row0 = R->row0;
    S.oh0 = R->oh0;
    S.oh1 = R->oh1;
    S.y = R->y;
    S.mask = mask;
    S.wtab = wtab;
    S.bias = P.bias;
    S.bias16 = P.bias16;
    S.rq = rq;
    S.H = in->h;
    S.W = in->w;
    S.cin = cin;
    S.cout = cout;
    S.OW = out->w;
    S.kh = L->kh;
    S.kw = L->kw;
    S.s = L->stride;
    S.pt = L->pad_top;
    S.pl = L->pad_left;
    S.nw = nw;
    S.ntap = ntap;
    S.zx = in->zero;
    S.zy = out->zero;
    S.lo = L->act_min;
    S.hi = L->act_max;
    if (L->kh == 3u && L->kw == 3u && cin == 3u && fast && !mask) {
        if (S.lo == -128 && S.hi == 127) {
            stem_rows_k3c3_fast_full(&S);
        } else {
            stem_rows_k3c3_fast(&S);
        }
    } else {
        stem_rows_any(&S);
    }
    return 1;
}

#else
typedef int tt_stem_opt_unused; /* ISO C: a translation unit is not empty */
#endif
