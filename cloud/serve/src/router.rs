//! Spin's HTTP routing: exact routes and `/...` wildcards, the most specific match wins.

use crate::manifest::{Manifest, Route};

#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// The route as written in the manifest (`/api/...`).
    pub raw: String,
    /// The route without the wildcard (`/api`), `/` for `/...`.
    pub prefix: String,
    pub wildcard: bool,
    pub component: String,
}

#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteEntry>,
}

/// What matched a request path.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub component: &'a str,
    pub raw: &'a str,
    pub prefix: &'a str,
    /// The part of the path after the matched prefix (`spin-path-info`).
    pub path_info: String,
}

#[derive(Debug, thiserror::Error)]
#[error("route {route:?} is claimed by both {first:?} and {second:?}")]
pub struct DuplicateRoute {
    pub route: String,
    pub first: String,
    pub second: String,
}

impl Router {
    pub fn new(manifest: &Manifest) -> Result<Self, DuplicateRoute> {
        let mut routes: Vec<RouteEntry> = Vec::new();
        for trigger in &manifest.trigger.http {
            let Route::Path(raw) = &trigger.route else {
                continue;
            };
            let (prefix, wildcard) = match raw.strip_suffix("/...") {
                Some(prefix) => (prefix.to_owned(), true),
                None => (raw.trim_end_matches('/').to_owned(), false),
            };
            let entry = RouteEntry {
                raw: raw.clone(),
                prefix,
                wildcard,
                component: trigger.component.clone(),
            };
            if let Some(existing) = routes
                .iter()
                .find(|r| r.prefix == entry.prefix && r.wildcard == entry.wildcard)
            {
                return Err(DuplicateRoute {
                    route: raw.clone(),
                    first: existing.component.clone(),
                    second: entry.component,
                });
            }
            routes.push(entry);
        }
        // Exact routes first, then wildcards from the longest prefix down.
        routes.sort_by(|a, b| {
            a.wildcard
                .cmp(&b.wildcard)
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Ok(Router { routes })
    }

    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let trimmed = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        self.routes.iter().find_map(|r| {
            let info = if r.wildcard {
                match trimmed.strip_prefix(r.prefix.as_str()) {
                    Some("") => String::new(),
                    Some(rest) if rest.starts_with('/') => rest.to_owned(),
                    // `/...` at the root: everything matches and the whole path is the info.
                    _ if r.prefix.is_empty() => path.to_owned(),
                    _ => return None,
                }
            } else if trimmed == r.prefix || (r.prefix.is_empty() && trimmed == "/") {
                String::new()
            } else {
                return None;
            };
            Some(RouteMatch {
                component: &r.component,
                raw: &r.raw,
                prefix: &r.prefix,
                path_info: info,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn router(routes: &[(&str, &str)]) -> Router {
        let mut text = String::from("spin_manifest_version = 2\n[application]\nname = \"t\"\n");
        for (route, component) in routes {
            text +=
                &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{component}\"\n");
        }
        for (_, component) in routes {
            if !text.contains(&format!("[component.{component}]")) {
                text += &format!("[component.{component}]\nsource = \"x.wasm\"\n");
            }
        }
        Router::new(&Manifest::parse(&text, PathBuf::new(), "t").unwrap()).unwrap()
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&[
            ("/...", "root"),
            ("/api/...", "api"),
            ("/api/health", "health"),
        ]);
        assert_eq!(r.route("/api/health").unwrap().component, "health");
        assert_eq!(r.route("/api/health/").unwrap().component, "health");
        let api = r.route("/api/x/y").unwrap();
        assert_eq!((api.component, api.path_info.as_str()), ("api", "/x/y"));
        assert_eq!(r.route("/api").unwrap().path_info, "");
        assert_eq!(r.route("/apix").unwrap().component, "root");
        assert_eq!(r.route("/").unwrap().component, "root");
        assert_eq!(r.route("/other").unwrap().path_info, "/other");
    }

    #[test]
    fn no_route_is_none() {
        let r = router(&[("/exact", "a"), ("/w/...", "b")]);
        assert!(r.route("/exact/more").is_none());
        assert!(r.route("/").is_none());
        assert!(r.route("/wx").is_none());
        assert_eq!(r.route("/w").unwrap().component, "b");
    }
}
