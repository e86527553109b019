//! The fail-closed XDP program, its XSKMAP and its attachment, through the bpf(2) syscall.
//!
//! Why not libxdp's default program: it passes frames of a queue without a bound socket to the
//! host stack, a bypass of the firewall. Ours is a few instructions, assembled here so that no
//! clang is needed at build time:
//! `if (len > max_frame) { oversize[queue]++; return XDP_DROP; }
//! return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP)`. The length check exists
//! because the kernel would drop a frame longer than a UMEM buffer anyway, counted only as the
//! socket's anonymous `rx_dropped`; counted here it is a drop with a reason (`oversize`). It is attached through netlink (not a BPF link), so it belongs
//! to the interface and outlives the process: after `kill -9` the sockets are gone, their XSKMAP
//! slots empty, and the program drops every frame instead of the host stack taking them (fail
//! closed). A clean stop (dropping the [`XdpAttachment`]) detaches it; the next fwd replaces a
//! program left by a killed fwd (recognised by its name) and refuses anyone else's.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The name fwd loads its program under: how a next fwd recognises a stale one.
pub const PROGRAM_NAME: &str = "fwd_fail_closed";

const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP_ATTACH_TYPE: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_DROP: i32 = 1;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, works on any device.
pub const XDP_FLAGS_SKB_MODE: u32 = 2;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver.
pub const XDP_FLAGS_DRV_MODE: u32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    /// dst register in the low nibble, src register in the high nibble.
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (dst & 0xf) | (src << 4),
            off,
            imm,
        }
    }

    /// The instruction's 8 bytes as the kernel reads them (little endian host).
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }
}

/// `offsetof(struct xdp_md, data)`, `data_end`, `rx_queue_index`.
const XDP_MD_DATA: i16 = 0;
const XDP_MD_DATA_END: i16 = 4;
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// Instructions of [`fail_closed_program`].
pub const PROGRAM_LEN: usize = 23;

/// The program. In C:
/// ```c
/// if (ctx->data + max_frame + 1 <= ctx->data_end) {      // longer than a buffer
///     __u32 q = ctx->rx_queue_index;
///     __u64 *n = bpf_map_lookup_elem(&oversize, &q);   // per CPU, per queue
///     if (n) __sync_fetch_and_add(n, 1);
///     return XDP_DROP;
/// }
/// return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP);
/// ```
/// The low bits of `bpf_redirect_map`'s flags are the action returned when the map has no
/// socket at that key, so an unbound queue drops. The length test compares packet pointers
/// (`data + k` against `data_end`), which the verifier allows without `CAP_PERFMON`.
pub fn fail_closed_program(
    xskmap_fd: RawFd,
    oversize_fd: RawFd,
    max_frame: u32,
) -> [Insn; PROGRAM_LEN] {
    // The verifier caps constant offsets on packet pointers below 64 KiB.
    let limit = max_frame.min(0xfff0) as i32 + 1;
    [
        // 0: r6 = r1 (ctx; r1-r5 are clobbered by calls)      BPF_ALU64 | BPF_MOV | BPF_X
        Insn::new(0xbf, 6, 1, 0, 0),
        // 1: r2 = ctx->data   2: r3 = ctx->data_end             BPF_LDX | BPF_MEM | BPF_W
        Insn::new(0x61, 2, 6, XDP_MD_DATA, 0),
        Insn::new(0x61, 3, 6, XDP_MD_DATA_END, 0),
        // 3: r2 += max_frame + 1                                BPF_ALU64 | BPF_ADD | BPF_K
        Insn::new(0x07, 2, 0, 0, limit),
        // 4: if r2 > r3 goto 17 (it fits)                       BPF_JMP | BPF_JGT | BPF_X
        Insn::new(0x2d, 2, 3, 12, 0),
        // 5: r2 = ctx->rx_queue_index   6: *(u32 *)(r10 - 4) = r2 (the key, on the stack)
        Insn::new(0x61, 2, 6, XDP_MD_RX_QUEUE_INDEX, 0),
        Insn::new(0x63, 10, 2, -4, 0),
        // 7: r2 = r10   8: r2 += -4 (the key's address)
        Insn::new(0xbf, 2, 10, 0, 0),
        Insn::new(0x07, 2, 0, 0, -4),
        // 9-10: r1 = &oversize                 BPF_LD | BPF_DW | BPF_IMM, BPF_PSEUDO_MAP_FD
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, oversize_fd),
        Insn::new(0, 0, 0, 0, 0),
        // 11: r0 = bpf_map_lookup_elem(r1, r2)                  BPF_JMP | BPF_CALL
        Insn::new(0x85, 0, 0, 0, BPF_FUNC_MAP_LOOKUP_ELEM),
        // 12: if r0 == 0 goto 15                                BPF_JMP | BPF_JEQ | BPF_K
        Insn::new(0x15, 0, 0, 2, 0),
        // 13: r1 = 1   14: lock *(u64 *)(r0 + 0) += r1          BPF_STX | BPF_ATOMIC | BPF_DW
        Insn::new(0xb7, 1, 0, 0, 1),
        Insn::new(0xdb, 0, 1, 0, 0),
        // 15: r0 = XDP_DROP   16: exit
        Insn::new(0xb7, 0, 0, 0, XDP_DROP),
        Insn::new(0x95, 0, 0, 0, 0),
        // 17: r2 = ctx->rx_queue_index
        Insn::new(0x61, 2, 6, XDP_MD_RX_QUEUE_INDEX, 0),
        // 18-19: r1 = &xsks
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, xskmap_fd),
        Insn::new(0, 0, 0, 0, 0),
        // 20: r3 = XDP_DROP   21: r0 = bpf_redirect_map(r1, r2, r3)   22: exit
        Insn::new(0xb7, 3, 0, 0, XDP_DROP),
        Insn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        Insn::new(0x95, 0, 0, 0, 0),
    ]
}

