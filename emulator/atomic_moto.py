"""`python -m emulator.atomic_moto -H HOST -p PORT`: moto's server, one request at a time.

moto's server is threaded and its backends take no locks while they work, so two conditional writes that
race can both succeed (two detectors both "claiming" the same decision slot, both passing a lease check).
AWS never does that: each call is atomic (DynamoDB serialises the writes of one item; EC2 applies one entry
change at a time). Serialising the calls gives the emulator that atomicity; two *separate* calls of ours can
still interleave with another worker's, exactly as against AWS. moto's request handling is pure Python under
the GIL, so serialising costs next to nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def one_call_at_a_time(app: Wsgi) -> Wsgi:
    """The WSGI app with each request handled whole (body included) before the next one starts."""
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            # The body is produced inside the lock: a lazy iterable would otherwise read the backend after
            # another request has changed it.
            return list(app(environ, start_response))

    return serialised


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs (S3, SQS) from it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        args.host, args.port, one_call_at_a_time(app), threaded=True, request_handler=MotoRequestHandler
    )


if __name__ == "__main__":
    main()
