/* bench_dispatch - dispatch throughput of tiny jobs through the scheduler and the workers (bench/README.md).
 *
 * Starts in one process what `lathe standalone` runs (librdkafka's mock cluster on loopback, the scheduler's
 * HTTP API, K worker threads over a temporary local storage folder), then C client threads POST N jobs of the
 * benchmark-only algorithm "noop" over HTTP (keep-alive). A noop job makes the whole trip of a training
 * (HTTP validation, record to <p>jobs.state, <p>jobs, a worker's consumer, its storage bookkeeping, events
 * back, folded into the record, offset commit) without training anything. Reported:
 *   submit    jobs/s accepted by the API (201 = record and job message acknowledged by the brokers)
 *   dispatch  jobs/s from the first POST until every job's record is in a final state
 * With --url the jobs go to a running scheduler (started with --allow-noop) instead, e.g. the multi-process
 * setup of tests/e2e.
 *
 * usage: bench_dispatch [--jobs N] [--workers K] [--clients C] [--partitions P] [--url URL] */
#define _GNU_SOURCE
#include "messaging/mock.h"
#include "scheduler/scheduler.h"
#include "worker/worker.h"

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    char *data;
    size_t len;
} buf;

static size_t on_body(char *p, size_t size, size_t n, void *ctx) {
    buf *b = ctx;
    char *d = realloc(b->data, b->len + size * n + 1);
    if (!d) return 0;
    memcpy(d + b->len, p, size * n);
    b->len += size * n;
    d[b->len] = 0;
    b->data = d;
    return size * n;
}

typedef struct {
    const char *url;
    const char *token;
    atomic_int *next; /* jobs handed out so far */
    int total;
    int accepted, rejected;
} client_arg;

