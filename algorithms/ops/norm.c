/* norm.c - batch normalization (train / eval / frozen) and layer normalization.
 *
 * Statistics are accumulated in double with two passes (mean, then squared deviations), so inputs with a
 * large offset (e.g. pixel values around 100) keep full float precision in the variance. Reductions are
 * split over channels (or channel blocks), never over rows, so results do not depend on the thread count.
 * The batch-norm loops carry `omp simd`: without it GCC's -O2 cost model left them scalar (a double sum is
 * then one 4-cycle dependency chain per element). */
#include "ops.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* below this many elements a loop runs on one thread: forking costs more than it saves */
#define NORM_PAR_MIN 32768
/* channels reduced together in the layernorm weight/bias gradient (one block per thread at a time) */
#define LN_BLOCK 32

/* ---- batchnorm kernels ---- */

/* Batch statistics of x (N, C, HW) per channel, as BatchNorm2d in training: mean (C) and rstd (C) =
 * 1/sqrt(biased var + eps) for normalizing; running_mean/running_var (C, either may be NULL) move toward
 * the mean and the *unbiased* variance var * n/(n-1). With n == 1 (one value per channel) PyTorch refuses
 * to train; here the variance is 0, the output equals the bias and the running variance uses the biased
 * value 0, so everything stays finite. */
static void batchnorm_batch_stats(float *mean, float *rstd, float *running_mean, float *running_var,
                                  const float *x, int64_t N, int64_t C, int64_t HW, float momentum,
                                  float eps) {
    const int64_t n = N * HW;
#pragma omp parallel for if (N * C * HW > NORM_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        double s = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + (b * C + c) * HW; // (HW)
#pragma omp simd reduction(+ : s)
            for (int64_t i = 0; i < HW; i++)
                s += xp[i];
        }
        const double m = s / (double)n;
        double ss = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + (b * C + c) * HW; // (HW)
#pragma omp simd reduction(+ : ss)
            for (int64_t i = 0; i < HW; i++) {
                double d = xp[i] - m;
                ss += d * d;
            }
        }
        const double var = ss / (double)n;
        mean[c] = (float)m;
        rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
        const double unbiased = n > 1 ? ss / (double)(n - 1) : var;
        if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
        if (running_var) running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
}

/* rstd (C) = 1/sqrt(running_var + eps) for eval mode; mean is the running mean itself. */
static void batchnorm_running_rstd(float *mean, float *rstd, const float *running_mean,
                                   const float *running_var, int64_t C, float eps) {
    for (int64_t c = 0; c < C; c++) {
        mean[c] = running_mean[c];
        rstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
    }
}

/* out = (x - mean) * rstd * weight + bias, folded per channel into out = x * alpha + beta as PyTorch's CPU
 * kernel does, then + res when res is non-NULL, then max(out, 0) when relu. x, out, res (N, C, HW);
 * weight, bias (C) or NULL (affine=False). */
static void batchnorm_forward(float *out, const float *x, const float *res, const float *weight,
                              const float *bias, const float *mean, const float *rstd, int64_t N, int64_t C,
                              int64_t HW, int relu) {
#pragma omp parallel for if (N * C * HW > NORM_PAR_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        const float alpha = rstd[c] * (weight ? weight[c] : 1.0f);
        const float beta = (bias ? bias[c] : 0.0f) - mean[c] * alpha;
        const float *xp = x + p * HW;                // (HW)
        float *op = out + p * HW;                    // (HW)
        const float *rp = res ? res + p * HW : NULL; // (HW)
        if (rp && relu) {
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) {
                float v = (xp[i] * alpha + beta) + rp[i];
                op[i] = v > 0.0f ? v : 0.0f;
            }
        } else if (rp) {
#pragma omp simd
            for (int64_t i = 0; i < HW; i++)
                op[i] = (xp[i] * alpha + beta) + rp[i];
        } else if (relu) {
#pragma omp simd
            for (int64_t i = 0; i < HW; i++) {
                float v = xp[i] * alpha + beta;
                op[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
#pragma omp simd
            for (int64_t i = 0; i < HW; i++)
                op[i] = xp[i] * alpha + beta;
        }
    }
}

/* The ReLU's gradient: g where out > 0, else +0.0 (as relu_backward, even for a NaN g). Written as a bit
 * mask because GCC does not vectorize a reduction over a `?:` of loaded values. */
static inline float relu_grad(float g, float out) {
    uint32_t u, keep = out > 0.0f ? 0xffffffffu : 0u;
    memcpy(&u, &g, sizeof u);
    u &= keep;
    memcpy(&g, &u, sizeof g);
    return g;
}

