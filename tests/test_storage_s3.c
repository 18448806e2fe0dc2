/* test_storage_s3.c - the S3 backend against a real S3 protocol server (s3rver, run as a child process on
 * a free loopback port) and against a small fake server thread that injects failures (503, 429, hangs,
 * an error body that echoes credentials, a listing with an escaping key). The SigV4 signer is checked
 * against AWS's published examples, since s3rver does not verify signatures.
 *
 * s3rver: npm ci --prefix tests/s3rver (or set LATHE_S3RVER to its binary). Without it this test fails. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "storage/sigv4.h"
#include "storage/storage.h"

#define ACCESS_KEY "S3RVER" /* the only key s3rver knows; it does not check the secret */
#define SECRET_KEY "lathe-test-SECRET-wJalr7f3aDoNotLeak"
#define BUCKET "lathe-test"

/* ---------------------------------------------------------------- SigV4 against AWS's examples */

typedef struct {
    const char *name, *method, *path;
    lt_sigv4_pair query[2];
    size_t n_query;
    lt_sigv4_pair headers[6];
    size_t n_headers;
    const char *body; /* hashed for the payload hash */
    const char *service, *amz_date, *akid, *secret;
    const char *want; /* full Authorization value */
} sig_case;

#define SUITE_KEY "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define S3DOC_KEY "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SUITE_CRED "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
#define S3DOC_CRED "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "

