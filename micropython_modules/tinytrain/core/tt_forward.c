/*
 * Forward kernels, reference versions: int8 NHWC in and out, int32
 * accumulation, one requantisation rule (tt_arith.h). While training they
 * also write the clamp mask and the trained input channels a weight update
 * will need; nothing else of the forward pass is kept. Conv and depthwise
 * compute a range of output rows (tt_rows), so a fused op can run them row
 * by row (tt_forward_fused, at the end).
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

/* conv and dwconv stay out of line: inlined into tt_conv_rows beside the
   optimised kernels' call, GCC allocated their registers worse and a layer
   falling back to them ran about 30% slower than in a reference build. */
#if defined(__GNUC__)
#define TT_REF_NOINLINE __attribute__((noinline))
#else
#define TT_REF_NOINLINE
#endif

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

/* Output rows [R->oh0, R->oh1) of a conv (see tt_rows). */
TT_REF_NOINLINE static void conv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    int8_t *y = R->y;
    uint8_t *mask = R->mask;
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const int32_t *bias = (L->flags & TT_LF_TRAIN_BIAS) ? TT_ARENA(t, int32_t, L->b_arena)
                                                        : TT_BLOB(m, int32_t, L->b_off);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint16_t *perm = perm_of(m, L);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train;
    const uint32_t base = R->oh0 * out->w * cout; /* element index of y[0] */
    const int32_t zx = in->zero;
    uint32_t idx = base;
    for (uint32_t oh = R->oh0; oh < R->oh1; oh++) {
        for (uint32_t ow = 0; ow < out->w; ow++) {
            for (uint32_t c = 0; c < cout; c++, idx++) {
                int32_t acc = bias[c];
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
                y[idx - base] = finish(tt_requant(acc, mult[c], (uint32_t)shift[c]), out->zero, L, mask, idx);
            }
        }
    }
}

/* Output rows [R->oh0, R->oh1) of a depthwise conv (see tt_rows). */
TT_REF_NOINLINE static void dwconv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    int8_t *y = R->y;
    uint8_t *mask = R->mask;
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const int32_t *bias = (L->flags & TT_LF_TRAIN_BIAS) ? TT_ARENA(t, int32_t, L->b_arena)
                                                        : TT_BLOB(m, int32_t, L->b_off);
    const int32_t *mult = TT_BLOB(m, int32_t, L->mult_off);
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    const uint16_t *perm = perm_of(m, L);
    const uint32_t C = out->c, kk = (uint32_t)L->kh * L->kw;
    const uint32_t base = R->oh0 * out->w * C; /* element index of y[0] */
    const int32_t zx = in->zero;
    for (uint32_t j = 0; j < C; j++) {
        /* storage position j holds channel c */
        const uint32_t c = perm ? perm[j] : j;
        const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
        for (uint32_t oh = R->oh0; oh < R->oh1; oh++) {
            for (uint32_t ow = 0; ow < out->w; ow++) {
                int32_t acc = bias[c];
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
                y[idx - base] = finish(tt_requant(acc, mult[c], (uint32_t)shift[c]), out->zero, L, mask, idx);
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

void tt_conv_rows(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R) {
    if (L->kind == TT_L_CONV) {
#if TT_OPTIMIZED
        if (tt_conv_opt(t, L, R)) {
            return;
        }
#endif
        conv(t, L, R);
    } else {
#if TT_OPTIMIZED
        if (tt_dwconv_opt(t, L, R)) {
            return;
        }
#endif
        dwconv(t, L, R);
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
        tt_conv_rows(t, L, &R);
        break;
    }
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

/* memmove to a lower address, as memcpy of pieces that do not overlap (a
   MicroPython native module has memcpy but no memmove). */
static void move_down(int8_t *dst, const int8_t *src, uint32_t n) {
    const uint32_t d = (uint32_t)(src - dst);
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
   as unfused, so the results are the same bit for bit. */
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
    memset(&rc, 0, sizeof(rc));
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
