//! The compiled structure: rules split into up to four groups by which addresses are "small"
//! (EffiCuts/CutSplit-style separation, so wide rules are not replicated into every cut of the
//! narrow ones) with selective merging of group trees where that costs little space, one
//! HiCuts-style cutting tree per group with power-of-two equal-size cuts on one dimension per
//! node, and leaves holding (normally) at most `binth` rule indices in chain order. Every leaf
//! candidate is checked exactly, so the tree itself only has to over-approximate: negations and
//! non-prefix ranges simply count as wildcards for cutting.

use std::collections::HashMap;

use crate::spec::{Key, ProtoMatch, RuleSpec, NO_MATCH};

/// Dimensions the tree may cut: source address words 0..4 (most significant first), destination
/// words 4..8, source port, destination port, protocol.
pub(crate) const NDIMS: usize = 11;
const WIDTH: [u8; NDIMS] = [32, 32, 32, 32, 32, 32, 32, 32, 16, 16, 8];

/// Up to this many rules, the build tries merging group trees (a dozen trial builds; on the
/// 100K ClassBench sets a single-tree merge never won, and the build time matters more there).
const MERGE_MAX_RULES: usize = 30_000;
/// Internal burst size: stage arrays live on the stack.
pub(crate) const CHUNK: usize = 64;
/// The dimension index of leaves: the projected key has a constant 0 there, so a leaf entry
/// (mask 0, `first` = its own slot) maps to itself and the descent needs no branch per level.
const LEAF_DIM: u8 = NDIMS as u8;

/// One slot of the child array: the child's own cut, so each level of the descent is a single
/// 8-byte load. A leaf takes two slots: itself (`first` = its own slot, so it maps to itself)
/// and then its first `LeafEnt` in `first`; its candidates end with a `SENTINEL` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ent {
    first: u32,
    dim: u8,
    shift: u8,
    mask: u16,
}

/// Ends a leaf's candidates.
const SENTINEL: LeafEnt = LeafEnt {
    id: u32::MAX,
    src_lo: 0,
    src_hi: 0,
    dst_lo: 0,
    dst_hi: 0,
    sp_lo: 0,
    sp_hi: 0,
    dp_lo: 0,
    dp_hi: 0,
    pr_lo: 0,
    pr_hi: 0,
    flags: 0,
};

/// A leaf candidate with an IPv4 copy of its ranges, so the scan stays in one cache line run.
#[derive(Clone, Copy, Debug)]
struct LeafEnt {
    id: u32,
    src_lo: u32,
    src_hi: u32,
    dst_lo: u32,
    dst_hi: u32,
    sp_lo: u16,
    sp_hi: u16,
    dp_lo: u16,
    dp_hi: u16,
    pr_lo: u8,
    pr_hi: u8,
    flags: u8,
}

/// The part of a rule the leaf checks without touching `RuleSpec`.
#[derive(Clone, Copy, Debug)]
struct Fast {
    src_lo: u128,
    src_hi: u128,
    dst_lo: u128,
    dst_hi: u128,
    sp_lo: u16,
    sp_hi: u16,
    dp_lo: u16,
    dp_hi: u16,
    pr_lo: u8,
    pr_hi: u8,
    flags: u8,
}

/// The rule needs the full `RuleSpec::matches` (and maybe the caller's leaf check).
const SLOW: u8 = 1;
/// The rule looks at layer-4 fields, so a non-first fragment never matches it.
const L4: u8 = 2;
/// The IPv4 copy in `LeafEnt` cannot decide (an IPv6 chain, or a key beyond IPv4).
const WIDE: u8 = 4;

impl Fast {
    fn of(r: &RuleSpec) -> Fast {
        let exact = !r.src.negate
            && !r.dst.negate
            && !r.sport.negate
            && !r.dport.negate
            && !matches!(r.proto, ProtoMatch::IsNot(_))
            && r.iif == crate::spec::IfaceSet::ANY
            && r.oif == crate::spec::IfaceSet::ANY
            && r.ct.is_none()
            && r.icmp.is_none()
            && r.tcp_flags.is_none()
            && r.fragment.is_none()
            && !r.leaf_check;
        let (pr_lo, pr_hi) = match r.proto {
            ProtoMatch::Is(p) => (p, p),
            _ => (0, 255),
        };
        Fast {
            src_lo: r.src.lo,
            src_hi: r.src.hi,
            dst_lo: r.dst.lo,
            dst_hi: r.dst.hi,
            sp_lo: r.sport.lo,
            sp_hi: r.sport.hi,
            dp_lo: r.dport.lo,
            dp_hi: r.dport.hi,
            pr_lo,
            pr_hi,
            flags: if exact { 0 } else { SLOW } | if r.needs_l4() { L4 } else { 0 },
        }
    }

