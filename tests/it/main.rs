//! One integration-test binary (links once); each concern is a module.

mod acks;
mod acks_layers;
mod alerts;
mod ansible;
mod cluster;
mod cluster_state;
mod command;
mod common;
mod config;
mod daemon;
mod demo;
mod docs;
mod errors;
mod escape;
mod hung_remote;
mod instances;
mod kube_watch;
mod kubernetes;
mod kubernetes_watch;
mod layers;
mod repo;
mod scheduler;
mod source_size;
mod terraform;
mod validate;
mod web;
