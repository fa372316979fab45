//! Requests to and answers from the Data API, independent of how the bytes travel.

use serde::{Deserialize, Serialize};
use wattlet_survey::{ConsentState, Measurement, Refusal, RefusalCode};

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
    /// RFC 3339 time the meter's newest telegram arrived.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reading: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeStats>,
}

/// What a meter's probe reader counted since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ProbeStats {
    pub telegrams: u64,
    /// Parser calls that failed (their bytes are lost).
    pub parser_failures: u64,
    /// Bytes the parser skipped (noise, corrupt frames).
    pub skipped_bytes: u64,
    /// Corrupt frames skipped (noise between frames not counted).
    pub skipped_frames: u64,
}

/// Rows waiting on the device: not yet sent, and set aside after a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BufferDepth {
    pub unsent: u64,
    pub set_aside: u64,
}

/// The update agent's state. `state` is one of `idle`, `downloading`, `staged`, `applying`,
/// `succeeded`, `failed`, `rolled_back` (the cloud takes any `[a-z_]{1,32}`); `component`,
/// `from`, `to` name the update, `reason` says why it failed or was rolled back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateState {
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Bytes the parser skipped on a probe: where in the meter's stream and why. No content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedRange {
    pub meter: String,
    /// RFC 3339 time they were skipped.
    pub at: String,
    pub offset: u64,
    pub length: u64,
    /// The parser's reason (`garbage`, `checksum-mismatch`, …).
    pub reason: String,
}

/// A diagnostics bundle: recent log lines, the configuration without secrets (JSON text),
/// per meter its probe statistics, the last skipped byte ranges. No readings: there is no
/// place for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagnosticsBundle {
    pub logs: Vec<String>,
    pub config: String,
    pub probes: Vec<(String, ProbeStats)>,
    pub skipped: Vec<SkippedRange>,
}

/// The Data API takes bundles up to 256 KiB; the oldest log lines give way first.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Log lines are cut to this many bytes (the Data API refuses longer ones).
pub const MAX_LOG_LINE: usize = 2048;
/// At most this many log lines (the Data API refuses more).
pub const MAX_LOG_LINES: usize = 1000;

/// Measurements set aside on the device because the cloud refused them: how many, of which
/// meter, with which code (`None`: a code this crate does not know).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub meter: String,
    pub code: Option<RefusalCode>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub components: Vec<(String, String)>,
    pub last_measurement: Option<String>,
    /// Meters wired to the device, as the cloud knows them.
    pub meters: Vec<MeterStatus>,
    pub set_aside: Vec<SetAside>,
    /// Whether the device's clock is plausibly set (it measures nothing while it is not).
    pub clock_plausible: bool,
    /// Seconds since the daemon started.
    pub uptime_s: Option<u64>,
    pub buffer: Option<BufferDepth>,
    /// Free bytes in the state directory's file system (for an unprivileged user).
    pub free_disk_bytes: Option<u64>,
    /// The device's clock when it reports (RFC 3339): the cloud derives the skew.
    pub device_time: Option<String>,
    /// The update agent's state; `None` when there is none to report.
    pub update: Option<UpdateState>,
}

/// One measurement the cloud refused on its own; sending it again will not help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasurementRefusal {
    pub uuid: String,
    /// `None` when the answer carried no code this crate knows.
    pub code: Option<RefusalCode>,
    /// For people.
    pub message: String,
}

/// What the cloud did with a batch. A measurement neither acknowledged nor refused was not
/// stored and may be sent again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOutcome {
    /// Stored now or before: these may be deleted from the device.
    pub acknowledged: Vec<String>,
    /// Refused one by one (the batch was then stored not at all).
    pub refused: Vec<MeasurementRefusal>,
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

