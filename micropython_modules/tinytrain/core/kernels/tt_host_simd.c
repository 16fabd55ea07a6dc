/*
 * Host-only kernels: built when TT_HOST_SIMD is 1, which only the host
 * simulator's library defines (setup.py). Every other build of the core
 * (Cortex-M, RV32, the .mpy of any architecture, the sanitizer runner unless
 * it asks for them) compiles this file to nothing.
 *
 * On an x86-64 host with AVX2 (checked once at run time) the conv kernels
 * run as int16 matrix products with channels across the lanes of a vector:
 * per pair of summed values one broadcast word and one VPMADDWD per 8
 * outputs, no horizontal sums.
 *  - pointwise forward: output channels across the lanes, the weights of a
 *    block of 32 widened to (input channel 2k, 2k + 1) pairs on the stack
 *    once per call, two pixels a pass; the zero point folded into the bias
 *    as in tt_pointwise_opt.c.
 *  - k x k conv (the stem): the same over a column of x - zx per pixel.
 *  - depthwise forward: channels across the lanes, the window rows widened
 *    to int16 (x - zx, padding 0) in a ring, a pair of taps one VPMADDWD.
 *  - input gradients: pointwise with input channels across the lanes and
 *    output-channel pairs summed; depthwise as its forward over the output
 *    gradient spread to the stride, kernel flipped.
 *  - pointwise weight gradient: trained input channels across the lanes,
 *    pixel pairs summed; then the reference's float steps per weight.
 *  - clamp mask: 16 gradient values a step.
 * Same results bit for bit as the reference kernels: the integer sums are
 * only reordered (int32 where no sum can leave it: input-gradient sums of
 * at most 256 pairs, more folded into int64), the requantisation, the to16
 * stores and the float steps are the same operations, lane by lane. On other
 * hosts, or for layers beyond the stack blocks here, these return 0 and the
 * _opt kernels run.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED && TT_HOST_SIMD
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define HS_TARGET __attribute__((target("avx2")))
#define HS_LANES 32u      /* channels of a block: 4 vectors of 8 int32 */
#define HS_MAX_PAIRS 512u /* pairs of summed values a block's widened weights hold (64 KiB) */
#define HS_I32_PAIRS 256u /* input gradient: pairs that sum exactly in int32 */

static int hs_avx2(void) {
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
static TT_NOINLINE HS_TARGET void hs_dot2_1(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                            uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 1u, acc);
}
static TT_NOINLINE HS_TARGET void hs_dot2_2(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                            uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 2u, acc);
}
static TT_NOINLINE HS_TARGET void hs_dot2_3(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                            uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 3u, acc);
}
static TT_NOINLINE HS_TARGET void hs_dot2_4(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0,
                                            uint32_t k1, __m256i *acc) {
    hs_dot2(wp, a, b, k0, k1, 4u, acc);
}

