#!/usr/bin/env bash
# Debian packages the stack, image and browser tests use (nginx, redis-server, spiped, supervisor,
# docker.io and debootstrap for tests/test_image.py's private engine and base image, chromium,
# shellcheck): installed with apt-get when missing, nothing done when all are there.
#   bash tools/install-system-packages.sh            # all of them
#   bash tools/install-system-packages.sh nginx ...  # only these
set -euo pipefail
packages=("$@")
if [ ${#packages[@]} -eq 0 ]; then
    packages=(nginx redis-server spiped supervisor docker.io debootstrap chromium chromium-driver shellcheck)
fi
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "installing ${missing[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
# --no-install-recommends keeps it small; services are not started (tests start their own).
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
