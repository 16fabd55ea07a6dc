/*
 * Weight and bias updates, optimised (selected by TT_OPTIMIZED, see
 * tt_opt.h). Same results as tt_update.c bit for bit: the int64 sums are
 * reordered only; each weight and bias is updated by the same float
 * operations in the same order.
 *
 *  - weight gradient of a pointwise layer (and the FC head): per output
 *    channel 4 trained input channels at a time, the input zero point taken
 *    out of the sum: sum g (s - z) = sum g s - z sum g. Depthwise: per tap
 *    the rectangle of output positions that reach the input, no test inside.
 *  - bias gradient and the prescale of the output gradient: the reference's
 *    loops without per-element division or bit loops.
 *  - each weight and bias step rounds with tt_rint_sat_fast (one VCVTR on
 *    an FPU), the same rounding as tt_rint_sat.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

/* One weight: the grad hook, then the reference's float steps and
   tt_weight_step; the bit length and the rounding (tt_rint_sat_fast) are
   found faster. Inline (a call took about a third of it) except in a
   position-independent build, the .mpy, whose size counts more there. */
#if defined(__PIC__)
#define WEIGHT_STEP_FN static
#else
#define WEIGHT_STEP_FN TT_INLINE
#endif
WEIGHT_STEP_FN void weight_step(tt_trainer *t, const tt_update_params *P, int8_t *w, int8_t *res, uint32_t idx,
                                int64_t a, float scale, float scale_div, float qas) {
    const float u = (tt_f32_from_i64_fast(a) * P->k) * qas;
    if (t->grad_hook) {
        t->grad_hook(t->grad_hook_ctx, P->li, idx, a, scale / scale_div);
    }
    if (res) {
        tt_weight_apply(w + idx, res + idx, tt_rint_sat_fast(u * 256.0f, 65535));
    } else {
        tt_weight_apply(w + idx, NULL, tt_rint_sat_fast(u, 255));
    }
}

/* The bias steps of channels c0 .. c0 + nc - 1 from their gradient sums a. */
static void bias_steps(tt_trainer *t, uint32_t li, const tt_layer_rec *L, uint32_t c0, uint32_t nc, const int64_t *a,
                       float sg, float k) {
    const float *qas = TT_BLOB(&t->model, float, L->qas_b_off);
    for (uint32_t i = 0; i < nc; i++) {
        const uint32_t c = c0 + i;
        if (t->grad_hook) {
            t->grad_hook(t->grad_hook_ctx, li, TT_GRAD_HOOK_BIAS | c, a[i], sg);
        }
        tt_bias_apply(t, L, c, tt_rint_sat_fast((tt_f32_from_i64_fast(a[i]) * k) * qas[c], TT_BIAS_LIMIT));
    }
}

/* tt_f32_from_i64_fast(a) for |a| < 2^31 - 64 (the rounding add stays
   in int32): one CLZ, no 64-bit steps. */
static inline float f32_from_i32(int32_t a) {
    const uint32_t m = a < 0 ? 0u - (uint32_t)a : (uint32_t)a;
    uint32_t s;
    if (m < (1u << 24)) {
        return (float)a;
    }
#if defined(__GNUC__)
    s = 8u - (uint32_t)__builtin_clz(m); /* bit length - 24, in [1, 7] */
#else
    s = tt_bitlen64(m) - 24u;
#endif
    return (float)((a + (1 << (s - 1u))) >> s) * tt_pow2f((int32_t)s);
}

/* weight_step without a grad hook, for an int32 sum (f32_from_i32's range). */
TT_INLINE void weight_step32(const tt_update_params *P, int8_t *w, int8_t *res, uint32_t idx, int32_t a, float qas) {
    const float u = (f32_from_i32(a) * P->k) * qas;
    if (res) {
        tt_weight_apply(w + idx, res + idx, tt_rint_sat_fast(u * 256.0f, 65535));
    } else {
        tt_weight_apply(w + idx, NULL, tt_rint_sat_fast(u, 255));
    }
}

