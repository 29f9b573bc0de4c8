//! `appimage-cpu`: the webhook's own CPU per admission, without HTTP, TLS or the load
//! generator: the `/mutate` handler and its answer encoding, against the `--noop` handler, on
//! one thread. It separates what the server computes from what the shared stack costs.
//!
//! ```sh
//! cargo run --release -p appimage-bench --bin appimage-cpu -- --requests 200000
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use appimage::resource::AppImage;
use appimage::signature::{TrustedKey, payload};
use appimage_bench::fixtures;
use appimage_bench::harness::memory_kib;
use appimage_bench::review::pod_create;
use appimage_e2e::webhook::SigningKey;
use appimage_webhook::admission::{self, Policy, Reply};
use appimage_webhook::catalog::{AppImages, Catalog, appimages};
use appimage_webhook::trust::Trust;
use bytes::Bytes;
use clap::Parser;
use kube::runtime::watcher::Event;

// The webhook's allocator, so that allocation costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "CPU per admission of the /mutate handler vs the --noop handler, no network")]
struct Args {
    /// Requests per measured pass.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Measured passes of each handler; the best pass is reported.
    #[arg(long, default_value_t = 5)]
    passes: u32,
    /// AppImages to measure: `seed` (examples/secretflow-image.yaml) and `large`.
    #[arg(long, value_delimiter = ',', default_value = "seed,large")]
    appimage: Vec<String>,
    /// Instead of timing: hold this many AppImages (copies of the signed seed, decoded from
    /// JSON as a watch delivers them) and report the resident memory each one adds.
    #[arg(long)]
    memory: Option<usize>,
    /// With `--memory`: give every AppImage its own deploy and config templates, so that
    /// nothing can be shared between them.
    #[arg(long)]
    distinct: bool,
    /// Before each request, outside the timing, write over a buffer of this many KiB, so that
    /// the request starts with other data in the caches, as in the server, where the apiserver
    /// runs between two admissions. 0: the caches stay warm.
    #[arg(long, default_value_t = 0)]
    cold_kib: usize,
    /// Print the first request's JSONPatch for each AppImage and stop.
    #[arg(long)]
    dump_patch: bool,
    /// The repository root (for the seed example).
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

fn store(images: Vec<AppImage>) -> AppImages {
    let (reader, mut writer) = appimages();
    writer.apply_watcher_event(&Event::Init);
    for image in images {
        writer.apply_watcher_event(&Event::InitApply(image));
    }
    writer.apply_watcher_event(&Event::InitDone);
    reader
}

/// Best pass of `requests` calls of `handle`, in ns per request; each answer is encoded too.
fn measure(
    args: &Args,
    bodies: &[Bytes],
    handle: impl Fn(&[u8]) -> Result<Reply, admission::BadRequest>,
    expect_patch: bool,
) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    let mut other = vec![0u8; args.cold_kib * 1024];
    for _ in 0..args.passes {
        let mut took = std::time::Duration::ZERO;
        let mut bytes = 0usize;
        for i in 0..args.requests as usize {
            for (j, b) in other.iter_mut().enumerate().step_by(64) {
                *b = b.wrapping_add(j as u8);
            }
            std::hint::black_box(&other);
            let started = Instant::now();
            let reply = handle(&bodies[i % bodies.len()])
                .map_err(|e| anyhow::anyhow!("bad request: {e}"))?;
            let response = reply.response();
            anyhow::ensure!(
                response.allowed && response.patch.is_some() == expect_patch,
                "unexpected answer: {:?}",
                response.status.message
            );
            bytes += reply.to_json()?.len();
            drop(reply);
            took += started.elapsed();
        }
        let ns = took.as_nanos() as f64 / args.requests as f64;
        best = best.min(ns);
        std::hint::black_box(bytes);
    }
    Ok(best)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let signer = SigningKey::new(dir.path());
    let mut images = Vec::new();
    for (name, mut image) in [
        ("seed", fixtures::seed(&args.root, "seed")?),
        ("large", fixtures::large("large")),
    ] {
        image.metadata.name = Some(name.into());
        image.metadata.resource_version = Some("1".into());
        image.spec.image.sign = Some(signer.sign(&payload(&image)));
        images.push(image);
    }
    let pem = std::fs::read_to_string(signer.pub_dir.join("sign.pub"))?;
    let key = TrustedKey::from_pem("sign.pub", &pem)?;
    if let Some(n) = args.memory {
        return memory(n, args.distinct, &images[0], key);
    }
    let catalog = Catalog::new(store(images), Trust::fixed(vec![key]));
    let policy = Policy {
        require_signature: true,
        signatures: admission::SignaturePolicy::DEFAULT,
    };
    println!(
        "{:<8} {:>14} {:>14} {:>8}",
        "appimage", "noop ns/req", "mutate ns/req", "ratio"
    );
    for name in args.appimage.iter().map(String::as_str) {
        let bodies: Vec<Bytes> = (0..1024).map(|i| pod_create(i, "bench", name)).collect();
        if args.dump_patch {
            let reply = admission::mutate(&bodies[0], &catalog, policy)
                .map_err(|e| anyhow::anyhow!("bad request: {e}"))?;
            let patch = reply.response().patch_bytes().unwrap_or_default();
            println!("{name}: {}", String::from_utf8_lossy(&patch));
            continue;
        }
        let noop = measure(&args, &bodies, |b| admission::noop(b, None), false)?;
        let mutate = measure(
            &args,
            &bodies,
            |b| admission::mutate(b, &catalog, policy),
            true,
        )?;
        println!(
            "{name:<8} {noop:>14.0} {mutate:>14.0} {:>7.1}x",
            mutate / noop
        );
    }
    Ok(())
}

