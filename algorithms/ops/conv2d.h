/* conv2d.h - the kernels behind lt_conv2d (ops.h), for tests and benchmarks.
 *
 * lt_conv2d_forward/backward are the fast kernels the graph op runs: im2col + sgemm, with images placed
 * side by side in one GEMM when the output is small, and a direct loop kernel for depthwise convolutions.
 * How the work is cut (images per GEMM, output rows per GEMM, threads) is an lt_conv2d_plan; the graph
 * builder picks one with lt_conv2d_plan_auto, and tests force others to reach every code path.
 * lt_conv2d_forward_ref/backward_ref are plain loops (double accumulation) the fast kernels are tested
 * against. */
#ifndef LT_CONV2D_H
#define LT_CONV2D_H

#include "ops.h"

#include <stdint.h>

/* Sizes of one convolution. */
typedef struct {
    int64_t n, c, h, w; /* input (N, C, H, W) */
    int64_t o, kh, kw;  /* weight (O, C/groups, KH, KW) */
    int64_t oh, ow;     /* output (N, O, OH, OW) */
    lt_conv2d_cfg cfg;
} lt_conv2d_dims;

/* How the fast kernels cut the work. A unit is nb whole images (side by side in one GEMM) or, when nb == 1,
 * piece_rows output rows of one image. Forward hands whole units to threads while there are at least as
 * many units left as threads, then splits the output channels of the rest; backward always splits the
 * input channels (the GEMM rows of col), so no two threads ever write the same dx or dw element. */
typedef struct {
    int64_t nb;            /* forward: images per unit; 1 lets the GEMM write the output in place */
    int64_t piece_rows;    /* forward: output rows per unit when nb == 1 (oh: whole images) */
    int64_t nb_bw;         /* backward: images per unit */
    int64_t piece_rows_bw; /* backward: output rows per unit when nb_bw == 1 */
    int threads;           /* most threads the kernels use; the scratch size depends on it */
    int direct;            /* 1: direct loops for depthwise (C/groups == 1) instead of im2col + GEMM */
} lt_conv2d_plan;

/* Output size along one axis: (in + 2 pad - dil (k - 1) - 1) / stride + 1, or 0 when the window does
 * not fit (also for stride or dil < 1). */
int64_t lt_conv2d_out_size(int64_t in, int64_t k, int stride, int pad, int dil);

/* The plan the graph op uses for d on `threads` threads. Can't fail. */
void lt_conv2d_plan_auto(const lt_conv2d_dims *d, int threads, lt_conv2d_plan *p);

/* Floats of scratch lt_conv2d_forward (with_backward = 0) or both lt_conv2d_forward and lt_conv2d_backward
 * (with_backward = 1) need under plan p. p must be valid for d: nb in [1, n], piece_rows in [1, oh] and
 * piece_rows == oh when nb > 1 (likewise for nb_bw, piece_rows_bw), threads >= 1, direct only when
 * c / groups == 1. */
int64_t lt_conv2d_scratch_numel(const lt_conv2d_dims *d, const lt_conv2d_plan *p, int with_backward);

/* out = conv2d(x, w) + b. b may be NULL. scratch holds lt_conv2d_scratch_numel(d, p, 0) floats. */
void lt_conv2d_forward(float *out,     /* (N, O, OH, OW) */
                       const float *x, /* (N, C, H, W) */
                       const float *w, /* (O, C/groups, KH, KW) */
                       const float *b, /* (O) or NULL */
                       const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch);

/* What the forward applies to each output value v of channel o while it is still in cache:
 * v * scale[o] + shift[o] (scale, shift NULL: 1, 0), then + res (same index), then max(., 0) when relu.
 * Evaluated as separate bias / batch-norm / add / ReLU passes would, in the same float order. */
typedef struct {
    const float *scale; /* (O) or NULL */
    const float *shift; /* (O) or NULL; a convolution's bias is a shift without scale */
    const float *res;   /* (N, O, OH, OW) or NULL; may not alias out */
    int relu;
} lt_conv2d_epi;

/* out = epilogue(conv2d(x, w)), as lt_conv2d_forward (which is this with shift = b). */
void lt_conv2d_forward_epi(float *out, const float *x, const float *w, const lt_conv2d_epi *e,
                           const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch);

/* Inference only (an LT_MODE_EVAL graph; no backward): one node computing
 *     relu?(batchnorm2d(conv2d(x, w, no bias), bn_weight, bn_bias, running_mean, running_var) + res?)
 * with batch norm in LT_BN_EVAL or LT_BN_FROZEN mode (bn_weight, bn_bias may be NULL; res, shaped as the
 * output, may be NULL). The batch norm, residual add and ReLU happen in the GEMM's output pass instead of a
 * pass each over memory. Scale and shift are recomputed from the tensors at every forward. */
lt_tensor *lt_conv2d_bn_eval(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_conv2d_cfg cfg, lt_tensor *bn_weight,
                             lt_tensor *bn_bias, lt_tensor *running_mean, lt_tensor *running_var,
                             lt_bn_mode mode, float eps, lt_tensor *res, int relu);

/* Adds the gradients of out = conv2d(x, w) + b into dx, dw, db; each may be NULL (then skipped).
 * x is read only for dw, w only for dx. scratch holds lt_conv2d_scratch_numel(d, p, 1). */
void lt_conv2d_backward(float *dx,         /* (N, C, H, W) or NULL */
                        float *dw,         /* (O, C/groups, KH, KW) or NULL */
                        float *db,         /* (O) or NULL */
                        const float *dout, /* (N, O, OH, OW) */
                        const float *x, const float *w, const lt_conv2d_dims *d, const lt_conv2d_plan *p,
                        float *scratch);

/* Naive references: direct loops, single-threaded, sums in double. Same contracts as above. */
void lt_conv2d_forward_ref(float *out, const float *x, const float *w, const float *b,
                           const lt_conv2d_dims *d);
void lt_conv2d_backward_ref(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const lt_conv2d_dims *d);

#endif
