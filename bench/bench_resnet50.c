/* bench_resnet50 - lathe's side of the ResNet-50 benchmark (bench/pytorch_resnet50.py is PyTorch's).
 *
 *     build/bench/bench_resnet50 train28|infer224|train224 [--steps N]
 *
 * A training step is what lt_cls_train does per batch: zero grads, forward, backward, clip to 1.0, AdamW.
 * Prints one JSON line: median ms per step, images/s, peak resident memory, the planned arena and the
 * fastest step (ms_min, the figure to compare on a busy machine). LATHE_PROFILE=1 also prints a per-op
 * and per-convolution profile (forward, and backward in training) and the step's parts to stderr. */
#include "models/resnet.h"
#include "ops/ops.h"
#include "optim/optim.h"
#include "tasks/train_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <sys/resource.h>
#include <time.h>

/* BENCH_CPUTIME=1: the process's CPU time divided by the thread count instead of the wall clock, so a run
 * on a machine shared with other processes measures its own work (threads waiting count as busy). */
static double now(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("BENCH_CPUTIME") && atoi(getenv("BENCH_CPUTIME"));
    if (!cpu) return lt_now();
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return ((double)t.tv_sec + 1e-9 * (double)t.tv_nsec) / omp_get_max_threads();
}

/* Per-op totals of best[] (one entry per node) to stderr. */
static void print_ops(lt_graph *g, const double *best, const char *what) {
    int N = lt_graph_node_count(g);
    const char *names[32] = {0};
    double tot[32] = {0}, all = 0;
    int cnt[32] = {0};
    for (int i = 0; i < N; i++) {
        const char *nm = lt_graph_node(g, i)->op->name;
        int k = 0;
        while (k < 31 && names[k] && strcmp(names[k], nm))
            k++;
        names[k] = nm;
        tot[k] += best[i];
        cnt[k]++;
        all += best[i];
    }
    fprintf(stderr, "%s, sum over nodes: %.2f ms\n", what, all * 1e3);
    for (int k = 0; k < 32 && names[k]; k++)
        fprintf(stderr, "  %-20s %3d nodes %8.2f ms\n", names[k], cnt[k], tot[k] * 1e3);
}

/* Per-op and per-convolution mean wall times of the timed steps to stderr (LATHE_NODE_TIMES=1). */
static int cmp_double(const void *a, const void *b);

/* median over the steps of node_s[s * stride + i] */
static double step_median(const double *node_s, int steps, int64_t stride, int i) {
    double *v = malloc((size_t)steps * sizeof *v), m;
    for (int s = 0; s < steps; s++)
        v[s] = node_s[s * stride + i];
    qsort(v, (size_t)steps, sizeof *v, cmp_double);
    m = v[steps / 2];
    free(v);
    return m;
}

/* node_s: (steps, 2 * nodes), each step's forward then backward time of every node */
static void print_node_times(lt_graph *g, const double *node_s, int steps) {
    int N = lt_graph_node_count(g);
    double *fw = calloc((size_t)N, sizeof *fw), *bw = calloc((size_t)N, sizeof *bw);
    for (int i = 0; i < N; i++) {
        fw[i] = step_median(node_s, steps, 2 * N, i);
        bw[i] = step_median(node_s, steps, 2 * N, N + i);
    }
    print_ops(g, fw, "forward (median over steps)");
    print_ops(g, bw, "backward (median over steps, gradient zeroing included)");
    for (int i = 0; i < N; i++) {
        lt_node *n = lt_graph_node(g, i);
        if (strncmp(n->op->name, "conv2d", 6)) {
            const lt_tensor *o = n->out;
            fprintf(stderr, "  node %3d %s out(%lld,%lld,%lld,%lld): fw %6.3f ms  bw %6.3f ms\n", i,
                    n->op->name, (long long)o->shape[0], (long long)(o->ndim > 1 ? o->shape[1] : 1),
                    (long long)(o->ndim > 2 ? o->shape[2] : 1), (long long)(o->ndim > 3 ? o->shape[3] : 1),
                    fw[i] * 1e3, bw[i] * 1e3);
            continue;
        }
        const lt_tensor *x = n->in[0], *w = n->in[1];
        double fl = 2.0 * (double)n->out->numel * (double)(w->numel / w->shape[0]);
        fprintf(stderr,
                "  node %3d conv x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) s%lld: fw %6.3f ms %5.1f GF/s"
                "  bw %6.3f ms %5.1f GF/s\n",
                i, (long long)x->shape[0], (long long)x->shape[1], (long long)x->shape[2],
                (long long)x->shape[3], (long long)w->shape[0], (long long)w->shape[1],
                (long long)w->shape[2], (long long)w->shape[3], (long long)n->ip[0], fw[i] * 1e3,
                fl / fw[i] * 1e-9, bw[i] * 1e3, 2 * fl / bw[i] * 1e-9);
    }
    free(fw);
    free(bw);
}

