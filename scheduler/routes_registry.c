/* routes_registry.c - the HTTP routes of models, endpoints, stages and real-time inference (docs/api.md). */
#include "registry_internal.h"

#include "submit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URI_MAX_LEN 2048

/* ---- answers ---- */

/* ---- bodies ---- */

/* Parses a JSON object body and refuses members not in known (NULL-terminated). NULL after answering 400. */
static cJSON *parse_body(const lt_sched_request *rq, const char *const *known, lt_sched_response *rs) {
    cJSON *b = cJSON_ParseWithLength(rq->body, rq->body_len);
    if (!b) {
        lt_sched_respond_error(rs, 400, "body: not valid JSON");
        return NULL;
    }
    if (!cJSON_IsObject(b)) {
        cJSON_Delete(b);
        lt_sched_respond_error(rs, 400, "body: must be a JSON object");
        return NULL;
    }
    for (const cJSON *m = b->child; m; m = m->next) {
        int ok = 0;
        char list[256] = "";
        for (size_t i = 0; known[i]; i++) {
            ok |= !strcmp(m->string, known[i]);
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", known[i]);
        }
        if (!ok) {
            lt_sched_respond_error(rs, 400, "%.64s: unknown field (valid fields are %s)", m->string, list);
            cJSON_Delete(b);
            return NULL;
        }
    }
    return b;
}

/* A string member; *out NULL when absent (400 answered and 0 returned when required or not a string). */
static int body_str(const cJSON *b, const char *field, int required, size_t max_len, const char **out,
                    lt_sched_response *rs) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, field);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required) lt_sched_respond_error(rs, 400, "%s: required", field);
        return !required;
    }
    if (!cJSON_IsString(v)) {
        lt_sched_respond_error(rs, 400, "%s: must be a string", field);
        return 0;
    }
    if (required && !v->valuestring[0]) {
        lt_sched_respond_error(rs, 400, "%s: must not be empty", field);
        return 0;
    }
    if (strlen(v->valuestring) > max_len) {
        lt_sched_respond_error(rs, 400, "%s: longer than %zu characters", field, max_len);
        return 0;
    }
    for (const char *p = v->valuestring; *p; p++)
        if ((unsigned char)*p < 0x20) {
            lt_sched_respond_error(rs, 400, "%s: contains a control character", field);
            return 0;
        }
    *out = v->valuestring;
    return 1;
}

/* A name member checked against the name rule. */
static int body_name(const cJSON *b, const char *field, int required, const char **out,
                     lt_sched_response *rs) {
    if (!body_str(b, field, required, 1024, out, rs)) return 0;
    if (*out && !lt_reg_valid_name(*out)) {
        lt_sched_respond_error(
            rs, 400,
            "%s: '%.80s' is not a valid name (1 to 63 characters: lower-case letters, digits, '-', "
            "'_', '.', starting with a letter or digit)",
            field, *out);
        return 0;
    }
    return 1;
}

/* ---- models ---- */

/* Checks that uri is a model directory: config.json (a JSON object) and model.safetensors. */
static int check_model_dir(lt_registry *r, const char *field, const char *uri, lt_sched_response *rs) {
    lt_err err = {{0}};
    lt_storage *s = lt_storage_open(uri, r->o.storage_opts, &err);
    if (!s) {
        lt_sched_respond_error(rs, 400, "%s: %s", field, err.msg);
        return 0;
    }
    int ok = 0, exists = 0;
    static const char *const files[] = {"config.json", "model.safetensors"};
    for (size_t i = 0; i < 2; i++) {
        lt_status st = lt_storage_exists(s, files[i], &exists, &err);
        if (st != LT_OK) {
            lt_sched_respond_error(rs, lt_storage_is_transient(st) ? 503 : 400, "%s: cannot read %s: %s",
                                   field, uri, err.msg);
            goto out;
        }
        if (!exists) {
            lt_sched_respond_error(
                rs, 400, "%s: %s has no %s (a model directory holds config.json and model.safetensors)",
                field, uri, files[i]);
            goto out;
        }
    }
    void *data = NULL;
    size_t len = 0;
    lt_status st = lt_storage_get_mem(s, "config.json", &data, &len, &err);
    if (st != LT_OK) {
        lt_sched_respond_error(rs, lt_storage_is_transient(st) ? 503 : 400,
                               "%s: cannot read %s/config.json: %s", field, uri, err.msg);
        goto out;
    }
    cJSON *cfg = cJSON_ParseWithLength(data, len);
    free(data);
    if (!cJSON_IsObject(cfg))
        lt_sched_respond_error(rs, 400, "%s: %s/config.json is not a JSON object", field, uri);
    else
        ok = 1;
    cJSON_Delete(cfg);
out:
    lt_storage_close(s);
    return ok;
}

