/* Tests of shape.c: concat, reshape/flatten views, permute (golden, blocked kernel vs naive), transpose,
 * slice, sum and mean. */
#include "check.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lt_tensor *plan_or_fail(lt_graph *g, lt_tensor *y, const char *label) {
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    if (lt_graph_plan(g, &err) != LT_OK) {
        CHECK_MSG(0, "%s: plan: %s", label, err.msg);
        return NULL;
    }
    return y;
}

static void fill_iota(lt_tensor *t, float base) {
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = base + (float)i;
}

/* ---- concat ---- */

typedef struct {
    int n, axis;
} cat_ctx;

static lt_tensor *build_concat(lt_graph *g, lt_tensor **in, void *ctx) {
    cat_ctx *c = ctx;
    return lt_concat(g, in, c->n, c->axis);
}

static void test_concat(void) {
    /* axis 0, 1, last (as -1) on (a, b, c) shapes differing only along the axis */
    for (int axis = 0; axis < 3; axis++) {
        gc_input ins[3];
        for (int i = 0; i < 3; i++) {
            int64_t s[3] = {2, 3, 4};
            s[axis] = 1 + i;
            ins[i] = (gc_input){"x", {s[0], s[1], s[2]}, 3, 1, GC_NORMAL, 0, 0};
        }
        cat_ctx c = {3, axis == 2 ? -1 : axis};
        char label[64];
        snprintf(label, sizeof label, "concat axis %d", c.axis);
        gradcheck(label, ins, 3, build_concat, &c, (gc_opts){.seed = 80 + (uint64_t)axis});

        /* values: out[.., j, ..] along the axis comes from input i at offset j - (sum of earlier lengths) */
        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        lt_tensor *xs[3];
        for (int i = 0; i < 3; i++)
            xs[i] = lt_graph_input(g, "x", ins[i].shape, 3, 0);
        lt_tensor *y = plan_or_fail(g, lt_concat(g, xs, 3, c.axis), label);
        if (y) {
            for (int i = 0; i < 3; i++)
                fill_iota(xs[i], 1000.0f * (float)i);
            lt_graph_forward(g);
            int ok = y->shape[axis] == 6;
            for (int64_t a = 0; ok && a < y->shape[0]; a++)
                for (int64_t b = 0; ok && b < y->shape[1]; b++)
                    for (int64_t d = 0; ok && d < y->shape[2]; d++) {
                        int64_t idx[3] = {a, b, d}, j = idx[axis];
                        int i = j < 1 ? 0 : j < 3 ? 1 : 2;
                        idx[axis] -= i == 0 ? 0 : i == 1 ? 1 : 3;
                        const int64_t *s = xs[i]->shape;
                        float want = xs[i]->data[(idx[0] * s[1] + idx[1]) * s[2] + idx[2]];
                        ok = y->data[(a * y->shape[1] + b) * y->shape[2] + d] == want;
                    }
            CHECK_MSG(ok, "%s: wrong values", label);
        }
        lt_graph_destroy(g);
    }

    /* more inputs than a node holds: built as a chain, same result */
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *xs[11];
    for (int i = 0; i < 11; i++) {
        int64_t s[2] = {2, 1 + i % 3};
        xs[i] = lt_graph_input(g, "x", s, 2, 1);
    }
    lt_tensor *y = plan_or_fail(g, lt_concat(g, xs, 11, 1), "concat 11");
    if (y) {
        for (int i = 0; i < 11; i++)
            fill_iota(xs[i], 100.0f * (float)i);
        lt_graph_forward(g);
        int ok = y->shape[1] == 21, col = 0;
        for (int i = 0; i < 11 && ok; i++) {
            int64_t w = xs[i]->shape[1];
            for (int r = 0; r < 2; r++)
                for (int64_t j = 0; j < w; j++)
                    ok &= y->data[r * 21 + col + j] == xs[i]->data[r * w + j];
            col += (int)w;
        }
        CHECK_MSG(ok, "concat of 11 tensors: wrong values");
        lt_graph_backward(g, y, y->data);
        int gok = 1;
        for (int i = 0; i < 11; i++)
            for (int64_t j = 0; j < xs[i]->numel; j++)
                gok &= xs[i]->grad[j] == xs[i]->data[j];
        CHECK_MSG(gok, "concat of 11 tensors: wrong gradients");
    }
    lt_graph_destroy(g);

    int64_t a[3] = {2, 3, 4}, b[3] = {2, 5, 5};
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *ab[2] = {lt_graph_input(g, "a", a, 3, 0), lt_graph_input(g, "b", b, 3, 0)};
    CHECK(lt_concat(g, ab, 2, 1) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "concat") && strstr(err.msg, "(2, 5, 5)"), "message: %s", err.msg);
    lt_graph_destroy(g);
}

