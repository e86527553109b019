//! Replay: the live worker's code path driven by recorded frames. Each input frame (its port
//! and timestamp, which is the clock) goes through one [`Worker`]; what the appliance would
//! transmit comes out with its egress port, and a JSON line names, per packet, the chains and
//! the rule that decided at each hook. `fwd replay` wraps this with pcapng reading and writing.

use std::fmt::Write;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::compile::{Compiled, HookPoint};
use crate::worker::{PortIdx, Verdict, Worker, POLICY};

/// Per [`HookPoint`], in its order.
const HOOK_NAMES: [&str; HookPoint::COUNT] = [
    "raw PREROUTING",
    "mangle PREROUTING",
    "nat PREROUTING",
    "mangle FORWARD",
    "filter FORWARD",
    "security FORWARD",
    "mangle POSTROUTING",
    "nat POSTROUTING",
];

/// One worker and its ruleset, for replaying a capture.
pub struct Replay {
    rules: Arc<ArcSwap<Compiled>>,
    worker: Worker,
    buf: Vec<u8>,
    count: u64,
}

/// What the appliance does with one input frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayOut {
    /// The transmitted frame and the port it leaves on (0 = a, 1 = b), if any.
    pub tx: Option<(PortIdx, Vec<u8>)>,
    pub verdict: Verdict,
    /// One JSON object (no newline): `{"packet":N,"ts_ns":T,"in":"a","verdict":...,
    /// "ct":...,"hooks":[{"hook":...,"chain":...,"rule":N|"policy","line":L},...]}`.
    pub json: String,
}

impl Replay {
    /// `capacity`: conntrack entries. The first frame's timestamp starts the timer wheel.
    pub fn new(
        rules: Arc<ArcSwap<Compiled>>,
        ct: &conntrack::Config,
        capacity: u32,
        start_ns: u64,
    ) -> Replay {
        let worker = Worker::new(rules.clone(), ct, capacity, 0, 1, start_ns);
        Replay {
            rules,
            worker,
            buf: vec![0; 65536 + 2048],
            count: 0,
        }
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    pub fn worker_mut(&mut self) -> &mut Worker {
        &mut self.worker
    }

    /// Processes one frame received on `port` at `ts_ns`.
    pub fn frame(&mut self, port: PortIdx, ts_ns: u64, data: &[u8]) -> ReplayOut {
        self.count += 1;
        self.worker.expire(ts_ns);
        let n = data.len().min(self.buf.len());
        self.buf[..n].copy_from_slice(&data[..n]);
        let rs = self.rules.load_full();
        let v = self
            .worker
            .process_with(&rs, port & 1, &mut self.buf, n, ts_ns);
        let tx = match v {
            Verdict::Forward => {
                let n = self.worker.grown_len().unwrap_or(n);
                Some(((port & 1) ^ 1, self.buf[..n].to_vec()))
            }
            Verdict::Reply(len) => Some((port & 1, self.buf[..len].to_vec())),
            Verdict::Drop(_) => None,
        };
        let mut j = String::with_capacity(256);
        let _ = write!(
            j,
            "{{\"packet\":{},\"ts_ns\":{},\"in\":\"{}\",",
            self.count,
            ts_ns,
            rs.ports[usize::from(port & 1)].name.replace('"', "")
        );
        match v {
            Verdict::Forward => j.push_str("\"verdict\":\"forward\","),
            Verdict::Reply(_) => j.push_str("\"verdict\":\"reply\","),
            Verdict::Drop(r) => {
                let _ = write!(j, "\"verdict\":\"drop\",\"reason\":\"{}\",", r.name());
            }
        }
        let t = *self.worker.trace();
        if let Some(m) = t.malformed {
            let _ = write!(j, "\"malformed\":\"{}\",", m.name());
        }
        match t.ct_state {
            Some(s) => {
                let _ = write!(j, "\"ct\":\"{}\",", s.name());
            }
            None => j.push_str("\"ct\":null,"),
        }
        j.push_str("\"hooks\":[");
        let v6 = data.len() > 13
            && wire::parse_frame(data)
                .map(|i| i.family == wire::Family::Ipv6)
                .unwrap_or(false);
        let fam = rs.family(v6);
        let mut first = true;
        for hp in HookPoint::ALL {
            let Some((chain, rule)) = t.decided[hp as usize] else {
                continue;
            };
            if !first {
                j.push(',');
            }
            first = false;
            let c = &fam.chains[chain as usize];
            let _ = write!(
                j,
                "{{\"hook\":\"{}\",\"chain\":\"{}\",",
                HOOK_NAMES[hp as usize], c.name
            );
            if rule == POLICY {
                let _ = write!(
                    j,
                    "\"rule\":\"policy\",\"policy\":\"{}\"}}",
                    c.policy.map_or("RETURN", |p| p.as_str())
                );
            } else {
                let _ = write!(
                    j,
                    "\"rule\":{},\"line\":{}}}",
                    rule + 1,
                    c.rules[rule as usize].line
                );
            }
        }
        j.push_str("]}");
        ReplayOut {
            tx,
            verdict: v,
            json: j,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4};
    use wire::builder::{FrameBuilder, IpPair};

    #[test]
    fn verdict_lines_name_chain_rule_and_line() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:udp_in - [0:0]\n\
                    -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -p udp -j udp_in\n\
                    -A udp_in -m udp -p udp --dport 53 -j ACCEPT\n-A udp_in -j REJECT\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let mut r = Replay::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            64,
            0,
        );
        let b = FrameBuilder::default();
        let ip = IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]);
        let q = b.udp(ip, 5000, 53, b"q");
        let out = r.frame(0, 1_000, &q);
        assert_eq!(out.tx, Some((1, q.clone())));
        assert_eq!(
            out.json,
            "{\"packet\":1,\"ts_ns\":1000,\"in\":\"fw-c\",\"verdict\":\"forward\",\"ct\":\"NEW\",\"hooks\":[{\"hook\":\"filter FORWARD\",\"chain\":\"udp_in\",\"rule\":1,\"line\":8}]}"
        );
        let other = b.udp(ip, 5000, 54, b"q");
        let out = r.frame(0, 2_000, &other);
        let (port, reply) = out.tx.unwrap();
        assert_eq!(port, 0, "REJECT replies leave through the ingress port");
        assert_eq!(wire::parse_frame(&reply).unwrap().icmp_type, 3);
        assert!(out.json.contains("\"verdict\":\"reply\""), "{}", out.json);
        assert!(
            out.json
                .contains("\"chain\":\"udp_in\",\"rule\":2,\"line\":9"),
            "{}",
            out.json
        );
        let back = b.echo(
            IpPair::V4([198, 18, 0, 2], [198, 18, 0, 1]),
            true,
            1,
            1,
            b"a",
        );
        let out = r.frame(1, 3_000, &back);
        assert_eq!(out.verdict, Verdict::Drop(crate::DropReason::FilterPolicy));
        assert!(
            out.json.contains("\"rule\":\"policy\",\"policy\":\"DROP\""),
            "{}",
            out.json
        );
    }
}