/* Backward of batchnorm_forward. With batch statistics (train mode) mean and rstd depend on x, giving
 * dx = weight * rstd * (dout - mean(dout) - xhat * mean(dout * xhat)) per channel; with running statistics
 * (eval mode) dx = weight * rstd * dout. dweight += sum(dout * xhat), dbias += sum(dout).
 * dx (N, C, HW), dweight, dbias (C), each may be NULL; x is read only when dx (in train mode) or dweight is
 * wanted, weight (C, or NULL meaning 1) only for dx. out (N, C, HW) is the forward's output when it applied
 * a ReLU (dout is then masked by out > 0 on the fly, which saves the ReLU's own pass and buffer), else NULL.
 * dres (N, C, HW) or NULL receives the gradient of a residual the forward added: the (masked) dout. */
static void batchnorm_backward(float *dx, float *dres, float *dweight, float *dbias, const float *dout,
                               const float *out, const float *x, const float *weight, const float *mean,
                               const float *rstd, int batch_stats, int64_t N, int64_t C, int64_t HW) {
    const int64_t n = N * HW;
    const int need_xhat_sum = dweight || (dx && batch_stats);
#pragma omp parallel for if (N * C * HW > NORM_PAR_MIN)
    for (int64_t c = 0; c < C; c++) {
        const float m = mean[c], r = rstd[c];
        double sum_dout = 0, sum_dout_xhat = 0;
        for (int64_t b = 0; b < N; b++) {
            const float *gp = dout + (b * C + c) * HW; // (HW)
            const float *yp = out ? out + (b * C + c) * HW : NULL;
            const float *xp = x ? x + (b * C + c) * HW : NULL;
            /* the ReLU's mask is tested outside the loops: a NULL check inside keeps them scalar */
            if (need_xhat_sum && yp) {
#pragma omp simd reduction(+ : sum_dout, sum_dout_xhat)
                for (int64_t i = 0; i < HW; i++) {
                    const float gi = relu_grad(gp[i], yp[i]);
                    sum_dout += gi;
                    sum_dout_xhat += (double)gi * (double)((xp[i] - m) * r);
                }
            } else if (need_xhat_sum) {
#pragma omp simd reduction(+ : sum_dout, sum_dout_xhat)
                for (int64_t i = 0; i < HW; i++) {
                    sum_dout += gp[i];
                    sum_dout_xhat += (double)gp[i] * (double)((xp[i] - m) * r);
                }
            } else if (yp) {
#pragma omp simd reduction(+ : sum_dout)
                for (int64_t i = 0; i < HW; i++)
                    sum_dout += relu_grad(gp[i], yp[i]);
            } else {
#pragma omp simd reduction(+ : sum_dout)
                for (int64_t i = 0; i < HW; i++)
                    sum_dout += gp[i];
            }
        }
        if (dbias) dbias[c] += (float)sum_dout;
        if (dweight) dweight[c] += (float)sum_dout_xhat;
        for (int64_t b = 0; dres && b < N; b++) {
            const float *gp = dout + (b * C + c) * HW; // (HW)
            const float *yp = out ? out + (b * C + c) * HW : NULL;
            float *rp = dres + (b * C + c) * HW; // (HW)
            if (yp) {
#pragma omp simd
                for (int64_t i = 0; i < HW; i++)
                    rp[i] += relu_grad(gp[i], yp[i]);
            } else {
#pragma omp simd
                for (int64_t i = 0; i < HW; i++)
                    rp[i] += gp[i];
            }
        }
        if (!dx) continue;
        const float k = r * (weight ? weight[c] : 1.0f);
        const float mean_dout = batch_stats ? (float)(sum_dout / (double)n) : 0.0f;
        const float mean_dout_xhat = batch_stats ? (float)(sum_dout_xhat / (double)n) : 0.0f;
        for (int64_t b = 0; b < N; b++) {
            const float *gp = dout + (b * C + c) * HW; // (HW)
            const float *yp = out ? out + (b * C + c) * HW : NULL;
            float *dp = dx + (b * C + c) * HW;                           // (HW)
            const float *xp = batch_stats ? x + (b * C + c) * HW : NULL; // (HW)
            if (batch_stats && yp) {
#pragma omp simd
                for (int64_t i = 0; i < HW; i++)
                    dp[i] += k * (relu_grad(gp[i], yp[i]) - mean_dout - (xp[i] - m) * r * mean_dout_xhat);
            } else if (batch_stats) {
#pragma omp simd
                for (int64_t i = 0; i < HW; i++)
                    dp[i] += k * (gp[i] - mean_dout - (xp[i] - m) * r * mean_dout_xhat);
            } else if (yp) {
#pragma omp simd
                for (int64_t i = 0; i < HW; i++)
                    dp[i] += k * relu_grad(gp[i], yp[i]);
            } else {
#pragma omp simd
                for (int64_t i = 0; i < HW; i++)
                    dp[i] += k * gp[i];
            }
        }
    }
}

