/* Models, endpoints, stages and the inference routes of the scheduler, over HTTP, on librdkafka's mock
 * cluster, with the real-time gateway replaced by tests/gateway_double.c: validation (400 naming the
 * field), 404/409s, CREATING -> ACTIVE | FAILED, stages and the default switch (a request in flight keeps the
 * stage it started on), 503/504 from the gateway, and the registry rebuilt by a restarted scheduler from
 * the <p>registry topic and, on a fresh cluster, from the standalone mirror folder. */
#define _GNU_SOURCE
#include "check.h"
#include "service.h"
#include "fixtures.h"
#include "gateway_double.h"
#include "messaging/kafka.h"
#include "messaging/mock.h"
#include "scheduler/scheduler.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *token = "reg-tok";

/* One HTTP request with tok ("" for none); the parsed JSON body in *out. */
static long http_tok(int port, const char *method, const char *path, const char *body, const char *tok,
                     cJSON **out) {
    return test_http(port, method, path, body, tok[0] ? tok : NULL, out);
}

static long http(int port, const char *method, const char *path, const char *body, cJSON **out) {
    return http_tok(port, method, path, body, token, out);
}

/* The error of a 4xx/5xx answer mentions want. */
static void expect_error(int port, const char *method, const char *path, const char *body, long status,
                         const char *want) {
    cJSON *r = NULL;
    long got = http(port, method, path, body, &r);
    CHECK_MSG(got == status && strstr(test_json_str(r, "error"), want), "%s %s %s: %ld '%s' (want %ld '%s')",
              method, path, body ? body : "", got, test_json_str(r, "error"), status, want);
    cJSON_Delete(r);
}

/* Polls GET path until member `field` is `want` (10 s at most); returns the last record. */
static cJSON *wait_field(int port, const char *path, const char *field, const char *want) {
    cJSON *rec = NULL;
    for (double t0 = test_now_s(); test_now_s() - t0 < 10; test_sleep_ms(20)) {
        cJSON_Delete(rec);
        rec = NULL;
        if (http(port, "GET", path, NULL, &rec) == 200 && !strcmp(test_json_str(rec, field), want))
            return rec;
    }
    return rec;
}

/* The stage named name in an endpoint record. */
static const cJSON *stage_of(const cJSON *ep, const char *name) {
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(
                              ep, "stages")) if (!strcmp(test_json_str(s, "name"), name)) return s;
    return NULL;
}

