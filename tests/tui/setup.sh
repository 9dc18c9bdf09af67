#!/usr/bin/env bash
# Installs tmux, which tests/test_dashboard.py drives the live dashboard in (send-keys,
# capture-pane). Run by `make test` (target terminal-tools). Without root or apt it says why
# and stops; the terminal test then skips with that reason.
set -u
if command -v tmux >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "terminal-tools: need root and apt-get to install tmux; the dashboard's terminal test will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq tmux >/dev/null 2>&1 \
  || echo "terminal-tools: apt-get install tmux failed; the dashboard's terminal test will skip" >&2
exit 0
