"""Stage 1 of the NanoDet conversion: TF.js graph model -> frozen GraphDef -> ONNX.

Runs in a throwaway virtualenv with tensorflow-cpu 2.20 and tf2onnx 1.17 (see
scripts/convert-models). Reads the TF.js weights manifest directly (no `tensorflowjs`
package): float16-quantised weights are widened to float32, int32 tensors whose graph
node says int64 are widened back to int64.

It also runs the frozen graph in TensorFlow on a fixed random input and saves input and
outputs to REF.npz, so stage 2 can prove the ONNX and TorchScript files compute the same.

usage: python nanodet_tf2onnx.py MODEL.json OUT.onnx REF.npz
"""
import json
import os
import sys

import numpy as np
import onnx
import tensorflow as tf
import tf2onnx
from google.protobuf import json_format

# TF.js output names (from the model signature) -> the names Argus uses.
OUTPUTS = {
    "Identity:0": "cls_s8",
    "Identity_1:0": "cls_s16",
    "Identity_2:0": "cls_s32",
    "Identity_3:0": "reg_s8",
    "Identity_4:0": "reg_s16",
    "Identity_5:0": "reg_s32",
}
TF_TO_NP = {"DT_FLOAT": np.float32, "DT_INT32": np.int32, "DT_INT64": np.int64, "DT_BOOL": np.bool_}


def read_weights(model_dir, manifest):
    """Yield (name, ndarray) for every weight in the manifest, in file order."""
    for group in manifest:
        blob = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = spec["shape"]
            count = int(np.prod(shape)) if shape else 1
            quant = spec.get("quantization")
            if quant:
                if quant["dtype"] != "float16":
                    raise SystemExit(f"unsupported quantisation {quant} for {spec['name']}")
                raw = np.frombuffer(blob, np.float16, count, offset)
                offset += count * 2
                arr = raw.astype(np.float32)
            else:
                dtype = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}[spec["dtype"]]
                arr = np.frombuffer(blob, dtype, count, offset)
                offset += count * np.dtype(dtype).itemsize
            yield spec["name"], arr.reshape(shape)
        if offset != len(blob):
            raise SystemExit(f"weights not fully consumed: {offset} of {len(blob)} bytes")


def tf_reference(graph_def, ref_npz):
    """Run the original graph in TensorFlow on a seeded input; save input and outputs."""
    x = np.random.default_rng(416).standard_normal((1, 3, 416, 416)).astype(np.float32)
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            outs = sess.run(list(OUTPUTS), {"input_1:0": x})
    np.savez(ref_npz, images=x, **{OUTPUTS[k]: v for k, v in zip(OUTPUTS, outs)})
    print(f"wrote TensorFlow reference outputs to {ref_npz}")


def main(model_json, out_onnx, ref_npz):
    model_dir = os.path.dirname(model_json)
    doc = json.load(open(model_json))
    graph_def = json_format.ParseDict(doc["modelTopology"], tf.compat.v1.GraphDef())
    nodes = {n.name: n for n in graph_def.node}
    filled = 0
    for name, arr in read_weights(model_dir, doc["weightsManifest"]):
        node = nodes[name]
        want = node.attr["dtype"].type
        np_dtype = tf.dtypes.as_dtype(want).as_numpy_dtype
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(arr.astype(np_dtype), shape=arr.shape))
        filled += 1
    consts = [n for n in graph_def.node if n.op == "Const"]
    missing = [n.name for n in consts if not n.attr["value"].tensor.dtype]
    if missing:
        raise SystemExit(f"constants without values: {missing[:5]}")
    print(f"filled {filled} of {len(consts)} constants from the manifest")
    tf_reference(graph_def, ref_npz)

    model_proto, _ = tf2onnx.convert.from_graph_def(
        graph_def,
        input_names=["input_1:0"],
        output_names=list(OUTPUTS),
        opset=13,
    )
    graph = model_proto.graph
    rename = dict(OUTPUTS)
    rename["input_1:0"] = "images"
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        node.output[:] = [rename.get(o, o) for o in node.output]
    for vi in list(graph.input) + list(graph.output):
        vi.name = rename.get(vi.name, vi.name)
    # Outputs in Argus order: cls_s8, cls_s16, cls_s32, reg_s8, reg_s16, reg_s32.
    order = {v: i for i, v in enumerate(OUTPUTS.values())}
    outs = sorted(graph.output, key=lambda vi: order[vi.name])
    del graph.output[:]
    graph.output.extend(outs)
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, out_onnx)
    print(f"wrote {out_onnx}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