/* ---- views ---- */

static void test_views(void) {
    int64_t s[4] = {2, 3, 4, 5}, r_shape[2] = {-1, 5};
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", s, 4, 1);
    int nodes = lt_graph_node_count(g);
    lt_tensor *f = lt_flatten(g, x, 1, -1);       /* (2, 60) */
    lt_tensor *f2 = lt_flatten(g, x, -2, 3);      /* (2, 3, 20) */
    lt_tensor *f3 = lt_flatten(g, x, 0, 0);       /* unchanged */
    lt_tensor *r = lt_reshape(g, f2, r_shape, 2); /* (24, 5), a view of a view */
    CHECK(lt_graph_node_count(g) == nodes);
    CHECK(f && f->ndim == 2 && f->shape[0] == 2 && f->shape[1] == 60 && f->view_of == x);
    CHECK(f2 && f2->ndim == 3 && f2->shape[2] == 20);
    CHECK(f3 && f3->ndim == 4 && lt_same_shape(f3, x));
    CHECK(r && r->ndim == 2 && r->shape[0] == 24 && r->shape[1] == 5 && lt_tensor_root(r) == x);
    lt_tensor *y = lt_sum(g, r);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    CHECK(f->data == x->data && r->data == x->data && r->grad == x->grad);
    fill_iota(x, 0);
    lt_graph_forward(g);
    CHECK_NEAR(y->data[0], 119.0 * 120.0 / 2.0, 0, 0);
    lt_graph_backward(g, y, NULL);
    int ones = 1;
    for (int64_t i = 0; i < x->numel; i++)
        ones &= x->grad[i] == 1.0f;
    CHECK_MSG(ones, "gradient through a view");
    lt_graph_destroy(g);

    int64_t bad[2] = {7, -1}, two[2] = {-1, -1};
    const char *what[3] = {"reshape", "reshape", "flatten"};
    for (int c = 0; c < 3; c++) {
        g = lt_graph_create(LT_MODE_EVAL, NULL);
        x = lt_graph_input(g, "x", s, 4, 0);
        lt_tensor *v = c == 0   ? lt_reshape(g, x, bad, 2)
                       : c == 1 ? lt_reshape(g, x, two, 2)
                                : lt_flatten(g, x, 2, 1);
        CHECK(v == NULL);
        CHECK(lt_graph_plan(g, &err) != LT_OK);
        CHECK_MSG(strstr(err.msg, what[c]) && strstr(err.msg, "(2, 3, 4, 5)"), "message: %s", err.msg);
        lt_graph_destroy(g);
    }
}

/* ---- permute and transpose ---- */

static lt_tensor *build_permute(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_permute(g, in[0], ctx);
}

