//! One integration-test binary (links once); each concern is a module.

mod alerts;
mod command;
mod common;
mod config;
mod kube_emulator;
mod kubernetes;
mod repo;
mod terraform;
mod web;
