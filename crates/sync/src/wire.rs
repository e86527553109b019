//! The message layer of conntrackd's sync protocol, as 1.4.7 puts it on the wire
//! (`include/network.h`): an 8-byte header (16 for ACK/NACK/RESYNC), then 4-byte-aligned TLV
//! attributes for state messages. A datagram carries one or more messages back to back.
//!
//! Views here are zero-copy and checked once (`new_checked`); every malformed input is an
//! [`Error`] that the caller counts, never a panic.

use core::fmt;

/// `CONNTRACKD_PROTOCOL_VERSION`.
pub const VERSION: u8 = 1;
/// `NETHDR_SIZ`: version/type, flags, length, sequence.
pub const HEADER_LEN: usize = 8;
/// `NETHDR_ACK_SIZ`: the header plus the `from` and `to` sequence numbers.
pub const ACK_HEADER_LEN: usize = 16;
/// `NTA_ALIGNTO`.
pub const ATTR_ALIGN: usize = 4;
/// An attribute's own header: length and type, both big-endian u16.
pub const ATTR_HEADER_LEN: usize = 4;

/// Message types (`enum nethdr_type`).
pub mod kind {
    pub const CT_NEW: u8 = 0;
    pub const CT_UPD: u8 = 1;
    pub const CT_DEL: u8 = 2;
    pub const EXP_NEW: u8 = 3;
    pub const EXP_UPD: u8 = 4;
    pub const EXP_DEL: u8 = 5;
    /// `NET_T_STATE_MAX`: types above are not state messages.
    pub const STATE_MAX: u8 = EXP_DEL;
    pub const CTL: u8 = 10;
}

/// Header flags (`NET_F_*`).
pub mod flags {
    pub const RESYNC: u8 = 1 << 1;
    pub const NACK: u8 = 1 << 2;
    pub const ACK: u8 = 1 << 3;
    pub const ALIVE: u8 = 1 << 4;
    pub const HELLO: u8 = 1 << 5;
    pub const HELLO_BACK: u8 = 1 << 6;
}

/// Attribute types (`enum nta_attr`) with the exact attribute length (`nta_len`, header
/// included, padding excluded) 1.4.7's `msg2ct` demands; `None` for the variable ones.
pub mod attr {
    pub const IPV4: u16 = 0;
    pub const IPV6: u16 = 1;
    pub const L4PROTO: u16 = 2;
    pub const PORT: u16 = 3;
    pub const TCP_STATE: u16 = 4;
    pub const STATUS: u16 = 5;
    pub const TIMEOUT: u16 = 6;
    pub const MARK: u16 = 7;
    pub const MASTER_IPV4: u16 = 8;
    pub const MASTER_IPV6: u16 = 9;
    pub const MASTER_L4PROTO: u16 = 10;
    pub const MASTER_PORT: u16 = 11;
    pub const SNAT_IPV4: u16 = 12;
    pub const DNAT_IPV4: u16 = 13;
    pub const SPAT_PORT: u16 = 14;
    pub const DPAT_PORT: u16 = 15;
    pub const NAT_SEQ_ADJ: u16 = 16;
    pub const SCTP_STATE: u16 = 17;
    pub const SCTP_VTAG_ORIG: u16 = 18;
    pub const SCTP_VTAG_REPL: u16 = 19;
    pub const DCCP_STATE: u16 = 20;
    pub const DCCP_ROLE: u16 = 21;
    pub const ICMP_TYPE: u16 = 22;
    pub const ICMP_CODE: u16 = 23;
    pub const ICMP_ID: u16 = 24;
    pub const TCP_WSCALE_ORIG: u16 = 25;
    pub const TCP_WSCALE_REPL: u16 = 26;
    pub const HELPER_NAME: u16 = 27;
    pub const LABELS: u16 = 28;
    pub const SNAT_IPV6: u16 = 29;
    pub const DNAT_IPV6: u16 = 30;
    pub const SYNPROXY: u16 = 31;
    pub const ZONE: u16 = 32;
    /// `NTA_MAX`: an attribute type at or above makes 1.4.7 drop the whole message.
    pub const MAX: u16 = 33;

    /// `NFCT_HELPER_NAME_MAX` (16) as 1.4.7 compares it with `nta_len`.
    pub const HELPER_NAME_MAX_LEN: usize = 16;
    /// `NTA_SIZE(NTA_LABELS_MAX_SIZE)`.
    pub const LABELS_MAX_LEN: usize = 4 + 1024;

