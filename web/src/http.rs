//! The axum integration: a layer that resolves every request's caller and
//! enforces login, CSRF and origin rules; a per-route role requirement; the
//! [`Caller`] and [`ClientAddr`] extractors; the auth routes (login, logout,
//! session, setup, API tokens, users) are in `routes`.
//!
//! ```
//! use axum::Router;
//! use axum::routing::{get, post};
//! use web::{Auth, Caller, Role};
//!
//! async fn values(caller: Caller) -> String {
//!     format!("values for {}", caller.user)
//! }
//!
//! async fn write() -> &'static str {
//!     "written"
//! }
//!
//! fn router(auth: &Auth) -> Router {
//!     Router::new()
//!         .route("/api/values", get(values))
//!         .route("/api/write", post(write).route_layer(auth.require(Role::Operator)))
//!         .merge(auth.routes())
//!         .layer(auth.layer())
//! }
//! ```

mod routes;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{FromFnLayer, Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::account::Role;
use crate::audit::AuthEventKind;
use crate::auth::{Auth, AuthError, Caller, Via};
use crate::csrf::{self, CSRF_HEADER, Origin};
use crate::secret::Secret;
use crate::store::StoreError;
use crate::token;

/// Where the auth routes live.
pub const LOGIN_PATH: &str = "/auth/login";
pub const LOGOUT_PATH: &str = "/auth/logout";
pub const SESSION_PATH: &str = "/auth/session";
pub const SETUP_PATH: &str = "/auth/setup";
pub const TOKENS_PATH: &str = "/auth/tokens";
pub const USERS_PATH: &str = "/auth/users";

/// Largest form body read for its CSRF field.
const MAX_FORM_BYTES: usize = 64 * 1024;

type BoxResponse = Pin<Box<dyn Future<Output = Response> + Send>>;

/// The layer [`Auth::layer`] returns.
pub type AuthLayer =
    FromFnLayer<fn(State<Auth>, Request, Next) -> BoxResponse, Auth, (State<Auth>, Request)>;

/// The state of a [`RequireLayer`].
#[derive(Debug, Clone)]
pub struct Required {
    auth: Auth,
    role: Role,
}

/// The layer [`Auth::require`] returns.
pub type RequireLayer = FromFnLayer<
    fn(State<Required>, Request, Next) -> BoxResponse,
    Required,
    (State<Required>, Request),
>;

impl Auth {
    /// The layer that guards a whole router: put it last (outermost) so the
    /// fallback is covered too. It resolves the caller from `Authorization:
    /// Bearer` or the session cookie and puts a [`Caller`] in the request's
    /// extensions. It refuses with 401 a non-public path without a caller,
    /// with 403 a write by a read-only token, a state-changing request from
    /// another origin (or, with a session, of unknown origin) and a
    /// cookie-authenticated state change without the right CSRF token.
    pub fn layer(&self) -> AuthLayer {
        from_fn_with_state(self.clone(), |s, r, n| Box::pin(authenticate(s, r, n)))
    }

    /// A route layer refusing callers below `role` (403), and writes by
    /// read-only tokens (403). Use with `route_layer` inside [`Auth::layer`].
    pub fn require(&self, role: Role) -> RequireLayer {
        let state = Required {
            auth: self.clone(),
            role,
        };
        from_fn_with_state(state, |s, r, n| Box::pin(require_role(s, r, n)))
    }

    /// True for paths open without login.
    pub fn is_public(&self, path: &str) -> bool {
        path == LOGIN_PATH
            || path == SETUP_PATH
            || self
                .config()
                .public_paths
                .iter()
                .any(|p| match p.strip_suffix('*') {
                    Some(prefix) => path.starts_with(prefix),
                    None => path == p,
                })
    }
}

// ---- responses ----

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let status = match &self {
            AuthError::BadCredentials | AuthError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AuthError::Throttled { retry_after } => {
                let mut r = error_response(StatusCode::TOO_MANY_REQUESTS, &self.to_string());
                let secs = retry_after.as_secs().max(1).to_string();
                if let Ok(v) = HeaderValue::from_str(&secs) {
                    r.headers_mut().insert(RETRY_AFTER, v);
                }
                return r;
            }
            AuthError::SetupClosed | AuthError::SetupTokenInvalid | AuthError::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            AuthError::LastAdmin | AuthError::Store(StoreError::Duplicate { .. }) => {
                StatusCode::CONFLICT
            }
            AuthError::Account(_) | AuthError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::NotFound(_) => StatusCode::NOT_FOUND,
            AuthError::Store(_)
            | AuthError::SetupFile { .. }
            | AuthError::Random(_)
            | AuthError::Task(_) => {
                tracing::error!(error = %self, "auth request failed");
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        };
        error_response(status, &self.to_string())
    }
}

fn unauthenticated() -> Response {
    let mut r = AuthError::Unauthenticated.into_response();
    r.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn forbidden(why: &'static str) -> Response {
    AuthError::Forbidden(why).into_response()
}

// ---- extractors ----

/// The client's IP address, when the server was started with
/// `into_make_service_with_connect_info::<SocketAddr>()`. Behind a reverse
/// proxy this is the proxy's address, so per-address throttling sees one
/// client; per-account throttling still holds.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

fn client_addr(parts: &axum::http::Extensions) -> Option<IpAddr> {
    parts
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(client_addr(&parts.extensions)))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(unauthenticated)
    }
}