static void test_sigv4(void) {
    static const sig_case cases[] = {
        /* aws-sig-v4-test-suite */
        {"get-vanilla",
         "GET",
         "/",
         {{0}},
         0,
         {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
         2,
         "",
         "service",
         "20150830T123600Z",
         SUITE_KEY,
         SUITE_CRED "SignedHeaders=host;x-amz-date, "
                    "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
        {"get-vanilla-query-order-key-case",
         "GET",
         "/",
         {{"Param2", "value2"}, {"Param1", "value1"}},
         2,
         {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}},
         2,
         "",
         "service",
         "20150830T123600Z",
         SUITE_KEY,
         SUITE_CRED "SignedHeaders=host;x-amz-date, "
                    "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
        {"post-x-www-form-urlencoded",
         "POST",
         "/",
         {{0}},
         0,
         {{"Content-Type", "application/x-www-form-urlencoded"},
          {"Host", "example.amazonaws.com"},
          {"X-Amz-Date", "20150830T123600Z"}},
         3,
         "Param1=value1",
         "service",
         "20150830T123600Z",
         SUITE_KEY,
         SUITE_CRED "SignedHeaders=content-type;host;x-amz-date, "
                    "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
        /* S3 examples of the SigV4 header-based authentication documentation */
        {"s3 GET object with Range",
         "GET",
         "/test.txt",
         {{0}},
         0,
         {{"Host", "examplebucket.s3.amazonaws.com"},
          {"Range", "bytes=0-9"},
          {"x-amz-content-sha256", EMPTY_SHA},
          {"x-amz-date", "20130524T000000Z"}},
         4,
         "",
         "s3",
         "20130524T000000Z",
         S3DOC_KEY,
         S3DOC_CRED "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"},
        {"s3 PUT object",
         "PUT",
         "/test$file.text",
         {{0}},
         0,
         {{"Date", "Fri, 24 May 2013 00:00:00 GMT"},
          {"Host", "examplebucket.s3.amazonaws.com"},
          {"x-amz-date", "20130524T000000Z"},
          {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
          {"x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"}},
         5,
         "Welcome to Amazon S3.",
         "s3",
         "20130524T000000Z",
         S3DOC_KEY,
         S3DOC_CRED "SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, "
                    "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"},
        {"s3 GET bucket lifecycle",
         "GET",
         "/",
         {{"lifecycle", ""}},
         1,
         {{"Host", "examplebucket.s3.amazonaws.com"},
          {"x-amz-content-sha256", EMPTY_SHA},
          {"x-amz-date", "20130524T000000Z"}},
         3,
         "",
         "s3",
         "20130524T000000Z",
         S3DOC_KEY,
         S3DOC_CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                    "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"},
        {"s3 list objects",
         "GET",
         "/",
         {{"prefix", "J"}, {"max-keys", "2"}},
         2,
         {{"Host", "examplebucket.s3.amazonaws.com"},
          {"x-amz-content-sha256", EMPTY_SHA},
          {"x-amz-date", "20130524T000000Z"}},
         3,
         "",
         "s3",
         "20130524T000000Z",
         S3DOC_KEY,
         S3DOC_CRED "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                    "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const sig_case *c = &cases[i];
        char hash[65];
        lt_sigv4_sha256_hex(c->body, strlen(c->body), hash);
        lt_sigv4_request r = {c->method, c->path,     c->query,    c->n_query, c->headers, c->n_headers,
                              hash,      c->amz_date, "us-east-1", c->service, c->akid,    c->secret};
        char auth[512];
        lt_err err = {{0}};
        lt_status st = lt_sigv4_authorization(&r, auth, sizeof auth, &err);
        CHECK_MSG(st == LT_OK && strcmp(auth, c->want) == 0, "sigv4 %s:\n got  %s\n want %s", c->name,
                  st == LT_OK ? auth : err.msg, c->want);
    }
    /* The canonical request of post-x-www-form-urlencoded, as published. */
    const sig_case *c = &cases[2];
    char hash[65];
    lt_sigv4_sha256_hex(c->body, strlen(c->body), hash);
    lt_sigv4_request r = {c->method, c->path,     NULL,        0,          c->headers, c->n_headers,
                          hash,      c->amz_date, "us-east-1", c->service, c->akid,    c->secret};
    char *creq = lt_sigv4_canonical_request(&r);
    CHECK(creq &&
          strcmp(creq,
                 "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
                 "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
                 "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e") == 0);
    free(creq);
    char *e = lt_sigv4_uri_encode("a b/c~d%\xc3\xa9!", 1);
    CHECK(e && strcmp(e, "a%20b/c~d%25%C3%A9%21") == 0);
    free(e);
    e = lt_sigv4_uri_encode("a/b+c=", 0);
    CHECK(e && strcmp(e, "a%2Fb%2Bc%3D") == 0);
    free(e);
}

/* ---------------------------------------------------------------- helpers */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir) {
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int file_equals(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char *buf = malloc(len + 1);
    size_t got = buf ? fread(buf, 1, len + 1, f) : 0;
    fclose(f);
    int ok = buf && got == len && memcmp(buf, data, len) == 0;
    free(buf);
    return ok;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, len, f);
    fclose(f);
}

static unsigned char *random_bytes(size_t n, unsigned seed) {
    unsigned char *p = malloc(n);
    uint64_t x = seed * 2654435761u + 1;
    for (size_t i = 0; p && i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (unsigned char)x;
    }
    return p;
}

/* Every event message is collected so the test can check none holds a credential. */
typedef struct {
    int retries, downloads, uploads, cache_hits;
    int leaked; /* an event message held a credential */
    int last_attempt;
} ev_log;

static void on_event(void *ctx, const lt_storage_event *ev) {
    ev_log *l = ctx;
    if (strstr(ev->message, SECRET_KEY) || strstr(ev->message, "AKIDLATHE")) l->leaked++;
    if (ev->kind == LT_STORAGE_EV_RETRY) {
        l->retries++;
        l->last_attempt = ev->attempt;
    }
    if (ev->kind == LT_STORAGE_EV_DOWNLOADED) l->downloads++;
    if (ev->kind == LT_STORAGE_EV_UPLOADED) l->uploads++;
    if (ev->kind == LT_STORAGE_EV_CACHE_HIT) l->cache_hits++;
}

/* ---------------------------------------------------------------- s3rver as a child process */

typedef struct {
    pid_t pid;
    int port;
} s3rver_proc;

static int start_s3rver(const char *base, s3rver_proc *p) {
    const char *bin = getenv("LATHE_S3RVER");
    if (!bin || !bin[0]) bin = "tests/s3rver/node_modules/.bin/s3rver";
    if (access(bin, X_OK) != 0) {
        CHECK_MSG(
            0,
            "s3rver not found at '%s': install it with `npm ci --prefix tests/s3rver` (from the repository "
            "root) or set LATHE_S3RVER to its binary",
            bin);
        return -1;
    }
    char data[600], log[600];
    snprintf(data, sizeof data, "%s/s3data", base);
    snprintf(log, sizeof log, "%s/s3rver.log", base);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        /* s3rver's continuation tokens use DES, which Node 17+ only offers through the legacy provider. */
        const char *prev = getenv("NODE_OPTIONS");
        char node_opts[512];
        snprintf(node_opts, sizeof node_opts, "%s%s--openssl-legacy-provider", prev ? prev : "",
                 prev ? " " : "");
        setenv("NODE_OPTIONS", node_opts, 1);
        execl(bin, bin, "-d", data, "-a", "127.0.0.1", "-p", "0", "-s", "--configure-bucket", BUCKET,
              (char *)NULL);
        _exit(127);
    }
    p->pid = pid;
    p->port = 0;
    /* It prints "S3rver listening on 127.0.0.1:PORT" once ready. */
    for (int i = 0; i < 300 && p->port == 0; i++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
        FILE *f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f)) {
            const char *at = strstr(line, "listening on 127.0.0.1:");
            if (at) p->port = atoi(at + strlen("listening on 127.0.0.1:"));
        }
        if (f) fclose(f);
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) break;
    }
    CHECK_MSG(p->port > 0, "s3rver did not start (see %s)", log);
    return p->port > 0 ? 0 : -1;
}

