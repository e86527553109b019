"""The benchmark traffic of fwd, defined once: what the TRex profiles (udp64.py, imix.py,
flows.py, tcp_cps.py beside this file), the pcapng/pcap writer (write_capture.py) and the
pktgen scripts send. Pure Python, no TRex or scapy import, so that the capture writer runs
anywhere and a TRex box needs only this directory.

Port 0 / pcapng interface 0 / fwd's port a faces the clients (198.18.0.0/16), port 1 /
interface 1 / port b the servers (198.19.0.0/16): both inside the benchmarking range
198.18.0.0/15 of RFC 2544. Frame sizes are without the 4-byte FCS (TRex and pcap count that
way): "64-byte frames" are 60 bytes here.
"""

import struct

CLIENT_MAC = "02:00:00:00:00:01"
SERVER_MAC = "02:00:00:00:00:02"
CLIENT_IP = "198.18.0.1"
SERVER_IP = "198.19.0.1"
# many flows: client addresses 198.18.0.1 upwards, source ports 1024 upwards
FLOW_IP_BASE = "198.18.0.1"
FLOW_PORT_BASE = 1024
FLOW_PORTS = 64
UDP_SPORT = 1025
UDP_DPORT = 9          # discard
TCP_DPORT = 80
TCP_CLIENT_ISN = 0x10000000
TCP_SERVER_ISN = 0x20000000

# IMIX as in TRex's stl/imix.py and RFC 6985's "simple IMIX": frame sizes with FCS 64/594/1518
# in the ratio 7:4:1 (by packets).
IMIX = [(60, 7), (590, 4), (1514, 1)]

# The four profiles and what they send (by default).
PROFILES = {
    "udp64": "64-byte UDP frames, one flow",
    "imix": "IMIX 64/594/1518 (7:4:1), one flow per size",
    "flows": "64-byte UDP frames over many flows (default 65536: 1024 addresses x 64 ports)",
    "tcp_cps": "new TCP connections: SYN, SYN-ACK, ACK, RST per connection",
}
DEFAULT_FLOWS = 65536


def ip_to_int(ip):
    a, b, c, d = (int(x) for x in ip.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def int_to_ip(n):
    return ".".join(str((n >> s) & 0xFF) for s in (24, 16, 8, 0))


def flow_tuple(i, flows):
    """The i-th flow of `flows` (0-based): (client address, client port), ports varying
    fastest. TRex's tuple generator (STLVmTupleGen) walks the same set in its own order."""
    ports = min(FLOW_PORTS, flows)
    return int_to_ip(ip_to_int(FLOW_IP_BASE) + i // ports), FLOW_PORT_BASE + i % ports


def flow_ranges(flows):
    """(first address, last address, first port, last port) covering `flows` flows."""
    ports = min(FLOW_PORTS, flows)
    addrs = -(-flows // ports)
    return (FLOW_IP_BASE, int_to_ip(ip_to_int(FLOW_IP_BASE) + addrs - 1),
            FLOW_PORT_BASE, FLOW_PORT_BASE + ports - 1)


# --- frames as bytes (the capture writer's; the TRex profiles build the same with scapy) ---

def _mac(m):
    return bytes(int(x, 16) for x in m.split(":"))


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(src, dst, proto, payload, ident=1):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0,
                      struct.pack("!I", ip_to_int(src)), struct.pack("!I", ip_to_int(dst)))
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + payload


def _pseudo(src, dst, proto, length):
    return struct.pack("!IIBBH", ip_to_int(src), ip_to_int(dst), 0, proto, length)


def udp_frame(size, src=CLIENT_IP, dst=SERVER_IP, sport=UDP_SPORT, dport=UDP_DPORT,
              smac=CLIENT_MAC, dmac=SERVER_MAC):
    """An Ethernet/IPv4/UDP frame of `size` bytes (no FCS), zero payload, checksums valid."""
    plen = size - 14 - 20 - 8
    if plen < 0:
        raise ValueError("a UDP frame needs at least 42 bytes, not %d" % size)
    udp = struct.pack("!HHHH", sport, dport, 8 + plen, 0) + bytes(plen)
    c = _csum(_pseudo(src, dst, 17, len(udp)) + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    return _mac(dmac) + _mac(smac) + b"\x08\x00" + _ipv4(src, dst, 17, udp)


TCP_FLAGS = {"S": 0x02, "SA": 0x12, "A": 0x10, "R": 0x04, "RA": 0x14}


def tcp_frame(flags, src, sport, dst, dport, seq, ack, smac, dmac, size=60):
    """An Ethernet/IPv4/TCP frame (no options, window 65535), padded to `size` bytes."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, TCP_FLAGS[flags],
                      65535, 0, 0)
    c = _csum(_pseudo(src, dst, 6, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", c) + tcp[18:]
    frame = _mac(dmac) + _mac(smac) + b"\x08\x00" + _ipv4(src, dst, 6, tcp)
    return frame + bytes(max(0, size - len(frame)))


def tcp_connection(i, flows):
    """The four frames of connection i: (port, flags, frame) with port 0 = client side."""
    cip, cport = flow_tuple(i % flows, flows)
    c, s = (cip, cport), (SERVER_IP, TCP_DPORT)
    return [
        (0, "S", tcp_frame("S", *c, *s, TCP_CLIENT_ISN, 0, CLIENT_MAC, SERVER_MAC)),
        (1, "SA", tcp_frame("SA", *s, *c, TCP_SERVER_ISN, TCP_CLIENT_ISN + 1, SERVER_MAC, CLIENT_MAC)),
        (0, "A", tcp_frame("A", *c, *s, TCP_CLIENT_ISN + 1, TCP_SERVER_ISN + 1, CLIENT_MAC, SERVER_MAC)),
        (0, "RA", tcp_frame("RA", *c, *s, TCP_CLIENT_ISN + 1, TCP_SERVER_ISN + 1, CLIENT_MAC, SERVER_MAC)),
    ]


def frames(profile, count, flows=DEFAULT_FLOWS):
    """The first `count` frames of a profile, in sending order: (port, frame bytes)."""
    if profile == "udp64":
        f = udp_frame(60)
        return [(0, f)] * count
    if profile == "imix":
        seq = [size for size, weight in IMIX for _ in range(weight)]
        cache = {size: udp_frame(size) for size, _ in IMIX}
        return [(0, cache[seq[i % len(seq)]]) for i in range(count)]
    if profile == "flows":
        out = []
        for i in range(count):
            ip, port = flow_tuple(i % flows, flows)
            out.append((0, udp_frame(60, src=ip, sport=port)))
        return out
    if profile == "tcp_cps":
        out = []
        i = 0
        while len(out) < count:
            out.extend((p, f) for p, _, f in tcp_connection(i, flows))
            i += 1
        return out[:count]
    raise ValueError("unknown profile %r (known: %s)" % (profile, ", ".join(PROFILES)))