    #[inline(always)]
    fn hit(&self, k: &Key) -> bool {
        self.src_lo <= k.src
            && k.src <= self.src_hi
            && self.dst_lo <= k.dst
            && k.dst <= self.dst_hi
            && self.sp_lo <= k.sport
            && k.sport <= self.sp_hi
            && self.dp_lo <= k.dport
            && k.dport <= self.dp_hi
            && self.pr_lo <= k.proto
            && k.proto <= self.pr_hi
            && (self.flags & L4 == 0 || !k.frag)
    }
}

/// Per-dimension over-approximation `[lo, hi]` of a rule.
fn rule_box(r: &RuleSpec) -> [(u32, u32); NDIMS] {
    let mut b = [(0u32, u32::MAX); NDIMS];
    for (base, a) in [(0usize, &r.src), (4, &r.dst)] {
        if a.negate {
            continue;
        }
        for w in 0..4 {
            let shift = 96 - 32 * w as u32;
            // lo and hi agree on every more significant word: the word's range is exact
            if w == 0 || (a.lo ^ a.hi) >> (shift + 32) == 0 {
                b[base + w] = ((a.lo >> shift) as u32, (a.hi >> shift) as u32);
            }
        }
    }
    if !r.sport.negate {
        b[8] = (r.sport.lo as u32, r.sport.hi as u32);
    } else {
        b[8] = (0, 0xffff);
    }
    if !r.dport.negate {
        b[9] = (r.dport.lo as u32, r.dport.hi as u32);
    } else {
        b[9] = (0, 0xffff);
    }
    b[10] = match r.proto {
        ProtoMatch::Is(p) => (p as u32, p as u32),
        _ => (0, 255),
    };
    b
}

#[inline(always)]
fn project(k: &Key) -> [u32; NDIMS] {
    [
        (k.src >> 96) as u32,
        (k.src >> 64) as u32,
        (k.src >> 32) as u32,
        k.src as u32,
        (k.dst >> 96) as u32,
        (k.dst >> 64) as u32,
        (k.dst >> 32) as u32,
        k.dst as u32,
        k.sport as u32,
        k.dport as u32,
        k.proto as u32,
    ]
}

/// Tuning of the tree build.
#[derive(Clone, Copy, Debug)]
pub struct BuildParams {
    /// A node with at most this many rules becomes a leaf.
    pub binth: usize,
    /// HiCuts space factor: the rules of a node's children (with replication) plus the number of
    /// children may not exceed `spfac` times the node's rules.
    pub spfac: usize,
    /// At most `2^max_cut_bits` children per node.
    pub max_cut_bits: u8,
    pub max_depth: usize,
    /// An address range is "small" (the rule goes to a group cut on it) when it spans fewer than
    /// `2^small_bits` IPv4 addresses (`2^(small_bits + 64)` IPv6 ones); 0: one group.
    pub small_bits: u8,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            binth: 8,
            spfac: 4,
            max_cut_bits: 8,
            max_depth: 32,
            small_bits: 16,
        }
    }
}

impl BuildParams {
    /// The parameters `Classifier::build` uses for a chain of `n` rules: up to
    /// `MERGE_MAX_RULES` (30K) a leaf threshold of 6 and space factor 8 (measured on the 10K
    /// ClassBench sets: acl1 +5%, fw1 +20%, ipc1 +30% lookups for ~1.3-1.8x the bytes and
    /// 2-3x the build time, still under a second); above, the defaults (8 and 4), whose
    /// build stays ~0.1-0.2 s and ~100 MB at 100K rules.
    pub fn for_rules(n: usize) -> BuildParams {
        if n <= MERGE_MAX_RULES {
            BuildParams {
                binth: 6,
                spfac: 8,
                ..BuildParams::default()
            }
        } else {
            BuildParams::default()
        }
    }
}

