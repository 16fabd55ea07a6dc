/*
 * tinytrain model file: on-disk records (see docs/format.md).
 *
 * All integers are little-endian; every record is naturally aligned so the
 * file can be used in place from a read-only, 4-byte aligned buffer (flash).
 */
#ifndef TT_FORMAT_H
#define TT_FORMAT_H

#include <stdint.h>

#define TT_MAGIC0 'T'
#define TT_MAGIC1 'T'
#define TT_MAGIC2 'R'
#define TT_MAGIC3 'N'
#define TT_VERSION_MAJOR 2
#define TT_VERSION_MINOR 3

#define TT_HEADER_SIZE 128u
#define TT_NONE 0xFFFFu        /* "no tensor" in a 16-bit tensor id */
#define TT_NO_OFFSET 0xFFFFFFFFu

/* Loss kinds */
enum { TT_LOSS_SOFTMAX_CE = 0, TT_LOSS_MSE = 1 };

/* Tensor kinds */
enum {
    TT_T_ACT = 1,   /* int8 activation, NHWC, per-tensor scale and zero point */
    TT_T_GRAD = 2,  /* float32 scale followed by int16 values (block floating point) */
    TT_T_MASK = 3,  /* 1 bit per element, LSB first: 1 = clamp was inactive */
    TT_T_SAVED = 4, /* int8 copy of the trained input channels of a layer */
};
/* flag 0x01 is unused (1.x: an input outside the arena), refused like any unknown flag */
#define TT_TF_STREAMED 0x02u /* produced and consumed row by row inside one fused op: no storage */

/* Layer kinds */
enum { TT_L_CONV = 1, TT_L_DWCONV = 2, TT_L_ADD = 3, TT_L_AVGPOOL = 4 };
/* Format 2.1: windowed pools (kh, kw, stride, pad_top, pad_left) and
   activations by table (w_off int8[256], gscale_off int16[256] derivative
   with `shift` fraction bits). */
enum { TT_L_MAXPOOL = 5, TT_L_AVGPOOL2D = 6, TT_L_LUT = 7 };
#define TT_LF_TRAIN_BIAS 0x01u
#define TT_LF_RESIDUE 0x02u /* trained weights keep 8 extra fraction bits */
#define TT_LF_COUNT_PAD 0x04u /* an average pool (2D) divides every window by kh*kw, padding included */
/* Format 2.2, with TT_LF_TRAIN_BIAS (conv, depthwise): b_arena holds int16
   [cout], the trained change of each bias; the bias is b_off's int32 value
   plus it, and the change saturates at the int16 limits. */
#define TT_LF_BIAS16 0x08u

/* Op kinds */
enum { TT_OP_FWD = 1, TT_OP_LOSS = 2, TT_OP_BWD = 3, TT_OP_GRAD_ADD = 4, TT_OP_FWD_FUSED = 5 };

/* Slots of an op's tensor ids (tt_op_rec.t), per kind (docs/format.md).
   TT_OP_FWD: run `layer`, writing its clamp mask and saved input (each or TT_NONE),
   (2.3) its prepared constants: ACT tensor of tt_prep_bytes, or TT_NONE. */
enum { TT_FWD_MASK = 0, TT_FWD_SAVED = 1, TT_FWD_PREP = 2 };
/* TT_OP_LOSS: the logits, the gradient it writes. */
enum { TT_LOSS_LOGITS = 0, TT_LOSS_GRAD = 1 };
/* TT_OP_BWD: backward of `layer`: its output gradient (modified in place),
   clamp mask, saved input (weight-trained layers), input gradient to write,
   second input's gradient (add); each but the first may be TT_NONE. */
enum { TT_BWD_OUT_GRAD = 0, TT_BWD_MASK = 1, TT_BWD_SAVED = 2, TT_BWD_IN_GRAD = 3, TT_BWD_IN2_GRAD = 4 };
/* TT_OP_GRAD_ADD: sum += part (a tensor read by two layers). */
enum { TT_GRAD_ADD_SUM = 0, TT_GRAD_ADD_PART = 1 };
#define TT_OP_SLOTS 6u

/* TT_OP_FWD_FUSED: `layer` is a depthwise layer B run row by row, with
   t[0] producer layer A (conv, A.out = B.in, streamed) or TT_NONE,
   t[1] ring: ACT tensor of >= B.kh rows of A's output (TT_NONE without A),
   t[2] consumer layer C (1x1 stride-1 conv, C.in = B.out, streamed) or TT_NONE,
   t[3] row: ACT tensor of >= 1 row of B's output (TT_NONE without C),
   t[4] mask of the op's output (C's, else B's) or TT_NONE,
   t[5] (2.3) prepared constants: ACT tensor of the tt_prep_bytes of the
   layers the op's flags name (TT_FUSED_PREP_A/B/C), or TT_NONE (flags 0). */
enum { TT_FUSED_A = 0, TT_FUSED_RING = 1, TT_FUSED_C = 2, TT_FUSED_ROW = 3, TT_FUSED_MASK = 4, TT_FUSED_PREP = 5 };
/* TT_OP_FWD_FUSED flags: the layers whose constants t[5] holds, in this order. */
enum { TT_FUSED_PREP_A = 1, TT_FUSED_PREP_B = 2, TT_FUSED_PREP_C = 4 };