/// What the cloud did with an upload of `sent`: a 2xx answer acknowledges uuids; a refusal
/// that lists measurements (`refused`: `{"index","uuid","code","error"}`) refuses those one by
/// one and stores none of the batch; any other refusal is an [`Error::Refused`] of the whole
/// batch. The cloud may only name what was sent: an answer naming anything else cannot be
/// trusted, and nothing is deleted or set aside.
pub fn parse_upload(
    status: u16,
    body: &[u8],
    sent: &[Measurement],
) -> Result<UploadOutcome, Error> {
    #[derive(Deserialize)]
    struct Ack {
        acknowledged: Vec<String>,
    }
    #[derive(Deserialize)]
    struct Refused {
        refused: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        index: Option<usize>,
        uuid: Option<String>,
        code: Option<String>,
        #[serde(default)]
        error: String,
    }
    let was_sent = |uuid: &str| sent.iter().any(|m| m.uuid == uuid);
    if let Err(error) = check_status(status, body) {
        let items = match (&error, serde_json::from_slice::<Refused>(body)) {
            (Error::Refused(_), Ok(refused)) if !refused.refused.is_empty() => refused.refused,
            _ => return Err(error),
        };
        let mut refused = Vec::with_capacity(items.len());
        for item in items {
            // The uuid as sent; by position when the cloud could not read it.
            let uuid = item
                .uuid
                .or_else(|| item.index.and_then(|i| sent.get(i)).map(|m| m.uuid.clone()))
                .filter(|uuid| was_sent(uuid))
                .ok_or_else(|| {
                    Error::Server("a refusal names a measurement that was not sent".to_owned())
                })?;
            refused.push(MeasurementRefusal {
                uuid,
                code: item.code.and_then(|c| c.parse().ok()),
                message: item.error,
            });
        }
        return Ok(UploadOutcome {
            acknowledged: Vec::new(),
            refused,
        });
    }
    let ack: Ack = serde_json::from_slice(body)
        .map_err(|e| Error::Server(format!("unreadable acknowledgement: {e}")))?;
    if let Some(stranger) = ack.acknowledged.iter().find(|uuid| !was_sent(uuid)) {
        return Err(Error::Server(format!(
            "acknowledgement names {stranger:?}, which was not sent"
        )));
    }
    Ok(UploadOutcome {
        acknowledged: ack.acknowledged,
        refused: Vec::new(),
    })
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
    let set_aside: Vec<_> = status
        .set_aside
        .iter()
        .map(|s| {
            serde_json::json!({
                "meter": s.meter,
                "code": s.code.map_or("unknown", RefusalCode::as_str),
                "count": s.count,
            })
        })
        .collect();
    let mut body = serde_json::json!({
        "components": components,
        "last_measurement": status.last_measurement,
        "meters": status.meters,
        "set_aside": set_aside,
        "clock_plausible": status.clock_plausible,
    });
    // Health: only what the device knows (a cloud before health ignores these fields).
    let health = [
        ("uptime_s", status.uptime_s.map(serde_json::Value::from)),
        ("buffer", status.buffer.map(|b| serde_json::json!(b))),
        (
            "free_disk_bytes",
            status.free_disk_bytes.map(serde_json::Value::from),
        ),
        (
            "device_time",
            status.device_time.clone().map(serde_json::Value::from),
        ),
        (
            "update",
            status.update.as_ref().map(|u| serde_json::json!(u)),
        ),
    ];
    for (key, value) in health {
        if let Some(value) = value {
            body[key] = value;
        }
    }
    Request {
        method: "PUT",
        path: format!("{}/api/household/measurement_device/status", cloud.base),
        body: Some(body.to_string().into_bytes()),
    }
}

/// The answer to a status report: `Some(id)` when an administrator asked for a diagnostics
/// bundle (200 `{"diagnostics":{"id",…}}`), `None` for 204 (or a cloud before diagnostics).
pub fn parse_status_report(status: u16, body: &[u8]) -> Result<Option<String>, Error> {
    #[derive(Deserialize)]
    struct Answer {
        diagnostics: Option<Requested>,
    }
    #[derive(Deserialize)]
    struct Requested {
        id: String,
    }
    check_status(status, body)?;
    if status == 204 || body.is_empty() {
        return Ok(None);
    }
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| Error::Server(format!("unreadable answer to the status report: {e}")))?;
    match answer.diagnostics {
        // The id goes back into a JSON body only; anything but a short token is not the cloud's.
        Some(r)
            if (1..=64).contains(&r.id.len())
                && r.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
        {
            Ok(Some(r.id))
        }
        Some(_) => Err(Error::Server(
            "the status answer names a malformed diagnostics request".to_owned(),
        )),
        None => Ok(None),
    }
}

