/* ops.h - graph builders for every op, and the plain kernels behind them.
 *
 * Each builder appends one node (see core/graph.h) and returns its output tensor, or NULL after recording a
 * build error in the graph. Kernels follow llm.c's shape: `op_forward(out, inputs..., sizes)` and
 * `op_backward(dinputs..., dout, saved inputs..., sizes)`; backward kernels ADD into gradients and skip any
 * gradient pointer that is NULL. Each op family lives in its own file (conv2d.c, norm.c, ...) with its
 * builder, its kernels, and a naive reference kernel where a fast one exists. */
#ifndef LT_OPS_H
#define LT_OPS_H

#include "../core/graph.h"

/* ---- convolution (conv2d.c) ---- */
typedef struct {
    int stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
} lt_conv2d_cfg;
/* x (N, C, H, W), w (O, C/groups, KH, KW), b (O) or NULL -> (N, O, OH, OW), as torch.nn.functional.conv2d.
 * im2col + sgemm; 1x1 stride-1 unpadded convolutions skip im2col. */
lt_tensor *lt_conv2d(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_tensor *b, lt_conv2d_cfg cfg);

/* ---- normalization (norm.c) ---- */
typedef enum {
    LT_BN_TRAIN = 0, /* batch statistics; running stats updated with momentum; grads to x, weight, bias */
    LT_BN_EVAL,      /* running statistics; grads still flow to x, weight and bias */
    LT_BN_FROZEN,    /* running statistics, weight and bias are constants (DETR backbone); grad to x only */
    LT_BN_MODE_COUNT
} lt_bn_mode;
/* x (N, C, H, W); weight, bias, running_mean, running_var (C). momentum 0.1 and eps 1e-5 in PyTorch.
 * Training mode updates running_var with the unbiased batch variance, as PyTorch does. */
lt_tensor *lt_batchnorm2d(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias, lt_tensor *running_mean,
                          lt_tensor *running_var, lt_bn_mode mode, float momentum, float eps);
/* relu?(batchnorm2d(x, ...) + res?) as one node (res, shaped as x, may be NULL; relu 0 or 1): one pass over
 * memory each way instead of one per op, and no buffers (or gradient buffers) in between. Results as
 * lt_relu(lt_add(lt_batchnorm2d(...), res)). */
lt_tensor *lt_batchnorm2d_fused(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias, lt_tensor *running_mean,
                                lt_tensor *running_var, lt_bn_mode mode, float momentum, float eps, lt_tensor *res,
                                int relu);
/* Normalizes over the last dimension; weight, bias (C) where C = x->shape[ndim-1]. */
lt_tensor *lt_layernorm(lt_graph *g, lt_tensor *x, lt_tensor *weight, lt_tensor *bias, float eps);

/* ---- elementwise and softmax (activation.c) ---- */
lt_tensor *lt_relu(lt_graph *g, lt_tensor *x);
lt_tensor *lt_gelu(lt_graph *g, lt_tensor *x); /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
lt_tensor *lt_sigmoid(lt_graph *g, lt_tensor *x);
lt_tensor *lt_softmax(lt_graph *g, lt_tensor *x); /* over the last dimension, max-subtracted */
/* Inverted dropout with probability p, active only in LT_MODE_TRAIN (identity otherwise). The mask is
 * drawn from the graph's rng during forward and saved for backward. */
lt_tensor *lt_dropout(lt_graph *g, lt_tensor *x, float p);
/* out = a + b. b has a's shape, or a's trailing dimensions (broadcast over the leading ones, e.g. a
 * position embedding (T, C) added to (B, T, C)); b's gradient is then summed over the broadcast. */
lt_tensor *lt_add(lt_graph *g, lt_tensor *a, lt_tensor *b);
lt_tensor *lt_mul(lt_graph *g, lt_tensor *a, lt_tensor *b); /* elementwise, same shapes */
lt_tensor *lt_scale(lt_graph *g, lt_tensor *x, float s);    /* out = s * x */

/* ---- pooling (pool.c) ---- */
/* x (N, C, H, W); as torch max_pool2d with ceil_mode=False, padding filled with -inf. */
lt_tensor *lt_maxpool2d(lt_graph *g, lt_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h, int pad_w);
/* Adaptive average pooling to (oh, ow), PyTorch's bin edges floor(i*H/oh) .. ceil((i+1)*H/oh).
 * (1, 1) is global average pooling. */
