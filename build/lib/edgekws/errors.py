"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Library code raises `EdgeKWSError` (or a subclass) for anything caused by the user's input —
a bad file, a wrong option, a folder that can't be written. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class EdgeKWSError(Exception):
    """A user-facing error: its message is printed as is, on one line."""


class AudioError(EdgeKWSError):
    """A WAV file that can't be used (wrong format, empty, truncated, stereo...)."""


class DataError(EdgeKWSError):
    """A data folder that does not follow the Speech Commands layout."""
