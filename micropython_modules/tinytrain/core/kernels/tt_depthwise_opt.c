/*
 * Depthwise forward kernels, optimised (selected by TT_OPTIMIZED and TT_OPT_DEPTHWISE, see tt_opt.h).
 * Same results as the reference bit for bit (integer sums reordered only).
 *
 *  - forward without perm, channels a multiple of 4: 4 channels per load,
 *    weights regrouped per tap on the stack, SXTAB16 + SMLABB/SMLATT; the
 *    windows that lie inside the input, without a mask, unrolled per kernel
 *    size with the zero point in the bias (dw4_lean); with 14 registers
 *    (TT_DSP_ASM_WIDE) the windows that reach the padding, and with a mask
 *    all, from a table of their taps inside the input (dw4_edge), and only
 *    what differs made per group of 4 channels (dw4_groups_edge).
 *  - other forward: per channel, the kh input rows of a window in an int16
 *    ring on the stack (zero point subtracted, padding 0), SMLAD on pairs.
 * The input gradient is tt_depthwise_grad_opt.c's, the weight gradient
 * tt_update_opt.c's.
 */
#include <stddef.h>
#include "tt_opt.h"

#if TT_OPT_DEPTHWISE

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
    rqz_t z[4]; /* rqz_make of rq, zy (lean: no mask, all rqz_ok) */
    int32_t bz[4]; /* b - zx (sum of the channel's taps): a whole window's bias for x, not x - zx */
    int lean;
    int zok; /* fast and every channel rqz_ok: z holds rqz_make of rq */
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

/* DW4_TAP on x rather than x - zx (the zero point is in D->bz), the tap's
   weights at wr, which moves on to the next tap's (GCC loads them as two
   LDR, not one LDRD, and spills around them). */
#if TT_DSP
#define DW4_TAPZ(k)                                                                                                  \
    do {                                                                                                             \
        uint32_t v_ = tt_ld32(xr + (k) * C), pa_, w0_, w1_;                                                          \
        __asm__("ldrd %[w0], %[w1], [%[wr]], #8\n\t"                                                                 \
                "sxtb16 %[pa], %[v]\n\t"                                                                             \
                "sxtb16 %[v], %[v], ror #8\n\t"                                                                      \
                "smlabb %[a0], %[pa], %[w0], %[a0]\n\t"                                                              \
                "smlatt %[a2], %[pa], %[w0], %[a2]\n\t"                                                              \
                "smlabb %[a1], %[v], %[w1], %[a1]\n\t"                                                               \
                "smlatt %[a3], %[v], %[w1], %[a3]"                                                                    \
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [v] "+r"(v_), [pa] "=&r"(pa_),         \
                  [w0] "=&r"(w0_), [w1] "=&r"(w1_), [wr] "+r"(wr)                                                    \
                : "m"(*(const uint32_t(*)[2])wr));                                                                    \
    } while (0)
#else
#define DW4_TAPZ(k)                                                                                                  \
    do {                                                                                                             \
        const uint32_t v_ = tt_ld32(xr + (k) * C);                                                                   \
        a0 += (int8_t)(v_ & 0xFFu) * lo16(wr[0]);                                                                    \
        a1 += (int8_t)((v_ >> 8) & 0xFFu) * lo16(wr[1]);                                                             \
        a2 += (int8_t)((v_ >> 16) & 0xFFu) * hi16(wr[0]);                                                            \
        a3 += (int8_t)(v_ >> 24) * hi16(wr[1]);                                                                      \
        wr += 2;                                                                                                     \
    } while (0)
#endif

/* y[0..3] = the 4 outputs q0..q3 (zero point added) clamped to [lo, hi]:
   with the DSP extension saturated to int8, packed, clamped bytewise
   (SSUB8 + SEL: max then min) and stored as one word. */
TT_INLINE void dw4_store(int8_t *y, int32_t q0, int32_t q1, int32_t q2, int32_t q3, int32_t lo, int32_t hi,
                         int full) {
#if TT_DSP
    uint32_t v = (uint32_t)__ssat(q0, 8);
    __asm__("bfi %[v], %[b], #8, #8\n\t"
            "bfi %[v], %[c], #16, #8\n\t"
            "bfi %[v], %[d], #24, #8"
            : [v] "+r"(v)
            : [b] "r"(__ssat(q1, 8)), [c] "r"(__ssat(q2, 8)), [d] "r"(__ssat(q3, 8)));
    if (!full) {
        const uint32_t l4 = 0x01010101u * (uint8_t)lo, h4 = 0x01010101u * (uint8_t)hi;
        uint32_t tmp;
        __asm__("ssub8 %[t], %[v], %[l]\n\t"
                "sel %[v], %[v], %[l]\n\t"
                "ssub8 %[t], %[v], %[h]\n\t"
                "sel %[v], %[h], %[v]"
                : [v] "+r"(v), [t] "=&r"(tmp)
                : [l] "r"(l4), [h] "r"(h4));
    }
    memcpy(y, &v, 4);
#else
    (void)full;
    y[0] = (int8_t)clamp_act(q0, lo, hi);
    y[1] = (int8_t)clamp_act(q1, lo, hi);
    y[2] = (int8_t)clamp_act(q2, lo, hi);
    y[3] = (int8_t)clamp_act(q3, lo, hi);
#endif
}

/* n outputs of 4 channels whose K x K windows lie inside the input (the
   first at xw, output at y, the next s C bytes / C outputs on), no mask,
   every channel rqz_ok: the window unrolled, requantisation SMMLA + ASR. */
TT_INLINE void dw4_lean(const dw4_t *D, const int8_t *xw, int8_t *y, uint32_t n, uint32_t K, int full) {
    const uint32_t C = D->C, WC = D->W * D->C, sC = D->s * D->C;
    const int32_t lo = full ? -128 : D->lo, hi = full ? 127 : D->hi;
    for (; n; n--, xw += sC, y += C) {
        int32_t a0 = D->bz[0], a1 = D->bz[1], a2 = D->bz[2], a3 = D->bz[3];
        const int8_t *xr = xw;
        const uint32_t *wr = D->wtab;
        for (uint32_t kh = 0; kh < K; kh++, xr += WC) {
            TT_UNROLL16
            for (uint32_t k = 0; k < K; k++) {
                DW4_TAPZ(k);
            }
        }
        dw4_store(y, rqz_apply(a0, D->z[0].mult, D->z[0].rz, D->z[0].k),
                  rqz_apply(a1, D->z[1].mult, D->z[1].rz, D->z[1].k),
                  rqz_apply(a2, D->z[2].mult, D->z[2].rz, D->z[2].k),
                  rqz_apply(a3, D->z[3].mult, D->z[3].rz, D->z[3].k), lo, hi, full);
    }
}

/* dw4_lean per kernel size (any clamp: the bytewise one costs little),
   apart from dw4_rows (whose registers it would otherwise take). */
