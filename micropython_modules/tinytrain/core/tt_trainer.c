/* The trainer: binds a validated model to the caller's arena and runs its plan. */
#include <string.h>
#include "tt_internal.h"

/* Copy the trained slices out of the (read-only) model into the arena. */
static void load_initial_params(tt_trainer *t) {
    const tt_model *m = &t->model;
    memset(t->arena, 0, m->hdr->persist_size);
    for (uint32_t li = 0; li < m->hdr->n_layers; li++) {
        const tt_layer_rec *L = &m->layers[li];
        const uint32_t kk = (uint32_t)L->kh * L->kw;
        if (L->kind > TT_L_DWCONV) {
            continue;
        }
        if (L->n_train) {
            const int8_t *wf = tt_weights_frozen(m, L);
            int8_t *wt = TT_ARENA(t, int8_t, L->w_arena);
            if (L->kind == TT_L_DWCONV) {
                memcpy(wt, wf, (size_t)L->n_train * kk);
            } else {
                const uint32_t cin = m->tensors[L->in].c, rows = m->tensors[L->out].c * kk;
                for (uint32_t r = 0; r < rows; r++) {
                    memcpy(wt + r * L->n_train, wf + r * cin, L->n_train);
                }
            }
        }
        /* an int16 bias change (TT_LF_BIAS16) starts at 0 */
        if ((L->flags & TT_LF_TRAIN_BIAS) && !(L->flags & TT_LF_BIAS16)) {
            memcpy(t->arena + L->b_arena, TT_BLOB(m, int32_t, L->b_off), 4u * m->tensors[L->out].c);
        }
    }
}

/* A rate init and set_lr take: not NaN, not above 3.0e38 (+infinity). */
static int lr_usable(float lr) {
    return lr == lr && lr <= 3.0e38f;
}

tt_status tt_trainer_init(tt_trainer *t, const tt_model *m, uint8_t *arena, size_t arena_len,
                          float lr, tt_error *err) {
    memset(t, 0, sizeof(*t));
    if (!m || !m->hdr) {
        return tt_fail(err, TT_E_STATE, "model was not opened");
    }
    if (!arena || (uintptr_t)arena % 4u) {
        return tt_fail(err, TT_E_ALIGN, "arena must be 4-byte aligned");
    }
    if (arena_len < tt_model_arena_bytes(m)) {
        return tt_fail(err, TT_E_NOMEM, "model needs %u bytes of arena, %u available", tt_model_arena_bytes(m),
                       (unsigned)arena_len);
    }
    if (!lr_usable(lr)) {
        return tt_fail(err, TT_E_ARG, "learning rate is not finite");
    }
    t->model = *m;
    t->arena = arena;
    t->arena_len = (uint32_t)arena_len;
    t->lr = lr > 0.0f ? lr : m->hdr->lr;
    t->input = (int8_t *)(arena + m->tensors[m->hdr->input_tensor].arena_off);
    load_initial_params(t);
    return TT_OK;
}

tt_status tt_trainer_set_lr(tt_trainer *t, float lr, tt_error *err) {
    if (!t->model.hdr) {
        return tt_fail(err, TT_E_STATE, "trainer is not initialised");
    }
    if (!lr_usable(lr)) {
        return tt_fail(err, TT_E_ARG, "learning rate is not finite");
    }
    t->lr = lr > 0.0f ? lr : t->model.hdr->lr;
    return TT_OK;
}

/* x NULL: the slot holds the input; else x goes into the slot (memmove: x
   may be the slot itself or overlap it). */
static tt_status take_input(tt_trainer *t, const int8_t *x, size_t x_len, tt_error *err) {
    if (!t->model.hdr) {
        return tt_fail(err, TT_E_STATE, "trainer is not initialised");
    }
    if (x && x_len != tt_model_input_bytes(&t->model)) {
        return tt_fail(err, TT_E_ARG, "input has %u bytes, model takes %u", (unsigned)x_len,
                       tt_model_input_bytes(&t->model));
    }
    if (x && x != t->input) {
        memmove(t->input, x, x_len);
    }
    return TT_OK;
}

int8_t *tt_trainer_input(tt_trainer *t, uint32_t *len) {
    if (len) {
        *len = t->model.hdr ? tt_model_input_bytes(&t->model) : 0u;
    }
    return t->model.hdr ? t->input : NULL;
}

