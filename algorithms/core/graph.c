#include "graph.h"

#include "big_alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LT_ALIGN 64

static double wall_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

struct lt_graph {
    lt_mode mode;
    lt_rng *rng;             /* not owned */
    lt_node **nodes;         /* (n_nodes) in build order */
    int n_nodes, cap_nodes;
    lt_tensor **tensors;     /* (n_tensors) graph-owned tensors */
    int n_tensors, cap_tensors;
    lt_status status;        /* first build error */
    lt_err err;
    int planned;
    void *arena;             /* activations, gradients, saved buffers */
    size_t arena_alloc, scratch_alloc; /* bytes asked of lt_alloc_big, for lt_free_big */
    int64_t arena_bytes;
    float *scratch;          /* shared op scratch */
    int64_t scratch_numel;
    lt_tensor **zero_order;  /* graph tensors with a gradient, by the time their gradient is first written */
    int n_zero;
    double *node_seconds;    /* (2 * n_nodes) forward then backward wall time per node, or NULL */
};

lt_graph *lt_graph_create(lt_mode mode, lt_rng *rng) {
    lt_graph *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->mode = mode;
    g->rng = rng;
    return g;
}

void lt_graph_destroy(lt_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) free(g->nodes[i]);
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i]);
    free(g->nodes);
    free(g->tensors);
    lt_free_big(g->arena, g->arena_alloc);
    lt_free_big(g->scratch, g->scratch_alloc);
    free(g->zero_order);
    free(g);
}

lt_mode lt_graph_mode(const lt_graph *g) {
    return g->mode;
}

lt_rng *lt_graph_rng(const lt_graph *g) {
    return g->rng;
}

lt_status lt_graph_status(const lt_graph *g, lt_err *err) {
    if (g->status != LT_OK && err) *err = g->err;
    return g->status;
}

lt_tensor *lt_graph_fail(lt_graph *g, lt_status s, const char *fmt, ...) {
    if (g->status == LT_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err.msg, sizeof g->err.msg, fmt, ap);
        va_end(ap);
        g->status = s;
    }
    return NULL;
}

int lt_graph_failed(lt_graph *g, lt_tensor *const *ts, int n) {
    if (g->status != LT_OK) return 1;
    if (g->planned) {
        lt_graph_fail(g, LT_ERR_STATE, "node added after the graph was planned");
        return 1;
    }
    for (int i = 0; i < n; i++)
        if (!ts[i]) {
            lt_graph_fail(g, LT_ERR_ARG, "missing input tensor %d", i);
            return 1;
        }
    return 0;
}

lt_tensor *lt_graph_new_tensor(lt_graph *g, const int64_t *shape, int ndim) {
    if (g->status != LT_OK) return NULL;
    if (ndim < 0 || ndim > LT_MAX_DIMS) return lt_graph_fail(g, LT_ERR_SHAPE, "tensor rank %d exceeds %d", ndim, LT_MAX_DIMS);
    int64_t numel = lt_shape_numel(shape, ndim);
    if (numel < 0) return lt_graph_fail(g, LT_ERR_NOMEM, "tensor size overflows");
    if (g->n_tensors == g->cap_tensors) {
        int cap = g->cap_tensors ? 2 * g->cap_tensors : 256;
        lt_tensor **nt = realloc(g->tensors, (size_t)cap * sizeof *nt);
        if (!nt) return lt_graph_fail(g, LT_ERR_NOMEM, "out of memory building the graph");
        g->tensors = nt;
        g->cap_tensors = cap;
    }
    lt_tensor *t = calloc(1, sizeof *t);
    if (!t) return lt_graph_fail(g, LT_ERR_NOMEM, "out of memory building the graph");
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->ndim = ndim;
    t->numel = numel;
    t->id = g->n_tensors;
    t->producer = -1;
    t->lr_scale = 1.0f;
    g->tensors[g->n_tensors++] = t;
    return t;
}

lt_tensor *lt_graph_input(lt_graph *g, const char *name, const int64_t *shape, int ndim, int requires_grad) {
    if (g->planned) return lt_graph_fail(g, LT_ERR_STATE, "input '%s' added after planning", name);
    lt_tensor *t = lt_graph_new_tensor(g, shape, ndim);
    if (!t) return NULL;
    t->is_input = 1;
    t->requires_grad = requires_grad;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "input");
    return t;
}

