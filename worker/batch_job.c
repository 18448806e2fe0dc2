/* batch_job.c - a batch-inference job on the training jobs' path (job.c): the model directory and the images
 * down from storage, the body (batch.c) with its progress and checkpoints as events, the result. job.c has
 * already handled idempotency (result.json), an early cancel and the attempt counter. */
#define _GNU_SOURCE
#include "batch.h"
#include "job.h"

#include "io/fsutil.h"
#include "tasks/train_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    job_ctx *c;
    char *ck_uri; /* <output>/.lathe/batch/ for checkpoint events */
} batch_ctx;

static int batch_should_stop(void *ctx) {
    batch_ctx *b = ctx;
    return atomic_load(&b->c->r->stop) != JOB_STOP_NONE;
}

static void batch_start(void *ctx, int64_t resumed_from, int64_t total) {
    batch_ctx *b = ctx;
    job_ctx *c = b->c;
    if (resumed_from >= 0)
        worker_log(c->r->worker_id,
                   "job %s: batch inference (attempt %lld), resuming after image %lld of %lld", c->r->job.id,
                   (long long)c->attempt, (long long)resumed_from, (long long)total);
    else
        worker_log(c->r->worker_id, "job %s: batch inference (attempt %lld): %lld images", c->r->job.id,
                   (long long)c->attempt, (long long)total);
    lt_msg_event ev = lt_msg_event_init(LT_EV_STATE, NULL, NULL, 0);
    ev.state = LT_JOB_RUNNING;
    ev.resumed_from_step = resumed_from;
    job_emit_async(c, &ev);
    /* progress right away, so the record shows the total (and where a resumed job stands) */
    ev = lt_msg_event_init(LT_EV_PROGRESS, NULL, NULL, 0);
    ev.step = resumed_from > 0 ? resumed_from : 0;
    ev.total_steps = total;
    ev.epoch = total > 0 ? (double)ev.step / (double)total : 0;
    job_emit_async(c, &ev);
    c->last_progress = lt_now();
}

static void batch_progress(void *ctx, int64_t done, int64_t total) {
    batch_ctx *b = ctx;
    job_ctx *c = b->c;
    double now = lt_now();
    if (done < total && (now - c->last_progress) * 1000.0 < c->r->opts->progress_interval_ms) return;
    c->last_progress = now;
    lt_msg_event ev = lt_msg_event_init(LT_EV_PROGRESS, NULL, NULL, 0);
    ev.step = done;
    ev.total_steps = total;
    ev.epoch = total > 0 ? (double)done / (double)total : 0;
    job_emit_async(c, &ev);
}

static void batch_checkpoint(void *ctx, int64_t done) {
    batch_ctx *b = ctx;
    lt_msg_event ev = lt_msg_event_init(LT_EV_CHECKPOINT, NULL, NULL, 0);
    ev.step = done;
    ev.uri = b->ck_uri;
    job_emit_async(b->c, &ev);
}

/* Downloads the model directory's top-level files (a training's output also holds checkpoints/, tensorboard/
 * and .lathe/, which inference does not need). An empty listing is a bad model, not a transient fault. */
static lt_status download_model(job_ctx *c, const char *uri, const char *local, lt_err *err) {
    lt_err serr = {{0}};
    lt_storage *s = lt_storage_open(uri, &c->sopts, &serr);
    if (!s) return lt_errorf(err, LT_ERR_ARG, "model: %s", serr.msg);
    lt_storage_obj_list l = {0};
    lt_status st = lt_storage_list_all(s, "", &l, err);
    size_t files = 0;
    for (size_t i = 0; st == LT_OK && i < l.n; i++) {
        const char *key = l.items[i].key;
        if (strchr(key, '/') || key[0] == '.') continue;
        char *path = lt_path_join(local, key);
        st = path ? lt_storage_get(s, key, path, err) : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        free(path);
        files++;
    }
    if (st == LT_OK && files == 0)
        st = lt_errorf(err, LT_ERR_ARG,
                       "model: %s holds no files (expected a model directory: config.json, "
                       "model.safetensors, ...)",
                       uri);
    lt_storage_obj_list_free(&l);
    lt_storage_close(s);
    return st;
}

lt_status job_run_batch(job_ctx *c, lt_err *err) {
    const lt_msg_job *j = &c->r->job;
    batch_ctx b = {.c = c};
    char *model_uri = job_resolve_uri(c->r->opts->storage, j->model ? j->model : "");
    char *local_model = lt_path_join(c->job_dir, "model");
    char *scratch = lt_path_join(c->job_dir, "batch");
    b.ck_uri = lt_uri_join(c->output_uri, ".lathe/batch/");
    lt_status st = LT_OK;
    if (!model_uri || !local_model || !scratch || !b.ck_uri)
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    else if (!j->model || !j->model[0])
        st = lt_errorf(err, LT_ERR_ARG, "model: missing from the job message");
    if (st == LT_OK) st = lt_remove_tree(c->job_dir, err);
    if (st == LT_OK) st = lt_mkdir_p(c->local_dataset, err);
    if (st == LT_OK) st = lt_mkdir_p(local_model, err);
    worker_log(c->r->worker_id, "job %s: batch inference of %s on %s", j->id, model_uri ? model_uri : "?",
               c->dataset_uri);
    if (st == LT_OK) st = download_model(c, model_uri, local_model, err);
    if (st == LT_OK && atomic_load(&c->r->stop) != JOB_STOP_NONE)
        st = lt_errorf(err, LT_ERR_CANCELLED, "stopped before the batch inference");
    if (st == LT_OK) {
        lt_err serr = {{0}};
        lt_storage *ds = lt_storage_open(c->dataset_uri, &c->sopts, &serr);
        if (!ds) st = lt_errorf(err, LT_ERR_ARG, "dataset: %s", serr.msg);
        if (ds) st = lt_storage_sync_down(ds, "", c->local_dataset, err);
        lt_storage_close(ds);
    }
    cJSON *summary = NULL;
    if (st == LT_OK) {
        lt_batch_opts o = {
            .model_dir = local_model,
            .images_dir = c->local_dataset,
            .work_dir = scratch,
            .out = c->out,
            .model_name = j->model,
            .dataset_name = j->dataset,
            .batch_size = c->r->opts->batch_size,
            .checkpoint_images = c->r->opts->batch_checkpoint_images,
            .hooks = {.ctx = &b,
                      .should_stop = batch_should_stop,
                      .start = batch_start,
                      .progress = batch_progress,
                      .checkpoint = batch_checkpoint},
        };
        st = lt_batch_run(&o, &summary, err);
    }
    free(model_uri);
    free(local_model);
    free(scratch);
    free(b.ck_uri);
    if (st != LT_OK) return st;
    return job_complete(c, summary, err);
}
