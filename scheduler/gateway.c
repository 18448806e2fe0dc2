/* gateway.c - publish real-time requests, match replies to waiting callers by request id. */
#include "gateway.h"

#include "messaging/realtime.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_BUCKETS 1024 /* waiters hash by sequence number; a few hundred wait at once at most */

/* One caller waiting for its reply; lives on the caller's stack, linked in a bucket while it waits. */
typedef struct waiter {
    uint64_t seq;
    pthread_cond_t cond;
    int replied;   /* a reply arrived: status, result, body set */
    int delivered; /* the brokers acknowledged the request */
    int failed;    /* delivery failed: why holds librdkafka's reason */
    int http_status;
    lt_status result;
    char *body; /* (len) malloc'd reply value, NUL-terminated */
    size_t len;
    char why[256];
    struct waiter *next;
} waiter;

struct lt_gateway {
    lt_kafka_config kc;
    lt_gateway_opts opts;
    char instance[96];
    char reply_topic[LT_KAFKA_TOPIC_MAX];
    rd_kafka_t *producer; /* idempotent, linger.ms=0; delivery reports served by dr_thread */
    rd_kafka_t *replies;  /* group-less consumer assigned to reply_topic/0 */
    pthread_t reply_thread, dr_thread;
    int threads_started;
    atomic_int stop;
    pthread_mutex_t mu; /* guards buckets, every waiter's fields, stats and closed */
    waiter *buckets[N_BUCKETS];
    int closed;
    atomic_uint_fast64_t seq;
    lt_gateway_stats stats;
};

void lt_gateway_opts_init(lt_gateway_opts *o) {
    o->fetch_wait_ms = 100;
    o->message_timeout_ms = 10000;
    o->setup_timeout_ms = 10000;
}

const char *lt_gateway_reply_topic(const lt_gateway *gw) {
    return gw->reply_topic;
}

const char *lt_gateway_endpoint_topic(const lt_gateway *gw, const char *endpoint, char *buf, size_t size) {
    return lt_rt_endpoint_topic(&gw->kc, endpoint, buf, size);
}

static waiter **bucket(lt_gateway *gw, uint64_t seq) {
    return &gw->buckets[seq % N_BUCKETS];
}

/* The waiter of seq, or NULL; call under mu. */
static waiter *find(lt_gateway *gw, uint64_t seq) {
    for (waiter *w = *bucket(gw, seq); w; w = w->next)
        if (w->seq == seq) return w;
    return NULL;
}