lt_tensor *lt_graph_view(lt_graph *g, lt_tensor *src, const int64_t *shape, int ndim) {
    if (lt_graph_failed(g, &src, 1)) return NULL;
    int64_t numel = lt_shape_numel(shape, ndim);
    if (numel != src->numel) {
        char a[96], b[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "cannot view %s as %s", lt_shape_str(src->shape, src->ndim, a, 96),
                             lt_shape_str(shape, ndim, b, 96));
    }
    if (src->is_param) return lt_graph_fail(g, LT_ERR_ARG, "cannot view parameter '%s'", src->name);
    lt_tensor *t = lt_graph_new_tensor(g, shape, ndim);
    if (!t) return NULL;
    t->view_of = src;
    t->requires_grad = src->requires_grad;
    return t;
}

void lt_graph_keep(lt_graph *g, lt_tensor *t) {
    (void)g;
    if (t) lt_tensor_root(t)->keep = 1;
}

lt_node *lt_graph_add_node(lt_graph *g, const lt_op *op, lt_tensor *out, lt_tensor *const *in, int n_in) {
    if (g->status != LT_OK || !out) return NULL;
    if (n_in > LT_NODE_MAX_IN) {
        lt_graph_fail(g, LT_ERR_ARG, "op %s: %d inputs exceed %d", op->name, n_in, LT_NODE_MAX_IN);
        return NULL;
    }
    if (out->producer >= 0 || out->is_param || out->is_input || out->view_of) {
        lt_graph_fail(g, LT_ERR_ARG, "op %s: output tensor already has a producer", op->name);
        return NULL;
    }
    if (g->n_nodes == g->cap_nodes) {
        int cap = g->cap_nodes ? 2 * g->cap_nodes : 256;
        lt_node **nn = realloc(g->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            lt_graph_fail(g, LT_ERR_NOMEM, "out of memory building the graph");
            return NULL;
        }
        g->nodes = nn;
        g->cap_nodes = cap;
    }
    lt_node *n = calloc(1, sizeof *n);
    if (!n) {
        lt_graph_fail(g, LT_ERR_NOMEM, "out of memory building the graph");
        return NULL;
    }
    n->op = op;
    n->n_in = n_in;
    n->out = out;
    n->index = g->n_nodes;
    out->requires_grad = 0;
    for (int i = 0; i < n_in; i++) {
        n->in[i] = in[i];
        if (in[i] && in[i]->requires_grad) out->requires_grad = 1;
    }
    if (!op->backward) out->requires_grad = 0;
    out->producer = n->index;
    g->nodes[g->n_nodes++] = n;
    return n;
}

/* ---- planning ---- */

typedef struct {
    int64_t size;   /* bytes, aligned */
    int start, end; /* inclusive timeline interval */
    int64_t off;    /* assigned arena offset */
    int64_t *dest;  /* where to store the offset */
} buf_req;

static int64_t align_up(int64_t x) {
    return (x + LT_ALIGN - 1) / LT_ALIGN * LT_ALIGN;
}

static int cmp_size_desc(const void *a, const void *b) {
    const buf_req *x = *(buf_req *const *)a, *y = *(buf_req *const *)b;
    if (x->size != y->size) return x->size < y->size ? 1 : -1;
    return x->start - y->start;
}

typedef struct {
    int64_t off, end;
} span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Greedy best-fit by decreasing size: each buffer goes to the lowest offset free during its interval.
 * O(B^2 log B) for B buffers, a few thousand for the largest models: milliseconds. */
