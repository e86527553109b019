//! The one listing of reasons a frame is dropped, by the data plane or by the I/O around it: the
//! per-port counters (`fwd_drops_total{port,reason}`) and the data plane's own
//! (`fwd_dataplane_drops_total{reason}`) index the same array, so the reason the data plane
//! gives reaches the port's counters unchanged. Malformed frames keep wire's finer reason in a
//! separate array ([`wire::Malformed`]); this listing says which stage dropped.

wire::reason_listing! {
    /// Why a frame was dropped (or not forwarded); indexes a counter array.
    pub enum DropReason {
        TxRingFull => ("tx_ring_full", "the egress port's transmit ring had no room"),
        Policy => ("policy", "a pipeline without finer reasons decided to drop the frame (the firewall always names its reason)"),
        Malformed => ("malformed", "the frame could not be parsed (see the malformed reasons)"),
        RawDrop => ("raw_drop", "a DROP rule of raw PREROUTING (or its policy)"),
        NatDrop => ("nat_drop", "a DROP rule of a nat chain (or its policy)"),
        MangleDrop => ("mangle_drop", "a DROP rule of a mangle chain (PREROUTING, FORWARD, POSTROUTING) or its policy"),
        SecurityDrop => ("security_drop", "a DROP rule of security FORWARD or a chain it reached (or its policy)"),
        FilterRule => ("filter_rule", "a DROP rule of filter FORWARD or a chain it reached"),
        FilterPolicy => ("filter_policy", "the DROP policy of filter FORWARD"),
        Reject => ("reject", "a REJECT rule answered the frame instead of forwarding it"),
        RejectSuppressed => ("reject_suppressed", "a REJECT rule matched but no reply is allowed (ICMP error, broadcast, multicast, fragment, bad checksum, RST)"),
        CtTableFull => ("ct_table_full", "conntrack table full and nothing could be early-dropped"),
        CtClash => ("ct_clash", "a new connection clashed with one confirmed meanwhile"),
        CtChainFull => ("ct_chain_full", "the new connection's conntrack hash chain is at its bound and nothing in it could be early-dropped"),
        NatPortsExhausted => ("nat_ports_exhausted", "SNAT/MASQUERADE found no free port for the reply tuple"),
        NoMasqueradeAddress => ("masquerade_no_address", "MASQUERADE on a port with no configured address"),
        RedirectLocal => ("redirect_local", "a REDIRECT rule: delivery to the box's own stack, which a bump in the wire does not have"),
        ChainTooDeep => ("chain_too_deep", "jumps nested deeper than the traversal stack"),
        RewriteFailed => ("rewrite_failed", "a rewriting target (TCPMSS, ECN) met a TCP header the kernel drops: shorter than 20 bytes or than its data offset, or a path MTU no larger than the headers"),
        FragmentOfDropped => ("fragment_of_dropped", "a later fragment of a datagram whose first fragment was dropped or rejected"),
        VlanDropped => ("vlan_dropped", "an 802.1Q-tagged frame, dropped by [bridge] vlan = \"drop\""),
        QinqDropped => ("qinq_dropped", "a QinQ frame (two tags, or an 802.1ad/0x9100 tag), dropped by [bridge] qinq = \"drop\""),
        PppoeDropped => ("pppoe_dropped", "a PPPoE session frame, dropped by [bridge] pppoe = \"drop\" or because its PPP protocol is neither IPv4, IPv6 nor a control protocol"),
        PppoeDiscoveryDropped => ("pppoe_discovery_dropped", "a PPPoE discovery frame, dropped by [bridge] pppoe_discovery = \"drop\""),
        LinkLocal => ("link_local_dropped", "a frame to 01:80:c2:00:00:00-0f (STP, pause, LACP, EAPOL, LLDP), which an 802.1D bridge never forwards ([bridge] forward_link_local)"),
        EthertypeDropped => ("ethertype_dropped", "a non-IP frame other than ARP and PPPoE, dropped by [bridge] other_ethertypes = \"drop\""),
        NoBuffer => ("no_buffer", "no free buffer to build a frame"),
        HandoffQueueFull => ("handoff_queue_full", "the queue to the worker owning the flow was full"),
        PortDown => ("port_down", "the egress port was down, gone, or its sockets were being rebound"),
        Oversize => ("oversize", "the frame was longer than a receive buffer (dropped by fwd's XDP program)"),
        HashlimitFull => ("hashlimit_full", "a -m hashlimit table was at its --hashlimit-htable-max and could not take the packet's group: dropped, as the kernel's hotdrop does"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_dense_and_named_uniquely() {
        let mut names: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert!(!r.description().is_empty());
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
    }
}