static void handle_model_create(lt_registry *r, lt_sched *s, const lt_sched_request *rq,
                                lt_sched_response *rs) {
    static const char *const known[] = {"name", "training_id", "uri", NULL};
    cJSON *b = parse_body(rq, known, rs);
    if (!b) return;
    const char *name, *training, *uri_in;
    char *uri = NULL;
    lt_reg_model *m = NULL;
    if (!body_name(b, "name", 1, &name, rs) ||
        !body_str(b, "training_id", 0, LT_JOB_ID_MAX - 1, &training, rs) ||
        !body_str(b, "uri", 0, URI_MAX_LEN, &uri_in, rs))
        goto done;
    if (!training == !uri_in) {
        lt_sched_respond_error(
            rs, 400, "%s: give either training_id (a SUCCEEDED training) or uri (a model directory)",
            training ? "uri" : "training_id");
        goto done;
    }
    pthread_mutex_lock(&r->mu);
    int taken = lt_reg_find_model(r, name) != NULL;
    pthread_mutex_unlock(&r->mu);
    if (taken) {
        lt_sched_respond_error(rs, 409, "name: a model named '%s' exists already", name);
        goto done;
    }
    const char *field = "uri";
    if (training) {
        field = "training_id";
        lt_table_lock(s->table);
        lt_job *j = lt_table_find(s->table, training);
        lt_job_state st = j ? j->state : LT_JOB_QUEUED;
        uri = j && j->output ? strdup(j->output) : NULL;
        lt_table_unlock(s->table);
        if (!j) {
            lt_sched_respond_error(rs, 404, "training_id: no training with id '%s'", training);
            goto done;
        }
        if (st != LT_JOB_SUCCEEDED) {
            lt_sched_respond_error(rs, 409,
                                   "training_id: training %s is %s; only a SUCCEEDED training has a model",
                                   training, lt_job_state_name(st));
            goto done;
        }
    } else {
        uri = lt_submit_resolve_uri(r->o.storage_root, uri_in);
    }
    if (!uri) {
        if (training)
            lt_sched_respond_error(rs, 409, "training_id: training %s has no output", training);
        else
            lt_sched_respond_error(rs, 500, "out of memory");
        goto done;
    }
    if (!check_model_dir(r, field, uri, rs)) goto done;
    if (!(m = calloc(1, sizeof *m)) || (training && !(m->training_id = strdup(training)))) {
        lt_sched_respond_error(rs, 500, "out of memory");
        goto done;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->uri = uri;
    uri = NULL;
    lt_job_now(m->created_at);

    void *ticket = NULL;
    lt_err err = {{0}};
    pthread_mutex_lock(&r->mu);
    if (lt_reg_find_model(r, name)) { /* a concurrent request won */
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 409, "name: a model named '%s' exists already", name);
        goto done;
    }
    cJSON *o = lt_reg_model_to_json(m);
    lt_status st = lt_reg_persist_model(r, name, m, &ticket, &err);
    if (st != LT_OK)
        lt_reg_model_free(m);
    else if ((st = lt_reg_add_model(r, m)) != LT_OK) /* which freed it */
        lt_errorf(&err, st, "out of memory");
    m = NULL;
    pthread_mutex_unlock(&r->mu);
    lt_err werr = {{0}};
    lt_status wst = lt_reg_wait(r, ticket, &werr);
    if (st == LT_OK && wst != LT_OK) {
        st = wst;
        err = werr;
    }
    if (st != LT_OK || !o) {
        pthread_mutex_lock(&r->mu);
        lt_reg_remove_model(r, name);
        lt_reg_persist_model(r, name, NULL, NULL, NULL); /* best effort */
        pthread_mutex_unlock(&r->mu);
        cJSON_Delete(o);
        lt_sched_respond_error(rs, 503, "could not record the model (Kafka unavailable): %s", err.msg);
        goto done;
    }
    lt_sched_respond_json(rs, 201, o);
done:
    lt_reg_model_free(m);
    free(uri);
    cJSON_Delete(b);
}

