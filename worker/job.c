/* job.c - one training job, start to final event: idempotency, attempt counter, resume from the newest
 * checkpoint in storage, data set download, training with checkpoints uploaded as they are written,
 * events, model upload, result.json, failure classification and retries. */
#define _GNU_SOURCE
#include "job.h"

#include "io/fsutil.h"
#include "storage/storage.h"
#include "tasks/cls_train.h"
#include "tasks/hparams.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void worker_log(const char *worker_id, const char *fmt, ...) {
    char now[40], line[2048];
    lt_msg_now_rfc3339(now, sizeof now);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s worker %s: %s\n", now, worker_id, line);
}

char *job_resolve_uri(const char *root, const char *uri) {
    if (!root || !*root || uri[0] == '/' || strstr(uri, "://")) return strdup(uri);
    return lt_uri_join(root, uri);
}

/* Encodes ev with this job's id, worker and attempt and produces it (waiting for delivery when sync). */
lt_status job_emit(job_ctx *c, lt_msg_event *ev, int sync, lt_err *err) {
    ev->job_id = c->r->job.id;
    ev->worker = (char *)c->r->worker_id;
    ev->attempt = c->attempt;
    char *json = NULL;
    lt_status st = lt_msg_event_encode(ev, &json, err);
    if (st != LT_OK) return st;
    size_t n = strlen(json);
    st = sync ? lt_kafka_produce_sync(c->r->producer, c->r->events_topic, c->r->job.id, json, n, NULL, 0, err)
              : lt_kafka_produce(c->r->producer, c->r->events_topic, c->r->job.id, json, n, NULL, 0, err);
    free(json);
    return st;
}

/* For events whose loss only costs the console some detail: log instead of failing the job. */
void job_emit_async(job_ctx *c, lt_msg_event *ev) {
    lt_err err = {{0}};
    if (job_emit(c, ev, 0, &err) != LT_OK)
        worker_log(c->r->worker_id, "job %s: %s event not sent: %s", c->r->job.id,
                   lt_msg_event_type_name(ev->type), err.msg);
}

static void storage_event(void *ctx, const lt_storage_event *ev) {
    job_ctx *c = ctx;
    if (ev->kind == LT_STORAGE_EV_RETRY)
        worker_log(c->r->worker_id, "job %s: storage retry %d in %d ms: %s", c->r->job.id, ev->attempt,
                   ev->delay_ms, ev->message ? ev->message : "");
}

/* ---- checkpoints ---- */

/* Uploads a local checkpoint folder as checkpoints/step-N/, then checkpoints/latest (so latest always
 * names a complete folder), then removes older step folders from storage. */
static lt_status upload_checkpoint(job_ctx *c, int64_t step, const char *path, lt_err *err) {
    char key[64], prefix[80];
    snprintf(key, sizeof key, "checkpoints/step-%lld", (long long)step);
    lt_status st = lt_storage_sync_up(c->out, path, key, err);
    char *latest = lt_path_join(c->local_output, "checkpoints/latest");
    if (!latest) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = lt_storage_put(c->out, "checkpoints/latest", latest, err);
    free(latest);
    if (st != LT_OK) return st;
    /* older checkpoints: best effort, a leftover folder only costs space */
    lt_storage_obj_list l;
    lt_err ignore = {{0}};
    snprintf(prefix, sizeof prefix, "%s/", key);
    if (lt_storage_list_all(c->out, "checkpoints/", &l, &ignore) == LT_OK) {
        for (size_t i = 0; i < l.n; i++)
            if (strncmp(l.items[i].key, prefix, strlen(prefix)) != 0 &&
                strcmp(l.items[i].key, "checkpoints/latest") != 0)
                lt_storage_delete(c->out, l.items[i].key, &ignore);
        lt_storage_obj_list_free(&l);
    }
    return LT_OK;
}

/* Parses "step-N" (with optional trailing whitespace) into N; -1 when malformed. */
static int64_t parse_step_name(const char *s) {
    if (strncmp(s, "step-", 5) != 0) return -1;
    char *end;
    long long n = strtoll(s + 5, &end, 10);
    while (*end == '\n' || *end == '\r' || *end == ' ')
        end++;
    return end == s + 5 || *end || n < 0 ? -1 : (int64_t)n;
}

