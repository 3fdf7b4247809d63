#!/bin/bash
# Download PASCAL VOC 2007 + 2012 and convert it to YOLO layout. About 2.8 GB; needs curl, unzip and python.
#
#   bash data/scripts/get_voc.sh
#   VOC_PARENT=/data bash data/scripts/get_voc.sh
#
# Result, next to the repository by default (the layout data/voc.yaml expects):
#   ../VOC/images/train  (VOC2007 trainval + VOC2012 trainval)   ../VOC/images/val  (VOC2007 test)
#   ../VOC/labels/{train,val}
set -euo pipefail

parent="${VOC_PARENT:-..}"
base="https://github.com/ultralytics/yolov5/releases/download/v1.0"
python="${PYTHON:-python}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
raw="$parent/VOC_raw"

mkdir -p "$raw"
for f in VOCtrainval_06-Nov-2007.zip VOCtest_06-Nov-2007.zip VOCtrainval_11-May-2012.zip; do
  if [ ! -f "$raw/$f.done" ]; then
    echo "Downloading $base/$f ..."
    curl -fL --retry 3 -o "$raw/$f" "$base/$f"
    unzip -q -o "$raw/$f" -d "$raw"
    rm -f "$raw/$f"
    touch "$raw/$f.done"
  fi
done

"$python" "$here/voc2yolo.py" --voc "$raw" --out "$parent/VOC" \
  --split train=VOC2007:trainval,VOC2012:trainval --split val=VOC2007:test
echo "VOC ready in $parent/VOC (raw files kept in $raw; delete them to save space)"