static void unlink_waiter(lt_gateway *gw, waiter *w) {
    for (waiter **p = bucket(gw, w->seq); *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

/* Delivery reports: the message's opaque is its waiter's sequence number, so a report for a caller that
 * already gave up finds nothing. */
static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    lt_gateway *gw = opaque;
    uint64_t seq = (uint64_t)(uintptr_t)m->_private;
    pthread_mutex_lock(&gw->mu);
    waiter *w = find(gw, seq);
    if (w) {
        if (m->err) {
            w->failed = 1;
            snprintf(w->why, sizeof w->why, "%s", rd_kafka_err2str(m->err));
        } else {
            w->delivered = 1;
        }
        if (m->err) pthread_cond_signal(&w->cond);
    }
    pthread_mutex_unlock(&gw->mu);
}

static void *dr_main(void *arg) {
    lt_gateway *gw = arg;
    while (!atomic_load(&gw->stop))
        rd_kafka_poll(gw->producer, 100);
    return NULL;
}

/* Parses "<instance>-<seq hex>"; 0 when the id is not one of ours. */
static int parse_id(const lt_gateway *gw, const char *id, uint64_t *seq) {
    size_t n = strlen(gw->instance);
    if (strncmp(id, gw->instance, n) || id[n] != '-' || !id[n + 1]) return 0;
    char *end = NULL;
    unsigned long long v = strtoull(id + n + 1, &end, 16);
    if (*end) return 0;
    *seq = (uint64_t)v;
    return 1;
}

static void handle_reply(lt_gateway *gw, const rd_kafka_message_t *m) {
    char id[160], status[16], rname[32];
    uint64_t seq;
    if (m->len == 0 && !lt_rt_header(m, LT_RT_REQUEST_ID, id, sizeof id)) return; /* warm_up's message */
    if (!lt_rt_header(m, LT_RT_REQUEST_ID, id, sizeof id) || !parse_id(gw, id, &seq)) {
        pthread_mutex_lock(&gw->mu);
        gw->stats.late_replies++;
        pthread_mutex_unlock(&gw->mu);
        return;
    }
    int http = 0;
    if (lt_rt_header(m, LT_RT_STATUS, status, sizeof status)) http = atoi(status);
    if (http < 100 || http > 599) http = 502; /* a worker that says nothing sensible: a bad gateway answer */
    lt_status result = lt_rt_header(m, LT_RT_RESULT, rname, sizeof rname) ? lt_rt_result_parse(rname)
                       : http == 200                                      ? LT_OK
                                                                          : LT_ERR_IO;
    char *body = malloc(m->len + 1);
    if (body) {
        if (m->len) memcpy(body, m->payload, m->len);
        body[m->len] = 0;
    }
    pthread_mutex_lock(&gw->mu);
    waiter *w = find(gw, seq);
    if (w && !w->replied && body) {
        w->replied = 1;
        w->http_status = http;
        w->result = result;
        w->body = body;
        w->len = m->len;
        body = NULL;
        gw->stats.replies++;
        pthread_cond_signal(&w->cond);
    } else {
        gw->stats.late_replies++;
    }
    pthread_mutex_unlock(&gw->mu);
    free(body);
}

static void *reply_main(void *arg) {
    lt_gateway *gw = arg;
    while (!atomic_load(&gw->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(gw->replies, 100);
        if (!m) continue;
        if (!m->err)
            handle_reply(gw, m);
        else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            fprintf(stderr, "gateway: reply consumer: %s\n", lt_kafka_message_error(m));
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

/* A per-process id that a restarted process (same host, maybe the same pid in a container) never reuses. */
static void make_instance(char *buf, size_t size) {
    char host[64] = "gw";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "gw");
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++)
        if (!lt_rt_valid_name((char[]){*p, 0}, 1)) *p = '_';
    uint64_t r = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(&r, sizeof r, 1, f) != 1) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        r = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 20) ^ (uint64_t)getpid();
    }
    if (f) fclose(f);
    snprintf(buf, size, "%s-%d-%08" PRIx32, host, (int)getpid(), (uint32_t)r);
}

static rd_kafka_t *producer_new(lt_gateway *gw, lt_err *err) {
    rd_kafka_conf_t *conf = lt_kafka_conf_new(&gw->kc, "lathe-gateway", err);
    char tmo[32], why[512];
    snprintf(tmo, sizeof tmo, "%d", gw->opts.message_timeout_ms);
    if (!conf || lt_kafka_conf_set(conf, "enable.idempotence", "true", err) != LT_OK ||
        lt_kafka_conf_set(conf, "acks", "all", err) != LT_OK ||
        lt_kafka_conf_set(conf, "message.timeout.ms", tmo, err) != LT_OK ||
        lt_kafka_conf_set(conf, "linger.ms", "0", err) != LT_OK) {
        if (conf) rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, gw);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        lt_errorf(err, LT_ERR_ARG, "gateway producer: %s", why);
    }
    return rk;
}

static rd_kafka_t *replies_new(lt_gateway *gw, lt_err *err) {
    rd_kafka_conf_t *conf = lt_kafka_conf_new(&gw->kc, "lathe-gateway", err);
    char why[512], group[200], fw[32];
    snprintf(group, sizeof group, "lathe-gateway-%s", gw->instance); /* needed by assign(); never joined */
    snprintf(fw, sizeof fw, "%d", gw->opts.fetch_wait_ms);
    if (!conf || lt_kafka_conf_set(conf, "group.id", group, err) != LT_OK ||
        lt_kafka_conf_set(conf, "enable.auto.commit", "false", err) != LT_OK ||
        lt_kafka_conf_set(conf, "enable.auto.offset.store", "false", err) != LT_OK ||
        (!lt_kafka_config_has(&gw->kc, "fetch.wait.max.ms") &&
         lt_kafka_conf_set(conf, "fetch.wait.max.ms", fw, err) != LT_OK)) {
        if (conf) rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        lt_errorf(err, LT_ERR_ARG, "gateway reply consumer: %s", why);
        return NULL;
    }
    rd_kafka_poll_set_consumer(rk);
    /* the topic is new and ours alone: read it from its beginning, so no reply is missed while the
     * assignment settles */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, gw->reply_topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        lt_errorf(err, LT_ERR_IO, "gateway: assigning %s: %s", gw->reply_topic, rd_kafka_err2str(e));
        rd_kafka_destroy(rk);
        return NULL;
    }
    return rk;
}

