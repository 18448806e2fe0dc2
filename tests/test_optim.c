/* Tests of optim/: AdamW + linear schedule + gradient clipping against torch.optim.AdamW, LambdaLR and
 * clip_grad_norm_ (tests/golden/loss_optim.txt), the schedule's edge cases, clipping's contract, and a
 * resumed run matching an uninterrupted one. */
#include "check.h"
#include "golden.h"
#include "optim/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The store the golden run uses: trainable w (3, 4), b (4) no_decay, e (5) lr_scale 0.25, with a frozen
 * tensor and a buffer declared in between, which the optimizer must leave alone. Trainable tensors are laid
 * out first, in declaration order, which is the golden file's flat order. */
static int make_store(lt_params *p) {
    lt_params_init(p);
    lt_err err = {{0}};
    int64_t sw[2] = {3, 4}, s2[1] = {2}, s4[1] = {4}, s3[1] = {3}, s5[1] = {5};
    lt_tensor *w = lt_params_add(p, "w", sw, 2, LT_PARAM_TRAINABLE, &err);
    lt_tensor *f = lt_params_add(p, "frozen", s2, 1, LT_PARAM_FROZEN, &err);
    lt_tensor *b = lt_params_add(p, "b", s4, 1, LT_PARAM_TRAINABLE, &err);
    lt_tensor *r = lt_params_add(p, "running", s3, 1, LT_PARAM_BUFFER, &err);
    lt_tensor *e = lt_params_add(p, "e", s5, 1, LT_PARAM_TRAINABLE, &err);
    if (!w || !f || !b || !r || !e || lt_params_alloc(p, &err) != LT_OK) {
        CHECK_MSG(0, "store: %s", err.msg);
        return 0;
    }
    b->no_decay = 1;
    e->lr_scale = 0.25f;
    lt_init_const(f, 0.5f);
    lt_init_const(r, -2.0f);
    return p->trainable_numel == 21;
}

typedef struct {
    const char *tag;
    double lr, wd;
    int64_t warmup, total;
    double max_norm;
} run_cfg;

/* tools/golden/loss_optim.py's table */
static const run_cfg RUNS[3] = {
    {"A", 1e-2, 0.01, 2, 5, 1.0},
    {"B", 1e-2, 0.0, 2, 5, 1.0},
    {"C", 1e-2, 0.01, 0, 5, 0.0},
};

/* One Trainer step from the golden gradients of step s. */
static double train_step(lt_adamw *o, lt_params *p, const run_cfg *c, const float *grads, int64_t s) {
    lt_params_zero_grad(p);
    for (int64_t i = 0; i < p->trainable_numel; i++)
        p->grad[i] += grads[s * p->trainable_numel + i];
    double norm = lt_clip_grad_norm(p, c->max_norm);
    double lr = o->lr * lt_linear_schedule(o->step, c->warmup, c->total);
    lt_err err = {{0}};
    CHECK(lt_adamw_step(o, p, lr, &err) == LT_OK);
    return norm;
}

static void test_adamw_golden(golden_file *f) {
    golden_tensor *init = golden_get(f, "opt_init"), *grads = golden_get(f, "opt_grads");
    if (!init || !grads) return;
    for (int k = 0; k < 3; k++) {
        const run_cfg *c = &RUNS[k];
        char name[64];
        snprintf(name, sizeof name, "opt%s_params", c->tag);
        golden_tensor *want = golden_get(f, name);
        snprintf(name, sizeof name, "opt%s_norms", c->tag);
        golden_tensor *norms = golden_get(f, name);
        lt_params p;
        if (!want || !norms || !make_store(&p)) continue;
        memcpy(p.data, init->data, 21 * sizeof(float));
        lt_adamw o;
        lt_adamw_init(&o, c->lr, c->wd);
        lt_err err = {{0}};
        CHECK(lt_adamw_check(&o, &err) == LT_OK);
        for (int64_t s = 0; s < 5; s++) {
            double norm = train_step(&o, &p, c, grads->data, s);
            snprintf(name, sizeof name, "run %s step %lld params", c->tag, (long long)s);
            CHECK_CLOSE(name, p.data, want->data + s * 21, 21, 1e-7, 1e-6);
            CHECK_NEAR(norm, norms->data[s], 0, 1e-6);
        }
        CHECK(o.step == 5);
        if (k == 0) /* warmup: the first update has lr 0 and leaves the parameters as they were */
            CHECK_CLOSE("lr 0 at step 0", want->data, init->data, 21, 0, 0);
        lt_tensor *fz = lt_params_find(&p, "frozen"), *rn = lt_params_find(&p, "running");
        CHECK(fz->data[1] == 0.5f && rn->data[2] == -2.0f);
        lt_params_free(&p);
    }
}