/* ---- batchnorm kernels for small planes ----
 *
 * With a few pixels per plane (ResNet-50's last stages at a 28 x 28 input have 1 x 1 .. 4 x 4 planes) the
 * per-(image, channel) loops above spend their time entering loops of 1 to 16 elements: 0.5 ms for a
 * (16, 2048, 1, 1) tensor. These kernels run over whole image rows instead, j = c*HW + i being contiguous in
 * each image, with per-position partial sums (over images) and the per-channel values spread out per
 * position, so every loop is long and vectorizes. Each thread owns a range of channels, as above; the sums
 * are the same double sums taken in another order, and the elementwise results are bit-identical. */
#define BN_SMALL_HW 16

/* floats of scratch the small-plane kernels need for a (N, C, HW) input, 0 when they are not used */
static int64_t bn_small_scratch(int64_t C, int64_t HW) {
    return HW <= BN_SMALL_HW ? 9 * C * HW : 0;
}

/* channels [*c0, *c1) of C for thread t of nt */
static void channel_range(int64_t C, int t, int nt, int64_t *c0, int64_t *c1) {
    *c0 = C * t / nt;
    *c1 = C * (t + 1) / nt;
}

/* batchnorm_batch_stats for HW <= BN_SMALL_HW; scratch holds 4*C*HW floats */
static void batchnorm_batch_stats_small(float *mean, float *rstd, float *running_mean, float *running_var,
                                        const float *x, int64_t N, int64_t C, int64_t HW, float momentum,
                                        float eps, float *scratch) {
    const int64_t n = N * HW, row = C * HW;
    double *acc = (double *)scratch, *mexp = acc + row; // (C*HW), (C*HW)
#pragma omp parallel if (N * C * HW > NORM_PAR_MIN)
    {
        int64_t c0, c1;
        channel_range(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        const int64_t j0 = c0 * HW, j1 = c1 * HW;
        for (int64_t j = j0; j < j1; j++)
            acc[j] = 0.0;
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + b * row; // (C*HW)
#pragma omp simd
            for (int64_t j = j0; j < j1; j++)
                acc[j] += xp[j];
        }
        for (int64_t c = c0; c < c1; c++) {
            double s = 0.0;
            for (int64_t i = 0; i < HW; i++)
                s += acc[c * HW + i];
            const double m = s / (double)n;
            for (int64_t i = 0; i < HW; i++) {
                mexp[c * HW + i] = m;
                acc[c * HW + i] = 0.0;
            }
        }
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + b * row; // (C*HW)
#pragma omp simd
            for (int64_t j = j0; j < j1; j++) {
                const double d = xp[j] - mexp[j];
                acc[j] += d * d;
            }
        }
        for (int64_t c = c0; c < c1; c++) {
            double ss = 0.0;
            for (int64_t i = 0; i < HW; i++)
                ss += acc[c * HW + i];
            const double m = mexp[c * HW], var = ss / (double)n;
            mean[c] = (float)m;
            rstd[c] = (float)(1.0 / sqrt(var + (double)eps));
            const double unbiased = n > 1 ? ss / (double)(n - 1) : var;
            if (running_mean) running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * m);
            if (running_var)
                running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
    }
}

