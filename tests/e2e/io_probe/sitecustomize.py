"""Loaded by every Python process of an e2e run whose PYTHONPATH holds this folder; acts only in
the dynamic provider process (`python -m pulumi.dynamic`, started by the engine).

There it records what the process reads: the files it opens (an audit hook) and its I/O counters
(/proc/self/io `rchar`: bytes read by any read call, page cache hits included), written to
$LLAMAFLEET_IO_PROBE/<pid>.json every 50 ms and at exit, since the engine may kill the process
before its exit handlers run.
"""

from __future__ import annotations

import json
import os
import sys
import threading

_DIR = os.environ.get("LLAMAFLEET_IO_PROBE")


def _start(directory: str) -> None:
    opened: list[str] = []
    lock = threading.Lock()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and args and isinstance(args[0], str) and args[0].endswith(".gguf"):
            with lock:
                opened.append(args[0])

    def dump() -> None:
        with open("/proc/self/io") as counters:
            io = dict(line.split(": ") for line in counters.read().splitlines())
        with lock:
            record = {"rchar": int(io["rchar"]), "opened": sorted(set(opened))}
        path = os.path.join(directory, f"{os.getpid()}.json")
        with open(path + ".tmp", "w") as out:
            json.dump(record, out)
        os.replace(path + ".tmp", path)

    def loop() -> None:
        while True:
            dump()
            threading.Event().wait(0.05)

    sys.addaudithook(hook)
    threading.Thread(target=loop, daemon=True).start()
    import atexit  # noqa: PLC0415

    atexit.register(dump)


if _DIR and "pulumi.dynamic" in getattr(sys, "orig_argv", []):
    _start(_DIR)
