pub mod markers;
