//! Request bodies: read whole before a component runs, within a size limit.
//!
//! A declared `Content-Length` over the limit is refused before any byte is read; a body without
//! one (chunked) is counted while it is read and refused as soon as it passes the limit.

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::{BodyExt, LengthLimitError, Limited};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read request body: {0}")]
    Read(String),
}

/// Refuses a request whose `Content-Length` is over `limit` (a missing or unparsable one is
/// left to [`read`], which counts).
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

/// Reads the whole body, failing once more than `limit` bytes have arrived.
pub async fn read<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

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

    #[tokio::test]
    async fn the_running_count_stops_an_undeclared_body() {
        let body = Full::new(Bytes::from_static(b"0123456789"));
        assert_eq!(read(body, 10).await.expect("fits"), "0123456789");
        let chunks = futures::stream::iter(
            [b"01234".as_slice(), b"56789", b"!"]
                .map(|c| Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from_static(c)))),
        );
        assert!(matches!(
            read(StreamBody::new(chunks), 10).await,
            Err(BodyError::TooLarge { limit: 10 })
        ));
    }

    #[tokio::test]
    async fn a_broken_body_is_a_read_error() {
        let chunks = futures::stream::iter([Err::<hyper::body::Frame<Bytes>, _>(
            std::io::Error::other("connection reset"),
        )]);
        let err = read(StreamBody::new(chunks), 10).await.unwrap_err();
        assert!(
            matches!(&err, BodyError::Read(m) if m.contains("connection reset")),
            "{err}"
        );
    }
}
