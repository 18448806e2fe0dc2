/* Tests of activation.c: relu, gelu, sigmoid, softmax, dropout, add, mul, scale, against PyTorch golden
 * values (tools/golden/norm_act.py), finite differences, and naive references on tensors large enough to
 * take the OpenMP path. */
#include "check.h"
#include "core/params.h"
#include "golden.h"
#include "gradcheck.h"
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static golden_file gf;

static void put(const char *name, lt_tensor *t) {
    golden_put(&gf, name, t->data, t->numel);
}

static void expect(const char *name, const float *got, int64_t n, double atol, double rtol) {
    golden_expect(&gf, NULL, name, got, n, atol, rtol);
}

typedef lt_tensor *(*unary_fn)(lt_graph *g, lt_tensor *x);

/* Runs one unary op on golden input xname (shape (r, c)), compares the output with yname and, when dxname
 * is non-NULL, the gradient for upstream "act_dy" with dxname. */
static void golden_unary(unary_fn op, const char *xname, const char *yname, const char *dxname, int64_t r,
                         int64_t c) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[2] = {r, c};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, 1);
    lt_tensor *y = op(g, x);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "%s: plan: %s", yname, err.msg);
    if (y && y->data) {
        put(xname, x);
        lt_graph_forward(g);
        int finite = 1;
        for (int64_t i = 0; i < y->numel; i++)
            finite &= isfinite(y->data[i]) != 0;
        CHECK_MSG(finite, "%s: non-finite output", yname);
        expect(yname, y->data, y->numel, 1e-6, 1e-5);
        if (dxname) {
            golden_tensor *dy = golden_get(&gf, "act_dy");
            if (dy && dy->numel == y->numel) lt_graph_backward(g, y, dy->data);
            expect(dxname, x->grad, x->numel, 1e-6, 1e-5);
        }
    }
    lt_graph_destroy(g);
}

static void test_golden(void) {
    golden_unary(lt_gelu, "act_x", "gelu_y", "gelu_dx", 7, 7);
    golden_unary(lt_sigmoid, "act_x", "sigmoid_y", NULL, 7, 7);
    golden_unary(lt_softmax, "softmax_x", "softmax_y", NULL, 4, 9);
}

/* ---- finite differences ---- */

typedef enum { U_RELU, U_GELU, U_SIGMOID, U_SOFTMAX, U_SCALE, U_DROPOUT } unary_kind;

static lt_tensor *build_unary(lt_graph *g, lt_tensor **in, void *ctx) {
    switch (*(unary_kind *)ctx) {
    case U_RELU:
        return lt_relu(g, in[0]);
    case U_GELU:
        return lt_gelu(g, in[0]);
    case U_SIGMOID:
        return lt_sigmoid(g, in[0]);
    case U_SOFTMAX:
        return lt_softmax(g, in[0]);
    case U_SCALE:
        return lt_scale(g, in[0], -1.75f);
    case U_DROPOUT:
    default:
        return lt_dropout(g, in[0], 0.3f);
    }
}

/* relu's kink: finite differences across 0 are meaningless, so keep |x| >= 0.1 */
static void away_from_zero(lt_tensor **in, int n_in, void *ctx) {
    for (int64_t i = 0; i < in[0]->numel; i++)
        if (fabsf(in[0]->data[i]) < 0.1f) in[0]->data[i] = in[0]->data[i] < 0 ? -0.3f : 0.3f;
}

static lt_tensor *build_binary(lt_graph *g, lt_tensor **in, void *ctx) {
    const char *which = ctx;
    if (strcmp(which, "add") == 0) return lt_add(g, in[0], in[1]);
    if (strcmp(which, "mul") == 0) return lt_mul(g, in[0], in[1]);
    if (strcmp(which, "add self") == 0) return lt_add(g, in[0], in[0]);
    return lt_mul(g, in[0], in[0]); /* "mul self" */
}

