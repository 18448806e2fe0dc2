/* kafka_server.c - the inference worker: endpoint topics in, `lathe serve`'s answers out on reply topics. */
#include "kafka_server.h"

#include "inference/model.h"
#include "inference/response.h"
#include "io/fsutil.h"
#include "messaging/realtime.h"
#include "storage/storage.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A request taken from Kafka, with its headers checked. */
typedef struct item {
    rd_kafka_message_t *m; /* owned until answered */
    int load;              /* "load", else "infer" */
    char id[LT_RT_HEADER_MAX], model_uri[LT_RT_HEADER_MAX], reply_topic[LT_KAFKA_TOPIC_MAX];
    int32_t reply_partition;
    int64_t deadline_ms;
    struct item *next;
} item;

/* A model served by this worker: loaded once per URI, then shared by every request thread. */
typedef struct entry {
    char *uri;             /* as the request named it */
    lt_infer_model *model; /* a reference from the cache */
    lt_infer_service *svc; /* its batcher and metrics */
    int loading;           /* a thread is loading it; others wait on models_cond */
    struct entry *next;
} entry;

struct lt_kserve {
    lt_kserve_opts o;
    char id[256], group[300], cache_dir[4096];
    rd_kafka_t *consumer;
    lt_kafka_producer *producer; /* replies and dead letters, linger.ms=0 */
    lt_infer_cache *cache;
    pthread_t *threads;
    int n_threads;
    pthread_mutex_t mu; /* the queue, stats, closing */
    pthread_cond_t cond;
    item *head, *tail;
    int queued, closing;
    lt_kserve_stats stats;
    pthread_mutex_t models_mu; /* entries */
    pthread_cond_t models_cond;
    entry *models;
};