/* Answers {"<key>": [item_json(r, i) for i < count(r)], "total": count(r)}, read under r->mu. */
static void respond_list(lt_registry *r, lt_sched_response *rs, const char *key,
                         size_t (*count)(const lt_registry *), cJSON *(*item_json)(const lt_registry *, size_t)) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    int ok = o && arr;
    pthread_mutex_lock(&r->mu);
    size_t n = count(r);
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *item = item_json(r, i);
        ok = item != NULL;
        if (item) cJSON_AddItemToArray(arr, item);
    }
    pthread_mutex_unlock(&r->mu);
    if (!ok) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        lt_sched_respond_error(rs, 500, "out of memory");
        return;
    }
    cJSON_AddItemToObject(o, key, arr);
    cJSON_AddNumberToObject(o, "total", (double)n);
    lt_sched_respond_json(rs, 200, o);
}

static size_t model_count(const lt_registry *r) {
    return r->n_models;
}
static cJSON *model_json(const lt_registry *r, size_t i) {
    return lt_reg_model_to_json(r->models[i]);
}
static size_t endpoint_count(const lt_registry *r) {
    return r->n_endpoints;
}
static cJSON *endpoint_json(const lt_registry *r, size_t i) {
    return lt_reg_endpoint_to_json(r->endpoints[i]);
}

static void handle_model_list(lt_registry *r, lt_sched_response *rs) {
    respond_list(r, rs, "models", model_count, model_json);
}

static void handle_model_get(lt_registry *r, const char *name, lt_sched_response *rs) {
    pthread_mutex_lock(&r->mu);
    lt_reg_model *m = lt_reg_find_model(r, name);
    cJSON *o = m ? lt_reg_model_to_json(m) : NULL;
    pthread_mutex_unlock(&r->mu);
    if (!m)
        lt_sched_respond_error(rs, 404, "no model named '%s'", name);
    else
        lt_sched_respond_json(rs, 200, o);
}

static void handle_model_delete(lt_registry *r, const char *name, lt_sched_response *rs) {
    void *ticket = NULL;
    lt_err err = {{0}};
    pthread_mutex_lock(&r->mu);
    const char *stage = NULL;
    const lt_reg_endpoint *user = lt_reg_model_user(r, name, &stage);
    if (!lt_reg_find_model(r, name)) {
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 404, "no model named '%s'", name);
        return;
    }
    if (user) {
        lt_sched_respond_error(
            rs, 409, "model %s is used by endpoint %s (stage %s); delete that stage or endpoint first", name,
            user->name, stage);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    lt_status st = lt_reg_persist_model(r, name, NULL, &ticket, &err);
    if (st == LT_OK) lt_reg_remove_model(r, name);
    pthread_mutex_unlock(&r->mu);
    if (st == LT_OK) st = lt_reg_wait(r, ticket, &err);
    if (st != LT_OK) {
        lt_sched_respond_error(rs, 503, "could not delete the model's record (Kafka unavailable): %s",
                               err.msg);
        return;
    }
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddBoolToObject(o, "deleted", 1);
    }
    lt_sched_respond_json(rs, 200, o);
}

/* ---- endpoints ---- */

/* Persists e (under r->mu, which the caller holds and this releases), waits, and answers status with e's
 * record as it was written. A failed write answers 503. */
static void save_and_answer(lt_registry *r, lt_reg_endpoint *e, int status, lt_sched_response *rs) {
    void *ticket = NULL;
    lt_err err = {{0}};
    lt_job_now(e->updated_at);
    cJSON *o = lt_reg_endpoint_to_json(e);
    lt_status st = lt_reg_persist_endpoint(r, e->name, e, &ticket, &err);
    pthread_mutex_unlock(&r->mu);
    if (st == LT_OK) st = lt_reg_wait(r, ticket, &err);
    if (st != LT_OK) {
        cJSON_Delete(o);
        lt_sched_respond_error(rs, 503, "could not record the change (Kafka unavailable): %s", err.msg);
        return;
    }
    lt_sched_respond_json(rs, status, o);
}

