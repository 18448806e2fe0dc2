/* Tests of lt_attention and lt_mha_projected: PyTorch golden values (per-head softmax(q k^T / sqrt(D) + mask)
 * v and nn.MultiheadAttention, forward and backward), finite-difference gradients with and without masks,
 * fully masked rows (defined as 0 here, NaN in PyTorch), the sgemm kernels against the naive ones. */
#include "check.h"
#include "core/params.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/attention.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void put(lt_tensor *t, golden_file *gf, const char *name) {
    golden_put(gf, name, t->data, t->numel);
}

static void expect(const char *what, const float *got, golden_file *gf, const char *name, int64_t n,
                   double tol) {
    golden_expect(gf, what, name, got, n, tol, tol);
}

static golden_tensor *gget(golden_file *gf, const char *prefix, const char *suffix, int quiet) {
    char name[64];
    snprintf(name, sizeof name, "%s_%s", prefix, suffix);
    if (quiet) {
        for (int i = 0; i < gf->n; i++)
            if (strcmp(gf->t[i].name, name) == 0) return &gf->t[i];
        return NULL;
    }
    return golden_get(gf, name);
}

static lt_tensor *input_from(lt_graph *g, golden_tensor *gt, int requires_grad) {
    return gt ? lt_graph_input(g, gt->name, gt->shape, gt->ndim, requires_grad) : NULL;
}

/* Per-head attention vs PyTorch, forward and backward (golden upstream gradient dy). */
static void test_attention_golden(golden_file *gf) {
    const char *cases[3] = {"att1", "att2", "att3"};
    for (int c = 0; c < 3; c++) {
        const char *p = cases[c];
        golden_tensor *gh = gget(gf, p, "heads", 0), *gm = gget(gf, p, "mask", 1);
        if (!gh) continue;
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        lt_tensor *q = input_from(g, gget(gf, p, "q", 0), 1), *k = input_from(g, gget(gf, p, "k", 0), 1);
        lt_tensor *v = input_from(g, gget(gf, p, "v", 0), 1), *m = gm ? input_from(g, gm, 0) : NULL;
        lt_tensor *y = lt_attention(g, q, k, v, m, (int)gh->data[0]);
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        if (lt_graph_plan(g, &err) != LT_OK) {
            CHECK_MSG(0, "%s: plan: %s", p, err.msg);
            lt_graph_destroy(g);
            continue;
        }
        char n[64];
        lt_tensor *ts[3] = {q, k, v};
        const char *tn[3] = {"q", "k", "v"};
        for (int i = 0; i < 3; i++) {
            snprintf(n, sizeof n, "%s_%s", p, tn[i]);
            put(ts[i], gf, n);
        }
        if (m) memcpy(m->data, gm->data, (size_t)m->numel * sizeof(float));
        lt_graph_forward(g);
        snprintf(n, sizeof n, "%s_y", p);
        expect(n, y->data, gf, n, y->numel, 1e-5);
        golden_tensor *dy = gget(gf, p, "dy", 0);
        if (dy && dy->numel == y->numel) {
            lt_graph_backward(g, y, dy->data);
            const char *dn[3] = {"dq", "dk", "dv"};
            for (int i = 0; i < 3; i++) {
                snprintf(n, sizeof n, "%s_%s", p, dn[i]);
                expect(n, ts[i]->grad, gf, n, ts[i]->numel, 1e-5);
            }
        }
        lt_graph_destroy(g);
    }
}

/* lt_mha_projected == nn.MultiheadAttention(batch_first=True) with a key_padding_mask, weights held in a
 * parameter store as the models hold them; gradients of inputs and of every weight and bias. */
