//! Spin's `files`: what a component sees of the host's files, read-only, as `spin up` mounts
//! them. A `{ source, destination }` directory is preopened as it is (changes show at the next
//! request, as with `spin up` of a local application); the files a glob pattern matches are
//! copied at start-up into `<state dir>/files/<component>/` and that copy is preopened at `/`
//! (Spin copies them too).

use std::path::{Component, Path, PathBuf};

use crate::manifest::FileMount;

/// A host directory the component sees at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    // Spin's words: "File or directory \"updates\" does not exist".
    #[error("component {component:?}: file or directory {source_path:?} ({}) does not exist", host.display())]
    Missing {
        component: String,
        source_path: String,
        host: PathBuf,
    },
    #[error(
        "component {component:?}: files source {source_path:?} is a file; wattlet serve mounts directories (put it in one, or use a pattern)"
    )]
    NotADirectory {
        component: String,
        source_path: String,
    },
    #[error(
        "component {component:?}: {pattern:?} does not exist and doesn't appear to be a glob pattern"
    )]
    NoMatch { component: String, pattern: String },
    #[error(
        "component {component:?}: files pattern {pattern:?} must stay inside the manifest's directory (no absolute path, no `..`)"
    )]
    Outside { component: String, pattern: String },
    #[error("component {component:?}: files pattern {pattern:?} is not valid: {message}")]
    BadPattern {
        component: String,
        pattern: String,
        message: String,
    },
    #[error("component {component:?}: cannot copy {} for its files: {source}", path.display())]
    Copy {
        component: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The directories component `component` sees, its `files` resolved against `manifest_dir`;
/// glob patterns are copied under `state_dir`. Every source is checked here, so a missing one
/// is a start-up error naming the component, as in Spin.
pub fn mounts(
    component: &str,
    files: &[FileMount],
    manifest_dir: &Path,
    state_dir: &Path,
) -> Result<Vec<Mount>, FilesError> {
    let mut mounts = Vec::new();
    let mut patterns = Vec::new();
    for entry in files {
        match entry {
            FileMount::Placement {
                source,
                destination,
            } => {
                let host = manifest_dir.join(source);
                if !host.exists() {
                    return Err(FilesError::Missing {
                        component: component.to_owned(),
                        source_path: source.clone(),
                        host,
                    });
                }
                if !host.is_dir() {
                    return Err(FilesError::NotADirectory {
                        component: component.to_owned(),
                        source_path: source.clone(),
                    });
                }
                // Spin takes `destination = "data"` as `/data`.
                let guest = if destination.starts_with('/') {
                    destination.clone()
                } else {
                    format!("/{destination}")
                };
                mounts.push(Mount { host, guest });
            }
            FileMount::Pattern(pattern) => patterns.push(pattern.as_str()),
        }
    }
    if !patterns.is_empty() {
        let copy = state_dir.join("files").join(component);
        copy_matches(component, &patterns, manifest_dir, &copy)?;
        mounts.push(Mount {
            host: copy,
            guest: "/".to_owned(),
        });
    }
    Ok(mounts)
}

/// Copies every file the patterns match into `into` (emptied first), at its path relative to
/// `manifest_dir`.
fn copy_matches(
    component: &str,
    patterns: &[&str],
    manifest_dir: &Path,
    into: &Path,
) -> Result<(), FilesError> {
    let copy_error = |path: &Path, source| FilesError::Copy {
        component: component.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    match std::fs::remove_dir_all(into) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(copy_error(into, e)),
    }
    std::fs::create_dir_all(into).map_err(|e| copy_error(into, e))?;
    for pattern in patterns {
        let relative = Path::new(pattern);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(FilesError::Outside {
                component: component.to_owned(),
                pattern: (*pattern).to_owned(),
            });
        }
        let full = manifest_dir.join(relative);
        let bad = |message: String| FilesError::BadPattern {
            component: component.to_owned(),
            pattern: (*pattern).to_owned(),
            message,
        };
        let matches = glob::glob(&full.to_string_lossy()).map_err(|e| bad(e.to_string()))?;
        let mut matched = false;
        for path in matches {
            let path = path.map_err(|e| bad(e.to_string()))?;
            matched = true;
            if !path.is_file() {
                // Spin copies files only: a matched directory adds nothing by itself.
                continue;
            }
            let Ok(inside) = path.strip_prefix(manifest_dir) else {
                continue;
            };
            let target = into.join(inside);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| copy_error(parent, e))?;
            }
            std::fs::copy(&path, &target).map_err(|e| copy_error(&path, e))?;
        }
        if !matched {
            return Err(FilesError::NoMatch {
                component: component.to_owned(),
                pattern: (*pattern).to_owned(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(source: &str, destination: &str) -> FileMount {
        FileMount::Placement {
            source: source.into(),
            destination: destination.into(),
        }
    }

    #[test]
    fn a_directory_is_mounted_where_it_says() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("updates")).unwrap();
        let mounts = mounts(
            "updates",
            &[placement("updates", "/")],
            dir.path(),
            &dir.path().join(".spin"),
        )
        .unwrap();
        assert_eq!(
            mounts,
            [Mount {
                host: dir.path().join("updates"),
                guest: "/".into()
            }]
        );
    }

    #[test]
    fn a_relative_destination_is_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let mounts = mounts("c", &[placement("d", "data")], dir.path(), dir.path()).unwrap();
        assert_eq!(mounts[0].guest, "/data");
    }

    #[test]
    fn a_missing_source_names_the_component_and_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = mounts(
            "updates",
            &[placement("updates", "/")],
            dir.path(),
            dir.path(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("component \"updates\""), "{error}");
        assert!(error.contains("\"updates\""), "{error}");
        assert!(error.contains("does not exist"), "{error}");
        assert!(
            error.contains(&dir.path().join("updates").display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn file_sources_and_escaping_patterns_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let state = dir.path().join(".spin");
        let cases = [
            (placement("a.txt", "/a"), "mounts directories"),
            (FileMount::Pattern("../*".into()), "inside the manifest"),
            (FileMount::Pattern("/etc/*".into()), "inside the manifest"),
            (FileMount::Pattern("nothing".into()), "glob pattern"),
            (FileMount::Pattern("d/[".into()), "not valid"),
        ];
        for (entry, expected) in cases {
            let error = mounts("c", std::slice::from_ref(&entry), dir.path(), &state)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{entry:?}: {error}");
        }
    }

    #[test]
    fn a_pattern_copies_the_files_it_matches_at_their_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("static/css")).unwrap();
        std::fs::write(dir.path().join("static/index.html"), "<p>").unwrap();
        std::fs::write(dir.path().join("static/css/a.css"), "p{}").unwrap();
        std::fs::write(dir.path().join("other.txt"), "no").unwrap();
        let state = dir.path().join(".spin");
        // A stale copy from an earlier start is replaced.
        std::fs::create_dir_all(state.join("files/web")).unwrap();
        std::fs::write(state.join("files/web/stale"), "old").unwrap();
        let mounts = mounts(
            "web",
            &[FileMount::Pattern("static/**/*".into())],
            dir.path(),
            &state,
        )
        .unwrap();
        let copy = state.join("files/web");
        assert_eq!(
            mounts,
            [Mount {
                host: copy.clone(),
                guest: "/".into()
            }]
        );
        assert_eq!(
            std::fs::read_to_string(copy.join("static/css/a.css")).unwrap(),
            "p{}"
        );
        assert!(copy.join("static/index.html").is_file());
        assert!(!copy.join("other.txt").exists());
        assert!(!copy.join("stale").exists());
    }
}
