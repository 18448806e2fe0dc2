/* kafka.h - lathe's use of Kafka (librdkafka): configuration, topic names, an idempotent producer with
 * checked delivery, consumers, the dead-letter topic and topic creation. Messages themselves are in
 * messages.h; docs/messages.md describes the topics.
 *
 * Configuration comes from the environment, then the caller's flags override it:
 *   LATHE_KAFKA_BROKERS      bootstrap servers, "host:port,host:port" (default "localhost:9092")
 *   LATHE_TOPIC_PREFIX       prefix of every topic name (default "lathe.")
 *   LATHE_KAFKA_<PROPERTY>   any other librdkafka property: the rest of the name, lower-cased, with '_' read
 *                            as '.', e.g. LATHE_KAFKA_SECURITY_PROTOCOL=SASL_SSL -> security.protocol,
 *                            LATHE_KAFKA_SASL_USERNAME=u -> sasl.username. Values never appear in logs.
 * Every handle made here gets those properties first, then lathe's own (which win). */
#ifndef LT_KAFKA_H
#define LT_KAFKA_H

#include "core/status.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define LT_KAFKA_MAX_PROPS 32
#define LT_KAFKA_STR_MAX 1024

typedef struct {
    char name[128]; /* librdkafka property name */
    char value[LT_KAFKA_STR_MAX];
} lt_kafka_prop;

typedef struct {
    char brokers[LT_KAFKA_STR_MAX];          /* bootstrap.servers */
    char prefix[128];                        /* topic prefix */
    lt_kafka_prop props[LT_KAFKA_MAX_PROPS]; /* (n_props) LATHE_KAFKA_<PROPERTY> passthrough */
    int n_props;
    int jobs_partitions; /* partitions of <p>jobs and <p>events when created here (default 8) */
    int replication;     /* replication factor of created topics; -1: the broker's default */
} lt_kafka_config;

/* Defaults, then the environment as above. LT_ERR_ARG when a variable is too long or there are more than
 * LT_KAFKA_MAX_PROPS passthrough properties; c is usable (defaults) even then. */
lt_status lt_kafka_config_init(lt_kafka_config *c, lt_err *err);
/* Overrides (NULL leaves a value alone). LT_ERR_ARG when too long. */
lt_status lt_kafka_config_set(lt_kafka_config *c, const char *brokers, const char *prefix, lt_err *err);
/* Appends the passthrough property name = value; librdkafka applies them in order, so it wins over an
 * earlier one of the same name. Ignored when c already holds LT_KAFKA_MAX_PROPS. */
void lt_kafka_config_add(lt_kafka_config *c, const char *name, const char *value);

/* The topics. */
typedef enum {
    LT_TOPIC_JOBS = 0,   /* job requests, key = job id; workers' consumer group */
    LT_TOPIC_CONTROL,    /* cancel broadcasts; every worker reads every partition */
    LT_TOPIC_EVENTS,     /* job events, key = job id */
    LT_TOPIC_JOBS_STATE, /* compacted: key = job id, value = the scheduler's job record */
    LT_TOPIC_DLQ,        /* messages that could not be parsed, with "error" and "source" headers */
    LT_TOPIC_REGISTRY,   /* compacted: key = "model/<name>" or "endpoint/<name>", value = the scheduler's record */
    LT_TOPIC_COUNT
} lt_topic;

/* "<prefix><suffix>" into buf ("lathe.jobs", "lathe.jobs.state", ...). Returns buf; truncates silently
 * (buf of LT_KAFKA_TOPIC_MAX never truncates). */
#define LT_KAFKA_TOPIC_MAX 256
const char *lt_kafka_topic(const lt_kafka_config *c, lt_topic t, char *buf, size_t size);
/* The suffix alone ("jobs", "control", "events", "jobs.state", "dlq"). */
const char *lt_kafka_topic_suffix(lt_topic t);

/* A librdkafka configuration with bootstrap.servers, client.id and the passthrough properties. Returns
 * NULL and fills err (naming the property, not its value) on a bad property. The caller owns the result
 * (rd_kafka_new takes it over on success). */
rd_kafka_conf_t *lt_kafka_conf_new(const lt_kafka_config *c, const char *client_id, lt_err *err);
/* Sets one property on conf, LT_ERR_ARG naming it on failure. */
lt_status lt_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, lt_err *err);

/* ---- producer ---- */

/* An idempotent producer (enable.idempotence=true, acks=all): messages to one partition are written once
 * and in order, even across broker failures and internal retries. Thread-safe: any thread may produce
 * and wait. Delivery reports are served by whichever thread polls (lt_kafka_producer_poll or a waiting
 * call). */
typedef struct lt_kafka_producer lt_kafka_producer;

/* message_timeout_ms: how long librdkafka retries one message before reporting it failed (0: 120000). */
lt_kafka_producer *lt_kafka_producer_new(const lt_kafka_config *c, const char *client_id,
                                         int message_timeout_ms, lt_err *err);
/* The same with linger.ms = linger_ms (lt_kafka_producer_new batches events for 5 ms; real-time replies
 * want 0). */
lt_kafka_producer *lt_kafka_producer_new_linger(const lt_kafka_config *c, const char *client_id,
                                                int message_timeout_ms, int linger_ms, lt_err *err);
