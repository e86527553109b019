//! The classifier workers share: a compiled `Tree` (behind an `Arc`) plus a small overlay of
//! incremental changes. Inserting or deleting one rule touches only the overlay and a few O(n)
//! index arrays (no tree rebuild); once the overlay holds `MAX_OVERLAY` inserted rules,
//! `needs_rebuild` says so and the control plane compiles a fresh one with `rebuilt`.

use std::sync::Arc;

use crate::spec::{Key, RuleSpec, NO_MATCH};
use crate::tree::{BuildParams, Tree, TreeStats, CHUNK};

/// An update named a rule position outside the chain; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PositionError {
    pub pos: usize,
    pub len: usize,
}

impl std::fmt::Display for PositionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rule position {} is outside the chain of {} rules",
            self.pos, self.len
        )
    }
}

impl std::error::Error for PositionError {}

/// Inserted rules beyond which a rebuild is due (each costs every lookup one exact check).
pub const MAX_OVERLAY: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// A rule of the compiled tree, by its index there.
    Base(u32),
    /// An inserted rule, by its index in `Overlay::added`.
    Added(u32),
}

#[derive(Clone, Debug, Default)]
struct Overlay {
    /// The chain in order.
    order: Vec<Slot>,
    added: Vec<RuleSpec>,
    /// Deleted base rules (bitmap over base indices).
    deleted: Vec<u64>,
    /// Current position of each base rule (meaningless for deleted ones).
    pos_of_base: Vec<u32>,
    /// For each current position `k` (and `k == len`): the first base index that is not deleted
    /// and sits at position `>= k`, or the base length.
    base_from_pos: Vec<u32>,
    /// Inserted rules that are still in the chain: (current position, rule), by position.
    live_added: Vec<(u32, RuleSpec)>,
}

/// A compiled chain: immutable for lookups (`Send + Sync`, share it in an `Arc`); `insert` and
/// `delete` mutate a private copy on the control thread, which then swaps it in.
#[derive(Clone, Debug)]
pub struct Classifier {
    tree: Arc<Tree>,
    params: BuildParams,
    /// `None` while the chain is exactly the compiled one (the fast path).
    overlay: Option<Box<Overlay>>,
}

impl Classifier {
    /// Compiles with `BuildParams::for_rules(rules.len())`.
    pub fn build(rules: &[RuleSpec]) -> Classifier {
        Classifier::build_with(rules, BuildParams::for_rules(rules.len()))
    }

    pub fn build_with(rules: &[RuleSpec], params: BuildParams) -> Classifier {
        Classifier {
            tree: Arc::new(Tree::build(rules, params)),
            params,
            overlay: None,
        }
    }

