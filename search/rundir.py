"""A search's own files: written atomically, read back telling "missing" from "damaged".

Every file a search writes goes through :func:`atomic_path` (a temporary file in the same
directory, then ``os.replace``): a run killed or out of disk space mid-write leaves the previous
version of the file (or none), never half of one; the half-written file is the temporary one,
removed on failure. :func:`read_json` is the one reader of the search's JSON files: a missing
file is the ``missing`` value (nothing done yet), a damaged one a :class:`DamagedFileError`
naming the file and what to do, never a silent ``{}`` that would make a report wrong.

:class:`RunDir` owns the layout of a search's output directory (``--out``) and :class:`TrialDir`
that of one trial's directory: every file name is defined there, once, and every module asks them.

Importing this module is cheap (no TensorFlow): the CLI uses it before loading anything.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import shutil

__all__ = ["DamagedFileError", "RunDir", "TrialDir", "atomic_path", "is_no_space",
           "no_space_path", "read_json", "write_json", "write_text"]


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


_RESTART_FIX = "--overwrite to start afresh"
#: The format of ``search_config.json`` this version writes (1: before the run store).
CONFIG_FORMAT = 2


class TrialDir:
    """The files this package keeps in one trial's directory (KerasTuner's ``trial_<id>``, from
    ``tuner.get_trial_dir(trial_id)``), beside KerasTuner's own ``trial.json``.

    * :attr:`repeats`: ``{str(seed): record}`` of the finished repeats (the comparison protocol);
    * :attr:`info`: facts KerasTuner does not keep (parameters, parameters added, train time);
    * :attr:`heartbeat`: touched while a run trains (how a chief tells a live worker from a dead
      one);
    * :meth:`weights`: each repeat's final weights.
    """

    REPEATS = "keras_attn_repeats.json"
    INFO = "keras_attn_trial.json"
    HEARTBEAT = "keras_attn_heartbeat"

    def __init__(self, path):
        self.path = os.fspath(path)
        self.repeats = os.path.join(self.path, self.REPEATS)
        self.info = os.path.join(self.path, self.INFO)
        self.heartbeat = os.path.join(self.path, self.HEARTBEAT)

    def weights(self, seed):
        """Where the weights of the repeat with ``seed`` are kept."""
        return os.path.join(self.path, f"seed_{seed}.weights.h5")

    def load_repeats(self):
        """``{str(seed): record}`` of the finished repeats (empty if none yet).

        Raises:
            DamagedFileError: the file exists but is not a JSON object (e.g. truncated).
        """
        return read_json(self.repeats, missing={}, kind=dict,
                         fix=f"delete it to re-run that trial's repeats, or {_RESTART_FIX}")

    def save_repeats(self, records):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.repeats, records)

    def load_info(self):
        return read_json(self.info, missing={}, kind=dict,
                         fix="delete it (that trial's parameter counts and train time then stay "
                         f"blank in the leaderboard), or {_RESTART_FIX}")

    def save_info(self, info):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.info, info)

    def touch_heartbeat(self):
        os.makedirs(self.path, exist_ok=True)
        with open(self.heartbeat, "a"):
            os.utime(self.heartbeat, None)

    def last_heartbeat(self):
        """The time of the last heartbeat, or None when there has been none."""
        try:
            return os.path.getmtime(self.heartbeat)
        except OSError:
            return None


class _File:
    """A file of a run directory: on the class, its name (``RunDir.summary == "summary.json"``);
    on an instance, its path (``RunDir(out).summary == out/summary.json``)."""

    def __init__(self, name):
        self.name = name

    def __get__(self, rundir, owner=None):
        return self.name if rundir is None else rundir.path(self.name)


class RunDir:
    """A search's output directory (``--out``): the path of every file a search writes there.

    Args:
        out: the directory (it need not exist yet), or a RunDir.
    """

    #: Written when a search starts: what lets --overwrite tell a search from any other directory
    #: (a ``config`` file, written by every version, is accepted too).
    marker = _File(".keras-attn-search")
    #: The search's identity and the record of each run (see ``search.config``).
    config = _File("search_config.json")
    #: KerasTuner's projects (one per stage plan, ``tuner/<stage>-<hash>/trial_<id>/``) and
    #: TensorBoard's logs.
    project = _File("tuner")
    #: The run store (:mod:`search.store`): every run, once.
    store = _File("store")
    #: One record per stage plan (its plan and the configurations it asked for), and the plan a
    #: distributed search's chief is serving (``serving.json``).
    stages = _File("stages")
    serving = _File(os.path.join("stages", "serving.json"))
    logs = _File("logs")
    leaderboard_csv = _File("leaderboard.csv")
    leaderboard_md = _File("leaderboard.md")
    summary = _File("summary.json")
    #: The looks at the search's runs and the error each spent (:mod:`search.looks`).
    looks = _File("looks.json")
    costs = _File("costs.json")
    final = _File("final.json")
    best_model = _File("best_model.keras")
    best_search_model = _File("best_search_model.keras")
    baseline_model = _File("baseline_model.keras")
    accuracy_plot = _File("val_accuracy_by_configuration.png")
    delta_plot = _File("delta_vs_baseline.png")
    grad_cam = _File("grad_cam_best_vs_baseline.png")
    #: The exported best model, without its format's extension (``keras_attn.export``).
    export_base = _File(os.path.join("export", "best"))

    def __init__(self, out):
        self.root = os.fspath(out.root if isinstance(out, RunDir) else out)

    def __fspath__(self):
        return self.root

    def __repr__(self):
        return f"RunDir({self.root!r})"

    def path(self, name):
        """``name`` (a relative path) inside the directory."""
        return os.path.join(self.root, name)

    def read_looks(self):
        """The ledger of looks (:mod:`search.looks`), or None before the first.

        Raises:
            DamagedFileError: the file exists but is not a ledger.
        """
        from search.looks import checked_ledger

        fix = ("restore it; deleting it would let the next analysis spend the error again "
               "(--overwrite starts afresh)")
        ledger = read_json(self.looks, missing=None, kind=dict, fix=fix)
        if ledger is not None:
            try:
                checked_ledger(ledger, ledger.get("confidence"), ledger.get("noise_ratio"),
                               "validation")
            except ValueError as err:
                raise DamagedFileError(self.looks, str(err).splitlines()[0], fix) from None
        return ledger

    def save_looks(self, ledger):
        write_json(self.looks, ledger)

    def stage_record(self, project):
        """The record of the stage plan whose KerasTuner project is ``project``."""
        return self.path(os.path.join("stages", f"{project}.json"))

    def legacy_runs(self):
        """The per-trial repeats files of a search made before the run store (an earlier
        version kept each configuration's runs in ``tuner/trial_<id>/keras_attn_repeats.json``)."""
        import glob

        pattern = os.path.join(glob.escape(self.project), "trial_*", TrialDir.REPEATS)
        return sorted(glob.glob(pattern))

    def pareto_plot(self, measure):
        return self.path(f"pareto_{measure}.png")

    def is_search(self):
        """Whether the directory holds a keras-attn search (its marker or its config file)."""
        return any(os.path.isfile(p) for p in (self.marker, self.config))

    def read_config(self):
        """The recorded search: ``{"identity": {...}, "environment": {...}, "runs": [...]}``
        (``{}`` when none is recorded yet); a file written before the run store
        (:data:`CONFIG_FORMAT` 1, flat) gives ``{"legacy": True, "identity": ...}``.

        Raises:
            DamagedFileError: the file exists but is not a JSON object, or a field has the wrong
                type (e.g. ``runs`` not a list of objects).
        """
        fix = "restore it, or start afresh with --overwrite"
        data = read_json(self.config, missing={}, kind=dict, fix=fix)
        if not data:
            return {}
        if "format" not in data:
            legacy = {k: v for k, v in data.items() if k != "runs"}
            return {"legacy": True, "identity": legacy, "environment": {},
                    "runs": _checked_runs(self.config, data.get("runs", []), fix)}
        if data["format"] != CONFIG_FORMAT:
            raise DamagedFileError(self.config, f"format {data['format']!r}, this version reads "
                                   f"format {CONFIG_FORMAT}", fix)
        for field in ("identity", "environment"):
            if not isinstance(data.get(field), dict):
                raise DamagedFileError(self.config, f"'{field}' is "
                                       f"{type(data.get(field)).__name__}, expected an object", fix)
        return {"identity": data["identity"], "environment": data["environment"],
                "runs": _checked_runs(self.config, data.get("runs"), fix)}

    def write_config(self, identity, environment, runs):
        """Record the search (:meth:`read_config`'s form), atomically."""
        write_json(self.config, {"format": CONFIG_FORMAT, "identity": identity,
                                 "environment": environment, "runs": list(runs)})


def _checked_runs(path, runs, fix):
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise DamagedFileError(path, f"'runs' is {type(runs).__name__}, expected a list of "
                               "objects (one per run of the search)", fix)
    return runs


def as_rundir(out):
    """``out`` as a :class:`RunDir` (a RunDir is returned as is)."""
    return out if isinstance(out, RunDir) else RunDir(out)