#define DW4_K3_TAP(ld)                                                                                              \
    ld "\n\t"                                                                                                        \
    "ldrd %[w0], %[w1], [%[w]], #8\n\t"                                                                              \
    "sxtb16 %[pa], %[v]\n\t"                                                                                         \
    "sxtb16 %[v], %[v], ror #8\n\t"                                                                                  \
    "smlabb %[a0], %[pa], %[w0], %[a0]\n\t"                                                                          \
    "smlatt %[a2], %[pa], %[w0], %[a2]\n\t"                                                                          \
    "smlabb %[a1], %[v], %[w1], %[a1]\n\t"                                                                           \
    "smlatt %[a3], %[v], %[w1], %[a3]\n\t"
/* One kernel row: the taps at xr, xr + C, xr + 2 C; xr to the next row. */
#define DW4_K3_ROW                                                                                                   \
    DW4_K3_TAP("ldr %[v], [%[xr]]")                                                                                  \
    DW4_K3_TAP("ldr %[v], [%[xr], %[C]]")                                                                            \
    DW4_K3_TAP("ldr %[v], [%[xr], %[C], lsl #1]") "add %[xr], %[xr], %[WC]\n\t"

#if TT_DSP
/* dw4_lean_k3's constants, in the order its asm block reads them. */
typedef struct {
    int32_t bz[4];
    int32_t mz[8];   /* (mult, rz) of each channel */
    uint32_t k[4];
    uint32_t l4, h4; /* lo, hi in each byte (dw4_store) */
    int8_t *y;
    uint32_t n, back; /* outputs left; K W C - s C: xr back to the next window */
    const uint32_t *wtab;
} dw4_k3_k;
/* the offsets the asm block reads at */
typedef char dw4_k3_layout[offsetof(dw4_k3_k, y) == 72u && offsetof(dw4_k3_k, wtab) == 84u ? 1 : -1];
#endif

#if TT_DSP
/* dw4_lean_k3/k5/k7's set-up of their constants. */
static void dw4_lean_k_make(dw4_k3_k *K, const dw4_t *D, int8_t *y, uint32_t n, uint32_t ksize) {
    for (uint32_t i = 0; i < 4u; i++) {
        K->bz[i] = D->bz[i];
        K->mz[2u * i] = D->z[i].mult;
        K->mz[2u * i + 1u] = D->z[i].rz;
        K->k[i] = D->z[i].k;
    }
    K->l4 = 0x01010101u * (uint8_t)D->lo;
    K->h4 = 0x01010101u * (uint8_t)D->hi;
    K->y = y;
    K->n = n;
    K->back = ksize * D->W * D->C - D->s * D->C;
    K->wtab = D->wtab;
}

/* The start of an output: its biases, w at the first tap. */
#define DW4_LEAN_START                                                                                               \
    "1:\n\t"                                                                                                         \
    "ldrd %[a0], %[a1], [%[K]]\n\t"                                                                                  \
    "ldrd %[a2], %[a3], [%[K], #8]\n\t"                                                                              \
    "ldr %[w], [%[K], #84]\n\t"

/* The end of an output: rqz_apply (SMMLA, ASR), the clamp as dw4_store's,
   y and xr to the next output; back to 1 while outputs are left. Without
   the bytewise clamp when it is the int8 range (DW4_LEAN_END_FULL: SSAT
   is the whole clamp then). */
#define DW4_CLAMP8                                                                                                   \
    "ldrd %[w0], %[w1], [%[K], #64]\n\t"                                                                             \
    "ssub8 %[v], %[a0], %[w0]\n\t"                                                                                   \
    "sel %[a0], %[a0], %[w0]\n\t"                                                                                    \
    "ssub8 %[v], %[a0], %[w1]\n\t"                                                                                   \
    "sel %[a0], %[w1], %[a0]\n\t"
/* rqz_apply on the 4 sums a0..a3: SMMLA by each channel's multiplier and
   rounding-plus-zero word, then ASR by its shift (the constants at K+16..63). */
#define DW4_RQZ                                                                                                      \
    "ldrd %[w0], %[w1], [%[K], #16]\n\t"                                                                             \
    "smmla %[a0], %[a0], %[w0], %[w1]\n\t"                                                                           \
    "ldrd %[w0], %[w1], [%[K], #24]\n\t"                                                                             \
    "smmla %[a1], %[a1], %[w0], %[w1]\n\t"                                                                           \
    "ldrd %[w0], %[w1], [%[K], #32]\n\t"                                                                             \
    "smmla %[a2], %[a2], %[w0], %[w1]\n\t"                                                                           \
    "ldrd %[w0], %[w1], [%[K], #40]\n\t"                                                                             \
    "smmla %[a3], %[a3], %[w0], %[w1]\n\t"                                                                           \
    "ldrd %[w0], %[w1], [%[K], #48]\n\t"                                                                             \
    "asr %[a0], %[a0], %[w0]\n\t"                                                                                    \
    "asr %[a1], %[a1], %[w1]\n\t"                                                                                    \
    "ldrd %[w0], %[w1], [%[K], #56]\n\t"                                                                             \
    "asr %[a2], %[a2], %[w0]\n\t"                                                                                    \
    "asr %[a3], %[a3], %[w1]\n\t"

#define DW4_LEAN_END DW4_LEAN_END_C(DW4_CLAMP8)
#define DW4_LEAN_END_FULL DW4_LEAN_END_C("")
#define DW4_LEAN_END_C(clamp)                                                                                        \
    /* rqz_apply: SMMLA, ASR; the clamp as dw4_store's */                                                            \
    DW4_RQZ                                                                                                          \
    "ssat %[a0], #8, %[a0]\n\t"                                                                                      \
    "ssat %[a1], #8, %[a1]\n\t"                                                                                      \
    "ssat %[a2], #8, %[a2]\n\t"                                                                                      \
    "ssat %[a3], #8, %[a3]\n\t"                                                                                      \
    "bfi %[a0], %[a1], #8, #8\n\t"                                                                                   \
    "bfi %[a0], %[a2], #16, #8\n\t"                                                                                  \
    "bfi %[a0], %[a3], #24, #8\n\t" clamp                                                                            \
    "ldr %[w0], [%[K], #72]\n\t"                                                                                     \
    "str %[a0], [%[w0]]\n\t"                                                                                         \
    "add %[w0], %[w0], %[C]\n\t"                                                                                     \
    "str %[w0], [%[K], #72]\n\t"                                                                                     \
    "ldrd %[w0], %[w1], [%[K], #76]\n\t"                                                                             \
    "sub %[xr], %[xr], %[w1]\n\t"                                                                                    \
    "subs %[w0], %[w0], #1\n\t"                                                                                      \
    "str %[w0], [%[K], #76]\n\t"                                                                                     \
    "bne 1b"

