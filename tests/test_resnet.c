/* Whole ResNet-50 forward + backward (train-mode batch norm) against PyTorch: tools/golden/resnet.py builds
 * the same network with transformers' parameter names, from the same closed-form weights. */
#include "check.h"
#include "golden.h"
#include "models/resnet.h"
#include "ops/ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static uint32_t fnv1a(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* tools/golden/resnet.py's unit(): an integer hash mapped to mean 0, variance 1. */
static double unit(uint32_t i, uint32_t seed) {
    uint32_t h = i * 0x9E3779B1u + seed;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return (2.0 * ((double)h / 4294967296.0) - 1.0) * 1.7320508075688772;
}

/* The formula of tools/golden/resnet.py's fill(). */
static void fill(lt_tensor *t, const char *name) {
    uint32_t seed = fnv1a(name);
    int64_t fan_in = 1;
    for (int i = 1; i < t->ndim; i++) fan_in *= t->shape[i];
    const char *kind = "bn_b";
    if (strstr(name, "convolution.weight") || strstr(name, "classifier.1.weight")) kind = "conv";
    else if (strstr(name, "normalization.weight")) kind = "bn_w";
    else if (strstr(name, "running_var")) kind = "var";
    for (int64_t i = 0; i < t->numel; i++) {
        double v = unit((uint32_t)i, seed);
        if (!strcmp(kind, "conv")) v *= sqrt(2.0 / (double)fan_in);
        else if (!strcmp(kind, "bn_w")) v = 1.0 + 0.1 * v;
        else if (!strcmp(kind, "var")) v = 1.0 + 0.5 * fabs(v);
        else v = 0.1 * v;
        t->data[i] = (float)v;
    }
}

/* |got - want| <= tol * max(|want|, scale), scale being the tensor's RMS gradient. */
static void check_rel(const char *what, const float *got, const float *want, int64_t n, double scale, double tol) {
    check_close_array(what, got, want, n, tol * scale, tol, __FILE__, __LINE__);
}

/* Forward + backward of ResNet-50 with batch norm in bn_mode, compared with the float64 reference in
 * golden_name. Values and eval-mode gradients must agree to 1e-4 (relative to each tensor's scale);
 * training-mode gradients to grad_tol (see tools/golden/resnet.py for why they are looser). */
static void check_network(const char *golden_name, lt_bn_mode bn_mode, int size, double grad_tol) {
    golden_file gf;
    if (golden_load(&gf, golden_name) != 0) {
        CHECK_MSG(0, "cannot load %s", golden_name);
        return;
    }
    lt_params p;
    lt_params_init(&p);
    lt_resnet m;
    lt_err err = {{0}};
    lt_resnet_config cfg = lt_resnet50_config(10);
    CHECK(lt_resnet_declare(&m, &cfg, &p, &err) == LT_OK);
    CHECK(lt_params_alloc(&p, &err) == LT_OK);
    CHECK_MSG(p.trainable_numel == 23528522, "ResNet-50 with 10 labels has 23,528,522 trainable parameters, got %lld",
              (long long)p.trainable_numel);
    for (int i = 0; i < p.n; i++) fill(p.tensors[i], p.tensors[i]->name);

    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, NULL);
    int64_t xs[4] = {2, 3, size, size}, ls[1] = {2};
    lt_tensor *x = lt_graph_input(g, "pixel_values", xs, 4, 0);
    lt_tensor *labels = lt_graph_input(g, "labels", ls, 1, 0);
    lt_tensor *logits = lt_resnet_forward(&m, g, x, bn_mode, NULL);
    lt_tensor *loss = lt_cross_entropy(g, logits, labels, NULL, -100);
    lt_graph_keep(g, logits);
    lt_graph_keep(g, loss);
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (check_failed) return;
    fill(x, "pixel_values");
    for (int64_t i = 0; i < x->numel; i++) x->data[i] *= 10.0f;
    labels->data[0] = 0;
    labels->data[1] = 1;
    lt_params_zero_grad(&p);
    lt_graph_forward(g);
    lt_graph_backward(g, loss, NULL);

    golden_tensor *gl = golden_get(&gf, "logits"), *gloss = golden_get(&gf, "loss");
    CHECK(gl && gloss);
    if (gl) check_rel("logits", logits->data, gl->data, gl->numel, 1.0, 1e-4);
    if (gloss) check_rel("loss", loss->data, gloss->data, 1, 1.0, 1e-4);
    int checked = 0;
    for (int i = 0; i < gf.n; i++) {
        golden_tensor *t = &gf.t[i];
        const char *colon = strchr(t->name, ':');
        if (!colon) continue;
        lt_tensor *pt = lt_params_find(&p, colon + 1);
        CHECK_MSG(pt != NULL, "golden tensor %s has no parameter", t->name);
        if (!pt) continue;
        checked++;
        double n2 = 0, s = 0;
        if (pt->grad)
            for (int64_t j = 0; j < pt->numel; j++) s += pt->grad[j], n2 += (double)pt->grad[j] * pt->grad[j];
        double rms = sqrt(n2 / (double)pt->numel);
        if (!strncmp(t->name, "grad:", 5) && bn_mode == LT_BN_TRAIN) {
            double d2 = 0, w2 = 0;
            for (int64_t j = 0; j < t->numel; j++) {
                d2 += ((double)pt->grad[j] - t->data[j]) * ((double)pt->grad[j] - t->data[j]);
                w2 += (double)t->data[j] * t->data[j];
            }
            CHECK_MSG(sqrt(d2) <= grad_tol * sqrt(w2), "%s: relative L2 error %.3g", t->name, sqrt(d2 / w2));
        } else if (!strncmp(t->name, "grad:", 5)) {
            check_rel(t->name, pt->grad, t->data, t->numel, rms, grad_tol);
        } else if (!strncmp(t->name, "buf:", 4)) {
            check_rel(t->name, pt->data, t->data, t->numel, 1.0, 1e-4);
        } else if (!strncmp(t->name, "gnorm:", 6)) {
            CHECK_NEAR(sqrt(n2), t->data[0], 0, grad_tol);
        } else if (bn_mode == LT_BN_TRAIN) {
            continue; /* sums and single elements of ill-conditioned gradients: the norms above suffice */
        } else if (!strncmp(t->name, "gsum:", 5)) {
            CHECK_NEAR(s, t->data[0], grad_tol * sqrt(n2), grad_tol);
        } else if (!strncmp(t->name, "gsample:", 8)) {
            float got[16];
            for (int j = 0; j < 16; j++) got[j] = pt->grad[((int64_t)j * 7919 + 13) % pt->numel];
            check_rel(t->name, got, t->data, 16, rms, grad_tol);
        }
    }
    CHECK_MSG(checked >= 53 * 3 + 2, "only %d golden entries matched parameters", checked);
    printf("%s: arena %.1f MiB, scratch %.1f MiB\n", golden_name, lt_graph_arena_bytes(g) / 1048576.0,
           lt_graph_scratch_bytes(g) / 1048576.0);
    lt_graph_destroy(g);
    lt_params_free(&p);
    golden_free(&gf);
}