static int64_t place_buffers(buf_req *reqs, int n, lt_err *err, int *ok) {
    buf_req **order = malloc((size_t)(n ? n : 1) * sizeof *order);
    span *spans = malloc((size_t)(n ? n : 1) * sizeof *spans);
    *ok = order && spans;
    int64_t total = 0;
    if (!*ok) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory planning the graph");
        goto done;
    }
    for (int i = 0; i < n; i++) order[i] = &reqs[i];
    qsort(order, (size_t)n, sizeof *order, cmp_size_desc);
    const int no_reuse = getenv("LATHE_PLAN_NO_REUSE") != NULL; /* debugging aid: every buffer its own bytes */
    for (int i = 0; i < n; i++) {
        buf_req *r = order[i];
        if (no_reuse) {
            r->off = total;
            total += r->size;
            continue;
        }
        int ns = 0;
        for (int j = 0; j < i; j++) {
            buf_req *q = order[j];
            if (q->start <= r->end && r->start <= q->end) spans[ns++] = (span){q->off, q->off + q->size};
        }
        qsort(spans, (size_t)ns, sizeof *spans, cmp_span);
        int64_t off = 0;
        for (int j = 0; j < ns; j++) {
            if (spans[j].off >= off + r->size) break;
            if (spans[j].end > off) off = spans[j].end;
        }
        r->off = off;
        if (off + r->size > total) total = off + r->size;
    }
done:
    free(order);
    free(spans);
    return total;
}

static int cmp_grad_first(const void *a, const void *b) {
    const lt_tensor *x = *(lt_tensor *const *)a, *y = *(lt_tensor *const *)b;
    return x->grad_first - y->grad_first;
}

lt_status lt_graph_plan(lt_graph *g, lt_err *err) {
    if (g->status != LT_OK) return lt_graph_status(g, err);
    if (g->planned) return lt_errorf(err, LT_ERR_STATE, "graph planned twice");
    const int N = g->n_nodes, INF = 2 * N + 1;
    const int train = g->mode == LT_MODE_TRAIN;
#define BW(i) (2 * N - 1 - (i))
    for (int t = 0; t < g->n_tensors; t++) {
        lt_tensor *x = g->tensors[t];
        x->first_use = x->is_input ? 0 : x->producer;
        x->last_use = x->is_input || x->keep ? INF : x->first_use;
        x->grad_first = INF;
        x->grad_last = x->is_input || x->keep ? INF : (x->producer >= 0 ? BW(x->producer) : INF);
    }
    int64_t scratch = 0;
    for (int i = 0; i < N; i++) {
        lt_node *n = g->nodes[i];
        if (n->scratch_numel > scratch) scratch = n->scratch_numel;
        lt_tensor *o = n->out;
        if (train && !n->bw_skip_out && o->last_use < BW(i)) o->last_use = BW(i);
        for (int k = 0; k < n->n_in; k++) {
            if (!n->in[k]) continue;
            lt_tensor *r = lt_tensor_root(n->in[k]);
            if (r->is_param) continue;
            int end = (train && !(n->bw_skip_in & (1u << k))) ? BW(i) : i;
            if (r->last_use < end) r->last_use = end;
            if (train && r->requires_grad && BW(i) < r->grad_first) r->grad_first = BW(i);
        }
    }
    /* sinks (no consumer) get their gradient seeded before the first backward */
    int nreq = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        lt_tensor *x = g->tensors[t];
        if (x->view_of) continue;
        if (x->grad_first == INF) x->grad_first = N - 1;
        nreq++;
        if (train && x->requires_grad) nreq++;
    }
    for (int i = 0; i < N; i++)
        if (g->nodes[i]->saved_numel > 0) nreq++;
    buf_req *reqs = calloc((size_t)(nreq ? nreq : 1), sizeof *reqs);
    int64_t *saved_off = calloc((size_t)(N ? N : 1), sizeof *saved_off);
    if (!reqs || !saved_off) {
        free(reqs);
        free(saved_off);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory planning the graph");
    }
    int nr = 0;
    for (int t = 0; t < g->n_tensors; t++) {
        lt_tensor *x = g->tensors[t];
        if (x->view_of) continue;
        reqs[nr++] = (buf_req){align_up(x->numel * 4), x->first_use, x->last_use, 0, &x->plan_data_off};
        if (train && x->requires_grad)
            reqs[nr++] = (buf_req){align_up(x->numel * 4), x->grad_first, x->grad_last, 0, &x->plan_grad_off};
    }
    for (int i = 0; i < N; i++) {
        lt_node *n = g->nodes[i];
        if (n->saved_numel > 0)
            reqs[nr++] = (buf_req){align_up(n->saved_numel * 4), i, train ? BW(i) : i, 0, &saved_off[i]};
    }
