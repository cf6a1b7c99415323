#!/usr/bin/env bash
# A local stand-in for the official python slim image, made from Debian's packages, because no
# image registry is reachable on the test machines (notes/container.md). The test keys its cache
# on a hash of this file: change anything here and the next test run builds a fresh base.
#
#   make_base.sh TARBALL   write the root filesystem as a tarball (for `podman import`)
#
# Debian's python3 is 3.11 and marked externally managed (PEP 668); the project's Dockerfile
# installs into a venv, so that is left as it is. `python` is linked as in the official image.
set -euo pipefail
out=$1
suite=bookworm
packages=python3,python3-venv,ca-certificates
# The mirror apt uses on this machine; the public one otherwise.
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/sim-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >&2
ln -sf python3 "$rootfs/usr/bin/python"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
tar -C "$rootfs" -cf "$out.part" .
mv "$out.part" "$out"
