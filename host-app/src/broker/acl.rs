//! Who may connect to the embedded broker, under which client ids, and what each account
//! may publish and subscribe to. Default deny: a client gets only what its account's role
//! grants; anonymous clients connect only with `allow_anonymous = true`.
//!
//! Roles (`[[broker.embedded.users]]`, see README.md "Broker accounts and access rules"):
//!
//! - `edge` (`group_id`, `edge_node_ids`): publishes only NBIRTH/NDEATH/NDATA of its edge
//!   nodes and DBIRTH/DDEATH/DDATA of their devices; its will only on its own NDEATH;
//!   subscribes only to its own NCMD and DCMD topics and to STATE topics. Its client id is
//!   `<group_id>:<edge_node_id>` of one of its nodes (the edge node's default).
//! - `host` (`host_id`): alone publishes `spBv1.0/STATE/<host_id>` (also as its will) and
//!   NCMD/DCMD; subscribes to `spBv1.0/#` and the Sparkplug Aware certificates. Its client
//!   id is `<host_id>` or `host-<host_id>` (this host's own session).
//! - `reader`: subscribes only, to `subscribe` (default `spBv1.0/#`).
//! - `custom`: the `publish` and `subscribe` filters listed (`%u` and `%c` stand for the
//!   username and client id) plus the grants of the ACL file; its `deny` filters (and the
//!   file's) refuse what they cover whatever grants it (readers may have `deny` too).
//!
//! Any account may also own client ids starting with its `client_id_prefix`. A client id
//! an account owns is refused to everyone else, so nobody takes over another's session
//! (and the front lets only the account of an open session take its client id over).

use std::borrow::Cow;
use std::collections::HashMap;

use infra::logging::Escaped;
use infra::{ConfigError, Problems};
use sparkplug::topic::{NAMESPACE, STATE};
use sparkplug::{AnyTopic, IdPart, MessageType, StateTopic, Topic, filter};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::acl_file::{AclFile, FileGrants};
use super::codec::Refusal;
use super::config::{EmbeddedConfig, Role, Secret, UserConfig};
use super::policy::TopicPolicy;
use super::topic_filter::{covers, is_topic_name, validate};

/// Sparkplug Aware brokers keep births here (Sparkplug 3.0, chapter 10); hosts read them.
const CERTIFICATES_ALL: &str = "$sparkplug/certificates/#";

/// What an edge account publishes: births, deaths and data of its nodes and devices.
const EDGE_PUBLISHES: [MessageType; 6] = [
    MessageType::NBirth,
    MessageType::NDeath,
    MessageType::NData,
    MessageType::DBirth,
    MessageType::DDeath,
    MessageType::DData,
];

/// The access rules of one embedded broker, built from a validated configuration.
pub struct Acl {
    accounts: Vec<Account>,
    by_name: HashMap<String, usize>,
    /// The rights of clients without a username; `None`: anonymous access is off.
    anonymous: Option<Rights>,
}

#[derive(PartialEq)]
struct Account {
    name: String,
    /// `None` only for a configuration that was not validated: such an account never logs in.
    password: Option<Secret>,
    rights: Rights,
    client_ids: Binding,
}

#[derive(PartialEq)]
enum Rights {
    Edge {
        group_id: String,
        edge_node_ids: Vec<String>,
        /// Its NCMD and DCMD filters and every STATE topic.
        subscribe: Vec<String>,
    },
    Host {
        host_id: String,
    },
    /// `reader` (nothing to publish) and `custom`; `deny` overrides both lists.
    Listed {
        publish: Filters,
        subscribe: Filters,
        deny: Filters,
    },
}

/// The client ids an account owns: these ids and those starting with `prefix`.
#[derive(Debug, Default, PartialEq)]
struct Binding {
    ids: Vec<String>,
    prefix: Option<String>,
}

impl Binding {
    fn holds(&self, client_id: &str) -> bool {
        self.ids.iter().any(|id| id == client_id)
            || self
                .prefix
                .as_deref()
                .is_some_and(|p| client_id.starts_with(p))
    }

