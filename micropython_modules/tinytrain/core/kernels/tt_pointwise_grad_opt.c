/*
 * Pointwise (1x1) input gradient, optimised (the reference is tt_conv.c's
 * input gradient). Same results bit for bit.
 *
 * In one pass (tt_g16_run), 2 input channels x 2 pixels a tile, SMLAD on
 * pairs of int16 gradient values (up to 576 output channels, even);
 * otherwise two passes, per pixel 4 input channels at a time.
 */
#include <stddef.h>
#include "tt_opt.h"

#if TT_OPTIMIZED

/* dx[p][perm[j]] for the 4 input channels j..j+3 of one part (trained or
   frozen weights): rows of w are wstride bytes apart, one per output channel. */
static void pw_input_grad4(const int16_t *gp, const int8_t *w, uint32_t wstride, uint32_t cout, int64_t *acc) {
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
static void pw_input_grad(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = tt_perm_of(m, L);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, npix = (uint32_t)out->h * out->w;
    for (uint32_t p = 0; p < npix; p++) {
        const int16_t *gp = g + p * cout;
        const uint32_t dp = p * cin;
        /* the reference reads positions j < n_train from the trained copy */
        for (uint32_t part = 0; part < 2u; part++) {
            const uint32_t j0 = part ? nt : 0u, j1 = part ? cin : nt, ws = part ? cin : nt;
            const int8_t *wb = part ? wf : wt;
            uint32_t j = j0;
            for (; j + 4u <= j1; j += 4u) {
                int64_t acc[4];
                pw_input_grad4(gp, wb + j, ws, cout, acc);
                for (uint32_t i = 0; i < 4u; i++) {
                    tt_g16_put(dx, dp + (perm ? perm[j + i] : j + i), acc[i]);
                }
            }
            for (; j < j1; j++) {
                int64_t a = 0;
                for (uint32_t c = 0; c < cout; c++) {
                    a += (int64_t)gp[c] * wb[c * ws + j];
                }
                tt_g16_put(dx, dp + (perm ? perm[j] : j), a);
            }
        }
    }
}

/* Pointwise input gradient in one pass (tt_g16_run) with 16-bit dual
   multiplies: the int16 gradient of output channels c, c + 1 is one word;
   the weights of two input channels j, j + 1 are regrouped on the stack as
   pairs (w[c][j], w[c+1][j]), (w[c][j+1], w[c+1][j+1]). A tile is 2 input
   channels x 2 pixels: per 2 channel pairs 2 LDRD of gradients, 2 LDRD of
   weights, 8 SMLAD. Each SMLAD adds at most 2 * 128 * 32767, so 256
   channel pairs sum exactly in int32, and any number when the two input
   channels' weights have sum |w| <= 65535 (the regrouping sums them); else
   the sums fold into int64. */
#define PW_IG_MAX_COUT 576u /* cout / 2 pairs x 2 words: TT_OPT_STACK_BYTES */
#define PW_IG_BLOCK 256u

static inline int32_t smlad_c(uint32_t a, uint32_t b, int32_t acc) {
#if TT_DSP
    return __smlad((int32_t)a, (int32_t)b, acc);
#else
    return acc + lo16(a) * lo16(b) + hi16(a) * hi16(b);
#endif
}

/* a[0..3] += (j, p0), (j, p1), (j+1, p0), (j+1, p1) over n channel pairs. */
TT_INLINE void ig_2x2(const uint32_t *w, const uint32_t *g0, const uint32_t *g1, uint32_t n, int32_t *a) {
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    const uint32_t *end = w + 2u * (n & ~3u);
#if TT_DSP
    /* 4 channel pairs: 4 LDRD of gradients, 4 of weights, 16 SMLAD */
    if (w != end) {
        uint32_t p, q, u, v, s, t;
        __asm__ volatile("1:\n\t"
                         "ldrd %[p], %[q], [%[g0]], #8\n\t"
                         "ldrd %[u], %[v], [%[g1]], #8\n\t"
                         "ldrd %[s], %[t], [%[w]], #8\n\t"
                         "smlad %[a0], %[s], %[p], %[a0]\n\t"
                         "smlad %[a1], %[s], %[u], %[a1]\n\t"
                         "smlad %[a2], %[t], %[p], %[a2]\n\t"
                         "smlad %[a3], %[t], %[u], %[a3]\n\t"
                         "ldrd %[s], %[t], [%[w]], #8\n\t"
                         "smlad %[a0], %[s], %[q], %[a0]\n\t"
                         "smlad %[a1], %[s], %[v], %[a1]\n\t"
                         "smlad %[a2], %[t], %[q], %[a2]\n\t"
                         "smlad %[a3], %[t], %[v], %[a3]\n\t"
                         "ldrd %[p], %[q], [%[g0]], #8\n\t"
                         "ldrd %[u], %[v], [%[g1]], #8\n\t"
                         "ldrd %[s], %[t], [%[w]], #8\n\t"
                         "smlad %[a0], %[s], %[p], %[a0]\n\t"
                         "smlad %[a1], %[s], %[u], %[a1]\n\t"
                         "smlad %[a2], %[t], %[p], %[a2]\n\t"
                         "smlad %[a3], %[t], %[u], %[a3]\n\t"
                         "ldrd %[s], %[t], [%[w]], #8\n\t"
                         "smlad %[a0], %[s], %[q], %[a0]\n\t"
                         "smlad %[a1], %[s], %[v], %[a1]\n\t"
                         "smlad %[a2], %[t], %[q], %[a2]\n\t"
                         "smlad %[a3], %[t], %[v], %[a3]\n\t"
                         "ldr %[s], %[end]\n\t"
                         "cmp %[w], %[s]\n\t"
                         "bne 1b"
                         : [p] "=&r"(p), [q] "=&r"(q), [u] "=&r"(u), [v] "=&r"(v), [s] "=&r"(s), [t] "=&r"(t),
                           [w] "+r"(w), [g0] "+r"(g0), [g1] "+r"(g1), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2),
                           [a3] "+r"(a3)
                         : [end] "m"(end)
                         : "cc", "memory");
    }
#else
    for (; w != end; w += 8, g0 += 4, g1 += 4) {
        for (uint32_t i = 0; i < 4u; i++) {
            a0 = smlad_c(w[2u * i], g0[i], a0);
            a1 = smlad_c(w[2u * i], g1[i], a1);
            a2 = smlad_c(w[2u * i + 1u], g0[i], a2);
            a3 = smlad_c(w[2u * i + 1u], g1[i], a3);
        }
    }
#endif
    for (uint32_t i = 0; i < (n & 3u); i++, w += 2) {
        a0 = smlad_c(w[0], g0[i], a0);
        a1 = smlad_c(w[0], g1[i], a1);
        a2 = smlad_c(w[1], g0[i], a2);
        a3 = smlad_c(w[1], g1[i], a3);
    }
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

#if TT_DSP
/* ig_pair's tiles of two channels (j1 = j + 1, or any two with a perm)
   whose sums stay in int32 (ig_pair's sum32; npair a multiple of 4), in one
   asm block: ig_2x2's sums, the OR of their magnitudes (into seen; a tile
   reaching lim leaves the loop with its sums, for tt_g16_run_check), the
   stores of both pixels (tt_g16_store2's values, rounded by SMMULR: for a
   shift of 2 at least; below it ig_pair's C loop runs). GCC spills around
   each tile what this keeps in pairs here. */
typedef struct {
    const uint32_t *wend; /* the regrouped weights' end */
    uint32_t rowb;        /* bytes of one pixel's gradient (cout int16) */
    uint32_t lim, seen;   /* tt_g16_run's lim (as 32 bits), the OR of |sums| */
    uint32_t e;           /* the shift, 2 at least */
    int32_t mult;         /* 2^(32 - e): SMMULR's (a 2^(32 - e) + 2^31) >> 32 is (a + 2^(e - 1)) >> e */
    int16_t *d;           /* the tile's pixel 0 outputs (dx[p][dj], dx[p][dj1]) */
    uint32_t db;          /* bytes of one pixel's dx (cin int16) */
    uint32_t n, m;        /* tiles left; 0x80018001 (tt_g16_store2) */
    uint32_t n8;          /* the channel pairs are a multiple of 8 */
    uint32_t dd;          /* with a perm: bytes from channel j's dx to j1's (two's complement), else 0 */
} ig_k;

/* Runs K->n tiles from pixel pair g0, g1 = g0 + cout on (K->n >= 1); returns
   the tiles done. When a tile's |sums| reach K->lim it is not stored: its
   sums go to v, K->d stays on its outputs, and it counts as not done. */
/* 2 channel pairs of ig_tiles_asm's sums (ig_2x2's). */
#define IG_2CP                                                                                                       \
    "ldrd %[p], %[q], [%[g0]], #8\n\t"                                                                               \
    "ldrd %[u], %[v], [%[g1]], #8\n\t"                                                                               \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a0], %[s], %[p], %[a0]\n\t"                                                                             \
    "smlad %[a1], %[s], %[u], %[a1]\n\t"                                                                             \
    "smlad %[a2], %[t], %[p], %[a2]\n\t"                                                                             \
    "smlad %[a3], %[t], %[u], %[a3]\n\t"                                                                             \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a0], %[s], %[q], %[a0]\n\t"                                                                             \
    "smlad %[a1], %[s], %[v], %[a1]\n\t"                                                                             \
    "smlad %[a2], %[t], %[q], %[a2]\n\t"                                                                             \
    "smlad %[a3], %[t], %[v], %[a3]\n\t"

