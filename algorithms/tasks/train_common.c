#define _GNU_SOURCE
#include "train_common.h"

#include "io/fsutil.h"
#include "io/params_io.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double lt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lt_status lt_train_log_open(lt_train_log *log, const char *output, int64_t total_steps, int64_t logging_steps,
                            int64_t images_per_step, int64_t start_step, cJSON *history, lt_train_hooks hooks,
                            lt_err *err) {
    memset(log, 0, sizeof *log);
    log->output = output;
    log->hooks = hooks;
    log->total_steps = total_steps;
    log->logging_steps = logging_steps > 0 ? logging_steps : 500;
    log->images_per_step = images_per_step;
    log->start_step = start_step;
    log->started = lt_now();
    log->last_line = log->started;
    log->tty = isatty(2) && !getenv("LATHE_NO_PROGRESS");
    log->history = history ? history : cJSON_CreateArray();
    char *tbdir = lt_path_join(output, "tensorboard");
    lt_status st = tbdir ? lt_mkdir_p(tbdir, err) : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK && !(log->tb = lt_tb_open(tbdir, err))) st = LT_ERR_IO;
    free(tbdir);
    if (st != LT_OK) lt_train_log_close(log);
    return st;
}

void lt_train_log_close(lt_train_log *log) {
    if (log->tb) lt_tb_close(log->tb, NULL);
    log->tb = NULL;
    cJSON_Delete(log->history);
    log->history = NULL;
}

void lt_train_emit(const lt_train_log *log, const char *type, const cJSON *payload) {
    if (log->hooks.event) log->hooks.event(log->hooks.ctx, type, payload);
}

static void progress(lt_train_log *log, int64_t step, double epoch, double loss, int force) {
    double now = lt_now();
    if (!force && now - log->last_progress < 0.25 && step != log->total_steps) return;
    log->last_progress = now;
    double elapsed = now - log->started;
    int64_t done = step - log->start_step;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    double eta = rate > 0 ? (double)(log->total_steps - step) / rate : 0;
    if (log->hooks.event) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "step", (double)step);
        cJSON_AddNumberToObject(p, "total_steps", (double)log->total_steps);
        cJSON_AddNumberToObject(p, "epoch", epoch);
        lt_train_emit(log, "progress", p);
        cJSON_Delete(p);
    }
    if (log->quiet) return;
    if (!log->tty) {
        /* logs (a worker, CI): a plain line every 30 s instead of a bar */
        if (now - log->last_line < 30.0) return;
        log->last_line = now;
        fprintf(stderr, "progress: step %lld/%lld  epoch %.2f  loss %.4f  %.1f img/s  eta %02d:%02d:%02d\n",
                (long long)step, (long long)log->total_steps, epoch, loss, rate * (double)log->images_per_step,
                (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
        return;
    }
    int width = 30, fill = log->total_steps ? (int)((double)width * (double)step / (double)log->total_steps) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %lld/%lld  epoch %.2f  loss %.4f  %.1f img/s  eta %02d:%02d:%02d ", bar, (long long)step,
            (long long)log->total_steps, epoch, loss, rate * (double)log->images_per_step, (int)(eta / 3600),
            (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
    fflush(stderr);
}

static void clear_progress(const lt_train_log *log) {
    if (log->tty && !log->quiet) fprintf(stderr, "\r\033[K");
}

lt_status lt_train_log_step(lt_train_log *log, int64_t step, double epoch, double loss, double lr, double grad_norm,
                            int force, lt_err *err) {
    log->loss_sum += loss;
    log->loss_count++;
    progress(log, step, epoch, loss, 0);
    if (!force && step % log->logging_steps != 0) return LT_OK;
    if (log->loss_count == 0) return LT_OK;
    double mean = log->loss_sum / (double)log->loss_count;
    log->loss_sum = 0;
    log->loss_count = 0;
    double elapsed = lt_now() - log->started;
    double ips = elapsed > 0 ? (double)(step - log->start_step) * (double)log->images_per_step / elapsed : 0;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "loss", mean);
    cJSON_AddNumberToObject(e, "grad_norm", grad_norm);
    cJSON_AddNumberToObject(e, "learning_rate", lr);
    cJSON_AddNumberToObject(e, "epoch", epoch);
    cJSON_AddNumberToObject(e, "step", (double)step);
    cJSON_AddNumberToObject(e, "images_per_second", ips);
    cJSON_AddItemToArray(log->history, e);
    lt_train_emit(log, "log", e);
    const char *tags[5] = {"train/loss", "train/learning_rate", "train/grad_norm", "train/epoch",
                           "train/images_per_second"};
    float vals[5] = {(float)mean, (float)lr, (float)grad_norm, (float)epoch, (float)ips};
    lt_status st = lt_tb_scalars(log->tb, tags, vals, 5, step, err);
    if (!log->quiet) {
        clear_progress(log);
        fprintf(stderr, "step %lld/%lld  epoch %.2f  loss %.4f  lr %.3g  grad_norm %.3g  %.1f img/s\n", (long long)step,
                (long long)log->total_steps, epoch, mean, lr, grad_norm, ips);
    }
    return st;
}

lt_status lt_train_log_eval(lt_train_log *log, const char *split, int64_t step, double epoch, const cJSON *metrics,
                            lt_err *err) {
    const char *prefix = strcmp(split, "validation") == 0 ? "eval" : split;
    cJSON *e = cJSON_CreateObject();
    lt_status st = LT_OK;
    const cJSON *m;
    char line[1024];
    int off = snprintf(line, sizeof line, "%s at step %lld:", split, (long long)step);
    cJSON_ArrayForEach(m, metrics) {
        if (!cJSON_IsNumber(m)) continue;
        char key[160], tag[160];
        snprintf(key, sizeof key, "%s_%s", prefix, m->string);
        snprintf(tag, sizeof tag, "%s/%s", prefix, m->string);
        cJSON_AddNumberToObject(e, key, m->valuedouble);
        if (st == LT_OK) st = lt_tb_scalar(log->tb, tag, (float)m->valuedouble, step, err);
        if (off < (int)sizeof line) off += snprintf(line + off, sizeof line - (size_t)off, " %s %.4f", m->string, m->valuedouble);
    }
    cJSON_AddNumberToObject(e, "epoch", epoch);
    cJSON_AddNumberToObject(e, "step", (double)step);
    cJSON_AddItemToArray(log->history, e);
    if (st == LT_OK) st = lt_tb_flush(log->tb, err);
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "split", split);
    cJSON_AddNumberToObject(ev, "step", (double)step);
    cJSON_AddNumberToObject(ev, "epoch", epoch);
    cJSON_AddItemReferenceToObject(ev, "metrics", (cJSON *)metrics);
    lt_train_emit(log, "eval", ev);
    cJSON_Delete(ev);
    if (!log->quiet) {
        clear_progress(log);
        fprintf(stderr, "%s\n", line);
    }
    return st;
}

