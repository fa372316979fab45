//! The Data API as the manager and the workers see it: the `/api/worker/...` endpoints, called
//! with a `worker` access token. They never open the Data API's database: the schema and the
//! consent rule have one owner, and the same workers run against the app on Spin.
//!
//! Every read and write is refused by the Data API while the household's consent does not
//! permit personal processing; a result's write and its consent check are one SQL statement
//! there, so a revocation can never slip between them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Deserialize;
use serde_json::json;
use wattlet_api_client::{ApiClient, ClientError};
use wattlet_sealing::{DataKey, KeyId, Sealed};
use wattlet_survey::RefusalCode;

use crate::item::STEP_SECONDS;

/// Where the Data API is and how a worker authenticates.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// `https://host[:port]` (the Data API's own TLS listener or an ingress) or
    /// `http://host[:port]` (a local `spin up`).
    pub url: String,
    /// The CA that issued the server's certificate (PEM); required for https.
    pub ca: Option<PathBuf>,
    /// A `worker` access token (minted by an administrator).
    pub token: String,
}

/// A meter with data: its uuid and the times of its first and last measurement (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterSpan {
    pub meter: String,
    pub first: i64,
    pub last: i64,
}

/// Power readings of one meter in a span (Unix seconds, W).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PowerReadings {
    /// The latest reading before the span, which carries into its first minutes.
    pub before: Option<(i64, f64)>,
    /// The readings inside the span, in time order.
    pub readings: Vec<(i64, f64)>,
    /// The household's data key (only a `manager` token gets it), which seals the items.
    pub key: Option<HouseholdKey>,
}

/// A household's data key and its id, as the Data API hands them to the work manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdKey {
    pub id: KeyId,
    pub key: DataKey,
}

impl HouseholdKey {
    /// `{"id":"<32 hex>","key":"<base64 of 32 bytes>"}` of the power answer.
    pub fn from_json(value: &serde_json::Value) -> anyhow::Result<HouseholdKey> {
        use base64::Engine as _;
        let id = value["id"]
            .as_str()
            .context("the household key has no id")?;
        let key = value["key"]
            .as_str()
            .context("the household key has no key")?;
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .context("the household key is not base64")?;
        let key = DataKey::from_bytes(&bytes);
        bytes.iter_mut().for_each(|b| *b = 0);
        Ok(HouseholdKey {
            id: KeyId::parse(id)?,
            key: key?,
        })
    }
}

/// One computed item, as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedResult {
    pub item: String,
    pub meter: String,
    pub model: String,
    pub model_sha256: String,
    /// Unix seconds of the first output minute.
    pub window_start: i64,
    /// The appliance's power in W, one value per minute of the window.
    pub power_w: Vec<f32>,
}

/// One computed forecast item, as it is stored (`POST /api/worker/forecast`).
#[derive(Debug, Clone, PartialEq)]
pub struct ComputedForecast {
    pub item: String,
    pub meter: String,
    /// Unix seconds: the end of the data the forecast was made from.
    pub at: i64,
    pub forecasts: Vec<crate::forecast::SliceForecast>,
}

impl ComputedForecast {
    /// The result object the Data API stores (also the plaintext of a sealed result).
    pub fn to_json(&self) -> serde_json::Value {
        let forecasts: Vec<serde_json::Value> = self
            .forecasts
            .iter()
            .map(|f| {
                json!({
                    "slice_seconds": f.slice_seconds,
                    "slice_start": rfc3339(f.slice_start),
                    "load_w": f.load_w,
                })
            })
            .collect();
        json!({
            "item": self.item,
            "meter": self.meter,
            "at": rfc3339(self.at),
            "forecasts": forecasts,
        })
    }
}

/// What the Data API did with one result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored now.
    New,
    /// Stored before (a redelivered or twice-computed item), or, for a forecast, superseded by
    /// a later one: nothing changed.
    Duplicate,
    /// Not stored, for good: the household's consent no longer permits it (or the meter is
    /// gone, or the household's key was destroyed: `key_destroyed`). The item is done. The
    /// Data API's refusal code, as it wrote it.
    Refused(Option<String>),
}

/// A result on its way to the Data API: sealed under the household's key (what confidential
/// workers send), or in the clear (accepted only where the Data API allows plaintext results).
#[derive(Debug, Clone)]
pub enum Submission {
    Sealed(Sealed),
    Plain(ComputedResult),
    PlainForecast(ComputedForecast),
}

impl Submission {
    pub fn item(&self) -> &str {
        match self {
            Submission::Sealed(sealed) => &sealed.item,
            Submission::Plain(result) => &result.item,
            Submission::PlainForecast(result) => &result.item,
        }
    }

    fn to_json(&self) -> anyhow::Result<serde_json::Value> {
        Ok(match self {
            Submission::Sealed(sealed) => json!({ "sealed": sealed }),
            Submission::Plain(result) => result.to_json(),
            Submission::PlainForecast(result) => result.to_json(),
        })
    }
}