static void test_schedule_golden(golden_file *f) {
    const int64_t cfg[][2] = {{0, 7}, {3, 10}, {4, 4}, {1, 1}, {2, 5}};
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "sched_w%lld_t%lld", (long long)cfg[k][0], (long long)cfg[k][1]);
        golden_tensor *t = golden_get(f, name);
        if (!t) continue;
        float got[13];
        for (int s = 0; s < 13; s++)
            got[s] = (float)lt_linear_schedule(s, cfg[k][0], cfg[k][1]);
        CHECK_CLOSE(name, got, t->data, 13, 0, 0);
    }
}

/* A store big enough for the threads to split (tensors of odd sizes, a frozen one between, per-tensor
 * lr_scale and no_decay): AdamW against a double-precision reference of torch's formula, two steps, and the
 * clip norm against a double sum. Catches a thread's share starting or ending in the wrong tensor. */
static void test_large_store(void) {
    lt_params p;
    lt_params_init(&p);
    lt_err err = {{0}};
    int64_t sa[1] = {40001}, sf[1] = {7}, sb[1] = {50003};
    lt_tensor *a = lt_params_add(&p, "a", sa, 1, LT_PARAM_TRAINABLE, &err);
    lt_tensor *f = lt_params_add(&p, "frozen", sf, 1, LT_PARAM_FROZEN, &err);
    lt_tensor *b = lt_params_add(&p, "b", sb, 1, LT_PARAM_TRAINABLE, &err);
    if (!a || !f || !b || lt_params_alloc(&p, &err) != LT_OK) {
        CHECK_MSG(0, "store: %s", err.msg);
        return;
    }
    a->no_decay = 1;
    b->lr_scale = 0.5f;
    const int64_t n = p.trainable_numel;
    double *rp = malloc((size_t)n * 3 * sizeof *rp), *rm = rp + n, *rv = rm + n;
    lt_rng rng;
    lt_rng_seed(&rng, 3, 0);
    lt_tensor *ts[2] = {a, b};
    int64_t at = 0;
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < ts[k]->numel; i++, at++) {
            ts[k]->data[i] = lt_rng_normal(&rng);
            rp[at] = ts[k]->data[i];
            rm[at] = rv[at] = 0.0;
        }
    lt_adamw o;
    lt_adamw_init(&o, 1e-2, 0.1);
    for (int step = 1; step <= 2; step++) {
        double ss = 0.0;
        for (int64_t i = 0; i < n; i++) {
            p.grad[i] = lt_rng_normal(&rng) * (i % 3 ? 0.5f : 2.0f);
            ss += (double)p.grad[i] * p.grad[i];
        }
        double norm = lt_clip_grad_norm(&p, 0.0);
        CHECK_NEAR(norm, sqrt(ss), 0, 1e-12);
        CHECK(lt_adamw_step_scaled(&o, &p, 1e-2, 0.75f, &err) == LT_OK);
        double bc1 = 1.0 - pow(0.9, step), bc2 = 1.0 - pow(0.999, step);
        at = 0;
        for (int k = 0; k < 2; k++)
            for (int64_t i = 0; i < ts[k]->numel; i++, at++) {
                double lr = 1e-2 * ts[k]->lr_scale, wd = ts[k]->no_decay ? 0.0 : 0.1, g = 0.75 * p.grad[at];
                rm[at] = 0.9 * rm[at] + 0.1 * g;
                rv[at] = 0.999 * rv[at] + 0.001 * g * g;
                rp[at] = rp[at] * (1.0 - lr * wd) - lr / bc1 * rm[at] / (sqrt(rv[at]) / sqrt(bc2) + 1e-8);
            }
    }
    float *want = malloc((size_t)n * sizeof *want);
    for (int64_t i = 0; i < n; i++)
        want[i] = (float)rp[i];
    CHECK_CLOSE("large store: parameters after two AdamW steps", p.data, want, n, 1e-6, 1e-6);
    CHECK(f->data[0] == 0.0f); /* frozen values are not touched */
    free(want);
    free(rp);
    lt_params_free(&p);
}

