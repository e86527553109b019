-- What the pktgen-DPDK scripts share: the addresses and ports of bench/traffic/fwd_traffic.py.
-- Port 0 faces fwd's port a (clients, 198.18.0.0/16), port 1 its port b (servers).
-- Run from Pktgen-DPDK's directory: pktgen -l 0-4 -n 4 -- -P -m "[1:2].0,[3:4].1" -f bench/pktgen/udp64.lua
package.path = package.path .. ";?.lua;test/?.lua;app/?.lua;bench/pktgen/?.lua;"
require "Pktgen"

fwd = {
    client_mac = "02:00:00:00:00:01", server_mac = "02:00:00:00:00:02",
    client_ip = "198.18.0.1", server_ip = "198.19.0.1",
    udp_sport = 1025, udp_dport = 9,
    flow_ip_base = "198.18.0.1", flow_port_base = 1024, flow_ports = 64,
}

-- One UDP flow from port 0 to port 1 at `size` bytes (pktgen counts the 4-byte FCS: 64 = 64).
function fwd.udp(size, rate)
    pktgen.set("0", "size", size)
    pktgen.set("0", "rate", rate or 100)
    pktgen.set_proto("0", "udp")
    pktgen.set_ipaddr("0", "src", fwd.client_ip .. "/16")
    pktgen.set_ipaddr("0", "dst", fwd.server_ip)
    pktgen.set_mac("0", "dst", fwd.server_mac)
    pktgen.set("0", "sport", fwd.udp_sport)
    pktgen.set("0", "dport", fwd.udp_dport)
end

-- Runs port 0 for `seconds` and prints what port 1 received, as one RESULT line.
function fwd.run(name, seconds)
    pktgen.clr()
    pktgen.start("0")
    pktgen.delay(seconds * 1000)
    pktgen.stop("0")
    pktgen.delay(500)
    local tx = pktgen.portStats("0", "port")[0]
    local rx = pktgen.portStats("1", "port")[1]
    printf("RESULT profile=%s tx_pkts=%d rx_pkts=%d rx_pps=%d\n", name,
           tx.opackets, rx.ipackets, rx.ipackets // seconds)
end
