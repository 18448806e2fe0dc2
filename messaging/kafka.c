/* kafka.c - configuration, topic names, the idempotent producer, consumers, DLQ and topic creation. */
#define _GNU_SOURCE
#include "kafka.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char **environ;

/* ---- configuration ---- */

static lt_status copy_str(char *dst, size_t size, const char *src, const char *what, lt_err *err) {
    if (strlen(src) >= size)
        return lt_errorf(err, LT_ERR_ARG, "%s is too long (at most %zu bytes)", what, size - 1);
    memcpy(dst, src, strlen(src) + 1);
    return LT_OK;
}

lt_status lt_kafka_config_init(lt_kafka_config *c, lt_err *err) {
    memset(c, 0, sizeof *c);
    snprintf(c->brokers, sizeof c->brokers, "localhost:9092");
    snprintf(c->prefix, sizeof c->prefix, "lathe.");
    c->jobs_partitions = 8;
    c->replication = -1;
    lt_status st = LT_OK;
    const char *v = getenv("LATHE_KAFKA_BROKERS");
    if (v && *v && st == LT_OK) st = copy_str(c->brokers, sizeof c->brokers, v, "LATHE_KAFKA_BROKERS", err);
    v = getenv("LATHE_TOPIC_PREFIX");
    if (v && st == LT_OK) st = copy_str(c->prefix, sizeof c->prefix, v, "LATHE_TOPIC_PREFIX", err);
    static const char pre[] = "LATHE_KAFKA_";
    for (char **e = environ; e && *e && st == LT_OK; e++) {
        if (strncmp(*e, pre, sizeof pre - 1) != 0) continue;
        const char *name = *e + sizeof pre - 1, *eq = strchr(name, '=');
        if (!eq || eq == name || !strncmp(name, "BROKERS=", 8)) continue;
        if (c->n_props == LT_KAFKA_MAX_PROPS) {
            st = lt_errorf(err, LT_ERR_ARG, "more than %d LATHE_KAFKA_* variables", LT_KAFKA_MAX_PROPS);
            break;
        }
        lt_kafka_prop *p = &c->props[c->n_props];
        size_t n = (size_t)(eq - name);
        if (n >= sizeof p->name || strlen(eq + 1) >= sizeof p->value) {
            st = lt_errorf(err, LT_ERR_ARG, "LATHE_KAFKA_%.*s is too long", (int)(n < 64 ? n : 64), name);
            break;
        }
        for (size_t i = 0; i < n; i++)
            p->name[i] = name[i] == '_' ? '.' : (char)tolower((unsigned char)name[i]);
        p->name[n] = 0;
        snprintf(p->value, sizeof p->value, "%s", eq + 1);
        c->n_props++;
    }
    return st;
}

void lt_kafka_config_add(lt_kafka_config *c, const char *name, const char *value) {
    if (c->n_props >= LT_KAFKA_MAX_PROPS) return;
    snprintf(c->props[c->n_props].name, sizeof c->props[c->n_props].name, "%s", name);
    snprintf(c->props[c->n_props].value, sizeof c->props[c->n_props].value, "%s", value);
    c->n_props++;
}

lt_status lt_kafka_config_set(lt_kafka_config *c, const char *brokers, const char *prefix, lt_err *err) {
    lt_status st = LT_OK;
    if (brokers && *brokers) st = copy_str(c->brokers, sizeof c->brokers, brokers, "--brokers", err);
    if (prefix && st == LT_OK) st = copy_str(c->prefix, sizeof c->prefix, prefix, "--topic-prefix", err);
    return st;
}

static const char *const suffixes[LT_TOPIC_COUNT] = {"jobs", "control", "events", "jobs.state", "dlq",
                                                      "registry"};

const char *lt_kafka_topic_suffix(lt_topic t) {
    return t >= 0 && t < LT_TOPIC_COUNT ? suffixes[t] : "unknown";
}

const char *lt_kafka_topic(const lt_kafka_config *c, lt_topic t, char *buf, size_t size) {
    snprintf(buf, size, "%s%s", c->prefix, lt_kafka_topic_suffix(t));
    return buf;
}

lt_status lt_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, lt_err *err) {
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) != RD_KAFKA_CONF_OK)
        return lt_errorf(err, LT_ERR_ARG, "Kafka property %s: %s", name, why);
    return LT_OK;
}

