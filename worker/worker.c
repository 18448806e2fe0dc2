/* worker.c - the worker's main loop: the consumer group on <p>jobs, the control reader, the DLQ, offsets,
 * rebalances and shutdown. One job at a time runs on a thread (job.c) while this loop keeps polling.
 *
 * Flow control: messages polled while a job runs wait in a small local queue (`ahead`, in partition order)
 * and the partitions are paused only while that queue is full. Pausing per job, as this loop once did,
 * costs every job a fetch: librdkafka purges a paused partition's prefetched messages, and a resume does not
 * wake the broker thread (rd_kafka_toppar_pause_resume in 2.0 only bumps the version barrier), so the
 * refetch waited for the broker thread's next wake-up: up to 1 s idle, or fetch.wait.max.ms behind an
 * in-flight fetch. Measured: ~11 ms of work, then 0.4-1 s waiting, per job. With the queue, that wait
 * happens once per queue_max / 2 jobs and overlaps with them. Nothing about delivery changes: a message's
 * offset is still stored only when it is handled (its job's final event delivered, or it went to the DLQ), in
 * partition order, so a crash or a revocation redelivers every queued message. */
#define _GNU_SOURCE
#include "worker.h"

#include "io/fsutil.h"
#include "job.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CANCEL_RING 4096 /* cancelled job ids remembered (a cancel may arrive before its job) */
#define REQUEUE_MAX 64
/* The local queue: pause every partition at o->queue_max queued messages (256), resume at half of it. The
 * half (128 tiny jobs of ~2-10 ms each) must outlast a resume's refetch (up to ~1 s, see above); AHEAD_MAX
 * leaves room for what the brokers hand over before the pause takes effect. A queued message is a job
 * request of a few hundred bytes. */
#define AHEAD_MAX 512

/* A message to read again later: its partition was sought back and paused until `due`. */
typedef struct {
    char topic[LT_KAFKA_TOPIC_MAX];
    int32_t partition;
    double due; /* monotonic seconds */
} requeue_entry;

typedef struct {
    const lt_worker_opts *o;
    char id[256]; /* worker id */
    char jobs_topic[LT_KAFKA_TOPIC_MAX], control_topic[LT_KAFKA_TOPIC_MAX], events_topic[LT_KAFKA_TOPIC_MAX];
    rd_kafka_t *consumer;               /* group member on <p>jobs */
    rd_kafka_t *control;                /* group-less reader of every <p>control partition */
    int control_ready;                  /* control partitions assigned */
    double control_retry_at;            /* next assignment attempt while not ready */
    lt_kafka_producer *producer;        /* events, DLQ; shared with the job thread */
    rd_kafka_queue_t *wake;             /* the consumer's queue; a finishing job yields it */
    job_run *run;                       /* the running job, or NULL */
    pthread_t thread;                   /* run's thread */
    char (*cancelled)[129];             /* (CANCEL_RING) ring of cancelled ids */
    size_t n_cancelled;                 /* ids ever added; the ring holds the last CANCEL_RING */
    requeue_entry requeue[REQUEUE_MAX]; /* (n_requeue) */
    int n_requeue;
    rd_kafka_message_t *ahead[AHEAD_MAX]; /* (n_ahead) ring from ahead_head: polled, not yet handled */
    int ahead_head, n_ahead;
    int flow_paused; /* every partition paused because the queue reached o->queue_max */
} worker;

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void lt_worker_default_id(char *buf, size_t size) {
    char host[200] = "worker";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "worker");
    host[sizeof host - 1] = 0;
    snprintf(buf, size, "%s-%d", host, (int)getpid());
}

void lt_worker_opts_init(lt_worker_opts *o) {
    memset(o, 0, sizeof *o);
    lt_kafka_config_init(&o->kafka, NULL);
    o->max_attempts = 5;
    o->storage_retries = -1;
    o->retry_base_ms = 1000;
    o->progress_interval_ms = 1000;
    o->batch_size = 8;
    o->batch_checkpoint_images = 256;
    o->poll_ms = 100;
    o->queue_max = AHEAD_MAX / 2;
    o->max_poll_interval_ms = 300000;
    o->message_timeout_ms = 60000;
}

/* ---- partitions ---- */