/* IG_2CP starting the sums (SMUAD: no zeroing first). */
#define IG_2CP_FIRST                                                                                                 \
    "ldrd %[p], %[q], [%[g0]], #8\n\t"                                                                               \
    "ldrd %[u], %[v], [%[g1]], #8\n\t"                                                                               \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smuad %[a0], %[s], %[p]\n\t"                                                                                    \
    "smuad %[a1], %[s], %[u]\n\t"                                                                                    \
    "smuad %[a2], %[t], %[p]\n\t"                                                                                    \
    "smuad %[a3], %[t], %[u]\n\t"                                                                                    \
    "ldrd %[s], %[t], [%[w]], #8\n\t"                                                                                \
    "smlad %[a0], %[s], %[q], %[a0]\n\t"                                                                             \
    "smlad %[a1], %[s], %[v], %[a1]\n\t"                                                                             \
    "smlad %[a2], %[t], %[q], %[a2]\n\t"                                                                             \
    "smlad %[a3], %[t], %[v], %[a3]\n\t"

/* 4 channel pairs of ig_tiles_asm's sums; IG_4CP_FIRST starts them. */
#define IG_4CP IG_2CP IG_2CP
#define IG_4CP_FIRST IG_2CP_FIRST IG_2CP

/* The stores of a tile (t = d, p = db; a0, a1 = pixel 0's and pixel 1's
   packed pair), t to the next tile: adjacent channels, one word a pixel... */
