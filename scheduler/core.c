/* core.c - the API's handlers, event folding and record loading (see core.h). */
#include "core.h"

#include "registry.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const int counted_codes[LT_SCHED_CODES] = {200, 201, 202, 400, 401, 404, 405,
                                                  409, 413, 422, 500, 503, 504};

static const char *const route_names[LT_ROUTE_COUNT] = {
    "submit",    "list",      "get",          "cancel",     "health",    "metrics",      "models",
    "endpoints", "inference", "batch_submit", "batch_list", "batch_get", "batch_cancel", "other"};

/* The job types behind the /v1/<collection> routes: one record table, one state machine, one set of
 * handlers; a record is only visible under its own type's routes. */
typedef struct {
    const char *type;       /* record type ("training" matches records without one) */
    const char *noun;       /* in messages: "training", "batch inference" */
    const char *collection; /* the list's member: "trainings", "batch_inferences" */
    lt_sched_route submit, list, get, cancel;
} job_kind;

static const job_kind kind_training = {"training",    "training",   "trainings",    LT_ROUTE_SUBMIT,
                                       LT_ROUTE_LIST, LT_ROUTE_GET, LT_ROUTE_CANCEL};
static const job_kind kind_batch = {LT_JOB_TYPE_BATCH,     "batch inference",   "batch_inferences",
                                    LT_ROUTE_BATCH_SUBMIT, LT_ROUTE_BATCH_LIST, LT_ROUTE_BATCH_GET,
                                    LT_ROUTE_BATCH_CANCEL};

static int is_kind(const lt_job *j, const job_kind *k) {
    return !strcmp(j->type ? j->type : "training", k->type);
}

static const char *noun_of(const lt_job *j) {
    return LT_JOB_IS_BATCH(j) ? kind_batch.noun : kind_training.noun;
}

static int64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

lt_status lt_sched_init(lt_sched *s, const lt_sched_bus *bus, const lt_submit_opts *submit,
                        const char *api_token, lt_err *err) {
    memset(s, 0, sizeof *s);
    s->bus = *bus;
    s->submit = *submit;
    s->list_limit = 100;
    s->started_ms = wall_ms();
    if (!(s->table = lt_table_create())) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (api_token && api_token[0] && !(s->api_token = strdup(api_token))) {
        lt_sched_free(s);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    return LT_OK;
}

void lt_sched_free(lt_sched *s) {
    lt_table_destroy(s->table);
    s->table = NULL;
    if (s->api_token) memset(s->api_token, 0, strlen(s->api_token));
    free(s->api_token);
    s->api_token = NULL;
}

/* ---- responses ---- */

void lt_sched_respond_json(lt_sched_response *rs, int status, cJSON *body) {
    rs->status = status;
    rs->content_type = "application/json";
    rs->body = body ? cJSON_PrintUnformatted(body) : NULL;
    cJSON_Delete(body);
    if (!rs->body) { /* out of memory: a fixed body still tells the client */
        rs->status = 500;
        rs->body = strdup("{\"error\":\"out of memory\"}");
    }
    rs->body_len = rs->body ? strlen(rs->body) : 0;
}

void lt_sched_respond_error(lt_sched_response *rs, int status, const char *fmt, ...) {
    char msg[LT_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "error", msg)) {
        cJSON_Delete(o);
        o = NULL;
    }
    lt_sched_respond_json(rs, status, o);
}

/* ---- auth ---- */

/* Compares in time that depends only on the expected token's length, so a client can't find the token a
 * byte at a time by timing the 401s. */
static int token_matches(const char *got, const char *want) {
    size_t lg = strlen(got), lw = strlen(want);
    unsigned char d = lg != lw;
    for (size_t i = 0; i < lw; i++)
        d |= (unsigned char)((i < lg ? got[i] : 0) ^ want[i]);
    return d == 0;
}

static int authorized(const lt_sched *s, const lt_sched_request *rq) {
    if (!s->api_token) return 1;
    const char *h = rq->authorization;
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return token_matches(h, s->api_token);
}