    fn is_empty(&self) -> bool {
        self.ids.is_empty() && self.prefix.is_none()
    }
}

/// A client the front let in: the account it logged in as (`None`: anonymous).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    account: Option<String>,
}

impl Login {
    /// The account name the engine is told (and the policy is asked with).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }
}

/// Why a CONNECT is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("anonymous access is not allowed")]
    AnonymousNotAllowed,
    #[error("unknown username or wrong password")]
    BadCredentials,
    #[error("the client id is not valid UTF-8")]
    InvalidClientId,
    #[error("the client id belongs to account {owner:?}")]
    ClientIdTaken { owner: String },
    #[error("the client id is not one of the account's")]
    ClientIdNotBound,
    #[error("the client id is in use by a session of another account")]
    ClientIdInUse,
    #[error("the will topic is not the client's to publish")]
    Will,
}

impl Denied {
    /// The CONNACK refusal sent for it.
    pub(crate) fn refusal(&self) -> Refusal {
        match self {
            Denied::BadCredentials => Refusal::BadUsernameOrPassword,
            Denied::InvalidClientId => Refusal::IdentifierRejected,
            Denied::AnonymousNotAllowed
            | Denied::ClientIdTaken { .. }
            | Denied::ClientIdNotBound
            | Denied::ClientIdInUse
            | Denied::Will => Refusal::NotAuthorized,
        }
    }
}

