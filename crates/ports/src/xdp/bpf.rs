//! The fail-closed XDP program, its XSKMAP and its attachment, through the bpf(2) syscall.
//!
//! Why not libxdp's default program: it passes frames of a queue without a bound socket to the
//! host stack, a bypass of the firewall. Ours is five instructions,
//! `return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_DROP)`, assembled here so that no
//! clang is needed at build time. It is attached through netlink (not a BPF link), so it belongs
//! to the interface and outlives the process: after `kill -9` the sockets are gone, their XSKMAP
//! slots empty, and the program drops every frame instead of the host stack taking them (fail
//! closed). A clean stop (dropping the [`XdpAttachment`]) detaches it; the next fwd replaces a
//! program left by a killed fwd (recognised by its name) and refuses anyone else's.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// The name fwd loads its program under: how a next fwd recognises a stale one.
pub const PROGRAM_NAME: &str = "fwd_fail_closed";

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP_ATTACH_TYPE: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
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

/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// The program: `r2 = ctx->rx_queue_index; r1 = &xsks; r3 = XDP_DROP;
/// return bpf_redirect_map(r1, r2, r3)`. The low bits of the flags argument are the action
/// returned when the map has no socket at that key, so an unbound queue drops.
pub fn fail_closed_program(xskmap_fd: RawFd) -> [Insn; 6] {
    [
        // BPF_LDX | BPF_MEM | BPF_W: r2 = *(u32 *)(r1 + 16)
        Insn::new(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        // BPF_LD | BPF_DW | BPF_IMM with BPF_PSEUDO_MAP_FD: r1 = map (two slots)
        Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, xskmap_fd),
        Insn::new(0, 0, 0, 0, 0),
        // BPF_ALU64 | BPF_MOV | BPF_K: r3 = XDP_DROP
        Insn::new(0xb7, 3, 0, 0, XDP_DROP),
        // BPF_JMP | BPF_CALL
        Insn::new(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        // BPF_JMP | BPF_EXIT
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
    /// `ifindex` in driver mode (`drv`) or generic (skb) mode. A program left by a killed fwd is
    /// replaced (atomically when the modes agree); any other attached program is an error.
    pub fn attach(ifindex: u32, max_queues: u32, drv: bool) -> Result<XdpAttachment, BpfError> {
        let stale = stale_program(ifindex)?;
        let mut attr = Attr::new();
        attr.u32_at(0, BPF_MAP_TYPE_XSKMAP)
            .u32_at(4, 4)
            .u32_at(8, 4)
            .u32_at(12, max_queues.max(1))
            .name_at(28, "fwd_xsks");
        let map = owned(sys_bpf(BPF_MAP_CREATE, &mut attr).map_err(BpfError::MapCreate)?);

        let prog = load_program(map.as_raw_fd())?;
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

fn load_program(map_fd: RawFd) -> Result<OwnedFd, BpfError> {
    let insns = fail_closed_program(map_fd);
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
        let p = fail_closed_program(7);
        let bytes: Vec<[u8; 8]> = p.iter().map(|i| i.to_bytes()).collect();
        // r2 = *(u32 *)(r1 + 16)
        assert_eq!(bytes[0], [0x61, 0x12, 16, 0, 0, 0, 0, 0]);
        // r1 = map fd 7 (ld_imm64, src = BPF_PSEUDO_MAP_FD)
        assert_eq!(bytes[1], [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(bytes[2], [0; 8]);
        // r3 = 1 (XDP_DROP)
        assert_eq!(bytes[3], [0xb7, 0x03, 0, 0, 1, 0, 0, 0]);
        // call 51 (bpf_redirect_map)
        assert_eq!(bytes[4], [0x85, 0, 0, 0, 51, 0, 0, 0]);
        assert_eq!(bytes[5], [0x95, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn unknown_interface_has_no_index() {
        assert_eq!(ifindex("fwd-no-such-if0"), None);
        assert!(ifindex("lo").is_some());
    }
}
