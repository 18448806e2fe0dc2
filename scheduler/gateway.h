/* gateway.h - the scheduler's real-time inference gateway: publishes a request on an endpoint's Kafka topic
 * and waits for a worker's reply by request id.
 *
 * LOCAL COPY of the interface in the issue 5 contract, for the registry branch to compile against; the
 * rtpath branch owns this file and gateway.c (take theirs at merge). The only addition is the
 * lt_kafka_options alias: the contract names the scheduler's Kafka configuration that way, and the
 * scheduler's type is lt_kafka_config. */
#ifndef LT_SCHED_GATEWAY_H
#define LT_SCHED_GATEWAY_H

#include "core/status.h"
#include "messaging/kafka.h"

#include <stddef.h>

typedef lt_kafka_config lt_kafka_options;

typedef struct lt_gateway lt_gateway;
/* brokers/options and topic prefix as the scheduler already has them (see scheduler.h / messaging/options.h)
 */
lt_status lt_gateway_new(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                         lt_err *err);
void lt_gateway_free(lt_gateway *gw);
/* Creates (idempotently) the endpoint's request topic <prefix>endpoint.<endpoint> with `partitions`
 * partitions. */
lt_status lt_gateway_create_endpoint(lt_gateway *gw, const char *endpoint, int partitions, lt_err *err);
lt_status lt_gateway_delete_endpoint(lt_gateway *gw, const char *endpoint, lt_err *err);
/* Asks a worker to load model_uri for (endpoint, stage) and waits: LT_OK when a worker answered that the
   model is loaded; an error naming the reason (bad model directory -> LT_ERR_FORMAT/LT_ERR_NOT_FOUND, no
   worker in time
   -> LT_ERR_TIMEOUT). registry uses it to move an endpoint CREATING -> ACTIVE or FAILED (call it off the HTTP
   thread). */
lt_status lt_gateway_load(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                          int timeout_ms, lt_err *err);
/* One inference request: body/len is the client's request body exactly as received. On LT_OK, *http_status
   and *resp_body (malloc'd, caller frees; *resp_len) are what the HTTP route answers (the worker's own 200 or
   4xx JSON, from the same response code as `lathe serve`). No reply within timeout_ms -> LT_ERR_TIMEOUT
   (route answers 504 with a clear message); cannot publish (broker down) -> LT_ERR_UNAVAILABLE or similar
   (route answers 503). Thread-safe: many HTTP threads call it at once. */
lt_status lt_gateway_infer(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                           const char *body, size_t len, int timeout_ms, int *http_status, char **resp_body,
                           size_t *resp_len, lt_err *err);

#endif
