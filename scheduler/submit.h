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
    /* Batch inference: resolves a model *name* (a "model" with no '/' and no scheme) to the storage URI of
     * its model directory, written into uri (cap bytes). Returns 1 when found, 0 when there is no such model
     * (answered 404 naming "model"), -1 when it failed (err says why; answered 503). NULL: names are refused
     * with 400 (only storage URIs work). The lead wires it to the model registry (scheduler/registry.h). */
    int (*resolve_model)(void *ctx, const char *name, char *uri, size_t cap, lt_err *err);
    void *resolve_model_ctx;
} lt_submit_opts;

/* Checks body (len bytes of JSON) for a job with the given id. On success *job is the QUEUED record (with
 * created_at and request_hash set; the caller sets idempotency_key) and *msg the <p>jobs message; the caller
 * owns both. Errors, with *job and *msg NULL:
 *   LT_ERR_ARG     a bad submission (answer 400); err is "<field>: <why>"
 *   LT_ERR_IO      the data set could not be listed for a transient reason (answer 503)
 *   LT_ERR_NOMEM   out of memory */
lt_status lt_submit_prepare(const char *body, size_t len, const char *id, const lt_submit_opts *o,
                            lt_job **job, cJSON **msg, lt_err *err);

/* Checks a POST /v1/batch-inferences body {"model", "dataset", "output"?, "name"?} for a job with the given
 * id (which should start "bi-"), as lt_submit_prepare does a training's: *job is the QUEUED record (type
 * "batch-inference") and *msg the <p>jobs message. "model" is a storage URI when it holds a '/' (s3://...,
 * file://..., /abs, or relative to the storage root), else a model name given to o->resolve_model. With
 * o->check_dataset, the model URI must hold a config.json and the data set at least one PNG or JPEG.
 * On failure *http is the status to answer: 400 (err "<field>: <why>"), 404 (no such model name), 503
 * (storage or the resolver failed), 500 (out of memory). */
lt_status lt_submit_prepare_batch(const char *body, size_t len, const char *id, const lt_submit_opts *o,
                                  lt_job **job, cJSON **msg, int *http, lt_err *err);

/* Checks an image-classification data set's layout from a listing of its train/ and validation/ prefixes:
 * label folders with at least one file in each split, validation labels known to train, nothing else
 * where label folders or images belong (hidden names, starting with '.', are ignored). LT_ERR_ARG naming
 * the offending key, LT_ERR_IO when storage failed transiently. */
lt_status lt_submit_check_cls_dataset(lt_storage *s, lt_err *err);

/* Resolves a URI given by a user against the storage root: absolute URIs (scheme://... or /path) are
 * returned as a copy, others are joined to root. malloc'd; NULL on OOM. */
char *lt_submit_resolve_uri(const char *root, const char *uri);

/* A new job id "tr-" + 20 random hex digits into buf (LT_JOB_ID_MAX); batch inferences change the prefix to
 * "bi-". */
void lt_submit_new_id(char buf[LT_JOB_ID_MAX]);

#endif
