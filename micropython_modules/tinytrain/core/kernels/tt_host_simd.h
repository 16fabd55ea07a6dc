/*
 * Shared by the host simulator's kernels (tt_*_host.c): the AVX2 build
 * switch and run-time check, the int16 pair products (hs_dot2) and the
 * stores of a block's outputs and input gradients.
 *
 * These kernels are built when TT_HOST_SIMD is 1, which only the host
 * simulator's library defines (setup.py). Every other build of the core
 * (Cortex-M, RV32, the .mpy of any architecture, the sanitizer runner unless
 * it asks for them) compiles them to nothing.
 *
 * On an x86-64 host with AVX2 (checked at run time, once a file) the conv
 * kernels run as int16 matrix products with channels across the lanes of a
 * vector: per pair of summed values one broadcast word and one VPMADDWD per
 * 8 outputs, no horizontal sums. Same results bit for bit as the reference
 * kernels: the integer sums are only reordered (int32 where no sum can
 * leave it: input-gradient sums of at most 256 pairs, more folded into
 * int64), the requantisation, the to16 stores and the float steps are the
 * same operations, lane by lane. On other hosts, or for layers beyond the
 * stack blocks here, the _opt kernels run (tt_opt.h drops TT_HOST_SIMD
 * where it cannot be built; an entry point returns 0 when the CPU lacks AVX2).
 *
 * The helpers here are static, a copy in each file that calls them: static
 * inline, except hs_dot2 per vector count, out of line (HS_OUT_OF_LINE).
 */
#ifndef TT_HOST_SIMD_H
#define TT_HOST_SIMD_H

#include "tt_opt.h"

#if TT_OPTIMIZED && TT_HOST_SIMD
#include <immintrin.h>

#define HS_TARGET __attribute__((target("avx2")))
/* a shared helper kept out of line (not every file calls it: no unused warning) */
#define HS_OUT_OF_LINE TT_NOINLINE __attribute__((unused))
#define HS_LANES 32u      /* channels of a block: 4 vectors of 8 int32 */
#define HS_MAX_PAIRS 512u /* pairs of summed values a block's widened weights hold (64 KiB) */

static inline int hs_avx2(void) {
    static int have = -1;
    if (have < 0) {
        __builtin_cpu_init();
        have = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return have;
}

static inline int32_t hs_ld32(const int16_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* acc[v] (row a), acc[4 + v] (row b) += the pairs [k0, k1) of a and b (int16
   pairs) times the widened weights wp (per pair HS_LANES lanes of int16
   pairs), for the first nv vectors of 8 lanes. */
TT_INLINE HS_TARGET void hs_dot2(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0, uint32_t k1,
                                 uint32_t nv, __m256i *acc) {
    __m256i a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    __m256i b0 = acc[4], b1 = acc[5], b2 = acc[6], b3 = acc[7];
    for (uint32_t k = k0; k < k1; k++) {
        const __m256i xa = _mm256_set1_epi32(hs_ld32(a + 2u * k)), xb = _mm256_set1_epi32(hs_ld32(b + 2u * k));
        const int16_t *w = wp + 2u * HS_LANES * k;
        __m256i wv = _mm256_loadu_si256((const __m256i *)(const void *)w);
        a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(xa, wv));
        b0 = _mm256_add_epi32(b0, _mm256_madd_epi16(xb, wv));
        if (nv > 1u) {
            wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 16));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(xa, wv));
            b1 = _mm256_add_epi32(b1, _mm256_madd_epi16(xb, wv));
        }
        if (nv > 2u) {
            wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 32));
            a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(xa, wv));
            b2 = _mm256_add_epi32(b2, _mm256_madd_epi16(xb, wv));
        }
        if (nv > 3u) {
            wv = _mm256_loadu_si256((const __m256i *)(const void *)(w + 48));
            a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(xa, wv));
            b3 = _mm256_add_epi32(b3, _mm256_madd_epi16(xb, wv));
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
    acc[4] = b0;
    acc[5] = b1;
    acc[6] = b2;
    acc[7] = b3;
}

/* hs_dot2 per vector count, out of line. */
static HS_OUT_OF_LINE HS_TARGET void hs_dot2_1(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                               uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 1u, acc);
}
static HS_OUT_OF_LINE HS_TARGET void hs_dot2_2(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                               uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 2u, acc);
}
static HS_OUT_OF_LINE HS_TARGET void hs_dot2_3(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                               uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 3u, acc);
}
static HS_OUT_OF_LINE HS_TARGET void hs_dot2_4(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                               uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 4u, acc);
}

