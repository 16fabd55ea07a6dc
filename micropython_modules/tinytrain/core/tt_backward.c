/*
 * Backward kernels, reference versions.
 *
 * Gradients are block floating point: int32 values and one float scale per
 * tensor (docs/arithmetic.md). Per layer, in this order:
 *   1. clamp mask on the output gradient;
 *   2. bias gradient, applied at once;
 *   3. input gradient (if needed), with the weights as they were;
 *   4. weight gradient of the trained channels, each element applied as soon
 *      as it is summed (the weight-gradient tensor never exists).
 * All sums are integer (int64); floats only scale single elements.
 */
#include <string.h>
#include "tt_internal.h"
#include "tt_opt.h"

#define BIAS_LIMIT (1 << 30)
#define GRAD_HOOK_BIAS 0x80000000u

static void apply_mask(int32_t *g, const uint8_t *mask, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (!((mask[i >> 3] >> (i & 7u)) & 1u)) {
            g[i] = 0;
        }
    }
}

/* QAS-scaled SGD on one int8 weight: w -= round(u), u in weight units. With a
   residue, w carries 8 more fraction bits so small updates accumulate. */
static void update_weight(int8_t *w, int8_t *res, float u) {
    if (res) {
        int32_t total = (int32_t)*w * 256 + *res - tt_rint_sat(u * 256.0f, 65535);
        int32_t q;
        total = tt_clamp32(total, -127 * 256, 127 * 256);
        q = (total + 128) >> 8;
        *w = (int8_t)q;
        *res = (int8_t)(total - q * 256);
    } else {
        *w = (int8_t)tt_clamp32((int32_t)*w - tt_rint_sat(u, 255), -127, 127);
    }
}

static void update_biases(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g,
                          uint32_t npos, uint32_t C, float sg, float k) {
    int32_t *b = TT_ARENA(t, int32_t, L->b_arena);
    const float *qas = TT_BLOB(&t->model, float, L->qas_b_off);
    for (uint32_t c = 0; c < C; c++) {
        int64_t a = 0;
        for (uint32_t p = 0; p < npos; p++) {
            a += g[p * C + c];
        }
        if (t->grad_hook) {
            t->grad_hook(t->grad_hook_ctx, li, GRAD_HOOK_BIAS | c, a, sg);
        }
        b[c] = tt_clamp32((int64_t)b[c] - tt_rint_sat((tt_f32_from_i64(a) * k) * qas[c], BIAS_LIMIT),
                          -BIAS_LIMIT, BIAS_LIMIT);
    }
}

/* Sum over the output positions that weight tap (kh, kw) touched. */
static int64_t weight_grad(const tt_layer_rec *L, const tt_tensor_rec *in, const tt_tensor_rec *out,
                           const int32_t *g, uint32_t gstride, const int8_t *s, uint32_t sstride,
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

static void update_weights(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g,
                           uint32_t saved_id, float sg, float k, const float *hook_div) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, saved_id);
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const float scale = sg * in->scale; /* real gradient = acc * scale */
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
                    t->grad_hook(t->grad_hook_ctx, li, idx, a, scale / (hook_div ? hook_div[ch] : 1.0f));
                }
                update_weight(w + idx, res ? res + idx : NULL, (tt_f32_from_i64(a) * k) * qas[ch]);
            }
        }
    }
}

/* Fold the per-channel weight scales into the gradient and renormalise it so
   its largest magnitude is just under 2^24. Returns the new tensor scale
   (0 when the gradient is all zero). */
static float prescale(const tt_model *m, const tt_layer_rec *L, int32_t *g, uint32_t n, uint32_t C, float sg) {
    const int32_t *pm = TT_BLOB(m, int32_t, L->gscale_off);
    uint64_t gmax = 0;
    int32_t k;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a = tt_abs64(g[i]);
        gmax = a > gmax ? a : gmax;
    }
    if (gmax == 0 || !(sg > 0.0f)) {
        return 0.0f;
    }
    k = 24 - (int32_t)tt_bitlen64(gmax);
    for (uint32_t i = 0; i < n; i++) {
        g[i] = (int32_t)tt_round_shift((int64_t)g[i] * pm[i % C], (uint32_t)(31 - k));
    }
    return (sg * tt_pow2f(-k)) * L->wscale_max;
}

static void input_grad_conv(tt_trainer *t, const tt_layer_rec *L, const int32_t *g, float sgp, uint32_t dx_id) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
    const int dw = L->kind == TT_L_DWCONV;
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, kk = (uint32_t)L->kh * L->kw;
    const uint32_t r = tt_bitlen64(dw ? kk : kk * cout);
    int32_t *dx = tt_grad_data(t, dx_id);
    *tt_grad_scale(t, dx_id) = sgp == 0.0f ? 0.0f : sgp * tt_pow2f((int32_t)r);
    if (sgp == 0.0f) {
        memset(dx, 0, 4u * tt_numel(in));
        return;
    }
    for (uint32_t ih = 0; ih < in->h; ih++) {
        for (uint32_t iw = 0; iw < in->w; iw++) {
            for (uint32_t j = 0; j < cin; j++) {
                const uint32_t ci = perm ? perm[j] : j;
                int64_t acc = 0;
                for (uint32_t kh = 0; kh < L->kh; kh++) {
                    int32_t num = (int32_t)ih + L->pad_top - (int32_t)kh, oh;
                    if (num < 0 || num % L->stride) {
                        continue;
                    }
                    oh = num / L->stride;
                    if (oh >= out->h) {
                        continue;
                    }
                    for (uint32_t kw = 0; kw < L->kw; kw++) {
                        int32_t numw = (int32_t)iw + L->pad_left - (int32_t)kw, ow;
                        const int32_t *gp;
                        if (numw < 0 || numw % L->stride) {
                            continue;
                        }
                        ow = numw / L->stride;
                        if (ow >= out->w) {
                            continue;
                        }
                        gp = g + ((uint32_t)oh * out->w + (uint32_t)ow) * cout;
                        if (dw) {
                            const int8_t *w = j < nt ? wt + j * kk : wf + j * kk;
                            acc += (int64_t)w[kh * L->kw + kw] * gp[ci];
                            continue;
                        }
                        for (uint32_t c = 0; c < cout; c++) {
                            uint32_t rr = (c * L->kh + kh) * L->kw + kw;
                            int8_t w = j < nt ? wt[rr * nt + j] : wf[rr * cin + j];
                            acc += (int64_t)w * gp[c];
                        }
                    }
                }
                dx[(ih * in->w + iw) * cin + ci] = tt_clamp32(tt_round_shift(acc, r), INT32_MIN, INT32_MAX);
            }
        }
    }
}

