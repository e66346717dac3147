import sys
from pathlib import Path

# Let tests import the test-only helpers (reference renderer, fixtures) beside them.
sys.path.insert(0, str(Path(__file__).resolve().parent))
