//! Opening the three transports (Modbus TCP, RTU on a serial port, RTU over TCP) and making
//! one request with a timeout, mapping every outcome to a typed [`Failure`].

use std::io;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_modbus::client::{Client, Context};
use tokio_modbus::prelude::SlaveContext;
use tokio_modbus::{Request, Response, Slave};

use super::config::{Parity, SerialSettings, Transport};
use super::error::Failure;

/// Opens the link, within `timeout`.
pub(crate) async fn connect(transport: &Transport, timeout: Duration) -> Result<Context, Failure> {
    let opening = async {
        match transport {
            Transport::Tcp { host, port } => {
                let stream = tcp_connect(host, *port).await?;
                Ok::<Context, io::Error>(tokio_modbus::client::tcp::attach(stream))
            }
            Transport::RtuOverTcp { host, port, .. } => {
                let stream = tcp_connect(host, *port).await?;
                Ok(tokio_modbus::client::rtu::attach(Draining::new(stream)))
            }
            Transport::Rtu(serial) => {
                let stream = open_serial(serial)?;
                Ok(tokio_modbus::client::rtu::attach(Draining::new(stream)))
            }
        }
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(e)) => Err(Failure::Transport(e.to_string())),
        Err(_) => Err(Failure::Timeout),
    }
}

async fn tcp_connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    // Requests are small and latency-bound.
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn open_serial(s: &SerialSettings) -> io::Result<tokio_serial::SerialStream> {
    use tokio_serial::SerialPortBuilderExt as _;
    let data_bits = match s.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let stop_bits = if s.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    tokio_serial::new(&s.path, s.baud)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .parity(parity)
        .open_native_async()
        .map_err(io::Error::from)
}

/// Sends one request to `unit` and waits at most `timeout` for its answer.
///
/// `timer` is the link's one reusable timer: moving a registered deadline later is an
/// atomic update in tokio, where a fresh timeout per request would insert into and remove
/// from the timer wheel every time.
pub(crate) async fn call(
    ctx: &mut Context,
    unit: u8,
    request: Request<'_>,
    timeout: Duration,
    timer: &mut Pin<Box<Sleep>>,
) -> Result<Response, Failure> {
    ctx.set_slave(Slave(unit));
    timer.as_mut().reset(Instant::now() + timeout);
    let answer = tokio::select! {
        biased;
        answer = ctx.call(request) => answer,
        () = timer.as_mut() => return Err(Failure::Timeout),
    };
    match answer {
        Err(tokio_modbus::Error::Transport(e)) => Err(Failure::Transport(e.to_string())),
        Err(tokio_modbus::Error::Protocol(e)) => Err(Failure::Protocol(e.to_string())),
        Ok(Err(code)) => Err(Failure::Exception(code)),
        Ok(Ok(response)) => Ok(response),
    }
}

/// An RTU line wrapper that throws away bytes pending before each request is written, so a
/// slave answering after its timeout cannot have its late answer taken for the next one.
#[derive(Debug)]
pub(crate) struct Draining<T> {
    inner: T,
}

impl<T> Draining<T> {
    pub(crate) fn new(inner: T) -> Self {
        Draining { inner }
    }
}

impl<T: AsyncRead + Unpin> Draining<T> {
    fn drain(&mut self, cx: &mut TaskContext<'_>) {
        let mut scratch = [0u8; 256];
        // Bounded: a line cannot hold more than a few frames of stale bytes.
        for _ in 0..64 {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => {}
                _ => break,
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Draining<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Draining<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.drain(cx);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn stale_bytes_are_dropped_before_a_request() {
        let (ours, mut line) = tokio::io::duplex(256);
        let mut ours = Draining::new(ours);
        // A late answer arrives after its request timed out...
        line.write_all(&[0x02, 0x03, 0x02, 0xAA, 0xBB])
            .await
            .unwrap();
        tokio::task::yield_now().await;
        // ...then the next request goes out and its answer comes back.
        ours.write_all(&[0x01, 0x03]).await.unwrap();
        let mut sent = [0u8; 2];
        line.read_exact(&mut sent).await.unwrap();
        assert_eq!(sent, [0x01, 0x03]);
        line.write_all(&[0x01, 0x83, 0x02]).await.unwrap();
        let mut answer = [0u8; 3];
        ours.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, [0x01, 0x83, 0x02], "only the fresh answer is read");
    }
}