static void stop_s3rver(s3rver_proc *p) {
    if (p->pid <= 0) return;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

/* ---------------------------------------------------------------- fake server thread */

enum { FAKE_FLAKY, FAKE_HANG, FAKE_LEAK, FAKE_EVIL_LIST, FAKE_EVIL_PAGE2, FAKE_NO_RANGE };

typedef struct {
    int fd, port;
    pthread_t thread;
    atomic_int stop;
    atomic_int mode;
    atomic_int fail_count;  /* FLAKY: answer fail_status to this many requests first */
    atomic_int fail_status; /* 503, 429 */
    atomic_int requests;    /* requests seen */
} fake_srv;

static void send_all(int fd, const char *s, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, int status, const char *reason, const char *extra, const char *body) {
    char head[512];
    int n =
        snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                 status, reason, strlen(body), extra);
    send_all(fd, head, (size_t)n);
    send_all(fd, body, strlen(body));
}

/* Reads one request's head (and body by Content-Length) into buf; returns its length or -1. */
static int read_request(int fd, char *buf, size_t cap) {
    size_t len = 0;
    while (len + 1 < cap) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 2000) <= 0) return -1;
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0) return -1;
        len += (size_t)r;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end) continue;
        const char *cl = strcasestr(buf, "content-length:");
        size_t body = cl ? (size_t)atol(cl + 15) : 0;
        if (len >= (size_t)(end + 4 - buf) + body || len + 1 >= cap) return (int)len;
    }
    return (int)len;
}

static void serve_one(fake_srv *f, int c) {
    char req[8192];
    if (read_request(c, req, sizeof req) < 0) return;
    int n = atomic_fetch_add(&f->requests, 1);
    switch (atomic_load(&f->mode)) {
    case FAKE_FLAKY:
        if (n < atomic_load(&f->fail_count)) {
            int st = atomic_load(&f->fail_status);
            respond(c, st, st == 429 ? "Too Many Requests" : "Service Unavailable", "",
                    "<Error><Code>SlowDown</Code><Message>Please reduce your request rate, AKIDLATHETESTKEY."
                    "</Message></Error>");
        } else {
            respond(c, 200, "OK", "ETag: \"5eb63bbbe01eeed093cb22bb8f5acdc3\"\r\n", "hello world");
        }
        break;
    case FAKE_HANG:
        /* Say nothing until the client gives up (or the test ends). */
        for (int i = 0; i < 60 && !atomic_load(&f->stop); i++) {
            struct pollfd pf = {c, POLLIN, 0};
            char b[256];
            if (poll(&pf, 1, 50) > 0 && recv(c, b, sizeof b, 0) <= 0) break;
        }
        break;
    case FAKE_LEAK:
        /* A server (or proxy) that quotes what it was given: the client must not pass that on. */
        respond(c, 403, "Forbidden", "",
                "<Error><Code>AccessDenied</Code><Message>key AKIDLATHETESTKEY with secret " SECRET_KEY
                " is not allowed</Message><AWSAccessKeyId>AKIDLATHETESTKEY</AWSAccessKeyId></Error>");
        break;
    case FAKE_NO_RANGE: {
        /* Answers every GET with the whole object, Range or not. */
        static char body[3001];
        memset(body, 'a', 3000);
        respond(c, 200, "OK", "ETag: \"0123456789abcdef0123456789abcdef\"\r\n", body);
        break;
    }
    case FAKE_EVIL_LIST:
        if (strstr(req, "list-type=2")) {
            respond(
                c, 200, "OK", "",
                "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>"
                "<Contents><Key>data/ok.txt</Key><Size>1</Size><ETag>&quot;aa&quot;</ETag></Contents>"
                "<Contents><Key>data/../../evil.txt</Key><Size>1</Size><ETag>&quot;bb&quot;</ETag></Contents>"
                "</ListBucketResult>");
        } else {
            respond(c, 200, "OK", "ETag: \"aa\"\r\n", "x");
        }
        break;
    case FAKE_EVIL_PAGE2: /* good keys on the first page (downloaded while the second is listed), then one
                             that escapes */
        if (strstr(req, "list-type=2") && !strstr(req, "continuation-token")) {
            respond(c, 200, "OK", "",
                    "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>"
                    "<NextContinuationToken>p2</NextContinuationToken>"
                    "<Contents><Key>data/ok.txt</Key><Size>1</Size><ETag>&quot;aa&quot;</ETag></Contents>"
                    "<Contents><Key>data/sub/ok.txt</Key><Size>1</Size><ETag>&quot;aa&quot;</ETag></Contents>"
                    "</ListBucketResult>");
        } else if (strstr(req, "list-type=2")) {
            respond(
                c, 200, "OK", "",
                "<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated>"
                "<Contents><Key>data/../../evil.txt</Key><Size>1</Size><ETag>&quot;bb&quot;</ETag></Contents>"
                "</ListBucketResult>");
        } else {
            respond(c, 200, "OK", "ETag: \"aa\"\r\n", "x");
        }
        break;
    }
}

