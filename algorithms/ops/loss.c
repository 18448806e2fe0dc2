/* loss.c - cross-entropy, L1, generalized IoU, sum and mean: the ops that end a training graph.
 *
 * Losses reduce to a scalar of shape (1); reductions accumulate in double so a 512x512 segmentation mask
 * sums to the same value regardless of the thread count's rounding. */
#include "ops.h"

#include <math.h>
#include <string.h>

/* ---- cross-entropy ---- */

/* The class a target value names, or -1 when the position is not counted: the ignore_index, or a label
 * outside [0, C) or not an integer. Such labels are skipped rather than trusted: the builder never sees
 * data, so the task layer validates labels when it loads them and this is only the last line of defence
 * against an out-of-bounds read. */
static int64_t ce_class(float t, int ignore_index, int64_t C) {
    if (t == (float)ignore_index) return -1;
    if (!(t >= 0.0f && t < (float)C)) return -1; /* also rejects NaN */
    int64_t k = (int64_t)t;
    return (float)k == t ? k : -1;
}

/* Per position p = (n, s): lse[p] = log sum_c exp(logits[n, c, s]); loss = sum_p w[t_p] (lse[p] -
 * logits[n, t_p, s]) / sum_p w[t_p] over the counted positions. *denom receives the divisor (0: nothing
 * counted, the loss is 0). Positions not counted get lse 0. */
static void ce_forward(float *loss, float *lse, double *denom, const float *logits, const float *target,
                       const float *weight, int ignore_index, int64_t N, int64_t C, int64_t S) {
    // loss: (1), lse: (N*S), logits: (N, C, S), target: (N, S), weight: (C) or NULL
    double lsum = 0.0, wsum = 0.0;
#pragma omp parallel for reduction(+ : lsum, wsum) schedule(static)
    for (int64_t p = 0; p < N * S; p++) {
        int64_t n = p / S, s = p % S;
        int64_t t = ce_class(target[p], ignore_index, C);
        if (t < 0) {
            lse[p] = 0.0f;
            continue;
        }
        const float *x = logits + n * C * S + s; /* class c at x[c * S] */
        float mx = x[0];
        for (int64_t c = 1; c < C; c++)
            mx = fmaxf(mx, x[c * S]);
        float sum = 0.0f;
        for (int64_t c = 0; c < C; c++)
            sum += expf(x[c * S] - mx);
        float l = mx + logf(sum);
        lse[p] = l;
        double w = weight ? (double)weight[t] : 1.0;
        lsum += w * ((double)l - (double)x[t * S]);
        wsum += w;
    }
    *denom = wsum;
    loss[0] = wsum != 0.0 ? (float)(lsum / wsum) : 0.0f;
}

/* Differentiates loss = sum_p w_p (lse_p - x[p, t_p]) / W with W = sum_p w_p:
 * dlogits[n, c, s] += dloss * w_p / W * (softmax_c - [c == t_p]);
 * dweight[k] += dloss * sum_{p: t_p = k} (lse_p - x[p, t_p] - loss) / W. */
static void ce_backward(float *dlogits, float *dweight, float dloss, const float *logits, const float *target,
                        const float *weight, const float *lse, double denom, double loss, int ignore_index,
                        int64_t N, int64_t C, int64_t S) {
    // dlogits: (N, C, S) or NULL, dweight: (C) or NULL, logits: (N, C, S), target, lse: (N, S)
    if (denom == 0.0) return; /* nothing counted: the loss is the constant 0 */
    const double scale = (double)dloss / denom;
    if (dlogits) {
#pragma omp parallel for schedule(static)
        for (int64_t p = 0; p < N * S; p++) {
            int64_t n = p / S, s = p % S;
            int64_t t = ce_class(target[p], ignore_index, C);
            if (t < 0) continue;
            const float *x = logits + n * C * S + s;
            float *dx = dlogits + n * C * S + s;
            float g = (float)(scale * (weight ? (double)weight[t] : 1.0));
            for (int64_t c = 0; c < C; c++)
                dx[c * S] += g * expf(x[c * S] - lse[p]);
            dx[t * S] -= g;
        }
    }
    if (dweight) { /* serial: several positions share a class; only tests train class weights */
        for (int64_t p = 0; p < N * S; p++) {
            int64_t t = ce_class(target[p], ignore_index, C);
            if (t < 0) continue;
            const float *x = logits + (p / S) * C * S + p % S;
            dweight[t] += (float)(scale * ((double)lse[p] - (double)x[t * S] - loss));
        }
    }
}

