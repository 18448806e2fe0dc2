/* shape.c - reshaping views and the copies that move data between layouts: concat, permute, transpose,
 * slice. (The full reductions sum and mean live in loss.c.)
 *
 * lt_reshape and lt_flatten make views (lt_graph_view): no node, no copy, data and grad shared.
 * lt_permute first simplifies the permutation (drops size-1 dimensions and merges dimensions that stay
 * adjacent), so NCHW <-> NHWC and (0, 2, 1) all become a batched 2-D transpose done in cache-sized tiles;
 * permutations that keep the last dimension copy contiguous rows; the rest walk the output in order.
 *
 * Test hook: node->ip[LT_NODE_IP - 1] = 1 switches a permute node to the naive reference kernel. */
#include "ops.h"

#include <string.h>

#define SHAPE_IP_REFERENCE (LT_NODE_IP - 1)
#define PERMUTE_TILE 32
/* below this many elements a copy runs on one thread: waking the team costs more than the copy */
#define SHAPE_PAR_MIN 4096

static int norm_axis(int axis, int ndim) {
    return axis < 0 ? axis + ndim : axis;
}

/* ---- concat ---- */

/* out (outer, sum_i len_i * inner) = [x_0 | x_1 | ...] with x_i (outer, len_i * inner) */
static void concat_forward(float *out, float *const *xs, const int64_t *lens, int n, int64_t outer,
                           int64_t inner, int64_t total) {
#pragma omp parallel for if (outer * total * inner >= SHAPE_PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        float *dst = out + o * total * inner;
        for (int i = 0; i < n; i++) {
            memcpy(dst, xs[i] + o * lens[i] * inner, (size_t)(lens[i] * inner) * sizeof *dst);
            dst += lens[i] * inner;
        }
    }
}

/* dxs[i] (outer, len_i * inner) += the matching columns of dout; NULL entries are skipped */
static void concat_backward(float *const *dxs, const float *dout, const int64_t *lens, int n, int64_t outer,
                            int64_t inner, int64_t total) {
#pragma omp parallel for if (outer * total * inner >= SHAPE_PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        const float *src = dout + o * total * inner;
        for (int i = 0; i < n; i++) {
            int64_t len = lens[i] * inner;
            if (dxs[i]) {
                float *dx = dxs[i] + o * len;
                for (int64_t j = 0; j < len; j++)
                    dx[j] += src[j];
            }
            src += len;
        }
    }
}

/* ip: outer, inner, total, len_0 .. len_{n-1} */
static void concat_fw(lt_node *n, const lt_exec *e) {
    float *xs[LT_NODE_MAX_IN];
    for (int i = 0; i < n->n_in; i++)
        xs[i] = n->in[i]->data;
    concat_forward(n->out->data, xs, n->ip + 3, n->n_in, n->ip[0], n->ip[1], n->ip[2]);
}

static void concat_bw(lt_node *n, const lt_exec *e) {
    float *dxs[LT_NODE_MAX_IN];
    for (int i = 0; i < n->n_in; i++)
        dxs[i] = n->in[i]->grad;
    concat_backward(dxs, n->out->grad, n->ip + 3, n->n_in, n->ip[0], n->ip[1], n->ip[2]);
}

static const lt_op concat_op = {"concat", concat_fw, concat_bw};

