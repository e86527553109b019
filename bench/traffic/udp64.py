"""TRex STL profile: 64-byte UDP frames (60 without FCS), one flow, port 0 -> port 1
(direction 1: the mirror). `start -f udp64.py -m 100%` for line rate; `-t --size 128` etc.
for the other RFC 2544 sizes."""

from trex_stl_lib.api import STLStream, STLTXCont

import trex_common as C


class Udp64:
    def get_streams(self, tunables=(), direction=0, **kwargs):
        args = C.parse(tunables, __doc__,
                       size=(int, 60, "frame size without FCS (60 = a 64-byte frame)"))
        return [STLStream(packet=C.builder(C.udp(args.size, direction)),
                          mode=STLTXCont(pps=args.pps))]


def register():
    return Udp64()
