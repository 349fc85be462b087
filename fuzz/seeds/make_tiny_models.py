"""Writes tiny ONNX models (a few KB each) that seed the onnx_load fuzz target next to the
fixtures: one per block pattern the detector knows, plus an exporter's shape arithmetic, so
that the fuzzer's mutations start from every code path at a fraction of a fixture's size.

    .venv/bin/python fuzz/seeds/make_tiny_models.py OUT_DIR
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(0)
C = 2


def w(name, *shape):
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)


def conv(name, x, y, cin, cout, k=3, stride=1, group=1, inits=None):
    inits.append(w(name + ".w", cout, cin // group, k, k))
    inits.append(w(name + ".b", cout))
    p = k // 2
    return helper.make_node("Conv", [x, name + ".w", name + ".b"], [y], name=name, kernel_shape=[k, k],
                            strides=[stride, stride], pads=[p, p, p, p], group=group)


def bn(name, x, y, c, inits):
    for s in ["scale", "bias", "mean", "var"]:
        arr = np.abs(rng.standard_normal(c)).astype(np.float32) + (1 if s == "var" else 0)
        inits.append(numpy_helper.from_array(arr, f"{name}.{s}"))
    return helper.make_node("BatchNormalization", [x] + [f"{name}.{s}" for s in ["scale", "bias", "mean", "var"]],
                            [y], name=name, epsilon=1e-5)


def head(x, c, hw, nodes, inits, shape_arith=False):
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    if shape_arith:
        nodes += [
            helper.make_node("Shape", ["gap"], ["shp"], name="shape"),
            helper.make_node("Constant", [], ["zero"], name="c0", value=numpy_helper.from_array(np.array(0, np.int64))),
            helper.make_node("Gather", ["shp", "zero"], ["n"], name="gather", axis=0),
            helper.make_node("Unsqueeze", ["n", "ax"], ["n1"], name="unsq"),
            helper.make_node("Concat", ["n1", "minus1"], ["newshape"], name="cat_shape", axis=0),
            helper.make_node("Reshape", ["gap", "newshape"], ["flat"], name="reshape"),
        ]
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "ax"))
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), "minus1"))
    else:
        nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1))
    inits.append(w("fc.w", 3, c))
    inits.append(w("fc.b", 3))
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))


def model(name, nodes, inits, hw=4, opset=17):
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", C, hw, hw])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz-seed")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def basic(proj=False):
    n, i = [], []
    n.append(conv("stem", "input", "s", C, C, inits=i))
    n.append(helper.make_node("Relu", ["s"], ["x"], name="stem_relu"))
    stride = 2 if proj else 1
    cout = 2 * C if proj else C
    n.append(conv("c1", "x", "a", C, cout, stride=stride, inits=i))
    n.append(bn("bn1", "a", "ab", cout, i))
    n.append(helper.make_node("Relu", ["ab"], ["ar"], name="r1"))
    n.append(conv("c2", "ar", "b", cout, cout, inits=i))
    n.append(bn("bn2", "b", "bb", cout, i))
    short = "x"
    if proj:
        n.append(conv("down", "x", "d", C, cout, k=1, stride=2, inits=i))
        short = "d"
    n.append(helper.make_node("Add", ["bb", short], ["sum"], name="add"))
    n.append(helper.make_node("Relu", ["sum"], ["y"], name="r2"))
    head("y", cout, 2 if proj else 4, n, i, shape_arith=proj)
    return model("projection" if proj else "basic", n, i, opset=13 if proj else 17)


def inverted():
    n, i = [], []
    e = 4
    n.append(conv("expand", "input", "e", C, e, k=1, inits=i))
    n.append(helper.make_node("Clip", ["e", "lo", "hi"], ["e6"], name="relu6"))
    i.append(numpy_helper.from_array(np.array(0, np.float32), "lo"))
    i.append(numpy_helper.from_array(np.array(6, np.float32), "hi"))
    n.append(conv("dw", "e6", "d", e, e, group=e, inits=i))
    n.append(helper.make_node("HardSwish", ["d"], ["dh"], name="hswish"))
    n.append(helper.make_node("GlobalAveragePool", ["dh"], ["sq"], name="se_pool"))
    n.append(conv("se1", "sq", "s1", e, 2, k=1, inits=i))
    n.append(helper.make_node("Relu", ["s1"], ["s1r"], name="se_relu"))
    n.append(conv("se2", "s1r", "s2", 2, e, k=1, inits=i))
    n.append(helper.make_node("HardSigmoid", ["s2"], ["gate"], name="se_gate"))
    n.append(helper.make_node("Mul", ["dh", "gate"], ["se"], name="se_mul"))
    n.append(conv("project", "se", "p", e, C, k=1, inits=i))
    n.append(helper.make_node("Add", ["input", "p"], ["y"], name="add"))
    head("y", C, 4, n, i)
    return model("inverted", n, i)


def dense_vgg():
    n, i = [], []
    n.append(bn("bn0", "input", "b0", C, i))
    n.append(helper.make_node("Relu", ["b0"], ["r0"], name="r0"))
    n.append(conv("dense", "r0", "g", C, 2, inits=i))
    n.append(helper.make_node("Concat", ["input", "g"], ["cat"], name="concat", axis=1))
    n.append(conv("v1", "cat", "v", C + 2, C, inits=i))
    n.append(helper.make_node("Relu", ["v"], ["vr"], name="vr"))
    n.append(helper.make_node("MaxPool", ["vr"], ["mp"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    n.append(conv("v2", "mp", "v2o", C, C, inits=i))
    n.append(helper.make_node("Relu", ["v2o"], ["v2r"], name="v2r"))
    n.append(helper.make_node("AveragePool", ["v2r"], ["ap"], name="apool", kernel_shape=[2, 2], strides=[2, 2]))
    head("ap", C, 1, n, i)
    return model("dense_vgg", n, i, opset=13)


out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
for name, m in [("tiny_basic", basic()), ("tiny_projection", basic(True)), ("tiny_inverted", inverted()),
                ("tiny_dense_vgg", dense_vgg())]:
    (out / f"{name}.onnx").write_bytes(m.SerializeToString())
    print(name, len(m.SerializeToString()), "bytes")
