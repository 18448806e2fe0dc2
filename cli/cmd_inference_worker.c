/* cmd_inference_worker.c - `lathe inference-worker`: serves real-time inference requests from the endpoint
 * topics (inference/kafka_server.h), configured by flags, environment and YAML. */
#define _GNU_SOURCE
#include "commands.h"
#include "inference/kafka_server.h"
#include "messaging/options.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const lt_opt_spec specs[] = {
    {"config", "LATHE_INFERENCE_CONFIG", "FILE", NULL,
     "YAML file with any of these options (keys = option names)"},
    {"brokers", "LATHE_KAFKA_BROKERS", "LIST", "localhost:9092", "Kafka bootstrap servers (host:port,...)"},
    {"topic-prefix", "LATHE_TOPIC_PREFIX", "P", "lathe.", "prefix of the topic names"},
    {"storage", "LATHE_STORAGE", "URI", NULL, "storage root for relative model URIs (path, file://, s3://)"},
    {"worker-id", "LATHE_WORKER_ID", "ID", NULL, "id in logs (default <hostname>-<pid>)"},
    {"group", "LATHE_INFERENCE_GROUP", "NAME", NULL, "consumer group (default <topic-prefix>inference)"},
    {"cache-dir", "LATHE_MODEL_CACHE", "DIR", NULL,
     "local folder for models synced down from S3 (default $TMPDIR/lathe-models)"},
    {"threads", NULL, "N", "16", "requests in progress at once (each waits on the batcher)"},
    {"max-queue", NULL, "N", "1024", "requests waiting for a thread beyond which new ones get 503"},
    {"max-batch", NULL, "N", "8", "images per forward pass"},
    {"max-delay-ms", NULL, "MS", "2", "how long a batch waits for more requests after its first (0: none)"},
    {"max-image-mb", NULL, "MB", "20", "largest image file in a request"},
    {"max-megapixels", NULL, "N", "50", "largest image in pixels (millions)"},
    {"fetch-wait-ms", NULL, "MS", "100",
     "consumer fetch.wait.max.ms (a real broker answers at once when a request arrives; use 1 against the "
     "mock cluster)"},
    {"metadata-refresh-ms", NULL, "MS", "1000", "how often new endpoint topics are looked for"},
    {"quiet", NULL, NULL, NULL, "no informational lines on stderr"},
};

static const char summary[] =
    "Serves real-time inference: joins the group <prefix>inference on every <prefix>endpoint.* topic, loads\n"
    "each request's model once (storage URI; s3:// is synced down to --cache-dir), batches requests that\n"
    "arrive together and replies on the gateway's reply topic with exactly `lathe serve`'s response\n"
    "(docs/inference.md, docs/messages.md). At most once: a request in progress when a worker dies is lost\n"
    "and its caller times out. SIGTERM/SIGINT: finish the requests taken, leave the group, exit 0.\n"
    "S3 models: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL.";

int cmd_inference_worker(int argc, char **argv) {
    const int n = (int)(sizeof specs / sizeof *specs);
    lt_opts opts;
    lt_err err = {{0}};
    if (lt_opts_parse(&opts, specs, n, argc, argv, &err) != LT_OK)
        return cli_usage_error("inference-worker", "%s", err.msg);
    if (opts.help) {
        lt_opts_print_help(stdout, "inference-worker", summary, specs, n);
        lt_opts_free(&opts);
        return 0;
    }
    lt_kserve_opts o;
    lt_kserve_opts_init(&o);
    int64_t threads = o.threads, queue = o.max_queue, batch = 8, delay = 2, image_mb = 20, mpix = 50,
            fetch = o.fetch_wait_ms, refresh = o.metadata_refresh_ms;
    if (lt_kafka_config_init(&o.kafka, &err) != LT_OK ||
        lt_kafka_config_set(&o.kafka, lt_opts_get(&opts, "brokers"), lt_opts_get(&opts, "topic-prefix"),
                            &err) != LT_OK ||
        lt_opts_int(&opts, "threads", 1, 1024, &threads, &err) != LT_OK ||
        lt_opts_int(&opts, "max-queue", 1, 1000000, &queue, &err) != LT_OK ||
        lt_opts_int(&opts, "max-batch", 1, 256, &batch, &err) != LT_OK ||
        lt_opts_int(&opts, "max-delay-ms", 0, 10000, &delay, &err) != LT_OK ||
        lt_opts_int(&opts, "max-image-mb", 1, 4096, &image_mb, &err) != LT_OK ||
        lt_opts_int(&opts, "max-megapixels", 1, 10000, &mpix, &err) != LT_OK ||
        lt_opts_int(&opts, "fetch-wait-ms", 1, 10000, &fetch, &err) != LT_OK ||
        lt_opts_int(&opts, "metadata-refresh-ms", 100, 3600000, &refresh, &err) != LT_OK) {
        lt_opts_free(&opts);
        return cli_usage_error("inference-worker", "%s", err.msg);
    }
    o.storage = lt_opts_get(&opts, "storage");
    o.worker_id = lt_opts_get(&opts, "worker-id");
    o.group_id = lt_opts_get(&opts, "group");
    o.cache_dir = lt_opts_get(&opts, "cache-dir");
    o.threads = (int)threads;
    o.max_queue = (int)queue;
    o.serve.batch.max_batch = (int)batch;
    o.serve.batch.max_delay_ms = (int)delay;
    o.serve.limits.max_image_bytes = (size_t)image_mb * 1000 * 1000;
    o.serve.limits.max_pixels = mpix * 1000 * 1000;
    o.fetch_wait_ms = (int)fetch;
    o.metadata_refresh_ms = (int)refresh;
    o.quiet = lt_opts_bool(&opts, "quiet");
    o.stop = cli_stop_on_signals();

    lt_status st = lt_kserve_serve(&o, &err);
    lt_opts_free(&opts);
    if (st != LT_OK) return cli_fail("inference-worker", err.msg);
    return 0;
}