/* Fetches topic's metadata into the producer's cache, so the first request to it does not wait for it. */
static void warm_topic(lt_gateway *gw, const char *topic, int timeout_ms) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(gw->producer, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (t && !rd_kafka_metadata(gw->producer, 0, t, &md, timeout_ms) && md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
}

/* Connects the producer and gets its idempotent producer id now, by writing one message (no request-id:
 * the reply thread skips it) to the reply topic and waiting for it: the first real request then goes out
 * at once, and a broker that is down shows here. */
static lt_status warm_up(lt_gateway *gw, lt_err *err) {
    rd_kafka_resp_err_t e =
        rd_kafka_producev(gw->producer, RD_KAFKA_V_TOPIC(gw->reply_topic), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_VALUE("", 0), RD_KAFKA_V_OPAQUE(NULL), RD_KAFKA_V_END);
    if (!e) e = rd_kafka_flush(gw->producer, gw->opts.setup_timeout_ms);
    if (e)
        return lt_errorf(err, LT_ERR_UNAVAILABLE, "gateway: cannot write to %s: %s", gw->reply_topic,
                         rd_kafka_err2str(e));
    return LT_OK;
}

lt_status lt_gateway_new(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                         lt_err *err) {
    return lt_gateway_new_opts(out, kopts, topic_prefix, NULL, err);
}

lt_status lt_gateway_new_opts(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                              const lt_gateway_opts *opts, lt_err *err) {
    *out = NULL;
    lt_gateway *gw = calloc(1, sizeof *gw);
    if (!gw) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    gw->kc = *kopts;
    lt_gateway_opts_init(&gw->opts);
    if (opts) gw->opts = *opts;
    if (gw->opts.fetch_wait_ms < 0) gw->opts.fetch_wait_ms = 0;
    if (gw->opts.message_timeout_ms <= 0) gw->opts.message_timeout_ms = 10000;
    if (gw->opts.setup_timeout_ms <= 0) gw->opts.setup_timeout_ms = 10000;
    pthread_mutex_init(&gw->mu, NULL);
    lt_status st = LT_OK;
    if (topic_prefix && *topic_prefix) st = lt_kafka_config_set(&gw->kc, NULL, topic_prefix, err);
    make_instance(gw->instance, sizeof gw->instance);
    snprintf(gw->reply_topic, sizeof gw->reply_topic, "%sreplies.%s", gw->kc.prefix, gw->instance);
    if (st == LT_OK) st = lt_kafka_create_topic(&gw->kc, gw->reply_topic, 1, gw->opts.setup_timeout_ms, err);
    if (st == LT_OK && !(gw->producer = producer_new(gw, err))) st = LT_ERR_ARG;
    if (st == LT_OK && !(gw->replies = replies_new(gw, err))) st = LT_ERR_ARG;
    if (st == LT_OK) st = warm_up(gw, err);
    if (st == LT_OK) {
        if (pthread_create(&gw->reply_thread, NULL, reply_main, gw)) {
            st = lt_errorf(err, LT_ERR_NOMEM, "gateway: cannot start a thread");
        } else if (pthread_create(&gw->dr_thread, NULL, dr_main, gw)) {
            atomic_store(&gw->stop, 1);
            pthread_join(gw->reply_thread, NULL);
            st = lt_errorf(err, LT_ERR_NOMEM, "gateway: cannot start a thread");
        } else {
            gw->threads_started = 1;
        }
    }
    if (st != LT_OK) {
        lt_gateway_free(gw);
        return st;
    }
    *out = gw;
    return LT_OK;
}

void lt_gateway_free(lt_gateway *gw) {
    if (!gw) return;
    /* wake every waiter: they see closed and answer LT_ERR_CANCELLED */
    pthread_mutex_lock(&gw->mu);
    gw->closed = 1;
    for (int i = 0; i < N_BUCKETS; i++)
        for (waiter *w = gw->buckets[i]; w; w = w->next)
            pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&gw->mu);
    atomic_store(&gw->stop, 1);
    if (gw->threads_started) {
        pthread_join(gw->reply_thread, NULL);
        pthread_join(gw->dr_thread, NULL);
    }
    if (gw->replies) {
        rd_kafka_consumer_close(gw->replies);
        rd_kafka_destroy(gw->replies);
    }
    if (gw->producer) {
        rd_kafka_flush(gw->producer, 2000);
        rd_kafka_destroy(gw->producer);
    }
    if (gw->reply_topic[0] && gw->replies) {
        lt_err ignore = {{0}};
        lt_kafka_delete_topic(&gw->kc, gw->reply_topic, 5000, &ignore);
    }
    pthread_mutex_destroy(&gw->mu);
    free(gw);
}

