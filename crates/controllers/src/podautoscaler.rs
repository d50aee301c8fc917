//! Not written yet: placeholder so the crate builds while the loop is being written.

pub mod target;

use crate::{Ctx, Loop};

pub fn controller(_ctx: &Ctx) -> Loop {
    Box::pin(async {})
}
