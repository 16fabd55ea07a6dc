/*
 * Shared by the optimised kernels (tt_forward_opt.c, tt_backward_opt.c).
 *
 * TT_OPTIMIZED (default 1) selects optimised kernels beside the reference
 * ones; -DTT_OPTIMIZED=0 builds the reference kernels only. An optimised
 * kernel returns 0 for a case it does not handle and the reference runs.
 * Every optimised kernel gives the reference's result bit for bit: integer
 * sums are only reordered, requantisation and float steps are the same.
 *
 * With the Cortex-M DSP extension (__ARM_FEATURE_DSP) the inner loops use
 * SXTB16/SMLAD; elsewhere (the host) a plain C path with the same data
 * layout and the same result.
 */
#ifndef TT_OPT_H
#define TT_OPT_H

#include <string.h>
#include "tt_internal.h"

#if TT_OPTIMIZED

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TT_DSP 1
#include <arm_acle.h>
#else
#define TT_DSP 0
#endif

/* Bytes of stack a kernel may use for an im2col column or the rows of a
   depthwise window; larger layers run the reference kernels. Other fixed
   stack tables: 2304 bytes of regrouped weights (pointwise input gradient),
   about 2 KB of per-row/column tap tables (depthwise input gradient). The
   whole core then peaks at about 4 KB of stack (bench_m7.py prints it). */
#ifndef TT_OPT_STACK_BYTES
#define TT_OPT_STACK_BYTES 2304u
#endif

/* Unaligned 32-bit load (one LDR on the Cortex-M7). */
static inline uint32_t tt_ld32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The 16-bit halves of a word as signed values, and two values packed. */
static inline int32_t lo16(uint32_t v) {
    return (int32_t)(int16_t)(uint16_t)(v & 0xFFFFu);
}
static inline int32_t hi16(uint32_t v) {
    return (int32_t)(int16_t)(uint16_t)(v >> 16);
}
static inline uint32_t pack16(int32_t lo, int32_t hi) {
    return (uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16);
}

#if TT_DSP
/* (sign-extended byte 1, byte 3): SXTB16 with ROR #8, which ACLE lacks. */
static inline uint32_t tt_sxtb16_hi(uint32_t x) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* (b + byte 1, t + byte 3) lane-wise, bytes sign-extended. */
static inline uint32_t tt_sxtab16_hi(uint32_t a, uint32_t x) {
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
#endif

/* tt_bitlen64 with a count-leading-zeros instruction where there is one. */
static inline uint32_t tt_bitlen64_fast(uint64_t v) {
#if defined(__GNUC__)
    return v ? 64u - (uint32_t)__builtin_clzll(v) : 0u;
#else
    return tt_bitlen64(v);
#endif
}

/* tt_f32_from_i64, the same rule, with the fast bit length. */
static inline float tt_f32_from_i64_fast(int64_t a) {
    uint32_t n = tt_bitlen64_fast(tt_abs64(a));
    if (n <= 24) {
        return (float)(int32_t)a;
    }
    return (float)(int32_t)tt_round_shift(a, n - 24) * tt_pow2f((int32_t)(n - 24));
}

/* y = clamp(v + zero), mask bit when v + zero was inside the clamp range.
   v is within +-2^30 here (the requantisation saturates there; the clamp
   range is int8 so saturating does not change y or the mask). */
static inline void tt_store_out(int8_t *y, uint8_t *mask, uint32_t idx, int32_t v, int32_t zero, int32_t lo,
                                int32_t hi) {
    int32_t q = v + zero;
    int32_t r = q < lo ? lo : (q > hi ? hi : q);
    if (mask && r == q) {
        mask[idx >> 3] |= (uint8_t)(1u << (idx & 7u));
    }
    y[idx] = (int8_t)r;
}

/* Each returns 0 when it does not handle the case (the reference runs). */
int tt_conv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);
int tt_dwconv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);
int tt_add_opt(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
int tt_update_weights_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g, uint32_t saved_id,
                          float sg, float k, const float *hook_div);
int tt_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, int32_t *g, float sgp, uint32_t dx_id);
int tt_apply_mask_opt(int32_t *g, const uint8_t *mask, uint32_t n);
int tt_update_biases_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g, uint32_t npos,
                         uint32_t C, float sg, float k);
int tt_prescale_opt(const tt_model *m, const tt_layer_rec *L, int32_t *g, uint32_t n, uint32_t C, float sg,
                    float *sgp);

#endif /* TT_OPTIMIZED */
#endif