static inline HS_TARGET void hs_dot2_any(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                         uint32_t k1, uint32_t nv, __m256i *acc) {
    if (nv == 1u) {
        hs_dot2_1(wp, a, b, k0, k1, acc);
    } else if (nv == 2u) {
        hs_dot2_2(wp, a, b, k0, k1, acc);
    } else if (nv == 3u) {
        hs_dot2_3(wp, a, b, k0, k1, acc);
    } else {
        hs_dot2_4(wp, a, b, k0, k1, acc);
    }
}

/* ---- a block of output channels: bias, requantisation, outputs (pointwise,
   k x k and depthwise forward) ---- */

typedef struct {
    int32_t bias[HS_LANES], mult[HS_LANES], rnd[HS_LANES], k[HS_LANES];
    rq_t rq[HS_LANES];
    uint32_t c0, n, nv;
    int fast; /* every channel's shift >= 33: rq_fast, vectorised */
} hs_blk;

typedef struct {
    int8_t *y;
    uint8_t *mask;
    uint32_t cout;
    int32_t zy, lo, hi;
} hs_out;

/* OR n (<= 32) bits into mask from bit idx on. */
static inline void hs_or_bits(uint8_t *mask, uint32_t idx, uint32_t bits, uint32_t n) {
    const uint64_t b = (uint64_t)(n < 32u ? bits & ((1u << n) - 1u) : bits) << (idx & 7u);
    uint8_t *m = mask + (idx >> 3);
    const uint32_t nb = ((idx & 7u) + n + 7u) >> 3;
    for (uint32_t i = 0; i < nb; i++) {
        m[i] |= (uint8_t)(b >> (8u * i));
    }
}

/* The first n (< 32) bytes of b to d. */
static inline HS_TARGET void hs_store_bytes(int8_t *d, __m256i b, uint32_t n) {
    __m128i v = _mm256_castsi256_si128(b);
    if (n >= 16u) {
        _mm_storeu_si128((__m128i *)(void *)d, v);
        v = _mm256_extracti128_si256(b, 1);
        d += 16;
        n -= 16u;
    }
    if (n >= 8u) {
        _mm_storel_epi64((__m128i *)(void *)d, v);
        v = _mm_srli_si128(v, 8);
        d += 8;
        n -= 8u;
    }
    if (n >= 4u) {
        const int32_t w = _mm_cvtsi128_si32(v);
        memcpy(d, &w, 4);
        v = _mm_srli_si128(v, 4);
        d += 4;
        n -= 4u;
    }
    for (uint32_t w = (uint32_t)_mm_cvtsi128_si32(v), i = 0; i < n; i++, w >>= 8) {
        d[i] = (int8_t)(uint8_t)w;
    }
}

/* Output pixel p of the block from its sums acc[0..nv): rq_fast + zy, the
   clamp and the mask bits, 8 lanes a vector; else per lane as tt_store_out. */
static inline HS_TARGET void hs_pw_store(const hs_out *O, const hs_blk *B, uint32_t p, const __m256i *acc) {
    const uint32_t idx = p * O->cout + B->c0;
    if (B->fast) {
        const __m256i zy = _mm256_set1_epi32(O->zy), lo = _mm256_set1_epi32(O->lo), hi = _mm256_set1_epi32(O->hi);
        __m256i r[4];
        uint32_t bits = 0;
        for (uint32_t v = 0; v < 4u; v++) {
            if (v < B->nv) {
                const __m256i a = acc[v];
                const __m256i m = _mm256_loadu_si256((const __m256i *)(const void *)(B->mult + 8u * v));
                const __m256i ev = _mm256_mul_epi32(a, m);
                const __m256i od = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(m, 32));
                const __m256i h = _mm256_blend_epi32(_mm256_srli_epi64(ev, 32), od, 0xAA);
                const __m256i rn = _mm256_loadu_si256((const __m256i *)(const void *)(B->rnd + 8u * v));
                const __m256i k = _mm256_loadu_si256((const __m256i *)(const void *)(B->k + 8u * v));
                const __m256i q = _mm256_add_epi32(_mm256_srav_epi32(_mm256_add_epi32(h, rn), k), zy);
                const __m256i c = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
                bits |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(c, q))) << (8u * v);
                r[v] = c;
            } else {
                r[v] = _mm256_setzero_si256();
            }
        }
        {
            const __m256i w = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
            const __m256i b = _mm256_permutevar8x32_epi32(w, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            if (B->n == HS_LANES) {
                _mm256_storeu_si256((__m256i *)(void *)(O->y + idx), b);
            } else {
                hs_store_bytes(O->y + idx, b, B->n);
            }
        }
        if (O->mask) {
            hs_or_bits(O->mask, idx, bits, B->n);
        }
    } else {
        int32_t tmp[HS_LANES];
        for (uint32_t v = 0; v < B->nv; v++) {
            _mm256_storeu_si256((__m256i *)(void *)(tmp + 8u * v), acc[v]);
        }
        for (uint32_t l = 0; l < B->n; l++) {
            tt_store_out(O->y, O->mask, idx + l, rq_apply(tmp[l], &B->rq[l]), O->zy, O->lo, O->hi);
        }
    }
}

