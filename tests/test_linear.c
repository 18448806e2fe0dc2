/* Tests of lt_linear and lt_matmul: PyTorch golden values, finite-difference gradients, the sgemm kernels
 * against the naive reference kernels, gradient accumulation into parameters, shape errors. */
#include "check.h"
#include "core/params.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies golden tensor name into t after checking the numel. */
static void put(lt_tensor *t, golden_file *gf, const char *name) {
    golden_put(gf, name, t->data, t->numel);
}

static void expect(const char *what, const float *got, golden_file *gf, const char *name, int64_t n,
                   double tol) {
    golden_expect(gf, what, name, got, n, tol, tol);
}

static lt_tensor *input_like(lt_graph *g, golden_file *gf, const char *name, int requires_grad) {
    golden_tensor *gt = golden_get(gf, name);
    if (!gt) return NULL;
    return lt_graph_input(g, name, gt->shape, gt->ndim, requires_grad);
}

static void test_linear_golden(golden_file *gf) {
    for (int c = 1; c <= 2; c++) {
        char nx[32], nw[32], nb[32], ny[32];
        snprintf(nx, sizeof nx, "lin%d_x", c);
        snprintf(nw, sizeof nw, "lin%d_w", c);
        snprintf(nb, sizeof nb, "lin%d_b", c);
        snprintf(ny, sizeof ny, "lin%d_y", c);
        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        lt_tensor *x = input_like(g, gf, nx, 0), *w = input_like(g, gf, nw, 0);
        lt_tensor *b = c == 1 ? input_like(g, gf, nb, 0) : NULL;
        lt_tensor *y = lt_linear(g, x, w, b);
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
        if (!err.msg[0]) {
            put(x, gf, nx);
            put(w, gf, nw);
            if (b) put(b, gf, nb);
            lt_graph_forward(g);
            expect(ny, y->data, gf, ny, y->numel, 1e-5);
        }
        lt_graph_destroy(g);
    }
}

static void test_matmul_golden(golden_file *gf) {
    const char *pre[5] = {"mm00", "mm01", "mm10", "mm11", "mm2d"};
    for (int c = 0; c < 5; c++) {
        char na[32], nb[32], ny[32];
        snprintf(na, sizeof na, "%s_a", pre[c]);
        snprintf(nb, sizeof nb, "%s_b", pre[c]);
        snprintf(ny, sizeof ny, "%s_y", pre[c]);
        int ta = c < 4 ? c / 2 : 0, tb = c < 4 ? c % 2 : 0;
        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        lt_tensor *a = input_like(g, gf, na, 0), *b = input_like(g, gf, nb, 0);
        lt_tensor *y = lt_matmul(g, a, b, ta, tb);
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
        if (!err.msg[0]) {
            put(a, gf, na);
            put(b, gf, nb);
            lt_graph_forward(g);
            expect(ny, y->data, gf, ny, y->numel, 1e-5);
        }
        lt_graph_destroy(g);
    }
}

/* ---- gradient checks ---- */

static lt_tensor *build_linear(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_linear(g, in[0], in[1], ctx ? in[2] : NULL);
}

typedef struct {
    int ta, tb;
} mm_ctx;

static lt_tensor *build_matmul(lt_graph *g, lt_tensor **in, void *ctx) {
    mm_ctx *c = ctx;
    return lt_matmul(g, in[0], in[1], c->ta, c->tb);
}

