"""ferrosio's server over TLS (``ssl_certfile``/``ssl_keyfile``/``ssl_ca_certs``), against the
official npm ``socket.io-client`` (``tests/node/tls_client.mjs``) and ferrosio's own client,
over WebSocket, polling and the upgrade; client certificates when a CA is given; clear errors
for bad certificate files at start; ``trusted_proxies`` and the environ.

The CA and the certificates are made at test time with ``trustme``; nothing is committed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

import ferrosio
from _harness import TESTS
from ferrosio.exceptions import ConnectionError as FerrosioConnectionError
from ferrosio.exceptions import FerrosioError

HOST = "127.0.0.1"
WAIT = 15.0
NODE_DIR = TESTS / "node"
TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "polling+websocket": ["polling", "websocket"],
}


@dataclass
class Pki:
    ca: Path
    cert: Path  # server: 127.0.0.1 and localhost
    key: Path
    client_cert: Path  # a client certificate issued by the same CA
    client_key: Path
    other_ca: Path  # a CA that issued nothing here
    other_key: Path  # a key that is not the server certificate's


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    tmp = tmp_path_factory.mktemp("server-tls")
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    client = ca.issue_cert("client@ferrosio.invalid")
    stranger = other.issue_cert(HOST)
    p = Pki(
        ca=tmp / "ca.pem",
        cert=tmp / "server.crt",
        key=tmp / "server.key",
        client_cert=tmp / "client.crt",
        client_key=tmp / "client.key",
        other_ca=tmp / "other-ca.pem",
        other_key=tmp / "other.key",
    )
    ca.cert_pem.write_to_path(str(p.ca))
    other.cert_pem.write_to_path(str(p.other_ca))
    p.cert.write_bytes(b"".join(b.bytes() for b in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(p.key))
    p.client_cert.write_bytes(b"".join(b.bytes() for b in client.cert_chain_pems))
    client.private_key_pem.write_to_path(str(p.client_key))
    stranger.private_key_pem.write_to_path(str(p.other_key))
    return p


@pytest.fixture(params=list(TRANSPORTS))
def transports(request: pytest.FixtureRequest) -> list[str]:
    return TRANSPORTS[str(request.param)]


def echo_app(**kwargs: Any) -> ferrosio.AsyncServer:
    sio = ferrosio.AsyncServer(**kwargs)
    environs: dict[str, dict[str, Any]] = {}
    sio.environs = environs  # type: ignore[attr-defined]

    @sio.event
    def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        environs[sid] = environ

    @sio.event
    def echo(sid: str, data: Any) -> Any:
        return data

    return sio


@pytest.fixture
async def tls_server(pki: Pki) -> Any:
    """``start(ca=False, **kw)`` -> (sio, port): an echo server on TLS, shut down after."""
    started: list[ferrosio.AsyncServer] = []

    async def start(client_ca: bool = False, **kwargs: Any) -> tuple[ferrosio.AsyncServer, int]:
        sio = echo_app(**kwargs)
        port = await sio.start(
            HOST,
            0,
            ssl_certfile=pki.cert,
            ssl_keyfile=pki.key,
            ssl_ca_certs=pki.ca if client_ca else None,
        )
        started.append(sio)
        return sio, port

    yield start
    for sio in started:
        await sio.shutdown(timeout=1)


PAYLOAD = {"text": "héllo", "n": [1, 2.5, None]}


async def node_client(url: str, transports: list[str], *extra: Path) -> dict[str, Any]:
    if (
        shutil.which("node") is None
        or not (NODE_DIR / "node_modules" / "socket.io-client").is_dir()
    ):
        pytest.fail("node and tests/node's socket.io-client are needed (make node-deps)")
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(NODE_DIR / "tls_client.mjs"),
        url,
        ",".join(transports),
        *map(str, extra),
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    lines = out.decode().strip().splitlines()
    assert lines, f"no output from node: {err.decode()}"
    result: dict[str, Any] = json.loads(lines[-1])
    return result


async def test_node_client_over_tls(tls_server: Any, pki: Pki, transports: list[str]) -> None:
    _, port = await tls_server()
    result = await node_client(f"https://{HOST}:{port}", transports, pki.ca)
    assert result["ok"], result
    assert result["echoed"] == PAYLOAD and result["again"] == PAYLOAD
    assert result["transport"] == ("polling" if transports == ["polling"] else "websocket")


async def test_ferrosio_client_over_tls(
    tls_server: Any, pki: Pki, transports: list[str], clients: list[Any], until: Any
) -> None:
    sio, port = await tls_server()
    c = ferrosio.AsyncClient(reconnection=False, ssl_ca_file=pki.ca)
    clients.append(c)
    await c.connect(f"https://localhost:{port}", transports=transports, wait_timeout=WAIT)
    assert await c.call("echo", PAYLOAD, timeout=WAIT) == PAYLOAD
    if len(transports) > 1:
        await until(lambda: c.transport() == "websocket", what="the upgrade")
    # large messages cross many TLS records both ways
    big = {"blob": "x" * 300_000, "bin": bytes(range(256)) * 1000}
    assert await c.call("echo", big, timeout=WAIT) == big
    assert await c.call("echo", PAYLOAD, timeout=WAIT) == PAYLOAD
    (environ,) = sio.environs.values()  # type: ignore[attr-defined]
    assert environ["wsgi.url_scheme"] == "https"


async def test_wss_url(tls_server: Any, pki: Pki, clients: list[Any]) -> None:
    _, port = await tls_server()
    c = ferrosio.AsyncClient(reconnection=False, ssl_ca_file=pki.ca)
    clients.append(c)
    await c.connect(f"wss://{HOST}:{port}", transports=["websocket"], wait_timeout=WAIT)
    assert await c.call("echo", PAYLOAD, timeout=WAIT) == PAYLOAD


def tls_handshake(port: int, context: ssl.SSLContext) -> str | None:
    """A raw TLS handshake with the stdlib; returns the negotiated ALPN protocol."""
    with (
        socket.create_connection((HOST, port), timeout=WAIT) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        return tls.selected_alpn_protocol()


async def test_alpn_is_http_1_1(tls_server: Any, pki: Pki) -> None:
    _, port = await tls_server()
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    assert await asyncio.to_thread(tls_handshake, port, ctx) == "http/1.1"


async def test_client_certificate_required_when_a_ca_is_given(
    tls_server: Any, pki: Pki, transports: list[str], clients: list[Any]
) -> None:
    _, port = await tls_server(client_ca=True)
    url = f"https://{HOST}:{port}"
    refused = await node_client(url, transports, pki.ca)
    assert not refused["ok"], refused
    accepted = await node_client(url, transports, pki.ca, pki.client_cert, pki.client_key)
    assert accepted["ok"], accepted
    assert accepted["echoed"] == PAYLOAD
    # ferrosio's client presents no certificate: refused, and the server serves on
    c = ferrosio.AsyncClient(reconnection=False, ssl_ca_file=pki.ca)
    clients.append(c)
    with pytest.raises(FerrosioConnectionError):
        await c.connect(url, transports=transports, wait_timeout=5)
    again = await node_client(url, transports, pki.ca, pki.client_cert, pki.client_key)
    assert again["ok"], again


async def test_plain_http_on_a_tls_port_does_not_disturb_others(
    tls_server: Any, pki: Pki, clients: list[Any]
) -> None:
    _, port = await tls_server()

    def plain_request() -> bytes:
        with socket.create_connection((HOST, port), timeout=WAIT) as s:
            s.sendall(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                return s.recv(100)
            except OSError:
                return b""

    assert not (await asyncio.to_thread(plain_request)).startswith(b"HTTP/")
    c = ferrosio.AsyncClient(reconnection=False, ssl_ca_file=pki.ca)
    clients.append(c)
    await c.connect(f"https://{HOST}:{port}", transports=["websocket"], wait_timeout=WAIT)
    assert await c.call("echo", PAYLOAD, timeout=WAIT) == PAYLOAD


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (lambda p: (p.cert.with_name("missing.crt"), p.key, None), "missing.crt"),
        (lambda p: (p.cert, p.key.with_name("missing.key"), None), "missing.key"),
        (lambda p: (p.key, p.key, None), "no certificate"),
        (lambda p: (p.cert, p.cert, None), "no private key"),
        (lambda p: (p.cert, p.other_key, None), "does not match key"),
        (lambda p: (p.cert, p.key, p.cert.with_name("missing-ca.pem")), "missing-ca.pem"),
    ],
    ids=["missing-cert", "missing-key", "not-a-cert", "not-a-key", "mismatch", "missing-ca"],
)
async def test_bad_files_fail_at_start(
    pki: Pki, files: Callable[[Pki], tuple[Path, Path, Path | None]], message: str
) -> None:
    cert, key, ca = files(pki)
    sio = echo_app()
    with pytest.raises(FerrosioError, match=message):
        await sio.start(HOST, 0, ssl_certfile=cert, ssl_keyfile=key, ssl_ca_certs=ca)


async def test_key_without_certificate_is_a_value_error(pki: Pki) -> None:
    with pytest.raises(ValueError, match="both"):
        await echo_app().start(HOST, 0, ssl_certfile=pki.cert)


# --- X-Forwarded-* ---------------------------------------------------------------------------
FORWARDED = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2", "X-Forwarded-Proto": "https"}


@pytest.mark.parametrize(
    ("trusted", "remote", "scheme"),
    [
        (None, HOST, "http"),  # default: not trusted
        (["10.0.0.0/8"], HOST, "http"),  # the peer (127.0.0.1) is not one of them
        (["127.0.0.1", "10.0.0.0/8"], "203.0.113.7", "https"),
        # everyone trusted: every hop is a proxy, so the client is the left-most entry
        ("*", "203.0.113.7", "https"),
    ],
    ids=["default", "other-proxy", "trusted", "star"],
)
async def test_forwarded_headers_only_from_trusted_proxies(
    make_server: Any,
    clients: list[Any],
    trusted: Any,
    remote: str,
    scheme: str,
) -> None:
    sio = echo_app(trusted_proxies=trusted)
    url = await make_server(sio)
    c = ferrosio.AsyncClient(reconnection=False)
    clients.append(c)
    await c.connect(url, headers=FORWARDED, transports=["websocket"], wait_timeout=WAIT)
    (environ,) = sio.environs.values()  # type: ignore[attr-defined]
    assert environ["REMOTE_ADDR"] == remote
    assert environ["wsgi.url_scheme"] == scheme
    assert environ["HTTP_X_FORWARDED_FOR"] == FORWARDED["X-Forwarded-For"]


def test_bad_trusted_proxies_are_refused() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        ferrosio.AsyncServer(trusted_proxies=["not-an-address"])