static void handle_endpoint_create(lt_registry *r, const lt_sched_request *rq, lt_sched_response *rs) {
    static const char *const known[] = {"name", "model", "stage", "replicas", NULL};
    cJSON *b = parse_body(rq, known, rs);
    if (!b) return;
    const char *name, *model, *stage;
    lt_reg_endpoint *e = NULL;
    if (!body_name(b, "name", 1, &name, rs) || !body_name(b, "model", 1, &model, rs) ||
        !body_name(b, "stage", 0, &stage, rs))
        goto done;
    const cJSON *reps = cJSON_GetObjectItemCaseSensitive(b, "replicas");
    int replicas = 1;
    if (reps && !cJSON_IsNull(reps)) {
        if (!cJSON_IsNumber(reps) || reps->valuedouble != (double)reps->valueint || reps->valueint < 1 ||
            reps->valueint > r->o.max_replicas) {
            lt_sched_respond_error(rs, 400, "replicas: must be an integer in [1, %d]", r->o.max_replicas);
            goto done;
        }
        replicas = reps->valueint;
    }
    if (!stage) stage = "default";
    if (!(e = calloc(1, sizeof *e))) {
        lt_sched_respond_error(rs, 500, "out of memory");
        goto done;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->default_stage, sizeof e->default_stage, "%s", stage);
    e->state = LT_EP_CREATING;
    e->replicas = replicas;
    lt_job_now(e->created_at);
    pthread_mutex_lock(&r->mu);
    lt_reg_model *m = lt_reg_find_model(r, model);
    if (lt_reg_find_endpoint(r, name)) {
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 409, "name: an endpoint named '%s' exists already", name);
        goto done;
    }
    if (!m) {
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 404, "model: no model named '%s'", model);
        goto done;
    }
    if (!lt_reg_add_stage(r, e, stage, m)) {
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 500, "out of memory");
        goto done;
    }
    lt_reg_endpoint *added = e;
    e = NULL;
    if (lt_reg_add_endpoint(r, added) != LT_OK) { /* which freed it */
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 500, "out of memory");
        goto done;
    }
    lt_err err = {{0}};
    /* the thread can't record anything before the lock is released, so CREATING is written first */
    if (lt_reg_start_task(r, LT_REG_TASK_CREATE, added, NULL, &err) != LT_OK) {
        added->state = LT_EP_FAILED;
        added->stages[0].state = LT_STAGE_FAILED;
        added->error = strdup(err.msg);
    }
    save_and_answer(r, added, 202, rs);
    if (rs->status == 503) { /* not recorded: forget it (the thread finds it gone) */
        pthread_mutex_lock(&r->mu);
        lt_reg_remove_endpoint(r, name);
        lt_reg_persist_endpoint(r, name, NULL, NULL, NULL);
        pthread_mutex_unlock(&r->mu);
    }
done:
    lt_reg_endpoint_free(e);
    cJSON_Delete(b);
}

static void handle_endpoint_list(lt_registry *r, lt_sched_response *rs) {
    respond_list(r, rs, "endpoints", endpoint_count, endpoint_json);
}

/* Finds the endpoint under r->mu (taken here); answers 404 and unlocks when it is missing. */
static lt_reg_endpoint *lock_endpoint(lt_registry *r, const char *name, lt_sched_response *rs) {
    pthread_mutex_lock(&r->mu);
    lt_reg_endpoint *e = lt_reg_find_endpoint(r, name);
    if (!e) {
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 404, "no endpoint named '%s'", name);
    }
    return e;
}

static void handle_endpoint_get(lt_registry *r, const char *name, lt_sched_response *rs) {
    lt_reg_endpoint *e = lock_endpoint(r, name, rs);
    if (!e) return;
    cJSON *o = lt_reg_endpoint_to_json(e);
    pthread_mutex_unlock(&r->mu);
    lt_sched_respond_json(rs, 200, o);
}

