-- pktgen-DPDK: IMIX 64/594/1518 (7:4:1) from a capture, as bench/traffic/imix.py. Write it first:
--   bench/traffic/write_capture.py imix imix.pcap --format pcap --count 1200
--   pktgen ... -- -P -m "[1:2].0,[3:4].1" -s 0:imix.pcap -f bench/pktgen/imix.lua
require "common"
pktgen.set("0", "rate", 100)
pktgen.pcap("0", "on")
fwd.run("imix", 10)
