/*
 * Depthwise input gradient, optimised (selected by TT_OPTIMIZED and
 * TT_OPT_DEPTHWISE, see tt_opt.h; the reference is tt_depthwise.c's). Same
 * results as the reference bit for bit (integer sums reordered only).
 *
 * 4 channels at a time when there is no perm and C is a multiple of 4
 * (SMLABB/SMLATT, int32; in one pass, tt_g16_run, unless written in place),
 * else per channel; the taps that reach each input row and column worked
 * out once per layer (with TT_DSP_ASM_WIDE an input row in one asm block,
 * dwig_row).
 */
#include <stddef.h>
#include "tt_opt.h"

#if TT_OPT_DEPTHWISE

#define DW_MAX_SIDE 256u
#define DW_MAX_TAPS 64u

/* For input index i: the kernel taps k = first, first + s, ... (n of them)
   that reach it, from output index o = (i + pad - k) / s = ofirst, ofirst - 1, ... */
static void dw_taps(uint32_t i, uint32_t pad, uint32_t s, uint32_t ksize, uint32_t on, uint8_t *first, uint8_t *n,
                    uint16_t *ofirst) {
    const int32_t tt = (int32_t)(i + pad);
    int32_t lo = tt - (int32_t)(s * (on - 1u)), hi = tt < (int32_t)ksize - 1 ? tt : (int32_t)ksize - 1;
    lo = lo < 0 ? 0 : lo;
    lo += (int32_t)((uint32_t)(tt - lo) % s); /* same residue as tt */
    if (lo > hi) {
        *first = 0;
        *n = 0;
        *ofirst = 0;
        return;
    }
    *first = (uint8_t)lo;
    *n = (uint8_t)((uint32_t)(hi - lo) / s + 1u);
    *ofirst = (uint16_t)((uint32_t)(tt - lo) / s);
}

