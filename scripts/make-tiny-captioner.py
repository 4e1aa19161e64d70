#!/usr/bin/env python3
"""Builds a tiny captioning model for Argus's tests, and decodes it with numpy.

usage: make-tiny-captioner.py OUT_DIR

Writes, into OUT_DIR:
  captioner.onnx   the model (contract: docs/captioner.md): inputs `image` float32
                   [1,3,32,32] (RGB 0..1) and `tokens` int64 [1,T]; output `logits`
                   float32 [1,T,V]. Deterministic weights (numpy seed), no training:
                   image → 4x4 average pool → linear + tanh; token embedding + position;
                   a causal running mean as the (attention-free) mixer; MLP; output
                   projection plus an image term, a per-position bias that favours
                   <eos> as the text grows and a penalty on repeating the last token.
  tokenizer.json   the vocabulary (argus.tokenizer.v1)
  cases.json       test images (raw RGB), prompts, crop rectangles and what greedy
                   decoding of this model gives for them, computed here with numpy only
                   (the reference the Rust decoder must match exactly)

Only numpy and onnx are needed (scripts/setup's .deps/pyenv).
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 32        # model input side
GRID = 4         # image pooled to GRID x GRID
DIM = 24         # hidden width
MAX_POS = 48     # positions the model knows (prompt + generated)
MAX_TOKENS = 12  # generation budget used for the reference cases

VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>",
         "describe", "the", "scene", "what", "is", "happening", "a", "an", "person",
         "people", "car", "truck", "near", "in", "inside", "zone", "gate", "red", "green",
         "blue", "dark", "bright", "walk", "stand", "##ing", "##s", "##ed", "fast",
         "slow", "danger", "safe", "yard", "at", "night", "day", "two", "one", ".", ",",
         "!", "?", "crowd", "fork", "##lift"]
SPECIAL = {"bos": "<bos>", "eos": "<eos>", "pad": "<pad>", "unk": "<unk>"}
PUNCT = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
GLUE = set(".,!?;:")


# ---------------------------------------------------------------- tokenizer (mirror of
# src/caption/model/tokenizer.rs: ASCII lowercasing, whitespace split, ASCII punctuation
# as separate pieces, greedy longest-match word pieces with "##" continuations)

def ascii_lower(s):
    return "".join(c.lower() if "A" <= c <= "Z" else c for c in s)


def pieces(word):
    out, cur = [], ""
    for ch in word:
        if ch in PUNCT:
            if cur:
                out.append(cur)
                cur = ""
            out.append(ch)
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def encode(text, ids):
    out = []
    for word in ascii_lower(text).split():
        for piece in pieces(word):
            start, toks = 0, []
            while start < len(piece):
                end = len(piece)
                found = None
                while end > start:
                    sub = piece[start:end] if start == 0 else "##" + piece[start:end]
                    if sub in ids:
                        found = ids[sub]
                        break
                    end -= 1
                if found is None:
                    toks = [ids[SPECIAL["unk"]]]
                    break
                toks.append(found)
                start = end
            out.extend(toks)
    return out


def decode(token_ids):
    skip = {SPECIAL["bos"], SPECIAL["eos"], SPECIAL["pad"]}
    out = ""
    for i in token_ids:
        tok = VOCAB[i]
        if tok in skip:
            continue
        if tok.startswith("##") and len(tok) > 2:
            out += tok[2:]
        elif len(tok) == 1 and tok in GLUE:
            out += tok
        else:
            if out:
                out += " "
            out += tok
    return out


# ---------------------------------------------------------------- image preparation
# (mirror of src/caption/model/image.rs: crop, then area-average resize, RGB / 255)

def prepare(pixels, width, height, crop, size):
    img = np.asarray(pixels, dtype=np.uint8).reshape(height, width, 3)
    x0, y0, x1, y1 = crop if crop is not None else (0, 0, width, height)
    img = img[y0:y1, x0:x1].astype(np.int64)
    h, w = img.shape[:2]
    out = np.zeros((3, size, size), dtype=np.float32)
    for dy in range(size):
        sy0 = dy * h // size
        sy1 = max(sy0 + 1, ((dy + 1) * h + size - 1) // size)
        for dx in range(size):
            sx0 = dx * w // size
            sx1 = max(sx0 + 1, ((dx + 1) * w + size - 1) // size)
            block = img[sy0:sy1, sx0:sx1]
            n = block.shape[0] * block.shape[1]
            sums = block.reshape(-1, 3).sum(axis=0)
            out[:, dy, dx] = (sums.astype(np.float64) / n / 255.0).astype(np.float32)
    return out[None]


# ---------------------------------------------------------------- the model

def weights():
    rng = np.random.default_rng(20261123)
    v = len(VOCAB)
    f = np.float32
    w = {
        "w_img": (rng.standard_normal((3 * GRID * GRID, DIM)) * 0.6).astype(f),
        "b_img": (rng.standard_normal(DIM) * 0.1).astype(f),
        "emb": (rng.standard_normal((v, DIM)) * 0.8).astype(f),
        "pos": (rng.standard_normal((MAX_POS, DIM)) * 0.3).astype(f),
        "w_tok": (rng.standard_normal((DIM, DIM)) * 0.4).astype(f),
        "w_mix": (rng.standard_normal((DIM, DIM)) * 0.4).astype(f),
        "b_hid": (rng.standard_normal(DIM) * 0.1).astype(f),
        "w_out": (rng.standard_normal((DIM, v)) * 1.0).astype(f),
        "b_out": (rng.standard_normal(v) * 0.2).astype(f),
        "w_img_out": (rng.standard_normal((DIM, v)) * 1.5).astype(f),
    }
    # Per-position output bias: nothing worth saying is pad/bos/unk; <eos> grows likelier
    # with length so texts end at different lengths.
    pos_bias = np.zeros((MAX_POS, v), dtype=f)
    pos_bias[:, 0] = -8.0
    pos_bias[:, 1] = -8.0
    pos_bias[:, 3] = -8.0
    pos_bias[:, 2] = np.linspace(-6.0, 40.0, MAX_POS, dtype=f)
    w["pos_bias"] = pos_bias
    # Saying the same token twice in a row is discouraged (a lookup on the current token).
    w["no_repeat"] = (np.eye(v) * -8.0).astype(f)
    return w


def forward(w, image, tokens):
    """Logits [T, V] for one image [1,3,S,S] and token ids, in float32 like the graph."""
    k = SIZE // GRID
    pooled = image.reshape(1, 3, GRID, k, GRID, k).mean(axis=(3, 5), dtype=np.float32)
    f = np.tanh(pooled.reshape(1, -1) @ w["w_img"] + w["b_img"])           # [1, D]
    t = len(tokens)
    h = w["emb"][tokens] + w["pos"][:t] + f                                 # [T, D]
    c = np.cumsum(h, axis=0, dtype=np.float32) / np.arange(1, t + 1, dtype=np.float32)[:, None]
    z = np.tanh(h @ w["w_tok"] + c @ w["w_mix"] + w["b_hid"])
    return z @ w["w_out"] + w["b_out"] + w["pos_bias"][:t] + f @ w["w_img_out"] + w["no_repeat"][tokens]


def greedy(w, image, prompt_ids, eos, max_tokens):
    """Greedy decoding; also the smallest top-1/top-2 gap seen (float noise must not
    be able to flip a choice between numpy and ONNX Runtime)."""
    tokens = list(prompt_ids)
    out, margin = [], float("inf")
    for _ in range(max_tokens):
        last = forward(w, image, tokens)[-1].astype(np.float64)
        order = np.argsort(-last, kind="stable")
        margin = min(margin, float(last[order[0]] - last[order[1]]))
        nxt = int(order[0])
        if nxt == eos:
            break
        out.append(nxt)
        tokens.append(nxt)
    return out, margin


def graph(w):
    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    k = SIZE // GRID
    inits = [numpy_helper.from_array(a, name) for name, a in w.items()]
    inits += [
        numpy_helper.from_array(np.array([1, 3 * GRID * GRID], dtype=np.int64), "flat_shape"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "axis_t"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "ax0"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "ax1"),
    ]
    n = helper.make_node
    nodes = [
        n("AveragePool", ["image"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        n("Reshape", ["pooled", "flat_shape"], ["pooled_flat"]),
        n("MatMul", ["pooled_flat", "w_img"], ["img_lin"]),
        n("Add", ["img_lin", "b_img"], ["img_pre"]),
        n("Tanh", ["img_pre"], ["img_feat"]),                       # [1, D]
        n("Shape", ["tokens"], ["tok_shape"]),
        n("Gather", ["tok_shape", "one"], ["t_len"], axis=0),       # scalar T
        n("Range", ["zero", "t_len", "one"], ["positions"]),        # [T]
        n("Add", ["t_len", "one"], ["t_len1"]),
        n("Range", ["one", "t_len1", "one"], ["counts_i"]),         # 1..T
        n("Cast", ["counts_i"], ["counts_f"], to=f32),
        n("Unsqueeze", ["counts_f", "ax1"], ["counts"]),            # [T, 1]
        n("Gather", ["emb", "tokens"], ["tok_emb"], axis=0),        # [1, T, D]
        n("Gather", ["pos", "positions"], ["pos_emb"], axis=0),     # [T, D]
        n("Add", ["tok_emb", "pos_emb"], ["h0"]),
        n("Add", ["h0", "img_feat"], ["h"]),                         # [1, T, D]
        n("CumSum", ["h", "axis_t"], ["h_cum"]),
        n("Div", ["h_cum", "counts"], ["h_mean"]),                   # causal running mean
        n("MatMul", ["h", "w_tok"], ["a1"]),
        n("MatMul", ["h_mean", "w_mix"], ["a2"]),
        n("Add", ["a1", "a2"], ["a12"]),
        n("Add", ["a12", "b_hid"], ["a_pre"]),
        n("Tanh", ["a_pre"], ["z"]),
        n("MatMul", ["z", "w_out"], ["o1"]),
        n("Add", ["o1", "b_out"], ["o2"]),
        n("Gather", ["pos_bias", "positions"], ["pb"], axis=0),     # [T, V]
        n("Add", ["o2", "pb"], ["o3"]),
        n("MatMul", ["img_feat", "w_img_out"], ["io"]),             # [1, V]
        n("Unsqueeze", ["io", "ax0"], ["io3"]),                     # [1, 1, V]
        n("Add", ["o3", "io3"], ["o4"]),
        n("Gather", ["no_repeat", "tokens"], ["nr"], axis=0),       # [1, T, V]
        n("Add", ["o4", "nr"], ["logits"]),
    ]
    g = helper.make_graph(
        nodes,
        "argus-tiny-captioner",
        [helper.make_tensor_value_info("image", f32, [1, 3, SIZE, SIZE]),
         helper.make_tensor_value_info("tokens", i64, [1, "T"])],
        [helper.make_tensor_value_info("logits", f32, [1, "T", len(VOCAB)])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="argus-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def images():
    """(name, width, height, pixels, crop): flat colours, gradients, a checkerboard, a
    crop of a two-coloured frame, and sizes that are not multiples of the input."""
    out = []

    def flat(name, w, h, rgb):
        px = np.tile(np.array(rgb, dtype=np.uint8), (h, w, 1))
        out.append((name, w, h, px, None))

    flat("red", 40, 30, [220, 20, 30])
    flat("green", 64, 64, [10, 200, 40])
    flat("blue", 33, 47, [30, 60, 210])
    flat("dark", 50, 50, [12, 10, 8])
    yy, xx = np.mgrid[0:45, 0:70]
    grad = np.stack([xx * 255 // 69, yy * 255 // 44, (xx + yy) * 255 // 113], axis=-1).astype(np.uint8)
    out.append(("gradient", 70, 45, grad, None))
    cb = (((yy // 5) + (xx // 5)) % 2 * 255).astype(np.uint8)
    out.append(("checker", 70, 45, np.stack([cb, cb, 255 - cb], axis=-1), None))
    two = np.zeros((60, 80, 3), dtype=np.uint8)
    two[:, :40] = [240, 240, 240]
    two[:, 40:] = [200, 30, 30]
    out.append(("crop-right", 80, 60, two, (44, 10, 78, 50)))
    out.append(("crop-left", 80, 60, two, (0, 0, 37, 59)))
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    dest = sys.argv[1]
    os.makedirs(dest, exist_ok=True)
    w = weights()
    onnx.save(graph(w), os.path.join(dest, "captioner.onnx"))
    tok = {"format": "argus.tokenizer.v1", "lowercase": True, "vocab": VOCAB, **SPECIAL}
    with open(os.path.join(dest, "tokenizer.json"), "w") as fh:
        json.dump(tok, fh, indent=1)

    ids = {t: i for i, t in enumerate(VOCAB)}
    prompts = ["Describe the scene.", "What is happening at the yard?", "", "forklifts walking, FAST!", "A zebra near gate-a"]
    cases = []
    for i, (name, width, height, px, crop) in enumerate(images()):
        prompt = prompts[i % len(prompts)]
        prompt_ids = [ids["<bos>"]] + encode(prompt, ids)
        image = prepare(px.reshape(-1), width, height, crop, SIZE)
        got, margin = greedy(w, image, prompt_ids, ids["<eos>"], MAX_TOKENS)
        if margin < 1e-3:
            sys.exit(f"case {name}: top-1/top-2 gap {margin:g} is too small for an exact comparison; change the case")
        cases.append({
            "name": name, "width": width, "height": height, "pixels": px.reshape(-1).tolist(),
            "crop": list(crop) if crop else None, "prompt": prompt, "prompt_ids": prompt_ids,
            "max_tokens": MAX_TOKENS, "expected_ids": got, "expected_text": decode(got),
            "min_margin": margin,
        })
    doc = {"input_size": SIZE, "cases": cases}
    with open(os.path.join(dest, "cases.json"), "w") as fh:
        json.dump(doc, fh)
    for c in cases:
        print(f"{c['name']:>10}  {c['prompt_ids']} -> {c['expected_ids']}  {c['expected_text']!r}  gap {c['min_margin']:.3f}")


if __name__ == "__main__":
    main()
