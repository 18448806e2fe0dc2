/* worker_thread.c - see worker_thread.h. */
#include "worker_thread.h"

#include "check.h"

static void *worker_main(void *arg) {
    test_worker_thread *w = arg;
    w->st = lt_worker_run(&w->o, &w->err);
    return NULL;
}

void test_worker_go(test_worker_thread *w) {
    w->stop = 0;
    w->o.stop = &w->stop;
    pthread_create(&w->thread, NULL, worker_main, w);
}

void test_worker_stop(test_worker_thread *w) {
    w->stop = 1;
    pthread_join(w->thread, NULL);
    CHECK_MSG(w->st == LT_OK, "worker: %s", w->err.msg);
}