static void handle_endpoint_delete(lt_registry *r, const char *name, lt_sched_response *rs) {
    lt_reg_endpoint *e = lock_endpoint(r, name, rs);
    if (!e) return;
    if (e->state == LT_EP_DELETING) { /* already on its way: same answer */
        cJSON *o = lt_reg_endpoint_to_json(e);
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_json(rs, 202, o);
        return;
    }
    lt_ep_state was = e->state;
    e->state = LT_EP_DELETING;
    lt_err err = {{0}};
    if (lt_reg_start_task(r, LT_REG_TASK_DELETE, e, NULL, &err) != LT_OK) {
        e->state = was;
        pthread_mutex_unlock(&r->mu);
        lt_sched_respond_error(rs, 500, "%s", err.msg);
        return;
    }
    save_and_answer(r, e, 202, rs);
}

static void handle_stage_add(lt_registry *r, const char *name, const lt_sched_request *rq,
                             lt_sched_response *rs) {
    static const char *const known[] = {"stage", "model", "default", NULL};
    cJSON *b = parse_body(rq, known, rs);
    if (!b) return;
    const char *stage, *model;
    const cJSON *def = cJSON_GetObjectItemCaseSensitive(b, "default");
    if (!body_name(b, "stage", 1, &stage, rs) || !body_name(b, "model", 1, &model, rs)) goto done;
    if (def && !cJSON_IsBool(def) && !cJSON_IsNull(def)) {
        lt_sched_respond_error(rs, 400, "default: must be true or false");
        goto done;
    }
    lt_reg_endpoint *e = lock_endpoint(r, name, rs);
    if (!e) goto done;
    lt_reg_model *m = lt_reg_find_model(r, model);
    lt_reg_stage *st;
    lt_err err = {{0}};
    if (e->state != LT_EP_ACTIVE) {
        lt_sched_respond_error(rs, 409, "endpoint %s is %s; stages can be added to an ACTIVE endpoint", name,
                               lt_reg_ep_state_name(e->state));
    } else if (lt_reg_find_stage(e, stage)) {
        lt_sched_respond_error(rs, 409, "stage: endpoint %s has a stage '%s' already", name, stage);
    } else if (!m) {
        lt_sched_respond_error(rs, 404, "model: no model named '%s'", model);
    } else if (!(st = lt_reg_add_stage(r, e, stage, m))) {
        lt_sched_respond_error(rs, 500, "out of memory");
    } else if (lt_reg_start_task(r, LT_REG_TASK_LOAD, e, st, &err) != LT_OK) {
        lt_reg_remove_stage(e, stage);
        lt_sched_respond_error(rs, 500, "%s", err.msg);
    } else {
        if (cJSON_IsTrue(def)) snprintf(e->pending_default, sizeof e->pending_default, "%s", stage);
        save_and_answer(r, e, 202, rs);
        goto done;
    }
    pthread_mutex_unlock(&r->mu);
done:
    cJSON_Delete(b);
}

static void handle_stage_delete(lt_registry *r, const char *name, const char *stage, lt_sched_response *rs) {
    lt_reg_endpoint *e = lock_endpoint(r, name, rs);
    if (!e) return;
    if (!lt_reg_find_stage(e, stage)) {
        lt_sched_respond_error(rs, 404, "endpoint %s has no stage '%s'", name, stage);
    } else if (!strcmp(e->default_stage, stage)) {
        lt_sched_respond_error(rs, 409,
                               "stage %s is the default of endpoint %s; make another stage the default first "
                               "(POST /v1/endpoints/%s/default), or delete the endpoint",
                               stage, name, name);
    } else if (e->state == LT_EP_DELETING) {
        lt_sched_respond_error(rs, 409, "endpoint %s is DELETING", name);
    } else {
        if (!strcmp(e->pending_default, stage)) e->pending_default[0] = 0;
        lt_reg_remove_stage(e, stage);
        save_and_answer(r, e, 200, rs);
        return;
    }
    pthread_mutex_unlock(&r->mu);
}

