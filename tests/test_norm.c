/* Tests of norm.c: batchnorm2d in train/eval/frozen mode and layernorm, against PyTorch golden values
 * (tools/golden/norm_act.py), finite differences, and naive double-precision references on tensors large
 * enough to take the OpenMP path. */
#include "check.h"
#include "core/params.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static golden_file gf;

static void put(const char *name, lt_tensor *t) {
    golden_put(&gf, name, t->data, t->numel);
}

static void expect(const char *name, const float *got, int64_t n, double atol, double rtol) {
    golden_expect(&gf, NULL, name, got, n, atol, rtol);
}

static const float *gdata(const char *name) {
    golden_tensor *s = golden_get(&gf, name);
    return s ? s->data : NULL;
}

/* ---- batchnorm against PyTorch ---- */

typedef struct {
    lt_params p;
    lt_tensor *w, *b, *rm, *rv; /* (C) each: w, b trainable, rm, rv buffers */
} bn_params;

static void bn_params_make(bn_params *bp, int64_t C, lt_param_kind wkind) {
    lt_params_init(&bp->p);
    lt_err err = {{0}};
    int64_t s[1] = {C};
    bp->w = lt_params_add(&bp->p, "bn.weight", s, 1, wkind, &err);
    bp->b = lt_params_add(&bp->p, "bn.bias", s, 1, wkind, &err);
    bp->rm = lt_params_add(&bp->p, "bn.running_mean", s, 1, LT_PARAM_BUFFER, &err);
    bp->rv = lt_params_add(&bp->p, "bn.running_var", s, 1, LT_PARAM_BUFFER, &err);
    CHECK(lt_params_alloc(&bp->p, &err) == LT_OK);
    put("bn_w", bp->w);
    put("bn_b", bp->b);
    put("bn_rm0", bp->rm);
    put("bn_rv0", bp->rv);
}

static void test_bn_train_golden(void) {
    bn_params bp;
    bn_params_make(&bp, 4, LT_PARAM_TRAINABLE);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[4] = {3, 4, 5, 3};
    lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1);
    lt_tensor *y = lt_batchnorm2d(g, x, bp.w, bp.b, bp.rm, bp.rv, LT_BN_TRAIN, 0.1f, 1e-5f);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (!y || !y->data) goto done;
    /* step 1: output, running statistics, gradients */
    put("bn_x1", x);
    lt_graph_forward(g);
    expect("bn_y1", y->data, y->numel, 1e-5, 1e-5);
    expect("bn_rm1", bp.rm->data, 4, 1e-6, 1e-6);
    expect("bn_rv1", bp.rv->data, 4, 1e-6, 1e-6);
    lt_params_zero_grad(&bp.p);
    lt_graph_backward(g, y, gdata("bn_dy1"));
    expect("bn_dx1", x->grad, x->numel, 1e-5, 1e-4);
    expect("bn_dw1", bp.w->grad, 4, 1e-5, 1e-5);
    expect("bn_db1", bp.b->grad, 4, 1e-5, 1e-5);
    /* parameter gradients accumulate across backward calls */
    lt_graph_backward(g, y, gdata("bn_dy1"));
    CHECK_NEAR(bp.b->grad[2], 2.0 * gdata("bn_db1")[2], 1e-5, 1e-5);
    /* step 2: the running statistics move again from step 1's values */
    put("bn_x2", x);
    lt_graph_forward(g);
    expect("bn_y2", y->data, y->numel, 1e-5, 1e-5);
    expect("bn_rm2", bp.rm->data, 4, 1e-6, 1e-6);
    expect("bn_rv2", bp.rv->data, 4, 1e-6, 1e-6);
done:
    lt_graph_destroy(g);
    lt_params_free(&bp.p);
}

static void test_bn_eval_and_frozen_golden(void) {
    for (int frozen = 0; frozen < 2; frozen++) {
        bn_params bp;
        bn_params_make(&bp, 4, LT_PARAM_TRAINABLE);
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        int64_t shape[4] = {3, 4, 5, 3};
        lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1);
        lt_tensor *y =
            lt_batchnorm2d(g, x, bp.w, bp.b, bp.rm, bp.rv, frozen ? LT_BN_FROZEN : LT_BN_EVAL, 0.1f, 1e-5f);
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
        if (!y || !y->data) {
            lt_graph_destroy(g);
            lt_params_free(&bp.p);
            continue;
        }
        put("bn_x2", x);
        lt_graph_forward(g);
        expect(frozen ? "bnf_y" : "bne_y", y->data, y->numel, 1e-5, 1e-5);
        /* running statistics are read, never written, outside training mode */
        expect("bn_rm0", bp.rm->data, 4, 0, 0);
        expect("bn_rv0", bp.rv->data, 4, 0, 0);
        lt_params_zero_grad(&bp.p);
        lt_graph_backward(g, y, gdata("bn_dy1"));
        /* with running statistics dx = dy * weight * rstd in both modes */
        expect("bne_dx", x->grad, x->numel, 1e-5, 1e-5);
        if (frozen) {
            /* weight and bias are constants in frozen mode, even though these are trainable tensors */
            float zeros[4] = {0};
            CHECK_CLOSE("frozen dweight", bp.w->grad, zeros, 4, 0, 0);
            CHECK_CLOSE("frozen dbias", bp.b->grad, zeros, 4, 0, 0);
        } else {
            expect("bne_dw", bp.w->grad, 4, 1e-5, 1e-5);
            expect("bne_db", bp.b->grad, 4, 1e-5, 1e-5);
        }
        lt_graph_destroy(g);
        lt_params_free(&bp.p);
    }
}

