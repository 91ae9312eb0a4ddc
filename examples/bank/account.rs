//! The account aggregate: its events, its state, and the commands that decide from it.
//!
//! Amounts are integer cents (`i64`), never floats. A command either returns the events
//! that happen or a [`Refusal`]; it never touches the store, so the repository may run it
//! again on fresh state after a conflict.

use eventsource::prelude::*;
use serde::{Deserialize, Serialize};

/// The account was opened for an owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    /// Who holds the account.
    pub owner: String,
}

/// Money came in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    /// How much, in cents (positive).
    pub amount_cents: i64,
}

/// Money went out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    /// How much, in cents (positive).
    pub amount_cents: i64,
}

/// The account takes no more deposits or withdrawals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Frozen {}

/// The events of an account, stored as `Opened`, `Deposited`, `Withdrawn` and `Frozen`.
#[derive(DomainEvent, Clone, Debug, PartialEq)]
pub enum AccountEvent {
    /// See [`Opened`].
    Opened(Opened),
    /// See [`Deposited`].
    Deposited(Deposited),
    /// See [`Withdrawn`].
    Withdrawn(Withdrawn),
    /// See [`Frozen`].
    Frozen(Frozen),
}

/// An account's state: what the commands decide from. Snapshotted every 100 events, so
/// a busy account's load replays fewer than 100 events.
#[derive(Aggregate, Clone, Debug, Default, Serialize, Deserialize)]
#[aggregate(name = "BankAccount", event = AccountEvent)]
#[snapshot(schema_version = 1, every = 100)]
pub struct Account {
    /// Who holds the account.
    pub owner: String,
    /// The balance, in cents; never negative.
    pub balance_cents: i64,
    /// Whether the account is frozen.
    pub frozen: bool,
}

impl Apply<Opened> for Account {
    fn apply(&mut self, e: &Opened) {
        self.owner = e.owner.clone();
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance_cents += e.amount_cents;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance_cents -= e.amount_cents;
    }
}

impl Apply<Frozen> for Account {
    fn apply(&mut self, _: &Frozen) {
        self.frozen = true;
    }
}

/// Why an account refused a command. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// An owner name that is empty, too long, or holds control characters.
    InvalidOwner(&'static str),
    /// A deposit or withdrawal of zero or less.
    NonPositiveAmount {
        /// The amount asked for.
        amount_cents: i64,
    },
    /// A withdrawal larger than the balance.
    InsufficientFunds {
        /// The balance the command saw.
        balance_cents: i64,
        /// The amount asked for.
        amount_cents: i64,
    },
    /// A deposit that would take the balance past `i64::MAX` cents.
    BalanceOverflow,
    /// A deposit or withdrawal on a frozen account.
    AccountFrozen,
}

impl Refusal {
    /// The machine-readable code of the refusal, the `error` field of the HTTP answer.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidOwner(_) => "invalid_owner",
            Refusal::NonPositiveAmount { .. } => "non_positive_amount",
            Refusal::InsufficientFunds { .. } => "insufficient_funds",
            Refusal::BalanceOverflow => "balance_overflow",
            Refusal::AccountFrozen => "account_frozen",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::InvalidOwner(why) => write!(f, "the owner {why}"),
            Refusal::NonPositiveAmount { amount_cents } => {
                write!(f, "the amount must be positive, not {amount_cents} cents")
            }
            Refusal::InsufficientFunds {
                balance_cents,
                amount_cents,
            } => write!(
                f,
                "the balance of {balance_cents} cents is below the {amount_cents} cents asked for"
            ),
            Refusal::BalanceOverflow => write!(f, "the balance would overflow"),
            Refusal::AccountFrozen => write!(f, "the account is frozen"),
        }
    }
}

/// The longest owner name accepted, in characters.
pub const MAX_OWNER_CHARS: usize = 200;

impl Account {
    /// Opens the account (a command on the default state of a new aggregate).
    pub fn open(&self, owner: &str) -> Result<Opened, Refusal> {
        let owner = owner.trim();
        if owner.is_empty() {
            return Err(Refusal::InvalidOwner("must not be empty"));
        }
        if owner.chars().count() > MAX_OWNER_CHARS {
            return Err(Refusal::InvalidOwner("must be at most 200 characters"));
        }
        if owner.chars().any(char::is_control) {
            return Err(Refusal::InvalidOwner("must not hold control characters"));
        }
        Ok(Opened {
            owner: owner.to_owned(),
        })
    }

    /// Puts money in.
    pub fn deposit(&self, amount_cents: i64) -> Result<Deposited, Refusal> {
        self.check_amount(amount_cents)?;
        if self.balance_cents.checked_add(amount_cents).is_none() {
            return Err(Refusal::BalanceOverflow);
        }
        Ok(Deposited { amount_cents })
    }

    /// Takes money out, never below zero.
    pub fn withdraw(&self, amount_cents: i64) -> Result<Withdrawn, Refusal> {
        self.check_amount(amount_cents)?;
        if amount_cents > self.balance_cents {
            return Err(Refusal::InsufficientFunds {
                balance_cents: self.balance_cents,
                amount_cents,
            });
        }
        Ok(Withdrawn { amount_cents })
    }

    /// Freezes the account; freezing a frozen account changes nothing (no event).
    pub fn freeze(&self) -> Result<Option<AccountEvent>, Refusal> {
        Ok((!self.frozen).then(|| Frozen {}.into()))
    }

    fn check_amount(&self, amount_cents: i64) -> Result<(), Refusal> {
        if self.frozen {
            return Err(Refusal::AccountFrozen);
        }
        if amount_cents <= 0 {
            return Err(Refusal::NonPositiveAmount { amount_cents });
        }
        Ok(())
    }
}
