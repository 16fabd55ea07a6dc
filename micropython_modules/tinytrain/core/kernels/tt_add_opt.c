/*
 * Residual add, optimised (selected by TT_OPTIMIZED, see tt_opt.h): the
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
typedef int tt_add_opt_unused; /* ISO C: a translation unit is not empty */
#endif
