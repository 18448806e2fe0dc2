/* Tests of loss.c: cross-entropy, L1, GIoU, sum and mean. Gradients against finite differences, values
 * against PyTorch (tests/golden/loss_optim.txt, from tools/golden/loss_optim.py), and the edge cases that
 * torch turns into NaN. */
#include "check.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- gradient checks ---- */

typedef struct {
    int ignore_index;
    int with_weight;
} ce_ctx;

static lt_tensor *build_ce(lt_graph *g, lt_tensor **in, void *ctx) {
    const ce_ctx *c = ctx;
    return lt_cross_entropy(g, in[0], in[1], c->with_weight ? in[2] : NULL, c->ignore_index);
}

/* Marks every fifth target as ignored, so the divisor and the skipped positions are exercised. */
static void fix_ce(lt_tensor **in, int n_in, void *ctx) {
    const ce_ctx *c = ctx;
    for (int64_t i = 2; i < in[1]->numel; i += 5)
        in[1]->data[i] = (float)c->ignore_index;
}

static void gradcheck_ce(void) {
    gc_opts o = {.eps = 1e-2, .seed = 11};
    for (int w = 0; w < 2; w++) {
        ce_ctx c2 = {-100, w};
        gc_input in2[3] = {{"logits", {6, 7}, 2, 1, GC_NORMAL, 0, 2},
                           {"target", {6}, 1, 0, GC_INDEX, 0, 7},
                           {"weight", {7}, 1, 1, GC_UNIFORM, 0.2f, 1.2f}};
        gradcheck_fix(w ? "ce 2d weighted" : "ce 2d", in2, w ? 3 : 2, build_ce, fix_ce, &c2, o);
        ce_ctx c4 = {255, w};
        gc_input in4[3] = {{"logits", {2, 5, 3, 7}, 4, 1, GC_NORMAL, 0, 1.5f},
                           {"target", {2, 3, 7}, 3, 0, GC_INDEX, 0, 5},
                           {"weight", {5}, 1, 1, GC_UNIFORM, 0.2f, 1.2f}};
        gradcheck_fix(w ? "ce 4d weighted, ignore 255" : "ce 4d, ignore 255", in4, w ? 3 : 2, build_ce,
                      fix_ce, &c4, o);
    }
    /* a constant weight, as the tasks pass it: no gradient wanted, only the logits' */
    ce_ctx cc = {255, 1};
    gc_input inc[3] = {{"logits", {3, 4, 5}, 3, 1, GC_NORMAL, 0, 1},
                       {"target", {3, 5}, 2, 0, GC_INDEX, 0, 4},
                       {"weight", {4}, 1, 0, GC_UNIFORM, 0.5f, 2.0f}};
    gradcheck_fix("ce 3d, constant weight", inc, 3, build_ce, fix_ce, &cc, o);
}

static lt_tensor *build_l1(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_l1_loss(g, in[0], in[1]);
}

/* |p - t| has a kink at 0: keep every pair farther apart than the finite-difference step. */
static void fix_l1(lt_tensor **in, int n_in, void *ctx) {
    for (int64_t i = 0; i < in[0]->numel; i++)
        if (fabsf(in[0]->data[i] - in[1]->data[i]) < 0.1f) in[0]->data[i] = in[1]->data[i] + 0.25f;
}

/* Valid boxes from the uniform fill: pair i is overlapping (i % 3 == 0), disjoint (1) or nested (2), with
 * every pair of compared coordinates at least 0.1 apart so max/min/clamp are smooth at the probes. */
static void fix_boxes(lt_tensor **in, int n_in, void *ctx) {
    float *a = in[0]->data, *b = in[1]->data;
    for (int64_t i = 0; i < in[0]->shape[0]; i++) {
        float *pa = a + 4 * i, *pb = b + 4 * i;
        float u0 = pa[0], u1 = pa[1], u2 = pa[2], u3 = pa[3], v0 = pb[0], v1 = pb[1], v2 = pb[2], v3 = pb[3];
        float x = 4 * u0, y = 4 * u1, w = 1 + 2 * u2, h = 1 + 2 * u3;
        pa[0] = x, pa[1] = y, pa[2] = x + w, pa[3] = y + h;
        switch (i % 3) {
        case 0: /* b starts inside a and sticks out */
            pb[0] = x + (0.2f + 0.5f * v0) * w, pb[1] = y - 0.3f - v1;
            pb[2] = x + w + 0.2f + v2, pb[3] = y + (0.3f + 0.4f * v3) * h;
            break;
        case 1: /* b to the right of a, shifted vertically */
            pb[0] = x + w + 0.3f + v0, pb[1] = y + 0.5f * v1 - 0.8f;
            pb[2] = pb[0] + 0.5f + v2, pb[3] = pb[1] + 0.6f + 2 * v3;
            break;
        default: /* b inside a */
            pb[0] = x + 0.1f + 0.2f * v0 * w, pb[1] = y + 0.1f + 0.2f * v1 * h;
            pb[2] = x + w - 0.1f - 0.2f * v2 * w, pb[3] = y + h - 0.1f - 0.2f * v3 * h;
            break;
        }
        if (i % 2) /* swap roles so a is sometimes the inner/right box */
            for (int k = 0; k < 4; k++) {
                float t = pa[k];
                pa[k] = pb[k];
                pb[k] = t;
            }
    }
}