lt_tensor *lt_concat(lt_graph *g, lt_tensor *const *xs, int n, int axis) {
    if (n < 1) return lt_graph_fail(g, LT_ERR_ARG, "concat: needs at least one tensor, got %d", n);
    if (lt_graph_failed(g, xs, n)) return NULL;
    /* a node holds at most LT_NODE_MAX_IN inputs: concatenate longer lists in chunks, left to right */
    if (n > LT_NODE_MAX_IN) {
        lt_tensor *head = lt_concat(g, xs, LT_NODE_MAX_IN, axis);
        lt_tensor *rest[LT_NODE_MAX_IN];
        int done = LT_NODE_MAX_IN;
        while (head && done < n) {
            int k = n - done < LT_NODE_MAX_IN - 1 ? n - done : LT_NODE_MAX_IN - 1;
            rest[0] = head;
            memcpy(rest + 1, xs + done, (size_t)k * sizeof *rest);
            head = lt_concat(g, rest, k + 1, axis);
            done += k;
        }
        return head;
    }
    const lt_tensor *x0 = xs[0];
    int nd = x0->ndim, ax = norm_axis(axis, nd);
    char s0[96], si[96];
    lt_shape_str(x0->shape, nd, s0, 96);
    if (ax < 0 || ax >= nd)
        return lt_graph_fail(g, LT_ERR_ARG, "concat: axis %d is out of range for %s", axis, s0);
    int64_t shape[LT_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) {
        int ok = xs[i]->ndim == nd;
        for (int d = 0; ok && d < nd; d++)
            ok = d == ax || xs[i]->shape[d] == x0->shape[d];
        if (!ok)
            return lt_graph_fail(g, LT_ERR_SHAPE,
                                 "concat: tensor %d %s does not match tensor 0 %s outside axis %d", i,
                                 lt_shape_str(xs[i]->shape, xs[i]->ndim, si, 96), s0, ax);
        shape[ax] += xs[i]->shape[ax];
    }
    lt_tensor *out = lt_graph_new_tensor(g, shape, nd);
    lt_node *node = lt_graph_add_node(g, &concat_op, out, xs, n);
    if (!node) return NULL;
    node->ip[0] = lt_shape_numel(shape, ax);
    node->ip[1] = lt_shape_numel(shape + ax + 1, nd - ax - 1);
    node->ip[2] = shape[ax];
    for (int i = 0; i < n; i++)
        node->ip[3 + i] = xs[i]->shape[ax];
    node->bw_skip_in = (1u << n) - 1u; /* a copy: backward reads only gradients */
    node->bw_skip_out = 1;
    return out;
}

/* ---- views ---- */

lt_tensor *lt_reshape(lt_graph *g, lt_tensor *x, const int64_t *shape, int ndim) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    char sx[96], ss[96];
    if (ndim < 1 || ndim > LT_MAX_DIMS)
        return lt_graph_fail(g, LT_ERR_SHAPE, "reshape: rank %d of the new shape is outside 1..%d", ndim,
                             LT_MAX_DIMS);
    /* one dimension may be -1, inferred from the others as torch.reshape does */
    int64_t s[LT_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0)
            infer = i;
        else if (s[i] < 0)
            return lt_graph_fail(g, LT_ERR_SHAPE, "reshape: bad shape %s for %s",
                                 lt_shape_str(shape, ndim, ss, 96), lt_shape_str(x->shape, x->ndim, sx, 96));
        else
            known *= s[i];
    }
    if (infer >= 0) s[infer] = known > 0 && x->numel % known == 0 ? x->numel / known : -1;
    if (infer >= 0 && s[infer] < 0)
        return lt_graph_fail(g, LT_ERR_SHAPE, "reshape: cannot view %s as %s",
                             lt_shape_str(x->shape, x->ndim, sx, 96), lt_shape_str(shape, ndim, ss, 96));
    return lt_graph_view(g, x, s, ndim);
}

lt_tensor *lt_flatten(lt_graph *g, lt_tensor *x, int start_dim, int end_dim) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    int nd = x->ndim, s = norm_axis(start_dim, nd), e = norm_axis(end_dim, nd);
    if (s < 0 || e >= nd || s > e) {
        char sx[96];
        return lt_graph_fail(g, LT_ERR_ARG, "flatten: dims %d..%d do not fit %s", start_dim, end_dim,
                             lt_shape_str(x->shape, nd, sx, 96));
    }
    int64_t shape[LT_MAX_DIMS];
    int k = 0;
    for (int i = 0; i < s; i++)
        shape[k++] = x->shape[i];
    shape[k++] = lt_shape_numel(x->shape + s, e - s + 1);
    for (int i = e + 1; i < nd; i++)
        shape[k++] = x->shape[i];
    return lt_graph_view(g, x, shape, k);
}

/* ---- permute ---- */

/* dst = (or +=) src moved so that dst.shape[i] = shape[perm[i]]; shape is src's. Naive reference: one
 * element at a time, source offset from the output coordinates. */
