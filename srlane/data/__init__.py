"""Lane data: records, the annotation cache, crops, augmentation, targets, the dataset and its
loader (``records``, ``cache``, ``crop``, ``transforms``, ``targets``, ``dataset``, ``loader``,
``input_checks``, ``image_size``).

It knows no benchmark format (``srlane.benchmarks`` reads and writes those), no metric and no
engine. The package imports nothing itself, so a reader that needs only ``records`` and
``cache`` does not load torch.
"""
