/* The scheduler's API handlers over a fake Kafka bus: submissions (validation naming the field, the data
 * set's layout in local storage, Idempotency-Key), get/list/cancel, auth, health, metrics, event folding and
 * the rebuild from persisted records. The real transports are covered by test_scheduler_service and
 * tests/e2e. */
#include "check.h"
#include "scheduler/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a fake bus: remembers what was published ---- */

#define MAX_MSGS 64

typedef struct {
    char *state_ids[MAX_MSGS], *state_vals[MAX_MSGS]; /* persisted records in order (val NULL = tombstone) */
    int n_state;
    char *jobs[MAX_MSGS]; /* published job messages */
    int n_jobs;
    char *cancels[MAX_MSGS];
    int n_cancels;
    int fail_publish; /* make publish_job fail */
    int waits;        /* tickets waited */
} fake_bus;

static lt_status fb_persist(void *ctx, const char *id, const char *json, void **ticket, lt_err *err) {
    fake_bus *b = ctx;
    if (b->n_state < MAX_MSGS) {
        b->state_ids[b->n_state] = strdup(id);
        b->state_vals[b->n_state] = json ? strdup(json) : NULL;
        b->n_state++;
    }
    if (ticket) *ticket = b;
    return LT_OK;
}

static lt_status fb_wait(void *ctx, void *ticket, lt_err *err) {
    fake_bus *b = ctx;
    b->waits++;
    return LT_OK;
}

static lt_status fb_publish_job(void *ctx, const char *id, const char *json, void **ticket, lt_err *err) {
    fake_bus *b = ctx;
    if (b->fail_publish) return lt_errorf(err, LT_ERR_IO, "all brokers down");
    if (b->n_jobs < MAX_MSGS) b->jobs[b->n_jobs++] = strdup(json);
    if (ticket) *ticket = b;
    return LT_OK;
}

static lt_status fb_publish_cancel(void *ctx, const char *id, lt_err *err) {
    fake_bus *b = ctx;
    if (b->n_cancels < MAX_MSGS) b->cancels[b->n_cancels++] = strdup(id);
    return LT_OK;
}

static void fb_free(fake_bus *b) {
    for (int i = 0; i < b->n_state; i++)
        free(b->state_ids[i]), free(b->state_vals[i]);
    for (int i = 0; i < b->n_jobs; i++)
        free(b->jobs[i]);
    for (int i = 0; i < b->n_cancels; i++)
        free(b->cancels[i]);
    memset(b, 0, sizeof *b);
}

/* ---- fixtures ---- */

static char root[256]; /* temporary storage root */

static void touch(const char *rel) {
    char path[512], cmd[1200];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\" && printf x > '%s'", path, path);
    CHECK(system(cmd) == 0);
}

static void make_datasets(void) {
    snprintf(root, sizeof root, "/tmp/lathe_test_sched_api_%d", (int)getpid());
    touch("ds/train/cat/1.png");
    touch("ds/train/cat/2.png");
    touch("ds/train/dog/1.png");
    touch("ds/train/.DS_Store");
    touch("ds/validation/cat/1.png");
    touch("ds/validation/dog/1.png");
    touch("noval/train/cat/1.png");
    touch("stray/train/cat/1.png");
    touch("stray/train/readme.txt");
    touch("stray/validation/cat/1.png");
    touch("deep/train/cat/sub/1.png");
    touch("deep/validation/cat/1.png");
    touch("unknown/train/cat/1.png");
    touch("unknown/validation/bird/1.png");
}

