/* job.c - job records: JSON round trip and the event-folding state machine (see job.h). */
#include "job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lt_job_now(char buf[LT_JOB_TIME_MAX]) {
    lt_msg_now_rfc3339(buf, LT_JOB_TIME_MAX);
}

int lt_job_set_str(char **field, const char *value) {
    char *copy = NULL;
    if (value && !(copy = strdup(value))) return 0;
    free(*field);
    *field = copy;
    return 1;
}

static void copy_fixed(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

lt_job *lt_job_create(const char *id) {
    lt_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    copy_fixed(j->id, sizeof j->id, id);
    j->state = LT_JOB_QUEUED;
    j->resumed_from_step = -1;
    return j;
}

void lt_job_destroy(lt_job *j) {
    if (!j) return;
    free(j->type);
    free(j->model);
    free(j->model_uri);
    free(j->name);
    free(j->algorithm);
    free(j->dataset);
    free(j->output);
    cJSON_Delete(j->hyperparameters);
    free(j->worker);
    free(j->checkpoint_uri);
    cJSON_Delete(j->metrics);
    cJSON_Delete(j->evaluations);
    free(j->error);
    free(j->idempotency_key);
    free(j);
}

lt_job *lt_job_clone(const lt_job *src) {
    lt_job *j = malloc(sizeof *j);
    if (!j) return NULL;
    *j = *src;
    /* every owned pointer is re-made; on failure the half copy frees only what it owns */
    j->type = j->model = j->model_uri = NULL;
    j->name = j->algorithm = j->dataset = j->output = j->worker = j->checkpoint_uri = j->error =
        j->idempotency_key = NULL;
    j->hyperparameters = j->metrics = j->evaluations = NULL;
    int ok = lt_job_set_str(&j->type, src->type) && lt_job_set_str(&j->model, src->model) &&
             lt_job_set_str(&j->model_uri, src->model_uri) && lt_job_set_str(&j->name, src->name) &&
             lt_job_set_str(&j->algorithm, src->algorithm) && lt_job_set_str(&j->dataset, src->dataset) &&
             lt_job_set_str(&j->output, src->output) && lt_job_set_str(&j->worker, src->worker) &&
             lt_job_set_str(&j->checkpoint_uri, src->checkpoint_uri) &&
             lt_job_set_str(&j->error, src->error) &&
             lt_job_set_str(&j->idempotency_key, src->idempotency_key);
    if (ok && src->hyperparameters)
        ok = (j->hyperparameters = cJSON_Duplicate(src->hyperparameters, 1)) != NULL;
    if (ok && src->metrics) ok = (j->metrics = cJSON_Duplicate(src->metrics, 1)) != NULL;
    if (ok && src->evaluations) ok = (j->evaluations = cJSON_Duplicate(src->evaluations, 1)) != NULL;
    if (!ok) {
        lt_job_destroy(j);
        return NULL;
    }
    return j;
}

/* ---- JSON ---- */

static cJSON *str_or_null(const char *s) {
    return s ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *time_or_null(const char *s) {
    return s[0] ? cJSON_CreateString(s) : cJSON_CreateNull();
}

static cJSON *dup_or_null(const cJSON *v) {
    return v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull();
}

/* Adds item (which may be NULL after a failed allocation) and reports whether it was there. */
static int add(cJSON *obj, const char *name, cJSON *item) {
    if (!item) return 0;
    cJSON_AddItemToObject(obj, name, item);
    return 1;
}

cJSON *lt_job_to_json(const lt_job *j) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    int batch = LT_JOB_IS_BATCH(j);
    int ok = add(o, "id", cJSON_CreateString(j->id)) &&
             add(o, "type", cJSON_CreateString(j->type ? j->type : "training")) &&
             add(o, "name", cJSON_CreateString(j->name ? j->name : "")) &&
             (!batch ||
              (add(o, "model", str_or_null(j->model)) && add(o, "model_uri", str_or_null(j->model_uri)))) &&
             add(o, "algorithm", str_or_null(j->algorithm)) && add(o, "dataset", str_or_null(j->dataset)) &&
             add(o, "output", str_or_null(j->output)) &&
             add(o, "hyperparameters", dup_or_null(j->hyperparameters)) &&
             add(o, "state", cJSON_CreateString(lt_job_state_name(j->state))) &&
             add(o, "attempt", cJSON_CreateNumber(j->attempt)) && add(o, "worker", str_or_null(j->worker));
    if (ok) {
        cJSON *p = j->has_progress ? cJSON_CreateObject() : cJSON_CreateNull();
        ok = add(o, "progress", p);
        if (ok && j->has_progress && batch)
            ok = add(p, "images_done", cJSON_CreateNumber((double)j->step)) &&
                 add(p, "images_total", cJSON_CreateNumber((double)j->total_steps));
        else if (ok && j->has_progress)
            ok = add(p, "step", cJSON_CreateNumber((double)j->step)) &&
                 add(p, "total_steps", cJSON_CreateNumber((double)j->total_steps)) &&
                 add(p, "epoch", cJSON_CreateNumber(j->epoch));
    }
    if (ok) {
        cJSON *c = j->has_checkpoint ? cJSON_CreateObject() : cJSON_CreateNull();
        ok = add(o, "checkpoint", c);
        if (ok && j->has_checkpoint)
            ok = add(c, "step", cJSON_CreateNumber((double)j->checkpoint_step)) &&
                 add(c, "uri", str_or_null(j->checkpoint_uri));
    }
    ok = ok &&
         add(o, "resumed_from_step",
             j->resumed_from_step >= 0 ? cJSON_CreateNumber((double)j->resumed_from_step)
                                       : cJSON_CreateNull()) &&
         add(o, "metrics", dup_or_null(j->metrics)) && add(o, "evaluations", dup_or_null(j->evaluations)) &&
         add(o, "error", str_or_null(j->error)) &&
         add(o, "cancel_requested", cJSON_CreateBool(j->cancel_requested)) &&
         add(o, "idempotency_key", str_or_null(j->idempotency_key)) &&
         add(o, "request_hash",
             j->request_hash[0] ? cJSON_CreateString(j->request_hash) : cJSON_CreateNull()) &&
         add(o, "created_at", time_or_null(j->created_at)) &&
         add(o, "started_at", time_or_null(j->started_at)) &&
         add(o, "finished_at", time_or_null(j->finished_at)) &&
         add(o, "updated_at", time_or_null(j->updated_at));
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* A string member, NULL when absent or null; *bad set when present with another type. */
static const char *get_str(const cJSON *o, const char *name, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return NULL;
    if (!cJSON_IsString(v)) {
        *bad = 1;
        return NULL;
    }
    return v->valuestring;
}

/* A number member; returns 1 when present, 0 when absent or null, -1 with another type or a non-finite
 * value. */
static int get_num(const cJSON *o, const char *name, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return -1;
    *out = v->valuedouble;
    return 1;
}

lt_status lt_job_from_json(const cJSON *o, lt_job **out, lt_err *err) {
    *out = NULL;
    if (!cJSON_IsObject(o)) return lt_errorf(err, LT_ERR_FORMAT, "job record: not a JSON object");
    int bad = 0;
    const char *id = get_str(o, "id", &bad);
    if (!id || !id[0] || strlen(id) >= LT_JOB_ID_MAX)
        return lt_errorf(err, LT_ERR_FORMAT, "job record: missing or bad \"id\"");
    const char *state = get_str(o, "state", &bad);
    lt_job_state st = state ? lt_job_state_parse(state) : LT_JOB_STATE_COUNT;
    if (st == LT_JOB_STATE_COUNT) return lt_errorf(err, LT_ERR_FORMAT, "job record %s: bad \"state\"", id);
    lt_job *j = lt_job_create(id);
    if (!j) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    j->state = st;
    const char *name = get_str(o, "name", &bad);
    const char *type = get_str(o, "type", &bad);
    int ok = lt_job_set_str(&j->type, type && strcmp(type, "training") ? type : NULL) &&
             lt_job_set_str(&j->model, get_str(o, "model", &bad)) &&
             lt_job_set_str(&j->model_uri, get_str(o, "model_uri", &bad)) &&
             lt_job_set_str(&j->name, name && name[0] ? name : NULL) &&
             lt_job_set_str(&j->algorithm, get_str(o, "algorithm", &bad)) &&
             lt_job_set_str(&j->dataset, get_str(o, "dataset", &bad)) &&
             lt_job_set_str(&j->output, get_str(o, "output", &bad)) &&
             lt_job_set_str(&j->worker, get_str(o, "worker", &bad)) &&
             lt_job_set_str(&j->error, get_str(o, "error", &bad)) &&
             lt_job_set_str(&j->idempotency_key, get_str(o, "idempotency_key", &bad));
    double d;
    if (get_num(o, "attempt", &d) > 0) j->attempt = (int)d;
    if (get_num(o, "resumed_from_step", &d) > 0) j->resumed_from_step = (int64_t)d;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "progress");
    if (cJSON_IsObject(p)) {
        j->has_progress = 1;
        if (get_num(p, LT_JOB_IS_BATCH(j) ? "images_done" : "step", &d) > 0) j->step = (int64_t)d;
        if (get_num(p, LT_JOB_IS_BATCH(j) ? "images_total" : "total_steps", &d) > 0)
            j->total_steps = (int64_t)d;
        if (get_num(p, "epoch", &d) > 0) j->epoch = d;
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "checkpoint");
    if (cJSON_IsObject(c)) {
        j->has_checkpoint = 1;
        if (get_num(c, "step", &d) > 0) j->checkpoint_step = (int64_t)d;
        ok = ok && lt_job_set_str(&j->checkpoint_uri, get_str(c, "uri", &bad));
    }
    const cJSON *hp = cJSON_GetObjectItemCaseSensitive(o, "hyperparameters");
    if (ok && cJSON_IsObject(hp)) ok = (j->hyperparameters = cJSON_Duplicate(hp, 1)) != NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "metrics");
    if (ok && m && !cJSON_IsNull(m)) ok = (j->metrics = cJSON_Duplicate(m, 1)) != NULL;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "evaluations");
    if (ok && cJSON_IsObject(ev)) ok = (j->evaluations = cJSON_Duplicate(ev, 1)) != NULL;
    j->cancel_requested = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "cancel_requested"));
    const char *h = get_str(o, "request_hash", &bad);
    copy_fixed(j->request_hash, sizeof j->request_hash, h);
    copy_fixed(j->created_at, sizeof j->created_at, get_str(o, "created_at", &bad));
    copy_fixed(j->started_at, sizeof j->started_at, get_str(o, "started_at", &bad));
    copy_fixed(j->finished_at, sizeof j->finished_at, get_str(o, "finished_at", &bad));
    copy_fixed(j->updated_at, sizeof j->updated_at, get_str(o, "updated_at", &bad));
    if (!ok) {
        lt_job_destroy(j);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    if (bad) {
        lt_job_destroy(j);
        return lt_errorf(err, LT_ERR_FORMAT, "job record %s: a field has the wrong type", id);
    }
    *out = j;
    return LT_OK;
}