static int is_requeued(const worker *w, const char *topic, int32_t partition) {
    for (int i = 0; i < w->n_requeue; i++)
        if (w->requeue[i].partition == partition && !strcmp(w->requeue[i].topic, topic)) return 1;
    return 0;
}

/* Pauses (pause=1) or resumes every assigned partition; resuming skips partitions waiting in requeue. */
static void set_paused(worker *w, int pause) {
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(w->consumer, &a) || !a) return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(a->cnt > 0 ? a->cnt : 1);
    for (int i = 0; i < a->cnt; i++)
        if (pause || !is_requeued(w, a->elems[i].topic, a->elems[i].partition))
            rd_kafka_topic_partition_list_add(l, a->elems[i].topic, a->elems[i].partition);
    if (l->cnt > 0) {
        if (pause)
            rd_kafka_pause_partitions(w->consumer, l);
        else
            rd_kafka_resume_partitions(w->consumer, l);
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_topic_partition_list_destroy(a);
}

/* ---- the local queue ---- */

static rd_kafka_message_t *ahead_at(const worker *w, int i) {
    return w->ahead[(w->ahead_head + i) % AHEAD_MAX];
}

/* Drops the queued messages of one partition at or after offset `from` (INT64_MIN: all of them), keeping the
 * order of the rest: they are read again after a seek, or by the partition's next owner. */
static void ahead_drop(worker *w, const char *topic, int32_t partition, int64_t from) {
    int kept = 0;
    for (int i = 0; i < w->n_ahead; i++) {
        rd_kafka_message_t *m = ahead_at(w, i);
        if (m->partition == partition && m->offset >= from && !strcmp(rd_kafka_topic_name(m->rkt), topic))
            rd_kafka_message_destroy(m);
        else
            w->ahead[(w->ahead_head + kept++) % AHEAD_MAX] = m;
    }
    w->n_ahead = kept;
}

static void ahead_clear(worker *w) {
    while (w->n_ahead > 0) {
        rd_kafka_message_destroy(w->ahead[w->ahead_head]);
        w->ahead_head = (w->ahead_head + 1) % AHEAD_MAX;
        w->n_ahead--;
    }
}

/* Seeks a partition back to offset and pauses it for delay_ms, so the message is read again later (by
 * this worker, or by the partition's next owner since nothing was committed). Queued messages of the
 * partition from offset on are dropped: they come again after the seek. */
