#!/usr/bin/env bash
# Installs what tests/test_docker.py needs for a real Docker Engine API: Debian's podman
# (serving the Docker API on a unix socket), runc, and a static busybox for a local image.
# Run by `make test` (target engine-tools). Without root or apt it says why and stops; the
# docker test then skips, naming this reason.
set -u
if command -v podman >/dev/null && command -v runc >/dev/null && [ -x /bin/busybox ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "engine-tools: need root and apt-get to install podman, runc and busybox-static; docker test will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq podman runc busybox-static >/dev/null 2>&1 \
  || echo "engine-tools: apt-get install podman runc busybox-static failed; docker test will skip" >&2
exit 0
