//! The write buffer: queued requests gathered into one buffer, written with as few calls as
//! the socket takes, then flushed.
//!
//! It counts bytes: every request written gets its offset in the connection's output stream,
//! so that when the connection breaks the driver knows which requests never left (they go back
//! to the queue) and which may have run.

use bytes::{Buf, BytesMut};
use tokio::io::AsyncWriteExt;

use super::request::Request;

/// The buffer's starting capacity.
const INITIAL_CAPACITY: usize = 16 * 1024;
/// The driver stops gathering requests into one write beyond this many bytes.
const MAX_WRITE_BATCH: usize = 1024 * 1024;

/// What is to be written, and how much of the output stream has been.
#[derive(Debug)]
pub(super) struct WriteBuffer {
    buf: BytesMut,
    /// Bytes appended since the connection came up.
    appended: u64,
    /// Bytes written since the connection came up.
    written: u64,
    /// Bytes were written since the last flush.
    needs_flush: bool,
}

impl WriteBuffer {
    pub(super) fn new() -> WriteBuffer {
        WriteBuffer {
            buf: BytesMut::with_capacity(INITIAL_CAPACITY),
            appended: 0,
            written: 0,
            needs_flush: false,
        }
    }

    /// Nothing waits to be written.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Enough for one write: gather no more.
    pub(super) fn is_full(&self) -> bool {
        self.buf.len() >= MAX_WRITE_BATCH
    }

    /// Whether there is something to write or flush.
    pub(super) fn has_work(&self) -> bool {
        !self.buf.is_empty() || self.needs_flush
    }

    /// Appends a request; returns the offset of its first byte in the output stream.
    pub(super) fn append(&mut self, req: &Request) -> u64 {
        let before = self.buf.len();
        req.write_to(&mut self.buf);
        let start = self.appended;
        self.appended += (self.buf.len() - before) as u64;
        start
    }

    /// Bytes written so far: a request that starts here or later never left.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Writes what the buffer holds (one call), or flushes once it is empty. Cancel-safe: a
    /// write either happened (and its count is returned) or did not; the caller records it
    /// with [`WriteBuffer::wrote`].
    pub(super) async fn write_or_flush<W: tokio::io::AsyncWrite + Unpin>(
        &self,
        wr: &mut W,
    ) -> std::io::Result<Option<usize>> {
        if self.buf.is_empty() {
            wr.flush().await.map(|()| None)
        } else {
            wr.write(&self.buf).await.map(Some)
        }
    }

    /// Records the outcome of [`WriteBuffer::write_or_flush`]: `Some(n)` bytes written, or
    /// `None` for a flush.
    pub(super) fn wrote(&mut self, n: Option<usize>) {
        match n {
            Some(n) => {
                self.buf.advance(n);
                self.written += n as u64;
                self.needs_flush = true;
            }
            None => self.needs_flush = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::request::tests::caller_request;

    #[tokio::test]
    async fn offsets_follow_the_output_stream_through_partial_writes() {
        let mut writes = WriteBuffer::new();
        assert!(!writes.has_work());
        let (first, _a) = caller_request(1, None, None);
        let (second, _b) = caller_request(1, None, None);
        assert_eq!(writes.append(&first), 0);
        let len = writes.buf.len() as u64;
        assert_eq!(writes.append(&second), len);
        let mut sink = Vec::new();
        // A write the socket took only in part.
        writes.wrote(Some(3));
        assert_eq!(writes.written(), 3);
        assert_eq!(
            writes.write_or_flush(&mut sink).await.unwrap(),
            Some(2 * len as usize - 3)
        );
        writes.wrote(Some(2 * len as usize - 3));
        assert!(writes.is_empty() && writes.has_work(), "a flush is due");
        assert_eq!(writes.write_or_flush(&mut sink).await.unwrap(), None);
        writes.wrote(None);
        assert!(!writes.has_work());
        assert_eq!(writes.written(), 2 * len);
        assert!(!writes.is_full());
    }
}
