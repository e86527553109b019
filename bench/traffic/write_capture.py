#!/usr/bin/env python3
"""Writes a benchmark profile's traffic (fwd_traffic.py, the same the TRex profiles send) as a
capture: pcapng with interface 0 = port a (clients) and 1 = port b (servers), for
`fwd replay --in FILE` and the testbed; or classic pcap of one direction (--format pcap), for
pktgen-DPDK (`-s 0:FILE`) and tcpreplay.

  write_capture.py PROFILE OUT [--count N] [--flows N] [--format pcapng|pcap]
                   [--swap-ports] [--only-port 0|1] [--gap-ns NS]

PROFILE: udp64, imix, flows, tcp_cps. --swap-ports sends everything from the other side (the
abuse case: connections opened from the server side). Needs only python3.
"""

import argparse
import struct
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fwd_traffic as T  # noqa: E402


def pad4(b):
    return b + bytes(-len(b) % 4)


def block(kind, body):
    n = 12 + len(body)
    return struct.pack("<II", kind, n) + body + struct.pack("<I", n)


def pcapng(frames, gap_ns, t0_ns):
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))]
    # two Ethernet interfaces, if_tsresol = 9 (nanoseconds)
    idb = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    out += [block(1, idb), block(1, idb)]
    for i, (port, data) in enumerate(frames):
        ts = t0_ns + i * gap_ns
        body = struct.pack("<IIIII", port, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        out.append(block(6, body + pad4(data)))
    return b"".join(out)


def pcap(frames, gap_ns, t0_ns):
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]  # nanosecond pcap
    for i, (_, data) in enumerate(frames):
        ts = t0_ns + i * gap_ns
        out.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(data), len(data)) + data)
    return b"".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("profile", choices=sorted(T.PROFILES))
    p.add_argument("out")
    p.add_argument("--count", type=int, default=1000, help="frames (default 1000)")
    p.add_argument("--flows", type=int, default=T.DEFAULT_FLOWS)
    p.add_argument("--format", choices=["pcapng", "pcap"], default="pcapng")
    p.add_argument("--swap-ports", action="store_true")
    p.add_argument("--only-port", type=int, choices=[0, 1],
                   help="keep one side's frames (a pcap for one generator port)")
    p.add_argument("--gap-ns", type=int, default=1000, help="time between frames (default 1 us)")
    a = p.parse_args(argv)
    if a.count < 1 or a.flows < 1 or a.gap_ns < 0:
        p.error("--count and --flows must be positive, --gap-ns not negative")
    frames = T.frames(a.profile, a.count, a.flows)
    if a.swap_ports:
        frames = [(1 - port, f) for port, f in frames]
    if a.only_port is not None:
        frames = [(0, f) for port, f in frames if port == a.only_port]
    if a.format == "pcap":
        if any(port for port, _ in frames):
            p.error("a pcap holds one direction: %s sends from both ports; use pcapng" % a.profile)
        data = pcap(frames, a.gap_ns, 1_700_000_000 * 10**9)
    else:
        data = pcapng(frames, a.gap_ns, 1_700_000_000 * 10**9)
    with open(a.out, "wb") as f:
        f.write(data)
    print("%s: %d frames of %s" % (a.out, len(frames), a.profile))


if __name__ == "__main__":
    main()