static void test_permute_golden(golden_file *gf) {
    for (int c = 0; c < 6; c++) {
        char nx[32], np[32], ny[32];
        snprintf(nx, sizeof nx, "pm%d_x", c);
        snprintf(np, sizeof np, "pm%d_perm", c);
        snprintf(ny, sizeof ny, "pm%d_y", c);
        golden_tensor *gx = golden_get(gf, nx), *gp = golden_get(gf, np), *gy = golden_get(gf, ny);
        if (!gx || !gp || !gy) {
            CHECK_MSG(0, "golden permute case %d missing", c);
            continue;
        }
        int perm[5];
        for (int i = 0; i < gx->ndim; i++)
            perm[i] = (int)gp->data[i];
        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        lt_tensor *x = lt_graph_input(g, "x", gx->shape, gx->ndim, 0);
        lt_tensor *y = plan_or_fail(g, lt_permute(g, x, perm), ny);
        if (y) {
            int same = y->ndim == gy->ndim;
            for (int i = 0; same && i < y->ndim; i++)
                same = y->shape[i] == gy->shape[i];
            CHECK_MSG(same, "%s: shape", ny);
            memcpy(x->data, gx->data, (size_t)x->numel * sizeof(float));
            lt_graph_forward(g);
            CHECK_CLOSE(ny, y->data, gy->data, y->numel, 0, 0);
        }
        lt_graph_destroy(g);
    }
}

/* Forward and backward of the fast kernels against the naive reference (node ip[LT_NODE_IP - 1] = 1). */
static void compare_permute(const int64_t *shape, int nd, const int *perm) {
    char label[128];
    int off = snprintf(label, sizeof label, "permute %dd (", nd);
    for (int i = 0; i < nd; i++)
        off += snprintf(label + off, sizeof label - (size_t)off, i ? ",%d" : "%d", perm[i]);
    snprintf(label + off, sizeof label - (size_t)off, ")");
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", shape, nd, 1);
    lt_tensor *y = plan_or_fail(g, lt_permute(g, x, perm), label);
    if (y) {
        lt_rng rng;
        lt_rng_seed(&rng, 3, 3);
        float *dy = malloc((size_t)y->numel * sizeof *dy), *fast = malloc((size_t)y->numel * sizeof *fast);
        float *dfast = malloc((size_t)x->numel * sizeof *dfast);
        for (int64_t i = 0; i < x->numel; i++)
            x->data[i] = lt_rng_normal(&rng);
        for (int64_t i = 0; i < y->numel; i++)
            dy[i] = lt_rng_normal(&rng);
        lt_graph_forward(g);
        lt_graph_backward(g, y, dy);
        memcpy(fast, y->data, (size_t)y->numel * sizeof *fast);
        memcpy(dfast, x->grad, (size_t)x->numel * sizeof *dfast);
        lt_graph_node(g, 0)->ip[LT_NODE_IP - 1] = 1;
        lt_graph_forward(g);
        lt_graph_backward(g, y, dy);
        CHECK_CLOSE(label, fast, y->data, y->numel, 0, 0);
        CHECK_CLOSE(label, dfast, x->grad, x->numel, 0, 0);
        free(dy);
        free(fast);
        free(dfast);
    }
    lt_graph_destroy(g);
}

