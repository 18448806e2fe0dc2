/* drop_path.c - stochastic depth per sample: a whole sample of a residual branch is dropped or scaled.
 *
 * The draw per sample follows transformers' drop_path bit for bit: floor(keep + u) in float, then
 * x / keep times that 0 or 1. Draws are sequential, one per sample, so a given rng state gives the same
 * samples whatever the thread count. */
#include "drop_path.h"

#include <math.h>

/* below this many elements a loop runs on one thread: forking costs more than it saves */
#define DROP_PATH_PAR_MIN 32768

void lt_drop_path_forward(float *out, float *factor, const float *x, float p, lt_rng *rng, int64_t B,
                          int64_t inner) {
    const float keep = 1.0f - p;
    for (int64_t b = 0; b < B; b++)
        factor[b] = floorf(keep + lt_rng_uniform(rng));
#pragma omp parallel for if (B * inner > DROP_PATH_PAR_MIN)
    for (int64_t b = 0; b < B; b++) {
        const float *xp = x + b * inner; // (inner)
        float *op = out + b * inner;     // (inner)
        if (factor[b] != 0.0f)
            for (int64_t i = 0; i < inner; i++)
                op[i] = xp[i] / keep;
        else
            for (int64_t i = 0; i < inner; i++)
                op[i] = 0.0f;
    }
}

/* out = x / keep * factor  =>  dx += dout / keep * factor */
void lt_drop_path_backward(float *dx, const float *dout, const float *factor, float p, int64_t B,
                           int64_t inner) {
    const float keep = 1.0f - p;
#pragma omp parallel for if (B * inner > DROP_PATH_PAR_MIN)
    for (int64_t b = 0; b < B; b++) {
        if (factor[b] == 0.0f) continue;
        const float *gp = dout + b * inner; // (inner)
        float *dp = dx + b * inner;         // (inner)
        for (int64_t i = 0; i < inner; i++)
            dp[i] += gp[i] / keep;
    }
}

/* node: fp[0] = p, saved (B) = the factor per sample */
static void drop_path_fw(lt_node *n, const lt_exec *ex) {
    const lt_tensor *x = n->in[0];
    lt_drop_path_forward(n->out->data, n->saved, x->data, n->fp[0], ex->rng, x->shape[0],
                         x->numel / x->shape[0]);
}

static void drop_path_bw(lt_node *n, const lt_exec *ex) {
    const lt_tensor *x = n->in[0];
    if (x->grad)
        lt_drop_path_backward(x->grad, n->out->grad, n->saved, n->fp[0], x->shape[0], x->numel / x->shape[0]);
}

static const lt_op drop_path_op = {"drop_path", drop_path_fw, drop_path_bw};

lt_tensor *lt_drop_path(lt_graph *g, lt_tensor *x, float p) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    if (!(p >= 0.0f && p < 1.0f))
        return lt_graph_fail(g, LT_ERR_ARG, "drop_path: p must be in [0, 1), got %g", p);
    /* identity: no node, no draw, no copy */
    if (p == 0.0f || lt_graph_mode(g) != LT_MODE_TRAIN) return x;
    if (x->ndim < 1 || x->shape[0] < 1) {
        char sx[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "drop_path: input %s has no batch dimension",
                             lt_shape_str(x->shape, x->ndim, sx, sizeof sx));
    }
    if (!lt_graph_rng(g))
        return lt_graph_fail(g, LT_ERR_ARG, "drop_path: the training graph was created without an rng");
    lt_tensor *out = lt_graph_new_tensor(g, x->shape, x->ndim);
    lt_node *n = lt_graph_add_node(g, &drop_path_op, out, &x, 1);
    if (!n) return NULL;
    n->fp[0] = p;
    n->saved_numel = x->shape[0];
    n->bw_skip_in = 1u; /* backward reads only the saved factors */
    n->bw_skip_out = 1;
    return out;
}