#define IG_STORE_PAIRS                                                                                               \
    "str %[a0], [%[t]]\n\t"                                                                                          \
    "str %[a1], [%[t], %[p]]\n\t"                                                                                    \
    "add %[t], %[t], %[p], lsl #1\n\t"
/* ... or (a perm) channel j1's values dd bytes from channel j's. */
#define IG_STORE_PERM                                                                                                \
    "ldr %[q], %[kdd]\n\t"                                                                                           \
    "strh %[a0], [%[t]]\n\t"                                                                                         \
    "lsr %[a0], %[a0], #16\n\t"                                                                                      \
    "strh %[a0], [%[t], %[q]]\n\t"                                                                                   \
    "add %[t], %[t], %[p]\n\t"                                                                                       \
    "strh %[a1], [%[t]]\n\t"                                                                                         \
    "lsr %[a1], %[a1], #16\n\t"                                                                                      \
    "strh %[a1], [%[t], %[q]]\n\t"                                                                                   \
    "add %[t], %[t], %[p]\n\t"

/* ig_tiles_asm's loop over its tiles, first: the sums of the first loop
   (starting them), body: those of a loop, store: the stores of a tile. */
#define IG_TILES_ASM(first, body, store)                                                                             \
    __asm__ volatile("1:\n\t"                                                                                        \
                     first                                                                                           \
                     "ldrd %[s], %[t], %[kw]\n\t" /* wend, rowb */                                                   \
                     "cmp %[w], %[s]\n\t"                                                                            \
                     "beq 3f\n\t"                                                                                    \
                     "2:\n\t"                                                                                        \
                     body                                                                                            \
                     "ldrd %[s], %[t], %[kw]\n\t" /* wend, rowb */                                                   \
                     "cmp %[w], %[s]\n\t"                                                                            \
                     "bne 2b\n\t"                                                                                    \
                     "3:\n\t"                                                                                        \
                     /* w back to its start (2 rowb on), g0, g1 to the next pair */                                  \
                     "sub %[w], %[w], %[t], lsl #1\n\t"                                                              \
                     "add %[g0], %[g0], %[t]\n\t"                                                                    \
                     "add %[g1], %[g1], %[t]\n\t"                                                                    \
                     /* s = |a0| | |a1| | |a2| | |a3| */                                                             \
                     "eor %[s], %[a0], %[a0], asr #31\n\t"                                                           \
                     "sub %[s], %[s], %[a0], asr #31\n\t"                                                            \
                     "eor %[t], %[a1], %[a1], asr #31\n\t"                                                           \
                     "sub %[t], %[t], %[a1], asr #31\n\t"                                                            \
                     "orr %[s], %[s], %[t]\n\t"                                                                      \
                     "eor %[t], %[a2], %[a2], asr #31\n\t"                                                           \
                     "sub %[t], %[t], %[a2], asr #31\n\t"                                                            \
                     "orr %[s], %[s], %[t]\n\t"                                                                      \
                     "eor %[t], %[a3], %[a3], asr #31\n\t"                                                           \
                     "sub %[t], %[t], %[a3], asr #31\n\t"                                                            \
                     "orr %[s], %[s], %[t]\n\t"                                                                      \
                     "ldrd %[t], %[p], %[kl]\n\t" /* lim, seen */                                                    \
                     "orr %[p], %[p], %[s]\n\t"                                                                      \
                     "str %[p], %[ks]\n\t"                                                                           \
                     "cmp %[s], %[t]\n\t"                                                                            \
                     "bhs 9f\n\t"                                                                                    \
                     /* ssat((a + rnd) >> e, 16), both pixels' pairs packed and raised to -32767 */                  \
                     "ldr %[p], %[km]\n\t" /* mult */                                                                \
                     "smmulr %[a0], %[a0], %[p]\n\t"                                                                 \
                     "smmulr %[a1], %[a1], %[p]\n\t"                                                                 \
                     "smmulr %[a2], %[a2], %[p]\n\t"                                                                 \
                     "smmulr %[a3], %[a3], %[p]\n\t"                                                                 \
                     "ssat %[a0], #16, %[a0]\n\t"                                                                    \
                     "ssat %[a1], #16, %[a1]\n\t"                                                                    \
                     "ssat %[a2], #16, %[a2]\n\t"                                                                    \
                     "ssat %[a3], #16, %[a3]\n\t"                                                                    \
                     "pkhbt %[a0], %[a0], %[a2], lsl #16\n\t"                                                        \
                     "pkhbt %[a1], %[a1], %[a3], lsl #16\n\t"                                                        \
                     "ldrd %[s], %[t], %[kn]\n\t" /* n, m */                                                         \
                     "ssub16 %[p], %[a0], %[t]\n\t"                                                                  \
                     "sel %[a0], %[a0], %[t]\n\t"                                                                    \
                     "ssub16 %[p], %[a1], %[t]\n\t"                                                                  \
                     "sel %[a1], %[a1], %[t]\n\t"                                                                    \
                     "ldrd %[t], %[p], %[kd]\n\t" /* d, db */                                                        \
                     store                                                                                           \
                     "str %[t], %[kd]\n\t"                                                                           \
                     "subs %[s], %[s], #1\n\t"                                                                       \
                     "str %[s], %[kn]\n\t"                                                                           \
                     "bne 1b\n\t"                                                                                    \
                     "9:"                                                                                            \
                     : [p] "=&r"(p), [q] "=&r"(q), [u] "=&r"(u), [v] "=&r"(vv), [s] "=&r"(s), [t] "=&r"(t),          \
                       [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [w] "+r"(w), [g0] "+r"(g0),   \
                       [g1] "+r"(g1), [ks] "+m"(K->seen), [kd] "+m"(K->d), [kn] "+m"(K->n)                           \
                     : [kw] "m"(K->wend), [kl] "m"(K->lim), [km] "m"(K->mult), [kdd] "m"(K->dd), "m"(*K)                \
                     : "cc", "memory")

static uint32_t ig_tiles_asm(ig_k *K, const uint32_t *w, const uint32_t *g0, int32_t *v) {
    const uint32_t n0 = K->n;
    const uint32_t *g1 = g0 + K->rowb / 4u;
    uint32_t p, q, u, vv, s, t;
    int32_t a0, a1, a2, a3;
    if (K->dd) { /* a perm */
        IG_TILES_ASM(IG_4CP_FIRST, IG_4CP, IG_STORE_PERM);
    } else if (K->n8) { /* 8 channel pairs a loop */
        IG_TILES_ASM(IG_4CP_FIRST IG_4CP, IG_4CP IG_4CP, IG_STORE_PAIRS);
    } else {
        IG_TILES_ASM(IG_4CP_FIRST, IG_4CP, IG_STORE_PAIRS);
    }
    v[0] = a0;
    v[1] = a1;
    v[2] = a2;
    v[3] = a3;
    return n0 - K->n;
}
#endif

/* Tiles of input channels j, j1 (j1 == j: cin odd, the last one alone):
   pixels p, p + 1 (the last alone when npix is odd). */
static void ig_pair(const uint32_t *wp, const int16_t *g, int16_t *dx, uint32_t j, uint32_t j1, uint32_t cin,
                    uint32_t cout, uint32_t npix, const uint16_t *perm, tt_g16_run *r, int sum32) {
    const uint32_t npair = cout / 2u, dj = perm ? perm[j] : j, dj1 = perm ? perm[j1] : j1;
    const int pairs = !perm && j1 == j + 1u; /* dx[dj], dx[dj1] adjacent: one word store */
    /* tt_g16_run_check with r->lim as 32 bits (the int32 sums' magnitudes
       are below 2^31) and r->seen's share kept here */
    uint32_t lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim, seen = 0;
    uint32_t p = 0;
#if TT_DSP
    if ((pairs || (perm && j1 != j)) && sum32 && npair % 4u == 0u && npair) {
        const int32_t dje = (int32_t)dj1 - (int32_t)dj; /* a perm: channel j1's slot from j's */
        ig_k K;
        K.wend = wp + 2u * npair;
        K.rowb = 2u * cout;
        K.seen = 0;
        K.d = dx + dj;
        K.db = 2u * cin;
        K.m = 0x80018001u;
        K.n8 = npair % 8u == 0u;
        K.dd = pairs ? 0u : (uint32_t)(2 * dje);
        for (;;) {
            const uint32_t left = r->stop - r->tile, pp = (npix - p) / 2u;
            int32_t v[4];
            uint32_t done;
            K.n = pp < left ? pp : left;
            if (!K.n || r->e < 2u) { /* a shift below 2 (sums below 2^16 so far): the loop below */
                break;
            }
            K.lim = lim;
            K.e = r->e;
            K.mult = (int32_t)(1u << (32u - r->e));
            done = ig_tiles_asm(&K, wp, (const uint32_t *)(const void *)(g + p * cout), v);
            p += 2u * done;
            r->tile += done;
            if (K.n) { /* this tile raises e: as below */
                const uint32_t m32 = (uint32_t)(v[0] < 0 ? -v[0] : v[0]) | (uint32_t)(v[1] < 0 ? -v[1] : v[1]) |
                                     (uint32_t)(v[2] < 0 ? -v[2] : v[2]) | (uint32_t)(v[3] < 0 ? -v[3] : v[3]);
                tt_g16_run_check(r, m32);
                lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim;
                if (pairs) {
                    tt_g16_store2(K.d, v[0], v[2], r->e);
                    tt_g16_store2(K.d + cin, v[1], v[3], r->e);
                } else {
                    K.d[0] = tt_g16_run_val32(v[0], r->e);
                    K.d[cin] = tt_g16_run_val32(v[1], r->e);
                    K.d[dje] = tt_g16_run_val32(v[2], r->e);
                    K.d[(int32_t)cin + dje] = tt_g16_run_val32(v[3], r->e);
                }
                K.d += 2u * cin;
                p += 2u;
                r->tile++;
            }
        }
        seen = K.seen;
    }
#endif
    for (; p < npix && r->tile < r->stop; p += 2u, r->tile++) {
        const uint32_t p1 = p + 1u < npix ? p + 1u : p;
        const uint32_t *g0 = (const uint32_t *)(const void *)(g + p * cout); /* cout even, 4-byte aligned */
        const uint32_t *g1 = (const uint32_t *)(const void *)(g + p1 * cout);
        int32_t v[4];
        uint64_t m;
        if (sum32) {
            uint32_t m32;
            v[0] = v[1] = v[2] = v[3] = 0;
            ig_2x2(wp, g0, g1, npair, v);
            m32 = (uint32_t)(v[0] < 0 ? -v[0] : v[0]) | (uint32_t)(v[1] < 0 ? -v[1] : v[1]) |
                  (uint32_t)(v[2] < 0 ? -v[2] : v[2]) | (uint32_t)(v[3] < 0 ? -v[3] : v[3]);
            seen |= m32;
            if (m32 >= lim) {
                tt_g16_run_check(r, m32);
                lim = r->lim > 0xFFFFFFFFu ? 0xFFFFFFFFu : (uint32_t)r->lim;
            }
            if (pairs) {
                tt_g16_store2(dx + p * cin + dj, v[0], v[2], r->e);
                tt_g16_store2(dx + p1 * cin + dj, v[1], v[3], r->e);
            } else {
                dx[p * cin + dj] = tt_g16_run_val32(v[0], r->e);
                dx[p1 * cin + dj] = tt_g16_run_val32(v[1], r->e);
                dx[p * cin + dj1] = tt_g16_run_val32(v[2], r->e);
                dx[p1 * cin + dj1] = tt_g16_run_val32(v[3], r->e);
            }
        } else {
            int64_t s[4] = {0, 0, 0, 0};
            for (uint32_t c0 = 0; c0 < npair; c0 += PW_IG_BLOCK) {
                const uint32_t nb = npair - c0 < PW_IG_BLOCK ? npair - c0 : PW_IG_BLOCK;
                v[0] = v[1] = v[2] = v[3] = 0;
                ig_2x2(wp + 2u * c0, g0 + c0, g1 + c0, nb, v);
                for (uint32_t i = 0; i < 4u; i++) {
                    s[i] += v[i];
                }
            }
            m = tt_abs64(s[0]) | tt_abs64(s[1]) | tt_abs64(s[2]) | tt_abs64(s[3]);
            tt_g16_run_check(r, m);
            dx[p * cin + dj] = tt_g16_run_val64(s[0], r->e);
            dx[p1 * cin + dj] = tt_g16_run_val64(s[1], r->e);
            dx[p * cin + dj1] = tt_g16_run_val64(s[2], r->e);
            dx[p1 * cin + dj1] = tt_g16_run_val64(s[3], r->e);
        }
    }
    r->seen |= seen;
}

/* The one-pass run redoes every tile stored before the shift's last
   raise (tt_g16_run). Layers of many pixels first take the sums of one
   pixel, the one of the largest sum of squared gradients, at every input
   channel: their largest magnitude starts the run's shift, so a later
   raise (a tile above all of that pixel's) is rare. Those sums are among
   the kernel's own, so the final shift is the same. */
#define PW_IG_FIRST_MIN_PIX 32u

/* OR of |sum_c gp[c] w[c ws + j]| over j in [j0, j1): int32 sums over
   blocks of 256 channels (|each| < 2^31), int64 across them. */
static uint64_t pw_ig_pixel_or(const int16_t *gp, const int8_t *w, uint32_t ws, uint32_t j0, uint32_t j1,
                               uint32_t cout) {
    uint64_t m = 0;
    uint32_t j = j0;
    for (; j + 4u <= j1; j += 4u) {
        int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (uint32_t c0 = 0; c0 < cout; c0 += 256u) {
            const uint32_t c1 = cout - c0 < 256u ? cout : c0 + 256u;
            const int8_t *wp = w + c0 * ws + j;
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            for (uint32_t c = c0; c < c1; c++, wp += ws) {
                const uint32_t v = tt_ld32(wp);
                const int32_t gv = gp[c];
#if TT_DSP
                const uint32_t v02 = (uint32_t)__sxtb16(v), v13 = tt_sxtb16_hi(v);
                a0 = __smlabb((int32_t)v02, gv, a0);
                a2 = __smlatb((int32_t)v02, gv, a2);
                a1 = __smlabb((int32_t)v13, gv, a1);
                a3 = __smlatb((int32_t)v13, gv, a3);
#else
                a0 += gv * (int8_t)(v & 0xFFu);
                a1 += gv * (int8_t)((v >> 8) & 0xFFu);
                a2 += gv * (int8_t)((v >> 16) & 0xFFu);
                a3 += gv * (int8_t)(v >> 24);
#endif
            }
            s0 += a0;
            s1 += a1;
            s2 += a2;
            s3 += a3;
        }
        m |= tt_abs64(s0) | tt_abs64(s1) | tt_abs64(s2) | tt_abs64(s3);
    }
    for (; j < j1; j++) {
        int64_t a = 0;
        for (uint32_t c = 0; c < cout; c++) {
            a += (int64_t)gp[c] * w[c * ws + j];
        }
        m |= tt_abs64(a);
    }
    return m;
}

static TT_NOINLINE void pw_ig_first_shift(const int16_t *g, const int8_t *wt, const int8_t *wf, uint32_t nt, uint32_t cin,
                              uint32_t cout, uint32_t npix, tt_g16_run *r) {
    uint64_t best = 0, m;
    uint32_t pbest = 0;
    for (uint32_t p = 0; p < npix; p++) {
        const int16_t *gp = g + p * cout;
        uint64_t q = 0;
        uint32_t c = 0;
#if TT_DSP /* cout even, g 4-byte aligned (the caller's) */
        int64_t a = 0;
        for (; c + 2u <= cout; c += 2u) {
            const int32_t v = (int32_t)tt_ld32(gp + c);
            a = __smlald(v, v, a);
        }
        q = (uint64_t)a;
#endif
        for (; c < cout; c++) {
            q += (uint64_t)((int32_t)gp[c] * gp[c]);
        }
        if (q > best) {
            best = q;
            pbest = p;
        }
    }
    if (!best) {
        return;
    }
    m = pw_ig_pixel_or(g + pbest * cout, wt, nt, 0u, nt, cout) |
        pw_ig_pixel_or(g + pbest * cout, wf, cin, nt, cin, cout);
    if (m >= r->lim) {
        tt_g16_run_check(r, m);
    }
}

static TT_NOINLINE int pw_ig_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r);