static void *fake_main(void *arg) {
    fake_srv *f = arg;
    while (!atomic_load(&f->stop)) {
        struct pollfd pf = {f->fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) continue;
        int c = accept(f->fd, NULL, NULL);
        if (c < 0) continue;
        serve_one(f, c);
        close(c);
    }
    return NULL;
}

/* Binds a loopback listener on a free port; with listen_too == 0 the port is closed again (so connecting to
 * it is refused). Returns the fd or -1. */
static int loopback_socket(int *port, int listen_too) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0 || (listen_too && listen(fd, 16) != 0)) {
        if (fd >= 0) close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    if (!listen_too) {
        close(fd);
        return -1;
    }
    return fd;
}

static int fake_start(fake_srv *f) {
    memset(f, 0, sizeof *f);
    f->fd = loopback_socket(&f->port, 1);
    if (f->fd < 0) return -1;
    if (pthread_create(&f->thread, NULL, fake_main, f) != 0) {
        close(f->fd);
        return -1;
    }
    return 0;
}

static void fake_stop(fake_srv *f) {
    atomic_store(&f->stop, 1);
    pthread_join(f->thread, NULL);
    close(f->fd);
}

static void fake_mode(fake_srv *f, int mode, int fail_count, int fail_status) {
    atomic_store(&f->mode, mode);
    atomic_store(&f->fail_count, fail_count);
    atomic_store(&f->fail_status, fail_status);
    atomic_store(&f->requests, 0);
}

/* ---------------------------------------------------------------- tests against s3rver */

static lt_storage *open_s3(const char *uri, const char *cache, ev_log *log) {
    lt_storage_opts o;
    lt_storage_opts_init(&o);
    o.cache_dir = cache;
    o.parallel = 4;
    o.multipart_threshold = 1 << 20; /* small, so a 1.3 MiB file goes in parts */
    o.part_size = 256 << 10;
    o.list_page_size = 7; /* so listings need several pages */
    o.retry_base_ms = 20;
    o.retry_max_ms = 200;
    o.on_event = on_event;
    o.event_ctx = log;
    lt_err err = {{0}};
    lt_storage *s = lt_storage_open(uri, &o, &err);
    CHECK_MSG(s != NULL, "open %s: %s", uri, err.msg);
    return s;
}

static void no_secret(const lt_err *err) {
    CHECK_MSG(strstr(err->msg, SECRET_KEY) == NULL, "secret key in error: %s", err->msg);
    CHECK_MSG(strstr(err->msg, ACCESS_KEY) == NULL, "access key in error: %s", err->msg);
}