/* sum_p g[p][c], 4 channels per pass over the positions. */
int tt_update_biases_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, const int16_t *g, uint32_t npos,
                         uint32_t C, float sg, float k) {
    int64_t a[4];
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        const uint32_t nc = C - c0 < 4u ? C - c0 : 4u;
        const int16_t *gp = g + c0;
        a[0] = a[1] = a[2] = a[3] = 0;
        if (nc == 4u && npos <= 65536u) {
            /* int32 sums: |sum| <= 32767 npos < 2^31 */
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#if TT_DSP
            for (uint32_t p = 0; p < npos; p++, gp += C) {
                const uint32_t u = tt_ld32(gp), v = tt_ld32(gp + 2);
                __asm__("sxtah %[a0], %[a0], %[u]\n\t"
                        "sxtah %[a1], %[a1], %[u], ror #16\n\t"
                        "sxtah %[a2], %[a2], %[v]\n\t"
                        "sxtah %[a3], %[a3], %[v], ror #16"
                        : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3)
                        : [u] "r"(u), [v] "r"(v));
            }
#else
            for (uint32_t p = 0; p < npos; p++, gp += C) {
                a0 += gp[0];
                a1 += gp[1];
                a2 += gp[2];
                a3 += gp[3];
            }
#endif
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
        bias_steps(t, li, L, c0, nc, a, sg, k);
    }
    return 1;
}

#if TT_DSP
/* The prescale's passes on a channel pair at a time (C even, g 4-byte
   aligned): one word holds G[p][c], G[p][c + 1]. */

/* Per lane the largest value and the smallest, both from 0 (SSUB16 + SEL). */
static inline void prescale_max_step(uint32_t w, uint32_t *hi, uint32_t *lo) {
    uint32_t t;
    __asm__("ssub16 %[t], %[w], %[hi]\n\t"
            "sel %[hi], %[w], %[hi]\n\t"
            "ssub16 %[t], %[lo], %[w]\n\t"
            "sel %[lo], %[w], %[lo]"
            : [hi] "+r"(*hi), [lo] "+r"(*lo), [t] "=&r"(t)
            : [w] "r"(w));
}
/* two positions a pass (the loop's own instructions once per two) */
static void prescale_max2(const int16_t *g, uint32_t npos, uint32_t C, uint32_t *mx, uint32_t *mn) {
    const uint32_t *gp = (const uint32_t *)(const void *)g;
    const uint32_t step = C / 2u;
    uint32_t hi = 0, lo = 0, p = 0;
    for (; p + 2u <= npos; p += 2u, gp += 2u * step) {
        const uint32_t w0 = gp[0], w1 = gp[step];
        prescale_max_step(w0, &hi, &lo);
        prescale_max_step(w1, &hi, &lo);
    }
    if (p < npos) {
        prescale_max_step(*gp, &hi, &lo);
    }
    *mx = hi;
    *mn = lo;
}

/* rs(v f, e) for e >= 17, clamped to +-32767, both lanes: SMLAW adds
   floor(v f / 2^16) to 2^(e-17), which is floor((v f + 2^(e-1)) / 2^16)
   as 2^(e-1) is a multiple of 2^16; ASR by e - 16 ends the floor division.
   |v f| < 2^46: the SMLAW sum stays below 2^31. */
static inline uint32_t prescale_word(uint32_t w, int32_t fa, int32_t fb, int32_t r, uint32_t k) {
    const uint32_t m = 0x80018001u; /* (-32767, -32767) */
    int32_t qa, qb;
    uint32_t v, t;
    __asm__("smlawb %0, %1, %2, %3" : "=r"(qa) : "r"(fa), "r"(w), "r"(r));
    __asm__("smlawt %0, %1, %2, %3" : "=r"(qb) : "r"(fb), "r"(w), "r"(r));
    qa = __ssat(qa >> k, 16);
    qb = __ssat(qb >> k, 16);
    __asm__("pkhbt %[v], %[a], %[b], lsl #16\n\t"
            "ssub16 %[t], %[v], %[m]\n\t"
            "sel %[v], %[v], %[m]"
            : [v] "=&r"(v), [t] "=&r"(t)
            : [a] "r"(qa), [b] "r"(qb), [m] "r"(m));
    return v;
}
/* two positions a pass, as prescale_max2 */
static void prescale_store2(int16_t *g, uint32_t npos, uint32_t C, int32_t fa, int32_t fb, uint32_t e) {
    uint32_t *gp = (uint32_t *)(void *)g;
    const int32_t r = 1 << (e - 17u);
    const uint32_t k = e - 16u, step = C / 2u;
    uint32_t p = 0;
    for (; p + 2u <= npos; p += 2u, gp += 2u * step) {
        const uint32_t w0 = gp[0], w1 = gp[step];
        gp[0] = prescale_word(w0, fa, fb, r, k);
        gp[step] = prescale_word(w1, fa, fb, r, k);
    }
    if (p < npos) {
        *gp = prescale_word(*gp, fa, fb, r, k);
    }
}
#endif

