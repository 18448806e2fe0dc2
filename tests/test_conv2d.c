/* Tests of lt_conv2d: the fast kernels against the naive reference under every plan shape (batched GEMMs,
 * pieces of images, per-thread and shared units, the 1x1 in-place path, the depthwise direct loops) and on
 * shapes that reach each im2col path (row copies, tap tables, AVX-512 permutes) and the cropping of taps
 * that only see padding; finite differences through the graph, PyTorch golden values, and the builder's
 * shape errors. */
#include "check.h"
#include "golden.h"
#include "gradcheck.h"
#include "core/rng.h"
#include "ops/conv2d.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int64_t n, c, h, w, o, kh, kw;
    lt_conv2d_cfg cfg; /* stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups */
    int bias;
} conv_case;

static lt_conv2d_dims case_dims(const conv_case *k) {
    lt_conv2d_dims d = {k->n, k->c, k->h, k->w, k->o, k->kh, k->kw, 0, 0, k->cfg};
    d.oh = lt_conv2d_out_size(k->h, k->kh, k->cfg.stride_h, k->cfg.pad_h, k->cfg.dil_h);
    d.ow = lt_conv2d_out_size(k->w, k->kw, k->cfg.stride_w, k->cfg.pad_w, k->cfg.dil_w);
    return d;
}

static float *randn(int64_t n, lt_rng *r) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = lt_rng_normal(r);
    return p;
}

static float *copy(const float *src, int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    memcpy(p, src, (size_t)n * sizeof *p);
    return p;
}

/* Runs the fast kernels under plan p and compares out, dx, dw, db with the reference. The gradients start
 * from non-zero values to check that backward adds. which: bit 0 dx, bit 1 dw, bit 2 db. */
static void compare_plan(const conv_case *k, const lt_conv2d_plan *p, int which, const char *plan_name) {
    lt_conv2d_dims d = case_dims(k);
    int64_t xn = d.n * d.c * d.h * d.w, wn = d.o * (d.c / d.cfg.groups) * d.kh * d.kw,
            yn = d.n * d.o * d.oh * d.ow;
    lt_rng r;
    lt_rng_seed(&r, 42, 3);
    float *x = randn(xn, &r), *w = randn(wn, &r), *b = k->bias ? randn(d.o, &r) : NULL, *dy = randn(yn, &r);
    float *dx0 = randn(xn, &r), *dw0 = randn(wn, &r), *db0 = randn(d.o, &r);
    float *y_ref = malloc((size_t)yn * sizeof(float)), *y = malloc((size_t)yn * sizeof(float));
    float *dx_ref = copy(dx0, xn), *dw_ref = copy(dw0, wn), *db_ref = copy(db0, d.o);
    float *dx = copy(dx0, xn), *dw = copy(dw0, wn), *db = copy(db0, d.o);
    lt_conv2d_forward_ref(y_ref, x, w, b, &d);
    lt_conv2d_backward_ref(which & 1 ? dx_ref : NULL, which & 2 ? dw_ref : NULL, which & 4 ? db_ref : NULL,
                           dy, x, w, &d);
    int64_t sn = lt_conv2d_scratch_numel(&d, p, 1);
    float *scratch = malloc((size_t)(sn ? sn : 1) * sizeof(float));
    for (int64_t i = 0; i < sn; i++)
        scratch[i] = NAN; /* kernels must not read scratch they did not write */
    for (int64_t i = 0; i < yn; i++)
        y[i] = NAN;
    lt_conv2d_forward(y, x, w, b, &d, p, scratch);
    lt_conv2d_backward(which & 1 ? dx : NULL, which & 2 ? dw : NULL, which & 4 ? db : NULL, dy, x, w, &d, p,
                       scratch);
    char what[256];
    double tol = 1e-4 * sqrt((double)(d.c / d.cfg.groups * d.kh * d.kw));
    snprintf(what, sizeof what, "%s [%s] out", k->name, plan_name);
    CHECK_CLOSE(what, y, y_ref, yn, tol, 1e-4);
    snprintf(what, sizeof what, "%s [%s] dx (which %d)", k->name, plan_name, which);
    CHECK_CLOSE(what, dx, dx_ref, xn, tol, 1e-4);
    snprintf(what, sizeof what, "%s [%s] dw (which %d)", k->name, plan_name, which);
    CHECK_CLOSE(what, dw, dw_ref, wn, 1e-4 * sqrt((double)(d.n * d.oh * d.ow)), 1e-4);
    snprintf(what, sizeof what, "%s [%s] db (which %d)", k->name, plan_name, which);
    CHECK_CLOSE(what, db, db_ref, d.o, 1e-4 * sqrt((double)(d.n * d.oh * d.ow)), 1e-4);
    free(x), free(w), free(b), free(dy), free(dx0), free(dw0), free(db0), free(y_ref), free(y);
    free(dx_ref), free(dw_ref), free(db_ref), free(dx), free(dw), free(db), free(scratch);
}

