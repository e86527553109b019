#!/usr/bin/env python3
"""Loads every TRex STL profile of this directory in TRex's own stateless simulator (offline,
`trex-stl-sim --json`, from PyPI's lbr-trex-client) and checks what it would send against
fwd_traffic.py, the definition the capture writer uses too:
  - the profile loads, its streams are built and survive TRex's to_json/from_json check;
  - the stream count, rates, inter-stream gaps and field-engine ranges are the intended ones;
  - each stream's base packet is byte for byte the frame write_capture.py writes;
  - a bad tunable is refused (the check can fail).
  check_profiles.py            exit 0 and "N passed, 0 failed", else the failures
"""

import base64
import contextlib
import io
import json
import os
import sys
import tempfile
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fwd_traffic as T  # noqa: E402

warnings.filterwarnings("ignore")
import lbr_trex_client  # noqa: E402,F401  (puts TRex's modules on sys.path)
from trex.stl.trex_stl_sim import main as stl_sim  # noqa: E402


def sim(profile, *tunables, port=0):
    """The profile's streams as TRex's simulator prints them with --json."""
    out = io.StringIO()
    args = ["-p", tempfile.gettempdir(), "-f", os.path.join(HERE, profile + ".py"),
            "-i", str(port), "--json"]
    if tunables:
        args += ["-t"] + list(tunables)
    with contextlib.redirect_stdout(out):
        rc = stl_sim(args)
    if rc not in (None, 0):
        raise RuntimeError("trex-stl-sim %s exited %s: %s" % (profile, rc, out.getvalue()[-500:]))
    text = out.getvalue()
    return json.loads(text[text.index("["):])


def packet(stream):
    return base64.b64decode(stream["packet"]["binary"])


def unpadded(frame):
    """The frame without Ethernet padding (TRex leaves short frames to the NIC to pad)."""
    return frame[:14 + int.from_bytes(frame[16:18], "big")]


def pps(stream):
    assert stream["mode"]["type"] == "continuous", stream["mode"]
    assert stream["mode"]["rate"]["type"] == "pps", stream["mode"]
    return stream["mode"]["rate"]["value"]


def tuple_gen(stream):
    (gen,) = [i for i in stream["vm"]["instructions"] if i["type"] == "tuple_flow_var"]
    return gen


def check_udp64():
    (s,) = sim("udp64")
    assert packet(s) == T.udp_frame(60), "udp64 packet differs from write_capture's"
    assert len(packet(s)) == 60
    assert pps(s) == 1e6
    (s,) = sim("udp64", "--size", "1514", "--pps", "5000")
    assert packet(s) == T.udp_frame(1514) and pps(s) == 5000
    (s,) = sim("udp64", port=1)
    assert packet(s) == T.udp_frame(60, src=T.SERVER_IP, dst=T.CLIENT_IP, sport=T.UDP_DPORT,
                                    dport=T.UDP_SPORT, smac=T.SERVER_MAC, dmac=T.CLIENT_MAC)


def check_imix():
    streams = sim("imix", "--pps", "1200")
    assert [len(packet(s)) for s in streams] == [size for size, _ in T.IMIX]
    for s, (size, weight) in zip(streams, T.IMIX):
        assert packet(s) == T.udp_frame(size)
        assert abs(pps(s) - 1200 * weight / 12) < 1e-6, pps(s)
    sizes = [len(f) for _, f in T.frames("imix", 12)]
    assert sorted(sizes) == sorted(size for size, w in T.IMIX for _ in range(w))


def check_flows():
    (s,) = sim("flows", "--flows", "1000")
    assert packet(s) == T.frames("flows", 1, 1000)[0][1]
    g = tuple_gen(s)
    ip_min, ip_max, port_min, port_max = T.flow_ranges(1000)
    addrs = T.ip_to_int(ip_max) - T.ip_to_int(ip_min) + 1
    ports = port_max - port_min + 1
    assert (g["ip_min"], g["ip_max"]) == (T.ip_to_int(ip_min), T.ip_to_int(ip_max)), g
    assert (g["port_min"], g["port_max"]) == (port_min, port_max), g
    assert addrs * ports >= 1000 > (addrs - 1) * ports
    # the capture walks the same set: every (address, port) of the generator's ranges
    caps = {(f[26:30], f[34:36]) for _, f in T.frames("flows", 1000, 1000)}
    assert len(caps) == 1000
    (s,) = sim("flows")
    g = tuple_gen(s)
    assert (g["ip_max"] - g["ip_min"] + 1) * (g["port_max"] - g["port_min"] + 1) == T.DEFAULT_FLOWS


def check_tcp_cps():
    client = sim("tcp_cps", "--cps", "5000", "--delay-us", "500", port=0)
    server = sim("tcp_cps", "--cps", "5000", "--delay-us", "500", port=1)
    conn = T.tcp_connection(0, T.DEFAULT_FLOWS)
    want_client = [unpadded(f) for port, _, f in conn if port == 0]
    want_server = [unpadded(f) for port, _, f in conn if port == 1]
    assert all(len(f) == 60 for _, _, f in conn)
    assert [packet(s) for s in client] == want_client, "client-side TCP frames differ"
    assert [packet(s) for s in server] == want_server, "server-side TCP frames differ"
    assert [s["isg"] for s in client] == [0.0, 1000.0, 1500.0], [s["isg"] for s in client]
    assert [s["isg"] for s in server] == [500.0]
    assert all(pps(s) == 5000 for s in client + server)
    # SYN-ACK and ACK answer the SYN: sequence numbers line up
    assert want_server[0][42:46] == (T.TCP_CLIENT_ISN + 1).to_bytes(4, "big")


def check_bad_tunable_is_refused():
    try:
        sim("flows", "--flows", "0")
    except Exception as e:  # TRex wraps the profile's ValueError
        assert "flows" in str(e), e
        return
    raise AssertionError("--flows 0 was accepted")


def main():
    checks = [check_udp64, check_imix, check_flows, check_tcp_cps, check_bad_tunable_is_refused]
    failed = 0
    for c in checks:
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                c()
            print("ok   %s" % c.__name__)
        except Exception as e:  # report every failure, not just the first
            failed += 1
            print("FAIL %s: %s: %s" % (c.__name__, type(e).__name__, e))
    print("%d passed, %d failed" % (len(checks) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
