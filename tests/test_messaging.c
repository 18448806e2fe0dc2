/* Messages (encode/decode round trips and every malformed case), Kafka configuration from the environment,
 * the option loader (flags, environment, YAML), and the producer/consumer/DLQ helpers against librdkafka's
 * mock cluster with fault injection. */
#define _GNU_SOURCE
#include "check.h"
#include "messaging/kafka.h"
#include "messaging/messages.h"
#include "messaging/mock.h"
#include "messaging/options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *good_job =
    "{\"schema\":1,\"type\":\"training\",\"id\":\"job-1\",\"name\":\"cats\","
    "\"algorithm\":\"image-classification\",\"dataset\":\"s3://b/datasets/cats\","
    "\"output\":\"s3://b/trainings/job-1\",\"hyperparameters\":{\"learning_rate\":0.001},"
    "\"submitted_at\":\"2024-05-01T12:00:00Z\"}";

/* Decodes text as a job and checks the error names `field` (NULL: must succeed). */
static void job_case(const char *text, const char *field, int line) {
    lt_msg_job j;
    lt_err err = {{0}};
    lt_status st = lt_msg_job_decode(text, strlen(text), &j, &err);
    if (!field) {
        check_report(st == LT_OK, __FILE__, line, "job should decode: %s (%s)", text, err.msg);
    } else {
        check_report(st == LT_ERR_FORMAT && strstr(err.msg, field) != NULL, __FILE__, line,
                     "job %s: expected an error naming %s, got %d \"%s\"", text, field, (int)st, err.msg);
        check_report(j.id == NULL, __FILE__, line, "a failed decode leaves the job empty");
    }
    lt_msg_job_free(&j);
}

/* good_job with `from` replaced by `to`. */
static char *edit(const char *from, const char *to) {
    const char *p = strstr(good_job, from);
    char *out = NULL;
    if (!p || asprintf(&out, "%.*s%s%s", (int)(p - good_job), good_job, to, p + strlen(from)) < 0)
        return NULL;
    return out;
}

