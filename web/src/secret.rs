//! Secrets (passwords, session, API and setup tokens): the one [`Secret`] type of the
//! workspace, whose `Debug` and `Display` never show the value.

pub use infra::secret::Secret;
