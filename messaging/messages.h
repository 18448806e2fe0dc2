/* messages.h - the JSON messages of lathe's job system: encode, decode and validate (docs/messages.md).
 *
 * Every message is a UTF-8 JSON object with "schema": 1 (LT_MSG_SCHEMA). Decoding checks the schema version,
 * the type, every required field and every field's JSON type, and fails with LT_ERR_FORMAT and a message
 * naming the field ("job: field \"dataset\" must be a non-empty string"). Unknown extra fields are ignored,
 * so a newer producer may add fields without breaking older consumers.
 *
 * Message kinds:
 *   <p>jobs     lt_msg_job       {"schema":1,"type":"training","id","name","algorithm","dataset","output",
 *                                 "hyperparameters":{...},"submitted_at"}
 *                                {"schema":1,"type":"batch-inference","id","name","model","dataset","output",
 *                                 "submitted_at"} (algorithm optional: the model's config.json decides)
 *   <p>control  lt_msg_control   {"schema":1,"type":"cancel","id"}
 *   <p>events   lt_msg_event     {"schema":1,"job_id","type","worker","attempt","time", ...type's fields}
 * This file knows nothing about Kafka (kafka.h does); the structs own their strings and JSON values. */
#ifndef LT_MESSAGES_H
#define LT_MESSAGES_H

#include "core/status.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define LT_MSG_SCHEMA 1

/* A job request on <p>jobs (key = id). Every string is malloc'd and owned; free with lt_msg_job_free. */
typedef struct {
    char *type;             /* "training", "batch-inference" or "noop" (the dispatch benchmark's) */
    char *id;               /* job id: [A-Za-z0-9._-], 1..128 characters (it names storage folders) */
    char *name;             /* display name; "" when absent */
    char *algorithm;        /* "image-classification", ... (checked by the worker, not here); "" when absent
                               (batch-inference only) */
    char *dataset;          /* storage URI of the data set folder (batch-inference: a folder of images) */
    char *output;           /* storage URI of the output folder */
    char *model;            /* batch-inference: storage URI of the model directory (required); else NULL */
    cJSON *hyperparameters; /* object (possibly empty); values checked by the worker */
    char *submitted_at;     /* RFC 3339; "" when absent */
} lt_msg_job;

/* Parses and validates a job message of len bytes (need not be NUL-terminated). On success out owns
 * everything; on failure out is zeroed and err names the field. LT_ERR_NOMEM on no memory. */
lt_status lt_msg_job_decode(const void *data, size_t len, lt_msg_job *out, lt_err *err);
/* Encodes a job (validated as decode would; LT_ERR_ARG naming the field otherwise). *json is a malloc'd
 * compact JSON string the caller frees. */
lt_status lt_msg_job_encode(const lt_msg_job *job, char **json, lt_err *err);
/* Frees the members and zeroes job; NULL and a zeroed job are fine. */
void lt_msg_job_free(lt_msg_job *job);

/* Best effort: the "id" of a message that failed to decode, when it has a valid one (so a worker can
 * report a malformed job as FAILED). Returns a malloc'd string or NULL. */
char *lt_msg_peek_id(const void *data, size_t len);

/* A control message on <p>control. */
typedef enum { LT_CONTROL_CANCEL = 0, LT_CONTROL_COUNT } lt_msg_control_type;

typedef struct {
    lt_msg_control_type type;
    char id[129]; /* the job id */
} lt_msg_control;

lt_status lt_msg_control_decode(const void *data, size_t len, lt_msg_control *out, lt_err *err);
/* Returns a malloc'd JSON string, or NULL on no memory / a bad id (err says which). */
char *lt_msg_control_encode(const lt_msg_control *c, lt_err *err);

/* Job states as the API shows them. QUEUED is the scheduler's own; workers send the other four. */
typedef enum {
    LT_JOB_QUEUED = 0,
    LT_JOB_RUNNING,
    LT_JOB_SUCCEEDED,
    LT_JOB_FAILED,
    LT_JOB_CANCELLED,
    LT_JOB_STATE_COUNT
} lt_job_state;

const char *lt_job_state_name(lt_job_state s); /* "QUEUED", ...; "UNKNOWN" out of range */
/* Parses a state name; returns LT_JOB_STATE_COUNT when unknown. */
lt_job_state lt_job_state_parse(const char *name);
/* 1 for SUCCEEDED, FAILED and CANCELLED. */
int lt_job_state_is_final(lt_job_state s);

/* Event types on <p>events. */
typedef enum {
    LT_EV_STATE = 0,  /* state, error?, resumed_from_step? */
    LT_EV_PROGRESS,   /* step, total_steps, epoch */
    LT_EV_LOG,        /* entry (a Trainer log_history object) */
    LT_EV_EVAL,       /* split, metrics, step?, epoch? */
    LT_EV_CHECKPOINT, /* step, uri */
    LT_EV_RESULT,     /* metrics, output */
    LT_EV_COUNT
} lt_msg_event_type;

const char *lt_msg_event_type_name(lt_msg_event_type t); /* "state", "progress", ... */

/* One event. Strings and JSON members are owned (decode) or borrowed (encode: the caller's); use
 * lt_msg_event_free only on decoded events. Fields not used by a type are ignored by encode. */
typedef struct {
    lt_msg_event_type type;
    char *job_id;
    char *worker;    /* worker id */
    int64_t attempt; /* >= 1 */
    char *time;      /* RFC 3339; encode fills the current time when NULL */
    /* state */
    lt_job_state state;
    char *error;               /* FAILED/CANCELLED reason, or NULL */
    int64_t resumed_from_step; /* -1 when not resumed */
    /* progress (step also for checkpoint and eval) */
    int64_t step, total_steps;
    double epoch; /* -1 when absent (eval) */
    /* log */
    cJSON *entry;
    /* eval, result */
    char *split;
    cJSON *metrics;
    /* checkpoint (uri) and result (output) */
    char *uri;
    char *output;
} lt_msg_event;

/* A zeroed event of a type with the "absent" markers set (resumed_from_step = -1, epoch = -1). */
lt_msg_event lt_msg_event_init(lt_msg_event_type type, const char *job_id, const char *worker,
                               int64_t attempt);
lt_status lt_msg_event_encode(const lt_msg_event *ev, char **json, lt_err *err);
lt_status lt_msg_event_decode(const void *data, size_t len, lt_msg_event *out, lt_err *err);
void lt_msg_event_free(lt_msg_event *ev);

/* Checks a job id: 1..128 characters of [A-Za-z0-9._-], not "." or "..". LT_ERR_FORMAT naming it. */
lt_status lt_msg_check_id(const char *id, lt_err *err);
/* Checks RFC 3339 date-time syntax ("2024-05-01T12:00:00Z", fractions and offsets allowed). */
int lt_msg_is_rfc3339(const char *s);
/* Writes the current UTC time as "YYYY-MM-DDTHH:MM:SS.mmmZ" (buf >= 32 bytes). Can't fail. */
void lt_msg_now_rfc3339(char *buf, size_t size);

#endif