/* Downloads the checkpoint named by <output>/checkpoints/latest into the local output folder. *step is
 * its step, or -1 when storage has no (usable) checkpoint. */
static lt_status download_checkpoint(job_ctx *c, int64_t *step, lt_err *err) {
    *step = -1;
    int exists = 0;
    lt_status st = lt_storage_exists(c->out, "checkpoints/latest", &exists, err);
    if (st != LT_OK || !exists) return st;
    void *data = NULL;
    size_t len = 0;
    if ((st = lt_storage_get_mem(c->out, "checkpoints/latest", &data, &len, err)) != LT_OK) return st;
    int64_t n = parse_step_name(data);
    if (n < 0) {
        worker_log(c->r->worker_id, "job %s: ignoring checkpoints/latest (\"%.40s\" is not step-N)",
                   c->r->job.id, (char *)data);
        free(data);
        return LT_OK;
    }
    char key[64], *local = NULL, *latest = lt_path_join(c->local_output, "checkpoints/latest");
    snprintf(key, sizeof key, "checkpoints/step-%lld", (long long)n);
    if (!latest || asprintf(&local, "%s/%s", c->local_output, key) < 0) local = NULL;
    if (!latest || !local) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = lt_storage_sync_down(c->out, key, local, err);
    /* the local latest file is written last, as the trainer does, so it only ever names a whole folder */
    if (st == LT_OK) st = lt_write_file_atomic(latest, data, len, err);
    if (st == LT_OK) *step = n;
    free(data);
    free(local);
    free(latest);
    return st;
}

/* ---- training hooks ---- */

static double num(const cJSON *o, const char *name) {
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, name));
}

static void on_train_event(void *ctx, const char *type, const cJSON *payload) {
    job_ctx *c = ctx;
    lt_msg_event ev;
    if (!strcmp(type, "progress")) {
        int64_t step = (int64_t)num(payload, "step"), total = (int64_t)num(payload, "total_steps");
        double now = lt_now();
        if (step < total && (now - c->last_progress) * 1000.0 < c->r->opts->progress_interval_ms) return;
        c->last_progress = now;
        ev = lt_msg_event_init(LT_EV_PROGRESS, NULL, NULL, 0);
        ev.step = step;
        ev.total_steps = total;
        ev.epoch = num(payload, "epoch");
        job_emit_async(c, &ev);
    } else if (!strcmp(type, "log")) {
        ev = lt_msg_event_init(LT_EV_LOG, NULL, NULL, 0);
        ev.entry = (cJSON *)payload;
        job_emit_async(c, &ev);
    } else if (!strcmp(type, "eval")) {
        ev = lt_msg_event_init(LT_EV_EVAL, NULL, NULL, 0);
        ev.split = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(payload, "split"));
        ev.metrics = cJSON_GetObjectItemCaseSensitive(payload, "metrics");
        ev.step = (int64_t)num(payload, "step");
        ev.epoch = num(payload, "epoch");
        if (ev.split && cJSON_IsObject(ev.metrics)) job_emit_async(c, &ev);
        if (ev.split && cJSON_IsObject(ev.metrics))
            worker_log(c->r->worker_id, "job %s: %s at step %lld: accuracy %.4f loss %.4f", c->r->job.id,
                       ev.split, (long long)ev.step, num(ev.metrics, "accuracy"), num(ev.metrics, "loss"));
    } else if (!strcmp(type, "checkpoint") && c->upload_st == LT_OK) {
        int64_t step = (int64_t)num(payload, "step");
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(payload, "path"));
        if (!path) return;
        c->upload_st = upload_checkpoint(c, step, path, &c->upload_err);
        if (c->upload_st != LT_OK) {
            worker_log(c->r->worker_id, "job %s: checkpoint step %lld upload failed: %s", c->r->job.id,
                       (long long)step, c->upload_err.msg);
            return;
        }
        char rel[64], *uri = NULL;
        snprintf(rel, sizeof rel, "checkpoints/step-%lld", (long long)step);
        if (!(uri = lt_uri_join(c->output_uri, rel))) return;
        worker_log(c->r->worker_id, "job %s: checkpoint step %lld uploaded to %s", c->r->job.id,
                   (long long)step, uri);
        ev = lt_msg_event_init(LT_EV_CHECKPOINT, NULL, NULL, 0);
        ev.step = step;
        ev.uri = uri;
        job_emit_async(c, &ev);
        free(uri);
    }
}

