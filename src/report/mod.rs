//! Pictures for people: `png` writes RGB pictures, `overlay` draws a case's slices with the
//! prediction and truth contours.

pub mod overlay;
pub mod png;
