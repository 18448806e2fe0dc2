/* realtime.h - the real-time inference messages shared by the scheduler's gateway (scheduler/gateway.h) and
 * the inference workers (inference/kafka_server.h), and the topic helpers they need. docs/messages.md,
 * "Real-time inference", describes the format.
 *
 * A request is one message on <prefix>endpoint.<endpoint>: key = request id, value = the client's request
 * body exactly as received (empty for a load), and text headers naming everything else. The reply goes to
 * the topic and partition the request names: key = request id, value = the response body, headers
 * request-id, status (the HTTP status) and result (an lt_status name, for loads). */
#ifndef LT_REALTIME_H
#define LT_REALTIME_H

#include "kafka.h"

#include <stdint.h>

/* request headers */
#define LT_RT_TYPE "type"                       /* "infer" or "load" */
#define LT_RT_REQUEST_ID "request-id"           /* 1-128 of [A-Za-z0-9._-] */
#define LT_RT_ENDPOINT "endpoint"               /* the endpoint's name */
#define LT_RT_STAGE "stage"                     /* the stage's name */
#define LT_RT_MODEL_URI "model-uri"             /* storage URI of the model directory */
#define LT_RT_REPLY_TOPIC "reply-topic"         /* where the reply goes */
#define LT_RT_REPLY_PARTITION "reply-partition" /* decimal */
#define LT_RT_DEADLINE "deadline-ms"            /* unix time in ms after which nobody waits for the answer */
/* reply headers (plus request-id) */
#define LT_RT_STATUS "status" /* HTTP status, decimal */
#define LT_RT_RESULT "result" /* lt_rt_result_str of the outcome ("ok", "not_found", "format", ...) */

#define LT_RT_HEADER_MAX 1024 /* longest header value accepted */

/* "<prefix>endpoint.<endpoint>" into buf. Returns buf. */
const char *lt_rt_endpoint_topic(const lt_kafka_config *c, const char *endpoint, char *buf, size_t size);
/* The regex every endpoint topic matches ("^<prefix, escaped>endpoint\..+"), for a subscription. */
const char *lt_rt_endpoint_regex(const lt_kafka_config *c, char *buf, size_t size);

/* 1 when s is 1..max_len of [A-Za-z0-9._-] (a topic-safe name), else 0. */
int lt_rt_valid_name(const char *s, size_t max_len);

/* Copies header name's value, NUL-terminated, into buf. 1 when present and it fits, else 0. */
int lt_rt_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size);

/* An outcome as a short name ("ok", "not_found", "format", "io", "arg", "timeout", "unavailable", ...) and
 * back (an unknown name gives LT_ERR_IO). */
const char *lt_rt_result_str(lt_status s);
lt_status lt_rt_result_parse(const char *s);

/* Wall-clock unix time in milliseconds (deadlines cross machines; keep their clocks in sync). */
int64_t lt_rt_now_ms(void);

/* Creates topic with `partitions` partitions (AdminAPI; an existing topic is fine). librdkafka's mock
 * cluster has no CreateTopics: there the topic is auto-created by a metadata request instead, with the
 * mock's default partition count. Waits until the topic's metadata shows it. LT_ERR_UNAVAILABLE when the
 * brokers don't answer within timeout_ms, LT_ERR_IO when they refuse. */
lt_status lt_kafka_create_topic(const lt_kafka_config *c, const char *topic, int partitions, int timeout_ms,
                                lt_err *err);
/* Deletes topic (AdminAPI). A missing topic, or a cluster without DeleteTopics (the mock), is LT_OK. */
lt_status lt_kafka_delete_topic(const lt_kafka_config *c, const char *topic, int timeout_ms, lt_err *err);

/* 1 when the configuration's passthrough properties set name. */
int lt_kafka_config_has(const lt_kafka_config *c, const char *name);

#endif
