//! Tunables, named and defaulted as the Linux sysctls `net.netfilter.nf_conntrack_*`.

/// Timeouts in seconds (Linux defaults). Each must stay below 24 days: expiry times are kept
/// as wrapping 32-bit ticks of 2^20 ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    /// A connection with data not yet acknowledged (`nf_conntrack_tcp_timeout_unacknowledged`).
    pub tcp_unacknowledged: u32,
    /// UDP before a reply has been seen, or within 2 s of the first packet.
    pub udp: u32,
    /// UDP that has seen traffic both ways for more than 2 s (ASSURED).
    pub udp_stream: u32,
    pub icmp: u32,
    pub icmpv6: u32,
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_unacknowledged: 300,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            icmpv6: 30,
            generic: 600,
        }
    }
}

/// The `[conntrack]` section of the appliance configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Entries in all shards together (`[conntrack] max`); split evenly by [`Config::per_shard`].
    pub max: u32,
    pub timeouts: Timeouts,
    /// `nf_conntrack_tcp_be_liberal`: accept segments outside the tracked window instead of
    /// marking them INVALID.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_tcp_loose`: pick up connections already established (a non-SYN first
    /// packet creates an entry with liberal window tracking).
    pub tcp_loose: bool,
    /// Keep the entry of a connection answered by an ICMP destination unreachable, as current
    /// Linux does. Default `false`: the entry is destroyed, as the iptables tutorial describes
    /// (see docs/CONNTRACK.md for why).
    pub keep_on_icmp_unreachable: bool,
    /// Destroy an ICMP query entry once every request has been answered (the seed; default).
    /// `false` keeps it until its timeout, refreshed by every packet, as current Linux does.
    pub icmp_destroy_on_reply: bool,
    /// Key of the flow hash; set it randomly at start so bucket chains cannot be aimed at.
    pub hash_seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max: 262_144,
            timeouts: Timeouts::default(),
            tcp_be_liberal: false,
            tcp_loose: true,
            keep_on_icmp_unreachable: false,
            icmp_destroy_on_reply: true,
            hash_seed: 0x5eed_f00d_cafe_d00d,
        }
    }
}

impl Config {
    /// Capacity of one shard when `max` is split over `shards` workers (rounded up, at least 1).
    pub fn per_shard(&self, shards: usize) -> u32 {
        let shards = shards.max(1) as u32;
        self.max.div_ceil(shards).max(1)
    }
}
