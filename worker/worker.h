/* worker.h - a stateless job worker: consumes training jobs from Kafka, runs them against object storage,
 * and reports events (docs/messages.md describes the messages and the delivery guarantees).
 *
 * One worker runs one job at a time. The main loop polls the consumer every <= 100 ms while the job runs
 * on its own thread, so max.poll.interval.ms is never exceeded; messages polled meanwhile wait in a bounded
 * local queue (the partitions are paused while it is full) and are handled in partition order.
 * A job's offset is stored and committed only after its final "state" event was delivered (at-least-once):
 * a worker that dies mid-job leaves the job to be redelivered, and the next worker resumes it from the
 * newest checkpoint in storage. Handling is idempotent by job id (<output>/.lathe/result.json).
 *
 * Logs go to stderr, one line each: "<time> worker <id>: <message>". */
#ifndef LT_WORKER_H
#define LT_WORKER_H

#include "core/status.h"
#include "messaging/kafka.h"

#include <signal.h>
#include <stdint.h>

typedef struct {
    lt_kafka_config kafka;    /* brokers, topic prefix, passthrough properties */
    const char *storage;      /* root URI against which relative data set/output URIs resolve; may be NULL */
    const char *worker_id;    /* NULL: "<hostname>-<pid>" */
    const char *group_id;     /* consumer group (default "lathe-workers") */
    const char *work_dir;     /* local folder: jobs/<id>/{dataset,output} and the storage cache (required) */
    int max_attempts;         /* tries of a job when it fails transiently (default 5) */
    int storage_retries;      /* retries inside each storage request before a try fails (-1: storage's
                                 default, 5) */
    int retry_base_ms;        /* first backoff between tries; doubles, capped at 60 s (default 1000) */
    int progress_interval_ms; /* at most one "progress" event per interval, plus the last step (default 1000)
                               */
    int poll_ms;              /* consumer poll timeout, 1..100 (default 100) */
    int queue_max; /* messages polled while a job runs wait in a local queue: every partition is paused when
                      it holds this many and resumed at half (default 256, 2..256; the tests use less) */
    int max_poll_interval_ms;    /* max.poll.interval.ms (default 300000) */
    int message_timeout_ms;      /* how long an event may take to reach the brokers (default 60000) */
    int64_t checkpoint_steps;    /* also checkpoint every N steps (default 0: at epoch ends only) */
    int batch_size;              /* batch inference: images per forward pass (default 8) */
    int batch_checkpoint_images; /* batch inference: checkpoint at least every N images (default 256; also
                                    every 10 s) */
    int keep_work;               /* keep jobs/<id>/ after a job (for debugging) */
    int create_topics;           /* create the topics at start (AdminAPI; failures are logged, not fatal) */
    const volatile sig_atomic_t *stop; /* when non-zero: stop the job at its next step (it checkpoints and
                                          uploads), leave the group without committing it, return LT_OK */
} lt_worker_opts;

/* Defaults above, Kafka settings from the environment (kafka.h). Can't fail (a bad LATHE_KAFKA_* variable
 * shows when the worker starts). */
void lt_worker_opts_init(lt_worker_opts *o);

/* Runs until *o->stop becomes non-zero. Returns LT_OK after a clean shutdown; LT_ERR_ARG for bad options,
 * LT_ERR_IO when Kafka can't be set up. */
lt_status lt_worker_run(const lt_worker_opts *o, lt_err *err);

/* "<hostname>-<pid>" into buf. Can't fail. */
void lt_worker_default_id(char *buf, size_t size);

#endif
