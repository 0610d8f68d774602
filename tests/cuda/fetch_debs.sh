#!/usr/bin/env bash
# fetch_debs.sh: downloads (here, where Debian's archive is reachable) the Debian
# packages the whole project builds against, into .debs/ (git-ignored), so that a
# GPU machine that has neither them nor a network can build the whole project:
# run_device_model.sh unpacks them into a private sysroot there (never into /).
# Usage, from the repository root: bash tests/cuda/fetch_debs.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
pkgs="liblua5.4-0 liblua5.4-dev libcjson1 libcjson-dev libpcre2-8-0 libpcre2-dev libseccomp2 libseccomp-dev
      libutf8proc2 libutf8proc-dev libsqlite3-0 libsqlite3-dev libcurl4-openssl-dev"
mkdir -p .debs
cd .debs
rm -f ./*.deb
apt-get download $pkgs
ls -l ./*.deb | awk '{s += $5} END {printf "%d packages, %.1f MB in .debs/\n", NR, s / 1e6}'