impl Acl {
    /// Builds the rules of `config`, reporting every problem by its key. Passwords are
    /// checked by [`EmbeddedConfig::validate`]; an account whose password is not resolved
    /// never logs in.
    pub fn from_config(config: &EmbeddedConfig) -> Result<Acl, ConfigError> {
        let mut problems = Problems::new();
        let file = match &config.acl_file {
            Some(path) => problems.check(AclFile::load(path)),
            None => None,
        };
        let mut accounts = Vec::with_capacity(config.users.len());
        for (i, user) in config.users.iter().enumerate() {
            let key = format!("broker.embedded.users[{i}]");
            let granted = file.as_ref().and_then(|f| f.users.get(&user.username));
            if let Some(account) = account(&key, user, granted, file.as_ref(), &mut problems) {
                accounts.push((i, account));
            }
        }
        if let Some(file) = &file {
            let mut named: Vec<_> = file.users.iter().collect();
            named.sort_by_key(|(_, grants)| grants.line);
            for (name, grants) in named {
                match config.users.iter().find(|u| &u.username == name) {
                    None => problems.push(
                        "broker.embedded.acl_file",
                        format!(
                            "line {}: user {name:?} is not in broker.embedded.users",
                            grants.line
                        ),
                    ),
                    Some(u) if u.role.is_some_and(|r| r != Role::Custom) => problems.push(
                        "broker.embedded.acl_file",
                        format!(
                            "line {}: user {name:?} has role {}; the ACL file grants to \
                             custom accounts only",
                            grants.line,
                            u.role.map(|r| r.to_string()).unwrap_or_default()
                        ),
                    ),
                    Some(_) => {}
                }
            }
        }
        let anonymous = if config.allow_anonymous {
            anonymous_rights(config, file.as_ref(), &mut problems)
        } else {
            None
        };
        check_bindings(&accounts, &mut problems);
        let accounts: Vec<Account> = accounts.into_iter().map(|(_, a)| a).collect();
        let by_name = accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i))
            .collect();
        problems.finish(Acl {
            accounts,
            by_name,
            anonymous,
        })
    }

    /// Decides who a CONNECT is: checks the login in constant time against every account
    /// (no username: anonymous, when allowed), then that the client id is the account's.
    pub fn login(
        &self,
        username: Option<&[u8]>,
        password: Option<&[u8]>,
        client_id: &[u8],
    ) -> Result<Login, Denied> {
        let account = match (username, password) {
            (None, None) if self.anonymous.is_some() => None,
            (None, None) => return Err(Denied::AnonymousNotAllowed),
            (Some(username), Some(password)) => Some(
                self.authenticate(username, password)
                    .ok_or(Denied::BadCredentials)?,
            ),
            _ => return Err(Denied::BadCredentials),
        };
        self.bind(account, client_id)
    }

    /// As [`Acl::login`] for a client whose verified certificate names `account`: no
    /// password, the client id checks alike.
    pub fn login_certified(&self, account: &str, client_id: &[u8]) -> Result<Login, Denied> {
        let account = *self.by_name.get(account).ok_or(Denied::BadCredentials)?;
        self.bind(Some(account), client_id)
    }

    /// Checks that the client id is free for, and bound to, the account logging in.
    fn bind(&self, account: Option<usize>, client_id: &[u8]) -> Result<Login, Denied> {
        let client_id = std::str::from_utf8(client_id).map_err(|_| Denied::InvalidClientId)?;
        if let Some(owner) = self
            .accounts
            .iter()
            .enumerate()
            .find(|(i, a)| Some(*i) != account && a.client_ids.holds(client_id))
        {
            return Err(Denied::ClientIdTaken {
                owner: owner.1.name.clone(),
            });
        }
        if let Some(i) = account {
            let binding = &self.accounts[i].client_ids;
            let bound = matches!(
                self.accounts[i].rights,
                Rights::Edge { .. } | Rights::Host { .. }
            ) || !binding.is_empty();
            if bound && !binding.holds(client_id) {
                return Err(Denied::ClientIdNotBound);
            }
        }
        Ok(Login {
            account: account.map(|i| self.accounts[i].name.clone()),
        })
    }

    /// The index of the account `username`/`password` logs in as, comparing every account
    /// in constant time.
    fn authenticate(&self, username: &[u8], password: &[u8]) -> Option<usize> {
        let mut accepted = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, account) in self.accounts.iter().enumerate() {
            let Some(secret) = &account.password else {
                continue;
            };
            let this = account.name.as_bytes().ct_eq(username)
                & secret.expose().as_bytes().ct_eq(password);
            index.conditional_assign(&(i as u64), this);
            accepted |= this;
        }
        bool::from(accepted).then_some(index as usize)
    }

    /// May this client leave a will on `topic`? An edge account only on its own NDEATH, a
    /// host only on its own STATE, others where they may publish.
    pub fn may_will(&self, account: Option<&str>, client_id: &str, topic: &str) -> bool {
        if !is_topic_name(topic) {
            return false;
        }
        match self.rights(account) {
            None => false,
            Some(Rights::Edge {
                group_id,
                edge_node_ids,
                ..
            }) => Topic::parse(topic).is_ok_and(|t| {
                t.message_type() == MessageType::NDeath
                    && t.group_id() == group_id
                    && edge_node_ids.iter().any(|n| n == t.edge_node_id())
            }),
            Some(Rights::Host { host_id }) => {
                StateTopic::parse(topic).is_ok_and(|s| s.host_id() == host_id)
            }
            Some(rights @ Rights::Listed { .. }) => rights.may_publish(account, client_id, topic),
        }
    }

    /// What differs from `old`: the accounts removed or changed in any way (password,
    /// role, rights, client ids), those added, and whether anonymous access changed.
    pub fn changes_since(&self, old: &Acl) -> AclChanges {
        AclChanges {
            ended: old
                .accounts
                .iter()
                .filter(|a| {
                    self.by_name
                        .get(&a.name)
                        .is_none_or(|&i| self.accounts[i] != **a)
                })
                .map(|a| a.name.clone())
                .collect(),
            added: self
                .accounts
                .iter()
                .filter(|a| !old.by_name.contains_key(&a.name))
                .map(|a| a.name.clone())
                .collect(),
            anonymous: self.anonymous != old.anonymous,
        }
    }

    fn rights(&self, account: Option<&str>) -> Option<&Rights> {
        match account {
            None => self.anonymous.as_ref(),
            Some(name) => self.by_name.get(name).map(|&i| &self.accounts[i].rights),
        }
    }
}

