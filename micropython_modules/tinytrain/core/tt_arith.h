/*
 * The one set of rounding rules of tinytrain (docs/arithmetic.md).
 *
 * Every kernel, the host simulator and the device use these, so results
 * agree bit for bit. Floats appear only in element-wise steps whose order is
 * fixed; sums are always integer. No libm: rounding is done with IEEE basic
 * operations, which are correctly rounded everywhere (with -ffp-contract=off).
 */
#ifndef TT_ARITH_H
#define TT_ARITH_H

#include <stdint.h>

/* floor(v / 2^s + 1/2) for s >= 1 (round half up). Relies on arithmetic
   right shift of negative values, which every supported compiler does. */
static inline int64_t tt_round_shift(int64_t v, uint32_t s) {
    return (v + ((int64_t)1 << (s - 1))) >> s;
}

/* Fixed-point requantisation: round(acc * mult / 2^shift). */
static inline int64_t tt_requant(int64_t acc, int32_t mult, uint32_t shift) {
    return tt_round_shift(acc * (int64_t)mult, shift);
}

static inline int32_t tt_clamp32(int64_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : (v > hi ? hi : (int32_t)v);
}

/* Number of significant bits of |v| (0 for 0). */
static inline uint32_t tt_bitlen64(uint64_t v) {
    uint32_t n = 0;
    while (v) {
        n++;
        v >>= 1;
    }
    return n;
}

static inline uint64_t tt_abs64(int64_t v) {
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

/* 2^e as a float, exact, for e in [-126, 127]. */
static inline float tt_pow2f(int32_t e) {
    union { uint32_t u; float f; } b;
    b.u = (uint32_t)(e + 127) << 23;
    return b.f;
}

/* int64 -> float: exact below 2^24, otherwise round half up to 24 bits and
   scale by a power of two (one rule on every target). */
static inline float tt_f32_from_i64(int64_t a) {
    uint32_t n = tt_bitlen64(tt_abs64(a));
    if (n <= 24) {
        return (float)(int32_t)a;
    }
    return (float)(int32_t)tt_round_shift(a, n - 24) * tt_pow2f((int32_t)(n - 24));
}

/* Gradients are int16 with a per-tensor scale: to16(V, s) stores int64 sums
   V as clamp(rs(V, e), -32767, 32767) with e = max(bitlen(max |V|) - 15, 0)
   and scale s * 2^e. tt_g16_shift gives e, tt_g16 one stored value. */
#define TT_G16_MAX 32767
static inline uint32_t tt_g16_shift(uint64_t vmax) {
    const uint32_t n = tt_bitlen64(vmax);
    return n > 15u ? n - 15u : 0u;
}
static inline int16_t tt_g16(int64_t v, uint32_t e) {
    return (int16_t)tt_clamp32(e ? tt_round_shift(v, e) : v, -TT_G16_MAX, TT_G16_MAX);
}

/* Round to nearest, ties to even, saturating to [-lim, lim]; NaN gives 0. */
static inline int32_t tt_rint_sat(float u, int32_t lim) {
    const float two23 = 8388608.0f;
    float a, r;
    if (!(u == u)) {
        return 0;
    }
    if (u >= (float)lim) {
        return lim;
    }
    if (u <= -(float)lim) {
        return -lim;
    }
    a = u < 0.0f ? -u : u;
    if (a < two23) {
        r = (a + two23) - two23; /* the FPU rounds to nearest even here */
    } else {
        r = a;
    }
    return u < 0.0f ? -(int32_t)r : (int32_t)r;
}

/* A positive float ratio as mult * 2^-shift with mult in [2^30, 2^31).
   Returns 0 (and mult 0) when the ratio is not positive and normal. */
static inline int tt_float_to_q31(float r, int32_t *mult, uint32_t *shift) {
    union { float f; uint32_t u; } b;
    int32_t e;
    b.f = r;
    e = (int32_t)((b.u >> 23) & 0xFF);
    if (!(r > 0.0f) || e == 0 || e == 0xFF) {
        *mult = 0;
        *shift = 1;
        return 0;
    }
    *mult = (int32_t)(((b.u & 0x7FFFFFu) | 0x800000u) << 7);
    /* r = mult * 2^(e - 127 - 30) */
    e = 157 - e;
    if (e < 1 || e > 62) {
        *mult = 0;
        *shift = 1;
        return 0;
    }
    *shift = (uint32_t)e;
    return 1;
}

#endif