    /// The exact `nta_len` of a fixed-size attribute.
    pub const fn fixed_len(t: u16) -> Option<usize> {
        let payload = match t {
            IPV4 | MASTER_IPV4 => 8,
            IPV6 | MASTER_IPV6 => 32,
            PORT | MASTER_PORT => 4,
            L4PROTO | TCP_STATE | MASTER_L4PROTO | SCTP_STATE | DCCP_STATE | DCCP_ROLE
            | ICMP_TYPE | ICMP_CODE | TCP_WSCALE_ORIG | TCP_WSCALE_REPL => 1,
            STATUS | TIMEOUT | MARK | SNAT_IPV4 | DNAT_IPV4 | SCTP_VTAG_ORIG | SCTP_VTAG_REPL => 4,
            SPAT_PORT | DPAT_PORT | ICMP_ID | ZONE => 2,
            NAT_SEQ_ADJ => 24,
            SNAT_IPV6 | DNAT_IPV6 => 16,
            SYNPROXY => 12,
            _ => return None,
        };
        Some(super::ATTR_HEADER_LEN + payload)
    }
}

/// Why a datagram, message or attribute was refused. The names follow conntrackd's own
/// counters (`conntrackd -s network`), so the two can be compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// Fewer bytes left than a header (`Truncated message`).
    Truncated,
    /// The header's length is below the header size or beyond the datagram
    /// (`Bad message size`).
    BadSize,
    /// The protocol version is not 1 (`Wrong protocol version`).
    BadVersion,
    /// A control message the mode does not know, or an ACK range that ends before it starts
    /// (`Malformed header`).
    BadHeader,
    /// The type is neither a state message nor control (`Bad message type`).
    BadType,
    /// An attribute longer than what is left of the message (`Malformed payload`).
    AttrOverrun,
    /// An attribute shorter than its own header.
    AttrTooShort,
    /// An attribute type 1.4.7 does not know.
    UnknownAttr,
    /// A fixed-size attribute of the wrong length, or a variable one too long.
    AttrSize,
    /// A state message without the original tuple (addresses, layer-4 protocol).
    MissingTuple,
    /// Addresses of one family, NAT addresses of the other.
    FamilyMismatch,
    /// An expectation message: valid, but not synchronised by this engine.
    Expectation,
}

impl Error {
    /// Every reason, in counter order.
    pub const ALL: [Error; 12] = [
        Error::Truncated,
        Error::BadSize,
        Error::BadVersion,
        Error::BadHeader,
        Error::BadType,
        Error::AttrOverrun,
        Error::AttrTooShort,
        Error::UnknownAttr,
        Error::AttrSize,
        Error::MissingTuple,
        Error::FamilyMismatch,
        Error::Expectation,
    ];

