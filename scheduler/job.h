/* job.h - the scheduler's record of one training job and the state machine that folds worker events into it.
 *
 * A record is what GET /v1/trainings/{id} answers and what the compacted <p>jobs.state topic holds (key =
 * id), so lt_job_to_json and lt_job_from_json are exact inverses. Events (docs/messages.md, topic <p>events)
 * move a job through
 *
 *     QUEUED -> RUNNING -> SUCCEEDED | FAILED | CANCELLED          (QUEUED -> CANCELLED by the scheduler)
 *
 * The final states are sticky: a redelivered job re-emits its final events, a killed worker's successor
 * repeats RUNNING, and a job cancelled while QUEUED may still be seen by a worker; none of that may move a
 * finished job again. Events of an older attempt than the newest seen are stale (a worker that lost its
 * partition but kept going for a moment) and only their SUCCEEDED/result counts, since the work is done. */
#ifndef LT_SCHED_JOB_H
#define LT_SCHED_JOB_H

#include "core/status.h"
#include "messaging/messages.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>

/* lt_job_state, lt_job_state_name/_parse/_is_final and the events come from messaging/messages.h. */

#define LT_JOB_ID_MAX 129 /* ids are 1..128 characters (lt_msg_check_id) */
#define LT_JOB_TIME_MAX 32
#define LT_JOB_TYPE_BATCH "batch-inference"

/* 1 when j is a batch inference (its progress counts images: step = images done, total_steps = images). */
#define LT_JOB_IS_BATCH(j) ((j)->type && !strcmp((j)->type, LT_JOB_TYPE_BATCH))

typedef struct {
    char id[LT_JOB_ID_MAX]; /* "tr-" + 20 hex digits for jobs the scheduler made */
    char *type;             /* job type: NULL for "training", else "batch-inference" (LT_JOB_TYPE_BATCH) */
    char *model;     /* batch-inference: the model as submitted (a registry name or a URI); else NULL */
    char *model_uri; /* batch-inference: the model directory's storage URI; else NULL */
    char *name;      /* user label; "" when not given */
    char *algorithm; /* "image-classification", ... */
    char *dataset;   /* storage URI of the data set folder */
    char *output;    /* storage URI of the output folder */
    cJSON *hyperparameters; /* every hyperparameter's value (defaults filled in); may be NULL */
    lt_job_state state;
    int attempt;               /* newest attempt seen (the worker counts them), 0 before the first */
    char *worker;              /* worker running (or that ran) the newest attempt; NULL before */
    int has_progress;          /* progress fields below are meaningful */
    int64_t step, total_steps; /* progress */
    double epoch;              /* progress, fractional */
    int has_checkpoint;        /* checkpoint fields below are meaningful */
    int64_t checkpoint_step;   /* newest checkpoint */
    char *checkpoint_uri;
    int64_t resumed_from_step;         /* step the newest attempt resumed from; -1 when it started fresh */
    cJSON *metrics;                    /* final metrics (the "result" event); NULL before */
    cJSON *evaluations;                /* {split: metrics} from "eval" events; NULL before */
    char *error;                       /* why it FAILED (or who CANCELLED); NULL otherwise */
    int cancel_requested;              /* POST .../cancel was called */
    char *idempotency_key;             /* the submission's Idempotency-Key header; NULL when none */
    char request_hash[17];             /* hex FNV-1a 64 of the canonical request, to spot a reused key */
    char created_at[LT_JOB_TIME_MAX];  /* RFC 3339 UTC with milliseconds; "" when unknown */
    char started_at[LT_JOB_TIME_MAX];  /* first RUNNING */
    char finished_at[LT_JOB_TIME_MAX]; /* final state */
    char updated_at[LT_JOB_TIME_MAX];  /* last change */
} lt_job;

/* A zeroed record with state QUEUED, resumed_from_step -1 and the given id (truncated to fit). NULL on OOM.
 * Free with lt_job_destroy (NULL is a no-op). */
lt_job *lt_job_create(const char *id);
void lt_job_destroy(lt_job *j);
/* A deep copy; NULL on OOM. */
lt_job *lt_job_clone(const lt_job *j);

/* The record as JSON (the API's body). Optional fields are null when unknown. NULL on OOM. */
cJSON *lt_job_to_json(const lt_job *j);
/* Reads a record written by lt_job_to_json. LT_ERR_FORMAT naming the field when it isn't one. */
lt_status lt_job_from_json(const cJSON *obj, lt_job **out, lt_err *err);

/* Folds one decoded event (lt_msg_event_decode has checked it) into j. `now` is the scheduler's RFC 3339
 * time, used for updated_at. Returns 1 when j changed, 0 when the event was ignored (stale, after the final
 * state), -1 on OOM (j may then be partly updated, but stays a valid record). */
int lt_job_apply_event(lt_job *j, const lt_msg_event *ev, const char *now);

/* Marks a cancel request: a QUEUED job becomes CANCELLED at once (error "cancelled by request"); a RUNNING
 * one keeps running until its worker reports CANCELLED. Returns 1 when j changed, 0 when j was already
 * final (nothing to cancel). */
int lt_job_request_cancel(lt_job *j, const char *now);

/* Sets *out (a string duplicated, or NULL) and frees the previous value. Returns 0 on OOM. */
int lt_job_set_str(char **field, const char *value);

/* Writes the current UTC time as RFC 3339 with milliseconds ("2024-05-01T12:00:00.123Z") into buf. */
void lt_job_now(char buf[LT_JOB_TIME_MAX]);

#endif
