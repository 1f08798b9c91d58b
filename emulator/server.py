"""Start and stop a moto server (the AWS stand-in) on a free localhost port."""

from __future__ import annotations

import logging
import os
import socket
import time
import urllib.request
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# What boto3 and the AWS CLI need to talk to the emulator instead of AWS (never real credentials).
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    """A running moto server. `endpoint` uses `localhost` (S3 virtual-host style needs a name, not an IP)."""

    server: ThreadedMotoServer
    port: int
    region: str = DEFAULT_REGION
    previous_env: dict[str, str | None] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.port}"

    def environment(self) -> dict[str, str]:
        """Variables that point boto3 / the AWS CLI / the CDK CLI at this emulator."""
        return {
            **DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    def reset(self) -> None:
        """Drop every resource (moto's reset API)."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 - our own localhost server
            pass


def start(
    *,
    region: str = DEFAULT_REGION,
    set_environment: bool = True,
    environ: MutableMapping[str, str] | None = None,
    quiet: bool = True,
) -> Emulator:
    """Start moto on a free port and wait until it answers. With `set_environment`, export the dummy
    credentials, region and AWS_ENDPOINT_URL into `environ` (default os.environ); `stop` restores them.
    `quiet` keeps the HTTP server's per-request log lines (werkzeug) out of the output."""
    if quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    emulator = Emulator(server=server, port=port, region=region)
    _wait_until_up(emulator)
    if set_environment:
        target = os.environ if environ is None else environ
        for key, value in emulator.environment().items():
            emulator.previous_env[key] = target.get(key)
            target[key] = value
    return emulator


def stop(emulator: Emulator, *, environ: MutableMapping[str, str] | None = None) -> None:
    emulator.server.stop()
    target = os.environ if environ is None else environ
    for key, value in emulator.previous_env.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    emulator.previous_env.clear()


@contextmanager
def running(*, region: str = DEFAULT_REGION, set_environment: bool = True) -> Iterator[Emulator]:
    emulator = start(region=region, set_environment=set_environment)
    try:
        yield emulator
    finally:
        stop(emulator)


def _wait_until_up(emulator: Emulator, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{emulator.endpoint}/moto-api/", timeout=2):  # noqa: S310
                return
        except OSError as exc:
            last_error = exc
            time.sleep(0.05)
    raise RuntimeError(f"moto server on {emulator.endpoint} did not answer within {timeout_s}s: {last_error}")


def client(emulator: Emulator, service: str) -> Any:
    """A boto3 client for `service` on the emulator, with dummy credentials (never the real ones)."""
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name=emulator.region,
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"],
    )
