"""The baseline a user would write instead of Argus: a plain Python loop over a video
with OpenCV decoding, ONNX Runtime running NanoDet, and OpenCV's NMS. `argus bench`
runs it in the same run as Argus and prints Argus's figures against it (speed, and peak
resident memory, which the parent reads from the child's rusage).

It does the same work per frame as Argus's detector stage, written the way the models'
users write it: letterbox to 416x416 (cv2.resize, INTER_LINEAR), BGR mean/std
normalisation, one session.run, NanoDet's GFL decode in numpy, class-aware NMS
(cv2.dnn.NMSBoxesBatched), boxes mapped back to the frame.

usage: python3 python_loop.py MODEL VIDEO [--threads N] [--frames N] [--threshold T]
prints one JSON line: {"frames", "seconds", "fps", "detections", "onnxruntime", "opencv"}
(needs numpy, onnxruntime and opencv-python-headless: .deps/pyenv, scripts/setup)
"""
import argparse
import json
import time

import cv2
import numpy as np
import onnxruntime as ort

SIZE = 416
STRIDES = (8, 16, 32)
REG_MAX = 10
MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)


def letterbox(bgr):
    h, w = bgr.shape[:2]
    scale = min(SIZE / w, SIZE / h)
    nw, nh = int(round(w * scale)), int(round(h * scale))
    ox, oy = (SIZE - nw) // 2, (SIZE - nh) // 2
    canvas = np.zeros((SIZE, SIZE, 3), dtype=np.float32)
    canvas[oy:oy + nh, ox:ox + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    canvas[oy:oy + nh, ox:ox + nw] -= MEAN_BGR
    canvas[oy:oy + nh, ox:ox + nw] /= STD_BGR
    canvas[:oy] = canvas[oy + nh:] = canvas[:, :ox] = canvas[:, ox + nw:] = 0.0
    return canvas.transpose(2, 0, 1)[None].copy(), scale, ox, oy


def decode(outputs, threshold):
    boxes, scores, classes = [], [], []
    for s in STRIDES:
        cls = outputs[f"cls_s{s}"][0]
        reg = outputs[f"reg_s{s}"][0]
        cells, cids = np.nonzero(cls > threshold)
        if len(cells) == 0:
            continue
        g = -(-SIZE // s)
        logits = reg[cells].reshape(-1, 4, REG_MAX + 1)
        p = np.exp(logits - logits.max(axis=2, keepdims=True))
        p /= p.sum(axis=2, keepdims=True)
        dist = (p * np.arange(REG_MAX + 1, dtype=np.float32)).sum(axis=2) * s
        cx, cy = (cells % g + 0.5) * s, (cells // g + 0.5) * s
        x0, y0 = cx - dist[:, 0], cy - dist[:, 1]
        x1, y1 = cx + dist[:, 2], cy + dist[:, 3]
        boxes.append(np.stack([x0, y0, x1 - x0, y1 - y0], axis=1))
        scores.append(cls[cells, cids])
        classes.append(cids)
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int)
    return np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("video")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=0.35)
    ap.add_argument("--nms-iou", type=float, default=0.6)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    input_name = sess.get_inputs()[0].name
    cap = cv2.VideoCapture(args.video)
    if not cap.isOpened():
        raise SystemExit(f"cannot open {args.video}")
    frames = detections = 0
    start = time.perf_counter()
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        x, scale, ox, oy = letterbox(bgr)
        outputs = dict(zip(names, sess.run(None, {input_name: x})))
        boxes, scores, classes = decode(outputs, args.threshold)
        keep = cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), args.threshold, args.nms_iou) if len(scores) else []
        h, w = bgr.shape[:2]
        for i in np.array(keep).reshape(-1):
            bx, by, bw, bh = boxes[i]
            x0, y0 = max((bx - ox) / scale, 0.0), max((by - oy) / scale, 0.0)
            x1, y1 = min((bx + bw - ox) / scale, w), min((by + bh - oy) / scale, h)
            if x1 > x0 and y1 > y0:
                detections += 1
        frames += 1
        if args.frames and frames >= args.frames:
            break
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": frames, "seconds": round(seconds, 3), "fps": round(frames / seconds, 2), "detections": detections,
                      "onnxruntime": ort.__version__, "opencv": cv2.__version__}))


if __name__ == "__main__":
    main()