/// What a reload changed of the access rules ([`Acl::changes_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclChanges {
    /// Accounts removed or changed: their open sessions are ended.
    pub ended: Vec<String>,
    /// Accounts new in this configuration.
    pub added: Vec<String>,
    /// Anonymous access turned on or off, or its rights changed: anonymous sessions end.
    pub anonymous: bool,
}

impl AclChanges {
    pub fn is_empty(&self) -> bool {
        self.ended.is_empty() && self.added.is_empty() && !self.anonymous
    }

    /// Are the connections and kept sessions of `account` (`None`: anonymous) ended?
    pub fn ends(&self, account: Option<&str>) -> bool {
        match account {
            Some(name) => self.ended.iter().any(|e| e == name),
            None => self.anonymous,
        }
    }
}

/// The access rules in force, replaced whole by a reload: every login, will, PUBLISH and
/// SUBSCRIBE is checked against the rules of that moment.
pub struct LiveAcl(std::sync::RwLock<std::sync::Arc<Acl>>);

impl LiveAcl {
    pub fn new(acl: Acl) -> LiveAcl {
        LiveAcl(std::sync::RwLock::new(std::sync::Arc::new(acl)))
    }

    /// The rules now (a login uses one set from start to end).
    pub fn current(&self) -> std::sync::Arc<Acl> {
        std::sync::Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `acl` in force and says what changed.
    pub fn replace(&self, acl: Acl) -> AclChanges {
        let mut current = self.0.write().unwrap_or_else(|p| p.into_inner());
        let changes = acl.changes_since(&current);
        *current = std::sync::Arc::new(acl);
        changes
    }
}

impl TopicPolicy for LiveAcl {
    fn may_publish(&self, account: Option<&str>, client_id: &str, topic: &str) -> bool {
        let acl = self.0.read().unwrap_or_else(|p| p.into_inner());
        acl.may_publish(account, client_id, topic)
    }

    fn may_subscribe(&self, account: Option<&str>, client_id: &str, filter: &str) -> bool {
        let acl = self.0.read().unwrap_or_else(|p| p.into_inner());
        acl.may_subscribe(account, client_id, filter)
    }
}

/// Each refusal is logged (WARN, client strings escaped), so the engine need not.
impl TopicPolicy for Acl {
    fn may_publish(&self, account: Option<&str>, client_id: &str, topic: &str) -> bool {
        let allowed = is_topic_name(topic)
            && self
                .rights(account)
                .is_some_and(|r| r.may_publish(account, client_id, topic));
        if !allowed {
            refused("PUBLISH", account, client_id, topic);
        }
        allowed
    }

    fn may_subscribe(&self, account: Option<&str>, client_id: &str, filter: &str) -> bool {
        let allowed = validate(filter).is_ok()
            && self
                .rights(account)
                .is_some_and(|r| r.may_subscribe(account, client_id, filter));
        if !allowed {
            refused("SUBSCRIBE", account, client_id, filter);
        }
        allowed
    }
}

fn refused(packet: &str, account: Option<&str>, client_id: &str, topic: &str) {
    tracing::warn!(
        client_id = %Escaped(client_id),
        username = ?account.map(Escaped),
        topic = %Escaped(topic),
        "{packet} refused by the access rules"
    );
}

impl Rights {
    fn may_publish(&self, account: Option<&str>, client_id: &str, topic: &str) -> bool {
        match self {
            Rights::Edge {
                group_id,
                edge_node_ids,
                ..
            } => Topic::parse(topic).is_ok_and(|t| {
                EDGE_PUBLISHES.contains(&t.message_type())
                    && t.group_id() == group_id
                    && edge_node_ids.iter().any(|n| n == t.edge_node_id())
            }),
            Rights::Host { host_id } => match AnyTopic::parse(topic) {
                Ok(AnyTopic::State(state)) => state.host_id() == host_id,
                Ok(AnyTopic::Edge(t)) => {
                    matches!(t.message_type(), MessageType::NCmd | MessageType::DCmd)
                }
                Err(_) => false,
            },
            Rights::Listed { publish, deny, .. } => {
                !deny.covers(account, client_id, topic) && publish.covers(account, client_id, topic)
            }
        }
    }

