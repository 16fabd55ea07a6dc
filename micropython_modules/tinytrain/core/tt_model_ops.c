/*
 * Model reader, op records: every slot of every op is checked for its role
 * (kind, none allowed, read or written) before anything else reads it, then
 * the shapes each kernel relies on, then that the tensors one op touches at
 * once do not share bytes where the kernel writes (docs/format.md, "Op record").
 */
#include <string.h>
#include "tt_model_check.h"

enum { USE_READ = 1, USE_WRITE = 2, USE_UPDATE = 3 };
#define SLOT_LAYER 0xFFu /* the slot holds a layer index, not a tensor */

typedef struct {
    uint8_t kind; /* tensor kind, SLOT_LAYER, or 0: the slot must be none */
    uint8_t use;
    uint8_t optional; /* none allowed */
} slot_rule;

static const slot_rule SLOT_RULES[6][6] = {
    [TT_OP_FWD] = {{TT_T_MASK, USE_WRITE, 1}, {TT_T_SAVED, USE_WRITE, 1}, {TT_T_ACT, USE_WRITE, 1}},
    [TT_OP_LOSS] = {{TT_T_ACT, USE_READ, 0}, {TT_T_GRAD, USE_WRITE, 0}},
    [TT_OP_BWD] = {{TT_T_GRAD, USE_UPDATE, 0}, {TT_T_MASK, USE_READ, 1}, {TT_T_SAVED, USE_READ, 1},
                   {TT_T_GRAD, USE_WRITE, 1}, {TT_T_GRAD, USE_WRITE, 1}},
    [TT_OP_GRAD_ADD] = {{TT_T_GRAD, USE_UPDATE, 0}, {TT_T_GRAD, USE_READ, 0}},
    [TT_OP_FWD_FUSED] = {{SLOT_LAYER, 0, 1}, {TT_T_ACT, USE_WRITE, 1}, {SLOT_LAYER, 0, 1},
                         {TT_T_ACT, USE_WRITE, 1}, {TT_T_MASK, USE_WRITE, 1}, {TT_T_ACT, USE_WRITE, 1}},
};

const char *const tt_tensor_kind_name[5] = {"?", "activation", "gradient", "mask", "saved input"};

static const char *kind_name(uint32_t k) {
    return k < 5u ? tt_tensor_kind_name[k] : "?";
}

/* The op's kind, layer field and each slot against its rule. */
static tt_status check_slots(const tt_checker *c, uint32_t i, const tt_op_rec *op) {
    const tt_header_rec *h = c->h;
    const int has_layer = op->kind == TT_OP_FWD || op->kind == TT_OP_BWD || op->kind == TT_OP_FWD_FUSED;
    if (op->kind < TT_OP_FWD || op->kind > TT_OP_FWD_FUSED) {
        return tt_fail(c->err, TT_E_OP, "op %u: unknown kind %u", i, op->kind);
    }
    if (op->flags & ~(op->kind == TT_OP_FWD_FUSED ? TT_FUSED_PREP_A | TT_FUSED_PREP_B | TT_FUSED_PREP_C : 0u)) {
        return tt_fail(c->err, TT_E_OP, "op %u: unknown flags %u", i, op->flags);
    }
    if (has_layer ? op->layer >= h->n_layers : op->layer != TT_NONE) {
        return tt_fail(c->err, TT_E_OP, "op %u layer: %u, %s", i, op->layer,
                       has_layer ? "not a layer" : "this kind takes none");
    }
    for (uint32_t s = 0; s < 6u; s++) {
        const slot_rule r = SLOT_RULES[op->kind][s];
        const uint32_t id = op->t[s];
        const tt_tensor_rec *t;
        if (id == TT_NONE) {
            if (r.kind && !r.optional) {
                return tt_fail(c->err, TT_E_OP, "op %u t%u: none, needs a %s", i, s,
                               r.kind == SLOT_LAYER ? "layer" : kind_name(r.kind));
            }
            continue;
        }
        if (!r.kind) {
            return tt_fail(c->err, TT_E_OP, "op %u t%u: %u in an unused slot (must be none)", i, s, id);
        }
        if (r.kind == SLOT_LAYER) {
            if (id >= h->n_layers) {
                return tt_fail(c->err, TT_E_OP, "op %u t%u: layer %u not among %u", i, s, id, h->n_layers);
            }
            continue;
        }
        if (id >= h->n_tensors) {
            return tt_fail(c->err, TT_E_OP, "op %u t%u: tensor %u not among %u", i, s, id, h->n_tensors);
        }
        t = &c->m->tensors[id];
        if (t->kind != r.kind) {
            return tt_fail(c->err, TT_E_OP, "op %u t%u: tensor %u is a %s, needs a %s", i, s, id,
                           kind_name(t->kind), kind_name(r.kind));
        }
        /* No op slot reads the input (each is written, or of another kind, or the logits). */
        if (id == h->input_tensor || !tt_has_storage(t)) {
            return tt_fail(c->err, TT_E_OP, "op %u t%u: tensor %u is the input or streamed (no storage)", i,
                           s, id);
        }
    }
    if (op->kind == TT_OP_LOSS && op->t[TT_LOSS_LOGITS] != h->logits_tensor) {
        return tt_fail(c->err, TT_E_OP, "op %u t0: tensor %u is not the logits %u", i, op->t[TT_LOSS_LOGITS],
                       h->logits_tensor);
    }
    return TT_OK;
}

