/* cmd_worker.c - `lathe worker`: a job worker (worker/worker.h) configured by flags, environment and YAML. */
#define _GNU_SOURCE
#include "commands.h"
#include "messaging/options.h"
#include "worker/worker.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Set by SIGTERM/SIGINT; the worker stops its job at the next step, checkpoints, and leaves the group. */

static const lt_opt_spec specs[] = {
    {"config", "LATHE_WORKER_CONFIG", "FILE", NULL,
     "YAML file with any of these options (keys = option names)"},
    {"brokers", "LATHE_KAFKA_BROKERS", "LIST", "localhost:9092", "Kafka bootstrap servers (host:port,...)"},
    {"topic-prefix", "LATHE_TOPIC_PREFIX", "P", "lathe.", "prefix of the topic names"},
    {"storage", "LATHE_STORAGE", "URI", NULL,
     "storage root for relative data set/output URIs (path, file://, s3://)"},
    {"worker-id", "LATHE_WORKER_ID", "ID", NULL, "worker id in events and logs (default <hostname>-<pid>)"},
    {"group", "LATHE_WORKER_GROUP", "NAME", NULL, "consumer group (default <topic-prefix>workers)"},
    {"work-dir", "LATHE_WORK_DIR", "DIR", NULL,
     "local folder for data sets, outputs and the download cache "
     "(default $TMPDIR/lathe-worker-<worker-id>)"},
    {"max-attempts", "LATHE_WORKER_MAX_ATTEMPTS", "N", "5", "tries of a job that fails transiently"},
    {"retry-ms", NULL, "MS", "1000", "first backoff between tries (doubles, at most 60 s)"},
    {"storage-retries", NULL, "N", "5", "retries inside each storage request before a try fails"},
    {"progress-ms", NULL, "MS", "1000", "at most one progress event per interval"},
    {"poll-ms", NULL, "MS", "100", "consumer poll timeout (1..100)"},
    {"max-poll-interval-ms", NULL, "MS", "300000", "Kafka max.poll.interval.ms"},
    {"message-timeout-ms", NULL, "MS", "60000", "how long an event may take to reach the brokers"},
    {"checkpoint-steps", NULL, "N", "0", "also checkpoint every N steps (0: at epoch ends)"},
    {"batch-size", NULL, "N", "8", "batch inference: images per forward pass (1..64)"},
    {"batch-checkpoint-images", NULL, "N", "256", "batch inference: checkpoint at least every N images"},
    {"keep-work", NULL, NULL, NULL, "keep each job's local folder after it ends"},
    {"create-topics", NULL, NULL, NULL,
     "create the topics at start (jobs/events with --partitions partitions)"},
    {"partitions", NULL, "N", "8", "partitions of the jobs and events topics, with --create-topics"},
};

static const char summary[] =
    "Runs training and batch-inference jobs from Kafka: joins the worker group on <prefix>jobs, downloads "
    "data sets from "
    "storage,\n"
    "trains, uploads checkpoints and models, reports events on <prefix>events (docs/messages.md).\n"
    "Other librdkafka settings: LATHE_KAFKA_<PROPERTY> variables, e.g. "
    "LATHE_KAFKA_SECURITY_PROTOCOL=SASL_SSL,\n"
    "LATHE_KAFKA_SESSION_TIMEOUT_MS=10000. S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,\n"
    "AWS_ENDPOINT_URL. SIGTERM/SIGINT: checkpoint the running job, leave it for another worker, exit 0.";

int cmd_worker(int argc, char **argv) {
    const int n = (int)(sizeof specs / sizeof *specs);
    lt_opts opts;
    lt_err err = {{0}};
    if (lt_opts_parse(&opts, specs, n, argc, argv, &err) != LT_OK)
        return cli_usage_error("worker", "%s", err.msg);
    if (opts.help) {
        lt_opts_print_help(stdout, "worker", summary, specs, n);
        lt_opts_free(&opts);
        return 0;
    }
    lt_worker_opts o;
    lt_worker_opts_init(&o);
    int64_t max_attempts = o.max_attempts, retry = o.retry_base_ms, progress = o.progress_interval_ms,
            poll = o.poll_ms, max_poll = o.max_poll_interval_ms, msg_timeout = o.message_timeout_ms,
            ckpt = o.checkpoint_steps, sretries = 5, partitions = 8, bsize = o.batch_size,
            bckpt = o.batch_checkpoint_images;
    if (lt_kafka_config_init(&o.kafka, &err) != LT_OK ||
        lt_kafka_config_set(&o.kafka, lt_opts_get(&opts, "brokers"), lt_opts_get(&opts, "topic-prefix"),
                            &err) != LT_OK ||
        lt_opts_int(&opts, "max-attempts", 1, 1000, &max_attempts, &err) != LT_OK ||
        lt_opts_int(&opts, "retry-ms", 1, 3600000, &retry, &err) != LT_OK ||
        lt_opts_int(&opts, "storage-retries", 0, 100, &sretries, &err) != LT_OK ||
        lt_opts_int(&opts, "partitions", 1, 10000, &partitions, &err) != LT_OK ||
        lt_opts_int(&opts, "progress-ms", 0, 3600000, &progress, &err) != LT_OK ||
        lt_opts_int(&opts, "poll-ms", 1, 100, &poll, &err) != LT_OK ||
        lt_opts_int(&opts, "max-poll-interval-ms", 10000, 86400000, &max_poll, &err) != LT_OK ||
        lt_opts_int(&opts, "message-timeout-ms", 1000, 3600000, &msg_timeout, &err) != LT_OK ||
        lt_opts_int(&opts, "checkpoint-steps", 0, INT64_MAX, &ckpt, &err) != LT_OK ||
        lt_opts_int(&opts, "batch-size", 1, 64, &bsize, &err) != LT_OK ||
        lt_opts_int(&opts, "batch-checkpoint-images", 1, 1000000000, &bckpt, &err) != LT_OK) {
        lt_opts_free(&opts);
        return cli_usage_error("worker", "%s", err.msg);
    }
    char id[256], work[4096];
    const char *wid = lt_opts_get(&opts, "worker-id");
    if (!wid || !*wid)
        lt_worker_default_id(id, sizeof id);
    else
        snprintf(id, sizeof id, "%s", wid);
    const char *wd = lt_opts_get(&opts, "work-dir");
    if (!wd || !*wd) {
        const char *tmp = getenv("TMPDIR");
        snprintf(work, sizeof work, "%s/lathe-worker-%s", tmp && *tmp ? tmp : "/tmp", id);
        wd = work;
    }
    o.storage = lt_opts_get(&opts, "storage");
    o.worker_id = id;
    o.group_id = lt_opts_get(&opts, "group");
    o.work_dir = wd;
    o.max_attempts = (int)max_attempts;
    o.retry_base_ms = (int)retry;
    o.storage_retries = (int)sretries;
    o.progress_interval_ms = (int)progress;
    o.poll_ms = (int)poll;
    o.max_poll_interval_ms = (int)max_poll;
    o.message_timeout_ms = (int)msg_timeout;
    o.checkpoint_steps = ckpt;
    o.batch_size = (int)bsize;
    o.batch_checkpoint_images = (int)bckpt;
    o.keep_work = lt_opts_bool(&opts, "keep-work");
    o.create_topics = lt_opts_bool(&opts, "create-topics");
    o.kafka.jobs_partitions = (int)partitions;
    o.stop = cli_stop_on_signals();

    lt_status st = lt_worker_run(&o, &err);
    lt_opts_free(&opts);
    if (st != LT_OK) return cli_fail("worker", err.msg);
    return 0;
}
