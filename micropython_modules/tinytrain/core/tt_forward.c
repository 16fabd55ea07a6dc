/*
 * Forward dispatch: one layer (tt_forward_layer) or the rows of a conv or
 * depthwise layer (tt_conv_rows, also used by fused ops, tt_fused.c) go to
 * the optimised kernel where it handles the case, else to the reference
 * (kernels/, docs/kernels.md). While training it also clears the clamp mask
 * the kernel writes and saves the trained input channels a weight update
 * will need; nothing else of the forward pass is kept. A layer's prepared
 * constants (docs/format.md) are made here when its op has a slot for them.
 */
#include <string.h>
#include "kernels/tt_kernels.h"
#include "kernels/tt_opt.h"

/* Trained input channels of a weight-trained layer, in storage order; the
   whole input of a max pool or a table (their backward reads it). */
static void save_input(tt_trainer *t, const tt_layer_rec *L, uint32_t saved_id) {
    const tt_tensor_rec *in = tt_tensor(&t->model, L->in);
    const int8_t *x = tt_act_data(t, L->in);
    int8_t *s = tt_act_data(t, saved_id);
    const uint16_t *perm = tt_perm_of(&t->model, L);
    uint32_t hw = (uint32_t)in->h * in->w, nt = L->n_train;
    if (L->kind > TT_L_DWCONV) {
        memcpy(s, x, tt_numel(in));
        return;
    }
    for (uint32_t p = 0; p < hw; p++) {
        for (uint32_t j = 0; j < nt; j++) {
            s[p * nt + j] = x[p * in->c + perm[j]];
        }
    }
}

uint32_t tt_prep_bytes(const tt_model *m, const tt_layer_rec *L) {
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    if (L->perm_off != TT_NO_OFFSET || L->n_train) {
        return 0;
    }
    if (L->kind == TT_L_DWCONV && out->c % 4u == 0 && L->kh <= 7u && L->kw <= 7u) {
        return (uint32_t)out->c / 4u * 4u * TT_PREP_DW_GROUP_WORDS((uint32_t)L->kh * L->kw);
    }
    if (L->kind == TT_L_CONV && L->kh == 1u && L->kw == 1u && L->stride == 1u && in->h == out->h &&
        in->w == out->w && in->c % 8u == 0 && in->c <= 64u && out->c % 2u == 0) {
        return (uint32_t)out->c / 2u * 4u * TT_PREP_PW_PAIR_WORDS((uint32_t)in->c);
    }
    return 0;
}

const uint32_t *tt_prepare(tt_trainer *t, const tt_layer_rec *L, uint32_t *part) {
    int made = 0;
#if TT_OPT_DEPTHWISE
    if (L->kind == TT_L_DWCONV) {
        made = tt_dwconv_prep(t, L, part);
    }
#endif
#if TT_OPTIMIZED
    if (L->kind == TT_L_CONV) {
        made = tt_pointwise_prep(t, L, part);
    }
#endif
    (void)t;
    (void)L;
    return made ? part : NULL;
}

void tt_conv_rows(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    if (L->kind == TT_L_CONV) {
#if TT_OPTIMIZED
        if (tt_conv_opt(t, L, R)) {
            return;
        }
#endif
        tt_conv_ref(t, L, R);
    } else {
#if TT_OPT_DEPTHWISE
        if (tt_dwconv_opt(t, L, R)) {
            return;
        }
#endif
        tt_dwconv_ref(t, L, R);
    }
}

void tt_forward_layer(tt_trainer *t, const tt_layer_rec *L, uint32_t mask_id, uint32_t saved_id, uint32_t prep_id) {
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
    case TT_L_DWCONV: {
        tt_rows R;
        R.x = tt_act_data(t, L->in);
        R.row0 = 0;
        R.y = tt_act_data(t, L->out);
        R.mask = mask;
        R.oh0 = 0;
        R.oh1 = t->model.tensors[L->out].h;
        R.prep = prep_id != TT_NONE
                     ? tt_prepare(t, L, TT_ARENA(t, uint32_t, t->model.tensors[prep_id].arena_off))
                     : NULL;
        tt_conv_rows(t, L, &R);
        break;
    }
    case TT_L_ADD:
#if TT_OPTIMIZED
        if (tt_add_opt(t, L, mask)) {
            break;
        }
#endif
        tt_add_ref(t, L, mask);
        break;
    case TT_L_MAXPOOL:
        tt_maxpool_ref(t, L, mask);
        break;
    case TT_L_AVGPOOL2D:
        tt_avgpool2d_ref(t, L, mask);
        break;
    case TT_L_LUT:
        tt_lut_ref(t, L, mask);
        break;
    default:
        tt_avgpool_ref(t, L, mask);
        break;
    }
}
