//! Offline evaluation of what the modules render: Kubernetes manifests (`kubernetes_manifest`)
//! and Helm values (`helm_release`), from each env's variables, its example `.tfvars`, and the
//! arguments it passes to the modules.
//!
//! Expressions are evaluated with hcl-rs and the subset of Terraform's functions the modules use
//! (below). `yamlencode` returns its argument, so a release's values are checked as the object
//! they encode. Whatever needs the cluster or a provider (data sources, resource attributes) is
//! not known offline; a manifest or value that depends on it is a finding, unless its resource is
//! listed in [`NOT_RENDERED_OFFLINE`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl::eval::{Context, Evaluate, FuncArgs, FuncDef, ParamType};
use hcl::{Expression, Map, Value};

use crate::Finding;
use crate::tree::{Module, Resource, Tree};

/// Resources whose content exists only at plan time, and why.
pub const NOT_RENDERED_OFFLINE: &[(&str, &str)] = &[(
    "kubernetes_manifest.spin_operator_crds",
    "spin-operator's own CRDs, fetched from the pinned release when planning",
)];

/// What a module instance renders.
#[derive(Debug, Clone)]
pub enum Rendered {
    Manifest(serde_json::Value),
    Helm {
        chart: String,
        repository: String,
        version: String,
        values: serde_json::Value,
    },
}

/// One rendered object, with where it came from.
#[derive(Debug, Clone)]
pub struct RenderedAt {
    /// The module instance, e.g. `envs/survey-small/app: module.workers`.
    pub instance: String,
    /// The resource address with its instance key, e.g. `kubernetes_manifest.deployment["manager"]`.
    pub address: String,
    pub file: PathBuf,
    pub what: Rendered,
}

/// Everything the envs render, the module directories they reach, and what could not be evaluated.
#[derive(Debug, Default)]
pub struct Evaluation {
    pub rendered: Vec<RenderedAt>,
    pub reached: BTreeSet<PathBuf>,
    pub findings: Vec<Finding>,
}