static void test_jobs(void) {
    lt_msg_job j;
    lt_err err = {{0}};
    CHECK(lt_msg_job_decode(good_job, strlen(good_job), &j, &err) == LT_OK);
    CHECK(!strcmp(j.id, "job-1") && !strcmp(j.name, "cats") && !strcmp(j.algorithm, "image-classification"));
    CHECK(!strcmp(j.dataset, "s3://b/datasets/cats") && !strcmp(j.output, "s3://b/trainings/job-1"));
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(j.hyperparameters, "learning_rate")) == 0.001);
    /* round trip */
    char *json = NULL;
    CHECK(lt_msg_job_encode(&j, &json, &err) == LT_OK);
    lt_msg_job k;
    CHECK(json && lt_msg_job_decode(json, strlen(json), &k, &err) == LT_OK);
    CHECK(k.id && !strcmp(k.id, j.id) && !strcmp(k.submitted_at, j.submitted_at) &&
          !strcmp(k.output, j.output));
    CHECK(cJSON_Compare(k.hyperparameters, j.hyperparameters, 1));
    free(json);
    lt_msg_job_free(&k);
    /* encode refuses what decode would refuse, naming the field */
    free(j.dataset);
    j.dataset = strdup("");
    CHECK(lt_msg_job_encode(&j, &json, &err) == LT_ERR_ARG && strstr(err.msg, "dataset") && !json);
    lt_msg_job_free(&j);
    lt_msg_job_free(&j); /* twice is fine */

    /* not NUL-terminated input: decode reads exactly len bytes */
    char buf[1024];
    size_t n = strlen(good_job);
    memcpy(buf, good_job, n);
    memset(buf + n, 'x', 16);
    CHECK(lt_msg_job_decode(buf, n, &j, &err) == LT_OK);
    lt_msg_job_free(&j);

    /* optional fields */
    const char *minimal = "{\"schema\":1,\"type\":\"training\",\"id\":\"a\",\"algorithm\":\"x\",\"dataset\":"
                          "\"d\",\"output\":\"o\"}";
    CHECK(lt_msg_job_decode(minimal, strlen(minimal), &j, &err) == LT_OK);
    CHECK(j.name && !j.name[0] && cJSON_IsObject(j.hyperparameters) && j.submitted_at && !j.submitted_at[0]);
    lt_msg_job_free(&j);

    /* every malformed case names what is wrong */
    job_case("", "empty", __LINE__);
    job_case("{\"schema\":1", "JSON", __LINE__);
    job_case("[1,2]", "object", __LINE__);
    job_case("null", "object", __LINE__);
    struct {
        const char *from, *to, *field;
    } cases[] = {
        {"\"schema\":1,", "", "schema"},
        {"\"schema\":1", "\"schema\":2", "schema"},
        {"\"schema\":1", "\"schema\":\"1\"", "schema"},
        {"\"type\":\"training\",", "", "type"},
        {"\"type\":\"training\"", "\"type\":\"evaluation\"", "type"},
        {"\"type\":\"training\"", "\"type\":7", "type"},
        {"\"id\":\"job-1\",", "", "id"},
        {"\"id\":\"job-1\"", "\"id\":\"\"", "id"},
        {"\"id\":\"job-1\"", "\"id\":\"../etc\"", "id"},
        {"\"id\":\"job-1\"", "\"id\":\"..\"", "id"},
        {"\"id\":\"job-1\"", "\"id\":\"a b\"", "id"},
        {"\"id\":\"job-1\"", "\"id\":12", "id"},
        {"\"id\":\"job-1\"",
         "\"id\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
         "id"},
        {"\"name\":\"cats\"", "\"name\":[]", "name"},
        {"\"algorithm\":\"image-classification\",", "", "algorithm"},
        {"\"algorithm\":\"image-classification\"", "\"algorithm\":\"\"", "algorithm"},
        {"\"dataset\":\"s3://b/datasets/cats\",", "", "dataset"},
        {"\"dataset\":\"s3://b/datasets/cats\"", "\"dataset\":{}", "dataset"},
        {"\"output\":\"s3://b/trainings/job-1\",", "", "output"},
        {"\"output\":\"s3://b/trainings/job-1\"", "\"output\":true", "output"},
        {"{\"learning_rate\":0.001}", "[0.001]", "hyperparameters"},
        {"{\"learning_rate\":0.001}", "\"lr=1\"", "hyperparameters"},
        {"\"2024-05-01T12:00:00Z\"", "\"yesterday\"", "submitted_at"},
        {"\"2024-05-01T12:00:00Z\"", "\"2024-13-01T12:00:00Z\"", "submitted_at"},
        {"\"2024-05-01T12:00:00Z\"", "5", "submitted_at"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *t = edit(cases[i].from, cases[i].to);
        CHECK_MSG(t != NULL, "case %zu: pattern %s not found", i, cases[i].from);
        if (t) job_case(t, cases[i].field, __LINE__);
        free(t);
    }
    /* the id of a malformed job is recovered when possible */
    char *bad = edit("\"schema\":1", "\"schema\":9"), *id = lt_msg_peek_id(bad, strlen(bad));
    CHECK(id && !strcmp(id, "job-1"));
    free(id);
    free(bad);
    CHECK(lt_msg_peek_id("{not json", 9) == NULL);
    CHECK(lt_msg_peek_id("{\"id\":\"a/b\"}", 12) == NULL);
}

static void test_control(void) {
    lt_msg_control c = {LT_CONTROL_CANCEL, "job-7"}, d;
    lt_err err = {{0}};
    char *json = lt_msg_control_encode(&c, &err);
    CHECK(json && lt_msg_control_decode(json, strlen(json), &d, &err) == LT_OK && !strcmp(d.id, "job-7"));
    CHECK(d.type == LT_CONTROL_CANCEL);
    free(json);
    const char *bad[][2] = {
        {"{\"type\":\"cancel\",\"id\":\"a\"}", "schema"},
        {"{\"schema\":1,\"type\":\"pause\",\"id\":\"a\"}", "type"},
        {"{\"schema\":1,\"id\":\"a\"}", "type"},
        {"{\"schema\":1,\"type\":\"cancel\"}", "id"},
        {"{\"schema\":1,\"type\":\"cancel\",\"id\":\"a/../b\"}", "id"},
        {"{\"schema\":1,\"type\":\"cancel\",\"id\":3}", "id"},
        {"cancel a", "JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lt_status st = lt_msg_control_decode(bad[i][0], strlen(bad[i][0]), &d, &err);
        CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, bad[i][1]), "control %s: got \"%s\"", bad[i][0],
                  err.msg);
    }
    lt_msg_control e = {LT_CONTROL_CANCEL, "bad id"};
    CHECK(lt_msg_control_encode(&e, NULL) == NULL);
}

