/* submit.h - checking a POST /v1/trainings body and turning it into a QUEUED record and a <p>jobs message.
 *
 * Body: {"algorithm", "dataset", "output"?, "hyperparameters"?, "name"?}. Unknown members are refused (a typo
 * such as "hyperparameter" would otherwise train with defaults). A dataset or output that is not a URI
 * (s3://..., file://..., /absolute) is relative to the scheduler's storage root; the output defaults to
 * <storage root>/trainings/<id>. Every hyperparameter is judged by algorithms/tasks/hparams.h, and the
 * record and the message carry the whole table with defaults filled in, so a worker of another version
 * trains with the same values. */
#ifndef LT_SCHED_SUBMIT_H
#define LT_SCHED_SUBMIT_H

#include "job.h"
#include "storage/storage.h"

#include <cjson/cJSON.h>
#include <stddef.h>

typedef struct {
    const char *storage_root;            /* LATHE_STORAGE: local folder or s3://bucket[/prefix] */
    const lt_storage_opts *storage_opts; /* for the data set listing; NULL: defaults */
    int check_dataset;                   /* list the data set and check its layout (0 only in tests) */
    int allow_noop; /* accept algorithm "noop" (dispatch benchmark only, see docs/api.md) */
} lt_submit_opts;

/* Checks body (len bytes of JSON) for a job with the given id. On success *job is the QUEUED record (with
 * created_at and request_hash set; the caller sets idempotency_key) and *msg the <p>jobs message; the caller
 * owns both. Errors, with *job and *msg NULL:
 *   LT_ERR_ARG     a bad submission (answer 400); err is "<field>: <why>"
 *   LT_ERR_IO      the data set could not be listed for a transient reason (answer 503)
 *   LT_ERR_NOMEM   out of memory */
lt_status lt_submit_prepare(const char *body, size_t len, const char *id, const lt_submit_opts *o,
                            lt_job **job, cJSON **msg, lt_err *err);

/* Checks an image-classification data set's layout from a listing of its train/ and validation/ prefixes:
 * label folders with at least one file in each split, validation labels known to train, nothing else
 * where label folders or images belong (hidden names, starting with '.', are ignored). LT_ERR_ARG naming
 * the offending key, LT_ERR_IO when storage failed transiently. */
lt_status lt_submit_check_cls_dataset(lt_storage *s, lt_err *err);

/* Resolves a URI given by a user against the storage root: absolute URIs (scheme://... or /path) are
 * returned as a copy, others are joined to root. malloc'd; NULL on OOM. */
char *lt_submit_resolve_uri(const char *root, const char *uri);

/* A new job id "tr-" + 20 random hex digits into buf (LT_JOB_ID_MAX). */
void lt_submit_new_id(char buf[LT_JOB_ID_MAX]);

#endif
