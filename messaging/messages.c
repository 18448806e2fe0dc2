/* messages.c - JSON encode/decode/validate for job, control and event messages (see messages.h). */
#define _GNU_SOURCE
#include "messages.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ---- */

/* Parses len bytes as one JSON object; what names the message kind in errors. */
static lt_status parse_object(const void *data, size_t len, const char *what, cJSON **out, lt_err *err) {
    *out = NULL;
    if (!data || len == 0) return lt_errorf(err, LT_ERR_FORMAT, "%s: empty message", what);
    cJSON *root = cJSON_ParseWithLength((const char *)data, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t pos = at && at >= (const char *)data && at <= (const char *)data + len
                         ? (size_t)(at - (const char *)data)
                         : 0;
        return lt_errorf(err, LT_ERR_FORMAT, "%s: not valid JSON (syntax error near byte %zu)", what, pos);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lt_errorf(err, LT_ERR_FORMAT, "%s: must be a JSON object", what);
    }
    *out = root;
    return LT_OK;
}

static lt_status check_schema(const cJSON *root, const char *what, lt_err *err) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "schema");
    if (!s)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"schema\" is missing (expected %d)", what,
                         LT_MSG_SCHEMA);
    if (!cJSON_IsNumber(s) || s->valuedouble != (double)LT_MSG_SCHEMA)
        return lt_errorf(err, LT_ERR_FORMAT,
                         "%s: field \"schema\" must be %d (this build understands schema %d only)", what,
                         LT_MSG_SCHEMA, LT_MSG_SCHEMA);
    return LT_OK;
}

/* Reads a string member. required: missing is an error; nonempty: "" is an error. *out is set to the
 * borrowed value, or NULL when absent. */
static lt_status get_str(const cJSON *root, const char *what, const char *name, int required, int nonempty,
                         const char **out, lt_err *err) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" is missing", what, name);
        return LT_OK;
    }
    if (!cJSON_IsString(v) || (nonempty && !v->valuestring[0]))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" must be a %sstring", what, name,
                         nonempty ? "non-empty " : "");
    *out = v->valuestring;
    return LT_OK;
}

/* Reads an integer member (a JSON number with no fraction, within +-2^53) that must be >= min. */
static lt_status get_int(const cJSON *root, const char *what, const char *name, int required, int64_t min,
                         int64_t *out, lt_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" is missing", what, name);
        return LT_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0 || d < (double)min)
        return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" must be an integer >= %lld", what, name,
                         (long long)min);
    *out = (int64_t)d;
    return LT_OK;
}

static lt_status get_num(const cJSON *root, const char *what, const char *name, int required, double *out,
                         lt_err *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" is missing", what, name);
        return LT_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" must be a number", what, name);
    *out = v->valuedouble;
    return LT_OK;
}

/* Reads an object member; *out is a deep copy (owned) or NULL when absent and optional. */
static lt_status get_obj(const cJSON *root, const char *what, const char *name, int required, cJSON **out,
                         lt_err *err) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" is missing", what, name);
        return LT_OK;
    }
    if (!cJSON_IsObject(v))
        return lt_errorf(err, LT_ERR_FORMAT, "%s: field \"%s\" must be a JSON object", what, name);
    if (!(*out = cJSON_Duplicate(v, 1))) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    return LT_OK;
}

lt_status lt_msg_check_id(const char *id, lt_err *err) {
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 128) return lt_errorf(err, LT_ERR_FORMAT, "job id must have 1 to 128 characters");
    if (!strcmp(id, ".") || !strcmp(id, ".."))
        return lt_errorf(err, LT_ERR_FORMAT, "job id \"%s\" is not allowed", id);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return lt_errorf(err, LT_ERR_FORMAT,
                             "job id \"%.128s\" may only hold letters, digits, '.', '_' and '-'", id);
    }
    return LT_OK;
}

/* Reads n digits at s into *v; 0 when they are not all digits. */
static int digits(const char *s, int n, int *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i])) return 0;
        *v = *v * 10 + (s[i] - '0');
    }
    return 1;
}

int lt_msg_is_rfc3339(const char *s) {
    int y, mo, d, h, mi, se, oh, om;
    if (!s || strlen(s) < 20) return 0;
    if (!digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' || !digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) || s[13] != ':' ||
        !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &se))
        return 0;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60) return 0;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p)) return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == 0) return 1;
    if ((*p == '+' || *p == '-') && digits(p + 1, 2, &oh) && p[3] == ':' && digits(p + 4, 2, &om) &&
        p[6] == 0)
        return oh <= 23 && om <= 59;
    return 0;
}