/* Encodes ev, decodes it back, and returns the decoded copy (caller frees). */
static lt_msg_event round_trip(const lt_msg_event *ev) {
    char *json = NULL;
    lt_err err = {{0}};
    lt_msg_event out = lt_msg_event_init(LT_EV_STATE, NULL, NULL, 0);
    CHECK_MSG(lt_msg_event_encode(ev, &json, &err) == LT_OK, "encode %s: %s",
              lt_msg_event_type_name(ev->type), err.msg);
    CHECK_MSG(json && lt_msg_event_decode(json, strlen(json), &out, &err) == LT_OK, "decode %s: %s", json,
              err.msg);
    CHECK(out.type == ev->type && out.job_id && !strcmp(out.job_id, "job-1") && out.worker &&
          !strcmp(out.worker, "w-1") && out.attempt == 2 && out.time && lt_msg_is_rfc3339(out.time));
    free(json);
    return out;
}

static void test_events(void) {
    cJSON *metrics = cJSON_Parse("{\"accuracy\":0.5,\"f1\":0.25}");
    cJSON *entry = cJSON_Parse("{\"loss\":1.5,\"step\":10}");
    lt_msg_event ev = lt_msg_event_init(LT_EV_STATE, "job-1", "w-1", 2), o;
    ev.state = LT_JOB_RUNNING;
    o = round_trip(&ev);
    CHECK(o.state == LT_JOB_RUNNING && o.error == NULL && o.resumed_from_step == -1);
    lt_msg_event_free(&o);
    ev.state = LT_JOB_FAILED;
    ev.error = "data set: no train/ folder";
    ev.resumed_from_step = 12;
    o = round_trip(&ev);
    CHECK(o.state == LT_JOB_FAILED && o.error && !strcmp(o.error, ev.error) && o.resumed_from_step == 12);
    lt_msg_event_free(&o);

    ev = lt_msg_event_init(LT_EV_PROGRESS, "job-1", "w-1", 2);
    ev.step = 3;
    ev.total_steps = 9;
    ev.epoch = 0.5;
    o = round_trip(&ev);
    CHECK(o.step == 3 && o.total_steps == 9 && o.epoch == 0.5);
    lt_msg_event_free(&o);

    ev = lt_msg_event_init(LT_EV_LOG, "job-1", "w-1", 2);
    ev.entry = entry;
    o = round_trip(&ev);
    CHECK(cJSON_Compare(o.entry, entry, 1));
    lt_msg_event_free(&o);

    ev = lt_msg_event_init(LT_EV_EVAL, "job-1", "w-1", 2);
    ev.split = "validation";
    ev.metrics = metrics;
    ev.step = 4;
    ev.epoch = 1;
    o = round_trip(&ev);
    CHECK(o.split && !strcmp(o.split, "validation") && cJSON_Compare(o.metrics, metrics, 1) && o.step == 4 &&
          o.epoch == 1);
    lt_msg_event_free(&o);

    ev = lt_msg_event_init(LT_EV_CHECKPOINT, "job-1", "w-1", 2);
    ev.step = 8;
    ev.uri = "s3://b/trainings/job-1/checkpoints/step-8";
    o = round_trip(&ev);
    CHECK(o.step == 8 && o.uri && !strcmp(o.uri, ev.uri));
    lt_msg_event_free(&o);

    ev = lt_msg_event_init(LT_EV_RESULT, "job-1", "w-1", 2);
    ev.metrics = metrics;
    ev.output = "s3://b/trainings/job-1";
    o = round_trip(&ev);
    CHECK(cJSON_Compare(o.metrics, metrics, 1) && o.output && !strcmp(o.output, ev.output));
    lt_msg_event_free(&o);

    /* encode refuses an event a consumer would refuse */
    char *json = NULL;
    lt_err err = {{0}};
    ev = lt_msg_event_init(LT_EV_CHECKPOINT, "job-1", "w-1", 2);
    CHECK(lt_msg_event_encode(&ev, &json, &err) == LT_ERR_ARG && strstr(err.msg, "uri") && !json);
    ev = lt_msg_event_init(LT_EV_STATE, "bad id", "w-1", 2);
    CHECK(lt_msg_event_encode(&ev, &json, &err) == LT_ERR_ARG && strstr(err.msg, "job_id"));

    const char *head = "{\"schema\":1,\"job_id\":\"j\",\"worker\":\"w\",\"attempt\":1,\"time\":\"2024-05-"
                       "01T12:00:00.5+09:00\",";
    const char *bad[][2] = {
        {"\"type\":\"state\",\"state\":\"DONE\"}", "state"},
        {"\"type\":\"state\"}", "state"},
        {"\"type\":\"state\",\"state\":\"FAILED\",\"error\":5}", "error"},
        {"\"type\":\"state\",\"state\":\"RUNNING\",\"resumed_from_step\":-2}", "resumed_from_step"},
        {"\"type\":\"progress\",\"step\":1.5,\"total_steps\":3,\"epoch\":0}", "step"},
        {"\"type\":\"progress\",\"step\":1,\"epoch\":0}", "total_steps"},
        {"\"type\":\"progress\",\"step\":1,\"total_steps\":3,\"epoch\":\"x\"}", "epoch"},
        {"\"type\":\"log\",\"entry\":[1]}", "entry"},
        {"\"type\":\"eval\",\"metrics\":{}}", "split"},
        {"\"type\":\"eval\",\"split\":\"validation\"}", "metrics"},
        {"\"type\":\"checkpoint\",\"step\":-1,\"uri\":\"u\"}", "step"},
        {"\"type\":\"result\",\"metrics\":{}}", "output"},
        {"\"type\":\"explode\"}", "type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *t = NULL;
        if (asprintf(&t, "%s%s", head, bad[i][0]) < 0) continue;
        lt_status st = lt_msg_event_decode(t, strlen(t), &o, &err);
        CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, bad[i][1]), "event %s: got \"%s\"", t, err.msg);
        CHECK(o.job_id == NULL);
        free(t);
    }
    const char *bad_common[][2] = {
        {"{\"schema\":1,\"worker\":\"w\",\"attempt\":1,\"time\":\"2024-05-01T12:00:00Z\",\"type\":\"log\","
         "\"entry\":{}}",
         "job_id"},
        {"{\"schema\":1,\"job_id\":\"j\",\"attempt\":1,\"time\":\"2024-05-01T12:00:00Z\",\"type\":\"log\","
         "\"entry\":{}}",
         "worker"},
        {"{\"schema\":1,\"job_id\":\"j\",\"worker\":\"w\",\"time\":\"2024-05-01T12:00:00Z\",\"type\":\"log\","
         "\"entry\":{}}",
         "attempt"},
        {"{\"schema\":1,\"job_id\":\"j\",\"worker\":\"w\",\"attempt\":1,\"time\":\"noon\",\"type\":\"log\","
         "\"entry\":{}}",
         "time"},
        {"{\"schema\":3,\"job_id\":\"j\",\"worker\":\"w\",\"attempt\":1,\"time\":\"2024-05-01T12:00:00Z\","
         "\"type\":\"log\",\"entry\":{}}",
         "schema"},
    };
    for (size_t i = 0; i < sizeof bad_common / sizeof *bad_common; i++) {
        lt_status st = lt_msg_event_decode(bad_common[i][0], strlen(bad_common[i][0]), &o, &err);
        CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, bad_common[i][1]), "event %s: got \"%s\"",
                  bad_common[i][0], err.msg);
    }
    cJSON_Delete(metrics);
    cJSON_Delete(entry);

    /* states and times */
    for (int s = 0; s < LT_JOB_STATE_COUNT; s++)
        CHECK((int)lt_job_state_parse(lt_job_state_name((lt_job_state)s)) == s);
    CHECK(lt_job_state_parse("running") == LT_JOB_STATE_COUNT);
    CHECK(lt_job_state_is_final(LT_JOB_CANCELLED) && !lt_job_state_is_final(LT_JOB_RUNNING));
    char now[40];
    lt_msg_now_rfc3339(now, sizeof now);
    CHECK(lt_msg_is_rfc3339(now));
    CHECK(lt_msg_is_rfc3339("2024-02-29T23:59:60-05:30") && !lt_msg_is_rfc3339("2024-02-29T23:59:60") &&
          !lt_msg_is_rfc3339("2024-02-29 2:00:00Z") && !lt_msg_is_rfc3339("2024-02-29T23:59:00.Z"));
}

