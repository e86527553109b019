"""TRex STL profile: IMIX, frames of 64, 594 and 1518 bytes (with FCS) in the ratio 7:4:1,
one stream per size, port 0 -> port 1 (direction 1: the mirror)."""

from trex_stl_lib.api import STLStream, STLTXCont

import fwd_traffic as T
import trex_common as C


class Imix:
    def get_streams(self, tunables=(), direction=0, **kwargs):
        args = C.parse(tunables, __doc__)
        total = sum(w for _, w in T.IMIX)
        return [STLStream(packet=C.builder(C.udp(size, direction)),
                          mode=STLTXCont(pps=args.pps * weight / total))
                for size, weight in T.IMIX]


def register():
    return Imix()
