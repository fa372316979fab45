//! What operators get (`infra/grafana/dashboards`, `infra/prometheus`): promtool checks every
//! rule file and runs the alerts' unit tests, every alert has a case that fires it and one that
//! must not, every dashboard expression parses, and a real Prometheus scraping the processes of
//! `wattlet up` knows every metric a dashboard or an alert names (`cargo build -p wattlet` first
//! when running it alone; Debian's `prometheus` package gives `prometheus` and `promtool`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wattlet_testkit::prometheus::{Prometheus, ScrapeJob, promtool};

fn infra() -> PathBuf {
    wattlet_testkit::repo().join("infra")
}

/// The files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no {suffix} files in {}", dir.display());
    files
}

fn rule_files() -> Vec<PathBuf> {
    files(&infra().join("prometheus/rules"), ".rules.yml")
}

fn rule_tests() -> Vec<PathBuf> {
    files(&infra().join("prometheus/tests"), ".test.yml")
}

fn yaml(path: &Path) -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every expression of every dashboard: (dashboard file, panel title, expression), panels in
/// rows included.
fn dashboard_expressions() -> Vec<(String, String, String)> {
    fn walk(file: &str, panels: &Value, out: &mut Vec<(String, String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{file}: panel {title:?} has a target without expr"));
                out.push((file.to_owned(), title.to_owned(), expr.to_owned()));
            }
            walk(file, &panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    for path in files(&infra().join("grafana/dashboards"), ".json") {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("dashboard");
        let dashboard: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        walk(&name, &dashboard["panels"], &mut out);
    }
    out
}

/// The dashboards' expressions as one recording-rule file (JSON is YAML), so that promtool and
/// Prometheus parse them; the rule named `dashboard:<i>` is expression `i`.
fn dashboard_rule_file(dir: &Path) -> PathBuf {
    let rules: Vec<Value> = dashboard_expressions()
        .iter()
        .enumerate()
        .map(|(i, (_, _, expr))| json!({ "record": format!("dashboard:{i}"), "expr": expr }))
        .collect();
    let path = dir.join("dashboards.rules.yml");
    std::fs::write(
        &path,
        json!({ "groups": [{ "name": "dashboards", "rules": rules }] }).to_string(),
    )
    .expect("write the dashboards' rule file");
    path
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    for file in rule_files() {
        let (ok, output) = promtool([Path::new("check"), Path::new("rules"), &file]);
        assert!(ok, "promtool check rules {}:\n{output}", file.display());
    }
    for file in rule_tests() {
        let (ok, output) = promtool([Path::new("test"), Path::new("rules"), &file]);
        assert!(ok, "promtool test rules {}:\n{output}", file.display());
    }
    // The example scrape configuration names files only a deployment has: syntax only.
    let example = infra().join("prometheus/prometheus.example.yml");
    let (ok, output) = promtool([
        Path::new("check"),
        Path::new("config"),
        Path::new("--syntax-only"),
        &example,
    ]);
    assert!(ok, "promtool check config {}:\n{output}", example.display());
}

#[test]
fn every_alert_has_a_unit_test_that_fires_it_and_one_that_does_not() {
    let mut alerts = BTreeMap::new();
    for file in rule_files() {
        let rules = yaml(&file);
        for group in rules["groups"].as_sequence().into_iter().flatten() {
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let Some(alert) = rule["alert"].as_str() else {
                    continue;
                };
                assert!(
                    rule["for"].as_str().is_some(),
                    "{alert}: no `for:` (a blip would page)"
                );
                assert!(
                    ["critical", "warning"]
                        .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                    "{alert}: severity label critical or warning"
                );
                for annotation in ["summary", "description"] {
                    assert!(
                        rule["annotations"][annotation]
                            .as_str()
                            .is_some_and(|text| !text.trim().is_empty()),
                        "{alert}: no {annotation} annotation for the operator"
                    );
                }
                alerts.insert(alert.to_owned(), (false, false));
            }
        }
    }
    assert!(!alerts.is_empty(), "no alerts found");
    for file in rule_tests() {
        let tests = yaml(&file);
        for test in tests["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or("");
                let fires = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|expected| !expected.is_empty());
                let entry = alerts.get_mut(name).unwrap_or_else(|| {
                    panic!("{}: a test of an unknown alert {name}", file.display())
                });
                if fires {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
            }
        }
    }
    let untested: Vec<String> = alerts
        .iter()
        .filter(|(_, cases)| !(cases.0 && cases.1))
        .map(|(alert, (fires, quiet))| {
            format!("{alert} (firing case: {fires}, quiet case: {quiet})")
        })
        .collect();
    assert!(
        untested.is_empty(),
        "alerts without a unit test that fires them and one that must not: {untested:?}"
    );
}

