/*
 * Pointwise (1x1) forward kernels, optimised (the reference is tt_conv.c's
 * conv). Same results bit for bit.
 *
 *  - forward (1x1, stride 1): 2 output pixels x 2
 *    output channels per tile, the input zero point folded into the bias:
 *    sum w (x - z) = sum w x - z sum w. The weights of the 2 channels are
 *    widened to int16 once (on the stack, up to PW_W16_MAX_CIN input
 *    channels) and reused at every pixel, so per 4 input channels a tile
 *    costs 2 loads + 4 SXTB16 of the inputs, 4 weight words, 8 SMLAD; wider
 *    layers read int8 weights straight from the model (SXTB16 them as well).
 *    With a perm (trained input channels: weight j meets input perm[j]) each
 *    weight is widened into the slot of its input channel, so the tiles
 *    read the input in storage order as without one. Without a mask the
 *    outputs are rqz_apply (SMMLA + ASR), the clamp and a byte store.
 * The input gradient is tt_pointwise_grad_opt.c's, the weight gradient
 * tt_update_opt.c's.
 */
#include <stddef.h>
#include "tt_opt.h"

#if TT_OPTIMIZED

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

/* The 2x2 tile's last few input channels, one at a time: the tail of both
   dot_s8_2x2 and dot_w16_2x2 (sums wrap as there, see below). */
TT_INLINE void dot_tail_2x2(const int8_t *x0, uint32_t xoff, const int8_t *wa, uint32_t woff, uint32_t n,
                             int32_t *a) {
    for (uint32_t i = 0; i < n; i++) {
        const int32_t p = x0[i], q = x0[xoff + i], u = wa[i], v = wa[woff + i];
        a[0] = (int32_t)((uint32_t)a[0] + (uint32_t)(p * u));
        a[1] = (int32_t)((uint32_t)a[1] + (uint32_t)(q * u));
        a[2] = (int32_t)((uint32_t)a[2] + (uint32_t)(p * v));
        a[3] = (int32_t)((uint32_t)a[3] + (uint32_t)(q * v));
    }
}

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
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    dot_tail_2x2(x0, off, wa, off, n, a);
}

/* Input channels up to which the forward widens a channel pair's weights. */
#define PW_W16_MAX_CIN (TT_OPT_STACK_BYTES / 4u)

#if TT_DSP
/* pw_widen_pair's words and row sums of two weight rows pa, pb of n
   weights (n a multiple of 4), added to *sa, *sb: 14 instructions per 4
   input channels (GCC: 20). The operands are early
   clobbers: end may be pb's value, which GCC could otherwise give one register. */
static void pw_widen_rows(uint32_t *w16, const int8_t *pa, const int8_t *pb, uint32_t n, int32_t *sa,
                          int32_t *sb) {
    const int8_t *end = pa + n;
    int32_t s0 = *sa, s1 = *sb;
    uint32_t u, u2, v, v2;
    if (n) {
        __asm__ volatile("1:\n\t"
                         "ldr %[u], [%[pa]], #4\n\t"
                         "ldr %[v], [%[pb]], #4\n\t"
                         "sxtb16 %[u2], %[u]\n\t"
                         "sxtb16 %[u], %[u], ror #8\n\t"
                         "sxtb16 %[v2], %[v]\n\t"
                         "sxtb16 %[v], %[v], ror #8\n\t"
                         "strd %[u2], %[u], [%[d]], #8\n\t"
                         "strd %[v2], %[v], [%[d]], #8\n\t"
                         "smlad %[s0], %[u2], %[one], %[s0]\n\t"
                         "smlad %[s0], %[u], %[one], %[s0]\n\t"
                         "smlad %[s1], %[v2], %[one], %[s1]\n\t"
                         "smlad %[s1], %[v], %[one], %[s1]\n\t"
                         "cmp %[pa], %[end]\n\t"
                         "bne 1b"
                         : [u] "=&r"(u), [u2] "=&r"(u2), [v] "=&r"(v), [v2] "=&r"(v2), [pa] "+&r"(pa),
                           [pb] "+&r"(pb), [d] "+&r"(w16), [s0] "+&r"(s0), [s1] "+&r"(s1)
                         : [end] "r"(end), [one] "r"(0x00010001u)
                         : "cc", "memory");
    }
    *sa = s0;
    *sb = s1;
}
#endif

/* The weights of channels wa, wa + cin as int16 pairs, per 4 input channels
   the words (a0, a2) (a1, a3) (b0, b2) (b1, b3): the lanes SXTB16 and
   SXTB16 ROR #8 give the inputs. The sums of both rows (for the bias). */
static void pw_widen_pair(uint32_t *w16, const int8_t *wa, uint32_t cin, int32_t *sa, int32_t *sb) {
    const int8_t *wb = wa + cin;
    int32_t s0 = 0, s1 = 0;
    uint32_t i = 0;
#if TT_DSP
    if (cin >= 4u) {
        i = cin & ~3u;
        pw_widen_rows(w16, wa, wb, i, &s0, &s1);
        w16 += i;
    }
#endif
    for (; i + 4u <= cin; i += 4u, w16 += 4) {
        const uint32_t u = tt_ld32(wa + i), v = tt_ld32(wb + i);
        w16[0] = tt_widen02(u);
        w16[1] = tt_widen13(u);
        w16[2] = tt_widen02(v);
        w16[3] = tt_widen13(v);
        s0 = tt_smlad(w16[0], 0x00010001u, tt_smlad(w16[1], 0x00010001u, s0));
        s1 = tt_smlad(w16[2], 0x00010001u, tt_smlad(w16[3], 0x00010001u, s1));
    }
    for (; i < cin; i++) {
        s0 += wa[i];
        s1 += wb[i];
    }
    *sa = s0;
    *sb = s1;
}

/* One channel's weight j of a layer with a perm: the reference reads
   storage positions j < nt from the trained copy (rows of nt), the others
   from the model (rows of cin). */
static inline int32_t pw_w_at(const int8_t *wt, const int8_t *wf, uint32_t nt, uint32_t cin, uint32_t c,
                              uint32_t j) {
    return j < nt ? wt[c * nt + j] : wf[c * cin + j];
}

#if TT_DSP
/* pw_widen_pair_perm's positions [j0, j1), weights at pa[j] (channel a) and
   pb[j] (b): each to halfword (i & 2) / 2 of word i & 1 (a) or 2 + (i & 1)
   (b) of group i / 4, i = perm[j]; the sums into *s0, *s1. */