static void test_mha_golden(golden_file *gf) {
    const char *wn[8] = {"wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo"};
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_tensor *w[8];
    for (int i = 0; i < 8; i++) {
        golden_tensor *gt = gget(gf, "mha", wn[i], 0);
        if (!gt) {
            lt_params_free(&ps);
            return;
        }
        w[i] = lt_params_add(&ps, wn[i], gt->shape, gt->ndim, LT_PARAM_TRAINABLE, &err);
    }
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    char n[64];
    for (int i = 0; i < 8; i++) {
        snprintf(n, sizeof n, "mha_%s", wn[i]);
        put(w[i], gf, n);
    }
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *q = input_from(g, gget(gf, "mha", "q", 0), 1), *k = input_from(g, gget(gf, "mha", "k", 0), 1);
    lt_tensor *v = input_from(g, gget(gf, "mha", "v", 0), 1),
              *m = input_from(g, gget(gf, "mha", "mask", 0), 0);
    lt_tensor *y = lt_mha_projected(g, q, k, v, m, 2, w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]);
    lt_graph_keep(g, y);
    if (lt_graph_plan(g, &err) != LT_OK) {
        CHECK_MSG(0, "mha: plan: %s", err.msg);
        lt_graph_destroy(g);
        lt_params_free(&ps);
        return;
    }
    put(q, gf, "mha_q");
    put(k, gf, "mha_k");
    put(v, gf, "mha_v");
    put(m, gf, "mha_mask");
    lt_params_zero_grad(&ps);
    lt_graph_forward(g);
    expect("mha_y", y->data, gf, "mha_y", y->numel, 1e-5);
    golden_tensor *dy = gget(gf, "mha", "dy", 0);
    if (dy && dy->numel == y->numel) {
        lt_graph_backward(g, y, dy->data);
        expect("mha_dq", q->grad, gf, "mha_dq", q->numel, 1e-5);
        expect("mha_dk", k->grad, gf, "mha_dk", k->numel, 1e-5);
        expect("mha_dv", v->grad, gf, "mha_dv", v->numel, 1e-5);
        for (int i = 0; i < 8; i++) {
            snprintf(n, sizeof n, "mha_d%s", wn[i]);
            expect(n, w[i]->grad, gf, n, w[i]->numel, 1e-5);
        }
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

/* ---- gradient checks ---- */

typedef struct {
    int heads;
    int mask; /* 0: none, 1: -inf on some keys, 2: -1e4 on some keys, 3: batch 1 fully -inf */
} att_ctx;

static lt_tensor *build_attention(lt_graph *g, lt_tensor **in, void *ctx) {
    att_ctx *c = ctx;
    return lt_attention(g, in[0], in[1], in[2], c->mask ? in[3] : NULL, c->heads);
}

/* Mask pattern: batch b drops key (b + j) % 3 == 0 for j >= 1 ... keeps at least one key per batch unless the
 * case asks for a fully masked batch 1. */
static void fix_mask(lt_tensor **in, int n_in, void *ctx) {
    att_ctx *c = ctx;
    if (!c->mask || n_in < 4) return;
    lt_tensor *m = in[3];
    int64_t B = m->shape[0], TK = m->shape[1];
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < TK; j++) {
            int drop = j > 0 && (b + j) % 3 == 0;
            if (c->mask == 3) drop = b == 1;
            m->data[b * TK + j] = drop ? (c->mask == 2 ? -1e4f : -INFINITY) : 0.0f;
        }
}

