"""A hostile host on the test LAN. Run inside a test network namespace only.

    impostor.py OWN_ADDR REAL_NODE_ID RECORD_DIR

1. Browses for ``_sayit._tcp`` until it sees the real node's advert (node id REAL_NODE_ID).
2. Re-advertises it from OWN_ADDR three ways, each under its own service name and with its own
   A record: ``copy`` (TXT copied byte for byte), ``forged`` (TXT with the signed address list
   rewritten to OWN_ADDR, signature kept), ``open`` (TXT rewritten to OWN_ADDR and marked as an
   unsigned open-cluster advert).
3. On OWN_ADDR it listens on the real node's API port and Redis port and relays both to the real
   node (so its HTTP answers like the real node), writing every byte it receives and sends, per
   port and direction, to RECORD_DIR.
4. A raw socket on eth0 also records the payload of every TCP and UDP packet sent to OWN_ADDR on
   any port (`any-port.in`; the ports in `any-port.ports`), so a credential sent to a port it does
   not listen on is caught too.

Prints JSON lines: {"event": "ready", ...} once everything is up.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from shared import emit

SERVICE_TYPE = "_sayit._tcp.local."


def sniff(own: str, record: Path, ready: threading.Event) -> None:
    """Record the payload of every IPv4 TCP/UDP packet addressed to `own` that arrives on eth0."""
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    raw.bind(("eth0", 0))
    target = socket.inet_aton(own)
    ready.set()
    while True:
        frame, meta = raw.recvfrom(65535)
        if meta[2] == 4 or len(frame) < 34 or frame[12:14] != b"\x08\x00":  # outgoing, or not IPv4
            continue
        ip = frame[14:]
        ihl, proto = (ip[0] & 0x0F) * 4, ip[9]
        if ip[16:20] != target or proto not in (6, 17):
            continue
        segment = ip[ihl:struct.unpack("!H", ip[2:4])[0]]
        port = struct.unpack("!H", segment[2:4])[0]
        payload = segment[(segment[12] >> 4) * 4:] if proto == 6 else segment[8:]
        with (record / "any-port.ports").open("a") as fh:
            fh.write(f"{'tcp' if proto == 6 else 'udp'}/{port}\n")
        if payload:
            with (record / "any-port.in").open("ab") as fh:
                fh.write(payload)


async def relay(listen: str, port: int, target: str, record: Path) -> asyncio.AbstractServer:
    async def pipe(reader, writer, log):
        try:
            while data := await reader.read(65536):
                with log.open("ab") as fh:
                    fh.write(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(c_reader, c_writer):
        (record / f"{port}.connections").open("a").write(f"{time.time()}\n")
        try:
            s_reader, s_writer = await asyncio.open_connection(target, port)
        except OSError:
            c_writer.close()
            return
        await asyncio.gather(pipe(c_reader, s_writer, record / f"{port}.in"),
                             pipe(s_reader, c_writer, record / f"{port}.out"))

    return await asyncio.start_server(handle, listen, port)


async def main(own: str, real_id: str, record: Path) -> None:
    record.mkdir(parents=True, exist_ok=True)
    sniffing = threading.Event()
    threading.Thread(target=sniff, args=(own, record, sniffing), daemon=True).start()
    if not sniffing.wait(5):
        raise RuntimeError("the raw socket did not start")
    aiozc = AsyncZeroconf(interfaces=[own], ip_version=IPVersion.V4Only)
    found: asyncio.Future = asyncio.get_running_loop().create_future()

    async def resolve(name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if await info.async_request(aiozc.zeroconf, 3000, question_type=DNSQuestionType.QM):
            props = dict(info.properties or {})
            if props.get(b"id", b"").decode() == real_id and not found.done():
                found.set_result(info)

    def on_change(zeroconf, service_type, name, state_change):
        if state_change is not ServiceStateChange.Removed:
            asyncio.ensure_future(resolve(name))

    browser = AsyncServiceBrowser(aiozc.zeroconf, SERVICE_TYPE, handlers=[on_change],
                                  question_type=DNSQuestionType.QM)
    real: AsyncServiceInfo = await asyncio.wait_for(found, 20)
    await browser.async_cancel()
    props = {k: v for k, v in (real.properties or {}).items()}
    real_addr = real.parsed_addresses(IPVersion.V4Only)[0]
    api_port = real.port
    redis_port = int(props[b"rp"])
    servers = [await relay(own, p, real_addr, record) for p in (api_port, redis_port)]

    variants = {
        "copy": props,
        "forged": {**props, b"a": own.encode()},
        "open": {k: v for k, v in {**props, b"a": own.encode(), b"k": b"open"}.items() if k not in (b"s", b"t")},
    }
    infos = []
    for label, txt in variants.items():
        info = AsyncServiceInfo(SERVICE_TYPE, f"evil-{label}.{SERVICE_TYPE}", port=api_port,
                                properties=txt, server=f"evil-{label}.local.", parsed_addresses=[own])
        await aiozc.async_register_service(info, allow_name_change=True)
        infos.append(info)
    emit(event="ready", real_address=real_addr, api_port=api_port, redis_port=redis_port,
         variants=list(variants))
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
