"""One module per benchmark section; each ``section_*`` function returns a ``benchmark.results.Section``."""
