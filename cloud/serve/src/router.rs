//! Spin's HTTP routing: which trigger route answers a request path, and what it captured.
//!
//! Routes are matched as Spin matches them (Spin hands them to the `routefinder` 0.5 crate after
//! turning a trailing `/...` into `/*`):
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
//! wattlet is stricter than Spin in one way: two routes that match exactly the same paths (the
//! same route twice, `/a` and `/a/`, or `/a/:x` and `/a/:y`) are a start-up error, where Spin
//! logs that the later one will never be used.

use std::cmp::Ordering;

use crate::manifest::{Manifest, Route};

/// One segment of a parsed route.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// A `/` between two segments.
    Slash,
    /// A `.` between a `:name` and what follows.
    Dot,
    /// Literal text (dots after literal text are part of it: `app.js`).
    Literal(String),
    /// `:name`.
    Param(String),
    /// The trailing wildcard (`/...`).
    Wildcard,
}

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
    segments: Vec<Segment>,
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
        let mut routes: Vec<RouteEntry> = Vec::new();
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
            let entry = RouteEntry::parse(raw, &trigger.component)?;
            if let Some(existing) = routes.iter().find(|r| same_paths(r, &entry)) {
                return Err(RouteError::Duplicate {
                    first: existing.raw.clone(),
                    first_component: existing.component.clone(),
                    second: entry.raw,
                    second_component: entry.component,
                });
            }
            // Each route goes before the first one it is more specific than, as routefinder
            // inserts them (its order is not total where a dot meets another segment kind, so a
            // plain sort could order such routes differently).
            let at = routes
                .iter()
                .position(|r| specificity(&entry.segments, &r.segments) == Ordering::Less)
                .unwrap_or(routes.len());
            routes.insert(at, entry);
        }
        Ok(Router { routes })
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[RouteEntry] {
        &self.routes
    }

    /// The most specific route matching `path` (the request URI's path, without the query).
    pub fn route(&self, path: &str) -> Option<RouteMatch<'_>> {
        let trimmed = path.trim_matches('/');
        self.routes.iter().find_map(|route| {
            let captured = match_segments(&route.segments, trimmed)?;
            let mut captures = Vec::new();
            let mut path_info = String::new();
            for (segment, value) in route
                .segments
                .iter()
                .filter(|s| matches!(s, Segment::Param(_) | Segment::Wildcard))
                .zip(captured)
            {
                match segment {
                    Segment::Param(name) => captures.push((name.as_str(), value.to_owned())),
                    _ => path_info = wildcard_path_info(value, path.ends_with('/')),
                }
            }
            Some(RouteMatch {
                component: &route.component,
                raw: &route.raw,
                based: &route.based,
                component_route: route.component_route(),
                path_info,
                captures,
            })
        })
    }
}

/// Spin keeps a trailing slash of the request in the path info, though matching ignores it.
fn wildcard_path_info(captured: &str, trailing_slash: bool) -> String {
    match (captured.is_empty(), trailing_slash) {
        (true, false) => String::new(),
        (true, true) => "/".to_owned(),
        (false, false) => format!("/{captured}"),
        (false, true) => format!("/{captured}/"),
    }
}

impl RouteEntry {
    fn parse(raw: &str, component: &str) -> Result<Self, RouteError> {
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
        let segments = parse_segments(&pattern).map_err(invalid)?;
        // A wildcard anywhere but at the end is a route Spin accepts but panics on when matching.
        if let Some(at) = segments.iter().position(|s| *s == Segment::Wildcard)
            && at + 1 != segments.len()
        {
            return Err(invalid("the wildcard (`/...`) must end the route"));
        }
        Ok(RouteEntry {
            raw: raw.to_owned(),
            based,
            component: component.to_owned(),
            segments,
        })
    }
}

