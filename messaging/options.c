/* options.c - flags, environment and a flat YAML file (libyaml) merged into one option table. */
#define _GNU_SOURCE
#include "options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

static int find(const lt_opt_spec *specs, int n, const char *name, size_t len) {
    for (int i = 0; i < n; i++)
        if (strlen(specs[i].name) == len && !strncmp(specs[i].name, name, len)) return i;
    return -1;
}

static int parse_bool(const char *v, int *out) {
    static const char *yes[] = {"1", "true", "yes", "on"}, *no[] = {"0", "false", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = 1, 1;
        if (!strcasecmp(v, no[i])) return *out = 0, 1;
    }
    return 0;
}

static lt_status set(lt_opts *o, int i, const char *value, const char *source, lt_err *err) {
    char *v = strdup(value);
    if (!v) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    free(o->values[i]);
    o->values[i] = v;
    o->source[i] = source;
    return LT_OK;
}

void lt_opts_free(lt_opts *o) {
    if (!o) return;
    for (int i = 0; o->values && i < o->n; i++)
        free(o->values[i]);
    free(o->values);
    free((void *)o->source);
    memset(o, 0, sizeof *o);
}

/* ---- YAML ---- */

/* Text of a scalar event (NUL-terminated by libyaml). */
static const char *scalar(const yaml_event_t *ev) {
    return (const char *)ev->data.scalar.value;
}

lt_status lt_opts_load_yaml(const char *path,
                            int (*fn)(void *ctx, const char *key, const char *value, int line, lt_err *err),
                            void *ctx, lt_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return lt_errorf(err, LT_ERR_IO, "%s: %s", path, strerror(errno));
    yaml_parser_t p;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    yaml_parser_set_input_file(&p, f);
    lt_status st = LT_OK;
    int depth = 0;    /* mapping/sequence nesting */
    char *key = NULL; /* pending key of the top mapping */
    int key_line = 0;
    char *joined = NULL; /* a sequence value being joined with ',' */
    int done = 0;
    while (!done && st == LT_OK) {
        if (!yaml_parser_parse(&p, &ev)) {
            st = lt_errorf(err, LT_ERR_FORMAT, "%s:%zu: YAML syntax error: %s", path, p.problem_mark.line + 1,
                           p.problem ? p.problem : "?");
            break;
        }
        int line = (int)ev.start_mark.line + 1;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_MAPPING_START_EVENT:
            if (depth != 0)
                st = lt_errorf(err, LT_ERR_FORMAT, "%s:%d: \"%s\" must be a plain value, not a mapping", path,
                               line, key ? key : "?");
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SEQUENCE_START_EVENT:
            if (depth != 1 || !key)
                st = lt_errorf(err, LT_ERR_FORMAT,
                               "%s:%d: the file must be a mapping of option names to values", path, line);
            else if (!(joined = strdup("")))
                st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
            depth--;
            if (fn(ctx, key, joined, key_line, err)) st = LT_ERR_ARG;
            free(key);
            free(joined);
            key = joined = NULL;
            break;
        case YAML_SCALAR_EVENT:
            if (depth == 0) {
                /* an empty document or a bare scalar */
                if (scalar(&ev)[0])
                    st = lt_errorf(err, LT_ERR_FORMAT,
                                   "%s:%d: the file must be a mapping of option names to values", path, line);
            } else if (depth == 2) {
                char *j = NULL;
                if (asprintf(&j, "%s%s%s", joined, joined[0] ? "," : "", scalar(&ev)) < 0) j = NULL;
                free(joined);
                if (!(joined = j)) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
            } else if (!key) {
                if (!(key = strdup(scalar(&ev)))) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
                key_line = line;
            } else {
                if (fn(ctx, key, scalar(&ev), key_line, err)) st = LT_ERR_ARG;
                free(key);
                key = NULL;
            }
            break;
        case YAML_ALIAS_EVENT:
            st = lt_errorf(err, LT_ERR_FORMAT, "%s:%d: YAML aliases are not supported here", path, line);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    free(key);
    free(joined);
    yaml_parser_delete(&p);
    fclose(f);
    return st;
}

typedef struct {
    lt_opts *o;
    const char *path;
} yaml_ctx;

static int yaml_set(void *ctx, const char *key, const char *value, int line, lt_err *err) {
    yaml_ctx *y = ctx;
    int i = find(y->o->specs, y->o->n, key, strlen(key));
    int b;
    if (i < 0 || !strcmp(key, "config")) {
        lt_errorf(err, LT_ERR_ARG, "%s:%d: unknown option \"%s\"", y->path, line, key);
        return 1;
    }
    if (!y->o->specs[i].arg && !parse_bool(value, &b)) {
        lt_errorf(err, LT_ERR_ARG, "%s:%d: \"%s\" must be true or false", y->path, line, key);
        return 1;
    }
    return set(y->o, i, y->o->specs[i].arg ? value : (b ? "true" : "false"), "config", err) != LT_OK;
}

/* ---- parsing ---- */

lt_status lt_opts_parse(lt_opts *o, const lt_opt_spec *specs, int n, int argc, char **argv, lt_err *err) {
    memset(o, 0, sizeof *o);
    o->specs = specs;
    o->n = n;
    o->values = calloc((size_t)n, sizeof *o->values);
    o->source = calloc((size_t)n, sizeof *o->source);
    if (!o->values || !o->source) {
        lt_opts_free(o);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    lt_status st = LT_OK;
    for (int i = 0; i < n && st == LT_OK; i++)
        if (specs[i].def) st = set(o, i, specs[i].def, "default", err);

    /* 1. check the command line and find --config before anything else */
    const char *config = NULL;
    int ci = find(specs, n, "config", 6);
    if (ci >= 0 && specs[ci].env && getenv(specs[ci].env) && *getenv(specs[ci].env))
        config = getenv(specs[ci].env);
    for (int a = 1; a < argc && st == LT_OK; a++) {
        const char *s = argv[a];
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            o->help = 1;
            continue;
        }
        if (strncmp(s, "--", 2) != 0) {
            st = lt_errorf(err, LT_ERR_ARG, "unexpected argument \"%s\"", s);
            break;
        }
        const char *eq = strchr(s + 2, '=');
        int i = find(specs, n, s + 2, eq ? (size_t)(eq - s - 2) : strlen(s + 2));
        if (i < 0) {
            st = lt_errorf(err, LT_ERR_ARG, "unknown option %.*s", (int)(eq ? eq - s : (long)strlen(s)), s);
            break;
        }
        if (specs[i].arg && !eq && a + 1 >= argc) {
            st = lt_errorf(err, LT_ERR_ARG, "option --%s needs a value (%s)", specs[i].name, specs[i].arg);
            break;
        }
        const char *v = specs[i].arg ? (eq ? eq + 1 : argv[++a]) : NULL;
        if (!specs[i].arg && eq) {
            st = lt_errorf(err, LT_ERR_ARG, "option --%s takes no value", specs[i].name);
            break;
        }
        if (i == ci) config = v;
    }
    if (o->help || st != LT_OK) {
        if (st != LT_OK) lt_opts_free(o);
        return st;
    }

    /* 2. the YAML file */
    if (config && *config) {
        yaml_ctx y = {o, config};
        if ((st = lt_opts_load_yaml(config, yaml_set, &y, err)) != LT_OK) {
            lt_opts_free(o);
            return st;
        }
        st = set(o, ci, config, "flag", err);
    }

    /* 3. the environment */
    for (int i = 0; i < n && st == LT_OK; i++) {
        const char *v = specs[i].env ? getenv(specs[i].env) : NULL;
        int b;
        if (!v || !*v || i == ci) continue;
        if (!specs[i].arg && !parse_bool(v, &b)) {
            st = lt_errorf(err, LT_ERR_ARG, "%s must be true or false, got \"%s\"", specs[i].env, v);
            break;
        }
        st = set(o, i, specs[i].arg ? v : (b ? "true" : "false"), "env", err);
    }

    /* 4. the flags */
    for (int a = 1; a < argc && st == LT_OK; a++) {
        const char *s = argv[a], *eq = strchr(s + 2, '=');
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) continue;
        int i = find(specs, n, s + 2, eq ? (size_t)(eq - s - 2) : strlen(s + 2));
        const char *v = specs[i].arg ? (eq ? eq + 1 : argv[++a]) : "true";
        st = set(o, i, v, "flag", err);
    }
    if (st != LT_OK) lt_opts_free(o);
    return st;
}

