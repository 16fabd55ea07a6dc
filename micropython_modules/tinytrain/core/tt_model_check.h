/* Shared by the model reader's files (tt_model.c, tt_model_ops.c) only. */
#ifndef TT_MODEL_CHECK_H
#define TT_MODEL_CHECK_H

#include "tt_internal.h"

typedef struct {
    const tt_model *m;
    const tt_header_rec *h;
    tt_error *err;
} tt_checker;

static inline int tt_is_kind(const tt_checker *c, uint32_t id, uint8_t kind) {
    return id < c->h->n_tensors && c->m->tensors[id].kind == kind;
}

static inline int tt_is_streamed(const tt_checker *c, uint32_t id) {
    return id < c->h->n_tensors && (c->m->tensors[id].flags & TT_TF_STREAMED);
}

static inline int tt_has_storage(const tt_tensor_rec *t) {
    return !(t->flags & TT_TF_STREAMED);
}

static inline int tt_same_numel(const tt_checker *c, uint32_t a, uint32_t b) {
    return tt_numel(&c->m->tensors[a]) == tt_numel(&c->m->tensors[b]);
}

/* Byte ranges [a, a + na) and [b, b + nb) share a byte. */
static inline int tt_overlap(uint32_t a, uint32_t na, uint32_t b, uint32_t nb) {
    return na && nb && (uint64_t)a < (uint64_t)b + nb && (uint64_t)b < (uint64_t)a + na;
}

extern const char *const tt_tensor_kind_name[5];

/* Every op record (tt_model_ops.c). */
tt_status tt_check_ops(const tt_checker *c);

#endif