/* ---- checkpoints ---- */

static lt_status save_optimizer(const char *path, const lt_params *p, lt_err *err) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += p->tensors[i]->requires_grad ? 2 : 0;
    lt_st_tensor_ref *refs = calloc((size_t)(n ? n : 1), sizeof *refs);
    char **names = calloc((size_t)(n ? n : 1), sizeof *names);
    lt_status st = refs && names ? LT_OK : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    int k = 0;
    for (int i = 0; st == LT_OK && i < p->n; i++) {
        const lt_tensor *t = p->tensors[i];
        if (!t->requires_grad) continue;
        int64_t off = t->data - p->data;
        for (int which = 0; which < 2; which++) {
            if (asprintf(&names[k], "%s.%s", which ? "exp_avg_sq" : "exp_avg", t->name) < 0) {
                names[k] = NULL;
                st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
                break;
            }
            refs[k] = (lt_st_tensor_ref){names[k], (which ? p->v : p->m) + off, t->shape, t->ndim, NULL};
            k++;
        }
    }
    const char *meta[2] = {"format", "pt"};
    if (st == LT_OK) st = lt_st_write(path, refs, k, meta, 1, err);
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
    free(refs);
    return st;
}

static lt_status load_optimizer(const char *path, lt_params *p, lt_err *err) {
    lt_st_file *f = NULL;
    lt_status st = lt_st_open(path, &f, err);
    if (st != LT_OK) return st;
    for (int i = 0; st == LT_OK && i < p->n; i++) {
        const lt_tensor *t = p->tensors[i];
        if (!t->requires_grad) continue;
        int64_t off = t->data - p->data;
        for (int which = 0; which < 2 && st == LT_OK; which++) {
            char name[LT_NAME_MAX + 16];
            snprintf(name, sizeof name, "%s.%s", which ? "exp_avg_sq" : "exp_avg", t->name);
            const lt_st_entry *e = lt_st_find(f, name);
            if (!e) st = lt_errorf(err, LT_ERR_FORMAT, "%s: optimizer state for %s is missing", path, t->name);
            else st = lt_st_read_f32(f, e, (which ? p->v : p->m) + off, t->numel, err);
        }
    }
    lt_st_close(f);
    return st;
}

static char *latest_file(const char *output) {
    char *s = NULL;
    if (asprintf(&s, "%s/checkpoints/latest", output) < 0) return NULL;
    return s;
}