static const conv_case CASES[] = {
    {"3x3 s1 p1", 3, 5, 9, 7, 6, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
    {"3x3 s2 p1 odd", 3, 4, 9, 11, 5, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 1},
    {"3x3 dil2 p2", 1, 3, 10, 9, 4, 3, 3, {1, 1, 2, 2, 2, 2, 1}, 0},
    {"3x3 groups2", 3, 6, 7, 7, 4, 3, 3, {1, 1, 1, 1, 1, 1, 2}, 1},
    {"3x3 groups3 s2", 2, 6, 8, 9, 9, 3, 3, {2, 2, 1, 1, 1, 1, 3}, 0},
    {"depthwise 3x3", 3, 5, 7, 6, 5, 3, 3, {1, 1, 1, 1, 1, 1, 5}, 1},
    {"depthwise x2 s2", 2, 3, 9, 8, 6, 3, 3, {2, 2, 1, 1, 1, 1, 3}, 0},
    {"depthwise dil2", 1, 4, 8, 9, 4, 3, 3, {1, 1, 2, 2, 2, 2, 4}, 1},
    {"single input channel", 2, 1, 6, 7, 3, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
    {"1x1", 3, 7, 5, 6, 9, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 1},
    {"1x1 batch1", 1, 7, 5, 6, 9, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 0},
    {"1x1 groups2", 3, 6, 4, 5, 4, 1, 1, {1, 1, 0, 0, 1, 1, 2}, 1},
    {"1x1 s2", 3, 6, 7, 9, 8, 1, 1, {2, 2, 0, 0, 1, 1, 1}, 0},
    {"1x1 pad1", 2, 3, 4, 5, 4, 1, 1, {1, 1, 1, 1, 1, 1, 1}, 1},
    {"7x7 s2 p3", 2, 3, 13, 11, 4, 7, 7, {2, 2, 3, 3, 1, 1, 1}, 0},
    {"3x3 on 1x1", 3, 8, 1, 1, 5, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
    {"3x3 s2 on 2x2", 4, 6, 2, 2, 5, 3, 3, {2, 2, 1, 1, 1, 1, 1}, 1},
    {"rect 2x3 mixed", 3, 2, 6, 9, 3, 2, 3, {1, 2, 0, 1, 2, 1, 1}, 1},
    {"5x5 s3 p2", 2, 2, 11, 10, 3, 5, 5, {3, 3, 2, 2, 1, 1, 1}, 0},
    {"large pad", 1, 2, 3, 3, 2, 3, 3, {1, 1, 3, 3, 1, 1, 1}, 1},
    /* rows of 16+ outputs, which im2col copies row by row instead of through a tap table */
    {"3x3 wide rows", 2, 3, 5, 37, 4, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1},
    {"3x3 s2 dil2 wide rows", 2, 2, 6, 40, 3, 3, 3, {2, 2, 1, 1, 2, 2, 1}, 0},
    {"depthwise wide rows", 2, 3, 4, 33, 3, 3, 3, {1, 2, 1, 1, 1, 1, 3}, 1},
    /* kernels whose outer taps only ever see padding (cropped before the GEMM) */
    {"5x5 on 2x3 crop rows", 2, 3, 2, 3, 4, 5, 5, {1, 1, 2, 2, 1, 1, 1}, 0},
    {"dil2 on 1x2 crop", 2, 4, 1, 2, 3, 3, 3, {1, 1, 2, 2, 2, 2, 1}, 1},
    {"all padding", 2, 3, 1, 1, 4, 1, 1, {2, 2, 1, 1, 1, 1, 1}, 1},
    {"groups2 on 1x1", 3, 4, 1, 1, 6, 3, 3, {1, 1, 1, 1, 1, 1, 2}, 1},
};

static lt_conv2d_plan mkplan(int64_t nb, int64_t rows, int64_t nb_bw, int64_t rows_bw, int threads,
                             int direct) {
    lt_conv2d_plan p = {nb, rows, nb_bw, rows_bw, threads, direct};
    return p;
}

/* All gradients, and dw alone (then backward splits the rows of col without regard to channels). */
static void compare_both(const conv_case *k, lt_conv2d_plan p, const char *plan_name) {
    compare_plan(k, &p, 7, plan_name);
    compare_plan(k, &p, 2, plan_name);
}

static void test_fast_vs_reference(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof *CASES; i++) {
        const conv_case *k = &CASES[i];
        lt_conv2d_dims d = case_dims(k);
        lt_conv2d_plan p;
        lt_conv2d_plan_auto(&d, 2, &p);
        compare_plan(k, &p, 7, "auto");
        compare_plan(k, &p, 1, "auto dx only");
        compare_plan(k, &p, 2, "auto dw only");
        compare_plan(k, &p, 4, "auto db only");
        /* every cut of the work on 1 thread, and on 2 threads for every third case: a parallel region costs
         * milliseconds when other processes hold the cores, so the threaded runs are rationed */
        for (int threads = 1; threads <= (i % 3 == 0 ? 2 : 1); threads++) {
            const char *tn = threads == 1 ? "1 thread" : "2 threads";
            char name[64];
            int64_t two = 2 < d.oh ? 2 : d.oh;
            if (d.c / d.cfg.groups == 1) compare_both(k, mkplan(1, d.oh, 1, d.oh, threads, 1), "direct");
            /* one image per unit, whole and cut into pieces of 1 and 2 output rows */
            snprintf(name, sizeof name, "nb 1, %s", tn);
            compare_both(k, mkplan(1, d.oh, 1, d.oh, threads, 0), name);
            snprintf(name, sizeof name, "nb 1 rows 1, %s", tn);
            compare_both(k, mkplan(1, 1, 1, 1, threads, 0), name);
            snprintf(name, sizeof name, "nb 1 rows 2, %s", tn);
            compare_both(k, mkplan(1, two, 1, two, threads, 0), name);
            /* several images per unit: all of them (2 threads share it by output channel), and 2 per unit */
            snprintf(name, sizeof name, "nb n, %s", tn);
            compare_both(k, mkplan(d.n, d.oh, d.n, d.oh, threads, 0), name);
            snprintf(name, sizeof name, "nb n, bw rows 2, %s", tn);
            compare_both(k, mkplan(d.n, d.oh, 1, two, threads, 0), name);
            snprintf(name, sizeof name, "nb 2, %s", tn);
            if (d.n >= 2) compare_both(k, mkplan(2, d.oh, 2, d.oh, threads, 0), name);
        }
    }
    /* more threads than cores (the splits and scratch must still fit) */
    for (size_t i = 0; i < 2; i++) {
        lt_conv2d_dims d = case_dims(&CASES[i]);
        compare_both(&CASES[i], mkplan(1, d.oh, d.n, d.oh, 3, 0), "nb 1, 3 threads");
    }
    /* batches whose units split into some per thread and a shared leftover */
    conv_case big = {"batch 5 3x3", 5, 4, 6, 5, 6, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1};
    lt_conv2d_dims d = case_dims(&big);
    compare_both(&big, mkplan(2, d.oh, 2, d.oh, 2, 0), "nb 2 of 5");
    compare_both(&big, mkplan(1, d.oh, 1, d.oh, 2, 0), "nb 1 of 5");
    compare_both(&big, mkplan(1, 4, 1, 4, 2, 0), "nb 1 rows 4 of 5");
    conv_case big1 = {"batch 5 1x1", 5, 6, 3, 4, 7, 1, 1, {1, 1, 0, 0, 1, 1, 1}, 0};
    d = case_dims(&big1);
    compare_both(&big1, mkplan(2, d.oh, 2, d.oh, 2, 0), "nb 2 of 5");
    compare_both(&big1, mkplan(1, d.oh, 1, d.oh, 2, 0), "nb 1 of 5");
    compare_both(&big1, mkplan(1, 2, 1, 2, 2, 0), "nb 1 rows 2 of 5");
    /* the planner's choices for big shapes, on tiny batches so the reference stays quick */
    conv_case wide = {"wide 3x3 batch 1", 1, 8, 48, 48, 16, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 1};
    d = case_dims(&wide);
    lt_conv2d_plan p;
    lt_conv2d_plan_auto(&d, 2, &p);
    CHECK_MSG(p.threads == 2 && p.piece_rows < d.oh, "batch 1 on 2 threads is cut into row pieces");
    compare_plan(&wide, &p, 7, "auto");
}

/* ---- gradcheck through the graph ---- */

typedef struct {
    lt_conv2d_cfg cfg;
    int bias;
} gc_conv_ctx;

static lt_tensor *build_conv(lt_graph *g, lt_tensor **in, void *ctx) {
    gc_conv_ctx *c = ctx;
    return lt_conv2d(g, in[0], in[1], c->bias ? in[2] : NULL, c->cfg);
}

static void gc_conv(const char *label, int64_t n, int64_t c, int64_t h, int64_t w, int64_t o, int64_t kh,
                    int64_t kw, lt_conv2d_cfg cfg, int bias) {
    gc_input ins[3] = {
        {"x", {n, c, h, w}, 4, 1, GC_NORMAL, 0, 1},
        {"w", {o, c / cfg.groups, kh, kw}, 4, 1, GC_NORMAL, 0, 0.5f},
        {"b", {o}, 1, 1, GC_NORMAL, 0, 1},
    };
    gc_conv_ctx ctx = {cfg, bias};
    gc_opts opts = {.seed = 11, .max_points = 48};
    gradcheck(label, ins, bias ? 3 : 2, build_conv, &ctx, opts);
}

static void test_gradcheck(void) {
    gc_conv("conv s2 p1", 2, 3, 7, 6, 4, 3, 3, (lt_conv2d_cfg){2, 2, 1, 1, 1, 1, 1}, 1);
    gc_conv("conv dil2", 1, 2, 9, 8, 3, 3, 3, (lt_conv2d_cfg){1, 1, 2, 2, 2, 2, 1}, 0);
    gc_conv("conv groups2", 2, 4, 5, 6, 6, 3, 3, (lt_conv2d_cfg){1, 1, 1, 1, 1, 1, 2}, 1);
    gc_conv("conv depthwise", 2, 3, 6, 5, 3, 3, 3, (lt_conv2d_cfg){1, 1, 1, 1, 1, 1, 3}, 1);
    gc_conv("conv depthwise x2 s2", 1, 2, 7, 7, 4, 3, 3, (lt_conv2d_cfg){2, 2, 1, 1, 1, 1, 2}, 0);
    gc_conv("conv no bias", 1, 3, 5, 5, 2, 3, 3, (lt_conv2d_cfg){1, 1, 0, 0, 1, 1, 1}, 0);
    gc_conv("conv 1x1", 2, 5, 3, 4, 4, 1, 1, (lt_conv2d_cfg){1, 1, 0, 0, 1, 1, 1}, 1);
    gc_conv("conv 1x1 s2", 2, 4, 7, 5, 3, 1, 1, (lt_conv2d_cfg){2, 2, 0, 0, 1, 1, 1}, 0);
    gc_conv("conv 7x7 s2 p3", 1, 3, 9, 7, 2, 7, 7, (lt_conv2d_cfg){2, 2, 3, 3, 1, 1, 1}, 1);
    gc_conv("conv 3x3 on 1x1", 3, 4, 1, 1, 3, 3, 3, (lt_conv2d_cfg){1, 1, 1, 1, 1, 1, 1}, 1);
    gc_conv("conv 3x3 s2 on 2x2", 2, 3, 2, 2, 4, 3, 3, (lt_conv2d_cfg){2, 2, 1, 1, 1, 1, 1}, 0);
}

/* ---- PyTorch golden values ---- */

static void golden_conv(golden_file *gf, const char *name, lt_conv2d_cfg cfg, int bias) {
    char key[128];
    const char *parts[] = {"x", "w", "b", "y", "gy", "gx", "gw", "gb"};
    golden_tensor *t[8] = {0};
    for (int i = 0; i < 8; i++) {
        if (!bias && (i == 2 || i == 7)) continue;
        snprintf(key, sizeof key, "%s.%s", name, parts[i]);
        t[i] = golden_get(gf, key);
        if (!t[i]) {
            CHECK_MSG(0, "golden %s missing", key);
            return;
        }
    }
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", t[0]->shape, 4, 1);
    lt_tensor *w = lt_graph_input(g, "w", t[1]->shape, 4, 1);
    lt_tensor *b = bias ? lt_graph_input(g, "b", t[2]->shape, 1, 1) : NULL;
    lt_tensor *y = lt_conv2d(g, x, w, b, cfg);
    lt_graph_keep(g, y);
    lt_graph_keep(g, x);
    lt_graph_keep(g, w);
    if (b) lt_graph_keep(g, b);
    lt_err err = {{0}};
    if (lt_graph_plan(g, &err) != LT_OK) {
        CHECK_MSG(0, "%s: plan failed: %s", name, err.msg);
        lt_graph_destroy(g);
        return;
    }
    CHECK_MSG(y->numel == t[3]->numel && y->shape[2] == t[3]->shape[2] && y->shape[3] == t[3]->shape[3],
              "%s: output shape", name);
    memcpy(x->data, t[0]->data, (size_t)x->numel * sizeof(float));
    memcpy(w->data, t[1]->data, (size_t)w->numel * sizeof(float));
    if (b) memcpy(b->data, t[2]->data, (size_t)b->numel * sizeof(float));
    lt_graph_forward(g);
    snprintf(key, sizeof key, "%s forward", name);
    CHECK_CLOSE(key, y->data, t[3]->data, y->numel, 1e-5, 1e-4);
    lt_graph_backward(g, y, t[4]->data);
    snprintf(key, sizeof key, "%s dx", name);
    CHECK_CLOSE(key, x->grad, t[5]->data, x->numel, 1e-5, 1e-4);
    snprintf(key, sizeof key, "%s dw", name);
    CHECK_CLOSE(key, w->grad, t[6]->data, w->numel, 1e-5, 1e-4);
    if (b) {
        snprintf(key, sizeof key, "%s db", name);
        CHECK_CLOSE(key, b->grad, t[7]->data, b->numel, 1e-5, 1e-4);
    }
    lt_graph_destroy(g);
}

static void test_golden(void) {
    golden_file gf;
    if (golden_load(&gf, "conv_pool.txt") != 0) {
        CHECK_MSG(0, "cannot load conv_pool.txt");
        return;
    }
    golden_conv(&gf, "conv_s2p1", (lt_conv2d_cfg){2, 2, 1, 1, 1, 1, 1}, 1);
    golden_conv(&gf, "conv_dil2_g2", (lt_conv2d_cfg){1, 1, 2, 2, 2, 2, 2}, 0);
    golden_conv(&gf, "conv_dw", (lt_conv2d_cfg){1, 1, 1, 1, 1, 1, 4}, 1);
    golden_conv(&gf, "conv_1x1s2", (lt_conv2d_cfg){2, 2, 0, 0, 1, 1, 1}, 1);
    golden_conv(&gf, "conv_7x7s2p3", (lt_conv2d_cfg){2, 2, 3, 3, 1, 1, 1}, 0);
    golden_conv(&gf, "conv_rect", (lt_conv2d_cfg){1, 2, 0, 1, 2, 1, 1}, 1);
    golden_free(&gf);
}

/* ---- builder ---- */

static void expect_error(const int64_t *xs, const int64_t *ws, int64_t bn, lt_conv2d_cfg cfg, lt_status want,
                         const char *needle) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", xs, 4, 1);
    lt_tensor *w = lt_graph_input(g, "w", ws, 4, 1);
    int64_t bs[1] = {bn};
    lt_tensor *b = bn ? lt_graph_input(g, "b", bs, 1, 1) : NULL;
    CHECK(lt_conv2d(g, x, w, b, cfg) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == want);
    CHECK_MSG(strstr(err.msg, "conv2d") && strstr(err.msg, needle), "message '%s' lacks '%s'", err.msg,
              needle);
    lt_graph_destroy(g);
}

static void test_builder(void) {
    int64_t x[4] = {2, 4, 5, 5}, w[4] = {6, 4, 3, 3}, wg[4] = {6, 3, 3, 3}, wbig[4] = {6, 4, 7, 7};
    lt_conv2d_cfg one = {1, 1, 0, 0, 1, 1, 1};
    expect_error(x, wg, 0, one, LT_ERR_SHAPE, "(6, 3, 3, 3)");
    expect_error(x, w, 0, (lt_conv2d_cfg){1, 1, 0, 0, 1, 1, 3}, LT_ERR_SHAPE, "groups=3");
    expect_error(x, w, 5, one, LT_ERR_SHAPE, "(5)");
    expect_error(x, wbig, 0, one, LT_ERR_SHAPE, "(2, 4, 5, 5)");
    expect_error(x, w, 0, (lt_conv2d_cfg){0, 1, 0, 0, 1, 1, 1}, LT_ERR_ARG, "stride");

    /* output shape, and what the planner may free: backward never needs the output or the bias values,
     * and needs x only when w gets a gradient */
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *xt = lt_graph_input(g, "x", x, 4, 1);
    lt_tensor *wt = lt_graph_input(g, "w", w, 4, 0);
    lt_tensor *y = lt_conv2d(g, xt, wt, NULL, (lt_conv2d_cfg){2, 2, 1, 1, 1, 1, 1});
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 6 && y->shape[2] == 3 && y->shape[3] == 3);
    lt_node *nd = lt_graph_node(g, 0);
    CHECK(nd && nd->bw_skip_out == 1 && (nd->bw_skip_in & 1u) && !(nd->bw_skip_in & 2u));
    lt_graph_destroy(g);
}

