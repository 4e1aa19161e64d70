"""ONNX -> TorchScript (onnx2torch + torch.jit.trace), checked against onnxruntime.

usage: python onnx2torchscript.py IN.onnx OUT.torchscript.pt
The input is `images` [1, 3, H, W]; the check feeds a seeded uniform [0, 1) image and
requires every output to agree within 1e-4 (relative to each output's magnitude).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx2torch import convert


def main(src, dst):
    model = onnx.load(src)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(7).random(dims, dtype=np.float32)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"images": x})
    net = convert(model).eval()
    with torch.no_grad():
        traced = torch.jit.freeze(torch.jit.trace(net, torch.from_numpy(x), check_trace=False))
        outs = traced(torch.from_numpy(x))
    if isinstance(outs, torch.Tensor):
        outs = [outs]
    for i, (a, b) in enumerate(zip(ref, outs)):
        b = b.numpy()
        scale = max(1.0, float(np.abs(a).max()))
        diff = float(np.abs(a - b).max())
        print(f"output {i} {list(a.shape)}: max |ORT - TorchScript| = {diff:.2e} (scale {scale:.1f})")
        if a.shape != b.shape or diff > 1e-4 * scale:
            raise SystemExit(f"output {i} differs: shape {a.shape} vs {b.shape}, diff {diff}")
    traced.save(dst)
    print(f"wrote {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