/* librdkafka's own log lines go to stderr with a "kafka" tag, as the rest of lathe's logs. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    fprintf(stderr, "kafka %s [%s] %s\n", rd_kafka_name(rk), fac, buf);
}

rd_kafka_conf_t *lt_kafka_conf_new(const lt_kafka_config *c, const char *client_id, lt_err *err) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    lt_status st = LT_OK;
    for (int i = 0; i < c->n_props && st == LT_OK; i++)
        st = lt_kafka_conf_set(conf, c->props[i].name, c->props[i].value, err);
    if (st == LT_OK) st = lt_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err);
    if (st == LT_OK && client_id && *client_id) st = lt_kafka_conf_set(conf, "client.id", client_id, err);
    if (st != LT_OK) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

/* ---- producer ---- */

/* Whether a passthrough property (LATHE_KAFKA_<PROPERTY>, or one a caller added) sets name. */
static int has_prop(const lt_kafka_config *c, const char *name) {
    for (int i = 0; i < c->n_props; i++)
        if (!strcmp(c->props[i].name, name)) return 1;
    return 0;
}

/* What a synchronous produce waits on; lives on the waiting thread's stack. */
typedef struct {
    int done;                /* set under the producer's lock by the delivery callback */
    rd_kafka_resp_err_t err; /* delivery result */
} delivery;

struct lt_kafka_producer {
    rd_kafka_t *rk;
    pthread_mutex_t lock; /* guards every delivery.done and failures */
    pthread_cond_t cond;  /* broadcast on every delivery report */
    int64_t failures;     /* failed asynchronous deliveries */
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    lt_kafka_producer *p = opaque;
    delivery *d = m->_private;
    pthread_mutex_lock(&p->lock);
    if (d) {
        d->err = m->err;
        d->done = 1;
    } else if (m->err) {
        p->failures++;
        fprintf(stderr, "kafka: delivery to %s failed: %s\n", rd_kafka_topic_name(m->rkt),
                rd_kafka_err2str(m->err));
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

lt_kafka_producer *lt_kafka_producer_new(const lt_kafka_config *c, const char *client_id,
                                         int message_timeout_ms, lt_err *err) {
    return lt_kafka_producer_new_linger(c, client_id, message_timeout_ms, 5, err);
}

lt_kafka_producer *lt_kafka_producer_new_linger(const lt_kafka_config *c, const char *client_id,
                                                int message_timeout_ms, int linger_ms, lt_err *err) {
    lt_kafka_producer *p = calloc(1, sizeof *p);
    if (!p) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, client_id, err);
    char tmo[32], why[512], linger[32];
    snprintf(tmo, sizeof tmo, "%d", message_timeout_ms > 0 ? message_timeout_ms : 120000);
    snprintf(linger, sizeof linger, "%d", linger_ms > 0 ? linger_ms : 0);
    if (!conf || lt_kafka_conf_set(conf, "enable.idempotence", "true", err) != LT_OK ||
        lt_kafka_conf_set(conf, "acks", "all", err) != LT_OK ||
        lt_kafka_conf_set(conf, "message.timeout.ms", tmo, err) != LT_OK ||
        (!has_prop(c, "linger.ms") && lt_kafka_conf_set(conf, "linger.ms", linger, err) != LT_OK))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        lt_errorf(err, LT_ERR_ARG, "Kafka producer: %s", why);
        goto fail;
    }
    return p; /* rd_kafka_new took conf over */
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return NULL;
}