static int dw_input_grad(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
    uint8_t hf[DW_MAX_SIDE], hn[DW_MAX_SIDE], wfst[DW_MAX_SIDE], wn[DW_MAX_SIDE];
    uint16_t ho[DW_MAX_SIDE], wo[DW_MAX_SIDE];
    int32_t wk[DW_MAX_TAPS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = tt_perm_of(m, L);
    const uint32_t C = in->c, H = in->h, W = in->w, OW = out->w, KW = L->kw, kk = (uint32_t)L->kh * L->kw;
    const uint32_t s = L->stride;
    if (H > DW_MAX_SIDE || W > DW_MAX_SIDE || kk > DW_MAX_TAPS) {
        return 0;
    }
    for (uint32_t i = 0; i < H; i++) {
        dw_taps(i, L->pad_top, s, L->kh, out->h, &hf[i], &hn[i], &ho[i]);
    }
    for (uint32_t i = 0; i < W; i++) {
        dw_taps(i, L->pad_left, s, L->kw, OW, &wfst[i], &wn[i], &wo[i]);
    }
    for (uint32_t j = 0; j < C; j++) {
        const uint32_t c = perm ? perm[j] : j;
        const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
        for (uint32_t i = 0; i < kk; i++) {
            wk[i] = w[i];
        }
        for (uint32_t ih = 0; ih < H; ih++) {
            for (uint32_t iw = 0; iw < W; iw++) {
                int64_t acc = 0;
                for (uint32_t a = 0; a < hn[ih]; a++) {
                    const int32_t *wr = wk + (hf[ih] + a * s) * KW + wfst[iw];
                    const int16_t *gr = g + ((ho[ih] - a) * OW + wo[iw]) * C + c;
                    for (uint32_t b = 0; b < wn[iw]; b++) {
                        acc += (int64_t)wr[b * s] * gr[0];
                        gr -= C;
                    }
                }
                tt_g16_put(dx, (ih * W + iw) * C + c, acc);
            }
        }
    }
    return 1;
}

/* Depthwise input gradient, 4 channels at a time (no perm, C a multiple
   of 4): the int16 gradients of 4 channels are two words, their weights
   regrouped per tap on the stack as pairs (w[c][tap], w[c+1][tap]);
   SMLABB/SMLATT into int32 (|sum| < 128 * 32767 * 64 < 2^29). The taps
   reaching an input row / column are worked out once per layer, as in
   dw_input_grad. The max pass keeps the OR of the magnitudes: its bit length
   and zero-ness are the maximum's, all to16 asks of it. */
static inline int32_t smlabb_c(uint32_t a, uint32_t b, int32_t acc) {
#if TT_DSP
    return __smlabb((int32_t)a, (int32_t)b, acc);
#else
    return acc + lo16(a) * lo16(b);
#endif
}
static inline int32_t smlatt_c(uint32_t a, uint32_t b, int32_t acc) {
#if TT_DSP
    return __smlatt((int32_t)a, (int32_t)b, acc);
#else
    return acc + hi16(a) * hi16(b);
#endif
}

static inline uint32_t abs32(int32_t v) {
    return v < 0 ? (uint32_t)-v : (uint32_t)v;
}

/* d[0..3] = tt_g16_run_val32(a_i, e), as two pairs (tt_g16_store2). */
TT_INLINE void store_g16x4(int16_t *d, int32_t a0, int32_t a1, int32_t a2, int32_t a3, uint32_t e) {
    tt_g16_store2(d, a0, a1, e);
    tt_g16_store2(d + 2, a2, a3, e);
}

#if TT_DSP_ASM_WIDE
/* dw_input_grad_c4's sums a0..a3 of one pixel: K->rows kernel rows of
   K->wn taps each (both >= 1), from gradient gp and weight pair wp on, in
   one asm block (written into the caller's variables: no array on the stack):
   per tap 2 LDRD, 4 SMLABB/SMLATT (13 instructions GCC made of it, 10 here,
   the kernel-row and pixel set-up as few). Steps in bytes: a tap moves g
   back gs and w on 8 s; a kernel row moves g back K->grs and w on K->wrs. */
typedef struct {
    uint32_t grs, wrs;
    uint32_t wn, rows; /* taps a row; kernel rows left */
} dwig_k;

#define DWIG_ASM(wstep)                                                                                              \
    __asm__ volatile("mov %[a0], #0\n\t"                                                                             \
                     "mov %[a1], #0\n\t"                                                                             \
                     "mov %[a2], #0\n\t"                                                                             \
                     "mov %[a3], #0\n\t"                                                                             \
                     "2:\n\t"                                                                                        \
                     "mov %[gq], %[gp]\n\t"                                                                          \
                     "mov %[wq], %[wp]\n\t"                                                                          \
                     "ldr %[n], %[kwn]\n\t"                                                                          \
                     "1:\n\t"                                                                                        \
                     "ldrd %[g0], %[g1], [%[gq]]\n\t"                                                                \
                     "ldrd %[w0], %[w1], [%[wq]], #" wstep "\n\t"                                                    \
                     "sub %[gq], %[gq], %[gs]\n\t"                                                                   \
                     "smlabb %[a0], %[g0], %[w0], %[a0]\n\t"                                                         \
                     "smlatt %[a1], %[g0], %[w0], %[a1]\n\t"                                                         \
                     "smlabb %[a2], %[g1], %[w1], %[a2]\n\t"                                                         \
                     "smlatt %[a3], %[g1], %[w1], %[a3]\n\t"                                                         \
                     "subs %[n], %[n], #1\n\t"                                                                       \
                     "bne 1b\n\t"                                                                                    \
                     "ldrd %[g0], %[g1], %[kgrs]\n\t"                                                                \
                     "sub %[gp], %[gp], %[g0]\n\t"                                                                   \
                     "add %[wp], %[wp], %[g1]\n\t"                                                                   \
                     "ldr %[n], %[krows]\n\t"                                                                        \
                     "subs %[n], %[n], #1\n\t"                                                                       \
                     "str %[n], %[krows]\n\t"                                                                        \
                     "bne 2b"                                                                                        \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [g0] "=&r"(g0),               \
                       [g1] "=&r"(g1), [w0] "=&r"(w0), [w1] "=&r"(w1), [gq] "=&r"(gq), [wq] "=&r"(wq), [n] "=&r"(n), \
                       [gp] "+r"(gp), [wp] "+r"(wp), [krows] "+m"(Kp->rows)                                            \
                     : [gs] "r"(gs), [kwn] "m"(Kp->wn), [kgrs] "m"(Kp->grs), "m"(*Kp)                                  \
                     : "cc", "memory")

#endif

static int dw_input_grad_c4(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx,
                            tt_g16_run *r) {
    uint8_t hf[DW_MAX_SIDE], hn[DW_MAX_SIDE], wfst[DW_MAX_SIDE], wn[DW_MAX_SIDE];
    uint16_t ho[DW_MAX_SIDE], wo[DW_MAX_SIDE];
    uint32_t wtab[DW_MAX_TAPS * 2u];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint32_t C = in->c, H = in->h, W = in->w, OW = out->w, KW = L->kw, kk = (uint32_t)L->kh * L->kw;
    const uint32_t s = L->stride, e = dx ? dx->e : 0u;
    int16_t *d = dx ? dx->dx : r->dx;
    uint32_t seen = 0;
    /* one pass: r->lim as 32 bits (the magnitudes here are below 2^31), r->e */
    uint32_t lim = r ? (r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim) : 0u, er = r ? r->e : 0u;
    if (L->perm_off != TT_NO_OFFSET || C % 4u || H > DW_MAX_SIDE || W > DW_MAX_SIDE || kk > DW_MAX_TAPS) {
        return 0;
    }
    for (uint32_t i = 0; i < H; i++) {
        dw_taps(i, L->pad_top, s, L->kh, out->h, &hf[i], &hn[i], &ho[i]);
    }
    for (uint32_t i = 0; i < W; i++) {
        dw_taps(i, L->pad_left, s, L->kw, OW, &wfst[i], &wn[i], &wo[i]);
    }
#if TT_DSP_ASM_WIDE
    dwig_k K;
    K.grs = 2u * OW * C;
    K.wrs = 8u * s * KW;
#endif
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const int8_t *w[4];
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            w[i] = j < L->n_train ? wt + j * kk : wf + j * kk;
        }
        for (uint32_t tap = 0; tap < kk; tap++) {
            wtab[2u * tap] = pack16(w[0][tap], w[1][tap]);
            wtab[2u * tap + 1u] = pack16(w[2][tap], w[3][tap]);
        }
        for (uint32_t ih = 0; ih < H; ih++) { /* rows in increasing order (in-place backward) */
            uint32_t dp = ih * W * C + c0;
            for (uint32_t iw = 0; iw < W; iw++, dp += C) {
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#if TT_DSP_ASM_WIDE
                if ((s == 1u || s == 2u) && hn[ih] && wn[iw]) {
                    const uint32_t *gp = (const uint32_t *)(const void *)(g + (ho[ih] * OW + wo[iw]) * C + c0);
                    const uint32_t *wp = wtab + (hf[ih] * KW + wfst[iw]) * 2u, *gq, *wq;
                    const uint32_t gs = 2u * C;
                    dwig_k *const Kp = &K;
                    uint32_t g0, g1, w0, w1, n;
                    K.wn = wn[iw];
                    K.rows = hn[ih];
                    if (s == 1u) {
                        DWIG_ASM("8");
                    } else {
                        DWIG_ASM("16");
                    }
                } else
#endif
                for (uint32_t a = 0; a < hn[ih]; a++) {
                    const uint32_t *wp = wtab + ((hf[ih] + a * s) * KW + wfst[iw]) * 2u;
                    /* C and c0 multiples of 4, values 4-byte aligned */
                    const uint32_t *gp = (const uint32_t *)(const void *)(g + ((ho[ih] - a) * OW + wo[iw]) * C + c0);
                    for (uint32_t b = 0; b < wn[iw]; b++, wp += 2u * s, gp -= C / 2u) {
                        const uint32_t g01 = gp[0], g23 = gp[1], w01 = wp[0], w23 = wp[1];
                        a0 = smlabb_c(g01, w01, a0);
                        a1 = smlatt_c(g01, w01, a1);
                        a2 = smlabb_c(g23, w23, a2);
                        a3 = smlatt_c(g23, w23, a3);
                    }
                }
                if (r) { /* one pass: a tile is a pixel's 4 channels */
                    const uint32_t mg = abs32(a0) | abs32(a1) | abs32(a2) | abs32(a3);
                    if (r->tile == r->stop) {
                        r->seen |= seen;
                        return 1;
                    }
                    seen |= mg; /* r->seen's share, merged at the end */
                    if (mg >= lim) { /* tt_g16_run_check */
                        tt_g16_run_check(r, mg);
                        lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim;
                        er = r->e;
                    }
                    store_g16x4(d + dp, a0, a1, a2, a3, er);
                    r->tile++;
                } else if (d) {
                    store_g16x4(d + dp, a0, a1, a2, a3, e);
                } else {
                    seen |= abs32(a0) | abs32(a1) | abs32(a2) | abs32(a3);
                }
            }
        }
    }
    if (r) {
        r->seen |= seen;
    } else if (!d) {
        dx->vmax = seen > dx->vmax ? seen : dx->vmax;
    }
    return 1;
}

