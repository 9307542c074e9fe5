"""Orientation averaging inside a bundle's image encoder (issue 17).

Overhead imagery has no canonical orientation: a harbour is a harbour rotated by 90 degrees or mirrored. The
rewritten ``image_encoder.onnx`` embeds each input tile in ``n`` orientations (4: the rotations by 0/90/180/270
degrees; 8: those and their mirror images, the dihedral group D4), averages the ``n`` embeddings and L2-normalises
the mean. The inputs and outputs of the graph are unchanged (contracts §1), so the engine, the evaluation and
every other consumer of the bundle get the averaged embedding without knowing about it; a tile costs ``n``
forward passes. Measured on the 0.2.1 bundle (docs/results.md §0): test mR 22.03 -> 23.09 (4, shipped as 0.2.2)
and 23.24 (8).
"""

from __future__ import annotations

import numpy as np

ORIENTATIONS = (1, 4, 8)
INPUT, OUTPUT = "image", "image_embedding"
_INT64_MIN = np.iinfo(np.int64).min


def orientation_ops(n: int) -> list[tuple[str, ...]]:
    """The ``n`` orientations as sequences of ops applied left to right to an NCHW tensor: ``flip_w`` (mirror
    left-right), ``flip_h`` (mirror top-bottom), ``transpose`` (swap H and W). Rotations first, in the order of
    ``np.rot90(x, k, axes=(2, 3))`` for k = 0..3, then their mirror images."""
    rotations = [(), ("flip_w", "transpose"), ("flip_w", "flip_h"), ("transpose", "flip_w")]
    if n == 1:
        return [()]
    if n == 4:
        return rotations
    if n == 8:
        return rotations + [(*r, "flip_w") for r in rotations]
    raise ValueError(f"orientations must be one of {ORIENTATIONS}, got {n}")


def apply_ops(x: np.ndarray, ops: tuple[str, ...]) -> np.ndarray:
    """Numpy reference of one orientation (the graph must equal it)."""
    for op in ops:
        if op == "transpose":
            x = x.swapaxes(-1, -2)
        else:
            x = x[..., ::-1] if op == "flip_w" else x[..., ::-1, :]
    return np.ascontiguousarray(x)


def _embed_dim(model, embed_dim: int | None) -> int:
    out = next(o for o in model.graph.output if o.name == OUTPUT)
    d = out.type.tensor_type.shape.dim[-1].dim_value
    if embed_dim is not None and d and d != embed_dim:
        raise ValueError(f"{OUTPUT} has {d} dimensions, expected {embed_dim}")
    if not (d or embed_dim):
        raise ValueError(f"{OUTPUT} has no static embedding dimension: pass embed_dim")
    return int(d or embed_dim)


def average_orientations(model, n: int, embed_dim: int | None = None):
    """``model`` (an image encoder ONNX ModelProto, input ``image`` NCHW with H == W) rewritten so that its output is
    the L2-normalised mean of its embeddings of the ``n`` orientations of each input. ``embed_dim``: the output
    width where the graph does not state it (model.json ``embed_dim``). Modifies and returns ``model``; ``n`` = 1
    returns it unchanged."""
    from onnx import TensorProto, helper, numpy_helper

    ops = orientation_ops(n)
    if n == 1:
        return model
    g = model.graph
    if any(p.key == "image_orientations" for p in model.metadata_props):
        raise ValueError("the image encoder already averages orientations")
    dims = [d.dim_value for d in next(i for i in g.input if i.name == INPUT).type.tensor_type.shape.dim]
    if len(dims) != 4 or not dims[2] or dims[2] != dims[3]:
        raise ValueError(f"{INPUT} must be [N,C,S,S] with a static S, got {dims}")
    dim = _embed_dim(model, embed_dim)
    inner_in, inner_out = "orient_views_in", "orient_views_out"
    for nd in g.node:
        nd.input[:] = [inner_in if s == INPUT else s for s in nd.input]
        nd.output[:] = [inner_out if s == OUTPUT else s for s in nd.output]
    consts = {
        "orient_start": [-1],
        "orient_end": [_INT64_MIN],
        "orient_step": [-1],
        "orient_axis_h": [2],
        "orient_axis_w": [3],
        "orient_views_shape": [n, -1, dim],
    }
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in consts.items()]
    pre, views = [], []
    for v, seq in enumerate(ops):
        cur = INPUT
        for j, op in enumerate(seq):
            nxt = f"orient_v{v}_{j}"
            if op == "transpose":
                pre.append(helper.make_node("Transpose", [cur], [nxt], name=nxt, perm=[0, 1, 3, 2]))
            else:
                axis = "orient_axis_w" if op == "flip_w" else "orient_axis_h"
                pre.append(
                    helper.make_node("Slice", [cur, "orient_start", "orient_end", axis, "orient_step"], [nxt], name=nxt)
                )
            cur = nxt
        views.append(cur)
    pre.append(helper.make_node("Concat", views, [inner_in], name="orient_concat", axis=0))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= 18:  # ReduceMean's axes became an input in opset 18
        inits.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "orient_axis_views"))
        mean = helper.make_node("ReduceMean", ["orient_stack", "orient_axis_views"], ["orient_mean"], keepdims=0)
    else:
        mean = helper.make_node("ReduceMean", ["orient_stack"], ["orient_mean"], axes=[0], keepdims=0)
    mean.name = "orient_mean"
    post = [
        helper.make_node("Reshape", [inner_out, "orient_views_shape"], ["orient_stack"], name="orient_reshape"),
        mean,
        helper.make_node("LpNormalization", ["orient_mean"], [OUTPUT], name="orient_normalise", axis=1, p=2),
    ]
    nodes = pre + list(g.node) + post
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.value_info[:]  # shapes inside the graph changed (batch n*N): let the checker re-infer them
    out = next(o for o in g.output if o.name == OUTPUT)
    out.type.tensor_type.elem_type = TensorProto.FLOAT
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "image_orientations": str(n)})
    return model
