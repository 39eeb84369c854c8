//! The session state machine: where a session is ([`Phase`]: connecting, subscribing,
//! awaiting the primary host, born), how it ends ([`Ending`]), births and node data, the
//! primary host's STATE, and the liveness probe.

use super::*;

/// How one MQTT session ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ending {
    /// Shutdown was asked for.
    Shutdown,
    /// Connect failed or the connection broke.
    Lost(String),
    /// A `Next Server` command or the primary host went offline here.
    NextServer,
    /// A `Reboot` command: reconnect to the same server.
    Reboot,
    /// A configuration changed the MQTT settings or Sparkplug ids: reconnect at once.
    Reconfigured,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Connecting,
    Subscribing { pending: usize },
    AwaitingHost,
    Born,
}

/// A liveness probe on its way: what it confirms once answered, and the probe ticks
/// seen since it went out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    mark: Option<LinkMark>,
    ticks: u32,
}

/// Probe ticks a probe may stay unanswered: at one tick per half keep-alive, a whole
/// keep-alive.
pub(super) const PROBE_PATIENCE_TICKS: u32 = 2;

/// A STATE payload is about 45 bytes of JSON; anything far larger is not a host's.
pub(super) const MAX_STATE_LEN: usize = 1024;

impl EdgeNode {
    /// The node's NCMD topic, subscribed at connect and again as the liveness probe.
    pub(super) fn ncmd_filter(&self) -> String {
        let sparkplug = &self.config.sparkplug;
        filter::node_commands(&sparkplug.group_id, &sparkplug.edge_node_id).unwrap_or_default()
    }

    /// NCMD, DCMD of every device and the Primary Host's STATE (ids were validated with
    /// the configuration, so none is skipped in practice).
    pub(super) fn topic_filters(&self) -> Vec<String> {
        let g = &self.config.sparkplug.group_id;
        let n = &self.config.sparkplug.edge_node_id;
        let host = self.config.sparkplug.primary_host_id.as_deref();
        [filter::node_commands(g, n), filter::device_commands(g, n)]
            .into_iter()
            .chain(host.map(filter::state))
            .filter_map(Result::ok)
            .collect()
    }

    pub(super) async fn on_link_event(
        &mut self,
        link: &Link,
        event: LinkEvent,
        phase: &mut Phase,
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        match event {
            LinkEvent::Connected => {
                info!("connected");
                self.connects += 1;
                self.gauges
                    .connects
                    .store(self.connects, std::sync::atomic::Ordering::Relaxed);
                if let Err(e) = self.bdseq.commit(bd_seq) {
                    error!(error = %e, "bdSeq not persisted; a restart may repeat it");
                }
                let filters = self.topic_filters();
                for filter in &filters {
                    link.subscribe(filter, QoS::AtLeastOnce).await?;
                }
                *phase = Phase::Subscribing {
                    pending: filters.len(),
                };
            }
            LinkEvent::Subscribed { granted } => {
                if !granted {
                    if let Phase::Subscribing { .. } = *phase {
                        // Without it the node hears neither its primary host's STATE nor a
                        // Rebirth (a cluster node refuses while it elects leaders): try again.
                        return Ok(Some(Ending::Lost(
                            "the server refused a subscription".into(),
                        )));
                    }
                    warn!("the server refused a subscription; commands may not arrive");
                }
                if *phase == Phase::Born {
                    self.on_probe_answer();
                } else if let Phase::Subscribing { pending } = *phase {
                    if pending > 1 {
                        *phase = Phase::Subscribing {
                            pending: pending - 1,
                        };
                    } else if self.config.sparkplug.primary_host_id.is_some()
                        && !self.host_online_here
                    {
                        info!("waiting for the primary host's STATE online");
                        *phase = Phase::AwaitingHost;
                    } else {
                        self.births(link, bd_seq).await?;
                        *phase = Phase::Born;
                    }
                }
            }
            LinkEvent::Acknowledged => {}
            LinkEvent::Message {
                topic,
                payload,
                retain,
            } => {
                return self
                    .on_message(link, &topic, &payload, retain, phase, bd_seq)
                    .await;
            }
            LinkEvent::Lost(reason) => return Ok(Some(Ending::Lost(reason))),
        }
        Ok(None)
    }

