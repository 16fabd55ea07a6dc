/*
 * Residual add, optimised (selected by TT_OPTIMIZED, see tt_opt.h): the
 * zero points, the rounding and the output zero point folded into one
 * 64-bit constant (two multiply-accumulates and a shift per element), the
 * 64-bit rounding shift in 32-bit halves, the mask a byte at a time. Same
 * results as tt_add.c bit for bit.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

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

/* rs(v, s) + zy as one floor division: with K = 2^(s-1) + zy 2^s - za ma - zb mb,
   floor((xa ma + xb mb + K) / 2^s) (zy 2^s, a multiple of 2^s, passes the
   floor unchanged); the sum is two multiply-accumulates into K, |sum| < 2^62
   for s <= 54, and its quotient fits 32 bits (|v| < 2^40, s >= 9). big: s >= 32
   (the high word alone). */
TT_INLINE int32_t add_q(const int8_t *xa, const int8_t *xb, uint32_t i, int64_t K, int32_t ma, int32_t mb,
                        uint32_t s, int big) {
    const int64_t v = K + (int64_t)xa[i] * ma + (int64_t)xb[i] * mb;
    const uint32_t vlo = (uint32_t)v, vhi = (uint32_t)((uint64_t)v >> 32);
    if (big) {
        return (int32_t)vhi >> (s - 32u);
    }
    return (int32_t)((vlo >> s) | (vhi << (32u - s)));
}

TT_INLINE void add_body(const int8_t *xa, const int8_t *xb, int8_t *y, uint8_t *mask, uint32_t n, int64_t K,
                        int32_t ma, int32_t mb, uint32_t s, int32_t lo, int32_t hi, int big) {
    if (!mask) {
        for (uint32_t i = 0; i < n; i++) {
            y[i] = (int8_t)clamp_act(add_q(xa, xb, i, K, ma, mb, s, big), lo, hi);
        }
        return;
    }
    for (uint32_t i0 = 0; i0 < n; i0 += 8u) {
        const uint32_t i1 = n - i0 < 8u ? n : i0 + 8u;
        uint32_t bits = 0;
        for (uint32_t i = i0; i < i1; i++) {
            const int32_t q = add_q(xa, xb, i, K, ma, mb, s, big), r = clamp_act(q, lo, hi);
            y[i] = (int8_t)r;
            bits |= (uint32_t)(r == q) << (i - i0);
        }
        mask[i0 >> 3] |= (uint8_t)bits;
    }
}

static TT_NOINLINE void add_small(const int8_t *xa, const int8_t *xb, int8_t *y, uint8_t *mask, uint32_t n,
                                  int64_t K, int32_t ma, int32_t mb, uint32_t s, int32_t lo, int32_t hi) {
    if (lo == -128 && hi == 127) {
        add_body(xa, xb, y, mask, n, K, ma, mb, s, -128, 127, 0);
    } else {
        add_body(xa, xb, y, mask, n, K, ma, mb, s, lo, hi, 0);
    }
}

static TT_NOINLINE void add_big(const int8_t *xa, const int8_t *xb, int8_t *y, uint8_t *mask, uint32_t n,
                                int64_t K, int32_t ma, int32_t mb, uint32_t s, int32_t lo, int32_t hi) {
    add_body(xa, xb, y, mask, n, K, ma, mb, s, lo, hi, 1);
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
    if (s <= 54u) {
        const int64_t K = ((int64_t)1 << (s - 1u)) + (int64_t)zy * ((int64_t)1 << s) - (int64_t)za * ma -
                          (int64_t)zb * mb;
        (s >= 32u ? add_big : add_small)(xa, xb, y, mask, n, K, ma, mb, s, lo, hi);
        return 1;
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

/* ---- the sum of two gradients (tt_grad_add): tt_requant(y, mult, s) of an
   int16 y and a Q31 mult from the high word of y mult (|y mult| < 2^46),
   as rq_fast for s >= 33 (one SMMUL, an add, a shift) and SMMULR's
   rounding for s = 32. ---- */
int tt_grad_sum_opt(int16_t *d, const int16_t *x, const int16_t *y, uint32_t n, int32_t mult, uint32_t s) {
    const uint32_t k = s - 32u;
    const int32_t rnd = s >= 33u ? (int32_t)(1u << (s - 33u)) : 0;
    if (s < 32u || s > 62u) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) {
        const int32_t p = (int32_t)(((int64_t)y[i] * mult + (s == 32u ? (int64_t)1 << 31 : 0)) >> 32);
        const int32_t v = ((x[i] + 1) >> 1) + ((p + rnd) >> k);
        d[i] = (int16_t)(v < -TT_G16_MAX ? -TT_G16_MAX : (v > TT_G16_MAX ? TT_G16_MAX : v));
    }
    return 1;
}

#else
typedef int tt_add_opt_unused; /* ISO C: a translation unit is not empty */
#endif