/* DETR's backbone: frozen weights and buffers, an input that needs no gradient -> no backward at all */
static void test_bn_frozen_params(void) {
    bn_params bp;
    bn_params_make(&bp, 4, LT_PARAM_FROZEN);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[4] = {3, 4, 5, 3};
    lt_tensor *x = lt_graph_input(g, "x", shape, 4, 0);
    lt_tensor *y = lt_batchnorm2d(g, x, bp.w, bp.b, bp.rm, bp.rv, LT_BN_FROZEN, 0.1f, 1e-5f);
    CHECK(y && !y->requires_grad);
    lt_node *n = lt_graph_node(g, 0);
    CHECK(n && n->bw_skip_out == 1 && (n->bw_skip_in & 0x1f) == 0x1f);
    CHECK(n && n->saved_numel == 4);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (y && y->data) {
        put("bn_x2", x);
        lt_graph_forward(g);
        expect("bnf_y", y->data, y->numel, 1e-5, 1e-5);
    }
    lt_graph_destroy(g);
    /* trainable weights but frozen mode: the output still needs no gradient */
    lt_params_free(&bp.p);
    bn_params_make(&bp, 4, LT_PARAM_TRAINABLE);
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    x = lt_graph_input(g, "x", shape, 4, 0);
    y = lt_batchnorm2d(g, x, bp.w, bp.b, bp.rm, bp.rv, LT_BN_FROZEN, 0.1f, 1e-5f);
    CHECK(y && !y->requires_grad);
    lt_graph_destroy(g);
    lt_params_free(&bp.p);
}

/* ---- batchnorm against finite differences ---- */

typedef struct {
    lt_bn_mode mode;
    int affine; /* pass weight and bias (inputs 1, 2) */
} bn_ctx;

static lt_tensor *build_bn(lt_graph *g, lt_tensor **in, void *ctx) {
    bn_ctx *c = ctx;
    return lt_batchnorm2d(g, in[0], c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, in[3], in[4], c->mode,
                          0.1f, 1e-5f);
}

static void gradcheck_bn(const char *label, int64_t N, int64_t C, int64_t H, int64_t W, lt_bn_mode mode,
                         int affine) {
    gc_input ins[5] = {
        {"x", {N, C, H, W}, 4, 1, GC_NORMAL, 0.5f, 1.5f},
        /* frozen mode treats weight and bias as constants: their gradient is checked to be 0 elsewhere */
        {"weight", {C}, 1, affine && mode != LT_BN_FROZEN, GC_NORMAL, 1.0f, 0.5f},
        {"bias", {C}, 1, affine && mode != LT_BN_FROZEN, GC_NORMAL, 0.0f, 0.5f},
        {"running_mean", {C}, 1, 0, GC_NORMAL, 0.0f, 0.3f},
        {"running_var", {C}, 1, 0, GC_UNIFORM, 0.5f, 2.0f},
    };
    bn_ctx c = {mode, affine};
    gradcheck(label, ins, 5, build_bn, &c, (gc_opts){.seed = 11, .max_points = 80});
}

static void test_bn_gradcheck(void) {
    /* planes of up to 16 pixels take the small-plane kernels, larger ones the per-plane kernels */
    gradcheck_bn("bn train (3,4,5,3)", 3, 4, 5, 3, LT_BN_TRAIN, 1);
    gradcheck_bn("bn train (2,3,5,4)", 2, 3, 5, 4, LT_BN_TRAIN, 1);
    gradcheck_bn("bn eval (2,3,6,3)", 2, 3, 6, 3, LT_BN_EVAL, 1);
    gradcheck_bn("bn train (2,3,1,1)", 2, 3, 1, 1, LT_BN_TRAIN, 1);
    gradcheck_bn("bn train (1,2,3,1)", 1, 2, 3, 1, LT_BN_TRAIN, 1);
    gradcheck_bn("bn train no affine (2,3,2,3)", 2, 3, 2, 3, LT_BN_TRAIN, 0);
    gradcheck_bn("bn eval (3,4,5,3)", 3, 4, 5, 3, LT_BN_EVAL, 1);
    gradcheck_bn("bn eval (2,3,1,1)", 2, 3, 1, 1, LT_BN_EVAL, 1);
    gradcheck_bn("bn frozen (3,4,5,3)", 3, 4, 5, 3, LT_BN_FROZEN, 1);
    gradcheck_bn("bn frozen no affine (2,3,2,2)", 2, 3, 2, 2, LT_BN_FROZEN, 0);
}

