/* producer.h - the scheduler's idempotent Kafka producer whose deliveries can be awaited later.
 *
 * messaging/kafka.h's lt_kafka_produce_sync enqueues and waits in one call; the scheduler must enqueue a job
 * record while it holds the table lock (so a job's records reach <p>jobs.state in the order they changed)
 * and wait after releasing it, so it enqueues here and gets a ticket. A thread of its own serves delivery
 * reports and watches whether the brokers answer (for /v1/health). */
#ifndef LT_SCHED_PRODUCER_H
#define LT_SCHED_PRODUCER_H

#include "core/status.h"
#include "messaging/kafka.h"

typedef struct lt_sched_producer lt_sched_producer;
typedef struct lt_ticket lt_ticket;

/* An idempotent producer (acks=all) on c's brokers. NULL and err on a bad configuration. */
lt_sched_producer *lt_sched_producer_new(const lt_kafka_config *c, const char *client_id, lt_err *err);
/* Flushes (up to 10 s), stops the thread, frees. Outstanding tickets stay valid until waited. NULL is a
 * no-op. */
void lt_sched_producer_destroy(lt_sched_producer *p);

/* Enqueues a message (value NULL = a tombstone) and returns at once. With ticket non-NULL, *ticket is set
 * and must be passed to lt_ticket_wait exactly once. LT_ERR_IO when the queue is full or the producer is
 * fenced. */
lt_status lt_sched_produce(lt_sched_producer *p, const char *topic, const char *key, const char *value,
                           size_t len, lt_ticket **ticket, lt_err *err);
/* Waits for the delivery report (librdkafka retries for message.timeout.ms, 120 s, before failing) and frees
 * the ticket: LT_OK when the brokers acknowledged the message, LT_ERR_IO with the reason otherwise. */
lt_status lt_ticket_wait(lt_ticket *t, lt_err *err);

/* For shutdown: waits up to grace_ms for what is queued, then drops the rest, so every outstanding ticket is
 * answered (with an error) at once instead of after librdkafka's 120 s message timeout. */
void lt_sched_producer_abort(lt_sched_producer *p, int grace_ms);

/* 1 when the brokers answered a metadata request in the last few seconds. */
int lt_sched_producer_healthy(lt_sched_producer *p);

#endif