static void test_gradients(void) {
    /* B, TQ, TK, C, heads, mask */
    struct {
        int64_t B, TQ, TK, C;
        att_ctx c;
    } cases[] = {
        {2, 3, 5, 6, {1, 0}}, {2, 3, 5, 6, {3, 0}}, {2, 4, 3, 6, {3, 1}}, {1, 5, 4, 3, {1, 1}},
        {3, 2, 7, 9, {3, 2}}, {2, 3, 4, 6, {3, 3}}, {2, 1, 1, 3, {1, 0}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t B = cases[i].B, TQ = cases[i].TQ, TK = cases[i].TK, C = cases[i].C;
        gc_input ins[4] = {{"q", {B, TQ, C}, 3, 1, GC_NORMAL, 0, 0},
                           {"k", {B, TK, C}, 3, 1, GC_NORMAL, 0, 0},
                           {"v", {B, TK, C}, 3, 1, GC_NORMAL, 0, 0},
                           {"mask", {B, TK}, 2, 0, GC_CONST, 0, 0}};
        char label[96];
        snprintf(label, sizeof label, "attention B%lld TQ%lld TK%lld C%lld heads %d mask %d", (long long)B,
                 (long long)TQ, (long long)TK, (long long)C, cases[i].c.heads, cases[i].c.mask);
        gradcheck_fix(label, ins, cases[i].c.mask ? 4 : 3, build_attention, fix_mask, &cases[i].c,
                      (gc_opts){.seed = 40 + i});
    }
}

/* lt_mha_projected through finite differences too (no biases: gradcheck takes at most 8 inputs). */
static lt_tensor *build_mha(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_mha_projected(g, in[0], in[1], in[2], in[7], 2, in[3], NULL, in[4], NULL, in[5], NULL, in[6],
                            NULL);
}

static void fix_mha_mask(lt_tensor **in, int n_in, void *ctx) {
    att_ctx c = {2, 1};
    lt_tensor *t[4] = {NULL, NULL, NULL, in[7]};
    fix_mask(t, 4, &c);
}

/* gradcheck copies an input's analytic gradient only after it ran the numeric forwards for the inputs before
 * it, and in a multi-node graph the planner may lend an input's gradient memory to an intermediate activation
 * (the gradient is only written late in backward), so later inputs would be compared against overwritten
 * values. Checking one input per call sidesteps that. */
static void gradcheck_each(const char *label, const gc_input *ins, int n_in, gc_build_fn build, gc_fix_fn fix,
                           void *ctx, gc_opts o) {
    for (int i = 0; i < n_in; i++) {
        if (!ins[i].requires_grad) continue;
        gc_input one[8];
        memcpy(one, ins, (size_t)n_in * sizeof *one);
        for (int j = 0; j < n_in; j++)
            one[j].requires_grad = j == i;
        char l[128];
        snprintf(l, sizeof l, "%s (d%s)", label, ins[i].name);
        gradcheck_fix(l, one, n_in, build, fix, ctx, o);
    }
}

static void test_mha_gradients(void) {
    gc_input ins[8] = {{"q_in", {2, 3, 5}, 3, 1, GC_NORMAL, 0, 0}, {"k_in", {2, 4, 7}, 3, 1, GC_NORMAL, 0, 0},
                       {"v_in", {2, 4, 7}, 3, 1, GC_NORMAL, 0, 0}, {"wq", {6, 5}, 2, 1, GC_NORMAL, 0, 0.5f},
                       {"wk", {6, 7}, 2, 1, GC_NORMAL, 0, 0.5f},   {"wv", {6, 7}, 2, 1, GC_NORMAL, 0, 0.5f},
                       {"wo", {4, 6}, 2, 1, GC_NORMAL, 0, 0.5f},   {"mask", {2, 4}, 2, 0, GC_CONST, 0, 0}};
    gradcheck_each("mha_projected with mask", ins, 8, build_mha, fix_mha_mask, NULL, (gc_opts){.seed = 60});
}

/* A batch whose keys are all -inf gives 0 output and 0 gradients, and nothing is NaN anywhere; the other
 * batch is unaffected. */
static void test_fully_masked(void) {
    const int64_t B = 2, TQ = 3, TK = 4, C = 6;
    int64_t qs[3] = {B, TQ, C}, ks[3] = {B, TK, C}, ms[2] = {B, TK};
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *q = lt_graph_input(g, "q", qs, 3, 1), *k = lt_graph_input(g, "k", ks, 3, 1);
    lt_tensor *v = lt_graph_input(g, "v", ks, 3, 1), *m = lt_graph_input(g, "mask", ms, 2, 0);
    lt_tensor *y = lt_attention(g, q, k, v, m, 2), *y0 = lt_attention(g, q, k, v, NULL, 2);
    lt_tensor *s = lt_sum(g, y);
    lt_graph_keep(g, y);
    lt_graph_keep(g, y0);
    lt_err err = {{0}};
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    lt_rng rng;
    lt_rng_seed(&rng, 5, 5);
    lt_tensor *ts[3] = {q, k, v};
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < ts[i]->numel; j++)
            ts[i]->data[j] = lt_rng_normal(&rng);
    for (int64_t j = 0; j < B * TK; j++)
        m->data[j] = j >= TK ? -INFINITY : 0.0f;
    lt_graph_forward(g);
    lt_graph_backward(g, s, NULL);
    int finite = 1, zero = 1;
    for (int64_t j = 0; j < y->numel; j++)
        finite &= isfinite(y->data[j]);
    for (int i = 0; i < 3; i++)
        for (int64_t j = 0; j < ts[i]->numel; j++)
            finite &= isfinite(ts[i]->grad[j]);
    CHECK_MSG(finite, "fully masked batch produced a non-finite value");
    for (int64_t j = TQ * C; j < 2 * TQ * C; j++)
        zero &= y->data[j] == 0.0f && q->grad[j] == 0.0f;
    for (int64_t j = TK * C; j < 2 * TK * C; j++)
        zero &= k->grad[j] == 0.0f && v->grad[j] == 0.0f;
    CHECK_MSG(zero, "fully masked batch: output and gradients should be 0");
    CHECK_CLOSE("unmasked batch unaffected", y->data, y0->data, TQ * C, 1e-6, 1e-6);
    double gsum = 0;
    for (int64_t j = 0; j < TQ * C; j++)
        gsum += fabs(q->grad[j]);
    CHECK_MSG(gsum > 0, "unmasked batch got no gradient");
    lt_graph_destroy(g);
}