static void permute_ref(float *dst, const float *src, const int64_t *shape, int nd, const int *perm,
                        int add) {
    int64_t stride[LT_MAX_DIMS], idx[LT_MAX_DIMS] = {0}, numel = lt_shape_numel(shape, nd);
    stride[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--)
        stride[i] = stride[i + 1] * shape[i + 1];
    for (int64_t o = 0; o < numel; o++) {
        int64_t off = 0;
        for (int i = 0; i < nd; i++)
            off += idx[i] * stride[perm[i]];
        dst[o] = add ? dst[o] + src[off] : src[off];
        for (int i = nd - 1; i >= 0; i--) {
            if (++idx[i] < shape[perm[i]]) break;
            idx[i] = 0;
        }
    }
}

/* dst (B, C, R) = (or +=) src (B, R, C) transposed per batch, in TILE x TILE blocks so both sides stream
 * through cache lines. */
static void permute_transpose(float *dst, const float *src, int64_t B, int64_t R, int64_t C, int add) {
    const int64_t TILE = PERMUTE_TILE, tr = (R + TILE - 1) / TILE, tc = (C + TILE - 1) / TILE;
#pragma omp parallel for collapse(2) if (B * R * C >= SHAPE_PAR_MIN)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < tr * tc; t++) {
            int64_t r0 = (t % tr) * TILE, c0 = (t / tr) * TILE;
            int64_t r1 = r0 + TILE < R ? r0 + TILE : R, c1 = c0 + TILE < C ? c0 + TILE : C;
            const float *s = src + b * R * C;
            float *d = dst + b * R * C;
            for (int64_t c = c0; c < c1; c++) {
                if (add)
                    for (int64_t r = r0; r < r1; r++)
                        d[c * R + r] += s[r * C + c];
                else
                    for (int64_t r = r0; r < r1; r++)
                        d[c * R + r] = s[r * C + c];
            }
        }
}

/* General case: each output row (the last output dimension) reads the source with a fixed stride; stride 1
 * when the permutation keeps the last dimension. Rows are split over threads. */
static void permute_rows(float *dst, const float *src, const int64_t *shape, int nd, const int *perm,
                         int add) {
    int64_t stride[LT_MAX_DIMS], oshape[LT_MAX_DIMS];
    stride[nd - 1] = 1;
    for (int i = nd - 2; i >= 0; i--)
        stride[i] = stride[i + 1] * shape[i + 1];
    for (int i = 0; i < nd; i++)
        oshape[i] = shape[perm[i]];
    const int64_t L = oshape[nd - 1], step = stride[perm[nd - 1]], rows = lt_shape_numel(oshape, nd - 1);
#pragma omp parallel for if (rows * L >= SHAPE_PAR_MIN)
    for (int64_t row = 0; row < rows; row++) {
        int64_t off = 0, rem = row;
        for (int i = nd - 2; i >= 0; i--) {
            off += (rem % oshape[i]) * stride[perm[i]];
            rem /= oshape[i];
        }
        const float *s = src + off;
        float *d = dst + row * L;
        if (add)
            for (int64_t j = 0; j < L; j++)
                d[j] += s[j * step];
        else if (step == 1)
            memcpy(d, s, (size_t)L * sizeof *d);
        else
            for (int64_t j = 0; j < L; j++)
                d[j] = s[j * step];
    }
}

/* Rewrites (shape, perm) into the fewest dimensions that describe the same move: size-1 dimensions are
 * dropped and output dimensions that read consecutive source dimensions are merged. Returns the new rank
 * (>= 1). */