static HS_TARGET void hs_dot2_any(const int16_t *wp, const int16_t *a, const int16_t *b, uint32_t k0, uint32_t k1,
                                  uint32_t nv, __m256i *acc) {
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

/* OR n (<= 32) bits into mask from bit idx on. */
static inline void hs_or_bits(uint8_t *mask, uint32_t idx, uint32_t bits, uint32_t n) {
    const uint64_t b = (uint64_t)(n < 32u ? bits & ((1u << n) - 1u) : bits) << (idx & 7u);
    uint8_t *m = mask + (idx >> 3);
    const uint32_t nb = ((idx & 7u) + n + 7u) >> 3;
    for (uint32_t i = 0; i < nb; i++) {
        m[i] |= (uint8_t)(b >> (8u * i));
    }
}

/* ---- pointwise forward ---- */

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

/* The weights of channels [c0, c0 + n) widened into wp as (input channel
   2k, 2k + 1) pairs, lane c - c0 of pair k: weight j (the trained copy's
   for j < n_train) goes to input channel perm[j]; zero elsewhere. The bias
   with the input zero point folded in and the requantisation, per lane. */
/* The 8 x 8 words of v transposed (v[i] word d to v[d] word i). */
TT_INLINE HS_TARGET void hs_transpose8(__m256i *v) {
    const __m256i t0 = _mm256_unpacklo_epi32(v[0], v[1]), t1 = _mm256_unpackhi_epi32(v[0], v[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(v[2], v[3]), t3 = _mm256_unpackhi_epi32(v[2], v[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(v[4], v[5]), t5 = _mm256_unpackhi_epi32(v[4], v[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(v[6], v[7]), t7 = _mm256_unpackhi_epi32(v[6], v[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    v[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    v[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    v[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    v[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    v[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    v[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    v[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    v[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* hs_pw_pack's fast part (frozen rows in channel order): lanes [0, n & ~7),
   input channels [0, cin & ~15), 8 rows x 16 channels a step (widen, then
   transpose the pairs); the row sums of that part into bias[l]. */
static HS_TARGET void hs_pw_pack8(int16_t *wp, int32_t *bias, const int8_t *w, uint32_t cin, uint32_t n) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (uint32_t l = 0; l + 8u <= n; l += 8u) {
        const int8_t *r = w + l * cin;
        __m256i sum = _mm256_setzero_si256();
        for (uint32_t j = 0; j + 16u <= cin; j += 16u) {
            __m256i v[8];
            for (uint32_t i = 0; i < 8u; i++) {
                v[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(r + i * cin + j)));
            }
            hs_transpose8(v);
            for (uint32_t d = 0; d < 8u; d++) {
                _mm256_storeu_si256((__m256i *)(void *)(wp + 2u * (HS_LANES * (j / 2u + d) + l)), v[d]);
                sum = _mm256_add_epi32(sum, _mm256_madd_epi16(v[d], ones));
            }
        }
        _mm256_storeu_si256((__m256i *)(void *)(bias + l), sum);
    }
}

static void hs_pw_pack(int16_t *wp, hs_blk *B, const tt_fwd_params *W, const tt_layer_rec *L, uint32_t cin,
                       int32_t zx) {
    const uint32_t nt = L->n_train, kp = (cin + 1u) / 2u;
    memset(wp, 0, 2u * HS_LANES * kp * sizeof(int16_t));
    memset(B->bias, 0, sizeof(B->bias));
    if (!W->perm && nt == 0u) {
        hs_pw_pack8(wp, B->bias, W->wf + B->c0 * cin, cin, B->n);
    }
    B->fast = 1;
    for (uint32_t l = 0; l < HS_LANES; l++) {
        const uint32_t c = B->c0 + l;
        int32_t s = 0;
        if (l >= B->n) {
            B->bias[l] = B->mult[l] = B->rnd[l] = 0;
            B->k[l] = 1;
            continue;
        }
        if (!W->perm && nt == 0u) {
            const int8_t *row = W->wf + c * cin;
            uint32_t j = l < (B->n & ~7u) ? cin & ~15u : 0u; /* hs_pw_pack8 did [0, j) */
            s = B->bias[l];
            for (; j < cin; j++) {
                wp[2u * (HS_LANES * (j >> 1) + l) + (j & 1u)] = row[j];
                s += row[j];
            }
        } else {
            for (uint32_t j = 0; j < cin; j++) {
                const int32_t w = j < nt ? W->wt[c * nt + j] : W->wf[c * cin + j];
                const uint32_t i = W->perm ? W->perm[j] : j;
                wp[2u * (HS_LANES * (i >> 1) + l) + (i & 1u)] = (int16_t)w;
                s += w;
            }
        }
        B->bias[l] = tt_bias_at(W, c) - zx * s;
        B->rq[l] = rq_make(W->mult[c], W->shift[c]);
        B->mult[l] = B->rq[l].mult;
        B->rnd[l] = B->rq[l].rnd;
        B->k[l] = (int32_t)B->rq[l].k;
        if (!B->rq[l].k) {
            B->fast = 0;
        }
    }
}

/* x's int8 row of cin values as int16, zero-padded to an even count. */
static HS_TARGET void hs_widen(int16_t *d, const int8_t *x, uint32_t cin) {
    uint32_t i = 0;
    for (; i + 16u <= cin; i += 16u) {
        const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(x + i));
        _mm256_storeu_si256((__m256i *)(void *)(d + i), _mm256_cvtepi8_epi16(v));
    }
    for (; i < cin; i++) {
        d[i] = x[i];
    }
    d[cin] = 0;
}

/* Output pixel p of the block from its sums acc[0..nv): rq_fast + zy, the
   clamp and the mask bits, 8 lanes a vector; else per lane as tt_store_out. */
static HS_TARGET void hs_pw_store(const hs_out *O, const hs_blk *B, uint32_t p, const __m256i *acc) {
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

static HS_TARGET void hs_pw_run(int16_t *wp, int16_t (*xr)[2u * HS_MAX_PAIRS], const tt_fwd_params *W,
                                const tt_layer_rec *L, const int8_t *x, uint32_t cin, uint32_t npix, int32_t zx,
                                const hs_out *O) {
    const uint32_t kp = (cin + 1u) / 2u;
    hs_blk B;
    for (uint32_t c0 = 0; c0 < O->cout; c0 += HS_LANES) {
        B.c0 = c0;
        B.n = O->cout - c0 < HS_LANES ? O->cout - c0 : HS_LANES;
        B.nv = (B.n + 7u) / 8u;
        hs_pw_pack(wp, &B, W, L, cin, zx);
        for (uint32_t p = 0; p < npix; p += 2u) {
            const uint32_t pb = p + 1u < npix ? p + 1u : p;
            __m256i acc[8];
            hs_widen(xr[0], x + p * cin, cin);
            hs_widen(xr[1], x + pb * cin, cin);
            for (uint32_t v = 0; v < 4u; v++) {
                acc[v] = acc[4u + v] = _mm256_loadu_si256((const __m256i *)(const void *)(B.bias + 8u * v));
            }
            hs_dot2_any(wp, xr[0], xr[1], 0u, kp, B.nv, acc);
            hs_pw_store(O, &B, p, acc);
            if (pb != p) {
                hs_pw_store(O, &B, pb, acc + 4);
            }
        }
    }
}

int tt_host_pointwise(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    int16_t wp[2u * HS_LANES * HS_MAX_PAIRS];
    int16_t xr[2][2u * HS_MAX_PAIRS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    hs_out O;
    if (!hs_avx2() || in->c > 2u * HS_MAX_PAIRS - 1u) {
        return 0;
    }
    O.y = R->y;
    O.mask = mask;
    O.cout = out->c;
    O.zy = out->zero;
    O.lo = L->act_min;
    O.hi = L->act_max;
    hs_pw_run(wp, xr, &W, L, R->x + (R->oh0 - R->row0) * (uint32_t)in->w * in->c, in->c,
              (R->oh1 - R->oh0) * out->w, in->zero, &O);
    return 1;
}

/* ---- k x k conv: a column of (x - zx) per output pixel (padding 0) ---- */

/* The weights of output channels [c0, c0 + n) as in hs_pw_pack, over the
   column (ky, kx, input channel): tap (ky, kx) of storage position j (the
   trained copy's for j < n_train) at input channel perm[j]. */
static void hs_conv_pack(int16_t *wp, hs_blk *B, const tt_fwd_params *W, const tt_layer_rec *L, uint32_t cin) {
    const uint32_t nt = L->n_train, kk = (uint32_t)L->kh * L->kw, K = kk * cin;
    memset(wp, 0, 2u * HS_LANES * ((K + 1u) / 2u) * sizeof(int16_t));
    B->fast = 1;
    for (uint32_t l = 0; l < HS_LANES; l++) {
        const uint32_t c = B->c0 + l;
        if (l >= B->n) {
            B->bias[l] = B->mult[l] = B->rnd[l] = 0;
            B->k[l] = 1;
            continue;
        }
        for (uint32_t r = 0; r < kk; r++) {
            const uint32_t row = c * kk + r;
            for (uint32_t j = 0; j < cin; j++) {
                const int32_t w = j < nt ? W->wt[row * nt + j] : W->wf[row * cin + j];
                const uint32_t i = r * cin + (W->perm ? W->perm[j] : j);
                wp[2u * (HS_LANES * (i >> 1) + l) + (i & 1u)] = (int16_t)w;
            }
        }
        B->bias[l] = tt_bias_at(W, c);
        B->rq[l] = rq_make(W->mult[c], W->shift[c]);
        B->mult[l] = B->rq[l].mult;
        B->rnd[l] = B->rq[l].rnd;
        B->k[l] = (int32_t)B->rq[l].k;
        if (!B->rq[l].k) {
            B->fast = 0;
        }
    }
}

typedef struct {
    const int8_t *x;
    uint32_t row0, H, W, cin, KH, KW, s, pt, pl;
    int32_t zx;
} hs_conv_in;

/* The column of output pixel (oh, ow): x - zx per (ky, kx, channel), 0 where
   the window leaves the input; zero-padded to an even length. */
static void hs_col(int16_t *d, const hs_conv_in *I, uint32_t oh, uint32_t ow) {
    const uint32_t cin = I->cin, K = I->KH * I->KW * cin;
    for (uint32_t ky = 0; ky < I->KH; ky++) {
        const int32_t ih = (int32_t)(oh * I->s + ky) - (int32_t)I->pt;
        int16_t *dr = d + ky * I->KW * cin;
        if (ih < 0 || ih >= (int32_t)I->H) {
            memset(dr, 0, 2u * I->KW * cin);
            continue;
        }
        const int8_t *xr = I->x + ((uint32_t)ih - I->row0) * I->W * cin;
        for (uint32_t kx = 0; kx < I->KW; kx++) {
            const int32_t iw = (int32_t)(ow * I->s + kx) - (int32_t)I->pl;
            int16_t *dp = dr + kx * cin;
            if (iw < 0 || iw >= (int32_t)I->W) {
                memset(dp, 0, 2u * cin);
                continue;
            }
            const int8_t *xp = xr + (uint32_t)iw * cin;
            for (uint32_t i = 0; i < cin; i++) {
                dp[i] = (int16_t)(xp[i] - I->zx);
            }
        }
    }
    d[K] = 0;
}

static HS_TARGET void hs_conv_run(int16_t *wp, int16_t (*xr)[2u * HS_MAX_PAIRS], const tt_fwd_params *W,
                                  const tt_layer_rec *L, const hs_conv_in *I, uint32_t oh0, uint32_t oh1,
                                  uint32_t OW, const hs_out *O) {
    const uint32_t kp = (I->KH * I->KW * I->cin + 1u) / 2u, npix = (oh1 - oh0) * OW;
    hs_blk B;
    for (uint32_t c0 = 0; c0 < O->cout; c0 += HS_LANES) {
        B.c0 = c0;
        B.n = O->cout - c0 < HS_LANES ? O->cout - c0 : HS_LANES;
        B.nv = (B.n + 7u) / 8u;
        hs_conv_pack(wp, &B, W, L, I->cin);
        for (uint32_t p = 0; p < npix; p += 2u) {
            const uint32_t pb = p + 1u < npix ? p + 1u : p;
            __m256i acc[8];
            hs_col(xr[0], I, oh0 + p / OW, p % OW);
            hs_col(xr[1], I, oh0 + pb / OW, pb % OW);
            for (uint32_t v = 0; v < 4u; v++) {
                acc[v] = acc[4u + v] = _mm256_loadu_si256((const __m256i *)(const void *)(B.bias + 8u * v));
            }
            hs_dot2_any(wp, xr[0], xr[1], 0u, kp, B.nv, acc);
            hs_pw_store(O, &B, p, acc);
            if (pb != p) {
                hs_pw_store(O, &B, pb, acc + 4);
            }
        }
    }
}

int tt_host_conv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    int16_t wp[2u * HS_LANES * HS_MAX_PAIRS];
    int16_t xr[2][2u * HS_MAX_PAIRS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    hs_conv_in I;
    hs_out O;
    if (!hs_avx2() || (uint32_t)L->kh * L->kw * in->c > 2u * HS_MAX_PAIRS - 1u) {
        return 0;
    }
    I.x = R->x;
    I.row0 = R->row0;
    I.H = in->h;
    I.W = in->w;
    I.cin = in->c;
    I.KH = L->kh;
    I.KW = L->kw;
    I.s = L->stride;
    I.pt = L->pad_top;
    I.pl = L->pad_left;
    I.zx = in->zero;
    O.y = R->y;
    O.mask = mask;
    O.cout = out->c;
    O.zy = out->zero;
    O.lo = L->act_min;
    O.hi = L->act_max;
    hs_conv_run(wp, xr, &W, L, &I, R->oh0, R->oh1, out->w, &O);
    return 1;
}

/* ---- depthwise: channels across the lanes, the window rows widened ---- */

/* Per block of 32 channels, the kh input rows of the output row in a ring
   of int16 (x - zx, padding 0), [column][32 channels]; a pair of taps
   (kx, kx + 1) of one kernel row is an unpack of the two columns' vectors
   and one VPMADDWD against the taps' weights in the same lane order. */
#define HS_DW_RING 16384u /* int16 values of the ring: kh * padded width * 32 */
#define HS_DW_MAX_K 11u

typedef struct {
    const int8_t *x;
    uint32_t row0, C, H, W, OW, KH, KW, KWP, s, pt, pl, WP;
    int32_t zx;
} hs_dw_t;

/* Lane order of the weights: channel cl of a block is in vector 2 (cl / 16)
   + (cl / 4) % 2, at int16 (cl % 16 / 8) * 8 + (cl % 4) * 2 + (kx % 2). */
static inline uint32_t hs_dw_slot(uint32_t cl, uint32_t kx) {
    const uint32_t cu = cl & 15u;
    return (2u * (cl >> 4) + ((cu >> 2) & 1u)) * 16u + (cu >> 3) * 8u + (cu & 3u) * 2u + (kx & 1u);
}

/* acc[0..2 nu) = the window sums of the output pixel whose window starts at
   column col of the ring rows rp, channels in order. */
TT_INLINE HS_TARGET void hs_dw_pixel(const int16_t *const *rp, const __m256i *wt, uint32_t col, uint32_t KH,
                                     uint32_t KW, uint32_t nu, __m256i *acc) {
    const uint32_t KWP = (KW + 1u) / 2u;
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (uint32_t ky = 0; ky < KH; ky++) {
        const int16_t *r = rp[ky] + col * HS_LANES;
        for (uint32_t q = 0; q < KWP; q++) {
            const int16_t *p0 = r + 2u * q * HS_LANES, *p1 = 2u * q + 1u < KW ? p0 + HS_LANES : p0;
            const __m256i *w = wt + 4u * (ky * KWP + q);
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(const void *)p0);
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(const void *)p1);
            a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w[0]));
            a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w[1]));
            if (nu > 1u) {
                x0 = _mm256_loadu_si256((const __m256i *)(const void *)(p0 + 16));
                x1 = _mm256_loadu_si256((const __m256i *)(const void *)(p1 + 16));
                a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w[2]));
                a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w[3]));
            }
        }
    }
    acc[0] = _mm256_permute2x128_si256(a0, a1, 0x20);
    acc[1] = _mm256_permute2x128_si256(a0, a1, 0x31);
    acc[2] = _mm256_permute2x128_si256(a2, a3, 0x20);
    acc[3] = _mm256_permute2x128_si256(a2, a3, 0x31);
}

/* Input row ih's channels [c0, c0 + n) into ring row d (zero when ih is padding). */
static HS_TARGET void hs_dw_fill(int16_t *d, const hs_dw_t *D, int32_t ih, uint32_t c0, uint32_t n) {
    memset(d, 0, 2u * HS_LANES * D->WP);
    if (ih < 0 || ih >= (int32_t)D->H) {
        return;
    }
    const __m256i zx = _mm256_set1_epi16((int16_t)D->zx);
    const int8_t *xr = D->x + ((uint32_t)ih - D->row0) * D->W * D->C + c0;
    for (uint32_t iw = 0; iw < D->W && iw + D->pl < D->WP; iw++) {
        const int8_t *xp = xr + iw * D->C;
        int16_t *dp = d + (iw + D->pl) * HS_LANES;
        uint32_t i = 0;
        for (; i + 16u <= n; i += 16u) {
            const __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)(xp + i)));
            _mm256_storeu_si256((__m256i *)(void *)(dp + i), _mm256_sub_epi16(v, zx));
        }
        for (; i < n; i++) {
            dp[i] = (int16_t)(xp[i] - D->zx);
        }
    }
}

/* The output rows of one block; KH, KW, nu constants where it counts. */
TT_INLINE HS_TARGET void hs_dw_rows(int16_t *ring, const __m256i *wt, const hs_dw_t *D, const hs_blk *B,
                                    const hs_out *O, uint32_t oh0, uint32_t oh1, uint32_t KH, uint32_t KW,
                                    uint32_t nu) {
    int32_t tag[HS_DW_MAX_K];
    const int16_t *rp[HS_DW_MAX_K];
    for (uint32_t i = 0; i < KH; i++) {
        tag[i] = INT32_MIN;
    }
    for (uint32_t oh = oh0; oh < oh1; oh++) {
        for (uint32_t ky = 0; ky < KH; ky++) {
            const int32_t ih = (int32_t)(oh * D->s + ky) - (int32_t)D->pt;
            const uint32_t slot = (uint32_t)(((ih % (int32_t)KH) + (int32_t)KH) % (int32_t)KH);
            int16_t *d = ring + slot * D->WP * HS_LANES;
            if (tag[slot] != ih) {
                hs_dw_fill(d, D, ih, B->c0, B->n);
                tag[slot] = ih;
            }
            rp[ky] = d;
        }
        for (uint32_t ow = 0; ow < D->OW; ow++) {
            __m256i acc[4];
            hs_dw_pixel(rp, wt, ow * D->s, KH, KW, nu, acc);
            for (uint32_t v = 0; v < 4u; v++) {
                acc[v] = _mm256_add_epi32(acc[v], _mm256_loadu_si256((const __m256i *)(const void *)(B->bias + 8u * v)));
            }
            hs_pw_store(O, B, (oh - oh0) * D->OW + ow, acc);
        }
    }
}

#define HS_DW_ROWS(name, kh, kw, nu)                                                                                 \
    static TT_NOINLINE HS_TARGET void name(int16_t *ring, const __m256i *wt, const hs_dw_t *D, const hs_blk *B,    \
                                           const hs_out *O, uint32_t oh0, uint32_t oh1) {                            \
        hs_dw_rows(ring, wt, D, B, O, oh0, oh1, kh, kw, nu);                                                         \
    }
HS_DW_ROWS(hs_dw_k3_1, 3u, 3u, 1u)
HS_DW_ROWS(hs_dw_k3_2, 3u, 3u, 2u)
HS_DW_ROWS(hs_dw_k5_1, 5u, 5u, 1u)
HS_DW_ROWS(hs_dw_k5_2, 5u, 5u, 2u)
HS_DW_ROWS(hs_dw_k7_1, 7u, 7u, 1u)
HS_DW_ROWS(hs_dw_k7_2, 7u, 7u, 2u)
HS_DW_ROWS(hs_dw_any_1, D->KH, D->KW, 1u)
HS_DW_ROWS(hs_dw_any_2, D->KH, D->KW, 2u)

static HS_TARGET void hs_dw_run(int16_t *ring, __m256i *wt, const tt_fwd_params *W, const tt_layer_rec *L,
                                const hs_dw_t *D, uint32_t oh0, uint32_t oh1, const hs_out *O) {
    const uint32_t kk = D->KH * D->KW, C = D->C;
    hs_blk B;
    for (uint32_t c0 = 0; c0 < C; c0 += HS_LANES) {
        int16_t *w16 = (int16_t *)(void *)wt;
        B.c0 = c0;
        B.n = C - c0 < HS_LANES ? C - c0 : HS_LANES;
        B.nv = (B.n + 7u) / 8u;
        B.fast = 1;
        memset(wt, 0, 4u * D->KH * D->KWP * sizeof(__m256i));
        for (uint32_t l = 0; l < HS_LANES; l++) {
            B.bias[l] = B.mult[l] = B.rnd[l] = 0;
            B.k[l] = 1;
        }
        /* storage position j holds channel perm[j] */
        for (uint32_t j = W->perm ? 0u : c0; j < (W->perm ? C : c0 + B.n); j++) {
            const uint32_t c = W->perm ? W->perm[j] : j;
            if (c < c0 || c >= c0 + B.n) {
                continue;
            }
            const uint32_t l = c - c0;
            const int8_t *taps = tt_dw_taps(W, L, j, kk);
            for (uint32_t ky = 0; ky < D->KH; ky++) {
                for (uint32_t kx = 0; kx < D->KW; kx++) {
                    w16[16u * 4u * (ky * D->KWP + kx / 2u) + hs_dw_slot(l, kx)] = taps[ky * D->KW + kx];
                }
            }
            B.bias[l] = tt_bias_at(W, c);
            B.rq[l] = rq_make(W->mult[c], W->shift[c]);
            B.mult[l] = B.rq[l].mult;
            B.rnd[l] = B.rq[l].rnd;
            B.k[l] = (int32_t)B.rq[l].k;
            if (!B.rq[l].k) {
                B.fast = 0;
            }
        }
        const int two = B.n > 16u;
        if (D->KH == 3u && D->KW == 3u) {
            (two ? hs_dw_k3_2 : hs_dw_k3_1)(ring, wt, D, &B, O, oh0, oh1);
        } else if (D->KH == 5u && D->KW == 5u) {
            (two ? hs_dw_k5_2 : hs_dw_k5_1)(ring, wt, D, &B, O, oh0, oh1);
        } else if (D->KH == 7u && D->KW == 7u) {
            (two ? hs_dw_k7_2 : hs_dw_k7_1)(ring, wt, D, &B, O, oh0, oh1);
        } else {
            (two ? hs_dw_any_2 : hs_dw_any_1)(ring, wt, D, &B, O, oh0, oh1);
        }
    }
}

int tt_host_dwconv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    int16_t ring[HS_DW_RING];
    __m256i wt[4u * HS_DW_MAX_K * ((HS_DW_MAX_K + 1u) / 2u)];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    hs_dw_t D;
    hs_out O;
    D.KH = L->kh;
    D.KW = L->kw;
    D.KWP = (D.KW + 1u) / 2u;
    D.WP = (out->w - 1u) * L->stride + D.KW;
    if (!hs_avx2() || D.KH > HS_DW_MAX_K || D.KW > HS_DW_MAX_K || D.KH * D.WP * HS_LANES > HS_DW_RING) {
        return 0;
    }
    D.x = R->x;
    D.row0 = R->row0;
    D.C = out->c;
    D.H = in->h;
    D.W = in->w;
    D.OW = out->w;
    D.s = L->stride;
    D.pt = L->pad_top;
    D.pl = L->pad_left;
    D.zx = in->zero;
    O.y = R->y;
    O.mask = mask;
    O.cout = out->c;
    O.zy = out->zero;
    O.lo = L->act_min;
    O.hi = L->act_max;
    hs_dw_run(ring, wt, &W, L, &D, R->oh0, R->oh1, &O);
    return 1;
}

/* ---- pointwise input gradient (one pass, tt_g16_run) ---- */

/* OR of |v| over the first nv vectors of acc and of acc + 4. */
static HS_TARGET uint32_t hs_abs_or(const __m256i *acc, uint32_t nv) {
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
static HS_TARGET void hs_ig_store32(int16_t *d, const uint16_t *perm, uint32_t j0, uint32_t n, const __m256i *acc,
                                    uint32_t nv, uint32_t e) {
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

typedef struct {
    const int8_t *wt, *wf;
    const uint16_t *perm;
    uint32_t cin, cout, nt, npix;
} hs_ig_t;

/* Weight (c, j) as the reference reads it: the trained copy for j < n_train. */
static inline int16_t hs_w(const hs_ig_t *I, uint32_t c, uint32_t j) {
    return (int16_t)(j < I->nt ? I->wt[c * I->nt + j] : I->wf[c * I->cin + j]);
}

/* 32 lanes of int16 pairs (a[l], b[l]). */
static inline HS_TARGET void hs_ig_pack32(int16_t *d, const int8_t *a, const int8_t *b) {
    const __m256i va = _mm256_loadu_si256((const __m256i *)(const void *)a);
    const __m256i vb = _mm256_loadu_si256((const __m256i *)(const void *)b);
    const __m256i lo = _mm256_unpacklo_epi8(va, vb), hi = _mm256_unpackhi_epi8(va, vb);
    _mm256_storeu_si256((__m256i *)(void *)d, _mm256_cvtepi8_epi16(_mm256_castsi256_si128(lo)));
    _mm256_storeu_si256((__m256i *)(void *)(d + 16), _mm256_cvtepi8_epi16(_mm256_castsi256_si128(hi)));
    _mm256_storeu_si256((__m256i *)(void *)(d + 32), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(lo, 1)));
    _mm256_storeu_si256((__m256i *)(void *)(d + 48), _mm256_cvtepi8_epi16(_mm256_extracti128_si256(hi, 1)));
}

static HS_TARGET void hs_ig_run(int16_t *wp, const hs_ig_t *I, const int16_t *g, tt_g16_run *r) {
    const uint32_t cin = I->cin, cout = I->cout, full = cout / 2u, cp = (cout + 1u) / 2u;
    for (uint32_t j0 = 0; j0 < cin && r->tile < r->stop; j0 += HS_LANES) {
        const uint32_t n = cin - j0 < HS_LANES ? cin - j0 : HS_LANES, nv = (n + 7u) / 8u;
        /* lane l of pair q: (w[2q][j0 + l], w[2q + 1][j0 + l]) */
        const int part = j0 + n <= I->nt ? 1 : (j0 >= I->nt ? 2 : 0); /* all trained, all frozen, both */
        memset(wp, 0, 2u * HS_LANES * cp * sizeof(int16_t));
        for (uint32_t q = 0; q < cp; q++) {
            int16_t *d = wp + 2u * HS_LANES * q;
            if (part && n == HS_LANES && 2u * q + 1u < cout) {
                const int8_t *ra = part == 1 ? I->wt + 2u * q * I->nt : I->wf + 2u * q * cin;
                const uint32_t st = part == 1 ? I->nt : cin;
                hs_ig_pack32(d, ra + j0, ra + st + j0);
                continue;
            }
            for (uint32_t l = 0; l < n; l++) {
                d[2u * l] = hs_w(I, 2u * q, j0 + l);
            }
            if (2u * q + 1u < cout) {
                for (uint32_t l = 0; l < n; l++) {
                    d[2u * l + 1u] = hs_w(I, 2u * q + 1u, j0 + l);
                }
            }
        }
        for (uint32_t p = 0; p < I->npix && r->tile < r->stop; p += 2u, r->tile++) {
            const uint32_t pb = p + 1u < I->npix ? p + 1u : p;
            const int16_t *ga = g + p * cout, *gb = g + pb * cout;
            /* the last of an odd number of output channels: a pair with 0 */
            const int16_t ta[2] = {cout & 1u ? ga[cout - 1u] : (int16_t)0, 0};
            const int16_t tb[2] = {cout & 1u ? gb[cout - 1u] : (int16_t)0, 0};
            __m256i acc[8];
            if (cp <= HS_I32_PAIRS) {
                for (uint32_t v = 0; v < 8u; v++) {
                    acc[v] = _mm256_setzero_si256();
                }
                hs_dot2_any(wp, ga, gb, 0u, full, nv, acc);
                if (cout & 1u) {
                    hs_dot2_any(wp + 2u * HS_LANES * full, ta, tb, 0u, 1u, nv, acc);
                }
                tt_g16_run_check(r, hs_abs_or(acc, nv));
                hs_ig_store32(r->dx + p * cin, I->perm, j0, n, acc, nv, r->e);
                if (pb != p) {
                    hs_ig_store32(r->dx + pb * cin, I->perm, j0, n, acc + 4, nv, r->e);
                }
            } else {
                int64_t s[2][HS_LANES];
                int32_t tmp[2][HS_LANES];
                uint64_t m = 0;
                memset(s, 0, sizeof(s));
                /* chunks of HS_I32_PAIRS pairs, then the odd channel as a chunk of its own */
                const uint32_t nch = (full + HS_I32_PAIRS - 1u) / HS_I32_PAIRS + (cout & 1u);
                for (uint32_t ch = 0; ch < nch; ch++) {
                    const uint32_t k0 = ch * HS_I32_PAIRS;
                    for (uint32_t v = 0; v < 8u; v++) {
                        acc[v] = _mm256_setzero_si256();
                    }
                    if (k0 < full) {
                        hs_dot2_any(wp, ga, gb, k0, k0 + HS_I32_PAIRS < full ? k0 + HS_I32_PAIRS : full, nv, acc);
                    } else {
                        hs_dot2_any(wp + 2u * HS_LANES * full, ta, tb, 0u, 1u, nv, acc);
                    }
                    for (uint32_t v = 0; v < 4u; v++) {
                        _mm256_storeu_si256((__m256i *)(void *)(tmp[0] + 8u * v), acc[v]);
                        _mm256_storeu_si256((__m256i *)(void *)(tmp[1] + 8u * v), acc[4u + v]);
                    }
                    for (uint32_t l = 0; l < n; l++) {
                        s[0][l] += tmp[0][l];
                        s[1][l] += tmp[1][l];
                    }
                }
                for (uint32_t l = 0; l < n; l++) {
                    m |= tt_abs64(s[0][l]) | tt_abs64(s[1][l]);
                }
                tt_g16_run_check(r, m);
                for (uint32_t l = 0; l < n; l++) {
                    const uint32_t dj = I->perm ? I->perm[j0 + l] : j0 + l;
                    r->dx[p * cin + dj] = tt_g16_run_val64(s[0][l], r->e);
                    r->dx[pb * cin + dj] = tt_g16_run_val64(s[1][l], r->e);
                }
            }
        }
    }
}

int tt_host_pointwise_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    int16_t wp[2u * HS_LANES * HS_MAX_PAIRS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    hs_ig_t I;
    I.cin = in->c;
    I.cout = out->c;
    I.nt = L->n_train;
    I.npix = (uint32_t)out->h * out->w;
    I.wf = tt_weights_frozen(m, L);
    I.wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    I.perm = tt_perm_of(m, L);
    if (!hs_avx2() || (I.cout + 1u) / 2u > HS_MAX_PAIRS) {
        return 0;
    }
    hs_ig_run(wp, &I, g, r);
    return 1;
}

/* ---- depthwise input gradient (one pass, tt_g16_run) ----
   dx[i][c] = sum over taps k of w[c][k] G[i + pad - k][c], G the output
   gradient at multiples of the stride, 0 elsewhere: with the kernel flipped,
   hs_dw_pixel's window over G (zero-padded, int16, a block of 32 channels);
   int32 sums (|sum| <= kk 128 32767 < 2^31). */
#define HS_DWG_BUF 16384u /* int16 values of G: rows x columns x 32 */

/* In one pass (r), or into a sink (sk: the OR of the magnitudes without
   sk->dx, else the stores). A block of channels copies its output gradient
   before it stores any input gradient: a gradient written over its output
   gradient (the sink only) keeps each channel's values until its block. */
static HS_TARGET void hs_dwg_run(int16_t *gb, __m256i *wt, const tt_fwd_params *W, const tt_layer_rec *L,
                                 const int16_t *g, const hs_dw_t *D, uint32_t OH, uint32_t GH, uint32_t GW,
                                 tt_g16_run *r, tt_g16_sink *sk) {
    const uint32_t kk = D->KH * D->KW, C = D->C;
    tt_g16_run one = {NULL, 0u, 0u, 0u, 0u, 0u, 0xFFFFFFFFu}; /* the sink's tiles: no limit */
    uint32_t seen = 0;
    if (!r) {
        r = &one;
    }
    for (uint32_t c0 = 0; c0 < C && r->tile < r->stop; c0 += HS_LANES) {
        int16_t *w16 = (int16_t *)(void *)wt;
        const uint32_t n = C - c0 < HS_LANES ? C - c0 : HS_LANES, nv = (n + 7u) / 8u, nu = n > 16u ? 2u : 1u;
        const int16_t *rp[HS_DW_MAX_K];
        memset(wt, 0, 4u * D->KH * D->KWP * sizeof(__m256i));
        for (uint32_t j = W->perm ? 0u : c0; j < (W->perm ? C : c0 + n); j++) {
            const uint32_t c = W->perm ? W->perm[j] : j;
            if (c < c0 || c >= c0 + n) {
                continue;
            }
            const int8_t *taps = tt_dw_taps(W, L, j, kk);
            for (uint32_t a = 0; a < D->KH; a++) {
                for (uint32_t b = 0; b < D->KW; b++) {
                    w16[16u * 4u * (a * D->KWP + b / 2u) + hs_dw_slot(c - c0, b)] =
                        taps[(D->KH - 1u - a) * D->KW + (D->KW - 1u - b)];
                }
            }
        }
        memset(gb, 0, 2u * HS_LANES * GH * GW);
        for (uint32_t oh = 0; oh < OH; oh++) {
            const uint32_t u = oh * D->s + D->KH - 1u;
            if (u >= GH) {
                break;
            }
            for (uint32_t ow = 0; ow < D->OW; ow++) {
                const uint32_t v = ow * D->s + D->KW - 1u;
                if (v < GW) {
                    memcpy(gb + (u * GW + v) * HS_LANES, g + (oh * D->OW + ow) * C + c0, 2u * n);
                }
            }
        }
        for (uint32_t ih = 0; ih < D->H && r->tile < r->stop; ih++) {
            for (uint32_t a = 0; a < D->KH; a++) {
                rp[a] = gb + (ih + D->pt + a) * GW * HS_LANES;
            }
            for (uint32_t iw = 0; iw < D->W && r->tile < r->stop; iw++, r->tile++) {
                __m256i acc[8];
                if (D->KH == 3u && D->KW == 3u) {
                    hs_dw_pixel(rp, wt, iw + D->pl, 3u, 3u, nu, acc);
                } else if (D->KH == 5u && D->KW == 5u) {
                    hs_dw_pixel(rp, wt, iw + D->pl, 5u, 5u, nu, acc);
                } else if (D->KH == 7u && D->KW == 7u) {
                    hs_dw_pixel(rp, wt, iw + D->pl, 7u, 7u, nu, acc);
                } else {
                    hs_dw_pixel(rp, wt, iw + D->pl, D->KH, D->KW, nu, acc);
                }
                acc[4] = acc[5] = acc[6] = acc[7] = _mm256_setzero_si256();
                if (r != &one) {
                    tt_g16_run_check(r, hs_abs_or(acc, nv));
                    hs_ig_store32(r->dx + (ih * D->W + iw) * C, NULL, c0, n, acc, nv, r->e);
                } else if (sk->dx) {
                    hs_ig_store32(sk->dx + (ih * D->W + iw) * C, NULL, c0, n, acc, nv, sk->e);
                } else {
                    seen |= hs_abs_or(acc, nv);
                }
            }
        }
    }
    if (sk && !sk->dx) {
        sk->vmax = seen > sk->vmax ? seen : sk->vmax;
    }
}

static int hs_dwg(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r, tt_g16_sink *sk) {
    int16_t gb[HS_DWG_BUF];
    __m256i wt[4u * HS_DW_MAX_K * ((HS_DW_MAX_K + 1u) / 2u)];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const tt_fwd_params W = tt_fwd_params_of(t, L);
    hs_dw_t D;
    uint32_t GH, GW;
    D.KH = L->kh;
    D.KW = L->kw;
    D.KWP = (D.KW + 1u) / 2u;
    D.C = out->c;
    D.H = in->h;
    D.W = in->w;
    D.OW = out->w;
    D.s = L->stride;
    D.pt = L->pad_top;
    D.pl = L->pad_left;
    GH = D.H + D.pt + D.KH - 1u;
    GW = D.W + D.pl + D.KW - 1u;
    if (!hs_avx2() || D.KH > HS_DW_MAX_K || D.KW > HS_DW_MAX_K || GH * GW * HS_LANES > HS_DWG_BUF) {
        return 0;
    }
    hs_dwg_run(gb, wt, &W, L, g, &D, out->h, GH, GW, r, sk);
    return 1;
}

int tt_host_dwconv_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    return hs_dwg(t, L, g, r, NULL);
}

int tt_host_dwconv_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
    return hs_dwg(t, L, g, NULL, dx);
}

/* ---- pointwise weight gradient: sum_p g[p][c] s[p][j] - z sum_p g[p][c] ----
   The saved input as (pixel 2q, 2q + 1) pairs across 32 trained channels,
   the gradient of a channel as pairs along the pixels: hs_dot2 with two
   channels as its rows. int32 sums (|sum| <= 256 32767 128 < 2^31), then
   the reference's float steps per weight (tt_update_opt.c's weight_step,
   without a grad hook). */
#define HS_WG_MAX_POS 256u

static HS_TARGET void hs_wg_run(int16_t *sp, const int8_t *s, const int16_t *g, int8_t *w, int8_t *res,
                                const float *qas, float k, int32_t zx, uint32_t nt, uint32_t C, uint32_t npos) {
    const uint32_t kp = (npos + 1u) / 2u;
    int16_t gt[2][HS_WG_MAX_POS + 2u]; /* channels c, c + 1 along the pixels (0 past npos) */
    for (uint32_t j0 = 0; j0 < nt; j0 += HS_LANES) {
        const uint32_t n = nt - j0 < HS_LANES ? nt - j0 : HS_LANES, nv = (n + 7u) / 8u;
        memset(sp, 0, 2u * HS_LANES * kp * sizeof(int16_t));
        for (uint32_t p = 0; p < npos; p++) {
            const int8_t *sr = s + p * nt + j0;
            int16_t *d = sp + 2u * HS_LANES * (p >> 1) + (p & 1u);
            for (uint32_t l = 0; l < n; l++) {
                d[2u * l] = sr[l];
            }
        }
        for (uint32_t c = 0; c < C; c += 2u) {
            const uint32_t cb = c + 1u < C ? c + 1u : c;
            int32_t a[2][HS_LANES], gs[2] = {0, 0};
            __m256i acc[8];
            for (uint32_t p = 0; p < npos; p++) {
                gt[0][p] = g[p * C + c];
                gt[1][p] = g[p * C + cb];
                gs[0] += gt[0][p];
                gs[1] += gt[1][p];
            }
            gt[0][npos] = gt[1][npos] = 0;
            for (uint32_t v = 0; v < 8u; v++) {
                acc[v] = _mm256_setzero_si256();
            }
            hs_dot2_any(sp, gt[0], gt[1], 0u, kp, nv, acc);
            for (uint32_t v = 0; v < 4u; v++) {
                _mm256_storeu_si256((__m256i *)(void *)(a[0] + 8u * v), acc[v]);
                _mm256_storeu_si256((__m256i *)(void *)(a[1] + 8u * v), acc[4u + v]);
            }
            for (uint32_t i = 0; i < (cb != c ? 2u : 1u); i++) {
                const int64_t z = (int64_t)zx * gs[i];
                const uint32_t base = (c + i) * nt + j0;
                for (uint32_t l = 0; l < n; l++) {
                    tt_weight_step(w + base + l, res ? res + base + l : NULL,
                                   (tt_f32_from_i64_fast(a[i][l] - z) * k) * qas[c + i]);
                }
            }
        }
    }
}

int tt_host_update_weights(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    int16_t sp[2u * HS_LANES * (HS_WG_MAX_POS / 2u)];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const uint32_t C = out->c, npos = (uint32_t)out->h * out->w;
    if (!hs_avx2() || t->grad_hook || !tt_is_pointwise(m, L) || npos > HS_WG_MAX_POS) {
        return 0;
    }
    hs_wg_run(sp, tt_act_data(t, P->saved_id), P->g, TT_ARENA(t, int8_t, L->w_arena),
              (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL,
              TT_BLOB(m, float, L->qas_w_off), P->k, in->zero, L->n_train, C, npos);
    return 1;
}

/* ---- clamp mask on an output gradient: 16 values a step ---- */

static HS_TARGET void hs_mask_run(int16_t *g, const uint8_t *mask, uint32_t n) {
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                          (int16_t)0x4000, (int16_t)0x8000);
    uint32_t i = 0;
    for (; i + 16u <= n; i += 16u) {
        uint16_t b;
        memcpy(&b, mask + (i >> 3), 2);
        if (b != 0xFFFFu) {
            const __m256i keep = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16((int16_t)b), bit), bit);
            __m256i *p = (__m256i *)(void *)(g + i);
            _mm256_storeu_si256(p, _mm256_and_si256(_mm256_loadu_si256(p), keep));
        }
    }
    for (; i < n; i++) {
        if (!((mask[i >> 3] >> (i & 7u)) & 1u)) {
            g[i] = 0;
        }
    }
}

