#![doc = include_str!("../README.md")]

pub mod backbone;
pub mod dataset;
pub mod detect;
pub mod error;
pub mod eval;
pub mod evidence;
pub mod export;
pub mod pipeline;
pub mod product;
pub mod rank;
pub mod report;
pub mod run;
pub mod train;

pub use error::{Error, Result};