/* ---- sgemm kernels vs the naive reference kernels ---- */

static void compare_reference(const char *label, const gc_input *ins, int n_in, gc_build_fn build,
                              gc_fix_fn fix, void *ctx) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *in[8];
    for (int i = 0; i < n_in; i++)
        in[i] = lt_graph_input(g, ins[i].name, ins[i].shape, ins[i].ndim, ins[i].requires_grad);
    lt_tensor *y = build(g, in, ctx);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    if (lt_graph_plan(g, &err) != LT_OK) {
        CHECK_MSG(0, "%s: plan: %s", label, err.msg);
        lt_graph_destroy(g);
        return;
    }
    lt_rng rng;
    lt_rng_seed(&rng, 99, 1);
    for (int i = 0; i < n_in; i++)
        for (int64_t j = 0; j < in[i]->numel; j++)
            in[i]->data[j] = lt_rng_normal(&rng);
    if (fix) fix(in, n_in, ctx);
    float *r = malloc((size_t)y->numel * sizeof *r), *fast[9] = {0};
    for (int64_t j = 0; j < y->numel; j++)
        r[j] = lt_rng_normal(&rng);
    lt_graph_forward(g);
    lt_graph_backward(g, y, r);
    fast[n_in] = malloc((size_t)y->numel * sizeof(float));
    memcpy(fast[n_in], y->data, (size_t)y->numel * sizeof(float));
    for (int i = 0; i < n_in; i++) {
        if (!ins[i].requires_grad) continue;
        fast[i] = malloc((size_t)in[i]->numel * sizeof(float));
        memcpy(fast[i], in[i]->grad, (size_t)in[i]->numel * sizeof(float));
    }
    for (int k = 0; k < lt_graph_node_count(g); k++)
        lt_graph_node(g, k)->ip[LT_NODE_IP - 1] = 1;
    lt_graph_forward(g);
    lt_graph_backward(g, y, r);
    char what[128];
    snprintf(what, sizeof what, "%s: out", label);
    CHECK_CLOSE(what, fast[n_in], y->data, y->numel, 1e-4, 1e-4);
    for (int i = 0; i < n_in; i++) {
        if (!fast[i]) continue;
        snprintf(what, sizeof what, "%s: d%s", label, ins[i].name);
        CHECK_CLOSE(what, fast[i], in[i]->grad, in[i]->numel, 1e-4, 1e-4);
    }
    for (int i = 0; i <= n_in; i++)
        free(fast[i]);
    free(r);
    lt_graph_destroy(g);
}

