//! `Connection: close` on HTTP/1 answers given before the request body was read to its end.
//!
//! A refusal (401/403 on a bad token, 413, 429, 503 busy…) is answered without reading the
//! upload it refuses. hyper then tries to drain the rest of the body and, when it has not all
//! arrived, closes the connection after the answer. Without a `Connection: close` header the
//! client has already returned that connection to its pool, and its next request on it fails
//! (`IncompleteMessage` in reqwest, a network error in browsers for POSTs). This layer watches
//! the body and marks such answers, so clients open a new connection instead.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Version, header};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// The request body, noting when it has been read to its end.
struct Watched {
    inner: Body,
    ended: Arc<AtomicBool>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.ended.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: an HTTP/1 request that announced a body and was answered before the body ended
/// gets `Connection: close` on its answer.
pub async fn close_if_unread(req: Request, next: Next) -> Response {
    let h = req.headers();
    let has_body = req.version() <= Version::HTTP_11
        && (h.contains_key(header::TRANSFER_ENCODING)
            || h.get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0"));
    if !has_body {
        return next.run(req).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let (parts, body) = req.into_parts();
    let body = Body::new(Watched {
        inner: body,
        ended: Arc::clone(&ended),
    });
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if !ended.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
