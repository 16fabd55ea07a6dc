/*
 * Conv kernels, reference versions: any conv (k x k, stride, padding,
 * permuted and trained input channels, 1x1, the FC head), int8 NHWC in and
 * out, int32 accumulation, one requantisation rule (tt_arith.h). The
 * forward kernel computes a range of output rows (tt_rows) so a fused op can
 * run it row by row. The input gradient here serves depthwise layers too.
 */
#include <string.h>
#include "tt_kernels.h"

/* Output rows [R->oh0, R->oh1) of a conv (see tt_rows). */
void tt_conv_ref(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    int8_t *y = R->y;
    uint8_t *mask = R->mask;
    const tt_fwd_params P = tt_fwd_params_of(t, L);
    const int8_t *wf = P.wf, *wt = P.wt, *shift = P.shift;
    const int32_t *mult = P.mult;
    const uint16_t *perm = P.perm;
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train;
    const uint32_t base = R->oh0 * out->w * cout; /* element index of y[0] */
    const int32_t zx = in->zero;
    uint32_t idx = base;
    for (uint32_t oh = R->oh0; oh < R->oh1; oh++) {
        for (uint32_t ow = 0; ow < out->w; ow++) {
            for (uint32_t c = 0; c < cout; c++, idx++) {
                int32_t acc = tt_bias_at(&P, c);
                for (uint32_t kh = 0; kh < L->kh; kh++) {
                    int32_t ih = (int32_t)(oh * L->stride + kh) - L->pad_top;
                    const int8_t *xrow;
                    if (ih < 0 || ih >= in->h) {
                        continue; /* padding holds the zero point: adds nothing */
                    }
                    xrow = R->x + ((uint32_t)ih - R->row0) * in->w * cin;
                    for (uint32_t kw = 0; kw < L->kw; kw++) {
                        int32_t iw = (int32_t)(ow * L->stride + kw) - L->pad_left;
                        const int8_t *xp, *wfp;
                        uint32_t r;
                        if (iw < 0 || iw >= in->w) {
                            continue;
                        }
                        xp = xrow + (uint32_t)iw * cin;
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
                y[idx - base] = tt_finish(tt_requant(acc, mult[c], (uint32_t)shift[c]), out->zero, L, mask, idx);
            }
        }
    }
}

void tt_input_grad_ref(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = tt_perm_of(m, L);
    const int dw = L->kind == TT_L_DWCONV;
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, kk = (uint32_t)L->kh * L->kw;
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
                        const int16_t *gp;
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
                tt_g16_put(dx, (ih * in->w + iw) * cin + ci, acc);
            }
        }
    }
}
