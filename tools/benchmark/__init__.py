"""The parts of ``tools/bench.py``: results and their table (``results``), machine information
(``machine``), timing and memory (``measure``), configurations and scenes (``setups``), the measurements
run in a fresh process each (``workers``), interleaved training steps (``steps``) and one module per
section (``sections``)."""
