//! Policy attachments and the access log natively, with the policy libraries the composed
//! components are built from: what a researcher, a restricted token and the participant each get;
//! participants only add stricter rules and never detach a study rule; every access and change
//! lands in a hash chain that verifies, and a changed entry does not.
#![cfg(not(target_family = "wasm"))]

mod support;

use serde_json::{Value, json};
use support::{Api, Household, assert_refused, measurement};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wattlet_data_api::Method;
use wattlet_survey::RefusalCode;

/// The start of the hour two days ago, and `minute` minutes after it, as RFC 3339.
fn recent(minute: i64) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let hour = (now - 2 * 86_400).div_euclid(3600) * 3600;
    OffsetDateTime::from_unix_timestamp(hour + minute * 60)
        .expect("time")
        .format(&Rfc3339)
        .expect("format")
}

/// A household with consent and 30 one-minute measurements two days ago plus one from 2020.
fn household(api: &Api) -> Household {
    let household = api.register();
    let (status, body) = api.as_device(&household, Method::Post, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    let meter = &household.meters[0];
    let mut batch: Vec<Value> = (0..30)
        .map(|m| {
            measurement(
                meter,
                &recent(m),
                json!([{ "0100100700ff": m as f64, "0100010800ff": 1000.0 + m as f64 }]),
            )
        })
        .collect();
    batch.push(measurement(
        meter,
        "2020-01-01T00:00:00Z",
        json!([{ "0100100700ff": 9.0 }]),
    ));
    let (status, body) = api.upload(&household, &batch);
    assert_eq!(status, 200, "{body}");
    household
}

fn own_read(api: &Api, h: &Household) -> (u16, Value) {
    let path = format!("/api/household/meter/{}/measurement", h.meters[0]);
    api.as_device(h, Method::Get, &path, None)
}

fn research_read(api: &Api, token: &str, h: &Household) -> (u16, Value) {
    let path = format!(
        "/api/management/meter/{}/measurement?purpose=load%20study",
        h.meters[0]
    );
    api.with_token(token, Method::Get, &path, None)
}

fn rows(reply: &(u16, Value)) -> Vec<Value> {
    assert_eq!(reply.0, 200, "{}", reply.1);
    reply.1["measurements"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn each_caller_gets_what_the_chain_allows() {
    let api = Api::new();
    let h = household(&api);
    let researcher = api.mint(json!({ "role": "researcher" }));
    // Without policies everyone reads the series as stored.
    assert_eq!(rows(&own_read(&api, &h)).len(), 31);
    assert_eq!(rows(&research_read(&api, &researcher, &h)).len(), 31);

    let (status, body) = api.admin(
        Method::Post,
        "/api/management/policies",
        Some(&json!({ "policy": "researchers-aggregate", "parameters": { "step_minutes": 15 } })),
    );
    assert_eq!(status, 201, "{body}");
    let study_rule = body["id"].as_i64().expect("id");
    let (status, body) = api.admin(
        Method::Post,
        "/api/management/policies",
        Some(&json!({ "policy": "retention", "parameters": { "months": 24 } })),
    );
    assert_eq!(status, 201, "{body}");

    // The participant: every recent measurement as stored, the 2020 one past retention.
    let own = rows(&own_read(&api, &h));
    assert_eq!(own.len(), 30);
    assert!(own.iter().all(|m| m["uuid"].is_string()));
    // A researcher: two 15-minute aggregates (power the mean, energy the last value), the
    // registers in the order the measurements have them.
    let aggregated = rows(&research_read(&api, &researcher, &h));
    assert_eq!(aggregated.len(), 2, "{aggregated:?}");
    assert_eq!(aggregated[0]["uuid"], Value::Null);
    assert_eq!(aggregated[0]["step_seconds"], 900);
    assert_eq!(aggregated[0]["samples"], 15);
    assert_eq!(
        aggregated[0]["data"],
        json!([{ "0100100700ff": 7.0 }, { "0100010800ff": 1014.0 }])
    );
    // A token restricted to this household and reading: the same aggregates; to another
    // household: nothing.
    let restricted =
        api.mint(json!({ "role": "researcher", "household": h.id, "read_only": true }));
    assert_eq!(rows(&research_read(&api, &restricted, &h)), aggregated);
    let other = api.register();
    let elsewhere = research_read(&api, &restricted, &other);
    assert_refused(&elsewhere, RefusalCode::TokenRestricted);

    // The participant adds a pause over the first 10 minutes, then an hour step. The chain runs
    // the study's 15-minute step first, so the pause withholds the first quarter whole.
    let pause = json!({ "ranges": [{ "from": recent(0), "to": recent(10) }] });
    for (policy, parameters) in [
        ("pause-window", pause),
        ("researchers-aggregate", json!({ "step_minutes": 60 })),
    ] {
        let (status, body) = api.as_device(
            &h,
            Method::Post,
            "/api/household/policies",
            Some(&json!({ "policy": policy, "parameters": parameters })),
        );
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["principal"], "participant");
    }
    let hourly = rows(&research_read(&api, &researcher, &h));
    assert_eq!(hourly.len(), 1, "{hourly:?}");
    assert_eq!(
        (
            hourly[0]["step_seconds"].as_i64(),
            hourly[0]["samples"].as_i64()
        ),
        (Some(3600), Some(15))
    );
    assert_eq!(rows(&own_read(&api, &h)).len(), 30);

    // Looser than the study, or detaching a study rule: refused.
    let looser = api.as_device(
        &h,
        Method::Post,
        "/api/household/policies",
        Some(&json!({ "policy": "retention", "parameters": { "months": 36 } })),
    );
    assert_refused(&looser, RefusalCode::PolicyNotStricter);
    let detach = api.as_device(
        &h,
        Method::Delete,
        &format!("/api/household/policies/{study_rule}"),
        None,
    );
    assert_refused(&detach, RefusalCode::PolicyStudyRule);
    // Invalid parameters and unknown policies: 400 naming them.
    for (body, needle) in [
        (
            json!({ "policy": "retention", "parameters": { "months": 0 } }),
            "months",
        ),
        (
            json!({ "policy": "researchers-aggregate", "parameters": { "step_minutes": 5 } }),
            "step_minutes",
        ),
        (
            json!({ "policy": "exfiltrate", "parameters": {} }),
            "unknown policy",
        ),
        (
            json!({ "policy": "retention", "parameters": "12" }),
            "parameters",
        ),
    ] {
        let reply = api.as_device(&h, Method::Post, "/api/household/policies", Some(&body));
        assert_refused(&reply, RefusalCode::InvalidRequest);
        assert!(
            reply.1["error"]
                .as_str()
                .is_some_and(|e| e.contains(needle)),
            "{}",
            reply.1
        );
    }
    // Only administrators attach study rules; a pause is the participant's.
    let by_researcher = api.with_token(
        &researcher,
        Method::Post,
        "/api/management/policies",
        Some(&json!({ "policy": "retention", "parameters": { "months": 1 } })),
    );
    assert_refused(&by_researcher, RefusalCode::RoleForbidden);
    let study_pause = api.admin(
        Method::Post,
        "/api/management/policies",
        Some(&json!({ "policy": "pause-window", "parameters": { "ranges": [] } })),
    );
    assert_refused(&study_pause, RefusalCode::InvalidRequest);

    // The listing: study rules first, then the household's.
    let (status, listing) = api.as_device(&h, Method::Get, "/api/household/policies", None);
    assert_eq!(status, 200, "{listing}");
    let principals: Vec<&str> = listing["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["principal"].as_str())
        .collect();
    assert_eq!(principals, ["study", "study", "participant", "participant"]);
}

#[test]
fn a_request_inside_a_pause_is_denied_and_logged() {
    let api = Api::new();
    let h = household(&api);
    let researcher = api.mint(json!({ "role": "researcher" }));
    let pause = json!({ "ranges": [{ "from": recent(0), "to": recent(60) }] });
    let (status, body) = api.as_device(
        &h,
        Method::Post,
        "/api/household/policies",
        Some(&json!({ "policy": "pause-window", "parameters": pause })),
    );
    assert_eq!(status, 201, "{body}");
    let from = recent(5).replace('+', "%2B");
    let to = recent(20).replace('+', "%2B");
    let path = format!(
        "/api/management/meter/{}/measurement?from={from}&to={to}",
        h.meters[0]
    );
    let denied = api.with_token(&researcher, Method::Get, &path, None);
    assert_refused(&denied, RefusalCode::PolicyDenied);

    let (status, log) = api.as_device(&h, Method::Get, "/api/household/access_log", None);
    assert_eq!(status, 200, "{log}");
    let entries = log["entries"].as_array().cloned().unwrap_or_default();
    let last = &entries.last().expect("entries")["entry"];
    assert_eq!(last["decision"], "deny");
    assert_eq!(last["role"], "researcher");
    assert!(
        last["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("token:")),
        "{last}"
    );
    assert_eq!(entries[0]["entry"]["operation"], "attach");
    assert!(
        entries[0]["entry"]["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("device:anon:")),
        "the device is named by its pseudonym: {}",
        entries[0]["entry"]
    );
}

#[test]
fn the_access_log_is_a_hash_chain_that_detects_tampering() {
    let api = Api::new();
    let h = household(&api);
    let researcher = api.mint(json!({ "role": "researcher" }));
    for _ in 0..3 {
        rows(&own_read(&api, &h));
        rows(&research_read(&api, &researcher, &h));
    }
    let (status, log) = api.as_device(&h, Method::Get, "/api/household/access_log", None);
    assert_eq!(status, 200, "{log}");
    let head = log["head"].as_str().expect("head").to_owned();
    let verified = wattlet_policy::log::verify(&log, &head).expect("intact");
    assert_eq!(verified.entries, 6);
    // No email, device id or household id in any entry.
    let text = log["entries"].to_string();
    for secret in [&h.email, &h.device, &h.id] {
        assert!(!text.contains(secret.as_str()), "{secret} in the log");
    }
    // A page verifies on its own from its `prev`.
    let (_, page) = api.as_device(&h, Method::Get, "/api/household/access_log?after=4", None);
    assert_eq!(
        wattlet_policy::log::verify(&page, &head).map(|v| v.entries),
        Ok(2)
    );

    // Changing an entry in the database is detected.
    api.sql(
        "UPDATE access_log SET entry = replace(entry, '\"served\":31', '\"served\":0') WHERE chain = ?1 AND seq = 1",
        [&h.id],
    );
    let (_, tampered) = api.as_device(&h, Method::Get, "/api/household/access_log", None);
    assert_eq!(
        wattlet_policy::log::verify(&tampered, &head),
        Err(wattlet_policy::log::ChainError::Tampered { seq: 1 })
    );
    let bad = api.as_device(&h, Method::Get, "/api/household/access_log?after=x", None);
    assert_refused(&bad, RefusalCode::InvalidRequest);
}

/// The access log's entries for `h`, oldest first.
fn log_entries(api: &Api, h: &Household) -> Vec<Value> {
    let (status, log) = api.as_device(h, Method::Get, "/api/household/access_log", None);
    assert_eq!(status, 200, "{log}");
    log["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["entry"].clone())
        .collect()
}

#[test]
fn uploads_run_the_write_hooks_rows_past_retention_are_refused_not_stored() {
    let api = Api::new();
    let h = household(&api);
    let meter = &h.meters[0];
    let (status, body) = api.as_device(
        &h,
        Method::Post,
        "/api/household/policies",
        Some(&json!({ "policy": "retention", "parameters": { "months": 24 } })),
    );
    assert_eq!(status, 201, "{body}");
    let stored = |api: &Api| {
        api.count(
            "SELECT COUNT(*) FROM measurement WHERE meter = ?1",
            [meter.as_str()],
        )
    };
    let before = stored(&api);
    let logged = log_entries(&api, &h).len();

    // A backlog from 2021 (past 24 months) with a recent one: the old one is refused with the
    // policy's code, nothing of the batch is stored, and the log says what the chain did.
    let old = measurement(
        meter,
        "2021-03-01T00:00:00Z",
        json!([{ "0100100700ff": 1.0 }]),
    );
    let new = measurement(meter, &recent(45), json!([{ "0100100700ff": 2.0 }]));
    let reply = api.upload(&h, &[old.clone(), new.clone()]);
    assert_refused(&reply, RefusalCode::PolicyDenied);
    let refused = reply.1["refused"].as_array().cloned().unwrap_or_default();
    assert_eq!(refused.len(), 1, "{}", reply.1);
    assert_eq!(
        (
            &refused[0]["index"],
            &refused[0]["uuid"],
            &refused[0]["code"]
        ),
        (&json!(0), &old["uuid"], &json!("policy_denied"))
    );
    assert_eq!(stored(&api), before);
    let entries = log_entries(&api, &h);
    assert_eq!(entries.len(), logged + 1);
    let write = entries.last().expect("an entry");
    assert_eq!(
        (
            &write["operation"],
            &write["decision"],
            &write["selected"],
            &write["stored"]
        ),
        (&json!("write"), &json!("transform"), &json!(2), &json!(1)),
        "{write}"
    );
    assert_eq!(write["policies"][0]["policy"], "retention");

    // The device sets the refused one aside and sends the other again: stored. A write the
    // chain allows as it is adds nothing to the log.
    let (status, body) = api.upload(&h, &[new]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(stored(&api), before + 1);
    assert_eq!(log_entries(&api, &h).len(), logged + 1);
}

#[test]
fn the_export_copy_keeps_what_was_stored_for_the_participant_alone() {
    let api = Api::new();
    let h = household(&api);
    let meter = &h.meters[0];
    let copy_path = "/api/household/export_copy";
    // Only the energy register, and only from now on.
    let (status, body) = api.as_device(
        &h,
        Method::Post,
        "/api/household/policies",
        Some(&json!({ "policy": "export-copy", "parameters": { "registers": ["0100010800ff"] } })),
    );
    assert_eq!(status, 201, "{body}");
    // Administrators cannot attach it for the study.
    let (status, body) = api.admin(
        Method::Post,
        "/api/management/policies",
        Some(&json!({ "policy": "export-copy", "parameters": {} })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("participant's")),
        "{body}"
    );
    let batch: Vec<Value> = (0..3)
        .map(|m| {
            measurement(
                meter,
                &recent(40 + m),
                json!([{ "0100100700ff": 5.0, "0100010800ff": 2000.0 + m as f64 }]),
            )
        })
        .collect();
    let (status, body) = api.upload(&h, &batch);
    assert_eq!(status, 200, "{body}");
    // Power-only measurements have nothing to copy.
    let (status, body) = api.upload(
        &h,
        &[measurement(
            meter,
            &recent(50),
            json!([{ "0100100700ff": 6.0 }]),
        )],
    );
    assert_eq!(status, 200, "{body}");

    let download = |query: &str| {
        let path = format!("{copy_path}{query}");
        let response = api.as_device_response(&h, Method::Get, &path, None);
        assert_eq!(
            response.status,
            200,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        (
            String::from_utf8(response.body.clone()).expect("utf-8"),
            response.header("x-wattlet-next").map(str::to_owned),
        )
    };
    let (csv, next) = download("");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "uuid,meter,measured_at,obis,value");
    assert_eq!(lines.len(), 4, "{csv}");
    for (line, m) in lines[1..].iter().zip(&batch) {
        assert_eq!(
            *line,
            format!(
                "{},{meter},{},0100010800ff,{}",
                m["uuid"].as_str().expect("uuid"),
                m["measured_at"].as_str().expect("time"),
                m["data"][0]["0100010800ff"]
            )
        );
    }
    assert_eq!(next, None);
    // A page of 2, then the rest after the second.
    let (first, next) = download("?limit=2");
    assert_eq!(first.lines().count(), 3);
    let next = next.expect("a next page");
    let (rest, _) = download(&format!("?{next}"));
    assert_eq!(rest.lines().skip(1).collect::<Vec<_>>(), lines[3..]);

    // Only the participant reads it.
    let researcher = api.mint(json!({ "role": "researcher" }));
    let (status, _) = api.with_token(&researcher, Method::Get, copy_path, None);
    assert_eq!(status, 403);
    // The participant empties it.
    let (status, body) = api.as_device(&h, Method::Delete, copy_path, None);
    assert_eq!((status, &body["deleted"]), (200, &json!(3)), "{body}");
    assert_eq!(download("").0.lines().count(), 1);
    let operations: Vec<Value> = log_entries(&api, &h)
        .iter()
        .filter(|e| e["object"] == "export_copy")
        .map(|e| e["operation"].clone())
        .collect();
    assert_eq!(
        operations[operations.len() - 2..],
        [json!("delete"), json!("read")]
    );

    // Revoking consent anonymizes the household: its copy goes with it.
    let (status, body) = api.upload(
        &h,
        &[measurement(
            meter,
            &recent(55),
            json!([{ "0100010800ff": 3000.0 }]),
        )],
    );
    assert_eq!(status, 200, "{body}");
    let copied = |api: &Api| {
        api.count(
            "SELECT COUNT(*) FROM export_copy WHERE household = ?1",
            [h.id.as_str()],
        )
    };
    assert_eq!(copied(&api), 1);
    let (status, body) = api.as_device(&h, Method::Delete, "/api/household/consent", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(copied(&api), 0);
}

#[test]
fn attachments_and_the_log_name_the_code_by_its_digest() {
    let api = Api::new();
    let h = household(&api);
    let (status, listing) = api.as_device(&h, Method::Get, "/api/household/policies", None);
    assert_eq!(status, 200, "{listing}");
    let available = listing["available"].as_array().cloned().unwrap_or_default();
    let digest_of = |name: &str| {
        available
            .iter()
            .find(|p| p["policy"] == name)
            .and_then(|p| p["digest"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{name} has no digest: {listing}"))
    };
    let retention = digest_of("retention");
    assert!(
        retention.starts_with("sha256:") && retention.len() == 71,
        "{retention}"
    );
    assert_ne!(retention, digest_of("pause-window"));

    // Attaching names the code it expects: another digest is refused, the right one kept.
    let attach = |digest: &str| {
        api.as_device(
            &h,
            Method::Post,
            "/api/household/policies",
            Some(
                &json!({ "policy": "retention", "parameters": { "months": 24 }, "digest": digest }),
            ),
        )
    };
    let other = format!("sha256:{}", "0".repeat(64));
    let refused = attach(&other);
    assert_refused(&refused, RefusalCode::Conflict);
    assert!(
        refused.1["error"]
            .as_str()
            .is_some_and(|e| e.contains(&retention)),
        "{}",
        refused.1
    );
    let (status, attached) = attach(&retention);
    assert_eq!(
        (status, &attached["digest"]),
        (201, &json!(retention)),
        "{attached}"
    );

    // Every read's log entry names the code that decided.
    rows(&own_read(&api, &h));
    let read = log_entries(&api, &h)
        .into_iter()
        .rev()
        .find(|e| e["operation"] == "read")
        .expect("a read");
    assert_eq!(read["policies"][0]["digest"], json!(retention), "{read}");
    assert_eq!(
        log_entries(&api, &h)[0]["policies"][0]["digest"],
        json!(retention)
    );
}
