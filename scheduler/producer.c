/* producer.c - an idempotent producer with awaitable delivery tickets (see producer.h). */
#include "producer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Shared by the waiter and the delivery callback; whichever lets go last frees it. */
struct lt_ticket {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;                /* the delivery report came */
    int refs;                /* 2 while both hold it */
    rd_kafka_resp_err_t err; /* its result */
};

struct lt_sched_producer {
    rd_kafka_t *rk;
    pthread_t thread; /* serves delivery reports, checks the brokers */
    atomic_int stop;
    atomic_int healthy;
};

static void ticket_release(lt_ticket *t) {
    pthread_mutex_lock(&t->mu);
    int last = --t->refs == 0;
    pthread_mutex_unlock(&t->mu);
    if (!last) return;
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    lt_ticket *t = m->_private;
    if (m->err)
        fprintf(stderr, "scheduler: delivery to %s failed: %s\n", rd_kafka_topic_name(m->rkt),
                rd_kafka_err2str(m->err));
    if (!t) return;
    pthread_mutex_lock(&t->mu);
    t->err = m->err;
    t->done = 1;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    ticket_release(t);
}

static void *serve(void *arg) {
    lt_sched_producer *p = arg;
    int since_check = 1 << 30;
    while (!atomic_load(&p->stop)) {
        rd_kafka_poll(p->rk, 100);
        if (++since_check >= 30) { /* about every 3 s */
            since_check = 0;
            const struct rd_kafka_metadata *md = NULL;
            rd_kafka_resp_err_t e = rd_kafka_metadata(p->rk, 0, NULL, &md, 2000);
            atomic_store(&p->healthy, e == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->broker_cnt > 0);
            if (md) rd_kafka_metadata_destroy(md);
        }
    }
    return NULL;
}

lt_sched_producer *lt_sched_producer_new(const lt_kafka_config *c, const char *client_id, lt_err *err) {
    lt_sched_producer *p = calloc(1, sizeof *p);
    if (!p) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    char why[512];
    rd_kafka_conf_t *conf = lt_kafka_conf_new(c, client_id, err);
    if (!conf || lt_kafka_conf_set(conf, "enable.idempotence", "true", err) ||
        lt_kafka_conf_set(conf, "acks", "all", err) || lt_kafka_conf_set(conf, "linger.ms", "1", err) ||
        lt_kafka_conf_set(conf, "message.timeout.ms", "120000", err))
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, p);
    if (!(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why))) {
        lt_errorf(err, LT_ERR_ARG, "Kafka producer: %s", why);
        goto fail;
    }
    conf = NULL; /* rd_kafka_new took it over */
    atomic_store(&p->healthy, 1);
    if (pthread_create(&p->thread, NULL, serve, p)) {
        lt_errorf(err, LT_ERR_NOMEM, "cannot start the producer thread");
        rd_kafka_destroy(p->rk);
        goto fail;
    }
    return p;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    free(p);
    return NULL;
}

void lt_sched_producer_destroy(lt_sched_producer *p) {
    if (!p) return;
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    if (rd_kafka_flush(p->rk, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "scheduler: %d message(s) not delivered at shutdown\n", rd_kafka_outq_len(p->rk));
    rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->rk, 0); /* purged messages report failure to their tickets */
    rd_kafka_destroy(p->rk);
    free(p);
}

lt_status lt_sched_produce(lt_sched_producer *p, const char *topic, const char *key, const char *value,
                           size_t len, lt_ticket **ticket, lt_err *err) {
    lt_ticket *t = NULL;
    if (ticket) {
        *ticket = NULL;
        if (!(t = calloc(1, sizeof *t))) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        pthread_mutex_init(&t->mu, NULL);
        pthread_cond_init(&t->cv, NULL);
        t->refs = 2;
    }
    rd_kafka_resp_err_t e =
        rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                          RD_KAFKA_V_VALUE((void *)value, value ? len : 0),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(t), RD_KAFKA_V_END);
    if (e) {
        if (t) {
            pthread_cond_destroy(&t->cv);
            pthread_mutex_destroy(&t->mu);
            free(t);
        }
        return lt_errorf(err, LT_ERR_IO, "producing to %s: %s", topic, rd_kafka_err2str(e));
    }
    if (ticket) *ticket = t;
    return LT_OK;
}

lt_status lt_ticket_wait(lt_ticket *t, lt_err *err) {
    pthread_mutex_lock(&t->mu);
    while (!t->done)
        pthread_cond_wait(&t->cv, &t->mu);
    rd_kafka_resp_err_t e = t->err;
    pthread_mutex_unlock(&t->mu);
    ticket_release(t);
    if (e) return lt_errorf(err, LT_ERR_IO, "Kafka delivery failed: %s", rd_kafka_err2str(e));
    return LT_OK;
}

void lt_sched_producer_abort(lt_sched_producer *p, int grace_ms) {
    if (!p) return;
    rd_kafka_flush(p->rk, grace_ms);
    rd_kafka_purge(p->rk,
                   RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT); /* the serve thread reports them */
}

int lt_sched_producer_healthy(lt_sched_producer *p) {
    return atomic_load(&p->healthy);
}