static void test_objects(lt_storage *s, const char *base, ev_log *log) {
    lt_err err = {{0}};
    lt_storage_stats a, b;

    /* small objects */
    CHECK_MSG(lt_storage_put_mem(s, "small/hello.txt", "hello s3", 8, &err) == LT_OK, "%s", err.msg);
    void *data = NULL;
    size_t len = 0;
    CHECK_MSG(lt_storage_get_mem(s, "small/hello.txt", &data, &len, &err) == LT_OK, "%s", err.msg);
    CHECK(len == 8 && data && strcmp(data, "hello s3") == 0);
    free(data);
    lt_storage_info info;
    CHECK(lt_storage_stat(s, "small/hello.txt", &info, &err) == LT_OK);
    CHECK(info.size == 8 && strlen(info.etag) == 32 && info.mtime > 0); /* md5 of a single-part object */
    CHECK(lt_storage_put_mem(s, "small/empty", "", 0, &err) == LT_OK);
    CHECK(lt_storage_get_mem(s, "small/empty", &data, &len, &err) == LT_OK && len == 0);
    free(data);
    CHECK(lt_storage_put_mem(s, "small/odd name+(1) é.txt", "odd", 3, &err) == LT_OK);
    CHECK(lt_storage_get_mem(s, "small/odd name+(1) é.txt", &data, &len, &err) == LT_OK && len == 3);
    free(data);

    /* multipart upload from a file: 1.3 MiB in 256 KiB parts = initiate + 6 parts + complete */
    size_t big_n = (1 << 20) + (300 << 10);
    unsigned char *big = random_bytes(big_n, 1);
    char src[600], dst[600];
    snprintf(src, sizeof src, "%s/big.bin", base);
    snprintf(dst, sizeof dst, "%s/got/big.bin", base);
    write_bytes(src, big, big_n);
    lt_storage_get_stats(s, &a);
    CHECK_MSG(lt_storage_put(s, "big/big.bin", src, &err) == LT_OK, "%s", err.msg);
    lt_storage_get_stats(s, &b);
    CHECK_MSG(b.requests - a.requests == 8, "multipart put took %lld requests",
              (long long)(b.requests - a.requests));
    CHECK(lt_storage_stat(s, "big/big.bin", &info, &err) == LT_OK && info.size == (int64_t)big_n);
    /* ranged parallel download into a file: HEAD + 6 ranged GETs */
    lt_storage_get_stats(s, &a);
    CHECK_MSG(lt_storage_get(s, "big/big.bin", dst, &err) == LT_OK, "%s", err.msg);
    lt_storage_get_stats(s, &b);
    CHECK(b.requests - a.requests == 7);
    CHECK(file_equals(dst, big, big_n));
    /* a second get of the same version comes from the cache: only the HEAD */
    lt_storage_get_stats(s, &a);
    CHECK(lt_storage_get(s, "big/big.bin", dst, &err) == LT_OK);
    lt_storage_get_stats(s, &b);
    CHECK(b.requests - a.requests == 1 && b.cache_hits - a.cache_hits == 1 && file_equals(dst, big, big_n));
    /* multipart from memory, read back whole */
    CHECK_MSG(lt_storage_put_mem(s, "big/mem.bin", big + 7, big_n - 7, &err) == LT_OK, "%s", err.msg);
    CHECK(lt_storage_get_mem(s, "big/mem.bin", &data, &len, &err) == LT_OK && len == big_n - 7 &&
          memcmp(data, big + 7, len) == 0);
    free(data);
    free(big);

    /* delete */
    CHECK(lt_storage_delete(s, "small/empty", &err) == LT_OK);
    int ex = -1;
    CHECK(lt_storage_exists(s, "small/empty", &ex, &err) == LT_OK && ex == 0);
    CHECK(lt_storage_exists(s, "small/hello.txt", &ex, &err) == LT_OK && ex == 1);
    CHECK(lt_storage_delete(s, "small/empty", &err) == LT_OK);

    /* 404 is permanent and names the key; no credentials in the message */
    lt_err_clear(&err);
    lt_status st = lt_storage_get_mem(s, "small/missing.txt", &data, &len, &err);
    CHECK(st == LT_ERR_FORMAT && !lt_storage_is_transient(st) &&
          strstr(err.msg, "not found: small/missing.txt"));
    no_secret(&err);
    lt_err_clear(&err);
    st = lt_storage_get(s, "small/missing.txt", dst, &err);
    CHECK(st == LT_ERR_FORMAT && strstr(err.msg, "small/missing.txt"));
    CHECK(file_equals(dst, "", 0) == 0); /* the earlier download is still there, untouched */
    no_secret(&err);

    /* keys that would escape are refused before any request */
    lt_storage_get_stats(s, &a);
    CHECK(lt_storage_get(s, "../etc/passwd", dst, &err) == LT_ERR_ARG);
    CHECK(lt_storage_put_mem(s, "/abs", "x", 1, &err) == LT_ERR_ARG);
    lt_storage_get_stats(s, &b);
    CHECK(b.requests == a.requests);
    CHECK(log->leaked == 0);
}

