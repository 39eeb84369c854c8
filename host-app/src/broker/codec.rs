//! The few MQTT control packets the front reads or writes itself: CONNECT (parsed and
//! re-encoded with the engine's login), CONNACK, and a scanner that finds a client's
//! DISCONNECT in the forwarded stream. MQTT 3.1.1 and 5.0.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const DISCONNECT: u8 = 14;

/// MQTT 3.1.1 protocol level.
pub const LEVEL_311: u8 = 4;
/// MQTT 5.0 protocol level.
pub const LEVEL_5: u8 = 5;

/// Why bytes from a peer are not an acceptable MQTT packet.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed remaining length")]
    RemainingLength,
    #[error("packet of {0} bytes exceeds the limit")]
    TooLarge(usize),
    #[error("expected packet type {expected}, got {got}")]
    UnexpectedType { expected: u8, got: u8 },
    #[error("malformed {0}")]
    Malformed(&'static str),
    #[error("unsupported protocol {name:?} level {level}")]
    UnsupportedProtocol { name: String, level: u8 },
}

/// One whole packet: its first header byte and its body (after the remaining length).
pub struct RawPacket {
    pub header: u8,
    pub body: Bytes,
}

impl RawPacket {
    pub fn kind(&self) -> u8 {
        self.header >> 4
    }
}

/// Reads one whole packet whose body is at most `max_body` bytes.
pub async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_body: usize,
) -> Result<RawPacket, CodecError> {
    let header = match reader.read_u8().await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(CodecError::Closed),
        Err(e) => return Err(e.into()),
    };
    let mut len: usize = 0;
    let mut shift = 0;
    loop {
        let byte = reader.read_u8().await?;
        len |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(CodecError::RemainingLength);
        }
    }
    if len > max_body {
        return Err(CodecError::TooLarge(len));
    }
    // Grown as bytes arrive: a header alone does not reserve `max_body` bytes.
    let mut body = Vec::with_capacity(len.min(4096));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(CodecError::Closed);
    }
    Ok(RawPacket {
        header,
        body: Bytes::from(body),
    })
}

fn put_remaining_length(out: &mut BytesMut, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    // Lengths were read from u16 prefixes or checked by the caller.
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// A cursor over a packet body.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or(CodecError::Malformed(self.what))?;
        self.buf = rest;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Malformed(self.what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn prefixed(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// An MQTT 5 property block, returned whole (its length prefix included).
    fn properties(&mut self) -> Result<&'a [u8], CodecError> {
        let start = self.buf;
        let mut len: usize = 0;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            len |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(CodecError::Malformed(self.what));
            }
        }
        self.take(len)?;
        let used = start.len() - self.buf.len();
        Ok(&start[..used])
    }
}

/// A client's Last Will, as given in its CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

impl std::fmt::Debug for Will {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Will")
            .field("topic", &String::from_utf8_lossy(&self.topic))
            .field("payload_len", &self.payload.len())
            .field("qos", &self.qos)
            .field("retain", &self.retain)
            .finish()
    }
}

/// A parsed CONNECT. MQTT 5 property blocks are kept as raw bytes and passed through.
pub struct Connect {
    pub level: u8,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub properties: Bytes,
    pub client_id: Bytes,
    pub will: Option<Will>,
    pub will_properties: Bytes,
    pub username: Option<Bytes>,
    pub password: Option<Bytes>,
}

impl Connect {
    pub fn parse(packet: &RawPacket) -> Result<Connect, CodecError> {
        if packet.kind() != CONNECT {
            return Err(CodecError::UnexpectedType {
                expected: CONNECT,
                got: packet.kind(),
            });
        }
        let body = &packet.body;
        let mut r = Reader {
            buf: body,
            what: "CONNECT",
        };
        let name = r.prefixed()?;
        let level = r.u8()?;
        if name != b"MQTT" || !(level == LEVEL_311 || level == LEVEL_5) {
            return Err(CodecError::UnsupportedProtocol {
                name: String::from_utf8_lossy(name).into_owned(),
                level,
            });
        }
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(CodecError::Malformed("CONNECT reserved flag"));
        }
        let keep_alive = r.u16()?;
        let slice = |s: &[u8]| body.slice_ref(s);
        let properties = if level == LEVEL_5 {
            slice(r.properties()?)
        } else {
            Bytes::new()
        };
        let client_id = slice(r.prefixed()?);
        let mut will_properties = Bytes::new();
        let will = if flags & 0x04 != 0 {
            if level == LEVEL_5 {
                will_properties = slice(r.properties()?);
            }
            let topic = slice(r.prefixed()?);
            let payload = slice(r.prefixed()?);
            let qos = (flags >> 3) & 0x03;
            if qos > 2 {
                return Err(CodecError::Malformed("CONNECT will QoS"));
            }
            Some(Will {
                topic,
                payload,
                qos,
                retain: flags & 0x20 != 0,
            })
        } else {
            None
        };
        let username = (flags & 0x80 != 0)
            .then(|| r.prefixed().map(slice))
            .transpose()?;
        let password = (flags & 0x40 != 0)
            .then(|| r.prefixed().map(slice))
            .transpose()?;
        Ok(Connect {
            level,
            clean_start: flags & 0x02 != 0,
            keep_alive,
            properties,
            client_id,
            will,
            will_properties,
            username,
            password,
        })
    }

    /// Encodes this CONNECT as a whole packet.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::with_capacity(64);
        put_str(&mut body, b"MQTT");
        body.put_u8(self.level);
        let mut flags = 0u8;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos << 3);
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        body.put_u8(flags);
        body.put_u16(self.keep_alive);
        if self.level == LEVEL_5 {
            if self.properties.is_empty() {
                body.put_u8(0);
            } else {
                body.put_slice(&self.properties);
            }
        }
        put_str(&mut body, &self.client_id);
        if let Some(will) = &self.will {
            if self.level == LEVEL_5 {
                if self.will_properties.is_empty() {
                    body.put_u8(0);
                } else {
                    body.put_slice(&self.will_properties);
                }
            }
            put_str(&mut body, &will.topic);
            put_str(&mut body, &will.payload);
        }
        if let Some(username) = &self.username {
            put_str(&mut body, username);
        }
        if let Some(password) = &self.password {
            put_str(&mut body, password);
        }
        out.put_u8(CONNECT << 4);
        put_remaining_length(out, body.len());
        out.put_slice(&body);
    }
}