void lt_msg_now_rfc3339(char *buf, size_t size) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ts.tv_nsec / 1000000));
}

/* Serializes root compactly into *json and frees root. */
static lt_status finish_encode(cJSON *root, char **json, lt_err *err) {
    *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return *json ? LT_OK : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
}

/* ---- jobs ---- */

void lt_msg_job_free(lt_msg_job *job) {
    if (!job) return;
    free(job->type);
    free(job->id);
    free(job->name);
    free(job->algorithm);
    free(job->dataset);
    free(job->output);
    free(job->model);
    cJSON_Delete(job->hyperparameters);
    free(job->submitted_at);
    memset(job, 0, sizeof *job);
}

/* Validates the members of a parsed job object and copies them into out. */
static lt_status job_from_json(const cJSON *root, lt_msg_job *out, lt_err *err) {
    const char *what = "job", *type, *id, *name, *algorithm, *dataset, *output, *submitted, *model = NULL;
    lt_status st;
    memset(out, 0, sizeof *out);
    if ((st = check_schema(root, what, err)) != LT_OK) return st;
    if ((st = get_str(root, what, "type", 1, 1, &type, err)) != LT_OK) return st;
    /* "noop": the dispatch benchmark's jobs (a scheduler started with --allow-noop sends them) */
    int batch = !strcmp(type, "batch-inference");
    if (strcmp(type, "training") != 0 && strcmp(type, "noop") != 0 && !batch)
        return lt_errorf(err, LT_ERR_FORMAT,
                         "job: field \"type\" is \"%.64s\"; this worker runs \"training\" and "
                         "\"batch-inference\" jobs only",
                         type);
    if ((st = get_str(root, what, "id", 1, 1, &id, err)) != LT_OK) return st;
    if (lt_msg_check_id(id, NULL) != LT_OK)
        return lt_errorf(
            err, LT_ERR_FORMAT,
            "job: field \"id\" must be 1 to 128 of letters, digits, '.', '_', '-' (got \"%.64s\")", id);
    if ((st = get_str(root, what, "name", 0, 0, &name, err)) != LT_OK) return st;
    /* a batch inference's algorithm is its model's (config.json), so the message need not name it */
    if ((st = get_str(root, what, "algorithm", !batch, !batch, &algorithm, err)) != LT_OK) return st;
    if (batch && (st = get_str(root, what, "model", 1, 1, &model, err)) != LT_OK) return st;
    if ((st = get_str(root, what, "dataset", 1, 1, &dataset, err)) != LT_OK) return st;
    if ((st = get_str(root, what, "output", 1, 1, &output, err)) != LT_OK) return st;
    if ((st = get_str(root, what, "submitted_at", 0, 0, &submitted, err)) != LT_OK) return st;
    if (submitted && submitted[0] && !lt_msg_is_rfc3339(submitted))
        return lt_errorf(err, LT_ERR_FORMAT,
                         "job: field \"submitted_at\" must be an RFC 3339 time, got \"%.64s\"", submitted);
    cJSON *hp = NULL;
    if ((st = get_obj(root, what, "hyperparameters", 0, &hp, err)) != LT_OK) return st;
    if (!hp && !(hp = cJSON_CreateObject())) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    out->type = strdup(type);
    out->id = strdup(id);
    out->name = strdup(name ? name : "");
    out->algorithm = strdup(algorithm ? algorithm : "");
    out->dataset = strdup(dataset);
    out->output = strdup(output);
    if (model && !(out->model = strdup(model))) {
        cJSON_Delete(hp);
        lt_msg_job_free(out);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    out->submitted_at = strdup(submitted ? submitted : "");
    out->hyperparameters = hp;
    if (!out->type || !out->id || !out->name || !out->algorithm || !out->dataset || !out->output ||
        !out->submitted_at) {
        lt_msg_job_free(out);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    return LT_OK;
}

lt_status lt_msg_job_decode(const void *data, size_t len, lt_msg_job *out, lt_err *err) {
    memset(out, 0, sizeof *out);
    cJSON *root;
    lt_status st = parse_object(data, len, "job", &root, err);
    if (st == LT_OK) st = job_from_json(root, out, err);
    cJSON_Delete(root);
    return st;
}

lt_status lt_msg_job_encode(const lt_msg_job *job, char **json, lt_err *err) {
    *json = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    cJSON_AddNumberToObject(root, "schema", LT_MSG_SCHEMA);
    cJSON_AddStringToObject(root, "type", job->type ? job->type : "training");
    cJSON_AddStringToObject(root, "id", job->id ? job->id : "");
    cJSON_AddStringToObject(root, "name", job->name ? job->name : "");
    cJSON_AddStringToObject(root, "algorithm", job->algorithm ? job->algorithm : "");
    cJSON_AddStringToObject(root, "dataset", job->dataset ? job->dataset : "");
    cJSON_AddStringToObject(root, "output", job->output ? job->output : "");
    if (job->model) cJSON_AddStringToObject(root, "model", job->model);
    cJSON_AddItemToObject(root, "hyperparameters",
                          job->hyperparameters ? cJSON_Duplicate(job->hyperparameters, 1)
                                               : cJSON_CreateObject());
    char now[40];
    if (!job->submitted_at || !job->submitted_at[0]) lt_msg_now_rfc3339(now, sizeof now);
    cJSON_AddStringToObject(root, "submitted_at",
                            job->submitted_at && job->submitted_at[0] ? job->submitted_at : now);
    /* validate exactly as a consumer will */
    lt_msg_job check;
    lt_status st = job_from_json(root, &check, err);
    lt_msg_job_free(&check);
    if (st != LT_OK) {
        cJSON_Delete(root);
        return st == LT_ERR_NOMEM ? st : LT_ERR_ARG;
    }
    return finish_encode(root, json, err);
}

char *lt_msg_peek_id(const void *data, size_t len) {
    cJSON *root = NULL;
    if (parse_object(data, len, "job", &root, NULL) != LT_OK) return NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
    char *out = cJSON_IsString(id) && lt_msg_check_id(id->valuestring, NULL) == LT_OK
                    ? strdup(id->valuestring)
                    : NULL;
    cJSON_Delete(root);
    return out;
}

/* ---- control ---- */

lt_status lt_msg_control_decode(const void *data, size_t len, lt_msg_control *out, lt_err *err) {
    memset(out, 0, sizeof *out);
    cJSON *root;
    const char *what = "control", *type, *id;
    lt_status st = parse_object(data, len, what, &root, err);
    if (st == LT_OK) st = check_schema(root, what, err);
    if (st == LT_OK) st = get_str(root, what, "type", 1, 1, &type, err);
    if (st == LT_OK && strcmp(type, "cancel") != 0)
        st = lt_errorf(err, LT_ERR_FORMAT, "control: field \"type\" is \"%.64s\"; expected \"cancel\"", type);
    if (st == LT_OK) st = get_str(root, what, "id", 1, 1, &id, err);
    if (st == LT_OK && lt_msg_check_id(id, NULL) != LT_OK)
        st = lt_errorf(err, LT_ERR_FORMAT, "control: field \"id\" is not a valid job id");
    if (st == LT_OK) {
        out->type = LT_CONTROL_CANCEL;
        snprintf(out->id, sizeof out->id, "%s", id);
    }
    cJSON_Delete(root);
    return st;
}

char *lt_msg_control_encode(const lt_msg_control *c, lt_err *err) {
    if (c->type != LT_CONTROL_CANCEL || lt_msg_check_id(c->id, err) != LT_OK) {
        if (c->type != LT_CONTROL_CANCEL)
            lt_errorf(err, LT_ERR_ARG, "control: unknown type %d", (int)c->type);
        return NULL;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "schema", LT_MSG_SCHEMA);
    cJSON_AddStringToObject(root, "type", "cancel");
    cJSON_AddStringToObject(root, "id", c->id);
    char *json;
    return finish_encode(root, &json, err) == LT_OK ? json : NULL;
}

/* ---- events ---- */

static const char *const state_names[LT_JOB_STATE_COUNT] = {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED",
                                                            "CANCELLED"};
static const char *const event_names[LT_EV_COUNT] = {"state", "progress",   "log",
                                                     "eval",  "checkpoint", "result"};

const char *lt_job_state_name(lt_job_state s) {
    return s >= 0 && s < LT_JOB_STATE_COUNT ? state_names[s] : "UNKNOWN";
}

lt_job_state lt_job_state_parse(const char *name) {
    for (int i = 0; name && i < LT_JOB_STATE_COUNT; i++)
        if (!strcmp(name, state_names[i])) return (lt_job_state)i;
    return LT_JOB_STATE_COUNT;
}

int lt_job_state_is_final(lt_job_state s) {
    return s == LT_JOB_SUCCEEDED || s == LT_JOB_FAILED || s == LT_JOB_CANCELLED;
}

const char *lt_msg_event_type_name(lt_msg_event_type t) {
    return t >= 0 && t < LT_EV_COUNT ? event_names[t] : "unknown";
}

lt_msg_event lt_msg_event_init(lt_msg_event_type type, const char *job_id, const char *worker,
                               int64_t attempt) {
    lt_msg_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.job_id = (char *)job_id;
    ev.worker = (char *)worker;
    ev.attempt = attempt;
    ev.resumed_from_step = -1;
    ev.epoch = -1;
    return ev;
}

void lt_msg_event_free(lt_msg_event *ev) {
    if (!ev) return;
    free(ev->job_id);
    free(ev->worker);
    free(ev->time);
    free(ev->error);
    cJSON_Delete(ev->entry);
    free(ev->split);
    cJSON_Delete(ev->metrics);
    free(ev->uri);
    free(ev->output);
    memset(ev, 0, sizeof *ev);
}

/* Builds the JSON of an event without validating it. */
static cJSON *event_json(const lt_msg_event *ev) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    char now[40];
    if (!ev->time) lt_msg_now_rfc3339(now, sizeof now);
    cJSON_AddNumberToObject(root, "schema", LT_MSG_SCHEMA);
    cJSON_AddStringToObject(root, "job_id", ev->job_id ? ev->job_id : "");
    cJSON_AddStringToObject(root, "type", lt_msg_event_type_name(ev->type));
    cJSON_AddStringToObject(root, "worker", ev->worker ? ev->worker : "");
    cJSON_AddNumberToObject(root, "attempt", (double)ev->attempt);
    cJSON_AddStringToObject(root, "time", ev->time ? ev->time : now);
    switch (ev->type) {
    case LT_EV_STATE:
        cJSON_AddStringToObject(root, "state", lt_job_state_name(ev->state));
        if (ev->error) cJSON_AddStringToObject(root, "error", ev->error);
        if (ev->resumed_from_step >= 0)
            cJSON_AddNumberToObject(root, "resumed_from_step", (double)ev->resumed_from_step);
        break;
    case LT_EV_PROGRESS:
        cJSON_AddNumberToObject(root, "step", (double)ev->step);
        cJSON_AddNumberToObject(root, "total_steps", (double)ev->total_steps);
        cJSON_AddNumberToObject(root, "epoch", ev->epoch);
        break;
    case LT_EV_LOG:
        cJSON_AddItemToObject(root, "entry", ev->entry ? cJSON_Duplicate(ev->entry, 1) : cJSON_CreateNull());
        break;
    case LT_EV_EVAL:
        cJSON_AddStringToObject(root, "split", ev->split ? ev->split : "");
        cJSON_AddItemToObject(root, "metrics",
                              ev->metrics ? cJSON_Duplicate(ev->metrics, 1) : cJSON_CreateNull());
        cJSON_AddNumberToObject(root, "step", (double)ev->step);
        if (ev->epoch >= 0) cJSON_AddNumberToObject(root, "epoch", ev->epoch);
        break;
    case LT_EV_CHECKPOINT:
        cJSON_AddNumberToObject(root, "step", (double)ev->step);
        cJSON_AddStringToObject(root, "uri", ev->uri ? ev->uri : "");
        break;
    case LT_EV_RESULT:
        cJSON_AddItemToObject(root, "metrics",
                              ev->metrics ? cJSON_Duplicate(ev->metrics, 1) : cJSON_CreateNull());
        cJSON_AddStringToObject(root, "output", ev->output ? ev->output : "");
        break;
    default:
        break;
    }
    return root;
}

/* Validates a parsed event object and copies it into out (owned). */
static lt_status event_from_json(const cJSON *root, lt_msg_event *out, lt_err *err) {
    const char *what = "event", *s;
    lt_status st;
    *out = lt_msg_event_init(LT_EV_STATE, NULL, NULL, 0);
    if ((st = check_schema(root, what, err)) != LT_OK) return st;
    if ((st = get_str(root, what, "type", 1, 1, &s, err)) != LT_OK) return st;
    int type = -1;
    for (int i = 0; i < LT_EV_COUNT; i++)
        if (!strcmp(s, event_names[i])) type = i;
    if (type < 0)
        return lt_errorf(
            err, LT_ERR_FORMAT,
            "event: field \"type\" is \"%.64s\"; expected state, progress, log, eval, checkpoint or result",
            s);
    out->type = (lt_msg_event_type)type;
    if ((st = get_str(root, what, "job_id", 1, 1, &s, err)) != LT_OK) return st;
    if (lt_msg_check_id(s, NULL) != LT_OK)
        return lt_errorf(err, LT_ERR_FORMAT, "event: field \"job_id\" is not a valid job id");
    out->job_id = strdup(s);
    if ((st = get_str(root, what, "worker", 1, 0, &s, err)) != LT_OK) goto fail;
    out->worker = strdup(s);
    if ((st = get_int(root, what, "attempt", 1, 0, &out->attempt, err)) != LT_OK) goto fail;
    if ((st = get_str(root, what, "time", 1, 1, &s, err)) != LT_OK) goto fail;
    if (!lt_msg_is_rfc3339(s)) {
        st =
            lt_errorf(err, LT_ERR_FORMAT, "event: field \"time\" must be an RFC 3339 time, got \"%.64s\"", s);
        goto fail;
    }
    out->time = strdup(s);
    switch (out->type) {
    case LT_EV_STATE:
        if ((st = get_str(root, what, "state", 1, 1, &s, err)) != LT_OK) goto fail;
        out->state = lt_job_state_parse(s);
        if (out->state == LT_JOB_STATE_COUNT) {
            st = lt_errorf(err, LT_ERR_FORMAT,
                           "event: field \"state\" is \"%.64s\"; expected QUEUED, RUNNING, SUCCEEDED, FAILED "
                           "or CANCELLED",
                           s);
            goto fail;
        }
        if ((st = get_str(root, what, "error", 0, 0, &s, err)) != LT_OK) goto fail;
        if (s) out->error = strdup(s);
        if ((st = get_int(root, what, "resumed_from_step", 0, 0, &out->resumed_from_step, err)) != LT_OK)
            goto fail;
        break;
    case LT_EV_PROGRESS:
        if ((st = get_int(root, what, "step", 1, 0, &out->step, err)) != LT_OK) goto fail;
        if ((st = get_int(root, what, "total_steps", 1, 0, &out->total_steps, err)) != LT_OK) goto fail;
        if ((st = get_num(root, what, "epoch", 1, &out->epoch, err)) != LT_OK) goto fail;
        break;
    case LT_EV_LOG:
        if ((st = get_obj(root, what, "entry", 1, &out->entry, err)) != LT_OK) goto fail;
        break;
    case LT_EV_EVAL:
        if ((st = get_str(root, what, "split", 1, 1, &s, err)) != LT_OK) goto fail;
        out->split = strdup(s);
        if ((st = get_obj(root, what, "metrics", 1, &out->metrics, err)) != LT_OK) goto fail;
        if ((st = get_int(root, what, "step", 0, 0, &out->step, err)) != LT_OK) goto fail;
        if ((st = get_num(root, what, "epoch", 0, &out->epoch, err)) != LT_OK) goto fail;
        break;
    case LT_EV_CHECKPOINT:
        if ((st = get_int(root, what, "step", 1, 0, &out->step, err)) != LT_OK) goto fail;
        if ((st = get_str(root, what, "uri", 1, 1, &s, err)) != LT_OK) goto fail;
        out->uri = strdup(s);
        break;
    case LT_EV_RESULT:
        if ((st = get_obj(root, what, "metrics", 1, &out->metrics, err)) != LT_OK) goto fail;
        if ((st = get_str(root, what, "output", 1, 1, &s, err)) != LT_OK) goto fail;
        out->output = strdup(s);
        break;
    default:
        break;
    }
    /* strdup failures, checked once */
    if (!out->job_id || !out->worker || !out->time || (out->type == LT_EV_EVAL && !out->split) ||
        (out->type == LT_EV_CHECKPOINT && !out->uri) || (out->type == LT_EV_RESULT && !out->output) ||
        (out->type == LT_EV_STATE && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, "error")) &&
         !out->error)) {
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return LT_OK;
fail:
    lt_msg_event_free(out);
    return st;
}

lt_status lt_msg_event_encode(const lt_msg_event *ev, char **json, lt_err *err) {
    *json = NULL;
    cJSON *root = event_json(ev);
    if (!root) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_msg_event check;
    lt_status st = event_from_json(root, &check, err);
    lt_msg_event_free(&check);
    if (st != LT_OK) {
        cJSON_Delete(root);
        return st == LT_ERR_NOMEM ? st : LT_ERR_ARG;
    }
    return finish_encode(root, json, err);
}

lt_status lt_msg_event_decode(const void *data, size_t len, lt_msg_event *out, lt_err *err) {
    cJSON *root;
    *out = lt_msg_event_init(LT_EV_STATE, NULL, NULL, 0);
    lt_status st = parse_object(data, len, "event", &root, err);
    if (st == LT_OK) st = event_from_json(root, out, err);
    cJSON_Delete(root);
    return st;
}
