//! The one listing of reasons the data plane drops a frame. Malformed frames keep wire's finer
//! reason in a separate array ([`wire::Malformed`]); this listing says which stage dropped.

wire::reason_listing! {
    /// Why the data plane dropped (or did not forward) a frame; indexes a counter array.
    pub enum DropReason {
        Malformed => ("malformed", "the frame could not be parsed (see the malformed reasons)"),
        RawDrop => ("raw_drop", "a DROP rule of raw PREROUTING (or its policy)"),
        NatDrop => ("nat_drop", "a DROP rule of a nat chain (or its policy)"),
        FilterRule => ("filter_rule", "a DROP rule of filter FORWARD or a chain it reached"),
        FilterPolicy => ("filter_policy", "the DROP policy of filter FORWARD"),
        Reject => ("reject", "a REJECT rule answered the frame instead of forwarding it"),
        RejectSuppressed => ("reject_suppressed", "a REJECT rule matched but no reply is allowed (ICMP error, broadcast, multicast, fragment, bad checksum, RST)"),
        CtTableFull => ("ct_table_full", "conntrack table full and nothing could be early-dropped"),
        CtClash => ("ct_clash", "a new connection clashed with one confirmed meanwhile"),
        CtChainFull => ("ct_chain_full", "the new connection's conntrack hash chain is at its bound and nothing in it could be early-dropped"),
        NatPortsExhausted => ("nat_ports_exhausted", "SNAT/MASQUERADE found no free port for the reply tuple"),
        NoMasqueradeAddress => ("masquerade_no_address", "MASQUERADE on a port with no configured address"),
        ChainTooDeep => ("chain_too_deep", "jumps nested deeper than the traversal stack"),
        FragmentOfDropped => ("fragment_of_dropped", "a later fragment of a datagram whose first fragment was dropped or rejected"),
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
