"""From a trained checkpoint to something an edge GPU can trust, one folder per backend.

Laid out as Polygraphy's ``backend/`` is, a loader and a runner per runtime:

- :mod:`segstyle.export.backend.pyt`: the PyTorch reference (checkpoint or fresh seeded weights, the
  single deployed output) and the ``torch-*`` runners;
- :mod:`segstyle.export.backend.onnx`: graph tools that run nothing: ONNX export with dynamic
  batch/H/W and provenance metadata, parity, the FP16 recipe, graph precision;
- :mod:`segstyle.export.backend.onnxrt`: ONNX Runtime sessions and the ``ort-*`` runners;
- :mod:`segstyle.export.backend.trt`: TensorRT 10/11 lint, engine build, sidecar, trtexec lines, runner;
- :mod:`segstyle.export.backend.registry`: backend names and the one factory;

apart from them, the code that compares backends (:mod:`~segstyle.export.validate`,
:mod:`~segstyle.export.bench`, :mod:`~segstyle.export.matrix`), the bundle writer
(:mod:`~segstyle.export.bundle`), the files a bundle ships (:mod:`segstyle.export.portable`: numpy and
the standard library only) and the commands (:mod:`segstyle.export.cli`).
"""