static void test_config(void) {
    lt_kafka_config c;
    setenv("LATHE_KAFKA_BROKERS", "k1:9092,k2:9092", 1);
    setenv("LATHE_TOPIC_PREFIX", "dev.", 1);
    setenv("LATHE_KAFKA_SECURITY_PROTOCOL", "plaintext", 1);
    setenv("LATHE_KAFKA_SOCKET_TIMEOUT_MS", "12345", 1);
    CHECK(lt_kafka_config_init(&c, NULL) == LT_OK);
    CHECK(!strcmp(c.brokers, "k1:9092,k2:9092") && !strcmp(c.prefix, "dev."));
    int found = 0;
    for (int i = 0; i < c.n_props; i++) {
        if (!strcmp(c.props[i].name, "security.protocol") && !strcmp(c.props[i].value, "plaintext")) found++;
        if (!strcmp(c.props[i].name, "socket.timeout.ms") && !strcmp(c.props[i].value, "12345")) found++;
    }
    CHECK(found == 2);
    /* added properties go last (librdkafka applies them in order) and stop at LT_KAFKA_MAX_PROPS */
    int before = c.n_props;
    lt_kafka_config_add(&c, "socket.timeout.ms", "777");
    CHECK(c.n_props == before + 1 && !strcmp(c.props[before].name, "socket.timeout.ms") &&
          !strcmp(c.props[before].value, "777"));
    lt_kafka_config full = c;
    while (full.n_props < LT_KAFKA_MAX_PROPS)
        lt_kafka_config_add(&full, "client.rack", "r");
    lt_kafka_config_add(&full, "client.rack", "r");
    CHECK(full.n_props == LT_KAFKA_MAX_PROPS);
    char t[LT_KAFKA_TOPIC_MAX];
    CHECK(!strcmp(lt_kafka_topic(&c, LT_TOPIC_JOBS_STATE, t, sizeof t), "dev.jobs.state"));
    CHECK(!strcmp(lt_kafka_topic(&c, LT_TOPIC_DLQ, t, sizeof t), "dev.dlq"));
    lt_err err = {{0}};
    rd_kafka_conf_t *conf = lt_kafka_conf_new(&c, "x", &err);
    CHECK(conf != NULL);
    if (conf) rd_kafka_conf_destroy(conf);
    /* a bad passthrough property is reported by name */
    setenv("LATHE_KAFKA_NO_SUCH_THING", "1", 1);
    CHECK(lt_kafka_config_init(&c, NULL) == LT_OK);
    CHECK(lt_kafka_conf_new(&c, "x", &err) == NULL && strstr(err.msg, "no.such.thing"));
    CHECK(lt_kafka_config_set(&c, "b:1", "p.", &err) == LT_OK && !strcmp(c.brokers, "b:1") &&
          !strcmp(c.prefix, "p."));
    unsetenv("LATHE_KAFKA_NO_SUCH_THING");
    unsetenv("LATHE_KAFKA_SECURITY_PROTOCOL");
    unsetenv("LATHE_KAFKA_SOCKET_TIMEOUT_MS");
    unsetenv("LATHE_KAFKA_BROKERS");
    unsetenv("LATHE_TOPIC_PREFIX");
    CHECK(lt_kafka_config_init(&c, NULL) == LT_OK && !strcmp(c.brokers, "localhost:9092") &&
          !strcmp(c.prefix, "lathe.") && c.n_props == 0);
}