/* One value per channel (N*H*W == 1): PyTorch refuses to train on it; here the output must stay finite
 * (it equals the bias) and so must the running statistics. */
static void test_bn_single_value_per_channel(void) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[4] = {1, 3, 1, 1}, cs[1] = {3};
    lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1);
    lt_tensor *w = lt_graph_input(g, "w", cs, 1, 1), *b = lt_graph_input(g, "b", cs, 1, 1);
    lt_tensor *rm = lt_graph_input(g, "rm", cs, 1, 0), *rv = lt_graph_input(g, "rv", cs, 1, 0);
    lt_tensor *y = lt_batchnorm2d(g, x, w, b, rm, rv, LT_BN_TRAIN, 0.1f, 1e-5f);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (y && y->data) {
        for (int i = 0; i < 3; i++) {
            x->data[i] = 3.0f * (float)i - 1.0f;
            w->data[i] = 2.0f;
            b->data[i] = 0.5f * (float)i;
            rm->data[i] = 0.0f;
            rv->data[i] = 1.0f;
        }
        lt_graph_forward(g);
        float dy[3] = {1.0f, -2.0f, 0.5f};
        lt_graph_backward(g, y, dy);
        for (int i = 0; i < 3; i++) {
            CHECK_NEAR(y->data[i], 0.5 * i, 1e-6, 0);
            CHECK(isfinite(rv->data[i]) && isfinite(rm->data[i]) && isfinite(x->grad[i]));
            CHECK_NEAR(rm->data[i], 0.1 * (3.0 * i - 1.0), 1e-6, 1e-6);
            CHECK_NEAR(rv->data[i], 0.9, 1e-6, 0);
            CHECK_NEAR(x->grad[i], 0.0, 1e-6, 0);
            CHECK_NEAR(b->grad[i], dy[i], 0, 0);
        }
    }
    lt_graph_destroy(g);
}

/* ---- batchnorm against a naive double-precision reference, large enough for OpenMP ---- */

static void ref_bn_train(double *y, double *rm, double *rv, double *dx, double *dw, double *db,
                         const float *x, const float *w, const float *b, const float *dy, int64_t N,
                         int64_t C, int64_t HW, double momentum, double eps) {
    const int64_t n = N * HW;
    for (int64_t c = 0; c < C; c++) {
        double m = 0, v = 0, sdy = 0, sdyx = 0;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < HW; j++)
                m += x[(i * C + c) * HW + j];
        m /= (double)n;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < HW; j++)
                v += pow(x[(i * C + c) * HW + j] - m, 2);
        rm[c] = (1 - momentum) * rm[c] + momentum * m;
        rv[c] = (1 - momentum) * rv[c] + momentum * v / (double)(n - 1);
        v /= (double)n;
        const double rs = 1.0 / sqrt(v + eps);
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < HW; j++) {
                int64_t k = (i * C + c) * HW + j;
                y[k] = (x[k] - m) * rs * w[c] + b[c];
                sdy += dy[k];
                sdyx += dy[k] * (x[k] - m) * rs;
            }
        dw[c] = sdyx;
        db[c] = sdy;
        for (int64_t i = 0; i < N; i++)
            for (int64_t j = 0; j < HW; j++) {
                int64_t k = (i * C + c) * HW + j;
                dx[k] = w[c] * rs * (dy[k] - sdy / (double)n - (x[k] - m) * rs * sdyx / (double)n);
            }
    }
}

static void to_float(float *dst, const double *src, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = (float)src[i];
}