/* Polled between steps: a stop request, or a checkpoint that could not be uploaded (so the try ends and
 * is retried rather than training on without a way to resume). */
static int should_stop(void *ctx) {
    job_ctx *c = ctx;
    return atomic_load(&c->r->stop) != JOB_STOP_NONE || c->upload_st != LT_OK;
}

/* ---- output upload ---- */

/* Uploads every regular file below local_root/rel to key rel/..., skipping the top-level checkpoints/
 * folder (uploaded as checkpoints happen). */
static lt_status upload_tree(lt_storage *s, const char *local_root, const char *rel, lt_err *err) {
    char *dirpath = rel[0] ? lt_path_join(local_root, rel) : strdup(local_root);
    DIR *d = dirpath ? opendir(dirpath) : NULL;
    if (!d) {
        lt_status st = dirpath ? lt_errorf(err, LT_ERR_IO, "%s: cannot read the output folder", dirpath)
                               : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        free(dirpath);
        return st;
    }
    lt_status st = LT_OK;
    struct dirent *e;
    while (st == LT_OK && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!rel[0] && !strcmp(e->d_name, "checkpoints")) continue;
        char *key = rel[0] ? lt_path_join(rel, e->d_name) : strdup(e->d_name);
        char *full = key ? lt_path_join(local_root, key) : NULL;
        struct stat sb;
        if (!key || !full)
            st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        else if (stat(full, &sb) != 0)
            st = lt_errorf(err, LT_ERR_IO, "%s: cannot stat", full);
        else if (S_ISDIR(sb.st_mode))
            st = upload_tree(s, local_root, key, err);
        else if (S_ISREG(sb.st_mode))
            st = lt_storage_put(s, key, full, err);
        free(key);
        free(full);
    }
    closedir(d);
    free(dirpath);
    return st;
}

/* ---- one try ---- */

/* Reads <output>/.lathe/result.json when it exists; *found says whether it did. Emits "result" from it. */
static lt_status replay_result(job_ctx *c, int *found, lt_err *err) {
    int exists = 0;
    *found = 0;
    lt_status st = lt_storage_exists(c->out, ".lathe/result.json", &exists, err);
    if (st != LT_OK || !exists) return st;
    void *data = NULL;
    size_t len = 0;
    if ((st = lt_storage_get_mem(c->out, ".lathe/result.json", &data, &len, err)) != LT_OK) return st;
    cJSON *res = cJSON_ParseWithLength(data, len);
    free(data);
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(res, "metrics");
    const char *output = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(res, "output"));
    double attempt = num(res, "attempt");
    if (!cJSON_IsObject(metrics) || !output || !(attempt >= 1)) {
        /* a damaged marker must not stop the job forever: train again and rewrite it */
        worker_log(c->r->worker_id, "job %s: ignoring a malformed .lathe/result.json", c->r->job.id);
        cJSON_Delete(res);
        return LT_OK;
    }
    *found = 1;
    c->attempt = (int64_t)attempt;
    worker_log(c->r->worker_id, "job %s: already complete (attempt %lld); re-emitting its result",
               c->r->job.id, (long long)c->attempt);
    lt_msg_event ev = lt_msg_event_init(LT_EV_RESULT, NULL, NULL, 0);
    ev.metrics = (cJSON *)metrics;
    ev.output = (char *)output;
    st = job_emit(c, &ev, 1, err);
    cJSON_Delete(res);
    return st;
}

/* Reads .lathe/attempt (missing: 0); with bump, writes it back plus one. Sets c->attempt. */
static lt_status read_attempt(job_ctx *c, int bump, lt_err *err) {
    int exists = 0;
    int64_t n = 0;
    lt_status st = lt_storage_exists(c->out, ".lathe/attempt", &exists, err);
    if (st == LT_OK && exists) {
        void *data = NULL;
        size_t len = 0;
        if ((st = lt_storage_get_mem(c->out, ".lathe/attempt", &data, &len, err)) != LT_OK) return st;
        n = strtoll(data, NULL, 10);
        if (n < 0) n = 0;
        free(data);
    }
    if (st != LT_OK) return st;
    c->attempt = n;
    if (!bump) return LT_OK;
    char text[32];
    int len = snprintf(text, sizeof text, "%lld\n", (long long)(n + 1));
    if ((st = lt_storage_put_mem(c->out, ".lathe/attempt", text, (size_t)len, err)) == LT_OK)
        c->attempt = n + 1;
    return st;
}