/* batchnorm_forward for HW <= BN_SMALL_HW; scratch holds 2*C*HW floats */
static void batchnorm_forward_small(float *out, const float *x, const float *res, const float *weight,
                                    const float *bias, const float *mean, const float *rstd, int64_t N,
                                    int64_t C, int64_t HW, int relu, float *scratch) {
    const int64_t row = C * HW;
    float *alpha = scratch, *beta = scratch + row; // (C*HW) each: the channel's values at every position
#pragma omp parallel if (N * C * HW > NORM_PAR_MIN)
    {
        int64_t c0, c1;
        channel_range(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        const int64_t j0 = c0 * HW, j1 = c1 * HW;
        for (int64_t c = c0; c < c1; c++) {
            const float a = rstd[c] * (weight ? weight[c] : 1.0f);
            const float bt = (bias ? bias[c] : 0.0f) - mean[c] * a;
            for (int64_t i = 0; i < HW; i++) {
                alpha[c * HW + i] = a;
                beta[c * HW + i] = bt;
            }
        }
        for (int64_t b = 0; b < N; b++) {
            const float *xp = x + b * row, *rp = res ? res + b * row : NULL; // (C*HW)
            float *op = out + b * row;                                       // (C*HW)
            if (rp && relu) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++) {
                    float v = (xp[j] * alpha[j] + beta[j]) + rp[j];
                    op[j] = v > 0.0f ? v : 0.0f;
                }
            } else if (rp) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    op[j] = (xp[j] * alpha[j] + beta[j]) + rp[j];
            } else if (relu) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++) {
                    float v = xp[j] * alpha[j] + beta[j];
                    op[j] = v > 0.0f ? v : 0.0f;
                }
            } else {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    op[j] = xp[j] * alpha[j] + beta[j];
            }
        }
    }
}

/* batchnorm_backward for HW <= BN_SMALL_HW; scratch holds 9*C*HW floats */
static void batchnorm_backward_small(float *dx, float *dres, float *dweight, float *dbias, const float *dout,
                                     const float *out, const float *x, const float *weight, const float *mean,
                                     const float *rstd, int batch_stats, int64_t N, int64_t C, int64_t HW,
                                     float *scratch) {
    const int64_t n = N * HW, row = C * HW;
    const int need_xhat_sum = dweight || (dx && batch_stats);
    double *sd = (double *)scratch, *sdx = sd + row;                  // (C*HW) each
    float *mj = (float *)(sdx + row), *rj = mj + row, *kj = rj + row; // (C*HW) each
    float *mdj = kj + row, *mdxj = mdj + row;                         // (C*HW) each
#pragma omp parallel if (N * C * HW > NORM_PAR_MIN)
    {
        int64_t c0, c1;
        channel_range(C, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        const int64_t j0 = c0 * HW, j1 = c1 * HW;
        for (int64_t c = c0; c < c1; c++)
            for (int64_t i = 0; i < HW; i++) {
                mj[c * HW + i] = mean[c];
                rj[c * HW + i] = rstd[c];
            }
        for (int64_t j = j0; j < j1; j++)
            sd[j] = sdx[j] = 0.0;
        for (int64_t b = 0; b < N; b++) {
            const float *gp = dout + b * row, *yp = out ? out + b * row : NULL; // (C*HW)
            const float *xp = x ? x + b * row : NULL;                           // (C*HW)
            if (need_xhat_sum && yp) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++) {
                    const float gi = relu_grad(gp[j], yp[j]);
                    sd[j] += gi;
                    sdx[j] += (double)gi * (double)((xp[j] - mj[j]) * rj[j]);
                }
            } else if (need_xhat_sum) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++) {
                    sd[j] += gp[j];
                    sdx[j] += (double)gp[j] * (double)((xp[j] - mj[j]) * rj[j]);
                }
            } else if (yp) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    sd[j] += relu_grad(gp[j], yp[j]);
            } else {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    sd[j] += gp[j];
            }
            if (dres && yp) {
                float *rp = dres + b * row; // (C*HW)
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    rp[j] += relu_grad(gp[j], yp[j]);
            } else if (dres) {
                float *rp = dres + b * row; // (C*HW)
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    rp[j] += gp[j];
            }
        }
        for (int64_t c = c0; c < c1; c++) {
            double sum_dout = 0.0, sum_dout_xhat = 0.0;
            for (int64_t i = 0; i < HW; i++) {
                sum_dout += sd[c * HW + i];
                sum_dout_xhat += sdx[c * HW + i];
            }
            if (dbias) dbias[c] += (float)sum_dout;
            if (dweight) dweight[c] += (float)sum_dout_xhat;
            const float k = rstd[c] * (weight ? weight[c] : 1.0f);
            const float mean_dout = batch_stats ? (float)(sum_dout / (double)n) : 0.0f;
            const float mean_dout_xhat = batch_stats ? (float)(sum_dout_xhat / (double)n) : 0.0f;
            for (int64_t i = 0; i < HW; i++) {
                kj[c * HW + i] = k;
                mdj[c * HW + i] = mean_dout;
                mdxj[c * HW + i] = mean_dout_xhat;
            }
        }
        for (int64_t b = 0; dx && b < N; b++) {
            const float *gp = dout + b * row, *yp = out ? out + b * row : NULL; // (C*HW)
            const float *xp = batch_stats ? x + b * row : NULL;                 // (C*HW)
            float *dp = dx + b * row;                                           // (C*HW)
            if (batch_stats && yp) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    dp[j] += kj[j] * (relu_grad(gp[j], yp[j]) - mdj[j] - (xp[j] - mj[j]) * rj[j] * mdxj[j]);
            } else if (batch_stats) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    dp[j] += kj[j] * (gp[j] - mdj[j] - (xp[j] - mj[j]) * rj[j] * mdxj[j]);
            } else if (yp) {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    dp[j] += kj[j] * relu_grad(gp[j], yp[j]);
            } else {
#pragma omp simd
                for (int64_t j = j0; j < j1; j++)
                    dp[j] += kj[j] * gp[j];
            }
        }
    }
}