static void test_clip(void) {
    lt_params p;
    if (!make_store(&p)) return;
    /* below the threshold: untouched, and the norm is the L2 norm */
    for (int64_t i = 0; i < 21; i++)
        p.grad[i] = (i % 2 ? 0.1f : -0.1f);
    double n = lt_clip_grad_norm(&p, 1.0);
    CHECK_NEAR(n, sqrt(21 * 0.01), 1e-7, 1e-6);
    CHECK(p.grad[3] == 0.1f);
    /* above: scaled by max_norm / (norm + 1e-6), so the new norm is just under max_norm */
    for (int64_t i = 0; i < 21; i++)
        p.grad[i] = (float)(i + 1);
    double before = lt_clip_grad_norm(&p, 2.0);
    double after = lt_clip_grad_norm(&p, 0.0); /* max_norm <= 0 only measures */
    CHECK_NEAR(after, 2.0 * before / (before + 1e-6), 1e-7, 1e-6);
    CHECK(after < 2.0);
    CHECK_NEAR(p.grad[20] / p.grad[0], 21.0, 0, 1e-6);
    /* non-finite: reported, gradients left as they are for the caller to decide */
    p.grad[5] = INFINITY;
    CHECK(isinf(lt_clip_grad_norm(&p, 1.0)));
    CHECK(isinf(p.grad[5]) && p.grad[0] == (float)(2.0 * 1 / (before + 1e-6)));
    p.grad[5] = NAN;
    CHECK(isnan(lt_clip_grad_norm(&p, 1.0)));
    lt_params_free(&p);
    lt_params empty;
    lt_params_init(&empty);
    CHECK(lt_clip_grad_norm(&empty, 1.0) == 0.0);
}

/* Five steps in one go equal three steps, a "checkpoint" (data, m, v, the lt_adamw struct) restored into a
 * fresh store, and two more steps: bit for bit. */
static void test_resume(golden_file *f) {
    golden_tensor *init = golden_get(f, "opt_init"), *grads = golden_get(f, "opt_grads");
    if (!init || !grads) return;
    const run_cfg *c = &RUNS[0];
    lt_params a, b;
    if (!make_store(&a) || !make_store(&b)) return;
    memcpy(a.data, init->data, 21 * sizeof(float));
    lt_adamw oa, ob;
    lt_adamw_init(&oa, c->lr, c->wd);
    float straight[21];
    for (int s = 0; s < 5; s++)
        train_step(&oa, &a, c, grads->data, s);
    memcpy(straight, a.data, sizeof straight);
    memcpy(a.data, init->data, 21 * sizeof(float));
    memset(a.m, 0, 21 * sizeof(float));
    memset(a.v, 0, 21 * sizeof(float));
    lt_adamw_init(&oa, c->lr, c->wd);
    for (int s = 0; s < 3; s++)
        train_step(&oa, &a, c, grads->data, s);
    memcpy(b.data, a.data, (size_t)a.numel * sizeof(float));
    memcpy(b.m, a.m, 21 * sizeof(float));
    memcpy(b.v, a.v, 21 * sizeof(float));
    ob = oa;
    for (int s = 3; s < 5; s++)
        train_step(&ob, &b, c, grads->data, s);
    CHECK(ob.step == 5);
    CHECK_CLOSE("resumed run", b.data, straight, 21, 0, 0);
    lt_params_free(&a);
    lt_params_free(&b);
}

