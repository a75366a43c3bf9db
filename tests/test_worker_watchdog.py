"""search.roles: a distributed worker notices that its chief is gone (issue 29, case 8: a worker
whose chief was killed finished its trial, then hung silently in KerasTuner's client, which waits
up to an hour for the chief)."""

import socket
import threading
import time

import pytest

from search import cli, roles


def _listening_socket():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, f"127.0.0.1:{server.getsockname()[1]}"


def test_chief_listens():
    server, address = _listening_socket()
    assert roles.chief_listens(address)
    server.close()
    assert not roles.chief_listens(address)


def test_watchdog_waits_while_the_chief_listens_and_fires_once_it_has_not_for_the_timeout():
    server, address = _listening_socket()
    gone = []
    with roles.ChiefWatchdog(address, timeout=1.0, on_gone=lambda: gone.append(time.monotonic()),
                             poll=0.1):
        time.sleep(1.5)  # longer than the timeout, the chief listening all along
        assert gone == []
        closed = time.monotonic()
        server.close()
        deadline = closed + 10
        while not gone and time.monotonic() < deadline:
            time.sleep(0.05)
    # Counted from the last poll that found it listening, at most one poll before the close.
    assert len(gone) == 1 and 0.9 <= gone[0] - closed < 5.0


def test_watchdog_stops_with_the_block():
    server, address = _listening_socket()
    watchdog = roles.ChiefWatchdog(address, timeout=0.2, on_gone=pytest.fail, poll=0.05)
    with watchdog:
        time.sleep(0.1)
    server.close()
    time.sleep(0.4)  # the chief gone after the block: nothing fires
    assert not watchdog._thread.is_alive()


def test_a_worker_whose_chief_goes_stops_in_one_line(tmp_path, monkeypatch):
    """Worker.search runs KerasTuner's search under the watchdog: here a search that would wait
    for the chief forever, and a chief that stops listening."""
    server, address = _listening_socket()
    config = cli.parse_args(["--role", "worker", "--oracle", address, "--worker-timeout", "1",
                             "--out", str(tmp_path / "dist")])
    stopped = threading.Event()
    messages = []

    def stop(message, status=2):
        messages.append((message, status))
        stopped.set()

    class WaitsForTheChief:
        def search(self, *args, **kwargs):
            server.close()
            assert stopped.wait(30), "the worker did not notice that its chief was gone"

    monkeypatch.setattr(roles, "stop_worker", stop)
    splits = type("Splits", (), {"train": None, "val": None})()
    roles.ROLES["worker"].search(WaitsForTheChief(), splits, config, [], 0)
    (message, status), = messages
    assert status == 2 and "\n" not in message
    assert message == (
        f"keras-attn-search: error: the chief at {address} has not listened for 1s "
        f"(--worker-timeout): this worker stops; the runs it finished are kept in "
        f"{tmp_path / 'dist'} (start the chief again with the same options, then the workers, "
        "to resume)")
