/* scheduler.c - the service: Kafka bus for the core, state rebuild, the events loop, the HTTP listener. */
#include "scheduler.h"

#include "core.h"
#include "gateway.h"
#include "http.h"
#include "mirror.h"
#include "producer.h"
#include "registry.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EVENTS_BATCH 512 /* events folded before their records are awaited and offsets stored */

struct lt_scheduler {
    lt_kafka_config kafka;
    char topic_jobs[LT_KAFKA_TOPIC_MAX], topic_control[LT_KAFKA_TOPIC_MAX];
    char topic_events[LT_KAFKA_TOPIC_MAX], topic_state[LT_KAFKA_TOPIC_MAX];
    char topic_registry[LT_KAFKA_TOPIC_MAX];
    char *storage, *group, *client; /* owned copies */
    lt_storage_opts storage_opts;   /* for data set listings: few retries, so a request doesn't hang */
    int quiet;
    lt_sched core;
    lt_sched_producer *prod; /* state records, jobs, cancels */
    lt_kafka_producer *dlq;  /* dead letters (messaging/kafka.h formats them) */
    lt_http *http;
    lt_mirror *mirror; /* NULL unless state_dir */
    int republish;     /* republish_unfinished */
    pthread_t thread;  /* rebuild, then the events loop */
    int thread_started;
    atomic_int stop;

    /* models and endpoints */
    lt_gateway *gateway;        /* real-time inference (gateway.h) */
    int gateway_fetch_wait_ms;  /* lt_scheduler_opts.gateway_fetch_wait_ms */
    lt_registry *registry;      /* registry.h */
    lt_mirror *registry_mirror; /* NULL unless registry_dir */
};

