//! The aggregate model: state, event handlers and what a command returns.

use std::sync::Arc;

use crate::event::DomainEvent;
use crate::repository::AggregateRepository;
use crate::snapshot::{SnapshotPolicy, SnapshotStore};
use crate::store::EventStore;

/// The state of an event-sourced aggregate, usually derived with
/// [`#[derive(Aggregate)]`](macro@crate::Aggregate).
///
/// The state starts as [`Default::default`] and changes only by applying events. Its JSON
/// form is what snapshots store.
///
/// ```
/// # use eventsource::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Clone, Debug, Serialize, Deserialize)] pub struct Deposited { pub cents: u64 }
/// # #[derive(DomainEvent, Clone, Debug)] pub enum AccountEvent { Deposited(Deposited) }
/// # #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// # #[aggregate(name = "Account", event = AccountEvent)]
/// # #[snapshot(schema_version = 1, threshold = 10, mode = "sync")]
/// # pub struct Account { pub cents: u64 }
/// # impl Apply<Deposited> for Account { fn apply(&mut self, e: &Deposited) { self.cents += e.cents; } }
/// assert_eq!(Account::TYPE, "Account");
/// assert_eq!(Account::SCHEMA_VERSION, 1);
/// let mut state = Account::default();
/// state.apply_event(&AccountEvent::Deposited(Deposited { cents: 3 }));
/// assert_eq!(state.cents, 3);
/// let json = state.to_snapshot()?;
/// assert_eq!(Account::from_snapshot(&json)?.cents, 3);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub trait Aggregate: Default + Clone + Send + Sync + Sized + 'static {
    /// The aggregate's event enum.
    type Event: DomainEvent;

    /// The aggregate type name stored with every event and snapshot.
    const TYPE: &'static str;

    /// The schema version of the state's JSON form. An older snapshot is upcast when
    /// [`upcast_snapshot`](Self::upcast_snapshot) covers its version and ignored
    /// otherwise; a newer one is ignored. An ignored snapshot means a replay of the
    /// events.
    const SCHEMA_VERSION: u32;

    /// Applies one event to the state. Must not fail: events are facts.
    fn apply_event(&mut self, event: &Self::Event);

    /// The state as snapshot JSON.
    fn to_snapshot(&self) -> serde_json::Result<String>;

    /// The state from snapshot JSON.
    fn from_snapshot(json: &str) -> serde_json::Result<Self>;

    /// The state from the JSON of a snapshot taken at an older `schema_version`, brought
    /// to [`SCHEMA_VERSION`](Self::SCHEMA_VERSION) by the chain declared with
    /// `#[snapshot(upcast(...))]` or `#[snapshot(upcast_from(...))]`. `None` (the
    /// default) when no chain covers `schema_version`; an error when a step fails.
    /// Either way the load replays the events instead. See [`crate::upcast`].
    fn upcast_snapshot(
        schema_version: u32,
        json: &str,
    ) -> Option<std::result::Result<Self, crate::BoxError>> {
        let _ = (schema_version, json);
        None
    }

    /// When this aggregate is snapshotted, as declared by `#[snapshot(...)]`.
    fn snapshot_policy() -> SnapshotPolicy {
        SnapshotPolicy::default()
    }

    /// A repository for this aggregate, with the policy declared by `#[snapshot(...)]`.
    ///
    /// For a repository without snapshots use [`AggregateRepository::new`]; to override
    /// the policy, [`AggregateRepository::builder`].
    fn repository(
        event_store: Arc<dyn EventStore>,
        snapshot_store: Arc<dyn SnapshotStore>,
    ) -> AggregateRepository<Self> {
        AggregateRepository::with_stores(event_store, Some(snapshot_store))
    }
}

/// Handles one event type: `impl Apply<OrderCreated> for Order`.
///
/// `#[derive(DomainEvent)]` dispatches each variant to the `Apply` impl of its inner type,
/// so an aggregate must handle every event of its enum.
///
/// ```
/// use eventsource::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Debug, Serialize, Deserialize)]
/// pub struct Renamed { pub name: String }
/// #[derive(DomainEvent, Clone, Debug)]
/// pub enum ItemEvent { Renamed(Renamed) }
///
/// #[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
/// #[aggregate(name = "Item", event = ItemEvent)]
/// pub struct Item { pub name: String }
///
/// // Without this impl, the derive of `Item` is a compile error naming `Renamed`.
/// impl Apply<Renamed> for Item {
///     fn apply(&mut self, e: &Renamed) {
///         self.name = e.name.clone();
///     }
/// }
///
/// let mut item = AggregateRoot::<Item>::new(uuid::Uuid::new_v4());
/// item.record(Renamed { name: "lamp".into() });
/// assert_eq!(item.state().name, "lamp");
/// ```
#[diagnostic::on_unimplemented(
    message = "aggregate `{Self}` has no handler for event `{E}`",
    label = "`{Self}` must implement `Apply<{E}>`",
    note = "add `impl Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ /* update the state */ }} }}`"
)]
pub trait Apply<E> {
    /// Updates the state with the event.
    fn apply(&mut self, event: &E);
}

/// Routes each variant of an event enum to the aggregate's [`Apply`] impl.
/// Generated by `#[derive(DomainEvent)]`.
pub trait Dispatch<A> {
    /// Applies `self` to `state`.
    fn dispatch(&self, state: &mut A);
}

/// What a command may return: one event, several, or none.
pub trait IntoEvents<E> {
    /// Appends the events, in order, to `out`.
    fn into_events(self, out: &mut Vec<E>);
}

impl<E: DomainEvent> IntoEvents<E> for E {
    fn into_events(self, out: &mut Vec<E>) {
        out.push(self);
    }
}

impl<E> IntoEvents<E> for Vec<E> {
    fn into_events(mut self, out: &mut Vec<E>) {
        out.append(&mut self);
    }
}

impl<E> IntoEvents<E> for Option<E> {
    fn into_events(self, out: &mut Vec<E>) {
        out.extend(self);
    }
}

impl<E, const N: usize> IntoEvents<E> for [E; N] {
    fn into_events(self, out: &mut Vec<E>) {
        out.extend(self);
    }
}

impl<E> IntoEvents<E> for () {
    fn into_events(self, _out: &mut Vec<E>) {}
}