#if TT_DSP_ASM_WIDE
/* The first pass of a two-pass input gradient (one written over its
   output gradient) finds only the shift (tt_g16_shift: the bit length of
   the largest |sum|, counted from 15) and whether any sum is not 0. Channel
   c's sums are at most U = max_p |g[p][c]| sum_t |w[c][t]|; a group of 4
   channels whose largest U has at most the bit length n = max(15, bit
   length of the sums' OR so far) changes neither once that OR is not 0
   (nor when U = 0), and is skipped. The group of the largest bound goes
   first. The bounds' bit lengths are kept in nb (one word a group). */
typedef struct {
    uint32_t *nb;
    uint32_t first;
} dw_skip_t;

/* Per lane of w the largest and the smallest value so far (from 0). */
static inline void dw_max_step(uint32_t w, uint32_t *hi, uint32_t *lo) {
    uint32_t t;
    __asm__("ssub16 %[t], %[w], %[hi]\n\t"
            "sel %[hi], %[w], %[hi]\n\t"
            "ssub16 %[t], %[lo], %[w]\n\t"
            "sel %[lo], %[w], %[lo]"
            : [hi] "+r"(*hi), [lo] "+r"(*lo), [t] "=&r"(t)
            : [w] "r"(w));
}

/* 1: S->nb and S->first made (C / 4 <= cap); 0: no skipping. */
static int dw_skip_make(dw_skip_t *S, uint32_t *nb, uint32_t cap, const int16_t *g, uint32_t npos, uint32_t C,
                        const tt_layer_rec *L, const int8_t *wt, const int8_t *wf, uint32_t kk) {
    uint32_t best = 0;
    if (C / 4u > cap) {
        return 0;
    }
    S->nb = nb;
    S->first = 0;
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const uint32_t *gp = (const uint32_t *)(const void *)(g + c0); /* C, c0 multiples of 4 */
        uint32_t h01 = 0, l01 = 0, h23 = 0, l23 = 0, u = 0;
        for (uint32_t p = 0; p < npos; p++, gp += C / 2u) {
            dw_max_step(gp[0], &h01, &l01);
            dw_max_step(gp[1], &h23, &l23);
        }
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i, h = i < 2u ? h01 : h23, l = i < 2u ? l01 : l23;
            const int32_t hi = i & 1u ? hi16(h) : lo16(h), lo = i & 1u ? hi16(l) : lo16(l);
            const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
            uint32_t sw = 0, tap = 0;
            for (; tap + 4u <= kk; tap += 4u) { /* sum |w| of 4 bytes: USADA8 of w + 128 and 128 */
                sw = __usada8(tt_ld32(w + tap) ^ 0x80808080u, 0x80808080u, sw);
            }
            for (; tap < kk; tap++) {
                sw += (uint32_t)(w[tap] < 0 ? -w[tap] : w[tap]);
            }
            sw *= (uint32_t)(-lo > hi ? -lo : hi); /* < 2^15 128 49 */
            u = sw > u ? sw : u;
        }
        nb[c0 / 4u] = tt_bitlen64_fast(u);
        if (u > best) {
            best = u;
            S->first = c0 / 4u;
        }
    }
    return 1;
}

/* The group of the i-th turn: S->first, then the others in order. */
static inline uint32_t dw_skip_order(const dw_skip_t *S, uint32_t i) {
    return i == 0u ? S->first : (i - 1u < S->first ? i - 1u : i);
}

/* dw_input_grad_c4's weight pairs of a group, wtab[2 t] = (w0[t], w1[t]),
   wtab[2 t + 1] = (w2[t], w3[t]): 4 taps of each channel from one word
   (SXTB16, PKHBT/PKHTB), the last kk % 4 one at a time. */
static void dwig_regroup(uint32_t *wtab, const int8_t *const *w, uint32_t kk) {
    uint32_t t = 0;
    for (; t + 4u <= kk; t += 4u, wtab += 8) {
        for (uint32_t h = 0; h < 2u; h++) { /* channels 2h, 2h + 1: the words 2t + h */
            const uint32_t a = tt_ld32(w[2u * h] + t), b = tt_ld32(w[2u * h + 1u] + t);
            const uint32_t a02 = (uint32_t)__sxtb16(a), a13 = tt_sxtb16_hi(a);
            const uint32_t b02 = (uint32_t)__sxtb16(b), b13 = tt_sxtb16_hi(b);
            wtab[h] = tt_pkhbt(a02, b02);      /* tap t */
            wtab[2u + h] = tt_pkhbt(a13, b13); /* t + 1 */
            wtab[4u + h] = tt_pkhtb(a02, b02); /* t + 2 */
            wtab[6u + h] = tt_pkhtb(a13, b13); /* t + 3 */
        }
    }
    for (; t < kk; t++, wtab += 2) {
        wtab[0] = pack16(w[0][t], w[1][t]);
        wtab[1] = pack16(w[2][t], w[3][t]);
    }
}