lt_status lt_checkpoint_save(const char *output, const lt_params *p, const lt_adamw *opt, const cJSON *state,
                             char **saved_path, lt_err *err) {
    int64_t step = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(state, "global_step"));
    char *root = NULL, *tmp = NULL, *final = NULL, *file = NULL, *latest = latest_file(output), *old = NULL;
    lt_status st = LT_OK;
    if (asprintf(&root, "%s/checkpoints", output) < 0 || asprintf(&tmp, "%s/.tmp-step-%lld", root, (long long)step) < 0 ||
        asprintf(&final, "%s/step-%lld", root, (long long)step) < 0 || !latest) {
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = lt_remove_tree(tmp, err)) != LT_OK || (st = lt_mkdir_p(tmp, err)) != LT_OK) goto done;
    file = lt_path_join(tmp, "model.safetensors");
    if ((st = lt_params_save_safetensors(p, file, 1, err)) != LT_OK) goto done;
    free(file);
    file = lt_path_join(tmp, "optimizer.safetensors");
    if ((st = save_optimizer(file, p, err)) != LT_OK) goto done;
    free(file);
    file = lt_path_join(tmp, "trainer_state.json");
    cJSON *s = cJSON_Duplicate(state, 1);
    cJSON *o = cJSON_AddObjectToObject(s, "optimizer");
    cJSON_AddNumberToObject(o, "lr", opt->lr);
    cJSON_AddNumberToObject(o, "beta1", opt->beta1);
    cJSON_AddNumberToObject(o, "beta2", opt->beta2);
    cJSON_AddNumberToObject(o, "eps", opt->eps);
    cJSON_AddNumberToObject(o, "weight_decay", opt->weight_decay);
    cJSON_AddNumberToObject(o, "step", (double)opt->step);
    st = lt_json_write_file(file, s, err);
    cJSON_Delete(s);
    if (st != LT_OK) goto done;
    size_t len;
    if (lt_read_file(latest, &old, &len, 4096, NULL) != LT_OK) old = NULL;
    if ((st = lt_remove_tree(final, err)) != LT_OK) goto done;
    if (rename(tmp, final) != 0) {
        st = lt_errorf(err, LT_ERR_IO, "cannot rename %s to %s", tmp, final);
        goto done;
    }
    char name[64];
    int n = snprintf(name, sizeof name, "step-%lld\n", (long long)step);
    if ((st = lt_write_file_atomic(latest, name, (size_t)n, err)) != LT_OK) goto done;
    if (old) {
        old[strcspn(old, "\n")] = '\0';
        if (old[0] && strcmp(old, name) != 0 && strchr(old, '/') == NULL && strncmp(old, "step-", 5) == 0) {
            char *oldpath = lt_path_join(root, old);
            if (oldpath && strcmp(oldpath, final) != 0) lt_remove_tree(oldpath, NULL);
            free(oldpath);
        }
    }
    if (saved_path) {
        *saved_path = final;
        final = NULL;
    }
done:
    free(root);
    free(tmp);
    free(final);
    free(file);
    free(latest);
    free(old);
    return st;
}

static char *latest_dir(const char *output) {
    char *latest = latest_file(output), *name = NULL, *dir = NULL;
    size_t len;
    if (latest && lt_read_file(latest, &name, &len, 4096, NULL) == LT_OK) {
        name[strcspn(name, "\n")] = '\0';
        if (strncmp(name, "step-", 5) == 0 && !strchr(name, '/') && asprintf(&dir, "%s/checkpoints/%s", output, name) < 0)
            dir = NULL;
    }
    free(latest);
    free(name);
    return dir;
}

int lt_checkpoint_exists(const char *output) {
    char *dir = latest_dir(output);
    int ok = dir && lt_is_dir(dir);
    free(dir);
    return ok;
}

lt_status lt_checkpoint_load(const char *output, lt_params *p, lt_adamw *opt, cJSON **state, lt_err *err) {
    *state = NULL;
    char *dir = latest_dir(output);
    if (!dir || !lt_is_dir(dir)) {
        free(dir);
        return lt_errorf(err, LT_ERR_ARG, "no checkpoint to resume from in %s/checkpoints", output);
    }
    char *file = lt_path_join(dir, "trainer_state.json");
    lt_status st = lt_json_read_file(file, state, err);
    free(file);
    if (st == LT_OK) {
        file = lt_path_join(dir, "model.safetensors");
        lt_load_report rep = {0};
        st = lt_params_load_safetensors(p, file, &rep, err);
        if (st == LT_OK && rep.n_missing)
            st = lt_errorf(err, LT_ERR_FORMAT, "%s: checkpoint lacks %s: it belongs to another model", file, rep.missing[0]);
        lt_load_report_free(&rep);
        free(file);
    }
    if (st == LT_OK) {
        file = lt_path_join(dir, "optimizer.safetensors");
        st = load_optimizer(file, p, err);
        free(file);
    }
    if (st == LT_OK) {
        const cJSON *o = cJSON_GetObjectItem(*state, "optimizer");
        const cJSON *s = cJSON_GetObjectItem(o, "step");
        if (!cJSON_IsNumber(s)) st = lt_errorf(err, LT_ERR_FORMAT, "%s: trainer_state.json lacks optimizer.step", dir);
        else opt->step = (int64_t)s->valuedouble;
    }
    if (st != LT_OK) {
        cJSON_Delete(*state);
        *state = NULL;
    }
    free(dir);
    return st;
}
