//! Request bodies: streamed to the component as they arrive, within a size limit and a read
//! timeout, never buffered whole by the host.
//!
//! A declared `Content-Length` over the limit is refused before any byte is read
//! ([`check_declared_length`]); a body without one (chunked) is counted while the component
//! reads it, and fails as soon as it passes the limit. A body that stalls longer than the read
//! timeout between two chunks fails as well. The component sees the failure as a body error;
//! the host answers for it (413 or 408, see [`BodyStatus`]) when the component has not answered
//! yet.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body stalled for more than {0:?}")]
    TimedOut(Duration),
    #[error("cannot read request body: {0}")]
    Read(String),
}

/// Refuses a request whose `Content-Length` is over `limit` (a missing or unparsable one is
/// left to [`RequestBody`], which counts).
pub fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), BodyError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > limit as u64 => Err(BodyError::TooLarge { limit }),
        _ => Ok(()),
    }
}

const FINE: u8 = 0;
const TOO_LARGE: u8 = 1;
const TIMED_OUT: u8 = 2;
const BROKEN: u8 = 3;

/// How a [`RequestBody`] ended, readable while the component runs.
#[derive(Debug, Clone, Default)]
pub struct BodyStatus {
    /// None for a request without a body: nothing can go wrong, nothing to share.
    state: Option<Arc<AtomicU8>>,
}

impl BodyStatus {
    /// Why the body failed: too large, stalled, or broken off by the client.
    pub fn failure(&self) -> Option<BodyFailure> {
        match self.state.as_ref()?.load(Ordering::Acquire) {
            TOO_LARGE => Some(BodyFailure::TooLarge),
            TIMED_OUT => Some(BodyFailure::TimedOut),
            BROKEN => Some(BodyFailure::Broken),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFailure {
    TooLarge,
    TimedOut,
    Broken,
}

/// A request body on its way to a component: counted against the limit, each wait for the
/// next chunk bounded by the read timeout.
pub struct RequestBody<B> {
    inner: B,
    limit: usize,
    received: usize,
    timeout: Duration,
    /// The read timeout's timer, made at the first wait and re-armed after each chunk.
    stall: Option<Pin<Box<Sleep>>>,
    armed: bool,
    status: BodyStatus,
    done: bool,
}

impl<B: Body> RequestBody<B> {
    /// Wraps `inner`; the [`BodyStatus`] tells later how it ended.
    pub fn new(inner: B, limit: usize, timeout: Duration) -> (Self, BodyStatus) {
        let status = BodyStatus {
            state: (!inner.is_end_stream()).then(|| Arc::new(AtomicU8::new(FINE))),
        };
        let body = RequestBody {
            inner,
            limit,
            received: 0,
            timeout,
            stall: None,
            armed: false,
            status: status.clone(),
            done: false,
        };
        (body, status)
    }

    fn fail(
        &mut self,
        code: u8,
        error: BodyError,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.done = true;
        if let Some(state) = &self.status.state {
            state.store(code, Ordering::Release);
        }
        Poll::Ready(Some(Err(error)))
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                if let Some(data) = frame.data_ref() {
                    this.received = this.received.saturating_add(data.len());
                    if this.received > this.limit {
                        let limit = this.limit;
                        return this.fail(TOO_LARGE, BodyError::TooLarge { limit });
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => this.fail(BROKEN, BodyError::Read(error.to_string())),
            Poll::Ready(None) => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.timeout;
                let stall = this
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.armed {
                    stall.as_mut().reset(deadline);
                    this.armed = true;
                }
                ready!(stall.as_mut().poll(cx));
                let timeout = this.timeout;
                this.fail(TIMED_OUT, BodyError::TimedOut(timeout))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn headers(length: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, length.parse().expect("value"));
        h
    }

    #[test]
    fn declared_length_over_the_limit_is_refused() {
        assert!(check_declared_length(&headers("10"), 10).is_ok());
        assert!(matches!(
            check_declared_length(&headers("11"), 10),
            Err(BodyError::TooLarge { limit: 10 })
        ));
        // Larger than any usize on 32-bit targets, still refused rather than ignored.
        assert!(check_declared_length(&headers("99999999999"), 10).is_err());
        assert!(check_declared_length(&headers("garbage"), 10).is_ok());
        assert!(check_declared_length(&HeaderMap::new(), 10).is_ok());
    }

    const PATIENT: Duration = Duration::from_secs(60);

    async fn read<B>(
        body: B,
        limit: usize,
        timeout: Duration,
    ) -> (Result<Bytes, BodyError>, BodyStatus)
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let (body, status) = RequestBody::new(body, limit, timeout);
        (body.collect().await.map(|c| c.to_bytes()), status)
    }

    fn chunks(
        chunks: &'static [&'static [u8]],
    ) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Unpin> {
        StreamBody::new(futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
        ))
    }

    #[tokio::test]
    async fn the_running_count_stops_an_undeclared_body() {
        let (read_whole, status) =
            read(Full::new(Bytes::from_static(b"0123456789")), 10, PATIENT).await;
        assert_eq!(read_whole.expect("fits"), "0123456789");
        assert_eq!(status.failure(), None);
        let (over, status) = read(chunks(&[b"01234", b"56789", b"!"]), 10, PATIENT).await;
        assert_eq!(over, Err(BodyError::TooLarge { limit: 10 }));
        assert_eq!(status.failure(), Some(BodyFailure::TooLarge));
    }

    #[tokio::test]
    async fn a_broken_body_is_a_read_error() {
        let chunks = futures::stream::iter([Err::<Frame<Bytes>, _>(std::io::Error::other(
            "connection reset",
        ))]);
        let (err, status) = read(StreamBody::new(chunks), 10, PATIENT).await;
        assert!(
            matches!(&err, Err(BodyError::Read(m)) if m.contains("connection reset")),
            "{err:?}"
        );
        assert_eq!(status.failure(), Some(BodyFailure::Broken));
    }

    #[tokio::test]
    async fn a_stalled_body_times_out_but_a_slow_one_does_not() {
        // Chunks 100 ms apart with a 1 s read timeout arrive; a chunk that never comes fails.
        let slow = futures::stream::iter([b"ab".as_slice(), b"cd"]).then(|chunk| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(chunk)))
        });
        let (whole, _) = read(StreamBody::new(Box::pin(slow)), 10, Duration::from_secs(1)).await;
        assert_eq!(whole.expect("slow but steady"), "abcd");
        let stalled = chunks(&[b"ab"]).chain(futures::stream::pending());
        let timeout = Duration::from_millis(300);
        let started = Instant::now();
        let (err, status) = read(StreamBody::new(stalled), 10, timeout).await;
        assert_eq!(err, Err(BodyError::TimedOut(timeout)));
        assert_eq!(status.failure(), Some(BodyFailure::TimedOut));
        assert!(started.elapsed() >= timeout);
    }

    #[test]
    fn a_request_without_a_body_shares_nothing() {
        let (_, status) = RequestBody::new(http_body_util::Empty::<Bytes>::new(), 10, PATIENT);
        assert!(status.state.is_none());
        assert_eq!(status.failure(), None);
    }
}
