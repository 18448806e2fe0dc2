/* Tests of the SegFormer and DETR building blocks (models/segformer_blocks.h, models/detr_blocks.h) and of
 * the drop_path op (ops/drop_path.h):
 *   - forward and backward against transformers' semantics re-implemented in PyTorch
 * (tools/golden/blocks.py): outputs, input gradients and the gradient of every weight for a fixed upstream
 * gradient, in training graphs whose dropout and drop_path masks the script reproduces from lathe's rng, and
 * in eval graphs; parameter names and shapes from the *_declare helpers must be transformers' (the golden
 * file is keyed by them);
 *   - finite-difference gradient checks of every block on tiny shapes, weights included;
 *   - eval vs training behaviour of dropout and drop_path, drop_path statistics, build errors.
 * Inputs and weights are not stored in the golden file: gen() below and gen() in the script make the same
 * values from the FNV-1a hash of each tensor's name. */
#include "check.h"
#include "core/params.h"
#include "golden.h"
#include "gradcheck.h"
#include "models/detr_blocks.h"
#include "models/segformer_blocks.h"
#include "ops/drop_path.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static golden_file gf;

/* ---- deterministic values shared with tools/golden/blocks.py ---- */

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ULL;
    return h;
}

/* offset + scale * (k / 32768 - 1) for 16-bit k from an rng seeded by the name: exact in float32 */
static void gen(float *dst, int64_t n, const char *name, double scale, double offset) {
    lt_rng r;
    lt_rng_seed(&r, fnv1a64(name), 7);
    for (int64_t i = 0; i < n; i++)
        dst[i] = (float)(offset + scale * ((double)(lt_rng_u32(&r) >> 16) / 32768.0 - 1.0));
}

/* The script's param_value(): weights by fan-in, norm weights and running variances around 1. */
static void param_fill(lt_tensor *t) {
    const char *n = t->name;
    size_t len = strlen(n);
    if (t->ndim == 1) {
        int norm_w = strstr(n, "norm") && len > 7 && strcmp(n + len - 7, ".weight") == 0;
        int var = len > 11 && strcmp(n + len - 11, "running_var") == 0;
        gen(t->data, t->numel, n, 0.25, norm_w || var ? 1.0 : 0.0);
        return;
    }
    int64_t fan_in = t->numel / t->shape[0];
    int k = 0;
    while (((int64_t)1 << (2 * (k + 1))) <= fan_in)
        k++;
    gen(t->data, t->numel, n, ldexp(1.0, -k), 0.0);
}

static void fill_store(lt_params *ps) {
    for (int i = 0; i < ps->n; i++)
        param_fill(ps->tensors[i]);
}

/* fills a graph input from the generator under pre.name, values in [-scale, scale) */
static void gen_input_scaled(lt_tensor *t, const char *pre, const char *name, double scale) {
    char full[96];
    snprintf(full, sizeof full, "%s.%s", pre, name);
    gen(t->data, t->numel, full, scale, 0.0);
}

static void gen_input(lt_tensor *t, const char *pre, const char *name) {
    gen_input_scaled(t, pre, name, 1.0);
}

/* the pixel mask of tools/golden/blocks.py: 1 in the top-left valid[b] = (rows, cols) block of image b */
static void pixel_mask(float *m, int64_t B, int64_t H, int64_t W, const int (*valid)[2]) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++)
                m[(b * H + y) * W + x] = y < valid[b][0] && x < valid[b][1] ? 1.0f : 0.0f;
}

/* ---- golden comparisons ---- */

static golden_tensor *find_quiet(const char *name) {
    for (int i = 0; i < gf.n; i++)
        if (strcmp(gf.t[i].name, name) == 0) return &gf.t[i];
    return NULL;
}

static void expect(const char *name, const float *got, int64_t n, double atol, double rtol) {
    golden_expect(&gf, NULL, name, got, n, atol, rtol);
}

static void expect_grad(const char *pre, const char *name, const lt_tensor *t, double atol, double rtol) {
    char full[96];
    snprintf(full, sizeof full, "%s.%s.grad", pre, name);
    expect(full, t->grad, t->numel, atol, rtol);
}

/* Compares every trainable tensor of ps that has a golden gradient, requires the others to have none (they
 * took no part), and requires every parameter gradient the script wrote under pre to have been compared:
 * so the declared names and shapes are exactly the script's, i.e. transformers'. n_inputs: how many of the
 * script's pre.*.grad entries are input gradients, not parameters. */
static void expect_param_grads(lt_params *ps, const char *pre, int n_inputs, double atol, double rtol) {
    int matched = 0, golden_grads = 0;
    char name[160];
    size_t plen = strlen(pre);
    for (int i = 0; i < gf.n; i++) {
        const char *n = gf.t[i].name;
        size_t len = strlen(n);
        if (strncmp(n, pre, plen) == 0 && n[plen] == '.' && len > 5 && strcmp(n + len - 5, ".grad") == 0)
            golden_grads++;
    }
    for (int i = 0; i < ps->n; i++) {
        lt_tensor *t = ps->tensors[i];
        if (lt_params_kind(t) != LT_PARAM_TRAINABLE) continue;
        snprintf(name, sizeof name, "%s.grad", t->name);
        golden_tensor *s = find_quiet(name);
        if (s) {
            CHECK_MSG(s->numel == t->numel, "%s: %lld values declared, %lld in the golden file", t->name,
                      (long long)t->numel, (long long)s->numel);
            if (s->numel == t->numel)
                check_close_array(name, t->grad, s->data, t->numel, atol, rtol, __FILE__, __LINE__);
            matched++;
        } else {
            int zero = 1;
            for (int64_t j = 0; j < t->numel; j++)
                zero &= t->grad[j] == 0.0f;
            CHECK_MSG(zero, "%s has a gradient but no golden value", t->name);
        }
    }
    CHECK_MSG(matched == golden_grads - n_inputs,
              "%s: %d parameter gradients compared, the golden file has %d", pre, matched,
              golden_grads - n_inputs);
}

static int plan_ok(lt_graph *g, const char *what) {
    lt_err err = {{0}};
    lt_status st = lt_graph_plan(g, &err);
    CHECK_MSG(st == LT_OK, "%s: plan: %s", what, err.msg);
    return st == LT_OK;
}

