//! The shell's own pages: log in (`/login`), first-run setup (`/setup`, opened from the
//! link with the one-time token), a plain message page; [`html`], how every page is
//! answered; and [`redirect_to_login`], which sends a browser without a session to the
//! login page instead of a JSON 401.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::auth::{Auth, Caller};
use crate::http::{LOGIN_PATH, SETUP_PATH};
use crate::shell::assets::Assets;
use crate::shell::layout::Shell;

/// The login page's path.
pub const LOGIN_PAGE: &str = "/login";
/// The setup page's path; the setup link adds `?token=...`.
pub const SETUP_PAGE: &str = "/setup";

/// Pages' script and style policy: nothing from elsewhere, no inline script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// A rendered page: HTML, never cached, never framed.
pub fn html<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = (status, body).into_response();
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert("content-security-policy", HeaderValue::from_static(CSP));
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "page could not be rendered",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    shell: Shell,
    login_url: &'static str,
}

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    shell: Shell,
    setup_url: &'static str,
    login_url: &'static str,
}

/// A page with a heading and one sentence (not found, forbidden, ...).
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub shell: Shell,
    pub heading: String,
    pub text: String,
}

#[derive(Clone)]
struct PagesState {
    auth: Auth,
    product: &'static str,
    assets: Arc<Assets>,
}

impl Auth {
    /// `GET /login` and `GET /setup`, for a product named `product`; list both (and
    /// the static prefix) in [`AuthConfig::public_paths`](crate::AuthConfig).
    pub fn pages<S: Clone + Send + Sync + 'static>(
        &self,
        product: &'static str,
        assets: Arc<Assets>,
    ) -> Router<S> {
        Router::new()
            .route(LOGIN_PAGE, get(login_page))
            .route(SETUP_PAGE, get(setup_page))
            .with_state(PagesState {
                auth: self.clone(),
                product,
                assets,
            })
    }
}

async fn setup_required(auth: &Auth) -> bool {
    auth.blocking(|a| a.setup_required()).await.unwrap_or(false)
}

async fn login_page(
    State(state): State<PagesState>,
    caller: Option<axum::Extension<Caller>>,
) -> Response {
    if caller.is_some() {
        return Redirect::to("/").into_response();
    }
    if setup_required(&state.auth).await {
        return Redirect::to(SETUP_PAGE).into_response();
    }
    let page = LoginPage {
        shell: Shell::anonymous(state.product, "Log in", &state.assets),
        login_url: LOGIN_PATH,
    };
    html(StatusCode::OK, &page)
}

async fn setup_page(State(state): State<PagesState>) -> Response {
    if !setup_required(&state.auth).await {
        return Redirect::to(LOGIN_PAGE).into_response();
    }
    let page = SetupPage {
        shell: Shell::anonymous(state.product, "Setup", &state.assets),
        setup_url: SETUP_PATH,
        login_url: LOGIN_PATH,
    };
    html(StatusCode::OK, &page)
}

/// True for a browser asking for a page (a GET accepting HTML), not a script.
pub fn wants_page(req: &Request) -> bool {
    req.method() == Method::GET
        && req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
}

/// Middleware (`axum::middleware::from_fn(redirect_to_login)`, outside
/// [`Auth::layer`]): a browser's page request refused with 401 is sent to the login
/// page, which comes back to the page after logging in. API clients keep their 401.
pub async fn redirect_to_login(req: Request, next: Next) -> Response {
    let wants_page = wants_page(&req);
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let response = next.run(req).await;
    if !wants_page || response.status() != StatusCode::UNAUTHORIZED {
        return response;
    }
    let target = if path == "/" {
        LOGIN_PAGE.to_owned()
    } else {
        format!("{LOGIN_PAGE}?next={}", encode_component(&path))
    };
    let mut redirect = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        redirect.headers_mut().insert(LOCATION, v);
    }
    // Keep the cookie-clearing header of a dead session.
    if let Some(v) = response.headers().get(axum::http::header::SET_COOKIE) {
        redirect
            .headers_mut()
            .insert(axum::http::header::SET_COOKIE, v.clone());
    }
    redirect
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_encoded() {
        assert_eq!(
            encode_component("/trends?m=a b&x"),
            "/trends%3Fm%3Da%20b%26x"
        );
    }
}
