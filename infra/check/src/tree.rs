//! Loading a Terraform tree: every `.tf`, `.tfvars` and lock file parsed, and the declarations
//! of each module directory collected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hcl::{Body, Expression};

use crate::{Error, Finding};

/// One parsed HCL file.
#[derive(Debug, Clone)]
pub struct HclFile {
    pub path: PathBuf,
    pub source: String,
    pub body: Body,
}

/// A `variable` block.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: String,
    pub file: PathBuf,
    pub default: Option<Expression>,
    pub ty: Option<Expression>,
    pub sensitive: bool,
}

/// A `resource` or `data` block.
#[derive(Debug, Clone)]
pub struct Resource {
    /// `resource` or `data`.
    pub mode: &'static str,
    pub kind: String,
    pub name: String,
    pub file: PathBuf,
    pub body: Body,
}

impl Resource {
    pub fn address(&self) -> String {
        match self.mode {
            "data" => format!("data.{}.{}", self.kind, self.name),
            _ => format!("{}.{}", self.kind, self.name),
        }
    }
}

/// A `module` call.
#[derive(Debug, Clone)]
pub struct ModuleCall {
    pub name: String,
    pub file: PathBuf,
    pub source: Option<String>,
    /// The arguments, without the meta-arguments (source, depends_on, providers, …).
    pub args: Vec<(String, Expression)>,
}

/// An entry of `required_providers`.
#[derive(Debug, Clone)]
pub struct RequiredProvider {
    pub local_name: String,
    pub file: PathBuf,
    pub source: Option<String>,
    pub version: Option<String>,
}

/// The declarations of one module directory.
#[derive(Debug, Clone, Default)]
pub struct Module {
    pub dir: PathBuf,
    pub files: Vec<HclFile>,
    pub variables: BTreeMap<String, Variable>,
    pub locals: BTreeMap<String, Expression>,
    pub outputs: BTreeMap<String, Expression>,
    pub resources: Vec<Resource>,
    pub module_calls: Vec<ModuleCall>,
    pub required_providers: Vec<RequiredProvider>,
    pub required_version: Option<String>,
    pub provider_blocks: usize,
}

/// Every module directory of a tree, and the other HCL files (variable files, lock files).
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub root: PathBuf,
    pub modules: BTreeMap<PathBuf, Module>,
    /// `terraform.tfvars*` files by directory.
    pub tfvars: BTreeMap<PathBuf, HclFile>,
    /// `.terraform.lock.hcl` files by directory.
    pub locks: BTreeMap<PathBuf, HclFile>,
}

const META_ARGS: &[&str] = &[
    "source",
    "version",
    "depends_on",
    "providers",
    "count",
    "for_each",
];

