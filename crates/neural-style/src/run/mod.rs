//! Layer 5, a run: its images ([`inputs`]), the loaded network with its style cache
//! ([`network`]), the plan a checked config becomes against it ([`layers`], [`plan`]), the
//! memory that plan needs ([`memory`]), the optimisers ([`optim`]), checkpoints
//! ([`checkpoint`]), what an observer is told ([`events`]) and the loop over the
//! coarse-to-fine stages ([`stages`]).

pub mod checkpoint;
pub mod events;
pub mod inputs;
pub(crate) mod layers;
pub mod memory;
pub mod network;
pub mod optim;
pub mod plan;
pub mod stages;
