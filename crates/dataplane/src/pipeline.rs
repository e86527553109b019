//! [`Firewall`]: the data plane behind the `ports::Pipeline` seam, so fwd's workers run it in
//! place of `ForwardAll`. The worker's [`Worker`] sits in a mutex that the worker thread takes
//! once per burst (never per packet) and the control thread takes for `conntrack -L/-D/-F`,
//! counters and stats; it is uncontended except while the control thread answers a command.

use std::sync::{Arc, Mutex};

use ports::{Action, Frame, FramePool, Pipeline, PortId};

use crate::reason::DropReason;
use crate::worker::{Verdict, Worker};

/// One worker's firewall pipeline.
pub struct Firewall {
    worker: Arc<Mutex<Worker>>,
}

impl Firewall {
    pub fn new(worker: Worker) -> Firewall {
        Firewall {
            worker: Arc::new(Mutex::new(worker)),
        }
    }

    /// The handle the control thread keeps (conntrack listing, counters, stats).
    pub fn handle(&self) -> Arc<Mutex<Worker>> {
        self.worker.clone()
    }
}

/// The ports-level drop reason of a data-plane drop (the data plane keeps the finer one).
pub fn port_reason(r: DropReason) -> ports::DropReason {
    match r {
        DropReason::Malformed => ports::DropReason::Malformed,
        _ => ports::DropReason::Policy,
    }
}

impl Pipeline for Firewall {
    fn process_burst<M: FramePool + ?Sized>(
        &mut self,
        ingress: PortId,
        frames: &mut [Frame],
        pool: &mut M,
        actions: &mut [Action],
        now_ns: u64,
    ) {
        let mut w = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        let rs = w.rules().load_full();
        w.expire(now_ns);
        let cap = pool.buffer_capacity();
        let port = ingress.index() as u8;
        for (f, a) in frames.iter_mut().zip(actions.iter_mut()) {
            let len = f.len();
            // the whole buffer, so a REJECT reply can be longer than the frame
            pool.set_len(f, cap);
            let v = w.process_with(&rs, port, pool.data_mut(f), len, now_ns);
            let (out_len, action) = match v {
                Verdict::Forward => (len, Action::Forward),
                Verdict::Reply(n) => (n, Action::Reply),
                Verdict::Drop(r) => (len, Action::Drop(port_reason(r))),
            };
            pool.set_len(f, out_len);
            *a = action;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile;
    use crate::compile::tests::{cfg, v4};
    use arc_swap::ArcSwap;
    use ports::mem::HeapPool;
    use wire::builder::{FrameBuilder, IpPair, TcpSpec};
    use wire::tcp::TcpFlags;

    #[test]
    fn forwards_rejects_in_place_and_drops() {
        let text = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
                    -A FORWARD -p udp -m udp --dport 53 -j ACCEPT\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n\
                    -A FORWARD -p udp -j REJECT\nCOMMIT\n";
        let c = compile(Some(&v4(text)), None, &cfg()).unwrap();
        let w = Worker::new(
            Arc::new(ArcSwap::from_pointee(c)),
            &conntrack::Config::default(),
            64,
            0,
            1,
            0,
        );
        let mut fw = Firewall::new(w);
        let b = FrameBuilder::default();
        let ip = IpPair::V4([198, 18, 0, 1], [198, 18, 0, 2]);
        let inputs = [
            b.udp(ip, 5000, 53, b"q"),
            b.tcp(
                ip,
                &TcpSpec {
                    src_port: 1,
                    dst_port: 2,
                    seq: 1,
                    ack: 0,
                    flags: TcpFlags::SYN,
                    window: 1,
                    options: vec![],
                    payload: b"",
                },
            ),
            b.udp(ip, 5000, 54, b"q"),
            b.echo(ip, true, 1, 1, b"x"),
            vec![0u8; 10],
        ];
        let mut pool = HeapPool::new(8, 2048);
        let mut frames = Vec::new();
        for f in &inputs {
            let mut fr = pool.alloc().unwrap();
            assert!(pool.set_len(&mut fr, f.len()));
            pool.data_mut(&fr).copy_from_slice(f);
            frames.push(fr);
        }
        let mut actions = vec![Action::Forward; frames.len()];
        fw.process_burst(
            PortId::A,
            &mut frames,
            &mut pool,
            &mut actions,
            1_000_000_000,
        );
        assert_eq!(
            actions,
            [
                Action::Forward,
                Action::Reply,
                Action::Reply,
                Action::Drop(ports::DropReason::Policy),
                Action::Drop(ports::DropReason::Malformed)
            ]
        );
        assert_eq!(pool.data(&frames[0]), &inputs[0][..]);
        assert_eq!(frames[1].len(), 54);
        let icmp = wire::parse_frame(pool.data(&frames[2])).unwrap();
        assert_eq!((icmp.icmp_type, icmp.icmp_code), (3, 3));
        assert_eq!(frames[2].len(), 14 + 20 + 8 + inputs[2].len() - 14);
        assert_eq!(frames[3].len(), inputs[3].len());
        let h = fw.handle();
        let w = h.lock().unwrap();
        assert_eq!(w.stats().replies, 2);
        assert_eq!(w.shard().len(), 1);
    }
}
