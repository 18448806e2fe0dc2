/* cmd_mock_kafka.c - `lathe mock-kafka`: librdkafka's mock Kafka cluster in its own process, for tests and
 * local runs, with fault injection from a control file or signals (messaging/mock.h lists the commands). */
#define _GNU_SOURCE
#include "commands.h"
#include "messaging/mock.h"
#include "messaging/options.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const lt_opt_spec specs[] = {
    {"brokers", NULL, "N", "3", "number of mock brokers (1..16)"},
    {"partitions", NULL, "N", "8", "partitions of the jobs and events topics"},
    {"topic-prefix", "LATHE_TOPIC_PREFIX", "P", "lathe.", "prefix of the topic names"},
    {"port-file", NULL, "FILE", NULL, "write the bootstrap servers to FILE (atomically) once ready"},
    {"control-file", NULL, "FILE", NULL,
     "poll FILE every 100 ms: run its lines as fault commands, append results to FILE.log, delete FILE"},
    {"config", NULL, "FILE", NULL, "YAML file of these options"},
};

static const char summary[] =
    "Runs librdkafka's mock Kafka cluster (real protocol on 127.0.0.1, random ports) with lathe's topics\n"
    "until SIGTERM/SIGINT. Prints the bootstrap servers on stdout (one line). Fault injection:\n"
    "  SIGUSR1 takes every broker down, SIGUSR2 brings them back;\n"
    "  --control-file FILE: write commands to FILE.tmp and rename it to FILE; they have run once FILE is "
    "gone:\n"
    "    down <broker|all>, up <broker|all>, rtt <broker|all> <ms>, error <api> <count> <error-name>,\n"
    "    leader <topic> <partition> <broker>, topic <name> <partitions>";

static lt_status write_atomic(const char *path, const char *text, lt_err *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) return lt_errorf(err, LT_ERR_IO, "%s: %s", tmp, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return lt_errorf(err, LT_ERR_IO, "%s: %s", path, strerror(errno));
    }
    return LT_OK;
}

/* Runs the commands of a control file once it appears, logs each result to <file>.log and removes it. */
static void run_control_file(lt_kafka_mock *m, const char *path) {
    char work[4096], logpath[4096], line[512];
    snprintf(work, sizeof work, "%s.running", path);
    if (rename(path, work) != 0) return; /* not there (yet) */
    snprintf(logpath, sizeof logpath, "%s.log", path);
    FILE *in = fopen(work, "r"), *log = fopen(logpath, "a");
    while (in && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\r\n")] = 0;
        lt_err err = {{0}};
        lt_status st = lt_kafka_mock_command(m, line, &err);
        fprintf(stderr, "lathe mock-kafka: %s: %s\n", line, st == LT_OK ? "ok" : err.msg);
        if (log)
            fprintf(log, "%s %s%s%s\n", st == LT_OK ? "ok" : "error", line, st == LT_OK ? "" : ": ",
                    st == LT_OK ? "" : err.msg);
    }
    if (in) fclose(in);
    if (log) fclose(log);
    unlink(work);
}

int cmd_mock_kafka(int argc, char **argv) {
    lt_opts o;
    lt_err err = {{0}};
    if (lt_opts_parse(&o, specs, (int)(sizeof specs / sizeof *specs), argc, argv, &err) != LT_OK)
        return cli_usage_error("mock-kafka", "%s", err.msg);
    if (o.help) {
        lt_opts_print_help(stdout, "mock-kafka", summary, specs, (int)(sizeof specs / sizeof *specs));
        lt_opts_free(&o);
        return 0;
    }
    int64_t brokers = 3, partitions = 8;
    lt_kafka_config c;
    lt_kafka_config_init(&c, NULL);
    if (lt_opts_int(&o, "brokers", 1, 16, &brokers, &err) != LT_OK ||
        lt_opts_int(&o, "partitions", 1, 1000, &partitions, &err) != LT_OK ||
        lt_kafka_config_set(&c, NULL, lt_opts_get(&o, "topic-prefix"), &err) != LT_OK) {
        lt_opts_free(&o);
        return cli_usage_error("mock-kafka", "%s", err.msg);
    }
    c.jobs_partitions = (int)partitions;

    /* Signals are taken synchronously with sigtimedwait: blocked here, before librdkafka starts its threads
     * (which inherit the mask), so no handler and no global is needed. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    lt_kafka_mock *m = lt_kafka_mock_new((int)brokers, &c, &err);
    if (!m) {
        lt_opts_free(&o);
        return cli_fail("mock-kafka", err.msg);
    }
    const char *bootstraps = lt_kafka_mock_bootstraps(m), *port_file = lt_opts_get(&o, "port-file"),
               *control = lt_opts_get(&o, "control-file");
    char text[LT_KAFKA_STR_MAX + 2];
    snprintf(text, sizeof text, "%s\n", bootstraps);
    if (port_file && write_atomic(port_file, text, &err) != LT_OK) {
        lt_kafka_mock_destroy(m);
        lt_opts_free(&o);
        return cli_fail("mock-kafka", err.msg);
    }
    fprintf(stdout, "%s", text);
    fflush(stdout);
    fprintf(stderr,
            "lathe mock-kafka: %d brokers at %s, topics %sjobs (%d partitions), %scontrol, %sevents, "
            "%sjobs.state, %sdlq\n",
            (int)brokers, bootstraps, c.prefix, c.jobs_partitions, c.prefix, c.prefix, c.prefix, c.prefix);

    for (;;) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) break;
        if (sig == SIGUSR1 || sig == SIGUSR2) {
            const char *cmd = sig == SIGUSR1 ? "down all" : "up all";
            lt_status st = lt_kafka_mock_command(m, cmd, &err);
            fprintf(stderr, "lathe mock-kafka: %s: %s\n", cmd, st == LT_OK ? "ok" : err.msg);
        }
        if (control) run_control_file(m, control);
    }
    fprintf(stderr, "lathe mock-kafka: stopping\n");
    lt_kafka_mock_destroy(m);
    if (port_file) unlink(port_file);
    lt_opts_free(&o);
    return 0;
}
