#!/usr/bin/env bash
# Installs a Debian package (or several, space-separated) for a test that needs a real tool, when
# the tool is missing:
#   bash tests/apt-tool.sh TARGET COMMAND PACKAGE WHAT-SKIPS
# Run by `make test` (TARGET is the make target). Without root or apt it says why and stops;
# the test then skips with that reason. Quiet and idempotent.
set -u
target=$1 command=$2 package=$3 skips=$4
if command -v "$command" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "$target: need root and apt-get to install $package; $skips will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
# shellcheck disable=SC2086  # PACKAGE may name several packages
apt-get install -y -qq --no-install-recommends $package >/dev/null 2>&1 \
  || echo "$target: apt-get install $package failed; $skips will skip" >&2
exit 0