static lt_tensor *build_giou(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_giou(g, in[0], in[1]);
}

static lt_tensor *build_sum(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_sum(g, in[0]);
}

static lt_tensor *build_mean(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_mean(g, in[0]);
}

static void gradcheck_others(void) {
    gc_opts o = {.eps = 1e-2, .seed = 5};
    gc_input l1[2] = {{"pred", {3, 7}, 2, 1, GC_NORMAL, 0, 1}, {"target", {3, 7}, 2, 1, GC_NORMAL, 0, 1}};
    gradcheck_fix("l1", l1, 2, build_l1, fix_l1, NULL, o);
    gc_input bx[2] = {{"a", {9, 4}, 2, 1, GC_UNIFORM, 0, 1}, {"b", {9, 4}, 2, 1, GC_UNIFORM, 0, 1}};
    gc_opts og = {.eps = 1e-3, .seed = 7};
    gradcheck_fix("giou", bx, 2, build_giou, fix_boxes, NULL, og);
    gc_input x[1] = {{"x", {3, 5, 2}, 3, 1, GC_NORMAL, 0, 1}};
    gradcheck("sum", x, 1, build_sum, NULL, o);
    gradcheck("mean", x, 1, build_mean, NULL, o);
}

/* ---- golden values ---- */

/* A train graph over inputs named after golden tensors; the test fills them from the file. */
typedef struct {
    lt_graph *g;
    lt_tensor *in[3];
    lt_tensor *out;
} gold_graph;

static lt_tensor *gold_input(gold_graph *gg, int i, golden_tensor *t, int requires_grad) {
    if (!t) return NULL;
    gg->in[i] = lt_graph_input(gg->g, t->name, t->shape, t->ndim, requires_grad);
    return gg->in[i];
}

static int gold_run(gold_graph *gg, golden_tensor **src, int n, const float *root_grad) {
    lt_err err = {{0}};
    lt_graph_keep(gg->g, gg->out);
    if (!gg->out || lt_graph_plan(gg->g, &err) != LT_OK) {
        lt_graph_status(gg->g, &err);
        CHECK_MSG(0, "golden graph failed: %s", err.msg);
        return 0;
    }
    for (int i = 0; i < n; i++)
        memcpy(gg->in[i]->data, src[i]->data, (size_t)src[i]->numel * sizeof(float));
    lt_graph_forward(gg->g);
    lt_graph_backward(gg->g, gg->out, root_grad);
    return 1;
}

static void golden_ce(golden_file *f, const char *name, int ignore_index, int weighted) {
    char k[96];
    golden_tensor *t[3], *dloss, *loss, *dlogits;
    snprintf(k, sizeof k, "%s_logits", name), t[0] = golden_get(f, k);
    snprintf(k, sizeof k, "%s_target", name), t[1] = golden_get(f, k);
    t[2] = NULL;
    if (weighted) snprintf(k, sizeof k, "%s_weight", name), t[2] = golden_get(f, k);
    snprintf(k, sizeof k, "%s_dloss", name), dloss = golden_get(f, k);
    snprintf(k, sizeof k, "%s_loss", name), loss = golden_get(f, k);
    snprintf(k, sizeof k, "%s_dlogits", name), dlogits = golden_get(f, k);
    if (!t[0] || !t[1] || (weighted && !t[2]) || !dloss || !loss || !dlogits) {
        CHECK_MSG(0, "%s: golden tensors missing", name);
        return;
    }
    gold_graph gg = {lt_graph_create(LT_MODE_TRAIN, NULL), {0}, NULL};
    lt_tensor *lg = gold_input(&gg, 0, t[0], 1), *tg = gold_input(&gg, 1, t[1], 0);
    lt_tensor *w = weighted ? gold_input(&gg, 2, t[2], 0) : NULL;
    gg.out = lt_cross_entropy(gg.g, lg, tg, w, ignore_index);
    if (gold_run(&gg, t, weighted ? 3 : 2, dloss->data)) {
        snprintf(k, sizeof k, "%s loss", name);
        CHECK_CLOSE(k, gg.out->data, loss->data, 1, 1e-6, 1e-5);
        snprintf(k, sizeof k, "%s dlogits", name);
        CHECK_CLOSE(k, lg->grad, dlogits->data, dlogits->numel, 1e-6, 1e-5);
    }
    lt_graph_destroy(gg.g);
}

