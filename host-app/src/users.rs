//! `host-app user add|passwd|list|remove` ([`web::cli`]) on the panel's accounts database:
//! the state directory's, or the PostgreSQL history's (shared by every instance on it).

use web::Auth;
use web::cli::UserError;

use crate::api::access;
use crate::config::HostConfig;

/// The auth service on the host's accounts database (created when absent).
pub fn open(config: &HostConfig) -> Result<Auth, UserError> {
    let dir = config.state_dir();
    access::ensure_state_dir(&dir)
        .map_err(|e| UserError::Failed(format!("api.state_dir {}: {e}", dir.display())))?;
    access::build(&config.api, &dir, &config.history, None).map_err(UserError::Failed)
}
