"""Independent reference for the NanoDet path: the committed models/nanodet.onnx run in
Python onnxruntime, with pre-processing and the GFL decode written here in numpy from
the model's contract (models/README.md) and NanoDet v0.x's head definition, not from
Argus's Rust code:

- input 416x416, BGR, letterboxed: scaled by min(416/w, 416/h) (size rounded half up),
  centred on a 0-filled canvas (integer offsets), bilinear resize with half-pixel
  centres (OpenCV INTER_LINEAR, which NanoDet's own pipeline uses), then
  (pixel - mean) / std per channel, mean (103.53, 116.28, 123.675), std (57.375, 57.12,
  58.395) in B, G, R order;
- outputs cls_s8/16/32 [1, H*W, 80] (class scores, already sigmoid) and reg_s8/16/32
  [1, H*W, 4*(reg_max+1)] with reg_max 10: per side (left, top, right, bottom) a
  distribution over distances 0..10 in units of the stride; the distance is its
  expectation (softmax, then sum of i * p_i). Cells are row-major over a ceil(416/s)
  grid, centred at ((col + 0.5) * s, (row + 0.5) * s) (NanoDet v0.x
  get_single_level_center_point); boxes are clipped to the input;
- every (cell, class) scoring above the threshold is a candidate; class-aware NMS
  (refcommon.nms_per_class), at most max_detections kept; boxes mapped back to original
  pixels ((v - offset) / scale) and clipped to the image; a box with no area left
  (wholly in the padding) is dropped.

usage: python nanodet_reference.py MANIFEST.json OUT.json
MANIFEST: {"model": path, "threshold": t, "nms_iou": i, "max_detections": n,
           "images": [{"name", "width", "height", "rgb": path of raw RGB bytes}]}
OUT: {"onnxruntime": version, "images": {name: [{"class_id", "score", "bbox"}]}}
(needs numpy and onnxruntime: .deps/pyenv, scripts/setup)
"""
import json
import math
import sys

import numpy as np
import onnxruntime as ort
from refcommon import nms_per_class

SIZE = 416
STRIDES = [8, 16, 32]
REG_MAX = 10
NUM_CLASSES = 80
MEAN_BGR = np.array([103.53, 116.28, 123.675])
STD_BGR = np.array([57.375, 57.12, 58.395])


def bilinear(img, out_w, out_h):
    """img: [h, w, c] float64 -> [out_h, out_w, c], half-pixel centres, edges clamped."""
    h, w = img.shape[:2]

    def taps(src, dst):
        s = (np.arange(dst) + 0.5) * (src / dst) - 0.5
        s = np.maximum(s, 0.0)
        i0 = np.minimum(np.floor(s).astype(int), src - 1)
        i1 = np.minimum(i0 + 1, src - 1)
        return i0, i1, s - i0

    y0, y1, fy = taps(h, out_h)
    x0, x1, fx = taps(w, out_w)
    fx = fx[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy[:, None, None]) + bottom * fy[:, None, None]


def preprocess(rgb):
    h, w = rgb.shape[:2]
    scale = min(SIZE / w, SIZE / h)
    nw = min(max(int(math.floor(w * scale + 0.5)), 1), SIZE)
    nh = min(max(int(math.floor(h * scale + 0.5)), 1), SIZE)
    ox, oy = (SIZE - nw) // 2, (SIZE - nh) // 2
    bgr = rgb[:, :, ::-1].astype(np.float64)
    canvas = np.zeros((SIZE, SIZE, 3))
    canvas[oy:oy + nh, ox:ox + nw] = bilinear(bgr, nw, nh)
    x = (canvas - MEAN_BGR) / STD_BGR
    return x.transpose(2, 0, 1)[None].astype(np.float32), scale, ox, oy


def decode(outputs, threshold):
    """outputs: name -> array. Candidates in input pixels."""
    cands = []
    for s in STRIDES:
        cls = outputs[f"cls_s{s}"][0]
        reg = outputs[f"reg_s{s}"][0]
        gw = gh = -(-SIZE // s)
        assert cls.shape == (gw * gh, NUM_CLASSES) and reg.shape == (gw * gh, 4 * (REG_MAX + 1)), (s, cls.shape, reg.shape)
        cells, classes = np.nonzero(cls > threshold)
        if len(cells) == 0:
            continue
        logits = reg.astype(np.float64).reshape(-1, 4, REG_MAX + 1)
        p = np.exp(logits - logits.max(axis=2, keepdims=True))
        p /= p.sum(axis=2, keepdims=True)
        dist = (p * np.arange(REG_MAX + 1)).sum(axis=2) * s  # [cells, 4]: l, t, r, b
        col = np.arange(gw * gh) % gw
        row = np.arange(gw * gh) // gw
        cx, cy = (col + 0.5) * s, (row + 0.5) * s
        boxes = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], axis=1).clip(0, SIZE)
        for n, c in zip(cells, classes):
            cands.append({"class_id": int(c), "score": float(cls[n, c]), "bbox": [float(v) for v in boxes[n]]})
    return cands


def main():
    manifest = json.load(open(sys.argv[1]))
    sess = ort.InferenceSession(manifest["model"], providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    result = {}
    for im in manifest["images"]:
        w, h = im["width"], im["height"]
        rgb = np.fromfile(im["rgb"], dtype=np.uint8).reshape(h, w, 3)
        x, scale, ox, oy = preprocess(rgb)
        outputs = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
        kept = nms_per_class(decode(outputs, manifest["threshold"]), manifest["nms_iou"])[: manifest["max_detections"]]
        dets = []
        for k in kept:
            b = k["bbox"]
            k["bbox"] = [
                min(max((b[0] - ox) / scale, 0.0), w),
                min(max((b[1] - oy) / scale, 0.0), h),
                min(max((b[2] - ox) / scale, 0.0), w),
                min(max((b[3] - oy) / scale, 0.0), h),
            ]
            if k["bbox"][2] > k["bbox"][0] and k["bbox"][3] > k["bbox"][1]:
                dets.append(k)
        result[im["name"]] = dets
    json.dump({"onnxruntime": ort.__version__, "images": result}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
