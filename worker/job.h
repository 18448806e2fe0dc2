/* job.h - one job's execution on its own thread (internal to worker/): storage, training, events.
 *
 * The main loop (worker.c) fills a job_run, starts job_thread, and talks to it only through the two
 * atomics: it sets `stop` (cancel, shutdown, revocation) and reads `done`. When done is set the thread has
 * finished with every field except what the main loop owns, and outcome says what to do with the offset. */
#ifndef LT_WORKER_JOB_H
#define LT_WORKER_JOB_H

#include "messaging/kafka.h"
#include "messaging/messages.h"
#include "worker.h"

#include <stdatomic.h>

typedef enum {
    JOB_STOP_NONE = 0,
    JOB_STOP_CANCEL,   /* a cancel arrived on <p>control: end CANCELLED */
    JOB_STOP_SHUTDOWN, /* SIGTERM: checkpoint, upload, no final event */
    JOB_STOP_REVOKED   /* the partition was revoked: as shutdown */
} job_stop;

typedef enum {
    JOB_OUTCOME_FINAL = 0, /* the final state event was delivered: store the offset */
    JOB_OUTCOME_REDELIVER  /* not finished here, or the final event could not be delivered: don't store */
} job_outcome;

typedef struct {
    /* set by the main loop before the thread starts, then read-only */
    const lt_worker_opts *opts;
    const char *worker_id;
    lt_kafka_producer *producer; /* shared, thread-safe */
    rd_kafka_queue_t *wake;      /* yielded once done is set, so the main loop's poll returns at once */
    char events_topic[LT_KAFKA_TOPIC_MAX];
    lt_msg_job job;                 /* owned */
    char topic[LT_KAFKA_TOPIC_MAX]; /* where the job message came from */
    int32_t partition;
    int64_t offset;
    /* shared */
    atomic_int stop; /* job_stop, written by the main loop */
    atomic_int done; /* 1 once the thread is finished */
    /* written by the thread, read by the main loop after done */
    job_outcome outcome;
    lt_job_state final_state; /* when outcome is FINAL */
} job_run;

/* The thread body: runs r's job and sets r->done last. */
void *job_thread(void *r);

/* Resolves a job's data set or output URI: URIs with a scheme and absolute paths are used as they are;
 * relative ones are joined to root (when root is set). Returns a malloc'd string or NULL on no memory. */
char *job_resolve_uri(const char *root, const char *uri);

/* Logs one line "<time> worker <id>: <message>" on stderr. */
void worker_log(const char *worker_id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
