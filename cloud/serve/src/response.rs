//! Responses the host answers itself, before or instead of a component.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

/// The body of every response the server sends: a component's (possibly streaming) or the host's.
pub type Body = UnsyncBoxBody<Bytes, anyhow::Error>;

/// A `text/plain` response, e.g. `404 not found`.
pub fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_owned()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    response
}
