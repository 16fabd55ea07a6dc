/*
 * Forward kernels, reference versions: int8 NHWC in and out, int32
 * accumulation, one requantisation rule (tt_arith.h). While training they
 * also write the clamp mask and the trained input channels a weight update
 * will need; nothing else of the forward pass is kept.
 */
#include <string.h>
#include "tt_internal.h"
#include "tt_opt.h"

/* Output value and clamp-mask bit from a requantised accumulator. */
static inline int8_t finish(int64_t v, int32_t zero, const tt_layer_rec *L, uint8_t *mask, uint32_t idx) {
    int64_t q = v + zero;
    if (mask && q >= L->act_min && q <= L->act_max) {
        mask[idx >> 3] |= (uint8_t)(1u << (idx & 7u)); /* the mask was cleared first */
    }
    return (int8_t)tt_clamp32(q, L->act_min, L->act_max);
}

static const uint16_t *perm_of(const tt_model *m, const tt_layer_rec *L) {
    return L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
}

/* Trained input channels of a weight-trained layer, in storage order. */
static void save_input(tt_trainer *t, const tt_layer_rec *L, uint32_t saved_id) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *s = tt_act_data(t, saved_id);
    const uint16_t *perm = perm_of(&t->model, L);
    uint32_t hw = (uint32_t)in->h * in->w, nt = L->n_train;
    for (uint32_t p = 0; p < hw; p++) {
        for (uint32_t j = 0; j < nt; j++) {
            s[p * nt + j] = x[p * in->c + perm[j]];
        }
    }
}

static void conv(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *y = tt_act_data(t, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const int32_t *bias = (L->flags & TT_LF_TRAIN_BIAS) ? TT_ARENA(t, int32_t, L->b_arena)
                                                        : TT_BLOB(m, int32_t, L->b_off);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint16_t *perm = perm_of(m, L);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train;
    const int32_t zx = in->zero;
    uint32_t idx = 0;
    for (uint32_t oh = 0; oh < out->h; oh++) {
        for (uint32_t ow = 0; ow < out->w; ow++) {
            for (uint32_t c = 0; c < cout; c++, idx++) {
                int32_t acc = bias[c];
                for (uint32_t kh = 0; kh < L->kh; kh++) {
                    int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
                    if (ih < 0 || ih >= in->h) {
                        continue; /* padding holds the zero point: adds nothing */
                    }
                    for (uint32_t kw = 0; kw < L->kw; kw++) {
                        int32_t iw = (int32_t)(ow * L->stride + kw) - L->pad_left;
                        const int8_t *xp, *wfp;
                        uint32_t r;
                        if (iw < 0 || iw >= in->w) {
                            continue;
                        }
                        xp = x + ((uint32_t)ih * in->w + (uint32_t)iw) * cin;
                        r = (c * L->kh + kh) * L->kw + kw;
                        wfp = wf + r * cin;
                        if (!perm) {
                            for (uint32_t j = 0; j < cin; j++) {
                                acc += (int32_t)wfp[j] * (xp[j] - zx);
                            }
                            continue;
                        }
                        for (uint32_t j = 0; j < nt; j++) {
                            acc += (int32_t)wt[r * nt + j] * (xp[perm[j]] - zx);
                        }
                        for (uint32_t j = nt; j < cin; j++) {
                            acc += (int32_t)wfp[j] * (xp[perm[j]] - zx);
                        }
                    }
                }
                y[idx] = finish(tt_requant(acc, mult[c], (uint32_t)shift[c]), out->zero, L, mask, idx);
            }
        }
    }
}

static void dwconv(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *y = tt_act_data(t, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const int32_t *bias = (L->flags & TT_LF_TRAIN_BIAS) ? TT_ARENA(t, int32_t, L->b_arena)
                                                        : TT_BLOB(m, int32_t, L->b_off);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint16_t *perm = perm_of(m, L);
    const uint32_t C = out->c, kk = (uint32_t)L->kh * L->kw;
    const int32_t zx = in->zero;
    for (uint32_t j = 0; j < C; j++) {
        /* storage position j holds channel c */
        const uint32_t c = perm ? perm[j] : j;
        const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
        for (uint32_t oh = 0; oh < out->h; oh++) {
            for (uint32_t ow = 0; ow < out->w; ow++) {
                int32_t acc = bias[c];
                uint32_t idx = (oh * out->w + ow) * C + c;
                for (uint32_t kh = 0; kh < L->kh; kh++) {
                    int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
                    if (ih < 0 || ih >= in->h) {
                        continue;
                    }
                    for (uint32_t kw = 0; kw < L->kw; kw++) {
                        int32_t iw = (int32_t)(ow * L->stride + kw) - L->pad_left;
                        if (iw < 0 || iw >= in->w) {
                            continue;
                        }
                        acc += (int32_t)w[kh * L->kw + kw] * (x[((uint32_t)ih * in->w + (uint32_t)iw) * C + c] - zx);
                    }
                }
                y[idx] = finish(tt_requant(acc, mult[c], (uint32_t)shift[c]), out->zero, L, mask, idx);
            }
        }
    }
}

static void add(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *a = tt_tensor(m, L->in), *b = tt_tensor(m, L->in2), *out = tt_tensor(m, L->out);
    const int8_t *xa = tt_act_data(t, L->in), *xb = tt_act_data(t, L->in2);
    int8_t *y = tt_act_data(t, L->out);
    const uint32_t n = tt_numel(out);
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = (int64_t)(xa[i] - a->zero) * L->mult_a + (int64_t)(xb[i] - b->zero) * L->mult_b;
        y[i] = finish(tt_round_shift(v, L->shift), out->zero, L, mask, i);
    }
}

static void avgpool(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
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
        y[c] = finish(tt_requant(sum, L->mult_a, L->shift), out->zero, L, mask, c);
    }
}

void tt_forward_layer(tt_trainer *t, const tt_layer_rec *L, uint32_t mask_id, uint32_t saved_id) {
    uint8_t *mask = NULL;
    if (mask_id != TT_NONE) {
        mask = TT_ARENA(t, uint8_t, t->model.tensors[mask_id].arena_off);
        memset(mask, 0, t->model.tensors[mask_id].size);
    }
    if (saved_id != TT_NONE) {
        save_input(t, L, saved_id);
    }
    switch (L->kind) {
    case TT_L_CONV:
#if TT_OPTIMIZED
        if (tt_conv_opt(t, L, mask)) {
            break;
        }
#endif
        conv(t, L, mask);
        break;
    case TT_L_DWCONV:
#if TT_OPTIMIZED
        if (tt_dwconv_opt(t, L, mask)) {
            break;
        }
#endif
        dwconv(t, L, mask);
        break;
    case TT_L_ADD:
#if TT_OPTIMIZED
        if (tt_add_opt(t, L, mask)) {
            break;
        }
#endif
        add(t, L, mask);
        break;
    default:
        avgpool(t, L, mask);
        break;
    }
}
