//! rtnetlink, just what fwd needs: attach and detach an XDP program the classic way (a netlink
//! attach belongs to the interface, not to a file descriptor, so it outlives a killed process:
//! the fail-closed program keeps dropping), and read one link's index, MTU, state and attached
//! XDP program (the link supervisor asks this between bursts, from the control thread).
//!
//! One request, one answer, on a socket opened for it: no state, no multicast subscription.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_ROUTE: libc::c_int = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = 0x3fff;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFLA_XDP_EXPECTED_FD: u16 = 8;

const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;

/// `XDP_FLAGS_UPDATE_IF_NOEXIST`: fail if a program is attached already.
pub const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
/// `XDP_FLAGS_REPLACE`: act only if the attached program is `IFLA_XDP_EXPECTED_FD`'s.
pub const XDP_FLAGS_REPLACE: u32 = 16;

const IFF_UP: u32 = 0x1;
const IFF_RUNNING: u32 = 0x40;

/// An XDP program attached to a link, as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachedProg {
    /// The program's id (`bpftool prog show id N`).
    pub id: u32,
    /// Native (driver) mode; false for generic (skb) mode.
    pub drv: bool,
}

/// What the kernel says about one link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index (a recreated interface gets a new one).
    pub ifindex: u32,
    /// L3 MTU.
    pub mtu: u32,
    /// Administratively up and operationally running (carrier).
    pub up: bool,
    /// The XDP program attached, if one is.
    pub xdp: Option<AttachedProg>,
}

struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, ifindex: u32) -> Msg {
        let mut buf = vec![0u8; 16 + 16];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
        buf[16] = libc::AF_UNSPEC as u8; // ifinfomsg: family, pad, type, index, flags, change
        buf[20..24].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        Msg { buf }
    }
    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
    /// Starts a nested attribute; returns where its length goes.
    fn begin_nested(&mut self, kind: u16) -> usize {
        let at = self.buf.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        at
    }
    fn end_nested(&mut self, at: usize) {
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }
    fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// Attributes of a netlink attribute stream: (type without flags, payload).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, payload))
    })
}

fn u32_of(p: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(p.get(..4)?.try_into().ok()?))
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the new descriptor is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live c_int and we pass its size; failure only loses error texts.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_NETLINK,
                opt,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a live timeval and we pass its size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// Sends `req` and returns the answer's first message (type, payload after the header).
fn transact(req: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let fd = socket()?;
    // SAFETY: a zeroed sockaddr_nl is the kernel's address (pid 0, no groups).
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: `req` and `addr` are live for the call and their exact sizes are passed.
    let r = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr() as *const libc::c_void,
            req.len(),
            0,
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `buf` is writable for its whole length.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            0,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n < 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short netlink answer",
        ));
    }
    let len = (u32_of(&buf).unwrap_or(0) as usize).clamp(16, n);
    let kind = u16::from_ne_bytes([buf[4], buf[5]]);
    let flags = u16::from_ne_bytes([buf[6], buf[7]]);
    let payload = buf[16..len].to_vec();
    if kind == NLMSG_ERROR {
        let errno = u32_of(&payload).unwrap_or(0) as i32;
        if errno == 0 {
            return Ok((kind, payload));
        }
        let os = io::Error::from_raw_os_error(-errno);
        // With NETLINK_CAP_ACK the error carries only the request's header (16 bytes), then
        // the extended-ack attributes.
        let mut text = None;
        if flags & NLM_F_ACK_TLVS != 0 && payload.len() > 20 {
            for (t, p) in attrs(&payload[20..]) {
                if t == NLMSGERR_ATTR_MSG {
                    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
                    text = Some(String::from_utf8_lossy(&p[..end]).into_owned());
                }
            }
        }
        return Err(match text {
            Some(t) => io::Error::new(os.kind(), format!("{os} ({t})")),
            None => os,
        });
    }
    Ok((kind, payload))
}