/// The return code (3.1.1) or reason code (5.0) of the CONNACK `packet` (whole, with its
/// fixed header) starts with: zero means accepted.
pub fn connack_code(packet: &[u8]) -> Option<u8> {
    let (&header, rest) = packet.split_first()?;
    if header >> 4 != CONNACK {
        return None;
    }
    // The remaining length, the acknowledge flags, then the code.
    let (_, used) = varint(rest)?;
    rest.get(used + 1).copied()
}

/// A variable byte integer at the start of `buf`: its value and how many bytes it took.
fn varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// How a refused CONNECT is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    IdentifierRejected,
    BadUsernameOrPassword,
    NotAuthorized,
    ServerUnavailable,
}

/// The CONNACK code that answers a refusal at protocol `level`.
pub fn refusal_code(level: u8, refusal: Refusal) -> u8 {
    if level == LEVEL_5 {
        match refusal {
            Refusal::IdentifierRejected => 0x85,
            Refusal::BadUsernameOrPassword => 0x86,
            Refusal::NotAuthorized => 0x87,
            Refusal::ServerUnavailable => 0x88,
        }
    } else {
        match refusal {
            Refusal::IdentifierRejected => 2,
            Refusal::BadUsernameOrPassword => 4,
            Refusal::NotAuthorized => 5,
            Refusal::ServerUnavailable => 3,
        }
    }
}

/// Encodes a CONNACK refusing a CONNECT of protocol `level`.
pub fn encode_connack_refusal(level: u8, refusal: Refusal, out: &mut BytesMut) {
    out.put_u8(CONNACK << 4);
    let code = refusal_code(level, refusal);
    if level == LEVEL_5 {
        out.put_slice(&[3, 0, code, 0]);
    } else {
        out.put_slice(&[2, 0, code]);
    }
}

/// MQTT 5 DISCONNECT reason "Disconnect with Will Message".
const DISCONNECT_WITH_WILL: u8 = 0x04;

/// How a client left, as far as its packets tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// No DISCONNECT (the socket closed, broke, or was taken over).
    Dropped,
    /// A DISCONNECT that discards the will.
    Clean,
    /// An MQTT 5 DISCONNECT asking for the will to be published (reason 0x04).
    WithWill,
}

/// Follows packet boundaries in a client's forwarded byte stream, without buffering it,
/// to find its DISCONNECT.
pub struct DisconnectScanner {
    level: u8,
    state: ScanState,
}

enum ScanState {
    Header,
    Length {
        disconnect: bool,
        len: usize,
        shift: u32,
        /// Where the packet began in the chunk being fed (0: in an earlier chunk).
        start: usize,
    },
    Body {
        remaining: usize,
        /// Set while the first body byte of a DISCONNECT is awaited.
        disconnect_at: Option<usize>,
    },
}

impl DisconnectScanner {
    pub fn new(level: u8) -> DisconnectScanner {
        DisconnectScanner {
            level,
            state: ScanState::Header,
        }
    }

