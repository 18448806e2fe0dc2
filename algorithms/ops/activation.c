/* activation.c - elementwise activations, softmax, dropout and elementwise arithmetic.
 *
 * Each backward reads as little as it can (relu, sigmoid and softmax only their output; add and scale
 * nothing), and the builders say so through bw_skip_in/bw_skip_out so the planner can free the rest. */
#include "ops.h"

#include <math.h>
#include <stdio.h>

/* below this many elements a loop runs on one thread: forking costs more than it saves */
#define ACT_PAR_MIN 32768
/* broadcast columns reduced together in lt_add's gradient of b (one block per thread at a time) */
#define ADD_BLOCK 64

/* A new node out = op(in[0..n_in-1]) with out shaped like in[0]; NULL after an error. */
static lt_node *unary_node(lt_graph *g, const lt_op *op, lt_tensor *const *in, int n_in) {
    lt_tensor *out = lt_graph_new_tensor(g, in[0]->shape, in[0]->ndim);
    return lt_graph_add_node(g, op, out, in, n_in);
}

/* ---- relu ---- */

static void relu_forward(float *out, const float *x, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* out = max(x, 0): dx += dout where out > 0 (the output alone decides, so x can be freed) */
static void relu_backward(float *dx, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dx[i] += out[i] > 0.0f ? dout[i] : 0.0f;
}

static void relu_fw(lt_node *n, const lt_exec *ex) {
    relu_forward(n->out->data, n->in[0]->data, n->out->numel);
}
static void relu_bw(lt_node *n, const lt_exec *ex) {
    if (n->in[0]->grad) relu_backward(n->in[0]->grad, n->out->grad, n->out->data, n->out->numel);
}
static const lt_op relu_op = {"relu", relu_fw, relu_bw};

lt_tensor *lt_relu(lt_graph *g, lt_tensor *x) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    lt_node *n = unary_node(g, &relu_op, &x, 1);
    if (!n) return NULL;
    n->bw_skip_in = 1u;
    return n->out;
}

/* ---- gelu ---- */

#define INV_SQRT2 0.70710678118654752440f
#define INV_SQRT_2PI 0.39894228040143267794f

static void gelu_forward(float *out, const float *x, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.5f * x[i] * (1.0f + erff(x[i] * INV_SQRT2));
}

/* out = 0.5 x (1 + erf(x / sqrt 2)): dx += dout * (0.5 (1 + erf(x / sqrt 2)) + x exp(-x^2 / 2) / sqrt(2 pi))
 */
static void gelu_backward(float *dx, const float *dout, const float *x, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const float cdf = 0.5f * (1.0f + erff(v * INV_SQRT2));
        const float pdf = expf(-0.5f * v * v) * INV_SQRT_2PI;
        dx[i] += dout[i] * (cdf + v * pdf);
    }
}

static void gelu_fw(lt_node *n, const lt_exec *ex) {
    gelu_forward(n->out->data, n->in[0]->data, n->out->numel);
}
static void gelu_bw(lt_node *n, const lt_exec *ex) {
    if (n->in[0]->grad) gelu_backward(n->in[0]->grad, n->out->grad, n->in[0]->data, n->out->numel);
}
static const lt_op gelu_op = {"gelu", gelu_fw, gelu_bw};

lt_tensor *lt_gelu(lt_graph *g, lt_tensor *x) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    lt_node *n = unary_node(g, &gelu_op, &x, 1);
    if (!n) return NULL;
    n->bw_skip_out = 1;
    return n->out;
}

/* ---- sigmoid ---- */

static void sigmoid_forward(float *out, const float *x, int64_t n) {
    /* exp(-x) overflows to inf for x < -88, giving exactly 0: no NaN either way */
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = 1.0f / (1.0f + expf(-x[i]));
}

/* out = sigmoid(x): dx += dout * out * (1 - out) */
static void sigmoid_backward(float *dx, const float *dout, const float *out, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dx[i] += dout[i] * out[i] * (1.0f - out[i]);
}

static void sigmoid_fw(lt_node *n, const lt_exec *ex) {
    sigmoid_forward(n->out->data, n->in[0]->data, n->out->numel);
}
static void sigmoid_bw(lt_node *n, const lt_exec *ex) {
    if (n->in[0]->grad) sigmoid_backward(n->in[0]->grad, n->out->grad, n->out->data, n->out->numel);
}
static const lt_op sigmoid_op = {"sigmoid", sigmoid_fw, sigmoid_bw};

lt_tensor *lt_sigmoid(lt_graph *g, lt_tensor *x) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    lt_node *n = unary_node(g, &sigmoid_op, &x, 1);
    if (!n) return NULL;
    n->bw_skip_in = 1u;
    return n->out;
}

/* ---- softmax over the last dimension ---- */

/* out[r] = exp(x[r] - max x[r]) / sum exp(x[r] - max x[r]); x, out (R, C). Subtracting the max keeps exp
 * finite for any finite input (1000 and -1000 alike). A row of all -inf gives NaN, as in PyTorch. */