const char *lt_opts_get(const lt_opts *o, const char *name) {
    int i = find(o->specs, o->n, name, strlen(name));
    return i >= 0 ? o->values[i] : NULL;
}

lt_status lt_opts_int(const lt_opts *o, const char *name, int64_t min, int64_t max, int64_t *out,
                      lt_err *err) {
    int i = find(o->specs, o->n, name, strlen(name));
    const char *v = i >= 0 ? o->values[i] : NULL;
    if (!v) return LT_OK;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < min || x > max) {
        const char *src =
            o->source[i] && !strcmp(o->source[i], "env") && o->specs[i].env ? o->specs[i].env : NULL;
        if (src)
            return lt_errorf(err, LT_ERR_ARG, "%s must be an integer in [%lld, %lld], got \"%s\"", src,
                             (long long)min, (long long)max, v);
        return lt_errorf(err, LT_ERR_ARG, "--%s must be an integer in [%lld, %lld], got \"%s\"", name,
                         (long long)min, (long long)max, v);
    }
    *out = x;
    return LT_OK;
}

int lt_opts_bool(const lt_opts *o, const char *name) {
    const char *v = lt_opts_get(o, name);
    int b = 0;
    return v && parse_bool(v, &b) && b;
}

void lt_opts_print_help(FILE *f, const char *cmd, const char *summary, const lt_opt_spec *specs, int n) {
    fprintf(
        f,
        "usage: lathe %s [options]\n\n%s\n\noptions (flag > environment > --config YAML file > default):\n",
        cmd, summary);
    for (int i = 0; i < n; i++) {
        char left[96];
        snprintf(left, sizeof left, "--%s%s%s", specs[i].name, specs[i].arg ? " " : "",
                 specs[i].arg ? specs[i].arg : "");
        fprintf(f, "  %-26s %s", left, specs[i].help);
        if (specs[i].env || specs[i].def) {
            fprintf(f, " [");
            if (specs[i].env) fprintf(f, "env %s", specs[i].env);
            if (specs[i].def) fprintf(f, "%sdefault %s", specs[i].env ? "; " : "", specs[i].def);
            fprintf(f, "]");
        }
        fprintf(f, "\n");
    }
    fprintf(f, "  %-26s %s\n", "--help", "show this help");
}
