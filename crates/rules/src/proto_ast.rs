//! The AST of the protocol matches with ports and options: `-m sctp`, `-m dccp`, `-m esp`,
//! `-m ah` (kept apart from `ast.rs` so that each family of extensions has its own file).

use crate::ast::PortRange;

/// A port option of `-m sctp` / `-m dccp` as given: iptables keeps (and saves) even `0:65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtoPorts {
    pub range: PortRange,
    pub negated: bool,
}

/// `-m sctp --chunk-types all|any|only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkMatchType {
    /// Every chunk type listed is present.
    All,
    /// At least one chunk type listed is present.
    Any,
    /// Only chunk types listed are present.
    Only,
}

/// One `TYPE:FLAGS` condition: the chunk's flags masked by `mask` equal `flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkFlags {
    pub chunk_type: u8,
    pub mask: u8,
    pub flags: u8,
}

/// `--chunk-types`: the chunk types as a 256-bit map (`xt_sctp_info.chunkmap`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SctpChunks {
    pub kind: ChunkMatchType,
    pub map: [u32; 8],
    /// At most 4 (`XT_NUM_SCTP_FLAGS`), in the order first given.
    pub flags: Vec<ChunkFlags>,
    pub negated: bool,
}

impl SctpChunks {
    pub fn has(&self, t: u8) -> bool {
        self.map[usize::from(t >> 5)] & (1 << (t & 31)) != 0
    }
}

/// `-m sctp` (`xt_sctp`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SctpMatch {
    pub sport: Option<ProtoPorts>,
    pub dport: Option<ProtoPorts>,
    pub chunks: Option<SctpChunks>,
}

/// `-m dccp` (`xt_dccp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DccpMatch {
    pub sport: Option<ProtoPorts>,
    pub dport: Option<ProtoPorts>,
    /// Bit `1 << type` per packet type; `INVALID` is types 10 to 15.
    pub types: Option<(u16, bool)>,
    /// `--dccp-option N` (1-255).
    pub option: Option<(u8, bool)>,
}

/// An SPI range of `-m esp` / `-m ah`; `0:4294967295` not negated is "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpiMatch {
    pub lo: u32,
    pub hi: u32,
    pub negated: bool,
}

impl SpiMatch {
    pub const ANY: SpiMatch = SpiMatch {
        lo: 0,
        hi: u32::MAX,
        negated: false,
    };
    pub fn is_full(&self) -> bool {
        self.lo == 0 && self.hi == u32::MAX
    }
    pub fn matches(&self, spi: u32) -> bool {
        (self.lo <= spi && spi <= self.hi) != self.negated
    }
}

/// `-m ah`: the SPI, and for ip6tables the header length (`--ahlen`, bytes, 0 = any) and
/// `--ahres` (the reserved field must be zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AhMatch {
    pub spi: SpiMatch,
    pub len: Option<(u32, bool)>,
    pub res: bool,
}

/// SCTP chunk names as `libxt_sctp.c` has them, with their flag letters (bit 7 first).
pub const SCTP_CHUNKS: &[(&str, u8, &[u8; 8])] = &[
    ("DATA", 0, b"----IUBE"),
    ("INIT", 1, b"--------"),
    ("INIT_ACK", 2, b"--------"),
    ("SACK", 3, b"--------"),
    ("HEARTBEAT", 4, b"--------"),
    ("HEARTBEAT_ACK", 5, b"--------"),
    ("ABORT", 6, b"-------T"),
    ("SHUTDOWN", 7, b"--------"),
    ("SHUTDOWN_ACK", 8, b"--------"),
    ("ERROR", 9, b"--------"),
    ("COOKIE_ECHO", 10, b"--------"),
    ("COOKIE_ACK", 11, b"--------"),
    ("ECN_ECNE", 12, b"--------"),
    ("ECN_CWR", 13, b"--------"),
    ("SHUTDOWN_COMPLETE", 14, b"-------T"),
    ("I_DATA", 64, b"--------"),
    ("ASCONF", 193, b"--------"),
    ("ASCONF_ACK", 128, b"--------"),
    ("FORWARD_TSN", 192, b"--------"),
    ("I_FORWARD_TSN", 194, b"--------"),
];

/// DCCP packet type names (`libxt_dccp.c`), by type number.
pub const DCCP_TYPES: &[&str] = &[
    "REQUEST", "RESPONSE", "DATA", "ACK", "DATAACK", "CLOSEREQ", "CLOSE", "RESET", "SYNC",
    "SYNCACK", "INVALID",
];

/// The bits `--dccp-types INVALID` sets: types 10 to 15.
pub const DCCP_INVALID_BITS: u16 = 0xfc00;

/// The most addresses `--rt-0-addrs` takes (`IP6T_RT_HOPS`).
pub const RT_HOPS: usize = 16;

/// `-m rt` (`ip6t_rt`): the IPv6 routing header, found anywhere in the extension header chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtMatch {
    /// `--rt-type N`, negated.
    pub rt_type: Option<(u32, bool)>,
    /// `--rt-segsleft`: the Segments Left range; `0:4294967295` not negated is "any".
    pub segsleft: SpiMatch,
    /// `--rt-len N` (the whole header's length in bytes), negated.
    pub len: Option<(u32, bool)>,
    /// `--rt-0-res`: the type 0 header's reserved field is zero.
    pub res: bool,
    /// `--rt-0-addrs`: type 0 addresses (at most [`RT_HOPS`]), and `--rt-0-not-strict`.
    pub addrs: Option<(Vec<std::net::Ipv6Addr>, bool)>,
}

impl Default for RtMatch {
    fn default() -> Self {
        RtMatch {
            rt_type: None,
            segsleft: SpiMatch::ANY,
            len: None,
            res: false,
            addrs: None,
        }
    }
}
