/* registry.c - the registry's records, their JSON, persistence and the background gateway work (see
 * registry.h; the HTTP routes are in routes_registry.c). */
#include "registry_internal.h"
#include "mirror.h"

#include "io/fsutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const ep_state_names[LT_EP_STATE_COUNT] = {"CREATING", "ACTIVE", "FAILED", "DELETING"};
static const char *const stage_state_names[LT_STAGE_STATE_COUNT] = {"LOADING", "ACTIVE", "FAILED"};

const char *lt_reg_ep_state_name(lt_ep_state s) {
    return (unsigned)s < LT_EP_STATE_COUNT ? ep_state_names[s] : "UNKNOWN";
}

const char *lt_reg_stage_state_name(lt_stage_state s) {
    return (unsigned)s < LT_STAGE_STATE_COUNT ? stage_state_names[s] : "UNKNOWN";
}

static void logf_(const lt_registry *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const lt_registry *r, const char *fmt, ...) {
    if (r->o.quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "scheduler: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int lt_reg_valid_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= LT_REG_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '-' && c != '_' && c != '.'))) return 0;
    }
    return 1;
}

/* ---- records ---- */

void lt_reg_model_free(lt_reg_model *m) {
    if (!m) return;
    free(m->uri);
    free(m->training_id);
    free(m);
}

void lt_reg_endpoint_free(lt_reg_endpoint *e) {
    if (!e) return;
    for (size_t i = 0; i < e->n_stages; i++) {
        free(e->stages[i].model_uri);
        free(e->stages[i].error);
    }
    free(e->stages);
    free(e->error);
    free(e);
}

lt_reg_model *lt_reg_find_model(lt_registry *r, const char *name) {
    for (size_t i = 0; i < r->n_models; i++)
        if (!strcmp(r->models[i]->name, name)) return r->models[i];
    return NULL;
}

lt_reg_endpoint *lt_reg_find_endpoint(lt_registry *r, const char *name) {
    for (size_t i = 0; i < r->n_endpoints; i++)
        if (!strcmp(r->endpoints[i]->name, name)) return r->endpoints[i];
    return NULL;
}

lt_reg_stage *lt_reg_find_stage(lt_reg_endpoint *e, const char *name) {
    for (size_t i = 0; i < e->n_stages; i++)
        if (!strcmp(e->stages[i].name, name)) return &e->stages[i];
    return NULL;
}

const lt_reg_endpoint *lt_reg_model_user(lt_registry *r, const char *model, const char **stage) {
    for (size_t i = 0; i < r->n_endpoints; i++)
        for (size_t k = 0; k < r->endpoints[i]->n_stages; k++)
            if (!strcmp(r->endpoints[i]->stages[k].model, model)) {
                if (stage) *stage = r->endpoints[i]->stages[k].name;
                return r->endpoints[i];
            }
    return NULL;
}

/* Appends p to a growing array of pointers. */
static int push(void ***arr, size_t *n, size_t *cap, void *p) {
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        void **a = realloc(*arr, c * sizeof *a);
        if (!a) return 0;
        *arr = a;
        *cap = c;
    }
    (*arr)[(*n)++] = p;
    return 1;
}

lt_status lt_reg_add_model(lt_registry *r, lt_reg_model *m) {
    lt_reg_remove_model(r, m->name); /* a reloaded record replaces the older one */
    if (!push((void ***)&r->models, &r->n_models, &r->cap_models, m)) {
        lt_reg_model_free(m);
        return LT_ERR_NOMEM;
    }
    return LT_OK;
}

lt_status lt_reg_add_endpoint(lt_registry *r, lt_reg_endpoint *e) {
    lt_reg_remove_endpoint(r, e->name);
    e->seq = ++r->next_seq;
    for (size_t i = 0; i < e->n_stages; i++)
        e->stages[i].seq = ++r->next_seq;
    if (!push((void ***)&r->endpoints, &r->n_endpoints, &r->cap_endpoints, e)) {
        lt_reg_endpoint_free(e);
        return LT_ERR_NOMEM;
    }
    return LT_OK;
}