/// `union bpf_attr`, zero-filled; fields written at their offsets.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 128])
    }
    fn u32_at(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64_at(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name_at(&mut self, off: usize, name: &str) -> &mut Self {
        let n = name.len().min(15);
        self.0[off..off + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

fn sys_bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable, zero-initialised 128-byte `union bpf_attr` that
    // outlives the call; the kernel reads at most the size we pass.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf syscall just returned this new file descriptor, and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// Errors of loading and attaching the XDP program, each naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("creating the XSKMAP failed: {0}")]
    MapCreate(io::Error),
    #[error("loading the XDP program failed: {err}; verifier log: {log}")]
    ProgLoad { err: io::Error, log: String },
    #[error("attaching XDP ({mode}) to ifindex {ifindex} failed: {err}")]
    Attach {
        ifindex: u32,
        mode: &'static str,
        err: io::Error,
    },
    #[error("inserting the socket of queue {queue} into the XSKMAP failed: {err}")]
    MapUpdate { queue: u32, err: io::Error },
    #[error("another XDP program (id {id}, name {name:?}) is attached; fwd replaces only its own (remove it: ip link set dev IFACE xdp off)")]
    Foreign { id: u32, name: String },
    #[error("reading the interface's XDP state failed: {0}")]
    Query(io::Error),
}

/// A loaded, attached fail-closed XDP program on one interface. Dropping it detaches it (only if
/// it is still the one attached); a killed process leaves it attached, dropping frames.
#[derive(Debug)]
pub struct XdpAttachment {
    prog: OwnedFd,
    map: OwnedFd,
    oversize: OwnedFd,
    ifindex: u32,
    drv: bool,
    id: u32,
    replaced: Option<(u32, bool)>,
}

/// A program of a previous fwd still attached to the interface: its fd (None when it could not
/// be opened: `BPF_PROG_GET_FD_BY_ID` needs `CAP_SYS_ADMIN`, which the service unit does not
/// grant), id and mode.
struct Stale {
    fd: Option<OwnedFd>,
    id: u32,
    drv: bool,
}

/// The program attached to `ifindex`, if any: ours from a killed fwd (or one fwd cannot
/// identify without `CAP_SYS_ADMIN`), or an error naming someone else's.
fn stale_program(ifindex: u32) -> Result<Option<Stale>, BpfError> {
    let Some(prog) = super::netlink::link_by_index(ifindex)
        .map_err(BpfError::Query)?
        .and_then(|l| l.xdp)
    else {
        return Ok(None);
    };
    let mut attr = Attr::new();
    attr.u32_at(0, prog.id);
    let fd = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) {
        Ok(fd) => owned(fd),
        // Without CAP_SYS_ADMIN the program cannot be opened to read its name. Refusing would
        // keep a restarted service from ever taking over after a crash; the caller logs it.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            return Ok(Some(Stale {
                fd: None,
                id: prog.id,
                drv: prog.drv,
            }))
        }
        Err(e) => return Err(BpfError::Query(e)),
    };
    let name = program_name(&fd).map_err(BpfError::Query)?;
    if name != PROGRAM_NAME {
        return Err(BpfError::Foreign { id: prog.id, name });
    }
    Ok(Some(Stale {
        fd: Some(fd),
        id: prog.id,
        drv: prog.drv,
    }))
}

