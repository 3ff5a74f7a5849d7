#![doc = include_str!("../README.md")]

pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod images;
pub mod jobs;
pub mod metrics;
pub mod predict;
pub mod registry;
pub mod serve;
pub mod state;
pub mod storage;
pub mod util;

pub use error::{Error, Result};
