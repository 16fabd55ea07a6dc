/*
 * tt_run: drive the tinytrain core from files, the same program on the host
 * (built with ASan/UBSan by the tests) and on the emulated Cortex-M7 (files
 * through semihosting). It reads, from the current directory:
 *   tt_model.bin  a model file
 *   tt_job.bin    optional: "TTJB", u32 steps, u32 evals, f32 lr, then per
 *                 step the input and an i32 label (MSE: n_classes int8
 *                 targets), then the inputs to evaluate; or "TTJC" (epochs on
 *                 stored samples with the frozen-prefix cache): u32 steps,
 *                 u32 evals, f32 lr, u32 samples, the samples (input and
 *                 label as above), a u32 sample index per step, the inputs
 *                 to evaluate. A sample's first step runs the prefix and
 *                 keeps the cut in a store (PSRAM: the board's SDRAM); its
 *                 later steps start from the stored cut.
 * and writes tt_result.bin: u32 status, u32 message length, message; if the
 * status is 0: f32 loss per step, per evaluation i32 class and the logits,
 * then the trained parameters. Each input is written into the trainer's
 * input slot (as a camera would fill it) and the call takes it from there.
 * On the M7 and RV32 (the Makefile defines TT_RUN_RV32) it prints, per call, the instructions
 * and the stack the call used below tt_run's own frame; built with
 * -DTT_OP_PROFILE also the instructions of every op of the call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tt_core.h"

#ifdef TT_RUN_HOSTED
/* Exactly-sized heap buffers so the sanitizers see every overrun. */
static uint8_t *alloc_bytes(size_t n, int is_arena) {
    (void)is_arena;
    return malloc(n ? n : 1);
}
#define COUNTER_START() ((void)0)
#define COUNTER_READ() 0ull
#define STACK_MARK() ((void)0)
#define STACK_SINCE_MARK() 0u
#else
#ifdef TT_RUN_RV32
/* RV32 (TARGET=rv32 of the Makefile): one 128 MB RAM holds files and arena. */
#include "rv32_runtime.h"
#define FILES_MEM_SECTION
#define COUNTER_START() rv32_counter_start()
#define COUNTER_READ() ((unsigned long long)rv32_counter_instructions())
#define STACK_MARK() rv32_stack_mark()
#define STACK_SINCE_MARK() ((unsigned)rv32_stack_since_mark())
#else
#include "m7_runtime.h"
#define FILES_MEM_SECTION M7_PSRAM
#define COUNTER_START() m7_counter_start()
#define COUNTER_READ() ((unsigned long long)m7_counter_instructions())
#define STACK_MARK() m7_stack_mark()
#define STACK_SINCE_MARK() ((unsigned)m7_stack_since_mark())
#endif
/* Files go to the large PSRAM (flash stands in on a board), the arena to RAM. */
#define FILES_MAX (8u << 20)
#define ARENA_MAX (1u << 20)
static uint32_t files_mem[FILES_MAX / 4] FILES_MEM_SECTION;
static uint32_t arena_mem[ARENA_MAX / 4];
static size_t files_used;
static uint8_t *alloc_bytes(size_t n, int is_arena) {
    uint8_t *p;
    if (is_arena) {
        return n <= ARENA_MAX ? (uint8_t *)arena_mem : NULL;
    }
    if (n > FILES_MAX - files_used) {
        return NULL;
    }
    p = (uint8_t *)files_mem + files_used;
    files_used += (n + 7u) & ~(size_t)7u;
    return p;
}
#endif

#ifdef TT_OP_PROFILE
/* Instructions per op of one call (the core calls tt_op_profile as each op
   starts and once at the end; the counter is read before and after this
   function's own work, which stays outside every op's figure). */
#define MAX_PROFILED_OPS 4096u
static unsigned long long op_instructions[MAX_PROFILED_OPS];
static uint32_t op_current = MAX_PROFILED_OPS, op_count;
static unsigned long long op_t0;

void tt_op_profile(uint32_t i) {
    const unsigned long long now = COUNTER_READ();
    if (op_current < MAX_PROFILED_OPS) {
        op_instructions[op_current] += now - op_t0;
    }
    op_current = i;
    op_count = i > op_count ? i : op_count;
    op_t0 = COUNTER_READ();
}