/* Rows of tensor `of` (h >= rows): an ACT tensor with storage, the same
   width, channels and quantisation. */
static int is_rows_of(const tt_checker *c, uint32_t id, uint32_t of, uint32_t rows) {
    const tt_tensor_rec *r, *o = &c->m->tensors[of];
    if (!tt_is_kind(c, id, TT_T_ACT) || !tt_has_storage(&c->m->tensors[id])) {
        return 0;
    }
    r = &c->m->tensors[id];
    return r->h >= rows && r->w == o->w && r->c == o->c && r->zero == o->zero &&
           memcmp(&r->scale, &o->scale, sizeof(float)) == 0;
}

/* A fused op's prepared constants: t5 holds the parts of the layers its
   flags name, each of tt_prep_bytes (not 0; the kernels read words
   there, and every stored tensor starts at a multiple of 4); no flags, no t5. */
static tt_status check_fused_prep(const tt_checker *c, uint32_t i, const tt_op_rec *op, const tt_layer_rec *A,
                                  const tt_layer_rec *B, const tt_layer_rec *C) {
    const tt_layer_rec *parts[3];
    uint64_t need = 0;
    parts[0] = (op->flags & TT_FUSED_PREP_A) ? A : B;
    parts[1] = B;
    parts[2] = (op->flags & TT_FUSED_PREP_C) ? C : B;
    for (uint32_t k = 0; k < 3u; k++) {
        if (!(op->flags & (1u << k))) {
            continue;
        }
        if (!parts[k] || !tt_prep_bytes(c->m, parts[k])) {
            return tt_fail(c->err, TT_E_OP, "op %u: flag %u names a layer without prepared constants", i,
                           1u << k);
        }
        need += tt_prep_bytes(c->m, parts[k]);
    }
    if ((op->t[TT_FUSED_PREP] == TT_NONE) != (need == 0)) {
        return tt_fail(c->err, TT_E_OP, "op %u: t5 and the flags (%u) disagree", i, op->flags);
    }
    if (need) {
        const tt_tensor_rec *p = &c->m->tensors[op->t[TT_FUSED_PREP]];
        if (p->size != need) {
            return tt_fail(c->err, TT_E_OP, "op %u t5: %u bytes, the flags name %u", i, p->size, (uint32_t)need);
        }
    }
    return TT_OK;
}

/* A fused op: depthwise B row by row, its input streamed from producer A
   through a ring of at least B.kh rows, and/or its output streamed row by
   row into the 1x1 consumer C. The kernels rely on every shape checked here. */
