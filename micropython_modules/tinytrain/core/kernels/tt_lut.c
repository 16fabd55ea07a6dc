/*
 * Activations by table (sigmoid, tanh, hard swish, leaky ReLU...): the
 * host computes the function on the 256 int8 inputs into an int8 table and
 * its derivative into an int16 table with `shift` fraction bits
 * (docs/arithmetic.md, "Activation tables"); the model stores both, checked
 * at open (tt_model.c: in and out shaped alike, shift in range).
 */
#include "tt_kernels.h"

void tt_lut_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const int8_t *table = TT_BLOB(m, int8_t, L->w_off);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *y = tt_act_data(t, L->out);
    const uint32_t n = tt_numel(tt_tensor(m, L->out));
    for (uint32_t i = 0; i < n; i++) {
        y[i] = tt_finish(table[x[i] + 128], 0, L, mask, i);
    }
}

/* dX = to16(G * D[x], s_g 2^-shift), x the saved input. */
void tt_lut_backward(tt_trainer *t, const tt_layer_rec *L, uint32_t g_id, uint32_t saved_id, uint32_t dx_id) {
    const tt_model *m = &t->model;
    const int16_t *deriv = TT_BLOB(m, int16_t, L->gscale_off);
    const int16_t *g = tt_grad_data(t, g_id);
    const int8_t *x = tt_act_data(t, saved_id);
    const uint32_t n = tt_numel(tt_tensor(m, L->in));
    const float sg = *tt_grad_scale(t, g_id);
    tt_g16_sink s = {NULL, 0u, 0u};
    for (uint32_t pass = 0; pass < 2u; pass++) {
        if (pass) {
            s.dx = tt_grad_data(t, dx_id);
            s.e = tt_g16_shift(s.vmax);
        }
        for (uint32_t i = 0; i < n; i++) {
            tt_g16_put(&s, i, (int64_t)g[i] * deriv[x[i] + 128]);
        }
    }
    {
        const float s0 = sg * tt_pow2f(-(int32_t)L->shift);
        *tt_grad_scale(t, dx_id) = s.vmax == 0 ? 0.0f : (s.e ? s0 * tt_pow2f((int32_t)s.e) : s0);
    }
}