    fn may_subscribe(&self, account: Option<&str>, client_id: &str, wanted: &str) -> bool {
        match self {
            Rights::Edge { subscribe, .. } => subscribe.iter().any(|g| covers(g, wanted)),
            Rights::Host { .. } => {
                covers(filter::NAMESPACE_ALL, wanted) || covers(CERTIFICATES_ALL, wanted)
            }
            Rights::Listed {
                subscribe, deny, ..
            } => {
                !deny.covers(account, client_id, wanted)
                    && subscribe.covers(account, client_id, wanted)
            }
        }
    }
}

/// Granted topic filters, `%u` and `%c` standing for the username and client id.
#[derive(Debug, Default, PartialEq)]
struct Filters(Vec<String>);

impl Filters {
    /// Does one of these filters, `%u` and `%c` filled in, cover `wanted`? A pattern never
    /// applies when the value it needs is absent or holds `/`, `+` or `#`.
    fn covers(&self, account: Option<&str>, client_id: &str, wanted: &str) -> bool {
        self.0
            .iter()
            .filter_map(|f| substitute(f, account, client_id))
            .any(|f| covers(&f, wanted))
    }
}

fn substitute<'a>(filter: &'a str, account: Option<&str>, client_id: &str) -> Option<Cow<'a, str>> {
    if !filter.contains('%') {
        return Some(Cow::Borrowed(filter));
    }
    let safe = |v: &str| !v.is_empty() && !v.contains(['/', '+', '#']);
    let mut out = filter.to_owned();
    if out.contains("%u") {
        let user = account.filter(|u| safe(u))?;
        out = out.replace("%u", user);
    }
    if out.contains("%c") {
        if !safe(client_id) {
            return None;
        }
        out = out.replace("%c", client_id);
    }
    Some(Cow::Owned(out))
}

