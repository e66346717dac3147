"""NeX for Blender: real-time view-dependent novel-view synthesis with multiplane images.

Importing the package imports nothing heavy; torch is loaded only by the modules that need it.
"""

__version__ = "0.1.0"
