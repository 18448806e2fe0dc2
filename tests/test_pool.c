/* Tests of lt_maxpool2d and lt_adaptive_avgpool2d: finite differences, PyTorch golden values (ties
 * included), and the builders' shape errors. */
#include "check.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int kh, kw, sh, sw, ph, pw; /* maxpool window; adaptive uses kh, kw as the output size */
} pool_ctx;

static lt_tensor *build_maxpool(lt_graph *g, lt_tensor **in, void *ctx) {
    pool_ctx *c = ctx;
    return lt_maxpool2d(g, in[0], c->kh, c->kw, c->sh, c->sw, c->ph, c->pw);
}

static lt_tensor *build_adaptive(lt_graph *g, lt_tensor **in, void *ctx) {
    pool_ctx *c = ctx;
    return lt_adaptive_avgpool2d(g, in[0], c->kh, c->kw);
}

/* Spreads the inputs apart so no two window elements are within 2 eps of each other: max pooling has a
 * kink wherever two candidates tie, and finite differences must not straddle one. */
static void distinct_values(lt_tensor **in, int n_in, void *ctx) {
    lt_tensor *x = in[0];
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t j = (i * 7919) % x->numel; /* a fixed permutation: 7919 is prime and coprime to these sizes */
        x->data[i] = 0.05f * (float)j - 1.0f;
    }
}

static void test_gradcheck(void) {
    gc_opts opts = {.seed = 3, .max_points = 96};
    gc_input x79[1] = {{"x", {2, 3, 7, 9}, 4, 1, GC_NORMAL, 0, 1}};
    pool_ctx k3 = {3, 3, 2, 2, 1, 1};
    gradcheck_fix("maxpool 3/2/1 (7x9)", x79, 1, build_maxpool, distinct_values, &k3, opts);
    gc_input x57[1] = {{"x", {1, 2, 5, 7}, 4, 1, GC_NORMAL, 0, 1}};
    pool_ctx k2 = {2, 2, 2, 2, 0, 0};
    gradcheck_fix("maxpool 2/2/0 (5x7)", x57, 1, build_maxpool, distinct_values, &k2, opts);
    pool_ctx krect = {3, 2, 1, 2, 1, 0};
    gradcheck_fix("maxpool 3x2 rect", x57, 1, build_maxpool, distinct_values, &krect, opts);

    gc_input a57[1] = {{"x", {2, 3, 5, 7}, 4, 1, GC_NORMAL, 0, 1}};
    pool_ctx o11 = {1, 1, 0, 0, 0, 0}, o23 = {2, 3, 0, 0, 0, 0}, o45 = {4, 5, 0, 0, 0, 0};
    gradcheck("adaptive avg (1,1)", a57, 1, build_adaptive, &o11, opts);
    gradcheck("adaptive avg (2,3) from (5,7)", a57, 1, build_adaptive, &o23, opts);
    gc_input a33[1] = {{"x", {1, 2, 3, 3}, 4, 1, GC_NORMAL, 0, 1}};
    gradcheck("adaptive avg up (4,5) from (3,3)", a33, 1, build_adaptive, &o45, opts);
    pool_ctx o33 = {3, 3, 0, 0, 0, 0};
    gradcheck("adaptive avg (3,3) from (3,3): one-pixel bins", a33, 1, build_adaptive, &o33, opts);
}

/* One-pixel bins (output size = input size, as ResNet-50's final pool on a 1 x 1 map) take a copy path:
 * the output is the input and the gradient passes through unchanged, on enough values for OpenMP. */
static void test_adaptive_identity(void) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[4] = {16, 2500, 1, 1};
    lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1);
    lt_tensor *y = lt_adaptive_avgpool2d(g, x, 1, 1);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (check_failed) return;
    float *dy = malloc((size_t)x->numel * sizeof *dy);
    for (int64_t i = 0; i < x->numel; i++) {
        x->data[i] = (float)(i % 97) * 0.25f - 12.0f;
        dy[i] = (float)(i % 31) - 15.5f;
    }
    lt_graph_forward(g);
    lt_graph_backward(g, y, dy);
    CHECK_CLOSE("adaptive one-pixel bins: y", y->data, x->data, x->numel, 0, 0);
    CHECK_CLOSE("adaptive one-pixel bins: dx", x->grad, dy, x->numel, 0, 0);
    free(dy);
    lt_graph_destroy(g);
}