/* saved: lse (N*S floats), then the divisor and the loss as two doubles (4 slots). */
static void ce_fw(lt_node *n, const lt_exec *x) {
    const lt_tensor *lg = n->in[0];
    int64_t N = n->ip[0], C = n->ip[1], S = n->ip[2];
    double denom;
    ce_forward(n->out->data, n->saved, &denom, lg->data, n->in[1]->data, n->in[2] ? n->in[2]->data : NULL,
               (int)n->ip[3], N, C, S);
    double tail[2] = {denom, (double)n->out->data[0]};
    memcpy(n->saved + N * S, tail, sizeof tail);
}

static void ce_bw(lt_node *n, const lt_exec *x) {
    int64_t N = n->ip[0], C = n->ip[1], S = n->ip[2];
    double tail[2];
    memcpy(tail, n->saved + N * S, sizeof tail);
    const lt_tensor *w = n->in[2];
    ce_backward(n->in[0]->grad, w ? w->grad : NULL, n->out->grad[0], n->in[0]->data, n->in[1]->data,
                w ? w->data : NULL, n->saved, tail[0], tail[1], (int)n->ip[3], N, C, S);
}

static const lt_op ce_op = {"cross_entropy", ce_fw, ce_bw};

/* No gradient flows into target; class_weight gets one only when it requires a gradient (tests). */
lt_tensor *lt_cross_entropy(lt_graph *g, lt_tensor *logits, lt_tensor *target, lt_tensor *class_weight,
                            int ignore_index) {
    lt_tensor *req[2] = {logits, target};
    if (lt_graph_failed(g, req, 2)) return NULL;
    char a[96], b[96], c[96];
    if (logits->ndim < 2 || logits->shape[1] < 1)
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "cross_entropy: logits %s must be (N, C) or (N, C, H, W) with C >= 1",
                             lt_shape_str(logits->shape, logits->ndim, a, 96));
    int64_t want[LT_MAX_DIMS];
    int tnd = logits->ndim - 1;
    want[0] = logits->shape[0];
    for (int i = 1; i < tnd; i++)
        want[i] = logits->shape[i + 1];
    int ok = target->ndim == tnd;
    for (int i = 0; ok && i < tnd; i++)
        ok = target->shape[i] == want[i];
    if (!ok)
        return lt_graph_fail(g, LT_ERR_SHAPE, "cross_entropy: logits %s need target %s, got %s",
                             lt_shape_str(logits->shape, logits->ndim, a, 96), lt_shape_str(want, tnd, b, 96),
                             lt_shape_str(target->shape, target->ndim, c, 96));
    int64_t C = logits->shape[1];
    if (class_weight && (class_weight->ndim != 1 || class_weight->shape[0] != C))
        return lt_graph_fail(g, LT_ERR_SHAPE, "cross_entropy: class_weight %s must be (%lld) for logits %s",
                             lt_shape_str(class_weight->shape, class_weight->ndim, a, 96), (long long)C,
                             lt_shape_str(logits->shape, logits->ndim, b, 96));
    int64_t one = 1, S = target->numel / (logits->shape[0] ? logits->shape[0] : 1);
    lt_tensor *out = lt_graph_new_tensor(g, &one, 1);
    lt_tensor *in[3] = {logits, target, class_weight};
    lt_node *n = lt_graph_add_node(g, &ce_op, out, in, 3);
    if (!n) return NULL;
    n->ip[0] = logits->shape[0];
    n->ip[1] = C;
    n->ip[2] = S;
    n->ip[3] = ignore_index;
    n->saved_numel = target->numel + 4;
    n->bw_skip_out = 1; /* the loss value the weight gradient needs is in saved */
    return out;
}

/* ---- L1 ---- */

/* loss = mean |pred - target|. */
static void l1_forward(float *loss, const float *pred, const float *target, int64_t n) {
    // loss: (1), pred, target: (n)
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; i++)
        s += fabs((double)pred[i] - (double)target[i]);
    loss[0] = n > 0 ? (float)(s / (double)n) : 0.0f;
}

/* d|p - t|/dp = sign(p - t), 0 at p == t as torch's sign. */
static void l1_backward(float *dpred, float *dtarget, float dloss, const float *pred, const float *target,
                        int64_t n) {
    // dpred, dtarget: (n) or NULL, pred, target: (n)
    if (n == 0) return;
    const float g = dloss / (float)n;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float d = pred[i] > target[i] ? g : (pred[i] < target[i] ? -g : 0.0f);
        if (dpred) dpred[i] += d;
        if (dtarget) dtarget[i] -= d;
    }
}

static void l1_fw(lt_node *n, const lt_exec *x) {
    l1_forward(n->out->data, n->in[0]->data, n->in[1]->data, n->in[0]->numel);
}

static void l1_bw(lt_node *n, const lt_exec *x) {
    l1_backward(n->in[0]->grad, n->in[1]->grad, n->out->grad[0], n->in[0]->data, n->in[1]->data,
                n->in[0]->numel);
}

static const lt_op l1_op = {"l1_loss", l1_fw, l1_bw};

