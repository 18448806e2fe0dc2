#!/bin/sh
# Starts s3rver (a local S3 protocol server) for trying lathe's storage by hand:
#   tests/s3rver/start.sh [data-dir] [port] [bucket]
# then, in another shell:
#   export AWS_ENDPOINT_URL=http://127.0.0.1:4568 AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
# Install it first with `npm ci --prefix tests/s3rver`. test_storage_s3 starts its own copy on a free port.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${LATHE_S3RVER:-$here/node_modules/.bin/s3rver}
if [ ! -x "$bin" ]; then
    echo "s3rver is not installed: run 'npm ci --prefix tests/s3rver' from the repository root" >&2
    exit 1
fi
data=${1:-/tmp/lathe-s3rver}
port=${2:-4568}
bucket=${3:-lathe}
mkdir -p "$data"
# s3rver's list continuation tokens use DES, which Node 17+ only has in OpenSSL's legacy provider.
NODE_OPTIONS="${NODE_OPTIONS:-} --openssl-legacy-provider" exec "$bin" -d "$data" -a 127.0.0.1 -p "$port" \
    --configure-bucket "$bucket"
