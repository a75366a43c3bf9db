"""A search's own files: written atomically, read back telling "missing" from "damaged".

Every file a search writes goes through :func:`atomic_path` (a temporary file in the same
directory, then ``os.replace``): a run killed or out of disk space mid-write leaves the previous
version of the file (or none), never half of one; the half-written file is the temporary one,
removed on failure. :func:`read_json` is the one reader of the search's JSON files: a missing
file is the ``missing`` value (nothing done yet), a damaged one a :class:`DamagedFileError`
naming the file and what to do, never a silent ``{}`` that would make a report wrong.

Importing this module is cheap (no TensorFlow): the CLI uses it before loading anything.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import shutil

# Written into --out when a search starts: what lets --overwrite tell a search from any other
# directory (a search_config.json, written by every version, is accepted too).
MARKER_FILE = ".keras-attn-search"

__all__ = ["DamagedFileError", "MARKER_FILE", "atomic_path", "is_no_space", "no_space_path",
           "read_json", "write_json", "write_text"]


class DamagedFileError(ValueError):
    """A search's own file exists but cannot be read back (truncated, not JSON, unreadable).

    ``str()`` is one line: the file, what is wrong with it and what to do.
    """

    def __init__(self, path, problem, fix):
        self.path = path
        super().__init__(f"{path} is damaged ({problem}); {fix}")


def read_json(path, missing=None, fix="delete it, or start afresh with --overwrite",
              kind=None):
    """The JSON value in ``path``; a deep copy of ``missing`` when the file does not exist.

    Args:
        path: the file.
        missing: returned (copied) when there is no such file.
        fix: what the user should do about a damaged file, for the message.
        kind: the expected type (e.g. ``dict``); another one counts as damaged.

    Raises:
        DamagedFileError: the file exists but cannot be read or is not (that kind of) JSON.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return copy.deepcopy(missing)
    except (OSError, UnicodeDecodeError) as err:
        raise DamagedFileError(path, f"cannot read it: {getattr(err, 'strerror', None) or err}",
                               fix) from None
    if not text.strip():
        raise DamagedFileError(path, "empty", fix)
    try:
        value = json.loads(text)
    except ValueError as err:
        raise DamagedFileError(path, f"not valid JSON: {err}", fix) from None
    if kind is not None and not isinstance(value, kind):
        raise DamagedFileError(path, f"expected a JSON {kind.__name__}, got "
                               f"{type(value).__name__}", fix)
    return value


def is_no_space(exc):
    """Whether ``exc`` (or an exception it was raised from) is a full disk."""
    return no_space_path(exc, default="") is not None


def no_space_path(exc, default="?"):
    """The file a full disk (ENOSPC) failed to write, found along ``exc``'s chain of causes;
    ``default`` when the chain has ENOSPC without a file name; None when it has no ENOSPC."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return e.filename or default
    # h5py (HDF5) reports a full disk in its message, not always with an errno.
    if any("No space left on device" in str(e) for e in chain):
        return default
    return None


@contextlib.contextmanager
def atomic_path(path):
    """``with atomic_path(path) as tmp: write(tmp)``: the file appears at ``path`` only once
    ``write`` has returned, by ``os.replace`` from a temporary file in the same directory.

    The temporary name ends with ``path``'s own name (``.tmp<pid>.seed_0.weights.h5``), so
    writers that go by the extension (Keras' ``.keras``/``.weights.h5``, matplotlib's ``.png``)
    write the same format. On any failure the temporary file is removed and ``path`` is left
    as it was; a full disk is raised as ``OSError(ENOSPC, ..., path)``, naming the real file.
    """
    directory, name = os.path.split(os.fspath(path))
    tmp = os.path.join(directory, f".tmp{os.getpid()}.{name}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, Exception) and is_no_space(exc) and not (
                isinstance(exc, OSError) and exc.filename == os.fspath(path)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path)) from exc
        raise


def check_free_space(path, nbytes, margin=1 << 20):
    """Raise ``OSError(ENOSPC, ..., path)`` when the disk of ``path`` has less than ``nbytes``
    (plus ``margin``) free. For writers that cannot fail cleanly on a full disk: h5py (HDF5),
    after a failed write, leaves objects whose clean-up fails again and can crash the process
    at exit, so Keras' weights and models are checked against the free space first."""
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < nbytes + margin:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def model_nbytes(model):
    """The bytes of ``model``'s variables and its optimizer's (what a weights file holds)."""
    import numpy as np

    variables = list(model.variables)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "variables", None) is not None:
        variables += list(optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(getattr(v.dtype, "name", v.dtype)).itemsize
               for v in variables)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`), synced to the disk."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically (a killed run never leaves half a file)."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