/// Reads every HCL file under `root`; files that do not parse are findings.
pub fn load(root: &Path) -> Result<(Tree, Vec<Finding>), Error> {
    // Module sources are resolved lexically (`../..`): start from a path without `..`.
    let root = &root
        .canonicalize()
        .map_err(|e| Error::Read(root.to_path_buf(), e))?;
    let mut tree = Tree {
        root: root.to_path_buf(),
        ..Tree::default()
    };
    let mut findings = Vec::new();
    let mut paths = Vec::new();
    walk(root, &mut paths)?;
    paths.sort();
    for path in paths {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_tf = name.ends_with(".tf");
        let is_vars = name.ends_with(".tfvars") || name.ends_with(".tfvars.example");
        let is_lock = name == ".terraform.lock.hcl";
        if !(is_tf || is_vars || is_lock) {
            continue;
        }
        let source = std::fs::read_to_string(&path).map_err(|e| Error::Read(path.clone(), e))?;
        let body = match hcl::parse(&source) {
            Ok(body) => body,
            Err(e) => {
                findings.push(Finding::new(&path, "parse", e.to_string()));
                continue;
            }
        };
        let dir = path.parent().unwrap_or(root).to_path_buf();
        let file = HclFile { path, source, body };
        if is_lock {
            tree.locks.insert(dir, file);
        } else if is_vars {
            tree.tfvars.insert(dir, file);
        } else {
            let module = tree.modules.entry(dir.clone()).or_insert_with(|| Module {
                dir,
                ..Module::default()
            });
            collect(module, &file, &mut findings);
            module.files.push(file);
        }
    }
    Ok((tree, findings))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Read(dir.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Read(dir.to_path_buf(), e))?;
        let path = entry.path();
        let name = entry.file_name();
        // Terraform's own working directory holds downloaded providers and modules.
        if name == ".terraform" {
            continue;
        }
        let ty = entry
            .file_type()
            .map_err(|e| Error::Read(path.clone(), e))?;
        if ty.is_dir() {
            walk(&path, out)?;
        } else if ty.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// The literal string of an expression, if it is one.
pub fn literal_str(expr: &Expression) -> Option<&str> {
    match expr {
        Expression::String(s) => Some(s),
        Expression::TemplateExpr(t) => match t.as_ref() {
            hcl::TemplateExpr::QuotedString(s) if !s.contains("${") && !s.contains("%{") => Some(s),
            _ => None,
        },
        _ => None,
    }
}

fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

fn collect(module: &mut Module, file: &HclFile, findings: &mut Vec<Finding>) {
    for block in file.body.blocks() {
        let labels: Vec<&str> = block.labels().iter().map(|l| l.as_str()).collect();
        let body = block.body();
        match (block.identifier(), labels.as_slice()) {
            ("variable", [name]) => {
                let sensitive = matches!(attr(body, "sensitive"), Some(Expression::Bool(true)));
                module.variables.insert(
                    (*name).to_owned(),
                    Variable {
                        name: (*name).to_owned(),
                        file: file.path.clone(),
                        default: attr(body, "default").cloned(),
                        ty: attr(body, "type").cloned(),
                        sensitive,
                    },
                );
            }
            ("locals", []) => {
                for a in body.attributes() {
                    module.locals.insert(a.key().to_owned(), a.expr().clone());
                }
            }
            ("output", [name]) => {
                if let Some(value) = attr(body, "value") {
                    module.outputs.insert((*name).to_owned(), value.clone());
                }
            }
            ("resource", [kind, name]) | ("data", [kind, name]) => {
                module.resources.push(Resource {
                    mode: if block.identifier() == "data" {
                        "data"
                    } else {
                        "resource"
                    },
                    kind: (*kind).to_owned(),
                    name: (*name).to_owned(),
                    file: file.path.clone(),
                    body: body.clone(),
                });
            }
            ("module", [name]) => {
                module.module_calls.push(ModuleCall {
                    name: (*name).to_owned(),
                    file: file.path.clone(),
                    source: attr(body, "source")
                        .and_then(literal_str)
                        .map(str::to_owned),
                    args: body
                        .attributes()
                        .filter(|a| !META_ARGS.contains(&a.key()))
                        .map(|a| (a.key().to_owned(), a.expr().clone()))
                        .collect(),
                });
            }
            ("provider", [_]) => module.provider_blocks += 1,
            ("terraform", []) => collect_terraform(module, file, body, findings),
            _ => {}
        }
    }
}

fn collect_terraform(
    module: &mut Module,
    file: &HclFile,
    body: &Body,
    findings: &mut Vec<Finding>,
) {
    if let Some(v) = attr(body, "required_version") {
        module.required_version = literal_str(v).map(str::to_owned);
    }
    for block in body
        .blocks()
        .filter(|b| b.identifier() == "required_providers")
    {
        for a in block.body().attributes() {
            let Expression::Object(obj) = a.expr() else {
                findings.push(Finding::new(
                    &file.path,
                    "pinned-versions",
                    format!(
                        "required_providers.{} must be an object with source and version",
                        a.key()
                    ),
                ));
                continue;
            };
            let field = |name: &str| {
                obj.iter()
                    .find(|(k, _)| object_key(k).as_deref() == Some(name))
                    .and_then(|(_, v)| literal_str(v))
                    .map(str::to_owned)
            };
            module.required_providers.push(RequiredProvider {
                local_name: a.key().to_owned(),
                file: file.path.clone(),
                source: field("source"),
                version: field("version"),
            });
        }
    }
}

/// The name of an object key written as an identifier or a literal string.
pub fn object_key(key: &hcl::ObjectKey) -> Option<String> {
    match key {
        hcl::ObjectKey::Identifier(id) => Some(id.to_string()),
        hcl::ObjectKey::Expression(e) => literal_str(e).map(str::to_owned),
        _ => None,
    }
}

/// The directory a module call's `source` names, from the calling module's `dir`, resolved
/// lexically (`a/b/../c` → `a/c`) as Terraform resolves local sources, without touching the
/// file system.
pub fn source_dir(dir: &Path, source: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in dir.join(source).components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
