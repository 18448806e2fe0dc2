/* kafka_server.h - an inference worker: serves the real-time requests the scheduler's gateway
 * (scheduler/gateway.h) publishes to the endpoint topics, with `lathe serve`'s own code (service.h).
 *
 * One consumer in the group <prefix>inference subscribes to every endpoint topic by regex
 * (^<prefix>endpoint\..+; new endpoints are picked up within metadata_refresh_ms). Each request is handed
 * to a pool of request threads; a thread finds the request's model in the worker's cache by URI (loading
 * it once: a local directory is read in place, an s3:// one is synced down to cache_dir first), runs the
 * body through that model's lt_infer_service (its batcher joins requests that arrive together into one
 * forward pass) and produces the reply, with the request id, to the reply topic and partition the request
 * names. A "load" request only loads the model and answers whether that worked.
 *
 * Delivery is at most once: a request's offset is stored when it is taken (committed every second), so a
 * worker that dies mid-request loses that request (its caller times out); none is ever retried. A request
 * whose deadline has passed is dropped without work or reply. A message that is not a request (missing or
 * bad headers) goes to <prefix>dlq and the worker carries on; a bad body is answered with its 4xx. */
#ifndef LT_KAFKA_SERVER_H
#define LT_KAFKA_SERVER_H

#include "core/status.h"
#include "inference/service.h"
#include "messaging/kafka.h"

#include <signal.h>
#include <stdint.h>

typedef struct {
    lt_kafka_config kafka; /* brokers, topic prefix, passthrough properties */
    const char *storage;   /* root against which relative model URIs resolve; NULL: none */
    const char *worker_id; /* logs and client.id; NULL: "<hostname>-<pid>" */
    const char *group_id;  /* NULL: "<prefix>inference" */
    const char *cache_dir; /* local folder for models synced down from S3 (NULL: $TMPDIR/lathe-models) */
    int threads;           /* request threads (default 16): requests in progress at once */
    int max_queue;         /* requests waiting for a thread beyond which new ones get 503 (default 1024) */
    lt_infer_service_opts serve; /* request limits and batching (max_batch 8, max_delay_ms 2 by default) */
    int fetch_wait_ms;           /* the consumer's fetch.wait.max.ms (default 100; librdkafka's mock cluster
                                    waits the whole time, so in-process clusters want 1). A
                                    LATHE_KAFKA_FETCH_WAIT_MAX_MS passthrough wins. */
    int metadata_refresh_ms;     /* topic.metadata.refresh.interval.ms: how soon a new endpoint is seen
                                    (default 1000) */
    int quiet;                   /* no informational log lines */
    const volatile sig_atomic_t *stop; /* when non-zero: finish the requests taken, leave the group, return */
} lt_kserve_opts;

/* The defaults above, Kafka settings from the environment. Can't fail. */
void lt_kserve_opts_init(lt_kserve_opts *o);

/* Counters since start (readable from another thread while it runs). */
typedef struct {
    long long requests;    /* infer requests answered */
    long long loads;       /* load requests answered */
    long long expired;     /* requests dropped because their deadline had passed */
    long long dead_letter; /* malformed messages sent to <prefix>dlq */
    long long busy;        /* requests refused with 503 because the queue was full */
} lt_kserve_stats;

typedef struct lt_kserve lt_kserve;

/* Connects and subscribes; the worker serves from lt_kserve_run. LT_ERR_ARG for bad options or Kafka
 * properties. */
lt_status lt_kserve_new(lt_kserve **out, const lt_kserve_opts *o, lt_err *err);
/* Serves until *o->stop becomes non-zero, then finishes the requests it took and returns LT_OK. */
lt_status lt_kserve_run(lt_kserve *k, lt_err *err);
/* Leaves the group and frees (call after lt_kserve_run returned). NULL is a no-op. */
void lt_kserve_free(lt_kserve *k);
void lt_kserve_get_stats(lt_kserve *k, lt_kserve_stats *s);

/* lt_kserve_new + lt_kserve_run + lt_kserve_free. */
lt_status lt_kserve_serve(const lt_kserve_opts *o, lt_err *err);

#endif