/// Attaches program `prog_fd` to `ifindex` (or detaches with -1), `flags` = mode plus
/// `XDP_FLAGS_*`; with `expected_fd`, only if that program is the one attached now.
pub fn set_xdp(ifindex: u32, prog_fd: i32, flags: u32, expected_fd: Option<i32>) -> io::Result<()> {
    let mut m = Msg::new(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, ifindex);
    let at = m.begin_nested(IFLA_XDP);
    m.attr(IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    let mut flags = flags;
    if let Some(e) = expected_fd {
        flags |= XDP_FLAGS_REPLACE;
        m.attr(IFLA_XDP_EXPECTED_FD, &e.to_ne_bytes());
    }
    m.attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    m.end_nested(at);
    transact(&m.finish()).map(|_| ())
}

/// The link named `name` in this thread's network namespace; `Ok(None)` if there is none.
pub fn link_by_name(name: &str) -> io::Result<Option<LinkInfo>> {
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    get_link(0, Some(&n))
}

/// The link with index `ifindex`; `Ok(None)` if there is none.
pub fn link_by_index(ifindex: u32) -> io::Result<Option<LinkInfo>> {
    get_link(ifindex, None)
}

fn get_link(ifindex: u32, name: Option<&[u8]>) -> io::Result<Option<LinkInfo>> {
    let mut m = Msg::new(RTM_GETLINK, NLM_F_REQUEST, ifindex);
    if let Some(n) = name {
        m.attr(IFLA_IFNAME, n);
    }
    match transact(&m.finish()) {
        Ok((RTM_NEWLINK, p)) => Ok(parse_link(&p)),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected netlink answer",
        )),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An `RTM_NEWLINK` payload: ifinfomsg (16 bytes), then attributes.
fn parse_link(p: &[u8]) -> Option<LinkInfo> {
    if p.len() < 16 {
        return None;
    }
    let ifindex = u32_of(&p[4..])?;
    let flags = u32_of(&p[8..])?;
    let mut info = LinkInfo {
        ifindex,
        mtu: 0,
        up: flags & IFF_UP != 0 && flags & IFF_RUNNING != 0,
        xdp: None,
    };
    for (t, a) in attrs(&p[16..]) {
        match t {
            IFLA_MTU => info.mtu = u32_of(a).unwrap_or(0),
            IFLA_XDP => {
                let (mut mode, mut id) = (0u8, 0u32);
                for (xt, xa) in attrs(a) {
                    match xt {
                        IFLA_XDP_ATTACHED => mode = xa.first().copied().unwrap_or(0),
                        IFLA_XDP_PROG_ID => id = u32_of(xa).unwrap_or(0),
                        _ => {}
                    }
                }
                if id != 0 && (mode == XDP_ATTACHED_DRV || mode == XDP_ATTACHED_SKB) {
                    info.xdp = Some(AttachedProg {
                        id,
                        drv: mode == XDP_ATTACHED_DRV,
                    });
                }
            }
            _ => {}
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_with_its_mtu_and_a_missing_link_is_none() {
        let lo = link_by_name("lo").unwrap().expect("lo exists");
        assert_eq!(Some(lo.ifindex), super::super::ifindex("lo"));
        assert_eq!(lo.mtu, 65536);
        assert_eq!(lo.xdp, None);
        assert_eq!(link_by_index(lo.ifindex).unwrap(), Some(lo));
        assert_eq!(link_by_name("fwd-no-such-if0").unwrap(), None);
    }

    #[test]
    fn nested_attributes_are_built_and_parsed() {
        let mut m = Msg::new(RTM_SETLINK, NLM_F_REQUEST, 7);
        let at = m.begin_nested(IFLA_XDP);
        m.attr(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]);
        m.attr(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes());
        m.end_nested(at);
        m.attr(IFLA_MTU, &1500u32.to_ne_bytes());
        let b = m.finish();
        assert_eq!(u32_of(&b).unwrap() as usize, b.len());
        let mut link = b[16..].to_vec();
        link[8..12].copy_from_slice(&(IFF_UP | IFF_RUNNING).to_ne_bytes());
        let info = parse_link(&link).unwrap();
        assert_eq!(info.ifindex, 7);
        assert_eq!(info.mtu, 1500);
        assert!(info.up);
        assert_eq!(info.xdp, Some(AttachedProg { id: 42, drv: false }));
    }
}
