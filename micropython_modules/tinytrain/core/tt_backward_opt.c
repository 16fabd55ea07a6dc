/*
 * Backward kernels, optimised versions (selected by TT_OPTIMIZED, see
 * tt_opt.h). Same results as tt_backward.c bit for bit: the int64 sums are
 * reordered only; each weight and bias is updated by the same float
 * operations in the same order.
 *
 *  - weight gradient of a pointwise layer (and the FC head): per output
 *    channel 4 trained input channels at a time, the input zero point taken
 *    out of the sum: sum g (s - z) = sum g s - z sum g. Depthwise: per tap
 *    the rectangle of output positions that reach the input, no test inside.
 *  - clamp mask, bias gradient and the prescale of the output gradient:
 *    the reference's loops without per-element division or bit loops.
 *  - input gradient of a pointwise layer: SMLAD on the gradient split into
 *    16-bit halves (pw_input_grad_smlad); otherwise (odd or more than 576
 *    output channels) per pixel 4 input channels at a time with SMLAL.
 *  - input gradient of a depthwise layer: 4 channels at a time when there is
 *    no perm and C is a multiple of 4, else per channel; the taps that reach
 *    each input row and column worked out once per layer.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

/* As in tt_backward.c. */
#define BIAS_LIMIT (1 << 30)
#define GRAD_HOOK_BIAS 0x80000000u

/* The reference's update_weight (tt_backward.c), the same operations in the
   same order, and its grad hook; only the bit length is found faster. */
static void weight_step(tt_trainer *t, uint32_t li, int8_t *w, int8_t *res, uint32_t idx, int64_t a, float scale,
                        float scale_div, float k, float qas) {
    float u;
    if (t->grad_hook) {
        t->grad_hook(t->grad_hook_ctx, li, idx, a, scale / scale_div);
    }
    u = (tt_f32_from_i64_fast(a) * k) * qas;
    if (res) {
        int32_t total = (int32_t)w[idx] * 256 + res[idx] - tt_rint_sat(u * 256.0f, 65535);
        int32_t q;
        total = tt_clamp32(total, -127 * 256, 127 * 256);
        q = (total + 128) >> 8;
        w[idx] = (int8_t)q;
        res[idx] = (int8_t)(total - q * 256);
    } else {
        w[idx] = (int8_t)tt_clamp32((int32_t)w[idx] - tt_rint_sat(u, 255), -127, 127);
    }
}

int tt_apply_mask_opt(int32_t *g, const uint8_t *mask, uint32_t n) {
    uint32_t i = 0;
    for (; i + 8u <= n; i += 8u) {
        const uint32_t b = mask[i >> 3];
        if (b != 0xFFu) {
            for (uint32_t k = 0; k < 8u; k++) {
                if (!((b >> k) & 1u)) {
                    g[i + k] = 0;
                }
            }
        }
    }
    for (; i < n; i++) {
        if (!((mask[i >> 3] >> (i & 7u)) & 1u)) {
            g[i] = 0;
        }
    }
    return 1;
}

/* sum_p g[p][c], 4 channels per pass over the positions. */
int tt_update_biases_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g, uint32_t npos,
                         uint32_t C, float sg, float k) {
    int32_t *b = TT_ARENA(t, int32_t, L->b_arena);
    const float *qas = TT_BLOB(&t->model, float, L->qas_b_off);
    int64_t a[4];
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const uint32_t nc = C - c0 < 4u ? C - c0 : 4u;
        const int32_t *gp = g + c0;
        a[0] = a[1] = a[2] = a[3] = 0;
        if (nc == 4u) {
            int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (uint32_t p = 0; p < npos; p++, gp += C) {
                a0 += gp[0];
                a1 += gp[1];
                a2 += gp[2];
                a3 += gp[3];
            }
            a[0] = a0;
            a[1] = a1;
            a[2] = a2;
            a[3] = a3;
        } else {
            for (uint32_t p = 0; p < npos; p++, gp += C) {
                for (uint32_t i = 0; i < nc; i++) {
                    a[i] += gp[i];
                }
            }
        }
        for (uint32_t i = 0; i < nc; i++) {
            const uint32_t c = c0 + i;
            if (t->grad_hook) {
                t->grad_hook(t->grad_hook_ctx, li, GRAD_HOOK_BIAS | c, a[i], sg);
            }
            b[c] = tt_clamp32((int64_t)b[c] - tt_rint_sat((tt_f32_from_i64_fast(a[i]) * k) * qas[c], BIAS_LIMIT),
                              -BIAS_LIMIT, BIAS_LIMIT);
        }
    }
    return 1;
}