TT_INLINE void pw_perm_part(uint32_t *w16, int8_t *tail, const int8_t *pa, const int8_t *pb, const uint16_t *perm,
                            uint32_t j0, uint32_t j1, uint32_t n4, int32_t *s0, int32_t *s1) {
    int16_t *h = (int16_t *)(void *)w16;
    int32_t t0 = *s0, t1 = *s1;
    for (uint32_t j = j0; j < j1; j++) {
        const int32_t u = pa[j], v = pb[j];
        const uint32_t i = perm[j];
        t0 += u;
        t1 += v;
        if (i < n4) {
            const uint32_t k = 2u * (i & ~3u) + 2u * (i & 1u) + ((i >> 1) & 1u);
            h[k] = (int16_t)u;
            h[k + 4u] = (int16_t)v;
        } else {
            tail[i - n4] = (int8_t)u;
            tail[4u + i - n4] = (int8_t)v;
        }
    }
    *s0 = t0;
    *s1 = t1;
}
#endif

/* pw_widen_pair for a layer with a perm (input channel perm[j] meets weight
   j), channels ca, cb: each weight goes to the slot of its input channel,
   so the tiles read the input in storage order; the weights of the last
   cin & 3 input channels to tail[0..3] (ca) and tail[4..7] (cb). perm
   NULL (pw_xw, with the DSP extension): the weights as stored. */
static TT_NOINLINE void pw_widen_pair_perm(uint32_t *w16, int8_t *tail, const int8_t *wt, const int8_t *wf,
                                           uint32_t nt, uint32_t cin, const uint16_t *perm, uint32_t ca, uint32_t cb,
                                           int32_t *sa, int32_t *sb) {
    const uint32_t n4 = cin & ~3u;
    int32_t s0 = 0, s1 = 0;
#if TT_DSP
    if (!perm) { /* pw_xw's (its inputs in weight storage order): as stored, nt a multiple of 4 */
        pw_widen_rows(w16, wt + ca * nt, wt + cb * nt, nt, &s0, &s1);
        pw_widen_rows(w16 + nt, wf + ca * cin + nt, wf + cb * cin + nt, cin - nt, &s0, &s1);
        *sa = s0;
        *sb = s1;
        return;
    }
    /* perm is a permutation (the model check): each slot below n4 is
       written once, as a halfword, so nothing is cleared first; the trained
       and the frozen positions each a loop of their own */
    if (nt) {
        pw_perm_part(w16, tail, wt + ca * nt, wt + cb * nt, perm, 0u, nt, n4, &s0, &s1);
    }
    pw_perm_part(w16, tail, wf + ca * cin, wf + cb * cin, perm, nt, cin, n4, &s0, &s1);
    *sa = s0;
    *sb = s1;
    return;
#endif
    memset(w16, 0, 4u * n4);
    for (uint32_t j = 0; j < cin; j++) {
        const int32_t u = pw_w_at(wt, wf, nt, cin, ca, j), v = pw_w_at(wt, wf, nt, cin, cb, j);
        const uint32_t i = perm[j];
        s0 += u;
        s1 += v;
        if (i < n4) { /* words (a0, a2) (a1, a3) (b0, b2) (b1, b3) of group i / 4 */
            uint32_t *g = w16 + (i & ~3u);
            const uint32_t sh = (i & 2u) * 8u;
            g[i & 1u] |= (uint32_t)(uint16_t)u << sh;
            g[2u + (i & 1u)] |= (uint32_t)(uint16_t)v << sh;
        } else {
            tail[i - n4] = (int8_t)u;
            tail[4u + i - n4] = (int8_t)v;
        }
    }
    *sa = s0;
    *sb = s1;
}

/* 4 input channels at x0 (pixel 0) and x0 + off (pixel 1) times the widened
   weight words w[0..3] (pw_widen_pair's order). */
#define PW_W16_CHUNK(x0, off, w)                                                                                     \
    do {                                                                                                             \
        const uint32_t q = tt_ld32(x0), p = tt_ld32((x0) + (off));                                                  \
        const uint32_t q02 = tt_widen02(q), q13 = tt_widen13(q), p02 = tt_widen02(p), p13 = tt_widen13(p);         \
        uint32_t s = (w)[0], t = (w)[1];                                                                             \
        a0 = tt_smlad(q02, s, a0);                                                                                   \
        a0 = tt_smlad(q13, t, a0);                                                                                   \
        a1 = tt_smlad(p02, s, a1);                                                                                   \
        a1 = tt_smlad(p13, t, a1);                                                                                   \
        s = (w)[2];                                                                                                  \
        t = (w)[3];                                                                                                  \
        a2 = tt_smlad(q02, s, a2);                                                                                   \
        a2 = tt_smlad(q13, t, a2);                                                                                   \
        a3 = tt_smlad(p02, s, a3);                                                                                   \
        a3 = tt_smlad(p13, t, a3);                                                                                   \
    } while (0)

/* dot_s8_2x2 with the first n & ~3 weights of both channels from w16
   (pw_widen_pair), the last n & 3 from wt (channel a), wt + woff (b);
   pixel 1 at x0 + off (0: both pixels are pixel 0). */
TT_INLINE void dot_w16_2x2(const int8_t *x0, const uint32_t *w16, const int8_t *wt, uint32_t off, uint32_t woff,
                           uint32_t n, int32_t *a) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    const uint32_t *end = w16 + (n & ~7u);
#if TT_DSP
    /* GCC neither pairs the weight loads into LDRD nor post-increments:
       34 instructions per 8 input channels where it makes 40 */
    for (; w16 != end;) {
        uint32_t q, q2, p, p2, s, t;
        __asm__("ldr %[p], [%[x], %[off]]\n\t"
                "ldr %[q], [%[x]], #4\n\t"
                "ldrd %[s], %[t], [%[w]], #8\n\t"
                "sxtb16 %[q2], %[q]\n\t"
                "sxtb16 %[q], %[q], ror #8\n\t"
                "sxtb16 %[p2], %[p]\n\t"
                "sxtb16 %[p], %[p], ror #8\n\t"
                "smlad %[a0], %[q2], %[s], %[a0]\n\t"
                "smlad %[a0], %[q], %[t], %[a0]\n\t"
                "smlad %[a1], %[p2], %[s], %[a1]\n\t"
                "smlad %[a1], %[p], %[t], %[a1]\n\t"
                "ldrd %[s], %[t], [%[w]], #8\n\t"
                "smlad %[a2], %[q2], %[s], %[a2]\n\t"
                "smlad %[a2], %[q], %[t], %[a2]\n\t"
                "smlad %[a3], %[p2], %[s], %[a3]\n\t"
                "smlad %[a3], %[p], %[t], %[a3]\n\t"
                "ldr %[p], [%[x], %[off]]\n\t"
                "ldr %[q], [%[x]], #4\n\t"
                "ldrd %[s], %[t], [%[w]], #8\n\t"
                "sxtb16 %[q2], %[q]\n\t"
                "sxtb16 %[q], %[q], ror #8\n\t"
                "sxtb16 %[p2], %[p]\n\t"
                "sxtb16 %[p], %[p], ror #8\n\t"
                "smlad %[a0], %[q2], %[s], %[a0]\n\t"
                "smlad %[a0], %[q], %[t], %[a0]\n\t"
                "smlad %[a1], %[p2], %[s], %[a1]\n\t"
                "smlad %[a1], %[p], %[t], %[a1]\n\t"
                "ldrd %[s], %[t], [%[w]], #8\n\t"
                "smlad %[a2], %[q2], %[s], %[a2]\n\t"
                "smlad %[a2], %[q], %[t], %[a2]\n\t"
                "smlad %[a3], %[p2], %[s], %[a3]\n\t"
                "smlad %[a3], %[p], %[t], %[a3]"
                : [q] "=&r"(q), [q2] "=&r"(q2), [p] "=&r"(p), [p2] "=&r"(p2), [s] "=&r"(s), [t] "=&r"(t),
                  [x] "+r"(x0), [w] "+r"(w16), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
                : [off] "r"(off)
                : "memory");
    }
