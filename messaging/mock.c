/* mock.c - librdkafka's mock cluster with lathe's topics and a tiny fault-injection command language. */
#define _GNU_SOURCE
#include "mock.h"

#include <librdkafka/rdkafka_mock.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct lt_kafka_mock {
    rd_kafka_t *rk;                   /* owns the cluster's threads (test.mock.num.brokers) */
    rd_kafka_mock_cluster_t *cluster; /* borrowed from rk */
    int brokers;                      /* ids 1..brokers */
};

lt_kafka_mock *lt_kafka_mock_new(int brokers, const lt_kafka_config *c, lt_err *err) {
    if (brokers < 1 || brokers > 16) {
        lt_errorf(err, LT_ERR_ARG, "mock cluster: --brokers must be 1..16, got %d", brokers);
        return NULL;
    }
    lt_kafka_mock *m = calloc(1, sizeof *m);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char n[16], why[512];
    snprintf(n, sizeof n, "%d", brokers);
    if (!m || !conf) {
        free(m);
        if (conf) rd_kafka_conf_destroy(conf);
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    /* The mock cluster lives on this handle's threads; the handle itself is never used to produce. */
    if (lt_kafka_conf_set(conf, "test.mock.num.brokers", n, err) != LT_OK ||
        lt_kafka_conf_set(conf, "client.id", "lathe-mock-kafka", err) != LT_OK ||
        !(m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
        if (!m->rk) {
            if (!err || !err->msg[0]) lt_errorf(err, LT_ERR_IO, "mock cluster: %s", why);
            rd_kafka_conf_destroy(conf);
        }
        free(m);
        return NULL;
    }
    conf = NULL; /* rd_kafka_new took it over */
    m->cluster = rd_kafka_handle_mock_cluster(m->rk);
    m->brokers = brokers;
    if (!m->cluster) {
        lt_errorf(err, LT_ERR_IO, "mock cluster: librdkafka did not start one");
        lt_kafka_mock_destroy(m);
        return NULL;
    }
    int repl = brokers < 3 ? brokers : 3;
    for (int t = 0; t < LT_TOPIC_COUNT; t++) {
        char name[LT_KAFKA_TOPIC_MAX];
        int parts = t == LT_TOPIC_JOBS || t == LT_TOPIC_EVENTS ? c->jobs_partitions : 1;
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(
            m->cluster, lt_kafka_topic(c, (lt_topic)t, name, sizeof name), parts > 0 ? parts : 1, repl);
        if (e) {
            lt_errorf(err, LT_ERR_IO, "mock cluster: creating %s: %s", name, rd_kafka_err2str(e));
            lt_kafka_mock_destroy(m);
            return NULL;
        }
    }
    return m;
}

void lt_kafka_mock_destroy(lt_kafka_mock *m) {
    if (!m) return;
    if (m->rk) rd_kafka_destroy(m->rk); /* destroys the cluster it owns */
    free(m);
}

const char *lt_kafka_mock_bootstraps(const lt_kafka_mock *m) {
    return rd_kafka_mock_cluster_bootstraps(m->cluster);
}

int lt_kafka_mock_brokers(const lt_kafka_mock *m) {
    return m->brokers;
}

/* ---- commands ---- */

static const struct {
    const char *name;
    int16_t key;
} apis[] = {{"Produce", 0},        {"Fetch", 1},       {"ListOffsets", 2},      {"Metadata", 3},
            {"OffsetCommit", 8},   {"OffsetFetch", 9}, {"FindCoordinator", 10}, {"JoinGroup", 11},
            {"Heartbeat", 12},     {"LeaveGroup", 13}, {"SyncGroup", 14},       {"ApiVersions", 18},
            {"InitProducerId", 22}};

/* A whole-token integer; 0 when tok is not one. */
static int parse_int(const char *tok, long *out) {
    char *end;
    if (!tok || !*tok) return 0;
    *out = strtol(tok, &end, 10);
    return *end == 0;
}

/* "all" -> -1, else a broker id in 1..n. */
static lt_status parse_broker(const lt_kafka_mock *m, const char *tok, int32_t *id, lt_err *err) {
    long v;
    if (tok && !strcmp(tok, "all")) {
        *id = -1;
        return LT_OK;
    }
    if (!parse_int(tok, &v) || v < 1 || v > m->brokers)
        return lt_errorf(err, LT_ERR_ARG, "mock command: broker must be 1..%d or \"all\", got \"%s\"",
                         m->brokers, tok ? tok : "");
    *id = (int32_t)v;
    return LT_OK;
}

static lt_status parse_api(const char *tok, int16_t *key, lt_err *err) {
    long v;
    for (size_t i = 0; tok && i < sizeof apis / sizeof *apis; i++)
        if (!strcasecmp(tok, apis[i].name)) {
            *key = apis[i].key;
            return LT_OK;
        }
    if (parse_int(tok, &v) && v >= 0 && v < 100) {
        *key = (int16_t)v;
        return LT_OK;
    }
    return lt_errorf(err, LT_ERR_ARG,
                     "mock command: unknown API \"%s\" (Produce, Fetch, Metadata, ... or a number)",
                     tok ? tok : "");
}

static lt_status parse_error(const char *tok, rd_kafka_resp_err_t *code, lt_err *err) {
    long v;
    if (parse_int(tok, &v)) {
        *code = (rd_kafka_resp_err_t)v;
        return LT_OK;
    }
    const struct rd_kafka_err_desc *d;
    size_t n;
    rd_kafka_get_err_descs(&d, &n);
    for (size_t i = 0; tok && i < n; i++)
        if (d[i].name && !strcasecmp(d[i].name, tok)) {
            *code = d[i].code;
            return LT_OK;
        }
    return lt_errorf(err, LT_ERR_ARG, "mock command: unknown Kafka error \"%s\"", tok ? tok : "");
}

lt_status lt_kafka_mock_command(lt_kafka_mock *m, const char *line, lt_err *err) {
    char buf[512], *tok[6] = {0}, *save = NULL;
    int n = 0;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *t = strtok_r(buf, " \t\r\n", &save); t && n < 6; t = strtok_r(NULL, " \t\r\n", &save))
        tok[n++] = t;
    if (n == 0 || tok[0][0] == '#') return LT_OK;
    int32_t broker;
    long v, w;
    lt_status st;
    rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!strcmp(tok[0], "down") || !strcmp(tok[0], "up")) {
        if (n != 2) return lt_errorf(err, LT_ERR_ARG, "mock command: usage: %s <broker|all>", tok[0]);
        if ((st = parse_broker(m, tok[1], &broker, err)) != LT_OK) return st;
        e = tok[0][0] == 'd' ? rd_kafka_mock_broker_set_down(m->cluster, broker)
                             : rd_kafka_mock_broker_set_up(m->cluster, broker);
    } else if (!strcmp(tok[0], "rtt")) {
        if (n != 3 || !parse_int(tok[2], &v) || v < 0)
            return lt_errorf(err, LT_ERR_ARG, "mock command: usage: rtt <broker|all> <ms>");
        if ((st = parse_broker(m, tok[1], &broker, err)) != LT_OK) return st;
        e = rd_kafka_mock_broker_set_rtt(m->cluster, broker, (int)v);
    } else if (!strcmp(tok[0], "error")) {
        int16_t api = 0;
        rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (n != 4 || !parse_int(tok[2], &v) || v < 1 || v > 1000)
            return lt_errorf(err, LT_ERR_ARG, "mock command: usage: error <api> <count 1..1000> <error>");
        if ((st = parse_api(tok[1], &api, err)) != LT_OK || (st = parse_error(tok[3], &code, err)) != LT_OK)
            return st;
        rd_kafka_resp_err_t codes[1000];
        for (long i = 0; i < v; i++)
            codes[i] = code;
        rd_kafka_mock_push_request_errors_array(m->cluster, api, (size_t)v, codes);
    } else if (!strcmp(tok[0], "leader")) {
        if (n != 4 || !parse_int(tok[2], &v) || v < 0)
            return lt_errorf(err, LT_ERR_ARG, "mock command: usage: leader <topic> <partition> <broker>");
        if ((st = parse_broker(m, tok[3], &broker, err)) != LT_OK) return st;
        e = rd_kafka_mock_partition_set_leader(m->cluster, tok[1], (int32_t)v, broker);
    } else if (!strcmp(tok[0], "topic")) {
        if (n != 3 || !parse_int(tok[2], &w) || w < 1 || w > 10000)
            return lt_errorf(err, LT_ERR_ARG, "mock command: usage: topic <name> <partitions>");
        e = rd_kafka_mock_topic_create(m->cluster, tok[1], (int)w, m->brokers < 3 ? m->brokers : 3);
    } else {
        return lt_errorf(err, LT_ERR_ARG,
                         "mock command: unknown command \"%s\" (down, up, rtt, error, leader, topic)",
                         tok[0]);
    }
    if (e) return lt_errorf(err, LT_ERR_ARG, "mock command \"%s\": %s", tok[0], rd_kafka_err2str(e));
    return LT_OK;
}