static void requeue(worker *w, const char *topic, int32_t partition, int64_t offset, int delay_ms) {
    ahead_drop(w, topic, partition, offset);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = offset;
    rd_kafka_pause_partitions(w->consumer, l);
    rd_kafka_error_t *e = rd_kafka_seek_partitions(w->consumer, l, 5000);
    if (e) {
        worker_log(w->id, "seek %s/%d to %lld: %s", topic, (int)partition, (long long)offset,
                   rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
    if (!is_requeued(w, topic, partition) && w->n_requeue < REQUEUE_MAX) {
        requeue_entry *q = &w->requeue[w->n_requeue++];
        snprintf(q->topic, sizeof q->topic, "%s", topic);
        q->partition = partition;
        q->due = mono_now() + delay_ms / 1000.0;
    }
}

/* Resumes requeued partitions whose time has come (while the queue is full, the flow control's resume
 * does it later). */
static void requeue_due(worker *w) {
    double now = mono_now();
    for (int i = 0; i < w->n_requeue; i++) {
        if (w->requeue[i].due > now) continue;
        if (!w->flow_paused) {
            rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
            rd_kafka_topic_partition_list_add(l, w->requeue[i].topic, w->requeue[i].partition);
            rd_kafka_resume_partitions(w->consumer, l);
            rd_kafka_topic_partition_list_destroy(l);
        }
        w->requeue[i--] = w->requeue[--w->n_requeue];
    }
}

/* Pauses every partition when the queue reaches queue_max, resumes them when it is down to half of it. */
static void flow_control(worker *w) {
    if (!w->flow_paused && w->n_ahead >= w->o->queue_max) {
        set_paused(w, 1);
        w->flow_paused = 1;
    } else if (w->flow_paused && w->n_ahead <= w->o->queue_max / 2 && !*w->o->stop) {
        w->flow_paused = 0;
        set_paused(w, 0);
    }
}

/* ---- jobs ---- */

static int is_cancelled(const worker *w, const char *id) {
    size_t n = w->n_cancelled < CANCEL_RING ? w->n_cancelled : CANCEL_RING;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(w->cancelled[i], id)) return 1;
    return 0;
}

/* Sends a state event for a job this worker will not run (a malformed message with a readable id). */
static void emit_state(worker *w, const char *job_id, lt_job_state state, const char *error) {
    lt_msg_event ev = lt_msg_event_init(LT_EV_STATE, job_id, w->id, 0);
    ev.state = state;
    ev.error = (char *)error;
    char *json = NULL;
    lt_err err = {{0}};
    if (lt_msg_event_encode(&ev, &json, &err) == LT_OK)
        lt_kafka_produce_sync(w->producer, w->events_topic, job_id, json, strlen(json), NULL, 0, &err);
    if (err.msg[0]) worker_log(w->id, "job %s: state event not sent: %s", job_id, err.msg);
    free(json);
}

/* Joins a finished job thread and settles its offset. in_rebalance: commit synchronously, since the
 * partition is about to go. */
static void finish_job(worker *w, int in_rebalance) {
    job_run *r = w->run;
    pthread_join(w->thread, NULL);
    w->run = NULL;
    lt_err err = {{0}};
    if (r->outcome == JOB_OUTCOME_FINAL) {
        if (lt_kafka_store_offset(w->consumer, r->topic, r->partition, r->offset, &err) != LT_OK)
            worker_log(w->id, "job %s: %s (it may be delivered again; handling is idempotent)", r->job.id,
                       err.msg);
        else if (in_rebalance)
            rd_kafka_commit(w->consumer, NULL, 0);
    } else if (atomic_load(&r->stop) == JOB_STOP_NONE || atomic_load(&r->stop) == JOB_STOP_CANCEL) {
        /* the final event could not be delivered: read the job again after a pause */
        if (!in_rebalance) requeue(w, r->topic, r->partition, r->offset, w->o->retry_base_ms * 5);
    }
    lt_msg_job_free(&r->job);
    free(r);
}

static void start_job(worker *w, const rd_kafka_message_t *m, lt_msg_job *job) {
    job_run *r = calloc(1, sizeof *r);
    if (!r) {
        lt_msg_job_free(job);
        requeue(w, rd_kafka_topic_name(m->rkt), m->partition, m->offset, 1000);
        return;
    }
    r->opts = w->o;
    r->worker_id = w->id;
    r->producer = w->producer;
    r->wake = w->wake;
    snprintf(r->events_topic, sizeof r->events_topic, "%s", w->events_topic);
    r->job = *job; /* ownership moves to the run */
    memset(job, 0, sizeof *job);
    snprintf(r->topic, sizeof r->topic, "%s", rd_kafka_topic_name(m->rkt));
    r->partition = m->partition;
    r->offset = m->offset;
    atomic_init(&r->stop, is_cancelled(w, r->job.id) ? JOB_STOP_CANCEL : JOB_STOP_NONE);
    atomic_init(&r->done, 0);
    worker_log(w->id, "job %s: received from %s/%d offset %lld", r->job.id, r->topic, (int)r->partition,
               (long long)r->offset);
    /* The loop keeps polling meanwhile; what it fetches waits in the local queue (flow_control). */
    w->run = r;
    if (pthread_create(&w->thread, NULL, job_thread, r) != 0) {
        worker_log(w->id, "job %s: cannot start a thread; retrying later", r->job.id);
        w->run = NULL;
        requeue(w, r->topic, r->partition, r->offset, 1000);
        lt_msg_job_free(&r->job);
        free(r);
    }
}

/* Takes a polled message: errors are logged, a message goes to the back of the local queue. */
static void receive(worker *w, rd_kafka_message_t *m) {
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            worker_log(w->id, "consumer: %s", lt_kafka_message_error(m));
        rd_kafka_message_destroy(m);
        return;
    }
    if (w->n_ahead == AHEAD_MAX) {
        /* more than the brokers should hand over after a pause: read it again later */
        requeue(w, rd_kafka_topic_name(m->rkt), m->partition, m->offset, 0);
        rd_kafka_message_destroy(m);
        return;
    }
    w->ahead[(w->ahead_head + w->n_ahead++) % AHEAD_MAX] = m;
}

