/* main.c - the lathe binary: one program, one subcommand per job. */
#include "commands.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"train", cmd_train, "train a model on a data set folder"},
    {"evaluate", cmd_evaluate, "compute metrics of a trained model on a data set split"},
    {"predict", cmd_predict, "score images with a trained model (one JSON line per image)"},
    {"worker", cmd_worker, "run training jobs from Kafka (a stateless worker)"},
    {"mock-kafka", cmd_mock_kafka, "run librdkafka's mock Kafka cluster (tests, local runs)"},
    {"scheduler", cmd_scheduler, "run the HTTP API that queues trainings on Kafka and tracks them"},
    {"standalone", cmd_standalone, "run scheduler, workers and an in-process Kafka in one process"},
    {"submit", cmd_submit, "submit a training to a scheduler (--wait for its end)"},
    {"status", cmd_status, "print a training's record"},
    {"list", cmd_list, "list trainings (--state S)"},
    {"cancel", cmd_cancel, "cancel a training"},
    {"models", cmd_models, "list models, or print one (NAME)"},
    {"endpoints", cmd_endpoints, "list endpoints, or print one (NAME): state, stages, default"},
    {"serve", cmd_serve, "serve a model over HTTP (POST /inference, the guide's request and response)"},
    {"inference-worker", cmd_inference_worker,
     "serve real-time inference requests from Kafka (endpoint topics)"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: lathe <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'lathe <command> --help' describes a command's options.\n");
}

int cli_fail(const char *cmd, const char *msg) {
    /* one line: fold the multi-line data set reports onto it */
    fprintf(stderr, "lathe %s: ", cmd);
    for (const char *p = msg; *p; p++)
        fputc(*p == '\n' ? ' ' : *p, stderr);
    fputc('\n', stderr);
    return 1;
}

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

volatile sig_atomic_t *cli_stop_on_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    return &stop_requested;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lathe %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'lathe %s --help')\n", cmd);
    va_end(ap);
    return 2;
}

/* OpenMP threads (ours and OpenBLAS's) busy-wait between parallel regions: libgomp's default spin of
 * 300,000 iterations. When the cores are shared (two workers on one machine, a container's CPU limit, any
 * other load) the spinning threads steal the time the working ones need and a training step gets 5-10x
 * slower. A short spin keeps the fast hand-over on an idle machine and degrades gracefully on a busy one.
 * libgomp reads the variable when it is loaded, before main(), so set it and start again once. */
static void tame_openmp_spin(char **argv) {
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY")) return;
    setenv("GOMP_SPINCOUNT", "1000", 1);
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc): carry on with the default spin */
}

int main(int argc, char **argv) {
    tame_openmp_spin(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "lathe: unknown command '%s' (see 'lathe --help')\n", argv[1]);
    return 2;
}
