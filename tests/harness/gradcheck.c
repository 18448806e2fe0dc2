#include "gradcheck.h"

#include "check.h"
#include "core/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GC_MAX_IN 8

static double projected(const lt_tensor *out, const float *r) {
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += (double)out->data[i] * (double)r[i];
    return s;
}

static void fill(lt_tensor *t, const gc_input *d, lt_rng *rng) {
    for (int64_t i = 0; i < t->numel; i++) {
        switch (d->fill) {
        case GC_NORMAL: t->data[i] = d->lo + (d->hi != 0 ? d->hi : 1.0f) * lt_rng_normal(rng); break;
        case GC_UNIFORM: t->data[i] = d->lo + (d->hi - d->lo) * lt_rng_uniform(rng); break;
        case GC_INDEX: t->data[i] = (float)((int)d->lo + (int)lt_rng_below(rng, (uint32_t)(d->hi - d->lo))); break;
        case GC_CONST:
        default: t->data[i] = d->lo; break;
        }
    }
}

int gradcheck_fix(const char *label, const gc_input *ins, int n_in, gc_build_fn build, gc_fix_fn fix, void *ctx,
                  gc_opts o) {
    double eps = o.eps > 0 ? o.eps : 1e-2, atol = o.atol > 0 ? o.atol : 2e-3, rtol = o.rtol > 0 ? o.rtol : 2e-2;
    int max_points = o.max_points > 0 ? o.max_points : 64;
    lt_rng rng, graph_rng;
    lt_rng_seed(&rng, o.seed + 1, 7);
    lt_rng_seed(&graph_rng, 1234, 1);
    lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &graph_rng);
    lt_tensor *in[GC_MAX_IN] = {0};
    for (int i = 0; i < n_in && i < GC_MAX_IN; i++)
        in[i] = lt_graph_input(g, ins[i].name, ins[i].shape, ins[i].ndim, ins[i].requires_grad);
    lt_tensor *out = build(g, in, ctx);
    lt_graph_keep(g, out);
    lt_err err = {{0}};
    if (!out || lt_graph_plan(g, &err) != LT_OK) {
        lt_graph_status(g, &err);
        check_report(0, __FILE__, __LINE__, "%s: graph failed to build: %s", label, err.msg);
        lt_graph_destroy(g);
        return 0;
    }
    for (int i = 0; i < n_in; i++) fill(in[i], &ins[i], &rng);
    if (fix) fix(in, n_in, ctx);
    float *r = malloc((size_t)out->numel * sizeof *r);
    for (int64_t i = 0; i < out->numel; i++) r[i] = lt_rng_normal(&rng);

    lt_rng_seed(&graph_rng, 1234, 1);
    lt_graph_forward(g);
    lt_graph_backward(g, out, r);
    /* copy every analytic gradient now: the planner may lend a gradient's bytes to activations, so the
     * finite-difference forwards below would overwrite it */
    float *analytic_all[GC_MAX_IN] = {0};
    for (int i = 0; i < n_in && i < GC_MAX_IN; i++) {
        if (!ins[i].requires_grad) continue;
        analytic_all[i] = malloc((size_t)in[i]->numel * sizeof(float));
        memcpy(analytic_all[i], in[i]->grad, (size_t)in[i]->numel * sizeof(float));
    }
    int ok = 1;
    for (int i = 0; i < n_in; i++) {
        if (!ins[i].requires_grad) continue;
        lt_tensor *t = in[i];
        float *analytic = analytic_all[i];
        int64_t step = t->numel > max_points ? t->numel / max_points : 1;
        int64_t worst = -1;
        double worst_a = 0, worst_n = 0, worst_excess = 0;
        for (int64_t j = (t->numel > max_points ? (int64_t)(lt_rng_below(&rng, (uint32_t)step)) : 0); j < t->numel;
             j += step) {
            float saved = t->data[j];
            t->data[j] = saved + (float)eps;
            double xp = (double)t->data[j];
            lt_rng_seed(&graph_rng, 1234, 1);
            lt_graph_forward(g);
            double lp = projected(out, r);
            t->data[j] = saved - (float)eps;
            double xm = (double)t->data[j];
            lt_rng_seed(&graph_rng, 1234, 1);
            lt_graph_forward(g);
            double lm = projected(out, r);
            t->data[j] = saved;
            double numeric = (lp - lm) / (xp - xm);
            double a = analytic[j];
            double excess = fabs(a - numeric) - (atol + rtol * fmax(fabs(a), fabs(numeric)));
            if (!(excess <= 0) && (worst < 0 || excess > worst_excess)) {
                worst = j;
                worst_a = a;
                worst_n = numeric;
                worst_excess = isnan(excess) ? INFINITY : excess;
            }
        }
        if (worst >= 0) {
            ok = 0;
            check_report(0, __FILE__, __LINE__, "%s: d/d%s[%lld] analytic %.7g vs numeric %.7g", label, ins[i].name,
                         (long long)worst, worst_a, worst_n);
        } else {
            check_report(1, __FILE__, __LINE__, "%s", label);
        }
        free(analytic);
    }
    free(r);
    lt_graph_destroy(g);
    return ok;
}

int gradcheck(const char *label, const gc_input *ins, int n_in, gc_build_fn build, void *ctx, gc_opts opts) {
    return gradcheck_fix(label, ins, n_in, build, NULL, ctx, opts);
}