/// VmRSS of this process, KiB.
fn rss_kib() -> anyhow::Result<u64> {
    Ok(memory_kib(std::process::id())?.rss_kib)
}

fn memory(n: usize, distinct: bool, seed: &AppImage, key: TrustedKey) -> anyhow::Result<()> {
    // As the apiserver returns them: server-set metadata, one JSON text per object.
    let texts: Vec<String> = (0..n)
        .map(|i| {
            let mut image = seed.clone();
            let meta = &mut image.metadata;
            meta.name = Some(format!("bench-img-{i}"));
            meta.resource_version = Some(format!("{}", 100_000 + i));
            meta.uid = Some(format!("c0ffee00-0000-4000-8000-{i:012x}"));
            meta.generation = Some(1);
            if distinct {
                let spec = &mut image.spec;
                spec.deploy_templates[0].spec.containers[0]
                    .args
                    .push(format!("--instance={i}"));
                for text in spec.config_templates.values_mut() {
                    text.push_str(&format!("# instance {i}\n"));
                }
            }
            serde_json::to_string(&image)
        })
        .collect::<Result<_, _>>()?;
    let before = rss_kib()?;
    let (reader, mut writer) = appimages();
    writer.apply(Event::Init);
    for text in &texts {
        // As the webhook's watch delivers them; the store compacts each.
        writer.apply(Event::InitApply(serde_json::from_str(text)?));
    }
    writer.apply_watcher_event(&Event::InitDone);
    let stored = rss_kib()?;
    let catalog = Catalog::new(reader, Trust::fixed(vec![key]));
    for i in 0..n {
        catalog
            .lookup(&format!("bench-img-{i}"))
            .context("stored AppImage not found")?;
    }
    let looked_up = rss_kib()?;
    // One admission each: the injection plan it builds is kept with the AppImage (issue 31).
    // Renamed copies need not verify: the plan is built either way.
    let policy = Policy {
        require_signature: false,
        signatures: admission::SignaturePolicy::DEFAULT,
    };
    for i in 0..n {
        let body = pod_create(i as u64, "bench", &format!("bench-img-{i}"));
        let reply = admission::mutate(&body, &catalog, policy)
            .map_err(|e| anyhow::anyhow!("bad request: {e}"))?;
        anyhow::ensure!(reply.response().patch.is_some(), "no patch");
    }
    let planned = rss_kib()?;
    let per = |kib: u64| kib as f64 * 1024.0 / n as f64;
    println!("AppImages                  {n}");
    println!("RSS before                 {before} KiB");
    println!(
        "stored: +{} KiB, {:.0} bytes each",
        stored.saturating_sub(before),
        per(stored.saturating_sub(before))
    );
    println!(
        "looked up: +{} KiB, {:.0} bytes each",
        looked_up.saturating_sub(stored),
        per(looked_up.saturating_sub(stored))
    );
    println!(
        "planned: +{} KiB, {:.0} bytes each",
        planned.saturating_sub(looked_up),
        per(planned.saturating_sub(looked_up))
    );
    Ok(())
}