#else
    for (; w16 != end; w16 += 8, x0 += 8) {
        PW_W16_CHUNK(x0, off, w16);
        PW_W16_CHUNK(x0 + 4, off, w16 + 4);
    }
#endif
    if (n & 4u) {
        PW_W16_CHUNK(x0, off, w16);
        x0 += 4;
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    dot_tail_2x2(x0, off, wt, woff, n & 3u, a);
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

/* dot_w16_2x2 out of line: the odd pixel of a row (off = 0: as both of a
   tile's pixels) and the odd channel of a layer with a perm. */
static TT_NOINLINE void dot_w16_ool(const int8_t *x0, const uint32_t *w16, const int8_t *wt, uint32_t off,
                                    uint32_t woff, uint32_t n, int32_t *a) {
    dot_w16_2x2(x0, w16, wt, off, woff, n, a);
}

typedef struct {
    const int8_t *x, *wa;
    const uint32_t *w16; /* pw_widen_pair(_perm) of the channel pair, or NULL */
    const int8_t *wtail; /* with w16: the last cin & 3 weights of channel a, of b woff bytes on */
    uint32_t woff;
    int8_t *y;
    uint8_t *mask;
    uint32_t cin, cout, npix, c;
    int32_t ba, bb, zy, lo, hi;
    rq_t ra, rb;
    rqz_t za, zb; /* rqz_make of ra, rb (pw_lean) */
} pw_pass_t;

/* Channels c, c + 1 at every pixel without a mask, widened weights, both
   channels rqz_ok: an output is SMMLA, ASR and the clamp (a constant where
   the caller passes one), as pw_pass_body's rq_fast, + zy, clamp. */
TT_INLINE void pw_lean_body(const pw_pass_t *P, int32_t lo, int32_t hi, uint32_t cin) {
    const int8_t *xp = P->x;
    const uint32_t *w16 = P->w16;
    const uint32_t cout = P->cout;
    const int32_t ba = P->ba, bb = P->bb;
    const int32_t ma = P->za.mult, ra = P->za.rz, mb = P->zb.mult, rb = P->zb.rz;
    const uint32_t ka = P->za.k, kb = P->zb.k;
    const int8_t *xend = xp + (P->npix & ~1u) * cin;
    int8_t *yp = P->y + P->c;
    for (; xp != xend; xp += 2u * cin, yp += 2u * cout) {
        int32_t a[4];
        a[0] = ba;
        a[1] = ba;
        a[2] = bb;
        a[3] = bb;
        dot_w16_2x2(xp, w16, P->wtail, cin, P->woff, cin, a);
        yp[0] = (int8_t)clamp_act(rqz_apply(a[0], ma, ra, ka), lo, hi);
        yp[1] = (int8_t)clamp_act(rqz_apply(a[2], mb, rb, kb), lo, hi);
        yp[cout] = (int8_t)clamp_act(rqz_apply(a[1], ma, ra, ka), lo, hi);
        yp[cout + 1u] = (int8_t)clamp_act(rqz_apply(a[3], mb, rb, kb), lo, hi);
    }
    if (P->npix & 1u) { /* the last pixel as both of a tile's */
        int32_t a[4];
        a[0] = ba;
        a[1] = ba;
        a[2] = bb;
        a[3] = bb;
        dot_w16_ool(xp, w16, P->wtail, 0u, P->woff, cin, a);
        yp[0] = (int8_t)clamp_act(rqz_apply(a[0], ma, ra, ka), lo, hi);
        yp[1] = (int8_t)clamp_act(rqz_apply(a[2], mb, rb, kb), lo, hi);
    }
}

#if TT_DSP
/* pw_lean_body's constants as the tile loops of pw_lean_full8 and
   pw_mask_full8 read them (pairs for LDRD). */
typedef struct {
    int32_t ba, bb;      /* the biases */
    int32_t ma, rza;     /* channel a: mult, rz */
    int32_t mb, rzb;     /* channel b */
    uint32_t ka, kb;     /* the shifts */
    int8_t *y;           /* the tile's first output */
    uint32_t cout;       /* output row stride */
    uint8_t *mask;       /* pw_mask_full8: the mask (bits relative to y[0]) */
    uint32_t idx;        /* and the tile's first output's index there */
    const int8_t *xend;  /* the first pixel pair not tiled */
    const uint32_t *w16; /* pw_xw: the first widened weight */
} pw_lean_k;

/* The start of a tile: the biases. */
#define PW_ASM_BIAS                                                                                                  \
    "1:\n\t"                                                                                                         \
    "ldrd %[a0], %[a2], %[kb]\n\t"                                                                                   \
    "mov %[a1], %[a0]\n\t"                                                                                           \
    "mov %[a3], %[a2]\n\t"

/* A tile's sums over 4 input channels: a word of each pixel widened in two
   halves, two weight words per output channel pair. */
#define PW_ASM_SUMS4                                                                                                 \
    "ldr %[p], [%[x], %[off]]\n\t"                                                                                   \
    "ldr %[q], [%[x]], #4\n\t"                                                                                       \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "sxtb16 %[q2], %[q]\n\t"                                                                                         \
    "sxtb16 %[q], %[q], ror #8\n\t"                                                                                  \
    "sxtb16 %[p2], %[p]\n\t"                                                                                         \
    "sxtb16 %[p], %[p], ror #8\n\t"                                                                                  \
    "smlad %[a0], %[q2], %[s], %[a0]\n\t"                                                                            \
    "smlad %[a0], %[q], %[t], %[a0]\n\t"                                                                             \
    "smlad %[a1], %[p2], %[s], %[a1]\n\t"                                                                            \
    "smlad %[a1], %[p], %[t], %[a1]\n\t"                                                                             \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a2], %[q2], %[s], %[a2]\n\t"                                                                            \
    "smlad %[a2], %[q], %[t], %[a2]\n\t"                                                                             \
    "smlad %[a3], %[p2], %[s], %[a3]\n\t"                                                                            \
    "smlad %[a3], %[p], %[t], %[a3]\n\t"