/* Group gi needs no sums with seen the OR of those so far. */
static inline int dw_skip_group(const dw_skip_t *S, uint32_t gi, uint32_t seen) {
    const uint32_t nb = S->nb[gi], n = tt_bitlen64_fast(seen);
    return nb == 0u || (seen && nb <= (n > 15u ? n : 15u));
}
#endif

#if TT_DSP_ASM_WIDE
/* dw_input_grad_c4 with an input row's pixels in one asm block, dwig_row:
   per pixel a word, the sum of its row's and its column's (made once per
   layer), gives its gradient offset, first weight tap, kernel rows and
   taps a row; each kernel row is entered (TBB) so that its taps run
   straight through (8 instructions a tap, 7 a kernel row); the OR of the
   sums' magnitudes, the stop at lim (tt_g16_run_check) and the stores
   (tt_g16_store2's values) as ig_tiles_asm's: about 60 instructions a pixel
   of 4 channels besides its taps, where dw_input_grad_c4 spends about 150.
   Same int32 sums; 13 registers (TT_DSP_ASM_WIDE). */
typedef struct {
    const uint32_t *col;   /* the next pixel's column word */
    uint32_t rowword;      /* the row's word */
    const uint8_t *gbase;  /* g at channel c0 */
    const uint32_t *wbase; /* weight pairs at tap 0 */
    uint32_t taps;         /* this pixel's taps a kernel row */
    uint32_t pad_;
    int32_t gstep, wstep;  /* g, w at a kernel row's end to the next row's start */
    uint32_t grs, wrs;     /* 2 OW C: g back one output row; 8 s KW: w on s kernel rows */
    uint32_t lim, seen;    /* tt_g16_run's lim (as 32 bits), the OR of |sums| */
    uint32_t e, rnd;       /* the shift, 2^(e - 1) (0 when e = 0) */
    int16_t *d;            /* this pixel's 4 outputs; NULL: none stored */
    uint32_t n;            /* pixels left */
    uint32_t m;            /* 0x80018001 (tt_g16_store2) */
    uint32_t wtap;         /* 8 s: w on one tap */
} dwig_row_k;
typedef char dwig_row_layout[offsetof(dwig_row_k, gstep) == 24u && offsetof(dwig_row_k, d) == 56u &&
                                     offsetof(dwig_row_k, wtap) == 68u
                                 ? 1
                                 : -1];

/* One tap: the gradient pair words at gq (then one pixel back), the weight
   pairs at wq (then one tap on, wtap bytes). */
#define DWIG_TAP(wtap)                                                                                               \
    "ldrd %[g0], %[g1], [%[gq]]\n\t"                                                                                 \
    "sub %[gq], %[gq], %[gs]\n\t"                                                                                    \
    "ldrd %[w0], %[w1], [%[wq]], #" wtap "\n\t"                                                                      \
    "smlabb %[a0], %[g0], %[w0], %[a0]\n\t"                                                                          \
    "smlatt %[a1], %[g0], %[w0], %[a1]\n\t"                                                                          \
    "smlabb %[a2], %[g1], %[w1], %[a2]\n\t"                                                                          \
    "smlatt %[a3], %[g1], %[w1], %[a3]\n\t"

