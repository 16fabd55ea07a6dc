/*
 * The kernels, one family a file (docs/kernels.md): <family>.c holds the
 * reference kernels, <family>_opt.c the optimised ones (tt_opt.h). The
 * dispatch (tt_forward.c, tt_fused.c, tt_backward.c) runs an optimised
 * kernel where it handles the case and the reference otherwise.
 *
 * What every kernel may assume (checked when the model was opened,
 * tt_model.c): tensor ids, shapes, arena and blob offsets of the layer are
 * valid and aligned; an activation is int8 NHWC; a gradient is a float
 * scale then int16 values (tt_grad_scale, tt_grad_data); weights are stored
 * [cout][kh][kw][cin] (conv) or [c][kh][kw] (depthwise) in storage order
 * (perm), the first n_train input positions in the arena.
 */
#ifndef TT_KERNELS_H
#define TT_KERNELS_H

#include "tt_internal.h"

/* Output rows [oh0, oh1) of a conv or depthwise layer. Input row r lies at
   x + (r - row0) * (in.w * in.c): the whole input (row0 = 0) or the rows a
   fused op holds (every row the output rows read is there). Output row oh0
   starts at y; mask (or NULL) is the whole output's, indexed by element of
   the full tensor. prep (or NULL): what the layer's optimised kernel made
   of its constants once for all rows (tt_prepare: the rows of a fused op,
   the pixel blocks of a 1x1 layer); the other kernels ignore it. */
typedef struct {
    const int8_t *x;
    uint32_t row0;
    int8_t *y;
    uint8_t *mask;
    uint32_t oh0, oh1;
    const uint32_t *prep;
} tt_rows;

/* Channel of each storage position, or NULL when storage order is channel order. */
static inline const uint16_t *tt_perm_of(const tt_model *m, const tt_layer_rec *L) {
    return L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
}

/* What a forward conv or depthwise kernel reads of its layer besides the
   tensors, found in one place: frozen weights (model), trained weights
   (arena, or NULL), biases, per-channel requantisation, storage order.
   Biases: int32, the arena's when they are trained, else the model's; a
   layer with int16 bias changes (TT_LF_BIAS16) has the model's in bias and
   the arena's changes in bias16 (else NULL): read them with tt_bias_at. */
typedef struct {
    const int8_t *wf, *wt;
    const int32_t *bias, *mult;
    const int16_t *bias16;
    const int8_t *shift;
    const uint16_t *perm;
} tt_fwd_params;

/* The bias of output channel c: bias[c], plus bias16[c] when bias16 is
   not NULL (|file bias| <= 2^30 plus an int16 change: no overflow). */
static inline int32_t tt_bias_add16(const int32_t *bias, const int16_t *bias16, uint32_t c) {
    return bias16 ? bias[c] + bias16[c] : bias[c];
}
static inline int32_t tt_bias_at(const tt_fwd_params *P, uint32_t c) {
    return tt_bias_add16(P->bias, P->bias16, c);
}

static inline tt_fwd_params tt_fwd_params_of(tt_trainer *t, const tt_layer_rec *L) {
    const tt_model *m = &t->model;
    tt_fwd_params P;
    P.wf = tt_weights_frozen(m, L);
    P.wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    P.bias16 = (L->flags & TT_LF_BIAS16) ? TT_ARENA(t, int16_t, L->b_arena) : NULL;
    P.bias = (L->flags & TT_LF_TRAIN_BIAS) && !P.bias16 ? TT_ARENA(t, int32_t, L->b_arena)
                                                        : TT_BLOB(m, int32_t, L->b_off);
    P.mult = TT_BLOB(m, int32_t, L->mult_off);
    P.shift = TT_BLOB(m, int8_t, L->shift_off);
    P.perm = tt_perm_of(m, L);
    return P;
}

/* The kk taps of depthwise storage position j: trained (the first n_train
   positions) or frozen. */
static inline const int8_t *tt_dw_taps(const tt_fwd_params *P, const tt_layer_rec *L, uint32_t j, uint32_t kk) {
    return j < L->n_train ? P->wt + j * kk : P->wf + j * kk;
}

/* Output value and clamp-mask bit from a requantised accumulator (the
   reference kernels' one rule; the mask was cleared first). */
static inline int8_t tt_finish(int64_t v, int32_t zero, const tt_layer_rec *L, uint8_t *mask, uint32_t idx) {
    int64_t q = v + zero;
    if (mask && q >= L->act_min && q <= L->act_max) {
        mask[idx >> 3] |= (uint8_t)(1u << (idx & 7u));
    }
    return (int8_t)tt_clamp32(q, L->act_min, L->act_max);
}

/* Bias update limits and the grad hook's bias flag (tt_update.c, tt_update_opt.c). */
#define TT_BIAS_LIMIT (1 << 30)
#define TT_GRAD_HOOK_BIAS 0x80000000u

/* QAS-scaled SGD on trained bias c, u in bias units (docs/arithmetic.md):
   b -= rint(u), saturating at +-2^30, or (TT_LF_BIAS16) the int16 change
   saturating at the int16 limits. The one rounding step of every bias
   update kernel. */
