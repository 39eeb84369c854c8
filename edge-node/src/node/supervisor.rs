//! The connection supervisor: one MQTT session after another, each on the server in
//! turn (failover on loss, `Next Server`, or the primary host offline there), with backoff
//! between them; the select loop of a session that hands link events, device events,
//! commands, configurations and timers to the parts that own them; the goodbye (NDEATH,
//! its PUBACK awaited, DISCONNECT).

use super::*;

/// How long an NDEATH's PUBACK and the DISCONNECT may take on the way out.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// How often the STATE subscription is made again while the primary host's STATE is
/// awaited: on a broker cluster a retained STATE reaches a node's copy after a while, and a
/// new subscription is sent the retained message again (MQTT 3.1.1, 3.8.4).
const STATE_RESUBSCRIBE: Duration = Duration::from_secs(5);

/// How often stored samples are offered for replay when no scan brings live data.
const REPLAY_PERIOD: Duration = Duration::from_millis(200);

impl EdgeNode {
    pub(super) async fn run(mut self, cancel: CancellationToken) -> Result<(), NodeError> {
        let mut backoff = Backoff::new(self.config.mqtt.backoff);
        let delay = startup_delay(self.config.mqtt.startup_delay_max);
        if self.wait(delay, &cancel).await {
            loop {
                let span = info_span!("mqtt", server = %self.current_server(), bd_seq = %self.bdseq.next());
                let (ending, born) = self.session(&cancel).instrument(span).await;
                if born {
                    backoff.reset();
                }
                let pause = match &ending {
                    Ending::Shutdown => break,
                    Ending::Lost(reason) => {
                        warn!(server = %self.current_server(), %reason, "MQTT link lost");
                        self.next_server();
                        backoff.next_delay()
                    }
                    Ending::NextServer => {
                        self.next_server();
                        backoff.next_delay()
                    }
                    Ending::Reboot => Duration::ZERO,
                    Ending::Reconfigured => {
                        // The goodbye went out under the old ids; the next session is new.
                        self.publisher = self.new_publisher();
                        Duration::ZERO
                    }
                };
                debug!(?pause, "before the next connect");
                if !self.wait(pause, &cancel).await {
                    break;
                }
            }
        }
        self.acquisitions.shutdown().await;
        Ok(())
    }

    pub(super) fn set_born_on(&self, server: Option<String>) {
        self.status.send_if_modified(|s| {
            let changed = s.born_on != server;
            if changed {
                self.gauges
                    .link_since_ms
                    .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
            }
            s.born_on = server;
            changed
        });
    }

    /// Sleeps while still taking in device events; false when shutdown came first.
    pub(super) async fn wait(&mut self, pause: Duration, cancel: &CancellationToken) -> bool {
        let deadline = tokio::time::sleep(pause);
        tokio::pin!(deadline);
        let mut beat = tokio::time::interval(BEAT);
        loop {
            self.progress.beat();
            self.handle.relay_progress();
            tokio::select! {
                _ = beat.tick() => {}
                _ = cancel.cancelled() => return false,
                _ = &mut deadline => return true,
                Some(event) = self.acquisitions.recv() => { self.absorb(&event); }
                Some(request) = self.control.recv() => {
                    // No session: nothing to publish, so applying cannot fail.
                    if let Ok((applied, ending)) = self.apply_config(*request.config, None).await {
                        apply::answer(request.reply, applied);
                        if ending.is_some() {
                            return true; // new MQTT settings: connect with them now
                        }
                    }
                }
            }
        }
    }