/* LATHE_PROFILE=1: runs the forward (and in training the backward, after one whole backward that zeroed
 * the gradients; repeats then add into them, which costs the same) node by node, min of `reps` runs per
 * node, and prints each op's total and every convolution to stderr. The graph's scratch is private, so the
 * profiler brings its own. */
static void profile(lt_graph *g, lt_tensor *loss, lt_rng *rng, int reps) {
    int N = lt_graph_node_count(g), train = lt_graph_mode(g) == LT_MODE_TRAIN;
    int64_t scratch_n = 1;
    for (int i = 0; i < N; i++)
        if (lt_graph_node(g, i)->scratch_numel > scratch_n) scratch_n = lt_graph_node(g, i)->scratch_numel;
    float *scratch = aligned_alloc(64, (size_t)(scratch_n * 4 + 63) / 64 * 64);
    double *best = malloc((size_t)N * sizeof *best), *bbest = malloc((size_t)N * sizeof *bbest);
    lt_exec ex = {scratch, scratch_n, lt_graph_mode(g), rng};
    for (int i = 0; i < N; i++)
        best[i] = bbest[i] = 1e30;
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < N; i++) {
            lt_node *n = lt_graph_node(g, i);
            double t = now();
            n->op->forward(n, &ex);
            t = now() - t;
            if (t < best[i]) best[i] = t;
        }
    print_ops(g, best, "forward");
    if (train) {
        lt_graph_forward(g);
        lt_graph_backward(g, loss, NULL);
        for (int r = 0; r < reps; r++)
            for (int i = N - 1; i >= 0; i--) {
                lt_node *n = lt_graph_node(g, i);
                if (!n->out->requires_grad || !n->op->backward) {
                    bbest[i] = 0;
                    continue;
                }
                double t = now();
                n->op->backward(n, &ex);
                t = now() - t;
                if (t < bbest[i]) bbest[i] = t;
            }
        print_ops(g, bbest, "backward");
    }
    for (int i = 0; i < N; i++) {
        lt_node *n = lt_graph_node(g, i);
        if (strncmp(n->op->name, "conv2d", 6)) continue;
        const lt_tensor *x = n->in[0], *w = n->in[1];
        double fl = 2.0 * (double)n->out->numel * (double)(w->numel / w->shape[0]);
        fprintf(stderr,
                "  node %3d conv x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) s%lld: fw %6.3f ms %5.1f GF/s",
                i, (long long)x->shape[0], (long long)x->shape[1], (long long)x->shape[2],
                (long long)x->shape[3], (long long)w->shape[0], (long long)w->shape[1],
                (long long)w->shape[2], (long long)w->shape[3], (long long)n->ip[0], best[i] * 1e3,
                fl / best[i] * 1e-9);
        if (train) fprintf(stderr, "  bw %6.3f ms %5.1f GF/s", bbest[i] * 1e3, 2 * fl / bbest[i] * 1e-9);
        fprintf(stderr, "\n");
    }
    free(best);
    free(bbest);
    free(scratch);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_resnet50 train28|infer224|train224 [--steps N]\n");
        return 2;
    }
    const char *mode = argv[1];
    int size, batch, train, steps;
    if (!strcmp(mode, "train28"))
        size = 28, batch = 16, train = 1, steps = 20;
    else if (!strcmp(mode, "infer224"))
        size = 224, batch = 1, train = 0, steps = 20;
    else if (!strcmp(mode, "train224"))
        size = 224, batch = 16, train = 1, steps = 4;
    else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    if (argc >= 4 && !strcmp(argv[2], "--steps")) steps = atoi(argv[3]);
    lt_err err = {{0}};
    lt_params p;
    lt_params_init(&p);
    lt_resnet m;
    lt_resnet_config cfg = lt_resnet50_config(10);
    lt_rng rng;
    lt_rng_seed(&rng, 0, 0);
    if (lt_resnet_declare(&m, &cfg, &p, &err) != LT_OK || lt_params_alloc(&p, &err) != LT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lt_resnet_init(&m, &rng);
    lt_graph *g = lt_graph_create(train ? LT_MODE_TRAIN : LT_MODE_EVAL, &rng);
    int64_t xs[4] = {batch, 3, size, size}, ls[1] = {batch};
    lt_tensor *x = lt_graph_input(g, "pixel_values", xs, 4, 0);
    lt_tensor *y = lt_graph_input(g, "labels", ls, 1, 0);
    lt_tensor *logits = lt_resnet_forward(&m, g, x, train ? LT_BN_TRAIN : LT_BN_EVAL, NULL);
    lt_tensor *loss = train ? lt_cross_entropy(g, logits, y, NULL, -100) : NULL;
    lt_graph_keep(g, train ? loss : logits);
    if (lt_graph_plan(g, &err) != LT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] = lt_rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        y->data[i] = (float)(i % 10);
    int prof = getenv("LATHE_PROFILE") && atoi(getenv("LATHE_PROFILE"));
    if (prof) profile(g, loss, &rng, prof > 1 ? prof : train ? 2 : 10); /* LATHE_PROFILE=N: N runs per node */
    double part[4] = {1e30, 1e30, 1e30, 1e30}; /* fastest forward, backward, clip, AdamW */
    lt_adamw opt;
    lt_adamw_init(&opt, 1e-3, 0.0);
    double *times = calloc((size_t)steps + 1, sizeof *times);
    /* LATHE_NODE_TIMES=1: each node's mean wall time over the timed steps, inside real steps */
    int node_times = getenv("LATHE_NODE_TIMES") && atoi(getenv("LATHE_NODE_TIMES"));
    double *node_s = calloc(2 * (size_t)lt_graph_node_count(g) * (size_t)(steps + 1), sizeof *node_s);
    for (int s = 0; s <= steps; s++) { /* step 0 warms up */
        if (s >= 1 && node_times)
            lt_graph_time_nodes(g, node_s + (size_t)(s - 1) * 2 * lt_graph_node_count(g));
        double t = now();
        if (train) {
            double t0 = now();
            lt_params_zero_grad(&p);
            lt_graph_forward(g);
            double t1 = now();
            lt_graph_backward(g, loss, NULL);
            double t2 = now();
            double norm = lt_clip_grad_norm(&p, 0.0);
            double t3 = now();
            lt_adamw_step_scaled(&opt, &p, 1e-3, lt_clip_coef(norm, 1.0), &err);
            double t4 = now(), d[4] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3};
            for (int k = 0; s && k < 4; k++)
                if (d[k] < part[k]) part[k] = d[k];
        } else {
            lt_graph_forward(g);
        }
        if (s) times[s - 1] = now() - t;
    }
    if (prof && train)
        fprintf(stderr,
                "step parts (fastest of each): zero grads + forward %.1f ms, backward %.1f ms, clip %.1f ms, "
                "AdamW %.1f ms\n",
                part[0] * 1e3, part[1] * 1e3, part[2] * 1e3, part[3] * 1e3);
    if (node_times) print_node_times(g, node_s, steps);
    free(node_s);
    qsort(times, (size_t)steps, sizeof *times, cmp_double);
    double median = times[steps / 2];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"impl\": \"lathe\", \"mode\": \"%s\", \"batch\": %d, \"size\": %d, \"ms_per_step\": %.2f, "
           "\"images_per_second\": %.2f, \"peak_rss_mib\": %.1f, \"arena_mib\": %.1f, \"ms_min\": %.2f}\n",
           mode, batch, size, median * 1e3, batch / median, ru.ru_maxrss / 1024.0,
           lt_graph_arena_bytes(g) / 1048576.0, times[0] * 1e3);
    free(times);
    lt_graph_destroy(g);
    lt_params_free(&p);
    return 0;
}