static void golden_l1(golden_file *f) {
    golden_tensor *t[2] = {golden_get(f, "l1_pred"), golden_get(f, "l1_target")};
    golden_tensor *loss = golden_get(f, "l1_loss"), *dp = golden_get(f, "l1_dpred"),
                  *dt = golden_get(f, "l1_dtarget");
    if (!t[0] || !t[1] || !loss || !dp || !dt) {
        CHECK_MSG(0, "l1: golden tensors missing");
        return;
    }
    gold_graph gg = {lt_graph_create(LT_MODE_TRAIN, NULL), {0}, NULL};
    lt_tensor *p = gold_input(&gg, 0, t[0], 1), *tg = gold_input(&gg, 1, t[1], 1);
    gg.out = lt_l1_loss(gg.g, p, tg);
    const float dloss = 1.3f;
    if (gold_run(&gg, t, 2, &dloss)) {
        CHECK_CLOSE("l1 loss", gg.out->data, loss->data, 1, 1e-7, 1e-6);
        CHECK_CLOSE("l1 dpred", p->grad, dp->data, dp->numel, 1e-7, 1e-6);
        CHECK_CLOSE("l1 dtarget", tg->grad, dt->data, dt->numel, 1e-7, 1e-6);
        CHECK(p->grad[1] == 0.0f); /* the tie at [0, 1] */
    }
    lt_graph_destroy(gg.g);
}

static void golden_giou(golden_file *f) {
    golden_tensor *t[2] = {golden_get(f, "giou_a"), golden_get(f, "giou_b")};
    golden_tensor *want = golden_get(f, "giou_out"), *dout = golden_get(f, "giou_dout");
    golden_tensor *da = golden_get(f, "giou_da"), *db = golden_get(f, "giou_db");
    if (!t[0] || !t[1] || !want || !dout || !da || !db) {
        CHECK_MSG(0, "giou: golden tensors missing");
        return;
    }
    gold_graph gg = {lt_graph_create(LT_MODE_TRAIN, NULL), {0}, NULL};
    lt_tensor *a = gold_input(&gg, 0, t[0], 1), *b = gold_input(&gg, 1, t[1], 1);
    gg.out = lt_giou(gg.g, a, b);
    if (gold_run(&gg, t, 2, dout->data)) {
        CHECK_CLOSE("giou", gg.out->data, want->data, want->numel, 1e-6, 1e-5);
        CHECK_CLOSE("giou da", a->grad, da->data, da->numel, 1e-6, 1e-5);
        CHECK_CLOSE("giou db", b->grad, db->data, db->numel, 1e-6, 1e-5);
    }
    lt_graph_destroy(gg.g);
}

/* ---- edge cases ---- */

/* Copies literal test data into a graph tensor. noipa keeps GCC from folding the literals into vector
 * stores: GCC 12.2 at -O2 -march=znver3 (this machine's -march=native) stores {1,1,1,1,0,0,0,0} as eight
 * ones when a neighbouring constant is all ones (it reuses a broadcast of the first element). */
__attribute__((noipa)) static void copy_in(float *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = src[i];
}

