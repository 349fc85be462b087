"""Writes the small reproductions of the crashes in docs/fuzzing.md into fuzz/regressions/onnx_load/.

    .venv/bin/python fuzz/regressions/make_regressions.py fuzz/regressions/onnx_load
"""
import onnx, sys
from onnx import helper, TensorProto
out = sys.argv[1]
tiny = "fuzz/corpus/onnx_load/"
# 1. an initializer whose dims make 2^62 elements x 4 bytes wrap to 0 = its raw_data length
m = onnx.load(tiny + "tiny_basic.onnx")
w = [t for t in m.graph.initializer if t.name == "c1.w"][0]
del w.dims[:]; w.dims.extend([1 << 61, 2]); w.raw_data = b""
open(out + "/raw_data_byte_count_overflow.onnx", "wb").write(m.SerializeToString())
# 2. a residual block on 2^32 x 2^32 images: FLOPs overflow i64 in blocks/layers
m = onnx.load(tiny + "tiny_basic.onnx")
d = m.graph.input[0].type.tensor_type.shape.dim
d[2].dim_value = 1 << 32; d[3].dim_value = 1 << 32
open(out + "/flops_overflow.onnx", "wb").write(m.SerializeToString())
# 3. opset-18 Split into equal parts of an axis of i64::MAX
g = helper.make_graph([helper.make_node("Split", ["x"], ["a", "b"], name="sp", num_outputs=2)], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [(1 << 63) - 1])],
                      [helper.make_tensor_value_info("a", TensorProto.FLOAT, None)])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]); m.ir_version = 8
open(out + "/split_equal_parts_overflow.onnx", "wb").write(m.SerializeToString())
# 4. a Conv whose group x the weight's input channels overflows; zero output channels and
#    symbolic input channels are the only shapes that get past shape inference to detection
w = helper.make_tensor("w", TensorProto.FLOAT, [0, 2, 3, 3], [])
g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=(1 << 62) + 1, kernel_shape=[3, 3])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", 4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]); m.ir_version = 8
open(out + "/conv_group_overflow.onnx", "wb").write(m.SerializeToString())
