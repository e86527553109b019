"""TRex STL profile: 64-byte UDP frames over many flows (default 65536: 1024 client
addresses x 64 source ports), port 0 -> port 1: what fills fwd's connection table and spreads
over RSS queues. `-t --flows 1000000` for a million."""

from trex_stl_lib.api import STLStream, STLTXCont

import fwd_traffic as T
import trex_common as C


class Flows:
    def get_streams(self, tunables=(), direction=0, **kwargs):
        args = C.parse(tunables, __doc__,
                       flows=(int, T.DEFAULT_FLOWS, "number of distinct flows"),
                       size=(int, 60, "frame size without FCS"))
        if args.flows < 1:
            raise ValueError("--flows must be at least 1")
        pkt = C.udp(args.size, 0, src=T.FLOW_IP_BASE, sport=T.FLOW_PORT_BASE)
        vm = C.tuple_vm(args.flows, "IP.src", "UDP.sport", "UDP")
        return [STLStream(packet=C.builder(pkt, vm), mode=STLTXCont(pps=args.pps))]


def register():
    return Flows()