/* Handles one message while no job runs: starts its job, or sends it to the dead-letter topic. */
static void handle_message(worker *w, const rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    lt_msg_job job;
    lt_err err = {{0}}, e2 = {{0}};
    if (lt_msg_job_decode(m->payload, m->len, &job, &err) == LT_OK) {
        start_job(w, m, &job);
        return;
    }
    worker_log(w->id, "malformed message at %s/%d offset %lld sent to the dead-letter topic: %s", topic,
               (int)m->partition, (long long)m->offset, err.msg);
    if (lt_kafka_dlq_publish(w->producer, &w->o->kafka, m, err.msg, &e2) != LT_OK) {
        worker_log(w->id, "dead-letter publish failed (%s); retrying later", e2.msg);
        requeue(w, topic, m->partition, m->offset, w->o->retry_base_ms * 5);
        return;
    }
    /* a scheduler waiting on this id learns why it will never run */
    char *id = lt_msg_peek_id(m->payload, m->len), msg[LT_ERR_MSG_MAX + 32];
    if (id) {
        snprintf(msg, sizeof msg, "malformed job message: %s", err.msg);
        emit_state(w, id, LT_JOB_FAILED, msg);
        free(id);
    }
    if (lt_kafka_store_offset(w->consumer, topic, m->partition, m->offset, &e2) != LT_OK)
        worker_log(w->id, "%s", e2.msg);
}

/* Handles queued messages, in order, until one starts a job. */
static void dispatch(worker *w) {
    while (!w->run && w->n_ahead > 0 && !*w->o->stop) {
        rd_kafka_message_t *m = w->ahead[w->ahead_head];
        w->ahead_head = (w->ahead_head + 1) % AHEAD_MAX;
        w->n_ahead--;
        handle_message(w, m);
        rd_kafka_message_destroy(m);
    }
}

/* ---- control ---- */

static void poll_control(worker *w) {
    if (!w->control_ready) {
        if (mono_now() < w->control_retry_at) return;
        lt_err err = {{0}};
        if (lt_kafka_reader_assign_all(w->control, w->control_topic, 1, 1000, &err) != LT_OK) {
            worker_log(w->id, "control topic: %s (retrying in 5 s)", err.msg);
            w->control_retry_at = mono_now() + 5;
            return;
        }
        w->control_ready = 1;
    }
    for (int i = 0; i < 1000; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->control, 0);
        if (!m) break;
        lt_msg_control c;
        lt_err err = {{0}};
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                worker_log(w->id, "control: %s", lt_kafka_message_error(m));
        } else if (lt_msg_control_decode(m->payload, m->len, &c, &err) != LT_OK) {
            worker_log(w->id, "control: ignoring a malformed message at offset %lld: %s",
                       (long long)m->offset, err.msg);
        } else {
            snprintf(w->cancelled[w->n_cancelled++ % CANCEL_RING], 129, "%s", c.id);
            if (w->run && !strcmp(w->run->job.id, c.id)) {
                int none = JOB_STOP_NONE;
                if (atomic_compare_exchange_strong(&w->run->stop, &none, JOB_STOP_CANCEL))
                    worker_log(w->id, "job %s: cancel requested; stopping at the next step", c.id);
            }
        }
        rd_kafka_message_destroy(m);
    }
}

/* ---- rebalances ---- */