impl ComputedResult {
    /// The result object the Data API stores (also the plaintext of a sealed result).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "item": self.item,
            "meter": self.meter,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "window_start": rfc3339(self.window_start),
            "step_seconds": STEP_SECONDS,
            "power_w": self.power_w,
        })
    }
}

/// The most results one store call carries (the Data API's limit).
pub const MAX_RESULTS_PER_CALL: usize = 100;

/// The longest span one power read may cover (the Data API's limit is 7 days).
pub const MAX_POWER_SPAN: i64 = 6 * 24 * 3600;

#[derive(Clone, Debug)]
pub struct DataApi {
    client: ApiClient,
}

impl DataApi {
    pub fn connect(options: &ApiOptions) -> anyhow::Result<Self> {
        let client = client(options)?.with_bearer(options.token.clone());
        Ok(DataApi { client })
    }

    /// Electricity meters whose household permits personal processing and that have data. A
    /// meter whose times cannot be read (before 1970, say) is left out with a log line.
    pub async fn meters(&self) -> anyhow::Result<Vec<MeterSpan>> {
        let answer: serde_json::Value = self.get_json("/api/worker/meters").await?;
        spans(&answer)
    }

    /// The meter's power readings in `from..to` (at most [`MAX_POWER_SPAN`]); `None` when the
    /// household's consent no longer permits processing (or the meter is gone).
    pub async fn power(
        &self,
        meter: &str,
        from: i64,
        to: i64,
    ) -> anyhow::Result<Option<PowerReadings>> {
        #[derive(Deserialize)]
        struct Power {
            before: Option<Reading>,
            readings: Vec<Reading>,
            #[serde(default)]
            key: Option<serde_json::Value>,
        }
        #[derive(Deserialize)]
        struct Reading {
            at: String,
            power_w: f64,
        }
        let path = format!(
            "/api/worker/meter/{meter}/power?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        );
        let answer: Power = match self.get_json(&path).await {
            Ok(answer) => answer,
            Err(error) if is_gone(&error) => return Ok(None),
            Err(error) => return Err(error),
        };
        let reading =
            |r: Reading| -> anyhow::Result<(i64, f64)> { Ok((unix_seconds(&r.at)?, r.power_w)) };
        Ok(Some(PowerReadings {
            before: answer.before.map(reading).transpose()?,
            readings: answer
                .readings
                .into_iter()
                .map(reading)
                .collect::<anyhow::Result<_>>()?,
            key: answer
                .key
                .as_ref()
                .map(HouseholdKey::from_json)
                .transpose()?,
        }))
    }

    /// Stores results (each write checked against consent in the same statement), in calls of
    /// at most [`MAX_RESULTS_PER_CALL`]; one outcome per result, in order.
    pub async fn store(&self, results: &[Submission]) -> anyhow::Result<Vec<Stored>> {
        self.store_at("/api/worker/disaggregation", results).await
    }

    /// Stores forecasts ([`ComputedForecast`], or sealed ones) as [`DataApi::store`] stores
    /// NIALM results.
    pub async fn store_forecasts(&self, results: &[Submission]) -> anyhow::Result<Vec<Stored>> {
        self.store_at("/api/worker/forecast", results).await
    }

    async fn store_at(&self, path: &str, results: &[Submission]) -> anyhow::Result<Vec<Stored>> {
        #[derive(Deserialize)]
        struct Answer {
            results: Vec<Outcome>,
        }
        #[derive(Deserialize)]
        struct Outcome {
            item: String,
            outcome: String,
            #[serde(default)]
            code: Option<String>,
        }
        let mut stored = Vec::with_capacity(results.len());
        for chunk in results.chunks(MAX_RESULTS_PER_CALL) {
            let body: Vec<serde_json::Value> = chunk
                .iter()
                .map(Submission::to_json)
                .collect::<anyhow::Result<_>>()?;
            let answer = self
                .client
                .call("POST", path, Some(&json!({ "results": body })))
                .await?;
            let answer: Answer = serde_json::from_value(answer)
                .with_context(|| format!("unreadable answer of POST {path}"))?;
            if answer.results.len() != chunk.len()
                || answer
                    .results
                    .iter()
                    .zip(chunk)
                    .any(|(a, r)| a.item != r.item())
            {
                anyhow::bail!("the Data API answered for other results than were sent");
            }
            for outcome in answer.results {
                stored.push(match outcome.outcome.as_str() {
                    "stored" => Stored::New,
                    "duplicate" | "superseded" => Stored::Duplicate,
                    "refused" => Stored::Refused(outcome.code),
                    other => anyhow::bail!("unknown outcome {other:?} for item {}", outcome.item),
                });
            }
        }
        Ok(stored)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let answer = self.client.call("GET", path, None).await?;
        serde_json::from_value(answer).with_context(|| format!("unreadable answer of GET {path}"))
    }
}

/// A client of `options.url` with its TLS options, without a bearer token (the key broker's
/// client: it authenticates by attestation).
pub fn client(options: &ApiOptions) -> anyhow::Result<ApiClient> {
    let tls = match &options.ca {
        Some(ca) => Some(Arc::new(
            wattlet_tls::anonymous_client_tls_config(ca)
                .with_context(|| format!("--ca {}", ca.display()))?,
        )),
        None if options.url.starts_with("https://") => {
            anyhow::bail!(
                "{} is https: give --ca, the CA of its server certificate",
                options.url
            )
        }
        None => None,
    };
    Ok(ApiClient::new(&options.url, tls)?.with_timeout(Duration::from_secs(60)))
}

/// The meters of a `GET /api/worker/meters` answer whose times can be read; the others are
/// logged and left out. Only an answer that is not a meter list at all is an error.
pub fn spans(answer: &serde_json::Value) -> anyhow::Result<Vec<MeterSpan>> {
    #[derive(Deserialize)]
    struct Meters {
        meters: Vec<serde_json::Value>,
    }
    #[derive(Deserialize)]
    struct Meter {
        meter: String,
        first: String,
        last: String,
    }
    let answer =
        Meters::deserialize(answer).context("unreadable answer of GET /api/worker/meters")?;
    let mut spans = Vec::with_capacity(answer.meters.len());
    for entry in answer.meters {
        let span = Meter::deserialize(&entry)
            .map_err(anyhow::Error::from)
            .and_then(|m| {
                Ok(MeterSpan {
                    first: unix_seconds(&m.first)?,
                    last: unix_seconds(&m.last)?,
                    meter: m.meter,
                })
            });
        match span {
            Ok(span) => spans.push(span),
            Err(error) => {
                tracing::warn!(meter = %entry["meter"], error = format!("{error:#}"), "cannot plan this meter: its times are unreadable; skipped")
            }
        }
    }
    Ok(spans)
}

/// A refusal that says the meter's data may no longer be processed.
fn is_gone(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<ClientError>()
        .and_then(ClientError::refusal)
        .and_then(|r| r.code)
        .is_some_and(|code| {
            matches!(
                code,
                RefusalCode::ConsentNotGranted
                    | RefusalCode::ConsentRevoked
                    | RefusalCode::NotFound
            )
        })
}

/// The last second RFC 3339 can write: 9999-12-31T23:59:59Z.
const LAST_SECOND: i64 = 253_402_300_799;

/// RFC 3339, UTC, whole seconds; Unix seconds outside 1970–9999 are clamped (nothing is
/// measured then), so this never panics.
pub fn rfc3339(unix: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_secs(unix.clamp(0, LAST_SECOND).unsigned_abs());
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Unix seconds of an RFC 3339 time from the Data API.
pub fn unix_seconds(time: &str) -> anyhow::Result<i64> {
    let at: SystemTime = humantime::parse_rfc3339_weak(time)
        .or_else(|_| humantime::parse_rfc3339(time))
        .with_context(|| format!("unreadable time {time:?} from the Data API"))?;
    let since = at
        .duration_since(UNIX_EPOCH)
        .with_context(|| format!("time {time:?} is before 1970"))?;
    i64::try_from(since.as_secs()).context("time out of range")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let t = 1_764_000_000;
        assert_eq!(rfc3339(t), "2025-11-24T16:00:00Z");
        assert_eq!(unix_seconds(&rfc3339(t)).unwrap(), t);
        assert_eq!(unix_seconds("2025-11-24T16:00:00.250Z").unwrap(), t);
        assert!(unix_seconds("yesterday").is_err());
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59Z");
        assert!(unix_seconds("1969-12-31T23:59:59Z").is_err());
        assert_eq!(unix_seconds("9999-12-31T23:59:59Z").unwrap(), LAST_SECOND);
    }

    #[test]
    fn meters_with_unreadable_times_are_left_out() {
        let answer = json!({"meters": [
            {"meter": "a", "first": "1969-12-31T23:59:59Z", "last": "2026-11-23T16:00:00Z"},
            {"meter": "b", "first": "2026-11-23T15:00:00Z", "last": "2026-11-23T16:00:00Z"},
            {"meter": "c", "first": "yesterday", "last": "today"},
            {"meter": "d"},
            {"meter": "e", "first": "2026-11-23T15:00:00Z", "last": "9999-12-31T23:59:59Z"},
        ]});
        let planned = spans(&answer).unwrap();
        let names: Vec<&str> = planned.iter().map(|s| s.meter.as_str()).collect();
        assert_eq!(names, ["b", "e"]);
        assert!(spans(&json!({"error": "x"})).is_err());
    }
}
