//! The host application: primary host session, history and the panel's API.

pub mod broker;
pub mod history;
pub mod inspect;
pub mod json;
pub mod tracker;
