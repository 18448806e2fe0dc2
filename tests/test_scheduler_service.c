/* The scheduler service on real protocols in one process: librdkafka's mock cluster (3 brokers), the HTTP
 * API through libcurl. A submission reaches <p>jobs and <p>jobs.state, worker events produced by hand move
 * the record, a malformed event goes to <p>dlq, a cancel reaches <p>control, the bearer token is enforced,
 * and a second scheduler started on the same cluster rebuilds the same records. */
#define _GNU_SOURCE
#include "check.h"
#include "service.h"
#include "messaging/kafka.h"
#include "messaging/mock.h"
#include "scheduler/scheduler.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Waits until the scheduler has rebuilt its state (health 200). */
static int wait_ready(lt_scheduler *s) {
    for (double t0 = test_now_s(); test_now_s() - t0 < 20;) {
        if (lt_scheduler_ready(s)) return 1;
        test_sleep_ms(20);
    }
    return 0;
}

/* Polls GET /v1/trainings/id until its state is `state` (or 15 s pass); returns the record. */
static cJSON *wait_state(int port, const char *id, const char *state, const char *token) {
    char path[256];
    snprintf(path, sizeof path, "/v1/trainings/%s", id);
    cJSON *rec = NULL;
    for (double t0 = test_now_s(); test_now_s() - t0 < 15; test_sleep_ms(50)) {
        cJSON_Delete(rec);
        rec = NULL;
        if (test_http(port, "GET", path, NULL, token, &rec) == 200 &&
            !strcmp(test_json_str(rec, "state"), state))
            return rec;
    }
    return rec;
}