/* Taps 3 to 6 of a kernel row: xr + 3 C = (xr + 2 C) + C, xr + 4 C, ... */
#define DW4_TAP3 DW4_K3_TAP("add %[v], %[xr], %[C], lsl #1\n\tldr %[v], [%[v], %[C]]")
#define DW4_TAP4 DW4_K3_TAP("ldr %[v], [%[xr], %[C], lsl #2]")
#define DW4_TAP5 DW4_K3_TAP("add %[v], %[xr], %[C], lsl #2\n\tldr %[v], [%[v], %[C]]")
#define DW4_TAP6 DW4_K3_TAP("add %[v], %[xr], %[C], lsl #2\n\tldr %[v], [%[v], %[C], lsl #1]")
#define DW4_TAP012                                                                                                   \
    DW4_K3_TAP("ldr %[v], [%[xr]]")                                                                                  \
    DW4_K3_TAP("ldr %[v], [%[xr], %[C]]") DW4_K3_TAP("ldr %[v], [%[xr], %[C], lsl #1]")

#define DW4_LEAN_OUTS                                                                                                \
    [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [v] "=&r"(v), [pa] "=&r"(pa), [w0] "=&r"(w0),  \
        [w1] "=&r"(w1), [w] "=&r"(w), [xr] "+r"(xr)
#define DW4_LEAN_INS [K] "r"(Kp), [C] "r"(C), [WC] "r"(WC), "m"(*Kp)
#endif

/* With the DSP extension one asm block: GCC keeps the window's pointers
   and the 12 requantisation constants on the stack and reloads them one
   at a time (141 instructions an output of 4 channels for 3x3); here they
   come in LDRD pairs (113). Same sums, requantisation and clamp as
   dw4_lean. The 3x3 window is straight-line code; 5x5 and 7x7 loop over
   their kernel rows (a counter in the one register left). */
#if TT_DSP
/* dw4_lean_k3's asm block on constants K made beforehand (K->y, K->n: its
   outputs), the first window at xw, pixels C and rows WC bytes apart. */
static TT_NOINLINE void dw4_lean_k3_run(dw4_k3_k *Kp, const int8_t *xw, uint32_t C, uint32_t WC, int full) {
    const int8_t *xr = xw;
    const uint32_t *w;
    uint32_t v, pa, w0, w1;
    int32_t a0, a1, a2, a3;
#if TT_DSP_ASM_WIDE /* the .mpy: one variant (its size) */
    if (full) {
        __asm__ volatile(DW4_LEAN_START DW4_K3_ROW DW4_K3_ROW DW4_K3_ROW DW4_LEAN_END_FULL
                         : DW4_LEAN_OUTS
                         : DW4_LEAN_INS
                         : "cc", "memory");
        return;
    }
#else
    (void)full;
#endif
    __asm__ volatile(DW4_LEAN_START DW4_K3_ROW DW4_K3_ROW DW4_K3_ROW DW4_LEAN_END
                     : DW4_LEAN_OUTS
                     : DW4_LEAN_INS
                     : "cc", "memory");
}
#endif
static TT_NOINLINE void dw4_lean_k3(const dw4_t *D, const int8_t *xw, int8_t *y, uint32_t n) {
#if TT_DSP
    dw4_k3_k K;
    if (!n) {
        return;
    }
    dw4_lean_k_make(&K, D, y, n, 3u);
    dw4_lean_k3_run(&K, xw, D->C, D->W * D->C, D->lo == -128 && D->hi == 127);
#else
    dw4_lean(D, xw, y, n, 3u, 0);
#endif
}
#if TT_DSP
/* dw4_lean_k5's asm block on constants K made beforehand (K->y, K->n: its
   outputs), the first window at xw, pixels C and rows WC bytes apart. */
static TT_NOINLINE void dw4_lean_k5_run(dw4_k3_k *Kp, const int8_t *xw, uint32_t C, uint32_t WC, int full) {
    const int8_t *xr = xw;
    const uint32_t *w;
    uint32_t v, pa, w0, w1, rows;
    int32_t a0, a1, a2, a3;
#if TT_DSP_ASM_WIDE /* the .mpy: one variant (its size) */
    if (full) {
        __asm__ volatile(DW4_LEAN_START "mov %[r], #5\n\t"
                                        "3:\n\t" DW4_TAP012 DW4_TAP3 DW4_TAP4 "add %[xr], %[xr], %[WC]\n\t"
                                        "subs %[r], %[r], #1\n\t"
                                        "bne 3b\n\t" DW4_LEAN_END_FULL
                         : DW4_LEAN_OUTS, [r] "=&r"(rows)
                         : DW4_LEAN_INS
                         : "cc", "memory");
        return;
    }
#else
    (void)full;
#endif
    __asm__ volatile(DW4_LEAN_START "mov %[r], #5\n\t"
                                    "3:\n\t" DW4_TAP012 DW4_TAP3 DW4_TAP4 "add %[xr], %[xr], %[WC]\n\t"
                                    "subs %[r], %[r], #1\n\t"
                                    "bne 3b\n\t" DW4_LEAN_END
                     : DW4_LEAN_OUTS, [r] "=&r"(rows)
                     : DW4_LEAN_INS
                     : "cc", "memory");
}
#endif
static TT_NOINLINE void dw4_lean_k5(const dw4_t *D, const int8_t *xw, int8_t *y, uint32_t n) {
#if TT_DSP
    dw4_k3_k K;
    if (!n) {
        return;
    }
    dw4_lean_k_make(&K, D, y, n, 5u);
    dw4_lean_k5_run(&K, xw, D->C, D->W * D->C, D->lo == -128 && D->hi == 127);
#else
    dw4_lean(D, xw, y, n, 5u, 0);
#endif
}
#if TT_DSP
/* dw4_lean_k7's asm block on constants K made beforehand (K->y, K->n: its
   outputs), the first window at xw, pixels C and rows WC bytes apart. */
static TT_NOINLINE void dw4_lean_k7_run(dw4_k3_k *Kp, const int8_t *xw, uint32_t C, uint32_t WC, int full) {
    const int8_t *xr = xw;
    const uint32_t *w;
    uint32_t v, pa, w0, w1, rows;
    int32_t a0, a1, a2, a3;
#if TT_DSP_ASM_WIDE /* the .mpy: one variant (its size) */
    if (full) {
        __asm__ volatile(DW4_LEAN_START "mov %[r], #7\n\t"
                                        "3:\n\t" DW4_TAP012 DW4_TAP3 DW4_TAP4 DW4_TAP5 DW4_TAP6
                                        "add %[xr], %[xr], %[WC]\n\t"
                                        "subs %[r], %[r], #1\n\t"
                                        "bne 3b\n\t" DW4_LEAN_END_FULL
                         : DW4_LEAN_OUTS, [r] "=&r"(rows)
                         : DW4_LEAN_INS
                         : "cc", "memory");
        return;
    }
#else
    (void)full;
#endif
    __asm__ volatile(DW4_LEAN_START "mov %[r], #7\n\t"
                                    "3:\n\t" DW4_TAP012 DW4_TAP3 DW4_TAP4 DW4_TAP5 DW4_TAP6
                                    "add %[xr], %[xr], %[WC]\n\t"
                                    "subs %[r], %[r], #1\n\t"
                                    "bne 3b\n\t" DW4_LEAN_END
                     : DW4_LEAN_OUTS, [r] "=&r"(rows)
                     : DW4_LEAN_INS
                     : "cc", "memory");
}
#endif
static TT_NOINLINE void dw4_lean_k7(const dw4_t *D, const int8_t *xw, int8_t *y, uint32_t n) {
#if TT_DSP
    dw4_k3_k K;
    if (!n) {
        return;
    }
    dw4_lean_k_make(&K, D, y, n, 7u);
    dw4_lean_k7_run(&K, xw, D->C, D->W * D->C, D->lo == -128 && D->hi == 127);
#else
    dw4_lean(D, xw, y, n, 7u, 0);
#endif
}

#if TT_DSP_ASM_WIDE
/* ---- the windows that reach the padding (and, with a mask, every
   window) of a group of 4 channels in one asm block: per output its kernel
   rows inside the input, each entered (TBB) at its first tap inside, so the
   taps run straight through at fixed offsets (8 instructions a tap, 9 for
   taps 3, 5, 6; 7 a kernel row; about 55 an output of 4 channels, 80 with
   a mask), where the C path of dw4_rows spends about 15 a kernel row and
   110 an output besides its taps. x - zx is SXTAB16 with (-zx, -zx); the
   requantisation and clamp are dw4_lean's (SMMLA, ASR, SSAT, bytewise
   clamp). Up to 7 x 7; 14 registers (TT_DSP_ASM_WIDE). The outputs come
   from a table made once per layer call for every group: per output
   (x offset << 12) | (first tap << 6) | (kernel rows << 3) | taps a row,
   and its element offset from y[0] at channel 0. ---- */

#define DW4_EDGE_MAX 128u /* outputs a layer call (2 words each) */

/* dw4_edge's constants and state, in the order its asm block reads them */
typedef struct {
    int32_t b[4];
    int32_t mz[8];   /* (mult, rz) of each channel */
    uint32_t k[4];
    uint32_t l4, h4; /* lo, hi in each byte (dw4_store) */
    int8_t *y;       /* the output being computed */
    uint32_t n;      /* outputs left */
    const uint32_t *tab; /* the next output's two words */
    uint32_t nc;     /* this output's taps a kernel row */
    const int8_t *xbase;   /* input row row0, column 0, channel c0 */
    const uint32_t *wbase; /* weight pairs at tap 0 */
    uint32_t xstep, wstep; /* W C; 8 KW: one kernel row on */
    int8_t *y0;      /* y[0]: the mask's element index is y - y0 */
    uint8_t *mask;   /* offset to y[0] */
    int32_t lo;
    uint32_t range;  /* hi - lo */
    int8_t *ybase;   /* y[0] at channel c0 */
} dw4_edge_k;
/* the offsets the asm block reads at */
typedef char dw4_edge_layout[offsetof(dw4_edge_k, y) == 72u && offsetof(dw4_edge_k, xbase) == 88u &&
                                     offsetof(dw4_edge_k, y0) == 104u && offsetof(dw4_edge_k, ybase) == 120u
                                 ? 1
                                 : -1];

/* Tap t of a kernel row: its input word (ld), weights at w + 8 t. */
#define DWE_TAP(ld, off)                                                                                             \
    ld "\n\t"                                                                                                        \
    "ldrd %[w0], %[w1], [%[w], #" off "]\n\t"                                                                         \
    "sxtab16 %[pa], %[nz], %[v]\n\t"                                                                                \
    "sxtab16 %[v], %[nz], %[v], ror #8\n\t"                                                                         \
    "smlabb %[a0], %[pa], %[w0], %[a0]\n\t"                                                                         \
    "smlatt %[a2], %[pa], %[w0], %[a2]\n\t"                                                                         \
    "smlabb %[a1], %[v], %[w1], %[a1]\n\t"                                                                          \
    "smlatt %[a3], %[v], %[w1], %[a3]\n\t"

/* One output a pass: its table words, the kernel rows (TBB into the taps
   at nc: taps nc - 1 .. 0 run), then rqz_apply. */
#define DWE_START                                                                                                    \
    "1:\n\t"                                                                                                         \
    "ldr %[w0], [%[K], #80]\n\t"                                                                                     \
    "ldrd %[w1], %[v], [%[w0]], #8\n\t"                                                                              \
    "str %[w0], [%[K], #80]\n\t"                                                                                     \
    "ldr %[w0], [%[K], #120]\n\t"                                                                                    \
    "add %[w0], %[w0], %[v]\n\t"                                                                                     \
    "str %[w0], [%[K], #72]\n\t"                                                                                     \
    "and %[v], %[w1], #7\n\t"                                                                                        \
    "str %[v], [%[K], #84]\n\t"                                                                                      \
    "ldrd %[xr], %[w0], [%[K], #88]\n\t"                                                                             \
    "add %[xr], %[xr], %[w1], lsr #12\n\t"                                                                           \
    "ubfx %[w], %[w1], #6, #6\n\t"                                                                                   \
    "add %[w], %[w0], %[w], lsl #3\n\t"                                                                              \
    "ubfx %[rows], %[w1], #3, #3\n\t"                                                                                \
    "ldrd %[a0], %[a1], [%[K]]\n\t"                                                                                  \
    "ldrd %[a2], %[a3], [%[K], #8]\n\t"                                                                              \
    "2:\n\t"                                                                                                         \
    "ldr %[v], [%[K], #84]\n\t"                                                                                      \
    "tbb [pc, %[v]]\n\t"                                                                                             \
    "3:\n\t"                                                                                                         \
    ".byte (4f - 3b) / 2, (40f - 3b) / 2, (41f - 3b) / 2, (42f - 3b) / 2\n\t"                                        \
    ".byte (43f - 3b) / 2, (44f - 3b) / 2, (45f - 3b) / 2, (46f - 3b) / 2\n\t"                                       \
    "46:\n\t" DWE_TAP("add %[v], %[xr], %[C], lsl #2\n\tldr %[v], [%[v], %[C], lsl #1]", "48")                       \
    "45:\n\t" DWE_TAP("add %[v], %[xr], %[C], lsl #2\n\tldr %[v], [%[v], %[C]]", "40")                              \
    "44:\n\t" DWE_TAP("ldr %[v], [%[xr], %[C], lsl #2]", "32")                                                      \
    "43:\n\t" DWE_TAP("add %[v], %[xr], %[C], lsl #1\n\tldr %[v], [%[v], %[C]]", "24")                              \
    "42:\n\t" DWE_TAP("ldr %[v], [%[xr], %[C], lsl #1]", "16")                                                      \
    "41:\n\t" DWE_TAP("ldr %[v], [%[xr], %[C]]", "8")                                                               \
    "40:\n\t" DWE_TAP("ldr %[v], [%[xr]]", "0")                                                                     \
    "4:\n\t"                                                                                                         \
    "ldrd %[w0], %[w1], [%[K], #96]\n\t"                                                                             \
    "add %[xr], %[xr], %[w0]\n\t"                                                                                    \
    "add %[w], %[w], %[w1]\n\t"                                                                                      \
    "subs %[rows], %[rows], #1\n\t"                                                                                  \
    "bne 2b\n\t"                                                                                                     \
    DW4_RQZ

/* The mask bits of the 4 outputs (q - lo <= hi - lo, unsigned: inside the
   clamp) ORed into the mask byte that holds them (idx = y - y0, a multiple
   of 4). */
#define DWE_MASK                                                                                                     \
    "ldrd %[w0], %[w1], [%[K], #112]\n\t"                                                                            \
    "mov %[pa], #0\n\t"                                                                                              \
    "sub %[v], %[a0], %[w0]\n\t"                                                                                     \
    "cmp %[v], %[w1]\n\t"                                                                                            \
    "it ls\n\t"                                                                                                      \
    "orrls %[pa], %[pa], #1\n\t"                                                                                     \
    "sub %[v], %[a1], %[w0]\n\t"                                                                                     \
    "cmp %[v], %[w1]\n\t"                                                                                            \
    "it ls\n\t"                                                                                                      \
    "orrls %[pa], %[pa], #2\n\t"                                                                                     \
    "sub %[v], %[a2], %[w0]\n\t"                                                                                     \
    "cmp %[v], %[w1]\n\t"                                                                                            \
    "it ls\n\t"                                                                                                      \
    "orrls %[pa], %[pa], #4\n\t"                                                                                     \
    "sub %[v], %[a3], %[w0]\n\t"                                                                                     \
    "cmp %[v], %[w1]\n\t"                                                                                            \
    "it ls\n\t"                                                                                                      \
    "orrls %[pa], %[pa], #8\n\t"                                                                                     \
    "ldrd %[w0], %[w1], [%[K], #104]\n\t"                                                                            \
    "ldr %[v], [%[K], #72]\n\t"                                                                                      \
    "sub %[v], %[v], %[w0]\n\t"                                                                                      \
    "and %[w0], %[v], #4\n\t"                                                                                        \
    "lsl %[pa], %[pa], %[w0]\n\t"                                                                                    \
    "add %[w1], %[w1], %[v], lsr #3\n\t"                                                                             \
    "ldrb %[v], [%[w1]]\n\t"                                                                                         \
    "orr %[v], %[v], %[pa]\n\t"                                                                                      \
    "strb %[v], [%[w1]]\n\t"

/* The clamp as dw4_store's (SSAT alone for the int8 range: DWE_END_FULL),
   the store; back to 1 while outputs are left. */
#define DWE_END DWE_END_C(DW4_CLAMP8)
#define DWE_END_FULL DWE_END_C("")
#define DWE_END_C(clamp)                                                                                             \
    "ssat %[a0], #8, %[a0]\n\t"                                                                                      \
    "ssat %[a1], #8, %[a1]\n\t"                                                                                      \
    "ssat %[a2], #8, %[a2]\n\t"                                                                                      \
    "ssat %[a3], #8, %[a3]\n\t"                                                                                      \
    "bfi %[a0], %[a1], #8, #8\n\t"                                                                                   \
    "bfi %[a0], %[a2], #16, #8\n\t"                                                                                  \
    "bfi %[a0], %[a3], #24, #8\n\t" clamp                                                                            \
    "ldrd %[w0], %[w1], [%[K], #72]\n\t"                                                                             \
    "str %[a0], [%[w0]]\n\t"                                                                                         \
    "subs %[w1], %[w1], #1\n\t"                                                                                      \
    "str %[w1], [%[K], #76]\n\t"                                                                                     \
    "bne 1b"

#define DWE_OUTS                                                                                                     \
    [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [v] "=&r"(v), [pa] "=&r"(pa), [w0] "=&r"(w0),  \
        [w1] "=&r"(w1), [w] "=&r"(w), [xr] "=&r"(xr), [rows] "=&r"(rows)
#define DWE_INS [K] "r"(E), [C] "r"(C), [nz] "r"(nz), "m"(*E)

/* E->n >= 1 outputs from E->tab on; full: the clamp is the int8 range. */
static TT_NOINLINE void dw4_edge(dw4_edge_k *E, uint32_t C, uint32_t nz, int full) {
    uint32_t v, pa, w0, w1, rows;
    const uint32_t *w;
    const int8_t *xr;
    int32_t a0, a1, a2, a3;
    if (full) {
        __asm__ volatile(DWE_START DWE_END_FULL : DWE_OUTS : DWE_INS : "cc", "memory");
    } else {
        __asm__ volatile(DWE_START DWE_END : DWE_OUTS : DWE_INS : "cc", "memory");
    }
}
static TT_NOINLINE void dw4_edge_mask(dw4_edge_k *E, uint32_t C, uint32_t nz, int full) {
    uint32_t v, pa, w0, w1, rows;
    const uint32_t *w;
    const int8_t *xr;
    int32_t a0, a1, a2, a3;
    if (full) {
        __asm__ volatile(DWE_START DWE_MASK DWE_END_FULL : DWE_OUTS : DWE_INS : "cc", "memory");
    } else {
        __asm__ volatile(DWE_START DWE_MASK DWE_END : DWE_OUTS : DWE_INS : "cc", "memory");
    }
}

/* dw4_edge's table of the outputs of rows [R oh0, oh1) that do not run as
   dw4_lean (lean: the whole windows of whole kernel rows do, as dw4_rows
   has them), their count in *count; 0 when they are more than
   DW4_EDGE_MAX, a kernel is larger than 7 x 7 or a window has no tap inside. */
static int dw4_edge_table(const dw4_t *D, int lean, uint32_t *tab, uint32_t *count) {
    const uint32_t s = D->s, KW = D->KW, KH = D->KH, C = D->C, W = D->W;
    const uint32_t olo = (D->pl + s - 1u) / s;
    const uint32_t nin = W + D->pl >= KW ? (W + D->pl - KW) / s + 1u : 0u;
    const uint32_t ohi = nin < D->OW ? nin : D->OW;
    uint32_t n = 0;
    if (KW > 7u || KH > 7u) {
        return 0;
    }
    for (uint32_t oh = D->oh0; oh < D->oh1; oh++) {
        const int32_t ih0 = (int32_t)(oh * s) - (int32_t)D->pt;
        const uint32_t kh0 = ih0 < 0 ? (uint32_t)-ih0 : 0u;
        const int32_t kh1 = (int32_t)KH < (int32_t)D->H - ih0 ? (int32_t)KH : (int32_t)D->H - ih0;
        const int whole = lean && kh0 == 0u && kh1 == (int32_t)KH;
        if (kh1 <= (int32_t)kh0) {
            return 0;
        }
        for (uint32_t ow = 0; ow < D->OW; ow++) {
            const int32_t iw0 = (int32_t)(ow * s) - (int32_t)D->pl;
            const uint32_t kw0 = iw0 < 0 ? (uint32_t)-iw0 : 0u;
            const int32_t kw1 = (int32_t)KW < (int32_t)W - iw0 ? (int32_t)KW : (int32_t)W - iw0;
            if (whole && ow == olo && ohi > olo) {
                ow = ohi - 1u;
                continue;
            }
            const uint32_t xoff =
                ((uint32_t)(ih0 + (int32_t)kh0 - (int32_t)D->row0) * W + (uint32_t)(iw0 + (int32_t)kw0)) * C;
            if (kw1 <= (int32_t)kw0 || n == DW4_EDGE_MAX || xoff >= 1u << 20) {
                return 0;
            }
            tab[2u * n] = xoff << 12 | ((kh0 * KW + kw0) << 6) | (((uint32_t)kh1 - kh0) << 3) | ((uint32_t)kw1 - kw0);
            tab[2u * n + 1u] = ((oh - D->oh0) * D->OW + ow) * C;
            n++;
        }
    }
    *count = n;
    return 1;
}

static void dw4_regroup(uint32_t *wtab, const int8_t *const *w, uint32_t kk, uint32_t *s02, uint32_t *s13);
static void dw4_regroup9(uint32_t *wtab, const int8_t *const *w, uint32_t *s02, uint32_t *s13);

/* Every shift of the layer in [33, 54]: each channel rqz_ok. */
static int dw4_rqz_layer(const tt_fwd_params *P, uint32_t C) {
    for (uint32_t c = 0; c < C; c++) {
        if (P->shift[c] < 33 || P->shift[c] > 54) {
            return 0;
        }
    }
    return 1;
}

/* dwconv4's groups of 4 channels when every channel is rqz_ok and
   dw4_edge_table made the table (nedge outputs): per group only what
   differs is made (biases, requantisation constants, the regrouped weights
   in wtab); the outputs of the table run as dw4_edge, the whole windows of
   whole kernel rows (lean: D's geometry allows dw4_lean) as dw4_lean. About
   400 instructions a group less than the general path, which a fused op
   pays at every row unless prep holds what differs, made once
   (tt_dwconv_prep: per group the regrouped taps, then b, mz, k as in E
   and bz). */
static TT_NOINLINE void dw4_groups_edge(const dw4_t *D, const tt_fwd_params *P, const tt_layer_rec *L, uint32_t *wtab,
                                        const uint32_t *tab, uint32_t nedge, int lean, const uint32_t *prep) {
    const uint32_t C = D->C, W = D->W, KW = D->KW, kk = KW * D->KH, s = D->s;
    const uint32_t nz = pack16(-D->zx, -D->zx);
    const uint32_t olo = (D->pl + s - 1u) / s;
    const uint32_t nin = W + D->pl >= KW ? (W + D->pl - KW) / s + 1u : 0u;
    const uint32_t ohi = nin < D->OW ? nin : D->OW;
    void (*run)(dw4_k3_k *, const int8_t *, uint32_t, uint32_t, int) =
        KW == 3u ? dw4_lean_k3_run : KW == 5u ? dw4_lean_k5_run : dw4_lean_k7_run;
    const int full = D->lo == -128 && D->hi == 127;
    dw4_edge_k E;
    dw4_k3_k K;
    E.l4 = K.l4 = 0x01010101u * (uint8_t)D->lo;
    E.h4 = K.h4 = 0x01010101u * (uint8_t)D->hi;
    E.xstep = W * C;
    E.wstep = 8u * KW;
    E.y0 = D->y;
    E.mask = D->mask;
    E.lo = D->lo;
    E.range = (uint32_t)(D->hi - D->lo);
    K.back = KW * W * C - s * C;
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const int8_t *w[4];
        uint32_t s02 = 0, s13 = 0; /* the taps' sums, channels (c0, c0 + 2), (c0 + 1, c0 + 3) */
        if (prep) {
            const uint32_t *g = prep + c0 / 4u * TT_PREP_DW_GROUP_WORDS(kk);
            memcpy(E.b, g + 2u * kk, 16u * 4u); /* b, mz, k */
            memcpy(K.mz, g + 2u * kk + 4u, 12u * 4u);
            memcpy(K.bz, g + 2u * kk + 16u, 4u * 4u);
            E.wbase = K.wtab = g;
        } else {
            E.wbase = K.wtab = wtab;
        }
        for (uint32_t i = 0; !prep && i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            const uint32_t k = (uint32_t)P->shift[j] - 32u; /* rqz_make: rz = 2^(k - 1) + zy 2^k */
            w[i] = tt_dw_taps(P, L, j, kk);
            E.b[i] = tt_bias_at(P, j);
            E.mz[2u * i] = K.mz[2u * i] = P->mult[j];
            E.mz[2u * i + 1u] = K.mz[2u * i + 1u] = (int32_t)((1u << (k - 1u)) + ((uint32_t)D->zy << k));
            E.k[i] = K.k[i] = k;
        }
        if (prep) {
        } else if (kk == 9u) {
            dw4_regroup9(wtab, w, &s02, &s13);
        } else {
            dw4_regroup(wtab, w, kk, &s02, &s13);
        }
        if (nedge) {
            E.n = nedge;
            E.tab = tab;
            E.xbase = D->x + c0;
            E.ybase = D->y + c0;
            if (D->mask) {
                dw4_edge_mask(&E, C, nz, full);
            } else {
                dw4_edge(&E, C, nz, full);
            }
        }
        if (lean) {
            if (!prep) { /* |sum| <= 64 * 128: the 16-bit lanes hold it */
                K.bz[0] = E.b[0] - D->zx * lo16(s02);
                K.bz[1] = E.b[1] - D->zx * lo16(s13);
                K.bz[2] = E.b[2] - D->zx * hi16(s02);
                K.bz[3] = E.b[3] - D->zx * hi16(s13);
            }
            for (uint32_t oh = D->oh0; oh < D->oh1; oh++) {
                const int32_t ih0 = (int32_t)(oh * s) - (int32_t)D->pt;
                if (ih0 >= 0 && ih0 + (int32_t)D->KH <= (int32_t)D->H) {
                    K.y = D->y + ((oh - D->oh0) * D->OW + olo) * C + c0;
                    K.n = ohi - olo;
                    run(&K, D->x + (uint32_t)(ih0 - (int32_t)D->row0) * W * C + c0 + (olo * s - D->pl) * C, C, W * C,
                        full);
                }
            }
        }
    }
}
#endif

/* Output rows of 4 channels; kfull: the kernel width where it counts as a
   constant (a full kernel row is then straight-line code), fast and full as
   in im2col_channels (tt_conv_opt.c). */
TT_INLINE void dw4_rows(const dw4_t *D, uint32_t kfull, int fast, int full) {
    const uint32_t C = D->C, W = D->W, KW = D->KW, s = D->s;
    const int32_t zx = D->zx, zy = D->zy, lo = full ? -128 : D->lo, hi = full ? 127 : D->hi;
#if TT_DSP
    const uint32_t nz = pack16(-zx, -zx);
#endif
    /* outputs [olo, ohi) of a row whose windows are whole go to dw4_lean
       when there are a few of them */
    const uint32_t olo = (D->pl + s - 1u) / s;
    const uint32_t nin = W + D->pl >= KW ? (W + D->pl - KW) / s + 1u : 0u;
    const uint32_t ohi = nin < D->OW ? nin : D->OW;
    const int lean_cols = fast && kfull == KW && (kfull == 3u || kfull == 5u || kfull == 7u) && D->lean;
    for (uint32_t oh = D->oh0; oh < D->oh1; oh++) {
        const int32_t ih0 = (int32_t)(oh * s) - (int32_t)D->pt;
        const uint32_t kh0 = ih0 < 0 ? (uint32_t)-ih0 : 0u;
        const uint32_t kh1 = (int32_t)D->KH < (int32_t)D->H - ih0 ? D->KH : (uint32_t)((int32_t)D->H - ih0);
        uint32_t idx = (oh - D->oh0) * D->OW * C + D->c0;
        /* the window's first input row inside the input, at channel c0 */
        const int8_t *xrow = D->x + (uint32_t)(ih0 + (int32_t)kh0 - (int32_t)D->row0) * W * C + D->c0;
        const int lean = lean_cols && kh0 == 0u && kh1 == D->KH;
        for (uint32_t ow = 0; ow < D->OW; ow++, idx += C) {
            if (lean && ow == olo) {
                const int8_t *xw = xrow + (olo * s - D->pl) * C;
                void (*run)(const dw4_t *, const int8_t *, int8_t *, uint32_t) =
                    kfull == 3u ? dw4_lean_k3 : kfull == 5u ? dw4_lean_k5 : dw4_lean_k7;
                run(D, xw, D->y + idx, ohi - olo);
                idx += (ohi - olo - 1u) * C;
                ow = ohi - 1u;
                continue;
            }
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
#if TT_DSP
            if (fast && D->zok) { /* SMMLA + ASR: rq_fast + zy, as in dw4_lean */
                q0 = rqz_apply(a0, D->z[0].mult, D->z[0].rz, D->z[0].k);
                q1 = rqz_apply(a1, D->z[1].mult, D->z[1].rz, D->z[1].k);
                q2 = rqz_apply(a2, D->z[2].mult, D->z[2].rz, D->z[2].k);
                q3 = rqz_apply(a3, D->z[3].mult, D->z[3].rz, D->z[3].k);
            } else
#endif
            if (fast) {
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

/* Every shift >= 33, per kernel width, with the int8 clamp (full) or
   another (a ReLU's). */
static TT_NOINLINE void dw4_rows_k3_fast_full(const dw4_t *D) {
    dw4_rows(D, 3u, 1, 1);
}
static TT_NOINLINE void dw4_rows_k5_fast_full(const dw4_t *D) {
    dw4_rows(D, 5u, 1, 1);
}
static TT_NOINLINE void dw4_rows_k7_fast_full(const dw4_t *D) {
    dw4_rows(D, 7u, 1, 1);
}
static TT_NOINLINE void dw4_rows_k3_fast(const dw4_t *D) {
    dw4_rows(D, 3u, 1, 0);
}
static TT_NOINLINE void dw4_rows_k5_fast(const dw4_t *D) {
    dw4_rows(D, 5u, 1, 0);
}
static TT_NOINLINE void dw4_rows_k7_fast(const dw4_t *D) {
    dw4_rows(D, 7u, 1, 0);
}
static TT_NOINLINE void dw4_rows_any(const dw4_t *D) {
    dw4_rows(D, D->KW, 0, 0);
}

#if TT_DSP
/* wtab[2 tap], wtab[2 tap + 1] = (w0, w2), (w1, w3) at each tap (and their
   sums over the taps in 16-bit lanes into s02, s13), 4 taps of
   the 4 channels at a time from word loads: SXTB16 gives taps (t, t + 2)
   and (t + 1, t + 3) of a channel, PKHBT / PKHTB pair two channels' (6
   instructions a tap where the byte loads take 13; a fused op's rows each
   do this again). */
TT_INLINE void dw4_regroup_body(uint32_t *wtab, const int8_t *const *w, uint32_t kk, uint32_t *s02,
                                uint32_t *s13) {
    const int8_t *w0 = w[0], *w1 = w[1], *w2 = w[2], *w3 = w[3];
    uint32_t tap = 0, t02 = 0, t13 = 0;
    for (; tap + 4u <= kk; tap += 4u, wtab += 8) {
        const uint32_t u0 = tt_ld32(w0 + tap), u1 = tt_ld32(w1 + tap), u2 = tt_ld32(w2 + tap),
                       u3 = tt_ld32(w3 + tap);
        const uint32_t a0 = tt_widen02(u0), a1 = tt_widen02(u1), a2 = tt_widen02(u2), a3 = tt_widen02(u3);
        const uint32_t b0 = tt_widen13(u0), b1 = tt_widen13(u1), b2 = tt_widen13(u2), b3 = tt_widen13(u3);
        wtab[0] = tt_pkhbt(a0, a2); /* tap t */
        wtab[1] = tt_pkhbt(a1, a3);
        wtab[2] = tt_pkhbt(b0, b2); /* t + 1 */
        wtab[3] = tt_pkhbt(b1, b3);
        wtab[4] = tt_pkhtb(a0, a2); /* t + 2 */
        wtab[5] = tt_pkhtb(a1, a3);
        wtab[6] = tt_pkhtb(b0, b2); /* t + 3 */
        wtab[7] = tt_pkhtb(b1, b3);
        t02 = (uint32_t)__sadd16((int32_t)t02, __sadd16((int32_t)wtab[0], (int32_t)wtab[2]));
        t02 = (uint32_t)__sadd16((int32_t)t02, __sadd16((int32_t)wtab[4], (int32_t)wtab[6]));
        t13 = (uint32_t)__sadd16((int32_t)t13, __sadd16((int32_t)wtab[1], (int32_t)wtab[3]));
        t13 = (uint32_t)__sadd16((int32_t)t13, __sadd16((int32_t)wtab[5], (int32_t)wtab[7]));
    }
    for (; tap < kk; tap++, wtab += 2) {
        wtab[0] = pack16(w0[tap], w2[tap]);
        wtab[1] = pack16(w1[tap], w3[tap]);
        t02 = (uint32_t)__sadd16((int32_t)t02, (int32_t)wtab[0]);
        t13 = (uint32_t)__sadd16((int32_t)t13, (int32_t)wtab[1]);
    }
    *s02 = t02;
    *s13 = t13;
}
static TT_NOINLINE void dw4_regroup(uint32_t *wtab, const int8_t *const *w, uint32_t kk, uint32_t *s02,
                                    uint32_t *s13) {
    dw4_regroup_body(wtab, w, kk, s02, s13);
}
#if TT_DSP_ASM_WIDE
/* 3 x 3 (dw4_groups_edge): the loop unrolled (two words and a byte a channel) */
static TT_NOINLINE void dw4_regroup9(uint32_t *wtab, const int8_t *const *w, uint32_t *s02, uint32_t *s13) {
    dw4_regroup_body(wtab, w, 9u, s02, s13);
}
#endif
#endif

static int dwconv4(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    uint32_t wtab[2u * DW4_MAX_TAPS];
#if TT_DSP_ASM_WIDE
    uint32_t tab[2u * DW4_EDGE_MAX];
    uint32_t nedge = 0;
#endif
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const uint32_t C = out->c, kk = (uint32_t)L->kh * L->kw;
    const int fast = R->prep || tt_fast_layer(m, L, C), full = tt_full_range(L); /* tt_dwconv_prep checked */
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
    /* dw4_lean may run: rows with a few whole windows (dw4_rows), no mask */
    const uint32_t olo = (D.pl + D.s - 1u) / D.s, nin = D.W + D.pl >= D.KW ? (D.W + D.pl - D.KW) / D.s + 1u : 0u;
    const int geo = !mask && fast && D.KW == D.KH && (D.KW == 3u || D.KW == 5u || D.KW == 7u) &&
                    (nin < D.OW ? nin : D.OW) >= olo + 4u;
#if TT_DSP_ASM_WIDE
    if (fast && (R->prep || dw4_rqz_layer(&P, C)) && dw4_edge_table(&D, geo, tab, &nedge)) {
        dw4_groups_edge(&D, &P, L, wtab, tab, nedge, geo, R->prep);
        return 1;
    }
#endif
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const int8_t *w[4];
        uint32_t s02 = 0, s13 = 0; /* the taps' sums, channels (c0, c0 + 2), (c0 + 1, c0 + 3) */
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            w[i] = tt_dw_taps(&P, L, j, kk);
            D.b[i] = tt_bias_at(&P, j);
            D.rq[i] = rq_make(P.mult[j], P.shift[j]);
        }
#if TT_DSP
        dw4_regroup(wtab, w, kk, &s02, &s13);
#else
        for (uint32_t tap = 0; tap < kk; tap++) {
            wtab[2u * tap] = pack16(w[0][tap], w[2][tap]);
            wtab[2u * tap + 1u] = pack16(w[1][tap], w[3][tap]);
        }
#endif
        D.lean = geo;
        D.zok = fast;
        for (uint32_t i = 0; i < 4u; i++) {
            D.z[i] = rqz_make(&D.rq[i], D.zy);
            D.zok = D.zok && rqz_ok(&D.rq[i]);
        }
        if (geo) { /* |sum| <= 64 * 128: the 16-bit lanes hold it */
#if !TT_DSP /* dw4_regroup summed them */
            for (uint32_t tap = 0; tap < kk; tap++) {
                s02 = pack16(lo16(s02) + lo16(wtab[2u * tap]), hi16(s02) + hi16(wtab[2u * tap]));
                s13 = pack16(lo16(s13) + lo16(wtab[2u * tap + 1u]), hi16(s13) + hi16(wtab[2u * tap + 1u]));
            }
#endif
            D.bz[0] = D.b[0] - D.zx * lo16(s02);
            D.bz[1] = D.b[1] - D.zx * lo16(s13);
            D.bz[2] = D.b[2] - D.zx * hi16(s02);
            D.bz[3] = D.b[3] - D.zx * hi16(s13);
            D.lean = D.lean && D.zok;
        }
        D.c0 = c0;
        if (fast && full && D.KW == 3u) {
            dw4_rows_k3_fast_full(&D);
        } else if (fast && full && D.KW == 5u) {
            dw4_rows_k5_fast_full(&D);
        } else if (fast && full && D.KW == 7u) {
            dw4_rows_k7_fast_full(&D);
        } else if (fast && D.KW == 3u) {
            dw4_rows_k3_fast(&D);
        } else if (fast && D.KW == 5u) {
            dw4_rows_k5_fast(&D);
        } else if (fast && D.KW == 7u) {
            dw4_rows_k7_fast(&D);
        } else {
            dw4_rows_any(&D);
        }
    }
    return 1;
}

int tt_dwconv_prep(tt_trainer *t, const tt_layer_rec *L, uint32_t *dst) {
#if TT_DSP_ASM_WIDE
    const tt_model *m = &t->model;
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const uint32_t C = tt_tensor(m, L->out)->c, kk = (uint32_t)L->kh * L->kw;
    const int32_t zx = tt_tensor(m, L->in)->zero, zy = tt_tensor(m, L->out)->zero;
    /* dw4_groups_edge's case: no perm, C a multiple of 4, every channel rqz_ok */
    if (!tt_prep_bytes(m, L) || P.perm || !tt_fast_layer(m, L, C) || !dw4_rqz_layer(&P, C)) {
        return 0;
    }
    for (uint32_t c0 = 0; c0 < C; c0 += 4u, dst += TT_PREP_DW_GROUP_WORDS(kk)) {
        const int8_t *w[4];
        uint32_t s02 = 0, s13 = 0;
        int32_t *b = (int32_t *)(void *)(dst + 2u * kk), *mz = b + 4, *bz = b + 16;
        uint32_t *k = dst + 2u * kk + 12u;
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i;
            k[i] = (uint32_t)P.shift[j] - 32u;
            w[i] = tt_dw_taps(&P, L, j, kk);
            b[i] = tt_bias_at(&P, j);
            mz[2u * i] = P.mult[j];
            mz[2u * i + 1u] = (int32_t)((1u << (k[i] - 1u)) + ((uint32_t)zy << k[i]));
        }
        if (kk == 9u) {
            dw4_regroup9(dst, w, &s02, &s13);
        } else {
            dw4_regroup(dst, w, kk, &s02, &s13);
        }
        bz[0] = b[0] - zx * lo16(s02);
        bz[1] = b[1] - zx * lo16(s13);
        bz[2] = b[2] - zx * hi16(s02);
        bz[3] = b[3] - zx * hi16(s13);
    }
    return 1;
#else
    (void)t;
    (void)L;
    (void)dst;
    return 0;
#endif
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
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const uint16_t *perm = P.perm;
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
        const int8_t *w = tt_dw_taps(&P, L, j, kk);
        const int32_t b = tt_bias_at(&P, c);
        const rq_t rq = rq_make(P.mult[c], P.shift[c]);
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
    if (!tt_mask_at(R, (uint32_t)out->w * out->c, &mask)) {
        return 0;
    }
#if TT_HOST_SIMD
    if (tt_host_dwconv(t, L, R, mask)) {
        return 1;
    }
#endif
    return dwconv4(t, L, R, mask) || dwconv_rows(t, L, R, mask);
}

#else
typedef int tt_depthwise_opt_unused; /* ISO C: a translation unit is not empty */
#endif
