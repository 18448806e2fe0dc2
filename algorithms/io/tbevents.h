/* tbevents.h - writes TensorBoard event files (scalars only), with no TensorFlow or protobuf library.
 *
 * A writer owns one file `<dir>/events.out.tfevents.<unix time, 10 digits>.<hostname>` (".<n>" is appended
 * when that name already exists, e.g. two writers opened in the same second). The file is a sequence of
 * TFRecords:
 *     u64 length (little endian) | u32 masked CRC-32C of the 8 length bytes | data | u32 masked CRC-32C of
 * data whose data is a hand-encoded tensorflow.Event protobuf: field 1 wall_time (double), field 2 step
 * (int64), field 3 file_version ("brain.Event:2", first record only), field 5 summary (Summary: repeated
 * field 1 Value { field 1 tag, field 2 simple_value (float) }). TensorBoard reads these as scalar plots; so
 * does tools/tb_read.py, a dependency-free reader for people.
 *
 * Durability: every record goes to the kernel with one write(2) as soon as it is made (no user-space
 * buffer), so a crash of the process loses nothing already logged and never leaves half a record behind
 * because of us. lt_tb_flush() additionally fsyncs, for a crash of the machine. Not thread-safe: one
 * writer per thread (or a lock around it). */
#ifndef LT_TBEVENTS_H
#define LT_TBEVENTS_H

#include "core/status.h"

#include <stdint.h>

typedef struct lt_tb_writer lt_tb_writer;

/* Tags longer than this are rejected (TensorBoard shows them badly anyway). */
#define LT_TB_TAG_MAX 512

/* Creates dir (and missing parents, mode 0755) when needed, creates the event file in it and writes the
 * file_version record. Returns NULL and fills err (naming the path and the OS error) on failure. Free with
 * lt_tb_close(). */
lt_tb_writer *lt_tb_open(const char *dir, lt_err *err);

/* Path of the event file (owned by w, valid until lt_tb_close). */
const char *lt_tb_path(const lt_tb_writer *w);

/* Logs one scalar as one Event record written at once. tag: 1..LT_TB_TAG_MAX bytes, e.g. "train/loss"
 * ("/" groups plots in TensorBoard). Any float value is accepted, NaN and infinities included. Returns
 * LT_ERR_ARG for a bad tag, LT_ERR_IO (naming the file) when the write fails; after a failed write the
 * writer stays usable but the file may end with a partial record, which TensorBoard skips. */
lt_status lt_tb_scalar(lt_tb_writer *w, const char *tag, float value, int64_t step, lt_err *err);

/* Logs n scalars at one step as a single Event (one record, one write): the usual way to log a batch of
 * metrics (accuracy, precision, recall, f1) at an evaluation step. Same errors as lt_tb_scalar; n == 0 is a
 * no-op. */
lt_status lt_tb_scalars(lt_tb_writer *w, const char *const *tags, const float *values, int n, int64_t step,
                        lt_err *err);

/* fsyncs the file so what was logged survives a machine crash too (records already reach the kernel on
 * every lt_tb_scalar). Returns LT_ERR_IO on failure. */
lt_status lt_tb_flush(lt_tb_writer *w, lt_err *err);

/* fsyncs, closes and frees w. Returns LT_ERR_IO when the final sync/close fails (w is freed anyway).
 * lt_tb_close(NULL, ...) is a no-op returning LT_OK. */
lt_status lt_tb_close(lt_tb_writer *w, lt_err *err);

#endif
