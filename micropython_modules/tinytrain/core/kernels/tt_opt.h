/*
 * Shared by the optimised kernels (the kernels/ files named _opt) and the dispatch.
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
#include "tt_kernels.h"

/* The optimised depthwise and stem kernels can each be left out
   (-DTT_OPT_DEPTHWISE=0, -DTT_OPT_STEM=0: the reference kernels run there):
   the lean .mpy for cores without the DSP extension, where they cost the
   most code for the least speed (`make natmod TT_OPTIMIZED=lean`,
   docs/micropython.md). Both 0 without TT_OPTIMIZED. */
#if !TT_OPTIMIZED
#undef TT_OPT_DEPTHWISE
#undef TT_OPT_STEM
#define TT_OPT_DEPTHWISE 0
#define TT_OPT_STEM 0
#endif
#ifndef TT_OPT_DEPTHWISE
#define TT_OPT_DEPTHWISE 1
#endif
#ifndef TT_OPT_STEM
#define TT_OPT_STEM 1
#endif

#if TT_OPTIMIZED

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define TT_DSP 1
#include <arm_acle.h>
#else
#define TT_DSP 0
#endif

/* Asm blocks that hold up to 14 registers at once: a position-independent
   build (the .mpy: -fpic reserves a register for the module's base) has too
   few for them, so it takes their C paths, with the same results. */
#if TT_DSP && !defined(__PIC__)
#define TT_DSP_ASM_WIDE 1
#else
#define TT_DSP_ASM_WIDE 0
#endif

/* Bytes of stack a kernel may use for an im2col column or the rows of a
   depthwise window; larger layers run the reference kernels. Other fixed
   stack tables: 2304 bytes of regrouped weights (pointwise input gradient)
   or of a channel pair's widened weights (pointwise forward),
   1 to 2 KB of per-row/column tap tables or a 1.6 KB zero-bordered
   gradient frame (depthwise input gradient),
   1 KB of border-window words and 512 bytes of regrouped weights
   (depthwise forward). The whole core then peaks at about 4 KB of stack
   (bench_m7.py prints it). */
#ifndef TT_OPT_STACK_BYTES
#define TT_OPT_STACK_BYTES 2304u
#endif

#if TT_DSP_ASM_WIDE
/* n bytes from src down to dst <= src (they may overlap: each 32-byte
   block is loaded before it is stored, lower blocks first), both
   word-aligned: LDM/STM of 8 registers a block, where memcpy takes about
   34 instructions per 64 bytes and pieces no longer than src - dst. */
static inline void tt_copy_down(int8_t *dst, const int8_t *src, uint32_t n) {
    uint32_t blocks = n / 32u;
    if (blocks) {
        __asm__ volatile("1:\n\t"
                         "ldmia %[s]!, {r4, r5, r6, r8, r10, r11, r12, lr}\n\t"
                         "stmia %[d]!, {r4, r5, r6, r8, r10, r11, r12, lr}\n\t"
                         "subs %[b], %[b], #1\n\t"
                         "bne 1b"
                         : [s] "+r"(src), [d] "+r"(dst), [b] "+r"(blocks)
                         :
                         : "r4", "r5", "r6", "r8", "r10", "r11", "r12", "lr", "cc", "memory");
    }
    for (n %= 32u; n; n--) {
        *dst++ = *src++;
    }
}
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
/* (lo of a, lo of b) and (hi of a, hi of b): PKHBT, PKHTB (GCC makes two
   instructions of each). */