#define DWIG_ROW_ASM(wtap)                                                                                           \
    __asm__ volatile("1:\n\t"                                                                                        \
                     "ldr %[g0], [%[K]]\n\t"                                                                         \
                     "ldr %[g1], [%[g0]], #4\n\t"                                                                    \
                     "str %[g0], [%[K]]\n\t"                                                                         \
                     "ldr %[g0], [%[K], #4]\n\t"                                                                     \
                     "add %[g1], %[g1], %[g0]\n\t"                                                                   \
                     "and %[g0], %[g1], #7\n\t"                                                                      \
                     "str %[g0], [%[K], #16]\n\t"                                                                    \
                     "ubfx %[rows], %[g1], #3, #3\n\t"                                                               \
                     "mov %[a0], #0\n\t"                                                                             \
                     "mov %[a1], #0\n\t"                                                                             \
                     "mov %[a2], #0\n\t"                                                                             \
                     "mov %[a3], #0\n\t"                                                                             \
                     "cmp %[rows], #0\n\t"                                                                           \
                     "beq 5f\n\t"                                                                                    \
                     "cmp %[g0], #0\n\t"                                                                             \
                     "beq 5f\n\t"                                                                                    \
                     "ldrd %[gq], %[wq], [%[K], #8]\n\t"                                                             \
                     "add %[gq], %[gq], %[g1], lsr #12\n\t"                                                          \
                     "ubfx %[w0], %[g1], #6, #6\n\t"                                                                 \
                     "add %[wq], %[wq], %[w0], lsl #3\n\t"                                                           \
                     "ldrd %[w0], %[w1], [%[K], #32]\n\t"                                                            \
                     "mul %[g1], %[g0], %[gs]\n\t"                                                                   \
                     "sub %[g1], %[g1], %[w0]\n\t"                                                                   \
                     "ldr %[w0], [%[K], #68]\n\t"                                                                    \
                     "mls %[w1], %[g0], %[w0], %[w1]\n\t"                                                            \
                     "strd %[g1], %[w1], [%[K], #24]\n\t"                                                            \
                     "2:\n\t"                                                                                        \
                     "ldr %[g0], [%[K], #16]\n\t"                                                                    \
                     "tbb [pc, %[g0]]\n\t"                                                                           \
                     "3:\n\t"                                                                                        \
                     ".byte (4f - 3b) / 2, (41f - 3b) / 2, (42f - 3b) / 2, (43f - 3b) / 2\n\t"                       \
                     ".byte (44f - 3b) / 2, (45f - 3b) / 2, (46f - 3b) / 2, (47f - 3b) / 2\n\t"                      \
                     "47:\n\t" DWIG_TAP(wtap) "46:\n\t" DWIG_TAP(wtap) "45:\n\t" DWIG_TAP(wtap)                      \
                     "44:\n\t" DWIG_TAP(wtap) "43:\n\t" DWIG_TAP(wtap) "42:\n\t" DWIG_TAP(wtap)                      \
                     "41:\n\t" DWIG_TAP(wtap)                                                                        \
                     "4:\n\t"                                                                                        \
                     "ldrd %[g0], %[g1], [%[K], #24]\n\t"                                                            \
                     "add %[gq], %[gq], %[g0]\n\t"                                                                   \
                     "add %[wq], %[wq], %[g1]\n\t"                                                                   \
                     "subs %[rows], %[rows], #1\n\t"                                                                 \
                     "bne 2b\n\t"                                                                                    \
                     "5:\n\t"                                                                                        \
                     /* g0 = |a0| | |a1| | |a2| | |a3| */                                                            \
                     "eor %[g0], %[a0], %[a0], asr #31\n\t"                                                          \
                     "sub %[g0], %[g0], %[a0], asr #31\n\t"                                                          \
                     "eor %[g1], %[a1], %[a1], asr #31\n\t"                                                          \
                     "sub %[g1], %[g1], %[a1], asr #31\n\t"                                                          \
                     "orr %[g0], %[g0], %[g1]\n\t"                                                                   \
                     "eor %[g1], %[a2], %[a2], asr #31\n\t"                                                          \
                     "sub %[g1], %[g1], %[a2], asr #31\n\t"                                                          \
                     "orr %[g0], %[g0], %[g1]\n\t"                                                                   \
                     "eor %[g1], %[a3], %[a3], asr #31\n\t"                                                          \
                     "sub %[g1], %[g1], %[a3], asr #31\n\t"                                                          \
                     "orr %[g0], %[g0], %[g1]\n\t"                                                                   \
                     "ldrd %[g1], %[w0], [%[K], #40]\n\t" /* lim, seen */                                           \
                     "orr %[w0], %[w0], %[g0]\n\t"                                                                   \
                     "str %[w0], [%[K], #44]\n\t"                                                                    \
                     "cmp %[g0], %[g1]\n\t"                                                                          \
                     "bhs 9f\n\t"                                                                                    \
                     "ldr %[gq], [%[K], #56]\n\t"                                                                    \
                     "cmp %[gq], #0\n\t"                                                                             \
                     "beq 6f\n\t"                                                                                    \
                     /* ssat((a + rnd) >> e, 16), packed in pairs and raised to -32767 */                            \
                     "ldrd %[w0], %[w1], [%[K], #48]\n\t" /* e, rnd */                                               \
                     "add %[a0], %[a0], %[w1]\n\t"                                                                   \
                     "add %[a1], %[a1], %[w1]\n\t"                                                                   \
                     "add %[a2], %[a2], %[w1]\n\t"                                                                   \
                     "add %[a3], %[a3], %[w1]\n\t"                                                                   \
                     "asr %[a0], %[a0], %[w0]\n\t"                                                                   \
                     "asr %[a1], %[a1], %[w0]\n\t"                                                                   \
                     "asr %[a2], %[a2], %[w0]\n\t"                                                                   \
                     "asr %[a3], %[a3], %[w0]\n\t"                                                                   \
                     "ssat %[a0], #16, %[a0]\n\t"                                                                    \
                     "ssat %[a1], #16, %[a1]\n\t"                                                                    \
                     "ssat %[a2], #16, %[a2]\n\t"                                                                    \
                     "ssat %[a3], #16, %[a3]\n\t"                                                                    \
                     "pkhbt %[a0], %[a0], %[a1], lsl #16\n\t"                                                        \
                     "pkhbt %[a2], %[a2], %[a3], lsl #16\n\t"                                                        \
                     "ldr %[w1], [%[K], #64]\n\t"                                                                    \
                     "ssub16 %[g0], %[a0], %[w1]\n\t"                                                                \
                     "sel %[a0], %[a0], %[w1]\n\t"                                                                   \
                     "ssub16 %[g0], %[a2], %[w1]\n\t"                                                                \
                     "sel %[a2], %[a2], %[w1]\n\t"                                                                   \
                     "strd %[a0], %[a2], [%[gq]]\n\t"                                                                \
                     "add %[gq], %[gq], %[gs]\n\t"                                                                   \
                     "str %[gq], [%[K], #56]\n\t"                                                                    \
                     "6:\n\t"                                                                                        \
                     "ldr %[g0], [%[K], #60]\n\t"                                                                    \
                     "subs %[g0], %[g0], #1\n\t"                                                                     \
                     "str %[g0], [%[K], #60]\n\t"                                                                    \
                     "bne 1b\n\t"                                                                                    \
                     "9:"                                                                                            \
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [g0] "=&r"(g0),               \
                       [g1] "=&r"(g1), [w0] "=&r"(w0), [w1] "=&r"(w1), [gq] "=&r"(gq), [wq] "=&r"(wq),               \
                       [rows] "=&r"(rows)                                                                            \
                     : [K] "r"(K), [gs] "r"(gs), "m"(*K)                                                             \
                     : "cc", "memory")

/* K->n >= 1 pixels of a row from K->col on; returns the pixels done. A
   pixel whose |sums| reach K->lim is not stored: its sums go to v, K->d
   stays on its outputs, K->col is past it, and it counts as not done. */
static TT_NOINLINE uint32_t dwig_row(dwig_row_k *K, uint32_t gs, uint32_t s, int32_t *v) {
    const uint32_t n0 = K->n;
    uint32_t g0, g1, w0, w1, rows;
    const uint8_t *gq;
    const uint32_t *wq;
    int32_t a0, a1, a2, a3;
    if (s == 1u) {
        DWIG_ROW_ASM("8");
    } else {
        DWIG_ROW_ASM("16");
    }
    v[0] = a0;
    v[1] = a1;
    v[2] = a2;
    v[3] = a3;
    return n0 - K->n;
}