#ifdef TT_OP_PROFILE
/* Benchmark builds only (firmware/baremetal/tt_run.c): called as op i starts
   and with i = the number of ops the call ran when it ends. */
void tt_op_profile(uint32_t i);
#define OP_PROFILE(i) tt_op_profile(i)
#else
#define OP_PROFILE(i) ((void)0)
#endif

/* Forward ops [from, n_fwd_ops). */
static void run_forward(tt_trainer *t, uint32_t from, uint32_t to, int training) {
    const tt_model *m = &t->model;
    for (uint32_t i = from; i < to; i++) {
        const tt_op_rec *op = &m->ops[i];
        OP_PROFILE(i);
        if (op->kind == TT_OP_FWD_FUSED) {
            tt_forward_fused(t, op, training);
            continue;
        }
        tt_forward_layer(t, &m->layers[op->layer], training ? op->t[TT_FWD_MASK] : TT_NONE,
                         training ? op->t[TT_FWD_SAVED] : TT_NONE, op->t[TT_FWD_PREP]);
    }
}

static tt_status check_target(const tt_trainer *t, int32_t label, const int8_t *target, size_t target_len,
                              tt_error *err) {
    const tt_model *m = &t->model;
    if (!m->hdr) {
        return tt_fail(err, TT_E_STATE, "trainer is not initialised");
    }
    if (m->hdr->loss_kind == TT_LOSS_SOFTMAX_CE && (label < 0 || (uint32_t)label >= m->hdr->n_classes)) {
        return tt_fail(err, TT_E_ARG, "label %d outside [0, %u)", (int)label, m->hdr->n_classes);
    }
    if (m->hdr->loss_kind == TT_LOSS_MSE && (!target || target_len != m->hdr->n_classes)) {
        return tt_fail(err, TT_E_ARG, "target has %u values, model has %u outputs",
                       (unsigned)(target ? target_len : 0), m->hdr->n_classes);
    }
    return TT_OK;
}

/* The step from forward op `from` on: the ops before it have run. */
static void run_step(tt_trainer *t, uint32_t from, int32_t label, const int8_t *target, float *loss) {
    const tt_model *m = &t->model;
    float l = 0.0f;
    run_forward(t, from, m->hdr->n_fwd_ops, 1);
    for (uint32_t i = m->hdr->n_fwd_ops; i < m->hdr->n_ops; i++) {
        const tt_op_rec *op = &m->ops[i];
        OP_PROFILE(i);
        switch (op->kind) {
        case TT_OP_LOSS: {
            const uint32_t logits = op->t[TT_LOSS_LOGITS], grad = op->t[TT_LOSS_GRAD];
            l = m->hdr->loss_kind == TT_LOSS_MSE ? tt_loss_mse(t, logits, grad, target)
                                                  : tt_loss_softmax_ce(t, logits, grad, label);
            break;
        }
        case TT_OP_BWD:
            tt_backward_layer(t, op->layer, op);
            break;
        default:
            tt_grad_add(t, op->t[TT_GRAD_ADD_SUM], op->t[TT_GRAD_ADD_PART]);
            break;
        }
    }
    OP_PROFILE(m->hdr->n_ops);
    t->steps++;
    if (loss) {
        *loss = l;
    }
}

/* argmax of the logits of the forward pass from op `from` on. */
static void run_predict(tt_trainer *t, uint32_t from, int32_t *cls) {
    const int8_t *q;
    int32_t best = 0;
    run_forward(t, from, t->model.hdr->n_fwd_ops, 0);
    OP_PROFILE(t->model.hdr->n_fwd_ops);
    q = tt_trainer_logits(t);
    for (uint32_t i = 1; i < t->model.hdr->n_classes; i++) {
        if (q[i] > q[best]) {
            best = (int32_t)i;
        }
    }
    if (cls) {
        *cls = best;
    }
}

tt_status tt_trainer_step(tt_trainer *t, const int8_t *x, size_t x_len, int32_t label,
                          const int8_t *target, size_t target_len, float *loss, tt_error *err) {
    tt_status s = check_target(t, label, target, target_len, err);
    if (s != TT_OK || (s = take_input(t, x, x_len, err)) != TT_OK) {
        return s;
    }
    run_step(t, 0, label, target, loss);
    return TT_OK;
}

