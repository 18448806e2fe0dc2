/* gateway.h - the scheduler's side of real-time inference through Kafka (docs/messages.md, "Real-time
 * inference"): publish a request to an endpoint's topic, wait for the reply that carries its request id.
 *
 * One gateway per scheduler process. It owns one idempotent producer (linger.ms=0: a request leaves at
 * once) and one reply topic, <prefix>replies.<instance id>, read by one thread with a group-less consumer
 * (assign(), so no rebalance ever stalls replies). Callers wait on their own condition variable, found by
 * request id in a hash table; a reply for a request nobody waits on any more (it timed out) is dropped.
 * Inference workers (inference/kafka_server.h) answer the requests.
 *
 * The gateway resolves nothing: the caller passes the endpoint, the stage and the stage's model URI. */
#ifndef LT_GATEWAY_H
#define LT_GATEWAY_H

#include "core/status.h"
#include "messaging/kafka.h"

#include <stddef.h>

/* The contract (ISSUE5.md) names the Kafka settings lt_kafka_options; they are messaging's lt_kafka_config.
 */
typedef lt_kafka_config lt_kafka_options;

typedef struct lt_gateway lt_gateway;

/* Tuning; lt_gateway_new uses the defaults. */
typedef struct {
    int fetch_wait_ms;      /* the reply consumer's fetch.wait.max.ms (default 100: a real broker answers a
                               long poll as soon as a reply arrives; librdkafka's mock cluster waits the whole
                               time, so in-process clusters want 1). A LATHE_KAFKA_FETCH_WAIT_MAX_MS
                               passthrough wins over this. */
    int message_timeout_ms; /* how long a request may take to reach the brokers (default 10000) */
    int setup_timeout_ms;   /* creating the reply topic and waiting for its metadata (default 10000) */
} lt_gateway_opts;

void lt_gateway_opts_init(lt_gateway_opts *o);

/* Creates the reply topic and starts the reply thread. kopts: brokers and passthrough properties (copied);
 * topic_prefix: NULL or "" keeps kopts->prefix. LT_ERR_UNAVAILABLE when the brokers can't be reached within
 * setup_timeout_ms, LT_ERR_ARG for a bad property. */
lt_status lt_gateway_new(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                         lt_err *err);
lt_status lt_gateway_new_opts(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                              const lt_gateway_opts *opts, lt_err *err);
/* Stops the reply thread (callers still waiting get LT_ERR_CANCELLED: stop the HTTP server first), deletes
 * the reply topic (best effort) and frees. NULL is a no-op. */
void lt_gateway_free(lt_gateway *gw);

/* The reply topic's name. */
const char *lt_gateway_reply_topic(const lt_gateway *gw);

/* "<prefix>endpoint.<endpoint>" into buf (LT_KAFKA_TOPIC_MAX bytes never truncate a valid name). */
const char *lt_gateway_endpoint_topic(const lt_gateway *gw, const char *endpoint, char *buf, size_t size);

/* Creates (idempotently) the endpoint's request topic <prefix>endpoint.<endpoint> with `partitions`
 * partitions (AdminAPI; librdkafka's mock cluster has no CreateTopics, so there the topic is auto-created
 * with the mock's default of 4 partitions). endpoint: 1-200 of [A-Za-z0-9._-] (LT_ERR_ARG otherwise). */
lt_status lt_gateway_create_endpoint(lt_gateway *gw, const char *endpoint, int partitions, lt_err *err);
/* Deletes the topic (a missing topic is fine; the mock cluster cannot delete topics: LT_OK, the topic
 * stays and simply receives nothing more). */
lt_status lt_gateway_delete_endpoint(lt_gateway *gw, const char *endpoint, lt_err *err);

/* Asks a worker to load model_uri for (endpoint, stage) and waits: LT_OK when a worker answered that the
 * model is loaded (in its cache); LT_ERR_NOT_FOUND (no such model directory, no config.json) or
 * LT_ERR_FORMAT (a directory that is not a model lathe can serve) with the worker's message; LT_ERR_IO for
 * a storage failure; LT_ERR_TIMEOUT when no worker answered within timeout_ms; LT_ERR_UNAVAILABLE when the
 * request could not be published. Blocks: call it off the HTTP thread. */
lt_status lt_gateway_load(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                          int timeout_ms, lt_err *err);

/* One inference request: body/len is the client's request body exactly as received (it travels verbatim).
 * On LT_OK, *http_status and *resp_body (malloc'd, NUL-terminated, caller frees; *resp_len bytes) are what
 * the worker answered: `lathe serve`'s 200 body or its 4xx/5xx {"error": ...}. LT_ERR_TIMEOUT: no reply
 * within timeout_ms (answer 504); LT_ERR_UNAVAILABLE: the request could not be published (answer 503);
 * LT_ERR_ARG: a bad endpoint name. Thread-safe. */
lt_status lt_gateway_infer(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                           const char *body, size_t len, int timeout_ms, int *http_status, char **resp_body,
                           size_t *resp_len, lt_err *err);

/* Counters since creation. */
typedef struct {
    long long requests;     /* infer + load requests published */
    long long replies;      /* replies matched to a waiting caller */
    long long late_replies; /* replies nobody waited for any more (dropped) */
    long long timeouts;     /* LT_ERR_TIMEOUT answers */
    long long unavailable;  /* LT_ERR_UNAVAILABLE answers */
} lt_gateway_stats;

void lt_gateway_get_stats(lt_gateway *gw, lt_gateway_stats *s);

#endif
