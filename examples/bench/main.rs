//! Benchmarks: kubectl-buildkit against the kubectl path it replaces, side by side in
//! one run, on a simulated cluster (kube_sim) with the real kubectl.
//!
//! ```text
//! cargo run --release --example bench            # full: 1 GiB transfers, 5 runs each
//! cargo run --release --example bench -- --quick # tiny sizes, 3 runs
//! ```
//!
//! Prints a Markdown table (ours, the peer's figure, their ratio, target, PASS/MISS).
//! Exits 1 when a measurement fails (a build failed, bytes differed, a timeout); a
//! missed target is a result, not a failure. See BENCHMARKS.md.

mod concurrency;
mod dispatch;
mod echo;
mod env;
mod memory;
mod procs;
mod ringbench;
mod table;
mod throughput;

use std::time::Instant;

use anyhow::Result;

fn main() {
    let code = match real_main() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn real_main() -> Result<()> {
    let opts = env::Opts::parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let env = env::Env::start(&opts)?;
    // On SIGINT/SIGTERM the sections are dropped, which stops every helper process.
    let result = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = sections(&env, &opts.only) => r,
            _ = int.recv() => Err(anyhow::anyhow!("interrupted (SIGINT)")),
            _ = term.recv() => Err(anyhow::anyhow!("interrupted (SIGTERM)")),
        }
    });
    // Any helper still alive was dropped inside the sections (stopped on drop).
    drop(rt);
    let rows = result?;
    let (pass, miss) = table::print(&rows);
    println!(
        "\nbench: {} rows, {pass} PASS, {miss} MISS ({} mode)",
        rows.len(),
        if opts.quick { "quick" } else { "full" }
    );
    Ok(())
}

async fn sections(env: &env::Env, only: &[String]) -> Result<Vec<table::Row>> {
    let mut rows = Vec::new();
    type Section = for<'a> fn(
        &'a env::Env,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<table::Row>>> + 'a>,
    >;
    let list: [(&str, Section); 5] = [
        ("dispatch", |e| Box::pin(dispatch::run(e))),
        ("throughput", |e| Box::pin(throughput::run(e))),
        ("memory", |e| Box::pin(memory::run(e))),
        ("concurrency", |e| Box::pin(concurrency::run(e))),
        ("ring", |e| Box::pin(ringbench::run(e))),
    ];
    for (name, f) in list {
        if !only.is_empty() && !only.iter().any(|o| o == name) {
            continue;
        }
        let start = Instant::now();
        eprintln!("bench: {name} ...");
        let mut r = f(env)
            .await
            .map_err(|e| e.context(format!("section {name}")))?;
        eprintln!(
            "bench: {name} done in {:.1}s",
            start.elapsed().as_secs_f64()
        );
        for row in &r {
            let peer = row
                .peer
                .map(|p| table::show(p, row.unit))
                .unwrap_or("—".into());
            eprintln!(
                "bench:   {} = {} (peer {peer})",
                row.id,
                table::show(row.ours, row.unit)
            );
        }
        rows.append(&mut r);
        let active: Vec<String> = env
            .pods()
            .iter()
            .map(|p| (p, env.sim.stats(env::NS, p).active))
            .filter(|(_, a)| *a > 0)
            .map(|(p, a)| format!("{p}: {a}"))
            .collect();
        if !active.is_empty() {
            eprintln!(
                "bench:   connections still open after {name}: {}",
                active.join(", ")
            );
        }
    }
    Ok(rows)
}