/* Sizes above the OpenMP threshold (32768 values); planes of up to 16 pixels take the small-plane kernels. */
static void bn_train_large_vs_reference(int64_t N, int64_t C, int64_t H, int64_t W) {
    const int64_t HW = H * W, n = N * C * HW;
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[4] = {N, C, H, W}, cs[1] = {C};
    lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1);
    lt_tensor *w = lt_graph_input(g, "w", cs, 1, 1), *b = lt_graph_input(g, "b", cs, 1, 1);
    lt_tensor *rm = lt_graph_input(g, "rm", cs, 1, 0), *rv = lt_graph_input(g, "rv", cs, 1, 0);
    lt_tensor *y = lt_batchnorm2d(g, x, w, b, rm, rv, LT_BN_TRAIN, 0.25f, 1e-5f);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (!y || !y->data) {
        lt_graph_destroy(g);
        return;
    }
    lt_rng rng;
    lt_rng_seed(&rng, 5, 1);
    float *dy = malloc((size_t)n * sizeof *dy), *f = malloc((size_t)n * sizeof *f);
    double *ry = malloc((size_t)n * sizeof *ry), *rdx = malloc((size_t)n * sizeof *rdx);
    double *rrm = malloc((size_t)C * 4 * sizeof(double)), *rrv = rrm + C, *rdw = rrv + C, *rdb = rdw + C;
    /* a large offset (100) against a small spread (0.5): a one-pass float variance would lose it */
    for (int64_t i = 0; i < n; i++)
        x->data[i] = 100.0f + 0.5f * lt_rng_normal(&rng) + 0.1f * (float)(i / HW % C % 8);
    for (int64_t i = 0; i < n; i++)
        dy[i] = lt_rng_normal(&rng);
    for (int64_t c = 0; c < C; c++) {
        w->data[c] = 1.0f + 0.1f * (float)(c % 8); /* x * alpha + beta cancels: keep alpha ~ 1 */
        b->data[c] = 0.05f * (float)(c % 8);
        rm->data[c] = rrm[c] = 0.5;
        rv->data[c] = rrv[c] = 2.0;
    }
    ref_bn_train(ry, rrm, rrv, rdx, rdw, rdb, x->data, w->data, b->data, dy, N, C, HW, 0.25, 1e-5);
    lt_graph_forward(g);
    lt_graph_backward(g, y, dy);
    to_float(f, ry, n);
    CHECK_CLOSE("large bn y", y->data, f, n, 2e-4, 1e-4);
    to_float(f, rdx, n);
    CHECK_CLOSE("large bn dx", x->grad, f, n, 2e-4, 1e-3);
    to_float(f, rrm, C);
    CHECK_CLOSE("large bn running_mean", rm->data, f, C, 1e-5, 1e-6);
    to_float(f, rrv, C);
    CHECK_CLOSE("large bn running_var", rv->data, f, C, 1e-5, 1e-5);
    to_float(f, rdw, C);
    CHECK_CLOSE("large bn dweight", w->grad, f, C, 1e-2, 1e-3);
    to_float(f, rdb, C);
    CHECK_CLOSE("large bn dbias", b->grad, f, C, 1e-3, 1e-4);
    free(dy);
    free(f);
    free(ry);
    free(rdx);
    free(rrm);
    lt_graph_destroy(g);
}

static void test_bn_train_large_vs_reference(void) {
    bn_train_large_vs_reference(4, 8, 32, 40);   /* the per-plane kernels */
    bn_train_large_vs_reference(16, 1024, 2, 2); /* small planes, as ResNet-50's stage 3 at 28 x 28 */
    bn_train_large_vs_reference(17, 2101, 1, 1); /* one pixel, channel ranges with vector tails */
    bn_train_large_vs_reference(9, 300, 4, 4);
}

/* ---- batchnorm: builder validation and planner flags ---- */

static void test_bn_errors_and_flags(void) {
    int64_t shape[4] = {2, 3, 4, 4}, c3[1] = {3}, c4[1] = {4}, s3[3] = {2, 3, 4};
    lt_err err = {{0}};
    struct {
        const char *what;
        int bad; /* 0 ok, 1 wrong weight shape, 2 3-D x, 3 running_var requires grad, 4 eps 0, 5 no stats */
        lt_status want;
        const char *needle;
    } cases[] = {
        {"ok", 0, LT_OK, ""},
        {"weight (4) for C 3", 1, LT_ERR_SHAPE, "(4)"},
        {"3-D input", 2, LT_ERR_SHAPE, "(2, 3, 4)"},
        {"running_var with grad", 3, LT_ERR_ARG, "running_var"},
        {"eps 0", 4, LT_ERR_ARG, "eps"},
        {"eval without stats", 5, LT_ERR_ARG, "running_mean"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        lt_tensor *x =
            cases[k].bad == 2 ? lt_graph_input(g, "x", s3, 3, 1) : lt_graph_input(g, "x", shape, 4, 1);
        lt_tensor *w = lt_graph_input(g, "w", cases[k].bad == 1 ? c4 : c3, 1, 1);
        lt_tensor *b = lt_graph_input(g, "b", c3, 1, 1);
        lt_tensor *rm = lt_graph_input(g, "rm", c3, 1, 0);
        lt_tensor *rv = lt_graph_input(g, "rv", c3, 1, cases[k].bad == 3);
        lt_bn_mode mode = cases[k].bad == 5 ? LT_BN_EVAL : LT_BN_TRAIN;
        lt_tensor *y = lt_batchnorm2d(g, x, w, b, cases[k].bad == 5 ? NULL : rm, rv, mode, 0.1f,
                                      cases[k].bad == 4 ? 0.0f : 1e-5f);
        lt_status st = lt_graph_status(g, &err);
        CHECK_MSG(st == cases[k].want, "%s: status %d, want %d", cases[k].what, (int)st, (int)cases[k].want);
        CHECK_MSG((y != NULL) == (cases[k].want == LT_OK), "%s: output", cases[k].what);
        if (st != LT_OK)
            CHECK_MSG(strstr(err.msg, "batchnorm2d") && strstr(err.msg, cases[k].needle), "%s: message '%s'",
                      cases[k].what, err.msg);
        lt_graph_destroy(g);
    }
    /* what backward reads, per mode: bias and running stats never; x and weight only when needed */
    for (int mode = 0; mode < LT_BN_MODE_COUNT; mode++) {
        for (int xg = 0; xg < 2; xg++) {
            lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
            lt_tensor *x = lt_graph_input(g, "x", shape, 4, xg);
            lt_tensor *w = lt_graph_input(g, "w", c3, 1, 1), *b = lt_graph_input(g, "b", c3, 1, 1);
            lt_tensor *rm = lt_graph_input(g, "rm", c3, 1, 0), *rv = lt_graph_input(g, "rv", c3, 1, 0);
            lt_batchnorm2d(g, x, w, b, rm, rv, (lt_bn_mode)mode, 0.1f, 1e-5f);
            lt_node *n = lt_graph_node(g, 0);
            uint32_t want = 0x1c;
            if (mode == LT_BN_FROZEN)
                want = 0x1f;
            else if (!xg)
                want |= 0x2; /* weight is read only for dx */
            CHECK_MSG(n && n->bw_skip_in == want && n->bw_skip_out == 1, "bn mode %d x grad %d: skip_in 0x%x",
                      mode, xg, n ? n->bw_skip_in : 0);
            CHECK(n && n->saved_numel == (mode == LT_BN_FROZEN ? 3 : 6));
            lt_graph_destroy(g);
        }
    }
    /* eval mode with constant weights: x is not needed by backward */
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1);
    lt_tensor *rm = lt_graph_input(g, "rm", c3, 1, 0), *rv = lt_graph_input(g, "rv", c3, 1, 0);
    lt_batchnorm2d(g, x, NULL, NULL, rm, rv, LT_BN_EVAL, 0.1f, 1e-5f);
    lt_node *n = lt_graph_node(g, 0);
    CHECK(n && (n->bw_skip_in & 1u));
    lt_graph_destroy(g);
}