static void prescale_store(const tt_model *m, const tt_layer_rec *L, int16_t *g, uint32_t n, uint32_t C, float sg,
                           uint64_t pmax, float *sgp);

/* The reference's prescale. The factors are >= 0, so the largest |G gs[c]|
   is max_c gs[c] max_p |G[p][c]|: the first pass is over int16 only. The
   second stores rs(G gs[c], e) from one 32 x 32 -> 64 multiply-add (with the
   DSP extension, C even: two channels per word, SMLAWB/SMLAWT). */
int tt_prescale_opt(const tt_model *m, const tt_layer_rec *L, int16_t *g, uint32_t n, uint32_t C, float sg,
                    float *sgp) {
    const int32_t *pm = TT_BLOB(m, int32_t, L->gscale_off);
    uint64_t pmax = 0;
#if TT_DSP
    const int pairs = C % 2u == 0u && ((uintptr_t)g & 3u) == 0u;
    if (pairs) {
        for (uint32_t c = 0; c < C; c += 2u) {
            uint32_t mx, mn;
            prescale_max2(g + c, n / C, C, &mx, &mn);
            for (uint32_t i = 0; i < 2u; i++) {
                const int32_t hi = i ? hi16(mx) : lo16(mx), lo = i ? hi16(mn) : lo16(mn);
                const uint64_t a = tt_abs64((int64_t)(-lo > hi ? -lo : hi) * pm[c + i]);
                pmax = a > pmax ? a : pmax;
            }
        }
    }
    for (uint32_t c = 0; c < C && !pairs; c++) {
#else
    for (uint32_t c = 0; c < C; c++) {
#endif
        const int16_t *gp = g + c;
        int32_t hi = 0, lo = 0;
        for (uint32_t i = c; i < n; i += C, gp += C) {
            const int32_t v = *gp;
            hi = v > hi ? v : hi;
            lo = v < lo ? v : lo;
        }
        hi = -lo > hi ? -lo : hi;
        {
            const uint64_t a = tt_abs64((int64_t)hi * pm[c]);
            pmax = a > pmax ? a : pmax;
        }
    }
    prescale_store(m, L, g, n, C, sg, pmax, sgp);
    return 1;
}

/* The prescale's second pass, pmax = max_c |max_p |G[p][c]| pm[c]|. */
static void prescale_store(const tt_model *m, const tt_layer_rec *L, int16_t *g, uint32_t n, uint32_t C, float sg,
                           uint64_t pmax, float *sgp) {
    const int32_t *pm = TT_BLOB(m, int32_t, L->gscale_off);
    uint32_t e;
    int64_t rnd;
    if (pmax == 0 || !(sg > 0.0f)) {
        *sgp = 0.0f;
        return;
    }
    e = tt_bitlen64_fast(pmax);
    e = e > 15u ? e - 15u : 0u; /* tt_g16_shift */
    rnd = e ? (int64_t)1 << (e - 1u) : 0;
#if TT_DSP
    if (C % 2u == 0u && ((uintptr_t)g & 3u) == 0u && e >= 17u) {
        for (uint32_t c = 0; c < C; c += 2u) {
            prescale_store2(g + c, n / C, C, pm[c], pm[c + 1u], e);
        }
        *sgp = (sg * tt_pow2f((int32_t)e - 31)) * L->wscale_max;
        return;
    }
#endif
    for (uint32_t c = 0; c < C; c++) {
        int16_t *gp = g + c, *end = g + n;
        const int64_t f = pm[c];
        if (e >= 32u) { /* q = v >> e (17 bits) from the high word alone */
            const uint32_t k = e - 32u;
            for (; gp < end; gp += C) {
                const int32_t q = (int32_t)((*gp * f + rnd) >> 32) >> k;
                *gp = (int16_t)(q < -TT_G16_MAX ? -TT_G16_MAX : (q > TT_G16_MAX ? TT_G16_MAX : q));
            }
        } else {
            for (; gp < end; gp += C) {
                const int32_t q = (int32_t)(uint32_t)((uint64_t)(*gp * f + rnd) >> e);
                *gp = (int16_t)(q < -TT_G16_MAX ? -TT_G16_MAX : (q > TT_G16_MAX ? TT_G16_MAX : q));
            }
        }
    }
    *sgp = (sg * tt_pow2f((int32_t)e - 31)) * L->wscale_max;
}

#if TT_DSP_ASM_WIDE
/* One position of bias_max_quad: the 4 values' sums and lane maxima. */
#define BIAS_MAX_POS                                                                                                 \
    "ldrd %[u], %[v], [%[gp]]\n\t"                                                                                   \
    "add %[gp], %[gp], %[C2]\n\t"                                                                                    \
    "sxtah %[a0], %[a0], %[u]\n\t"                                                                                   \
    "sxtah %[a1], %[a1], %[u], ror #16\n\t"                                                                          \
    "sxtah %[a2], %[a2], %[v]\n\t"                                                                                   \
    "sxtah %[a3], %[a3], %[v], ror #16\n\t"                                                                          \
    "ssub16 %[t], %[u], %[h01]\n\t"                                                                                  \
    "sel %[h01], %[u], %[h01]\n\t"                                                                                   \
    "ssub16 %[t], %[l01], %[u]\n\t"                                                                                  \
    "sel %[l01], %[u], %[l01]\n\t"                                                                                   \
    "ssub16 %[t], %[v], %[h23]\n\t"                                                                                  \
    "sel %[h23], %[v], %[h23]\n\t"                                                                                   \
    "ssub16 %[t], %[l23], %[v]\n\t"                                                                                  \
    "sel %[l23], %[v], %[l23]\n\t"

/* Channels c .. c + 3 over npos >= 1 positions (g at channel c, 4-byte
   aligned, C2 = 2 C bytes a position): the sums a[0..3] (int32: npos <=
   65536) and per lane the largest and smallest values, hl = (h01, l01, h23,
   l23), as prescale_max2's. 13 registers. */
static TT_NOINLINE void bias_max_quad(const int16_t *g, uint32_t npos, uint32_t C2, int32_t *a, uint32_t *hl) {
    const uint8_t *gp = (const uint8_t *)(const void *)g;
    const uint8_t *const end = gp + npos * C2; /* an odd position first, then pairs */
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t h01 = 0, l01 = 0, h23 = 0, l23 = 0, u, v, t;
    if (npos & 1u) {
        __asm__(BIAS_MAX_POS
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [h01] "+r"(h01), [l01] "+r"(l01),
                  [h23] "+r"(h23), [l23] "+r"(l23), [u] "=&r"(u), [v] "=&r"(v), [t] "=&r"(t), [gp] "+r"(gp)
                : [C2] "r"(C2), "m"(*(const uint32_t(*)[2])(const void *)g));
    }
    if (npos >= 2u) { /* two positions a loop */
        __asm__ volatile("1:\n\t" BIAS_MAX_POS BIAS_MAX_POS
                         "ldr %[t], %[end]\n\t"
                         "cmp %[gp], %[t]\n\t"
                         "bne 1b"
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [h01] "+r"(h01),
                           [l01] "+r"(l01), [h23] "+r"(h23), [l23] "+r"(l23), [u] "=&r"(u), [v] "=&r"(v),
                           [t] "=&r"(t), [gp] "+r"(gp)
                         : [C2] "r"(C2), [end] "m"(end)
                         : "cc", "memory");
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
    hl[0] = h01;
    hl[1] = l01;
    hl[2] = h23;
    hl[3] = l23;
}
#endif

/* tt_update_biases_opt and tt_prescale_opt of a layer with both, the bias
   sums and the prescale's maxima in one pass over g (C a multiple of 4, g
   4-byte aligned, npos <= 65536); 0: not handled. Same updates in the
   same order, same prescaled gradient. */
int tt_bias_prescale_opt(tt_trainer *t, uint32_t li, const tt_layer_rec *L, int16_t *g, uint32_t npos, uint32_t C,
                         float sg, float k, float *sgp) {
#if TT_DSP_ASM_WIDE
    const int32_t *pm = TT_BLOB(&t->model, int32_t, L->gscale_off);
    uint64_t pmax = 0;
    if (C % 4u || ((uintptr_t)g & 3u) || npos > 65536u || !npos) {
        return 0;
    }
    for (uint32_t c0 = 0; c0 < C; c0 += 4u) {
        int32_t s[4];
        uint32_t hl[4];
        int64_t a[4];
        bias_max_quad(g + c0, npos, 2u * C, s, hl);
        for (uint32_t i = 0; i < 4u; i++) {
            const uint32_t h = hl[i & 2u], l = hl[(i & 2u) + 1u];
            const int32_t hi = i & 1u ? hi16(h) : lo16(h), lo = i & 1u ? hi16(l) : lo16(l);
            const uint64_t m = tt_abs64((int64_t)(-lo > hi ? -lo : hi) * pm[c0 + i]);
            pmax = m > pmax ? m : pmax;
            a[i] = s[i];
        }
        bias_steps(t, li, L, c0, 4u, a, sg, k);
    }
    prescale_store(&t->model, L, g, npos * C, C, sg, pmax, sgp);
    return 1;
#else
    (void)t, (void)li, (void)L, (void)g, (void)npos, (void)C, (void)sg, (void)k, (void)sgp;
    return 0;
#endif
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
static void dw_update_weights(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, P->saved_id);
    const int16_t *g = P->g;
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const uint16_t *perm = TT_BLOB(m, uint16_t, L->perm_off);
    const float scale = P->sg * in->scale; /* as the reference */
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
                const int16_t *gp = g + (oh * OW + ow0) * C + ch;
                const int8_t *sp = s + (ih * W + iw0) * nt + j;
                for (uint32_t ow = ow0; ow < ow1; ow++, gp += C, sp += st * nt) {
                    a += (int64_t)*gp * (*sp - zx);
                }
            }
            weight_step(t, P, w, res, j * kk + r, a, scale, P->hook_div ? P->hook_div[ch] : 1.0f, qas[ch]);
        }
    }
}