/* DETR's FrozenBatchNorm2d: scale = weight * rsqrt(running_var + eps), shift = bias - running_mean * scale,
 * out = x * scale + shift, computed in that order to match it bit for bit where possible.
 * scale (C) is saved for backward. */
static void batchnorm_frozen_forward(float *out, float *scale, const float *x, const float *res,
                                     const float *weight, const float *bias, const float *running_mean,
                                     const float *running_var, int64_t N, int64_t C, int64_t HW, float eps,
                                     int relu) {
    for (int64_t c = 0; c < C; c++)
        scale[c] = (weight ? weight[c] : 1.0f) * (1.0f / sqrtf(running_var[c] + eps));
#pragma omp parallel for if (N * C * HW > NORM_PAR_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const int64_t c = p % C;
        const float s = scale[c], shift = (bias ? bias[c] : 0.0f) - running_mean[c] * s;
        const float *xp = x + p * HW; // (HW)
        float *op = out + p * HW;     // (HW)
        for (int64_t i = 0; i < HW; i++)
            op[i] = xp[i] * s + shift;
        if (res)
            for (int64_t i = 0; i < HW; i++)
                op[i] += res[p * HW + i];
        if (relu)
            for (int64_t i = 0; i < HW; i++)
                op[i] = op[i] > 0.0f ? op[i] : 0.0f;
    }
}

/* backward of out = x * scale + shift (+ res): dx += dout * scale, dres += dout (dout masked by out > 0
 * when out is non-NULL, the forward having applied a ReLU). dx, dres may be NULL. */
static void batchnorm_frozen_backward(float *dx, float *dres, const float *dout, const float *out,
                                      const float *scale, int64_t N, int64_t C, int64_t HW) {
#pragma omp parallel for if (N * C * HW > NORM_PAR_MIN)
    for (int64_t p = 0; p < N * C; p++) {
        const float s = scale[p % C];
        const float *gp = dout + p * HW; // (HW)
        const float *yp = out ? out + p * HW : NULL;
        for (int64_t i = 0; i < HW; i++) {
            const float g = yp ? relu_grad(gp[i], yp[i]) : gp[i];
            if (dx) dx[p * HW + i] += g * s;
            if (dres) dres[p * HW + i] += g;
        }
    }
}

/* ---- batchnorm op ---- */

/* node: in = {x, weight, bias, running_mean, running_var} (weight, bias may be NULL), ip[0] = mode,
 * res (in[BN_RES], lt_batchnorm2d_fused only) or NULL, ip[1] = 1 when a ReLU follows (lt_batchnorm2d_fused),
 * fp[0] = momentum, fp[1] = eps.
 * saved: train/eval (2C) = mean, rstd; frozen (C) = scale. */
enum { BN_X, BN_W, BN_B, BN_RM, BN_RV, BN_RES };

static float *data_or_null(const lt_tensor *t) {
    return t ? t->data : NULL;
}
static float *grad_or_null(const lt_tensor *t) {
    return t ? t->grad : NULL;
}

