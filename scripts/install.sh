#!/usr/bin/env bash
# Install ganlab on a fresh machine: CPU PyTorch pinned first (a plain `torch` requirement would pull a
# multi-GB CUDA build), then the package with the extras given as $1 (default: demo,serve).
# Where apt is available (and we are root), also the two Debian wallpaper packages whose photos enrich the
# built-in demo data; without them the demo data still builds from the Python-package photos.
# With the dev extra, also Debian's chromium for the browser test of `ganlab serve` (skipped without it).
set -euo pipefail
extras="${1:-demo,serve}"
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s lomiri-wallpapers-16.04 mate-backgrounds >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      lomiri-wallpapers-16.04 mate-backgrounds >/dev/null) \
      || echo "note: could not install the wallpaper photo packages; demo data will use fewer photos"
  fi
  if [[ ",${extras}," == *,dev,* ]] && ! command -v chromium >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "note: could not install chromium; the browser test of ganlab serve will be skipped"
  fi
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[${extras}]"