static void logf_(const lt_scheduler *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(const lt_scheduler *s, const char *fmt, ...) {
    if (s->quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "scheduler: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sleeps up to ms, returning early when stopping. */
static void nap(lt_scheduler *s, int ms) {
    for (int t = 0; t < ms && !atomic_load(&s->stop); t += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* ---- the bus the core publishes through ---- */

static lt_status bus_persist(void *ctx, const char *id, const char *json, void **ticket, lt_err *err) {
    lt_scheduler *s = ctx;
    if (s->mirror) {
        lt_err merr = {{0}};
        if (lt_mirror_put(s->mirror, id, json, &merr) != LT_OK) logf_(s, "state mirror: %s", merr.msg);
    }
    return lt_sched_produce(s->prod, s->topic_state, id, json, json ? strlen(json) : 0, (lt_ticket **)ticket,
                            err);
}

static lt_status registry_put(void *ctx, const char *key, const char *json, void **ticket, lt_err *err) {
    lt_scheduler *s = ctx;
    if (s->registry_mirror) {
        char name[256];
        lt_err merr = {{0}};
        lt_registry_mirror_name(key, name, sizeof name);
        if (lt_mirror_put(s->registry_mirror, name, json, &merr) != LT_OK)
            logf_(s, "registry mirror: %s", merr.msg);
    }
    return lt_sched_produce(s->prod, s->topic_registry, key, json, json ? strlen(json) : 0,
                            (lt_ticket **)ticket, err);
}

static lt_status bus_wait(void *ctx, void *ticket, lt_err *err) {
    return ticket ? lt_ticket_wait(ticket, err) : LT_OK;
}

static lt_status produce_wait(lt_scheduler *s, const char *topic, const char *key, const char *value,
                              lt_err *err) {
    lt_ticket *t = NULL;
    lt_status st = lt_sched_produce(s->prod, topic, key, value, strlen(value), &t, err);
    return st == LT_OK ? lt_ticket_wait(t, err) : st;
}

static lt_status bus_publish_job(void *ctx, const char *id, const char *json, void **ticket, lt_err *err) {
    lt_scheduler *s = ctx;
    return lt_sched_produce(s->prod, s->topic_jobs, id, json, strlen(json), (lt_ticket **)ticket, err);
}

static lt_status bus_publish_cancel(void *ctx, const char *id, lt_err *err) {
    lt_scheduler *s = ctx;
    lt_msg_control c = {.type = LT_CONTROL_CANCEL};
    snprintf(c.id, sizeof c.id, "%s", id);
    char *json = lt_msg_control_encode(&c, err);
    if (!json) return LT_ERR_ARG;
    lt_status st = produce_wait(s, s->topic_control, id, json, err);
    free(json);
    return st;
}

static int bus_healthy(void *ctx) {
    lt_scheduler *s = ctx;
    return lt_sched_producer_healthy(s->prod);
}

/* Closes a consumer, committing its stored offsets, unless the brokers are unreachable: then a close would
 * wait for the commit to time out, and an uncommitted position only means events folded again next time. */
static void close_consumer(lt_scheduler *s, rd_kafka_t *rk) {
    lt_kafka_consumer_destroy(rk, lt_sched_producer_healthy(s->prod));
}

/* ---- rebuilding the table from <p>jobs.state ---- */

typedef lt_status (*load_fn)(lt_scheduler *s, const char *key, const void *data, size_t len, lt_err *err);

static lt_status load_job(lt_scheduler *s, const char *key, const void *data, size_t len, lt_err *err) {
    return lt_sched_load_record(&s->core, key, data, len, err);
}

static lt_status load_registry(lt_scheduler *s, const char *key, const void *data, size_t len, lt_err *err) {
    return lt_registry_load_record(s->registry, key, data, len, err);
}

/* Reads the compacted topic from the beginning to its end, handing each record to load. */
static lt_status rebuild(lt_scheduler *s, const char *topic, load_fn load, lt_err *err) {
    char why[512], group[300];
    snprintf(group, sizeof group, "%s.rebuild", s->group);
    rd_kafka_conf_t *conf = lt_kafka_conf_new(&s->kafka, s->client, err);
    if (!conf || lt_kafka_conf_set(conf, "group.id", group, err) ||
        lt_kafka_conf_set(conf, "enable.auto.commit", "false", err) ||
        lt_kafka_conf_set(conf, "enable.partition.eof", "true", err) ||
        lt_kafka_conf_set(conf, "auto.offset.reset", "earliest", err)) {
        if (conf) rd_kafka_conf_destroy(conf);
        return LT_ERR_ARG;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return lt_errorf(err, LT_ERR_ARG, "Kafka consumer: %s", why);
    }
    rd_kafka_poll_set_consumer(rk);
    lt_status st = LT_OK;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, 5000) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    int n = 0, pending = 0;
    int *done = NULL;
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        st = lt_errorf(err, LT_ERR_IO, "topic %s is not available: %s", topic,
                       rd_kafka_err2str(e                    ? e
                                        : md->topic_cnt == 1 ? md->topics[0].err
                                                             : RD_KAFKA_RESP_ERR_UNKNOWN));
        goto out;
    }
    n = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
    if (!(done = calloc((size_t)n, sizeof *done))) {
        rd_kafka_topic_partition_list_destroy(l);
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n && st == LT_OK; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t lo = 0, hi = 0;
        e = rd_kafka_query_watermark_offsets(rk, topic, part, &lo, &hi, 5000);
        if (e) {
            st = lt_errorf(err, LT_ERR_IO, "watermarks of %s/%d: %s", topic, (int)part, rd_kafka_err2str(e));
        } else if (hi > lo) { /* empty partitions need no reading */
            rd_kafka_topic_partition_list_add(l, topic, part)->offset = RD_KAFKA_OFFSET_BEGINNING;
            pending++;
        }
    }
    if (st == LT_OK && pending && (e = rd_kafka_assign(rk, l)))
        st = lt_errorf(err, LT_ERR_IO, "assigning %s: %s", topic, rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
    double deadline = mono_s() + 120;
    int64_t loaded = 0, skipped = 0;
    while (st == LT_OK && pending > 0 && !atomic_load(&s->stop)) {
        if (mono_s() > deadline) {
            st = lt_errorf(err, LT_ERR_IO, "reading %s took more than 120 s", topic);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (m->partition >= 0 && m->partition < n && !done[m->partition]) {
                done[m->partition] = 1;
                pending--;
            }
        } else if (m->err) {
            logf_(s, "reading %s: %s", topic, rd_kafka_message_errstr(m));
        } else {
            char key[LT_JOB_ID_MAX] = "";
            if (m->key && m->key_len < sizeof key) memcpy(key, m->key, m->key_len), key[m->key_len] = 0;
            lt_err rerr = {{0}};
            if (load(s, key[0] ? key : NULL, m->payload, m->len, &rerr) != LT_OK) {
                skipped++;
                logf_(s, "skipping record at %s/%d/%lld: %s", topic, (int)m->partition, (long long)m->offset,
                      rerr.msg);
            } else {
                loaded++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    if (st == LT_OK && pending > 0) st = lt_errorf(err, LT_ERR_CANCELLED, "stopped while loading");
    if (st == LT_OK && load == load_job) {
        lt_table_lock(s->core.table);
        size_t jobs = lt_table_size(s->core.table);
        lt_table_unlock(s->core.table);
        logf_(s, "state rebuilt from %s: %lld records read, %zu jobs%s", topic, (long long)loaded, jobs,
              skipped ? " (some records skipped)" : "");
    } else if (st == LT_OK) {
        logf_(s, "registry rebuilt from %s: %lld records read%s", topic, (long long)loaded,
              skipped ? " (some records skipped)" : "");
    }
out:
    free(done);
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    close_consumer(s, rk);
    return st;
}

/* ---- the events loop ---- */

typedef struct {
    lt_ticket *tickets[EVENTS_BATCH]; /* (n_tickets) records to await before storing offsets */
    int n_tickets;
    rd_kafka_topic_partition_list_t *offsets; /* next offset per partition */
} batch;

static void batch_offset(batch *b, const rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(b->offsets, topic, m->partition);
    if (!p) p = rd_kafka_topic_partition_list_add(b->offsets, topic, m->partition);
    if (m->offset + 1 > p->offset) p->offset = m->offset + 1;
}

static void handle_event(lt_scheduler *s, batch *b, rd_kafka_message_t *m) {
    lt_err err = {{0}};
    void *ticket = NULL;
    lt_status st = lt_sched_fold_event(&s->core, m->payload, m->len, &ticket, &err);
    if (st == LT_ERR_FORMAT) {
        lt_err derr = {{0}};
        logf_(s, "malformed event at %s/%d/%lld sent to the dead-letter topic: %s",
              rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset, err.msg);
        if (lt_kafka_dlq_publish(s->dlq, &s->kafka, m, err.msg, &derr) != LT_OK)
            logf_(s, "dead-letter publish failed: %s", derr.msg);
    } else if (st != LT_OK) {
        logf_(s, "event at %s/%d/%lld: %s", rd_kafka_topic_name(m->rkt), (int)m->partition,
              (long long)m->offset, err.msg);
    }
    if (ticket) b->tickets[b->n_tickets++] = ticket;
    batch_offset(b, m);
}

/* Assigns every partition of the events topic at the group's committed offsets (earliest when none). The
 * scheduler is a singleton, so it takes the partitions itself instead of joining the group: no rebalance
 * wait at start or after a restart (a restarted member would otherwise wait for its predecessor's session
 * to time out), and a second scheduler by mistake would see every event rather than half of them. */
static lt_status assign_events(lt_scheduler *s, rd_kafka_t *rk, lt_err *err) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, s->topic_events, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = t ? rd_kafka_metadata(rk, 0, t, &md, 5000) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    lt_status st = LT_OK;
    if (e || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        st = lt_errorf(err, LT_ERR_IO, "topic %s is not available: %s", s->topic_events,
                       rd_kafka_err2str(e                    ? e
                                        : md->topic_cnt == 1 ? md->topics[0].err
                                                             : RD_KAFKA_RESP_ERR_UNKNOWN));
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            rd_kafka_topic_partition_list_add(l, s->topic_events, md->topics[0].partitions[i].id)->offset =
                RD_KAFKA_OFFSET_STORED;
        if ((e = rd_kafka_assign(rk, l)))
            st = lt_errorf(err, LT_ERR_IO, "assigning %s: %s", s->topic_events, rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (md) rd_kafka_metadata_destroy(md);
    if (t) rd_kafka_topic_destroy(t);
    return st;
}

static void events_loop(lt_scheduler *s) {
    lt_err err = {{0}};
    rd_kafka_t *rk = lt_kafka_consumer_new(&s->kafka, s->client, s->group, NULL, NULL, 0, &err);
    if (!rk) {
        logf_(s, "cannot consume %s: %s", s->topic_events, err.msg);
        return;
    }
    while (!atomic_load(&s->stop) && assign_events(s, rk, &err) != LT_OK) {
        logf_(s, "%s (retrying in 2 s)", err.msg);
        nap(s, 2000);
    }
    batch b = {.offsets = NULL};
    while (!atomic_load(&s->stop)) {
        b.n_tickets = 0;
        b.offsets = rd_kafka_topic_partition_list_new(8);
        for (int i = 0; i < EVENTS_BATCH; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, i == 0 ? 100 : 0);
            if (!m) break;
            if (m->err) {
                if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    logf_(s, "consuming %s: %s", s->topic_events, rd_kafka_message_errstr(m));
            } else {
                handle_event(s, &b, m);
            }
            rd_kafka_message_destroy(m);
        }
        int failed = 0;
        for (int i = 0; i < b.n_tickets; i++) {
            lt_err werr = {{0}};
            if (lt_ticket_wait(b.tickets[i], &werr) != LT_OK) {
                failed = 1;
                atomic_fetch_add(&s->core.m.persist_failures, 1);
            }
        }
        /* a record that didn't reach the state topic leaves its event uncommitted, to be folded again by the
           next scheduler */
        if (!failed && b.offsets->cnt > 0) {
            rd_kafka_resp_err_t e = rd_kafka_offsets_store(rk, b.offsets);
            if (e && e != RD_KAFKA_RESP_ERR__STATE) logf_(s, "storing offsets: %s", rd_kafka_err2str(e));
        }
        rd_kafka_topic_partition_list_destroy(b.offsets);
    }
    close_consumer(s, rk); /* commits the stored offsets */
}

/* Publishes the QUEUED and RUNNING jobs of the table again (standalone restart: the in-memory cluster lost
 * their messages). A cancel requested before the restart is published again first. */
static void republish(lt_scheduler *s) {
    size_t total = 0;
    lt_table_lock(s->core.table);
    cJSON *all = lt_table_list(s->core.table, -1, (size_t)-1, &total);
    lt_table_unlock(s->core.table);
    int n = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, all) {
        const char *state = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "state"));
        if (!state || (strcmp(state, "QUEUED") && strcmp(state, "RUNNING"))) continue;
        const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "type"));
        lt_msg_job j = {.type = type ? (char *)type : "training",
                        .model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "model_uri")),
                        .id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "id")),
                        .name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "name")),
                        .algorithm = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "algorithm")),
                        .dataset = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "dataset")),
                        .output = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "output")),
                        .hyperparameters = cJSON_GetObjectItemCaseSensitive(r, "hyperparameters"),
                        .submitted_at =
                            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "created_at"))};
        char *text = NULL;
        lt_err err = {{0}};
        lt_status st = lt_msg_job_encode(&j, &text, &err);
        if (st == LT_OK && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "cancel_requested")))
            st = bus_publish_cancel(s, j.id, &err);
        if (st == LT_OK) st = produce_wait(s, s->topic_jobs, j.id, text, &err);
        free(text);
        if (st != LT_OK)
            logf_(s, "could not publish %s again: %s", j.id ? j.id : "?", err.msg);
        else
            n++;
    }
    cJSON_Delete(all);
    if (n) logf_(s, "published %d unfinished job(s) again", n);
}

