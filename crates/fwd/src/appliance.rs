//! Running the appliance: open the ports, start pinned workers, serve metrics and the control
//! socket, stop cleanly on SIGINT/SIGTERM (workers drain, programs detach).

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use ports::xdp::{RingSizes, XdpPort, XdpPorts};

use crate::config::Config;
use crate::control::{ControlContext, ControlSocket};
use crate::http;
use crate::link::{LinkStatus, SharedAttachments, Supervisor};
use crate::stats::{self, WorkerShared};
use crate::worker::{PollLoop, Reopen};

/// tracing through [`crate::logging::NonBlocking`]: a full pipe or a stalled disk drops lines
/// (counted) instead of stopping the thread that logs.
fn init_logging(cfg: &Config) -> anyhow::Result<()> {
    use crate::logging::{NonBlocking, QUEUE_LINES};
    let filter = tracing_subscriber::EnvFilter::try_new(cfg.log.level.get_ref())?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &cfg.log.file {
        Some(f) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .map_err(|e| anyhow::anyhow!("log.file {}: {e}", f.display()))?;
            builder
                .with_ansi(false)
                .with_writer(NonBlocking::spawn(Box::new(file), QUEUE_LINES)?)
                .init();
        }
        None => {
            use std::io::IsTerminal;
            builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(NonBlocking::spawn(
                    crate::logging::stderr_sink()?,
                    QUEUE_LINES,
                )?)
                .init()
        }
    }
    Ok(())
}

/// Runs until SIGINT or SIGTERM; an error means nothing was left running or attached. The log
/// is flushed before returning, but never waited on for long: a stop must not hang on stderr.
pub fn run(cfg: Config, config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    init_logging(&cfg)?;
    let r = run_logging(cfg, config_path);
    if let Err(e) = &r {
        tracing::error!("{e:#}");
    }
    crate::logging::flush(Duration::from_millis(300));
    r
}

