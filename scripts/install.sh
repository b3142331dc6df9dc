#!/usr/bin/env bash
# Install ganlab on a fresh machine: CPU PyTorch pinned first (a plain `torch` requirement would pull a
# multi-GB CUDA build), then the package with the extras given as $1 (default: demo).
# Where apt is available (and we are root), also the two Debian wallpaper packages whose photos enrich the
# built-in demo data; without them the demo data still builds from the Python-package photos.
set -euo pipefail
extras="${1:-demo}"
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s lomiri-wallpapers-16.04 mate-backgrounds >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      lomiri-wallpapers-16.04 mate-backgrounds >/dev/null) \
      || echo "note: could not install the wallpaper photo packages; demo data will use fewer photos"
  fi
fi
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[${extras}]"