static void test_gradients(void) {
    int yes = 1;
    gc_input lin3[3] = {{"x", {2, 3, 5}, 3, 1, GC_NORMAL, 0, 0},
                        {"w", {4, 5}, 2, 1, GC_NORMAL, 0, 0},
                        {"b", {4}, 1, 1, GC_NORMAL, 0, 0}};
    gradcheck("linear 3d bias", lin3, 3, build_linear, &yes, (gc_opts){.seed = 1});
    gc_input lin1[2] = {{"x", {7}, 1, 1, GC_NORMAL, 0, 0}, {"w", {3, 7}, 2, 1, GC_NORMAL, 0, 0}};
    gradcheck("linear 1d no bias", lin1, 2, build_linear, NULL, (gc_opts){.seed = 2});
    /* a constant weight (frozen): only x gets a gradient and x's data may be released early */
    gc_input lin_fz[3] = {{"x", {5, 3}, 2, 1, GC_NORMAL, 0, 0},
                          {"w", {2, 3}, 2, 0, GC_NORMAL, 0, 0},
                          {"b", {2}, 1, 0, GC_NORMAL, 0, 0}};
    gradcheck("linear frozen weight", lin_fz, 3, build_linear, &yes, (gc_opts){.seed = 3});

    const int64_t M = 3, K = 5, N = 2;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            mm_ctx c = {ta, tb};
            char label[64];
            gc_input mm[2] = {{"a", {3, ta ? K : M, ta ? M : K}, 3, 1, GC_NORMAL, 0, 0},
                              {"b", {3, tb ? N : K, tb ? K : N}, 3, 1, GC_NORMAL, 0, 0}};
            snprintf(label, sizeof label, "matmul batch 3 ta=%d tb=%d", ta, tb);
            gradcheck(label, mm, 2, build_matmul, &c, (gc_opts){.seed = 10 + (uint64_t)(2 * ta + tb)});
            gc_input mm4[2] = {{"a", {2, 1, ta ? K : M, ta ? M : K}, 4, 1, GC_NORMAL, 0, 0},
                               {"b", {2, 1, tb ? N : K, tb ? K : N}, 4, 1, GC_NORMAL, 0, 0}};
            snprintf(label, sizeof label, "matmul 4d ta=%d tb=%d", ta, tb);
            gradcheck(label, mm4, 2, build_matmul, &c, (gc_opts){.seed = 20 + (uint64_t)(2 * ta + tb)});
        }
    mm_ctx plain = {0, 0};
    gc_input mm2[2] = {{"a", {4, 3}, 2, 1, GC_NORMAL, 0, 0}, {"b", {3, 5}, 2, 0, GC_NORMAL, 0, 0}};
    gradcheck("matmul 2d, b constant", mm2, 2, build_matmul, &plain, (gc_opts){.seed = 30});
}

/* ---- sgemm kernels vs the naive reference kernels ---- */

/* Builds the op on random inputs, runs forward and backward with the fast kernels, then again with every
 * node switched to its reference kernel (ip[LT_NODE_IP - 1] = 1), and compares output and gradients. */
static void compare_reference(const char *label, const gc_input *ins, int n_in, gc_build_fn build,
                              void *ctx) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *in[8];
    for (int i = 0; i < n_in; i++)
        in[i] = lt_graph_input(g, ins[i].name, ins[i].shape, ins[i].ndim, 1);
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
    float *r = malloc((size_t)y->numel * sizeof *r), *fast[9];
    for (int64_t j = 0; j < y->numel; j++)
        r[j] = lt_rng_normal(&rng);
    lt_graph_forward(g);
    lt_graph_backward(g, y, r);
    fast[n_in] = malloc((size_t)y->numel * sizeof(float));
    memcpy(fast[n_in], y->data, (size_t)y->numel * sizeof(float));
    for (int i = 0; i < n_in; i++) {
        fast[i] = malloc((size_t)in[i]->numel * sizeof(float));
        memcpy(fast[i], in[i]->grad, (size_t)in[i]->numel * sizeof(float));
    }
    for (int k = 0; k < lt_graph_node_count(g); k++)
        lt_graph_node(g, k)->ip[LT_NODE_IP - 1] = 1;
    lt_graph_forward(g);
    lt_graph_backward(g, y, r);
    char what[96];
    snprintf(what, sizeof what, "%s: out", label);
    CHECK_CLOSE(what, fast[n_in], y->data, y->numel, 1e-4, 1e-4);
    for (int i = 0; i < n_in; i++) {
        snprintf(what, sizeof what, "%s: d%s", label, ins[i].name);
        CHECK_CLOSE(what, fast[i], in[i]->grad, in[i]->numel, 1e-4, 1e-4);
    }
    for (int i = 0; i <= n_in; i++)
        free(fast[i]);
    free(r);
    lt_graph_destroy(g);
}

