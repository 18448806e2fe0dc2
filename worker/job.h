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

#include "storage/storage.h"

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

typedef struct job_ctx job_ctx;

/* Everything one job's thread works with (job.c; batch_job.c runs batch inferences on it). */
struct job_ctx {
    job_run *r;
    int64_t attempt;       /* this try's number (from <output>/.lathe/attempt) */
    char *output_uri;      /* resolved output URI */
    char *dataset_uri;     /* resolved data set URI */
    char *job_dir;         /* <work_dir>/jobs/<id> */
    char *local_dataset;   /* <job_dir>/dataset */
    char *local_output;    /* <job_dir>/output */
    lt_storage_opts sopts; /* shared options of both storage handles */
    lt_storage *out;       /* output storage (this thread's own handle) */
    double last_progress;  /* lt_now() of the last progress event */
    lt_status upload_st;   /* first failed checkpoint upload (stops training), LT_OK otherwise */
    lt_err upload_err;
    lt_job_state final_state; /* SUCCEEDED or CANCELLED when a try ends with LT_OK */
    char final_error[LT_ERR_MSG_MAX];
};

/* Encodes ev with this job's id, worker and attempt and produces it (waiting for delivery when sync). */
lt_status job_emit(job_ctx *c, lt_msg_event *ev, int sync, lt_err *err);
/* For events whose loss only costs the console some detail: logs instead of failing the job. */
void job_emit_async(job_ctx *c, lt_msg_event *ev);
/* Completes a try: writes <output>/.lathe/result.json (what makes the job complete; metrics is taken and
 * freed), emits "result" and sets c->final_state to SUCCEEDED. */
lt_status job_complete(job_ctx *c, cJSON *metrics, lt_err *err);
/* A batch-inference try, after the attempt counter was bumped (batch_job.c). Same contract as a training's
 * try: LT_OK after job_complete, LT_ERR_CANCELLED when stopped, LT_ERR_IO for transient failures, any other
 * status fails the job at once. */
lt_status job_run_batch(job_ctx *c, lt_err *err);

/* The thread body: runs r's job and sets r->done last. */
void *job_thread(void *r);

/* Resolves a job's data set or output URI: URIs with a scheme and absolute paths are used as they are;
 * relative ones are joined to root (when root is set). Returns a malloc'd string or NULL on no memory. */
char *job_resolve_uri(const char *root, const char *uri);

/* Logs one line "<time> worker <id>: <message>" on stderr. */
void worker_log(const char *worker_id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
