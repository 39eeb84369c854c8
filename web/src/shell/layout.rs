//! [`Shell`]: what the base template (`templates/base.html`) shows around a page: the
//! product name, the page title, the navigation, the logged-in user and role, the CSRF
//! token the page's scripts send, and the style sheets and scripts the page loads.

use crate::account::Role;
use crate::auth::{Caller, Via};
use crate::http::LOGOUT_PATH;
use crate::shell::assets::Assets;

/// One link of the top bar.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

/// The logged-in user, as the top bar shows it.
#[derive(Debug, Clone)]
pub struct ShellUser {
    pub name: String,
    pub role: Role,
}

/// The frame of every page.
#[derive(Debug, Clone)]
pub struct Shell {
    pub product: &'static str,
    pub title: String,
    pub user: Option<ShellUser>,
    pub csrf_token: String,
    pub nav: Vec<NavItem>,
    pub styles: Vec<String>,
    pub scripts: Vec<String>,
    pub icon: String,
    pub logout_url: &'static str,
}

impl Shell {
    /// A page without a user (login, setup): the shell's style sheet and script only.
    pub fn anonymous(product: &'static str, title: impl Into<String>, assets: &Assets) -> Shell {
        Shell {
            product,
            title: title.into(),
            user: None,
            csrf_token: String::new(),
            nav: Vec::new(),
            styles: vec![assets.url("panel.css")],
            scripts: vec![assets.url("panel.js")],
            icon: assets.url("favicon.svg"),
            logout_url: LOGOUT_PATH,
        }
    }

    /// A page for `caller`, with the links its role may follow (`nav` lists each link
    /// with the least role that sees it); the link whose href is `active` is marked.
    pub fn for_caller(
        product: &'static str,
        title: impl Into<String>,
        caller: &Caller,
        nav: &[(&'static str, &'static str, Role)],
        active: &str,
        assets: &Assets,
    ) -> Shell {
        let csrf_token = match &caller.via {
            Via::Session { csrf_token } => csrf_token.expose().to_owned(),
            Via::ApiToken { .. } => String::new(),
        };
        Shell {
            user: Some(ShellUser {
                name: caller.user.clone(),
                role: caller.role,
            }),
            csrf_token,
            nav: nav
                .iter()
                .filter(|(_, _, role)| caller.has_role(*role))
                .map(|&(href, label, _)| NavItem {
                    href,
                    label,
                    active: href == active,
                })
                .collect(),
            ..Shell::anonymous(product, title, assets)
        }
    }

    /// Adds the files named (style sheets by `.css`, scripts otherwise) after the shell's.
    pub fn with_assets(mut self, assets: &Assets, names: &[&str]) -> Shell {
        for name in names {
            let url = assets.url(name);
            if name.ends_with(".css") {
                self.styles.push(url);
            } else {
                self.scripts.push(url);
            }
        }
        self
    }
}
