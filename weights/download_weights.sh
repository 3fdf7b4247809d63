#!/usr/bin/env bash
# Download the official YOLOv5 v5.0 weights (GitHub release assets) into this directory.
#
# Usage:  bash weights/download_weights.sh                 # yolov5s/m/l/x.pt
#         bash weights/download_weights.sh yolov5s6 yolov5m   # chosen models (P6: yolov5{s,m,l,x}6)
# Env:    YOLOV5_RELEASE (default v5.0), YOLOV5_WEIGHTS_URL (base URL replacing the GitHub release one),
#         YOLOV5_WEIGHTS_DIR (destination, default: this directory)
#
# Each file is fetched to '<name>.pt.part' and renamed only when complete, so an interrupted or failed download
# leaves no '<name>.pt' behind. Existing files are kept. Needs curl or wget.
set -u

dest="${YOLOV5_WEIGHTS_DIR:-$(dirname "$0")}"
mkdir -p "$dest" && cd "$dest" || exit 1
release="${YOLOV5_RELEASE:-v5.0}"
base="${YOLOV5_WEIGHTS_URL:-https://github.com/ultralytics/yolov5/releases/download/${release}}"
base="${base%/}"
models=("$@")
[ ${#models[@]} -eq 0 ] && models=(yolov5s yolov5m yolov5l yolov5x)

if command -v curl >/dev/null 2>&1; then
  fetch() { curl -fL --retry 2 --progress-bar -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  fetch() { wget -q --show-progress --tries=3 -O "$2" "$1"; }
else
  echo "ERROR: neither curl nor wget found; download ${base}/<name>.pt by hand into $(pwd)/" >&2
  exit 1
fi

status=0
for m in "${models[@]}"; do
  name="${m%.pt}.pt"
  case "$name" in
    yolov5[smlx].pt | yolov5[smlx]6.pt) ;;
    *) echo "ERROR: '$m' is not an official model (yolov5{s,m,l,x} or yolov5{s,m,l,x}6)" >&2; status=1; continue ;;
  esac
  if [ -s "$name" ]; then
    echo "$name exists, skipping"
    continue
  fi
  url="${base}/${name}"
  echo "Downloading ${url} to $(pwd)/${name}"
  if fetch "$url" "${name}.part" && [ -s "${name}.part" ]; then
    mv -f "${name}.part" "$name"
  else
    rm -f "${name}.part"
    echo "ERROR: download of ${url} failed; no file was written to $(pwd)/${name}." \
         "Download it by hand (browser) and pass its path with --weights." >&2
    status=1
  fi
done
exit $status