static int permute_simplify(const int64_t *shape, int nd, const int *perm, int64_t *sshape, int *sperm) {
    int keep[LT_MAX_DIMS], nk = 0; /* output positions whose source dimension is not 1 */
    for (int i = 0; i < nd; i++)
        if (shape[perm[i]] != 1) keep[nk++] = perm[i];
    if (nk == 0) {
        sshape[0] = 1;
        sperm[0] = 0;
        return 1;
    }
    /* groups of consecutive source dims, in output order: group g starts at source dim first[g] */
    int first[LT_MAX_DIMS], last[LT_MAX_DIMS], ng = 0;
    for (int i = 0; i < nk; i++) {
        if (ng > 0 && keep[i] == last[ng - 1] + 1) {
            last[ng - 1] = keep[i];
        } else {
            /* source dims between last and keep[i] may be size-1 ones that were dropped: merging across
             * them is fine too */
            int merge = ng > 0 && keep[i] > last[ng - 1];
            for (int s = ng > 0 ? last[ng - 1] + 1 : 0; merge && s < keep[i]; s++)
                merge = shape[s] == 1;
            if (merge) {
                last[ng - 1] = keep[i];
            } else {
                first[ng] = last[ng] = keep[i];
                ng++;
            }
        }
    }
    /* number the groups by their position in the source: rank of first[g] among all firsts */
    for (int gi = 0; gi < ng; gi++) {
        int rank = 0;
        for (int gj = 0; gj < ng; gj++)
            rank += first[gj] < first[gi];
        sperm[gi] = rank;
        int64_t size = 1;
        for (int s = first[gi]; s <= last[gi]; s++)
            size *= shape[s];
        sshape[rank] = size;
    }
    return ng;
}

/* dst = (or +=) permute(src); shape is src's (nd dims) */
static void permute_forward(float *dst, const float *src, const int64_t *shape, int nd, const int *perm,
                            int add) {
    int64_t s[LT_MAX_DIMS];
    int p[LT_MAX_DIMS];
    int n = permute_simplify(shape, nd, perm, s, p);
    if (n == 1) {
        int64_t numel = s[0];
        if (add) {
#pragma omp parallel for if (numel >= SHAPE_PAR_MIN)
            for (int64_t i = 0; i < numel; i++)
                dst[i] += src[i];
        } else {
            memcpy(dst, src, (size_t)numel * sizeof *dst);
        }
    } else if (n == 2 && p[0] == 1) {
        permute_transpose(dst, src, 1, s[0], s[1], add);
    } else if (n == 3 && p[0] == 0 && p[1] == 2) {
        permute_transpose(dst, src, s[0], s[1], s[2], add);
    } else {
        permute_rows(dst, src, s, n, p, add);
    }
}

/* ip: ndim, x's shape (ip[1..5]), perm (ip[6..10]); the inverse is rebuilt for backward */
static void permute_unpack(const lt_node *n, int64_t *shape, int *perm, int *inv) {
    int nd = (int)n->ip[0];
    for (int i = 0; i < nd; i++) {
        shape[i] = n->ip[1 + i];
        perm[i] = (int)n->ip[6 + i];
        inv[perm[i]] = i;
    }
}

static void permute_fw(lt_node *n, const lt_exec *e) {
    int64_t shape[LT_MAX_DIMS];
    int perm[LT_MAX_DIMS], inv[LT_MAX_DIMS];
    permute_unpack(n, shape, perm, inv);
    if (n->ip[SHAPE_IP_REFERENCE])
        permute_ref(n->out->data, n->in[0]->data, shape, (int)n->ip[0], perm, 0);
    else
        permute_forward(n->out->data, n->in[0]->data, shape, (int)n->ip[0], perm, 0);
}

static void permute_bw(lt_node *n, const lt_exec *e) {
    if (!n->in[0]->grad) return;
    int64_t shape[LT_MAX_DIMS];
    int perm[LT_MAX_DIMS], inv[LT_MAX_DIMS];
    permute_unpack(n, shape, perm, inv);
    /* out = permute(x, perm)  =>  dx += permute(dout, inverse perm) */
    if (n->ip[SHAPE_IP_REFERENCE])
        permute_ref(n->in[0]->grad, n->out->grad, n->out->shape, (int)n->ip[0], inv, 1);
    else
        permute_forward(n->in[0]->grad, n->out->grad, n->out->shape, (int)n->ip[0], inv, 1);
}

static const lt_op permute_op = {"permute", permute_fw, permute_bw};