static lt_scheduler *start(const lt_kafka_config *c, const char *storage, const char *registry_dir) {
    lt_scheduler_opts o;
    lt_scheduler_opts_init(&o);
    o.kafka = *c;
    o.port = 0;
    o.bind = "127.0.0.1";
    o.storage = storage;
    o.api_token = token;
    o.create_topics = 0;
    o.quiet = 1;
    o.registry_dir = registry_dir;
    lt_err err = {{0}};
    lt_scheduler *s = lt_scheduler_start(&o, &err);
    CHECK_MSG(s != NULL, "scheduler: %s", err.msg);
    for (double t0 = test_now_s(); s && !lt_scheduler_ready(s) && test_now_s() - t0 < 20;)
        test_sleep_ms(20);
    CHECK(s && lt_scheduler_ready(s));
    return s;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* A model directory dir with config.json = config (NULL: none) and a model.safetensors. */
static void make_model_dir(const char *dir, const char *config) {
    char cmd[1024], p[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    CHECK(system(cmd) == 0);
    if (config) {
        snprintf(p, sizeof p, "%s/config.json", dir);
        write_file(p, config);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(p, "x");
}

static void produce_event(lt_kafka_producer *p, const char *topic, const char *id, const char *text) {
    lt_err err = {{0}};
    CHECK_MSG(lt_kafka_produce_sync(p, topic, id, text, strlen(text), NULL, 0, &err) == LT_OK, "produce: %s",
              err.msg);
}

typedef struct {
    int port;
    long status;
    cJSON *body;
} infer_call;

static void *infer_thread(void *arg) {
    infer_call *c = arg;
    c->status = http(c->port, "POST", "/v1/endpoints/ep/inference", "{\"instances\":[]}", &c->body);
    return NULL;
}

/* A SUCCEEDED training whose output is a model directory; returns its id in id. */
static void succeeded_training(int port, const lt_kafka_config *c, const char *root, char id[160]) {
    cJSON *r = NULL;
    CHECK(http(port, "POST", "/v1/trainings",
               "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"hyperparameters\":{\"input_"
               "size\":16}}",
               &r) == 201);
    snprintf(id, 160, "%s", test_json_str(r, "id"));
    cJSON_Delete(r);
    char out[512], path[256], ev[1024], t_events[LT_KAFKA_TOPIC_MAX];
    snprintf(out, sizeof out, "%s/trainings/%s", root, id);
    make_model_dir(out, "{\"architectures\":[\"ResNetForImageClassification\"]}");
    snprintf(path, sizeof path, "/v1/trainings/%s", id);

    /* not SUCCEEDED yet: no model */
    snprintf(ev, sizeof ev, "{\"name\":\"early\",\"training_id\":\"%s\"}", id);
    expect_error(port, "POST", "/v1/models", ev, 409, "QUEUED");

    lt_kafka_topic(c, LT_TOPIC_EVENTS, t_events, sizeof t_events);
    lt_err err = {{0}};
    lt_kafka_producer *p = lt_kafka_producer_new(c, "test-worker", 10000, &err);
    snprintf(ev, sizeof ev,
             "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"result\",\"worker\":\"w1\",\"attempt\":1,"
             "\"time\":\"2024-05-01T12:00:02Z\",\"metrics\":{\"accuracy\":1},\"output\":\"%s\"}",
             id, out);
    produce_event(p, t_events, id, ev);
    snprintf(ev, sizeof ev,
             "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w1\",\"attempt\":1,"
             "\"time\":\"2024-05-01T12:00:02Z\",\"state\":\"SUCCEEDED\"}",
             id);
    produce_event(p, t_events, id, ev);
    lt_kafka_producer_destroy(p);
    r = wait_field(port, path, "state", "SUCCEEDED");
    CHECK(r && !strcmp(test_json_str(r, "state"), "SUCCEEDED"));
    cJSON_Delete(r);
}

/* Models: validation, from a URI, from a training, lookups. */
static void test_models(int port, const lt_kafka_config *c, const char *root, char train_id[160]) {
    cJSON *r = NULL;
    CHECK(http_tok(port, "GET", "/v1/models", NULL, "", NULL) == 401);
    CHECK(http_tok(port, "GET", "/v1/endpoints/x", NULL, "wrong", NULL) == 401);
    expect_error(port, "POST", "/v1/models", "{\"name\":", 400, "body: not valid JSON");
    expect_error(port, "POST", "/v1/models", "[1]", 400, "body: must be a JSON object");
    expect_error(port, "POST", "/v1/models", "{\"uri\":\"models/m1\"}", 400, "name: required");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"Bad Name\",\"uri\":\"models/m1\"}", 400, "name:");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"uri\":7}", 400, "uri: must be a string");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"url\":\"x\"}", 400, "url: unknown field");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\"}", 400, "training_id: give either");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"uri\":\"a\",\"training_id\":\"b\"}", 400,
                 "give either");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"uri\":\"models/noconfig\"}", 400,
                 "has no config.json");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"uri\":\"models/nothing\"}", 400, "uri:");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"uri\":\"models/badjson\"}", 400,
                 "config.json is not a JSON object");
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m\",\"training_id\":\"tr-nope\"}", 404,
                 "training_id: no training");

    CHECK(http(port, "POST", "/v1/models", "{\"name\":\"m1\",\"uri\":\"models/m1\"}", &r) == 201);
    char want[512];
    snprintf(want, sizeof want, "%s/models/m1", root);
    CHECK_MSG(!strcmp(test_json_str(r, "uri"), want), "uri %s", test_json_str(r, "uri"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(r, "training_id")));
    cJSON_Delete(r);
    expect_error(port, "POST", "/v1/models", "{\"name\":\"m1\",\"uri\":\"models/m1\"}", 409,
                 "exists already");

    /* a batch inference names its model as the registry knows it: the record carries that model's URI */
    char img[512];
    snprintf(img, sizeof img, "%s/images", root);
    mkdir(img, 0755);
    snprintf(img, sizeof img, "%s/images/a.png", root);
    CHECK(fixture_class_png(img, 8, 1, 3) == 1);
    CHECK(http(port, "POST", "/v1/batch-inferences", "{\"model\":\"m1\",\"dataset\":\"images\"}", &r) == 201);
    char path[256];
    snprintf(path, sizeof path, "/v1/batch-inferences/%s", test_json_str(r, "id"));
    cJSON_Delete(r);
    r = NULL;
    CHECK(http(port, "GET", path, NULL, &r) == 200);
    CHECK_MSG(r && !strcmp(test_json_str(r, "model_uri"), want), "model_uri %s",
              r ? test_json_str(r, "model_uri") : "?");
    cJSON_Delete(r);
    expect_error(port, "POST", "/v1/batch-inferences", "{\"model\":\"nope\",\"dataset\":\"images\"}", 404,
                 "model");
    CHECK(http(port, "POST", "/v1/models", "{\"name\":\"mbad\",\"uri\":\"models/bad-model\"}", NULL) == 201);

    succeeded_training(port, c, root, train_id);
    char body[256];
    snprintf(body, sizeof body, "{\"name\":\"m2\",\"training_id\":\"%s\"}", train_id);
    CHECK(http(port, "POST", "/v1/models", body, &r) == 201);
    snprintf(want, sizeof want, "%s/trainings/%s", root, train_id);
    CHECK_MSG(!strcmp(test_json_str(r, "uri"), want), "uri %s", test_json_str(r, "uri"));
    CHECK(!strcmp(test_json_str(r, "training_id"), train_id));
    cJSON_Delete(r);

    CHECK(http(port, "GET", "/v1/models/m2", NULL, &r) == 200 && !strcmp(test_json_str(r, "name"), "m2"));
    cJSON_Delete(r);
    CHECK(http(port, "GET", "/v1/models", NULL, &r) == 200 && cJSON_GetObjectItem(r, "total")->valueint == 3);
    cJSON_Delete(r);
    expect_error(port, "GET", "/v1/models/nope", NULL, 404, "no model named 'nope'");
    expect_error(port, "PUT", "/v1/models/m1", NULL, 405, "not allowed");
}

