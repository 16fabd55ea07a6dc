/*
 * Pointwise (1x1) kernels of the host simulator (TT_HOST_SIMD, AVX2; see
 * tt_host_simd.h): the forward pass and the input gradient in one pass, as
 * tt_pointwise_opt.c's and tt_pointwise_grad_opt.c's. Same results bit for bit.
 */
#include "tt_host_simd.h"

#if TT_OPTIMIZED && TT_HOST_SIMD

/*  - forward: output channels across the lanes, the weights of a block of
 *    32 widened to (input channel 2k, 2k + 1) pairs on the stack once per
 *    call, two pixels a pass; the zero point folded into the bias as in
 *    tt_pointwise_opt.c.
 *  - input gradient: input channels across the lanes and output-channel
 *    pairs summed. */

/* ---- pointwise forward ---- */

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

/* The weights of channels [c0, c0 + n) widened into wp as (input channel
   2k, 2k + 1) pairs, lane c - c0 of pair k: weight j (the trained copy's
   for j < n_train) goes to input channel perm[j]; zero elsewhere. The bias
   with the input zero point folded in and the requantisation, per lane. */
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

static HS_TARGET void hs_pw_run(int16_t *wp, int16_t (*xr)[2u * HS_MAX_PAIRS], const tt_fwd_params *W,
                                const tt_layer_rec *L, const int8_t *x, uint32_t cin, uint32_t npix, int32_t zx,
                                const hs_out *O) {
    const uint32_t kp = (cin + 1u) / 2u;
    hs_blk B;
    for (uint32_t c0 = 0; c0 < O->cout; c0 += HS_LANES) {
        hs_blk_at(&B, c0, O->cout);
        hs_pw_pack(wp, &B, W, L, cin, zx);
        for (uint32_t p = 0; p < npix; p += 2u) {
            const uint32_t pb = p + 1u < npix ? p + 1u : p;
            hs_widen(xr[0], x + p * cin, cin);
            hs_widen(xr[1], x + pb * cin, cin);
            hs_out_pair(wp, xr[0], xr[1], kp, &B, O, p, pb);
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

/* ---- pointwise input gradient (one pass, tt_g16_run) ---- */

#define HS_I32_PAIRS 256u /* input gradient: pairs that sum exactly in int32 */

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

#else
typedef int tt_pointwise_host_unused; /* ISO C: a translation unit is not empty */
#endif