/* Runs cross-entropy on given data; returns the loss and leaves the logits' gradient in dlogits. */
static float run_ce(const int64_t *lshape, int lnd, const float *logits, const float *target,
                    const float *weight, int ignore_index, float *dlogits) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t tshape[4] = {lshape[0]};
    for (int i = 2; i < lnd; i++)
        tshape[i - 1] = lshape[i];
    lt_tensor *lg = lt_graph_input(g, "logits", lshape, lnd, 1);
    lt_tensor *tg = lt_graph_input(g, "target", tshape, lnd - 1, 0);
    lt_tensor *w = weight ? lt_graph_input(g, "weight", &lshape[1], 1, 0) : NULL;
    lt_tensor *loss = lt_cross_entropy(g, lg, tg, w, ignore_index);
    lt_graph_keep(g, loss);
    lt_err err = {{0}};
    float result = NAN;
    if (lt_graph_plan(g, &err) == LT_OK) {
        copy_in(lg->data, logits, lg->numel);
        copy_in(tg->data, target, tg->numel);
        if (w) copy_in(w->data, weight, w->numel);
        lt_graph_forward(g);
        lt_graph_backward(g, loss, NULL);
        result = loss->data[0];
        memcpy(dlogits, lg->grad, (size_t)lg->numel * sizeof(float));
    } else {
        CHECK_MSG(0, "ce graph: %s", err.msg);
    }
    lt_graph_destroy(g);
    return result;
}

static void test_ce_edges(void) {
    int64_t shape[2] = {4, 3};
    float logits[12], d[12], d2[12];
    for (int i = 0; i < 12; i++)
        logits[i] = 0.3f * (float)i - 1.0f;
    /* nothing counted: loss 0 and zero gradients (torch: NaN) */
    float all_ignored[4] = {255, 255, 255, 255};
    float l = run_ce(shape, 2, logits, all_ignored, NULL, 255, d);
    CHECK(l == 0.0f);
    int zero = 1;
    for (int i = 0; i < 12; i++)
        zero &= d[i] == 0.0f;
    CHECK_MSG(zero, "all-ignored cross-entropy must give zero gradients");
    /* labels out of [0, C), negative or fractional are skipped exactly like the ignore_index */
    float bad[4] = {1, 3, -2, 0.5f}, only_first[4] = {1, 255, 255, 255};
    float lb = run_ce(shape, 2, logits, bad, NULL, 255, d);
    float lf = run_ce(shape, 2, logits, only_first, NULL, 255, d2);
    CHECK(isfinite(lb));
    CHECK_NEAR(lb, lf, 0, 0);
    CHECK_CLOSE("invalid labels skipped", d, d2, 12, 0, 0);
    /* zero class weights on every counted target: divisor 0, loss 0 (torch: NaN) */
    float w0[3] = {0, 0, 1}, t01[4] = {0, 1, 1, 0};
    CHECK(run_ce(shape, 2, logits, t01, w0, -100, d) == 0.0f);
}

/* A larger 4D case through the parallel loops, against a plain double-precision reference. */
static void test_ce_large_vs_reference(void) {
    enum { N = 2, C = 19, H = 17, W = 23, S = H * W };
    int64_t shape[4] = {N, C, H, W};
    float *logits = malloc(sizeof(float) * N * C * S), *d = malloc(sizeof(float) * N * C * S);
    float *want = malloc(sizeof(float) * N * C * S), target[N * S], weight[C];
    lt_rng r;
    lt_rng_seed(&r, 99, 1);
    for (int i = 0; i < N * C * S; i++)
        logits[i] = 3.0f * lt_rng_normal(&r);
    for (int i = 0; i < N * S; i++)
        target[i] = lt_rng_below(&r, 8) == 0 ? 255.0f : (float)lt_rng_below(&r, C);
    for (int c = 0; c < C; c++)
        weight[c] = 0.5f + lt_rng_uniform(&r);
    float got = run_ce(shape, 4, logits, target, weight, 255, d);
    double lsum = 0, wsum = 0;
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            if (target[n * S + s] == 255.0f) continue;
            int t = (int)target[n * S + s];
            double mx = -INFINITY, se = 0;
            for (int c = 0; c < C; c++)
                mx = fmax(mx, logits[(n * C + c) * S + s]);
            for (int c = 0; c < C; c++)
                se += exp(logits[(n * C + c) * S + s] - mx);
            lsum += weight[t] * (mx + log(se) - logits[(n * C + t) * S + s]);
            wsum += weight[t];
        }
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            int t = (int)target[n * S + s];
            double mx = -INFINITY, se = 0;
            for (int c = 0; c < C; c++)
                mx = fmax(mx, logits[(n * C + c) * S + s]);
            for (int c = 0; c < C; c++)
                se += exp(logits[(n * C + c) * S + s] - mx);
            for (int c = 0; c < C; c++) {
                double p = exp(logits[(n * C + c) * S + s] - mx) / se;
                want[(n * C + c) * S + s] =
                    target[n * S + s] == 255.0f ? 0.0f : (float)(weight[t] / wsum * (p - (c == t)));
            }
        }
    CHECK_NEAR(got, lsum / wsum, 1e-6, 1e-5);
    CHECK_CLOSE("ce large dlogits", d, want, N * C * S, 1e-8, 1e-4);
    free(logits);
    free(d);
    free(want);
}

