#!/usr/bin/env bash
# S3 data set download: lathe's storage (sync_down, 8 parallel transfers, no cache) against plain curl
# fetching the same objects (one curl process, --parallel-max 8), from s3rver on loopback.
#   bench/run_s3_download.sh [BUILD_DIR]   (needs tests/s3rver installed: npm ci --prefix tests/s3rver)
# Objects: 2,000 of 64 KiB (a data set of small images) and 8 of 16 MiB (large files), 256 MiB in all.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/bench/bench_s3_download
port=4599
work=$(mktemp -d /tmp/lathe-s3bench-XXXXXX)
NODE_OPTIONS="--openssl-legacy-provider" tests/s3rver/node_modules/.bin/s3rver -d "$work/s3" -a 127.0.0.1 -p $port \
  --configure-bucket bench >"$work/s3rver.log" 2>&1 &
s3pid=$!
trap 'kill $s3pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
unset LATHE_STORAGE_CACHE
mkdir -p "$work/src/small" "$work/src/large"
for i in $(seq -w 1 2000); do head -c 65536 /dev/urandom >"$work/src/small/$i.bin"; done
for i in 1 2 3 4 5 6 7 8; do head -c 16777216 /dev/urandom >"$work/src/large/$i.bin"; done
"$bin" up s3://bench/data "$work/src" >/dev/null
(cd "$work/src" && find . -type f | sed 's|^\./||') | while read -r key; do
  printf 'url = "http://127.0.0.1:%s/bench/data/%s"\noutput = "%s/curl/%s"\n' $port "$key" "$work" "$key"
done >"$work/curl.cfg"
run_lathe() { rm -rf "$work/lathe"; lathe_json=$("$bin" down s3://bench/data "$work/lathe"); }
run_curl() {
  rm -rf "$work/curl"
  local start end
  start=$(date +%s.%N)
  curl -s --create-dirs -Z --parallel-max 8 -K "$work/curl.cfg" 2>/dev/null
  end=$(date +%s.%N)
  curl_s=$(python3 -c "print($end - $start)")
}
# Whichever client goes first after a pause is slower (s3rver, a Node.js process, warms up again), so one
# untimed round of each comes first, then the order alternates: lathe first in odd runs, curl first in even.
run_lathe
run_curl
for run in 1 2 3 4; do
  if [ $((run % 2)) = 1 ]; then run_lathe; run_curl; order="lathe first"; else run_curl; run_lathe; order="curl first"; fi
  python3 - "$lathe_json" "$curl_s" "$run" "$order" <<'PY'
import json, sys
l = json.loads(sys.argv[1]); curl_s = float(sys.argv[2])
curl_mbs = l["bytes"] / curl_s / 1e6
print("run %s (%s): lathe %.2f s (%.1f MB/s), curl %.2f s (%.1f MB/s): lathe at %.0f%% of curl's throughput"
      % (sys.argv[3], sys.argv[4], l["seconds"], l["mb_per_s"], curl_s, curl_mbs, 100 * l["mb_per_s"] / curl_mbs))
PY
  cmp -s <(cd "$work/lathe" && find . -type f -exec md5sum {} + | sort) <(cd "$work/curl" && find . -type f -exec md5sum {} + | sort) \
    || echo "warning: lathe's and curl's copies differ"
done