static void softmax_forward(float *out, const float *x, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > ACT_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *xp = x + r * C; // (C)
        float *op = out + r * C;     // (C)
        float mx = -INFINITY;
        for (int64_t i = 0; i < C; i++)
            mx = xp[i] > mx ? xp[i] : mx;
        double s = 0;
        for (int64_t i = 0; i < C; i++) {
            op[i] = expf(xp[i] - mx);
            s += op[i];
        }
        const float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < C; i++)
            op[i] *= inv;
    }
}

/* out = softmax(x): dx += out * (dout - sum(dout * out)) per row */
static void softmax_backward(float *dx, const float *dout, const float *out, int64_t R, int64_t C) {
#pragma omp parallel for if (R * C > ACT_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        const float *gp = dout + r * C, *op = out + r * C; // (C), (C)
        float *dp = dx + r * C;                            // (C)
        double s = 0;
        for (int64_t i = 0; i < C; i++)
            s += (double)gp[i] * (double)op[i];
        const float sf = (float)s;
        for (int64_t i = 0; i < C; i++)
            dp[i] += op[i] * (gp[i] - sf);
    }
}

static void softmax_fw(lt_node *n, const lt_exec *ex) {
    const int64_t C = n->out->shape[n->out->ndim - 1];
    softmax_forward(n->out->data, n->in[0]->data, n->out->numel / C, C);
}
static void softmax_bw(lt_node *n, const lt_exec *ex) {
    const int64_t C = n->out->shape[n->out->ndim - 1];
    if (n->in[0]->grad) softmax_backward(n->in[0]->grad, n->out->grad, n->out->data, n->out->numel / C, C);
}
static const lt_op softmax_op = {"softmax", softmax_fw, softmax_bw};

lt_tensor *lt_softmax(lt_graph *g, lt_tensor *x) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1) {
        char sx[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "softmax: input %s has no last dimension",
                             lt_shape_str(x->shape, x->ndim, sx, sizeof sx));
    }
    lt_node *n = unary_node(g, &softmax_op, &x, 1);
    if (!n) return NULL;
    n->bw_skip_in = 1u;
    return n->out;
}

/* ---- dropout ---- */

/* Inverted dropout: each element is kept with probability 1 - p and scaled by 1 / (1 - p), so the expected
 * output equals the input. mask (n) holds the factor per element (0 or 1 / (1 - p)) for backward. The
 * draws are sequential so a given rng state always gives the same mask, whatever the thread count.
 * rng NULL (a graph created without one) keeps every element: there is no stream to draw from. */
static void dropout_forward(float *out, float *mask, const float *x, float p, lt_rng *rng, int64_t n) {
    const float keep_scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    if (!rng)
        for (int64_t i = 0; i < n; i++)
            mask[i] = 1.0f;
    else
        for (int64_t i = 0; i < n; i++)
            mask[i] = lt_rng_uniform(rng) >= p ? keep_scale : 0.0f;
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = x[i] * mask[i];
}

/* out = x * mask: dx += dout * mask */
static void dropout_backward(float *dx, const float *dout, const float *mask, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dx[i] += dout[i] * mask[i];
}

/* node: fp[0] = p, saved (numel) = mask. Built only for training graphs with p > 0. */
static void dropout_fw(lt_node *n, const lt_exec *ex) {
    dropout_forward(n->out->data, n->saved, n->in[0]->data, n->fp[0], ex->rng, n->out->numel);
}
static void dropout_bw(lt_node *n, const lt_exec *ex) {
    if (n->in[0]->grad) dropout_backward(n->in[0]->grad, n->out->grad, n->saved, n->out->numel);
}
static const lt_op dropout_op = {"dropout", dropout_fw, dropout_bw};

lt_tensor *lt_dropout(lt_graph *g, lt_tensor *x, float p) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f))
        return lt_graph_fail(g, LT_ERR_ARG, "dropout: p must be in [0, 1], got %g", p);
    /* identity: no node, no mask, no copy */
    if (p == 0.0f || lt_graph_mode(g) != LT_MODE_TRAIN) return x;
    if (!lt_graph_rng(g)) return lt_graph_fail(g, LT_ERR_ARG, "dropout: the training graph was created without an rng");
    lt_node *n = unary_node(g, &dropout_op, &x, 1);
    if (!n) return NULL;
    n->fp[0] = p;
    n->saved_numel = x->numel;
    n->bw_skip_in = 1u;
    n->bw_skip_out = 1;
    return n->out;
}

/* ---- add, mul, scale ---- */

/* out = a + b with b (bn) repeated over a's leading dimensions; a, out (n), n a multiple of bn. */
static void add_forward(float *out, const float *a, const float *b, int64_t n, int64_t bn) {
    if (bn == n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = a[i] + b[i];
        return;
    }
    const int64_t rows = n / bn;
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < bn; j++)
            out[r * bn + j] = a[r * bn + j] + b[j];
}

/* da += dout; db += dout summed over the broadcast rows. db's sum runs over column blocks, in double, one
 * block per thread, so it does not depend on the thread count. Either grad may be NULL. */
