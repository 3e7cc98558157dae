//! `helpers init-github-repository` against a local bare repository served over HTTP with
//! basic auth: the token works, and it is never written to disk nor passed on a command line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const TOKEN: &str = "ghs_repo_test_token_42";
/// `x-access-token:<TOKEN>` in base64, as git sends it.
const EXPECTED_BASIC: &str = "Basic eC1hY2Nlc3MtdG9rZW46Z2hzX3JlcG9fdGVzdF90b2tlbl80Mg==";

fn git(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

/// A bare `owner/repo.git` under `root` (served by git's "dumb" HTTP protocol) with one commit.
fn bare_repository(root: &Path, work: &Path) -> PathBuf {
    let bare = root.join("owner/repo.git");
    std::fs::create_dir_all(&bare).expect("dirs");
    git(&bare, &["init", "--bare", "-q", "-b", "trunk"]);
    git(work, &["init", "-q", "-b", "trunk"]);
    std::fs::write(work.join("README.md"), "hello\n").expect("file");
    git(work, &["add", "README.md"]);
    git(work, &["commit", "-q", "-m", "first"]);
    git(work, &["push", "-q", bare.to_str().expect("utf8"), "trunk"]);
    git(&bare, &["update-server-info"]);
    bare
}

#[derive(Clone)]
struct Served {
    root: PathBuf,
    authorized: Arc<Mutex<usize>>,
}

async fn serve_file(State(served): State<Served>, request: Request) -> Response {
    let authorized =
        request.headers().get(header::AUTHORIZATION).is_some_and(|value| value == EXPECTED_BASIC);
    if !authorized {
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")])
            .into_response();
    }
    *served.authorized.lock().expect("lock") += 1;
    let path = request.uri().path().trim_start_matches('/');
    if path.split('/').any(|part| part == "..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match std::fs::read(served.root.join(path)) {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn run_helper(
    host: &str,
    clone_dir: &Path,
    home: &Path,
    token: Option<&str>,
    path_dir: &Path,
) -> bool {
    let mut command = tokio::process::Command::new(crate::support::binary());
    command
        .args([
            "helpers",
            "init-github-repository",
            "--repo-fullname",
            "owner/repo",
            "--scheme",
            "http",
            "--host",
            host,
        ])
        .arg("--clone-dir")
        .arg(clone_dir)
        .env("HOME", home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env(
            "PATH",
            format!("{}:{}", path_dir.display(), std::env::var("PATH").unwrap_or_default()),
        )
        .env_remove("GITHUB_TOKEN");
    if let Some(token) = token {
        command.env("GITHUB_TOKEN", token);
    }
    command.status().await.expect("helper runs").success()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_private_repository_is_cloned_and_updated_with_the_token_kept_off_disk_and_argv() {
    let scratch = tempfile::tempdir().expect("dir");
    let [root, work, home, shims] = ["served", "work", "home", "shims"].map(|name| {
        let dir = scratch.path().join(name);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    });
    bare_repository(&root, &work);
    // A `git` in front of the real one that records every command line it is given.
    let argv_log = scratch.path().join("git-argv.log");
    let real_git = which_git();
    std::fs::write(
        shims.join("git"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            argv_log.display(),
            real_git
        ),
    )
    .expect("shim");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shims.join("git"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");

    let served = Served { root: root.clone(), authorized: Arc::new(Mutex::new(0)) };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let host = listener.local_addr().expect("addr").to_string();
    let app = axum::Router::new().fallback(serve_file).with_state(served.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let clone_dir = scratch.path().join("clone");
    assert!(!run_helper(&host, &clone_dir, &home, None, &shims).await, "no token, no clone");
    assert!(run_helper(&host, &clone_dir, &home, Some(TOKEN), &shims).await, "the token opens it");
    assert_eq!(std::fs::read_to_string(clone_dir.join("README.md")).expect("cloned"), "hello\n");
    assert!(*served.authorized.lock().expect("lock") > 0);

    // Update after a new commit on the default branch (whatever its name).
    std::fs::write(work.join("NEW.md"), "news\n").expect("file");
    git(&work, &["add", "NEW.md"]);
    git(&work, &["commit", "-q", "-m", "second"]);
    git(&work, &["push", "-q", root.join("owner/repo.git").to_str().expect("utf8"), "trunk"]);
    git(&root.join("owner/repo.git"), &["update-server-info"]);
    assert!(run_helper(&host, &clone_dir, &home, Some(TOKEN), &shims).await, "update works");
    assert!(clone_dir.join("NEW.md").exists());

    assert!(
        files_containing(&clone_dir, TOKEN.as_bytes()).is_empty(),
        "token written into the clone"
    );
    assert!(files_containing(&home, TOKEN.as_bytes()).is_empty(), "token written into HOME");
    let argv = std::fs::read_to_string(&argv_log).expect("git was called through the shim");
    assert!(argv.contains("clone") && !argv.contains(TOKEN), "{argv}");
}

fn which_git() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(|dir| Path::new(dir).join("git"))
        .find(|candidate| candidate.is_file())
        .map(|found| found.display().to_string())
        .expect("git on PATH")
}
