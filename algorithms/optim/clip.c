/* clip.c - global gradient-norm clipping as torch.nn.utils.clip_grad_norm_. */
#include "optim.h"

#include <math.h>
#include <omp.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

/* sum of g[i]^2 over n values, in double. With AVX2 four independent vector sums: one sum is a chain of
 * 4-cycle additions that holds the loop to a value per cycle, slower than memory delivers them. */
static double sum_squares(const float *g, int64_t n) {
    double ss = 0.0;
    int64_t i = 0;
#if defined(__AVX2__) && defined(__FMA__)
    __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 4; k++) {
            const __m256d v = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 4 * k));
            acc[k] = _mm256_fmadd_pd(v, v, acc[k]);
        }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
    ss = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; i < n; i++)
        ss += (double)g[i] * (double)g[i];
    return ss;
}

double lt_clip_grad_norm(lt_params *p, double max_norm) {
    if (!p->allocated || p->trainable_numel == 0) return 0.0;
    const float *g = p->grad; // (trainable_numel)
    const int64_t n = p->trainable_numel;
    double ss = 0.0;
#pragma omp parallel reduction(+ : ss)
    {
        const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t lo = n * t / nt / 16 * 16, hi = t == nt - 1 ? n : n * (t + 1) / nt / 16 * 16;
        ss += sum_squares(g + lo, hi - lo);
    }
    double norm = sqrt(ss);
    if (!isfinite(norm) || !(max_norm > 0.0)) return norm; /* the caller decides what a NaN/inf step means */
    /* torch multiplies by min(1, coef) unconditionally; coef < 1 already when norm > max_norm - 1e-6 */
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float c = (float)coef;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; i++)
            p->grad[i] *= c;
    }
    return norm;
}

float lt_clip_coef(double norm, double max_norm) {
    if (!isfinite(norm) || !(max_norm > 0.0)) return 1.0f;
    double coef = max_norm / (norm + 1e-6);
    return coef < 1.0 ? (float)coef : 1.0f;
}
