/*
 * What the host simulator needs beyond the core API: the sizes of the core's
 * structs (Python allocates them) and the gradient hook. Host build only.
 */
#include "tt_core.h"

size_t tts_sizeof_model(void) { return sizeof(tt_model); }
size_t tts_sizeof_trainer(void) { return sizeof(tt_trainer); }
size_t tts_sizeof_error(void) { return sizeof(tt_error); }

void tts_set_grad_hook(tt_trainer *t, tt_grad_hook hook, void *ctx) {
    t->grad_hook = hook;
    t->grad_hook_ctx = ctx;
}

uint32_t tts_steps(const tt_trainer *t) { return t->steps; }
void tts_set_steps(tt_trainer *t, uint32_t steps) { t->steps = steps; }
float tts_lr(const tt_trainer *t) { return t->lr; }

/* The frozen prefix's extent as the core found it (tests check it against
   their own search). */
uint32_t tts_cut_op(const tt_model *m) { return m->cut_op; }
uint32_t tts_cut_tensor(const tt_model *m) { return m->cut_tensor; }
