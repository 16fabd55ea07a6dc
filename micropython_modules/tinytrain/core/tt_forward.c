/*
 * Forward dispatch: one layer (tt_forward_layer) or the rows of a conv or
 * depthwise layer (tt_conv_rows, also used by fused ops, tt_fused.c) go to
 * the optimised kernel where it handles the case, else to the reference
 * (kernels/, docs/kernels.md). While training it also clears the clamp mask
 * the kernel writes and saves the trained input channels a weight update
 * will need; nothing else of the forward pass is kept.
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
    case TT_L_DWCONV: {
        tt_rows R;
        R.x = tt_act_data(t, L->in);
        R.row0 = 0;
        R.y = tt_act_data(t, L->out);
        R.mask = mask;
        R.oh0 = 0;
        R.oh1 = t->model.tensors[L->out].h;
        R.prep = NULL;
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
