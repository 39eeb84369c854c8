//! Applying a checked configuration to the running node: a message to its parts, not a
//! restart. Links whose devices or tags changed restart their polling (the others keep
//! going); a changed device or tag list, or node metric, makes a Rebirth on the same
//! connection (same bdSeq, no NDEATH); changed MQTT settings or Sparkplug ids reconnect
//! (NDEATH, then births on the new connection); the bdSeq state file and the store wait
//! for a restart of the process, and the answer says so.

use std::sync::Arc;
use std::time::Duration;

use infra::clock::now_ms;
use infra::link::Link;
use sparkplug::{BdSeq, MessageType};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::catalog::Catalog;
use super::lines::Restart;
use super::publisher::PublishError;
use super::session::{Ending, Phase};
use super::{EdgeNode, NodeError};
use crate::config::Config;
use crate::modbus::{Event, Site};

/// Longest a kept device's snapshot may take (its line answers between two scans).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);

/// What the node did with a configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Devices whose polling (re)started, new ones included.
    pub devices_restarted: Vec<String>,
    /// Links stopped because no device uses them any more.
    pub links_stopped: Vec<String>,
    /// New NBIRTH and DBIRTHs on the same connection.
    pub rebirth: bool,
    /// The MQTT session ended (NDEATH) and a new one starts; without a session, the next
    /// connect starts at once with the new settings.
    pub reconnect: bool,
    /// Keys whose new value is not applied until the process restarts.
    pub restart_needed: Vec<String>,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if !self.devices_restarted.is_empty() {
            parts.push(format!(
                "polling restarted for {}",
                self.devices_restarted.join(", ")
            ));
        }
        if !self.links_stopped.is_empty() {
            parts.push(format!("links stopped: {}", self.links_stopped.join(", ")));
        }
        if self.rebirth {
            parts.push("Rebirth".to_owned());
        }
        if self.reconnect {
            parts.push("reconnect".to_owned());
        }
        if !self.restart_needed.is_empty() {
            parts.push(format!(
                "restart needed for {}",
                self.restart_needed.join(", ")
            ));
        }
        if parts.is_empty() {
            f.write_str("taken as it runs (no polling restart, Rebirth or reconnect)")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// A configuration for the node task, and where its answer goes.
pub(super) struct ApplyRequest {
    pub(super) config: Box<Config>,
    pub(super) reply: oneshot::Sender<Applied>,
}

/// Sends configurations to a running node; cheap to clone.
#[derive(Debug, Clone)]
pub struct NodeControl {
    pub(super) tx: mpsc::Sender<ApplyRequest>,
    /// The configuration the node runs, as of its last apply.
    pub(super) running: tokio::sync::watch::Receiver<Arc<Config>>,
}

impl NodeControl {
    /// The configuration the node runs now.
    pub fn running(&self) -> Arc<Config> {
        Arc::clone(&self.running.borrow())
    }

    /// Applies a checked configuration and says what the node did.
    pub async fn apply(&self, config: Config) -> Result<Applied, NodeError> {
        let (reply, answer) = oneshot::channel();
        let request = ApplyRequest {
            config: Box::new(config),
            reply,
        };
        let stopped = || NodeError::Task("the edge node has stopped".into());
        self.tx.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

/// The live session, when there is one, for a Rebirth on it.
pub(super) struct Live<'a> {
    pub link: &'a Link,
    pub bd_seq: BdSeq,
    pub phase: Phase,
}

impl EdgeNode {
    /// Applies `new` to the running parts; `Some(ending)` when the session must end.
    pub(super) async fn apply_config(
        &mut self,
        mut new: Config,
        live: Option<Live<'_>>,
    ) -> Result<(Applied, Option<Ending>), PublishError> {
        let mut applied = Applied::default();
        let economy_changed = new.economy != self.config.economy;
        let site_changed = new.site != self.config.site;
        // Held changes go out under the device numbering and levers they were held with.
        if site_changed || economy_changed {
            match &live {
                Some(live) if live.phase == Phase::Born => self.close_window(live.link).await?,
                _ => self.keep_window(),
            }
        }
        let old = &self.config;
        if new.store != old.store {
            applied.restart_needed.push("store".to_owned());
            new.store = old.store.clone();
        }
        if new.sparkplug.state_file != old.sparkplug.state_file {
            applied
                .restart_needed
                .push("sparkplug.state_file".to_owned());
            new.sparkplug.state_file = old.sparkplug.state_file.clone();
        }
        let (a, b) = (&old.sparkplug, &new.sparkplug);
        let identity = a.group_id != b.group_id
            || a.edge_node_id != b.edge_node_id
            || a.primary_host_id != b.primary_host_id
            || a.metrics_period != b.metrics_period;
        let reconnect = identity || new.mqtt != old.mqtt;
        // Narrowed datatypes are announced in births.
        let rebirth_asked = site_changed
            || a.hardware != b.hardware
            || new.economy.narrow_types != old.economy.narrow_types;
        if new.mqtt.servers != old.mqtt.servers {
            // The first server of the new list is the one to try first.
            self.server = 0;
        }
        let old_online: Vec<String> = self
            .catalog
            .online_devices()
            .map(|d| self.catalog.device_name(d).to_owned())
            .collect();
        let site = new.site.clone();
        self.config = new;
        if economy_changed {
            let levers = &self.config.economy;
            self.publisher.set_levers(levers);
            self.bill.set_budget(levers.daily_budget_bytes);
            self.window = (!levers.report_window.is_zero())
                .then(|| super::window::ReportWindow::new(self.config.site.devices.len()));
            self.catalog.set_narrow_types(levers.narrow_types);
        }
        if site_changed {
            let restart = self.resite(site, false).await;
            applied.devices_restarted = restart.restarted.clone();
            applied.links_stopped = restart.stopped.clone();
            self.status.send_modify(|s| {
                s.devices = self.config.site.devices.len();
            });
            if let Some(live) = &live
                && live.phase == Phase::Born
                && !reconnect
            {
                self.bury(live.link, &old_online, &restart).await?;
            }
        }
        if live.is_none() {
            self.publisher = self.new_publisher();
        }
        let ending = if reconnect {
            // Without a session: the wait for the next connect ends at once.
            applied.reconnect = true;
            Some(Ending::Reconfigured)
        } else {
            if let Some(live) = &live
                && live.phase == Phase::Born
                && rebirth_asked
            {
                info!("configuration applied: Rebirth");
                self.births(live.link, live.bd_seq).await?;
                applied.rebirth = true;
            }
            None
        };
        self.running.send_replace(Arc::new(self.config.clone()));
        info!(applied = %applied, "configuration applied");
        Ok((applied, ending))
    }

    /// Runs `site`: unchanged links keep polling (their devices keep their births in the
    /// new catalog, from their lines' snapshots), changed ones restart and are born again
    /// as they answer.
    pub(super) async fn resite(&mut self, site: Site, restart_all: bool) -> Restart {
        let restart = self.acquisitions.apply(&site, restart_all).await;
        let aliases = super::assign_aliases(self.forwarder.as_mut(), &mut self.aliases, &site);
        let mut catalog =
            Catalog::with_levers(Arc::new(site.clone()), aliases, &self.config.economy);
        for &device in &restart.kept {
            match tokio::time::timeout(SNAPSHOT_WAIT, self.handle.snapshot(device)).await {
                Ok(Some((true, report))) => {
                    catalog.apply(&Event::Online(report));
                    catalog.carry_last(&self.catalog, device.index());
                }
                Ok(_) => {}
                Err(_) => warn!(
                    device = %site.devices[device.index()].name,
                    "no snapshot of a kept device; it is born again when it next answers"
                ),
            }
        }
        self.catalog = catalog;
        self.config.site = site;
        restart
    }

    /// DDEATH for each device born before that is gone or restarted: its births were
    /// under the old tag list.
    async fn bury(
        &mut self,
        link: &Link,
        old_online: &[String],
        restart: &Restart,
    ) -> Result<(), PublishError> {
        let now = now_ms();
        for name in old_online {
            let kept = self
                .catalog
                .device_index(name)
                .is_some_and(|d| self.catalog.is_online(d));
            if kept && !restart.restarted.contains(name) {
                continue;
            }
            info!(device = %name, "device removed or restarted by the configuration: DDEATH");
            self.publisher
                .publish(link, MessageType::DDeath, Some(name), Catalog::ddeath(now))
                .await?;
        }
        Ok(())
    }

    /// Scan Rate sets every scan class to the new period; every line restarts (even at
    /// the same rate) and its devices are born again as they answer.
    pub(super) async fn restart_acquisition(&mut self, period: Duration) {
        let mut site: Site = self.config.site.clone();
        for class in &mut site.scan_classes {
            class.period = period;
        }
        self.resite(site, true).await;
    }

    pub(super) fn new_publisher(&self) -> super::publisher::Publisher {
        super::publisher::Publisher::new(
            &self.config.sparkplug.group_id,
            &self.config.sparkplug.edge_node_id,
            Arc::clone(&self.published),
        )
        .with_levers(&self.config.economy)
    }
}

/// Answers a request after applying it.
pub(super) fn answer(reply: oneshot::Sender<Applied>, applied: Applied) {
    // The asker may have gone; the configuration is applied all the same.
    let _ = reply.send(applied);
}