static void test_permute(void) {
    int p021[3] = {0, 2, 1}, p0231[4] = {0, 2, 3, 1}, p0312[4] = {0, 3, 1, 2}, p3102[4] = {3, 1, 0, 2};
    int p1023[4] = {1, 0, 2, 3}, p10[2] = {1, 0}, p42031[5] = {4, 2, 0, 3, 1}, p0123[4] = {0, 1, 2, 3};
    int p21403[5] = {2, 1, 4, 0, 3}, pneg[3] = {0, -1, 1};
    /* gradients on small odd shapes */
    gc_input x3 = {"x", {2, 3, 5}, 3, 1, GC_NORMAL, 0, 0}, x4 = {"x", {2, 3, 1, 5}, 4, 1, GC_NORMAL, 0, 0};
    gc_input x5 = {"x", {2, 1, 3, 2, 3}, 5, 1, GC_NORMAL, 0, 0};
    gradcheck("permute (0,2,1)", &x3, 1, build_permute, p021, (gc_opts){.seed = 90});
    gradcheck("permute (0,-1,1)", &x3, 1, build_permute, pneg, (gc_opts){.seed = 91});
    gradcheck("permute (0,2,3,1)", &x4, 1, build_permute, p0231, (gc_opts){.seed = 92});
    gradcheck("permute (3,1,0,2)", &x4, 1, build_permute, p3102, (gc_opts){.seed = 93});
    gradcheck("permute (4,2,0,3,1)", &x5, 1, build_permute, p42031, (gc_opts){.seed = 94});

    /* fast paths (tiled transpose with ragged tiles, contiguous rows, strided rows, size-1 dims) vs naive */
    int64_t s3[3] = {3, 37, 70}, s4[4] = {2, 19, 9, 41}, s4b[4] = {2, 1, 33, 1}, s2[2] = {65, 33};
    int64_t s5[5] = {2, 3, 1, 4, 5}, s5b[5] = {3, 4, 5, 6, 7};
    compare_permute(s3, 3, p021);
    compare_permute(s4, 4, p0231);
    compare_permute(s4, 4, p0312);
    compare_permute(s4, 4, p3102);
    compare_permute(s4, 4, p1023);
    compare_permute(s4, 4, p0123);
    compare_permute(s4b, 4, p0312);
    compare_permute(s4b, 4, p3102);
    compare_permute(s2, 2, p10);
    compare_permute(s5, 5, p42031);
    compare_permute(s5b, 5, p42031);
    compare_permute(s5b, 5, p21403);

    /* every permutation of two 4-D shapes with a size-1 dimension (exercises the dimension merging) */
    int64_t sa[4] = {3, 1, 17, 5}, sb[4] = {2, 7, 1, 9};
    for (int code = 0; code < 256; code++) {
        int q[4] = {code & 3, (code >> 2) & 3, (code >> 4) & 3, (code >> 6) & 3}, used = 0;
        for (int i = 0; i < 4; i++)
            used |= 1 << q[i];
        if (used != 15) continue;
        compare_permute(sa, 4, q);
        compare_permute(sb, 4, q);
    }

    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    int64_t s[3] = {2, 3, 4};
    int bad[3] = {0, 1, 1};
    lt_tensor *x = lt_graph_input(g, "x", s, 3, 0);
    CHECK(lt_permute(g, x, bad) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "permute") && strstr(err.msg, "(2, 3, 4)"), "message: %s", err.msg);
    lt_graph_destroy(g);
}

typedef struct {
    int d0, d1;
} tr_ctx;

static lt_tensor *build_transpose(lt_graph *g, lt_tensor **in, void *ctx) {
    tr_ctx *c = ctx;
    return lt_transpose(g, in[0], c->d0, c->d1);
}

static void test_transpose(void) {
    gc_input x = {"x", {2, 3, 4, 5}, 4, 1, GC_NORMAL, 0, 0};
    tr_ctx c1 = {1, -1}, c2 = {0, 2};
    gradcheck("transpose (1,-1)", &x, 1, build_transpose, &c1, (gc_opts){.seed = 95});
    gradcheck("transpose (0,2)", &x, 1, build_transpose, &c2, (gc_opts){.seed = 96});
    /* transpose(1, -1) == permute(0, 3, 2, 1) */
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *in = lt_graph_input(g, "x", x.shape, 4, 0);
    int perm[4] = {0, 3, 2, 1};
    lt_tensor *t = lt_transpose(g, in, 1, -1), *p = lt_permute(g, in, perm);
    lt_graph_keep(g, p);
    if (plan_or_fail(g, t, "transpose")) {
        fill_iota(in, 0);
        lt_graph_forward(g);
        CHECK(lt_same_shape(t, p));
        CHECK_CLOSE("transpose == permute", t->data, p->data, t->numel, 0, 0);
    }
    lt_graph_destroy(g);
}

/* ---- slice ---- */

typedef struct {
    int axis;
    int64_t start, len;
} sl_ctx;

static lt_tensor *build_slice(lt_graph *g, lt_tensor **in, void *ctx) {
    sl_ctx *c = ctx;
    return lt_slice(g, in[0], c->axis, c->start, c->len);
}

