/* test_gateway.c - real-time inference through Kafka: the scheduler's gateway (scheduler/gateway.h) and an
 * inference worker (inference/kafka_server.h) on the in-process mock cluster, with a tiny classification
 * model. Replies are compared byte for byte with what `lathe serve`'s code (lt_infer_service_handle)
 * answers for the same body; concurrent callers get their own answers; no worker -> LT_ERR_TIMEOUT; a bad
 * model -> an error naming it; a malformed message -> the dead-letter topic, and the worker goes on. */
#define _GNU_SOURCE
#include "check.h"
#include "fixtures.h"

#include "inference/kafka_server.h"
#include "io/fsutil.h"
#include "messaging/mock.h"
#include "messaging/realtime.h"
#include "scheduler/gateway.h"
#include "tasks/cls_model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STR(s) ((s) ? (s) : "(null)")

static char *b64(const uint8_t *b, size_t n) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *s = malloc(n / 3 * 4 + 8), *o = s;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v =
            (uint32_t)b[i] << 16 | (i + 1 < n ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < n ? b[i + 2] : 0);
        *o++ = abc[v >> 18 & 63];
        *o++ = abc[v >> 12 & 63];
        *o++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? abc[v & 63] : '=';
    }
    *o = 0;
    return s;
}

/* A request body with one image of class cls (a PNG written by the fixture), as the guide's script writes
 * it. */
static char *image_request(const char *tmp, int size, int cls, unsigned seed) {
    char path[512];
    snprintf(path, sizeof path, "%s/img-%d-%d-%u.png", tmp, size, cls, seed);
    char *data = NULL, *body = NULL;
    size_t n = 0;
    lt_err err = {{0}};
    if (!fixture_class_png(path, size, cls, seed) || lt_read_file(path, &data, &n, 1 << 20, &err) != LT_OK)
        return NULL;
    char *d = b64((const uint8_t *)data, n);
    if (asprintf(&body,
                 "{\n    \"instances\": [\n        {\n            \"data\": \"%s\"\n        }\n    ]\n}",
                 d) < 0)
        body = NULL;
    free(d);
    free(data);
    return body;
}

typedef struct {
    lt_kserve_opts o;
    volatile sig_atomic_t stop;
    lt_kserve *k;
    pthread_t th;
} server;

static void *server_main(void *arg) {
    server *s = arg;
    lt_err err = {{0}};
    lt_kserve_run(s->k, &err);
    return NULL;
}

static int start_server(server *s, const lt_kafka_config *kc, const char *id) {
    lt_kserve_opts_init(&s->o);
    s->o.kafka = *kc;
    s->o.worker_id = id;
    s->o.fetch_wait_ms = 1;
    s->o.metadata_refresh_ms = 200;
    s->o.threads = 8;
    s->o.quiet = 1;
    s->o.serve.batch.max_batch = 4;
    s->o.serve.batch.max_delay_ms = 2;
    s->stop = 0;
    s->o.stop = &s->stop;
    lt_err err = {{0}};
    if (lt_kserve_new(&s->k, &s->o, &err) != LT_OK) {
        CHECK_MSG(0, "kserve: %s", err.msg);
        return 0;
    }
    pthread_create(&s->th, NULL, server_main, s);
    return 1;
}

static void stop_server(server *s) {
    s->stop = 1;
    pthread_join(s->th, NULL);
    lt_kserve_free(s->k);
}

/* What `lathe serve`'s code answers for body. */
static int serve_answer(lt_infer_service *svc, const char *body, char **resp) {
    return lt_infer_service_handle(svc, body, strlen(body), resp);
}

/* Two classification answers that agree up to float rounding: a batch of 4 runs another graph than a batch
 * of 1, so concurrent requests differ from a lone one in the last bits, in `lathe serve` as here. */
static int same_answer(const char *a, const char *b) {
    cJSON *ja = cJSON_Parse(a ? a : ""), *jb = cJSON_Parse(b ? b : "");
    int ok = cJSON_IsArray(ja) && cJSON_IsArray(jb) && cJSON_GetArraySize(ja) == cJSON_GetArraySize(jb);
    for (int i = 0; ok && i < cJSON_GetArraySize(ja); i++) {
        cJSON *x = cJSON_GetArrayItem(ja, i), *y = cJSON_GetArrayItem(jb, i);
        cJSON *lx = cJSON_GetObjectItem(x, "label"), *ly = cJSON_GetObjectItem(y, "label");
        cJSON *sx = cJSON_GetObjectItem(x, "score"), *sy = cJSON_GetObjectItem(y, "score");
        ok = cJSON_IsString(lx) && cJSON_IsString(ly) && !strcmp(lx->valuestring, ly->valuestring) &&
             cJSON_IsNumber(sx) && cJSON_IsNumber(sy) && fabs(sx->valuedouble - sy->valuedouble) < 1e-5;
    }
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    return ok;
}