int tt_host_apply_mask(int16_t *g, const uint8_t *mask, uint32_t n) {
    if (!hs_avx2()) {
        return 0;
    }
    hs_mask_run(g, mask, n);
    return 1;
}

#else /* another host: the _opt kernels run */
int tt_host_conv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    (void)t;
    (void)L;
    (void)R;
    (void)mask;
    return 0;
}
int tt_host_dwconv_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    (void)t;
    (void)L;
    (void)g;
    (void)r;
    return 0;
}
int tt_host_update_weights(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    (void)t;
    (void)L;
    (void)P;
    return 0;
}
int tt_host_apply_mask(int16_t *g, const uint8_t *mask, uint32_t n) {
    (void)g;
    (void)mask;
    (void)n;
    return 0;
}
int tt_host_dwconv_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
    (void)t;
    (void)L;
    (void)g;
    (void)dx;
    return 0;
}
int tt_host_dwconv(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    (void)t;
    (void)L;
    (void)R;
    (void)mask;
    return 0;
}
int tt_host_pointwise(tt_trainer *t, const tt_layer_rec *L, const tt_rows *R, uint8_t *mask) {
    (void)t;
    (void)L;
    (void)R;
    (void)mask;
    return 0;
}
int tt_host_pointwise_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    (void)t;
    (void)L;
    (void)g;
    (void)r;
    return 0;
}
#endif
#else
typedef int tt_host_simd_unused; /* ISO C: a translation unit is not empty */
#endif