    pub(super) fn current_server(&self) -> String {
        self.config
            .mqtt
            .servers
            .get(self.server)
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    pub(super) fn next_server(&mut self) {
        self.server = (self.server + 1) % self.config.mqtt.servers.len().max(1);
    }

    /// One MQTT session; returns how it ended and whether births were published.
    pub(super) async fn session(&mut self, cancel: &CancellationToken) -> (Ending, bool) {
        let Some(server) = self.config.mqtt.servers.get(self.server).cloned() else {
            return (Ending::Lost("no server configured".into()), false);
        };
        let bd_seq = self.bdseq.next();
        self.host_online_here = false;
        self.probe = None;
        let will = LastWill::new(
            self.publisher.topic(MessageType::NDeath, None),
            Publisher::ndeath_payload(bd_seq, now_ms()),
            QoS::AtLeastOnce,
            false,
        );
        let mut link = match Link::open(
            self.config.mqtt.link_options(&server, will),
            Arc::clone(&self.bytes),
        ) {
            Ok(link) => link,
            Err(e) => return (Ending::Lost(e.to_string()), false),
        };
        info!("connecting");
        let mut phase = Phase::Connecting;
        let mut born = false;
        let connect_deadline = tokio::time::sleep(self.config.mqtt.connect_timeout);
        tokio::pin!(connect_deadline);
        let period = self.config.sparkplug.metrics_period;
        // The first check is one period after the connect, not at once.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut replay_tick = tokio::time::interval(REPLAY_PERIOD);
        replay_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let probe_period = (self.config.mqtt.keep_alive / 2).max(Duration::from_millis(500));
        let mut probe_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + probe_period, probe_period);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beat = tokio::time::interval(BEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut window_tick = reporting::window_interval(&self.config.economy);
        let mut state_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + STATE_RESUBSCRIBE,
            STATE_RESUBSCRIBE,
        );
        state_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ending = loop {
            self.progress.beat();
            self.handle.relay_progress();
            tokio::select! {
                _ = beat.tick() => {}
                _ = cancel.cancelled() => break Ending::Shutdown,
                _ = &mut connect_deadline, if phase == Phase::Connecting => {
                    break Ending::Lost(format!("no CONNACK within {:?}", self.config.mqtt.connect_timeout));
                }
                event = link.recv() => {
                    let Some(event) = event else { break Ending::Lost("connection closed".into()) };
                    match self.on_link_event(&link, event, &mut phase, bd_seq).await {
                        Ok(None) => {}
                        Ok(Some(ending)) => break ending,
                        Err(e) => break Ending::Lost(e.to_string()),
                    }
                    if phase == Phase::Born && !born {
                        born = true;
                        self.set_born_on(Some(server.to_string()));
                    }
                }
                Some(event) = self.acquisitions.recv() => {
                    if let Err(e) = self.on_device_event(&link, event, phase).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                Some(request) = self.control.recv() => {
                    let live = apply::Live { link: &link, bd_seq, phase };
                    match self.apply_config(*request.config, Some(live)).await {
                        Ok((applied, ending)) => {
                            apply::answer(request.reply, applied);
                            if let Some(ending) = ending {
                                break ending;
                            }
                        }
                        Err(e) => break Ending::Lost(e.to_string()),
                    }
                }
                _ = tick.tick() => {
                    if let Some(f) = self.forwarder.as_mut() {
                        let now = now_ms();
                        f.expire(now);
                        f.measure_rate(now);
                        self.gauges.set_store(&f.stats(now));
                    }
                    if phase == Phase::Born && let Err(e) = self.publish_node_changes(&link).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                _ = state_tick.tick(), if phase == Phase::AwaitingHost => {
                    if let Some(Ok(filter)) = self.config.sparkplug.primary_host_id.as_deref().map(filter::state) {
                        debug!("no STATE of the primary host yet: subscribing again");
                        if let Err(e) = link.subscribe(&filter, QoS::AtLeastOnce).await {
                            break Ending::Lost(e.to_string());
                        }
                    }
                }
                _ = replay_tick.tick(), if phase == Phase::Born && self.forwarder.is_some() => {
                    if let Err(e) = self.replay(&link).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                _ = window_tick.tick(), if phase == Phase::Born && self.window.is_some() => {
                    if let Err(e) = self.close_window(&link).await {
                        break Ending::Lost(e.to_string());
                    }
                }
                _ = probe_tick.tick(), if phase == Phase::Born => {
                    match self.on_probe_tick(&link).await {
                        Ok(None) => {}
                        Ok(Some(ending)) => break ending,
                        Err(e) => break Ending::Lost(e.to_string()),
                    }
                }
            }
        };
        self.set_born_on(None);
        if phase == Phase::Born
            && !matches!(ending, Ending::Lost(_))
            && let Err(e) = self.close_window(&link).await
        {
            warn!(error = %e, "report window not sent before leaving");
        }
        self.keep_window();
        if matches!(ending, Ending::Lost(_) | Ending::NextServer)
            && let Some(f) = self.forwarder.as_mut()
        {
            f.link_lost();
        }
        match &ending {
            Ending::Lost(_) => link.abort(),
            _ if phase == Phase::Connecting => link.abort(),
            _ => self.say_goodbye(link, bd_seq).await,
        }
        (ending, born)
    }

    /// NDEATH at QoS 1, its PUBACK (bounded), then DISCONNECT. The PUBACK confirms all
    /// that went out before; without it, unconfirmed samples are kept for the next start.
    pub(super) async fn say_goodbye(&mut self, mut link: Link, bd_seq: BdSeq) {
        info!("publishing NDEATH and disconnecting");
        let now = now_ms();
        let mark = self.forwarder.as_ref().map(Forwarder::mark);
        if let Err(e) = self.publisher.publish_ndeath(&link, bd_seq, now).await {
            warn!(error = %e, "NDEATH not sent");
            if let Some(f) = self.forwarder.as_mut() {
                f.link_lost();
            }
            link.abort();
            return;
        }
        let acknowledged = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(event) = link.recv().await {
                match event {
                    LinkEvent::Acknowledged => return true,
                    LinkEvent::Lost(_) => return false,
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if let Some(f) = self.forwarder.as_mut() {
            match (acknowledged, mark) {
                (true, Some(mark)) => f.confirmed(mark),
                _ => f.link_lost(),
            }
        }
        link.close(CLOSE_WAIT).await;
    }
}