    /// A short name for counters and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadSize => "bad_size",
            Error::BadVersion => "bad_version",
            Error::BadHeader => "bad_header",
            Error::BadType => "bad_type",
            Error::AttrOverrun => "attr_overrun",
            Error::AttrTooShort => "attr_too_short",
            Error::UnknownAttr => "unknown_attr",
            Error::AttrSize => "attr_size",
            Error::MissingTuple => "missing_tuple",
            Error::FamilyMismatch => "family_mismatch",
            Error::Expectation => "expectation",
        }
    }

    /// Index into a counter array of [`Error::ALL`]'s length.
    pub fn index(self) -> usize {
        Error::ALL
            .iter()
            .position(|e| *e == self)
            .unwrap_or_default()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Error {}

mod field {
    use core::ops::Range;
    /// Version in the high nibble, type in the low one: 1.4.7 declares the bitfield
    /// `type:4, version:4` on little-endian hosts, which puts `type` in the low bits.
    pub const VERSION_TYPE: usize = 0;
    pub const FLAGS: usize = 1;
    pub const LEN: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const FROM: Range<usize> = 8..12;
    pub const TO: Range<usize> = 12..16;
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Whether a message with this type and flags carries `from`/`to` (`IS_ACK || IS_NACK ||
/// IS_RESYNC` in 1.4.7).
pub const fn has_range(kind: u8, flags: u8) -> bool {
    kind == kind::CTL && flags & (flags::ACK | flags::NACK | flags::RESYNC) != 0
}

/// `IS_DATA`: a state message whose only flags are the hello ones.
pub const fn is_data(kind: u8, flags: u8) -> bool {
    kind <= kind::STATE_MAX && flags & !(flags::HELLO | flags::HELLO_BACK) == 0
}

/// Zero-copy view of one message: the header and, for state messages, its attributes.
///
/// `new_checked` makes the same checks as 1.4.7's receive loop, so a checked view's
/// accessors cannot panic. The buffer may extend past the message: [`Message::len`] bytes are
/// the message, the rest belongs to the next one.
#[derive(Debug, Clone, Copy)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        Message { buffer }
    }

    /// Wraps a buffer after checking that the header and the whole message are present and
    /// that the length suits the message (16 bytes at least for ACK/NACK/RESYNC).
    /// The version is not checked here: 1.4.7 skips a message of another version and goes on
    /// with the next one, so the length must still be trusted.
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let m = Message { buffer };
        let b = m.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(m.len());
        if len == 0 || len > b.len() {
            return Err(Error::BadSize);
        }
        if has_range(m.kind(), m.flags()) {
            if b.len() < ACK_HEADER_LEN {
                return Err(Error::Truncated);
            }
            if len < ACK_HEADER_LEN {
                return Err(Error::BadSize);
            }
        } else if len < HEADER_LEN {
            return Err(Error::BadSize);
        }
        Ok(m)
    }

    /// The protocol version (high nibble of the first byte).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE] >> 4
    }

    /// The message type (low nibble of the first byte).
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION_TYPE] & 0x0f
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// The whole message's length, header included.
    pub fn len(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LEN.start)
    }

    /// Never true for a checked view; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn seq(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::SEQ.start)
    }

    /// `from` of an ACK/NACK/RESYNC range; only meaningful when [`Message::has_range`].
    pub fn from(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::FROM.start)
    }

    /// `to` of an ACK/NACK/RESYNC range.
    pub fn to(&self) -> u32 {
        u32_at(self.buffer.as_ref(), field::TO.start)
    }

    pub fn has_range(&self) -> bool {
        has_range(self.kind(), self.flags())
    }

    pub fn is_data(&self) -> bool {
        is_data(self.kind(), self.flags())
    }

    /// The attribute area of a state message.
    pub fn payload(&self) -> &[u8] {
        let end = usize::from(self.len());
        &self.buffer.as_ref()[HEADER_LEN.min(end)..end]
    }

    /// The attributes of a state message, checked as 1.4.7's `msg2ct` checks them.
    pub fn attrs(&self) -> Attrs<'_> {
        Attrs {
            rest: self.payload(),
        }
    }
}

/// Iterates over the messages of a datagram. Stops after the first error, as 1.4.7 does: once
/// a length cannot be trusted, nothing after it can be found.
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// The messages of one received datagram.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<&'a [u8]>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match Message::new_checked(self.rest) {
            Ok(m) => {
                let len = usize::from(m.len());
                let (this, rest) = self.rest.split_at(len);
                self.rest = rest;
                Some(Ok(Message::new_unchecked(this)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// One attribute: its type and its data (padding excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr<'a> {
    pub kind: u16,
    pub data: &'a [u8],
}

/// Iterates over a state message's attributes with 1.4.7's rules: a trailing remainder of at
/// most 4 bytes is ignored; an attribute longer than the rest, shorter than its header, of an
/// unknown type, or of a wrong fixed length ends the iteration with an error, and the caller
/// drops the whole message.
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.len() <= ATTR_HEADER_LEN {
            return None;
        }
        let b = self.rest;
        let len = usize::from(u16_at(b, 0));
        let kind = u16_at(b, 2);
        let fail = |s: &mut Self, e| {
            s.rest = &[];
            Some(Err(e))
        };
        if len > b.len() {
            return fail(self, Error::AttrOverrun);
        }
        if len < ATTR_HEADER_LEN {
            return fail(self, Error::AttrTooShort);
        }
        if kind >= attr::MAX {
            return fail(self, Error::UnknownAttr);
        }
        let size_ok = match attr::fixed_len(kind) {
            Some(exact) => len == exact,
            None if kind == attr::HELPER_NAME => len <= attr::HELPER_NAME_MAX_LEN,
            None if kind == attr::LABELS => len <= attr::LABELS_MAX_LEN,
            None => true,
        };
        if !size_ok {
            return fail(self, Error::AttrSize);
        }
        let data = &b[ATTR_HEADER_LEN..len];
        let step = align(len).min(b.len());
        self.rest = &b[step..];
        Some(Ok(Attr { kind, data }))
    }
}