static void test_list_and_sync(lt_storage *s, const char *base, ev_log *log) {
    lt_err err = {{0}};
    lt_storage_stats a, b;
    enum { N = 23 };
    char key[64], text[64];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "many/%s%02d.txt", i % 3 ? "" : "sub/", i);
        snprintf(text, sizeof text, "object %d", i);
        CHECK(lt_storage_put_mem(s, key, text, strlen(text), &err) == LT_OK);
    }
    CHECK(lt_storage_put_mem(s, "manyother.txt", "not in many/", 12, &err) == LT_OK);

    /* 23 keys at 7 per page: 4 pages */
    lt_storage_obj_list l;
    lt_storage_get_stats(s, &a);
    CHECK_MSG(lt_storage_list_all(s, "many/", &l, &err) == LT_OK, "%s", err.msg);
    lt_storage_get_stats(s, &b);
    CHECK(l.n == N && b.requests - a.requests == 4);
    for (size_t i = 1; i < l.n; i++)
        CHECK(strcmp(l.items[i - 1].key, l.items[i].key) < 0);
    CHECK(l.n > 0 && l.items[0].size > 0 && strlen(l.items[0].etag) == 32);
    lt_storage_obj_list_free(&l);

    /* sync_down: 4 list pages + 23 GETs, run 4 at a time */
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/sync", base);
    lt_storage_get_stats(s, &a);
    int dl0 = log->downloads;
    CHECK_MSG(lt_storage_sync_down(s, "many", dir, &err) == LT_OK, "%s", err.msg);
    lt_storage_get_stats(s, &b);
    CHECK(b.objects_downloaded - a.objects_downloaded == N && b.requests - a.requests == 4 + N);
    CHECK(log->downloads - dl0 == N);
    for (int i = 0; i < N; i++) {
        snprintf(p, sizeof p, "%s/%s%02d.txt", dir, i % 3 ? "" : "sub/", i);
        snprintf(text, sizeof text, "object %d", i);
        CHECK_MSG(file_equals(p, text, strlen(text)), "%s", p);
    }
    snprintf(p, sizeof p, "%s/../manyother.txt", dir);
    CHECK(access(p, F_OK) != 0);

    /* unchanged objects are not downloaded again: only the listing */
    lt_storage_get_stats(s, &a);
    CHECK(lt_storage_sync_down(s, "many/", dir, &err) == LT_OK);
    lt_storage_get_stats(s, &b);
    CHECK_MSG(b.requests - a.requests == 4 && b.objects_downloaded == a.objects_downloaded &&
                  b.cache_hits - a.cache_hits == N,
              "second sync: %lld requests, %lld downloads", (long long)(b.requests - a.requests),
              (long long)(b.objects_downloaded - a.objects_downloaded));

    /* a changed object (new ETag) is downloaded again, alone */
    CHECK(lt_storage_put_mem(s, "many/05.txt", "changed!", 8, &err) == LT_OK);
    lt_storage_get_stats(s, &a);
    CHECK(lt_storage_sync_down(s, "many", dir, &err) == LT_OK);
    lt_storage_get_stats(s, &b);
    CHECK(b.objects_downloaded - a.objects_downloaded == 1 && b.requests - a.requests == 5);
    snprintf(p, sizeof p, "%s/05.txt", dir);
    CHECK(file_equals(p, "changed!", 8));

    /* sync_up: the synced tree to another prefix, then again (nothing changed: only the listing) */
    lt_storage_get_stats(s, &a);
    CHECK_MSG(lt_storage_sync_up(s, dir, "copy", &err) == LT_OK, "%s", err.msg);
    lt_storage_get_stats(s, &b);
    CHECK(b.objects_uploaded - a.objects_uploaded == N);
    void *data = NULL;
    size_t len = 0;
    CHECK(lt_storage_get_mem(s, "copy/sub/00.txt", &data, &len, &err) == LT_OK && len == 8 &&
          memcmp(data, "object 0", 8) == 0);
    free(data);
    lt_storage_get_stats(s, &a);
    CHECK(lt_storage_sync_up(s, dir, "copy/", &err) == LT_OK);
    lt_storage_get_stats(s, &b);
    CHECK(b.objects_uploaded == a.objects_uploaded && b.requests - a.requests == 4);
    CHECK(log->leaked == 0);
}

/* A storage rooted at a prefix sees keys relative to it. */
static void test_prefix_root(const char *base) {
    lt_err err = {{0}};
    ev_log log = {0};
    lt_storage *s = open_s3("s3://" BUCKET "/many/sub", NULL, &log);
    if (!s) return;
    lt_storage_obj_list l;
    CHECK(lt_storage_list_all(s, "", &l, &err) == LT_OK && l.n == 8);
    CHECK(l.n > 0 && strcmp(l.items[0].key, "00.txt") == 0);
    lt_storage_obj_list_free(&l);
    void *data = NULL;
    size_t len = 0;
    CHECK(lt_storage_get_mem(s, "03.txt", &data, &len, &err) == LT_OK && len == 8);
    free(data);
    /* without a cache, get writes the file directly (tmp + rename) */
    char dst[600];
    snprintf(dst, sizeof dst, "%s/nocache/03.txt", base);
    CHECK_MSG(lt_storage_get(s, "03.txt", dst, &err) == LT_OK, "%s", err.msg);
    CHECK(file_equals(dst, "object 3", 8));
    CHECK(lt_storage_get(s, "03.txt", dst, &err) == LT_OK && file_equals(dst, "object 3", 8));
    lt_storage_stats stats;
    lt_storage_get_stats(s, &stats);
    CHECK(stats.objects_downloaded == 3 && stats.cache_hits == 0);
    lt_storage_close(s);
}