static inline uint32_t tt_pkhbt(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline uint32_t tt_pkhtb(uint32_t a, uint32_t b) {
    uint32_t r;
    __asm__("pkhtb %0, %2, %1, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif

/* SXTB16 without and with ROR #8 and SMLAD, portable: (bytes 0, 2) and
   (bytes 1, 3) of x sign-extended into 16-bit lanes; acc + the two lane
   products, wrapping as the instruction does. */
static inline uint32_t tt_widen02(uint32_t x) {
#if TT_DSP
    return (uint32_t)__sxtb16(x);
#else
    return pack16((int8_t)(uint8_t)(x & 0xFFu), (int8_t)(uint8_t)((x >> 16) & 0xFFu));
#endif
}
static inline uint32_t tt_widen13(uint32_t x) {
#if TT_DSP
    return tt_sxtb16_hi(x);
#else
    return pack16((int8_t)(uint8_t)((x >> 8) & 0xFFu), (int8_t)(uint8_t)(x >> 24));
#endif
}
static inline int32_t tt_smlad(uint32_t a, uint32_t b, int32_t acc) {
#if TT_DSP
    return __smlad((int32_t)a, (int32_t)b, acc);
#else
    return (int32_t)((uint32_t)acc + (uint32_t)(lo16(a) * lo16(b)) + (uint32_t)(hi16(a) * hi16(b)));
#endif
}

/* tt_bitlen64 with a count-leading-zeros instruction where there is one. */
static inline uint32_t tt_bitlen64_fast(uint64_t v) {
#if defined(__GNUC__)
    return v ? 64u - (uint32_t)__builtin_clzll(v) : 0u;
#else
    return tt_bitlen64(v);
#endif
}

/* tt_rint_sat(u, lim), one VCVTR where the FPU has single precision:
   VCVTR rounds by the FPSCR's mode, to nearest even (the mode tt_rint_sat's
   (a + 2^23) - 2^23 relies on as well), saturates to int32 and gives 0 for
   a NaN; the clamp to [-lim, lim] then gives tt_rint_sat's limits. */
static inline int32_t tt_rint_sat_fast(float u, int32_t lim) {
#if defined(__ARM_FP) && (__ARM_FP & 4)
    float f;
    int32_t r;
    __asm__("vcvtr.s32.f32 %0, %1" : "=t"(f) : "t"(u));
    __asm__("vmov %0, %1" : "=r"(r) : "t"(f));
    return r < -lim ? -lim : (r > lim ? lim : r);
#else
    return tt_rint_sat(u, lim);
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

/* Unroll the next loop up to 16 times: a loop of constant count (a
   window's length) becomes straight-line code, which GCC does not do at -O2. */
#if defined(__clang__)
#define TT_UNROLL16 _Pragma("unroll 16")
#elif defined(__GNUC__)
#define TT_UNROLL16 _Pragma("GCC unroll 16")
#else
#define TT_UNROLL16
#endif

#if defined(__GNUC__)
#define TT_INLINE static inline __attribute__((always_inline))
#define TT_NOINLINE __attribute__((noinline))
#else
#define TT_INLINE static inline
#define TT_NOINLINE
#endif

/* Requantisation of one output channel, constants prepared once. */
typedef struct {
    int32_t mult, rnd;
    uint32_t shift, k; /* k = shift - 32, rnd = 2^(shift - 33) when shift >= 33 */
} rq_t;

static inline rq_t rq_make(int32_t mult, int8_t shift) {
    rq_t r;
    r.mult = mult;
    r.shift = (uint32_t)shift;
    r.k = r.shift >= 33u ? r.shift - 32u : 0u;
    r.rnd = r.shift >= 33u ? (int32_t)(1u << (r.shift - 33u)) : 0;
    return r;
}

/* tt_requant(acc, mult, shift) for shift >= 33: floor((P + 2^(s-1)) / 2^s)
   with P = acc * mult = hi * 2^32 + lo, 0 <= lo < 2^32, equals
   floor((hi + 2^(s-33)) / 2^(s-32)) as lo / 2^32 < 1; |hi| < 2^30. */
static inline int32_t rq_fast(int32_t acc, const rq_t *r) {
    return ((int32_t)(((int64_t)acc * r->mult) >> 32) + r->rnd) >> r->k;
}

/* tt_requant(acc, mult, shift), saturated to +-2^30 (see tt_store_out). */
static inline int32_t rq_apply(int32_t acc, const rq_t *r) {
    if (r->k) {
        return rq_fast(acc, r);
    }
    return tt_clamp32(tt_requant(acc, r->mult, r->shift), -(1 << 30), 1 << 30);
}

/* rq_fast(acc) + zero in one step: with rz = rnd + zero 2^k,
   (hi + rz) >> k = ((hi + rnd) >> k) + zero exactly (a multiple of 2^k
   added before the floor shift), and hi + rz stays in int32 for k <= 22
   (|hi| < 2^30, |zero 2^k| <= 2^29). On the Cortex-M7 hi + rz is one
   SMMLA: rz + the high word of acc * mult, floor (no rounding). */
typedef struct {
    int32_t mult, rz;
    uint32_t k;
} rqz_t;

/* rqz_make applies: shift in [33, 54]. */
static inline int rqz_ok(const rq_t *r) {
    return r->k >= 1u && r->k <= 22u;
}

static inline rqz_t rqz_make(const rq_t *r, int32_t zero) {
    rqz_t z;
    z.mult = r->mult;
    z.k = r->k;
    z.rz = (int32_t)((uint32_t)r->rnd + ((uint32_t)zero << r->k));
    return z;
}

/* rq_fast(acc, r) + zero, with rqz_make(r, zero). */
static inline int32_t rqz_apply(int32_t acc, int32_t mult, int32_t rz, uint32_t k) {
#if TT_DSP
    int32_t h;
    __asm__("smmla %0, %1, %2, %3" : "=r"(h) : "r"(acc), "r"(mult), "r"(rz));
    return h >> k;
#else
    return ((int32_t)(((int64_t)acc * mult) >> 32) + rz) >> k;
#endif
}

static inline int32_t clamp_act(int32_t q, int32_t lo, int32_t hi) {
#if TT_DSP
    if (lo == -128 && hi == 127) { /* constant where it counts: one SSAT */
        return __ssat(q, 8);
    }
#endif
    return q < lo ? lo : (q > hi ? hi : q);
}

/* Outputs idx and idx + 1 (two channels of one pixel), values before the
   output zero point: y, and the mask bits when inside the clamp range. */
static inline void out2(int8_t *y, uint8_t *mask, uint32_t idx, int32_t va, int32_t vb, int32_t zy, int32_t lo,
                        int32_t hi) {
    const int32_t qa = va + zy, qb = vb + zy;
    const int32_t ra = clamp_act(qa, lo, hi), rb = clamp_act(qb, lo, hi);
    y[idx] = (int8_t)ra;
    y[idx + 1u] = (int8_t)rb;
    if (mask) {
        const uint32_t bits = (uint32_t)(ra == qa) | ((uint32_t)(rb == qb) << 1), sh = idx & 7u;
        mask[idx >> 3] |= (uint8_t)(bits << sh);
        if (sh == 7u) {
            mask[(idx >> 3) + 1u] |= (uint8_t)(bits >> 1);
        }
    }
}

/* to16 in one pass (docs/kernels.md). A kernel sums its values a tile at a
   time and stores each tile with the shift e of the largest value so far;
   when a tile raises e, the tiles before it hold values of a smaller shift
   (rs(rs(v, a), b) is not rs(v, a + b)), so the kernel runs again over
   tiles [0, redo) with the final e. Each value ends as to16's. */
typedef struct {
    int16_t *dx;
    uint32_t e;
    uint64_t lim;   /* 2^(15 + e): a value this large raises e */
    uint64_t seen;  /* OR of every |value|: 0 when all are 0 */
    uint32_t tile;  /* tiles done in this run */
    uint32_t redo;  /* tiles [0, redo) hold values of a smaller e */
    uint32_t stop;  /* run tiles [0, stop) only */
} tt_g16_run;

/* Before a tile whose |values| OR to m (bitlen(m) = bitlen(max)) is stored. */
static inline void tt_g16_run_check(tt_g16_run *r, uint64_t m) {
    r->seen |= m;
    if (m >= r->lim) {
        const uint32_t n = tt_bitlen64_fast(m);
        r->e = n > 15u ? n - 15u : 0u;
        r->lim = (uint64_t)1 << (15u + r->e);
        r->redo = r->tile;
    }
}

/* to16's value clamp(rs(v, e), -32767, 32767): v of a sum that stays below
   2^31 - 2^15 in magnitude (e <= 16), and any int64 sum. */
static inline int16_t tt_g16_run_val32(int32_t v, uint32_t e) {
    const int32_t q = e ? (v + (1 << (e - 1u))) >> e : v;
    return (int16_t)(q < -TT_G16_MAX ? -TT_G16_MAX : (q > TT_G16_MAX ? TT_G16_MAX : q));
}
/* d[0], d[1] = tt_g16_run_val32(a, e), tt_g16_run_val32(b, e): with the DSP
   extension SSAT #16 of both, then their lanes raised to -32767 (SSUB16 +
   SEL), which is the clamp to +-32767 for any value; one word store. */
static inline void tt_g16_store2(int16_t *d, int32_t a, int32_t b, uint32_t e) {
#if TT_DSP
    const int32_t rnd = e ? 1 << (e - 1u) : 0;
    const uint32_t m = 0x80018001u; /* (-32767, -32767) */
    uint32_t v, t;
    __asm__("pkhbt %[v], %[a], %[b], lsl #16\n\t"
            "ssub16 %[t], %[v], %[m]\n\t"
            "sel %[v], %[v], %[m]"
            : [v] "=&r"(v), [t] "=&r"(t)
            : [a] "r"(__ssat((a + rnd) >> e, 16)), [b] "r"(__ssat((b + rnd) >> e, 16)), [m] "r"(m));
    memcpy(d, &v, 4);
#else
    d[0] = tt_g16_run_val32(a, e);
    d[1] = tt_g16_run_val32(b, e);
#endif
}

static inline int16_t tt_g16_run_val64(int64_t v, uint32_t e) {
    return tt_g16(v, e);
}

/* Every shift of the layer >= 33: rq_fast applies to every channel. */
static inline int tt_fast_layer(const tt_model *m, const tt_layer_rec *L, uint32_t cout) {
    const int8_t *shift = TT_BLOB(m, int8_t, L->shift_off);
    for (uint32_t c = 0; c < cout; c++) {
        if (shift[c] < 33) {
            return 0;
        }
    }
    return 1;
}

/* The clamp is the whole int8 range (one SSAT; a ReLU's clamp is not). */
static inline int tt_full_range(const tt_layer_rec *L) {
    return L->act_min == -128 && L->act_max == 127;
}

/* tt_fast_layer and tt_full_range. */
static inline int tt_fast_full_layer(const tt_model *m, const tt_layer_rec *L, uint32_t cout) {
    return tt_full_range(L) && tt_fast_layer(m, L, cout);
}

/* The output's mask from y[0] on: the optimised kernels write mask bits
   relative to y, so y[0] must start a mask byte (else NULL: the reference runs). */
static inline int tt_mask_at(const tt_rows *R, uint32_t row_elems, uint8_t **mask) {
    const uint32_t base = R->oh0 * row_elems;
    *mask = R->mask;
    if (R->mask && base % 8u) {
        return 0;
    }
    if (R->mask) {
        *mask += base / 8u;
    }
    return 1;
}

/* A 1x1 conv, stride 1, on equal grids. */
static inline int tt_is_pointwise(const tt_model *m, const tt_layer_rec *L) {
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    return L->kind == TT_L_CONV && L->kh == 1u && L->kw == 1u && L->stride == 1u && in->h == out->h &&
           in->w == out->w;
}

/* Each returns 0 when it does not handle the case (the reference runs). */
/* tt_conv_opt.c: pointwise (tt_pointwise_opt), a few-tap window (tt_stem_opt) or im2col; not for a fused
   op's ring (row0 > 0) unless pointwise, nor a mask not starting a byte. */
int tt_conv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);
/* tt_stem_opt.c: a conv of at most 32 window taps (kh kw cin), an even
   number of output channels up to 32, frozen, no perm; mask offset to y[0]. */
int tt_stem_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask);
/* tt_pointwise_opt.c: 1x1, stride 1, in.w == out.w; with a perm up to 576
   input channels (else 0); mask offset to y[0]. */
int tt_pointwise_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask);
/* tt_pointwise_opt.c: a layer's prepared constants (R->prep) of
   tt_prep_bytes, when tt_pointwise_opt takes them (else 0). */
int tt_pointwise_prep(tt_trainer *t, const tt_layer_rec *L, uint32_t *dst);
/* tt_pointwise_grad_opt.c: input gradient of a tt_is_pointwise layer, sgp > 0:
   in one pass (tt_g16_run; even cout), else the two-pass sink. */
int tt_pointwise_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r);
void tt_pointwise_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx);
/* tt_depthwise_opt.c */
int tt_dwconv_opt(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R);
/* as tt_pointwise_prep, for dwconv4 (0 without TT_OPT_DEPTHWISE) */
int tt_dwconv_prep(tt_trainer *t, const tt_layer_rec *L, uint32_t *dst);
/* tt_depthwise_grad_opt.c */
int tt_dwconv_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx);
/* one pass (tt_g16_run): no perm, C a multiple of 4; g must stay intact (not in place) */
int tt_dwconv_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r);
/* tt_add_opt.c */
int tt_add_opt(tt_trainer *t, const tt_layer_rec *L, uint8_t *mask);
/* tt_add_opt.c: tt_grad_add's sum, d[i] = clamp(rs(x[i], 1) + tt_requant(y[i], mult, s), +-32767) (d is x
   or y); 0 (not handled) for s < 32 */
