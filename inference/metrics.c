/* metrics.c - request counters and a latency histogram in Prometheus' text format. */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The statuses an inference server answers; anything else is counted as "other". */
static const int codes[] = {200, 400, 404, 405, 413, 500, 503};
#define N_CODES (int)(sizeof codes / sizeof *codes)
/* Histogram bucket upper bounds in seconds (le), then +Inf. */
static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                 0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define N_BUCKETS (int)(sizeof buckets / sizeof *buckets)

typedef struct {
    uint64_t by_code[N_CODES + 1];         /* last: other statuses */
    uint64_t by_class[LT_INFER_ERR_COUNT]; /* [0] unused */
    uint64_t instances;
    uint64_t hist[N_BUCKETS + 1]; /* non-cumulative counts; last: above every bound */
    double sum_seconds;
    uint64_t count;
} counters;

struct lt_infer_metrics {
    pthread_mutex_t mu; /* guards c */
    counters c;
};

lt_infer_metrics *lt_infer_metrics_create(void) {
    lt_infer_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void lt_infer_metrics_destroy(lt_infer_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void lt_infer_metrics_observe(lt_infer_metrics *m, int http_status, lt_infer_error_class cls, double seconds,
                              int n_instances) {
    int c = 0;
    while (c < N_CODES && codes[c] != http_status)
        c++;
    int b = 0;
    while (b < N_BUCKETS && seconds > buckets[b])
        b++;
    pthread_mutex_lock(&m->mu);
    counters *k = &m->c;
    k->by_code[c]++;
    if (cls > LT_INFER_ERR_NONE && cls < LT_INFER_ERR_COUNT) k->by_class[cls]++;
    if (n_instances > 0) k->instances += (uint64_t)n_instances;
    if (seconds >= 0) {
        k->hist[b]++;
        k->sum_seconds += seconds;
        k->count++;
    }
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *s; /* (cap) */
    size_t len, cap;
    int ok; /* 0 after an allocation failed */
} out_buf;

static void put(out_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_buf *o, const char *fmt, ...) {
    if (!o->ok) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->s + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->ok = 0;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = o->cap * 2 + (size_t)n;
        char *p = realloc(o->s, cap);
        if (!p) {
            o->ok = 0;
            return;
        }
        o->s = p;
        o->cap = cap;
    }
}

char *lt_infer_metrics_render(lt_infer_metrics *m, const lt_infer_batcher_stats *batcher) {
    pthread_mutex_lock(&m->mu);
    counters s = m->c; /* a consistent snapshot */
    pthread_mutex_unlock(&m->mu);
    out_buf o = {.s = malloc(4096), .cap = 4096, .ok = 1};
    if (!o.s) return NULL;
    o.s[0] = 0;
    put(&o, "# HELP lathe_inference_requests_total Inference requests answered, by HTTP status.\n"
            "# TYPE lathe_inference_requests_total counter\n");
    for (int c = 0; c < N_CODES; c++)
        put(&o, "lathe_inference_requests_total{code=\"%d\"} %llu\n", codes[c],
            (unsigned long long)s.by_code[c]);
    put(&o, "lathe_inference_requests_total{code=\"other\"} %llu\n", (unsigned long long)s.by_code[N_CODES]);
    put(&o, "# HELP lathe_inference_errors_total Failed inference requests, by class.\n"
            "# TYPE lathe_inference_errors_total counter\n");
    for (int c = 1; c < LT_INFER_ERR_COUNT; c++)
        put(&o, "lathe_inference_errors_total{class=\"%s\"} %llu\n",
            lt_infer_error_class_str((lt_infer_error_class)c), (unsigned long long)s.by_class[c]);
    put(&o,
        "# HELP lathe_inference_instances_total Instances (images) predicted.\n"
        "# TYPE lathe_inference_instances_total counter\nlathe_inference_instances_total %llu\n",
        (unsigned long long)s.instances);
    put(&o, "# HELP lathe_inference_request_duration_seconds Time from a request's body received to its "
            "response.\n"
            "# TYPE lathe_inference_request_duration_seconds histogram\n");
    uint64_t cum = 0;
    for (int b = 0; b < N_BUCKETS; b++) {
        cum += s.hist[b];
        put(&o, "lathe_inference_request_duration_seconds_bucket{le=\"%g\"} %llu\n", buckets[b],
            (unsigned long long)cum);
    }
    cum += s.hist[N_BUCKETS];
    put(&o, "lathe_inference_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    put(&o, "lathe_inference_request_duration_seconds_sum %.9g\n", s.sum_seconds);
    put(&o, "lathe_inference_request_duration_seconds_count %llu\n", (unsigned long long)s.count);
    if (batcher) {
        put(&o,
            "# HELP lathe_inference_batches_total Forward batches run.\n"
            "# TYPE lathe_inference_batches_total counter\nlathe_inference_batches_total %llu\n",
            (unsigned long long)batcher->batches);
        put(&o,
            "# HELP lathe_inference_batch_images_total Images in all batches (mean batch size = this / "
            "batches).\n"
            "# TYPE lathe_inference_batch_images_total counter\nlathe_inference_batch_images_total %llu\n",
            (unsigned long long)batcher->images);
        put(&o,
            "# HELP lathe_inference_queued_images Images waiting for a batch.\n"
            "# TYPE lathe_inference_queued_images gauge\nlathe_inference_queued_images %d\n",
            batcher->queued_images);
    }
    if (!o.ok) {
        free(o.s);
        return NULL;
    }
    return o.s;
}
