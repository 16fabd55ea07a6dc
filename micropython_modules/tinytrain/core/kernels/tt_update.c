/*
 * Weight and bias updates, reference versions: QAS-scaled SGD
 * (docs/arithmetic.md). Each bias and weight gradient is applied as soon as
 * it is summed (the weight-gradient tensor never exists); sums are integer
 * (int64), floats only scale single elements. prescale folds the
 * per-channel weight scales into a gradient before the input gradient.
 */
#include "tt_kernels.h"

void tt_update_biases_ref(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int16_t *g,
                          uint32_t npos, uint32_t C, float sg, float k) {
    const float *qas = TT_BLOB(&t->model, float, L->qas_b_off);
    for (uint32_t c = 0; c < C; c++) {
        int64_t a = 0;
        for (uint32_t p = 0; p < npos; p++) {
            a += g[p * C + c];
        }
        if (t->grad_hook) {
            t->grad_hook(t->grad_hook_ctx, li, TT_GRAD_HOOK_BIAS | c, a, sg);
        }
        tt_bias_step(t, L, c, (tt_f32_from_i64(a) * k) * qas[c]);
    }
}

/* Sum over the output positions that weight tap (kh, kw) touched. */
static int64_t weight_grad(const tt_layer_rec *L, const tt_tensor_rec *in, const tt_tensor_rec *out,
                           const int16_t *g, uint32_t gstride, const int8_t *s, uint32_t sstride,
                           uint32_t kh, uint32_t kw) {
    int64_t a = 0;
    for (uint32_t oh = 0; oh < out->h; oh++) {
        int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
        if (ih < 0 || ih >= in->h) {
            continue;
        }
        for (uint32_t ow = 0; ow < out->w; ow++) {
            int32_t iw = (int32_t)(ow * L->stride + kw) - L->pad_left;
            if (iw < 0 || iw >= in->w) {
                continue;
            }
            a += (int64_t)g[(oh * out->w + ow) * gstride] *
                 (s[((uint32_t)ih * in->w + (uint32_t)iw) * sstride] - in->zero);
        }
    }
    return a;
}

void tt_update_weights_ref(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, P->saved_id);
    const int16_t *g = P->g;
    const float *hook_div = P->hook_div;
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const float scale = P->sg * in->scale; /* real gradient = acc * scale */
    const uint32_t nt = L->n_train, C = out->c, kk = (uint32_t)L->kh * L->kw;
    const uint16_t *perm = TT_BLOB(m, uint16_t, L->perm_off);
    /* Depthwise: storage position j holds channel perm[j], one output channel. */
    const uint32_t nc = L->kind == TT_L_DWCONV ? 1u : C;
    for (uint32_t c = 0; c < nc; c++) {
        for (uint32_t r = 0; r < kk; r++) {
            const uint32_t kh = r / L->kw, kw = r % L->kw;
            for (uint32_t j = 0; j < nt; j++) {
                const uint32_t ch = L->kind == TT_L_DWCONV ? perm[j] : c;
                const uint32_t idx = L->kind == TT_L_DWCONV ? j * kk + r : (c * kk + r) * nt + j;
                const int64_t a = weight_grad(L, in, out, g + ch, C, s + j, nt, kh, kw);
                if (t->grad_hook) {
                    t->grad_hook(t->grad_hook_ctx, P->li, idx, a, scale / (hook_div ? hook_div[ch] : 1.0f));
                }
                tt_weight_step(w + idx, res ? res + idx : NULL, (tt_f32_from_i64(a) * P->k) * qas[ch]);
            }
        }
    }
}

/* Fold the per-channel weight scales into the gradient, G' = to16(G gs[c]),
   in place. Returns the new tensor scale (0 when the gradient is all zero). */
float tt_prescale_ref(const tt_model *m, const tt_layer_rec *L, int16_t *g, uint32_t n, uint32_t C, float sg) {
    const int32_t *pm = TT_BLOB(m, int32_t, L->gscale_off);
    uint64_t pmax = 0;
    uint32_t e;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = tt_abs64((int64_t)g[i] * pm[i % C]);
        pmax = a > pmax ? a : pmax;
    }
    if (pmax == 0 || !(sg > 0.0f)) {
        return 0.0f;
    }
    e = tt_g16_shift(pmax);
    for (uint32_t i = 0; i < n; i++) {
        g[i] = tt_g16((int64_t)g[i] * pm[i % C], e);
    }
    return (sg * tt_pow2f((int32_t)e - 31)) * L->wscale_max;
}