static void remove_datasets(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

typedef struct {
    int status;
    cJSON *json; /* parsed body (NULL for text) */
    char *text;
} reply;

static reply call(lt_sched *s, const char *method, const char *path, const char *body, const char *auth,
                  const char *key, const char *state) {
    lt_sched_request rq = {.method = method,
                           .path = path,
                           .state = state,
                           .authorization = auth,
                           .idempotency_key = key,
                           .body = body ? body : "",
                           .body_len = body ? strlen(body) : 0};
    lt_sched_response rs;
    lt_sched_handle(s, &rq, &rs);
    reply r = {.status = rs.status, .text = rs.body};
    if (rs.content_type && strstr(rs.content_type, "json")) r.json = cJSON_Parse(rs.body);
    return r;
}

static void reply_free(reply *r) {
    cJSON_Delete(r->json);
    free(r->text);
}

static const char *str_field(const reply *r, const char *name) {
    const cJSON *v = cJSON_GetObjectItem(r->json, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void init(lt_sched *s, fake_bus *b, const char *token) {
    lt_sched_bus bus = {.ctx = b,
                        .persist = fb_persist,
                        .wait = fb_wait,
                        .publish_job = fb_publish_job,
                        .publish_cancel = fb_publish_cancel};
    lt_submit_opts sub = {.storage_root = root, .check_dataset = 1};
    lt_err err = {{0}};
    CHECK(lt_sched_init(s, &bus, &sub, token, &err) == LT_OK);
    atomic_store(&s->ready, 1);
}

/* ---- tests ---- */

static void expect_400(lt_sched *s, const char *body, const char *needle) {
    reply r = call(s, "POST", "/v1/trainings", body, NULL, NULL, NULL);
    CHECK_MSG(r.status == 400, "%s -> %d %s", body, r.status, r.text);
    CHECK_MSG(strstr(str_field(&r, "error"), needle) != NULL, "%s: error '%s' lacks '%s'", body,
              str_field(&r, "error"), needle);
    reply_free(&r);
}

static void test_submit_and_get(void) {
    lt_sched s;
    fake_bus b = {0};
    init(&s, &b, NULL);
    reply r = call(&s, "POST", "/v1/trainings",
                   "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"name\":\"pets\","
                   "\"hyperparameters\":{\"input_size\":16,\"num_train_epochs\":\"2\"}}",
                   NULL, NULL, NULL);
    CHECK_MSG(r.status == 201, "submit -> %d %s", r.status, r.text);
    char id[LT_JOB_ID_MAX];
    snprintf(id, sizeof id, "%s", str_field(&r, "id"));
    CHECK(!strncmp(id, "tr-", 3) && strlen(id) == 23 && !strcmp(str_field(&r, "state"), "QUEUED"));
    reply_free(&r);
    /* the record was enqueued before the job, and both deliveries were awaited */
    CHECK(b.n_state == 1 && !strcmp(b.state_ids[0], id) && b.waits == 2 && b.n_jobs == 1);
    cJSON *msg = cJSON_Parse(b.jobs[0]);
    CHECK(cJSON_GetObjectItem(msg, "schema")->valueint == 1);
    CHECK(!strcmp(cJSON_GetObjectItem(msg, "type")->valuestring, "training"));
    CHECK(!strcmp(cJSON_GetObjectItem(msg, "id")->valuestring, id));
    CHECK(!strcmp(cJSON_GetObjectItem(msg, "algorithm")->valuestring, "image-classification"));
    char want[512];
    snprintf(want, sizeof want, "%s/ds", root);
    CHECK(!strcmp(cJSON_GetObjectItem(msg, "dataset")->valuestring, want));
    snprintf(want, sizeof want, "%s/trainings/%s", root, id);
    CHECK_MSG(!strcmp(cJSON_GetObjectItem(msg, "output")->valuestring, want), "output %s",
              cJSON_GetObjectItem(msg, "output")->valuestring);
    const cJSON *hp = cJSON_GetObjectItem(msg, "hyperparameters");
    CHECK(cJSON_GetObjectItem(hp, "input_size")->valueint == 16);
    CHECK(cJSON_GetObjectItem(hp, "num_train_epochs")->valueint == 2);
    CHECK(cJSON_GetObjectItem(hp, "per_device_train_batch_size")->valueint == 16); /* defaults filled in */
    CHECK(cJSON_IsString(cJSON_GetObjectItem(msg, "submitted_at")));
    cJSON_Delete(msg);

    char path[256];
    snprintf(path, sizeof path, "/v1/trainings/%s", id);
    r = call(&s, "GET", path, NULL, NULL, NULL, NULL);
    CHECK(r.status == 200 && !strcmp(str_field(&r, "id"), id) && !strcmp(str_field(&r, "state"), "QUEUED"));
    CHECK(!strcmp(str_field(&r, "name"), "pets") && !strcmp(str_field(&r, "output"), want));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(r.json, "worker")) &&
          cJSON_IsNull(cJSON_GetObjectItem(r.json, "progress")));
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings/tr-nope", NULL, NULL, NULL, NULL);
    CHECK(r.status == 404 && strstr(str_field(&r, "error"), "tr-nope"));
    reply_free(&r);

    /* an explicit output, absolute */
    r = call(&s, "POST", "/v1/trainings",
             "{\"algorithm\":\"image_classification\",\"dataset\":\"ds\",\"output\":\"s3://bucket/runs/a\"}",
             NULL, NULL, NULL);
    CHECK(r.status == 201);
    reply_free(&r);
    msg = cJSON_Parse(b.jobs[1]);
    CHECK(!strcmp(cJSON_GetObjectItem(msg, "output")->valuestring, "s3://bucket/runs/a"));
    cJSON_Delete(msg);

    r = call(&s, "GET", "/v1/trainings", NULL, NULL, NULL, NULL);
    CHECK(r.status == 200 && cJSON_GetObjectItem(r.json, "total")->valueint == 2);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(r.json, "trainings")) == 2);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, NULL, NULL, "RUNNING");
    CHECK(r.status == 200 && cJSON_GetObjectItem(r.json, "total")->valueint == 0);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, NULL, NULL, "queued");
    CHECK(r.status == 200 && cJSON_GetObjectItem(r.json, "total")->valueint == 2);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, NULL, NULL, "DONE");
    CHECK(r.status == 400 && strstr(str_field(&r, "error"), "state"));
    reply_free(&r);

    /* Kafka down: 503, and no record is left behind */
    b.fail_publish = 1;
    r = call(&s, "POST", "/v1/trainings", "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\"}", NULL,
             NULL, NULL);
    CHECK(r.status == 503 && strstr(str_field(&r, "error"), "Kafka"));
    reply_free(&r);
    CHECK(lt_table_size(s.table) == 2 && b.state_vals[b.n_state - 1] == NULL); /* a tombstone */
    lt_sched_free(&s);
    fb_free(&b);
}

