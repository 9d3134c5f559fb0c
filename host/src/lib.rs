//! The acdlink host: loads connector plugins, drives them, and (as the pipeline grows)
//! schedules reads, maps records and uploads them to the WFM.
//!
//! # Brief overview
//!
//! [`registry::Registry`] collects every connector the host can run: the built-ins that
//! linked crates registered with `inventory`, and the plugin libraries of the configured
//! directories, each behind the same [`registry::Plugin`] (a manifest and an abi_stable
//! root module). [`session::Session`] is an opened connector: it names the connector in
//! every error and validates every batch against its request. [`config::Config`] is the
//! resolved TOML configuration and [`cli`] the command line on top.
//!
//! **Architecture invariant:** connectors reach the host only through
//! `acdlink_connector_api`'s FFI types; the host never calls a connector crate's Rust API,
//! so a built-in and the same connector loaded as a library behave identically.

pub mod cli;
pub mod commands;
pub mod config;
pub mod config_view;
pub mod http;
pub mod mapping;
pub mod pipeline;
pub mod registry;
pub mod scheduler;
pub mod secret;
pub mod service;
pub mod session;
pub mod store;
pub mod upload;

// Built-in connectors: a crate that is linked registers its connector with `inventory`.
// Naming the crate here is what makes the linker keep it.
extern crate acdlink_connector_csv;
extern crate acdlink_connector_demo;
