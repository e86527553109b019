"""What the TRex STL profiles share: scapy versions of fwd_traffic's frames and the tunables.
Loaded by TRex from this directory (copy bench/traffic/ to the TRex box as it is)."""

import argparse

from trex_stl_lib.api import (Ether, IP, UDP, TCP, Raw, STLPktBuilder, STLScVmRaw,
                              STLVmTupleGen, STLVmWrFlowVar, STLVmFixChecksumHw,
                              CTRexVmInsFixHwCs)

import fwd_traffic as T


def parse(tunables, description, **extra):
    """The profile's tunables (`-t --flows 1000` in the TRex console)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pps", type=float, default=1e6, help="packets per second per stream")
    for name, (kind, default, text) in extra.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind,
                            default=default, help=text)
    return parser.parse_args(list(tunables))


def udp(size, direction=0, src=T.CLIENT_IP, sport=T.UDP_SPORT):
    """The scapy twin of fwd_traffic.udp_frame; direction 1 sends server -> client."""
    smac, dmac, s, d, sp, dp = T.CLIENT_MAC, T.SERVER_MAC, src, T.SERVER_IP, sport, T.UDP_DPORT
    if direction == 1:
        smac, dmac, s, d, sp, dp = dmac, smac, d, s, dp, sp
    base = Ether(src=smac, dst=dmac) / IP(src=s, dst=d, id=1, ttl=64) / UDP(sport=sp, dport=dp)
    pad = size - len(base)
    if pad < 0:
        raise ValueError("frame size %d is below %d" % (size, len(base)))
    return base / Raw(load=bytes(pad))


def tcp(flags, client_side, seq, ack):
    """The scapy twin of fwd_traffic.tcp_frame for the first connection."""
    c = (T.CLIENT_MAC, T.FLOW_IP_BASE, T.FLOW_PORT_BASE)
    s = (T.SERVER_MAC, T.SERVER_IP, T.TCP_DPORT)
    (smac, sip, sport), (dmac, dip, dport) = (c, s) if client_side else (s, c)
    base = (Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip, id=1, ttl=64)
            / TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, window=65535))
    # 54 bytes: the NIC pads it to the 60-byte minimum with zeros on the wire, as
    # fwd_traffic.tcp_frame does (padding as TCP payload would change the IP length)
    return base


def tuple_vm(flows, ip_field, port_field, l4):
    """A field engine that walks the `flows` (address, port) pairs of fwd_traffic.flow_ranges,
    writing them into `ip_field`/`port_field` and fixing the checksums (NIC offload)."""
    ip_min, ip_max, port_min, port_max = T.flow_ranges(flows)
    l4_type = CTRexVmInsFixHwCs.L4_TYPE_UDP if l4 == "UDP" else CTRexVmInsFixHwCs.L4_TYPE_TCP
    return STLScVmRaw([
        STLVmTupleGen(ip_min=ip_min, ip_max=ip_max, port_min=port_min, port_max=port_max,
                      name="flow"),
        STLVmWrFlowVar(fv_name="flow.ip", pkt_offset=ip_field),
        STLVmWrFlowVar(fv_name="flow.port", pkt_offset=port_field),
        STLVmFixChecksumHw(l3_offset="IP", l4_offset=l4, l4_type=l4_type),
    ])


def builder(pkt, vm=None):
    return STLPktBuilder(pkt=pkt, vm=vm) if vm is not None else STLPktBuilder(pkt=pkt)
