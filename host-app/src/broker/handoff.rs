//! The client stream as the engine sees it once the front hands a connection over: the
//! accepted (and TLS-terminated) socket itself, no second socket in between. It replays
//! the CONNECT the front read (rewritten with the account and the keep-alive granted),
//! ends the stream where an MQTT 5 DISCONNECT asks for the will (rmqtt would discard the
//! will; at the end of the stream it publishes it), ends it when a newer connection takes
//! the client id over, and holds back a CONNACK "server unavailable" the front wants to
//! try again. When the engine lets go of the stream (the connection is over: the will is
//! published and the session cleaned, or gone offline), it tells the front how it ended.
//!
//! Writes to a client that is gone never fail for the engine: they are dropped, and the
//! stream ends once what the client sent is read. The engine picks what to do next at
//! random among its ready branches; a failed write (a client that sent DISCONNECT, then
//! closed with a message of ours unread: a reset) would end the connection before it read
//! that DISCONNECT, and it would publish the will.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

use tracing::debug;

use super::codec::{self, DisconnectScanner, Ending};

/// Set by the front when a newer connection takes this one's client id over.
#[derive(Default)]
pub struct Takeover {
    taken: AtomicBool,
    waker: AtomicWaker,
}

impl Takeover {
    pub fn take_over(&self) {
        self.taken.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn is_taken(&self) -> bool {
        self.taken.load(Ordering::Acquire)
    }
}

/// What the front hears back once the engine lets go of the stream.
pub enum Done<S> {
    /// The engine answered "server unavailable", which was held back: the front may try
    /// again with the stream.
    Retry(S),
    /// The connection is over.
    Ended {
        ending: Ending,
        /// The CONNACK's return code (reason code in MQTT 5), when one was sent.
        connack: Option<u8>,
    },
}

enum Connack {
    /// Not sent yet; `hold_unavailable` when a "server unavailable" is to be held back.
    Awaited {
        hold_unavailable: bool,
    },
    Sent(u8),
    /// A "server unavailable" held back: the stream is untouched since the CONNECT.
    HeldBack,
}

pub struct HandedOver<S> {
    io: Option<S>,
    /// The CONNECT, until the engine has read it.
    opening: Bytes,
    scanner: DisconnectScanner,
    ending: Ending,
    /// The stream ends here for the engine (DISCONNECT with will, takeover).
    ended: bool,
    /// The engine has shut the stream down; later writes fail.
    shut: bool,
    /// Writing to the client failed (it is gone) or stalls after a takeover: later writes
    /// are dropped, and the stream ends once what the client sent is read (within the
    /// grace).
    unwritable: bool,
    connack: Connack,
    unavailable: u8,
    takeover: Arc<Takeover>,
    /// Started at a takeover or a failed write: what the client already sent (its
    /// DISCONNECT, then the end of its stream) may not have been seen by the reactor yet.
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
    done: Option<oneshot::Sender<Done<S>>>,
}

/// How long a taken-over connection, or one whose client is gone (a write failed), may
/// still deliver what its client sent: a client that sent DISCONNECT and closed ends well
/// within it, a half-open one delays the takeover by this much.
const TAKEOVER_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

impl<S> HandedOver<S> {
    pub fn new(
        io: S,
        opening: Bytes,
        level: u8,
        takeover: Arc<Takeover>,
        hold_unavailable: bool,
        done: oneshot::Sender<Done<S>>,
    ) -> HandedOver<S> {
        HandedOver {
            io: Some(io),
            opening,
            scanner: DisconnectScanner::new(level),
            ending: Ending::Dropped,
            ended: false,
            shut: false,
            unwritable: false,
            connack: Connack::Awaited { hold_unavailable },
            unavailable: codec::refusal_code(level, codec::Refusal::ServerUnavailable),
            takeover,
            grace: None,
            done: Some(done),
        }
    }

