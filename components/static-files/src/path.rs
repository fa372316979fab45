//! Which file a request names, and how it is sent: the path below the route (Spin's
//! `spin-path-info` header) checked segment by segment, the content type from the extension,
//! caching from the update repository's layout.

/// The longest path below the route that is looked at; longer ones are refused.
pub const MAX_PATH_BYTES: usize = 1024;

/// Consistent-snapshot files (`metadata/<version>.<role>.json`,
/// `targets/<sha256>.<name>`) never change once written: caches may keep them.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Everything else is revalidated on every use: `timestamp.json` changes daily, and a file
/// without a version or digest in its name may be replaced.
pub const NO_CACHE: &str = "no-cache";

/// The methods served; any other gets 405 with `allow: GET, HEAD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// `GET` or `HEAD`, or `None` for every other method.
pub fn check_method(method: &str) -> Option<Method> {
    match method {
        "GET" => Some(Method::Get),
        "HEAD" => Some(Method::Head),
        _ => None,
    }
}

/// A file a request may read, relative to the served directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `metadata/1.root.json`: no leading slash, no empty, `.` or `..` segment.
    pub relative: String,
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

impl Target {
    /// The file's path inside the component, where the directory is mounted at `/`.
    pub fn guest_path(&self) -> String {
        format!("/{}", self.relative)
    }
}

/// Why a path names no file that may be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path is not UTF-8")]
    NotUtf8,
    #[error("the path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("percent-encoded paths are not served")]
    PercentEncoded,
    #[error("`.` and `..` segments are not served")]
    Traversal,
    #[error("empty path segments (`//`) are not served")]
    EmptySegment,
    #[error("backslashes and control characters are not served")]
    BadCharacter,
    /// The route itself, or a path ending in `/`: directories are never listed.
    #[error("not found")]
    Directory,
    /// A segment starting with `.`: hidden files (and the publisher's `.staging-*` scratch
    /// directories) are not served.
    #[error("not found")]
    Hidden,
}

impl PathError {
    /// 400 for paths no client should send, 404 for what simply is not served.
    pub fn status(&self) -> u16 {
        match self {
            PathError::Directory | PathError::Hidden => 404,
            _ => 400,
        }
    }
}

/// The file that `path_info` (the path below the route, `/metadata/1.root.json`) names.
///
/// Nothing is decoded: a name that would need percent-encoding is refused rather than
/// interpreted, so `%2e%2e` cannot become `..` anywhere.
pub fn resolve(path_info: &[u8]) -> Result<Target, PathError> {
    if path_info.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let path = std::str::from_utf8(path_info).map_err(|_| PathError::NotUtf8)?;
    if path.contains('%') {
        return Err(PathError::PercentEncoded);
    }
    if path.chars().any(|c| c == '\\' || c.is_control()) {
        return Err(PathError::BadCharacter);
    }
    let relative = path.strip_prefix('/').unwrap_or(path);
    if relative.is_empty() || relative.ends_with('/') {
        return Err(PathError::Directory);
    }
    let segments: Vec<&str> = relative.split('/').collect();
    // Every segment is checked before any is judged hidden: `/.x/../y` is a traversal attempt.
    for segment in &segments {
        match *segment {
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::Traversal),
            _ => {}
        }
    }
    if segments.iter().any(|s| s.starts_with('.')) {
        return Err(PathError::Hidden);
    }
    Ok(Target {
        relative: relative.to_owned(),
        content_type: content_type(relative),
        cache_control: cache_control(&segments),
    })
}