/* A training graph with a frozen weight and an eval graph run end to end (scratch sized per mode). */
static void test_modes(void) {
    conv_case k = {"mode", 4, 6, 5, 5, 8, 3, 3, {1, 1, 1, 1, 1, 1, 1}, 0};
    lt_conv2d_dims d = case_dims(&k);
    lt_rng r;
    lt_rng_seed(&r, 5, 5);
    int64_t xs[4] = {4, 6, 5, 5}, ws[4] = {8, 6, 3, 3};
    float *xv = randn(4 * 6 * 25, &r), *wv = randn(8 * 6 * 9, &r);
    float *yref = malloc((size_t)(4 * 8 * 25) * sizeof(float));
    lt_conv2d_forward_ref(yref, xv, wv, NULL, &d);
    for (int mode = 0; mode < 2; mode++) {
        lt_graph *g = lt_graph_create(mode ? LT_MODE_EVAL : LT_MODE_TRAIN, NULL);
        lt_tensor *x = lt_graph_input(g, "x", xs, 4, mode == 0);
        lt_tensor *w = lt_graph_input(g, "w", ws, 4, 0);
        lt_tensor *y = lt_conv2d(g, x, w, NULL, k.cfg);
        lt_graph_keep(g, y);
        lt_graph_keep(g, x);
        lt_err err = {{0}};
        CHECK(lt_graph_plan(g, &err) == LT_OK);
        memcpy(x->data, xv, sizeof(float) * (size_t)x->numel);
        memcpy(w->data, wv, sizeof(float) * (size_t)w->numel);
        lt_graph_forward(g);
        CHECK_CLOSE(mode ? "eval forward" : "train forward", y->data, yref, y->numel, 1e-4, 1e-4);
        if (mode == 0) {
            lt_graph_backward(g, y, NULL);
            float *dx = calloc((size_t)x->numel, sizeof(float)),
                  *ones = malloc((size_t)y->numel * sizeof(float));
            for (int64_t i = 0; i < y->numel; i++)
                ones[i] = 1.0f;
            lt_conv2d_backward_ref(dx, NULL, NULL, ones, xv, wv, &d);
            CHECK_CLOSE("frozen-weight dx", x->grad, dx, x->numel, 1e-4, 1e-4);
            free(dx);
            free(ones);
        }
        lt_graph_destroy(g);
    }
    free(xv);
    free(wv);
    free(yref);
}

