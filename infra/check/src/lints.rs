//! The project's rules for its Terraform: pinned versions and lock files, replicated JetStream,
//! no plaintext secrets, every module reached by an env, and the rendered objects checked
//! against their schemas and the app's manifest (`spin.toml`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use hcl::{Body, Expression};
use regex::Regex;
use serde_json::Value as Json;

use crate::eval::{Evaluation, Rendered, RenderedAt, by_name, is_exact_version};
use crate::schema::{self, Schema};
use crate::tree::{Module, Tree, literal_str, object_key};
use crate::{Error, Finding};

/// Stream replicas and NATS servers: R3 keeps every item through the loss of one server.
pub const MIN_REPLICAS: u64 = 3;

// ---------------------------------------------------------------------------------------------
// Pinned versions

/// Every required provider has a source and an exact version, the same in every module, and
/// every module states the Terraform versions it needs.
pub fn pinned_providers(tree: &Tree) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut pins: BTreeMap<String, BTreeMap<String, Vec<PathBuf>>> = BTreeMap::new();
    for module in tree.modules.values() {
        let Some(first) = module.files.first() else {
            continue;
        };
        if module.required_version.is_none() {
            out.push(Finding::new(
                &first.path,
                "pinned-versions",
                "no terraform { required_version = ... } in this module",
            ));
        }
        for p in &module.required_providers {
            let Some(source) = &p.source else {
                out.push(Finding::new(
                    &p.file,
                    "pinned-versions",
                    format!("provider {} has no source", p.local_name),
                ));
                continue;
            };
            match &p.version {
                Some(v) if is_exact_version(v) => {
                    pins.entry(full_source(source))
                        .or_default()
                        .entry(bare(v))
                        .or_default()
                        .push(p.file.clone());
                }
                Some(v) => out.push(Finding::new(
                    &p.file,
                    "pinned-versions",
                    format!("provider {source} is pinned to {v:?}, not one exact version"),
                )),
                None => out.push(Finding::new(
                    &p.file,
                    "pinned-versions",
                    format!("provider {source} has no version"),
                )),
            }
        }
    }
    for (source, versions) in pins {
        if versions.len() > 1 {
            let list: Vec<_> = versions.keys().cloned().collect();
            let file = versions
                .values()
                .flatten()
                .next()
                .cloned()
                .unwrap_or_default();
            out.push(Finding::new(
                &file,
                "pinned-versions",
                format!("provider {source} is pinned to different versions: {list:?}"),
            ));
        }
    }
    out
}

fn bare(v: &str) -> String {
    v.trim().trim_start_matches('=').trim().to_owned()
}

fn full_source(source: &str) -> String {
    if source.matches('/').count() == 1 {
        format!("registry.terraform.io/{source}")
    } else {
        source.to_owned()
    }
}

/// The modules a root reaches through module calls (itself included).
fn reach<'a>(tree: &'a Tree, module: &'a Module, seen: &mut BTreeSet<PathBuf>) -> Vec<&'a Module> {
    let mut out = Vec::new();
    if !seen.insert(module.dir.clone()) {
        return out;
    }
    out.push(module);
    for call in &module.module_calls {
        let Some(source) = &call.source else { continue };
        let dir = crate::tree::source_dir(&module.dir, source);
        if let Some(child) = tree.modules.get(&dir) {
            out.extend(reach(tree, child, seen));
        }
    }
    out
}

/// The root modules: every module directory under `envs/`.
pub fn roots(tree: &Tree) -> Vec<&Module> {
    let envs = tree.root.join("envs");
    tree.modules
        .values()
        .filter(|m| m.dir.starts_with(&envs))
        .collect()
}

static H1: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^h1:[A-Za-z0-9+/]{43}=$").expect("a valid regex"));
static ZH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^zh:[0-9a-f]{64}$").expect("a valid regex"));