static void test_bad_submissions(void) {
    lt_sched s;
    fake_bus b = {0};
    init(&s, &b, NULL);
    expect_400(&s, "{", "body");
    expect_400(&s, "[1]", "body");
    expect_400(&s, "{\"dataset\":\"ds\"}", "algorithm");
    expect_400(&s, "{\"algorithm\":\"resnet\",\"dataset\":\"ds\"}", "algorithm");
    expect_400(&s, "{\"algorithm\":\"semantic-segmentation\",\"dataset\":\"ds\"}", "algorithm");
    expect_400(&s, "{\"algorithm\":\"image-classification\"}", "dataset");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":3}", "dataset");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"name\":7}", "name");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"hyperparameter\":{}}",
               "hyperparameter: unknown field");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"hyperparameters\":[1]}",
               "hyperparameters");
    expect_400(&s,
               "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"hyperparameters\":{\"learning_"
               "rate\":-1}}",
               "learning_rate");
    expect_400(&s,
               "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"hyperparameters\":{\"input_"
               "size\":2.5}}",
               "input_size");
    expect_400(&s,
               "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"hyperparameters\":{\"lr\":1}}",
               "lr");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"nothing-here\"}", "dataset");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"noval\"}", "validation");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"stray\"}", "train/readme.txt");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"deep\"}", "train/cat/sub/1.png");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"unknown\"}", "bird");
    expect_400(&s, "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"output\":\"s3://\"}",
               "output");
    expect_400(&s, "{\"algorithm\":\"noop\",\"dataset\":\"ds\"}", "algorithm"); /* only with allow_noop */
    CHECK(b.n_jobs == 0 && b.n_state == 0 && lt_table_size(s.table) == 0);
    lt_sched_free(&s);
    fb_free(&b);
}

