/*
 * Backward dispatch: one layer's backward op, each kernel the optimised
 * one where it handles the case, else the reference (kernels/).
 *
 * Gradients are block floating point: int16 values and one float scale per
 * tensor (docs/arithmetic.md). Per layer, in this order:
 *   1. clamp mask on the output gradient;
 *   2. bias gradient, applied at once;
 *   3. input gradient (if needed), with the weights as they were;
 *   4. weight gradient of the trained channels, each element applied as soon
 *      as it is summed (the weight-gradient tensor never exists).
 * All sums are integer (int64); floats only scale single elements.
 */
#include <string.h>
#include "kernels/tt_kernels.h"
#include "kernels/tt_opt.h"

#if TT_OPTIMIZED
/* The optimised input-gradient sums (pointwise, depthwise); 0: the reference runs. */
static int input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
#if TT_HOST_SIMD
    if (L->kind == TT_L_DWCONV && tt_host_dwconv_input_grad_opt(t, L, g, dx)) {
        return 1;
    }
#endif
    if (tt_is_pointwise(&t->model, L)) {
        tt_pointwise_input_grad_opt(t, L, g, dx);
        return 1;
    }
#if TT_OPT_DEPTHWISE
    return L->kind == TT_L_DWCONV && tt_dwconv_input_grad_opt(t, L, g, dx);
#else
    return 0;
#endif
}
#endif

#if TT_OPTIMIZED
static int run_kernel(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    if (tt_is_pointwise(&t->model, L)) {
#if TT_HOST_SIMD
        if (tt_host_pointwise_input_grad_run(t, L, g, r)) {
            return 1;
        }
#endif
        return tt_pointwise_input_grad_run(t, L, g, r);
    }
#if TT_HOST_SIMD
    if (L->kind == TT_L_DWCONV && tt_host_dwconv_input_grad_run(t, L, g, r)) {
        return 1;
    }
#endif
#if TT_OPT_DEPTHWISE
    return L->kind == TT_L_DWCONV && tt_dwconv_input_grad_run(t, L, g, r);
#else
    return 0;
#endif
}

/* A one-pass kernel (tt_g16_run): the kernel once, then again over the
   tiles stored before the shift's last raise, which reads the output
   gradient again: not for a gradient written in place. 0: no such kernel. */
static int input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, float sgp, uint32_t dx_id) {
    tt_g16_run r = {NULL, 0u, (uint64_t)1 << 15, 0u, 0u, 0u, 0xFFFFFFFFu};
    const uint8_t *gb = (const uint8_t *)g, *db;
    r.dx = tt_grad_data(t, dx_id);
    db = (const uint8_t *)r.dx;
    if (db < gb + 2u * tt_numel(tt_tensor(&t->model, L->out)) &&
        gb < db + 2u * tt_numel(tt_tensor(&t->model, L->in))) {
        return 0;
    }
    if (!run_kernel(t, L, g, &r)) {
        return 0;
    }
    if (r.redo) {
        r.stop = r.redo;
        r.tile = 0u;
        run_kernel(t, L, g, &r);
    }
    *tt_grad_scale(t, dx_id) = r.seen == 0 ? 0.0f : (r.e ? sgp * tt_pow2f((int32_t)r.e) : sgp);
    return 1;
}
#endif

/* The input gradient, to16 of the int64 sums (docs/arithmetic.md): a
   one-pass kernel, or the kernel runs once for the largest sum, once to store. */
static void input_grad(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, float sgp, uint32_t dx_id) {
    tt_g16_sink s = {NULL, 0u, 0u};
    float *scale = tt_grad_scale(t, dx_id);
#if TT_OPTIMIZED
    if (sgp != 0.0f && input_grad_run(t, L, g, sgp, dx_id)) {
        return;
    }
#endif
    for (uint32_t pass = 0; sgp != 0.0f && pass < 2u; pass++) {
        if (pass) {
            if (s.vmax == 0) {
                break;
            }
            s.dx = tt_grad_data(t, dx_id);
            s.e = tt_g16_shift(s.vmax);
        }
#if TT_OPTIMIZED
        if (!input_grad_opt(t, L, g, &s))
#endif
            tt_input_grad_ref(t, L, g, &s);
    }
    if (!s.dx) { /* all zero */
        memset(tt_grad_data(t, dx_id), 0, 2u * tt_numel(tt_tensor(&t->model, L->in)));
        *scale = 0.0f;
        return;
    }
    *scale = s.e ? sgp * tt_pow2f((int32_t)s.e) : sgp;
}

static void update_weights(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
#if TT_OPTIMIZED && TT_HOST_SIMD
    if (tt_host_update_weights(t, L, P)) {
        return;
    }
#endif
#if TT_OPTIMIZED
    if (!tt_update_weights_opt(t, L, P))
#endif
        tt_update_weights_ref(t, L, P);
}

