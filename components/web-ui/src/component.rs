//! The Spin HTTP export: the page files and `survey.js` under `/ui/...`.

use spin_sdk::http::{Method, Request, Response};
use spin_sdk::http_component;

use crate::{FILES, survey_js};

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
    let generated;
    let (content_type, body): (&str, &str) = if path == "/survey.js" {
        generated = survey_js();
        ("text/javascript; charset=utf-8", &generated)
    } else {
        match FILES.iter().find(|(p, _, _)| *p == path) {
            Some((_, content_type, body)) => (content_type, body),
            None => return plain(404, "not found\n"),
        }
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
        .body(body.to_owned())
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
