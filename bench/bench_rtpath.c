/* bench_rtpath.c - latency and throughput of real-time inference through Kafka (the scheduler's gateway ->
 * endpoint topic -> inference worker -> reply topic) against `lathe serve`'s HTTP server, on the same model
 * and request. A benchmark, not a test; figures in bench/README.md.
 *
 *   build/bench/bench_rtpath [--model DIR] [--request FILE] [--requests N] [--concurrency C] [--workers W]
 *
 * Everything runs in this process: librdkafka's mock cluster, W inference workers (inference/kafka_server.h,
 * fetch.wait.max.ms=1 as `lathe standalone` uses), one gateway, and lt_infer_http (the server of `lathe
 * serve`) with a minimal HTTP/1.1 client (one connection per request, as curl does). The gateway is not yet
 * behind the scheduler's HTTP routes, so the Kafka figures are lt_gateway_infer calls: add one local HTTP
 * hop (the HTTP figures' own overhead over a direct call) for the full route. Without --model a tiny
 * classifier (ResNet-50 at 32 x 32, 3 labels) is made in /tmp; without --request the guide's request of the
 * tests (tests/golden/inference_request.json: a 7 x 5 PNG) is used, so run it from the repository root. */
#define _GNU_SOURCE
#include "inference/http.h"
#include "inference/kafka_server.h"
#include "io/fsutil.h"
#include "messaging/mock.h"
#include "scheduler/gateway.h"
#include "tasks/cls_model.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

typedef struct {
    int http; /* 1: lathe serve over HTTP; 0: the gateway */
    int port;
    lt_gateway *gw;
    const char *model;
    const char *body;
    size_t len;
    int n;       /* requests of this thread */
    double *lat; /* (n) milliseconds */
    int errors;
} client;

/* One POST /inference on a fresh connection; 1 when the answer is a 200. */
static int http_post(int port, const char *body, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1, ok = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char head[256];
        int hn = snprintf(head, sizeof head,
                          "POST /inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          len);
        if (write(fd, head, (size_t)hn) == hn && write(fd, body, len) == (ssize_t)len) {
            char buf[65536];
            size_t got = 0;
            ssize_t r;
            while ((r = read(fd, buf + got, sizeof buf - 1 - got)) > 0 && got < sizeof buf - 1)
                got += (size_t)r;
            buf[got] = 0;
            ok = strncmp(buf, "HTTP/1.1 200", 12) == 0;
        }
    }
    close(fd);
    return ok;
}

