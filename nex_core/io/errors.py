"""The exceptions nex_core raises for bad input. Torch-free.

Every message names the file or setting at fault and says what to do. Front ends (the CLI, the Blender
add-on) catch :class:`NexError` and show its message without a traceback.
"""

from __future__ import annotations


class NexError(Exception):
    """Base class: an error the user can fix; its message says how."""


class SceneError(NexError):
    """A scene directory is missing, empty or inconsistent (images, poses, bounds)."""


class ImageError(SceneError):
    """An image file cannot be read or does not match the others."""


class PoseError(SceneError):
    """Camera poses are missing, malformed, non-finite or do not match the images."""


class ConfigError(NexError):
    """A setting or preset is invalid."""


class CheckpointError(NexError):
    """A checkpoint is corrupt, from another version, or from an incompatible configuration."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file is truncated or fails its checksum (an older one may still be good)."""


class FormatError(NexError):
    """A file written by nex (baked MPI, events) has an unknown version or inconsistent contents."""


class TrainingError(NexError):
    """Training cannot continue (for example the loss became non-finite)."""


class ReconstructionError(SceneError):
    """Structure from motion (``nex prepare``) failed or produced an implausible camera model."""


class CancelledError(NexError):
    """The user stopped a long operation (Ctrl-C or a stop request) before it finished."""


class OutputError(NexError):
    """An output cannot be written where asked (no permission, a full or read-only disk, a file in the way)."""
