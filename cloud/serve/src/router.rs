//! Spin's HTTP routing: which trigger route answers a request path, and what it captured.
//!
//! Routes are matched by the `routefinder` crate (0.5), as Spin matches them: Spin drops one
//! trailing slash of a route, turns a trailing `/...` into `/*` and hands it to routefinder.
//! What that means for a manifest:
//!
//! - A route is split into segments at `/` and `.`: literal text, `:name` (one path segment, or
//!   up to the next `.` when the route has one there, captured as `name`), and a trailing `/...`
//!   wildcard (the rest of the path, possibly nothing). Leading and trailing slashes of both the
//!   route and the path are ignored, so `/a` also answers `/a/` and `/a/...` also answers `/a`.
//! - When several routes match, the most specific wins: at the first segment where two routes
//!   differ, a literal beats a `:name`, which beats the wildcard; routes that differ nowhere in
//!   their common segments prefer more dots, then fewer segments. So `/items/special/...` beats
//!   `/items/:id/...`, which beats `/items/...`, and `/items/:id/edit` beats `/items/:id/...`.
//!   Ties keep the manifest's order.
//! - What Spin passes on: the part of the path the wildcard matched (`spin-path-info`, keeping a
//!   trailing slash of the request path), each `:name` (`spin-path-match-<name>`), the route with
//!   the application base `/` (`spin-matched-route`), the route as written
//!   (`spin-raw-component-route`) and without its `/...` (`spin-component-route`).
//!
//! wattlet is stricter than Spin in two ways, both checked here before routefinder sees a route:
//! two routes that match exactly the same paths (the same route twice, `/a` and `/a/`, or `/a/:x`
//! and `/a/:y`) are a start-up error, where Spin logs that the later one will never be used; and
//! a wildcard before the end of a route is a start-up error, where routefinder accepts the route
//! and panics on the first path it is matched against.

use std::sync::Arc;

use routefinder::{RouteSpec, Segment};

use crate::manifest::{Manifest, Route};

/// A trigger route as the router holds it.
#[derive(Debug, Clone)]
pub struct RouteEntry {
    /// The route as written in the manifest (`/api/...`): `spin-raw-component-route`.
    pub raw: String,
    /// The route with the application base, `/`, and without a trailing slash:
    /// `spin-matched-route`.
    pub based: String,
    /// The component that answers it.
    pub component: String,
}

impl RouteEntry {
    /// `spin-component-route`: the route as written, without its `/...`.
    pub fn component_route(&self) -> &str {
        self.raw.strip_suffix("/...").unwrap_or(&self.raw)
    }
}

/// The routes of an application, most specific first.
#[derive(Debug, Clone)]
pub struct Router {
    /// routefinder's router (not `Clone`, hence the `Arc`, as in Spin).
    finder: Arc<routefinder::Router<RouteEntry>>,
    /// Its routes in its order: the order in which it tries them.
    routes: Vec<RouteEntry>,
}

/// What matched a request path.
#[derive(Debug, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub component: &'a str,
    /// `spin-raw-component-route`.
    pub raw: &'a str,
    /// `spin-matched-route`.
    pub based: &'a str,
    /// `spin-component-route`.
    pub component_route: &'a str,
    /// `spin-path-info`: what the wildcard matched, empty for a route without one.
    pub path_info: String,
    /// Each `:name` and the path segment it matched, in route order.
    pub captures: Vec<(&'a str, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error(
        "route {second:?} of component {second_component:?} can never be reached: route {first:?} of component {first_component:?} matches the same paths"
    )]
    Duplicate {
        first: String,
        first_component: String,
        second: String,
        second_component: String,
    },
    #[error("route {route:?} of component {component:?}: {reason}")]
    Invalid {
        route: String,
        component: String,
        reason: &'static str,
    },
    #[error(
        "component {component:?}: a route must be a path or `{{ private = true }}`, not `{{ private = false }}`"
    )]
    NotPrivate { component: String },
}

