/* bench_conv - GFLOP/s of lt_conv2d_forward/backward on every convolution of ResNet-50.
 *
 *   bench_conv [input_size=28] [batch=16] [sweep=0]
 *   bench_conv one C O K S H [batch=16] [sweep=0]     one layer: K x K kernel, stride S, padding K/2, H x H
 * input
 *
 * Prints one line per distinct layer shape (forward, backward = dx + dw, the stem only dw) and totals over
 * the whole network, weighting each shape by how often ResNet-50 uses it. sweep=1 also times every
 * images-per-GEMM choice (nb) for each shape, to tune lt_conv2d_plan_auto. FLOPs count every tap,
 * padding included (2 * N * O * C/groups * KH * KW * OH * OW per pass), as PyTorch profilers do. */
#include "ops/conv2d.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int c, o, k, s, h, count, groups;
} layer;

/* BENCH_CPUTIME=1 times with the process's CPU time instead of the wall clock: on a machine shared with
 * other processes, a run then measures its own work only (divided by the thread count, which counts
 * threads waiting for each other as busy). */
static double now(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("BENCH_CPUTIME") && atoi(getenv("BENCH_CPUTIME"));
    struct timespec t;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int out_size(int h, int k, int s) {
    return (h + 2 * (k / 2) - k) / s + 1;
}

/* ResNet-50 (torchvision / Hugging Face layout: stride on the 3x3) at input size h0, duplicates merged. */
static int resnet50_layers(int h0, layer *ls) {
    int n = 0, h = out_size(h0, 7, 2);
    ls[n++] = (layer){3, 64, 7, 2, h0, 1, 1};
    h = (h + 2 - 3) / 2 + 1; /* maxpool 3/2/1 */
    int cin = 64, widths[4] = {64, 128, 256, 512}, blocks[4] = {3, 4, 6, 3};
    for (int st = 0; st < 4; st++) {
        int wd = widths[st], outc = 4 * wd;
        for (int b = 0; b < blocks[st]; b++) {
            int s = (st > 0 && b == 0) ? 2 : 1, ho = out_size(h, 3, s);
            layer cand[4] = {{cin, wd, 1, 1, h, 1, 1},
                             {wd, wd, 3, s, h, 1, 1},
                             {wd, outc, 1, 1, ho, 1, 1},
                             {cin, outc, 1, s, h, 1, 1}};
            for (int j = 0; j < (b == 0 ? 4 : 3); j++) {
                int found = 0;
                for (int i = 0; i < n && !found; i++)
                    if (ls[i].c == cand[j].c && ls[i].o == cand[j].o && ls[i].k == cand[j].k &&
                        ls[i].s == cand[j].s && ls[i].h == cand[j].h)
                        ls[i].count++, found = 1;
                if (!found) ls[n++] = cand[j];
            }
            cin = outc;
            h = ho;
        }
    }
    return n;
}

static float *randbuf(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++)
        p[i] = (float)rand() / (float)RAND_MAX - 0.5f;
    return p;
}

/* Seconds per call of forward (bw = 0) or backward (bw = 1): the best of 8 rounds of ~20 ms, so that
 * rounds slowed down by other processes on the machine are discarded. BENCH_MIN=1 takes the best single
 * call of ~0.3 s worth instead, which on a busy machine comes closer to an undisturbed run. */
static double time_pass(int bw, const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *y, float *x,
                        float *w, float *dy, float *dx, float *dw, float *scratch, double flops) {
    int single = getenv("BENCH_MIN") && atoi(getenv("BENCH_MIN"));
    int reps = single ? 1 : (int)(0.02 / (flops / 100e9)) + 1;
    int rounds = single ? (int)(0.3 / (flops / 100e9)) + 3 : 9;
    double best = 1e30;
    for (int round = 0; round < rounds; round++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) {
            if (bw)
                lt_conv2d_backward(dx, dw, NULL, dy, x, w, d, p, scratch);
            else
                lt_conv2d_forward(y, x, w, NULL, d, p, scratch);
        }
        double t = (now() - t0) / reps;
        if (getenv("BENCH_CPUTIME") && atoi(getenv("BENCH_CPUTIME")))
            t /= omp_get_max_threads();  /* per thread */
        if (round && t < best) best = t; /* round 0 warms up */
    }
    return best;
}