static void test_reference(void) {
    int yes = 1;
    gc_input lin[3] = {
        {"x", {3, 17, 33}, 3, 1, 0, 0, 0}, {"w", {29, 33}, 2, 1, 0, 0, 0}, {"b", {29}, 1, 1, 0, 0, 0}};
    compare_reference("linear", lin, 3, build_linear, &yes);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            mm_ctx c = {ta, tb};
            /* batch 5 runs the OpenMP-over-batch path, batch 1 the threaded-sgemm path */
            for (int64_t batch = 1; batch <= 5; batch += 4) {
                const int64_t M = 33, K = 29, N = 17; /* batch 5: above the threading threshold */
                gc_input mm[2] = {{"a", {batch, ta ? K : M, ta ? M : K}, 3, 1, 0, 0, 0},
                                  {"b", {batch, tb ? N : K, tb ? K : N}, 3, 1, 0, 0, 0}};
                char label[64];
                snprintf(label, sizeof label, "matmul batch %lld ta=%d tb=%d", (long long)batch, ta, tb);
                compare_reference(label, mm, 2, build_matmul, &c);
            }
        }
}

/* Parameter gradients are added to, never overwritten: two backward passes give twice the gradient. */
static void test_param_grads_accumulate(void) {
    lt_params p;
    lt_params_init(&p);
    lt_err err = {{0}};
    int64_t ws[2] = {3, 4}, bs[1] = {3}, xs[2] = {5, 4};
    lt_tensor *w = lt_params_add(&p, "fc.weight", ws, 2, LT_PARAM_TRAINABLE, &err);
    lt_tensor *b = lt_params_add(&p, "fc.bias", bs, 1, LT_PARAM_TRAINABLE, &err);
    CHECK(lt_params_alloc(&p, &err) == LT_OK);
    for (int i = 0; i < 12; i++)
        w->data[i] = 0.1f * (float)(i - 5);
    for (int i = 0; i < 3; i++)
        b->data[i] = (float)i;
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", xs, 2, 0);
    lt_tensor *y = lt_linear(g, x, w, b);
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    for (int i = 0; i < 20; i++)
        x->data[i] = (float)(i % 7) - 3.0f;
    lt_params_zero_grad(&p);
    lt_graph_forward(g);
    lt_graph_backward(g, y, NULL);
    float once_w = w->grad[5], once_b = b->grad[1];
    /* db = column sums of ones = number of rows; dw[1][1] = sum over rows of x[:, 1] */
    CHECK_NEAR(once_b, 5.0, 1e-6, 0);
    double sx = 0;
    for (int r = 0; r < 5; r++)
        sx += x->data[r * 4 + 1];
    CHECK_NEAR(once_w, sx, 1e-5, 0);
    lt_graph_forward(g);
    lt_graph_backward(g, y, NULL);
    CHECK_NEAR(w->grad[5], 2.0 * once_w, 1e-5, 0);
    CHECK_NEAR(b->grad[1], 2.0 * once_b, 1e-5, 0);
    lt_graph_destroy(g);
    lt_params_free(&p);
}

static void test_shape_errors(void) {
    int64_t xs[3] = {2, 3, 5}, ws[2] = {4, 6}, as[3] = {2, 3, 4}, bs[3] = {3, 4, 2};
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *x = lt_graph_input(g, "x", xs, 3, 0), *w = lt_graph_input(g, "w", ws, 2, 0);
    CHECK(lt_linear(g, x, w, NULL) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "linear") && strstr(err.msg, "(2, 3, 5)") && strstr(err.msg, "(4, 6)"),
              "message: %s", err.msg);
    lt_graph_destroy(g);

    g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *a = lt_graph_input(g, "a", as, 3, 0), *b = lt_graph_input(g, "b", bs, 3, 0);
    CHECK(lt_matmul(g, a, b, 0, 0) == NULL); /* batch 2 vs 3 */
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "matmul") && strstr(err.msg, "(2, 3, 4)"), "message: %s", err.msg);
    lt_graph_destroy(g);
}

int main(void) {
    golden_file gf;
    if (golden_load(&gf, "dense.txt") == 0) {
        test_linear_golden(&gf);
        test_matmul_golden(&gf);
    } else {
        CHECK_MSG(0, "dense.txt golden file missing");
    }
    golden_free(&gf);
    test_gradients();
    test_reference();
    test_param_grads_accumulate();
    test_shape_errors();
    return check_summary("test_linear");
}
