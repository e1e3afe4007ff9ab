//! One integration-test binary (links once); each concern is a module.

mod common;
mod kube_emulator;
mod kubernetes;
