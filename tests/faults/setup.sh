#!/usr/bin/env bash
# Installs what tests/faults/ needs to put compute nodes in network namespaces and hurt their
# links: iproute2 (ip netns, veth, tc tbf) and nftables (loss, partition). Run by `make test`
# (target fault-tools). Without root or apt it says why and stops; the fault suite then skips,
# naming the checks that did not run.
set -u
if command -v ip >/dev/null && command -v nft >/dev/null && command -v tc >/dev/null; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "fault-tools: need root and apt-get to install nftables and iproute2; the fault suite will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq nftables iproute2 >/dev/null 2>&1 \
  || echo "fault-tools: apt-get install nftables iproute2 failed; the fault suite will skip" >&2
exit 0