/* ---- events ---- */

/* The event's own time when it carries one, else the scheduler's. */
static void event_time(char dst[LT_JOB_TIME_MAX], const lt_msg_event *ev, const char *now) {
    copy_fixed(dst, LT_JOB_TIME_MAX,
               ev->time && ev->time[0] && strlen(ev->time) < LT_JOB_TIME_MAX ? ev->time : now);
}

static void set_state(lt_job *j, lt_job_state s, const lt_msg_event *ev, const char *now) {
    if (s == LT_JOB_RUNNING && !j->started_at[0]) event_time(j->started_at, ev, now);
    if (lt_job_state_is_final(s)) event_time(j->finished_at, ev, now);
    j->state = s;
}

int lt_job_apply_event(lt_job *j, const lt_msg_event *ev, const char *now) {
    int is_success = (ev->type == LT_EV_STATE && ev->state == LT_JOB_SUCCEEDED) || ev->type == LT_EV_RESULT;
    if (lt_job_state_is_final(j->state)) return 0; /* sticky */
    if (ev->attempt < j->attempt && !is_success) return 0;

    int changed = 0;
    if (ev->attempt > j->attempt) {
        j->attempt = (int)ev->attempt;
        changed = 1;
    }
    if (ev->worker && ev->attempt >= j->attempt && (!j->worker || strcmp(j->worker, ev->worker))) {
        if (!lt_job_set_str(&j->worker, ev->worker)) return -1;
        changed = 1;
    }
    switch (ev->type) {
    case LT_EV_STATE:
        if (ev->state == LT_JOB_QUEUED || ev->state >= LT_JOB_STATE_COUNT) break; /* not a worker's state */
        if (ev->state == LT_JOB_RUNNING) {
            j->resumed_from_step = ev->resumed_from_step > 0 ? ev->resumed_from_step : -1;
        } else if (ev->state == LT_JOB_SUCCEEDED) {
            if (!lt_job_set_str(&j->error, NULL)) return -1;
        } else if (ev->error && !lt_job_set_str(&j->error, ev->error)) {
            return -1;
        }
        set_state(j, ev->state, ev, now);
        changed = 1;
        break;
    case LT_EV_PROGRESS:
        j->has_progress = 1;
        j->step = ev->step;
        j->total_steps = ev->total_steps;
        j->epoch = ev->epoch >= 0 ? ev->epoch : 0;
        /* RUNNING and progress share a partition (key = id), so this only happens when RUNNING was lost */
        if (j->state == LT_JOB_QUEUED) set_state(j, LT_JOB_RUNNING, ev, now);
        changed = 1;
        break;
    case LT_EV_CHECKPOINT:
        if (!lt_job_set_str(&j->checkpoint_uri, ev->uri)) return -1;
        j->has_checkpoint = 1;
        j->checkpoint_step = ev->step;
        changed = 1;
        break;
    case LT_EV_EVAL: {
        if (!ev->split || !ev->metrics) break;
        if (!j->evaluations && !(j->evaluations = cJSON_CreateObject())) return -1;
        cJSON *copy = cJSON_Duplicate(ev->metrics, 1);
        if (!copy) return -1;
        if (cJSON_GetObjectItemCaseSensitive(j->evaluations, ev->split))
            cJSON_ReplaceItemInObjectCaseSensitive(j->evaluations, ev->split, copy);
        else
            cJSON_AddItemToObject(j->evaluations, ev->split, copy);
        changed = 1;
        break;
    }
    case LT_EV_RESULT:
        if (ev->metrics) {
            cJSON *copy = cJSON_Duplicate(ev->metrics, 1);
            if (!copy) return -1;
            cJSON_Delete(j->metrics);
            j->metrics = copy;
        }
        if (ev->output && !lt_job_set_str(&j->output, ev->output)) return -1;
        changed = 1;
        break;
    case LT_EV_LOG:
        /* log entries stay in the events topic and the output's trainer_state.json; the record only learns
           that the job is alive */
        if (j->state == LT_JOB_QUEUED) {
            set_state(j, LT_JOB_RUNNING, ev, now);
            changed = 1;
        }
        break;
    default:
        break;
    }
    if (changed) copy_fixed(j->updated_at, sizeof j->updated_at, now);
    return changed;
}

int lt_job_request_cancel(lt_job *j, const char *now) {
    if (lt_job_state_is_final(j->state)) return 0;
    j->cancel_requested = 1;
    if (j->state == LT_JOB_QUEUED) {
        j->state = LT_JOB_CANCELLED;
        copy_fixed(j->finished_at, sizeof j->finished_at, now);
        (void)lt_job_set_str(&j->error, "cancelled by request"); /* on OOM the state change still stands */
    }
    copy_fixed(j->updated_at, sizeof j->updated_at, now);
    return 1;
}
