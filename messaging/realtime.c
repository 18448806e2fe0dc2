/* realtime.c - real-time inference message helpers and single-topic creation/deletion. */
#define _GNU_SOURCE
#include "realtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *lt_rt_endpoint_topic(const lt_kafka_config *c, const char *endpoint, char *buf, size_t size) {
    snprintf(buf, size, "%sendpoint.%s", c->prefix, endpoint);
    return buf;
}

const char *lt_rt_endpoint_regex(const lt_kafka_config *c, char *buf, size_t size) {
    size_t o = 0;
    if (size == 0) return buf;
    const char *start = "^";
    for (const char *p = start; *p && o + 1 < size; p++)
        buf[o++] = *p;
    for (const char *p = c->prefix; *p && o + 2 < size; p++) {
        if (strchr(".^$*+?()[]{}|\\", *p)) buf[o++] = '\\';
        buf[o++] = *p;
    }
    snprintf(buf + o, size - o, "endpoint\\..+");
    return buf;
}

int lt_rt_valid_name(const char *s, size_t max_len) {
    if (!s || !*s || strlen(s) > max_len) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '_' || *p == '-'))
            return 0;
    return 1;
}

int lt_rt_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t size) {
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    size_t n = 0;
    /* the last occurrence wins, as for HTTP headers repeated by a proxy */
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, &n) || n >= size) return 0;
    if (n) memcpy(buf, v, n);
    buf[n] = 0;
    return memchr(buf, 0, n) == NULL; /* an embedded NUL is a malformed header */
}

static const struct {
    lt_status st;
    const char *name;
} results[] = {
    {LT_OK, "ok"},
    {LT_ERR_NOMEM, "nomem"},
    {LT_ERR_ARG, "arg"},
    {LT_ERR_IO, "io"},
    {LT_ERR_FORMAT, "format"},
    {LT_ERR_STATE, "state"},
    {LT_ERR_CANCELLED, "cancelled"},
    {LT_ERR_NOT_FOUND, "not_found"},
    {LT_ERR_TIMEOUT, "timeout"},
    {LT_ERR_UNAVAILABLE, "unavailable"},
};

const char *lt_rt_result_str(lt_status s) {
    for (size_t i = 0; i < sizeof results / sizeof *results; i++)
        if (results[i].st == s) return results[i].name;
    return "io";
}

lt_status lt_rt_result_parse(const char *s) {
    for (size_t i = 0; s && i < sizeof results / sizeof *results; i++)
        if (!strcmp(results[i].name, s)) return results[i].st;
    return LT_ERR_IO;
}

int64_t lt_rt_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int lt_kafka_config_has(const lt_kafka_config *c, const char *name) {
    for (int i = 0; i < c->n_props; i++)
        if (!strcmp(c->props[i].name, name)) return 1;
    return 0;
}

static double mono_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* An admin handle (a producer: it may auto-create topics through metadata requests). */
static rd_kafka_t *admin_new(const lt_kafka_config *c, lt_err *err) {
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, "lathe-admin", err);
    char why[512];
    if (!conf || lt_kafka_conf_set(conf, "allow.auto.create.topics", "true", err) != LT_OK) {
        if (conf) rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        lt_errorf(err, LT_ERR_ARG, "Kafka admin client: %s", why);
    }
    return rk;
}

/* Polls metadata for topic until it has partitions (a metadata request also auto-creates it where the
 * cluster allows). 1 when it exists. */
static int wait_topic(rd_kafka_t *rk, const char *topic, double until, char *why, size_t why_size) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    int ok = 0;
    while (t && !ok) {
        const struct rd_kafka_metadata *md = NULL;
        double left = until - mono_ms();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, left > 100 ? (int)left : 100);
        if (!e && md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0)
            ok = 1;
        else
            snprintf(why, why_size, "%s", rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err : 0));
        if (md) rd_kafka_metadata_destroy(md);
        if (ok || mono_ms() >= until) break;
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    if (t) rd_kafka_topic_destroy(t);
    return ok;
}

/* Runs one admin call (create or delete a single topic) and returns the topic's error: the request's own
 * error when the call failed as a whole, else the result for the topic. */