fn content_type(relative: &str) -> &'static str {
    match relative.rsplit_once('.').map(|(_, ext)| ext) {
        Some("json") => "application/json",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

fn cache_control(segments: &[&str]) -> &'static str {
    let versioned_metadata = |name: &str| {
        name.split_once('.').is_some_and(|(version, rest)| {
            !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit())
                && rest.ends_with(".json")
        })
    };
    let hashed_target = |name: &str| {
        name.split_once('.').is_some_and(|(digest, _)| {
            digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())
        })
    };
    match segments {
        ["metadata", name] if versioned_metadata(name) => IMMUTABLE,
        ["targets", first, ..] if hashed_target(first) => IMMUTABLE,
        _ => NO_CACHE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn metadata_and_targets_resolve_with_their_type_and_caching() {
        let root = resolve(b"/metadata/1.root.json").unwrap();
        assert_eq!(root.relative, "metadata/1.root.json");
        assert_eq!(root.guest_path(), "/metadata/1.root.json");
        assert_eq!(root.content_type, "application/json");
        assert_eq!(root.cache_control, IMMUTABLE);

        let snapshot = resolve(b"/metadata/12.snapshot.json").unwrap();
        assert_eq!(snapshot.cache_control, IMMUTABLE);

        let timestamp = resolve(b"/metadata/timestamp.json").unwrap();
        assert_eq!(timestamp.content_type, "application/json");
        assert_eq!(timestamp.cache_control, NO_CACHE);

        let path = format!("/targets/{DIGEST}.components/meter-parser/1.4.0.wasm");
        let target = resolve(path.as_bytes()).unwrap();
        assert_eq!(
            target.relative,
            format!("targets/{DIGEST}.components/meter-parser/1.4.0.wasm")
        );
        assert_eq!(target.content_type, "application/wasm");
        assert_eq!(target.cache_control, IMMUTABLE);
    }

    #[test]
    fn unversioned_or_unhashed_files_are_revalidated() {
        for path in [
            "/metadata/root.json",
            "/metadata/x.root.json",
            "/targets/components/meter-parser/1.4.0.wasm",
            "/targets/abc.components/x.wasm",
            "/README",
            "/1.root.json",
        ] {
            let target = resolve(path.as_bytes()).unwrap();
            assert_eq!(target.cache_control, NO_CACHE, "{path}");
        }
        assert_eq!(
            resolve(b"/README").unwrap().content_type,
            "application/octet-stream"
        );
    }

    #[test]
    fn a_path_without_leading_slash_is_the_same_file() {
        assert_eq!(
            resolve(b"metadata/1.root.json").unwrap().relative,
            "metadata/1.root.json"
        );
    }

    #[test]
    fn traversal_attempts_are_bad_requests() {
        let cases: &[(&[u8], PathError)] = &[
            (b"/../etc/passwd", PathError::Traversal),
            (b"/metadata/../../etc/passwd", PathError::Traversal),
            (b"/metadata/..", PathError::Traversal),
            (b"/./metadata/1.root.json", PathError::Traversal),
            (b"/.hidden/../x", PathError::Traversal),
            (b"//etc/passwd", PathError::EmptySegment),
            (b"/metadata//1.root.json", PathError::EmptySegment),
            (b"/%2e%2e/etc/passwd", PathError::PercentEncoded),
            (b"/%2E%2E%2Fetc", PathError::PercentEncoded),
            (b"/metadata/%2F", PathError::PercentEncoded),
            (b"/..\\etc\\passwd", PathError::BadCharacter),
            (b"/metadata/a\0b", PathError::BadCharacter),
            (b"/metadata/a\nb", PathError::BadCharacter),
            (b"/metadata/\xff\xfe.json", PathError::NotUtf8),
            (b"/\xc0\xae\xc0\xae/etc/passwd", PathError::NotUtf8),
        ];
        for (path, expected) in cases {
            let error = resolve(path).unwrap_err();
            assert_eq!(&error, expected, "{}", String::from_utf8_lossy(path));
            assert_eq!(error.status(), 400, "{}", String::from_utf8_lossy(path));
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(resolve(long.as_bytes()), Err(PathError::TooLong));
    }

    #[test]
    fn directories_and_hidden_files_are_not_found() {
        for path in [&b""[..], b"/", b"/metadata/", b"/targets/x/"] {
            let error = resolve(path).unwrap_err();
            assert_eq!(error, PathError::Directory);
            assert_eq!(error.status(), 404);
        }
        for path in [
            &b"/.gitignore"[..],
            b"/.staging-x1y2/timestamp.json",
            b"/metadata/.timestamp.json",
        ] {
            let error = resolve(path).unwrap_err();
            assert_eq!(error, PathError::Hidden);
            assert_eq!(error.status(), 404);
        }
    }

    #[test]
    fn only_get_and_head_are_served() {
        assert_eq!(check_method("GET"), Some(Method::Get));
        assert_eq!(check_method("HEAD"), Some(Method::Head));
        for other in [
            "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "get", "CONNECT",
        ] {
            assert_eq!(check_method(other), None, "{other}");
        }
    }
}
