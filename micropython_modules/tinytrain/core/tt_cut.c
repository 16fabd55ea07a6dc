/*
 * The frozen prefix (docs/format.md, "Frozen prefix"): the forward ops
 * [0, cut_op) that no training step changes and that hand the rest of the
 * step one tensor, the cut. Found at open from the validated ops, so a
 * model file needs no field for it: ops from cut_op on read nothing the
 * prefix wrote but the cut, and the prefix writes no clamp mask or saved
 * input and runs no layer that trains or has a backward op. Its output is
 * then the same for a sample at every epoch and may be stored and reused.
 */
#include "tt_internal.h"

/* The tensor an op leaves for later ops (FWD: its layer's output; fused:
   C's output, else B's). */
static uint32_t op_output(const tt_model *m, const tt_op_rec *op) {
    if (op->kind == TT_OP_FWD_FUSED && op->t[TT_FUSED_C] != TT_NONE) {
        return m->layers[op->t[TT_FUSED_C]].out;
    }
    return m->layers[op->layer].out;
}

static int op_writes(const tt_model *m, const tt_op_rec *op, uint32_t id) {
    if (op_output(m, op) == id) {
        return 1;
    }
    if (op->kind == TT_OP_FWD) {
        return op->t[TT_FWD_MASK] == id || op->t[TT_FWD_SAVED] == id;
    }
    return op->t[TT_FUSED_RING] == id || op->t[TT_FUSED_ROW] == id || op->t[TT_FUSED_MASK] == id;
}

static int layer_trains(const tt_layer_rec *L) {
    return L->n_train != 0 || (L->flags & TT_LF_TRAIN_BIAS);
}

/* Whether the forward op may belong to a frozen prefix: it keeps nothing
   for the backward and none of its layers trains or is differentiated. */
static int op_frozen(const tt_model *m, const tt_op_rec *op) {
    uint32_t layers[3];
    uint32_t n = 0;
    layers[n++] = op->layer;
    if (op->kind == TT_OP_FWD) {
        if (op->t[TT_FWD_MASK] != TT_NONE || op->t[TT_FWD_SAVED] != TT_NONE) {
            return 0;
        }
    } else {
        if (op->t[TT_FUSED_MASK] != TT_NONE) {
            return 0;
        }
        if (op->t[TT_FUSED_A] != TT_NONE) {
            layers[n++] = op->t[TT_FUSED_A];
        }
        if (op->t[TT_FUSED_C] != TT_NONE) {
            layers[n++] = op->t[TT_FUSED_C];
        }
    }
    for (uint32_t k = 0; k < n; k++) {
        if (layer_trains(&m->layers[layers[k]])) {
            return 0;
        }
        for (uint32_t i = m->hdr->n_fwd_ops; i < m->hdr->n_ops; i++) {
            if (m->ops[i].kind == TT_OP_BWD && m->ops[i].layer == layers[k]) {
                return 0;
            }
        }
    }
    return 1;
}

/* The tensors op j reads that an earlier op may have written. */
static uint32_t op_reads(const tt_model *m, const tt_op_rec *op, uint32_t r[2]) {
    switch (op->kind) {
    case TT_OP_FWD: {
        const tt_layer_rec *L = &m->layers[op->layer];
        r[0] = L->in;
        r[1] = L->in2;
        return L->in2 != TT_NONE ? 2u : 1u;
    }
    case TT_OP_FWD_FUSED:
        r[0] = m->layers[op->t[TT_FUSED_A] != TT_NONE ? op->t[TT_FUSED_A] : op->layer].in;
        return 1u;
    case TT_OP_LOSS:
        r[0] = op->t[TT_LOSS_LOGITS];
        return 1u;
    case TT_OP_BWD:
        r[0] = op->t[TT_BWD_MASK];
        r[1] = op->t[TT_BWD_SAVED];
        return 2u;
    default:
        return 0u;
    }
}

/* The last op that reads a tensor forward op p writes (p when none does),
   or with p = n_ops the last that reads the input (0 when none does). */
static uint32_t last_use(const tt_model *m, uint32_t p) {
    const int input = p == m->hdr->n_ops;
    for (uint32_t j = m->hdr->n_ops; j-- > (input ? 0u : p + 1u);) {
        uint32_t r[2];
        const uint32_t nr = op_reads(m, &m->ops[j], r);
        for (uint32_t q = 0; q < nr; q++) {
            if (r[q] != TT_NONE && (input ? r[q] == m->hdr->input_tensor : op_writes(m, &m->ops[p], r[q]))) {
                return j;
            }
        }
    }
    return input ? 0u : p;
}

/* A read at op j of what op p (p < k - 1) wrote rules out every k in
   [p + 2, j]: k is a cut when no earlier op's last use reaches it, one
   sweep with a running maximum. Of the cuts up to the first op that is not
   frozen, the one of fewest bytes (the store a sample needs), of equal ones
   the latest (the least to recompute): in MCUNet-5fps 49kb a block's
   8x8x40 output (2,560 B) rather than the 8x8x160 of the 1x1 conv after
   it. Work: the frozen ops times all ops, once at open (a file of more than
   TT_CUT_MAX_OPS ops gets no prefix rather than a long search). */
#define TT_CUT_MAX_OPS 4096u
void tt_model_find_cut(tt_model *m) {
    const uint32_t nf = m->hdr->n_fwd_ops;
    uint32_t kmax = 0, reach, best = 0;
    m->cut_op = 0;
    m->cut_tensor = TT_NONE;
    if (m->hdr->n_ops > TT_CUT_MAX_OPS) {
        return;
    }
    while (kmax < nf && op_frozen(m, &m->ops[kmax])) {
        kmax++;
    }
    reach = last_use(m, m->hdr->n_ops);
    for (uint32_t k = 1; k <= kmax; k++) {
        const uint32_t x = op_output(m, &m->ops[k - 1]);
        const tt_tensor_rec *xt = &m->tensors[x];
        if (k >= 2) {
            const uint32_t u = last_use(m, k - 2);
            reach = u > reach ? u : reach;
        }
        if (reach < k && xt->kind == TT_T_ACT && !(xt->flags & TT_TF_STREAMED) &&
            (!m->cut_op || tt_numel(xt) <= best)) {
            m->cut_op = k;
            m->cut_tensor = x;
            best = tt_numel(xt);
        }
    }
}

uint32_t tt_model_cut_bytes(const tt_model *m) {
    return m->hdr && m->cut_op ? tt_numel(&m->tensors[m->cut_tensor]) : 0u;
}
