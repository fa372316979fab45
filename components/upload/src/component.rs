//! The WIT export `wattlet:edge/uplink`: the protocol of this crate over `wasi:http`.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasip2::io::streams::StreamError;

use crate::protocol::{self, Cloud, Error, Request};

wit_bindgen::generate!({
    path: "../../wit/edge",
    world: "upload",
    // The survey's types are imported by the interface this component exports.
    generate_all,
});

pub(crate) use exports::wattlet::edge::uplink as wit;
pub(crate) use wattlet::survey::types as wit_survey;

/// Answers larger than this are not the Data API's and are refused.
const MAX_RESPONSE: usize = 4 << 20;
/// Every call gives up after this long; the host retries on its next report cycle.
const TIMEOUT_NS: u64 = 30_000_000_000;

struct Component;

export!(Component);

impl wit::Guest for Component {
    fn upload(
        cloud: String,
        batch: Vec<wit_survey::Measurement>,
    ) -> Result<wit::UploadOutcome, wit::Error> {
        let cloud = Cloud::parse(&cloud)?;
        let batch: Vec<_> = batch.into_iter().map(Into::into).collect();
        let (status, body) = send(&cloud, &protocol::upload_request(&cloud, &batch))?;
        Ok(protocol::parse_upload(status, &body, &batch)?.into())
    }

    fn fetch_consent(cloud: String) -> Result<wit_survey::ConsentState, wit::Error> {
        let cloud = Cloud::parse(&cloud)?;
        let (status, body) = send(&cloud, &protocol::consent_request(&cloud))?;
        Ok(protocol::parse_consent(status, &body)?.into())
    }

    fn report_status(
        cloud: String,
        status: wit::DeviceStatus,
    ) -> Result<Option<String>, wit::Error> {
        let cloud = Cloud::parse(&cloud)?;
        let (code, body) = send(&cloud, &protocol::status_request(&cloud, &status.into()))?;
        Ok(protocol::parse_status_report(code, &body)?)
    }

    fn upload_diagnostics(
        cloud: String,
        request: String,
        bundle: wit::DiagnosticsBundle,
    ) -> Result<(), wit::Error> {
        let cloud = Cloud::parse(&cloud)?;
        let request = protocol::diagnostics_request(&cloud, &request, &bundle.into());
        let (code, body) = send(&cloud, &request)?;
        Ok(protocol::parse_diagnostics_upload(code, &body)?)
    }

    fn fetch_rollouts(cloud: String) -> Result<Vec<wit::RolloutAdmission>, wit::Error> {
        let cloud = Cloud::parse(&cloud)?;
        let (code, body) = send(&cloud, &protocol::rollouts_request(&cloud))?;
        Ok(protocol::parse_rollouts(code, &body)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    fn report_update(cloud: String, outcome: wit::UpdateOutcome) -> Result<(), wit::Error> {
        let cloud = Cloud::parse(&cloud)?;
        let request = protocol::update_outcome_request(&cloud, &outcome.into());
        let (code, body) = send(&cloud, &request)?;
        Ok(protocol::parse_update_outcome(code, &body)?)
    }
}

/// Sends one request and reads the whole answer: (status, body).
fn send(cloud: &Cloud, request: &Request) -> Result<(u16, Vec<u8>), Error> {
    let transport = |what: &str| Error::Transport(what.to_owned());
    let mut headers = vec![("accept".to_owned(), b"application/json".to_vec())];
    if request.body.is_some() {
        headers.push(("content-type".to_owned(), b"application/json".to_vec()));
    }
    let headers =
        Fields::from_list(&headers).map_err(|e| Error::Transport(format!("headers: {e:?}")))?;
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        _ => Method::Post,
    };
    outgoing
        .set_method(&method)
        .map_err(|()| transport("method"))?;
    outgoing
        .set_scheme(Some(&Scheme::Https))
        .map_err(|()| transport("scheme"))?;
    outgoing
        .set_authority(Some(&cloud.authority))
        .map_err(|()| Error::InvalidUrl(cloud.authority.clone()))?;
    outgoing
        .set_path_with_query(Some(&request.path))
        .map_err(|()| Error::InvalidUrl(request.path.clone()))?;
    let body = outgoing.body().map_err(|()| transport("request body"))?;
    if let Some(bytes) = &request.body {
        let stream = body
            .write()
            .map_err(|()| transport("request body stream"))?;
        // blocking-write-and-flush takes at most 4096 bytes per call.
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| Error::Transport(format!("writing the request: {e:?}")))?;
        }
        drop(stream);
    }
    let options = RequestOptions::new();
    // Not every host lets a guest set timeouts; the default then applies.
    let _ = options.set_connect_timeout(Some(TIMEOUT_NS));
    let _ = options.set_first_byte_timeout(Some(TIMEOUT_NS));
    let _ = options.set_between_bytes_timeout(Some(TIMEOUT_NS));
    let future = outgoing_handler::handle(outgoing, Some(options))
        .map_err(|e| Error::Transport(format!("{e:?}")))?;
    OutgoingBody::finish(body, None).map_err(|e| Error::Transport(format!("{e:?}")))?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(e))) => return Err(Error::Transport(format!("{e:?}"))),
        Some(Err(())) | None => return Err(transport("response already taken")),
    };
    let status = response.status();
    let incoming = response
        .consume()
        .map_err(|()| transport("response body"))?;
    let stream = incoming
        .stream()
        .map_err(|()| transport("response body stream"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > MAX_RESPONSE {
                    return Err(Error::Server(format!(
                        "answer larger than {MAX_RESPONSE} bytes"
                    )));
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(Error::Transport(format!(
                    "reading the answer: {}",
                    e.to_debug_string()
                )));
            }
        }
    }
    Ok((status, bytes))
}
