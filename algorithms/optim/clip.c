/* clip.c - global gradient-norm clipping as torch.nn.utils.clip_grad_norm_. */
#include "optim.h"

#include <math.h>

double lt_clip_grad_norm(lt_params *p, double max_norm) {
    if (!p->allocated || p->trainable_numel == 0) return 0.0;
    const float *g = p->grad; // (trainable_numel)
    const int64_t n = p->trainable_numel;
    double ss = 0.0;
#pragma omp parallel for simd reduction(+ : ss) schedule(static)
    for (int64_t i = 0; i < n; i++)
        ss += (double)g[i] * (double)g[i];
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
