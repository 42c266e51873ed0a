import asyncio
import datetime
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from comfyserve.runtime.netguard import (
    Target,
    UnsafeTargetError,
    check_target,
    pinned_transport,
)


@dataclass
class Listener:
    """A socket that records every connection it accepts and answers each
    request with `answer`."""

    port: int
    accepted: int = 0
    answer: bytes = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
    hosts: list[str] = field(default_factory=list)


@asynccontextmanager
async def listening(
    host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[Listener]:
    listener = Listener(port=0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.accepted += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.decode().split("\r\n"):
                if line.lower().startswith("host:"):
                    listener.hosts.append(line.split(":", 1)[1].strip())
            writer.write(listener.answer)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # a client that hung up or refused our certificate
        finally:
            writer.close()

    server = await asyncio.start_server(serve, host, 0, ssl=tls)
    listener.port = server.sockets[0].getsockname()[1]
    async with server:
        yield listener


async def deliver(url: str, **client: Any) -> httpx.Response:
    """What a webhook sender does: check, then send over the pinned transport."""
    target = await check_target(url)
    async with httpx.AsyncClient(transport=pinned_transport(target), **client) as c:
        return await c.post(url, content=b"{}")


REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[::1]/", "loopback"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://100.64.0.1/", "CGNAT"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    (
        "http://[::ffff:127.0.0.1]/",
        "loopback address 127.0.0.1 embedded in ::ffff:7f00:1",
    ),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[2002:7f00:1::]/", "loopback address 127.0.0.1 embedded in 2002:"),
    ("http://[2002:a9fe:a9fe::]/", "metadata"),
    ("http://[64:ff9b::a00:1]/", "private address 10.0.0.1 embedded in 64:ff9b"),
    ("http://[::127.0.0.1]/", "loopback"),
    # Teredo: the client address is stored inverted (~127.0.0.1).
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", "loopback"),
    # Numeric spellings of 127.0.0.1 that getaddrinfo (inet_aton) accepts.
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("ftp://example.com/", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http:///path-only", "no host"),
    ("http://[::1/", "not a valid URL"),
    ("http://example.com:99999/", "out of range"),
    ("http://does-not-resolve.invalid/", "does not resolve"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
async def test_unsafe_targets_are_refused_with_the_reason(
    url: str, reason: str
) -> None:
    with pytest.raises(UnsafeTargetError, match="is refused") as refused:
        await check_target(url)
    assert reason in refused.value.reason


@pytest.mark.parametrize(
    "url",
    [
        "https://8.8.8.8/hook",
        "http://[2606:4700:4700::1111]:8080/",
        "http://[::ffff:8.8.8.8]/",
        "http://[2002:808:808::]/",
    ],
)
async def test_public_addresses_are_checked_and_kept(url: str) -> None:
    target = await check_target(url)
    assert ipaddress.ip_address(target.address).is_global
    assert target.url == url


async def test_the_port_defaults_by_scheme_and_the_host_is_idna() -> None:
    assert (await check_target("https://8.8.8.8")).port == 443
    assert (await check_target("http://8.8.8.8")).port == 80
    assert (await check_target("http://8.8.8.8:8443/x")).port == 8443


async def test_refused_targets_are_never_connected_to() -> None:
    async with listening() as v4, listening("::1") as v6:
        urls = [
            f"http://127.0.0.1:{v4.port}/",
            f"http://localhost:{v4.port}/",
            f"http://0.0.0.0:{v4.port}/",
            f"http://2130706433:{v4.port}/",
            f"http://0x7f.1:{v4.port}/",
            f"http://017700000001:{v4.port}/",
            f"http://[::ffff:127.0.0.1]:{v4.port}/",
            f"http://[::1]:{v6.port}/",
        ]
        for url in urls:
            with pytest.raises(UnsafeTargetError):
                await deliver(url)
        assert (v4.accepted, v6.accepted) == (0, 0)
        # The listeners do accept: the same loopback target, once allowed, is.
        target = await check_target(urls[0], allow_loopback=True)
        async with httpx.AsyncClient(transport=pinned_transport(target)) as client:
            assert (await client.post(urls[0])).status_code == 204
        assert v4.accepted == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://0.0.0.0/",
        "http://169.254.169.254/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
    ],
)
async def test_allow_loopback_admits_nothing_else(url: str) -> None:
    with pytest.raises(UnsafeTargetError):
        await check_target(url, allow_loopback=True)


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], None]:
    """Answers getaddrinfo for the names given, as a DNS server we control."""

    def install(answers: dict[str, list[str]]) -> None:
        async def getaddrinfo(host: str, port: int, **kw: Any) -> list[Any]:
            if host not in answers:
                raise socket.gaierror(socket.EAI_NONAME, "unknown")
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, 1, 6, "", (a, port))
                for a in answers[host]
            ]

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)

    return install


