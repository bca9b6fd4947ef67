"""From a trained checkpoint to something an edge GPU can trust.

- :mod:`segstyle.export.netload`: the network (checkpoint or fresh seeded weights) and its single deployed output;
- :mod:`segstyle.export.onnx`: one-file ONNX with dynamic batch/H/W, provenance metadata, ORT parity;
- :mod:`segstyle.export.fp16`: mixed-precision graph, FP32 I/O, InstanceNorm (and listed ops) kept FP32;
- :mod:`segstyle.export.lint`: static check against TensorRT's ONNX operator matrix (``data/``);
- :mod:`segstyle.export.tensorrt`: TensorRT 10/11 engine build, JSON sidecar, staleness, torch-buffer runner;
- :mod:`segstyle.export.backends`, :mod:`segstyle.export.validate`, :mod:`segstyle.export.bench`: compare backends with PyTorch FP32;
- :mod:`segstyle.export.bundle`: the device bundle with Polygraphy golden data; :mod:`segstyle.export.cli`: the commands.
"""