/// Splits a route at `/` and `.` into segments; empty parts between separators disappear.
fn parse_segments(pattern: &str) -> Result<Vec<Segment>, &'static str> {
    let trimmed = pattern.trim_matches('/');
    let mut segments: Vec<Segment> = Vec::new();
    let mut separator = None;
    let mut rest = trimmed;
    loop {
        let end = rest.find(['/', '.']).unwrap_or(rest.len());
        let part = &rest[..end];
        let segment = match part {
            "" => None,
            "*" => Some(Segment::Wildcard),
            _ if part.starts_with('*') => return Err("a wildcard has no name: write `/...`"),
            ":" => return Err("a `:` segment needs a name (`:name`)"),
            _ => Some(match part.strip_prefix(':') {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(part.to_owned()),
            }),
        };
        if separator == Some('.') {
            match segments.last_mut() {
                Some(Segment::Literal(text)) => text.push('.'),
                _ => segments.push(Segment::Dot),
            }
        }
        if let Some(segment) = segment {
            if separator == Some('/') {
                segments.push(Segment::Slash);
            }
            segments.push(segment);
        }
        let Some(next) = rest[end..].chars().next() else {
            break;
        };
        separator = Some(next);
        rest = &rest[end + 1..];
    }
    Ok(segments)
}

/// Matches `path` (without leading and trailing slashes) against a route's segments; returns
/// what each `:name` and the wildcard captured, in order.
fn match_segments<'p>(segments: &[Segment], mut path: &'p str) -> Option<Vec<&'p str>> {
    let mut captured = Vec::new();
    let mut iter = segments.iter().peekable();
    while let Some(segment) = iter.next() {
        let next = iter.peek();
        path = match segment {
            Segment::Literal(text) => path.strip_prefix(text.as_str())?,
            Segment::Param(_) => {
                if path.is_empty() {
                    return None;
                }
                let end = match next {
                    Some(Segment::Dot) => {
                        // The value ends at the dot the route expects there.
                        let at = path.find(['.', '/'])?;
                        (path.as_bytes()[at] == b'.').then_some(at)?
                    }
                    _ => path.find('/').unwrap_or(path.len()),
                };
                captured.push(&path[..end]);
                &path[end..]
            }
            Segment::Wildcard => {
                captured.push(path);
                ""
            }
            Segment::Slash => match (path.strip_prefix('/'), next) {
                (Some(rest), Some(_)) => rest,
                // `/a/...` answers `/a`: the wildcard then matches nothing.
                (None, None | Some(Segment::Wildcard)) if path.is_empty() => path,
                _ => return None,
            },
            Segment::Dot => path.strip_prefix('.')?,
        };
    }
    (path.is_empty() || path == "/").then_some(captured)
}

/// Two routes that match exactly the same paths (they differ at most in `:name`s' names).
fn same_paths(a: &RouteEntry, b: &RouteEntry) -> bool {
    a.segments.len() == b.segments.len()
        && a.segments.iter().zip(&b.segments).all(|pair| match pair {
            (Segment::Param(_), Segment::Param(_)) => true,
            (x, y) => x == y,
        })
}

/// Whether route `a` is tried before route `b` (`Less`), as routefinder 0.5 orders them: the
/// first segment where they differ decides, then more dots, then fewer segments. Never `Equal`:
/// a tie keeps the manifest's order.
fn specificity(a: &[Segment], b: &[Segment]) -> Ordering {
    let dots = |s: &[Segment]| s.iter().filter(|s| **s == Segment::Dot).count();
    a.iter()
        .zip(b)
        .map(|(x, y)| segment_specificity(x, y))
        .chain(std::iter::once_with(|| dots(b).cmp(&dots(a))))
        .chain(std::iter::once_with(|| a.len().cmp(&b.len())))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Greater)
}

/// One position of [`specificity`]: a literal before a `:name` before the wildcard before a
/// separator. A dot facing a literal, `:name` or wildcard counts as more specific on either
/// side, as routefinder has it.
fn segment_specificity(a: &Segment, b: &Segment) -> Ordering {
    use Segment::*;
    match (a, b) {
        (Literal(_), Literal(_)) | (Param(_), Param(_)) | (Wildcard, Wildcard) => Ordering::Equal,
        (Slash | Dot, Slash | Dot) => Ordering::Equal,
        (Dot | Literal(_), _) => Ordering::Less,
        (Param(_), Literal(_)) => Ordering::Greater,
        (Param(_), _) => Ordering::Less,
        (Wildcard, Literal(_) | Param(_)) => Ordering::Greater,
        (Wildcard, _) => Ordering::Less,
        (Slash, _) => Ordering::Greater,
    }
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