/* Pointwise weight gradient with SMLAD, 4 trained input channels x 2
   output channels at a time: the saved inputs of a pixel pair regrouped
   once as int16 pairs (s[p][j] - zx, s[p+1][j] - zx) on the stack (the
   input zero point taken out there: no second sum of g), the gradients of
   channels c, c+1 as pairs (g[p][c], g[p+1][c]) (PKHBT, PKHTB per two
   words, once per channel pair for as many groups of 4 trained channels
   as the stack buffer of regrouped inputs holds); per pixel pair 3 LDRD and 8 SMLAD. |sum g (s - zx)| <= npos
   32767 255 < 2^31 for npos <= 2 PW_WG_MAX_PAIRS: the sums are exact. The
   weights are updated block by block (the reference goes output channel by
   output channel; an update reads only sums, so the order changes no
   result, but the grad hook sees the reference's order: with a hook the
   general loop runs). */
#define PW_WG_MAX_PAIRS 96u /* 16 + 8 bytes a pixel pair: within TT_OPT_STACK_BYTES */

/* The sums of one group of 4 trained channels (s2: npp pixel pairs of 4
   words) with the regrouped gradients of a channel pair (g2: 2 words a
   pixel pair): v[0..3] channel c, v[4..7] channel c + 1. */
static TT_NOINLINE void pw_wg_sums(const uint32_t *g2, const uint32_t *s2, uint32_t npp, int32_t *v) {
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
#if TT_DSP_ASM_WIDE
    const uint32_t *gp = g2, *sp = s2, *const gend = g2 + 2u * npp;
    uint32_t ga, gb, s0, s1;
    __asm__ volatile("1:\n\t" /* 14 instructions a pixel pair (GCC: 17) */
                     "ldrd %[ga], %[gb], [%[gp]], #8\n\t"
                     "ldrd %[s0], %[s1], [%[sp]], #8\n\t"
                     "smlad %[a0], %[ga], %[s0], %[a0]\n\t"
                     "smlad %[a1], %[ga], %[s1], %[a1]\n\t"
                     "smlad %[b0], %[gb], %[s0], %[b0]\n\t"
                     "smlad %[b1], %[gb], %[s1], %[b1]\n\t"
                     "ldrd %[s0], %[s1], [%[sp]], #8\n\t"
                     "smlad %[a2], %[ga], %[s0], %[a2]\n\t"
                     "smlad %[a3], %[ga], %[s1], %[a3]\n\t"
                     "smlad %[b2], %[gb], %[s0], %[b2]\n\t"
                     "smlad %[b3], %[gb], %[s1], %[b3]\n\t"
                     "ldr %[s0], %[e]\n\t"
                     "cmp %[gp], %[s0]\n\t"
                     "bne 1b"
                     : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b0] "+r"(b0), [b1] "+r"(b1),
                       [b2] "+r"(b2), [b3] "+r"(b3), [ga] "=&r"(ga), [gb] "=&r"(gb), [s0] "=&r"(s0), [s1] "=&r"(s1),
                       [gp] "+r"(gp), [sp] "+r"(sp)
                     : [e] "m"(gend)
                     : "cc", "memory");