static void klog(const lt_kserve *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void klog(const lt_kserve *k, const char *fmt, ...) {
    char line[2048], now[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s inference-worker %s: %s\n", now, k->id, line);
}

void lt_kserve_opts_init(lt_kserve_opts *o) {
    memset(o, 0, sizeof *o);
    lt_kafka_config_init(&o->kafka, NULL);
    o->threads = 16;
    o->max_queue = 1024;
    o->serve.batch.max_batch = 8;
    o->serve.batch.max_delay_ms = 2;
    o->fetch_wait_ms = 100;
    o->metadata_refresh_ms = 1000;
}

/* ---- replies ---- */

static void reply(lt_kserve *k, const item *it, int http_status, lt_status result, const char *body) {
    char status[16];
    snprintf(status, sizeof status, "%d", http_status);
    const char *b = body ? body : "{\"error\":\"out of memory\"}";
    rd_kafka_resp_err_t e = rd_kafka_producev(
        lt_kafka_producer_handle(k->producer), RD_KAFKA_V_TOPIC(it->reply_topic),
        RD_KAFKA_V_PARTITION(it->reply_partition), RD_KAFKA_V_KEY(it->id, strlen(it->id)),
        RD_KAFKA_V_VALUE((void *)b, strlen(b)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADER(LT_RT_REQUEST_ID, it->id, -1), RD_KAFKA_V_HEADER(LT_RT_STATUS, status, -1),
        RD_KAFKA_V_HEADER(LT_RT_RESULT, lt_rt_result_str(result), -1), RD_KAFKA_V_END);
    if (e) klog(k, "request %s: reply to %s not sent: %s", it->id, it->reply_topic, rd_kafka_err2str(e));
}

static void reply_error(lt_kserve *k, const item *it, int http_status, lt_status result, const char *msg) {
    char *body = lt_infer_error_response(msg);
    reply(k, it, http_status, result, body);
    free(body);
}

/* ---- models ---- */

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* FNV-1a of the URI: the name of its local copy under cache_dir. */
static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* The local directory of a model URI into dir: a local path as it is, an s3:// prefix synced down to
 * cache_dir/<hash of the URI> (only objects whose ETag changed are fetched again). */
static lt_status model_dir(lt_kserve *k, const char *uri, char *dir, size_t size, lt_err *err) {
    char *resolved = NULL;
    if (!k->o.storage || !*k->o.storage || uri[0] == '/' || strstr(uri, "://"))
        resolved = strdup(uri);
    else
        resolved = lt_uri_join(k->o.storage, uri);
    if (!resolved) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    lt_status st = LT_OK;
    if (strncmp(resolved, "s3://", 5) != 0) {
        const char *path = strncmp(resolved, "file://", 7) ? resolved : resolved + 7;
        snprintf(dir, size, "%s", path);
        if (!is_dir(dir)) st = lt_errorf(err, LT_ERR_NOT_FOUND, "model directory %s does not exist", dir);
    } else {
        if ((size_t)snprintf(dir, size, "%.3900s/%016" PRIx64, k->cache_dir, fnv(resolved)) >= size)
            st = lt_errorf(err, LT_ERR_ARG, "cache folder name too long");
        lt_storage_opts so;
        lt_storage_opts_init(&so);
        char etags[4200];
        snprintf(etags, sizeof etags, "%s/.etags", k->cache_dir);
        so.cache_dir = etags;
        lt_storage *s = st == LT_OK ? lt_storage_open(resolved, &so, err) : NULL;
        if (st != LT_OK || !s)
            st = LT_ERR_ARG;
        else if ((st = lt_mkdir_p(dir, err)) == LT_OK)
            st = lt_storage_sync_down(s, "", dir, err);
        if (s) lt_storage_close(s);
        if (st == LT_ERR_ARG || st == LT_ERR_FORMAT) st = LT_ERR_NOT_FOUND;
    }
    if (st == LT_OK) {
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        if (!is_file(cfg))
            st = lt_errorf(err, LT_ERR_NOT_FOUND, "%s has no config.json: not a model directory", resolved);
    }
    free(resolved);
    return st;
}

/* Loads uri into a new service. Statuses: NOT_FOUND (no such directory), FORMAT (not a model lathe
 * serves), IO (storage trouble: try again later), NOMEM. */
static lt_status load_model(lt_kserve *k, const char *uri, lt_infer_model **model, lt_infer_service **svc,
                            lt_err *err) {
    char dir[4096];
    lt_status st = model_dir(k, uri, dir, sizeof dir, err);
    if (st != LT_OK) return st;
    if ((st = lt_infer_cache_get(k->cache, dir, model, err)) != LT_OK)
        return st == LT_ERR_NOMEM ? st : st == LT_ERR_IO && !is_dir(dir) ? LT_ERR_NOT_FOUND : LT_ERR_FORMAT;
    if ((st = lt_infer_service_create(*model, &k->o.serve, svc, err)) != LT_OK) {
        lt_infer_cache_release(k->cache, *model);
        *model = NULL;
    }
    return st;
}

/* The service of uri, loaded on first use (concurrent first users wait for that one load). A failed load
 * is not remembered: the next request tries again. */
static lt_status get_service(lt_kserve *k, const char *uri, lt_infer_service **svc, lt_err *err) {
    pthread_mutex_lock(&k->models_mu);
    entry *e;
    for (;;) {
        for (e = k->models; e && strcmp(e->uri, uri); e = e->next) {
        }
        if (!e || !e->loading) break;
        pthread_cond_wait(&k->models_cond, &k->models_mu);
    }
    if (e) {
        *svc = e->svc;
        pthread_mutex_unlock(&k->models_mu);
        return LT_OK;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->uri = strdup(uri))) {
        free(e);
        pthread_mutex_unlock(&k->models_mu);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    e->loading = 1;
    e->next = k->models;
    k->models = e;
    pthread_mutex_unlock(&k->models_mu);

    lt_status st = load_model(k, uri, &e->model, &e->svc, err);
    if (st == LT_OK && !k->o.quiet)
        klog(k, "loaded model %s (%s)", uri, lt_infer_algorithm_str(lt_infer_model_algorithm(e->model)));

    pthread_mutex_lock(&k->models_mu);
    e->loading = 0;
    if (st != LT_OK) {
        for (entry **p = &k->models; *p; p = &(*p)->next)
            if (*p == e) {
                *p = e->next;
                break;
            }
        free(e->uri);
        free(e);
    } else {
        *svc = e->svc;
    }
    pthread_cond_broadcast(&k->models_cond);
    pthread_mutex_unlock(&k->models_mu);
    return st;
}

/* ---- request threads ---- */

static int load_http_status(lt_status st) {
    switch (st) {
    case LT_OK:
        return 200;
    case LT_ERR_NOT_FOUND:
        return 404;
    case LT_ERR_FORMAT:
    case LT_ERR_ARG:
        return 422;
    case LT_ERR_IO:
        return 503;
    default:
        return 500;
    }
}

static void handle(lt_kserve *k, item *it) {
    if (lt_rt_now_ms() > it->deadline_ms) {
        pthread_mutex_lock(&k->mu);
        k->stats.expired++;
        pthread_mutex_unlock(&k->mu);
        return;
    }
    lt_err err = {{0}};
    lt_infer_service *svc = NULL;
    lt_status st = get_service(k, it->model_uri, &svc, &err);
    if (st != LT_OK && st != LT_ERR_NOMEM && st != LT_ERR_IO && st != LT_ERR_NOT_FOUND) st = LT_ERR_FORMAT;
    if (it->load) {
        if (st == LT_OK) {
            char body[LT_RT_HEADER_MAX + 512];
            lt_infer_model *m = lt_infer_service_model(svc);
            snprintf(body, sizeof body, "{\"loaded\":true,\"algorithm\":\"%s\",\"worker\":\"%.200s\"}",
                     lt_infer_algorithm_str(lt_infer_model_algorithm(m)), k->id);
            reply(k, it, 200, LT_OK, body);
        } else {
            klog(k, "request %s: loading %s failed: %s", it->id, it->model_uri, err.msg);
            reply_error(k, it, load_http_status(st), st, err.msg);
        }
        pthread_mutex_lock(&k->mu);
        k->stats.loads++;
        pthread_mutex_unlock(&k->mu);
        return;
    }
    if (st != LT_OK) {
        char msg[LT_ERR_MSG_MAX + 400];
        snprintf(msg, sizeof msg, "model %.300s could not be loaded: %s", it->model_uri, err.msg);
        reply_error(k, it, st == LT_ERR_IO ? 503 : 500, st, msg);
    } else {
        char *resp = NULL;
        int status = lt_infer_service_handle(svc, it->m->payload ? (const char *)it->m->payload : "",
                                             it->m->len, &resp);
        reply(k, it, status, status == 200 ? LT_OK : LT_ERR_FORMAT, resp);
        free(resp);
    }
    pthread_mutex_lock(&k->mu);
    k->stats.requests++;
    pthread_mutex_unlock(&k->mu);
}

static void *thread_main(void *arg) {
    lt_kserve *k = arg;
    for (;;) {
        pthread_mutex_lock(&k->mu);
        while (!k->head && !k->closing)
            pthread_cond_wait(&k->cond, &k->mu);
        item *it = k->head;
        if (!it) {
            pthread_mutex_unlock(&k->mu);
            return NULL;
        }
        k->head = it->next;
        if (!k->head) k->tail = NULL;
        k->queued--;
        pthread_mutex_unlock(&k->mu);
        handle(k, it);
        rd_kafka_message_destroy(it->m);
        free(it);
    }
}

/* ---- the consumer ---- */

/* Checks a message's headers into it; NULL when it is a request, else why not. */
static const char *parse_item(const rd_kafka_message_t *m, item *it) {
    char type[16], part[16], deadline[32];
    if (!lt_rt_header(m, LT_RT_TYPE, type, sizeof type)) return "no \"type\" header";
    if (!strcmp(type, "load"))
        it->load = 1;
    else if (strcmp(type, "infer"))
        return "\"type\" header is neither \"infer\" nor \"load\"";
    if (!lt_rt_header(m, LT_RT_REQUEST_ID, it->id, sizeof it->id) || !lt_rt_valid_name(it->id, 128))
        return "missing or bad \"request-id\" header (1-128 of [A-Za-z0-9._-])";
    if (!lt_rt_header(m, LT_RT_MODEL_URI, it->model_uri, sizeof it->model_uri) || !it->model_uri[0])
        return "missing \"model-uri\" header";
    if (!lt_rt_header(m, LT_RT_REPLY_TOPIC, it->reply_topic, sizeof it->reply_topic) ||
        !lt_rt_valid_name(it->reply_topic, 249))
        return "missing or bad \"reply-topic\" header";
    char *end = NULL;
    it->reply_partition = 0;
    if (lt_rt_header(m, LT_RT_REPLY_PARTITION, part, sizeof part)) {
        long p = strtol(part, &end, 10);
        if (!*part || *end || p < 0 || p > 100000) return "bad \"reply-partition\" header";
        it->reply_partition = (int32_t)p;
    }
    if (!lt_rt_header(m, LT_RT_DEADLINE, deadline, sizeof deadline)) return "missing \"deadline-ms\" header";
    long long d = strtoll(deadline, &end, 10);
    if (!*deadline || *end || d <= 0) return "bad \"deadline-ms\" header";
    it->deadline_ms = d;
    return NULL;
}

static void take(lt_kserve *k, rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    lt_err err = {{0}};
    /* at most once: the request counts as taken before it is worked on */
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, m->partition)->offset = m->offset + 1;
    rd_kafka_offsets_store(k->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);

    item *it = calloc(1, sizeof *it);
    const char *why = it ? parse_item(m, it) : "out of memory";
    if (why) {
        klog(k, "malformed request at %s/%d offset %lld sent to the dead-letter topic: %s", topic,
             (int)m->partition, (long long)m->offset, why);
        if (lt_kafka_dlq_publish(k->producer, &k->o.kafka, m, why, &err) != LT_OK)
            klog(k, "dead-letter publish failed: %s", err.msg);
        pthread_mutex_lock(&k->mu);
        k->stats.dead_letter++;
        pthread_mutex_unlock(&k->mu);
        free(it);
        rd_kafka_message_destroy(m);
        return;
    }
    if (lt_rt_now_ms() > it->deadline_ms) {
        pthread_mutex_lock(&k->mu);
        k->stats.expired++;
        pthread_mutex_unlock(&k->mu);
        free(it);
        rd_kafka_message_destroy(m);
        return;
    }
    it->m = m;
    pthread_mutex_lock(&k->mu);
    int full = k->queued >= k->o.max_queue;
    if (full) {
        k->stats.busy++;
    } else {
        if (k->tail)
            k->tail->next = it;
        else
            k->head = it;
        k->tail = it;
        k->queued++;
        pthread_cond_signal(&k->cond);
    }
    pthread_mutex_unlock(&k->mu);
    if (full) {
        reply_error(k, it, 503, LT_ERR_UNAVAILABLE, "the inference worker is busy: too many requests queued");
        free(it);
        rd_kafka_message_destroy(m);
    }
}

/* name = value unless the configuration sets name already (LATHE_KAFKA_*) */
static void add_prop(lt_kafka_config *c, const char *name, int value) {
    char v[32];
    snprintf(v, sizeof v, "%d", value);
    if (!lt_kafka_config_has(c, name)) lt_kafka_config_add(c, name, v);
}

lt_status lt_kserve_new(lt_kserve **out, const lt_kserve_opts *o, lt_err *err) {
    *out = NULL;
    if (o->threads < 1 || o->threads > 1024 || o->max_queue < 1)
        return lt_errorf(err, LT_ERR_ARG, "inference worker: threads must be 1..1024 and max_queue >= 1");
    lt_kserve *k = calloc(1, sizeof *k);
    if (!k) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    k->o = *o;
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cond, NULL);
    pthread_mutex_init(&k->models_mu, NULL);
    pthread_cond_init(&k->models_cond, NULL);
    if (o->worker_id && *o->worker_id) {
        snprintf(k->id, sizeof k->id, "%s", o->worker_id);
    } else {
        char host[200] = "worker";
        if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "worker");
        host[sizeof host - 1] = 0;
        snprintf(k->id, sizeof k->id, "%s-%d", host, (int)getpid());
    }
    snprintf(k->group, sizeof k->group, "%s", o->group_id && *o->group_id ? o->group_id : "");
    if (!k->group[0]) snprintf(k->group, sizeof k->group, "%sinference", o->kafka.prefix);
    if (o->cache_dir && *o->cache_dir) {
        snprintf(k->cache_dir, sizeof k->cache_dir, "%s", o->cache_dir);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(k->cache_dir, sizeof k->cache_dir, "%s/lathe-models", tmp && *tmp ? tmp : "/tmp");
    }
    lt_kafka_config kc = o->kafka;
    add_prop(&kc, "fetch.wait.max.ms", o->fetch_wait_ms > 0 ? o->fetch_wait_ms : 1);
    add_prop(&kc, "topic.metadata.refresh.interval.ms",
             o->metadata_refresh_ms > 0 ? o->metadata_refresh_ms : 1000);
    char client[300], regex[LT_KAFKA_TOPIC_MAX * 2];
    snprintf(client, sizeof client, "lathe-inference-%s", k->id);
    const char *topics[1] = {lt_rt_endpoint_regex(&o->kafka, regex, sizeof regex)};
    lt_status st = LT_OK;
    int max_batch = o->serve.batch.max_batch > 0 ? o->serve.batch.max_batch : 8;
    if (!(k->cache = lt_infer_cache_create(max_batch)))
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    else if (!(k->producer = lt_kafka_producer_new_linger(&o->kafka, client, 10000, 0, err)))
        st = LT_ERR_ARG;
    else if (!(k->consumer = lt_kafka_consumer_new(&kc, client, k->group, NULL, NULL, 0, err)))
        st = LT_ERR_ARG;
    else
        st = lt_kafka_subscribe(k->consumer, topics, 1, err);
    if (st == LT_OK && !(k->threads = calloc((size_t)o->threads, sizeof *k->threads)))
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    for (int i = 0; st == LT_OK && i < o->threads; i++) {
        if (pthread_create(&k->threads[i], NULL, thread_main, k))
            st = lt_errorf(err, LT_ERR_NOMEM, "inference worker: cannot start a thread");
        else
            k->n_threads++;
    }
    if (st != LT_OK) {
        lt_kserve_free(k);
        return st;
    }
    *out = k;
    return LT_OK;
}