/// Evaluates every root module (each directory under `envs/`).
pub fn evaluate(tree: &Tree) -> Evaluation {
    let mut out = Evaluation::default();
    let envs = tree.root.join("envs");
    for (dir, module) in &tree.modules {
        if !dir.starts_with(&envs) {
            continue;
        }
        let inputs = tfvars(tree, dir, &mut out.findings);
        let label = rel(&tree.root, dir);
        instance(tree, module, &label, inputs, &mut out, 0);
    }
    out
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The values of an env's example variables file (`terraform.tfvars.example` or `.tfvars`).
fn tfvars(tree: &Tree, dir: &Path, findings: &mut Vec<Finding>) -> Map<String, Value> {
    let mut values = Map::new();
    if let Some(file) = tree.tfvars.get(dir) {
        let ctx = context(dir);
        for a in file.body.attributes() {
            match a.expr().evaluate(&ctx) {
                Ok(v) => {
                    values.insert(a.key().to_owned(), v);
                }
                Err(e) => findings.push(Finding::new(&file.path, "evaluate", e.to_string())),
            }
        }
    }
    values
}

/// A value standing for a variable nobody set, by its declared type.
fn placeholder(ty: Option<&Expression>) -> Value {
    let name = match ty {
        Some(Expression::Variable(v)) => v.to_string(),
        Some(Expression::FuncCall(f)) => f.name.name.to_string(),
        _ => "string".to_owned(),
    };
    match name.as_str() {
        "number" => Value::from(1),
        "bool" => Value::Bool(false),
        "map" | "object" => Value::Object(Map::new()),
        "list" | "set" | "tuple" => Value::Array(Vec::new()),
        _ => Value::from("placeholder"),
    }
}

fn instance(
    tree: &Tree,
    module: &Module,
    label: &str,
    inputs: Map<String, Value>,
    out: &mut Evaluation,
    depth: usize,
) -> Map<String, Value> {
    out.reached.insert(module.dir.clone());
    let mut vars = Map::new();
    for (name, var) in &module.variables {
        let value = match inputs.get(name) {
            Some(v) => v.clone(),
            None => match &var.default {
                Some(default) => match default.evaluate(&context(&module.dir)) {
                    Ok(v) => v,
                    Err(e) => {
                        out.findings
                            .push(Finding::new(&var.file, "evaluate", e.to_string()));
                        placeholder(var.ty.as_ref())
                    }
                },
                None => placeholder(var.ty.as_ref()),
            },
        };
        vars.insert(name.clone(), value);
    }
    for name in inputs.keys() {
        if !module.variables.contains_key(name) {
            out.findings.push(Finding::new(
                &module.dir,
                "evaluate",
                format!("{label}: argument {name} is not a variable of the module"),
            ));
        }
    }

    let mut scope = Scope {
        dir: module.dir.clone(),
        vars: Value::Object(vars),
        locals: Map::new(),
        modules: Map::new(),
    };

    // Module calls may use each other's outputs: evaluate them as their arguments become known.
    let mut pending: Vec<_> = module.module_calls.iter().collect();
    while !pending.is_empty() {
        let mut progress = false;
        let mut errors = Vec::new();
        let mut still = Vec::new();
        // Locals may depend on modules and modules on locals.
        resolve_locals(module, &mut scope, &mut Vec::new());
        for call in pending {
            let ctx = scope.context();
            let mut args = Map::new();
            let mut failed = None;
            for (k, expr) in &call.args {
                match expr.evaluate(&ctx) {
                    Ok(v) => {
                        args.insert(k.clone(), v);
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            match failed {
                Some(e) => {
                    errors.push((call, e));
                    still.push(call);
                }
                None => {
                    progress = true;
                    let child_label = format!("{label}: module.{}", call.name);
                    let child = call
                        .source
                        .as_deref()
                        .map(|s| crate::tree::source_dir(&module.dir, s))
                        .and_then(|d| tree.modules.get(&d));
                    match child {
                        Some(child) if depth < 8 => {
                            let outputs = instance(tree, child, &child_label, args, out, depth + 1);
                            scope
                                .modules
                                .insert(call.name.clone(), Value::Object(outputs));
                        }
                        _ => out.findings.push(Finding::new(
                            &call.file,
                            "evaluate",
                            format!(
                                "{child_label}: source {:?} is no module of this tree",
                                call.source
                            ),
                        )),
                    }
                }
            }
        }
        if !progress {
            for (call, e) in errors {
                out.findings.push(Finding::new(
                    &call.file,
                    "evaluate",
                    format!("{label}: module.{}: {e}", call.name),
                ));
            }
            break;
        }
        pending = still;
    }

    let mut unresolved = Vec::new();
    resolve_locals(module, &mut scope, &mut unresolved);
    for (name, e) in unresolved {
        out.findings.push(Finding::new(
            &module.dir,
            "evaluate",
            format!("{label}: local.{name} cannot be evaluated offline: {e}"),
        ));
    }

    for resource in &module.resources {
        render(resource, &scope, label, out);
    }

    let ctx = scope.context();
    let mut outputs = Map::new();
    for (name, expr) in &module.outputs {
        match expr.evaluate(&ctx) {
            Ok(v) => {
                outputs.insert(name.clone(), v);
            }
            Err(e) => out.findings.push(Finding::new(
                &module.dir,
                "evaluate",
                format!("{label}: output {name}: {e}"),
            )),
        }
    }
    outputs
}

struct Scope {
    dir: PathBuf,
    vars: Value,
    locals: Map<String, Value>,
    modules: Map<String, Value>,
}

impl Scope {
    fn context(&self) -> Context<'static> {
        let mut ctx = context(&self.dir);
        ctx.declare_var("var", self.vars.clone());
        ctx.declare_var("local", Value::Object(self.locals.clone()));
        ctx.declare_var("module", Value::Object(self.modules.clone()));
        ctx
    }
}

/// Evaluates the locals that can be, in dependency order; the rest are returned with the error.
fn resolve_locals(module: &Module, scope: &mut Scope, unresolved: &mut Vec<(String, String)>) {
    loop {
        let mut progress = false;
        unresolved.clear();
        for (name, expr) in &module.locals {
            if scope.locals.contains_key(name) {
                continue;
            }
            match expr.evaluate(&scope.context()) {
                Ok(v) => {
                    scope.locals.insert(name.clone(), v);
                    progress = true;
                }
                Err(e) => unresolved.push((name.clone(), e.to_string())),
            }
        }
        if !progress {
            return;
        }
    }
}

fn attr<'a>(resource: &'a Resource, key: &str) -> Option<&'a Expression> {
    resource
        .body
        .attributes()
        .find(|a| a.key() == key)
        .map(|a| a.expr())
}

/// One instance of a resource: its address suffix, `each.key` and `each.value`, `count.index`.
type Instance = (String, Option<(Value, Value)>, Option<u64>);

/// The instances of a resource.
fn instances(resource: &Resource, ctx: &Context) -> Result<Vec<Instance>, String> {
    if let Some(expr) = attr(resource, "for_each") {
        let value = expr.evaluate(ctx).map_err(|e| e.to_string())?;
        return match value {
            Value::Object(map) => Ok(map
                .into_iter()
                .map(|(k, v)| (format!("[{k:?}]"), Some((Value::from(k), v)), None))
                .collect()),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok((
                        format!("[{s:?}]"),
                        Some((Value::from(s.clone()), Value::from(s))),
                        None,
                    )),
                    other => Err(format!("for_each over a set of non-strings ({other})")),
                })
                .collect(),
            other => Err(format!("for_each is neither a map nor a set ({other})")),
        };
    }
    if let Some(expr) = attr(resource, "count") {
        let value = expr.evaluate(ctx).map_err(|e| e.to_string())?;
        let n = value
            .as_u64()
            .ok_or_else(|| format!("count is not a whole number ({value})"))?;
        // A release turned off by default is still checked: its values must be right when on.
        let n = if resource.kind == "helm_release" {
            n.max(1)
        } else {
            n
        };
        return Ok((0..n).map(|i| (format!("[{i}]"), None, Some(i))).collect());
    }
    Ok(vec![(String::new(), None, None)])
}

