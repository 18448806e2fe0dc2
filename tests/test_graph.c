/* Tests of the graph planner itself: memory reuse, views, keep, gradient zeroing. */
#include "check.h"
#include "core/graph.h"

#include <math.h>
#include <string.h>

/* A tiny op for the planner tests: out = 2 * in, backward din += 2 * dout. */
static void dbl_fw(lt_node *n, const lt_exec *x) {
    for (int64_t i = 0; i < n->out->numel; i++) n->out->data[i] = 2.0f * n->in[0]->data[i];
}
static void dbl_bw(lt_node *n, const lt_exec *x) {
    if (n->in[0]->grad)
        for (int64_t i = 0; i < n->out->numel; i++) n->in[0]->grad[i] += 2.0f * n->out->grad[i];
}
static const lt_op dbl_op = {"double", dbl_fw, dbl_bw};

static lt_tensor *dbl(lt_graph *g, lt_tensor *x) {
    lt_tensor *o = lt_graph_new_tensor(g, x->shape, x->ndim);
    lt_graph_add_node(g, &dbl_op, o, &x, 1);
    return o;
}

static void test_chain_reuses_memory(lt_mode mode) {
    lt_graph *g = lt_graph_create(mode, NULL);
    int64_t shape[2] = {64, 64};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, mode == LT_MODE_TRAIN);
    lt_tensor *y = x;
    for (int i = 0; i < 10; i++) y = dbl(g, y);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    for (int i = 0; i < 64 * 64; i++) x->data[i] = (float)i;
    lt_graph_forward(g);
    CHECK_NEAR(y->data[5], 5.0 * 1024.0, 0, 0);
    int64_t one = 64 * 64 * 4;
    if (mode == LT_MODE_EVAL) {
        /* input + kept output + two ping-pong buffers */
        CHECK_MSG(lt_graph_arena_bytes(g) <= 4 * one, "eval arena %lld", (long long)lt_graph_arena_bytes(g));
    } else {
        lt_graph_backward(g, y, NULL);
        CHECK_NEAR(x->grad[7], 1024.0, 0, 0);
        /* a second backward must not accumulate into graph gradients */
        lt_graph_forward(g);
        lt_graph_backward(g, y, NULL);
        CHECK_NEAR(x->grad[7], 1024.0, 0, 0);
        /* the double op reads its input in backward, so all 11 activations stay, gradients ping-pong */
        CHECK_MSG(lt_graph_arena_bytes(g) <= 11 * one + 4 * one, "train arena %lld", (long long)lt_graph_arena_bytes(g));
    }
    lt_graph_destroy(g);
}

static void test_view_shares_storage(void) {
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t shape[2] = {2, 6}, shape2[3] = {3, 2, 2};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, 1);
    lt_tensor *v = lt_graph_view(g, dbl(g, x), shape2, 3);
    lt_tensor *y = dbl(g, v);
    lt_graph_keep(g, y);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_OK);
    for (int i = 0; i < 12; i++) x->data[i] = (float)i;
    lt_graph_forward(g);
    CHECK(v->data == lt_tensor_root(v)->data);
    CHECK_NEAR(y->data[11], 44.0, 0, 0);
    lt_graph_backward(g, y, NULL);
    CHECK_NEAR(x->grad[3], 4.0, 0, 0);
    lt_graph_destroy(g);
}

static void test_errors_are_reported_at_plan(void) {
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    int64_t shape[2] = {2, 6}, bad[2] = {5, 5};
    lt_tensor *x = lt_graph_input(g, "x", shape, 2, 0);
    lt_tensor *v = lt_graph_view(g, x, bad, 2);
    CHECK(v == NULL);
    CHECK(dbl(g, x) == NULL); /* later builders are no-ops */
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == LT_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "(2, 6)") && strstr(err.msg, "(5, 5)"), "message: %s", err.msg);
    lt_graph_destroy(g);
    lt_graph_destroy(NULL);
}

int main(void) {
    test_chain_reuses_memory(LT_MODE_EVAL);
    test_chain_reuses_memory(LT_MODE_TRAIN);
    test_view_shares_storage();
    test_errors_are_reported_at_plan();
    return check_summary("test_graph");
}