static void bn_fw(lt_node *n, const lt_exec *ex) {
    const lt_tensor *x = n->in[BN_X];
    const int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    const lt_bn_mode mode = (lt_bn_mode)n->ip[0];
    float *w = data_or_null(n->in[BN_W]), *b = data_or_null(n->in[BN_B]);
    float *rm = data_or_null(n->in[BN_RM]), *rv = data_or_null(n->in[BN_RV]);
    const float *res = n->n_in > BN_RES ? data_or_null(n->in[BN_RES]) : NULL;
    if (mode == LT_BN_FROZEN) {
        batchnorm_frozen_forward(n->out->data, n->saved, x->data, res, w, b, rm, rv, N, C, HW, n->fp[1],
                                 (int)n->ip[1]);
        return;
    }
    float *mean = n->saved, *rstd = n->saved + C; // (C), (C)
    const int small = HW <= BN_SMALL_HW && ex->scratch_numel >= bn_small_scratch(C, HW);
    if (mode == LT_BN_TRAIN && small)
        batchnorm_batch_stats_small(mean, rstd, rm, rv, x->data, N, C, HW, n->fp[0], n->fp[1], ex->scratch);
    else if (mode == LT_BN_TRAIN)
        batchnorm_batch_stats(mean, rstd, rm, rv, x->data, N, C, HW, n->fp[0], n->fp[1]);
    else
        batchnorm_running_rstd(mean, rstd, rm, rv, C, n->fp[1]);
    if (small)
        batchnorm_forward_small(n->out->data, x->data, res, w, b, mean, rstd, N, C, HW, (int)n->ip[1],
                                ex->scratch);
    else
        batchnorm_forward(n->out->data, x->data, res, w, b, mean, rstd, N, C, HW, (int)n->ip[1]);
}

static void bn_bw(lt_node *n, const lt_exec *ex) {
    const lt_tensor *x = n->in[BN_X];
    const int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
    const lt_bn_mode mode = (lt_bn_mode)n->ip[0];
    const float *out = n->ip[1] ? n->out->data : NULL; /* the ReLU's mask */
    float *dres = n->n_in > BN_RES ? grad_or_null(n->in[BN_RES]) : NULL;
    if (mode == LT_BN_FROZEN) {
        if (x->grad || dres) batchnorm_frozen_backward(x->grad, dres, n->out->grad, out, n->saved, N, C, HW);
        return;
    }
    float *dw = grad_or_null(n->in[BN_W]), *db = grad_or_null(n->in[BN_B]);
    if (!x->grad && !dw && !db && !dres) return;
    const int batch_stats = mode == LT_BN_TRAIN;
    const int need_x = dw || (x->grad && batch_stats);
    if (HW <= BN_SMALL_HW && ex->scratch_numel >= bn_small_scratch(C, HW))
        batchnorm_backward_small(x->grad, dres, dw, db, n->out->grad, out, need_x ? x->data : NULL,
                                 data_or_null(n->in[BN_W]), n->saved, n->saved + C, batch_stats, N, C, HW,
                                 ex->scratch);
    else
        batchnorm_backward(x->grad, dres, dw, db, n->out->grad, out, need_x ? x->data : NULL,
                           data_or_null(n->in[BN_W]), n->saved, n->saved + C, batch_stats, N, C, HW);
}

static const lt_op bn_op = {"batchnorm2d", bn_fw, bn_bw};

/* 1 when t is NULL or a (C) vector. */
static int is_channel_vec(const lt_tensor *t, int64_t C) {
    return !t || (t->ndim == 1 && t->shape[0] == C);
}

static int requires_grad(const lt_tensor *t) {
    return t && t->requires_grad;
}

