"""Stage 2 of the NanoDet conversion: raw ONNX -> folded ONNX + TorchScript, verified.

Runs in a throwaway virtualenv with torch 2.13.0, onnx2torch 1.5.15 and onnxruntime.
1. Folds each constant-zero Pad that feeds a Conv into the Conv's own `pads` attribute
   (and a Pad feeding a MaxPool when its fill value cannot win the max), which removes a
   copy of every activation tensor. The graph computes the same function.
2. Converts with onnx2torch and traces with torch.jit.trace (6-tuple output, same order).
3. Checks TensorFlow reference == raw ONNX == folded ONNX == TorchScript within 1e-4 abs.

usage: python nanodet_onnx2torch.py RAW.onnx REF.npz OUT.onnx OUT.torchscript.pt
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from onnx2torch import convert

NAMES = ["cls_s8", "cls_s16", "cls_s32", "reg_s8", "reg_s16", "reg_s32"]


def const_value(graph, name):
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return numpy_helper.to_array(node.attribute[0].t)
    return None


def fold_pads(model):
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    folded, removed = 0, []
    for pad in list(graph.node):
        if pad.op_type != "Pad":
            continue
        mode = next((a.s.decode() for a in pad.attribute if a.name == "mode"), "constant")
        pads = const_value(graph, pad.input[1])
        fill = const_value(graph, pad.input[2]) if len(pad.input) > 2 and pad.input[2] else np.zeros(())
        users = consumers.get(pad.output[0], [])
        if mode != "constant" or pads is None or fill is None or len(users) != 1:
            continue
        if pad.output[0] in graph_outputs:
            continue
        user = users[0]
        pads = [int(p) for p in pads]  # [n0,c0,h0,w0, n1,c1,h1,w1]
        if pads[0] or pads[1] or pads[4] or pads[5]:
            continue
        fill = float(np.asarray(fill).reshape(()))
        if user.op_type == "Conv" and fill == 0.0:
            pass
        elif user.op_type == "MaxPool" and fill == float("-inf"):
            pass
        else:
            continue
        attrs = {a.name: a for a in user.attribute}
        if "auto_pad" in attrs and attrs["auto_pad"].s not in (b"NOTSET", b""):
            continue
        old = list(attrs["pads"].ints) if "pads" in attrs else [0, 0, 0, 0]
        new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
        if "pads" in attrs:
            user.attribute.remove(attrs["pads"])
        user.attribute.append(onnx.helper.make_attribute("pads", new))
        user.input[0] = pad.input[0]
        removed.append(pad)
        folded += 1
    for node in removed:
        graph.node.remove(node)
    return folded


def run_onnx(path, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"images": x})))


def compare(label, got, ref, tol=1e-4):
    worst = max(float(np.abs(got[n] - ref[n]).max()) for n in NAMES)
    print(f"{label}: max |diff| = {worst:.2e}")
    if worst > tol:
        raise SystemExit(f"{label} differs from the reference by {worst} > {tol}")


def main(raw_onnx, ref_npz, out_onnx, out_pt):
    ref = np.load(ref_npz)
    x = ref["images"]
    raw = run_onnx(raw_onnx, x)
    compare("raw ONNX vs TensorFlow", raw, ref)

    model = onnx.load(raw_onnx)
    n = fold_pads(model)
    onnx.checker.check_model(model)
    model.producer_name = "argus scripts/convert-models"
    onnx.save(model, out_onnx)
    ops = sorted({node.op_type for node in model.graph.node})
    print(f"folded {n} Pad ops into Conv/MaxPool; ops now: {ops}")
    folded = run_onnx(out_onnx, x)
    compare("folded ONNX vs TensorFlow", folded, ref)

    torch.manual_seed(0)
    net = convert(onnx.load(out_onnx)).eval()
    with torch.no_grad():
        traced = torch.jit.trace(net, torch.from_numpy(x), check_trace=False)
        traced = torch.jit.freeze(traced)
        outs = traced(torch.from_numpy(x))
    got = {name: t.numpy() for name, t in zip(NAMES, outs)}
    compare("TorchScript vs TensorFlow", got, ref)
    traced.save(out_pt)
    print(f"wrote {out_onnx} and {out_pt}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
