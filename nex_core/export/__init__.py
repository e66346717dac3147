"""Outputs of a trained run: video (and, later, baked MPIs for the web and game engines)."""