void lt_reg_remove_model(lt_registry *r, const char *name) {
    for (size_t i = 0; i < r->n_models; i++)
        if (!strcmp(r->models[i]->name, name)) {
            lt_reg_model_free(r->models[i]);
            memmove(&r->models[i], &r->models[i + 1], (r->n_models - i - 1) * sizeof *r->models);
            r->n_models--;
            return;
        }
}

void lt_reg_remove_endpoint(lt_registry *r, const char *name) {
    for (size_t i = 0; i < r->n_endpoints; i++)
        if (!strcmp(r->endpoints[i]->name, name)) {
            lt_reg_endpoint_free(r->endpoints[i]);
            memmove(&r->endpoints[i], &r->endpoints[i + 1], (r->n_endpoints - i - 1) * sizeof *r->endpoints);
            r->n_endpoints--;
            return;
        }
}

lt_reg_stage *lt_reg_add_stage(lt_registry *r, lt_reg_endpoint *e, const char *name, const lt_reg_model *m) {
    char *uri = strdup(m->uri);
    lt_reg_stage *s = uri ? realloc(e->stages, (e->n_stages + 1) * sizeof *s) : NULL;
    if (!s) {
        free(uri);
        return NULL;
    }
    e->stages = s;
    s = &e->stages[e->n_stages++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->model, sizeof s->model, "%s", m->name);
    s->model_uri = uri;
    s->state = LT_STAGE_LOADING;
    s->seq = ++r->next_seq;
    return s;
}

void lt_reg_remove_stage(lt_reg_endpoint *e, const char *name) {
    for (size_t i = 0; i < e->n_stages; i++)
        if (!strcmp(e->stages[i].name, name)) {
            free(e->stages[i].model_uri);
            free(e->stages[i].error);
            memmove(&e->stages[i], &e->stages[i + 1], (e->n_stages - i - 1) * sizeof *e->stages);
            e->n_stages--;
            return;
        }
}

/* ---- JSON ---- */

static cJSON *add_str_or_null(cJSON *o, const char *name, const char *v) {
    return v ? cJSON_AddStringToObject(o, name, v) : cJSON_AddNullToObject(o, name);
}

cJSON *lt_reg_model_to_json(const lt_reg_model *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "name", m->name) || !cJSON_AddStringToObject(o, "uri", m->uri) ||
        !add_str_or_null(o, "training_id", m->training_id) ||
        !cJSON_AddStringToObject(o, "created_at", m->created_at)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *lt_reg_endpoint_to_json(const lt_reg_endpoint *e) {
    cJSON *o = cJSON_CreateObject(), *stages = cJSON_CreateArray();
    char url[LT_REG_NAME_MAX + 32];
    snprintf(url, sizeof url, "/v1/endpoints/%s/inference", e->name);
    if (!o || !stages || !cJSON_AddStringToObject(o, "name", e->name) ||
        !cJSON_AddStringToObject(o, "state", lt_reg_ep_state_name(e->state)) ||
        !cJSON_AddStringToObject(o, "default_stage", e->default_stage) ||
        !add_str_or_null(o, "pending_default", e->pending_default[0] ? e->pending_default : NULL) ||
        !cJSON_AddNumberToObject(o, "replicas", e->replicas) || !add_str_or_null(o, "error", e->error) ||
        !cJSON_AddStringToObject(o, "url", url) || !cJSON_AddStringToObject(o, "created_at", e->created_at) ||
        !cJSON_AddStringToObject(o, "updated_at", e->updated_at))
        goto oom;
    for (size_t i = 0; i < e->n_stages; i++) {
        const lt_reg_stage *s = &e->stages[i];
        cJSON *so = cJSON_CreateObject();
        if (!so) goto oom;
        cJSON_AddItemToArray(stages, so);
        if (!cJSON_AddStringToObject(so, "name", s->name) ||
            !cJSON_AddStringToObject(so, "model", s->model) ||
            !cJSON_AddStringToObject(so, "model_uri", s->model_uri) ||
            !cJSON_AddStringToObject(so, "state", lt_reg_stage_state_name(s->state)) ||
            !add_str_or_null(so, "error", s->error) ||
            !cJSON_AddBoolToObject(so, "default", !strcmp(s->name, e->default_stage)))
            goto oom;
    }
    cJSON_AddItemToObject(o, "stages", stages);
    return o;
oom:
    cJSON_Delete(o);
    cJSON_Delete(stages);
    return NULL;
}