static lt_status check_stop(job_ctx *c, lt_err *err) {
    if (atomic_load(&c->r->stop) == JOB_STOP_NONE) return LT_OK;
    return lt_errorf(err, LT_ERR_CANCELLED, "stopped before training");
}

/* One try of the job. LT_OK: c->final_state is SUCCEEDED (result emitted) or CANCELLED is decided by the
 * caller; LT_ERR_CANCELLED: a stop request ended it (the caller reads which); any other status is a
 * failure, transient when LT_ERR_IO. */
static lt_status run_once(job_ctx *c, lt_err *err) {
    const lt_msg_job *j = &c->r->job;
    if (!strcmp(j->algorithm, "noop")) {
        /* the dispatch benchmark's job (only a scheduler run with --allow-noop accepts one): the whole trip
         * of a training through Kafka and the worker, without storage or training */
        lt_msg_event ev = lt_msg_event_init(LT_EV_RESULT, NULL, NULL, 0);
        cJSON *none = cJSON_CreateObject();
        ev.metrics = none;
        ev.output = c->output_uri;
        lt_status st = job_emit(c, &ev, 1, err);
        cJSON_Delete(none);
        if (st == LT_OK) c->final_state = LT_JOB_SUCCEEDED;
        return st;
    }
    int done = 0;
    lt_status st = replay_result(c, &done, err);
    if (st != LT_OK || done) {
        c->final_state = LT_JOB_SUCCEEDED;
        return st;
    }
    if (atomic_load(&c->r->stop) == JOB_STOP_CANCEL) {
        /* cancelled before it started here: report the attempt count as it stands */
        if ((st = read_attempt(c, 0, err)) != LT_OK) return st;
        return check_stop(c, err);
    }
    if ((st = read_attempt(c, 1, err)) != LT_OK) return st;
    if (!strcmp(j->type, "batch-inference")) return job_run_batch(c, err);

    /* bad input fails at once, before anything is downloaded */
    lt_algorithm algo;
    lt_cls_train_opts o = {0};
    if ((st = lt_algorithm_parse(j->algorithm, &algo, err)) != LT_OK) return st;
    if (algo != LT_ALGO_IMAGE_CLASSIFICATION)
        return lt_errorf(err, LT_ERR_ARG,
                         "algorithm \"%s\" is not supported by this worker yet (image-classification is)",
                         j->algorithm);
    lt_hparams_defaults(&o.hp, algo);
    if ((st = lt_hparams_set_json(&o.hp, j->hyperparameters, err)) != LT_OK) return st;

    if ((st = lt_remove_tree(c->job_dir, err)) != LT_OK ||
        (st = lt_mkdir_p(c->local_dataset, err)) != LT_OK || (st = lt_mkdir_p(c->local_output, err)) != LT_OK)
        return st;
    int64_t resumed = -1;
    if ((st = download_checkpoint(c, &resumed, err)) != LT_OK) return st;
    if (resumed >= 0)
        worker_log(c->r->worker_id, "job %s: running (attempt %lld), resuming from step %lld", j->id,
                   (long long)c->attempt, (long long)resumed);
    else
        worker_log(c->r->worker_id, "job %s: running (attempt %lld) on %s", j->id, (long long)c->attempt,
                   c->dataset_uri);
    lt_msg_event ev = lt_msg_event_init(LT_EV_STATE, NULL, NULL, 0);
    ev.state = LT_JOB_RUNNING;
    ev.resumed_from_step = resumed;
    job_emit_async(c, &ev);

    if ((st = check_stop(c, err)) != LT_OK) return st;
    lt_storage *ds = lt_storage_open(c->dataset_uri, &c->sopts, err);
    if (!ds) return LT_ERR_ARG;
    st = lt_storage_sync_down(ds, "", c->local_dataset, err);
    lt_storage_close(ds);
    if (st != LT_OK) return st;
    if ((st = check_stop(c, err)) != LT_OK) return st;

    o.dataset = c->local_dataset;
    o.output = c->local_output;
    o.resume = resumed >= 0;
    o.seed = 42;
    o.checkpoint_steps = c->r->opts->checkpoint_steps;
    o.quiet = 1;
    o.hooks.event = on_train_event;
    o.hooks.should_stop = should_stop;
    o.hooks.ctx = c;
    c->upload_st = LT_OK;
    c->last_progress = 0;
    cJSON *metrics = NULL;
    st = lt_cls_train(&o, &metrics, err);
    if (st == LT_ERR_CANCELLED && c->upload_st != LT_OK) {
        if (err) *err = c->upload_err;
        return c->upload_st;
    }
    if (st != LT_OK) {
        cJSON_Delete(metrics);
        return st;
    }

    /* the model directory, then the marker that makes the job complete */
    if ((st = upload_tree(c->out, c->local_output, "", err)) != LT_OK) {
        cJSON_Delete(metrics);
        return st;
    }
    return job_complete(c, metrics, err);
}