static void test_gradcheck(void) {
    gc_opts o = {.seed = 21};
    unary_kind k;
    gc_input x1[1] = {{"x", {3, 5, 7}, 3, 1, GC_NORMAL, 0.0f, 2.0f}};
    k = U_RELU;
    gradcheck_fix("relu", x1, 1, build_unary, away_from_zero, &k, o);
    k = U_GELU;
    gradcheck("gelu", x1, 1, build_unary, &k, o);
    k = U_SIGMOID;
    gradcheck("sigmoid", x1, 1, build_unary, &k, o);
    k = U_SOFTMAX;
    gradcheck("softmax (3,5,7)", x1, 1, build_unary, &k, o);
    k = U_SCALE;
    gradcheck("scale", x1, 1, build_unary, &k, o);
    k = U_DROPOUT;
    gradcheck("dropout p=0.3", x1, 1, build_unary, &k, o);
    gc_input x2[1] = {{"x", {1, 1}, 2, 1, GC_NORMAL, 0.0f, 1.0f}};
    k = U_SOFTMAX;
    gradcheck("softmax of one element", x2, 1, build_unary, &k, o);
    gc_input x3[1] = {{"x", {2, 11}, 2, 1, GC_NORMAL, 0.0f, 4.0f}};
    gradcheck("softmax wide spread", x3, 1, build_unary, &k, o);

    gc_input same[2] = {{"a", {2, 3, 5}, 3, 1, GC_NORMAL, 0.0f, 1.0f},
                        {"b", {2, 3, 5}, 3, 1, GC_NORMAL, 0.5f, 1.0f}};
    gradcheck("add same shape", same, 2, build_binary, "add", o);
    gradcheck("mul", same, 2, build_binary, "mul", o);
    gradcheck("add a to itself", same, 1, build_binary, "add self", o);
    gradcheck("mul a by itself", same, 1, build_binary, "mul self", o);
    gc_input bc[2] = {{"a", {2, 3, 5}, 3, 1, GC_NORMAL, 0.0f, 1.0f},
                      {"b", {3, 5}, 2, 1, GC_NORMAL, 0.5f, 1.0f}};
    gradcheck("add broadcast (2,3,5)+(3,5)", bc, 2, build_binary, "add", o);
    gc_input bc1[2] = {{"a", {4, 3, 5}, 3, 1, GC_NORMAL, 0.0f, 1.0f},
                       {"b", {5}, 1, 1, GC_NORMAL, 0.5f, 1.0f}};
    gradcheck("add broadcast (4,3,5)+(5)", bc1, 2, build_binary, "add", o);
    /* only one side needs a gradient */
    gc_input half[2] = {{"a", {3, 4}, 2, 0, GC_NORMAL, 0.0f, 1.0f},
                        {"b", {3, 4}, 2, 1, GC_NORMAL, 0.0f, 1.0f}};
    gradcheck("mul, b only", half, 2, build_binary, "mul", o);
    gc_input bc0[2] = {{"a", {4, 6}, 2, 1, GC_NORMAL, 0.0f, 1.0f}, {"b", {6}, 1, 0, GC_NORMAL, 0.0f, 1.0f}};
    gradcheck("add broadcast, a only", bc0, 2, build_binary, "add", o);
}

/* ---- softmax stability ---- */

static void test_softmax_extremes(void) {
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    int64_t shape[2] = {3, 4};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, 0);
    lt_tensor *y = lt_softmax(g, x);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (y && y->data) {
        const float v[12] = {1000, 1000, 1000, 1000, -1000, 0, -1000, 0, 3e38f, -3e38f, 0, -INFINITY};
        memcpy(x->data, v, sizeof v);
        lt_graph_forward(g);
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(y->data[i], 0.25, 1e-7, 0);
        CHECK_NEAR(y->data[4], 0.0, 0, 0);
        CHECK_NEAR(y->data[5], 0.5, 1e-7, 0);
        CHECK_NEAR(y->data[8], 1.0, 1e-7, 0);
        CHECK_NEAR(y->data[11], 0.0, 0, 0); /* a -inf logit (a masked key) gets exactly 0 */
    }
    lt_graph_destroy(g);
}

/* ---- dropout ---- */