typedef struct {
    lt_gateway *gw;
    const char *model;
    const char *body;
    int status;
    char *resp;
    size_t len;
    lt_status st;
    lt_err err;
} caller;

static void *call_main(void *arg) {
    caller *c = arg;
    c->st = lt_gateway_infer(c->gw, "ep1", "prod", c->model, c->body, strlen(c->body), 20000, &c->status,
                             &c->resp, &c->len, &c->err);
    return NULL;
}

/* Reads <prefix>dlq from the beginning until a message with the given key shows up; its "error" header. */
static int find_dead_letter(const lt_kafka_config *kc, const char *key, char *why, size_t size) {
    lt_err err = {{0}};
    char topic[LT_KAFKA_TOPIC_MAX];
    rd_kafka_t *rk = lt_kafka_reader_new(kc, "test-dlq", &err);
    if (!rk || lt_kafka_reader_assign_all(rk, lt_kafka_topic(kc, LT_TOPIC_DLQ, topic, sizeof topic), 1, 5000,
                                          &err) != LT_OK) {
        if (rk) rd_kafka_destroy(rk);
        return 0;
    }
    int found = 0;
    for (int i = 0; i < 100 && !found; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (!m->err && m->key_len == strlen(key) && !memcmp(m->key, key, m->key_len))
            found = lt_rt_header(m, "error", why, size);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return found;
}

static void test_gateway(const char *tmp) {
    lt_err err = {{0}};
    /* the model, and `lathe serve`'s code over it for the expected answers */
    char model[600], notmodel[600], missing[600];
    snprintf(model, sizeof model, "%s/model", tmp);
    snprintf(notmodel, sizeof notmodel, "%s/notmodel", tmp);
    snprintf(missing, sizeof missing, "%s/no-such-model", tmp);
    char *labels[3] = {"cat", "dog", "bird"};
    lt_cls_model ref;
    if (lt_cls_model_create(&ref, labels, 3, 32, 7, &err) != LT_OK ||
        lt_cls_model_save(&ref, model, NULL, &err) != LT_OK) {
        CHECK_MSG(0, "%s", err.msg);
        return;
    }
    lt_mkdir_p(notmodel, &err);
    char cfg[700];
    snprintf(cfg, sizeof cfg, "%s/config.json", notmodel);
    FILE *f = fopen(cfg, "w");
    if (f) {
        fputs("{\"model_type\": \"gpt2\"}", f);
        fclose(f);
    }
    lt_infer_model *m = NULL;
    lt_infer_service *svc = NULL;
    CHECK_MSG(lt_infer_model_load(model, 4, &m, &err) == LT_OK, "%s", err.msg);
    if (!m) return;
    CHECK(lt_infer_service_create(m, NULL, &svc, &err) == LT_OK);

    lt_kafka_config kc;
    lt_kafka_config_init(&kc, NULL);
    snprintf(kc.prefix, sizeof kc.prefix, "t.");
    lt_kafka_mock *mock = lt_kafka_mock_new(1, &kc, &err);
    CHECK_MSG(mock != NULL, "%s", err.msg);
    if (!mock) return;
    lt_kafka_config_set(&kc, lt_kafka_mock_bootstraps(mock), NULL, &err);
    /* a short session so the group settles in a second on the mock */
    lt_kafka_config_add(&kc, "session.timeout.ms", "6000");
    lt_kafka_config_add(&kc, "heartbeat.interval.ms", "500");

    lt_gateway_opts go;
    lt_gateway_opts_init(&go);
    go.fetch_wait_ms = 1;
    lt_gateway *gw = NULL;
    CHECK_MSG(lt_gateway_new_opts(&gw, &kc, NULL, &go, &err) == LT_OK, "gateway: %s", err.msg);
    if (!gw) return;
    CHECK(strncmp(lt_gateway_reply_topic(gw), "t.replies.", 10) == 0);
    CHECK(lt_gateway_create_endpoint(gw, "ep1", 2, &err) == LT_OK);
    CHECK(lt_gateway_create_endpoint(gw, "ep1", 2, &err) == LT_OK); /* idempotent */
    CHECK(lt_gateway_create_endpoint(gw, "bad/name", 2, &err) == LT_ERR_ARG && strstr(err.msg, "bad/name"));

    /* no worker yet: a clear timeout, promptly */
    int status = 0;
    char *resp = NULL;
    size_t len = 0;
    const char *junk = "{\"instances\": []}";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lt_status st =
        lt_gateway_infer(gw, "ep1", "prod", model, junk, strlen(junk), 500, &status, &resp, &len, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    CHECK_MSG(st == LT_ERR_TIMEOUT && strstr(err.msg, "no inference worker answered endpoint ep1") && !resp,
              "no worker: %d %s", st, err.msg);
    CHECK_MSG(waited >= 0.49 && waited < 2.5, "timeout took %.3f s", waited);

    server s1;
    if (!start_server(&s1, &kc, "w1")) return;
    /* the worker joins and finds the topic; the request queued before it (deadline passed) is dropped */
    st = lt_gateway_load(gw, "ep1", "prod", model, 30000, &err);
    CHECK_MSG(st == LT_OK, "load: %d %s", st, err.msg);
    st = lt_gateway_load(gw, "ep1", "prod", missing, 10000, &err);
    CHECK_MSG(st == LT_ERR_NOT_FOUND && strstr(err.msg, "no-such-model") && strstr(err.msg, "does not exist"),
              "missing model: %d %s", st, err.msg);
    st = lt_gateway_load(gw, "ep1", "prod", notmodel, 10000, &err);
    CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, "notmodel"), "not a model: %d %s", st, err.msg);

    /* the guide's request: the same bytes as `lathe serve`'s code */
    char *data = NULL;
    size_t n_json = 0;
    CHECK(lt_read_file("tests/golden/inference_request.json", &data, &n_json, 1 << 20, &err) == LT_OK);
    if (data) {
        char *want = NULL;
        int want_status = lt_infer_service_handle(svc, data, n_json, &want);
        st = lt_gateway_infer(gw, "ep1", "prod", model, data, n_json, 20000, &status, &resp, &len, &err);
        CHECK_MSG(st == LT_OK && status == want_status && want_status == 200 && resp && len == strlen(want) &&
                      !strcmp(resp, want),
                  "guide request: %d %d %s, want %s", st, status, STR(resp), STR(want));
        free(resp);
        free(want);
        free(data);
    }
    /* a bad body: the same 4xx and message */
    const char *bad = "{\"instances\": [{\"data\": \"@@@\"}]}";
    char *want = NULL;
    int want_status = serve_answer(svc, bad, &want);
    st = lt_gateway_infer(gw, "ep1", "prod", model, bad, strlen(bad), 20000, &status, &resp, &len, &err);
    CHECK_MSG(st == LT_OK && status == 400 && want_status == 400 && resp && !strcmp(resp, want),
              "bad: %d %d %s", st, status, STR(resp));
    free(resp);
    free(want);
    /* infer with a model that can't load: a 5xx naming it, not a hang */
    st = lt_gateway_infer(gw, "ep1", "prod", missing, bad, strlen(bad), 20000, &status, &resp, &len, &err);
    CHECK_MSG(st == LT_OK && status == 500 && resp && strstr(resp, "no-such-model"),
              "missing model infer: %d %d %s", st, status, STR(resp));
    free(resp);

    /* concurrent callers, different images: each gets its own answer */
    enum { N = 12 };
    caller calls[N];
    pthread_t th[N];
    char *bodies[N], *wants[N];
    for (int i = 0; i < N; i++) {
        bodies[i] = image_request(tmp, 8 + i, i % 3, (unsigned)i * 7 + 1);
        wants[i] = NULL;
        if (bodies[i]) serve_answer(svc, bodies[i], &wants[i]);
        calls[i] = (caller){.gw = gw, .model = model, .body = bodies[i] ? bodies[i] : "{}"};
    }
    int distinct = 0;
    for (int i = 1; i < N; i++)
        distinct += wants[i] && wants[0] && strcmp(wants[i], wants[0]) != 0;
    CHECK_MSG(distinct >= 3, "the test images give too few distinct answers (%d)", distinct);
    for (int i = 0; i < N; i++)
        pthread_create(&th[i], NULL, call_main, &calls[i]);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(calls[i].st == LT_OK && calls[i].status == 200 && calls[i].resp && wants[i] &&
                      same_answer(calls[i].resp, wants[i]),
                  "caller %d: %d %d %s, want %s (%s)", i, calls[i].st, calls[i].status, STR(calls[i].resp),
                  STR(wants[i]), calls[i].err.msg);
        free(calls[i].resp);
        free(bodies[i]);
        free(wants[i]);
    }

    /* malformed messages go to the dead-letter topic; the worker keeps serving */
    lt_kafka_producer *p = lt_kafka_producer_new(&kc, "test", 5000, &err);
    char topic[LT_KAFKA_TOPIC_MAX];
    lt_gateway_endpoint_topic(gw, "ep1", topic, sizeof topic);
    CHECK(p && lt_kafka_produce_sync(p, topic, "garbage-1", "hello", 5, NULL, 0, &err) == LT_OK);
    lt_kafka_header h[2] = {{LT_RT_TYPE, "explode"}, {LT_RT_REQUEST_ID, "x"}};
    CHECK(p && lt_kafka_produce_sync(p, topic, "garbage-2", "", 0, h, 2, &err) == LT_OK);
    /* an expired request: dropped without work */
    char past[32];
    snprintf(past, sizeof past, "%lld", (long long)(lt_rt_now_ms() - 1000));
    lt_kafka_header hx[6] = {{LT_RT_TYPE, "infer"},    {LT_RT_REQUEST_ID, "expired-1"},
                             {LT_RT_MODEL_URI, model}, {LT_RT_REPLY_TOPIC, lt_gateway_reply_topic(gw)},
                             {LT_RT_DEADLINE, past},   {LT_RT_REPLY_PARTITION, "0"}};
    CHECK(p && lt_kafka_produce_sync(p, topic, "expired-1", junk, strlen(junk), hx, 6, &err) == LT_OK);
    lt_kafka_producer_destroy(p);
    char why[256] = "";
    CHECK_MSG(find_dead_letter(&kc, "garbage-1", why, sizeof why) && strstr(why, "type"), "dlq 1: %s", why);
    CHECK_MSG(find_dead_letter(&kc, "garbage-2", why, sizeof why) && strstr(why, "neither"), "dlq 2: %s",
              why);
    st = lt_gateway_infer(gw, "ep1", "prod", model, bad, strlen(bad), 20000, &status, &resp, &len, &err);
    CHECK_MSG(st == LT_OK && status == 400, "after dead letters: %d %d %s", st, status, err.msg);
    free(resp);
    lt_kserve_stats ks;
    lt_kserve_get_stats(s1.k, &ks);
    CHECK_MSG(ks.dead_letter == 2 && ks.expired >= 2 && ks.loads == 3,
              "stats: dlq %lld expired %lld loads %lld", ks.dead_letter, ks.expired, ks.loads);

    /* a gateway on another prefix has no worker: timeout, and it shuts down cleanly */
    lt_gateway *gw2 = NULL;
    CHECK(lt_gateway_new_opts(&gw2, &kc, "other.", &go, &err) == LT_OK);
    if (gw2) {
        CHECK(lt_gateway_create_endpoint(gw2, "ep1", 1, &err) == LT_OK);
        CHECK(lt_gateway_load(gw2, "ep1", "prod", model, 200, &err) == LT_ERR_TIMEOUT);
        lt_gateway_free(gw2);
    }
    lt_gateway_stats gs;
    lt_gateway_get_stats(gw, &gs);
    CHECK_MSG(gs.timeouts == 1 && gs.replies == N + 7, "gateway stats: timeouts %lld replies %lld",
              gs.timeouts, gs.replies);
    CHECK(lt_gateway_delete_endpoint(gw, "ep1", &err) == LT_OK);

    stop_server(&s1);
    lt_gateway_free(gw);
    lt_kafka_mock_destroy(mock);
    lt_infer_service_destroy(svc);
    lt_infer_model_destroy(m);
    lt_cls_model_free(&ref);
}

int main(void) {
    char tmp[] = "/tmp/lathe-test-gateway-XXXXXX";
    if (mkdtemp(tmp)) {
        test_gateway(tmp);
        lt_remove_tree(tmp, NULL);
    }
    return check_summary("test_gateway");
}