lt_tensor *lt_adaptive_avgpool2d(lt_graph *g, lt_tensor *x, int oh, int ow);

/* ---- dense (linear.c) ---- */
/* x (..., IN), w (OUT, IN), b (OUT) or NULL -> (..., OUT): x w^T + b, as nn.Linear. */
lt_tensor *lt_linear(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_tensor *b);
/* a (..., M, K) (or (..., K, M) when trans_a), b (..., K, N) (or (..., N, K) when trans_b) with identical
 * leading (batch) dimensions -> (..., M, N). */
lt_tensor *lt_matmul(lt_graph *g, lt_tensor *a, lt_tensor *b, int trans_a, int trans_b);

/* ---- attention (attention.c) ---- */
/* Scaled dot-product attention with heads, the core of nn.MultiheadAttention:
 * q (B, TQ, C), k and v (B, TK, C), C divisible by heads. key_padding_mask (B, TK) or NULL holds additive
 * values (0 to keep a key, -inf or a large negative number to mask it). Per head h (D = C/heads):
 * out[:, :, hD:(h+1)D] = softmax(q_h k_h^T / sqrt(D) + mask) v_h. Output (B, TQ, C). Probabilities are
 * saved for backward (B*heads*TQ*TK floats). No gradient flows into the mask. */
lt_tensor *lt_attention(lt_graph *g, lt_tensor *q, lt_tensor *k, lt_tensor *v, lt_tensor *key_padding_mask,
                        int heads);

/* ---- resampling and shape (resize.c, shape.c) ---- */
/* x (N, C, H, W) -> (N, C, oh, ow), torch interpolate(mode="bilinear", align_corners=False), up or down
 * (no antialiasing, as PyTorch's default). */
lt_tensor *lt_resize_bilinear(lt_graph *g, lt_tensor *x, int oh, int ow);
/* Concatenates n tensors of equal shape except along axis. */
lt_tensor *lt_concat(lt_graph *g, lt_tensor *const *xs, int n, int axis);
/* Views (no copy, no node): same numel. */
lt_tensor *lt_reshape(lt_graph *g, lt_tensor *x, const int64_t *shape, int ndim);
lt_tensor *lt_flatten(lt_graph *g, lt_tensor *x, int start_dim, int end_dim);
/* Copies: out.shape[i] = x.shape[perm[i]] as torch.permute. */
lt_tensor *lt_permute(lt_graph *g, lt_tensor *x, const int *perm);
lt_tensor *lt_transpose(lt_graph *g, lt_tensor *x, int d0, int d1);
/* Copies x[..., start:start+len, ...] along axis. */
lt_tensor *lt_slice(lt_graph *g, lt_tensor *x, int axis, int64_t start, int64_t len);

/* ---- losses (loss.c) ---- */
/* Mean cross-entropy. logits (N, C) or (N, C, H, W); target (N) or (N, H, W) holding class indices as
 * floats; entries equal to ignore_index are skipped (use -100 for "none", 255 for segmentation masks).
 * class_weight (C) or NULL: each term weighted, and the mean divides by the summed weights of the counted
 * targets, as PyTorch. Output: a scalar (shape (1)). Zero counted targets give loss 0. */
lt_tensor *lt_cross_entropy(lt_graph *g, lt_tensor *logits, lt_tensor *target, lt_tensor *class_weight,
                            int ignore_index);
/* Mean absolute error over all elements, scalar output (1). target gets no gradient unless it requires it. */
lt_tensor *lt_l1_loss(lt_graph *g, lt_tensor *pred, lt_tensor *target);
/* Generalized IoU of matched box pairs: a, b (N, 4) as (x0, y0, x1, y1) -> (N). */
lt_tensor *lt_giou(lt_graph *g, lt_tensor *a, lt_tensor *b);
/* Sum of all elements -> (1); mean likewise. */
lt_tensor *lt_sum(lt_graph *g, lt_tensor *x);
lt_tensor *lt_mean(lt_graph *g, lt_tensor *x);

#endif