int main(int argc, char **argv) {
    int one = argc > 1 && strcmp(argv[1], "one") == 0;
    if (one && argc < 7) {
        fprintf(stderr, "usage: bench_conv one C O K S H [batch] [sweep]\n");
        return 2;
    }
    int a = one ? 6 : 1; /* the argument before batch */
    int h0 = one ? atoi(argv[6]) : argc > 1 ? atoi(argv[1]) : 28;
    int batch = argc > a + 1 ? atoi(argv[a + 1]) : 16, sweep = argc > a + 2 ? atoi(argv[a + 2]) : 0;
    int threads = omp_get_max_threads();
    layer ls[64];
    int nl = 1;
    if (one) /* BENCH_GROUPS=g makes it a grouped convolution (g = C: depthwise) */
        ls[0] = (layer){atoi(argv[2]),
                        atoi(argv[3]),
                        atoi(argv[4]),
                        atoi(argv[5]),
                        h0,
                        1,
                        getenv("BENCH_GROUPS") ? atoi(getenv("BENCH_GROUPS")) : 1};
    else
        nl = resnet50_layers(h0, ls);
    printf("%s, input %dx%d, batch %d, %d threads\n", one ? "one convolution" : "ResNet-50 convolutions", h0,
           h0, batch, threads);
    double tf = 0, tb = 0, ff = 0, fb = 0;
    for (int i = 0; i < nl; i++) {
        layer L = ls[i];
        int groups = L.groups > 0 ? L.groups : 1;
        lt_conv2d_dims d = {batch, L.c, L.h, L.h, L.o,
                            L.k,   L.k, 0,   0,   {L.s, L.s, L.k / 2, L.k / 2, 1, 1, groups}};
        d.oh = d.ow = lt_conv2d_out_size(L.h, L.k, L.s, L.k / 2, 1);
        lt_conv2d_plan p;
        lt_conv2d_plan_auto(&d, threads, &p);
        int64_t xn = (int64_t)batch * L.c * L.h * L.h, wn = (int64_t)L.o * (L.c / groups) * L.k * L.k;
        int64_t yn = (int64_t)batch * L.o * d.oh * d.ow;
        int64_t sn = (int64_t)1 << 26; /* room for every plan the sweep tries */
        float *x = randbuf(xn), *w = randbuf(wn), *dy = randbuf(yn), *y = randbuf(yn);
        float *dx = L.c == 3 ? NULL : randbuf(xn), *dw = randbuf(wn),
              *scratch = calloc((size_t)sn, sizeof(float));
        double fl = 2.0 * batch * L.o * (L.c / groups) * L.k * L.k * d.oh * d.ow, flb = (dx ? 2 : 1) * fl;
        double sf = time_pass(0, &d, &p, y, x, w, dy, dx, dw, scratch, fl);
        double sb = time_pass(1, &d, &p, y, x, w, dy, dx, dw, scratch, flb);
        printf("C%5d O%5d k%d s%d %3dx%-3d x%d  nb %2lld/%-2lld: fw %8.3f ms %6.1f GF/s  bw %8.3f ms %6.1f "
               "GF/s\n",
               L.c, L.o, L.k, L.s, L.h, L.h, L.count, (long long)p.nb, (long long)p.nb_bw, sf * 1e3,
               fl / sf * 1e-9, sb * 1e3, flb / sb * 1e-9);
        if (sweep && !p.direct) {
            for (int64_t nb = 1; nb <= batch; nb *= 2) {
                lt_conv2d_plan q = {nb, d.oh, nb, d.oh, threads, 0};
                if (lt_conv2d_scratch_numel(&d, &q, 1) > sn) continue;
                double qf = time_pass(0, &d, &q, y, x, w, dy, dx, dw, scratch, fl);
                double qb = time_pass(1, &d, &q, y, x, w, dy, dx, dw, scratch, flb);
                printf("      nb %2lld: fw %8.3f ms %6.1f GF/s  bw %8.3f ms %6.1f GF/s\n", (long long)nb,
                       qf * 1e3, fl / qf * 1e-9, qb * 1e3, flb / qb * 1e-9);
            }
        }
        tf += L.count * sf, tb += L.count * sb, ff += L.count * fl, fb += L.count * flb;
        free(x), free(w), free(dy), free(y), free(dx), free(dw), free(scratch);
    }
    printf("TOTAL forward %.1f ms (%.1f GF/s), backward %.1f ms (%.1f GF/s), step %.1f ms, %.2f GFLOP\n",
           tf * 1e3, ff / tf * 1e-9, tb * 1e3, fb / tb * 1e-9, (tf + tb) * 1e3, (ff + fb) * 1e-9);
    return 0;
}
