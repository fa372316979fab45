//! A `wasi:http/handler@0.3` (WASIp3) component for the host's tests, one route each:
//!
//! - `GET /p3/hello`: a fixed body, sent in one piece;
//! - `GET /p3/headers`: the `spin-*` request headers the host set, one `name: value` per line;
//! - `POST /p3/echo`: the request body, read through the guest's stream, sent back;
//! - `GET /p3/stream?chunks=N`: N lines written *after* the handler has returned the response,
//!   with a pause between them, so the host must keep the instance running while it streams;
//! - `GET /p3/variable`: the Spin variable `greeting` (`fermyon:spin/variables`, a p2 import);
//! - `GET /p3/trap`: panics.
//!
//! Built only for wasm32-wasip2 (`cargo build --profile component --target wasm32-wasip2 -p
//! wattlet-p3-probe`); empty on native targets.

#[cfg(target_family = "wasm")]
mod probe {
    use std::time::Duration;

    use http_body_util::BodyExt;
    use wasip3::http::types::{self, ErrorCode, Fields, Request, Response};
    use wasip3::http_compat::{http_from_wasi_request, http_into_wasi_response};
    use wasip3::{wit_bindgen, wit_future, wit_stream};

    wasip3::http::service::export!(Probe);

    struct Probe;

    impl wasip3::exports::http::handler::Guest for Probe {
        async fn handle(request: Request) -> Result<Response, ErrorCode> {
            let request = http_from_wasi_request(request)?;
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or("").to_owned();
            match (request.method().as_str(), path.as_str()) {
                ("GET", "/p3/hello") => text(200, "hello from wasi:http@0.3\n".into()),
                ("GET", "/p3/headers") => {
                    let mut lines: Vec<String> = request
                        .headers()
                        .iter()
                        .filter(|(name, _)| name.as_str().starts_with("spin-"))
                        .map(|(name, value)| {
                            format!("{name}: {}", String::from_utf8_lossy(value.as_bytes()))
                        })
                        .collect();
                    lines.sort();
                    text(200, lines.join("\n") + "\n")
                }
                ("POST", "/p3/echo") => {
                    let body = request
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?
                        .to_bytes();
                    http_into_wasi_response(
                        http::Response::builder()
                            .status(200)
                            .header("x-echo-length", body.len().to_string())
                            .body(http_body_util::Full::new(body))
                            .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?,
                    )
                }
                ("GET", "/p3/stream") => {
                    let chunks = query
                        .strip_prefix("chunks=")
                        .and_then(|n| n.parse::<u32>().ok())
                        .unwrap_or(3);
                    Ok(streamed(chunks))
                }
                ("GET", "/p3/variable") => match spin_sdk::variables::get("greeting") {
                    Ok(value) => text(200, value + "\n"),
                    Err(e) => text(403, format!("{e}\n")),
                },
                ("GET", "/p3/trap") => panic!("the p3 probe traps on purpose"),
                _ => text(404, format!("no p3 probe route {path}\n")),
            }
        }
    }

    fn text(status: u16, body: String) -> Result<Response, ErrorCode> {
        http_into_wasi_response(
            http::Response::builder()
                .status(status)
                .header("content-type", "text/plain")
                .body(body)
                .map_err(|e| ErrorCode::InternalError(Some(e.to_string())))?,
        )
    }

    /// The response leaves before its body is written: a task keeps writing after `handle` has
    /// returned, as a p3 handler that streams does.
    fn streamed(chunks: u32) -> Response {
        let (mut body_tx, body_rx) = wit_stream::new();
        let (result_tx, result_rx) = wit_future::new(|| Ok(None));
        let (response, _transmitted) = Response::new(Fields::new(), Some(body_rx), result_rx);
        wit_bindgen::spawn_local(async move {
            for i in 0..chunks {
                wasip3::clocks::monotonic_clock::wait_for(
                    Duration::from_millis(20).as_nanos() as u64
                )
                .await;
                let rest = body_tx.write_all(format!("chunk {i}\n").into_bytes()).await;
                if !rest.is_empty() {
                    return;
                }
            }
            drop(body_tx);
            let _ = result_tx.write(Ok(None::<types::Trailers>)).await;
        });
        response
    }
}
