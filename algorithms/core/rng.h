/* rng.h - a small deterministic random generator (PCG32) for weight init, dropout and shuffling.
 * The same seed gives the same stream on every machine; it does not reproduce PyTorch's bit stream,
 * only its distributions. */
#ifndef LT_RNG_H
#define LT_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t state; /* PCG32 state */
    uint64_t inc;   /* PCG32 stream selector, always odd */
} lt_rng;

void lt_rng_seed(lt_rng *r, uint64_t seed, uint64_t stream);
uint32_t lt_rng_u32(lt_rng *r);
/* Uniform in [0, 1). */
float lt_rng_uniform(lt_rng *r);
/* Standard normal (Box-Muller). */
float lt_rng_normal(lt_rng *r);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t lt_rng_below(lt_rng *r, uint32_t n);
/* Fisher-Yates shuffle of idx[0..n-1]. */
void lt_rng_shuffle(lt_rng *r, int64_t *idx, int64_t n);

#endif