static tt_status check_fused(const tt_checker *c, uint32_t i, const tt_op_rec *op) {
    const uint16_t *t = op->t;
    const tt_layer_rec *A, *B, *C;
    uint32_t out;
    if (c->m->layers[op->layer].kind != TT_L_DWCONV || c->m->layers[op->layer].n_train) {
        return tt_fail(c->err, TT_E_OP, "op %u: fused op needs a depthwise layer with frozen weights", i);
    }
    B = &c->m->layers[op->layer];
    A = t[TT_FUSED_A] != TT_NONE ? &c->m->layers[t[TT_FUSED_A]] : NULL;
    C = t[TT_FUSED_C] != TT_NONE ? &c->m->layers[t[TT_FUSED_C]] : NULL;
    if (!A && !C) {
        return tt_fail(c->err, TT_E_OP, "op %u: fused op needs a producer or a consumer layer", i);
    }
    if (A) {
        if (A->kind != TT_L_CONV || A->n_train || A->out != B->in || !tt_is_streamed(c, A->out) ||
            tt_is_streamed(c, A->in) || !is_rows_of(c, t[TT_FUSED_RING], A->out, B->kh)) {
            return tt_fail(c->err, TT_E_OP, "op %u: fused producer layer %u or its ring invalid", i,
                           t[TT_FUSED_A]);
        }
    } else if (t[TT_FUSED_RING] != TT_NONE || tt_is_streamed(c, B->in)) {
        return tt_fail(c->err, TT_E_OP, "op %u: fused op without producer reads a stored input", i);
    }
    if (C) {
        const tt_tensor_rec *ci = &c->m->tensors[C->in], *co = &c->m->tensors[C->out];
        if (C->kind != TT_L_CONV || C->n_train || C->kh != 1 || C->kw != 1 || C->stride != 1 ||
            C->in != B->out || !tt_is_streamed(c, B->out) || tt_is_streamed(c, C->out) || co->h != ci->h ||
            co->w != ci->w || !is_rows_of(c, t[TT_FUSED_ROW], B->out, 1u)) {
            return tt_fail(c->err, TT_E_OP, "op %u: fused consumer layer %u or its row invalid", i,
                           t[TT_FUSED_C]);
        }
        out = C->out;
    } else if (t[TT_FUSED_ROW] != TT_NONE || tt_is_streamed(c, B->out)) {
        return tt_fail(c->err, TT_E_OP, "op %u: fused op without consumer writes a stored output", i);
    } else {
        out = B->out;
    }
    if (t[TT_FUSED_MASK] != TT_NONE && !tt_same_numel(c, t[TT_FUSED_MASK], out)) {
        return tt_fail(c->err, TT_E_OP, "op %u: fused op's mask invalid", i);
    }
    return check_fused_prep(c, i, op, A, B, C);
}

static int reads_saved_input(const tt_layer_rec *L) {
    return L->kind == TT_L_MAXPOOL || L->kind == TT_L_LUT;
}

/* A layer's saved input: the trained channels of a weight-trained conv or
   depthwise layer, the whole input of a max pool or a table. */
static int saved_fits(const tt_checker *c, uint32_t id, const tt_layer_rec *L) {
    const tt_tensor_rec *s = &c->m->tensors[id], *in = &c->m->tensors[L->in];
    if (reads_saved_input(L)) {
        return s->c == in->c && s->h == in->h && s->w == in->w;
    }
    return L->kind <= TT_L_DWCONV && L->n_train && s->c == L->n_train && s->h == in->h && s->w == in->w;
}

/* Shapes and layer kinds, once every slot holds what its role needs. */
static tt_status check_shapes(const tt_checker *c, uint32_t i, const tt_op_rec *op) {
    const tt_layer_rec *L = op->layer < c->h->n_layers ? &c->m->layers[op->layer] : NULL;
    const uint16_t *t = op->t;
    switch (op->kind) {
    case TT_OP_FWD:
        if ((t[0] != TT_NONE && !tt_same_numel(c, t[0], L->out)) || (t[1] != TT_NONE && !saved_fits(c, t[1], L))) {
            return tt_fail(c->err, TT_E_OP, "op %u: forward op's mask or saved input invalid", i);
        }
        if (t[TT_FWD_PREP] != TT_NONE && (!tt_prep_bytes(c->m, L) || c->m->tensors[t[TT_FWD_PREP]].size !=
                                                                            tt_prep_bytes(c->m, L))) {
            return tt_fail(c->err, TT_E_OP, "op %u t2: %u bytes, the layer's prepared constants take %u", i,
                           c->m->tensors[t[TT_FWD_PREP]].size, tt_prep_bytes(c->m, L));
        }
        if (tt_is_streamed(c, L->in) || tt_is_streamed(c, L->out) ||
            (L->kind == TT_L_ADD && tt_is_streamed(c, L->in2))) {
            return tt_fail(c->err, TT_E_OP, "op %u: layer %u reads or writes a streamed tensor", i, op->layer);
        }
        return TT_OK;
    case TT_OP_FWD_FUSED:
        return check_fused(c, i, op);
    case TT_OP_LOSS:
        if (!tt_same_numel(c, t[0], t[1])) {
            return tt_fail(c->err, TT_E_OP, "op %u: loss needs the logits and a gradient of their size", i);
        }
        return TT_OK;
    case TT_OP_BWD:
        if (!tt_same_numel(c, t[0], L->out) || (t[1] != TT_NONE && !tt_same_numel(c, t[1], L->out)) ||
            (t[3] != TT_NONE && !tt_same_numel(c, t[3], L->in)) ||
            (t[4] != TT_NONE && (L->kind != TT_L_ADD || !tt_same_numel(c, t[4], L->in2)))) {
            return tt_fail(c->err, TT_E_OP, "op %u: backward op's gradients or mask invalid", i);
        }
        if (L->kind <= TT_L_DWCONV) {
            if (L->n_train && (t[2] == TT_NONE || !saved_fits(c, t[2], L))) {
                return tt_fail(c->err, TT_E_OP, "op %u: weight update needs the saved input", i);
            }
            if (t[3] != TT_NONE && L->gscale_off == TT_NO_OFFSET) {
                return tt_fail(c->err, TT_E_OP, "op %u: input gradient needs gradient scales", i);
            }
        } else if (L->kind != TT_L_ADD && t[3] == TT_NONE) {
            /* the kernel's only work; it reads that slot's record first */
            return tt_fail(c->err, TT_E_OP, "op %u t3: none, a pool's or table's backward needs its input "
                           "gradient", i);
        } else if (reads_saved_input(L) && (t[2] == TT_NONE || !saved_fits(c, t[2], L))) {
            return tt_fail(c->err, TT_E_OP, "op %u t2: a max pool's or table's backward needs its saved input", i);
        }
        return TT_OK;
    default: /* TT_OP_GRAD_ADD */
        if (!tt_same_numel(c, t[0], t[1])) {
            return tt_fail(c->err, TT_E_OP, "op %u: gradient sum needs two gradients of one size", i);
        }
        return TT_OK;
    }
}