/* dw_input_grad_c4's cases (and its order: channel groups, then rows in
   increasing order) through dwig_row, with stride 1 or 2, kernels up to
   7 x 7, H + W <= DW_MAX_SIDE and gradient offsets below 2^20; else 0. */
static int dw_input_grad_rows(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx,
                              tt_g16_run *r) {
    uint32_t tab[DW_MAX_SIDE]; /* the rows' words, then the columns', then the group bounds */
    uint32_t wtab[DW_MAX_TAPS * 2u];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint32_t C = in->c, H = in->h, W = in->w, OW = out->w, KW = L->kw, kk = (uint32_t)L->kh * L->kw;
    const uint32_t s = L->stride;
    int16_t *d = dx ? dx->dx : r->dx;
    /* one pass: r->lim as 32 bits (the magnitudes here are below 2^31), r->e */
    uint32_t lim = r ? (r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim) : 0xFFFFFFFFu;
    uint32_t e = r ? r->e : (dx ? dx->e : 0u);
    dwig_row_k K;
    dw_skip_t S;
    int skip;
    uint32_t probe, *const rw = tab, *const cw = tab + H;
    if (L->perm_off != TT_NO_OFFSET || C % 4u || H + W > DW_MAX_SIDE || KW > 7u || L->kh > 7u ||
        (s != 1u && s != 2u) || 2u * (uint32_t)out->h * OW * C >= 1u << 20) {
        return 0;
    }
    for (uint32_t i = 0; i < H; i++) {
        uint8_t f, n;
        uint16_t o;
        dw_taps(i, L->pad_top, s, L->kh, out->h, &f, &n, &o);
        rw[i] = (2u * o * OW * C << 12) | ((uint32_t)f * KW << 6) | ((uint32_t)n << 3);
    }
    for (uint32_t i = 0; i < W; i++) {
        uint8_t f, n;
        uint16_t o;
        dw_taps(i, L->pad_left, s, KW, OW, &f, &n, &o);
        cw[i] = (2u * o * C << 12) | ((uint32_t)f << 6) | n;
    }
    K.grs = 2u * OW * C;
    K.wrs = 8u * s * KW;
    K.wtap = 8u * s;
    K.m = 0x80018001u;
    K.seen = 0;
    K.wbase = wtab;
    /* the first pass of a gradient in place: the group bounds after cw's
       columns; the first run of one pass: the group of the largest bound is
       summed first without a store (a probe), its largest sum starting the
       shift, so that fewer tiles are stored before its last raise */
    skip = !d && !r && dw_skip_make(&S, cw + W, DW_MAX_SIDE - H - W, g, (uint32_t)out->h * OW, C, L, wt, wf, kk);
    probe = r && r->tile == 0u && r->stop == 0xFFFFFFFFu &&
            dw_skip_make(&S, cw + W, DW_MAX_SIDE - H - W, g, (uint32_t)out->h * OW, C, L, wt, wf, kk);
    for (uint32_t gi = 0; gi < C / 4u + probe; gi++) {
        const uint32_t gj = gi - probe, c0 = 4u * (probe && !gi ? S.first : (skip ? dw_skip_order(&S, gj) : gj));
        const int8_t *w[4];
        if (skip && dw_skip_group(&S, c0 / 4u, K.seen)) {
            continue;
        }
        if (probe && gi == 1u) { /* after the probe: its sums' OR to the shift */
            const uint32_t mg = K.seen;
            K.seen = 0;
            if (mg >= lim) {
                tt_g16_run_check(r, mg);
                lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim;
                e = r->e;
            }
        }
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            w[i] = j < L->n_train ? wt + j * kk : wf + j * kk;
        }
        dwig_regroup(wtab, w, kk);
        K.gbase = (const uint8_t *)(const void *)(g + c0);
        for (uint32_t ih = 0; ih < H; ih++) { /* rows in increasing order (in-place backward) */
            uint32_t iw = 0;
            K.rowword = rw[ih];
            K.col = cw;
            while (iw < W) {
                const int counted = r && (!probe || gi); /* the tiles of the run, not the probe's */
                const uint32_t left = counted ? r->stop - r->tile : W - iw;
                int32_t v[4];
                uint32_t done;
                if (!left) {
                    r->seen |= K.seen;
                    return 1;
                }
                K.n = W - iw < left ? W - iw : left;
                K.lim = counted || !r ? lim : 0xFFFFFFFFu; /* |sums| < 2^31: the probe never stops */
                K.e = e;
                K.rnd = e ? 1u << (e - 1u) : 0u;
                K.d = d && (counted || !r) ? d + (ih * W + iw) * C + c0 : NULL;
                done = dwig_row(&K, 2u * C, s, v);
                iw += done;
                if (counted) {
                    r->tile += done;
                }
                if (K.n) { /* pixel iw reached lim (one pass only): tt_g16_run_check, then stored */
                    const uint32_t mg = abs32(v[0]) | abs32(v[1]) | abs32(v[2]) | abs32(v[3]);
                    tt_g16_run_check(r, mg);
                    lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim;
                    e = r->e;
                    store_g16x4(d + (ih * W + iw) * C + c0, v[0], v[1], v[2], v[3], e);
                    r->tile++;
                    iw++;
                }
            }
        }
    }
    if (r) {
        r->seen |= K.seen;
    } else if (!d) {
        dx->vmax = K.seen > dx->vmax ? K.seen : dx->vmax;
    }
    return 1;
}

/* dw_input_grad_rows for a 3x3 kernel of stride 1 on small maps, without
   per-pixel tap ranges: a channel group's output gradient is copied into
   a zero-bordered frame on the stack (2 cells a side, 4 int16 a cell), so
   every input pixel takes all 9 taps (the flipped kernel over the frame)
   in straight-line code: 2 LDRD + 4 SMLAxy a tap and no set-up per kernel
   row, where dwig_row pays a pixel's tap ranges and each kernel row's
   entry. On maps of 4 to 8 pixels a side, where most windows reach the
   padding, the zero taps cost less than those ranges. In place the copy
   also keeps the group's gradient while its own input gradient is written
   (a group writes only its own channels). */
