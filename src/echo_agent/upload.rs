//! `POST /upload`: multipart field `file` (at most 10 MiB) saved in a directory of its own
//! under the upload root, with a sanitized file name; answers `{"ok": true, "filePath": ...}`.

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::handlers::json_ok;
use super::http::App;
use super::problem::{Problem, host_of};

/// Largest accepted file.
pub const MAX_FILE: usize = 10 * 1024 * 1024;
/// Largest accepted request body: the file plus room for the multipart framing.
pub const MAX_BODY: usize = MAX_FILE + 1024 * 1024;

pub async fn upload(
    State(app): State<App>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let host = host_of(&headers);
    match save(&app, &host, multipart).await {
        Ok(path) => {
            #[derive(Serialize)]
            struct Uploaded {
                ok: bool,
                #[serde(rename = "filePath")]
                file_path: String,
            }
            json_ok(&host, "UploadResponseBody", &Uploaded { ok: true, file_path: path })
        }
        Err(problem) => problem.into_response(),
    }
}

async fn save(
    app: &App,
    host: &str,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<String, Problem> {
    let mut multipart = multipart.map_err(|rejection| {
        let status = if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            StatusCode::BAD_REQUEST
        };
        Problem::new(status, host, rejection.body_text())
    })?;
    let bad = |err: axum::extract::multipart::MultipartError| {
        let status = if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            StatusCode::PAYLOAD_TOO_LARGE
        } else {
            StatusCode::BAD_REQUEST
        };
        Problem::new(status, host, err.body_text())
    };
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        if field.name() != Some("file") {
            continue;
        }
        let name = sanitize(field.file_name().unwrap_or_default());
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            if data.len() + chunk.len() > MAX_FILE {
                return Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    host,
                    "file size exceeds 10MB limit",
                ));
            }
            data.extend_from_slice(&chunk);
        }
        let dir = app.upload_dir.join(uuid::Uuid::new_v4().simple().to_string());
        let path = dir.join(name);
        let written = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(&path, &data).await
        };
        written.await.map_err(|err| {
            tracing::error!(%err, path = %path.display(), "echo agent could not save an upload");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, host, "failed to write file")
        })?;
        return Ok(path.to_string_lossy().into_owned());
    }
    Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, host, "validation failed").with_error(
        "expected required property file to be present",
        "body",
        serde_json::Value::Null,
    ))
}

/// The last path component, without control characters; `upload` when nothing usable is left.
pub fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).collect();
    let clean = clean.trim().to_string();
    if clean.is_empty() || clean == "." || clean == ".." { "upload".to_string() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("../../etc/passwd"), "passwd");
        assert_eq!(sanitize("a\\b.txt"), "b.txt");
        assert_eq!(sanitize(".."), "upload");
        assert_eq!(sanitize(""), "upload");
        assert_eq!(sanitize("x\ny"), "xy");
    }
}