void lt_kafka_producer_destroy(lt_kafka_producer *p) {
    if (!p) return;
    if (rd_kafka_flush(p->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "kafka: %d message(s) not delivered at shutdown\n", rd_kafka_outq_len(p->rk));
    rd_kafka_destroy(p->rk);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

rd_kafka_t *lt_kafka_producer_handle(lt_kafka_producer *p) {
    return p->rk;
}

/* Queues one message with d (may be NULL) as its delivery opaque. */
static lt_status produce(lt_kafka_producer *p, const char *topic, const char *key, const void *value,
                         size_t len, const lt_kafka_header *headers, int n_headers, delivery *d,
                         lt_err *err) {
    rd_kafka_headers_t *hdrs = NULL;
    if (n_headers > 0) {
        hdrs = rd_kafka_headers_new((size_t)n_headers);
        for (int i = 0; i < n_headers; i++)
            rd_kafka_header_add(hdrs, headers[i].name, -1, headers[i].value,
                                (ssize_t)strlen(headers[i].value));
    }
    rd_kafka_resp_err_t e =
        rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                          RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(hdrs); /* only taken over on success */
        return lt_errorf(err, LT_ERR_IO, "producing to %s: %s", topic, rd_kafka_err2str(e));
    }
    return LT_OK;
}

lt_status lt_kafka_produce(lt_kafka_producer *p, const char *topic, const char *key, const void *value,
                           size_t len, const lt_kafka_header *headers, int n_headers, lt_err *err) {
    lt_status st = produce(p, topic, key, value, len, headers, n_headers, NULL, err);
    rd_kafka_poll(p->rk, 0);
    return st;
}

lt_status lt_kafka_produce_sync(lt_kafka_producer *p, const char *topic, const char *key, const void *value,
                                size_t len, const lt_kafka_header *headers, int n_headers, lt_err *err) {
    delivery d = {0, RD_KAFKA_RESP_ERR_NO_ERROR};
    lt_status st = produce(p, topic, key, value, len, headers, n_headers, &d, err);
    if (st != LT_OK) return st;
    /* Some thread must serve the report: poll ourselves, briefly, so concurrent waiters all progress. */
    for (;;) {
        rd_kafka_poll(p->rk, 20);
        pthread_mutex_lock(&p->lock);
        int done = d.done;
        pthread_mutex_unlock(&p->lock);
        if (done) break;
    }
    if (d.err) return lt_errorf(err, LT_ERR_IO, "delivery to %s failed: %s", topic, rd_kafka_err2str(d.err));
    return LT_OK;
}

void lt_kafka_producer_poll(lt_kafka_producer *p, int timeout_ms) {
    rd_kafka_poll(p->rk, timeout_ms);
}

lt_status lt_kafka_producer_flush(lt_kafka_producer *p, int timeout_ms, lt_err *err) {
    if (rd_kafka_flush(p->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return lt_errorf(err, LT_ERR_IO, "%d message(s) still undelivered after %d ms",
                         rd_kafka_outq_len(p->rk), timeout_ms);
    return LT_OK;
}

int64_t lt_kafka_producer_failures(lt_kafka_producer *p) {
    pthread_mutex_lock(&p->lock);
    int64_t n = p->failures;
    pthread_mutex_unlock(&p->lock);
    return n;
}

lt_status lt_kafka_dlq_publish(lt_kafka_producer *p, const lt_kafka_config *c, const rd_kafka_message_t *m,
                               const char *error, lt_err *err) {
    char topic[LT_KAFKA_TOPIC_MAX], source[LT_KAFKA_TOPIC_MAX + 64], *key = NULL;
    lt_kafka_topic(c, LT_TOPIC_DLQ, topic, sizeof topic);
    snprintf(source, sizeof source, "%s/%d/%lld", m->rkt ? rd_kafka_topic_name(m->rkt) : "?",
             (int)m->partition, (long long)m->offset);
    if (m->key_len > 0 && !(key = strndup(m->key, m->key_len)))
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_kafka_header h[2] = {{"error", error ? error : ""}, {"source", source}};
    lt_status st = lt_kafka_produce_sync(p, topic, key, m->payload, m->len, h, 2, err);
    free(key);
    return st;
}

/* ---- consumers ---- */

/* What lt_kafka_consumer_new keeps per consumer (its librdkafka opaque): the caller's rebalance callback
 * and opaque, whether it joined its group (lt_kafka_subscribe) and whether an assignment ever arrived. */
typedef struct {
    void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t *, void *);
    void *opaque;
    int subscribed, assigned_once;
} consumer_ctx;

static void consumer_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                               void *opaque) {
    consumer_ctx *x = opaque;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) x->assigned_once = 1;
    if (x->rebalance_cb) {
        x->rebalance_cb(rk, e, parts, x->opaque);
        return;
    }
    /* librdkafka's default, which a registered callback replaces */
    int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *error = NULL;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        coop ? (void)(error = rd_kafka_incremental_assign(rk, parts)) : (void)rd_kafka_assign(rk, parts);
    else
        coop ? (void)(error = rd_kafka_incremental_unassign(rk, parts)) : (void)rd_kafka_assign(rk, NULL);
    if (error) rd_kafka_error_destroy(error);
}