fn render(resource: &Resource, scope: &Scope, label: &str, out: &mut Evaluation) {
    if resource.mode != "resource"
        || !matches!(
            resource.kind.as_str(),
            "kubernetes_manifest" | "helm_release" | "kubernetes_config_map_v1"
        )
    {
        return;
    }
    let address = resource.address();
    if NOT_RENDERED_OFFLINE.iter().any(|(a, _)| *a == address) {
        return;
    }
    let base = scope.context();
    let list = match instances(resource, &base) {
        Ok(list) => list,
        Err(e) => {
            out.findings.push(Finding::new(
                &resource.file,
                "evaluate",
                format!("{label}: {address}: {e}"),
            ));
            return;
        }
    };
    for (suffix, each, index) in list {
        let mut ctx = scope.context();
        if let Some((key, value)) = each {
            let mut m = Map::new();
            m.insert("key".to_owned(), key);
            m.insert("value".to_owned(), value);
            ctx.declare_var("each", Value::Object(m));
        }
        if let Some(i) = index {
            let mut m = Map::new();
            m.insert("index".to_owned(), Value::from(i));
            ctx.declare_var("count", Value::Object(m));
        }
        let at = format!("{address}{suffix}");
        let what = match resource.kind.as_str() {
            "kubernetes_manifest" => render_manifest(resource, &ctx),
            "kubernetes_config_map_v1" => render_config_map(resource, &ctx),
            _ => render_helm(resource, &ctx),
        };
        match what {
            Ok(what) => out.rendered.push(RenderedAt {
                instance: label.to_owned(),
                address: at,
                file: resource.file.clone(),
                what,
            }),
            Err(e) => out.findings.push(Finding::new(
                &resource.file,
                "evaluate",
                format!("{label}: {at}: {e}"),
            )),
        }
    }
}