static void test_wrong_key(void) {
    /* s3rver answers an unknown access key with 403 InvalidAccessKeyId and quotes the key in its body. */
    lt_storage_opts o;
    lt_storage_opts_init(&o);
    o.access_key_id = "AKIDLATHEWRONGKEY";
    o.secret_access_key = SECRET_KEY;
    lt_err err = {{0}};
    lt_storage *s = lt_storage_open("s3://" BUCKET, &o, &err);
    CHECK(s != NULL);
    if (!s) return;
    void *data;
    size_t len;
    lt_status st = lt_storage_get_mem(s, "small/hello.txt", &data, &len, &err);
    CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, "403"), "wrong key: status %d, %s", (int)st, err.msg);
    CHECK_MSG(!strstr(err.msg, "AKIDLATHEWRONGKEY") && !strstr(err.msg, SECRET_KEY), "credential in: %s",
              err.msg);
    lt_storage_stats stats;
    lt_storage_get_stats(s, &stats);
    CHECK(stats.requests == 1); /* permanent: not retried */
    lt_storage_close(s);
}

/* ---------------------------------------------------------------- failure injection */

static lt_storage *open_fake(int port, int max_retries, int timeout_ms, int64_t threshold, ev_log *log) {
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", port);
    lt_storage_opts o;
    lt_storage_opts_init(&o);
    o.endpoint_url = ep;
    o.access_key_id = "AKIDLATHETESTKEY";
    o.secret_access_key = SECRET_KEY;
    o.max_retries = max_retries;
    o.retry_base_ms = 10;
    o.retry_max_ms = 40;
    o.request_timeout_ms = timeout_ms;
    o.multipart_threshold = threshold;
    o.part_size = 1024;
    o.on_event = on_event;
    o.event_ctx = log;
    lt_err err = {{0}};
    lt_storage *s = lt_storage_open("s3://fake", &o, &err);
    CHECK_MSG(s != NULL, "%s", err.msg);
    return s;
}

