/* worker_thread.h - a lathe worker (lt_worker_run) on a thread of the test, stopped through its stop flag. */
#ifndef LT_TEST_WORKER_THREAD_H
#define LT_TEST_WORKER_THREAD_H

#include "worker/worker.h"

#include <pthread.h>
#include <signal.h>

typedef struct {
    lt_worker_opts o; /* filled by the test before test_worker_go */
    volatile sig_atomic_t stop;
    pthread_t thread;
    lt_status st; /* lt_worker_run's result and error, after test_worker_stop */
    lt_err err;
} test_worker_thread;

/* Points o.stop at w->stop and starts lt_worker_run(&w->o) on a thread. */
void test_worker_go(test_worker_thread *w);
/* Asks the worker to stop, waits for it and checks that it returned LT_OK. */
void test_worker_stop(test_worker_thread *w);

#endif