#[test]
fn every_dashboard_expression_parses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dashboard_rule_file(dir.path());
    let (ok, output) = promtool([Path::new("check"), Path::new("rules"), &file]);
    if !ok {
        let expressions = dashboard_expressions();
        panic!(
            "promtool check rules on the dashboards' expressions:\n{output}\nthe expressions \
             (dashboard:<i>):\n{}",
            expressions
                .iter()
                .enumerate()
                .map(|(i, (file, title, expr))| format!("{i}: {file} {title:?}: {expr}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// The metric names a PromQL expression selects. A lexer, not a parser: the expressions have
/// been parsed by promtool and Prometheus already; this finds the identifiers that are neither
/// functions, aggregations, keywords, label names nor inside strings, matchers or ranges.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 11] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const AGGREGATIONS: [&str; 12] = [
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LABEL_LISTS: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Skips from an opening `open` at `i` to after its `close`, over strings.
    let skip_to = |mut i: usize, close: char| {
        let mut quote = None;
        i += 1;
        while i < chars.len() {
            let c = chars[i];
            match quote {
                Some(_) if c == '\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == close => return i + 1,
                None => {}
            }
            i += 1;
        }
        i
    };
    let next_non_space = |mut i: usize| {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        i
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            // A string: skip it whole (as a matcher's value would be).
            i = skip_to(i, c);
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c.is_ascii_digit() {
            // Numbers and durations (`0.99`, `1e3`, `15m`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            let called = after < chars.len() && chars[after] == '(';
            if LABEL_LISTS.contains(&word.as_str()) && called {
                i = skip_to(after, ')');
            } else if !(called
                || KEYWORDS.contains(&word.as_str())
                || AGGREGATIONS.contains(&word.as_str()))
            {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let names = |expr: &str| metric_names(expr).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (job, le) (rate(a_bucket{x="}by(",le=~"1.*"}[5m]))) > 1"#
        ),
        ["a_bucket"]
    );
    assert_eq!(
        names(
            "sum by (job) (increase(b_total{outcome=\"failed\"}[1h])) > 0 unless on (job) \
             sum without (le) (c) or (d unless d offset 15m) and bool e"
        ),
        ["b_total", "c", "d", "e"]
    );
    assert_eq!(names("time() - (f > 0) * 1e3"), ["f"]);
    assert_eq!(names("up{job=~'wattlet-.*'} == 0"), ["up"]);
}

/// The names a family of this type exposes as samples (OpenMetrics: counters as `_total`).
fn sample_names(family: &str, kind: &str) -> Vec<String> {
    let suffixes: &[&str] = match kind {
        "counter" => &["_total", "_created"],
        "histogram" | "gaugehistogram" => &["_bucket", "_count", "_sum", "_created"],
        "summary" => &["", "_count", "_sum", "_created"],
        _ => &[""],
    };
    suffixes.iter().map(|s| format!("{family}{s}")).collect()
}

/// `wattlet up` as a child process, stopped with SIGTERM when dropped.
struct Up {
    _child: wattlet_testkit::Stopped,
    state: tempfile::TempDir,
}

/// The address in a `Metrics    http(s)://ADDR/...` line.
fn address(line: &str) -> SocketAddr {
    line.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
}

#[test]
fn dashboards_and_alerts_name_only_metrics_wattlet_exports() {
    let started = Instant::now();
    let state = tempfile::tempdir().expect("temp dir");
    let (child, rx) = wattlet_testkit::start_up(
        wattlet_testkit::command(
            &wattlet_testkit::serve_child::workspace_binary("wattlet").to_string_lossy(),
        ),
        state.path(),
        wattlet_testkit::free_port(),
    );
    let up = Up {
        _child: wattlet_testkit::Stopped(child),
        state,
    };
    // The metrics lines come before `Measuring every …`.
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180) * wattlet_testkit::patience();
    while !lines
        .iter()
        .any(|l: &String| l.starts_with("Measuring every"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!(
                "wattlet up did not start; it printed:\n{}",
                lines.join("\n")
            ),
        }
    }
    let state = up.state.path();
    let mut jobs = Vec::new();
    for line in lines.iter().filter(|l| l.starts_with("Metrics ")) {
        let addr = address(line);
        if line.ends_with("(the cloud host)") {
            jobs.push(ScrapeJob::plain("wattlet-serve", addr));
        } else if line.contains("(device ") {
            jobs.push(ScrapeJob::plain("wattlet-edge", addr));
        } else if line.ends_with("(NIALM worker)") {
            jobs.push(ScrapeJob::plain("wattlet-nialm-worker", addr));
        } else if line.contains("/api/management/metrics") {
            for (name, path) in [
                ("wattlet-data-api", "/api/management/metrics"),
                ("wattlet-key-broker", "/kbs/v0/metrics"),
            ] {
                jobs.push(ScrapeJob {
                    name: name.to_owned(),
                    target: addr,
                    path: path.to_owned(),
                    ca: Some(state.join("ca/ca.crt")),
                    bearer_file: Some(state.join("admin-token")),
                });
            }
        } else {
            panic!("a metrics line this test does not know: {line}");
        }
    }
    let kinds: BTreeSet<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        kinds.len(),
        5,
        "wattlet up names the metrics of each kind of process: {}",
        lines.join("\n")
    );

    // The DEBS stream worker, which `wattlet up` does not run: on a nats-server of its own,
    // waiting for a run's input; its metrics are exported from the start.
    let nats_dir = tempfile::tempdir().expect("temp dir");
    let nats = wattlet_testkit::nats(nats_dir.path());
    let stream_metrics = wattlet_testkit::free_port();
    let _stream_worker = wattlet_testkit::Stopped(
        wattlet_testkit::command(
            &wattlet_testkit::serve_child::workspace_binary("wattlet").to_string_lossy(),
        )
        .args([
            "worker",
            "stream",
            "--operators",
            "native",
            "--id",
            "operations",
        ])
        .args([
            "--nats",
            &nats.url,
            "--metrics-listen",
            &stream_metrics.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("wattlet worker stream starts"),
    );
    jobs.push(ScrapeJob::plain("wattlet-stream-worker", stream_metrics));

    // The real server loads the alert rules and the dashboards' expressions (it refuses to
    // start when one does not parse) and scrapes every process until each answered.
    let rules_dir = tempfile::tempdir().expect("temp dir");
    let mut loaded = rule_files();
    loaded.push(dashboard_rule_file(rules_dir.path()));
    let prometheus = Prometheus::start(&jobs, &loaded);
    prometheus.wait_all_up(jobs.len(), Duration::from_secs(120));

    // What the processes export: every sample name Prometheus stored, and every family from the
    // `# TYPE` lines (metadata), since a labelled family with no series yet has no sample.
    let mut exported: BTreeSet<String> = prometheus
        .api("label/__name__/values")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    let metadata = prometheus.api("metadata");
    for (family, entries) in metadata.as_object().into_iter().flatten() {
        for entry in entries.as_array().into_iter().flatten() {
            exported.extend(sample_names(family, entry["type"].as_str().unwrap_or("")));
        }
    }
    for family in [
        "wattlet_http_requests_total",
        "wattlet_edge_uploads_total",
        "wattlet_nialm_worker_items_total",
        "wattlet_api_devices",
        "wattlet_kbs_attestations_total",
        "wattlet_stream_worker_events_total",
    ] {
        assert!(
            exported.contains(family),
            "{family} is not exported: {exported:?}"
        );
    }

    // Every expression as Prometheus parsed it: the alert rules and the dashboards'.
    let expressions = dashboard_expressions();
    let mut missing = Vec::new();
    let mut checked = 0;
    for group in prometheus.api("rules")["groups"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let query = rule["query"].as_str().expect("a rule's query");
            let name = rule["name"].as_str().unwrap_or("?");
            let place = match name
                .strip_prefix("dashboard:")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| expressions.get(i))
            {
                Some((file, title, _)) => format!("dashboard {file}, panel {title:?}"),
                None => format!("alert {name}"),
            };
            let names = metric_names(query);
            assert!(!names.is_empty(), "{place}: no metric found in {query}");
            for metric in names {
                if !exported.contains(&metric) {
                    missing.push(format!("{place}: {metric}"));
                }
            }
            checked += 1;
        }
    }
    let alert_rules: usize = rule_files()
        .iter()
        .flat_map(|file| {
            yaml(file)["groups"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .map(|group| group["rules"].as_sequence().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        checked,
        expressions.len() + alert_rules,
        "Prometheus loaded every rule and every dashboard expression"
    );
    assert!(
        missing.is_empty(),
        "metrics no wattlet process exports (of {} it does):\n{}",
        exported.len(),
        missing.join("\n")
    );
    eprintln!(
        "{checked} expressions checked against {} exported names from {} targets in {:.1} s",
        exported.len(),
        jobs.len(),
        started.elapsed().as_secs_f64()
    );
    drop(prometheus);
    drop(up);
}
