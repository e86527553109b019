//! classify: compiles one chain's rules into an immutable decision structure and answers, for a
//! burst of packet keys, "the first matching rule at index >= k" (so traversal can resume after
//! a non-terminal target or a RETURN). See `docs/CLASSIFIER.md` for the algorithm and why.
#![deny(unsafe_code)]

pub mod classbench;
pub mod classifier;
pub mod linear;
pub mod spec;
#[cfg(any(test, feature = "proptest"))]
pub mod strategies;
pub mod tree;

pub use classifier::{Classifier, PositionError, MAX_OVERLAY};
pub use linear::LinearClassifier;
pub use spec::{
    ct, AddrMatch, CtMatch, IcmpMatch, IfaceSet, Key, PortMatch, ProtoMatch, RuleSpec,
    TcpFlagsMatch, NO_MATCH,
};
pub use tree::{BuildParams, TreeStats};
