/*
 * Fused ops (docs/format.md): a depthwise layer run one output row at a
 * time between its producer and consumer, through tt_conv_rows.
 */
#include <string.h>
#include "kernels/tt_kernels.h"
#include "kernels/tt_opt.h"

/* memmove to a lower address, as memcpy of pieces that do not overlap (a
   MicroPython native module has memcpy but no memmove), or tt_copy_down
   where it applies. */
static void move_down(int8_t *dst, const int8_t *src, uint32_t n) {
    const uint32_t d = (uint32_t)(src - dst);
#if TT_OPTIMIZED && TT_DSP_ASM_WIDE
    if (((uintptr_t)dst | (uintptr_t)src) % 4u == 0u) {
        tt_copy_down(dst, src, n);
        return;
    }
#endif
    while (n) {
        const uint32_t k = n < d ? n : d;
        memcpy(dst, src, k);
        dst += k;
        src += k;
        n -= k;
    }
}

/* A fused op (docs/format.md): depthwise B one output row at a time. With
   a producer A, the ring (rh >= B.kh rows) holds A's output rows [b, h1),
   row r in slot r - b: the rows B's current row reads and perhaps a few
   before them. New rows are computed after the last, each exactly once;
   when they would not fit, the rows still needed move down to slot 0,
   which a ring of B.kh rows does once per output row.
   With a consumer C, B's row goes to a one-row buffer and C turns it into
   its own output row at once. Every element is computed by the same kernels
   as unfused, so the results are the same bit for bit.
   The output may lie over the input (the reader's is_fused_over_input): rows
   are computed in increasing order, A's (without A, B's) reading only the
   input rows of their own window, and output row oh is written after every
   row that reads input below the first row a later one reads.
   With t[TT_FUSED_PREP], the layers its flags name make their constants
   (widened or regrouped weights, requantisation) once for every row. */
void tt_forward_fused(tt_trainer *t, const tt_op_rec *op, int training) {
    const tt_model *m = &t->model;
    const tt_layer_rec *B = &m->layers[op->layer];
    const tt_layer_rec *A = op->t[TT_FUSED_A] != TT_NONE ? &m->layers[op->t[TT_FUSED_A]] : NULL;
    const tt_layer_rec *C = op->t[TT_FUSED_C] != TT_NONE ? &m->layers[op->t[TT_FUSED_C]] : NULL;
    const tt_tensor_rec *bin = tt_tensor(m, B->in), *bout = tt_tensor(m, B->out);
    const uint32_t kh = B->kh, s = B->stride, in_row = (uint32_t)bin->w * bin->c;
    const int32_t rh = A ? (int32_t)tt_tensor(m, op->t[TT_FUSED_RING])->h : 0;
    const int32_t H = bin->h;
    uint8_t *mask = NULL;
    int8_t *ring = A ? tt_act_data(t, op->t[TT_FUSED_RING]) : NULL;
    int8_t *row = C ? tt_act_data(t, op->t[TT_FUSED_ROW]) : NULL;
    int8_t *yb = C ? NULL : tt_act_data(t, B->out), *yc = C ? tt_act_data(t, C->out) : NULL;
    int32_t b = 0, h1 = 0; /* the ring holds A's rows [b, h1) */
    tt_rows ra, rb, rc;
    memset(&ra, 0, sizeof(ra));
    memset(&rb, 0, sizeof(rb));
    memset(&rc, 0, sizeof(rc));
    if (op->t[TT_FUSED_PREP] != TT_NONE) {
        uint32_t *p = TT_ARENA(t, uint32_t, tt_tensor(m, op->t[TT_FUSED_PREP])->arena_off);
        if (op->flags & TT_FUSED_PREP_A) {
            ra.prep = tt_prepare(t, A, p);
            p += tt_prep_bytes(m, A) / 4u;
        }
        if (op->flags & TT_FUSED_PREP_B) {
            rb.prep = tt_prepare(t, B, p);
            p += tt_prep_bytes(m, B) / 4u;
        }
        if (op->flags & TT_FUSED_PREP_C) {
            rc.prep = tt_prepare(t, C, p);
        }
    }
    if (training && op->t[TT_FUSED_MASK] != TT_NONE) {
        const tt_tensor_rec *mr = tt_tensor(m, op->t[TT_FUSED_MASK]);
        mask = TT_ARENA(t, uint8_t, mr->arena_off);
        memset(mask, 0, mr->size);
    }
    if (A) {
        ra.x = tt_act_data(t, A->in);
        ra.row0 = 0;
        ra.mask = NULL;
    }
    rb.x = A ? ring : tt_act_data(t, B->in);
    rb.row0 = 0;
    rb.mask = C ? NULL : mask;
    if (C) {
        rc.x = row;
        rc.mask = mask;
    }
    for (uint32_t oh = 0; oh < bout->h; oh++) {
        if (A) {
            /* B's row oh reads A's rows [v0, v0 + kh) inside [0, H): at most kh */
            const int32_t v0 = (int32_t)(oh * s) - B->pad_top, lo = v0 > 0 ? v0 : 0;
            const int32_t end = v0 + (int32_t)kh < H ? v0 + (int32_t)kh : H;
            if (h1 < lo) {
                b = h1 = lo; /* a stride above the kernel skips rows nobody reads */
            } else if (end - b > rh) { /* end - lo <= kh <= rh rows fit from lo on */
                move_down(ring, ring + (uint32_t)(lo - b) * in_row, (uint32_t)(h1 - lo) * in_row);
                b = lo;
            }
            if (h1 < end) {
                ra.y = ring + (uint32_t)(h1 - b) * in_row;
                ra.oh0 = (uint32_t)h1;
                ra.oh1 = (uint32_t)end;
                tt_conv_rows(t, A, &ra);
                h1 = end;
            }
            rb.row0 = (uint32_t)b;
        }
        rb.y = C ? row : yb + oh * (uint32_t)bout->w * bout->c;
        rb.oh0 = oh;
        rb.oh1 = oh + 1u;
        tt_conv_rows(t, B, &rb);
        if (C) {
            const tt_tensor_rec *cout = tt_tensor(m, C->out);
            rc.y = yc + oh * (uint32_t)cout->w * cout->c;
            rc.row0 = oh;
            rc.oh0 = oh;
            rc.oh1 = oh + 1u;
            tt_conv_rows(t, C, &rc);
        }
    }
}
