/* deploy/ without a container engine: every YAML file parses (libyaml), every `lathe` flag and every LATHE_*
 * / AWS_* variable a manifest hands to a container exists in `lathe <subcommand> --help` of the subcommand
 * that container runs (variables reach containers through env, envFrom ConfigMaps/Secrets and compose
 * environment blocks, merge keys included), the KEDA trigger watches the workers' group on the jobs topic
 * with no more replicas than partitions, another scales the inference workers on their group, workers get a
 * grace period to checkpoint, and the Dockerfile is a multi-stage Debian bookworm build whose runtime stage
 * installs no -dev package. */
#define _GNU_SOURCE
#include "check.h"

#include <ctype.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#define MAX_DOCS 64
#define MAX_HELPS 16

typedef struct {
    yaml_document_t doc;
    char file[PATH_MAX];
} loaded_doc;

static loaded_doc docs[MAX_DOCS];
static int n_docs;
static char lathe_bin[PATH_MAX];

static struct {
    char sub[32];
    char *text; /* NULL when the subcommand's --help failed */
} helps[MAX_HELPS];
static int n_helps;

/* ---- YAML helpers (document API; aliases are references to the anchored node) ---- */

static yaml_node_t *node_at(yaml_document_t *d, int id) {
    return id ? yaml_document_get_node(d, id) : NULL;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The value of key in a mapping, following "<<" merge keys. */
static yaml_node_t *get(yaml_document_t *d, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(node_at(d, p->key));
        if (k && !strcmp(k, key)) return node_at(d, p->value);
    }
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = scalar(node_at(d, p->key));
        if (k && !strcmp(k, "<<")) {
            yaml_node_t *v = get(d, node_at(d, p->value), key);
            if (v) return v;
        }
    }
    return NULL;
}

static yaml_node_t *path(yaml_document_t *d, yaml_node_t *n, const char *const *keys) {
    for (; n && *keys; keys++)
        n = get(d, n, *keys);
    return n;
}

static int seq_len(const yaml_node_t *n) {
    return n && n->type == YAML_SEQUENCE_NODE
               ? (int)(n->data.sequence.items.top - n->data.sequence.items.start)
               : 0;
}

static yaml_node_t *seq_at(yaml_document_t *d, yaml_node_t *n, int i) {
    return node_at(d, n->data.sequence.items.start[i]);
}

/* ---- loading ---- */

static void load_file(const char *file) {
    FILE *f = fopen(file, "rb");
    CHECK_MSG(f != NULL, "cannot open %s", file);
    if (!f) return;
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    for (;;) {
        if (n_docs == MAX_DOCS) {
            CHECK_MSG(0, "more than %d YAML documents under deploy/", MAX_DOCS);
            break;
        }
        loaded_doc *ld = &docs[n_docs];
        if (!yaml_parser_load(&p, &ld->doc)) {
            CHECK_MSG(0, "%s:%zu: YAML error: %s", file, p.problem_mark.line + 1,
                      p.problem ? p.problem : "?");
            break;
        }
        if (!yaml_document_get_root_node(&ld->doc)) { /* end of the stream */
            yaml_document_delete(&ld->doc);
            break;
        }
        snprintf(ld->file, sizeof ld->file, "%s", file);
        n_docs++;
    }
    yaml_parser_delete(&p);
    fclose(f);
}

static int is_yaml(const char *name) {
    size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

static int load_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st)) continue;
        if (S_ISDIR(st.st_mode))
            files += load_dir(p);
        else if (is_yaml(e->d_name)) {
            load_file(p);
            files++;
        }
    }
    closedir(d);
    return files;
}

/* ---- lathe --help ---- */

static const char *help_of(const char *sub) {
    for (int i = 0; i < n_helps; i++)
        if (!strcmp(helps[i].sub, sub)) return helps[i].text;
    if (n_helps == MAX_HELPS) return NULL;
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "'%s' '%s' --help 2>/dev/null", lathe_bin, sub);
    FILE *f = popen(cmd, "r");
    char *text = NULL;
    size_t len = 0;
    if (f) {
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            char *t = realloc(text, len + n + 1);
            if (!t) break;
            text = t;
            memcpy(text + len, buf, n);
            len += n;
            text[len] = 0;
        }
        if (pclose(f) != 0) {
            free(text);
            text = NULL;
        }
    }
    snprintf(helps[n_helps].sub, sizeof helps[n_helps].sub, "%s", sub);
    helps[n_helps].text = text;
    return helps[n_helps++].text;
}

