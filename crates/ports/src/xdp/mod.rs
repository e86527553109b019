//! AF_XDP ports through xsk-rs: one socket per (interface, queue), all sockets of a worker on
//! one UMEM, so forwarding from port A to port B hands over a buffer index, never bytes. Frames
//! reach the sockets through our own fail-closed XDP program ([`bpf`]); libxdp's program load is
//! inhibited.

pub mod bpf;
pub mod netlink;

use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

pub use bpf::{ifindex, BpfError, OversizeCounter, XdpAttachment};

use crate::{Frame, FramePool, Frames, KernelStats, Port};

/// How sockets bind to a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BindMode {
    /// Zero-copy if the driver supports it, else copy.
    #[default]
    Auto,
    /// The kernel copies frames between its buffers and the UMEM (works everywhere, veth too).
    Copy,
    /// The NIC DMAs into the UMEM (needs driver support; not on veth).
    ZeroCopy,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AttachMode {
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
    /// Native (driver) XDP.
    Drv,
    /// Generic (skb) XDP.
    Skb,
}

/// One interface as fwd opens it.
#[derive(Clone, Debug)]
pub struct PortSpec {
    /// Interface name.
    pub interface: String,
    /// Socket bind mode; must agree between the two ports (their sockets share a UMEM).
    pub bind: BindMode,
    /// XDP attach mode.
    pub attach: AttachMode,
}

/// Sizes of rings and buffers.
#[derive(Clone, Copy, Debug)]
pub struct RingSizes {
    /// Bytes per UMEM frame (power of two, at least 2048).
    pub frame_size: u32,
    /// Entries of each RX, TX, fill and completion ring (power of two).
    pub ring_size: u32,
    /// Preferred busy polling (`SO_PREFER_BUSY_POLL`): the worker's receive call runs the
    /// device's NAPI poll itself, on its own core, instead of softirq on whichever core the
    /// frame arrived. One `recvfrom` per port per poll round (not per frame).
    pub busy_poll: bool,
}

impl Default for RingSizes {
    fn default() -> Self {
        RingSizes {
            frame_size: 2048,
            ring_size: 2048,
            busy_poll: false,
        }
    }
}

/// What went wrong opening the AF_XDP ports, with the interface and queue it concerns.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    #[error("interface {interface:?}: {source}")]
    Bpf {
        interface: String,
        #[source]
        source: BpfError,
    },
    #[error("creating the UMEM failed: {0}")]
    Umem(String),
    #[error("interface {interface:?} queue {queue}: creating the AF_XDP socket ({mode}) failed: {reason}")]
    Socket {
        interface: String,
        queue: u32,
        mode: &'static str,
        reason: String,
    },
    #[error("bad ring sizes: {0}")]
    Sizes(String),
}

/// The UMEM of one worker as a [`FramePool`].
pub struct XdpPool {
    umem: Umem,
    /// Descriptor templates from xsk-rs, one per buffer (length 0).
    descs: Vec<FrameDesc>,
    /// Start of each buffer's data segment inside the UMEM mapping.
    bufs: Vec<NonNull<u8>>,
    capacity: usize,
    frame_size: usize,
    free: Vec<u32>,
}

// SAFETY: the pointers in `bufs` point into the UMEM mapping that `umem` keeps alive and that
// moves with this value; nothing else in this process accesses the buffers we hold.
unsafe impl Send for XdpPool {}

impl std::fmt::Debug for XdpPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPool")
            .field("buffers", &self.bufs.len())
            .field("capacity", &self.capacity)
            .field("free", &self.free.len())
            .finish()
    }
}

impl XdpPool {
    /// A UMEM of `count` frames.
    pub fn new(count: u32, sizes: RingSizes) -> Result<XdpPool, XdpError> {
        let frame_size =
            FrameSize::new(sizes.frame_size).map_err(|e| XdpError::Sizes(e.to_string()))?;
        let ring = QueueSize::new(sizes.ring_size).map_err(|e| XdpError::Sizes(e.to_string()))?;
        let config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(ring)
            .comp_queue_size(ring)
            .frame_headroom(0)
            .build()
            .map_err(|e| XdpError::Sizes(e.to_string()))?;
        let count = NonZeroU32::new(count).ok_or_else(|| XdpError::Sizes("no frames".into()))?;
        let (umem, descs) =
            Umem::new(config, count, false).map_err(|e| XdpError::Umem(e.to_string()))?;
        let mut bufs = Vec::with_capacity(descs.len());
        let mut capacity = 0;
        for d in &descs {
            let mut d = *d;
            // SAFETY: `d` is a descriptor of this UMEM, and no buffer is in a kernel ring yet.
            let mut data = unsafe { umem.data_mut(&mut d) };
            data.cursor().set_pos(usize::MAX);
            let s = data.contents_mut();
            capacity = s.len();
            bufs.push(NonNull::new(s.as_mut_ptr()).expect("slice pointers are non-null"));
        }
        Ok(XdpPool {
            umem,
            free: (0..descs.len() as u32).rev().collect(),
            descs,
            bufs,
            capacity,
            frame_size: sizes.frame_size as usize,
        })
    }

