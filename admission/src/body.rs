//! Reading a request body within a limit. A body over the limit is answered 413 only after the
//! rest of it has been read and thrown away (up to a bound): answering while the client is still
//! sending makes HTTP/1.1 close the connection under the client's writes and HTTP/2 reset the
//! stream, and either way the client may never see the 413.

use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use futures::StreamExt;

/// How much more than the limit is read and discarded before answering 413.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// How long discarding the rest may take.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit (by its Content-Length or as it arrived).
    TooLarge,
    /// The stream broke (the client went away, a protocol error).
    Broken(String),
}

/// The whole body, when it is at most `limit` bytes.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = body.size_hint().lower();
    let mut stream = body.into_data_stream();
    if declared > limit as u64 {
        drain(&mut stream).await;
        return Err(BodyError::TooLarge);
    }
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut len = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
        len += chunk.len();
        if len > limit {
            drain(&mut stream).await;
            return Err(BodyError::TooLarge);
        }
        chunks.push(chunk);
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.swap_remove(0),
        _ => Bytes::from(chunks.concat()),
    })
}

/// Reads and discards what is left, up to [`DRAIN_BYTES`] and [`DRAIN_TIME`].
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let discard = async {
        let mut read = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chunked(parts: Vec<&'static [u8]>) -> Body {
        let stream = futures::stream::iter(
            parts
                .into_iter()
                .map(|p| Ok::<_, std::io::Error>(Bytes::from_static(p))),
        );
        Body::from_stream(stream)
    }

    #[tokio::test]
    async fn within_the_limit_whole() {
        assert_eq!(read_limited(Body::from("abc"), 3).await.unwrap(), "abc");
        assert_eq!(read_limited(Body::empty(), 3).await.unwrap(), "");
        let b = read_limited(chunked(vec![b"ab", b"", b"c"]), 3)
            .await
            .unwrap();
        assert_eq!(b, "abc");
    }

    #[tokio::test]
    async fn over_the_limit_by_length_or_as_it_arrives() {
        assert_eq!(
            read_limited(Body::from("abcd"), 3).await,
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            read_limited(chunked(vec![b"ab", b"cd", b"ef"]), 3).await,
            Err(BodyError::TooLarge)
        );
    }

    #[tokio::test]
    async fn a_broken_stream_is_not_too_large() {
        let stream = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Err(std::io::Error::other("reset by peer")),
        ]);
        let got = read_limited(Body::from_stream(stream), 10).await;
        assert!(
            matches!(&got, Err(BodyError::Broken(e)) if e.contains("reset by peer")),
            "{got:?}"
        );
    }
}