int tt_grad_sum_opt(int16_t *d, const int16_t *x, const int16_t *y, uint32_t n, int32_t mult, uint32_t s);
/* tt_mask_opt.c */
int tt_apply_mask_opt(int16_t *g, const uint8_t *mask, uint32_t n);
/* tt_update_opt.c */
int tt_update_weights_opt(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P);
int tt_update_biases_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int16_t *g, uint32_t npos,
                         uint32_t C, float sg, float k);
int tt_prescale_opt(const tt_model *m, const tt_layer_rec *L, int16_t *g, uint32_t n, uint32_t C, float sg,
                    float *sgp);
/* tt_update_biases_opt and tt_prescale_opt in one pass over g where it can (else 0) */
int tt_bias_prescale_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, int16_t *g, uint32_t npos, uint32_t C,
                         float sg, float k, float *sgp);

/* tt_*_host.c (shared helpers in tt_host_simd.h): the host simulator's build
   only (setup.py defines TT_HOST_SIMD=1); 0 when it does not handle the case.
   They exist for x86-64 with GCC or Clang (their functions carry
   target("avx2") and check the CPU at run time); on another host the request
   is dropped here, once, and the _opt kernels run. */
#if !defined(TT_HOST_SIMD) || !(defined(__x86_64__) && defined(__GNUC__))
#undef TT_HOST_SIMD
#define TT_HOST_SIMD 0
#endif
#if TT_HOST_SIMD
/* a tt_is_pointwise layer's output rows (as tt_pointwise_opt) */
int tt_host_pointwise(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask);
/* any other conv's output rows; mask offset to y[0] */
int tt_host_conv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask);
/* a depthwise layer's output rows; mask offset to y[0] */
int tt_host_dwconv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask);
/* a tt_is_pointwise layer's input gradient in one pass (as tt_pointwise_input_grad_run) */
int tt_host_pointwise_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r);
/* a depthwise layer's input gradient in one pass (as tt_dwconv_input_grad_run) */
int tt_host_dwconv_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r);
/* the same into a sink (as tt_dwconv_input_grad_opt; the gradient may be written over g) */
int tt_host_dwconv_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx);
/* a tt_is_pointwise layer's weight gradient and update, without a grad hook (as tt_update_weights_opt) */
int tt_host_update_weights(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P);
/* the clamp mask on an output gradient (as tt_apply_mask_opt) */
int tt_host_apply_mask(int16_t *g, const uint8_t *mask, uint32_t n);
#endif

#endif /* TT_OPTIMIZED */
#endif
