/*
 * Residual add, reference versions: the forward kernel, its backward (the
 * output gradient to both inputs) and the sum of two gradients (GRAD_ADD op:
 * a tensor read by two layers).
 */
#include <string.h>
#include "tt_kernels.h"
#include "tt_opt.h"

void tt_add_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *a = tt_tensor(m, L->in), *b = tt_tensor(m, L->in2), *out = tt_tensor(m, L->out);
    const int8_t *xa = tt_act_data(t, L->in), *xb = tt_act_data(t, L->in2);
    int8_t *y = tt_act_data(t, L->out);
    const uint32_t n = tt_numel(out);
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = (int64_t)(xa[i] - a->zero) * L->mult_a + (int64_t)(xb[i] - b->zero) * L->mult_b;
        y[i] = tt_finish(tt_round_shift(v, L->shift), out->zero, L, mask, i);
    }
}

static void copy_grad(tt_trainer *t, uint32_t from, uint32_t to) {
    if (to != TT_NONE && to != from) {
        memcpy(t->arena + t->model.tensors[to].arena_off, t->arena + t->model.tensors[from].arena_off,
               t->model.tensors[from].size);
    }
}

/* The output gradient goes unchanged to both inputs (each NONE when not needed). */
void tt_add_backward(tt_trainer *t, uint32_t g_id, uint32_t da_id, uint32_t db_id) {
    copy_grad(t, g_id, da_id);
    copy_grad(t, g_id, db_id);
}

void tt_grad_add(tt_trainer *t, uint32_t a_id, uint32_t b_id) {
    int16_t *a = tt_grad_data(t, a_id);
    const int16_t *b = tt_grad_data(t, b_id);
    float *sa = tt_grad_scale(t, a_id);
    const float sb = *tt_grad_scale(t, b_id);
    const uint32_t n = tt_numel(tt_tensor(&t->model, a_id));
    int32_t mult;
    uint32_t shift;
    if (!(sb > 0.0f)) {
        return;
    }
    if (!(*sa > 0.0f)) {
        copy_grad(t, b_id, a_id);
        return;
    }
    /* Bring the smaller-scaled operand to the larger scale; one bit of headroom. */
    if (*sa >= sb) {
        tt_float_to_q31(sb / *sa, &mult, &shift);
#if TT_OPTIMIZED
        if (!tt_grad_sum_opt(a, a, b, n, mult, shift + 1u))
#endif
        for (uint32_t i = 0; i < n; i++) {
            a[i] = (int16_t)tt_clamp32(tt_round_shift(a[i], 1) + tt_requant(b[i], mult, shift + 1u), -TT_G16_MAX,
                                       TT_G16_MAX);
        }
        *sa = *sa * 2.0f;
    } else {
        tt_float_to_q31(*sa / sb, &mult, &shift);
#if TT_OPTIMIZED
        if (!tt_grad_sum_opt(a, b, a, n, mult, shift + 1u))
#endif
        for (uint32_t i = 0; i < n; i++) {
            a[i] = (int16_t)tt_clamp32(tt_requant(a[i], mult, shift + 1u) + tt_round_shift(b[i], 1), -TT_G16_MAX,
                                       TT_G16_MAX);
        }
        *sa = sb * 2.0f;
    }
}