/* ---- layernorm ---- */

static void test_layernorm_golden(void) {
    const char *tags[2] = {"ln", "ln2"};
    const float eps[2] = {1e-5f, 1e-6f};
    int64_t shapes[2][3] = {{2, 3, 7}, {5, 64, 0}};
    const int ndims[2] = {3, 2};
    for (int k = 0; k < 2; k++) {
        const int64_t C = shapes[k][ndims[k] - 1];
        char name[32];
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        int64_t cs[1] = {C};
        lt_err err = {{0}};
        /* weight and bias in a parameter store, whose gradients accumulate across backward calls */
        lt_params p;
        lt_params_init(&p);
        lt_tensor *w = lt_params_add(&p, "ln.weight", cs, 1, LT_PARAM_TRAINABLE, &err);
        lt_tensor *b = lt_params_add(&p, "ln.bias", cs, 1, LT_PARAM_TRAINABLE, &err);
        CHECK(lt_params_alloc(&p, &err) == LT_OK);
        lt_tensor *x = lt_graph_input(g, "x", shapes[k], ndims[k], 1);
        lt_tensor *y = lt_layernorm(g, x, w, b, eps[k]);
        lt_graph_keep(g, y);
        CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
        if (y && y->data) {
#define NAME(s) (snprintf(name, sizeof name, "%s_%s", tags[k], s), name)
            put(NAME("x"), x);
            put(NAME("w"), w);
            put(NAME("b"), b);
            lt_graph_forward(g);
            expect(NAME("y"), y->data, y->numel, 1e-5, 1e-5);
            lt_graph_backward(g, y, gdata(NAME("dy")));
            expect(NAME("dx"), x->grad, x->numel, 1e-5, 1e-4);
            expect(NAME("dw"), w->grad, C, 1e-5, 1e-5);
            expect(NAME("db"), b->grad, C, 1e-5, 1e-5);
            /* a second backward adds the same gradients again */
            lt_graph_backward(g, y, gdata(NAME("dy")));
            for (int64_t i = 0; i < C; i++) {
                w->grad[i] *= 0.5f;
                b->grad[i] *= 0.5f;
            }
            expect(NAME("dw"), w->grad, C, 1e-5, 1e-5);
            expect(NAME("db"), b->grad, C, 1e-5, 1e-5);
#undef NAME
        }
        lt_graph_destroy(g);
        lt_params_free(&p);
    }
}

static lt_tensor *build_ln(lt_graph *g, lt_tensor **in, void *ctx) {
    int affine = *(int *)ctx;
    return lt_layernorm(g, in[0], affine ? in[1] : NULL, affine ? in[2] : NULL, 1e-5f);
}

static void test_layernorm_gradcheck(void) {
    int affine = 1;
    gc_input ins[3] = {
        {"x", {2, 3, 7}, 3, 1, GC_NORMAL, 0.3f, 1.5f},
        {"weight", {7}, 1, 1, GC_NORMAL, 1.0f, 0.5f},
        {"bias", {7}, 1, 1, GC_NORMAL, 0.0f, 0.5f},
    };
    gradcheck("layernorm (2,3,7)", ins, 3, build_ln, &affine, (gc_opts){.seed = 3, .max_points = 64});
    affine = 0;
    gc_input ins2[3] = {
        {"x", {5, 3}, 2, 1, GC_NORMAL, 0.0f, 2.0f},
        {"weight", {3}, 1, 0, GC_CONST, 1.0f, 0},
        {"bias", {3}, 1, 0, GC_CONST, 0.0f, 0},
    };
    gradcheck("layernorm no affine (5,3)", ins2, 3, build_ln, &affine, (gc_opts){.seed = 4});
    /* a single-channel row normalizes to 0 whatever x: the gradient to x must be 0, not NaN */
    affine = 1;
    gc_input ins3[3] = {
        {"x", {4, 1}, 2, 1, GC_NORMAL, 0.0f, 1.0f},
        {"weight", {1}, 1, 1, GC_NORMAL, 1.0f, 0.5f},
        {"bias", {1}, 1, 1, GC_NORMAL, 0.0f, 0.5f},
    };
    gradcheck("layernorm C=1 (4,1)", ins3, 3, build_ln, &affine, (gc_opts){.seed = 5});
}