/* The same eval-mode network in an inference graph (LT_MODE_EVAL), where each convolution, its batch norm,
 * the residual add and the ReLU run as one fused node: its logits against the same golden values. */
static void check_inference_graph(void) {
    golden_file gf;
    if (golden_load(&gf, "resnet50_eval.txt") != 0) {
        CHECK_MSG(0, "cannot load resnet50_eval.txt");
        return;
    }
    lt_params p;
    lt_params_init(&p);
    lt_resnet m;
    lt_err err = {{0}};
    lt_resnet_config cfg = lt_resnet50_config(10);
    CHECK(lt_resnet_declare(&m, &cfg, &p, &err) == LT_OK);
    CHECK(lt_params_alloc(&p, &err) == LT_OK);
    lt_graph *g = lt_graph_create(LT_MODE_EVAL, NULL);
    int64_t xs[4] = {2, 3, 64, 64};
    lt_tensor *x = lt_graph_input(g, "pixel_values", xs, 4, 0);
    lt_tensor *logits = lt_resnet_forward(&m, g, x, LT_BN_EVAL, NULL);
    lt_graph_keep(g, logits);
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (check_failed) return;
    int fused = 0;
    for (int i = 0; i < lt_graph_node_count(g); i++) fused += !strcmp(lt_graph_node(g, i)->op->name, "conv2d_bn");
    CHECK_MSG(fused == 53, "53 fused convolutions, got %d", fused);
    /* parameters are filled after planning: the fused nodes read them at every forward */
    for (int i = 0; i < p.n; i++) fill(p.tensors[i], p.tensors[i]->name);
    fill(x, "pixel_values");
    for (int64_t i = 0; i < x->numel; i++) x->data[i] *= 10.0f;
    lt_graph_forward(g);
    golden_tensor *gl = golden_get(&gf, "logits");
    CHECK(gl != NULL);
    if (gl) check_rel("inference-graph logits", logits->data, gl->data, gl->numel, 1.0, 1e-4);
    lt_graph_destroy(g);
    lt_params_free(&p);
    golden_free(&gf);
}

int main(void) {
    check_network("resnet50_eval.txt", LT_BN_EVAL, 64, 1e-4);
    check_inference_graph();
    check_network("resnet50_train.txt", LT_BN_TRAIN, 96, 5e-2);
    return check_summary("test_resnet");
}
