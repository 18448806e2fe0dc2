/* options.h - command options from flags, environment variables and a YAML file, one table per command.
 *
 * Shared by `lathe worker`, `lathe scheduler` and `lathe mock-kafka`. Each option has a flag name (also its
 * YAML key), an optional environment variable and a default. Precedence, lowest first:
 *   default  <  YAML file (--config FILE)  <  environment variable  <  command-line flag
 * The YAML file is one flat mapping of option names to scalars (a sequence of scalars is joined with ','):
 *   brokers: kafka-0:9092,kafka-1:9092
 *   storage: s3://lathe-data
 *   worker-id: gpu-pool-3
 * Unknown keys and flags are errors naming them (a typo must not be silently ignored). Flags are written
 * `--name value` or `--name=value`; a switch (arg == NULL) takes no value on the command line and
 * true/false/yes/no/1/0 in YAML or the environment. */
#ifndef LT_OPTIONS_H
#define LT_OPTIONS_H

#include "core/status.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    const char *name; /* flag without "--", also the YAML key ("worker-id") */
    const char *env;  /* environment variable, or NULL */
    const char *arg;  /* placeholder shown by --help ("URI", "N"); NULL for a switch */
    const char *def;  /* default value, or NULL */
    const char *help; /* one line */
} lt_opt_spec;

typedef struct {
    const lt_opt_spec *specs; /* (n) borrowed: must outlive the lt_opts */
    int n;
    char **values;       /* (n) malloc'd current values, NULL when unset */
    const char **source; /* (n) "default", "config", "env", "flag" or NULL */
    int help;            /* --help or -h was given: print lt_opts_print_help and exit 0 */
} lt_opts;

/* Fills o from the defaults, the YAML file named by the option "config" (when the table has one and it is
 * set by flag or environment), the environment and argv (argv[0] is the command name). On error o is
 * freed and zeroed and err names the flag, key (with file:line) or variable. */
lt_status lt_opts_parse(lt_opts *o, const lt_opt_spec *specs, int n, int argc, char **argv, lt_err *err);
void lt_opts_free(lt_opts *o);

/* The value of an option (NULL when unset). name must be in the table. */
const char *lt_opts_get(const lt_opts *o, const char *name);
/* Reads an integer option within [min, max]; unset leaves *out alone. LT_ERR_ARG naming the option. */
lt_status lt_opts_int(const lt_opts *o, const char *name, int64_t min, int64_t max, int64_t *out,
                      lt_err *err);
/* 1 when a switch is on. */
int lt_opts_bool(const lt_opts *o, const char *name);

/* Prints "usage: lathe <cmd> [options]", the summary and one line per option with its variable and
 * default. */
void lt_opts_print_help(FILE *f, const char *cmd, const char *summary, const lt_opt_spec *specs, int n);

/* Loads a flat YAML mapping: calls fn(ctx, key, value, line) for each pair in order; a non-zero return
 * stops with LT_ERR_ARG and the message fn wrote into err. LT_ERR_FORMAT naming file:line for YAML
 * syntax errors or nested values; LT_ERR_IO when the file can't be read. */
lt_status lt_opts_load_yaml(const char *path,
                            int (*fn)(void *ctx, const char *key, const char *value, int line, lt_err *err),
                            void *ctx, lt_err *err);

#endif