/// `PUT /api/household/measurement_device/diagnostics`: the bundle for `request`, at most
/// [`MAX_BUNDLE_BYTES`]: log lines are cut to [`MAX_LOG_LINE`] bytes, the newest
/// [`MAX_LOG_LINES`] kept, and the oldest dropped until the body fits.
pub fn diagnostics_request(cloud: &Cloud, request: &str, bundle: &DiagnosticsBundle) -> Request {
    let config = serde_json::from_str::<serde_json::Value>(&bundle.config)
        .ok()
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({ "unreadable": true }));
    let probes: Vec<_> = bundle
        .probes
        .iter()
        .map(|(meter, stats)| {
            let mut probe = serde_json::json!(stats);
            probe["meter"] = serde_json::Value::from(meter.as_str());
            probe
        })
        .collect();
    let mut logs: Vec<String> = bundle
        .logs
        .iter()
        .skip(bundle.logs.len().saturating_sub(MAX_LOG_LINES))
        .map(|line| cut(line, MAX_LOG_LINE))
        .collect();
    let body = |logs: &[String]| {
        serde_json::json!({
            "request": request,
            "bundle": {
                "logs": logs,
                "config": config,
                "probes": probes,
                "skipped": bundle.skipped,
            },
        })
        .to_string()
        .into_bytes()
    };
    let mut bytes = body(&logs);
    while bytes.len() > MAX_BUNDLE_BYTES && !logs.is_empty() {
        // Drop the oldest quarter at a time: a few passes at most.
        let drop = logs.len().div_ceil(4);
        logs.drain(..drop);
        bytes = body(&logs);
    }
    Request {
        method: "PUT",
        path: format!(
            "{}/api/household/measurement_device/diagnostics",
            cloud.base
        ),
        body: Some(bytes),
    }
}

pub fn parse_diagnostics_upload(status: u16, body: &[u8]) -> Result<(), Error> {
    check_status(status, body)
}

/// A version the cloud's staged rollouts let this device install now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutAdmission {
    pub component: String,
    pub version: String,
    pub rollout: String,
}

/// How installing a rolled-out version ended on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutcome {
    pub component: String,
    pub version: String,
    pub committed: bool,
    pub reason: Option<String>,
}

/// The Data API takes outcome reasons up to this many bytes, without control characters.
pub const MAX_OUTCOME_REASON: usize = 512;

/// `GET /api/household/measurement_device/rollout`.
pub fn rollouts_request(cloud: &Cloud) -> Request {
    Request {
        method: "GET",
        path: format!("{}/api/household/measurement_device/rollout", cloud.base),
        body: None,
    }
}

/// `{"components": {"<name>": {"version", "rollout"}, …}}`, sorted by component name.
pub fn parse_rollouts(status: u16, body: &[u8]) -> Result<Vec<RolloutAdmission>, Error> {
    #[derive(Deserialize)]
    struct Answer {
        components: std::collections::BTreeMap<String, Admitted>,
    }
    #[derive(Deserialize)]
    struct Admitted {
        version: String,
        rollout: String,
    }
    check_status(status, body)?;
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|e| Error::Server(format!("unreadable rollouts: {e}")))?;
    Ok(answer
        .components
        .into_iter()
        .map(|(component, a)| RolloutAdmission {
            component,
            version: a.version,
            rollout: a.rollout,
        })
        .collect())
}

/// `POST /api/household/measurement_device/rollout`: `committed`, or `rolled_back` with the
/// reason on one line, cut to [`MAX_OUTCOME_REASON`] bytes (a trap's backtrace has many).
pub fn update_outcome_request(cloud: &Cloud, outcome: &UpdateOutcome) -> Request {
    let reason = outcome.reason.as_ref().map(|r| {
        let line: String = r
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        cut(&line, MAX_OUTCOME_REASON)
    });
    let body = serde_json::json!({
        "component": outcome.component,
        "version": outcome.version,
        "outcome": if outcome.committed { "committed" } else { "rolled_back" },
        "reason": reason,
    });
    Request {
        method: "POST",
        path: format!("{}/api/household/measurement_device/rollout", cloud.base),
        body: Some(body.to_string().into_bytes()),
    }
}