tt_status tt_trainer_predict(tt_trainer *t, const int8_t *x, size_t x_len, int32_t *cls, tt_error *err) {
    tt_status s = take_input(t, x, x_len, err);
    if (s != TT_OK) {
        return s;
    }
    run_predict(t, 0, cls);
    return TT_OK;
}

int8_t *tt_trainer_cut(tt_trainer *t, uint32_t *len) {
    const uint32_t n = tt_model_cut_bytes(&t->model);
    if (len) {
        *len = n;
    }
    return n ? TT_ARENA(t, int8_t, t->model.tensors[t->model.cut_tensor].arena_off) : NULL;
}

tt_status tt_trainer_prefix(tt_trainer *t, const int8_t *x, size_t x_len, tt_error *err) {
    tt_status s = take_input(t, x, x_len, err);
    if (s != TT_OK) {
        return s;
    }
    if (!t->model.cut_op) {
        return tt_fail(err, TT_E_STATE, "the model has no frozen prefix: training reaches its first layer");
    }
    run_forward(t, 0, t->model.cut_op, 0);
    OP_PROFILE(t->model.cut_op);
    return TT_OK;
}

/* cut NULL: the cut as it is in the arena; else cut_len bytes copied there
   (memmove: cut may be the arena's own bytes). */
static tt_status take_cut(tt_trainer *t, const int8_t *cut, size_t cut_len, tt_error *err) {
    uint32_t n = 0;
    int8_t *dst;
    if (!t->model.hdr) {
        return tt_fail(err, TT_E_STATE, "trainer is not initialised");
    }
    dst = tt_trainer_cut(t, &n);
    if (!dst) {
        return tt_fail(err, TT_E_STATE, "the model has no frozen prefix: training reaches its first layer");
    }
    if (cut && cut_len != n) {
        return tt_fail(err, TT_E_ARG, "features have %u bytes, the model's cut has %u", (unsigned)cut_len, n);
    }
    if (cut && cut != dst) {
        memmove(dst, cut, n);
    }
    return TT_OK;
}

tt_status tt_trainer_step_from_cut(tt_trainer *t, const int8_t *cut, size_t cut_len, int32_t label,
                                   const int8_t *target, size_t target_len, float *loss, tt_error *err) {
    tt_status s = check_target(t, label, target, target_len, err);
    if (s != TT_OK || (s = take_cut(t, cut, cut_len, err)) != TT_OK) {
        return s;
    }
    run_step(t, t->model.cut_op, label, target, loss);
    return TT_OK;
}

tt_status tt_trainer_predict_from_cut(tt_trainer *t, const int8_t *cut, size_t cut_len, int32_t *cls,
                                      tt_error *err) {
    tt_status s = take_cut(t, cut, cut_len, err);
    if (s != TT_OK) {
        return s;
    }
    run_predict(t, t->model.cut_op, cls);
    return TT_OK;
}

const int8_t *tt_trainer_logits(const tt_trainer *t) {
    return (const int8_t *)(t->arena + t->model.tensors[t->model.hdr->logits_tensor].arena_off);
}

uint8_t *tt_trainer_params(tt_trainer *t, uint32_t *len) {
    if (len) {
        *len = t->model.hdr ? t->model.hdr->persist_size : 0u;
    }
    return t->arena;
}

uint32_t tt_trainer_trained_param_count(const tt_trainer *t) {
    const tt_model *m = &t->model;
    uint32_t n = 0;
    for (uint32_t li = 0; m->hdr && li < m->hdr->n_layers; li++) {
        const tt_layer_rec *L = &m->layers[li];
        const uint32_t kk = (uint32_t)L->kh * L->kw, cout = m->tensors[L->out].c;
        if (L->kind > TT_L_DWCONV) {
            continue;
        }
        n += L->kind == TT_L_DWCONV ? L->n_train * kk : cout * kk * L->n_train;
        n += (L->flags & TT_LF_TRAIN_BIAS) ? cout : 0u;
    }
    return n;
}

uint8_t *tt_trainer_tensor(tt_trainer *t, uint32_t id) {
    if (!t->model.hdr || id >= t->model.hdr->n_tensors ||
        (t->model.tensors[id].flags & TT_TF_STREAMED)) {
        return NULL;
    }
    return t->arena + t->model.tensors[id].arena_off;
}