/* Consumers closed but not destroyed (see lt_kafka_consumer_destroy), kept reachable until exit. */
static struct {
    pthread_mutex_t mu;
    rd_kafka_t **rk;
    int n, cap;
} kept = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0};

rd_kafka_resp_err_t lt_kafka_consumer_destroy(rd_kafka_t *rk, int leave_group) {
    if (!rk) return RD_KAFKA_RESP_ERR_NO_ERROR;
    consumer_ctx *x = rd_kafka_opaque(rk);
    rd_kafka_resp_err_t e = leave_group ? rd_kafka_consumer_close(rk) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (!x || !x->subscribed || x->assigned_once || rd_kafka_version() >= 0x020300ff) {
        rd_kafka_destroy_flags(rk, leave_group ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
        free(x);
        return e;
    }
    pthread_mutex_lock(&kept.mu);
    if (kept.n == kept.cap) {
        int cap = kept.cap ? 2 * kept.cap : 8;
        rd_kafka_t **a = realloc(kept.rk, (size_t)cap * sizeof *a);
        if (a) kept.rk = a, kept.cap = cap;
    }
    if (kept.n < kept.cap) kept.rk[kept.n++] = rk; /* else lost track of: the same, unreachable */
    pthread_mutex_unlock(&kept.mu);
    return e;
}

rd_kafka_t *lt_kafka_consumer_new(const lt_kafka_config *c, const char *client_id, const char *group_id,
                                  void (*rebalance_cb)(rd_kafka_t *, rd_kafka_resp_err_t,
                                                       rd_kafka_topic_partition_list_t *, void *),
                                  void *opaque, int max_poll_ms, lt_err *err) {
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, client_id, err);
    char why[512], mp[32];
    snprintf(mp, sizeof mp, "%d", max_poll_ms > 0 ? max_poll_ms : 300000);
    if (!conf || lt_kafka_conf_set(conf, "group.id", group_id, err) != LT_OK ||
        lt_kafka_conf_set(conf, "enable.auto.offset.store", "false", err) != LT_OK ||
        lt_kafka_conf_set(conf, "enable.auto.commit", "true", err) != LT_OK ||
        lt_kafka_conf_set(conf, "auto.commit.interval.ms", "1000", err) != LT_OK ||
        lt_kafka_conf_set(conf, "auto.offset.reset", "earliest", err) != LT_OK ||
        lt_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", err) != LT_OK ||
        lt_kafka_conf_set(conf, "max.poll.interval.ms", mp, err) != LT_OK) {
        if (conf) rd_kafka_conf_destroy(conf);
        return NULL;
    }
    consumer_ctx *x = calloc(1, sizeof *x);
    if (!x) {
        rd_kafka_conf_destroy(conf);
        lt_errorf(err, LT_ERR_NOMEM, "Kafka consumer: out of memory");
        return NULL;
    }
    x->rebalance_cb = rebalance_cb;
    x->opaque = opaque;
    rd_kafka_conf_set_rebalance_cb(conf, consumer_rebalance);
    rd_kafka_conf_set_opaque(conf, x);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        free(x);
        lt_errorf(err, LT_ERR_ARG, "Kafka consumer: %s", why);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk); /* one queue: rd_kafka_consumer_poll serves every callback */
    return rk;
}

lt_status lt_kafka_subscribe(rd_kafka_t *rk, const char *const *topics, int n, lt_err *err) {
    consumer_ctx *x = rd_kafka_opaque(rk); /* NULL for a consumer lt_kafka_consumer_new did not make */
    if (x) x->subscribed = 1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    for (int i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) return lt_errorf(err, LT_ERR_IO, "subscribing: %s", rd_kafka_err2str(e));
    return LT_OK;
}