/* Endpoints: creation, states, stages, default switch, inference, deletes. */
static void test_endpoints(int port) {
    cJSON *r = NULL;
    expect_error(port, "POST", "/v1/endpoints", "{\"name\":\"ep\"}", 400, "model: required");
    expect_error(port, "POST", "/v1/endpoints", "{\"name\":\"ep\",\"model\":\"m1\",\"replicas\":0}", 400,
                 "replicas:");
    expect_error(port, "POST", "/v1/endpoints", "{\"name\":\"ep\",\"model\":\"m1\",\"replicas\":1.5}", 400,
                 "replicas:");
    expect_error(port, "POST", "/v1/endpoints", "{\"name\":\"ep\",\"model\":\"m1\",\"stage\":\"A B\"}", 400,
                 "stage:");
    expect_error(port, "POST", "/v1/endpoints", "{\"name\":\"ep\",\"model\":\"nope\"}", 404,
                 "model: no model named 'nope'");

    /* CREATING while the load runs, then ACTIVE */
    gwd_hold_loads(1);
    CHECK(http(port, "POST", "/v1/endpoints", "{\"name\":\"ep\",\"model\":\"m1\",\"replicas\":2}", &r) ==
          202);
    CHECK(!strcmp(test_json_str(r, "state"), "CREATING") &&
          !strcmp(test_json_str(r, "default_stage"), "default"));
    cJSON_Delete(r);
    expect_error(port, "POST", "/v1/endpoints", "{\"name\":\"ep\",\"model\":\"m1\"}", 409, "exists already");
    CHECK(http(port, "GET", "/v1/endpoints/ep", NULL, &r) == 200 &&
          !strcmp(test_json_str(r, "state"), "CREATING"));
    cJSON_Delete(r);
    expect_error(port, "POST", "/v1/endpoints/ep/inference", "{}", 503, "CREATING");
    gwd_hold_loads(0);
    r = wait_field(port, "/v1/endpoints/ep", "state", "ACTIVE");
    CHECK_MSG(r && !strcmp(test_json_str(r, "state"), "ACTIVE"), "state %s", test_json_str(r, "state"));
    const cJSON *st = stage_of(r, "default");
    CHECK(st && !strcmp(test_json_str(st, "state"), "ACTIVE") && !strcmp(test_json_str(st, "model"), "m1"));
    CHECK(cJSON_GetObjectItem(r, "replicas")->valueint == 2);
    cJSON_Delete(r);

    /* a load that fails and a topic that can't be made: FAILED with the reason */
    CHECK(http(port, "POST", "/v1/endpoints", "{\"name\":\"ep-bad\",\"model\":\"mbad\"}", NULL) == 202);
    r = wait_field(port, "/v1/endpoints/ep-bad", "state", "FAILED");
    CHECK_MSG(r && strstr(test_json_str(r, "error"), "not a model this worker can load"), "error %s",
              test_json_str(r, "error"));
    cJSON_Delete(r);
    expect_error(port, "POST", "/v1/endpoints/ep-bad/inference", "{}", 503, "FAILED");
    CHECK(http(port, "POST", "/v1/endpoints", "{\"name\":\"fail-topic\",\"model\":\"m1\"}", NULL) == 202);
    r = wait_field(port, "/v1/endpoints/fail-topic", "state", "FAILED");
    CHECK(r && strstr(test_json_str(r, "error"), "topic creation refused"));
    cJSON_Delete(r);

    /* a model in use can't go */
    expect_error(port, "DELETE", "/v1/models/m1", NULL, 409, "used by endpoint");

    /* inference through the default stage, 404s */
    CHECK(http(port, "POST", "/v1/endpoints/ep/inference", "{\"instances\":[]}", &r) == 200);
    CHECK(!strcmp(test_json_str(r, "stage"), "default") &&
          strstr(test_json_str(r, "model_uri"), "/models/m1"));
    cJSON_Delete(r);
    expect_error(port, "POST", "/v1/endpoints/nope/inference", "{}", 404, "no endpoint named 'nope'");
    expect_error(port, "POST", "/v1/endpoints/ep/stages/nope/inference", "{}", 404, "no stage 'nope'");
    expect_error(port, "GET", "/v1/endpoints/ep/inference", NULL, 405, "not allowed");
    expect_error(port, "POST", "/v1/endpoints/ep/whatever", "{}", 404, "no such resource");

    /* a 2 MB request passes (inference bodies have lathe serve's limit, not the API's 1 MiB) */
    size_t big = 2u << 20;
    char *body = malloc(big + 32);
    if (body) {
        int n = snprintf(body, 32, "{\"instances\":[{\"data\":\"");
        memset(body + n, 'A', big);
        strcpy(body + n + big, "\"}]}");
        CHECK(http(port, "POST", "/v1/endpoints/ep/inference", body, &r) == 200);
        CHECK(r && cJSON_GetObjectItem(r, "bytes")->valuedouble == (double)strlen(body));
        cJSON_Delete(r);
        free(body);
    }

    /* a second stage */
    expect_error(port, "POST", "/v1/endpoints/ep/stages", "{\"stage\":\"prod\"}", 400, "model: required");
    expect_error(port, "POST", "/v1/endpoints/ep/stages",
                 "{\"stage\":\"prod\",\"model\":\"m2\",\"default\":1}", 400, "default:");
    expect_error(port, "POST", "/v1/endpoints/ep/stages", "{\"stage\":\"default\",\"model\":\"m2\"}", 409,
                 "has a stage 'default'");
    expect_error(port, "POST", "/v1/endpoints/ep-bad/stages", "{\"stage\":\"x\",\"model\":\"m2\"}", 409,
                 "FAILED");
    CHECK(http(port, "POST", "/v1/endpoints/ep/stages", "{\"stage\":\"prod\",\"model\":\"m2\"}", &r) == 202);
    cJSON_Delete(r);
    for (double t0 = test_now_s(); test_now_s() - t0 < 10; test_sleep_ms(20)) {
        r = NULL;
        http(port, "GET", "/v1/endpoints/ep", NULL, &r);
        st = stage_of(r, "prod");
        int done = st && !strcmp(test_json_str(st, "state"), "ACTIVE");
        cJSON_Delete(r);
        if (done) break;
    }
    CHECK(http(port, "POST", "/v1/endpoints/ep/stages/prod/inference", "{}", &r) == 200);
    CHECK(!strcmp(test_json_str(r, "stage"), "prod") && strstr(test_json_str(r, "model_uri"), "/trainings/"));
    cJSON_Delete(r);

    /* switching the default while a request is in flight: it finishes on the stage it started on */
    expect_error(port, "POST", "/v1/endpoints/ep/default", "{\"stage\":\"nope\"}", 404, "no stage 'nope'");
    expect_error(port, "POST", "/v1/endpoints/ep/default", "{}", 400, "stage: required");
    gwd_hold_infers(1);
    infer_call call = {.port = port};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, infer_thread, &call) == 0);
    for (double t0 = test_now_s(); gwd_infers_waiting() < 1 && test_now_s() - t0 < 10;)
        test_sleep_ms(5);
    CHECK(gwd_infers_waiting() == 1);
    CHECK(http(port, "POST", "/v1/endpoints/ep/default", "{\"stage\":\"prod\"}", &r) == 200);
    CHECK(!strcmp(test_json_str(r, "default_stage"), "prod"));
    cJSON_Delete(r);
    gwd_hold_infers(0);
    pthread_join(th, NULL);
    CHECK(call.status == 200 && !strcmp(test_json_str(call.body, "stage"), "default"));
    CHECK(strstr(test_json_str(call.body, "model_uri"), "/models/m1") != NULL);
    cJSON_Delete(call.body);
    CHECK(http(port, "POST", "/v1/endpoints/ep/inference", "{}", &r) == 200 &&
          !strcmp(test_json_str(r, "stage"), "prod"));
    cJSON_Delete(r);

    /* the gateway's failures */
    gwd_set_infer_mode(GWD_INFER_TIMEOUT);
    expect_error(port, "POST", "/v1/endpoints/ep/inference", "{}", 504, "no worker answered within");
    gwd_set_infer_mode(GWD_INFER_UNAVAILABLE);
    expect_error(port, "POST", "/v1/endpoints/ep/inference", "{}", 503, "broker down");
    gwd_set_infer_mode(GWD_INFER_OK);

    /* stage deletes: not the default; then a stage added as the default takes over once loaded */
    expect_error(port, "DELETE", "/v1/endpoints/ep/stages/prod", NULL, 409, "is the default");
    expect_error(port, "DELETE", "/v1/endpoints/ep/stages/nope", NULL, 404, "no stage 'nope'");
    CHECK(http(port, "DELETE", "/v1/endpoints/ep/stages/default", NULL, &r) == 200 &&
          !stage_of(r, "default"));
    cJSON_Delete(r);
    CHECK(http(port, "POST", "/v1/endpoints/ep/stages",
               "{\"stage\":\"canary\",\"model\":\"m1\",\"default\":true}", &r) == 202);
    CHECK(!strcmp(test_json_str(r, "pending_default"), "canary"));
    cJSON_Delete(r);
    r = wait_field(port, "/v1/endpoints/ep", "default_stage", "canary");
    CHECK_MSG(r && !strcmp(test_json_str(r, "default_stage"), "canary"), "default %s",
              test_json_str(r, "default_stage"));
    cJSON_Delete(r);

    CHECK(http(port, "GET", "/v1/endpoints", NULL, &r) == 200 &&
          cJSON_GetObjectItem(r, "total")->valueint == 3);
    cJSON_Delete(r);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char root[64], regdir[128], cmd[1024], p[256];
    snprintf(root, sizeof root, "/tmp/lathe_test_registry_%d", (int)getpid());
    snprintf(regdir, sizeof regdir, "%s/.lathe/registry", root);
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s/ds/train/a %s/ds/validation/a %s/models/nothing && printf x > "
             "%s/ds/train/a/1.png && printf x > %s/ds/validation/a/1.png",
             root, root, root, root, root, root);
    CHECK(system(cmd) == 0);
    snprintf(p, sizeof p, "%s/models/m1", root);
    make_model_dir(p, "{\"num_labels\":2}");
    snprintf(p, sizeof p, "%s/models/bad-model", root);
    make_model_dir(p, "{}");
    snprintf(p, sizeof p, "%s/models/noconfig", root);
    make_model_dir(p, NULL);
    snprintf(p, sizeof p, "%s/models/badjson", root);
    make_model_dir(p, "{not json");

    lt_kafka_config c;
    lt_err err = {{0}};
    lt_kafka_config_init(&c, NULL);
    lt_kafka_config_set(&c, NULL, "regtest.", NULL);
    c.jobs_partitions = 2;
    lt_kafka_mock *mock = lt_kafka_mock_new(1, &c, &err);
    CHECK_MSG(mock != NULL, "mock: %s", err.msg);
    if (!mock) return check_summary("test_scheduler_registry");
    lt_kafka_config_set(&c, lt_kafka_mock_bootstraps(mock), NULL, NULL);

    lt_scheduler *s = start(&c, root, regdir);
    if (!s) return check_summary("test_scheduler_registry");
    int port = lt_scheduler_port(s);
    char train_id[160] = "";
    test_models(port, &c, root, train_id);
    test_endpoints(port);
    cJSON *r = NULL;
    CHECK(http(port, "GET", "/metrics", NULL, &r) == 200); /* not JSON: r stays NULL */
    cJSON_Delete(r);

    /* a restarted scheduler has the same registry (from <p>registry) and gives the ACTIVE endpoint its topic
       and stages again */
    cJSON *before = NULL, *models_before = NULL;
    http(port, "GET", "/v1/endpoints/ep", NULL, &before);
    http(port, "GET", "/v1/models", NULL, &models_before);
    lt_scheduler_stop(s);
    int creates = gwd_creates(), loads = gwd_loads();
    s = start(&c, root, NULL);
    if (!s) return check_summary("test_scheduler_registry");
    port = lt_scheduler_port(s);
    cJSON *after = NULL, *models_after = NULL;
    CHECK(http(port, "GET", "/v1/endpoints/ep", NULL, &after) == 200);
    CHECK(http(port, "GET", "/v1/models", NULL, &models_after) == 200);
    CHECK_MSG(cJSON_Compare(before, after, 1), "endpoint before/after restart differ");
    CHECK(cJSON_Compare(models_before, models_after, 1));
    cJSON_Delete(after);
    cJSON_Delete(models_after);
    for (double t0 = test_now_s();
         (gwd_creates() <= creates || gwd_loads() < loads + 2) && test_now_s() - t0 < 10;)
        test_sleep_ms(10);
    CHECK_MSG(gwd_creates() > creates && gwd_loads() >= loads + 2, "revive: %d creates, %d loads",
              gwd_creates() - creates, gwd_loads() - loads);
    CHECK(http(port, "POST", "/v1/endpoints/ep/inference", "{}", &r) == 200 &&
          !strcmp(test_json_str(r, "stage"), "canary"));
    cJSON_Delete(r);
    CHECK(http(port, "GET", "/v1/endpoints/ep-bad", NULL, &r) == 200 &&
          !strcmp(test_json_str(r, "state"), "FAILED"));
    cJSON_Delete(r);

    /* delete: DELETING then gone; the model is free again */
    int deletes = gwd_deletes();
    CHECK(http(port, "DELETE", "/v1/endpoints/ep", NULL, &r) == 202 &&
          !strcmp(test_json_str(r, "state"), "DELETING"));
    cJSON_Delete(r);
    for (double t0 = test_now_s();
         http(port, "GET", "/v1/endpoints/ep", NULL, NULL) != 404 && test_now_s() - t0 < 10;)
        test_sleep_ms(10);
    CHECK(http(port, "GET", "/v1/endpoints/ep", NULL, NULL) == 404);
    CHECK(gwd_deletes() == deletes + 1);
    CHECK(http(port, "DELETE", "/v1/endpoints/ep-bad", NULL, NULL) == 202);
    CHECK(http(port, "DELETE", "/v1/endpoints/fail-topic", NULL, NULL) == 202);
    for (double t0 = test_now_s();
         http(port, "GET", "/v1/endpoints/fail-topic", NULL, NULL) != 404 && test_now_s() - t0 < 10;)
        test_sleep_ms(10);
    CHECK(http(port, "GET", "/v1/endpoints/ep-bad", NULL, NULL) == 404);
    CHECK(http(port, "DELETE", "/v1/models/mbad", NULL, &r) == 200);
    cJSON_Delete(r);
    expect_error(port, "DELETE", "/v1/models/mbad", NULL, 404, "no model named");
    lt_scheduler_stop(s);

    /* the tombstones hold across another restart */
    s = start(&c, root, NULL);
    if (!s) return check_summary("test_scheduler_registry");
    port = lt_scheduler_port(s);
    CHECK(http(port, "GET", "/v1/models/mbad", NULL, NULL) == 404);
    CHECK(http(port, "GET", "/v1/models/m1", NULL, NULL) == 200);
    CHECK(http(port, "GET", "/v1/endpoints", NULL, &r) == 200 &&
          cJSON_GetObjectItem(r, "total")->valueint == 0);
    cJSON_Delete(r);
    lt_scheduler_stop(s);

    /* standalone: a fresh in-memory cluster, the registry comes back from the mirror folder (written by the
       first scheduler, the only one with registry_dir) */
    lt_kafka_mock_destroy(mock);
    lt_kafka_config_init(&c, NULL);
    lt_kafka_config_set(&c, NULL, "regtest.", NULL);
    mock = lt_kafka_mock_new(1, &c, &err);
    CHECK_MSG(mock != NULL, "mock: %s", err.msg);
    if (!mock) return check_summary("test_scheduler_registry");
    lt_kafka_config_set(&c, lt_kafka_mock_bootstraps(mock), NULL, NULL);
    s = start(&c, root, regdir);
    if (s) {
        port = lt_scheduler_port(s);
        CHECK(http(port, "GET", "/v1/endpoints/ep", NULL, &after) == 200);
        CHECK_MSG(cJSON_Compare(before, after, 1), "endpoint from the mirror differs");
        cJSON_Delete(after);
        CHECK(http(port, "GET", "/v1/models/m2", NULL, &r) == 200 &&
              !strcmp(test_json_str(r, "training_id"), train_id));
        cJSON_Delete(r);
        lt_scheduler_stop(s);
    }
    cJSON_Delete(before);
    cJSON_Delete(models_before);
    lt_kafka_mock_destroy(mock);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    curl_global_cleanup();
    return check_summary("test_scheduler_registry");
}