static void test_dropout(void) {
    const float p = 0.3f;
    const int64_t n = 200000;
    lt_rng rng;
    lt_rng_seed(&rng, 77, 3);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
    int64_t shape[2] = {400, 500};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, 1);
    lt_tensor *y = lt_dropout(g, x, p);
    CHECK(y && y != x);
    lt_node *nd = lt_graph_node(g, 0);
    CHECK(nd && nd->saved_numel == n && nd->bw_skip_in == 1u && nd->bw_skip_out == 1);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (y && y->data) {
        for (int64_t i = 0; i < n; i++)
            x->data[i] = 1.0f + (float)(i % 7);
        float *dy = malloc((size_t)n * sizeof *dy), *first = malloc((size_t)n * sizeof *first);
        for (int64_t i = 0; i < n; i++)
            dy[i] = (float)(i % 5) - 2.0f;
        lt_graph_forward(g);
        int64_t kept = 0, bad = 0;
        double sum = 0, xsum = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y->data[i] != 0.0f) {
                kept++;
                /* kept values are scaled by exactly 1 / (1 - p) */
                if (fabsf(y->data[i] - x->data[i] / (1.0f - p)) > 1e-6f * fabsf(y->data[i])) bad++;
            }
            sum += y->data[i];
            xsum += x->data[i];
        }
        /* binomial(n, 0.7): sd of the kept fraction is 0.001; 0.006 is six of them */
        CHECK_NEAR((double)kept / (double)n, 1.0 - p, 0.006, 0);
        CHECK_MSG(bad == 0, "%lld kept values not scaled by 1/(1-p)", (long long)bad);
        CHECK_NEAR(sum / xsum, 1.0, 0.01, 0); /* inverted dropout keeps the expectation */
        lt_graph_backward(g, y, dy);
        bad = 0;
        for (int64_t i = 0; i < n; i++) {
            /* gradient flows exactly through the kept elements with the same scale */
            float want = y->data[i] != 0.0f ? dy[i] / (1.0f - p) : 0.0f;
            if (fabsf(x->grad[i] - want) > 1e-6f) bad++;
        }
        CHECK_MSG(bad == 0, "%lld dropout gradients differ from dy * mask", (long long)bad);
        /* the next forward draws a fresh mask */
        memcpy(first, y->data, (size_t)n * sizeof *first);
        lt_graph_forward(g);
        int64_t differ = 0;
        for (int64_t i = 0; i < n; i++)
            differ += (first[i] == 0.0f) != (y->data[i] == 0.0f);
        CHECK_MSG(differ > n / 10, "second mask repeats the first (%lld differences)", (long long)differ);
        free(dy);
        free(first);
    }
    lt_graph_destroy(g);

    /* identity in eval graphs and for p == 0: no node, no mask */
    g = lt_graph_create(LT_MODE_EVAL, &rng);
    x = lt_graph_input(g, "x", shape, 2, 0);
    CHECK(lt_dropout(g, x, 0.5f) == x);
    CHECK(lt_graph_node_count(g) == 0);
    lt_graph_destroy(g);
    g = lt_graph_create(LT_MODE_TRAIN, &rng);
    x = lt_graph_input(g, "x", shape, 2, 1);
    CHECK(lt_dropout(g, x, 0.0f) == x);
    CHECK(lt_graph_node_count(g) == 0);
    CHECK(lt_dropout(g, x, 1.5f) == NULL);
    CHECK(lt_graph_status(g, &err) == LT_ERR_ARG && strstr(err.msg, "dropout"));
    lt_graph_destroy(g);

    /* p == 1 drops everything (PyTorch gives zeros) */
    g = lt_graph_create(LT_MODE_TRAIN, &rng);
    int64_t small[1] = {100};
    x = lt_graph_input(g, "x", small, 1, 1);
    y = lt_dropout(g, x, 1.0f);
    lt_graph_keep(g, y);
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    if (y && y->data) {
        for (int i = 0; i < 100; i++)
            x->data[i] = 1.0f;
        lt_graph_forward(g);
        float zeros[100] = {0};
        CHECK_CLOSE("dropout p=1", y->data, zeros, 100, 0, 0);
    }
    lt_graph_destroy(g);
}

/* ---- naive references on tensors large enough for OpenMP ---- */

