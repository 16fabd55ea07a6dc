/*
 * Clamp mask of the host simulator (TT_HOST_SIMD, AVX2; see
 * tt_host_simd.h): 16 gradient values a step, as tt_mask_opt.c's.
 * Same result as tt_mask.c.
 */
#include "tt_host_simd.h"

#if TT_OPTIMIZED && TT_HOST_SIMD

/* ---- clamp mask on an output gradient: 16 values a step ---- */

static HS_TARGET void hs_mask_run(int16_t *g, const uint8_t *mask, uint32_t n) {
    const __m256i bit = _mm256_setr_epi16(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
                                          (int16_t)0x4000, (int16_t)0x8000);
    uint32_t i = 0;
    for (; i + 16u <= n; i += 16u) {
        uint16_t b;
        memcpy(&b, mask + (i >> 3), 2);
        if (b != 0xFFFFu) {
            const __m256i keep = _mm256_cmpeq_epi16(_mm256_and_si256(_mm256_set1_epi16((int16_t)b), bit), bit);
            __m256i *p = (__m256i *)(void *)(g + i);
            _mm256_storeu_si256(p, _mm256_and_si256(_mm256_loadu_si256(p), keep));
        }
    }
    for (; i < n; i++) {
        if (!((mask[i >> 3] >> (i & 7u)) & 1u)) {
            g[i] = 0;
        }
    }
}

int tt_host_apply_mask(int16_t *g, const uint8_t *mask, uint32_t n) {
    if (!hs_avx2()) {
        return 0;
    }
    hs_mask_run(g, mask, n);
    return 1;
}

#else
typedef int tt_mask_host_unused; /* ISO C: a translation unit is not empty */
#endif
