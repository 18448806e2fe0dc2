#include "rng.h"

#include <math.h>

void lt_rng_seed(lt_rng *r, uint64_t seed, uint64_t stream) {
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    lt_rng_u32(r);
    r->state += seed;
    lt_rng_u32(r);
}

uint32_t lt_rng_u32(lt_rng *r) {
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

float lt_rng_uniform(lt_rng *r) {
    return (float)(lt_rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

float lt_rng_normal(lt_rng *r) {
    /* u1 in (0, 1] so log() stays finite */
    double u1 = ((double)lt_rng_u32(r) + 1.0) / 4294967296.0;
    double u2 = (double)lt_rng_u32(r) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint32_t lt_rng_below(lt_rng *r, uint32_t n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    for (;;) {
        uint32_t x = lt_rng_u32(r);
        if (x >= threshold) return x % n;
    }
}

void lt_rng_shuffle(lt_rng *r, int64_t *idx, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)lt_rng_below(r, (uint32_t)(i + 1));
        int64_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}
