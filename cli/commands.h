/* commands.h - the subcommands of the lathe binary. Each takes main's argc/argv shifted so argv[0] is the
 * subcommand's name, and returns the process exit status (0 success, 1 failure, 2 usage error). Failures
 * print one line "lathe <cmd>: <reason>" on stderr. */
#ifndef LT_COMMANDS_H
#define LT_COMMANDS_H

#include <signal.h>

int cmd_train(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_worker(int argc, char **argv);
int cmd_mock_kafka(int argc, char **argv);
int cmd_scheduler(int argc, char **argv);
int cmd_standalone(int argc, char **argv);
int cmd_submit(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_cancel(int argc, char **argv);
int cmd_models(int argc, char **argv);
int cmd_endpoints(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_inference_worker(int argc, char **argv);

/* Prints "lathe <cmd>: <msg>" and returns 1 (or 2 for usage errors via cli_usage_error). */
int cli_fail(const char *cmd, const char *msg);
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes SIGTERM and SIGINT set the returned flag, which the long-running commands (worker, inference-worker,
 * serve) poll to stop cleanly. */
volatile sig_atomic_t *cli_stop_on_signals(void);

#endif