    /// Feeds the next chunk of the stream; on a DISCONNECT, returns where in the chunk
    /// it begins (0 when it began in an earlier chunk) and what it asks for.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<(usize, Ending)> {
        let mut at = 0;
        while at < chunk.len() {
            match &mut self.state {
                ScanState::Header => {
                    self.state = ScanState::Length {
                        disconnect: chunk[at] >> 4 == DISCONNECT,
                        len: 0,
                        shift: 0,
                        start: at,
                    };
                    at += 1;
                }
                ScanState::Length {
                    disconnect,
                    len,
                    shift,
                    start,
                } => {
                    let byte = chunk[at];
                    at += 1;
                    *len |= usize::from(byte & 0x7f) << *shift;
                    *shift += 7;
                    if byte & 0x80 == 0 || *shift > 21 {
                        let (len, start) = (*len, *start);
                        if *disconnect && (len == 0 || self.level != LEVEL_5) {
                            // A 3.1.1 DISCONNECT, or a 5.0 one without reason: normal.
                            return Some((start, Ending::Clean));
                        }
                        self.state = if len == 0 {
                            ScanState::Header
                        } else {
                            ScanState::Body {
                                remaining: len,
                                disconnect_at: disconnect.then_some(start),
                            }
                        };
                    }
                }
                ScanState::Body {
                    remaining,
                    disconnect_at,
                } => {
                    if let Some(start) = disconnect_at.take() {
                        let ending = if chunk[at] == DISCONNECT_WITH_WILL {
                            Ending::WithWill
                        } else {
                            Ending::Clean
                        };
                        return Some((start, ending));
                    }
                    let n = (*remaining).min(chunk.len() - at);
                    *remaining -= n;
                    at += n;
                    if *remaining == 0 {
                        self.state = ScanState::Header;
                    }
                }
            }
        }
        // A packet still open at the end of the chunk starts at 0 of the next one.
        match &mut self.state {
            ScanState::Length { start, .. } => *start = 0,
            ScanState::Body {
                disconnect_at: Some(start),
                ..
            } => *start = 0,
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(level: u8, will: bool) -> Connect {
        Connect {
            level,
            clean_start: true,
            keep_alive: 30,
            properties: if level == LEVEL_5 {
                Bytes::from_static(&[5, 0x11, 0, 0, 0, 10])
            } else {
                Bytes::new()
            },
            client_id: Bytes::from_static(b"edge-1"),
            will: will.then(|| Will {
                topic: Bytes::from_static(b"spBv1.0/g/NDEATH/e"),
                payload: Bytes::from_static(&[1, 2, 3]),
                qos: 1,
                retain: false,
            }),
            will_properties: Bytes::new(),
            username: Some(Bytes::from_static(b"user")),
            password: Some(Bytes::from_static(b"secret")),
        }
    }

    async fn round_trip(c: &Connect) -> Connect {
        let mut out = BytesMut::new();
        c.encode(&mut out);
        let mut reader = &out[..];
        let packet = read_packet(&mut reader, 1024).await.unwrap();
        Connect::parse(&packet).unwrap()
    }

    #[tokio::test]
    async fn connect_round_trips_for_both_protocol_levels() {
        for level in [LEVEL_311, LEVEL_5] {
            for will in [false, true] {
                let c = connect(level, will);
                let back = round_trip(&c).await;
                assert_eq!(back.level, level);
                assert_eq!(back.keep_alive, 30);
                assert_eq!(back.client_id, c.client_id);
                assert_eq!(back.will, c.will);
                assert_eq!(back.username, c.username);
                assert_eq!(back.password, c.password);
                assert_eq!(back.properties, c.properties);
            }
        }
    }

    #[test]
    fn scanner_finds_a_disconnect_with_will_split_across_reads() {
        // PINGREQ, a PUBLISH with a 200-byte body, then DISCONNECT 0x04, one byte at a time.
        let mut stream = vec![0xc0, 0x00, 0x30, 0xc8, 0x01];
        stream.extend(std::iter::repeat_n(0xe0, 200));
        stream.extend([0xe0, 0x01, DISCONNECT_WITH_WILL]);
        let mut scanner = DisconnectScanner::new(LEVEL_5);
        for (i, b) in stream.iter().enumerate() {
            let found = scanner.feed(std::slice::from_ref(b));
            let expect = (i == stream.len() - 1).then_some((0, Ending::WithWill));
            assert_eq!(found, expect, "after byte {i}");
        }
        let mut scanner = DisconnectScanner::new(LEVEL_5);
        assert_eq!(scanner.feed(&stream), Some((205, Ending::WithWill)));
    }

    #[test]
    fn scanner_finds_normal_disconnects() {
        let mut scanner = DisconnectScanner::new(LEVEL_5);
        assert_eq!(
            scanner.feed(&[0xc0, 0x00, 0xe0, 0x01, 0x00]),
            Some((2, Ending::Clean))
        );
        let mut scanner = DisconnectScanner::new(LEVEL_311);
        assert_eq!(scanner.feed(&[0xe0, 0x00]), Some((0, Ending::Clean)));
    }

    #[tokio::test]
    async fn oversized_packet_is_refused() {
        let bytes = [0x10u8, 0xff, 0x7f];
        let mut reader = &bytes[..];
        assert!(matches!(
            read_packet(&mut reader, 100).await,
            Err(CodecError::TooLarge(16383))
        ));
    }

    #[test]
    fn connack_codes_are_read_for_both_protocol_levels() {
        assert_eq!(connack_code(&[0x20, 2, 0, 3]), Some(3));
        assert_eq!(connack_code(&[0x20, 3, 0, 0x88, 0]), Some(0x88));
        let mut long = vec![0x20, 0x83, 0x01, 0, 0x87];
        long.resize(3 + 131, 0);
        assert_eq!(connack_code(&long), Some(0x87));
        assert_eq!(connack_code(&[0x30, 2, 0, 3]), None, "not a CONNACK");
    }
}
