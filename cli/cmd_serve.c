/* cmd_serve.c - `lathe serve`: one model over HTTP, without Kafka, for one machine. */
#include "commands.h"

#include "inference/http.h"
#include "inference/model.h"
#include "inference/service.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char serve_help[] =
    "usage: lathe serve --model PATH --port N [--host ADDR] [--max-batch N] [--max-delay-ms N]\n"
    "                   [--max-request-bytes N] [--max-image-bytes N] [--max-pixels N] [--max-instances N]\n"
    "                   [--max-queue N] [--max-connections N]\n"
    "\n"
    "Serves a model directory over HTTP until SIGTERM or SIGINT (docs/inference.md):\n"
    "  POST /inference (alias /v1/models/default/inference)  {\"instances\": [{\"data\": \"<base64 "
    "image>\"}]}\n"
    "  GET  /v1/health, GET /metrics (Prometheus)\n"
    "Prints \"listening on http://HOST:PORT\" on stdout once it accepts requests.\n"
    "\n"
    "  --model PATH             a model directory (lathe's training output or a transformers directory)\n"
    "  --port N                 port to listen on; 0 picks a free one\n"
    "  --host ADDR              address to bind (default 127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --max-batch N            images per forward pass (default 8)\n"
    "  --max-delay-ms N         how long a batch waits for more requests (default 2; 0 = never wait)\n"
    "  --max-request-bytes N    largest request body (default 64000000; over it: 413)\n"
    "  --max-image-bytes N      largest image file in an instance (default 20000000; 413)\n"
    "  --max-pixels N           largest width x height of an image (default 50000000; 413)\n"
    "  --max-instances N        most instances in one request (default 64; 413)\n"
    "  --max-queue N            images waiting beyond which requests get 503 (default 1024)\n"
    "  --max-connections N      concurrent connections (default 256)\n";

/* Parses a whole non-negative integer no larger than max; -1 otherwise. */
static long long parse_count(const char *s, long long max) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max) return -1;
    return v;
}

static const char *opt_name(const struct option *o, int c) {
    for (; o->name; o++)
        if (o->val == c) return o->name;
    return "?";
}

int cmd_serve(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                         {"port", required_argument, 0, 'p'},
                                         {"host", required_argument, 0, 'H'},
                                         {"max-batch", required_argument, 0, 'b'},
                                         {"max-delay-ms", required_argument, 0, 'd'},
                                         {"max-request-bytes", required_argument, 0, 'r'},
                                         {"max-image-bytes", required_argument, 0, 'i'},
                                         {"max-pixels", required_argument, 0, 'x'},
                                         {"max-instances", required_argument, 0, 'n'},
                                         {"max-queue", required_argument, 0, 'q'},
                                         {"max-connections", required_argument, 0, 'c'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *model_dir = NULL, *port_s = NULL;
    lt_infer_service_opts so = {.batch = {.max_batch = 8, .max_delay_ms = 2}};
    lt_infer_http_opts ho = {.host = "127.0.0.1"};
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        long long v = 0;
        if (c > 0 && strchr("bdrixnqc", c)) { /* the numeric options: d may be 0, the others must be >= 1 */
            v = parse_count(optarg, strchr("rix", c) ? (1LL << 40) : 1000000);
            if (v < 0 || (v == 0 && c != 'd'))
                return cli_usage_error("serve", "--%s must be a whole number >= %d, got '%s'",
                                       opt_name(opts, c), c != 'd', optarg);
        }
        switch (c) {
        case 'm':
            model_dir = optarg;
            break;
        case 'p':
            port_s = optarg;
            break;
        case 'H':
            ho.host = optarg;
            break;
        case 'b':
            so.batch.max_batch = (int)v;
            break;
        case 'd':
            so.batch.max_delay_ms = (int)v;
            break;
        case 'r':
            so.limits.max_request_bytes = (size_t)v;
            break;
        case 'i':
            so.limits.max_image_bytes = (size_t)v;
            break;
        case 'x':
            so.limits.max_pixels = (int64_t)v;
            break;
        case 'n':
            so.limits.max_instances = (int)v;
            break;
        case 'q':
            so.batch.max_queue = (int)v;
            break;
        case 'c':
            ho.max_connections = (int)v;
            break;
        case 'h':
            fputs(serve_help, stdout);
            return 0;
        default:
            return cli_usage_error("serve", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (!model_dir) return cli_usage_error("serve", "--model is required");
    if (!port_s) return cli_usage_error("serve", "--port is required");
    long long port = parse_count(port_s, 65535);
    if (port < 0) return cli_usage_error("serve", "--port must be 0..65535, got '%s'", port_s);
    ho.port = (int)port;

    /* Block the stop signals before any thread starts, so every thread inherits the mask and only
     * sigsuspend below takes them; SIGPIPE from a client that went away must not kill the server. */
    volatile sig_atomic_t *stop_requested = cli_stop_on_signals();
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);

    lt_err err = {{0}};
    lt_infer_model *model = NULL;
    lt_infer_service *svc = NULL;
    lt_infer_http *http = NULL;
    int rc = 0;
    if (lt_infer_model_load(model_dir, so.batch.max_batch, &model, &err) != LT_OK ||
        lt_infer_service_create(model, &so, &svc, &err) != LT_OK ||
        lt_infer_http_start(svc, &ho, &http, &err) != LT_OK) {
        rc = cli_fail("serve", err.msg);
    } else {
        printf("listening on http://%s:%d (%s model %s, max batch %d, max delay %d ms)\n", ho.host,
               lt_infer_http_port(http), lt_infer_algorithm_str(lt_infer_model_algorithm(model)), model_dir,
               so.batch.max_batch, so.batch.max_delay_ms);
        fflush(stdout);
        while (!*stop_requested)
            sigsuspend(&old);
        fprintf(stderr, "lathe serve: stopping\n");
    }
    lt_infer_http_stop(http); /* requests in progress finish first */
    lt_infer_service_destroy(svc);
    lt_infer_model_destroy(model);
    return rc;
}