/// `struct bpf_prog_info` up to and including `name[16]` (offset 64); `id` is at offset 4.
fn program_info(fd: &OwnedFd) -> io::Result<[u8; 80]> {
    let mut info = [0u8; 80];
    let mut attr = Attr::new();
    attr.u32_at(0, fd.as_raw_fd() as u32)
        .u32_at(4, info.len() as u32)
        .u64_at(8, info.as_mut_ptr() as u64);
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info)
}

/// The name a program was loaded under (`bpf_prog_info.name`).
fn program_name(fd: &OwnedFd) -> io::Result<String> {
    let info = program_info(fd)?;
    let name = &info[64..80];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Ok(String::from_utf8_lossy(&name[..end]).into_owned())
}

fn mode_flag(drv: bool) -> u32 {
    if drv {
        XDP_FLAGS_DRV_MODE
    } else {
        XDP_FLAGS_SKB_MODE
    }
}

fn mode_name(drv: bool) -> &'static str {
    if drv {
        "drv"
    } else {
        "skb"
    }
}

impl XdpAttachment {
    /// Creates an XSKMAP with `max_queues` slots, loads the program, and attaches it to
    /// `ifindex` in driver mode (`drv`) or generic (skb) mode. Frames longer than `max_frame`
    /// bytes are dropped by the program and counted per queue ([`oversize_counter`]). A program
    /// left by a killed fwd is replaced (atomically when the modes agree); any other attached
    /// program is an error.
    ///
    /// [`oversize_counter`]: XdpAttachment::oversize_counter
    pub fn attach(
        ifindex: u32,
        max_queues: u32,
        drv: bool,
        max_frame: u32,
    ) -> Result<XdpAttachment, BpfError> {
        let stale = stale_program(ifindex)?;
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_MAP_TYPE_XSKMAP)
            .u32_at(4, 4)
            .u32_at(8, 4)
            .u32_at(12, max_queues.max(1))
            .name_at(28, "fwd_xsks");
        let map = owned(sys_bpf(BPF_MAP_CREATE, &mut attr).map_err(BpfError::MapCreate)?);
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_MAP_TYPE_PERCPU_ARRAY)
            .u32_at(4, 4)
            .u32_at(8, 8)
            .u32_at(12, max_queues.max(1))
            .name_at(28, "fwd_oversize");
        let oversize = owned(sys_bpf(BPF_MAP_CREATE, &mut attr).map_err(BpfError::MapCreate)?);

        let prog = load_program(map.as_raw_fd(), oversize.as_raw_fd(), max_frame)?;
        let id = program_info(&prog)
            .map(|i| u32::from_ne_bytes([i[4], i[5], i[6], i[7]]))
            .map_err(BpfError::Query)?;
        let fd = prog.as_raw_fd();
        let attach_err = |err| BpfError::Attach {
            ifindex,
            mode: mode_name(drv),
            err,
        };
        match &stale {
            Some(s) if s.drv == drv => {
                let expected = s.fd.as_ref().map(|f| f.as_raw_fd());
                super::netlink::set_xdp(ifindex, fd, mode_flag(drv), expected)
                    .map_err(attach_err)?
            }
            Some(s) => {
                // Native and generic programs cannot coexist: the stale one goes first.
                let expected = s.fd.as_ref().map(|f| f.as_raw_fd());
                super::netlink::set_xdp(ifindex, -1, mode_flag(s.drv), expected)
                    .map_err(attach_err)?;
                super::netlink::set_xdp(
                    ifindex,
                    fd,
                    mode_flag(drv) | super::netlink::XDP_FLAGS_UPDATE_IF_NOEXIST,
                    None,
                )
                .map_err(attach_err)?
            }
            None => super::netlink::set_xdp(
                ifindex,
                fd,
                mode_flag(drv) | super::netlink::XDP_FLAGS_UPDATE_IF_NOEXIST,
                None,
            )
            .map_err(attach_err)?,
        }
        Ok(XdpAttachment {
            prog,
            map,
            oversize,
            ifindex,
            drv,
            id,
            replaced: stale.map(|s| (s.id, s.fd.is_some())),
        })
    }

    /// Directs frames of `queue` to the AF_XDP socket `xsk_fd`.
    pub fn bind_queue(&self, queue: u32, xsk_fd: RawFd) -> Result<(), BpfError> {
        let key = queue;
        let value = xsk_fd as u32;
        let mut attr = Attr::new();
        attr.u32_at(0, self.map.as_raw_fd() as u32)
            .u64_at(8, &key as *const u32 as u64)
            .u64_at(16, &value as *const u32 as u64)
            .u64_at(24, 0);
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(|_| ())
            .map_err(|err| BpfError::MapUpdate { queue, err })
    }

    /// Removes the socket of `queue`: its frames are dropped from now on.
    pub fn unbind_queue(&self, queue: u32) {
        let key = queue;
        let mut attr = Attr::new();
        attr.u32_at(0, self.map.as_raw_fd() as u32)
            .u64_at(8, &key as *const u32 as u64);
        let _ = sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr);
    }

    /// A reader of queue `queue`'s count of frames the program dropped for being longer than a
    /// buffer (its own file descriptor, for the worker that owns the queue).
    pub fn oversize_counter(&self, queue: u32) -> io::Result<OversizeCounter> {
        Ok(OversizeCounter {
            map: self.oversize.try_clone()?,
            queue,
            cpus: possible_cpus()?,
        })
    }

    /// The interface this program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// True for native (driver) mode, false for generic (skb) mode.
    pub fn is_drv(&self) -> bool {
        self.drv
    }

    /// The kernel's id of this program (what `ip link` and netlink report as attached).
    pub fn prog_id(&self) -> u32 {
        self.id
    }

    /// The program this one replaced, if there was one: its id, and whether it was recognised
    /// as fwd's by its name (false: it could not be opened without `CAP_SYS_ADMIN`).
    pub fn replaced(&self) -> Option<(u32, bool)> {
        self.replaced
    }
}

