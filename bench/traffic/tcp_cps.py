"""TRex STL profile: new TCP connections per second through a stateful firewall. Each
connection is SYN (client port), SYN-ACK (server port, `--delay-us` later), ACK and RST
(client port, 2 and 3 delays later): four streams at `--cps` each, walking the same
(address, port) tuples in lock-step, so the i-th SYN-ACK answers the i-th SYN once that has
crossed. Load it on both ports: `start -f tcp_cps.py -p 0 1 -t --cps 100000`
(port 0 gets direction 0, port 1 direction 1). Count connections with fwd's conntrack
counters; a SYN-ACK dropped as INVALID means the delay is shorter than fwd's latency."""

from trex_stl_lib.api import STLStream, STLTXCont

import fwd_traffic as T
import trex_common as C


class TcpCps:
    def get_streams(self, tunables=(), direction=0, **kwargs):
        args = C.parse(tunables, __doc__,
                       cps=(float, 10000.0, "new connections per second"),
                       flows=(int, T.DEFAULT_FLOWS, "distinct client (address, port) pairs"),
                       delay_us=(float, 1000.0, "gap between the steps of a connection"))
        if args.flows < 1 or args.cps <= 0:
            raise ValueError("--flows and --cps must be positive")
        ci, si = T.TCP_CLIENT_ISN, T.TCP_SERVER_ISN
        if direction == 1:
            steps = [("SA", False, si, ci + 1, 1)]
        else:
            steps = [("S", True, ci, 0, 0), ("A", True, ci + 1, si + 1, 2),
                     ("RA", True, ci + 1, si + 1, 3)]
        streams = []
        for flags, client_side, seq, ack, gap in steps:
            ip_field, port_field = ("IP.src", "TCP.sport") if client_side else ("IP.dst", "TCP.dport")
            vm = C.tuple_vm(args.flows, ip_field, port_field, "TCP")
            streams.append(STLStream(name=flags, isg=gap * args.delay_us,
                                     packet=C.builder(C.tcp(flags, client_side, seq, ack), vm),
                                     mode=STLTXCont(pps=args.cps)))
        return streams


def register():
    return TcpCps()
