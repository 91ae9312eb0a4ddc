//! The command line's arguments, parsed by clap.

use clap::{Args, Parser, Subcommand};
use uuid::Uuid;

use crate::feed::Checkpoint;

/// Operates an eventsource database: schema, snapshots, events and subscriptions.
#[derive(Debug, Parser)]
#[command(version)]
pub(super) struct Cli {
    /// The database: postgres://user@host/db or sqlite://path/to/file.db.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// One JSON document per line on stdout instead of tables, and no progress bars.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do what a dangerous command does without asking.
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(super) enum Command {
    /// Creates or updates the tables.
    Migrate,
    /// Snapshot coverage and freshness of every aggregate type (or one).
    Status(StatusArgs),
    /// Backfills, verifies or invalidates snapshots.
    #[command(subcommand)]
    Snapshots(SnapshotsCommand),
    /// Reads the event feed.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Lists, inspects and resets subscriptions.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
}

#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// Only this aggregate type.
    #[arg(long = "aggregate", value_name = "TYPE")]
    pub aggregate: Option<String>,
    /// An aggregate is stale past this many events since its snapshot.
    #[arg(long, default_value_t = 100, value_name = "EVENTS")]
    pub stale_after: u64,
    /// How many of the largest snapshots to list.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub largest: u64,
}

#[derive(Debug, Subcommand)]
pub(super) enum SnapshotsCommand {
    /// Snapshots the aggregates at least --min-events past their snapshot, longest first.
    Backfill {
        /// The aggregate type (one the application registered).
        aggregate: String,
        /// Only aggregates at least this many events behind.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
        min_events: u64,
        /// Aggregates handled at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
        /// At most this many (the most behind).
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Replays aggregates and compares them with their snapshots.
    Verify {
        /// The aggregate type (one the application registered).
        aggregate: String,
        /// Check this many, chosen at random, instead of all.
        #[arg(long)]
        sample: Option<u64>,
        /// Aggregates replayed at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
    },
    /// Deletes the snapshots of a type (all of them: asks first), or below a schema version.
    Invalidate {
        /// The aggregate type.
        aggregate: String,
        /// Only snapshots whose schema version is below this one.
        #[arg(long, value_name = "VERSION")]
        below_schema: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum EventsCommand {
    /// Prints the events of the feed after a checkpoint, then (with --follow) new ones.
    Tail {
        /// Start after this checkpoint (`<transaction>/<position>`, as printed).
        #[arg(long, default_value_t = Checkpoint::START)]
        from: Checkpoint,
        /// Stop after this many events.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// Only events of these aggregate types.
        #[arg(long = "aggregate", value_name = "TYPE")]
        aggregate_types: Vec<String>,
        /// Wait for new events once the end is reached (until --limit or Ctrl-C).
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum SubscriptionsCommand {
    /// Every subscription partition with its checkpoint and parked events.
    List,
    /// How far each subscription partition is behind the feed.
    Lag {
        /// Only this subscription.
        name: Option<String>,
    },
    /// Moves every partition of a subscription to a checkpoint (the start by default):
    /// it handles the events after it again. Asks first.
    Reset {
        /// The subscription.
        name: String,
        /// The checkpoint to move to.
        #[arg(long, default_value_t = Checkpoint::START)]
        to: Checkpoint,
    },
    /// Lists a subscription's parked events.
    Parked {
        /// The subscription.
        name: String,
    },
    /// Hands a subscription's parked events (or one) to its projection again, unparking
    /// each that it handles (the application must have registered the projection).
    RetryParked {
        /// The subscription.
        name: String,
        /// Only this event.
        #[arg(long)]
        event: Option<Uuid>,
    },
}
