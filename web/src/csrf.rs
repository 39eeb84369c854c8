//! Cross-site request defences for cookie-authenticated requests.
//!
//! Every state-changing request (POST, PUT, PATCH, DELETE) must carry the
//! session's CSRF token in the `x-csrf-token` header or the `csrf_token` form
//! field, compared in constant time, and must come from this origin: a
//! `Sec-Fetch-Site` other than `same-origin`/`none`, or an `Origin` that is not
//! this host (nor an allowed origin), is refused; so is a request that
//! carries neither header. The CSRF token is derived from the session token,
//! so storage holds nothing an attacker could replay.

use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method};

use crate::secret::Secret;
use crate::token;

/// Header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf_token";

/// The CSRF token of the session whose token is `session_token`.
pub fn csrf_token(session_token: &Secret) -> Secret {
    Secret::new(token::derive("csrf-v1", session_token.expose()))
}

/// True for methods that change state.
pub fn is_state_changing(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Where a request says it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Same origin (or a user-initiated navigation).
    Same,
    /// Another site, or an origin this server does not serve.
    Cross,
    /// Neither `Origin` nor `Sec-Fetch-Site` is present.
    Unknown,
}

/// Classifies a request by its `Sec-Fetch-Site` and `Origin` headers; any
/// header that points elsewhere makes it [`Origin::Cross`].
pub fn request_origin(headers: &HeaderMap, allowed_origins: &[String]) -> Origin {
    let mut seen = false;
    if let Some(site) = headers.get("sec-fetch-site") {
        seen = true;
        if !matches!(site.to_str(), Ok("same-origin" | "none")) {
            return Origin::Cross;
        }
    }
    if let Some(origin) = headers.get(ORIGIN) {
        seen = true;
        let Ok(origin) = origin.to_str() else {
            return Origin::Cross;
        };
        let host = headers.get(HOST).and_then(|h| h.to_str().ok());
        if !origin_allowed(origin, host, allowed_origins) {
            return Origin::Cross;
        }
    }
    if seen { Origin::Same } else { Origin::Unknown }
}

fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    // "null" and anything without a scheme never match.
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !authority.contains('/')
        && host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

/// The CSRF token of a urlencoded form body, if present. Valid tokens are
/// base64url, which form encoding leaves as it is, so no decoding is needed.
pub fn token_from_form(body: &[u8]) -> Option<&str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == CSRF_FIELD)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn origin_classification() {
        let none: &[String] = &[];
        let host = ("host", "panel.local:8080");
        assert_eq!(request_origin(&headers(&[host]), none), Origin::Unknown);
        assert_eq!(
            request_origin(
                &headers(&[host, ("origin", "http://panel.local:8080")]),
                none
            ),
            Origin::Same
        );
        assert_eq!(
            request_origin(&headers(&[host, ("origin", "http://evil.example")]), none),
            Origin::Cross
        );
        assert_eq!(
            request_origin(&headers(&[host, ("origin", "null")]), none),
            Origin::Cross
        );
        assert_eq!(
            request_origin(&headers(&[host, ("sec-fetch-site", "cross-site")]), none),
            Origin::Cross
        );
        assert_eq!(
            request_origin(&headers(&[host, ("sec-fetch-site", "same-site")]), none),
            Origin::Cross
        );
        assert_eq!(
            request_origin(&headers(&[host, ("sec-fetch-site", "same-origin")]), none),
            Origin::Same
        );
        // A proxy in front: the browser's origin is listed explicitly.
        let allowed = vec!["https://panel.example".to_owned()];
        assert_eq!(
            request_origin(
                &headers(&[host, ("origin", "https://panel.example")]),
                &allowed
            ),
            Origin::Same
        );
    }

    #[test]
    fn form_field() {
        assert_eq!(
            token_from_form(b"a=1&csrf_token=abc-_9&b=2"),
            Some("abc-_9")
        );
        assert_eq!(token_from_form(b"a=1"), None);
    }
}