static void *run(void *arg) {
    lt_scheduler *s = arg;
    for (int attempt = 1; !atomic_load(&s->stop); attempt++) {
        lt_err err = {{0}};
        lt_status st = rebuild(s, s->topic_state, load_job, &err);
        if (st == LT_OK) st = rebuild(s, s->topic_registry, load_registry, &err);
        if (st == LT_OK) break;
        if (atomic_load(&s->stop)) return NULL;
        logf_(s, "loading job state (attempt %d) failed, retrying in 2 s: %s", attempt, err.msg);
        nap(s, 2000);
    }
    if (atomic_load(&s->stop)) return NULL;
    if (s->republish) republish(s);
    /* the gateway makes its reply topic on the brokers: like the rebuild, it waits for Kafka, and the
       registry's routes (which answer 503 until ready) never see it missing */
    for (int attempt = 1; !atomic_load(&s->stop); attempt++) {
        lt_err err = {{0}};
        lt_gateway_opts go;
        lt_gateway_opts_init(&go);
        if (s->gateway_fetch_wait_ms > 0) go.fetch_wait_ms = s->gateway_fetch_wait_ms;
        if (lt_gateway_new_opts(&s->gateway, &s->kafka, s->kafka.prefix, &go, &err) == LT_OK) break;
        s->gateway = NULL;
        logf_(s, "starting the inference gateway (attempt %d) failed, retrying in 2 s: %s", attempt, err.msg);
        nap(s, 2000);
    }
    if (atomic_load(&s->stop)) return NULL;
    lt_registry_set_gateway(s->registry, s->gateway);
    lt_registry_resume(s->registry);
    atomic_store(&s->core.ready, 1);
    events_loop(s);
    return NULL;
}

