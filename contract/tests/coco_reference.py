"""COCO box mAP by pycocotools (PyPI), the reference of contract/tests/coco_reference.rs.

Reads {"images": n, "classes": k, "truths": [[image, label, x, y, w, h], ...],
"detections": [[image, label, score, x, y, w, h], ...]} on stdin and prints
`stats[1] stats[0]` (mAP@0.5, mAP@[.5:.95]) of COCOeval on them."""
import contextlib
import io
import json
import sys

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

case = json.load(sys.stdin)
gt = {
    "images": [{"id": i + 1, "width": 1000, "height": 1000} for i in range(case["images"])],
    "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(case["classes"])],
    "annotations": [
        {"id": n + 1, "image_id": t[0] + 1, "category_id": t[1] + 1, "bbox": t[2:],
         "area": t[4] * t[5], "iscrowd": 0}
        for n, t in enumerate(case["truths"])
    ],
}
with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    dets = coco.loadRes([
        {"image_id": d[0] + 1, "category_id": d[1] + 1, "score": d[2], "bbox": d[3:]}
        for d in case["detections"]
    ])
    e = COCOeval(coco, dets, "bbox")
    e.evaluate()
    e.accumulate()
    e.summarize()
print(f"{float(e.stats[1])!r} {float(e.stats[0])!r}")
