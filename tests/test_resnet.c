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

/* The formula of tools/golden/resnet.py's fill(). */
static void fill(lt_tensor *t, const char *name) {
    double phase = (double)(fnv1a(name) % 1000) / 1000.0 * 6.283185307179586;
    int64_t fan_in = 1;
    for (int i = 1; i < t->ndim; i++) fan_in *= t->shape[i];
    const char *kind = "bn_b";
    if (strstr(name, "convolution.weight") || strstr(name, "classifier.1.weight")) kind = "conv";
    else if (strstr(name, "normalization.weight")) kind = "bn_w";
    else if (strstr(name, "running_var")) kind = "var";
    for (int64_t i = 0; i < t->numel; i++) {
        double v = sin(0.7 * (double)i + phase);
        if (!strcmp(kind, "conv")) v *= sqrt(2.0 / (double)fan_in) * sqrt(2.0);
        else if (!strcmp(kind, "bn_w")) v = 1.0 + 0.1 * v;
        else if (!strcmp(kind, "var")) v = 1.0 + 0.5 * fabs(v);
        else v = 0.1 * v;
        t->data[i] = (float)v;
    }
}

/* |got - want| <= 1e-4 * max(|want|, scale), scale being the tensor's RMS gradient. */
static void check_rel(const char *what, const float *got, const float *want, int64_t n, double scale) {
    char label[256];
    snprintf(label, sizeof label, "%s", what);
    check_close_array(label, got, want, n, 1e-4 * scale, 1e-4, __FILE__, __LINE__);
}

int main(void) {
    golden_file gf;
    if (golden_load(&gf, "resnet50.txt") != 0) return check_summary("test_resnet");
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
    int64_t xs[4] = {2, 3, 64, 64}, ls[1] = {2};
    lt_tensor *x = lt_graph_input(g, "pixel_values", xs, 4, 0);
    lt_tensor *labels = lt_graph_input(g, "labels", ls, 1, 0);
    lt_tensor *logits = lt_resnet_forward(&m, g, x, LT_BN_TRAIN, NULL);
    lt_tensor *loss = lt_cross_entropy(g, logits, labels, NULL, -100);
    lt_graph_keep(g, logits);
    lt_graph_keep(g, loss);
    CHECK_MSG(lt_graph_plan(g, &err) == LT_OK, "plan: %s", err.msg);
    if (check_failed) return check_summary("test_resnet");
    fill(x, "pixel_values");
    for (int64_t i = 0; i < x->numel; i++) x->data[i] *= 10.0f;
    labels->data[0] = 0;
    labels->data[1] = 1;
    lt_params_zero_grad(&p);
    lt_graph_forward(g);
    lt_graph_backward(g, loss, NULL);

    golden_tensor *gl = golden_get(&gf, "logits"), *gloss = golden_get(&gf, "loss");
    if (gl) check_rel("logits", logits->data, gl->data, gl->numel, 1.0);
    if (gloss) check_rel("loss", loss->data, gloss->data, 1, 1.0);
    int checked = 0;
    for (int i = 0; i < gf.n; i++) {
        golden_tensor *t = &gf.t[i];
        const char *colon = strchr(t->name, ':');
        if (!colon) continue;
        lt_tensor *pt = lt_params_find(&p, colon + 1);
        CHECK_MSG(pt != NULL, "golden tensor %s has no parameter", t->name);
        if (!pt) continue;
        checked++;
        if (!strncmp(t->name, "grad:", 5)) {
            double rms = 0;
            for (int64_t j = 0; j < t->numel; j++) rms += (double)t->data[j] * t->data[j];
            rms = sqrt(rms / (double)t->numel);
            check_rel(t->name, pt->grad, t->data, t->numel, rms);
        } else if (!strncmp(t->name, "buf:", 4)) {
            check_rel(t->name, pt->data, t->data, t->numel, 1.0);
        } else if (!strncmp(t->name, "gnorm:", 6)) {
            double s = 0;
            for (int64_t j = 0; j < pt->numel; j++) s += (double)pt->grad[j] * pt->grad[j];
            CHECK_NEAR(sqrt(s), t->data[0], 0, 1e-4);
        } else if (!strncmp(t->name, "gsum:", 5)) {
            double s = 0, n2 = 0;
            for (int64_t j = 0; j < pt->numel; j++) s += pt->grad[j], n2 += (double)pt->grad[j] * pt->grad[j];
            CHECK_NEAR(s, t->data[0], 1e-4 * sqrt(n2), 1e-4);
        } else if (!strncmp(t->name, "gsample:", 8)) {
            double n2 = 0;
            for (int64_t j = 0; j < pt->numel; j++) n2 += (double)pt->grad[j] * pt->grad[j];
            float got[16];
            for (int j = 0; j < 16; j++) got[j] = pt->grad[((int64_t)j * 7919 + 13) % pt->numel];
            check_rel(t->name, got, t->data, 16, sqrt(n2 / (double)pt->numel));
        }
    }
    CHECK_MSG(checked > 400, "only %d golden entries matched parameters", checked);
    printf("arena %.1f MiB, scratch %.1f MiB\n", lt_graph_arena_bytes(g) / 1048576.0, lt_graph_scratch_bytes(g) / 1048576.0);
    lt_graph_destroy(g);
    lt_params_free(&p);
    golden_free(&gf);
    return check_summary("test_resnet");
}
