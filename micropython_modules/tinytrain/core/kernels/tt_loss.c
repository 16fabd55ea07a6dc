/*
 * Losses. The gradient is with respect to the dequantised logits, so the
 * softmax sees real values (no hidden temperature of 1/s_y). The softmax is
 * integer: exp comes from a 256-entry table the host computed for the fixed
 * logit scale, and the division is exact integer division.
 */
#include "tt_kernels.h"

#define ONE_Q24 (1 << 24)

/* Natural log of n >= 1 from IEEE basic operations only, so every target
   gives the same bits (libm's logf differs between C libraries). */
static float ln_u64(uint64_t n) {
    const uint32_t b = tt_bitlen64(n) - 1u;
    const uint32_t top = b >= 23u ? (uint32_t)(n >> (b - 23u)) : (uint32_t)(n << (23u - b));
    const float f = (float)top * tt_pow2f(-23); /* in [1, 2) */
    const float y = (f - 1.0f) / (f + 1.0f), y2 = y * y;
    float p = 1.0f / 11.0f;
    p = p * y2 + 1.0f / 9.0f;
    p = p * y2 + 1.0f / 7.0f;
    p = p * y2 + 1.0f / 5.0f;
    p = p * y2 + 1.0f / 3.0f;
    p = p * y2 + 1.0f;
    return (float)b * 0.693147182464599609375f + (2.0f * y) * p;
}

/* The logits get no clamp mask (a wrong class stuck at the top of the int8
   range must still be pushed down), but a gradient that would push a logit
   further past the end of its range it already sits at is dropped: it
   cannot lower the loss, and kept it grows the weights without bound. */
static void logits_clamp(const tt_model *m, uint32_t logits_id, int32_t *lo, int32_t *hi) {
    *lo = -128;
    *hi = 127;
    for (uint32_t l = 0; l < m->hdr->n_layers; l++) {
        if (m->layers[l].out == logits_id) {
            *lo = m->layers[l].act_min;
            *hi = m->layers[l].act_max;
        }
    }
}

static int64_t gated(int32_t q, int64_t v, int32_t lo, int32_t hi) {
    return (q >= hi && v < 0) || (q <= lo && v > 0) ? 0 : v;
}

/* The loss gradient V_i = num_i / den - sub_i, gated, stored with to16:
   one pass for the largest magnitude, one to store (docs/arithmetic.md).
   MSE has den = 1 and sub = target. */
static void store_grad(tt_trainer *t, uint32_t logits_id, uint32_t grad_id, const uint32_t *num_tab, int32_t qmax,
                       uint64_t den, int32_t label, const int8_t *target, float scale) {
    const tt_model *m = &t->model;
    const int8_t *q = tt_act_data(t, logits_id);
    const uint32_t n = m->hdr->n_classes;
    tt_g16_sink s = {NULL, 0u, 0u};
    int32_t lo, hi;
    logits_clamp(m, logits_id, &lo, &hi);
    for (uint32_t pass = 0; pass < 2u; pass++) {
        if (pass) {
            s.dx = tt_grad_data(t, grad_id);
            s.e = tt_g16_shift(s.vmax);
        }
        for (uint32_t i = 0; i < n; i++) {
            int64_t v;
            if (target) {
                v = (int64_t)q[i] - target[i];
            } else {
                const uint64_t e = num_tab[qmax - q[i]];
                v = (int64_t)(((e << 24) + den / 2u) / den) - ((int32_t)i == label ? ONE_Q24 : 0);
            }
            tt_g16_put(&s, i, gated(q[i], v, lo, hi));
        }
    }
    *tt_grad_scale(t, grad_id) = s.vmax == 0 ? 0.0f : s.e ? scale * tt_pow2f((int32_t)s.e) : scale;
}

float tt_loss_softmax_ce(tt_trainer *t, uint32_t logits_id, uint32_t grad_id, int32_t label) {
    const tt_model *m = &t->model;
    const int8_t *q = tt_act_data(t, logits_id);
    const uint32_t *tab = TT_BLOB(m, uint32_t, m->hdr->exp_table_off);
    const uint32_t n = m->hdr->n_classes;
    uint64_t sum = 0, e_label;
    int32_t qmax = q[0];
    for (uint32_t i = 1; i < n; i++) {
        qmax = q[i] > qmax ? q[i] : qmax;
    }
    for (uint32_t i = 0; i < n; i++) {
        sum += tab[qmax - q[i]];
    }
    store_grad(t, logits_id, grad_id, tab, qmax, sum, label, NULL, tt_pow2f(-24));
    e_label = tab[qmax - q[label]];
    return ln_u64(sum) - ln_u64(e_label ? e_label : 1u);
}

float tt_loss_mse(tt_trainer *t, uint32_t logits_id, uint32_t grad_id, const int8_t *target) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *lg = tt_tensor(m, logits_id);
    const int8_t *q = tt_act_data(t, logits_id);
    const uint32_t n = m->hdr->n_classes;
    int64_t sq = 0;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t d = (int32_t)q[i] - target[i];
        sq += (int64_t)d * d;
    }
    store_grad(t, logits_id, grad_id, NULL, 0, 1u, -1, target, (2.0f * lg->scale) / (float)n);
    return ((tt_f32_from_i64(sq) * lg->scale) * lg->scale) / (float)n;
}