/* A string member into buf (NAME_MAX) or a malloc'd copy; absent/null allowed when optional. */
static lt_status json_str(const cJSON *o, const char *field, int required, const char **out, lt_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, field);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) return required ? lt_errorf(err, LT_ERR_FORMAT, "%s: missing", field) : LT_OK;
    if (!cJSON_IsString(v)) return lt_errorf(err, LT_ERR_FORMAT, "%s: not a string", field);
    *out = v->valuestring;
    return LT_OK;
}

static lt_status json_name(const cJSON *o, const char *field, int required, char buf[LT_REG_NAME_MAX],
                           lt_err *err) {
    const char *s;
    lt_status st = json_str(o, field, required, &s, err);
    buf[0] = 0;
    if (st != LT_OK || !s) return st;
    if (!lt_reg_valid_name(s)) return lt_errorf(err, LT_ERR_FORMAT, "%s: not a valid name", field);
    snprintf(buf, LT_REG_NAME_MAX, "%s", s);
    return LT_OK;
}

static lt_status json_dup(const cJSON *o, const char *field, int required, char **out, lt_err *err) {
    const char *s;
    lt_status st = json_str(o, field, required, &s, err);
    *out = NULL;
    if (st != LT_OK || !s) return st;
    return (*out = strdup(s)) ? LT_OK : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
}

static void json_time(const cJSON *o, const char *field, char buf[LT_JOB_TIME_MAX]) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, field));
    snprintf(buf, LT_JOB_TIME_MAX, "%s", s ? s : "");
}

static lt_status model_from_json(const cJSON *o, lt_reg_model **out, lt_err *err) {
    lt_reg_model *m = calloc(1, sizeof *m);
    if (!m) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_status st;
    if ((st = json_name(o, "name", 1, m->name, err)) || (st = json_dup(o, "uri", 1, &m->uri, err)) ||
        (st = json_dup(o, "training_id", 0, &m->training_id, err))) {
        lt_reg_model_free(m);
        return st;
    }
    json_time(o, "created_at", m->created_at);
    *out = m;
    return LT_OK;
}

static int parse_state(const char *s, const char *const *names, int n) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) return i;
    return -1;
}