    pub(super) async fn on_host_state(
        &mut self,
        link: &Link,
        host_id: &str,
        payload: &[u8],
        phase: &mut Phase,
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        if self.config.sparkplug.primary_host_id.as_deref() != Some(host_id) {
            return Ok(None);
        }
        if payload.len() > MAX_STATE_LEN {
            warn!(host_id, len = payload.len(), "oversized STATE ignored");
            return Ok(None);
        }
        let state = match State::parse(payload) {
            Ok(s) => s,
            Err(e) => {
                warn!(host_id, error = %e, "malformed STATE ignored");
                return Ok(None);
            }
        };
        if let Some(seen) = self.host_state
            && state.timestamp < seen.timestamp
        {
            debug!(
                host_id,
                ?state,
                ?seen,
                "STATE older than the last one ignored"
            );
            return Ok(None);
        }
        self.host_state = Some(state);
        self.gauges.set_host_state(state.online, state.timestamp);
        self.host_online_here = state.online;
        info!(host_id, online = state.online, "primary host STATE");
        if !state.online {
            // The host cannot see this server: leave it for the next one.
            info!(
                host_id,
                "primary host offline here: moving to the next server"
            );
            return Ok(Some(Ending::NextServer));
        }
        if *phase == Phase::AwaitingHost {
            self.births(link, bd_seq).await?;
            *phase = Phase::Born;
        }
        Ok(None)
    }

    /// Sends a liveness probe, or ends the session when the last one went unanswered
    /// too long. Probes go out only while there is something to confirm.
    pub(super) async fn on_probe_tick(
        &mut self,
        link: &Link,
    ) -> Result<Option<Ending>, PublishError> {
        if let Some(probe) = self.probe.as_mut() {
            probe.ticks += 1;
            if probe.ticks >= PROBE_PATIENCE_TICKS {
                return Ok(Some(Ending::Lost(format!(
                    "the broker did not answer a liveness probe within {:?}: the link is half-open",
                    self.config.mqtt.keep_alive
                ))));
            }
            return Ok(None);
        }
        let published = self
            .published
            .messages
            .load(std::sync::atomic::Ordering::Relaxed);
        let unconfirmed = self.forwarder.as_ref().is_some_and(Forwarder::unconfirmed);
        if published == self.published_at_probe && !unconfirmed {
            // Idle: the MQTT client's own keep-alive pings watch the link.
            return Ok(None);
        }
        self.published_at_probe = published;
        let mark = self.forwarder.as_ref().map(Forwarder::mark);
        link.subscribe(&self.ncmd_filter(), QoS::AtLeastOnce)
            .await?;
        self.probe = Some(Probe { mark, ticks: 0 });
        Ok(None)
    }

    /// The broker answered the probe: everything published before it reached the broker.
    pub(super) fn on_probe_answer(&mut self) {
        let Some(probe) = self.probe.take() else {
            return;
        };
        debug!("liveness probe answered");
        if let (Some(f), Some(mark)) = (self.forwarder.as_mut(), probe.mark) {
            f.confirmed(mark);
        }
    }

    /// NBIRTH (seq 0, this session's bdSeq, every node metric), then a DBIRTH per
    /// online device.
    pub(super) async fn births(&mut self, link: &Link, bd_seq: BdSeq) -> Result<(), PublishError> {
        let now = now_ms();
        let mut nbirth = Payload::new(now).with_metric(bd_seq.to_metric(now));
        let status = self.status(link);
        self.node_metrics.birth(&status, now, &mut nbirth);
        self.publisher
            .publish(link, MessageType::NBirth, None, nbirth)
            .await?;
        let online: Vec<usize> = self.catalog.online_devices().collect();
        for device in online {
            self.publish_dbirth(link, device, now).await?;
        }
        self.last_rebirth = Some(Instant::now());
        info!(bd_seq = %bd_seq, "births published");
        self.replay(link).await
    }

    pub(super) async fn publish_node_changes(&mut self, link: &Link) -> Result<(), PublishError> {
        let now = now_ms();
        let status = self.status(link);
        match self.node_metrics.changes(&status, now) {
            Some(ndata) => {
                self.publisher
                    .publish(link, MessageType::NData, None, ndata)
                    .await
            }
            None => Ok(()),
        }
    }

    pub(super) fn status(&self, link: &Link) -> NodeStatus {
        let site = self.handle.site();
        let poll_errors = (0..site.devices.len())
            .map(|d| {
                let s = self.handle.stats(crate::modbus::DeviceId(d as u32));
                s.failures + s.exceptions
            })
            .sum();
        let scan_rate_ms = site
            .scan_classes
            .iter()
            .map(|c| c.period)
            .min()
            .map(|p| i64::try_from(p.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        NodeStatus {
            scan_rate_ms,
            hardware: self.config.sparkplug.hardware.clone(),
            link_state: "online",
            server: link.server().to_owned(),
            reconnects: self.connects.saturating_sub(1),
            bytes_sent: self.bytes.sent(),
            bytes_received: self.bytes.received(),
            messages_published: self
                .published
                .messages
                .load(std::sync::atomic::Ordering::Relaxed),
            poll_errors,
            bill: self.bill.figures(),
            daily_budget: self.bill.budget().unwrap_or(0),
            store: self
                .forwarder
                .as_ref()
                .map(|f| f.stats(now_ms()))
                .unwrap_or_default(),
        }
    }
}
