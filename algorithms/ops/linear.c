/* linear.c - nn.Linear and batched matrix products, as sgemm calls.
 *
 * lt_linear flattens every leading dimension of x into rows, so a (B, T, IN) sequence is one
 * (B*T, IN) x (IN, OUT) product. lt_matmul loops sgemm over the batch: OpenMP over the batch when it has
 * at least as many matrices as threads (each sgemm then runs single-threaded inside the region), else
 * one threaded sgemm after another.
 *
 * Test hook: node->ip[LT_NODE_IP - 1] = 1 switches a node to the naive reference kernels, so the tests can
 * compare the two through the graph. */
#include "ops.h"

#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <string.h>

#define LINEAR_IP_REFERENCE (LT_NODE_IP - 1)

/* ---- linear: out = x w^T + b ---- */

/* out (M, OUT), x (M, IN), w (OUT, IN), b (OUT) or NULL */
static void linear_forward(float *out, const float *x, const float *w, const float *b, int64_t M, int64_t IN,
                           int64_t OUT) {
    if (b) {
#pragma omp parallel for if (M * OUT >= 4096)
        for (int64_t m = 0; m < M; m++)
            memcpy(out + m * OUT, b, (size_t)OUT * sizeof *out);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)OUT, (int)IN, 1.0f, x, (int)IN, w,
                (int)IN, b ? 1.0f : 0.0f, out, (int)OUT);
}

/* dx (M, IN), dw (OUT, IN), db (OUT), any of them NULL; dout (M, OUT), x (M, IN), w (OUT, IN);
 * ones (M) scratch used to sum dout's columns with one gemv. */
static void linear_backward(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, float *ones, int64_t M, int64_t IN, int64_t OUT) {
    /* out = x w^T + b  =>  dx = dout w, dw = dout^T x, db = sum over rows of dout */
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)IN, (int)OUT, 1.0f, dout,
                    (int)OUT, w, (int)IN, 1.0f, dx, (int)IN);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OUT, (int)IN, (int)M, 1.0f, dout, (int)OUT,
                    x, (int)IN, 1.0f, dw, (int)IN);
    if (db) {
        for (int64_t m = 0; m < M; m++)
            ones[m] = 1.0f;
        cblas_sgemv(CblasRowMajor, CblasTrans, (int)M, (int)OUT, 1.0f, dout, (int)OUT, ones, 1, 1.0f, db, 1);
    }
}

/* Naive reference: out (M, OUT), x (M, IN), w (OUT, IN), b (OUT) or NULL. */
static void linear_forward_ref(float *out, const float *x, const float *w, const float *b, int64_t M,
                               int64_t IN, int64_t OUT) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < OUT; o++) {
            double s = b ? b[o] : 0.0;
            for (int64_t i = 0; i < IN; i++)
                s += (double)x[m * IN + i] * w[o * IN + i];
            out[m * OUT + o] = (float)s;
        }
}

static void linear_backward_ref(float *dx, float *dw, float *db, const float *dout, const float *x,
                                const float *w, int64_t M, int64_t IN, int64_t OUT) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t o = 0; o < OUT; o++) {
            float d = dout[m * OUT + o];
            if (db) db[o] += d;
            for (int64_t i = 0; i < IN; i++) {
                if (dx) dx[m * IN + i] += d * w[o * IN + i];
                if (dw) dw[o * IN + i] += d * x[m * IN + i];
            }
        }
}

/* in: x, w, b; ip[0] = M, ip[1] = IN, ip[2] = OUT */
static void linear_fw(lt_node *n, const lt_exec *e) {
    const float *b = n->in[2] ? n->in[2]->data : NULL;
    if (n->ip[LINEAR_IP_REFERENCE])
        linear_forward_ref(n->out->data, n->in[0]->data, n->in[1]->data, b, n->ip[0], n->ip[1], n->ip[2]);
    else
        linear_forward(n->out->data, n->in[0]->data, n->in[1]->data, b, n->ip[0], n->ip[1], n->ip[2]);
}

static void linear_bw(lt_node *n, const lt_exec *e) {
    float *db = n->in[2] ? n->in[2]->grad : NULL;
    if (n->ip[LINEAR_IP_REFERENCE])
        linear_backward_ref(n->in[0]->grad, n->in[1]->grad, db, n->out->grad, n->in[0]->data, n->in[1]->data,
                            n->ip[0], n->ip[1], n->ip[2]);
    else
        linear_backward(n->in[0]->grad, n->in[1]->grad, db, n->out->grad, n->in[0]->data, n->in[1]->data,
                        e->scratch, n->ip[0], n->ip[1], n->ip[2]);
}

static const lt_op linear_op = {"linear", linear_fw, linear_bw};