static lt_status endpoint_from_json(const cJSON *o, lt_reg_endpoint **out, lt_err *err) {
    lt_reg_endpoint *e = calloc(1, sizeof *e);
    if (!e) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_status st;
    const char *state;
    const cJSON *reps = cJSON_GetObjectItemCaseSensitive(o, "replicas");
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(o, "stages"), *so;
    if ((st = json_name(o, "name", 1, e->name, err)) || (st = json_str(o, "state", 1, &state, err)) ||
        (st = json_name(o, "default_stage", 1, e->default_stage, err)) ||
        (st = json_name(o, "pending_default", 0, e->pending_default, err)) ||
        (st = json_dup(o, "error", 0, &e->error, err)))
        goto fail;
    int k = parse_state(state, ep_state_names, LT_EP_STATE_COUNT);
    if (k < 0) {
        st = lt_errorf(err, LT_ERR_FORMAT, "state: unknown '%.32s'", state);
        goto fail;
    }
    e->state = (lt_ep_state)k;
    e->replicas = cJSON_IsNumber(reps) && reps->valueint > 0 ? reps->valueint : 1;
    if (!cJSON_IsArray(stages)) {
        st = lt_errorf(err, LT_ERR_FORMAT, "stages: not an array");
        goto fail;
    }
    int n = cJSON_GetArraySize(stages);
    if (n > 0 && !(e->stages = calloc((size_t)n, sizeof *e->stages))) {
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    cJSON_ArrayForEach(so, stages) {
        lt_reg_stage *s = &e->stages[e->n_stages++];
        if ((st = json_name(so, "name", 1, s->name, err)) ||
            (st = json_name(so, "model", 1, s->model, err)) ||
            (st = json_dup(so, "model_uri", 1, &s->model_uri, err)) ||
            (st = json_str(so, "state", 1, &state, err)) || (st = json_dup(so, "error", 0, &s->error, err)))
            goto fail;
        if ((k = parse_state(state, stage_state_names, LT_STAGE_STATE_COUNT)) < 0) {
            st = lt_errorf(err, LT_ERR_FORMAT, "stages: unknown state '%.32s'", state);
            goto fail;
        }
        s->state = (lt_stage_state)k;
    }
    json_time(o, "created_at", e->created_at);
    json_time(o, "updated_at", e->updated_at);
    *out = e;
    return LT_OK;
fail:
    lt_reg_endpoint_free(e);
    return st;
}

/* ---- persistence ---- */

static lt_status persist(lt_registry *r, const char *kind, const char *name, cJSON *rec, int tombstone,
                         void **ticket, lt_err *err) {
    char key[LT_REG_NAME_MAX + 16];
    snprintf(key, sizeof key, "%s/%s", kind, name);
    char *text = rec ? cJSON_PrintUnformatted(rec) : NULL;
    cJSON_Delete(rec);
    if (!tombstone && !text) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_status st = r->o.store.put ? r->o.store.put(r->o.store.ctx, key, text, ticket, err) : LT_OK;
    free(text);
    if (st != LT_OK) atomic_fetch_add(&r->persist_failures, 1);
    return st;
}

lt_status lt_reg_persist_model(lt_registry *r, const char *name, const lt_reg_model *m, void **ticket,
                               lt_err *err) {
    return persist(r, "model", name, m ? lt_reg_model_to_json(m) : NULL, !m, ticket, err);
}

lt_status lt_reg_persist_endpoint(lt_registry *r, const char *name, const lt_reg_endpoint *e, void **ticket,
                                  lt_err *err) {
    return persist(r, "endpoint", name, e ? lt_reg_endpoint_to_json(e) : NULL, !e, ticket, err);
}

lt_status lt_reg_wait(lt_registry *r, void *ticket, lt_err *err) {
    if (!ticket) return LT_OK;
    lt_status st = r->o.store.wait(r->o.store.ctx, ticket, err);
    if (st != LT_OK) atomic_fetch_add(&r->persist_failures, 1);
    return st;
}

lt_status lt_registry_load_record(lt_registry *r, const char *key, const void *data, size_t len,
                                  lt_err *err) {
    if (!key) return lt_errorf(err, LT_ERR_FORMAT, "registry record without a key");
    int is_model = !strncmp(key, "model/", 6), is_ep = !strncmp(key, "endpoint/", 9);
    if (!is_model && !is_ep) return lt_errorf(err, LT_ERR_FORMAT, "registry record %.80s: unknown key", key);
    const char *name = key + (is_model ? 6 : 9);
    if (!data || len == 0) {
        pthread_mutex_lock(&r->mu);
        if (is_model)
            lt_reg_remove_model(r, name);
        else
            lt_reg_remove_endpoint(r, name);
        pthread_mutex_unlock(&r->mu);
        return LT_OK;
    }
    cJSON *o = cJSON_ParseWithLength(data, len);
    if (!o) return lt_errorf(err, LT_ERR_FORMAT, "registry record %.80s: not valid JSON", key);
    lt_reg_model *m = NULL;
    lt_reg_endpoint *e = NULL;
    lt_err ferr = {{0}};
    lt_status st = is_model ? model_from_json(o, &m, &ferr) : endpoint_from_json(o, &e, &ferr);
    cJSON_Delete(o);
    if (st != LT_OK) return lt_errorf(err, st, "registry record %.80s: %s", key, ferr.msg);
    if (strcmp(m ? m->name : e->name, name)) {
        lt_reg_model_free(m);
        lt_reg_endpoint_free(e);
        return lt_errorf(err, LT_ERR_FORMAT, "registry record %.80s: its name does not match the key", key);
    }
    pthread_mutex_lock(&r->mu);
    st = m ? lt_reg_add_model(r, m) : lt_reg_add_endpoint(r, e);
    pthread_mutex_unlock(&r->mu);
    return st == LT_OK ? LT_OK : lt_errorf(err, st, "out of memory");
}

void lt_registry_mirror_name(const char *key, char *buf, size_t size) {
    const char *slash = strchr(key, '/');
    if (slash)
        snprintf(buf, size, "%.*s.%s", (int)(slash - key), key, slash + 1);
    else
        snprintf(buf, size, "%s", key);
}

/* A mirror file is named "<kind>.<name>.json" for the record key "<kind>/<name>" (lt_registry_mirror_name).
 */
static lt_status load_mirror_record(void *ctx, const char *file, const char *data, size_t len, lt_err *err) {
    const char *dot = strchr(file, '.');
    if (!dot) return LT_ERR_NOT_FOUND;
    char key[LT_REG_NAME_MAX + 16];
    snprintf(key, sizeof key, "%.*s/%s", (int)(dot - file), file, dot + 1);
    return lt_registry_load_record(ctx, key, data, len, err);
}

lt_status lt_registry_load_dir(lt_registry *r, const char *dir, size_t *n, lt_err *err) {
    return lt_mirror_scan(dir, (size_t)16 << 20, load_mirror_record, r, n, err);
}

/* ---- background work ---- */

typedef struct {
    lt_registry *r;
    lt_reg_task_kind kind;
    char endpoint[LT_REG_NAME_MAX];
    uint64_t ep_seq;
    int replicas;
    size_t n; /* stages to load */
    struct {
        char name[LT_REG_NAME_MAX];
        char *uri;
        uint64_t seq;
    } stages[];
} task;

static void task_free(task *t) {
    for (size_t i = 0; i < t->n; i++)
        free(t->stages[i].uri);
    free(t);
}

/* The endpoint the task is about, if it is still the same one (not deleted and made again meanwhile). */
static lt_reg_endpoint *task_endpoint(task *t) {
    lt_reg_endpoint *e = lt_reg_find_endpoint(t->r, t->endpoint);
    return e && e->seq == t->ep_seq ? e : NULL;
}

static void set_error(char **field, const char *msg) {
    free(*field);
    *field = msg ? strdup(msg) : NULL;
}

/* Persists e (under the lock) and waits for it after unlocking. */
static void save_and_unlock(lt_registry *r, lt_reg_endpoint *e, const char *name) {
    void *ticket = NULL;
    lt_err err = {{0}};
    if (e) lt_job_now(e->updated_at);
    lt_status st = lt_reg_persist_endpoint(r, name, e, &ticket, &err);
    pthread_mutex_unlock(&r->mu);
    if (st == LT_OK) st = lt_reg_wait(r, ticket, &err);
    if (st != LT_OK) logf_(r, "endpoint %s: could not write its record: %s", name, err.msg);
}

/* Loads stage i of the task and records the outcome; returns the load's status. */
static lt_status task_load(task *t, size_t i, int first) {
    lt_registry *r = t->r;
    lt_err err = {{0}};
    lt_status st = lt_gateway_load(r->o.gateway, t->endpoint, t->stages[i].name, t->stages[i].uri,
                                   r->o.load_timeout_ms, &err);
    if (t->kind == LT_REG_TASK_REVIVE) {
        if (st != LT_OK)
            logf_(r, "endpoint %s stage %s: reloading after a restart: %s", t->endpoint, t->stages[i].name,
                  err.msg);
        return st;
    }
    if (st != LT_OK) atomic_fetch_add(&r->loads_failed, 1);
    pthread_mutex_lock(&r->mu);
    lt_reg_endpoint *e = task_endpoint(t);
    lt_reg_stage *s = e ? lt_reg_find_stage(e, t->stages[i].name) : NULL;
    if (!s || s->seq != t->stages[i].seq || s->state != LT_STAGE_LOADING || e->state == LT_EP_DELETING) {
        pthread_mutex_unlock(&r->mu); /* deleted or replaced meanwhile: nothing to record */
        return st;
    }
    char msg[LT_ERR_MSG_MAX + 128];
    snprintf(msg, sizeof msg, "loading model %s: %s", s->model, err.msg);
    s->state = st == LT_OK ? LT_STAGE_ACTIVE : LT_STAGE_FAILED;
    set_error(&s->error, st == LT_OK ? NULL : msg);
    if (first) {
        e->state = st == LT_OK ? LT_EP_ACTIVE : LT_EP_FAILED;
        set_error(&e->error, st == LT_OK ? NULL : msg);
    }
    if (!strcmp(e->pending_default, s->name)) {
        if (st == LT_OK) snprintf(e->default_stage, sizeof e->default_stage, "%s", s->name);
        e->pending_default[0] = 0;
    }
    logf_(r, "endpoint %s stage %s: %s%s%s", e->name, s->name, lt_reg_stage_state_name(s->state),
          st == LT_OK ? "" : ": ", st == LT_OK ? "" : msg);
    save_and_unlock(r, e, t->endpoint);
    return st;
}

static void run_create(task *t) {
    lt_registry *r = t->r;
    lt_err err = {{0}};
    lt_status st = lt_gateway_create_endpoint(r->o.gateway, t->endpoint, t->replicas, &err);
    if (t->kind == LT_REG_TASK_REVIVE) {
        if (st != LT_OK) logf_(r, "endpoint %s: its topic after a restart: %s", t->endpoint, err.msg);
        for (size_t i = 0; i < t->n; i++)
            task_load(t, i, 0);
        return;
    }
    if (st != LT_OK) {
        pthread_mutex_lock(&r->mu);
        lt_reg_endpoint *e = task_endpoint(t);
        if (!e || e->state != LT_EP_CREATING) {
            pthread_mutex_unlock(&r->mu);
            return;
        }
        char msg[LT_ERR_MSG_MAX + 128];
        snprintf(msg, sizeof msg, "creating the endpoint's topic: %s", err.msg);
        e->state = LT_EP_FAILED;
        set_error(&e->error, msg);
        for (size_t i = 0; i < e->n_stages; i++)
            if (e->stages[i].state == LT_STAGE_LOADING) {
                e->stages[i].state = LT_STAGE_FAILED;
                set_error(&e->stages[i].error, msg);
            }
        logf_(r, "endpoint %s: FAILED: %s", e->name, msg);
        save_and_unlock(r, e, t->endpoint);
        return;
    }
    for (size_t i = 0; i < t->n; i++)
        task_load(t, i, i == 0);
}

static void run_delete(task *t) {
    lt_registry *r = t->r;
    lt_err err = {{0}};
    if (lt_gateway_delete_endpoint(r->o.gateway, t->endpoint, &err) != LT_OK)
        logf_(r, "endpoint %s: deleting its topic: %s (the record goes anyway)", t->endpoint, err.msg);
    pthread_mutex_lock(&r->mu);
    if (!task_endpoint(t)) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    lt_reg_remove_endpoint(r, t->endpoint);
    save_and_unlock(r, NULL, t->endpoint); /* the tombstone */
}

static void *task_main(void *arg) {
    task *t = arg;
    lt_registry *r = t->r;
    switch (t->kind) {
    case LT_REG_TASK_CREATE:
    case LT_REG_TASK_REVIVE:
        run_create(t);
        break;
    case LT_REG_TASK_LOAD:
        task_load(t, 0, 0);
        break;
    case LT_REG_TASK_DELETE:
        run_delete(t);
        break;
    }
    task_free(t);
    pthread_mutex_lock(&r->mu);
    r->tasks--;
    pthread_cond_broadcast(&r->tasks_cv);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

lt_status lt_reg_start_task(lt_registry *r, lt_reg_task_kind kind, const lt_reg_endpoint *e,
                            const lt_reg_stage *st, lt_err *err) {
    /* CREATE loads every LOADING stage (the first is the default), REVIVE every ACTIVE one, LOAD just st */
    size_t n = 0;
    for (size_t i = 0; i < e->n_stages; i++)
        n += kind == LT_REG_TASK_CREATE   ? e->stages[i].state == LT_STAGE_LOADING
             : kind == LT_REG_TASK_REVIVE ? e->stages[i].state == LT_STAGE_ACTIVE
                                          : 0;
    if (kind == LT_REG_TASK_LOAD) n = 1;
    task *t = calloc(1, sizeof *t + n * sizeof t->stages[0]);
    if (!t) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    t->r = r;
    t->kind = kind;
    snprintf(t->endpoint, sizeof t->endpoint, "%s", e->name);
    t->ep_seq = e->seq;
    t->replicas = e->replicas;
    for (size_t i = 0; i < e->n_stages && t->n < n; i++) {
        const lt_reg_stage *s = &e->stages[i];
        int take = kind == LT_REG_TASK_LOAD     ? s == st
                   : kind == LT_REG_TASK_CREATE ? s->state == LT_STAGE_LOADING
                                                : s->state == LT_STAGE_ACTIVE;
        if (!take) continue;
        /* the default stage first: its outcome decides CREATING -> ACTIVE | FAILED */
        size_t k = t->n++;
        if (kind == LT_REG_TASK_CREATE && !strcmp(s->name, e->default_stage) && k > 0) {
            t->stages[k] = t->stages[0];
            k = 0;
        }
        snprintf(t->stages[k].name, sizeof t->stages[k].name, "%s", s->name);
        t->stages[k].seq = s->seq;
        if (!(t->stages[k].uri = strdup(s->model_uri))) {
            task_free(t);
            return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        }
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, task_main, t);
    pthread_attr_destroy(&attr);
    if (rc) {
        task_free(t);
        return lt_errorf(err, LT_ERR_NOMEM, "cannot start a thread: %s", strerror(rc));
    }
    r->tasks++;
    return LT_OK;
}

void lt_registry_resume(lt_registry *r) {
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n_endpoints; i++) {
        lt_reg_endpoint *e = r->endpoints[i];
        lt_err err = {{0}};
        lt_status st = LT_OK;
        if (e->state == LT_EP_CREATING)
            st = lt_reg_start_task(r, LT_REG_TASK_CREATE, e, NULL, &err);
        else if (e->state == LT_EP_DELETING)
            st = lt_reg_start_task(r, LT_REG_TASK_DELETE, e, NULL, &err);
        else if (e->state == LT_EP_ACTIVE) {
            st = lt_reg_start_task(r, LT_REG_TASK_REVIVE, e, NULL, &err);
            for (size_t k = 0; k < e->n_stages && st == LT_OK; k++)
                if (e->stages[k].state == LT_STAGE_LOADING)
                    st = lt_reg_start_task(r, LT_REG_TASK_LOAD, e, &e->stages[k], &err);
        }
        if (st != LT_OK) logf_(r, "endpoint %s: cannot resume: %s", e->name, err.msg);
    }
    pthread_mutex_unlock(&r->mu);
}

/* ---- life ---- */

lt_registry *lt_registry_new(const lt_registry_opts *o, lt_err *err) {
    lt_registry *r = calloc(1, sizeof *r);
    if (!r || !(r->root = strdup(o->storage_root ? o->storage_root : ""))) {
        free(r);
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    r->o = *o;
    r->o.storage_root = r->root;
    if (r->o.inference_timeout_ms <= 0) r->o.inference_timeout_ms = 10000;
    if (r->o.load_timeout_ms <= 0) r->o.load_timeout_ms = 120000;
    if (r->o.max_inference_body == 0) r->o.max_inference_body = (size_t)64 * 1000 * 1000;
    if (r->o.max_replicas <= 0) r->o.max_replicas = 64;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->tasks_cv, NULL);
    return r;
}

void lt_registry_set_gateway(lt_registry *r, lt_gateway *gw) {
    pthread_mutex_lock(&r->mu);
    r->o.gateway = gw;
    pthread_mutex_unlock(&r->mu);
}

void lt_registry_free(lt_registry *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    while (r->tasks > 0)
        pthread_cond_wait(&r->tasks_cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < r->n_models; i++)
        lt_reg_model_free(r->models[i]);
    for (size_t i = 0; i < r->n_endpoints; i++)
        lt_reg_endpoint_free(r->endpoints[i]);
    free(r->models);
    free(r->endpoints);
    pthread_cond_destroy(&r->tasks_cv);
    pthread_mutex_destroy(&r->mu);
    free(r->root);
    free(r);
}

char *lt_registry_metrics_text(lt_registry *r) {
    size_t by_state[LT_EP_STATE_COUNT] = {0}, models;
    pthread_mutex_lock(&r->mu);
    models = r->n_models;
    for (size_t i = 0; i < r->n_endpoints; i++)
        by_state[r->endpoints[i]->state]++;
    pthread_mutex_unlock(&r->mu);
    char *buf = malloc(2048);
    if (!buf) return NULL;
    int n =
        snprintf(buf, 2048,
                 "# HELP lathe_models Models in the registry.\n# TYPE lathe_models gauge\nlathe_models %zu\n"
                 "# HELP lathe_endpoints Endpoints, by state.\n# TYPE lathe_endpoints gauge\n",
                 models);
    for (int s = 0; s < LT_EP_STATE_COUNT; s++)
        n += snprintf(buf + n, 2048 - (size_t)n, "lathe_endpoints{state=\"%s\"} %zu\n", ep_state_names[s],
                      by_state[s]);
    snprintf(
        buf + n, 2048 - (size_t)n,
        "# HELP lathe_inference_requests_total Real-time inference requests, by outcome.\n"
        "# TYPE lathe_inference_requests_total counter\n"
        "lathe_inference_requests_total{outcome=\"answered\"} %lld\n"
        "lathe_inference_requests_total{outcome=\"timeout\"} %lld\n"
        "lathe_inference_requests_total{outcome=\"unavailable\"} %lld\n"
        "# HELP lathe_model_loads_failed_total Stage loads that failed.\n"
        "# TYPE lathe_model_loads_failed_total counter\nlathe_model_loads_failed_total %lld\n"
        "# HELP lathe_registry_persist_failures_total Registry records that could not be written.\n"
        "# TYPE lathe_registry_persist_failures_total counter\nlathe_registry_persist_failures_total %lld\n",
        (long long)atomic_load(&r->infer_ok), (long long)atomic_load(&r->infer_timeout),
        (long long)atomic_load(&r->infer_unavailable), (long long)atomic_load(&r->loads_failed),
        (long long)atomic_load(&r->persist_failures));
    return buf;
}

int lt_registry_resolve_model(void *ctx, const char *name, char *uri, size_t cap, lt_err *err) {
    lt_registry *r = ctx;
    int found = 0;
    pthread_mutex_lock(&r->mu);
    const lt_reg_model *m = lt_reg_find_model(r, name);
    if (m && strlen(m->uri) < cap) {
        memcpy(uri, m->uri, strlen(m->uri) + 1);
        found = 1;
    } else if (m) {
        lt_errorf(err, LT_ERR_ARG, "model %s: its URI is longer than %zu bytes", name, cap - 1);
        found = -1;
    }
    pthread_mutex_unlock(&r->mu);
    return found;
}