static void test_failures(const char *base) {
    fake_srv f;
    if (fake_start(&f) != 0) {
        CHECK_MSG(0, "could not start the fake server");
        return;
    }
    lt_err err = {{0}};
    ev_log log = {0};
    void *data = NULL;
    size_t len = 0;
    lt_storage_stats stats;

    /* 503 twice, then the object: two retries, one success */
    lt_storage *s = open_fake(f.port, 3, 0, 1 << 20, &log);
    fake_mode(&f, FAKE_FLAKY, 2, 503);
    lt_status st = lt_storage_get_mem(s, "obj", &data, &len, &err);
    CHECK_MSG(st == LT_OK && len == 11 && memcmp(data, "hello world", 11) == 0, "flaky get: %s", err.msg);
    free(data);
    lt_storage_get_stats(s, &stats);
    CHECK(atomic_load(&f.requests) == 3 && stats.retries == 2 && stats.requests == 3);
    CHECK(log.retries == 2 && log.last_attempt == 2);

    /* 429 once */
    fake_mode(&f, FAKE_FLAKY, 1, 429);
    CHECK(lt_storage_get_mem(s, "obj", &data, &len, &err) == LT_OK && atomic_load(&f.requests) == 2);
    free(data);

    /* always 503: gives up after 1 + 3 attempts with a transient error that says so */
    fake_mode(&f, FAKE_FLAKY, 1000, 503);
    lt_err_clear(&err);
    st = lt_storage_get_mem(s, "obj", &data, &len, &err);
    CHECK(st == LT_ERR_IO && lt_storage_is_transient(st) && data == NULL);
    CHECK_MSG(strstr(err.msg, "503") && strstr(err.msg, "SlowDown") &&
                  strstr(err.msg, "gave up after 4 attempts"),
              "%s", err.msg);
    CHECK(atomic_load(&f.requests) == 4);
    no_secret(&err);
    CHECK_MSG(strstr(err.msg, "AKIDLATHETESTKEY") == NULL, "%s", err.msg);

    /* an error body that quotes the credentials: permanent (403), not retried, and scrubbed */
    fake_mode(&f, FAKE_LEAK, 0, 0);
    lt_err_clear(&err);
    st = lt_storage_get_mem(s, "obj", &data, &len, &err);
    CHECK(st == LT_ERR_FORMAT && !lt_storage_is_transient(st) && atomic_load(&f.requests) == 1);
    CHECK_MSG(strstr(err.msg, "AccessDenied") && strstr(err.msg, "[redacted]"), "%s", err.msg);
    CHECK_MSG(!strstr(err.msg, SECRET_KEY) && !strstr(err.msg, "AKIDLATHETESTKEY"), "credential leaked: %s",
              err.msg);

    /* a listing with a key that climbs out of the target directory: refused before anything is written */
    fake_mode(&f, FAKE_EVIL_LIST, 0, 0);
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/evil/target", base);
    lt_err_clear(&err);
    st = lt_storage_sync_down(s, "data", dir, &err);
    CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, "escape") && strstr(err.msg, "data/../../evil.txt"),
              "%s", err.msg);
    snprintf(p, sizeof p, "%s/evil.txt", base);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/ok.txt", dir);
    CHECK(access(p, F_OK) != 0);
    CHECK(atomic_load(&f.requests) == 1); /* the listing only */
    /* the same key on a second page: the first page's objects may have been downloaded meanwhile, but
     * nothing is put into place and no temporary file is left */
    fake_mode(&f, FAKE_EVIL_PAGE2, 0, 0);
    lt_err_clear(&err);
    st = lt_storage_sync_down(s, "data", dir, &err);
    CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, "escape") && strstr(err.msg, "data/../../evil.txt"),
              "%s", err.msg);
    CHECK(atomic_load(&f.requests) >= 2);
    snprintf(p, sizeof p, "%s/evil.txt", base);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/ok.txt", dir);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/sub", dir);
    CHECK(access(p, F_OK) != 0);
    DIR *dd = opendir(dir);
    struct dirent *de;
    int left = 0;
    while (dd && (de = readdir(dd)) != NULL)
        if (de->d_name[0] != '.' || strstr(de->d_name, ".lt-tmp-")) left++;
    if (dd) closedir(dd);
    CHECK_MSG(left == 0, "%d files left in %s after a refused sync", left, dir);
    lt_storage_close(s);

    /* a server that ignores Range: the ranged download must fail rather than write a mangled file */
    s = open_fake(f.port, 3, 0, 2048, &log);
    fake_mode(&f, FAKE_NO_RANGE, 0, 0);
    snprintf(p, sizeof p, "%s/norange.bin", base);
    lt_err_clear(&err);
    st = lt_storage_get(s, "obj", p, &err);
    CHECK_MSG(st == LT_ERR_FORMAT && strstr(err.msg, "ignored the Range"), "%s", err.msg);
    CHECK(access(p, F_OK) != 0);
    lt_storage_close(s);

    /* a server that never answers: each attempt times out, then a transient error */
    ev_log hang_log = {0};
    s = open_fake(f.port, 1, 300, 1 << 20, &hang_log);
    fake_mode(&f, FAKE_HANG, 0, 0);
    lt_err_clear(&err);
    st = lt_storage_get_mem(s, "obj", &data, &len, &err);
    CHECK_MSG(st == LT_ERR_IO && strstr(err.msg, "timed out") && strstr(err.msg, "gave up after 2 attempts"),
              "%s", err.msg);
    CHECK(hang_log.retries == 1);
    lt_storage_close(s);
    fake_stop(&f);

    /* nobody listening: connection refused is transient */
    int port = 0;
    loopback_socket(&port, 0);
    s = open_fake(port, 2, 0, 1 << 20, &log);
    lt_err_clear(&err);
    st = lt_storage_stat(s, "obj", &(lt_storage_info){0}, &err);
    CHECK_MSG(st == LT_ERR_IO && lt_storage_is_transient(st) && strstr(err.msg, "gave up after 3 attempts"),
              "%s", err.msg);
    lt_storage_close(s);
    CHECK(log.leaked == 0 && hang_log.leaked == 0);
}

/* ---------------------------------------------------------------- main */

int main(void) {
    test_sigv4();
    char base[] = "/tmp/lathe-storage-s3-XXXXXX";
    if (!mkdtemp(base)) {
        perror("mkdtemp");
        return 1;
    }
    test_failures(base);
    s3rver_proc srv = {0};
    if (start_s3rver(base, &srv) == 0) {
        char ep[64], cache[600];
        snprintf(ep, sizeof ep, "http://127.0.0.1:%d", srv.port);
        snprintf(cache, sizeof cache, "%s/cache", base);
        /* Configured through the environment, as a user would. */
        setenv("AWS_ENDPOINT_URL", ep, 1);
        setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY, 1);
        setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY, 1);
        setenv("AWS_REGION", "us-east-1", 1);
        ev_log log = {0};
        lt_storage *s = open_s3("s3://" BUCKET, cache, &log);
        if (s) {
            test_objects(s, base, &log);
            test_list_and_sync(s, base, &log);
            lt_storage_close(s);
            test_prefix_root(base);
            test_wrong_key();
        }
    }
    stop_s3rver(&srv);
    rm_rf(base);
    return check_summary("test_storage_s3");
}