static const lt_opt_spec specs[] = {
    {"config", "TEST_LATHE_CONFIG", "FILE", NULL, "YAML file"},
    {"brokers", "TEST_LATHE_BROKERS", "LIST", "localhost:9092", "brokers"},
    {"storage", "TEST_LATHE_STORAGE", "URI", NULL, "storage"},
    {"worker-id", NULL, "ID", NULL, "id"},
    {"poll-ms", NULL, "N", "100", "poll"},
    {"verbose", "TEST_LATHE_VERBOSE", NULL, NULL, "switch"},
};
#define NSPECS (int)(sizeof specs / sizeof *specs)

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_options(const char *tmp) {
    char yaml[512], bad[512];
    snprintf(yaml, sizeof yaml, "%s/worker.yaml", tmp);
    snprintf(bad, sizeof bad, "%s/bad.yaml", tmp);
    write_text(yaml,
               "# worker settings\nbrokers: [y1:9092, y2:9092]\nstorage: s3://from-yaml\nworker-id: yaml-id\n"
               "poll-ms: 50\nverbose: yes\n");
    lt_opts o;
    lt_err err = {{0}};
    char *argv1[] = {"worker", "--config", yaml, "--worker-id=flag-id", NULL};
    setenv("TEST_LATHE_STORAGE", "/from/env", 1);
    CHECK(lt_opts_parse(&o, specs, NSPECS, 4, argv1, &err) == LT_OK);
    CHECK(!strcmp(lt_opts_get(&o, "brokers"), "y1:9092,y2:9092")); /* YAML over default, list joined */
    CHECK(!strcmp(lt_opts_get(&o, "storage"), "/from/env"));       /* env over YAML */
    CHECK(!strcmp(lt_opts_get(&o, "worker-id"), "flag-id"));       /* flag over YAML */
    int64_t poll = 0;
    CHECK(lt_opts_int(&o, "poll-ms", 1, 1000, &poll, &err) == LT_OK && poll == 50);
    CHECK(lt_opts_bool(&o, "verbose"));
    lt_opts_free(&o);
    unsetenv("TEST_LATHE_STORAGE");

    /* the config file named by the environment; defaults */
    setenv("TEST_LATHE_CONFIG", yaml, 1);
    char *argv2[] = {"worker", "--poll-ms", "2000", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv2, &err) == LT_OK);
    CHECK(!strcmp(lt_opts_get(&o, "storage"), "s3://from-yaml"));
    CHECK(lt_opts_int(&o, "poll-ms", 1, 1000, &poll, &err) == LT_ERR_ARG && strstr(err.msg, "--poll-ms"));
    lt_opts_free(&o);
    unsetenv("TEST_LATHE_CONFIG");

    /* errors name the flag, key or variable */
    char *argv3[] = {"worker", "--bogus", "1", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv3, &err) == LT_ERR_ARG && strstr(err.msg, "--bogus"));
    char *argv4[] = {"worker", "--storage", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 2, argv4, &err) == LT_ERR_ARG && strstr(err.msg, "--storage"));
    char *argv5[] = {"worker", "--verbose=1", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 2, argv5, &err) == LT_ERR_ARG && strstr(err.msg, "--verbose"));
    char *argv6[] = {"worker", "--config", bad, NULL};
    write_text(bad, "brokers: a\nstorgae: /x\n");
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv6, &err) == LT_ERR_ARG && strstr(err.msg, "storgae") &&
          strstr(err.msg, ":2"));
    write_text(bad, "brokers:\n  host: a\n");
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv6, &err) == LT_ERR_FORMAT && strstr(err.msg, "brokers"));
    write_text(bad, "brokers: [a, b\n");
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv6, &err) == LT_ERR_FORMAT && strstr(err.msg, "YAML"));
    write_text(bad, "verbose: maybe\n");
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv6, &err) == LT_ERR_ARG && strstr(err.msg, "verbose"));
    write_text(bad, "");
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv6, &err) == LT_OK);
    lt_opts_free(&o);
    char *argv7[] = {"worker", "--config", "/no/such/file.yaml", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 3, argv7, &err) == LT_ERR_IO &&
          strstr(err.msg, "/no/such/file.yaml"));
    setenv("TEST_LATHE_VERBOSE", "perhaps", 1);
    char *argv8[] = {"worker", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 1, argv8, &err) == LT_ERR_ARG &&
          strstr(err.msg, "TEST_LATHE_VERBOSE"));
    unsetenv("TEST_LATHE_VERBOSE");
    char *argv9[] = {"worker", "--help", NULL};
    CHECK(lt_opts_parse(&o, specs, NSPECS, 2, argv9, &err) == LT_OK && o.help);
    lt_opts_free(&o);
}

