"""Start and stop a moto server (the AWS stand-in) on a free localhost port.

Each emulator is a moto server process of its own (`atomic_moto`: moto's server answering one call at a
time, atomic as AWS's calls are). moto keeps its in-memory backend per Python process, so two emulators
started as threads of one process would share every resource: a test that lists rules or stacks would see
another test's. A process per emulator gives each one its own account state, as separate
AWS accounts would have, whatever ran before it in the same test process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

DEFAULT_REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
# Run as a script (not `-m`), so it starts from any working directory.
_ATOMIC_MOTO = Path(__file__).with_name("atomic_moto.py")
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
    """A running moto server process. `endpoint` uses `localhost` (S3 virtual-host style needs a name, not
    an IP)."""

    process: subprocess.Popen[bytes]
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
    """Start a moto server process on a free port and wait until it answers. With `set_environment`,
    export the dummy credentials, region and AWS_ENDPOINT_URL into `environ` (default os.environ); `stop`
    restores them. `quiet` keeps the server's per-request log lines out of the output."""
    emulator = _launch(region, quiet=quiet)
    if set_environment:
        target = os.environ if environ is None else environ
        for key, value in emulator.environment().items():
            emulator.previous_env[key] = target.get(key)
            target[key] = value
    return emulator


def stop(emulator: Emulator, *, environ: MutableMapping[str, str] | None = None) -> None:
    emulator.process.terminate()
    try:
        emulator.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        emulator.process.kill()
        emulator.process.wait()
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


def _launch(region: str, *, quiet: bool, attempts: int = 3) -> Emulator:
    """A moto server process that answers. The free port is probed before the process binds it, so
    another process can take it in between: then the server exits at once and a new port is tried."""
    output = subprocess.DEVNULL if quiet else None
    for _ in range(attempts):
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 - this interpreter running moto's server
            [sys.executable, str(_ATOMIC_MOTO), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=output,
        )
        emulator = Emulator(process=process, port=port, region=region)
        if _wait_until_up(emulator):
            return emulator
        stop(emulator, environ={})
    raise RuntimeError(f"no moto server answered after {attempts} attempts")


def _wait_until_up(emulator: Emulator, timeout_s: float = 60.0) -> bool:
    """True once the server answers; False if its process ended first. Start-up imports moto (a few
    seconds on a loaded machine), hence the generous limit."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{emulator.endpoint}/moto-api/", timeout=2):  # noqa: S310
                return True
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"moto server on {emulator.endpoint} did not answer within {timeout_s}s")


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