/* The reference's prescale without a division per element. */
int tt_prescale_opt(const tt_model *m, const tt_layer_rec *L, int32_t *g, uint32_t n, uint32_t C, float sg,
                    float *sgp) {
    const int32_t *pm = TT_BLOB(m, int32_t, L->gscale_off);
    uint32_t gmax = 0, sh;
    int32_t k;
    for (uint32_t i = 0; i < n; i++) {
        const uint32_t a = g[i] < 0 ? 0u - (uint32_t)g[i] : (uint32_t)g[i];
        gmax = a > gmax ? a : gmax;
    }
    if (gmax == 0 || !(sg > 0.0f)) {
        *sgp = 0.0f;
        return 1;
    }
    k = 24 - (int32_t)tt_bitlen64_fast(gmax);
    sh = (uint32_t)(31 - k);
    for (uint32_t i = 0; i < n; i += C) {
        int32_t *gp = g + i;
        for (uint32_t c = 0; c < C; c++) {
            gp[c] = (int32_t)tt_round_shift((int64_t)gp[c] * pm[c], sh);
        }
    }
    *sgp = (sg * tt_pow2f(-k)) * L->wscale_max;
    return 1;
}

static int is_pointwise(const tt_model *m, const tt_layer_rec *L) {
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    return L->kind == TT_L_CONV && L->kh == 1u && L->kw == 1u && L->stride == 1u && in->h == out->h &&
           in->w == out->w;
}

static int is_fc(const tt_model *m, const tt_layer_rec *L) {
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    return L->kind == TT_L_CONV && out->h == 1u && out->w == 1u && L->kh == in->h && L->kw == in->w &&
           L->pad_top == 0u && L->pad_left == 0u;
}

/* Output indices o in [0, on) whose input index o s + k - pad lies in [0, n). */
static void tap_range(uint32_t k, uint32_t pad, uint32_t s, uint32_t n, uint32_t on, uint32_t *lo, uint32_t *hi) {
    const int32_t first = (int32_t)pad - (int32_t)k; /* need o s >= first */
    const int32_t last = (int32_t)n - 1 + (int32_t)pad - (int32_t)k; /* and o s <= last */
    uint32_t a = first <= 0 ? 0u : ((uint32_t)first + s - 1u) / s;
    uint32_t b = last < 0 ? 0u : (uint32_t)last / s + 1u;
    b = b < on ? b : on;
    *lo = a;
    *hi = last < 0 || a > b ? a : b;
}

/* Depthwise weight gradient: per tap the rectangle of output positions whose
   input lies inside, walked with pointers (the reference tests every one). */
static void dw_update_weights(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g,
                              uint32_t saved_id, float sg, float k, const float *hook_div) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, saved_id);
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const uint16_t *perm = TT_BLOB(m, uint16_t, L->perm_off);
    const float scale = sg * in->scale; /* as the reference */
    const uint32_t nt = L->n_train, C = out->c, kk = (uint32_t)L->kh * L->kw, st = L->stride;
    const uint32_t W = in->w, OW = out->w;
    const int32_t zx = in->zero;
    for (uint32_t r = 0; r < kk; r++) { /* the reference's order: tap, then channel */
        const uint32_t kh = r / L->kw, kw = r % L->kw;
        uint32_t oh0, oh1, ow0, ow1;
        tap_range(kh, L->pad_top, st, in->h, out->h, &oh0, &oh1);
        tap_range(kw, L->pad_left, st, W, OW, &ow0, &ow1);
        for (uint32_t j = 0; j < nt; j++) {
            const uint32_t ch = perm[j];
            int64_t a = 0;
            for (uint32_t oh = oh0; oh < oh1; oh++) {
                const uint32_t ih = oh * st + kh - L->pad_top, iw0 = ow0 * st + kw - L->pad_left;
                const int32_t *gp = g + (oh * OW + ow0) * C + ch;
                const int8_t *sp = s + (ih * W + iw0) * nt + j;
                for (uint32_t ow = ow0; ow < ow1; ow++, gp += C, sp += st * nt) {
                    a += (int64_t)*gp * (*sp - zx);
                }
            }
            weight_step(t, li, w, res, j * kk + r, a, scale, hook_div ? hook_div[ch] : 1.0f, k, qas[ch]);
        }
    }
}

