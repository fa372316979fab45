//! The Spin HTTP export: checks method and path ([`crate::path`]), then streams the file from
//! the directory mounted at `/`.

use std::io::Read;

use futures::SinkExt;
use spin_sdk::http::{Fields, IncomingRequest, Method, OutgoingResponse, ResponseOutparam};
use spin_sdk::http_component;

use crate::path::{self, Target};

/// Bytes read from the file and written to the response at a time.
const CHUNK: usize = 64 * 1024;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    let method = match request.method() {
        Method::Get => path::check_method("GET"),
        Method::Head => path::check_method("HEAD"),
        _ => None,
    };
    let Some(method) = method else {
        return plain(
            out,
            405,
            &[("allow", "GET, HEAD")],
            "method not allowed: GET or HEAD\n",
        )
        .await;
    };
    // Spin's path below the route; without it (not run by Spin) nothing is served.
    let path_info = request
        .headers()
        .get("spin-path-info")
        .into_iter()
        .next()
        .unwrap_or_default();
    let target = match path::resolve(&path_info) {
        Ok(target) => target,
        Err(error) => return plain(out, error.status(), &[], &format!("{error}\n")).await,
    };
    let file = match open(&target) {
        Ok(Some(file)) => file,
        Ok(None) => return plain(out, 404, &[], "not found\n").await,
        Err(error) => {
            eprintln!("static-files: cannot read {}: {error}", target.relative);
            return plain(out, 500, &[], "cannot read the file\n").await;
        }
    };
    send(out, method, &target, file).await;
}

/// The regular file `target` names, with its length; `None` when there is none (missing, a
/// directory, or something else).
fn open(target: &Target) -> std::io::Result<Option<(std::fs::File, u64)>> {
    let file = match std::fs::File::open(target.guest_path()) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A path through a file (`/metadata/1.root.json/x`) is not there either.
        Err(error) if error.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
        Err(error) => return Err(error),
    };
    let metadata = file.metadata()?;
    Ok(metadata.is_file().then_some((file, metadata.len())))
}

async fn send(
    out: ResponseOutparam,
    method: path::Method,
    target: &Target,
    file: (std::fs::File, u64),
) {
    let (mut file, length) = file;
    let headers = [
        ("content-type", target.content_type.to_owned()),
        ("content-length", length.to_string()),
        ("cache-control", target.cache_control.to_owned()),
        ("x-content-type-options", "nosniff".to_owned()),
    ];
    let Some(response) = response(200, &headers) else {
        return;
    };
    if method == path::Method::Head {
        // The body is never taken: an empty one would contradict the content-length.
        out.set(response);
        return;
    }
    let mut body = response.take_body();
    out.set(response);
    let mut left = length;
    while left > 0 {
        let mut buffer = vec![0; CHUNK.min(usize::try_from(left).unwrap_or(CHUNK))];
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) => {
                eprintln!("static-files: reading {} failed: {error}", target.relative);
                break;
            }
        };
        buffer.truncate(read);
        left -= read as u64;
        if body.send(buffer).await.is_err() {
            // The client is gone.
            return;
        }
    }
    // A file cut short while sent leaves the body shorter than its content-length: the host
    // aborts the response rather than finish it as if complete.
}

/// A response with `headers`, or `None` (logged) when the host refuses them.
fn response(status: u16, headers: &[(&str, String)]) -> Option<OutgoingResponse> {
    let list: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone().into_bytes()))
        .collect();
    let fields = match Fields::from_list(&list) {
        Ok(fields) => fields,
        Err(error) => {
            eprintln!("static-files: response headers refused: {error:?}");
            return None;
        }
    };
    let response = OutgoingResponse::new(fields);
    if response.set_status_code(status).is_err() {
        eprintln!("static-files: status {status} refused");
        return None;
    }
    Some(response)
}

async fn plain(out: ResponseOutparam, status: u16, extra: &[(&str, &str)], text: &str) {
    let mut headers = vec![
        ("content-type", "text/plain; charset=utf-8".to_owned()),
        ("content-length", text.len().to_string()),
        ("cache-control", path::NO_CACHE.to_owned()),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    let Some(response) = response(status, &headers) else {
        return;
    };
    if let Err(error) = out.set_with_body(response, text.as_bytes().to_vec()).await {
        eprintln!("static-files: answering {status} failed: {error:?}");
    }
}