static void print_ops(const char *what, uint32_t k) {
    printf("ops %s %u:", what, (unsigned)k);
    for (uint32_t i = 0; i < op_count && i < MAX_PROFILED_OPS; i++) {
        printf(" %llu", op_instructions[i]);
        op_instructions[i] = 0;
    }
    printf("\n");
    op_current = MAX_PROFILED_OPS;
    op_count = 0;
}
#else
#define print_ops(what, k) ((void)0)
#endif

static tt_model model;
static tt_trainer trainer;

/* One step of a cached job on sample i: the prefix into the store the
   first time, then the rest of the step from the stored cut. */
static tt_status cached_step(uint8_t *store, uint8_t *cached, uint32_t i, const uint8_t *sample,
                             uint32_t in_bytes, int32_t label, const int8_t *target, uint32_t ncls,
                             float *loss, tt_error *err) {
    uint32_t cut_len = 0;
    int8_t *cut = tt_trainer_cut(&trainer, &cut_len);
    tt_status s;
    if (!cached[i]) {
        memcpy(tt_trainer_input(&trainer, NULL), sample, in_bytes);
        s = tt_trainer_prefix(&trainer, NULL, 0, err);
        if (s != TT_OK) {
            return s;
        }
        memcpy(store + (size_t)i * cut_len, cut, cut_len);
        cached[i] = 1;
    }
    return tt_trainer_step_from_cut(&trainer, (const int8_t *)(store + (size_t)i * cut_len), cut_len, label,
                                    target, target ? ncls : 0u, loss, err);
}

