/* gateway_double.c - the test double of scheduler/gateway.h (see gateway_double.h). Compiled into the
 * registry's test only; its definitions take the place of the library's gateway. */
#define _GNU_SOURCE
#include "gateway_double.h"

#include "scheduler/gateway.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lt_gateway {
    int unused;
};

/* One double per test process, like the one gateway per scheduler. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hold_loads, hold_infers, infers_waiting;
    gwd_infer_mode mode;
    int creates, deletes, loads;
} g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, GWD_INFER_OK, 0, 0, 0};

void gwd_hold_loads(int hold) {
    pthread_mutex_lock(&g.mu);
    g.hold_loads = hold;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

void gwd_hold_infers(int hold) {
    pthread_mutex_lock(&g.mu);
    g.hold_infers = hold;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

int gwd_infers_waiting(void) {
    pthread_mutex_lock(&g.mu);
    int n = g.infers_waiting;
    pthread_mutex_unlock(&g.mu);
    return n;
}

void gwd_set_infer_mode(gwd_infer_mode m) {
    pthread_mutex_lock(&g.mu);
    g.mode = m;
    pthread_mutex_unlock(&g.mu);
}

static int get(const int *v) {
    pthread_mutex_lock(&g.mu);
    int n = *v;
    pthread_mutex_unlock(&g.mu);
    return n;
}

int gwd_creates(void) {
    return get(&g.creates);
}
int gwd_deletes(void) {
    return get(&g.deletes);
}
int gwd_loads(void) {
    return get(&g.loads);
}

lt_status lt_gateway_new(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                         lt_err *err) {
    (void)kopts, (void)topic_prefix;
    if (!(*out = calloc(1, sizeof **out))) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    return LT_OK;
}

void lt_gateway_opts_init(lt_gateway_opts *o) {
    memset(o, 0, sizeof *o);
}

lt_status lt_gateway_new_opts(lt_gateway **out, const lt_kafka_options *kopts, const char *topic_prefix,
                              const lt_gateway_opts *opts, lt_err *err) {
    (void)opts;
    return lt_gateway_new(out, kopts, topic_prefix, err);
}

void lt_gateway_free(lt_gateway *gw) {
    free(gw);
}

lt_status lt_gateway_create_endpoint(lt_gateway *gw, const char *endpoint, int partitions, lt_err *err) {
    (void)gw;
    pthread_mutex_lock(&g.mu);
    g.creates++;
    pthread_mutex_unlock(&g.mu);
    if (partitions < 1) return lt_errorf(err, LT_ERR_ARG, "partitions: %d", partitions);
    if (!strncmp(endpoint, "fail-topic", 10)) return lt_errorf(err, LT_ERR_IO, "topic creation refused");
    return LT_OK;
}

lt_status lt_gateway_delete_endpoint(lt_gateway *gw, const char *endpoint, lt_err *err) {
    (void)gw, (void)endpoint, (void)err;
    pthread_mutex_lock(&g.mu);
    g.deletes++;
    pthread_mutex_unlock(&g.mu);
    return LT_OK;
}

lt_status lt_gateway_load(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                          int timeout_ms, lt_err *err) {
    (void)gw, (void)endpoint, (void)stage, (void)timeout_ms;
    pthread_mutex_lock(&g.mu);
    g.loads++;
    while (g.hold_loads)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    if (strstr(model_uri, "bad-model"))
        return lt_errorf(err, LT_ERR_FORMAT, "%s/config.json: not a model this worker can load", model_uri);
    return LT_OK;
}

lt_status lt_gateway_infer(lt_gateway *gw, const char *endpoint, const char *stage, const char *model_uri,
                           const char *body, size_t len, int timeout_ms, int *http_status, char **resp_body,
                           size_t *resp_len, lt_err *err) {
    (void)gw, (void)body;
    *resp_body = NULL;
    *resp_len = 0;
    pthread_mutex_lock(&g.mu);
    g.infers_waiting++;
    while (g.hold_infers)
        pthread_cond_wait(&g.cv, &g.mu);
    g.infers_waiting--;
    gwd_infer_mode mode = g.mode;
    pthread_mutex_unlock(&g.mu);
    if (mode == GWD_INFER_TIMEOUT) return lt_errorf(err, LT_ERR_TIMEOUT, "no reply in %d ms", timeout_ms);
    if (mode == GWD_INFER_UNAVAILABLE) return lt_errorf(err, LT_ERR_IO, "broker down");
    char *b = NULL;
    int n = asprintf(&b, "{\"endpoint\":\"%s\",\"stage\":\"%s\",\"model_uri\":\"%s\",\"bytes\":%zu}",
                     endpoint, stage, model_uri, len);
    if (n < 0) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    *http_status = 200;
    *resp_body = b;
    *resp_len = (size_t)n;
    return LT_OK;
}