static void test_layernorm_large_vs_reference(void) {
    const int64_t R = 300, C = 130,
                  n = R * C; /* 39000 > the OpenMP threshold; C not a multiple of the block */
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[2] = {R, C}, cs[1] = {C};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, 1);
    lt_tensor *w = lt_graph_input(g, "w", cs, 1, 1), *b = lt_graph_input(g, "b", cs, 1, 1);
    lt_tensor *y = lt_layernorm(g, x, w, b, 1e-6f);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (!y || !y->data) {
        lt_graph_destroy(g);
        return;
    }
    lt_rng rng;
    lt_rng_seed(&rng, 9, 1);
    float *dy = malloc((size_t)n * sizeof *dy), *fy = malloc((size_t)n * sizeof *fy);
    float *fdx = malloc((size_t)n * sizeof *fdx), fdw[130], fdb[130];
    double *dw = calloc((size_t)C, sizeof *dw), *db = calloc((size_t)C, sizeof *db);
    for (int64_t i = 0; i < n; i++)
        x->data[i] = 50.0f + 2.0f * lt_rng_normal(&rng);
    for (int64_t i = 0; i < n; i++)
        dy[i] = lt_rng_normal(&rng);
    for (int64_t c = 0; c < C; c++) {
        w->data[c] = 1.0f + 0.3f * lt_rng_normal(&rng);
        b->data[c] = 0.2f * lt_rng_normal(&rng);
    }
    /* naive reference in double */
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x->data + r * C, *gr = dy + r * C;
        double m = 0, v = 0, sd = 0, sdx = 0;
        for (int64_t c = 0; c < C; c++)
            m += xr[c];
        m /= (double)C;
        for (int64_t c = 0; c < C; c++)
            v += (xr[c] - m) * (xr[c] - m);
        const double rs = 1.0 / sqrt(v / (double)C + 1e-6);
        for (int64_t c = 0; c < C; c++) {
            const double xh = (xr[c] - m) * rs;
            fy[r * C + c] = (float)(xh * w->data[c] + b->data[c]);
            sd += gr[c] * w->data[c];
            sdx += gr[c] * w->data[c] * xh;
            dw[c] += gr[c] * xh;
            db[c] += gr[c];
        }
        for (int64_t c = 0; c < C; c++) {
            const double xh = (xr[c] - m) * rs;
            fdx[r * C + c] = (float)(rs * (gr[c] * w->data[c] - sd / (double)C - xh * sdx / (double)C));
        }
    }
    for (int64_t c = 0; c < C; c++) {
        fdw[c] = (float)dw[c];
        fdb[c] = (float)db[c];
    }
    lt_graph_forward(g);
    lt_graph_backward(g, y, dy);
    CHECK_CLOSE("large layernorm y", y->data, fy, n, 2e-4, 1e-4);
    CHECK_CLOSE("large layernorm dx", x->grad, fdx, n, 2e-4, 1e-3);
    CHECK_CLOSE("large layernorm dweight", w->grad, fdw, C, 1e-3, 1e-4);
    CHECK_CLOSE("large layernorm dbias", b->grad, fdb, C, 1e-3, 1e-4);
    free(dy);
    free(fy);
    free(fdx);
    free(dw);
    free(db);
    lt_graph_destroy(g);
}

static void test_layernorm_errors_and_flags(void) {
    int64_t shape[3] = {2, 3, 7}, c7[1] = {7}, c6[1] = {6};
    lt_err err = {{0}};
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", shape, 3, 1);
    lt_tensor *w = lt_graph_input(g, "w", c6, 1, 1);
    CHECK(lt_layernorm(g, x, w, NULL, 1e-5f) == NULL);
    CHECK(lt_graph_status(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "layernorm") && strstr(err.msg, "(6)") && strstr(err.msg, "(2, 3, 7)"),
              "message: %s", err.msg);
    lt_graph_destroy(g);
    /* x needs no gradient, weight is constant: backward only sums dout into dbias, reading neither */
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    x = lt_graph_input(g, "x", shape, 3, 0);
    w = lt_graph_input(g, "w", c7, 1, 0);
    lt_tensor *b = lt_graph_input(g, "b", c7, 1, 1);
    lt_layernorm(g, x, w, b, 1e-5f);
    lt_node *n = lt_graph_node(g, 0);
    CHECK(n && n->bw_skip_in == 7u && n->bw_skip_out == 1 && n->saved_numel == 12);
    lt_graph_destroy(g);
}