/// Build statistics, for the benchmark and the docs.
#[derive(Clone, Copy, Debug, Default)]
pub struct TreeStats {
    pub groups: usize,
    pub nodes: usize,
    pub leaves: usize,
    pub leaf_entries: usize,
    pub max_depth: usize,
    pub max_leaf: usize,
}

/// An immutable compiled chain.
#[derive(Debug)]
pub struct Tree {
    /// Per group: its root entry and the depth of its deepest leaf.
    roots: Vec<(Ent, usize)>,
    children: Vec<Ent>,
    leaf_ents: Vec<LeafEnt>,
    fast: Vec<Fast>,
    rules: Vec<RuleSpec>,
    /// Some rule has an address beyond IPv4: the `LeafEnt` copies are not used.
    v6: bool,
    stats: TreeStats,
}

struct Builder<'a> {
    boxes: &'a [[(u32, u32); NDIMS]],
    fast: &'a [Fast],
    v6: bool,
    p: BuildParams,
    children: Vec<Ent>,
    leaf_ents: Vec<LeafEnt>,
    leaf_dedup: HashMap<Vec<u32>, Ent>,
    stats: TreeStats,
    depth: usize,
    /// Child and leaf entries beyond which no node is cut any more.
    cap: usize,
}

impl Builder<'_> {
    fn leaf(&mut self, rules: &[u32], depth: usize) -> Ent {
        self.stats.max_depth = self.stats.max_depth.max(depth);
        self.depth = self.depth.max(depth);
        if let Some(&e) = self.leaf_dedup.get(rules) {
            return e;
        }
        let home = self.children.len() as u32;
        let leaf_start = self.leaf_ents.len() as u32;
        for &r in rules {
            let f = &self.fast[r as usize];
            let wide = self.v6
                || f.src_hi > u32::MAX as u128 && f.src_lo != 0
                || f.dst_hi > u32::MAX as u128 && f.dst_lo != 0;
            self.leaf_ents.push(LeafEnt {
                id: r,
                src_lo: f.src_lo as u32,
                src_hi: f.src_hi.min(u32::MAX as u128) as u32,
                dst_lo: f.dst_lo as u32,
                dst_hi: f.dst_hi.min(u32::MAX as u128) as u32,
                sp_lo: f.sp_lo,
                sp_hi: f.sp_hi,
                dp_lo: f.dp_lo,
                dp_hi: f.dp_hi,
                pr_lo: f.pr_lo,
                pr_hi: f.pr_hi,
                flags: f.flags | if wide { WIDE } else { 0 },
            });
        }
        self.leaf_ents.push(SENTINEL);
        let e = Ent {
            first: home,
            dim: LEAF_DIM,
            shift: 0,
            mask: 0,
        };
        self.children.push(e);
        self.children.push(Ent {
            first: leaf_start,
            dim: 0,
            shift: 0,
            mask: 0,
        });
        if !rules.is_empty() {
            self.stats.leaves += 1;
            self.stats.leaf_entries += rules.len();
            self.stats.max_leaf = self.stats.max_leaf.max(rules.len());
        }
        self.leaf_dedup.insert(rules.to_vec(), e);
        e
    }

    /// Child index range `[a, b]` of a rule's box in a cut of `(base, bits)` into `2^c` parts.
    #[inline]
    fn span(bx: (u32, u32), base: u32, bits: u8, c: u8) -> (usize, usize) {
        let top = base as u64 + ((1u64 << bits) - 1);
        let lo = (bx.0 as u64).max(base as u64);
        let hi = (bx.1 as u64).min(top);
        let shift = bits - c;
        (
            ((lo - base as u64) >> shift) as usize,
            ((hi - base as u64) >> shift) as usize,
        )
    }

    fn build(
        &mut self,
        rules: &[u32],
        region: [(u32, u8); NDIMS],
        depth: usize,
        dims: &[usize],
    ) -> Ent {
        let n = rules.len();
        // a global bound on replication: past it, nodes become leaves (slower, never unbounded)
        let over = self.children.len() + self.leaf_ents.len() > self.cap;
        if n <= self.p.binth || depth >= self.p.max_depth || over {
            return self.leaf(rules, depth);
        }
        // choose the dimension and cut count: largest cut within the space factor, then the
        // dimension whose largest child is smallest
        let budget = self.p.spfac * n;
        let mut best: Option<(usize, u8, usize, usize)> = None; // (dim, c, max child, sum)
        let mut counts: Vec<i64> = Vec::new();
        for &d in dims {
            let (base, bits) = region[d];
            if bits == 0 {
                continue;
            }
            let cmax = bits.min(self.p.max_cut_bits.min(16));
            let mut chosen: Option<(u8, usize, usize)> = None;
            for c in 1..=cmax {
                let nc = 1usize << c;
                counts.clear();
                counts.resize(nc + 1, 0);
                let mut sum = nc;
                for &r in rules {
                    let (a, b) = Self::span(self.boxes[r as usize][d], base, bits, c);
                    counts[a] += 1;
                    counts[b + 1] -= 1;
                    sum += b - a + 1;
                }
                if c > 1 && sum > budget {
                    break;
                }
                let mut run = 0i64;
                let mut mx = 0i64;
                for &x in &counts[..nc] {
                    run += x;
                    mx = mx.max(run);
                }
                chosen = Some((c, mx as usize, sum));
                if mx as usize <= self.p.binth {
                    break;
                }
            }
            if let Some((c, mx, sum)) = chosen {
                let better = match best {
                    None => true,
                    Some((_, _, bmx, bsum)) => mx < bmx || (mx == bmx && sum < bsum),
                };
                if better {
                    best = Some((d, c, mx, sum));
                }
            }
        }
        let Some((d, c, mx, _)) = best else {
            return self.leaf(rules, depth);
        };
        if mx >= n {
            return self.leaf(rules, depth);
        }
        let (base, bits) = region[d];
        let nc = 1usize << c;
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); nc];
        for &r in rules {
            let (a, b) = Self::span(self.boxes[r as usize][d], base, bits, c);
            for l in &mut lists[a..=b] {
                l.push(r);
            }
        }
        let first = self.children.len();
        assert!(first + nc < u32::MAX as usize / 2, "classifier too large");
        self.stats.nodes += 1;
        let blank = Ent {
            first: 0,
            dim: LEAF_DIM,
            shift: 0,
            mask: 0,
        };
        self.children.resize(first + nc, blank);
        let shift = bits - c;
        for i in 0..nc {
            let e = if i > 0 && lists[i] == lists[i - 1] {
                self.children[first + i - 1]
            } else {
                let mut sub = region;
                sub[d] = (base.wrapping_add((i as u32) << shift), shift);
                self.build(&lists[i], sub, depth + 1, dims)
            };
            self.children[first + i] = e;
        }
        Ent {
            first: first as u32,
            dim: d as u8,
            shift,
            mask: (nc - 1) as u16,
        }
    }
}

