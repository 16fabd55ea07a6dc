/*
 * Pointwise weight gradient and update of the host simulator (TT_HOST_SIMD,
 * AVX2; see tt_host_simd.h), as tt_update_opt.c's. Same results bit for
 * bit: the int32 sums reordered only, the reference's float steps per weight.
 */
#include "tt_host_simd.h"

#if TT_OPTIMIZED && TT_HOST_SIMD

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

#else
typedef int tt_update_host_unused; /* ISO C: a translation unit is not empty */
#endif
