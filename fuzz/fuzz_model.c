/*
 * libFuzzer harness: one input is a model file, taken through the core's
 * whole API as a board would: open, a trainer, steps, predictions and their
 * logits (evaluate), the trained parameters saved and loaded into a second
 * trainer, which then steps and predicts too (with some bytes of the
 * parameters set to extremes, where tt_model_check_params accepts them). Built with ASan and UBSan,
 * every buffer exactly sized, so any access the reader let through shows.
 * model_mutator.c rewrites whole fields and keeps the CRC right.
 */
#include <stdlib.h>
#include <string.h>
#include "tt_core.h"

/* Plans needing more are refused, like a board without that much RAM. */
#define ARENA_CAP (4u << 20)
#define N_STEPS 2u
#define N_EVALS 2u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint32_t next_rand(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void fill(int8_t *p, uint32_t n, uint32_t *s) {
    for (uint32_t i = 0; i < n; i++) {
        p[i] = (int8_t)(next_rand(s) >> 24);
    }
}

/* Samples and labels drawn from the file's own CRC, so a run is repeatable. */
static void train_and_predict(tt_trainer *t, const tt_header_rec *h, int8_t *x, uint32_t in_bytes,
                              int8_t *target, uint32_t *s) {
    tt_error err;
    for (uint32_t k = 0; k < N_STEPS; k++) {
        float loss = 0.0f;
        int32_t label = (int32_t)(next_rand(s) % h->n_classes);
        fill(x, in_bytes, s);
        fill(target, h->n_classes, s);
        if (tt_trainer_step(t, x, in_bytes, label, target, h->n_classes, &loss, &err) != TT_OK) {
            abort(); /* an opened model with the right sizes must train */
        }
    }
    for (uint32_t k = 0; k < N_EVALS; k++) {
        int32_t cls = -1;
        const int8_t *logits;
        int32_t sum = 0;
        fill(x, in_bytes, s);
        if (tt_trainer_predict(t, x, in_bytes, &cls, &err) != TT_OK || cls < 0 || (uint32_t)cls >= h->n_classes) {
            abort();
        }
        logits = tt_trainer_logits(t);
        for (uint32_t i = 0; i < h->n_classes; i++) {
            sum += logits[i]; /* read every logit: ASan checks the range */
        }
        (void)sum;
    }
}

static void exercise(const tt_model *m) {
    const tt_header_rec *h = m->hdr;
    const uint32_t need = tt_model_arena_bytes(m), in_bytes = tt_model_input_bytes(m);
    uint32_t s = h->crc32 | 1u, plen = 0;
    uint8_t *arena, *arena2 = NULL, *saved = NULL;
    int8_t *x, *target;
    tt_trainer t, t2;
    tt_error err;
    if (need > ARENA_CAP) {
        return;
    }
    arena = malloc(need ? need : 1u);
    x = malloc(in_bytes ? in_bytes : 1u);
    target = malloc(h->n_classes);
    /* an arena holds whatever was there before */
    fill((int8_t *)arena, need, &s);
    if (tt_trainer_init(&t, m, arena, need, 0.0f, &err) != TT_OK) {
        abort();
    }
    train_and_predict(&t, h, x, in_bytes, target, &s);
    (void)tt_trainer_trained_param_count(&t);
    for (uint32_t id = 0; id <= h->n_tensors; id++) {
        const uint8_t *p = tt_trainer_tensor(&t, id);
        if (p && p[0] == 0x5A) { /* touch the first byte of each tensor with storage */
            s++;
        }
    }
    /* save: the parameters out; load: into a second trainer on a fresh arena */
    {
        const uint8_t *params = tt_trainer_params(&t, &plen);
        saved = malloc(plen ? plen : 1u);
        memcpy(saved, params, plen);
    }
    arena2 = malloc(need ? need : 1u);
    fill((int8_t *)arena2, need, &s);
    if (tt_trainer_init(&t2, m, arena2, need, 0.0f, &err) != TT_OK) {
        abort();
    }
    {
        uint32_t plen2 = 0;
        uint8_t *p2 = tt_trainer_params(&t2, &plen2);
        if (plen2 != plen || tt_model_check_params(m, saved, plen, &err) != TT_OK) {
            abort(); /* what training produced must load again */
        }
        /* a parameter file from elsewhere: some bytes set to extremes, loaded
           if the check lets it through (the kernels then show whether the
           check was enough) */
        for (uint32_t k = 0; plen && k < 4u; k++) {
            static const uint8_t extremes[] = {0x80, 0x7F, 0x81, 0x40, 0xC0, 0x00, 0xFF};
            saved[next_rand(&s) % plen] = extremes[next_rand(&s) % sizeof(extremes)];
        }
        if (tt_model_check_params(m, saved, plen, &err) == TT_OK) {
            memcpy(p2, saved, plen);
        }
    }
    train_and_predict(&t2, h, x, in_bytes, target, &s);
    free(saved);
    free(arena2);
    free(target);
    free(x);
    free(arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* exactly sized (malloc aligns it), so reads past the file are caught */
    uint8_t *buf = malloc(size ? size : 1u);
    tt_model m;
    tt_error err;
    memset(&err, 0, sizeof(err));
    memcpy(buf, data, size);
    if (tt_model_open(&m, buf, size, &err) == TT_OK) {
        exercise(&m);
    } else if (err.code == TT_OK || err.msg[TT_ERR_MSG_LEN - 1] != 0 || !err.msg[0]) {
        abort(); /* a refusal always says why */
    }
    free(buf);
    return 0;
}