/* Reads every message of a topic present now; calls fn for each. */
static int read_topic(const lt_kafka_config *c, const char *topic,
                      void (*fn)(void *ctx, const rd_kafka_message_t *m), void *ctx) {
    lt_err err = {{0}};
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, "test-reader", &err);
    lt_kafka_conf_set(conf, "group.id", "test-reader", &err);
    lt_kafka_conf_set(conf, "enable.partition.eof", "true", &err);
    char why[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    rd_kafka_poll_set_consumer(rk);
    CHECK(lt_kafka_reader_assign_all(rk, topic, 1, 5000, &err) == LT_OK);
    rd_kafka_topic_partition_list_t *a = NULL;
    rd_kafka_assignment(rk, &a);
    int pending = a ? a->cnt : 0, n = 0;
    rd_kafka_topic_partition_list_destroy(a);
    for (double t0 = test_now_s(); pending > 0 && test_now_s() - t0 < 10;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            pending--;
        else if (!m->err) {
            fn(ctx, m);
            n++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return n;
}

typedef struct {
    const char *id; /* look for this key */
    int found;
    cJSON *last; /* last value with that key */
    char header_error[512];
} finder;

static void find_key(void *ctx, const rd_kafka_message_t *m) {
    finder *f = ctx;
    if (!m->key || m->key_len != strlen(f->id) || memcmp(m->key, f->id, m->key_len)) return;
    f->found++;
    cJSON_Delete(f->last);
    f->last = m->payload ? cJSON_ParseWithLength(m->payload, m->len) : NULL;
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vl;
    if (!rd_kafka_message_headers(m, &h) && !rd_kafka_header_get_last(h, "error", &v, &vl))
        snprintf(f->header_error, sizeof f->header_error, "%.*s", (int)vl, (const char *)v);
}

static void produce_event(lt_kafka_producer *p, const char *topic, const char *id, const char *fmt) {
    char text[1024];
    snprintf(text, sizeof text, fmt, id);
    lt_err err = {{0}};
    CHECK_MSG(lt_kafka_produce_sync(p, topic, id, text, strlen(text), NULL, 0, &err) == LT_OK, "produce: %s",
              err.msg);
}

static lt_scheduler *start(const lt_kafka_config *c, const char *storage, const char *token) {
    lt_scheduler_opts o;
    lt_scheduler_opts_init(&o);
    o.kafka = *c;
    o.port = 0;
    o.bind = "127.0.0.1";
    o.storage = storage;
    o.api_token = token;
    o.create_topics = 0;
    o.quiet = 1;
    lt_err err = {{0}};
    lt_scheduler *s = lt_scheduler_start(&o, &err);
    CHECK_MSG(s != NULL, "scheduler: %s", err.msg);
    if (s) CHECK(wait_ready(s));
    return s;
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char root[64], cmd[1024];
    snprintf(root, sizeof root, "/tmp/lathe_test_sched_svc_%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/ds/train/a %s/ds/train/b %s/ds/validation/a && printf x > %s/ds/train/a/1.png && "
             "printf x > %s/ds/train/b/1.png && printf x > %s/ds/validation/a/1.png",
             root, root, root, root, root, root);
    CHECK(system(cmd) == 0);

    lt_kafka_config c;
    lt_err err = {{0}};
    lt_kafka_config_init(&c, NULL);
    lt_kafka_config_set(&c, NULL, "svctest.", NULL);
    c.jobs_partitions = 4;
    lt_kafka_mock *mock = lt_kafka_mock_new(3, &c, &err);
    CHECK_MSG(mock != NULL, "mock: %s", err.msg);
    if (!mock) return check_summary("test_scheduler_service");
    lt_kafka_config_set(&c, lt_kafka_mock_bootstraps(mock), NULL, NULL);
    char t_jobs[LT_KAFKA_TOPIC_MAX], t_events[LT_KAFKA_TOPIC_MAX], t_state[LT_KAFKA_TOPIC_MAX],
        t_control[LT_KAFKA_TOPIC_MAX], t_dlq[LT_KAFKA_TOPIC_MAX];
    lt_kafka_topic(&c, LT_TOPIC_JOBS, t_jobs, sizeof t_jobs);
    lt_kafka_topic(&c, LT_TOPIC_EVENTS, t_events, sizeof t_events);
    lt_kafka_topic(&c, LT_TOPIC_JOBS_STATE, t_state, sizeof t_state);
    lt_kafka_topic(&c, LT_TOPIC_CONTROL, t_control, sizeof t_control);
    lt_kafka_topic(&c, LT_TOPIC_DLQ, t_dlq, sizeof t_dlq);

    const char *token = "tok-123";
    lt_scheduler *s = start(&c, root, token);
    if (!s) return check_summary("test_scheduler_service");
    int port = lt_scheduler_port(s);
    CHECK(port > 0);

    /* auth, health, a bad submission */
    cJSON *r = NULL;
    CHECK(test_http(port, "GET", "/v1/trainings", NULL, NULL, NULL) == 401);
    CHECK(test_http(port, "GET", "/v1/trainings", NULL, "wrong", NULL) == 401);
    CHECK(test_http(port, "GET", "/v1/health", NULL, NULL, &r) == 200 &&
          !strcmp(test_json_str(r, "status"), "ok"));
    cJSON_Delete(r);
    CHECK(test_http(port, "POST", "/v1/trainings",
                    "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\","
                    "\"hyperparameters\":{\"learning_rate\":\"fast\"}}",
                    token, &r) == 400);
    CHECK_MSG(strstr(test_json_str(r, "error"), "learning_rate") != NULL, "error: %s",
              test_json_str(r, "error"));
    cJSON_Delete(r);

    /* a submission lands on <p>jobs and <p>jobs.state */
    CHECK(test_http(port, "POST", "/v1/trainings",
                    "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\",\"name\":\"svc\","
                    "\"hyperparameters\":{\"input_size\":16}}",
                    token, &r) == 201);
    char id[160];
    snprintf(id, sizeof id, "%s", test_json_str(r, "id"));
    cJSON_Delete(r);
    finder f = {.id = id};
    CHECK(read_topic(&c, t_jobs, find_key, &f) >= 1 && f.found == 1);
    CHECK(f.last && !strcmp(test_json_str(f.last, "type"), "training") &&
          !strcmp(test_json_str(f.last, "name"), "svc"));
    cJSON_Delete(f.last);
    f = (finder){.id = id};
    read_topic(&c, t_state, find_key, &f);
    CHECK(f.found >= 1 && f.last && !strcmp(test_json_str(f.last, "state"), "QUEUED"));
    cJSON_Delete(f.last);

    /* a worker's events, one of them malformed */
    lt_kafka_producer *p = lt_kafka_producer_new(&c, "test-worker", 10000, &err);
    produce_event(p, t_events, id,
                  "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w1\",\"attempt\":1,"
                  "\"time\":\"2024-05-01T12:00:00Z\",\"state\":\"RUNNING\"}");
    produce_event(p, t_events, id, "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"progress\"}");
    produce_event(p, t_events, id,
                  "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"progress\",\"worker\":\"w1\",\"attempt\":1,"
                  "\"time\":\"2024-05-01T12:00:01Z\",\"step\":2,\"total_steps\":4,\"epoch\":1}");
    produce_event(p, t_events, id,
                  "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"result\",\"worker\":\"w1\",\"attempt\":1,"
                  "\"time\":\"2024-05-01T12:00:02Z\",\"metrics\":{\"accuracy\":1},\"output\":\"file:///o\"}");
    produce_event(p, t_events, id,
                  "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w1\",\"attempt\":1,"
                  "\"time\":\"2024-05-01T12:00:02Z\",\"state\":\"SUCCEEDED\"}");
    r = wait_state(port, id, "SUCCEEDED", token);
    CHECK_MSG(r && !strcmp(test_json_str(r, "state"), "SUCCEEDED"), "state %s", test_json_str(r, "state"));
    CHECK(r && cJSON_GetObjectItem(cJSON_GetObjectItem(r, "progress"), "step")->valueint == 2);
    CHECK(r && !strcmp(test_json_str(r, "worker"), "w1") && !strcmp(test_json_str(r, "output"), "file:///o"));
    char *before = r ? cJSON_PrintUnformatted(r) : NULL;
    cJSON_Delete(r);
    f = (finder){.id = id};
    for (double t0 = test_now_s(); f.found == 0 && test_now_s() - t0 < 10; test_sleep_ms(100))
        read_topic(&c, t_dlq, find_key, &f);
    CHECK_MSG(f.found == 1 && strstr(f.header_error, "worker"), "dlq: %d, error header '%s'", f.found,
              f.header_error);
    cJSON_Delete(f.last);

    /* a cancel of a queued job reaches <p>control */
    CHECK(test_http(port, "POST", "/v1/trainings",
                    "{\"algorithm\":\"image-classification\",\"dataset\":\"ds\"}", token, &r) == 201);
    char id2[160], path[300];
    snprintf(id2, sizeof id2, "%s", test_json_str(r, "id"));
    cJSON_Delete(r);
    snprintf(path, sizeof path, "/v1/trainings/%s/cancel", id2);
    CHECK(test_http(port, "POST", path, NULL, token, &r) == 200 &&
          !strcmp(test_json_str(r, "state"), "CANCELLED"));
    cJSON_Delete(r);
    f = (finder){.id = id2};
    read_topic(&c, t_control, find_key, &f);
    CHECK(f.found == 1 && !strcmp(test_json_str(f.last, "type"), "cancel") &&
          !strcmp(test_json_str(f.last, "id"), id2));
    cJSON_Delete(f.last);

    /* restart: a new scheduler on the same cluster rebuilds both records */
    lt_scheduler_stop(s);
    s = start(&c, root, token);
    port = s ? lt_scheduler_port(s) : 0;
    snprintf(path, sizeof path, "/v1/trainings/%s", id);
    CHECK(test_http(port, "GET", path, NULL, token, &r) == 200);
    char *after = r ? cJSON_PrintUnformatted(r) : NULL;
    CHECK_MSG(before && after && !strcmp(before, after), "after restart:\n%s\nbefore:\n%s", after, before);
    cJSON_Delete(r);
    free(before);
    free(after);
    CHECK(test_http(port, "GET", "/v1/trainings?state=CANCELLED", NULL, token, &r) == 200);
    CHECK(cJSON_GetObjectItem(r, "total")->valueint == 1);
    cJSON_Delete(r);
    /* events keep flowing to the new scheduler */
    produce_event(p, t_events, "ext-7",
                  "{\"schema\":1,\"job_id\":\"%s\",\"type\":\"state\",\"worker\":\"w2\",\"attempt\":1,"
                  "\"time\":\"2024-05-01T12:00:00Z\",\"state\":\"RUNNING\"}");
    r = wait_state(port, "ext-7", "RUNNING", token);
    CHECK(r && !strcmp(test_json_str(r, "worker"), "w2"));
    cJSON_Delete(r);

    lt_kafka_producer_destroy(p);
    lt_scheduler_stop(s);
    lt_kafka_mock_destroy(mock);
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    curl_global_cleanup();
    return check_summary("test_scheduler_service");
}
