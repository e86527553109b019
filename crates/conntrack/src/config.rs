//! Tunables, named and defaulted as the Linux sysctls `net.netfilter.nf_conntrack_*`.
//!
//! `Config` deserialises from the `[conntrack]` table of `appliance.toml` (unknown keys are
//! errors; missing keys take the defaults), e.g.
//!
//! ```toml
//! [conntrack]
//! max = 1048576
//! tcp_be_liberal = false
//! [conntrack.timeouts]
//! icmp = 30
//! tcp_established = 432000
//! ```

use serde::Deserialize;

use crate::hash::HashKey;

/// Longest timeout: deadlines are wrapping 32-bit ticks of 2^20 ns (52 days a turn), compared
/// as signed differences.
pub const MAX_TIMEOUT_SECS: u32 = 24 * 24 * 3600;

/// Timeouts in seconds (Linux defaults). Each must stay below 24 days: expiry times are kept
/// as wrapping 32-bit ticks of 2^20 ns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Key of the flow hash (32 hex digits in TOML). The default is [`HashKey::FIXED`], so
    /// replay and tests are deterministic; `fwd run` draws a random one from the OS unless the
    /// configuration sets it, so bucket chains cannot be aimed at.
    pub hash_key: HashKey,
    /// `nf_conntrack_checksum`: a TCP, UDP, ICMP or ICMPv6 packet with a wrong checksum is
    /// INVALID and neither creates nor changes an entry. The caller verifies (it has the
    /// bytes) and reports it with [`crate::Shard::track_bad_checksum`].
    pub checksum: bool,
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
            hash_key: HashKey::FIXED,
            checksum: true,
        }
    }
}

impl Timeouts {
    fn all(&self) -> [(&'static str, u32); 14] {
        [
            ("tcp_syn_sent", self.tcp_syn_sent),
            ("tcp_syn_recv", self.tcp_syn_recv),
            ("tcp_established", self.tcp_established),
            ("tcp_fin_wait", self.tcp_fin_wait),
            ("tcp_close_wait", self.tcp_close_wait),
            ("tcp_last_ack", self.tcp_last_ack),
            ("tcp_time_wait", self.tcp_time_wait),
            ("tcp_close", self.tcp_close),
            ("tcp_unacknowledged", self.tcp_unacknowledged),
            ("udp", self.udp),
            ("udp_stream", self.udp_stream),
            ("icmp", self.icmp),
            ("icmpv6", self.icmpv6),
            ("generic", self.generic),
        ]
    }
}

impl Config {
    /// Checks what the types cannot: `max` at least 1 and below 2^31, every timeout between
    /// 1 s and [`MAX_TIMEOUT_SECS`]. The error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max == 0 || self.max >= 1 << 31 {
            return Err(format!(
                "conntrack.max = {}: expected 1 to {}",
                self.max,
                (1u32 << 31) - 1
            ));
        }
        for (name, v) in self.timeouts.all() {
            if v == 0 || v > MAX_TIMEOUT_SECS {
                return Err(format!(
                    "conntrack.timeouts.{name} = {v}: expected 1 to {MAX_TIMEOUT_SECS} seconds"
                ));
            }
        }
        Ok(())
    }

    /// Capacity of one shard when `max` is split over `shards` workers (rounded up, at least 1).
    pub fn per_shard(&self, shards: usize) -> u32 {
        let shards = shards.max(1) as u32;
        self.max.div_ceil(shards).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct File {
        conntrack: Config,
    }

    #[test]
    fn reads_the_conntrack_table_with_defaults() {
        let f: File = toml::from_str(
            "[conntrack]\nmax = 1000\nkeep_on_icmp_unreachable = true\n[conntrack.timeouts]\nicmp = 10\n",
        )
        .unwrap();
        let c = f.conntrack;
        assert_eq!(c.max, 1000);
        assert!(c.keep_on_icmp_unreachable);
        assert_eq!(c.timeouts.icmp, 10);
        assert_eq!(c.timeouts.udp, 30);
        assert!(c.tcp_loose);
        assert!(c.checksum);
        assert_eq!(c.hash_key, HashKey::FIXED);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.per_shard(3), 334);
    }

    #[test]
    fn reads_the_hash_key_and_checksum_switch() {
        let f: File = toml::from_str(
            "[conntrack]\nhash_key = \"00112233445566778899aabbccddeeff\"\nchecksum = false\n",
        )
        .unwrap();
        assert_eq!(
            f.conntrack.hash_key,
            HashKey::from_hex("00112233445566778899aabbccddeeff").unwrap()
        );
        assert!(!f.conntrack.checksum);
        let e = toml::from_str::<File>("[conntrack]\nhash_key = \"abc\"\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("32 hex digits"), "{e}");
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let e = toml::from_str::<File>("[conntrack]\nmaximum = 5\n")
            .err()
            .unwrap();
        assert!(e.to_string().contains("maximum"), "{e}");
        let c = Config {
            max: 0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("conntrack.max"));
        let mut c = Config::default();
        c.timeouts.tcp_established = 30 * 24 * 3600;
        assert!(c.validate().unwrap_err().contains("tcp_established"));
    }
}