static void add_backward(float *da, float *db, const float *dout, int64_t n, int64_t bn) {
    if (da) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            da[i] += dout[i];
    }
    if (!db) return;
    if (bn == n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
        for (int64_t i = 0; i < n; i++)
            db[i] += dout[i];
        return;
    }
    const int64_t rows = n / bn, nblocks = (bn + ADD_BLOCK - 1) / ADD_BLOCK;
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t blk = 0; blk < nblocks; blk++) {
        const int64_t j0 = blk * ADD_BLOCK, nj = bn - j0 < ADD_BLOCK ? bn - j0 : ADD_BLOCK;
        double s[ADD_BLOCK] = {0};
        for (int64_t r = 0; r < rows; r++) {
            const float *gp = dout + r * bn + j0; // (nj)
            for (int64_t j = 0; j < nj; j++)
                s[j] += gp[j];
        }
        for (int64_t j = 0; j < nj; j++)
            db[j0 + j] += (float)s[j];
    }
}

static void add_fw(lt_node *n, const lt_exec *ex) {
    add_forward(n->out->data, n->in[0]->data, n->in[1]->data, n->out->numel, n->in[1]->numel);
}
static void add_bw(lt_node *n, const lt_exec *ex) {
    add_backward(n->in[0]->grad, n->in[1]->grad, n->out->grad, n->out->numel, n->in[1]->numel);
}
static const lt_op add_op = {"add", add_fw, add_bw};

lt_tensor *lt_add(lt_graph *g, lt_tensor *a, lt_tensor *b) {
    lt_tensor *in[2] = {a, b};
    if (lt_graph_failed(g, in, 2)) return NULL;
    /* b must equal a's last b->ndim dimensions */
    int ok = b->ndim <= a->ndim;
    for (int i = 0; ok && i < b->ndim; i++)
        ok = b->shape[i] == a->shape[a->ndim - b->ndim + i];
    if (!ok || b->numel == 0) {
        char sa[96], sb[96];
        return lt_graph_fail(
            g, LT_ERR_SHAPE, "add: %s cannot be added to %s (it must match its trailing dimensions)",
            lt_shape_str(b->shape, b->ndim, sb, sizeof sb), lt_shape_str(a->shape, a->ndim, sa, sizeof sa));
    }
    lt_node *n = unary_node(g, &add_op, in, 2);
    if (!n) return NULL;
    n->bw_skip_in = 3u;
    n->bw_skip_out = 1;
    return n->out;
}

static void mul_forward(float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] * b[i];
}

/* out = a * b: da += dout * b, db += dout * a; either grad may be NULL */
static void mul_backward(float *da, float *db, const float *dout, const float *a, const float *b, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float g = dout[i];
        if (da) da[i] += g * b[i];
        if (db) db[i] += g * a[i];
    }
}

static void mul_fw(lt_node *n, const lt_exec *ex) {
    mul_forward(n->out->data, n->in[0]->data, n->in[1]->data, n->out->numel);
}
static void mul_bw(lt_node *n, const lt_exec *ex) {
    mul_backward(n->in[0]->grad, n->in[1]->grad, n->out->grad, n->in[0]->data, n->in[1]->data, n->out->numel);
}
static const lt_op mul_op = {"mul", mul_fw, mul_bw};

lt_tensor *lt_mul(lt_graph *g, lt_tensor *a, lt_tensor *b) {
    lt_tensor *in[2] = {a, b};
    if (lt_graph_failed(g, in, 2)) return NULL;
    if (!lt_same_shape(a, b)) {
        char sa[96], sb[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "mul: shapes %s and %s differ",
                             lt_shape_str(a->shape, a->ndim, sa, sizeof sa),
                             lt_shape_str(b->shape, b->ndim, sb, sizeof sb));
    }
    lt_node *n = unary_node(g, &mul_op, in, 2);
    if (!n) return NULL;
    /* a's values are needed only for b's gradient and vice versa */
    if (!b->requires_grad) n->bw_skip_in |= 1u << 0;
    if (!a->requires_grad) n->bw_skip_in |= 1u << 1;
    n->bw_skip_out = 1;
    return n->out;
}

static void scale_forward(float *out, const float *x, float s, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        out[i] = s * x[i];
}

/* out = s * x: dx += s * dout */
static void scale_backward(float *dx, const float *dout, float s, int64_t n) {
#pragma omp parallel for if (n > ACT_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        dx[i] += s * dout[i];
}

static void scale_fw(lt_node *n, const lt_exec *ex) {
    scale_forward(n->out->data, n->in[0]->data, n->fp[0], n->out->numel);
}
static void scale_bw(lt_node *n, const lt_exec *ex) {
    if (n->in[0]->grad) scale_backward(n->in[0]->grad, n->out->grad, n->fp[0], n->out->numel);
}
static const lt_op scale_op = {"scale", scale_fw, scale_bw};

lt_tensor *lt_scale(lt_graph *g, lt_tensor *x, float s) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    lt_node *n = unary_node(g, &scale_op, &x, 1);
    if (!n) return NULL;
    n->fp[0] = s;
    n->bw_skip_in = 1u;
    n->bw_skip_out = 1;
    return n->out;
}
