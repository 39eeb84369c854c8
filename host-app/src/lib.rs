//! The host application: primary host session, history and the panel's API.

pub mod history;
pub mod inspect;
pub mod json;
