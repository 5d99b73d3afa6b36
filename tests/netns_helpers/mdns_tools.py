"""Low-level mDNS tools for the discovery tests. Run inside a test network namespace only.

  capture IFACE           print every UDP/5353 packet seen on IFACE (both directions) as JSON
  join IFACE_ADDR         join 224.0.0.251 on that interface and idle (what avahi would do)
  probe TARGET IFACE_ADDR ask for _sayit._tcp three ways (unicast to TARGET, legacy multicast,
                          QU multicast from port 5353) and print the replies as JSON
"""

from __future__ import annotations

import select
import socket
import struct
import sys
import time

from shared import emit

MDNS_ADDR = "224.0.0.251"
MDNS_PORT = 5353
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def capture(iface: str) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((iface, 0))
    emit(event="ready", iface=iface)
    while True:
        frame, meta = s.recvfrom(65535)
        pkttype = meta[2]
        if len(frame) < 14:
            continue
        ethertype = struct.unpack("!H", frame[12:14])[0]
        payload = frame[14:]
        if ethertype == 0x0800 and len(payload) >= 20:
            ihl = (payload[0] & 0x0F) * 4
            if payload[9] != 17 or len(payload) < ihl + 8:
                continue
            src = socket.inet_ntoa(payload[12:16])
            dst = socket.inet_ntoa(payload[16:20])
            udp = payload[ihl:]
        elif ethertype == 0x86DD and len(payload) >= 48:
            if payload[6] != 17:
                continue
            src = socket.inet_ntop(socket.AF_INET6, payload[8:24])
            dst = socket.inet_ntop(socket.AF_INET6, payload[24:40])
            udp = payload[40:]
        else:
            continue
        sport, dport = struct.unpack("!HH", udp[:4])
        if MDNS_PORT not in (sport, dport):
            continue
        emit(event="packet", src=src, dst=dst, sport=sport, dport=dport,
             outgoing=pkttype == PACKET_OUTGOING, size=len(udp) - 8)


def join(iface_addr: str) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("", MDNS_PORT))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(MDNS_ADDR) + socket.inet_aton(iface_addr))
    emit(event="ready", joined=iface_addr)
    while True:
        s.recv(9000)


def _query(qu: bool) -> bytes:
    from zeroconf import DNSOutgoing, DNSQuestion, const

    out = DNSOutgoing(const._FLAGS_QR_QUERY)
    q = DNSQuestion("_sayit._tcp.local.", const._TYPE_PTR, const._CLASS_IN)
    q.unicast = qu
    out.add_question(q)
    return out.packets()[0]


def probe(target: str, iface_addr: str, wait: float = 1.5) -> None:
    legacy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    legacy.bind((iface_addr, 0))
    legacy.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface_addr))
    qu = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    qu.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    qu.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    qu.bind(("", MDNS_PORT))
    qu.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(iface_addr))
    qu.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    replies = []
    deadline = time.monotonic() + wait
    for _ in range(3):
        legacy.sendto(_query(False), (target, MDNS_PORT))
        legacy.sendto(_query(False), (MDNS_ADDR, MDNS_PORT))
        qu.sendto(_query(True), (MDNS_ADDR, MDNS_PORT))
        time.sleep(0.1)
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([legacy, qu], [], [], left)
        for s in ready:
            data, addr = s.recvfrom(9000)
            if addr[0] == iface_addr:
                continue  # our own query looped back
            flags = struct.unpack("!H", data[2:4])[0] if len(data) >= 4 else 0
            if flags & 0x8000:  # responses only
                replies.append({"from": addr[0], "port": addr[1], "size": len(data),
                                "socket": "legacy" if s is legacy else "qu"})
    emit(event="probe", replies=replies)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "capture":
        capture(sys.argv[2])
    elif cmd == "join":
        join(sys.argv[2])
    elif cmd == "probe":
        probe(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)
