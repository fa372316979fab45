//! The participant's pause: no one but the participant reads rows inside the pause windows.
//! A row is withheld when it overlaps a window (an aggregate covers `[at, at + span)`); a
//! request whose whole time range lies inside one window is denied.
//!
//! Stricter: more pause (`at_least_as_strict`: the windows cover every window of the other).

use serde::Deserialize;
use wattlet_policy::{Context, Decision, ObjectKind, ParamError, Policy, Role, Rows};

#[cfg(target_family = "wasm")]
mod component {
    wattlet_policy::export_policy!("pause-window-policy", pause_window, crate::PauseWindow);
}

/// At most this many windows per attachment.
pub const MAX_RANGES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    from: String,
    to: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameters {
    ranges: Vec<Window>,
}

/// The windows as `[from, to)` in ns, sorted and merged.
fn windows(text: &str) -> Result<Vec<(i64, i64)>, ParamError> {
    let p: Parameters = wattlet_policy::parse_parameters(text)?;
    if p.ranges.is_empty() || p.ranges.len() > MAX_RANGES {
        return Err(ParamError(format!(
            "ranges: 1 to {MAX_RANGES} windows required, got {}",
            p.ranges.len()
        )));
    }
    let mut out = Vec::with_capacity(p.ranges.len());
    for (i, w) in p.ranges.iter().enumerate() {
        let at = |field: &str, e: ParamError| ParamError(format!("ranges[{i}].{field}: {e}"));
        let from = wattlet_policy::parse_rfc3339(&w.from).map_err(|e| at("from", e))?;
        let to = wattlet_policy::parse_rfc3339(&w.to).map_err(|e| at("to", e))?;
        if from >= to {
            return Err(ParamError(format!("ranges[{i}]: from must be before to")));
        }
        out.push((from, to));
    }
    out.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::with_capacity(out.len());
    for (from, to) in out {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    Ok(merged)
}

pub struct PauseWindow;

impl Policy for PauseWindow {
    const NAME: &'static str = "pause-window";

    fn validate(text: &str) -> Result<(), ParamError> {
        windows(text).map(|_| ())
    }

    fn at_least_as_strict(text: &str, than: &str) -> Result<bool, ParamError> {
        let ours = windows(text)?;
        let theirs = windows(than)?;
        // Merged windows: each of theirs must lie inside one of ours.
        Ok(theirs
            .iter()
            .all(|(f, t)| ours.iter().any(|(of, ot)| of <= f && t <= ot)))
    }

    fn read(text: &str, _object: ObjectKind, context: &Context, rows: Rows) -> Decision {
        let Ok(windows) = windows(text) else {
            return Decision::Deny("invalid parameters".into());
        };
        if context.role == Role::Participant {
            return Decision::Allow;
        }
        if let (Some(from), Some(to)) = (context.range.from, context.range.to)
            && windows.iter().any(|(f, t)| *f <= from && to <= *t)
        {
            return Decision::Deny("the participant paused access to this time range".into());
        }
        let paused = |i: usize| {
            let (at, span) = (rows.at[i], rows.span[i]);
            let end = at.saturating_add(span.max(1));
            windows.iter().any(|(f, t)| at < *t && *f < end)
        };
        if !(0..rows.len()).any(paused) {
            return Decision::Allow;
        }
        Decision::Transform(rows.filter(|i| !paused(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlet_policy::TimeRange;

    const H: i64 = 3_600_000_000_000;
    /// 2026-01-01T00:00:00Z in ns.
    const JAN1: i64 = 1_767_225_600 * 1_000_000_000;
    const PAUSE: &str =
        r#"{"ranges":[{"from":"2026-01-01T02:00:00Z","to":"2026-01-01T04:00:00Z"}]}"#;

    /// One row an hour, its origin the hour.
    fn rows(hours: std::ops::Range<i64>) -> Rows {
        let mut rows = Rows::default();
        for h in hours {
            rows.push(Some(h as u32), JAN1 + h * H, 0, 1, &[]);
        }
        rows
    }

    fn context(role: Role, range: TimeRange) -> Context {
        Context {
            role,
            caveats: vec![],
            purpose: None,
            range,
            now: JAN1 + 100 * H,
            peers: None,
        }
    }

    #[test]
    fn parameters_are_checked_with_the_field() {
        assert!(PauseWindow::validate(PAUSE).is_ok());
        let e = PauseWindow::validate(r#"{"ranges":[]}"#).expect_err("empty");
        assert!(e.0.contains("ranges"), "{e}");
        let e = PauseWindow::validate(
            r#"{"ranges":[{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}]}"#,
        )
        .expect_err("backwards");
        assert!(e.0.contains("ranges[0]"), "{e}");
        let e = PauseWindow::validate(
            r#"{"ranges":[{"from":"yesterday","to":"2026-01-01T00:00:00Z"}]}"#,
        )
        .expect_err("not a time");
        assert!(e.0.contains("ranges[0].from"), "{e}");
        let many = format!(
            r#"{{"ranges":[{}]}}"#,
            vec![r#"{"from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z"}"#; 65].join(",")
        );
        assert!(PauseWindow::validate(&many).is_err());
    }

    #[test]
    fn others_miss_the_paused_rows_the_participant_sees_all() {
        let o = ObjectKind::Measurements;
        let all = TimeRange::default();
        assert_eq!(
            PauseWindow::read(PAUSE, o, &context(Role::Participant, all), rows(0..6)),
            Decision::Allow
        );
        let Decision::Transform(out) =
            PauseWindow::read(PAUSE, o, &context(Role::Researcher, all), rows(0..6))
        else {
            panic!("filtered");
        };
        assert_eq!(out.origin, [Some(0), Some(1), Some(4), Some(5)]);
        // An aggregate overlapping the window is withheld whole.
        let mut aggregate = Rows::default();
        aggregate.push(None, JAN1 + H, 2 * H, 8, &[]);
        assert_eq!(
            PauseWindow::read(PAUSE, o, &context(Role::Researcher, all), aggregate),
            Decision::Transform(Rows::default())
        );
        let inside = TimeRange {
            from: Some(JAN1 + 2 * H),
            to: Some(JAN1 + 3 * H),
        };
        assert!(matches!(
            PauseWindow::read(PAUSE, o, &context(Role::Researcher, inside), rows(2..3)),
            Decision::Deny(_)
        ));
        assert_eq!(
            PauseWindow::read(PAUSE, o, &context(Role::Researcher, all), rows(5..6)),
            Decision::Allow
        );
    }

    #[test]
    fn more_pause_is_stricter() {
        let wider = r#"{"ranges":[{"from":"2026-01-01T01:00:00Z","to":"2026-01-01T03:00:00Z"},{"from":"2026-01-01T03:00:00Z","to":"2026-01-01T05:00:00Z"}]}"#;
        assert_eq!(PauseWindow::at_least_as_strict(wider, PAUSE), Ok(true));
        assert_eq!(PauseWindow::at_least_as_strict(PAUSE, wider), Ok(false));
    }
}
