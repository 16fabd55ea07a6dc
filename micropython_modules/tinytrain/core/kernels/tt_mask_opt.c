/*
 * Clamp mask, optimised (selected by TT_OPTIMIZED): a byte of the mask at a
 * time, skipping full bytes. Same result as tt_mask.c.
 */
#include "tt_opt.h"

#if TT_OPTIMIZED

int tt_apply_mask_opt(int16_t *g, const uint8_t *mask, uint32_t n) {
#if TT_HOST_SIMD
    if (tt_host_apply_mask(g, mask, n)) {
        return 1;
    }
#endif
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

#else
typedef int tt_mask_opt_unused; /* ISO C: a translation unit is not empty */
#endif
