/*
 * Clamp mask on an output gradient, reference version: the gradient of a
 * clamped activation is 0 (the forward kernels wrote a bit per element,
 * 1 where the value was inside the clamp range).
 */
#include "tt_kernels.h"

void tt_apply_mask_ref(int16_t *g, const uint8_t *mask, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (!((mask[i >> 3] >> (i & 7u)) & 1u)) {
            g[i] = 0;
        }
    }
}
