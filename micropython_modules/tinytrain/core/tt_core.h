/*
 * tinytrain core: int8 training with sparse updates in one static arena.
 *
 * Portable C99, no allocation, no MicroPython. The model file carries the
 * whole plan (schedule, tensor placement, trained channels, QAS factors); the
 * core validates it once and then only executes it.
 */
#ifndef TT_CORE_H
#define TT_CORE_H

#include <stddef.h>
#include <stdint.h>
#include "tt_format.h"

typedef enum {
    TT_OK = 0,
    TT_E_TRUNCATED,    /* buffer shorter than the header or file_size says */
    TT_E_MAGIC,        /* not a tinytrain model */
    TT_E_VERSION,      /* made for another format version */
    TT_E_CRC,          /* contents damaged */
    TT_E_ALIGN,        /* buffer or section not 4-byte aligned */
    TT_E_HEADER,       /* header field out of range */
    TT_E_SECTION,      /* a section lies outside the file */
    TT_E_TENSOR,       /* tensor record inconsistent */
    TT_E_LAYER,        /* layer record inconsistent */
    TT_E_SHAPE,        /* shapes of a layer do not fit together */
    TT_E_BLOB,         /* constant data out of range */
    TT_E_QUANT,        /* quantisation parameter out of range */
    TT_E_PERM,         /* channel order is not a valid permutation */
    TT_E_OP,           /* op record inconsistent */
    TT_E_ARENA,        /* the model's arena plan is inconsistent */
    TT_E_ARG,          /* bad argument at run time (size, label) */
    TT_E_STATE,        /* call out of order */
    TT_E_PARAMS,       /* saved parameters do not belong to this model */
    TT_E_NOMEM,        /* the arena given is smaller than the plan needs */
} tt_status;

#define TT_ERR_MSG_LEN 112
typedef struct {
    tt_status code;
    char msg[TT_ERR_MSG_LEN];
} tt_error;

/* A validated view of a model file; points into the caller's buffer. */
typedef struct {
    const uint8_t *base;
    uint32_t size;
    const tt_header_rec *hdr;
    const tt_tensor_rec *tensors;
    const tt_layer_rec *layers;
    const tt_op_rec *ops;
    const uint8_t *blob;
    uint32_t cut_op;      /* ops [0, cut_op) are the frozen prefix (tt_cut.c); 0: none */
    uint32_t cut_tensor;  /* the tensor the prefix hands on (the cut), TT_NONE without a prefix */
} tt_model;

/* Called with every weight-gradient accumulator before it is applied
   (host tests compare it against float autodiff). grad_real = acc * scale. */
typedef void (*tt_grad_hook)(void *ctx, uint32_t layer, uint32_t index, int64_t acc, float scale);

typedef struct {
    tt_model model;
    uint8_t *arena;
    uint32_t arena_len;
    int8_t *input;        /* the input slot: the input tensor's arena bytes */
    float lr;
    uint32_t steps;
    tt_grad_hook grad_hook;
    void *grad_hook_ctx;
} tt_trainer;

/* Validate buf[0, len) as a model file. Nothing else reads the buffer unchecked. */
tt_status tt_model_open(tt_model *m, const uint8_t *buf, size_t len, tt_error *err);

/* Whether params[0, len) may be loaded as the trained parameters
   (arena[0, persist_size)) of this model: the size, and the value ranges the
   model's own parameters are checked against at open. */
tt_status tt_model_check_params(const tt_model *m, const uint8_t *params, size_t len, tt_error *err);

/* Bytes of arena a trainer needs: the plan's arena_size, which holds the
   input slot. */
uint32_t tt_model_arena_bytes(const tt_model *m);
uint32_t tt_model_input_bytes(const tt_model *m);

/* Bytes of the model's cut (the output of its frozen prefix: the tensor
   the backward never goes past, tt_cut.c), 0 when the first layer trains. */
uint32_t tt_model_cut_bytes(const tt_model *m);

/* Bind a validated model to an arena and load its initial trained parameters.
   lr <= 0 takes the model's default. */
tt_status tt_trainer_init(tt_trainer *t, const tt_model *m, uint8_t *arena, size_t arena_len,
                          float lr, tt_error *err);

/* The learning rate of the following steps (a schedule: one call between
   steps), with init's rule: lr <= 0 takes the model's default; NaN or a
   value above 3.0e38 is refused and leaves the rate as it was. */
