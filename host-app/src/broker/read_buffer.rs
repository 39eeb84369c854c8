//! The front's read buffer for one direction of a proxied connection: small and inline
//! while the stream is quiet, so an idle connection holds no heap buffer, and a heap
//! buffer while the stream keeps filling what it is given.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Inline bytes read at once while quiet (most MQTT packets of an idle or slow client fit).
const SMALL: usize = 512;
/// Heap bytes read at once while busy.
const LARGE: usize = 16 * 1024;

pub struct ReadBuffer {
    small: [u8; SMALL],
    large: BytesMut,
    last: usize,
    large_used: bool,
}

impl ReadBuffer {
    pub fn new() -> ReadBuffer {
        ReadBuffer {
            small: [0; SMALL],
            large: BytesMut::new(),
            last: 0,
            large_used: false,
        }
    }

    /// Reads once from `reader`; 0 means end of stream. Cancel safe.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        // Grow while reads fill the buffer; give the heap back once they no longer do.
        let busy = if self.large_used {
            self.last >= LARGE / 2
        } else {
            self.last == SMALL
        };
        self.large_used = busy;
        self.last = 0;
        self.last = if busy {
            if self.large.capacity() == 0 {
                self.large.reserve(LARGE);
            }
            self.large.clear();
            reader.read_buf(&mut self.large).await?
        } else {
            self.large = BytesMut::new();
            reader.read(&mut self.small).await?
        };
        Ok(self.last)
    }

    /// The bytes of the last read.
    pub fn filled(&self) -> &[u8] {
        if self.large_used {
            &self.large[..self.last]
        } else {
            &self.small[..self.last]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grows_while_reads_fill_it_and_lets_go_when_quiet() {
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let mut reader = &data[..];
        let mut buf = ReadBuffer::new();
        let mut seen = Vec::new();
        assert_eq!(buf.read(&mut reader).await.unwrap(), SMALL);
        seen.extend_from_slice(buf.filled());
        assert_eq!(buf.read(&mut reader).await.unwrap(), LARGE);
        seen.extend_from_slice(buf.filled());
        for _ in 0..10 {
            if buf.read(&mut reader).await.unwrap() == 0 {
                break;
            }
            seen.extend_from_slice(buf.filled());
        }
        assert_eq!(seen, data);
        // The last short read made it quiet: the heap buffer is given back.
        let mut empty: &[u8] = &[];
        assert_eq!(buf.read(&mut empty).await.unwrap(), 0);
        assert_eq!(buf.large.capacity(), 0);
    }
}
