//! Application variables (`[variables]`) and the component templates that expose them.

use std::collections::BTreeMap;

use crate::manifest::{Manifest, valid_variable_name};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VariableError {
    #[error("required variable {name:?} has no value: set SPIN_VARIABLE_{env}")]
    Missing { name: String, env: String },
    #[error("component {component:?}: variable {variable:?} refers to undeclared {name:?}")]
    Undeclared {
        component: String,
        variable: String,
        name: String,
    },
    #[error("component {component:?}: variable {variable:?}: malformed template {template:?}")]
    Template {
        component: String,
        variable: String,
        template: String,
    },
    #[error(
        "component {component:?}: variable name {variable:?} must be lower-case letters, digits and '_'"
    )]
    Name { component: String, variable: String },
}

/// Every component's variables, resolved once at start-up, as Spin's environment provider does:
/// `SPIN_VARIABLE_<NAME>` overrides the default; a required variable without a value is an error
/// before any request is served.
#[derive(Debug, Default)]
pub struct ResolvedVariables {
    application: BTreeMap<String, String>,
    by_component: BTreeMap<String, BTreeMap<String, String>>,
}

impl ResolvedVariables {
    pub fn resolve(
        manifest: &Manifest,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, VariableError> {
        let mut app = BTreeMap::new();
        for (name, decl) in &manifest.variables {
            let env_name = name.to_ascii_uppercase();
            let value = env(&format!("SPIN_VARIABLE_{env_name}")).or_else(|| decl.default.clone());
            match value {
                Some(value) => {
                    app.insert(name.clone(), value);
                }
                None if decl.required => {
                    return Err(VariableError::Missing {
                        name: name.clone(),
                        env: env_name,
                    });
                }
                None => {}
            }
        }
        let mut by_component = BTreeMap::new();
        for (component, decl) in &manifest.component {
            let mut resolved = BTreeMap::new();
            for (variable, template) in &decl.variables {
                if !valid_variable_name(variable) {
                    return Err(VariableError::Name {
                        component: component.clone(),
                        variable: variable.clone(),
                    });
                }
                let value = render(template, &app, manifest).map_err(|e| match e {
                    RenderError::Malformed => VariableError::Template {
                        component: component.clone(),
                        variable: variable.clone(),
                        template: template.clone(),
                    },
                    RenderError::Undeclared(name) => VariableError::Undeclared {
                        component: component.clone(),
                        variable: variable.clone(),
                        name,
                    },
                })?;
                resolved.insert(variable.clone(), value);
            }
            by_component.insert(component.clone(), resolved);
        }
        Ok(ResolvedVariables {
            application: app,
            by_component,
        })
    }

    /// The value of application variable `name` (`[variables]`), if it has one.
    pub fn application(&self, name: &str) -> Option<&str> {
        self.application.get(name).map(String::as_str)
    }

    pub fn for_component(&self, component: &str) -> BTreeMap<String, String> {
        self.by_component
            .get(component)
            .cloned()
            .unwrap_or_default()
    }
}

enum RenderError {
    Malformed,
    Undeclared(String),
}

/// Renders `text {{ name }} text`; an optional application variable without a value renders as
/// an error only if it is used.
fn render(
    template: &str,
    app: &BTreeMap<String, String>,
    manifest: &Manifest,
) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(RenderError::Malformed)?;
        let name = after[..close].trim();
        if !manifest.variables.contains_key(name) {
            return Err(RenderError::Undeclared(name.to_owned()));
        }
        out.push_str(
            app.get(name)
                .ok_or_else(|| RenderError::Undeclared(name.to_owned()))?,
        );
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err(RenderError::Malformed);
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn manifest(extra: &str) -> Manifest {
        let text = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n[variables]\n\
             token = {{ required = true, secret = true }}\ngreeting = {{ default = \"hello\" }}\n\
             [component.c]\nsource = \"c.wasm\"\n[component.c.variables]\n{extra}"
        );
        Manifest::parse(&text, PathBuf::new(), "t").unwrap()
    }

    #[test]
    fn environment_overrides_default_and_required_must_be_set() {
        let m = manifest("greet = \"{{ greeting }}, world\"\nsecret = \"{{token}}\"");
        let env = |k: &str| (k == "SPIN_VARIABLE_TOKEN").then(|| "s3cret".to_owned());
        let vars = ResolvedVariables::resolve(&m, env)
            .unwrap()
            .for_component("c");
        assert_eq!(vars["greet"], "hello, world");
        assert_eq!(vars["secret"], "s3cret");
        let resolved = ResolvedVariables::resolve(&m, env).unwrap();
        assert_eq!(resolved.application("token"), Some("s3cret"));
        assert_eq!(resolved.application("greeting"), Some("hello"));
        assert_eq!(resolved.application("nope"), None);
        let err = ResolvedVariables::resolve(&m, |_| None).unwrap_err();
        assert_eq!(
            err,
            VariableError::Missing {
                name: "token".into(),
                env: "TOKEN".into()
            }
        );
        let env = |k: &str| match k {
            "SPIN_VARIABLE_TOKEN" => Some("t".to_owned()),
            "SPIN_VARIABLE_GREETING" => Some("hi".to_owned()),
            _ => None,
        };
        let vars = ResolvedVariables::resolve(&m, env)
            .unwrap()
            .for_component("c");
        assert_eq!(vars["greet"], "hi, world");
    }

    #[test]
    fn bad_templates_are_start_up_errors() {
        let env = |_: &str| Some("x".to_owned());
        for (extra, expect) in [
            ("a = \"{{ nope }}\"", "undeclared"),
            ("a = \"{{ greeting \"", "malformed"),
            ("A = \"x\"", "lower-case"),
        ] {
            let err = ResolvedVariables::resolve(&manifest(extra), env)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{err}");
        }
    }
}