/* ---- fused epilogue (batch norm, residual, ReLU) ---- */

/* lt_conv2d_forward_epi under plan p against the reference convolution followed by the epilogue written
 * out by hand, for every combination of scale/shift, residual and ReLU. */
static void compare_epi(const conv_case *k, const lt_conv2d_plan *p, const char *plan_name) {
    lt_conv2d_dims d = case_dims(k);
    int64_t xn = d.n * d.c * d.h * d.w, wn = d.o * (d.c / d.cfg.groups) * d.kh * d.kw,
            yn = d.n * d.o * d.oh * d.ow, P = d.oh * d.ow;
    lt_rng r;
    lt_rng_seed(&r, 7, 1);
    float *x = randn(xn, &r), *w = randn(wn, &r), *scale = randn(d.o, &r), *shift = randn(d.o, &r);
    float *res = randn(yn, &r), *conv = malloc((size_t)yn * sizeof(float)),
          *want = malloc((size_t)yn * sizeof(float));
    float *y = malloc((size_t)yn * sizeof(float));
    lt_conv2d_forward_ref(conv, x, w, NULL, &d);
    int64_t sn = lt_conv2d_scratch_numel(&d, p, 0);
    float *scratch = malloc((size_t)(sn ? sn : 1) * sizeof(float));
    for (int v = 0; v < 8; v++) {
        int affine = v & 1, with_res = v & 2, relu = (v & 4) != 0;
        lt_conv2d_epi e = {affine ? scale : NULL, shift, with_res ? res : NULL, relu};
        for (int64_t i = 0; i < yn; i++) {
            int64_t o = i / P % d.o;
            double t = (double)conv[i] * (affine ? scale[o] : 1.0) + shift[o] + (with_res ? res[i] : 0.0);
            want[i] = (float)(relu && t < 0 ? 0.0 : t);
        }
        for (int64_t i = 0; i < sn; i++)
            scratch[i] = NAN;
        for (int64_t i = 0; i < yn; i++)
            y[i] = NAN;
        lt_conv2d_forward_epi(y, x, w, &e, &d, p, scratch);
        char what[256];
        snprintf(what, sizeof what, "%s [%s] epilogue %s%s%s", k->name, plan_name,
                 affine ? "scale+shift" : "shift", with_res ? " +res" : "", relu ? " relu" : "");
        double tol = 1e-4 * sqrt((double)(d.c / d.cfg.groups * d.kh * d.kw));
        CHECK_CLOSE(what, y, want, yn, tol, 1e-4);
    }
    free(x), free(w), free(scale), free(shift), free(res), free(conv), free(want), free(y), free(scratch);
}