impl Router {
    pub fn new(manifest: &Manifest) -> Result<Self, RouteError> {
        let mut finder = routefinder::Router::<RouteEntry>::new();
        for trigger in &manifest.trigger.http {
            let raw = match &trigger.route {
                Route::Path(raw) => raw,
                Route::Private { private: true } => continue,
                Route::Private { private: false } => {
                    return Err(RouteError::NotPrivate {
                        component: trigger.component.clone(),
                    });
                }
            };
            let (spec, entry) = parse(raw, &trigger.component)?;
            if let Some((_, existing)) = finder.iter().find(|(other, _)| same_paths(other, &spec)) {
                return Err(RouteError::Duplicate {
                    first: existing.raw.clone(),
                    first_component: existing.component.clone(),
                    second: entry.raw,
                    second_component: entry.component,
                });
            }
            // routefinder orders its routes as it inserts them into a B-tree (a tie goes after
            // the routes already there). Its order is not total where a dot meets another kind
            // of segment, so with more routes than one tree node holds (11) where a route lands
            // depends on the tree: only routefinder itself orders them as Spin does. A
            // `RouteSpec` is already parsed, so adding one cannot fail.
            finder
                .add(spec, entry)
                .unwrap_or_else(|infallible| match infallible {});
        }
        let routes = finder.iter().map(|(_, entry)| entry.clone()).collect();
        Ok(Router {
            finder: Arc::new(finder),
            routes,
        })
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The most specific route matching `path` (the request URI's path, without the query).
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let found = self.finder.best_match(path)?;
        let route = found.handler();
        let captured = found.captures();
        // routefinder's captures borrow their names from themselves; the same names, in the
        // same (route) order, borrowed from the router:
        let names = found.route().segments().iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            _ => None,
        });
        Some(RouteMatch {
            component: &route.component,
            raw: &route.raw,
            based: &route.based,
            component_route: route.component_route(),
            path_info: captured
                .wildcard()
                .map(|w| wildcard_path_info(w, path.ends_with('/')))
                .unwrap_or_default(),
            captures: names
                .zip(captured.params())
                .map(|(name, c)| (name, c.value().to_owned()))
                .collect(),
        })
    }
}

/// Spin keeps a trailing slash of the request in the path info, though matching ignores it
/// (routefinder's wildcard capture has none).
fn wildcard_path_info(captured: &str, trailing_slash: bool) -> String {
    match (captured.is_empty(), trailing_slash) {
        (true, false) => String::new(),
        (true, true) => "/".to_owned(),
        (false, false) => format!("/{captured}"),
        (false, true) => format!("/{captured}/"),
    }
}

/// A manifest route as Spin gives it to routefinder, and the router's entry for it.
fn parse(raw: &str, component: &str) -> Result<(RouteSpec, RouteEntry), RouteError> {
    let invalid = |reason| RouteError::Invalid {
        route: raw.to_owned(),
        component: component.to_owned(),
        reason,
    };
    // The application base is always `/`; Spin drops one trailing slash of the route.
    let based = raw.strip_suffix('/').unwrap_or(raw).to_owned();
    let pattern = match based.strip_suffix("/...") {
        Some(prefix) => format!("{prefix}/*"),
        None => based.clone(),
    };
    let spec: RouteSpec = pattern
        .parse()
        .map_err(|message: String| invalid(parse_error_reason(&message)))?;
    // wattlet's check (see the module's documentation): routefinder would panic on a path.
    let segments = spec.segments();
    if let Some(at) = segments.iter().position(|s| *s == Segment::Wildcard)
        && at + 1 != segments.len()
    {
        return Err(invalid("the wildcard (`/...`) must end the route"));
    }
    let entry = RouteEntry {
        raw: raw.to_owned(),
        based,
        component: component.to_owned(),
    };
    Ok((spec, entry))
}

/// routefinder 0.5's two parse errors in a manifest's terms (the route's author wrote `/...`,
/// not routefinder's `*`). `RouteError::Invalid` carries a `&'static str`, so its message is
/// matched rather than carried along.
fn parse_error_reason(routefinder_message: &str) -> &'static str {
    if routefinder_message.starts_with("params must be named") {
        "a `:` segment needs a name (`:name`)"
    } else if routefinder_message.contains("wildcard") {
        "a wildcard has no name: write `/...`"
    } else {
        "routefinder cannot parse it"
    }
}

