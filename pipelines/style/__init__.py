"""Neural style transfer: the Gatys optimisation (reference quality) and the feed-forward network.

- :mod:`segstyle.pipelines.style.gatys`: optimise one image against VGG content/style targets (slow, exact).
- :mod:`segstyle.pipelines.style.train`: ``segstyle train-style``, train ``transformer_net`` for one style.
- :mod:`segstyle.pipelines.style.stylize`: ``segstyle stylize``, run either method on image files.
- :mod:`segstyle.pipelines.style.images`: strict RGB reading, tensor conversion and content-image discovery
  shared by the three.
"""
