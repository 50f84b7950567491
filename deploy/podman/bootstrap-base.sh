#!/usr/bin/env bash
# Makes the local base image (no registry is reachable here): a minimal Debian bookworm with Python 3.11,
# built by debootstrap and imported into podman. Done once: skipped when the image already exists.
set -euo pipefail
BASE_IMAGE=${BASE_IMAGE:-localhost/tlserve-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}

if podman image exists "$BASE_IMAGE"; then
  echo "base image $BASE_IMAGE exists"
  exit 0
fi
root=$(mktemp -d /var/tmp/tlserve-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$MIRROR" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
echo "base image $BASE_IMAGE made in $(( $(date +%s) - start )) s"