/* ---- start and stop ---- */

void lt_scheduler_opts_init(lt_scheduler_opts *o) {
    memset(o, 0, sizeof *o);
    o->port = 8080;
    o->storage = "./lathe-data";
    o->create_topics = 1;
    o->check_dataset = 1;
    lt_err err = {{0}};
    (void)lt_kafka_config_init(&o->kafka, &err); /* usable with defaults even on error */
}

lt_scheduler *lt_scheduler_start(const lt_scheduler_opts *o, lt_err *err) {
    lt_scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->kafka = o->kafka;
    s->quiet = o->quiet;
    lt_kafka_topic(&s->kafka, LT_TOPIC_JOBS, s->topic_jobs, sizeof s->topic_jobs);
    lt_kafka_topic(&s->kafka, LT_TOPIC_CONTROL, s->topic_control, sizeof s->topic_control);
    lt_kafka_topic(&s->kafka, LT_TOPIC_EVENTS, s->topic_events, sizeof s->topic_events);
    lt_kafka_topic(&s->kafka, LT_TOPIC_JOBS_STATE, s->topic_state, sizeof s->topic_state);
    lt_kafka_topic(&s->kafka, LT_TOPIC_REGISTRY, s->topic_registry, sizeof s->topic_registry);
    char group[LT_KAFKA_TOPIC_MAX];
    snprintf(group, sizeof group, "%sscheduler", s->kafka.prefix);
    /* a relative local root becomes absolute: job messages must mean the same path to every worker */
    const char *root = o->storage && o->storage[0] ? o->storage : "./lathe-data";
    char cwd[4096];
    if (!strstr(root, "://") && root[0] != '/' && getcwd(cwd, sizeof cwd)) {
        while (root[0] == '.' && root[1] == '/')
            root += 2;
        s->storage = lt_uri_join(cwd, root);
    } else {
        s->storage = strdup(root);
    }
    s->group = strdup(o->group_id && o->group_id[0] ? o->group_id : group);
    s->client = strdup(o->client_id && o->client_id[0] ? o->client_id : "lathe-scheduler");
    if (!s->storage || !s->group || !s->client) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    lt_storage *probe =
        lt_storage_open(s->storage, NULL, err); /* a bad LATHE_STORAGE fails now, not per job */
    if (!probe) {
        char msg[LT_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", err->msg);
        lt_errorf(err, LT_ERR_ARG, "storage: %s", msg);
        goto fail;
    }
    lt_storage_close(probe);
    lt_storage_opts_init(&s->storage_opts);
    s->storage_opts.max_retries = 2;
    s->storage_opts.connect_timeout_ms = 5000;
    s->storage_opts.request_timeout_ms = 30000;

    if (!(s->prod = lt_sched_producer_new(&s->kafka, s->client, err))) goto fail;
    if (!(s->dlq = lt_kafka_producer_new(&s->kafka, s->client, 30000, err))) goto fail;
    if (o->create_topics) {
        lt_err terr = {{0}};
        if (lt_kafka_create_topics(&s->kafka, 10000, &terr) != LT_OK)
            logf_(s, "could not create the topics (they may exist already): %s", terr.msg);
    }
    lt_sched_bus bus = {.ctx = s,
                        .persist = bus_persist,
                        .wait = bus_wait,
                        .publish_job = bus_publish_job,
                        .publish_cancel = bus_publish_cancel,
                        .healthy = bus_healthy};
    lt_submit_opts sub = {.storage_root = s->storage,
                          .storage_opts = &s->storage_opts,
                          .check_dataset = o->check_dataset,
                          .allow_noop = o->allow_noop,
                          .resolve_model = o->resolve_model,
                          .resolve_model_ctx = o->resolve_model_ctx};
    if (lt_sched_init(&s->core, &bus, &sub, o->api_token, err) != LT_OK) goto fail;
    lt_registry_opts ro = {.store = {.ctx = s, .put = registry_put, .wait = bus_wait},
                           .storage_root = s->storage,
                           .storage_opts = &s->storage_opts,
                           .inference_timeout_ms = o->inference_timeout_ms,
                           .load_timeout_ms = o->load_timeout_ms,
                           .quiet = o->quiet};
    if (!(s->registry = lt_registry_new(&ro, err))) goto fail;
    s->core.registry = s->registry;
    s->gateway_fetch_wait_ms = o->gateway_fetch_wait_ms;
    if (!s->core.submit.resolve_model) { /* batch inferences name their model as the registry knows it */
        s->core.submit.resolve_model = lt_registry_resolve_model;
        s->core.submit.resolve_model_ctx = s->registry;
    }
    if (o->registry_dir && o->registry_dir[0]) {
        size_t n = 0;
        if (lt_registry_load_dir(s->registry, o->registry_dir, &n, err) != LT_OK) goto fail;
        if (n) logf_(s, "%zu registry record(s) loaded from %s", n, o->registry_dir);
        if (!(s->registry_mirror = lt_mirror_open(o->registry_dir, err))) goto fail;
    }
    if (o->state_dir && o->state_dir[0]) {
        size_t n = 0;
        if (lt_mirror_load(o->state_dir, &s->core, &n, err) != LT_OK) goto fail;
        if (n) logf_(s, "%zu job record(s) loaded from %s", n, o->state_dir);
        if (!(s->mirror = lt_mirror_open(o->state_dir, err))) goto fail;
        s->republish = o->republish_unfinished;
    }
    if (!(s->http = lt_http_start(&s->core, o->bind, o->port, err))) goto fail;
    if (pthread_create(&s->thread, NULL, run, s)) {
        lt_errorf(err, LT_ERR_NOMEM, "cannot start the scheduler thread");
        goto fail;
    }
    s->thread_started = 1;
    logf_(s, "API on port %d, storage %s, Kafka %s, topics %s*", lt_http_port(s->http), s->storage,
          s->kafka.brokers, s->kafka.prefix);
    return s;
fail:
    lt_scheduler_stop(s);
    return NULL;
}

int lt_scheduler_port(const lt_scheduler *s) {
    return lt_http_port(s->http);
}

int lt_scheduler_ready(const lt_scheduler *s) {
    return atomic_load(&s->core.ready);
}

void lt_scheduler_stop(lt_scheduler *s) {
    if (!s) return;
    atomic_store(&s->stop, 1);
    lt_http_stop(s->http); /* no request is in flight after this */
    /* the events thread may be waiting for records to be delivered: give them 5 s, then fail them, so a
       scheduler whose brokers are gone still stops (its events are folded again at the next start) */
    if (s->thread_started) lt_sched_producer_abort(s->prod, 5000);
    if (s->thread_started) pthread_join(s->thread, NULL);
    lt_registry_free(s->registry); /* waits for its gateway calls; records still go through prod */
    s->core.registry = NULL;
    lt_gateway_free(s->gateway);
    lt_sched_producer_destroy(s->prod);
    lt_kafka_producer_destroy(s->dlq);
    lt_mirror_close(s->mirror);
    lt_mirror_close(s->registry_mirror);
    lt_sched_free(&s->core);
    free(s->storage);
    free(s->group);
    free(s->client);
    free(s);
}
