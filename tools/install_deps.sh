#!/usr/bin/env bash
# Installs everything lathe builds, runs and tests with, from Debian's packages and npm (s3rver for the
# storage tests). Safe to run again. Needs root (or sudo).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  build-essential cmake pkg-config clang \
  libopenblas-openmp-dev librdkafka-dev libcurl4-openssl-dev libssl-dev libcjson-dev \
  libpng-dev libjpeg-dev libyaml-dev libmicrohttpd-dev \
  kcat dataset-fashion-mnist python3 curl ca-certificates >/dev/null
# Node.js runs s3rver for the storage tests; machines that already have a Node.js (often not Debian's,
# whose npm package conflicts with it) keep theirs.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ -f tests/s3rver/package.json ] && [ ! -x tests/s3rver/node_modules/.bin/s3rver ]; then
  npm ci --prefix tests/s3rver --no-audit --no-fund --silent
fi
