/*
 * Depthwise kernels, reference versions (the input gradient is tt_conv.c's):
 * output rows [R->oh0, R->oh1) (tt_rows), int32 accumulation, one
 * requantisation rule.
 */
#include "tt_kernels.h"

/* Output rows [R->oh0, R->oh1) of a depthwise conv (see tt_rows). */
void tt_dwconv_ref(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    int8_t *y = R->y;
    uint8_t *mask = R->mask;
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const int32_t *mult = P.mult;
    const int8_t *shift = P.shift;
    const uint16_t *perm = P.perm;
    const uint32_t C = out->c, kk = (uint32_t)L->kh * L->kw;
    const uint32_t base = R->oh0 * out->w * C; /* element index of y[0] */
    const int32_t zx = in->zero;
    for (uint32_t j = 0; j < C; j++) {
        /* storage position j holds channel c */
        const uint32_t c = perm ? perm[j] : j;
        const int8_t *w = tt_dw_taps(&P, L, j, kk);
        for (uint32_t oh = R->oh0; oh < R->oh1; oh++) {
            for (uint32_t ow = 0; ow < out->w; ow++) {
                int32_t acc = tt_bias_at(&P, c);
                uint32_t idx = (oh * out->w + ow) * C + c;
                for (uint32_t kh = 0; kh < L->kh; kh++) {
                    int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
                    const int8_t *xrow;
                    if (ih < 0 || ih >= in->h) {
                        continue;
                    }
                    xrow = R->x + ((uint32_t)ih - R->row0) * in->w * C;
                    for (uint32_t kw = 0; kw < L->kw; kw++) {
                        int32_t iw = (int32_t)(ow * L->stride + kw) - L->pad_left;
                        if (iw < 0 || iw >= in->w) {
                            continue;
                        }
                        acc += (int32_t)w[kh * L->kw + kw] * (xrow[(uint32_t)iw * C + c] - zx);
                    }
                }
                y[idx - base] = tt_finish(tt_requant(acc, mult[c], (uint32_t)shift[c]), out->zero, L, mask, idx);
            }
        }
    }
}