/* ---- handlers ---- */

static int valid_idempotency_key(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 255) return 0;
    for (; *k; k++)
        if ((unsigned char)*k < 0x21 || (unsigned char)*k > 0x7e) return 0;
    return 1;
}

static cJSON *id_state(const char *id, lt_job_state st) {
    cJSON *o = cJSON_CreateObject();
    if (o && (!cJSON_AddStringToObject(o, "id", id) ||
              !cJSON_AddStringToObject(o, "state", lt_job_state_name(st)))) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Answers a request that reuses an Idempotency-Key: the same job when the body is the same request, 422
 * otherwise. Returns 1 when it answered (a record with the key exists). */
static int replay_idempotent(lt_sched *s, const lt_sched_request *rq, const char *hash,
                             lt_sched_response *rs) {
    lt_table_lock(s->table);
    lt_job *j = lt_table_find_idempotent(s->table, rq->idempotency_key);
    if (!j) {
        lt_table_unlock(s->table);
        return 0;
    }
    int same = !strcmp(j->request_hash, hash);
    cJSON *o = same ? id_state(j->id, j->state) : NULL;
    char id[LT_JOB_ID_MAX];
    snprintf(id, sizeof id, "%s", j->id);
    const char *noun = noun_of(j);
    lt_table_unlock(s->table);
    if (same)
        lt_sched_respond_json(rs, 200, o);
    else
        lt_sched_respond_error(
            rs, 422,
            "Idempotency-Key: already used by %s %s with a different request; use a new key to submit "
            "another job",
            noun, id);
    return 1;
}

/* lt_submit_prepare or lt_submit_prepare_batch by kind; *http is the status of a failure. */
static lt_status prepare(const job_kind *k, const lt_sched_request *rq, const char *id,
                         const lt_submit_opts *o, lt_job **job, cJSON **msg, int *http, lt_err *err) {
    if (k == &kind_batch) return lt_submit_prepare_batch(rq->body, rq->body_len, id, o, job, msg, http, err);
    lt_status st = lt_submit_prepare(rq->body, rq->body_len, id, o, job, msg, err);
    *http = st == LT_ERR_ARG ? 400 : st == LT_ERR_IO ? 503 : 500;
    return st;
}

static void handle_submit(lt_sched *s, const job_kind *k, const lt_sched_request *rq, lt_sched_response *rs) {
    if (rq->idempotency_key && !valid_idempotency_key(rq->idempotency_key)) {
        lt_sched_respond_error(rs, 400, "Idempotency-Key: must be 1 to 255 visible ASCII characters");
        return;
    }
    char id[LT_JOB_ID_MAX];
    lt_submit_new_id(id);
    if (k == &kind_batch) id[0] = 'b', id[1] = 'i'; /* "bi-": a batch inference's id says what it is */
    lt_job *job = NULL;
    cJSON *msg = NULL;
    lt_err err = {{0}};
    int http = 500;
    if (rq->idempotency_key) {
        /* a replay is judged without listing the data set again: only the request's hash matters */
        lt_submit_opts quick = s->submit;
        quick.check_dataset = 0;
        lt_status st = prepare(k, rq, id, &quick, &job, &msg, &http, &err);
        if (st == LT_OK) {
            int answered = replay_idempotent(s, rq, job->request_hash, rs);
            lt_job_destroy(job);
            cJSON_Delete(msg);
            job = NULL;
            msg = NULL;
            if (answered) return;
        }
    }
    lt_status st = prepare(k, rq, id, &s->submit, &job, &msg, &http, &err);
    if (st != LT_OK) {
        lt_sched_respond_error(rs, http, "%s", err.msg);
        return;
    }
    char *msg_text = cJSON_PrintUnformatted(msg);
    cJSON_Delete(msg);
    cJSON *rec = NULL;
    char *rec_text = NULL;
    if (!msg_text || (rq->idempotency_key && !lt_job_set_str(&job->idempotency_key, rq->idempotency_key)) ||
        !(rec = lt_job_to_json(job)) || !(rec_text = cJSON_PrintUnformatted(rec))) {
        cJSON_Delete(rec);
        free(msg_text);
        lt_job_destroy(job);
        lt_sched_respond_error(rs, 500, "out of memory");
        return;
    }
    cJSON_Delete(rec);

    /* The record goes into the table and is enqueued for the state topic before the job is enqueued, so a
       worker's first event finds it and the record's later versions follow it on its partition. Both are
       awaited together (one round trip); the job's delivery decides the answer: a record that failed while
       the job went out is written again by the job's next event. */
    void *rec_ticket = NULL, *job_ticket = NULL;
    lt_table_lock(s->table);
    if (rq->idempotency_key && lt_table_find_idempotent(s->table, rq->idempotency_key)) {
        lt_table_unlock(s->table); /* a concurrent request with the same key won the race */
        char hash[sizeof job->request_hash];
        memcpy(hash, job->request_hash, sizeof hash);
        lt_job_destroy(job);
        free(rec_text);
        free(msg_text);
        if (!replay_idempotent(s, rq, hash, rs))
            lt_sched_respond_error(rs, 503, "Idempotency-Key: conflict, try again");
        return;
    }
    st = lt_table_put(s->table, job);
    job = NULL;
    if (st == LT_OK) st = s->bus.persist(s->bus.ctx, id, rec_text, &rec_ticket, &err);
    if (st == LT_OK) st = s->bus.publish_job(s->bus.ctx, id, msg_text, &job_ticket, &err);
    if (st != LT_OK) lt_table_remove(s->table, id);
    lt_table_unlock(s->table);
    free(rec_text);
    free(msg_text);
    lt_err rerr = {{0}};
    if (rec_ticket && s->bus.wait(s->bus.ctx, rec_ticket, &rerr) != LT_OK)
        atomic_fetch_add(&s->m.persist_failures, 1);
    if (job_ticket) st = s->bus.wait(s->bus.ctx, job_ticket, &err);
    if (st != LT_OK) {
        lt_table_lock(s->table);
        lt_table_remove(s->table, id);
        lt_err terr = {{0}};
        s->bus.persist(s->bus.ctx, id, NULL, NULL, &terr); /* best effort: a tombstone for the record */
        lt_table_unlock(s->table);
        lt_sched_respond_error(rs, 503, "could not queue the %s (Kafka unavailable): %s", k->noun, err.msg);
        return;
    }
    atomic_fetch_add(&s->m.submitted, 1);
    lt_sched_respond_json(rs, 201, id_state(id, LT_JOB_QUEUED));
}

static void handle_get(lt_sched *s, const job_kind *k, const char *id, lt_sched_response *rs) {
    lt_table_lock(s->table);
    lt_job *j = lt_table_find(s->table, id);
    if (j && !is_kind(j, k)) j = NULL;
    cJSON *o = j ? lt_job_to_json(j) : NULL;
    lt_table_unlock(s->table);
    if (!j)
        lt_sched_respond_error(rs, 404, "no %s with id '%s'", k->noun, id);
    else
        lt_sched_respond_json(rs, 200, o);
}

static void handle_list(lt_sched *s, const job_kind *k, const lt_sched_request *rq, lt_sched_response *rs) {
    int state = -1;
    if (rq->state && rq->state[0]) {
        char up[16] = "";
        for (size_t i = 0; rq->state[i] && i + 1 < sizeof up; i++)
            up[i] = (char)toupper((unsigned char)rq->state[i]);
        lt_job_state st = strlen(rq->state) < sizeof up ? lt_job_state_parse(up) : LT_JOB_STATE_COUNT;
        if (st == LT_JOB_STATE_COUNT) {
            lt_sched_respond_error(
                rs, 400, "state: must be QUEUED, RUNNING, SUCCEEDED, FAILED or CANCELLED, got '%.64s'",
                rq->state);
            return;
        }
        state = (int)st;
    }
    size_t limit = s->list_limit;
    if (rq->limit && rq->limit[0]) {
        char *end;
        long v = strtol(rq->limit, &end, 10);
        if (*end || v < 1 || v > 1000) {
            lt_sched_respond_error(rs, 400, "limit: must be an integer in [1, 1000], got '%.32s'", rq->limit);
            return;
        }
        limit = (size_t)v;
    }
    size_t total = 0;
    lt_table_lock(s->table);
    cJSON *arr = lt_table_list_type(s->table, k->type, state, limit, &total);
    lt_table_unlock(s->table);
    cJSON *o = cJSON_CreateObject();
    if (!o || !arr) {
        cJSON_Delete(o);
        cJSON_Delete(arr);
        lt_sched_respond_error(rs, 500, "out of memory");
        return;
    }
    cJSON_AddItemToObject(o, k->collection, arr);
    cJSON_AddNumberToObject(o, "total", (double)total);
    lt_sched_respond_json(rs, 200, o);
}

static void handle_cancel(lt_sched *s, const job_kind *k, const char *id, lt_sched_response *rs) {
    lt_table_lock(s->table);
    lt_job *j = lt_table_find(s->table, id);
    if (j && !is_kind(j, k)) j = NULL;
    lt_job_state st = j ? j->state : LT_JOB_QUEUED;
    lt_table_unlock(s->table);
    if (!j) {
        lt_sched_respond_error(rs, 404, "no %s with id '%s'", k->noun, id);
        return;
    }
    if (lt_job_state_is_final(st)) {
        lt_sched_respond_error(rs, 409, "%s %s is already %s", k->noun, id, lt_job_state_name(st));
        return;
    }
    /* workers hear of it first, so by the time the record says CANCELLED no worker can miss the message */
    lt_err err = {{0}};
    if (s->bus.publish_cancel(s->bus.ctx, id, &err) != LT_OK) {
        lt_sched_respond_error(rs, 503, "could not publish the cancel (Kafka unavailable): %s", err.msg);
        return;
    }
    char now[LT_JOB_TIME_MAX];
    lt_job_now(now);
    void *ticket = NULL;
    cJSON *o = NULL;
    lt_status pst = LT_OK;
    lt_table_lock(s->table);
    j = lt_table_find(s->table, id);
    if (j && lt_job_request_cancel(j, now)) {
        cJSON *rec = lt_job_to_json(j);
        char *text = rec ? cJSON_PrintUnformatted(rec) : NULL;
        pst = text ? s->bus.persist(s->bus.ctx, id, text, &ticket, &err) : LT_ERR_NOMEM;
        free(text);
        cJSON_Delete(rec);
    }
    if (j) o = lt_job_to_json(j);
    lt_table_unlock(s->table);
    if (ticket) pst = s->bus.wait(s->bus.ctx, ticket, &err);
    if (pst != LT_OK) atomic_fetch_add(&s->m.persist_failures, 1);
    if (!j) {
        cJSON_Delete(o);
        lt_sched_respond_error(rs, 404, "no %s with id '%s'", k->noun, id);
        return;
    }
    lt_sched_respond_json(rs, 200, o);
}

static void handle_health(lt_sched *s, lt_sched_response *rs) {
    int kafka = s->bus.healthy ? s->bus.healthy(s->bus.ctx) : 1;
    int ready = atomic_load(&s->ready);
    lt_table_lock(s->table);
    size_t n = lt_table_size(s->table);
    lt_table_unlock(s->table);
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddStringToObject(o, "status", !ready ? "starting" : kafka ? "ok" : "degraded");
        cJSON_AddBoolToObject(o, "kafka", kafka);
        cJSON_AddBoolToObject(o, "state_loaded", ready);
        cJSON_AddNumberToObject(o, "jobs", (double)n);
        cJSON_AddNumberToObject(o, "uptime_s", (double)(wall_ms() - s->started_ms) / 1000.0);
    }
    lt_sched_respond_json(rs, ready && kafka ? 200 : 503, o);
}