static void test_slice(void) {
    const int64_t S[3] = {3, 5, 7};
    sl_ctx cases[4] = {{0, 1, 2}, {1, 2, 3}, {-1, 4, 3}, {2, 0, 1}};
    for (int c = 0; c < 4; c++) {
        gc_input x = {"x", {S[0], S[1], S[2]}, 3, 1, GC_NORMAL, 0, 0};
        char label[64];
        snprintf(label, sizeof label, "slice axis %d [%lld, +%lld)", cases[c].axis, (long long)cases[c].start,
                 (long long)cases[c].len);
        gradcheck(label, &x, 1, build_slice, &cases[c], (gc_opts){.seed = 100 + (uint64_t)c});

        lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
        lt_tensor *in = lt_graph_input(g, "x", S, 3, 0);
        lt_tensor *y = plan_or_fail(g, build_slice(g, &in, &cases[c]), label);
        if (y) {
            fill_iota(in, 0);
            lt_graph_forward(g);
            int ax = cases[c].axis < 0 ? cases[c].axis + 3 : cases[c].axis, ok = y->shape[ax] == cases[c].len;
            for (int64_t a = 0; ok && a < y->shape[0]; a++)
                for (int64_t b = 0; ok && b < y->shape[1]; b++)
                    for (int64_t d = 0; ok && d < y->shape[2]; d++) {
                        int64_t idx[3] = {a, b, d};
                        idx[ax] += cases[c].start;
                        ok = y->data[(a * y->shape[1] + b) * y->shape[2] + d] ==
                             in->data[(idx[0] * S[1] + idx[1]) * S[2] + idx[2]];
                    }
            CHECK_MSG(ok, "%s: wrong values", label);
        }
        lt_graph_destroy(g);
    }
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *in = lt_graph_input(g, "x", S, 3, 0);
    CHECK(lt_slice(g, in, 1, 3, 3) == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "slice") && strstr(err.msg, "(3, 5, 7)"), "message: %s", err.msg);
    lt_graph_destroy(g);
}

/* ---- sum and mean ---- */

static lt_tensor *build_sum(lt_graph *g, lt_tensor **in, void *ctx) {
    return ctx ? lt_mean(g, in[0]) : lt_sum(g, in[0]);
}

static void test_reductions(void) {
    int yes = 1;
    gc_input x = {"x", {3, 5, 7}, 3, 1, GC_NORMAL, 0, 0};
    gradcheck("sum", &x, 1, build_sum, NULL, (gc_opts){.seed = 110});
    gradcheck("mean", &x, 1, build_sum, &yes, (gc_opts){.seed = 111});
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *in = lt_graph_input(g, "x", x.shape, 3, 1);
    lt_tensor *s = lt_sum(g, in), *m = lt_mean(g, in);
    lt_graph_keep(g, s);
    if (plan_or_fail(g, m, "sum/mean")) {
        double want = 0;
        for (int64_t i = 0; i < in->numel; i++) {
            in->data[i] = sinf((float)i);
            want += in->data[i];
        }
        lt_graph_forward(g);
        CHECK(s->ndim == 1 && s->shape[0] == 1 && m->ndim == 1 && m->shape[0] == 1);
        CHECK_NEAR(s->data[0], want, 1e-5, 1e-6);
        CHECK_NEAR(m->data[0], want / 105.0, 1e-6, 1e-6);
        float two = 2.0f;
        lt_graph_backward(g, m, &two);
        CHECK_NEAR(in->grad[17], 2.0 / 105.0, 1e-7, 1e-6);
    }
    lt_graph_destroy(g);
}

int main(void) {
    golden_file gf;
    if (golden_load(&gf, "dense.txt") == 0)
        test_permute_golden(&gf);
    else
        CHECK_MSG(0, "dense.txt golden file missing");
    golden_free(&gf);
    test_concat();
    test_views();
    test_permute();
    test_transpose();
    test_slice();
    test_reductions();
    return check_summary("test_shape");
}
