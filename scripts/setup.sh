#!/usr/bin/env bash
# Install every build and test dependency of fleetmq from Debian 12 packages.
# Idempotent: packages already present are skipped; safe to run repeatedly.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config
  mosquitto mosquitto-clients libmosquitto-dev mosquitto-dev
  libpaho-mqtt-dev
  libprotobuf-c-dev protobuf-c-compiler
  libssl-dev openssl
  libyaml-dev
  libcunit1-dev
  libsqlite3-dev sqlite3
  libcjson-dev
  uthash-dev
  python3
  clang libclang-rt-14-dev
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