lt_status lt_kserve_run(lt_kserve *k, lt_err *err) {
    (void)err;
    if (!k->o.quiet) klog(k, "serving endpoint topics of %s in group %s", k->o.kafka.prefix, k->group);
    while (!(k->o.stop && *k->o.stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, 100);
        lt_kafka_producer_poll(k->producer, 0);
        if (!m) continue;
        if (m->err) {
            /* a new endpoint's topic can be matched before it is fully created: not worth a log line */
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                m->err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && !k->o.quiet)
                klog(k, "consumer: %s", lt_kafka_message_error(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        take(k, m);
    }
    return LT_OK;
}

void lt_kserve_free(lt_kserve *k) {
    if (!k) return;
    pthread_mutex_lock(&k->mu);
    k->closing = 1;
    pthread_cond_broadcast(&k->cond);
    pthread_mutex_unlock(&k->mu);
    for (int i = 0; i < k->n_threads; i++)
        pthread_join(k->threads[i], NULL);
    free(k->threads);
    lt_kafka_consumer_destroy(k->consumer, 1);
    lt_kafka_producer_destroy(k->producer);
    for (entry *e = k->models, *n; e; e = n) {
        n = e->next;
        lt_infer_service_destroy(e->svc);
        lt_infer_cache_release(k->cache, e->model);
        free(e->uri);
        free(e);
    }
    lt_infer_cache_destroy(k->cache);
    pthread_cond_destroy(&k->models_cond);
    pthread_mutex_destroy(&k->models_mu);
    pthread_cond_destroy(&k->cond);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

void lt_kserve_get_stats(lt_kserve *k, lt_kserve_stats *s) {
    pthread_mutex_lock(&k->mu);
    *s = k->stats;
    pthread_mutex_unlock(&k->mu);
}

lt_status lt_kserve_serve(const lt_kserve_opts *o, lt_err *err) {
    lt_kserve *k = NULL;
    lt_status st = lt_kserve_new(&k, o, err);
    if (st != LT_OK) return st;
    st = lt_kserve_run(k, err);
    lt_kserve_free(k);
    return st;
}
