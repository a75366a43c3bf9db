"""``import tensorflow`` without its start-up lines.

TensorFlow's C++ lines from before absl logging is initialised ("oneDNN custom operations are
on", "Could not find cuda drivers") are written to stderr by absl whatever TF_CPP_MIN_LOG_LEVEL
says, once per shared library that bundles its own copy of TensorFlow's logging (the framework
and the profiler plugin: hence twice per run). The CLI imports TensorFlow through
:func:`import_tensorflow_quietly` so that a user sees only what the level lets through.
"""

from __future__ import annotations

import os
import re
import sys

_ABSL_PREFIX = re.compile(r"^([IWEF])\d{4} ")
_ABSL_HEADER = "WARNING: All log messages before absl::InitializeLog() is called"


def import_tensorflow_quietly(debug=False):
    """``import tensorflow`` with its start-up lines filtered by TF_CPP_MIN_LOG_LEVEL (I, W, E
    below the level dropped; anything else, e.g. a Python warning, passed through). Nothing is
    filtered with ``debug``, at level 0, or once TensorFlow is loaded."""
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        level = 0
    if debug or level <= 0 or "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            for line in lines:
                m = _ABSL_PREFIX.match(line)
                if line.startswith(_ABSL_HEADER) or (m and "IWEF".index(m.group(1)) < level):
                    continue
                sys.stderr.write(line)
            sys.stderr.flush()