/// wattlet's duplicate check (see the module's documentation): two routes that match exactly the
/// same paths, as they differ at most in `:name`s' names. routefinder keeps both and only ever
/// answers with the first.
fn same_paths(a: &RouteSpec, b: &RouteSpec) -> bool {
    let (a, b) = (a.segments(), b.segments());
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| match pair {
            (Segment::Param(_), Segment::Param(_)) => true,
            (x, y) => x == y,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn manifest(routes: &[(&str, &str)]) -> Manifest {
        let mut text = String::from("spin_manifest_version = 2\n[application]\nname = \"t\"\n");
        for (route, component) in routes {
            let route = if route.starts_with('{') {
                (*route).to_owned()
            } else {
                format!("\"{route}\"")
            };
            text += &format!("[[trigger.http]]\nroute = {route}\ncomponent = \"{component}\"\n");
        }
        for (_, component) in routes {
            if !text.contains(&format!("[component.{component}]")) {
                text += &format!("[component.{component}]\nsource = \"x.wasm\"\n");
            }
        }
        Manifest::parse(&text, PathBuf::new(), "t").expect("test manifest")
    }

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::new(&manifest(routes)).expect("router")
    }

    /// (component, path info) of the route answering `path`.
    fn answer(r: &Router, path: &str) -> Option<(String, String)> {
        r.route(path)
            .map(|m| (m.component.to_owned(), m.path_info.clone()))
    }

    fn is(component: &str, info: &str) -> Option<(String, String)> {
        Some((component.to_owned(), info.to_owned()))
    }

    #[test]
    fn exact_routes_match_their_path_with_or_without_slashes() {
        let r = router(&[("/foo", "foo"), ("/foo/bar", "foobar"), ("/", "root")]);
        assert_eq!(answer(&r, "/foo"), is("foo", ""));
        assert_eq!(answer(&r, "/foo/"), is("foo", ""));
        assert_eq!(answer(&r, "/foo/bar"), is("foobar", ""));
        assert_eq!(answer(&r, "/"), is("root", ""));
        assert_eq!(answer(&r, ""), is("root", ""));
        assert_eq!(answer(&r, "/foo/bar/baz"), None);
        assert_eq!(answer(&r, "/foox"), None);
        let m = r.route("/").expect("root");
        // Spin's matched route for `/` is the empty string (the base `/` without its slash).
        assert_eq!((m.raw, m.based, m.component_route), ("/", "", "/"));
    }

    #[test]
    fn wildcards_match_their_prefix_and_keep_a_trailing_slash_in_path_info() {
        let r = router(&[("/test/...", "test")]);
        assert_eq!(answer(&r, "/test"), is("test", ""));
        assert_eq!(answer(&r, "/test/"), is("test", "/"));
        assert_eq!(answer(&r, "/test/hello"), is("test", "/hello"));
        assert_eq!(answer(&r, "/test/hello/"), is("test", "/hello/"));
        assert_eq!(answer(&r, "/test/a/b/c"), is("test", "/a/b/c"));
        assert_eq!(answer(&r, "/testing"), None);
        assert_eq!(answer(&r, "/"), None);
        let m = r.route("/test/x").expect("match");
        assert_eq!(
            (m.raw, m.based, m.component_route),
            ("/test/...", "/test/...", "/test")
        );
    }

    #[test]
    fn the_root_wildcard_matches_everything() {
        let r = router(&[("/...", "all")]);
        assert_eq!(answer(&r, "/"), is("all", "/"));
        assert_eq!(answer(&r, ""), is("all", ""));
        assert_eq!(answer(&r, "/foo/bar"), is("all", "/foo/bar"));
        assert_eq!(answer(&r, "/abc/"), is("all", "/abc/"));
        let m = r.route("/x").expect("match");
        assert_eq!((m.raw, m.based, m.component_route), ("/...", "/...", ""));
    }

    #[test]
    fn named_segments_are_captured() {
        let r = router(&[
            ("/1/:two/3", "exact"),
            ("/users/:user_id/files/:name", "files"),
            ("/items/:id/...", "items"),
        ]);
        let m = r.route("/1/2/3").expect("match");
        assert_eq!(
            (m.component, m.captures.clone()),
            ("exact", vec![("two", "2".to_owned())])
        );
        let m = r.route("/users/ada/files/report.pdf").expect("match");
        assert_eq!(
            m.captures,
            [
                ("user_id", "ada".to_owned()),
                ("name", "report.pdf".to_owned())
            ]
        );
        assert_eq!(m.path_info, "");
        let m = r.route("/items/42/a/b/").expect("match");
        assert_eq!(m.captures, [("id", "42".to_owned())]);
        assert_eq!(m.path_info, "/a/b/");
        assert_eq!(m.component_route, "/items/:id");
        assert_eq!(r.route("/items/42").expect("match").path_info, "");
        // A named segment needs something left of the path, but an empty segment between two
        // slashes will do (as in Spin).
        assert_eq!(answer(&r, "/items"), None);
        let m = r.route("/1//3").expect("match");
        assert_eq!(m.captures, [("two", String::new())]);
        assert_eq!(answer(&r, "/users/ada/files"), None);
    }

    #[test]
    fn a_named_segment_before_a_dot_ends_at_the_dot() {
        let r = router(&[("/files/:name.:ext", "typed"), ("/static/app.js", "asset")]);
        let m = r.route("/files/report.pdf").expect("match");
        assert_eq!(
            m.captures,
            [("name", "report".to_owned()), ("ext", "pdf".to_owned())]
        );
        assert_eq!(answer(&r, "/files/report"), None);
        assert_eq!(answer(&r, "/static/app.js"), is("asset", ""));
        assert_eq!(answer(&r, "/static/appxjs"), None);
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_manifest_order() {
        let routes = [
            ("/...", "root"),
            ("/api/...", "api"),
            ("/api/health", "health"),
            ("/items/...", "items"),
            ("/items/:id/...", "item"),
            ("/items/:id/edit", "edit"),
            ("/items/special/...", "special"),
            ("/one/two/three/...", "three"),
            ("/one/two/...", "two"),
            ("/one/...", "one"),
        ];
        for reversed in [false, true] {
            let mut routes = routes.to_vec();
            if reversed {
                routes.reverse();
            }
            let r = router(&routes);
            assert_eq!(answer(&r, "/api/health"), is("health", ""));
            assert_eq!(answer(&r, "/api/health/"), is("health", ""));
            assert_eq!(answer(&r, "/api/x/y"), is("api", "/x/y"));
            assert_eq!(answer(&r, "/api"), is("api", ""));
            assert_eq!(answer(&r, "/apix"), is("root", "/apix"));
            assert_eq!(answer(&r, "/"), is("root", "/"));
            assert_eq!(answer(&r, "/items"), is("items", ""));
            assert_eq!(answer(&r, "/items/7"), is("item", ""));
            assert_eq!(answer(&r, "/items/7/edit"), is("edit", ""));
            assert_eq!(answer(&r, "/items/7/edit/more"), is("item", "/edit/more"));
            assert_eq!(answer(&r, "/items/special/edit"), is("special", "/edit"));
            assert_eq!(answer(&r, "/one/two/three/four"), is("three", "/four"));
            assert_eq!(answer(&r, "/one/two/x"), is("two", "/x"));
            assert_eq!(answer(&r, "/one/x"), is("one", "/x"));
        }
    }

    #[test]
    fn a_literal_beats_a_named_segment_at_the_first_difference() {
        // `/a/:x` and `/:y/b` both match `/a/b`: the literal `a` comes first.
        for routes in [
            [("/a/:x", "literal-first"), ("/:y/b", "param-first")],
            [("/:y/b", "param-first"), ("/a/:x", "literal-first")],
        ] {
            let r = router(&routes);
            assert_eq!(answer(&r, "/a/b"), is("literal-first", ""));
            assert_eq!(answer(&r, "/c/b"), is("param-first", ""));
        }
    }

    #[test]
    fn no_route_is_none() {
        let r = router(&[("/exact", "a"), ("/w/...", "b")]);
        assert!(r.route("/exact/more").is_none());
        assert!(r.route("/").is_none());
        assert!(r.route("/wx").is_none());
        assert_eq!(answer(&r, "/w"), is("b", ""));
    }

    #[test]
    fn private_routes_are_not_routed() {
        let r = router(&[("{ private = true }", "hidden"), ("/a", "a")]);
        assert_eq!(r.routes().len(), 1);
        let err = Router::new(&manifest(&[("{ private = false }", "c")])).unwrap_err();
        assert_eq!(
            err,
            RouteError::NotPrivate {
                component: "c".into()
            }
        );
    }

    #[test]
    fn routes_matching_the_same_paths_are_an_error() {
        for (a, b) in [
            ("/a", "/a"),
            ("/a", "/a/"),
            ("/a/...", "/a/..."),
            ("/a/:x", "/a/:y"),
            ("/...", "/..."),
        ] {
            let err = Router::new(&manifest(&[(a, "first"), (b, "second")])).unwrap_err();
            assert!(
                matches!(&err, RouteError::Duplicate { first, second, .. } if first == a && second == b),
                "{a} {b}: {err}"
            );
            assert!(err.to_string().contains("never be reached"), "{err}");
        }
        // Different shapes are fine.
        router(&[("/a", "x"), ("/a/...", "y"), ("/:a", "z")]);
    }

    #[test]
    fn malformed_routes_are_errors() {
        for (route, expect) in [
            ("/a/:", "needs a name"),
            ("/a/*name", "no name"),
            ("/a/*/b", "must end the route"),
        ] {
            let err = Router::new(&manifest(&[(route, "c")])).unwrap_err();
            assert!(err.to_string().contains(expect), "{route}: {err}");
        }
    }
}
