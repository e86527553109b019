//! pcapng capture files: a small reader and writer (Section Header, Interface Description and
//! Enhanced Packet blocks; other blocks are skipped), and [`PcapPort`], a port fed from and
//! recording into captures, for `fwd replay`. Interface id = port index (A = 0, B = 1);
//! timestamps are kept (written with nanosecond resolution, read at any `if_tsresol`).

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};

use crate::mem::HeapPool;
use crate::{Frame, FramePool, Frames, Port};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const SPB: u32 = 0x0000_0003;
const EPB: u32 = 0x0000_0006;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;
const OPT_END: u16 = 0;
const OPT_IF_TSRESOL: u16 = 9;
/// Largest block the reader accepts (a sanity bound against corrupt lengths).
const MAX_BLOCK: u32 = 16 << 20;

/// One captured packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Interface id within its section (fwd: the port index).
    pub interface: u32,
    /// Timestamp in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Length of the packet on the wire (may exceed `data.len()` if the capture was cut).
    pub orig_len: u32,
    /// The captured bytes.
    pub data: Vec<u8>,
}

/// Writes a pcapng section with `interfaces` Ethernet interfaces at nanosecond resolution.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    w: W,
    interfaces: u32,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header and one interface block per interface.
    pub fn new(mut w: W, interfaces: u32) -> io::Result<PcapngWriter<W>> {
        // SHB: type, length, magic, version 1.0, section length unknown (-1), no options.
        let len: u32 = 28;
        let mut b = Vec::with_capacity(len as usize);
        b.extend_from_slice(&SHB.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(-1i64).to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        w.write_all(&b)?;
        for _ in 0..interfaces {
            // IDB: linktype, reserved, snaplen 0 (no limit), if_tsresol = 9 (ns), end.
            let len: u32 = 20 + 8 + 4;
            let mut b = Vec::with_capacity(len as usize);
            b.extend_from_slice(&IDB.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&OPT_IF_TSRESOL.to_le_bytes());
            b.extend_from_slice(&1u16.to_le_bytes());
            b.extend_from_slice(&[9, 0, 0, 0]);
            b.extend_from_slice(&OPT_END.to_le_bytes());
            b.extend_from_slice(&0u16.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            w.write_all(&b)?;
        }
        Ok(PcapngWriter { w, interfaces })
    }

    /// Appends one packet as an Enhanced Packet Block.
    pub fn write_packet(&mut self, interface: u32, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        if interface >= self.interfaces {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "interface {interface} not declared ({} interfaces)",
                    self.interfaces
                ),
            ));
        }
        let padded = pad4(data.len());
        let len = (32 + padded) as u32;
        let mut head = [0u8; 28];
        head[0..4].copy_from_slice(&EPB.to_le_bytes());
        head[4..8].copy_from_slice(&len.to_le_bytes());
        head[8..12].copy_from_slice(&interface.to_le_bytes());
        head[12..16].copy_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        head[16..20].copy_from_slice(&(ts_ns as u32).to_le_bytes());
        head[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        head[24..28].copy_from_slice(&(data.len() as u32).to_le_bytes());
        self.w.write_all(&head)?;
        self.w.write_all(data)?;
        self.w.write_all(&[0u8; 3][..padded - data.len()])?;
        self.w.write_all(&len.to_le_bytes())
    }

    /// Flushes the underlying writer (a long-running writer, e.g. NFLOG, after each batch).
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// A malformed capture: what and at which byte offset.
#[derive(Debug)]
pub struct PcapngError {
    /// Byte offset of the offending block.
    pub offset: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PcapngError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pcapng offset {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for PcapngError {}

/// Reads packets from a pcapng stream, in file order.
#[derive(Debug)]
pub struct PcapngReader<R: Read> {
    r: R,
    offset: u64,
    big_endian: bool,
    in_section: bool,
    /// Per interface of the current section: (ticks per second as a divisor/multiplier).
    resolutions: Vec<TsResol>,
}

#[derive(Clone, Copy, Debug)]
enum TsResol {
    Pow10(u8),
    Pow2(u8),
}

impl TsResol {
    fn to_ns(self, ticks: u64) -> u64 {
        match self {
            TsResol::Pow10(e) if e <= 9 => ticks.saturating_mul(10u64.pow(9 - e as u32)),
            TsResol::Pow10(e) => ticks / 10u64.pow((e as u32 - 9).min(19)),
            TsResol::Pow2(e) => ((ticks as u128 * 1_000_000_000) >> e.min(127)) as u64,
        }
    }
}

impl<R: Read> PcapngReader<R> {
    /// A reader over `r`; the first block must be a Section Header Block.
    pub fn new(r: R) -> PcapngReader<R> {
        PcapngReader {
            r,
            offset: 0,
            big_endian: false,
            in_section: false,
            resolutions: Vec::new(),
        }
    }

    fn err(&self, offset: u64, message: impl Into<String>) -> PcapngError {
        PcapngError {
            offset,
            message: message.into(),
        }
    }

    fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// The next packet, `None` at a clean end of file.
    pub fn next_packet(&mut self) -> Result<Option<CapturedPacket>, PcapngError> {
        loop {
            let start = self.offset;
            let mut head = [0u8; 8];
            match read_full(&mut self.r, &mut head) {
                Ok(0) => return Ok(None),
                Ok(8) => {}
                Ok(_) => return Err(self.err(start, "truncated block header")),
                Err(e) => return Err(self.err(start, e.to_string())),
            }
            let raw_type = u32::from_le_bytes(head[0..4].try_into().expect("4 bytes"));
            if raw_type == SHB {
                // The byte-order magic decides how to read this block's length.
                let mut magic = [0u8; 4];
                if read_full(&mut self.r, &mut magic).map_err(|e| self.err(start, e.to_string()))?
                    != 4
                {
                    return Err(self.err(start, "truncated section header"));
                }
                self.big_endian = match u32::from_le_bytes(magic) {
                    BYTE_ORDER_MAGIC => false,
                    m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                    _ => return Err(self.err(start, "bad byte-order magic")),
                };
                let len = self.u32(&head[4..8]);
                if !(28..=MAX_BLOCK).contains(&len) || len & 3 != 0 {
                    return Err(self.err(start, format!("bad section header length {len}")));
                }
                let mut body = vec![0u8; len as usize - 12];
                if read_full(&mut self.r, &mut body).map_err(|e| self.err(start, e.to_string()))?
                    != body.len()
                {
                    return Err(self.err(start, "truncated section header"));
                }
                let major = self.u16(&body[0..2]);
                if major != 1 {
                    return Err(self.err(start, format!("unsupported pcapng version {major}")));
                }
                if self.u32(&body[body.len() - 4..]) != len {
                    return Err(self.err(start, "section header lengths differ"));
                }
                self.offset += len as u64;
                self.in_section = true;
                self.resolutions.clear();
                continue;
            }
            if !self.in_section {
                return Err(self.err(start, "file does not start with a section header block"));
            }
            let btype = self.u32(&head[0..4]);
            let len = self.u32(&head[4..8]);
            if !(12..=MAX_BLOCK).contains(&len) || len & 3 != 0 {
                return Err(self.err(start, format!("bad block length {len}")));
            }
            let mut body = vec![0u8; len as usize - 8];
            if read_full(&mut self.r, &mut body).map_err(|e| self.err(start, e.to_string()))?
                != body.len()
            {
                return Err(self.err(start, "truncated block"));
            }
            self.offset += len as u64;
            if self.u32(&body[body.len() - 4..]) != len {
                return Err(self.err(start, "block lengths differ"));
            }
            let body = &body[..body.len() - 4];
            match btype {
                IDB => {
                    if body.len() < 8 {
                        return Err(self.err(start, "short interface description block"));
                    }
                    let mut resol = TsResol::Pow10(6);
                    let mut opts = &body[8..];
                    while opts.len() >= 4 {
                        let code = self.u16(&opts[0..2]);
                        let olen = self.u16(&opts[2..4]) as usize;
                        if code == OPT_END {
                            break;
                        }
                        if opts.len() < 4 + olen {
                            return Err(self.err(start, "truncated interface option"));
                        }
                        if code == OPT_IF_TSRESOL && olen >= 1 {
                            let v = opts[4];
                            resol = if v & 0x80 != 0 {
                                TsResol::Pow2(v & 0x7f)
                            } else {
                                TsResol::Pow10(v)
                            };
                        }
                        opts = &opts[(4 + pad4(olen)).min(opts.len())..];
                    }
                    self.resolutions.push(resol);
                }
                EPB => {
                    if body.len() < 20 {
                        return Err(self.err(start, "short enhanced packet block"));
                    }
                    let interface = self.u32(&body[0..4]);
                    let ts = ((self.u32(&body[4..8]) as u64) << 32) | self.u32(&body[8..12]) as u64;
                    let caplen = self.u32(&body[12..16]) as usize;
                    let orig_len = self.u32(&body[16..20]);
                    if 20 + caplen > body.len() {
                        return Err(self.err(start, "captured length exceeds the block"));
                    }
                    let Some(resol) = self.resolutions.get(interface as usize) else {
                        return Err(
                            self.err(start, format!("packet of undeclared interface {interface}"))
                        );
                    };
                    return Ok(Some(CapturedPacket {
                        interface,
                        ts_ns: resol.to_ns(ts),
                        orig_len,
                        data: body[20..20 + caplen].to_vec(),
                    }));
                }
                SPB => {}
                _ => {} // name resolution, statistics, custom blocks: not needed here
            }
        }
    }

    /// All remaining packets.
    pub fn read_all(mut self) -> Result<Vec<CapturedPacket>, PcapngError> {
        let mut v = Vec::new();
        while let Some(p) = self.next_packet()? {
            v.push(p);
        }
        Ok(v)
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A port that receives the packets of one interface of a capture, in order, and records what
/// it transmits with the time of the latest received packet (the replay clock).
#[derive(Debug, Default)]
pub struct PcapPort {
    rx: VecDeque<CapturedPacket>,
    tx: Vec<CapturedPacket>,
    interface: u32,
    now_ns: u64,
}

impl PcapPort {
    /// A port for interface `interface`, fed with those `packets` whose interface matches.
    pub fn new(interface: u32, packets: &[CapturedPacket]) -> PcapPort {
        PcapPort {
            rx: packets
                .iter()
                .filter(|p| p.interface == interface)
                .cloned()
                .collect(),
            tx: Vec::new(),
            interface,
            now_ns: 0,
        }
    }

    /// Timestamp of the next packet to receive (to interleave ports in time order).
    pub fn next_ts(&self) -> Option<u64> {
        self.rx.front().map(|p| p.ts_ns)
    }

    /// Sets the clock that stamps transmitted packets.
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// What was transmitted so far.
    pub fn transmitted(&self) -> &[CapturedPacket] {
        &self.tx
    }

    /// Writes `ports`' transmitted packets into one capture, merged in time order.
    pub fn write_merged<W: Write>(w: W, ports: &[&PcapPort]) -> io::Result<W> {
        let n = ports.iter().map(|p| p.interface + 1).max().unwrap_or(0);
        let mut all: Vec<&CapturedPacket> = ports.iter().flat_map(|p| p.tx.iter()).collect();
        all.sort_by_key(|p| p.ts_ns);
        let mut wr = PcapngWriter::new(w, n)?;
        for p in all {
            wr.write_packet(p.interface, p.ts_ns, &p.data)?;
        }
        wr.into_inner()
    }
}

impl Port for PcapPort {
    type Pool = HeapPool;

    fn receive_into(&mut self, pool: &mut HeapPool, out: &mut Frames, max: usize) -> usize {
        let mut n = 0;
        while n < max && out.room() > 0 {
            let Some(p) = self.rx.front() else { break };
            let Some(mut f) = pool.alloc() else { break };
            let len = p.data.len().min(pool.buffer_capacity());
            pool.set_len(&mut f, len);
            pool.data_mut(&f).copy_from_slice(&p.data[..len]);
            self.now_ns = p.ts_ns;
            self.rx.pop_front();
            if let Err(f) = out.push(f) {
                pool.release(f);
                break;
            }
            n += 1;
        }
        n
    }

    fn tx_room(&mut self, want: usize) -> usize {
        want
    }

    fn tx_stage(&mut self, pool: &mut HeapPool, frame: Frame) {
        let data = pool.data(&frame).to_vec();
        self.tx.push(CapturedPacket {
            interface: self.interface,
            ts_ns: self.now_ns,
            orig_len: data.len() as u32,
            data,
        });
        pool.release(frame);
    }

    fn tx_commit(&mut self, _pool: &mut HeapPool) {}

    fn maintain(&mut self, _pool: &mut HeapPool) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ARP request who-has 198.18.0.2 tell 198.18.0.1.
    const ARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x06, 0x00, 0x01, 0x08,
        0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0, 0, 0, 0, 0x01, 198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 198,
        18, 0, 2,
    ];

    #[test]
    fn writer_emits_the_documented_layout() {
        let mut w = PcapngWriter::new(Vec::new(), 1).unwrap();
        w.write_packet(0, 0x1_0000_0002, &ARP[..41]).unwrap();
        let b = w.into_inner().unwrap();
        // SHB
        assert_eq!(b[0..4], [0x0a, 0x0d, 0x0d, 0x0a]);
        assert_eq!(b[4..8], 28u32.to_le_bytes());
        assert_eq!(b[8..12], [0x4d, 0x3c, 0x2b, 0x1a]);
        // IDB with if_tsresol = 9
        assert_eq!(b[28..32], 1u32.to_le_bytes());
        assert_eq!(b[36..38], 1u16.to_le_bytes());
        assert_eq!(b[44..49], [9, 0, 1, 0, 9]);
        // EPB: 41 bytes padded to 44
        let e = &b[60..];
        assert_eq!(e[0..4], 6u32.to_le_bytes());
        assert_eq!(e[4..8], 76u32.to_le_bytes());
        assert_eq!(e[12..16], 1u32.to_le_bytes());
        assert_eq!(e[16..20], 2u32.to_le_bytes());
        assert_eq!(e[20..24], 41u32.to_le_bytes());
        assert_eq!(&e[28..69], &ARP[..41]);
        assert_eq!(e[69..72], [0, 0, 0]);
        assert_eq!(e[72..76], 76u32.to_le_bytes());
        assert_eq!(e.len(), 76);
    }

    /// A big-endian capture with microsecond timestamps (the default resolution) and a simple
    /// packet block, as other tools write them.
    #[test]
    fn reads_big_endian_microsecond_captures() {
        let mut b = Vec::new();
        b.extend_from_slice(&SHB.to_be_bytes());
        b.extend_from_slice(&28u32.to_be_bytes());
        b.extend_from_slice(&BYTE_ORDER_MAGIC.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&28u32.to_be_bytes());
        // IDB without options
        b.extend_from_slice(&IDB.to_be_bytes());
        b.extend_from_slice(&20u32.to_be_bytes());
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&20u32.to_be_bytes());
        // SPB (skipped): 4 bytes of data
        b.extend_from_slice(&SPB.to_be_bytes());
        b.extend_from_slice(&20u32.to_be_bytes());
        b.extend_from_slice(&4u32.to_be_bytes());
        b.extend_from_slice(&[1, 2, 3, 4]);
        b.extend_from_slice(&20u32.to_be_bytes());
        // EPB, ts = 1_500_000 us
        b.extend_from_slice(&EPB.to_be_bytes());
        b.extend_from_slice(&(32u32 + 44).to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&1_500_000u32.to_be_bytes());
        b.extend_from_slice(&42u32.to_be_bytes());
        b.extend_from_slice(&60u32.to_be_bytes());
        b.extend_from_slice(&ARP);
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&(32u32 + 44).to_be_bytes());
        let pkts = PcapngReader::new(&b[..]).read_all().unwrap();
        assert_eq!(pkts.len(), 1);
        assert_eq!(pkts[0].ts_ns, 1_500_000_000);
        assert_eq!(pkts[0].orig_len, 60);
        assert_eq!(pkts[0].data, ARP);
    }

    #[test]
    fn corrupt_files_are_errors_with_offsets() {
        assert!(PcapngReader::new(&b"hello world!"[..]).read_all().is_err());
        let mut w = PcapngWriter::new(Vec::new(), 1).unwrap();
        w.write_packet(0, 5, &ARP).unwrap();
        let good = w.into_inner().unwrap();
        let truncated = &good[..good.len() - 3];
        let e = PcapngReader::new(truncated).read_all().unwrap_err();
        assert_eq!(e.offset, 60);
        let mut bad_len = good.clone();
        bad_len[64] = 0xff;
        assert!(PcapngReader::new(&bad_len[..]).read_all().is_err());
        let mut undeclared = good.clone();
        undeclared[68] = 3;
        let e = PcapngReader::new(&undeclared[..]).read_all().unwrap_err();
        assert!(e.message.contains("undeclared interface 3"), "{e}");
        assert!(PcapngReader::new(&[][..]).read_all().unwrap().is_empty());
    }

    #[test]
    fn pcap_ports_replay_and_record_with_timestamps() {
        let pkts = vec![
            CapturedPacket {
                interface: 0,
                ts_ns: 10,
                orig_len: 42,
                data: ARP.to_vec(),
            },
            CapturedPacket {
                interface: 1,
                ts_ns: 20,
                orig_len: 41,
                data: ARP[..41].to_vec(),
            },
        ];
        let mut pool = HeapPool::new(4, 2048);
        let mut a = PcapPort::new(0, &pkts);
        let mut b = PcapPort::new(1, &pkts);
        assert_eq!(a.next_ts(), Some(10));
        let mut burst = Frames::with_capacity(4);
        let n = a.receive_into(&mut pool, &mut burst, 4);
        assert_eq!(n, 1);
        b.set_now(10);
        assert_eq!(b.transmit(&mut pool, n).send(&mut burst).frames, 1);
        let n = b.receive_into(&mut pool, &mut burst, 4);
        a.set_now(20);
        a.transmit(&mut pool, n).send(&mut burst);
        let file = PcapPort::write_merged(Vec::new(), &[&a, &b]).unwrap();
        let back = PcapngReader::new(&file[..]).read_all().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            (back[0].interface, back[0].ts_ns, back[0].data.len()),
            (1, 10, 42)
        );
        assert_eq!(
            (back[1].interface, back[1].ts_ns, back[1].data.len()),
            (0, 20, 41)
        );
        assert_eq!(pool.free_count(), 4);
    }

    proptest! {
        #[test]
        fn write_then_read_is_identity(pkts in proptest::collection::vec(
            (0u32..2, any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut w = PcapngWriter::new(Vec::new(), 2).unwrap();
            for (i, ts, d) in &pkts { w.write_packet(*i, *ts, d).unwrap(); }
            let bytes = w.into_inner().unwrap();
            let back = PcapngReader::new(&bytes[..]).read_all().unwrap();
            prop_assert_eq!(back.len(), pkts.len());
            for (b, (i, ts, d)) in back.iter().zip(&pkts) {
                prop_assert_eq!(b.interface, *i);
                prop_assert_eq!(b.ts_ns, *ts);
                prop_assert_eq!(&b.data, d);
            }
        }

        #[test]
        fn reader_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = PcapngReader::new(&bytes[..]).read_all();
        }
    }
}
