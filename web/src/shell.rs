//! The panel shell both applications' pages are built on: the base layout (top bar with
//! the navigation, the user and role, log out), the login and setup pages, the embedded
//! static files, and the redirect to login for pages opened without a session.
//!
//! - [`assets`]: static files embedded at build time, served under hashed URLs.
//! - [`layout`]: [`Shell`], what the base template shows around every page.
//! - [`pages`]: the login, setup and message pages, and the login redirect.
//!
//! Templates are askama's, compiled with the crate: `web/templates/base.html` is the
//! layout an application's own templates extend (an application lists `../web/templates`
//! in its `askama.toml` dirs).

pub mod assets;
pub mod layout;
pub mod pages;

pub use assets::{Asset, Assets, SHELL_ASSETS};
pub use layout::{NavItem, Shell, ShellUser};
pub use pages::{MessagePage, html, redirect_to_login, wants_page};