/* word occurs in text, not as part of a longer name (AWS_ENDPOINT_URL is not found in AWS_ENDPOINT_URL_S3) */
static int has_word(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = text; (p = strstr(p, word)); p++) {
        char before = p == text ? ' ' : p[-1], after = p[n];
        if (!(isalnum((unsigned char)before) || before == '_') &&
            !(isalnum((unsigned char)after) || after == '_'))
            return 1;
    }
    return 0;
}

/* "--flag" is listed as an option: followed by a space, '=' or the end of the line */
static int has_flag(const char *text, const char *flag) {
    size_t n = strlen(flag);
    for (const char *p = text; (p = strstr(p, flag)); p++)
        if (p[n] == ' ' || p[n] == '\n' || p[n] == '=') return 1;
    return 0;
}

/* ---- what one lathe container gets ---- */

#define MAX_ITEMS 64

typedef struct {
    char where[PATH_MAX + 64]; /* file and container, for messages */
    char sub[32];              /* subcommand */
    char *flags[MAX_ITEMS];    /* (n_flags) "--name" */
    char *flag_values[MAX_ITEMS];
    int n_flags;
    char *env[MAX_ITEMS]; /* (n_env) variable names */
    char *env_values[MAX_ITEMS];
    int n_env;
} container;

static void add_env(container *c, const char *name, const char *value) {
    if (c->n_env < MAX_ITEMS) {
        c->env[c->n_env] = strdup(name);
        c->env_values[c->n_env++] = value ? strdup(value) : NULL;
    }
}

static const char *env_value(const container *c, const char *name) {
    for (int i = 0; i < c->n_env; i++)
        if (!strcmp(c->env[i], name)) return c->env_values[i];
    return NULL;
}

static const char *flag_value(const container *c, const char *flag) {
    for (int i = 0; i < c->n_flags; i++)
        if (!strcmp(c->flags[i], flag)) return c->flag_values[i];
    return NULL;
}

/* Reads the argument list: [lathe] SUBCOMMAND [--flag [value] | --flag=value ...]. Returns 0 when it is not
 * a lathe command line. */
static int read_args(container *c, const char *const *argv, int argc) {
    int i = 0;
    if (i < argc && (!strcmp(argv[i], "lathe") || strstr(argv[i], "/lathe"))) i++;
    if (i >= argc || argv[i][0] == '-') return 0;
    snprintf(c->sub, sizeof c->sub, "%s", argv[i++]);
    for (; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) || c->n_flags == MAX_ITEMS) continue;
        const char *eq = strchr(argv[i], '=');
        c->flags[c->n_flags] = eq ? strndup(argv[i], (size_t)(eq - argv[i])) : strdup(argv[i]);
        const char *v = eq ? eq + 1 : (i + 1 < argc && strncmp(argv[i + 1], "--", 2) ? argv[i + 1] : NULL);
        c->flag_values[c->n_flags++] = v ? strdup(v) : NULL;
    }
    return 1;
}

static void container_free(container *c) {
    for (int i = 0; i < c->n_flags; i++)
        free(c->flags[i]), free(c->flag_values[i]);
    for (int i = 0; i < c->n_env; i++)
        free(c->env[i]), free(c->env_values[i]);
}

/* The ConfigMap or Secret named `name`: adds its keys to c. */
static int add_env_from(container *c, const char *kind, const char *name) {
    for (int i = 0; i < n_docs; i++) {
        yaml_document_t *d = &docs[i].doc;
        yaml_node_t *root = yaml_document_get_root_node(d);
        const char *k = scalar(get(d, root, "kind"));
        const char *const meta_name[] = {"metadata", "name", NULL};
        const char *n = scalar(path(d, root, meta_name));
        if (!k || strcmp(k, kind) || !n || strcmp(n, name)) continue;
        const char *blocks[] = {"data", "stringData"};
        for (int b = 0; b < 2; b++) {
            yaml_node_t *m = get(d, root, blocks[b]);
            if (!m || m->type != YAML_MAPPING_NODE) continue;
            for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++)
                add_env(c, scalar(node_at(d, p->key)), scalar(node_at(d, p->value)));
        }
        return 1;
    }
    return 0;
}

/* Checks the container's flags and variables against its subcommand's --help. */
static void check_container(const container *c) {
    const char *help = help_of(c->sub);
    CHECK_MSG(help != NULL, "%s: `lathe %s --help` failed (no such subcommand?)", c->where, c->sub);
    if (!help) return;
    for (int i = 0; i < c->n_flags; i++)
        CHECK_MSG(has_flag(help, c->flags[i]), "%s: `lathe %s` has no option %s", c->where, c->sub,
                  c->flags[i]);
    for (int i = 0; i < c->n_env; i++)
        if (!strncmp(c->env[i], "LATHE_", 6) || !strncmp(c->env[i], "AWS_", 4))
            CHECK_MSG(has_word(help, c->env[i]), "%s: `lathe %s --help` does not know %s", c->where, c->sub,
                      c->env[i]);
}

