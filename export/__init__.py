"""From a trained checkpoint to something an edge GPU can trust.

- :mod:`export.netload`: the network (checkpoint or fresh seeded weights) and its single deployed output;
- :mod:`export.onnx`: one-file ONNX with dynamic batch/H/W, provenance metadata, ORT parity;
- :mod:`export.fp16`: mixed-precision graph, FP32 I/O, InstanceNorm (and listed ops) kept FP32;
- :mod:`export.lint`: static check against TensorRT's ONNX operator matrix (``data/``);
- :mod:`export.tensorrt`: TensorRT 10/11 engine build, JSON sidecar, staleness, torch-buffer runner;
- :mod:`export.backends`, :mod:`export.validate`, :mod:`export.bench`: compare backends with PyTorch FP32;
- :mod:`export.bundle`: the device bundle with Polygraphy golden data; :mod:`export.cli`: the commands.
"""