static const char list_in[] = "in", list_out[] = "out";

/* One tensor an op touches at once with the others. */
typedef struct {
    uint32_t id;
    uint8_t use;
    const char *name;
} touch;

static uint32_t add_touch(const tt_checker *c, touch *list, uint32_t n, uint32_t id, uint8_t use,
                          const char *name) {
    if (id == TT_NONE || !tt_has_storage(&c->m->tensors[id])) {
        return n; /* streamed tensors have no bytes */
    }
    list[n].id = id;
    list[n].use = use;
    list[n].name = name;
    return n + 1u;
}

/* The backward of a frozen stride-1 depthwise layer may write its input
   gradient over its output gradient when the input gradient starts at least
   kh - pad_top rows lower: the kernels form each channel's input rows in
   increasing order, and input row i then overwrites only output rows that no
   input row from i on reads (docs/format.md, "Op record"). */
static int is_depthwise_in_place(const tt_checker *c, const tt_layer_rec *L, uint32_t out_grad,
                                 uint32_t in_grad) {
    const tt_tensor_rec *g = &c->m->tensors[out_grad], *dx = &c->m->tensors[in_grad];
    const uint32_t rows = L->kh > L->pad_top ? (uint32_t)(L->kh - L->pad_top) : 0u;
    return L->kind == TT_L_DWCONV && L->stride == 1 && L->n_train == 0 && g->h == dx->h && g->w == dx->w &&
           g->c == dx->c && (uint64_t)dx->arena_off + 2u * (uint64_t)rows * g->w * g->c <= g->arena_off;
}

/* The lowest input row a fused op reads after writing its output row r of
   out_h (in_h: none): B's rows read A's rows up to end, computed in order,
   and A's later rows read the input from end * A.stride - A.pad_top on;
   without A, B's next row reads the input from (r + 1) * stride - pad_top. */
static int64_t first_row_read_after(const tt_checker *c, const tt_op_rec *op, int64_t r, int64_t out_h,
                                    int64_t in_h) {
    const tt_layer_rec *B = &c->m->layers[op->layer];
    int64_t row;
    if (r + 1 >= out_h) {
        return in_h;
    }
    if (op->t[TT_FUSED_A] == TT_NONE) {
        row = (r + 1) * B->stride - B->pad_top;
    } else {
        const tt_layer_rec *A = &c->m->layers[op->t[TT_FUSED_A]];
        const int64_t end = r * B->stride - B->pad_top + B->kh;
        if (end >= (int64_t)c->m->tensors[B->in].h) {
            return in_h;
        }
        row = end * A->stride - A->pad_top;
    }
    return row >= in_h ? in_h : row > 0 ? row : 0;
}

/* A fused op may write its output over its input where each output row r
   lands on no input row the op still reads after it: the kernel computes
   output rows in increasing order, each after everything that reads the input
   rows below first_row_read_after(r) (docs/format.md, "Fused ops"). */