static void handle_metrics(lt_sched *s, lt_sched_response *rs) {
    rs->body = lt_sched_metrics_text(s, &rs->body_len);
    if (!rs->body) {
        lt_sched_respond_error(rs, 500, "out of memory");
        return;
    }
    rs->status = 200;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* An id segment of a path: what lt_msg_check_id accepts. */
static int path_id(const char *p, size_t n, char out[LT_JOB_ID_MAX]) {
    if (n == 0 || n >= LT_JOB_ID_MAX) return 0;
    memcpy(out, p, n);
    out[n] = 0;
    return lt_msg_check_id(out, NULL) == LT_OK;
}

static void count(lt_sched *s, lt_sched_response *rs) {
    int k = LT_SCHED_CODES - 3; /* codes not in the table count as 500 */
    for (int i = 0; i < LT_SCHED_CODES; i++)
        if (counted_codes[i] == rs->status) k = i;
    atomic_fetch_add(&s->m.requests[rs->route][k], 1);
}

/* Routes /v1/<collection>[/{id}[/cancel]] for one job kind; rest is the path after the collection. */
static void route_jobs(lt_sched *s, const job_kind *k, const char *rest, const lt_sched_request *rq,
                       lt_sched_response *rs) {
    const char *path = rq->path;
    int get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
    int post = !strcmp(rq->method, "POST");
    char id[LT_JOB_ID_MAX];
    const char *seg = rest[0] ? rest + 1 : rest;
    const char *slash = strchr(seg, '/');
    int is_collection = rest[0] == 0;
    int is_cancel = slash && !strcmp(slash, "/cancel");
    int is_item = !is_collection && !slash;
    if (!is_collection && !((is_item && path_id(seg, strlen(seg), id)) ||
                            (is_cancel && path_id(seg, (size_t)(slash - seg), id)))) {
        lt_sched_respond_error(rs, 404, "no such resource: %.200s", path);
    } else if (!authorized(s, rq)) {
        rs->route = is_collection ? (post ? k->submit : k->list) : is_cancel ? k->cancel : k->get;
        lt_sched_respond_error(
            rs, 401, "missing or wrong bearer token (send 'Authorization: Bearer <LATHE_API_TOKEN>')");
        rs->www_auth = "Bearer realm=\"lathe\"";
    } else if (!atomic_load(&s->ready)) {
        rs->route = is_collection ? (post ? k->submit : k->list) : is_cancel ? k->cancel : k->get;
        lt_sched_respond_error(rs, 503, "the scheduler is starting: loading the job state from Kafka");
    } else if (is_collection) {
        rs->route = post ? k->submit : k->list;
        if (post)
            handle_submit(s, k, rq, rs);
        else if (get)
            handle_list(s, k, rq, rs);
        else
            rs->allow = "GET, HEAD, POST";
    } else if (is_cancel) {
        rs->route = k->cancel;
        if (post)
            handle_cancel(s, k, id, rs);
        else
            rs->allow = "POST";
    } else {
        rs->route = k->get;
        if (get)
            handle_get(s, k, id, rs);
        else
            rs->allow = "GET, HEAD";
    }
}

void lt_sched_handle(lt_sched *s, const lt_sched_request *rq, lt_sched_response *rs) {
    memset(rs, 0, sizeof *rs);
    rs->route = LT_ROUTE_OTHER;
    const char *path = rq->path ? rq->path : "";
    int get = !strcmp(rq->method, "GET") || !strcmp(rq->method, "HEAD");
    static const char trainings[] = "/v1/trainings", batches[] = "/v1/batch-inferences";
    const size_t tl = sizeof trainings - 1, bl = sizeof batches - 1;

    if (!strcmp(path, "/v1/health")) {
        rs->route = LT_ROUTE_HEALTH;
        if (get)
            handle_health(s, rs);
        else
            rs->allow = "GET, HEAD";
    } else if (!strcmp(path, "/metrics")) {
        rs->route = LT_ROUTE_METRICS;
        if (get)
            handle_metrics(s, rs);
        else
            rs->allow = "GET, HEAD";
    } else if (!strncmp(path, trainings, tl) && (path[tl] == 0 || path[tl] == '/')) {
        route_jobs(s, &kind_training, path + tl, rq, rs);
    } else if (!strncmp(path, batches, bl) && (path[bl] == 0 || path[bl] == '/')) {
        route_jobs(s, &kind_batch, path + bl, rq, rs);
    } else if (s->registry && lt_registry_owns(path, &rs->route)) {
        if (!authorized(s, rq)) {
            lt_sched_respond_error(
                rs, 401, "missing or wrong bearer token (send 'Authorization: Bearer <LATHE_API_TOKEN>')");
            rs->www_auth = "Bearer realm=\"lathe\"";
        } else if (!atomic_load(&s->ready)) {
            lt_sched_respond_error(rs, 503, "the scheduler is starting: loading its state from Kafka");
        } else {
            lt_registry_handle(s->registry, s, rq, rs);
        }
    } else {
        lt_sched_respond_error(rs, 404, "no such resource: %.200s", path);
    }
    if (rs->allow)
        lt_sched_respond_error(rs, 405, "method %.16s not allowed here (allowed: %s)", rq->method, rs->allow);
    count(s, rs);
}

void lt_sched_count_time(lt_sched *s, lt_sched_route route, int64_t us) {
    if ((unsigned)route < LT_ROUTE_COUNT) atomic_fetch_add(&s->m.request_us[route], us);
}

/* ---- events and records ---- */

lt_status lt_sched_fold_event(lt_sched *s, const void *data, size_t len, void **ticket, lt_err *err) {
    if (ticket) *ticket = NULL;
    lt_msg_event ev;
    lt_status st = lt_msg_event_decode(data, len, &ev, err);
    if (st != LT_OK) {
        if (st == LT_ERR_FORMAT) atomic_fetch_add(&s->m.events_malformed, 1);
        return st;
    }
    char now[LT_JOB_TIME_MAX];
    lt_job_now(now);
    lt_table_lock(s->table);
    lt_job *j = lt_table_find(s->table, ev.job_id);
    if (!j) {
        /* a job published around this scheduler (or whose record was lost): keep what the events say */
        lt_job *nj = lt_job_create(ev.job_id);
        if (!nj || lt_table_put(s->table, nj) != LT_OK) {
            lt_table_unlock(s->table);
            lt_msg_event_free(&ev);
            return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        }
        j = lt_table_find(s->table, ev.job_id);
        snprintf(j->created_at, sizeof j->created_at, "%s", now);
        atomic_fetch_add(&s->m.events_unknown_job, 1);
    }
    int changed = lt_job_apply_event(j, &ev, now);
    if (changed > 0) {
        cJSON *rec = lt_job_to_json(j);
        char *text = rec ? cJSON_PrintUnformatted(rec) : NULL;
        st = text ? s->bus.persist(s->bus.ctx, j->id, text, ticket, err)
                  : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        free(text);
        cJSON_Delete(rec);
        if (st != LT_OK) atomic_fetch_add(&s->m.persist_failures, 1);
    } else if (changed < 0) {
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    lt_table_unlock(s->table);
    lt_msg_event_free(&ev);
    atomic_fetch_add(changed > 0 ? &s->m.events : &s->m.events_ignored, 1);
    return st;
}

lt_status lt_sched_load_record(lt_sched *s, const char *key, const void *data, size_t len, lt_err *err) {
    if (!data || len == 0) {
        if (key) {
            lt_table_lock(s->table);
            lt_table_remove(s->table, key);
            lt_table_unlock(s->table);
        }
        return LT_OK;
    }
    cJSON *o = cJSON_ParseWithLength(data, len);
    if (!o) return lt_errorf(err, LT_ERR_FORMAT, "job record %s: not valid JSON", key ? key : "(no key)");
    lt_job *j = NULL;
    lt_status st = lt_job_from_json(o, &j, err);
    cJSON_Delete(o);
    if (st != LT_OK) return st;
    lt_table_lock(s->table);
    st = lt_table_put(s->table, j);
    lt_table_unlock(s->table);
    if (st == LT_OK) atomic_fetch_add(&s->m.records_loaded, 1);
    return st == LT_OK ? LT_OK : lt_errorf(err, st, "out of memory");
}

/* ---- /metrics ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} text_buf;

static void tb_printf(text_buf *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(text_buf *t, const char *fmt, ...) {
    if (t->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->oom = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void counter(text_buf *t, const char *name, const char *help, long long v) {
    tb_printf(t, "# HELP %s %s\n# TYPE %s counter\n%s %lld\n", name, help, name, name, v);
}

char *lt_sched_metrics_text(lt_sched *s, size_t *len) {
    text_buf t = {.buf = malloc(4096), .cap = 4096};
    if (!t.buf) return NULL;
    t.buf[0] = 0;
    size_t counts[LT_JOB_STATE_COUNT];
    lt_table_lock(s->table);
    lt_table_counts(s->table, counts);
    lt_table_unlock(s->table);
    tb_printf(&t, "# HELP lathe_jobs Trainings known to the scheduler, by state.\n# TYPE lathe_jobs gauge\n");
    for (int i = 0; i < LT_JOB_STATE_COUNT; i++)
        tb_printf(&t, "lathe_jobs{state=\"%s\"} %zu\n", lt_job_state_name((lt_job_state)i), counts[i]);
    tb_printf(&t, "# HELP lathe_http_requests_total HTTP requests answered, by route and status code.\n"
                  "# TYPE lathe_http_requests_total counter\n");
    for (int r = 0; r < LT_ROUTE_COUNT; r++)
        for (int c = 0; c < LT_SCHED_CODES; c++) {
            long long v = atomic_load(&s->m.requests[r][c]);
            if (v)
                tb_printf(&t, "lathe_http_requests_total{route=\"%s\",code=\"%d\"} %lld\n", route_names[r],
                          counted_codes[c], v);
        }
    tb_printf(&t, "# HELP lathe_http_request_seconds_total Time spent answering HTTP requests, by route.\n"
                  "# TYPE lathe_http_request_seconds_total counter\n");
    for (int r = 0; r < LT_ROUTE_COUNT; r++)
        tb_printf(&t, "lathe_http_request_seconds_total{route=\"%s\"} %.6f\n", route_names[r],
                  (double)atomic_load(&s->m.request_us[r]) / 1e6);
    counter(&t, "lathe_jobs_submitted_total", "Trainings accepted (201).", atomic_load(&s->m.submitted));
    counter(&t, "lathe_events_total", "Worker events folded into job records.", atomic_load(&s->m.events));
    counter(&t, "lathe_events_ignored_total", "Events ignored: stale attempts or after a final state.",
            atomic_load(&s->m.events_ignored));
    counter(&t, "lathe_events_malformed_total",
            "Events that could not be parsed (sent to the dead-letter topic).",
            atomic_load(&s->m.events_malformed));
    counter(&t, "lathe_events_unknown_job_total", "Events for a job the scheduler had no record of.",
            atomic_load(&s->m.events_unknown_job));
    counter(&t, "lathe_state_persist_failures_total",
            "Job records that could not be written to the state topic.", atomic_load(&s->m.persist_failures));
    counter(&t, "lathe_state_records_loaded_total", "Job records read back from the state topic at start.",
            atomic_load(&s->m.records_loaded));
    tb_printf(&t,
              "# HELP lathe_scheduler_ready 1 once the job state has been rebuilt.\n"
              "# TYPE lathe_scheduler_ready gauge\nlathe_scheduler_ready %d\n",
              atomic_load(&s->ready));
    tb_printf(&t,
              "# HELP lathe_scheduler_uptime_seconds Seconds since the scheduler started.\n"
              "# TYPE lathe_scheduler_uptime_seconds gauge\nlathe_scheduler_uptime_seconds %.3f\n",
              (double)(wall_ms() - s->started_ms) / 1000.0);
    char *reg = s->registry ? lt_registry_metrics_text(s->registry) : NULL;
    if (reg) tb_printf(&t, "%s", reg);
    free(reg);
    if (t.oom || (s->registry && !reg)) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}
