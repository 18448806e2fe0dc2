/* submit.c - POST /v1/trainings bodies: field checks, the data set's layout, the record and the message. */
#include "submit.h"

#include "tasks/hparams.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define NAME_MAX_LEN 256
#define URI_MAX_LEN 2048

void lt_submit_new_id(char buf[LT_JOB_ID_MAX]) {
    unsigned char r[10];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* no entropy source: time and address bits still make a collision unlikely on one scheduler */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)buf;
        for (size_t i = 0; i < sizeof r; i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
            r[i] = (unsigned char)(x >> 56);
    }
    static const char hex[] = "0123456789abcdef";
    char *p = buf + snprintf(buf, LT_JOB_ID_MAX, "tr-");
    for (size_t i = 0; i < sizeof r; i++) {
        *p++ = hex[r[i] >> 4];
        *p++ = hex[r[i] & 15];
    }
    *p = 0;
}

static int is_absolute_uri(const char *uri) {
    return uri[0] == '/' || strstr(uri, "://") != NULL;
}

char *lt_submit_resolve_uri(const char *root, const char *uri) {
    if (is_absolute_uri(uri)) return strdup(uri);
    while (uri[0] == '.' && uri[1] == '/')
        uri += 2;
    return lt_uri_join(root, uri);
}

/* ---- the data set's layout ---- */

typedef struct {
    char **labels; /* (n) label folder names seen in this split, in listing (key) order */
    size_t n, cap;
    char bad[512]; /* first layout error */
    int st;        /* LT_OK, or LT_ERR_ARG / LT_ERR_NOMEM after the first error */
    size_t files;  /* non-hidden files in label folders */
} layout_scan;

static int has_label(const layout_scan *ls, const char *label, size_t len) {
    for (size_t i = ls->n; i-- > 0;) /* keys come sorted, so a repeat is usually the last one */
        if (strlen(ls->labels[i]) == len && !memcmp(ls->labels[i], label, len)) return 1;
    return 0;
}

static int scan_obj(void *ctx, const lt_storage_obj *obj) {
    layout_scan *ls = ctx;
    const char *key = obj->key;
    const char *rest = strchr(key, '/'); /* after "train" */
    if (!rest) return 0;
    rest++;
    /* hidden entries anywhere below the split are ignored, as the local scan does */
    for (const char *p = rest; *p; p++)
        if ((p == rest || p[-1] == '/') && *p == '.') return 0;
    const char *slash = strchr(rest, '/');
    if (!slash) {
        snprintf(ls->bad, sizeof ls->bad, "%s: a file where label folders belong", key);
        ls->st = LT_ERR_ARG;
        return 1;
    }
    if (strchr(slash + 1, '/')) {
        snprintf(ls->bad, sizeof ls->bad, "%s: a folder inside a label folder", key);
        ls->st = LT_ERR_ARG;
        return 1;
    }
    size_t len = (size_t)(slash - rest);
    ls->files++;
    if (has_label(ls, rest, len)) return 0;
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 16;
        char **l = realloc(ls->labels, cap * sizeof *l);
        if (!l) {
            ls->st = LT_ERR_NOMEM;
            return 1;
        }
        ls->labels = l;
        ls->cap = cap;
    }
    if (!(ls->labels[ls->n] = strndup(rest, len))) {
        ls->st = LT_ERR_NOMEM;
        return 1;
    }
    ls->n++;
    return 0;
}

static void scan_free(layout_scan *ls) {
    for (size_t i = 0; i < ls->n; i++)
        free(ls->labels[i]);
    free(ls->labels);
}

static lt_status scan_split(lt_storage *s, const char *split, layout_scan *ls, lt_err *err) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s/", split);
    lt_err serr = {{0}};
    lt_status st = lt_storage_list(s, prefix, scan_obj, ls, &serr);
    if (st != LT_OK) {
        if (st == LT_ERR_IO) return lt_errorf(err, LT_ERR_IO, "dataset: storage unavailable: %s", serr.msg);
        if (st == LT_ERR_NOMEM) return lt_errorf(err, st, "out of memory");
        return lt_errorf(err, LT_ERR_ARG, "dataset: cannot list %s: %s", lt_storage_uri(s), serr.msg);
    }
    if (ls->st == LT_ERR_NOMEM) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (ls->st != LT_OK) return lt_errorf(err, LT_ERR_ARG, "dataset: %s", ls->bad);
    if (ls->files == 0)
        return lt_errorf(err, LT_ERR_ARG,
                         "dataset: %s has no %s/<label>/<image> files (image-classification needs train/ and "
                         "validation/ folders of label folders)",
                         lt_storage_uri(s), split);
    return LT_OK;
}