typedef struct {
    uint8_t magic[4];
    uint16_t version_major;
    uint16_t version_minor;
    uint32_t file_size;
    uint32_t crc32;        /* IEEE CRC-32 of bytes [16, file_size) */
    uint32_t header_size;  /* TT_HEADER_SIZE */
    uint32_t n_tensors;
    uint32_t tensors_off;  /* file offset of tt_tensor_rec[n_tensors] */
    uint32_t n_layers;
    uint32_t layers_off;   /* file offset of tt_layer_rec[n_layers] */
    uint32_t n_ops;
    uint32_t ops_off;      /* file offset of tt_op_rec[n_ops] */
    uint32_t n_fwd_ops;    /* ops[0, n_fwd_ops) are the inference pass */
    uint32_t blob_off;     /* file offset of constant data */
    uint32_t blob_size;
    uint32_t arena_size;   /* bytes of working memory the plan needs */
    uint32_t persist_size; /* arena[0, persist_size): trained parameters */
    uint16_t input_tensor;
    uint16_t logits_tensor;
    uint16_t n_classes;    /* elements of the logits tensor */
    uint8_t loss_kind;
    uint8_t flags;         /* host-only facts (2.1): 1 input channels-first at the source, 2 names_off set */
    float lr;              /* default learning rate (float SGD units) */
    uint32_t exp_table_off;/* blob offset of uint32[256]: round(2^30 exp(-s_y d)) */
    uint32_t names_off;    /* blob offset of the layer names (host-only, 2.1) */
    uint32_t reserved[11];
} tt_header_rec;

typedef struct {
    uint32_t arena_off;
    uint32_t size;         /* bytes, exactly what kind and shape imply */
    uint8_t kind;
    uint8_t flags;
    uint16_t h, w, c;
    float scale;           /* ACT and SAVED: real = scale * (q - zero) */
    int32_t zero;
} tt_tensor_rec;

typedef struct {
    uint8_t kind;
    uint8_t kh, kw, stride;
    uint8_t pad_top, pad_left;
    uint8_t flags;
    uint8_t reserved0;
    uint16_t in, in2, out;
    uint16_t n_train;      /* trained input channels (depthwise: channels); 0 = frozen */
    int16_t act_min, act_max; /* output clamp, in output integer units */
    /* blob offsets (CONV / DWCONV) */
    uint32_t w_off;        /* int8 [cout][kh][kw][cin] (dw: [c][kh][kw]), channel axis in perm order */
    uint32_t b_off;        /* int32 [cout] */
    uint32_t mult_off;     /* int32 [cout] requantisation multipliers */
    uint32_t shift_off;    /* int8  [cout] requantisation shifts */
    uint32_t gscale_off;   /* int32 [cout] Q31 of s_w[c] / wscale_max, or TT_NO_OFFSET */
    float wscale_max;
    uint32_t perm_off;     /* uint16 [cin] storage order of input channels, or TT_NO_OFFSET */
    uint32_t qas_w_off;    /* float [cout] weight update factor, or TT_NO_OFFSET */
    uint32_t qas_b_off;    /* float [cout] bias update factor, or TT_NO_OFFSET */
    /* arena offsets of trained parameters (TT_NO_OFFSET when absent) */
    uint32_t w_arena;      /* int8 [cout][kh][kw][n_train] (dw: [n_train][kh][kw]) */
    uint32_t wres_arena;   /* int8, same shape: fraction bits (TT_LF_RESIDUE) */
    uint32_t b_arena;      /* int32 [cout]; TT_LF_BIAS16: int16 [cout], change from b_off */
    float lr_scale;
    /* ADD: out = round((a - za) * mult_a + (b - zb) * mult_b, shift) + zy;
       AVGPOOL: out = requant(sum(x - zx), mult_a, shift) + zy;
       AVGPOOL2D: mult_off, shift_off hold [kh*kw], entry n-1 for a window of n inputs;
       LUT: shift = fraction bits of the derivative table */
    int32_t mult_a, mult_b;
    uint32_t shift;
    uint32_t wscale_off;   /* float [cout] weight scales s_w (for host tools), or TT_NO_OFFSET */
    uint32_t reserved1[2];
} tt_layer_rec;

typedef struct {
    uint8_t kind;
    uint8_t flags;
    uint16_t layer;
    uint16_t t[TT_OP_SLOTS]; /* tensor ids, slots named per kind above */
} tt_op_rec;

/* C99 has no static_assert: a negative array size fails the build. */
typedef char tt_header_rec_is_128[(sizeof(tt_header_rec) == 128) ? 1 : -1];
typedef char tt_tensor_rec_is_24[(sizeof(tt_tensor_rec) == 24) ? 1 : -1];
typedef char tt_layer_rec_is_96[(sizeof(tt_layer_rec) == 96) ? 1 : -1];
typedef char tt_op_rec_is_16[(sizeof(tt_op_rec) == 16) ? 1 : -1];

#endif