static void test_epilogue(void) {
    /* the GEMM paths (in place, batched through the stage buffer, pieces of rows, shared leftover units),
     * the cropped kernel, the all-padding and the depthwise paths */
    static const int picks[] = {0, 1, 5, 9, 10, 14, 15, 25, 26};
    for (size_t i = 0; i < sizeof picks / sizeof *picks; i++) {
        const conv_case *k = &CASES[picks[i]];
        lt_conv2d_dims d = case_dims(k);
        lt_conv2d_plan p;
        lt_conv2d_plan_auto(&d, 2, &p);
        compare_epi(k, &p, "auto");
        if (d.c / d.cfg.groups == 1) {
            compare_epi(k, &(lt_conv2d_plan){1, d.oh, 1, d.oh, 1, 1}, "direct");
            continue;
        }
        compare_epi(k, &(lt_conv2d_plan){1, 1, 1, 1, 2, 0}, "nb 1 rows 1, 2 threads");
        compare_epi(k, &(lt_conv2d_plan){d.n, d.oh, 1, d.oh, 2, 0}, "nb n, 2 threads");
        if (d.n >= 2) compare_epi(k, &(lt_conv2d_plan){2, d.oh, 2, d.oh, 1, 0}, "nb 2, 1 thread");
    }
}

/* The fused graph node against conv2d -> batchnorm2d -> add -> relu in an eval graph, both batch-norm modes
 * that allow it, with and without residual and ReLU: the same float operations in the same order, so the
 * two agree to rounding. */