/* Runs one pooling case on golden inputs and compares output and dx. */
static void golden_pool(golden_file *gf, const char *name, int adaptive, pool_ctx c) {
    char key[128];
    const char *parts[] = {"x", "y", "gy", "gx"};
    golden_tensor *t[4];
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", name, parts[i]);
        t[i] = golden_get(gf, key);
        if (!t[i]) {
            CHECK_MSG(0, "golden %s missing", key);
            return;
        }
    }
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", t[0]->shape, 4, 1);
    lt_tensor *y = adaptive ? lt_adaptive_avgpool2d(g, x, c.kh, c.kw)
                            : lt_maxpool2d(g, x, c.kh, c.kw, c.sh, c.sw, c.ph, c.pw);
    lt_graph_keep(g, y);
    lt_graph_keep(g, x);
    lt_err err = {{0}};
    if (lt_graph_plan(g, &err) != LT_OK) {
        CHECK_MSG(0, "%s: plan failed: %s", name, err.msg);
        lt_graph_destroy(g);
        return;
    }
    CHECK_MSG(y->numel == t[1]->numel && y->shape[2] == t[1]->shape[2] && y->shape[3] == t[1]->shape[3],
              "%s: output shape", name);
    memcpy(x->data, t[0]->data, (size_t)x->numel * sizeof(float));
    lt_graph_forward(g);
    snprintf(key, sizeof key, "%s forward", name);
    CHECK_CLOSE(key, y->data, t[1]->data, y->numel, 1e-6, 1e-5);
    lt_graph_backward(g, y, t[2]->data);
    snprintf(key, sizeof key, "%s dx", name);
    CHECK_CLOSE(key, x->grad, t[3]->data, x->numel, 1e-6, 1e-5);
    lt_graph_destroy(g);
}

static void test_golden(void) {
    golden_file gf;
    if (golden_load(&gf, "conv_pool.txt") != 0) {
        CHECK_MSG(0, "cannot load conv_pool.txt");
        return;
    }
    golden_pool(&gf, "maxpool_k3s2p1", 0, (pool_ctx){3, 3, 2, 2, 1, 1});
    golden_pool(&gf, "maxpool_k2s2p0", 0, (pool_ctx){2, 2, 2, 2, 0, 0});
    golden_pool(&gf, "maxpool_ties", 0, (pool_ctx){3, 3, 2, 2, 1, 1});
    golden_pool(&gf, "maxpool_rect", 0, (pool_ctx){3, 2, 2, 1, 1, 0});
    golden_pool(&gf, "avg_1x1", 1, (pool_ctx){1, 1, 0, 0, 0, 0});
    golden_pool(&gf, "avg_2x3", 1, (pool_ctx){2, 3, 0, 0, 0, 0});
    golden_pool(&gf, "avg_3x4", 1, (pool_ctx){3, 4, 0, 0, 0, 0});
    golden_pool(&gf, "avg_up", 1, (pool_ctx){4, 5, 0, 0, 0, 0});
    golden_free(&gf);
}

/* Padding is -inf, never 0: an all-negative input must pool to negative values. */
static void test_maxpool_negative_padding(void) {
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    int64_t s[4] = {1, 1, 3, 3};
    lt_tensor *x = lt_graph_input(g, "x", s, 4, 0);
    lt_tensor *y = lt_maxpool2d(g, x, 3, 3, 2, 2, 1, 1);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    for (int i = 0; i < 9; i++)
        x->data[i] = -1.0f - (float)i;
    lt_graph_forward(g);
    CHECK(y->shape[2] == 2 && y->shape[3] == 2);
    CHECK_NEAR(y->data[0], -1.0, 0, 0);
    CHECK_NEAR(y->data[3], -5.0, 0, 0);
    lt_graph_destroy(g);
}

