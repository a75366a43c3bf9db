"""One process owns a search's ``--out`` at a time.

A search (``--role single``) or a distributed search's chief takes an exclusive lock on
``OUT/.keras-attn-search.lock`` before it writes anything there, and keeps it until it exits; its
workers write their runs under the chief's ownership and take no lock. A second process is
refused in one line that names the owner's PID, host and start time. The lock is the operating
system's (``fcntl.flock``): a killed owner (``kill -9``, a crashed machine's process on a local
disk) releases it at once, so a resume never waits for, or has to clean up, a stale lock file.
On Linux NFS clients ``flock`` is emulated with POSIX byte-range locks, which the server
arbitrates between machines.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from search.config import PROG, CLIError

LOCK_NAME = ".keras-attn-search.lock"


class OutLock:
    """The lock of one ``--out`` directory (see the module docstring)."""

    def __init__(self, out):
        self.out = os.fspath(out)
        self.path = os.path.join(self.out, LOCK_NAME)
        self._fd = None

    @property
    def held(self):
        return self._fd is not None

    def owner(self):
        """``{"pid", "host", "started", "command"}`` the holder wrote, or {} if unreadable."""
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.loads(f.read() or "{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def acquire(self):
        """Take the lock (creating ``--out``); returns self.

        Raises:
            CLIError: another process holds it (the message names it).
        """
        os.makedirs(self.out, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise CLIError(self._busy_message()) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": " ".join([PROG, *sys.argv[1:]])[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)
        self._fd = fd
        return self

    def release(self):
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _busy_message(self):
        owner = self.owner()
        who = (f"PID {owner.get('pid', '?')} on {owner.get('host', '?')}, since "
               f"{owner.get('started', '?')}") if owner else "another process"
        return (f"--out {self.out} is in use by another {PROG} ({who}): wait for it to finish "
                "or stop it; two searches must not write one --out")

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