fn to_json(value: &Value) -> Result<serde_json::Value, String> {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

fn render_manifest(resource: &Resource, ctx: &Context) -> Result<Rendered, String> {
    let expr = attr(resource, "manifest").ok_or("no manifest attribute")?;
    let value = expr.evaluate(ctx).map_err(|e| e.to_string())?;
    Ok(Rendered::Manifest(to_json(&value)?))
}

/// A typed ConfigMap as the manifest it creates, so it is checked like one.
fn render_config_map(resource: &Resource, ctx: &Context) -> Result<Rendered, String> {
    let mut metadata = Map::new();
    for block in resource
        .body
        .blocks()
        .filter(|b| b.identifier() == "metadata")
    {
        for a in block.body().attributes() {
            let v = a.expr().evaluate(ctx).map_err(|e| e.to_string())?;
            metadata.insert(a.key().to_owned(), v);
        }
    }
    let mut manifest = Map::new();
    manifest.insert("apiVersion".to_owned(), Value::from("v1"));
    manifest.insert("kind".to_owned(), Value::from("ConfigMap"));
    manifest.insert("metadata".to_owned(), Value::Object(metadata));
    if let Some(expr) = attr(resource, "data") {
        let data = expr.evaluate(ctx).map_err(|e| e.to_string())?;
        manifest.insert("data".to_owned(), data);
    }
    Ok(Rendered::Manifest(to_json(&Value::Object(manifest))?))
}

fn render_helm(resource: &Resource, ctx: &Context) -> Result<Rendered, String> {
    let string = |key: &str| -> Result<String, String> {
        let expr = attr(resource, key).ok_or_else(|| format!("no {key}"))?;
        match expr.evaluate(ctx).map_err(|e| e.to_string())? {
            Value::String(s) => Ok(s),
            other => Err(format!("{key} is not a string ({other})")),
        }
    };
    let chart = string("chart")?;
    let repository = string("repository").unwrap_or_default();
    let version = string("version").unwrap_or_default();
    let mut values = serde_json::Value::Object(serde_json::Map::new());
    if let Some(expr) = attr(resource, "values") {
        let Value::Array(docs) = expr.evaluate(ctx).map_err(|e| e.to_string())? else {
            return Err("values is not a list".to_owned());
        };
        for doc in docs {
            let doc = match doc {
                // A YAML document (file() or a literal): parse it like Helm would.
                Value::String(s) => serde_norway::from_str::<serde_json::Value>(&s)
                    .map_err(|e| format!("values document is no YAML: {e}"))?,
                other => to_json(&other)?,
            };
            merge(&mut values, doc);
        }
    }
    for block in resource.body.blocks().filter(|b| b.identifier() == "set") {
        let get = |k: &str| {
            block
                .body()
                .attributes()
                .find(|a| a.key() == k)
                .map(|a| a.expr().evaluate(ctx))
        };
        let (Some(Ok(Value::String(name))), Some(Ok(value))) = (get("name"), get("value")) else {
            return Err("a set block without a string name and a value".to_owned());
        };
        let mut nested = to_json(&value)?;
        for part in name.rsplit('.') {
            let mut m = serde_json::Map::new();
            m.insert(part.to_owned(), nested);
            nested = serde_json::Value::Object(m);
        }
        merge(&mut values, nested);
    }
    Ok(Rendered::Helm {
        chart,
        repository,
        version,
        values,
    })
}

/// Helm's merge of values files: objects merge key by key, anything else replaces.
fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

/// A context with `path` and the supported functions.
fn context(dir: &Path) -> Context<'static> {
    let mut ctx = Context::new();
    let mut path = Map::new();
    let dir = dir.display().to_string();
    path.insert("module".to_owned(), Value::from(dir.clone()));
    path.insert("root".to_owned(), Value::from(dir.clone()));
    path.insert("cwd".to_owned(), Value::from(dir));
    ctx.declare_var("path", Value::Object(path));
    for (name, def) in functions() {
        ctx.declare_func(name, def);
    }
    ctx
}