/* Polls rk until a message arrives on topic or timeout_ms passes; returns it (caller destroys) or NULL. */
static rd_kafka_message_t *next_message(rd_kafka_t *rk, int timeout_ms) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m && !m->err) return m;
        if (m) rd_kafka_message_destroy(m);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > timeout_ms) return NULL;
    }
}

static const char *header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size) {
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t n;
    buf[0] = 0;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n)) return buf;
    snprintf(buf, size, "%.*s", (int)n, (const char *)v);
    return buf;
}

static void test_kafka(void) {
    lt_kafka_config c;
    lt_err err = {{0}};
    lt_kafka_config_init(&c, NULL);
    lt_kafka_config_set(&c, NULL, "t1.", NULL);
    c.jobs_partitions = 2;
    lt_kafka_mock *m = lt_kafka_mock_new(3, &c, &err);
    CHECK_MSG(m != NULL, "mock: %s", err.msg);
    if (!m) return;
    lt_kafka_config_set(&c, lt_kafka_mock_bootstraps(m), NULL, NULL);

    /* fault-injection commands */
    CHECK(lt_kafka_mock_command(m, "rtt all 0", &err) == LT_OK);
    CHECK(lt_kafka_mock_command(m, "# comment", &err) == LT_OK);
    CHECK(lt_kafka_mock_command(m, "down 4", &err) == LT_ERR_ARG && strstr(err.msg, "1..3"));
    CHECK(lt_kafka_mock_command(m, "error Produce 2 NO_SUCH_ERROR", &err) == LT_ERR_ARG &&
          strstr(err.msg, "NO_SUCH_ERROR"));
    CHECK(lt_kafka_mock_command(m, "error Bake 2 NOT_LEADER_FOR_PARTITION", &err) == LT_ERR_ARG &&
          strstr(err.msg, "Bake"));
    CHECK(lt_kafka_mock_command(m, "explode", &err) == LT_ERR_ARG && strstr(err.msg, "explode"));
    CHECK(lt_kafka_mock_command(m, "topic t1.extra 3", &err) == LT_OK);

    lt_kafka_producer *p = lt_kafka_producer_new(&c, "test-producer", 30000, &err);
    CHECK_MSG(p != NULL, "producer: %s", err.msg);
    char events[LT_KAFKA_TOPIC_MAX], dlq[LT_KAFKA_TOPIC_MAX];
    lt_kafka_topic(&c, LT_TOPIC_EVENTS, events, sizeof events);
    lt_kafka_topic(&c, LT_TOPIC_DLQ, dlq, sizeof dlq);
    /* transient produce errors are retried inside the idempotent producer */
    CHECK(lt_kafka_mock_command(m, "error Produce 2 NOT_ENOUGH_REPLICAS", &err) == LT_OK);
    CHECK_MSG(lt_kafka_produce_sync(p, events, "job-1", "one", 3, NULL, 0, &err) == LT_OK, "sync: %s",
              err.msg);
    /* every broker down, a message queued, brokers back: it is delivered once */
    CHECK(lt_kafka_mock_command(m, "down all", &err) == LT_OK);
    CHECK(lt_kafka_produce(p, events, "job-1", "two", 3, NULL, 0, &err) == LT_OK);
    lt_kafka_producer_poll(p, 500);
    CHECK(lt_kafka_mock_command(m, "up all", &err) == LT_OK);
    CHECK_MSG(lt_kafka_producer_flush(p, 20000, &err) == LT_OK, "flush: %s", err.msg);
    CHECK(lt_kafka_producer_failures(p) == 0);

    /* a consumer group reads both back in order */
    rd_kafka_t *rk = lt_kafka_consumer_new(&c, "test-consumer", "test-group", NULL, NULL, 0, &err);
    const char *topics[] = {events};
    CHECK(rk && lt_kafka_subscribe(rk, topics, 1, &err) == LT_OK);
    rd_kafka_message_t *a = next_message(rk, 15000), *b = a ? next_message(rk, 5000) : NULL;
    CHECK(a && b && a->len == 3 && !memcmp(a->payload, "one", 3) && b->len == 3 &&
          !memcmp(b->payload, "two", 3));
    if (a) {
        /* DLQ: same key and value, with error and source headers */
        CHECK(lt_kafka_dlq_publish(p, &c, a, "not a job", &err) == LT_OK);
        CHECK(lt_kafka_store_offset(rk, events, a->partition, a->offset, &err) == LT_OK);
    }
    rd_kafka_t *reader = lt_kafka_reader_new(&c, "test-reader", &err);
    CHECK(reader && lt_kafka_reader_assign_all(reader, dlq, 1, 5000, &err) == LT_OK);
    rd_kafka_message_t *d = reader ? next_message(reader, 10000) : NULL;
    char h[512], src[512];
    CHECK(d && d->len == 3 && !memcmp(d->payload, "one", 3) && d->key_len == 5 &&
          !memcmp(d->key, "job-1", 5));
    if (d && a) {
        CHECK(!strcmp(header(d, "error", h, sizeof h), "not a job"));
        snprintf(src, sizeof src, "%s/%d/%lld", events, (int)a->partition, (long long)a->offset);
        CHECK_MSG(!strcmp(header(d, "source", h, sizeof h), src), "source header %s, expected %s", h, src);
    }
    /* the stored offset is committed */
    if (a) {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, events, a->partition);
        int64_t committed = -1;
        for (int i = 0; i < 50 && committed != a->offset + 1; i++) {
            if (!rd_kafka_committed(rk, l, 2000)) committed = l->elems[0].offset;
            usleep(100000);
        }
        CHECK_MSG(committed == a->offset + 1, "committed %lld, expected %lld", (long long)committed,
                  (long long)a->offset + 1);
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (a) rd_kafka_message_destroy(a);
    if (b) rd_kafka_message_destroy(b);
    if (d) rd_kafka_message_destroy(d);
    if (reader) {
        rd_kafka_consumer_close(reader);
        rd_kafka_destroy(reader);
    }
    if (rk) {
        lt_kafka_consumer_destroy(rk, 1);
    }
    lt_kafka_producer_destroy(p);
    /* the mock cluster has no CreateTopics: a clear transient error within the timeout, not a hang */
    lt_status ct = lt_kafka_create_topics(&c, 1000, &err);
    CHECK_MSG(ct == LT_ERR_IO && strstr(err.msg, "creating topics"), "create topics: %d %s", (int)ct,
              err.msg);
    lt_kafka_mock_destroy(m);
}