/* ---- the manifests ---- */

typedef struct {
    int k8s_scheduler, k8s_worker, compose_lathe;
    long partitions; /* the k8s scheduler's --partitions (default 8) */
    char prefix[64]; /* the k8s scheduler's LATHE_TOPIC_PREFIX */
    char worker_deployment[128];
    long worker_grace; /* terminationGracePeriodSeconds of the worker Deployment */
    int k8s_inference;
    char inference_deployment[128];
    int scaled_workers, scaled_inference; /* ScaledObjects targeting each */
} summary;

static void k8s_workload(yaml_document_t *d, yaml_node_t *root, const char *file, summary *s) {
    const char *const pod_spec[] = {"spec", "template", "spec", NULL};
    const char *const meta_name[] = {"metadata", "name", NULL};
    yaml_node_t *spec = path(d, root, pod_spec), *cs = get(d, spec, "containers");
    const char *deployment = scalar(path(d, root, meta_name));
    for (int i = 0; i < seq_len(cs); i++) {
        yaml_node_t *ct = seq_at(d, cs, i);
        const char *image = scalar(get(d, ct, "image"));
        if (!image || !strstr(image, "lathe")) continue;
        const char *argv[MAX_ITEMS];
        int argc = 0;
        const char *lists[] = {"command", "args"};
        for (int l = 0; l < 2; l++) {
            yaml_node_t *a = get(d, ct, lists[l]);
            for (int k = 0; k < seq_len(a) && argc < MAX_ITEMS; k++)
                argv[argc++] = scalar(seq_at(d, a, k));
        }
        container c = {.n_flags = 0};
        snprintf(c.where, sizeof c.where, "%s: container %s", file, scalar(get(d, ct, "name")));
        if (!read_args(&c, argv, argc)) {
            CHECK_MSG(0, "%s: no lathe subcommand in its command/args", c.where);
            continue;
        }
        yaml_node_t *env = get(d, ct, "env");
        for (int k = 0; k < seq_len(env); k++) {
            yaml_node_t *e = seq_at(d, env, k);
            add_env(&c, scalar(get(d, e, "name")), scalar(get(d, e, "value")));
        }
        yaml_node_t *from = get(d, ct, "envFrom");
        for (int k = 0; k < seq_len(from); k++) {
            yaml_node_t *e = seq_at(d, from, k);
            const char *const cm[] = {"configMapRef", "name", NULL}, *const sec[] = {"secretRef", "name",
                                                                                     NULL};
            const char *cmn = scalar(path(d, e, cm)), *secn = scalar(path(d, e, sec));
            if (cmn)
                CHECK_MSG(add_env_from(&c, "ConfigMap", cmn), "%s: no ConfigMap %s under deploy/", c.where,
                          cmn);
            if (secn)
                CHECK_MSG(add_env_from(&c, "Secret", secn), "%s: no Secret %s under deploy/", c.where, secn);
        }
        check_container(&c);
        if (!strcmp(c.sub, "scheduler")) {
            s->k8s_scheduler++;
            const char *p = flag_value(&c, "--partitions");
            if (!p) p = env_value(&c, "LATHE_JOBS_PARTITIONS");
            s->partitions = p ? atol(p) : 8;
            const char *prefix = flag_value(&c, "--topic-prefix");
            if (!prefix) prefix = env_value(&c, "LATHE_TOPIC_PREFIX");
            snprintf(s->prefix, sizeof s->prefix, "%s", prefix ? prefix : "lathe.");
        } else if (!strcmp(c.sub, "worker")) {
            s->k8s_worker++;
            snprintf(s->worker_deployment, sizeof s->worker_deployment, "%s", deployment ? deployment : "");
            const char *g = scalar(get(d, spec, "terminationGracePeriodSeconds"));
            s->worker_grace = g ? atol(g) : 30;
        } else if (!strcmp(c.sub, "inference-worker")) {
            s->k8s_inference++;
            snprintf(s->inference_deployment, sizeof s->inference_deployment, "%s",
                     deployment ? deployment : "");
        }
        container_free(&c);
    }
}