/* ---- batchnorm2d_fused: relu?(bn + res?) as one node, against the separate ops ---- */

typedef struct {
    lt_bn_mode mode;
    int res, relu; /* pass input 5 as the residual; apply the ReLU */
} bnf_ctx;

static lt_tensor *build_bn_fused(lt_graph *g, lt_tensor **in, void *ctx) {
    bnf_ctx *c = ctx;
    return lt_batchnorm2d_fused(g, in[0], in[1], in[2], in[3], in[4], c->mode, 0.1f, 1e-5f,
                                c->res ? in[5] : NULL, c->relu);
}

/* Moves each x so that the ReLU's input (running statistics: eval and frozen modes) lies at least 0.2 from
 * its kink, where finite differences would straddle it. */
static void away_from_kink(lt_tensor **in, int n_in, void *ctx) {
    bnf_ctx *c = ctx;
    lt_tensor *x = in[0];
    const int64_t C = x->shape[1], HW = x->shape[2] * x->shape[3];
    for (int64_t i = 0; i < x->numel; i++) {
        int64_t ch = i / HW % C;
        float a = in[1]->data[ch] / sqrtf(in[4]->data[ch] + 1e-5f);
        float y = (x->data[i] - in[3]->data[ch]) * a + in[2]->data[ch] + (c->res ? in[5]->data[i] : 0.0f);
        if (fabsf(y) < 0.2f && fabsf(a) > 1e-3f) x->data[i] += (y >= 0 ? 0.3f : -0.3f) / a;
    }
}

/* The fused node against lt_relu(lt_add(lt_batchnorm2d(...), res)) in one mode: output, running statistics
 * and every gradient; planes of 40 values (vector bodies and tails), more than the OpenMP threshold. */
static void compare_bn_fused(lt_bn_mode mode, int with_res, int relu, int64_t N, int64_t C, int64_t H,
                             int64_t W) {
    const int64_t n = N * C * H * W;
    float *res[2][7];
    for (int fused = 0; fused < 2; fused++) {
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        int64_t shape[4] = {N, C, H, W}, cs[1] = {C};
        lt_tensor *x = lt_graph_input(g, "x", shape, 4, 1), *r = lt_graph_input(g, "r", shape, 4, 1);
        lt_tensor *w = lt_graph_input(g, "w", cs, 1, 1), *b = lt_graph_input(g, "b", cs, 1, 1);
        lt_tensor *rm = lt_graph_input(g, "rm", cs, 1, 0), *rv = lt_graph_input(g, "rv", cs, 1, 0);
        lt_tensor *y;
        if (fused) {
            y = lt_batchnorm2d_fused(g, x, w, b, rm, rv, mode, 0.1f, 1e-5f, with_res ? r : NULL, relu);
        } else {
            y = lt_batchnorm2d(g, x, w, b, rm, rv, mode, 0.1f, 1e-5f);
            if (with_res) y = lt_add(g, y, r);
            if (relu) y = lt_relu(g, y);
        }
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
        if (check_failed) return;
        lt_rng rng;
        lt_rng_seed(&rng, 9, 4);
        for (int64_t i = 0; i < n; i++) {
            x->data[i] = 0.7f * lt_rng_normal(&rng) + 0.2f;
            r->data[i] = 0.5f * lt_rng_normal(&rng);
        }
        for (int64_t ch = 0; ch < C; ch++) {
            w->data[ch] = 1.0f + 0.2f * lt_rng_normal(&rng);
            b->data[ch] = 0.3f * lt_rng_normal(&rng);
            rm->data[ch] = 0.1f * lt_rng_normal(&rng);
            rv->data[ch] = 0.5f + fabsf(lt_rng_normal(&rng));
        }
        float *dy = malloc((size_t)n * sizeof *dy);
        for (int64_t i = 0; i < n; i++)
            dy[i] = lt_rng_normal(&rng);
        dy[5] = NAN; /* masked or not, as relu_backward decides */
        lt_graph_forward(g);
        lt_graph_backward(g, y, dy);
        free(dy);
        const float *src[7] = {y->data, x->grad, w->grad, b->grad, rm->data, rv->data, r->grad};
        const int64_t len[7] = {n, n, C, C, C, C, n};
        for (int t = 0; t < 7; t++) {
            res[fused][t] = malloc((size_t)len[t] * sizeof(float));
            if (src[t])
                memcpy(res[fused][t], src[t], (size_t)len[t] * sizeof(float));
            else
                memset(res[fused][t], 0, (size_t)len[t] * sizeof(float));
        }
        lt_graph_destroy(g);
    }
    static const char *names[7] = {"y", "dx", "dweight", "dbias", "running_mean", "running_var", "dres"};
    const int64_t len[7] = {n, n, C, C, C, C, n};
    for (int t = 0; t < 7; t++) {
        char what[96];
        snprintf(what, sizeof what, "bn fused mode %d%s%s %s vs separate ops", (int)mode,
                 with_res ? " +res" : "", relu ? " relu" : "", names[t]);
        int nan_same = 1;
        for (int64_t i = 0; i < len[t]; i++) {
            if (isnan(res[0][t][i]) != isnan(res[1][t][i])) nan_same = 0;
            if (isnan(res[0][t][i])) res[0][t][i] = res[1][t][i] = 0.0f;
        }
        CHECK_MSG(nan_same, "%s: NaNs differ", what);
        CHECK_CLOSE(what, res[1][t], res[0][t], len[t], 1e-5, 1e-5);
        free(res[0][t]);
        free(res[1][t]);
    }
}