rd_kafka_t *lt_kafka_reader_new(const lt_kafka_config *c, const char *client_id, lt_err *err) {
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, client_id, err);
    char why[512], group[300];
    /* assign() needs a group id to exist, but no group is joined and nothing is committed */
    snprintf(group, sizeof group, "%s.reader", client_id && *client_id ? client_id : "lathe");
    if (!conf || lt_kafka_conf_set(conf, "group.id", group, err) != LT_OK ||
        lt_kafka_conf_set(conf, "enable.auto.commit", "false", err) != LT_OK ||
        lt_kafka_conf_set(conf, "enable.auto.offset.store", "false", err) != LT_OK ||
        lt_kafka_conf_set(conf, "fetch.wait.max.ms", "100", err) != LT_OK) {
        if (conf) rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        lt_errorf(err, LT_ERR_ARG, "Kafka consumer: %s", why);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

lt_status lt_kafka_reader_assign_all(rd_kafka_t *rk, const char *topic, int from_beginning, int timeout_ms,
                                     lt_err *err) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    lt_status st = LT_OK;
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        st = lt_errorf(err, LT_ERR_IO, "topic %s is not available: %s", topic,
                       rd_kafka_err2str(e                    ? e
                                        : md->topic_cnt == 1 ? md->topics[0].err
                                                             : RD_KAFKA_RESP_ERR_UNKNOWN));
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(l, topic, md->topics[0].partitions[i].id)->offset =
                from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        if ((e = rd_kafka_assign(rk, l)) != RD_KAFKA_RESP_ERR_NO_ERROR)
            st = lt_errorf(err, LT_ERR_IO, "assigning %s: %s", topic, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    return st;
}

lt_status lt_kafka_store_offset(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t offset,
                                lt_err *err) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(rk, l);
    if (!e) e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        return lt_errorf(err, LT_ERR_IO, "storing offset %lld of %s/%d: %s", (long long)offset, topic,
                         (int)partition, rd_kafka_err2str(e));
    /* commit now rather than at the next auto-commit tick; a failure is retried by the next tick */
    rd_kafka_commit(rk, NULL, 1);
    return LT_OK;
}

/* ---- topics ---- */

lt_status lt_kafka_create_topics(const lt_kafka_config *c, int timeout_ms, lt_err *err) {
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, "lathe-admin", err);
    if (!conf) return LT_ERR_ARG;
    char why[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return lt_errorf(err, LT_ERR_ARG, "Kafka admin client: %s", why);
    }
    rd_kafka_NewTopic_t *nt[LT_TOPIC_COUNT] = {0};
    lt_status st = LT_OK;
    for (int t = 0; t < LT_TOPIC_COUNT && st == LT_OK; t++) {
        char name[LT_KAFKA_TOPIC_MAX];
        int parts = t == LT_TOPIC_JOBS || t == LT_TOPIC_EVENTS ? c->jobs_partitions : 1;
        nt[t] = rd_kafka_NewTopic_new(lt_kafka_topic(c, (lt_topic)t, name, sizeof name), parts,
                                      c->replication, why, sizeof why);
        if (!nt[t])
            st = lt_errorf(err, LT_ERR_ARG, "topic %s: %s", name, why);
        else if (t == LT_TOPIC_JOBS_STATE || t == LT_TOPIC_REGISTRY)
            rd_kafka_NewTopic_set_config(nt[t], "cleanup.policy", "compact");
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, why, sizeof why);
    rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, why, sizeof why);
    if (st == LT_OK) {
        rd_kafka_CreateTopics(rk, nt, LT_TOPIC_COUNT, ao, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
        if (!ev) {
            st = lt_errorf(err, LT_ERR_IO, "creating topics: no answer from %s within %d ms", c->brokers,
                           timeout_ms);
        } else if (rd_kafka_event_error(ev)) {
            st = lt_errorf(err, LT_ERR_IO, "creating topics: %s", rd_kafka_event_error_string(ev));
        } else {
            size_t n = 0;
            const rd_kafka_topic_result_t **r =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
            for (size_t i = 0; i < n && st == LT_OK; i++) {
                rd_kafka_resp_err_t e = rd_kafka_topic_result_error(r[i]);
                if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
                    st = lt_errorf(err, LT_ERR_IO, "creating topic %s: %s", rd_kafka_topic_result_name(r[i]),
                                   rd_kafka_topic_result_error_string(r[i])
                                       ? rd_kafka_topic_result_error_string(r[i])
                                       : rd_kafka_err2str(e));
            }
        }
        if (ev) rd_kafka_event_destroy(ev);
    }
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    for (int t = 0; t < LT_TOPIC_COUNT; t++)
        if (nt[t]) rd_kafka_NewTopic_destroy(nt[t]);
    rd_kafka_destroy(rk);
    return st;
}

const char *lt_kafka_message_error(const rd_kafka_message_t *m) {
    return m && m->err ? rd_kafka_message_errstr(m) : "";
}