/* A tile's sums over 8 input channels at a time (dot_w16_2x2's); after them
   x is at the next pixel pair, w at its first weight. */
#define PW_ASM_SUMS                                                                                                  \
    "2:\n\t"                                                                                                         \
    PW_ASM_SUMS4 PW_ASM_SUMS4                                                                                        \
    "cmp %[w], %[wend]\n\t"                                                                                          \
    "bne 2b\n\t"                                                                                                     \
    "sub %[w], %[w], %[off], lsl #2\n\t"                                                                             \
    "add %[x], %[x], %[off]\n\t"

/* PW_ASM_SUMS on inputs widened beforehand (pw_xw: per 4 input channels
   the words (x0, x2) (x1, x3), pixel 1 at x1): per 8 input channels 8 LDRD
   and 16 SMLAD, no SXTB16. After them x, x1 are at the next pixel pair. */
#define PW_ASM_SUMS_XW                                                                                               \
    "2:\n\t"                                                                                                         \
    "ldrd %[q], %[q2], [%[x]], #8\n\t"                                                                                \
    "ldrd %[p], %[p2], [%[x1]], #8\n\t"                                                                               \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a0], %[q], %[s], %[a0]\n\t"                                                                             \
    "smlad %[a0], %[q2], %[t], %[a0]\n\t"                                                                            \
    "smlad %[a1], %[p], %[s], %[a1]\n\t"                                                                             \
    "smlad %[a1], %[p2], %[t], %[a1]\n\t"                                                                            \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a2], %[q], %[s], %[a2]\n\t"                                                                             \
    "smlad %[a2], %[q2], %[t], %[a2]\n\t"                                                                            \
    "smlad %[a3], %[p], %[s], %[a3]\n\t"                                                                             \
    "smlad %[a3], %[p2], %[t], %[a3]\n\t"                                                                            \
    "ldrd %[q], %[q2], [%[x]], #8\n\t"                                                                                \
    "ldrd %[p], %[p2], [%[x1]], #8\n\t"                                                                               \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a0], %[q], %[s], %[a0]\n\t"                                                                             \
    "smlad %[a0], %[q2], %[t], %[a0]\n\t"                                                                            \
    "smlad %[a1], %[p], %[s], %[a1]\n\t"                                                                             \
    "smlad %[a1], %[p2], %[t], %[a1]\n\t"                                                                            \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a2], %[q], %[s], %[a2]\n\t"                                                                             \
    "smlad %[a2], %[q2], %[t], %[a2]\n\t"                                                                            \
    "smlad %[a3], %[p], %[s], %[a3]\n\t"                                                                             \
    "smlad %[a3], %[p2], %[t], %[a3]\n\t"                                                                            \
    "cmp %[w], %[wend]\n\t"                                                                                          \
    "bne 2b\n\t"                                                                                                     \
    "ldr %[w], %[kw16]\n\t"                                                                                          \
    "rsb %[s], %[x], %[x1], lsl #1\n\t"                                                                              \
    "mov %[x], %[x1]\n\t"                                                                                            \
    "mov %[x1], %[s]\n\t"

/* rqz_apply's values of a0..a3, before the clamp. */
#define PW_ASM_RQ                                                                                                    \
    "ldrd %[s], %[t], %[kma]\n\t"                                                                                    \
    "smmla %[a0], %[a0], %[s], %[t]\n\t"                                                                             \
    "smmla %[a1], %[a1], %[s], %[t]\n\t"                                                                             \
    "ldrd %[s], %[t], %[kmb]\n\t"                                                                                    \
    "smmla %[a2], %[a2], %[s], %[t]\n\t"                                                                             \
    "smmla %[a3], %[a3], %[s], %[t]\n\t"                                                                             \
    "ldrd %[s], %[t], %[kk]\n\t"                                                                                     \
    "asr %[a0], %[a0], %[s]\n\t"                                                                                     \
    "asr %[a1], %[a1], %[s]\n\t"                                                                                     \
    "asr %[a2], %[a2], %[t]\n\t"                                                                                     \
    "asr %[a3], %[a3], %[t]\n\t"

/* The clamp (SSAT) and the stores y[0], y[1], y[cout], y[cout + 1];
   y += 2 cout, t = cout. */
#define PW_ASM_STORE                                                                                                 \
    "ssat %[a0], #8, %[a0]\n\t"                                                                                      \
    "ssat %[a1], #8, %[a1]\n\t"                                                                                      \
    "ssat %[a2], #8, %[a2]\n\t"                                                                                      \
    "ssat %[a3], #8, %[a3]\n\t"                                                                                      \
    "ldrd %[s], %[t], %[ky]\n\t"                                                                                     \
    "strb %[a0], [%[s]]\n\t"                                                                                         \
    "strb %[a2], [%[s], #1]\n\t"                                                                                     \
    "add %[s], %[s], %[t]\n\t"                                                                                       \
    "strb %[a1], [%[s]]\n\t"                                                                                         \
    "strb %[a3], [%[s], #1]\n\t"                                                                                     \
    "add %[s], %[s], %[t]\n\t"                                                                                       \
    "str %[s], %[ky]\n\t"

/* q = the mask bits (a0, a2) of pixel 0, p = (a1, a3) of pixel 1: a bit
   is set when -128 <= v <= 127 before the clamp, i.e. when (v + 128) <= 255
   unsigned: ADD, RSBS (carry set then) and ADC shift it in. */
#define PW_ASM_MASKBITS                                                                                              \
    "mov %[q], #0\n\t"                                                                                               \
    "add %[t], %[a2], #128\n\t"                                                                                      \
    "rsbs %[t], %[t], #255\n\t"                                                                                      \
    "adc %[q], %[q], %[q]\n\t"                                                                                       \
    "add %[t], %[a0], #128\n\t"                                                                                      \
    "rsbs %[t], %[t], #255\n\t"                                                                                      \
    "adc %[q], %[q], %[q]\n\t"                                                                                       \
    "mov %[p], #0\n\t"                                                                                               \
    "add %[t], %[a3], #128\n\t"                                                                                      \
    "rsbs %[t], %[t], #255\n\t"                                                                                      \
    "adc %[p], %[p], %[p]\n\t"                                                                                       \
    "add %[t], %[a1], #128\n\t"                                                                                      \
    "rsbs %[t], %[t], #255\n\t"                                                                                      \
    "adc %[p], %[p], %[p]\n\t"