#else
    for (uint32_t pp = 0; pp < npp; pp++) {
        const uint32_t ga = g2[2u * pp], gb = g2[2u * pp + 1u], *sp = s2 + 4u * pp;
        a0 = tt_smlad(ga, sp[0], a0);
        a1 = tt_smlad(ga, sp[1], a1);
        a2 = tt_smlad(ga, sp[2], a2);
        a3 = tt_smlad(ga, sp[3], a3);
        b0 = tt_smlad(gb, sp[0], b0);
        b1 = tt_smlad(gb, sp[1], b1);
        b2 = tt_smlad(gb, sp[2], b2);
        b3 = tt_smlad(gb, sp[3], b3);
    }
#endif
    v[0] = a0;
    v[1] = a1;
    v[2] = a2;
    v[3] = a3;
    v[4] = b0;
    v[5] = b1;
    v[6] = b2;
    v[7] = b3;
}

static int pw_update_weights_smlad(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    uint32_t s2[PW_WG_MAX_PAIRS * 4u], g2[PW_WG_MAX_PAIRS * 2u];
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, P->saved_id);
    const int16_t *g = P->g;
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const uint32_t nt = L->n_train, C = out->c, npos = (uint32_t)out->h * out->w, npp = npos / 2u;
    const int32_t zx = in->zero;
    if (t->grad_hook || nt % 4u || C % 2u || npos % 2u || npp > PW_WG_MAX_PAIRS || !npp) {
        return 0;
    }
    /* as many groups of 4 trained channels as s2 holds share each regrouping of g */
    const uint32_t gmax = PW_WG_MAX_PAIRS / npp;
    for (uint32_t j0 = 0; j0 < nt; j0 += 4u * gmax) {
        const uint32_t ng = (nt - j0) / 4u < gmax ? (nt - j0) / 4u : gmax;
        for (uint32_t gi = 0; gi < ng; gi++) {
            const uint32_t j = j0 + 4u * gi;
            for (uint32_t pp = 0; pp < npp; pp++) {
                const int8_t *sp = s + 2u * pp * nt + j;
                const uint32_t a = tt_ld32(sp), b = tt_ld32(sp + nt);
                const uint32_t a02 = tt_widen02(a), a13 = tt_widen13(a), b02 = tt_widen02(b), b13 = tt_widen13(b);
                const uint32_t v[4] = {(a02 & 0xFFFFu) | (b02 << 16),      /* j */
                                       (a13 & 0xFFFFu) | (b13 << 16),      /* j + 1 */
                                       (a02 >> 16) | (b02 & 0xFFFF0000u),  /* j + 2 */
                                       (a13 >> 16) | (b13 & 0xFFFF0000u)}; /* j + 3 */
                uint32_t *d = s2 + 4u * (gi * npp + pp);
                for (uint32_t i = 0; i < 4u; i++) { /* s - zx in [-255, 255]: no lane overflows */
#if TT_DSP
                    d[i] = (uint32_t)__ssub16((int32_t)v[i], (int32_t)pack16(zx, zx));
#else
                    d[i] = pack16(lo16(v[i]) - zx, hi16(v[i]) - zx);
#endif
                }
            }
        }
        for (uint32_t c = 0; c < C; c += 2u) {
            /* C even and the values 4-byte aligned: (g[p][c], g[p][c+1]) is a word */
            const uint32_t *gw = (const uint32_t *)(const void *)(g + c);
#if TT_DSP
            {
                uint32_t *d = g2, u, v, x;
                const uint32_t C2 = 2u * C; /* bytes a pixel */
                __asm__ volatile("1:\n\t" /* 8 instructions a pixel pair (GCC: 13) */
                                 "ldr %[v], [%[gw], %[C2]]\n\t"
                                 "ldr %[u], [%[gw]]\n\t"
                                 "add %[gw], %[gw], %[C2], lsl #1\n\t"
                                 "pkhtb %[x], %[v], %[u], asr #16\n\t"
                                 "pkhbt %[u], %[u], %[v], lsl #16\n\t"
                                 "strd %[u], %[x], [%[d]], #8\n\t"
                                 "cmp %[d], %[e]\n\t"
                                 "bne 1b"
                                 : [u] "=&r"(u), [v] "=&r"(v), [x] "=&r"(x), [gw] "+r"(gw), [d] "+r"(d)
                                 : [C2] "r"(C2), [e] "r"(g2 + 2u * npp)
                                 : "cc", "memory");
            }
#else
            for (uint32_t pp = 0; pp < npp; pp++, gw += C) { /* C / 2 words a pixel */
                const uint32_t u = gw[0], v = gw[C / 2u];
                g2[2u * pp] = (u & 0xFFFFu) | (v << 16);
                g2[2u * pp + 1u] = (u >> 16) | (v & 0xFFFF0000u);
            }
#endif
            for (uint32_t gi = 0; gi < ng; gi++) {
                const uint32_t j = j0 + 4u * gi;
                int32_t v[8];
                pw_wg_sums(g2, s2 + 4u * gi * npp, npp, v);
                {
                    const uint32_t base = c * nt + j;
                    /* no grad hook here; |sums| <= 2 PW_WG_MAX_PAIRS 32767 255 < 2^31 - 64 */
                    for (uint32_t i = 0; i < 4u; i++) {
                        weight_step32(P, w, res, base + i, v[i], qas[c]);
                    }
                    for (uint32_t i = 0; i < 4u; i++) {
                        weight_step32(P, w, res, base + nt + i, v[4u + i], qas[c + 1u]);
                    }
                }
            }
        }
    }
    return 1;
}