static uint8_t *read_file(const char *name, size_t *len) {
    FILE *f = fopen(name, "rb");
    uint8_t *buf;
    long n;
    if (!f) {
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = n >= 0 ? alloc_bytes((size_t)n, 0) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void put_u32(FILE *f, uint32_t v) {
    fwrite(&v, 4, 1, f);
}

static int finish(FILE *out, tt_status s, const tt_error *err) {
    uint32_t n = s == TT_OK ? 0u : (uint32_t)strlen(err->msg);
    fseek(out, 0, SEEK_SET);
    put_u32(out, (uint32_t)s);
    put_u32(out, n);
    fwrite(err->msg, 1, n, out);
    fclose(out);
    if (s != TT_OK) {
        printf("status %d (%s): %s\n", (int)s, tt_status_name(s), err->msg);
    }
    return 0;
}

int main(void) {
    tt_error err;
    size_t model_len = 0, job_len = 0;
    uint8_t *mbuf, *arena, *job;
    FILE *out = fopen("tt_result.bin", "wb");
    tt_status s;
    uint32_t steps = 0, evals = 0, in_bytes, ncls, params_len, pos = 16, n_samples = 0;
    uint8_t *store = NULL, *cached = NULL;
    int cache = 0;
    float lr = 0.0f;
    memset(&err, 0, sizeof(err));
    if (!out) {
        printf("cannot write tt_result.bin\n");
        return 1;
    }
    put_u32(out, 0xFFFFFFFFu); /* placeholder status: a crash leaves it */
    put_u32(out, 0);
    mbuf = read_file("tt_model.bin", &model_len);
    if (!mbuf) {
        printf("cannot read tt_model.bin\n");
        return 1;
    }
    s = tt_model_open(&model, mbuf, model_len, &err);
    if (s != TT_OK) {
        return finish(out, s, &err);
    }
    job = read_file("tt_job.bin", &job_len);
    cache = job && job_len >= 20 && memcmp(job, "TTJC", 4) == 0;
    if (job && !cache && (job_len < 16 || memcmp(job, "TTJB", 4) != 0)) {
        printf("tt_job.bin is malformed\n");
        return 1;
    }
    if (job) {
        memcpy(&steps, job + 4, 4);
        memcpy(&evals, job + 8, 4);
        memcpy(&lr, job + 12, 4);
    }
    if (cache) {
        memcpy(&n_samples, job + 16, 4);
        pos = 20;
    }
    arena = alloc_bytes(tt_model_arena_bytes(&model), 1);
    if (!arena) {
        printf("arena of %u bytes does not fit\n", (unsigned)tt_model_arena_bytes(&model));
        return 1;
    }
    s = tt_trainer_init(&trainer, &model, arena, tt_model_arena_bytes(&model), lr, &err);
    if (s != TT_OK) {
        return finish(out, s, &err);
    }
    in_bytes = tt_model_input_bytes(&model);
    ncls = model.hdr->n_classes;
    if (cache) {
        const uint32_t sample_bytes = in_bytes + (model.hdr->loss_kind == TT_LOSS_MSE ? ncls : 4u);
        store = alloc_bytes((size_t)n_samples * tt_model_cut_bytes(&model) + 1u, 0);
        cached = alloc_bytes(n_samples + 1u, 0);
        if (!store || !cached || (uint64_t)pos + (uint64_t)n_samples * sample_bytes + 4ull * steps > job_len) {
            printf("cached job: %u samples do not fit\n", (unsigned)n_samples);
            return 1;
        }
        memset(cached, 0, n_samples);
    }
    printf("model %u bytes, arena %u bytes, params %u bytes\n", (unsigned)model_len,
           (unsigned)tt_model_arena_bytes(&model), (unsigned)model.hdr->persist_size);
    for (uint32_t i = 0; i < steps; i++) {
        const int mse = model.hdr->loss_kind == TT_LOSS_MSE;
        const uint32_t need = in_bytes + (mse ? ncls : 4u);
        const uint8_t *sample = job + pos;
        uint32_t k = 0;
        int32_t label = 0;
        float loss = 0.0f;
        unsigned long long t0;
        if (cache) {
            memcpy(&k, job + 20 + (size_t)n_samples * need + 4u * i, 4);
            if (k >= n_samples) {
                printf("cached job: step %u names sample %u of %u\n", (unsigned)i, (unsigned)k, (unsigned)n_samples);
                return 1;
            }
            sample = job + 20 + (size_t)k * need;
        } else if (pos + need > job_len) {
            printf("job file ends at step %u\n", (unsigned)i);
            return 1;
        }
        if (!mse) {
            memcpy(&label, sample + in_bytes, 4);
        }
        if (!cache) {
            memcpy(tt_trainer_input(&trainer, NULL), sample, in_bytes);
        }
        STACK_MARK();
        COUNTER_START();
        t0 = COUNTER_READ();
        if (cache) {
            s = cached_step(store, cached, k, sample, in_bytes, label, mse ? (const int8_t *)(sample + in_bytes) : NULL,
                            ncls, &loss, &err);
        } else {
            s = tt_trainer_step(&trainer, NULL, 0, label, mse ? (const int8_t *)(sample + in_bytes) : NULL,
                                mse ? ncls : 0u, &loss, &err);
        }
        t0 = COUNTER_READ() - t0;
        if (s != TT_OK) {
            return finish(out, s, &err);
        }
#ifndef TT_RUN_HOSTED
        printf("step %u: %llu instructions, stack %u bytes\n", (unsigned)i, t0, STACK_SINCE_MARK());
        print_ops("step", i);
#else
        (void)t0;
#endif
        fwrite(&loss, 4, 1, out);
        if (!cache) {
            pos += need;
        }
    }
    if (cache) {
        pos = 20u + n_samples * (in_bytes + (model.hdr->loss_kind == TT_LOSS_MSE ? ncls : 4u)) + 4u * steps;
    }
    for (uint32_t i = 0; i < evals; i++) {
        int32_t cls = -1;
        unsigned long long t0;
        if (pos + in_bytes > job_len) {
            printf("job file ends at evaluation %u\n", (unsigned)i);
            return 1;
        }
        memcpy(tt_trainer_input(&trainer, NULL), job + pos, in_bytes);
        STACK_MARK();
        COUNTER_START();
        t0 = COUNTER_READ();
        s = tt_trainer_predict(&trainer, NULL, 0, &cls, &err);
        t0 = COUNTER_READ() - t0;
        if (s != TT_OK) {
            return finish(out, s, &err);
        }
#ifndef TT_RUN_HOSTED
        printf("predict %u: %llu instructions, stack %u bytes\n", (unsigned)i, t0, STACK_SINCE_MARK());
        print_ops("predict", i);
#else
        (void)t0;
#endif
        fwrite(&cls, 4, 1, out);
        fwrite(tt_trainer_logits(&trainer), 1, ncls, out);
        pos += in_bytes;
    }
    {
        const uint8_t *p = tt_trainer_params(&trainer, &params_len);
        fwrite(p, 1, params_len, out);
    }
    return finish(out, TT_OK, &err);
}