static void handle_set_default(lt_registry *r, const char *name, const lt_sched_request *rq,
                               lt_sched_response *rs) {
    static const char *const known[] = {"stage", NULL};
    cJSON *b = parse_body(rq, known, rs);
    if (!b) return;
    const char *stage;
    if (!body_name(b, "stage", 1, &stage, rs)) goto done;
    lt_reg_endpoint *e = lock_endpoint(r, name, rs);
    if (!e) goto done;
    lt_reg_stage *st = lt_reg_find_stage(e, stage);
    if (!st) {
        lt_sched_respond_error(rs, 404, "stage: endpoint %s has no stage '%s'", name, stage);
    } else if (e->state != LT_EP_ACTIVE) {
        lt_sched_respond_error(rs, 409, "endpoint %s is %s", name, lt_reg_ep_state_name(e->state));
    } else if (st->state != LT_STAGE_ACTIVE) {
        lt_sched_respond_error(
            rs, 409, "stage: stage %s of endpoint %s is %s; only an ACTIVE stage can be the default", stage,
            name, lt_reg_stage_state_name(st->state));
    } else {
        /* the switch itself: requests that resolved the old default keep its URI */
        snprintf(e->default_stage, sizeof e->default_stage, "%s", stage);
        e->pending_default[0] = 0;
        save_and_answer(r, e, 200, rs);
        goto done;
    }
    pthread_mutex_unlock(&r->mu);
done:
    cJSON_Delete(b);
}

/* ---- inference ---- */

static void handle_inference(lt_registry *r, const char *name, const char *stage_in,
                             const lt_sched_request *rq, lt_sched_response *rs) {
    char stage[LT_REG_NAME_MAX];
    char *uri = NULL;
    lt_reg_endpoint *e = lock_endpoint(r, name, rs);
    if (!e) return;
    snprintf(stage, sizeof stage, "%s", stage_in ? stage_in : e->default_stage);
    lt_reg_stage *st = lt_reg_find_stage(e, stage);
    if (e->state != LT_EP_ACTIVE) {
        lt_sched_respond_error(rs, 503, "endpoint %s is %s%s%s", name, lt_reg_ep_state_name(e->state),
                               e->error ? ": " : "", e->error ? e->error : "");
    } else if (!st) {
        lt_sched_respond_error(rs, 404, "endpoint %s has no stage '%s'", name, stage);
    } else if (st->state != LT_STAGE_ACTIVE) {
        lt_sched_respond_error(rs, 503, "stage %s of endpoint %s is %s%s%s", stage, name,
                               lt_reg_stage_state_name(st->state), st->error ? ": " : "",
                               st->error ? st->error : "");
    } else if (!(uri = strdup(st->model_uri))) {
        lt_sched_respond_error(rs, 500, "out of memory");
    }
    pthread_mutex_unlock(&r->mu);
    if (!uri) {
        if (rs->status == 503) atomic_fetch_add(&r->infer_unavailable, 1);
        return;
    }
    int status = 0;
    char *body = NULL;
    size_t len = 0;
    lt_err err = {{0}};
    lt_status gst = lt_gateway_infer(r->o.gateway, name, stage, uri, rq->body, rq->body_len,
                                     r->o.inference_timeout_ms, &status, &body, &len, &err);
    free(uri);
    if (gst == LT_OK && body && status >= 200 && status <= 599) {
        atomic_fetch_add(&r->infer_ok, 1);
        rs->status = status;
        rs->body = body;
        rs->body_len = len;
        rs->content_type = "application/json";
        return;
    }
    free(body);
    if (gst == LT_ERR_TIMEOUT) {
        atomic_fetch_add(&r->infer_timeout, 1);
        /* the gateway's message says the same again: leave it out */
        lt_sched_respond_error(rs, 504, "endpoint %s stage %s: no worker answered within %d ms", name, stage,
                               r->o.inference_timeout_ms);
    } else {
        atomic_fetch_add(&r->infer_unavailable, 1);
        lt_sched_respond_error(rs, 503, "endpoint %s stage %s: %s", name, stage,
                               gst == LT_OK ? "the gateway gave no answer" : err.msg);
    }
}

/* ---- dispatch ---- */

static const char models_prefix[] = "/v1/models", endpoints_prefix[] = "/v1/endpoints";

/* Splits the path after prefix into up to 4 segments; returns how many (-1: empty segment or too many). */
static int split(const char *rest, char seg[4][LT_REG_NAME_MAX + 1]) {
    if (!*rest) return 0;
    if (*rest != '/') return -1;
    int n = 0;
    while (*rest == '/') {
        rest++;
        const char *end = strchr(rest, '/');
        size_t len = end ? (size_t)(end - rest) : strlen(rest);
        if (n == 4 || len == 0 || len > LT_REG_NAME_MAX) return -1;
        memcpy(seg[n], rest, len);
        seg[n++][len] = 0;
        rest += len;
    }
    return n;
}