fn run_logging(cfg: Config, config_path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // SIGHUP means "reload"; registered first so that one arriving during start-up is a reload
    // request (served once running) rather than the default action, which would kill fwd.
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    // The rules are compiled before anything is opened: bad rules leave nothing running.
    let (firewall, mut pipelines) =
        crate::firewall::Firewall::start(&cfg, cfg.workers.cores.get_ref().len(), config_path)?;

    let specs = cfg.port_specs();
    let cores = cfg.workers.cores.get_ref().clone();
    let queues = *cfg.ports.a.queues.get_ref();
    let sizes = RingSizes {
        busy_poll: cfg.workers.busy_poll,
        ring_size: *cfg.workers.ring_size.get_ref(),
        ..RingSizes::default()
    };
    let xdp = XdpPorts::open([&specs[0], &specs[1]], queues, cores.len(), sizes)?;
    tracing::info!(
        a = %specs[0].interface,
        b = %specs[1].interface,
        queues,
        workers = cores.len(),
        bind = ?xdp.bind,
        attach = ?xdp.attach_modes(),
        "AF_XDP ports open, fail-closed XDP programs attached"
    );
    for (i, note) in xdp.attach_notes.iter().enumerate() {
        let (port, iface) = (["a", "b"][i], &specs[i].interface);
        tracing::info!(port, interface = %iface, "XDP program attached: {note}");
        match xdp.attachments[i].replaced() {
            Some((id, true)) => tracing::warn!(
                port,
                interface = %iface,
                "replaced the XDP program (id {id}) left by a fwd that did not stop cleanly"
            ),
            Some((id, false)) => tracing::warn!(
                port,
                interface = %iface,
                "replaced XDP program id {id}, presumably left by a fwd that did not stop cleanly \
                 (without CAP_SYS_ADMIN its name cannot be read to make sure)"
            ),
            None => {}
        }
    }
    let XdpPorts {
        workers: worker_ports,
        attachments,
        bind,
        ..
    } = xdp;
    let mut attachments = attachments.into_iter().map(Arc::new);
    let attachments: SharedAttachments = Arc::new(Mutex::new([
        attachments.next().expect("port a's program"),
        attachments.next().expect("port b's program"),
    ]));
    let links = Arc::new(LinkStatus::new(
        [specs[0].interface.clone(), specs[1].interface.clone()],
        worker_ports.len(),
    ));
    let mut supervisor = Supervisor::new(
        specs.clone(),
        queues,
        bind,
        sizes.frame_size,
        links.clone(),
        attachments.clone(),
    );

    // Bound before the workers start so that a clash leaves nothing running.
    let metrics_listener = TcpListener::bind(cfg.stats.listen)
        .map_err(|e| anyhow::anyhow!("stats.listen {}: {e}", cfg.stats.listen))?;
    let group = cfg.control.group.as_ref().map(|g| g.get_ref().as_str());
    let control_server = ControlSocket::bind_with(&cfg.control.socket, group)
        .map_err(|e| anyhow::anyhow!("control.socket {}: {e}", cfg.control.socket.display()))?;
    let conn_counters = control_server.counters();
    if let Some(warning) = http::exposure_warning(cfg.stats.listen) {
        tracing::warn!("{warning}");
    }

    let shared: Vec<Arc<WorkerShared>> = cores
        .iter()
        .map(|&c| Arc::new(WorkerShared::new(c)))
        .collect();
    let burst = *cfg.workers.burst.get_ref();
    let idle = Duration::from_micros(*cfg.workers.idle_sleep_us.get_ref());
    let mut handles = Vec::new();
    for (i, wp) in worker_ports.into_iter().enumerate() {
        let core = cores[i];
        let pipeline = pipelines.remove(0);
        let sh = shared[i].clone();
        let st = stop.clone();
        let (lk, atts, sp) = (links.clone(), attachments.clone(), specs.clone());
        let my_queues = ports::xdp::worker_queues(queues, cores.len(), i);
        let reopen: Reopen<XdpPort> = Box::new(move || {
            let atts = atts.lock().unwrap_or_else(|e| e.into_inner()).clone();
            ports::xdp::open_worker(
                [&sp[0], &sp[1]],
                [&atts[0], &atts[1]],
                &my_queues,
                sizes,
                bind,
            )
            .map(|wp| (wp.pool, wp.queues))
            .map_err(|e| e.to_string())
        });
        let h = std::thread::Builder::new()
            .name(format!("fwd-worker-{i}"))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    tracing::warn!(worker = i, core, "could not pin worker to its core");
                }
                let mut w =
                    PollLoop::new(wp.pool, wp.queues, pipeline, burst).with_links(lk, i, reopen);
                w.run(&sh, &st, idle);
            })?;
        handles.push(h);
    }

    let ctx = Arc::new(ControlContext {
        workers: shared.clone(),
        firewall: Some(firewall.clone()),
        links: Some(links.clone()),
    });
    let control_thread = {
        let (ctx, st) = (ctx.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fwd-control".into())
            .spawn(move || control_server.serve(&ctx, &st))?
    };
    let http_thread = {
        let (ctx, st) = (ctx.clone(), stop.clone());
        std::thread::Builder::new()
            .name("fwd-metrics".into())
            .spawn(move || http::serve(metrics_listener, ctx, conn_counters, &st))?
    };
    // Ready: every socket was bound and its fill ring filled before the workers started; now
    // every worker polls. Requests before this answer "starting".
    let workers = handles.len();
    while links.workers_polling() < workers && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    links.set_ready(true);
    tracing::info!(
        metrics = %cfg.stats.listen,
        control = %cfg.control.socket.display(),
        queues,
        workers,
        "fwd running: ready (every queue's socket bound, fill rings full, workers polling)"
    );
    match crate::link::sd_notify("READY=1") {
        Ok(true) => tracing::info!("told systemd READY=1"),
        Ok(false) => {}
        Err(e) => tracing::warn!("sd_notify READY=1 failed: {e}"),
    }
    // systemd's watchdog (WatchdogSec=): pinged below while every worker makes progress
    let mut watchdog = match crate::link::Watchdog::from_env() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("systemd watchdog not served: {e}");
            None
        }
    };
    if let Some(w) = &watchdog {
        tracing::info!(
            interval_ms = w.interval().as_millis() as u64,
            "systemd watchdog: WATCHDOG=1 while every worker makes progress"
        );
    }
    let mut beats = Vec::with_capacity(shared.len());

    let interval = Duration::from_secs(*cfg.stats.log_interval_s.get_ref());
    let mut next_log = Instant::now() + interval;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        supervisor.check();
        firewall.drain_logs();
        if let Some(w) = &mut watchdog {
            beats.clear();
            beats.extend(
                shared
                    .iter()
                    .map(|s| s.counters.polls.load(Ordering::Relaxed)),
            );
            if let Err(e) = w.tick(Instant::now(), &beats) {
                tracing::warn!("sd_notify WATCHDOG=1 failed: {e}");
            }
        }
        if hup.swap(false, Ordering::Relaxed) {
            match firewall.reload() {
                Ok(msg) => tracing::info!("SIGHUP: {}", msg.trim()),
                Err(e) => tracing::error!("SIGHUP: reload failed, the running rules stay:\n{e}"),
            }
        }
        if hup.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: nothing to reload yet (no rules configured)");
        }
        if !interval.is_zero() && Instant::now() >= next_log {
            for line in stats::render_summary(&shared).lines() {
                tracing::info!("stats {line}");
            }
            next_log += interval;
        }
    }
    if let Err(e) = crate::link::sd_notify("STOPPING=1") {
        tracing::warn!("sd_notify STOPPING=1 failed: {e}");
    }
    links.set_ready(false);
    tracing::info!("stopping: draining workers");
    for h in handles {
        let _ = h.join();
    }
    // The workers have pushed their last connection events; the sync thread sends them and
    // ends (joined, not left running while the rest shuts down).
    if let Some(sy) = &firewall.sync {
        sy.stop();
    }
    // Workers have closed their sockets; now detach the programs.
    drop(supervisor);
    drop(attachments);
    let _ = control_thread.join();
    let _ = http_thread.join();
    for line in stats::render_summary(&shared).lines() {
        tracing::info!("final {line}");
    }
    tracing::info!("stopped; XDP programs detached");
    Ok(())
}
