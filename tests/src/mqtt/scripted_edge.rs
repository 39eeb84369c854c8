//! A scripted edge node for host tests: publishes births, data and deaths as the test
//! says, with bdSeq and seq kept as the spec says, and reports what it receives (NCMD,
//! DCMD, STATE). Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, LastWill, MqttOptions, PublishOptions, QoS};
use sparkplug::{Algorithm, BdSeq, Metric, Payload, Seq, State};
use tokio::sync::mpsc;

use crate::stack::now_ms as now;

/// Upper bound for any single wait; never a speed assertion.
const WAIT: Duration = Duration::from_secs(10);

/// One message the edge node received.
#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub qos: QoS,
}

impl Received {
    pub fn sparkplug(&self) -> Payload {
        Payload::decode(&self.payload).unwrap()
    }

    pub fn state(&self) -> State {
        State::parse(&self.payload).unwrap()
    }

    /// Checks what Sparkplug requires of every NCMD/DCMD payload: a timestamp, no seq, not
    /// retained. (QoS 0 is checked through Mosquitto: the embedded broker delivers at the
    /// subscription's QoS, see `host_app::broker`.)
    pub fn assert_command_form(&self) {
        let p = self.sparkplug();
        assert!(p.timestamp.is_some(), "{}: no timestamp", self.topic);
        assert_eq!(p.seq, None, "{}: commands carry no seq", self.topic);
        assert!(!self.retain, "{}", self.topic);
    }
}

