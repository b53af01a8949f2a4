//! One client process (`pbscope client`): a Lab 1 clerk in a process of its own, so that a
//! client crash is a real SIGKILL of a real PID.
//!
//! It runs the same sans-IO [`Clerk`](crate::clerk::Clerk) through `clerk_runtime.rs` as a clerk
//! inside the supervisor would, with one difference: its events go over its control connection
//! to the supervisor ([`Outlet::Control`]), each written before the action it describes, exactly
//! as a node reports. The supervisor sends it calls ([`NodeControl::Invoke`]), slow-motion
//! changes and the fault plan; it answers each with `applied` (or `failed`). It exits when the
//! control connection closes and dies with its parent (parent-death signal), so it never
//! outlives the supervisor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use shared::{FaultPlan, NodeControl, NodeId, NodeReport};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::clerk::ClerkTiming;
use crate::clerk_runtime::{self, Call, ClerkSetup, Outlet, Report, ServerAddr};
use crate::clock::RunClock;
use crate::framing;
use crate::slowmo::SlowMotion;

/// Everything a client process is started with (its command line).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client lane (`c1` is 1).
    pub id: u32,
    /// Which process of the lane this is: 0 first, one more after each crash.
    pub incarnation: u32,
    /// The supervisor's control listener.
    pub control: SocketAddr,
    /// Proves to the supervisor that this process is the one it spawned.
    pub token: u64,
    /// The supervisor's CLOCK_MONOTONIC reading at the start of the run.
    pub epoch_ns: u64,
    /// High bits of this process's message ids, unique in the run.
    pub origin: u64,
    /// The servers in failover order (the primary first).
    pub servers: Vec<(NodeId, SocketAddr)>,
    /// The supervisor's slow-motion history: (how long ago each delay started, delay).
    pub slow_motion: Vec<(Duration, Duration)>,
    pub timing: ClerkTiming,
    /// A deliberately broken protocol (`--variant`), or `None`.
    pub variant: Option<shared::Variant>,
}

/// Runs a client process until the supervisor goes away.
pub async fn run(cfg: ClientConfig) -> anyhow::Result<()> {
    let clock = RunClock::from_epoch(cfg.epoch_ns);
    let control = TcpStream::connect(cfg.control)
        .await
        .with_context(|| format!("connecting to the supervisor at {}", cfg.control))?;
    let (mut sink, mut stream) = framing::framed(control).split();
    let ready = NodeReport::Ready {
        id: shared::client_node(cfg.id),
        pid: std::process::id(),
        port: 0,
        token: cfg.token,
    };
    sink.send(framing::encode(&ready)).await?;

    // One writer, in the order reports are made: an event recorded before an action is in the
    // socket before the action happens (the recorder waits for `written`).
    let (reports, mut queued) = mpsc::unbounded_channel::<Report>();
    let mut writer = tokio::spawn(async move {
        while let Some((report, written)) = queued.recv().await {
            if sink.send(framing::encode(&report)).await.is_err() {
                return;
            }
            if let Some(w) = written {
                let _ = w.send(());
            }
        }
    });
    let outlet = Arc::new(Outlet::Control {
        reports: reports.clone(),
        clock,
    });
    let slow_motion = watch::Sender::new(SlowMotion::from_ages(&cfg.slow_motion, Instant::now()));
    // The fault plan for this client's inbox (the supervisor sends the one in force first).
    let faults = watch::Sender::new(Arc::new(FaultPlan::default()));
    let clerk = clerk_runtime::spawn(
        ClerkSetup {
            id: cfg.id,
            incarnation: cfg.incarnation,
            servers: cfg
                .servers
                .iter()
                .map(|(id, addr)| ServerAddr {
                    id: id.clone(),
                    addr: *addr,
                })
                .collect(),
            origin: cfg.origin,
            timing: cfg.timing.clone(),
            variant: cfg.variant,
        },
        outlet,
        slow_motion.subscribe(),
        faults.subscribe(),
    );
    let answer = |report: NodeReport| {
        let _ = reports.send((report, None));
    };
    loop {
        let ctl = tokio::select! {
            ctl = framing::recv::<NodeControl, _>(&mut stream) => ctl,
            // The writer stops when the socket does: the supervisor is gone.
            _ = &mut writer => return Ok(()),
        };
        match ctl {
            Ok(NodeControl::Invoke {
                op,
                lock,
                tag,
                ticket,
            }) => {
                // `submit` queues the call's `op_invoked` first: `applied` follows it.
                let call = Call {
                    op,
                    lock,
                    tag,
                    done: None,
                };
                answer(match clerk.submit(call) {
                    Ok(()) => NodeReport::Applied { ticket },
                    Err(busy) => NodeReport::Failed {
                        ticket,
                        message: busy.to_string(),
                    },
                });
            }
            Ok(NodeControl::SetSlowMotion { delay_ms, ticket }) => {
                slow_motion.send_modify(|s| s.set(Duration::from_millis(delay_ms), Instant::now()));
                answer(NodeReport::Applied { ticket });
            }
            Ok(NodeControl::SetFaults { plan, ticket }) => {
                // Step mode stops the clerk's waits; its end restarts them.
                slow_motion.send_modify(|s| s.set_frozen(plan.step, Instant::now()));
                faults.send_replace(Arc::new(plan));
                answer(NodeReport::Applied { ticket });
            }
            Ok(NodeControl::Step {
                msg_id,
                action,
                ticket,
            }) => {
                // The inbox reports the decision's events before it answers; the answer goes
                // behind them, without holding up the control connection meanwhile.
                let decided = clerk.step(msg_id, action);
                let reports = reports.clone();
                tokio::spawn(async move {
                    let report = match decided.await {
                        Ok(Ok(())) => NodeReport::Applied { ticket },
                        Ok(Err(message)) => NodeReport::Failed { ticket, message },
                        Err(_) => NodeReport::Failed {
                            ticket,
                            message: "this client's inbox is gone".into(),
                        },
                    };
                    let _ = reports.send((report, None));
                });
            }
            Ok(other) => tracing::warn!("c{}: control {other:?} is for servers", cfg.id),
            Err(framing::FrameError::Decode(e)) => {
                tracing::warn!("c{}: undecodable control frame: {e}", cfg.id);
            }
            // The supervisor is gone: a client never outlives it.
            Err(_) => return Ok(()),
        }
    }
}