lt_tensor *lt_l1_loss(lt_graph *g, lt_tensor *pred, lt_tensor *target) {
    lt_tensor *in[2] = {pred, target};
    if (lt_graph_failed(g, in, 2)) return NULL;
    if (!lt_same_shape(pred, target)) {
        char a[96], b[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "l1_loss: pred %s and target %s differ",
                             lt_shape_str(pred->shape, pred->ndim, a, 96),
                             lt_shape_str(target->shape, target->ndim, b, 96));
    }
    int64_t one = 1;
    lt_tensor *out = lt_graph_new_tensor(g, &one, 1);
    lt_node *n = lt_graph_add_node(g, &l1_op, out, in, 2);
    if (!n) return NULL;
    n->bw_skip_out = 1;
    return out;
}

/* ---- generalized IoU ---- */

/* torch.maximum's gradient: to the larger argument, split evenly on a tie (as torch 1.13 does). */
static void max_grad(double x, double y, double g, double *dx, double *dy) {
    if (x > y)
        *dx += g;
    else if (x < y)
        *dy += g;
    else {
        *dx += 0.5 * g;
        *dy += 0.5 * g;
    }
}

static void min_grad(double x, double y, double g, double *dx, double *dy) {
    max_grad(-x, -y, g, dx, dy);
}

/* The terms of one pair, torchvision's generalized_box_iou on the diagonal:
 * inter = clamp(min(ax1, bx1) - max(ax0, bx0), 0) * clamp(min(ay1, by1) - max(ay0, by0), 0)
 * uni = area(a) + area(b) - inter; hull = clamp(max(ax1, bx1) - min(ax0, bx0), 0) * (same in y)
 * giou = inter / uni - (hull - uni) / hull.
 * Degenerate pairs where torch divides 0 by 0 get 0 for that term instead of NaN: uni == 0 (both boxes
 * empty) drops the IoU term, hull == 0 drops the enclosure term, and neither passes a gradient. */
typedef struct {
    double aw, ah, bw, bh;   /* box widths and heights */
    double iw, ih, cw, ch;   /* intersection sides before and after clamping at 0 */
    double hw, hh, chw, chh; /* hull sides before and after clamping at 0 */
    double inter, uni, hull;
} giou_terms;

static giou_terms giou_compute(const float *a, const float *b) {
    giou_terms t;
    t.aw = (double)a[2] - a[0];
    t.ah = (double)a[3] - a[1];
    t.bw = (double)b[2] - b[0];
    t.bh = (double)b[3] - b[1];
    t.iw = fmin(a[2], b[2]) - fmax(a[0], b[0]);
    t.ih = fmin(a[3], b[3]) - fmax(a[1], b[1]);
    t.cw = fmax(t.iw, 0.0);
    t.ch = fmax(t.ih, 0.0);
    t.hw = fmax(a[2], b[2]) - fmin(a[0], b[0]);
    t.hh = fmax(a[3], b[3]) - fmin(a[1], b[1]);
    t.chw = fmax(t.hw, 0.0);
    t.chh = fmax(t.hh, 0.0);
    t.inter = t.cw * t.ch;
    t.uni = t.aw * t.ah + t.bw * t.bh - t.inter;
    t.hull = t.chw * t.chh;
    return t;
}

static void giou_forward(float *out, const float *a, const float *b, int64_t n) {
    // out: (n), a, b: (n, 4) as (x0, y0, x1, y1)
    for (int64_t i = 0; i < n; i++) {
        giou_terms t = giou_compute(a + 4 * i, b + 4 * i);
        double iou = t.uni != 0.0 ? t.inter / t.uni : 0.0;
        double encl = t.hull != 0.0 ? (t.hull - t.uni) / t.hull : 0.0;
        out[i] = (float)(iou - encl);
    }
}