static void copy_grad(tt_trainer *t, uint32_t from, uint32_t to) {
    if (to != TT_NONE && to != from) {
        memcpy(t->arena + t->model.tensors[to].arena_off, t->arena + t->model.tensors[from].arena_off,
               t->model.tensors[from].size);
    }
}

void tt_backward_layer(tt_trainer *t, uint32_t li, const tt_op_rec *op) {
    const tt_model *m = &t->model;
    const tt_layer_rec *L = &m->layers[li];
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    int32_t *g = tt_grad_data(t, op->t[0]);
    const float sg = *tt_grad_scale(t, op->t[0]);
    const uint32_t n = tt_numel(out);
    if (op->t[1] != TT_NONE) {
#if TT_OPTIMIZED
        if (!tt_apply_mask_opt(g, TT_ARENA(t, uint8_t, m->tensors[op->t[1]].arena_off), n))
#endif
            apply_mask(g, TT_ARENA(t, uint8_t, m->tensors[op->t[1]].arena_off), n);
    }
    if (L->kind == TT_L_ADD) {
        copy_grad(t, op->t[0], op->t[3]);
        copy_grad(t, op->t[0], op->t[4]);
        return;
    }
    if (L->kind == TT_L_AVGPOOL) {
        const uint32_t hw = (uint32_t)in->h * in->w;
        int32_t *dx = tt_grad_data(t, op->t[3]);
        if (op->t[3] == TT_NONE) {
            return;
        }
        for (uint32_t p = 0; p < hw; p++) {
            memcpy(dx + p * in->c, g, 4u * in->c);
        }
        *tt_grad_scale(t, op->t[3]) = sg / (float)hw;
        return;
    }
    {
        const float k = (t->lr * L->lr_scale) * sg;
        const uint32_t npos = (uint32_t)out->h * out->w;
        if (L->flags & TT_LF_TRAIN_BIAS) {
#if TT_OPTIMIZED
            if (!tt_update_biases_opt(t, li, L, g, npos, out->c, sg, k))
#endif
                update_biases(t, li, L, g, npos, out->c, sg, k);
        }
        if (op->t[3] != TT_NONE) {
            /* The input gradient is taken with the weights before this step's
               update (true SGD); the weight update then reads the prescaled
               gradient G' = G s_w[c] / s_wmax 2^k, and the model's weight
               factors for such a layer carry the extra 1/s_w[c]. */
            float sgp;
            const float *hook_div = t->grad_hook && L->wscale_off != TT_NO_OFFSET
                                        ? TT_BLOB(m, float, L->wscale_off) : NULL;
#if TT_OPTIMIZED
            if (!tt_prescale_opt(m, L, g, n, out->c, sg, &sgp))
#endif
                sgp = prescale(m, L, g, n, out->c, sg);
#if TT_OPTIMIZED
            if (!tt_input_grad_opt(t, L, g, sgp, op->t[3]))
#endif
                input_grad_conv(t, L, g, sgp, op->t[3]);
            if (L->n_train) {
                const float kp = (t->lr * L->lr_scale) * sgp;
#if TT_OPTIMIZED
                if (!tt_update_weights_opt(t, li, L, g, op->t[2], sgp, kp, hook_div))
#endif
                    update_weights(t, li, L, g, op->t[2], sgp, kp, hook_div);
            }
        } else if (L->n_train) {
#if TT_OPTIMIZED
            if (!tt_update_weights_opt(t, li, L, g, op->t[2], sg, k, NULL))
#endif
                update_weights(t, li, L, g, op->t[2], sg, k, NULL);
        }
    }
}

void tt_grad_add(tt_trainer *t, uint32_t a_id, uint32_t b_id) {
    int32_t *a = tt_grad_data(t, a_id);
    const int32_t *b = tt_grad_data(t, b_id);
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
        for (uint32_t i = 0; i < n; i++) {
            a[i] = tt_clamp32(tt_round_shift(a[i], 1) + tt_requant(b[i], mult, shift + 1u), INT32_MIN, INT32_MAX);
        }
        *sa = *sa * 2.0f;
    } else {
        tt_float_to_q31(*sa / sb, &mult, &shift);
        for (uint32_t i = 0; i < n; i++) {
            a[i] = tt_clamp32(tt_requant(a[i], mult, shift + 1u) + tt_round_shift(b[i], 1), INT32_MIN, INT32_MAX);
        }
        *sa = sb * 2.0f;
    }
}
