//! The auth routes: login, logout, the current session, first-run setup,
//! the caller's API tokens and (admins) accounts. Every handler runs the
//! service on the blocking pool; those that hash a password take a hash slot.

use axum::extract::{Path, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{
    ClientAddr, JsonOrForm, LOGIN_PATH, LOGOUT_PATH, SESSION_PATH, SETUP_PATH, TOKENS_PATH,
    USERS_PATH,
};
use crate::account::Role;
use crate::api_token::Scope;
use crate::auth::{Auth, Caller, Via};
use crate::secret::Secret;

impl Auth {
    /// The auth routes; merge them into the application's router, inside
    /// [`Auth::layer`].
    ///
    /// - `POST /auth/login` `{username, password}` (JSON or form): 200 with the
    ///   session cookie and `{user, role, csrf_token}`; 401; 429 + Retry-After.
    /// - `POST /auth/logout`: 204, cookie cleared.
    /// - `GET /auth/session`: `{user, role, via, csrf_token}`.
    /// - `GET /auth/setup`: `{setup_required}`; `POST /auth/setup`
    ///   `{setup_token, username, password}`: 201, the first admin.
    /// - `GET|POST /auth/tokens`, `DELETE /auth/tokens/{id}`: the caller's API
    ///   tokens; POST `{name, scope}` returns the token once.
    /// - `GET|POST /auth/users`, `DELETE /auth/users/{username}`: admin only.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        Router::new()
            .route(LOGIN_PATH, post(login))
            .route(LOGOUT_PATH, post(logout))
            .route(SESSION_PATH, get(session))
            .route(SETUP_PATH, get(setup_status).post(setup))
            .route(TOKENS_PATH, get(list_tokens).post(create_token))
            .route(&format!("{TOKENS_PATH}/{{id}}"), delete(revoke_token))
            .route(
                USERS_PATH,
                get(list_users)
                    .post(create_user)
                    .route_layer(self.require(Role::Admin)),
            )
            .route(
                &format!("{USERS_PATH}/{{username}}"),
                delete(delete_user).route_layer(self.require(Role::Admin)),
            )
            .with_state(self.clone())
    }
}

#[derive(Deserialize)]
struct LoginRequest {
    username: String,
    password: Secret,
}

async fn login(
    State(auth): State<Auth>,
    ClientAddr(addr): ClientAddr,
    JsonOrForm(body): JsonOrForm<LoginRequest>,
) -> Response {
    let result = auth
        .blocking_hash(move |a| a.login(&body.username, &body.password, addr))
        .await;
    match result {
        Ok(login) => {
            let mut r = Json(json!({
                "user": login.user.username,
                "role": login.user.role,
                "csrf_token": login.csrf_token.expose(),
            }))
            .into_response();
            if let Ok(v) = HeaderValue::from_str(login.set_cookie.expose()) {
                r.headers_mut().insert(SET_COOKIE, v);
            }
            r
        }
        Err(e) => e.into_response(),
    }
}

async fn logout(
    State(auth): State<Auth>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
) -> Response {
    let cfg = auth.config().session.clone();
    if let Some(t) = cfg.token_from(&headers)
        && let Err(e) = auth.blocking(move |a| a.logout(&t, addr)).await
    {
        return e.into_response();
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&cfg.clear_cookie()) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

async fn session(caller: Caller) -> Response {
    let (via, csrf) = match &caller.via {
        Via::Session { csrf_token } => ("session", Some(csrf_token.expose().to_owned())),
        Via::ApiToken { .. } => ("api_token", None),
    };
    Json(json!({ "user": caller.user, "role": caller.role, "via": via, "csrf_token": csrf }))
        .into_response()
}

async fn setup_status(State(auth): State<Auth>) -> Response {
    match auth.blocking(|a| a.setup_required()).await {
        Ok(required) => Json(json!({ "setup_required": required })).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct SetupRequest {
    setup_token: Secret,
    username: String,
    password: Secret,
}

async fn setup(
    State(auth): State<Auth>,
    ClientAddr(addr): ClientAddr,
    JsonOrForm(body): JsonOrForm<SetupRequest>,
) -> Response {
    let result = auth
        .blocking_hash(move |a| {
            a.complete_setup(&body.setup_token, &body.username, &body.password, addr)
        })
        .await;
    match result {
        Ok(user) => (StatusCode::CREATED, Json(user)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    name: String,
    scope: Scope,
}

async fn create_token(
    State(auth): State<Auth>,
    caller: Caller,
    JsonOrForm(body): JsonOrForm<TokenRequest>,
) -> Response {
    match auth
        .blocking(move |a| a.create_api_token(&caller, &body.name, body.scope))
        .await
    {
        Ok(t) => (
            StatusCode::CREATED,
            Json(
                json!({ "id": t.id, "name": t.name, "scope": t.scope, "token": t.token.expose() }),
            ),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_tokens(State(auth): State<Auth>, caller: Caller) -> Response {
    match auth.blocking(move |a| a.list_api_tokens(&caller)).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn revoke_token(State(auth): State<Auth>, caller: Caller, Path(id): Path<i64>) -> Response {
    match auth
        .blocking(move |a| a.revoke_api_token(&caller, id))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
struct UserRequest {
    username: String,
    password: Secret,
    role: Role,
}

async fn create_user(
    State(auth): State<Auth>,
    caller: Caller,
    JsonOrForm(body): JsonOrForm<UserRequest>,
) -> Response {
    match auth
        .blocking_hash(move |a| {
            a.create_user(Some(&caller), &body.username, &body.password, body.role)
        })
        .await
    {
        Ok(user) => (StatusCode::CREATED, Json(user)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_users(State(auth): State<Auth>, caller: Caller) -> Response {
    match auth.blocking(move |a| a.list_users(Some(&caller))).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete_user(
    State(auth): State<Auth>,
    caller: Caller,
    Path(username): Path<String>,
) -> Response {
    match auth
        .blocking(move |a| a.delete_user(Some(&caller), &username))
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
