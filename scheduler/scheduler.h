/* scheduler.h - the lathe scheduler service: the HTTP API (docs/api.md) in front of Kafka.
 *
 * Started, it listens at once; a thread rebuilds the job table from the compacted <p>jobs.state topic
 * (retrying while Kafka is unreachable; the API answers 503 until then), then folds <p>events into the
 * records in the consumer group "<prefix>scheduler", writing each changed record back to <p>jobs.state and
 * committing an event's offset only after that write is acknowledged. Malformed events go to <p>dlq.
 *
 * Run one scheduler per topic prefix: two would split the events between them. */
#ifndef LT_SCHEDULER_H
#define LT_SCHEDULER_H

#include "core/status.h"
#include "messaging/kafka.h"
#include "storage/storage.h"

typedef struct {
    const char *bind;         /* listen address; NULL or "" = every IPv4 address */
    int port;                 /* 0 = any free port (see lt_scheduler_port) */
    const char *storage;      /* LATHE_STORAGE: root of default outputs and of relative data set URIs */
    const char *api_token;    /* bearer token the API demands; NULL or "" = none */
    lt_kafka_config kafka;    /* brokers, topic prefix, passthrough properties (copied) */
    const char *group_id;     /* events consumer group; NULL = "<prefix>scheduler" */
    const char *client_id;    /* Kafka client.id; NULL = "lathe-scheduler" */
    int create_topics;        /* create the five topics at start (a real cluster; not the mock) */
    int check_dataset;        /* list each submitted data set (1 except in tests) */
    int allow_noop;           /* accept algorithm "noop" (the dispatch benchmark) */
    int quiet;                /* no informational lines on stderr */
    const char *state_dir;    /* also mirror the records to this local folder and load them at start (lathe
                                 standalone, whose Kafka lives in memory); NULL = none */
    int republish_unfinished; /* after loading, publish QUEUED and RUNNING jobs again (their messages died
                                 with the in-memory cluster); only with state_dir */
    const char *registry_dir; /* also mirror models and endpoints to this folder and load them at start
                                 (standalone, as state_dir); NULL = none */
    int inference_timeout_ms; /* a real-time inference request's wait for its reply (0: 10000) */
    int load_timeout_ms;      /* a stage's wait for a worker to load its model (0: 120000) */
    int gateway_fetch_wait_ms; /* the inference gateway's reply fetch wait (0: its default, 100; the mock
                                  cluster wants 1, see lt_gateway_opts) */
    /* POST /v1/batch-inferences: resolves a model name to its model directory's URI (submit.h's
     * lt_submit_opts.resolve_model: 1 found, 0 no such model -> 404, -1 failed -> 503). NULL: only storage
     * URIs are accepted as "model". The lead wires it to the model registry. */
    int (*resolve_model)(void *ctx, const char *name, char *uri, size_t cap, lt_err *err);
    void *resolve_model_ctx;
} lt_scheduler_opts;

typedef struct lt_scheduler lt_scheduler;

/* Fills o with the defaults (port 8080, storage "./lathe-data", check_dataset 1, create_topics 1, Kafka
 * configuration from the environment: see messaging/kafka.h). */
void lt_scheduler_opts_init(lt_scheduler_opts *o);

/* Starts the service; NULL and err (LT_ERR_ARG for a bad option, LT_ERR_IO when it can't listen). */
lt_scheduler *lt_scheduler_start(const lt_scheduler_opts *o, lt_err *err);
/* The port the API listens on. */
int lt_scheduler_port(const lt_scheduler *s);
/* 1 once the job table has been rebuilt. */
int lt_scheduler_ready(const lt_scheduler *s);
/* Stops the API and the consumer (committing what was folded), flushes and frees. NULL is a no-op. */
void lt_scheduler_stop(lt_scheduler *s);

#endif
