//! Load generator and latency probe for a running membership service.
//!
//! `feed-latency` measures commit-to-delivery latency of the event feed: it opens N watch
//! streams on one server, makes mutations through another (or the same) server, and for every
//! event every subscriber receives, records the time from the event's commit (its
//! `occur_time`, stamped just before commit) to its arrival. Run it on the same machine as the
//! servers so both read one clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use membership_service::grpc::pb;
use membership_service::grpc::pb::membership_service_client::MembershipServiceClient;
use membership_service::grpc::pb::tenant_service_client::TenantServiceClient;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser)]
#[command(about = "Load generator and latency probe for membership-service")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Commit-to-delivery latency of WatchMembershipEvents.
    FeedLatency {
        /// Server the subscribers watch.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        watch: String,
        /// Server the mutations go through (another replica, or the same server).
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        write: String,
        /// Number of concurrent subscribers.
        #[arg(long, default_value_t = 1)]
        subscribers: usize,
        /// Number of mutations (one event each).
        #[arg(long, default_value_t = 1000)]
        events: usize,
        /// Pause between mutations, so latency is measured below saturation.
        #[arg(long, default_value = "2ms", value_parser = humantime::parse_duration)]
        interval: Duration,
    },
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    match Args::parse().command {
        Command::FeedLatency {
            watch,
            write,
            subscribers,
            events,
            interval,
        } => feed_latency(&watch, &write, subscribers, events, interval).await,
    }
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or_default()
}

async fn connect(address: &str) -> Result<Channel, Box<dyn std::error::Error>> {
    Ok(Endpoint::from_shared(address.to_string())?
        .connect()
        .await?)
}

async fn feed_latency(
    watch: &str,
    write: &str,
    subscribers: usize,
    events: usize,
    interval: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    let write_channel = connect(write).await?;
    let owner = uuid::Uuid::now_v7();
    let tenant = TenantServiceClient::new(write_channel.clone())
        .create_tenant(pb::CreateTenantRequest {
            name: "bench".into(),
            kind: pb::TenantKind::Enterprise as i32,
            role_preset: pb::RolePreset::Enterprise as i32,
            owner_user_id: owner.to_string(),
            owner_email: format!("{}@bench.example", owner.simple()),
            ..Default::default()
        })
        .await?
        .into_inner();
    let tenant_id = tenant.tenant.map(|t| t.tenant_id).unwrap_or_default();

    // Subscribers share a few HTTP/2 connections, as a real client pool would.
    let (samples_tx, mut samples_rx) = mpsc::unbounded_channel::<i64>();
    let mut channels = Vec::new();
    for _ in 0..subscribers.div_ceil(100).max(1) {
        channels.push(connect(watch).await?);
    }
    let mut ready = Vec::new();
    for i in 0..subscribers {
        let mut client = MembershipServiceClient::new(channels[i % channels.len()].clone());
        let mut stream = client
            .watch_membership_events(pb::WatchMembershipEventsRequest {
                tenant_id: tenant_id.clone(),
                after_cursor: Some(tenant.cursor),
                ..Default::default()
            })
            .await?
            .into_inner();
        let samples = samples_tx.clone();
        ready.push(tokio::spawn(async move {
            let mut received = 0;
            while received < events {
                let Ok(Some(message)) = stream.message().await else {
                    break;
                };
                if let Some(pb::watch_membership_events_response::Kind::Event(event)) = message.kind
                {
                    let committed = event
                        .occur_time
                        .map(|t| t.seconds * 1_000_000 + i64::from(t.nanos / 1000))
                        .unwrap_or_default();
                    let _ = samples.send(now_micros() - committed);
                    received += 1;
                }
            }
            received
        }));
    }
    drop(samples_tx);

    let mut members = MembershipServiceClient::new(write_channel);
    let started = std::time::Instant::now();
    for _ in 0..events {
        let user = uuid::Uuid::now_v7();
        members
            .create_membership(pb::CreateMembershipRequest {
                tenant_id: tenant_id.clone(),
                user_id: user.to_string(),
                email: format!("{}@bench.example", user.simple()),
                source: pb::MembershipSource::Api as i32,
                ..Default::default()
            })
            .await?;
        tokio::time::sleep(interval).await;
    }
    let writing = started.elapsed();

    let mut delivered = 0;
    for task in ready {
        delivered += task.await?;
    }
    let mut samples = Vec::with_capacity(subscribers * events);
    while let Some(sample) = samples_rx.recv().await {
        samples.push(sample);
    }
    samples.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if samples.is_empty() {
            return f64::NAN;
        }
        let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[index] as f64 / 1000.0
    };
    println!(
        "subscribers={subscribers} events={events} delivered={delivered}/{} write_rate={:.0}/s \
         latency_ms p50={:.2} p90={:.2} p99={:.2} max={:.2}",
        subscribers * events,
        events as f64 / writing.as_secs_f64(),
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0),
    );
    Ok(())
}