static int is_fused_over_input(const tt_checker *c, const tt_op_rec *op, uint32_t in, uint32_t out) {
    const tt_tensor_rec *x = &c->m->tensors[in], *y = &c->m->tensors[out];
    const int64_t in_row = (int64_t)x->w * x->c, out_row = (int64_t)y->w * y->c;
    const int64_t x_end = (int64_t)x->arena_off + x->size;
    for (int64_t r = 0; r < y->h; r++) {
        const int64_t lo = (int64_t)y->arena_off + r * out_row;
        const int64_t still_read = (int64_t)x->arena_off + first_row_read_after(c, op, r, y->h, x->h) * in_row;
        if (still_read < x_end && lo < x_end && lo + out_row > still_read) {
            return 0;
        }
    }
    return 1;
}

/* Tensors one op reads and writes at once must not share bytes (the plan may
   give tensors that are never live together the same bytes). The exceptions:
   the backward of an add passes its output gradient through in place, t3 or
   t4 being t0 itself; a frozen depthwise backward in place and a fused op's
   output over its input (above). */
static tt_status check_aliasing(const tt_checker *c, uint32_t i, const tt_op_rec *op) {
    static const char *const slot_name[6] = {"t0", "t1", "t2", "t3", "t4", "t5"};
    const tt_layer_rec *L = op->layer < c->h->n_layers ? &c->m->layers[op->layer] : NULL;
    touch list[8];
    uint32_t n = 0;
    if (op->kind == TT_OP_FWD) {
        n = add_touch(c, list, n, L->in, USE_READ, "in");
        n = add_touch(c, list, n, L->kind == TT_L_ADD ? L->in2 : TT_NONE, USE_READ, "in2");
        n = add_touch(c, list, n, L->out, USE_WRITE, "out");
    } else if (op->kind == TT_OP_FWD_FUSED) {
        const uint16_t a = op->t[TT_FUSED_A], cc = op->t[TT_FUSED_C];
        n = add_touch(c, list, n, a != TT_NONE ? c->m->layers[a].in : L->in, USE_READ, list_in);
        n = add_touch(c, list, n, cc != TT_NONE ? c->m->layers[cc].out : L->out, USE_WRITE, list_out);
    }
    for (uint32_t s = 0; s < 6u; s++) {
        const slot_rule r = SLOT_RULES[op->kind][s];
        if (r.kind && r.kind != SLOT_LAYER) {
            n = add_touch(c, list, n, op->t[s], r.use, slot_name[s]);
        }
    }
    for (uint32_t a = 0; a < n; a++) {
        for (uint32_t b = a + 1u; b < n; b++) {
            const tt_tensor_rec *ta = &c->m->tensors[list[a].id], *tb = &c->m->tensors[list[b].id];
            const int in_place = op->kind == TT_OP_BWD && L->kind == TT_L_ADD && list[a].id == list[b].id &&
                                 list[a].name == slot_name[0] &&
                                 (list[b].name == slot_name[3] || list[b].name == slot_name[4]);
            const int dw_in_place = op->kind == TT_OP_BWD && list[a].name == slot_name[0] &&
                                    list[b].name == slot_name[3] &&
                                    is_depthwise_in_place(c, L, list[a].id, list[b].id);
            const int over_input = op->kind == TT_OP_FWD_FUSED && list[a].name == list_in &&
                                   list[b].name == list_out &&
                                   is_fused_over_input(c, op, list[a].id, list[b].id);
            if (!((list[a].use | list[b].use) & USE_WRITE) || in_place || dw_in_place || over_input) {
                continue;
            }
            if (tt_overlap(ta->arena_off, ta->size, tb->arena_off, tb->size)) {
                return tt_fail(c->err, TT_E_ARENA, "op %u: %s (tensor %u) and %s (tensor %u) share arena bytes", i,
                               list[a].name, list[a].id, list[b].name, list[b].id);
            }
        }
    }
    return TT_OK;
}

tt_status tt_check_ops(const tt_checker *c) {
    const tt_header_rec *h = c->h;
    for (uint32_t i = 0; i < h->n_ops; i++) {
        const tt_op_rec *op = &c->m->ops[i];
        tt_status s;
        if ((s = check_slots(c, i, op)) != TT_OK) {
            return s;
        }
        if ((i < h->n_fwd_ops) != (op->kind == TT_OP_FWD || op->kind == TT_OP_FWD_FUSED)) {
            return tt_fail(c->err, TT_E_OP, "op %u: forward ops must come first, and only they", i);
        }
        if ((s = check_shapes(c, i, op)) != TT_OK || (s = check_aliasing(c, i, op)) != TT_OK) {
            return s;
        }
    }
    return TT_OK;
}
