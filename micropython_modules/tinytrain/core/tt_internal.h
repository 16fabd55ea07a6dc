/* Shared by the core's own files only. */
#ifndef TT_INTERNAL_H
#define TT_INTERNAL_H

#include "tt_core.h"
#include "tt_arith.h"

/* Optimised kernels beside the reference ones (kernels/tt_opt.h); 0 builds
   the reference kernels only. */
#ifndef TT_OPTIMIZED
#define TT_OPTIMIZED 1
#endif

/* printf-like, supporting only %u %d %s; never writes past the buffer. */
tt_status tt_fail(tt_error *err, tt_status code, const char *fmt, ...);

static inline const tt_tensor_rec *tt_tensor(const tt_model *m, uint32_t id) {
    return &m->tensors[id];
}

static inline uint32_t tt_numel(const tt_tensor_rec *t) {
    return (uint32_t)t->h * t->w * t->c;
}

/* Typed views of constant data. The reader checked offsets and alignment. */
#define TT_BLOB(m, type, off) ((const type *)(const void *)((m)->blob + (off)))
#define TT_ARENA(t, type, off) ((type *)(void *)((t)->arena + (off)))

/* Gradient tensors: float scale, then int16 values (docs/arithmetic.md). */
static inline float *tt_grad_scale(tt_trainer *t, uint32_t id) {
    return TT_ARENA(t, float, t->model.tensors[id].arena_off);
}
static inline int16_t *tt_grad_data(tt_trainer *t, uint32_t id) {
    return TT_ARENA(t, int16_t, t->model.tensors[id].arena_off + 4u);
}

/* Where a kernel puts the int64 sums of a gradient it forms: the largest
   magnitude must be known before the first int16 value is stored, so the
   kernel runs twice, first with dx NULL (vmax is found), then with dx and
   the shift e of to16 set (the values are stored). */
typedef struct {
    int16_t *dx;
    uint64_t vmax;
    uint32_t e;
} tt_g16_sink;
static inline void tt_g16_put(tt_g16_sink *s, uint32_t i, int64_t v) {
    if (s->dx) {
        s->dx[i] = tt_g16(v, s->e);
    } else {
        const uint64_t a = tt_abs64(v);
        s->vmax = a > s->vmax ? a : s->vmax;
    }
}

/* Bytes per trained bias in the arena: int32, or the int16 change of a
   TT_LF_BIAS16 layer (format 2.2). */
static inline uint32_t tt_bias_bytes(const tt_layer_rec *L) {
    return (L->flags & TT_LF_BIAS16) ? 2u : 4u;
}

/* Storage of an activation-like tensor. */
static inline int8_t *tt_act_data(tt_trainer *t, uint32_t id) {
    return TT_ARENA(t, int8_t, t->model.tensors[id].arena_off);
}

/* Sets m->cut_op and m->cut_tensor from the validated ops (tt_cut.c). */
void tt_model_find_cut(tt_model *m);

/* The trainer's ops: dispatch (tt_forward.c, tt_fused.c, tt_backward.c)
   and the kernels it calls directly (kernels/tt_add.c, kernels/tt_loss.c). */
void tt_forward_layer(tt_trainer *t, const tt_layer_rec *L, uint32_t mask_id, uint32_t saved_id, uint32_t prep_id);
void tt_forward_fused(tt_trainer *t, const tt_op_rec *op, int training);

/* A layer's prepared constants (FWD t[TT_FWD_PREP], a fused op's
   t[TT_FUSED_PREP]; docs/format.md), in words: per pair of output channels
   of a 1x1 layer its widened weights and 8 words of constants, per group of
   4 depthwise channels its regrouped taps and 20 words of constants
   (tt_pointwise_opt.c, tt_depthwise_opt.c). */
#define TT_PREP_PW_PAIR_WORDS(cin) ((cin) + 8u)
#define TT_PREP_DW_GROUP_WORDS(kk) (2u * (kk) + 20u)
/* Their bytes, 0 when L cannot have them: frozen weights, no perm, and a
   1x1 stride-1 conv with input channels a multiple of 8 up to 64 and even
   output channels, or a depthwise layer with channels a multiple of 4 and a
   kernel at most 7 x 7 (tt_forward.c). */
uint32_t tt_prep_bytes(const tt_model *m, const tt_layer_rec *L);
/* L's prepared constants made at part (tt_prep_bytes of them), when its
   optimised kernel takes them; else NULL (its rows make their own). */
const uint32_t *tt_prepare(tt_trainer *t, const tt_layer_rec *L, uint32_t *part);
void tt_backward_layer(tt_trainer *t, uint32_t layer, const tt_op_rec *op);
void tt_grad_add(tt_trainer *t, uint32_t a_id, uint32_t b_id);
float tt_loss_softmax_ce(tt_trainer *t, uint32_t logits_id, uint32_t grad_id, int32_t label);
float tt_loss_mse(tt_trainer *t, uint32_t logits_id, uint32_t grad_id, const int8_t *target);

/* Weight of a conv/dwconv at storage position `pos` (trained slice lives in
   the arena, the rest in the model). */
static inline const int8_t *tt_weights_frozen(const tt_model *m, const tt_layer_rec *L) {
    return TT_BLOB(m, int8_t, L->w_off);
}

#endif