/* After PW_ASM_STORE (t = cout): mask[idx / 8] |= q << idx % 8, then at
   idx + cout p; idx += 2 cout. */
#define PW_ASM_MASKSTORE                                                                                             \
    "ldrd %[a0], %[a1], %[km]\n\t"                                                                                   \
    "lsr %[a2], %[a1], #3\n\t"                                                                                       \
    "and %[a3], %[a1], #7\n\t"                                                                                       \
    "lsl %[q], %[q], %[a3]\n\t"                                                                                      \
    "ldrb %[a3], [%[a0], %[a2]]\n\t"                                                                                 \
    "orr %[a3], %[a3], %[q]\n\t"                                                                                     \
    "strb %[a3], [%[a0], %[a2]]\n\t"                                                                                 \
    "add %[a1], %[a1], %[t]\n\t"                                                                                     \
    "lsr %[a2], %[a1], #3\n\t"                                                                                       \
    "and %[a3], %[a1], #7\n\t"                                                                                       \
    "lsl %[p], %[p], %[a3]\n\t"                                                                                      \
    "ldrb %[a3], [%[a0], %[a2]]\n\t"                                                                                 \
    "orr %[a3], %[a3], %[p]\n\t"                                                                                     \
    "strb %[a3], [%[a0], %[a2]]\n\t"                                                                                 \
    "add %[a1], %[a1], %[t]\n\t"                                                                                     \
    "str %[a1], %[ki]\n\t"

/* The next tile while x is not at xend. */
#define PW_ASM_NEXT                                                                                                  \
    "ldr %[s], %[kx]\n\t"                                                                                            \
    "cmp %[x], %[s]\n\t"                                                                                             \
    "bne 1b"

#define PW_ASM_OUTS                                                                                                  \
    [q] "=&r"(q), [q2] "=&r"(q2), [p] "=&r"(p), [p2] "=&r"(p2), [s] "=&r"(s), [t] "=&r"(t), [a0] "=&r"(a0),        \
        [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [x] "+r"(x), [w] "+r"(w), [ky] "+m"(K.y)
#define PW_ASM_INS                                                                                                   \
    [off] "r"(cin), [wend] "r"(wend), [kb] "m"(K.ba), [kma] "m"(K.ma), [kmb] "m"(K.mb), [kk] "m"(K.ka),             \
        [kx] "m"(K.xend), "m"(K)

/* The words of pw_lean_k from ba to kb: a pair's prepared constants
   (tt_pointwise_prep), after its widened weights. */
#define PW_PREP_CONSTS 8u
typedef char pw_prep_layout[offsetof(pw_lean_k, kb) == 4u * (PW_PREP_CONSTS - 1u) &&
                                    PW_PREP_CONSTS == TT_PREP_PW_PAIR_WORDS(0u)
                                ? 1
                                : -1];

static void pw_lean_k_make(pw_lean_k *K, const pw_pass_t *P) {
    K->ba = P->ba;
    K->bb = P->bb;
    K->ma = P->za.mult;
    K->rza = P->za.rz;
    K->mb = P->zb.mult;
    K->rzb = P->zb.rz;
    K->ka = P->za.k;
    K->kb = P->zb.k;
    K->y = P->y + P->c;
    K->cout = P->cout;
    K->mask = P->mask;
    K->idx = P->c;
    K->xend = P->x + (P->npix & ~1u) * P->cin;
}

/* The last pixel of an odd count as both of a tile's: its outputs at K->y
   (and their mask bits, if any), after the tiles. */
static void pw_lean_last(const pw_lean_k *K, const pw_pass_t *P) {
    const uint32_t idx = (uint32_t)(K->y - P->y);
    int32_t a[4];
    a[0] = K->ba;
    a[1] = K->ba;
    a[2] = K->bb;
    a[3] = K->bb;
    dot_w16_ool(K->xend, P->w16, P->wtail, 0u, P->woff, P->cin, a);
    tt_store_out(P->y, K->mask, idx, rqz_apply(a[0], K->ma, K->rza, K->ka), 0, -128, 127);
    tt_store_out(P->y, K->mask, idx + 1u, rqz_apply(a[2], K->mb, K->rzb, K->kb), 0, -128, 127);
}
#endif

/* cin a multiple of 8 (every paper model's layer): no tails in the tiles.
   With the DSP extension the whole tile loop is one asm block: GCC spills
   the pointers and constants around each tile (53 instructions a tile
   besides the sums), here they come in LDRD pairs from a small frame (31). */
static TT_NOINLINE void pw_lean_full8(const pw_pass_t *P) {
#if TT_DSP
    const uint32_t cin = P->cin;
    pw_lean_k K;
    pw_lean_k_make(&K, P);
    if (P->npix >= 2u) {
        const int8_t *x = P->x;
        const uint32_t *w = P->w16, *wend = P->w16 + cin; /* 4 words per 4 input channels */
        uint32_t q, q2, p, p2, s, t;
        int32_t a0, a1, a2, a3;
        __asm__ volatile(PW_ASM_BIAS PW_ASM_SUMS PW_ASM_RQ PW_ASM_STORE PW_ASM_NEXT : PW_ASM_OUTS : PW_ASM_INS : "cc", "memory");
    }
    if (P->npix & 1u) {
        pw_lean_last(&K, P);
    }
#else
    pw_lean_body(P, -128, 127, P->cin & ~7u);
#endif
}

#if TT_DSP
/* pw_lean_full8 with the output's mask (training): a bit is set when
   -128 <= v <= 127 before the clamp, i.e. when (v + 128) <= 255 unsigned:
   ADD, RSBS (carry set then) and ADC shift it into a channel pair's 2 bits,
   which go to their mask byte (c and cout even: a pair's index is even,
   its bits never straddle bytes). */
static TT_NOINLINE void pw_mask_full8(const pw_pass_t *P) {
    const uint32_t cin = P->cin;
    pw_lean_k K;
    pw_lean_k_make(&K, P);
    if (P->npix >= 2u) {
        const int8_t *x = P->x;
        const uint32_t *w = P->w16, *wend = P->w16 + cin;
        uint32_t q, q2, p, p2, s, t;
        int32_t a0, a1, a2, a3;
        __asm__ volatile(PW_ASM_BIAS PW_ASM_SUMS PW_ASM_RQ
                         PW_ASM_MASKBITS PW_ASM_STORE PW_ASM_MASKSTORE PW_ASM_NEXT
                         : PW_ASM_OUTS, [ki] "+m"(K.idx)
                         : PW_ASM_INS, [km] "m"(K.mask)
                         : "cc", "memory");
    }
    if (P->npix & 1u) {
        pw_lean_last(&K, P);
    }
}
#endif

static TT_NOINLINE void pw_lean(const pw_pass_t *P) {
    pw_lean_body(P, P->lo, P->hi, P->cin);
}

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
        if (P->w16) {
            dot_w16_2x2(xp, P->w16, P->wtail, cin, P->woff, cin, a);
        } else {
            dot_s8_2x2(xp, wa, cin, cin, a);
        }
        if (fast) {
            out2(y, mask, idx, rq_fast(a[0], &P->ra), rq_fast(a[2], &P->rb), zy, lo, hi);
            out2(y, mask, idx + cout, rq_fast(a[1], &P->ra), rq_fast(a[3], &P->rb), zy, lo, hi);
        } else {
            out2(y, mask, idx, rq_apply(a[0], &P->ra), rq_apply(a[2], &P->rb), zy, lo, hi);
            out2(y, mask, idx + cout, rq_apply(a[1], &P->ra), rq_apply(a[3], &P->rb), zy, lo, hi);
        }
    }
    if (p < npix && P->w16) { /* the last pixel as both of a tile's */
        int32_t a[4];
        a[0] = P->ba;
        a[1] = P->ba;
        a[2] = P->bb;
        a[3] = P->bb;
        dot_w16_ool(xp, P->w16, P->wtail, 0u, P->woff, cin, a);
        out2(y, mask, idx, rq_apply(a[0], &P->ra), rq_apply(a[2], &P->rb), zy, lo, hi);
    } else if (p < npix) {
        out2(y, mask, idx, rq_apply(P->ba + dot_s8(xp, wa, cin), &P->ra),
             rq_apply(P->bb + dot_s8(xp, wa + cin, cin), &P->rb), zy, lo, hi);
    }
}