lt_status lt_submit_check_cls_dataset(lt_storage *s, lt_err *err) {
    layout_scan train = {0}, val = {0};
    lt_status st = scan_split(s, "train", &train, err);
    if (st == LT_OK) st = scan_split(s, "validation", &val, err);
    for (size_t i = 0; st == LT_OK && i < val.n; i++)
        if (!has_label(&train, val.labels[i], strlen(val.labels[i])))
            st = lt_errorf(err, LT_ERR_ARG, "dataset: validation/%s/: label '%s' has no train/%s/ folder",
                           val.labels[i], val.labels[i], val.labels[i]);
    scan_free(&train);
    scan_free(&val);
    return st;
}

/* ---- the body ---- */

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* A string member: absent -> *out NULL and LT_OK unless required. */
static lt_status get_string(const cJSON *body, const char *field, int required, size_t max_len,
                            const char **out, lt_err *err) {
    *out = NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, field);
    if (!v || cJSON_IsNull(v)) {
        if (required) return lt_errorf(err, LT_ERR_ARG, "%s: required", field);
        return LT_OK;
    }
    if (!cJSON_IsString(v)) return lt_errorf(err, LT_ERR_ARG, "%s: must be a string", field);
    size_t len = strlen(v->valuestring);
    if (required && len == 0) return lt_errorf(err, LT_ERR_ARG, "%s: must not be empty", field);
    if (len > max_len) return lt_errorf(err, LT_ERR_ARG, "%s: longer than %zu characters", field, max_len);
    for (const char *p = v->valuestring; *p; p++)
        if ((unsigned char)*p < 0x20)
            return lt_errorf(err, LT_ERR_ARG, "%s: contains a control character", field);
    *out = v->valuestring;
    return LT_OK;
}

static lt_status check_members(const cJSON *body, lt_err *err) {
    static const char *const known[] = {"algorithm", "dataset", "output", "hyperparameters", "name"};
    for (const cJSON *m = body->child; m; m = m->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            ok |= !strcmp(m->string, known[i]);
        if (!ok)
            return lt_errorf(
                err, LT_ERR_ARG,
                "%s: unknown field (valid fields are algorithm, dataset, output, hyperparameters, name)",
                m->string);
    }
    return LT_OK;
}

/* Lists the data set (opened on its URI) and checks its layout for the algorithm. */
static lt_status check_dataset(const char *uri, lt_algorithm algo, const lt_submit_opts *o, lt_err *err) {
    lt_err serr = {{0}};
    lt_storage *s = lt_storage_open(uri, o->storage_opts, &serr);
    if (!s) return lt_errorf(err, LT_ERR_ARG, "dataset: %s", serr.msg);
    lt_status st = LT_OK;
    if (algo == LT_ALGO_IMAGE_CLASSIFICATION) st = lt_submit_check_cls_dataset(s, err);
    lt_storage_close(s);
    return st;
}

static lt_status check_output_uri(const char *uri, const lt_submit_opts *o, lt_err *err) {
    lt_err serr = {{0}};
    lt_storage *s = lt_storage_open(uri, o->storage_opts, &serr); /* parses only, makes no request */
    if (!s) return lt_errorf(err, LT_ERR_ARG, "output: %s", serr.msg);
    lt_storage_close(s);
    return LT_OK;
}