/* Flushes (up to 10 s, logging what could not be delivered) and frees. NULL is a no-op. */
void lt_kafka_producer_destroy(lt_kafka_producer *p);
rd_kafka_t *lt_kafka_producer_handle(lt_kafka_producer *p);

/* One header of a produced message. */
typedef struct {
    const char *name;
    const char *value; /* NUL-terminated text */
} lt_kafka_header;

/* Queues a message and returns at once; a later delivery failure is counted (lt_kafka_producer_failures)
 * and logged on stderr. For events whose loss is harmless (progress). LT_ERR_IO when the queue is full or
 * the producer has a fatal error. */
lt_status lt_kafka_produce(lt_kafka_producer *p, const char *topic, const char *key, const void *value,
                           size_t len, const lt_kafka_header *headers, int n_headers, lt_err *err);
/* Produces and waits for the delivery report: LT_OK once the brokers acknowledged it (acks=all);
 * LT_ERR_IO with librdkafka's reason when it failed (after librdkafka's own retries for
 * message_timeout_ms). Safe to call from several threads at once. */
lt_status lt_kafka_produce_sync(lt_kafka_producer *p, const char *topic, const char *key, const void *value,
                                size_t len, const lt_kafka_header *headers, int n_headers, lt_err *err);
/* Serves delivery reports; timeout_ms may be 0. */
void lt_kafka_producer_poll(lt_kafka_producer *p, int timeout_ms);
/* Waits until every queued message is delivered or failed. LT_ERR_IO when some remain after timeout_ms. */
lt_status lt_kafka_producer_flush(lt_kafka_producer *p, int timeout_ms, lt_err *err);
/* Asynchronous deliveries that failed since creation. */
int64_t lt_kafka_producer_failures(lt_kafka_producer *p);

/* Publishes a message that could not be handled to <p>dlq, as received (same key and value), with
 * headers "error" (why) and "source" ("<topic>/<partition>/<offset>"), and waits for its delivery. */
lt_status lt_kafka_dlq_publish(lt_kafka_producer *p, const lt_kafka_config *c, const rd_kafka_message_t *m,
                               const char *error, lt_err *err);

/* ---- consumers ---- */

/* A consumer in group group_id with lathe's settings: no automatic offset store (the application stores
 * an offset when it is done with the message), periodic commit of stored offsets, auto.offset.reset =
 * earliest, cooperative-sticky assignment (a rebalance only moves the partitions that change owner, so
 * a member joining or leaving does not interrupt every running job). rebalance_cb may be NULL (librdkafka's
 * default: assign what is assigned, unassign what is revoked); it gets opaque. The caller subscribes, polls,
 * and ends with lt_kafka_consumer_destroy. max_poll_ms: max.poll.interval.ms (0: librdkafka's default,
 * 300000). */
rd_kafka_t *lt_kafka_consumer_new(const lt_kafka_config *c, const char *client_id, const char *group_id,
                                  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                       rd_kafka_topic_partition_list_t *, void *),
                                  void *opaque, int max_poll_ms, lt_err *err);
/* Destroys a consumer (of lt_kafka_consumer_new, or any other, which has no such state), first leaving the group and committing stored offsets
 * (rd_kafka_consumer_close) when leave_group; returns the close's error code. librdkafka before 2.3.0
 * aborts the process when a cooperative-sticky consumer is destroyed after joining its group but before
 * its first assignment (librdkafka issue #4312; seen when a worker was stopped seconds after it started).
 * Such a consumer is closed but not destroyed: its handle is kept until the process exits. NULL: no-op. */
rd_kafka_resp_err_t lt_kafka_consumer_destroy(rd_kafka_t *rk, int leave_group);
/* Subscribes to topics (n names). */
lt_status lt_kafka_subscribe(rd_kafka_t *rk, const char *const *topics, int n, lt_err *err);

/* A group-less consumer that reads every partition of one topic (assign(), no group, no commits), from
 * the beginning (from_beginning) or from the end, with fetch.wait.max.ms = 100 so a cancel or an event
 * arrives promptly. The topic must exist: LT_ERR_IO when its metadata
 * can't be fetched within timeout_ms (call again later). */
rd_kafka_t *lt_kafka_reader_new(const lt_kafka_config *c, const char *client_id, lt_err *err);
lt_status lt_kafka_reader_assign_all(rd_kafka_t *rk, const char *topic, int from_beginning, int timeout_ms,
                                     lt_err *err);

/* Stores offset+1 of message m for the next commit and commits asynchronously. */
lt_status lt_kafka_store_offset(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t offset,
                                lt_err *err);

/* ---- topics ---- */

/* Creates the five topics (AdminAPI CreateTopics): jobs and events with c->jobs_partitions partitions,
 * control, dlq and jobs.state with 1, jobs.state with cleanup.policy=compact. Topics that already exist
 * are fine. LT_ERR_IO when the brokers can't be reached or don't support topic creation (librdkafka's
 * mock cluster doesn't: lt_kafka_mock creates topics itself) within timeout_ms. */
lt_status lt_kafka_create_topics(const lt_kafka_config *c, int timeout_ms, lt_err *err);

/* The message's error as text (for logs), "" when none. */
const char *lt_kafka_message_error(const rd_kafka_message_t *m);

#endif
