/* test_storage_local.c - the storage interface over local directories: URIs, key rules, atomic writes,
 * listing, sync, and the transient/permanent split of errors. */
#define _GNU_SOURCE
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "storage/storage.h"

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) {
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Counts directory entries whose name holds the temporary-file marker, recursively. */
static int tmp_count;
static int count_tmp(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    if (strstr(path + ftw->base, ".lt-tmp-")) tmp_count++;
    return 0;
}

static int tmp_files_in(const char *dir) {
    tmp_count = 0;
    nftw(dir, count_tmp, 16, FTW_PHYS);
    return tmp_count;
}

static void test_uri_join(void) {
    char *j;
    CHECK(strcmp(j = lt_uri_join("s3://b/x", "y/z"), "s3://b/x/y/z") == 0), free(j);
    CHECK(strcmp(j = lt_uri_join("s3://b/x/", "/y"), "s3://b/x/y") == 0), free(j);
    CHECK(strcmp(j = lt_uri_join("s3://", "b"), "s3://b") == 0), free(j);
    CHECK(strcmp(j = lt_uri_join("/", "a"), "/a") == 0), free(j);
    CHECK(strcmp(j = lt_uri_join("", "a/b"), "a/b") == 0), free(j);
    CHECK(strcmp(j = lt_uri_join("file:///d", ""), "file:///d") == 0), free(j);
}

static void test_keys(void) {
    lt_err err = {{0}};
    CHECK(lt_storage_check_key("a/b.txt", &err) == LT_OK);
    CHECK(lt_storage_check_key("x..y/.hidden/z", &err) == LT_OK);
    const char *bad[] = {"",     "/etc/passwd", "../x", "a/../../b", "a//b", "a/./b",
                         "a\\b", "x/..",        ".",    "a/",        "t\nx"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lt_err_clear(&err);
        lt_status st = lt_storage_check_key(bad[i], &err);
        CHECK_MSG(st == LT_ERR_ARG, "key '%s' accepted (status %d)", bad[i], (int)st);
        CHECK_MSG(strstr(err.msg, "key") != NULL, "message '%s' does not say it is about the key", err.msg);
    }
    CHECK(lt_storage_is_transient(LT_ERR_IO));
    CHECK(!lt_storage_is_transient(LT_ERR_FORMAT));
    CHECK(!lt_storage_is_transient(LT_ERR_ARG));
    CHECK(!lt_storage_is_transient(LT_OK));
}

static void test_open(const char *dir) {
    lt_err err = {{0}};
    lt_storage *s = lt_storage_open("ftp://host/x", NULL, &err);
    CHECK(s == NULL && strstr(err.msg, "unsupported scheme"));
    CHECK(lt_storage_open("file://relative/dir", NULL, &err) == NULL && strstr(err.msg, "absolute"));
    CHECK(lt_storage_open("s3://", NULL, &err) == NULL && strstr(err.msg, "bucket"));
    CHECK(lt_storage_open("s3://bucket/../x", NULL, &err) == NULL);
    lt_storage_opts o;
    lt_storage_opts_init(&o);
    o.parallel = 0;
    CHECK(lt_storage_open(dir, &o, &err) == NULL && strstr(err.msg, "parallel"));
    char *uri = malloc(strlen(dir) + 8);
    sprintf(uri, "file://%s", dir);
    s = lt_storage_open(uri, NULL, &err);
    CHECK_MSG(s != NULL, "open %s: %s", uri, err.msg);
    if (s) CHECK(lt_storage_get_kind(s) == LT_STORAGE_LOCAL && strcmp(lt_storage_uri(s), uri) == 0);
    lt_storage_close(s);
    free(uri);
    lt_storage_close(NULL);
}

typedef struct {
    char keys[16][64];
    int n;
} key_log;

static int log_key(void *ctx, const lt_storage_obj *o) {
    key_log *l = ctx;
    if (l->n < 16) snprintf(l->keys[l->n++], 64, "%s", o->key);
    return 0;
}

static void test_objects(const char *base) {
    lt_err err = {{0}};
    char root[512], outside[512], src[512], dst[512];
    snprintf(root, sizeof root, "%s/root", base);
    snprintf(outside, sizeof outside, "%s/evil", base);
    lt_storage *s = lt_storage_open(root, NULL, &err);
    CHECK(s != NULL);
    if (!s) return;

    /* put/get through memory */
    CHECK(lt_storage_put_mem(s, "runs/1/log.txt", "hello", 5, &err) == LT_OK);
    void *data = NULL;
    size_t len = 0;
    CHECK(lt_storage_get_mem(s, "runs/1/log.txt", &data, &len, &err) == LT_OK);
    CHECK(len == 5 && data && strcmp(data, "hello") == 0);
    free(data);
    CHECK(lt_storage_put_mem(s, "empty", NULL, 0, &err) == LT_OK);
    CHECK(lt_storage_get_mem(s, "empty", &data, &len, &err) == LT_OK && len == 0 && data &&
          ((char *)data)[0] == 0);
    free(data);

    /* stat / exists */
    lt_storage_info info;
    CHECK(lt_storage_stat(s, "runs/1/log.txt", &info, &err) == LT_OK && info.size == 5 && info.etag[0]);
    int ex = -1;
    CHECK(lt_storage_exists(s, "runs/1/log.txt", &ex, &err) == LT_OK && ex == 1);
    CHECK(lt_storage_exists(s, "runs/2/none", &ex, &err) == LT_OK && ex == 0);
    lt_err_clear(&err);
    lt_status st = lt_storage_stat(s, "runs/2/none", &info, &err);
    CHECK(st == LT_ERR_FORMAT && !lt_storage_is_transient(st) && strstr(err.msg, "not found: runs/2/none"));

    /* files: put copies atomically, get leaves the destination alone on failure */
    snprintf(src, sizeof src, "%s/src.bin", base);
    snprintf(dst, sizeof dst, "%s/out/deep/dst.bin", base);
    write_file(src, "0123456789");
    CHECK(lt_storage_put(s, "data/a.bin", src, &err) == LT_OK);
    CHECK(lt_storage_get(s, "data/a.bin", dst, &err) == LT_OK);
    CHECK(lt_storage_get_mem(s, "data/a.bin", &data, &len, &err) == LT_OK && len == 10 &&
          memcmp(data, "0123456789", 10) == 0);
    free(data);
    write_file(dst, "keep me");
    lt_err_clear(&err);
    st = lt_storage_get(s, "data/missing.bin", dst, &err);
    CHECK(st == LT_ERR_FORMAT && strstr(err.msg, "not found"));
    CHECK(lt_storage_get_mem(s, "data/missing.bin", &data, &len, &err) == LT_ERR_FORMAT && data == NULL);
    FILE *f = fopen(dst, "rb");
    char buf[32] = {0};
    if (f) {
        CHECK(fread(buf, 1, sizeof buf - 1, f) == 7);
        fclose(f);
    }
    CHECK(strcmp(buf, "keep me") == 0);
    lt_err_clear(&err);
    CHECK(lt_storage_put(s, "data/b.bin", "/nonexistent/file", &err) == LT_ERR_FORMAT &&
          strstr(err.msg, "not found"));
    CHECK(tmp_files_in(base) == 0);

    /* keys that would leave the root are refused, and nothing is written outside */
    const char *escapes[] = {"../evil", "/abs/evil", "a/../../evil"};
    for (int i = 0; i < 3; i++) {
        lt_err_clear(&err);
        CHECK(lt_storage_put_mem(s, escapes[i], "x", 1, &err) == LT_ERR_ARG);
        CHECK(lt_storage_get(s, escapes[i], dst, &err) == LT_ERR_ARG);
        CHECK(lt_storage_delete(s, escapes[i], &err) == LT_ERR_ARG);
    }
    CHECK(!file_exists(outside));
    key_log kl = {0};
    CHECK(lt_storage_list(s, "../", log_key, &kl, &err) == LT_ERR_ARG);

    /* listing: sorted, prefix filtered, temporary files hidden */
    CHECK(lt_storage_put_mem(s, "runs/10/x", "1", 1, &err) == LT_OK);
    CHECK(lt_storage_put_mem(s, "runs/1/a", "12", 2, &err) == LT_OK);
    char stray[600];
    snprintf(stray, sizeof stray, "%s/runs/1/.lt-tmp-crashed", root);
    write_file(stray, "partial");
    kl.n = 0;
    CHECK(lt_storage_list(s, "runs/1/", log_key, &kl, &err) == LT_OK);
    CHECK(kl.n == 2 && strcmp(kl.keys[0], "runs/1/a") == 0 && strcmp(kl.keys[1], "runs/1/log.txt") == 0);
    kl.n = 0;
    CHECK(lt_storage_list(s, "runs/1", log_key, &kl, &err) == LT_OK &&
          kl.n == 3); /* runs/1/... and runs/10/x */
    lt_storage_obj_list all;
    CHECK(lt_storage_list_all(s, "", &all, &err) == LT_OK);
    CHECK(all.n == 5); /* runs/1/log.txt, runs/1/a, runs/10/x, empty, data/a.bin */
    for (size_t i = 1; i < all.n; i++)
        CHECK(strcmp(all.items[i - 1].key, all.items[i].key) < 0);
    lt_storage_obj_list_free(&all);
    CHECK(lt_storage_list_all(s, "nothing/", &all, &err) == LT_OK && all.n == 0);
    lt_storage_obj_list_free(&all);

    /* delete: twice is fine */
    CHECK(lt_storage_delete(s, "runs/10/x", &err) == LT_OK);
    CHECK(lt_storage_delete(s, "runs/10/x", &err) == LT_OK);
    CHECK(lt_storage_exists(s, "runs/10/x", &ex, &err) == LT_OK && ex == 0);

    /* sync down a prefix, then up into another prefix */
    char down[512];
    snprintf(down, sizeof down, "%s/down", base);
    CHECK(lt_storage_sync_down(s, "runs", down, &err) == LT_OK);
    char p[600];
    snprintf(p, sizeof p, "%s/1/log.txt", down);
    CHECK(file_exists(p));
    snprintf(p, sizeof p, "%s/1/.lt-tmp-crashed", down);
    CHECK(!file_exists(p));
    CHECK(lt_storage_sync_up(s, down, "copy/", &err) == LT_OK);
    CHECK(lt_storage_get_mem(s, "copy/1/a", &data, &len, &err) == LT_OK && len == 2 &&
          memcmp(data, "12", 2) == 0);
    free(data);
    lt_storage_stats stats;
    lt_storage_get_stats(s, &stats);
    CHECK(stats.objects_uploaded >= 5 && stats.objects_downloaded >= 5 && stats.requests == 0);
    CHECK(tmp_files_in(down) == 0);
    lt_storage_close(s);
}

int main(void) {
    char base[] = "/tmp/lathe-storage-local-XXXXXX";
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    test_uri_join();
    test_keys();
    test_open(base);
    test_objects(base);
    rm_rf(base);
    return check_summary("test_storage_local");
}
