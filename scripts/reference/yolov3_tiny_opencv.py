"""Independent reference for YOLOv3-tiny: OpenCV's own Darknet reader (cv2.dnn).

1. Runs the original cfg + weights through cv2.dnn and Argus's converted ONNX through
   onnxruntime on the same blobs, and checks the decoded tensors agree.
2. Writes tests/fixtures/yolov3_tiny_opencv.json: the detections OpenCV's output gives on
   darknet's sample images (plain resize, RGB / 255, score = objectness × class
   probability, class-aware NMS), in original image pixels. The Rust tests compare
   Argus's detections on both backends with these.

usage: python yolov3_tiny_opencv.py CFG WEIGHTS MODEL.onnx [OUT.json]
(needs opencv-python-headless<5, onnxruntime, numpy)
"""
import json
import sys

import cv2
import numpy as np
import onnxruntime as ort
from refcommon import nms_per_class

IMAGES = ["dog.jpg", "person.jpg", "kite.jpg", "horses.jpg", "giraffe.jpg", "eagle.jpg"]
SAMPLES = "/usr/share/darknet/data"
THR = 0.3
IOU = 0.45
SIZE = 416


def detections(rows, w, h):
    """rows: [N, 85] with cx, cy, bw, bh in input pixels, obj, class probs."""
    cands = []
    for r in rows:
        obj = r[4]
        for c in np.nonzero(obj * r[5:] > THR)[0]:
            s = float(obj * r[5 + c])
            x1, y1 = r[0] - r[2] / 2, r[1] - r[3] / 2
            x2, y2 = r[0] + r[2] / 2, r[1] + r[3] / 2
            sx, sy = SIZE / w, SIZE / h
            box = [min(max(x1 / sx, 0), w), min(max(y1 / sy, 0), h), min(max(x2 / sx, 0), w), min(max(y2 / sy, 0), h)]
            cands.append({"class_id": int(c), "score": s, "bbox": [float(v) for v in box]})
    return nms_per_class(cands, IOU)


def main(cfg, weights, model, out="tests/fixtures/yolov3_tiny_opencv.json"):
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    doc = {"threshold": THR, "nms_iou": IOU, "images": {}}
    worst_box, worst_score = 0.0, 0.0
    for name in IMAGES:
        bgr = cv2.imread(f"{SAMPLES}/{name}")
        h, w = bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(bgr, 1 / 255.0, (SIZE, SIZE), swapRB=True, crop=False)
        net.setInput(blob)
        cv_outs = net.forward(net.getUnconnectedOutLayersNames())
        ours = sess.run(None, {"images": blob})[0][0]  # [2535, 85], (anchor, row, col) order
        # OpenCV orders each head (row, col, anchor) with normalised boxes and
        # class scores already multiplied by objectness.
        ref_rows = []
        for head, g in zip(cv_outs, [13, 26]):
            o = head.reshape(g, g, 3, 85).transpose(2, 0, 1, 3).reshape(-1, 85).copy()
            o[:, :4] *= SIZE
            ref_rows.append(o)
        ref = np.concatenate(ref_rows)
        box_diff = np.abs(ref[:, :5] - ours[:, :5]).max()
        ours_scores = ours[:, 4:5] * ours[:, 5:]
        mask = ref[:, 5:] > 0  # OpenCV zeroes scores below the cfg's own threshold
        score_diff = np.abs(ref[:, 5:][mask] - ours_scores[mask]).max() if mask.any() else 0.0
        worst_box, worst_score = max(worst_box, float(box_diff)), max(worst_score, float(score_diff))
        # Reference detections from OpenCV's tensor (probabilities recovered from its
        # products: p = score / objectness).
        rows = ref.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            rows[:, 5:] = np.where(ref[:, 4:5] > 0, ref[:, 5:] / ref[:, 4:5], 0)
        dets = detections(rows, w, h)
        doc["images"][name] = dets
        print(f"{name}: max |ONNX - OpenCV| box/obj {box_diff:.2e}, score {score_diff:.2e}; {len(dets)} detections")
    # Boxes are in input pixels (up to ~416): float32 rounding of exp(t) × anchor in two
    # implementations differs by a few hundredths of a pixel.
    if worst_box > 0.05 or worst_score > 1e-3:
        raise SystemExit(f"ONNX and OpenCV disagree: boxes by {worst_box} px, scores by {worst_score}")
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
