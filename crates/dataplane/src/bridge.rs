//! What fwd, a transparent bridge, does with frames that are not plain Ethernet II IPv4/IPv6:
//! VLAN-tagged, QinQ, PPPoE, IEEE 802.1D link-local group addresses and other ethertypes.
//!
//! The reference is a Linux bridge with br_netfilter (`br_netfilter_hooks.c`), with two
//! deliberate differences where the kernel would let IP cross unfiltered (fail closed):
//!
//! * 802.1Q: the kernel hands the inner IPv4/IPv6 packet to iptables when
//!   `net.bridge.bridge-nf-filter-vlan-tagged=1` (its default is 0: unfiltered). fwd's
//!   [`TagPolicy::Filter`] is that, and the default.
//! * QinQ, which for fwd is two tags or a service tag (0x88a8, 0x9100) alone: the kernel's
//!   `vlan_proto()` looks one tag deep (the one taken off into `skb->vlan_tci`), so it filters a
//!   lone 802.1ad tag like 802.1Q, but a second tag makes the frame "not IP" and it is bridged
//!   without iptables; a 0x9100 tag is not taken off at all, so that frame is never filtered
//!   either. fwd filters the innermost packet by default; [`TagPolicy::Pass`] forwards QinQ
//!   unfiltered (the kernel's behaviour for double tags).
//! * PPPoE session with IPv4/IPv6 (PPP protocol 0x0021/0x0057): filtered as with
//!   `bridge-nf-filter-pppoe-tagged=1` (the kernel's default 0 passes it). PPP control
//!   protocols (LCP, IPCP, PAP, CHAP: 0x8000 and up) are forwarded as any non-IP frame; any other
//!   PPP protocol, which may be a network-layer datagram fwd cannot filter (or IPv4 behind a
//!   compressed protocol field), is dropped.
//! * Link-local group addresses 01:80:c2:00:00:00-0f: never forwarded, as 802.1D requires
//!   (a Linux bridge without STP forwards 01:80:c2:00:00:00 to keep loop detection working, and
//!   forwards others when `group_fwd_mask` says so; fwd's one switch is `forward_link_local`).
//!
//! Conntrack does not see VLANs: as in the kernel, whose conntrack zone is 0 for every frame
//! unless a CT rule sets one, two VLANs' packets with the same addresses and ports are one
//! connection. A tagged SYN and an untagged SYN-ACK establish it.

/// `[bridge] vlan` / `[bridge] qinq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TagPolicy {
    /// The inner packet goes through conntrack and the rules; the tags stay on the frame.
    #[default]
    Filter,
    /// Forwarded as it is, unfiltered and untracked.
    Pass,
    /// Dropped, counted.
    Drop,
}

/// `[bridge] pppoe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PppoePolicy {
    /// IPv4/IPv6 inside goes through conntrack and the rules; PPP control passes; other PPP
    /// protocols are dropped.
    #[default]
    Filter,
    /// Every session frame is dropped.
    Drop,
}

/// What the bridge does with frames that are not plain IP. The defaults never let an IP
/// packet cross without the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgePolicy {
    /// One 802.1Q tag.
    pub vlan: TagPolicy,
    /// Two tags, or a service tag (0x88a8, 0x9100).
    pub qinq: TagPolicy,
    /// PPPoE session frames (0x8864).
    pub pppoe: PppoePolicy,
    /// PPPoE discovery frames (0x8863) are forwarded.
    pub pppoe_discovery: bool,
    /// Frames to 01:80:c2:00:00:00-0f are forwarded (802.1D: never).
    pub forward_link_local: bool,
    /// Non-IP ethertypes other than ARP and PPPoE are forwarded (ARP always is: IPv4 needs it).
    pub other_ethertypes: bool,
}

impl Default for BridgePolicy {
    fn default() -> Self {
        BridgePolicy {
            vlan: TagPolicy::Filter,
            qinq: TagPolicy::Filter,
            pppoe: PppoePolicy::Filter,
            pppoe_discovery: true,
            forward_link_local: false,
            other_ethertypes: true,
        }
    }
}

wire::reason_listing! {
    /// Frames of each class the bridge forwarded or filtered (what it dropped is in
    /// [`crate::DropReason`]); indexes `WorkerStats::bridge`.
    pub enum BridgeClass {
        VlanFiltered => ("vlan_filtered", "802.1Q-tagged frames whose inner packet went through the rules (or, not IP, the non-IP policy)"),
        VlanPassed => ("vlan_passed", "802.1Q-tagged frames forwarded unfiltered ([bridge] vlan = \"pass\")"),
        QinqFiltered => ("qinq_filtered", "QinQ frames (two tags, or an 802.1ad/0x9100 tag) whose innermost packet went through the rules"),
        QinqPassed => ("qinq_passed", "QinQ frames forwarded unfiltered ([bridge] qinq = \"pass\")"),
        PppoeFiltered => ("pppoe_filtered", "PPPoE session frames whose IPv4/IPv6 packet went through the rules"),
        PppoeControl => ("pppoe_control", "PPPoE session frames with a PPP control protocol (LCP, IPCP, PAP, CHAP), forwarded"),
        PppoeDiscovery => ("pppoe_discovery", "PPPoE discovery frames (PADI, PADO, PADR, PADS, PADT), forwarded"),
        LinkLocalForwarded => ("link_local_forwarded", "frames to 01:80:c2:00:00:00-0f forwarded ([bridge] forward_link_local = true)"),
        OtherEthertype => ("other_ethertype", "frames of a non-IP ethertype other than ARP and PPPoE, forwarded"),
    }
}
