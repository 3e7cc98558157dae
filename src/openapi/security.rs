//! The three ways to authenticate (api.md "Authentication") as OpenAPI security schemes:
//! `apiKey` (a header), `bearer`, and `sessionCookie`. The derive cannot declare schemes, so
//! [`SecuritySchemes`] adds them to the generated document.

use utoipa::Modify;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};

/// Adds `apiKey`, `bearer` and `sessionCookie` to `components.securitySchemes`.
pub struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                "A static API key from `auth.static.api_keys` or the keys file. The header name \
                 is `auth.static.header_name` (default `X-API-Key`). A static key is also \
                 accepted as a bearer token.",
            ))),
        );
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "`Authorization: Bearer <t>` or `Authorization: token <t>`: a proxy-issued OAuth \
             token (`aps_...`), a static API key, or, with `auth.github.enabled`, a GitHub token \
             (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_` or 40 hex characters) \
             validated against `auth.github.base_url`. `auth.github.token_header` may name \
             another header."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "sessionCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "__Host-apx_session",
                "Set by the OAuth browser flow (`apx_session` with `server.insecure_cookies`). \
                 Unsafe methods authenticated by this cookie must pass the CSRF guard: `Origin` \
                 equal to `server.public_url`'s origin, `Sec-Fetch-Site: same-origin`, \
                 `X-Requested-With`, or `Content-Type: application/json`; else 403.",
            ))),
        );
    }
}