static void *client(void *p) {
    client_arg *a = p;
    CURL *h = curl_easy_init();
    char url[512], auth[300];
    snprintf(url, sizeof url, "%s/v1/trainings", a->url);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (a->token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", a->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "{\"algorithm\":\"noop\",\"dataset\":\"none\"}");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    while (atomic_fetch_add(a->next, 1) < a->total) {
        b.len = 0;
        long code = 0;
        if (curl_easy_perform(h) == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (code == 201)
            a->accepted++;
        else if (a->rejected++ == 0)
            fprintf(stderr, "bench_dispatch: POST answered %ld: %s\n", code, b.data ? b.data : "");
    }
    free(b.data);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(h);
    return NULL;
}

/* Jobs in a final state according to /metrics, or -1 when it can't be read. */
static long final_jobs(const char *base, long *failed) {
    char url[512];
    snprintf(url, sizeof url, "%s/metrics", base);
    CURL *h = curl_easy_init();
    buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long n = -1;
    if (curl_easy_perform(h) == CURLE_OK && b.data) {
        n = 0;
        const char *states[] = {"SUCCEEDED", "FAILED", "CANCELLED"};
        for (int i = 0; i < 3; i++) {
            char key[64];
            snprintf(key, sizeof key, "lathe_jobs{state=\"%s\"} ", states[i]);
            const char *p = strstr(b.data, key);
            long v = p ? atol(p + strlen(key)) : 0;
            n += v;
            if (i == 1 && failed) *failed = v;
        }
    }
    free(b.data);
    curl_easy_cleanup(h);
    return n;
}

/* The lathe_jobs gauge of one state, -1 when /metrics can't be read. */
static long state_count(const char *base, const char *state) {
    char url[512], key[64];
    snprintf(url, sizeof url, "%s/metrics", base);
    snprintf(key, sizeof key, "lathe_jobs{state=\"%s\"} ", state);
    CURL *h = curl_easy_init();
    buf b = {0};
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    long n = -1;
    const char *p;
    if (curl_easy_perform(h) == CURLE_OK && b.data && (p = strstr(b.data, key))) n = atol(p + strlen(key));
    free(b.data);
    curl_easy_cleanup(h);
    return n;
}

/* Submits n jobs with c clients and waits until they are all final. The times and counts go to the
 * non-NULL pointers. Returns 0, or -1 when /metrics can't be read or the jobs don't end within 300 s. */
static int run_batch(const char *url, int n, int c, int *accepted_out, double *t_submit, double *t_all,
                     long *failed_out) {
    long failed0 = 0, failed = 0;
    long before = final_jobs(url, &failed0);
    if (before < 0) {
        fprintf(stderr, "bench_dispatch: cannot read %s/metrics\n", url);
        return -1;
    }
    atomic_int next = 0;
    client_arg *ca = calloc((size_t)c, sizeof *ca);
    pthread_t *ct = calloc((size_t)c, sizeof *ct);
    double t0 = now_s();
    for (int i = 0; i < c; i++) {
        ca[i] = (client_arg){.url = url, .token = getenv("LATHE_API_TOKEN"), .next = &next, .total = n};
        pthread_create(&ct[i], NULL, client, &ca[i]);
    }
    int accepted = 0;
    for (int i = 0; i < c; i++) {
        pthread_join(ct[i], NULL);
        accepted += ca[i].accepted;
    }
    free(ca);
    free(ct);
    double t1 = now_s(), deadline = t1 + 300;
    long done = 0;
    double next_report = t1 + 1;
    while ((done = final_jobs(url, &failed) - before) < accepted && now_s() < deadline) {
        usleep(5000);
        if (getenv("BENCH_VERBOSE") && now_s() > next_report) {
            next_report += 1;
            long queued = state_count(url, "QUEUED"), running = state_count(url, "RUNNING");
            fprintf(stderr, "bench_dispatch: %.0f s: %ld of %d final, %ld queued, %ld running\n",
                    now_s() - t0, done, accepted, queued, running);
        }
    }
    if (accepted_out) *accepted_out = accepted;
    if (t_submit) *t_submit = t1 - t0;
    if (t_all) *t_all = now_s() - t0;
    if (failed_out) *failed_out = failed - failed0;
    if (done < accepted) {
        fprintf(stderr, "bench_dispatch: only %ld of %d jobs ended within 300 s\n", done, accepted);
        return -1;
    }
    return 0;
}

/* Adds a librdkafka property for the in-process workers' consumers: a short session, so a group whose
 * members all join at once settles in seconds (the mock cluster otherwise waits out 45 s sessions). */
static void add_prop(lt_kafka_config *c, const char *name, const char *value) {
    if (c->n_props >= LT_KAFKA_MAX_PROPS) return;
    snprintf(c->props[c->n_props].name, sizeof c->props[c->n_props].name, "%s", name);
    snprintf(c->props[c->n_props].value, sizeof c->props[c->n_props].value, "%s", value);
    c->n_props++;
}

static void *worker_main(void *p) {
    lt_err err = {{0}};
    if (lt_worker_run(p, &err) != LT_OK) fprintf(stderr, "bench_dispatch: worker: %s\n", err.msg);
    return NULL;
}

int main(int argc, char **argv) {
    int jobs = 3000, workers = 8, clients = 16, partitions = 0;
    const char *url = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--jobs"))
            jobs = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--partitions"))
            partitions = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--url"))
            url = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_dispatch [--jobs N] [--workers K] [--clients C] [--partitions P] "
                            "[--url URL]\n");
            return 2;
        }
    }
    if (jobs < 1 || workers < 1 || workers > 256 || clients < 1 || clients > 256) return 2;
    if (partitions < workers) partitions = workers < 8 ? 8 : workers;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    lt_err err = {{0}};
    lt_kafka_mock *mock = NULL;
    lt_scheduler *s = NULL;
    pthread_t *wt = NULL;
    lt_worker_opts *wo = NULL;
    volatile sig_atomic_t stop = 0;
    char dir[] = "/tmp/lathe-bench-dispatch.XXXXXX", base[64];
    int rc = 1;
    if (!url) {
        if (!mkdtemp(dir)) return 1;
        lt_kafka_config kc;
        lt_kafka_config_init(&kc, NULL);
        kc.jobs_partitions = partitions;
        if (!(mock = lt_kafka_mock_new(1, &kc, &err))) goto out;
        lt_kafka_config_set(&kc, lt_kafka_mock_bootstraps(mock), NULL, NULL);
        lt_scheduler_opts so;
        lt_scheduler_opts_init(&so);
        so.kafka = kc;
        so.port = 0;
        so.bind = "127.0.0.1";
        so.storage = dir;
        so.create_topics = 0;
        so.allow_noop = 1;
        so.quiet = 1;
        if (!(s = lt_scheduler_start(&so, &err))) goto out;
        snprintf(base, sizeof base, "http://127.0.0.1:%d", lt_scheduler_port(s));
        url = base;
        wt = calloc((size_t)workers, sizeof *wt);
        wo = calloc((size_t)workers, sizeof *wo);
        static char ids[256][32], work[256][600];
        for (int i = 0; i < workers; i++) {
            lt_worker_opts_init(&wo[i]);
            wo[i].kafka = kc;
            add_prop(&wo[i].kafka, "session.timeout.ms", "6000");
            add_prop(&wo[i].kafka, "heartbeat.interval.ms", "500");
            /* BENCH_WORKER_DEBUG=fetch,consumer,...: librdkafka debug contexts for the first worker only */
            if (i == 0 && getenv("BENCH_WORKER_DEBUG"))
                add_prop(&wo[i].kafka, "debug", getenv("BENCH_WORKER_DEBUG"));
            snprintf(ids[i], sizeof ids[i], "bench-%d", i);
            snprintf(work[i], sizeof work[i], "%s/work-%d", dir, i);
            wo[i].worker_id = ids[i];
            wo[i].work_dir = work[i];
            wo[i].storage = dir;
            wo[i].max_attempts = 1;
            wo[i].stop = &stop;
            pthread_create(&wt[i], NULL, worker_main, &wo[i]);
        }
        while (!lt_scheduler_ready(s))
            usleep(10000);
        sleep(4); /* let the workers join their group before the clock starts */
    }
    /* warm-up: a few jobs per worker, until they are all final, so the group has settled (every worker has
       its partitions) and connections are open before the clock starts */
    if (run_batch(url, workers * 4, clients, NULL, NULL, NULL, NULL) != 0) goto out;
    double t_submit = 0, t_all = 0;
    long done = 0, failed = 0;
    int accepted = 0;
    if (run_batch(url, jobs, clients, &accepted, &t_submit, &t_all, &failed) != 0) goto out;
    done = accepted;
    printf("jobs %d accepted %d, workers %d, partitions %d, clients %d\n", jobs, accepted, workers,
           partitions, clients);
    printf("submit   %.0f jobs/s (%.2f s)\n", accepted / t_submit, t_submit);
    printf("dispatch %.0f jobs/s (%.2f s until %ld records were final; %ld of them FAILED)\n", done / t_all,
           t_all, done, failed);
    rc = accepted == jobs ? 0 : 1;
out:
    if (rc && err.msg[0]) fprintf(stderr, "bench_dispatch: %s\n", err.msg);
    stop = 1;
    for (int i = 0; wt && i < workers; i++)
        pthread_join(wt[i], NULL);
    lt_scheduler_stop(s);
    lt_kafka_mock_destroy(mock);
    free(wt);
    free(wo);
    if (mock) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) fprintf(stderr, "bench_dispatch: could not remove %s\n", dir);
    }
    curl_global_cleanup();
    return rc;
}