static lt_tensor *bn_build(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias,
                           lt_tensor *running_mean, lt_tensor *running_var, lt_bn_mode mode, float momentum,
                           float eps, lt_tensor *res, int relu) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    char sx[96], sp[96];
    lt_shape_str(x->shape, x->ndim, sx, sizeof sx);
    if (x->ndim != 4)
        return lt_graph_fail(g, LT_ERR_SHAPE, "batchnorm2d: input must be (N, C, H, W), got %s", sx);
    if ((int)mode < 0 || mode >= LT_BN_MODE_COUNT)
        return lt_graph_fail(g, LT_ERR_ARG, "batchnorm2d: unknown mode %d", (int)mode);
    if (!(eps > 0.0f)) return lt_graph_fail(g, LT_ERR_ARG, "batchnorm2d: eps must be > 0, got %g", eps);
    if (!(momentum >= 0.0f && momentum <= 1.0f))
        return lt_graph_fail(g, LT_ERR_ARG, "batchnorm2d: momentum must be in [0, 1], got %g", momentum);
    if (mode != LT_BN_TRAIN && (!running_mean || !running_var))
        return lt_graph_fail(g, LT_ERR_ARG,
                             "batchnorm2d: eval and frozen modes need running_mean and running_var");
    const int64_t C = x->shape[1];
    lt_tensor *vecs[4] = {weight, bias, running_mean, running_var};
    static const char *names[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        if (is_channel_vec(vecs[i], C)) continue;
        return lt_graph_fail(g, LT_ERR_SHAPE, "batchnorm2d: %s must be (%lld) for input %s, got %s", names[i],
                             (long long)C, sx, lt_shape_str(vecs[i]->shape, vecs[i]->ndim, sp, sizeof sp));
    }
    /* the running statistics are state written by forward, not values gradients could flow into */
    for (int i = 2; i < 4; i++)
        if (requires_grad(vecs[i]))
            return lt_graph_fail(g, LT_ERR_ARG, "batchnorm2d: %s '%s' must be a buffer (no gradient)",
                                 names[i], vecs[i]->name);

    if (res && (res->ndim != 4 || memcmp(res->shape, x->shape, 4 * sizeof(int64_t))))
        return lt_graph_fail(g, LT_ERR_SHAPE, "batchnorm2d: residual %s must match input %s",
                             lt_shape_str(res->shape, res->ndim, sp, sizeof sp), sx);
    lt_tensor *out = lt_graph_new_tensor(g, x->shape, x->ndim);
    lt_tensor *in[6] = {x, weight, bias, running_mean, running_var, res};
    lt_node *n = lt_graph_add_node(g, &bn_op, out, in, res ? 6 : 5);
    if (!n) return NULL;
    n->ip[0] = mode;
    n->ip[1] = relu != 0;
    n->fp[0] = momentum;
    n->fp[1] = eps;
    n->saved_numel = mode == LT_BN_FROZEN ? C : 2 * C;
    if (mode != LT_BN_FROZEN) n->scratch_numel = bn_small_scratch(C, x->shape[2] * x->shape[3]);
    n->bw_skip_out = !relu; /* the ReLU's backward reads the output as its mask */
    n->bw_skip_in = (1u << BN_B) | (1u << BN_RM) | (1u << BN_RV);
    if (res) n->bw_skip_in |= 1u << BN_RES; /* its gradient is the masked dout: its values are not read */
    const int dx = x->requires_grad, dw = requires_grad(weight);
    if (mode == LT_BN_FROZEN) {
        /* weight and bias are constants here even when the tensors are trainable elsewhere */
        n->bw_skip_in |= (1u << BN_X) | (1u << BN_W);
        out->requires_grad = dx || requires_grad(res);
    } else {
        const int need_x = dw || (dx && mode == LT_BN_TRAIN);
        if (!need_x) n->bw_skip_in |= 1u << BN_X;
        if (!dx) n->bw_skip_in |= 1u << BN_W;
    }
    return out;
}

lt_tensor *lt_batchnorm2d(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias,
                          lt_tensor *running_mean, lt_tensor *running_var, lt_bn_mode mode, float momentum,
                          float eps) {
    return bn_build(g, x, weight, bias, running_mean, running_var, mode, momentum, eps, NULL, 0);
}

lt_tensor *lt_batchnorm2d_fused(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias,
                                lt_tensor *running_mean, lt_tensor *running_var, lt_bn_mode mode,
                                float momentum, float eps, lt_tensor *res, int relu) {
    return bn_build(g, x, weight, bias, running_mean, running_var, mode, momentum, eps, res, relu);
}

/* ---- layernorm kernels ---- */

/* out = (x - mean) * rstd * weight + bias over the last dimension. x, out (R, C); weight, bias (C) or NULL;
 * mean, rstd (R) saved for backward. */
static void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                              const float *bias, int64_t R, int64_t C, float eps) {
#pragma omp parallel for if (R * C > NORM_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xp = x + r * C; // (C)
        float *op = out + r * C;     // (C)
        double s = 0;
        for (int64_t i = 0; i < C; i++)
            s += xp[i];
        const double m = s / (double)C;
        double ss = 0;
        for (int64_t i = 0; i < C; i++)
            ss += ((double)xp[i] - m) * ((double)xp[i] - m);
        const float mf = (float)m, rs = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        for (int64_t i = 0; i < C; i++) {
            float v = (xp[i] - mf) * rs;
            op[i] = v * (weight ? weight[i] : 1.0f) + (bias ? bias[i] : 0.0f);
        }
        mean[r] = mf;
        rstd[r] = rs;
    }
}

/* Backward of layernorm_forward (as llm.c's layernorm_backward):
 * dx += rstd * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) with dnorm = dout * weight;
 * dweight += sum_rows dout * xhat; dbias += sum_rows dout. dweight/dbias are reduced over channel blocks so
 * each block's sum runs in one thread, in double, independent of the thread count. Any grad may be NULL. */