impl Tree {
    pub fn build(rules: &[RuleSpec], p: BuildParams) -> Tree {
        let boxes: Vec<_> = rules.iter().map(rule_box).collect();
        let fast: Vec<_> = rules.iter().map(Fast::of).collect();
        let v6 = rules.iter().any(|r| {
            [r.src, r.dst]
                .iter()
                .any(|a| !a.is_any() && (a.hi > u32::MAX as u128 || a.lo > u32::MAX as u128))
        });
        let small_span: u128 = 1 << (p.small_bits as u32 + if v6 { 64 } else { 0 });
        let small =
            |a: &crate::spec::AddrMatch| p.small_bits > 0 && !a.negate && a.hi - a.lo < small_span;
        let mut groups: [Vec<u32>; 4] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            let g = (small(&r.src) as usize) | (small(&r.dst) as usize) << 1;
            groups[g].push(i as u32);
        }
        // dimensions where rules differ at all
        let dims: Vec<usize> = (0..NDIMS)
            .filter(|&d| boxes.iter().any(|b| b[d] != boxes[0][d]))
            .collect();
        let build = |sets: &[Vec<u32>], cap: usize| {
            let mut b = Builder {
                boxes: &boxes,
                fast: &fast,
                v6,
                p,
                children: Vec::new(),
                leaf_ents: Vec::new(),
                leaf_dedup: HashMap::new(),
                stats: TreeStats::default(),
                depth: 0,
                cap,
            };
            let region: [(u32, u8); NDIMS] = std::array::from_fn(|d| (0u32, WIDTH[d]));
            let mut roots = Vec::new();
            for g in sets {
                b.depth = 0;
                let root = b.build(g, region, 0, &dims);
                roots.push((root, b.depth));
            }
            (b, roots)
        };
        let mut sets: Vec<Vec<u32>> = groups
            .iter()
            .rev()
            .filter(|g| !g.is_empty())
            .cloned()
            .collect();
        if sets.len() > 1 && rules.len() <= MERGE_MAX_RULES {
            // selective tree merging (EffiCuts): one descent per key fewer for each merge, taken
            // when the merged tree costs little more space than the two it replaces
            let cost = |s: &[u32], cap: usize| {
                let (b, _) = build(&[s.to_vec()], cap);
                (b.children.len() + b.leaf_ents.len(), b.stats.max_leaf)
            };
            let mut sep: Vec<(usize, usize)> =
                sets.iter().map(|s| cost(s, usize::MAX / 4)).collect();
            while sets.len() > 1 {
                /// (space ratio, i, j, merged rules, its cost)
                type Merge = (f64, usize, usize, Vec<u32>, (usize, usize));
                let mut best: Option<Merge> = None;
                for i in 0..sets.len() {
                    for j in i + 1..sets.len() {
                        let sum = sep[i].0 + sep[j].0;
                        let mut m = [sets[i].as_slice(), sets[j].as_slice()].concat();
                        m.sort_unstable();
                        let merged = cost(&m, 2 * sum);
                        let ratio = merged.0 as f64 / sum as f64;
                        let better = match &best {
                            None => true,
                            Some((r, ..)) => ratio < *r,
                        };
                        if ratio <= 1.5
                            && merged.1 <= 4 * p.binth.max(sep[i].1).max(sep[j].1)
                            && better
                        {
                            best = Some((ratio, i, j, m, merged));
                        }
                    }
                }
                let Some((_, i, j, m, merged)) = best else {
                    break;
                };
                sets.remove(j);
                sep.remove(j);
                sets[i] = m;
                sep[i] = merged;
            }
        }
        let (b, roots) = build(&sets, 64 * rules.len() + (1 << 20));
        let mut stats = b.stats;
        stats.groups = roots.len();
        Tree {
            roots,
            children: b.children,
            leaf_ents: b.leaf_ents,
            fast,
            rules: rules.to_vec(),
            v6,
            stats,
        }
    }

    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }

    pub fn stats(&self) -> TreeStats {
        self.stats
    }

    /// Bytes of the lookup structure (child entries, leaves, per-rule check records).
    pub fn size_bytes(&self) -> usize {
        self.children.len() * std::mem::size_of::<Ent>()
            + self.leaf_ents.len() * std::mem::size_of::<LeafEnt>()
            + self.fast.len() * std::mem::size_of::<Fast>()
            + self.roots.len() * std::mem::size_of::<(Ent, usize)>()
    }

    #[inline(always)]
    fn check<F: FnMut(usize, u32) -> bool>(&self, id: u32, ki: usize, k: &Key, cb: &mut F) -> bool {
        let f = &self.fast[id as usize];
        if f.flags & SLOW == 0 {
            f.hit(k)
        } else {
            let r = &self.rules[id as usize];
            r.matches(k) && (!r.leaf_check || cb(ki, id))
        }
    }

    /// For each key `i`: the first rule with index `>= starts[i]` that matches, skipping rules
    /// set in `deleted` (when `DEL`), or `NO_MATCH`. `keys.len() <= CHUNK`.
    #[inline]
    pub(crate) fn lookup_chunk<F: FnMut(usize, u32) -> bool, const DEL: bool>(
        &self,
        keys: &[Key],
        starts: &[u32],
        out: &mut [u32],
        deleted: &[u64],
        cb: &mut F,
    ) {
        // The stage arrays are sized at compile time; a lone key (the data plane asks one key at
        // a time while conntrack commits packet by packet) must not pay for clearing 64 slots.
        if keys.len() == 1 {
            self.lookup_chunk_n::<F, DEL, 1>(keys, starts, out, deleted, cb)
        } else {
            self.lookup_chunk_n::<F, DEL, CHUNK>(keys, starts, out, deleted, cb)
        }
    }

    /// `lookup_chunk` with stage arrays of `C` slots (`keys.len() <= C`).
    #[inline(always)]
    fn lookup_chunk_n<F: FnMut(usize, u32) -> bool, const DEL: bool, const C: usize>(
        &self,
        keys: &[Key],
        starts: &[u32],
        out: &mut [u32],
        deleted: &[u64],
        cb: &mut F,
    ) {
        let n = keys.len();
        debug_assert!(n <= C && starts.len() >= n && out.len() >= n);
        let mut proj = [[0u32; NDIMS + 1]; C];
        let mut wide = [0u8; C];
        for i in 0..n {
            let k = &keys[i];
            let p = project(k);
            proj[i][..NDIMS].copy_from_slice(&p);
            wide[i] = if self.v6 || (k.src | k.dst) >> 32 != 0 {
                WIDE
            } else {
                0
            };
            out[i] = NO_MATCH;
        }
        let blank = Ent {
            first: 0,
            dim: LEAF_DIM,
            shift: 0,
            mask: 0,
        };
        let mut cur = [blank; C];
        for &(root, depth) in &self.roots {
            cur[..n].fill(root);
            // level-synchronous descent: the loads of different keys are independent, so the
            // CPU overlaps their cache misses; leaves map to themselves, so no branch per key
            // (measured: compacting a list of unfinished keys instead is ~30% slower)
            if root.dim != LEAF_DIM {
                for _ in 0..depth {
                    let mut busy = false;
                    for i in 0..n {
                        let e = cur[i];
                        let v = proj[i][e.dim as usize];
                        cur[i] = self.children
                            [e.first as usize + ((v >> e.shift) as usize & e.mask as usize)];
                        busy |= cur[i].dim != LEAF_DIM;
                    }
                    if !busy {
                        break;
                    }
                }
            }
            // first candidate of every key's leaf, loaded in one independent pass so the
            // cache misses of the burst overlap (the scans below branch per candidate, which
            // keeps the CPU from running ahead into the next key's leaf)
            let mut cand = [0u32; C];
            let mut first_id = [0u32; C];
            for i in 0..n {
                let c = self.children[cur[i].first as usize + 1].first;
                cand[i] = c;
                first_id[i] = self.leaf_ents[c as usize].id;
            }
            for i in 0..n {
                let best = out[i];
                // candidates are in chain order: none can beat an earlier group's answer
                if first_id[i] >= best {
                    continue;
                }
                let k = &keys[i];
                let (p, w) = (&proj[i], wide[i]);
                let start = starts[i];
                // ends at the sentinel at the latest: its id is never below `best`
                for le in &self.leaf_ents[cand[i] as usize..] {
                    let id = le.id;
                    if id >= best {
                        break;
                    }
                    if id < start {
                        continue;
                    }
                    if DEL && deleted[id as usize / 64] & (1 << (id % 64)) != 0 {
                        continue;
                    }
                    let hit = if (le.flags | w) & (SLOW | WIDE) == 0 {
                        // short-circuit: most candidates fail on the first range (measured:
                        // evaluating all ten compares without branches is ~20% slower)
                        le.src_lo <= p[3]
                            && p[3] <= le.src_hi
                            && le.dst_lo <= p[7]
                            && p[7] <= le.dst_hi
                            && le.sp_lo as u32 <= p[8]
                            && p[8] <= le.sp_hi as u32
                            && le.dp_lo as u32 <= p[9]
                            && p[9] <= le.dp_hi as u32
                            && le.pr_lo as u32 <= p[10]
                            && p[10] <= le.pr_hi as u32
                            && (le.flags & L4 == 0 || !k.frag)
                    } else {
                        self.check(id, i, k, cb)
                    };
                    if hit {
                        out[i] = id;
                        break;
                    }
                }
            }
        }
    }
}