static void *client_main(void *arg) {
    client *c = arg;
    for (int i = 0; i < c->n; i++) {
        double t0 = now_ms();
        int ok;
        if (c->http) {
            ok = http_post(c->port, c->body, c->len);
        } else {
            int status = 0;
            char *resp = NULL;
            size_t rlen = 0;
            lt_err err = {{0}};
            ok = lt_gateway_infer(c->gw, "bench", "default", c->model, c->body, c->len, 10000, &status, &resp,
                                  &rlen, &err) == LT_OK &&
                 status == 200;
            free(resp);
        }
        c->lat[i] = now_ms() - t0;
        c->errors += !ok;
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Runs n requests over `conc` threads and prints one line. */
static void run(const char *label, int http, int port, lt_gateway *gw, const char *model, const char *body,
                size_t len, int n, int conc) {
    client cs[64];
    pthread_t th[64];
    double *lat = calloc((size_t)n, sizeof *lat);
    int per = n / conc, errors = 0;
    double t0 = now_ms();
    for (int i = 0; i < conc; i++) {
        cs[i] = (client){http, port, gw, model, body, len, per, lat + (size_t)i * per, 0};
        pthread_create(&th[i], NULL, client_main, &cs[i]);
    }
    for (int i = 0; i < conc; i++) {
        pthread_join(th[i], NULL);
        errors += cs[i].errors;
    }
    double wall = now_ms() - t0;
    int total = per * conc;
    qsort(lat, (size_t)total, sizeof *lat, cmp);
    printf("%-28s c=%-2d n=%-5d p50 %7.2f ms  p99 %7.2f ms  %8.1f req/s  errors %d\n", label, conc, total,
           lat[total / 2], lat[(int)(total * 0.99)], total / (wall / 1e3), errors);
    fflush(stdout);
    free(lat);
}

typedef struct {
    lt_kserve *k;
    pthread_t th;
} kworker;

static void *kworker_main(void *arg) {
    kworker *w = arg;
    lt_err err = {{0}};
    lt_kserve_run(w->k, &err);
    return NULL;
}

int main(int argc, char **argv) {
    const char *model = NULL, *request = "tests/golden/inference_request.json";
    int n = 400, conc = 1, workers = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--model"))
            model = argv[i + 1];
        else if (!strcmp(argv[i], "--request"))
            request = argv[i + 1];
        else if (!strcmp(argv[i], "--requests"))
            n = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency"))
            conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "unknown flag %s\n", argv[i]);
            return 2;
        }
    }
    if (conc < 1 || conc > 64 || workers < 1 || workers > 8 || n < conc) {
        fprintf(stderr, "--concurrency 1..64, --workers 1..8, --requests >= concurrency\n");
        return 2;
    }
    lt_err err = {{0}};
    char tmp[] = "/tmp/lathe-bench-rtpath-XXXXXX", mdir[600];
    if (!mkdtemp(tmp)) return 1;
    if (!model) {
        char *labels[3] = {"cat", "dog", "bird"};
        lt_cls_model ref;
        snprintf(mdir, sizeof mdir, "%s/model", tmp);
        if (lt_cls_model_create(&ref, labels, 3, 32, 7, &err) != LT_OK ||
            lt_cls_model_save(&ref, mdir, NULL, &err) != LT_OK) {
            fprintf(stderr, "model: %s\n", err.msg);
            return 1;
        }
        lt_cls_model_free(&ref);
        model = mdir;
    }
    char *body = NULL;
    size_t len = 0;
    if (lt_read_file(request, &body, &len, 64 << 20, &err) != LT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }

    /* lathe serve's server on the model */
    lt_infer_model *m = NULL;
    lt_infer_service *svc = NULL;
    lt_infer_http *h = NULL;
    lt_infer_service_opts so = {.batch = {.max_batch = 8, .max_delay_ms = 2}};
    lt_infer_http_opts ho = {.port = 0};
    if (lt_infer_model_load(model, 8, &m, &err) != LT_OK ||
        lt_infer_service_create(m, &so, &svc, &err) != LT_OK ||
        lt_infer_http_start(svc, &ho, &h, &err) != LT_OK) {
        fprintf(stderr, "serve: %s\n", err.msg);
        return 1;
    }

    /* the Kafka path */
    lt_kafka_config kc;
    lt_kafka_config_init(&kc, NULL);
    lt_kafka_mock *mock = lt_kafka_mock_new(1, &kc, &err);
    if (!mock) return 1;
    lt_kafka_config_set(&kc, lt_kafka_mock_bootstraps(mock), NULL, &err);
    snprintf(kc.props[kc.n_props].name, sizeof kc.props[0].name, "session.timeout.ms");
    snprintf(kc.props[kc.n_props++].value, sizeof kc.props[0].value, "6000");
    snprintf(kc.props[kc.n_props].name, sizeof kc.props[0].name, "log_level");
    snprintf(kc.props[kc.n_props++].value, sizeof kc.props[0].value, "3");
    lt_gateway_opts go;
    lt_gateway_opts_init(&go);
    go.fetch_wait_ms = 1;
    lt_gateway *gw = NULL;
    if (lt_gateway_new_opts(&gw, &kc, NULL, &go, &err) != LT_OK ||
        lt_gateway_create_endpoint(gw, "bench", 4, &err) != LT_OK) {
        fprintf(stderr, "gateway: %s\n", err.msg);
        return 1;
    }
    volatile sig_atomic_t stop = 0;
    kworker kw[8];
    for (int i = 0; i < workers; i++) {
        lt_kserve_opts o;
        lt_kserve_opts_init(&o);
        o.kafka = kc;
        char id[32];
        snprintf(id, sizeof id, "bench-%d", i + 1);
        o.worker_id = id;
        o.fetch_wait_ms = 1;
        o.metadata_refresh_ms = 200;
        o.quiet = 1;
        o.serve = so;
        o.stop = &stop;
        if (lt_kserve_new(&kw[i].k, &o, &err) != LT_OK) {
            fprintf(stderr, "worker: %s\n", err.msg);
            return 1;
        }
        pthread_create(&kw[i].th, NULL, kworker_main, &kw[i]);
    }
    /* every worker loaded the model and the group settled: loads until each answered once */
    for (int i = 0; i < 20 * workers; i++)
        lt_gateway_load(gw, "bench", "default", model, 30000, &err);
    run("warm-up http", 1, lt_infer_http_port(h), NULL, model, body, len, 50, 1);
    run("warm-up kafka", 0, 0, gw, model, body, len, 50, 1);

    char label[64];
    run("lathe serve (HTTP)", 1, lt_infer_http_port(h), NULL, model, body, len, n, conc);
    snprintf(label, sizeof label, "gateway+Kafka, %d worker(s)", workers);
    run(label, 0, 0, gw, model, body, len, n, conc);

    stop = 1;
    for (int i = 0; i < workers; i++) {
        pthread_join(kw[i].th, NULL);
        lt_kserve_free(kw[i].k);
    }
    lt_gateway_free(gw);
    lt_kafka_mock_destroy(mock);
    lt_infer_http_stop(h);
    lt_infer_service_destroy(svc);
    lt_infer_model_destroy(m);
    free(body);
    lt_remove_tree(tmp, NULL);
    return 0;
}