    fn index_of(&self, desc: &FrameDesc) -> u32 {
        (desc.addr() / self.frame_size) as u32
    }

    /// A descriptor for `frame` with its length, ready for a TX ring.
    fn tx_desc(&self, frame: &Frame) -> FrameDesc {
        let mut d = self.descs[frame.index() as usize];
        // SAFETY: `d` is a descriptor of this UMEM and the caller holds the buffer.
        let mut data = unsafe { self.umem.data_mut(&mut d) };
        data.cursor().set_pos(frame.len());
        d
    }
}

impl FramePool for XdpPool {
    fn data(&self, frame: &Frame) -> &[u8] {
        let p = self.bufs[frame.index() as usize];
        // SAFETY: the buffer lies in the live UMEM mapping, holds `capacity` bytes, and the
        // holder of `frame` owns it (it is in no kernel ring), so nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(p.as_ptr(), frame.len().min(self.capacity)) }
    }
    fn data_mut(&mut self, frame: &Frame) -> &mut [u8] {
        let p = self.bufs[frame.index() as usize];
        // SAFETY: as in `data`; `&mut self` keeps any other view through this pool away.
        unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), frame.len().min(self.capacity)) }
    }
    fn buffer_mut(&mut self, frame: &Frame) -> &mut [u8] {
        let p = self.bufs[frame.index() as usize];
        // SAFETY: as in `data_mut`, for the buffer's whole capacity.
        unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), self.capacity) }
    }
    fn buffer_capacity(&self) -> usize {
        self.capacity
    }
    fn alloc(&mut self) -> Option<Frame> {
        self.free.pop().map(|i| Frame::new(i, 0))
    }
    fn release(&mut self, frame: Frame) {
        self.free.push(frame.index());
    }
    fn free_count(&self) -> usize {
        self.free.len()
    }
}

/// Bytes the kernel keeps in front of each frame in a UMEM buffer (`XDP_PACKET_HEADROOM`).
pub const XDP_PACKET_HEADROOM: u32 = 256;

/// The largest frame (Ethernet header included) a buffer of `frame_size` bytes receives:
/// longer ones the kernel drops before fwd sees them (`rx_dropped`).
pub fn max_frame(frame_size: u32) -> u32 {
    frame_size - XDP_PACKET_HEADROOM
}

/// The largest interface MTU whose frames fit a buffer of `frame_size` bytes: the Ethernet
/// header and one 802.1Q tag on top of the MTU, as a veth or NIC lets them in.
pub fn max_mtu(frame_size: u32) -> u32 {
    max_frame(frame_size) - 14 - 4
}

/// Largest burst a port moves through its rings at once.
pub const MAX_BURST: usize = 64;

/// One AF_XDP socket: a queue of an interface.
pub struct XdpPort {
    rx: RxQueue,
    tx: TxQueue,
    fill: FillQueue,
    comp: CompQueue,
    queue: u32,
    scratch: Vec<FrameDesc>,
    /// Descriptors staged for the TX ring by a `TxBurst`, produced on its commit.
    tx_staged: Vec<FrameDesc>,
    /// Frames in the TX ring or the kernel, not yet completed.
    tx_outstanding: u32,
    ring_size: u32,
    busy_poll: bool,
    /// This queue's count of frames the XDP program dropped for being longer than a buffer.
    oversize: Option<OversizeCounter>,
}

impl std::fmt::Debug for XdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpPort")
            .field("queue", &self.queue)
            .field("tx_outstanding", &self.tx_outstanding)
            .finish()
    }
}

