//! Why conntrack marked a packet INVALID or dropped it: one listing, indexing a counter array.

macro_rules! reasons {
    ($($variant:ident => $name:literal, $desc:literal;)*) => {
        /// Reason codes; `CtReason::X as usize` indexes [`CT_REASONS`] and per-reason counters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum CtReason { $($variant),* }

        /// (name, description) of every [`CtReason`], in discriminant order.
        pub const CT_REASONS: &[(&str, &str)] = &[$(($name, $desc)),*];
    };
}

reasons! {
    TableFull => "ct_table_full", "conntrack table full and no entry could be early-dropped";
    Clash => "ct_clash", "a new connection clashed with one confirmed meanwhile";
    IcmpNotRequest => "ct_icmp_not_request", "ICMP message that cannot start a connection (lone reply, unknown type)";
    IcmpErrorNoConn => "ct_icmp_error_no_conn", "ICMP error about a connection that is not tracked";
    IcmpErrorForged => "ct_icmp_error_forged", "ICMP error whose outer destination is not an endpoint of the connection";
    IcmpErrorBadInner => "ct_icmp_error_bad_inner", "ICMP error embedding a header that cannot be inverted";
    TcpBadFlags => "ct_tcp_bad_flags", "TCP flag combination netfilter rejects";
    TcpInvalidTransition => "ct_tcp_invalid_state", "TCP segment not valid in the connection's state";
    TcpNoPickup => "ct_tcp_no_pickup", "TCP mid-stream segment while loose pickup is off";
    TcpOutOfWindow => "ct_tcp_out_of_window", "TCP segment outside the tracked window";
    BadChecksum => "ct_bad_checksum", "TCP, UDP, ICMP or ICMPv6 checksum is wrong (nf_conntrack_checksum)";
    ChainFull => "ct_chain_full", "the new connection's hash chain is full and nothing in it could be early-dropped";
}

impl CtReason {
    pub const COUNT: usize = CT_REASONS.len();

    pub fn name(self) -> &'static str {
        CT_REASONS[self as usize].0
    }

    pub fn description(self) -> &'static str {
        CT_REASONS[self as usize].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_indexed_by_discriminant() {
        assert_eq!(CtReason::TableFull.name(), "ct_table_full");
        assert_eq!(CtReason::ChainFull as usize, CtReason::COUNT - 1);
        assert!(CtReason::IcmpErrorForged.description().contains("outer"));
    }
}