tt_status tt_trainer_set_lr(tt_trainer *t, float lr, tt_error *err);

/* The input slot (TensorFlow Lite Micro's input(0)): the caller (a sensor, a
   camera) writes one input here, in the input's quantisation, then calls
   step or predict with x NULL. The plan reuses these bytes once the layers
   reading the input have run: fill the slot again before every call. */
int8_t *tt_trainer_input(tt_trainer *t, uint32_t *len);

/* One SGD step on one sample: x NULL takes the input slot as filled, else
   x_len bytes of x are copied into the slot first. target: class label
   (softmax CE), or for MSE an int8 vector of n_classes in the output
   quantisation. */
tt_status tt_trainer_step(tt_trainer *t, const int8_t *x, size_t x_len, int32_t label,
                          const int8_t *target, size_t target_len, float *loss, tt_error *err);

/* Forward pass only (x as for step); *cls = argmax of the logits (lowest index wins ties). */
tt_status tt_trainer_predict(tt_trainer *t, const int8_t *x, size_t x_len, int32_t *cls,
                             tt_error *err);

/* The frozen prefix, for epochs on stored samples: tt_trainer_prefix runs
   the forward ops before the cut on an input (x as for step), leaving the
   cut's bytes in the arena where tt_trainer_cut points (valid until the
   next call); the caller keeps them anywhere (RAM, SDRAM, a file) since
   training never changes them. step_from_cut and predict_from_cut copy
   cut_len bytes of cut there (cut NULL: the cut as it is in the arena) and
   run the rest of the step or the forward pass: the results are those of
   step and predict on the input, bit for bit. TT_E_STATE without a cut. */
tt_status tt_trainer_prefix(tt_trainer *t, const int8_t *x, size_t x_len, tt_error *err);
int8_t *tt_trainer_cut(tt_trainer *t, uint32_t *len);
tt_status tt_trainer_step_from_cut(tt_trainer *t, const int8_t *cut, size_t cut_len, int32_t label,
                                   const int8_t *target, size_t target_len, float *loss, tt_error *err);
tt_status tt_trainer_predict_from_cut(tt_trainer *t, const int8_t *cut, size_t cut_len, int32_t *cls,
                                      tt_error *err);

/* The logits of the last forward pass (n_classes int8 values). */
const int8_t *tt_trainer_logits(const tt_trainer *t);

/* Trained parameters: arena[0, persist_size). */
uint8_t *tt_trainer_params(tt_trainer *t, uint32_t *len);
uint32_t tt_trainer_trained_param_count(const tt_trainer *t);

/* The trained-parameter file (docs/format.md; tt_params.c): a header of
   TT_PARAMS_HEADER_BYTES, the trained parameters, a 4-byte checksum. */
#define TT_PARAMS_HEADER_BYTES 20u
#define TT_PARAMS_OVERHEAD 24u
/* Bytes of t's parameter file. */
uint32_t tt_params_file_size(const tt_trainer *t);
/* Bytes [off, off + len) of t's parameter file into out, in chunks of any
   size (a chunk holding the checksum costs one pass over the parameters).
   Returns the bytes written: fewer at the end of the file. */
size_t tt_params_file_read(const tt_trainer *t, uint32_t off, uint8_t *out, size_t len);
/* The checks that do not depend on the model (magic, version, size,
   checksum): a file cut short or damaged fails them (TT_E_PARAMS). */
tt_status tt_params_check(const uint8_t *b, size_t len, tt_error *err);
/* Those and: made for the model with this CRC, holding param_bytes. */
tt_status tt_params_check_model(const uint8_t *b, size_t len, uint32_t model_crc, uint32_t param_bytes,
                                tt_error *err);
/* Every check against t's model, then t's parameters and step count from the
   file; t is untouched when a check fails. */
tt_status tt_params_load(tt_trainer *t, const uint8_t *b, size_t len, tt_error *err);

/* Pointer to a tensor's storage in the arena (NULL for external/invalid). */
uint8_t *tt_trainer_tensor(tt_trainer *t, uint32_t id);

/* IEEE CRC-32 (zlib's). */
uint32_t tt_crc32(uint32_t crc, const uint8_t *p, size_t n);

const char *tt_status_name(tt_status s);

#endif