lt_status job_complete(job_ctx *c, cJSON *metrics, lt_err *err) {
    const lt_msg_job *j = &c->r->job;
    lt_status st = LT_OK;
    cJSON *res = cJSON_CreateObject();
    char now[40], *json = NULL;
    lt_msg_now_rfc3339(now, sizeof now);
    cJSON_AddNumberToObject(res, "schema", LT_MSG_SCHEMA);
    cJSON_AddStringToObject(res, "job_id", j->id);
    cJSON_AddStringToObject(res, "output", c->output_uri);
    cJSON_AddItemToObject(res, "metrics", metrics);
    cJSON_AddNumberToObject(res, "attempt", (double)c->attempt);
    cJSON_AddStringToObject(res, "worker", c->r->worker_id);
    cJSON_AddStringToObject(res, "finished_at", now);
    if (!(json = cJSON_Print(res))) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = lt_storage_put_mem(c->out, ".lathe/result.json", json, strlen(json), err);
    if (st == LT_OK) {
        lt_msg_event ev = lt_msg_event_init(LT_EV_RESULT, NULL, NULL, 0);
        ev.metrics = cJSON_GetObjectItemCaseSensitive(res, "metrics");
        ev.output = c->output_uri;
        st = job_emit(c, &ev, 1, err);
    }
    free(json);
    cJSON_Delete(res);
    if (st == LT_OK) c->final_state = LT_JOB_SUCCEEDED;
    return st;
}