/// Every root has a `.terraform.lock.hcl` that selects exactly the pinned version of each
/// provider the root and its modules require, with hashes (`zh:` ones cover every platform).
pub fn lock_files(tree: &Tree) -> Vec<Finding> {
    let mut out = Vec::new();
    for root in roots(tree) {
        // Every pin of each provider (pins that differ are a finding of their own; the lock
        // must match each of them).
        let mut required: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in reach(tree, root, &mut BTreeSet::new()) {
            for p in &m.required_providers {
                if let (Some(s), Some(v)) = (&p.source, &p.version) {
                    required.entry(full_source(s)).or_default().insert(bare(v));
                }
            }
        }
        let Some(lock) = tree.locks.get(&root.dir) else {
            out.push(Finding::new(
                &root.dir.join(".terraform.lock.hcl"),
                "lock-file",
                "missing: `terraform init` (or `terraform providers lock`) writes it; commit it",
            ));
            continue;
        };
        let mut locked = BTreeSet::new();
        for block in lock.body.blocks().filter(|b| b.identifier() == "provider") {
            let Some(source) = block.labels().first().map(|l| l.as_str().to_owned()) else {
                continue;
            };
            locked.insert(source.clone());
            let attr = |k: &str| {
                block
                    .body()
                    .attributes()
                    .find(|a| a.key() == k)
                    .map(|a| a.expr())
            };
            let Some(want) = required.get(&source) else {
                out.push(Finding::new(
                    &lock.path,
                    "lock-file",
                    format!("{source} is locked but no module requires it"),
                ));
                continue;
            };
            let version = attr("version").and_then(literal_str);
            for want in want.iter().filter(|w| version != Some(w.as_str())) {
                out.push(Finding::new(
                    &lock.path,
                    "lock-file",
                    format!("{source} locked at {version:?}, the modules pin {want}"),
                ));
            }
            if let Some(c) = attr("constraints").and_then(literal_str)
                && let Some(want) = want.iter().find(|w| bare(c) != **w)
            {
                out.push(Finding::new(
                    &lock.path,
                    "lock-file",
                    format!("{source}: constraints {c:?} differ from the pin {want}"),
                ));
            }
            let hashes: Vec<String> = match attr("hashes") {
                Some(Expression::Array(items)) => items
                    .iter()
                    .filter_map(literal_str)
                    .map(str::to_owned)
                    .collect(),
                _ => Vec::new(),
            };
            if !hashes.iter().any(|h| ZH.is_match(h)) {
                out.push(Finding::new(
                    &lock.path,
                    "lock-file",
                    format!("{source} has no zh: hash (the registry's checksums of each platform's package)"),
                ));
            }
            for h in hashes.iter().filter(|h| !H1.is_match(h) && !ZH.is_match(h)) {
                out.push(Finding::new(
                    &lock.path,
                    "lock-file",
                    format!("{source}: {h:?} is neither an h1: nor a zh: hash"),
                ));
            }
        }
        for source in required.keys().filter(|s| !locked.contains(*s)) {
            out.push(Finding::new(
                &lock.path,
                "lock-file",
                format!("{source} is required but not locked"),
            ));
        }
    }
    out
}

/// Every module directory under `modules/` is used by some env, so the evaluation covers it.
pub fn modules_reached(tree: &Tree, reached: &BTreeSet<PathBuf>) -> Vec<Finding> {
    let modules = tree.root.join("modules");
    tree.modules
        .keys()
        .filter(|d| d.starts_with(&modules) && !reached.contains(*d))
        .map(|d| {
            Finding::new(
                d,
                "coverage",
                "no env uses this module, so nothing checks what it renders",
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Secrets

static SECRET_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(^|_)(token|tokens|password|passwd|passphrase|secret|secrets|credential|credentials|private_key|api_key|access_key|encryption_key|identity_key|signing_key|kek)($|_)",
    )
    .expect("a valid regex")
});

/// Names that refer to a Secret (or a key in one) rather than hold a secret value.
fn is_reference_name(snake: &str) -> bool {
    snake.ends_with("_name")
        || snake.ends_with("_ref")
        || matches!(
            snake,
            "existing_secret" | "user_key" | "password_key" | "secret_key_ref" | "secret_name"
        )
}

fn snake(name: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            // camelCase → camel_case; SCREAMING_CASE stays one word per part.
            if prev_lower {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c == '-' {
            out.push('_');
        } else {
            out.push(c);
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
    }
    out
}

/// Does this name say it holds a secret value?
pub fn is_secret_name(name: &str) -> bool {
    let s = snake(name);
    SECRET_NAME.is_match(&s) && !is_reference_name(&s)
}

/// Resources that put secret values into the Terraform state.
const STATEFUL_SECRETS: &[&str] = &[
    "kubernetes_secret",
    "kubernetes_secret_v1",
    "random_password",
    "tls_private_key",
];

static DETECTORS: LazyLock<Vec<(&'static str, Regex)>> = LazyLock::new(|| {
    [
        ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        ("an AWS access key id", r"\bAKIA[0-9A-Z]{16}\b"),
        ("a GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
        ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
        (
            "a JSON web token",
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}",
        ),
        // Hex of key length; digests (sha256:…) and lock-file hashes are not secrets.
        (
            "a hex key",
            r"(^|[^0-9a-fA-F:])[0-9a-fA-F]{32,}([^0-9a-fA-F]|$)",
        ),
    ]
    .into_iter()
    .map(|(what, re)| (what, Regex::new(re).expect("a valid regex")))
    .collect()
});

static BASE64ISH: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/_=-]{40,}").expect("a valid regex"));

