/*
 * Depthwise kernels of the host simulator (TT_HOST_SIMD, AVX2; see
 * tt_host_simd.h): the forward pass and the input gradient, as
 * tt_depthwise_opt.c's and tt_depthwise_grad_opt.c's. Same results bit for bit.
 */
#include "tt_host_simd.h"

#if TT_OPTIMIZED && TT_HOST_SIMD

/*  - forward: channels across the lanes, the window rows widened to int16
 *    (x - zx, padding 0) in a ring, a pair of taps one VPMADDWD.
 *  - input gradient: as the forward over the output gradient spread to the
 *    stride, kernel flipped. */

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
        hs_blk_at(&B, c0, C);
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

#else
typedef int tt_depthwise_host_unused; /* ISO C: a translation unit is not empty */
#endif