lt_tensor *lt_linear(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_tensor *b) {
    lt_tensor *req[2] = {x, w};
    if (lt_graph_failed(g, req, 2)) return NULL;
    char sx[96], sw[96], sb[96];
    lt_shape_str(x->shape, x->ndim, sx, 96);
    lt_shape_str(w->shape, w->ndim, sw, 96);
    if (x->ndim < 1 || w->ndim != 2 || w->shape[1] != x->shape[x->ndim - 1])
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "linear: input %s does not fit weight %s (want x (..., IN), w (OUT, IN))", sx,
                             sw);
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0]))
        return lt_graph_fail(g, LT_ERR_SHAPE, "linear: bias %s does not fit weight %s (want (OUT))",
                             lt_shape_str(b->shape, b->ndim, sb, 96), sw);
    int64_t IN = w->shape[1], OUT = w->shape[0], M = IN ? x->numel / IN : 0;
    if (M > INT_MAX || IN > INT_MAX || OUT > INT_MAX)
        return lt_graph_fail(g, LT_ERR_SHAPE, "linear: input %s or weight %s exceeds BLAS's int sizes", sx,
                             sw);
    int64_t shape[LT_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = OUT;
    lt_tensor *out = lt_graph_new_tensor(g, shape, x->ndim);
    lt_tensor *in[3] = {x, w, b};
    lt_node *n = lt_graph_add_node(g, &linear_op, out, in, 3);
    if (!n) return NULL;
    n->ip[0] = M;
    n->ip[1] = IN;
    n->ip[2] = OUT;
    n->scratch_numel = b && b->requires_grad ? M : 0;
    /* x is read only to form dw, w only to form dx; the bias and the output never */
    n->bw_skip_in = 4u | (w->requires_grad ? 0u : 1u) | (x->requires_grad ? 0u : 2u);
    n->bw_skip_out = 1;
    return out;
}

/* ---- matmul: out = op(a) op(b) per batch ---- */

typedef struct {
    int64_t batch, M, N, K;
    int ta, tb;
} matmul_dims;

/* Threads over the batch when every thread gets a matrix and the work repays waking the team; otherwise each
 * sgemm decides its own threading. */
static int matmul_batch_parallel(matmul_dims d) {
    return d.batch >= omp_get_max_threads() && d.batch * d.M * d.N * d.K >= 32768;
}

static CBLAS_TRANSPOSE tr(int t) {
    return t ? CblasTrans : CblasNoTrans;
}

/* out (batch, M, N); a (batch, M, K) or (batch, K, M) when ta; b (batch, K, N) or (batch, N, K) when tb */
static void matmul_forward(float *out, const float *a, const float *b, matmul_dims d) {
    const int M = (int)d.M, N = (int)d.N, K = (int)d.K, lda = d.ta ? M : K, ldb = d.tb ? K : N;
    const int64_t sa = d.M * d.K, sb = d.K * d.N, so = d.M * d.N;
#pragma omp parallel for if (matmul_batch_parallel(d))
    for (int64_t i = 0; i < d.batch; i++)
        cblas_sgemm(CblasRowMajor, tr(d.ta), tr(d.tb), M, N, K, 1.0f, a + i * sa, lda, b + i * sb, ldb, 0.0f,
                    out + i * so, N);
}

/* da, db (shapes of a, b) or NULL; dout (batch, M, N) */
static void matmul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                            matmul_dims d) {
    const int M = (int)d.M, N = (int)d.N, K = (int)d.K, lda = d.ta ? M : K, ldb = d.tb ? K : N;
    const int64_t sa = d.M * d.K, sb = d.K * d.N, so = d.M * d.N;
#pragma omp parallel for if (matmul_batch_parallel(d))
    for (int64_t i = 0; i < d.batch; i++) {
        const float *A = a + i * sa, *B = b + i * sb, *dC = dout + i * so;
        /* C = op(A) op(B)  =>  d op(A) = dC op(B)^T (M, K), d op(B) = op(A)^T dC (K, N) */
        if (da && !d.ta)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tr(!d.tb), M, K, N, 1.0f, dC, N, B, ldb, 1.0f,
                        da + i * sa, K);
        if (da && d.ta) /* dA = (dC op(B)^T)^T = op(B) dC^T (K, M) */
            cblas_sgemm(CblasRowMajor, tr(d.tb), CblasTrans, K, M, N, 1.0f, B, ldb, dC, N, 1.0f, da + i * sa,
                        M);
        if (db && !d.tb)
            cblas_sgemm(CblasRowMajor, tr(!d.ta), CblasNoTrans, K, N, M, 1.0f, A, lda, dC, N, 1.0f,
                        db + i * sb, N);
        if (db && d.tb) /* dB = (op(A)^T dC)^T = dC^T op(A) (N, K) */
            cblas_sgemm(CblasRowMajor, CblasTrans, tr(d.ta), N, K, M, 1.0f, dC, N, A, lda, 1.0f, db + i * sb,
                        K);
    }
}

