/*
 * Global average pool (the only pool a model holds), forward and backward.
 */
#include <string.h>
#include "tt_kernels.h"

void tt_avgpool_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *y = tt_act_data(t, L->out);
    const uint32_t hw = (uint32_t)in->h * in->w, C = in->c;
    for (uint32_t c = 0; c < C; c++) {
        int32_t sum = 0;
        for (uint32_t p = 0; p < hw; p++) {
            sum += x[p * C + c] - in->zero;
        }
        y[c] = tt_finish(tt_requant(sum, L->mult_a, L->shift), out->zero, L, mask, c);
    }
}

/* Every input position gets the output gradient, scaled by 1 / (h w). */
void tt_avgpool_backward(tt_trainer *t, const tt_layer_rec *L, uint32_t g_id, uint32_t dx_id) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in);
    const uint32_t hw = (uint32_t)in->h * in->w;
    const int16_t *g = tt_grad_data(t, g_id);
    int16_t *dx;
    if (dx_id == TT_NONE) {
        return;
    }
    dx = tt_grad_data(t, dx_id);
    for (uint32_t p = 0; p < hw; p++) {
        memcpy(dx + p * in->c, g, 2u * in->c);
    }
    *tt_grad_scale(t, dx_id) = *tt_grad_scale(t, g_id) / (float)hw;
}