fn functions() -> Vec<(&'static str, FuncDef)> {
    use ParamType::{Any, String as Str};
    let one = |p: ParamType, f: hcl::eval::Func| FuncDef::builder().param(p).build(f);
    vec![
        ("yamlencode", one(Any, identity)),
        ("jsonencode", one(Any, identity)),
        ("tolist", one(Any, identity)),
        ("toset", one(Any, identity)),
        ("tomap", one(Any, identity)),
        ("yamldecode", one(Str, yamldecode)),
        ("jsondecode", one(Str, yamldecode)),
        ("file", one(Str, file)),
        (
            "fileset",
            FuncDef::builder().params([Str, Str]).build(fileset),
        ),
        ("lower", one(Str, lower)),
        ("upper", one(Str, upper)),
        (
            "replace",
            FuncDef::builder().params([Str, Str, Str]).build(replace),
        ),
        (
            "trimsuffix",
            FuncDef::builder().params([Str, Str]).build(trimsuffix),
        ),
        (
            "trimprefix",
            FuncDef::builder().params([Str, Str]).build(trimprefix),
        ),
        (
            "concat",
            FuncDef::builder().variadic_param(Any).build(concat),
        ),
        (
            "merge",
            FuncDef::builder().variadic_param(Any).build(merge_fn),
        ),
        ("tostring", one(Any, tostring)),
        ("tonumber", one(Any, tonumber)),
        ("sort", one(Any, sort)),
        ("keys", one(Any, keys)),
        ("length", one(Any, length)),
        (
            "contains",
            FuncDef::builder().params([Any, Any]).build(contains),
        ),
        (
            "lookup",
            FuncDef::builder().params([Any, Str, Any]).build(lookup),
        ),
    ]
}

fn arg_str(args: &FuncArgs, i: usize) -> Result<String, String> {
    args.get(i)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("argument {} is not a string", i + 1))
}

fn identity(args: FuncArgs) -> Result<Value, String> {
    args.into_values()
        .into_iter()
        .next()
        .ok_or_else(|| "no argument".to_owned())
}

fn yamldecode(args: FuncArgs) -> Result<Value, String> {
    let text = arg_str(&args, 0)?;
    let json: serde_json::Value = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    serde_json::from_value(json).map_err(|e| e.to_string())
}

fn file(args: FuncArgs) -> Result<Value, String> {
    let path = arg_str(&args, 0)?;
    std::fs::read_to_string(&path)
        .map(Value::from)
        .map_err(|e| format!("{path}: {e}"))
}

/// `fileset(dir, "*.ext")`: one directory level, `*` as the only wildcard (what the modules use).
fn fileset(args: FuncArgs) -> Result<Value, String> {
    let dir = arg_str(&args, 0)?;
    let pattern = arg_str(&args, 1)?;
    if pattern.contains('/') || pattern.contains("**") || pattern.matches('*').count() > 1 {
        return Err(format!(
            "fileset pattern {pattern:?} is beyond the offline evaluator"
        ));
    }
    let (prefix, suffix) = pattern.split_once('*').unwrap_or((pattern.as_str(), ""));
    let mut names = Vec::new();
    // A directory that does not exist yet gives the empty set, as in Terraform.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                let matches = if pattern.contains('*') {
                    name.len() >= prefix.len() + suffix.len()
                        && name.starts_with(prefix)
                        && name.ends_with(suffix)
                } else {
                    name == pattern
                };
                if matches {
                    names.push(name.to_owned());
                }
            }
        }
    }
    names.sort();
    Ok(Value::Array(names.into_iter().map(Value::from).collect()))
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(arg_str(&args, 0)?.to_lowercase()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(arg_str(&args, 0)?.to_uppercase()))
}

/// Terraform's `replace`: a substring wrapped in slashes is a regular expression.
fn replace(args: FuncArgs) -> Result<Value, String> {
    let (s, from, to) = (arg_str(&args, 0)?, arg_str(&args, 1)?, arg_str(&args, 2)?);
    if from.len() >= 2 && from.starts_with('/') && from.ends_with('/') {
        let re = regex::Regex::new(&from[1..from.len() - 1]).map_err(|e| e.to_string())?;
        Ok(Value::from(re.replace_all(&s, to.as_str()).into_owned()))
    } else {
        Ok(Value::from(s.replace(&from, &to)))
    }
}