lt_status lt_submit_prepare(const char *text, size_t len, const char *id, const lt_submit_opts *o,
                            lt_job **job_out, cJSON **msg_out, lt_err *err) {
    *job_out = NULL;
    *msg_out = NULL;
    lt_job *job = NULL;
    cJSON *msg = NULL, *canon = NULL, *hp_json = NULL;
    char *dataset = NULL, *output = NULL;
    lt_status st = LT_OK;

    cJSON *body = cJSON_ParseWithLength(text, len);
    if (!body) return lt_errorf(err, LT_ERR_ARG, "body: not valid JSON");
    if (!cJSON_IsObject(body)) {
        st = lt_errorf(err, LT_ERR_ARG, "body: must be a JSON object");
        goto done;
    }
    const char *algo_s, *dataset_s, *output_s, *name_s;
    if ((st = check_members(body, err)) || (st = get_string(body, "algorithm", 1, 64, &algo_s, err)) ||
        (st = get_string(body, "dataset", 1, URI_MAX_LEN, &dataset_s, err)) ||
        (st = get_string(body, "output", 0, URI_MAX_LEN, &output_s, err)) ||
        (st = get_string(body, "name", 0, NAME_MAX_LEN, &name_s, err)))
        goto done;
    const cJSON *hp_in = cJSON_GetObjectItemCaseSensitive(body, "hyperparameters");
    if (hp_in && !cJSON_IsNull(hp_in) && !cJSON_IsObject(hp_in)) {
        st = lt_errorf(err, LT_ERR_ARG, "hyperparameters: must be an object of name: value");
        goto done;
    }

    int noop = o->allow_noop && !strcmp(algo_s, "noop");
    lt_algorithm algo = LT_ALGO_IMAGE_CLASSIFICATION;
    if (!noop) {
        lt_err aerr = {{0}};
        if (lt_algorithm_parse(algo_s, &algo, &aerr) != LT_OK) {
            st = lt_errorf(err, LT_ERR_ARG, "algorithm: %s", aerr.msg);
            goto done;
        }
        if (algo != LT_ALGO_IMAGE_CLASSIFICATION) {
            st = lt_errorf(err, LT_ERR_ARG,
                           "algorithm: '%s' cannot be trained by this version yet (available: %s)",
                           lt_algorithm_name(algo), lt_algorithm_name(LT_ALGO_IMAGE_CLASSIFICATION));
            goto done;
        }
        lt_hparams hp;
        lt_hparams_defaults(&hp, algo);
        lt_err herr = {{0}};
        if (lt_hparams_set_json(&hp, cJSON_IsObject(hp_in) ? hp_in : NULL, &herr) != LT_OK) {
            st = lt_errorf(err, LT_ERR_ARG, "hyperparameters: %s", herr.msg);
            goto done;
        }
        hp_json = lt_hparams_to_json(&hp);
    } else {
        hp_json = cJSON_CreateObject(); /* the benchmark's jobs have none */
    }
    if (!hp_json) goto oom;

    char rel_out[LT_JOB_ID_MAX + 16];
    snprintf(rel_out, sizeof rel_out, "trainings/%s", id);
    if (!(dataset = lt_submit_resolve_uri(o->storage_root, dataset_s))) goto oom;
    if (!(output = output_s && output_s[0] ? lt_submit_resolve_uri(o->storage_root, output_s)
                                           : lt_uri_join(o->storage_root, rel_out)))
        goto oom;
    if ((st = check_output_uri(output, o, err))) goto done;
    if (!noop && o->check_dataset && (st = check_dataset(dataset, algo, o, err))) goto done;

    const char *algo_name = noop ? "noop" : lt_algorithm_name(algo);
    char now[LT_JOB_TIME_MAX];
    lt_job_now(now);
    if (!(job = lt_job_create(id))) goto oom;
    if (!lt_job_set_str(&job->name, name_s && name_s[0] ? name_s : NULL) ||
        !lt_job_set_str(&job->algorithm, algo_name) || !lt_job_set_str(&job->dataset, dataset) ||
        !lt_job_set_str(&job->output, output) || !(job->hyperparameters = cJSON_Duplicate(hp_json, 1)))
        goto oom;
    snprintf(job->created_at, sizeof job->created_at, "%s", now);
    snprintf(job->updated_at, sizeof job->updated_at, "%s", now);

    /* the request as the client meant it, so a reused Idempotency-Key with another body is caught */
    if (!(canon = cJSON_CreateObject()) || !cJSON_AddStringToObject(canon, "algorithm", algo_name) ||
        !cJSON_AddStringToObject(canon, "dataset", dataset_s) ||
        !cJSON_AddStringToObject(canon, "output", output_s ? output_s : "") ||
        !cJSON_AddStringToObject(canon, "name", name_s ? name_s : ""))
        goto oom;
    cJSON_AddItemToObject(canon, "hyperparameters", hp_json);
    hp_json = NULL;
    char *canon_text = cJSON_PrintUnformatted(canon);
    if (!canon_text) goto oom;
    snprintf(job->request_hash, sizeof job->request_hash, "%016llx", (unsigned long long)fnv1a(canon_text));
    free(canon_text);

    if (!(msg = cJSON_CreateObject()) || !cJSON_AddNumberToObject(msg, "schema", 1) ||
        !cJSON_AddStringToObject(msg, "type", noop ? "noop" : "training") ||
        !cJSON_AddStringToObject(msg, "id", id) ||
        !cJSON_AddStringToObject(msg, "name", job->name ? job->name : "") ||
        !cJSON_AddStringToObject(msg, "algorithm", algo_name) ||
        !cJSON_AddStringToObject(msg, "dataset", dataset) ||
        !cJSON_AddStringToObject(msg, "output", output) || !cJSON_AddStringToObject(msg, "submitted_at", now))
        goto oom;
    cJSON *hp_copy = cJSON_Duplicate(job->hyperparameters, 1);
    if (!hp_copy) goto oom;
    cJSON_AddItemToObject(msg, "hyperparameters", hp_copy);
    *job_out = job;
    *msg_out = msg;
    job = NULL;
    msg = NULL;
    goto done;
oom:
    st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
done:
    cJSON_Delete(body);
    cJSON_Delete(canon);
    cJSON_Delete(hp_json);
    cJSON_Delete(msg);
    lt_job_destroy(job);
    free(dataset);
    free(output);
    return st;
}

