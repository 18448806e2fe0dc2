/* cmd_standalone.c - `lathe standalone`: the whole job system in one process. An in-process Kafka
 * (librdkafka's mock cluster), the scheduler's HTTP API, K worker threads and (by default) one inference
 * worker thread serving the endpoints' real-time requests, with storage in a local
 * folder. Job records are mirrored into the folder too, so a restart keeps the history and publishes the
 * unfinished jobs again (they resume from their checkpoints). */
#define _GNU_SOURCE
#include "commands.h"
#include "inference/kafka_server.h"
#include "io/fsutil.h"
#include "messaging/mock.h"
#include "messaging/options.h"
#include "scheduler/scheduler.h"
#include "worker/worker.h"

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const lt_opt_spec specs[] = {
    {"data-dir", "LATHE_DATA_DIR", "DIR", "./lathe-data",
     "storage root: data sets (relative URIs), trainings/<id>/ outputs, job records, work folders"},
    {"port", "LATHE_PORT", "N", "8080", "TCP port of the API (0: any free port)"},
    {"bind", "LATHE_BIND", "ADDR", "127.0.0.1", "address to listen on (0.0.0.0 to serve other machines)"},
    {"workers", "LATHE_WORKERS", "K", "1", "worker threads (one job each at a time)"},
    {"partitions", NULL, "N", "8", "partitions of the jobs and events topics"},
    {"inference-workers", "LATHE_INFERENCE_WORKERS", "K", "1",
     "in-process inference workers serving the endpoint topics (0: none)"},
    {"api-token", "LATHE_API_TOKEN", "TOKEN", NULL,
     "demand 'Authorization: Bearer TOKEN' on /v1/trainings (prefer the variable: flags show in ps)"},
    {"checkpoint-steps", "LATHE_CHECKPOINT_STEPS", "N", "0",
     "also checkpoint every N steps (0: at every epoch end only)"},
    {"allow-noop", "LATHE_ALLOW_NOOP", NULL, NULL,
     "accept algorithm \"noop\" (the dispatch benchmark's jobs)"},
    {"quiet", NULL, NULL, NULL, "no informational lines on stderr"},
    {"config", "LATHE_CONFIG", "FILE", NULL, "YAML file of these options (keys are the flag names)"},
};
#define N_SPECS ((int)(sizeof specs / sizeof *specs))

static const char summary[] =
    "Runs the scheduler, K workers and an in-process Kafka in one process, with storage in a local folder:\n"
    "the job system on one machine, no Kafka or S3 to install. Prints the API's URL on stdout; stops on\n"
    "SIGINT/SIGTERM (running jobs checkpoint first). Submit with 'lathe submit --url URL ...'. Data sets "
    "may\n"
    "also live in S3 (s3://...), configured by AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and\n"
    "AWS_ENDPOINT_URL.";

typedef struct {
    lt_worker_opts o;
    char id[64], work_dir[PATH_MAX];
    pthread_t thread;
    int started;
    lt_status st;
    lt_err err;
} worker_slot;

/* An in-process inference worker (inference/kafka_server.h) serving the endpoints' real-time requests. */
typedef struct {
    lt_kserve_opts o;
    char id[64], cache[PATH_MAX];
    lt_kserve *k;
    pthread_t thread;
    int started;
} kserve_slot;

static void *kserve_main(void *arg) {
    kserve_slot *w = arg;
    lt_err err = {{0}};
    if (lt_kserve_run(w->k, &err) != LT_OK)
        fprintf(stderr, "lathe standalone: inference worker %s stopped: %s\n", w->id, err.msg);
    return NULL;
}

static void *worker_main(void *arg) {
    worker_slot *w = arg;
    w->st = lt_worker_run(&w->o, &w->err);
    if (w->st != LT_OK) fprintf(stderr, "lathe standalone: worker %s stopped: %s\n", w->id, w->err.msg);
    return NULL;
}

