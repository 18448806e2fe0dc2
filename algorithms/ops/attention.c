/* attention.c - multi-head scaled dot-product attention, and the projected form of nn.MultiheadAttention.
 *
 * Heads are column slices of C, so no head split/merge copies are made: every (batch, head) pair runs two
 * sgemm calls that stride through q, k, v and out with leading dimension C, with a softmax between them.
 * Pairs run in parallel when there are at least as many as threads (DETR: batch * 8 heads); otherwise
 * (SegFormer's first stage: one head, thousands of queries) pairs run one after another with threaded
 * sgemm and the softmax rows spread over the threads.
 *
 * A query row whose keys are all masked with -inf has no defined softmax (PyTorch returns NaN). Here its
 * probabilities, and so its output, are 0, and no gradient flows through it.
 *
 * Test hook: node->ip[LT_NODE_IP - 1] = 1 switches the node to the naive reference kernels. */
#include "attention.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#define ATTN_IP_REFERENCE (LT_NODE_IP - 1)
/* below these sizes one thread does the work: waking the team costs more (multiply-adds per QK^T product,
 * probabilities per softmax) */
#define ATTN_PAR_PAIRS_MIN 32768
#define ATTN_PAR_ROWS_MIN 4096

typedef struct {
    int64_t B, TQ, TK, C, H, D;
    float scale; /* 1 / sqrt(D) */
} attn_dims;

/* In place: row = softmax(row + mask) over TK entries; mask (TK) or NULL. A row with no finite entry
 * becomes all zeros. */
static void softmax_row(float *row, const float *mask, int64_t TK) {
    float mx = -INFINITY;
    for (int64_t j = 0; j < TK; j++) {
        if (mask) row[j] += mask[j];
        if (row[j] > mx) mx = row[j];
    }
    if (mx == -INFINITY) {
        memset(row, 0, (size_t)TK * sizeof *row);
        return;
    }
    double sum = 0;
    for (int64_t j = 0; j < TK; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < TK; j++)
        row[j] *= inv;
}

/* One (batch, head) pair. out, q (TQ, D) with row stride C; k, v (TK, D) with row stride C;
 * P (TQ, TK) probabilities, written; mask (TK) or NULL. par: spread rows over threads. */
static void attn_pair_forward(float *out, float *P, const float *q, const float *k, const float *v,
                              const float *mask, attn_dims d, int par) {
    const int TQ = (int)d.TQ, TK = (int)d.TK, D = (int)d.D, C = (int)d.C;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, TQ, TK, D, d.scale, q, C, k, C, 0.0f, P, TK);
#pragma omp parallel for if (par && d.TQ * d.TK >= ATTN_PAR_ROWS_MIN)
    for (int64_t i = 0; i < d.TQ; i++)
        softmax_row(P + i * d.TK, mask, d.TK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, TQ, D, TK, 1.0f, P, TK, v, C, 0.0f, out, C);
}

/* dq, dk, dv: slices like q, k, v, or NULL; dout like out; P (TQ, TK) saved; dS (TQ, TK) scratch. */
static void attn_pair_backward(float *dq, float *dk, float *dv, const float *dout, const float *P,
                               const float *q, const float *k, const float *v, float *dS, attn_dims d,
                               int par) {
    const int TQ = (int)d.TQ, TK = (int)d.TK, D = (int)d.D, C = (int)d.C;
    /* out = P v  =>  dv = P^T dout, dP = dout v^T */
    if (dv)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, TK, D, TQ, 1.0f, P, TK, dout, C, 1.0f, dv, C);
    if (!dq && !dk) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, TQ, TK, D, 1.0f, dout, C, v, C, 0.0f, dS, TK);
    /* P = softmax(S)  =>  dS = P * (dP - sum_j P dP) */
#pragma omp parallel for if (par && d.TQ * d.TK >= ATTN_PAR_ROWS_MIN)
    for (int64_t i = 0; i < d.TQ; i++) {
        const float *p = P + i * d.TK;
        float *ds = dS + i * d.TK;
        double dot = 0;
        for (int64_t j = 0; j < d.TK; j++)
            dot += (double)p[j] * ds[j];
        for (int64_t j = 0; j < d.TK; j++)
            ds[j] = p[j] * (ds[j] - (float)dot);
    }
    /* S = scale q k^T (+ mask)  =>  dq = scale dS k, dk = scale dS^T q */
    if (dq)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, TQ, D, TK, d.scale, dS, TK, k, C, 1.0f, dq, C);
    if (dk)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, TK, D, TQ, d.scale, dS, TK, q, C, 1.0f, dk, C);
}

/* Offsets of pair p = b * H + h into the (B, T, C) tensors. */
#define ATTN_Q(p) (((p) / d.H) * d.TQ * d.C + ((p) % d.H) * d.D)
#define ATTN_K(p) (((p) / d.H) * d.TK * d.C + ((p) % d.H) * d.D)