static void compose_services(yaml_document_t *d, yaml_node_t *services, const char *file, summary *s) {
    for (yaml_node_pair_t *p = services->data.mapping.pairs.start; p < services->data.mapping.pairs.top;
         p++) {
        const char *name = scalar(node_at(d, p->key));
        yaml_node_t *svc = node_at(d, p->value);
        const char *image = scalar(get(d, svc, "image"));
        if (!get(d, svc, "build") && !(image && strstr(image, "lathe"))) continue;
        container c = {.n_flags = 0};
        snprintf(c.where, sizeof c.where, "%s: service %s", file, name);
        yaml_node_t *cmd = get(d, svc, "command");
        const char *argv[MAX_ITEMS];
        int argc = 0;
        char *copy = NULL;
        if (scalar(cmd)) { /* a string command: split on spaces */
            copy = strdup(scalar(cmd));
            for (char *save = NULL, *t = strtok_r(copy, " ", &save); t && argc < MAX_ITEMS;
                 t = strtok_r(NULL, " ", &save))
                argv[argc++] = t;
        } else {
            for (int k = 0; k < seq_len(cmd) && argc < MAX_ITEMS; k++)
                argv[argc++] = scalar(seq_at(d, cmd, k));
        }
        int ok = read_args(&c, argv, argc);
        free(copy);
        CHECK_MSG(ok, "%s: no lathe subcommand in its command", c.where);
        if (!ok) continue;
        yaml_node_t *env = get(d, svc, "environment");
        if (env && env->type == YAML_MAPPING_NODE) {
            /* merge keys first, then the service's own */
            for (yaml_node_pair_t *q = env->data.mapping.pairs.start; q < env->data.mapping.pairs.top; q++) {
                const char *k = scalar(node_at(d, q->key));
                yaml_node_t *v = node_at(d, q->value);
                if (k && !strcmp(k, "<<") && v && v->type == YAML_MAPPING_NODE)
                    for (yaml_node_pair_t *r = v->data.mapping.pairs.start; r < v->data.mapping.pairs.top;
                         r++)
                        add_env(&c, scalar(node_at(d, r->key)), scalar(node_at(d, r->value)));
                else if (k)
                    add_env(&c, k, scalar(v));
            }
        } else {
            for (int k = 0; k < seq_len(env); k++) { /* "NAME=value" items */
                const char *kv = scalar(seq_at(d, env, k));
                if (!kv) continue;
                char *n = strndup(kv, strcspn(kv, "="));
                add_env(&c, n, strchr(kv, '=') ? strchr(kv, '=') + 1 : NULL);
                free(n);
            }
        }
        check_container(&c);
        if (!strcmp(c.sub, "worker"))
            CHECK_MSG(scalar(get(d, svc, "stop_grace_period")) != NULL,
                      "%s: a worker needs stop_grace_period to checkpoint", c.where);
        s->compose_lathe++;
        container_free(&c);
    }
}

/* A ScaledObject scales either the training workers (on the jobs topic's lag in the workers' group, no more
 * replicas than the topic has partitions) or the inference workers (on the inference group's lag over every
 * endpoint topic, so no topic is named). */
static void keda(yaml_document_t *d, yaml_node_t *root, const char *file, summary *s) {
    const char *const target[] = {"spec", "scaleTargetRef", "name", NULL};
    const char *const max[] = {"spec", "maxReplicaCount", NULL};
    const char *const triggers[] = {"spec", "triggers", NULL};
    const char *t = scalar(path(d, root, target));
    long max_replicas = scalar(path(d, root, max)) ? atol(scalar(path(d, root, max))) : 100;
    int inference = t && s->inference_deployment[0] && !strcmp(t, s->inference_deployment);
    CHECK_MSG(t && (inference || !strcmp(t, s->worker_deployment)),
              "%s: scaleTargetRef %s is neither the worker Deployment (%s) nor the inference worker's (%s)",
              file, t ? t : "(none)", s->worker_deployment, s->inference_deployment);
    if (inference)
        s->scaled_inference++;
    else
        s->scaled_workers++;
    CHECK_MSG(inference || max_replicas <= s->partitions,
              "%s: maxReplicaCount %ld > %ld partitions of the jobs topic: the extra workers would idle",
              file, max_replicas, s->partitions);
    yaml_node_t *tr = path(d, root, triggers);
    int kafka = 0;
    char topic[128], group[128];
    snprintf(topic, sizeof topic, "%sjobs", s->prefix);
    snprintf(group, sizeof group, "%s%s", s->prefix, inference ? "inference" : "workers");
    for (int i = 0; i < seq_len(tr); i++) {
        yaml_node_t *x = seq_at(d, tr, i);
        const char *type = scalar(get(d, x, "type"));
        if (!type || strcmp(type, "kafka")) continue;
        kafka++;
        yaml_node_t *m = get(d, x, "metadata");
        const char *tp = scalar(get(d, m, "topic")), *cg = scalar(get(d, m, "consumerGroup"));
        if (inference)
            CHECK_MSG(!tp, "%s: the inference trigger names topic %s: it must sum every endpoint topic", file,
                      tp);
        else
            CHECK_MSG(tp && !strcmp(tp, topic), "%s: the trigger watches topic %s, not %s", file,
                      tp ? tp : "?", topic);
        CHECK_MSG(cg && !strcmp(cg, group), "%s: the trigger watches group %s, not %s", file, cg ? cg : "?",
                  group);
        CHECK_MSG(scalar(get(d, m, "lagThreshold")) != NULL, "%s: the trigger has no lagThreshold", file);
    }
    CHECK_MSG(kafka == 1, "%s: %d kafka triggers", file, kafka);
}

