/* drop_path.h - stochastic depth per sample (transformers' drop_path, timm's DropPath).
 *
 * In a training graph each sample of a residual branch is either dropped whole or kept and scaled by
 * 1 / (1 - p), so the expected output equals the input. SegFormer uses it on both residual branches of every
 * encoder layer, with p rising linearly from 0 to drop_path_rate over the layers. */
#ifndef LT_DROP_PATH_H
#define LT_DROP_PATH_H

#include "ops.h"

#include <stdint.h>

/* x (B, ...) -> same shape. In LT_MODE_TRAIN with p > 0: keep = 1 - p, and for each sample b a uniform u_b
 * is drawn from the graph's rng (in sample order, during forward) and out[b] = x[b] / keep * floor(keep +
 * u_b), with keep + u_b rounded to float as torch does. Eval graphs and p == 0 return x itself (no node, no
 * copy). p must be in [0, 1): p == 1 would divide by zero (transformers gives NaN). */
lt_tensor *lt_drop_path(lt_graph *g, lt_tensor *x, float p);

/* out[b] = x[b] / keep * factor[b] with factor[b] = floor(keep + u_b) (0 or 1) drawn from rng, written to
 * factor for backward. inner is the number of elements per sample. */
void lt_drop_path_forward(float *out,     /* (B, inner) */
                          float *factor,  /* (B) written */
                          const float *x, /* (B, inner) */
                          float p, lt_rng *rng, int64_t B, int64_t inner);

/* Adds the gradient of lt_drop_path_forward: dx[b] += dout[b] / keep * factor[b]. */
void lt_drop_path_backward(float *dx,           /* (B, inner) */
                           const float *dout,   /* (B, inner) */
                           const float *factor, /* (B) from forward */
                           float p, int64_t B, int64_t inner);

#endif
