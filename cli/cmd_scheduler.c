/* cmd_scheduler.c - `lathe scheduler`: the HTTP API in front of Kafka (scheduler/scheduler.h, docs/api.md).
 */
#define _GNU_SOURCE
#include "commands.h"
#include "messaging/options.h"
#include "scheduler/scheduler.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const lt_opt_spec specs[] = {
    {"port", "LATHE_PORT", "N", "8080", "TCP port of the API (0: any free port)"},
    {"bind", "LATHE_BIND", "ADDR", "0.0.0.0", "address to listen on"},
    {"brokers", "LATHE_KAFKA_BROKERS", "HOST:PORT,...", "localhost:9092", "Kafka bootstrap servers"},
    {"topic-prefix", "LATHE_TOPIC_PREFIX", "P", "lathe.", "prefix of the topic names"},
    {"storage", "LATHE_STORAGE", "URI", "./lathe-data",
     "storage root: default outputs go to URI/trainings/<id>, relative data set URIs are below it"},
    {"api-token", "LATHE_API_TOKEN", "TOKEN", NULL,
     "demand 'Authorization: Bearer TOKEN' on /v1/trainings (prefer the variable: flags show in ps)"},
    {"consumer-group", "LATHE_SCHEDULER_GROUP", "NAME", NULL,
     "events consumer group (default <prefix>scheduler)"},
    {"partitions", "LATHE_JOBS_PARTITIONS", "N", "8",
     "partitions of the jobs and events topics when this creates them (>= the most workers you run)"},
    {"replication", "LATHE_TOPIC_REPLICATION", "N", "-1",
     "replication factor of the topics this creates (-1: the brokers' default)"},
    {"no-create-topics", NULL, NULL, NULL,
     "don't create the topics at start (they exist, or auto-creation is on)"},
    {"allow-noop", "LATHE_ALLOW_NOOP", NULL, NULL,
     "accept algorithm \"noop\" (the dispatch benchmark's jobs)"},
    {"inference-timeout-ms", "LATHE_INFERENCE_TIMEOUT_MS", "MS", "10000",
     "how long a real-time inference request waits for a worker's reply before answering 504"},
    {"load-timeout-ms", "LATHE_LOAD_TIMEOUT_MS", "MS", "120000",
     "how long an endpoint stage waits for a worker to load its model before it is FAILED"},
    {"gateway-fetch-wait-ms", "LATHE_GATEWAY_FETCH_WAIT_MS", "MS", "100",
     "the inference gateway's reply fetch wait (a real broker answers a long poll at once; 1-5 against the "
     "mock cluster, which waits it out)"},
    {"quiet", NULL, NULL, NULL, "no informational lines on stderr"},
    {"config", "LATHE_CONFIG", "FILE", NULL, "YAML file of these options (keys are the flag names)"},
};
#define N_SPECS ((int)(sizeof specs / sizeof *specs))

static const char summary[] =
    "Runs the lathe scheduler: the HTTP API (POST/GET /v1/trainings, cancel, /v1/health, /metrics; see\n"
    "docs/api.md) that validates trainings and publishes them to Kafka, and folds the workers' events into\n"
    "job records kept in the compacted <prefix>jobs.state topic. Prints the API's URL on stdout once it\n"
    "listens; stops on SIGINT/SIGTERM.\n"
    "Storage credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION\n"
    "and AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3); other librdkafka properties from LATHE_KAFKA_<PROPERTY>\n"
    "(e.g. LATHE_KAFKA_SECURITY_PROTOCOL).";

int cmd_scheduler(int argc, char **argv) {
    lt_opts o;
    lt_err err = {{0}};
    if (lt_opts_parse(&o, specs, N_SPECS, argc, argv, &err) != LT_OK)
        return cli_usage_error("scheduler", "%s", err.msg);
    if (o.help) {
        lt_opts_print_help(stdout, "scheduler", summary, specs, N_SPECS);
        lt_opts_free(&o);
        return 0;
    }
    lt_scheduler_opts so;
    lt_scheduler_opts_init(&so);
    int64_t port = 8080, partitions = 8, replication = -1, infer_ms = 10000, load_ms = 120000, fetch_wait = 100;
    if (lt_opts_int(&o, "port", 0, 65535, &port, &err) != LT_OK ||
        lt_opts_int(&o, "inference-timeout-ms", 1, 3600000, &infer_ms, &err) != LT_OK ||
        lt_opts_int(&o, "load-timeout-ms", 1, 3600000, &load_ms, &err) != LT_OK ||
        lt_opts_int(&o, "gateway-fetch-wait-ms", 1, 10000, &fetch_wait, &err) != LT_OK ||
        lt_opts_int(&o, "partitions", 1, 10000, &partitions, &err) != LT_OK ||
        lt_opts_int(&o, "replication", -1, 100, &replication, &err) != LT_OK ||
        (replication == 0 && lt_errorf(&err, LT_ERR_ARG, "--replication: 0 is not a replication factor")) ||
        lt_kafka_config_set(&so.kafka, lt_opts_get(&o, "brokers"), lt_opts_get(&o, "topic-prefix"), &err) !=
            LT_OK) {
        lt_opts_free(&o);
        return cli_usage_error("scheduler", "%s", err.msg);
    }
    so.port = (int)port;
    so.kafka.jobs_partitions = (int)partitions;
    so.kafka.replication = (int)replication;
    so.bind = lt_opts_get(&o, "bind");
    so.storage = lt_opts_get(&o, "storage");
    so.api_token = lt_opts_get(&o, "api-token");
    so.group_id = lt_opts_get(&o, "consumer-group");
    so.create_topics = !lt_opts_bool(&o, "no-create-topics");
    so.allow_noop = lt_opts_bool(&o, "allow-noop");
    so.quiet = lt_opts_bool(&o, "quiet");
    so.inference_timeout_ms = (int)infer_ms;
    so.load_timeout_ms = (int)load_ms;
    so.gateway_fetch_wait_ms = (int)fetch_wait;

    /* Signals are taken with sigtimedwait: blocked before any thread starts (they inherit the mask). */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    lt_scheduler *s = lt_scheduler_start(&so, &err);
    if (!s) {
        lt_opts_free(&o);
        return cli_fail("scheduler", err.msg);
    }
    const char *bind = so.bind && so.bind[0] && strcmp(so.bind, "0.0.0.0") ? so.bind : "127.0.0.1";
    printf("http://%s:%d\n", bind, lt_scheduler_port(s));
    fflush(stdout);
    struct timespec ts = {1, 0};
    while (sigtimedwait(&set, NULL, &ts) < 0) {
    }
    if (!so.quiet) fprintf(stderr, "lathe scheduler: stopping\n");
    lt_scheduler_stop(s);
    lt_opts_free(&o);
    return 0;
}
