//! The repository's own documentation is complete: `README.md` and every page under `docs/`
//! link only to files that exist inside the repository.

use std::path::{Component, Path, PathBuf};

/// The targets of `[text](target)` links and of `` `../path` `` mentions in `markdown`.
fn references(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    for piece in markdown.split("](").skip(1) {
        if let Some(end) = piece.find(')') {
            found.push(piece[..end].to_string());
        }
    }
    for piece in markdown.split('`').skip(1).step_by(2) {
        if piece.starts_with("../") {
            found.push(piece.to_string());
        }
    }
    found
}

/// `path` with `.` and `..` resolved lexically; `None` once it climbs above its start.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Normal(part) => parts.push(part),
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

#[test]
fn readme_and_docs_refer_to_nothing_outside_the_repository() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![PathBuf::from("README.md")];
    for entry in std::fs::read_dir(repo.join("docs")).expect("docs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|extension| extension == "md") {
            pages.push(path.strip_prefix(&repo).expect("inside").to_path_buf());
        }
    }
    let mut wrong = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(repo.join(page)).expect("read");
        if text.contains("shared/spec") {
            wrong.push(format!("{}: mentions shared/spec", page.display()));
        }
        for target in references(&text) {
            let file = target.split('#').next().unwrap_or_default();
            if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                continue;
            }
            let joined = page.parent().unwrap_or(Path::new("")).join(file);
            match normalise(&joined) {
                Some(inside) if repo.join(&inside).exists() => {}
                Some(inside) => wrong.push(format!(
                    "{}: {target} ({} is missing)",
                    page.display(),
                    inside.display()
                )),
                None => wrong.push(format!("{}: {target} leaves the repository", page.display())),
            }
        }
    }
    assert!(pages.len() > 5, "{pages:?}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}