static void test_errors(void) {
    lt_adamw o;
    lt_err err = {{0}};
    lt_adamw_init(&o, -1.0, 0.0);
    CHECK(lt_adamw_check(&o, &err) == LT_ERR_ARG && strstr(err.msg, "learning_rate"));
    lt_adamw_init(&o, 1e-3, 0.0);
    o.beta1 = 1.0;
    CHECK(lt_adamw_check(&o, &err) == LT_ERR_ARG && strstr(err.msg, "beta1"));
    lt_adamw_init(&o, 1e-3, NAN);
    CHECK(lt_adamw_check(&o, &err) == LT_ERR_ARG && strstr(err.msg, "weight_decay"));
    lt_adamw_init(&o, 1e-3, 0.0);
    lt_params p;
    lt_params_init(&p);
    CHECK(lt_adamw_step(&o, &p, 1e-3, &err) == LT_ERR_STATE);
    CHECK(o.step == 0);
    if (make_store(&p)) {
        CHECK(lt_adamw_step(&o, &p, NAN, &err) == LT_ERR_ARG && o.step == 0);
        lt_params_free(&p);
    }
}

/* Clipping fused into AdamW (lt_clip_coef + lt_adamw_step_scaled) gives the same bits as clipping the
 * gradients in place and then stepping, norms above and below max_norm. */
static void test_fused_clip(void) {
    for (int big = 0; big < 2; big++) {
        lt_params a, b;
        if (!make_store(&a) || !make_store(&b)) return;
        lt_adamw oa, ob;
        lt_adamw_init(&oa, 1e-2, 0.01);
        lt_adamw_init(&ob, 1e-2, 0.01);
        lt_err err = {{0}};
        for (int s = 0; s < 3; s++) {
            for (int64_t i = 0; i < a.trainable_numel; i++)
                a.grad[i] = b.grad[i] = (float)((big ? 3.0 : 0.01) * sin(1.3 * (double)(i + 7 * s)));
            double na = lt_clip_grad_norm(&a, 1.0);
            CHECK(lt_adamw_step(&oa, &a, 1e-2, &err) == LT_OK);
            double nb = lt_clip_grad_norm(&b, 0.0);
            CHECK(lt_adamw_step_scaled(&ob, &b, 1e-2, lt_clip_coef(nb, 1.0), &err) == LT_OK);
            CHECK(na == nb);
        }
        CHECK_MSG(memcmp(a.data, b.data, (size_t)a.numel * sizeof(float)) == 0, "fused clip differs (big=%d)", big);
        CHECK(memcmp(a.m, b.m, (size_t)a.trainable_numel * sizeof(float)) == 0);
        CHECK(lt_clip_coef(NAN, 1.0) == 1.0f && lt_clip_coef(0.5, 1.0) == 1.0f && lt_clip_coef(4.0, 0.0) == 1.0f);
        CHECK(lt_clip_coef(4.0, 1.0) < 0.25f + 1e-6f);
        lt_params_free(&a);
        lt_params_free(&b);
    }
}

int main(void) {
    test_large_store();
    golden_file f;
    if (golden_load(&f, "loss_optim.txt") == 0) {
        test_adamw_golden(&f);
        test_schedule_golden(&f);
        test_resume(&f);
    } else {
        CHECK_MSG(0, "cannot load loss_optim.txt");
    }
    golden_free(&f);
    test_clip();
    test_fused_clip();
    test_errors();
    return check_summary("test_optim");
}