/* ---- batch inferences ---- */

/* Whether a listing of the data set reaches one image (hidden entries skipped, as the worker does). */
typedef struct {
    int found;
} image_scan;

static int scan_image(void *ctx, const lt_storage_obj *obj) {
    image_scan *is = ctx;
    const char *key = obj->key, *base = strrchr(key, '/');
    base = base ? base + 1 : key;
    for (const char *p = key; *p; p++)
        if ((p == key || p[-1] == '/') && *p == '.') return 0;
    const char *dot = strrchr(base, '.');
    if (dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"))) {
        is->found = 1;
        return 1; /* one is enough */
    }
    return 0;
}

/* The model directory has a config.json and the data set at least one image. LT_ERR_ARG (400) or LT_ERR_IO
 * (503) naming the field. */
static lt_status check_batch_inputs(const char *model, const char *dataset, const lt_submit_opts *o,
                                    lt_err *err) {
    lt_err serr = {{0}};
    lt_storage *s = lt_storage_open(model, o->storage_opts, &serr);
    if (!s) return lt_errorf(err, LT_ERR_ARG, "model: %s", serr.msg);
    int exists = 0;
    lt_status st = lt_storage_exists(s, "config.json", &exists, &serr);
    lt_storage_close(s);
    if (st == LT_ERR_IO) return lt_errorf(err, LT_ERR_IO, "model: storage unavailable: %s", serr.msg);
    if (st != LT_OK || !exists)
        return lt_errorf(err, LT_ERR_ARG,
                         "model: %s has no config.json (expected a model directory, such as "
                         "a training's output)",
                         model);
    if (!(s = lt_storage_open(dataset, o->storage_opts, &serr)))
        return lt_errorf(err, LT_ERR_ARG, "dataset: %s", serr.msg);
    image_scan is = {0};
    st = lt_storage_list(s, "", scan_image, &is, &serr);
    lt_storage_close(s);
    if (st == LT_ERR_IO) return lt_errorf(err, LT_ERR_IO, "dataset: storage unavailable: %s", serr.msg);
    if (st == LT_ERR_NOMEM) return lt_errorf(err, st, "out of memory");
    if (st != LT_OK || !is.found)
        return lt_errorf(err, LT_ERR_ARG, "dataset: no PNG or JPEG images under %s%s%s", dataset,
                         st != LT_OK ? ": " : "", st != LT_OK ? serr.msg : "");
    return LT_OK;
}

static lt_status check_batch_members(const cJSON *body, lt_err *err) {
    static const char *const known[] = {"model", "dataset", "output", "name"};
    for (const cJSON *m = body->child; m; m = m->next) {
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            ok |= !strcmp(m->string, known[i]);
        if (!ok)
            return lt_errorf(err, LT_ERR_ARG,
                             "%s: unknown field (valid fields are model, dataset, output, name)", m->string);
    }
    return LT_OK;
}