static inline void tt_bias_apply(tt_trainer *t, const tt_layer_rec *L, uint32_t c, int32_t r);
static inline void tt_bias_step(tt_trainer *t, const tt_layer_rec *L, uint32_t c, float u) {
    tt_bias_apply(t, L, c, tt_rint_sat(u, TT_BIAS_LIMIT));
}
/* tt_bias_step's change, r = tt_rint_sat(u, TT_BIAS_LIMIT), applied. */
static inline void tt_bias_apply(tt_trainer *t, const tt_layer_rec *L, uint32_t c, int32_t r) {
    if (L->flags & TT_LF_BIAS16) {
        int16_t *d = TT_ARENA(t, int16_t, L->b_arena);
        d[c] = (int16_t)tt_clamp32((int64_t)d[c] - r, -32768, 32767);
    } else {
        int32_t *b = TT_ARENA(t, int32_t, L->b_arena);
        b[c] = tt_clamp32((int64_t)b[c] - r, -TT_BIAS_LIMIT, TT_BIAS_LIMIT);
    }
}

/* What a weight update reads besides the layer (CMSIS-NN style: one struct
   of parameters, the same for the reference and the optimised kernel). */
typedef struct {
    uint32_t li;            /* layer index, for the grad hook */
    const int16_t *g;       /* output gradient (prescaled when an input gradient ran) */
    uint32_t saved_id;      /* the saved trained input channels */
    float sg;               /* scale of g */
    float k;                /* f32(f32(lr * lr_scale) * sg) */
    const float *hook_div;  /* per output channel divisor of the hook's scale, or NULL */
} tt_update_params;

/* QAS-scaled SGD on one int8 weight, u in weight units (docs/arithmetic.md):
   w -= rint(u); with a residue r, w carries 8 more fraction bits so small
   updates accumulate. The one rounding step of every weight update kernel. */
static inline void tt_weight_apply(int8_t *w, int8_t *res, int32_t r);
static inline void tt_weight_step(int8_t *w, int8_t *res, float u) {
    tt_weight_apply(w, res, res ? tt_rint_sat(u * 256.0f, 65535) : tt_rint_sat(u, 255));
}
/* tt_weight_step's change applied: r = tt_rint_sat(u * 256, 65535) with a
   residue, else tt_rint_sat(u, 255). */
static inline void tt_weight_apply(int8_t *w, int8_t *res, int32_t r) {
    if (res) {
        int32_t total = (int32_t)*w * 256 + *res - r;
        int32_t q;
        total = tt_clamp32(total, -127 * 256, 127 * 256);
        q = (total + 128) >> 8;
        *w = (int8_t)q;
        *res = (int8_t)(total - q * 256);
    } else {
        *w = (int8_t)tt_clamp32((int32_t)*w - r, -127, 127);
    }
}

/* tt_forward.c: the rows R of a conv or depthwise layer, optimised or reference. */
void tt_conv_rows(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);

/* ---- reference kernels ---- */

/* tt_conv.c: any conv (k x k, stride, padding, perm, trained channels, the FC head). */
void tt_conv_ref(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);
/* tt_conv.c: input gradient sums of a conv or depthwise layer, sum w g, into
   a sink (tt_backward.c runs it twice and stores to16); input rows of each
   channel in increasing order (an in-place depthwise backward relies on it). */
void tt_input_grad_ref(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx);
/* tt_depthwise.c */
void tt_dwconv_ref(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);
/* tt_add.c: y = rs((a - za) ma + (b - zb) mb, shift) + zy, clamped. */
void tt_add_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
void tt_add_backward(tt_trainer *t, uint32_t g_id, uint32_t da_id, uint32_t db_id);
/* tt_pool.c: global average pool, forward and backward. */
void tt_avgpool_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
void tt_avgpool_backward(tt_trainer *t, const tt_layer_rec *L, uint32_t g_id, uint32_t dx_id);
/* tt_pool2d.c: windowed max and average pools; the backward of either
   (saved_id: the max pool's saved input, else TT_NONE). */
void tt_maxpool_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
void tt_avgpool2d_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
void tt_pool2d_backward(tt_trainer *t, const tt_layer_rec *L, uint32_t g_id, uint32_t saved_id, uint32_t dx_id);
/* tt_lut.c: activation tables, forward and backward (saved_id: the saved input). */
void tt_lut_ref(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
void tt_lut_backward(tt_trainer *t, const tt_layer_rec *L, uint32_t g_id, uint32_t saved_id, uint32_t dx_id);
/* tt_mask.c: g[i] = 0 where the forward pass clamped (mask bit 0). */
void tt_apply_mask_ref(int16_t *g, const uint8_t *mask, uint32_t n);
/* tt_update.c: bias and weight gradients, each applied as soon as it is summed (QAS SGD). */
void tt_update_biases_ref(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int16_t *g, uint32_t npos,
                          uint32_t C, float sg, float k);
void tt_update_weights_ref(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P);
float tt_prescale_ref(const tt_model *m, const tt_layer_rec *L, int16_t *g, uint32_t n, uint32_t C, float sg);

#endif
