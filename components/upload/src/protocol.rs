//! Requests to and answers from the Data API, independent of how the bytes travel.

use serde::{Deserialize, Serialize};
use wattlet_survey::{ConsentState, Measurement, Refusal};

/// Why a call to the cloud failed. `Server` and `Transport` are worth retrying later; a
/// refusal is met again by the same request, and its code says why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("refused: {0}")]
    Refused(Refusal),
    #[error("server error: {0}")]
    Server(String),
    #[error("cannot reach the cloud: {0}")]
    Transport(String),
    #[error("invalid cloud URL: {0}")]
    InvalidUrl(String),
}

impl Error {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Server(_) | Error::Transport(_))
    }
}

/// The cloud's base URL, split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloud {
    /// `host[:port]`.
    pub authority: String,
    /// Path prefix without a trailing slash, e.g. `` or `/survey`.
    pub base: String,
}

impl Cloud {
    /// Parses `https://host[:port][/base]`. Plain `http` is refused: a device's data and
    /// identity travel only over mutually authenticated TLS.
    pub fn parse(url: &str) -> Result<Cloud, Error> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| Error::InvalidUrl(format!("{url:?} does not start with https://")))?;
        let (authority, base) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let bad_char = |c: char| c.is_whitespace() || matches!(c, '?' | '#' | '@');
        if authority.is_empty() || authority.contains(bad_char) || base.contains(bad_char) {
            return Err(Error::InvalidUrl(format!(
                "{url:?} is not https://host[:port][/base]"
            )));
        }
        Ok(Cloud {
            authority: authority.to_owned(),
            base: base.trim_end_matches('/').to_owned(),
        })
    }
}

/// An HTTP request to make: method, path below the authority, JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeterStatus {
    pub uuid: String,
    pub locked: bool,
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub components: Vec<(String, String)>,
    pub last_measurement: Option<String>,
    pub meters: Vec<MeterStatus>,
}

/// Endpoint 8: `POST /api/household/meter/measurement`. Each measurement's data is the Data
/// API's JSON array of single-entry objects, `[{"<obis hex>": value}, …]`.
pub fn upload_request(cloud: &Cloud, batch: &[Measurement]) -> Request {
    let measurements: Vec<_> = batch
        .iter()
        .map(|m| {
            let data: Vec<_> = m
                .values
                .iter()
                .map(|(obis, value)| serde_json::json!({ obis.as_str(): value }))
                .collect();
            serde_json::json!({
                "uuid": m.uuid,
                "meter": m.meter,
                "measured_at": m.measured_at,
                "data": data,
            })
        })
        .collect();
    let body = serde_json::json!({ "measurements": measurements });
    Request {
        method: "POST",
        path: format!("{}/api/household/meter/measurement", cloud.base),
        body: Some(body.to_string().into_bytes()),
    }
}

/// The acknowledged uuids of an upload. The cloud may only acknowledge what was sent: an
/// acknowledgement for anything else means the answer cannot be trusted, and nothing is deleted.
pub fn parse_upload(status: u16, body: &[u8], sent: &[Measurement]) -> Result<Vec<String>, Error> {
    #[derive(Deserialize)]
    struct Ack {
        acknowledged: Vec<String>,
    }
    check_status(status, body)?;
    let ack: Ack = serde_json::from_slice(body)
        .map_err(|e| Error::Server(format!("unreadable acknowledgement: {e}")))?;
    if let Some(stranger) = ack
        .acknowledged
        .iter()
        .find(|uuid| !sent.iter().any(|m| &m.uuid == *uuid))
    {
        return Err(Error::Server(format!(
            "acknowledgement names {stranger:?}, which was not sent"
        )));
    }
    Ok(ack.acknowledged)
}

/// `GET /api/household/consent`.
pub fn consent_request(cloud: &Cloud) -> Request {
    Request {
        method: "GET",
        path: format!("{}/api/household/consent", cloud.base),
        body: None,
    }
}

pub fn parse_consent(status: u16, body: &[u8]) -> Result<ConsentState, Error> {
    #[derive(Deserialize)]
    struct Consent {
        state: ConsentState,
    }
    check_status(status, body)?;
    serde_json::from_slice::<Consent>(body)
        .map(|c| c.state)
        .map_err(|e| Error::Server(format!("unreadable consent: {e}")))
}

/// `PUT /api/household/measurement_device/status`.
pub fn status_request(cloud: &Cloud, status: &DeviceStatus) -> Request {
    let components: serde_json::Map<_, _> = status
        .components
        .iter()
        .map(|(name, version)| (name.clone(), serde_json::Value::from(version.as_str())))
        .collect();
    let body = serde_json::json!({
        "components": components,
        "last_measurement": status.last_measurement,
        "meters": status.meters,
    });
    Request {
        method: "PUT",
        path: format!("{}/api/household/measurement_device/status", cloud.base),
        body: Some(body.to_string().into_bytes()),
    }
}

pub fn parse_status_report(status: u16, body: &[u8]) -> Result<(), Error> {
    check_status(status, body)
}