static void log_partitions(worker *w, const char *what, const rd_kafka_topic_partition_list_t *l) {
    char buf[1024];
    size_t n = 0;
    buf[0] = 0;
    for (int i = 0; i < l->cnt && n + 16 < sizeof buf; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%d", i ? "," : "", (int)l->elems[i].partition);
    worker_log(w->id, "%s partitions [%s]", what, buf);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
    worker *w = opaque;
    int coop = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *err = NULL;
    if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_partitions(w, "assigned", parts);
        if (coop)
            err = rd_kafka_incremental_assign(rk, parts);
        else
            rd_kafka_assign(rk, parts);
        /* Queue full: hold new partitions too. Otherwise resume explicitly, since a partition paused before
         * its revocation keeps librdkafka's pause flag when it comes back. */
        if (w->flow_paused)
            rd_kafka_pause_partitions(rk, parts);
        else
            rd_kafka_resume_partitions(rk, parts);
    } else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        log_partitions(w, rd_kafka_assignment_lost(rk) ? "lost" : "revoked", parts);
        job_run *r = w->run;
        int hit = 0;
        for (int i = 0; r && i < parts->cnt; i++)
            hit |= parts->elems[i].partition == r->partition && !strcmp(parts->elems[i].topic, r->topic);
        if (hit) {
            /* Hand the partition over only once the job has stopped and its checkpoint is uploaded, so the
             * next owner resumes from it. Bounded well below max.poll.interval.ms. */
            int none = JOB_STOP_NONE;
            if (atomic_compare_exchange_strong(&r->stop, &none, JOB_STOP_REVOKED))
                worker_log(w->id, "job %s: partition revoked; stopping at the next step", r->job.id);
            double until = mono_now() + w->o->max_poll_interval_ms / 2000.0;
            while (!atomic_load(&r->done) && mono_now() < until) {
                lt_kafka_producer_poll(w->producer, 100);
            }
            if (atomic_load(&r->done))
                finish_job(w, 1);
            else
                worker_log(w->id, "job %s: still running after revocation; giving the partition up",
                           r->job.id);
        }
        for (int i = 0; i < w->n_requeue; i++)
            if (rd_kafka_topic_partition_list_find(parts, w->requeue[i].topic, w->requeue[i].partition))
                w->requeue[i--] = w->requeue[--w->n_requeue];
        /* queued messages of these partitions belong to their next owner (nothing of them was stored) */
        for (int i = 0; i < parts->cnt; i++)
            ahead_drop(w, parts->elems[i].topic, parts->elems[i].partition, INT64_MIN);
        if (coop)
            err = rd_kafka_incremental_unassign(rk, parts);
        else
            rd_kafka_assign(rk, NULL);
    } else {
        worker_log(w->id, "rebalance error: %s", rd_kafka_err2str(e));
        rd_kafka_assign(rk, NULL);
    }
    if (err) {
        worker_log(w->id, "rebalance: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
}

/* ---- run ---- */

lt_status lt_worker_run(const lt_worker_opts *o, lt_err *err) {
    if (!o->work_dir || !*o->work_dir) return lt_errorf(err, LT_ERR_ARG, "worker: --work-dir is required");
    if (!o->stop) return lt_errorf(err, LT_ERR_ARG, "worker: no stop flag");
    if (o->poll_ms < 1 || o->poll_ms > 100)
        return lt_errorf(err, LT_ERR_ARG, "worker: --poll-ms must be 1..100, got %d", o->poll_ms);
    if (o->max_attempts < 1) return lt_errorf(err, LT_ERR_ARG, "worker: --max-attempts must be >= 1");
    if (o->queue_max < 2 || o->queue_max > AHEAD_MAX / 2)
        return lt_errorf(err, LT_ERR_ARG, "worker: queue_max must be 2..%d, got %d", AHEAD_MAX / 2,
                         o->queue_max);
    worker *w = calloc(1, sizeof *w);
    if (!w || !(w->cancelled = calloc(CANCEL_RING, sizeof *w->cancelled))) {
        free(w);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    w->o = o;
    if (o->worker_id && *o->worker_id)
        snprintf(w->id, sizeof w->id, "%s", o->worker_id);
    else
        lt_worker_default_id(w->id, sizeof w->id);
    lt_kafka_topic(&o->kafka, LT_TOPIC_JOBS, w->jobs_topic, sizeof w->jobs_topic);
    lt_kafka_topic(&o->kafka, LT_TOPIC_CONTROL, w->control_topic, sizeof w->control_topic);
    lt_kafka_topic(&o->kafka, LT_TOPIC_EVENTS, w->events_topic, sizeof w->events_topic);
    char group[300];
    if (o->group_id && *o->group_id)
        snprintf(group, sizeof group, "%s", o->group_id);
    else
        snprintf(group, sizeof group, "%sworkers", o->kafka.prefix);

    lt_status st = LT_OK;
    const char *topics[] = {w->jobs_topic};
    if (o->create_topics) {
        lt_err e = {{0}};
        if (lt_kafka_create_topics(&o->kafka, 5000, &e) != LT_OK)
            worker_log(w->id, "topics not created (they may exist already): %s", e.msg);
    }
    if (lt_mkdir_p(o->work_dir, err) != LT_OK) st = LT_ERR_IO;
    /* A job's result and final state are produced and awaited one after the other (the offset is stored
     * only once they are acknowledged), so the producer's linger is pure latency on every job: ~5 ms of
     * lathe's default twice per job, more than a tiny job's whole work. Unless LATHE_KAFKA_LINGER_MS says
     * otherwise, the worker sends at once; the brokers still get batches when events queue up. */
    lt_kafka_config *pc = malloc(sizeof *pc);
    if (st == LT_OK && !pc) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) {
        *pc = o->kafka;
        int set = 0;
        for (int i = 0; i < pc->n_props; i++)
            set |= !strcmp(pc->props[i].name, "linger.ms");
        if (!set && pc->n_props < LT_KAFKA_MAX_PROPS) {
            snprintf(pc->props[pc->n_props].name, sizeof pc->props[0].name, "linger.ms");
            snprintf(pc->props[pc->n_props].value, sizeof pc->props[0].value, "0");
            pc->n_props++;
        }
    }
    if (st == LT_OK && !(w->producer = lt_kafka_producer_new(pc, w->id, o->message_timeout_ms, err)))
        st = LT_ERR_ARG;
    free(pc);
    if (st == LT_OK && !(w->consumer = lt_kafka_consumer_new(&o->kafka, w->id, group, rebalance_cb, w,
                                                             o->max_poll_interval_ms, err)))
        st = LT_ERR_ARG;
    if (st == LT_OK) w->wake = rd_kafka_queue_get_consumer(w->consumer);
    if (st == LT_OK && !(w->control = lt_kafka_reader_new(&o->kafka, w->id, err))) st = LT_ERR_ARG;
    if (st == LT_OK) st = lt_kafka_subscribe(w->consumer, topics, 1, err);
    if (st == LT_OK) {
        worker_log(w->id, "started: brokers %s, group %s, topics %s/%s/%s, storage %s, work dir %s",
                   o->kafka.brokers, group, w->jobs_topic, w->control_topic, w->events_topic,
                   o->storage ? o->storage : "(job URIs)", o->work_dir);
        while (!*o->stop) {
            /* Block only when nothing is waiting to be handled; a finishing job wakes the poll (job.c). */
            int pending = !w->run && w->n_ahead > 0;
            rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, pending ? 0 : o->poll_ms);
            if (m) receive(w, m);
            poll_control(w);
            lt_kafka_producer_poll(w->producer, 0);
            if (w->run && atomic_load(&w->run->done)) finish_job(w, 0);
            requeue_due(w);
            dispatch(w);
            flow_control(w);
        }
        /* Shutdown: stop the job at its next step (it checkpoints and uploads), keep serving the group and
         * the control topic meanwhile, don't commit it, then leave the group. */
        worker_log(w->id, "shutting down");
        if (w->run) {
            int none = JOB_STOP_NONE;
            atomic_compare_exchange_strong(&w->run->stop, &none, JOB_STOP_SHUTDOWN);
            while (w->run && !atomic_load(&w->run->done)) {
                rd_kafka_message_t *m = rd_kafka_consumer_poll(w->consumer, o->poll_ms);
                if (m) receive(w, m);
                poll_control(w);
                lt_kafka_producer_poll(w->producer, 0);
            }
            if (w->run) finish_job(w, 0);
        }
    }
    ahead_clear(w); /* not stored: redelivered to the partitions' next owners */
    if (w->wake) rd_kafka_queue_destroy(w->wake);
    if (w->consumer) {
        rd_kafka_resp_err_t e = lt_kafka_consumer_destroy(w->consumer, 1);
        if (e) worker_log(w->id, "leaving the group: %s", rd_kafka_err2str(e));
    }
    if (w->control) {
        rd_kafka_consumer_close(w->control);
        rd_kafka_destroy(w->control);
    }
    lt_kafka_producer_destroy(w->producer); /* flushes */
    if (st == LT_OK) worker_log(w->id, "stopped");
    free(w->cancelled);
    free(w);
    return st;
}