static void test_conv_bn_node(void) {
    lt_rng r;
    lt_rng_seed(&r, 11, 2);
    int64_t xs[4] = {2, 5, 7, 6}, ws[4] = {6, 5, 3, 3}, cs[1] = {6}, ys[4] = {2, 6, 4, 3};
    lt_conv2d_cfg cfg = {2, 2, 1, 1, 1, 1, 1};
    for (int v = 0; v < 8; v++) {
        lt_bn_mode mode = v & 1 ? LT_BN_FROZEN : LT_BN_EVAL;
        int with_res = (v & 2) != 0, relu = (v & 4) != 0;
        float *outs[2];
        for (int fused = 0; fused < 2; fused++) {
            lt_rng rr = r;
            lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
            lt_tensor *x = lt_graph_input(g, "x", xs, 4, 0), *w = lt_graph_input(g, "w", ws, 4, 0);
            lt_tensor *bw = lt_graph_input(g, "bw", cs, 1, 0), *bb = lt_graph_input(g, "bb", cs, 1, 0);
            lt_tensor *rm = lt_graph_input(g, "rm", cs, 1, 0), *rv = lt_graph_input(g, "rv", cs, 1, 0);
            lt_tensor *res = with_res ? lt_graph_input(g, "res", ys, 4, 0) : NULL, *y;
            if (fused) {
                y = lt_conv2d_bn_eval(g, x, w, cfg, bw, bb, rm, rv, mode, 1e-5f, res, relu);
            } else {
                y = lt_batchnorm2d(g, lt_conv2d(g, x, w, NULL, cfg), bw, bb, rm, rv, mode, 0.1f, 1e-5f);
                if (res) y = lt_add(g, y, res);
                if (relu) y = lt_relu(g, y);
            }
            lt_graph_keep(g, y);
            lt_err err = {{0}};
            CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
            if (check_failed) return;
            lt_tensor *all[7] = {x, w, bw, bb, rm, rv, res};
            for (int t = 0; t < 7; t++)
                for (int64_t i = 0; all[t] && i < all[t]->numel; i++)
                    all[t]->data[i] = t == 5 ? 0.5f + fabsf(lt_rng_normal(&rr)) : lt_rng_normal(&rr);
            lt_graph_forward(g);
            CHECK(y->shape[1] == 6 && y->numel == 2 * 6 * 4 * 3);
            outs[fused] = copy(y->data, y->numel);
            lt_graph_destroy(g);
        }
        char what[96];
        snprintf(what, sizeof what, "conv2d_bn %s%s%s vs separate ops",
                 mode == LT_BN_FROZEN ? "frozen" : "eval", with_res ? " +res" : "", relu ? " relu" : "");
        CHECK_CLOSE(what, outs[1], outs[0], 2 * 6 * 4 * 3, 1e-6, 1e-6);
        free(outs[0]);
        free(outs[1]);
    }
    /* errors: a training graph, a residual of the wrong shape, a batch-norm vector of the wrong size */
    for (int c = 0; c < 3; c++) {
        lt_graph *g = lt_graph_create(c == 0 ? LT_MODE_TRAIN : LT_MODE_EVAL, NULL);
        int64_t bad[4] = {2, 6, 4, 4}, c5[1] = {5};
        lt_tensor *x = lt_graph_input(g, "x", xs, 4, 0), *w = lt_graph_input(g, "w", ws, 4, 0);
        lt_tensor *rm = lt_graph_input(g, "rm", c == 2 ? c5 : cs, 1, 0),
                  *rv = lt_graph_input(g, "rv", cs, 1, 0);
        lt_tensor *res = c == 1 ? lt_graph_input(g, "res", bad, 4, 0) : NULL;
        CHECK(lt_conv2d_bn_eval(g, x, w, cfg, NULL, NULL, rm, rv, LT_BN_EVAL, 1e-5f, res, 1) == NULL);
        lt_err err = {{0}};
        CHECK(lt_graph_plan(g, &err) != LT_OK);
        static const char *needle[3] = {"inference only", "(2, 6, 4, 4)", "running_mean"};
        CHECK_MSG(strstr(err.msg, "conv2d_bn") && strstr(err.msg, needle[c]), "message '%s' lacks '%s'",
                  err.msg, needle[c]);
        lt_graph_destroy(g);
    }
}

int main(void) {
    test_fast_vs_reference();
    test_epilogue();
    test_conv_bn_node();
    test_gradcheck();
    test_golden();
    test_builder();
    test_modes();
    return check_summary("test_conv2d");
}
