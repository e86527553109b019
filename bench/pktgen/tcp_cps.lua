-- pktgen-DPDK: new TCP connections. pktgen cannot answer a SYN from the other port in step,
-- so this sends the client side of bench/traffic/tcp_cps.py (SYN, ACK, RST per connection)
-- from a capture: what fwd's conntrack sees as new connection attempts (NEW entries per
-- second; the ACKs and RSTs of unanswered SYNs are counted INVALID by a stateful ruleset).
-- The full handshake needs TRex (tcp_cps.py on both ports) or fwd replay on the pcapng.
--   bench/traffic/write_capture.py tcp_cps syn.pcap --format pcap --only-port 0 --count 196608
--   pktgen ... -- -P -m "[1:2].0,[3:4].1" -s 0:syn.pcap -f bench/pktgen/tcp_cps.lua
require "common"
pktgen.set("0", "rate", 10)
pktgen.pcap("0", "on")
fwd.run("tcp_cps", 10)