#define DWIG_PAD_BYTES 1600u
#define DW_SKIP_GROUPS 144u /* the bounds of up to 576 channels */

typedef struct {
    const uint8_t *gpix;   /* the next pixel's frame cell (its window's first tap) */
    const uint32_t *wtab;  /* the flipped kernel's weight pairs */
    uint32_t lim, seen;    /* as dwig_row_k */
    uint32_t e, rnd;
    int16_t *d;            /* this pixel's 4 outputs; NULL: none stored */
    uint32_t n;            /* pixels left */
    uint32_t m;            /* 0x80018001 */
    uint32_t dstep;        /* 2 C: d on one pixel */
} dwig3_k;
typedef char dwig3_layout[offsetof(dwig3_k, lim) == 8u && offsetof(dwig3_k, d) == 24u &&
                                  offsetof(dwig3_k, dstep) == 36u
                              ? 1
                              : -1];

/* tap i of a row: frame cell at gq + 8 i, weight pair word i of the row */
#define DWIG3_TAP(go, wo)                                                                                            \
    "ldrd %[g0], %[g1], [%[gq], #" go "]\n\t"                                                                        \
    "ldrd %[w0], %[w1], [%[wq], #" wo "]\n\t"                                                                        \
    "smlabb %[a0], %[g0], %[w0], %[a0]\n\t"                                                                          \
    "smlatt %[a1], %[g0], %[w0], %[a1]\n\t"                                                                          \
    "smlabb %[a2], %[g1], %[w1], %[a2]\n\t"                                                                          \
    "smlatt %[a3], %[g1], %[w1], %[a3]\n\t"

/* K->n >= 1 pixels of a row; returns the pixels done (dwig_row's rule for
   a pixel reaching K->lim: its sums to v, K->gpix past it, not done). */
static TT_NOINLINE uint32_t dwig3_row(dwig3_k *K, uint32_t rs, int32_t *v) {
    const uint32_t n0 = K->n;
    uint32_t g0, g1, w0, w1;
    const uint8_t *gq;
    const uint32_t *wq;
    int32_t a0, a1, a2, a3;
    __asm__ volatile("1:\n\t"
                     "ldrd %[gq], %[wq], [%[K]]\n\t"
                     "add %[g0], %[gq], #8\n\t"
                     "str %[g0], [%[K]]\n\t"
                     "ldrd %[g0], %[g1], [%[gq]]\n\t"
                     "ldrd %[w0], %[w1], [%[wq]]\n\t"
                     "smulbb %[a0], %[g0], %[w0]\n\t"
                     "smultt %[a1], %[g0], %[w0]\n\t"
                     "smulbb %[a2], %[g1], %[w1]\n\t"
                     "smultt %[a3], %[g1], %[w1]\n\t"
                     DWIG3_TAP("8", "8") DWIG3_TAP("16", "16")
                     "add %[gq], %[gq], %[rs]\n\t"
                     DWIG3_TAP("0", "24") DWIG3_TAP("8", "32") DWIG3_TAP("16", "40")
                     "add %[gq], %[gq], %[rs]\n\t"
                     DWIG3_TAP("0", "48") DWIG3_TAP("8", "56") DWIG3_TAP("16", "64")
                     /* g0 = |a0| | |a1| | |a2| | |a3| */
                     "eor %[g0], %[a0], %[a0], asr #31\n\t"
                     "sub %[g0], %[g0], %[a0], asr #31\n\t"
                     "eor %[g1], %[a1], %[a1], asr #31\n\t"
                     "sub %[g1], %[g1], %[a1], asr #31\n\t"
                     "orr %[g0], %[g0], %[g1]\n\t"
                     "eor %[g1], %[a2], %[a2], asr #31\n\t"
                     "sub %[g1], %[g1], %[a2], asr #31\n\t"
                     "orr %[g0], %[g0], %[g1]\n\t"
                     "eor %[g1], %[a3], %[a3], asr #31\n\t"
                     "sub %[g1], %[g1], %[a3], asr #31\n\t"
                     "orr %[g0], %[g0], %[g1]\n\t"
                     "ldrd %[g1], %[w0], [%[K], #8]\n\t" /* lim, seen */
                     "orr %[w0], %[w0], %[g0]\n\t"
                     "str %[w0], [%[K], #12]\n\t"
                     "cmp %[g0], %[g1]\n\t"
                     "bhs 9f\n\t"
                     "ldr %[gq], [%[K], #24]\n\t"
                     "cmp %[gq], #0\n\t"
                     "beq 6f\n\t"
                     /* ssat((a + rnd) >> e, 16), packed in pairs and raised to -32767 */
                     "ldrd %[w0], %[w1], [%[K], #16]\n\t" /* e, rnd */
                     "add %[a0], %[a0], %[w1]\n\t"
                     "add %[a1], %[a1], %[w1]\n\t"
                     "add %[a2], %[a2], %[w1]\n\t"
                     "add %[a3], %[a3], %[w1]\n\t"
                     "asr %[a0], %[a0], %[w0]\n\t"
                     "asr %[a1], %[a1], %[w0]\n\t"
                     "asr %[a2], %[a2], %[w0]\n\t"
                     "asr %[a3], %[a3], %[w0]\n\t"
                     "ssat %[a0], #16, %[a0]\n\t"
                     "ssat %[a1], #16, %[a1]\n\t"
                     "ssat %[a2], #16, %[a2]\n\t"
                     "ssat %[a3], #16, %[a3]\n\t"
                     "pkhbt %[a0], %[a0], %[a1], lsl #16\n\t"
                     "pkhbt %[a2], %[a2], %[a3], lsl #16\n\t"
                     "ldrd %[w1], %[w0], [%[K], #32]\n\t" /* m, dstep */
                     "ssub16 %[g0], %[a0], %[w1]\n\t"
                     "sel %[a0], %[a0], %[w1]\n\t"
                     "ssub16 %[g0], %[a2], %[w1]\n\t"
                     "sel %[a2], %[a2], %[w1]\n\t"
                     "strd %[a0], %[a2], [%[gq]]\n\t"
                     "add %[gq], %[gq], %[w0]\n\t"
                     "str %[gq], [%[K], #24]\n\t"
                     "6:\n\t"
                     "ldr %[g0], [%[K], #28]\n\t"
                     "subs %[g0], %[g0], #1\n\t"
                     "str %[g0], [%[K], #28]\n\t"
                     "bne 1b\n\t"
                     "9:"
                     : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [g0] "=&r"(g0), [g1] "=&r"(g1),
                       [w0] "=&r"(w0), [w1] "=&r"(w1), [gq] "=&r"(gq), [wq] "=&r"(wq)
                     : [K] "r"(K), [rs] "r"(rs), "m"(*K)
                     : "cc", "memory");
    v[0] = a0;
    v[1] = a1;
    v[2] = a2;
    v[3] = a3;
    return n0 - K->n;
}