/* Sleeps ms milliseconds in 100 ms slices; returns early when a stop is requested. */
static void backoff(job_ctx *c, int ms) {
    for (int waited = 0; waited < ms && atomic_load(&c->r->stop) == JOB_STOP_NONE; waited += 100) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static int is_transient(lt_status st) {
    return st == LT_ERR_IO;
}

/* Emits the final state event and waits for its delivery; the outcome says whether the offset may be
 * stored. */
static void finish(job_ctx *c, lt_job_state state, const char *error) {
    lt_msg_event ev = lt_msg_event_init(LT_EV_STATE, NULL, NULL, 0);
    lt_err err = {{0}};
    ev.state = state;
    ev.error = error && *error ? (char *)error : NULL;
    if (job_emit(c, &ev, 1, &err) != LT_OK) {
        worker_log(c->r->worker_id, "job %s: final event %s not delivered (%s); the job will be redelivered",
                   c->r->job.id, lt_job_state_name(state), err.msg);
        c->r->outcome = JOB_OUTCOME_REDELIVER;
        return;
    }
    c->r->outcome = JOB_OUTCOME_FINAL;
    c->r->final_state = state;
    worker_log(c->r->worker_id, "job %s: %s%s%s", c->r->job.id, lt_job_state_name(state),
               ev.error ? ": " : "", ev.error ? ev.error : "");
}

void *job_thread(void *arg) {
    job_run *r = arg;
    const lt_worker_opts *o = r->opts;
    job_ctx c;
    memset(&c, 0, sizeof c);
    c.r = r;
    lt_err err = {{0}};
    r->outcome = JOB_OUTCOME_REDELIVER;
    char *cache = lt_path_join(o->work_dir, "cache");
    c.output_uri = job_resolve_uri(o->storage, r->job.output);
    c.dataset_uri = job_resolve_uri(o->storage, r->job.dataset);
    if (asprintf(&c.job_dir, "%s/jobs/%s", o->work_dir, r->job.id) < 0) c.job_dir = NULL;
    c.local_dataset = c.job_dir ? lt_path_join(c.job_dir, "dataset") : NULL;
    c.local_output = c.job_dir ? lt_path_join(c.job_dir, "output") : NULL;
    lt_storage_opts_init(&c.sopts);
    c.sopts.cache_dir = cache;
    if (o->storage_retries >= 0) c.sopts.max_retries = o->storage_retries;
    c.sopts.on_event = storage_event;
    c.sopts.event_ctx = &c;
    lt_status st = LT_OK;
    if (!cache || !c.output_uri || !c.dataset_uri || !c.local_dataset || !c.local_output)
        st = lt_errorf(&err, LT_ERR_NOMEM, "out of memory");
    else if (!(c.out = lt_storage_open(c.output_uri, &c.sopts, &err)))
        st = err.msg[0] ? LT_ERR_ARG : lt_errorf(&err, LT_ERR_ARG, "cannot open output %s", c.output_uri);
    for (int try = 1; st == LT_OK; try++) {
        lt_err_clear(&err);
        st = run_once(&c, &err);
        if (st == LT_OK || !is_transient(st) || try >= o->max_attempts ||
            atomic_load(&r->stop) != JOB_STOP_NONE)
            break;
        int delay = o->retry_base_ms;
        for (int i = 1; i < try && delay < 60000; i++)
            delay *= 2;
        if (delay > 60000) delay = 60000;
        worker_log(r->worker_id, "job %s: transient failure (try %d of %d), retrying in %d ms: %s", r->job.id,
                   try, o->max_attempts, delay, err.msg);
        cJSON *entry = cJSON_CreateObject();
        cJSON_AddStringToObject(entry, "retry", err.msg);
        cJSON_AddNumberToObject(entry, "try", try);
        cJSON_AddNumberToObject(entry, "delay_ms", delay);
        lt_msg_event ev = lt_msg_event_init(LT_EV_LOG, NULL, NULL, 0);
        ev.entry = entry;
        job_emit_async(&c, &ev);
        cJSON_Delete(entry);
        backoff(&c, delay);
        st = LT_OK;
    }
    job_stop stop = (job_stop)atomic_load(&r->stop);
    if (st == LT_OK) {
        finish(&c, c.final_state, NULL);
    } else if ((st == LT_ERR_CANCELLED || is_transient(st)) && stop == JOB_STOP_CANCEL) {
        char msg[LT_ERR_MSG_MAX + 16];
        snprintf(msg, sizeof msg, "cancelled: %s", err.msg[0] ? err.msg : "on request");
        finish(&c, LT_JOB_CANCELLED, msg);
    } else if ((st == LT_ERR_CANCELLED || is_transient(st)) && stop != JOB_STOP_NONE) {
        /* shutdown or revocation: the newest checkpoint is in storage; the next worker resumes from it */
        worker_log(r->worker_id, "job %s: stopped (%s); left for redelivery", r->job.id,
                   stop == JOB_STOP_REVOKED ? "partition revoked" : "shutting down");
        r->outcome = JOB_OUTCOME_REDELIVER;
    } else {
        char msg[LT_ERR_MSG_MAX + 64];
        if (is_transient(st))
            snprintf(msg, sizeof msg, "gave up after %d tries: %s", o->max_attempts, err.msg);
        else
            snprintf(msg, sizeof msg, "%s", err.msg[0] ? err.msg : lt_status_str(st));
        finish(&c, LT_JOB_FAILED, msg);
    }
    lt_storage_close(c.out);
    if (c.job_dir && !o->keep_work) lt_remove_tree(c.job_dir, NULL);
    free(cache);
    free(c.output_uri);
    free(c.dataset_uri);
    free(c.job_dir);
    free(c.local_dataset);
    free(c.local_output);
    atomic_store(&r->done, 1);
    /* wake the main loop now rather than at the end of its poll timeout (up to --poll-ms per job) */
    if (r->wake) rd_kafka_queue_yield(r->wake);
    return NULL;
}