/* Weight gradient of a 1x1 conv on equal grids, or of a conv whose kernel
   covers the whole input (FC): both are sum_p g[p][c] (s[p][j] - z) with p
   running over the positions of one output pixel's window. */
int tt_update_weights_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int32_t *g, uint32_t saved_id,
                          float sg, float k, const float *hook_div) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, saved_id);
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const float scale = sg * in->scale; /* as the reference */
    const uint32_t nt = L->n_train, C = out->c;
    const int32_t zx = in->zero;
    uint32_t npos, gstride, sstride, kk;
    if (is_pointwise(m, L)) {
        /* A[c][j] = sum over pixels p of g[p][c] (s[p][j] - z) */
        npos = (uint32_t)out->h * out->w;
        gstride = C;
        kk = 1u;
    } else if (is_fc(m, L)) {
        /* A[c][r][j] = g[c] (s[r][j] - z): one term, r = kernel tap */
        npos = 1u;
        gstride = 0u;
        kk = (uint32_t)L->kh * L->kw;
    } else if (L->kind == TT_L_DWCONV) {
        dw_update_weights(t, li, L, g, saved_id, sg, k, hook_div);
        return 1;
    } else {
        return 0;
    }
    sstride = nt;
    for (uint32_t c = 0; c < C; c++) {
        const int32_t *gc = g + c;
        const float div = hook_div ? hook_div[c] : 1.0f;
        int64_t gsum = 0;
        for (uint32_t p = 0; p < npos; p++) {
            gsum += gc[p * gstride];
        }
        for (uint32_t r = 0; r < kk; r++) {
            const int8_t *sr = s + r * nt; /* FC: tap r's trained channels */
            const uint32_t base = (c * kk + r) * nt;
            uint32_t j = 0;
            for (; j + 4u <= nt; j += 4u) {
                int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                const int8_t *sp = sr + j;
                for (uint32_t p = 0; p < npos; p++, sp += sstride) {
                    const int64_t gv = gc[p * gstride];
                    const uint32_t v = tt_ld32(sp);
                    a0 += gv * (int8_t)(v & 0xFFu);
                    a1 += gv * (int8_t)((v >> 8) & 0xFFu);
                    a2 += gv * (int8_t)((v >> 16) & 0xFFu);
                    a3 += gv * (int8_t)(v >> 24);
                }
                weight_step(t, li, w, res, base + j, a0 - zx * gsum, scale, div, k, qas[c]);
                weight_step(t, li, w, res, base + j + 1u, a1 - zx * gsum, scale, div, k, qas[c]);
                weight_step(t, li, w, res, base + j + 2u, a2 - zx * gsum, scale, div, k, qas[c]);
                weight_step(t, li, w, res, base + j + 3u, a3 - zx * gsum, scale, div, k, qas[c]);
            }
            for (; j < nt; j++) {
                int64_t a = 0;
                const int8_t *sp = sr + j;
                for (uint32_t p = 0; p < npos; p++, sp += sstride) {
                    a += (int64_t)gc[p * gstride] * *sp;
                }
                weight_step(t, li, w, res, base + j, a - zx * gsum, scale, div, k, qas[c]);
            }
        }
    }
    return 1;
}

/* dx[p][perm[j]] for the 4 input channels j..j+3 of one part (trained or
   frozen weights): rows of w are wstride bytes apart, one per output channel. */