    /// Looks at the engine's first write, its CONNACK.
    fn see_connack(&mut self, buf: &[u8]) {
        let Connack::Awaited { hold_unavailable } = self.connack else {
            return;
        };
        let code = codec::connack_code(buf).unwrap_or(0);
        self.connack = if hold_unavailable && code == self.unavailable {
            Connack::HeldBack
        } else {
            Connack::Sent(code)
        };
    }
}

fn gone() -> io::Error {
    io::Error::from(io::ErrorKind::BrokenPipe)
}

impl<S> HandedOver<S> {
    /// The client cannot be written to any more: the write is dropped and the reader
    /// woken, so the stream ends on what the client sent (its DISCONNECT, if any).
    fn lose_writes(&mut self, cx: &Context<'_>, error: Option<io::Error>) {
        if !self.unwritable {
            match error {
                Some(e) => debug!(error = %e, "client gone; its stream ends after what it sent"),
                None => debug!("taken-over client not reading; its stream ends after what it sent"),
            }
        }
        self.unwritable = true;
        cx.waker().wake_by_ref();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HandedOver<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.opening.is_empty() {
            let n = this.opening.len().min(buf.remaining());
            buf.put_slice(&this.opening[..n]);
            this.opening.advance(n);
            if this.opening.is_empty() {
                this.opening = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        if this.ended || matches!(this.connack, Connack::HeldBack) {
            return Poll::Ready(Ok(()));
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        this.takeover.waker.register(cx.waker());
        let taken = this.takeover.is_taken();
        let before = buf.filled().len();
        match Pin::new(io).poll_read(cx, buf) {
            // Taken over, or gone (a write failed): what the client sent before still
            // counts (a DISCONNECT), then the stream ends. The reactor may not have seen
            // it arrive yet, hence the grace.
            Poll::Pending if taken || this.unwritable => {
                let grace = this
                    .grace
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(TAKEOVER_GRACE)));
                if grace.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.ended = true;
                return Poll::Ready(Ok(()));
            }
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        let fresh = &buf.filled()[before..];
        if fresh.is_empty() {
            this.ended = true;
        }
        match this.scanner.feed(fresh) {
            Some((at, Ending::WithWill)) => {
                // Not handed on: the engine would discard the will; it publishes it for
                // a stream that ends.
                this.ending = Ending::WithWill;
                this.ended = true;
                buf.set_filled(before + at);
            }
            // Nothing may follow a DISCONNECT (rmqtt would wait for the client to close).
            Some((_, found)) => {
                this.ending = found;
                this.ended = true;
            }
            None => {}
        }
        if taken {
            // A taken-over client still talking ends at the grace's end all the same.
            let grace = this
                .grace
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(TAKEOVER_GRACE)));
            if grace.as_mut().poll(cx).is_ready() {
                this.ended = true;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HandedOver<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.see_connack(buf);
        if matches!(this.connack, Connack::HeldBack) {
            return Poll::Ready(Ok(buf.len()));
        }
        if this.shut {
            return Poll::Ready(Err(gone()));
        }
        if this.unwritable {
            return Poll::Ready(Ok(buf.len()));
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Err(gone()));
        };
        this.takeover.waker.register(cx.waker());
        match Pin::new(io).poll_write(cx, buf) {
            // A client that stopped reading does not hold a taken-over connection.
            Poll::Pending if this.takeover.is_taken() => {
                this.lose_writes(cx, None);
                Poll::Ready(Ok(buf.len()))
            }
            Poll::Ready(Err(e)) => {
                this.lose_writes(cx, Some(e));
                Poll::Ready(Ok(buf.len()))
            }
            polled => polled,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.connack, Connack::HeldBack) || this.shut || this.unwritable {
            return Poll::Ready(Ok(()));
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        this.takeover.waker.register(cx.waker());
        match Pin::new(io).poll_flush(cx) {
            Poll::Pending if this.takeover.is_taken() => {
                this.lose_writes(cx, None);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => {
                this.lose_writes(cx, Some(e));
                Poll::Ready(Ok(()))
            }
            polled => polled,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if matches!(this.connack, Connack::HeldBack) || this.shut {
            return Poll::Ready(Ok(()));
        }
        if this.unwritable {
            this.shut = true;
            return Poll::Ready(Ok(()));
        }
        let Some(io) = this.io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        this.takeover.waker.register(cx.waker());
        let polled = match Pin::new(io).poll_shutdown(cx) {
            Poll::Pending if this.takeover.is_taken() => Poll::Ready(Err(gone())),
            polled => polled,
        };
        if polled.is_ready() {
            this.shut = true;
        }
        polled
    }
}

impl<S> Drop for HandedOver<S> {
    fn drop(&mut self) {
        let Some(done) = self.done.take() else {
            return;
        };
        let report = match (&self.connack, self.io.take()) {
            (Connack::HeldBack, Some(io)) => Done::Retry(io),
            (connack, _) => Done::Ended {
                ending: self.ending,
                connack: match connack {
                    Connack::Sent(code) => Some(*code),
                    _ => None,
                },
            },
        };
        let _ = done.send(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn handed_over(
        io: tokio::io::DuplexStream,
        level: u8,
        hold: bool,
    ) -> (
        HandedOver<tokio::io::DuplexStream>,
        Arc<Takeover>,
        oneshot::Receiver<Done<tokio::io::DuplexStream>>,
    ) {
        let takeover = Arc::new(Takeover::default());
        let (tx, rx) = oneshot::channel();
        let opening = Bytes::from_static(&[0x10, 1, 0xff]);
        let conn = HandedOver::new(io, opening, level, takeover.clone(), hold, tx);
        (conn, takeover, rx)
    }

    #[tokio::test]
    async fn replays_the_connect_then_reads_the_client() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut conn, _, _) = handed_over(server, codec::LEVEL_311, false);
        client.write_all(&[0xc0, 0]).await.unwrap();
        let mut got = [0u8; 5];
        conn.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x10, 1, 0xff, 0xc0, 0]);
    }

    #[tokio::test]
    async fn an_mqtt5_disconnect_asking_for_the_will_ends_the_stream_before_it() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut conn, _, done) = handed_over(server, codec::LEVEL_5, false);
        client.write_all(&[0xc0, 0, 0xe0, 1, 0x04]).await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [0x10, 1, 0xff, 0xc0, 0]);
        drop(conn);
        match done.await.unwrap() {
            Done::Ended { ending, .. } => assert_eq!(ending, Ending::WithWill),
            Done::Retry(_) => panic!("no CONNACK was held back"),
        }
    }

