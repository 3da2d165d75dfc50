"""What the README says each int8 engine's quantizer makes, checked on the graph it made.

`record_quantized(runtime, monkeypatch)` keeps the graph the engine's
`_quantize` returns while a Predictor is built (no second quantization);
`check_layout(runtime, graph)` holds it to the README's runtime table. For
OpenVINO the record is (quantized model, the float model's biases).
"""

from __future__ import annotations

import importlib

import numpy as np


def record_quantized(runtime: str, monkeypatch) -> list:
    """The int8 graphs the engine quantizes from now on: ONNX ModelProtos, or (OpenVINO model, float biases)."""
    module = importlib.import_module(f"resnet_keras.inference.engines.{runtime}")
    real, made = module._quantize, []

    def recording(model, calibration):
        before = None if runtime == "onnxruntime" else _biases(model)  # read before NNCF sees the model
        result = real(model, calibration)
        if runtime == "onnxruntime":  # a path in a folder the engine deletes after the build
            import onnx

            made.append(onnx.load(str(result)))
        else:
            made.append((result, before))
        return result

    monkeypatch.setattr(module, "_quantize", recording)
    return made


def _onnx(model) -> None:
    """Per-channel int8 conv weights, uint8 activations, the classifier in float32."""
    import onnx

    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    constants = {tensor.name: tensor for tensor in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs
    for conv in convs:
        dequantize = producers[conv.input[1]]
        weights, scale = (constants[name] for name in dequantize.input[:2])
        assert dequantize.op_type == "DequantizeLinear" and weights.data_type == onnx.TensorProto.INT8, conv.name
        assert list(scale.dims) == [weights.dims[0]] > [1], conv.name  # one scale per output channel
    activations = [node for node in graph.node if node.op_type == "QuantizeLinear"]
    assert activations and all(constants[n.input[2]].data_type == onnx.TensorProto.UINT8 for n in activations)
    classifier = [node for node in graph.node if node.op_type in ("MatMul", "Gemm")][-1]
    assert constants[classifier.input[1]].data_type == onnx.TensorProto.FLOAT


def _biases(model) -> dict:
    """Bias name -> values: the constants added to convolution and MatMul outputs."""
    biases = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Add":
            layer, bias = (op.input(i).get_source_output().get_node() for i in range(2))
            if layer.get_type_name() in ("Convolution", "MatMul") and bias.get_type_name() == "Constant":
                biases[op.get_friendly_name()] = bias.get_data().copy()
    return biases


def _openvino(recorded) -> None:
    """Per-channel int8 conv weights, activations quantized, the classifier in float32,
    biases kept as trained (no bias correction)."""
    model, float_biases = recorded
    biases = _biases(model)
    assert float_biases and biases.keys() == float_biases.keys()
    for name, values in biases.items():
        assert np.array_equal(values, float_biases[name]), f"bias of {name} changed by quantization"

    def source(op, index: int):
        return op.input(index).get_source_output().get_node()

    ops = model.get_ordered_ops()
    convs = [op for op in ops if op.get_type_name() == "Convolution"]
    assert convs and any(op.get_type_name() == "FakeQuantize" for op in ops)
    for conv in convs:  # int8 constant -> Convert -> Multiply by one scale per output channel
        scaling = source(conv, 1)
        weights, scale = source(scaling, 0), source(scaling, 1)
        assert scaling.get_type_name() == "Multiply" and weights.get_type_name() == "Convert"
        assert source(weights, 0).get_element_type().get_type_name() == "i8"
        channels = conv.get_input_shape(1)[0]
        assert channels > 1 and list(scale.get_output_shape(0)) == [channels, 1, 1, 1], conv.get_friendly_name()
    classifier = [op for op in ops if op.get_type_name() == "MatMul"][-1]
    weights = source(classifier, 1)
    assert weights.get_type_name() == "Constant" and weights.get_element_type().get_type_name() == "f32"
    assert all(source(classifier, i).get_type_name() != "FakeQuantize" for i in range(2))


def check_layout(runtime: str, graph) -> None:
    {"onnxruntime": _onnx, "openvino": _openvino}[runtime](graph)