/* The block of output channels from c0: up to HS_LANES of cout. */
static inline void hs_blk_at(hs_blk *B, uint32_t c0, uint32_t cout) {
    B->c0 = c0;
    B->n = cout - c0 < HS_LANES ? cout - c0 : HS_LANES;
    B->nv = (B->n + 7u) / 8u;
}

/* The block's outputs at pixels p and pb (pb == p: p alone), from their
   inputs x0, x1 widened to kp pairs: bias, sums, stores. */
static inline HS_TARGET void hs_out_pair(const int16_t *wp, const int16_t *x0, const int16_t *x1, uint32_t kp,
                                         const hs_blk *B, const hs_out *O, uint32_t p, uint32_t pb) {
    __m256i acc[8];
    for (uint32_t v = 0; v < 4u; v++) {
        acc[v] = acc[4u + v] = _mm256_loadu_si256((const __m256i *)(const void *)(B->bias + 8u * v));
    }
    hs_dot2_any(wp, x0, x1, 0u, kp, B->nv, acc);
    hs_pw_store(O, B, p, acc);
    if (pb != p) {
        hs_pw_store(O, B, pb, acc + 4);
    }
}

/* ---- input gradients (pointwise and depthwise) ---- */

/* OR of |v| over the first nv vectors of acc and of acc + 4. */
static inline HS_TARGET uint32_t hs_abs_or(const __m256i *acc, uint32_t nv) {
    __m256i o = _mm256_setzero_si256();
    for (uint32_t v = 0; v < nv; v++) {
        o = _mm256_or_si256(o, _mm256_or_si256(_mm256_abs_epi32(acc[v]), _mm256_abs_epi32(acc[4u + v])));
    }
    __m128i h = _mm_or_si128(_mm256_castsi256_si128(o), _mm256_extracti128_si256(o, 1));
    h = _mm_or_si128(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_or_si128(h, _mm_shuffle_epi32(h, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(h);
}

/* dx of pixel p, input positions [j0, j0 + n), from int32 sums: tt_g16_run_val32 per lane. */
static inline HS_TARGET void hs_ig_store32(int16_t *d, const uint16_t *perm, uint32_t j0, uint32_t n,
                                           const __m256i *acc, uint32_t nv, uint32_t e) {
    const __m256i rnd = _mm256_set1_epi32(e ? 1 << (e - 1u) : 0);
    const __m256i lo = _mm256_set1_epi32(-TT_G16_MAX), hi = _mm256_set1_epi32(TT_G16_MAX);
    const __m128i sh = _mm_cvtsi32_si128((int)e);
    __m256i q[4];
    int16_t tmp[HS_LANES];
    for (uint32_t v = 0; v < 4u; v++) {
        q[v] = v < nv ? _mm256_min_epi32(_mm256_max_epi32(_mm256_sra_epi32(_mm256_add_epi32(acc[v], rnd), sh), lo), hi)
                      : _mm256_setzero_si256();
    }
    {
        const __m256i w0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
        const __m256i w1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[2], q[3]), 0xD8);
        if (!perm && n == HS_LANES) {
            _mm256_storeu_si256((__m256i *)(void *)(d + j0), w0);
            _mm256_storeu_si256((__m256i *)(void *)(d + j0 + 16u), w1);
            return;
        }
        _mm256_storeu_si256((__m256i *)(void *)tmp, w0);
        _mm256_storeu_si256((__m256i *)(void *)(tmp + 16), w1);
    }
    if (!perm) {
        memcpy(d + j0, tmp, 2u * n);
    } else {
        for (uint32_t l = 0; l < n; l++) {
            d[perm[j0 + l]] = tmp[l];
        }
    }
}

#endif /* TT_OPTIMIZED && TT_HOST_SIMD */
#endif