/// `NTA_ALIGN`.
pub const fn align(len: usize) -> usize {
    (len + ATTR_ALIGN - 1) & !(ATTR_ALIGN - 1)
}

/// Writes messages into a datagram buffer, back to back, as 1.4.7 batches them.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

/// The buffer had no room for the message; nothing of it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer { buf, at: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.at
    }

    pub fn is_empty(&self) -> bool {
        self.at == 0
    }

    /// Appends a control message: 16 bytes with `from`/`to` when the flags call for a range,
    /// 8 otherwise.
    pub fn control(&mut self, flags: u8, seq: u32, from: u32, to: u32) -> Result<(), NoRoom> {
        let ranged = has_range(kind::CTL, flags);
        let len = if ranged { ACK_HEADER_LEN } else { HEADER_LEN };
        let m = self.start(kind::CTL, flags, seq, len)?;
        if ranged {
            m[field::FROM].copy_from_slice(&from.to_be_bytes());
            m[field::TO].copy_from_slice(&to.to_be_bytes());
        }
        self.at += len;
        Ok(())
    }

    fn start(&mut self, kind: u8, flags: u8, seq: u32, len: usize) -> Result<&mut [u8], NoRoom> {
        let m = self.buf.get_mut(self.at..self.at + len).ok_or(NoRoom)?;
        m[field::VERSION_TYPE] = (VERSION << 4) | (kind & 0x0f);
        m[field::FLAGS] = flags;
        m[field::LEN].copy_from_slice(&(len as u16).to_be_bytes());
        m[field::SEQ].copy_from_slice(&seq.to_be_bytes());
        Ok(m)
    }

    /// Appends a state message whose attributes `attrs` writes into the slice it is given;
    /// `attrs` returns the attribute bytes it wrote, or `None` when they do not fit.
    pub fn state(
        &mut self,
        kind: u8,
        flags: u8,
        seq: u32,
        attrs: impl FnOnce(&mut AttrWriter<'_>) -> Result<(), NoRoom>,
    ) -> Result<(), NoRoom> {
        let room = self
            .buf
            .len()
            .saturating_sub(self.at)
            .min(usize::from(u16::MAX));
        if room < HEADER_LEN {
            return Err(NoRoom);
        }
        let body = &mut self.buf[self.at + HEADER_LEN..self.at + room];
        let mut w = AttrWriter { buf: body, at: 0 };
        attrs(&mut w)?;
        let len = HEADER_LEN + w.at;
        self.start(kind, flags, seq, len)?;
        self.at += len;
        Ok(())
    }
}

