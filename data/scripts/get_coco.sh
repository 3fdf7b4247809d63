#!/bin/bash
# Download COCO 2017 in YOLO layout: labels (converted to YOLO txt, from the YOLOv5 v1.0 release assets) and
# images (from cocodataset.org). About 20 GB; needs curl and unzip.
#
#   bash data/scripts/get_coco.sh                 # everything
#   bash data/scripts/get_coco.sh --val           # only what you ask for: --train --val --test
#   COCO_PARENT=/data bash data/scripts/get_coco.sh
#
# Result, next to the repository by default (the layout data/coco.yaml expects):
#   ../coco/{images,labels}/{train2017,val2017,test2017}, ../coco/{train2017,val2017,test-dev2017}.txt
set -euo pipefail

parent="${COCO_PARENT:-..}"
labels_url="https://github.com/ultralytics/yolov5/releases/download/v1.0/coco2017labels.zip"
images_url="http://images.cocodataset.org/zips"

want_train=0 want_val=0 want_test=0
if [ $# -eq 0 ]; then want_train=1 want_val=1 want_test=1; fi
for arg in "$@"; do
  case "$arg" in
    --train) want_train=1 ;;
    --val) want_val=1 ;;
    --test) want_test=1 ;;
    *) echo "get_coco.sh: unknown option '$arg' (use --train, --val, --test)" >&2; exit 2 ;;
  esac
done

fetch_unzip() {  # url destination_dir
  local url="$1" dest="$2" tmp
  mkdir -p "$dest"
  tmp="$(mktemp "$dest/.download.XXXXXX.zip")"
  echo "Downloading $url ..."
  curl -fL --retry 3 -o "$tmp" "$url"
  unzip -q -o "$tmp" -d "$dest"
  rm -f "$tmp"
}

fetch_unzip "$labels_url" "$parent"  # creates $parent/coco/{labels,*.txt,annotations}
[ "$want_train" = 1 ] && fetch_unzip "$images_url/train2017.zip" "$parent/coco/images"
[ "$want_val" = 1 ] && fetch_unzip "$images_url/val2017.zip" "$parent/coco/images"
[ "$want_test" = 1 ] && fetch_unzip "$images_url/test2017.zip" "$parent/coco/images"
echo "COCO ready in $parent/coco"
