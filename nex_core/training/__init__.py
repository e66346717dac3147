"""Training: the optimisation loop (``trainer``) and its multi-process (DDP) plumbing (``distributed``);
``reference_trainer``, the slow reference-style baseline the benchmark compares with."""