static void test_large_vs_reference(void) {
    const int64_t R = 700, C = 70, n = R * C; /* 49000 > the threshold; 70 is not a multiple of the block */
    lt_rng rng;
    lt_rng_seed(&rng, 13, 2);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[2] = {R, C}, cs[1] = {C};
    lt_tensor *a = lt_graph_input(g, "a", shape, 2, 1), *b = lt_graph_input(g, "b", cs, 1, 1);
    lt_tensor *m = lt_graph_input(g, "m", shape, 2, 1);
    lt_tensor *s = lt_add(g, a, b);    /* a + b (broadcast) */
    lt_tensor *gl = lt_gelu(g, s);     /* gelu */
    lt_tensor *sm = lt_softmax(g, gl); /* softmax rows */
    lt_tensor *pr = lt_mul(g, sm, m);  /* * m */
    lt_tensor *out = lt_scale(g, lt_sigmoid(g, lt_relu(g, pr)), 3.0f);
    lt_graph_keep(g, out);
    lt_graph_keep(g, sm);
    lt_err err = {{0}};
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (!out || !out->data) {
        lt_graph_destroy(g);
        return;
    }
    for (int64_t i = 0; i < n; i++)
        a->data[i] = 2.0f * lt_rng_normal(&rng);
    for (int64_t i = 0; i < n; i++)
        m->data[i] = 50.0f * lt_rng_normal(&rng);
    for (int64_t c = 0; c < C; c++)
        b->data[c] = lt_rng_normal(&rng);
    float *dy = malloc((size_t)n * sizeof *dy), *fo = malloc((size_t)n * sizeof *fo);
    float *fsm = malloc((size_t)n * sizeof *fsm), *fda = malloc((size_t)n * sizeof *fda);
    float *fdm = malloc((size_t)n * sizeof *fdm), fdb[70];
    double *dbd = calloc((size_t)C, sizeof *dbd), *row = malloc((size_t)C * 4 * sizeof *row);
    for (int64_t i = 0; i < n; i++)
        dy[i] = lt_rng_normal(&rng);
    /* reference, row by row in double */
    for (int64_t r = 0; r < R; r++) {
        double *gv = row, *smv = row + C, *dsm = row + 2 * C, *sv = row + 3 * C;
        double mx = -INFINITY, z = 0, dot = 0;
        for (int64_t c = 0; c < C; c++) {
            sv[c] = (double)a->data[r * C + c] + b->data[c];
            gv[c] = 0.5 * sv[c] * (1.0 + erf(sv[c] / sqrt(2.0)));
            mx = gv[c] > mx ? gv[c] : mx;
        }
        for (int64_t c = 0; c < C; c++)
            z += exp(gv[c] - mx);
        for (int64_t c = 0; c < C; c++) {
            const int64_t k = r * C + c;
            smv[c] = exp(gv[c] - mx) / z;
            const double p = smv[c] * m->data[k], q = p > 0 ? p : 0, sg = 1.0 / (1.0 + exp(-q));
            fsm[k] = (float)smv[c];
            fo[k] = (float)(3.0 * sg);
            const double dq = 3.0 * dy[k] * sg * (1.0 - sg), dp = p > 0 ? dq : 0;
            fdm[k] = (float)(dp * smv[c]);
            dsm[c] = dp * m->data[k];
            dot += dsm[c] * smv[c];
        }
        for (int64_t c = 0; c < C; c++) {
            const double dg = smv[c] * (dsm[c] - dot), x = sv[c];
            const double ds =
                dg * (0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI));
            fda[r * C + c] = (float)ds;
            dbd[c] += ds;
        }
    }
    for (int64_t c = 0; c < C; c++)
        fdb[c] = (float)dbd[c];
    lt_graph_forward(g);
    lt_graph_backward(g, out, dy);
    CHECK_CLOSE("large softmax", sm->data, fsm, n, 1e-7, 1e-4);
    CHECK_CLOSE("large chain output", out->data, fo, n, 1e-5, 1e-5);
    CHECK_CLOSE("large chain dm", m->grad, fdm, n, 1e-6, 1e-3);
    CHECK_CLOSE("large chain da", a->grad, fda, n, 1e-5, 1e-3);
    CHECK_CLOSE("large chain db (broadcast sum)", b->grad, fdb, C, 1e-4, 1e-3);
    free(dy);
    free(fo);
    free(fsm);
    free(fda);
    free(fdm);
    free(dbd);
    free(row);
    lt_graph_destroy(g);
}

/* Backward adds into parameter gradients (graph gradients are zeroed by the graph, parameters are not):
 * a position embedding broadcast over the batch, and a parameter multiplied in, backpropagated twice. */
