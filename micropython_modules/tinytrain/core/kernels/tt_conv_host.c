/*
 * k x k conv kernel of the host simulator (TT_HOST_SIMD, AVX2; see
 * tt_host_simd.h): the forward pass of any conv that is not pointwise (the
 * stem, the FC head), as tt_conv_opt.c's. Same results bit for bit.
 */
#include "tt_host_simd.h"

#if TT_OPTIMIZED && TT_HOST_SIMD

/* As the pointwise forward (tt_pointwise_host.c) over a column of x - zx
   per pixel. */

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
        hs_blk_at(&B, c0, O->cout);
        hs_conv_pack(wp, &B, W, L, I->cin);
        for (uint32_t p = 0; p < npix; p += 2u) {
            const uint32_t pb = p + 1u < npix ? p + 1u : p;
            hs_col(xr[0], I, oh0 + p / OW, p % OW);
            hs_col(xr[1], I, oh0 + pb / OW, pb % OW);
            hs_out_pair(wp, xr[0], xr[1], kp, &B, O, p, pb);
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

#else
typedef int tt_conv_host_unused; /* ISO C: a translation unit is not empty */
#endif