/* out (B, TQ, C); P (B, H, TQ, TK); q (B, TQ, C); k, v (B, TK, C); mask (B, TK) or NULL.
 * nt: threads over pairs (1: pairs in sequence, threads inside each). */
static void attention_forward(float *out, float *P, const float *q, const float *k, const float *v,
                              const float *mask, attn_dims d, int nt) {
    int64_t pairs = d.B * d.H;
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int64_t p = 0; p < pairs; p++)
        attn_pair_forward(out + ATTN_Q(p), P + p * d.TQ * d.TK, q + ATTN_Q(p), k + ATTN_K(p), v + ATTN_K(p),
                          mask ? mask + (p / d.H) * d.TK : NULL, d, nt == 1);
}

/* scratch: nt * TQ * TK floats, one dS block per thread. */
static void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *P,
                               const float *q, const float *k, const float *v, float *scratch, attn_dims d,
                               int nt) {
    int64_t pairs = d.B * d.H;
    /* pairs write disjoint column slices of dq, dk, dv: no two threads touch the same gradient element */
#pragma omp parallel for num_threads(nt) if (nt > 1)
    for (int64_t p = 0; p < pairs; p++) {
        float *dS = scratch + (nt > 1 ? omp_get_thread_num() : 0) * d.TQ * d.TK;
        attn_pair_backward(dq ? dq + ATTN_Q(p) : NULL, dk ? dk + ATTN_K(p) : NULL, dv ? dv + ATTN_K(p) : NULL,
                           dout + ATTN_Q(p), P + p * d.TQ * d.TK, q + ATTN_Q(p), k + ATTN_K(p), v + ATTN_K(p),
                           dS, d, nt == 1);
    }
}

/* Naive reference: same contract as attention_forward, plain loops. */
static void attention_forward_ref(float *out, float *P, const float *q, const float *k, const float *v,
                                  const float *mask, attn_dims d) {
    for (int64_t p = 0; p < d.B * d.H; p++) {
        int64_t b = p / d.H;
        for (int64_t i = 0; i < d.TQ; i++) {
            float *row = P + (p * d.TQ + i) * d.TK;
            for (int64_t j = 0; j < d.TK; j++) {
                double s = 0;
                for (int64_t c = 0; c < d.D; c++)
                    s += (double)q[ATTN_Q(p) + i * d.C + c] * k[ATTN_K(p) + j * d.C + c];
                row[j] = (float)s * d.scale;
            }
            softmax_row(row, mask ? mask + b * d.TK : NULL, d.TK);
            for (int64_t c = 0; c < d.D; c++) {
                double s = 0;
                for (int64_t j = 0; j < d.TK; j++)
                    s += (double)row[j] * v[ATTN_K(p) + j * d.C + c];
                out[ATTN_Q(p) + i * d.C + c] = (float)s;
            }
        }
    }
}

static void attention_backward_ref(float *dq, float *dk, float *dv, const float *dout, const float *P,
                                   const float *q, const float *k, const float *v, attn_dims d) {
    for (int64_t p = 0; p < d.B * d.H; p++)
        for (int64_t i = 0; i < d.TQ; i++) {
            const float *row = P + (p * d.TQ + i) * d.TK, *go = dout + ATTN_Q(p) + i * d.C;
            double dot = 0;
            for (int64_t j = 0; j < d.TK; j++) {
                double dp = 0;
                for (int64_t c = 0; c < d.D; c++)
                    dp += (double)go[c] * v[ATTN_K(p) + j * d.C + c];
                dot += row[j] * dp;
            }
            for (int64_t j = 0; j < d.TK; j++) {
                double dp = 0;
                for (int64_t c = 0; c < d.D; c++) {
                    dp += (double)go[c] * v[ATTN_K(p) + j * d.C + c];
                    if (dv) dv[ATTN_K(p) + j * d.C + c] += row[j] * go[c];
                }
                float ds = (float)(row[j] * (dp - dot)) * d.scale;
                for (int64_t c = 0; c < d.D; c++) {
                    if (dq) dq[ATTN_Q(p) + i * d.C + c] += ds * k[ATTN_K(p) + j * d.C + c];
                    if (dk) dk[ATTN_K(p) + j * d.C + c] += ds * q[ATTN_Q(p) + i * d.C + c];
                }
            }
        }
}

#undef ATTN_Q
#undef ATTN_K

/* ip: B, TQ, TK, C, H, threads over pairs */
static attn_dims attn_node_dims(const lt_node *n) {
    return (attn_dims){n->ip[0], n->ip[1], n->ip[2], n->ip[3], n->ip[4], n->ip[3] / n->ip[4], n->fp[0]};
}

static void attention_fw(lt_node *n, const lt_exec *e) {
    const float *mask = n->in[3] ? n->in[3]->data : NULL;
    if (n->ip[ATTN_IP_REFERENCE])
        attention_forward_ref(n->out->data, n->saved, n->in[0]->data, n->in[1]->data, n->in[2]->data, mask,
                              attn_node_dims(n));
    else
        attention_forward(n->out->data, n->saved, n->in[0]->data, n->in[1]->data, n->in[2]->data, mask,
                          attn_node_dims(n), (int)n->ip[5]);
}