lt_status lt_submit_prepare_batch(const char *text, size_t len, const char *id, const lt_submit_opts *o,
                                  lt_job **job_out, cJSON **msg_out, int *http, lt_err *err) {
    *job_out = NULL;
    *msg_out = NULL;
    *http = 400;
    lt_job *job = NULL;
    cJSON *msg = NULL, *canon = NULL;
    char *dataset = NULL, *output = NULL, *model_uri = NULL, *canon_text = NULL;
    lt_status st = LT_OK;
    cJSON *body = cJSON_ParseWithLength(text, len);
    if (!body) return lt_errorf(err, LT_ERR_ARG, "body: not valid JSON");
    const char *model_s, *dataset_s, *output_s, *name_s;
    if (!cJSON_IsObject(body)) {
        st = lt_errorf(err, LT_ERR_ARG, "body: must be a JSON object");
        goto done;
    }
    if ((st = check_batch_members(body, err)) ||
        (st = get_string(body, "model", 1, URI_MAX_LEN, &model_s, err)) ||
        (st = get_string(body, "dataset", 1, URI_MAX_LEN, &dataset_s, err)) ||
        (st = get_string(body, "output", 0, URI_MAX_LEN, &output_s, err)) ||
        (st = get_string(body, "name", 0, NAME_MAX_LEN, &name_s, err)))
        goto done;

    /* a model is a storage URI when it looks like a path; a bare word is a registry name */
    if (strchr(model_s, '/')) {
        if (!(model_uri = lt_submit_resolve_uri(o->storage_root, model_s))) goto oom;
    } else if (!o->resolve_model) {
        st = lt_errorf(
            err, LT_ERR_ARG,
            "model: '%.200s' is not a storage URI (s3://..., file://..., a path) and this scheduler "
            "has no model registry to look names up in",
            model_s);
        goto done;
    } else {
        char uri[URI_MAX_LEN + 1] = "";
        lt_err rerr = {{0}};
        int found = o->resolve_model(o->resolve_model_ctx, model_s, uri, sizeof uri, &rerr);
        if (found < 0) {
            *http = 503;
            st = lt_errorf(err, LT_ERR_IO, "model: cannot look up '%.200s': %s", model_s, rerr.msg);
            goto done;
        }
        if (found == 0 || !uri[0]) {
            *http = 404;
            st = lt_errorf(err, LT_ERR_ARG, "model: no model named '%.200s'", model_s);
            goto done;
        }
        if (!(model_uri = lt_submit_resolve_uri(o->storage_root, uri))) goto oom;
    }
    char rel_out[LT_JOB_ID_MAX + 24];
    snprintf(rel_out, sizeof rel_out, "batch-inferences/%s", id);
    if (!(dataset = lt_submit_resolve_uri(o->storage_root, dataset_s))) goto oom;
    if (!(output = output_s && output_s[0] ? lt_submit_resolve_uri(o->storage_root, output_s)
                                           : lt_uri_join(o->storage_root, rel_out)))
        goto oom;
    if ((st = check_output_uri(output, o, err))) goto done;
    if (o->check_dataset && (st = check_batch_inputs(model_uri, dataset, o, err))) {
        if (st == LT_ERR_IO) *http = 503;
        goto done;
    }

    char now[LT_JOB_TIME_MAX];
    lt_job_now(now);
    if (!(job = lt_job_create(id))) goto oom;
    if (!lt_job_set_str(&job->type, LT_JOB_TYPE_BATCH) || !lt_job_set_str(&job->model, model_s) ||
        !lt_job_set_str(&job->model_uri, model_uri) ||
        !lt_job_set_str(&job->name, name_s && name_s[0] ? name_s : NULL) ||
        !lt_job_set_str(&job->dataset, dataset) || !lt_job_set_str(&job->output, output))
        goto oom;
    snprintf(job->created_at, sizeof job->created_at, "%s", now);
    snprintf(job->updated_at, sizeof job->updated_at, "%s", now);
    if (!(canon = cJSON_CreateObject()) || !cJSON_AddStringToObject(canon, "type", LT_JOB_TYPE_BATCH) ||
        !cJSON_AddStringToObject(canon, "model", model_s) ||
        !cJSON_AddStringToObject(canon, "dataset", dataset_s) ||
        !cJSON_AddStringToObject(canon, "output", output_s ? output_s : "") ||
        !cJSON_AddStringToObject(canon, "name", name_s ? name_s : "") ||
        !(canon_text = cJSON_PrintUnformatted(canon)))
        goto oom;
    snprintf(job->request_hash, sizeof job->request_hash, "%016llx", (unsigned long long)fnv1a(canon_text));
    if (!(msg = cJSON_CreateObject()) || !cJSON_AddNumberToObject(msg, "schema", 1) ||
        !cJSON_AddStringToObject(msg, "type", LT_JOB_TYPE_BATCH) || !cJSON_AddStringToObject(msg, "id", id) ||
        !cJSON_AddStringToObject(msg, "name", job->name ? job->name : "") ||
        !cJSON_AddStringToObject(msg, "model", model_uri) ||
        !cJSON_AddStringToObject(msg, "dataset", dataset) ||
        !cJSON_AddStringToObject(msg, "output", output) || !cJSON_AddStringToObject(msg, "submitted_at", now))
        goto oom;
    *job_out = job;
    *msg_out = msg;
    job = NULL;
    msg = NULL;
    goto done;
oom:
    *http = 500;
    st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
done:
    cJSON_Delete(body);
    cJSON_Delete(canon);
    cJSON_Delete(msg);
    lt_job_destroy(job);
    free(canon_text);
    free(dataset);
    free(output);
    free(model_uri);
    return st;
}