static void test_idempotency(void) {
    lt_sched s;
    fake_bus b = {0};
    init(&s, &b, NULL);
    const char *body = "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\"}";
    reply a = call(&s, "POST", "/v1/trainings", body, NULL, "key-1", NULL);
    reply c = call(&s, "POST", "/v1/trainings", body, NULL, "key-1", NULL);
    CHECK(a.status == 201 && c.status == 200);
    CHECK(!strcmp(str_field(&a, "id"), str_field(&c, "id")) && b.n_jobs == 1);
    reply d = call(&s, "POST", "/v1/trainings",
                   "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"name\":\"x\"}", NULL,
                   "key-1", NULL);
    CHECK(d.status == 422 && strstr(str_field(&d, "error"), "Idempotency-Key") && b.n_jobs == 1);
    reply e = call(&s, "POST", "/v1/trainings", body, NULL, "key-2", NULL);
    CHECK(e.status == 201 && strcmp(str_field(&a, "id"), str_field(&e, "id")) && b.n_jobs == 2);
    reply f = call(&s, "POST", "/v1/trainings", body, NULL, "bad key", NULL);
    CHECK(f.status == 400 && strstr(str_field(&f, "error"), "Idempotency-Key"));
    /* the key survives a rebuild: it is part of the record */
    lt_sched s2;
    fake_bus b2 = {0};
    init(&s2, &b2, NULL);
    for (int i = 0; i < b.n_state; i++)
        CHECK(lt_sched_load_record(&s2, b.state_ids[i], b.state_vals[i],
                                   b.state_vals[i] ? strlen(b.state_vals[i]) : 0, NULL) == LT_OK);
    reply g = call(&s2, "POST", "/v1/trainings", body, NULL, "key-1", NULL);
    CHECK(g.status == 200 && !strcmp(str_field(&a, "id"), str_field(&g, "id")) && b2.n_jobs == 0);
    reply *all[] = {&a, &c, &d, &e, &f, &g};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        reply_free(all[i]);
    lt_sched_free(&s);
    lt_sched_free(&s2);
    fb_free(&b);
    fb_free(&b2);
}

static void test_auth_and_routes(void) {
    lt_sched s;
    fake_bus b = {0};
    init(&s, &b, "s3cret-token");
    reply r = call(&s, "GET", "/v1/trainings", NULL, NULL, NULL, NULL);
    CHECK(r.status == 401);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, "Bearer s3cret-tokeX", NULL, NULL);
    CHECK(r.status == 401);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, "Bearer s3cret-token-longer", NULL, NULL);
    CHECK(r.status == 401);
    reply_free(&r);
    r = call(&s, "POST", "/v1/trainings", "{}", "Basic s3cret-token", NULL, NULL);
    CHECK(r.status == 401 && b.n_jobs == 0);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, "Bearer s3cret-token", NULL, NULL);
    CHECK(r.status == 200);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings", NULL, "bearer  s3cret-token", NULL, NULL);
    CHECK(r.status == 200);
    reply_free(&r);
    /* health and metrics stay open for probes and scrapers */
    r = call(&s, "GET", "/v1/health", NULL, NULL, NULL, NULL);
    CHECK(r.status == 200 && !strcmp(str_field(&r, "status"), "ok"));
    reply_free(&r);
    r = call(&s, "GET", "/metrics", NULL, NULL, NULL, NULL);
    CHECK(r.status == 200 && r.text && strstr(r.text, "lathe_jobs{state=\"QUEUED\"} 0"));
    CHECK(r.text && strstr(r.text, "lathe_http_requests_total{route=\"list\",code=\"401\"} 3"));
    CHECK(r.text && strstr(r.text, "# TYPE lathe_jobs gauge"));
    reply_free(&r);
    r = call(&s, "DELETE", "/v1/trainings", NULL, "Bearer s3cret-token", NULL, NULL);
    CHECK(r.status == 405);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings/tr-1/cancel", NULL, "Bearer s3cret-token", NULL, NULL);
    CHECK(r.status == 405);
    reply_free(&r);
    r = call(&s, "GET", "/v2/things", NULL, NULL, NULL, NULL);
    CHECK(r.status == 404);
    reply_free(&r);
    r = call(&s, "GET", "/v1/trainings/a/b/c", NULL, "Bearer s3cret-token", NULL, NULL);
    CHECK(r.status == 404);
    reply_free(&r);
    /* before the state is loaded the API says so */
    atomic_store(&s.ready, 0);
    r = call(&s, "GET", "/v1/trainings", NULL, "Bearer s3cret-token", NULL, NULL);
    CHECK(r.status == 503);
    reply_free(&r);
    r = call(&s, "GET", "/v1/health", NULL, NULL, NULL, NULL);
    CHECK(r.status == 503 && !strcmp(str_field(&r, "status"), "starting"));
    reply_free(&r);
    lt_sched_free(&s);
    fb_free(&b);
}