lt_tensor *lt_permute(lt_graph *g, lt_tensor *x, const int *perm) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    int nd = x->ndim, seen = 0;
    int64_t shape[LT_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int p = norm_axis(perm[i], nd);
        if (p < 0 || p >= nd || (seen & (1 << p))) {
            char sx[96];
            return lt_graph_fail(g, LT_ERR_ARG,
                                 "permute: entry %d (%d) is not a permutation of the dims of %s", i, perm[i],
                                 lt_shape_str(x->shape, nd, sx, 96));
        }
        seen |= 1 << p;
        shape[i] = x->shape[p];
    }
    lt_tensor *out = lt_graph_new_tensor(g, shape, nd);
    lt_node *n = lt_graph_add_node(g, &permute_op, out, &x, 1);
    if (!n) return NULL;
    n->ip[0] = nd;
    for (int i = 0; i < nd; i++) {
        n->ip[1 + i] = x->shape[i];
        n->ip[6 + i] = norm_axis(perm[i], nd);
    }
    n->bw_skip_in = 1u;
    n->bw_skip_out = 1;
    return out;
}

lt_tensor *lt_transpose(lt_graph *g, lt_tensor *x, int d0, int d1) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    int nd = x->ndim, a = norm_axis(d0, nd), b = norm_axis(d1, nd);
    if (a < 0 || a >= nd || b < 0 || b >= nd) {
        char sx[96];
        return lt_graph_fail(g, LT_ERR_ARG, "transpose: dims %d, %d are out of range for %s", d0, d1,
                             lt_shape_str(x->shape, nd, sx, 96));
    }
    int perm[LT_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return lt_permute(g, x, perm);
}

/* ---- slice ---- */

/* out (outer, len, inner) = x (outer, dim, inner)[:, start:start+len, :] */
static void slice_forward(float *out, const float *x, int64_t outer, int64_t dim, int64_t inner,
                          int64_t start, int64_t len) {
#pragma omp parallel for if (outer * len * inner >= SHAPE_PAR_MIN)
    for (int64_t o = 0; o < outer; o++)
        memcpy(out + o * len * inner, x + (o * dim + start) * inner, (size_t)(len * inner) * sizeof *out);
}

static void slice_backward(float *dx, const float *dout, int64_t outer, int64_t dim, int64_t inner,
                           int64_t start, int64_t len) {
#pragma omp parallel for if (outer * len * inner >= SHAPE_PAR_MIN)
    for (int64_t o = 0; o < outer; o++) {
        float *d = dx + (o * dim + start) * inner;
        const float *s = dout + o * len * inner;
        for (int64_t j = 0; j < len * inner; j++)
            d[j] += s[j];
    }
}

/* ip: outer, dim, inner, start, len */
static void slice_fw(lt_node *n, const lt_exec *e) {
    slice_forward(n->out->data, n->in[0]->data, n->ip[0], n->ip[1], n->ip[2], n->ip[3], n->ip[4]);
}

static void slice_bw(lt_node *n, const lt_exec *e) {
    if (n->in[0]->grad)
        slice_backward(n->in[0]->grad, n->out->grad, n->ip[0], n->ip[1], n->ip[2], n->ip[3], n->ip[4]);
}

static const lt_op slice_op = {"slice", slice_fw, slice_bw};

lt_tensor *lt_slice(lt_graph *g, lt_tensor *x, int axis, int64_t start, int64_t len) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    int nd = x->ndim, ax = norm_axis(axis, nd);
    char sx[96];
    lt_shape_str(x->shape, nd, sx, 96);
    if (ax < 0 || ax >= nd)
        return lt_graph_fail(g, LT_ERR_ARG, "slice: axis %d is out of range for %s", axis, sx);
    if (start < 0 || len < 1 || start + len > x->shape[ax])
        return lt_graph_fail(g, LT_ERR_ARG, "slice: range [%lld, %lld) is outside axis %d of %s",
                             (long long)start, (long long)(start + len), ax, sx);
    int64_t shape[LT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = len;
    lt_tensor *out = lt_graph_new_tensor(g, shape, nd);
    lt_node *n = lt_graph_add_node(g, &slice_op, out, &x, 1);
    if (!n) return NULL;
    n->ip[0] = lt_shape_numel(x->shape, ax);
    n->ip[1] = x->shape[ax];
    n->ip[2] = lt_shape_numel(x->shape + ax + 1, nd - ax - 1);
    n->ip[3] = start;
    n->ip[4] = len;
    n->bw_skip_in = 1u;
    n->bw_skip_out = 1;
    return out;
}