static void check_dockerfile(void) {
    FILE *f = fopen("deploy/Dockerfile", "r");
    CHECK_MSG(f != NULL, "deploy/Dockerfile is missing");
    if (!f) return;
    char line[1024];
    int froms = 0, runtime_dev = 0, build_stage = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "FROM ", 5)) {
            froms++;
            CHECK_MSG(strstr(line, "debian:bookworm") != NULL, "Dockerfile: %s is not Debian bookworm", line);
            if (strstr(line, " AS build")) build_stage = 1;
        }
        if (froms >= 2 && strstr(line, "-dev ") && line[0] != '#') runtime_dev = 1;
    }
    fclose(f);
    CHECK_MSG(froms >= 2 && build_stage, "Dockerfile: not a multi-stage build (%d FROM lines)", froms);
    CHECK_MSG(!runtime_dev, "Dockerfile: the runtime stage installs -dev packages");
}

int main(void) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CHECK(n > 0);
    exe[n > 0 ? n : 0] = 0;
    char *dir = dirname(dirname(exe)); /* <build>/tests/test_x -> <build> */
    snprintf(lathe_bin, sizeof lathe_bin, "%s/lathe", dir);
    CHECK_MSG(access(lathe_bin, X_OK) == 0, "%s is not built (build the lathe target first)", lathe_bin);

    int files = load_dir("deploy");
    CHECK_MSG(files >= 5, "found %d YAML files under deploy/ (run from the repository root)", files);
    summary s = {.partitions = 8, .prefix = "lathe."};
    /* workloads first: the KEDA check needs the scheduler's partitions and the worker Deployment */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_docs; i++) {
            yaml_document_t *d = &docs[i].doc;
            yaml_node_t *root = yaml_document_get_root_node(d);
            const char *kind = scalar(get(d, root, "kind"));
            yaml_node_t *services = get(d, root, "services");
            if (pass == 0 && kind && (!strcmp(kind, "Deployment") || !strcmp(kind, "StatefulSet")))
                k8s_workload(d, root, docs[i].file, &s);
            else if (pass == 0 && services && services->type == YAML_MAPPING_NODE)
                compose_services(d, services, docs[i].file, &s);
            else if (pass == 1 && kind && !strcmp(kind, "ScaledObject"))
                keda(d, root, docs[i].file, &s);
        }
    }
    CHECK_MSG(s.k8s_scheduler == 1, "%d Kubernetes scheduler containers", s.k8s_scheduler);
    CHECK_MSG(s.k8s_worker >= 1, "no Kubernetes worker container");
    CHECK_MSG(s.k8s_inference >= 1, "no Kubernetes inference-worker container");
    CHECK_MSG(s.scaled_workers == 1 && s.scaled_inference == 1,
              "%d ScaledObjects for the workers and %d for the inference workers (want one each)",
              s.scaled_workers, s.scaled_inference);
    CHECK_MSG(s.compose_lathe >= 3, "%d lathe services in the compose file (scheduler + two workers)",
              s.compose_lathe);
    CHECK_MSG(s.worker_grace >= 120,
              "the worker's terminationGracePeriodSeconds %ld is too short to checkpoint", s.worker_grace);
    check_dockerfile();

    /* the checks can fail: a made-up flag and variable are not in the help */
    const char *help = help_of("scheduler");
    CHECK(help && !has_flag(help, "--no-such-flag") && !has_word(help, "LATHE_NO_SUCH_VARIABLE"));
    CHECK(help && has_word(help, "AWS_ENDPOINT_URL") && !has_word(help, "AWS_ENDPOINT"));

    for (int i = 0; i < n_docs; i++)
        yaml_document_delete(&docs[i].doc);
    for (int i = 0; i < n_helps; i++)
        free(helps[i].text);
    return check_summary("test_scheduler_deploy");
}
