"""Orientation averaging inside the image encoder (training/orientations.py): the rewritten graph equals the numpy
mean over the orientations, is invariant to exactly the group it averages over, and stays batch-invariant."""

from __future__ import annotations

import numpy as np
import pytest

from training.orientations import apply_ops, average_orientations, orientation_ops

S, D = 8, 16


def _encoder(opset: int = 17, out_dim: int | str = D):
    """A small image encoder that depends on orientation: Flatten -> MatMul -> Relu -> MatMul -> L2 normalise."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(3 * S * S, 32)).astype(np.float32)
    w2 = rng.normal(size=(32, D)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["e"]),
        helper.make_node("LpNormalization", ["e"], ["image_embedding"], axis=1, p=2),
    ]
    g = helper.make_graph(
        nodes,
        "enc",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, S, S])],
        [helper.make_tensor_value_info("image_embedding", TensorProto.FLOAT, ["batch", out_dim])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _run(model, x: np.ndarray) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["image_embedding"], {"image": x})[0]


def _images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 3, S, S)).astype(np.float32)


def test_rotations_are_numpy_rot90_and_d4_has_eight_distinct_elements():
    x = _images(1)
    for k, ops in enumerate(orientation_ops(4)):
        assert np.array_equal(apply_ops(x, ops), np.rot90(x, k, axes=(2, 3)))
    d4 = {apply_ops(x, ops).tobytes() for ops in orientation_ops(8)}
    assert len(d4) == 8
    with pytest.raises(ValueError, match="orientations"):
        orientation_ops(3)


@pytest.mark.parametrize("n,opset", [(4, 17), (8, 17), (8, 18)])
def test_graph_equals_the_numpy_mean_over_orientations(n, opset):
    plain = _encoder(opset)
    x = _images()
    want = sum(_run(plain, apply_ops(x, ops)) for ops in orientation_ops(n))
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    got = _run(average_orientations(_encoder(opset), n), x)
    assert got.shape == (len(x), D)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(_run(plain, x), got, atol=1e-3)  # the plain encoder is not invariant


def test_invariant_to_its_group_only():
    x = _images()
    plain, rot, d4 = _encoder(), average_orientations(_encoder(), 4), average_orientations(_encoder(), 8)
    turned, mirrored = np.ascontiguousarray(np.rot90(x, 1, axes=(2, 3))), np.ascontiguousarray(x[..., ::-1])
    assert not np.allclose(_run(plain, turned), _run(plain, x), atol=1e-3)
    np.testing.assert_allclose(_run(rot, turned), _run(rot, x), atol=1e-5)
    assert not np.allclose(_run(rot, mirrored), _run(rot, x), atol=1e-3)  # 4 rotations: no mirror images
    np.testing.assert_allclose(_run(d4, turned), _run(d4, x), atol=1e-5)
    np.testing.assert_allclose(_run(d4, mirrored), _run(d4, x), atol=1e-5)


def test_batch_invariant_and_rejects_what_it_cannot_rewrite():
    model = average_orientations(_encoder(), 8)
    x = _images(7)
    np.testing.assert_allclose(_run(model, x[:1]), _run(model, x)[:1], atol=1e-6)
    with pytest.raises(ValueError, match="already"):
        average_orientations(model, 4)
    assert average_orientations(_encoder(), 1).graph.node[0].op_type == "Flatten"  # 1: unchanged
    with pytest.raises(ValueError, match="embed_dim"):  # an exporter left the width symbolic
        average_orientations(_encoder(out_dim="dim"), 4)
    np.testing.assert_allclose(
        _run(average_orientations(_encoder(out_dim="dim"), 4, embed_dim=D), x),
        _run(average_orientations(_encoder(), 4), x),
    )
    with pytest.raises(ValueError, match="expected"):
        average_orientations(_encoder(), 4, embed_dim=D + 1)