static void test_param_grads_accumulate(void) {
    lt_params p;
    lt_params_init(&p);
    lt_err err = {{0}};
    int64_t s3[3] = {4, 3, 5}, s2[2] = {3, 5};
    lt_tensor *pos = lt_params_add(&p, "pos", s2, 2, LT_PARAM_TRAINABLE, &err);
    lt_tensor *gain = lt_params_add(&p, "gain", s3, 3, LT_PARAM_TRAINABLE, &err);
    lt_tensor *sc = lt_params_add(&p, "scaled", s3, 3, LT_PARAM_TRAINABLE, &err);
    CHECK(lt_params_alloc(&p, &err) == LT_OK);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = lt_graph_input(g, "x", s3, 3, 0);
    lt_tensor *y = lt_add(g, lt_mul(g, lt_add(g, x, pos), gain), lt_scale(g, sc, -2.0f));
    lt_graph_keep(g, y);
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (y && y->data) {
        for (int64_t i = 0; i < 60; i++) {
            x->data[i] = (float)i * 0.1f;
            gain->data[i] = 1.0f + (float)(i % 3);
        }
        for (int64_t i = 0; i < 15; i++)
            pos->data[i] = -(float)i;
        lt_graph_forward(g);
        lt_graph_backward(g, y, NULL);
        lt_graph_backward(g, y, NULL);
        float want_pos[15], want_gain[60], want_sc[60];
        for (int64_t j = 0; j < 15; j++) {
            want_pos[j] = 0;
            for (int64_t r = 0; r < 4; r++)
                want_pos[j] += 2.0f * gain->data[r * 15 + j];
        }
        for (int64_t i = 0; i < 60; i++) {
            want_gain[i] = 2.0f * (x->data[i] + pos->data[i % 15]);
            want_sc[i] = -4.0f;
        }
        CHECK_CLOSE("accumulated d pos", pos->grad, want_pos, 15, 1e-5, 1e-6);
        CHECK_CLOSE("accumulated d gain", gain->grad, want_gain, 60, 1e-5, 1e-6);
        CHECK_CLOSE("accumulated d scaled", sc->grad, want_sc, 60, 1e-5, 1e-6);
    }
    lt_graph_destroy(g);
    lt_params_free(&p);
}

/* ---- builder validation and planner flags ---- */

static void test_errors_and_flags(void) {
    lt_err err = {{0}};
    int64_t s235[3] = {2, 3, 5}, s25[2] = {2, 5}, s35[2] = {3, 5};
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *a = lt_graph_input(g, "a", s235, 3, 1), *bad = lt_graph_input(g, "b", s25, 2, 1);
    CHECK(lt_add(g, a, bad) == NULL);
    CHECK(lt_graph_status(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "add") && strstr(err.msg, "(2, 5)") && strstr(err.msg, "(2, 3, 5)"),
              "message: %s", err.msg);
    lt_graph_destroy(g);
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    a = lt_graph_input(g, "a", s235, 3, 1);
    lt_tensor *b = lt_graph_input(g, "b", s35, 2, 1);
    CHECK(lt_mul(g, a, b) == NULL);
    CHECK(lt_graph_status(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "mul") && strstr(err.msg, "(3, 5)") && strstr(err.msg, "(2, 3, 5)"),
              "message: %s", err.msg);
    lt_graph_destroy(g);

    /* what each backward reads: relu/sigmoid/softmax the output only, gelu the input only, add/scale nothing,
     * mul the other operand only when that gradient is wanted */
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    a = lt_graph_input(g, "a", s235, 3, 1);
    lt_tensor *c = lt_graph_input(g, "c", s235, 3, 0);
    lt_relu(g, a);
    lt_sigmoid(g, a);
    lt_softmax(g, a);
    lt_gelu(g, a);
    lt_add(g, a, c);
    lt_scale(g, a, 2.0f);
    lt_mul(g, a, c); /* c needs no gradient: a's values are not needed */
    lt_mul(g, c, a);
    const uint32_t want_in[8] = {1, 1, 1, 0, 3, 1, 1, 2};
    const int want_out[8] = {0, 0, 0, 1, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) {
        lt_node *n = lt_graph_node(g, i);
        CHECK_MSG(n && n->bw_skip_in == want_in[i] && n->bw_skip_out == want_out[i], "node %d (%s): 0x%x %d",
                  i, n ? n->op->name : "?", n ? n->bw_skip_in : 0, n ? n->bw_skip_out : -1);
    }
    CHECK(lt_graph_status(g, &err) == LT_OK);
    lt_graph_destroy(g);
}

int main(void) {
    if (golden_load(&gf, "norm_act.txt") != 0) {
        CHECK_MSG(0, "cannot load norm_act.txt");
        return check_summary("test_activation");
    }
    test_golden();
    test_gradcheck();
    test_softmax_extremes();
    test_dropout();
    test_large_vs_reference();
    test_param_grads_accumulate();
    test_errors_and_flags();
    golden_free(&gf);
    return check_summary("test_activation");
}