/* Steps 2 and (with an input gradient, prescale 1) the prescale: the bias
   update, then the output gradient prescaled; its scale, or 0 without a
   prescale. Out of line: its frame is not kept during the input gradient. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static float bias_and_prescale(tt_trainer *t, uint32_t li, const tt_layer_rec *L, int16_t *g, float sg,
                                           float k, int prescale) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *out = tt_tensor(m, L->out);
    const uint32_t npos = (uint32_t)out->h * out->w, n = tt_numel(out);
    float sgp = 0.0f;
#if TT_OPTIMIZED /* both in one pass over g where it can */
    if ((L->flags & TT_LF_TRAIN_BIAS) && prescale && tt_bias_prescale_opt(t, li, L, g, npos, out->c, sg, k, &sgp)) {
        return sgp;
    }
#endif
    if (L->flags & TT_LF_TRAIN_BIAS) {
#if TT_OPTIMIZED
        if (!tt_update_biases_opt(t, li, L, g, npos, out->c, sg, k))
#endif
            tt_update_biases_ref(t, li, L, g, npos, out->c, sg, k);
    }
    if (prescale) {
#if TT_OPTIMIZED
        if (!tt_prescale_opt(m, L, g, n, out->c, sg, &sgp))
#endif
            sgp = tt_prescale_ref(m, L, g, n, out->c, sg);
    }
    return sgp;
}

void tt_backward_layer(tt_trainer *t, uint32_t li, const tt_op_rec *op) {
    const tt_model *m = &t->model;
    const tt_layer_rec *L = &m->layers[li];
    const tt_tensor_rec *out = tt_tensor(m, L->out);
    int16_t *g = tt_grad_data(t, op->t[TT_BWD_OUT_GRAD]);
    const float sg = *tt_grad_scale(t, op->t[TT_BWD_OUT_GRAD]);
    const uint32_t n = tt_numel(out);
    if (op->t[TT_BWD_MASK] != TT_NONE) {
#if TT_OPTIMIZED
        if (!tt_apply_mask_opt(g, TT_ARENA(t, uint8_t, m->tensors[op->t[TT_BWD_MASK]].arena_off), n))
#endif
            tt_apply_mask_ref(g, TT_ARENA(t, uint8_t, m->tensors[op->t[TT_BWD_MASK]].arena_off), n);
    }
    if (L->kind == TT_L_ADD) {
        tt_add_backward(t, op->t[TT_BWD_OUT_GRAD], op->t[TT_BWD_IN_GRAD], op->t[TT_BWD_IN2_GRAD]);
        return;
    }
    if (L->kind == TT_L_AVGPOOL) {
        tt_avgpool_backward(t, L, op->t[TT_BWD_OUT_GRAD], op->t[TT_BWD_IN_GRAD]);
        return;
    }
    if (L->kind == TT_L_MAXPOOL || L->kind == TT_L_AVGPOOL2D) {
        tt_pool2d_backward(t, L, op->t[TT_BWD_OUT_GRAD], op->t[TT_BWD_SAVED], op->t[TT_BWD_IN_GRAD]);
        return;
    }
    if (L->kind == TT_L_LUT) {
        tt_lut_backward(t, L, op->t[TT_BWD_OUT_GRAD], op->t[TT_BWD_SAVED], op->t[TT_BWD_IN_GRAD]);
        return;
    }
    {
        const float k = (t->lr * L->lr_scale) * sg;
        if (op->t[TT_BWD_IN_GRAD] != TT_NONE) {
            /* The input gradient is taken with the weights before this step's
               update (true SGD); the weight update then reads the prescaled
               gradient G' = G s_w[c] / s_wmax 2^k, and the model's weight
               factors for such a layer carry the extra 1/s_w[c]. */
            const float *hook_div = t->grad_hook && L->wscale_off != TT_NO_OFFSET
                                        ? TT_BLOB(m, float, L->wscale_off) : NULL;
            const float sgp = bias_and_prescale(t, li, L, g, sg, k, 1);
            input_grad(t, L, g, sgp, op->t[TT_BWD_IN_GRAD]);
            if (L->n_train) {
                const tt_update_params P = {li, g, op->t[TT_BWD_SAVED], sgp, (t->lr * L->lr_scale) * sgp, hook_div};
                update_weights(t, L, &P);
            }
        } else {
            bias_and_prescale(t, li, L, g, sg, k, 0);
            if (L->n_train) {
                const tt_update_params P = {li, g, op->t[TT_BWD_SAVED], sg, k, NULL};
                update_weights(t, L, &P);
            }
        }
    }
}
