"""Independent numpy reference for Argus's YOLO head decode + class-aware NMS.

Generates synthetic head tensors (seeded) in both export layouts and writes them, with
the detections this reference computes, to tests/fixtures/yolo_decode_reference.json.
The Rust test decodes the same tensors and must agree.

  v5 layout [1, N, 5 + C]: cx, cy, w, h, objectness, class probs; score = obj * cls
  v8 layout [1, 4 + C, N]: cx, cy, w, h, class scores;           score = cls

usage: python3 scripts/reference/yolo_decode.py [OUT.json]
"""
import json
import sys

import numpy as np
from refcommon import nms_per_class

C = 3
N = 60
THR = 0.3
IOU = 0.45
SIZE = 320.0


def synth(rng):
    # Clusters of overlapping boxes so that NMS has work to do.
    centres = rng.uniform(40, SIZE - 40, size=(6, 2))
    idx = rng.integers(0, 6, size=N)
    cxcy = centres[idx] + rng.normal(0, 4, size=(N, 2))
    wh = rng.uniform(20, 80, size=(N, 2))
    obj = rng.uniform(0, 1, size=N)
    cls = rng.uniform(0, 1, size=(N, C))
    return cxcy, wh, obj, cls


def decode(cxcy, wh, scores):
    out = []
    for i in range(N):
        x1, y1 = cxcy[i] - wh[i] / 2
        x2, y2 = cxcy[i] + wh[i] / 2
        for c in range(C):
            s = float(scores[i, c])
            if s > THR:
                out.append({"class_id": c, "score": s, "bbox": [float(x1), float(y1), float(x2), float(y2)]})
    return nms_per_class(out, IOU)


def main(out_path):
    rng = np.random.default_rng(2026)
    cxcy, wh, obj, cls = synth(rng)
    cxcy, wh, obj, cls = (a.astype(np.float32) for a in (cxcy, wh, obj, cls))
    v5 = np.concatenate([cxcy, wh, obj[:, None], cls], axis=1)  # [N, 5 + C]
    v5_scores = (obj[:, None] * cls).astype(np.float32)
    v8 = np.concatenate([cxcy, wh, cls], axis=1).T  # [4 + C, N]
    doc = {
        "num_classes": C,
        "threshold": THR,
        "nms_iou": IOU,
        "v5": {"shape": [1, N, 5 + C], "data": v5.ravel().tolist(), "expected": decode(cxcy, wh, v5_scores)},
        "v8": {"shape": [1, 4 + C, N], "data": v8.ravel().tolist(), "expected": decode(cxcy, wh, cls)},
    }
    with open(out_path, "w") as f:
        json.dump(doc, f)
    print(f"wrote {out_path}: v5 {len(doc['v5']['expected'])} boxes, v8 {len(doc['v8']['expected'])} boxes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/yolo_decode_reference.json")