static TT_NOINLINE void pw_pass_fast_full(const pw_pass_t *P) {
    pw_pass_body(P, 1, -128, 127);
}

/* Both shifts >= 33, a clamp other than the int8 range (a ReLU's). */
static TT_NOINLINE void pw_pass_fast(const pw_pass_t *P) {
    pw_pass_body(P, 1, P->lo, P->hi);
}

static TT_NOINLINE void pw_pass_any(const pw_pass_t *P) {
    pw_pass_body(P, 0, P->lo, P->hi);
}

#if TT_DSP
/* Input channels up to which pw_xw widens the inputs as well. */
#define PW_XW_MAX_CIN 64u

/* The tiles of channels P->c, P->c + 1 over pixels [b0, b0 + n) (n even),
   widened at xw: the lean tile, or with the mask (P->mask). K lives here
   only (the pointwise path's stack stays as without widened inputs); its
   first 8 words from kc when the pair's constants were prepared (else NULL:
   from P). */
static TT_NOINLINE void pw_xw_tiles(const pw_pass_t *P, const uint32_t *xw, uint32_t b0, uint32_t n,
                                    const uint32_t *kc) {
    pw_lean_k K;
    const uint32_t *x = xw, *x1 = xw + P->cin / 2u;
    const uint32_t *w = P->w16, *wend = P->w16 + P->cin;
    uint32_t q, q2, p, p2, s, t;
    int32_t a0, a1, a2, a3;
    if (kc) {
        memcpy(&K, kc, 4u * PW_PREP_CONSTS);
        K.cout = P->cout;
        K.mask = P->mask;
    } else {
        pw_lean_k_make(&K, P);
    }
    K.y = P->y + b0 * P->cout + P->c;
    K.idx = b0 * P->cout + P->c;
    K.xend = (const int8_t *)(const void *)(xw + n * P->cin / 2u);
    K.w16 = P->w16;
    if (P->mask) {
        __asm__ volatile(PW_ASM_BIAS PW_ASM_SUMS_XW PW_ASM_RQ PW_ASM_MASKBITS PW_ASM_STORE PW_ASM_MASKSTORE
                             PW_ASM_NEXT
                         : PW_ASM_OUTS, [x1] "+r"(x1), [ki] "+m"(K.idx)
                         : [wend] "r"(wend), [kb] "m"(K.ba), [kma] "m"(K.ma), [kmb] "m"(K.mb), [kk] "m"(K.ka),
                           [kx] "m"(K.xend), [kw16] "m"(K.w16), [km] "m"(K.mask), "m"(K)
                         : "cc", "memory");
    } else {
        __asm__ volatile(PW_ASM_BIAS PW_ASM_SUMS_XW PW_ASM_RQ PW_ASM_STORE PW_ASM_NEXT
                         : PW_ASM_OUTS, [x1] "+r"(x1)
                         : [wend] "r"(wend), [kb] "m"(K.ba), [kma] "m"(K.ma), [kmb] "m"(K.mb), [kk] "m"(K.ka),
                           [kx] "m"(K.xend), [kw16] "m"(K.w16), "m"(K)
                         : "cc", "memory");
    }
}

/* pw_xw with a perm (weight j meets input channel perm[j]): the pixels'
   inputs are gathered in weight storage order as they are widened (per 4
   positions j the words (x[perm[j]], x[perm[j + 2]]), (x[perm[j + 1]],
   x[perm[j + 3]])), so the weights widen as stored, a channel's trained
   positions [0, nt) from the trained rows, the others from the model's
   (nt a multiple of 4): no per-weight perm step for each channel pair. */
static TT_NOINLINE void pw_xw_gather(uint32_t *d, const int8_t *x, uint32_t n, uint32_t cin, const uint16_t *perm) {
    for (uint32_t p = 0; p < n; p++, x += cin) {
        for (uint32_t j = 0; j < cin; j += 4u, d += 2) {
            d[0] = pack16(x[perm[j]], x[perm[j + 2u]]);
            d[1] = pack16(x[perm[j + 1u]], x[perm[j + 3u]]);
        }
    }
}

/* The sums of channels a (a[0]) and b (a[2]) at one widened pixel xw
   (pw_xw's odd last pixel). */
static TT_NOINLINE void pw_xw_dot1(const uint32_t *xw, const uint32_t *w16, uint32_t cin, int32_t *a) {
    for (uint32_t i = 0; i < cin / 4u; i++, xw += 2, w16 += 4) {
        a[0] = tt_smlad(xw[1], w16[1], tt_smlad(xw[0], w16[0], a[0]));
        a[2] = tt_smlad(xw[1], w16[3], tt_smlad(xw[0], w16[2], a[2]));
    }
}

/* Pixel pl (the last of an odd count) of channels P->c, P->c + 1 as both
   of a tile's, from its widened inputs xwp (with a perm: gathered). */
