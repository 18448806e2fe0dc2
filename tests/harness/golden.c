#include "golden.h"

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int golden_load(golden_file *f, const char *file) {
    memset(f, 0, sizeof *f);
    char path[1024];
    const char *dir = getenv("LATHE_GOLDEN_DIR");
    if (file[0] == '/' || !dir) snprintf(path, sizeof path, "%s", file);
    else snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "golden: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    while (getline(&line, &cap, fp) > 0) {
        if (line[0] == '\n' || line[0] == '#') continue;
        golden_tensor *nt = realloc(f->t, (size_t)(f->n + 1) * sizeof *nt);
        if (!nt) {
            rc = -1;
            break;
        }
        f->t = nt;
        golden_tensor *t = &f->t[f->n];
        memset(t, 0, sizeof *t);
        char *p = line, *end;
        int nlen = 0;
        while (*p && *p != ' ' && nlen < (int)sizeof t->name - 1) t->name[nlen++] = *p++;
        t->ndim = (int)strtol(p, &end, 10);
        p = end;
        if (t->ndim < 0 || t->ndim > 5) {
            rc = -1;
            break;
        }
        t->numel = 1;
        for (int i = 0; i < t->ndim; i++) {
            t->shape[i] = strtoll(p, &end, 10);
            p = end;
            t->numel *= t->shape[i];
        }
        t->data = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        f->n++;
        for (int64_t i = 0; i < t->numel; i++) {
            t->data[i] = strtof(p, &end);
            if (end == p) {
                fprintf(stderr, "golden: %s: tensor %s is short\n", path, t->name);
                rc = -1;
                break;
            }
            p = end;
        }
        if (rc) break;
    }
    free(line);
    fclose(fp);
    if (rc) golden_free(f);
    return rc;
}

golden_tensor *golden_get(golden_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    fprintf(stderr, "golden: no tensor named %s\n", name);
    return NULL;
}

void golden_free(golden_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].data);
    free(f->t);
    f->t = NULL;
    f->n = 0;
}

int golden_put(golden_file *f, const char *name, float *dst, int64_t n) {
    golden_tensor *t = golden_get(f, name);
    int ok = t && t->numel == n;
    CHECK_MSG(ok, "golden %s missing or of the wrong size (%lld values here)", name, (long long)n);
    if (ok) memcpy(dst, t->data, (size_t)n * sizeof(float));
    return ok;
}

int golden_expect(golden_file *f, const char *what, const char *name, const float *got, int64_t n, double atol,
                  double rtol) {
    golden_tensor *t = golden_get(f, name);
    int ok = t && t->numel == n;
    CHECK_MSG(ok, "golden %s missing or of the wrong size (%lld values here)", name, (long long)n);
    return ok && check_close_array(what ? what : name, got, t->data, n, atol, rtol, __FILE__, __LINE__);
}