static void fold(lt_sched *s, const char *fmt, const char *id, lt_status want) {
    char buf[1024];
    snprintf(buf, sizeof buf, fmt, id);
    lt_err err = {{0}};
    void *ticket = NULL;
    lt_status st = lt_sched_fold_event(s, buf, strlen(buf), &ticket, &err);
    CHECK_MSG(st == want, "%s -> %d (%s)", buf, (int)st, err.msg);
}

static void test_cancel_and_events(void) {
    lt_sched s;
    fake_bus b = {0};
    init(&s, &b, NULL);
    const char *body = "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\"}";
    reply q = call(&s, "POST", "/v1/trainings", body, NULL, NULL, NULL);
    reply r = call(&s, "POST", "/v1/trainings", body, NULL, NULL, NULL);
    char idq[LT_JOB_ID_MAX], idr[LT_JOB_ID_MAX], path[256];
    snprintf(idq, sizeof idq, "%s", str_field(&q, "id"));
    snprintf(idr, sizeof idr, "%s", str_field(&r, "id"));
    reply_free(&q);
    reply_free(&r);

    /* a queued job is cancelled at once, and the workers are told */
    snprintf(path, sizeof path, "/v1/trainings/%s/cancel", idq);
    r = call(&s, "POST", path, NULL, NULL, NULL, NULL);
    CHECK(r.status == 200 && !strcmp(str_field(&r, "state"), "CANCELLED"));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(r.json, "cancel_requested")));
    reply_free(&r);
    CHECK(b.n_cancels == 1 && !strcmp(b.cancels[0], idq));
    r = call(&s, "POST", path, NULL, NULL, NULL, NULL);
    CHECK(r.status == 409 && strstr(str_field(&r, "error"), "CANCELLED"));
    reply_free(&r);
    r = call(&s, "POST", "/v1/trainings/tr-nope/cancel", NULL, NULL, NULL, NULL);
    CHECK(r.status == 404);
    reply_free(&r);
    /* a worker that picked it up anyway can't revive it */
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w1\",\"attempt\":1,"
         "\"time\":\"2024-05-01T12:00:00Z\",\"state\":\"RUNNING\"}",
         idq, LT_OK);
    snprintf(path, sizeof path, "/v1/trainings/%s", idq);
    r = call(&s, "GET", path, NULL, NULL, NULL, NULL);
    CHECK(!strcmp(str_field(&r, "state"), "CANCELLED"));
    reply_free(&r);

    /* the other runs to the end through events */
    int before = b.n_state;
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w1\",\"attempt\":1,"
         "\"time\":\"2024-05-01T12:00:00Z\",\"state\":\"RUNNING\"}",
         idr, LT_OK);
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"progress\",\"worker\":\"w1\",\"attempt\":1,"
         "\"time\":\"2024-05-01T12:00:01Z\",\"step\":3,\"total_steps\":6,\"epoch\":1.0}",
         idr, LT_OK);
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"checkpoint\",\"worker\":\"w1\",\"attempt\":1,"
         "\"time\":\"2024-05-01T12:00:01Z\",\"step\":3,\"uri\":\"file:///x/checkpoints/step-3\"}",
         idr, LT_OK);
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w2\",\"attempt\":2,"
         "\"time\":\"2024-05-01T12:00:02Z\",\"state\":\"RUNNING\",\"resumed_from_step\":3}",
         idr, LT_OK);
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"result\",\"worker\":\"w2\",\"attempt\":2,"
         "\"time\":\"2024-05-01T12:00:03Z\",\"metrics\":{\"eval_accuracy\":0.5},\"output\":\"file:///x\"}",
         idr, LT_OK);
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w2\",\"attempt\":2,"
         "\"time\":\"2024-05-01T12:00:03Z\",\"state\":\"SUCCEEDED\"}",
         idr, LT_OK);
    fold(&s, "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w2\",\"attempt\":2}", idr,
         LT_ERR_FORMAT);
    fold(&s, "not json %s", idr, LT_ERR_FORMAT);
    CHECK(b.n_state == before + 6); /* one record per change */
    snprintf(path, sizeof path, "/v1/trainings/%s", idr);
    r = call(&s, "GET", path, NULL, NULL, NULL, NULL);
    CHECK(!strcmp(str_field(&r, "state"), "SUCCEEDED") && !strcmp(str_field(&r, "worker"), "w2"));
    CHECK(cJSON_GetObjectItem(r.json, "attempt")->valueint == 2);
    CHECK(cJSON_GetObjectItem(r.json, "resumed_from_step")->valueint == 3);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "checkpoint"), "step")->valueint == 3);
    CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(r.json, "metrics"), "eval_accuracy")->valuedouble == 0.5);
    CHECK(!strcmp(str_field(&r, "output"), "file:///x"));
    char *first = cJSON_PrintUnformatted(r.json);
    reply_free(&r);
    snprintf(path, sizeof path, "/v1/trainings/%s/cancel", idr);
    r = call(&s, "POST", path, NULL, NULL, NULL, NULL);
    CHECK(r.status == 409);
    reply_free(&r);

    /* events of a job this scheduler never saw make a record */
    fold(&s,
         "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w9\",\"attempt\":1,"
         "\"time\":\"2024-05-01T12:00:00Z\",\"state\":\"RUNNING\"}",
         "ext-1", LT_OK);
    r = call(&s, "GET", "/v1/trainings/ext-1", NULL, NULL, NULL, NULL);
    CHECK(r.status == 200 && !strcmp(str_field(&r, "state"), "RUNNING"));
    reply_free(&r);

    /* a fresh scheduler rebuilt from the persisted records answers the same */
    lt_sched s2;
    fake_bus b2 = {0};
    init(&s2, &b2, NULL);
    for (int i = 0; i < b.n_state; i++)
        CHECK(lt_sched_load_record(&s2, b.state_ids[i], b.state_vals[i],
                                   b.state_vals[i] ? strlen(b.state_vals[i]) : 0, NULL) == LT_OK);
    snprintf(path, sizeof path, "/v1/trainings/%s", idr);
    r = call(&s2, "GET", path, NULL, NULL, NULL, NULL);
    char *second = r.json ? cJSON_PrintUnformatted(r.json) : NULL;
    CHECK_MSG(second && !strcmp(first, second), "rebuilt record differs:\n%s\n%s", first, second);
    reply_free(&r);
    free(first);
    free(second);
    r = call(&s2, "GET", "/v1/trainings", NULL, NULL, NULL, "CANCELLED");
    CHECK(cJSON_GetObjectItem(r.json, "total")->valueint == 1);
    reply_free(&r);
    lt_err err = {{0}};
    CHECK(lt_sched_load_record(&s2, "k", "{\"id\":1}", 8, &err) == LT_ERR_FORMAT);
    r = call(&s2, "GET", "/metrics", NULL, NULL, NULL, NULL);
    CHECK(r.text && strstr(r.text, "lathe_jobs{state=\"SUCCEEDED\"} 1"));
    CHECK(r.text && strstr(r.text, "lathe_jobs{state=\"RUNNING\"} 1"));
    reply_free(&r);
    r = call(&s, "GET", "/metrics", NULL, NULL, NULL, NULL);
    CHECK(r.text && strstr(r.text, "lathe_events_malformed_total 2"));
    CHECK(r.text && strstr(r.text, "lathe_jobs_submitted_total 2"));
    reply_free(&r);
    lt_sched_free(&s);
    lt_sched_free(&s2);
    fb_free(&b);
    fb_free(&b2);
}

int main(void) {
    make_datasets();
    test_submit_and_get();
    test_bad_submissions();
    test_idempotency();
    test_auth_and_routes();
    test_cancel_and_events();
    remove_datasets();
    return check_summary("test_scheduler_api");
}