lt_status lt_gateway_create_endpoint(lt_gateway *gw, const char *endpoint, int partitions, lt_err *err) {
    if (!lt_rt_valid_name(endpoint, 200))
        return lt_errorf(err, LT_ERR_ARG, "endpoint name must be 1-200 of [A-Za-z0-9._-], got \"%.64s\"",
                         endpoint ? endpoint : "");
    char topic[LT_KAFKA_TOPIC_MAX];
    lt_status st =
        lt_kafka_create_topic(&gw->kc, lt_gateway_endpoint_topic(gw, endpoint, topic, sizeof topic),
                              partitions > 0 ? partitions : 1, gw->opts.setup_timeout_ms, err);
    if (st == LT_OK) warm_topic(gw, topic, gw->opts.setup_timeout_ms);
    return st;
}

lt_status lt_gateway_delete_endpoint(lt_gateway *gw, const char *endpoint, lt_err *err) {
    if (!lt_rt_valid_name(endpoint, 200))
        return lt_errorf(err, LT_ERR_ARG, "endpoint name must be 1-200 of [A-Za-z0-9._-], got \"%.64s\"",
                         endpoint ? endpoint : "");
    char topic[LT_KAFKA_TOPIC_MAX];
    return lt_kafka_delete_topic(&gw->kc, lt_gateway_endpoint_topic(gw, endpoint, topic, sizeof topic),
                                 gw->opts.setup_timeout_ms, err);
}

void lt_gateway_get_stats(lt_gateway *gw, lt_gateway_stats *s) {
    pthread_mutex_lock(&gw->mu);
    *s = gw->stats;
    pthread_mutex_unlock(&gw->mu);
}