fn entropy(s: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// What in this text looks like a credential (not where it is: the caller knows).
pub fn credential_like(text: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = DETECTORS
        .iter()
        .filter(|(_, re)| re.is_match(text))
        .map(|(what, _)| *what)
        .collect();
    let random = BASE64ISH.find_iter(text).any(|m| {
        let s = m.as_str();
        s.bytes().any(|b| b.is_ascii_digit())
            && s.bytes().any(|b| b.is_ascii_lowercase())
            && s.bytes().any(|b| b.is_ascii_uppercase())
            && entropy(s) > 4.2
    });
    if random {
        out.push("a random-looking token");
    }
    out
}

/// No secret in the repository or the state: secret-looking variables are sensitive and have
/// no default; no resource keeps secret values in state; no literal looks like a credential or
/// is assigned to a secret-looking name.
pub fn secrets(tree: &Tree) -> Vec<Finding> {
    let mut out = Vec::new();
    for module in tree.modules.values() {
        for var in module.variables.values() {
            if !is_secret_name(&var.name) {
                continue;
            }
            if !var.sensitive {
                out.push(Finding::new(
                    &var.file,
                    "secrets",
                    format!(
                        "variable {} looks like a secret but is not sensitive = true",
                        var.name
                    ),
                ));
            }
            if var.default.is_some() {
                out.push(Finding::new(
                    &var.file,
                    "secrets",
                    format!(
                        "variable {} looks like a secret and has a default; pass a Secret's name instead",
                        var.name
                    ),
                ));
            }
        }
        for r in &module.resources {
            if STATEFUL_SECRETS.contains(&r.kind.as_str()) {
                out.push(Finding::new(
                    &r.file,
                    "secrets",
                    format!(
                        "{}: its values would be stored in the Terraform state; create the Secret with kubectl and refer to it by name",
                        r.address()
                    ),
                ));
            }
            if r.body.blocks().any(|b| b.identifier() == "set_sensitive") {
                out.push(Finding::new(
                    &r.file,
                    "secrets",
                    format!(
                        "{}: set_sensitive keeps the value in the state; use an existing Secret",
                        r.address()
                    ),
                ));
            }
        }
        for file in &module.files {
            literal_secrets(&file.body, &file.path, &mut out);
            raw_secrets(&file.source, &file.path, &mut out);
        }
    }
    for file in tree.tfvars.values() {
        literal_secrets(&file.body, &file.path, &mut out);
        raw_secrets(&file.source, &file.path, &mut out);
    }
    out
}

fn raw_secrets(source: &str, path: &Path, out: &mut Vec<Finding>) {
    for (n, line) in source.lines().enumerate() {
        for what in credential_like(line) {
            out.push(Finding::new(
                path,
                "secrets",
                format!("line {}: {what} in the repository", n + 1),
            ));
        }
    }
}

fn literal_secrets(body: &Body, path: &Path, out: &mut Vec<Finding>) {
    for a in body.attributes() {
        check_assignment(a.key(), a.expr(), path, out);
    }
    for b in body.blocks() {
        literal_secrets(b.body(), path, out);
    }
}

fn check_assignment(key: &str, expr: &Expression, path: &Path, out: &mut Vec<Finding>) {
    if is_secret_name(key)
        && let Some(s) = literal_str(expr)
        && !s.is_empty()
    {
        out.push(Finding::new(
            path,
            "secrets",
            format!("{key} is given a literal value; take it from a Secret"),
        ));
    }
    // Nested objects (Helm values, manifests): the same rule for their keys.
    let mut nested = Vec::new();
    collect_objects(expr, &mut nested);
    for (k, v) in nested {
        if let Some(s) = literal_str(v)
            && is_secret_name(&k)
            && !s.is_empty()
        {
            out.push(Finding::new(
                path,
                "secrets",
                format!("{k} is given a literal value; take it from a Secret"),
            ));
        }
    }
}

fn collect_objects<'a>(expr: &'a Expression, out: &mut Vec<(String, &'a Expression)>) {
    match expr {
        Expression::Object(obj) => {
            for (k, v) in obj {
                if let Some(k) = object_key(k) {
                    out.push((k, v));
                }
                collect_objects(v, out);
            }
        }
        Expression::Array(items) => items.iter().for_each(|e| collect_objects(e, out)),
        Expression::FuncCall(f) => f.args.iter().for_each(|e| collect_objects(e, out)),
        Expression::Parenthesis(e) => collect_objects(e, out),
        Expression::Conditional(c) => {
            collect_objects(&c.true_expr, out);
            collect_objects(&c.false_expr, out);
        }
        Expression::ForExpr(f) => {
            if let Some(k) = &f.key_expr {
                collect_objects(k, out);
            }
            collect_objects(&f.value_expr, out);
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// `terraform fmt`'s line layout (see [`crate::format`]) in every `.tf` and `.tfvars` file.
pub fn formatting(tree: &Tree) -> Vec<Finding> {
    let files = tree
        .modules
        .values()
        .flat_map(|m| m.files.iter())
        .chain(tree.tfvars.values());
    let mut out = Vec::new();
    for file in files {
        for v in crate::format::check(&file.source) {
            out.push(Finding::new(
                &file.path,
                "fmt",
                format!("line {}: {}", v.line, v.message),
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the modules render

/// Checks every rendered manifest and Helm release; `spin_toml` is the app's manifest.
pub fn rendered(eval: &Evaluation, spin_toml: &Path) -> Result<Vec<Finding>, Error> {
    let mut out = Vec::new();
    let mut schemas: BTreeMap<PathBuf, Schema> = BTreeMap::new();
    let spin_vars = spin_variables(spin_toml)?;
    let (mut nats_releases, mut managers, mut apps) = (0, 0, 0);
    // Per env (`envs/NAME`): its NATS cluster size, and the stream replicas its managers ask for.
    let mut cluster_size: BTreeMap<String, u64> = BTreeMap::new();
    let mut asked: Vec<(String, u64, Finding)> = Vec::new();
    for r in &eval.rendered {
        let at = |msg: String| {
            Finding::new(
                &r.file,
                "render",
                format!("{}: {}: {msg}", r.instance, r.address),
            )
        };
        match &r.what {
            Rendered::Manifest(m) => {
                let api = m.get("apiVersion").and_then(Json::as_str).unwrap_or("");
                let kind = m.get("kind").and_then(Json::as_str).unwrap_or("");
                let Some(path) = schema::for_manifest(api, kind) else {
                    out.push(at(format!(
                        "no schema for {api} {kind} in infra/check/schemas"
                    )));
                    continue;
                };
                for v in load(&mut schemas, &path)?.violations(m) {
                    out.push(with_rule(at(format!("{api} {kind} {v}")), "schema"));
                }
                if kind == "Secret" {
                    out.push(with_rule(at("a Secret in the state".to_owned()), "secrets"));
                }
                match kind {
                    "ConfigMap" => config_map(r, m, &mut out),
                    "Deployment" => {
                        managers += deployment(r, m, &mut out);
                        for c in containers(m) {
                            let a = args(c);
                            if let Some(n) = flag(&a, "--replicas").and_then(|n| n.parse().ok()) {
                                asked.push((env_of(&r.instance), n, at(String::new())));
                            }
                        }
                    }
                    "SpinApp" => {
                        apps += 1;
                        spin_app(r, m, &spin_vars, &mut out);
                    }
                    _ => {}
                }
            }
            Rendered::Helm {
                chart,
                repository,
                version,
                values,
            } => {
                if !is_exact_version(version) {
                    out.push(with_rule(
                        at(format!(
                            "chart {chart} version {version:?} is not one exact version"
                        )),
                        "pinned-versions",
                    ));
                }
                if repository.is_empty() {
                    out.push(with_rule(
                        at(format!("chart {chart} has no repository")),
                        "pinned-versions",
                    ));
                }
                let has_values = values.as_object().is_some_and(|o| !o.is_empty());
                match schema::for_chart(chart) {
                    Some(path) => {
                        let s = load(&mut schemas, &path)?;
                        if let Some(up) = &s.upstream_version
                            && up != version
                        {
                            out.push(with_rule(
                                    at(format!(
                                        "chart {chart} is pinned to {version} but {} describes {up}: review the values against the new chart and update the schema",
                                        path.display()
                                    )),
                                    "schema",
                                ));
                        }
                        for v in s.violations(values) {
                            out.push(with_rule(at(format!("values of {chart} {v}")), "schema"));
                        }
                    }
                    None if has_values => out.push(with_rule(
                        at(format!(
                            "no schema for the values of chart {chart} in infra/check/schemas/helm"
                        )),
                        "schema",
                    )),
                    None => {}
                }
                if chart == "nats" {
                    nats_releases += 1;
                    if let Some(n) = ptr(values, "/config/cluster/replicas").and_then(Json::as_u64)
                    {
                        cluster_size.insert(env_of(&r.instance), n);
                    }
                    nats(values, &mut |m| out.push(with_rule(at(m), "replicas")));
                }
            }
        }
    }
    for (env, n, mut f) in asked {
        if let Some(&size) = cluster_size.get(&env)
            && n > size
        {
            f.rule = "replicas";
            f.message = format!(
                "{}streams of {n} replicas on a NATS cluster of {size} servers in {env}",
                f.message
            );
            out.push(f);
        }
    }
    let anywhere =
        |msg: &str| Finding::new(Path::new("infra/terraform"), "replicas", msg.to_owned());
    if nats_releases == 0 {
        out.push(anywhere("no env renders the NATS chart"));
    }
    if managers == 0 {
        out.push(anywhere(
            "no env renders a `wattlet manager nialm` Deployment",
        ));
    }
    if apps == 0 {
        out.push(with_rule(anywhere("no env renders the SpinApp"), "render"));
    }
    Ok(out)
}

/// `envs/NAME` of an instance label such as `envs/NAME/app: module.workers`.
fn env_of(instance: &str) -> String {
    let path = instance.split(':').next().unwrap_or(instance);
    path.split('/').take(2).collect::<Vec<_>>().join("/")
}

fn with_rule(mut f: Finding, rule: &'static str) -> Finding {
    f.rule = rule;
    f
}

fn load<'a>(cache: &'a mut BTreeMap<PathBuf, Schema>, path: &Path) -> Result<&'a Schema, Error> {
    if !cache.contains_key(path) {
        let s = Schema::load(path)?;
        cache.insert(path.to_path_buf(), s);
    }
    cache
        .get(path)
        .ok_or_else(|| Error::Schema(path.to_path_buf(), "not loaded".to_owned()))
}

fn ptr<'a>(v: &'a Json, pointer: &str) -> Option<&'a Json> {
    v.pointer(pointer)
}

/// A clustered JetStream with file storage on volumes and at least [`MIN_REPLICAS`] servers.
pub fn nats(values: &Json, report: &mut dyn FnMut(String)) {
    let is_true = |p: &str| ptr(values, p).and_then(Json::as_bool) == Some(true);
    if !is_true("/config/cluster/enabled") {
        report("NATS is not clustered (config.cluster.enabled)".to_owned());
    }
    match ptr(values, "/config/cluster/replicas").and_then(Json::as_u64) {
        Some(n) if n >= MIN_REPLICAS => {}
        other => report(format!(
            "NATS cluster of {other:?} servers; R3 streams need at least {MIN_REPLICAS}"
        )),
    }
    for (p, what) in [
        ("/config/jetstream/enabled", "JetStream is off"),
        (
            "/config/jetstream/fileStore/enabled",
            "JetStream has no file store",
        ),
        (
            "/config/jetstream/fileStore/pvc/enabled",
            "JetStream's file store is on no volume",
        ),
    ] {
        if !is_true(p) {
            report(format!(
                "{what} ({})",
                p.trim_start_matches('/').replace('/', ".")
            ));
        }
    }
}

fn containers(m: &Json) -> Vec<&Json> {
    ptr(m, "/spec/template/spec/containers")
        .and_then(Json::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn args(c: &Json) -> Vec<&str> {
    c.get("args")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

/// The value of `--flag N` or `--flag=N`.
pub fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == name {
            args.get(i + 1).copied()
        } else {
            a.strip_prefix(eq.as_str())
        }
    })
}

/// Deployment rules beyond the schema; returns how many `manager nialm` containers it has.
fn deployment(r: &RenderedAt, m: &Json, out: &mut Vec<Finding>) -> usize {
    let at = |rule: &'static str, msg: String| {
        Finding::new(
            &r.file,
            rule,
            format!("{}: {}: {msg}", r.instance, r.address),
        )
    };
    let selector = ptr(m, "/spec/selector/matchLabels").and_then(Json::as_object);
    let labels = ptr(m, "/spec/template/metadata/labels").and_then(Json::as_object);
    if let (Some(sel), Some(labels)) = (selector, labels) {
        for (k, v) in sel {
            if labels.get(k) != Some(v) {
                out.push(at(
                    "render",
                    format!("selector {k}={v} does not match the pod template's labels"),
                ));
            }
        }
    }
    let volumes: BTreeSet<&str> = ptr(m, "/spec/template/spec/volumes")
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(|v| v.get("name")?.as_str()).collect())
        .unwrap_or_default();
    let mut names = BTreeSet::new();
    let mut managers = 0;
    for c in containers(m) {
        let name = c.get("name").and_then(Json::as_str).unwrap_or("");
        if !names.insert(name) {
            out.push(at("render", format!("two containers named {name}")));
        }
        for mount in c
            .get("volumeMounts")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let v = mount.get("name").and_then(Json::as_str).unwrap_or("");
            if !volumes.contains(v) {
                out.push(at(
                    "render",
                    format!("container {name} mounts {v}, which is no volume"),
                ));
            }
        }
        for env in c.get("env").and_then(Json::as_array).into_iter().flatten() {
            let var = env.get("name").and_then(Json::as_str).unwrap_or("");
            if is_secret_name(var) && env.pointer("/valueFrom/secretKeyRef").is_none() {
                out.push(at(
                    "secrets",
                    format!("{var} of {name} does not come from a Secret"),
                ));
            }
        }
        let a = args(c);
        let is_manager = a.starts_with(&["manager", "nialm"]);
        if is_manager {
            managers += 1;
        }
        match (flag(&a, "--replicas"), is_manager) {
            (Some(n), _) => match n.parse::<u64>() {
                Ok(n) if n >= MIN_REPLICAS => {}
                _ => out.push(at(
                    "replicas",
                    format!("{name} creates streams with --replicas {n}; at least {MIN_REPLICAS}"),
                )),
            },
            (None, true) => out.push(at(
                "replicas",
                format!(
                    "{name} runs the manager without --replicas (its streams would have 1 replica)"
                ),
            )),
            (None, false) => {}
        }
    }
    managers
}

/// What etcd stores of one object at most; a larger dashboard cannot be a ConfigMap.
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

fn config_map(r: &RenderedAt, m: &Json, out: &mut Vec<Finding>) {
    let size: usize = m
        .get("data")
        .and_then(Json::as_object)
        .map(|d| {
            d.iter()
                .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
                .sum()
        })
        .unwrap_or(0);
    if size > MAX_CONFIG_MAP_BYTES {
        out.push(Finding::new(
            &r.file,
            "render",
            format!(
                "{}: {}: {size} bytes of data, more than a ConfigMap holds ({MAX_CONFIG_MAP_BYTES})",
                r.instance, r.address
            ),
        ));
    }
}

/// A variable of `spin.toml`'s `[variables]`.
#[derive(Debug, Clone, Default)]
pub struct SpinVariable {
    pub required: bool,
    pub secret: bool,
    pub has_default: bool,
}

/// The application variables `spin.toml` declares.
pub fn spin_variables(path: &Path) -> Result<BTreeMap<String, SpinVariable>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Read(path.to_path_buf(), e))?;
    let doc: toml::Table =
        toml::from_str(&text).map_err(|e| Error::Manifest(path.to_path_buf(), e.to_string()))?;
    let mut out = BTreeMap::new();
    if let Some(vars) = doc.get("variables").and_then(|v| v.as_table()) {
        for (name, v) in vars {
            let flag = |k: &str| v.get(k).and_then(toml::Value::as_bool).unwrap_or(false);
            out.insert(
                name.clone(),
                SpinVariable {
                    required: flag("required"),
                    secret: flag("secret"),
                    has_default: v.get("default").is_some(),
                },
            );
        }
    }
    Ok(out)
}