static void attention_bw(lt_node *n, const lt_exec *e) {
    if (n->ip[ATTN_IP_REFERENCE])
        attention_backward_ref(n->in[0]->grad, n->in[1]->grad, n->in[2]->grad, n->out->grad, n->saved,
                               n->in[0]->data, n->in[1]->data, n->in[2]->data, attn_node_dims(n));
    else
        attention_backward(n->in[0]->grad, n->in[1]->grad, n->in[2]->grad, n->out->grad, n->saved,
                           n->in[0]->data, n->in[1]->data, n->in[2]->data, e->scratch, attn_node_dims(n),
                           (int)n->ip[5]);
}

static const lt_op attention_op = {"attention", attention_fw, attention_bw};

lt_tensor *lt_attention(lt_graph *g, lt_tensor *q, lt_tensor *k, lt_tensor *v, lt_tensor *key_padding_mask,
                        int heads) {
    lt_tensor *in[4] = {q, k, v, key_padding_mask};
    if (lt_graph_failed(g, in, 3)) return NULL;
    char sq[96], sk[96], sv[96], sm[96];
    lt_shape_str(q->shape, q->ndim, sq, 96);
    lt_shape_str(k->shape, k->ndim, sk, 96);
    lt_shape_str(v->shape, v->ndim, sv, 96);
    if (q->ndim != 3 || k->ndim != 3 || !lt_same_shape(k, v) || k->shape[0] != q->shape[0] ||
        k->shape[2] != q->shape[2])
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "attention: q %s, k %s, v %s do not fit (want q (B, TQ, C), k and v (B, TK, C))",
                             sq, sk, sv);
    int64_t B = q->shape[0], TQ = q->shape[1], TK = k->shape[1], C = q->shape[2];
    if (heads < 1 || C % heads != 0)
        return lt_graph_fail(g, LT_ERR_SHAPE, "attention: %lld channels of q %s do not split into %d heads",
                             (long long)C, sq, heads);
    const lt_tensor *m = key_padding_mask;
    if (m && (m->ndim != 2 || m->shape[0] != B || m->shape[1] != TK))
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "attention: key_padding_mask %s does not fit k %s (want (B, TK))",
                             lt_shape_str(m->shape, m->ndim, sm, 96), sk);
    if (TQ > INT_MAX || TK > INT_MAX || C > INT_MAX)
        return lt_graph_fail(g, LT_ERR_SHAPE, "attention: q %s, k %s exceed BLAS's int sizes", sq, sk);
    long long saved;
    if (!lt_mul_ok((long long)B * heads, TQ, &saved) || !lt_mul_ok(saved, TK, &saved))
        return lt_graph_fail(g, LT_ERR_NOMEM, "attention: probabilities of q %s, k %s overflow", sq, sk);
    lt_tensor *out = lt_graph_new_tensor(g, q->shape, 3);
    lt_node *n = lt_graph_add_node(g, &attention_op, out, in, 4);
    if (!n) return NULL;
    int threads = omp_get_max_threads();
    int nt = B * heads >= threads && B * heads * TQ * TK * (C / heads) >= ATTN_PAR_PAIRS_MIN ? threads : 1;
    n->ip[0] = B;
    n->ip[1] = TQ;
    n->ip[2] = TK;
    n->ip[3] = C;
    n->ip[4] = heads;
    n->ip[5] = nt;
    n->fp[0] = (float)(1.0 / sqrt((double)(C / heads)));
    n->saved_numel = saved;
    n->scratch_numel = (int64_t)nt * TQ * TK;
    /* backward reads q only for dk, k only for dq, v only for dP (needed by dq and dk); never the mask or
     * the output */
    n->bw_skip_in = 8u | (k->requires_grad ? 0u : 1u) | (q->requires_grad ? 0u : 2u) |
                    (q->requires_grad || k->requires_grad ? 0u : 4u);
    n->bw_skip_out = 1;
    return out;
}

lt_tensor *lt_mha_projected(lt_graph *g, lt_tensor *q_in, lt_tensor *k_in, lt_tensor *v_in, lt_tensor *mask,
                            int heads, lt_tensor *wq, lt_tensor *bq, lt_tensor *wk, lt_tensor *bk,
                            lt_tensor *wv, lt_tensor *bv, lt_tensor *wo, lt_tensor *bo) {
    lt_tensor *q = lt_linear(g, q_in, wq, bq);            /* (B, TQ, C) */
    lt_tensor *k = lt_linear(g, k_in, wk, bk);            /* (B, TK, C) */
    lt_tensor *v = lt_linear(g, v_in, wv, bv);            /* (B, TK, C) */
    lt_tensor *a = lt_attention(g, q, k, v, mask, heads); /* (B, TQ, C) */
    return lt_linear(g, a, wo, bo);
}
