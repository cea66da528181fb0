"""Parameters and FLOPs per item of an ONNX scorer, from the graph alone (no torch model needed).

FLOPs here are 2 x the multiply-accumulates (MACs) of the contractions: MatMul, Gemm and Einsum.
Elementwise ops, Gather (embedding lookups), Softmax and bias additions are not counted; they are
memory-bound and cheap next to the matmuls. Shapes come from ONNX shape inference after the
leading (row) dimension of every input is fixed to `rows`, so matmuls whose shapes depend on the
history length L (the target attention's [rows, L, 4d] x [4d, h]) are counted at their real size.
Parameters are the elements of the floating-point initializers (embedding tables included, and
also reported apart as `embedding_params`: the initializers that feed a Gather as its data).
A request-shaped scorer (`cascade.specs.USER_ROW`) computes its user side once per user; with
every input's leading dimension at `rows`, it is counted at its worst case, one user per row,
which is the cost per item of a batch of single-item requests.
"""
from __future__ import annotations

import math
from pathlib import Path

import onnx
from onnx import TensorProto

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
UNCOUNTED = {"Conv", "ConvTranspose", "Attention", "MultiHeadAttention", "QLinearMatMul", "MatMulInteger", "QGemm"}


def _with_rows(model: onnx.ModelProto, rows: int) -> onnx.ModelProto:
    """A copy whose graph inputs have `rows` as their leading dimension; other dims must be fixed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {i.name for i in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        for i, dim in enumerate(dims):
            if i == 0:
                dim.Clear()
                dim.dim_value = rows
            elif not dim.HasField("dim_value"):
                raise ValueError(f"input {value.name}: dim {i} is symbolic ({dim.dim_param!r}); only the row dim may be")
    return model


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    shapes = {i.name: list(i.dims) for i in inferred.graph.initializer}
    for value in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        shape = value.type.tensor_type.shape
        if all(d.HasField("dim_value") for d in shape.dim):
            shapes[value.name] = [d.dim_value for d in shape.dim]
    return shapes


def _einsum_macs(equation: str, operands: list[list[int]]) -> int:
    """Product of the sizes of every distinct index (each output element sums over the rest)."""
    lhs = equation.replace(" ", "").split("->")[0].split(",")
    if "." in equation or len(lhs) != len(operands):
        raise ValueError(f"einsum {equation!r}: only explicit indices, one term per operand")
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs, operands):
        for index, size in zip(term, shape):
            sizes[index] = max(sizes.get(index, 1), size)
    return math.prod(sizes.values())


def _node_macs(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    if node.op_type in UNCOUNTED:
        raise ValueError(f"{node.op_type} node {node.name!r}: not counted by this module (fp32 graphs only)")
    if node.op_type not in ("MatMul", "Gemm", "Einsum"):
        return 0
    needed = [*node.input[:2], node.output[0]] if node.op_type != "Einsum" else [*node.input, node.output[0]]
    unknown = [n for n in needed if n not in shapes]
    if unknown:
        raise ValueError(f"{node.op_type} node {node.name!r}: shape inference left {unknown} unknown")
    if node.op_type == "MatMul":  # every output element is a dot product over A's last dim
        return math.prod(shapes[node.output[0]]) * shapes[node.input[0]][-1]
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        a = shapes[node.input[0]]
        return math.prod(shapes[node.output[0]]) * (a[0] if trans_a else a[1])
    equation = next(a.s.decode() for a in node.attribute if a.name == "equation")
    return _einsum_macs(equation, [shapes[n] for n in node.input])


def onnx_cost(path: Path, rows: int = 1) -> dict[str, int]:
    """{"params", "embedding_params", "flops_per_item"} of the ONNX model at `path` (see module doc)."""
    model = onnx.load(str(path))
    shapes = _inferred_shapes(_with_rows(model, rows))
    floats = {i.name: math.prod(i.dims) for i in model.graph.initializer if i.data_type in FLOAT_TYPES}
    tables = {n.input[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] in floats}
    macs = sum(_node_macs(n, shapes) for n in model.graph.node)
    return {
        "params": sum(floats.values()),
        "embedding_params": sum(floats[t] for t in tables),
        "flops_per_item": 2 * macs // rows,
    }
