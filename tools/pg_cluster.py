"""Start, restart and stop a throwaway PostgreSQL cluster for the tests and benchmarks.

    python tools/pg_cluster.py start DIR     # prints the DSN; DIR is created and owned by it
    python tools/pg_cluster.py restart DIR [--immediate]  # same port (the reconnect test)
    python tools/pg_cluster.py stop DIR      # stops the server; DIR is left for the caller

The server binaries come from Debian's packages (``/usr/lib/postgresql/<version>/bin``), or
from PATH. PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user and every server command runs as that user. The server listens on loopback
only, with trust authentication: it is for tests, never for data.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

SERVER_USER = "postgres"


def find_bin_dir() -> Path | None:
    """Return the directory of ``initdb`` and ``pg_ctl``, the newest version first."""

    def version(path: str) -> tuple[int, ...]:
        parts = Path(path).parts[-2].split(".")
        return tuple(int(part) for part in parts if part.isdigit())

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    return None


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", SERVER_USER, "--", *command]


def _run(command: list[str]) -> None:
    result = subprocess.run(_as_server_user(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _pg_ctl(directory: Path, action: str, *extra: str) -> None:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    data = directory / "data"
    _run(
        [
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(directory / "server.log"),
            "-w",
            "-t",
            "60",
            *extra,
            action,
        ]
    )


def dsn(directory: Path) -> str:
    """Return the DSN of the cluster in ``directory``."""
    port = (directory / "port").read_text().strip()
    return f"postgresql://{SERVER_USER}@127.0.0.1:{port}/postgres"


def start(directory: Path) -> str:
    """Create (if new) and start a cluster in ``directory``; return its DSN."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(directory, SERVER_USER, SERVER_USER)
    if not (directory / "data").exists():
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(directory / "data"),
                "-U",
                SERVER_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        (directory / "port").write_text(f"{_free_port()}\n")
    port = (directory / "port").read_text().strip()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {directory} -c max_connections=200"
    _pg_ctl(directory, "start", "-o", options)
    return dsn(directory)


def restart(directory: Path, *, immediate: bool = False) -> None:
    """Restart the server: in-flight transactions abort, committed ones stay.

    ``immediate`` stops it the way a crash would (no shutdown checkpoint; recovery replays the
    WAL at start), so only what was flushed before the acknowledgement survives.
    """
    _pg_ctl(directory, "restart", "-m", "immediate" if immediate else "fast")


def stop(directory: Path) -> None:
    """Stop the server; the directory stays for the caller to remove."""
    _pg_ctl(directory, "stop", "-m", "fast")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "restart", "stop"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--immediate", action="store_true", help="restart as after a crash")
    args = parser.parse_args()
    directory = args.directory.resolve()
    try:
        if args.action == "start":
            print(start(directory))
        elif args.action == "restart":
            restart(directory, immediate=args.immediate)
        else:
            stop(directory)
    except RuntimeError as exc:
        sys.exit(str(exc))


if __name__ == "__main__":
    main()
