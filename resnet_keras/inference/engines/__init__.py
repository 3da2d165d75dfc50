"""The Predictor's peer engines, one module per runtime, each with `build(model, precision, calibration)`.

- `openvino.py`: the folded graph converted in memory, compiled for the CPU,
  batches tuned per shape, an infer-request pool per compiled model; int8 by NNCF.
- `onnxruntime.py`: the folded graph as ONNX (`inference/onnx.py`), one
  session; int8 by onnxruntime's static quantizer.

The TensorFlow engine and what every engine shares (the `Engine` record, the
traced float32 graph) are the Predictor's own (`predictor.py`).
"""