int cmd_standalone(int argc, char **argv) {
    lt_opts o;
    lt_err err = {{0}};
    if (lt_opts_parse(&o, specs, N_SPECS, argc, argv, &err) != LT_OK)
        return cli_usage_error("standalone", "%s", err.msg);
    if (o.help) {
        lt_opts_print_help(stdout, "standalone", summary, specs, N_SPECS);
        lt_opts_free(&o);
        return 0;
    }
    int64_t port = 8080, workers = 1, partitions = 8, ckpt = 0, kworkers = 1;
    if (lt_opts_int(&o, "port", 0, 65535, &port, &err) != LT_OK ||
        lt_opts_int(&o, "workers", 1, 256, &workers, &err) != LT_OK ||
        lt_opts_int(&o, "inference-workers", 0, 64, &kworkers, &err) != LT_OK ||
        lt_opts_int(&o, "partitions", 1, 1000, &partitions, &err) != LT_OK ||
        lt_opts_int(&o, "checkpoint-steps", 0, INT64_MAX, &ckpt, &err) != LT_OK) {
        lt_opts_free(&o);
        return cli_usage_error("standalone", "%s", err.msg);
    }
    if (partitions < workers)
        fprintf(stderr, "lathe standalone: %lld workers but %lld partitions: only %lld can get work\n",
                (long long)workers, (long long)partitions, (long long)partitions);
    int quiet = lt_opts_bool(&o, "quiet");

    /* storage paths become absolute, so job messages mean the same to every thread whatever the cwd */
    const char *dir_arg = lt_opts_get(&o, "data-dir");
    char dir[PATH_MAX], state_dir[PATH_MAX + 32], registry_dir[PATH_MAX + 32];
    if (lt_mkdir_p(dir_arg, &err) != LT_OK || !realpath(dir_arg, dir)) {
        lt_opts_free(&o);
        return cli_fail("standalone", err.msg[0] ? err.msg : "cannot use the data folder");
    }
    snprintf(state_dir, sizeof state_dir, "%s/.lathe/jobs", dir);
    snprintf(registry_dir, sizeof registry_dir, "%s/.lathe/registry", dir);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 0;
    volatile sig_atomic_t stop = 0;
    worker_slot *slots = calloc((size_t)workers, sizeof *slots);
    kserve_slot *kslots = calloc((size_t)kworkers + 1, sizeof *kslots);
    lt_kafka_config kc;
    lt_kafka_config_init(&kc, NULL);
    kc.jobs_partitions = (int)partitions;
    lt_kafka_mock *mock = slots && kslots ? lt_kafka_mock_new(1, &kc, &err) : NULL;
    lt_scheduler *s = NULL;
    if (!mock) {
        rc = cli_fail("standalone", slots && kslots ? err.msg : "out of memory");
        goto out;
    }
    if (lt_kafka_config_set(&kc, lt_kafka_mock_bootstraps(mock), NULL, &err) != LT_OK) {
        rc = cli_fail("standalone", err.msg);
        goto out;
    }

    lt_scheduler_opts so;
    lt_scheduler_opts_init(&so);
    so.kafka = kc;
    so.port = (int)port;
    so.bind = lt_opts_get(&o, "bind");
    so.storage = dir;
    so.api_token = lt_opts_get(&o, "api-token");
    so.create_topics = 0; /* the mock made them */
    so.allow_noop = lt_opts_bool(&o, "allow-noop");
    so.quiet = quiet;
    so.state_dir = state_dir;
    so.registry_dir = registry_dir;
    so.republish_unfinished = 1;
    so.gateway_fetch_wait_ms = 1; /* the mock cluster does not cut a fetch's wait short when data arrives */
    if (!(s = lt_scheduler_start(&so, &err))) {
        rc = cli_fail("standalone", err.msg);
        goto out;
    }
    /* the in-process workers' and inference workers' consumers: a short session, so a group whose members
     * all join at once settles in seconds (the mock cluster otherwise waits out 45 s sessions) */
    lt_kafka_config member_kc = kc;
    lt_kafka_config_add(&member_kc, "session.timeout.ms", "10000");
    lt_kafka_config_add(&member_kc, "heartbeat.interval.ms", "1000");
    for (int64_t i = 0; i < workers; i++) {
        worker_slot *w = &slots[i];
        lt_worker_opts_init(&w->o);
        w->o.kafka = member_kc;
        snprintf(w->id, sizeof w->id, "standalone-%lld", (long long)i + 1);
        snprintf(w->work_dir, sizeof w->work_dir, "%.*s/.lathe/work/%s", PATH_MAX - 96, dir, w->id);
        w->o.worker_id = w->id;
        w->o.work_dir = w->work_dir;
        w->o.storage = dir;
        w->o.checkpoint_steps = ckpt;
        w->o.stop = &stop;
        if (pthread_create(&w->thread, NULL, worker_main, w)) {
            rc = cli_fail("standalone", "cannot start a worker thread");
            goto out;
        }
        w->started = 1;
    }
    for (int64_t i = 0; i < kworkers; i++) {
        kserve_slot *w = &kslots[i];
        lt_kserve_opts_init(&w->o);
        w->o.kafka = member_kc;
        snprintf(w->id, sizeof w->id, "standalone-inference-%lld", (long long)i + 1);
        snprintf(w->cache, sizeof w->cache, "%.*s/.lathe/models", PATH_MAX - 96, dir);
        w->o.worker_id = w->id;
        w->o.storage = dir;
        w->o.cache_dir = w->cache;
        w->o.fetch_wait_ms = 1; /* the mock cluster does not cut a fetch's wait short when data arrives */
        w->o.metadata_refresh_ms = 500;
        w->o.quiet = quiet;
        w->o.stop = &stop;
        if (lt_kserve_new(&w->k, &w->o, &err) != LT_OK) {
            rc = cli_fail("standalone", err.msg);
            goto out;
        }
        if (pthread_create(&w->thread, NULL, kserve_main, w)) {
            rc = cli_fail("standalone", "cannot start an inference worker thread");
            goto out;
        }
        w->started = 1;
    }
    printf("http://%s:%d\n", strcmp(so.bind, "0.0.0.0") ? so.bind : "127.0.0.1", lt_scheduler_port(s));
    fflush(stdout);
    if (!quiet)
        fprintf(stderr, "lathe standalone: API http://%s:%d, %lld worker(s), data in %s\n", so.bind,
                lt_scheduler_port(s), (long long)workers, dir);
    struct timespec ts = {1, 0};
    while (sigtimedwait(&set, NULL, &ts) < 0) {
    }
    if (!quiet) fprintf(stderr, "lathe standalone: stopping (running jobs checkpoint first)\n");
out:
    stop = 1;
    for (int64_t i = 0; slots && i < workers; i++)
        if (slots[i].started) pthread_join(slots[i].thread, NULL);
    for (int64_t i = 0; kslots && i < kworkers; i++) {
        if (kslots[i].started) pthread_join(kslots[i].thread, NULL);
        lt_kserve_free(kslots[i].k);
    }
    lt_scheduler_stop(s);
    lt_kafka_mock_destroy(mock);
    free(slots);
    free(kslots);
    lt_opts_free(&o);
    return rc;
}
