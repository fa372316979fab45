//! The web UIs of the wattlet cloud, a Spin HTTP component mounted at `/ui/...`: static pages
//! that talk to the Data API (`/api/...`) from the browser with the bearer token the user
//! enters. The files are compiled in, so the component needs no file system.
//!
//! - `/ui/registration/`: researchers register participants and see their consent;
//! - `/ui/status/`: administrators see every device's versions, last measurement and activity,
//!   household and consent;
//! - `/ui/device/`: the participant's device UI (consent, registration details, own
//!   measurements as a chart), opened from the link the device obtains with its certificate.
//!
//! The crate is a WebAssembly component only: on native targets it is empty.
#![cfg(target_family = "wasm")]

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

/// Every file: path under `/ui`, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../static/index.html"),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../static/app.css"),
    ),
    (
        "/api.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/api.js"),
    ),
    (
        "/registration/",
        "text/html; charset=utf-8",
        include_str!("../static/registration/index.html"),
    ),
    (
        "/registration/registration.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/registration/registration.js"),
    ),
    (
        "/device/",
        "text/html; charset=utf-8",
        include_str!("../static/device/index.html"),
    ),
    (
        "/device/device.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/device/device.js"),
    ),
    (
        "/status/",
        "text/html; charset=utf-8",
        include_str!("../static/status/index.html"),
    ),
    (
        "/status/status.js",
        "text/javascript; charset=utf-8",
        include_str!("../static/status/status.js"),
    ),
];

#[http_component]
fn handle(req: Request) -> Response {
    let path = req.path().strip_prefix("/ui").unwrap_or("");
    // `/ui` and `/ui/registration` without the slash: to the directory, so relative links work.
    if matches!(path, "" | "/registration" | "/status" | "/device") {
        return Response::builder()
            .status(308)
            .header("location", format!("/ui{path}/"))
            .body(Vec::new())
            .build();
    }
    let Some((_, content_type, body)) = FILES.iter().find(|(p, _, _)| *p == path) else {
        return plain(404, "not found\n");
    };
    match req.method() {
        Method::Get => {}
        Method::Head => {
            return headers(Response::builder().status(200), content_type)
                .body(Vec::new())
                .build();
        }
        _ => {
            return Response::builder()
                .status(405)
                .header("allow", "GET, HEAD")
                .header("content-type", "text/plain; charset=utf-8")
                .body("method not allowed\n")
                .build();
        }
    }
    headers(Response::builder().status(200), content_type)
        .body(*body)
        .build()
}

/// What every page is sent with: scripts only from this origin, no framing, no sniffing, no
/// referrer (household ids are in URLs of the API).
fn headers<'a>(
    builder: &'a mut spin_sdk::http::ResponseBuilder,
    content_type: &str,
) -> &'a mut spin_sdk::http::ResponseBuilder {
    builder
        .header("content-type", content_type)
        .header("cache-control", "no-cache")
        .header(
            "content-security-policy",
            "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
}

fn plain(status: u16, text: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(text.to_owned())
        .build()
}