impl Drop for XdpAttachment {
    fn drop(&mut self) {
        // Only if ours is still the attached program (the interface may be gone, or another
        // fwd may have taken over): an error here means there is nothing of ours to detach.
        let _ = super::netlink::set_xdp(
            self.ifindex,
            -1,
            mode_flag(self.drv),
            Some(self.prog.as_raw_fd()),
        );
    }
}

/// One queue's count of oversize frames, summed over the CPUs (a syscall: read it rarely).
#[derive(Debug)]
pub struct OversizeCounter {
    map: OwnedFd,
    queue: u32,
    /// How many values (one per possible CPU) a lookup of the per-CPU map writes.
    cpus: usize,
}

impl OversizeCounter {
    /// Frames of this queue dropped for length since the program was loaded.
    pub fn read(&self) -> io::Result<u64> {
        let key = self.queue;
        let mut values = vec![0u64; self.cpus];
        let mut attr = Attr::new();
        attr.u32_at(0, self.map.as_raw_fd() as u32)
            .u64_at(8, &key as *const u32 as u64)
            .u64_at(16, values.as_mut_ptr() as u64);
        sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr)?;
        Ok(values.iter().sum())
    }
}

/// The number of possible CPUs (`/sys/devices/system/cpu/possible`, e.g. `0-15` or `0,2-3`):
/// how many values a per-CPU map lookup writes.
fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot read the possible CPUs from {:?}", text.trim()),
        )
    })
}

