/* Tests of lt_resize_bilinear: forward and backward (fixed upstream gradient) against
 * torch.nn.functional.interpolate(mode="bilinear", align_corners=False) for up, down and non-integer scales,
 * finite-difference gradients, argument errors. */
#include "check.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RS_CASES 8

static void test_golden(golden_file *gf) {
    for (int c = 0; c < RS_CASES; c++) {
        char nx[32], ny[32], ndy[32], ndx[32];
        snprintf(nx, sizeof nx, "rs%d_x", c);
        snprintf(ny, sizeof ny, "rs%d_y", c);
        snprintf(ndy, sizeof ndy, "rs%d_dy", c);
        snprintf(ndx, sizeof ndx, "rs%d_dx", c);
        golden_tensor *gx = golden_get(gf, nx), *gy = golden_get(gf, ny), *gdy = golden_get(gf, ndy);
        golden_tensor *gdx = golden_get(gf, ndx);
        if (!gx || !gy || !gdy || !gdx) {
            CHECK_MSG(0, "golden case %d missing", c);
            continue;
        }
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        lt_tensor *x = lt_graph_input(g, "x", gx->shape, 4, 1);
        lt_tensor *y = lt_resize_bilinear(g, x, (int)gy->shape[2], (int)gy->shape[3]);
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        if (lt_graph_plan(g, &err) != LT_OK) {
            CHECK_MSG(0, "case %d: plan: %s", c, err.msg);
            lt_graph_destroy(g);
            continue;
        }
        CHECK(lt_same_shape(
            y, &(lt_tensor){.ndim = 4, .shape = {gy->shape[0], gy->shape[1], gy->shape[2], gy->shape[3]}}));
        memcpy(x->data, gx->data, (size_t)x->numel * sizeof(float));
        lt_graph_forward(g);
        CHECK_CLOSE(ny, y->data, gy->data, y->numel, 1e-5, 1e-5);
        lt_graph_backward(g, y, gdy->data);
        CHECK_CLOSE(ndx, x->grad, gdx->data, x->numel, 1e-5, 1e-5);
        lt_graph_destroy(g);
    }
}

typedef struct {
    int oh, ow;
} rs_ctx;

static lt_tensor *build_resize(lt_graph *g, lt_tensor **in, void *ctx) {
    rs_ctx *c = ctx;
    return lt_resize_bilinear(g, in[0], c->oh, c->ow);
}

static void test_gradients(void) {
    struct {
        int64_t n, c, h, w;
        rs_ctx o;
    } cases[] = {{1, 2, 5, 7, {3, 11}}, {2, 1, 7, 7, {2, 2}}, {1, 1, 4, 4, {16, 16}}, {1, 3, 6, 5, {4, 9}},
                 {1, 1, 3, 8, {3, 8}},  {1, 1, 1, 1, {3, 2}}, {1, 2, 2, 3, {1, 1}},   {2, 2, 9, 13, {4, 5}}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gc_input in = {"x", {cases[i].n, cases[i].c, cases[i].h, cases[i].w}, 4, 1, GC_NORMAL, 0, 0};
        char label[96];
        snprintf(label, sizeof label, "resize %lldx%lld -> %dx%d", (long long)cases[i].h,
                 (long long)cases[i].w, cases[i].o.oh, cases[i].o.ow);
        gradcheck(label, &in, 1, build_resize, &cases[i].o, (gc_opts){.seed = 70 + i, .max_points = 200});
    }
}

/* Same size is the identity, forward and backward. */
static void test_identity(void) {
    int64_t s[4] = {2, 3, 5, 4};
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", s, 4, 1);
    lt_tensor *y = lt_resize_bilinear(g, x, 5, 4);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = (float)i * 0.25f - 3.0f;
    lt_graph_forward(g);
    CHECK_CLOSE("identity forward", y->data, x->data, x->numel, 0, 0);
    lt_graph_backward(g, y, x->data);
    CHECK_CLOSE("identity backward", x->grad, x->data, x->numel, 0, 0);
    lt_graph_destroy(g);
}

/* Fast kernels (column taps computed once, backward folded per row, threads over planes) against the naive
 * per-element reference kernels; sizes above the serial threshold so the threaded path runs too. */
static void test_reference(void) {
    struct {
        int64_t s[4];
        int oh, ow;
    } cases[] = {{{2, 3, 9, 13}, 40, 33}, {{1, 4, 50, 37}, 17, 29}, {{3, 2, 8, 8}, 31, 64}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        lt_tensor *x = lt_graph_input(g, "x", cases[c].s, 4, 1);
        lt_tensor *y = lt_resize_bilinear(g, x, cases[c].oh, cases[c].ow);
        lt_graph_keep(g, y);
        lt_err err = {{0}};
        if (lt_graph_plan(g, &err) != LT_OK) {
            CHECK_MSG(0, "reference case %zu: plan: %s", c, err.msg);
            lt_graph_destroy(g);
            continue;
        }
        lt_rng rng;
        lt_rng_seed(&rng, 11, (uint64_t)c);
        float *dy = malloc((size_t)y->numel * sizeof *dy), *fy = malloc((size_t)y->numel * sizeof *fy);
        float *fdx = malloc((size_t)x->numel * sizeof *fdx);
        for (int64_t i = 0; i < x->numel; i++)
            x->data[i] = lt_rng_normal(&rng);
        for (int64_t i = 0; i < y->numel; i++)
            dy[i] = lt_rng_normal(&rng);
        lt_graph_forward(g);
        lt_graph_backward(g, y, dy);
        memcpy(fy, y->data, (size_t)y->numel * sizeof *fy);
        memcpy(fdx, x->grad, (size_t)x->numel * sizeof *fdx);
        lt_graph_node(g, 0)->ip[LT_NODE_IP - 1] = 1;
        lt_graph_forward(g);
        lt_graph_backward(g, y, dy);
        char what[64];
        snprintf(what, sizeof what, "reference case %zu forward", c);
        CHECK_CLOSE(what, fy, y->data, y->numel, 1e-6, 1e-6);
        snprintf(what, sizeof what, "reference case %zu backward", c);
        CHECK_CLOSE(what, fdx, x->grad, x->numel, 1e-5, 1e-5);
        free(dy);
        free(fy);
        free(fdx);
        lt_graph_destroy(g);
    }
}

static void test_errors(void) {
    int64_t s4[4] = {1, 2, 3, 4}, s3[3] = {2, 3, 4};
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *x = lt_graph_input(g, "x", s3, 3, 0);
    CHECK(lt_resize_bilinear(g, x, 4, 4) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "resize_bilinear") && strstr(err.msg, "(2, 3, 4)"), "message: %s", err.msg);
    lt_graph_destroy(g);
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = lt_graph_input(g, "x", s4, 4, 0);
    CHECK(lt_resize_bilinear(g, x, 0, 4) == NULL);
    CHECK(lt_graph_plan(g, &err) == LT_ERR_ARG);
    lt_graph_destroy(g);
}

int main(void) {
    golden_file gf;
    if (golden_load(&gf, "dense.txt") == 0)
        test_golden(&gf);
    else
        CHECK_MSG(0, "dense.txt golden file missing");
    golden_free(&gf);
    test_gradients();
    test_identity();
    test_reference();
    test_errors();
    return check_summary("test_resize");
}
