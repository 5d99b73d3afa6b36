"""The hosted Redis speaks TLS only, and a client sends AUTH only to the certificate it was given.

Real redis-server (Debian's, built with TLS) and a real TLS impostor on loopback that records
every plaintext byte it receives after the handshake.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import stat

import pytest
from redis.exceptions import AuthenticationError

from sayit_node.federation.hosted_redis import HostedRedis
from sayit_node.federation.join import probe_redis
from sayit_node.federation.redis_tls import CertificateMismatch, ensure_certificate, pinned_url
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

PASSWORD = "f" * 64


@pytest.fixture
async def hosted(tmp_path):
    redis = HostedRedis(executable="redis-server", bind_host="127.0.0.1", port=free_port(),
                        password=PASSWORD, data_dir=tmp_path / "redis")
    await redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def test_hosted_redis_is_tls_only_and_pinned(hosted, tmp_path):
    tls = tmp_path / "redis" / "tls"
    for name in ("tls.crt", "tls.key"):
        assert stat.S_IMODE(os.stat(tls / name).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "redis" / "sayit-redis.conf").st_mode) == 0o600
    with open(f"/proc/{hosted.proc.pid}/cmdline", "rb") as fh:
        assert PASSWORD.encode() not in fh.read()  # not visible in ps
    assert hosted.url.startswith("rediss://") and hosted.cert_fingerprint in hosted.url
    await probe_redis(hosted.url)  # the right certificate and password

    # a plaintext client gets nowhere (no port without TLS)
    reader, writer = await asyncio.open_connection("127.0.0.1", hosted.port)
    writer.write(b"PING\r\n")
    await writer.drain()
    try:
        reply = await asyncio.wait_for(reader.read(100), 5)
    except ConnectionResetError:
        reply = b""  # TLS server drops a plaintext client
    writer.close()
    assert not reply.startswith(b"+PONG")

    wrong_pin = pinned_url("127.0.0.1", hosted.port, PASSWORD, "0" * 64)
    with pytest.raises(CertificateMismatch, match="not sending the password"):
        await probe_redis(wrong_pin)
    with pytest.raises(AuthenticationError):
        await probe_redis(pinned_url("127.0.0.1", hosted.port, "wrong", hosted.cert_fingerprint))

    # the certificate is kept across restarts (peers' pins stay valid)
    assert ensure_certificate(tls)[2] == hosted.cert_fingerprint


class Impostor:
    """A TLS server with its own certificate that records every decrypted byte clients send."""

    def __init__(self, directory):
        cert, key, self.fingerprint = ensure_certificate(directory)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.received = bytearray()
        self.handshakes = 0

    async def handle(self, reader, writer):
        self.handshakes += 1
        try:
            while data := await reader.read(4096):
                self.received += data
                writer.write(b"+OK\r\n")  # say yes to anything (AUTH, HELLO, PING...)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def test_client_sends_nothing_to_a_redis_with_another_certificate(tmp_path):
    real_fp = ensure_certificate(tmp_path / "real")[2]
    impostor = Impostor(tmp_path / "impostor")
    port = free_port()
    server = await asyncio.start_server(impostor.handle, "127.0.0.1", port, ssl=impostor.ctx)
    try:
        with pytest.raises(CertificateMismatch):
            await probe_redis(pinned_url("127.0.0.1", port, PASSWORD, real_fp))
        await asyncio.sleep(0.3)
        assert impostor.handshakes >= 1  # it was reached and completed TLS...
        assert bytes(impostor.received) == b""  # ...but got not one byte: no AUTH, no command

        # control: pinned to the impostor's own certificate, the same client does talk (and the
        # recorder sees the password) -- so the assertion above can fail.
        with pytest.raises(Exception):
            await probe_redis(pinned_url("127.0.0.1", port, PASSWORD, impostor.fingerprint), timeout=1)
        await asyncio.sleep(0.3)
        assert PASSWORD.encode() in bytes(impostor.received)
    finally:
        server.close()
        await server.wait_closed()


async def test_blocking_client_and_worker_healthcheck_pin_too(hosted, tmp_path):
    from sayit_node.healthcheck import check_worker

    (tmp_path / "node_id").write_text("w1")
    # right pin: reaches Redis (no heartbeat for w1, but no connection error either)
    assert check_worker(hosted.url, tmp_path) == "worker w1 has no live heartbeat in Redis"
    wrong = pinned_url("127.0.0.1", hosted.port, PASSWORD, "0" * 64)
    assert "CertificateMismatch" in check_worker(wrong, tmp_path)
