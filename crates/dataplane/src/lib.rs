//! fwd's firewall data plane, sans-I/O and deterministic: frames and `now` in, verdicts out.
//!
//! A bridged packet traverses the hooks in netfilter's order: raw PREROUTING (NOTRACK),
//! conntrack, nat PREROUTING (DNAT; NEW connections only), filter FORWARD, nat POSTROUTING
//! (SNAT, MASQUERADE; NEW only), confirm on accept, then the NAT rewrite (later packets reuse
//! the binding stored in the conntrack entry). `-i`/`-o` are the config's port names: a frame
//! from port a leaves on port b and vice versa. See `docs/DATAPLANE.md`.
//!
//! * [`compile()`]: both families' ASTs to one immutable [`Compiled`] (shared in an
//!   `Arc<ArcSwap<Compiled>>`, swapped on reload, conntrack untouched); [`compiled`] holds
//!   the types the workers read, [`mod@compile`] the compiler.
//! * [`Worker`]: one worker's shard, counters and traversal; [`Worker::process_burst`].
//! * [`pipeline`]: the seam fwd's workers drive ([`Pipeline`] over a [`Burst`], per-frame
//!   [`Action`]s, the one [`DropReason`] listing) and [`FirewallPipeline`], the data plane
//!   behind it. This crate does no I/O and depends on no I/O crate.
//! * [`nat`]: RFC 1624 rewrites; [`reject`]: REJECT replies; [`log`]: LOG/NFLOG events.
#![deny(unsafe_code)]

pub mod bridge;
pub mod compile;
pub mod compiled;
pub mod control;
pub mod limits;
pub mod log;
pub mod metrics;
pub mod nat;
pub mod pipeline;
pub mod proto;
mod reason;
pub mod reject;
pub mod replay;
pub mod rewrite;
pub mod stateful;
pub mod stateless;
pub mod steer;
mod worker;

pub use bridge::{BridgeClass, BridgePolicy, PppoePolicy, TagPolicy};
pub use compile::{
    compile, load, CompileConfig, CompileError, Compiled, HookPoint, LoadError, PortInfo,
    RuleTarget,
};
pub use pipeline::{Action, Burst, BurstFill, FirewallPipeline, ForwardAll, Pipeline, PortId};
pub use reason::DropReason;
pub use replay::{Replay, ReplayOut};
pub use worker::{Decision, PortIdx, Trace, Verdict, Worker, WorkerStats, MAX_DEPTH, POLICY};