    #[tokio::test]
    async fn a_disconnect_ends_the_stream_after_it() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut conn, _, _) = handed_over(server, codec::LEVEL_311, false);
        client.write_all(&[0xe0, 0]).await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(
            got,
            [0x10, 1, 0xff, 0xe0, 0],
            "the client's socket is still open"
        );
    }

    #[tokio::test]
    async fn a_write_to_a_gone_client_is_dropped_and_its_disconnect_still_read() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut conn, _, done) = handed_over(server, codec::LEVEL_311, false);
        client.write_all(&[0xe0, 0]).await.unwrap();
        drop(client);
        conn.write_all(&[0x30, 3, 0, 1, b't']).await.unwrap();
        conn.flush().await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [0x10, 1, 0xff, 0xe0, 0]);
        drop(conn);
        match done.await.unwrap() {
            Done::Ended { ending, .. } => assert_eq!(ending, Ending::Clean),
            Done::Retry(_) => panic!("no CONNACK was held back"),
        }
    }

    #[tokio::test]
    async fn a_takeover_ends_the_stream() {
        let (_client, server) = tokio::io::duplex(64);
        let (mut conn, takeover, _) = handed_over(server, codec::LEVEL_311, false);
        let mut opening = [0u8; 3];
        conn.read_exact(&mut opening).await.unwrap();
        let reader = tokio::spawn(async move {
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).await.map(|_| rest)
        });
        tokio::task::yield_now().await;
        takeover.take_over();
        let rest = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the stream ends at the takeover")
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn a_held_back_server_unavailable_gives_the_stream_back_untouched() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut conn, _, done) = handed_over(server, codec::LEVEL_311, true);
        conn.write_all(&[0x20, 2, 0, 3]).await.unwrap();
        conn.shutdown().await.unwrap();
        drop(conn);
        let Ok(Done::Retry(mut io)) = done.await else {
            panic!("the stream is given back");
        };
        io.write_all(&[0x20, 2, 0, 0]).await.unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(
            got,
            [0x20, 2, 0, 0],
            "only the later CONNACK reached the client"
        );
    }

    #[tokio::test]
    async fn a_connack_passed_on_is_reported() {
        let (mut client, server) = tokio::io::duplex(64);
        let (mut conn, _, done) = handed_over(server, codec::LEVEL_311, true);
        conn.write_all(&[0x20, 2, 0, 5]).await.unwrap();
        drop(conn);
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0x20, 2, 0, 5]);
        match done.await.unwrap() {
            Done::Ended { connack, .. } => assert_eq!(connack, Some(5)),
            Done::Retry(_) => panic!("only server unavailable is held back"),
        }
    }
}