static int is_inference_path(const char *path) {
    size_t n = strlen(path);
    return !strncmp(path, endpoints_prefix, sizeof endpoints_prefix - 1) && n > 10 &&
           !strcmp(path + n - 10, "/inference");
}

int lt_registry_owns(const char *path, lt_sched_route *route) {
    size_t ml = sizeof models_prefix - 1, el = sizeof endpoints_prefix - 1;
    if (!strncmp(path, models_prefix, ml) && (path[ml] == 0 || path[ml] == '/')) {
        *route = LT_ROUTE_MODELS;
        return 1;
    }
    if (!strncmp(path, endpoints_prefix, el) && (path[el] == 0 || path[el] == '/')) {
        *route = is_inference_path(path) ? LT_ROUTE_INFERENCE : LT_ROUTE_ENDPOINTS;
        return 1;
    }
    return 0;
}

size_t lt_registry_max_body(const lt_registry *r, const char *path, size_t fallback) {
    return r && path && is_inference_path(path) ? r->o.max_inference_body : fallback;
}

void lt_registry_handle(lt_registry *r, lt_sched *s, const lt_sched_request *rq, lt_sched_response *rs) {
    const char *path = rq->path ? rq->path : "";
    int get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
    int post = !strcmp(rq->method, "POST"), del = !strcmp(rq->method, "DELETE");
    char seg[4][LT_REG_NAME_MAX + 1];
    int models = !strncmp(path, models_prefix, sizeof models_prefix - 1);
    int n = split(path + (models ? sizeof models_prefix : sizeof endpoints_prefix) - 1, seg);
    /* every name segment must be a valid name, so a 404 can quote it safely */
    for (int i = 0; i < n; i++)
        if (!lt_reg_valid_name(seg[i])) n = -1;
    if (n < 0) {
        lt_sched_respond_error(rs, 404, "no such resource: %.200s", path);
        return;
    }
    if (models) {
        if (n == 0) {
            if (post)
                handle_model_create(r, s, rq, rs);
            else if (get)
                handle_model_list(r, rs);
            else
                rs->allow = "GET, HEAD, POST";
        } else if (n == 1) {
            if (get)
                handle_model_get(r, seg[0], rs);
            else if (del)
                handle_model_delete(r, seg[0], rs);
            else
                rs->allow = "GET, HEAD, DELETE";
        } else {
            lt_sched_respond_error(rs, 404, "no such resource: %.200s", path);
        }
        return;
    }
    const char *a = seg[1], *c = seg[3];
    if (n == 0) {
        if (post)
            handle_endpoint_create(r, rq, rs);
        else if (get)
            handle_endpoint_list(r, rs);
        else
            rs->allow = "GET, HEAD, POST";
    } else if (n == 1) {
        if (get)
            handle_endpoint_get(r, seg[0], rs);
        else if (del)
            handle_endpoint_delete(r, seg[0], rs);
        else
            rs->allow = "GET, HEAD, DELETE";
    } else if (n == 2 && !strcmp(a, "inference")) {
        if (post)
            handle_inference(r, seg[0], NULL, rq, rs);
        else
            rs->allow = "POST";
    } else if (n == 2 && !strcmp(a, "stages")) {
        if (post)
            handle_stage_add(r, seg[0], rq, rs);
        else
            rs->allow = "POST";
    } else if (n == 2 && !strcmp(a, "default")) {
        if (post)
            handle_set_default(r, seg[0], rq, rs);
        else
            rs->allow = "POST";
    } else if (n == 3 && !strcmp(a, "stages")) {
        if (del)
            handle_stage_delete(r, seg[0], seg[2], rs);
        else
            rs->allow = "DELETE";
    } else if (n == 4 && !strcmp(a, "stages") && !strcmp(c, "inference")) {
        if (post)
            handle_inference(r, seg[0], seg[2], rq, rs);
        else
            rs->allow = "POST";
    } else {
        lt_sched_respond_error(rs, 404, "no such resource: %.200s", path);
    }
}