static TT_NOINLINE void pw_xw_odd(const pw_pass_t *P, const uint32_t *xwp, uint32_t pl) {
    const uint32_t cout = P->cout, c = P->c;
    int32_t a[4];
    a[0] = P->ba;
    a[1] = P->ba;
    a[2] = P->bb;
    a[3] = P->bb;
    pw_xw_dot1(xwp, P->w16, P->cin, a);
    tt_store_out(P->y, P->mask, pl * cout + c, rqz_apply(a[0], P->za.mult, P->za.rz, P->za.k), 0, -128, 127);
    tt_store_out(P->y, P->mask, pl * cout + c + 1u, rqz_apply(a[2], P->zb.mult, P->zb.rz, P->zb.k), 0, -128, 127);
}

/* tt_pointwise_opt with the inputs widened to int16 as well (layers of few
   input channels, cin a multiple of 8 up to PW_XW_MAX_CIN): blocks of pixels
   are widened into buf after a channel pair's weights, once for all pairs,
   and the tiles need no SXTB16 (26 instructions per 8 input channels where
   pw_lean_full8 takes 34). The weights are widened again per block (with a
   perm the inputs are gathered in weight storage order). Every channel
   rqz_ok, the int8 clamp, even cout; else 0 (not handled). buf: PW_W16_MAX_CIN words; P, tail: the caller's
   (no second copy on the stack). With R->prep (tt_pointwise_prep) the
   weights and constants of every pair come from there, made once for the
   rows of a fused op, and buf holds inputs only. */
static int pw_xw(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask, uint32_t *buf,
                 pw_pass_t *P, int8_t *tail) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = R->x + (R->oh0 - R->row0) * (uint32_t)in->w * in->c;
    int8_t *y = R->y;
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    const uint32_t cin = in->c, cout = out->c, npix = (R->oh1 - R->oh0) * out->w;
    const uint32_t *prep = R->prep;
    const uint32_t wcin = prep ? 0u : cin; /* buf's words of widened weights */
    const uint32_t bmax = cin ? ((PW_W16_MAX_CIN - wcin) * 2u / cin) & ~1u : 0u; /* pixels a block */
    const int32_t zx = in->zero, zy = out->zero;
    uint32_t *w16 = buf, *xw = buf + wcin;
    if (!cin || cin % 8u || cin > PW_XW_MAX_CIN || cout % 2u || npix < 2u || !tt_full_range(L) ||
        (W.perm && L->n_train % 4u)) {
        return 0;
    }
    for (uint32_t c = 0; !prep && c < cout; c++) {
        const rq_t r = rq_make(W.mult[c], W.shift[c]);
        if (!rqz_ok(&r)) {
            return 0;
        }
    }
    memset(P, 0, sizeof(*P));
    P->cin = cin;
    P->cout = cout;
    P->zy = zy;
    P->lo = -128;
    P->hi = 127;
    P->w16 = w16;
    for (uint32_t b0 = 0; b0 < npix; b0 += bmax) {
        const uint32_t n = npix - b0 < bmax ? npix - b0 : bmax;
        const int8_t *xb = x + b0 * cin, *xe = xb + n * cin; /* n cin: a multiple of 8 */
        uint32_t *d = xw;
        uint32_t u, u2, v, v2;
        if (W.perm) {
            pw_xw_gather(xw, xb, n, cin, W.perm);
        } else
        __asm__ volatile("1:\n\t" /* 9 instructions per 8 bytes */
                         "ldr %[v], [%[s], #4]\n\t"
                         "ldr %[u], [%[s]], #8\n\t"
                         "sxtb16 %[u2], %[u]\n\t"
                         "sxtb16 %[u], %[u], ror #8\n\t"
                         "sxtb16 %[v2], %[v]\n\t"
                         "sxtb16 %[v], %[v], ror #8\n\t"
                         "strd %[u2], %[u], [%[d]], #8\n\t"
                         "strd %[v2], %[v], [%[d]], #8\n\t"
                         "cmp %[s], %[e]\n\t"
                         "bne 1b"
                         : [u] "=&r"(u), [u2] "=&r"(u2), [v] "=&r"(v), [v2] "=&r"(v2), [s] "+r"(xb), [d] "+r"(d)
                         : [e] "r"(xe)
                         : "cc", "memory");
        xb = x + b0 * cin;
        for (uint32_t c = 0; c < cout; c += 2u) {
            int32_t sa, sb;
            const uint32_t *kc = NULL;
            P->c = c;
            P->x = xb;
            P->y = y;
            P->mask = mask;
            P->npix = n;
            if (prep) {
                P->w16 = prep + c / 2u * TT_PREP_PW_PAIR_WORDS(cin);
                kc = P->w16 + cin;
                if (n >= 2u) {
                    pw_xw_tiles(P, xw, b0, n & ~1u, kc);
                }
                if (n & 1u) { /* as below, the constants from kc */
                    P->ba = (int32_t)kc[0];
                    P->bb = (int32_t)kc[1];
                    P->za.mult = (int32_t)kc[2];
                    P->za.rz = (int32_t)kc[3];
                    P->zb.mult = (int32_t)kc[4];
                    P->zb.rz = (int32_t)kc[5];
                    P->za.k = kc[6];
                    P->zb.k = kc[7];
                    pw_xw_odd(P, xw + (n - 1u) * cin / 2u, b0 + n - 1u);
                }
                continue;
            }
            P->w16 = w16;
            P->wa = W.wf + c * cin;
            if (W.perm) { /* the weights as stored (NULL: pw_xw_gather ordered the inputs) */
                pw_widen_pair_perm(w16, tail, W.wt, W.wf, L->n_train, cin, NULL, c, c + 1u, &sa, &sb);
                P->wtail = tail;
                P->woff = 4u;
            } else {
                pw_widen_pair(w16, P->wa, cin, &sa, &sb);
                P->wtail = P->wa + cin;
                P->woff = cin;
            }
            P->ba = tt_bias_at(&W, c) - zx * sa;
            P->bb = tt_bias_at(&W, c + 1u) - zx * sb;
            P->ra = rq_make(W.mult[c], W.shift[c]);
            P->rb = rq_make(W.mult[c + 1u], W.shift[c + 1u]);
            P->za = rqz_make(&P->ra, zy);
            P->zb = rqz_make(&P->rb, zy);
            if (n >= 2u) {
                pw_xw_tiles(P, xw, b0, n & ~1u, kc);
            }
            if (n & 1u) { /* the last pixel (of an odd count) as both of a tile's */
                pw_xw_odd(P, xw + (n - 1u) * cin / 2u, b0 + n - 1u);
            }
        }
    }
    return 1;
}
#endif