static void note_assigned(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                          void *opaque) {
    rd_kafka_error_t *error = NULL;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        *(int *)opaque = 1;
        error = rd_kafka_incremental_assign(rk, parts);
    } else {
        error = rd_kafka_incremental_unassign(rk, parts);
    }
    if (error) rd_kafka_error_destroy(error);
}

/* A member stopped while its group still rebalances to let it in (joined, no assignment yet): librdkafka
 * before 2.3.0 aborts the process in rd_kafka_destroy (issue #4312). lt_kafka_consumer_destroy must return
 * instead, at several points of the join; the member already in the group keeps working. */
static void test_consumer_stopped_before_assignment(void) {
    lt_kafka_config c;
    lt_err err = {{0}};
    lt_kafka_config_init(&c, NULL);
    lt_kafka_config_set(&c, NULL, "t2.", NULL);
    c.jobs_partitions = 2;
    /* the mock coordinator waits up to a session timeout for the members of a rebalance: keep it short */
    lt_kafka_config_add(&c, "session.timeout.ms", "6000");
    lt_kafka_config_add(&c, "heartbeat.interval.ms", "500");
    lt_kafka_mock *m = lt_kafka_mock_new(1, &c, &err);
    CHECK_MSG(m != NULL, "mock: %s", err.msg);
    if (!m) return;
    lt_kafka_config_set(&c, lt_kafka_mock_bootstraps(m), NULL, NULL);
    char topic[64];
    lt_kafka_topic(&c, LT_TOPIC_JOBS, topic, sizeof topic);
    const char *topics[] = {topic};
    int first_assigned = 0;
    rd_kafka_t *first = lt_kafka_consumer_new(&c, "first", "g", note_assigned, &first_assigned, 0, &err);
    CHECK(first && lt_kafka_subscribe(first, topics, 1, &err) == LT_OK);
    for (int i = 0; first && i < 150 && !first_assigned; i++) {
        rd_kafka_message_t *msg = rd_kafka_consumer_poll(first, 100);
        if (msg) rd_kafka_message_destroy(msg);
    }
    CHECK_MSG(first_assigned, "the first member got no assignment in 15 s");
    /* SyncGroup fails from now on: a member that joins gets its JoinGroup answer and then no assignment */
    CHECK(lt_kafka_mock_command(m, "error SyncGroup 1000 REBALANCE_IN_PROGRESS", &err) == LT_OK);
    /* once the late member has its JoinGroup answer (its member id), it waits for an assignment that
     * does not come: stopped then, and also right after it subscribed */
    for (int k = 0; first_assigned && k < 2; k++) {
        int late_assigned = 0, joined = 0;
        rd_kafka_t *late = lt_kafka_consumer_new(&c, "late", "g", note_assigned, &late_assigned, 0, &err);
        CHECK(late && lt_kafka_subscribe(late, topics, 1, &err) == LT_OK);
        for (int t = 0; late && k == 1 && t < 600 && !joined; t++) {
            rd_kafka_message_t *msg = rd_kafka_consumer_poll(late, 50);
            if (msg) rd_kafka_message_destroy(msg);
            msg = rd_kafka_consumer_poll(first, 0);
            if (msg) rd_kafka_message_destroy(msg);
            char *id = rd_kafka_memberid(late);
            joined = id && *id;
            if (id) rd_kafka_mem_free(late, id);
        }
        CHECK_MSG(k == 0 || joined, "the late member got no JoinGroup answer in 30 s");
        CHECK(!late_assigned);
        lt_kafka_consumer_destroy(late, 1); /* here librdkafka 2.0 aborted */
    }
    lt_kafka_consumer_destroy(first, 1);
    lt_kafka_mock_destroy(m);
}

int main(void) {
    char tmp[] = "/tmp/lathe_test_messaging_XXXXXX";
    if (!mkdtemp(tmp)) return 1;
    test_jobs();
    test_control();
    test_events();
    test_config();
    test_options(tmp);
    test_kafka();
    test_consumer_stopped_before_assignment();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmp);
    return check_summary("test_messaging");
}