pub fn parse_update_outcome(status: u16, body: &[u8]) -> Result<(), Error> {
    check_status(status, body)
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
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
            UploadOutcome {
                acknowledged: vec!["b".to_owned()],
                refused: Vec::new()
            }
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
    fn measurements_refused_one_by_one_are_named_with_their_codes() {
        let sent = [measurement("a"), measurement("b"), measurement("c")];
        // The Data API refused "a" (an unwired meter) and "c" (a time out of range): nothing
        // was stored, "b" may go again.
        let body = br#"{"error":"meter m is not wired to this device","code":"meter_not_wired",
            "refused":[
              {"index":0,"uuid":"a","code":"meter_not_wired","error":"meter m is not wired"},
              {"index":2,"uuid":"c","code":"time_out_of_range","error":"in the future"}]}"#;
        let outcome = parse_upload(403, body, &sent).unwrap();
        assert!(outcome.acknowledged.is_empty());
        assert_eq!(
            outcome.refused,
            [
                MeasurementRefusal {
                    uuid: "a".into(),
                    code: Some(RefusalCode::MeterNotWired),
                    message: "meter m is not wired".into()
                },
                MeasurementRefusal {
                    uuid: "c".into(),
                    code: Some(RefusalCode::TimeOutOfRange),
                    message: "in the future".into()
                },
            ]
        );
        // A code from a newer Data API, and a uuid the cloud could not read (by position).
        let body = br#"{"error":"x","code":"invalid_request",
            "refused":[{"index":1,"uuid":null,"code":"from_a_newer_api","error":"?"}]}"#;
        let outcome = parse_upload(400, body, &sent).unwrap();
        assert_eq!(
            (outcome.refused[0].uuid.as_str(), outcome.refused[0].code),
            ("b", None)
        );
        // A refusal naming something that was not sent is not trusted.
        for body in [
            &br#"{"error":"x","code":"conflict","refused":[{"index":0,"uuid":"zzz","code":"conflict"}]}"#[..],
            br#"{"error":"x","code":"conflict","refused":[{"index":7,"code":"conflict"}]}"#,
        ] {
            assert!(
                matches!(parse_upload(409, body, &sent), Err(Error::Server(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Without a list (or with an empty one) the whole batch is refused, as before.
        for body in [
            &br#"{"error":"x","code":"consent_revoked"}"#[..],
            br#"{"error":"x","code":"consent_revoked","refused":[]}"#,
        ] {
            assert!(matches!(
                parse_upload(403, body, &sent),
                Err(Error::Refused(r)) if r.is(RefusalCode::ConsentRevoked)
            ));
        }
        // A server error is retried whatever its body says.
        let body = br#"{"error":"x","code":"internal","refused":[{"index":0,"uuid":"a"}]}"#;
        assert!(matches!(
            parse_upload(500, body, &sent),
            Err(Error::Server(_))
        ));
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
                    last_reading: None,
                    probe: None,
                }],
                set_aside: vec![
                    SetAside {
                        meter: "n".into(),
                        code: Some(RefusalCode::MeterNotWired),
                        count: 3,
                    },
                    SetAside {
                        meter: "m".into(),
                        code: None,
                        count: 1,
                    },
                ],
                clock_plausible: false,
                uptime_s: None,
                buffer: None,
                free_disk_bytes: None,
                device_time: None,
                update: None,
            },
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body.unwrap()).unwrap();
        assert_eq!(body["components"]["upload"], "0.1.0");
        assert_eq!(body["meters"][0]["missing"][0], "0100100700ff");
        assert!(body["last_measurement"].is_null());
        assert_eq!(
            body["set_aside"],
            serde_json::json!([
                {"meter": "n", "code": "meter_not_wired", "count": 3},
                {"meter": "m", "code": "unknown", "count": 1},
            ])
        );
        assert_eq!(body["clock_plausible"], false);
        // A device without health reports the fields it had before, and no others.
        // Sorted: serde_json may keep insertion order (`preserve_order`, feature-unified).
        let mut keys: Vec<_> = body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "clock_plausible",
                "components",
                "last_measurement",
                "meters",
                "set_aside"
            ]
        );
        assert_eq!(body["meters"][0].as_object().unwrap().len(), 3, "{body}");
        assert_eq!(parse_status_report(204, b""), Ok(None));
    }

    #[test]
    fn rollouts_say_what_the_device_may_install() {
        let cloud = Cloud::parse("https://c/base").unwrap();
        let request = rollouts_request(&cloud);
        assert_eq!(
            (request.method, request.path.as_str(), request.body),
            (
                "GET",
                "/base/api/household/measurement_device/rollout",
                None
            )
        );
        let body = br#"{"components":{"upload":{"version":"1.2.0","rollout":"r2"},
            "meter-parser":{"version":"1.1.0","rollout":"r1"}}}"#;
        assert_eq!(
            parse_rollouts(200, body),
            Ok(vec![
                RolloutAdmission {
                    component: "meter-parser".into(),
                    version: "1.1.0".into(),
                    rollout: "r1".into()
                },
                RolloutAdmission {
                    component: "upload".into(),
                    version: "1.2.0".into(),
                    rollout: "r2".into()
                },
            ])
        );
        assert_eq!(parse_rollouts(200, br#"{"components":{}}"#), Ok(vec![]));
        assert!(matches!(
            parse_rollouts(200, br#"{"components":{"upload":"1.2.0"}}"#),
            Err(Error::Server(_))
        ));
        assert!(matches!(parse_rollouts(401, b""), Err(Error::Refused(r)) if r.status == 401));
        assert!(matches!(parse_rollouts(503, b""), Err(Error::Server(_))));
    }

    #[test]
    fn outcomes_fit_what_the_cloud_takes() {
        let cloud = Cloud::parse("https://c").unwrap();
        let body = |outcome: &UpdateOutcome| -> serde_json::Value {
            let request = update_outcome_request(&cloud, outcome);
            assert_eq!(request.method, "POST");
            assert_eq!(request.path, "/api/household/measurement_device/rollout");
            serde_json::from_slice(&request.body.unwrap()).unwrap()
        };
        let committed = body(&UpdateOutcome {
            component: "upload".into(),
            version: "1.2.0".into(),
            committed: true,
            reason: None,
        });
        assert_eq!(
            committed,
            serde_json::json!({"component": "upload", "version": "1.2.0",
                "outcome": "committed", "reason": null})
        );
        // A trap's message: many lines, multi-byte characters, far over the limit.
        let long = format!("wasm trap: unreachable\n{}", "→ frame\n".repeat(200));
        let rolled_back = body(&UpdateOutcome {
            component: "meter-parser".into(),
            version: "1.1.0".into(),
            committed: false,
            reason: Some(long),
        });
        assert_eq!(rolled_back["outcome"], "rolled_back");
        let reason = rolled_back["reason"].as_str().unwrap();
        assert!(reason.len() <= MAX_OUTCOME_REASON, "{}", reason.len());
        assert!(reason.starts_with("wasm trap: unreachable "), "{reason}");
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
        assert_eq!(parse_update_outcome(204, b""), Ok(()));
        assert!(matches!(
            parse_update_outcome(404, br#"{"error":"no rollout","code":"not_found"}"#),
            Err(Error::Refused(r)) if r.code == Some(RefusalCode::NotFound)
        ));
    }

    fn healthy() -> DeviceStatus {
        DeviceStatus {
            components: vec![("upload".into(), "0.1.0".into())],
            last_measurement: Some("2026-11-23T16:00:00Z".into()),
            meters: vec![MeterStatus {
                uuid: "m".into(),
                locked: false,
                missing: vec![],
                last_reading: Some("2026-11-23T16:00:01Z".into()),
                probe: Some(ProbeStats {
                    telegrams: 9,
                    parser_failures: 1,
                    skipped_bytes: 17,
                    skipped_frames: 2,
                }),
            }],
            set_aside: vec![],
            clock_plausible: true,
            uptime_s: Some(3600),
            buffer: Some(BufferDepth {
                unsent: 3,
                set_aside: 1,
            }),
            free_disk_bytes: Some(1 << 30),
            device_time: Some("2026-11-23T16:00:05Z".into()),
            update: Some(UpdateState {
                state: "failed".into(),
                component: Some("upload".into()),
                from: Some("0.1.0".into()),
                to: Some("0.2.0".into()),
                reason: None,
            }),
        }
    }

    #[test]
    fn health_travels_in_the_status_report() {
        let cloud = Cloud::parse("https://c/base").unwrap();
        let request = status_request(&cloud, &healthy());
        let body: serde_json::Value = serde_json::from_slice(&request.body.unwrap()).unwrap();
        assert_eq!(body["uptime_s"], 3600);
        assert_eq!(
            body["buffer"],
            serde_json::json!({"unsent": 3, "set_aside": 1})
        );
        assert_eq!(body["free_disk_bytes"], 1u64 << 30);
        assert_eq!(body["device_time"], "2026-11-23T16:00:05Z");
        assert_eq!(
            body["update"],
            serde_json::json!({"state": "failed", "component": "upload", "from": "0.1.0", "to": "0.2.0"})
        );
        assert_eq!(body["meters"][0]["last_reading"], "2026-11-23T16:00:01Z");
        assert_eq!(
            body["meters"][0]["probe"],
            serde_json::json!({"telegrams": 9, "parser_failures": 1, "skipped_bytes": 17, "skipped_frames": 2})
        );
    }

    #[test]
    fn status_answers_may_ask_for_diagnostics() {
        let id = "2f1c1e9a-55a4-4d4a-9d36-3a3c4c8d9e01";
        let body = format!(r#"{{"diagnostics":{{"id":"{id}","expires_at":"x"}}}}"#);
        assert_eq!(
            parse_status_report(200, body.as_bytes()),
            Ok(Some(id.into()))
        );
        assert_eq!(
            parse_status_report(200, br#"{"diagnostics":null}"#),
            Ok(None)
        );
        assert_eq!(parse_status_report(200, b""), Ok(None));
        for hostile in [
            &br#"{"diagnostics":{"id":"../../etc"}}"#[..],
            br#"{"diagnostics":{"id":""}}"#,
            br#"{"diagnostics":{"id":7}}"#,
            b"<html>",
        ] {
            assert!(
                matches!(parse_status_report(200, hostile), Err(Error::Server(_))),
                "{}",
                String::from_utf8_lossy(hostile)
            );
        }
        assert!(matches!(
            parse_status_report(403, br#"{"code":"device_revoked"}"#),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn bundles_fit_the_data_apis_limits() {
        let cloud = Cloud::parse("https://c").unwrap();
        let bundle = DiagnosticsBundle {
            // 3000 lines of 300 bytes (900 KB), one of them 5000 bytes of multi-byte text.
            logs: (0..3000)
                .map(|i| {
                    if i == 2999 {
                        "é".repeat(2500)
                    } else {
                        format!("{i:05} {}", "x".repeat(294))
                    }
                })
                .collect(),
            config: r#"{"cloud":"https://c"}"#.into(),
            probes: vec![("m".into(), ProbeStats::default())],
            skipped: vec![SkippedRange {
                meter: "m".into(),
                at: "2026-11-23T16:00:00Z".into(),
                offset: 10,
                length: 7,
                reason: "checksum-mismatch".into(),
            }],
        };
        let request = diagnostics_request(&cloud, "r-1", &bundle);
        assert_eq!(
            (request.method, request.path.as_str()),
            ("PUT", "/api/household/measurement_device/diagnostics")
        );
        let bytes = request.body.unwrap();
        assert!(bytes.len() <= MAX_BUNDLE_BYTES, "{}", bytes.len());
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["request"], "r-1");
        let logs = body["bundle"]["logs"].as_array().unwrap();
        assert!(
            logs.len() <= MAX_LOG_LINES && logs.len() > 100,
            "{}",
            logs.len()
        );
        // The newest lines stay; the long one is cut at a character boundary.
        let last = logs.last().unwrap().as_str().unwrap();
        assert!(last.len() <= MAX_LOG_LINE && last.starts_with('é'));
        assert_eq!(body["bundle"]["config"]["cloud"], "https://c");
        assert_eq!(body["bundle"]["probes"][0]["meter"], "m");
        assert_eq!(body["bundle"]["skipped"][0]["reason"], "checksum-mismatch");
        // Configuration that is not a JSON object is not passed on as it is.
        let mut odd = bundle.clone();
        odd.config = "secret=1".into();
        let body: serde_json::Value =
            serde_json::from_slice(&diagnostics_request(&cloud, "r", &odd).body.unwrap()).unwrap();
        assert_eq!(
            body["bundle"]["config"],
            serde_json::json!({"unreadable": true})
        );
    }
}