/// The highest CPU number of a kernel CPU list, plus one.
fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut max = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next()?.trim().parse::<usize>().ok()?;
        max = max.max(Some(last));
    }
    max.map(|m| m + 1)
}

fn load_program(map_fd: RawFd, oversize_fd: RawFd, max_frame: u32) -> Result<OwnedFd, BpfError> {
    let insns = fail_closed_program(map_fd, oversize_fd, max_frame);
    let license = b"GPL\0";
    let mut log = vec![0u8; 0];
    for log_level in [0u32, 1] {
        if log_level == 1 {
            log = vec![0u8; 64 * 1024];
        }
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_PROG_TYPE_XDP)
            .u32_at(4, insns.len() as u32)
            .u64_at(8, insns.as_ptr() as u64)
            .u64_at(16, license.as_ptr() as u64)
            .u32_at(24, log_level)
            .u32_at(28, log.len() as u32)
            .u64_at(
                32,
                if log.is_empty() {
                    0
                } else {
                    log.as_mut_ptr() as u64
                },
            )
            .name_at(48, PROGRAM_NAME)
            .u32_at(68, BPF_XDP_ATTACH_TYPE);
        match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(fd) => return Ok(owned(fd)),
            Err(err) if log_level == 1 => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                return Err(BpfError::ProgLoad {
                    err,
                    log: String::from_utf8_lossy(&log[..end]).into_owned(),
                });
            }
            Err(_) => continue,
        }
    }
    unreachable!("the loop returns on its second pass")
}

/// The interface index of `name`, or None if there is no such interface here.
pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (idx != 0).then_some(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_encodes_as_the_kernel_expects() {
        let p = fail_closed_program(7, 9, 1792);
        let bytes: Vec<[u8; 8]> = p.iter().map(|i| i.to_bytes()).collect();
        // r6 = r1; r2 = *(u32 *)(r6 + 0); r3 = *(u32 *)(r6 + 4); r2 += 1793
        assert_eq!(bytes[0], [0xbf, 0x16, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[1], [0x61, 0x62, 0, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[2], [0x61, 0x63, 4, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[3], [0x07, 0x02, 0, 0, 0x01, 0x07, 0, 0]);
        // if r2 > r3 goto +12, landing on the redirect block
        assert_eq!(bytes[4], [0x2d, 0x32, 12, 0, 0, 0, 0, 0]);
        assert_eq!(5 + 12, 17);
        assert_eq!(bytes[17], [0x61, 0x62, 16, 0, 0, 0, 0, 0]);
        // the key: *(u32 *)(r10 - 4) = r2
        assert_eq!(bytes[6], [0x63, 0x2a, 0xfc, 0xff, 0, 0, 0, 0]);
        // r1 = oversize map fd 9, then the XSKMAP fd 7 (ld_imm64, src = BPF_PSEUDO_MAP_FD)
        assert_eq!(bytes[9], [0x18, 0x11, 0, 0, 9, 0, 0, 0]);
        assert_eq!(bytes[10], [0; 8]);
        assert_eq!(bytes[18], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes[19], [0; 8]);
        // call 1 (map_lookup_elem); if r0 == 0 goto +2 (the drop); lock *(u64 *)(r0) += r1
        assert_eq!(bytes[11], [0x85, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bytes[12], [0x15, 0, 2, 0, 0, 0, 0, 0]);
        assert_eq!(bytes[14], [0xdb, 0x10, 0, 0, 0, 0, 0, 0]);
        // return XDP_DROP (both for oversize and after the lookup failed)
        assert_eq!(bytes[15], [0xb7, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bytes[16], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        // r3 = 1 (XDP_DROP); call 51 (bpf_redirect_map); exit
        assert_eq!(bytes[20], [0xb7, 0x03, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bytes[21], [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(bytes[22], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn cpu_lists_count_up_to_the_highest_cpu() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0,2-3,7"), Some(8));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(possible_cpus().unwrap() >= 1);
    }

    #[test]
    fn unknown_interface_has_no_index() {
        assert_eq!(ifindex("fwd-no-such-if0"), None);
        assert!(ifindex("lo").is_some());
    }
}