/* Publishes one request and waits for its reply. On LT_OK the waiter w holds the reply. */
static lt_status request(lt_gateway *gw, waiter *w, const char *type, const char *endpoint, const char *stage,
                         const char *model_uri, const char *body, size_t len, int timeout_ms, lt_err *err) {
    if (!lt_rt_valid_name(endpoint, 200))
        return lt_errorf(err, LT_ERR_ARG, "endpoint name must be 1-200 of [A-Za-z0-9._-], got \"%.64s\"",
                         endpoint ? endpoint : "");
    if (!stage || !model_uri || strlen(stage) >= LT_RT_HEADER_MAX || strlen(model_uri) >= LT_RT_HEADER_MAX)
        return lt_errorf(err, LT_ERR_ARG, "stage and model URI must be given, under %d bytes",
                         LT_RT_HEADER_MAX);
    if (timeout_ms <= 0) timeout_ms = 1;
    char topic[LT_KAFKA_TOPIC_MAX], id[160], deadline[32];
    lt_gateway_endpoint_topic(gw, endpoint, topic, sizeof topic);
    memset(w, 0, sizeof *w);
    w->seq = atomic_fetch_add(&gw->seq, 1) + 1;
    snprintf(id, sizeof id, "%s-%" PRIx64, gw->instance, w->seq);
    snprintf(deadline, sizeof deadline, "%" PRId64, lt_rt_now_ms() + timeout_ms);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &ca);
    pthread_condattr_destroy(&ca);

    pthread_mutex_lock(&gw->mu);
    if (gw->closed) {
        pthread_mutex_unlock(&gw->mu);
        pthread_cond_destroy(&w->cond);
        return lt_errorf(err, LT_ERR_CANCELLED, "the gateway is shutting down");
    }
    w->next = *bucket(gw, w->seq);
    *bucket(gw, w->seq) = w;
    gw->stats.requests++;
    pthread_mutex_unlock(&gw->mu);

    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    rd_kafka_resp_err_t e = rd_kafka_producev(
        gw->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(id, strlen(id)),
        RD_KAFKA_V_VALUE((void *)body, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER(LT_RT_TYPE, type, -1), RD_KAFKA_V_HEADER(LT_RT_REQUEST_ID, id, -1),
        RD_KAFKA_V_HEADER(LT_RT_ENDPOINT, endpoint, -1), RD_KAFKA_V_HEADER(LT_RT_STAGE, stage, -1),
        RD_KAFKA_V_HEADER(LT_RT_MODEL_URI, model_uri, -1),
        RD_KAFKA_V_HEADER(LT_RT_REPLY_TOPIC, gw->reply_topic, -1),
        RD_KAFKA_V_HEADER(LT_RT_REPLY_PARTITION, "0", -1), RD_KAFKA_V_HEADER(LT_RT_DEADLINE, deadline, -1),
        RD_KAFKA_V_OPAQUE((void *)(uintptr_t)w->seq), RD_KAFKA_V_END);

    lt_status st = LT_OK;
    pthread_mutex_lock(&gw->mu);
    if (e) {
        st = lt_errorf(err, LT_ERR_UNAVAILABLE, "cannot publish to %s: %s", topic, rd_kafka_err2str(e));
    } else {
        int rc = 0;
        while (!w->replied && !w->failed && !gw->closed && rc == 0)
            rc = pthread_cond_timedwait(&w->cond, &gw->mu, &until);
        if (w->replied)
            st = LT_OK;
        else if (w->failed)
            st = lt_errorf(err, LT_ERR_UNAVAILABLE, "cannot publish to %s: %s", topic, w->why);
        else if (gw->closed)
            st = lt_errorf(err, LT_ERR_CANCELLED, "the gateway is shutting down");
        else if (!w->delivered)
            st = lt_errorf(err, LT_ERR_UNAVAILABLE,
                           "Kafka did not acknowledge the request to %s within %d ms (brokers unreachable?)",
                           topic, timeout_ms);
        else
            st = lt_errorf(err, LT_ERR_TIMEOUT,
                           "no inference worker answered endpoint %s stage %s within %d ms", endpoint, stage,
                           timeout_ms);
    }
    if (st == LT_ERR_TIMEOUT) gw->stats.timeouts++;
    if (st == LT_ERR_UNAVAILABLE) gw->stats.unavailable++;
    unlink_waiter(gw, w);
    pthread_mutex_unlock(&gw->mu);
    pthread_cond_destroy(&w->cond);
    if (st != LT_OK) {
        free(w->body);
        w->body = NULL;
    }
    return st;
}

lt_status lt_gateway_load(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                          int timeout_ms, lt_err *err) {
    waiter w;
    lt_status st = request(gw, &w, "load", endpoint, stage, model_uri, "", 0, timeout_ms, err);
    if (st != LT_OK) return st;
    if (w.result != LT_OK) {
        /* the body is {"error": "..."}: pass the worker's message on without the JSON around it */
        const char *msg = w.body, *p = strstr(w.body, "\"error\":\"");
        int n = (int)w.len;
        if (p) {
            msg = p + 9;
            const char *q = strrchr(msg, '"');
            n = q ? (int)(q - msg) : (int)strlen(msg);
        }
        st = lt_errorf(err, w.result, "loading model %s: %.*s", model_uri, n, msg);
    }
    free(w.body);
    return st;
}

lt_status lt_gateway_infer(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                           const char *body, size_t len, int timeout_ms, int *http_status, char **resp_body,
                           size_t *resp_len, lt_err *err) {
    *resp_body = NULL;
    *resp_len = 0;
    *http_status = 0;
    waiter w;
    lt_status st = request(gw, &w, "infer", endpoint, stage, model_uri, body, len, timeout_ms, err);
    if (st != LT_OK) return st;
    *http_status = w.http_status;
    *resp_body = w.body;
    *resp_len = w.len;
    return LT_OK;
}