static void giou_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                          int64_t n) {
    // da, db: (n, 4) or NULL, dout: (n), a, b: (n, 4)
    for (int64_t i = 0; i < n; i++) {
        const float *pa = a + 4 * i, *pb = b + 4 * i;
        giou_terms t = giou_compute(pa, pb);
        double g = dout[i], d_inter = 0, d_uni = 0, d_hull = 0;
        if (t.uni != 0.0) { /* iou = inter / uni */
            d_inter += g / t.uni;
            d_uni -= g * t.inter / (t.uni * t.uni);
        }
        if (t.hull != 0.0) { /* -(hull - uni) / hull = uni / hull - 1 */
            d_uni += g / t.hull;
            d_hull -= g * t.uni / (t.hull * t.hull);
        }
        /* uni = aw ah + bw bh - inter */
        d_inter -= d_uni;
        double ga[4] = {-d_uni * t.ah, -d_uni * t.aw, d_uni * t.ah, d_uni * t.aw}; /* area(a) = aw ah */
        double gb[4] = {-d_uni * t.bh, -d_uni * t.bw, d_uni * t.bh, d_uni * t.bw};
        /* inter = clamp(iw, 0) clamp(ih, 0); torch's clamp passes the gradient at the bound itself */
        double d_iw = t.iw >= 0.0 ? d_inter * t.ch : 0.0, d_ih = t.ih >= 0.0 ? d_inter * t.cw : 0.0;
        min_grad(pa[2], pb[2], d_iw, &ga[2], &gb[2]);
        max_grad(pa[0], pb[0], -d_iw, &ga[0], &gb[0]);
        min_grad(pa[3], pb[3], d_ih, &ga[3], &gb[3]);
        max_grad(pa[1], pb[1], -d_ih, &ga[1], &gb[1]);
        /* hull = clamp(hw, 0) clamp(hh, 0) */
        double d_hw = t.hw >= 0.0 ? d_hull * t.chh : 0.0, d_hh = t.hh >= 0.0 ? d_hull * t.chw : 0.0;
        max_grad(pa[2], pb[2], d_hw, &ga[2], &gb[2]);
        min_grad(pa[0], pb[0], -d_hw, &ga[0], &gb[0]);
        max_grad(pa[3], pb[3], d_hh, &ga[3], &gb[3]);
        min_grad(pa[1], pb[1], -d_hh, &ga[1], &gb[1]);
        for (int k = 0; k < 4; k++) {
            if (da) da[4 * i + k] += (float)ga[k];
            if (db) db[4 * i + k] += (float)gb[k];
        }
    }
}

static void giou_fw(lt_node *n, const lt_exec *x) {
    giou_forward(n->out->data, n->in[0]->data, n->in[1]->data, n->out->numel);
}

static void giou_bw(lt_node *n, const lt_exec *x) {
    giou_backward(n->in[0]->grad, n->in[1]->grad, n->out->grad, n->in[0]->data, n->in[1]->data,
                  n->out->numel);
}

static const lt_op giou_op = {"giou", giou_fw, giou_bw};

lt_tensor *lt_giou(lt_graph *g, lt_tensor *a, lt_tensor *b) {
    lt_tensor *in[2] = {a, b};
    if (lt_graph_failed(g, in, 2)) return NULL;
    if (a->ndim != 2 || a->shape[1] != 4 || !lt_same_shape(a, b)) {
        char sa[96], sb[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "giou: boxes %s and %s must both be (N, 4)",
                             lt_shape_str(a->shape, a->ndim, sa, 96),
                             lt_shape_str(b->shape, b->ndim, sb, 96));
    }
    lt_tensor *out = lt_graph_new_tensor(g, a->shape, 1);
    lt_node *n = lt_graph_add_node(g, &giou_op, out, in, 2);
    if (!n) return NULL;
    n->bw_skip_out = 1;
    return out;
}

/* ---- sum and mean ---- */

/* out = scale * sum(x); scale is 1 for sum, 1/numel for mean. */
static void reduce_forward(float *out, const float *x, int64_t n, double scale) {
    // out: (1), x: (n)
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static)
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    out[0] = (float)(s * scale);
}

static void reduce_backward(float *dx, float dout, int64_t n, double scale) {
    // dx: (n)
    const float g = (float)(dout * scale);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] += g;
}

/* ip[0]: 1 for mean. The mean of an empty tensor is 0 here (torch: NaN). */
static double reduce_scale(const lt_node *n) {
    int64_t numel = n->in[0]->numel;
    return n->ip[0] && numel > 0 ? 1.0 / (double)numel : (n->ip[0] ? 0.0 : 1.0);
}

static void reduce_fw(lt_node *n, const lt_exec *x) {
    reduce_forward(n->out->data, n->in[0]->data, n->in[0]->numel, reduce_scale(n));
}

static void reduce_bw(lt_node *n, const lt_exec *x) {
    if (n->in[0]->grad) reduce_backward(n->in[0]->grad, n->out->grad[0], n->in[0]->numel, reduce_scale(n));
}

static const lt_op sum_op = {"sum", reduce_fw, reduce_bw};
static const lt_op mean_op = {"mean", reduce_fw, reduce_bw};

static lt_tensor *reduce_build(lt_graph *g, const lt_op *op, lt_tensor *x, int mean) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    int64_t one = 1;
    lt_tensor *out = lt_graph_new_tensor(g, &one, 1);
    lt_node *n = lt_graph_add_node(g, op, out, &x, 1);
    if (!n) return NULL;
    n->ip[0] = mean;
    n->bw_skip_in = 1u;
    n->bw_skip_out = 1;
    return out;
}

lt_tensor *lt_sum(lt_graph *g, lt_tensor *x) {
    return reduce_build(g, &sum_op, x, 0);
}

lt_tensor *lt_mean(lt_graph *g, lt_tensor *x) {
    return reduce_build(g, &mean_op, x, 1);
}