static void pw_input_grad4(const int32_t *gp, const int8_t *w, uint32_t wstride, uint32_t cout, int64_t *acc) {
    int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t c = 0;
    for (; c + 2u <= cout; c += 2u, w += 2u * wstride) {
        const int64_t g0 = gp[c], g1 = gp[c + 1u];
        const uint32_t v0 = tt_ld32(w), v1 = tt_ld32(w + wstride);
        a0 += g0 * (int8_t)(v0 & 0xFFu);
        a1 += g0 * (int8_t)((v0 >> 8) & 0xFFu);
        a2 += g0 * (int8_t)((v0 >> 16) & 0xFFu);
        a3 += g0 * (int8_t)(v0 >> 24);
        a0 += g1 * (int8_t)(v1 & 0xFFu);
        a1 += g1 * (int8_t)((v1 >> 8) & 0xFFu);
        a2 += g1 * (int8_t)((v1 >> 16) & 0xFFu);
        a3 += g1 * (int8_t)(v1 >> 24);
    }
    if (c < cout) {
        const int64_t g0 = gp[c];
        const uint32_t v0 = tt_ld32(w);
        a0 += g0 * (int8_t)(v0 & 0xFFu);
        a1 += g0 * (int8_t)((v0 >> 8) & 0xFFu);
        a2 += g0 * (int8_t)((v0 >> 16) & 0xFFu);
        a3 += g0 * (int8_t)(v0 >> 24);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

static int32_t dx_round(int64_t acc, uint32_t r) {
    return tt_clamp32(tt_round_shift(acc, r), INT32_MIN, INT32_MAX);
}

static void pw_input_grad(tt_trainer *t, const tt_layer_rec *L, const int32_t *g, int32_t *dx, uint32_t r) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, npix = (uint32_t)out->h * out->w;
    for (uint32_t p = 0; p < npix; p++) {
        const int32_t *gp = g + p * cout;
        int32_t *dp = dx + p * cin;
        /* the reference reads positions j < n_train from the trained copy */
        for (uint32_t part = 0; part < 2u; part++) {
            const uint32_t j0 = part ? nt : 0u, j1 = part ? cin : nt, ws = part ? cin : nt;
            const int8_t *wb = part ? wf : wt;
            uint32_t j = j0;
            for (; j + 4u <= j1; j += 4u) {
                int64_t acc[4];
                pw_input_grad4(gp, wb + j, ws, cout, acc);
                for (uint32_t i = 0; i < 4u; i++) {
                    dp[perm ? perm[j + i] : j + i] = dx_round(acc[i], r);
                }
            }
            for (; j < j1; j++) {
                int64_t a = 0;
                for (uint32_t c = 0; c < cout; c++) {
                    a += (int64_t)gp[c] * wb[c * ws + j];
                }
                dp[perm ? perm[j] : j] = dx_round(a, r);
            }
        }
    }
}

/* Pointwise input gradient with 16-bit multiplies (SMLAD): each gradient
   value g (|g| <= 2^24 after the prescale) is split exactly into
   g = 65536 h + l, l = g's low 16 bits sign-extended, |h| <= 2^8, and
   sum_c w g = 65536 sum_c w h + sum_c w l, both int32 sums (|w l| <= 2^22,
   folded into int64 every 256 channels). The gradient tensor is rewritten in
   place as pairs over output channels c, c + 1: word (l_c, l_c+1) then word
   (h_c, h_c+1), and restored exactly afterwards. The weights of two input
   channels are regrouped on the stack as pairs (w[c][j], w[c+1][j]). */
#define PW_SMLAD_MAX_COUT 576u

static inline int32_t smlad_c(uint32_t a, uint32_t b, int32_t acc) {
#if TT_DSP
    return __smlad((int32_t)a, (int32_t)b, acc);
#else
    return acc + lo16(a) * lo16(b) + hi16(a) * hi16(b);
#endif
}

static int pw_input_grad_smlad(tt_trainer *t, const tt_layer_rec *L, int32_t *g, int32_t *dx, uint32_t r) {
    uint32_t wp[PW_SMLAD_MAX_COUT]; /* cout / 2 pairs x 2 input channels */
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, npix = (uint32_t)out->h * out->w;
    const uint32_t npair = cout / 2u;
    const uint32_t n = npix * cout;
    if (cout % 2u || cout > PW_SMLAD_MAX_COUT) {
        return 0;
    }
    for (uint32_t i = 0; i < n; i++) { /* |g| <= 2^24 is what the split needs */
        if (g[i] > (1 << 24) || g[i] < -(1 << 24)) {
            return 0;
        }
    }
    for (uint32_t i = 0; i < n; i += 2u) {
        const int32_t l0 = (int16_t)(uint16_t)((uint32_t)g[i] & 0xFFFFu);
        const int32_t l1 = (int16_t)(uint16_t)((uint32_t)g[i + 1u] & 0xFFFFu);
        const int32_t h0 = (g[i] - l0) / 65536, h1 = (g[i + 1u] - l1) / 65536;
        g[i] = (int32_t)pack16(l0, l1);
        g[i + 1u] = (int32_t)pack16(h0, h1);
    }
    for (uint32_t j = 0; j < cin; j += 2u) {
        const uint32_t j1 = j + 1u < cin ? j + 1u : j; /* odd cin: the last one twice */
        /* the reference reads positions j < n_train from the trained copy */
        const int8_t *pa = j < nt ? wt + j : wf + j, *pb = j1 < nt ? wt + j1 : wf + j1;
        const uint32_t sa = j < nt ? nt : cin, sb = j1 < nt ? nt : cin;
        for (uint32_t cp = 0; cp < npair; cp++, pa += 2u * sa, pb += 2u * sb) {
            wp[2u * cp] = pack16(pa[0], pa[sa]);
            wp[2u * cp + 1u] = pack16(pb[0], pb[sb]);
        }
        for (uint32_t p = 0; p < npix; p++) {
            const uint32_t *gp = (const uint32_t *)(const void *)(g + p * cout);
            int64_t s0 = 0, s1 = 0;
            for (uint32_t cp0 = 0; cp0 < npair; cp0 += 128u) {
                const uint32_t nb = npair - cp0 < 128u ? npair - cp0 : 128u;
                const uint32_t *w = wp + 2u * cp0, *gg = gp + 2u * cp0, *end = w + 2u * (nb & ~1u);
                int32_t l0 = 0, h0 = 0, l1 = 0, h1 = 0;
#if TT_DSP
                /* GCC does not pair these loads into LDRD by itself */
                for (; w != end;) { /* two channel pairs */
                    uint32_t a, b, c, d;
                    __asm__("ldrd %[a], %[b], [%[w]], #8\n\t"
                            "ldrd %[c], %[d], [%[g]], #8\n\t"
                            "smlad %[l0], %[a], %[c], %[l0]\n\t"
                            "smlad %[h0], %[a], %[d], %[h0]\n\t"
                            "smlad %[l1], %[b], %[c], %[l1]\n\t"
                            "smlad %[h1], %[b], %[d], %[h1]\n\t"
                            "ldrd %[a], %[b], [%[w]], #8\n\t"
                            "ldrd %[c], %[d], [%[g]], #8\n\t"
                            "smlad %[l0], %[a], %[c], %[l0]\n\t"
                            "smlad %[h0], %[a], %[d], %[h0]\n\t"
                            "smlad %[l1], %[b], %[c], %[l1]\n\t"
                            "smlad %[h1], %[b], %[d], %[h1]"
                            : [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(c), [d] "=&r"(d), [w] "+r"(w), [g] "+r"(gg),
                              [l0] "+r"(l0), [h0] "+r"(h0), [l1] "+r"(l1), [h1] "+r"(h1)
                            :
                            : "memory");
                }
#else
                for (; w != end; w += 4, gg += 4) { /* two channel pairs */
                    l0 = smlad_c(w[0], gg[0], l0);
                    h0 = smlad_c(w[0], gg[1], h0);
                    l1 = smlad_c(w[1], gg[0], l1);
                    h1 = smlad_c(w[1], gg[1], h1);
                    l0 = smlad_c(w[2], gg[2], l0);
                    h0 = smlad_c(w[2], gg[3], h0);
                    l1 = smlad_c(w[3], gg[2], l1);
                    h1 = smlad_c(w[3], gg[3], h1);
                }
#endif
                if (nb & 1u) {
                    l0 = smlad_c(w[0], gg[0], l0);
                    h0 = smlad_c(w[0], gg[1], h0);
                    l1 = smlad_c(w[1], gg[0], l1);
                    h1 = smlad_c(w[1], gg[1], h1);
                }
                s0 += (int64_t)h0 * 65536 + l0;
                s1 += (int64_t)h1 * 65536 + l1;
            }
            dx[p * cin + (perm ? perm[j] : j)] = dx_round(s0, r);
            dx[p * cin + (perm ? perm[j1] : j1)] = dx_round(s1, r);
        }
    }
    for (uint32_t i = 0; i < n; i += 2u) { /* restore g exactly */
        const uint32_t lw = (uint32_t)g[i], hw = (uint32_t)g[i + 1u];
        g[i] = lo16(hw) * 65536 + lo16(lw);
        g[i + 1u] = hi16(hw) * 65536 + hi16(lw);
    }
    return 1;
}

#define DW_MAX_SIDE 256u
#define DW_MAX_TAPS 64u

/* For input index i: the kernel taps k = first, first + s, ... (n of them)
   that reach it, from output index o = (i + pad - k) / s = ofirst, ofirst - 1, ... */
static void dw_taps(uint32_t i, uint32_t pad, uint32_t s, uint32_t ksize, uint32_t on, uint8_t *first, uint8_t *n,
                    uint16_t *ofirst) {
    const int32_t tt = (int32_t)(i + pad);
    int32_t lo = tt - (int32_t)(s * (on - 1u)), hi = tt < (int32_t)ksize - 1 ? tt : (int32_t)ksize - 1;
    lo = lo < 0 ? 0 : lo;
    lo += (int32_t)((uint32_t)(tt - lo) % s); /* same residue as tt */
    if (lo > hi) {
        *first = 0;
        *n = 0;
        *ofirst = 0;
        return;
    }
    *first = (uint8_t)lo;
    *n = (uint8_t)((uint32_t)(hi - lo) / s + 1u);
    *ofirst = (uint16_t)((uint32_t)(tt - lo) / s);
}

static int dw_input_grad(tt_trainer *t, const tt_layer_rec *L, const int32_t *g, int32_t *dx, uint32_t r) {
    uint8_t hf[DW_MAX_SIDE], hn[DW_MAX_SIDE], wfst[DW_MAX_SIDE], wn[DW_MAX_SIDE];
    uint16_t ho[DW_MAX_SIDE], wo[DW_MAX_SIDE];
    int32_t wk[DW_MAX_TAPS];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = L->perm_off == TT_NO_OFFSET ? NULL : TT_BLOB(m, uint16_t, L->perm_off);
    const uint32_t C = in->c, H = in->h, W = in->w, OW = out->w, KW = L->kw, kk = (uint32_t)L->kh * L->kw;
    const uint32_t s = L->stride;
    if (H > DW_MAX_SIDE || W > DW_MAX_SIDE || kk > DW_MAX_TAPS) {
        return 0;
    }
    for (uint32_t i = 0; i < H; i++) {
        dw_taps(i, L->pad_top, s, L->kh, out->h, &hf[i], &hn[i], &ho[i]);
    }
    for (uint32_t i = 0; i < W; i++) {
        dw_taps(i, L->pad_left, s, L->kw, OW, &wfst[i], &wn[i], &wo[i]);
    }
    for (uint32_t j = 0; j < C; j++) {
        const uint32_t c = perm ? perm[j] : j;
        const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
        for (uint32_t i = 0; i < kk; i++) {
            wk[i] = w[i];
        }
        for (uint32_t ih = 0; ih < H; ih++) {
            for (uint32_t iw = 0; iw < W; iw++) {
                int64_t acc = 0;
                for (uint32_t a = 0; a < hn[ih]; a++) {
                    const int32_t *wr = wk + (hf[ih] + a * s) * KW + wfst[iw];
                    const int32_t *gr = g + ((ho[ih] - a) * OW + wo[iw]) * C + c;
                    for (uint32_t b = 0; b < wn[iw]; b++) {
                        acc += (int64_t)wr[b * s] * gr[0];
                        gr -= C;
                    }
                }
                dx[(ih * W + iw) * C + c] = dx_round(acc, r);
            }
        }
    }
    return 1;
}

/* Depthwise input gradient, 4 channels at a time (no perm, C a multiple
   of 4): the gradients of 4 channels and their weights (regrouped per tap
   on the stack) are contiguous; the taps reaching an input row / column are
   worked out once per layer, as in dw_input_grad. */
static int dw_input_grad_c4(tt_trainer *t, const tt_layer_rec *L, const int32_t *g, int32_t *dx, uint32_t r) {
    uint8_t hf[DW_MAX_SIDE], hn[DW_MAX_SIDE], wfst[DW_MAX_SIDE], wn[DW_MAX_SIDE];
    uint16_t ho[DW_MAX_SIDE], wo[DW_MAX_SIDE];
    int32_t wtab[DW_MAX_TAPS * 4u];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint32_t C = in->c, H = in->h, W = in->w, OW = out->w, KW = L->kw, kk = (uint32_t)L->kh * L->kw;
    const uint32_t s = L->stride;
    if (L->perm_off != TT_NO_OFFSET || C % 4u || H > DW_MAX_SIDE || W > DW_MAX_SIDE || kk > DW_MAX_TAPS) {
        return 0;
    }
    for (uint32_t i = 0; i < H; i++) {
        dw_taps(i, L->pad_top, s, L->kh, out->h, &hf[i], &hn[i], &ho[i]);
    }
    for (uint32_t i = 0; i < W; i++) {
        dw_taps(i, L->pad_left, s, L->kw, OW, &wfst[i], &wn[i], &wo[i]);
    }
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t j = c0 + i; /* no perm: storage position = channel */
            const int8_t *w = j < L->n_train ? wt + j * kk : wf + j * kk;
            for (uint32_t tap = 0; tap < kk; tap++) {
                wtab[tap * 4u + i] = w[tap];
            }
        }
        for (uint32_t ih = 0; ih < H; ih++) {
            int32_t *dp = dx + ih * W * C + c0;
            for (uint32_t iw = 0; iw < W; iw++, dp += C) {
                int64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                for (uint32_t a = 0; a < hn[ih]; a++) {
                    const int32_t *wp = wtab + ((hf[ih] + a * s) * KW + wfst[iw]) * 4u;
                    const int32_t *gp = g + ((ho[ih] - a) * OW + wo[iw]) * C + c0;
                    for (uint32_t b = 0; b < wn[iw]; b++, wp += 4u * s, gp -= C) {
                        a0 += (int64_t)wp[0] * gp[0];
                        a1 += (int64_t)wp[1] * gp[1];
                        a2 += (int64_t)wp[2] * gp[2];
                        a3 += (int64_t)wp[3] * gp[3];
                    }
                }
                dp[0] = dx_round(a0, r);
                dp[1] = dx_round(a1, r);
                dp[2] = dx_round(a2, r);
                dp[3] = dx_round(a3, r);
            }
        }
    }
    return 1;
}

int tt_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, int32_t *g, float sgp, uint32_t dx_id) {
    const tt_model *m = &t->model;
    const uint32_t kk = (uint32_t)L->kh * L->kw, cout = tt_tensor(m, L->out)->c;
    const uint32_t r = tt_bitlen64(L->kind == TT_L_DWCONV ? kk : kk * cout);
    int32_t *dx = tt_grad_data(t, dx_id);
    if (sgp == 0.0f) {
        return 0; /* the reference writes zeros */
    }
    if (is_pointwise(m, L)) {
        if (!pw_input_grad_smlad(t, L, g, dx, r)) {
            pw_input_grad(t, L, g, dx, r);
        }
    } else if (L->kind != TT_L_DWCONV || (!dw_input_grad_c4(t, L, g, dx, r) && !dw_input_grad(t, L, g, dx, r))) {
        return 0;
    }
    *tt_grad_scale(t, dx_id) = sgp * tt_pow2f((int32_t)r);
    return 1;
}

#else
typedef int tt_backward_opt_unused; /* ISO C: a translation unit is not empty */
#endif
