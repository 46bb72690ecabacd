"""ferrosio's client over TLS (``https://``, ``wss://``) against the official Node ``socket.io``
server on ``https.createServer`` (``apps/node_tls_app.js``).

The CA and the certificates are made at test time with ``trustme`` into a temporary directory:
one for 127.0.0.1/localhost, one for another host name, one that has expired. The client must
connect over each transport when given the CA, refuse each bad certificate with an error that
names the cause, and connect to anything with ``ssl_verify=False``.
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme

import ferrosio
from _harness import NODE_MODULES, REPO, free_port, node_available
from ferrosio.exceptions import ConnectionError as FerrosioConnectionError

if TYPE_CHECKING:
    from _harness import ServerProcess, Until

HOST = "127.0.0.1"
WAIT = 15.0
STARTUP_TIMEOUT = float(os.environ.get("FERROSIO_TEST_STARTUP_TIMEOUT", "60"))
TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "polling+websocket": ["polling", "websocket"],
}


@dataclass
class TlsServers:
    """Ports of the Node HTTPS servers, by certificate, and the CA that issued them."""

    ca_file: Path
    good: int  # for 127.0.0.1 and localhost
    wrong_host: int  # for wrong-host.example
    expired: int  # for 127.0.0.1, expired yesterday


@pytest.fixture(scope="module")
def tls_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServers]:
    if not node_available():
        pytest.skip(f"socket.io is not installed in {NODE_MODULES} (run `make node-deps`)")
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    ca_file = tmp / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    now = datetime.datetime.now(datetime.timezone.utc)
    leaves = {
        "good": ca.issue_cert(HOST, "localhost"),
        "wrong_host": ca.issue_cert("wrong-host.example"),
        "expired": ca.issue_cert(
            HOST,
            "localhost",
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1),
        ),
    }
    ports: dict[str, int] = {}
    argv = ["node", str(REPO / "tests" / "apps" / "node_tls_app.js"), "--host", HOST]
    for name, leaf in leaves.items():
        key, cert = tmp / f"{name}.key", tmp / f"{name}.crt"
        leaf.private_key_pem.write_to_path(str(key))
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        ports[name] = free_port()
        argv += ["--listen", f"{ports[name]}:{key}:{cert}"]

    log_path = tmp / "node.log"
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"ready" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node TLS server did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield TlsServers(ca_file, ports["good"], ports["wrong_host"], ports["expired"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[str(request.param)]


def make_client(clients: list[Any], **kwargs: Any) -> ferrosio.AsyncClient:
    c = ferrosio.AsyncClient(reconnection=False, request_timeout=WAIT, **kwargs)
    clients.append(c)
    return c


async def assert_echo(c: ferrosio.AsyncClient) -> None:
    payload = {"text": "héllo", "n": [1, 2.5, None]}
    assert await c.call("echo", payload, timeout=WAIT) == payload


async def test_connects_with_the_ca_file(
    tls_servers: TlsServers, transports: list[str], clients: list[Any], until: Until
) -> None:
    c = make_client(clients, ssl_ca_file=tls_servers.ca_file)
    await c.connect(f"https://{HOST}:{tls_servers.good}", transports=transports, wait_timeout=WAIT)
    await assert_echo(c)
    if transports == ["polling", "websocket"]:
        await until(lambda: c.transport() == "websocket", what="the upgrade to websocket")
    expected = "websocket" if "websocket" in transports else "polling"
    assert c.transport() == expected
    # the server's own view: the upgrade happened there too
    assert await c.call("transport", timeout=WAIT) == expected
    await assert_echo(c)


async def test_wss_url_and_host_name(tls_servers: TlsServers, clients: list[Any]) -> None:
    """``wss://`` works as ``https://`` does; a DNS name is verified as an IP address is."""
    c = make_client(clients, ssl_ca_file=str(tls_servers.ca_file))
    await c.connect(
        f"wss://localhost:{tls_servers.good}", transports=["websocket"], wait_timeout=WAIT
    )
    await assert_echo(c)


async def test_system_store_refuses_an_unknown_issuer(
    tls_servers: TlsServers, transports: list[str], clients: list[Any]
) -> None:
    c = make_client(clients)
    with pytest.raises(FerrosioConnectionError, match="unknown issuer"):
        await c.connect(f"https://{HOST}:{tls_servers.good}", transports=transports)
    assert not c.connected


async def test_wrong_host_name_is_refused(
    tls_servers: TlsServers, transports: list[str], clients: list[Any]
) -> None:
    c = make_client(clients, ssl_ca_file=tls_servers.ca_file)
    expected = f"certificate not valid for host '{HOST}' (it is for wrong-host.example)"
    with pytest.raises(FerrosioConnectionError, match=re.escape(expected)):
        await c.connect(f"https://{HOST}:{tls_servers.wrong_host}", transports=transports)


async def test_expired_certificate_is_refused(
    tls_servers: TlsServers, transports: list[str], clients: list[Any]
) -> None:
    c = make_client(clients, ssl_ca_file=tls_servers.ca_file)
    with pytest.raises(FerrosioConnectionError, match=r"certificate expired \(not valid after "):
        await c.connect(f"https://{HOST}:{tls_servers.expired}", transports=transports)


@pytest.mark.parametrize("server", ["good", "wrong_host", "expired"])
async def test_ssl_verify_false_accepts_any_certificate(
    tls_servers: TlsServers, transports: list[str], clients: list[Any], server: str
) -> None:
    c = make_client(clients, ssl_verify=False)
    port = getattr(tls_servers, server)
    await c.connect(f"https://{HOST}:{port}", transports=transports, wait_timeout=WAIT)
    await assert_echo(c)


async def test_unreadable_ca_file_is_reported(
    tls_servers: TlsServers, clients: list[Any], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pem"
    c = make_client(clients, ssl_ca_file=missing)
    with pytest.raises(
        FerrosioConnectionError, match=f"cannot read CA file {re.escape(str(missing))}"
    ):
        await c.connect(f"https://{HOST}:{tls_servers.good}")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("no certificate here\n")
    c = make_client(clients, ssl_ca_file=not_pem)
    with pytest.raises(FerrosioConnectionError, match="no certificate in CA file"):
        await c.connect(f"https://{HOST}:{tls_servers.good}")


async def test_https_to_a_plain_http_server_is_a_handshake_failure(
    make_peer: Callable[..., ServerProcess], clients: list[Any]
) -> None:
    plain = make_peer("node")
    c = make_client(clients, ssl_verify=False)
    with pytest.raises(FerrosioConnectionError, match="TLS handshake failure"):
        await c.connect(f"https://{HOST}:{plain.port}", transports=["websocket"])