fn trimsuffix(args: FuncArgs) -> Result<Value, String> {
    let (s, suffix) = (arg_str(&args, 0)?, arg_str(&args, 1)?);
    Ok(Value::from(
        s.strip_suffix(suffix.as_str()).unwrap_or(&s).to_owned(),
    ))
}

fn trimprefix(args: FuncArgs) -> Result<Value, String> {
    let (s, prefix) = (arg_str(&args, 0)?, arg_str(&args, 1)?);
    Ok(Value::from(
        s.strip_prefix(prefix.as_str()).unwrap_or(&s).to_owned(),
    ))
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for v in args.into_values() {
        match v {
            Value::Array(items) => out.extend(items),
            other => return Err(format!("concat of a non-list ({other})")),
        }
    }
    Ok(Value::Array(out))
}

fn merge_fn(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for v in args.into_values() {
        match v {
            Value::Object(m) => out.extend(m),
            Value::Null => {}
            other => return Err(format!("merge of a non-object ({other})")),
        }
    }
    Ok(Value::Object(out))
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    match args.into_values().into_iter().next() {
        Some(Value::String(s)) => Ok(Value::from(s)),
        Some(Value::Number(n)) => Ok(Value::from(n.to_string())),
        Some(Value::Bool(b)) => Ok(Value::from(b.to_string())),
        Some(Value::Null) => Ok(Value::Null),
        other => Err(format!("tostring of {other:?}")),
    }
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    match args.into_values().into_iter().next() {
        Some(Value::Number(n)) => Ok(Value::Number(n)),
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| s.parse::<f64>().map(Value::from))
            .map_err(|e| e.to_string()),
        other => Err(format!("tonumber of {other:?}")),
    }
}

fn sort(args: FuncArgs) -> Result<Value, String> {
    let Some(Value::Array(items)) = args.into_values().into_iter().next() else {
        return Err("sort of a non-list".to_owned());
    };
    let mut strings = items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            other => Err(format!("sort of a non-string ({other})")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    strings.sort();
    Ok(Value::Array(strings.into_iter().map(Value::from).collect()))
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    let Some(Value::Object(m)) = args.into_values().into_iter().next() else {
        return Err("keys of a non-object".to_owned());
    };
    let mut k: Vec<String> = m.keys().cloned().collect();
    k.sort();
    Ok(Value::Array(k.into_iter().map(Value::from).collect()))
}

fn length(args: FuncArgs) -> Result<Value, String> {
    match args.into_values().into_iter().next() {
        Some(Value::Array(a)) => Ok(Value::from(a.len())),
        Some(Value::Object(m)) => Ok(Value::from(m.len())),
        Some(Value::String(s)) => Ok(Value::from(s.chars().count())),
        other => Err(format!("length of {other:?}")),
    }
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    let values = args.into_values();
    match values.as_slice() {
        [Value::Array(items), needle] => Ok(Value::Bool(items.contains(needle))),
        _ => Err("contains(list, value)".to_owned()),
    }
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    let values = args.into_values();
    match values.as_slice() {
        [Value::Object(m), Value::String(k), default] => {
            Ok(m.get(k).cloned().unwrap_or_else(|| default.clone()))
        }
        _ => Err("lookup(map, key, default)".to_owned()),
    }
}

/// A literal `version` of a required provider or chart pins exactly when it names one release.
pub fn is_exact_version(v: &str) -> bool {
    let v = v.trim().trim_start_matches('=').trim();
    let v = v.strip_prefix('v').unwrap_or(v);
    let mut parts = v.split('.');
    let core_ok = (0..3).all(|_| {
        parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    core_ok && parts.next().is_none()
}

/// Objects keyed by name, for lookups in rendered JSON.
pub fn by_name(items: &[serde_json::Value]) -> BTreeMap<String, &serde_json::Value> {
    items
        .iter()
        .filter_map(|i| Some((i.get("name")?.as_str()?.to_owned(), i)))
        .collect()
}