static void test_bn_fused(void) {
    /* finite differences where the statistics are fixed (the kink can then be avoided) */
    lt_bn_mode modes[2] = {LT_BN_EVAL, LT_BN_FROZEN};
    for (int k = 0; k < 2; k++)
        for (int with_res = 0; with_res < 2; with_res++) {
            int frozen = modes[k] == LT_BN_FROZEN;
            gc_input ins[6] = {
                {"x", {3, 4, 5, 3}, 4, 1, GC_NORMAL, 0.5f, 1.5f},
                {"weight", {4}, 1, !frozen, GC_NORMAL, 1.0f, 0.5f},
                {"bias", {4}, 1, !frozen, GC_NORMAL, 0.0f, 0.5f},
                {"running_mean", {4}, 1, 0, GC_NORMAL, 0.0f, 0.3f},
                {"running_var", {4}, 1, 0, GC_UNIFORM, 0.5f, 2.0f},
                {"res", {3, 4, 5, 3}, 4, 1, GC_NORMAL, 0.0f, 0.5f},
            };
            bnf_ctx c = {modes[k], with_res, 1};
            char label[64];
            snprintf(label, sizeof label, "bn fused %s%s relu (3,4,5,3)", frozen ? "frozen" : "eval",
                     with_res ? " +res" : "");
            gradcheck_fix(label, ins, with_res ? 6 : 5, build_bn_fused, away_from_kink, &c,
                          (gc_opts){.seed = 12, .max_points = 80});
        }
    /* batch statistics: the residual without a ReLU has no kink */
    gc_input ins[6] = {
        {"x", {3, 4, 5, 3}, 4, 1, GC_NORMAL, 0.5f, 1.5f},
        {"weight", {4}, 1, 1, GC_NORMAL, 1.0f, 0.5f},
        {"bias", {4}, 1, 1, GC_NORMAL, 0.0f, 0.5f},
        {"running_mean", {4}, 1, 0, GC_NORMAL, 0.0f, 0.3f},
        {"running_var", {4}, 1, 0, GC_UNIFORM, 0.5f, 2.0f},
        {"res", {3, 4, 5, 3}, 4, 1, GC_NORMAL, 0.0f, 0.5f},
    };
    bnf_ctx c = {LT_BN_TRAIN, 1, 0};
    gradcheck("bn fused train +res (3,4,5,3)", ins, 6, build_bn_fused, &c,
              (gc_opts){.seed = 13, .max_points = 80});
    for (int mode = 0; mode < LT_BN_MODE_COUNT; mode++)
        for (int v = 1; v < 4; v++)
            for (int small = 0; small < 2; small++) /* the per-plane and the small-plane kernels */
                compare_bn_fused((lt_bn_mode)mode, v & 1, (v & 2) != 0, small ? 16 : 4, small ? 601 : 6,
                                 small ? 2 : 37, small ? 2 : 40);
    /* a residual of another shape */
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t xs[4] = {2, 3, 4, 4}, rs[4] = {2, 3, 4, 5}, cs[1] = {3};
    lt_tensor *x = lt_graph_input(g, "x", xs, 4, 1), *r = lt_graph_input(g, "r", rs, 4, 1);
    lt_tensor *rm = lt_graph_input(g, "rm", cs, 1, 0), *rv = lt_graph_input(g, "rv", cs, 1, 0);
    CHECK(lt_batchnorm2d_fused(g, x, NULL, NULL, rm, rv, LT_BN_TRAIN, 0.1f, 1e-5f, r, 1) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "batchnorm2d") && strstr(err.msg, "(2, 3, 4, 5)"), "message: %s", err.msg);
    lt_graph_destroy(g);
}

int main(void) {
    if (golden_load(&gf, "norm_act.txt") != 0) {
        CHECK_MSG(0, "cannot load norm_act.txt");
        return check_summary("test_norm");
    }
    test_bn_train_golden();
    test_bn_eval_and_frozen_golden();
    test_bn_frozen_params();
    test_bn_gradcheck();
    test_bn_single_value_per_channel();
    test_bn_train_large_vs_reference();
    test_bn_errors_and_flags();
    test_bn_fused();
    test_layernorm_golden();
    test_layernorm_gradcheck();
    test_layernorm_large_vs_reference();
    test_layernorm_errors_and_flags();
    golden_free(&gf);
    return check_summary("test_norm");
}
