-- pktgen-DPDK: 64-byte UDP over 65536 flows (1024 client addresses x 64 source ports),
-- as bench/traffic/flows.py: fills fwd's connection table, spreads over RSS queues.
require "common"
fwd.udp(64, 100)
pktgen.range.src_ip("0", "start", fwd.flow_ip_base)
pktgen.range.src_ip("0", "inc", "0.0.0.1")
pktgen.range.src_ip("0", "min", fwd.flow_ip_base)
pktgen.range.src_ip("0", "max", "198.18.4.0")           -- 1024 addresses
pktgen.range.src_port("0", "start", fwd.flow_port_base)
pktgen.range.src_port("0", "inc", 1)
pktgen.range.src_port("0", "min", fwd.flow_port_base)
pktgen.range.src_port("0", "max", fwd.flow_port_base + fwd.flow_ports - 1)
pktgen.range.dst_ip("0", "start", fwd.server_ip)
pktgen.range.dst_ip("0", "inc", "0.0.0.0")
pktgen.range.dst_port("0", "start", fwd.udp_dport)
pktgen.range.dst_port("0", "inc", 0)
pktgen.range.dst_mac("0", "start", fwd.server_mac)
pktgen.range.pkt_size("0", "start", 64)
pktgen.range.pkt_size("0", "inc", 0)
pktgen.set_range("0", "on")
fwd.run("flows", 10)
