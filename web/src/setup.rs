//! First-run setup: while no admin exists, the only way in is a one-time
//! setup token, written to a file only the service's user can read (mode
//! 0600) and handed back to the application to log where the installer
//! looks. The token's hash is held in memory; it works once, and a restart
//! before setup issues a new one.

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::path::PathBuf;

use crate::account::{Role, Username, check_password};
use crate::audit::AuthEventKind;
use crate::auth::{Auth, AuthError, UserInfo, random};
use crate::lock;
use crate::store::{NewUser, StoreError};
use crate::token::{self, TokenHash};

use crate::secret::Secret;

/// Writes `token` to `path` with mode 0600, replacing any older file.
pub(crate) fn write_token_file(path: &Path, token: &Secret) -> std::io::Result<()> {
    infra::secret::write_private_file(path, format!("{}\n", token.expose()).as_bytes())
}

/// Removes the token file once setup is done; a missing file is fine.
pub(crate) fn remove_token_file(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The setup token in force: its hash and where its file is.
pub(crate) struct PendingSetup {
    pub(crate) hash: TokenHash,
    pub(crate) path: PathBuf,
}

impl Auth {
    /// True while no admin account exists.
    pub fn setup_required(&self) -> Result<bool, AuthError> {
        Ok(self.inner.store.count_admins()? == 0)
    }

    /// While no admin exists: issues a one-time setup token, writes it to
    /// `path` (mode 0600) and returns it for the application to show the
    /// installer. `None` once an admin exists.
    pub fn begin_setup(&self, path: &Path) -> Result<Option<Secret>, AuthError> {
        if !self.setup_required()? {
            return Ok(None);
        }
        let token = random("")?;
        write_token_file(path, &token).map_err(|source| AuthError::SetupFile {
            path: path.to_owned(),
            source,
        })?;
        *lock(&self.inner.setup) = Some(PendingSetup {
            hash: token::hash_token(token.expose()),
            path: path.to_owned(),
        });
        tracing::info!(path = %path.display(), "first-run setup token written");
        Ok(Some(token))
    }

    /// Creates the first admin with the setup token. The token works once.
    pub fn complete_setup(
        &self,
        setup_token: &Secret,
        username: &str,
        password: &Secret,
        addr: Option<IpAddr>,
    ) -> Result<UserInfo, AuthError> {
        let refuse = |e: AuthError| {
            self.audit(
                AuthEventKind::SetupRefused,
                Some(username),
                addr,
                e.to_string(),
            );
            Err(e)
        };
        if !self.setup_required()? {
            return refuse(AuthError::SetupClosed);
        }
        let name = Username::parse(username)?;
        check_password(password)?;
        let pending = {
            let mut guard = lock(&self.inner.setup);
            let matches = guard.as_ref().is_some_and(|p| {
                let given = token::hash_token(setup_token.expose());
                token::equal_bytes(&p.hash.0, &given.0)
            });
            if !matches {
                drop(guard);
                return refuse(AuthError::SetupTokenInvalid);
            }
            guard.take()
        };
        let hash = self.inner.hasher.hash(password)?;
        let created = self.inner.store.create_first_admin(&NewUser {
            username: name.as_str(),
            role: Role::Admin,
            password_hash: &hash,
            created_ms: self.now(),
        });
        let id = match created {
            Ok(id) => id,
            Err(StoreError::AdminExists) => return refuse(AuthError::SetupClosed),
            Err(e) => return Err(e.into()),
        };
        if let Some(p) = pending
            && let Err(e) = remove_token_file(&p.path)
        {
            tracing::warn!(path = %p.path.display(), error = %e, "could not remove the used setup token file");
        }
        self.audit(
            AuthEventKind::SetupCompleted,
            Some(name.as_str()),
            addr,
            "first admin created",
        );
        tracing::info!(user = ?name, "first admin account created");
        Ok(UserInfo {
            id,
            username: name.as_str().to_owned(),
            role: Role::Admin,
        })
    }
}
