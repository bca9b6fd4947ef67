"""segstyle pipeline stages: data -> augment -> train -> evaluate (segmentation), style, orchestration.

Each stage is a small library module with a thin click command on top; ``segstyle.pipelines.cli`` wires the
commands into the ``segstyle`` console script lazily so ``segstyle --help`` does not import torch.
"""