int tt_pointwise_prep(tt_trainer *t, const tt_layer_rec *L, uint32_t *dst) {
#if TT_DSP
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    const uint32_t cin = in->c, cout = out->c;
    if (!tt_is_pointwise(m, L) || W.perm || !tt_prep_bytes(m, L) || !tt_full_range(L)) {
        return 0;
    }
    for (uint32_t c = 0; c < cout; c++) { /* pw_xw's tiles: every channel rqz_ok */
        const rq_t r = rq_make(W.mult[c], W.shift[c]);
        if (!rqz_ok(&r)) {
            return 0;
        }
    }
    for (uint32_t c = 0; c < cout; c += 2u, dst += TT_PREP_PW_PAIR_WORDS(cin)) {
        uint32_t *kc = dst + cin;
        int32_t sa, sb;
        const rq_t ra = rq_make(W.mult[c], W.shift[c]), rb = rq_make(W.mult[c + 1u], W.shift[c + 1u]);
        const rqz_t za = rqz_make(&ra, out->zero), zb = rqz_make(&rb, out->zero);
        pw_widen_pair(dst, W.wf + c * cin, cin, &sa, &sb);
        kc[0] = (uint32_t)(tt_bias_at(&W, c) - in->zero * sa);
        kc[1] = (uint32_t)(tt_bias_at(&W, c + 1u) - in->zero * sb);
        kc[2] = (uint32_t)za.mult;
        kc[3] = (uint32_t)za.rz;
        kc[4] = (uint32_t)zb.mult;
        kc[5] = (uint32_t)zb.rz;
        kc[6] = za.k;
        kc[7] = zb.k;
    }
    return 1;
#else
    (void)t;
    (void)L;
    (void)dst;
    return 0;
#endif
}

/* 1x1 conv, stride 1, rows of input and output alike; with a perm up to
   PW_W16_MAX_CIN input channels (else 0: not handled). Output rows
   [R->oh0, R->oh1); mask offset to y[0]. */
int tt_pointwise_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    uint32_t w16[PW_W16_MAX_CIN];
    int8_t tail[8];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = R->x + (R->oh0 - R->row0) * (uint32_t)in->w * in->c;
    int8_t *y = R->y;
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    const int8_t *wf = W.wf, *shift = W.shift;
    const int32_t *mult = W.mult;
    const uint32_t cin = in->c, cout = out->c, npix = (R->oh1 - R->oh0) * out->w;
    const int32_t zx = in->zero, zy = out->zero, lo = L->act_min, hi = L->act_max;
    const uint16_t *perm = W.perm;
    pw_pass_t P;
    uint32_t c = 0;
    if (perm && (cin > PW_W16_MAX_CIN || npix < 8u)) {
        return 0; /* the weights' regrouping would cost more than the pixels */
    }
#if TT_DSP
    if (pw_xw(t, L, R, mask, w16, &P, tail)) {
        return 1;
    }
#endif
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
        int32_t sa, sb;
        P.wa = wf + c * cin;
        if (perm) {
            pw_widen_pair_perm(w16, tail, W.wt, wf, L->n_train, cin, perm, c, c + 1u, &sa, &sb);
            P.w16 = w16;
            P.wtail = tail;
            P.woff = 4u;
        } else if (cin <= PW_W16_MAX_CIN) {
            pw_widen_pair(w16, P.wa, cin, &sa, &sb);
            P.w16 = w16;
            P.wtail = P.wa + (cin & ~3u);
            P.woff = cin;
        } else {
            sa = sum_s8(P.wa, cin);
            sb = sum_s8(P.wa + cin, cin);
            P.w16 = NULL;
            P.wtail = NULL;
            P.woff = 0u;
        }
        P.ba = tt_bias_at(&W, c) - zx * sa;
        P.bb = tt_bias_at(&W, c + 1u) - zx * sb;
        P.ra = rq_make(mult[c], shift[c]);
        P.rb = rq_make(mult[c + 1u], shift[c + 1u]);
#if TT_DSP
        if (mask && P.w16 && rqz_ok(&P.ra) && rqz_ok(&P.rb) && lo == -128 && hi == 127 && cin % 8u == 0u &&
            cout % 2u == 0u) {
            P.za = rqz_make(&P.ra, zy);
            P.zb = rqz_make(&P.rb, zy);
            pw_mask_full8(&P);
            continue;
        }
#endif
        if (!mask && P.w16 && rqz_ok(&P.ra) && rqz_ok(&P.rb)) {
            P.za = rqz_make(&P.ra, zy);
            P.zb = rqz_make(&P.rb, zy);
            if (lo == -128 && hi == 127 && cin % 8u == 0u) {
                pw_lean_full8(&P);
            } else { /* any clamp (code size: one more variant gains little) */
                pw_lean(&P);
            }
        } else if (P.ra.k && P.rb.k && lo == -128 && hi == 127) {
            pw_pass_fast_full(&P);
        } else if (P.ra.k && P.rb.k) {
            pw_pass_fast(&P);
        } else {
            pw_pass_any(&P);
        }
    }
    if (c < cout && perm) { /* the last of an odd number of channels, as both of a pair */
        int32_t sa, sb;
        pw_widen_pair_perm(w16, tail, W.wt, wf, L->n_train, cin, perm, c, c, &sa, &sb);
        const int32_t ba = tt_bias_at(&W, c) - zx * sa;
        const rq_t ra = rq_make(mult[c], shift[c]);
        for (uint32_t p = 0; p < npix; p += 2u) {
            const uint32_t off = p + 1u < npix ? cin : 0u;
            int32_t a[4];
            a[0] = ba;
            a[1] = ba;
            a[2] = ba;
            a[3] = ba;
            dot_w16_ool(x + p * cin, w16, tail, off, 4u, cin, a);
            tt_store_out(y, mask, p * cout + c, rq_apply(a[0], &ra), zy, lo, hi);
            if (off) {
                tt_store_out(y, mask, (p + 1u) * cout + c, rq_apply(a[1], &ra), zy, lo, hi);
            }
        }
    } else if (c < cout) { /* the last of an odd number of channels */
        const int8_t *wa = wf + c * cin;
        const int32_t ba = tt_bias_at(&W, c) - zx * sum_s8(wa, cin);
        const rq_t ra = rq_make(mult[c], shift[c]);
        for (uint32_t p = 0; p < npix; p++) {
            tt_store_out(y, mask, p * cout + c, rq_apply(ba + dot_s8(x + p * cin, wa, cin), &ra), zy, lo, hi);
        }
    }
    return 1;
}

#else
typedef int tt_pointwise_opt_unused; /* ISO C: a translation unit is not empty */
#endif
