//! One integration-test binary (links once); each concern is a module.

mod common;
mod terraform;