    /// The chain as it stands, updates included.
    pub fn rules(&self) -> Vec<RuleSpec> {
        match &self.overlay {
            None => self.tree.rules().to_vec(),
            Some(o) => o
                .order
                .iter()
                .map(|s| match *s {
                    Slot::Base(b) => self.tree.rules()[b as usize],
                    Slot::Added(a) => o.added[a as usize],
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.overlay {
            None => self.tree.rules().len(),
            Some(o) => o.order.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> TreeStats {
        self.tree.stats()
    }

    /// Bytes of the compiled structure (the overlay is not counted).
    pub fn size_bytes(&self) -> usize {
        self.tree.size_bytes()
    }

    /// True once incremental updates have piled up enough to be worth a full build.
    pub fn needs_rebuild(&self) -> bool {
        self.overlay
            .as_ref()
            .is_some_and(|o| o.live_added.len() >= MAX_OVERLAY)
    }

    /// A freshly compiled classifier of the current chain (for reload, or to fold the overlay in).
    pub fn rebuilt(&self) -> Classifier {
        Classifier::build_with(&self.rules(), self.params)
    }

    fn overlay_mut(&mut self) -> &mut Overlay {
        let n = self.tree.rules().len();
        self.overlay.get_or_insert_with(|| {
            Box::new(Overlay {
                order: (0..n as u32).map(Slot::Base).collect(),
                added: Vec::new(),
                deleted: vec![0; n.div_ceil(64)],
                pos_of_base: Vec::new(),
                base_from_pos: Vec::new(),
                live_added: Vec::new(),
            })
        })
    }

    /// Insert `rule` so that it becomes rule number `pos` (`pos <= len`), like `iptables -I`.
    pub fn insert(&mut self, pos: usize, rule: RuleSpec) -> Result<(), PositionError> {
        let len = self.len();
        if pos > len {
            return Err(PositionError { pos, len });
        }
        let o = self.overlay_mut();
        o.added.push(rule);
        let slot = Slot::Added((o.added.len() - 1) as u32);
        o.order.insert(pos, slot);
        self.reindex();
        Ok(())
    }

    /// Delete rule number `pos` (`pos < len`) and return it, like `iptables -D chain pos`.
    pub fn delete(&mut self, pos: usize) -> Result<RuleSpec, PositionError> {
        let len = self.len();
        if pos >= len {
            return Err(PositionError { pos, len });
        }
        let tree = Arc::clone(&self.tree);
        let base = tree.rules();
        let o = self.overlay_mut();
        let rule = match o.order.remove(pos) {
            Slot::Base(b) => {
                o.deleted[b as usize / 64] |= 1 << (b % 64);
                base[b as usize]
            }
            Slot::Added(a) => o.added[a as usize],
        };
        self.reindex();
        Ok(rule)
    }

    /// Recompute the position maps after a change: O(chain length), a few microseconds at 10K.
    fn reindex(&mut self) {
        let nbase = self.tree.rules().len();
        let Some(o) = self.overlay.as_mut() else {
            return;
        };
        o.pos_of_base.clear();
        o.pos_of_base.resize(nbase, u32::MAX);
        o.live_added.clear();
        o.base_from_pos.clear();
        o.base_from_pos.resize(o.order.len() + 1, nbase as u32);
        for (pos, s) in o.order.iter().enumerate() {
            match *s {
                Slot::Base(b) => o.pos_of_base[b as usize] = pos as u32,
                Slot::Added(a) => o.live_added.push((pos as u32, o.added[a as usize])),
            }
        }
        let mut next = nbase as u32;
        for pos in (0..o.order.len()).rev() {
            if let Slot::Base(b) = o.order[pos] {
                next = b;
            }
            o.base_from_pos[pos] = next;
        }
    }

    /// One key: the first rule at index `>= start` that matches, or `NO_MATCH`.
    pub fn lookup(&self, key: &Key, start: u32) -> u32 {
        let mut out = [NO_MATCH];
        self.lookup_burst(std::slice::from_ref(key), &[start], &mut out);
        out[0]
    }

    /// For each `i`: the index of the first rule at or after `starts[i]` matching `keys[i]`,
    /// or `NO_MATCH`. Rules with `leaf_check` count as not matching.
    pub fn lookup_burst(&self, keys: &[Key], starts: &[u32], out: &mut [u32]) {
        self.lookup_burst_with(keys, starts, out, |_, _| false)
    }

    /// As `lookup_burst`; a rule with `leaf_check` whose dimensions all match calls
    /// `check(key_index, rule_index)` and matches if it returns true.
    pub fn lookup_burst_with<F: FnMut(usize, u32) -> bool>(
        &self,
        keys: &[Key],
        starts: &[u32],
        out: &mut [u32],
        mut check: F,
    ) {
        assert!(starts.len() == keys.len() && out.len() == keys.len());
        let Some(o) = self.overlay.as_deref() else {
            for (c, ((k, s), r)) in keys
                .chunks(CHUNK)
                .zip(starts.chunks(CHUNK))
                .zip(out.chunks_mut(CHUNK))
                .enumerate()
            {
                let off = c * CHUNK;
                self.tree
                    .lookup_chunk::<_, false>(k, s, r, &[], &mut |i: usize, b: u32| {
                        check(off + i, b)
                    });
            }
            return;
        };
        let len = o.order.len() as u32;
        let mut base_starts = [0u32; CHUNK];
        for (c, ((k, s), r)) in keys
            .chunks(CHUNK)
            .zip(starts.chunks(CHUNK))
            .zip(out.chunks_mut(CHUNK))
            .enumerate()
        {
            for (bs, &st) in base_starts.iter_mut().zip(s) {
                *bs = o.base_from_pos[st.min(len) as usize];
            }
            let off = c * CHUNK;
            let mut cb = |i: usize, b: u32| check(off + i, o.pos_of_base[b as usize]);
            self.tree
                .lookup_chunk::<_, true>(k, &base_starts[..k.len()], r, &o.deleted, &mut cb);
            for i in 0..k.len() {
                let mut best = match r[i] {
                    NO_MATCH => NO_MATCH,
                    b => o.pos_of_base[b as usize],
                };
                for &(pos, ref rule) in &o.live_added {
                    if pos >= best {
                        break;
                    }
                    if pos >= s[i]
                        && rule.matches(&k[i])
                        && (!rule.leaf_check || check(off + i, pos))
                    {
                        best = pos;
                        break;
                    }
                }
                r[i] = best;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::LinearClassifier;
    use crate::spec::*;
    use crate::strategies::{key, leaf_check, rule};
    use proptest::prelude::*;

    fn params() -> impl Strategy<Value = BuildParams> {
        (
            1usize..6,
            2usize..8,
            1u8..9,
            prop::sample::select(vec![0u8, 8, 16]),
        )
            .prop_map(|(binth, spfac, max_cut_bits, small_bits)| BuildParams {
                binth,
                spfac,
                max_cut_bits,
                max_depth: 32,
                small_bits,
            })
    }

    /// Compiled == linear for every key, from every start index that matters.
    fn agree(cls: &Classifier, lin: &LinearClassifier, keys: &[Key]) -> Result<(), TestCaseError> {
        let n = lin.rules().len() as u32;
        for start in [0, 1, n / 2, n.saturating_sub(1), n, n + 5] {
            let starts = vec![start; keys.len()];
            let mut out = vec![0; keys.len()];
            cls.lookup_burst_with(keys, &starts, &mut out, |i, r| leaf_check(r, &keys[i]));
            for (k, got) in keys.iter().zip(&out) {
                let want = lin.lookup_with(k, start, |r| leaf_check(r, k));
                prop_assert_eq!(*got, want, "start {} key {:?}", start, k);
            }
        }
        // resume after each match, as a chain walk does after a non-terminal target
        for k in keys {
            let mut at = 0;
            loop {
                let got = cls.lookup_burst_one(k, at);
                let want = lin.lookup_with(k, at, |r| leaf_check(r, k));
                prop_assert_eq!(got, want);
                if got == NO_MATCH {
                    break;
                }
                at = got + 1;
            }
        }
        Ok(())
    }

    impl Classifier {
        fn lookup_burst_one(&self, k: &Key, start: u32) -> u32 {
            let mut out = [0];
            self.lookup_burst_with(std::slice::from_ref(k), &[start], &mut out, |_, r| {
                leaf_check(r, k)
            });
            out[0]
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn compiled_equals_linear_v4(rules in prop::collection::vec(rule(false), 0..60),
                                     keys in prop::collection::vec(key(false), 1..80), p in params()) {
            let cls = Classifier::build_with(&rules, p);
            agree(&cls, &LinearClassifier::new(&rules), &keys)?;
        }

        #[test]
        fn compiled_equals_linear_v6(rules in prop::collection::vec(rule(true), 0..60),
                                     keys in prop::collection::vec(key(true), 1..80), p in params()) {
            let cls = Classifier::build_with(&rules, p);
            agree(&cls, &LinearClassifier::new(&rules), &keys)?;
        }

        #[test]
        fn updates_equal_linear(rules in prop::collection::vec(rule(false), 0..40),
                                ops in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), rule(false)), 1..12),
                                keys in prop::collection::vec(key(false), 1..40), p in params()) {
            let mut cls = Classifier::build_with(&rules, p);
            let mut lin = LinearClassifier::new(&rules);
            for (ins, at, r) in ops {
                if ins || lin.rules().is_empty() {
                    let pos = at.index(lin.rules().len() + 1);
                    cls.insert(pos, r).unwrap();
                    lin.insert(pos, r);
                } else {
                    let pos = at.index(lin.rules().len());
                    prop_assert_eq!(cls.delete(pos).unwrap(), lin.delete(pos));
                }
                prop_assert_eq!(cls.rules(), lin.rules().to_vec());
                agree(&cls, &lin, &keys)?;
            }
            let re = cls.rebuilt();
            prop_assert!(re.overlay.is_none());
            agree(&re, &lin, &keys)?;
        }
    }

    #[test]
    fn first_match_and_resume_on_a_small_chain() {
        let net = |a: [u8; 4], l| AddrMatch::v4_prefix(u32::from_be_bytes(a), l);
        let rules = [
            RuleSpec {
                ct: Some(CtMatch {
                    mask: ct::ESTABLISHED | ct::RELATED,
                    negate: false,
                }),
                ..RuleSpec::ANY
            },
            RuleSpec {
                src: net([198, 18, 0, 0], 16),
                proto: ProtoMatch::Is(6),
                dport: PortMatch::range(22, 22),
                ..RuleSpec::ANY
            },
            RuleSpec {
                leaf_check: true,
                ..RuleSpec::ANY
            },
            RuleSpec {
                dst: net([198, 19, 1, 0], 24).negated(),
                ..RuleSpec::ANY
            },
        ];
        let cls = Classifier::build(&rules);
        let ssh = Key {
            src: u32::from_be_bytes([198, 18, 3, 4]) as u128,
            dst: u32::from_be_bytes([198, 19, 1, 1]) as u128,
            sport: 40000,
            dport: 22,
            proto: 6,
            ct: ct::NEW,
            ..Key::default()
        };
        assert_eq!(cls.lookup(&ssh, 0), 1);
        assert_eq!(
            cls.lookup(&ssh, 2),
            NO_MATCH,
            "leaf check refused, dst inside the negated net"
        );
        assert_eq!(
            cls.lookup(
                &Key {
                    ct: ct::ESTABLISHED,
                    ..ssh
                },
                0
            ),
            0
        );
        let mut out = [0; 2];
        let keys = [ssh, Key { dst: 1, ..ssh }];
        cls.lookup_burst_with(&keys, &[2, 2], &mut out, |i, r| r == 2 && i == 1);
        assert_eq!(out, [NO_MATCH, 2]);
        let mut c2 = cls.clone();
        c2.delete(1).unwrap();
        assert_eq!(c2.delete(3), Err(PositionError { pos: 3, len: 3 }));
        assert!(c2.insert(4, RuleSpec::ANY).is_err());
        c2.insert(
            0,
            RuleSpec {
                dport: PortMatch::range(22, 22),
                ..RuleSpec::ANY
            },
        )
        .unwrap();
        assert_eq!(c2.lookup(&ssh, 0), 0);
        assert_eq!(c2.lookup(&ssh, 1), NO_MATCH);
        assert_eq!(cls.lookup(&ssh, 0), 1, "the shared original is untouched");
    }

    #[test]
    fn shareable_between_workers() {
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<Classifier>();
    }
}