static void layernorm_backward(float *dx, float *dweight, float *dbias, const float *dout, const float *x,
                               const float *weight, const float *mean, const float *rstd, int64_t R,
                               int64_t C) {
    if (dx) {
#pragma omp parallel for if (R * C > NORM_PAR_MIN)
        for (int64_t r = 0; r < R; r++) {
            const float *xp = x + r * C, *gp = dout + r * C; // (C), (C)
            float *dp = dx + r * C;                          // (C)
            const float m = mean[r], rs = rstd[r];
            double sd = 0, sdx = 0;
            for (int64_t i = 0; i < C; i++) {
                const float dn = gp[i] * (weight ? weight[i] : 1.0f);
                sd += dn;
                sdx += (double)dn * (double)((xp[i] - m) * rs);
            }
            const float md = (float)(sd / (double)C), mdx = (float)(sdx / (double)C);
            for (int64_t i = 0; i < C; i++) {
                const float dn = gp[i] * (weight ? weight[i] : 1.0f);
                dp[i] += rs * (dn - md - (xp[i] - m) * rs * mdx);
            }
        }
    }
    if (!dweight && !dbias) return;
    const int64_t nblocks = (C + LN_BLOCK - 1) / LN_BLOCK;
#pragma omp parallel for if (R * C > NORM_PAR_MIN)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        const int64_t c0 = blk * LN_BLOCK, nc = C - c0 < LN_BLOCK ? C - c0 : LN_BLOCK;
        double sw[LN_BLOCK] = {0}, sb[LN_BLOCK] = {0};
        for (int64_t r = 0; r < R; r++) {
            const float *xp = x + r * C + c0, *gp = dout + r * C + c0; // (nc), (nc)
            const float m = mean[r], rs = rstd[r];
            for (int64_t i = 0; i < nc; i++) {
                sb[i] += gp[i];
                if (dweight) sw[i] += (double)gp[i] * (double)((xp[i] - m) * rs);
            }
        }
        for (int64_t i = 0; i < nc; i++) {
            if (dweight) dweight[c0 + i] += (float)sw[i];
            if (dbias) dbias[c0 + i] += (float)sb[i];
        }
    }
}

/* ---- layernorm op ---- */

/* node: in = {x, weight, bias} (weight, bias may be NULL), fp[0] = eps, saved (2R) = mean, rstd. */
static void ln_fw(lt_node *n, const lt_exec *ex) {
    const lt_tensor *x = n->in[0];
    const int64_t C = x->shape[x->ndim - 1], R = x->numel / C;
    layernorm_forward(n->out->data, n->saved, n->saved + R, x->data, data_or_null(n->in[1]),
                      data_or_null(n->in[2]), R, C, n->fp[0]);
}

static void ln_bw(lt_node *n, const lt_exec *ex) {
    const lt_tensor *x = n->in[0];
    const int64_t C = x->shape[x->ndim - 1], R = x->numel / C;
    layernorm_backward(x->grad, grad_or_null(n->in[1]), grad_or_null(n->in[2]), n->out->grad, x->data,
                       data_or_null(n->in[1]), n->saved, n->saved + R, R, C);
}

static const lt_op ln_op = {"layernorm", ln_fw, ln_bw};

lt_tensor *lt_layernorm(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias, float eps) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    char sx[96], sp[96];
    lt_shape_str(x->shape, x->ndim, sx, sizeof sx);
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1)
        return lt_graph_fail(g, LT_ERR_SHAPE, "layernorm: input %s has no last dimension to normalize", sx);
    if (!(eps > 0.0f)) return lt_graph_fail(g, LT_ERR_ARG, "layernorm: eps must be > 0, got %g", eps);
    const int64_t C = x->shape[x->ndim - 1];
    lt_tensor *vecs[2] = {weight, bias};
    static const char *names[2] = {"weight", "bias"};
    for (int i = 0; i < 2; i++) {
        if (is_channel_vec(vecs[i], C)) continue;
        return lt_graph_fail(g, LT_ERR_SHAPE, "layernorm: %s must be (%lld) for input %s, got %s", names[i],
                             (long long)C, sx, lt_shape_str(vecs[i]->shape, vecs[i]->ndim, sp, sizeof sp));
    }
    lt_tensor *out = lt_graph_new_tensor(g, x->shape, x->ndim);
    lt_tensor *in[3] = {x, weight, bias};
    lt_node *n = lt_graph_add_node(g, &ln_op, out, in, 3);
    if (!n) return NULL;
    n->fp[0] = eps;
    n->saved_numel = 2 * (x->numel / C);
    n->bw_skip_out = 1;
    n->bw_skip_in = 1u << 2;
    if (!x->requires_grad && !requires_grad(weight)) n->bw_skip_in |= 1u << 0;
    if (!x->requires_grad) n->bw_skip_in |= 1u << 1;
    return out;
}
