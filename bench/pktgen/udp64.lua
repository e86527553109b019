-- pktgen-DPDK: 64-byte UDP frames, one flow, port 0 -> port 1 through fwd (bench/traffic/udp64.py).
require "common"
fwd.udp(64, 100)
fwd.run("udp64", 10)
