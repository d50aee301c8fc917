//! Helpers several loops share (upstream's controller_utils): pod state, owner
//! references, expectations, creating pods from templates.

pub mod expectations;
pub mod owner;
pub mod podcontrol;
pub mod pods;
