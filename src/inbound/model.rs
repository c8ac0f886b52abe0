//! Callback endpoints and captured callbacks: the shapes live in [`crate::domain::callback`],
//! where `store` reads them too; they are re-exported here for the inbound half's callers.

pub use crate::domain::callback::*;
