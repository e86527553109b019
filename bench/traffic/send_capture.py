#!/usr/bin/env python3
"""Sends a pcapng written by write_capture.py into the netns testbed (scripts/testbed.sh):
frames of interface 0 leave the client's C0 (towards fwd's port a), frames of interface 1 the
server's S0 (towards port b), in the capture's order, with the MACs rewritten to the testbed's
so the receiving stack accepts them. A functional replay (a few 10k frames per second from
Python), not a rate generator: for rates use trafgen (bench/rfc2544.sh) or TRex.

  send_capture.py IN.pcapng [--prefix fwd-] [--gap-us US]

Needs root (AF_PACKET, setns). Prints "sent N frames (A from C0, B from S0)".
"""

import argparse
import ctypes
import os
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000


def read_pcapng(path):
    """(interface id, frame) of each Enhanced Packet Block; little-endian sections only
    (what write_capture.py writes)."""
    data = open(path, "rb").read()
    off, out = 0, []
    while off + 12 <= len(data):
        kind, length = struct.unpack_from("<II", data, off)
        if length < 12 or off + length > len(data):
            raise ValueError("%s: bad block length %d at offset %d" % (path, length, off))
        if kind == 0x0A0D0D0A and struct.unpack_from("<I", data, off + 8)[0] != 0x1A2B3C4D:
            raise ValueError("%s: only little-endian pcapng is supported" % path)
        if kind == 6:
            iface, _, _, caplen, _ = struct.unpack_from("<IIIII", data, off + 8)
            out.append((iface, data[off + 28:off + 28 + caplen]))
        off += length
    return out


def socket_in(netns, dev):
    """An AF_PACKET socket bound to `dev` inside network namespace `netns`."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open("/var/run/netns/" + netns, os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + netns)
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        s.bind((dev, 0))
        mac = s.getsockname()[4]  # (ifname, proto, pkttype, hatype, hardware address)
        if libc.setns(own, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
    return s, mac


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("capture")
    p.add_argument("--prefix", default="fwd-")
    p.add_argument("--gap-us", type=float, default=50.0, help="pause between frames (default 50)")
    a = p.parse_args(argv)
    frames = read_pcapng(a.capture)
    if any(i not in (0, 1) for i, _ in frames):
        p.error("interface ids must be 0 (port a) or 1 (port b)")
    (sa, mac_a), (sb, mac_b) = socket_in(a.prefix + "client", "C0"), socket_in(a.prefix + "server", "S0")
    sent = [0, 0]
    for iface, f in frames:
        if iface == 0:
            sa.send(mac_b + mac_a + f[12:])
        else:
            sb.send(mac_a + mac_b + f[12:])
        sent[iface] += 1
        if a.gap_us:
            time.sleep(a.gap_us / 1e6)
    print("sent %d frames (%d from C0, %d from S0)" % (len(frames), sent[0], sent[1]))


if __name__ == "__main__":
    sys.exit(main())