/* The first run's starting shift from this small frame (not nested in the
   tiles' buffer), then the tiles. */
int tt_pointwise_input_grad_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    const tt_model *m = &t->model;
    const uint32_t cout = tt_tensor(m, L->out)->c, npix = (uint32_t)tt_tensor(m, L->out)->h * tt_tensor(m, L->out)->w;
    if (cout % 2u || cout > PW_IG_MAX_COUT) {
        return 0;
    }
    if (r->tile == 0u && r->stop == 0xFFFFFFFFu && npix >= PW_IG_FIRST_MIN_PIX) { /* the first run */
        pw_ig_first_shift(g, L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL, tt_weights_frozen(m, L),
                          L->n_train, tt_tensor(m, L->in)->c, cout, npix, r);
    }
    return pw_ig_run(t, L, g, r);
}

static TT_NOINLINE int pw_ig_run(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_run *r) {
    uint32_t wp[PW_IG_MAX_COUT]; /* cout / 2 pairs x 2 input channels */
    const tt_model *m = &t->model;
    const tt_tensor_rec *in = tt_tensor(m, L->in), *out = tt_tensor(m, L->out);
    const int8_t *wf = tt_weights_frozen(m, L);
    const int8_t *wt = L->n_train ? TT_ARENA(t, int8_t, L->w_arena) : NULL;
    const uint16_t *perm = tt_perm_of(m, L);
    const uint32_t cin = in->c, cout = out->c, nt = L->n_train, npix = (uint32_t)out->h * out->w;
    const uint32_t npair = cout / 2u;
    for (uint32_t j = 0; j < cin && r->tile < r->stop; j += 2u) {
        const uint32_t j1 = j + 1u < cin ? j + 1u : j; /* odd cin: the last one twice */
        /* the reference reads positions j < n_train from the trained copy */
        const int8_t *pa = j < nt ? wt + j : wf + j, *pb = j1 < nt ? wt + j1 : wf + j1;
        const uint32_t sa = j < nt ? nt : cin, sb = j1 < nt ? nt : cin;
        uint32_t cp = 0;
        /* the sums in int32: up to PW_IG_BLOCK channel pairs, or when the
           weights of channels j, j1 have sum |w| <= 65535 (|sum| <= 32767 65535) */
        int sum32 = npair <= PW_IG_BLOCK;
#if TT_DSP
        if (pb == pa + 1 && sb == sa) { /* bytes (w[c][j], w[c][j+1], w[c+1][j], w[c+1][j+1]): SXTB16 */
            /* 9 instructions a channel pair (GCC: 12); beyond PW_IG_BLOCK
               pairs 11, with sum |w| (USADA8 of the bytes + 128 and 128);
               npair >= 1 */
            const uint32_t s2 = 2u * sa, m80 = 0x80808080u;
            uint32_t *d = wp, *dend = wp + 2u * npair, lo, hi, t, wsum = 0;
            if (sum32) {
                __asm__ volatile("1:\n\t"
                                 "ldrh %[hi], [%[pa], %[sa]]\n\t"
                                 "ldrh %[lo], [%[pa]]\n\t"
                                 "add %[pa], %[pa], %[s2]\n\t"
                                 "orr %[lo], %[lo], %[hi], lsl #16\n\t"
                                 "sxtb16 %[hi], %[lo], ror #8\n\t"
                                 "sxtb16 %[lo], %[lo]\n\t"
                                 "strd %[lo], %[hi], [%[d]], #8\n\t"
                                 "cmp %[d], %[dend]\n\t"
                                 "bne 1b"
                                 : [lo] "=&r"(lo), [hi] "=&r"(hi), [pa] "+r"(pa), [d] "+r"(d)
                                 : [sa] "r"(sa), [s2] "r"(s2), [dend] "r"(dend)
                                 : "cc", "memory");
            } else {
                __asm__ volatile("1:\n\t"
                                 "ldrh %[hi], [%[pa], %[sa]]\n\t"
                                 "ldrh %[lo], [%[pa]]\n\t"
                                 "add %[pa], %[pa], %[s2]\n\t"
                                 "orr %[lo], %[lo], %[hi], lsl #16\n\t"
                                 "eor %[t], %[lo], %[m80]\n\t"
                                 "usada8 %[ws], %[t], %[m80], %[ws]\n\t"
                                 "sxtb16 %[hi], %[lo], ror #8\n\t"
                                 "sxtb16 %[lo], %[lo]\n\t"
                                 "strd %[lo], %[hi], [%[d]], #8\n\t"
                                 "cmp %[d], %[dend]\n\t"
                                 "bne 1b"
                                 : [lo] "=&r"(lo), [hi] "=&r"(hi), [t] "=&r"(t), [pa] "+r"(pa), [d] "+r"(d),
                                   [ws] "+r"(wsum)
                                 : [sa] "r"(sa), [s2] "r"(s2), [dend] "r"(dend), [m80] "r"(m80)
                                 : "cc", "memory");
                sum32 = wsum <= 65535u;
            }
            cp = npair;
        }
#endif
        for (; cp < npair; cp++, pa += 2u * sa, pb += 2u * sb) {
            wp[2u * cp] = pack16(pa[0], pa[sa]);
            wp[2u * cp + 1u] = pack16(pb[0], pb[sb]);
        }
        ig_pair(wp, g, r->dx, j, j1, cin, cout, npix, perm, r, sum32);
    }
    return 1;
}

void tt_pointwise_input_grad_opt(tt_trainer *t, const tt_layer_rec *L, const int16_t *g, tt_g16_sink *dx) {
    pw_input_grad(t, L, g, dx);
}

#else
typedef int tt_pointwise_grad_opt_unused; /* ISO C: a translation unit is not empty */
#endif
