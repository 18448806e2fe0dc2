/* bench_s3_download - times lathe's storage moving a folder to or from S3 (bench/run_s3_download.sh).
 *
 *     bench_s3_download up   s3://bucket/prefix LOCAL_DIR    # sync_up, to fill the bucket
 *     bench_s3_download down s3://bucket/prefix LOCAL_DIR    # sync_down without the ETag cache
 *
 * Prints one JSON line: objects, bytes, seconds, MB/s. S3 settings come from AWS_* as usual. */
#include "core/status.h"
#include "storage/storage.h"
#include "tasks/train_common.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 4 || (strcmp(argv[1], "up") && strcmp(argv[1], "down"))) {
        fprintf(stderr, "usage: bench_s3_download up|down s3://bucket/prefix LOCAL_DIR\n");
        return 2;
    }
    lt_err err = {{0}};
    lt_storage_opts o;
    lt_storage_opts_init(&o);
    o.cache_dir = NULL; /* measure transfers, not the cache */
    lt_storage *s = lt_storage_open(argv[2], &o, &err);
    if (!s) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t = lt_now();
    lt_status st = !strcmp(argv[1], "up") ? lt_storage_sync_up(s, argv[3], "", &err)
                                          : lt_storage_sync_down(s, "", argv[3], &err);
    double dt = lt_now() - t;
    if (st != LT_OK) {
        fprintf(stderr, "%s\n", err.msg);
        lt_storage_close(s);
        return 1;
    }
    lt_storage_stats stats;
    lt_storage_get_stats(s, &stats);
    double bytes = (double)(!strcmp(argv[1], "up") ? stats.bytes_uploaded : stats.bytes_downloaded);
    printf("{\"impl\": \"lathe\", \"direction\": \"%s\", \"bytes\": %.0f, \"seconds\": %.3f, \"mb_per_s\": %.1f}\n",
           argv[1], bytes, dt, bytes / dt / 1e6);
    lt_storage_close(s);
    return 0;
}
