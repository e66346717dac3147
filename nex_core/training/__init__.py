"""Training: the optimisation loop (``trainer``) and its multi-process (DDP) plumbing (``distributed``)."""