/// One account of the configuration, or `None` with its problems pushed.
fn account(
    key: &str,
    user: &UserConfig,
    file_grants: Option<&FileGrants>,
    file: Option<&AclFile>,
    all_problems: &mut Problems,
) -> Option<Account> {
    let mut found = Problems::new();
    let problems = &mut found;
    let role = match user.role {
        Some(role) => role,
        None => {
            all_problems.push(
                format!("{key}.role"),
                "missing: one of \"edge\", \"host\", \"reader\", \"custom\"",
            );
            return None;
        }
    };
    let unused = |problems: &mut Problems, name: &str, given: bool| {
        if given {
            problems.push(
                format!("{key}.{name}"),
                format!("does nothing for role {role}"),
            );
        }
    };
    let mut client_ids = Binding::default();
    let rights = match role {
        Role::Edge => {
            unused(problems, "host_id", user.host_id.is_some());
            unused(problems, "publish", user.publish.is_some());
            unused(problems, "subscribe", user.subscribe.is_some());
            unused(problems, "deny", user.deny.is_some());
            let group_id = required_id(problems, key, "group_id", IdPart::GroupId, &user.group_id);
            let nodes = user.edge_node_ids.as_deref().unwrap_or_default();
            if nodes.is_empty() {
                problems.push(
                    format!("{key}.edge_node_ids"),
                    "required for role edge: the edge node ids this account speaks for",
                );
            }
            let mut subscribe = vec![format!("{NAMESPACE}/{STATE}/+")];
            for (j, node) in nodes.iter().enumerate() {
                if let Err(e) = sparkplug::topic::validate_id(IdPart::EdgeNodeId, node) {
                    problems.push(format!("{key}.edge_node_ids[{j}]"), e);
                    continue;
                }
                let Some(group_id) = &group_id else { continue };
                client_ids.ids.push(format!("{group_id}:{node}"));
                if let (Ok(ncmd), Ok(dcmd)) = (
                    filter::node_commands(group_id, node),
                    filter::device_commands(group_id, node),
                ) {
                    subscribe.push(ncmd);
                    // Its DCMD topics and anything under them: `.../DCMD/<node>/#`.
                    subscribe.push(format!("{}#", dcmd.trim_end_matches('+')));
                }
            }
            Rights::Edge {
                group_id: group_id.unwrap_or_default(),
                edge_node_ids: nodes.to_vec(),
                subscribe,
            }
        }
        Role::Host => {
            unused(problems, "group_id", user.group_id.is_some());
            unused(problems, "edge_node_ids", user.edge_node_ids.is_some());
            unused(problems, "publish", user.publish.is_some());
            unused(problems, "subscribe", user.subscribe.is_some());
            unused(problems, "deny", user.deny.is_some());
            let host_id = required_id(problems, key, "host_id", IdPart::HostId, &user.host_id);
            if let Some(host_id) = &host_id {
                client_ids.ids.push(host_id.clone());
                client_ids.ids.push(crate::session::client_id(host_id));
            }
            Rights::Host {
                host_id: host_id.unwrap_or_default(),
            }
        }
        Role::Reader | Role::Custom => {
            unused(problems, "group_id", user.group_id.is_some());
            unused(problems, "edge_node_ids", user.edge_node_ids.is_some());
            unused(problems, "host_id", user.host_id.is_some());
            let lists = Lists {
                publish: user.publish.as_deref(),
                subscribe: user.subscribe.as_deref(),
                deny: user.deny.as_deref(),
            };
            filter_rights(
                problems,
                key,
                role,
                lists,
                file_grants,
                file.map(|f| &f.patterns),
            )
        }
    };
    if let Some(prefix) = &user.client_id_prefix {
        if prefix.is_empty() {
            problems.push(format!("{key}.client_id_prefix"), "must not be empty");
        }
        client_ids.prefix = Some(prefix.clone());
    }
    let ok = found.is_empty();
    all_problems.check(found.finish(()));
    ok.then(|| Account {
        name: user.username.clone(),
        password: user.password().cloned(),
        rights,
        client_ids,
    })
}

fn required_id(
    problems: &mut Problems,
    key: &str,
    name: &str,
    part: IdPart,
    value: &Option<String>,
) -> Option<String> {
    match value {
        None => {
            problems.push(format!("{key}.{name}"), "required for this role");
            None
        }
        Some(id) => match sparkplug::topic::validate_id(part, id) {
            Ok(()) => Some(id.clone()),
            Err(e) => {
                problems.push(format!("{key}.{name}"), e);
                None
            }
        },
    }
}

/// The `publish`, `subscribe` and `deny` keys of a `reader` or `custom` account.
struct Lists<'a> {
    publish: Option<&'a [String]>,
    subscribe: Option<&'a [String]>,
    deny: Option<&'a [String]>,
}