static void test_giou_degenerate(void) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[2] = {3, 4};
    lt_tensor *a = lt_graph_input(g, "a", shape, 2, 1), *b = lt_graph_input(g, "b", shape, 2, 1);
    lt_tensor *out = lt_giou(g, a, b);
    lt_graph_keep(g, out);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    /* the same point twice: union and hull are 0; two separate points: union 0, hull 1x1; a point inside a
     * box */
    const float av[12] = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 2, 2}, bv[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    copy_in(a->data, av, 12);
    copy_in(b->data, bv, 12);
    lt_graph_forward(g);
    lt_graph_backward(g, out, NULL);
    CHECK_NEAR(out->data[0], 0.0, 0, 0);
    CHECK_NEAR(out->data[1], -1.0, 1e-7, 0);
    CHECK_NEAR(out->data[2], 0.0, 1e-7, 0); /* iou 0, hull == union */
    int finite = 1;
    for (int i = 0; i < 12; i++)
        finite &= isfinite(a->grad[i]) && isfinite(b->grad[i]);
    CHECK_MSG(finite, "degenerate boxes must give finite gradients");
    CHECK(a->grad[0] == 0.0f && b->grad[3] == 0.0f);
    lt_graph_destroy(g);
}

static void test_shape_errors(void) {
    struct {
        int64_t ls[4], ts[3];
        int lnd, tnd;
        const char *want;
    } cases[] = {
        {{2, 3, 4, 5}, {2, 4, 4}, 4, 3, "(2, 4, 5)"},
        {{6, 3}, {5}, 2, 1, "(6)"},
        {{6, 3}, {6, 1}, 2, 2, "(6, 1)"},
    };
    for (int i = 0; i < 3; i++) {
        lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
        lt_tensor *lg = lt_graph_input(g, "logits", cases[i].ls, cases[i].lnd, 1);
        lt_tensor *tg = lt_graph_input(g, "target", cases[i].ts, cases[i].tnd, 0);
        CHECK(lt_cross_entropy(g, lg, tg, NULL, -100) == NULL);
        lt_err err = {{0}};
        CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
        CHECK_MSG(strstr(err.msg, "cross_entropy") && strstr(err.msg, cases[i].want), "message: %s", err.msg);
        lt_graph_destroy(g);
    }
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t s1[2] = {4, 3}, s2[1] = {4}, s3[1] = {5}, s4[2] = {4, 5};
    lt_tensor *lg = lt_graph_input(g, "logits", s1, 2, 1), *tg = lt_graph_input(g, "target", s2, 1, 0);
    lt_tensor *w = lt_graph_input(g, "w", s3, 1, 0);
    CHECK(lt_cross_entropy(g, lg, tg, w, -100) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE && strstr(err.msg, "class_weight (5)"));
    lt_graph_destroy(g);
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lg = lt_graph_input(g, "a", s1, 2, 1), tg = lt_graph_input(g, "b", s2, 1, 0);
    CHECK(lt_l1_loss(g, lg, tg) == NULL);
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE && strstr(err.msg, "l1_loss"));
    lt_graph_destroy(g);
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *bx = lt_graph_input(g, "bx", s4, 2, 0);
    CHECK(lt_giou(g, bx, bx) == NULL);
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE && strstr(err.msg, "giou") && strstr(err.msg, "(4, 5)"));
    lt_graph_destroy(g);
}

int main(void) {
    gradcheck_ce();
    gradcheck_others();
    golden_file f;
    if (golden_load(&f, "loss_optim.txt") == 0) {
        golden_ce(&f, "ce2d", -100, 0);
        golden_ce(&f, "ce2dw", -100, 1);
        golden_ce(&f, "ce4d", 255, 0);
        golden_ce(&f, "ce4dw", 255, 1);
        golden_l1(&f);
        golden_giou(&f);
    } else {
        CHECK_MSG(0, "cannot load loss_optim.txt");
    }
    golden_free(&f);
    test_ce_edges();
    test_ce_large_vs_reference();
    test_giou_degenerate();
    test_shape_errors();
    return check_summary("test_loss");
}