static int dw_input_grad_pad3(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx,
                              tt_g16_run *r) {
    uint32_t frame[DWIG_PAD_BYTES / 4u];
    uint32_t wtab[9u * 2u], nb[DW_SKIP_GROUPS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint32_t C = in->c, H = in->h, W = in->w, OH = out->h, OW = out->w;
    const uint32_t PW = W + 2u, rs = 8u * PW; /* frame: H + 2 rows of W + 2 cells */
    const uint32_t pt = L->pad_top, pl = L->pad_left;
    int16_t *d = dx ? dx->dx : r->dx;
    uint32_t lim = r ? (r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim) : 0xFFFFFFFFu;
    uint32_t e = r ? r->e : (dx ? dx->e : 0u);
    dwig3_k K;
    dw_skip_t S;
    int skip;
    /* output row oh sits at frame row oh + 2 - pt (as columns): inside the frame */
    if (L->perm_off != TT_NO_OFFSET || C % 4u || L->kh != 3u || L->kw != 3u || L->stride != 1u || pt > 2u ||
        pl > 2u || OH + 2u - pt > H + 2u || OW + 2u - pl > PW || (H + 2u) * rs > DWIG_PAD_BYTES) {
        return 0;
    }
    memset(frame, 0, (H + 2u) * rs);
    K.wtab = wtab;
    K.m = 0x80018001u;
    K.dstep = 2u * C;
    K.seen = 0;
    skip = !d && !r && dw_skip_make(&S, nb, DW_SKIP_GROUPS, g, OH * OW, C, L, wt, wf, 9u);
    for (uint32_t gi = 0; gi < C / 4u; gi++) {
        const uint32_t c0 = 4u * (skip ? dw_skip_order(&S, gi) : gi);
        const int8_t *w[4];
        if (skip && dw_skip_group(&S, c0 / 4u, K.seen)) {
            continue;
        }
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            w[i] = j < L->n_train ? wt + j * 9u : wf + j * 9u;
        }
        for (uint32_t tap = 0; tap < 9u; tap++) { /* flipped: frame tap i meets kernel tap 8 - i */
            wtab[2u * tap] = pack16(w[0][8u - tap], w[1][8u - tap]);
            wtab[2u * tap + 1u] = pack16(w[2][8u - tap], w[3][8u - tap]);
        }
        for (uint32_t oh = 0; oh < OH; oh++) {
            const uint32_t *src = (const uint32_t *)(const void *)(g + oh * OW * C + c0);
            uint32_t *dst = frame + 2u * ((oh + 2u - pt) * PW + 2u - pl);
            for (uint32_t ow = 0; ow < OW; ow++, src += C / 2u, dst += 2) {
                dst[0] = src[0];
                dst[1] = src[1];
            }
        }
        for (uint32_t ih = 0; ih < H; ih++) { /* rows in increasing order, as dw_input_grad_rows */
            uint32_t iw = 0;
            K.gpix = (const uint8_t *)(const void *)(frame + 2u * ih * PW);
            while (iw < W) {
                const uint32_t left = r ? r->stop - r->tile : W - iw;
                int32_t v[4];
                uint32_t done;
                if (!left) {
                    r->seen |= K.seen;
                    return 1;
                }
                K.n = W - iw < left ? W - iw : left;
                K.lim = lim;
                K.e = e;
                K.rnd = e ? 1u << (e - 1u) : 0u;
                K.d = d ? d + (ih * W + iw) * C + c0 : NULL;
                done = dwig3_row(&K, rs, v);
                iw += done;
                if (r) {
                    r->tile += done;
                }
                if (K.n) { /* pixel iw reached lim (one pass only): tt_g16_run_check, then stored */
                    const uint32_t mg = abs32(v[0]) | abs32(v[1]) | abs32(v[2]) | abs32(v[3]);
                    tt_g16_run_check(r, mg);
                    lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim;
                    e = r->e;
                    store_g16x4(d + (ih * W + iw) * C + c0, v[0], v[1], v[2], v[3], e);
                    r->tile++;
                    iw++;
                }
            }
        }
    }
    if (r) {
        r->seen |= K.seen;
    } else if (!d) {
        dx->vmax = K.seen > dx->vmax ? K.seen : dx->vmax;
    }
    return 1;
}
#endif

int tt_dwconv_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
#if TT_DSP_ASM_WIDE
    if (dw_input_grad_pad3(t, L, g, NULL, r) || dw_input_grad_rows(t, L, g, NULL, r)) {
        return 1;
    }
#endif
    return dw_input_grad_c4(t, L, g, NULL, r);
}

int tt_dwconv_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
#if TT_DSP_ASM_WIDE
    if (dw_input_grad_pad3(t, L, g, dx, NULL) || dw_input_grad_rows(t, L, g, dx, NULL)) {
        return 1;
    }
#endif
    return dw_input_grad_c4(t, L, g, dx, NULL) || dw_input_grad(t, L, g, dx);
}

#else
typedef int tt_depthwise_grad_opt_unused; /* ISO C: a translation unit is not empty */
#endif