#undef BW
    int ok;
    int64_t total = place_buffers(reqs, nr, err, &ok);
    for (int i = 0; ok && i < nr; i++) *reqs[i].dest = reqs[i].off;
    free(reqs);
    if (!ok) {
        free(saved_off);
        return LT_ERR_NOMEM;
    }
    g->arena_alloc = (size_t)(total ? total : LT_ALIGN);
    g->scratch_alloc = (size_t)align_up((scratch ? scratch : 1) * 4);
    g->arena = lt_alloc_big(g->arena_alloc);
    g->scratch = lt_alloc_big(g->scratch_alloc);
    g->zero_order = malloc((size_t)(g->n_tensors ? g->n_tensors : 1) * sizeof *g->zero_order);
    if (!g->arena || !g->scratch || !g->zero_order) {
        free(saved_off);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory: the graph needs %.1f MiB of activations",
                         (double)total / 1048576.0);
    }
    g->arena_bytes = total;
    g->scratch_numel = scratch;
    char *base = g->arena;
    for (int t = 0; t < g->n_tensors; t++) {
        lt_tensor *x = g->tensors[t];
        if (x->view_of) continue;
        x->data = (float *)(base + x->plan_data_off);
        x->grad = train && x->requires_grad ? (float *)(base + x->plan_grad_off) : NULL;
        if (x->grad) g->zero_order[g->n_zero++] = x;
    }
    for (int t = 0; t < g->n_tensors; t++) {
        lt_tensor *x = g->tensors[t];
        if (!x->view_of) continue;
        lt_tensor *r = lt_tensor_root(x);
        x->data = r->data;
        x->grad = r->grad;
    }
    for (int i = 0; i < N; i++)
        if (g->nodes[i]->saved_numel > 0) g->nodes[i]->saved = (float *)(base + saved_off[i]);
    free(saved_off);
    qsort(g->zero_order, (size_t)g->n_zero, sizeof *g->zero_order, cmp_grad_first);
    g->planned = 1;
    return LT_OK;
}

void lt_graph_forward(lt_graph *g) {
    if (!g->planned) return;
    lt_exec x = {g->scratch, g->scratch_numel, g->mode, g->rng};
    for (int i = 0; i < g->n_nodes; i++) {
        double t = g->node_seconds ? wall_seconds() : 0.0;
        g->nodes[i]->op->forward(g->nodes[i], &x);
        if (g->node_seconds) g->node_seconds[i] += wall_seconds() - t;
    }
}

void lt_graph_backward(lt_graph *g, lt_tensor *root, const float *root_grad) {
    if (!g->planned || g->mode != LT_MODE_TRAIN) return;
    const int N = g->n_nodes;
    lt_exec x = {g->scratch, g->scratch_numel, g->mode, g->rng};
    int z = 0;
    /* zero every gradient first written at time <= t (time of the node about to run backward) */
#define ZERO_UPTO(t)                                                                                         \
    while (z < g->n_zero && g->zero_order[z]->grad_first <= (t)) {                                           \
        memset(g->zero_order[z]->grad, 0, (size_t)g->zero_order[z]->numel * sizeof(float));                \
        z++;                                                                                                 \
    }
    ZERO_UPTO(N - 1);
    lt_tensor *r = lt_tensor_root(root);
    if (r->grad) {
        for (int64_t i = 0; i < r->numel; i++) r->grad[i] = root_grad ? root_grad[i] : 1.0f;
    }
    for (int i = N - 1; i >= 0; i--) {
        ZERO_UPTO(2 * N - 1 - i);
        lt_node *n = g->nodes[i];
        double t = g->node_seconds ? wall_seconds() : 0.0;
        if (n->out->requires_grad && n->op->backward) n->op->backward(n, &x);
        if (g->node_seconds) g->node_seconds[N + i] += wall_seconds() - t;
    }
#undef ZERO_UPTO
}

void lt_graph_time_nodes(lt_graph *g, double *node_seconds) {
    g->node_seconds = node_seconds;
}

int64_t lt_graph_arena_bytes(const lt_graph *g) {
    return g->arena_bytes;
}

int64_t lt_graph_scratch_bytes(const lt_graph *g) {
    return g->scratch_numel * 4;
}

int lt_graph_node_count(const lt_graph *g) {
    return g->n_nodes;
}

lt_node *lt_graph_node(lt_graph *g, int i) {
    return i >= 0 && i < g->n_nodes ? g->nodes[i] : NULL;
}
