//! One person's journey (the "360° view", issue 18), the `journey` Lambda function.
//!
//! - [`journey`]: the journey itself (pure assembly over the identity resolver's evidence
//!   and a DataFusion read of the lake), what `ariane-local profile journey` and the
//!   function both call;
//! - [`handler`]: the function: an operator invokes it directly with
//!   `{"kind": "email", "value": "..."}` and gets the journey as JSON. No event source,
//!   no URL; its role reads the profiles table, the lake's events and the pepper, and
//!   writes nothing.

pub mod handler;
pub mod journey;

pub use handler::{JourneyFunction, Journeys};
pub use journey::{journey, Journey, JourneyError, JourneyRequest, Lake};