impl XdpPort {
    /// The queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Keeps the fill ring full from the pool's free buffers.
    fn refill(&mut self, pool: &mut XdpPool) -> bool {
        let want = self.fill.nb_free(self.ring_size) as usize;
        let n = want.min(pool.free.len()).min(self.scratch.len());
        if n == 0 {
            return false;
        }
        for i in 0..n {
            let idx = pool.free.pop().expect("bounded by free.len()");
            self.scratch[i] = pool.descs[idx as usize];
        }
        // SAFETY: the buffers came off the pool's free list, so neither userspace nor another
        // ring holds them, and they belong to the UMEM this fill ring is tied to.
        let done = unsafe { self.fill.produce(&self.scratch[..n]) };
        if done < n {
            // The ring refused the whole batch (it produces all or nothing): keep them.
            for d in &self.scratch[..n] {
                pool.free.push(pool.index_of(d));
            }
            return false;
        }
        true
    }
}

impl Port for XdpPort {
    type Pool = XdpPool;

    fn receive_into(&mut self, pool: &mut XdpPool, out: &mut Frames, max: usize) -> usize {
        if self.busy_poll {
            // SAFETY: a zero-length, non-blocking recvfrom on our own socket with null buffer
            // and address pointers, which the kernel does not touch for a length of 0.
            unsafe {
                libc::recvfrom(
                    self.rx.fd().as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
        let n = max.min(out.room()).min(self.scratch.len());
        // SAFETY: `scratch` descriptors are overwritten with frames of this socket's UMEM.
        let got = unsafe { self.rx.consume(&mut self.scratch[..n]) };
        for d in &self.scratch[..got] {
            // the kernel handed this buffer over: its one token is made here; room checked
            let f = Frame::new(pool.index_of(d), d.lengths().data() as u32);
            if let Err(f) = out.push(f) {
                pool.release(f);
            }
        }
        got
    }

    fn tx_room(&mut self, want: usize) -> usize {
        let want = want.min(MAX_BURST - self.tx_staged.len());
        let free = self.tx.nb_free(want as u32) as usize;
        want.min(free)
    }

    fn tx_stage(&mut self, pool: &mut XdpPool, frame: Frame) {
        if self.tx_staged.len() >= MAX_BURST {
            // beyond the room a guard is given: dropped, never overwritten
            pool.release(frame);
            return;
        }
        // the token is consumed: the buffer is the ring's until its completion comes back
        self.tx_staged.push(pool.tx_desc(&frame));
    }

    fn tx_commit(&mut self, pool: &mut XdpPool) {
        if self.tx_staged.is_empty() {
            return;
        }
        // SAFETY: each staged descriptor came from a frame token its holder gave up (so no
        // buffer is in another ring or held), they belong to this UMEM, and `tx_room` checked
        // `nb_free` for all of them, so the ring takes them all.
        let done = unsafe { self.tx.produce(&self.tx_staged) };
        if done < self.tx_staged.len() {
            // produce is all or nothing: nothing went out, the buffers are free again
            for d in &self.tx_staged {
                pool.free.push(pool.index_of(d));
            }
        }
        self.tx_outstanding += done as u32;
        self.tx_staged.clear();
    }

    fn kernel_stats(&self) -> Option<KernelStats> {
        let s = self.rx.fd().xdp_statistics().ok()?;
        Some(KernelStats {
            rx_dropped: s.rx_dropped(),
            rx_ring_full: s.rx_ring_full(),
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
            tx_invalid: s.tx_invalid_descs(),
            rx_oversize: self
                .oversize
                .as_ref()
                .and_then(|c| c.read().ok())
                .unwrap_or(0),
        })
    }

    fn maintain(&mut self, pool: &mut XdpPool) {
        if self.tx_outstanding > 0 {
            let n = self.scratch.len();
            // SAFETY: completed descriptors are buffers of this UMEM the kernel is done with.
            let done = unsafe { self.comp.consume(&mut self.scratch[..n]) };
            for d in &self.scratch[..done] {
                pool.free.push(pool.index_of(d));
            }
            self.tx_outstanding -= done as u32;
            // Kick only while the kernel has not yet taken everything from the TX ring (copy
            // mode transmits inside this syscall, 32 frames per call); frames it has taken but
            // not yet completed need no kick.
            let in_ring = self.ring_size - self.tx.nb_free(self.ring_size);
            if in_ring > 0 && self.tx.needs_wakeup() {
                let _ = self.tx.wakeup();
            }
        }
        if self.refill(pool) && self.fill.needs_wakeup() {
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
    }
}

/// The sockets of one worker: for each of its queues, the socket on port A and on port B, all
/// on one pool.
#[derive(Debug)]
pub struct WorkerPorts {
    /// The worker's UMEM.
    pub pool: XdpPool,
    /// `(a, b)` per queue of this worker.
    pub queues: Vec<(XdpPort, XdpPort)>,
}

/// Everything opened on the two interfaces. Drop order: workers' sockets, then the programs.
#[derive(Debug)]
pub struct XdpPorts {
    /// Per worker.
    pub workers: Vec<WorkerPorts>,
    /// The attached programs of port A and B; detached when dropped.
    pub attachments: Vec<XdpAttachment>,
    /// Per port: which XDP mode was chosen and why (for the log).
    pub attach_notes: Vec<String>,
    /// The bind mode in use.
    pub bind: BindMode,
}

/// The queues worker `w` of `workers` polls: queue q goes to worker q % workers.
pub fn worker_queues(queues: u32, workers: usize, w: usize) -> Vec<u32> {
    let workers = workers.max(1);
    (0..queues).filter(|q| *q as usize % workers == w).collect()
}

/// Loads and attaches the fail-closed program to `spec`'s interface in the mode its `attach`
/// asks for (auto: native, else generic); returns it with a sentence saying which mode and why.
/// Frames longer than `max_frame` (see [`max_frame`]) are dropped and counted by the program.
pub fn attach_port(
    spec: &PortSpec,
    queues: u32,
    bind: BindMode,
    max_frame: u32,
) -> Result<(XdpAttachment, String), XdpError> {
    let idx =
        ifindex(&spec.interface).ok_or_else(|| XdpError::NoInterface(spec.interface.clone()))?;
    let err = |source| XdpError::Bpf {
        interface: spec.interface.clone(),
        source,
    };
    match (spec.attach, bind) {
        (AttachMode::Drv, _) | (AttachMode::Auto, BindMode::ZeroCopy) => {
            let a = XdpAttachment::attach(idx, queues, true, max_frame).map_err(err)?;
            Ok((a, "native (drv) XDP, as configured".into()))
        }
        (AttachMode::Skb, _) => {
            let a = XdpAttachment::attach(idx, queues, false, max_frame).map_err(err)?;
            Ok((a, "generic (skb) XDP, as configured".into()))
        }
        (AttachMode::Auto, _) => {
            match XdpAttachment::attach(idx, queues, true, max_frame) {
                Ok(a) => Ok((
                    a,
                    "native (drv) XDP: attach = auto and the driver supports it".into(),
                )),
                Err(e @ (BpfError::Foreign { .. } | BpfError::Query(_))) => Err(err(e)),
                Err(drv_err) => {
                    let a = XdpAttachment::attach(idx, queues, false, max_frame).map_err(err)?;
                    Ok((
                    a,
                    format!("generic (skb) XDP: attach = auto and native XDP was refused ({drv_err})"),
                ))
                }
            }
        }
    }
}

/// Opens one worker's sockets (`my_queues` on both interfaces, one UMEM), enters them into the
/// programs' XSKMAPs and fills every fill ring, so frames flow before the first poll.
pub fn open_worker(
    specs: [&PortSpec; 2],
    attachments: [&XdpAttachment; 2],
    my_queues: &[u32],
    sizes: RingSizes,
    bind: BindMode,
) -> Result<WorkerPorts, XdpError> {
    // Per socket: a full fill ring plus a full TX ring of buffers.
    let count = my_queues.len() as u32 * 2 * 2 * sizes.ring_size;
    let pool = XdpPool::new(count, sizes)?;
    let mut wp = WorkerPorts {
        pool,
        queues: Vec::with_capacity(my_queues.len()),
    };
    for &q in my_queues {
        let a = open_socket(&wp.pool, specs[0], attachments[0], q, sizes, bind)?;
        let b = open_socket(&wp.pool, specs[1], attachments[1], q, sizes, bind)?;
        wp.queues.push((a, b));
    }
    for (a, b) in wp.queues.iter_mut() {
        while a.refill(&mut wp.pool) {}
        while b.refill(&mut wp.pool) {}
    }
    Ok(wp)
}

impl XdpPorts {
    /// Opens `queues` queues on both interfaces and spreads them over `workers` workers
    /// (queue q to worker q % workers). Auto modes try zero-copy and native first and fall
    /// back; everything half-opened by a failed try is closed (and detached) before the next.
    pub fn open(
        specs: [&PortSpec; 2],
        queues: u32,
        workers: usize,
        sizes: RingSizes,
    ) -> Result<XdpPorts, XdpError> {
        for s in specs {
            if ifindex(&s.interface).is_none() {
                return Err(XdpError::NoInterface(s.interface.clone()));
            }
        }
        let binds: &[BindMode] = match specs[0].bind {
            BindMode::Auto => &[BindMode::ZeroCopy, BindMode::Copy],
            BindMode::Copy => &[BindMode::Copy],
            BindMode::ZeroCopy => &[BindMode::ZeroCopy],
        };
        let mut last_err = None;
        for &bind in binds {
            match Self::open_with(specs, queues, workers, sizes, bind) {
                Ok(p) => return Ok(p),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.expect("at least one bind mode is tried"))
    }

    fn open_with(
        specs: [&PortSpec; 2],
        queues: u32,
        workers: usize,
        sizes: RingSizes,
        bind: BindMode,
    ) -> Result<XdpPorts, XdpError> {
        let mut attachments = Vec::with_capacity(2);
        let mut attach_notes = Vec::with_capacity(2);
        for s in specs {
            let (att, note) = attach_port(s, queues, bind, max_frame(sizes.frame_size))?;
            attachments.push(att);
            attach_notes.push(note);
        }

        let workers = workers.max(1);
        let mut worker_ports = Vec::with_capacity(workers);
        for w in 0..workers {
            let my_queues = worker_queues(queues, workers, w);
            if my_queues.is_empty() {
                continue;
            }
            worker_ports.push(open_worker(
                [specs[0], specs[1]],
                [&attachments[0], &attachments[1]],
                &my_queues,
                sizes,
                bind,
            )?);
        }
        Ok(XdpPorts {
            workers: worker_ports,
            attachments,
            attach_notes,
            bind,
        })
    }

    /// Whether port A and B's programs run in native (driver) mode.
    pub fn attach_modes(&self) -> Vec<&'static str> {
        self.attachments
            .iter()
            .map(|a| if a.is_drv() { "drv" } else { "skb" })
            .collect()
    }
}

fn open_socket(
    pool: &XdpPool,
    spec: &PortSpec,
    att: &XdpAttachment,
    queue: u32,
    sizes: RingSizes,
    bind: BindMode,
) -> Result<XdpPort, XdpError> {
    let mode = if bind == BindMode::ZeroCopy {
        "zero-copy"
    } else {
        "copy"
    };
    let err = |reason: String| XdpError::Socket {
        interface: spec.interface.clone(),
        queue,
        mode,
        reason,
    };
    let ring = QueueSize::new(sizes.ring_size).map_err(|e| err(e.to_string()))?;
    let mut flags = BindFlags::XDP_USE_NEED_WAKEUP;
    flags |= if bind == BindMode::ZeroCopy {
        BindFlags::XDP_ZEROCOPY
    } else {
        BindFlags::XDP_COPY
    };
    let config = SocketConfig::builder()
        .rx_queue_size(ring)
        .tx_queue_size(ring)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .xdp_flags(XdpFlags::empty())
        .bind_flags(flags)
        .build();
    let iface: Interface = spec
        .interface
        .parse()
        .map_err(|_| err("interface name contains NUL".into()))?;
    // SAFETY: libxdp's program load is inhibited (the flag set above), as xsk-rs requires for
    // sockets sharing a UMEM.
    let (tx, rx, rings) = unsafe { xsk_rs::Socket::new(config, &pool.umem, &iface, queue) }
        .map_err(|e| {
            err(format!(
                "{e}: {}",
                std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ))
        })?;
    let (fill, comp) = rings.ok_or_else(|| err("queue already bound by this worker".into()))?;
    att.bind_queue(queue, rx.fd().as_raw_fd())
        .map_err(|e| err(e.to_string()))?;
    let busy_poll = sizes.busy_poll && enable_busy_poll(rx.fd().as_raw_fd()).is_ok();
    // Without it the drops are still counted by the kernel, in `rx_dropped` without a reason.
    let oversize = att.oversize_counter(queue).ok();
    Ok(XdpPort {
        rx,
        tx,
        fill,
        comp,
        queue,
        scratch: vec![FrameDesc::default(); MAX_BURST],
        tx_staged: Vec::with_capacity(MAX_BURST),
        tx_outstanding: 0,
        ring_size: sizes.ring_size,
        busy_poll,
        oversize,
    })
}

const SO_BUSY_POLL: libc::c_int = 46;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

fn enable_busy_poll(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    for (opt, val) in [
        (SO_PREFER_BUSY_POLL, 1),
        (SO_BUSY_POLL, 20),
        (SO_BUSY_POLL_BUDGET, MAX_BURST as libc::c_int),
    ] {
        // SAFETY: `val` is a live c_int and we pass its exact size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                &val as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