static void test_reference(void) {
    /* sizes above the threading thresholds: case 0 runs (batch, head) pairs in parallel, case 1 one pair with
     * threaded sgemm and parallel softmax rows; cases 2 and 3 stay serial */
    struct {
        int64_t B, TQ, TK, C;
        att_ctx c;
    } cases[] = {
        {2, 65, 17, 24, {4, 1}}, {1, 257, 19, 16, {1, 1}}, {3, 9, 40, 12, {3, 3}}, {1, 7, 5, 8, {1, 0}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t B = cases[i].B, TQ = cases[i].TQ, TK = cases[i].TK, C = cases[i].C;
        gc_input ins[4] = {{"q", {B, TQ, C}, 3, 1, GC_NORMAL, 0, 0},
                           {"k", {B, TK, C}, 3, 1, GC_NORMAL, 0, 0},
                           {"v", {B, TK, C}, 3, 1, GC_NORMAL, 0, 0},
                           {"mask", {B, TK}, 2, 0, GC_CONST, 0, 0}};
        char label[96];
        snprintf(label, sizeof label, "attention reference case %zu", i);
        compare_reference(label, ins, cases[i].c.mask ? 4 : 3, build_attention, fix_mask, &cases[i].c);
    }
}

static void test_build(void) {
    int64_t qs[3] = {2, 3, 6}, ks[3] = {2, 5, 6}, ms[2] = {2, 4}, bad[3] = {2, 5, 4};
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *q = lt_graph_input(g, "q", qs, 3, 1), *k = lt_graph_input(g, "k", ks, 3, 1);
    lt_tensor *y = lt_attention(g, q, k, k, NULL, 3);
    CHECK(y && y->ndim == 3 && y->shape[1] == 3 && y->shape[2] == 6);
    lt_node *n = lt_graph_node(g, lt_graph_node_count(g) - 1);
    CHECK(n && n->saved_numel == 2 * 3 * 3 * 5);
    CHECK(n && (n->bw_skip_in & 8u) && n->bw_skip_out);
    lt_graph_destroy(g);

    const char *want[3] = {"heads", "key_padding_mask", "(2, 5, 4)"};
    for (int c = 0; c < 3; c++) {
        g = lt_graph_create(LT_MODE_EVAL, NULL);
        q = lt_graph_input(g, "q", qs, 3, 0);
        k = lt_graph_input(g, "k", ks, 3, 0);
        lt_tensor *m = lt_graph_input(g, "m", ms, 2, 0), *kb = lt_graph_input(g, "kb", bad, 3, 0);
        if (c == 0) y = lt_attention(g, q, k, k, NULL, 4);
        if (c == 1) y = lt_attention(g, q, k, k, m, 2);
        if (c == 2) y = lt_attention(g, q, kb, kb, NULL, 2);
        CHECK(y == NULL);
        lt_err err = {{0}};
        CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
        CHECK_MSG(strstr(err.msg, "attention") && strstr(err.msg, want[c]), "message: %s", err.msg);
        lt_graph_destroy(g);
    }
}

int main(void) {
    golden_file gf;
    if (golden_load(&gf, "dense.txt") == 0) {
        test_attention_golden(&gf);
        test_mha_golden(&gf);
    } else {
        CHECK_MSG(0, "dense.txt golden file missing");
    }
    golden_free(&gf);
    test_gradients();
    test_mha_gradients();
    test_fully_masked();
    test_reference();
    test_build();
    return check_summary("test_attention");
}