/// A scripted edge node: publishes what the test says, with bdSeq and seq kept as the
/// spec says, and reports what it receives (NCMD/DCMD, STATE).
pub struct ScriptedEdge {
    pub group: String,
    pub node: String,
    pub bd_seq: BdSeq,
    /// Sparkplug payload compression for everything it publishes; none by default.
    pub compression: Option<Algorithm>,
    seq: Seq,
    client: AsyncClient,
    received: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedEdge {
    /// Connects anonymously with its NDEATH will, subscribes to its commands and to STATE.
    pub async fn connect(addr: SocketAddr, group: &str, node: &str, bd_seq: u8) -> ScriptedEdge {
        ScriptedEdge::connect_as(addr, (group, node), bd_seq, None).await
    }

    /// [`ScriptedEdge::connect`] logged in as `login` (username, password), with the client
    /// id an edge account is bound to: `<group>:<node>`.
    pub async fn connect_as(
        addr: SocketAddr,
        (group, node): (&str, &str),
        bd_seq: u8,
        login: Option<(&str, &str)>,
    ) -> ScriptedEdge {
        let bd_seq = BdSeq::new(bd_seq);
        let client_id = match login {
            Some(_) => format!("{group}:{node}"),
            None => format!("edge-{group}-{node}"),
        };
        let mut options = MqttOptions::new(client_id, (addr.ip().to_string(), addr.port()));
        if let Some((username, password)) = login {
            options.set_credentials(username.to_owned(), password.to_owned());
        }
        options.set_keep_alive(30);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let mut death = Vec::new();
        Payload::new(now())
            .with_metric(bd_seq.to_metric(now()))
            .encode(&mut death)
            .unwrap();
        options.set_last_will(LastWill::new(
            format!("spBv1.0/{group}/NDEATH/{node}"),
            death,
            QoS::AtLeastOnce,
            false,
        ));
        let (client, mut eventloop) = AsyncClient::builder(options).capacity(1024).build();
        let (tx, received) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let filters = [
            format!("spBv1.0/{group}/NCMD/{node}"),
            format!("spBv1.0/{group}/DCMD/{node}/+"),
            "spBv1.0/STATE/+".to_owned(),
        ];
        for f in &filters {
            client.subscribe(f.clone(), QoS::AtLeastOnce).await.unwrap();
        }
        let task = tokio::spawn(async move {
            let mut subacks = 0;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        subacks += 1;
                        if subacks == 3 {
                            let _ = subscribed_tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send(Received {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            payload: p.payload.to_vec(),
                            retain: p.retain,
                            qos: p.qos,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, subscribed.recv())
            .await
            .expect("edge node not subscribed in time");
        ScriptedEdge {
            group: group.to_owned(),
            node: node.to_owned(),
            bd_seq,
            compression: None,
            seq: Seq::new(0),
            client,
            received,
            task,
        }
    }

    fn topic(&self, kind: &str, device: Option<&str>) -> String {
        match device {
            Some(d) => format!("spBv1.0/{}/{kind}/{}/{d}", self.group, self.node),
            None => format!("spBv1.0/{}/{kind}/{}", self.group, self.node),
        }
    }

    async fn send(&self, topic: String, payload: &Payload) {
        let mut bytes = Vec::new();
        match self.compression {
            Some(algorithm) => payload.encode_compressed(algorithm, &mut bytes).unwrap(),
            None => payload.encode(&mut bytes).unwrap(),
        }
        self.client
            .publish(topic, bytes, PublishOptions::new(QoS::AtLeastOnce))
            .await
            .unwrap();
    }

    /// The next seq, advancing.
    pub fn next_seq(&mut self) -> Seq {
        let s = self.seq;
        self.seq = s.next();
        s
    }

    /// NBIRTH with seq 0, bdSeq and `metrics`.
    pub async fn nbirth(&mut self, metrics: Vec<Metric>) {
        self.seq = Seq::new(0);
        let mut p = Payload::new(now())
            .with_seq(self.next_seq())
            .with_metric(self.bd_seq.to_metric(now()))
            .with_metric(Metric::new("Node Control/Rebirth", false));
        p.metrics.extend(metrics);
        self.send(self.topic("NBIRTH", None), &p).await;
    }

    pub async fn dbirth(&mut self, device: &str, metrics: Vec<Metric>) {
        let mut p = Payload::new(now()).with_seq(self.next_seq());
        p.metrics = metrics;
        self.send(self.topic("DBIRTH", Some(device)), &p).await;
    }

    pub async fn ddata(&mut self, device: &str, metrics: Vec<Metric>) {
        let seq = self.next_seq();
        self.ddata_with_seq(device, seq, metrics).await;
    }

    /// DDATA with a chosen seq (for gaps and reordering); the edge's own counter is not
    /// touched.
    pub async fn ddata_with_seq(&mut self, device: &str, seq: Seq, metrics: Vec<Metric>) {
        let mut p = Payload::new(now()).with_seq(seq);
        p.metrics = metrics;
        self.send(self.topic("DDATA", Some(device)), &p).await;
    }

    pub async fn ndata(&mut self, metrics: Vec<Metric>) {
        let mut p = Payload::new(now()).with_seq(self.next_seq());
        p.metrics = metrics;
        self.send(self.topic("NDATA", None), &p).await;
    }

    pub async fn ddeath(&mut self, device: &str) {
        let p = Payload::new(now()).with_seq(self.next_seq());
        self.send(self.topic("DDEATH", Some(device)), &p).await;
    }

    /// NDEATH with a chosen bdSeq (the current one, or an old one to test staleness).
    pub async fn ndeath(&mut self, bd_seq: BdSeq) {
        let p = Payload::new(now()).with_metric(bd_seq.to_metric(now()));
        self.send(self.topic("NDEATH", None), &p).await;
    }

    /// The next received message whose topic contains `part`, skipping others.
    pub async fn next_matching(&mut self, part: &str) -> Received {
        let wait = async {
            loop {
                let r = self.received.recv().await.expect("edge client stopped");
                if r.topic.contains(part) {
                    return r;
                }
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .unwrap_or_else(|_| panic!("nothing on a topic with {part:?} in time"))
    }

    /// Every message received within `window` whose topic contains `part`.
    pub async fn collect_for(&mut self, part: &str, window: Duration) -> Vec<Received> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(r)) = tokio::time::timeout_at(deadline, self.received.recv()).await {
            if r.topic.contains(part) {
                out.push(r);
            }
        }
        out
    }

    /// Drops the connection without DISCONNECT (the broker then sends the will).
    pub fn kill(self) {
        self.task.abort();
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}