/* lt_graph_backward from the golden-generated upstream gradient pre.dy */
static void backward_dy(lt_graph *g, lt_tensor *y, const char *pre) {
    float *dy = malloc((size_t)y->numel * sizeof *dy);
    char name[96];
    snprintf(name, sizeof name, "%s.dy", pre);
    gen(dy, y->numel, name, 1.0, 0.0);
    lt_graph_backward(g, y, dy);
    free(dy);
}

static lt_tensor *input3(lt_graph *g, const char *name, int64_t d0, int64_t d1, int64_t d2, int grad) {
    int64_t s[3] = {d0, d1, d2};
    return lt_graph_input(g, name, s, 3, grad);
}

/* float32 against a float64 reference: accumulated rounding through a few linears, softmax and norms */
#define TOL 2e-5
#define RTOL 2e-4
/* inputs this small have a variance (~1e-4) that LayerNorm's eps visibly shifts: 1e-5 vs 1e-6 changes the
 * output by a few percent, so these cases pin transformers' eps */
#define SMALL (1.0 / 64.0)

/* ================= SegFormer golden tests ================= */

static void test_seg_attention_golden(const char *pre, int B, int H, int W, int C, int heads, int sr) {
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_layer_params lp;
    CHECK(lt_segformer_layer_declare(&ps, pre, C, 4 * C, sr, &lp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);
    lt_rng rng;
    lt_rng_seed(&rng, 1, 1);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
    lt_tensor *x = input3(g, "hidden", B, (int64_t)H * W, C, 1);
    lt_segformer_layer_cfg cfg = {H, W, heads, sr, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS};
    lt_tensor *y = lt_segformer_efficient_attention(g, x, &lp.attn, &cfg);
    lt_graph_keep(g, y);
    if (plan_ok(g, pre)) {
        gen_input(x, pre, "hidden");
        lt_params_zero_grad(&ps);
        lt_graph_forward(g);
        char n[96];
        snprintf(n, sizeof n, "%s.y", pre);
        expect(n, y->data, y->numel, TOL, RTOL);
        backward_dy(g, y, pre);
        expect_grad(pre, "hidden", x, TOL, RTOL);
        expect_param_grads(&ps, pre, 1, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

static void test_seg_ffn_golden(void) {
    const char *pre = "sf";
    const int B = 2, H = 3, W = 5, C = 8;
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_layer_params lp;
    CHECK(lt_segformer_layer_declare(&ps, pre, C, 4 * C, 1, &lp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *x = input3(g, "hidden", B, H * W, C, 1);
    lt_segformer_layer_cfg cfg = {H, W, 2, 1, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS};
    lt_tensor *y = lt_segformer_mix_ffn(g, x, &lp.ffn, &cfg);
    lt_graph_keep(g, y);
    if (plan_ok(g, pre)) {
        gen_input(x, pre, "hidden");
        lt_params_zero_grad(&ps);
        lt_graph_forward(g);
        expect("sf.y", y->data, y->numel, TOL, RTOL);
        backward_dy(g, y, pre);
        expect_grad(pre, "hidden", x, TOL, RTOL);
        expect_param_grads(&ps, pre, 1, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

/* SegformerLayer in a training graph with drop_path 0.3 (the seed drops sample 0 of the attention branch
 * and sample 1 of the FFN branch), then in an eval graph where drop_path is the identity. */
static void test_seg_layer_golden(void) {
    const char *pre = "sl";
    const int B = 2, H = 5, W = 7, C = 8;
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_layer_params lp;
    CHECK(lt_segformer_layer_declare(&ps, pre, C, 4 * C, 2, &lp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);
    lt_segformer_layer_cfg cfg = {H, W, 2, 2, 0.3f, 0.0f, LT_SEGFORMER_LN_EPS};
    lt_rng rng;
    lt_rng_seed(&rng, 32, 1);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
    lt_tensor *x = input3(g, "hidden", B, H * W, C, 1);
    lt_tensor *y = lt_segformer_layer(g, x, &lp, &cfg);
    lt_graph_keep(g, y);
    if (plan_ok(g, pre)) {
        gen_input_scaled(x, pre, "hidden", SMALL);
        lt_params_zero_grad(&ps);
        lt_rng_seed(&rng, 32, 1);
        lt_graph_forward(g);
        /* the factors the two drop_path nodes drew, in build order */
        float factors[4] = {-1, -1, -1, -1};
        int k = 0;
        for (int i = 0; i < lt_graph_node_count(g); i++) {
            lt_node *n = lt_graph_node(g, i);
            if (strcmp(n->op->name, "drop_path") == 0 && k < 3) {
                factors[k++] = n->saved[0];
                factors[k++] = n->saved[1];
            }
        }
        CHECK_MSG(k == 4, "%d drop_path factors found, want 4", k);
        expect("sl.factors", factors, 4, 0, 0);
        expect("sl.y", y->data, y->numel, TOL, RTOL);
        backward_dy(g, y, pre);
        expect_grad(pre, "hidden", x, TOL, RTOL);
        expect_param_grads(&ps, pre, 1, TOL, RTOL);
    }
    lt_graph_destroy(g);

    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = input3(g, "hidden", B, H * W, C, 0);
    y = lt_segformer_layer(g, x, &lp, &cfg);
    lt_graph_keep(g, y);
    if (plan_ok(g, "sl eval")) {
        int dp_nodes = 0;
        for (int i = 0; i < lt_graph_node_count(g); i++)
            dp_nodes += strcmp(lt_graph_node(g, i)->op->name, "drop_path") == 0;
        CHECK_MSG(dp_nodes == 0, "eval graph has %d drop_path nodes", dp_nodes);
        gen_input_scaled(x, pre, "hidden", SMALL);
        lt_graph_forward(g);
        expect("sl.y_eval", y->data, y->numel, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

static void test_seg_patch_golden(void) {
    const char *pre = "pe";
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_patch_params pp;
    CHECK(lt_segformer_patch_declare(&ps, pre, 3, 8, 3, &pp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t s[4] = {2, 3, 7, 9};
    lt_tensor *x = lt_graph_input(g, "pixels", s, 4, 1);
    int h = 0, w = 0;
    lt_tensor *y = lt_segformer_patch_embeddings(g, x, &pp, 2, LT_SEGFORMER_LN_EPS, &h, &w);
    CHECK_MSG(h == 4 && w == 5, "patch grid %dx%d, want 4x5", h, w);
    lt_graph_keep(g, y);
    if (plan_ok(g, pre)) {
        CHECK(y->ndim == 3 && y->shape[1] == 20 && y->shape[2] == 8);
        gen_input_scaled(x, pre, "pixels", SMALL);
        lt_params_zero_grad(&ps);
        lt_graph_forward(g);
        expect("pe.y", y->data, y->numel, TOL, RTOL);
        backward_dy(g, y, pre);
        expect_grad(pre, "pixels", x, TOL, RTOL);
        expect_param_grads(&ps, pre, 1, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

/* The decode head in a training graph: batch statistics, classifier dropout 0.1 drawn as the script does. */
static void test_seg_head_golden(void) {
    const char *pre = "dh";
    const int sizes[4] = {4, 6, 8, 10}, hw[4][2] = {{6, 7}, {3, 4}, {2, 2}, {1, 1}};
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_head_params hp;
    CHECK(lt_segformer_head_declare(&ps, pre, sizes, 4, 8, 3, &hp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);
    lt_rng rng;
    lt_rng_seed(&rng, 11, 1);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
    lt_tensor *f[4];
    char name[32];
    for (int i = 0; i < 4; i++) {
        int64_t s[4] = {2, sizes[i], hw[i][0], hw[i][1]};
        snprintf(name, sizeof name, "feature%d", i);
        f[i] = lt_graph_input(g, name, s, 4, 1);
    }
    lt_tensor *y = lt_segformer_decode_head(g, f, &hp, LT_BN_TRAIN, 0.1f);
    lt_graph_keep(g, y);
    if (plan_ok(g, pre)) {
        CHECK(y->ndim == 4 && y->shape[1] == 3 && y->shape[2] == 6 && y->shape[3] == 7);
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "feature%d", i);
            gen_input(f[i], pre, name);
        }
        lt_params_zero_grad(&ps);
        lt_rng_seed(&rng, 11, 1);
        lt_graph_forward(g);
        expect("dh.y", y->data, y->numel, TOL, RTOL);
        backward_dy(g, y, pre);
        for (int i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "feature%d", i);
            expect_grad(pre, name, f[i], TOL, RTOL);
        }
        expect_param_grads(&ps, pre, 4, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

/* ================= drop_path op ================= */

static void test_drop_path_golden(void) {
    lt_rng rng;
    lt_rng_seed(&rng, 3, 1);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
    lt_tensor *x = input3(g, "x", 6, 3, 4, 1);
    lt_tensor *y = lt_drop_path(g, x, 0.4f);
    lt_graph_keep(g, y);
    if (plan_ok(g, "dp")) {
        gen_input(x, "dp", "x");
        lt_graph_forward(g);
        lt_node *n = lt_graph_node(g, lt_graph_node_count(g) - 1);
        expect("dp.factors", n->saved, 6, 0, 0);
        expect("dp.y", y->data, y->numel, 0, 1e-7);
        backward_dy(g, y, "dp");
        expect_grad("dp", "x", x, 0, 1e-7);
    }
    lt_graph_destroy(g);
}

static lt_tensor *build_drop_path(lt_graph *g, lt_tensor **in, void *ctx) {
    return lt_drop_path(g, in[0], 0.5f);
}

/* Identity in eval graphs and at p = 0 (the same tensor, no node); whole samples dropped or scaled by
 * 1 / keep in training, about a fraction keep of them kept; gradient through the same factors; errors. */
static void test_drop_path_behaviour(void) {
    lt_rng rng;
    lt_rng_seed(&rng, 77, 1);
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, &rng);
    lt_tensor *x = input3(g, "x", 4, 2, 3, 0);
    CHECK(lt_drop_path(g, x, 0.5f) == x);
    CHECK(lt_graph_node_count(g) == 0);
    lt_graph_destroy(g);

    const int64_t B = 4000, inner = 3;
    const float p = 0.25f, keep = 1.0f - p;
    g = lt_graph_create(LT_MODE_TRAIN, &rng);
    x = input3(g, "x", B, inner, 1, 1);
    CHECK(lt_drop_path(g, x, 0.0f) == x);
    lt_tensor *y = lt_drop_path(g, x, p);
    lt_graph_keep(g, y);
    if (plan_ok(g, "drop_path stats")) {
        for (int64_t i = 0; i < x->numel; i++)
            x->data[i] = (float)(i % 7) - 3.0f;
        float *dy = malloc((size_t)y->numel * sizeof *dy);
        for (int64_t i = 0; i < y->numel; i++)
            dy[i] = 1.0f + (float)(i % 5);
        lt_graph_forward(g);
        lt_graph_backward(g, y, dy);
        int64_t kept = 0, bad = 0;
        for (int64_t b = 0; b < B; b++) {
            int is_kept = 0, is_dropped = 1;
            for (int64_t i = 0; i < inner; i++)
                is_dropped &= y->data[b * inner + i] == 0.0f && x->grad[b * inner + i] == 0.0f;
            is_kept = 1;
            for (int64_t i = 0; i < inner; i++) {
                int64_t j = b * inner + i;
                is_kept &= y->data[j] == x->data[j] / keep && x->grad[j] == dy[j] / keep;
            }
            kept += is_kept && !is_dropped;
            bad += !is_kept && !is_dropped;
        }
        CHECK_MSG(bad == 0, "%lld samples neither dropped whole nor scaled by 1 / keep", (long long)bad);
        /* binomial(4000, 0.75): sd 27.4; 5 sd */
        CHECK_MSG(llabs(kept - 3000) < 137, "%lld of 4000 samples kept, want about 3000", (long long)kept);
        free(dy);
    }
    lt_graph_destroy(g);

    const float badp[3] = {1.0f, -0.1f, NAN};
    for (int i = 0; i < 3; i++) {
        g = lt_graph_create(LT_MODE_TRAIN, &rng);
        x = input3(g, "x", 2, 2, 2, 1);
        CHECK(lt_drop_path(g, x, badp[i]) == NULL);
        lt_err err = {{0}};
        CHECK(lt_graph_plan(g, &err) == LT_ERR_ARG && strstr(err.msg, "drop_path"));
        lt_graph_destroy(g);
    }
    g = lt_graph_create(LT_MODE_TRAIN, NULL);
    x = input3(g, "x", 2, 2, 2, 1);
    CHECK(lt_drop_path(g, x, 0.1f) == NULL);
    lt_graph_destroy(g);

    gc_input in[1] = {{"x", {5, 3, 2}, 3, 1, GC_NORMAL, 0, 0}};
    gradcheck("drop_path p 0.5", in, 1, build_drop_path, NULL, (gc_opts){.seed = 5});
}

/* ================= DETR golden tests ================= */

/* DetrAttention as cross-attention: 6 queries with their own positions over a 5x7 map whose keys carry a
 * position (no gradient: the sine embedding is a constant) and whose image 1 is padded. */
static void test_detr_attention_golden(void) {
    const char *pre = "da";
    const int B = 2, TQ = 6, H = 5, W = 7, C = 16, valid[2][2] = {{5, 7}, {4, 5}};
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_detr_encoder_layer_params ep;
    CHECK(lt_detr_encoder_layer_declare(&ps, pre, C, C, &ep, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    lt_tensor *hq = input3(g, "hidden_q", B, TQ, C, 1), *pq = input3(g, "pos_q", B, TQ, C, 1);
    lt_tensor *hkv = input3(g, "hidden_kv", B, H * W, C, 1), *pk = input3(g, "pos_k", B, H * W, C, 0);
    int64_t ms[2] = {B, H * W};
    lt_tensor *mask = lt_graph_input(g, "mask", ms, 2, 0);
    lt_tensor *y = lt_detr_attention(g, hq, pq, hkv, pk, mask, 4, &ep.self_attn);
    lt_graph_keep(g, y);
    if (plan_ok(g, pre)) {
        gen_input(hq, pre, "hidden_q");
        gen_input(pq, pre, "pos_q");
        gen_input(hkv, pre, "hidden_kv");
        gen_input(pk, pre, "pos_k");
        float pm[2 * 5 * 7];
        pixel_mask(pm, B, H, W, valid);
        lt_detr_key_padding_mask(mask->data, pm, B * H * W);
        lt_params_zero_grad(&ps);
        lt_graph_forward(g);
        expect("da.y", y->data, y->numel, TOL, RTOL);
        backward_dy(g, y, pre);
        expect_grad(pre, "hidden_q", hq, TOL, RTOL);
        expect_grad(pre, "pos_q", pq, TOL, RTOL);
        expect_grad(pre, "hidden_kv", hkv, TOL, RTOL);
        expect_param_grads(&ps, pre, 3, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

/* Builds an encoder (decoder 0) or decoder (1) layer graph on the golden case's inputs and runs it; training
 * graphs reseed rng with seed first so dropout draws what the script drew. Returns the output (kept). */
typedef struct {
    lt_tensor *hidden, *query_pos, *memory, *pos, *mask, *y;
} detr_case;

static int detr_build(lt_graph *g, detr_case *c, int decoder, const void *params,
                      const lt_detr_layer_cfg *cfg, int B, int Q, int H, int W, int C, int grad) {
    memset(c, 0, sizeof *c);
    int64_t ms[2] = {B, (int64_t)H * W}, qs[2] = {Q, C};
    c->pos = input3(g, "pos", B, H * W, C, 0);
    c->mask = lt_graph_input(g, "mask", ms, 2, 0);
    if (!decoder) {
        c->hidden = input3(g, "hidden", B, H * W, C, grad);
        c->y = lt_detr_encoder_layer(g, c->hidden, c->pos, c->mask, params, cfg);
    } else {
        c->hidden = input3(g, "hidden", B, Q, C, grad);
        c->query_pos = lt_graph_input(g, "query_pos", qs, 2, grad);
        c->memory = input3(g, "memory", B, H * W, C, grad);
        c->y = lt_detr_decoder_layer(g, c->hidden, c->query_pos, c->memory, c->pos, c->mask, params, cfg);
    }
    lt_graph_keep(g, c->y);
    return plan_ok(g, decoder ? "detr decoder" : "detr encoder");
}

static void detr_fill(detr_case *c, const char *pre, int B, int H, int W, int C, const int (*valid)[2]) {
    float *pm = malloc((size_t)B * H * W * sizeof *pm);
    pixel_mask(pm, B, H, W, valid);
    lt_err err = {{0}};
    CHECK(lt_detr_sine_position_embedding(c->pos->data, pm, B, H, W, C / 2, 10000.0f, &err) == LT_OK);
    lt_detr_key_padding_mask(c->mask->data, pm, (int64_t)B * H * W);
    free(pm);
    gen_input(c->hidden, pre, "hidden");
    if (c->query_pos) gen_input(c->query_pos, pre, "query_pos");
    if (c->memory) gen_input(c->memory, pre, "memory");
}

static void test_detr_layer_golden(int decoder) {
    const char *pre = decoder ? "dd" : "de";
    const int B = 2, Q = 6, H = 3, W = 5, C = 16, F = 16;
    const int valid_enc[2][2] = {{3, 5}, {2, 4}}, valid_dec[2][2] = {{3, 5}, {3, 3}};
    const int(*valid)[2] = decoder ? valid_dec : valid_enc;
    const uint64_t seed = decoder ? 23 : 21;
    lt_detr_layer_cfg cfg = {4, 0.1f, decoder ? 0.0f : 0.2f, LT_DETR_LN_EPS};
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_detr_encoder_layer_params ep;
    lt_detr_decoder_layer_params dp;
    const void *params = decoder ? (const void *)&dp : (const void *)&ep;
    if (decoder)
        CHECK(lt_detr_decoder_layer_declare(&ps, pre, C, F, &dp, &err) == LT_OK);
    else
        CHECK(lt_detr_encoder_layer_declare(&ps, pre, C, F, &ep, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);

    lt_rng rng;
    lt_rng_seed(&rng, seed, 1);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
    detr_case c;
    char n[96];
    if (detr_build(g, &c, decoder, params, &cfg, B, Q, H, W, C, 1)) {
        detr_fill(&c, pre, B, H, W, C, valid);
        lt_params_zero_grad(&ps);
        lt_rng_seed(&rng, seed, 1);
        lt_graph_forward(g);
        snprintf(n, sizeof n, "%s.y", pre);
        expect(n, c.y->data, c.y->numel, TOL, RTOL);
        backward_dy(g, c.y, pre);
        expect_grad(pre, "hidden", c.hidden, TOL, RTOL);
        if (decoder) {
            expect_grad(pre, "query_pos", c.query_pos, TOL, RTOL);
            expect_grad(pre, "memory", c.memory, TOL, RTOL);
        }
        expect_param_grads(&ps, pre, decoder ? 3 : 1, TOL, RTOL);
    }
    lt_graph_destroy(g);

    /* eval: no dropout node at all, and transformers' eval output */
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    if (detr_build(g, &c, decoder, params, &cfg, B, Q, H, W, C, 0)) {
        int drops = 0;
        for (int i = 0; i < lt_graph_node_count(g); i++)
            drops += strcmp(lt_graph_node(g, i)->op->name, "dropout") == 0;
        CHECK_MSG(drops == 0, "%s eval graph has %d dropout nodes", pre, drops);
        detr_fill(&c, pre, B, H, W, C, valid);
        lt_graph_forward(g);
        snprintf(n, sizeof n, "%s.y_eval", pre);
        expect(n, c.y->data, c.y->numel, TOL, RTOL);
    }
    lt_graph_destroy(g);
    lt_params_free(&ps);
}

static void test_sine_and_masks_golden(void) {
    const int sv[2][2] = {{3, 5}, {2, 3}};
    float pm[2 * 3 * 5], pos[2 * 15 * 16];
    pixel_mask(pm, 2, 3, 5, sv);
    lt_err err = {{0}};
    CHECK(lt_detr_sine_position_embedding(pos, pm, 2, 3, 5, 8, 10000.0f, &err) == LT_OK);
    expect("sine.pos", pos, 2 * 15 * 16, 2e-6, 0);
    CHECK(lt_detr_sine_position_embedding(pos, pm, 2, 3, 5, 7, 10000.0f, &err) == LT_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "even"), "message: %s", err.msg);

    const int nv[2][2] = {{13, 17}, {9, 11}}, sizes[4][2] = {{4, 6}, {26, 34}, {13, 17}, {5, 3}};
    float *m = malloc(2 * 13 * 17 * sizeof *m), *o = malloc(2 * 26 * 34 * sizeof *o);
    pixel_mask(m, 2, 13, 17, nv);
    for (int i = 0; i < 4; i++) {
        char n[64];
        snprintf(n, sizeof n, "nearest.%dx%d", sizes[i][0], sizes[i][1]);
        lt_detr_mask_nearest(o, m, 2, 13, 17, sizes[i][0], sizes[i][1]);
        expect(n, o, 2 * sizes[i][0] * sizes[i][1], 0, 0);
    }
    free(m);
    free(o);

    float km[4], src[4] = {1, 0, 1, 0};
    lt_detr_key_padding_mask(km, src, 4);
    CHECK(km[0] == 0.0f && km[2] == 0.0f && km[1] == -FLT_MAX && km[3] == -FLT_MAX);
}

/* ================= finite differences ================= */

/* A block under gradcheck: its weights live in a store with fixed values, except the fields listed in
 * slot (byte offsets into the params struct), which become graph inputs after the data inputs so that their
 * gradients are checked as well. gradcheck takes 8 inputs at most, so the weights go in turns. */
typedef enum {
    BLK_SEG_ATTN,
    BLK_SEG_FFN,
    BLK_SEG_LAYER,
    BLK_SEG_PATCH,
    BLK_SEG_HEAD,
    BLK_DETR_ATTN,
    BLK_DETR_ENC,
    BLK_DETR_DEC
} blk_kind;

typedef union {
    lt_segformer_attention_params seg_attn;
    lt_segformer_ffn_params seg_ffn;
    lt_segformer_layer_params seg_layer;
    lt_segformer_patch_params seg_patch;
    lt_segformer_head_params seg_head;
    lt_detr_attention_params detr_attn;
    lt_detr_encoder_layer_params detr_enc;
    lt_detr_decoder_layer_params detr_dec;
} blk_params;

typedef struct {
    blk_kind kind;
    blk_params p;       /* pointing into the store */
    const size_t *slot; /* this turn's fields replaced by inputs n_data.. */
    int n_data, n_slot;
    lt_segformer_layer_cfg seg; /* SegFormer blocks */
    lt_detr_layer_cfg detr;     /* DETR blocks */
} blk_ctx;

static lt_tensor *build_block(lt_graph *g, lt_tensor **in, void *vctx) {
    blk_ctx *c = vctx;
    blk_params p = c->p;
    for (int i = 0; i < c->n_slot; i++)
        *(lt_tensor **)((char *)&p + c->slot[i]) = in[c->n_data + i];
    switch (c->kind) {
    case BLK_SEG_ATTN:
        return lt_segformer_efficient_attention(g, in[0], &p.seg_attn, &c->seg);
    case BLK_SEG_FFN:
        return lt_segformer_mix_ffn(g, in[0], &p.seg_ffn, &c->seg);
    case BLK_SEG_LAYER:
        return lt_segformer_layer(g, in[0], &p.seg_layer, &c->seg);
    case BLK_SEG_PATCH:
        return lt_segformer_patch_embeddings(g, in[0], &p.seg_patch, 2, c->seg.eps, NULL, NULL);
    case BLK_SEG_HEAD:
        return lt_segformer_decode_head(g, in, &p.seg_head, LT_BN_TRAIN, 0.2f);
    case BLK_DETR_ATTN:
        return lt_detr_attention(g, in[0], in[1], in[2], in[3], in[4], c->detr.heads, &p.detr_attn);
    case BLK_DETR_ENC:
        return lt_detr_encoder_layer(g, in[0], in[1], in[2], &p.detr_enc, &c->detr);
    case BLK_DETR_DEC:
        return lt_detr_decoder_layer(g, in[0], in[1], in[2], in[3], in[4], &p.detr_dec, &c->detr);
    }
    return NULL;
}

/* the last data input of the DETR blocks is an additive key mask: drop the last two keys of image 1 */
static void fix_mask(lt_tensor **in, int n_in, void *vctx) {
    blk_ctx *c = vctx;
    if (c->kind < BLK_DETR_ATTN) return;
    lt_tensor *m = in[c->n_data - 1];
    int64_t TK = m->shape[1];
    for (int64_t j = 0; j < m->numel; j++)
        m->data[j] = j >= 2 * TK - 2 ? -FLT_MAX : 0.0f;
}

/* Runs gradcheck over the data inputs plus each turn of weights from fields (NULL fields are skipped).
 * Step 3e-3 rather than 1e-2: layer and batch norms couple every position, so one probed element moves all
 * pre-activations of the ReLUs after them (decode head, DETR FFN) and a 1e-2 step pushes some across the
 * kink; the gradients then agree at 3e-3 and 1e-3 alike. */
static void gradcheck_block(const char *label, blk_ctx *c, const gc_input *data, int n_data,
                            const size_t *fields, int n_fields, uint64_t seed) {
    size_t live[32];
    int n_live = 0;
    for (int i = 0; i < n_fields && n_live < 32; i++)
        if (*(lt_tensor **)((char *)&c->p + fields[i])) live[n_live++] = fields[i];
    const int per_turn = 8 - n_data;
    c->n_data = n_data;
    for (int start = 0; start < n_live || start == 0; start += per_turn) {
        gc_input ins[8];
        memcpy(ins, data, (size_t)n_data * sizeof *ins);
        c->slot = live + start;
        c->n_slot = n_live - start < per_turn ? n_live - start : per_turn;
        for (int i = 0; i < c->n_slot; i++) {
            const lt_tensor *t = *(lt_tensor **)((char *)&c->p + c->slot[i]);
            gc_input *d = &ins[n_data + i];
            memset(d, 0, sizeof *d);
            d->name = t->name;
            memcpy(d->shape, t->shape, sizeof d->shape);
            d->ndim = t->ndim;
            d->requires_grad = 1;
            d->fill = GC_NORMAL;
            int norm_w = t->ndim == 1 && strstr(t->name, "norm") && strstr(t->name, ".weight");
            d->lo = norm_w ? 1.0f : 0.0f; /* offset */
            d->hi = t->ndim == 1 ? 0.2f : 0.5f;
        }
        char l[160];
        snprintf(l, sizeof l, "%s (weights %d..%d)", label, start, start + c->n_slot - 1);
        gradcheck_fix(l, ins, n_data + c->n_slot, build_block, fix_mask, c,
                      (gc_opts){.seed = seed + (uint64_t)start, .eps = 3e-3});
        if (n_live == 0) break;
    }
}

#define OFF(type, member) offsetof(type, member)

static const size_t seg_attn_fields[] = {
    OFF(lt_segformer_attention_params, query_w), OFF(lt_segformer_attention_params, query_b),
    OFF(lt_segformer_attention_params, key_w),   OFF(lt_segformer_attention_params, key_b),
    OFF(lt_segformer_attention_params, value_w), OFF(lt_segformer_attention_params, value_b),
    OFF(lt_segformer_attention_params, sr_w),    OFF(lt_segformer_attention_params, sr_b),
    OFF(lt_segformer_attention_params, ln_w),    OFF(lt_segformer_attention_params, ln_b),
    OFF(lt_segformer_attention_params, dense_w), OFF(lt_segformer_attention_params, dense_b)};
static const size_t seg_ffn_fields[] = {
    OFF(lt_segformer_ffn_params, dense1_w), OFF(lt_segformer_ffn_params, dense1_b),
    OFF(lt_segformer_ffn_params, dwconv_w), OFF(lt_segformer_ffn_params, dwconv_b),
    OFF(lt_segformer_ffn_params, dense2_w), OFF(lt_segformer_ffn_params, dense2_b)};
static const size_t seg_patch_fields[] = {
    OFF(lt_segformer_patch_params, proj_w), OFF(lt_segformer_patch_params, proj_b),
    OFF(lt_segformer_patch_params, ln_w), OFF(lt_segformer_patch_params, ln_b)};
static const size_t seg_head_fields[] = {
    OFF(lt_segformer_head_params, proj_w[0]), OFF(lt_segformer_head_params, proj_b[0]),
    OFF(lt_segformer_head_params, proj_w[1]), OFF(lt_segformer_head_params, proj_b[1]),
    OFF(lt_segformer_head_params, proj_w[2]), OFF(lt_segformer_head_params, proj_b[2]),
    OFF(lt_segformer_head_params, fuse_w),    OFF(lt_segformer_head_params, bn_w),
    OFF(lt_segformer_head_params, bn_b),      OFF(lt_segformer_head_params, cls_w),
    OFF(lt_segformer_head_params, cls_b)};
static const size_t detr_attn_fields[] = {
    OFF(lt_detr_attention_params, q_w),   OFF(lt_detr_attention_params, q_b),
    OFF(lt_detr_attention_params, k_w),   OFF(lt_detr_attention_params, k_b),
    OFF(lt_detr_attention_params, v_w),   OFF(lt_detr_attention_params, v_b),
    OFF(lt_detr_attention_params, out_w), OFF(lt_detr_attention_params, out_b)};

/* fields of a nested struct at base, followed by extra fields */
static int nest(size_t *dst, int n, size_t base, const size_t *fields, int n_fields) {
    for (int i = 0; i < n_fields; i++)
        dst[n++] = base + fields[i];
    return n;
}

#define NFIELDS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static void test_seg_gradients(void) {
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_layer_params l2, l1;
    lt_segformer_patch_params pp;
    lt_segformer_head_params hp;
    const int hs[3] = {2, 3, 4};
    CHECK(lt_segformer_layer_declare(&ps, "g2", 4, 8, 2, &l2, &err) == LT_OK);
    CHECK(lt_segformer_layer_declare(&ps, "g1", 4, 8, 1, &l1, &err) == LT_OK);
    CHECK(lt_segformer_patch_declare(&ps, "gp", 2, 4, 3, &pp, &err) == LT_OK);
    CHECK(lt_segformer_head_declare(&ps, "gh", hs, 3, 4, 2, &hp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);

    blk_ctx c = {.seg = {4, 5, 2, 2, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS}};
    gc_input x45[1] = {{"hidden", {2, 20, 4}, 3, 1, GC_NORMAL, 0, 0}};
    c.kind = BLK_SEG_ATTN;
    c.p.seg_attn = l2.attn;
    gradcheck_block("segformer attention sr 2", &c, x45, 1, seg_attn_fields, NFIELDS(seg_attn_fields), 100);
    c.p.seg_attn = l1.attn;
    c.seg = (lt_segformer_layer_cfg){3, 3, 2, 1, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS};
    gc_input x33[1] = {{"hidden", {2, 9, 4}, 3, 1, GC_NORMAL, 0, 0}};
    gradcheck_block("segformer attention sr 1", &c, x33, 1, seg_attn_fields, NFIELDS(seg_attn_fields), 110);

    c.kind = BLK_SEG_FFN;
    c.p.seg_ffn = l1.ffn;
    c.seg = (lt_segformer_layer_cfg){3, 4, 2, 1, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS};
    gc_input x34[1] = {{"hidden", {2, 12, 4}, 3, 1, GC_NORMAL, 0, 0}};
    gradcheck_block("segformer mix_ffn", &c, x34, 1, seg_ffn_fields, NFIELDS(seg_ffn_fields), 120);

    /* the whole layer in training: drop_path 0.5 and hidden dropout 0.1, masks repeated by gradcheck */
    size_t layer_fields[24];
    int nl = 0;
    layer_fields[nl++] = OFF(lt_segformer_layer_params, ln1_w);
    layer_fields[nl++] = OFF(lt_segformer_layer_params, ln1_b);
    layer_fields[nl++] = OFF(lt_segformer_layer_params, ln2_w);
    layer_fields[nl++] = OFF(lt_segformer_layer_params, ln2_b);
    nl = nest(layer_fields, nl, OFF(lt_segformer_layer_params, attn), seg_attn_fields,
              NFIELDS(seg_attn_fields));
    nl = nest(layer_fields, nl, OFF(lt_segformer_layer_params, ffn), seg_ffn_fields, NFIELDS(seg_ffn_fields));
    c.kind = BLK_SEG_LAYER;
    c.p.seg_layer = l2;
    c.seg = (lt_segformer_layer_cfg){4, 5, 2, 2, 0.5f, 0.1f, LT_SEGFORMER_LN_EPS};
    gc_input x4x[1] = {{"hidden", {4, 20, 4}, 3, 1, GC_NORMAL, 0, 0}};
    gradcheck_block("segformer layer (train)", &c, x4x, 1, layer_fields, nl, 130);

    c.kind = BLK_SEG_PATCH;
    c.p.seg_patch = pp;
    gc_input px[1] = {{"pixels", {2, 2, 5, 6}, 4, 1, GC_NORMAL, 0, 0}};
    gradcheck_block("segformer patch embeddings", &c, px, 1, seg_patch_fields, NFIELDS(seg_patch_fields),
                    140);

    c.kind = BLK_SEG_HEAD;
    c.p.seg_head = hp;
    gc_input fx[3] = {{"feature0", {2, 2, 4, 5}, 4, 1, GC_NORMAL, 0, 0},
                      {"feature1", {2, 3, 2, 3}, 4, 1, GC_NORMAL, 0, 0},
                      {"feature2", {2, 4, 1, 2}, 4, 1, GC_NORMAL, 0, 0}};
    gradcheck_block("segformer decode head (train)", &c, fx, 3, seg_head_fields, NFIELDS(seg_head_fields),
                    150);
    lt_params_free(&ps);
}

static void test_detr_gradients(void) {
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_detr_encoder_layer_params ep;
    lt_detr_decoder_layer_params dp;
    CHECK(lt_detr_encoder_layer_declare(&ps, "ge", 8, 6, &ep, &err) == LT_OK);
    CHECK(lt_detr_decoder_layer_declare(&ps, "gd", 8, 6, &dp, &err) == LT_OK);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);
    fill_store(&ps);

    blk_ctx c = {.kind = BLK_DETR_ATTN, .detr = {2, 0.1f, 0.1f, LT_DETR_LN_EPS}};
    c.p.detr_attn = dp.encoder_attn;
    gc_input ai[5] = {{"hidden_q", {2, 3, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"pos_q", {3, 8}, 2, 1, GC_NORMAL, 0, 0},
                      {"hidden_kv", {2, 5, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"pos_k", {2, 5, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"mask", {2, 5}, 2, 0, GC_CONST, 0, 0}};
    gradcheck_block("detr attention", &c, ai, 5, detr_attn_fields, NFIELDS(detr_attn_fields), 200);

    size_t enc_fields[16];
    int ne = nest(enc_fields, 0, OFF(lt_detr_encoder_layer_params, self_attn), detr_attn_fields, 8);
    const size_t enc_rest[8] = {
        OFF(lt_detr_encoder_layer_params, self_ln_w),  OFF(lt_detr_encoder_layer_params, self_ln_b),
        OFF(lt_detr_encoder_layer_params, fc1_w),      OFF(lt_detr_encoder_layer_params, fc1_b),
        OFF(lt_detr_encoder_layer_params, fc2_w),      OFF(lt_detr_encoder_layer_params, fc2_b),
        OFF(lt_detr_encoder_layer_params, final_ln_w), OFF(lt_detr_encoder_layer_params, final_ln_b)};
    ne = nest(enc_fields, ne, 0, enc_rest, 8);
    c.kind = BLK_DETR_ENC;
    c.p.detr_enc = ep;
    gc_input ei[3] = {{"hidden", {2, 5, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"pos", {2, 5, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"mask", {2, 5}, 2, 0, GC_CONST, 0, 0}};
    gradcheck_block("detr encoder layer (train)", &c, ei, 3, enc_fields, ne, 210);

    size_t dec_fields[26];
    int nd = nest(dec_fields, 0, OFF(lt_detr_decoder_layer_params, self_attn), detr_attn_fields, 8);
    nd = nest(dec_fields, nd, OFF(lt_detr_decoder_layer_params, encoder_attn), detr_attn_fields, 8);
    const size_t dec_rest[10] = {
        OFF(lt_detr_decoder_layer_params, self_ln_w),  OFF(lt_detr_decoder_layer_params, self_ln_b),
        OFF(lt_detr_decoder_layer_params, enc_ln_w),   OFF(lt_detr_decoder_layer_params, enc_ln_b),
        OFF(lt_detr_decoder_layer_params, fc1_w),      OFF(lt_detr_decoder_layer_params, fc1_b),
        OFF(lt_detr_decoder_layer_params, fc2_w),      OFF(lt_detr_decoder_layer_params, fc2_b),
        OFF(lt_detr_decoder_layer_params, final_ln_w), OFF(lt_detr_decoder_layer_params, final_ln_b)};
    nd = nest(dec_fields, nd, 0, dec_rest, 10);
    c.kind = BLK_DETR_DEC;
    c.p.detr_dec = dp;
    gc_input di[5] = {{"hidden", {2, 3, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"query_pos", {3, 8}, 2, 1, GC_NORMAL, 0, 0},
                      {"memory", {2, 5, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"pos", {2, 5, 8}, 3, 1, GC_NORMAL, 0, 0},
                      {"mask", {2, 5}, 2, 0, GC_CONST, 0, 0}};
    gradcheck_block("detr decoder layer (train)", &c, di, 5, dec_fields, nd, 220);
    lt_params_free(&ps);
}

/* ================= build errors ================= */

static void expect_build_error(lt_graph *g, lt_tensor *y, lt_status want, const char *a, const char *b) {
    CHECK(y == NULL);
    lt_err err = {{0}};
    CHECK(lt_graph_plan(g, &err) == want);
    CHECK_MSG(strstr(err.msg, a) && (!b || strstr(err.msg, b)), "message: %s", err.msg);
    lt_graph_destroy(g);
}

static void test_errors(void) {
    lt_params ps;
    lt_params_init(&ps);
    lt_err err = {{0}};
    lt_segformer_layer_params l2, l1;
    lt_detr_encoder_layer_params ep;
    CHECK(lt_segformer_layer_declare(&ps, "e2", 4, 8, 2, &l2, &err) == LT_OK);
    CHECK(lt_segformer_layer_declare(&ps, "e1", 4, 8, 1, &l1, &err) == LT_OK);
    CHECK(lt_detr_encoder_layer_declare(&ps, "ee", 4, 8, &ep, &err) == LT_OK);
    /* a second declaration under the same prefix collides */
    lt_segformer_layer_params dup;
    CHECK(lt_segformer_layer_declare(&ps, "e2", 4, 8, 2, &dup, &err) != LT_OK);
    CHECK_MSG(strstr(err.msg, "e2.layer_norm_1.weight"), "message: %s", err.msg);
    CHECK(lt_params_alloc(&ps, &err) == LT_OK);

    lt_segformer_layer_cfg cfg = {4, 5, 2, 2, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS};
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *x = input3(g, "x", 2, 19, 4, 0);
    expect_build_error(g, lt_segformer_efficient_attention(g, x, &l2.attn, &cfg), LT_ERR_SHAPE,
                       "segformer attention", "(2, 19, 4)");
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = input3(g, "x", 2, 20, 4, 0);
    expect_build_error(g, lt_segformer_efficient_attention(g, x, &l1.attn, &cfg), LT_ERR_ARG, "sr_ratio 2",
                       NULL);
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = input3(g, "x", 2, 20, 4, 0);
    cfg.heads = 3;
    expect_build_error(g, lt_segformer_layer(g, x, &l2, &cfg), LT_ERR_SHAPE, "heads", NULL);
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = input3(g, "x", 2, 20, 4, 0);
    cfg = (lt_segformer_layer_cfg){4, 5, 2, 5, 0.0f, 0.0f, LT_SEGFORMER_LN_EPS};
    expect_build_error(g, lt_segformer_efficient_attention(g, x, &l2.attn, &cfg), LT_ERR_ARG, "sr_ratio 5",
                       NULL);
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    x = input3(g, "x", 2, 20, 4, 0);
    cfg.sr_ratio = 1;
    expect_build_error(
        g, lt_segformer_mix_ffn(g, x, &l2.ffn, &(lt_segformer_layer_cfg){5, 5, 2, 1, 0, 0, 1e-5f}),
        LT_ERR_SHAPE, "mix_ffn", "height 5");

    g = lt_graph_create(LT_MODE_EVAL, NULL);
    lt_tensor *q = input3(g, "q", 2, 3, 4, 0), *kv = input3(g, "kv", 2, 5, 6, 0);
    expect_build_error(g, lt_detr_attention(g, q, NULL, kv, NULL, NULL, 2, &ep.self_attn), LT_ERR_SHAPE,
                       "detr attention", "(2, 5, 6)");
    g = lt_graph_create(LT_MODE_EVAL, NULL);
    q = input3(g, "q", 2, 3, 4, 0);
    lt_tensor *pos = input3(g, "pos", 2, 4, 4, 0);
    lt_detr_layer_cfg dc = {2, 0.1f, 0.0f, LT_DETR_LN_EPS};
    expect_build_error(g, lt_detr_encoder_layer(g, q, pos, NULL, &ep, &dc), LT_ERR_SHAPE, "add", NULL);
    lt_params_free(&ps);
}

int main(void) {
    if (golden_load(&gf, "blocks.txt") == 0) {
        test_seg_attention_golden("sa2", 2, 5, 7, 16, 2, 2);
        test_seg_attention_golden("sa1", 2, 3, 5, 8, 2, 1);
        test_seg_ffn_golden();
        test_seg_layer_golden();
        test_seg_patch_golden();
        test_seg_head_golden();
        test_drop_path_golden();
        test_detr_attention_golden();
        test_detr_layer_golden(0);
        test_detr_layer_golden(1);
        test_sine_and_masks_golden();
    } else {
        CHECK_MSG(0, "blocks.txt golden file missing");
    }
    golden_free(&gf);
    test_drop_path_behaviour();
    test_seg_gradients();
    test_detr_gradients();
    test_errors();
    return check_summary("test_blocks");
}