/// Maps a non-2xx answer to an error: a 4xx is a refusal with the Data API's code, anything
/// else a server error worth retrying.
fn check_status(status: u16, body: &[u8]) -> Result<(), Error> {
    match status {
        200..=299 => Ok(()),
        400..=499 => Err(Error::Refused(Refusal::from_answer(status, body))),
        _ => Err(Error::Server(
            Refusal::from_answer(status, body).to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_survey::RefusalCode;

    fn measurement(uuid: &str) -> Measurement {
        Measurement {
            uuid: uuid.into(),
            meter: "m-1".into(),
            measured_at: "2026-11-23T16:00:00Z".into(),
            values: vec![
                ("0100010800ff".into(), 1234.5678),
                ("0100100700ff".into(), -0.25),
            ],
        }
    }

    #[test]
    fn cloud_urls() {
        let cloud = Cloud::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(cloud.authority, "127.0.0.1:8443");
        assert_eq!(cloud.base, "");
        let cloud = Cloud::parse("https://survey.example/v1/").unwrap();
        assert_eq!(
            (cloud.authority.as_str(), cloud.base.as_str()),
            ("survey.example", "/v1")
        );
        for bad in [
            "http://x",
            "https://",
            "https://a b",
            "https://u@host",
            "ftp://x",
            "x",
        ] {
            assert!(
                matches!(Cloud::parse(bad), Err(Error::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn upload_body_is_the_data_api_shape() {
        let cloud = Cloud::parse("https://c/base").unwrap();
        let request = upload_request(&cloud, &[measurement("a")]);
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/base/api/household/meter/measurement");
        let body: serde_json::Value = serde_json::from_slice(&request.body.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"measurements": [{
                "uuid": "a", "meter": "m-1", "measured_at": "2026-11-23T16:00:00Z",
                "data": [{"0100010800ff": 1234.5678}, {"0100100700ff": -0.25}],
            }]})
        );
    }

    #[test]
    fn acknowledgements_are_checked_against_what_was_sent() {
        let sent = [measurement("a"), measurement("b")];
        assert_eq!(
            parse_upload(200, br#"{"acknowledged":["b"]}"#, &sent).unwrap(),
            vec!["b".to_owned()]
        );
        assert!(matches!(
            parse_upload(200, br#"{"acknowledged":["a","zzz"]}"#, &sent),
            Err(Error::Server(_))
        ));
        assert!(matches!(
            parse_upload(200, b"<html>", &sent),
            Err(Error::Server(_))
        ));
    }

    #[test]
    fn refusals_carry_the_code_whatever_the_message() {
        let sent = [measurement("a")];
        let cases = [
            (
                403,
                r#"{"error":"nope","code":"consent_revoked"}"#,
                Some(RefusalCode::ConsentRevoked),
            ),
            // The word "consent" in a message means nothing: only the code counts.
            (
                403,
                r#"{"error":"consent","code":"meter_not_wired"}"#,
                Some(RefusalCode::MeterNotWired),
            ),
            (
                401,
                r#"{"error":"who?","code":"not_authenticated"}"#,
                Some(RefusalCode::NotAuthenticated),
            ),
            (
                400,
                r#"{"error":"bad uuid","code":"invalid_request"}"#,
                Some(RefusalCode::InvalidRequest),
            ),
            (403, r#"{"error":"consent revoked"}"#, None),
            (409, "{}", None),
            (413, "request body too large", None),
        ];
        for (status, body, code) in cases {
            match parse_upload(status, body.as_bytes(), &sent) {
                Err(Error::Refused(refusal)) => {
                    assert_eq!((refusal.status, refusal.code), (status, code), "{body}")
                }
                other => panic!("{status} {body}: {other:?}"),
            }
        }
        for (status, body) in [(500, "boom"), (503, "")] {
            let error = parse_upload(status, body.as_bytes(), &sent).unwrap_err();
            assert!(matches!(error, Error::Server(_)), "{status}");
            assert!(error.is_retryable());
        }
        let message = parse_upload(
            403,
            br#"{"error":"consent revoked","code":"consent_revoked"}"#,
            &sent,
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("HTTP 403 (consent_revoked): consent revoked"),
            "{message}"
        );
    }

    #[test]
    fn consent_and_status() {
        assert_eq!(
            parse_consent(200, br#"{"state":"granted"}"#),
            Ok(ConsentState::Granted)
        );
        assert_eq!(
            parse_consent(200, br#"{"state":"not_granted","granted_at":null}"#),
            Ok(ConsentState::NotGranted)
        );
        assert!(matches!(
            parse_consent(200, br#"{"state":"maybe"}"#),
            Err(Error::Server(_))
        ));
        assert!(matches!(parse_consent(403, b""), Err(Error::Refused(r)) if r.status == 403));
        let cloud = Cloud::parse("https://c").unwrap();
        let request = status_request(
            &cloud,
            &DeviceStatus {
                components: vec![("upload".into(), "0.1.0".into())],
                last_measurement: None,
                meters: vec![MeterStatus {
                    uuid: "m".into(),
                    locked: true,
                    missing: vec!["0100100700ff".into()],
                }],
            },
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body.unwrap()).unwrap();
        assert_eq!(body["components"]["upload"], "0.1.0");
        assert_eq!(body["meters"][0]["missing"][0], "0100100700ff");
        assert!(body["last_measurement"].is_null());
        assert_eq!(parse_status_report(204, b""), Ok(()));
    }
}
