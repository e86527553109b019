//! The reference: a linear scan of the chain. Slow and obviously right; the compiled classifier
//! must give the same answer for every key and start index.

use crate::spec::{Key, RuleSpec, NO_MATCH};

#[derive(Clone, Debug, Default)]
pub struct LinearClassifier {
    rules: Vec<RuleSpec>,
}

impl LinearClassifier {
    pub fn new(rules: &[RuleSpec]) -> LinearClassifier {
        LinearClassifier {
            rules: rules.to_vec(),
        }
    }

    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }

    pub fn insert(&mut self, pos: usize, rule: RuleSpec) {
        self.rules.insert(pos, rule);
    }

    pub fn delete(&mut self, pos: usize) -> RuleSpec {
        self.rules.remove(pos)
    }

    /// Index of the first rule at or after `start` matching `key` (`leaf_check` rules also need
    /// `check(rule_index)`), or `NO_MATCH`.
    pub fn lookup_with(&self, key: &Key, start: u32, mut check: impl FnMut(u32) -> bool) -> u32 {
        for (i, r) in self.rules.iter().enumerate().skip(start as usize) {
            if r.matches(key) && (!r.leaf_check || check(i as u32)) {
                return i as u32;
            }
        }
        NO_MATCH
    }

    pub fn lookup(&self, key: &Key, start: u32) -> u32 {
        self.lookup_with(key, start, |_| true)
    }
}