/// A body in JSON or urlencoded form, by `Content-Type`.
pub struct JsonOrForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            Form::<T>::from_request(req, state)
                .await
                .map(|Form(t)| Self(t))
                .map_err(IntoResponse::into_response)
        } else {
            Json::<T>::from_request(req, state)
                .await
                .map(|Json(t)| Self(t))
                .map_err(IntoResponse::into_response)
        }
    }
}

// ---- the layers ----

fn bearer(headers: &HeaderMap) -> Option<Secret> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Secret::new(token.trim()))
}

async fn authenticate(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let public = auth.is_public(req.uri().path());
    let writes = csrf::is_state_changing(req.method());
    let addr = client_addr(req.extensions());
    let mut req = req;

    // Scripts: a bearer token, no cookies, so no CSRF.
    if let Some(bearer) = bearer(req.headers()) {
        let resolved = auth.blocking(move |a| a.authenticate_bearer(&bearer)).await;
        return match resolved {
            Ok(Some(caller)) if writes && !caller.may_write() => {
                refuse(
                    &auth,
                    AuthEventKind::Forbidden,
                    &caller.user,
                    addr,
                    "read-only API token",
                )
                .await;
                forbidden("this API token is read-only")
            }
            Ok(Some(caller)) => {
                req.extensions_mut().insert(caller);
                next.run(req).await
            }
            Ok(None) => unauthenticated(),
            Err(e) => e.into_response(),
        };
    }

    // Browsers: the session cookie.
    let cookie = auth.config().session.token_from(req.headers());
    let caller = match cookie.clone() {
        Some(t) => match auth.blocking(move |a| a.authenticate_session(&t)).await {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        },
        None => None,
    };

    if writes {
        let origin = csrf::request_origin(req.headers(), &auth.config().allowed_origins);
        let who = caller.as_ref().map_or("", |c| c.user.as_str());
        if origin == Origin::Cross || (origin == Origin::Unknown && caller.is_some() && !public) {
            let detail = format!(
                "{} {} from {origin:?} origin",
                req.method(),
                req.uri().path()
            );
            refuse(&auth, AuthEventKind::OriginRefused, who, addr, &detail).await;
            return forbidden("cross-origin request refused");
        }
    }

    let Some(caller) = caller else {
        if public {
            return next.run(req).await;
        }
        let mut r = unauthenticated();
        if cookie.is_some() {
            // The cookie names a dead session: drop it from the browser.
            if let Ok(v) = HeaderValue::from_str(&auth.config().session.clear_cookie()) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
        }
        return r;
    };

    if writes {
        let Via::Session { csrf_token } = &caller.via else {
            return forbidden("unexpected credentials");
        };
        let (ok, rebuilt) = check_csrf(req, csrf_token).await;
        req = match rebuilt {
            Ok(r) => r,
            Err(r) => return r,
        };
        if !ok {
            if public {
                // A public route runs anonymously rather than with an unproven session.
                return next.run(req).await;
            }
            let detail = format!("{} {}", req.method(), req.uri().path());
            refuse(
                &auth,
                AuthEventKind::CsrfRefused,
                &caller.user,
                addr,
                &detail,
            )
            .await;
            return forbidden("missing or wrong CSRF token");
        }
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Looks for the CSRF token in the header, then in a urlencoded form body
/// (which is read and put back).
async fn check_csrf(req: Request, expected: &Secret) -> (bool, Result<Request, Response>) {
    if let Some(given) = req.headers().get(CSRF_HEADER) {
        let ok = given
            .to_str()
            .is_ok_and(|g| token::equal(g, expected.expose()));
        return (ok, Ok(req));
    }
    let is_form = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return (false, Ok(req));
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return (
                false,
                Err(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "form body too large",
                )),
            );
        }
    };
    let ok = csrf::token_from_form(&bytes).is_some_and(|g| token::equal(g, expected.expose()));
    (ok, Ok(Request::from_parts(parts, Body::from(bytes))))
}

async fn refuse(auth: &Auth, kind: AuthEventKind, user: &str, addr: Option<IpAddr>, detail: &str) {
    tracing::warn!(kind = %kind, user = ?user, addr = ?addr, detail, "request refused");
    let user = (!user.is_empty()).then(|| user.to_owned());
    let detail = detail.to_owned();
    let _ = auth
        .blocking(move |a| {
            a.audit(kind, user.as_deref(), addr, detail);
            Ok(())
        })
        .await;
}

async fn require_role(State(req_state): State<Required>, req: Request, next: Next) -> Response {
    let Some(caller) = req.extensions().get::<Caller>() else {
        return unauthenticated();
    };
    let addr = client_addr(req.extensions());
    if !caller.has_role(req_state.role) {
        let detail = format!(
            "{} {} needs role {}",
            req.method(),
            req.uri().path(),
            req_state.role
        );
        refuse(
            &req_state.auth,
            AuthEventKind::Forbidden,
            &caller.user.clone(),
            addr,
            &detail,
        )
        .await;
        return forbidden("insufficient role");
    }
    if csrf::is_state_changing(req.method()) && !caller.may_write() {
        return forbidden("this API token is read-only");
    }
    next.run(req).await
}
