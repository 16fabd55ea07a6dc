/*
 * Windowed pools (kernel kh x kw, one stride, top/left padding), forward and
 * backward: max pool and average pool (docs/arithmetic.md, "Other layers").
 * What they assume, checked at open (tt_model.c, check_pool2d): every output
 * window starts inside the padded input and the padding is below the kernel,
 * so each window holds at least one input element; a max pool's input and
 * output share scale and zero point; an average pool has kh * kw multipliers
 * and shifts, one per count of input elements a window covers (with the
 * flag COUNT_PAD every window counts kh * kw).
 */
#include "tt_kernels.h"

/* The input rows [ih0, ih1) and columns [iw0, iw1) of output window (oh, ow). */
typedef struct {
    int32_t ih0, ih1, iw0, iw1;
} window;

static window window_of(const tt_layer_rec *L, const tt_tensor_rec *in, uint32_t oh, uint32_t ow) {
    window w;
    w.ih0 = (int32_t)(oh * L->stride) - L->pad_top;
    w.iw0 = (int32_t)(ow * L->stride) - L->pad_left;
    w.ih1 = w.ih0 + L->kh;
    w.iw1 = w.iw0 + L->kw;
    w.ih0 = w.ih0 < 0 ? 0 : w.ih0;
    w.iw0 = w.iw0 < 0 ? 0 : w.iw0;
    w.ih1 = w.ih1 > (int32_t)in->h ? (int32_t)in->h : w.ih1;
    w.iw1 = w.iw1 > (int32_t)in->w ? (int32_t)in->w : w.iw1;
    return w;
}

/* The count an average pool divides window w by. */
static uint32_t count_of(const tt_layer_rec *L, window w) {
    return (L->flags & TT_LF_COUNT_PAD) ? (uint32_t)L->kh * L->kw : (uint32_t)((w.ih1 - w.ih0) * (w.iw1 - w.iw0));
}

/* Element index of the first maximum of channel c in window w (row by row). */
static uint32_t argmax_of(const int8_t *x, const tt_tensor_rec *in, window w, uint32_t c) {
    uint32_t best = ((uint32_t)w.ih0 * in->w + (uint32_t)w.iw0) * in->c + c;
    for (int32_t ih = w.ih0; ih < w.ih1; ih++) {
        for (int32_t iw = w.iw0; iw < w.iw1; iw++) {
            const uint32_t i = ((uint32_t)ih * in->w + (uint32_t)iw) * in->c + c;
            best = x[i] > x[best] ? i : best;
        }
    }
    return best;
}

void tt_maxpool_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *y = tt_act_data(t, L->out);
    for (uint32_t oh = 0; oh < out->h; oh++) {
        for (uint32_t ow = 0; ow < out->w; ow++) {
            const window w = window_of(L, in, oh, ow);
            for (uint32_t c = 0; c < out->c; c++) {
                const uint32_t idx = (oh * out->w + ow) * out->c + c;
                y[idx] = tt_finish(x[argmax_of(x, in, w, c)], 0, L, mask, idx);
            }
        }
    }
}

void tt_avgpool2d_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *y = tt_act_data(t, L->out);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    for (uint32_t oh = 0; oh < out->h; oh++) {
        for (uint32_t ow = 0; ow < out->w; ow++) {
            const window w = window_of(L, in, oh, ow);
            const uint32_t n = count_of(L, w);
            for (uint32_t c = 0; c < out->c; c++) {
                const uint32_t idx = (oh * out->w + ow) * out->c + c;
                int32_t sum = 0;
                for (int32_t ih = w.ih0; ih < w.ih1; ih++) {
                    for (int32_t iw = w.iw0; iw < w.iw1; iw++) {
                        sum += x[((uint32_t)ih * in->w + (uint32_t)iw) * in->c + c] - in->zero;
                    }
                }
                y[idx] = tt_finish(tt_requant(sum, mult[n - 1u], (uint32_t)shift[n - 1u]), out->zero, L, mask,
                                   idx);
            }
        }
    }
}

/* 1 / n in Q24, rounded half up: an average pool's backward weight of a
   window of n input elements. */
static int64_t inv_q24(uint32_t n) {
    return (int64_t)(((1u << 24) + n / 2u) / n);
}

/* The input-gradient sum of element (ih, iw, c) over the output windows
   that cover it: a max pool adds the gradient of each window whose first
   maximum it is; an average pool each window's gradient times 1/n in Q24. */
static int64_t pool_grad_sum(const tt_trainer *t, const tt_layer_rec *L, const int16_t *g, const int8_t *x,
                             uint32_t ih, uint32_t iw, uint32_t c) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in), *out = tt_tensor(&t->model, L->out);
    const uint32_t self = (ih * in->w + iw) * in->c + c;
    int64_t acc = 0;
    for (uint32_t kh = 0; kh < L->kh; kh++) {
        const int32_t num = (int32_t)ih + L->pad_top - (int32_t)kh;
        if (num < 0 || num % L->stride || (uint32_t)(num / L->stride) >= out->h) {
            continue;
        }
        for (uint32_t kw = 0; kw < L->kw; kw++) {
            const int32_t numw = (int32_t)iw + L->pad_left - (int32_t)kw;
            uint32_t oh, ow;
            window w;
            if (numw < 0 || numw % L->stride || (uint32_t)(numw / L->stride) >= out->w) {
                continue;
            }
            oh = (uint32_t)(num / L->stride);
            ow = (uint32_t)(numw / L->stride);
            w = window_of(L, in, oh, ow);
            if (L->kind == TT_L_MAXPOOL) {
                if (argmax_of(x, in, w, c) == self) {
                    acc += g[(oh * out->w + ow) * out->c + c];
                }
            } else {
                acc += g[(oh * out->w + ow) * out->c + c] * inv_q24(count_of(L, w));
            }
        }
    }
    return acc;
}

/* dX = to16 of the sums above (two passes: the largest, then the values);
   scale s_g (max) or s_g 2^-24 (average). x: the saved input (max pool). */
void tt_pool2d_backward(tt_trainer *t, const tt_layer_rec *L, uint32_t g_id, uint32_t saved_id, uint32_t dx_id) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in);
    const int16_t *g = tt_grad_data(t, g_id);
    const int8_t *x = L->kind == TT_L_MAXPOOL ? tt_act_data(t, saved_id) : NULL;
    const float sg = *tt_grad_scale(t, g_id);
    tt_g16_sink s = {NULL, 0u, 0u};
    for (uint32_t pass = 0; pass < 2u; pass++) {
        if (pass) {
            s.dx = tt_grad_data(t, dx_id);
            s.e = tt_g16_shift(s.vmax);
        }
        for (uint32_t ih = 0; ih < in->h; ih++) {
            for (uint32_t iw = 0; iw < in->w; iw++) {
                for (uint32_t c = 0; c < in->c; c++) {
                    tt_g16_put(&s, (ih * in->w + iw) * in->c + c, pool_grad_sum(t, L, g, x, ih, iw, c));
                }
            }
        }
    }
    {
        const float s0 = L->kind == TT_L_MAXPOOL ? sg : sg * tt_pow2f(-24);
        *tt_grad_scale(t, dx_id) = s.vmax == 0 ? 0.0f : (s.e ? s0 * tt_pow2f((int32_t)s.e) : s0);
    }
}