/// Appends attributes to a state message, padded to 4 bytes with zeros.
pub struct AttrWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl AttrWriter<'_> {
    pub fn put(&mut self, kind: u16, data: &[u8]) -> Result<(), NoRoom> {
        let len = ATTR_HEADER_LEN + data.len();
        let total = align(len);
        let a = self.buf.get_mut(self.at..self.at + total).ok_or(NoRoom)?;
        a[0..2].copy_from_slice(&(len as u16).to_be_bytes());
        a[2..4].copy_from_slice(&kind.to_be_bytes());
        a[4..len].copy_from_slice(data);
        a[len..].fill(0);
        self.at += total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alive message conntrackd 1.4.7 sends while saying hello, from a capture.
    const ALIVE_HELLO: [u8; 8] = [0x1a, 0x30, 0x00, 0x08, 0x6b, 0x11, 0xaf, 0x78];

    #[test]
    fn header_of_a_captured_alive() {
        let m = Message::new_checked(&ALIVE_HELLO[..]).unwrap();
        assert_eq!(m.version(), 1);
        assert_eq!(m.kind(), kind::CTL);
        assert_eq!(m.flags(), flags::HELLO | flags::ALIVE);
        assert_eq!(m.len(), 8);
        assert_eq!(m.seq(), 0x6b11_af78);
        assert!(!m.has_range() && !m.is_data());
    }

    #[test]
    fn ack_needs_sixteen_bytes() {
        let mut b = [0u8; 16];
        let mut w = Writer::new(&mut b);
        w.control(flags::ACK, 7, 3, 6).unwrap();
        assert_eq!(w.len(), 16);
        let m = Message::new_checked(&b[..]).unwrap();
        assert_eq!((m.seq(), m.from(), m.to()), (7, 3, 6));
        // the length is checked against what is left first, as 1.4.7 does
        assert_eq!(Message::new_checked(&b[..12]).unwrap_err(), Error::BadSize);
        // an ACK whose length says 8: truncated when that is all there is, bad size otherwise
        let mut short = b;
        short[3] = 8;
        assert_eq!(
            Message::new_checked(&short[..8]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Message::new_checked(&short[..]).unwrap_err(),
            Error::BadSize
        );
    }

    #[test]
    fn lengths_beyond_or_below_are_refused() {
        let mut b = ALIVE_HELLO;
        b[3] = 9;
        assert_eq!(Message::new_checked(&b[..]).unwrap_err(), Error::BadSize);
        b[3] = 0;
        assert_eq!(Message::new_checked(&b[..]).unwrap_err(), Error::BadSize);
        b[3] = 4;
        assert_eq!(Message::new_checked(&b[..]).unwrap_err(), Error::BadSize);
        assert_eq!(
            Message::new_checked(&ALIVE_HELLO[..7]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn attributes_are_padded_and_checked() {
        let mut b = [0u8; 64];
        let mut w = Writer::new(&mut b);
        w.state(kind::CT_NEW, 0, 1, |a| {
            a.put(attr::L4PROTO, &[6])?;
            a.put(attr::TCP_STATE, &[3])
        })
        .unwrap();
        assert_eq!(w.len(), 8 + 8 + 8);
        let m = Message::new_checked(&b[..24]).unwrap();
        assert_eq!(&b[8..16], &[0, 5, 0, 2, 6, 0, 0, 0]);
        let attrs: Vec<_> = m.attrs().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            attrs[0],
            Attr {
                kind: 2,
                data: &[6]
            }
        );
        assert_eq!(
            attrs[1],
            Attr {
                kind: 4,
                data: &[3]
            }
        );
    }

    fn one_attr(len: u16, kind: u16, data: &[u8]) -> Vec<u8> {
        let mut m = vec![0x10, 0, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&kind.to_be_bytes());
        m.extend_from_slice(data);
        let l = m.len() as u16;
        m[2..4].copy_from_slice(&l.to_be_bytes());
        m
    }

    #[test]
    fn bad_attributes_name_their_reason() {
        let check = |m: Vec<u8>| {
            Message::new_checked(&m[..])
                .unwrap()
                .attrs()
                .find_map(Result::err)
        };
        assert_eq!(
            check(one_attr(5, 99, &[1, 0, 0, 0])),
            Some(Error::UnknownAttr)
        );
        assert_eq!(
            check(one_attr(6, attr::L4PROTO, &[1, 0, 0, 0])),
            Some(Error::AttrSize)
        );
        assert_eq!(
            check(one_attr(3, attr::L4PROTO, &[1, 0, 0, 0])),
            Some(Error::AttrTooShort)
        );
        assert_eq!(
            check(one_attr(12, attr::STATUS, &[1, 0, 0, 0])),
            Some(Error::AttrOverrun)
        );
        assert_eq!(check(one_attr(8, attr::STATUS, &[1, 0, 0, 0])), None);
        assert_eq!(
            check(one_attr(20, attr::HELPER_NAME, &[b'x'; 16])),
            Some(Error::AttrSize)
        );
    }

    #[test]
    fn messages_of_a_datagram_stop_at_the_first_bad_length() {
        let mut d = ALIVE_HELLO.to_vec();
        d.extend_from_slice(&ALIVE_HELLO);
        d.extend_from_slice(&[0x1a, 0x10, 0x00, 0x20, 0, 0, 0, 1]);
        d.extend_from_slice(&ALIVE_HELLO);
        let r: Vec<_> = messages(&d).map(|m| m.map(|m| m.seq())).collect();
        assert_eq!(
            r,
            vec![Ok(0x6b11_af78), Ok(0x6b11_af78), Err(Error::BadSize)]
        );
    }
}