static rd_kafka_resp_err_t admin_call(rd_kafka_t *rk, int create, const char *topic, int partitions,
                                      int replication, int timeout_ms, char *why, size_t why_size) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, create ? RD_KAFKA_ADMIN_OP_CREATETOPICS
                                                                       : RD_KAFKA_ADMIN_OP_DELETETOPICS);
    char ebuf[256];
    rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, ebuf, sizeof ebuf);
    rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, ebuf, sizeof ebuf);
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_NewTopic_t *nt = NULL;
    rd_kafka_DeleteTopic_t *dt = NULL;
    if (create) {
        nt = rd_kafka_NewTopic_new(topic, partitions, replication, ebuf, sizeof ebuf);
        if (!nt) {
            snprintf(why, why_size, "%s", ebuf);
            e = RD_KAFKA_RESP_ERR__INVALID_ARG;
        } else {
            rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
        }
    } else {
        dt = rd_kafka_DeleteTopic_new(topic);
        rd_kafka_DeleteTopics(rk, &dt, 1, ao, q);
    }
    rd_kafka_event_t *ev = e ? NULL : rd_kafka_queue_poll(q, timeout_ms + 2000);
    if (!e && !ev) {
        e = RD_KAFKA_RESP_ERR__TIMED_OUT;
        snprintf(why, why_size, "no answer within %d ms", timeout_ms);
    } else if (ev && rd_kafka_event_error(ev)) {
        e = rd_kafka_event_error(ev);
        snprintf(why, why_size, "%s", rd_kafka_event_error_string(ev));
    } else if (ev) {
        size_t n = 0;
        const rd_kafka_topic_result_t **r =
            create ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n)
                   : rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(ev), &n);
        if (n >= 1 && (e = rd_kafka_topic_result_error(r[0])))
            snprintf(why, why_size, "%s",
                     rd_kafka_topic_result_error_string(r[0]) ? rd_kafka_topic_result_error_string(r[0])
                                                              : rd_kafka_err2str(e));
    }
    if (ev) rd_kafka_event_destroy(ev);
    if (nt) rd_kafka_NewTopic_destroy(nt);
    if (dt) rd_kafka_DeleteTopic_destroy(dt);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    return e;
}

/* 1 when the cluster has a controller among its brokers. librdkafka's mock cluster reports controller 0,
 * which is none of its brokers (ids 1..N), and an admin request would wait for it until it times out. */
static int has_controller(rd_kafka_t *rk, int timeout_ms) {
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, NULL, &md, timeout_ms) || !md) return 1; /* unknown: try the admin call */
    int32_t ctrl = rd_kafka_controllerid(rk, 0);
    int found = 0;
    for (int i = 0; i < md->broker_cnt; i++)
        found |= md->brokers[i].id == ctrl;
    rd_kafka_metadata_destroy(md);
    return found;
}

static int unsupported(rd_kafka_resp_err_t e) {
    return e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE || e == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION;
}

lt_status lt_kafka_create_topic(const lt_kafka_config *c, const char *topic, int partitions, int timeout_ms,
                                lt_err *err) {
    rd_kafka_t *rk = admin_new(c, err);
    if (!rk) return LT_ERR_ARG;
    double until = mono_ms() + timeout_ms;
    char why[512] = "";
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (has_controller(rk, timeout_ms))
        e = admin_call(rk, 1, topic, partitions > 0 ? partitions : 1, c->replication, timeout_ms, why,
                       sizeof why);
    lt_status st = LT_OK;
    if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && !unsupported(e)) {
        st = lt_errorf(err,
                       e == RD_KAFKA_RESP_ERR__TIMED_OUT || e == RD_KAFKA_RESP_ERR__TRANSPORT
                           ? LT_ERR_UNAVAILABLE
                           : LT_ERR_IO,
                       "creating topic %s: %s", topic, why);
    } else if (!wait_topic(rk, topic, until, why, sizeof why)) {
        st = lt_errorf(err, LT_ERR_UNAVAILABLE, "topic %s is not available after %d ms: %s", topic,
                       timeout_ms, why);
    }
    rd_kafka_destroy(rk);
    return st;
}

lt_status lt_kafka_delete_topic(const lt_kafka_config *c, const char *topic, int timeout_ms, lt_err *err) {
    rd_kafka_t *rk = admin_new(c, err);
    if (!rk) return LT_ERR_ARG;
    char why[512] = "";
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (has_controller(rk, timeout_ms)) e = admin_call(rk, 0, topic, 0, 0, timeout_ms, why, sizeof why);
    lt_status st = LT_OK;
    if (e && e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && !unsupported(e))
        st = lt_errorf(err, e == RD_KAFKA_RESP_ERR__TIMED_OUT ? LT_ERR_UNAVAILABLE : LT_ERR_IO,
                       "deleting topic %s: %s", topic, why);
    rd_kafka_destroy(rk);
    return st;
}
