//! The "V2 Extended" Parquet file: one row per tensor, typed columns, key-value metadata.
//! docs/FORMAT.md is the contract; `schema.rs` is its code form, `row.rs` the row as a type.

mod chunks;
pub mod columns;
mod page_encoding;
pub mod pages;
pub mod ranged;
pub mod reader;
pub mod row;
mod row_groups;
pub mod schema;
mod small_columns;
mod thrift;
pub mod writer;

pub use chunks::{codes_codec, CodesCodec};
pub use row::{Metrics, SpatialMeta, Storage, Stored, TensorRow};
