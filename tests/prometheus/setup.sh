#!/usr/bin/env bash
# Installs Prometheus (Debian's package), which tests/test_telemetry.py runs on loopback to
# scrape a node's /metrics. Run by `make test` (target prometheus-tools). Without root or apt
# it says why and stops; that test then skips with that reason.
set -u
if command -v prometheus >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "prometheus-tools: need root and apt-get to install prometheus; the scrape test will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
  || echo "prometheus-tools: apt-get install prometheus failed; the scrape test will skip" >&2
exit 0
