//! Account management: creating, listing, re-roling, re-passwording and
//! deleting accounts; admins only, or a local tool acting as the owner.

use crate::account::{Role, Username, check_password};
use crate::audit::AuthEventKind;
use crate::auth::{Auth, AuthError, Caller, UserInfo};
use crate::secret::Secret;
use crate::store::{NewUser, StoreError, UserRecord};

/// The store's refusal to remove the last admin, as the service says it.
fn last_admin(e: StoreError) -> AuthError {
    match e {
        StoreError::LastAdmin => AuthError::LastAdmin,
        other => other.into(),
    }
}

impl Auth {
    fn admin(by: Option<&Caller>) -> Result<(), AuthError> {
        match by {
            Some(c) if !c.has_role(Role::Admin) => Err(AuthError::Forbidden("admin role required")),
            _ => Ok(()),
        }
    }

    fn actor(by: Option<&Caller>) -> String {
        by.map_or_else(|| "local".to_owned(), |c| c.user.clone())
    }

    fn user(&self, username: &str) -> Result<UserRecord, AuthError> {
        self.inner
            .store
            .user_by_name(username)?
            .ok_or_else(|| AuthError::NotFound(format!("user {username:?}")))
    }

    /// Creates an account. `by` is the admin doing it, or `None` for a
    /// local tool (e.g. a command line run by the service's owner).
    pub fn create_user(
        &self,
        by: Option<&Caller>,
        username: &str,
        password: &Secret,
        role: Role,
    ) -> Result<UserInfo, AuthError> {
        Self::admin(by)?;
        let name = Username::parse(username)?;
        check_password(password)?;
        let hash = self.inner.hasher.hash(password)?;
        let id = self.inner.store.create_user(&NewUser {
            username: name.as_str(),
            role,
            password_hash: &hash,
            created_ms: self.now(),
        })?;
        self.audit(
            AuthEventKind::UserCreated,
            Some(name.as_str()),
            None,
            format!("role {role}, by {}", Self::actor(by)),
        );
        Ok(UserInfo {
            id,
            username: name.as_str().to_owned(),
            role,
        })
    }

    /// All accounts (admin).
    pub fn list_users(&self, by: Option<&Caller>) -> Result<Vec<UserInfo>, AuthError> {
        Self::admin(by)?;
        Ok(self
            .inner
            .store
            .list_users()?
            .iter()
            .map(UserInfo::from)
            .collect())
    }

    /// Changes an account's role (admin); the last admin stays an admin.
    pub fn set_role(
        &self,
        by: Option<&Caller>,
        username: &str,
        role: Role,
    ) -> Result<(), AuthError> {
        Self::admin(by)?;
        let user = self.user(username)?;
        self.inner
            .store
            .set_role(user.id, role)
            .map_err(last_admin)?;
        self.audit(
            AuthEventKind::RoleChanged,
            Some(username),
            None,
            format!("{} -> {role}, by {}", user.role, Self::actor(by)),
        );
        Ok(())
    }

    /// Sets a new password (the account itself or an admin) and ends the
    /// account's sessions.
    pub fn set_password(
        &self,
        by: Option<&Caller>,
        username: &str,
        password: &Secret,
    ) -> Result<(), AuthError> {
        if by.is_some_and(|c| c.user != username) {
            Self::admin(by)?;
        }
        check_password(password)?;
        let user = self.user(username)?;
        let hash = self.inner.hasher.hash(password)?;
        self.inner.store.set_password_hash(user.id, &hash)?;
        self.inner.store.delete_user_sessions(user.id)?;
        self.audit(
            AuthEventKind::PasswordChanged,
            Some(username),
            None,
            format!("by {}", Self::actor(by)),
        );
        Ok(())
    }

    /// Deletes an account with its sessions and tokens (admin); the last
    /// admin cannot be deleted.
    pub fn delete_user(&self, by: Option<&Caller>, username: &str) -> Result<(), AuthError> {
        Self::admin(by)?;
        let user = self.user(username)?;
        self.inner.store.delete_user(user.id).map_err(last_admin)?;
        self.audit(
            AuthEventKind::UserDeleted,
            Some(username),
            None,
            format!("by {}", Self::actor(by)),
        );
        Ok(())
    }
}