/* Naive reference: element (m, k) of op(A) and (k, n) of op(B). */
static void matmul_forward_ref(float *out, const float *a, const float *b, matmul_dims d) {
    for (int64_t i = 0; i < d.batch; i++) {
        const float *A = a + i * d.M * d.K, *B = b + i * d.K * d.N;
        for (int64_t m = 0; m < d.M; m++)
            for (int64_t n = 0; n < d.N; n++) {
                double s = 0;
                for (int64_t k = 0; k < d.K; k++)
                    s += (double)(d.ta ? A[k * d.M + m] : A[m * d.K + k]) *
                         (d.tb ? B[n * d.K + k] : B[k * d.N + n]);
                out[i * d.M * d.N + m * d.N + n] = (float)s;
            }
    }
}

static void matmul_backward_ref(float *da, float *db, const float *dout, const float *a, const float *b,
                                matmul_dims d) {
    for (int64_t i = 0; i < d.batch; i++) {
        const float *A = a + i * d.M * d.K, *B = b + i * d.K * d.N, *dC = dout + i * d.M * d.N;
        float *dA = da ? da + i * d.M * d.K : NULL, *dB = db ? db + i * d.K * d.N : NULL;
        for (int64_t m = 0; m < d.M; m++)
            for (int64_t n = 0; n < d.N; n++)
                for (int64_t k = 0; k < d.K; k++) {
                    int64_t ia = d.ta ? k * d.M + m : m * d.K + k, ib = d.tb ? n * d.K + k : k * d.N + n;
                    /* out[m, n] += A'[m, k] B'[k, n] */
                    if (dA) dA[ia] += dC[m * d.N + n] * B[ib];
                    if (dB) dB[ib] += dC[m * d.N + n] * A[ia];
                }
    }
}

static matmul_dims matmul_node_dims(const lt_node *n) {
    return (matmul_dims){n->ip[0], n->ip[1], n->ip[2], n->ip[3], (int)n->ip[4], (int)n->ip[5]};
}

static void matmul_fw(lt_node *n, const lt_exec *e) {
    if (n->ip[LINEAR_IP_REFERENCE])
        matmul_forward_ref(n->out->data, n->in[0]->data, n->in[1]->data, matmul_node_dims(n));
    else
        matmul_forward(n->out->data, n->in[0]->data, n->in[1]->data, matmul_node_dims(n));
}

static void matmul_bw(lt_node *n, const lt_exec *e) {
    if (n->ip[LINEAR_IP_REFERENCE])
        matmul_backward_ref(n->in[0]->grad, n->in[1]->grad, n->out->grad, n->in[0]->data, n->in[1]->data,
                            matmul_node_dims(n));
    else
        matmul_backward(n->in[0]->grad, n->in[1]->grad, n->out->grad, n->in[0]->data, n->in[1]->data,
                        matmul_node_dims(n));
}

static const lt_op matmul_op = {"matmul", matmul_fw, matmul_bw};

lt_tensor *lt_matmul(lt_graph *g, lt_tensor *a, lt_tensor *b, int trans_a, int trans_b) {
    lt_tensor *in[2] = {a, b};
    if (lt_graph_failed(g, in, 2)) return NULL;
    char sa[96], sb[96];
    lt_shape_str(a->shape, a->ndim, sa, 96);
    lt_shape_str(b->shape, b->ndim, sb, 96);
    int nd = a->ndim;
    int ok = nd >= 2 && b->ndim == nd;
    for (int i = 0; ok && i < nd - 2; i++)
        ok = a->shape[i] == b->shape[i];
    if (!ok)
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "matmul: %s and %s need rank >= 2 and identical leading dimensions", sa, sb);
    int64_t M = a->shape[nd - (trans_a ? 1 : 2)], K = a->shape[nd - (trans_a ? 2 : 1)];
    int64_t KB = b->shape[nd - (trans_b ? 1 : 2)], N = b->shape[nd - (trans_b ? 2 : 1)];
    if (K != KB)
        return lt_graph_fail(g, LT_ERR_SHAPE, "matmul: inner sizes differ: a %s (trans %d), b %s (trans %d)",
                             sa, trans_a != 0, sb, trans_b != 0);
    if (M > INT_MAX || N > INT_MAX || K > INT_MAX)
        return lt_graph_fail(g, LT_ERR_SHAPE, "matmul: %s x %s exceeds BLAS's int sizes", sa, sb);
    int64_t shape[LT_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[nd - 2] = M;
    shape[nd - 1] = N;
    lt_tensor *out = lt_graph_new_tensor(g, shape, nd);
    lt_node *n = lt_graph_add_node(g, &matmul_op, out, in, 2);
    if (!n) return NULL;
    n->ip[0] = lt_shape_numel(a->shape, nd - 2);
    n->ip[1] = M;
    n->ip[2] = N;
    n->ip[3] = K;
    n->ip[4] = trans_a != 0;
    n->ip[5] = trans_b != 0;
    /* a is read only to form db, b only to form da */
    n->bw_skip_in = (b->requires_grad ? 0u : 1u) | (a->requires_grad ? 0u : 2u);
    n->bw_skip_out = 1;
    return out;
}