/// The SpinApp binds every variable the app requires, secret ones from a Secret, and no
/// variable the app does not declare; its volume mounts name its volumes.
pub fn spin_app(
    r: &RenderedAt,
    m: &Json,
    declared: &BTreeMap<String, SpinVariable>,
    out: &mut Vec<Finding>,
) {
    let at = |rule: &'static str, msg: String| {
        Finding::new(
            &r.file,
            rule,
            format!("{}: {}: {msg}", r.instance, r.address),
        )
    };
    let items: Vec<Json> = ptr(m, "/spec/variables")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let bound = by_name(&items);
    for (name, v) in declared {
        match bound.get(name) {
            None if v.required && !v.has_default => {
                out.push(at(
                    "render",
                    format!("spin.toml requires variable {name}; the SpinApp does not bind it"),
                ));
            }
            Some(b) if v.secret && b.pointer("/valueFrom/secretKeyRef").is_none() => {
                out.push(at(
                    "secrets",
                    format!("secret variable {name} is not taken from a Secret"),
                ));
            }
            _ => {}
        }
    }
    for name in bound.keys() {
        if !declared.contains_key(name) {
            out.push(at(
                "render",
                format!("variable {name} is not declared in spin.toml"),
            ));
        }
    }
    let volumes: Vec<Json> = ptr(m, "/spec/volumes")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let volumes = by_name(&volumes);
    for mount in ptr(m, "/spec/volumeMounts")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let v = mount.get("name").and_then(Json::as_str).unwrap_or("");
        if !volumes.contains_key(v) {
            out.push(at("render", format!("volume mount {v} names no volume")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised_and_references_are_not() {
        for name in [
            "admin_token",
            "client_identity_key",
            "key_encryption_key",
            "WATTLET_API_TOKEN",
            "adminPassword",
            "db_password",
            "private_key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "admin_token_secret_name",
            "existingSecret",
            "passwordKey",
            "secretKeyRef",
            "key",
            "nats_url",
            "tokenizer",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn credentials_are_detected_and_digests_are_not() {
        assert!(!credential_like("-----BEGIN EC PRIVATE KEY-----").is_empty());
        assert!(!credential_like("AKIAABCDEFGHIJKLMNOP").is_empty());
        assert!(!credential_like("key = \"0123456789abcdef0123456789abcdef\"").is_empty());
        assert!(!credential_like("t = \"Zx8Qp2Lm9Rt4Vw7Yb1Nc5Hd3Jf6Kg0Ms8Tq2Uv4Xy\"").is_empty());
        assert!(
            credential_like(
                "image@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
            )
            .is_empty()
        );
        assert!(
            credential_like("ghcr.io/spinkube/containerd-shim-spin/node-installer:v0.18.0")
                .is_empty()
        );
        assert!(credential_like("https://nats-io.github.io/k8s/helm/charts/").is_empty());
    }

    #[test]
    fn flags_are_read_in_both_forms() {
        assert_eq!(flag(&["m", "--replicas", "3"], "--replicas"), Some("3"));
        assert_eq!(flag(&["m", "--replicas=5"], "--replicas"), Some("5"));
        assert_eq!(flag(&["m", "--replicas"], "--replicas"), None);
        assert_eq!(flag(&["m"], "--replicas"), None);
    }

    #[test]
    fn nats_values_need_a_clustered_file_backed_jetstream() {
        let good = serde_json::json!({"config": {
            "cluster": {"enabled": true, "replicas": 3},
            "jetstream": {"enabled": true, "fileStore": {"enabled": true, "pvc": {"enabled": true}}}
        }});
        let mut found = Vec::new();
        nats(&good, &mut |m| found.push(m));
        assert!(found.is_empty(), "{found:?}");
        let mut bad = good.clone();
        bad["config"]["cluster"]["replicas"] = 2.into();
        bad["config"]["jetstream"]["fileStore"]["enabled"] = false.into();
        nats(&bad, &mut |m| found.push(m));
        assert_eq!(found.len(), 2, "{found:?}");
        found.clear();
        nats(&serde_json::json!({}), &mut |m| found.push(m));
        assert_eq!(found.len(), 5, "{found:?}");
    }

    #[test]
    fn only_exact_versions_pin() {
        for v in ["2.17.0", "=2.17.0", "v1.17.1", " 1.3.6 "] {
            assert!(is_exact_version(v), "{v}");
        }
        for v in [
            "~> 2.17",
            ">= 2.0.0",
            "2.17",
            "2.x",
            "latest",
            "",
            "1.3.6-rc.1",
            "1.3.6, < 2",
        ] {
            assert!(!is_exact_version(v), "{v}");
        }
    }
}