/// The rights of a `reader` or `custom` account (or of anonymous clients).
fn filter_rights(
    problems: &mut Problems,
    key: &str,
    role: Role,
    lists: Lists,
    file_grants: Option<&FileGrants>,
    patterns: Option<&FileGrants>,
) -> Rights {
    let Lists {
        publish,
        subscribe,
        deny,
    } = lists;
    let checked = |problems: &mut Problems, name: &str, filters: &[String]| -> Vec<String> {
        for (j, f) in filters.iter().enumerate() {
            if let Err(e) = validate(f) {
                problems.push(format!("{key}.{name}[{j}]"), format!("{f:?} {e}"));
            }
        }
        filters.to_vec()
    };
    let mut deny = checked(problems, "deny", deny.unwrap_or_default());
    for extra in [file_grants, patterns].into_iter().flatten() {
        deny.extend_from_slice(&extra.deny);
    }
    let deny = Filters(deny);
    match role {
        Role::Reader => {
            if publish.is_some() {
                problems.push(
                    format!("{key}.publish"),
                    "does nothing for role reader (readers publish nothing)",
                );
            }
            let subscribe = match subscribe {
                Some([]) => {
                    problems.push(format!("{key}.subscribe"), "must list at least one filter");
                    Vec::new()
                }
                Some(filters) => checked(problems, "subscribe", filters),
                None => vec![filter::NAMESPACE_ALL.to_owned()],
            };
            Rights::Listed {
                publish: Filters::default(),
                subscribe: Filters(subscribe),
                deny,
            }
        }
        _ => {
            let mut publish = checked(problems, "publish", publish.unwrap_or_default());
            let mut subscribe = checked(problems, "subscribe", subscribe.unwrap_or_default());
            for extra in [file_grants, patterns].into_iter().flatten() {
                publish.extend_from_slice(&extra.publish);
                subscribe.extend_from_slice(&extra.subscribe);
            }
            if publish.is_empty() && subscribe.is_empty() {
                problems.push(
                    format!("{key}.role"),
                    "custom grants nothing: list publish or subscribe filters (or grant in \
                     acl_file)",
                );
            }
            Rights::Listed {
                publish: Filters(publish),
                subscribe: Filters(subscribe),
                deny,
            }
        }
    }
}

fn anonymous_rights(
    config: &EmbeddedConfig,
    file: Option<&AclFile>,
    problems: &mut Problems,
) -> Option<Rights> {
    let key = "broker.embedded.anonymous";
    let anonymous = config.anonymous.as_ref();
    let role = anonymous.and_then(|a| a.role).unwrap_or(Role::Reader);
    let file_grants = file.map(|f| &f.anonymous).filter(|g| !g.is_empty());
    if let Some(grants) = file_grants
        && role != Role::Custom
    {
        problems.push(
            "broker.embedded.acl_file",
            format!(
                "line {}: grants to anonymous clients need broker.embedded.anonymous.role = \
                 \"custom\"",
                grants.line
            ),
        );
    }
    match role {
        Role::Reader | Role::Custom => {
            let lists = Lists {
                publish: anonymous.and_then(|a| a.publish.as_deref()),
                subscribe: anonymous.and_then(|a| a.subscribe.as_deref()),
                deny: anonymous.and_then(|a| a.deny.as_deref()),
            };
            Some(filter_rights(
                problems,
                key,
                role,
                lists,
                file_grants,
                file.map(|f| &f.patterns),
            ))
        }
        Role::Edge | Role::Host => {
            problems.push(
                format!("{key}.role"),
                format!("anonymous clients cannot have role {role}: use reader or custom"),
            );
            None
        }
    }
}

/// Every client id is owned by one account at most: no id or prefix of one account may
/// take an id of another.
fn check_bindings(accounts: &[(usize, Account)], problems: &mut Problems) {
    for (n, (i, a)) in accounts.iter().enumerate() {
        for (j, b) in accounts.iter().take(n) {
            let clash = a
                .client_ids
                .ids
                .iter()
                .find(|id| b.client_ids.holds(id))
                .cloned()
                .or_else(|| {
                    b.client_ids
                        .ids
                        .iter()
                        .find(|id| a.client_ids.holds(id))
                        .cloned()
                })
                .or_else(|| match (&a.client_ids.prefix, &b.client_ids.prefix) {
                    (Some(p), Some(q))
                        if p.starts_with(q.as_str()) || q.starts_with(p.as_str()) =>
                    {
                        // Ids starting with the longer prefix belong to both.
                        Some(format!("{}*", if p.len() >= q.len() { p } else { q }))
                    }
                    _ => None,
                });
            if let Some(id) = clash {
                let key = if a.client_ids.prefix.is_some() {
                    format!("broker.embedded.users[{i}].client_id_prefix")
                } else {
                    format!("broker.embedded.users[{i}]")
                };
                problems.push(
                    key,
                    format!(
                        "client id {id:?} would belong to both {:?} and {:?} \
                         (broker.embedded.users[{j}])",
                        a.name, b.name
                    ),
                );
            }
        }
    }
}
