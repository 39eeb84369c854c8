//! Command handling: NCMD (Rebirth, Next Server, Reboot, Scan Rate) and DCMD (device
//! writes, bounded in flight), with retained and early commands refused.

use super::*;

/// Device writes from DCMDs waiting for their device at once; more are refused, so a
/// command flood cannot grow memory without bound.
pub(super) const MAX_WRITES_IN_FLIGHT: usize = 64;

impl EdgeNode {
    pub(super) async fn on_message(
        &mut self,
        link: &Link,
        topic: &str,
        payload: &[u8],
        retain: bool,
        phase: &mut Phase,
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        if let Ok(state_topic) = StateTopic::parse(topic) {
            return self
                .on_host_state(link, state_topic.host_id(), payload, phase, bd_seq)
                .await;
        }
        let parsed = match sparkplug::Topic::parse(topic) {
            Ok(t) => t,
            Err(e) => {
                warn!(topic, error = %e, "message on an unexpected topic ignored");
                return Ok(None);
            }
        };
        if *phase != Phase::Born {
            warn!(topic, "command before births ignored");
            return Ok(None);
        }
        if retain {
            // A retained command is an old order replayed at every subscribe (and every
            // liveness probe): a host must publish commands with retain false.
            warn!(
                topic,
                "retained command ignored: commands must not be retained"
            );
            return Ok(None);
        }
        match (parsed.message_type(), parsed.device_id()) {
            (MessageType::NCmd, None) => self.on_ncmd(link, payload, bd_seq).await,
            (MessageType::DCmd, Some(device)) => {
                self.on_dcmd(device, payload);
                Ok(None)
            }
            _ => {
                warn!(topic, "message on an unexpected topic ignored");
                Ok(None)
            }
        }
    }

    pub(super) async fn on_ncmd(
        &mut self,
        link: &Link,
        payload: &[u8],
        bd_seq: BdSeq,
    ) -> Result<Option<Ending>, PublishError> {
        let sparkplug = &self.config.sparkplug;
        let scan_rate_ms = sparkplug.scan_rate_min_ms..=sparkplug.scan_rate_max_ms;
        let (commands, refused) = match commands::node_commands(payload, scan_rate_ms) {
            Ok(decoded) => decoded,
            Err(e) => {
                warn!(error = %e, "malformed NCMD ignored");
                return Ok(None);
            }
        };
        for r in refused {
            warn!(metric = ?r.metric, reason = %r.reason, "NCMD metric refused");
        }
        for command in commands {
            match command {
                NodeCommand::Rebirth => {
                    let debounce = self.config.sparkplug.rebirth_debounce;
                    if self.last_rebirth.is_some_and(|t| t.elapsed() < debounce) {
                        info!(
                            ?debounce,
                            "Rebirth ignored: one was done within the debounce"
                        );
                        continue;
                    }
                    info!("Rebirth requested");
                    self.births(link, bd_seq).await?;
                }
                NodeCommand::NextServer => {
                    info!("Next Server requested");
                    return Ok(Some(Ending::NextServer));
                }
                NodeCommand::Reboot => {
                    info!("Reboot requested: restarting the MQTT session");
                    return Ok(Some(Ending::Reboot));
                }
                NodeCommand::ScanRate(ms) => {
                    info!(ms, "Scan Rate requested: restarting acquisition");
                    self.restart_acquisition(Duration::from_millis(ms.unsigned_abs()))
                        .await;
                    self.publish_node_changes(link).await?;
                }
            }
        }
        Ok(None)
    }

    pub(super) fn on_dcmd(&mut self, device: &str, payload: &[u8]) {
        let Some(index) = self.catalog.device_index(device) else {
            warn!(device, "DCMD for an unknown device ignored");
            return;
        };
        let (writes, refused) = match commands::device_writes(&self.catalog, index, payload) {
            Ok(decoded) => decoded,
            Err(e) => {
                warn!(device, error = %e, "malformed DCMD ignored");
                return;
            }
        };
        for r in refused {
            warn!(device, metric = ?r.metric, reason = %r.reason, "DCMD write refused");
        }
        for (tag, value) in writes {
            let Ok(permit) = Arc::clone(&self.writes_in_flight).try_acquire_owned() else {
                warn!(
                    device,
                    tag = tag.0,
                    "DCMD write refused: {MAX_WRITES_IN_FLIGHT} writes already in flight"
                );
                continue;
            };
            let handle = self.handle.clone();
            let device = device.to_owned();
            // The new value comes back through polling, in the next DDATA.
            tokio::spawn(async move {
                match handle.write(tag, value.clone()).await {
                    Ok(()) => {
                        info!(device, tag = tag.0, value = %Escaped(&value), "DCMD write done")
                    }
                    Err(e) => warn!(device, error = %e, "DCMD write failed"),
                }
                drop(permit);
            });
        }
    }
}