static void test_builder_errors(void) {
    int64_t s[4] = {1, 2, 4, 4}, s3[3] = {2, 4, 4};
    struct {
        int k, st, p;
        lt_status want;
        const char *needle;
    } cases[] = {{3, 2, 2, LT_ERR_ARG, "padding (2, 2)"},
                 {0, 1, 0, LT_ERR_ARG, "kernel (0, 0)"},
                 {7, 1, 1, LT_ERR_SHAPE, "(1, 2, 4, 4)"}};
    for (int i = 0; i < 3; i++) {
        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        lt_tensor *x = lt_graph_input(g, "x", s, 4, 0);
        CHECK(lt_maxpool2d(g, x, cases[i].k, cases[i].k, cases[i].st, cases[i].st, cases[i].p, cases[i].p) ==
              NULL);
        lt_err err = {{0}};
        CHECK(lt_graph_plan(g, &err) == cases[i].want);
        CHECK_MSG(strstr(err.msg, "maxpool2d") && strstr(err.msg, cases[i].needle), "message: %s", err.msg);
        lt_graph_destroy(g);
    }
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *x = lt_graph_input(g, "x", s3, 3, 0);
    CHECK(lt_adaptive_avgpool2d(g, x, 1, 1) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "adaptive_avgpool2d") && strstr(err.msg, "(2, 4, 4)"), "message: %s", err.msg);
    lt_graph_destroy(g);
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = lt_graph_input(g, "x", s, 4, 0);
    CHECK(lt_adaptive_avgpool2d(g, x, 0, 2) == NULL);
    CHECK(lt_graph_plan(g, &err) == LT_ERR_ARG);
    lt_graph_destroy(g);
}

/* Inference's maxpool (values only, column maxima first) against the training kernel's scan, on random
 * values with a NaN planted, for several windows; 40 planes so the OpenMP split is reached. */
static void test_maxpool_eval_vs_train(void) {
    static const pool_ctx ks[] = {{3, 3, 2, 2, 1, 1}, {2, 2, 2, 2, 0, 0}, {3, 2, 2, 1, 1, 0},
                                  {1, 1, 1, 1, 0, 0}, {3, 3, 1, 1, 1, 1}, {5, 3, 3, 2, 2, 1}};
    int64_t s[4] = {2, 20, 37, 41};
    for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
        float *outs[2];
        int64_t n = 0;
        for (int eval = 0; eval < 2; eval++) {
            lt_graph *g = lt_graph_create(eval ? LT_MODE_EVAL : LT_MODE_TRAIN, NULL);
            lt_tensor *x = lt_graph_input(g, "x", s, 4, 0);
            lt_tensor *y = lt_maxpool2d(g, x, ks[c].kh, ks[c].kw, ks[c].sh, ks[c].sw, ks[c].ph, ks[c].pw);
            lt_graph_keep(g, y);
            lt_err err = {{0}};
            CHECK(lt_graph_plan(g, &err) == LT_OK);
            if (check_failed) return;
            uint32_t h = 12345;
            for (int64_t i = 0; i < x->numel; i++) {
                h = h * 1664525u + 1013904223u;
                x->data[i] = (float)(h >> 8) / 16777216.0f - 0.5f;
            }
            x->data[777] = NAN;
            lt_graph_forward(g);
            n = y->numel;
            outs[eval] = malloc((size_t)n * sizeof(float));
            memcpy(outs[eval], y->data, (size_t)n * sizeof(float));
            lt_graph_destroy(g);
        }
        int same = 1, nans = 0;
        for (int64_t i = 0; i < n; i++) {
            int an = isnan(outs[0][i]), bn = isnan(outs[1][i]);
            nans += an;
            if (an != bn || (!an && outs[0][i] != outs[1][i])) same = 0;
        }
        CHECK_MSG(same && nans > 0, "maxpool window %zu: eval output differs from train (NaNs %d)", c, nans);
        free(outs[0]);
        free(outs[1]);
    }
}

int main(void) {
    test_adaptive_identity();
    test_gradcheck();
    test_golden();
    test_maxpool_eval_vs_train();
    test_maxpool_negative_padding();
    test_builder_errors();
    return check_summary("test_pool");
}
