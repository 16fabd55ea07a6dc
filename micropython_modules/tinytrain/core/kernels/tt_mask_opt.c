/*
 * Clamp mask, optimised (selected by TT_OPTIMIZED): a byte of the mask at a
 * time, skipping full bytes; with the DSP extension a byte's values as 4
 * words ANDed with lane masks. Same result as tt_mask.c.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

#if TT_DSP
/* Two mask bits as the lanes they keep of a word of two int16 values. */
static const uint32_t tt_mask_lanes[4] = {0u, 0xFFFFu, 0xFFFF0000u, 0xFFFFFFFFu};
#endif

int tt_apply_mask_opt(int16_t *g, const uint8_t *mask, uint32_t n) {
#if TT_HOST_SIMD
    if (tt_host_apply_mask(g, mask, n)) {
        return 1;
    }
#endif
    uint32_t i = 0;
#if TT_DSP_ASM_WIDE
    if (n >= 8u && ((uintptr_t)g & 3u) == 0u) { /* a mask byte's 8 values: LDM/STM of 4 words, 3 instructions a word */
        const uint8_t *mp = mask, *mend = mask + n / 8u;
        /* LDM/STM fill registers in number order: the four words' are fixed */
        register uint32_t w0 __asm__("r4"), w1 __asm__("r5"), w2 __asm__("r6"), w3 __asm__("r8");
        uint32_t b, t;
        int16_t *gp = g;
        __asm__ volatile("1:\n\t"
                         "ldrb %[b], [%[mp]], #1\n\t"
                         "cmp %[b], #255\n\t"
                         "beq 2f\n\t"
                         "ldm %[gp], {%[w0], %[w1], %[w2], %[w3]}\n\t"
                         "and %[t], %[b], #3\n\t"
                         "ldr %[t], [%[tab], %[t], lsl #2]\n\t"
                         "and %[w0], %[w0], %[t]\n\t"
                         "ubfx %[t], %[b], #2, #2\n\t"
                         "ldr %[t], [%[tab], %[t], lsl #2]\n\t"
                         "and %[w1], %[w1], %[t]\n\t"
                         "ubfx %[t], %[b], #4, #2\n\t"
                         "ldr %[t], [%[tab], %[t], lsl #2]\n\t"
                         "and %[w2], %[w2], %[t]\n\t"
                         "lsr %[t], %[b], #6\n\t"
                         "ldr %[t], [%[tab], %[t], lsl #2]\n\t"
                         "and %[w3], %[w3], %[t]\n\t"
                         "stm %[gp], {%[w0], %[w1], %[w2], %[w3]}\n\t"
                         "2:\n\t"
                         "add %[gp], %[gp], #16\n\t"
                         "cmp %[mp], %[mend]\n\t"
                         "bne 1b"
                         : [b] "=&r"(b), [t] "=&r"(t), [w0] "=&r"(w0), [w1] "=&r"(w1), [w2] "=&r"(w2), [w3] "=&r"(w3),
                           [mp] "+&r"(mp), [gp] "+&r"(gp)
                         : [mend] "r"(mend), [tab] "r"(tt_mask_lanes)
                         : "cc", "memory");
        i = n & ~7u;
    }
#endif
    for (; i + 8u <= n; i += 8u) {
        const uint32_t b = mask[i >> 3];
        if (b != 0xFFu) {
#if TT_DSP /* the byte's 8 values as 4 words, each ANDed with its 2 bits' lanes */
            uint32_t w[4];
            memcpy(w, g + i, sizeof(w));
            w[0] &= tt_mask_lanes[b & 3u];
            w[1] &= tt_mask_lanes[(b >> 2) & 3u];
            w[2] &= tt_mask_lanes[(b >> 4) & 3u];
            w[3] &= tt_mask_lanes[b >> 6];
            memcpy(g + i, w, sizeof(w));
            continue;
#endif
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

#else
typedef int tt_mask_opt_unused; /* ISO C: a translation unit is not empty */
#endif