async def test_one_private_answer_among_public_ones_refuses_the_name(
    resolver: Callable[[dict[str, list[str]]], None],
) -> None:
    resolver({"mixed.test": ["93.184.216.34", "10.0.0.7"], "ok.test": ["8.8.4.4"]})
    with pytest.raises(UnsafeTargetError, match=r"mixed\.test.*10\.0\.0\.7"):
        await check_target("https://mixed.test/hook")
    target = await check_target("https://ok.test/hook")
    assert (target.host, target.port, target.address) == ("ok.test", 443, "8.8.4.4")


async def test_the_transport_connects_to_the_checked_address_without_resolving(
    resolver: Callable[[dict[str, list[str]]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with listening() as server:
        url = f"http://rebind.test:{server.port}/hook"
        resolver({"rebind.test": ["127.0.0.1"]})
        target = await check_target(url, allow_loopback=True)
        # The name now resolves nowhere (a rebinding DNS server would answer
        # something else): the request still goes to the checked address.
        monkeypatch.undo()
        async with httpx.AsyncClient(transport=pinned_transport(target)) as client:
            assert (await client.post(url)).status_code == 204
        assert server.hosts == [f"rebind.test:{server.port}"]


async def test_a_redirect_to_loopback_is_not_followed() -> None:
    async with listening() as inside, listening() as outside:
        outside.answer = (
            b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:%d/admin\r\n"
            b"Content-Length: 0\r\n\r\n" % inside.port
        )
        url = f"http://localhost:{outside.port}/hook"
        target = await check_target(url, allow_loopback=True)
        async with httpx.AsyncClient(transport=pinned_transport(target)) as client:
            assert (await client.post(url)).status_code == 302
        # Even a client told to follow gets no connection to another origin.
        async with httpx.AsyncClient(
            transport=pinned_transport(target), follow_redirects=True
        ) as client:
            with pytest.raises(httpx.ConnectError, match="not the checked target"):
                await client.post(url)
        assert inside.accepted == 0
        assert outside.accepted == 2


def _certificates(tmp: Path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A CA, a server certificate for `name` signed by it, and the TLS
    contexts of a server presenting it and of a client trusting the CA."""
    now = datetime.datetime.now(datetime.UTC)

    def issue(
        subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: Any
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        issue("test CA", ca_key, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        issue(name, key, ca_name, ca_key)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (tmp / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(tmp / "leaf.pem", tmp / "key.pem")
    client = ssl.create_default_context(
        cadata=ca.public_bytes(serialization.Encoding.PEM).decode()
    )
    return server, client


async def test_tls_is_verified_against_the_host_name_not_the_address(
    tmp_path: Path,
) -> None:
    server_tls, client_tls = _certificates(tmp_path, "hooks.example.test")
    async with listening(tls=server_tls) as server:
        for host, ok in [("hooks.example.test", True), ("other.example.test", False)]:
            url = f"https://{host}:{server.port}/hook"
            target = Target(url=url, host=host, port=server.port, address="127.0.0.1")
            transport = pinned_transport(target, verify=client_tls)
            async with httpx.AsyncClient(transport=transport) as client:
                if ok:
                    assert (await client.post(url)).status_code == 204
                else:
                    with pytest.raises(httpx.ConnectError, match="CERTIFICATE"):
                        await client.post(url)
        # The server's handler only runs after a handshake that succeeded.
        assert server.accepted == 1