/* Weight gradient of a 1x1 conv on equal grids, or of a conv whose kernel
   covers the whole input (FC): both are sum_p g[p][c] (s[p][j] - z) with p
   running over the positions of one output pixel's window. */
static TT_NOINLINE int update_weights_any(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P);

/* pw_update_weights_smlad first, from a small frame (its buffers then add
   to no other frame than this). */
int tt_update_weights_opt(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    if (tt_is_pointwise(&t->model, L) && pw_update_weights_smlad(t, L, P)) {
        return 1;
    }
    return update_weights_any(t, L, P);
}

static TT_NOINLINE int update_weights_any(tt_trainer *t, const tt_layer_rec *L, const tt_update_params *P) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *s = tt_act_data(t, P->saved_id);
    const int16_t *g = P->g;
    int8_t *w = TT_ARENA(t, int8_t, L->w_arena);
    int8_t *res = (L->flags & TT_LF_RESIDUE) ? TT_ARENA(t, int8_t, L->wres_arena) : NULL;
    const float *qas = TT_BLOB(m, float, L->qas_w_off);
    const float scale = P->sg * in->scale; /* as the reference */
    const uint32_t nt = L->n_train, C = out->c;
    const int32_t zx = in->zero;
    uint32_t npos, gstride, sstride, kk;
    if (tt_is_pointwise(m, L)) { /* pw_update_weights_smlad did not take it */
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
        dw_update_weights(t, L, P);
        return 1;
    } else {
        return 0;
    }
    sstride = nt;
    for (uint32_t c = 0; c < C; c++) {
        const int16_t *gc = g + c;
        const float div = P->hook_div ? P->hook_div[c] : 1.0f;
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
                weight_step(t, P, w, res, base + j, a0 - zx * gsum, scale, div, qas[c]);
                weight_step(t, P, w, res, base + j + 1u, a1 - zx * gsum, scale, div, qas[c]);
                weight_step(t, P, w, res, base + j + 2u, a2 - zx * gsum, scale, div, qas[c]);
                weight_step(t, P, w, res, base + j + 3u, a3 - zx * gsum, scale, div, qas[c]);
            }
            for (; j < nt; j++) {
                int64_t a = 0;
                const int8_t *sp = sr + j;
                for (uint32_t p = 0; p < npos; p++, sp += sstride) {
                    a += (int64_t)gc[p * gstride] * *sp;
                }
                weight_step(t, P, w, res, base + j, a - zx * gsum, scale, div, qas[c]);
            }
        }
    }
    return 1;
}

#else
typedef int tt_update_opt_unused; /* ISO C: a translation unit is not empty */
#endif
